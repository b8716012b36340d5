/* Unit tests of the wire layer (signing, framing, bad input), connection
 * files, the history store, the stream text encoder and the stream capture
 * (publishing through a kn_host that records the messages). Real ZeroMQ
 * sockets (inproc) for the send/receive round trip. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/util.h"
#include "interp/capture.h"
#include "kernel/conn.h"
#include "kernel/history.h"
#include "kernel/session.h"
#include "kernel/wire.h"
#include "tests/tap.h"

#define H "{\"msg_id\":\"1\",\"msg_type\":\"x\"}"

static kn_bytes B(const char *s)
{
    return (kn_bytes){(char *)s, strlen(s)};
}

/* frames for kn_wire_decode (which takes ownership of the data) */
static kn_bytes *frames(int n, const char **v, const size_t *lens)
{
    kn_bytes *f = cb_calloc((size_t)n, sizeof *f);
    for (int i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : strlen(v[i]);
        f[i].data = cb_malloc(l + 1);
        memcpy(f[i].data, v[i], l);
        f[i].data[l] = 0;
        f[i].len = l;
    }
    return f;
}

static kn_recv_status decode(kn_signer *s, int n, const char **v, kn_msg **out)
{
    kn_bytes *f = frames(n, v, NULL);
    kn_recv_status st = kn_wire_decode(f, (size_t)n, s, out);
    free(f);
    return st;
}

static void test_signing(void)
{
    kn_signer s;
    is_int(kn_signer_init(&s, "hmac-sha256", "secret"), 0, "signer init");
    kn_bytes parts[4] = {B(H), B("{}"), B("{}"), B("{\"a\":1}")};
    char sig[129];
    size_t n = kn_signer_sign(&s, parts, sig);
    is_int(n, 64, "sha256 hex length");
    is_str(sig, "40d1a258f9b44c758873aad1e7000745d993cdaf4b7c812720c830bfc3e02754", "HMAC-SHA256 matches Python's hmac");
    ok(kn_signer_verify(&s, parts, sig, n), "verify good signature");
    sig[5] ^= 1;
    ok(!kn_signer_verify(&s, parts, sig, n), "reject a flipped bit");
    ok(!kn_signer_verify(&s, parts, sig, 10), "reject a short signature");
    kn_signer_clear(&s);

    kn_signer s5;
    kn_signer_init(&s5, "hmac-sha512", "secret");
    n = kn_signer_sign(&s5, parts, sig);
    is_str(sig, "a6bb9ac2a3016cc99474babe8c48122b823ad5a0be758250e19eb82d0bf15d12b1d633891e98b6a0b9dec7cdb31d8b3cda92b99130fb263fda68f75dc8f5a22c",
           "HMAC-SHA512 matches Python's hmac");
    kn_signer_clear(&s5);

    kn_signer none;
    kn_signer_init(&none, "hmac-sha256", "");
    is_int(kn_signer_sign(&none, parts, sig), 0, "empty key: empty signature");
    ok(kn_signer_verify(&none, parts, "anything", 8), "empty key: no verification");
    kn_signer_clear(&none);

    kn_signer bad;
    is_int(kn_signer_init(&bad, "md5", "k"), -1, "unsupported scheme refused");
}

static void test_decode(void)
{
    kn_signer s;
    kn_signer_init(&s, "hmac-sha256", "secret");
    kn_bytes parts[4] = {B(H), B("{}"), B("{}"), B("{\"a\":1}")};
    char sig[129];
    kn_signer_sign(&s, parts, sig);
    kn_msg *m = NULL;

    const char *good[] = {"id1", "id2", "<IDS|MSG>", sig, H, "{}", "{}", "{\"a\":1}", "buf0"};
    is_int(decode(&s, 9, good, &m), KN_RECV_OK, "decode a good message");
    ok(m && m->n_ids == 2 && memcmp(m->ids[1].data, "id2", 3) == 0, "identities kept");
    ok(m && m->n_buffers == 1 && m->buffers[0].len == 4, "binary buffer kept");
    is_str(m ? m->msg_type : NULL, "x", "msg_type");
    ok(m && cb_json_int(m->content, "a", 0) == 1, "content parsed");
    ok(m && m->header_raw.len == strlen(H), "raw header kept for parent");
    kn_msg_free(m);
    is_int(decode(&s, 9, good, &m), KN_RECV_REPLAYED, "the same signature twice is a replay");

    const char *nodelim[] = {"a", "b", "c"};
    is_int(decode(&s, 3, nodelim, &m), KN_RECV_BAD_FRAMES, "no delimiter");
    const char *few[] = {"<IDS|MSG>", sig, H};
    is_int(decode(&s, 3, few, &m), KN_RECV_BAD_FRAMES, "too few frames");
    const char *badsig[] = {"<IDS|MSG>", "0000", H, "{}", "{}", "{}"};
    is_int(decode(&s, 6, badsig, &m), KN_RECV_BAD_SIGNATURE, "bad signature");
    ok(m == NULL, "nothing returned for a bad signature");

    kn_signer nos;
    kn_signer_init(&nos, NULL, "");
    const char *badhdr[] = {"<IDS|MSG>", "", "{not json", "{}", "{}", "{}"};
    is_int(decode(&nos, 6, badhdr, &m), KN_RECV_BAD_HEADER, "header not JSON");
    const char *notype[] = {"<IDS|MSG>", "", "{\"msg_id\":\"1\"}", "{}", "{}", "{}"};
    is_int(decode(&nos, 6, notype, &m), KN_RECV_BAD_HEADER, "header without msg_type");
    const char *arrhdr[] = {"<IDS|MSG>", "", "[1,2]", "{}", "{}", "{}"};
    is_int(decode(&nos, 6, arrhdr, &m), KN_RECV_BAD_HEADER, "header not an object");
    const char *badcontent[] = {"<IDS|MSG>", "", H, "{}", "[]", "{oops"};
    is_int(decode(&nos, 6, badcontent, &m), KN_RECV_BAD_JSON, "bad content still decodes (for an error reply)");
    ok(m && cJSON_IsObject(m->content) && cJSON_IsObject(m->metadata), "broken parts become empty objects");
    kn_msg_free(m);
    /* a NUL inside a frame must not confuse the parser */
    size_t lens[] = {9, 0, strlen(H), 2, 2, 6};
    const char *withnul[] = {"<IDS|MSG>", "", H, "{}", "{}", "{}\0xyz"};
    kn_bytes *f = frames(6, withnul, lens);
    kn_recv_status st = kn_wire_decode(f, 6, &nos, &m);
    free(f);
    ok(st == KN_RECV_OK || st == KN_RECV_BAD_JSON, "NUL bytes in a frame are handled");
    kn_msg_free(m);
    kn_signer_clear(&nos);
    kn_signer_clear(&s);
}

static void test_roundtrip(void)
{
    void *ctx = zmq_ctx_new();
    void *a = zmq_socket(ctx, ZMQ_PAIR), *b = zmq_socket(ctx, ZMQ_PAIR);
    zmq_bind(a, "inproc://t");
    zmq_connect(b, "inproc://t");
    kn_session s;
    kn_session_init(&s, "hmac-sha256", "k3y");
    cJSON *content = cJSON_Parse("{\"code\":\"print('\\u00e9')\"}");
    kn_bytes parent = B("{\"msg_id\":\"p1\",\"msg_type\":\"execute_request\"}");
    char id1[KN_MSG_ID_LEN], id2[KN_MSG_ID_LEN];
    is_int(kn_session_send_json(&s, a, NULL, NULL, 0, "execute_request", &parent, content, id1), 0, "send");
    kn_msg *m = NULL;
    kn_signer v;
    kn_signer_init(&v, "hmac-sha256", "k3y");
    is_int(kn_wire_recv(b, &v, 0, 0, &m), KN_RECV_OK, "receive and verify");
    is_str(m ? m->msg_id : NULL, id1, "msg_id");
    is_str(m ? cb_json_str(m->parent, "msg_id", NULL) : NULL, "p1", "parent header");
    is_str(m ? cb_json_str(m->header, "version", NULL) : NULL, "5.3", "protocol version");
    const char *date = m ? cb_json_str(m->header, "date", "") : "";
    ok(strlen(date) == 27 && date[26] == 'Z' && cb_iso_date_parse(date) > 0, "ISO 8601 date with zone: %s", date);
    is_str(m ? cb_json_str(m->header, "session", NULL) : NULL, s.id, "session id");
    is_str(m ? cb_json_str(m->content, "code", NULL) : NULL, "print('\xc3\xa9')", "content with non-ASCII");
    kn_msg_free(m);
    kn_session_send_json(&s, a, NULL, NULL, 0, "x", NULL, content, id2);
    ok(strcmp(id1, id2) != 0, "msg_ids are unique");
    is_int(kn_wire_recv(b, &v, 16, 0, &m), KN_RECV_TOO_BIG, "size limit");
    is_int(kn_wire_recv(b, &v, 0, ZMQ_DONTWAIT, &m), KN_RECV_AGAIN, "nothing left");
    /* wrong key on the receiving side */
    kn_session_send_json(&s, a, NULL, NULL, 0, "x", NULL, content, NULL);
    kn_signer w;
    kn_signer_init(&w, "hmac-sha256", "other");
    is_int(kn_wire_recv(b, &w, 0, 0, &m), KN_RECV_BAD_SIGNATURE, "wrong key detected");
    kn_signer_clear(&w);
    kn_signer_clear(&v);
    cJSON_Delete(content);
    kn_session_clear(&s);
    zmq_close(a);
    zmq_close(b);
    zmq_ctx_term(ctx);
}

static void test_conn(void)
{
    kn_conn c;
    char *err = NULL;
    is_int(kn_conn_parse(&c, "{\"transport\":\"tcp\",\"ip\":\"127.0.0.1\",\"shell_port\":1,\"iopub_port\":2,"
                             "\"stdin_port\":3,\"control_port\":4,\"hb_port\":5,\"key\":\"k\",\"signature_scheme\":\"hmac-sha256\"}",
                         &err), 0, "parse a connection file");
    cb_autofree char *ep = kn_conn_endpoint(&c, c.iopub_port);
    is_str(ep, "tcp://127.0.0.1:2", "tcp endpoint");
    kn_conn_clear(&c);
    kn_conn_parse(&c, "{\"transport\":\"ipc\",\"ip\":\"/tmp/k\",\"shell_port\":1,\"iopub_port\":2,"
                      "\"stdin_port\":3,\"control_port\":4,\"hb_port\":5,\"key\":\"\"}", &err);
    cb_autofree char *ep2 = kn_conn_endpoint(&c, 3);
    is_str(ep2, "ipc:///tmp/k-3", "ipc endpoint");
    kn_conn_clear(&c);
    static const char *bad[][2] = {
        {"[]", "not a JSON object"},
        {"{\"shell_port\":1}", "iopub_port"},
        {"{\"transport\":\"udp\"}", "transport"},
        {"{\"shell_port\":1,\"iopub_port\":2,\"stdin_port\":3,\"control_port\":4,\"hb_port\":70000}", "hb_port"},
        {"{\"shell_port\":1,\"iopub_port\":2,\"stdin_port\":3,\"control_port\":4,\"hb_port\":5,\"signature_scheme\":\"md5\"}", "signature_scheme"},
        {"{\"shell_port\":1,\"iopub_port\":2,\"stdin_port\":3,\"control_port\":4,\"hb_port\":5,\"key\":5}", "key"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(bad); i++) {
        err = NULL;
        int rc = kn_conn_parse(&c, bad[i][0], &err);
        ok(rc < 0 && err && strstr(err, bad[i][1]), "bad connection file names '%s' (%s)", bad[i][1], err ? err : "");
        free(err);
        kn_conn_clear(&c);
    }
    err = NULL;
    ok(kn_conn_load(&c, "/nonexistent/conn.json", &err) < 0 && strstr(err, "/nonexistent/conn.json"),
       "missing file named in the error");
    free(err);
}

static int hist_len(kn_history *h, const char *req)
{
    cJSON *r = cJSON_Parse(req);
    cJSON *reply = kn_history_query(h, r);
    int n = cJSON_GetArraySize(cb_json_arr(reply, "history"));
    cJSON_Delete(r);
    cJSON_Delete(reply);
    return n;
}

static void test_history(void)
{
    char dir[] = "/tmp/cb-t-hist-XXXXXX";
    mkdtemp(dir);
    cb_autofree char *path = cb_path_join(dir, "h.jsonl");
    kn_history *h = kn_history_open(path);
    is_int(kn_history_session(h), 1, "first session is 1");
    kn_history_add(h, 1, "a = 1", NULL);
    kn_history_add(h, 2, "a + 1", "2");
    kn_history_add(h, 3, "a + 1", "2");
    kn_history_free(h);
    h = kn_history_open(path);
    is_int(kn_history_session(h), 2, "a restart opens session 2");
    kn_history_add(h, 1, "b = 2", NULL);
    is_int(hist_len(h, "{\"hist_access_type\":\"tail\",\"n\":10}"), 4, "tail spans sessions");
    is_int(hist_len(h, "{\"hist_access_type\":\"tail\",\"n\":2}"), 2, "tail n");
    is_int(hist_len(h, "{\"hist_access_type\":\"range\",\"session\":0,\"start\":1,\"stop\":2}"), 1, "range in this session");
    is_int(hist_len(h, "{\"hist_access_type\":\"range\",\"session\":-1,\"start\":2,\"stop\":4}"), 2, "range in the previous session");
    is_int(hist_len(h, "{\"hist_access_type\":\"range\",\"session\":1,\"start\":1}"), 3, "range to the end");
    is_int(hist_len(h, "{\"hist_access_type\":\"search\",\"pattern\":\"a*\"}"), 3, "search glob");
    is_int(hist_len(h, "{\"hist_access_type\":\"search\",\"pattern\":\"a*\",\"unique\":true}"), 2, "search unique");
    is_int(hist_len(h, "{\"hist_access_type\":\"search\",\"pattern\":\"a*\",\"n\":1}"), 1, "search n");
    cJSON *r = cJSON_Parse("{\"hist_access_type\":\"tail\",\"n\":2,\"output\":true}");
    cJSON *reply = kn_history_query(h, r);
    cJSON *first = cJSON_GetArrayItem(cb_json_arr(reply, "history"), 0);
    cJSON *io = cJSON_GetArrayItem(first, 2);
    ok(cJSON_IsArray(io) && cJSON_GetArraySize(io) == 2 &&
           strcmp(cJSON_GetArrayItem(io, 1)->valuestring, "2") == 0, "output=true gives [input, output]");
    cJSON_Delete(r);
    cJSON_Delete(reply);
    r = cJSON_Parse("{\"hist_access_type\":\"bogus\"}");
    reply = kn_history_query(h, r);
    is_str(cb_json_str(reply, "status", NULL), "error", "bad access type is an error reply");
    cJSON_Delete(r);
    cJSON_Delete(reply);
    /* the session number comes from the last marker, even far back in a big file */
    for (int i = 0; i < 3000; i++)
        kn_history_add(h, 100 + i, "a line of history long enough to fill several read chunks", NULL);
    kn_history_free(h);
    h = kn_history_open(path);
    is_int(kn_history_session(h), 3, "a third open finds session 2's marker behind 150 KB of entries");
    kn_history_free(h);
    kn_history *mem = kn_history_open(NULL);
    kn_history_add(mem, 1, "x", NULL);
    is_int(hist_len(mem, "{\"hist_access_type\":\"tail\"}"), 1, "in-memory history");
    kn_history_free(mem);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ok(system(cmd) == 0, "cleanup");
}

static void test_escape(void)
{
    cb_buf b = CB_BUF_INIT;
    size_t used = ip_json_escape_utf8(&b, "a\"b\\c\n\t\x01", 8, true);
    is_str(b.data, "a\\\"b\\\\c\\n\\t\\u0001", "JSON escapes");
    is_int(used, 8, "all consumed");
    cb_buf_reset(&b);
    used = ip_json_escape_utf8(&b, "caf\xc3\xa9 \xe2\x98", 8, false);
    is_str(b.data, "caf\xc3\xa9 ", "a truncated UTF-8 sequence is held back");
    is_int(used, 6, "held back bytes not consumed");
    cb_buf_reset(&b);
    ip_json_escape_utf8(&b, "x\xe2\x98", 3, true);
    is_str(b.data, "x\xef\xbf\xbd", "...and replaced at the end");
    cb_buf_reset(&b);
    ip_json_escape_utf8(&b, "\xff\xc0\xaf\xed\xa0\x80ok", 8, true);
    is_str(b.data, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdok",
           "invalid, overlong and surrogate sequences replaced");
    cb_buf_reset(&b);
    ip_json_escape_utf8(&b, "\xf0\x9f\x98\x80", 4, true);
    is_str(b.data, "\xf0\x9f\x98\x80", "4-byte sequence kept");
    cb_buf_clear(&b);
}

/* ------------------------------------------------------------------ capture */

/* A kn_host that records the stream messages it is given. */
typedef struct {
    pthread_mutex_t lock;
    int n;              /* messages */
    size_t biggest;     /* JSON bytes of the biggest */
    bool bad_start;     /* a message's text began inside a UTF-8 character */
    cb_buf text[3];     /* [1] stdout, [2] stderr: the texts joined */
    cb_buf order;       /* one letter a message: o stdout, e stderr */
} rec_host;

static void rec_publish(void *ctx, const char *msg_type, const char *content, size_t len,
                        const kn_bytes *bufs, size_t nbufs)
{
    rec_host *r = ctx;
    (void)bufs, (void)nbufs;
    if (strcmp(msg_type, "stream") != 0)
        return;
    cJSON *j = cb_json_parse(content, len);
    const char *text = cb_json_str(j, "text", "");
    int s = strcmp(cb_json_str(j, "name", ""), "stderr") == 0 ? 2 : 1;
    pthread_mutex_lock(&r->lock);
    r->n++;
    if (len > r->biggest)
        r->biggest = len;
    if (((unsigned char)text[0] & 0xc0) == 0x80)
        r->bad_start = true;
    cb_buf_puts(&r->text[s], text);
    if (!r->order.len || r->order.data[r->order.len - 1] != "xoe"[s])
        cb_buf_putc(&r->order, "xoe"[s]);
    pthread_mutex_unlock(&r->lock);
    cJSON_Delete(j);
}

static void rec_reset(rec_host *r)
{
    r->n = 0;
    r->biggest = 0;
    r->bad_start = false;
    for (int i = 0; i < 3; i++)
        cb_buf_reset(&r->text[i]);
    cb_buf_reset(&r->order);
    cb_buf_puts(&r->order, "");
}

static void test_capture(void)
{
    rec_host r = {.lock = PTHREAD_MUTEX_INITIALIZER};
    kn_host host = {.ctx = &r, .publish = rec_publish};
    ip_capture *c = ip_capture_start(&host, false);
    ip_capture_set_interval(c, 60000);  /* no publication by the clock: batches as written */
    size_t big = IP_CAPTURE_BIG + 1000;
    char *x = cb_malloc(big);

    /* a character cut by the end of the pending batch is completed by
     * the start of a big write */
    rec_reset(&r);
    memset(x, 'x', big);
    memcpy(x, "\x98\x83", 2);
    ip_capture_write(c, IP_STDOUT, "A\xe2", 2);
    ip_capture_write(c, IP_STDOUT, x, big);
    ip_capture_flush(c);
    ok(r.text[1].len == big + 2 && memcmp(r.text[1].data, "A\xe2\x98\x83xxx", 7) == 0 &&
           r.text[1].data[r.text[1].len - 1] == 'x',
       "big write: joins the pending batch, the cut character completed");
    is_int(r.n, 1, "...in one message (under IP_STREAM_CHUNK)");

    /* the other stream: the cut character is replaced, the order kept */
    rec_reset(&r);
    memset(x, 'y', big);
    ip_capture_write(c, IP_STDOUT, "A\xe2", 2);
    ip_capture_write(c, IP_STDERR, x, big);
    ip_capture_write(c, IP_STDOUT, "B", 1);
    ip_capture_flush(c);
    is_str(r.text[1].data, "A\xef\xbf\xbd" "B", "big write to the other stream: a cut character is replaced");
    is_str(r.order.data, "oeo", "...and stdout, stderr, stdout keep their order");
    is_int(r.text[2].len, big, "...all of the big write");

    /* a big write that escapes to several messages: each at most
     * IP_STREAM_CHUNK, none starting inside a character */
    rec_reset(&r);
    size_t n3 = 3 * IP_CAPTURE_BIG;
    char *y = cb_malloc(n3);
    for (size_t i = 0; i < n3; i += 3)
        memcpy(y + i, i % 7 ? "\xe2\x98\x83" : "\x01\x01\x01", 3);  /* snowmen, escapes */
    ip_capture_write(c, IP_STDOUT, y, n3);
    ip_capture_flush(c);
    ok(r.n >= 2 && r.biggest <= IP_STREAM_CHUNK && !r.bad_start,
       "12 MiB escaping to ~20 MiB: %d messages, biggest %zu bytes, cut between characters", r.n, r.biggest);
    ok(r.text[1].len == n3 && memcmp(r.text[1].data, y, n3) == 0, "...joined, the text is the write");
    free(y);

    /* one write in parts (a huge str encoded in slices): parts may cut a
     * character anywhere */
    rec_reset(&r);
    ip_capture_write(c, IP_STDOUT, "<", 1);
    ip_capture_write_begin(c, IP_STDOUT);
    ip_capture_write_part(c, "\xf0", 1);
    ip_capture_write_part(c, "\x9f\x98", 2);
    ip_capture_write_part(c, "\x80", 1);
    ip_capture_write_part(c, "caf\xc3", 4);
    ip_capture_write_end(c);
    ip_capture_write(c, IP_STDOUT, "\xa9>", 2);
    ip_capture_flush(c);
    is_str(r.text[1].data, "<\xf0\x9f\x98\x80" "caf\xc3\xa9>", "a write in parts: characters cut by parts joined");
    ip_capture_write_begin(c, IP_STDOUT);
    ip_capture_write_part(c, "\xe2\x98", 2);
    ip_capture_write_end(c);
    ip_capture_flush(c);
    ok(strcmp(r.text[1].data + r.text[1].len - 3, "\xef\xbf\xbd") == 0,
       "...an incomplete character at the end of the cell is replaced, not lost");

    ip_capture_stop(c);
    free(x);
    for (int i = 0; i < 3; i++)
        cb_buf_clear(&r.text[i]);
    cb_buf_clear(&r.order);
}

int main(void)
{
    test_signing();
    test_decode();
    test_roundtrip();
    test_conn();
    test_history();
    test_escape();
    test_capture();
    return tap_done();
}
