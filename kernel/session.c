/* kernel/session.c: see session.h. Headers are printed directly (every
 * value is known ASCII except the username, escaped once at init), which
 * keeps the hot path of a reply free of cJSON trees. */
#include "config.h"
#include "kernel/session.h"

#include <errno.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "base/json.h"
#include "base/util.h"

int kn_session_init(kn_session *s, const char *scheme, const char *key)
{
    memset(s, 0, sizeof *s);
    cb_uuid4(s->id);
    s->pid = (int)getpid();
    atomic_init(&s->counter, 0);
    const char *user = getenv("USER");
    if (!user || !*user) {
        struct passwd *pw = getpwuid(getuid());
        user = pw ? pw->pw_name : "cellbox";
    }
    cJSON *u = cJSON_CreateString(user);
    s->username_json = cb_json_print(u);
    cJSON_Delete(u);
    return kn_signer_init(&s->signer, scheme, key);
}

void kn_session_clear(kn_session *s)
{
    free(s->username_json);
    kn_signer_clear(&s->signer);
    memset(s, 0, sizeof *s);
}

void kn_session_header(kn_session *s, const char *msg_type, cb_buf *out, char *msg_id)
{
    char date[CB_ISO_DATE_LEN];
    unsigned long n = atomic_fetch_add(&s->counter, 1) + 1;
    snprintf(msg_id, KN_MSG_ID_LEN, "%.8s-%.4s_%d_%lu", s->id, s->id + 9, s->pid, n);
    cb_iso_date(date, cb_real_us());
    cb_buf_reset(out);
    cb_buf_printf(out,
                  "{\"msg_id\":\"%s\",\"msg_type\":\"%s\",\"username\":%s,\"session\":\"%s\","
                  "\"date\":\"%s\",\"version\":\"" KN_PROTOCOL_VERSION "\"}",
                  msg_id, msg_type, s->username_json, s->id, date);
}

/* The four signed parts of m, with a new header (in *header, msg_id). */
static void message_parts(kn_session *s, const kn_out *m, cb_buf *header, char *msg_id, kn_bytes parts[4])
{
    kn_session_header(s, m->msg_type, header, msg_id);
    parts[0] = (kn_bytes){header->data, header->len};
    parts[1] = m->parent && m->parent->data ? *m->parent : (kn_bytes){"{}", 2};
    parts[2] = (kn_bytes){(char *)(m->metadata ? m->metadata : "{}"), strlen(m->metadata ? m->metadata : "{}")};
    parts[3] = (kn_bytes){(char *)m->content, m->content_len ? m->content_len : strlen(m->content)};
}

int kn_session_send(kn_session *s, void *sock, const char *topic, const kn_bytes *ids, size_t n_ids,
                    const kn_out *m, char *msg_id_out)
{
    char msg_id[KN_MSG_ID_LEN];
    cb_buf header = CB_BUF_INIT;
    kn_bytes parts[4];
    message_parts(s, m, &header, msg_id, parts);
    int rc = kn_wire_send(sock, &s->signer, topic, ids, n_ids, parts, m->buffers, m->n_buffers);
    cb_buf_clear(&header);
    if (msg_id_out)
        memcpy(msg_id_out, msg_id, KN_MSG_ID_LEN);
    return rc;
}

void kn_meter_init(kn_meter *m)
{
    atomic_init(&m->queued, 0);
    atomic_init(&m->released_ns, 0);
}

/* The last frame of a metered message: its copy carries what to take off. */
typedef struct metered_block {
    kn_meter *meter;
    size_t bytes;        /* the whole message's cost */
    char data[];
} metered_block;

static void metered_release(void *data, void *hint)
{
    metered_block *b = hint;
    atomic_fetch_sub(&b->meter->queued, b->bytes);
    atomic_store(&b->meter->released_ns, (long long)cb_mono_ns());
    free(b);
}

static int send_copy(void *sock, const void *data, size_t len, bool more)
{
    int rc;
    do
        rc = zmq_send(sock, data, len, more ? ZMQ_SNDMORE : 0);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -1 : 0;
}

int kn_session_send_metered(kn_session *s, void *sock, const char *topic, const kn_out *m,
                            kn_meter *meter)
{
    char msg_id[KN_MSG_ID_LEN], sig[129];
    cb_buf header = CB_BUF_INIT;
    kn_bytes parts[4];
    message_parts(s, m, &header, msg_id, parts);
    size_t siglen = kn_signer_sign(&s->signer, parts, sig);
    /* the frames in wire order (kn_wire_send's): [topic] <IDS|MSG> signature
     * header parent metadata content [buffers] */
    size_t nframes = 7 + m->n_buffers;
    kn_bytes stack[16], *frames = nframes <= 16 ? stack : cb_calloc(nframes, sizeof *frames);
    size_t n = 0, bytes = 0;
    if (topic)
        frames[n++] = (kn_bytes){(char *)topic, strlen(topic)};
    frames[n++] = (kn_bytes){(char *)KN_DELIM, strlen(KN_DELIM)};
    frames[n++] = (kn_bytes){sig, siglen};
    for (int i = 0; i < 4; i++)
        frames[n++] = parts[i];
    for (size_t i = 0; i < m->n_buffers; i++)
        frames[n++] = m->buffers[i];
    for (size_t i = 0; i < n; i++)
        bytes += frames[i].len + KN_METER_FRAME_OVERHEAD;
    int rc = 0;
    for (size_t i = 0; i + 1 < n && rc == 0; i++)
        rc = send_copy(sock, frames[i].data, frames[i].len, true);
    if (rc == 0) {
        /* the last frame is a copy whose release takes the message off */
        const kn_bytes *last = &frames[n - 1];
        metered_block *b = cb_malloc(sizeof *b + (last->len ? last->len : 1));
        b->meter = meter;
        b->bytes = bytes;
        memcpy(b->data, last->data, last->len);
        atomic_fetch_add(&meter->queued, bytes);
        zmq_msg_t msg;
        zmq_msg_init_data(&msg, b->data, last->len, metered_release, b);
        do
            rc = zmq_msg_send(&msg, sock, 0);
        while (rc < 0 && errno == EINTR);
        if (rc < 0) {
            zmq_msg_close(&msg);  /* releases b */
            rc = -1;
        } else {
            rc = 0;
        }
    }
    if (frames != stack)
        free(frames);
    cb_buf_clear(&header);
    return rc;
}

int kn_session_send_json(kn_session *s, void *sock, const char *topic, const kn_bytes *ids,
                         size_t n_ids, const char *msg_type, const kn_bytes *parent,
                         const cJSON *content, char *msg_id_out)
{
    cb_autofree char *c = cb_json_print(content);
    kn_out m = {.msg_type = msg_type, .parent = parent, .content = c};
    return kn_session_send(s, sock, topic, ids, n_ids, &m, msg_id_out);
}
