/* tests/fuzz/fuzz_wire.c: hostile bytes against the wire layer and the
 * other parsers that read what a peer sends: message frames (with and
 * without a key), connection files, ISO dates.
 *
 * Input layout: byte 0 = number of frames (mod 16); then per frame a
 * 2-byte little-endian length and that many bytes (short input ends the
 * list). The whole input is also fed to the text parsers. */
#include "config.h"

#include <string.h>

#include "base/util.h"
#include "kernel/conn.h"
#include "kernel/wire.h"
#include "tests/fuzz/fuzz.h"

static void decode(const uint8_t *data, size_t size, const char *key)
{
    if (size < 1)
        return;
    size_t nframes = data[0] % 16, off = 1, n = 0;
    kn_bytes *frames = cb_calloc(nframes + 1, sizeof *frames);
    while (n < nframes && off + 2 <= size) {
        size_t len = (size_t)data[off] | (size_t)data[off + 1] << 8;
        off += 2;
        if (len > size - off)
            len = size - off;
        frames[n].data = cb_malloc(len + 1);
        memcpy(frames[n].data, data + off, len);
        frames[n].data[len] = '\0';
        frames[n].len = len;
        off += len;
        n++;
    }
    kn_signer s;
    kn_signer_init(&s, "hmac-sha256", key);
    kn_msg *m = NULL;
    kn_recv_status st = kn_wire_decode(frames, n, &s, &m);  /* takes the frames' data */
    if ((st == KN_RECV_OK || st == KN_RECV_BAD_JSON) &&
        (!m || !m->msg_type || !m->msg_id || !cJSON_IsObject(m->content)))
        abort();  /* a decoded message always has these */
    kn_msg_free(m);
    kn_signer_clear(&s);
    free(frames);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode(data, size, "");       /* no signing: everything reaches the JSON parsers */
    decode(data, size, "secret");
    char *text = cb_strndup((const char *)data, size);
    kn_conn c;
    char *err = NULL;
    if (kn_conn_parse(&c, text, &err) == 0) {
        char *ep = kn_conn_endpoint(&c, c.shell_port);
        free(ep);
        kn_conn_clear(&c);
    } else if (!err) {
        abort();  /* a refusal always says why */
    }
    free(err);
    (void)cb_iso_date_parse(text);
    free(text);
    return 0;
}
