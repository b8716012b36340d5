/* kernel/wire.h: Jupyter wire framing and signing over ZeroMQ sockets.
 *
 * This layer knows frames, signatures and JSON parts, nothing of message
 * types or what a handler does (xeus's xserver/xauthentication split).
 *
 *   [ids...] <IDS|MSG> signature header parent_header metadata content [buffers...]
 *
 * Ownership: kn_wire_recv() returns an owned kn_msg (free with kn_msg_free);
 * kn_wire_send() borrows everything it is given. A kn_signer is a value owned
 * by its embedder (kn_signer_init/kn_signer_clear).
 */
#ifndef KN_WIRE_H
#define KN_WIRE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KN_DELIM "<IDS|MSG>"
#define KN_PROTOCOL_VERSION "5.3"

typedef struct kn_bytes {
    char *data;
    size_t len;
} kn_bytes;

typedef enum { KN_SIG_NONE = 0, KN_SIG_SHA256, KN_SIG_SHA512 } kn_sig_scheme;

/* HMAC signer. An empty key means no signing (the "none" scheme): signatures
 * are empty and any signature is accepted. */
typedef struct kn_signer {
    kn_sig_scheme scheme;
    unsigned char *key;
    size_t keylen;
    /* replay protection: recently seen signatures (a frame signed once is
     * accepted once, like jupyter_client's digest history) */
    uint64_t *seen;
    size_t seen_cap;
    size_t seen_count;
} kn_signer;

/* scheme: "hmac-sha256" (also "hmac-sha512"); returns -1 if unsupported. */
int kn_signer_init(kn_signer *s, const char *scheme, const char *key);
void kn_signer_clear(kn_signer *s);
/* Writes the lowercase hex signature of the four parts into out (129 bytes
 * is always enough); returns its length (0 for the none scheme). */
size_t kn_signer_sign(const kn_signer *s, const kn_bytes parts[4], char *out);
/* Constant-time check. */
bool kn_signer_verify(const kn_signer *s, const kn_bytes parts[4], const char *sig, size_t siglen);
/* Records sig; returns false if it was seen before (a replayed message). */
bool kn_signer_remember(kn_signer *s, const char *sig, size_t siglen);

/* A decoded message. header/parent/metadata/content are always objects after
 * a successful decode (empty objects when the peer sent {}). */
typedef struct kn_msg {
    kn_bytes *ids;
    size_t n_ids;
    kn_bytes header_raw;  /* the header frame exactly as received: the parent of replies */
    cJSON *header;
    cJSON *parent;
    cJSON *metadata;
    cJSON *content;
    kn_bytes *buffers;
    size_t n_buffers;
    const char *msg_type;  /* borrowed from header */
    const char *msg_id;    /* borrowed from header */
    const char *session;   /* borrowed from header (may be "") */
} kn_msg;

void kn_msg_free(kn_msg *m);

typedef enum {
    KN_RECV_OK = 0,
    KN_RECV_AGAIN,        /* nothing to read (non-blocking) */
    KN_RECV_CLOSED,       /* context terminated: stop the loop */
    KN_RECV_BAD_FRAMES,   /* no delimiter / too few frames */
    KN_RECV_TOO_BIG,      /* over the size limit */
    KN_RECV_BAD_SIGNATURE,
    KN_RECV_REPLAYED,
    KN_RECV_BAD_HEADER,   /* header not JSON or without msg_type/msg_id */
    KN_RECV_BAD_JSON,     /* parent/metadata/content not JSON objects: msg still returned */
} kn_recv_status;

const char *kn_recv_status_str(kn_recv_status st);

/* Parser for the metadata and content parts (e.g. one that keeps the
 * spelling of numbers); NULL means cJSON. Returns NULL or a new item. */
typedef cJSON *(*kn_json_parse_fn)(const char *data, size_t len);

/* Receives one multipart message. On KN_RECV_OK and KN_RECV_BAD_JSON *out is
 * set (for BAD_JSON the broken parts are replaced by empty objects so the
 * caller can still answer with an error reply). max_bytes bounds the total
 * size (0 = no limit). flags: 0 or ZMQ_DONTWAIT. */
kn_recv_status kn_wire_recv(void *sock, kn_signer *signer, size_t max_bytes, int flags, kn_msg **out);
kn_recv_status kn_wire_recv_with(void *sock, kn_signer *signer, size_t max_bytes, int flags,
                                 kn_json_parse_fn parse, kn_msg **out);

/* Decodes already received frames (used by kn_wire_recv and by the tests).
 * Takes ownership of the frames' data. */
kn_recv_status kn_wire_decode(kn_bytes *frames, size_t n, kn_signer *signer, kn_msg **out);
kn_recv_status kn_wire_decode_with(kn_bytes *frames, size_t n, kn_signer *signer, kn_json_parse_fn parse,
                                   kn_msg **out);

/* Sends one message. topic (IOPub) or ids (ROUTER replies) precede the
 * delimiter; pass NULL/0 when unused. The JSON parts are sent as given. */
int kn_wire_send(void *sock, const kn_signer *signer, const char *topic, const kn_bytes *ids,
                 size_t n_ids, const kn_bytes parts[4], const kn_bytes *buffers, size_t n_buffers);

#endif
