/* The kernel core with a mock interpreter: the protocol rules enforced in
 * one place (busy/idle with the parent header around every request,
 * execute_input, the execution counter, aborting queued executes after an
 * error, error replies for unknown or malformed requests, shutdown).
 * kn_kernel_run() runs on the main thread; the test client runs on a second
 * thread and talks to it through real ZeroMQ sockets. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "base/json.h"
#include "base/util.h"
#include "kernel/kernel.h"
#include "kernel/session.h"
#include "tests/tap.h"

/* ------------------------------------------------------------ mock interpreter */

static const kn_host *g_host;
static int executed;

static cJSON *mock_info(void *self)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "implementation", "mock");
    cJSON *li = cJSON_AddObjectToObject(c, "language_info");
    cJSON_AddStringToObject(li, "name", "mock");
    return c;
}

static int mock_start(void *self, const kn_host *host)
{
    g_host = host;
    return 0;
}

static cJSON *mock_execute(void *self, const kn_exec_req *req)
{
    executed++;
    char buf[256];
    snprintf(buf, sizeof buf, "{\"name\":\"stdout\",\"text\":\"ran %d\"}", req->execution_count);
    g_host->publish(g_host->ctx, "stream", buf, 0, NULL, 0);
    cJSON *c = cJSON_CreateObject();
    if (strcmp(req->code, "fail") == 0) {
        cJSON_AddStringToObject(c, "status", "error");
        cJSON_AddStringToObject(c, "ename", "MockError");
        cJSON_AddStringToObject(c, "evalue", "failed");
        cJSON_AddItemToObject(c, "traceback", cJSON_CreateArray());
    } else {
        cJSON_AddStringToObject(c, "status", "ok");
    }
    return c;
}

static cJSON *mock_simple(void *self, const cJSON *content)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "status", "ok");
    return c;
}

static void mock_comm(void *self, const char *t, const kn_msg *m) {}

/* ------------------------------------------------------------ client side */

typedef struct client {
    void *ctx, *shell, *iopub, *control;
    kn_session s;
} client;

static int ports[5];

static void client_open(client *c)
{
    c->ctx = zmq_ctx_new();
    char ep[64];
    c->shell = zmq_socket(c->ctx, ZMQ_DEALER);
    c->control = zmq_socket(c->ctx, ZMQ_DEALER);
    c->iopub = zmq_socket(c->ctx, ZMQ_SUB);
    zmq_setsockopt(c->iopub, ZMQ_SUBSCRIBE, "", 0);
    int ivl = 5, zero = 0;
    void *socks[3] = {c->shell, c->iopub, c->control};
    int p[3] = {ports[0], ports[1], ports[3]};
    for (int i = 0; i < 3; i++) {
        zmq_setsockopt(socks[i], ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
        zmq_setsockopt(socks[i], ZMQ_LINGER, &zero, sizeof zero);
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", p[i]);
        zmq_connect(socks[i], ep);
    }
    kn_session_init(&c->s, "hmac-sha256", "testkey");
}

static void client_close(client *c)
{
    zmq_close(c->shell);
    zmq_close(c->iopub);
    zmq_close(c->control);
    zmq_ctx_term(c->ctx);
    kn_session_clear(&c->s);
}

static void send_req(client *c, void *sock, const char *type, const char *content, char *id)
{
    kn_out out = {.msg_type = type, .content = content};
    kn_session_send(&c->s, sock, NULL, NULL, 0, &out, id);
}

static kn_msg *recv_msg(client *c, void *sock, int timeout_ms)
{
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return NULL;
    kn_msg *m = NULL;
    kn_wire_recv(sock, &c->s.signer, 0, 0, &m);
    return m;
}

/* IOPub message types for one request, until its idle (space separated). */
static void iopub_trace(client *c, const char *parent_id, char *out, size_t n)
{
    out[0] = 0;
    for (int i = 0; i < 50; i++) {
        kn_msg *m = recv_msg(c, c->iopub, 3000);
        if (!m)
            break;
        const char *pid = cb_json_str(m->parent, "msg_id", "");
        if (strcmp(pid, parent_id) == 0) {
            const char *t = m->msg_type;
            if (strcmp(t, "status") == 0)
                t = cb_json_str(m->content, "execution_state", "?");
            snprintf(out + strlen(out), n - strlen(out), "%s%s", out[0] ? " " : "", t);
            bool idle = strcmp(t, "idle") == 0;
            kn_msg_free(m);
            if (idle)
                break;
        } else {
            kn_msg_free(m);
        }
    }
}

static void *client_thread(void *arg)
{
    client c;
    client_open(&c);
    char id[KN_MSG_ID_LEN], id2[KN_MSG_ID_LEN], id3[KN_MSG_ID_LEN], trace[512];

    /* wait until ready: kernel_info reply + IOPub traffic */
    bool ready = false;
    for (int i = 0; i < 100 && !ready; i++) {
        send_req(&c, c.shell, "kernel_info_request", "{}", id);
        kn_msg *r = recv_msg(&c, c.shell, 1000);
        kn_msg *io = recv_msg(&c, c.iopub, 200);
        ready = r && io;
        kn_msg_free(r);
        kn_msg_free(io);
    }
    ok(ready, "kernel ready (kernel_info reply and IOPub traffic)");
    while (1) {
        kn_msg *m = recv_msg(&c, c.iopub, 100);
        if (!m)
            break;
        kn_msg_free(m);
    }

    send_req(&c, c.shell, "kernel_info_request", "{}", id);
    kn_msg *r = recv_msg(&c, c.shell, 3000);
    is_str(r ? r->msg_type : NULL, "kernel_info_reply", "kernel_info_reply");
    is_str(r ? cb_json_str(r->content, "protocol_version", NULL) : NULL, "5.3", "protocol version added by the core");
    is_str(r ? cb_json_str(r->parent, "msg_id", NULL) : NULL, id, "reply parent is the request");
    kn_msg_free(r);
    iopub_trace(&c, id, trace, sizeof trace);
    is_str(trace, "busy idle", "busy/idle around kernel_info");

    send_req(&c, c.shell, "execute_request", "{\"code\":\"a\"}", id);
    r = recv_msg(&c, c.shell, 3000);
    ok(r && cb_json_int(r->content, "execution_count", 0) == 1, "first execution_count is 1");
    ok(r && cb_json_obj(r->content, "user_expressions") && cb_json_arr(r->content, "payload"),
       "reply completed with user_expressions and payload");
    ok(r && strcmp(cb_json_str(r->metadata, "status", ""), "ok") == 0 && cb_json_has(r->metadata, "started"),
       "reply metadata: status and started");
    kn_msg_free(r);
    iopub_trace(&c, id, trace, sizeof trace);
    is_str(trace, "busy execute_input stream idle", "execute: busy, execute_input, output, idle");

    send_req(&c, c.shell, "execute_request", "{\"code\":\"b\",\"silent\":true}", id);
    r = recv_msg(&c, c.shell, 3000);
    ok(r && cb_json_int(r->content, "execution_count", 0) == 1, "silent does not advance the counter");
    kn_msg_free(r);
    iopub_trace(&c, id, trace, sizeof trace);
    is_str(trace, "busy stream idle", "silent: no execute_input");

    send_req(&c, c.shell, "execute_request", "{\"code\":\"c\"}", id);
    r = recv_msg(&c, c.shell, 3000);
    ok(r && cb_json_int(r->content, "execution_count", 0) == 2, "the counter advances");
    kn_msg_free(r);
    iopub_trace(&c, id, trace, sizeof trace);

    /* stop_on_error: the two queued executes are aborted, the complete is served */
    int before = executed;
    send_req(&c, c.shell, "execute_request", "{\"code\":\"fail\"}", id);
    send_req(&c, c.shell, "execute_request", "{\"code\":\"x\"}", id2);
    send_req(&c, c.shell, "complete_request", "{\"code\":\"x\",\"cursor_pos\":1}", id3);
    char id4[KN_MSG_ID_LEN];
    send_req(&c, c.shell, "execute_request", "{\"code\":\"y\"}", id4);
    const char *want[] = {"error", "aborted", "ok", "aborted"};
    for (int i = 0; i < 4; i++) {
        r = recv_msg(&c, c.shell, 3000);
        is_str(r ? cb_json_str(r->content, "status", NULL) : NULL, want[i], "after an error, reply %d is %s", i, want[i]);
        kn_msg_free(r);
    }
    is_int(executed - before, 1, "aborted cells never reach the interpreter");
    send_req(&c, c.shell, "execute_request", "{\"code\":\"z\"}", id);
    r = recv_msg(&c, c.shell, 3000);
    is_str(r ? cb_json_str(r->content, "status", NULL) : NULL, "ok", "a request sent after the idle is run");
    kn_msg_free(r);

    send_req(&c, c.shell, "bogus_request", "{}", id);
    r = recv_msg(&c, c.shell, 3000);
    ok(r && strcmp(r->msg_type, "bogus_reply") == 0 && strcmp(cb_json_str(r->content, "status", ""), "error") == 0,
       "unknown request: error reply");
    kn_msg_free(r);
    send_req(&c, c.shell, "execute_request", "{\"code\":7}", id);
    r = recv_msg(&c, c.shell, 3000);
    ok(r && strstr(cb_json_str(r->content, "evalue", ""), "'code'"), "mistyped field named in the error");
    kn_msg_free(r);
    send_req(&c, c.shell, "history_request", "{\"hist_access_type\":\"tail\",\"n\":100}", id);
    r = recv_msg(&c, c.shell, 3000);
    is_int(r ? cJSON_GetArraySize(cb_json_arr(r->content, "history")) : -1, 4,
           "history holds the stored cells (not silent, not aborted)");
    kn_msg_free(r);

    send_req(&c, c.control, "shutdown_request", "{\"restart\":true}", id);
    r = recv_msg(&c, c.control, 3000);
    ok(r && cJSON_IsTrue(cJSON_GetObjectItem(r->content, "restart")), "shutdown reply carries the restart flag");
    kn_msg_free(r);
    client_close(&c);
    return NULL;
}

int main(void)
{
    /* free ports */
    for (int i = 0; i < 5; i++)
        ports[i] = 0;
    void *ctx = zmq_ctx_new();
    for (int i = 0; i < 5; i++) {
        void *s = zmq_socket(ctx, ZMQ_REP);
        zmq_bind(s, "tcp://127.0.0.1:*");
        char ep[64];
        size_t l = sizeof ep;
        zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &l);
        ports[i] = atoi(strrchr(ep, ':') + 1);
        zmq_close(s);
    }
    zmq_ctx_term(ctx);
    char dir[] = "/tmp/cb-t-kernel-XXXXXX";
    mkdtemp(dir);
    cb_autofree char *cf = cb_path_join(dir, "conn.json");
    FILE *f = fopen(cf, "w");
    fprintf(f, "{\"transport\":\"tcp\",\"ip\":\"127.0.0.1\",\"shell_port\":%d,\"iopub_port\":%d,\"stdin_port\":%d,"
               "\"control_port\":%d,\"hb_port\":%d,\"key\":\"testkey\",\"signature_scheme\":\"hmac-sha256\"}",
            ports[0], ports[1], ports[2], ports[3], ports[4]);
    fclose(f);
    kn_interp mock = {.kernel_info = mock_info, .start = mock_start, .execute = mock_execute,
                      .complete = mock_simple, .inspect = mock_simple, .is_complete = mock_simple,
                      .comm_info = mock_simple, .comm = mock_comm};
    pthread_t t;
    pthread_create(&t, NULL, client_thread, NULL);
    kn_kernel_opts o = {.connection_file = cf, .no_history = true};
    int rc = kn_kernel_run(&o, &mock);
    pthread_join(t, NULL);
    is_int(rc, 0, "kernel loop returns 0 after shutdown");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    system(cmd);
    return tap_done();
}
