/* sandbox/sb_backup.c: backups of a sandbox folder, made and restored by tar
 * inside the sandbox (see sb_backup.h for the why).
 *
 * Create: `tar --create --file=- .` in the folder streams the archive over
 * the agent's stdout frames; the server writes it to <bid>.tar.part,
 * counts the entries from the tar headers as they pass (tar_count), stops
 * (closing the channel kills tar) once it is over the size limit, and on
 * success renames it to <bid>.tar next to <bid>.json (the metadata).
 *
 * Restore: the archive goes to `tar --extract` over stdin frames. The agent
 * buffers stdin without limit, so the server paces itself: tar reports a
 * checkpoint every CK_RECORDS records read (on stderr, "@cb<records>") and
 * the server never sends more than WINDOW bytes beyond that. tar unpacks
 * into a fresh temporary folder INSIDE the destination (so renames never
 * cross file systems, and /workspace, a mount point, can be restored too);
 * only when tar succeeded are the old entries renamed aside and the new ones
 * renamed in, then the old ones removed. A failure before the swap leaves
 * the destination as it was; the swap itself is only renames and undoes
 * itself when one fails. The result: the destination holds exactly the
 * backup (entries added since are gone, deleted ones are back; modes,
 * symlinks, hard links, times kept; the folder's own mode too).
 *
 * Every client value reaches the shell as a single-quoted word
 * (sb_sh_quote). The size limit is 2 GiB of archive
 * (CELLBOX_BACKUP_MAX_BYTES overrides it, for tests).
 */
#include "config.h"
#include "sandbox/sb_backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "sandbox/sb_api.h"
#include "sandbox/sb_proto.h"
#include "sandbox/sb_util.h"

#define BACKUP_MAX_DEFAULT (2ULL << 30)
#define BACKUP_TIMEOUT_MS (3600LL * 1000)   /* the agent kills tar after this */
#define RECORD_SIZE 10240                   /* tar's default: 20 blocks of 512 */
#define CK_RECORDS 100                      /* a checkpoint every ~1 MB read */
#define WINDOW (16u << 20)                  /* stdin bytes ahead of tar */
#define STDERR_CAP (64u << 10)

/* Script exit codes (tar itself exits 1 or 2). */
enum { RC_NOT_FOUND = 90, RC_NOT_DIR = 91, RC_CANNOT = 92, RC_TAR = 93, RC_SWAP = 94 };

/* Metadata files are written and removed under this lock. */
static pthread_mutex_t meta_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t backup_limit(void)
{
    const char *s = getenv("CELLBOX_BACKUP_MAX_BYTES");
    char *end;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    return s && *s && !*end && v > 0 ? v : BACKUP_MAX_DEFAULT;
}

/* A folder of the request ("path"): absolute, or relative to /workspace;
 * trailing slashes dropped. dflt when absent. Owned, or NULL + err. */
static char *req_path(const cJSON *body, const char *dflt, sb_error *err)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "path");
    if (!p || cJSON_IsNull(p))
        return cb_strdup(dflt);
    if (!cJSON_IsString(p) || !*p->valuestring || strlen(p->valuestring) > 4096 || sb_has_ctl(p->valuestring))
        return sb_fail(err, SB_E_VALIDATION_FAILED,
                       "path must be a non-empty string without control characters"), NULL;
    char *path = p->valuestring[0] == '/' ? cb_strdup(p->valuestring)
                                          : cb_printf_new("/workspace/%s", p->valuestring);
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        path[--n] = '\0';
    return path;
}

static bool box_deleted(sb_box *b)
{
    pthread_mutex_lock(&b->mu);
    bool d = b->deleted;
    pthread_mutex_unlock(&b->mu);
    return d;
}

static char *bk_file(sb_box *b, const char *bid, const char *ext)
{
    return cb_printf_new("%s/backups/%s.%s", b->dir, bid, ext);
}

/* The metadata of backup bid (owned), or NULL + BACKUP_NOT_FOUND. */
static cJSON *bk_meta(sb_box *b, const char *bid, sb_error *err)
{
    if (!bid || strncmp(bid, "bk-", 3) != 0 || !sb_name_valid(bid))
        return sb_fail(err, SB_E_BACKUP_NOT_FOUND, "backup '%s' not found", bid ? bid : ""), NULL;
    cb_autofree char *path = bk_file(b, bid, "json");
    pthread_mutex_lock(&meta_mu);
    cb_autofree char *text = cb_read_file(path, NULL);
    pthread_mutex_unlock(&meta_mu);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sb_fail(err, SB_E_BACKUP_NOT_FOUND, "backup '%s' not found", bid), NULL;
    }
    return j;
}

/* ---- counting the entries of a tar stream ------------------------------------ */

typedef struct tar_count {
    unsigned char hdr[512];
    size_t hlen;
    uint64_t skip;      /* data bytes of the current entry still to pass */
    bool end;
    long entries;       /* entries other than the folder itself ("./") */
} tar_count;

/* A numeric header field: octal text or GNU base-256 (high bit set). */
static uint64_t tar_num(const unsigned char *f, size_t n)
{
    uint64_t v = 0;
    if (f[0] & 0x80) {
        for (size_t i = 1; i < n; i++)
            v = (v << 8) | f[i];
        return v;
    }
    for (size_t i = 0; i < n && f[i] >= '0' && f[i] <= '7'; i++)
        v = (v << 3) | (uint64_t)(f[i] - '0');
    return v;
}

static void tar_header(tar_count *t)
{
    static const unsigned char zero[512];
    if (memcmp(t->hdr, zero, 512) == 0) {
        t->end = true;
        return;
    }
    uint64_t size = tar_num(t->hdr + 124, 12);
    char type = (char)t->hdr[156];
    t->skip = (size + 511) / 512 * 512;
    /* L/K: GNU long name/link, x/g: pax headers, V: volume label: not entries */
    if (!strchr("LKxgV", type) || type == '\0') {
        bool root = strncmp((const char *)t->hdr, "./", 100) == 0 || strncmp((const char *)t->hdr, ".", 100) == 0;
        if (!root)
            t->entries++;
    }
}

static void tar_count_feed(tar_count *t, const char *p, size_t n)
{
    while (n > 0 && !t->end) {
        if (t->skip) {
            size_t k = t->skip < n ? (size_t)t->skip : n;
            t->skip -= k, p += k, n -= k;
            continue;
        }
        size_t k = 512 - t->hlen < n ? 512 - t->hlen : n;
        memcpy(t->hdr + t->hlen, p, k);
        t->hlen += k, p += k, n -= k;
        if (t->hlen == 512) {
            t->hlen = 0;
            tar_header(t);
        }
    }
}

/* ---- running tar in the sandbox ----------------------------------------------- */

typedef struct bk_run {
    sb_exec_result res;
    cb_buf err;             /* stderr without checkpoint lines, capped */
    cb_buf line;            /* an incomplete stderr line */
    /* create: the archive goes to out_fd */
    int out_fd;
    uint64_t out_bytes, limit;
    bool too_large;
    int write_errno;
    tar_count tc;
    /* restore: the archive comes from in_fd */
    int in_fd;
    char *inbuf;            /* SB_CHUNK bytes, while bk_exec runs */
    uint64_t sent, acked;
    bool in_done;
} bk_run;

static void bk_run_clear(bk_run *k)
{
    cb_buf_clear(&k->err);
    cb_buf_clear(&k->line);
}

static void stderr_line(bk_run *k, const char *s, size_t len)
{
    const char *ck = memmem(s, len, "@cb", 3);
    if (ck && len >= 8 && memcmp(s, "tar: @cb", 8) == 0) {
        uint64_t records = strtoull(ck + 3, NULL, 10);
        /* tar cannot have read more than was sent: never more (a bogus line
         * would make sent - acked wrap and stop the feeding for good) */
        uint64_t got = records > k->sent / RECORD_SIZE ? k->sent : records * RECORD_SIZE;
        if (got > k->acked)
            k->acked = got;
        return;
    }
    if (k->err.len < STDERR_CAP) {
        cb_buf_append(&k->err, s, len);
        cb_buf_putc(&k->err, '\n');
    }
}

static void on_stderr(bk_run *k, const char *data, size_t len)
{
    cb_buf_append(&k->line, data, len);
    size_t start = 0;
    for (size_t i = 0; i < k->line.len; i++)
        if (k->line.data[i] == '\n') {
            stderr_line(k, k->line.data + start, i - start);
            start = i + 1;
        }
    cb_buf_consume(&k->line, start);
    if (k->line.len > STDERR_CAP) {  /* no newline for that long: keep it as text */
        stderr_line(k, k->line.data, k->line.len);
        cb_buf_reset(&k->line);
    }
}

/* Feed stdin up to the window. Returns false when the channel broke. */
static bool feed_stdin(bk_run *k, int fd, char *buf)
{
    while (!k->in_done && k->sent - k->acked < WINDOW) {
        ssize_t n = read(k->in_fd, buf, SB_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            k->in_done = true;
            return sb_frame_write(fd, SB_FRAME_STDIN_CLOSE, NULL, 0) == 0;
        }
        if (sb_frame_write(fd, SB_FRAME_STDIN, buf, (size_t)n) < 0) {
            k->in_done = true;  /* tar is gone: its exit tells the rest */
            return true;
        }
        k->sent += (uint64_t)n;
        /* read what the agent has for us first, so neither side blocks on a full socket */
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 0) == 1)
            break;
    }
    return true;
}

/* sb_exec_run's feed hook (restore). */
static int bk_feed(void *ctx, int fd, sb_error *err)
{
    bk_run *k = ctx;
    if (!feed_stdin(k, fd, k->inbuf))
        return sb_fail(err, SB_E_CONTAINER_UNAVAILABLE, "the sandbox stopped during the restore"), -1;
    return 0;
}

/* sb_exec_run's output hook: stderr is parsed; stdout (create) is the
 * archive, counted and written to k->out_fd up to the size limit. */
static int bk_output(void *ctx, char type, const char *data, size_t len, sb_error *err)
{
    bk_run *k = ctx;
    if (type == SB_FRAME_STDERR) {
        on_stderr(k, data, len);
        return 0;
    }
    if (k->out_fd < 0)
        return 0;
    k->out_bytes += len;
    if (k->out_bytes > k->limit) {
        k->too_large = true;
        return sb_fail(err, SB_E_FILE_TOO_LARGE, "the backup is larger than the limit of %llu bytes",
                       (unsigned long long)k->limit), -1;
    }
    tar_count_feed(&k->tc, data, len);
    if (cb_write_all(k->out_fd, data, len) < 0) {
        k->write_errno = errno;
        return sb_fail(err, sb_err_from_errno(errno), "cannot store the backup: %s", strerror(errno)), -1;
    }
    return 0;
}

/* Run script in session sid as the sandbox's user and move the archive
 * (k->out_fd: from its stdout; k->in_fd: to its stdin). 0 once the script
 * exited (k->res), or -1 + err. */
static int bk_exec(sb_box *b, const char *sid, const char *script, bk_run *k, sb_error *err)
{
    bool in = k->in_fd >= 0;
    cb_autofree char *inbuf = in ? cb_malloc(SB_CHUNK) : NULL;
    k->inbuf = inbuf;
    sb_exec_run_opts o = {.command = script, .session = sid, .timeout_ms = BACKUP_TIMEOUT_MS,
                          .what = "tar", .open_stdin = in, .feed = in ? bk_feed : NULL,
                          .output = bk_output, .ctx = k};
    /* backups and restores of one sandbox take turns: a restore swapping a
     * folder while a backup of it reads, or two restores of one folder,
     * would mix trees */
    pthread_mutex_lock(&b->backup_mu);
    int rc = sb_exec_run(b, &o, &k->res, err);
    pthread_mutex_unlock(&b->backup_mu);
    k->inbuf = NULL;
    if (k->line.len)
        stderr_line(k, k->line.data, k->line.len);
    return rc;
}

/* The error for a script that exited with k->res.exit_code != 0. */
static void script_error(const bk_run *k, const char *what, const char *path, sb_error *err)
{
    cb_autofree char *msg = sb_exec_message(&k->err);  /* tar's complaints */
    if (k->res.timed_out)
        sb_fail(err, SB_E_TIMEOUT, "%s of %s did not finish in time", what, path);
    else if (k->res.exit_code == RC_NOT_FOUND)
        sb_fail(err, SB_E_FILE_NOT_FOUND, "%s: %s", what, msg);
    else if (k->res.exit_code == RC_NOT_DIR)
        sb_fail(err, SB_E_NOT_DIRECTORY, "%s: %s", what, msg);
    else if (strstr(msg, "No space left") || strstr(msg, "Disk quota"))
        sb_fail(err, SB_E_NO_SPACE, "%s of %s: %s", what, path, msg);
    else
        sb_fail(err, SB_E_BACKUP_FAILED, "%s of %s failed (exit %d): %s", what, path, k->res.exit_code, msg);
}

static const char *req_session(const cJSON *body, sb_error *err)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(body, "sessionId");
    if (s && !cJSON_IsString(s))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "sessionId must be a string"), NULL;
    return s ? s->valuestring : "default";
}

/* ---- create ---------------------------------------------------------------------- */

static char *create_script(const char *path)
{
    cb_buf s = CB_BUF_INIT;
    cb_buf_puts(&s, "__cb_p=");
    sb_sh_quote(&s, path);
    cb_buf_printf(&s, "\n"
        "[ -e \"$__cb_p\" ] || { builtin echo \"$__cb_p does not exist\" >&2; builtin exit %d; }\n"
        "[ -d \"$__cb_p\" ] || { builtin echo \"$__cb_p is not a folder\" >&2; builtin exit %d; }\n"
        "builtin cd -- \"$__cb_p\" || builtin exit %d\n"
        /* tar exits 1 when a file changed while it was read: the archive is whole */
        "builtin command tar --create --file=- --format=gnu --numeric-owner --one-file-system . "
        "|| [ $? -eq 1 ]\n",
        RC_NOT_FOUND, RC_NOT_DIR, RC_CANNOT);
    return cb_buf_steal(&s);
}

int sb_backup_create(sb_req *r, sb_box *b, sb_error *err)
{
    if (!r->json)
        r->json = cJSON_CreateObject();
    const cJSON *body = r->json;
    cb_autofree char *path = req_path(body, "/workspace", err);
    if (!path)
        return -1;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "name");
    if (name && !cJSON_IsNull(name) &&
        (!cJSON_IsString(name) || strlen(name->valuestring) > 256 || sb_has_ctl(name->valuestring)))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "name must be a string of up to 256 characters"), -1;
    const char *sid = req_session(body, err);
    if (!sid)
        return -1;

    cb_autofree char *hex = cb_random_hex(8);
    cb_autofree char *bid = cb_printf_new("bk-%s", hex);
    cb_autofree char *dir = cb_printf_new("%s/backups", b->dir);
    cb_autofree char *part = bk_file(b, bid, "tar.part");
    cb_autofree char *tar = bk_file(b, bid, "tar");
    cb_autofree char *meta = bk_file(b, bid, "json");
    if (box_deleted(b))
        return sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' not found", b->id), -1;
    if (cb_mkdir_p(dir, 0700) < 0)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cannot create %s: %s", dir, strerror(errno)), -1;
    bk_run k = {.out_fd = open(part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600), .in_fd = -1,
                .limit = backup_limit()};
    if (k.out_fd < 0)
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cannot create %s: %s", part, strerror(errno)), -1;
    int64_t t0 = cb_real_us();
    cb_autofree char *script = create_script(path);
    int rc = bk_exec(b, sid, script, &k, err);
    if (rc == 0 && k.res.exit_code != 0) {
        script_error(&k, "backup", path, err);
        rc = -1;
    }
    if (rc == 0) {
        /* closed whatever fsync says: its fd must not leak */
        int e = fsync(k.out_fd) < 0 ? errno : 0;
        if (close(k.out_fd) < 0 && !e)
            e = errno;
        k.out_fd = -1;
        if (e) {
            sb_fail(err, sb_err_from_errno(e), "cannot store the backup: %s", strerror(e));
            rc = -1;
        }
    }
    if (k.out_fd >= 0)
        close(k.out_fd);
    long files = k.tc.entries;
    uint64_t size = k.out_bytes;
    bk_run_clear(&k);
    if (rc < 0) {
        unlink(part);
        return -1;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", bid);
    cJSON_AddStringToObject(j, "path", path);
    if (name && cJSON_IsString(name))
        cJSON_AddStringToObject(j, "name", name->valuestring);
    else
        cJSON_AddNullToObject(j, "name");
    cJSON_AddNumberToObject(j, "size", (double)size);
    cJSON_AddNumberToObject(j, "files", (double)files);
    char date[CB_ISO_DATE_LEN];
    cb_iso_date(date, t0);
    cJSON_AddStringToObject(j, "createdAt", date);
    cb_autofree char *text = cb_json_print(j);
    pthread_mutex_lock(&meta_mu);
    bool ok = !box_deleted(b) && rename(part, tar) == 0 &&
              sb_write_file_quick(meta, text, strlen(text), 0600) == 0;
    int e = errno;
    if (!ok) {
        unlink(part);
        unlink(tar);
    }
    pthread_mutex_unlock(&meta_mu);
    if (!ok) {
        cJSON_Delete(j);
        return sb_fail(err, SB_E_INTERNAL_ERROR, "cannot store the backup: %s", strerror(e)), -1;
    }
    cb_logkv(CB_LOG_INFO, "backup", NULL, "sandbox %s: backup %s of %s, %llu bytes, %ld entries", b->id,
             bid, path, (unsigned long long)size, files);
    return sb_reply_json(r, 201, j);
}

/* ---- list, get, delete ------------------------------------------------------------- */

static int cmp_created(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    int c = strcmp(cb_json_str(x, "createdAt", ""), cb_json_str(y, "createdAt", ""));
    return c ? c : strcmp(cb_json_str(x, "id", ""), cb_json_str(y, "id", ""));
}

int sb_backup_list(sb_req *r, sb_box *b, sb_error *err)
{
    cb_autofree char *dir = cb_printf_new("%s/backups", b->dir);
    cJSON **items = NULL;
    size_t n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        cb_autofree char *bid = cb_printf_new("%.*s", (int)(len - 5), e->d_name);
        cJSON *j = bk_meta(b, bid, NULL);
        if (!j)
            continue;
        items = cb_realloc(items, (n + 1) * sizeof *items);
        items[n++] = j;
    }
    if (d)
        closedir(d);
    if (n)
        qsort(items, n, sizeof *items, cmp_created);
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, items[i]);
    free(items);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "backups", arr);
    (void)err;
    return sb_reply_json(r, 200, j);
}

int sb_backup_get(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *j = bk_meta(b, r->params[1], err);
    return j ? sb_reply_json(r, 200, j) : -1;
}

int sb_backup_delete(sb_req *r, sb_box *b, sb_error *err)
{
    cJSON *j = bk_meta(b, r->params[1], err);
    if (!j)
        return -1;
    cJSON_Delete(j);
    cb_autofree char *tar = bk_file(b, r->params[1], "tar");
    cb_autofree char *meta = bk_file(b, r->params[1], "json");
    pthread_mutex_lock(&meta_mu);
    int rc = unlink(meta);
    unlink(tar);  /* a restore that runs keeps reading its open fd */
    pthread_mutex_unlock(&meta_mu);
    if (rc < 0)
        return sb_fail(err, SB_E_BACKUP_NOT_FOUND, "backup '%s' not found", r->params[1]), -1;
    j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    cJSON_AddStringToObject(j, "id", r->params[1]);
    char date[CB_ISO_DATE_LEN];
    cb_iso_date(date, cb_real_us());
    cJSON_AddStringToObject(j, "timestamp", date);
    return sb_reply_json(r, 200, j);
}

/* ---- restore ---------------------------------------------------------------------- */

static char *restore_script(const char *path)
{
    cb_buf s = CB_BUF_INIT;
    cb_buf_puts(&s, "__cb_d=");
    sb_sh_quote(&s, path);
    cb_buf_printf(&s, "\n"
        "__cb_fail() { builtin echo \"$1\" >&2; builtin exit $2; }\n"
        "if [ -e \"$__cb_d\" ] || [ -L \"$__cb_d\" ]; then\n"
        "  [ -d \"$__cb_d\" ] || __cb_fail \"$__cb_d exists and is not a folder\" %d\n"
        "else\n"
        "  mkdir -p -- \"$__cb_d\" || __cb_fail \"cannot create $__cb_d\" %d\n"
        "fi\n"
        "builtin cd -- \"$__cb_d\" || __cb_fail \"cannot enter $__cb_d\" %d\n"
        "__cb_new=$(mktemp -d .cellbox-restore.XXXXXX) || __cb_fail \"cannot write in $__cb_d\" %d\n"
        "__cb_old=$(mktemp -d .cellbox-old.XXXXXX) || { rmdir -- \"$__cb_new\"; __cb_fail \"cannot write in $__cb_d\" %d; }\n"
        /* 1. unpack aside: a failure here leaves the folder as it was */
        "if ! builtin command tar --extract --file=- --preserve-permissions --numeric-owner "
        "--directory=\"$__cb_new\" --checkpoint=%d --checkpoint-action=echo=@cb%%u; then\n"
        "  rm -rf -- \"$__cb_new\" \"$__cb_old\"; builtin exit %d\n"
        "fi\n"
        /* 2. swap by renames in this folder, undone if one fails */
        "if ! find . -mindepth 1 -maxdepth 1 ! -name \"$__cb_new\" ! -name \"$__cb_old\" -exec mv -t \"$__cb_old\" -- {} +; then\n"
        "  find \"$__cb_old\" -mindepth 1 -maxdepth 1 -exec mv -t . -- {} +\n"
        "  rm -rf -- \"$__cb_new\"; rmdir -- \"$__cb_old\"; __cb_fail \"cannot move the old content aside\" %d\n"
        "fi\n"
        "if ! find \"$__cb_new\" -mindepth 1 -maxdepth 1 -exec mv -t . -- {} +; then\n"
        "  find . -mindepth 1 -maxdepth 1 ! -name \"$__cb_new\" ! -name \"$__cb_old\" -exec mv -t \"$__cb_new\" -- {} +\n"
        "  find \"$__cb_old\" -mindepth 1 -maxdepth 1 -exec mv -t . -- {} +\n"
        "  rm -rf -- \"$__cb_new\"; rmdir -- \"$__cb_old\"; __cb_fail \"cannot move the restored content in\" %d\n"
        "fi\n"
        "chmod --reference=\"$__cb_new\" . 2>/dev/null\n"
        "rm -rf -- \"$__cb_new\" \"$__cb_old\"\n",
        RC_NOT_DIR, RC_CANNOT, RC_CANNOT, RC_CANNOT, RC_CANNOT, CK_RECORDS, RC_TAR, RC_SWAP, RC_SWAP);
    return cb_buf_steal(&s);
}

int sb_backup_restore(sb_req *r, sb_box *b, sb_error *err)
{
    if (!r->json)
        r->json = cJSON_CreateObject();
    const cJSON *body = r->json;
    const char *bid = r->params[1];
    cJSON *meta = bk_meta(b, bid, err);
    if (!meta)
        return -1;
    cb_autofree char *path = req_path(body, cb_json_str(meta, "path", "/workspace"), err);
    const char *sid = path ? req_session(body, err) : NULL;
    if (!path || !sid) {
        cJSON_Delete(meta);
        return -1;
    }
    cb_autofree char *tar = bk_file(b, bid, "tar");
    bk_run k = {.out_fd = -1, .in_fd = open(tar, O_RDONLY | O_CLOEXEC)};
    if (k.in_fd < 0) {
        cJSON_Delete(meta);
        return sb_fail(err, SB_E_BACKUP_NOT_FOUND, "backup '%s' not found", bid), -1;
    }
    cb_autofree char *script = restore_script(path);
    int rc = bk_exec(b, sid, script, &k, err);
    close(k.in_fd);
    if (rc == 0 && k.res.exit_code != 0) {
        script_error(&k, "restore", path, err);
        rc = -1;
    }
    bk_run_clear(&k);
    if (rc < 0) {
        cJSON_Delete(meta);
        return -1;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    cJSON_AddStringToObject(j, "id", bid);
    cJSON_AddStringToObject(j, "path", path);
    cJSON_AddNumberToObject(j, "files", cb_json_num(meta, "files", 0));
    cJSON_AddNumberToObject(j, "size", cb_json_num(meta, "size", 0));
    char date[CB_ISO_DATE_LEN];
    cb_iso_date(date, cb_real_us());
    cJSON_AddStringToObject(j, "timestamp", date);
    cJSON_Delete(meta);
    cb_logkv(CB_LOG_INFO, "backup", NULL, "sandbox %s: backup %s restored to %s", b->id, bid, path);
    return sb_reply_json(r, 200, j);
}
