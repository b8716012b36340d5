/* kernel/session.h: one Jupyter session per process: its id, the signer, and
 * the builder of outgoing messages (headers with unique msg_ids and ISO-8601
 * dates). Used by the kernel and by the kernel client (the executor).
 *
 * kn_session is embedded by value (kn_session_init/kn_session_clear).
 * kn_session_send() is safe to call from several threads on *different*
 * sockets; a socket itself must only be used by one thread at a time.
 *
 * A kn_meter counts the bytes ZeroMQ holds for a socket: what
 * kn_session_send_metered() handed it and ZeroMQ has not yet written out to
 * every peer (or dropped with a closed peer). It is the kernel's measure of
 * an IOPub queue that a frontend does not read (ZeroMQ's own high-water mark
 * counts messages, and one message can be megabytes). A meter is a value
 * owned by its embedder (kn_meter_init); it must outlive the socket's
 * ZeroMQ context, which releases the last bytes as it ends.
 */
#ifndef KN_SESSION_H
#define KN_SESSION_H

#include <stdatomic.h>

#include "base/buf.h"
#include "kernel/wire.h"

#define KN_MSG_ID_LEN 80

typedef struct kn_session {
    char id[37];
    char *username_json;  /* JSON string literal, quotes included */
    int pid;
    atomic_ulong counter;
    kn_signer signer;
} kn_session;

int kn_session_init(kn_session *s, const char *scheme, const char *key);
void kn_session_clear(kn_session *s);

/* Writes a fresh header JSON object into out (reset first) and its msg_id
 * into msg_id (KN_MSG_ID_LEN bytes). */
void kn_session_header(kn_session *s, const char *msg_type, cb_buf *out, char *msg_id);

/* An outgoing message; strings are JSON texts, borrowed. NULL parent or
 * metadata mean "{}". content_len may be 0 for strlen(content). */
typedef struct kn_out {
    const char *msg_type;
    const kn_bytes *parent;     /* raw header of the request this answers */
    const char *metadata;
    const char *content;
    size_t content_len;
    const kn_bytes *buffers;
    size_t n_buffers;
} kn_out;

/* Signs and sends; returns 0 or -1. msg_id_out may be NULL. */
int kn_session_send(kn_session *s, void *sock, const char *topic, const kn_bytes *ids, size_t n_ids,
                    const kn_out *m, char *msg_id_out);

typedef struct kn_meter {
    atomic_size_t queued;        /* bytes given to ZeroMQ, not yet released */
    atomic_llong released_ns;    /* cb_mono_ns() of the last release (0: none yet) */
} kn_meter;

/* Bytes a queued frame costs beyond its data (ZeroMQ's message and pipe
 * entry, the allocation): counted so that a flood of tiny messages is
 * measured too. */
#define KN_METER_FRAME_OVERHEAD 128

void kn_meter_init(kn_meter *m);

/* kn_session_send() for a socket whose queue is measured: the message's
 * bytes (its frames plus KN_METER_FRAME_OVERHEAD each) are added to
 * meter->queued when it is sent and taken off, from whatever thread ZeroMQ
 * releases it on (usually its I/O thread), once its last frame has gone:
 * ZeroMQ writes a message's frames in order, so by then the others have
 * gone too. Same framing and signing as kn_wire_send(). Returns 0 or -1. */
int kn_session_send_metered(kn_session *s, void *sock, const char *topic, const kn_out *m,
                            kn_meter *meter);

/* Convenience: content as cJSON (borrowed, printed here). */
int kn_session_send_json(kn_session *s, void *sock, const char *topic, const kn_bytes *ids,
                         size_t n_ids, const char *msg_type, const kn_bytes *parent,
                         const cJSON *content, char *msg_id_out);

#endif
