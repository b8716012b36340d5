/* sandbox/sb_proto.h: the protocol between the server and a sandbox's agent.
 *
 * Two kinds of channel:
 *  - The control channel: one SOCK_SEQPACKET socketpair per sandbox, made
 *    before the agent starts (the agent sees it as fd 3). The agent sends one
 *    "ready" record after setup; the server then sends only "open" records,
 *    each carrying a fresh connected socket (SCM_RIGHTS). EOF on it means the
 *    server is gone: the agent exits and the kernel ends the sandbox.
 *  - One operation channel per operation (exec, background process, and later
 *    code contexts and port proxies): a SOCK_STREAM socket whose other end the
 *    agent hands to a fresh "shim" process. It carries frames
 *        [u32 payload length, little endian][u8 type][payload]
 *    The first frame is always a JSON request ('J'); see SB_FRAME_* below.
 *    Closing it cancels the operation unless the request was "detach": true.
 *
 * Frame types (direction):
 *   J  JSON: request (server->agent) or event (agent->server):
 *        {"ev":"start","pid":N}
 *        {"ev":"exit","exitCode":N,"signal":S,"timedOut":B,"durationMs":D,"state":"..."}
 *        {"ev":"error","code":"...","message":"..."}
 *        {"ev":"stdin","bytes":N}  (background processes) stdin bytes that
 *                  left the shim's queue: written to the pipe, or dropped
 *   O  stdout bytes (agent->server)      E  stderr bytes (agent->server)
 *   I  stdin bytes (server->agent)       C  close stdin (server->agent)
 *   K  signal the command's tree: payload "SIG GRACE_MS" (server->agent);
 *      with GRACE_MS > 0 the tree gets SIGKILL that long after SIG.
 *
 * Ownership: sb_frame_read fills a caller-owned cb_buf; nothing here keeps
 * state. All calls are blocking and retry on EINTR; they return 0 on success,
 * -1 with errno on error, and sb_frame_read returns 1 on a clean EOF.
 */
#ifndef SB_PROTO_H
#define SB_PROTO_H

#include <stdint.h>

#include "base/buf.h"

#define SB_FRAME_JSON 'J'
#define SB_FRAME_STDOUT 'O'
#define SB_FRAME_STDERR 'E'
#define SB_FRAME_STDIN 'I'
#define SB_FRAME_STDIN_CLOSE 'C'
#define SB_FRAME_KILL 'K'

#define SB_FRAME_MAX (64u << 20)   /* largest payload accepted */
#define SB_CHUNK (64u << 10)       /* output is sent in chunks up to this */

int sb_frame_write(int fd, char type, const void *data, size_t len);
int sb_frame_write_str(int fd, char type, const char *s);
/* Read one frame: *type and payload (replacing buf's content). */
int sb_frame_read(int fd, char *type, cb_buf *payload);

/* Buffered frames for non-blocking sockets (both sides): append one frame;
 * or find the first complete frame in `in`: returns its whole size (header
 * included) with *type, *data, *len set, 0 when incomplete, -1 when its
 * declared size is over SB_FRAME_MAX. */
void sb_frame_put(cb_buf *out, char type, const void *data, size_t len);
long sb_frame_next(const cb_buf *in, char *type, const char **data, size_t *len);

/* Control channel: send/receive one record with an optional fd. recv returns
 * the record length (0 on EOF), the received fd in *fd_out (or -1). */
int sb_ctl_send(int sock, const void *data, size_t len, int fd);
ssize_t sb_ctl_recv(int sock, void *data, size_t cap, int *fd_out);

/* Make a new operation channel on a sandbox's control socket: returns the
 * server's end (owned) or -1 with errno. */
int sb_ctl_open_channel(int ctl);

#endif
