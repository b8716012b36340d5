/* sandbox/sb_watch.c: file watching, done by the server with inotify on
 * folders of a sandbox, relayed as server-sent events.
 *
 * The watched folder is resolved exactly as the files API does (sb_files.c):
 * a normalised absolute path, opened with openat2(RESOLVE_IN_ROOT) below the
 * sandbox's root fd, as the sandbox's user, refused on kernel file systems.
 * The stream keeps the root fd (not one on the watched folder: that would
 * hold back its IN_DELETE_SELF) and resolves the folder again, checking its
 * device and inode, whenever it adds watches. inotify watches are added on
 * "/proc/self/fd/N" of fds, never on paths, so nothing outside the sandbox
 * can be named. Sub-folders are opened from the watched folder with
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV and O_NOFOLLOW:
 * a symlink is never followed, a sub-watch never leaves the watched tree
 * nor its file system (as recursive listing does not cross mounts).
 *
 * Events: IN_CREATE -> create, IN_CLOSE_WRITE -> modify (a write is reported
 * once, when the writer closes it; metadata-only changes are not reported),
 * IN_DELETE -> delete, IN_MOVED_FROM + IN_MOVED_TO with the same cookie ->
 * one move; a lone IN_MOVED_FROM (moved out) -> delete, a lone IN_MOVED_TO
 * (moved in) -> create. A folder that appears (created or moved in) is
 * watched at once and then listed: what is already in it is reported as
 * create (and names reported that way are not reported a second time when
 * their own IN_CREATE follows). The files API writes through a temporary
 * ".cellbox-upload-*" file renamed into place: those names are never
 * reported, and the rename is create or modify of the target, decided by
 * the names this stream knows to exist.
 *
 * The stream ends with `stopped` when the watched folder is deleted or
 * moved, or the sandbox stops (sleep, delete, agent death: its agent's
 * pidfd is polled), and with `error` on inotify queue overflow or when more
 * than sb_watch_max_dirs() folders would be watched. A watch does not count
 * as activity: the sandbox is acquired only while the watches are set up.
 *
 * Names are bytes: include/exclude globs match them as they are; event
 * paths go into JSON with sb_json_add_path (U+FFFD where they are not UTF-8,
 * plus the exact bytes in pathBase64 / oldPathBase64), and the folder to
 * watch may be given as pathBase64, as for the files API.
 *
 * Threads: the handler and produce() run on the connection's own thread
 * (MHD thread per connection); produce() blocks in poll() on the inotify fd,
 * the agent's pidfd and the client socket, with the SSE keepalive as timeout.
 * Nothing here is shared between streams.
 */
#include "config.h"
#include "sandbox/sb_watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "sandbox/sb_api.h"
#include "sandbox/sb_util.h"

#define WATCH_MASK (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | \
                    IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)
#define MOVE_WAIT_MS 20          /* how long an IN_MOVED_FROM waits for its IN_MOVED_TO */
#define GLOB_MAX 64              /* include / exclude entries */
#define KNOWN_MAX 1000000        /* names remembered (create vs modify of uploads) */
#define UPLOAD_PREFIX ".cellbox-upload-"

size_t sb_watch_max_dirs(void)
{
    static size_t n;
    if (!n) {
        const char *e = getenv("CELLBOX_WATCH_MAX_DIRS");
        long v = e ? atol(e) : 0;
        n = v >= 1 && v <= 1000000 ? (size_t)v : 8192;
    }
    return n;
}

/* ---- a small set of strings (open addressing) ---------------------------------- */

typedef struct strset {
    char **slot;                 /* NULL = empty, TOMB = removed */
    size_t cap, used, live;
} strset;

static char tomb_mark;
#define TOMB (&tomb_mark)

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The slot holding k, or the one to put it in (found says which). */
static size_t set_slot(const strset *s, const char *k, bool *found)
{
    size_t i = str_hash(k) & (s->cap - 1), first_tomb = (size_t)-1;
    for (;;) {
        char *e = s->slot[i];
        if (!e) {
            *found = false;
            return first_tomb != (size_t)-1 ? first_tomb : i;
        }
        if (e == TOMB) {
            if (first_tomb == (size_t)-1)
                first_tomb = i;
        } else if (strcmp(e, k) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & (s->cap - 1);
    }
}

static void set_clear(strset *s)
{
    for (size_t i = 0; i < s->cap; i++)
        if (s->slot[i] && s->slot[i] != TOMB)
            free(s->slot[i]);
    free(s->slot);
    memset(s, 0, sizeof *s);
}

/* Adds k (taken). */
static void set_add_take(strset *s, char *k)
{
    if ((s->used + 1) * 4 > s->cap * 3) {
        strset n = {0};
        n.cap = s->cap < 64 ? 64 : s->live * 2 >= s->cap ? s->cap * 2 : s->cap;
        n.slot = cb_calloc(n.cap, sizeof *n.slot);
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i] && s->slot[i] != TOMB) {
                bool f;
                n.slot[set_slot(&n, s->slot[i], &f)] = s->slot[i];
                n.used++, n.live++;
            }
        free(s->slot);
        *s = n;
    }
    bool found;
    size_t i = set_slot(s, k, &found);
    if (found) {
        free(k);
        return;
    }
    if (!s->slot[i])
        s->used++;
    s->slot[i] = k;
    s->live++;
}

/* Removes k; was it there? */
static bool set_del(strset *s, const char *k)
{
    if (!s->cap)
        return false;
    bool found;
    size_t i = set_slot(s, k, &found);
    if (!found)
        return false;
    free(s->slot[i]);
    s->slot[i] = TOMB;
    s->live--;
    return true;
}

/* ---- the stream's state -------------------------------------------------------------- */

typedef struct wdir {
    int wd;
    char *rel;                   /* "" for the watched folder, "a/b" below it */
} wdir;

typedef struct watch {
    sb_box *b;                   /* referenced, not acquired */
    unsigned generation;         /* of the sandbox's run the watch belongs to */
    int pidfd;                   /* dup of the agent's pidfd: readable when it ends */
    int ifd;                     /* inotify */
    int root;                    /* the sandbox's root (sb_box_root) */
    dev_t dev;                   /* the watched folder, as it was found */
    ino_t ino;
    int client_fd;
    char *path;                  /* the watched folder, absolute in the sandbox */
    bool recursive;
    char **include, **exclude;
    size_t ninclude, nexclude;
    wdir *dirs;                  /* sorted by wd (inotify hands them out increasing) */
    size_t ndirs, cap;
    strset seen;                 /* "wd/name" listed by a scan, until its IN_CREATE */
    strset known;                /* "wd/name" of non-folders that exist */
    bool known_off;              /* too many names: stopped remembering */
    struct {                     /* an IN_MOVED_FROM waiting for its IN_MOVED_TO */
        bool set;
        uint32_t cookie;
        char *rel;
        char *name;
        bool isdir;
    } mv;
    char *last_modify;           /* rel of the last event if it was a modify */
    bool sent_watching;
    int64_t last_out_ms;
    union {
        struct inotify_event ev;
        char bytes[64 * 1024];
    } buf;
} watch;

static void watch_free(void *p)
{
    watch *w = p;
    if (!w)
        return;
    for (int *fd = (int[]){w->pidfd, w->ifd, w->root, -2}; *fd != -2; fd++)
        if (*fd >= 0)
            close(*fd);
    for (size_t i = 0; i < w->ndirs; i++)
        free(w->dirs[i].rel);
    free(w->dirs);
    for (size_t i = 0; i < w->ninclude; i++)
        free(w->include[i]);
    for (size_t i = 0; i < w->nexclude; i++)
        free(w->exclude[i]);
    free(w->include);
    free(w->exclude);
    set_clear(&w->seen);
    set_clear(&w->known);
    free(w->mv.rel);
    free(w->mv.name);
    free(w->last_modify);
    free(w->path);
    if (w->b)
        sb_box_unref(w->b);
    free(w);
}

static wdir *dir_find(watch *w, int wd)
{
    size_t lo = 0, hi = w->ndirs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->dirs[mid].wd == wd)
            return &w->dirs[mid];
        if (w->dirs[mid].wd < wd)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void dir_insert(watch *w, int wd, const char *rel)
{
    if (w->ndirs == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 16;
        w->dirs = cb_realloc(w->dirs, w->cap * sizeof *w->dirs);
    }
    size_t i = w->ndirs;
    while (i > 0 && w->dirs[i - 1].wd > wd)   /* almost always appends */
        i--;
    memmove(&w->dirs[i + 1], &w->dirs[i], (w->ndirs - i) * sizeof *w->dirs);
    w->dirs[i] = (wdir){wd, cb_strdup(rel)};
    w->ndirs++;
}

static void dir_remove_at(watch *w, size_t i)
{
    free(w->dirs[i].rel);
    memmove(&w->dirs[i], &w->dirs[i + 1], (w->ndirs - i - 1) * sizeof *w->dirs);
    w->ndirs--;
}

/* Is rel the folder prefix or below it? */
static bool under(const char *rel, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(rel, prefix, n) == 0 && (rel[n] == '\0' || rel[n] == '/');
}

static const wdir *dir_by_rel(watch *w, const char *rel)
{
    for (size_t i = 0; i < w->ndirs; i++)
        if (strcmp(w->dirs[i].rel, rel) == 0)
            return &w->dirs[i];
    return NULL;
}

/* The tree at prefix left the watch: stop watching every folder in it. */
static void dirs_drop(watch *w, const char *prefix)
{
    for (size_t i = 0; i < w->ndirs;)
        if (w->dirs[i].rel[0] && under(w->dirs[i].rel, prefix)) {
            inotify_rm_watch(w->ifd, w->dirs[i].wd);
            dir_remove_at(w, i);
        } else {
            i++;
        }
}

/* The tree at from is now at to (a rename inside the watch). */
static void dirs_rename(watch *w, const char *from, const char *to)
{
    size_t n = strlen(from);
    for (size_t i = 0; i < w->ndirs; i++)
        if (w->dirs[i].rel[0] && under(w->dirs[i].rel, from)) {
            char *nr = cb_printf_new("%s%s", to, w->dirs[i].rel + n);
            free(w->dirs[i].rel);
            w->dirs[i].rel = nr;
        }
}

static char *rel_join(const char *dir, const char *name)
{
    return dir[0] ? cb_printf_new("%s/%s", dir, name) : cb_strdup(name);
}

static char *key_of(int wd, const char *name)
{
    return cb_printf_new("%d/%s", wd, name);
}

static void known_add(watch *w, int wd, const char *name)
{
    if (w->known_off)
        return;
    if (w->known.live >= KNOWN_MAX) {
        w->known_off = true;
        set_clear(&w->known);
        return;
    }
    set_add_take(&w->known, key_of(wd, name));
}

static bool known_del(watch *w, int wd, const char *name)
{
    cb_autofree char *k = key_of(wd, name);
    return set_del(&w->known, k);
}

/* name left folder wd (deleted or moved out): forget that a scan reported
 * it and that it exists. */
static void name_gone(watch *w, int wd, const char *name, bool isdir)
{
    cb_autofree char *k = key_of(wd, name);
    set_del(&w->seen, k);
    if (!isdir)
        known_del(w, wd, name);
}

/* ---- filters ------------------------------------------------------------------------- */

static bool glob_any(char *const *globs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (fnmatch(globs[i], name, 0) == 0)
            return true;
    return false;
}

static const char *base_name(const char *rel)
{
    const char *s = strrchr(rel, '/');
    return s ? s + 1 : rel;
}

/* Does an exclude glob match a name on the way from the watched folder to
 * rel (rel's own name included)? Excluded folders are not even watched. */
static bool excluded(const watch *w, const char *rel)
{
    if (!w->nexclude || !rel[0])
        return false;
    cb_autofree char *copy = cb_strdup(rel);
    char *save = NULL;
    for (char *tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save))
        if (glob_any(w->exclude, w->nexclude, tok))
            return true;
    return false;
}

static bool is_upload_tmp(const char *name)
{
    return strncmp(name, UPLOAD_PREFIX, sizeof UPLOAD_PREFIX - 1) == 0;
}

/* Would an event on rel reach the client? */
static bool reportable(const watch *w, const char *rel)
{
    const char *name = base_name(rel);
    if (is_upload_tmp(name) || excluded(w, rel))
        return false;
    return !w->ninclude || glob_any(w->include, w->ninclude, name);
}

/* ---- events -------------------------------------------------------------------------- */

static char *abs_path(const watch *w, const char *rel)
{
    if (!rel[0])
        return cb_strdup(w->path);
    return cb_printf_new("%s%s%s", w->path, strcmp(w->path, "/") ? "/" : "", rel);
}

static void emit(watch *w, cb_buf *out, const char *type, const char *rel, bool isdir, const char *old)
{
    bool modify = strcmp(type, "modify") == 0;
    if (modify && w->last_modify && strcmp(w->last_modify, rel) == 0)
        return;  /* back-to-back writes of one file: one modify */
    free(w->last_modify);
    w->last_modify = modify ? cb_strdup(rel) : NULL;
    cJSON *j = cJSON_CreateObject();
    cb_autofree char *p = abs_path(w, rel);
    sb_json_add_path(j, "path", p);
    if (old) {
        cb_autofree char *o = abs_path(w, old);
        sb_json_add_path(j, "oldPath", o);
    }
    cJSON_AddBoolToObject(j, "isDirectory", isdir);
    sb_json_add_now(j, "timestamp");
    sb_sse_event(out, type, j);
}

static void emit_end(watch *w, cb_buf *out, const char *event, const char *reason, sb_err code,
                     const char *message)
{
    cJSON *j = cJSON_CreateObject();
    sb_json_add_path(j, "path", w->path);
    if (reason)
        cJSON_AddStringToObject(j, "reason", reason);
    if (code) {
        cJSON_AddStringToObject(j, "code", sb_err_name(code));
        cb_autofree char *text = sb_utf8_lossy(message, NULL);  /* it may quote a path */
        cJSON_AddStringToObject(j, "message", text);
    }
    sb_json_add_now(j, "timestamp");
    sb_sse_event(out, event, j);
}

/* ---- adding watches ---------------------------------------------------------------------- */

/* The watched folder, resolved again in the sandbox's root: no fd on it is
 * kept between uses, as an open fd would hold back its IN_DELETE_SELF. It
 * must still be the folder the watch began on. fd or -1 (errno set). */
static int open_base(watch *w)
{
    int fd = sb_open_in_root(w->root, w->path, O_PATH | O_DIRECTORY, 0);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || st.st_dev != w->dev || st.st_ino != w->ino)) {
        close(fd);
        errno = ENOENT;  /* replaced: the old one's IN_DELETE_SELF / IN_MOVE_SELF ends the stream */
        return -1;
    }
    return fd;
}

/* A folder below the watched one (base), never through a symlink, never on
 * another file system. fd or -1. */
static int open_below(int base, const char *rel, int flags)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC),
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                      RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    int fd;
    do
        fd = (int)syscall(SYS_openat2, base, rel[0] ? rel : ".", &how, sizeof how);
    while (fd < 0 && errno == EAGAIN);
    return fd;
}

typedef struct strlist {
    char **v;
    size_t n, head, cap;
} strlist;

static void list_push_take(strlist *l, char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = cb_realloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = s;
}

static void list_clear(strlist *l)
{
    for (size_t i = l->head; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Watch the folder rel and list it: its sub-folders go to todo (recursive
 * watches), its names are remembered, and with out set they are reported
 * as create (a folder that just appeared). A folder that cannot be watched
 * (gone, not readable by the sandbox's user, a symlink, a kernel or other
 * file system) is skipped, except the watched folder itself. 0, or -1 with
 * WATCH_LIMIT / PERMISSION_DENIED. Runs as the sandbox's user. */
static int add_dir(watch *w, int base, const char *rel, cb_buf *out, strlist *todo, sb_error *err)
{
    bool top = !rel[0];
    if (w->ndirs >= sb_watch_max_dirs())
        return sb_fail(err, SB_E_WATCH_LIMIT, "more than %zu folders to watch under %s (exclude "
                       "some, or watch a smaller tree)", sb_watch_max_dirs(), w->path), -1;
    int fd = open_below(base, rel, O_RDONLY);
    if (fd < 0) {
        if (top)
            return sb_fail(err, sb_err_from_errno(errno), "watch %s: %s", w->path, strerror(errno)), -1;
        return 0;
    }
    if (sb_files_check_fs(fd, w->path, NULL) < 0) {
        close(fd);
        return top ? sb_fail(err, SB_E_PERMISSION_DENIED, "%s: kernel file systems cannot be watched",
                             w->path), -1 : 0;
    }
    char proc[40];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int wd = inotify_add_watch(w->ifd, proc, WATCH_MASK);
    if (wd < 0) {
        int e = errno;
        close(fd);
        if (e == ENOSPC)
            return sb_fail(err, SB_E_WATCH_LIMIT, "the system's inotify watch limit is reached "
                           "(fs.inotify.max_user_watches)"), -1;
        if (top)
            return sb_fail(err, sb_err_from_errno(e), "watch %s: %s", w->path, strerror(e)), -1;
        return 0;
    }
    if (dir_find(w, wd)) {  /* the same folder twice (a bind mount): once is enough */
        close(fd);
        return 0;
    }
    dir_insert(w, wd, rel);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return 0;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        bool isdir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st;
            isdir = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
        }
        cb_autofree char *child = rel_join(rel, e->d_name);
        if (!isdir)
            known_add(w, wd, e->d_name);
        if (out) {
            if (reportable(w, child))
                emit(w, out, "create", child, isdir, NULL);
            set_add_take(&w->seen, key_of(wd, e->d_name));
        }
        if (isdir && w->recursive && !excluded(w, child))
            list_push_take(todo, cb_steal(&child));
    }
    closedir(d);
    return 0;
}

/* Watch rel and (recursive) every folder below it, breadth first so that
 * only one folder is open at a time. */
static int add_tree(watch *w, const char *rel, cb_buf *out, sb_error *err)
{
    strlist todo = {0};
    list_push_take(&todo, cb_strdup(rel));
    int rc = 0;
    sb_files_as_user(w->b);  /* inotify needs read access: checked as for the sandbox's user */
    int base = open_base(w);
    if (base < 0 && !rel[0])
        rc = sb_fail(err, sb_err_from_errno(errno), "watch %s: %s", w->path, strerror(errno));
    while (base >= 0 && rc == 0 && todo.head < todo.n) {
        char *cur = todo.v[todo.head++];
        rc = add_dir(w, base, cur, out, &todo, err);
        free(cur);
    }
    if (base >= 0)
        close(base);
    sb_files_as_server();
    list_clear(&todo);
    return rc;
}

/* ---- handling inotify events ------------------------------------------------------------ */

enum { GO_ON = 0, END = 1 };

/* A folder appeared at rel (created or moved in): watch it, report its
 * contents. */
static int appeared(watch *w, cb_buf *out, const char *rel, bool isdir)
{
    if (!isdir || !w->recursive || excluded(w, rel))
        return GO_ON;
    sb_error err = {0};
    if (add_tree(w, rel, out, &err) < 0) {
        emit_end(w, out, "error", NULL, err.code, err.msg);
        return END;
    }
    return GO_ON;
}

/* The IN_MOVED_FROM that found no partner: it moved out of the watch. */
static void flush_move(watch *w, cb_buf *out)
{
    if (!w->mv.set)
        return;
    w->mv.set = false;
    if (w->mv.isdir)
        dirs_drop(w, w->mv.rel);
    if (reportable(w, w->mv.rel))
        emit(w, out, "delete", w->mv.rel, w->mv.isdir, NULL);
    free(w->mv.rel);
    free(w->mv.name);
    w->mv.rel = w->mv.name = NULL;
}

/* IN_MOVED_TO of the pending IN_MOVED_FROM: one rename inside the watch. */
static int finish_move(watch *w, cb_buf *out, const char *to, int to_wd, const char *to_name)
{
    cb_autofree char *from = cb_steal(&w->mv.rel);
    cb_autofree char *from_name = cb_steal(&w->mv.name);
    bool isdir = w->mv.isdir;
    w->mv.set = false;
    bool had_target = false;
    if (!isdir) {
        had_target = known_del(w, to_wd, to_name);
        known_add(w, to_wd, to_name);
    }
    bool rep_old = reportable(w, from), rep_new = reportable(w, to);
    int rc = GO_ON;
    if (isdir && w->recursive) {
        bool watched = dir_by_rel(w, from) != NULL, want = !excluded(w, to);
        if (watched && want)
            dirs_rename(w, from, to);
        else if (watched)
            dirs_drop(w, from);
        if (rep_old && rep_new)
            emit(w, out, "move", to, true, from);
        else if (rep_old)
            emit(w, out, "delete", from, true, NULL);
        else if (rep_new)
            emit(w, out, "create", to, true, NULL);
        if (!watched && want)
            rc = appeared(w, out, to, true);
        return rc;
    }
    if (rep_old && rep_new)
        emit(w, out, "move", to, isdir, from);
    else if (rep_old)
        emit(w, out, "delete", from, isdir, NULL);
    else if (rep_new)  /* a files API upload put in place, or out of an excluded name */
        emit(w, out, is_upload_tmp(from_name) && had_target ? "modify" : "create", to, isdir, NULL);
    return rc;
}

static const char *sandbox_gone(watch *w);

/* Why the watched folder went away: the sandbox's end when that is the
 * cause (a delete removes the workspace after marking the sandbox deleted),
 * else what happened to the folder. */
static const char *stop_reason(watch *w, const char *fs_reason)
{
    const char *gone = sandbox_gone(w);
    return gone ? gone : fs_reason;
}

static int handle_event(watch *w, cb_buf *out, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        flush_move(w, out);
        emit_end(w, out, "error", NULL, SB_E_WATCH_OVERFLOW,
                 "too many changes at once: events were lost; watch again (and list the folder)");
        return END;
    }
    bool pair = w->mv.set && (ev->mask & IN_MOVED_TO) && ev->cookie == w->mv.cookie;
    if (!pair)
        flush_move(w, out);
    wdir *d = dir_find(w, ev->wd);
    if (!d)
        return GO_ON;  /* a folder we stopped watching */
    bool top = !d->rel[0];
    if (ev->mask & IN_IGNORED) {
        if (top) {
            emit_end(w, out, "stopped", stop_reason(w, "deleted"), SB_OK, NULL);
            return END;
        }
        dir_remove_at(w, (size_t)(d - w->dirs));
        return GO_ON;
    }
    if (top && (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT))) {
        emit_end(w, out, "stopped", stop_reason(w, ev->mask & IN_DELETE_SELF ? "deleted" :
                 ev->mask & IN_MOVE_SELF ? "moved" : "unmounted"), SB_OK, NULL);
        return END;
    }
    if (!ev->len || !ev->name[0])
        return GO_ON;  /* *_SELF of a sub-folder: its parent reports it */
    const char *name = ev->name;
    bool isdir = ev->mask & IN_ISDIR;
    cb_autofree char *rel = rel_join(d->rel, name);
    int wd = ev->wd;
    if (ev->mask & IN_CREATE) {
        cb_autofree char *k = key_of(wd, name);
        if (!isdir)
            known_add(w, wd, name);
        if (set_del(&w->seen, k))
            return GO_ON;  /* already reported by the scan of its new folder */
        if (reportable(w, rel))
            emit(w, out, "create", rel, isdir, NULL);
        return appeared(w, out, rel, isdir);
    }
    if (ev->mask & IN_CLOSE_WRITE) {
        if (reportable(w, rel))
            emit(w, out, "modify", rel, false, NULL);
        return GO_ON;
    }
    if (ev->mask & IN_DELETE) {
        name_gone(w, wd, name, isdir);
        if (reportable(w, rel))
            emit(w, out, "delete", rel, isdir, NULL);
        return GO_ON;
    }
    if (ev->mask & IN_MOVED_FROM) {
        name_gone(w, wd, name, isdir);
        w->mv.set = true;
        w->mv.cookie = ev->cookie;
        w->mv.rel = cb_steal(&rel);
        w->mv.name = cb_strdup(name);
        w->mv.isdir = isdir;
        return GO_ON;
    }
    if (ev->mask & IN_MOVED_TO) {
        if (pair)
            return finish_move(w, out, rel, wd, name);
        cb_autofree char *k = key_of(wd, name);
        set_del(&w->seen, k);
        if (!isdir)
            known_add(w, wd, name);
        if (reportable(w, rel))
            emit(w, out, "create", rel, isdir, NULL);
        return appeared(w, out, rel, isdir);
    }
    return GO_ON;
}

/* Read what inotify has and turn it into events. -1 when nothing was there. */
static int read_events(watch *w, cb_buf *out)
{
    ssize_t n;
    do
        n = read(w->ifd, w->buf.bytes, sizeof w->buf.bytes);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1;
    free(w->last_modify);  /* modifies are merged within one read only */
    w->last_modify = NULL;
    for (char *p = w->buf.bytes; p < w->buf.bytes + n;) {
        const struct inotify_event *ev = (const struct inotify_event *)(void *)p;
        if (handle_event(w, out, ev) == END)
            return END;
        p += sizeof *ev + ev->len;
    }
    return GO_ON;
}

/* ---- the stream ------------------------------------------------------------------------- */

/* Why the sandbox this watch belongs to is gone, or NULL while it runs. */
static const char *sandbox_gone(watch *w)
{
    const char *why = NULL;
    pthread_mutex_lock(&w->b->mu);
    if (w->b->deleted)
        why = "sandboxDeleted";
    else if (w->b->state != SB_BOX_RUNNING || w->b->generation != w->generation)
        why = "sandboxStopped";
    pthread_mutex_unlock(&w->b->mu);
    if (!why && w->pidfd >= 0) {
        struct pollfd p = {w->pidfd, POLLIN, 0};
        if (poll(&p, 1, 0) == 1)
            why = "sandboxStopped";  /* its agent ended; the server will notice */
    }
    return why;
}

static int watch_produce(void *ctx, cb_buf *out)
{
    watch *w = ctx;
    if (!w->sent_watching) {
        w->sent_watching = true;
        w->last_out_ms = sb_now_ms();
        cJSON *j = cJSON_CreateObject();
        sb_json_add_path(j, "path", w->path);
        cJSON_AddBoolToObject(j, "recursive", w->recursive);
        sb_sse_event(out, "watching", j);
        return 0;
    }
    for (;;) {
        const char *gone = sandbox_gone(w);
        if (gone) {
            emit_end(w, out, "stopped", gone, SB_OK, NULL);
            return 1;
        }
        struct pollfd p[3] = {{w->ifd, POLLIN, 0}, {w->pidfd, POLLIN, 0}, {w->client_fd, POLLRDHUP, 0}};
        nfds_t np = w->client_fd >= 0 ? 3 : 2;
        int64_t quiet = sb_now_ms() - w->last_out_ms;
        int timeout = w->mv.set ? MOVE_WAIT_MS
                      : quiet >= sb_sse_keepalive_ms() ? 0 : sb_sse_keepalive_ms() - (int)quiet;
        int rc = poll(p, np, timeout);
        if (rc < 0 && errno == EINTR)
            continue;
        if (np == 3 && (p[2].revents & (POLLRDHUP | POLLHUP | POLLERR)))
            return -1;  /* the client left: MHD frees the stream (watch_free) */
        int got = GO_ON;
        if (rc > 0 && (p[0].revents & POLLIN)) {
            got = read_events(w, out);
        } else if (rc == 0 && w->mv.set) {
            flush_move(w, out);
        } else if (rc == 0) {
            /* quiet: every IN_CREATE a scan could have beaten is read by now */
            set_clear(&w->seen);
            sb_sse_comment(out, "keepalive");
        }
        if (got == END)
            return 1;
        if (out->len) {
            w->last_out_ms = sb_now_ms();
            return 0;
        }
    }
}

/* ---- the request ------------------------------------------------------------------------- */

static int glob_list(const cJSON *body, const char *key, char ***out, size_t *n, sb_error *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(body, key);
    if (!a || cJSON_IsNull(a))
        return 0;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) > GLOB_MAX)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "%s must be a list of at most %d glob strings",
                       key, GLOB_MAX), -1;
    *out = cb_calloc((size_t)cJSON_GetArraySize(a) + 1, sizeof **out);
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsString(it) || !it->valuestring[0] || strlen(it->valuestring) > 255 ||
            strchr(it->valuestring, '/'))
            return sb_fail(err, SB_E_VALIDATION_FAILED, "%s: every entry must be a glob on a name "
                           "(a non-empty string without '/', like \"*.py\")", key), -1;
        (*out)[(*n)++] = cb_strdup(it->valuestring);
    }
    return 0;
}

int sb_watch_files(sb_req *r, sb_box *b, sb_error *err)
{
    const cJSON *body = r->json;
    const cJSON *jr = body ? cJSON_GetObjectItemCaseSensitive(body, "recursive") : NULL;
    cb_autofree char *given = NULL;
    if (sb_json_path_arg(body, "path", &given, err) < 0)
        return -1;
    if (jr && !cJSON_IsBool(jr))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "recursive must be true or false"), -1;
    watch *w = cb_calloc(1, sizeof *w);
    w->pidfd = w->ifd = w->root = -1;
    w->recursive = !jr || cJSON_IsTrue(jr);
    w->client_fd = sb_req_client_fd(r);
    bool acquired = false;
    if (body && (glob_list(body, "include", &w->include, &w->ninclude, err) < 0 ||
                 glob_list(body, "exclude", &w->exclude, &w->nexclude, err) < 0))
        goto fail;
    if (given && !given[0]) {
        sb_fail(err, SB_E_VALIDATION_FAILED, "path must not be empty");
        goto fail;
    }
    w->path = sb_files_norm_path(given ? given : "/workspace", err);
    if (!w->path)
        goto fail;
    /* wake it as the files API does; the watch itself keeps nobody awake */
    if (sb_box_acquire_files(b, err) < 0)
        goto fail;
    acquired = true;
    w->b = sb_box_ref(b);
    w->root = sb_box_root(b, err);
    if (w->root < 0)
        goto fail;
    pthread_mutex_lock(&b->mu);
    w->generation = b->generation;
    w->pidfd = b->pidfd >= 0 ? fcntl(b->pidfd, F_DUPFD_CLOEXEC, 3) : -1;
    pthread_mutex_unlock(&b->mu);
    sb_files_as_user(b);
    int base = sb_open_in_root(w->root, w->path, O_PATH | O_DIRECTORY, 0);
    int e = errno;
    sb_files_as_server();
    if (base < 0) {
        sb_fail(err, sb_err_from_errno(e), "watch %s: %s", w->path,
                e == ENOTDIR ? "not a directory" : strerror(e));
        goto fail;
    }
    struct stat st;
    bool kernel = sb_files_check_fs(base, w->path, NULL) < 0 || fstat(base, &st) < 0;
    close(base);
    if (kernel) {
        sb_fail(err, SB_E_PERMISSION_DENIED, "%s: kernel file systems cannot be watched", w->path);
        goto fail;
    }
    w->dev = st.st_dev;
    w->ino = st.st_ino;
    w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->ifd < 0) {
        if (errno == EMFILE)
            sb_fail(err, SB_E_WATCH_LIMIT, "too many watch streams (fs.inotify.max_user_instances)");
        else
            sb_fail(err, SB_E_INTERNAL_ERROR, "inotify: %s", strerror(errno));
        goto fail;
    }
    if (add_tree(w, "", NULL, err) < 0)
        goto fail;
    sb_box_release(b);
    cb_debug("watch", "sandbox=%s path=%s folders=%zu", b->id, w->path, w->ndirs);
    return sb_reply_stream(r, 200, "text/event-stream", watch_produce, w, watch_free);
fail:
    if (acquired)
        sb_box_release(b);
    watch_free(w);
    return -1;
}
