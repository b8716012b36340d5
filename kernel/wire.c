/* kernel/wire.c: frames <-> kn_msg, HMAC signing with libsodium.
 *
 * Bad input never crashes: every frame is checked, sizes are bounded, and
 * the caller learns why a message was dropped (kn_recv_status) so it can log
 * it. Nothing here allocates per-byte; frames are copied once out of ZeroMQ. */
#include "config.h"
#include "kernel/wire.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>
#include <zmq.h>

#include "base/json.h"
#include "base/util.h"

#define SEEN_CAP 4096  /* power of two */

int kn_signer_init(kn_signer *s, const char *scheme, const char *key)
{
    memset(s, 0, sizeof *s);
    if (!key || !*key) {
        s->scheme = KN_SIG_NONE;
        return 0;
    }
    if (!scheme || !*scheme || strcmp(scheme, "hmac-sha256") == 0)
        s->scheme = KN_SIG_SHA256;
    else if (strcmp(scheme, "hmac-sha512") == 0)
        s->scheme = KN_SIG_SHA512;
    else
        return -1;
    s->keylen = strlen(key);
    s->key = (unsigned char *)cb_strdup(key);
    s->seen_cap = SEEN_CAP;
    s->seen = cb_calloc(SEEN_CAP, sizeof *s->seen);
    return 0;
}

void kn_signer_clear(kn_signer *s)
{
    if (s->key)
        sodium_memzero(s->key, s->keylen);
    free(s->key);
    free(s->seen);
    memset(s, 0, sizeof *s);
}

static size_t raw_sign(const kn_signer *s, const kn_bytes parts[4], unsigned char *mac)
{
    if (s->scheme == KN_SIG_SHA256) {
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, s->key, s->keylen);
        for (int i = 0; i < 4; i++)
            crypto_auth_hmacsha256_update(&st, (const unsigned char *)parts[i].data, parts[i].len);
        crypto_auth_hmacsha256_final(&st, mac);
        return crypto_auth_hmacsha256_BYTES;
    }
    crypto_auth_hmacsha512_state st;
    crypto_auth_hmacsha512_init(&st, s->key, s->keylen);
    for (int i = 0; i < 4; i++)
        crypto_auth_hmacsha512_update(&st, (const unsigned char *)parts[i].data, parts[i].len);
    crypto_auth_hmacsha512_final(&st, mac);
    return crypto_auth_hmacsha512_BYTES;
}

size_t kn_signer_sign(const kn_signer *s, const kn_bytes parts[4], char *out)
{
    if (s->scheme == KN_SIG_NONE) {
        out[0] = '\0';
        return 0;
    }
    unsigned char mac[64];
    size_t n = raw_sign(s, parts, mac);
    sodium_bin2hex(out, n * 2 + 1, mac, n);
    return n * 2;
}

bool kn_signer_verify(const kn_signer *s, const kn_bytes parts[4], const char *sig, size_t siglen)
{
    if (s->scheme == KN_SIG_NONE)
        return true;
    char want[129];
    size_t n = kn_signer_sign(s, parts, want);
    if (siglen != n)
        return false;
    /* hex digits from libsodium are lowercase; peers send lowercase too */
    return sodium_memcmp(want, sig, n) == 0;
}

bool kn_signer_remember(kn_signer *s, const char *sig, size_t siglen)
{
    if (s->scheme == KN_SIG_NONE || siglen < 16 || !s->seen)
        return true;
    uint64_t h = 0;
    for (size_t i = 0; i < 16; i++)  /* hex of a MAC: uniformly distributed already */
        h = h * 16 + (uint64_t)(sig[i] <= '9' ? sig[i] - '0' : (sig[i] | 0x20) - 'a' + 10);
    if (h == 0)
        h = 1;
    size_t mask = s->seen_cap - 1, i = (size_t)h & mask;
    for (size_t probes = 0; probes < 8; probes++, i = (i + 1) & mask) {
        if (s->seen[i] == h)
            return false;
        if (s->seen[i] == 0) {
            s->seen[i] = h;
            if (++s->seen_count > s->seen_cap / 2) {  /* forget the oldest half roughly: reset */
                memset(s->seen, 0, s->seen_cap * sizeof *s->seen);
                s->seen_count = 0;
                s->seen[(size_t)h & mask] = h;
            }
            return true;
        }
    }
    s->seen[(size_t)h & mask] = h;  /* table neighbourhood full: overwrite */
    return true;
}

const char *kn_recv_status_str(kn_recv_status st)
{
    switch (st) {
    case KN_RECV_OK: return "ok";
    case KN_RECV_AGAIN: return "no message";
    case KN_RECV_CLOSED: return "closed";
    case KN_RECV_BAD_FRAMES: return "malformed frames (no <IDS|MSG> delimiter or too few frames)";
    case KN_RECV_TOO_BIG: return "message over the size limit";
    case KN_RECV_BAD_SIGNATURE: return "invalid HMAC signature";
    case KN_RECV_REPLAYED: return "replayed signature";
    case KN_RECV_BAD_HEADER: return "header is not a JSON object with msg_id and msg_type";
    case KN_RECV_BAD_JSON: return "parent_header, metadata or content is not a JSON object";
    }
    return "?";
}

void kn_msg_free(kn_msg *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_ids; i++)
        free(m->ids[i].data);
    free(m->ids);
    free(m->header_raw.data);
    cJSON_Delete(m->header);
    cJSON_Delete(m->parent);
    cJSON_Delete(m->metadata);
    cJSON_Delete(m->content);
    for (size_t i = 0; i < m->n_buffers; i++)
        free(m->buffers[i].data);
    free(m->buffers);
    free(m);
}

static cJSON *parse_obj(const kn_bytes *b, kn_json_parse_fn parse, bool *bad)
{
    cJSON *j = parse ? parse(b->data, b->len) : cJSON_ParseWithLength(b->data, b->len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        *bad = true;
        return cJSON_CreateObject();
    }
    return j;
}

static void free_frames(kn_bytes *frames, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(frames[i].data);
}

kn_recv_status kn_wire_decode(kn_bytes *frames, size_t n, kn_signer *signer, kn_msg **out)
{
    return kn_wire_decode_with(frames, n, signer, NULL, out);
}

kn_recv_status kn_wire_decode_with(kn_bytes *frames, size_t n, kn_signer *signer, kn_json_parse_fn parse,
                                   kn_msg **out)
{
    /* Takes ownership of the frames' data (consumed into the message or freed). */
    *out = NULL;
    size_t d = 0;
    while (d < n && !(frames[d].len == strlen(KN_DELIM) && memcmp(frames[d].data, KN_DELIM, frames[d].len) == 0))
        d++;
    if (d >= n || n - d < 6) {
        free_frames(frames, n);
        return KN_RECV_BAD_FRAMES;
    }
    kn_bytes *parts = &frames[d + 2];
    if (!kn_signer_verify(signer, parts, frames[d + 1].data, frames[d + 1].len)) {
        free_frames(frames, n);
        return KN_RECV_BAD_SIGNATURE;
    }
    if (!kn_signer_remember(signer, frames[d + 1].data, frames[d + 1].len)) {
        free_frames(frames, n);
        return KN_RECV_REPLAYED;
    }
    cJSON *header = cJSON_ParseWithLength(parts[0].data, parts[0].len);
    const char *mt = cJSON_IsObject(header) ? cb_json_str(header, "msg_type", NULL) : NULL;
    const char *mid = cJSON_IsObject(header) ? cb_json_str(header, "msg_id", NULL) : NULL;
    if (!mt || !*mt || !mid) {
        cJSON_Delete(header);
        free_frames(frames, n);
        return KN_RECV_BAD_HEADER;
    }
    kn_msg *m = cb_calloc(1, sizeof *m);
    m->header = header;
    m->msg_type = mt;
    m->msg_id = mid;
    const char *sess = cb_json_str(header, "session", NULL);
    m->session = sess ? sess : "";
    bool bad = false;
    m->parent = parse_obj(&parts[1], NULL, &bad);
    m->metadata = parse_obj(&parts[2], parse, &bad);
    m->content = parse_obj(&parts[3], parse, &bad);
    m->header_raw = parts[0];
    parts[0].data = NULL;
    m->n_ids = d;
    if (d) {
        m->ids = cb_malloc(d * sizeof *m->ids);
        memcpy(m->ids, frames, d * sizeof *m->ids);
        for (size_t i = 0; i < d; i++)
            frames[i].data = NULL;
    }
    size_t nb = n - d - 6;
    if (nb) {
        m->n_buffers = nb;
        m->buffers = cb_malloc(nb * sizeof *m->buffers);
        memcpy(m->buffers, &frames[d + 6], nb * sizeof *m->buffers);
        for (size_t i = 0; i < nb; i++)
            frames[d + 6 + i].data = NULL;
    }
    free_frames(frames, n);
    *out = m;
    return bad ? KN_RECV_BAD_JSON : KN_RECV_OK;
}

kn_recv_status kn_wire_recv(void *sock, kn_signer *signer, size_t max_bytes, int flags, kn_msg **out)
{
    return kn_wire_recv_with(sock, signer, max_bytes, flags, NULL, out);
}

kn_recv_status kn_wire_recv_with(void *sock, kn_signer *signer, size_t max_bytes, int flags,
                                 kn_json_parse_fn parse, kn_msg **out)
{
    kn_bytes stack_frames[16], *frames = stack_frames;
    size_t n = 0, cap = CB_ARRAY_LEN(stack_frames), total = 0;
    bool too_big = false;
    *out = NULL;
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        int rc;
        do
            rc = zmq_msg_recv(&part, sock, n == 0 ? flags : 0);
        while (rc < 0 && errno == EINTR);
        if (rc < 0) {
            int e = errno;
            zmq_msg_close(&part);
            free_frames(frames, n);
            if (frames != stack_frames)
                free(frames);
            if (e == EAGAIN)
                return KN_RECV_AGAIN;
            return KN_RECV_CLOSED;  /* ETERM, ENOTSOCK...: the socket is gone */
        }
        size_t len = zmq_msg_size(&part);
        total += len;
        if (max_bytes && total > max_bytes)
            too_big = true;
        if (!too_big) {
            if (n == cap) {
                size_t ncap = cap * 2;
                kn_bytes *nf = cb_malloc(ncap * sizeof *nf);
                memcpy(nf, frames, n * sizeof *nf);
                if (frames != stack_frames)
                    free(frames);
                frames = nf;
                cap = ncap;
            }
            frames[n].data = cb_malloc(len + 1);
            memcpy(frames[n].data, zmq_msg_data(&part), len);
            frames[n].data[len] = '\0';
            frames[n].len = len;
            n++;
        }
        int more = zmq_msg_more(&part);
        zmq_msg_close(&part);
        if (!more)
            break;
    }
    kn_recv_status st;
    if (too_big) {
        free_frames(frames, n);
        st = KN_RECV_TOO_BIG;
    } else {
        st = kn_wire_decode_with(frames, n, signer, parse, out);
    }
    if (frames != stack_frames)
        free(frames);
    return st;
}

static int send_frame(void *sock, const void *data, size_t len, bool more)
{
    int rc;
    do
        rc = zmq_send(sock, data, len, more ? ZMQ_SNDMORE : 0);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -1 : 0;
}

int kn_wire_send(void *sock, const kn_signer *signer, const char *topic, const kn_bytes *ids,
                 size_t n_ids, const kn_bytes parts[4], const kn_bytes *buffers, size_t n_buffers)
{
    char sig[129];
    size_t siglen = kn_signer_sign(signer, parts, sig);
    int rc = 0;
    if (topic)
        rc |= send_frame(sock, topic, strlen(topic), true);
    for (size_t i = 0; i < n_ids; i++)
        rc |= send_frame(sock, ids[i].data, ids[i].len, true);
    rc |= send_frame(sock, KN_DELIM, strlen(KN_DELIM), true);
    rc |= send_frame(sock, sig, siglen, true);
    for (int i = 0; i < 4; i++)
        rc |= send_frame(sock, parts[i].data, parts[i].len, i < 3 || n_buffers > 0);
    for (size_t i = 0; i < n_buffers; i++)
        rc |= send_frame(sock, buffers[i].data, buffers[i].len, i + 1 < n_buffers);
    return rc;
}
