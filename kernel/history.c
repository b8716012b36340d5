/* kernel/history.c: see history.h.
 *
 * The file holds one JSON object per line:
 *   {"s":3,"l":5,"i":"x = 1","o":"1"}      an entry
 *   {"session":3,"start":"...date..."}     a session start marker
 * Old entries from earlier sessions are read lazily, only when a request
 * asks for them; this session's entries are also kept in memory. When the
 * file grows past MAX_FILE_BYTES it is compacted at open to the newest
 * KEEP_ENTRIES entries. */
#include "config.h"
#include "kernel/history.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"

#define MAX_FILE_BYTES (32 * 1024 * 1024)
#define KEEP_ENTRIES 20000

typedef struct entry {
    int session, line;
    char *input, *output;
} entry;

typedef struct entries {
    entry *v;
    size_t n, cap;
} entries;

struct kn_history {
    char *path;
    int fd;
    int session;
    entries mine;  /* this session's */
};

static void entries_push(entries *e, int s, int l, const char *in, const char *out)
{
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 64;
        e->v = cb_realloc(e->v, e->cap * sizeof *e->v);
    }
    e->v[e->n++] = (entry){s, l, cb_strdup(in), cb_strdup(out)};
}

static void entries_clear(entries *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->v[i].input);
        free(e->v[i].output);
    }
    free(e->v);
    memset(e, 0, sizeof *e);
}

/* Parses the file; fills all (may be NULL) and returns the max session seen. */
static int load_file(const char *path, entries *all)
{
    size_t len = 0;
    cb_autofree char *text = path ? cb_read_file(path, &len) : NULL;
    int max_session = 0;
    if (!text)
        return 0;
    char *line = text;
    while (line < text + len) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(text + len - line);
        cJSON *j = cb_json_parse(line, ll);
        if (cJSON_IsObject(j)) {
            int s = (int)cb_json_int(j, "s", cb_json_int(j, "session", 0));
            if (s > max_session)
                max_session = s;
            const char *in = cb_json_str(j, "i", NULL);
            if (all && in)
                entries_push(all, s, (int)cb_json_int(j, "l", 0), in, cb_json_str(j, "o", NULL));
        }
        cJSON_Delete(j);
        line += ll + 1;
    }
    return max_session;
}

/* The newest session number, from the last session marker: markers are
 * written under the file lock with increasing numbers, so the last one is
 * the largest. Reads the file backwards in chunks: a kernel start does not
 * read the whole history. 0 when there is none. */
static int last_session(int fd)
{
    enum { CHUNK = 65536 };
    static const char mark[] = "\n{\"session\":";
    struct stat st;
    if (fstat(fd, &st) < 0)
        return 0;
    off_t end = st.st_size;
    char *buf = cb_malloc(CHUNK + sizeof mark);
    size_t carry = 0;  /* bytes kept from the previous (later) chunk */
    int found = 0;
    while (end > 0 && !found) {
        size_t n = end > CHUNK ? CHUNK : (size_t)end;
        end -= (off_t)n;
        memmove(buf + n, buf, carry);  /* the later bytes follow this chunk */
        if (pread(fd, buf, n, end) != (ssize_t)n)
            break;
        size_t len = n + carry;
        for (size_t i = len; i-- > 0;) {
            /* a marker at the very start of the file has no newline before it */
            bool at_line = buf[i] == '\n' || (i == 0 && end == 0);
            const char *p = buf + i + (buf[i] == '\n');
            if (at_line && (size_t)(buf + len - p) >= sizeof mark - 2 &&
                memcmp(p, mark + 1, sizeof mark - 2) == 0) {
                found = atoi(p + sizeof mark - 2);
                break;
            }
        }
        carry = len < sizeof mark ? len : sizeof mark;  /* enough to see a marker split across chunks */
    }
    free(buf);
    return found;
}

static char *entry_line(int s, int l, const char *in, const char *out)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "s", s);
    cJSON_AddNumberToObject(j, "l", l);
    cJSON_AddStringToObject(j, "i", in);
    if (out)
        cJSON_AddStringToObject(j, "o", out);
    char *p = cb_json_print(j);
    cJSON_Delete(j);
    char *r = cb_printf_new("%s\n", p);
    free(p);
    return r;
}

static void compact(const char *path)
{
    entries all = {0};
    int max_session = load_file(path, &all);
    cb_buf b = CB_BUF_INIT;
    size_t from = all.n > KEEP_ENTRIES ? all.n - KEEP_ENTRIES : 0;
    for (size_t i = from; i < all.n; i++) {
        cb_autofree char *l = entry_line(all.v[i].session, all.v[i].line, all.v[i].input, all.v[i].output);
        cb_buf_puts(&b, l);
    }
    /* keep the newest session number: the next one is found from it */
    cb_buf_printf(&b, "{\"session\":%d}\n", max_session);
    if (cb_write_file_atomic(path, b.data ? b.data : "", b.len, 0600) < 0)
        cb_warn("history", "cannot compact %s: %s", path, strerror(errno));
    cb_buf_clear(&b);
    entries_clear(&all);
}

kn_history *kn_history_open(const char *path)
{
    kn_history *h = cb_calloc(1, sizeof *h);
    h->fd = -1;
    if (path) {
        cb_autofree char *dir = cb_strdup(path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = '\0';
            cb_mkdir_p(dir, 0700);
        }
        h->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (h->fd < 0)
            cb_warn("history", "history kept in memory only: cannot open %s: %s", path, strerror(errno));
    }
    if (h->fd >= 0) {
        h->path = cb_strdup(path);
        /* the lock makes "read max session, write marker" atomic between kernels */
        flock(h->fd, LOCK_EX);
        struct stat st;
        if (fstat(h->fd, &st) == 0 && st.st_size > MAX_FILE_BYTES) {
            compact(path);
            close(h->fd);
            h->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (h->fd >= 0)
                flock(h->fd, LOCK_EX);
        }
        h->session = (h->fd >= 0 ? last_session(h->fd) : 0) + 1;
        char date[CB_ISO_DATE_LEN];
        cb_iso_date(date, cb_real_us());
        cb_autofree char *marker = cb_printf_new("{\"session\":%d,\"start\":\"%s\"}\n", h->session, date);
        if (h->fd >= 0) {
            if (cb_write_all(h->fd, marker, strlen(marker)) < 0)
                cb_warn("history", "cannot write %s: %s", path, strerror(errno));
            flock(h->fd, LOCK_UN);
        }
    } else {
        h->session = 1;
    }
    return h;
}

void kn_history_free(kn_history *h)
{
    if (!h)
        return;
    if (h->fd >= 0)
        close(h->fd);
    free(h->path);
    entries_clear(&h->mine);
    free(h);
}

int kn_history_session(const kn_history *h)
{
    return h->session;
}

char *kn_history_default_path(void)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && *xdg)
        return cb_printf_new("%s/cellbox/history.jsonl", xdg);
    return cb_printf_new("%s/.local/share/cellbox/history.jsonl", cb_home_dir());
}

void kn_history_add(kn_history *h, int line, const char *input, const char *output)
{
    entries_push(&h->mine, h->session, line, input, output);
    if (h->fd >= 0) {
        cb_autofree char *l = entry_line(h->session, line, input, output);
        if (cb_write_all(h->fd, l, strlen(l)) < 0)
            cb_warn("history", "cannot append to %s: %s", h->path, strerror(errno));
    }
}

static cJSON *entry_json(const entry *e, bool output)
{
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateNumber(e->session));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(e->line));
    if (output) {
        cJSON *io = cJSON_CreateArray();
        cJSON_AddItemToArray(io, cJSON_CreateString(e->input));
        cJSON_AddItemToArray(io, e->output ? cJSON_CreateString(e->output) : cJSON_CreateNull());
        cJSON_AddItemToArray(a, io);
    } else {
        cJSON_AddItemToArray(a, cJSON_CreateString(e->input));
    }
    return a;
}

/* All entries, oldest first: earlier sessions from the file, then ours. */
static void all_entries(kn_history *h, entries *out)
{
    entries file = {0};
    load_file(h->path, &file);
    for (size_t i = 0; i < file.n; i++)
        if (file.v[i].session != h->session)
            entries_push(out, file.v[i].session, file.v[i].line, file.v[i].input, file.v[i].output);
    entries_clear(&file);
    for (size_t i = 0; i < h->mine.n; i++)
        entries_push(out, h->mine.v[i].session, h->mine.v[i].line, h->mine.v[i].input, h->mine.v[i].output);
}

const char *kn_history_path(const kn_history *h)
{
    return h ? h->path : NULL;
}

cJSON *kn_history_query(kn_history *h, const cJSON *req)
{
    const char *type = cb_json_str(req, "hist_access_type", "tail");
    bool output = cb_json_bool(req, "output", false);
    long long n = cb_json_int(req, "n", -1);
    cJSON *reply = cJSON_CreateObject(), *hist = cJSON_CreateArray();
    entries all = {0};
    bool *take = NULL;

    if (strcmp(type, "tail") == 0) {
        all_entries(h, &all);
        size_t count = n < 0 ? 10 : (size_t)n;  /* IPython's default is 10 */
        size_t from = all.n > count ? all.n - count : 0;
        for (size_t i = from; i < all.n; i++)
            cJSON_AddItemToArray(hist, entry_json(&all.v[i], output));
    } else if (strcmp(type, "range") == 0) {
        long long session = cb_json_int(req, "session", 0);
        long long start = cb_json_int(req, "start", 0);
        /* IPython's get_range: a stop of 0 or null is the end; in this
         * session, a negative start or stop counts from the end, as
         * Python's slices (start -2: the last two cells); in an earlier
         * one, both are line numbers as they are */
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(req, "stop");
        bool to_end = !cJSON_IsNumber(st) || (long long)st->valuedouble == 0;
        long long stop = to_end ? 0 : (long long)st->valuedouble;
        if (session <= 0)
            session += h->session;  /* 0 = this one, -1 = the previous... */
        if (session == h->session) {
            long long lines = 1;  /* IPython's len(In): the last line + 1 */
            for (size_t i = 0; i < h->mine.n; i++) {
                entries_push(&all, h->mine.v[i].session, h->mine.v[i].line, h->mine.v[i].input, h->mine.v[i].output);
                if (h->mine.v[i].line + 1 > lines)
                    lines = h->mine.v[i].line + 1;
            }
            if (start < 0)
                start += lines;
            if (!to_end && stop < 0)
                stop += lines;
        } else {
            all_entries(h, &all);
        }
        for (size_t i = 0; i < all.n; i++) {
            const entry *e = &all.v[i];
            if (e->session == session && e->line >= start && (to_end || e->line < stop))
                cJSON_AddItemToArray(hist, entry_json(e, output));
        }
    } else if (strcmp(type, "search") == 0) {
        const char *pattern = cb_json_str(req, "pattern", "*");
        bool unique = cb_json_bool(req, "unique", false);
        all_entries(h, &all);
        take = cb_calloc(all.n + 1, sizeof *take);
        size_t matched = 0;
        /* newest first, so "unique" keeps the latest and "n" the last n */
        for (size_t k = all.n; k-- > 0;) {
            if (n >= 0 && matched >= (size_t)n)
                break;
            if (fnmatch(pattern, all.v[k].input, 0) != 0)
                continue;
            bool dup = false;
            for (size_t j = k + 1; unique && !dup && j < all.n; j++)
                dup = take[j] && strcmp(all.v[j].input, all.v[k].input) == 0;
            if (dup)
                continue;
            take[k] = true;
            matched++;
        }
        for (size_t i = 0; i < all.n; i++)
            if (take[i])
                cJSON_AddItemToArray(hist, entry_json(&all.v[i], output));
    } else {
        cJSON_Delete(hist);
        cJSON_AddStringToObject(reply, "status", "error");
        cJSON_AddStringToObject(reply, "ename", "ValueError");
        cJSON_AddStringToObject(reply, "evalue", "hist_access_type must be tail, range or search");
        cJSON_AddItemToObject(reply, "traceback", cJSON_CreateArray());
        cJSON_AddItemToObject(reply, "history", cJSON_CreateArray());
        entries_clear(&all);
        return reply;
    }
    free(take);
    entries_clear(&all);
    cJSON_AddStringToObject(reply, "status", "ok");
    cJSON_AddItemToObject(reply, "history", hist);
    return reply;
}
