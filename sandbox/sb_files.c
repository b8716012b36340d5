/* sandbox/sb_files.c: the files API, done by the server inside a sandbox's
 * root with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS).
 *
 * The root fd is /proc/<agent>/root: the sandbox's own "/", with its mounts.
 * Every path a client gives is made absolute (relative ones are relative to
 * /workspace), normalised lexically (so the last component is a real name)
 * and then resolved by the kernel inside that root: "..", absolute symlinks
 * and relative symlinks all stay in the sandbox. Final components are only
 * touched through their parent's fd with *at() calls that do not follow
 * symlinks (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, rename/unlink of the name).
 *
 * The server is root on the host, so it must never act on kernel file
 * systems the sandbox sees: anything on procfs, sysfs, devpts, cgroupfs or a
 * device/FIFO/socket is refused (sb_files_check_fs). Created files and
 * folders are given to the sandbox's user. Writes go to a temporary file in
 * the same folder and are renamed into place (atomic replace); raw uploads
 * stream to it chunk by chunk, so size is bounded only by the file system.
 *
 * Names are bytes, not text: every path a request names can also be given
 * as `pathBase64` (and `oldPathBase64`...), decoded by sb_json_path_arg and
 * then held to exactly the rules above; every name or path a reply holds is
 * added with sb_json_add_path (U+FFFD where the bytes are not UTF-8, plus
 * the exact bytes in `…Base64`). Nothing here writes a name into JSON with
 * cJSON_AddStringToObject.
 */
#include "config.h"
#include "sandbox/sb_api.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/fsuid.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "sandbox/sb_util.h"

#define READ_JSON_LIMIT (32u << 20)
#define LIST_LIMIT 100000
#define LIST_DEPTH_MAX 256            /* recursive listing, like recursive delete */

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static bool files_isolated(void)
{
    /* With --isolation none the root is the sandbox's state folder and
     * files stay owned by the server user. */
    return sb_boxes_isolated();
}

/* File work is done with this thread's file-system identity set to the
 * sandbox's user (setfsuid/setfsgid are per thread) and without
 * supplementary groups: the kernel then checks permissions exactly as for
 * the sandbox's own code, new files belong to that user, and file systems
 * mounted inside the sandbox's user namespace (its /tmp) accept the new
 * inodes. Only the fd on the root was opened as root. The groups matter: a
 * server started with some (root's under sudo, a service's
 * SupplementaryGroups=) read a workspace file readable by one of them only,
 * which the sandbox's user may not. setgroups by raw syscall changes this
 * thread only (glibc's wrapper changes every thread's); the server's list
 * comes back when the thread is root again. */
static gid_t *server_groups;           /* the server's, read once */
static int n_server_groups;
static pthread_once_t server_groups_once = PTHREAD_ONCE_INIT;
static __thread bool groups_dropped;  /* this thread has none now */

static void server_groups_read(void)
{
    int n = getgroups(0, NULL);
    if (n > 0) {
        server_groups = cb_malloc((size_t)n * sizeof *server_groups);
        n = getgroups(n, server_groups);
    }
    n_server_groups = n > 0 ? n : 0;
}

static void files_identity(unsigned id, bool user)
{
    if (!files_isolated())
        return;
    if (user && !groups_dropped) {
        pthread_once(&server_groups_once, server_groups_read);
        syscall(SYS_setgroups, (size_t)0, NULL);
        groups_dropped = true;
    }
    setfsgid(id);
    setfsuid(id);
    if (!user && groups_dropped) {
        syscall(SYS_setgroups, (size_t)n_server_groups, server_groups);
        groups_dropped = false;
    }
}

void sb_files_as_user(const sb_box *b)
{
    files_identity(sb_box_user_id(b), true);
}

void sb_files_as_server(void)
{
    files_identity(0, false);
}

static void give_to_user(int dirfd, const char *name)
{
    (void)dirfd;
    (void)name;  /* the fs identity already made it the user's */
}

static int err_errno(sb_error *err, int e, const char *what, const char *path)
{
    return sb_fail(err, sb_err_from_errno(e), "%s %s: %s", what, path, strerror(e)), -1;
}

/* Kernel file systems are never read or written through the API. */
int sb_files_check_fs(int fd, const char *path, sb_error *err)
{
    struct statfs sf;
    if (fstatfs(fd, &sf) < 0)
        return err_errno(err, errno, "statfs", path);
    switch ((unsigned long)sf.f_type) {
    case PROC_SUPER_MAGIC: case SYSFS_MAGIC: case DEVPTS_SUPER_MAGIC: case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC: case DEBUGFS_MAGIC: case SECURITYFS_MAGIC: case BPF_FS_MAGIC:
        return sb_fail(err, SB_E_PERMISSION_DENIED, "%s: kernel file systems are not available "
                       "through the files API", path), -1;
    }
    return 0;
}

/* Absolute, lexically normalised sandbox path (owned). ".." stops at "/".
 * strtok_r: requests run on threads of their own. */
char *sb_files_norm_path(const char *in, sb_error *err)
{
    if (!in || !*in) {
        sb_fail(err, SB_E_VALIDATION_FAILED, "path is required");
        return NULL;
    }
    if (strlen(in) > 4096) {
        sb_fail(err, SB_E_NAME_TOO_LONG, "path is longer than 4096 bytes");
        return NULL;
    }
    cb_autofree char *full = in[0] == '/' ? cb_strdup(in) : cb_printf_new("/workspace/%s", in);
    char *out = cb_malloc(strlen(full) + 2);
    size_t n = 0;
    out[n++] = '/';
    char *save = NULL;
    for (char *tok = strtok_r(full, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        if (strcmp(tok, ".") == 0)
            continue;
        if (strcmp(tok, "..") == 0) {
            while (n > 1 && out[n - 1] != '/')
                n--;
            if (n > 1)
                n--;
            continue;
        }
        if (n > 1)
            out[n++] = '/';
        size_t l = strlen(tok);
        memcpy(out + n, tok, l);
        n += l;
    }
    out[n] = '\0';
    return out;
}


/* Split a normalised path into its parent's fd and the last name. */
static int open_parent(int root, const char *path, const char **name, sb_error *err)
{
    const char *slash = strrchr(path, '/');
    if (!slash || !slash[1])
        return sb_fail(err, SB_E_VALIDATION_FAILED, "'%s' has no file name", path), -1;
    *name = slash + 1;
    cb_autofree char *parent = cb_strndup(path, (size_t)(slash - path));
    int fd = sb_open_in_root(root, parent[0] ? parent : "/", O_PATH | O_DIRECTORY, 0);
    if (fd < 0)
        return err_errno(err, errno, "open folder", parent[0] ? parent : "/");
    if (sb_files_check_fs(fd, path, err) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* mkdir -p inside the root; every prefix is resolved from the root again. */
static int mkdir_in(int root, const char *path, sb_error *err)
{
    cb_autofree char *p = cb_strdup(path);
    size_t len = strlen(p);
    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        int fd = sb_open_in_root(root, p, O_PATH | O_DIRECTORY, 0);
        if (fd < 0 && errno == ENOENT) {
            const char *name;
            int parent = open_parent(root, p, &name, err);
            if (parent < 0)
                return -1;
            if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST) {
                int e = errno;
                close(parent);
                return err_errno(err, e, "mkdir", p);
            }
            give_to_user(parent, name);
            close(parent);
            fd = sb_open_in_root(root, p, O_PATH | O_DIRECTORY, 0);
        }
        if (fd < 0)
            return err_errno(err, errno, "mkdir", p);
        close(fd);
        p[i] = c;
    }
    return 0;
}

/* ---- shared request plumbing --------------------------------------------------- */

typedef struct fctx {
    sb_box *b;
    int root;
    char *path;
} fctx;

static void fctx_clear(fctx *c)
{
    sb_files_as_server();
    if (c->root >= 0)
        close(c->root);
    if (c->b) {
        sb_box_release(c->b);
        sb_box_unref(c->b);
    }
    free(c->path);
}

/* Find the sandbox, start it, open its root, normalise path. */
static int fctx_open_path(sb_req *r, const char *path, fctx *c, sb_error *err)
{
    memset(c, 0, sizeof *c);
    c->root = -1;
    c->b = sb_box_get(r->params[0]);
    if (!c->b)
        return sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' not found", r->params[0]), -1;
    if (sb_box_acquire_files(c->b, err) < 0) {
        sb_box_unref(c->b);
        c->b = NULL;
        return -1;
    }
    c->root = sb_box_root(c->b, err);
    if (c->root < 0)
        return -1;
    c->path = sb_files_norm_path(path, err);
    if (!c->path)
        return -1;
    sb_files_as_user(c->b);
    return 0;
}

/* The path a request names: `path` or `pathBase64` in the JSON body or,
 * without them, in the query (GET and PUT …/files/content). Owned; NULL,
 * without an error, when none is given. */
static int req_path(sb_req *r, char **out, sb_error *err)
{
    if (r->json && sb_json_path_arg(r->json, "path", out, err) < 0)
        return -1;
    if (*out)
        return 0;
    /* libmicrohttpd unescapes %00 into a NUL that ends the value's C
     * string: "?path=keep%00x" named "keep", and a PUT replaced it. No path
     * holds a NUL (a JSON body's \u0000 is refused the same way). */
    const char *query = r->raw_uri ? strchr(r->raw_uri, '?') : NULL;
    if (query && strstr(query, "%00"))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "the query holds %%00 (a NUL byte), which no "
                       "path can hold"), -1;
    return sb_bytes_arg("path", sb_req_query(r, "path"), sb_req_query(r, "pathBase64"), out, err);
}

/* fctx_open_path on the request's own path (dflt when it names none). */
static int fctx_open(sb_req *r, const char *dflt, fctx *c, sb_error *err)
{
    memset(c, 0, sizeof *c);
    c->root = -1;
    cb_autofree char *path = NULL;
    if (req_path(r, &path, err) < 0)
        return -1;
    return fctx_open_path(r, path ? path : dflt, c, err);
}

static int reply_fail(sb_req *r, fctx *c, sb_error *err)
{
    fctx_clear(c);
    return sb_reply_error(r, err);
}

static const char *type_of(mode_t m)
{
    return S_ISREG(m) ? "file" : S_ISDIR(m) ? "directory" : S_ISLNK(m) ? "symlink" : "other";
}

static cJSON *entry_json(const sb_box *b, const char *name, const char *abs, const char *rel, const struct stat *st)
{
    cJSON *e = cJSON_CreateObject();
    sb_json_add_path(e, "name", name);
    sb_json_add_path(e, "absolutePath", abs);
    if (rel)
        sb_json_add_path(e, "relativePath", rel);
    cJSON_AddStringToObject(e, "type", type_of(st->st_mode));
    cJSON_AddNumberToObject(e, "size", (double)st->st_size);
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", st->st_mode & 07777);
    cJSON_AddStringToObject(e, "mode", mode);
    char date[CB_ISO_DATE_LEN];
    cb_iso_date(date, (int64_t)st->st_mtim.tv_sec * 1000000 + st->st_mtim.tv_nsec / 1000);
    cJSON_AddStringToObject(e, "modifiedAt", date);
    /* as the sandbox's user sees it */
    bool owner = !files_isolated() || st->st_uid == sb_box_user_id(b);
    unsigned bits = owner ? (st->st_mode >> 6) & 7 : st->st_mode & 7;
    cJSON *perm = cJSON_AddObjectToObject(e, "permissions");
    cJSON_AddBoolToObject(perm, "readable", bits & 4);
    cJSON_AddBoolToObject(perm, "writable", bits & 2);
    cJSON_AddBoolToObject(perm, "executable", bits & 1);
    return e;
}

static cJSON *ok_json(const char *path)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    if (path)
        sb_json_add_path(j, "path", path);
    sb_json_add_now(j, "timestamp");
    return j;
}

/* Open a regular file for reading; fills *st. */
static int open_regular(fctx *c, struct stat *st, sb_error *err)
{
    int fd = sb_open_in_root(c->root, c->path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
    if (fd < 0 && errno == ENXIO)  /* a socket (or a device without its driver) */
        return sb_fail(err, SB_E_PERMISSION_DENIED, "%s is not a regular file", c->path), -1;
    if (fd < 0)
        return err_errno(err, errno, "open", c->path);
    if (sb_files_check_fs(fd, c->path, err) < 0 || fstat(fd, st) < 0) {
        close(fd);
        return -1;
    }
    if (S_ISDIR(st->st_mode)) {
        close(fd);
        return sb_fail(err, SB_E_IS_DIRECTORY, "%s is a directory", c->path), -1;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return sb_fail(err, SB_E_PERMISSION_DENIED, "%s is not a regular file", c->path), -1;
    }
    fcntl(fd, F_SETFL, 0);
    return fd;
}

/* ---- read ------------------------------------------------------------------------ */

int sb_files_read(sb_req *r)
{
    fctx c;
    sb_error err = {0};
    if (fctx_open(r, NULL, &c, &err) < 0)
        return reply_fail(r, &c, &err);
    const char *enc = r->json ? cb_json_str(r->json, "encoding", "auto") : "auto";
    if (strcmp(enc, "auto") && strcmp(enc, "utf-8") && strcmp(enc, "utf8") && strcmp(enc, "base64")) {
        sb_fail(&err, SB_E_VALIDATION_FAILED, "encoding must be utf-8 or base64");
        return reply_fail(r, &c, &err);
    }
    struct stat st;
    cb_autoclose int fd = open_regular(&c, &st, &err);
    if (fd < 0)
        return reply_fail(r, &c, &err);
    if ((uint64_t)st.st_size > READ_JSON_LIMIT) {
        sb_fail(&err, SB_E_FILE_TOO_LARGE, "%s has %lld bytes; JSON reads stop at %u: use GET "
                ".../files/content?path=... for the raw bytes", c.path, (long long)st.st_size,
                READ_JSON_LIMIT);
        return reply_fail(r, &c, &err);
    }
    cb_buf data = CB_BUF_INIT;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cb_buf_clear(&data);
            err_errno(&err, errno, "read", c.path);
            return reply_fail(r, &c, &err);
        }
        if (n == 0 || data.len + (size_t)n > READ_JSON_LIMIT)
            break;
        cb_buf_append(&data, buf, (size_t)n);
    }
    bool binary = !sb_utf8_valid(data.data ? data.data : "", data.len) ||
                  (data.len && memchr(data.data, 0, data.len));
    bool b64 = binary || strcmp(enc, "base64") == 0;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    sb_json_add_path(j, "path", c.path);
    if (b64) {
        cb_autofree char *text = sb_b64_encode(data.data ? data.data : "", data.len);
        cJSON_AddStringToObject(j, "content", text);
    } else {
        cJSON_AddStringToObject(j, "content", data.data ? data.data : "");
    }
    cJSON_AddStringToObject(j, "encoding", b64 ? "base64" : "utf-8");
    cJSON_AddBoolToObject(j, "isBinary", binary);
    const char *slash = strrchr(c.path, '/');
    cJSON_AddStringToObject(j, "mimeType", sb_mime_guess(slash ? slash + 1 : c.path));
    cJSON_AddNumberToObject(j, "size", (double)data.len);
    cb_buf_clear(&data);
    fctx_clear(&c);
    return sb_reply_json(r, 200, j);
}

int sb_files_read_raw(sb_req *r)
{
    fctx c;
    sb_error err = {0};
    if (fctx_open(r, NULL, &c, &err) < 0)
        return reply_fail(r, &c, &err);
    struct stat st;
    int fd = open_regular(&c, &st, &err);
    if (fd < 0)
        return reply_fail(r, &c, &err);
    const char *slash = strrchr(c.path, '/');
    const char *mime = sb_mime_guess(slash ? slash + 1 : c.path);
    fctx_clear(&c);
    /* MHD sends it with sendfile, from the open fd, in pieces */
    return sb_reply_fd(r, fd, (uint64_t)st.st_size, mime);
}

/* ---- write ------------------------------------------------------------------------- */

typedef struct writer {
    fctx c;
    int dirfd;
    const char *name;        /* in c.path */
    char tmp[96];
    int fd;
    mode_t mode;
    uint64_t bytes;
    bool committed;
} writer;

static void writer_free(void *p)
{
    writer *w = p;
    if (w->fd >= 0)
        close(w->fd);
    if (!w->committed && w->tmp[0] && w->dirfd >= 0) {
        sb_files_as_user(w->c.b);
        unlinkat(w->dirfd, w->tmp, 0);
    }
    if (w->dirfd >= 0)
        close(w->dirfd);
    fctx_clear(&w->c);
    free(w);
}

/* Resolve the target, create its parents and a temp file beside it. */
static writer *writer_begin(sb_req *r, mode_t mode, sb_error *err)
{
    writer *w = cb_calloc(1, sizeof *w);
    w->dirfd = w->fd = -1;
    w->mode = mode;
    if (fctx_open(r, NULL, &w->c, err) < 0)
        goto fail;
    if (strcmp(w->c.path, "/") == 0) {
        sb_fail(err, SB_E_IS_DIRECTORY, "/ is a directory");
        goto fail;
    }
    const char *slash = strrchr(w->c.path, '/');
    if (slash != w->c.path) {
        cb_autofree char *parent = cb_strndup(w->c.path, (size_t)(slash - w->c.path));
        if (mkdir_in(w->c.root, parent, err) < 0)
            goto fail;
    }
    w->dirfd = open_parent(w->c.root, w->c.path, &w->name, err);
    if (w->dirfd < 0)
        goto fail;
    struct stat st;
    if (fstatat(w->dirfd, w->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
        sb_fail(err, SB_E_IS_DIRECTORY, "%s is a directory", w->c.path);
        goto fail;
    }
    char *rnd = cb_random_hex(8);
    snprintf(w->tmp, sizeof w->tmp, ".cellbox-upload-%s", rnd);
    free(rnd);
    w->fd = openat(w->dirfd, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (w->fd < 0) {
        w->tmp[0] = '\0';
        err_errno(err, errno, "create", w->c.path);
        goto fail;
    }
    fchmod(w->fd, mode);
    sb_files_as_server();  /* between upload chunks the thread is root again */
    return w;
fail:
    writer_free(w);
    return NULL;
}

static int writer_write(writer *w, const void *data, size_t len, sb_error *err)
{
    if (cb_write_all(w->fd, data, len) < 0)
        return err_errno(err, errno, "write", w->c.path);
    w->bytes += len;
    return 0;
}

static int writer_commit(writer *w, sb_error *err)
{
    if (close(w->fd) < 0) {
        w->fd = -1;
        return err_errno(err, errno, "write", w->c.path);
    }
    w->fd = -1;
    sb_files_as_user(w->c.b);
    int rc = renameat(w->dirfd, w->tmp, w->dirfd, w->name);
    int e = errno;
    sb_files_as_server();
    if (rc < 0)
        return err_errno(err, e, "rename into place", w->c.path);
    w->committed = true;
    return 0;
}

static mode_t mode_param(const char *s)
{
    if (!s)
        return 0644;
    char *end;
    long m = strtol(s, &end, 8);
    return *end || m < 0 || m > 07777 ? (mode_t)-1 : (mode_t)(m & 0777);
}

int sb_files_write(sb_req *r)
{
    sb_error err = {0};
    cJSON *body = r->json;
    const char *content = body ? cb_json_str(body, "content", NULL) : NULL;
    const char *enc = body ? cb_json_str(body, "encoding", "utf-8") : "utf-8";
    mode_t mode = mode_param(body ? cb_json_str(body, "mode", NULL) : NULL);
    if (!content)
        return sb_reply_err(r, SB_E_VALIDATION_FAILED, "content must be a string");
    if (mode == (mode_t)-1)
        return sb_reply_err(r, SB_E_VALIDATION_FAILED, "mode must be octal, like \"0644\"");
    cb_autofree char *bytes = NULL;
    size_t len;
    if (strcmp(enc, "base64") == 0) {
        bytes = sb_b64_decode(content, &len);
        if (!bytes)
            return sb_reply_err(r, SB_E_VALIDATION_FAILED, "content is not valid base64");
    } else if (strcmp(enc, "utf-8") == 0 || strcmp(enc, "utf8") == 0) {
        len = strlen(content);
    } else {
        return sb_reply_err(r, SB_E_VALIDATION_FAILED, "encoding must be utf-8 or base64");
    }
    writer *w = writer_begin(r, mode, &err);
    if (!w)
        return sb_reply_error(r, &err);
    if (writer_write(w, bytes ? bytes : content, len, &err) < 0 || writer_commit(w, &err) < 0) {
        writer_free(w);
        return sb_reply_error(r, &err);
    }
    cJSON *j = ok_json(w->c.path);
    cJSON_AddNumberToObject(j, "size", (double)w->bytes);
    writer_free(w);
    return sb_reply_json(r, 200, j);
}

static int upload_begin(sb_req *r)
{
    mode_t mode = mode_param(sb_req_query(r, "mode"));
    if (mode == (mode_t)-1) {
        sb_fail(&r->upload_err, SB_E_VALIDATION_FAILED, "mode must be octal, like 0644");
        return -1;
    }
    writer *w = writer_begin(r, mode, &r->upload_err);
    if (!w)
        return -1;
    r->upload_ctx = w;
    r->upload_free = writer_free;
    return 0;
}

static int upload_chunk(sb_req *r, const char *data, size_t len)
{
    writer *w = r->upload_ctx;
    if (!w || r->upload_err.code)
        return -1;
    /* a deleted sandbox's folder is gone: the rest would only fill an
     * unlinked file on the host's disk until the client is done */
    if (sb_box_deleted(w->c.b)) {
        close(w->fd);  /* frees the unlinked file's space now */
        w->fd = -1;
        sb_fail(&r->upload_err, SB_E_CONTAINER_UNAVAILABLE, "sandbox '%s' was deleted during "
                "the upload; nothing was written", w->c.b->id);
        return -1;
    }
    return writer_write(w, data, len, &r->upload_err);
}

const sb_upload_ops sb_files_upload_ops = {upload_begin, upload_chunk};

int sb_files_write_raw(sb_req *r)
{
    writer *w = r->upload_ctx;
    sb_error err = {0};
    if (r->upload_err.code)
        return sb_reply_error(r, &r->upload_err);
    if (!w)
        return sb_reply_err(r, SB_E_INTERNAL_ERROR, "upload was not started");
    if (sb_box_deleted(w->c.b))
        return sb_reply_err(r, SB_E_CONTAINER_UNAVAILABLE, "sandbox '%s' was deleted during the "
                            "upload; nothing was written", w->c.b->id);
    if (writer_commit(w, &err) < 0)
        return sb_reply_error(r, &err);
    cJSON *j = ok_json(w->c.path);
    cJSON_AddNumberToObject(j, "size", (double)w->bytes);
    return sb_reply_json(r, 200, j);
}

/* ---- list / stat / exists ------------------------------------------------------------ */

typedef struct lister {
    cJSON *arr;
    bool hidden;
    bool recursive;
    size_t count;
    dev_t dev;
    const sb_box *b;            /* whose user the permissions are for */
} lister;

static int list_dir(lister *L, int dirfd, const char *abs, const char *rel, int depth, sb_error *err)
{
    /* each level holds two fds and a stack frame: a tree nested 10000 deep
     * (code in the sandbox can make one) used up the server's fds for every
     * other request while it was listed */
    if (depth > LIST_DEPTH_MAX)
        return sb_fail(err, SB_E_FILE_TOO_LARGE, "folders nested deeper than %d levels below the "
                       "listed one: list a deeper folder", LIST_DEPTH_MAX), -1;
    int dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
    DIR *d = dup >= 0 ? fdopendir(dup) : NULL;
    if (!d) {
        if (dup >= 0)
            close(dup);
        return err_errno(err, errno, "list", abs);
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (!L->hidden && e->d_name[0] == '.')
            continue;
        if (++L->count > LIST_LIMIT) {
            closedir(d);
            return sb_fail(err, SB_E_FILE_TOO_LARGE, "more than %d entries", LIST_LIMIT), -1;
        }
        struct stat st;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        cb_autofree char *cabs = cb_printf_new("%s%s%s", abs, strcmp(abs, "/") ? "/" : "", e->d_name);
        cb_autofree char *crel = rel[0] ? cb_printf_new("%s/%s", rel, e->d_name) : cb_strdup(e->d_name);
        cJSON_AddItemToArray(L->arr, entry_json(L->b, e->d_name, cabs, crel, &st));
        if (L->recursive && S_ISDIR(st.st_mode) && st.st_dev == L->dev) {
            int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                sb_error ignore;
                int rc = sb_files_check_fs(sub, cabs, &ignore) == 0
                             ? list_dir(L, sub, cabs, crel, depth + 1, err) : 0;
                close(sub);
                if (rc < 0) {
                    closedir(d);
                    return -1;
                }
            }
        }
    }
    closedir(d);
    return 0;
}

int sb_files_list(sb_req *r)
{
    fctx c;
    sb_error err = {0};
    if (fctx_open(r, "/workspace", &c, &err) < 0)
        return reply_fail(r, &c, &err);
    int fd = sb_open_in_root(c.root, c.path, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0) {
        err_errno(&err, errno, "list", c.path);
        return reply_fail(r, &c, &err);
    }
    struct stat st;
    fstat(fd, &st);
    lister L = {cJSON_CreateArray(), r->json && cb_json_bool(r->json, "includeHidden", false),
                r->json && cb_json_bool(r->json, "recursive", false), 0, st.st_dev, c.b};
    int rc = sb_files_check_fs(fd, c.path, &err) == 0 ? list_dir(&L, fd, c.path, "", 0, &err) : -1;
    close(fd);
    if (rc < 0) {
        cJSON_Delete(L.arr);
        return reply_fail(r, &c, &err);
    }
    cJSON *j = ok_json(c.path);
    cJSON_AddItemToObject(j, "files", L.arr);
    cJSON_AddNumberToObject(j, "count", (double)L.count);
    fctx_clear(&c);
    return sb_reply_json(r, 200, j);
}

static int stat_path(fctx *c, struct stat *st, sb_error *err)
{
    int fd = sb_open_in_root(c->root, c->path, O_PATH | O_NOFOLLOW, 0);
    if (fd < 0)
        return err_errno(err, errno, "stat", c->path);
    int rc = fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    int e = errno;
    close(fd);
    return rc < 0 ? err_errno(err, e, "stat", c->path) : 0;
}

int sb_files_stat(sb_req *r)
{
    fctx c;
    sb_error err = {0};
    if (fctx_open(r, NULL, &c, &err) < 0)
        return reply_fail(r, &c, &err);
    struct stat st;
    if (stat_path(&c, &st, &err) < 0)
        return reply_fail(r, &c, &err);
    const char *slash = strrchr(c.path, '/');
    cJSON *j = entry_json(c.b, slash && slash[1] ? slash + 1 : "/", c.path, NULL, &st);
    cJSON_AddBoolToObject(j, "exists", true);
    fctx_clear(&c);
    return sb_reply_json(r, 200, j);
}

int sb_files_exists(sb_req *r)
{
    fctx c;
    sb_error err = {0};
    if (fctx_open(r, NULL, &c, &err) < 0)
        return reply_fail(r, &c, &err);
    struct stat st;
    bool exists = stat_path(&c, &st, &err) == 0;
    if (!exists && err.code != SB_E_FILE_NOT_FOUND && err.code != SB_E_NOT_DIRECTORY)
        return reply_fail(r, &c, &err);
    cJSON *j = ok_json(c.path);
    cJSON_AddBoolToObject(j, "exists", exists);
    fctx_clear(&c);
    return sb_reply_json(r, 200, j);
}

/* ---- mkdir / delete / rename ------------------------------------------------------------ */

int sb_files_mkdir(sb_req *r)
{
    fctx c;
    sb_error err = {0};
    if (fctx_open(r, NULL, &c, &err) < 0)
        return reply_fail(r, &c, &err);
    bool recursive = r->json && cb_json_bool(r->json, "recursive", false);
    if (recursive) {
        if (mkdir_in(c.root, c.path, &err) < 0)
            return reply_fail(r, &c, &err);
    } else {
        const char *name;
        int dirfd = open_parent(c.root, c.path, &name, &err);
        if (dirfd < 0)
            return reply_fail(r, &c, &err);
        if (mkdirat(dirfd, name, 0755) < 0) {
            err_errno(&err, errno, "mkdir", c.path);
            close(dirfd);
            return reply_fail(r, &c, &err);
        }
        give_to_user(dirfd, name);
        close(dirfd);
    }
    cJSON *j = ok_json(c.path);
    fctx_clear(&c);
    return sb_reply_json(r, 200, j);
}

/* Remove everything in dirfd (not following symlinks, not leaving dev). */
static int rm_contents(int dirfd, dev_t dev, int depth)
{
    if (depth > 256) {
        errno = ELOOP;
        return -1;
    }
    int dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
    DIR *d = dup >= 0 ? fdopendir(dup) : NULL;
    if (!d) {
        if (dup >= 0)
            close(dup);
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (st.st_dev != dev) {
                errno = EBUSY;
                rc = -1;
                break;
            }
            int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0 || rm_contents(sub, dev, depth + 1) < 0) {
                if (sub >= 0)
                    close(sub);
                rc = -1;
                break;
            }
            close(sub);
            if (unlinkat(dirfd, e->d_name, AT_REMOVEDIR) < 0) {
                rc = -1;
                break;
            }
        } else if (unlinkat(dirfd, e->d_name, 0) < 0) {
            rc = -1;
            break;
        }
    }
    int saved = errno;
    closedir(d);
    errno = saved;
    return rc;
}

/* Whether deleting the folder `name` in dirfd could succeed, checked before
 * anything inside it is removed: a recursive delete that empties a folder
 * and only then finds that the folder itself cannot go (a mount point such
 * as /workspace or /tmp, or a parent on a read-only file system or not
 * writable by the sandbox's user) would report an error after destroying
 * everything in it. 0, or -1 with err. */
static int delete_dir_possible(int dirfd, const char *name, const char *path, sb_error *err)
{
    struct statx parent, target;
    if (statx(dirfd, "", AT_EMPTY_PATH, STATX_MNT_ID, &parent) == 0 &&
        statx(dirfd, name, AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &target) == 0) {
        bool mount_root = (target.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
                          (target.stx_attributes & STATX_ATTR_MOUNT_ROOT);
        bool other_mount = (parent.stx_mask & target.stx_mask & STATX_MNT_ID) &&
                           parent.stx_mnt_id != target.stx_mnt_id;
        if (mount_root || other_mount)
            return sb_fail(err, SB_E_PERMISSION_DENIED,
                           "%s is a mount point and cannot be deleted (delete the entries "
                           "inside it instead); nothing was deleted", path), -1;
    }
    struct statvfs sv;
    if (fstatvfs(dirfd, &sv) == 0 && (sv.f_flag & ST_RDONLY))
        return sb_fail(err, SB_E_READ_ONLY, "delete %s: its folder is on a read-only file "
                       "system; nothing was deleted", path), -1;
    /* AT_EACCESS: checked with the file-system identity (the sandbox's user) */
    if (faccessat(dirfd, "", W_OK | X_OK, AT_EMPTY_PATH | AT_EACCESS) < 0 && errno == EACCES)
        return sb_fail(err, SB_E_PERMISSION_DENIED, "delete %s: its folder is not writable "
                       "by the sandbox's user; nothing was deleted", path), -1;
    return 0;
}

int sb_files_delete(sb_req *r)
{
    fctx c;
    sb_error err = {0};
    if (fctx_open(r, NULL, &c, &err) < 0)
        return reply_fail(r, &c, &err);
    const char *name;
    int dirfd = open_parent(c.root, c.path, &name, &err);
    if (dirfd < 0)
        return reply_fail(r, &c, &err);
    struct stat st;
    int rc = 0;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        rc = err_errno(&err, errno, "delete", c.path);
    } else if (S_ISDIR(st.st_mode)) {
        bool recursive = r->json && cb_json_bool(r->json, "recursive", false);
        int sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            rc = err_errno(&err, errno, "delete", c.path);
        else if (sb_files_check_fs(sub, c.path, &err) < 0)
            rc = -1;
        else if (delete_dir_possible(dirfd, name, c.path, &err) < 0)
            rc = -1;
        else if (recursive && rm_contents(sub, st.st_dev, 0) < 0)
            rc = errno == ELOOP  /* rm_contents' depth limit, not a symlink */
                     ? (sb_fail(&err, SB_E_PERMISSION_DENIED, "delete %s: folders nested deeper "
                                "than 256 levels: delete a deeper folder first", c.path), -1)
                     : err_errno(&err, errno, "delete", c.path);
        if (sub >= 0)
            close(sub);
        if (rc == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0)
            rc = errno == ENOTEMPTY && !recursive
                     ? sb_fail(&err, SB_E_DIRECTORY_NOT_EMPTY,
                               "%s is not empty (use recursive: true)", c.path), -1
                     : err_errno(&err, errno, "delete", c.path);
    } else if (unlinkat(dirfd, name, 0) < 0) {
        rc = err_errno(&err, errno, "delete", c.path);
    }
    close(dirfd);
    if (rc < 0)
        return reply_fail(r, &c, &err);
    cJSON *j = ok_json(c.path);
    fctx_clear(&c);
    return sb_reply_json(r, 200, j);
}

/* One end of a move: the first of its names the body gives, each as text
 * or as `…Base64`. Owned; NULL, without an error, when none is given. */
static int move_arg(const cJSON *body, const char *const names[3], char **out, sb_error *err)
{
    *out = NULL;
    for (int i = 0; i < 3 && !*out; i++)
        if (sb_json_path_arg(body, names[i], out, err) < 0)
            return -1;
    return 0;
}

int sb_files_rename(sb_req *r)
{
    fctx c;
    sb_error err = {0};
    static const char *const from_names[3] = {"oldPath", "from", "sourcePath"};
    static const char *const to_names[3] = {"newPath", "to", "destinationPath"};
    cb_autofree char *from = NULL, *to = NULL;
    if (move_arg(r->json, from_names, &from, &err) < 0 || move_arg(r->json, to_names, &to, &err) < 0)
        return sb_reply_error(r, &err);
    if (!from || !to)
        return sb_reply_err(r, SB_E_VALIDATION_FAILED, "oldPath and newPath are required");
    if (fctx_open_path(r, from, &c, &err) < 0)
        return reply_fail(r, &c, &err);
    cb_autofree char *dest = sb_files_norm_path(to, &err);
    if (!dest)
        return reply_fail(r, &c, &err);
    const char *slash = strrchr(dest, '/');
    if (slash != dest) {
        cb_autofree char *parent = cb_strndup(dest, (size_t)(slash - dest));
        if (mkdir_in(c.root, parent, &err) < 0)
            return reply_fail(r, &c, &err);
    }
    const char *n1, *n2;
    int d1 = open_parent(c.root, c.path, &n1, &err);
    int d2 = d1 >= 0 ? open_parent(c.root, dest, &n2, &err) : -1;
    int rc = 0;
    if (d1 < 0 || d2 < 0)
        rc = -1;
    else if (renameat(d1, n1, d2, n2) < 0)
        rc = errno == EXDEV ? sb_fail(&err, SB_E_VALIDATION_FAILED,
                                      "cannot move %s to %s: different file systems", c.path, dest), -1
                            : err_errno(&err, errno, "rename", c.path);
    if (d1 >= 0)
        close(d1);
    if (d2 >= 0)
        close(d2);
    if (rc < 0)
        return reply_fail(r, &c, &err);
    cJSON *j = ok_json(dest);
    sb_json_add_path(j, "oldPath", c.path);
    sb_json_add_path(j, "newPath", dest);
    fctx_clear(&c);
    return sb_reply_json(r, 200, j);
}
