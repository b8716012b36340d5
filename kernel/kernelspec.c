/* kernel/kernelspec.c: `cellbox kernelspec install|list` and the lookup of
 * installed kernelspecs. */
#include "config.h"
#include "kernel/kernelspec.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/util.h"
#include "interp/interp.h"
#include "main.h"

void kn_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

static void strv_push(char ***v, size_t *n, char *s)
{
    *v = cb_realloc(*v, (*n + 2) * sizeof **v);
    (*v)[(*n)++] = s;
    (*v)[*n] = NULL;
}

static char *user_data_dir(void)
{
    const char *d = getenv("JUPYTER_DATA_DIR");
    if (d && *d)
        return cb_strdup(d);
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && *xdg)
        return cb_printf_new("%s/jupyter", xdg);
    return cb_printf_new("%s/.local/share/jupyter", cb_home_dir());
}

char **kn_kernelspec_dirs(void)
{
    char **v = NULL;
    size_t n = 0;
    const char *jp = getenv("JUPYTER_PATH");
    if (jp && *jp) {
        cb_autofree char *copy = cb_strdup(jp);
        char *save = NULL;
        for (char *t = strtok_r(copy, ":", &save); t; t = strtok_r(NULL, ":", &save))
            if (*t)
                strv_push(&v, &n, cb_printf_new("%s/kernels", t));
    }
    cb_autofree char *ud = user_data_dir();
    strv_push(&v, &n, cb_printf_new("%s/kernels", ud));
    static const char *const sys_dirs[] = {"/usr/share/jupyter", "/usr/local/share/jupyter"};
    /* jupyter's order: {sys.prefix} (= /usr on Debian), then /usr/local, then /usr */
    strv_push(&v, &n, cb_printf_new("%s/kernels", sys_dirs[0]));
    strv_push(&v, &n, cb_printf_new("%s/kernels", sys_dirs[1]));
    if (!v) {
        strv_push(&v, &n, cb_strdup("/usr/share/jupyter/kernels"));
    }
    return v;
}

static bool valid_name(const char *name)
{
    if (!*name)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.' || *p == '_'))
            return false;
    return true;
}

static kn_kernelspec *load_spec(const char *name, const char *dir, char **err)
{
    cb_autofree char *path = cb_printf_new("%s/kernel.json", dir);
    cb_autofree char *text = cb_read_file(path, NULL);
    if (!text) {
        *err = cb_printf_new("cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    cJSON *j = cJSON_Parse(text);
    if (!j) {
        *err = cb_printf_new("invalid kernelspec %s: not valid JSON", path);
        return NULL;
    }
    cJSON *argv = cb_json_arr(j, "argv");
    if (!cJSON_IsObject(j) || !argv || cJSON_GetArraySize(argv) < 1) {
        cJSON_Delete(j);
        *err = cb_printf_new("invalid kernelspec %s: it needs an 'argv' list", path);
        return NULL;
    }
    kn_kernelspec *ks = cb_calloc(1, sizeof *ks);
    ks->name = cb_strdup(name);
    ks->resource_dir = cb_strdup(dir);
    ks->argc = cJSON_GetArraySize(argv);
    ks->argv = cb_calloc((size_t)ks->argc + 1, sizeof *ks->argv);
    int i = 0;
    for (cJSON *a = argv->child; a; a = a->next, i++) {
        if (!cJSON_IsString(a)) {
            *err = cb_printf_new("invalid kernelspec %s: argv[%d] is not a string", path, i);
            cJSON_Delete(j);
            kn_kernelspec_free(ks);
            return NULL;
        }
        ks->argv[i] = cb_strdup(a->valuestring);
    }
    ks->display_name = cb_strdup(cb_json_str(j, "display_name", name));
    ks->language = cb_strdup(cb_json_str(j, "language", ""));
    ks->interrupt_mode = cb_strdup(cb_json_str(j, "interrupt_mode", "signal"));
    cJSON *env = cb_json_obj(j, "env");
    ks->env = env ? cJSON_Duplicate(env, 1) : NULL;
    cJSON *md = cb_json_obj(j, "metadata");
    ks->metadata = md ? cJSON_Duplicate(md, 1) : NULL;
    cJSON_Delete(j);
    return ks;
}

kn_kernelspec *kn_kernelspec_find(const char *name, char **err)
{
    *err = NULL;
    if (!valid_name(name)) {
        *err = cb_printf_new("invalid kernel name '%s' (letters, digits, '-', '.', '_')", name);
        return NULL;
    }
    char **dirs = kn_kernelspec_dirs();
    kn_kernelspec *ks = NULL;
    for (char **d = dirs; *d && !ks && !*err; d++) {
        cb_autofree char *dir = cb_printf_new("%s/%s", *d, name);
        cb_autofree char *kj = cb_printf_new("%s/kernel.json", dir);
        if (access(kj, R_OK) == 0) {
            ks = load_spec(name, dir, err);
            continue;
        }
        /* jupyter_client's kernel names are case-insensitive (it lowercases
         * the folder names and the name asked for): -k Python3, or a
         * notebook's kernelspec 'Python3', finds python3, and 'mykernel'
         * finds a folder MyKernel */
        DIR *dh = opendir(*d);
        for (struct dirent *e; dh && !ks && !*err && (e = readdir(dh));) {
            if (strcasecmp(e->d_name, name) != 0 || strcmp(e->d_name, name) == 0)
                continue;
            cb_autofree char *cdir = cb_printf_new("%s/%s", *d, e->d_name);
            cb_autofree char *ckj = cb_printf_new("%s/kernel.json", cdir);
            if (access(ckj, R_OK) == 0)
                ks = load_spec(name, cdir, err);
        }
        if (dh)
            closedir(dh);
    }
    if (!ks && !*err) {
        cb_buf b = CB_BUF_INIT;
        for (char **d = dirs; *d; d++)
            cb_buf_printf(&b, "%s%s", d == dirs ? "" : ", ", *d);
        *err = cb_printf_new("no kernelspec named '%s' (searched %s)", name, b.data);
        cb_buf_clear(&b);
    }
    kn_strv_free(dirs);
    return ks;
}

void kn_kernelspec_free(kn_kernelspec *ks)
{
    if (!ks)
        return;
    free(ks->name);
    free(ks->resource_dir);
    kn_strv_free(ks->argv);
    free(ks->display_name);
    free(ks->language);
    free(ks->interrupt_mode);
    cJSON_Delete(ks->env);
    cJSON_Delete(ks->metadata);
    free(ks);
}

/* ------------------------------------------------------------------ command */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cellbox kernelspec install [--user | --prefix DIR | --sys-prefix] [--name NAME]\n"
            "                                  [--display-name TEXT] [--interrupt-mode signal|message]\n"
            "                                  [--language python|javascript|typescript]\n"
            "       cellbox kernelspec list\n"
            "\n"
            "install writes NAME/kernel.json into a Jupyter kernels folder. By language:\n"
            "  python (default)  name 'cellbox', display name \"Python 3 (cellbox)\"\n"
            "  javascript        name 'cellbox-javascript', \"JavaScript (cellbox)\" (Node.js)\n"
            "  typescript        name 'cellbox-typescript', \"TypeScript (cellbox)\" (Node.js)\n"
            "Folders:\n"
            "  (default)     /usr/local/share/jupyter/kernels (system-wide)\n"
            "  --user        $JUPYTER_DATA_DIR or ~/.local/share/jupyter/kernels\n"
            "  --prefix DIR  DIR/share/jupyter/kernels\n"
            "  --sys-prefix  /usr/share/jupyter/kernels (the system Python's prefix)\n"
            "The kernel's argv holds the absolute path of this cellbox binary.\n"
            "list shows the installed kernelspecs in Jupyter's search order.\n");
}

static int cmd_list(void)
{
    char **dirs = kn_kernelspec_dirs();
    /* first match wins: remember names already printed */
    char **seen = NULL;
    size_t nseen = 0;
    printf("Available kernels:\n");
    for (char **d = dirs; *d; d++) {
        DIR *dh = opendir(*d);
        if (!dh)
            continue;
        struct dirent *e;
        while ((e = readdir(dh))) {
            if (e->d_name[0] == '.')
                continue;
            cb_autofree char *kj = cb_printf_new("%s/%s/kernel.json", *d, e->d_name);
            if (access(kj, R_OK) != 0)
                continue;
            bool dup = false;
            for (size_t i = 0; i < nseen && !dup; i++)
                dup = strcmp(seen[i], e->d_name) == 0;
            if (dup)
                continue;
            strv_push(&seen, &nseen, cb_strdup(e->d_name));
            printf("  %-20s %s/%s\n", e->d_name, *d, e->d_name);
        }
        closedir(dh);
    }
    kn_strv_free(seen);
    kn_strv_free(dirs);
    return 0;
}

static int cmd_install(int argc, char **argv)
{
    enum { O_USER = 1, O_PREFIX, O_SYSPREFIX, O_NAME, O_DISPLAY, O_INTERRUPT, O_LANGUAGE, O_HELP };
    static const struct option opts[] = {
        {"user", no_argument, NULL, O_USER},
        {"prefix", required_argument, NULL, O_PREFIX},
        {"sys-prefix", no_argument, NULL, O_SYSPREFIX},
        {"name", required_argument, NULL, O_NAME},
        {"display-name", required_argument, NULL, O_DISPLAY},
        {"interrupt-mode", required_argument, NULL, O_INTERRUPT},
        {"language", required_argument, NULL, O_LANGUAGE},
        {"help", no_argument, NULL, O_HELP},
        {0},
    };
    const char *name = NULL, *display = NULL, *prefix = NULL, *imode = "signal", *language = "python";
    int where = 0, o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case O_USER: case O_SYSPREFIX: where = o; break;
        case O_PREFIX: where = o; prefix = optarg; break;
        case O_NAME: name = optarg; break;
        case O_DISPLAY: display = optarg; break;
        case O_INTERRUPT: imode = optarg; break;
        case O_LANGUAGE: language = optarg; break;
        case O_HELP: case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    /* language -> its defaults (the kernel takes the same spellings) */
    static const struct { const char *alias, *language, *name, *display; } langs[] = {
        {"python", "python", "cellbox", "Python 3 (cellbox)"},
        {"python3", "python", "cellbox", "Python 3 (cellbox)"},
        {"javascript", "javascript", "cellbox-javascript", "JavaScript (cellbox)"},
        {"js", "javascript", "cellbox-javascript", "JavaScript (cellbox)"},
        {"typescript", "typescript", "cellbox-typescript", "TypeScript (cellbox)"},
        {"ts", "typescript", "cellbox-typescript", "TypeScript (cellbox)"},
    };
    size_t li = 0;
    while (li < CB_ARRAY_LEN(langs) && strcmp(langs[li].alias, language) != 0)
        li++;
    if (li == CB_ARRAY_LEN(langs)) {
        fprintf(stderr, "cellbox kernelspec: --language must be python, javascript or typescript\n");
        return 2;
    }
    bool python = strcmp(langs[li].language, "python") == 0;
    if (!name)
        name = langs[li].name;
    if (!display)
        display = langs[li].display;
    if (!valid_name(name)) {
        fprintf(stderr, "cellbox kernelspec: invalid name '%s' (letters, digits, '-', '.', '_')\n", name);
        return 2;
    }
    if (strcmp(imode, "signal") != 0 && strcmp(imode, "message") != 0) {
        fprintf(stderr, "cellbox kernelspec: --interrupt-mode must be signal or message\n");
        return 2;
    }
    cb_autofree char *base = NULL;
    if (where == O_USER) {
        cb_autofree char *ud = user_data_dir();
        base = cb_printf_new("%s/kernels", ud);
    } else if (where == O_PREFIX) {
        base = cb_printf_new("%s/share/jupyter/kernels", prefix);
    } else if (where == O_SYSPREFIX) {
        base = cb_strdup("/usr/share/jupyter/kernels");
    } else {
        base = cb_strdup("/usr/local/share/jupyter/kernels");
    }
    cb_autofree char *dir = cb_printf_new("%s/%s", base, name);
    if (cb_mkdir_p(dir, 0755) < 0) {
        fprintf(stderr, "cellbox kernelspec: cannot create %s: %s%s\n", dir, strerror(errno),
                errno == EACCES ? " (use --user to install for yourself)" : "");
        return 1;
    }
    cb_autofree char *exe = cb_self_exe();
    cJSON *j = cJSON_CreateObject();
    cJSON *av = cJSON_AddArrayToObject(j, "argv");
    cJSON_AddItemToArray(av, cJSON_CreateString(exe ? exe : "cellbox"));
    cJSON_AddItemToArray(av, cJSON_CreateString("kernel"));
    cJSON_AddItemToArray(av, cJSON_CreateString("-f"));
    cJSON_AddItemToArray(av, cJSON_CreateString("{connection_file}"));
    if (!python) {
        cJSON_AddItemToArray(av, cJSON_CreateString("--language"));
        cJSON_AddItemToArray(av, cJSON_CreateString(langs[li].language));
    }
    cJSON_AddStringToObject(j, "display_name", display);
    cJSON_AddStringToObject(j, "language", langs[li].language);
    cJSON_AddStringToObject(j, "interrupt_mode", imode);
    cJSON *md = cJSON_AddObjectToObject(j, "metadata");
    /* the Jupyter debugger (ipykernel announces it here too): Python with debugpy */
    cJSON_AddBoolToObject(md, "debugger", python && ip_python_debugger_available());
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    cb_autofree char *path = cb_printf_new("%s/kernel.json", dir);
    cb_buf b = CB_BUF_INIT;
    cb_buf_printf(&b, "%s\n", text);
    free(text);
    int rc = cb_write_file_atomic(path, b.data, b.len, 0644);
    cb_buf_clear(&b);
    if (rc < 0) {
        fprintf(stderr, "cellbox kernelspec: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    printf("Installed kernelspec %s in %s\n", name, dir);
    return 0;
}

int kn_cmd_kernelspec(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "install") == 0)
        return cmd_install(argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0)
        return cmd_list();
    fprintf(stderr, "cellbox kernelspec: unknown action '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
