/* tests/fuzz/driver.c: replays inputs (files, or every file of folders)
 * through LLVMFuzzerTestOneInput, printing TAP: one case per input. Used by
 * `make check` so that the seed corpora (and any crash input once saved
 * there) are regression tests, with or without sanitizers. Without
 * arguments it replays the target's own seed folders (FUZZ_CORPUS, paths
 * below $CELLBOX_SRCDIR, separated by ':'). */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/util.h"
#include "tests/fuzz/fuzz.h"

static int n;

static void run_file(const char *path)
{
    size_t len = 0;
    char *data = cb_read_file(path, &len);
    if (!data) {
        printf("not ok %d - cannot read %s\n", ++n, path);
        return;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    free(data);
    printf("ok %d - %s\n", ++n, path);  /* reached only when the input passed */
    fflush(stdout);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
        run_file(path);
        return;
    }
    struct dirent **names;
    int k = scandir(path, &names, NULL, by_name);
    for (int j = 0; j < k; j++) {
        if (names[j]->d_name[0] != '.') {
            cb_autofree char *p = cb_path_join(path, names[j]->d_name);
            run_file(p);
        }
        free(names[j]);
    }
    if (k >= 0)
        free(names);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            run_path(argv[i]);
    } else {
        const char *src = getenv("CELLBOX_SRCDIR");
        cb_autofree char *dirs = cb_strdup(FUZZ_CORPUS);
        char *save = NULL;
        for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            cb_autofree char *p = cb_path_join(src ? src : ".", d);
            run_path(p);
        }
    }
    printf("1..%d\n", n);
    return 0;
}
