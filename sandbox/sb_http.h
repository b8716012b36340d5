/* sandbox/sb_http.h: the HTTP layer of `cellbox serve` (libmicrohttpd).
 *
 * It knows routes, bodies, auth and replies, and nothing of sandboxes. A
 * route is a method plus a pattern ("/v1/sandboxes/:id/exec"; ":x" captures
 * one path segment into r->params). For each request the dispatcher
 * (sb_http.c) checks the token, enforces the body limit, parses a JSON body
 * into r->json, calls the handler and makes sure exactly one reply is sent:
 * a handler that returns without replying gets INTERNAL_ERROR.
 *
 * Errors become {"error": {"code", "message"}} only in sb_reply_error().
 * Threads: one thread per connection (MHD_USE_THREAD_PER_CONNECTION), so a
 * handler may block (exec, waits) and streams may block in their producer.
 *
 * Ownership: sb_req is owned by the dispatcher. Reply functions take
 * ownership of the cJSON and of stream contexts (freed through the given
 * free function, always, even on failure).
 */
#ifndef SB_HTTP_H
#define SB_HTTP_H

#include <microhttpd.h>
#include <cjson/cJSON.h>

#include "base/buf.h"
#include "sandbox/sb_err.h"

#define SB_HTTP_JSON_LIMIT (32u << 20)   /* largest JSON body */
/* A connection gets this long to send complete request headers, from its
 * start and again after each request it kept alive; then it is closed (a
 * request being served, e.g. a stream or a terminal, is never cut). */
#define SB_HTTP_HEADER_TIMEOUT_S 30
/* Connections at once from one client address (loopback: no limit). */
#define SB_HTTP_PER_ADDR_MAX 256u
#define SB_MAX_PARAMS 4

typedef struct sb_req sb_req;
typedef int (*sb_handler)(sb_req *r);

/* Streamed request bodies (raw file upload): begin after the headers, a call
 * per chunk, end when the body is complete. A non-zero return stops the
 * upload; the handler then sees r->upload_err set. */
typedef struct sb_upload_ops {
    int (*begin)(sb_req *r);
    int (*chunk)(sb_req *r, const char *data, size_t len);
} sb_upload_ops;

enum { SB_ROUTE_NOAUTH = 1, SB_ROUTE_RAW = 2 };

typedef struct sb_route {
    const char *method;
    const char *pattern;
    sb_handler handler;
    unsigned flags;
    const sb_upload_ops *upload;
    const void *arg;            /* the handler's own (r->route->arg), untouched here */
} sb_route;

struct sb_req {
    struct MHD_Connection *conn;
    const char *method;
    char *url;
    char *params[SB_MAX_PARAMS];
    int nparams;
    const sb_route *route;
    cb_buf body;
    bool too_large;
    cJSON *json;                /* parsed body (object) or NULL when empty */
    bool replied;
    int status;
    int64_t t0_ns;
    sb_error upload_err;        /* set by upload callbacks */
    void *upload_ctx;           /* owned by the upload callbacks */
    void (*upload_free)(void *);
    char *raw_uri;              /* the request target as sent (path?query, not unescaped) */
    bool by_host;               /* routed by route_host: replies carry only their own headers */
    void *upgrade;              /* sb_reply_upgrade's closure, freed when the request ends */
    bool started;
    char allow[64];             /* a 405's Allow header: the path's methods */
    bool close;                 /* answer with Connection: close (bad framing) */
    bool http11;                /* HTTP/1.1 (an upgrade needs it) */
    bool queue_failed;          /* libmicrohttpd refused the reply: the connection is closed */
};

typedef struct sb_http_conf {
    const char *listen_host;    /* numeric IPv4/IPv6 address */
    unsigned short port;        /* 0 = any */
    const char *token;
    const sb_route *routes;
    size_t nroutes;
    /* Seen before the route table: a route for requests that belong to
     * someone else by their Host header (preview URLs), or NULL. Such a
     * route's flags decide auth and body handling as for any route. */
    const sb_route *(*route_host)(sb_req *r, const char *host);
    /* Seen after a JSON body is parsed, before the handler: 0, or -1 with
     * err (replied as is), e.g. a field of the wrong type. NULL: none. */
    int (*check_body)(const cJSON *body, sb_error *err);
    /* Called with the port bound (port 0: the one the kernel chose) before
     * any request is served, or NULL. */
    void (*on_bound)(unsigned short port);
} sb_http_conf;

struct MHD_Daemon *sb_http_start(const sb_http_conf *conf, unsigned short *port_out, sb_error *err);
void sb_http_stop(struct MHD_Daemon *d);

/* Is t (lt bytes) the server's token? Constant time in its length. For
 * SB_ROUTE_NOAUTH routes that accept the token in another form. */
bool sb_http_token_equal(const char *t, size_t lt);

/* Is name a valid header field name (a token of RFC 9110 5.6.2: no space,
 * no separator, not empty)? */
bool sb_http_header_name_ok(const char *name);

/* Request helpers. */
const char *sb_req_header(sb_req *r, const char *name);
const char *sb_req_query(sb_req *r, const char *name);
bool sb_req_wants_sse(sb_req *r);
int sb_req_client_fd(sb_req *r);           /* for disconnect checks; -1 if unknown */
/* Has the client hung up? (non-blocking) */
bool sb_req_client_gone(sb_req *r);

/* Replies: each returns 0; call exactly one per request. */
int sb_reply_json(sb_req *r, int status, cJSON *take);
int sb_reply_error(sb_req *r, const sb_error *e);
int sb_reply_err(sb_req *r, sb_err code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Raw bytes from fd (taken), size bytes from offset 0. */
int sb_reply_fd(sb_req *r, int fd, uint64_t size, const char *content_type);

/* A pulled stream (SSE or chunked). produce() is called whenever the
 * previous output was sent; it appends to out and returns 0 to go on, 1 when
 * this was the last piece, -1 to abort the connection. It may block. */
typedef int (*sb_produce_fn)(void *ctx, cb_buf *out);
int sb_reply_stream(sb_req *r, int status, const char *content_type, sb_produce_fn produce,
                    void *ctx, void (*free_ctx)(void *));

/* The general form: size (MHD_SIZE_UNKNOWN or a byte count) and extra
 * headers as name, value pairs ending with NULL. */
int sb_reply_stream_ex(sb_req *r, int status, uint64_t size, const char *const *headers,
                       sb_produce_fn produce, void *ctx, void (*free_ctx)(void *));

/* 101 Switching Protocols with these headers, then the connection belongs
 * to on_upgrade(ctx, fd, extra, extra_len, handle): fd is the client's
 * socket, extra what the client already sent past the request. It may block
 * (the connection has a thread of its own) and must end with
 * sb_upgrade_close(handle). ctx is freed with free_ctx afterwards (or if the
 * upgrade never happens). */
typedef void (*sb_upgrade_fn)(void *ctx, int fd, const char *extra, size_t extra_len, void *handle);
int sb_reply_upgrade(sb_req *r, const char *const *headers, sb_upgrade_fn on_upgrade, void *ctx,
                     void (*free_ctx)(void *));
void sb_upgrade_close(void *handle);

/* SSE formatting: "event: NAME\ndata: JSON\n\n" (takes data). */
void sb_sse_event(cb_buf *out, const char *event, cJSON *data);
void sb_sse_comment(cb_buf *out, const char *text);
/* Silence after which a stream sends a keepalive comment: 15 s
 * (CELLBOX_SSE_KEEPALIVE_MS overrides it, for tests). */
int sb_sse_keepalive_ms(void);

#endif
