/* sandbox/sb_ctx.h: code contexts, a Python interpreter inside a sandbox.
 *
 * A context is a `cellbox kernel` started inside the sandbox as a background
 * process ("context-<id>", so it has the sandbox's whole isolation and shows
 * in the process list), driven by the server over the Jupyter protocol with
 * the kernel client of kernel/client.h. The kernel listens on unix sockets
 * in the sandbox's /tmp/.cellbox; the server's sockets reach it through a
 * guard: unix sockets in a private folder, relayed by a thread to the
 * kernel's, which it finds through the sandbox's root (so no port is ever
 * opened, and "network: none" sandboxes work). The binary is the server's own,
 * bind-mounted read-only at /run/cellbox/cellbox by the generic plan.
 *
 * Code in a context owns its kernel's process and so its connections to
 * the server: what may come on them is bounded (a message of at most
 * 128 MiB on IOPub, 16 MiB on shell, stdin and control, 4096 parts; at most
 * one message queued per channel besides the one being read). Past a bound
 * the connection is cut, the run ends with 502 SERVICE_NOT_RESPONDING (an
 * SSE error event) saying which, and the context is restarted: same id, a
 * new kernel. A cut between runs restarts it at once (a thread of its own
 * does); the record counts the restarts and says when and why (restarts,
 * restartedAt, restartReason), and the next run, on the new kernel, says so
 * (a first stderr chunk, and "restarted": {at, reason} in a JSON reply).
 * POST .../restart goes the same way (sb_ctx_restart), with no notice to
 * the runs sent after its reply.
 *
 * A run sends one execute_request and turns the kernel's replies into the
 * Cloudflare/E2B "Execution" shape: results (text, html, png, ... and
 * isMainResult), logs {stdout[], stderr[]}, error {name, value, traceback},
 * executionCount; or into server-sent events as they arrive. One run at a
 * time per context (others wait their turn). A run past its timeoutMs, or
 * whose client hangs up, is interrupted; the context stays usable. A
 * streamed run goes on whether or not its client reads (a thread of its
 * own drives it; its events wait for the client, at most 32 MiB of them,
 * output past that dropped with a notice): interrupts, restarts, its
 * timeout and the runs behind it never wait for a client.
 *
 * Contexts live as long as their sandbox runs: a stop (sleep, delete,
 * restart, agent death) ends them and their ids are then unknown.
 *
 * Threads: the list is box->contexts under box->mu; each context has its own
 * run lock. A streamed run's thread holds the run slot and the kernel
 * client; the HTTP stream only drains the run's queue (its own lock, taken
 * last). Ownership: sb_ctx_* JSON results are owned by the caller.
 */
#ifndef SB_CTX_H
#define SB_CTX_H

#include <cjson/cJSON.h>

#include "sandbox/sb_box.h"
#include "sandbox/sb_http.h"

int sb_ctx_create(sb_box *b, const cJSON *body, cJSON **out, sb_error *err);
cJSON *sb_ctxs_list_json(sb_box *b);
cJSON *sb_ctx_json(sb_box *b, const char *id);     /* NULL if unknown */
int sb_ctx_delete(sb_box *b, const char *id, sb_error *err);
/* POST /code: replies itself (JSON or SSE) and returns 0, or -1 + err. */
int sb_ctx_run(sb_req *r, sb_box *b, const cJSON *body, sb_error *err);

/* POST .../contexts/{ctx}/input {"value"}: answers the input() a streamed
 * run waits in (its SSE stream said input_request). */
int sb_ctx_input(sb_box *b, const char *id, const cJSON *body, sb_error *err);

/* POST .../contexts/{ctx}/restart: a new kernel for the context, in place
 * of its own (same context, id, language, cwd and env), nothing of the old
 * state (E2B's restartCodeContext). A run in progress ends at once with the
 * error ContextRestarted; runs waiting for their turn run on the new kernel
 * (told so, as after a cut). Counts in the record's restarts. Restarts
 * asked together share one new kernel. *out: the context's record. */
int sb_ctx_restart(sb_box *b, const char *id, cJSON **out, sb_error *err);

/* POST .../contexts/{ctx}/interrupt: the code running in the context gets a
 * KeyboardInterrupt, as from a frontend's interrupt button (its run ends
 * with that error; the context keeps its state). *interrupted: whether a
 * run was in progress. */
int sb_ctx_interrupt(sb_box *b, const char *id, bool *interrupted, sb_error *err);

void sb_ctxs_on_stop(sb_box *b);   /* box->mu held: every context ends */
void sb_ctxs_free(sb_box *b);

#endif
