/* Unit tests of nb_outputs (notebooks/nb_exec.h): IOPub messages turned into
 * nbformat outputs the way nbclient does it (plus stream merging), fed with
 * hand-made messages, no kernel. */
#include "config.h"

#include <string.h>

#include "base/json.h"
#include "base/util.h"
#include "notebooks/nb_exec.h"
#include "notebooks/nb_json.h"
#include "tests/tap.h"

static kn_client_msg *msg(const char *type, const char *content)
{
    kn_client_msg *m = cb_calloc(1, sizeof *m);
    m->channel = KN_CH_IOPUB;
    m->header = cJSON_CreateObject();
    cJSON_AddStringToObject(m->header, "msg_type", type);
    m->msg_type = cb_json_str(m->header, "msg_type", "");
    m->content = nb_json_parse(content, strlen(content), 0, NULL);
    m->parent = cJSON_CreateObject();
    m->metadata = cJSON_CreateObject();
    m->parent_id = "";
    m->date = "";
    return m;
}

static void apply(nb_outputs *o, int cell, const char *type, const char *content)
{
    kn_client_msg *m = msg(type, content);
    nb_outputs_apply(o, cell, m);
    kn_client_msg_free(m);
}

static char *outs(nb_notebook *nb, int cell)
{
    return cJSON_PrintUnformatted(cb_json_arr(nb_cell_at(nb, cell), "outputs"));
}

#define is_outs(nb, cell, want, ...)                                                                                   \
    do {                                                                                                               \
        char *got_ = outs(nb, cell);                                                                                   \
        is_str(got_, want, __VA_ARGS__);                                                                               \
        free(got_);                                                                                                    \
    } while (0)

static nb_notebook *two_cells(void)
{
    const char *doc = "{\"cells\": [{\"cell_type\": \"code\", \"execution_count\": null, \"id\": \"a\", \"metadata\": {},"
                      " \"outputs\": [], \"source\": \"\"}, {\"cell_type\": \"code\", \"execution_count\": null, \"id\": \"b\","
                      " \"metadata\": {}, \"outputs\": [], \"source\": \"\"}], \"metadata\": {}, \"nbformat\": 4,"
                      " \"nbformat_minor\": 5}";
    char *err = NULL;
    nb_notebook *nb = nb_notebook_parse(doc, strlen(doc), "t", &err);
    free(err);
    return nb;
}

static void test_streams(void)
{
    nb_notebook *nb = two_cells();
    nb_outputs o;
    nb_outputs_init(&o, nb);
    apply(&o, 0, "stream", "{\"name\": \"stdout\", \"text\": \"a\"}");
    apply(&o, 0, "stream", "{\"name\": \"stdout\", \"text\": \"b\\n\"}");
    apply(&o, 0, "stream", "{\"name\": \"stderr\", \"text\": \"e\\n\"}");
    apply(&o, 0, "stream", "{\"name\": \"stdout\", \"text\": \"c\"}");
    is_outs(nb, 0,
            "[{\"output_type\":\"stream\",\"name\":\"stdout\",\"text\":\"ab\\n\"},"
            "{\"output_type\":\"stream\",\"name\":\"stderr\",\"text\":\"e\\n\"},"
            "{\"output_type\":\"stream\",\"name\":\"stdout\",\"text\":\"c\"}]",
            "consecutive streams of one name merge, others do not");
    apply(&o, 1, "execute_result", "{\"data\": {\"text/plain\": \"1.0\"}, \"metadata\": {}, \"execution_count\": 3,"
                                   " \"transient\": {}}");
    apply(&o, 1, "error", "{\"ename\": \"E\", \"evalue\": \"v\", \"traceback\": [\"t\"]}");
    apply(&o, 1, "execute_input", "{\"code\": \"x\", \"execution_count\": 3}");
    apply(&o, 1, "status", "{\"execution_state\": \"idle\"}");
    apply(&o, 1, "debug_event", "{}");
    is_outs(nb, 1,
            "[{\"output_type\":\"execute_result\",\"data\":{\"text/plain\":\"1.0\"},\"metadata\":{},\"execution_count\":3},"
            "{\"output_type\":\"error\",\"ename\":\"E\",\"evalue\":\"v\",\"traceback\":[\"t\"]}]",
            "execute_result and error; status, execute_input and unknown types make no output");
    nb_outputs_clear(&o);
    nb_notebook_free(nb);
}

static void test_display_ids(void)
{
    nb_notebook *nb = two_cells();
    nb_outputs o;
    nb_outputs_init(&o, nb);
    apply(&o, 0, "display_data", "{\"data\": {\"text/plain\": \"v1\"}, \"metadata\": {}, \"transient\": {\"display_id\": \"d\"}}");
    apply(&o, 0, "stream", "{\"name\": \"stdout\", \"text\": \"x\"}");
    apply(&o, 1, "display_data", "{\"data\": {\"text/plain\": \"v2\"}, \"metadata\": {\"m\": 1}, \"transient\": {\"display_id\": \"d\"}}");
    is_outs(nb, 0, "[{\"output_type\":\"display_data\",\"data\":{\"text/plain\":\"v2\"},\"metadata\":{\"m\":1}},"
                   "{\"output_type\":\"stream\",\"name\":\"stdout\",\"text\":\"x\"}]",
            "a new display with the same id updates earlier outputs in other cells");
    apply(&o, 1, "update_display_data", "{\"data\": {\"text/plain\": \"v3\"}, \"metadata\": {}, \"transient\": {\"display_id\": \"d\"}}");
    is_outs(nb, 1, "[{\"output_type\":\"display_data\",\"data\":{\"text/plain\":\"v3\"},\"metadata\":{}}]",
            "update_display_data changes every output of the id and adds none");
    is_outs(nb, 0, "[{\"output_type\":\"display_data\",\"data\":{\"text/plain\":\"v3\"},\"metadata\":{}},"
                   "{\"output_type\":\"stream\",\"name\":\"stdout\",\"text\":\"x\"}]",
            "... in every cell");
    apply(&o, 1, "update_display_data", "{\"data\": {\"text/plain\": \"zz\"}, \"metadata\": {}, \"transient\": {\"display_id\": \"unknown\"}}");
    is_outs(nb, 1, "[{\"output_type\":\"display_data\",\"data\":{\"text/plain\":\"v3\"},\"metadata\":{}}]",
            "an update for an unknown id is ignored");
    /* clear_output forgets the cell's display ids */
    apply(&o, 0, "clear_output", "{\"wait\": false}");
    is_outs(nb, 0, "[]", "clear_output empties the cell at once");
    apply(&o, 1, "update_display_data", "{\"data\": {\"text/plain\": \"v4\"}, \"metadata\": {}, \"transient\": {\"display_id\": \"d\"}}");
    is_outs(nb, 0, "[]", "a cleared cell is not updated any more");
    is_outs(nb, 1, "[{\"output_type\":\"display_data\",\"data\":{\"text/plain\":\"v4\"},\"metadata\":{}}]",
            "the other cell still is");
    nb_outputs_clear(&o);
    nb_notebook_free(nb);
}

static void test_clear_wait(void)
{
    nb_notebook *nb = two_cells();
    nb_outputs o;
    nb_outputs_init(&o, nb);
    apply(&o, 0, "stream", "{\"name\": \"stdout\", \"text\": \"old\"}");
    apply(&o, 0, "clear_output", "{\"wait\": true}");
    is_outs(nb, 0, "[{\"output_type\":\"stream\",\"name\":\"stdout\",\"text\":\"old\"}]", "clear_output(wait) waits");
    apply(&o, 0, "stream", "{\"name\": \"stdout\", \"text\": \"new\"}");
    is_outs(nb, 0, "[{\"output_type\":\"stream\",\"name\":\"stdout\",\"text\":\"new\"}]",
            "... and clears when the next output arrives");
    nb_outputs_clear(&o);
    nb_notebook_free(nb);
}

static void test_widgets(void)
{
    nb_notebook *nb = two_cells();
    nb_outputs o;
    nb_outputs_init(&o, nb);
    apply(&o, 0, "comm_open", "{\"comm_id\": \"w\", \"target_name\": \"jupyter.widget\", \"data\": {\"state\":"
                              " {\"_model_name\": \"M\", \"_model_module\": \"mod\", \"_model_module_version\": \"1.0\","
                              " \"value\": 1}, \"buffer_paths\": []}}");
    kn_client_msg *m = msg("comm_msg", "{\"comm_id\": \"w\", \"data\": {\"method\": \"update\", \"state\": {\"value\": 2,"
                                       " \"b\": null}, \"buffer_paths\": [[\"b\"]]}}");
    m->n_buffers = 1;
    m->buffers = cb_malloc(sizeof *m->buffers);
    m->buffers[0].data = cb_strdup("hi!");
    m->buffers[0].len = 3;
    nb_outputs_apply(&o, 0, m);
    kn_client_msg_free(m);
    apply(&o, 0, "comm_open", "{\"comm_id\": \"nostate\", \"target_name\": \"x\", \"data\": {}}");
    apply(&o, 0, "comm_msg", "{\"comm_id\": \"other\", \"data\": {\"state\": {\"x\": 1}}}");
    nb_outputs_store_widgets(&o);
    char *w = cJSON_PrintUnformatted(cb_json_obj(nb->metadata, "widgets"));
    is_str(w,
           "{\"application/vnd.jupyter.widget-state+json\":{\"state\":{\"w\":{\"model_name\":\"M\",\"model_module\":\"mod\","
           "\"model_module_version\":\"1.0\",\"state\":{\"_model_name\":\"M\",\"_model_module\":\"mod\","
           "\"_model_module_version\":\"1.0\",\"value\":2,\"b\":null},\"buffers\":[{\"data\":\"aGkh\",\"encoding\":\"base64\","
           "\"path\":[\"b\"]}]}},\"version_major\":2,\"version_minor\":0}}",
           "widget state (merged updates, base64 buffers, only models with _model_name) in metadata.widgets");
    free(w);
    nb_outputs_clear(&o);
    nb_notebook_free(nb);
}

/* An output of request "req-1" (the parent_id a kernel would give it). */
static void apply_from(nb_outputs *o, const char *parent, const char *type, const char *content)
{
    kn_client_msg *m = msg(type, content);
    m->parent_id = parent;
    cJSON_AddStringToObject(m->parent, "msg_id", parent);
    nb_outputs_apply(o, 0, m);
    kn_client_msg_free(m);
}

static void test_output_widget(void)
{
    nb_notebook *nb = two_cells();
    nb_outputs o;
    nb_outputs_init(&o, nb);
    /* ipywidgets 6 (Debian 12): the comm_open's data is the state itself */
    apply_from(&o, "req-1", "comm_open", "{\"comm_id\": \"w1\", \"target_name\": \"jupyter.widget\", \"data\": "
               "{\"_model_name\": \"OutputModel\", \"_model_module\": \"jupyter-js-widgets\", \"msg_id\": \"\"}}");
    ok(cb_json_obj(o.widget_state, "w1") != NULL, "ipywidgets 6's comm_open: its state is stored");
    apply_from(&o, "req-1", "comm_msg", "{\"comm_id\": \"w1\", \"data\": {\"method\": \"update\", "
               "\"state\": {\"msg_id\": \"req-1\"}}}");
    apply_from(&o, "req-1", "stream", "{\"name\": \"stdout\", \"text\": \"a\\n\"}");
    apply_from(&o, "req-1", "stream", "{\"name\": \"stdout\", \"text\": \"b\\n\"}");
    apply_from(&o, "req-2", "stream", "{\"name\": \"stdout\", \"text\": \"other request\\n\"}");
    is_outs(nb, 0, "[{\"output_type\":\"stream\",\"name\":\"stdout\",\"text\":\"other request\\n\"}]",
            "while msg_id is a request's, its outputs go to the widget, not the cell");
    cb_autofree char *state = cJSON_PrintUnformatted(cb_json_arr(cb_json_obj(o.widget_state, "w1"), "outputs"));
    is_str(state, "[{\"output_type\":\"stream\",\"name\":\"stdout\",\"text\":\"a\\nb\\n\"}]",
           "the widget's stored outputs, streams merged");
    cJSON *sent = nb_outputs_take_to_kernel(&o);
    cJSON *last = sent ? cJSON_GetArrayItem(sent, cJSON_GetArraySize(sent) - 1) : NULL;
    ok(cJSON_GetArraySize(sent) == 2 && strcmp(cb_json_str(last, "comm_id", ""), "w1") == 0 &&
       strcmp(cb_json_str(cb_json_obj(last, "data"), "method", ""), "update") == 0 &&
       strcmp(cb_json_str(cb_json_obj(last, "parent"), "msg_id", ""), "req-1") == 0,
       "each change is sent back to the kernel as an update, with the output's parent");
    cJSON_Delete(sent);
    ok(nb_outputs_take_to_kernel(&o) == NULL, "and taken once");
    apply_from(&o, "req-1", "clear_output", "{\"wait\": true}");
    apply_from(&o, "req-1", "display_data", "{\"data\": {\"text/plain\": \"x\"}, \"metadata\": {}}");
    cb_autofree char *state2 = cJSON_PrintUnformatted(cb_json_arr(cb_json_obj(o.widget_state, "w1"), "outputs"));
    is_str(state2, "[{\"output_type\":\"display_data\",\"data\":{\"text/plain\":\"x\"},\"metadata\":{}}]",
           "clear_output(wait) empties the widget at its next output");
    apply_from(&o, "req-1", "comm_msg", "{\"comm_id\": \"w1\", \"data\": {\"method\": \"update\", "
               "\"state\": {\"msg_id\": \"\"}}}");
    apply_from(&o, "req-1", "stream", "{\"name\": \"stdout\", \"text\": \"back\\n\"}");
    is_outs(nb, 0, "[{\"output_type\":\"stream\",\"name\":\"stdout\",\"text\":\"other request\\nback\\n\"}]",
            "msg_id cleared: outputs go to the cell again");
    cJSON_Delete(nb_outputs_take_to_kernel(&o));
    nb_outputs_clear(&o);
    nb_notebook_free(nb);
}

int main(void)
{
    test_output_widget();
    test_streams();
    test_display_ids();
    test_clear_wait();
    test_widgets();
    return tap_done();
}
