/* notebooks/nb_json.c: a JSON reader/writer that agrees with CPython's json
 * module byte for byte (see nb_json.h). The parser is a plain recursive
 * descent over the buffer; it never trusts lengths or nesting from the
 * input (depth is bounded, every read is bounds-checked). */
#include "config.h"
#include "notebooks/nb_json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define MAX_DEPTH 1000  /* CPython's json gives up around here too (recursion) */

/* ------------------------------------------------------------------ numbers */

void nb_json_float_repr(double v, char *out)
{
    if (isnan(v)) {
        strcpy(out, "nan");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v < 0 ? "-inf" : "inf");
        return;
    }
    /* Shortest precision that round-trips, like Python's repr (dtoa mode 0). */
    char buf[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    /* buf = [-]d[.ddd]e[+-]XX */
    const char *p = buf;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    int decpt = exp10 + 1;  /* position of the decimal point after digit decpt */
    char *o = out;
    if (neg)
        *o++ = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -decpt; i++)
                *o++ = '0';
            memcpy(o, digits, nd);
            o += nd;
        } else if ((size_t)decpt >= nd) {
            memcpy(o, digits, nd);
            o += nd;
            for (size_t i = nd; i < (size_t)decpt; i++)
                *o++ = '0';
            *o++ = '.';
            *o++ = '0';
        } else {
            memcpy(o, digits, (size_t)decpt);
            o += decpt;
            *o++ = '.';
            memcpy(o, digits + decpt, nd - (size_t)decpt);
            o += nd - (size_t)decpt;
        }
        *o = '\0';
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, nd - 1);
            o += nd - 1;
        }
        sprintf(o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
}

cJSON *nb_json_float(double v)
{
    cJSON *n = cJSON_CreateNumber(v);
    char buf[40];
    if (isnan(v))
        strcpy(buf, "NaN");
    else if (isinf(v))
        strcpy(buf, v < 0 ? "-Infinity" : "Infinity");
    else
        nb_json_float_repr(v, buf);
    n->valuestring = cb_strdup(buf);
    return n;
}

static bool text_is_int(const char *s)
{
    if (*s == '-')
        s++;
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

bool nb_json_is_int(const cJSON *n)
{
    if (!cJSON_IsNumber(n))
        return false;
    if (n->valuestring)
        return text_is_int(n->valuestring);
    double v = n->valuedouble;
    return isfinite(v) && v == floor(v) && fabs(v) < 1e17;
}

char *nb_json_number_text(const cJSON *n)
{
    if (n->valuestring)
        return cb_strdup(n->valuestring);
    double v = n->valuedouble;
    if (nb_json_is_int(n))
        return cb_printf_new("%.0f", v);
    char buf[40];
    if (isnan(v))
        return cb_strdup("NaN");
    if (isinf(v))
        return cb_strdup(v < 0 ? "-Infinity" : "Infinity");
    nb_json_float_repr(v, buf);
    return cb_strdup(buf);
}

/* ------------------------------------------------------------------- parser */

typedef struct parser {
    const unsigned char *s;
    size_t len, pos;
    int flags;
    char *err;
} parser;

static void pos_line_col(const parser *p, size_t pos, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < pos && i < p->len; i++) {
        if (p->s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if ((p->s[i] & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

static void fail(parser *p, const char *what)
{
    if (p->err)
        return;
    size_t line, col;
    pos_line_col(p, p->pos, &line, &col);
    if (p->pos >= p->len)
        p->err = cb_printf_new("truncated JSON: unexpected end of input at line %zu column %zu (%s)", line,
                               col, what);
    else
        p->err = cb_printf_new("invalid JSON at line %zu column %zu: %s", line, col, what);
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static bool match(parser *p, const char *lit)
{
    size_t n = strlen(lit);
    if (p->len - p->pos >= n && memcmp(p->s + p->pos, lit, n) == 0) {
        p->pos += n;
        return true;
    }
    return false;
}

static void put_utf8(cb_buf *b, unsigned cp)
{
    char o[4];
    if (cp < 0x80) {
        cb_buf_putc(b, (char)cp);
        return;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        cb_buf_append(b, o, 2);
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        cb_buf_append(b, o, 3);
    } else {
        o[0] = (char)(0xF0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (char)(0x80 | (cp & 0x3F));
        cb_buf_append(b, o, 4);
    }
}

/* Length of a valid UTF-8 sequence at s (max n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t need;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return need;
}

static int hex4(parser *p, unsigned *out)
{
    if (p->len - p->pos < 4) {
        p->pos = p->len;
        fail(p, "incomplete \\u escape");
        return -1;
    }
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p->s[p->pos + i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else {
            p->pos += i;
            fail(p, "invalid \\u escape");
            return -1;
        }
    }
    p->pos += 4;
    *out = v;
    return 0;
}

/* Parses a string at p->pos (the opening quote) into b. */
static int parse_string(parser *p, cb_buf *b)
{
    p->pos++;  /* opening quote */
    for (;;) {
        size_t start = p->pos;
        while (p->pos < p->len) {
            unsigned char c = p->s[p->pos];
            if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
                break;
            p->pos++;
        }
        cb_buf_append(b, p->s + start, p->pos - start);
        if (p->pos >= p->len) {
            fail(p, "unterminated string");
            return -1;
        }
        unsigned char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            return 0;
        }
        if (c < 0x20) {
            fail(p, "control character in string (must be escaped)");
            return -1;
        }
        if (c >= 0x80) {
            size_t n = utf8_len(p->s + p->pos, p->len - p->pos);
            if (n == 0) {
                if (p->flags & NB_JSON_STRICT_UTF8) {
                    fail(p, "invalid UTF-8 byte in string");
                    return -1;
                }
                cb_buf_puts(b, "\xEF\xBF\xBD");
                p->pos++;
            } else {
                cb_buf_append(b, p->s + p->pos, n);
                p->pos += n;
            }
            continue;
        }
        /* backslash */
        p->pos++;
        if (p->pos >= p->len) {
            fail(p, "unterminated escape");
            return -1;
        }
        c = p->s[p->pos++];
        switch (c) {
        case '"': cb_buf_putc(b, '"'); break;
        case '\\': cb_buf_putc(b, '\\'); break;
        case '/': cb_buf_putc(b, '/'); break;
        case 'b': cb_buf_putc(b, '\b'); break;
        case 'f': cb_buf_putc(b, '\f'); break;
        case 'n': cb_buf_putc(b, '\n'); break;
        case 'r': cb_buf_putc(b, '\r'); break;
        case 't': cb_buf_putc(b, '\t'); break;
        case 'u': {
            unsigned cp;
            if (hex4(p, &cp) < 0)
                return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF && p->len - p->pos >= 6 && p->s[p->pos] == '\\' &&
                p->s[p->pos + 1] == 'u') {
                size_t save = p->pos;
                p->pos += 2;
                unsigned lo;
                if (hex4(p, &lo) < 0)
                    return -1;
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else {
                    p->pos = save;  /* lone high surrogate; the next escape stands alone */
                    cp = 0xFFFD;
                }
            } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                cp = 0xFFFD;  /* lone surrogate: not representable in UTF-8 */
            }
            if (cp == 0)
                cb_buf_append(b, NB_JSON_NUL, 2);  /* a C string cannot hold it (see nb_json.h) */
            else
                put_utf8(b, cp);
            break;
        }
        default:
            p->pos--;
            fail(p, "invalid escape in string");
            return -1;
        }
    }
}

static cJSON *make_number(const char *text, bool is_float)
{
    double d = strtod(text, NULL);
    cJSON *n = cJSON_CreateNumber(d);
    if (is_float) {
        char buf[40];
        if (isinf(d))
            strcpy(buf, d < 0 ? "-Infinity" : "Infinity");
        else
            nb_json_float_repr(d, buf);
        n->valuestring = cb_strdup(buf);
    } else {
        /* Python int: exact digits; "-0" is 0 */
        const char *digits = text[0] == '-' ? text + 1 : text;
        bool zero = strspn(digits, "0") == strlen(digits);
        n->valuestring = cb_strdup(zero ? "0" : text);
    }
    return n;
}

static cJSON *parse_value(parser *p, int depth);

static cJSON *parse_number(parser *p)
{
    size_t start = p->pos;
    bool is_float = false;
    if (p->pos < p->len && p->s[p->pos] == '-')
        p->pos++;
    if (p->pos < p->len && p->s[p->pos] == 'I' && match(p, "Infinity"))
        return nb_json_float(p->s[start] == '-' ? -INFINITY : INFINITY);
    if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') {
        fail(p, "expected a value");
        return NULL;
    }
    if (p->s[p->pos] == '0')
        p->pos++;
    else
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '.') {
        size_t dot = ++p->pos;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
        if (p->pos == dot) {
            fail(p, "expected digits after '.'");
            return NULL;
        }
        is_float = true;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        size_t d0 = p->pos;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
        if (p->pos == d0) {
            fail(p, "expected exponent digits");
            return NULL;
        }
        is_float = true;
    }
    char stackbuf[64];
    size_t n = p->pos - start;
    char *text = n < sizeof stackbuf ? stackbuf : cb_malloc(n + 1);
    memcpy(text, p->s + start, n);
    text[n] = '\0';
    cJSON *num = make_number(text, is_float);
    if (text != stackbuf)
        free(text);
    return num;
}

static cJSON *parse_array(parser *p, int depth)
{
    cJSON *arr = cJSON_CreateArray();
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
        return arr;
    }
    for (;;) {
        cJSON *v = parse_value(p, depth + 1);
        if (!v) {
            cJSON_Delete(arr);
            return NULL;
        }
        cJSON_AddItemToArray(arr, v);
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == ']') {
            p->pos++;
            return arr;
        }
        fail(p, "expected ',' or ']' in array");
        cJSON_Delete(arr);
        return NULL;
    }
}

typedef struct key_ref {
    cJSON *item;
    size_t index;
} key_ref;

static int cmp_key_ref(const void *a, const void *b)
{
    const key_ref *x = a, *y = b;
    int c = strcmp(x->item->string, y->item->string);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* Duplicate keys of a big object, found by sorting: the last value wins,
 * at the first position (a Python dict). */
static void dedupe_keys(cJSON *obj, size_t n)
{
    key_ref *refs = cb_malloc(n * sizeof *refs);
    size_t i = 0;
    for (cJSON *c = obj->child; c && i < n; c = c->next, i++)
        refs[i] = (key_ref){c, i};
    n = i;
    qsort(refs, n, sizeof *refs, cmp_key_ref);
    for (size_t a = 0; a < n;) {
        size_t b = a;
        while (b + 1 < n && strcmp(refs[b + 1].item->string, refs[a].item->string) == 0)
            b++;
        if (b > a) {
            for (size_t k = a + 1; k < b; k++)
                cJSON_Delete(cJSON_DetachItemViaPointer(obj, refs[k].item));
            cJSON_ReplaceItemViaPointer(obj, refs[a].item, cJSON_DetachItemViaPointer(obj, refs[b].item));
        }
        a = b + 1;
    }
    free(refs);
}

static cJSON *parse_object(parser *p, int depth)
{
    cJSON *obj = cJSON_CreateObject();
    cb_buf key = CB_BUF_INIT;
    size_t count = 0;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
        return obj;
    }
    for (;;) {
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != '"') {
            fail(p, "expected a property name in double quotes");
            goto bad;
        }
        cb_buf_reset(&key);
        if (parse_string(p, &key) < 0)
            goto bad;
        const char *k = key.len ? key.data : "";  /* data may hold an older key when len is 0 */
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != ':') {
            fail(p, "expected ':' after property name");
            goto bad;
        }
        p->pos++;
        cJSON *v = parse_value(p, depth + 1);
        if (!v)
            goto bad;
        /* Duplicate keys: the last value wins, at the first position (a
         * Python dict). Checked for ordinary sizes; huge objects skip it. */
        if (count < 512 && cJSON_GetObjectItemCaseSensitive(obj, k)) {
            cJSON_ReplaceItemInObjectCaseSensitive(obj, k, v);
        } else {
            cJSON_AddItemToObject(obj, k, v);
            count++;
        }
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == '}') {
            p->pos++;
            cb_buf_clear(&key);
            if (count >= 512)
                dedupe_keys(obj, count);
            return obj;
        }
        fail(p, "expected ',' or '}' in object");
        goto bad;
    }
bad:
    cb_buf_clear(&key);
    cJSON_Delete(obj);
    return NULL;
}

static cJSON *parse_value(parser *p, int depth)
{
    if (depth > MAX_DEPTH) {
        fail(p, "nested too deeply");
        return NULL;
    }
    skip_ws(p);
    if (p->pos >= p->len) {
        fail(p, "expected a value");
        return NULL;
    }
    switch (p->s[p->pos]) {
    case '{': return parse_object(p, depth);
    case '[': return parse_array(p, depth);
    case '"': {
        cb_buf b = CB_BUF_INIT;
        if (parse_string(p, &b) < 0) {
            cb_buf_clear(&b);
            return NULL;
        }
        cJSON *s = cJSON_CreateString("");
        free(s->valuestring);
        s->valuestring = cb_buf_steal(&b);
        return s;
    }
    case 't':
        if (match(p, "true"))
            return cJSON_CreateTrue();
        break;
    case 'f':
        if (match(p, "false"))
            return cJSON_CreateFalse();
        break;
    case 'n':
        if (match(p, "null"))
            return cJSON_CreateNull();
        break;
    case 'N':
        if (match(p, "NaN"))
            return nb_json_float(NAN);
        break;
    default:
        return parse_number(p);
    }
    fail(p, "expected a value");
    return NULL;
}

cJSON *nb_json_parse(const char *data, size_t len, int flags, char **err)
{
    parser p = {.s = (const unsigned char *)data, .len = len, .flags = flags};
    if (err)
        *err = NULL;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        p.pos = 3;  /* a UTF-8 byte order mark */
    cJSON *j = parse_value(&p, 0);
    if (j) {
        skip_ws(&p);
        if (p.pos < p.len) {
            fail(&p, "extra data after the JSON value");
            cJSON_Delete(j);
            j = NULL;
        }
    }
    if (!j) {
        if (err)
            *err = p.err ? p.err : cb_strdup("invalid JSON");
        else
            free(p.err);
    }
    return j;
}

cJSON *nb_json_parse_msg(const char *data, size_t len)
{
    return nb_json_parse(data, len, 0, NULL);
}

/* ------------------------------------------------------------------- writer */

/* The writer appends to out and, with a file descriptor, hands out's
 * contents to it whenever they pass FLUSH_AT, so a notebook of any size is
 * written with a bounded buffer. */
#define FLUSH_AT (1 << 20)

typedef struct jw {
    cb_buf *out;
    int fd;      /* -1: keep everything in out */
    int err;     /* errno of the first failed write */
} jw;

static void jw_flush(jw *w, bool force)
{
    if (w->fd < 0 || w->err || (!force && w->out->len < FLUSH_AT))
        return;
    if (w->out->len && cb_write_all(w->fd, w->out->data, w->out->len) < 0)
        w->err = errno ? errno : EIO;
    cb_buf_reset(w->out);
}

static void write_string_n(cb_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    cb_buf_putc(out, '"');
    const char *run = s, *end = s + n;
    for (const unsigned char *p = (const unsigned char *)s; p < (const unsigned char *)end; p++) {
        unsigned char c = *p;
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0xC0)
            continue;
        if (c == 0xC0 && !(p + 1 < (const unsigned char *)end && p[1] == 0x80))
            continue;
        cb_buf_append(out, run, (size_t)((const char *)p - run));
        if (c == 0xC0) {  /* NB_JSON_NUL */
            cb_buf_puts(out, "\\u0000");
            run = (const char *)++p + 1;
            continue;
        }
        switch (c) {
        case '"': cb_buf_puts(out, "\\\""); break;
        case '\\': cb_buf_puts(out, "\\\\"); break;
        case '\n': cb_buf_puts(out, "\\n"); break;
        case '\r': cb_buf_puts(out, "\\r"); break;
        case '\t': cb_buf_puts(out, "\\t"); break;
        case '\b': cb_buf_puts(out, "\\b"); break;
        case '\f': cb_buf_puts(out, "\\f"); break;
        default: {
            char e[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
            cb_buf_append(out, e, 6);
        }
        }
        run = (const char *)p + 1;
    }
    cb_buf_append(out, run, (size_t)(end - run));
    cb_buf_putc(out, '"');
}

static void write_string(cb_buf *out, const char *s)
{
    write_string_n(out, s, strlen(s));
}

static void write_number(cb_buf *out, const cJSON *n)
{
    if (n->valuestring) {
        cb_buf_puts(out, n->valuestring);
        return;
    }
    char *t = nb_json_number_text(n);
    cb_buf_puts(out, t);
    free(t);
}

static int cmp_keys(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string ? x->string : "", y->string ? y->string : "");
}

static void newline_indent(cb_buf *out, int level)
{
    cb_buf_putc(out, '\n');
    for (int i = 0; i < level; i++)
        cb_buf_putc(out, ' ');
}

typedef struct lines_ctx {
    jw *w;
    int level;
    bool first;
} lines_ctx;

static void write_line(void *ctx, const char *line, size_t n)
{
    lines_ctx *lc = ctx;
    if (!lc->first)
        cb_buf_putc(lc->w->out, ',');
    lc->first = false;
    newline_indent(lc->w->out, lc->level + 1);
    write_string_n(lc->w->out, line, n);
    jw_flush(lc->w, false);
}

static void write_value(jw *w, const cJSON *j, int level)
{
    cb_buf *out = w->out;
    jw_flush(w, false);
    if (cJSON_IsString(j) && (j->type & NB_JSON_AS_LINES)) {
        /* nbformat's split_lines, written as the list it would make */
        const char *s = j->valuestring ? j->valuestring : "";
        if (!*s) {
            cb_buf_puts(out, "[]");
            return;
        }
        cb_buf_putc(out, '[');
        lines_ctx lc = {w, level, true};
        nb_json_splitlines(s, strlen(s), write_line, &lc);
        newline_indent(out, level);
        cb_buf_putc(out, ']');
    } else if (cJSON_IsObject(j)) {
        size_t n = 0;
        for (const cJSON *c = j->child; c; c = c->next)
            n++;
        if (!n) {
            cb_buf_puts(out, "{}");
            return;
        }
        const cJSON *stack_items[32];
        const cJSON **items = n <= 32 ? stack_items : cb_malloc(n * sizeof *items);
        size_t i = 0;
        for (const cJSON *c = j->child; c; c = c->next)
            items[i++] = c;
        qsort(items, n, sizeof *items, cmp_keys);
        cb_buf_putc(out, '{');
        for (i = 0; i < n; i++) {
            newline_indent(out, level + 1);
            write_string(out, items[i]->string ? items[i]->string : "");
            cb_buf_puts(out, ": ");
            write_value(w, items[i], level + 1);
            if (i + 1 < n)
                cb_buf_putc(out, ',');
        }
        newline_indent(out, level);
        cb_buf_putc(out, '}');
        if (items != stack_items)
            free(items);
    } else if (cJSON_IsArray(j)) {
        if (!j->child) {
            cb_buf_puts(out, "[]");
            return;
        }
        cb_buf_putc(out, '[');
        for (const cJSON *c = j->child; c; c = c->next) {
            newline_indent(out, level + 1);
            write_value(w, c, level + 1);
            if (c->next)
                cb_buf_putc(out, ',');
        }
        newline_indent(out, level);
        cb_buf_putc(out, ']');
    } else if (cJSON_IsString(j)) {
        write_string(out, j->valuestring ? j->valuestring : "");
    } else if (cJSON_IsNumber(j)) {
        write_number(out, j);
    } else if (cJSON_IsTrue(j)) {
        cb_buf_puts(out, "true");
    } else if (cJSON_IsFalse(j)) {
        cb_buf_puts(out, "false");
    } else if (cJSON_IsRaw(j)) {
        cb_buf_puts(out, j->valuestring ? j->valuestring : "null");
    } else {
        cb_buf_puts(out, "null");
    }
}

void nb_json_write(cb_buf *out, const cJSON *j)
{
    jw w = {out, -1, 0};
    write_value(&w, j, 0);
}

int nb_json_write_fd(cb_buf *out, const cJSON *j, int fd)
{
    jw w = {out, fd, 0};
    write_value(&w, j, 0);
    jw_flush(&w, false);
    if (w.err) {
        errno = w.err;
        return -1;
    }
    return 0;
}

void nb_json_clear_marks(cJSON *j)
{
    for (; j; j = j->next) {
        j->type &= ~NB_JSON_AS_LINES;
        if (j->child)
            nb_json_clear_marks(j->child);
    }
}

/* ---------------------------------------------------------------- splitting */

void nb_json_splitlines(const char *s, size_t len, void (*fn)(void *ctx, const char *line, size_t n),
                        void *ctx)
{
    size_t start = 0, i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t brk = 0;  /* length of the line break at i */
        if (c == '\n' || c == '\v' || c == '\f' || c == 0x1c || c == 0x1d || c == 0x1e)
            brk = 1;
        else if (c == '\r')
            brk = (i + 1 < len && s[i + 1] == '\n') ? 2 : 1;
        else if (c == 0xC2 && i + 1 < len && (unsigned char)s[i + 1] == 0x85)
            brk = 2;
        else if (c == 0xE2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80 &&
                 ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9))
            brk = 3;
        if (brk) {
            fn(ctx, s + start, i + brk - start);
            i += brk;
            start = i;
        } else {
            i++;
        }
    }
    if (start < len)
        fn(ctx, s + start, len - start);
}

void nb_json_insert(cJSON *arr, int index, cJSON *item)
{
    cJSON *at = arr->child;
    for (int i = 0; at && i < index; i++)
        at = at->next;
    if (!at) {
        cJSON_AddItemToArray(arr, item);
        return;
    }
    /* cJSON keeps the tail in child->prev and NULL in tail->next */
    item->next = at;
    item->prev = at->prev;
    if (at == arr->child)
        arr->child = item;
    else
        at->prev->next = item;
    at->prev = item;
}

cJSON *nb_json_dup(const cJSON *j)
{
    return cJSON_Duplicate(j, 1);
}
