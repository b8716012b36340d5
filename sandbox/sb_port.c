/* sandbox/sb_port.c: exposed ports and the preview-URL proxy; see sb_port.h. */
#include "config.h"
#include "sandbox/sb_port.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "sandbox/sb_util.h"

#define HEAD_MAX (64 * 1024)
#define CHUNK_LINE_MAX (16 * 1024)     /* a chunk-size or trailer line of a response */
#define RESPONSE_WAIT_MS (300 * 1000)   /* for the response's head, all of it */
#define INTERIM_MAX 16                  /* 1xx answers before the final one */
#define IDLE_MS (600 * 1000)            /* silence inside a body or a WebSocket */

static struct {
    char scheme[8];
    char domain[256];      /* lower case, no port */
    char port_part[8];     /* ":7070" or "" */
    unsigned short server_port;
} pv = {"http", "localhost", "", 0};

int sb_ports_configure(const char *base, unsigned short server_port, sb_error *err)
{
    pv.server_port = server_port;
    if (!base) {
        snprintf(pv.port_part, sizeof pv.port_part, ":%u", server_port);
        return 0;
    }
    const char *p = strstr(base, "://");
    if (!p || (size_t)(p - base) >= sizeof pv.scheme)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "--preview-base wants SCHEME://DOMAIN[:PORT]"), -1;
    snprintf(pv.scheme, sizeof pv.scheme, "%.*s", (int)(p - base), base);
    if (strcmp(pv.scheme, "http") != 0 && strcmp(pv.scheme, "https") != 0)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "--preview-base: the scheme is http or https"), -1;
    p += 3;
    size_t n = strcspn(p, ":/");
    if (n == 0 || n >= sizeof pv.domain)
        return sb_fail(err, SB_E_VALIDATION_FAILED, "--preview-base: no domain"), -1;
    for (size_t i = 0; i < n; i++)
        pv.domain[i] = (char)tolower((unsigned char)p[i]);
    pv.domain[n] = '\0';
    pv.port_part[0] = '\0';
    if (p[n] == ':') {
        size_t m = strspn(p + n + 1, "0123456789");
        if (m == 0 || m > 5)
            return sb_fail(err, SB_E_VALIDATION_FAILED, "--preview-base: bad port"), -1;
        snprintf(pv.port_part, sizeof pv.port_part, ":%.*s", (int)m, p + n + 1);
    }
    return 0;
}

/* ---- host names --------------------------------------------------------------- */

static bool token_valid(const char *t)
{
    size_t n = strlen(t);
    return n >= 1 && n <= 63 && strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

bool sb_port_parse_host(const char *host, const char *domain, int *port, char *id, char *token)
{
    char h[512];
    size_t n = strcspn(host, ":");  /* no IPv6 literal can be a preview host */
    if (n == 0 || n >= sizeof h)
        return false;
    for (size_t i = 0; i < n; i++)
        h[i] = (char)tolower((unsigned char)host[i]);
    h[n] = '\0';
    if (n > 0 && h[n - 1] == '.')
        h[--n] = '\0';  /* a fully qualified name */
    char *dot = strchr(h, '.');
    if (!dot || strcmp(dot + 1, domain) != 0)
        return false;
    *dot = '\0';
    char *first = strchr(h, '-'), *last = strrchr(h, '-');
    if (!first || first == last)
        return false;
    *first = '\0';
    *last = '\0';
    size_t digits = strspn(h, "0123456789");
    if (digits == 0 || digits > 5 || h[digits] != '\0')
        return false;
    long p = strtol(h, NULL, 10);
    if (p < 1024 || p > 65535)
        return false;
    if (!sb_id_valid(first + 1) || !token_valid(last + 1) || strlen(first + 1) >= 64)
        return false;
    *port = (int)p;
    snprintf(id, 64, "%s", first + 1);
    snprintf(token, 64, "%s", last + 1);
    return true;
}

static char *preview_url(const char *id, int port, const char *token)
{
    return cb_printf_new("%s://%d-%s-%s.%s%s/", pv.scheme, port, id, token, pv.domain, pv.port_part);
}

/* ---- the registry (ports.json) --------------------------------------------------- */

static char *ports_path(sb_box *b)
{
    return cb_printf_new("%s/ports.json", b->dir);
}

/* The sandbox's exposed ports, read from ports.json on first use and kept
 * in the box. box->mu held; borrowed. */
static cJSON *ports_of(sb_box *b)
{
    if (b->ports)
        return b->ports;
    cb_autofree char *path = ports_path(b);
    size_t n = 0;
    cb_autofree char *text = cb_read_file(path, &n);
    cJSON *j = text ? cb_json_parse(text, n) : NULL;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = cJSON_CreateObject();
    }
    return b->ports = j;
}

/* Writes b->ports; on failure the copy in memory is dropped (the file is
 * what counts). box->mu held. */
static int ports_save(sb_box *b, sb_error *err)
{
    if (b->deleted)  /* its folder is being removed: not an error of ours */
        return sb_fail(err, SB_E_SANDBOX_NOT_FOUND, "sandbox '%s' was deleted", b->id), -1;
    cb_autofree char *path = ports_path(b);
    cb_autofree char *text = cb_json_print(b->ports);
    if (cb_write_file_atomic(path, text, strlen(text), 0600) < 0) {
        sb_fail(err, SB_E_INTERNAL_ERROR, "cannot save %s: %s", path, strerror(errno));
        cJSON_Delete(b->ports);
        b->ports = NULL;
        return -1;
    }
    return 0;
}

static cJSON *port_public(sb_box *b, const cJSON *rec)
{
    cJSON *j = cJSON_Duplicate(rec, true);
    int port = (int)cb_json_int(rec, "port", 0);
    cb_autofree char *url = preview_url(b->id, port, cb_json_str(rec, "token", ""));
    cJSON_AddStringToObject(j, "url", url);
    cJSON_AddStringToObject(j, "status", "active");
    return j;
}

static char *random_token(void)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    char *t = cb_calloc(17, 1);
    for (int i = 0; i < 16; i++)
        t[i] = alphabet[randombytes_uniform(sizeof alphabet - 1)];
    return t;
}

static int check_port(const cJSON *v, sb_error *err)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble)
        return sb_fail(err, SB_E_INVALID_PORT_NUMBER, "port must be an integer"), -1;
    int port = v->valueint;
    if (port < 1024 || port > 65535)
        return sb_fail(err, SB_E_INVALID_PORT_NUMBER, "port must be 1024..65535 (got %d)", port), -1;
    if (port == pv.server_port)
        return sb_fail(err, SB_E_INVALID_PORT_NUMBER, "port %d is the server's own port", port), -1;
    return port;
}

int sb_port_expose(sb_box *b, const cJSON *body, cJSON **out, sb_error *err)
{
    int port = check_port(cJSON_GetObjectItemCaseSensitive(body, "port"), err);
    if (port < 0)
        return -1;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "name");
    if (name && (!cJSON_IsString(name) || strlen(name->valuestring) > 128))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "name must be a string of at most 128 characters"), -1;
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(body, "token");
    if (tok && (!cJSON_IsString(tok) || !token_valid(tok->valuestring)))
        return sb_fail(err, SB_E_VALIDATION_FAILED, "token must match [a-z0-9_]{1,63}"), -1;
    cb_autofree char *token = tok ? cb_strdup(tok->valuestring) : random_token();
    char key[8];
    snprintf(key, sizeof key, "%d", port);
    pthread_mutex_lock(&b->mu);
    cJSON *ports = ports_of(b);
    int rc = -1;
    if (cJSON_GetObjectItemCaseSensitive(ports, key)) {
        sb_fail(err, SB_E_PORT_ALREADY_EXPOSED, "port %d of sandbox '%s' is already exposed", port, b->id);
    } else {
        cJSON *rec = cJSON_AddObjectToObject(ports, key);
        cJSON_AddNumberToObject(rec, "port", port);
        if (name)
            cJSON_AddStringToObject(rec, "name", name->valuestring);
        cJSON_AddStringToObject(rec, "token", token);
        sb_json_add_now(rec, "exposedAt");
        *out = port_public(b, rec);
        rc = ports_save(b, err);
        if (rc < 0) {
            cJSON_Delete(*out);
            *out = NULL;
        }
    }
    pthread_mutex_unlock(&b->mu);
    if (rc == 0) {
        char kv[128];
        snprintf(kv, sizeof kv, "sandbox=%s port=%d", b->id, port);
        cb_logkv(CB_LOG_INFO, "port", kv, "port exposed");
    }
    return rc;
}

cJSON *sb_ports_list_json(sb_box *b)
{
    cJSON *arr = cJSON_CreateArray();
    pthread_mutex_lock(&b->mu);
    const cJSON *rec;
    cJSON_ArrayForEach(rec, ports_of(b))
        cJSON_AddItemToArray(arr, port_public(b, rec));
    pthread_mutex_unlock(&b->mu);
    return arr;
}

cJSON *sb_port_json(sb_box *b, int port)
{
    char key[16];
    snprintf(key, sizeof key, "%d", port);
    pthread_mutex_lock(&b->mu);
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(ports_of(b), key);
    cJSON *j = rec ? port_public(b, rec) : NULL;
    pthread_mutex_unlock(&b->mu);
    return j;
}

int sb_port_unexpose(sb_box *b, int port, sb_error *err)
{
    char key[16];
    snprintf(key, sizeof key, "%d", port);
    pthread_mutex_lock(&b->mu);
    cJSON *ports = ports_of(b);
    int rc = -1;
    if (!cJSON_GetObjectItemCaseSensitive(ports, key)) {
        sb_fail(err, SB_E_PORT_NOT_EXPOSED, "port %d of sandbox '%s' is not exposed", port, b->id);
    } else {
        cJSON_DeleteItemFromObjectCaseSensitive(ports, key);
        rc = ports_save(b, err);
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

/* Is (port, token) exposed on this sandbox? Constant time in the token. */
static bool token_matches(sb_box *b, int port, const char *token)
{
    char key[16];
    snprintf(key, sizeof key, "%d", port);
    pthread_mutex_lock(&b->mu);
    const char *want = cb_json_str(cJSON_GetObjectItemCaseSensitive(ports_of(b), key), "token", NULL);
    bool ok = want && strlen(want) == strlen(token) && sodium_memcmp(want, token, strlen(want)) == 0;
    pthread_mutex_unlock(&b->mu);
    return ok;
}

/* ---- the proxy ------------------------------------------------------------------- */

typedef enum { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_EOF } body_kind;
typedef enum { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER, CH_DONE } chunk_state;

typedef struct proxy {
    sb_box *b;                  /* referenced and acquired */
    int fd;                     /* upstream, in the sandbox */
    bool chunked_up;            /* request body sent chunked */
    bool ws;                    /* asked for an upgrade */
    bool head_req;
    cb_buf in;                  /* upstream bytes not yet used */
    size_t in_off;
    body_kind kind;
    uint64_t left;              /* BODY_LENGTH / CH_DATA */
    chunk_state cs;
} proxy;

static void proxy_free(void *p)
{
    proxy *x = p;
    if (!x)
        return;
    if (x->fd >= 0)
        close(x->fd);
    cb_buf_clear(&x->in);
    if (x->b) {
        sb_box_release(x->b);
        sb_box_unref(x->b);
    }
    free(x);
}

static bool header_is(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

/* Headers a proxy never forwards (RFC 9110 7.6.1), and what clients must
 * not be able to claim. */
static bool request_header_dropped(const char *name)
{
    static const char *drop[] = {"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization",
                                 "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Forwarded",
                                 "X-Real-IP", "Content-Length",
                                 /* answered by libmicrohttpd: the service's
                                  * own 100 would only be skipped */
                                 "Expect"};
    for (size_t i = 0; i < CB_ARRAY_LEN(drop); i++)
        if (header_is(name, drop[i]))
            return true;
    return strncasecmp(name, "X-Forwarded-", 12) == 0;
}

static bool response_header_dropped(const char *name)
{
    static const char *drop[] = {"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
                                 "Transfer-Encoding", "Content-Length", "Upgrade"};
    for (size_t i = 0; i < CB_ARRAY_LEN(drop); i++)
        if (header_is(name, drop[i]))
            return true;
    return false;
}

/* Do HTTP Basic credentials (base64 of "user:password") hold the API's
 * token, as the user, the password or both? */
static bool basic_carries_api_token(const char *b64, size_t len)
{
    unsigned char plain[512];
    size_t n = 0;
    if (sodium_base642bin(plain, sizeof plain - 1, b64, len, " \t", &n, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 &&
        sodium_base642bin(plain, sizeof plain - 1, b64, len, " \t", &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0)
        return false;
    const char *s = (const char *)plain, *colon = memchr(s, ':', n);
    bool hit = sb_http_token_equal(s, n);
    if (colon) {
        hit |= sb_http_token_equal(s, (size_t)(colon - s));
        hit |= sb_http_token_equal(colon + 1, n - (size_t)(colon + 1 - s));
    }
    sodium_memzero(plain, sizeof plain);
    return hit;
}

/* Does a header value carry the API's bearer token (as a word of it, as
 * the terminal's "cellbox.bearer.<token>" subprotocol, or inside Basic
 * credentials)? Such a header never reaches the sandbox: a client that
 * sends its API header to every host of the server (an SDK given one base
 * URL and one header) would otherwise hand the app in the sandbox the key
 * to every sandbox. Compared in constant time per word, as the API does. */
static bool carries_api_token(const char *value)
{
    static const char proto[] = "cellbox.bearer.";
    const char *v = value + strspn(value, " \t");
    if (strncasecmp(v, "Basic", 5) == 0 && (v[5] == ' ' || v[5] == '\t')) {
        v += 5 + strspn(v + 5, " \t");
        if (basic_carries_api_token(v, strcspn(v, ",")))
            return true;
    }
    for (const char *p = value; *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, " \t,");
        if (n && sb_http_token_equal(p, n))
            return true;
        if (n > sizeof proto - 1 && strncmp(p, proto, sizeof proto - 1) == 0 &&
            sb_http_token_equal(p + sizeof proto - 1, n - (sizeof proto - 1)))
            return true;
        p += n;
    }
    return false;
}

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    cb_buf *h = cls;
    if (key && value && !request_header_dropped(key) && !strpbrk(value, "\r\n") && !carries_api_token(value))
        cb_buf_printf(h, "%s: %s\r\n", key, value);
    return MHD_YES;
}

static void client_ip(sb_req *r, char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    if (ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, out, (socklen_t)cap);
    else if (ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, out, (socklen_t)cap);
}

static bool has_token(const char *list, const char *word)
{
    /* a comma-separated header value holds word (case-insensitively) */
    size_t n = strlen(word);
    for (const char *p = list; p && *p;) {
        p += strspn(p, " \t,");
        size_t m = strcspn(p, ",");
        size_t e = m;
        while (e > 0 && (p[e - 1] == ' ' || p[e - 1] == '\t'))
            e--;
        if (e == n && strncasecmp(p, word, n) == 0)
            return true;
        p += m;
    }
    return false;
}

/* Is the request target one the app can read as we read it? It is sent on
 * as is, so no space and no control character: libmicrohttpd takes
 * "GET /a\rX-Forwarded-For: 6.6.6.6\r HTTP/1.1" whole, and an app's parser
 * that ends lines at a bare CR would see a header of the client's where the
 * proxy's own come after (RFC 9112 3.2: no whitespace in a target). */
static bool target_ok(const char *t)
{
    for (const unsigned char *p = (const unsigned char *)t; *p; p++)
        if (*p <= 0x20 || *p == 0x7f)
            return false;
    return *t != '\0';
}

static int proxy_begin(sb_req *r)
{
    const char *host = sb_req_header(r, "Host");
    int port;
    char id[64], token[64];
    if (!host || !sb_port_parse_host(host, pv.domain, &port, id, token))
        return sb_fail(&r->upload_err, SB_E_PORT_NOT_EXPOSED, "not a preview URL"), -1;
    if (!target_ok(r->raw_uri) || !sb_http_header_name_ok(r->method)) {
        r->close = true;  /* how the request line ends is not certain */
        return sb_fail(&r->upload_err, SB_E_VALIDATION_FAILED, "the request line holds a space or a "
                       "control character in the method or the target"), -1;
    }
    sb_box *b = sb_box_get(id);
    if (!b || !token_matches(b, port, token)) {
        if (b)
            sb_box_unref(b);
        /* the same answer for a wrong token, port or sandbox */
        return sb_fail(&r->upload_err, SB_E_PORT_NOT_EXPOSED, "no exposed port at this address"), -1;
    }
    proxy *x = cb_calloc(1, sizeof *x);
    x->fd = -1;
    x->b = b;
    cb_buf_init(&x->in);
    if (sb_box_acquire(b, &r->upload_err) < 0) {
        sb_box_unref(b);
        x->b = NULL;
        proxy_free(x);
        return -1;
    }
    r->upload_ctx = x;
    r->upload_free = proxy_free;
    x->fd = sb_box_socket_in_netns(b, AF_INET, SOCK_STREAM, &r->upload_err);
    if (x->fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(x->fd, (struct sockaddr *)&a, sizeof a) < 0)
        return sb_fail(&r->upload_err, SB_E_SERVICE_NOT_RESPONDING,
                       "nothing answers on port %d in sandbox '%s' (%s)", port, id, strerror(errno)), -1;
    struct timeval tv = {IDLE_MS / 1000, 0};
    setsockopt(x->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

    const char *upgrade = sb_req_header(r, "Upgrade");
    const char *conn = sb_req_header(r, "Connection");
    /* an upgrade only on HTTP/1.1 (libmicrohttpd sends no 101 to 1.0):
     * a 1.0 client's Upgrade is dropped, as RFC 9110 7.8 says */
    x->ws = r->http11 && upgrade && conn && has_token(conn, "upgrade") && !strpbrk(upgrade, "\r\n");
    x->head_req = strcmp(r->method, "HEAD") == 0;
    const char *te = sb_req_header(r, "Transfer-Encoding");
    const char *cl = sb_req_header(r, "Content-Length");
    cb_buf head = CB_BUF_INIT;
    cb_buf_printf(&head, "%s %s HTTP/1.1\r\n", r->method, r->raw_uri);
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, add_header, &head);
    /* the body as libmicrohttpd decoded it: chunked when the client's was
     * (that wins over a Content-Length, as in RFC 9112 6.3), else its length */
    if (te && has_token(te, "chunked"))
        x->chunked_up = true, cb_buf_puts(&head, "Transfer-Encoding: chunked\r\n");
    else if (cl && strspn(cl, "0123456789") == strlen(cl) && *cl)
        cb_buf_printf(&head, "Content-Length: %s\r\n", cl);
    char ip[64];
    client_ip(r, ip, sizeof ip);
    cb_buf_printf(&head, "X-Forwarded-Host: %s\r\nX-Forwarded-Proto: %s\r\nX-Forwarded-For: %s\r\n", host,
                  pv.scheme, ip);
    if (x->ws)
        cb_buf_printf(&head, "Connection: Upgrade\r\nUpgrade: %s\r\n", upgrade);
    else
        cb_buf_puts(&head, "Connection: close\r\n");
    cb_buf_puts(&head, "\r\n");
    int rc = cb_write_all(x->fd, head.data, head.len);
    cb_buf_clear(&head);
    if (rc < 0)
        return sb_fail(&r->upload_err, SB_E_SERVICE_NOT_RESPONDING, "the service closed the connection"), -1;
    return 0;
}

static int proxy_chunk(sb_req *r, const char *data, size_t len)
{
    proxy *x = r->upload_ctx;
    if (!x || x->fd < 0 || len == 0)
        return 0;
    char size_line[32];
    int rc = 0;
    if (x->chunked_up) {
        int n = snprintf(size_line, sizeof size_line, "%zx\r\n", len);
        rc = cb_write_all(x->fd, size_line, (size_t)n);
    }
    if (rc == 0)
        rc = cb_write_all(x->fd, data, len);
    if (rc == 0 && x->chunked_up)
        rc = cb_write_all(x->fd, "\r\n", 2);
    if (rc < 0)
        return sb_fail(&r->upload_err, SB_E_SERVICE_NOT_RESPONDING, "the service stopped reading the body"), -1;
    return 0;
}

/* Reads more from upstream into x->in. 1 = got bytes, 0 = EOF, -1 = error/timeout. */
static int fill(proxy *x, int timeout_ms)
{
    if (x->in_off > 0 && x->in_off == x->in.len) {
        cb_buf_reset(&x->in);
        x->in_off = 0;
    }
    struct pollfd p = {x->fd, POLLIN, 0};
    int rc;
    while ((rc = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
        ;
    if (rc <= 0)
        return -1;
    char buf[64 * 1024];
    ssize_t n;
    while ((n = read(x->fd, buf, sizeof buf)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return errno == ECONNRESET ? 0 : -1;
    if (n == 0)
        return 0;
    cb_buf_append(&x->in, buf, (size_t)n);
    return 1;
}

/* Decodes what x->in holds into out. Returns 1 when the body is complete. */
static int decode(proxy *x, cb_buf *out)
{
    for (;;) {
        const char *p = x->in.data + x->in_off;
        size_t avail = x->in.len - x->in_off;
        switch (x->kind) {
        case BODY_NONE:
            return 1;
        case BODY_EOF:
            cb_buf_append(out, p, avail);
            x->in_off += avail;
            return 0;
        case BODY_LENGTH: {
            size_t n = avail < x->left ? avail : (size_t)x->left;
            cb_buf_append(out, p, n);
            x->in_off += n;
            x->left -= n;
            return x->left == 0;
        }
        case BODY_CHUNKED:
            break;
        }
        if (x->cs == CH_DONE)
            return 1;
        if (x->cs == CH_DATA) {
            size_t n = avail < x->left ? avail : (size_t)x->left;
            cb_buf_append(out, p, n);
            x->in_off += n;
            x->left -= n;
            if (x->left > 0)
                return 0;
            x->cs = CH_DATA_END;
            continue;
        }
        const char *eol = avail ? memchr(p, '\n', avail) : NULL;
        /* need the whole line; but a service that never ends one (a chunk
         * size or trailer line without a newline) must not make the server
         * buffer its bytes without end: it is code of the sandbox's */
        if (!eol)
            return avail > CHUNK_LINE_MAX ? -1 : 0;
        size_t line = (size_t)(eol - p) + 1;
        if (x->cs == CH_SIZE) {
            char *end;
            unsigned long long n = strtoull(p, &end, 16);
            x->in_off += line;
            if (end == p)
                return -1;
            x->left = n;
            x->cs = n == 0 ? CH_TRAILER : CH_DATA;
        } else if (x->cs == CH_DATA_END) {
            x->in_off += line;
            x->cs = CH_SIZE;
        } else {  /* CH_TRAILER: lines until an empty one */
            x->in_off += line;
            if (line <= 2)
                x->cs = CH_DONE;
        }
    }
}

static int proxy_produce(void *ctx, cb_buf *out)
{
    proxy *x = ctx;
    for (;;) {
        int done = decode(x, out);
        if (done < 0)
            return -1;
        if (done > 0)
            return 1;
        if (out->len > 0)
            return 0;
        int rc = fill(x, IDLE_MS);
        if (rc < 0)
            return -1;
        if (rc == 0)
            return x->kind == BODY_EOF ? 1 : -1;  /* cut short */
    }
}

/* WebSocket (or any upgrade): bytes both ways until both sides have
 * closed. A side that closes its sending half (shutdown, as `nc -N` does
 * after its input) has that passed on to the other, and the other way
 * keeps flowing; a read error on either side, or IDLE_MS of silence both
 * ways, ends the relay. Both ways are served at each turn, so one side
 * that sends without a pause does not hold back the other. */
static void relay(void *ctx, int cfd, const char *extra, size_t extra_len, void *handle)
{
    proxy *x = ctx;
    /* libmicrohttpd hands the client's socket over non-blocking: a write
     * to a client that reads slower than the app sends would fail with
     * EAGAIN and cut the connection. Blocking writes with a time limit: a
     * slow reader slows the relay down, one that stopped reading for
     * IDLE_MS is dropped. */
    int fl = fcntl(cfd, F_GETFL);
    if (fl >= 0)
        fcntl(cfd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = {IDLE_MS / 1000, 0};
    setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if ((extra_len && cb_write_all(x->fd, extra, extra_len) < 0) ||
        (x->in.len > x->in_off && cb_write_all(cfd, x->in.data + x->in_off, x->in.len - x->in_off) < 0)) {
        sb_upgrade_close(handle);
        return;
    }
    char buf[64 * 1024];
    int src[2] = {cfd, x->fd}, dst[2] = {x->fd, cfd};
    bool open[2] = {true, true};  /* [0] client -> app, [1] app -> client */
    while (open[0] || open[1]) {
        struct pollfd p[2] = {{open[0] ? src[0] : -1, POLLIN, 0}, {open[1] ? src[1] : -1, POLLIN, 0}};
        int rc = poll(p, 2, IDLE_MS);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;
        bool failed = false;
        for (int i = 0; i < 2 && !failed; i++) {
            if (!p[i].revents)
                continue;
            ssize_t n = read(src[i], buf, sizeof buf);
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n < 0 || (n > 0 && cb_write_all(dst[i], buf, (size_t)n) < 0)) {
                failed = true;
            } else if (n == 0) {
                open[i] = false;
                shutdown(dst[i], SHUT_WR);  /* the other side sees the end of what this one sends */
            }
        }
        if (failed)
            break;
    }
    sb_upgrade_close(handle);
}

static int64_t response_wait_ms(void)
{
    static int64_t ms;
    if (!ms) {
        /* for tests only: a deadline of seconds */
        const char *e = getenv("CELLBOX_PREVIEW_RESPONSE_WAIT_MS");
        long v = e ? atol(e) : 0;
        ms = v >= 100 && v <= RESPONSE_WAIT_MS ? v : RESPONSE_WAIT_MS;
    }
    return ms;
}

/* The status of a response head (its status line alone), -1 if it is not HTTP. */
static int head_status(const char *head, size_t len)
{
    char line[128];
    size_t n = strcspn(head, "\r\n");
    if (n > len || n >= sizeof line)
        return -1;
    memcpy(line, head, n);
    line[n] = '\0';
    int status = 0;
    if (sscanf(line, "HTTP/%*d.%*d %d", &status) != 1 || status < 100 || status > 999)
        return -1;
    return status;
}

static int proxy_handler(sb_req *r)
{
    proxy *x = r->upload_ctx;
    if (r->upload_err.code != SB_OK || !x)
        return sb_reply_error(r, &r->upload_err);
    if (x->chunked_up && cb_write_all(x->fd, "0\r\n\r\n", 5) < 0)
        return sb_reply_err(r, SB_E_SERVICE_NOT_RESPONDING, "the service closed the connection");
    /* the response's head: the final one. An interim 1xx (100 Continue,
     * 103 Early Hints) is skipped: relayed as the answer, it would end the
     * request for libmicrohttpd while the client (or a proxy in front,
     * sharing the connection between users) still waits for the final
     * answer, and then takes the next request's answer for it. A 101 the
     * client did not ask for is refused for the same reason. */
    char *end = NULL;
    int status = 0, interim = 0;
    char *save = NULL;
    /* one deadline for the whole head: a service dribbling a byte now and
     * then must not hold the client (and a server thread) for ever */
    int64_t deadline = cb_mono_ns() + response_wait_ms() * 1000000;
    for (;;) {
        if (x->in.len && (end = memmem(x->in.data, x->in.len, "\r\n\r\n", 4))) {
            size_t head_len = (size_t)(end - x->in.data) + 4;
            if ((status = head_status(x->in.data, head_len)) < 0)
                return sb_reply_err(r, SB_E_SERVICE_NOT_RESPONDING, "the service did not answer HTTP");
            if (status == 101 && !x->ws)
                return sb_reply_err(r, SB_E_SERVICE_NOT_RESPONDING, "the service switched protocols "
                                    "without being asked to");
            if (status >= 200 || status == 101)
                break;
            if (++interim > INTERIM_MAX)
                return sb_reply_err(r, SB_E_SERVICE_NOT_RESPONDING, "the service sent more than %d "
                                    "interim (1xx) answers", INTERIM_MAX);
            cb_buf_consume(&x->in, head_len);
            continue;
        }
        if (x->in.len > HEAD_MAX)
            return sb_reply_err(r, SB_E_SERVICE_NOT_RESPONDING, "the service's response head is too large");
        int64_t left_ms = (deadline - cb_mono_ns()) / 1000000;
        int rc = left_ms > 0 ? fill(x, (int)left_ms) : -1;
        if (rc <= 0)
            return sb_reply_err(r, SB_E_SERVICE_NOT_RESPONDING, rc == 0 ? "the service closed the connection "
                                "without a response" : "no response from the service");
    }
    x->in_off = (size_t)(end - x->in.data) + 4;
    *end = '\0';
    strtok_r(x->in.data, "\r\n", &save);  /* the status line, read above */
    const char *headers[2 * 128 + 3];
    int nh = 0;
    const char *te = NULL, *cl = NULL, *up = NULL;
    for (char *line = strtok_r(NULL, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        char *v = colon + 1;
        v += strspn(v, " \t");
        if (header_is(line, "Transfer-Encoding"))
            te = v;
        else if (header_is(line, "Content-Length"))
            cl = v;
        else if (header_is(line, "Upgrade"))
            up = v;
        if (!response_header_dropped(line) && nh < 2 * 128) {
            headers[nh++] = line;
            headers[nh++] = v;
        }
    }
    headers[nh] = NULL;
    if (x->ws && status == 101) {
        /* hand over: the headers (Upgrade too) go to the client, then bytes */
        headers[nh++] = "Upgrade";
        headers[nh++] = up ? up : sb_req_header(r, "Upgrade");
        headers[nh] = NULL;
        r->upload_ctx = NULL;  /* the relay owns it now */
        return sb_reply_upgrade(r, headers, relay, x, proxy_free);
    }
    uint64_t size = MHD_SIZE_UNKNOWN;
    if (x->head_req || status == 204 || status == 304) {
        x->kind = BODY_NONE;
        size = x->head_req && cl ? strtoull(cl, NULL, 10) : 0;
    } else if (te && has_token(te, "chunked")) {
        x->kind = BODY_CHUNKED;
    } else if (cl && strspn(cl, "0123456789") > 0) {
        x->kind = BODY_LENGTH;
        x->left = strtoull(cl, NULL, 10);
        size = x->left;
    } else {
        x->kind = BODY_EOF;
    }
    /* headers point into x->in, which the stream owns from here; MHD copies them */
    r->upload_ctx = NULL;
    return sb_reply_stream_ex(r, status, size, headers, proxy_produce, x, proxy_free);
}

static const sb_upload_ops proxy_ops = {proxy_begin, proxy_chunk};
static const sb_route preview_route = {"*", "(preview)", proxy_handler, SB_ROUTE_NOAUTH | SB_ROUTE_RAW,
                                       &proxy_ops, NULL};

const sb_route *sb_port_route_host(sb_req *r, const char *host)
{
    (void)r;
    int port;
    char id[64], token[64];
    return sb_port_parse_host(host, pv.domain, &port, id, token) ? &preview_route : NULL;
}
