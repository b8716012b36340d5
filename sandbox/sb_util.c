/* sandbox/sb_util.c: ids, UTF-8 repair, file names in JSON, base64,
 * durations, MIME types.
 * Pure helpers: no sandbox state, no HTTP, no global state. */
#include "config.h"
#include "sandbox/sb_util.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <time.h>
#include <linux/openat2.h>
#include <sys/wait.h>
#include <spawn.h>

extern char **environ;

bool sb_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n < 1 || n > 63 || id[0] == '-' || id[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') || id[i] == '-'))
            return false;
    return true;
}

bool sb_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n < 1 || n > 64 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Length of the valid UTF-8 sequence at p (1..4), 0 if invalid, or -(needed)
 * if it is a valid but incomplete prefix. */
static int utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    int need;
    unsigned min;
    unsigned cp;
    if (c < 0x80)
        return c == 0 ? 0 : 1;
    if (c >= 0xc2 && c <= 0xdf)
        need = 2, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        need = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        need = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= avail)
            return -need;
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
        /* reject overlongs and surrogates early enough to not stall */
        if (i == 1 && need == 3 && c == 0xe0 && p[1] < 0xa0)
            return 0;
        if (i == 1 && need == 3 && c == 0xed && p[1] >= 0xa0)
            return 0;
        if (i == 1 && need == 4 && c == 0xf0 && p[1] < 0x90)
            return 0;
        if (i == 1 && need == 4 && c == 0xf4 && p[1] >= 0x90)
            return 0;
    }
    if (cp < min)
        return 0;
    return need;
}

size_t sb_utf8_append(cb_buf *out, const char *data, size_t len, bool final)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t i = 0, run = 0;
    while (i < len) {
        int n = utf8_seq(p + i, len - i);
        if (n > 0) {
            i += (size_t)n;
            continue;
        }
        cb_buf_append(out, data + run, i - run);
        if (n < 0 && !final)
            return len - i;  /* incomplete tail: kept back */
        cb_buf_puts(out, "\xef\xbf\xbd");
        i++;
        run = i;
    }
    cb_buf_append(out, data + run, i - run);
    return 0;
}

bool sb_has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

bool sb_utf8_valid(const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < len;) {
        int n = utf8_seq(p + i, len - i);
        if (n <= 0)
            return false;
        i += (size_t)n;
    }
    return true;
}

char *sb_utf8_lossy(const char *s, bool *lossy)
{
    size_t len = strlen(s);
    bool bad = !sb_utf8_valid(s, len);
    if (lossy)
        *lossy = bad;
    if (!bad)
        return cb_strdup(s);
    cb_buf b = CB_BUF_INIT;
    sb_utf8_append(&b, s, len, true);
    return cb_buf_steal(&b);
}

void sb_json_add_path(cJSON *obj, const char *key, const char *s)
{
    bool lossy;
    cb_autofree char *text = sb_utf8_lossy(s, &lossy);
    cJSON_AddStringToObject(obj, key, text);
    if (lossy) {
        cb_autofree char *k = cb_printf_new("%sBase64", key);
        cb_autofree char *b64 = sb_b64_encode(s, strlen(s));
        cJSON_AddStringToObject(obj, k, b64);
    }
}

int sb_bytes_arg(const char *key, const char *text, const char *b64, char **out, sb_error *err)
{
    *out = NULL;
    if (text && b64)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "give %s or %sBase64, not both", key, key), -1;
    if (!b64) {
        *out = text ? cb_strdup(text) : NULL;
        return 0;
    }
    size_t len;
    /* no blanks, unlike sb_b64_decode: a '+' a query turned into ' ' must
     * not be skipped, which could decode to other bytes */
    char *bytes = strpbrk(b64, " \t\r\n") ? NULL : sb_b64_decode(b64, &len);
    if (!bytes)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "%sBase64 is not valid base64 (standard "
                       "alphabet, padded)", key), -1;
    if (memchr(bytes, 0, len)) {
        free(bytes);
        return sb_fail(err, SB_E_VALIDATION_FAILED, "%sBase64 holds a NUL byte, which no path "
                       "can hold", key), -1;
    }
    *out = bytes;
    return 0;
}

int sb_json_path_arg(const cJSON *obj, const char *key, char **out, sb_error *err)
{
    *out = NULL;
    cb_autofree char *bkey = cb_printf_new("%sBase64", key);
    const char *v[2] = {NULL, NULL};
    const char *names[2] = {key, bkey};
    for (int i = 0; i < 2 && obj; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, names[i]);
        if (!f || cJSON_IsNull(f))
            continue;
        if (!cJSON_IsString(f))
            return sb_fail(err, SB_E_VALIDATION_FAILED, "%s must be a string", names[i]), -1;
        v[i] = f->valuestring;
    }
    return sb_bytes_arg(key, v[0], v[1], out, err);
}

char *sb_b64_encode(const void *data, size_t len)
{
    size_t cap = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
    char *out = cb_malloc(cap);
    sodium_bin2base64(out, cap, data, len, sodium_base64_VARIANT_ORIGINAL);
    return out;
}

char *sb_b64_decode(const char *text, size_t *len_out)
{
    size_t tl = strlen(text), got = 0;
    char *out = cb_malloc(tl / 4 * 3 + 4);
    if (sodium_base642bin((unsigned char *)out, tl / 4 * 3 + 4, text, tl, " \t\r\n", &got, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        free(out);
        return NULL;
    }
    out[got] = '\0';
    *len_out = got;
    return out;
}

int64_t sb_duration_ms(const char *s)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -1;
    double mul = 1000;
    if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        mul = 1000;
    else if (strcmp(end, "m") == 0)
        mul = 60e3;
    else if (strcmp(end, "h") == 0)
        mul = 3600e3;
    else if (strcmp(end, "d") == 0)
        mul = 86400e3;
    else
        return -1;
    double ms = v * mul;  /* NaN fails this test too */
    if (!(ms >= 0 && ms < 9e18))
        return -1;
    return (int64_t)ms;
}

const char *sb_mime_guess(const char *name)
{
    static const struct { const char *ext, *mime; } table[] = {
        {"txt", "text/plain"},        {"md", "text/markdown"},       {"py", "text/x-python"},
        {"js", "text/javascript"},    {"ts", "text/typescript"},     {"json", "application/json"},
        {"html", "text/html"},        {"htm", "text/html"},          {"css", "text/css"},
        {"csv", "text/csv"},          {"xml", "application/xml"},    {"sh", "text/x-shellscript"},
        {"c", "text/x-c"},            {"h", "text/x-c"},             {"yaml", "application/yaml"},
        {"yml", "application/yaml"},  {"toml", "application/toml"},  {"svg", "image/svg+xml"},
        {"png", "image/png"},         {"jpg", "image/jpeg"},         {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},         {"webp", "image/webp"},        {"pdf", "application/pdf"},
        {"zip", "application/zip"},   {"gz", "application/gzip"},    {"tar", "application/x-tar"},
        {"ipynb", "application/x-ipynb+json"}, {"wasm", "application/wasm"},
    };
    const char *dot = strrchr(name, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < CB_ARRAY_LEN(table); i++)
            if (strcasecmp(dot + 1, table[i].ext) == 0)
                return table[i].mime;
    return "application/octet-stream";
}

char *sb_iso_new(int64_t real_us)
{
    char buf[CB_ISO_DATE_LEN];
    cb_iso_date(buf, real_us);
    return cb_strdup(buf);
}

void sb_json_add_now(cJSON *obj, const char *key)
{
    char date[CB_ISO_DATE_LEN];
    cb_iso_date(date, cb_real_us());
    cJSON_AddStringToObject(obj, key, date);
}

int sb_write_file_quick(const char *path, const void *data, size_t len, mode_t mode)
{
    cb_autofree char *tmp = cb_printf_new("%s.tmp.%d.XXXXXX", path, (int)getpid());
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -1;
    bool ok = fchmod(fd, mode) == 0 && cb_write_all(fd, data, len) == 0;
    int e = errno;
    if (close(fd) < 0 && ok)
        ok = false, e = errno;
    if (!ok || rename(tmp, path) < 0) {
        e = ok ? errno : e;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

void sb_sh_quote(cb_buf *b, const char *v)
{
    cb_buf_putc(b, '\'');
    for (const char *p = v; *p; p++) {
        if (*p == '\'')
            cb_buf_puts(b, "'\\''");
        else
            cb_buf_putc(b, *p);
    }
    cb_buf_putc(b, '\'');
}

bool sb_env_name_valid(const char *k)
{
    if (!k || !*k || (*k >= '0' && *k <= '9'))
        return false;
    for (const char *p = k; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return false;
    return true;
}

int sb_env_check(const cJSON *env, sb_error *err)
{
    if (!cJSON_IsObject(env))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "env must be an object of strings"), -1;
    const cJSON *kv;
    size_t total = 0;
    cJSON_ArrayForEach(kv, env) {
        if (!cJSON_IsString(kv) || !sb_env_name_valid(kv->string))
            return sb_fail(err, SB_E_VALIDATION_FAILED, "env: invalid variable '%s'", kv->string), -1;
        /* the kernel's limits for execve (MAX_ARG_STRLEN, and about a
         * quarter of the 8 MiB stack for all of argv and envp): past them
         * every program the command starts fails with E2BIG, and 200000
         * variables made the agent's shell give up without a word */
        size_t n = strlen(kv->string) + 1 + strlen(kv->valuestring) + 1;
        if (n > SB_ENV_VAR_MAX)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "env: '%.64s' is longer than %u bytes "
                           "(the kernel's limit for one variable)", kv->string, SB_ENV_VAR_MAX), -1;
        total += n;
        if (total > SB_ENV_TOTAL_MAX)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "env: more than %u bytes in all (programs "
                           "could not start with it: Argument list too long)", SB_ENV_TOTAL_MAX), -1;
    }
    return 0;
}

/* sb_rm_rf walks the tree without recursion: a recursive walk (nftw, as
 * before) used a stack frame per level, and a workspace whose code had made
 * folders nested 60000 deep crashed the server (SIGSEGV) when the sandbox
 * was deleted. Here the C stack stays flat and at most two fds are open:
 * the walk goes down by name and back up through "..", checked against the
 * parent's device and inode it remembered (a folder moved meanwhile stops
 * it rather than lead it elsewhere). Folders it could not empty (a mount
 * point, a file it may not remove) are remembered so as not to be entered
 * again. */
typedef struct rm_level {
    char *name;                 /* of the folder below, in this one */
    dev_t dev;                  /* this folder's identity */
    ino_t ino;
} rm_level;

static bool rm_failed(const ino_t *failed, size_t n, ino_t ino)
{
    for (size_t i = 0; i < n; i++)
        if (failed[i] == ino)
            return true;
    return false;
}

int sb_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    const dev_t dev = st.st_dev;
    rm_level *up = NULL;
    ino_t *failed = NULL;
    size_t depth = 0, cap = 0, nfailed = 0;
    int rc = 0;
    for (;;) {
        char *down = NULL;
        int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        DIR *d = dup >= 0 ? fdopendir(dup) : NULL;
        if (!d) {
            if (dup >= 0)
                close(dup);
            rc = -1;
        }
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            struct stat cs;
            if (fstatat(fd, e->d_name, &cs, AT_SYMLINK_NOFOLLOW) < 0)
                continue;
            if (!S_ISDIR(cs.st_mode)) {
                if (unlinkat(fd, e->d_name, 0) < 0 && errno != ENOENT)
                    rc = -1;
                continue;
            }
            if (cs.st_dev != dev || rm_failed(failed, nfailed, cs.st_ino)) {
                rc = -1;  /* another file system (FTW_MOUNT), or one it could not empty */
                continue;
            }
            if (unlinkat(fd, e->d_name, AT_REMOVEDIR) == 0 || errno == ENOENT)
                continue;
            if (errno != ENOTEMPTY && errno != EEXIST) {
                rc = -1;
                continue;
            }
            down = cb_strdup(e->d_name);
            break;
        }
        if (d)
            closedir(d);
        struct stat here;
        if (down) {
            int sub = openat(fd, down, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0 || fstat(fd, &here) < 0) {
                if (sub >= 0)
                    close(sub);
                struct stat cs;
                if (fstatat(fd, down, &cs, AT_SYMLINK_NOFOLLOW) == 0) {
                    failed = cb_realloc(failed, (nfailed + 1) * sizeof *failed);
                    failed[nfailed++] = cs.st_ino;
                }
                free(down);
                rc = -1;
                continue;  /* rescan this folder, that one now skipped */
            }
            if (depth == cap) {
                cap = cap ? 2 * cap : 64;
                up = cb_realloc(up, cap * sizeof *up);
            }
            up[depth++] = (rm_level){down, here.st_dev, here.st_ino};
            close(fd);
            fd = sub;
            continue;
        }
        if (depth == 0)
            break;
        /* this folder is as empty as it gets: back up and remove it */
        rm_level l = up[--depth];
        struct stat me;
        int parent = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (parent < 0 || fstat(parent, &here) < 0 || here.st_dev != l.dev || here.st_ino != l.ino ||
            fstat(fd, &me) < 0) {
            if (parent >= 0)
                close(parent);
            free(l.name);
            rc = -1;
            break;  /* moved under us: stop rather than remove elsewhere */
        }
        close(fd);
        fd = parent;
        if (unlinkat(fd, l.name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
            failed = cb_realloc(failed, (nfailed + 1) * sizeof *failed);
            failed[nfailed++] = me.st_ino;
            rc = -1;
        }
        free(l.name);
    }
    close(fd);
    for (size_t i = 0; i < depth; i++)
        free(up[i].name);
    free(up);
    free(failed);
    if (rmdir(path) < 0 && errno != ENOENT)
        rc = -1;
    return rc;
}

/* The processes of /proc, for sb_signal_descendants. */
typedef struct {
    pid_t *pids, *ppids;
    char *zombie;
    int n, cap;
} proc_table;

static bool proc_table_add(pid_t pid, char state, pid_t ppid, pid_t pgrp, void *arg)
{
    (void)pgrp;
    proc_table *t = arg;
    t->pids[t->n] = pid;
    t->ppids[t->n] = ppid;
    t->zombie[t->n] = state == 'Z' || state == 'X';
    return ++t->n < t->cap;
}

int sb_signal_descendants(pid_t root, int sig)
{
    enum { MAXP = 32768 };
    proc_table t = {cb_calloc(MAXP, sizeof(pid_t)), cb_calloc(MAXP, sizeof(pid_t)), cb_calloc(MAXP, 1), 0, MAXP};
    cb_proc_each(proc_table_add, &t);
    pid_t *pids = t.pids, *ppids = t.ppids;
    char *zombie = t.zombie, *mark = cb_calloc(MAXP, 1);
    int n = t.n;
    /* mark descendants of root: repeat until no change */
    for (bool changed = true; changed;) {
        changed = false;
        for (int i = 0; i < n; i++) {
            if (mark[i])
                continue;
            bool child = ppids[i] == root;
            for (int j = 0; !child && j < n; j++)
                child = mark[j] && pids[j] == ppids[i];
            if (child)
                mark[i] = 1, changed = true;
        }
    }
    int count = 0;
    for (int i = 0; i < n; i++)
        if (mark[i] && !zombie[i]) {
            kill(pids[i], sig);
            count++;
        }
    free(pids), free(ppids), free(zombie), free(mark);
    return count;
}

int sb_run_tool(char *const argv[], const char *stdin_text, const char *purpose, const char *packages,
                sb_error *err)
{
    int errp[2], inp[2] = {-1, -1};
    if (pipe2(errp, O_CLOEXEC) < 0 || (stdin_text && pipe2(inp, O_CLOEXEC) < 0))
        return sb_fail(err, SB_E_INTERNAL_ERROR, "pipe: %s", strerror(errno)), -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (stdin_text)
        posix_spawn_file_actions_adddup2(&fa, inp[0], 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(errp[1]);
    if (stdin_text) {
        close(inp[0]);
        if (rc == 0)
            cb_write_all(inp[1], stdin_text, strlen(stdin_text));
        close(inp[1]);
    }
    if (rc != 0) {
        close(errp[0]);
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE,
                       "%s needs '%s' (apt-get install %s): %s", purpose, argv[0], packages,
                       strerror(rc)), -1;
    }
    char buf[400];
    ssize_t n, got = 0;
    while ((n = read(errp[0], buf + got, sizeof buf - 1 - (size_t)got)) > 0)
        got += n;
    close(errp[0]);
    buf[got > 0 ? got : 0] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        cb_buf cmd = CB_BUF_INIT;
        for (int i = 0; argv[i]; i++)
            cb_buf_printf(&cmd, "%s%s", i ? " " : "", argv[i]);
        sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "%s failed: %s: %s", purpose, cmd.data,
                buf[0] ? buf : "failed");
        cb_buf_clear(&cmd);
        return -1;
    }
    return 0;
}

int sb_open_in_root(int root, const char *path, int flags, mode_t mode)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .mode = mode,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    const char *rel = path[0] == '/' && path[1] ? path + 1 : (path[1] ? path : ".");
    int fd;
    do
        fd = (int)syscall(SYS_openat2, root, rel, &how, sizeof how);
    while (fd < 0 && errno == EAGAIN);
    return fd;
}

void sb_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(cv, mu, &ts);
}
