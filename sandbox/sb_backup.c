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
 * renamed in, then the old ones removed. The result: the destination holds
 * exactly the backup (entries added since are gone, deleted ones are back;
 * modes, symlinks, hard links, times kept; the folder's own mode too).
 *
 * Crash safety. A restore of folder D uses two temporary folders in D with
 * one suffix S:
 *   1. unpack into .cellbox-restore.S (and create .cellbox-old.S)
 *   2. rename every old entry of D into .cellbox-old.S
 *   3. rename .cellbox-old.S to .cellbox-done.S: THE COMMIT POINT (one rename)
 *   4. rename every entry of .cellbox-restore.S into D, apply its mode to D
 *   5. remove .cellbox-restore.S (empty), then .cellbox-done.S (the old tree)
 * Until step 3, D holds old entries only; after it, new entries only. So
 * the recovery of a folder (__cb_recover, in the scripts) decides from what
 * is on disk: .cellbox-old.S -> roll back (its entries back into D, drop
 * .cellbox-restore.S); .cellbox-done.S -> roll forward (the rest of
 * .cellbox-restore.S into D, its mode, drop both); a lone
 * .cellbox-restore.S -> an unpacking that never swapped: drop it. Every
 * step is a rename or a removal it can redo, so the recovery is idempotent
 * (it may be interrupted and run again). A restore that fails cleanly undoes
 * itself the same way (after step 3 it first renames the new entries back
 * and .cellbox-done.S back to .cellbox-old.S). Scripts that touch a folder
 * hold flock(1) on it (fd 6, inherited by tar and mv), so a recovery waits
 * for the last rename of a restore that is being killed, even one of a
 * previous server or sandbox instance. Every backup and restore recovers
 * its folder first: a backup never archives a half-restored tree.
 *
 * The journal: a restore also leaves a record (backups/restore-<hex>.journal,
 * its path) for the time its script runs; the record goes when the script
 * succeeded, or once the recovery of that path ran after a failure. A record
 * still there means a restore was cut off (server killed, sandbox stopped):
 * it is replayed (the recovery of its path) before each backup and restore
 * and when the sandbox starts (sb_backup_recover), until it succeeds.
 *
 * Across sandboxes. A restore may go into another sandbox ("sandboxId"):
 * the archive is read from the source's state, the script, its record and
 * hence its recovery belong to the target. Both backup locks are held,
 * taken in the order of the sandbox ids (lock_pair). A fork is a backup of
 * the source into a private archive in the new sandbox's state folder,
 * restored there the same way, then removed; a failure deletes the new
 * sandbox. The lost+found of a file system's root (a diskMB /workspace)
 * belongs to the host's root: archives leave it out, restores leave it be.
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
#define LOCK_WAIT_S 60                      /* for a folder's lock (see the top) */
#define LOCK_FD "6"                         /* free in the agent's commands */

/* Script exit codes (tar itself exits 1 or 2). RC_RECOVER: a recovery
 * failed, the folder may be half restored until one succeeds. */
enum { RC_NOT_FOUND = 90, RC_NOT_DIR = 91, RC_CANNOT = 92, RC_TAR = 93, RC_SWAP = 94, RC_RECOVER = 95,
       RC_LOCKED = 96 };

/* Metadata files are written and removed under this lock. */
static pthread_mutex_t meta_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t backup_limit(void)
{
    const char *s = getenv("CELLBOX_BACKUP_MAX_BYTES");
    char *end;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    return s && *s && !*end && v > 0 ? v : BACKUP_MAX_DEFAULT;
}

/* A folder of the request ("path", or "pathBase64" for one whose name is
 * not UTF-8): absolute, or relative to /workspace; trailing slashes
 * dropped. dflt when absent. Owned, or NULL + err. */
static char *req_path(const cJSON *body, const char *dflt, sb_error *err)
{
    cb_autofree char *raw = NULL;
    if (sb_json_path_arg(body, "path", &raw, err) < 0)
        return NULL;
    if (!raw)
        return cb_strdup(dflt);
    if (!*raw || strlen(raw) > 4096 || sb_has_ctl(raw))
        return sb_fail(err, SB_E_VALIDATION_FAILED,
                       "path must be a non-empty string without control characters"), NULL;
    char *path = raw[0] == '/' ? cb_strdup(raw) : cb_printf_new("/workspace/%s", raw);
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        path[--n] = '\0';
    return path;
}

/* The folder a stored record (a backup's metadata, a restore's journal
 * entry) names, as sb_json_add_path wrote it: the exact bytes of
 * "pathBase64" when there (the name is not UTF-8; "path" then holds a
 * readable copy only), else "path". Owned, or NULL. */
static char *rec_path(const cJSON *rec)
{
    const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(rec, "pathBase64");
    if (!cJSON_IsString(b64)) {
        const char *text = cb_json_str(rec, "path", NULL);
        return text ? cb_strdup(text) : NULL;
    }
    size_t len;
    char *raw = sb_b64_decode(b64->valuestring, &len);
    if (raw && strlen(raw) != len) {
        free(raw);
        return NULL;
    }
    return raw;
}

static bool box_deleted(sb_box *b)
{
    pthread_mutex_lock(&b->mu);
    bool d = b->deleted;
    pthread_mutex_unlock(&b->mu);
    return d;
}

/* A file or folder of b's state could not be made (errno): b was deleted
 * meanwhile (its folder went with it: 404), or a real error (500). */
static int create_fail(sb_box *b, const char *path, sb_error *err)
{
    int e = errno;
    if (box_deleted(b))
        return sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' not found", b->id), -1;
    return sb_fail(err, SB_E_INTERNAL_ERROR, "cannot create %s: %s", path, strerror(e)), -1;
}

/* The sandbox's backups folder (owned). */
static char *bk_dir(const sb_box *b)
{
    return cb_printf_new("%s/backups", b->dir);
}

static char *bk_file(sb_box *b, const char *bid, const char *ext)
{
    return cb_printf_new("%s/backups/%s.%s", b->dir, bid, ext);
}

/* The names in b's backups folder that start with prefix and end with
 * suffix, with something between: an owned array of owned strings, *n of
 * them (NULL, 0 when none or no folder). */
static char **bk_names(const sb_box *b, const char *prefix, const char *suffix, size_t *n)
{
    cb_autofree char *dir = bk_dir(b);
    size_t pl = strlen(prefix), sl = strlen(suffix);
    char **names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len <= pl + sl || strncmp(e->d_name, prefix, pl) != 0 ||
            strcmp(e->d_name + len - sl, suffix) != 0)
            continue;
        names = cb_realloc(names, (*n + 1) * sizeof *names);
        names[(*n)++] = cb_strdup(e->d_name);
    }
    if (d)
        closedir(d);
    return names;
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
 * exited (k->res), or -1 + err. b->backup_mu held: backups and restores of
 * one sandbox take turns (a restore swapping a folder while a backup of it
 * reads, or two restores of one folder, would mix trees). */
static int bk_exec(sb_box *b, const char *sid, const char *script, bk_run *k, sb_error *err)
{
    bool in = k->in_fd >= 0;
    cb_autofree char *inbuf = in ? cb_malloc(SB_CHUNK) : NULL;
    k->inbuf = inbuf;
    sb_exec_run_opts o = {.command = script, .session = sid, .timeout_ms = BACKUP_TIMEOUT_MS,
                          .what = "tar", .open_stdin = in, .feed = in ? bk_feed : NULL,
                          .output = bk_output, .ctx = k};
    int rc = sb_exec_run(b, &o, &k->res, err);
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

/* ---- the scripts' shared part: a folder's lock and its recovery -------------------- */

/* `__cb_d=<path>` and the shell functions every script uses (see "Crash
 * safety" at the top). The recovery and the lock work in the current
 * folder: the script's cd into $__cb_d comes first. */
static void script_begin(cb_buf *s, const char *path)
{
    cb_buf_puts(s, "__cb_d=");
    sb_sh_quote(s, path);
    cb_buf_printf(s, "\n"
        "__cb_fail() { builtin echo \"$1\" >&2; builtin exit $2; }\n"
        /* rm -rf, also of a tree with read-only folders in it */
        "__cb_rm() {\n"
        "  [ -e \"$1\" ] || [ -L \"$1\" ] || builtin return 0\n"
        "  builtin command rm -rf -- \"$1\" 2>/dev/null && builtin return 0\n"
        "  builtin command chmod -R u+rwx -- \"$1\" 2>/dev/null; builtin command rm -rf -- \"$1\"\n"
        "}\n"
        /* the folder's lock, held until this script and all it started (tar,
         * mv) are gone, however they end; none where flock cannot be had */
        "__cb_lock() {\n"
        /* `command exec`: bash undoes the redirections of `builtin exec` and
         * of a { } group's exec once they end, so neither holds the fd */
        "  [ -r . ] && [ -x . ] || builtin return 0\n"
        "  command exec " LOCK_FD "<. || builtin return 0\n"
        "  builtin command -v flock >/dev/null 2>&1 || builtin return 0\n"
        "  builtin command flock -E 200 -w %d " LOCK_FD "\n"
        "  [ $? -ne 200 ] || __cb_fail \"$__cb_d is locked by another process\" %d\n"
        "}\n"
        /* move every entry of folder $1 into the current folder */
        "__cb_in() { builtin command find \"$1\" -mindepth 1 -maxdepth 1 -exec mv -t . -- {} +; }\n"
        /* finish or undo whatever restore was cut off here: idempotent */
        "__cb_recover() {\n"
        "  builtin local t n r=0\n"
        "  for t in .cellbox-done.??????; do\n"        /* committed: roll forward */
        "    [ -d \"$t\" ] && [ ! -L \"$t\" ] || builtin continue\n"
        "    n=.cellbox-restore.${t#.cellbox-done.}\n"
        "    if [ -d \"$n\" ] && [ ! -L \"$n\" ]; then\n"
        "      __cb_in \"$n\" || { r=1; builtin continue; }\n"
        "      builtin command chmod --reference=\"$n\" . 2>/dev/null\n"
        "      builtin command rmdir -- \"$n\" || { r=1; builtin continue; }\n"
        "    fi\n"
        "    __cb_rm \"$t\" || r=1\n"
        "  done\n"
        "  for t in .cellbox-old.??????; do\n"         /* not committed: roll back */
        "    [ -d \"$t\" ] && [ ! -L \"$t\" ] || builtin continue\n"
        "    __cb_in \"$t\" && __cb_rm \".cellbox-restore.${t#.cellbox-old.}\" && builtin command rmdir -- \"$t\" || r=1\n"
        "  done\n"
        "  for t in .cellbox-restore.??????; do\n"     /* an unpacking that never swapped */
        "    [ -d \"$t\" ] && [ ! -L \"$t\" ] || builtin continue\n"
        "    n=${t#.cellbox-restore.}\n"
        "    [ -e \".cellbox-done.$n\" ] || [ -e \".cellbox-old.$n\" ] && builtin continue\n"
        "    __cb_rm \"$t\" || r=1\n"
        "  done\n"
        "  builtin return $r\n"
        "}\n",
        LOCK_WAIT_S, RC_LOCKED);
}

/* Enter $__cb_d, lock it and finish an interrupted restore there. */
static void script_enter(cb_buf *s)
{
    cb_buf_printf(s,
        "builtin cd -- \"$__cb_d\" || __cb_fail \"cannot enter $__cb_d\" %d\n"
        /* the lost+found of a file system (a diskMB /workspace) belongs to
         * the host's root: not ours to archive nor to move */
        /* nor the temporary file of an upload in flight (sb_files.c): it
         * is renamed into place by the server, here or in what a restore
         * brings (moved aside, the upload would fail, or the restore's mv
         * when the rename came first) */
        "__cb_tx=('--exclude=.cellbox-upload-*') __cb_fx=(! -name '.cellbox-upload-*')\n"
        "if [ -d lost+found ] && [ ! -L lost+found ] && [ ! -w lost+found ]; then\n"
        "  __cb_tx+=(--anchored --exclude=./lost+found) __cb_fx+=(! -name lost+found)\n"
        "fi\n"
        "__cb_lock\n"
        "__cb_recover || __cb_fail \"an interrupted restore of $__cb_d could not be finished\" %d\n",
        RC_CANNOT, RC_RECOVER);
}

/* The recovery of a folder a restore record names (nothing to do when it
 * is gone: a /tmp of a sandbox that restarted). */
static char *recover_script(const char *path)
{
    cb_buf s = CB_BUF_INIT;
    script_begin(&s, path);
    cb_buf_puts(&s, "[ -d \"$__cb_d\" ] || builtin exit 0\n");
    script_enter(&s);
    return cb_buf_steal(&s);
}

/* ---- the journal of restores ------------------------------------------------------- */

/* Records that a restore of path (from backup bid) is about to run: the
 * record's file (owned), or NULL + errno. */
static char *journal_add(sb_box *b, const char *bid, const char *path)
{
    cb_autofree char *hex = cb_random_hex(8);
    char *file = cb_printf_new("%s/backups/restore-%s.journal", b->dir, hex);
    cJSON *j = cJSON_CreateObject();
    sb_json_add_path(j, "path", path);
    cJSON_AddStringToObject(j, "backup", bid);
    sb_json_add_now(j, "startedAt");
    cb_autofree char *text = cb_json_print(j);
    cJSON_Delete(j);
    if (sb_write_file_quick(file, text, strlen(text), 0600) < 0) {
        int e = errno;
        free(file);
        errno = e;
        return NULL;
    }
    return file;
}

/* Runs the recovery of the folder that record file names; the record goes
 * once it succeeded (or when it is unreadable). Logs a failure: the record
 * stays for the next try. backup_mu held. */
static void journal_recover(sb_box *b, const char *file)
{
    cb_autofree char *text = cb_read_file(file, NULL);
    if (!text)
        return;
    cJSON *j = cJSON_Parse(text);
    cb_autofree char *path = rec_path(j);
    if (!path || path[0] != '/') {
        cb_warn("backup", "sandbox %s: dropping the unreadable restore record %s", b->id, file);
        unlink(file);
        cJSON_Delete(j);
        return;
    }
    if (box_deleted(b)) {
        cJSON_Delete(j);
        return;
    }
    cb_autofree char *script = recover_script(path);
    bk_run k = {.out_fd = -1, .in_fd = -1};
    sb_error err = {0};
    int rc = bk_exec(b, "default", script, &k, &err);
    if (rc == 0 && k.res.exit_code == 0) {
        unlink(file);
        cb_logkv(CB_LOG_INFO, "backup", NULL, "sandbox %s: %s is whole again after an interrupted restore",
                 b->id, path);
    } else {
        cb_autofree char *msg = rc == 0 ? sb_exec_message(&k.err) : cb_strdup(err.msg);
        cb_warn("backup", "sandbox %s: cannot finish the interrupted restore of %s (%s); retried at the "
                "next start, backup or restore", b->id, path, msg);
    }
    bk_run_clear(&k);
    cJSON_Delete(j);
}

/* Recover every restore a record is left of. backup_mu held. */
static void journal_replay(sb_box *b)
{
    size_t n;
    char **names = bk_names(b, "restore-", ".journal", &n);
    for (size_t i = 0; i < n; i++) {
        cb_autofree char *file = cb_printf_new("%s/backups/%s", b->dir, names[i]);
        journal_recover(b, file);
        free(names[i]);
    }
    free(names);
}

void sb_backup_recover(sb_box *b)
{
    if (pthread_mutex_trylock(&b->backup_mu) != 0) {
        /* a backup or restore runs (maybe the one whose command started the
         * sandbox): it replays the journal itself, or the next acquire does */
        pthread_mutex_lock(&b->mu);
        b->backup_check = true;
        pthread_mutex_unlock(&b->mu);
        return;
    }
    journal_replay(b);
    pthread_mutex_unlock(&b->backup_mu);
}

/* ---- create ---------------------------------------------------------------------- */

static char *create_script(const char *path)
{
    cb_buf s = CB_BUF_INIT;
    script_begin(&s, path);
    cb_buf_printf(&s,
        "[ -e \"$__cb_d\" ] || __cb_fail \"$__cb_d does not exist\" %d\n"
        "[ -d \"$__cb_d\" ] || __cb_fail \"$__cb_d is not a folder\" %d\n",
        RC_NOT_FOUND, RC_NOT_DIR);
    script_enter(&s);
    /* tar exits 1 when a file changed while it was read: the archive is whole */
    cb_buf_puts(&s, "builtin command tar --create --file=- --format=gnu --numeric-owner --one-file-system \"${__cb_tx[@]}\" . "
                    "|| [ $? -eq 1 ]\n");
    return cb_buf_steal(&s);
}

/* Archives folder path of b (a script in session sid) into the new file
 * part, created here: 0 with its *size and *files, or -1 + err and no
 * part left. Takes b->backup_mu (replaying b's journal first). */
static int archive_make(sb_box *b, const char *path, const char *sid, const char *part, uint64_t *size,
                        long *files, sb_error *err)
{
    if (box_deleted(b))
        return sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' not found", b->id), -1;
    bk_run k = {.out_fd = open(part, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600), .in_fd = -1,
                .limit = backup_limit()};
    if (k.out_fd < 0)
        return create_fail(b, part, err);
    cb_autofree char *script = create_script(path);
    pthread_mutex_lock(&b->backup_mu);
    journal_replay(b);
    int rc = bk_exec(b, sid, script, &k, err);
    pthread_mutex_unlock(&b->backup_mu);
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
    *files = k.tc.entries;
    *size = k.out_bytes;
    bk_run_clear(&k);
    if (rc < 0)
        unlink(part);
    return rc;
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
    cb_autofree char *dir = bk_dir(b);
    cb_autofree char *part = bk_file(b, bid, "tar.part");
    cb_autofree char *tar = bk_file(b, bid, "tar");
    cb_autofree char *meta = bk_file(b, bid, "json");
    if (box_deleted(b))
        return sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' not found", b->id), -1;
    if (cb_mkdir_p(dir, 0700) < 0)
        return create_fail(b, dir, err);
    int64_t t0 = cb_real_us();
    uint64_t size;
    long files;
    if (archive_make(b, path, sid, part, &size, &files, err) < 0)
        return -1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", bid);
    sb_json_add_path(j, "path", path);
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
    bool gone = box_deleted(b);
    bool ok = !gone && rename(part, tar) == 0 && sb_write_file_quick(meta, text, strlen(text), 0600) == 0;
    int e = errno;
    if (!ok) {
        unlink(part);
        unlink(tar);
    }
    pthread_mutex_unlock(&meta_mu);
    if (!ok) {
        cJSON_Delete(j);
        if (gone)  /* deleted while it was archived (errno says nothing then) */
            return sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' not found", b->id), -1;
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
    size_t nn, n = 0;
    char **names = bk_names(b, "", ".json", &nn);
    cJSON **items = nn ? cb_calloc(nn, sizeof *items) : NULL;
    for (size_t i = 0; i < nn; i++) {
        names[i][strlen(names[i]) - 5] = '\0';  /* the id */
        cJSON *j = bk_meta(b, names[i], NULL);
        if (j)
            items[n++] = j;
        free(names[i]);
    }
    free(names);
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
    sb_json_add_now(j, "timestamp");
    return sb_reply_json(r, 200, j);
}

/* ---- restore ---------------------------------------------------------------------- */

static char *restore_script(const char *path)
{
    cb_buf s = CB_BUF_INIT;
    script_begin(&s, path);
    cb_buf_printf(&s,
        "if [ -e \"$__cb_d\" ] || [ -L \"$__cb_d\" ]; then\n"
        "  [ -d \"$__cb_d\" ] || __cb_fail \"$__cb_d exists and is not a folder\" %d\n"
        "else\n"
        "  builtin command mkdir -p -- \"$__cb_d\" || __cb_fail \"cannot create $__cb_d\" %d\n"
        "fi\n",
        RC_NOT_DIR, RC_CANNOT);
    script_enter(&s);
    cb_buf_printf(&s,
        "__cb_new=$(builtin command mktemp -d .cellbox-restore.XXXXXX) || __cb_fail \"cannot write in $__cb_d\" %d\n"
        "__cb_old=.cellbox-old.${__cb_new#.cellbox-restore.}\n"
        "__cb_done=.cellbox-done.${__cb_new#.cellbox-restore.}\n"
        "builtin command mkdir -- \"$__cb_old\" || { builtin command rmdir -- \"$__cb_new\"; "
        "__cb_fail \"cannot write in $__cb_d\" %d; }\n"
        /* a failed step is undone by the recovery: before the commit it rolls back */
        "__cb_undo() { __cb_recover || __cb_fail \"$1, and undoing it failed\" %d; __cb_fail \"$1\" %d; }\n"
        /* 1. unpack aside: a failure here leaves the folder as it was */
        "if ! builtin command tar --extract --file=- --preserve-permissions --numeric-owner "
        "--directory=\"$__cb_new\" --checkpoint=%d --checkpoint-action=echo=@cb%%u; then\n"
        "  __cb_recover; builtin exit %d\n"
        "fi\n"
        /* 2. the old entries aside */
        "builtin command find . -mindepth 1 -maxdepth 1 ! -name \"$__cb_new\" ! -name \"$__cb_old\" \"${__cb_fx[@]}\" "
        "-exec mv -t \"$__cb_old\" -- {} + || __cb_undo \"cannot move the old content aside\"\n"
        /* 3. the commit point */
        "builtin command mv -T -- \"$__cb_old\" \"$__cb_done\" || __cb_undo \"cannot commit the restore\"\n"
        /* 4. the new entries in; when one cannot be, back to before the
         * commit (the new entries out again, then the commit undone) */
        "if ! __cb_in \"$__cb_new\"; then\n"
        "  if builtin command find . -mindepth 1 -maxdepth 1 ! -name \"$__cb_new\" ! -name \"$__cb_done\" \"${__cb_fx[@]}\" "
        "-exec mv -t \"$__cb_new\" -- {} + && builtin command mv -T -- \"$__cb_done\" \"$__cb_old\"; then\n"
        "    __cb_undo \"cannot move the restored content in\"\n"
        "  fi\n"
        /* still committed: the recovery rolls forward, or the record retries it */
        "  __cb_recover || __cb_fail \"cannot move the restored content in, nor back out\" %d\n"
        "fi\n"
        /* 5. the folder's mode, the temporary folders away */
        "__cb_recover || __cb_fail \"cannot finish the restore of $__cb_d\" %d\n",
        RC_CANNOT, RC_CANNOT, RC_RECOVER, RC_SWAP, CK_RECORDS, RC_TAR, RC_RECOVER, RC_RECOVER);
    return cb_buf_steal(&s);
}

/* Takes the backup locks of a and b (either may be NULL, or the same
 * sandbox) in one order, by id, so two cross-sandbox restores in opposite
 * directions cannot deadlock; unlock_pair releases them. */
static void lock_pair(sb_box *a, sb_box *b)
{
    if (a == b || !a || !b) {
        pthread_mutex_lock(&(a ? a : b)->backup_mu);
        return;
    }
    /* by id, then by address: a deleted sandbox still held by a request
     * and a new one of its id are two boxes with one id */
    int c = strcmp(a->id, b->id);
    if (c > 0 || (c == 0 && (uintptr_t)a > (uintptr_t)b)) {
        sb_box *t = a;
        a = b, b = t;
    }
    pthread_mutex_lock(&a->backup_mu);
    pthread_mutex_lock(&b->backup_mu);
}

static void unlock_pair(sb_box *a, sb_box *b)
{
    if (a && b && a != b)
        pthread_mutex_unlock(&a->backup_mu);
    pthread_mutex_unlock(&(b ? b : a)->backup_mu);
}

/* Unpacks the archive file tar (backup bid of src; src NULL: an archive
 * that only this call knows) into folder path of dst (a script in dst's
 * session sid), crash-safely: the restore's record is in dst's journal, so
 * dst's recovery finishes or undoes it. Holds the backup locks of both
 * (lock_pair). 0, or -1 + err. */
static int archive_restore(sb_box *src, const char *bid, const char *tar, sb_box *dst, const char *path,
                           const char *sid, sb_error *err)
{
    if (box_deleted(dst))
        return sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' not found", dst->id), -1;
    bk_run k = {.out_fd = -1, .in_fd = open(tar, O_RDONLY | O_CLOEXEC)};
    if (k.in_fd < 0)
        return sb_fail(err, SB_E_BACKUP_NOT_FOUND, "backup '%s' not found", bid), -1;
    cb_autofree char *bkdir = bk_dir(dst);
    cb_autofree char *script = restore_script(path);
    lock_pair(src, dst);
    journal_replay(dst);
    cb_autofree char *record = cb_mkdir_p(bkdir, 0700) == 0 ? journal_add(dst, bid, path) : NULL;
    int rc;
    if (!record) {
        rc = -1;
        if (box_deleted(dst))  /* its folder went with it meanwhile */
            sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' not found", dst->id);
        else
            sb_fail(err, SB_E_INTERNAL_ERROR, "cannot record the restore in %s: %s", bkdir, strerror(errno));
    } else {
        rc = bk_exec(dst, sid, script, &k, err);
        if (rc == 0 && k.res.exit_code == 0)
            unlink(record);
        else    /* failed, or cut off midway (the sandbox stopped): whole again now, or at the next start */
            journal_recover(dst, record);
    }
    unlock_pair(src, dst);
    close(k.in_fd);
    if (rc == 0 && k.res.exit_code != 0) {
        script_error(&k, "restore", path, err);
        rc = -1;
    }
    bk_run_clear(&k);
    return rc;
}

/* The sandbox a restore goes to: body's "sandboxId" (a new reference), b
 * itself (referenced too) when absent or b's own id; NULL + err. */
static sb_box *restore_target(const cJSON *body, sb_box *b, sb_error *err)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "sandboxId");
    if (!t || cJSON_IsNull(t) || (cJSON_IsString(t) && strcmp(t->valuestring, b->id) == 0))
        return sb_box_ref(b);
    if (!cJSON_IsString(t) || !*t->valuestring)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "sandboxId must be a sandbox id"), NULL;
    sb_box *dst = sb_box_get(t->valuestring);
    if (!dst)
        sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' not found", t->valuestring);
    return dst;
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
    cb_autofree char *own = rec_path(meta);
    cb_autofree char *path = req_path(body, own ? own : "/workspace", err);
    const char *sid = path ? req_session(body, err) : NULL;
    sb_box *dst = sid ? restore_target(body, b, err) : NULL;
    if (!dst) {
        cJSON_Delete(meta);
        return -1;
    }
    cb_autofree char *tar = bk_file(b, bid, "tar");
    if (archive_restore(b, bid, tar, dst, path, sid, err) < 0) {
        sb_box_unref(dst);
        cJSON_Delete(meta);
        return -1;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "success", true);
    cJSON_AddStringToObject(j, "id", bid);
    cJSON_AddStringToObject(j, "sandboxId", dst->id);
    sb_json_add_path(j, "path", path);
    cJSON_AddNumberToObject(j, "files", cb_json_num(meta, "files", 0));
    cJSON_AddNumberToObject(j, "size", cb_json_num(meta, "size", 0));
    sb_json_add_now(j, "timestamp");
    cJSON_Delete(meta);
    cb_logkv(CB_LOG_INFO, "backup", NULL, "sandbox %s: backup %s restored to %s%s%s", b->id, bid, path,
             dst != b ? " of sandbox " : "", dst != b ? dst->id : "");
    sb_box_unref(dst);
    return sb_reply_json(r, 200, j);
}

/* ---- fork: a new sandbox with the options and a folder of another ------------------ */

/* POST /v1/sandboxes/{id}/fork {"id": new, "path"}: new gets b's options
 * (sb_box_create_from), then the folder is archived in b and restored in
 * new, the archive kept in new's state folder for that time only (never
 * one of b's backups). The copy is what tar read: writes in b meanwhile
 * may or may not be in it, as for a backup. Any failure after new was
 * made deletes it: a fork either fully happens or leaves nothing. */
int sb_backup_fork(sb_req *r, sb_box *b, sb_error *err)
{
    if (!r->json)
        r->json = cJSON_CreateObject();
    const cJSON *body = r->json;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(body, "id");
    if (!cJSON_IsString(id))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "id (the new sandbox's id) is required"), -1;
    cb_autofree char *path = req_path(body, "/workspace", err);
    if (!path)
        return -1;
    if (box_deleted(b))
        return sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' not found", b->id), -1;
    bool created;
    sb_box *nb = sb_box_create_from(id->valuestring, b, &created, err);
    if (!nb)
        return -1;
    if (!created) {
        sb_box_unref(nb);
        return sb_fail(err, SB_E_SANDBOX_CONFLICT, "sandbox '%s' already exists", id->valuestring), -1;
    }
    cb_autofree char *hex = cb_random_hex(8);
    cb_autofree char *dir = bk_dir(nb);
    cb_autofree char *part = cb_printf_new("%s/fork-%s.tar", dir, hex);
    cb_autofree char *label = cb_printf_new("fork of %s", b->id);
    uint64_t size = 0;
    long files = 0;
    int rc = cb_mkdir_p(dir, 0700);
    if (rc < 0)
        create_fail(b, dir, err);
    if (rc == 0)
        rc = archive_make(b, path, "default", part, &size, &files, err);
    if (rc == 0) {
        rc = archive_restore(NULL, label, part, nb, path, "default", err);
        unlink(part);
    }
    if (rc < 0) {
        sb_error ignored = {0};
        if (sb_box_delete(nb, &ignored) < 0)
            cb_warn("backup", "fork of %s: cannot delete the half-made sandbox %s: %s", b->id, nb->id, ignored.msg);
        sb_box_unref(nb);
        return -1;
    }
    cJSON *j = sb_box_json(nb);
    cJSON_AddBoolToObject(j, "created", true);
    cJSON_AddStringToObject(j, "forkedFrom", b->id);
    cb_logkv(CB_LOG_INFO, "backup", NULL, "sandbox %s forked from %s (%s, %llu bytes, %ld entries)", nb->id,
             b->id, path, (unsigned long long)size, files);
    sb_box_unref(nb);
    return sb_reply_json(r, 201, j);
}
