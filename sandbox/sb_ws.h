/* sandbox/sb_ws.h: the WebSocket frame codec (RFC 6455), pure functions over
 * byte buffers: no sockets, no threads, no allocation but the caller's
 * cb_bufs. The server side of a WebSocket (sb_pty.c) feeds what it reads
 * into sb_ws_read and sends what sb_ws_encode appends.
 *
 * Ownership: sb_ws_reader is embedded by the caller (sb_ws_reader_init /
 * sb_ws_reader_clear); a message returned by sb_ws_read points into the
 * reader and stays valid until the next call on it.
 */
#ifndef SB_WS_H
#define SB_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

enum {
    SB_WS_CONT = 0x0,
    SB_WS_TEXT = 0x1,
    SB_WS_BINARY = 0x2,
    SB_WS_CLOSE = 0x8,
    SB_WS_PING = 0x9,
    SB_WS_PONG = 0xA,
};

/* Close codes (RFC 6455 section 7.4.1). */
enum {
    SB_WS_CLOSE_NORMAL = 1000,
    SB_WS_CLOSE_GOING_AWAY = 1001,
    SB_WS_CLOSE_PROTOCOL = 1002,
    SB_WS_CLOSE_NO_STATUS = 1005,  /* never sent: a close frame without a code */
    SB_WS_CLOSE_BAD_DATA = 1007,
    SB_WS_CLOSE_TOO_BIG = 1009,
    SB_WS_CLOSE_INTERNAL = 1011,
};

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: base64(SHA-1(key
 * + GUID)), 28 characters and a NUL. */
void sb_ws_accept_key(const char *client_key, char out[29]);

/* Is the key a valid Sec-WebSocket-Key (base64 of 16 bytes)? */
bool sb_ws_key_valid(const char *key);

/* Append one frame. mask: NULL for a server's frame, 4 bytes for a
 * client's (the payload is masked with them). */
void sb_ws_encode(cb_buf *out, int opcode, bool fin, const void *data, size_t len,
                  const uint8_t *mask);
/* A close frame with a code (and a reason, may be NULL). */
void sb_ws_encode_close(cb_buf *out, int code, const char *reason);

bool sb_ws_utf8_valid(const char *s, size_t len);

typedef struct sb_ws_reader {
    bool need_mask;       /* server side: unmasked frames are a protocol error */
    size_t max_message;   /* largest message (all fragments together) */
    int msg_opcode;       /* TEXT/BINARY of the message being assembled, 0 if none */
    bool msg_done;        /* msg was handed out: reset it on the next call */
    cb_buf msg;           /* the data message being assembled */
    cb_buf ctl;           /* the last control frame's payload */
    size_t in_pos;        /* bytes at the front of the input already taken */
} sb_ws_reader;

typedef struct sb_ws_msg {
    int opcode;           /* TEXT, BINARY (whole messages), CLOSE, PING, PONG */
    const char *data;
    size_t len;
    int close_code;       /* CLOSE: the peer's code, SB_WS_CLOSE_NO_STATUS if none */
} sb_ws_msg;

void sb_ws_reader_init(sb_ws_reader *r, bool need_mask, size_t max_message);
void sb_ws_reader_clear(sb_ws_reader *r);

/* Take the next complete message or control frame from the front of in
 * (the bytes used are consumed: all of them by the time it returns 0, so
 * between calls the caller only appends to in; control frames come out as they arrive,
 * even between the fragments of a message). Returns 1 with *m set, 0 when
 * more bytes are needed, -1 on a protocol error with *close_code set: 1002
 * (bad frame: unmasked, reserved bits or opcodes, bad fragmentation, bad
 * control frame), 1007 (text or close reason not UTF-8), 1009 (message
 * larger than max_message, found from the header alone). After -1 the
 * connection must be closed. */
int sb_ws_read(sb_ws_reader *r, cb_buf *in, sb_ws_msg *m, int *close_code);

#endif
