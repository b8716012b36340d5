/* sandbox/sb_http.c: libmicrohttpd glue, routing, auth, replies.
 *
 * The dispatcher (on_request) sees every request three ways: first call
 * (headers only: route, auth, size checks, upload begin), body chunks, and
 * the final call, where the handler runs. Any failure before the handler
 * replies through sb_reply_error, the one place errors are shaped. A request
 * never takes the server down: handlers return errors, they do not exit.
 */
#include "config.h"
#include "sandbox/sb_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "sandbox/sb_util.h"

static sb_http_conf hconf;

/* ---- connections: a deadline for request headers, a per-address limit ----
 *
 * libmicrohttpd's only clock is the idle timeout (600 s), which any byte
 * resets: a client sending one header byte every few minutes would hold a
 * connection (and its thread) for ever, and 2048 of them the whole server.
 * So every connection is tracked from its start (NOTIFY_CONNECTION): until
 * on_request sees its headers complete, and again between two requests on a
 * kept-alive connection, it has SB_HTTP_HEADER_TIMEOUT_S; past that the
 * reaper shuts its socket down, and libmicrohttpd closes it. A request being
 * served (its body, a long exec, a stream, a WebSocket terminal) is never
 * cut here. And one address (loopback excepted: tests, a local agent or a
 * reverse proxy) may hold at most SB_HTTP_PER_ADDR_MAX connections.
 *
 * fd reuse: libmicrohttpd calls NOTIFY_CLOSED before it closes the socket
 * (MHD_cleanup_connections), and conn_notify takes conn_mu for it, which the
 * reaper holds while it calls shutdown(): a tracked fd is still that
 * connection's socket. */
static pthread_mutex_t conn_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t conn_cv = PTHREAD_COND_INITIALIZER;

typedef struct conn_slot {
    struct conn_slot *prev, *next;
    int fd;
    struct sockaddr_storage addr;
    bool in_request;            /* headers complete, until the request ends */
    bool cut;                   /* shut down by the reaper */
    int64_t since_ns;           /* start of the connection or end of its last request */
} conn_slot;

static conn_slot *conns;
static bool reaper_stop;
static bool reaper_started;
static pthread_t reaper_thread;

static int64_t header_timeout_ns(void)
{
    static int64_t ns;
    if (!ns) {
        /* for tests only: a deadline of seconds */
        const char *e = getenv("CELLBOX_HTTP_HEADER_TIMEOUT_MS");
        long v = e ? atol(e) : 0;
        ns = (v >= 100 && v <= 3600000 ? v : SB_HTTP_HEADER_TIMEOUT_S * 1000L) * 1000000LL;
    }
    return ns;
}

static bool same_addr(const conn_slot *c, const struct sockaddr *a, socklen_t len)
{
    if (c->addr.ss_family != a->sa_family)
        return false;
    if (a->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in))
        return ((const struct sockaddr_in *)&c->addr)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)a)->sin_addr.s_addr;
    if (a->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6))
        return memcmp(&((const struct sockaddr_in6 *)&c->addr)->sin6_addr,
                      &((const struct sockaddr_in6 *)a)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return false;
}

static bool addr_loopback(const struct sockaddr *a, socklen_t len)
{
    if (a->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in))
        return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    if (a->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(x) || (IN6_IS_ADDR_V4MAPPED(x) && x->s6_addr[12] == 127);
    }
    return false;
}

/* Accept policy (the listening thread, before NOTIFY_CONNECTION). */
static enum MHD_Result conn_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)cls;
    if (!addr || addr_loopback(addr, addrlen))
        return MHD_YES;
    unsigned n = 0;
    pthread_mutex_lock(&conn_mu);
    for (conn_slot *c = conns; c; c = c->next)
        if (same_addr(c, addr, addrlen))
            n++;
    pthread_mutex_unlock(&conn_mu);
    if (n < SB_HTTP_PER_ADDR_MAX)
        return MHD_YES;
    static int64_t last_log_ns;  /* once per 10 s: a flood must not flood the log */
    int64_t now = cb_mono_ns();
    if (last_log_ns && now - last_log_ns < 10000000000LL)
        return MHD_NO;
    last_log_ns = now;
    char host[INET6_ADDRSTRLEN] = "?";
    const void *raw = addr->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)addr)->sin_addr
                                                 : (const void *)&((const struct sockaddr_in6 *)addr)->sin6_addr;
    inet_ntop(addr->sa_family, raw, host, sizeof host);
    char kv[128];
    snprintf(kv, sizeof kv, "client=%s max=%u", host, SB_HTTP_PER_ADDR_MAX);
    cb_logkv(CB_LOG_WARN, "http", kv, "connection refused: too many from one address");
    return MHD_NO;
}

static void conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_slot *c = cb_calloc(1, sizeof *c);
        const union MHD_ConnectionInfo *fi = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        c->fd = fi ? fi->connect_fd : -1;
        if (ai && ai->client_addr) {
            socklen_t len = ai->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                   : sizeof(struct sockaddr_in);
            memcpy(&c->addr, ai->client_addr, len);
        }
        c->since_ns = cb_mono_ns();
        pthread_mutex_lock(&conn_mu);
        c->next = conns;
        if (conns)
            conns->prev = c;
        conns = c;
        pthread_mutex_unlock(&conn_mu);
        *socket_context = c;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_slot *c = *socket_context;
        if (!c)
            return;
        pthread_mutex_lock(&conn_mu);
        if (c->prev)
            c->prev->next = c->next;
        else
            conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        pthread_mutex_unlock(&conn_mu);
        free(c);
        *socket_context = NULL;
    }
}

static conn_slot *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Headers complete (true), or the request ended and the connection waits
 * for the next one's headers (false). */
static void conn_set_in_request(struct MHD_Connection *conn, bool in)
{
    conn_slot *c = conn_of(conn);
    if (!c)
        return;
    pthread_mutex_lock(&conn_mu);
    c->in_request = in;
    c->since_ns = cb_mono_ns();
    pthread_mutex_unlock(&conn_mu);
}

static void *reaper(void *arg)
{
    (void)arg;
    int64_t limit = header_timeout_ns();
    int64_t step = limit / 4 < 1000000000LL ? limit / 4 : 1000000000LL;
    pthread_mutex_lock(&conn_mu);
    while (!reaper_stop) {
        struct timespec ts;  /* a wake-up; the deadlines are on cb_mono_ns */
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t at = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec + step;
        ts.tv_sec = at / 1000000000LL;
        ts.tv_nsec = at % 1000000000LL;
        pthread_cond_timedwait(&conn_cv, &conn_mu, &ts);
        int64_t now = cb_mono_ns();
        for (conn_slot *c = conns; c; c = c->next) {
            if (c->in_request || c->cut || c->fd < 0 || now - c->since_ns < limit)
                continue;
            /* conn_mu held: the socket is not closed yet (see the top) */
            shutdown(c->fd, SHUT_RDWR);
            c->cut = true;
            cb_debug("http", "connection closed: no complete request headers in %lld ms",
                     (long long)(limit / 1000000));
        }
    }
    pthread_mutex_unlock(&conn_mu);
    return NULL;
}

/* ---- requests ------------------------------------------------------------ */

const char *sb_req_header(sb_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *sb_req_query(sb_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

bool sb_req_wants_sse(sb_req *r)
{
    const char *a = sb_req_header(r, "Accept");
    const char *q = sb_req_query(r, "stream");
    return (a && strstr(a, "text/event-stream")) || (q && strcmp(q, "true") == 0);
}

int sb_req_client_fd(sb_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

bool sb_req_client_gone(sb_req *r)
{
    int fd = sb_req_client_fd(r);
    if (fd < 0)
        return false;
    struct pollfd p = {fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

typedef struct upgrade_ctx upgrade_ctx;
static void upgrade_done(upgrade_ctx *u);

static void req_free(sb_req *r)
{
    if (r->upgrade)
        upgrade_done(r->upgrade);
    if (r->upload_free && r->upload_ctx)
        r->upload_free(r->upload_ctx);
    for (int i = 0; i < r->nparams; i++)
        free(r->params[i]);
    cb_buf_clear(&r->body);
    cJSON_Delete(r->json);
    free(r->url);
    free(r->raw_uri);
    free(r);
}

/* Match pattern against path; captures go to r->params. */
static bool match(const char *pattern, const char *path, sb_req *r)
{
    int n = 0;
    char *caps[SB_MAX_PARAMS];
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == ':') {
            while (*p && *p != '/')
                p++;
            const char *end = strchr(s, '/');
            size_t len = end ? (size_t)(end - s) : strlen(s);
            if (len == 0 || n == SB_MAX_PARAMS)
                goto no;
            caps[n++] = cb_strndup(s, len);
            s += len;
            continue;
        }
        if (*p != *s)
            goto no;
        p++, s++;
    }
    if (*p || *s)
        goto no;
    for (int i = 0; i < n; i++)
        r->params[i] = caps[i];
    r->nparams = n;
    return true;
no:
    for (int i = 0; i < n; i++)
        free(caps[i]);
    return false;
}

bool sb_http_token_equal(const char *t, size_t lt)
{
    size_t lw = strlen(hconf.token);
    /* constant time in the token's length */
    return t && lt == lw && sodium_memcmp(t, hconf.token, lw) == 0;
}

static bool token_ok(sb_req *r)
{
    const char *h = sb_req_header(r, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    return sb_http_token_equal(h + 7, strlen(h + 7));
}

/* ---- replies ------------------------------------------------------------- */

static int queue(sb_req *r, int status, struct MHD_Response *resp)
{
    if (!resp) {
        r->replied = true;
        return -1;
    }
    if (!r->by_host)
        MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (status == 405 && r->allow[0])
        MHD_add_response_header(resp, "Allow", r->allow);
    if (r->close)
        MHD_add_response_header(resp, "Connection", "close");
    r->replied = true;
    r->status = status;
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (ok != MHD_YES) {
        /* no reply will ever go: close the connection (on_request returns
         * MHD_NO), so it ends now and on_completed frees what it holds */
        r->queue_failed = true;
        cb_warn("http", "%s %s: cannot send the %d reply; connection closed", r->method, r->url, status);
        return -1;
    }
    return 0;
}

int sb_reply_json(sb_req *r, int status, cJSON *take)
{
    char *text = cb_json_print(take);
    cJSON_Delete(take);
    size_t len = strlen(text);
    text[len] = '\0';
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp)
        MHD_add_response_header(resp, "Content-Type", "application/json");
    else
        free(text);
    return queue(r, status, resp);
}

int sb_reply_error(sb_req *r, const sb_error *e)
{
    sb_err code = e->code == SB_OK ? SB_E_INTERNAL_ERROR : e->code;
    int status = sb_err_status(code);
    cJSON *j = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(j, "error");
    cJSON_AddStringToObject(err, "code", sb_err_name(code));
    /* messages quote paths (bytes) and are cut at 512 bytes: always UTF-8 here */
    cb_autofree char *msg = sb_utf8_lossy(e->msg[0] ? e->msg : sb_err_name(code), NULL);
    cJSON_AddStringToObject(err, "message", msg);
    if (status >= 500) {
        char kv[256];
        snprintf(kv, sizeof kv, "method=%s path=\"%s\" code=%s", r->method, r->url,
                 sb_err_name(code));
        cb_logkv(CB_LOG_WARN, "http", kv, "%s", e->msg);
    }
    if (status == 401) {
        cJSON *resp = j;
        char *text = cb_json_print(resp);
        cJSON_Delete(resp);
        struct MHD_Response *mr =
            MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (!mr) {
            free(text);
            return queue(r, status, NULL);
        }
        MHD_add_response_header(mr, "Content-Type", "application/json");
        MHD_add_response_header(mr, "WWW-Authenticate", "Bearer");
        return queue(r, status, mr);
    }
    return sb_reply_json(r, status, j);
}

int sb_reply_err(sb_req *r, sb_err code, const char *fmt, ...)
{
    sb_error e = {code, ""};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof e.msg, fmt, ap);
    va_end(ap);
    return sb_reply_error(r, &e);
}

/* A file sent by our own reader, not MHD_create_response_from_fd64: when
 * the file shrank under it (code in the sandbox truncating a file being
 * downloaded), libmicrohttpd 0.9.75's sendfile path spun the connection's
 * thread at 100% CPU for ever, even after the client left. Here a short
 * read ends the response with an error: the connection is closed and the
 * client sees fewer bytes than Content-Length said. */
typedef struct fd_stream {
    int fd;
    uint64_t size;
} fd_stream;

static ssize_t fd_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    fd_stream *f = cls;
    if (pos >= f->size)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (max > f->size - pos)
        max = (size_t)(f->size - pos);
    ssize_t n;
    while ((n = pread(f->fd, buf, max, (off_t)pos)) < 0 && errno == EINTR)
        ;
    return n > 0 ? n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void fd_stream_free(void *cls)
{
    fd_stream *f = cls;
    close(f->fd);
    free(f);
}

int sb_reply_fd(sb_req *r, int fd, uint64_t size, const char *content_type)
{
    fd_stream *f = cb_malloc(sizeof *f);
    *f = (fd_stream){fd, size};
    struct MHD_Response *resp =
        MHD_create_response_from_callback(size, 256 * 1024, fd_stream_read, f, fd_stream_free);
    if (!resp) {
        fd_stream_free(f);
        return sb_reply_err(r, SB_E_INTERNAL_ERROR, "cannot stream the file");
    }
    MHD_add_response_header(resp, "Content-Type", content_type);
    return queue(r, 200, resp);
}

typedef struct stream_ctx {
    sb_produce_fn produce;
    void *ctx;
    void (*free_ctx)(void *);
    cb_buf out;
    size_t off;
    bool last;
} stream_ctx;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream_ctx *s = cls;
    while (s->off >= s->out.len) {
        if (s->last)
            return MHD_CONTENT_READER_END_OF_STREAM;
        cb_buf_reset(&s->out);
        s->off = 0;
        int rc = s->produce(s->ctx, &s->out);
        if (rc < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (rc > 0)
            s->last = true;
    }
    size_t n = s->out.len - s->off < max ? s->out.len - s->off : max;
    memcpy(buf, s->out.data + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    stream_ctx *s = cls;
    if (s->free_ctx)
        s->free_ctx(s->ctx);
    cb_buf_clear(&s->out);
    free(s);
}

int sb_reply_stream_ex(sb_req *r, int status, uint64_t size, const char *const *headers,
                       sb_produce_fn produce, void *ctx, void (*free_ctx)(void *))
{
    if (size == MHD_SIZE_UNKNOWN && strcmp(r->method, "HEAD") == 0) {
        /* the headers only: libmicrohttpd would still end a chunked body
         * ("0" CRLF CRLF), which the client reads as the next reply */
        if (free_ctx)
            free_ctx(ctx);
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        for (const char *const *h = headers; resp && h && h[0] && h[1]; h += 2)
            MHD_add_response_header(resp, h[0], h[1]);
        return queue(r, status, resp);
    }
    stream_ctx *s = cb_calloc(1, sizeof *s);
    s->produce = produce;
    s->ctx = ctx;
    s->free_ctx = free_ctx;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(size, 64 * 1024, stream_read, s, stream_free);
    if (!resp) {
        stream_free(s);
        return sb_reply_err(r, SB_E_INTERNAL_ERROR, "cannot create a stream");
    }
    for (const char *const *h = headers; h && h[0] && h[1]; h += 2)
        MHD_add_response_header(resp, h[0], h[1]);
    return queue(r, status, resp);
}

int sb_reply_stream(sb_req *r, int status, const char *content_type, sb_produce_fn produce,
                    void *ctx, void (*free_ctx)(void *))
{
    bool sse = strcmp(content_type, "text/event-stream") == 0;
    const char *headers[] = {"Content-Type", content_type, sse ? "X-Accel-Buffering" : NULL, "no", NULL};
    return sb_reply_stream_ex(r, status, MHD_SIZE_UNKNOWN, headers, produce, ctx, free_ctx);
}

struct upgrade_ctx {
    sb_upgrade_fn fn;
    void *ctx;
    void (*free_ctx)(void *);
    bool used;
};

static void on_upgrade(void *cls, struct MHD_Connection *conn, void *req_cls, const char *extra,
                       size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    (void)conn, (void)req_cls;
    upgrade_ctx *u = cls;
    u->used = true;
    u->fn(u->ctx, sock, extra, extra_len, urh);
    if (u->free_ctx)
        u->free_ctx(u->ctx);
    u->ctx = NULL;
}

/* When the request ends: the closure goes, and its ctx too if the upgrade
 * never happened (the client left before the 101 was sent). */
static void upgrade_done(upgrade_ctx *u)
{
    if (!u->used && u->free_ctx && u->ctx)
        u->free_ctx(u->ctx);
    free(u);
}

int sb_reply_upgrade(sb_req *r, const char *const *headers, sb_upgrade_fn fn, void *ctx,
                     void (*free_ctx)(void *))
{
    if (!r->http11) {
        if (free_ctx)
            free_ctx(ctx);
        return sb_reply_err(r, SB_E_VALIDATION_FAILED, "a protocol upgrade needs HTTP/1.1");
    }
    upgrade_ctx *u = cb_calloc(1, sizeof *u);
    *u = (upgrade_ctx){fn, ctx, free_ctx, false};
    struct MHD_Response *resp = MHD_create_response_for_upgrade(on_upgrade, u);
    if (!resp) {
        if (free_ctx)
            free_ctx(ctx);
        free(u);
        return sb_reply_err(r, SB_E_INTERNAL_ERROR, "cannot switch protocols");
    }
    for (const char *const *h = headers; h && h[0] && h[1]; h += 2)
        MHD_add_response_header(resp, h[0], h[1]);
    r->upgrade = u;  /* freed by on_completed (MHD has no destructor for it) */
    return queue(r, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
}

void sb_upgrade_close(void *handle)
{
    MHD_upgrade_action(handle, MHD_UPGRADE_ACTION_CLOSE);
}

void sb_sse_event(cb_buf *out, const char *event, cJSON *data)
{
    cJSON_AddStringToObject(data, "type", event);
    cb_autofree char *text = cb_json_print(data);
    cJSON_Delete(data);
    cb_buf_printf(out, "event: %s\ndata: %s\n\n", event, text);
}

int sb_sse_keepalive_ms(void)
{
    static int ms;
    if (!ms) {
        const char *e = getenv("CELLBOX_SSE_KEEPALIVE_MS");
        int v = e ? atoi(e) : 0;
        ms = v >= 50 && v <= 600000 ? v : 15000;
    }
    return ms;
}

void sb_sse_comment(cb_buf *out, const char *text)
{
    cb_buf_printf(out, ": %s\n\n", text);
}

/* ---- dispatcher ------------------------------------------------------------ */

/* The route of method and path. When the path is known but not with this
 * method, r->allow lists the methods it has (for the 405's Allow header).
 * HEAD is answered as GET (libmicrohttpd sends the headers only). */
static const sb_route *find_route(sb_req *r, const char *path, bool *path_known)
{
    *path_known = false;
    r->allow[0] = '\0';
    const char *method = strcmp(r->method, "HEAD") == 0 ? "GET" : r->method;
    for (size_t i = 0; i < hconf.nroutes; i++) {
        const sb_route *rt = &hconf.routes[i];
        if (!match(rt->pattern, path, r))
            continue;
        *path_known = true;
        if (strcmp(rt->method, method) == 0)
            return rt;
        for (int k = 0; k < r->nparams; k++)
            free(r->params[k]);
        r->nparams = 0;
        size_t n = strlen(r->allow);
        if (!strstr(r->allow, rt->method))
            snprintf(r->allow + n, sizeof r->allow - n, "%s%s%s", n ? ", " : "", rt->method,
                     strcmp(rt->method, "GET") == 0 ? ", HEAD" : "");
    }
    return NULL;
}

bool sb_http_header_name_ok(const char *name)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~0123456789"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    return name && *name && strspn(name, tchar) == strlen(name);
}

typedef struct framing {
    int content_length;
    const char *first_length;
    bool length_differs;
    int transfer_encoding;
    bool te_not_chunked;
    int host;
    bool bad_name;
} framing;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    framing *f = cls;
    if (!sb_http_header_name_ok(key))
        f->bad_name = true;
    if (strcasecmp(key, "Content-Length") == 0) {
        if (f->content_length++ && strcmp(value, f->first_length) != 0)
            f->length_differs = true;
        else
            f->first_length = value;
    } else if (strcasecmp(key, "Transfer-Encoding") == 0) {
        f->transfer_encoding++;
        /* libmicrohttpd decodes "chunked" alone; any other value (gzip,
         * "gzip, chunked", identity) it takes as a body that lasts until
         * the connection closes */
        if (strcasecmp(value, "chunked") != 0)
            f->te_not_chunked = true;
    } else if (strcasecmp(key, "Host") == 0) {
        f->host++;
    }
    return MHD_YES;
}

/* Requests whose end two readers could see differently (RFC 9112 6.1,
 * 6.3): Content-Length twice with different values (libmicrohttpd takes
 * the first, a proxy may take the last), or with Transfer-Encoding; a
 * Transfer-Encoding other than "chunked" alone (libmicrohttpd would take
 * the rest of the connection, other requests included, as this one's
 * body: for a preview URL, handed to the sandbox's app), or given twice.
 * And two Host headers (RFC 9112 3.2): the server routes by the first, an
 * app may read the last; and a header name that is not a token: for
 * "Content-Length : 40" (a space before the colon, RFC 9112 5.1)
 * libmicrohttpd sees no length and reads the body as the next request,
 * where a proxy in front may have taken it as the length. Such a request is refused and its connection
 * closed: what follows it on the connection cannot be trusted to be the
 * next request. NULL if it is fine, else why not. */
static const char *framing_refused(struct MHD_Connection *conn)
{
    framing f = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
    if (f.length_differs || (f.content_length && f.transfer_encoding))
        return "the request gives its body's length twice (Content-Length with different values, "
               "or with Transfer-Encoding)";
    if (f.te_not_chunked || f.transfer_encoding > 1)
        return "Transfer-Encoding must be \"chunked\" (once) or absent";
    if (f.host > 1)
        return "the request has more than one Host header";
    if (f.bad_name)
        return "a header name holds a space or another character not allowed in it";
    return NULL;
}

/* libmicrohttpd unescapes the path before routing: %00 would cut it short
 * (DELETE /v1/sandboxes/victim%00x would name "victim") and %2F would make
 * a slash no id can hold, so an API path may escape neither. */
static bool path_escape_refused(const char *raw_uri)
{
    for (const char *p = raw_uri; *p && *p != '?' && *p != '#'; p++)
        if (p[0] == '%' && (strncmp(p + 1, "00", 2) == 0 || strncasecmp(p + 1, "2f", 2) == 0))
            return true;
    return false;
}

static enum MHD_Result serve(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version,
                             const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)cls;
    sb_req *r = *con_cls;
    if (!r) {
        r = cb_calloc(1, sizeof *r);
        cb_buf_init(&r->body);
        *con_cls = r;
    }
    if (!r->started) {
        r->started = true;
        conn_set_in_request(conn, true);
        r->conn = conn;
        r->method = method;
        r->http11 = version && strcmp(version, MHD_HTTP_VERSION_1_1) == 0;
        r->url = cb_strdup(url);
        r->t0_ns = cb_mono_ns();
        if (!r->raw_uri)
            r->raw_uri = cb_strdup(url);
        bool known = false;
        const char *why = framing_refused(conn);
        if (why) {
            /* before routing: preview requests too */
            r->close = true;
            sb_reply_err(r, SB_E_VALIDATION_FAILED, "%s", why);
            return MHD_YES;
        }
        const char *host = sb_req_header(r, "Host");
        if (hconf.route_host && host)
            r->route = hconf.route_host(r, host);
        if (r->route) {
            r->by_host = true;
            /* routed by its host name: auth and body handling are the route's */
            if ((r->route->flags & SB_ROUTE_RAW) && r->route->upload && r->route->upload->begin &&
                r->route->upload->begin(r) != 0 && r->upload_err.code != SB_OK)
                sb_reply_error(r, &r->upload_err);
            return MHD_YES;
        }
        if (path_escape_refused(r->raw_uri)) {
            sb_reply_err(r, SB_E_VALIDATION_FAILED, "the request path may not contain %%00 (a NUL byte) "
                         "or %%2F (an escaped slash)");
            return MHD_YES;
        }
        r->route = find_route(r, url, &known);
        if (!r->route) {
            /* Say 401 rather than 404 to someone without the token. */
            bool open_path = strcmp(url, "/v1/health") == 0;
            if (!open_path && !token_ok(r))
                sb_reply_err(r, SB_E_UNAUTHORIZED, "missing or wrong bearer token");
            else if (known)
                sb_reply_err(r, SB_E_METHOD_NOT_ALLOWED, "%s is not allowed on %s", method, url);
            else
                sb_reply_err(r, SB_E_NOT_FOUND, "no such endpoint: %s %s", method, url);
            return MHD_YES;
        }
        if (!(r->route->flags & SB_ROUTE_NOAUTH) && !token_ok(r)) {
            sb_reply_err(r, SB_E_UNAUTHORIZED, "missing or wrong bearer token");
            return MHD_YES;
        }
        const char *cl = sb_req_header(r, "Content-Length");
        if ((r->route->flags & (SB_ROUTE_NOAUTH | SB_ROUTE_RAW)) == SB_ROUTE_NOAUTH &&
            (sb_req_header(r, "Transfer-Encoding") || (cl && strcmp(cl, "0") != 0))) {
            /* no body before the token is known: the body of a JSON route is
             * kept whole until the handler runs, so an open route (health, a
             * terminal that checks its token itself) would otherwise buffer
             * 32 MiB for anyone, per connection */
            r->close = true;
            sb_reply_err(r, SB_E_VALIDATION_FAILED, "%s %s takes no request body", method, url);
            return MHD_YES;
        }
        if (!(r->route->flags & SB_ROUTE_RAW) && cl && strtoull(cl, NULL, 10) > SB_HTTP_JSON_LIMIT) {
            sb_reply_err(r, SB_E_REQUEST_TOO_LARGE, "JSON bodies are limited to %u bytes; "
                         "upload files with PUT .../files/content", SB_HTTP_JSON_LIMIT);
            return MHD_YES;
        }
        if ((r->route->flags & SB_ROUTE_RAW) && r->route->upload && r->route->upload->begin &&
            r->route->upload->begin(r) != 0 && r->upload_err.code != SB_OK) {
            sb_reply_error(r, &r->upload_err);
            return MHD_YES;
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->replied)
            return MHD_YES;
        if (r->route->flags & SB_ROUTE_RAW) {
            if (r->upload_err.code == SB_OK && r->route->upload && r->route->upload->chunk)
                r->route->upload->chunk(r, upload_data, n);
        } else if (r->body.len + n > SB_HTTP_JSON_LIMIT) {
            r->too_large = true;
        } else if (!r->too_large) {
            cb_buf_append(&r->body, upload_data, n);
        }
        return MHD_YES;
    }
    if (r->replied)
        return MHD_YES;
    if (r->too_large) {
        sb_reply_err(r, SB_E_REQUEST_TOO_LARGE, "JSON bodies are limited to %u bytes",
                     SB_HTTP_JSON_LIMIT);
        return MHD_YES;
    }
    if (!(r->route->flags & SB_ROUTE_RAW) && r->body.len > 0) {
        /* cJSON ends a string at U+0000, raw or escaped: "a<NUL>b" and
         * "a\u0000b" would silently act on "a" (a raw NUL is never valid JSON) */
        if (memchr(r->body.data, '\0', r->body.len)) {
            sb_reply_err(r, SB_E_VALIDATION_FAILED, "the body holds a NUL byte: not valid JSON "
                         "(send such bytes base64-encoded)");
            return MHD_YES;
        }
        if (cb_json_has_nul_escape(r->body.data, r->body.len)) {
            sb_reply_err(r, SB_E_VALIDATION_FAILED,
                         "strings in the body must not hold U+0000 (\\u0000): send such bytes "
                         "base64-encoded (\"encoding\": \"base64\", \"stdinEncoding\": \"base64\", "
                         "\"pathBase64\")");
            return MHD_YES;
        }
        r->json = cb_json_parse(r->body.data, r->body.len);
        if (!cJSON_IsObject(r->json)) {
            sb_reply_err(r, SB_E_VALIDATION_FAILED, r->json ? "the body must be a JSON object"
                         : "the body is not valid JSON (or nests deeper than 1000 levels)");
            return MHD_YES;
        }
        sb_error e = {0};
        if (hconf.check_body && hconf.check_body(r->json, &e) < 0) {
            sb_reply_error(r, &e);
            return MHD_YES;
        }
    }
    r->route->handler(r);
    if (!r->replied)
        sb_reply_err(r, SB_E_INTERNAL_ERROR, "the handler sent no reply");
    return MHD_YES;
}

/* A reply libmicrohttpd refused (queue) closes the connection. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    enum MHD_Result res = serve(cls, conn, url, method, version, upload_data, upload_size, con_cls);
    sb_req *r = *con_cls;
    return r && r->queue_failed ? MHD_NO : res;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    sb_req *r = *con_cls;
    if (!r)
        return;
    /* a kept-alive connection waits for the next request's headers, on the
     * same deadline (not after an upgrade: the socket was handed over) */
    if (r->started && !r->upgrade)
        conn_set_in_request(conn, false);
    if (!r->started) {
        req_free(r);
        *con_cls = NULL;
        return;
    }
    if (cb_log_enabled(CB_LOG_INFO)) {
        char kv[512];
        snprintf(kv, sizeof kv, "method=%s path=\"%s\" status=%d ms=%.2f%s", r->method, r->url,
                 r->status, (double)(cb_mono_ns() - r->t0_ns) / 1e6,
                 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=true");
        cb_logkv(CB_LOG_INFO, "http", kv, "request");
    }
    req_free(r);
    *con_cls = NULL;
}

/* Called first for every request, with the request target as sent: keep it
 * (the proxy forwards it unchanged; `url` is unescaped by libmicrohttpd). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls, (void)conn;
    sb_req *r = cb_calloc(1, sizeof *r);
    cb_buf_init(&r->body);
    r->raw_uri = cb_strdup(uri ? uri : "/");
    return r;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    cb_log(CB_LOG_DEBUG, "mhd", "%s", msg);
}

struct MHD_Daemon *sb_http_start(const sb_http_conf *conf, unsigned short *port_out, sb_error *err)
{
    hconf = *conf;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_ALLOW_UPGRADE |
                     /* poll(), not select(): select drops every connection
                     * whose fd is 1024 or more (a few hundred sandboxes or
                     * idle clients would take the whole API down) */
                     MHD_USE_POLL;
    socklen_t sl;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, conf->listen_host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(conf->port);
        sl = sizeof *a4;
    } else if (inet_pton(AF_INET6, conf->listen_host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(conf->port);
        flags |= MHD_USE_IPv6;
        sl = sizeof *a6;
    } else {
        sb_fail(err, SB_E_VALIDATION_FAILED, "--listen: '%s' is not a numeric address",
                conf->listen_host);
        return NULL;
    }
    /* The listening socket is ours: SO_REUSEADDR only (a restart binds at
     * once), never SO_REUSEPORT, which libmicrohttpd's address reuse
     * option sets and which let a second server bind the same port and
     * take half of its connections. Bound before any thread serves, so
     * that on_bound (the preview URLs' port, for port 0) is set first. */
    int one = 1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        (ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
        bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 511) < 0) {
        sb_fail(err, SB_E_INTERNAL_ERROR, "cannot listen on %s:%u: %s", conf->listen_host, conf->port,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    sl = sizeof ss;
    unsigned short bound = conf->port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        bound = ntohs(ss.ss_family == AF_INET6 ? a6->sin6_port : a4->sin_port);
    if (conf->on_bound)
        conf->on_bound(bound);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, conn_accept, NULL, on_request, NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, conn_notify, NULL,
        MHD_OPTION_CONNECTION_LIMIT,
        /* idle connections go after 10 minutes; a request being served
         * (a long exec, a stream) is not idle. Headers have a deadline of
         * their own (the reaper, above). */
        (unsigned)2048, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024), MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, NULL, MHD_OPTION_END);
    if (!d) {
        sb_fail(err, SB_E_INTERNAL_ERROR, "cannot serve on %s:%u", conf->listen_host, bound);
        close(fd);
        return NULL;
    }
    *port_out = bound;
    pthread_mutex_lock(&conn_mu);
    reaper_stop = false;
    reaper_started = pthread_create(&reaper_thread, NULL, reaper, NULL) == 0;
    pthread_mutex_unlock(&conn_mu);
    if (!reaper_started)
        cb_warn("http", "cannot start the request-header deadline thread: %s", strerror(errno));
    return d;
}

void sb_http_stop(struct MHD_Daemon *d)
{
    if (reaper_started) {
        pthread_mutex_lock(&conn_mu);
        reaper_stop = true;
        pthread_cond_signal(&conn_cv);
        pthread_mutex_unlock(&conn_mu);
        pthread_join(reaper_thread, NULL);
        reaper_started = false;
    }
    if (d)
        MHD_stop_daemon(d);
}
