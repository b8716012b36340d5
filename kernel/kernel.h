/* kernel/kernel.h: the kernel core: sockets, threads, dispatch and the
 * protocol invariants, with the interpreter plugged in through kn_interp.
 *
 * Threads (all but the interpreter's are started by kn_kernel_run):
 *   interp  - the caller's thread (the process main thread, so Python gets
 *             signals): runs kn_interp hooks for execute/complete/inspect/...
 *   shell   - reads the shell ROUTER, answers kernel_info itself, queues the
 *             rest for the interp thread
 *   control - control ROUTER: kernel_info, interrupt, shutdown, always live
 *   hb      - heartbeat REP echo
 * IOPub is one PUB socket shared under a mutex; stdin belongs to the interp
 * thread (input() runs there).
 *
 * IOPub flow control. A frontend can stay connected and stop reading (a
 * jupyter console suspended with Ctrl-Z, a stalled server): what waits for
 * it is measured in bytes (kn_meter, session.h), ZeroMQ itself never drops
 * (no high-water mark: one message can be 8 MiB, a count bounds nothing).
 *   - Output (stream, display_data, update_display_data, clear_output,
 *     comm_msg) is sent while less than KN_IOPUB_QUEUE_BYTES wait. Beyond,
 *     the publishing thread waits for the reader (back-pressure: a print or
 *     display slows down to the reader's pace; nothing is lost). The queue
 *     holds about the bound plus the message each publishing thread had in
 *     hand (the capture's pump, which defers instead of waiting, one batch),
 *     plus what is never dropped (below).
 *   - A reader that reads nothing for KN_IOPUB_STALL_S seconds while output
 *     waits is stalled: output is dropped (counted) until the queue has
 *     drained below half the bound, so one stuck subscriber cannot hang a
 *     cell. An interrupt (interrupt_request or SIGINT) or a shutdown that
 *     comes while a thread waits declares the stall at once: a blocked
 *     print is interruptible. (A SIGINT that the system hands to another
 *     thread of the user's, not the waiting interp thread, only counts at
 *     the stall limit; interrupt_request always counts.)
 *   - What was dropped is told once, as a stderr stream message
 *     ("[cellbox] N output messages (X MiB) were dropped: ...") parented to
 *     the request, before the next output once the reader has caught up or
 *     else before the request's idle status, and logged.
 *   - Everything else (status, execute_input, execute_result, error,
 *     comm_open/close, debug_event, the notice) is never dropped and never
 *     waits, so busy/idle keep their order around a cell's output (idle
 *     follows the last output, which jupyter_client relies on), and the
 *     control thread (interrupt, shutdown) and heartbeat never block on a
 *     reader. With several subscribers, the slowest sets the pace.
 *
 * The core enforces the rules so an interpreter cannot forget them (xeus):
 * busy/idle around every request with the parent header set, execute_input,
 * the execution counter, execute_reply fields, aborting queued executes after
 * an error, history storage. The interpreter holds no sockets: it publishes
 * through kn_host callbacks.
 *
 * Ownership: hooks returning cJSON* return an owned reply content (NULL is
 * turned into an error reply by the core). Arguments are borrowed.
 */
#ifndef KN_KERNEL_H
#define KN_KERNEL_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "kernel/conn.h"
#include "kernel/wire.h"

#define KN_IOPUB_QUEUE_BYTES ((size_t)32 << 20)  /* output waits beyond this (see above) */
#define KN_IOPUB_STALL_S 10                       /* nothing read for this long: drop output */

/* What the kernel offers the interpreter. Callable from the interp thread;
 * publish() is also safe from other threads (it takes the IOPub lock).
 * publish() of output may wait for a slow frontend (flow control above):
 * call it without holding locks the control thread needs. */
typedef struct kn_host {
    void *ctx;
    /* Publish msg_type on IOPub with the parent header of the request being
     * handled. content: JSON text (len 0 = strlen). */
    void (*publish)(void *ctx, const char *msg_type, const char *content, size_t len,
                    const kn_bytes *buffers, size_t n_buffers);
    /* The same with the parent header kernel code chose (JSON text of a
     * header object; "{}" = none), for kernel.session.send(). */
    void (*publish_parent)(void *ctx, const char *parent, size_t parent_len, const char *msg_type,
                           const char *content, size_t len, const kn_bytes *buffers, size_t n_buffers);
    /* Ask the frontend for a line of input. Returns KN_INPUT_OK with an owned
     * *value, KN_INPUT_NOT_ALLOWED when the request had allow_stdin false,
     * KN_INPUT_INTERRUPTED when poll_interrupt(pctx) returned true (it is
     * called every few ms while waiting), KN_INPUT_FAILED on shutdown. */
    int (*input)(void *ctx, const char *prompt, bool password, char **value,
                 bool (*poll_interrupt)(void *pctx), void *pctx);
    /* The header (JSON text, owned by the caller) of the shell request being
     * handled, or NULL when there is none. Thread-safe. */
    char *(*parent_header)(void *ctx);
    /* Session number of the history store (for %history-like features). */
    int history_session;
    /* The history store's file (borrowed), NULL when kept in memory. */
    const char *history_file;
    /* A history_request's content (JSON text) -> the reply's content (JSON
     * text, owned). Only from the thread running the interpreter. */
    char *(*history_query)(void *ctx, const char *request);
    /* The connection file the kernel was started with (borrowed; for
     * %connect_info). */
    const char *connection_file;
    /* IOPub flow control (above): true when output published now would not
     * wait for a slow frontend. Thread-safe; NULL means always. */
    bool (*output_room)(void *ctx);
    /* Sets whether publish() from the calling thread may wait for a slow
     * frontend; returns the setting it had (true for a new thread). false
     * for a thread that defers its own output while output_room() is false
     * (the capture's pump), or a caller holding a lock that other threads
     * need (Python's GIL): its output goes over the bound instead of
     * waiting. May be NULL. */
    bool (*output_may_wait)(void *ctx, bool may);
} kn_host;

enum { KN_INPUT_OK = 0, KN_INPUT_NOT_ALLOWED, KN_INPUT_INTERRUPTED, KN_INPUT_FAILED };

typedef struct kn_exec_req {
    const char *code;
    bool silent;
    bool store_history;
    bool allow_stdin;
    bool stop_on_error;
    const cJSON *user_expressions;   /* object or NULL */
    int execution_count;             /* the number this cell gets (In[n]) */
    bool interrupted;                /* an interrupt came for this cell before it started
                                      * (while the interpreter started): it raises
                                      * KeyboardInterrupt as the cell's code begins */
} kn_exec_req;

typedef struct kn_interp {
    void *self;
    /* Static kernel_info fields (language_info, implementation_version,
     * banner, help_links...). Called from any thread, even before start(). */
    cJSON *(*kernel_info)(void *self);
    /* Heavy initialisation, on the interp thread, once. -1 = fatal. */
    int (*start)(void *self, const kn_host *host);
    /* Must publish all of the request's output before returning. Returns
     * {status, [ename, evalue, traceback], [payload], [user_expressions]}. */
    cJSON *(*execute)(void *self, const kn_exec_req *req);
    cJSON *(*complete)(void *self, const cJSON *content);
    cJSON *(*inspect)(void *self, const cJSON *content);
    cJSON *(*is_complete)(void *self, const cJSON *content);
    cJSON *(*comm_info)(void *self, const cJSON *content);
    /* comm_open / comm_msg / comm_close from the frontend. */
    void (*comm)(void *self, const char *msg_type, const kn_msg *msg);
    /* Process is about to exit (after shutdown_request); may be NULL. */
    void (*stop)(void *self, bool restart);
    /* Pre-execution interrupt flush: discard a KeyboardInterrupt that
     * arrived while idle; true when there was one. May be NULL. */
    bool (*clear_interrupt)(void *self);
    /* The core is about to block waiting for requests (entering=true) or
     * has woken up (false): an interpreter with a global lock releases it
     * here so its background threads run. May be NULL. */
    void (*idle)(void *self, bool entering);
    /* Work the interpreter does between requests, like ipykernel's event
     * loop running the tasks a cell left behind. Called on the interp thread
     * (not idle) each time the core is about to wait: with run=false it only
     * tells when it wants to be called again, with run=true it first does
     * the work that is due, without blocking. Returns the longest wait in ms
     * before the next call (-1: none needed) and in *fd a descriptor whose
     * readability also means work is due (-1: none). May be NULL. */
    int (*background)(void *self, bool run, int *fd);
    /* A debug_request (a Debug Adapter Protocol request in its content) ->
     * the debug_reply's content (owned by the caller). Called on the control
     * thread, also while a cell runs or is paused at a breakpoint; the
     * interpreter publishes the debug_event messages itself (kn_host.
     * publish_parent, parented to the debug request). NULL: no debugger (the
     * core answers success: false). */
    cJSON *(*debug)(void *self, const kn_msg *msg);
} kn_interp;

/* A failed Debug Adapter Protocol response to request (a debug_request's
 * content): {type: response, request_seq, success: false, command, message}.
 * Owned by the caller. */
cJSON *kn_debug_failure(const cJSON *request, const char *message);

typedef struct kn_kernel_opts {
    const char *connection_file;
    const char *history_file;      /* NULL: default under $XDG_DATA_HOME/cellbox */
    bool no_history;
    size_t max_message_bytes;      /* 0: default (256 MiB) */
    /* Parses a content or metadata frame that holds "\u0000" into strings
     * with CB_JSON_NUL (base/json.h), so a NUL in code, input or comm data
     * is kept instead of ending the string there. NULL: cJSON (cuts). */
    kn_json_parse_fn parse_nul;
} kn_kernel_opts;

/* Binds the sockets (clear error + -1 on failure: missing/invalid
 * connection file, port in use), runs until shutdown. Returns the exit
 * status for the process. Must be called on the main thread. */
int kn_kernel_run(const kn_kernel_opts *opts, kn_interp *interp);

#endif
