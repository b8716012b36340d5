/* sandbox/sb_pty.c: the server side of interactive terminals; see sb_pty.h.
 *
 * One connection = one thread (MHD's), which after the 101 owns two
 * non-blocking sockets: the client's and the agent operation channel. It
 * never blocks on either: four bounded buffers (client in/out, agent in/out)
 * and poll() decide who is read. It owns nothing else: closing the channel
 * is what ends the shell (the agent hangs it up, then kills its tree).
 */
#include "config.h"
#include "sandbox/sb_pty.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "sandbox/sb_api.h"
#include "sandbox/sb_proto.h"
#include "sandbox/sb_ws.h"

#define PROTO_PREFIX "cellbox.bearer."
#define PING_MS 30000          /* a ping after this much silence from the client */
#define CLOSE_WAIT_MS 2000     /* after our close frame: the client's, or we hang up */

/* ---- the handshake --------------------------------------------------------------- */

/* Does the comma-separated header value contain token (case-insensitive)? */
static bool has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = value; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0)
            return true;
        p = e;
    }
    return false;
}

/* Token from Authorization or from a "cellbox.bearer.<token>" subprotocol.
 * Every credential offered must be right. *proto: the subprotocol to
 * answer with (owned), or NULL. */
static bool pty_auth(sb_req *r, char **proto)
{
    *proto = NULL;
    bool seen = false, ok = true;
    const char *h = sb_req_header(r, "Authorization");
    if (h) {
        seen = true;
        ok = strncasecmp(h, "Bearer ", 7) == 0 && sb_http_token_equal(h + 7, strlen(h + 7));
    }
    const char *sp = sb_req_header(r, "Sec-WebSocket-Protocol");
    for (const char *p = sp; ok && p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ' && *e != '\t')
            e++;
        size_t n = (size_t)(e - p), pl = strlen(PROTO_PREFIX);
        if (n > pl && strncmp(p, PROTO_PREFIX, pl) == 0) {
            seen = true;
            ok = sb_http_token_equal(p + pl, n - pl);
            if (ok && !*proto)
                *proto = cb_printf_new("%.*s", (int)n, p);
        }
        p = e;
    }
    if (!seen || !ok) {
        free(*proto);
        *proto = NULL;
        return false;
    }
    return true;
}

static bool dim_param(sb_req *r, const char *name, int def, int *out)
{
    const char *v = sb_req_query(r, name);
    if (!v || !*v) {
        *out = def;
        return true;
    }
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < 1 || n > SB_PTY_DIM_MAX)
        return false;
    *out = (int)n;
    return true;
}

typedef struct pty_conn {
    sb_box *b;            /* referenced and acquired (keeps the sandbox awake) */
    int ch;               /* the agent operation channel */
} pty_conn;

static void pty_conn_free(void *p)
{
    pty_conn *x = p;
    if (!x)
        return;
    if (x->ch >= 0)
        close(x->ch);
    sb_box_release(x->b);
    sb_box_unref(x->b);
    free(x);
}

static void pty_relay(void *ctx, int cfd, const char *extra, size_t extra_len, void *handle);

int sb_pty_handler(sb_req *r)
{
    cb_autofree char *proto = NULL;
    if (!pty_auth(r, &proto))
        return sb_reply_err(r, SB_E_UNAUTHORIZED, "missing or wrong bearer token");
    const char *up = sb_req_header(r, "Upgrade");
    const char *conn = sb_req_header(r, "Connection");
    const char *ver = sb_req_header(r, "Sec-WebSocket-Version");
    const char *key = sb_req_header(r, "Sec-WebSocket-Key");
    if (!up || !has_token(up, "websocket") || !conn || !has_token(conn, "upgrade"))
        return sb_reply_err(r, SB_E_VALIDATION_FAILED,
                            "a terminal is a WebSocket: send Upgrade: websocket and Connection: Upgrade");
    if (!r->http11)
        return sb_reply_err(r, SB_E_VALIDATION_FAILED, "a WebSocket upgrade needs HTTP/1.1");
    if (!ver || strcmp(ver, "13") != 0)
        return sb_reply_err(r, SB_E_VALIDATION_FAILED, "Sec-WebSocket-Version must be 13");
    if (!sb_ws_key_valid(key))
        return sb_reply_err(r, SB_E_VALIDATION_FAILED, "Sec-WebSocket-Key must be 16 bytes in base64");
    int cols, rows;
    if (!dim_param(r, "cols", 80, &cols) || !dim_param(r, "rows", 24, &rows))
        return sb_reply_err(r, SB_E_VALIDATION_FAILED, "cols and rows must be integers from 1 to %d",
                            SB_PTY_DIM_MAX);
    const char *sid = sb_req_query(r, "sessionId");
    if (!sid || !*sid)
        sid = "default";
    const char *command = sb_req_query(r, "command");
    sb_box *b = sb_api_box(r);
    if (!b)
        return 0;
    sb_error err = {0};
    cb_autofree char *state = sb_session_state(b, sid);
    if (!state) {
        sb_box_unref(b);
        return sb_reply_err(r, SB_E_SESSION_NOT_FOUND, "session '%s' not found", sid);
    }
    if (sb_box_acquire(b, &err) < 0) {
        sb_box_unref(b);
        return sb_reply_error(r, &err);
    }
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", "pty");
    cJSON_AddNumberToObject(req, "cols", cols);
    cJSON_AddNumberToObject(req, "rows", rows);
    if (command && *command)
        cJSON_AddStringToObject(req, "command", command);
    cJSON_AddStringToObject(req, "state", state);
    int pid = 0;
    int ch = sb_exec_start(b, req, NULL, 0, false, &pid, &err);
    cJSON_Delete(req);
    if (ch < 0) {
        sb_box_release(b);
        sb_box_unref(b);
        return sb_reply_error(r, &err);
    }
    cb_info("pty", "%s: terminal %dx%d, shell pid %d", b->id, cols, rows, pid);
    pty_conn *x = cb_calloc(1, sizeof *x);
    x->b = b;
    x->ch = ch;
    char accept[29];
    sb_ws_accept_key(key, accept);
    const char *headers[] = {"Upgrade", "websocket", "Sec-WebSocket-Accept", accept,
                             proto ? "Sec-WebSocket-Protocol" : NULL, proto, NULL};
    return sb_reply_upgrade(r, headers, pty_relay, x, pty_conn_free);
}

/* ---- the relay ------------------------------------------------------------------- */

typedef struct relay {
    cb_buf cin, cout;     /* client: bytes read (unparsed), frames to send */
    cb_buf ain, aout;     /* agent: bytes read (unparsed), frames to send */
    sb_ws_reader rd;
    bool closing;         /* our close frame is queued: nothing more is sent */
    bool ws_done;         /* the client's close (or garbage) came: its bytes are dropped */
    bool client_eof, agent_eof;
    int64_t close_deadline;
} relay;

static void send_close(relay *s, int code, const char *reason)
{
    if (s->closing)
        return;
    sb_ws_encode_close(&s->cout, code, reason);
    s->closing = true;
    s->close_deadline = cb_mono_ns() + (int64_t)CLOSE_WAIT_MS * 1000000;
}

static void send_json(relay *s, cJSON *take)
{
    cb_autofree char *text = cb_json_print(take);
    cJSON_Delete(take);
    sb_ws_encode(&s->cout, SB_WS_TEXT, true, text, strlen(text), NULL);
}

/* Room for a reply the client's own messages ask for (a pong, an error)?
 * Not while the output towards it is full: a client that sends pings or
 * bad messages and reads nothing would otherwise grow cout without bound
 * (each 6-byte message asks for up to ~150 bytes). Such replies are
 * dropped then; a pong may be (RFC 6455 5.5.3), an error is only advice. */
static bool reply_room(const relay *s)
{
    return s->cout.len < SB_PTY_BUF_MAX;
}

static void send_error(relay *s, const char *msg)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "error");
    cJSON_AddStringToObject(j, "message", msg);
    send_json(s, j);
}

/* A JSON control message from the client. */
static void on_text(relay *s, const char *text, size_t len)
{
    cJSON *j = cb_json_parse(text, len);
    const char *type = cb_json_str(j, "type", "");
    if (strcmp(type, "resize") == 0) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "cols");
        const cJSON *rr = cJSON_GetObjectItemCaseSensitive(j, "rows");
        if (cJSON_IsNumber(c) && cJSON_IsNumber(rr) && c->valuedouble >= 1 &&
            c->valuedouble <= SB_PTY_DIM_MAX && rr->valuedouble >= 1 && rr->valuedouble <= SB_PTY_DIM_MAX) {
            char p[32];
            int n = snprintf(p, sizeof p, "%d %d", (int)c->valuedouble, (int)rr->valuedouble);
            sb_frame_put(&s->aout, SB_FRAME_RESIZE, p, (size_t)n);
        } else if (reply_room(s)) {
            send_error(s, "resize: cols and rows must be integers from 1 to 1000");
        }
    } else if (strcmp(type, "input") == 0 && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "data"))) {
        const char *d = cb_json_str(j, "data", "");
        sb_frame_put(&s->aout, SB_FRAME_STDIN, d, strlen(d));
    } else if (reply_room(s)) {
        send_error(s, "unknown message: send {\"type\":\"resize\",\"cols\":N,\"rows\":M}, "
                      "{\"type\":\"input\",\"data\":\"...\"} or binary input");
    }
    cJSON_Delete(j);
}

static void client_messages(relay *s)
{
    sb_ws_msg m;
    int code, rc;
    while (!s->ws_done && (rc = sb_ws_read(&s->rd, &s->cin, &m, &code)) != 0) {
        if (rc < 0) {
            send_close(s, code, code == SB_WS_CLOSE_TOO_BIG ? "message too big" : "protocol error");
            s->ws_done = true;  /* the stream cannot be trusted any more */
            break;
        }
        if (m.opcode == SB_WS_CLOSE) {
            send_close(s, m.close_code == SB_WS_CLOSE_NO_STATUS ? SB_WS_CLOSE_NORMAL : m.close_code, NULL);
            s->ws_done = true;
            break;
        }
        if (s->closing)
            continue;
        if (m.opcode == SB_WS_PING && reply_room(s))
            sb_ws_encode(&s->cout, SB_WS_PONG, true, m.data, m.len, NULL);
        else if (m.opcode == SB_WS_BINARY && m.len)
            sb_frame_put(&s->aout, SB_FRAME_STDIN, m.data, m.len);
        else if (m.opcode == SB_WS_TEXT)
            on_text(s, m.data, m.len);
    }
    if (s->ws_done)
        cb_buf_reset(&s->cin);
}

static void agent_frames(relay *s)
{
    char type;
    const char *data;
    size_t len;
    long n;
    while (!s->closing && (n = sb_frame_next(&s->ain, &type, &data, &len)) != 0) {
        if (n < 0) {
            send_close(s, SB_WS_CLOSE_INTERNAL, "bad frame from the sandbox");
            return;
        }
        if (type == SB_FRAME_STDOUT || type == SB_FRAME_STDERR) {
            sb_ws_encode(&s->cout, SB_WS_BINARY, true, data, len, NULL);
        } else if (type == SB_FRAME_JSON) {
            cJSON *ev = cb_json_parse(data, len);
            const char *name = cb_json_str(ev, "ev", "");
            if (strcmp(name, "exit") == 0) {
                cJSON *j = cJSON_CreateObject();
                cJSON_AddStringToObject(j, "type", "exit");
                cJSON_AddNumberToObject(j, "exitCode", (double)cb_json_int(ev, "exitCode", -1));
                const char *sig = cb_json_str(ev, "signal", NULL);
                if (sig)
                    cJSON_AddStringToObject(j, "signal", sig);
                send_json(s, j);
                send_close(s, SB_WS_CLOSE_NORMAL, NULL);
            } else if (strcmp(name, "error") == 0) {
                send_error(s, cb_json_str(ev, "message", "the terminal failed"));
                send_close(s, SB_WS_CLOSE_INTERNAL, NULL);
            }
            cJSON_Delete(ev);
        }
        cb_buf_consume(&s->ain, (size_t)n);
    }
}

/* Read what fd has into b (at most 64 KiB); false on EOF or error. */
static bool fill(int fd, cb_buf *b)
{
    char buf[64 * 1024];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
        cb_buf_append(b, buf, (size_t)n);
        return true;
    }
    return n < 0 && (errno == EAGAIN || errno == EINTR);
}

/* Write what fd takes from b; false on error. */
static bool flush(int fd, cb_buf *b)
{
    while (b->len) {
        ssize_t n = write(fd, b->data, b->len);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        cb_buf_consume(b, (size_t)n);
    }
    return true;
}

static void pty_relay(void *ctx, int cfd, const char *extra, size_t extra_len, void *handle)
{
    pty_conn *x = ctx;
    relay s = {CB_BUF_INIT, CB_BUF_INIT, CB_BUF_INIT, CB_BUF_INIT, {0}, false, false, false, false, 0};
    sb_ws_reader_init(&s.rd, true, SB_PTY_MSG_MAX);
    if (extra_len)
        cb_buf_append(&s.cin, extra, extra_len);
    fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) | O_NONBLOCK);
    fcntl(x->ch, F_SETFL, fcntl(x->ch, F_GETFL) | O_NONBLOCK);
    int64_t quiet_since = cb_mono_ns();
    for (;;) {
        client_messages(&s);
        agent_frames(&s);
        if (s.agent_eof && !s.closing)
            send_close(&s, SB_WS_CLOSE_INTERNAL, "the sandbox stopped");
        if (s.client_eof && !s.closing) {
            /* the connection dropped without a close frame */
            s.closing = true;
            s.close_deadline = 0;
        }
        if ((s.ws_done || s.client_eof) && x->ch >= 0) {
            /* nothing more will come from the client: hang up the shell */
            close(x->ch);
            x->ch = -1;
        }
        if (s.client_eof)
            cb_buf_reset(&s.cout);
        int64_t now = cb_mono_ns();
        /* done when our close is sent and the client has closed too (or
         * takes too long to: it may not even be reading) */
        if (s.closing && ((s.cout.len == 0 && s.client_eof) || now >= s.close_deadline))
            break;
        if (s.closing && s.cout.len == 0 && s.ws_done)
            shutdown(cfd, SHUT_WR);  /* then wait for its FIN, dropping what it sends */
        struct pollfd p[2];
        int np = 0, ic = -1, ia = -1;
        short cev = 0, aev = 0;
        if (!s.client_eof && (s.ws_done || s.aout.len < SB_PTY_BUF_MAX))
            cev |= POLLIN;
        if (s.cout.len && !s.client_eof)
            cev |= POLLOUT;
        if (cev)
            ic = np, p[np++] = (struct pollfd){cfd, cev, 0};
        if (x->ch >= 0 && !s.agent_eof) {
            if (!s.closing && s.cout.len < SB_PTY_BUF_MAX)
                aev |= POLLIN;
            if (s.aout.len)
                aev |= POLLOUT;
            if (aev)
                ia = np, p[np++] = (struct pollfd){x->ch, aev, 0};
        }
        int timeout = 1000;
        if (s.closing && s.close_deadline - now < 1000000000LL)
            timeout = (int)((s.close_deadline - now) / 1000000) + 1;
        int rc = poll(p, (nfds_t)np, timeout);
        if (rc < 0 && errno != EINTR)
            break;
        now = cb_mono_ns();
        if (rc <= 0) {
            if (!s.closing && now - quiet_since > (int64_t)PING_MS * 1000000) {
                sb_ws_encode(&s.cout, SB_WS_PING, true, NULL, 0, NULL);
                quiet_since = now;
            }
            continue;
        }
        if (ic >= 0 && (p[ic].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (!fill(cfd, &s.cin))
                s.client_eof = true;
            quiet_since = now;
        }
        if (ic >= 0 && (p[ic].revents & POLLOUT) && !flush(cfd, &s.cout))
            s.client_eof = true;
        if (ia >= 0 && (p[ia].revents & (POLLIN | POLLHUP | POLLERR)) && (aev & POLLIN) &&
            !fill(x->ch, &s.ain))
            s.agent_eof = true;
        if (ia >= 0 && (p[ia].revents & POLLOUT) && !flush(x->ch, &s.aout))
            s.agent_eof = true;
    }
    cb_info("pty", "%s: terminal closed", x->b->id);
    if (x->ch >= 0) {
        close(x->ch);
        x->ch = -1;
    }
    sb_ws_reader_clear(&s.rd);
    cb_buf_clear(&s.cin), cb_buf_clear(&s.cout), cb_buf_clear(&s.ain), cb_buf_clear(&s.aout);
    sb_upgrade_close(handle);
}
