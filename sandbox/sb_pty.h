/* sandbox/sb_pty.h: interactive terminals over WebSocket
 * (GET /v1/sandboxes/:id/pty, see docs/api.md "Terminal (PTY)").
 *
 * Server side (sb_pty.c): the route handler checks the token (header or
 * the "cellbox.bearer.<token>" subprotocol), the upgrade headers and the
 * session, starts an agent operation {"op":"pty"} and, after the 101,
 * relays: WebSocket binary messages <-> the terminal's bytes, JSON text
 * messages -> resize/input, the shell's exit -> {"type":"exit"} + close 1000.
 *
 * Agent side (sb_agent.c, op "pty"): the shim opens a pseudo-terminal,
 * starts bash on it as the sandbox user and pumps bytes. The operation
 * channel carries the frames of sb_proto.h plus SB_FRAME_RESIZE; both ends
 * use non-blocking sockets with bounded buffers (SB_PTY_BUF_MAX): a side
 * whose buffer towards a slow reader is full stops reading its source, so
 * nothing buffers without bound and input (Ctrl-C) still gets through.
 */
#ifndef SB_PTY_H
#define SB_PTY_H

#include <stddef.h>

#include "base/buf.h"
#include "sandbox/sb_http.h"

/* Resize the terminal (server->agent): payload "COLS ROWS". */
#define SB_FRAME_RESIZE 'W'

#define SB_PTY_BUF_MAX (1u << 20)     /* per direction, on each side */
#define SB_PTY_MSG_MAX (1u << 20)     /* largest client message (else close 1009) */
#define SB_PTY_DIM_MAX 1000           /* cols and rows: 1..1000 */

/* The route handler (a SB_ROUTE_NOAUTH route: it checks the token itself,
 * so that the subprotocol form works and a bad token is told apart from a
 * missing sandbox only after auth). */
int sb_pty_handler(sb_req *r);


#endif
