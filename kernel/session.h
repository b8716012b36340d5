/* kernel/session.h: one Jupyter session per process: its id, the signer, and
 * the builder of outgoing messages (headers with unique msg_ids and ISO-8601
 * dates). Used by the kernel and by the kernel client (the executor).
 *
 * kn_session is embedded by value (kn_session_init/kn_session_clear).
 * kn_session_send() is safe to call from several threads on *different*
 * sockets; a socket itself must only be used by one thread at a time.
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

/* Convenience: content as cJSON (borrowed, printed here). */
int kn_session_send_json(kn_session *s, void *sock, const char *topic, const kn_bytes *ids,
                         size_t n_ids, const char *msg_type, const kn_bytes *parent,
                         const cJSON *content, char *msg_id_out);

#endif
