/* notebooks/nb_inspect.c: `cellbox run --help-notebook`, papermill's
 * parameter introspection (see nb_papermill.h).
 *
 * papermill 2.x reads a Python parameters cell with Python's own ast and
 * tokenize modules. cellbox holds no Python here (all Py* calls live in
 * interp/), so a small scanner does the part that matters: it follows
 * strings (prefixes, triple quotes, escapes), comments, brackets, line
 * continuations and ';' to cut the cell into statements, then reads each
 * statement of the form  NAME [: ANNOTATION] = VALUE  [# [type: T] HELP].
 * It never executes or evaluates anything. What it cannot tell apart from
 * ast: a cell with a syntax error is read statement by statement instead
 * of through papermill's regex fallback. */
#include "config.h"
#include "notebooks/nb_papermill.h"

#include <ctype.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"

/* One statement, flattened as papermill flattens a value: comments dropped,
 * each physical line stripped, the lines joined without a separator.
 * top[i] is 1 where text[i] is code outside brackets and strings. */
typedef struct stmt {
    cb_buf text, top;
    cb_buf line, line_top;   /* the physical line being read */
    int indent;              /* columns before the statement's first character */
    const char *comment;     /* the comment on the statement's last line */
    size_t comment_len;
} stmt;

static void stmt_reset(stmt *s)
{
    cb_buf_reset(&s->text);
    cb_buf_reset(&s->top);
    cb_buf_reset(&s->line);
    cb_buf_reset(&s->line_top);
    s->comment = NULL;
    s->comment_len = 0;
}

static void stmt_clear(stmt *s)
{
    cb_buf_clear(&s->text);
    cb_buf_clear(&s->top);
    cb_buf_clear(&s->line);
    cb_buf_clear(&s->line_top);
}

/* The physical line read so far joins the statement, stripped. */
static void stmt_end_line(stmt *s)
{
    size_t a = 0, b = s->line.len;
    while (a < b && isspace((unsigned char)s->line.data[a]))
        a++;
    while (b > a && isspace((unsigned char)s->line.data[b - 1]))
        b--;
    cb_buf_append(&s->text, s->line.data + a, b - a);
    cb_buf_append(&s->top, s->line_top.data + a, b - a);
    cb_buf_reset(&s->line);
    cb_buf_reset(&s->line_top);
}

static void stmt_put(stmt *s, char c, bool top)
{
    cb_buf_putc(&s->line, c);
    cb_buf_putc(&s->line_top, top ? 1 : 0);
}

static bool is_ident_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c >= 0x80;
}

/* NAME: a Python identifier (non-ASCII letters taken on trust). */
static bool is_identifier(const char *s, size_t n)
{
    if (!n || isdigit((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_ident_char((unsigned char)s[i]))
            return false;
    return true;
}

static char *trimmed(const char *s, size_t n)
{
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    return cb_strndup(s, n);
}

/* An assignment '=' (not ==, !=, <=, >=, :=, +=, -=, //=, **=, ->...). */
static bool is_assign_at(const stmt *s, size_t i)
{
    const char *t = s->text.data;
    if (t[i] != '=' || !s->top.data[i])
        return false;
    if (i + 1 < s->text.len && t[i + 1] == '=')
        return false;
    return i == 0 || !strchr("=!<>:+-*/%&|^@~", t[i - 1]);
}

/* A keyword at position i of the flattened text (whole word). */
static bool word_at(const stmt *s, size_t i, const char *w)
{
    size_t n = strlen(w);
    return i + n <= s->text.len && memcmp(s->text.data + i, w, n) == 0 &&
           (i == 0 || !is_ident_char((unsigned char)s->text.data[i - 1])) &&
           (i + n == s->text.len || !is_ident_char((unsigned char)s->text.data[i + n]));
}

/* One parameter from a statement, or nothing. */
static void read_statement(const stmt *s, cJSON *out)
{
    const char *t = s->text.data;
    size_t n = s->text.len, eq = n;
    for (size_t i = 0; i < n && eq == n; i++)
        if (is_assign_at(s, i))
            eq = i;
    if (eq == n)
        return;  /* not an assignment (an expression, a call, x += 1, a bare annotation) */
    /* a = b = 1 has two targets: papermill skips it; '=' after a lambda is a default */
    bool lambda = false;
    for (size_t i = eq + 1; i < n; i++) {
        if (s->top.data[i] && word_at(s, i, "lambda"))
            lambda = true;
        if (!lambda && is_assign_at(s, i))
            return;
    }
    size_t colon = eq;
    for (size_t i = 0; i < eq && colon == eq; i++)
        if (t[i] == ':' && s->top.data[i])
            colon = i;
    cb_autofree char *name = trimmed(t, colon);
    if (!is_identifier(name, strlen(name)))
        return;  /* a tuple, an attribute, a subscript, a compound statement's header */
    cb_autofree char *value = trimmed(t + eq + 1, n - eq - 1);
    if (!*value)
        return;
    cb_autofree char *annotation = colon < eq ? trimmed(t + colon + 1, eq - colon - 1) : NULL;
    size_t al = annotation ? strlen(annotation) : 0;
    if (al >= 2 && (annotation[0] == '"' || annotation[0] == '\'') && annotation[al - 1] == annotation[0]) {
        memmove(annotation, annotation + 1, al - 2);  /* x: "int" = 1, a string annotation */
        annotation[al - 2] = '\0';
    }

    /* the comment after the statement: [type: T] HELP */
    cb_autofree char *type_comment = NULL, *help = NULL;
    if (s->comment) {
        const char *c = s->comment + 1, *e = s->comment + s->comment_len;
        while (c < e && isspace((unsigned char)*c))
            c++;
        if (e - c >= 5 && memcmp(c, "type:", 5) == 0) {
            c += 5;
            while (c < e && isspace((unsigned char)*c))
                c++;
            const char *w = c;
            while (c < e && !isspace((unsigned char)*c))
                c++;
            type_comment = cb_strndup(w, (size_t)(c - w));
        }
        help = trimmed(c, (size_t)(e - c));
    }
    const char *type = annotation && *annotation ? annotation : type_comment && *type_comment ? type_comment : "None";
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "name", name);
    cJSON_AddStringToObject(p, "inferred_type_name", type);
    cJSON_AddStringToObject(p, "default", value);
    cJSON_AddStringToObject(p, "help", help ? help : "");
    cJSON_AddItemToArray(out, p);
}

/* %magic, %%cell_magic, !shell, obj? and ?obj: not Python */
static bool ipython_line(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    const char *e = p + strcspn(p, "\n");
    while (e > p && isspace((unsigned char)e[-1]))
        e--;
    return e > p && (*p == '%' || *p == '!' || *p == '?' || e[-1] == '?');
}

/* The first word of the statement (def/class/async/@ open a body whose
 * assignments are not parameters). */
static bool opens_scope(const stmt *s)
{
    return s->text.len && (s->text.data[0] == '@' || word_at(s, 0, "def") || word_at(s, 0, "class") ||
                           word_at(s, 0, "async"));
}

cJSON *nb_params_inspect_python(const char *src)
{
    cJSON *out = cJSON_CreateArray();
    stmt s;
    memset(&s, 0, sizeof s);
    int scope_indent = -1;   /* >= 0: skipping the body of a def/class at this indent */
    int pending_indent = -1; /* after ';': the next statement shares the line's indent */
    const char *p = src;
    while (*p) {
        /* the start of a logical line: its indent, or a blank/comment/IPython line */
        int indent = 0;
        while (*p == ' ' || *p == '\t')
            p++, indent++;
        if (pending_indent >= 0)
            indent = pending_indent;
        pending_indent = -1;
        if (*p == '\n' || *p == '\r' || *p == '#' || ipython_line(p)) {
            p += strcspn(p, "\n");
            if (*p)
                p++;
            continue;
        }
        stmt_reset(&s);
        s.indent = indent;
        int depth = 0;
        bool more_on_line = false;   /* the statement ended at ';' */
        /* one statement */
        while (*p) {
            char c = *p;
            if (c == '#') {
                const char *e = p + strcspn(p, "\n");
                s.comment = p;
                s.comment_len = (size_t)(e - p);
                while (s.comment_len && isspace((unsigned char)s.comment[s.comment_len - 1]))
                    s.comment_len--;
                p = e;
                continue;
            }
            if (c == '\\' && (p[1] == '\n' || (p[1] == '\r' && p[2] == '\n'))) {
                /* explicit line joining; papermill keeps the backslash in a default */
                stmt_put(&s, c, false);
                p += p[1] == '\r' ? 3 : 2;
                stmt_end_line(&s);
                s.comment = NULL;
                continue;
            }
            if (c == '\n') {
                p++;
                if (depth == 0)
                    break;
                stmt_end_line(&s);  /* implicit line joining inside brackets */
                s.comment = NULL;
                continue;
            }
            if (c == ';' && depth == 0) {
                p++;
                more_on_line = true;
                break;
            }
            if (c == '"' || c == '\'' ||
                ((strchr("rRbBuUfF", c)) && (p == src || !is_ident_char((unsigned char)p[-1])) &&
                 (p[1] == '"' || p[1] == '\'' ||
                  (strchr("rRbBfF", p[1]) && p[1] && (p[2] == '"' || p[2] == '\''))))) {
                /* a string literal, prefix included */
                while (*p != '"' && *p != '\'')
                    stmt_put(&s, *p++, depth == 0);
                char q = *p;
                bool triple = p[1] == q && p[2] == q;
                int nq = triple ? 3 : 1;
                for (int k = 0; k < nq; k++)
                    stmt_put(&s, *p++, false);
                while (*p) {
                    if (*p == '\\' && p[1]) {
                        stmt_put(&s, *p++, false);
                        if (*p == '\n')
                            stmt_end_line(&s);
                        else
                            stmt_put(&s, *p, false);
                        p++;
                        continue;
                    }
                    if (*p == q && (!triple || (p[1] == q && p[2] == q))) {
                        for (int k = 0; k < nq; k++)
                            stmt_put(&s, *p++, false);
                        break;
                    }
                    if (*p == '\n') {
                        if (!triple)
                            break;  /* unterminated: the line ends the string */
                        stmt_end_line(&s);
                        p++;
                        continue;
                    }
                    stmt_put(&s, *p++, false);
                }
                continue;
            }
            if (c == '(' || c == '[' || c == '{')
                depth++;
            stmt_put(&s, c, depth == 0);
            if ((c == ')' || c == ']' || c == '}') && depth > 0)
                depth--;
            p++;
        }
        stmt_end_line(&s);
        if (more_on_line)
            s.comment = NULL;  /* a comment after "x = 1; y = 2" belongs to y */
        if (scope_indent >= 0 && s.indent > scope_indent)
            goto next;
        scope_indent = -1;
        if (opens_scope(&s)) {
            scope_indent = s.indent;
            goto next;
        }
        read_statement(&s, out);
    next:
        pending_indent = more_on_line ? s.indent : -1;
    }
    stmt_clear(&s);
    return out;
}

/* ------------------------------------------------------------ the display */

/* Code points, for Python's str.format() padding. */
static size_t utf8_width(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

int nb_params_help(const nb_notebook *nb, const char *path, const char *kernel_name, const char *language,
                   cb_buf *out)
{
    cb_buf_printf(out, "\nParameters inferred for notebook '%s':\n", path);
    const cJSON *cell = NULL;
    for (int i = 0; i < nb_cell_count(nb) && !cell; i++)
        if (nb_cell_has_tag(nb_cell_at(nb, i), "parameters"))
            cell = nb_cell_at(nb, i);
    if (!cell) {
        cb_buf_puts(out, "\n  No cell tagged 'parameters'\n");
        return 1;
    }
    /* the translator papermill would choose: only Python's can inspect */
    const cJSON *ks = cb_json_obj(nb->metadata, "kernelspec");
    if (!kernel_name)
        kernel_name = cb_json_str(ks, "name", NULL);
    if (!language)
        language = cb_json_str(cb_json_obj(nb->metadata, "language_info"), "name", NULL);
    if (!language)
        language = cb_json_str(ks, "language", "python");
    const char *tr = nb_params_translator(kernel_name, language);
    cJSON *params = NULL;
    if (tr && strcmp(tr, "python") == 0)
        params = nb_params_inspect_python(nb_cell_source(cell));
    else
        cb_warn("notebooks", "Translator for '%s' language does not support parameter introspection.", language);
    if (!params || !params->child) {
        cb_buf_puts(out, "\n  Can't infer anything about this notebook's parameters. It may not have any parameter "
                         "defined.\n");
        cJSON_Delete(params);
        return 0;
    }
    for (const cJSON *p = params->child; p; p = p->next) {
        const char *type = cb_json_str(p, "inferred_type_name", "None");
        const char *help = cb_json_str(p, "help", "");
        cb_buf def = CB_BUF_INIT;
        cb_buf_printf(&def, "  %s: %s (default %s)", cb_json_str(p, "name", ""),
                      strcmp(type, "None") == 0 ? "Unknown type" : type, cb_json_str(p, "default", ""));
        /* papermill's layout: help in a column at 34, or on the next line
         * under a long definition (the short form is padded even without
         * help, as papermill's "{:<34}{}" does) */
        size_t width = utf8_width(def.data);
        if (width > 30) {
            if (*help)
                cb_buf_printf(out, "%s\n%34s%s\n", def.data, "", help);
            else
                cb_buf_printf(out, "%s\n", def.data);
        } else {
            cb_buf_printf(out, "%s%*s%s\n", def.data, (int)(34 - width), "", help);
        }
        cb_buf_clear(&def);
    }
    cJSON_Delete(params);
    return 0;
}
