/* notebooks/nb_papermill.c: papermill-compatible parameters and metadata
 * (see nb_papermill.h). The translators, the injection rules and the
 * metadata fields follow papermill 2.x (translators.py, parameterize.py,
 * engines.py, execute.py), so notebooks written for papermill and the
 * tools that read its output work unchanged. papermill formats injected
 * Python with black when black is importable; cellbox never does. */
#include "config.h"
#include "notebooks/nb_papermill.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "notebooks/nb_json.h"

#define PM_ERROR_TAG "papermill-error-cell-tag"
#define PM_ERROR_STYLE "style=\"color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;\""

/* ============================================================ parameters */

static void params_set(cJSON *params, const char *name, cJSON *v)
{
    if (cJSON_GetObjectItemCaseSensitive(params, name))
        cJSON_ReplaceItemInObjectCaseSensitive(params, name, v);  /* dict update: keeps the position */
    else
        cJSON_AddItemToObject(params, name, v);
}

/* Python's int(s) for ASCII input: whitespace, sign, digits with single
 * underscores between them. Writes the canonical digits into out. */
static bool python_int(const char *s, cb_buf *out)
{
    while (isspace((unsigned char)*s))
        s++;
    const char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    bool neg = false;
    if (s < e && (*s == '+' || *s == '-'))
        neg = *s++ == '-';
    if (s >= e || !isdigit((unsigned char)*s) || !isdigit((unsigned char)e[-1]))
        return false;
    cb_buf_reset(out);
    for (const char *p = s; p < e; p++) {
        if (*p == '_') {
            if (!isdigit((unsigned char)p[1]))
                return false;
            continue;
        }
        if (!isdigit((unsigned char)*p))
            return false;
        if (out->len == 0 && *p == '0')
            continue;  /* leading zeros */
        cb_buf_putc(out, *p);
    }
    if (out->len == 0)
        cb_buf_putc(out, '0');
    else if (neg) {
        cb_buf b2 = CB_BUF_INIT;
        cb_buf_printf(&b2, "-%s", out->data);
        cb_buf_reset(out);
        cb_buf_puts(out, b2.data);
        cb_buf_clear(&b2);
    }
    return true;
}

/* Python's float(s) for ASCII input. */
static bool python_float(const char *s, double *v)
{
    while (isspace((unsigned char)*s))
        s++;
    cb_autofree char *t = cb_strdup(s);
    size_t n = strlen(t);
    while (n && isspace((unsigned char)t[n - 1]))
        t[--n] = '\0';
    const char *p = t;
    int sign = 1;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    if (strcasecmp(p, "inf") == 0 || strcasecmp(p, "infinity") == 0) {
        *v = sign * INFINITY;
        return true;
    }
    if (strcasecmp(p, "nan") == 0) {
        *v = NAN;
        return true;
    }
    /* digits[_digits]* [. digits...] [e[+-]digits]; an underscore only between digits */
    cb_buf clean = CB_BUF_INIT;
    cb_buf_puts(&clean, sign < 0 ? "-" : "");
    int mant_digits = 0;
    bool ok = true, dot = false, exp = false;
    for (const char *q = p; *q && ok; q++) {
        char c = *q;
        if (isdigit((unsigned char)c)) {
            if (!exp)
                mant_digits++;
            cb_buf_putc(&clean, c);
        } else if (c == '_') {
            ok = q > p && isdigit((unsigned char)q[-1]) && isdigit((unsigned char)q[1]);
        } else if (c == '.' && !dot && !exp) {
            dot = true;
            cb_buf_putc(&clean, c);
        } else if ((c == 'e' || c == 'E') && !exp && mant_digits) {
            exp = true;
            cb_buf_putc(&clean, 'e');
            if (q[1] == '+' || q[1] == '-')
                cb_buf_putc(&clean, *++q);
            ok = isdigit((unsigned char)q[1]);
        } else {
            ok = false;
        }
    }
    ok = ok && mant_digits > 0;
    if (ok)
        *v = strtod(clean.data, NULL);
    cb_buf_clear(&clean);
    return ok;
}

void nb_params_set_typed(cJSON *params, const char *name, const char *value)
{
    cJSON *v;
    cb_buf digits = CB_BUF_INIT;
    double d;
    if (strcmp(value, "True") == 0)
        v = cJSON_CreateTrue();
    else if (strcmp(value, "False") == 0)
        v = cJSON_CreateFalse();
    else if (strcmp(value, "None") == 0)
        v = cJSON_CreateNull();
    else if (python_int(value, &digits)) {
        v = cJSON_CreateNumber(strtod(digits.data, NULL));
        v->valuestring = cb_strdup(digits.data);
    } else if (python_float(value, &d))
        v = nb_json_float(d);
    else
        v = cJSON_CreateString(value);
    cb_buf_clear(&digits);
    params_set(params, name, v);
}

void nb_params_set_raw(cJSON *params, const char *name, const char *value)
{
    params_set(params, name, cJSON_CreateString(value));
}

int nb_params_load_file(cJSON *params, const char *path, char **err)
{
    size_t len;
    cb_autofree char *text = cb_read_file(path, &len);
    if (!text) {
        *err = cb_printf_new("cannot read parameters file %s: %s", path, strerror(errno));
        return -1;
    }
    char *why = NULL;
    bool yaml = cb_str_has_suffix(path, ".yaml") || cb_str_has_suffix(path, ".yml");
    cJSON *j = yaml ? NULL : nb_json_parse(text, len, NB_JSON_STRICT_UTF8, &why);
    if (!j) {
        /* papermill reads -f as YAML, and JSON is YAML: try YAML when built with it */
        if (nb_yaml_supported()) {
            free(why);
            why = NULL;
            j = nb_yaml_parse(text, len, &why);
        } else if (yaml) {
            free(why);
            why = cb_strdup("YAML parameter files need cellbox built with libyaml (apt-get install libyaml-dev, "
                            "then ./configure && make); use a JSON file meanwhile");
        }
    }
    if (!j) {
        *err = cb_printf_new("parameters file %s: %s", path, why ? why : "invalid");
        free(why);
        return -1;
    }
    if (cJSON_IsNull(j)) {  /* an empty YAML file: no parameters */
        cJSON_Delete(j);
        return 0;
    }
    if (!cJSON_IsObject(j)) {
        *err = cb_printf_new("parameters file %s must hold a mapping of names to values", path);
        cJSON_Delete(j);
        return -1;
    }
    nb_params_update(params, j);
    cJSON_Delete(j);
    return 0;
}

void nb_params_update(cJSON *params, const cJSON *more)
{
    for (const cJSON *k = more ? more->child : NULL; k; k = k->next)
        params_set(params, k->string, nb_json_dup(k));
}

int nb_params_load_text(cJSON *params, const char *text, size_t len, char **err)
{
    char *why = NULL;
    cJSON *j = nb_yaml_supported() ? nb_yaml_parse(text, len, &why) : nb_json_parse(text, len, NB_JSON_STRICT_UTF8, &why);
    if (!j || !(cJSON_IsObject(j) || cJSON_IsNull(j))) {
        *err = why ? why : cb_strdup("expected a mapping of names to values");
        cJSON_Delete(j);
        return -1;
    }
    free(why);
    nb_params_update(params, j);
    cJSON_Delete(j);
    return 0;
}

int nb_params_load_base64(cJSON *params, const char *b64, char **err)
{
    /* papermill: yaml.load(base64.b64decode(TEXT)); people also paste the
     * URL-safe alphabet or drop the padding, which decode the same here */
    static const int variants[] = {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                                   sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING};
    size_t n = strlen(b64), cap = n / 4 * 3 + 4, len = 0;
    cb_autofree unsigned char *bin = cb_malloc(cap + 1);
    bool decoded = false;
    for (size_t v = 0; v < CB_ARRAY_LEN(variants) && !decoded; v++) {
        const char *end = NULL;
        decoded = sodium_base642bin(bin, cap, b64, n, " \t\r\n", &len, &end, variants[v]) == 0 && end == b64 + n;
    }
    if (!decoded) {
        *err = cb_strdup("not valid base64 text");
        return -1;
    }
    bin[len] = '\0';
    if (memchr(bin, '\0', len)) {
        *err = cb_strdup("the decoded text holds NUL bytes: expected base64 of YAML or JSON text");
        return -1;
    }
    char *why = NULL;
    if (nb_params_load_text(params, (const char *)bin, len, &why) < 0) {
        *err = cb_printf_new("the decoded text: %s", why);
        free(why);
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------- translators */

/* LANG_JS: JavaScript and TypeScript (cellbox's own kernels; papermill has
 * no translator for them): JSON literals assigned to the names (plain
 * assignments: they reach a `let` of the parameters cell in any REPL-style
 * JS kernel, where a second `let`/`var` would be an error). */
typedef enum { LANG_PYTHON, LANG_R, LANG_BASH, LANG_JS } lang;

static const struct {
    const char *key;   /* papermill's registry: kernel names and languages */
    lang l;
} translators[] = {
    {"python", LANG_PYTHON}, {"pysparkkernel", LANG_PYTHON}, {"R", LANG_R},
    {"sparkrkernel", LANG_R}, {"bash", LANG_BASH},
    {"javascript", LANG_JS}, {"typescript", LANG_JS},
};

static int find_translator(const char *kernel_name, const char *language, lang *out)
{
    const char *tries[] = {kernel_name, language};
    for (size_t t = 0; t < 2; t++)
        for (size_t i = 0; tries[t] && i < CB_ARRAY_LEN(translators); i++)
            if (strcmp(tries[t], translators[i].key) == 0) {
                *out = translators[i].l;
                return 0;
            }
    /* friendlier than papermill: the language's usual spellings */
    if (language && (strcasecmp(language, "python") == 0 || strncasecmp(language, "python", 6) == 0)) {
        *out = LANG_PYTHON;
        return 0;
    }
    if (language && strcasecmp(language, "r") == 0) {
        *out = LANG_R;
        return 0;
    }
    if (language && (strcasecmp(language, "javascript") == 0 || strcasecmp(language, "typescript") == 0 ||
                     strcasecmp(language, "js") == 0 || strcasecmp(language, "ts") == 0)) {
        *out = LANG_JS;
        return 0;
    }
    return -1;
}

const char *nb_params_translator(const char *kernel_name, const char *language)
{
    static const char *const names[] = {[LANG_PYTHON] = "python", [LANG_R] = "R", [LANG_BASH] = "bash",
                                        [LANG_JS] = "javascript"};
    lang l;
    return find_translator(kernel_name, language, &l) < 0 ? NULL : names[l];
}

/* Python's str.encode('unicode_escape').decode() then '"' -> '\"'. */
static void escaped_str(cb_buf *b, const char *s)
{
    cb_buf_putc(b, '"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned cp = *p;
        size_t n = 1;
        if (cp >= 0x80) {  /* decode UTF-8 (input is valid: it came through our parser or argv) */
            if ((cp & 0xE0) == 0xC0 && p[1]) {
                cp = ((cp & 0x1F) << 6) | (p[1] & 0x3F);
                n = 2;
            } else if ((cp & 0xF0) == 0xE0 && p[1] && p[2]) {
                cp = ((cp & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
                n = 3;
            } else if ((cp & 0xF8) == 0xF0 && p[1] && p[2] && p[3]) {
                cp = ((cp & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
                n = 4;
            }
        }
        if (cp == '\\')
            cb_buf_puts(b, "\\\\");
        else if (cp == '\t')
            cb_buf_puts(b, "\\t");
        else if (cp == '\n')
            cb_buf_puts(b, "\\n");
        else if (cp == '\r')
            cb_buf_puts(b, "\\r");
        else if (cp == '"')
            cb_buf_puts(b, "\\\"");
        else if (cp < 0x20 || (cp >= 0x7f && cp < 0x100))
            cb_buf_printf(b, "\\x%02x", cp);
        else if (cp >= 0x100 && cp < 0x10000)
            cb_buf_printf(b, "\\u%04x", cp);
        else if (cp >= 0x10000)
            cb_buf_printf(b, "\\U%08x", cp);
        else
            cb_buf_putc(b, (char)cp);
        p += n;
    }
    cb_buf_putc(b, '"');
}

/* shlex.quote() */
static void shell_quote(cb_buf *b, const char *s)
{
    if (!*s) {
        cb_buf_puts(b, "''");
        return;
    }
    bool safe = true;
    for (const char *p = s; *p && safe; p++)
        safe = isalnum((unsigned char)*p) || strchr("_@%+=:,./-", *p);
    if (safe) {
        cb_buf_puts(b, s);
        return;
    }
    cb_buf_putc(b, '\'');
    for (const char *p = s; *p; p++) {
        if (*p == '\'')
            cb_buf_puts(b, "'\"'\"'");
        else
            cb_buf_putc(b, *p);
    }
    cb_buf_putc(b, '\'');
}

static int translate(cb_buf *b, const cJSON *v, lang l, char **err);

/* A JavaScript string literal: a JSON string (non-ASCII kept as is,
 * NB_JSON_NUL as \u0000), as nb_json writes one. */
static void js_str(cb_buf *b, const char *s)
{
    cJSON *str = cJSON_CreateString(s);
    nb_json_write(b, str);
    cJSON_Delete(str);
}

static void translate_str(cb_buf *b, const char *s, lang l)
{
    if (l == LANG_BASH)
        shell_quote(b, s);
    else if (l == LANG_JS)
        js_str(b, s);
    else
        escaped_str(b, s);
}

static int translate(cb_buf *b, const cJSON *v, lang l, char **err)
{
    if (cJSON_IsNull(v)) {
        cb_buf_puts(b, l == LANG_PYTHON ? "None" : l == LANG_R ? "NULL" : l == LANG_JS ? "null" : "");
    } else if (cJSON_IsString(v)) {
        translate_str(b, v->valuestring, l);
    } else if (cJSON_IsBool(v)) {
        bool t = cJSON_IsTrue(v);
        cb_buf_puts(b, l == LANG_PYTHON ? (t ? "True" : "False") : l == LANG_R ? (t ? "TRUE" : "FALSE")
                                                                                : (t ? "true" : "false"));
    } else if (cJSON_IsNumber(v)) {
        if (nb_json_is_int(v)) {
            cb_autofree char *t = nb_json_number_text(v);
            cb_buf_puts(b, t);
        } else {
            double d = v->valuedouble;
            char buf[40];
            if (l == LANG_PYTHON && isnan(d))
                cb_buf_puts(b, "float('nan')");
            else if (l == LANG_PYTHON && isinf(d))
                cb_buf_puts(b, d < 0 ? "float('-inf')" : "float('inf')");
            else if (l == LANG_JS && isnan(d))
                cb_buf_puts(b, "NaN");
            else if (l == LANG_JS && isinf(d))
                cb_buf_puts(b, d < 0 ? "-Infinity" : "Infinity");
            else {
                nb_json_float_repr(d, buf);
                cb_buf_puts(b, buf);
            }
        }
    } else if (cJSON_IsArray(v)) {
        cb_buf_puts(b, l == LANG_PYTHON || l == LANG_JS ? "[" : l == LANG_R ? "list(" : "(");
        for (const cJSON *c = v->child; c; c = c->next) {
            if (translate(b, c, l, err) < 0)
                return -1;
            if (c->next)
                cb_buf_puts(b, l == LANG_BASH ? " " : ", ");
        }
        cb_buf_puts(b, l == LANG_PYTHON || l == LANG_JS ? "]" : ")");
    } else if (cJSON_IsObject(v)) {
        if (l == LANG_BASH) {
            *err = cb_strdup("a mapping cannot be passed as a bash parameter (papermill's bash translator has no "
                             "dict type either)");
            return -1;
        }
        cb_buf_puts(b, l == LANG_PYTHON || l == LANG_JS ? "{" : "list(");
        for (const cJSON *c = v->child; c; c = c->next) {
            translate_str(b, c->string, l);
            cb_buf_puts(b, l == LANG_PYTHON || l == LANG_JS ? ": " : " = ");
            if (translate(b, c, l, err) < 0)
                return -1;
            if (c->next)
                cb_buf_puts(b, ", ");
        }
        cb_buf_puts(b, l == LANG_PYTHON || l == LANG_JS ? "}" : ")");
    }
    return 0;
}

/* Whether name can be assigned to as it is written into the injected cell.
 * papermill writes names unchecked, so a name such as 'a-b', '1x', 'class'
 * or 'x; import os' (from -p or a parameters file) failed only in the
 * kernel, after the cells above the parameters cell had run, or ran as
 * code. Non-ASCII bytes are let through: the kernel judges Unicode names. */
static bool name_ok(const char *name, lang l)
{
    static const char *const py_keywords[] = {
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
        "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in",
        "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield"};
    static const char *const r_reserved[] = {
        "if", "else", "repeat", "while", "function", "for", "next", "break", "TRUE", "FALSE", "NULL",
        "Inf", "NaN", "NA", "NA_integer_", "NA_real_", "NA_character_", "NA_complex_", "in"};
    const unsigned char *p = (const unsigned char *)name;
    if (!*p || (*p >= '0' && *p <= '9') || (l == LANG_R && p[0] == '.' && p[1] >= '0' && p[1] <= '9'))
        return false;
    for (; *p; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                  *p == '_' || (*p >= 0x80 && l != LANG_BASH) || (*p == '.' && l == LANG_R) ||
                  (*p == '$' && l == LANG_JS);
        if (!ok)
            return false;
    }
    if (l == LANG_PYTHON)
        for (size_t i = 0; i < CB_ARRAY_LEN(py_keywords); i++)
            if (strcmp(name, py_keywords[i]) == 0)
                return false;
    if (l == LANG_R)
        for (size_t i = 0; i < CB_ARRAY_LEN(r_reserved); i++)
            if (strcmp(name, r_reserved[i]) == 0)
                return false;
    return true;
}

char *nb_params_code(const cJSON *params, const char *kernel_name, const char *language, char **err)
{
    lang l;
    if (find_translator(kernel_name, language, &l) < 0) {
        *err = cb_printf_new("no parameter translator for kernel '%s' or language '%s' (cellbox translates "
                             "parameters for python, R, bash, JavaScript and TypeScript)",
                             kernel_name ? kernel_name : "", language ? language : "");
        return NULL;
    }
    cb_buf b = CB_BUF_INIT;
    cb_buf_puts(&b, l == LANG_JS ? "// Parameters\n" : "# Parameters\n");
    for (const cJSON *p = params ? params->child : NULL; p; p = p->next) {
        const char *name = p->string;
        if (l == LANG_R)
            while (*name == '_')  /* leading '_' is not legal in R names */
                name++;
        if (!name_ok(name, l)) {
            static const char *const lang_names[] = {[LANG_PYTHON] = "Python", [LANG_R] = "R",
                                                     [LANG_BASH] = "bash", [LANG_JS] = "JavaScript"};
            cJSON *key = cJSON_CreateString(p->string);
            cb_autofree char *quoted = cJSON_PrintUnformatted(key);
            cJSON_Delete(key);
            *err = cb_printf_new("parameter %s is not a valid variable name in %s: nothing was run", quoted,
                                 lang_names[l]);
            cb_buf_clear(&b);
            return NULL;
        }
        cb_buf_puts(&b, name);
        cb_buf_puts(&b, l == LANG_BASH ? "=" : " = ");
        if (translate(&b, p, l, err) < 0) {
            cb_buf_clear(&b);
            return NULL;
        }
        cb_buf_puts(&b, l == LANG_JS ? ";\n" : "\n");
    }
    if (l == LANG_JS)   /* a JS cell shows its last value: the assignment's */
        cb_buf_puts(&b, "void 0;  // no value to show\n");
    return cb_buf_steal(&b);
}

static int find_tagged(const nb_notebook *nb, const char *tag)
{
    int i = 0;
    for (const cJSON *cell = nb->cells->child; cell; cell = cell->next, i++)
        if (nb_cell_has_tag(cell, tag))
            return i;
    return -1;
}

static cJSON *papermill_md(nb_notebook *nb)
{
    cJSON *pm = cb_json_obj(nb->metadata, "papermill");
    if (!pm) {
        pm = cJSON_CreateObject();
        cb_json_set(nb->metadata, "papermill", pm);
    }
    return pm;
}

int nb_params_inject(nb_notebook *nb, const cJSON *params, const char *kernel_name, const char *language,
                     char **err)
{
    cb_autofree char *code = nb_params_code(params, kernel_name, language, err);
    if (!code)
        return -1;
    nb_notebook_upgrade(nb);
    cJSON *cell = nb_new_code_cell(code, true);
    cJSON *tags = cJSON_AddArrayToObject(nb_cell_metadata(cell), "tags");
    cJSON_AddItemToArray(tags, cJSON_CreateString("injected-parameters"));
    int injected = find_tagged(nb, "injected-parameters");
    int param = find_tagged(nb, "parameters");
    if (injected >= 0) {
        cJSON_ReplaceItemInArray(nb->cells, injected, cell);
    } else if (param >= 0) {
        nb_json_insert(nb->cells, param + 1, cell);
    } else {
        cb_warn("notebooks", "the notebook has no cell tagged 'parameters': parameters injected at the top");
        nb_json_insert(nb->cells, 0, cell);
    }
    cb_json_set(papermill_md(nb), "parameters", nb_json_dup(params));
    return 0;
}

/* =============================================================== metadata */

void nb_pm_isotime(char *buf, size_t n, long long us)
{
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    int frac = (int)(us % 1000000);
    int w = snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (frac && w > 0 && (size_t)w < n)
        snprintf(buf + w, n - (size_t)w, ".%06d", frac);  /* isoformat() omits a zero fraction */
}

static cJSON *now_iso(long long *us_out)
{
    long long us = cb_real_us();
    if (us_out)
        *us_out = us;
    char buf[40];
    nb_pm_isotime(buf, sizeof buf, us);
    return cJSON_CreateString(buf);
}

void nb_pm_report_mode(nb_notebook *nb)
{
    for (cJSON *cell = nb->cells->child; cell; cell = cell->next) {
        if (strcmp(nb_cell_type(cell), "code") != 0)
            continue;
        cJSON *md = nb_cell_metadata(cell);
        cJSON *jup = cb_json_obj(md, "jupyter");
        if (!jup) {
            jup = cJSON_CreateObject();
            cb_json_set(md, "jupyter", jup);
        }
        cb_json_set(jup, "source_hidden", cJSON_CreateTrue());
    }
}

void nb_pm_load(nb_notebook *nb)
{
    nb_notebook_upgrade(nb);
    if (!cJSON_GetObjectItemCaseSensitive(nb->metadata, "papermill")) {
        cJSON *pm = cJSON_CreateObject();
        cJSON_AddObjectToObject(pm, "default_parameters");
        cJSON_AddObjectToObject(pm, "parameters");
        cJSON_AddObjectToObject(pm, "environment_variables");
        cJSON_AddStringToObject(pm, "version", "cellbox-" PACKAGE_VERSION);
        cb_json_set(nb->metadata, "papermill", pm);
    }
    for (cJSON *cell = nb->cells->child; cell; cell = cell->next) {
        cJSON *md = nb_cell_metadata(cell);
        if (!cJSON_GetObjectItemCaseSensitive(md, "tags"))
            cJSON_AddArrayToObject(md, "tags");
        if (!cJSON_GetObjectItemCaseSensitive(md, "papermill"))
            cJSON_AddObjectToObject(md, "papermill");
    }
}

void nb_pm_prepare(nb_notebook *nb, const char *input_path, const char *output_path)
{
    cJSON *pm = papermill_md(nb);
    cb_json_set(pm, "input_path", cJSON_CreateString(input_path));
    cb_json_set(pm, "output_path", output_path ? cJSON_CreateString(output_path) : cJSON_CreateNull());
    for (cJSON *cell = nb->cells->child, *next; cell; cell = next) {
        next = cell->next;
        if (nb_cell_has_tag(cell, PM_ERROR_TAG))
            cJSON_Delete(cJSON_DetachItemViaPointer(nb->cells, cell));
    }
}

void nb_pm_notebook_start(nb_notebook *nb)
{
    cJSON *pm = papermill_md(nb);
    cb_json_set(pm, "start_time", now_iso(NULL));
    cb_json_set(pm, "end_time", cJSON_CreateNull());
    cb_json_set(pm, "duration", cJSON_CreateNull());
    cb_json_set(pm, "exception", cJSON_CreateNull());
    for (cJSON *cell = nb->cells->child; cell; cell = cell->next) {
        cJSON *ec = cJSON_GetObjectItemCaseSensitive(cell, "execution_count");
        if (ec && !cJSON_IsNull(ec))
            cb_json_set(cell, "execution_count", cJSON_CreateNull());
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNullToObject(p, "exception");
        cJSON_AddNullToObject(p, "start_time");
        cJSON_AddNullToObject(p, "end_time");
        cJSON_AddNullToObject(p, "duration");
        cJSON_AddStringToObject(p, "status", "pending");
        cb_json_set(nb_cell_metadata(cell), "papermill", p);
        if (cJSON_GetObjectItemCaseSensitive(cell, "outputs"))
            cb_json_set(cell, "outputs", cJSON_CreateArray());
    }
}

static cJSON *cell_pm(cJSON *cell)
{
    cJSON *md = nb_cell_metadata(cell);
    cJSON *p = cb_json_obj(md, "papermill");
    if (!p) {
        p = cJSON_CreateObject();
        cb_json_set(md, "papermill", p);
    }
    return p;
}

void nb_pm_cell_start(cJSON *cell)
{
    cJSON *p = cell_pm(cell);
    cb_json_set(p, "start_time", now_iso(NULL));
    cb_json_set(p, "status", cJSON_CreateString("running"));
    cb_json_set(p, "exception", cJSON_CreateFalse());
}

void nb_pm_cell_exception(nb_notebook *nb, cJSON *cell)
{
    cJSON *p = cell_pm(cell);
    cb_json_set(p, "exception", cJSON_CreateTrue());
    cb_json_set(p, "status", cJSON_CreateString("failed"));
    cb_json_set(papermill_md(nb), "exception", cJSON_CreateTrue());
}

/* end - start in seconds, both papermill ISO times, as total_seconds() does */
static cJSON *duration(const char *start, long long end_us)
{
    long long s = cb_iso_date_parse(start);
    if (s < 0)
        return NULL;
    return nb_json_float((double)(end_us - s) / 1e6);
}

void nb_pm_cell_complete(cJSON *cell)
{
    cJSON *p = cell_pm(cell);
    long long end;
    cb_json_set(p, "end_time", now_iso(&end));
    const char *start = cb_json_str(p, "start_time", NULL);
    cJSON *d = start ? duration(start, end) : NULL;
    if (d)
        cb_json_set(p, "duration", d);
    if (strcmp(cb_json_str(p, "status", ""), "failed") != 0)
        cb_json_set(p, "status", cJSON_CreateString("completed"));
}

void nb_pm_notebook_complete(nb_notebook *nb)
{
    cJSON *pm = papermill_md(nb);
    long long end;
    cb_json_set(pm, "end_time", now_iso(&end));
    const char *start = cb_json_str(pm, "start_time", NULL);
    cJSON *d = start ? duration(start, end) : NULL;
    if (d)
        cb_json_set(pm, "duration", d);
    for (cJSON *cell = nb->cells->child; cell; cell = cell->next) {
        cJSON *p = cb_json_obj(cb_json_obj(cell, "metadata"), "papermill");
        const char *st = cb_json_str(p, "status", "");
        if (strcmp(st, "failed") == 0)
            break;
        if (strcmp(st, "pending") == 0)
            cb_json_set(p, "status", cJSON_CreateString("completed"));
    }
}

static cJSON *error_cell(const char *text)
{
    cJSON *c = nb_new_markdown_cell(text, true);
    cJSON *tags = cJSON_AddArrayToObject(nb_cell_metadata(c), "tags");
    cJSON_AddItemToArray(tags, cJSON_CreateString(PM_ERROR_TAG));
    return c;
}

void nb_pm_insert_error_cells(nb_notebook *nb, int cell_index)
{
    cJSON *failed = nb_cell_at(nb, cell_index);
    if (!failed)
        return;
    const cJSON *ec = cJSON_GetObjectItemCaseSensitive(failed, "execution_count");
    cb_autofree char *count = nb_json_is_int(ec) ? nb_json_number_text(ec) : cb_strdup("None");
    cb_autofree char *msg = cb_printf_new("<span " PM_ERROR_STYLE ">An Exception was encountered at "
                                          "'<a href=\"#papermill-error-cell\">In [%s]</a>'.</span>",
                                          count);
    static const char anchor[] = "<span id=\"papermill-error-cell\" " PM_ERROR_STYLE
                                 ">Execution using papermill encountered an exception here and stopped:</span>";
    nb_json_insert(nb->cells, cell_index, error_cell(anchor));
    nb_json_insert(nb->cells, 0, error_cell(msg));
}
