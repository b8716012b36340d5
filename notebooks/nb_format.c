/* notebooks/nb_format.c: nbformat 4 read / validate / write, nbformat 3
 * read and upgraded to 4 (see nb_format.h).
 *
 * The order of operations copies nbformat.reads(): parse JSON, rejoin
 * multi-line strings, strip transient fields, validate, then repair cell
 * ids (4.5+: missing or duplicate ids are replaced by fresh ones, with a
 * warning, exactly when nbformat would). Writing copies nbformat.writes():
 * split_lines on a copy, strip transient fields, json.dumps(indent=1,
 * sort_keys=True, ensure_ascii=False) plus a trailing newline. */
#include "config.h"
#include "notebooks/nb_format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <sodium.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "notebooks/nb_json.h"

/* ----------------------------------------------------------- line handling */

static bool is_json_mime(const char *mime)
{
    return strcmp(mime, "application/json") == 0 ||
           (cb_str_has_prefix(mime, "application/") && cb_str_has_suffix(mime, "+json"));
}

static bool all_strings(const cJSON *arr)
{
    for (const cJSON *c = arr->child; c; c = c->next)
        if (!cJSON_IsString(c))
            return false;
    return true;
}

/* cJSON_ReplaceItemViaPointer() does not carry the key over. */
static void replace_keep_key(cJSON *parent, cJSON *item, cJSON *with)
{
    if (item->string && !with->string)
        with->string = cb_strdup(item->string);
    cJSON_ReplaceItemViaPointer(parent, item, with);
}

/* Replaces an array of strings by their concatenation (anything else
 * stays as it is). */
static void join_item(cJSON *parent, cJSON *item)
{
    if (!cJSON_IsArray(item) || !all_strings(item))
        return;
    cb_buf b = CB_BUF_INIT;
    cb_buf_puts(&b, "");
    for (const cJSON *c = item->child; c; c = c->next)
        cb_buf_puts(&b, c->valuestring);
    cJSON *s = cJSON_CreateString("");
    free(s->valuestring);
    s->valuestring = cb_buf_steal(&b);
    replace_keep_key(parent, item, s);
}

static void rejoin_mimebundle(cJSON *data)
{
    if (!cJSON_IsObject(data))
        return;
    for (cJSON *v = data->child, *next; v; v = next) {
        next = v->next;
        if (!is_json_mime(v->string))
            join_item(data, v);
    }
}

/* Where nbformat's rejoin_lines and split_lines work: each cell's source
 * and attachments, and in code cells each output's data (execute_result,
 * display_data) or text. The text of every other output type is rejoined,
 * only that of streams is split (streams_only), as nbformat does. field()
 * gets such a field (or NULL) and changes it or not; bundle() gets a
 * mimebundle (or NULL). */
static void each_multiline(cJSON *root, bool streams_only, void (*field)(cJSON *parent, cJSON *item),
                           void (*bundle)(cJSON *data))
{
    cJSON *cells = cb_json_arr(root, "cells");
    for (cJSON *cell = cells ? cells->child : NULL; cell; cell = cell->next) {
        field(cell, cJSON_GetObjectItemCaseSensitive(cell, "source"));
        cJSON *att = cb_json_obj(cell, "attachments");
        for (cJSON *a = att ? att->child : NULL; a; a = a->next)
            bundle(a);
        if (strcmp(cb_json_str(cell, "cell_type", ""), "code") != 0)
            continue;
        cJSON *outs = cb_json_arr(cell, "outputs");
        for (cJSON *o = outs ? outs->child : NULL; o; o = o->next) {
            const char *ot = cb_json_str(o, "output_type", "");
            if (strcmp(ot, "execute_result") == 0 || strcmp(ot, "display_data") == 0)
                bundle(cb_json_obj(o, "data"));
            else if (streams_only ? strcmp(ot, "stream") == 0 : *ot != '\0')
                field(o, cJSON_GetObjectItemCaseSensitive(o, "text"));
        }
    }
}

void nb_rejoin_lines(cJSON *root)
{
    each_multiline(root, false, join_item, rejoin_mimebundle);
}

/* nbformat's split_lines, as marks the writer honours: each marked string
 * is written as the list of its lines, so writing costs no second tree. */
static void mark_item(cJSON *parent, cJSON *item)
{
    if (cJSON_IsString(item))
        item->type |= NB_JSON_AS_LINES;
}

static void mark_mimebundle(cJSON *data)
{
    if (!cJSON_IsObject(data))
        return;
    for (cJSON *v = data->child; v; v = v->next)
        if (cb_str_has_prefix(v->string, "text/") || strcmp(v->string, "application/javascript") == 0 ||
            strcmp(v->string, "image/svg+xml") == 0)
            mark_item(data, v);
}

static void mark_for_writing(cJSON *root)
{
    each_multiline(root, true, mark_item, mark_mimebundle);
}

static void strip_transient(cJSON *root)
{
    cJSON *md = cb_json_obj(root, "metadata");
    if (md) {
        cJSON_DeleteItemFromObjectCaseSensitive(md, "orig_nbformat");
        cJSON_DeleteItemFromObjectCaseSensitive(md, "orig_nbformat_minor");
        cJSON_DeleteItemFromObjectCaseSensitive(md, "signature");
    }
    cJSON *cells = cb_json_arr(root, "cells");
    for (cJSON *cell = cells ? cells->child : NULL; cell; cell = cell->next) {
        cJSON *cmd = cb_json_obj(cell, "metadata");
        if (cmd)
            cJSON_DeleteItemFromObjectCaseSensitive(cmd, "trusted");
    }
}

/* --------------------------------------------------------------- validation */

typedef struct vctx {
    const char *name;   /* file name for messages */
    char *err;
} vctx;

static int verr(vctx *v, const cJSON *cell, int index, const char *fmt, ...) CB_PRINTF(4, 5);
static int verr(vctx *v, const cJSON *cell, int index, const char *fmt, ...)
{
    if (v->err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    cb_autofree char *msg = cb_vprintf_new(fmt, ap);
    va_end(ap);
    if (cell) {
        char label[128];
        v->err = cb_printf_new("%s: %s: %s", v->name, nb_cell_label(cell, index, label, sizeof label), msg);
    } else {
        v->err = cb_printf_new("%s: %s", v->name, msg);
    }
    return -1;
}

static bool is_multiline(const cJSON *j)
{
    return cJSON_IsString(j) || (cJSON_IsArray(j) && all_strings(j));
}

static const char *type_name(const cJSON *j)
{
    if (!j) return "missing";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "a list";
    return "an object";
}

static int check_mimebundle(vctx *v, const cJSON *cell, int ci, const cJSON *data, const char *where)
{
    if (!cJSON_IsObject(data))
        return verr(v, cell, ci, "%s: 'data' must be an object (mimetype -> content), not %s", where, type_name(data));
    for (const cJSON *m = data->child; m; m = m->next)
        if (!is_json_mime(m->string) && !is_multiline(m))
            return verr(v, cell, ci, "%s: data['%s'] must be a string or a list of strings, not %s", where,
                        m->string, type_name(m));
    return 0;
}

static bool is_count(const cJSON *j)
{
    return cJSON_IsNull(j) || (nb_json_is_int(j) && j->valuedouble >= 0);
}

/* Output oi of a cell is an object with a string output_type: that string,
 * or NULL after verr. where: "output N", for the caller's next messages. */
static const char *output_type_of(vctx *v, const cJSON *cell, int ci, const cJSON *o, int oi, char *where,
                                  size_t cap)
{
    snprintf(where, cap, "output %d", oi + 1);
    if (!cJSON_IsObject(o))
        return verr(v, cell, ci, "%s must be an object, not %s", where, type_name(o)), NULL;
    const cJSON *ot = cJSON_GetObjectItemCaseSensitive(o, "output_type");
    if (!cJSON_IsString(ot))
        return verr(v, cell, ci, "%s: 'output_type' is %s (expected a string)", where, type_name(ot)), NULL;
    return ot->valuestring;
}

static int check_output(vctx *v, const cJSON *cell, int ci, const cJSON *o, int oi)
{
    char where[48];
    const char *t = output_type_of(v, cell, ci, o, oi, where, sizeof where);
    if (!t)
        return -1;
    if (strcmp(t, "stream") == 0) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
        if (!cJSON_IsString(name))
            return verr(v, cell, ci, "%s (stream): 'name' is %s (expected a string)", where, type_name(name));
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
        if (!is_multiline(text))
            return verr(v, cell, ci, "%s (stream): 'text' is %s (expected a string or a list of strings)", where,
                        type_name(text));
    } else if (strcmp(t, "display_data") == 0 || strcmp(t, "execute_result") == 0) {
        snprintf(where, sizeof where, "output %d (%s)", oi + 1, t);
        if (check_mimebundle(v, cell, ci, cJSON_GetObjectItemCaseSensitive(o, "data"), where) < 0)
            return -1;
        const cJSON *md = cJSON_GetObjectItemCaseSensitive(o, "metadata");
        if (!cJSON_IsObject(md))
            return verr(v, cell, ci, "%s: 'metadata' is %s (expected an object)", where, type_name(md));
        if (t[0] == 'e') {
            const cJSON *ec = cJSON_GetObjectItemCaseSensitive(o, "execution_count");
            if (!is_count(ec))
                return verr(v, cell, ci, "%s: 'execution_count' is %s (expected an integer >= 0 or null)", where,
                            type_name(ec));
        }
    } else if (strcmp(t, "error") == 0) {
        static const char *const fields[] = {"ename", "evalue"};
        for (size_t i = 0; i < CB_ARRAY_LEN(fields); i++) {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, fields[i]);
            if (!cJSON_IsString(f))
                return verr(v, cell, ci, "%s (error): '%s' is %s (expected a string)", where, fields[i], type_name(f));
        }
        const cJSON *tb = cJSON_GetObjectItemCaseSensitive(o, "traceback");
        if (!cJSON_IsArray(tb) || !all_strings(tb))
            return verr(v, cell, ci, "%s (error): 'traceback' is %s (expected a list of strings)", where,
                        type_name(tb));
    } else {
        return verr(v, cell, ci, "%s: unknown output_type '%s' (expected stream, display_data, execute_result or error)",
                    where, t);
    }
    return 0;
}

static bool valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_'))
            return false;
    return true;
}

static int check_cell(vctx *v, const nb_notebook *nb, const cJSON *cell, int ci)
{
    if (!cJSON_IsObject(cell))
        return verr(v, NULL, ci, "cell %d must be an object, not %s", ci + 1, type_name(cell));
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cell, "cell_type");
    if (!cJSON_IsString(ct))
        return verr(v, cell, ci, "'cell_type' is %s (expected \"code\", \"markdown\" or \"raw\")", type_name(ct));
    const char *t = ct->valuestring;
    bool code = strcmp(t, "code") == 0;
    if (!code && strcmp(t, "markdown") != 0 && strcmp(t, "raw") != 0)
        return verr(v, cell, ci, "unknown cell_type '%s' (expected code, markdown or raw)", t);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(cell, "id");
    if (id && (!cJSON_IsString(id) || !valid_id(id->valuestring)))
        return verr(v, NULL, ci, "cell %d: 'id' must be 1-64 letters, digits, '-' or '_'", ci + 1);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(cell, "metadata");
    if (!cJSON_IsObject(md))
        return verr(v, cell, ci, "'metadata' is %s (expected an object)", type_name(md));
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(md, "tags");
    if (tags && (!cJSON_IsArray(tags) || !all_strings(tags)))
        return verr(v, cell, ci, "metadata 'tags' is %s (expected a list of strings)", type_name(tags));
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(md, "name");
    if (name && !cJSON_IsString(name))
        return verr(v, cell, ci, "metadata 'name' is %s (expected a string)", type_name(name));
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(cell, "source");
    if (!is_multiline(src))
        return verr(v, cell, ci, "'source' is %s (expected a string or a list of strings)", type_name(src));
    const cJSON *att = cJSON_GetObjectItemCaseSensitive(cell, "attachments");
    if (att) {
        if (!cJSON_IsObject(att))
            return verr(v, cell, ci, "'attachments' is %s (expected an object)", type_name(att));
        for (const cJSON *a = att->child; a; a = a->next) {
            char where[300];
            snprintf(where, sizeof where, "attachment '%.200s'", a->string);
            if (check_mimebundle(v, cell, ci, a, where) < 0)
                return -1;
        }
    }
    if (!code)
        return 0;
    const cJSON *ec = cJSON_GetObjectItemCaseSensitive(cell, "execution_count");
    if (!ec)
        return verr(v, cell, ci, "'execution_count' is missing (a code cell needs it, null when not run)");
    if (!is_count(ec))
        return verr(v, cell, ci, "'execution_count' is %s (expected an integer >= 0 or null)", type_name(ec));
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(cell, "outputs");
    if (!cJSON_IsArray(outs))
        return verr(v, cell, ci, "'outputs' is %s (expected a list)", type_name(outs));
    int oi = 0;
    for (const cJSON *o = outs->child; o; o = o->next, oi++)
        if (check_output(v, cell, ci, o, oi) < 0)
            return -1;
    (void)nb;
    return 0;
}

static int validate(vctx *v, nb_notebook *nb)
{
    cJSON *root = nb->root;
    if (!cJSON_IsObject(root))
        return verr(v, NULL, 0, "not a Jupyter notebook: the document is %s, not an object", type_name(root));
    const cJSON *major = cJSON_GetObjectItemCaseSensitive(root, "nbformat");
    if (!major)
        return verr(v, NULL, 0, "not a Jupyter notebook: 'nbformat' is missing");
    if (!nb_json_is_int(major))
        return verr(v, NULL, 0, "'nbformat' is %s (expected the integer 4 or 3)", type_name(major));
    if (major->valuedouble < 4)
        return verr(v, NULL, 0,
                    "nbformat %.0f notebooks are not supported (cellbox reads nbformats 3 and 4); convert it with "
                    "'jupyter nbconvert --to notebook --nbformat 4'",
                    major->valuedouble);
    if (major->valuedouble > 4)
        return verr(v, NULL, 0, "nbformat %.0f is newer than this cellbox understands (nbformat 4)", major->valuedouble);
    const cJSON *minor = cJSON_GetObjectItemCaseSensitive(root, "nbformat_minor");
    if (!nb_json_is_int(minor) || minor->valuedouble < 0)
        return verr(v, NULL, 0, "'nbformat_minor' is %s (expected an integer)", type_name(minor));
    if (minor->valuedouble > 1000)  /* real ones are single digits; an int must hold it */
        return verr(v, NULL, 0, "'nbformat_minor' %.0f is not a version of nbformat 4", minor->valuedouble);
    nb->minor = (int)minor->valuedouble;
    nb->metadata = cb_json_obj(root, "metadata");
    if (!nb->metadata)
        return verr(v, NULL, 0, "'metadata' is %s (expected an object)",
                    type_name(cJSON_GetObjectItemCaseSensitive(root, "metadata")));
    /* kernelspec/language_info: the schema wants more, but notebooks with a
     * partial kernelspec are common and nbformat only logs them; what the
     * executor reads must have the right type. */
    static const char *const objs[] = {"kernelspec", "language_info"};
    for (size_t i = 0; i < CB_ARRAY_LEN(objs); i++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(nb->metadata, objs[i]);
        if (!o)
            continue;
        if (!cJSON_IsObject(o))
            return verr(v, NULL, 0, "metadata '%s' is %s (expected an object)", objs[i], type_name(o));
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
        if (name && !cJSON_IsString(name))
            return verr(v, NULL, 0, "metadata '%s.name' is %s (expected a string)", objs[i], type_name(name));
    }
    nb->cells = cb_json_arr(root, "cells");
    if (!nb->cells)
        return verr(v, NULL, 0, "'cells' is %s (expected a list)",
                    type_name(cJSON_GetObjectItemCaseSensitive(root, "cells")));
    int ci = 0;
    for (const cJSON *cell = nb->cells->child; cell; cell = cell->next, ci++)
        if (check_cell(v, nb, cell, ci) < 0)
            return -1;
    return 0;
}

/* nbformat's _normalize(): from 4.5 on, every cell has a unique id. The
 * duplicates are found by sorting (id, position): a notebook of 100,000
 * cells must not cost 100,000^2 comparisons. */
typedef struct id_ref {
    const char *id;
    int index;
} id_ref;

static int cmp_id_ref(const void *a, const void *b)
{
    const id_ref *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

static void repair_ids(nb_notebook *nb, const char *name)
{
    if (nb->minor < 5)
        return;
    int n = cJSON_GetArraySize(nb->cells), ci = 0, missing = 0, with_id = 0;
    id_ref *refs = cb_calloc(n ? (size_t)n : 1, sizeof *refs);
    bool *dup = cb_calloc(n ? (size_t)n : 1, sizeof *dup);
    for (cJSON *cell = nb->cells->child; cell; cell = cell->next, ci++)
        if (nb_cell_id(cell))
            refs[with_id++] = (id_ref){nb_cell_id(cell), ci};
    qsort(refs, (size_t)with_id, sizeof *refs, cmp_id_ref);
    for (int i = 1; i < with_id; i++)
        if (strcmp(refs[i].id, refs[i - 1].id) == 0)
            dup[refs[i].index] = true;  /* the first cell with an id keeps it */
    ci = 0;
    for (cJSON *cell = nb->cells->child; cell; cell = cell->next, ci++) {
        const char *id = nb_cell_id(cell);
        if (id && !dup[ci])
            continue;
        char fresh[9];
        nb_new_cell_id(fresh);
        if (dup[ci])
            cb_warn("notebooks", "%s: cell %d: duplicate id '%s' replaced by '%s'", name, ci + 1, id, fresh);
        else
            missing++;
        cb_json_set(cell, "id", cJSON_CreateString(fresh));
    }
    free(refs);
    free(dup);
    if (missing)
        cb_warn("notebooks", "%s: %d cell(s) without an id (required by nbformat 4.5) got new ids", name, missing);
}

/* ------------------------------------------------------- nbformat 3 upgrade */

/* An nbformat 3 notebook (IPython 1 and 2) is read as nbclient and
 * papermill read it, nbformat.read(f, as_version=4): v3's rejoin_lines
 * (its strip_transient is not part of that read), then
 * nbformat.v4.convert.upgrade(). The
 * worksheets' cells become the cells (worksheet metadata is dropped), code
 * cells' input/prompt_number/language/collapsed become source,
 * execution_count and metadata.collapsed, heading cells become markdown
 * "## title", outputs pyout/pyerr become execute_result/error, a display's
 * v3 keys (text, png...) move into data under their mimetypes, a stream's
 * 'stream' becomes 'name'. Every cell gets a fresh id and the notebook is
 * 4.5, as nbformat's upgrade makes it.
 *
 * What the conversion relies on is checked here, in v3's own terms
 * (worksheet 1: 'cells'..., 'input', 'prompt_number'); the result is then
 * validated as any v4 notebook. Where nbformat would accept a broken v3
 * notebook (it only logs invalid ones) and then crash or write an invalid
 * v4 one, the notebook is refused. */

/* v3's _join_lines: lines saved by splitlines(True) are concatenated, those
 * of an old splitlines() are joined with "\n". */
static int v3_join(vctx *v, cJSON *parent, const char *key, const cJSON *cell, int ci, const char *where)
{
    cJSON *item = cJSON_GetObjectItemCaseSensitive(parent, key);
    if (!cJSON_IsArray(item))
        return 0;
    if (!all_strings(item))
        return verr(v, cell, ci, "%s'%s' is a list holding more than strings (expected a string or a list of strings)",
                    where, key);
    const cJSON *first = item->child;
    bool keepends = first && (cb_str_has_suffix(first->valuestring, "\n") || cb_str_has_suffix(first->valuestring, "\r"));
    cb_buf b = CB_BUF_INIT;
    cb_buf_puts(&b, "");
    for (const cJSON *c = item->child; c; c = c->next) {
        if (c != first && !keepends)
            cb_buf_putc(&b, '\n');
        cb_buf_puts(&b, c->valuestring);
    }
    cJSON *s = cJSON_CreateString("");
    free(s->valuestring);
    s->valuestring = cb_buf_steal(&b);
    replace_keep_key(parent, item, s);
    return 0;
}

/* Moves parent[from] to parent[to] (replacing it), if there. */
static void move_key(cJSON *parent, const char *from, const char *to)
{
    cJSON *item = cJSON_DetachItemFromObjectCaseSensitive(parent, from);
    if (item)
        cb_json_set(parent, to, item);
}

/* nbformat.v4.convert.to_mime_key(), in _mime_map's order. */
static void v3_to_mime_keys(cJSON *d)
{
    static const char *const map[][2] = {
        {"text", "text/plain"},      {"html", "text/html"},         {"svg", "image/svg+xml"},
        {"png", "image/png"},        {"jpeg", "image/jpeg"},        {"latex", "text/latex"},
        {"json", "application/json"}, {"javascript", "application/javascript"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(map); i++)
        move_key(d, map[i][0], map[i][1]);
}

static int v3_output(vctx *v, const cJSON *cell, int ci, cJSON *o, int oi)
{
    char where[48];
    const char *t = output_type_of(v, cell, ci, o, oi, where, sizeof where);
    if (!t)
        return -1;
    bool pyout = strcmp(t, "pyout") == 0;
    snprintf(where, sizeof where, "output %d (%s): ", oi + 1, t);
    static const char *const multiline[] = {"text", "html", "svg", "latex", "javascript", "json"};
    for (size_t i = 0; i < CB_ARRAY_LEN(multiline); i++)
        if (v3_join(v, o, multiline[i], cell, ci, where) < 0)
            return -1;
    if (pyout || strcmp(t, "display_data") == 0) {
        cJSON *md = cJSON_GetObjectItemCaseSensitive(o, "metadata");
        if (md && !cJSON_IsObject(md))
            return verr(v, cell, ci, "%s'metadata' is %s (expected an object)", where, type_name(md));
        if (!md)
            md = cJSON_AddObjectToObject(o, "metadata");
        if (pyout) {
            cJSON *pn = cJSON_DetachItemFromObjectCaseSensitive(o, "prompt_number");
            if (pn && !is_count(pn)) {
                const char *tn = type_name(pn);
                cJSON_Delete(pn);
                return verr(v, cell, ci, "%s'prompt_number' is %s (expected an integer >= 0 or null)", where, tn);
            }
            cb_json_set(o, "output_type", cJSON_CreateString("execute_result"));
            cb_json_set(o, "execution_count", pn ? pn : cJSON_CreateNull());
        }
        /* everything else is data */
        cJSON *data = cJSON_CreateObject();
        for (cJSON *k = o->child, *next; k; k = next) {
            next = k->next;
            if (strcmp(k->string, "output_type") != 0 && strcmp(k->string, "execution_count") != 0 &&
                strcmp(k->string, "metadata") != 0)
                cJSON_AddItemToObject(data, k->string, cJSON_DetachItemViaPointer(o, k));
        }
        cb_json_set(o, "data", data);
        bool alias = cJSON_HasObjectItem(data, "json");
        v3_to_mime_keys(data);
        v3_to_mime_keys(md);
        cJSON *j = cJSON_GetObjectItemCaseSensitive(data, "application/json");
        if (j) {
            char *why = NULL;
            cJSON *parsed = cJSON_IsString(j) ? nb_json_parse(j->valuestring, strlen(j->valuestring), 0, &why) : NULL;
            if (!parsed) {
                int rc = verr(v, cell, ci, "%s'%s' is not JSON text%s%s", where, alias ? "json" : "application/json",
                              why ? ": " : "", why ? why : "");
                free(why);
                return rc;
            }
            cb_json_set(data, "application/json", parsed);
        }
    } else if (strcmp(t, "pyerr") == 0) {
        cb_json_set(o, "output_type", cJSON_CreateString("error"));
    } else if (strcmp(t, "stream") == 0) {
        cJSON *s = cJSON_DetachItemFromObjectCaseSensitive(o, "stream");
        if (s && !cJSON_IsString(s)) {
            const char *tn = type_name(s);
            cJSON_Delete(s);
            return verr(v, cell, ci, "%s'stream' is %s (expected a string: stdout or stderr)", where, tn);
        }
        cb_json_set(o, "name", s ? s : cJSON_CreateString("stdout"));
    } else if (strcmp(t, "error") != 0 && strcmp(t, "execute_result") != 0) {
        /* nbformat passes v4 names through; anything else is no output */
        return verr(v, cell, ci, "output %d: unknown output_type '%s' (expected pyout, display_data, stream or pyerr)",
                    oi + 1, t);
    }
    return 0;
}

typedef struct heading_ctx {
    cb_buf *b;
    bool first;
} heading_ctx;

/* One line of str.splitlines(keepends=True), added without its break. */
static void heading_line(void *ctx, const char *line, size_t n)
{
    heading_ctx *h = ctx;
    static const char *const breaks[] = {"\r\n", "\xC2\x85", "\xE2\x80\xA8", "\xE2\x80\xA9"};
    size_t cut = 0;
    for (size_t i = 0; i < CB_ARRAY_LEN(breaks) && !cut; i++) {
        size_t k = strlen(breaks[i]);
        if (n >= k && memcmp(line + n - k, breaks[i], k) == 0)
            cut = k;
    }
    if (!cut && n && strchr("\n\r\v\f\x1c\x1d\x1e", line[n - 1]))
        cut = 1;
    if (!h->first)
        cb_buf_putc(h->b, ' ');
    h->first = false;
    cb_buf_append(h->b, line, n - cut);
}

#define V3_MAX_LEVEL 100  /* a heading level past this is not one (a "#" * 10**9 source is refused) */

static int v3_cell(vctx *v, cJSON *cell, int ci)
{
    if (!cJSON_IsObject(cell))
        return verr(v, NULL, ci, "cell %d must be an object, not %s", ci + 1, type_name(cell));
    cJSON_DeleteItemFromObjectCaseSensitive(cell, "id");  /* replaced by a fresh one, whatever it was */
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cell, "cell_type");
    if (!cJSON_IsString(ct))
        return verr(v, cell, ci, "'cell_type' is %s (expected \"code\", \"markdown\", \"raw\" or \"heading\")",
                    type_name(ct));
    const char *t = ct->valuestring;
    bool code = strcmp(t, "code") == 0, heading = strcmp(t, "heading") == 0, html = strcmp(t, "html") == 0;
    if (!code && !heading && !html && strcmp(t, "markdown") != 0 && strcmp(t, "raw") != 0)
        return verr(v, cell, ci, "unknown cell_type '%s' (expected code, markdown, raw or heading)", t);
    cJSON *md = cJSON_GetObjectItemCaseSensitive(cell, "metadata");
    if (md && !cJSON_IsObject(md))
        return verr(v, cell, ci, "'metadata' is %s (expected an object)", type_name(md));
    if (!md)
        md = cJSON_AddObjectToObject(cell, "metadata");
    if (code) {
        if (v3_join(v, cell, "input", cell, ci, "") < 0)
            return -1;
        cJSON *input = cJSON_DetachItemFromObjectCaseSensitive(cell, "input");
        if (input && !cJSON_IsString(input)) {
            const char *tn = type_name(input);
            cJSON_Delete(input);
            return verr(v, cell, ci, "'input' is %s (expected a string or a list of strings)", tn);
        }
        cJSON *pn = cJSON_DetachItemFromObjectCaseSensitive(cell, "prompt_number");
        if (pn && !is_count(pn)) {
            const char *tn = type_name(pn);
            cJSON_Delete(pn);
            cJSON_Delete(input);
            return verr(v, cell, ci, "'prompt_number' is %s (expected an integer >= 0 or null)", tn);
        }
        cb_json_set(cell, "source", input ? input : cJSON_CreateString(""));
        cb_json_set(cell, "execution_count", pn ? pn : cJSON_CreateNull());
        cJSON_DeleteItemFromObjectCaseSensitive(cell, "language");
        cJSON *collapsed = cJSON_DetachItemFromObjectCaseSensitive(cell, "collapsed");
        if (collapsed)
            cb_json_set(md, "collapsed", collapsed);
        cJSON *outs = cJSON_GetObjectItemCaseSensitive(cell, "outputs");
        if (!cJSON_IsArray(outs))
            return verr(v, cell, ci, "'outputs' is %s (expected a list)", type_name(outs));
        int oi = 0;
        for (cJSON *o = outs->child; o; o = o->next, oi++)
            if (v3_output(v, cell, ci, o, oi) < 0)
                return -1;
        return 0;
    }
    if (v3_join(v, cell, "source", cell, ci, "") < 0 || v3_join(v, cell, "rendered", cell, ci, "") < 0)
        return -1;
    if (html)
        cb_json_set(cell, "cell_type", cJSON_CreateString("markdown"));
    if (!heading)
        return 0;
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(cell, "source");
    if (src && !cJSON_IsString(src))
        return verr(v, cell, ci, "'source' is %s (expected a string or a list of strings)", type_name(src));
    const cJSON *level = cJSON_GetObjectItemCaseSensitive(cell, "level");
    if (level && !nb_json_is_int(level))
        return verr(v, cell, ci, "heading 'level' is %s (expected an integer)", type_name(level));
    if (level && level->valuedouble > V3_MAX_LEVEL)
        return verr(v, cell, ci, "heading 'level' %.0f is not a heading level (1 to 6)", level->valuedouble);
    int n = level ? (level->valuedouble > 0 ? (int)level->valuedouble : 0) : 1;
    cb_buf b = CB_BUF_INIT;
    cb_buf_puts(&b, "");
    for (int i = 0; i < n; i++)
        cb_buf_putc(&b, '#');
    cb_buf_putc(&b, ' ');
    heading_ctx h = {&b, true};
    const char *s = src ? src->valuestring : "";
    nb_json_splitlines(s, strlen(s), heading_line, &h);
    cJSON *out = cJSON_CreateString("");
    free(out->valuestring);
    out->valuestring = cb_buf_steal(&b);
    cb_json_set(cell, "source", out);
    cb_json_set(cell, "cell_type", cJSON_CreateString("markdown"));
    cJSON_DeleteItemFromObjectCaseSensitive(cell, "level");
    return 0;
}

static bool is_v3(const cJSON *root)
{
    const cJSON *major = cJSON_GetObjectItemCaseSensitive(root, "nbformat");
    return cJSON_IsObject(root) && nb_json_is_int(major) && major->valuedouble == 3;
}

/* Converts root (an nbformat 3 document) in place; the cells get their ids
 * after validation (an error names a cell by its number, not by an id the
 * file does not hold). */
static int upgrade_v3(vctx *v, cJSON *root)
{
    const cJSON *minor = cJSON_GetObjectItemCaseSensitive(root, "nbformat_minor");
    if (!nb_json_is_int(minor) || minor->valuedouble < 0)
        return verr(v, NULL, 0, "'nbformat_minor' is %s (expected an integer)", type_name(minor));
    cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (!cJSON_IsObject(md))
        return verr(v, NULL, 0, "'metadata' is %s (expected an object)", type_name(md));
    const cJSON *wss = cJSON_GetObjectItemCaseSensitive(root, "worksheets");
    if (!cJSON_IsArray(wss))
        return verr(v, NULL, 0, "'worksheets' is %s (expected a list of worksheets, nbformat 3)", type_name(wss));
    int wi = 0;
    for (const cJSON *ws = wss->child; ws; ws = ws->next, wi++) {
        const cJSON *wc = cJSON_IsObject(ws) ? cJSON_GetObjectItemCaseSensitive(ws, "cells") : NULL;
        if (!cJSON_IsObject(ws))
            return verr(v, NULL, 0, "worksheet %d must be an object, not %s", wi + 1, type_name(ws));
        if (!cJSON_IsArray(wc))
            return verr(v, NULL, 0, "worksheet %d: 'cells' is %s (expected a list)", wi + 1, type_name(wc));
    }
    /* the cells of all worksheets, numbered as they will be */
    cJSON *cells = cJSON_CreateArray();
    cJSON *detached = cJSON_DetachItemFromObjectCaseSensitive(root, "worksheets");
    cb_json_set(root, "cells", cells);
    for (cJSON *ws = detached->child; ws; ws = ws->next) {
        cJSON *wc = cJSON_GetObjectItemCaseSensitive(ws, "cells");
        while (wc->child)
            cJSON_AddItemToArray(cells, cJSON_DetachItemViaPointer(wc, wc->child));
    }
    cJSON_Delete(detached);
    int ci = 0;
    for (cJSON *cell = cells->child; cell; cell = cell->next, ci++)
        if (v3_cell(v, cell, ci) < 0)
            return -1;
    /* (v3's strip_transient is not part of nbformat.read: a cell's own
     * 'trusted' stays, as there) */
    cJSON_DeleteItemFromObjectCaseSensitive(root, "orig_nbformat");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "orig_nbformat_minor");
    cJSON_DeleteItemFromObjectCaseSensitive(md, "name");
    cJSON_DeleteItemFromObjectCaseSensitive(md, "signature");
    cb_json_set(root, "nbformat", cJSON_CreateNumber(4));
    cb_json_set(root, "nbformat_minor", cJSON_CreateNumber(5));
    return 0;
}

static void give_ids(nb_notebook *nb)
{
    for (cJSON *cell = nb->cells->child; cell; cell = cell->next) {
        char id[9];
        nb_new_cell_id(id);
        cb_json_set(cell, "id", cJSON_CreateString(id));
    }
}

nb_notebook *nb_notebook_parse(const char *data, size_t len, const char *name, char **err)
{
    char *why = NULL;
    cJSON *root = nb_json_parse(data, len, NB_JSON_STRICT_UTF8, &why);
    if (!root) {
        *err = cb_printf_new("%s: not a notebook: %s", name, why);
        free(why);
        return NULL;
    }
    nb_notebook *nb = cb_calloc(1, sizeof *nb);
    nb->root = root;
    vctx v = {.name = name};
    /* validate before joining: joining assumes lists of strings. An
     * nbformat 3 notebook was joined by v3's rules while upgraded; what
     * those leave as lists (a png, a full mimetype's value) nbformat would
     * write as lists, and join when reading that file back. They are
     * joined here as well, so that a file cellbox writes reads back to
     * the same bytes: the same notebook to any reader, the same file
     * unless a v3 output held such a list. */
    bool v3 = is_v3(root);
    if ((v3 && upgrade_v3(&v, root) < 0) || validate(&v, nb) < 0) {
        *err = v.err;
        nb_notebook_free(nb);
        return NULL;
    }
    if (v3)
        give_ids(nb);
    nb_rejoin_lines(root);
    strip_transient(root);
    repair_ids(nb, name);
    return nb;
}

/* Reads fd to its end into b. It stops early when what came so far
 * already cannot be JSON: the first byte after a BOM and whitespace starts
 * no JSON value (/dev/zero, a sparse or binary file), and reading such a
 * file to its end could take gigabytes for nothing. The parser then says
 * why from what is in b, as it would from the whole file. */
int nb_notebook_read_fd(int fd, cb_buf *b)
{
    char chunk[65536];
    size_t scan = 0;   /* bytes of leading whitespace seen */
    bool decided = false;
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        cb_buf_append(b, chunk, (size_t)r);
        if (decided)
            continue;
        if (scan == 0 && b->len >= 3 && memcmp(b->data, "\xEF\xBB\xBF", 3) == 0)
            scan = 3;
        if (scan == 0 && b->len < 3 && (unsigned char)b->data[0] == 0xEF)
            continue;  /* maybe a BOM: wait for its end */
        while (scan < b->len && (b->data[scan] == ' ' || b->data[scan] == '\t' || b->data[scan] == '\r' ||
                                 b->data[scan] == '\n'))
            scan++;
        if (scan < b->len) {
            decided = true;
            char c = b->data[scan];
            if (!c || !strchr("{[\"-0123456789tfnNI", c))
                return 0;
        }
    }
}

nb_notebook *nb_notebook_read(const char *path, char **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        fd = -1;
        errno = EISDIR;
    }
    cb_buf b = CB_BUF_INIT;
    if (fd < 0 || nb_notebook_read_fd(fd, &b) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        cb_buf_clear(&b);
        *err = cb_printf_new("%s: cannot read: %s", path, strerror(e));
        return NULL;
    }
    close(fd);
    nb_notebook *nb = nb_notebook_parse(b.data ? b.data : "", b.len, path, err);
    cb_buf_clear(&b);
    return nb;
}

void nb_notebook_free(nb_notebook *nb)
{
    if (!nb)
        return;
    cJSON_Delete(nb->root);
    free(nb);
}

/* Writes nb's JSON to fd, or appends it all to out when fd < 0 (the keys
 * nbformat drops on writing were stripped when it was read). The marks
 * live on the notebook's own nodes for the duration (the notebook is
 * const to callers: it reads the same before and after). */
static int write_notebook(const nb_notebook *nb, cb_buf *out, int fd)
{
    cJSON *root = nb->root;
    mark_for_writing(root);
    int rc = 0;
    if (fd < 0) {
        nb_json_write(out, root);
        cb_buf_putc(out, '\n');
    } else {
        rc = nb_json_write_fd(out, root, fd);
        cb_buf_putc(out, '\n');
        if (rc == 0 && cb_write_all(fd, out->data, out->len) < 0)
            rc = -1;
    }
    int e = errno;
    nb_json_clear_marks(root);
    errno = e;
    return rc;
}

char *nb_notebook_dumps(const nb_notebook *nb, size_t *len)
{
    cb_buf out = CB_BUF_INIT;
    write_notebook(nb, &out, -1);
    if (len)
        *len = out.len;
    return cb_buf_steal(&out);
}

/* The process's umask, read without changing it (umask() would, for a
 * moment, for every thread): Linux shows it in /proc/self/status. */
static mode_t current_umask(void)
{
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return mask;
    char line[256];
    unsigned int m;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Umask: %o", &m) == 1) {
            mask = (mode_t)(m & 0777);
            break;
        }
    fclose(f);
    return mask;
}

/* The extended attributes of the file being replaced (user.* tags, POSIX
 * ACLs, which are system.posix_acl_* attributes, file capabilities) go to
 * the temporary file, as open(path, "w") would have kept them. One that
 * cannot be set (trusted.* or security.* without the privilege, a file
 * system without xattrs) is skipped with a debug line: the notebook is
 * still written. Called after the last fchmod, which an ACL's mask
 * follows. */
static void keep_xattrs(int fd, const char *path)
{
    ssize_t n = llistxattr(path, NULL, 0);
    if (n <= 0)
        return;
    cb_autofree char *names = malloc((size_t)n);
    if (!names || (n = llistxattr(path, names, (size_t)n)) <= 0)
        return;
    for (char *name = names; name < names + n; name += strlen(name) + 1) {
        ssize_t len = lgetxattr(path, name, NULL, 0);
        cb_autofree char *value = len >= 0 ? malloc(len ? (size_t)len : 1) : NULL;
        if (!value || (len = lgetxattr(path, name, value, (size_t)len)) < 0 ||
            fsetxattr(fd, name, value, (size_t)len, 0) < 0)
            cb_debug("notebooks", "%s: extended attribute %s not kept: %s", path, name, strerror(errno));
    }
}

/* The temporary file that replaces path takes what nbformat.write()'s
 * open(path, "w") would have kept: the mode, owner and group of the file
 * there before (--inplace on a 0640 or group-shared notebook stays so), its
 * extended attributes and ACLs, or for a new file 0666 less the umask. An
 * owner that cannot be kept (not root) is not an error: the file is then
 * ours, as any replaced file. A file with other hard links cannot keep them
 * (the rename is what makes the write atomic): that is said on stderr. */
static int keep_file_identity(int fd, const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return fchmod(fd, 0666 & ~current_umask());
    if (fchmod(fd, st.st_mode & 07777) < 0)
        return -1;
    struct stat mine;
    if (fstat(fd, &mine) == 0 && (mine.st_uid != st.st_uid || mine.st_gid != st.st_gid) &&
        fchown(fd, st.st_uid, st.st_gid) < 0 && fchown(fd, (uid_t)-1, st.st_gid) < 0)
        cb_debug("notebooks", "%s: owner %d:%d not kept: %s", path, (int)st.st_uid, (int)st.st_gid,
                 strerror(errno));
    /* chown clears the set-id bits: set the mode again */
    if (fchmod(fd, st.st_mode & 07777) < 0)
        return -1;
    keep_xattrs(fd, path);
    if (st.st_nlink > 1)
        cb_warn("notebooks", "%s has %ju hard links: it is replaced by a new file (written whole, then "
                "renamed), so the other links keep the old contents", path, (uintmax_t)st.st_nlink);
    return 0;
}

int nb_notebook_write(const nb_notebook *nb, const char *path, char **err)
{
    cb_buf buf = CB_BUF_INIT;
    if (strcmp(path, "-") == 0) {
        int rc = write_notebook(nb, &buf, STDOUT_FILENO);
        if (rc < 0)
            *err = cb_printf_new("cannot write to stdout: %s", strerror(errno));
        cb_buf_clear(&buf);
        return rc;
    }
    /* a device or a FIFO (-o /dev/null, -o /dev/stdout, a named pipe) is
     * written to: renaming over it would replace the device node itself */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        int rc = fd < 0 ? -1 : write_notebook(nb, &buf, fd);
        int e = errno;
        if (fd >= 0 && close(fd) < 0 && rc == 0) {
            rc = -1;
            e = errno;
        }
        if (rc < 0)
            *err = cb_printf_new("cannot write %s: %s", path, strerror(e));
        cb_buf_clear(&buf);
        return rc;
    }
    /* a temporary file beside the target, renamed over it once complete */
    cb_autofree char *tmp = cb_printf_new("%s.tmp.%d.XXXXXX", path, (int)getpid());
    int fd = mkostemp(tmp, O_CLOEXEC);
    int rc = fd < 0 ? -1 : 0;
    if (rc == 0 && (keep_file_identity(fd, path) < 0 || write_notebook(nb, &buf, fd) < 0 || fsync(fd) < 0))
        rc = -1;
    int e = errno;
    if (fd >= 0 && close(fd) < 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc == 0 && rename(tmp, path) < 0) {
        rc = -1;
        e = errno;
    }
    if (rc < 0) {
        if (fd >= 0)
            unlink(tmp);
        *err = cb_printf_new("cannot write %s: %s", path, strerror(e));
    }
    cb_buf_clear(&buf);
    return rc;
}

void nb_notebook_upgrade(nb_notebook *nb)
{
    if (nb->minor >= 5)
        return;
    for (cJSON *cell = nb->cells->child; cell; cell = cell->next) {
        char id[9];
        nb_new_cell_id(id);
        cb_json_set(cell, "id", cJSON_CreateString(id));
    }
    nb->minor = 5;
    cb_json_set(nb->root, "nbformat_minor", cJSON_CreateNumber(5));
}

/* -------------------------------------------------------------------- cells */

int nb_cell_count(const nb_notebook *nb)
{
    return cJSON_GetArraySize(nb->cells);
}

cJSON *nb_cell_at(const nb_notebook *nb, int i)
{
    return cJSON_GetArrayItem(nb->cells, i);
}

const char *nb_cell_type(const cJSON *cell)
{
    return cb_json_str(cell, "cell_type", "");
}

const char *nb_cell_source(const cJSON *cell)
{
    return cb_json_str(cell, "source", "");
}

const char *nb_cell_id(const cJSON *cell)
{
    return cb_json_str(cell, "id", NULL);
}

cJSON *nb_cell_metadata(cJSON *cell)
{
    cJSON *md = cb_json_obj(cell, "metadata");
    if (!md) {
        md = cJSON_CreateObject();
        cb_json_set(cell, "metadata", md);
    }
    return md;
}

bool nb_cell_has_tag(const cJSON *cell, const char *tag)
{
    const cJSON *tags = cb_json_arr(cb_json_obj(cell, "metadata"), "tags");
    for (const cJSON *t = tags ? tags->child : NULL; t; t = t->next)
        if (cJSON_IsString(t) && strcmp(t->valuestring, tag) == 0)
            return true;
    return false;
}

const char *nb_cell_label(const cJSON *cell, int index, char *buf, size_t n)
{
    const char *id = cJSON_IsObject(cell) ? nb_cell_id(cell) : NULL;
    if (id)
        snprintf(buf, n, "cell %d (id '%s')", index + 1, id);
    else
        snprintf(buf, n, "cell %d", index + 1);
    return buf;
}

void nb_new_cell_id(char *buf)
{
    cb_autofree char *hex = cb_random_hex(4);
    memcpy(buf, hex, 9);
}

static cJSON *new_cell(const char *type, const char *source, bool with_id)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "cell_type", type);
    if (with_id) {
        char id[9];
        nb_new_cell_id(id);
        cJSON_AddStringToObject(c, "id", id);
    }
    cJSON_AddObjectToObject(c, "metadata");
    cJSON_AddStringToObject(c, "source", source);
    return c;
}

cJSON *nb_new_code_cell(const char *source, bool with_id)
{
    cJSON *c = new_cell("code", source, with_id);
    cJSON_AddNullToObject(c, "execution_count");
    cJSON_AddArrayToObject(c, "outputs");
    return c;
}

cJSON *nb_new_markdown_cell(const char *source, bool with_id)
{
    return new_cell("markdown", source, with_id);
}
