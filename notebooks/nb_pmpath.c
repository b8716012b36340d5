/* notebooks/nb_pmpath.c: papermill's parameterized paths (see
 * nb_papermill.h): `cellbox run 'in_{region}.ipynb' -o 'out/{region}_{n:03d}.ipynb'
 * -p region eu -p n 7` names its files from the parameters, as
 * papermill's parameterize_path() does with Python's str.format(**params)
 * plus the built-in `pm` mapping (run_uuid, current_datetime_local,
 * current_datetime_utc).
 *
 * The subset of str.format implemented is the whole of what makes sense in
 * a path: {name}, {name[key]}, {name[0]}, {name.attr} on the built-in
 * datetimes, the conversions !s/!r/!a, and the format-spec mini-language
 * ([[fill]align][sign][z][#][0][width][.precision][type]); a datetime's
 * spec is an strftime pattern (%f included), as datetime.__format__ does.
 * What is left (nested {} in a spec, positional fields, ',' and '_'
 * grouping) is refused with a message rather than guessed. */
#include "config.h"
#include "notebooks/nb_papermill.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/util.h"
#include "notebooks/nb_json.h"

void nb_path_builtins_init(nb_path_builtins *b)
{
    cb_uuid4(b->run_uuid);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    b->now_s = (long long)ts.tv_sec;
    b->now_us = (int)(ts.tv_nsec / 1000);
}

/* A value a field resolves to: a JSON node, or one of the builtins. */
typedef enum { V_JSON, V_STR, V_DATETIME } vkind;
typedef struct value {
    vkind kind;
    const cJSON *json;
    const char *str;
    struct tm tm;
    int us;
    cJSON num;          /* a datetime's attribute, pointed to by json */
    char numtext[16];
} value;

typedef struct spec {
    char fill, align, sign;
    bool alt, zero, zflag;
    int width, prec;  /* -1 = none */
    char type;        /* 0 = none */
} spec;

/* Python's repr(str): single quotes unless the text holds ' and no ". */
static void py_repr_str(cb_buf *b, const char *s)
{
    char q = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
    cb_buf_putc(b, q);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\\' || *p == (unsigned char)q)
            cb_buf_printf(b, "\\%c", *p);
        else if (*p == '\n')
            cb_buf_puts(b, "\\n");
        else if (*p == '\t')
            cb_buf_puts(b, "\\t");
        else if (*p == '\r')
            cb_buf_puts(b, "\\r");
        else if (*p < 0x20 || *p == 0x7f)
            cb_buf_printf(b, "\\x%02x", *p);
        else
            cb_buf_putc(b, (char)*p);
    }
    cb_buf_putc(b, q);
}

static void py_str_json(cb_buf *b, const cJSON *v, bool repr);

static void py_str_json(cb_buf *b, const cJSON *v, bool repr)
{
    if (cJSON_IsNull(v)) {
        cb_buf_puts(b, "None");
    } else if (cJSON_IsBool(v)) {
        cb_buf_puts(b, cJSON_IsTrue(v) ? "True" : "False");
    } else if (cJSON_IsString(v)) {
        if (repr)
            py_repr_str(b, v->valuestring);
        else
            cb_buf_puts(b, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        if (nb_json_is_int(v)) {
            cb_autofree char *t = nb_json_number_text(v);
            cb_buf_puts(b, t);
        } else if (isnan(v->valuedouble)) {
            cb_buf_puts(b, "nan");
        } else if (isinf(v->valuedouble)) {
            cb_buf_puts(b, v->valuedouble < 0 ? "-inf" : "inf");
        } else {
            char buf[40];
            nb_json_float_repr(v->valuedouble, buf);
            cb_buf_puts(b, buf);
        }
    } else if (cJSON_IsArray(v)) {  /* str(list) is the repr of the items */
        cb_buf_putc(b, '[');
        for (const cJSON *c = v->child; c; c = c->next) {
            py_str_json(b, c, true);
            if (c->next)
                cb_buf_puts(b, ", ");
        }
        cb_buf_putc(b, ']');
    } else if (cJSON_IsObject(v)) {
        cb_buf_putc(b, '{');
        for (const cJSON *c = v->child; c; c = c->next) {
            py_repr_str(b, c->string);
            cb_buf_puts(b, ": ");
            py_str_json(b, c, true);
            if (c->next)
                cb_buf_puts(b, ", ");
        }
        cb_buf_putc(b, '}');
    }
}

static void datetime_str(cb_buf *b, const value *v)
{
    char t[64];
    strftime(t, sizeof t, "%Y-%m-%d %H:%M:%S", &v->tm);
    cb_buf_puts(b, t);
    if (v->us)
        cb_buf_printf(b, ".%06d", v->us);
}

/* datetime.__format__(spec) = strftime(spec), %f being the microseconds. */
static int datetime_format(cb_buf *b, const value *v, const char *fmt, char **err)
{
    cb_buf f = CB_BUF_INIT;
    for (const char *p = fmt; *p; p++) {
        if (p[0] == '%' && p[1] == 'f') {
            cb_buf_printf(&f, "%06d", v->us);
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            cb_buf_puts(&f, "%%");
            p++;
        } else {
            cb_buf_putc(&f, *p);
        }
    }
    char out[1024];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"  /* the user's pattern, as datetime.__format__ */
    size_t n = f.len ? strftime(out, sizeof out, f.data, &v->tm) : 0;
#pragma GCC diagnostic pop
    bool ok = n > 0 || !f.len;
    cb_buf_clear(&f);
    if (!ok) {
        *err = cb_printf_new("the datetime format '%s' gives nothing or too much", fmt);
        return -1;
    }
    cb_buf_append(b, out, n);
    return 0;
}

/* [[fill]align][sign][z][#][0][width][grouping][.precision][type] */
static int parse_spec(const char *s, spec *sp, char **err)
{
    *sp = (spec){.fill = ' ', .width = -1, .prec = -1};
    const char *p = s;
    if (p[0] && p[1] && strchr("<>=^", p[1])) {
        if ((unsigned char)p[0] >= 0x80)
            goto bad;
        sp->fill = p[0];
        sp->align = p[1];
        p += 2;
    } else if (*p && strchr("<>=^", *p)) {
        sp->align = *p++;
    }
    if (*p == '+' || *p == '-' || *p == ' ')
        sp->sign = *p++;
    if (*p == 'z') {
        sp->zflag = true;
        p++;
    }
    if (*p == '#') {
        sp->alt = true;
        p++;
    }
    if (*p == '0') {
        sp->zero = true;
        p++;
    }
    if (isdigit((unsigned char)*p)) {
        sp->width = 0;
        while (isdigit((unsigned char)*p) && sp->width < 10000)
            sp->width = sp->width * 10 + (*p++ - '0');
    }
    if (*p == ',' || *p == '_') {
        *err = cb_printf_new("the format '%s': digit grouping (',' or '_') is not supported in paths", s);
        return -1;
    }
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            goto bad;
        sp->prec = 0;
        while (isdigit((unsigned char)*p) && sp->prec < 1000)
            sp->prec = sp->prec * 10 + (*p++ - '0');
    }
    if (*p && strchr("bcdeEfFgGnosxX%", *p))
        sp->type = *p++;
    if (*p)
        goto bad;
    if (sp->zero && !sp->align) {
        sp->fill = '0';
        sp->align = '=';
    }
    return 0;
bad:
    *err = cb_printf_new("invalid format specifier '%s'", s);
    return -1;
}

/* Pads body (whose first sign_len bytes are a sign/prefix) to the width. */
static void pad(cb_buf *b, const char *body, size_t sign_len, const spec *sp, char dflt_align)
{
    size_t n = strlen(body);
    size_t w = sp->width > 0 ? (size_t)sp->width : 0;
    size_t fill = w > n ? w - n : 0;
    char align = sp->align ? sp->align : dflt_align;
    size_t left = align == '>' ? fill : align == '^' ? fill / 2 : 0;
    size_t right = fill - (align == '=' ? fill : left);
    if (align == '=') {
        cb_buf_append(b, body, sign_len);
        for (size_t i = 0; i < fill; i++)
            cb_buf_putc(b, sp->fill);
        cb_buf_puts(b, body + sign_len);
        return;
    }
    if (align == '^')
        right = fill - left;
    for (size_t i = 0; i < left; i++)
        cb_buf_putc(b, sp->fill);
    cb_buf_puts(b, body);
    for (size_t i = 0; i < right; i++)
        cb_buf_putc(b, sp->fill);
}

static const char *type_name(const value *v)
{
    if (v->kind == V_DATETIME)
        return "datetime";
    if (v->kind == V_STR || cJSON_IsString(v->json))
        return "str";
    if (cJSON_IsNull(v->json))
        return "NoneType";
    if (cJSON_IsBool(v->json))
        return "bool";
    if (cJSON_IsNumber(v->json))
        return nb_json_is_int(v->json) ? "int" : "float";
    return cJSON_IsArray(v->json) ? "list" : "dict";
}

static int format_number(cb_buf *b, const cJSON *n, bool is_int, const spec *sp, const char *spec_text, char **err)
{
    char type = sp->type;
    cb_buf body = CB_BUF_INIT;
    bool neg = false;
    if (is_int && (!type || type == 'd' || type == 'n' || strchr("bcoxX", type))) {
        if (sp->prec >= 0) {
            *err = cb_strdup("Precision not allowed in integer format specifier");
            return -1;
        }
        cb_autofree char *digits = cJSON_IsBool(n) ? cb_strdup(cJSON_IsTrue(n) ? "1" : "0") : nb_json_number_text(n);
        const char *d = digits;
        if (*d == '-') {
            neg = true;
            d++;
        }
        if (!type || type == 'd' || type == 'n') {
            cb_buf_puts(&body, d);
        } else {
            char *end;
            errno = 0;
            unsigned long long u = strtoull(d, &end, 10);
            if (errno || *end) {
                *err = cb_printf_new("the format '%s' of an integer this large is not supported in paths", spec_text);
                return -1;
            }
            if (type == 'c') {
                if (neg || u > 0x7f) {
                    *err = cb_printf_new("the format '%s': only ASCII characters are supported in paths", spec_text);
                    return -1;
                }
                cb_buf_putc(&body, (char)u);
            } else {
                if (sp->alt)
                    cb_buf_puts(&body, type == 'b' ? "0b" : type == 'o' ? "0o" : type == 'x' ? "0x" : "0X");
                if (type == 'b') {
                    char bits[65];
                    int k = 64;
                    bits[k] = '\0';
                    do {
                        bits[--k] = (char)('0' + (u & 1));
                        u >>= 1;
                    } while (u);
                    cb_buf_puts(&body, bits + k);
                } else {
                    cb_buf_printf(&body, type == 'o' ? "%llo" : type == 'x' ? "%llx" : "%llX", u);
                }
            }
        }
    } else if (type && !strchr("eEfFgG%n", type)) {
        *err = cb_printf_new("Unknown format code '%c' for object of type '%s'", type,
                             cJSON_IsBool(n) ? "bool" : is_int ? "int" : "float");
        return -1;
    } else {
        double d = cJSON_IsBool(n) ? (cJSON_IsTrue(n) ? 1.0 : 0.0) : n->valuedouble;
        neg = signbit(d) && !(sp->zflag && d == 0);
        double a = fabs(d);
        int prec = sp->prec >= 0 ? sp->prec : 6;
        if (isnan(a) || isinf(a)) {
            bool upper = type && isupper((unsigned char)type);
            cb_buf_puts(&body, isnan(a) ? (upper ? "NAN" : "nan") : (upper ? "INF" : "inf"));
            if (type == '%')
                cb_buf_putc(&body, '%');
        } else if (!type && sp->prec < 0) {
            char buf[40];
            nb_json_float_repr(a, buf);  /* str(float) */
            cb_buf_puts(&body, buf);
        } else if (type == '%') {
            cb_buf_printf(&body, sp->alt ? "%#.*f%%" : "%.*f%%", prec, a * 100);
        } else if (!type || type == 'n') {
            /* like 'g', with at least one digit after the point */
            cb_buf_printf(&body, sp->alt ? "%#.*g" : "%.*g", prec ? prec : 1, a);
            if (!strpbrk(body.data, ".e"))
                cb_buf_puts(&body, ".0");
        } else if (type == 'e' || type == 'E') {
            cb_buf_printf(&body, sp->alt ? "%#.*e" : "%.*e", prec, a);
        } else if (type == 'f' || type == 'F') {
            cb_buf_printf(&body, sp->alt ? "%#.*f" : "%.*f", prec, a);
        } else {
            cb_buf_printf(&body, sp->alt ? "%#.*g" : "%.*g", prec ? prec : 1, a);
        }
        if (type && isupper((unsigned char)type))
            for (size_t i = 0; i < body.len; i++)
                body.data[i] = (char)toupper((unsigned char)body.data[i]);
    }
    cb_buf full = CB_BUF_INIT;
    if (neg)
        cb_buf_putc(&full, '-');
    else if (sp->sign == '+' || sp->sign == ' ')
        cb_buf_putc(&full, sp->sign);
    size_t sign_len = full.len;
    if (sp->alt && is_int && type && strchr("bxXo", type))
        sign_len += 2;  /* '=' pads after the 0x prefix */
    cb_buf_puts(&full, body.data ? body.data : "");
    pad(b, full.data, sign_len, sp, '>');
    cb_buf_clear(&full);
    cb_buf_clear(&body);
    return 0;
}

static int format_value(cb_buf *b, const value *v, char conv, const char *spec_text, char **err)
{
    if (v->kind == V_DATETIME && !conv) {
        if (*spec_text)
            return datetime_format(b, v, spec_text, err);
        datetime_str(b, v);
        return 0;
    }
    /* the text of a conversion, or of a value formatted as a string */
    cb_buf text = CB_BUF_INIT;
    if (v->kind == V_DATETIME) {
        if (conv == 'r' || conv == 'a') {
            cb_buf_printf(&text, "datetime.datetime(%d, %d, %d, %d, %d", v->tm.tm_year + 1900, v->tm.tm_mon + 1,
                          v->tm.tm_mday, v->tm.tm_hour, v->tm.tm_min);
            if (v->tm.tm_sec || v->us)
                cb_buf_printf(&text, ", %d", v->tm.tm_sec);
            if (v->us)
                cb_buf_printf(&text, ", %d", v->us);
            cb_buf_putc(&text, ')');
        } else {
            datetime_str(&text, v);
        }
    } else if (v->kind == V_STR) {
        if (conv == 'r' || conv == 'a')
            py_repr_str(&text, v->str);
        else
            cb_buf_puts(&text, v->str);
    } else if (conv || cJSON_IsString(v->json) || cJSON_IsArray(v->json) || cJSON_IsObject(v->json) ||
               cJSON_IsNull(v->json)) {
        py_str_json(&text, v->json, conv == 'r' || conv == 'a');
    }
    bool as_text = conv || v->kind != V_JSON || !(cJSON_IsNumber(v->json) || cJSON_IsBool(v->json));
    spec sp;
    int rc = 0;
    if (*spec_text && parse_spec(spec_text, &sp, err) < 0) {
        rc = -1;
    } else if (!as_text) {
        const cJSON *n = v->json;
        if (!*spec_text) {
            py_str_json(b, n, false);
        } else {  /* a bool with a spec is the int 1 or 0, as in Python */
            rc = format_number(b, n, cJSON_IsBool(n) || nb_json_is_int(n), &sp, spec_text, err);
        }
    } else if (!*spec_text) {
        cb_buf_puts(b, text.data ? text.data : "");
    } else if (!conv && v->kind == V_JSON && !cJSON_IsString(v->json)) {
        *err = cb_printf_new("unsupported format string '%s' passed to %s.__format__", spec_text, type_name(v));
        rc = -1;
    } else if (sp.type && sp.type != 's') {
        *err = cb_printf_new("Unknown format code '%c' for object of type 'str'", sp.type);
        rc = -1;
    } else if (sp.sign || sp.align == '=' || sp.alt) {
        *err = cb_printf_new("the format '%s' does not apply to a string", spec_text);
        rc = -1;
    } else {
        const char *s = text.data ? text.data : "";
        cb_autofree char *cut = NULL;
        if (sp.prec >= 0) {  /* precision counts characters, not bytes */
            const char *q = s;
            for (int k = 0; *q && k < sp.prec; k++)
                do
                    q++;
                while ((*q & 0xC0) == 0x80);
            cut = cb_strndup(s, (size_t)(q - s));
            s = cut;
        }
        pad(b, s, 0, &sp, '<');
    }
    cb_buf_clear(&text);
    return rc;
}

static bool localtime_of(long long s, bool utc, struct tm *tm)
{
    time_t t = (time_t)s;
    return utc ? gmtime_r(&t, tm) != NULL : localtime_r(&t, tm) != NULL;
}

/* Resolves "name[key].attr..." to a value. */
static int resolve(const char *field, const cJSON *params, const nb_path_builtins *bi, value *out, const char *path,
                   char **err)
{
    const char *p = field;
    size_t n = strcspn(p, ".[");
    if (n == 0) {
        *err = cb_printf_new("'{%s}' in %s: a field needs a parameter's name", field, path);
        return -1;
    }
    cb_autofree char *name = cb_strndup(p, n);
    p += n;
    bool digits = true;
    for (const char *q = name; *q; q++)
        digits = digits && isdigit((unsigned char)*q);
    if (digits) {
        *err = cb_printf_new("'{%s}' in %s: positional fields have no value here; name a parameter", field, path);
        return -1;
    }
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(params, name);
    bool pm = !j && strcmp(name, "pm") == 0 && bi;
    if (!j && !pm) {
        *err = cb_printf_new("Missing parameter '%s' (in the path %s)", name, path);
        return -1;
    }
    *out = (value){.kind = V_JSON, .json = j};
    int depth = pm ? 0 : -1;  /* 0: at pm; 1: at one of its members */
    while (*p) {
        cb_autofree char *key = NULL;
        bool index = *p == '[';
        if (index) {
            const char *close = strchr(p, ']');
            if (!close || close == p + 1) {
                *err = cb_printf_new("'{%s}' in %s: a '[' needs a key and a ']'", field, path);
                return -1;
            }
            key = cb_strndup(p + 1, (size_t)(close - p - 1));
            p = close + 1;
            if (*p && *p != '.' && *p != '[') {
                *err = cb_printf_new("'{%s}' in %s: only '.' or '[' may follow ']'", field, path);
                return -1;
            }
        } else {
            p++;
            size_t m = strcspn(p, ".[");
            if (m == 0) {
                *err = cb_printf_new("'{%s}' in %s: empty attribute", field, path);
                return -1;
            }
            key = cb_strndup(p, m);
            p += m;
        }
        if (depth == 0 && index) {
            if (strcmp(key, "run_uuid") == 0) {
                *out = (value){.kind = V_STR, .str = bi->run_uuid};
            } else if (strcmp(key, "current_datetime_local") == 0 || strcmp(key, "current_datetime_utc") == 0) {
                *out = (value){.kind = V_DATETIME, .us = bi->now_us};
                localtime_of(bi->now_s, key[17] == 'u', &out->tm);
            } else {
                *err = cb_printf_new("KeyError '%s' in {%s}: pm holds run_uuid, current_datetime_local and "
                                     "current_datetime_utc",
                                     key, field);
                return -1;
            }
            depth = 1;
            continue;
        }
        if (out->kind == V_DATETIME && !index) {
            static const char *const attrs[] = {"year", "month", "day", "hour", "minute", "second", "microsecond"};
            int vals[] = {out->tm.tm_year + 1900, out->tm.tm_mon + 1, out->tm.tm_mday, out->tm.tm_hour,
                          out->tm.tm_min, out->tm.tm_sec, out->us};
            size_t a = 0;
            while (a < CB_ARRAY_LEN(attrs) && strcmp(attrs[a], key) != 0)
                a++;
            if (a == CB_ARRAY_LEN(attrs)) {
                *err = cb_printf_new("'datetime' has no attribute '%s' (in {%s})", key, field);
                return -1;
            }
            *out = (value){.kind = V_JSON};
            snprintf(out->numtext, sizeof out->numtext, "%d", vals[a]);
            out->num = (cJSON){.type = cJSON_Number, .valuedouble = vals[a], .valueint = vals[a],
                               .valuestring = out->numtext};
            out->json = &out->num;
            continue;
        }
        if (out->kind != V_JSON || !index || depth == 0) {
            *err = cb_printf_new("'{%s}' in %s: '%s' has no attribute '%s'", field, path, type_name(out), key);
            return -1;
        }
        const cJSON *next = NULL;
        if (cJSON_IsObject(out->json)) {
            next = cJSON_GetObjectItemCaseSensitive(out->json, key);
        } else if (cJSON_IsArray(out->json)) {
            char *end;
            long k = strtol(key, &end, 10);
            if (*end || !isdigit((unsigned char)*key)) {
                *err = cb_printf_new("'{%s}' in %s: list indices must be integers", field, path);
                return -1;
            }
            next = cJSON_GetArrayItem(out->json, (int)k);
        } else {
            *err = cb_printf_new("'{%s}' in %s: '%s' object is not subscriptable", field, path, type_name(out));
            return -1;
        }
        if (!next) {
            *err = cb_printf_new("Missing parameter '%s' in {%s} (in the path %s)", key, field, path);
            return -1;
        }
        out->json = next;
    }
    if (pm && depth == 0) {
        *err = cb_printf_new("'{%s}' in %s: name one of pm's members, e.g. {pm[run_uuid]}", field, path);
        return -1;
    }
    return 0;
}

char *nb_params_path(const char *path, const cJSON *params, const nb_path_builtins *bi, char **err)
{
    cb_buf out = CB_BUF_INIT;
    const char *p = path;
    while (*p) {
        if (*p == '}') {
            if (p[1] != '}') {
                *err = cb_printf_new("Single '}' encountered in format string %s (write '}}' for a '}')", path);
                goto bad;
            }
            cb_buf_putc(&out, '}');
            p += 2;
            continue;
        }
        if (*p != '{') {
            cb_buf_putc(&out, *p++);
            continue;
        }
        if (p[1] == '{') {
            cb_buf_putc(&out, '{');
            p += 2;
            continue;
        }
        /* a replacement field: up to the matching '}' ('[...]' may hold
         * any character but ']') */
        const char *q = p + 1;
        while (*q && *q != '}' && *q != '!' && *q != ':') {
            if (*q == '[') {
                const char *close = strchr(q, ']');
                if (!close)
                    break;
                q = close;
            }
            if (*q == '{') {
                *err = cb_printf_new("unexpected '{' in field name (in %s)", path);
                goto bad;
            }
            q++;
        }
        cb_autofree char *field = cb_strndup(p + 1, (size_t)(q - p - 1));
        char conv = 0;
        if (*q == '!') {
            conv = q[1];
            if (!conv || !strchr("sra", conv)) {
                *err = cb_printf_new("Unknown conversion specifier %c in %s", conv ? conv : '?', path);
                goto bad;
            }
            q += 2;
            if (*q != ':' && *q != '}') {
                *err = cb_printf_new("expected ':' after conversion specifier in %s", path);
                goto bad;
            }
        }
        const char *spec_start = q, *spec_end = q;
        if (*q == ':') {
            spec_start = ++q;
            while (*q && *q != '}') {
                if (*q == '{') {
                    *err = cb_printf_new("nested fields in a format spec are not supported in paths (in %s)", path);
                    goto bad;
                }
                q++;
            }
            spec_end = q;
        }
        if (*q != '}') {
            *err = cb_printf_new("expected '}' before end of string in %s", path);
            goto bad;
        }
        value v;
        if (resolve(field, params, bi, &v, path, err) < 0)
            goto bad;
        cb_autofree char *spec_text = cb_strndup(spec_start, (size_t)(spec_end - spec_start));
        if (format_value(&out, &v, conv, spec_text, err) < 0) {
            char *why = *err;
            *err = cb_printf_new("{%s} in %s: %s", field, path, why);
            free(why);
            goto bad;
        }
        p = q + 1;
    }
    return cb_buf_steal(&out);
bad:
    cb_buf_clear(&out);
    return NULL;
}
