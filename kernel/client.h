/* kernel/client.h: the client side of the Jupyter protocol, for any
 * installed kernel (what jupyter_client's KernelManager + BlockingKernelClient
 * do, in C). Used by the notebook executor.
 *
 *   kn_client_start()     launch the kernel from its kernelspec with a fresh
 *                         connection file and key, connect the five channels,
 *                         wait until it is ready (kernel_info reply AND IOPub
 *                         traffic, like jupyter_client's wait_for_ready)
 *   kn_client_send()      a request on shell or control
 *   kn_client_poll()      the next message from any channel, or why none
 *                         came: timeout, the kernel process exited, the
 *                         heartbeat was lost, or the caller's cancel fd fired
 *   kn_client_interrupt() SIGINT to the kernel's process group, or an
 *                         interrupt_request, per the spec's interrupt_mode
 *   kn_client_shutdown()  shutdown_request, then SIGTERM, then SIGKILL
 *
 * The kernel runs in its own session (setsid), so signals and the final
 * clean-up reach exactly its process group. Heartbeat pings are sent from
 * inside kn_client_poll(): a kernel is only watched while someone waits on it.
 *
 * A kn_client belongs to one thread. Ownership: kn_client_start() returns an
 * owned client (kn_client_free shuts the kernel down if still running);
 * messages from kn_client_poll() are owned (kn_client_msg_free); *err owned.
 */
#ifndef KN_CLIENT_H
#define KN_CLIENT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <sys/types.h>

#include "kernel/conn.h"
#include "kernel/kernelspec.h"
#include "kernel/session.h"  /* KN_MSG_ID_LEN */
#include "kernel/wire.h"

typedef enum { KN_CH_SHELL = 0, KN_CH_IOPUB, KN_CH_STDIN, KN_CH_CONTROL } kn_channel;

typedef struct kn_client_opts {
    const char *cwd;             /* the kernel's working directory; NULL = ours */
    double startup_timeout;      /* seconds until ready; <= 0 means 60 */
    double hb_interval;          /* seconds between heartbeat pings; <= 0 means 1 */
    double hb_timeout;           /* no echo for this long = dead; 0 = heartbeat off */
    const char *transport;       /* "tcp" (default) or "ipc" */
    /* Parser for parent_header/metadata/content (e.g. one that keeps number
     * spellings); NULL = cJSON. Must return NULL or an object/value. */
    cJSON *(*parse)(const char *data, size_t len);
    int cancel_fd;               /* readable = stop waiting (KN_POLL_CANCELLED); -1 = none */
    int stdout_fd, stderr_fd;    /* the kernel's stdout/stderr; -1 = inherit */
    /* > 0: bound what an untrusted kernel can make us buffer. A message
     * part (ZeroMQ frame) larger than this drops its connection before it
     * is read (libzmq's ZMQ_MAXMSGSIZE), at most KN_CLIENT_BOUNDED_HWM
     * messages wait per channel (KN_CLIENT_BOUNDED_HWM_IOPUB on IOPub: a
     * run of many small outputs would otherwise make the kernel wait for
     * us message by message), and a dropped connection makes
     * kn_client_poll() say KN_POLL_LOST from then on. libzmq cannot bound
     * the number of parts of one message nor their sum (it queues a message
     * only once complete): a caller that must, puts a relay that reads the
     * framing in front (sandbox/sb_ctx.c's guard). 0 = no bound. */
    size_t max_frame;
} kn_client_opts;

#define KN_CLIENT_BOUNDED_HWM 1
#define KN_CLIENT_BOUNDED_HWM_IOPUB 3

#define KN_CLIENT_OPTS_INIT {.cancel_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .hb_timeout = 10}

typedef struct kn_client_msg {
    kn_channel channel;
    const char *msg_type;    /* borrowed from header */
    const char *msg_id;      /* borrowed from header */
    const char *parent_id;   /* borrowed from parent ("" when none) */
    const char *date;        /* header date ("" when none) */
    cJSON *header, *parent, *metadata, *content;
    kn_bytes *buffers;
    size_t n_buffers;
} kn_client_msg;

void kn_client_msg_free(kn_client_msg *m);

typedef enum {
    KN_POLL_MSG = 0,
    KN_POLL_TIMEOUT,
    KN_POLL_DIED,        /* the kernel process exited (see kn_client_exit_status) */
    KN_POLL_HB_LOST,     /* no heartbeat echo within hb_timeout */
    KN_POLL_CANCELLED,   /* cancel_fd became readable */
    KN_POLL_LOST,        /* opts.max_frame set: a channel's connection was dropped
                          * (a part over the bound, or the kernel closed it);
                          * messages may be lost, the client is unusable */
} kn_poll_status;

typedef struct kn_client kn_client;

/* Launches the kernel and waits until it is ready. On success returns the
 * client and, when info is not NULL, the kernel_info_reply content (owned).
 * On failure the kernel is stopped, NULL is returned and *err says why
 * ("kernel 'x' exited during startup with status 1"). */
kn_client *kn_client_start(const kn_kernelspec *spec, const kn_client_opts *opts, cJSON **info, char **err);

/* Connects to a kernel that is already running (started by someone else,
 * e.g. inside a sandbox): conn gives transport, ip, ports and key. zctx is
 * the ZeroMQ context to use (borrowed, it must outlive the client; NULL =
 * a context of the client's own). Waits until ready like kn_client_start.
 * The client has no process: liveness is the heartbeat (hb_timeout > 0),
 * interrupts are interrupt_requests, shutdown sends shutdown_request only. */
kn_client *kn_client_attach(const kn_conn *conn, void *zctx, const kn_client_opts *opts, cJSON **info,
                            char **err);

/* Sends msg_type with content (JSON text; NULL = "{}") on shell or control.
 * msg_id_out (KN_MSG_ID_LEN bytes) may be NULL. 0 or -1. */
int kn_client_send(kn_client *c, kn_channel ch, const char *msg_type, const char *content, char *msg_id_out);
/* kn_client_send with a parent header (a cJSON object; NULL = none). */
int kn_client_send_with_parent(kn_client *c, kn_channel ch, const char *msg_type, const char *content,
                               const cJSON *parent);
/* Answers an input_request (from kn_client_poll, channel stdin) with value. */
int kn_client_input_reply(kn_client *c, const kn_client_msg *request, const char *value);
/* An execute_request as nbclient sends it. */
int kn_client_execute(kn_client *c, const char *code, bool store_history, bool allow_stdin, bool stop_on_error,
                      char *msg_id_out);

/* Waits until timeout seconds (<= 0: just check) for the next message. */
kn_poll_status kn_client_poll(kn_client *c, double timeout, kn_client_msg **out);

int kn_client_interrupt(kn_client *c);
/* From now on, fd readable = KN_POLL_CANCELLED (-1 = none). */
void kn_client_set_cancel_fd(kn_client *c, int fd);
/* Stops the kernel: shutdown_request and up to grace seconds for it to
 * exit, then SIGTERM (grace again), then SIGKILL to its process group.
 * Processes it left in its process group are killed too. Idempotent.
 * Returns 0 when the kernel exited on its own after the request. */
int kn_client_shutdown(kn_client *c, double grace);
/* SIGKILL to the kernel's process group, now (a dead or stuck kernel). */
void kn_client_kill(kn_client *c);
void kn_client_free(kn_client *c);

bool kn_client_alive(kn_client *c);
pid_t kn_client_pid(const kn_client *c);
/* "exited with status 3" / "killed by signal 9 (Killed)"; "" while alive. */
const char *kn_client_exit_status(const kn_client *c);
const char *kn_client_session(const kn_client *c);

#endif
