/* kernel/history.c: see history.h.
 *
 * The file holds one JSON object per line:
 *   {"s":3,"l":5,"i":"x = 1","o":"1"}      an entry
 *   {"s":3,"l":6,"i":"%pwd","p":"get_ipython().run_line_magic('pwd', '')"}
 *                                          one whose parsed source differs
 *   {"session":3,"start":"...date..."}     a session start marker
 * Old entries from earlier sessions are read lazily, only when a request
 * asks for them; this session's entries are also kept in memory. When the
 * file grows past MAX_FILE_BYTES it is compacted at open to the newest
 * KEEP_ENTRIES entries. */
#include "config.h"
#include "kernel/history.h"

#include <errno.h>
#include <fcntl.h>
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
    char *input, *parsed, *output;  /* parsed: NULL when it is the input */
    size_t seq;                     /* position in the file (a stable sort) */
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

static void entries_push(entries *e, int s, int l, const char *in, const char *parsed, const char *out)
{
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 64;
        e->v = cb_realloc(e->v, e->cap * sizeof *e->v);
    }
    e->v[e->n] = (entry){s, l, cb_strdup(in), cb_strdup(parsed), cb_strdup(out), e->n};
    e->n++;
}

static void entries_push_entry(entries *e, const entry *x)
{
    entries_push(e, x->session, x->line, x->input, x->parsed, x->output);
}

static void entries_clear(entries *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->v[i].input);
        free(e->v[i].parsed);
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
                entries_push(all, s, (int)cb_json_int(j, "l", 0), in, cb_json_str(j, "p", NULL),
                             cb_json_str(j, "o", NULL));
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

static char *entry_line(int s, int l, const char *in, const char *parsed, const char *out)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "s", s);
    cJSON_AddNumberToObject(j, "l", l);
    cJSON_AddStringToObject(j, "i", in);
    if (parsed)
        cJSON_AddStringToObject(j, "p", parsed);
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
        cb_autofree char *l = entry_line(all.v[i].session, all.v[i].line, all.v[i].input, all.v[i].parsed,
                                         all.v[i].output);
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

/* IPython stores a cell's source without its trailing newlines. Owned. */
static char *strip_newlines(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '\n')
        n--;
    return cb_strndup(s, n);
}

void kn_history_add(kn_history *h, int line, const char *input, const char *output)
{
    kn_history_add_parsed(h, line, input, NULL, output);
}

void kn_history_add_parsed(kn_history *h, int line, const char *input, const char *parsed, const char *output)
{
    cb_autofree char *in = strip_newlines(input);
    cb_autofree char *p = parsed ? strip_newlines(parsed) : NULL;
    if (p && strcmp(p, in) == 0) {
        free(p);
        p = NULL;
    }
    entries_push(&h->mine, h->session, line, in, p, output);
    if (h->fd >= 0) {
        cb_autofree char *l = entry_line(h->session, line, in, p, output);
        if (cb_write_all(h->fd, l, strlen(l)) < 0)
            cb_warn("history", "cannot append to %s: %s", h->path, strerror(errno));
    }
}

/* How an entry is answered: the session number it is given (IPython's range
 * in the current session says 0), the source (raw or parsed), and whether
 * its output is told, the output holding null otherwise. */
typedef struct shape {
    bool raw, output, with_output;
} shape;

static cJSON *entry_json(const entry *e, int session, shape sh)
{
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateNumber(session));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(e->line));
    cJSON *in = cJSON_CreateString(!sh.raw && e->parsed ? e->parsed : e->input);
    if (sh.output) {
        cJSON *io = cJSON_CreateArray();
        cJSON_AddItemToArray(io, in);
        cJSON_AddItemToArray(io, sh.with_output && e->output ? cJSON_CreateString(e->output) : cJSON_CreateNull());
        cJSON_AddItemToArray(a, io);
    } else {
        cJSON_AddItemToArray(a, in);
    }
    return a;
}

static int by_session_line(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->session != y->session)
        return x->session < y->session ? -1 : 1;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* All entries: earlier sessions from the file, in (session, line) order
 * (kernels running at once interleave their lines in the file), then ours,
 * as IPython's tail puts the current session last. */
static void all_entries(kn_history *h, entries *out)
{
    entries file = {0};
    load_file(h->path, &file);
    for (size_t i = 0; i < file.n; i++)
        if (file.v[i].session != h->session)
            entries_push_entry(out, &file.v[i]);
    entries_clear(&file);
    qsort(out->v, out->n, sizeof *out->v, by_session_line);
    for (size_t i = 0; i < h->mine.n; i++)
        entries_push_entry(out, &h->mine.v[i]);
}

const char *kn_history_path(const kn_history *h)
{
    return h ? h->path : NULL;
}

/* One code point of UTF-8 text, advancing *p; an invalid byte is itself. */
static unsigned utf8_next(const char **p)
{
    const unsigned char *s = (const unsigned char *)*p;
    unsigned c = s[0];
    int n = c >= 0xf0 && c < 0xf8 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
    if (c >= 0xf8)
        n = 0;
    unsigned cp = n ? c & (0x3f >> n) : c;
    for (int i = 1; i <= n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *p += 1;
            return c;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    *p += n + 1;
    return cp;
}

/* Whether the character at *s (consumed) is in the set at *p, just after
 * its '[' (consumed up to the closing ']'): SQLite's rules, '^' first
 * negates, a ']' first is itself, a-z is a range. -1: no closing ']'. */
static int glob_set(const char **p, unsigned c)
{
    bool seen = false, invert = false;
    unsigned prior = 0;
    unsigned c2 = utf8_next(p);
    if (c2 == '^') {
        invert = true;
        c2 = utf8_next(p);
    }
    if (c2 == ']') {
        seen = c == ']';
        c2 = utf8_next(p);
    }
    while (c2 && c2 != ']') {
        if (c2 == '-' && **p != ']' && **p && prior > 0) {
            c2 = utf8_next(p);
            seen = seen || (c >= prior && c <= c2);
            prior = 0;
        } else {
            seen = seen || c == c2;
            prior = c2;
        }
        c2 = utf8_next(p);
    }
    if (!c2) {
        --*p;  /* stay on the NUL */
        return -1;
    }
    return seen != invert;
}

/* SQLite's GLOB, which IPython searches its history with: '*' any run, '?'
 * one character, [...] a set; case-sensitive, no escape character. */
static bool glob_match(const char *pat, const char *s)
{
    const char *star_p = NULL, *star_s = NULL;
    for (;;) {
        if (*pat == '*') {
            star_p = ++pat;
            star_s = s;
            continue;
        }
        if (!*s)
            break;
        const char *p = pat, *t = s;
        unsigned pc = utf8_next(&p), c = utf8_next(&t);
        int ok = pc == '?' ? 1 : pc == '[' ? glob_set(&p, c) : pc == c;
        if (ok < 0)
            return false;  /* an unclosed set matches nothing */
        if (ok) {
            pat = p;
            s = t;
            continue;
        }
        if (!star_p)
            return false;
        pat = star_p;
        utf8_next(&star_s);
        s = star_s;
    }
    while (*pat == '*')
        pat++;
    return !*pat;
}

/* The reply to a history_request, as IPython's history manager gives it;
 * stored_outputs: tell the outputs kept for tails, searches and earlier
 * sessions (see history.h). */
static cJSON *query(kn_history *h, const cJSON *req, bool stored_outputs)
{
    const char *type = cb_json_str(req, "hist_access_type", "tail");
    shape sh = {.raw = cb_json_bool(req, "raw", true), .output = cb_json_bool(req, "output", false),
                .with_output = stored_outputs};
    const cJSON *nj = cJSON_GetObjectItemCaseSensitive(req, "n");
    bool has_n = cJSON_IsNumber(nj);
    long long n = has_n ? (long long)nj->valuedouble : -1;
    cJSON *reply = cJSON_CreateObject(), *hist = cJSON_CreateArray();
    entries all = {0};
    bool *take = NULL;

    if (strcmp(type, "tail") == 0) {
        /* IPython: the last n (10 when none is given: ipykernel's query with
         * LIMIT NULL fails, and moves its database aside as corrupt); a
         * negative n leaves out the |n| oldest of all */
        all_entries(h, &all);
        if (!has_n)
            n = 10;
        size_t from = n >= 0 ? (all.n > (size_t)n ? all.n - (size_t)n : 0)
                             : ((size_t)-n < all.n ? (size_t)-n : all.n);
        for (size_t i = from; i < all.n; i++)
            cJSON_AddItemToArray(hist, entry_json(&all.v[i], all.v[i].session, sh));
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
        long long asked = session;
        if (session <= 0)
            session += h->session;  /* 0 = this one, -1 = the previous... */
        if (session == h->session) {
            /* IPython's in-memory history of this session: line 0 is an
             * empty input, outputs are known, and its entries say session
             * 0. Asked by its number, they say it (IPython still says 0,
             * but jupyter_kernel_test wants the number asked for back, and
             * ipykernel fails its test_history there) */
            entry none = {.session = h->session, .line = 0, .input = ""};
            entries_push_entry(&all, &none);
            long long lines = 1;  /* IPython's len(In): the last line + 1 */
            for (size_t i = 0; i < h->mine.n; i++) {
                entries_push_entry(&all, &h->mine.v[i]);
                if (h->mine.v[i].line + 1 > lines)
                    lines = h->mine.v[i].line + 1;
            }
            if (start < 0)
                start += lines;
            if (!to_end && stop < 0)
                stop += lines;
            sh.with_output = true;
        } else {
            all_entries(h, &all);
        }
        for (size_t i = 0; i < all.n; i++) {
            const entry *e = &all.v[i];
            if (e->session == session && e->line >= start && (to_end || e->line < stop))
                cJSON_AddItemToArray(hist, entry_json(e, session == h->session ? (int)asked : e->session, sh));
        }
    } else if (strcmp(type, "search") == 0) {
        /* IPython: the raw inputs that match, in (session, line) order; the
         * last n when n >= 0; unique: the latest of equal inputs */
        const char *pattern = cb_json_str(req, "pattern", "*");
        bool unique = cb_json_bool(req, "unique", false);
        all_entries(h, &all);
        qsort(all.v, all.n, sizeof *all.v, by_session_line);
        take = cb_calloc(all.n + 1, sizeof *take);
        size_t matched = 0;
        /* newest first, so "unique" keeps the latest and "n" the last n */
        for (size_t k = all.n; k-- > 0;) {
            if (n >= 0 && matched >= (size_t)n)
                break;
            if (!glob_match(pattern, all.v[k].input))
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
                cJSON_AddItemToArray(hist, entry_json(&all.v[i], all.v[i].session, sh));
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

cJSON *kn_history_query(kn_history *h, const cJSON *req)
{
    return query(h, req, true);
}

cJSON *kn_history_reply(kn_history *h, const cJSON *req)
{
    return query(h, req, false);
}
