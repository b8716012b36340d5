/* notebooks/nb_exec.c: run a notebook's cells through a kernel (see
 * nb_exec.h). Behaviour copied from nbclient 0.7 unless a comment says
 * otherwise:
 *   - code cells run in order; empty ones and those tagged skip-execution
 *     are left as they are;
 *   - execute_request with store_history, allow_stdin=false and
 *     stop_on_error unless errors are allowed for the cell;
 *   - only IOPub messages whose parent is the cell's request count; the
 *     cell is done when the shell reply AND IOPub idle have arrived (idle
 *     is waited for iopub_timeout after the reply, then given up);
 *   - execution_count = the number of code cells executed so far;
 *   - cell.metadata.execution holds the kernel's header dates.
 * Differences, on purpose: consecutive streams are merged (what Jupyter's
 * frontends show and nbconvert stores); a timeout interrupts the kernel and
 * records a CellTimeoutError output; a dead kernel is recorded as a
 * DeadKernelError output; cells after a failure lose stale outputs.
 * Saving progress (hooks.save) is papermill's: after a cell (rate-limited,
 * so a fast notebook is written once, but a cell that runs longer saves
 * what came before it within the same interval) and on a timer during a long cell
 * (papermill autosaves only when a message arrives; a silent cell counts
 * too here). */
#include "config.h"
#include "notebooks/nb_exec.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "notebooks/nb_json.h"
#include "notebooks/nb_papermill.h"

/* ================================================================ outputs */

void nb_outputs_init(nb_outputs *o, nb_notebook *nb)
{
    memset(o, 0, sizeof *o);
    o->nb = nb;
    o->merge_streams = true;
    o->store_widget_state = true;
}

void nb_outputs_clear(nb_outputs *o)
{
    for (size_t i = 0; i < o->n_refs; i++)
        free(o->refs[i].display_id);
    free(o->refs);
    cJSON_Delete(o->widget_state);
    cJSON_Delete(o->widget_buffers);
    cJSON_Delete(o->out_widgets);
    cJSON_Delete(o->out_hooks);
    cJSON_Delete(o->to_kernel);
    memset(o, 0, sizeof *o);
}

static cJSON *dup_or(const cJSON *j, cJSON *(*make)(void))
{
    return j ? nb_json_dup(j) : make();
}

/* nbformat.v4.output_from_msg(); NULL for message types that are not outputs. */
static cJSON *output_from_msg(const char *msg_type, const cJSON *content)
{
    cJSON *out = cJSON_CreateObject();
    if (strcmp(msg_type, "execute_result") == 0 || strcmp(msg_type, "display_data") == 0 ||
        strcmp(msg_type, "update_display_data") == 0) {
        bool result = msg_type[0] == 'e';
        cJSON_AddStringToObject(out, "output_type", result ? "execute_result" : "display_data");
        cJSON *data = cb_json_obj(content, "data");
        cJSON *md = cb_json_obj(content, "metadata");
        cJSON_AddItemToObject(out, "data", dup_or(data, cJSON_CreateObject));
        cJSON_AddItemToObject(out, "metadata", dup_or(md, cJSON_CreateObject));
        if (result) {
            cJSON *ec = cJSON_GetObjectItemCaseSensitive(content, "execution_count");
            cJSON_AddItemToObject(out, "execution_count", ec ? nb_json_dup(ec) : cJSON_CreateNull());
        }
    } else if (strcmp(msg_type, "stream") == 0) {
        cJSON_AddStringToObject(out, "output_type", "stream");
        cJSON_AddStringToObject(out, "name", cb_json_str(content, "name", "stdout"));
        cJSON_AddStringToObject(out, "text", cb_json_str(content, "text", ""));
    } else if (strcmp(msg_type, "error") == 0) {
        cJSON_AddStringToObject(out, "output_type", "error");
        cJSON_AddStringToObject(out, "ename", cb_json_str(content, "ename", ""));
        cJSON_AddStringToObject(out, "evalue", cb_json_str(content, "evalue", ""));
        cJSON *tb = cb_json_arr(content, "traceback");
        cJSON_AddItemToObject(out, "traceback", dup_or(tb, cJSON_CreateArray));
    } else {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

/* The cell at cell_index: remembered, as every message of a cell asks for
 * it and nb_cell_at() walks the list (a notebook may have 100,000 cells). */
static cJSON *cell_of(nb_outputs *o, int cell_index)
{
    if (!o->cell_cached || o->cached_index != cell_index) {
        o->cell_cached = nb_cell_at(o->nb, cell_index);
        o->cached_index = cell_index;
    }
    return o->cell_cached;
}

static cJSON *cell_outputs(nb_outputs *o, int cell_index)
{
    cJSON *cell = cell_of(o, cell_index);
    cJSON *outs = cb_json_arr(cell, "outputs");
    if (!outs) {
        outs = cJSON_CreateArray();
        cb_json_set(cell, "outputs", outs);
    }
    return outs;
}

static void forget_cell_refs(nb_outputs *o, int cell_index)
{
    size_t w = 0;
    for (size_t i = 0; i < o->n_refs; i++) {
        if (o->refs[i].cell == cell_index)
            free(o->refs[i].display_id);
        else
            o->refs[w++] = o->refs[i];
    }
    o->n_refs = w;
}

static void clear_cell(nb_outputs *o, int cell_index)
{
    cb_json_set(cell_of(o, cell_index), "outputs", cJSON_CreateArray());
    forget_cell_refs(o, cell_index);
    o->tail = NULL;
}

void nb_outputs_begin_cell(nb_outputs *o, int cell_index)
{
    clear_cell(o, cell_index);
    o->clear_pending = false;
}

/* Appends add to the tail stream text, growing its buffer geometrically. */
static void tail_append(nb_outputs *o, const char *add)
{
    size_t b = strlen(add);
    if (o->tail_len + b + 1 > o->tail_cap) {
        size_t cap = o->tail_cap ? o->tail_cap : 64;
        while (cap < o->tail_len + b + 1)
            cap *= 2;
        o->tail->valuestring = cb_realloc(o->tail->valuestring, cap);
        o->tail_cap = cap;
    }
    memcpy(o->tail->valuestring + o->tail_len, add, b + 1);
    o->tail_len += b;
}

/* Every output shown with display_id gets the new data and metadata. */
static bool update_display(nb_outputs *o, const char *display_id, const cJSON *content)
{
    bool changed = false;
    for (size_t i = 0; i < o->n_refs; i++) {
        if (strcmp(o->refs[i].display_id, display_id) != 0)
            continue;
        cJSON *out = cJSON_GetArrayItem(cell_outputs(o, o->refs[i].cell), o->refs[i].output);
        if (!out)
            continue;
        cJSON *data = cb_json_obj(content, "data");
        cJSON *md = cb_json_obj(content, "metadata");
        cb_json_set(out, "data", dup_or(data, cJSON_CreateObject));
        cb_json_set(out, "metadata", dup_or(md, cJSON_CreateObject));
        changed = true;
    }
    return changed;
}

static void append_output(nb_outputs *o, int cell_index, cJSON *out, const char *display_id)
{
    if (o->clear_pending) {
        clear_cell(o, cell_index);
        o->clear_pending = false;
    }
    cJSON *outs = cell_outputs(o, cell_index);
    bool stream = strcmp(cb_json_str(out, "output_type", ""), "stream") == 0;
    if (o->merge_streams && stream) {
        cJSON *last = outs->child ? outs->child->prev : NULL;  /* cJSON keeps the tail in child->prev */
        if (last && strcmp(cb_json_str(last, "output_type", ""), "stream") == 0 &&
            strcmp(cb_json_str(last, "name", ""), cb_json_str(out, "name", "")) == 0) {
            cJSON *lt = cJSON_GetObjectItemCaseSensitive(last, "text");
            if (cJSON_IsString(lt)) {
                if (o->tail != lt) {  /* first merge into this output */
                    o->tail = lt;
                    o->tail_len = strlen(lt->valuestring);
                    o->tail_cap = o->tail_len + 1;
                }
                tail_append(o, cb_json_str(out, "text", ""));
                cJSON_Delete(out);
                return;
            }
        }
    }
    o->tail = NULL;  /* the next merge starts from the new last output */
    if (display_id) {
        if (o->n_refs == o->cap_refs)
            o->refs = cb_realloc(o->refs, (o->cap_refs = o->cap_refs ? o->cap_refs * 2 : 8) * sizeof *o->refs);
        o->refs[o->n_refs++] = (nb_display_ref){cb_strdup(display_id), cell_index, cJSON_GetArraySize(outs)};
    }
    cJSON_AddItemToArray(outs, out);
}

static void b64(cb_buf *b, const kn_bytes *buf)
{
    size_t n = sodium_base64_ENCODED_LEN(buf->len, sodium_base64_VARIANT_ORIGINAL);
    cb_buf_reserve(b, n);
    sodium_bin2base64(b->data + b->len, n, (const unsigned char *)buf->data, buf->len,
                      sodium_base64_VARIANT_ORIGINAL);
    b->len += n - 1;
}

/* The widget state a comm message carries: data.state; for the comm_open of
 * ipywidgets 6 (Debian 12's; protocol 1), the data itself. */
static const cJSON *widget_state_of(const kn_client_msg *m)
{
    const cJSON *data = cb_json_obj(m->content, "data");
    const cJSON *state = cb_json_obj(data, "state");
    if (!state && strcmp(m->msg_type, "comm_open") == 0 && cJSON_GetObjectItemCaseSensitive(data, "_model_name"))
        state = data;
    return state;
}

/* nbclient's handle_comm_msg(): widget state and binary buffers. */
static void widget_message(nb_outputs *o, const kn_client_msg *m)
{
    const cJSON *data = cb_json_obj(m->content, "data");
    const cJSON *state = widget_state_of(m);
    const char *comm_id = cb_json_str(m->content, "comm_id", NULL);
    if (!o->store_widget_state || !state || !comm_id)
        return;
    if (!o->widget_state)
        o->widget_state = cJSON_CreateObject();
    cJSON *st = cb_json_obj(o->widget_state, comm_id);
    if (!st) {
        st = cJSON_CreateObject();
        cJSON_AddItemToObject(o->widget_state, comm_id, st);
    }
    for (const cJSON *k = state->child; k; k = k->next)
        cb_json_set(st, k->string, nb_json_dup(k));
    const cJSON *paths = cb_json_arr(data, "buffer_paths");
    if (!paths || !paths->child)
        return;
    if (!o->widget_buffers)
        o->widget_buffers = cJSON_CreateObject();
    cJSON *bufs = cb_json_obj(o->widget_buffers, comm_id);
    if (!bufs) {
        bufs = cJSON_CreateObject();
        cJSON_AddItemToObject(o->widget_buffers, comm_id, bufs);
    }
    size_t i = 0;
    for (const cJSON *p = paths->child; p && i < m->n_buffers; p = p->next, i++) {
        cb_autofree char *key = cJSON_PrintUnformatted(p);  /* the path identifies the buffer */
        cJSON *entry = cJSON_CreateObject();
        cb_buf enc = CB_BUF_INIT;
        cb_buf_puts(&enc, "");
        b64(&enc, &m->buffers[i]);
        cJSON *s = cJSON_CreateString("");
        free(s->valuestring);
        s->valuestring = cb_buf_steal(&enc);
        cJSON_AddItemToObject(entry, "data", s);
        cJSON_AddStringToObject(entry, "encoding", "base64");
        cJSON_AddItemToObject(entry, "path", nb_json_dup(p));
        if (cJSON_GetObjectItemCaseSensitive(bufs, key))
            cJSON_ReplaceItemInObjectCaseSensitive(bufs, key, entry);
        else
            cJSON_AddItemToObject(bufs, key, entry);
    }
}

/* ---- nbclient's OutputWidget (nbclient/output_widget.py) ---- */

static cJSON *obj_in(cJSON **holder, const char *key)
{
    if (!*holder)
        *holder = cJSON_CreateObject();
    return cb_json_obj(*holder, key);
}

/* comm_open / comm_msg for an Output model: register it, or move its hook
 * (state.msg_id set: outputs of that request go to the widget; cleared: back
 * to the cell), as nbclient's on_comm_open_jupyter_widget and set_state. */
static void output_widget_comm(nb_outputs *o, const kn_client_msg *m)
{
    const char *comm_id = cb_json_str(m->content, "comm_id", NULL);
    const cJSON *state = widget_state_of(m);
    if (!comm_id || !state)
        return;
    cJSON *w = obj_in(&o->out_widgets, comm_id);
    if (strcmp(m->msg_type, "comm_open") == 0) {
        /* ipywidgets 7+ ("@jupyter-widgets/output", nbclient's registry) and
         * ipywidgets 6 ("jupyter-js-widgets", Debian 12's) */
        const char *module = cb_json_str(state, "_model_module", "");
        if (strcmp(cb_json_str(m->content, "target_name", ""), "jupyter.widget") != 0 ||
            (strcmp(module, "@jupyter-widgets/output") != 0 && strcmp(module, "jupyter-js-widgets") != 0) ||
            strcmp(cb_json_str(state, "_model_name", ""), "OutputModel") != 0)
            return;
        cJSON_DeleteItemFromObjectCaseSensitive(o->out_widgets, comm_id);
        w = cJSON_AddObjectToObject(o->out_widgets, comm_id);
        const cJSON *outs = cb_json_arr(state, "outputs");
        cJSON_AddItemToObject(w, "outputs", outs ? nb_json_dup(outs) : cJSON_CreateArray());
        cJSON_AddBoolToObject(w, "clear", false);
        cJSON_AddStringToObject(w, "msg_id", "");
    }
    if (!w || strcmp(m->msg_type, "comm_msg") != 0)
        return;
    const cJSON *mid = cJSON_GetObjectItemCaseSensitive(state, "msg_id");
    if (!cJSON_IsString(mid))
        return;
    if (mid->valuestring[0]) {
        if (!o->out_hooks)
            o->out_hooks = cJSON_CreateObject();
        cJSON *stack = cb_json_arr(o->out_hooks, mid->valuestring);
        if (!stack) {
            stack = cJSON_CreateArray();
            cJSON_AddItemToObject(o->out_hooks, mid->valuestring, stack);
        }
        cJSON_AddItemToArray(stack, cJSON_CreateString(comm_id));
    } else {
        /* remove_output_hook: the widget's hook is the top of its stack */
        cJSON *stack = cb_json_arr(o->out_hooks, cb_json_str(w, "msg_id", ""));
        int n = cJSON_GetArraySize(stack);
        const cJSON *top = n > 0 ? cJSON_GetArrayItem(stack, n - 1) : NULL;
        if (cJSON_IsString(top) && strcmp(top->valuestring, comm_id) == 0)
            cJSON_DeleteItemFromArray(stack, n - 1);
    }
    cb_json_set(w, "msg_id", cJSON_CreateString(mid->valuestring));
}

/* The Output widget that takes this message's outputs (top of the hook
 * stack of its parent request), or NULL. */
static cJSON *output_hook(nb_outputs *o, const kn_client_msg *m, const char **comm_id)
{
    cJSON *stack = m->parent_id[0] ? cb_json_arr(o->out_hooks, m->parent_id) : NULL;
    int n = cJSON_GetArraySize(stack);
    if (n == 0)
        return NULL;
    *comm_id = cJSON_GetArrayItem(stack, n - 1)->valuestring;
    return cb_json_obj(o->out_widgets, *comm_id);
}

/* sync_state(): the widget's outputs go to the kernel and to the stored
 * widget state. */
static void output_widget_sync(nb_outputs *o, cJSON *w, const char *comm_id, const kn_client_msg *m)
{
    const cJSON *outs = cb_json_arr(w, "outputs");
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "comm_id", comm_id);
    cJSON *data = cJSON_AddObjectToObject(msg, "data");
    cJSON_AddStringToObject(data, "method", "update");
    cJSON *state = cJSON_AddObjectToObject(data, "state");
    cJSON_AddItemToObject(state, "outputs", nb_json_dup(outs));
    cJSON_AddArrayToObject(data, "buffer_paths");
    cJSON_AddItemToObject(msg, "parent", m->parent ? nb_json_dup(m->parent) : cJSON_CreateObject());
    if (!o->to_kernel)
        o->to_kernel = cJSON_CreateArray();
    cJSON_AddItemToArray(o->to_kernel, msg);
    cJSON *st = cb_json_obj(o->widget_state, comm_id);
    if (o->store_widget_state && st)
        cb_json_set(st, "outputs", nb_json_dup(outs));
}

static void output_widget_output(nb_outputs *o, cJSON *w, const char *comm_id, const kn_client_msg *m, cJSON *out)
{
    cJSON *outs = cb_json_arr(w, "outputs");
    if (cb_json_bool(w, "clear", false)) {
        cb_json_set(w, "outputs", outs = cJSON_CreateArray());
        cb_json_set(w, "clear", cJSON_CreateFalse());
    }
    cJSON *last = outs->child ? outs->child->prev : NULL;
    if (last && strcmp(cb_json_str(last, "output_type", ""), "stream") == 0 &&
        strcmp(cb_json_str(out, "output_type", ""), "stream") == 0 &&
        strcmp(cb_json_str(last, "name", ""), cb_json_str(out, "name", "")) == 0) {
        cb_autofree char *text = cb_printf_new("%s%s", cb_json_str(last, "text", ""), cb_json_str(out, "text", ""));
        cb_json_set(last, "text", cJSON_CreateString(text));
        cJSON_Delete(out);
    } else {
        cJSON_AddItemToArray(outs, out);
    }
    output_widget_sync(o, w, comm_id, m);
}

static void output_widget_clear(nb_outputs *o, cJSON *w, const char *comm_id, const kn_client_msg *m)
{
    if (cb_json_bool(m->content, "wait", false)) {
        cb_json_set(w, "clear", cJSON_CreateTrue());
        return;
    }
    cb_json_set(w, "outputs", cJSON_CreateArray());
    output_widget_sync(o, w, comm_id, m);
}

cJSON *nb_outputs_take_to_kernel(nb_outputs *o)
{
    cJSON *t = o->to_kernel;
    o->to_kernel = NULL;
    return t;
}

bool nb_outputs_apply(nb_outputs *o, int cell_index, const kn_client_msg *m)
{
    const char *t = m->msg_type;
    const cJSON *content = m->content;
    const char *display_id = cb_json_str(cb_json_obj(content, "transient"), "display_id", NULL);
    if (display_id && !*display_id)
        display_id = NULL;
    bool changed = false;
    bool displayish = strcmp(t, "execute_result") == 0 || strcmp(t, "display_data") == 0 ||
                      strcmp(t, "update_display_data") == 0;
    if (display_id && displayish)
        changed |= update_display(o, display_id, content);
    const char *hook_comm = NULL;
    cJSON *hook = NULL;
    if (strcmp(t, "clear_output") == 0 && (hook = output_hook(o, m, &hook_comm))) {
        output_widget_clear(o, hook, hook_comm, m);
        return changed;
    }
    if (strcmp(t, "clear_output") == 0) {
        if (cb_json_bool(content, "wait", false)) {
            o->clear_pending = true;
        } else {
            clear_cell(o, cell_index);
            o->clear_pending = false;
            changed = true;
        }
        return changed;
    }
    if (cb_str_has_prefix(t, "comm_")) {
        widget_message(o, m);
        output_widget_comm(o, m);
        return changed;
    }
    if (strcmp(t, "update_display_data") == 0 || strcmp(t, "execute_input") == 0 || strcmp(t, "status") == 0)
        return changed;
    cJSON *out = output_from_msg(t, content);
    if (!out) {
        cb_debug("notebooks", "ignored IOPub message %s", t);
        return changed;
    }
    if ((hook = output_hook(o, m, &hook_comm))) {
        output_widget_output(o, hook, hook_comm, m, out);
        return changed;
    }
    append_output(o, cell_index, out, display_id);
    return true;
}

void nb_outputs_store_widgets(nb_outputs *o)
{
    if (!o->widget_state || !o->widget_state->child)
        return;
    cJSON *w = cJSON_CreateObject();
    cJSON *spec = cJSON_AddObjectToObject(w, "application/vnd.jupyter.widget-state+json");
    cJSON *states = cJSON_AddObjectToObject(spec, "state");
    cJSON_AddNumberToObject(spec, "version_major", 2);
    cJSON_AddNumberToObject(spec, "version_minor", 0);
    for (const cJSON *st = o->widget_state->child; st; st = st->next) {
        if (!cJSON_GetObjectItemCaseSensitive(st, "_model_name"))
            continue;
        cJSON *e = cJSON_CreateObject();
        static const char *const keys[][2] = {{"model_name", "_model_name"},
                                              {"model_module", "_model_module"},
                                              {"model_module_version", "_model_module_version"}};
        for (size_t i = 0; i < CB_ARRAY_LEN(keys); i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(st, keys[i][1]);
            cJSON_AddItemToObject(e, keys[i][0], v ? nb_json_dup(v) : cJSON_CreateNull());
        }
        cJSON_AddItemToObject(e, "state", nb_json_dup(st));
        const cJSON *bufs = cb_json_obj(o->widget_buffers, st->string);
        if (bufs && bufs->child) {
            cJSON *list = cJSON_AddArrayToObject(e, "buffers");
            for (const cJSON *b = bufs->child; b; b = b->next)
                cJSON_AddItemToArray(list, nb_json_dup(b));
        }
        cJSON_AddItemToObject(states, st->string, e);
    }
    cb_json_set(o->nb->metadata, "widgets", w);
}

/* ============================================================== execution */

/* What the emulated Output widgets tell the kernel (their outputs). */
static void send_to_kernel(kn_client *c, nb_outputs *o)
{
    cJSON *msgs = nb_outputs_take_to_kernel(o);
    const cJSON *msg;
    cJSON_ArrayForEach(msg, msgs) {
        cJSON *content = cJSON_CreateObject();
        cJSON_AddStringToObject(content, "comm_id", cb_json_str(msg, "comm_id", ""));
        cJSON_AddItemToObject(content, "data", nb_json_dup(cb_json_obj(msg, "data")));
        cb_autofree char *text = cb_json_print(content);
        cJSON_Delete(content);
        kn_client_send_with_parent(c, KN_CH_SHELL, "comm_msg", text, cb_json_obj(msg, "parent"));
    }
    cJSON_Delete(msgs);
}

void nb_exec_result_clear(nb_exec_result *r)
{
    free(r->reason);
    memset(r, 0, sizeof *r);
    r->cell = -1;
}

static void set_reason(nb_exec_result *r, nb_status st, int cell, const cJSON *c, const char *fmt, ...)
    CB_PRINTF(5, 6);
static void set_reason(nb_exec_result *r, nb_status st, int cell, const cJSON *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cb_autofree char *msg = cb_vprintf_new(fmt, ap);
    va_end(ap);
    free(r->reason);
    char label[128];
    r->reason = c ? cb_printf_new("%s: %s", nb_cell_label(c, cell, label, sizeof label), msg) : cb_strdup(msg);
    r->status = st;
    r->cell = cell;
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return false;
    return true;
}

/* nbclient's timestamp(): the header date, as UTC with microseconds and Z. */
static cJSON *timestamp(const char *date)
{
    long long us = date && *date ? cb_iso_date_parse(date) : -1;
    char buf[CB_ISO_DATE_LEN];
    cb_iso_date(buf, us >= 0 ? us : cb_real_us());
    return cJSON_CreateString(buf);
}

static void add_error_output(nb_outputs *outs, int cell_index, const char *ename, const char *evalue)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "output_type", "error");
    cJSON_AddStringToObject(e, "ename", ename);
    cJSON_AddStringToObject(e, "evalue", evalue);
    cJSON *tb = cJSON_AddArrayToObject(e, "traceback");
    cb_autofree char *line = cb_printf_new("%s: %s", ename, evalue);
    cJSON_AddItemToArray(tb, cJSON_CreateString(line));
    outs->clear_pending = false;
    outs->tail = NULL;
    cJSON_AddItemToArray(cell_outputs(outs, cell_index), e);
}

typedef struct run_state {
    const nb_exec_opts *o;
    kn_client *k;
    nb_outputs outs;
    nb_exec_result *r;
    int count;           /* code cells executed */
    double last_save;    /* cb_mono_s() of the last progress save (or the first cell) */
    double autosave_every;
    double save_interval;
    bool unsaved;        /* cells started or finished since last_save */
} run_state;

/* ------------------------------------------------------- saving progress */

static void save_progress(run_state *rs)
{
    double t = cb_mono_s();
    rs->o->hooks.save(rs->o->hooks.ctx, rs->outs.nb);
    double now = cb_mono_s();
    rs->last_save = now;
    rs->unsaved = false;
    cb_debug("notebooks", "progress saved in %.3f s", now - t);
}

/* Seconds until the next save is due while a cell runs (<= 0: now), or a
 * large number when none is: progress not saved yet (the run's start,
 * cells done before this one) save_interval after the last save, so that
 * a long cell never keeps the cells before it unsaved; else every
 * autosave_every (0: never) for the running cell's own output. */
static double autosave_due_in(const run_state *rs, double now)
{
    if (!rs->o->hooks.save)
        return 1e9;
    if (rs->unsaved)
        return rs->last_save + rs->save_interval - now;
    if (rs->autosave_every <= 0)
        return 1e9;
    return rs->last_save + rs->autosave_every - now;
}

static void autosave_if_due(run_state *rs)
{
    if (autosave_due_in(rs, cb_mono_s()) > 0)
        return;
    bool timer = !rs->unsaved;
    double t = cb_mono_s();
    save_progress(rs);
    double took = cb_mono_s() - t;
    if (timer && took > rs->autosave_every / 4) {
        rs->autosave_every *= 2;
        cb_warn("notebooks", "saving the notebook took %.2f s, over 25%% of the autosave interval: now every %g s",
                took, rs->autosave_every);
    }
}

/* Cells that will run lose their old outputs before the first one starts,
 * so that a notebook saved mid-run never shows a stale output next to new
 * ones. (Each of these cells is cleared when it starts anyway: the final
 * notebook is the same.) */
static void clear_cells_to_run(nb_notebook *nb);

/* Runs one code cell; returns false when the run must stop. */
static bool run_cell(run_state *rs, int idx, cJSON *cell)
{
    const nb_exec_opts *o = rs->o;
    cJSON *md = nb_cell_metadata(cell);
    cJSON *timing = NULL;
    if (o->record_timing) {
        timing = cJSON_CreateObject();
        cb_json_set(md, "execution", timing);
    }
    bool allows_errors = o->allow_errors || nb_cell_has_tag(cell, "raises-exception");
    char msg_id[KN_MSG_ID_LEN];
    /* kn_client_execute()'s request, printed so that a NUL in the source
     * reaches the kernel as \u0000 (the kernel says what it makes of it) */
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "code", nb_cell_source(cell));
    cJSON_AddBoolToObject(req, "silent", false);
    cJSON_AddBoolToObject(req, "store_history", true);
    cJSON_AddObjectToObject(req, "user_expressions");
    cJSON_AddBoolToObject(req, "allow_stdin", false);
    cJSON_AddBoolToObject(req, "stop_on_error", !allows_errors);
    char *req_text = cb_json_print(req);
    cJSON_Delete(req);
    int sent = kn_client_send(rs->k, KN_CH_SHELL, "execute_request", req_text, msg_id);
    free(req_text);
    if (sent < 0) {
        set_reason(rs->r, NB_DEAD, idx, cell, "cannot send the execute_request to the kernel");
        return false;
    }
    rs->count++;
    nb_outputs_begin_cell(&rs->outs, idx);

    double now = cb_mono_s();
    double cell_deadline = o->timeout > 0 ? now + o->timeout : 0;
    double idle_deadline = 0;   /* set when the reply is in */
    double reply_deadline = 0;  /* set when idle came first */
    double interrupt_deadline = 0;
    double iopub_timeout = o->iopub_timeout > 0 ? o->iopub_timeout : 4;
    bool got_reply = false, got_idle = false, timed_out = false;
    cJSON *reply = NULL;
    bool ok = true;
    while (!(got_reply && got_idle)) {
        autosave_if_due(rs);
        now = cb_mono_s();
        double until = 3600;  /* no deadline: wake up now and then anyway */
        if (got_reply)
            until = idle_deadline - now;
        else if (timed_out)
            until = interrupt_deadline - now;
        else if (cell_deadline > 0)
            until = cell_deadline - now;
        if (got_idle && !got_reply && reply_deadline - now < until)
            until = reply_deadline - now;
        double save_in = autosave_due_in(rs, now);
        if (save_in < until)
            until = save_in > 0.001 ? save_in : 0.001;  /* wake up for the autosave, then look at the deadlines */
        kn_client_msg *m = NULL;
        kn_poll_status st = until > 0 ? kn_client_poll(rs->k, until, &m) : KN_POLL_TIMEOUT;
        if (st == KN_POLL_MSG) {
            bool mine = strcmp(m->parent_id, msg_id) == 0;
            if (m->channel == KN_CH_IOPUB && mine) {
                const char *t = m->msg_type;
                if (o->hooks.message)
                    o->hooks.message(o->hooks.ctx, idx, m);
                cJSON *ec = cJSON_GetObjectItemCaseSensitive(m->content, "execution_count");
                if (ec && (cJSON_IsNumber(ec) || cJSON_IsNull(ec)))
                    cb_json_set(cell, "execution_count", nb_json_dup(ec));
                if (strcmp(t, "status") == 0) {
                    const char *state = cb_json_str(m->content, "execution_state", "");
                    if (timing && strcmp(state, "busy") == 0)
                        cb_json_set(timing, "iopub.status.busy", timestamp(m->date));
                    if (strcmp(state, "idle") == 0) {
                        if (timing)
                            cb_json_set(timing, "iopub.status.idle", timestamp(m->date));
                        got_idle = true;
                        if (!got_reply)
                            reply_deadline = cb_mono_s() + iopub_timeout;
                    }
                } else if (strcmp(t, "execute_input") == 0) {
                    if (timing)
                        cb_json_set(timing, "iopub.execute_input", timestamp(m->date));
                } else {
                    nb_outputs_apply(&rs->outs, idx, m);
                    send_to_kernel(rs->k, &rs->outs);
                }
            } else if (m->channel == KN_CH_SHELL && mine && !got_reply) {
                got_reply = true;
                reply = m->content;
                m->content = NULL;
                idle_deadline = cb_mono_s() + iopub_timeout;
                if (timing)
                    cb_json_set(timing, "shell.execute_reply", timestamp(m->date));
            }
            kn_client_msg_free(m);
            continue;
        }
        if (st == KN_POLL_TIMEOUT) {
            now = cb_mono_s();
            if (got_reply && now < idle_deadline)
                continue;  /* woken up for an autosave */
            if (got_reply) {
                cb_warn("notebooks", "cell %d: no IOPub idle %g s after the execute_reply; going on", idx + 1,
                        iopub_timeout);
                break;
            }
            if (got_idle && now >= reply_deadline) {
                /* idle for the request and no reply: the kernel failed to
                 * handle it (ipykernel logs an exception in its handler for
                 * a source holding a NUL) and no reply will ever come */
                cb_autofree char *ev = cb_printf_new("the kernel went idle without replying to the execute_request "
                                                     "(it failed to handle the cell; see the kernel's log)");
                add_error_output(&rs->outs, idx, "NoReplyError", ev);
                reply = cJSON_CreateObject();
                cJSON_AddStringToObject(reply, "status", "error");
                cJSON_AddStringToObject(reply, "ename", "NoReplyError");
                cJSON_AddStringToObject(reply, "evalue", ev);
                break;
            }
            if (!timed_out && cell_deadline > 0 && cb_mono_s() >= cell_deadline) {
                timed_out = true;
                cb_info("notebooks", "cell %d: timeout after %g s: interrupting the kernel", idx + 1, o->timeout);
                kn_client_interrupt(rs->k);
                interrupt_deadline = cb_mono_s() + (o->interrupt_grace > 0 ? o->interrupt_grace : 10);
                continue;
            }
            if (timed_out && now < interrupt_deadline)
                continue;
            if (timed_out) {
                /* the interrupt did not help: the kernel is stuck */
                cb_autofree char *ev = cb_printf_new(
                    "Cell execution timed out after %g s and the kernel did not answer the interrupt", o->timeout);
                add_error_output(&rs->outs, idx, "CellTimeoutError", ev);
                set_reason(rs->r, NB_TIMEOUT, idx, cell, "timed out after %g s (the kernel ignored the interrupt and was stopped)",
                           o->timeout);
                kn_client_kill(rs->k);
                ok = false;
                break;
            }
            continue;  /* no deadline: keep waiting */
        }
        if (st == KN_POLL_DIED || st == KN_POLL_HB_LOST) {
            cb_autofree char *why = st == KN_POLL_DIED
                                        ? cb_strdup(kn_client_exit_status(rs->k))
                                        : cb_printf_new("no heartbeat for %g s", o->hb_timeout);
            /* a kernel ended by the timeout's interrupt (one that exits on
             * SIGINT): a timeout first, then how the kernel ended */
            cb_autofree char *reason = timed_out ? cb_printf_new("timed out after %g s; the kernel died when it "
                                                                 "was interrupted (%s)", o->timeout, why)
                                                 : cb_printf_new("the kernel died (%s)", why);
            cb_autofree char *ev = timed_out ? cb_printf_new("Cell execution %s", reason)
                                             : cb_printf_new("Kernel died while executing this cell (%s)", why);
            add_error_output(&rs->outs, idx, timed_out ? "CellTimeoutError" : "DeadKernelError", ev);
            set_reason(rs->r, timed_out ? NB_TIMEOUT : NB_DEAD, idx, cell, "%s", reason);
            kn_client_kill(rs->k);
            ok = false;
            break;
        }
        if (st == KN_POLL_CANCELLED) {
            /* stop the cell too, so that the shutdown request is served at once */
            kn_client_interrupt(rs->k);
            add_error_output(&rs->outs, idx, "KeyboardInterrupt", "cellbox run was interrupted");
            set_reason(rs->r, NB_CANCELLED, idx, cell, "interrupted");
            ok = false;
            break;
        }
    }
    if (ok && timed_out) {
        cb_autofree char *ev = cb_printf_new("Cell execution timed out after %g s", o->timeout);
        add_error_output(&rs->outs, idx, "CellTimeoutError", ev);
        set_reason(rs->r, NB_TIMEOUT, idx, cell, "timed out after %g s (the kernel was interrupted)", o->timeout);
        ok = false;
    }
    if (ok) {
        cb_json_set(cell, "execution_count", cJSON_CreateNumber(rs->count));
        const char *status = cb_json_str(reply, "status", "ok");
        bool allowed_name = false;
        for (const char *const *n = o->allow_error_names; n && *n && !allowed_name; n++)
            allowed_name = strcmp(status, "error") == 0 && strcmp(cb_json_str(reply, "ename", ""), *n) == 0;
        if (strcmp(status, "ok") != 0 && !allows_errors && !allowed_name) {
            const char *ename = cb_json_str(reply, "ename", status);
            const char *evalue = cb_json_str(reply, "evalue", "");
            if (strcmp(status, "aborted") == 0)
                set_reason(rs->r, NB_CELL_ERROR, idx, cell, "execution aborted by the kernel");
            else
                set_reason(rs->r, NB_CELL_ERROR, idx, cell, "%s%s%s", ename, *evalue ? ": " : "", evalue);
            ok = false;
        }
    }
    cJSON_Delete(reply);
    return ok;
}

static bool will_run(const cJSON *cell)
{
    return strcmp(nb_cell_type(cell), "code") == 0 && !blank(nb_cell_source(cell)) &&
           !nb_cell_has_tag(cell, "skip-execution");
}

static void clear_cells_to_run(nb_notebook *nb)
{
    for (cJSON *cell = nb->cells->child; cell; cell = cell->next) {
        if (!will_run(cell))
            continue;
        cb_json_set(cell, "outputs", cJSON_CreateArray());
        cb_json_set(cell, "execution_count", cJSON_CreateNull());
    }
}

static void fill_kernel_metadata(nb_notebook *nb, const kn_kernelspec *spec, const cJSON *info)
{
    const cJSON *li = cb_json_obj(info, "language_info");
    if (li)
        cb_json_set(nb->metadata, "language_info", nb_json_dup(li));
    const char *display = spec->display_name ? spec->display_name : spec->name;
    const char *lang = spec->language && *spec->language ? spec->language : cb_json_str(li, "name", "");
    /* The notebook's own kernelspec when that is the kernel that ran, as
     * nbclient and papermill leave it (its display name is the user's);
     * only the fields it lacks are added. Another kernel (-k, or the
     * fallback when the notebook's is not installed) is recorded instead:
     * the outputs are that kernel's. */
    cJSON *had = cJSON_GetObjectItemCaseSensitive(nb->metadata, "kernelspec");
    if (cJSON_IsObject(had) && strcmp(cb_json_str(had, "name", ""), spec->name) == 0) {
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(had, "display_name")))
            cb_json_set(had, "display_name", cJSON_CreateString(display));
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(had, "language")) && *lang)
            cb_json_set(had, "language", cJSON_CreateString(lang));
        return;
    }
    cJSON *ks = cJSON_CreateObject();
    cJSON_AddStringToObject(ks, "display_name", display);
    cJSON_AddStringToObject(ks, "language", lang);
    cJSON_AddStringToObject(ks, "name", spec->name);
    cb_json_set(nb->metadata, "kernelspec", ks);
}

nb_status nb_execute(nb_notebook *nb, const nb_exec_opts *o, nb_exec_result *r)
{
    nb_exec_result_clear(r);
    run_state rs = {.o = o, .r = r};
    nb_outputs_init(&rs.outs, nb);
    rs.outs.store_widget_state = o->store_widget_state;
    if (o->papermill)
        nb_pm_notebook_start(nb);

    double t0 = cb_mono_s();
    kn_client_opts ko = KN_CLIENT_OPTS_INIT;
    ko.cwd = o->cwd;
    ko.startup_timeout = o->startup_timeout;
    ko.hb_timeout = o->hb_timeout;
    ko.parse = nb_json_parse_msg;
    ko.cancel_fd = o->cancel_fd;
    ko.stdout_fd = o->kernel_stdout_fd;
    ko.stderr_fd = o->kernel_stderr_fd;
    cJSON *info = NULL;
    char *err = NULL;
    rs.k = kn_client_start(o->spec, &ko, &info, &err);
    r->startup_s = cb_mono_s() - t0;
    if (!rs.k) {
        set_reason(r, strstr(err, "cancelled") ? NB_CANCELLED : NB_START_FAILED, -1, NULL, "%s", err);
        free(err);
        if (o->papermill)
            nb_pm_notebook_complete(nb);
        nb_outputs_clear(&rs.outs);
        return r->status;
    }
    fill_kernel_metadata(nb, o->spec, info);
    cJSON_Delete(info);
    if (o->hooks.kernel_ready)
        o->hooks.kernel_ready(o->hooks.ctx);

    double t1 = cb_mono_s();
    int n = nb_cell_count(nb), stopped_at = -1;
    rs.last_save = t1;
    rs.autosave_every = o->autosave_every;
    rs.save_interval = o->save_interval > 0 ? o->save_interval : 1;
    rs.unsaved = true;  /* a run still going after save_interval is written then */
    if (o->hooks.save && !o->papermill)
        clear_cells_to_run(nb);  /* papermill's notebook_start cleared every cell already */
    cJSON *cell = nb->cells->child;
    for (int i = 0; i < n && cell; i++, cell = cell->next) {
        if (o->papermill)
            nb_pm_cell_start(cell);
        if (o->hooks.cell_start)
            o->hooks.cell_start(o->hooks.ctx, i, cell);
        bool go_on = true;
        if (will_run(cell))
            go_on = run_cell(&rs, i, cell);
        if (o->papermill) {
            if (!go_on)
                nb_pm_cell_exception(nb, cell);
            nb_pm_cell_complete(cell);
        }
        if (o->hooks.cell_done)
            o->hooks.cell_done(o->hooks.ctx, i, cell);
        if (!go_on) {
            stopped_at = i;
            break;  /* the caller writes the notebook now */
        }
        /* a fast notebook is written once, at the end; a slow one about
         * every save_interval, and never later than save_interval after a
         * cell ended (a long cell after it saves it: autosave_due_in) */
        rs.unsaved = true;
        if (o->hooks.save && i + 1 < n && cb_mono_s() - rs.last_save >= rs.save_interval)
            save_progress(&rs);
    }
    r->cells_s = cb_mono_s() - t1;
    r->code_cells_run = rs.count;
    /* cells that did not run in this execution must not show old outputs */
    if (stopped_at >= 0 && !o->papermill) {
        for (cJSON *c = nb_cell_at(nb, stopped_at + 1); c; c = c->next) {
            if (strcmp(nb_cell_type(c), "code") != 0)
                continue;
            cb_json_set(c, "outputs", cJSON_CreateArray());
            cb_json_set(c, "execution_count", cJSON_CreateNull());
        }
    }
    nb_outputs_store_widgets(&rs.outs);
    double t2 = cb_mono_s();
    double grace = o->shutdown_grace > 0 ? o->shutdown_grace : 5;
    if (r->status == NB_CANCELLED && grace > 2)
        grace = 2;  /* the user is waiting */
    kn_client_shutdown(rs.k, grace);
    kn_client_free(rs.k);
    r->shutdown_s = cb_mono_s() - t2;
    if (o->papermill) {
        nb_pm_notebook_complete(nb);
        if (r->status == NB_CELL_ERROR || r->status == NB_TIMEOUT || r->status == NB_DEAD)
            nb_pm_insert_error_cells(nb, r->cell);
    }
    nb_outputs_clear(&rs.outs);
    return r->status;
}
