/* kernel/kernel.c: the kernel core (see kernel.h for the thread model).
 *
 * Startup is ordered for speed: sockets are bound and a startup thread
 * answers kernel_info on the shell socket while the interpreter initialises
 * on the main thread; once it is ready the startup thread hands the shell
 * socket over (ZeroMQ allows moving a socket between threads across a full
 * memory barrier: the thread join) and the interp thread serves shell
 * requests directly, without a hop through a queue.
 *
 * Every request goes through dispatch(): busy, validate, handler, reply,
 * idle. Handlers only compute reply contents. */
#include "config.h"
#include "kernel/kernel.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "kernel/history.h"
#include "kernel/session.h"

#define DEFAULT_MAX_BYTES ((size_t)256 << 20)
/* How long the kernel lives after the reply of a cell that called exit(). */
#define KN_EXIT_LINGER_MS 400
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

typedef enum { CH_SHELL, CH_CONTROL } channel;

typedef struct qitem {
    kn_msg *msg;
    struct qitem *next;
} qitem;

typedef struct kn_kernel {
    kn_conn conn;
    kn_session sess;
    void *zctx;
    void *shell, *control, *iopub, *stdin_sock, *hb;
    size_t max_bytes;
    kn_interp *interp;
    kn_host host;
    kn_history *hist;
    pthread_t main_thread;

    /* IOPub: one socket, one lock; cur_parent is the header of the shell
     * request being handled (what interp output is parented to). */
    pthread_mutex_t iopub_lock;
    char topic[96];
    kn_bytes cur_parent;
    bool subscribed;            /* an IOPub subscription has arrived (XPUB) */
    bool sub_wait_done;         /* gave up waiting for one once */
    unsigned pub_count;

    /* IOPub flow control (kernel.h): the bytes ZeroMQ holds for IOPub, and
     * the stall. stalled is written under iopub_lock, read anywhere. */
    kn_meter meter;
    atomic_bool stalled;        /* dropping output until the queue drains to half */
    const char *stall_why;      /* under iopub_lock: why the current drops began */
    unsigned long dropped;      /* under iopub_lock: output dropped since the last notice */
    size_t dropped_bytes;
    atomic_uint interrupts;     /* bumped by each interrupt_request (ends waits) */

    /* startup: messages the startup thread received before the interp was ready */
    pthread_mutex_t qlock;
    qitem *qhead, *qtail;
    atomic_bool interp_ready;

    int wake_fd;                /* eventfd: wakes the interp thread (shutdown) */
    atomic_bool stopping;
    atomic_bool restart;
    atomic_bool executing;
    atomic_bool interp_done;
    int ctl_wake_fd;            /* eventfd: wakes the control thread */
    qitem *ctl_later, *ctl_later_tail;  /* control thread: debug_requests that came while the
                                         * interpreter started, answered once it has */
    atomic_bool shutdown_pending; /* set by h_shutdown, acted on after the reply */

    /* interp-thread state */
    kn_msg *cur;                /* request being handled on shell */
    bool cur_allow_stdin;
    int execution_count;        /* the number the next stored cell gets */
    bool abort_queue;           /* an execute failed with stop_on_error */
    bool exit_linger;           /* exit() in a cell: wait KN_EXIT_LINGER_MS before stopping */
    bool keep_interrupt;        /* an interrupt came while the interpreter started: it is
                                 * for the first cell that was waiting, not cleared */
    bool startup_queue;         /* handling the requests that came during startup: an
                                 * interrupt pending as one of their cells starts is
                                 * for it (the frontend sent it after the request) */
    qitem *aborting;            /* requests that were waiting when it failed */

    char *kernel_info_json;     /* cached kernel_info_reply content */
} kn_kernel;

typedef cJSON *(*handler_fn)(kn_kernel *k, kn_msg *m, channel ch);

typedef struct field_rule {
    const char *name;
    int type;  /* cJSON_String, cJSON_Number, cJSON_Object... */
} field_rule;

typedef struct route {
    const char *msg_type;
    handler_fn fn;
    bool has_reply;
    field_rule required[3];
} route;

/* ------------------------------------------------------------------ IOPub */

/* IOPub is an XPUB socket: reading it yields subscription messages. We
 * read them to know when a frontend listens (a status published before its
 * subscription arrived would be lost: the slow-joiner problem). Called with
 * iopub_lock held. */
static void drain_subscriptions_locked(kn_kernel *k)
{
    char buf[8];
    for (;;) {
        int n = zmq_recv(k->iopub, buf, sizeof buf, ZMQ_DONTWAIT);
        if (n < 0)
            break;
        if (n > 0 && buf[0] == 1)
            k->subscribed = true;
    }
}

/* Before answering the first kernel_info: wait (bounded) until a frontend
 * has subscribed to IOPub, so the busy/idle of the reply reach it. */
static void wait_subscriber(kn_kernel *k, int max_ms)
{
    pthread_mutex_lock(&k->iopub_lock);
    drain_subscriptions_locked(k);
    int64_t end = cb_mono_ns() + (int64_t)max_ms * 1000000;
    while (!k->subscribed && !k->sub_wait_done && cb_mono_ns() < end) {
        zmq_pollitem_t it = {k->iopub, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 2);
        drain_subscriptions_locked(k);
    }
    k->sub_wait_done = true;
    pthread_mutex_unlock(&k->iopub_lock);
}

static void publish_locked(kn_kernel *k, const kn_bytes *parent, const char *msg_type,
                           const char *content, size_t len, const kn_bytes *bufs, size_t nbufs)
{
    if (!k->subscribed || (++k->pub_count & 63) == 0)
        drain_subscriptions_locked(k);
    size_t tl = strlen(k->topic);
    snprintf(k->topic + tl, sizeof k->topic - tl, "%s", msg_type);
    kn_out out = {.msg_type = msg_type, .parent = parent, .content = content, .content_len = len,
                  .buffers = bufs, .n_buffers = nbufs};
    if (kn_session_send_metered(&k->sess, k->iopub, k->topic, &out, &k->meter) < 0)
        cb_warn("kernel", "iopub send failed: %s", zmq_strerror(errno));
    k->topic[tl] = '\0';
}

/* ------------------------------------------------------------------ IOPub flow control
 *
 * The rules are in kernel.h. Waiting happens outside iopub_lock, so the
 * control thread's busy/idle and everything else that never waits go out
 * while a cell's print waits. The decision to send or drop is taken under
 * the lock, next to the send, so that output and the notice keep their
 * order. */

/* Set on threads that never wait for the reader: the control thread, and
 * threads that said so (kn_host.output_may_wait). */
static __thread bool t_never_wait;

static size_t iopub_queued(kn_kernel *k)
{
    return atomic_load_explicit(&k->meter.queued, memory_order_relaxed);
}

/* Output that may wait and, when the reader is stalled, be dropped. */
static bool is_output(const char *msg_type)
{
    return strcmp(msg_type, "stream") == 0 || strcmp(msg_type, "display_data") == 0 ||
           strcmp(msg_type, "update_display_data") == 0 || strcmp(msg_type, "clear_output") == 0 ||
           strcmp(msg_type, "comm_msg") == 0;
}

/* kn_host.output_room */
static bool host_output_room(void *ctx)
{
    kn_kernel *k = ctx;
    return iopub_queued(k) < KN_IOPUB_QUEUE_BYTES || atomic_load(&k->stalled) || atomic_load(&k->stopping);
}

/* kn_host.output_may_wait */
static bool host_output_may_wait(void *ctx, bool may)
{
    (void)ctx;
    bool had = !t_never_wait;
    t_never_wait = !may;
    return had;
}

/* Waits, holding no lock, until output may be published: true when the
 * queue has room (or a stall was declared: the caller then drops), false
 * when the caller must declare one (*why says why). On the main thread a
 * SIGINT ends the wait: it is taken here with sigtimedwait (a signal that
 * came between two checks stays pending until then, so none is missed)
 * and raised again once the wait is over, for the interpreter's handler
 * (Python's KeyboardInterrupt as the print returns). */
static bool flow_wait(kn_kernel *k, const char **why)
{
    if (iopub_queued(k) < KN_IOPUB_QUEUE_BYTES || atomic_load(&k->stalled) || t_never_wait)
        return true;
    bool on_main = pthread_equal(pthread_self(), k->main_thread);
    unsigned irq = atomic_load(&k->interrupts);
    int64_t start = cb_mono_ns(), stall_ns = (int64_t)KN_IOPUB_STALL_S * 1000000000;
    sigset_t sigint, old;
    sigemptyset(&sigint);
    sigaddset(&sigint, SIGINT);
    if (on_main)
        pthread_sigmask(SIG_BLOCK, &sigint, &old);
    bool room = false, signalled = false;
    for (;;) {
        if (iopub_queued(k) < KN_IOPUB_QUEUE_BYTES || atomic_load(&k->stalled)) {
            room = true;
            break;
        }
        if (atomic_load(&k->stopping)) {
            *why = "the kernel was shutting down";
            break;
        }
        if (atomic_load(&k->interrupts) != irq) {
            *why = "the cell was interrupted while it waited for the frontend to read its output";
            break;
        }
        int64_t now = cb_mono_ns(), last = atomic_load(&k->meter.released_ns);
        if (now - (last > start ? last : start) >= stall_ns) {
            *why = "the frontend read none of the kernel's output for " STRINGIFY(KN_IOPUB_STALL_S) " s";
            break;
        }
        struct timespec ts = {0, 5 * 1000000};
        if (on_main) {
            if (sigtimedwait(&sigint, NULL, &ts) == SIGINT) {
                signalled = true;
                *why = "the cell was interrupted while it waited for the frontend to read its output";
                break;
            }
        } else {
            nanosleep(&ts, NULL);
        }
    }
    if (on_main) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (signalled)
            pthread_kill(k->main_thread, SIGINT);  /* delivered now, to the handler it was meant for */
    }
    return room;
}

/* The notice of what a stall dropped, parented to parent. Under iopub_lock. */
static void flow_notice_locked(kn_kernel *k, const kn_bytes *parent)
{
    if (!k->dropped)
        return;
    char text[512], size[32];
    if (k->dropped_bytes < 1048576)
        snprintf(size, sizeof size, "%.1f KiB", k->dropped_bytes / 1024.0);
    else
        snprintf(size, sizeof size, "%.1f MiB", k->dropped_bytes / 1048576.0);
    snprintf(text, sizeof text,
             "[cellbox] %lu output message%s (%s) %s dropped: %s\n", k->dropped,
             k->dropped == 1 ? "" : "s", size, k->dropped == 1 ? "was" : "were",
             k->stall_why ? k->stall_why : "the frontend did not read them");
    cb_warn("kernel", "IOPub: %.*s", (int)strlen(text + 10) - 1, text + 10);
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "name", "stderr");
    cJSON_AddStringToObject(c, "text", text);
    cb_autofree char *json = cb_json_print(c);
    cJSON_Delete(c);
    publish_locked(k, parent, "stream", json, 0, NULL, 0);
    k->dropped = 0;
    k->dropped_bytes = 0;
}

/* Publishes output under the flow-control rules. cur: parent it to the
 * current shell request (parent is ignored). */
static void publish_output(kn_kernel *k, bool cur, const kn_bytes *parent, const char *msg_type,
                           const char *content, size_t len, const kn_bytes *bufs, size_t nbufs)
{
    const char *why = NULL;
    bool room = flow_wait(k, &why);
    pthread_mutex_lock(&k->iopub_lock);
    if (cur)
        parent = k->cur_parent.data ? &k->cur_parent : NULL;
    if (!room && !atomic_load(&k->stalled)) {
        cb_warn("kernel", "IOPub: %s (%.1f MiB waiting): dropping output until the frontend catches up",
                why, iopub_queued(k) / 1048576.0);
        k->stall_why = why;
        atomic_store(&k->stalled, true);
    }
    if (atomic_load(&k->stalled)) {
        if (iopub_queued(k) >= KN_IOPUB_QUEUE_BYTES / 2) {
            k->dropped++;
            k->dropped_bytes += len ? len : strlen(content);
            for (size_t i = 0; i < nbufs; i++)
                k->dropped_bytes += bufs[i].len;
            pthread_mutex_unlock(&k->iopub_lock);
            return;
        }
        atomic_store(&k->stalled, false);
        cb_info("kernel", "IOPub: the frontend reads again");
    }
    flow_notice_locked(k, parent);
    publish_locked(k, parent, msg_type, content, len, bufs, nbufs);
    pthread_mutex_unlock(&k->iopub_lock);
}

static void publish(kn_kernel *k, const kn_bytes *parent, const char *msg_type, const char *content)
{
    pthread_mutex_lock(&k->iopub_lock);
    publish_locked(k, parent, msg_type, content, 0, NULL, 0);
    pthread_mutex_unlock(&k->iopub_lock);
}

static void publish_status(kn_kernel *k, const kn_bytes *parent, const char *state)
{
    char c[64];
    snprintf(c, sizeof c, "{\"execution_state\":\"%s\"}", state);
    publish(k, parent, "status", c);
}

/* kn_host.publish: parented to the current shell request. */
static void host_publish(void *ctx, const char *msg_type, const char *content, size_t len,
                         const kn_bytes *bufs, size_t nbufs)
{
    kn_kernel *k = ctx;
    if (is_output(msg_type)) {
        publish_output(k, true, NULL, msg_type, content, len, bufs, nbufs);
        return;
    }
    pthread_mutex_lock(&k->iopub_lock);
    publish_locked(k, k->cur_parent.data ? &k->cur_parent : NULL, msg_type, content, len, bufs, nbufs);
    pthread_mutex_unlock(&k->iopub_lock);
}

/* kn_host.publish_parent: parented as the caller says ("{}": no parent). */
static void host_publish_parent(void *ctx, const char *parent, size_t parent_len, const char *msg_type,
                                const char *content, size_t len, const kn_bytes *bufs, size_t nbufs)
{
    kn_kernel *k = ctx;
    kn_bytes p = {(char *)parent, parent_len};
    bool none = !parent || parent_len == 0 || (parent_len == 2 && memcmp(parent, "{}", 2) == 0);
    if (is_output(msg_type)) {
        publish_output(k, false, none ? NULL : &p, msg_type, content, len, bufs, nbufs);
        return;
    }
    pthread_mutex_lock(&k->iopub_lock);
    publish_locked(k, none ? NULL : &p, msg_type, content, len, bufs, nbufs);
    pthread_mutex_unlock(&k->iopub_lock);
}

/* kn_host.parent_header */
static char *host_parent_header(void *ctx)
{
    kn_kernel *k = ctx;
    pthread_mutex_lock(&k->iopub_lock);
    char *h = k->cur_parent.data ? cb_strndup(k->cur_parent.data, k->cur_parent.len) : NULL;
    pthread_mutex_unlock(&k->iopub_lock);
    return h;
}

static char *host_history_query(void *ctx, const char *request)
{
    kn_kernel *k = ctx;
    cJSON *req = cJSON_Parse(request);
    cJSON *reply = kn_history_query(k->hist, req);  /* the IPython API: outputs kept */
    cJSON_Delete(req);
    char *text = cb_json_print(reply);
    cJSON_Delete(reply);
    return text;
}

static void set_cur_parent(kn_kernel *k, const kn_msg *m)
{
    pthread_mutex_lock(&k->iopub_lock);
    free(k->cur_parent.data);
    k->cur_parent.data = m ? cb_strndup(m->header_raw.data, m->header_raw.len) : NULL;
    k->cur_parent.len = m ? m->header_raw.len : 0;
    pthread_mutex_unlock(&k->iopub_lock);
}

/* ------------------------------------------------------------------ replies */

static void reply_type(const char *msg_type, char *out, size_t n)
{
    size_t l = strlen(msg_type);
    if (l > 8 && strcmp(msg_type + l - 8, "_request") == 0)
        snprintf(out, n, "%.*s_reply", (int)(l - 8), msg_type);
    else
        snprintf(out, n, "%s_reply", msg_type);
}

static void send_reply(kn_kernel *k, void *sock, const kn_msg *m, const cJSON *content,
                       const char *metadata)
{
    char rt[128];
    reply_type(m->msg_type, rt, sizeof rt);
    cb_autofree char *c = cb_json_print(content);
    kn_out out = {.msg_type = rt, .parent = &m->header_raw, .metadata = metadata, .content = c};
    if (kn_session_send(&k->sess, sock, NULL, m->ids, m->n_ids, &out, NULL) < 0)
        cb_warn("kernel", "cannot send %s: %s", rt, zmq_strerror(errno));
}

static cJSON *error_content(const char *ename, const char *evalue)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "status", "error");
    cJSON_AddStringToObject(c, "ename", ename);
    cJSON_AddStringToObject(c, "evalue", evalue);
    cJSON_AddItemToObject(c, "traceback", cJSON_CreateArray());
    return c;
}

/* ------------------------------------------------------------------ handlers */

static cJSON *h_kernel_info(kn_kernel *k, kn_msg *m, channel ch)
{
    return cJSON_Parse(k->kernel_info_json);
}

static void request_stop(kn_kernel *k, bool restart)
{
    atomic_store(&k->restart, restart);
    atomic_store(&k->stopping, true);
    uint64_t one = 1;
    ssize_t CB_UNUSED w = write(k->wake_fd, &one, sizeof one);
    w = write(k->ctl_wake_fd, &one, sizeof one);
}

static cJSON *h_shutdown(kn_kernel *k, kn_msg *m, channel ch)
{
    bool restart = cb_json_bool(m->content, "restart", false);
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "status", "ok");
    cJSON_AddBoolToObject(c, "restart", restart);
    cb_info("kernel", "shutdown requested (restart=%d)", restart);
    /* the stop itself happens after the reply is on the wire (after_dispatch) */
    k->shutdown_pending = true;
    atomic_store(&k->restart, restart);
    return c;
}

static void interrupt_main(kn_kernel *k)
{
    atomic_fetch_add(&k->interrupts, 1);  /* ends a wait for the IOPub reader on any thread */
    /* A real signal to the main thread: Python's handler raises
     * KeyboardInterrupt and blocking calls (time.sleep, select) return EINTR. */
    pthread_kill(k->main_thread, SIGINT);
}

static cJSON *h_interrupt(kn_kernel *k, kn_msg *m, channel ch)
{
    cb_info("kernel", "interrupt requested");
    interrupt_main(k);
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "status", "ok");
    return c;
}

cJSON *kn_debug_failure(const cJSON *request, const char *message)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "type", "response");
    cJSON_AddNumberToObject(c, "request_seq", cb_json_int(request, "seq", 0));
    cJSON_AddBoolToObject(c, "success", false);
    cJSON_AddStringToObject(c, "command", cb_json_str(request, "command", ""));
    cJSON_AddStringToObject(c, "message", message);
    return c;
}

static cJSON *h_debug(kn_kernel *k, kn_msg *m, channel ch)
{
    if (k->interp->debug)
        return k->interp->debug(k->interp->self, m);
    /* kernel_info says debugger: false; answer politely anyway. */
    return kn_debug_failure(m->content, "this kernel has no debugger");
}

static cJSON *h_execute(kn_kernel *k, kn_msg *m, channel ch)
{
    const cJSON *c = m->content;
    bool silent = cb_json_bool(c, "silent", false);
    kn_exec_req req = {
        .code = cb_json_str(c, "code", ""),
        .silent = silent,
        .store_history = silent ? false : cb_json_bool(c, "store_history", true),
        .allow_stdin = cb_json_bool(c, "allow_stdin", true),
        .stop_on_error = cb_json_bool(c, "stop_on_error", true),
        .user_expressions = cb_json_obj(c, "user_expressions"),
        .execution_count = k->execution_count,
    };
    if (!silent) {
        cJSON *in = cJSON_CreateObject();
        cJSON_AddStringToObject(in, "code", req.code);
        cJSON_AddNumberToObject(in, "execution_count", req.execution_count);
        cb_autofree char *s = cb_json_print(in);
        cJSON_Delete(in);
        host_publish(k, "execute_input", s, 0, NULL, 0);
    }
    k->cur_allow_stdin = req.allow_stdin;
    bool pending = k->interp->clear_interrupt && k->interp->clear_interrupt(k->interp->self);
    req.interrupted = k->keep_interrupt || (k->startup_queue && pending);
    k->keep_interrupt = false;
    atomic_store(&k->executing, true);
    cJSON *reply = k->interp->execute(k->interp->self, &req);
    atomic_store(&k->executing, false);
    if (!reply)
        reply = error_content("InternalError", "the interpreter returned no reply");
    /* the interpreter may hand us the result's text and the source the cell
     * became (IPython's parsed input) for the history */
    cJSON *hout = cJSON_DetachItemFromObjectCaseSensitive(reply, "_history_output");
    cJSON *hsrc = cJSON_DetachItemFromObjectCaseSensitive(reply, "_history_source");
    /* an empty cell is not stored and does not advance the counter (IPython) */
    /* exit / quit in the cell (IPython's ask_exit): stop after this reply */
    cJSON *exit_after = cJSON_DetachItemFromObjectCaseSensitive(reply, "_exit_after");
    if (cJSON_IsTrue(exit_after)) {
        cb_info("kernel", "the cell asked the kernel to exit");
        k->shutdown_pending = true;
        k->exit_linger = true;
        atomic_store(&k->restart, false);
    }
    cJSON_Delete(exit_after);
    cJSON *skip = cJSON_DetachItemFromObjectCaseSensitive(reply, "_not_stored");
    if (cJSON_IsTrue(skip))
        req.store_history = false;
    cJSON_Delete(skip);
    if (req.store_history) {
        kn_history_add_parsed(k->hist, req.execution_count, req.code, cJSON_IsString(hsrc) ? hsrc->valuestring : NULL,
                              cJSON_IsString(hout) ? hout->valuestring : NULL);
        k->execution_count++;
    }
    cJSON_Delete(hout);
    cJSON_Delete(hsrc);
    cb_json_set(reply, "execution_count",
                cJSON_CreateNumber(req.store_history ? req.execution_count : req.execution_count - 1));
    if (!cb_json_has(reply, "user_expressions"))
        cJSON_AddItemToObject(reply, "user_expressions", cJSON_CreateObject());
    if (!cb_json_has(reply, "payload"))
        cJSON_AddItemToObject(reply, "payload", cJSON_CreateArray());
    /* a silent request (a variable inspector's probe) that fails aborts
     * nothing queued behind it, as in ipykernel */
    if (strcmp(cb_json_str(reply, "status", "ok"), "error") == 0 && req.stop_on_error && !req.silent)
        k->abort_queue = true;
    return reply;
}

static cJSON *h_complete(kn_kernel *k, kn_msg *m, channel ch)
{
    return k->interp->complete(k->interp->self, m->content);
}

static cJSON *h_inspect(kn_kernel *k, kn_msg *m, channel ch)
{
    return k->interp->inspect(k->interp->self, m->content);
}

static cJSON *h_is_complete(kn_kernel *k, kn_msg *m, channel ch)
{
    return k->interp->is_complete(k->interp->self, m->content);
}

static cJSON *h_history(kn_kernel *k, kn_msg *m, channel ch)
{
    return kn_history_reply(k->hist, m->content);
}

static cJSON *h_comm_info(kn_kernel *k, kn_msg *m, channel ch)
{
    return k->interp->comm_info(k->interp->self, m->content);
}

static cJSON *h_comm(kn_kernel *k, kn_msg *m, channel ch)
{
    k->interp->comm(k->interp->self, m->msg_type, m);
    return NULL;
}

static const route shell_routes[] = {
    {"execute_request", h_execute, true, {{"code", cJSON_String}}},
    {"kernel_info_request", h_kernel_info, true, {{0}}},
    {"complete_request", h_complete, true, {{"code", cJSON_String}, {"cursor_pos", cJSON_Number}}},
    {"inspect_request", h_inspect, true, {{"code", cJSON_String}, {"cursor_pos", cJSON_Number}}},
    {"is_complete_request", h_is_complete, true, {{"code", cJSON_String}}},
    {"history_request", h_history, true, {{0}}},
    {"comm_info_request", h_comm_info, true, {{0}}},
    {"comm_open", h_comm, false, {{"comm_id", cJSON_String}, {"target_name", cJSON_String}}},
    {"comm_msg", h_comm, false, {{"comm_id", cJSON_String}}},
    {"comm_close", h_comm, false, {{"comm_id", cJSON_String}}},
    {"shutdown_request", h_shutdown, true, {{0}}},  /* the old place (protocol < 5.x) */
};

static const route control_routes[] = {
    {"kernel_info_request", h_kernel_info, true, {{0}}},
    {"shutdown_request", h_shutdown, true, {{0}}},
    {"interrupt_request", h_interrupt, true, {{0}}},
    {"debug_request", h_debug, true, {{0}}},
};

static const char *check_fields(const route *r, const kn_msg *m, char *why, size_t n)
{
    for (size_t i = 0; i < CB_ARRAY_LEN(r->required) && r->required[i].name; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(m->content, r->required[i].name);
        if (!v || !(v->type & r->required[i].type)) {
            snprintf(why, n, "%s: missing or invalid field '%s' (%s expected)", m->msg_type,
                     r->required[i].name, r->required[i].type == cJSON_String ? "string" :
                     r->required[i].type == cJSON_Number ? "number" : "object");
            return why;
        }
    }
    return NULL;
}

static void log_drop(const char *chan, kn_recv_status st);

/* The parser for frames that hold a "\u0000" escape (opts->parse_nul): one
 * per process, like the kernel. Other frames go to cJSON, which is faster. */
static kn_json_parse_fn g_parse_nul;

static cJSON *parse_frame(const char *data, size_t len)
{
    if (g_parse_nul && cb_json_has_nul_escape(data, len))
        return g_parse_nul(data, len);
    return cJSON_ParseWithLength(data, len);
}

static kn_recv_status recv_msg(kn_kernel *k, void *sock, kn_msg **out)
{
    return kn_wire_recv_with(sock, &k->sess.signer, k->max_bytes, ZMQ_DONTWAIT, parse_frame, out);
}

/* After an execute failed with stop_on_error, before its reply goes out:
 * take every request already waiting on the shell socket (like ipykernel's
 * flush of the shell stream). They are answered next: executes "aborted",
 * the others normally. Requests sent after the reply are not affected. */
static void collect_waiting(kn_kernel *k)
{
    qitem **tail = &k->aborting;
    while (*tail)
        tail = &(*tail)->next;
    /* A frontend that queued several cells sent them back to back; a cell
     * that fails at once can finish before the next ones arrived, so wait
     * until none has come for 20 ms (ipykernel's
     * stop_on_error_timeout), up to a second. The quiet period restarts
     * with each arrival: a fixed 5 ms let the cells still on their way run
     * after the failed one (a client sending 300 cells at once saw 145 of
     * those after the error run). Nothing received here can answer the
     * error: its reply has not gone out yet. */
    const int64_t quiet = 20 * 1000000;
    int64_t now = cb_mono_ns(), cap = now + 1000 * (int64_t)1000000, end = now + quiet;
    for (;;) {
        kn_msg *m = NULL;
        kn_recv_status st = recv_msg(k, k->shell, &m);
        if (st != KN_RECV_AGAIN && st != KN_RECV_CLOSED) {
            now = cb_mono_ns();
            end = now + quiet < cap ? now + quiet : cap;
        }
        if (st == KN_RECV_AGAIN) {
            int64_t left = end - cb_mono_ns();
            zmq_pollitem_t it = {k->shell, 0, ZMQ_POLLIN, 0};
            if (left > 0 && zmq_poll(&it, 1, (long)(left / 1000000) + 1) > 0)
                continue;
            break;
        }
        if (st == KN_RECV_CLOSED)
            break;
        if (!m) {
            log_drop("shell", st);
            continue;
        }
        if (st == KN_RECV_BAD_JSON)
            cJSON_AddBoolToObject(m->metadata, "__cellbox_bad_json", true);
        qitem *q = cb_calloc(1, sizeof *q);
        q->msg = m;
        *tail = q;
        tail = &q->next;
    }
}

/* The one place where the protocol's rules are applied around a handler. */
static void dispatch(kn_kernel *k, void *sock, channel ch, kn_msg *m, bool content_ok)
{
    const route *routes = ch == CH_SHELL ? shell_routes : control_routes;
    size_t nroutes = ch == CH_SHELL ? CB_ARRAY_LEN(shell_routes) : CB_ARRAY_LEN(control_routes);
    const route *r = NULL;
    for (size_t i = 0; i < nroutes && !r; i++)
        if (strcmp(routes[i].msg_type, m->msg_type) == 0)
            r = &routes[i];

    if (ch == CH_SHELL) {
        k->cur = m;
        set_cur_parent(k, m);
    }
    publish_status(k, &m->header_raw, "busy");
    char why[256];
    if (!r) {
        cb_warn("kernel", "unknown message type '%s' on %s", m->msg_type, ch == CH_SHELL ? "shell" : "control");
        if (cb_str_has_suffix(m->msg_type, "_request")) {
            snprintf(why, sizeof why, "unknown message type '%s'", m->msg_type);
            cJSON *c = error_content("UnknownMessageType", why);
            send_reply(k, sock, m, c, NULL);
            cJSON_Delete(c);
        }
    } else if (!content_ok || check_fields(r, m, why, sizeof why)) {
        if (!content_ok)
            snprintf(why, sizeof why, "%s: content is not a JSON object", m->msg_type);
        cb_warn("kernel", "%s", why);
        if (r->has_reply) {
            cJSON *c = error_content("ValueError", why);
            send_reply(k, sock, m, c, NULL);
            cJSON_Delete(c);
        }
    } else {
        char started[CB_ISO_DATE_LEN];
        cb_iso_date(started, cb_real_us());
        cJSON *c = r->fn(k, m, ch);
        /* an execute failed with stop_on_error: what is queued behind it gets
         * aborted. Collected before the reply goes out, so that a request a
         * client sends on seeing the error reply is never taken for one */
        if (ch == CH_SHELL && k->abort_queue)
            collect_waiting(k);
        if (r->has_reply) {
            if (!c)
                c = error_content("InternalError", "handler failed");
            char md[256];
            snprintf(md, sizeof md,
                     "{\"started\":\"%s\",\"dependencies_met\":true,\"engine\":\"%s\",\"status\":\"%s\"}",
                     started, k->sess.id, cb_json_str(c, "status", "ok"));
            send_reply(k, sock, m, c, md);
            if (r->fn == h_shutdown) {
                /* broadcast too, as ipykernel does: other clients of this
                 * kernel (a Notebook next to a console that typed exit)
                 * learn that it is going away */
                cb_autofree char *text = cb_json_print(c);
                publish(k, &m->header_raw, "shutdown_reply", text);
            }
        }
        cJSON_Delete(c);
    }
    if (ch == CH_SHELL) {  /* what a stall dropped is told before the idle that ends the request */
        pthread_mutex_lock(&k->iopub_lock);
        flow_notice_locked(k, &m->header_raw);
        pthread_mutex_unlock(&k->iopub_lock);
    }
    publish_status(k, &m->header_raw, "idle");
    if (ch == CH_SHELL)
        k->cur = NULL;
    if (k->shutdown_pending) {
        k->shutdown_pending = false;
        if (k->exit_linger) {
            /* exit() in a cell: jupyter console reads the reply (and its
             * ask_exit payload) only while the kernel's process is alive;
             * ipykernel lives about 0.4 s after it, so do we */
            k->exit_linger = false;
            usleep(KN_EXIT_LINGER_MS * 1000);
        }
        request_stop(k, atomic_load(&k->restart));
    }
}

static void send_aborted(kn_kernel *k, kn_msg *m)
{
    set_cur_parent(k, m);
    publish_status(k, &m->header_raw, "busy");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "status", "aborted");
    cJSON_AddNumberToObject(c, "execution_count", k->execution_count - 1);
    cJSON_AddItemToObject(c, "user_expressions", cJSON_CreateObject());
    cJSON_AddItemToObject(c, "payload", cJSON_CreateArray());
    send_reply(k, k->shell, m, c, "{\"status\":\"aborted\",\"dependencies_met\":false}");
    cJSON_Delete(c);
    publish_status(k, &m->header_raw, "idle");
}

static void log_drop(const char *chan, kn_recv_status st)
{
    cb_warn("kernel", "dropped a message on %s: %s", chan, kn_recv_status_str(st));
}

/* Handles one shell message on the interp thread. */
static void handle_shell(kn_kernel *k, kn_msg *m, kn_recv_status st)
{
    if (k->abort_queue && strcmp(m->msg_type, "execute_request") == 0)
        send_aborted(k, m);
    else
        dispatch(k, k->shell, CH_SHELL, m, st == KN_RECV_OK);
    kn_msg_free(m);
}

/* Answers the requests collected by collect_waiting(), then ends the abort. */
static void abort_queued(kn_kernel *k)
{
    while (k->aborting) {
        qitem *q = k->aborting;
        k->aborting = q->next;
        bool bad = cb_json_bool(q->msg->metadata, "__cellbox_bad_json", false);
        handle_shell(k, q->msg, bad ? KN_RECV_BAD_JSON : KN_RECV_OK);
        free(q);
    }
    k->abort_queue = false;
}

/* ------------------------------------------------------------------ stdin */

static int host_input(void *ctx, const char *prompt, bool password, char **value,
                      bool (*poll_interrupt)(void *), void *pctx)
{
    kn_kernel *k = ctx;
    *value = NULL;
    if (!k->cur || !k->cur_allow_stdin)
        return KN_INPUT_NOT_ALLOWED;
    /* drop stale replies (e.g. to an earlier, interrupted input) */
    for (;;) {
        kn_msg *old = NULL;
        kn_recv_status st = recv_msg(k, k->stdin_sock, &old);
        kn_msg_free(old);
        if (st == KN_RECV_AGAIN || st == KN_RECV_CLOSED)
            break;
    }
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "prompt", prompt ? prompt : "");
    cJSON_AddBoolToObject(c, "password", password);
    char req_id[KN_MSG_ID_LEN];
    int rc = kn_session_send_json(&k->sess, k->stdin_sock, NULL, k->cur->ids, k->cur->n_ids,
                                  "input_request", &k->cur->header_raw, c, req_id);
    cJSON_Delete(c);
    if (rc < 0)
        return KN_INPUT_FAILED;
    for (;;) {
        if (atomic_load(&k->stopping))
            return KN_INPUT_FAILED;
        if (poll_interrupt && poll_interrupt(pctx))
            return KN_INPUT_INTERRUPTED;
        zmq_pollitem_t it = {k->stdin_sock, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&it, 1, 20);
        if (n <= 0)
            continue;  /* timeout or EINTR: check interrupt and stop again */
        kn_msg *m = NULL;
        kn_recv_status st = recv_msg(k, k->stdin_sock, &m);
        if (!m) {
            if (st != KN_RECV_AGAIN)
                log_drop("stdin", st);
            continue;
        }
        if (strcmp(m->msg_type, "input_reply") == 0) {
            *value = cb_strdup(cb_json_str(m->content, "value", ""));
            kn_msg_free(m);
            return KN_INPUT_OK;
        }
        cb_warn("kernel", "unexpected %s on stdin", m->msg_type);
        kn_msg_free(m);
    }
}

/* ------------------------------------------------------------------ threads */

static void *hb_thread(void *arg)
{
    kn_kernel *k = arg;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    for (;;) {
        if (zmq_msg_recv(&msg, k->hb, 0) < 0) {
            if (errno == EINTR)
                continue;
            break;  /* ETERM: shutting down */
        }
        if (zmq_msg_send(&msg, k->hb, 0) < 0 && errno == ETERM)
            break;
    }
    zmq_msg_close(&msg);
    zmq_close(k->hb);
    return NULL;
}

/* Once a stop is requested: give the interp thread a moment to return to
 * its loop; interrupt running code; never hang on code that ignores it. */
static void stop_watchdog(kn_kernel *k)
{
    for (int i = 0; i < 400 && !atomic_load(&k->interp_done); i++) {
        if (i == 50 && atomic_load(&k->executing)) {
            cb_info("kernel", "interrupting running code for shutdown");
            interrupt_main(k);
        }
        usleep(10000);
    }
    if (!atomic_load(&k->interp_done)) {
        cb_warn("kernel", "running code did not stop within 4 s of shutdown; exiting");
        _exit(0);
    }
}

/* The debug_requests kept while the interpreter started, in order: handled
 * now that it has, or (fail) answered with a failure. Control thread. */
static void control_later(kn_kernel *k, bool fail)
{
    while (k->ctl_later) {
        qitem *q = k->ctl_later;
        k->ctl_later = q->next;
        if (fail) {
            cJSON *c = kn_debug_failure(q->msg->content, "the kernel is shutting down");
            send_reply(k, k->control, q->msg, c, NULL);
            cJSON_Delete(c);
        } else {
            dispatch(k, k->control, CH_CONTROL, q->msg, true);
        }
        kn_msg_free(q->msg);
        free(q);
    }
    k->ctl_later_tail = NULL;
}

static void *control_thread(void *arg)
{
    kn_kernel *k = arg;
    t_never_wait = true;  /* interrupt and shutdown must never wait for an IOPub reader */
    const char *ppid_env = getenv("JPY_PARENT_PID");
    long parent = ppid_env ? atol(ppid_env) : 0;
    while (!atomic_load(&k->stopping)) {
        zmq_pollitem_t it[2] = {{k->control, 0, ZMQ_POLLIN, 0}, {NULL, k->ctl_wake_fd, ZMQ_POLLIN, 0}};
        int n = zmq_poll(it, 2, 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (n > 0 && (it[1].revents & ZMQ_POLLIN)) {
            uint64_t v;
            ssize_t CB_UNUSED r = read(k->ctl_wake_fd, &v, sizeof v);
        }
        if (k->ctl_later && atomic_load(&k->interp_ready) && !atomic_load(&k->stopping))
            control_later(k, false);
        if (n == 0) {
            /* the frontend that started us is gone: do not linger as an orphan */
            if (parent > 1 && kill((pid_t)parent, 0) < 0 && errno == ESRCH) {
                cb_warn("kernel", "parent process %ld is gone; shutting down", parent);
                request_stop(k, false);
            }
            continue;
        }
        if (!(it[0].revents & ZMQ_POLLIN))
            continue;
        kn_msg *m = NULL;
        kn_recv_status st = recv_msg(k, k->control, &m);
        if (st == KN_RECV_CLOSED)
            break;
        if (!m) {
            if (st != KN_RECV_AGAIN)
                log_drop("control", st);
            continue;
        }
        if (st == KN_RECV_OK && !atomic_load(&k->interp_ready) && strcmp(m->msg_type, "debug_request") == 0) {
            /* a frontend's debugger starts as it connects (JupyterLab sends
             * initialize at once): it waits for the interpreter, in order */
            qitem *q = cb_calloc(1, sizeof *q);
            q->msg = m;
            if (k->ctl_later_tail)
                k->ctl_later_tail->next = q;
            else
                k->ctl_later = q;
            k->ctl_later_tail = q;
            continue;
        }
        if (k->ctl_later && atomic_load(&k->interp_ready))
            control_later(k, false);  /* what came first goes first */
        dispatch(k, k->control, CH_CONTROL, m, st == KN_RECV_OK);
        kn_msg_free(m);
    }
    control_later(k, true);
    if (atomic_load(&k->stopping))
        stop_watchdog(k);
    return NULL;
}

/* Serves the shell socket until the interpreter is ready: kernel_info is
 * answered at once (frontends wait for it), everything else is queued. */
static void *startup_thread(void *arg)
{
    kn_kernel *k = arg;
    while (!atomic_load(&k->interp_ready) && !atomic_load(&k->stopping)) {
        zmq_pollitem_t it = {k->shell, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&it, 1, 2);
        if (n <= 0)
            continue;
        kn_msg *m = NULL;
        kn_recv_status st = recv_msg(k, k->shell, &m);
        if (!m) {
            if (st != KN_RECV_AGAIN && st != KN_RECV_CLOSED)
                log_drop("shell", st);
            continue;
        }
        if (st == KN_RECV_OK && strcmp(m->msg_type, "kernel_info_request") == 0) {
            wait_subscriber(k, 250);
            publish_status(k, &m->header_raw, "busy");
            cJSON *c = h_kernel_info(k, m, CH_SHELL);
            send_reply(k, k->shell, m, c, NULL);
            cJSON_Delete(c);
            publish_status(k, &m->header_raw, "idle");
            kn_msg_free(m);
            continue;
        }
        qitem *q = cb_calloc(1, sizeof *q);
        q->msg = m;
        /* remember a bad-JSON status in the message: reparse is not possible */
        if (st == KN_RECV_BAD_JSON)
            cJSON_AddBoolToObject(m->metadata, "__cellbox_bad_json", true);
        pthread_mutex_lock(&k->qlock);
        if (k->qtail)
            k->qtail->next = q;
        else
            k->qhead = q;
        k->qtail = q;
        pthread_mutex_unlock(&k->qlock);
    }
    return NULL;
}

/* ------------------------------------------------------------------ setup */

static void *bind_socket(kn_kernel *k, int type, int port, const char *name)
{
    void *s = zmq_socket(k->zctx, type);
    int linger = 1000, zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    int64_t maxsize = (int64_t)k->max_bytes;
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize);
    if (type == ZMQ_XPUB) {
        /* ZeroMQ never drops (no high-water mark): the kernel bounds the
         * queue itself, in bytes, before it sends (flow control, kernel.h),
         * so a status or reply it sends always arrives */
        zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero);
    }
    if (type == ZMQ_ROUTER) {
        int one = 1;
        zmq_setsockopt(s, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    }
    cb_autofree char *ep = kn_conn_endpoint(&k->conn, port);
    if (zmq_bind(s, ep) < 0) {
        int e = errno;
        fprintf(stderr, "cellbox kernel: cannot bind the %s socket to %s: %s%s\n", name, ep,
                zmq_strerror(e), e == EADDRINUSE ? " (is another kernel using this connection file?)" : "");
        zmq_close(s);
        return NULL;
    }
    return s;
}

static int setup_sockets(kn_kernel *k)
{
    struct {
        void **sock;
        int type, port;
        const char *name;
    } socks[] = {
        {&k->shell, ZMQ_ROUTER, k->conn.shell_port, "shell"},
        {&k->control, ZMQ_ROUTER, k->conn.control_port, "control"},
        {&k->iopub, ZMQ_XPUB, k->conn.iopub_port, "iopub"},
        {&k->stdin_sock, ZMQ_ROUTER, k->conn.stdin_port, "stdin"},
        {&k->hb, ZMQ_REP, k->conn.hb_port, "heartbeat"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(socks); i++) {
        *socks[i].sock = bind_socket(k, socks[i].type, socks[i].port, socks[i].name);
        if (!*socks[i].sock)
            return -1;
    }
    return 0;
}

static char *build_kernel_info(kn_kernel *k)
{
    cJSON *c = k->interp->kernel_info(k->interp->self);
    cb_json_set(c, "status", cJSON_CreateString("ok"));
    cb_json_set(c, "protocol_version", cJSON_CreateString(KN_PROTOCOL_VERSION));
    char *s = cb_json_print(c);
    cJSON_Delete(c);
    return s;
}

int kn_kernel_run(const kn_kernel_opts *opts, kn_interp *interp)
{
    kn_kernel *k = cb_calloc(1, sizeof *k);
    k->interp = interp;
    k->main_thread = pthread_self();
    k->max_bytes = opts->max_message_bytes ? opts->max_message_bytes : DEFAULT_MAX_BYTES;
    g_parse_nul = opts->parse_nul;
    k->execution_count = 1;
    pthread_mutex_init(&k->iopub_lock, NULL);
    pthread_mutex_init(&k->qlock, NULL);
    kn_meter_init(&k->meter);

    char *err = NULL;
    if (!opts->connection_file) {
        fprintf(stderr, "cellbox kernel: no connection file (use -f CONNECTION_FILE)\n");
        return 2;
    }
    if (kn_conn_load(&k->conn, opts->connection_file, &err) < 0) {
        fprintf(stderr, "cellbox kernel: %s\n", err);
        free(err);
        return 2;
    }
    if (kn_session_init(&k->sess, k->conn.signature_scheme, k->conn.key) < 0) {
        fprintf(stderr, "cellbox kernel: unsupported signature scheme %s\n", k->conn.signature_scheme);
        return 2;
    }
    snprintf(k->topic, sizeof k->topic, "kernel.%s.", k->sess.id);
    k->kernel_info_json = build_kernel_info(k);

    /* Only the main thread takes SIGINT: block it while the other threads
     * (ours and libzmq's) are created, so they inherit the blocked mask. */
    sigset_t sigint, old;
    sigemptyset(&sigint);
    sigaddset(&sigint, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigint, &old);
    /* Interrupts are this kernel's protocol: a SIGINT ignored by whoever
     * started it (a background job, nohup: `jupyter notebook &` in a
     * script) must not make it deaf, and Python installs its handler only
     * over the default action (ipykernel sets its own handler for each
     * cell). Blocked just above, so nothing can arrive in between. */
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);

    k->zctx = zmq_ctx_new();
    k->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    k->ctl_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (setup_sockets(k) < 0)
        return 1;

    pthread_t hb, ctl, st;
    pthread_create(&hb, NULL, hb_thread, k);
    pthread_create(&ctl, NULL, control_thread, k);
    pthread_create(&st, NULL, startup_thread, k);
    /* SIGINT stays blocked here too until the interpreter has started: the
     * startup thread answers kernel_info meanwhile, so a client may already
     * interrupt, and a KeyboardInterrupt inside Python's own start ("Failed
     * to import the site module") would kill the kernel. It stays pending
     * and arrives once the interpreter can take it. */

    publish_status(k, NULL, "starting");

    if (!opts->no_history) {
        cb_autofree char *hp = opts->history_file ? cb_strdup(opts->history_file) : kn_history_default_path();
        k->hist = kn_history_open(hp);
    } else {
        k->hist = kn_history_open(NULL);
    }

    k->host = (kn_host){.ctx = k, .publish = host_publish, .publish_parent = host_publish_parent, .input = host_input,
                        .parent_header = host_parent_header,
                        .history_session = kn_history_session(k->hist),
                        .history_file = kn_history_path(k->hist), .history_query = host_history_query,
                        .connection_file = opts->connection_file, .output_room = host_output_room,
                        .output_may_wait = host_output_may_wait};
    int status = 0;
    bool started = interp->start(interp->self, &k->host) == 0;
    sigset_t pending;
    bool early_interrupt = sigpending(&pending) == 0 && sigismember(&pending, SIGINT);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!started) {
        fprintf(stderr, "cellbox kernel: the interpreter failed to start\n");
        status = 1;
        request_stop(k, false);
    }

    atomic_store(&k->interp_ready, true);
    uint64_t one = 1;
    ssize_t CB_UNUSED w = write(k->ctl_wake_fd, &one, sizeof one);  /* debug_requests kept meanwhile */
    pthread_join(st, NULL);  /* the shell socket is ours from here on */
    /* Tests only (CELLBOX_TEST_STARTUP_QUEUE_DELAY_MS): a pause between the
     * interpreter's start and the requests that came meanwhile, for an
     * interrupt to land there */
    const char *qd = getenv("CELLBOX_TEST_STARTUP_QUEUE_DELAY_MS");
    if (qd && atoi(qd) > 0 && atoi(qd) <= 10000)
        nanosleep(&(struct timespec){atoi(qd) / 1000, (long)(atoi(qd) % 1000) * 1000000}, NULL);

    /* requests that arrived during startup, in order (executes after an
     * error are aborted by handle_shell like any queued request) */
    pthread_mutex_lock(&k->qlock);
    qitem *q = k->qhead;
    k->qhead = k->qtail = NULL;
    pthread_mutex_unlock(&k->qlock);
    k->keep_interrupt = early_interrupt && started;
    k->startup_queue = true;
    while (q) {
        qitem *next = q->next;
        if (atomic_load(&k->stopping)) {
            kn_msg_free(q->msg);
        } else {
            bool bad = cb_json_bool(q->msg->metadata, "__cellbox_bad_json", false);
            handle_shell(k, q->msg, bad ? KN_RECV_BAD_JSON : KN_RECV_OK);
        }
        free(q);
        q = next;
    }
    k->startup_queue = false;
    if (k->keep_interrupt) {  /* no cell was waiting: an interrupt while idle, as ipykernel drops it */
        k->keep_interrupt = false;
        if (interp->clear_interrupt)
            interp->clear_interrupt(interp->self);
    }
    if (k->abort_queue)
        abort_queued(k);

    bool due = false;  /* the interpreter's background work is due */
    while (!atomic_load(&k->stopping)) {
        int bg_fd = -1;
        long timeout = interp->background ? interp->background(interp->self, due, &bg_fd) : -1;
        if (timeout == 0)  /* work is ready (a task a cell just made): its turn comes before the
                            * next request, as in an asyncio loop, where ready callbacks run
                            * before new I/O is looked at */
            timeout = interp->background(interp->self, true, &bg_fd);
        zmq_pollitem_t items[3] = {{k->shell, 0, ZMQ_POLLIN, 0}, {NULL, k->wake_fd, ZMQ_POLLIN, 0},
                                   {NULL, bg_fd, ZMQ_POLLIN, 0}};
        if (interp->idle)
            interp->idle(interp->self, true);
        int n = zmq_poll(items, bg_fd >= 0 ? 3 : 2, timeout);
        if (interp->idle)
            interp->idle(interp->self, false);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        due = n == 0 || (bg_fd >= 0 && items[2].revents);
        if (items[1].revents) {
            uint64_t v;
            ssize_t CB_UNUSED r = read(k->wake_fd, &v, sizeof v);
            continue;
        }
        for (;;) {
            kn_msg *m = NULL;
            kn_recv_status rs = recv_msg(k, k->shell, &m);
            if (rs == KN_RECV_AGAIN || rs == KN_RECV_CLOSED)
                break;
            if (!m) {
                log_drop("shell", rs);
                continue;
            }
            handle_shell(k, m, rs);
            if (k->abort_queue)
                abort_queued(k);
            if (atomic_load(&k->stopping) || interp->background)
                break;  /* with background work: its turn (at the top) before the next request */
        }
    }

    if (interp->stop && started)
        interp->stop(interp->self, atomic_load(&k->restart));
    atomic_store(&k->interp_done, true);
    pthread_join(ctl, NULL);
    kn_history_free(k->hist);
    zmq_close(k->shell);
    zmq_close(k->control);
    zmq_close(k->stdin_sock);
    pthread_mutex_lock(&k->iopub_lock);
    zmq_close(k->iopub);
    k->iopub = NULL;
    pthread_mutex_unlock(&k->iopub_lock);
    zmq_ctx_shutdown(k->zctx);  /* wakes the heartbeat thread with ETERM */
    pthread_join(hb, NULL);
    zmq_ctx_term(k->zctx);
    close(k->wake_fd);
    close(k->ctl_wake_fd);
    free(k->cur_parent.data);
    free(k->kernel_info_json);
    kn_session_clear(&k->sess);
    kn_conn_clear(&k->conn);
    pthread_mutex_destroy(&k->iopub_lock);
    pthread_mutex_destroy(&k->qlock);
    free(k);
    return status;
}
