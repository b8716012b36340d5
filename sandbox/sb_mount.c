/* sandbox/sb_mount.c: buckets mounted into sandboxes; see sb_mount.h.
 *
 * A mount's configuration is in the sandbox's mounts.json (an array of
 * {mountPath, bucket, endpoint, prefix, region, readOnly, pathStyle,
 * createdAt, credentials}); what runs now is in the table below (s3fs's pid,
 * the start generation it was mounted in, the last error, whether a POST is
 * mounting it). One lock (ops_mu) guards both, held for short moments: not
 * while s3fs waits for its store (up to 20 s), so one slow store delays no
 * other mount; a path being mounted is marked busy meanwhile. ops_mu is
 * taken after b->mu when both are held, never before.
 */
#include "config.h"
#include "sandbox/sb_mount.h"
#include "sandbox/sb_pin.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "sandbox/sb_secure.h"
#include "sandbox/sb_util.h"

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#define FUSE_MAGIC 0x65735546

#define MOUNT_WAIT_MS 20000     /* s3fs's first answer from the store */
#define START_WAIT_MS 15000     /* all of a starting sandbox's buckets (b->mu is held) */
#define MOUNTS_MAX 16           /* per sandbox */

/* ---- what runs -------------------------------------------------------------------- */

typedef struct live {
    struct live *next;
    char box[64];
    char *path;
    pid_t pid;                  /* s3fs; 0 once it exited */
    unsigned generation;        /* the sandbox's start it belongs to */
    bool busy;                  /* a POST is mounting it now (without ops_mu) */
    char *error;                /* the last failure to mount (at a start), or NULL */
} live;

static pthread_mutex_t ops_mu = PTHREAD_MUTEX_INITIALIZER;
static live *lives;

static live *live_find(const char *box, const char *path)
{
    for (live *l = lives; l; l = l->next)
        if (strcmp(l->box, box) == 0 && strcmp(l->path, path) == 0)
            return l;
    return NULL;
}

static live *live_get(const char *box, const char *path)
{
    live *l = live_find(box, path);
    if (!l) {
        l = cb_calloc(1, sizeof *l);
        snprintf(l->box, sizeof l->box, "%s", box);
        l->path = cb_strdup(path);
        l->next = lives;
        lives = l;
    }
    return l;
}

static void live_drop(const char *box, const char *path)
{
    live **p = &lives;
    while (*p) {
        live *l = *p;
        if (strcmp(l->box, box) == 0 && (!path || strcmp(l->path, path) == 0)) {
            *p = l->next;
            free(l->path);
            free(l->error);
            free(l);
        } else {
            p = &l->next;
        }
    }
}

/* ---- the saved configuration ---------------------------------------------------------- */

static char *conf_file(const sb_box *b)
{
    return cb_printf_new("%s/mounts.json", b->dir);
}

/* The sandbox's mounts (owned array; empty when there are none). */
static cJSON *conf_load(const sb_box *b)
{
    cb_autofree char *file = conf_file(b);
    cb_autofree char *text = cb_read_file(file, NULL);
    cJSON *a = text ? cJSON_Parse(text) : NULL;
    if (!cJSON_IsArray(a)) {
        if (text)
            cb_warn("mount", "sandbox %s: ignoring the unreadable %s", b->id, file);
        cJSON_Delete(a);
        a = cJSON_CreateArray();
    }
    return a;
}

static int conf_save(const sb_box *b, const cJSON *a, sb_error *err)
{
    cb_autofree char *file = conf_file(b);
    cb_autofree char *text = cb_json_print(a);
    if (cb_write_file_atomic(file, text, strlen(text), 0600) < 0)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cannot save %s: %s", file, strerror(errno)), -1;
    return 0;
}

static cJSON *conf_find(cJSON *a, const char *path)
{
    cJSON *m;
    cJSON_ArrayForEach(m, a) {
        if (strcmp(cb_json_str(m, "mountPath", ""), path) == 0)
            return m;
    }
    return NULL;
}

/* ---- validation ------------------------------------------------------------------- */

static bool bucket_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 255)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '-' || *s == '_'))
            return false;
    return true;
}

static bool has_dotdot(const char *p)
{
    for (const char *s = p; (s = strstr(s, "..")); s += 2)
        if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
            return true;
    return false;
}

/* The mount point of a request: absolute, or relative to /workspace;
 * normalised (no //, no trailing /). Owned, or NULL + err. */
static char *mount_path(const char *raw, sb_error *err)
{
    if (!*raw || strlen(raw) > 1024 || sb_has_ctl(raw) || has_dotdot(raw))
        return sb_fail(err, SB_E_INVALID_MOUNT_CONFIG,
                       "mountPath must be a path without control characters or '..' (1-1024 bytes)"), NULL;
    cb_autofree char *full = raw[0] == '/' ? cb_strdup(raw) : cb_printf_new("/workspace/%s", raw);
    char *out = cb_malloc(strlen(full) + 1), *o = out;
    for (const char *s = full; *s; s++) {
        if (*s == '/' && (o > out && o[-1] == '/'))
            continue;
        if (*s == '.' && o > out && o[-1] == '/' && (s[1] == '/' || s[1] == '\0'))
            continue;  /* a "." component */
        *o++ = *s;
    }
    while (o > out + 1 && o[-1] == '/')
        o--;
    *o = '\0';
    static const char *const banned[] = {"/proc", "/sys", "/dev", "/run/cellbox", "/workspace"};
    bool bad = strcmp(out, "/") == 0;
    for (size_t i = 0; !bad && i < CB_ARRAY_LEN(banned); i++) {
        size_t n = strlen(banned[i]);
        bad = strncmp(out, banned[i], n) == 0 && (out[n] == '\0' || (out[n] == '/' && strcmp(banned[i], "/workspace") != 0));
    }
    if (bad) {
        sb_fail(err, SB_E_INVALID_MOUNT_CONFIG,
                "cannot mount a bucket on %s: choose a folder of its own, such as /workspace/data or /mnt/data", out);
        free(out);
        return NULL;
    }
    return out;
}

/* The credentials: the request's "credentials" {accessKeyId,
 * secretAccessKey[, sessionToken]}, else the sandbox's env AWS_ACCESS_KEY_ID
 * / AWS_SECRET_ACCESS_KEY[ / AWS_SESSION_TOKEN] (as the Cloudflare SDK
 * does). An owned object, or NULL + err. */
static cJSON *credentials(const cJSON *body, const sb_box *b, sb_error *err)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(body, "credentials");
    const char *id, *secret, *token;
    if (c && !cJSON_IsNull(c)) {
        if (!cJSON_IsObject(c))
            return sb_fail(err, SB_E_INVALID_MOUNT_CONFIG, "credentials must be an object "
                           "{accessKeyId, secretAccessKey, sessionToken}"), NULL;
        id = cb_json_str(c, "accessKeyId", NULL);
        secret = cb_json_str(c, "secretAccessKey", NULL);
        token = cb_json_str(c, "sessionToken", NULL);
    } else {
        id = cb_json_str(b->opts.env, "AWS_ACCESS_KEY_ID", NULL);
        secret = cb_json_str(b->opts.env, "AWS_SECRET_ACCESS_KEY", NULL);
        token = cb_json_str(b->opts.env, "AWS_SESSION_TOKEN", NULL);
    }
    if (!id || !*id || !secret || !*secret)
        return sb_fail(err, SB_E_MISSING_CREDENTIALS,
                       "a bucket needs credentials: give credentials {accessKeyId, secretAccessKey} or set "
                       "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the sandbox's env"), NULL;
    if (strlen(id) > 256 || strlen(secret) > 256 || (token && strlen(token) > 4096) || sb_has_ctl(id) ||
        sb_has_ctl(secret) || (token && sb_has_ctl(token)))
        return sb_fail(err, SB_E_INVALID_MOUNT_CONFIG, "credentials hold control characters or are too long"), NULL;
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "accessKeyId", id);
    cJSON_AddStringToObject(out, "secretAccessKey", secret);
    if (token && *token)
        cJSON_AddStringToObject(out, "sessionToken", token);
    return out;
}

/* A mount's saved configuration from a request (owned), or NULL + err. */
static cJSON *conf_from_request(const cJSON *body, const sb_box *b, sb_error *err)
{
    static const char *const strings[] = {"bucket", "mountPath", "endpoint", "prefix", "region"};
    for (size_t i = 0; i < CB_ARRAY_LEN(strings); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, strings[i]);
        if (v && !cJSON_IsNull(v) && !cJSON_IsString(v))
            return sb_fail(err, SB_E_INVALID_MOUNT_CONFIG, "%s must be a string", strings[i]), NULL;
    }
    const char *bucket = cb_json_str(body, "bucket", NULL);
    const char *path = cb_json_str(body, "mountPath", NULL);
    const char *endpoint = cb_json_str(body, "endpoint", NULL);
    if (!bucket || !bucket_ok(bucket))
        return sb_fail(err, SB_E_INVALID_MOUNT_CONFIG,
                       "bucket must be a bucket name (letters, digits, '.', '-', '_'; 1-255)"), NULL;
    if (!path)
        return sb_fail(err, SB_E_INVALID_MOUNT_CONFIG, "mountPath (where the bucket shows in the sandbox) is "
                       "required"), NULL;
    if (!endpoint || (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0) ||
        strlen(endpoint) > 2048 || sb_has_ctl(endpoint) || strchr(endpoint, ',') || strchr(endpoint, ' '))
        return sb_fail(err, SB_E_INVALID_MOUNT_CONFIG,
                       "endpoint must be the store's http:// or https:// URL (e.g. "
                       "https://<account>.r2.cloudflarestorage.com, https://s3.us-east-1.amazonaws.com)"), NULL;
    const char *prefix = cb_json_str(body, "prefix", "");
    if (strlen(prefix) > 1024 || sb_has_ctl(prefix) || has_dotdot(prefix) || strchr(prefix, ','))
        return sb_fail(err, SB_E_INVALID_MOUNT_CONFIG, "prefix must be a key prefix without control "
                       "characters, ',' or '..'"), NULL;
    const char *region = cb_json_str(body, "region", "us-east-1");
    if (!*region || strlen(region) > 64 || strspn(region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(region))
        return sb_fail(err, SB_E_INVALID_MOUNT_CONFIG, "region must be a region name such as us-east-1 or auto"), NULL;
    const cJSON *ro = cJSON_GetObjectItemCaseSensitive(body, "readOnly");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(body, "pathStyle");
    if ((ro && !cJSON_IsBool(ro) && !cJSON_IsNull(ro)) || (ps && !cJSON_IsBool(ps) && !cJSON_IsNull(ps)))
        return sb_fail(err, SB_E_INVALID_MOUNT_CONFIG, "readOnly and pathStyle must be true or false"), NULL;
    cb_autofree char *mp = mount_path(path, err);
    if (!mp)
        return NULL;
    cJSON *cred = credentials(body, b, err);
    if (!cred)
        return NULL;
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "mountPath", mp);
    cJSON_AddStringToObject(m, "bucket", bucket);
    cJSON_AddStringToObject(m, "endpoint", endpoint);
    /* "a/b/" and "/a/b" name the same folder of keys */
    cb_autofree char *pre = cb_strdup(prefix + strspn(prefix, "/"));
    size_t n = strlen(pre);
    while (n && pre[n - 1] == '/')
        pre[--n] = '\0';
    cJSON_AddStringToObject(m, "prefix", pre);
    cJSON_AddStringToObject(m, "region", region);
    cJSON_AddBoolToObject(m, "readOnly", cJSON_IsTrue(ro));
    cJSON_AddBoolToObject(m, "pathStyle", ps && cJSON_IsBool(ps) ? cJSON_IsTrue(ps) : !strstr(endpoint, "amazonaws.com"));
    sb_json_add_now(m, "createdAt");
    cJSON_AddItemToObject(m, "credentials", cred);
    return m;
}

/* ---- mounting ---------------------------------------------------------------------- */

static const char *s3fs_path(void)
{
    static const char *const where[] = {"/usr/bin/s3fs", "/usr/local/bin/s3fs"};
    for (size_t i = 0; i < CB_ARRAY_LEN(where); i++)
        if (access(where[i], X_OK) == 0)
            return where[i];
    return NULL;
}

/* Whether dir is a mount point, from /proc/self/mountinfo: no access to
 * the mount itself (a FUSE file system may not answer yet). */
static bool in_mountinfo(const char *dir)
{
    cb_autofree char *text = cb_read_file("/proc/self/mountinfo", NULL);
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        /* "id parent major:minor root mountpoint ...": the 5th field, with
         * spaces and such as \040 (our folders have none) */
        char *f = line;
        for (int i = 0; i < 4 && f; i++) {
            f = strchr(f, ' ');
            if (f)
                f++;
        }
        if (!f)
            continue;
        size_t n = strcspn(f, " ");
        if (n == strlen(dir) && strncmp(f, dir, n) == 0)
            return true;
    }
    return false;
}

/* What s3fs said that matters ([CRT], [ERR] lines), for an error message. */
static void s3fs_reason(const char *log, cb_buf *out)
{
    for (const char *s = log; *s;) {
        const char *eol = strchr(s, '\n');
        size_t len = eol ? (size_t)(eol - s) : strlen(s);
        if ((memmem(s, len, "[CRT]", 5) || memmem(s, len, "[ERR]", 5)) && out->len < 600) {
            const char *msg = memmem(s, len, "): ", 3);  /* after "file.cpp:func(123)" */
            const char *from = msg ? msg + 3 : s;
            if (out->len)
                cb_buf_puts(out, "; ");
            cb_buf_append(out, from, len - (size_t)(from - s));
        }
        s += len + (eol ? 1 : 0);
    }
}

typedef struct drain_arg {
    int fd;
    pid_t pid;
    char box[64];
    char *path;
    char *work;                 /* s3fs's /tmp, removed once it ended */
} drain_arg;

/* Copies what a running s3fs says that matters to the log, then reaps it. */
static void *drain_main(void *p)
{
    drain_arg *a = p;
    cb_buf line = CB_BUF_INIT;
    char buf[4096];
    ssize_t n;
    while ((n = read(a->fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (line.len < 2000)
                    cb_buf_append(&line, buf + i, 1);
                continue;
            }
            cb_buf_append(&line, "", 1);
            if (strstr(line.data, "[CRT]") || strstr(line.data, "[ERR]"))
                cb_warn("mount", "sandbox %s: s3fs for %s: %s", a->box, a->path, line.data);
            line.len = 0;
        }
    }
    cb_buf_clear(&line);
    close(a->fd);
    int st;
    while (waitpid(a->pid, &st, 0) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&ops_mu);
    live *l = live_find(a->box, a->path);
    if (l && l->pid == a->pid)
        l->pid = 0;
    pthread_mutex_unlock(&ops_mu);
    cb_debug("mount", "sandbox %s: s3fs for %s exited", a->box, a->path);
    if (sb_rm_rf(a->work) < 0)
        cb_warn("mount", "sandbox %s: cannot remove %s: %s", a->box, a->work, strerror(errno));
    free(a->path);
    free(a->work);
    free(a);
    return NULL;
}

/* ---- s3fs without host root ------------------------------------------------------------
 *
 * s3fs parses what the store answers (libcurl, libxml2) and every file
 * operation the sandbox's code makes on the mount. Run as root it would make
 * a bug in any of them the host's root. So the server does the one thing
 * that needs root, the FUSE mount (it opens /dev/fuse and mounts it with
 * fd=N on the host folder), and s3fs runs with the power of the sandbox it
 * serves: as the sandbox's user's host uid (sb_box_user_id; no process of
 * the host has it but the sandbox's, which cannot see s3fs's pid), no
 * capabilities (bounding set empty), no_new_privs, the sandboxes' seccomp
 * filter (no mount, ptrace, bpf, new namespaces...), and namespaces of its
 * own: a pid namespace (it is pid 1 there and sees and signals no other
 * process), an ipc namespace, and a mount namespace where
 *   - every FUSE mount of the server's namespace is detached (its own and
 *     other buckets' being mounted: a copy would keep them alive after the
 *     sandbox unmounts them);
 *   - /tmp is its own folder (STATE/sandboxes/<id>/mnt-tmp/<hex>, owned by
 *     that uid; the host's /tmp is hidden), for its temporary files and the
 *     folder it believes it mounts on (/tmp/mnt);
 *   - /proc is its pid namespace's;
 *   - fusermount is the cellbox binary (see fusermount_standin);
 *   - its root is a read-only tmpfs holding only what it needs of the host
 *     (s3fs_root_plan: /usr, /etc, the /bin, /lib... links or folders, a
 *     few devices, the target of /etc/resolv.conf when it lies elsewhere),
 *     all read-only: a bug in it cannot read the host's world-readable files
 *     (home folders, /var, /srv, /opt...).
 * The network is the server's (it must reach the store), as before.
 *
 * libfuse 2 mounts as non-root through fusermount: it runs /bin/fusermount
 * (else "fusermount" in PATH) with _FUSE_COMMFD=<a unix socket> and receives
 * the /dev/fuse fd over that socket (SCM_RIGHTS, one data byte); at exit it
 * runs `fusermount -u` for the mount point. It first tries mount(2) itself
 * after opening /dev/fuse (which may be 0600, as on Debian hosts where
 * fusermount is setuid: then it gives up); the auto_unmount option makes it
 * go to fusermount straight away (its stat of the mount point, /tmp/mnt,
 * only). s3fs gets the fd the server mounted as fd 3 (S3FS_FD_ENV), and the
 * stand-in hands it back. With auto_unmount libfuse never reaps that
 * fusermount: one zombie in s3fs's pid namespace, gone with it. */

#define S3FS_FD_ENV "CELLBOX_S3FS_FUSE_FD"

/* The fusermount of s3fs's mount namespace is the cellbox binary, run as
 * `fusermount` with S3FS_FD_ENV set: before main, pass that fd on the
 * _FUSE_COMMFD socket (a mount), or do nothing (an unmount: the server's and
 * the sandbox's mounts are the kernel's to end). glibc gives constructors
 * argc, argv and envp. */
__attribute__((constructor)) static void fusermount_standin(int argc, char **argv, char **envp)
{
    (void)envp;
    const char *fd_s = getenv(S3FS_FD_ENV);
    if (!fd_s || argc < 1 || !argv[0])
        return;
    const char *name = strrchr(argv[0], '/');
    if (strcmp(name ? name + 1 : argv[0], "fusermount") != 0)
        return;
    const char *comm_s = getenv("_FUSE_COMMFD");
    if (!comm_s)
        _exit(0);
    int fd = atoi(fd_s), comm = atoi(comm_s);
    char byte = 0;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space,
                         .msg_controllen = sizeof ctl.space};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    ssize_t n;
    while ((n = sendmsg(comm, &msg, 0)) < 0 && errno == EINTR)
        ;
    _exit(n == 1 ? 0 : 1);
}

/* v in decimal, written at the end of num (async-signal-safe). */
static const char *child_uint(char num[16], unsigned v)
{
    char *p = num + 16;
    *--p = '\0';
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) && p > num);
    return p;
}

/* In s3fs's child: a line s3fs_reason() shows, then the end (async-signal-safe). */
static void child_die(const char *what, int e)
{
    char num[16];
    const char *parts[] = {"[CRT] cellbox, starting s3fs: cannot ", what, " (errno ", child_uint(num, (unsigned)e),
                           ")\n"};
    for (size_t i = 0; i < CB_ARRAY_LEN(parts); i++)
        if (write(2, parts[i], strlen(parts[i])) < 0)
            break;
    _exit(127);
}

/* In s3fs's child, in its new mount namespace: detach every FUSE mount
 * (type fuse, fuse.*, fuseblk, fusectl) copied from the server's namespace.
 * Async-signal-safe: a static buffer (the child's own copy). */
static void detach_fuse_mounts(void)
{
    static char text[1 << 20];
    int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        child_die("read /proc/self/mountinfo", errno);
    size_t len = 0;
    ssize_t n;
    while (len < sizeof text - 1 && (n = read(fd, text + len, sizeof text - 1 - len)) != 0) {
        if (n < 0 && errno != EINTR)
            child_die("read /proc/self/mountinfo", errno);
        if (n > 0)
            len += (size_t)n;
    }
    close(fd);
    if (len == sizeof text - 1)  /* a FUSE mount left could outlive its sandbox's */
        child_die("read all of /proc/self/mountinfo (over 1 MiB)", EFBIG);
    text[len] = '\0';
    for (char *line = text, *next; *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        else
            next = line + strlen(line);
        /* "id parent major:minor root mountpoint options... - fstype source ..." */
        char *f = line;
        for (int i = 0; i < 4 && f; i++)
            if ((f = strchr(f, ' ')))
                f++;
        char *sep = f ? strstr(f, " - ") : NULL;
        if (!sep || strncmp(sep + 3, "fuse", 4) != 0)
            continue;
        char *end = strchr(f, ' ');
        *end = '\0';
        /* the kernel escapes ' ', '\t', '\n' and '\\' as \ooo */
        char *o = f;
        for (char *s = f; *s; s++) {
            if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' &&
                s[3] <= '7') {
                *o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
                s += 3;
            } else {
                *o++ = *s;
            }
        }
        *o = '\0';
        umount2(f, MNT_DETACH);  /* under one detached already: gone with it */
    }
}

/* sb_secure_drop_privs with raw syscalls: s3fs's child comes from a raw
 * clone (for its pid namespace) of the threaded server, where glibc's
 * setresuid/setgroups would signal the server's other threads (to change
 * theirs too) under a lock another thread may have held at the clone: a
 * hang. A raw one changes this thread's, the child's only. */
static int drop_root(unsigned user)
{
    if (syscall(SYS_setgroups, 0, NULL) < 0)
        return -1;
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            return -1;
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    /* uid 0 -> non-zero without keep-caps clears every capability set */
    if (syscall(SYS_setresgid, user, user, user) < 0 || syscall(SYS_setresuid, user, user, user) < 0)
        return -1;
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

/* s3fs's root, built on a tmpfs at S3FS_ROOT of its mount namespace (the
 * host's /tmp there, hidden by it) and then made its root: what of the
 * host it sees. */
#define S3FS_ROOT "/tmp"
enum s3fs_root_kind {
    S3FS_TREE,      /* a folder, bound read-only (must exist) */
    S3FS_TOP,       /* a symlink is copied (merged /usr), a folder bound read-only, else nothing */
    S3FS_DEV,       /* a device node, bound */
};
static const struct {
    const char *path;
    enum s3fs_root_kind kind;
} s3fs_root_plan[] = {
    {"/usr", S3FS_TREE},     {"/etc", S3FS_TREE},         {"/bin", S3FS_TOP},
    {"/sbin", S3FS_TOP},     {"/lib", S3FS_TOP},          {"/lib32", S3FS_TOP},
    {"/lib64", S3FS_TOP},    {"/libx32", S3FS_TOP},       {"/dev/null", S3FS_DEV},
    {"/dev/zero", S3FS_DEV}, {"/dev/random", S3FS_DEV},   {"/dev/urandom", S3FS_DEV},
};

/* S3FS_ROOT + path into buf (async-signal-safe). */
static const char *in_root(char *buf, size_t cap, const char *path)
{
    size_t a = strlen(S3FS_ROOT), b = strlen(path);
    if (a + b + 1 > cap)
        child_die("build a path of its root", ENAMETOOLONG);
    memcpy(buf, S3FS_ROOT, a);
    memcpy(buf + a, path, b + 1);
    return buf;
}

/* Bind host path src at dst (in the new root), read-only unless dev. */
static void root_bind(const char *src, const char *dst, bool dev)
{
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
        child_die(src, errno);
    if (!dev && mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        child_die("make its root read-only", errno);
}

/* Folders of path (in the new root) up to its last component, and an empty
 * file or folder for the last one to be mounted on. */
static void root_mkpath(char *path, bool dir)
{
    for (char *p = path + strlen(S3FS_ROOT) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        int rc = mkdir(path, 0755);
        *p = '/';
        if (rc < 0 && errno != EEXIST)
            child_die("make a folder of its root", errno);
    }
    int fd;
    if (dir ? mkdir(path, 0755) < 0 && errno != EEXIST
            : (fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) < 0 || close(fd) < 0)
        child_die("make a mount point of its root", errno);
}

/* Build s3fs's root (see s3fs_root_plan) with its /tmp the folder wfd and
 * make it the root; resolv: the host file /etc/resolv.conf leads to when
 * outside /etc and /usr (systemd-resolved's /run/...), or NULL. */
static void s3fs_root(int wfd, const char *resolv)
{
    char a[4096], b[4096];
    if (mount("tmpfs", S3FS_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755") < 0)
        child_die("mount its root", errno);
    for (size_t i = 0; i < CB_ARRAY_LEN(s3fs_root_plan); i++) {
        const char *p = s3fs_root_plan[i].path;
        struct stat st;
        if (lstat(p, &st) < 0) {
            if (s3fs_root_plan[i].kind == S3FS_TOP)
                continue;
            child_die(p, errno);
        }
        in_root(a, sizeof a, p);
        if (s3fs_root_plan[i].kind == S3FS_TOP && S_ISLNK(st.st_mode)) {
            ssize_t n = readlink(p, b, sizeof b - 1);
            if (n < 0)
                child_die(p, errno);
            b[n] = '\0';
            if (symlink(b, a) < 0)
                child_die("copy a link into its root", errno);
            continue;
        }
        if (s3fs_root_plan[i].kind == S3FS_TOP && !S_ISDIR(st.st_mode))
            continue;
        root_mkpath(a, s3fs_root_plan[i].kind != S3FS_DEV);
        root_bind(p, a, s3fs_root_plan[i].kind == S3FS_DEV);
    }
    if (resolv) {
        root_mkpath((char *)in_root(a, sizeof a, resolv), false);
        root_bind(resolv, a, false);
    }
    /* its /tmp (with the fusermount stand-in mounted in it), its /proc */
    char num[16];
    strcpy(b, "/proc/self/fd/");
    strcat(b, child_uint(num, (unsigned)wfd));
    root_mkpath((char *)in_root(a, sizeof a, "/tmp"), true);
    if (mount(b, a, NULL, MS_BIND | MS_REC, NULL) < 0)
        child_die("mount its /tmp", errno);
    root_mkpath((char *)in_root(a, sizeof a, "/proc"), true);
    if (mount("proc", a, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        child_die("mount its /proc", errno);
    /* libfuse runs /bin/fusermount when it exists: the stand-in there too */
    if (access(in_root(a, sizeof a, "/bin/fusermount"), F_OK) == 0 &&
        mount(in_root(b, sizeof b, "/tmp/.bin/fusermount"), a, NULL, MS_BIND, NULL) < 0)
        child_die("mount its /bin/fusermount", errno);
    if (mount(NULL, S3FS_ROOT, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=0755") < 0)
        child_die("make its root read-only", errno);
    if (chdir(S3FS_ROOT) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0 ||
        chdir("/") < 0)
        child_die("enter its root", errno);
}

/* In s3fs's child (pid 1 of its new pid, mount and ipc namespaces, still
 * the server's root): the setup of the design note above, then s3fs as
 * `user`. Never returns. */
static void s3fs_child(const char *exe, char **argv, char **envp, const char *work, const char *stand_in,
                       int fuse_fd, int exe_tree, const char *exe_path, int log_fd, unsigned user,
                       const char *resolv)
{
    /* the server's 0-2 are open: fuse_fd, exe_tree and log_fd are above */
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
        _exit(127);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        child_die("make its mounts private", errno);
    detach_fuse_mounts();
    /* exe_tree: the server's binary, cloned in the server's namespace (a
     * bind of /proc/self/exe here is refused: its mount is of another
     * namespace). Before /tmp is hidden: the binary may be there. */
    if (syscall(SYS_move_mount, exe_tree, "", AT_FDCWD, stand_in, MOVE_MOUNT_F_EMPTY_PATH) < 0 &&
        mount(exe_path, stand_in, NULL, MS_BIND, NULL) < 0)
        child_die("mount its fusermount", errno);
    /* work may be under the host's /tmp, which its root hides */
    int wfd = open(work, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (wfd < 0)
        child_die("open its /tmp", errno);
    s3fs_root(wfd, resolv);
    if (fuse_fd == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(fuse_fd, 3) < 0)
        child_die("pass the FUSE fd", errno);
    if (syscall(SYS_close_range, 4u, ~0u, 0u) < 0)
        child_die("close the server's fds", errno);
    if (chdir("/tmp") < 0)
        child_die("enter /tmp", errno);
    setsid();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (sb_secure_rlimits() < 0)
        child_die("set its rlimits", errno);
    if (drop_root(user) < 0)
        child_die("drop root", errno);
    if (sb_secure_seccomp() < 0)
        child_die("install the seccomp filter", errno);
    execve(exe, argv, envp);
    child_die("run s3fs", errno);
}

/* Mounts the bucket's FUSE file system on the host folder dir (the server's
 * part: it needs root) and starts s3fs unprivileged to serve it, in work
 * (its /tmp: a new empty folder owned by user, with an empty folder mnt and
 * an empty file .bin/fusermount) for configuration m; *log_fd is its output
 * (stderr and stdout). The pid, or -1 + err (nothing mounted). */
static pid_t s3fs_start(const cJSON *m, unsigned user, const char *dir, const char *work, int *log_fd,
                        sb_error *err)
{
    const char *exe = s3fs_path();
    if (!exe)
        return sb_fail(err, SB_E_MOUNT_NOT_AVAILABLE, "bucket mounts need s3fs on the server's host "
                       "(apt-get install s3fs)"), -1;
    const cJSON *cred = cJSON_GetObjectItemCaseSensitive(m, "credentials");
    const char *prefix = cb_json_str(m, "prefix", "");
    bool ro = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "readOnly"));
    cb_autofree char *what = *prefix ? cb_printf_new("%s:/%s", cb_json_str(m, "bucket", ""), prefix)
                                     : cb_strdup(cb_json_str(m, "bucket", ""));
    /* fsname: which mount an s3fs serves, for ps (the mount itself is the
     * server's, named "s3fs") */
    cb_autofree char *opts = cb_printf_new(
        "url=%s,endpoint=%s,%sallow_other,uid=%u,gid=%u,umask=022,mp_umask=022,tmpdir=/tmp,fsname=%s,"
        "connect_timeout=10,readwrite_timeout=60,retries=3,auto_unmount%s",
        cb_json_str(m, "endpoint", ""), cb_json_str(m, "region", "us-east-1"),
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "pathStyle")) ? "use_path_request_style," : "",
        user, user, dir, ro ? ",ro" : "");
    /* the credentials in the environment (as before): never in argv; only
     * root and s3fs's uid could read it, and no process of that uid sees s3fs */
    cb_autofree char *e_id = cb_printf_new("AWSACCESSKEYID=%s", cb_json_str(cred, "accessKeyId", ""));
    cb_autofree char *e_secret = cb_printf_new("AWSSECRETACCESSKEY=%s", cb_json_str(cred, "secretAccessKey", ""));
    const char *token = cb_json_str(cred, "sessionToken", NULL);
    cb_autofree char *e_token = token ? cb_printf_new("AWSSESSIONTOKEN=%s", token) : NULL;
    char *envp[] = {"PATH=/tmp/.bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/nonexistent", "LANG=C.UTF-8",
                    S3FS_FD_ENV "=3", e_id, e_secret, e_token, NULL};
    char *argv[] = {(char *)exe, what, "/tmp/mnt", "-f", "-o", opts, NULL};
    cb_autofree char *stand_in = cb_printf_new("%s/.bin/fusermount", work);  /* /tmp/.bin/fusermount to s3fs */
    /* the server's part: the FUSE mount, shown to everyone (allow_other;
     * made by root of the host's user namespace), owned by user */
    /* the server's binary as it started (sb_pin.h), not whatever is at
     * its path now */
    const char *exe_path = sb_pin_path(SB_PIN_SELF);
    int exe_tree = sb_pin_tree(SB_PIN_SELF);
    if (exe_tree < 0)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cannot clone the server's binary's mount: %s", strerror(errno)), -1;
    int fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fuse_fd < 0) {
        int e = errno;
        close(exe_tree);
        return sb_fail(err, SB_E_MOUNT_NOT_AVAILABLE, "cannot open /dev/fuse: %s", strerror(e)), -1;
    }
    char kopts[160];
    snprintf(kopts, sizeof kopts, "fd=%d,rootmode=40000,user_id=%u,group_id=%u,allow_other", fuse_fd, user, user);
    if (mount("s3fs", dir, "fuse.s3fs", MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0), kopts) < 0) {
        int e = errno;
        close(fuse_fd);
        close(exe_tree);
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cannot mount FUSE on %s: %s", dir, strerror(e)), -1;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        int e = errno;
        close(fuse_fd);
        close(exe_tree);
        umount2(dir, MNT_DETACH);
        return sb_fail(err, SB_E_INTERNAL_ERROR, "pipe: %s", strerror(e)), -1;
    }
    /* where /etc/resolv.conf leads, when its root would not have it */
    char resolv_buf[PATH_MAX];
    const char *resolv = realpath("/etc/resolv.conf", resolv_buf);
    if (resolv && (strncmp(resolv, "/etc/", 5) == 0 || strncmp(resolv, "/usr/", 5) == 0))
        resolv = NULL;
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        s3fs_child(exe, argv, envp, work, stand_in, fuse_fd, exe_tree, exe_path, p[1], user, resolv);
    int e = errno;
    close(p[1]);
    close(exe_tree);
    close(fuse_fd);  /* s3fs's is the only one: when it ends, the connection ends */
    if (pid < 0) {
        close(p[0]);
        umount2(dir, MNT_DETACH);
        return sb_fail(err, SB_E_INTERNAL_ERROR, "clone: %s", strerror(e)), -1;
    }
    *log_fd = p[0];
    return pid;
}

/* In a child that entered the sandbox's mount namespace: create path (as
 * the sandbox's user), check it is an empty directory, attach the mount
 * tree tfd there (file access as that user). Returns the errno-like outcome: 0, or ENOTDIR/ENOTEMPTY/
 * EROFS/... (only async-signal-safe calls: we forked a threaded process). */
static int attach_child(int pidfd, int tfd, const char *path, unsigned user)
{
    if (setns(pidfd, CLONE_NEWNS) < 0)
        return errno;
    if (chdir("/") < 0)
        return errno;
    /* file access as the sandbox's user: the mount point is made where it
     * may make folders, owned by it (and a file system of the sandbox's own
     * user namespace, its /tmp, could not hold a file of uid 0 anyway) */
    setfsgid(user);
    setfsuid(user);
    if ((uid_t)setfsuid((uid_t)-1) != user)
        return EPERM;
    char buf[1100];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (char *s = buf + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return errno;
        *s = c;
        if (!c)
            break;
    }
    int d = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0)
        return errno;
    char ents[1024];
    long got;
    bool empty = true;
    while (empty && (got = syscall(SYS_getdents64, d, ents, sizeof ents)) > 0) {
        for (long off = 0; off < got;) {
            unsigned short reclen;
            memcpy(&reclen, ents + off + 16, sizeof reclen);
            const char *name = ents + off + 19;
            if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
                empty = false;
            off += reclen;
        }
    }
    close(d);
    if (!empty)
        return ENOTEMPTY;
    if (syscall(SYS_move_mount, tfd, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return errno;
    return 0;
}

/* In a child in the sandbox's mount namespace (pidfd: its agent): attach
 * the mount tree tfd at path (attach_child, as the host uid `user`, the
 * sandbox's user), or unmount path. The outcome
 * (an errno value, 0 = done), or -1 + errno when the child could not run. */
static int in_sandbox_ns(int pidfd, int tfd, const char *path, bool unmount, unsigned user)
{
    pid_t pid = fork();
    if (pid == 0) {
        int rc;
        if (!unmount)
            rc = attach_child(pidfd, tfd, path, user);
        else if (setns(pidfd, CLONE_NEWNS) < 0)
            rc = errno;
        else
            rc = umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 ? errno : 0;
        _exit(rc > 255 ? 255 : rc);
    }
    if (pid < 0)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : EINTR;
}

/* Mount configuration m into the running sandbox b (pidfd: its agent) and
 * record it in the table. Called without ops_mu (it waits for the store:
 * other sandboxes' mounts go on meanwhile). 0, or -1 + err. */
static int mount_one(sb_box *b, int pidfd, unsigned generation, const cJSON *m, int64_t wait_ms, sb_error *err)
{
    const char *path = cb_json_str(m, "mountPath", "");
    /* the host-side mount point is outside the sandbox's folder, so that
     * nothing that walks that folder (its removal) ever enters a bucket */
    cb_autofree char *hex = cb_random_hex(6);
    cb_autofree char *state = cb_strdup(b->dir);
    for (int i = 0; i < 2; i++)
        *strrchr(state, '/') = '\0';   /* STATE/sandboxes/<id> -> STATE */
    cb_autofree char *stage = cb_printf_new("%s/mount-points", state);
    cb_autofree char *dir = cb_printf_new("%s/%s-%s", stage, b->id, hex);
    cb_autofree char *tmp = cb_printf_new("%s/mnt-tmp", b->dir);
    if ((mkdir(stage, 0700) < 0 && errno != EEXIST) || mkdir(dir, 0700) < 0 ||
        (mkdir(tmp, 0700) < 0 && errno != EEXIST))
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cannot make %s: %s", dir, strerror(errno)), -1;
    /* s3fs's /tmp: its own (its temporary files, the folder it believes it
     * mounts on), the empty file its fusermount is mounted on (root's) */
    unsigned user = sb_box_user_id(b);
    cb_autofree char *work = cb_printf_new("%s/%s", tmp, hex);
    cb_autofree char *work_mnt = cb_printf_new("%s/mnt", work);
    cb_autofree char *work_bin = cb_printf_new("%s/.bin", work);
    cb_autofree char *work_fm = cb_printf_new("%s/.bin/fusermount", work);
    int fm = -1;
    if (mkdir(work, 0700) < 0 || mkdir(work_mnt, 0700) < 0 || mkdir(work_bin, 0755) < 0 ||
        (fm = open(work_fm, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755)) < 0 || chown(work_mnt, user, user) < 0 ||
        chown(work, user, user) < 0) {
        int e = errno;
        if (fm >= 0)
            close(fm);
        sb_rm_rf(work);
        rmdir(dir);
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cannot make %s: %s", work, strerror(e)), -1;
    }
    close(fm);
    int log_fd = -1;
    pid_t pid = s3fs_start(m, user, dir, work, &log_fd, err);
    if (pid < 0) {
        sb_rm_rf(work);
        rmdir(dir);
        return -1;
    }
    /* wait for the mount (s3fs first checks the bucket with the store) */
    cb_buf log = CB_BUF_INIT;
    /* s3fs mounts first and checks the bucket with the store after (in its
     * FUSE init): until that check ends, any access to the mount waits for
     * it, for minutes with a store that never answers. So no thread of ours
     * touches the mount before a probe child (statfs, which waits for the
     * init) came back; the mount itself is seen in /proc/self/mountinfo. */
    bool mounted = false, exited = false;
    pid_t probe = -1;
    int st = 0;
    for (int64_t t0 = sb_now_ms(); !mounted && !exited && sb_now_ms() - t0 < wait_ms;) {
        struct pollfd pf = {log_fd, POLLIN, 0};
        if (poll(&pf, 1, 10) > 0) {
            char buf[2048];
            ssize_t n = read(log_fd, buf, sizeof buf);
            if (n > 0 && log.len < 65536)
                cb_buf_append(&log, buf, (size_t)n);
        }
        if (probe < 0 && in_mountinfo(dir)) {
            probe = fork();
            if (probe == 0) {
                struct statfs sf;
                _exit(statfs(dir, &sf) == 0 && (unsigned long)sf.f_type == FUSE_MAGIC ? 0 : 1);
            }
        }
        int pst;
        if (probe > 0 && waitpid(probe, &pst, WNOHANG) == probe) {
            mounted = WIFEXITED(pst) && WEXITSTATUS(pst) == 0;
            probe = mounted ? -1 : 0;  /* 0: ended without the mount (s3fs gave up): no new probe */
        }
        exited = !mounted && waitpid(pid, &st, WNOHANG) == pid;
    }
    bool late = !mounted && !exited;
    if (late) {
        kill(pid, SIGKILL);  /* the FUSE connection ends: a probe still waiting returns */
        waitpid(pid, &st, 0);
        exited = true;
    }
    if (probe > 0)
        waitpid(probe, NULL, 0);
    /* what s3fs said last, its reason, may still be in the pipe */
    for (int i = 0; exited && i < 50 && log.len < 65536; i++) {
        struct pollfd pf = {log_fd, POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0)
            continue;
        char buf[2048];
        ssize_t n = read(log_fd, buf, sizeof buf);
        if (n <= 0)
            break;  /* EOF: all of it */
        cb_buf_append(&log, buf, (size_t)n);
    }
    cb_buf_append(&log, "", 1);
    log.len--;
    int rc = -1;
    if (!mounted) {
        cb_buf why = CB_BUF_INIT;
        s3fs_reason(log.data, &why);
        cb_buf_append(&why, "", 1);
        if (!late)
            sb_fail(err, SB_E_S3FS_MOUNT_ERROR, "cannot mount bucket '%s' from %s: %s", cb_json_str(m, "bucket", ""),
                    cb_json_str(m, "endpoint", ""), why.len > 1 ? why.data : "s3fs exited");
        else
            sb_fail(err, SB_E_S3FS_MOUNT_ERROR, "cannot mount bucket '%s': %s did not answer within %.1f s",
                    cb_json_str(m, "bucket", ""), cb_json_str(m, "endpoint", ""), (double)wait_ms / 1000);
        cb_buf_clear(&why);
        close(log_fd);
        umount2(dir, MNT_DETACH);
        rmdir(dir);
        sb_rm_rf(work);
        cb_buf_clear(&log);
        return -1;
    }
    cb_buf_clear(&log);
    int tfd = (int)syscall(SYS_open_tree, AT_FDCWD, dir, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    int out = tfd < 0 ? -1 : in_sandbox_ns(pidfd, tfd, path, false, sb_box_user_id(b));
    int e = errno;
    if (tfd >= 0)
        close(tfd);
    umount2(dir, MNT_DETACH);  /* the sandbox's is now the bucket's only mount */
    rmdir(dir);
    if (tfd < 0 || out != 0) {
        int why = tfd < 0 || out < 0 ? e : out;
        if (why == ENOTEMPTY)
            sb_fail(err, SB_E_DIRECTORY_NOT_EMPTY, "cannot mount on %s: it is not an empty folder (nothing "
                    "there is hidden or lost: empty it or choose another path)", path);
        else if (why == ENOTDIR || why == EEXIST)
            sb_fail(err, SB_E_INVALID_MOUNT_CONFIG, "cannot mount on %s: it is not a folder", path);
        else if (why == EROFS || why == EACCES || why == EPERM)
            sb_fail(err, SB_E_INVALID_MOUNT_CONFIG, "cannot make the mount point %s (%s): the sandbox's root is "
                    "read-only; mount under /workspace, /tmp or /mnt", path, strerror(why));
        else
            sb_fail(err, SB_E_S3FS_MOUNT_ERROR, "cannot attach the bucket at %s: %s", path, strerror(why));
        /* the mount is gone with its last reference: s3fs ends */
        kill(pid, SIGTERM);
        close(log_fd);
        waitpid(pid, &st, 0);
        sb_rm_rf(work);
        return -1;
    }
    /* recorded before the log thread starts: it clears pid when s3fs ends */
    pthread_mutex_lock(&ops_mu);
    live *l = live_get(b->id, path);
    l->pid = pid;
    l->generation = generation;
    free(l->error);
    l->error = NULL;
    pthread_mutex_unlock(&ops_mu);
    drain_arg *a = cb_calloc(1, sizeof *a);
    a->fd = log_fd;
    a->pid = pid;
    snprintf(a->box, sizeof a->box, "%s", b->id);
    a->path = cb_strdup(path);
    a->work = cb_strdup(work);
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &at, drain_main, a) != 0) {
        /* out of threads: s3fs keeps serving (a log line it writes now gets
         * EPIPE) and stays a zombie after it ends, until the server exits */
        close(log_fd);
        cb_warn("mount", "sandbox %s: cannot start the s3fs log thread for %s", b->id, path);
        free(a->path);
        free(a->work);
        free(a);
    }
    pthread_attr_destroy(&at);
    rc = 0;
    char kv[128];
    snprintf(kv, sizeof kv, "sandbox=%s pid=%d", b->id, (int)pid);
    cb_logkv(CB_LOG_INFO, "mount", kv, "bucket %s mounted at %s", cb_json_str(m, "bucket", ""), path);
    return rc;
}

/* ---- replies -------------------------------------------------------------------------- */

/* A mount as replies show it: never the credentials. ops_mu held. */
static cJSON *mount_json(const sb_box *b, const cJSON *m, unsigned generation, bool running)
{
    cJSON *j = cJSON_CreateObject();
    static const char *const keys[] = {"mountPath", "bucket", "endpoint", "prefix", "region"};
    for (size_t i = 0; i < CB_ARRAY_LEN(keys); i++)
        cJSON_AddStringToObject(j, keys[i], cb_json_str(m, keys[i], ""));
    cJSON_AddBoolToObject(j, "readOnly", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "readOnly")));
    cJSON_AddBoolToObject(j, "pathStyle", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "pathStyle")));
    cJSON_AddStringToObject(j, "createdAt", cb_json_str(m, "createdAt", ""));
    const cJSON *cred = cJSON_GetObjectItemCaseSensitive(m, "credentials");
    cJSON_AddStringToObject(j, "accessKeyId", cb_json_str(cred, "accessKeyId", ""));
    live *l = live_find(b->id, cb_json_str(m, "mountPath", ""));
    const char *state = !running ? "stopped"
                        : l && l->pid > 0 && l->generation == generation ? "mounted"
                        : l && l->error ? "failed" : "unmounted";
    cJSON_AddStringToObject(j, "state", state);
    if (l && l->error && strcmp(state, "failed") == 0)
        cJSON_AddStringToObject(j, "error", l->error);
    return j;
}

/* b's agent pidfd (dup, owned) and start generation while it runs; -1 + err. */
static int box_agent(sb_box *b, unsigned *generation, sb_error *err)
{
    pthread_mutex_lock(&b->mu);
    int fd = b->state == SB_BOX_RUNNING && b->pidfd >= 0 ? fcntl(b->pidfd, F_DUPFD_CLOEXEC, 3) : -1;
    *generation = b->generation;
    pthread_mutex_unlock(&b->mu);
    if (fd < 0)
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "sandbox '%s' is not running", b->id), -1;
    return fd;
}

int sb_mount_create(sb_req *r, sb_box *b, sb_error *err)
{
    if (!sb_boxes_isolated())
        return sb_fail(err, SB_E_MOUNT_NOT_AVAILABLE, "bucket mounts need isolation (the server runs with "
                       "--isolation none)"), -1;
    if (!cJSON_IsObject(r->json))
        return sb_fail(err, SB_E_INVALID_MOUNT_CONFIG, "the body must be a JSON object {bucket, mountPath, "
                       "endpoint, credentials, ...}"), -1;
    cJSON *m = conf_from_request(r->json, b, err);
    if (!m)
        return -1;
    if (sb_box_acquire(b, err) < 0) {
        cJSON_Delete(m);
        return -1;
    }
    unsigned gen;
    int pidfd = box_agent(b, &gen, err);
    int rc = -1;
    if (pidfd >= 0) {
        const char *path = cb_json_str(m, "mountPath", "");
        pthread_mutex_lock(&ops_mu);
        cJSON *all = conf_load(b);
        live *l = live_find(b->id, path);
        bool go = false;
        if (l && l->busy)
            sb_fail(err, SB_E_BUCKET_ALREADY_MOUNTED, "a bucket is being mounted at %s now", path);
        else if (conf_find(all, path) && l && l->pid > 0 && l->generation == gen)
            sb_fail(err, SB_E_BUCKET_ALREADY_MOUNTED, "a bucket is already mounted at %s", path);
        else if (!conf_find(all, path) && cJSON_GetArraySize(all) >= MOUNTS_MAX)
            sb_fail(err, SB_E_INVALID_MOUNT_CONFIG, "a sandbox can have at most %d bucket mounts", MOUNTS_MAX);
        else
            go = live_get(b->id, path)->busy = true;
        cJSON_Delete(all);
        pthread_mutex_unlock(&ops_mu);
        /* the wait for the store runs without ops_mu */
        bool mounted = go && mount_one(b, pidfd, gen, m, MOUNT_WAIT_MS, err) == 0;
        cJSON *reply = NULL;
        pthread_mutex_lock(&ops_mu);
        if (go && (l = live_find(b->id, path)))
            l->busy = false;
        if (mounted) {
            all = conf_load(b);
            for (int i = cJSON_GetArraySize(all) - 1; i >= 0; i--)
                if (strcmp(cb_json_str(cJSON_GetArrayItem(all, i), "mountPath", ""), path) == 0)
                    cJSON_DeleteItemFromArray(all, i);
            cJSON_AddItemReferenceToArray(all, m);
            rc = conf_save(b, all, err);
            cJSON_Delete(all);
            reply = rc == 0 ? mount_json(b, m, gen, true) : NULL;
        }
        pthread_mutex_unlock(&ops_mu);
        close(pidfd);
        if (reply) {
            cJSON_AddBoolToObject(reply, "success", true);
            rc = sb_reply_json(r, 201, reply);
        }
    }
    sb_box_release(b);
    cJSON_Delete(m);
    return rc;
}

int sb_mount_list(sb_req *r, sb_box *b, sb_error *err)
{
    (void)err;
    pthread_mutex_lock(&b->mu);
    bool running = b->state == SB_BOX_RUNNING;
    unsigned gen = b->generation;
    pthread_mutex_unlock(&b->mu);
    pthread_mutex_lock(&ops_mu);
    cJSON *all = conf_load(b);
    cJSON *arr = cJSON_CreateArray(), *m;
    cJSON_ArrayForEach(m, all) cJSON_AddItemToArray(arr, mount_json(b, m, gen, running));
    pthread_mutex_unlock(&ops_mu);
    cJSON_Delete(all);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "mounts", arr);
    return sb_reply_json(r, 200, j);
}

int sb_mount_delete(sb_req *r, sb_box *b, sb_error *err)
{
    const char *raw = sb_req_query(r, "mountPath");
    if (!raw && cJSON_IsObject(r->json))
        raw = cb_json_str(r->json, "mountPath", NULL);
    if (!raw)
        return sb_fail(err, SB_E_INVALID_MOUNT_CONFIG, "mountPath (the mount to remove) is required"), -1;
    cb_autofree char *path = mount_path(raw, err);
    if (!path)
        return -1;
    pthread_mutex_lock(&ops_mu);
    cJSON *all = conf_load(b);
    bool known = conf_find(all, path) != NULL;
    pthread_mutex_unlock(&ops_mu);
    cJSON_Delete(all);
    if (!known)
        return sb_fail(err, SB_E_MOUNT_NOT_FOUND, "no bucket is mounted at %s", path), -1;
    /* unmount in the running sandbox; a stopped one has nothing mounted */
    pthread_mutex_lock(&b->mu);
    int pidfd = b->state == SB_BOX_RUNNING && b->pidfd >= 0 ? fcntl(b->pidfd, F_DUPFD_CLOEXEC, 3) : -1;
    unsigned gen = b->generation;
    if (pidfd >= 0)
        b->active++;  /* keep the sleeper away meanwhile, as sb_box_acquire does */
    pthread_mutex_unlock(&b->mu);
    pthread_mutex_lock(&ops_mu);
    live *l = live_find(b->id, path);
    int rc = 0;
    if (l && l->busy)
        rc = sb_fail(err, SB_E_BUCKET_ALREADY_MOUNTED, "a bucket is being mounted at %s now: try again when "
                     "that ends", path);
    else if (pidfd >= 0 && l && l->pid > 0 && l->generation == gen) {
        int out = in_sandbox_ns(pidfd, -1, path, true, 0);
        if (out != 0 && out != EINVAL && out != ENOENT)
            rc = sb_fail(err, SB_E_INTERNAL_ERROR, "cannot unmount %s: %s", path, strerror(out < 0 ? errno : out));
    }
    if (rc == 0) {
        all = conf_load(b);
        for (int i = cJSON_GetArraySize(all) - 1; i >= 0; i--)
            if (strcmp(cb_json_str(cJSON_GetArrayItem(all, i), "mountPath", ""), path) == 0)
                cJSON_DeleteItemFromArray(all, i);
        rc = conf_save(b, all, err);
        cJSON_Delete(all);
        live_drop(b->id, path);
    }
    pthread_mutex_unlock(&ops_mu);
    if (pidfd >= 0) {
        close(pidfd);
        sb_box_release(b);
    }
    if (rc < 0)
        return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    cJSON_AddStringToObject(j, "mountPath", path);
    sb_json_add_now(j, "timestamp");
    return sb_reply_json(r, 200, j);
}

void sb_mounts_on_start(sb_box *b)
{
    if (!sb_boxes_isolated())
        return;
    cb_autofree char *file = conf_file(b);
    if (access(file, F_OK) != 0)
        return;  /* the common case: no mounts, nothing to read */
    pthread_mutex_lock(&ops_mu);
    cJSON *all = conf_load(b), *m;
    pthread_mutex_unlock(&ops_mu);
    /* b->mu is held (no request of this sandbox runs); ops_mu is not, so
     * other sandboxes' mounts go on while this one waits for its store */
    int64_t t0 = sb_now_ms();
    cJSON_ArrayForEach(m, all) {
        sb_error err = {0};
        const char *path = cb_json_str(m, "mountPath", "");
        /* the start holds b->mu: every bucket together gets START_WAIT_MS */
        int64_t left = START_WAIT_MS - (sb_now_ms() - t0);
        int rc = -1;
        if (left > 0)
            rc = mount_one(b, b->pidfd, b->generation, m, left < MOUNT_WAIT_MS ? left : MOUNT_WAIT_MS, &err);
        else
            sb_fail(&err, SB_E_S3FS_MOUNT_ERROR, "not mounted: the sandbox's start waited %d s for its "
                    "other buckets", START_WAIT_MS / 1000);
        if (rc < 0) {
            pthread_mutex_lock(&ops_mu);
            live *l = live_get(b->id, path);
            free(l->error);
            l->error = cb_strdup(err.msg);
            l->pid = 0;
            pthread_mutex_unlock(&ops_mu);
            cb_warn("mount", "sandbox %s: cannot mount bucket %s at %s again: %s", b->id,
                    cb_json_str(m, "bucket", ""), path, err.msg);
        }
    }
    cJSON_Delete(all);
}

void sb_mounts_on_load(sb_box *b)
{
    cb_autofree char *tmp = cb_printf_new("%s/mnt-tmp", b->dir);
    if (access(tmp, F_OK) == 0 && sb_rm_rf(tmp) < 0)
        cb_warn("mount", "sandbox %s: cannot remove the work folders of earlier s3fs in %s: %s", b->id, tmp,
                strerror(errno));
}

void sb_mounts_on_delete(sb_box *b)
{
    pthread_mutex_lock(&ops_mu);
    live_drop(b->id, NULL);
    pthread_mutex_unlock(&ops_mu);
}
