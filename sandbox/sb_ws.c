/* sandbox/sb_ws.c: the WebSocket frame codec; see sb_ws.h. Everything here
 * is a pure function of its inputs (SHA-1 included: the handshake needs it
 * and none of our libraries offers it), so tests/t_sb_ws.c drives it with
 * byte strings.
 */
#include "config.h"
#include "sandbox/sb_ws.h"

#include <string.h>

#include <sodium.h>

/* ---- handshake --------------------------------------------------------------- */

typedef struct sha1_ctx {
    uint32_t h[5];
    uint64_t len;
    uint8_t block[64];
    size_t used;
} sha1_ctx;

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(sha1_ctx *c, const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20)
            f = (b & cc) | (~b & d), k = 0x5A827999;
        else if (i < 40)
            f = b ^ cc ^ d, k = 0x6ED9EBA1;
        else if (i < 60)
            f = (b & cc) | (b & d) | (cc & d), k = 0x8F1BBCDC;
        else
            f = b ^ cc ^ d, k = 0xCA62C1D6;
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d, d = cc, cc = rol(b, 30), b = a, a = t;
    }
    c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d, c->h[4] += e;
}

static void sha1_update(sha1_ctx *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    c->len += len;
    while (len > 0) {
        size_t n = 64 - c->used < len ? 64 - c->used : len;
        memcpy(c->block + c->used, p, n);
        c->used += n, p += n, len -= n;
        if (c->used == 64) {
            sha1_block(c, c->block);
            c->used = 0;
        }
    }
}

static void sha1(const void *data, size_t len, uint8_t out[20])
{
    sha1_ctx c = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, 0, {0}, 0};
    sha1_update(&c, data, len);
    uint64_t bits = c.len * 8;
    uint8_t pad = 0x80, zero = 0, lenb[8];
    sha1_update(&c, &pad, 1);
    while (c.used != 56)
        sha1_update(&c, &zero, 1);
    for (int i = 0; i < 8; i++)
        lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_update(&c, lenb, 8);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(c.h[i] >> (24 - 8 * j));
}

void sb_ws_accept_key(const char *client_key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    cb_buf b = CB_BUF_INIT;
    cb_buf_puts(&b, client_key);
    cb_buf_puts(&b, guid);
    uint8_t digest[20];
    sha1(b.data, b.len, digest);
    cb_buf_clear(&b);
    sodium_bin2base64(out, 29, digest, sizeof digest, sodium_base64_VARIANT_ORIGINAL);
}

bool sb_ws_key_valid(const char *key)
{
    uint8_t raw[32];
    size_t n = 0;
    if (!key || strlen(key) != 24)
        return false;
    return sodium_base642bin(raw, sizeof raw, key, 24, NULL, &n, NULL,
                             sodium_base64_VARIANT_ORIGINAL) == 0 && n == 16;
}

/* ---- frames ------------------------------------------------------------------ */

void sb_ws_encode(cb_buf *out, int opcode, bool fin, const void *data, size_t len,
                  const uint8_t *mask)
{
    uint8_t h[14];
    size_t n = 0;
    h[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        h[n++] = (uint8_t)(m | len);
    } else if (len <= 0xffff) {
        h[n++] = m | 126;
        h[n++] = (uint8_t)(len >> 8), h[n++] = (uint8_t)len;
    } else {
        h[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (mask)
        for (int i = 0; i < 4; i++)
            h[n++] = mask[i];
    cb_buf_append(out, h, n);
    if (!len)
        return;
    size_t at = out->len;
    cb_buf_append(out, data, len);
    if (mask)
        for (size_t i = 0; i < len; i++)
            out->data[at + i] ^= (char)mask[i & 3];
}

void sb_ws_encode_close(cb_buf *out, int code, const char *reason)
{
    char p[125];
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > sizeof p - 2)
        rl = sizeof p - 2;
    p[0] = (char)(code >> 8), p[1] = (char)code;
    if (rl)
        memcpy(p + 2, reason, rl);
    sb_ws_encode(out, SB_WS_CLOSE, true, p, 2 + rl, NULL);
}

bool sb_ws_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p++;
        int more;
        unsigned min, cp;
        if (c < 0x80)
            continue;
        else if ((c & 0xe0) == 0xc0)
            more = 1, min = 0x80, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
            more = 2, min = 0x800, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
            more = 3, min = 0x10000, cp = c & 0x07;
        else
            return false;
        if (end - p < more)
            return false;
        for (int i = 0; i < more; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        p += more;
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
    }
    return true;
}

void sb_ws_reader_init(sb_ws_reader *r, bool need_mask, size_t max_message)
{
    memset(r, 0, sizeof *r);
    r->need_mask = need_mask;
    r->max_message = max_message;
    cb_buf_init(&r->msg);
    cb_buf_init(&r->ctl);
}

void sb_ws_reader_clear(sb_ws_reader *r)
{
    cb_buf_clear(&r->msg);
    cb_buf_clear(&r->ctl);
}

static int fail(int *close_code, int code)
{
    *close_code = code;
    return -1;
}

/* Valid close codes a peer may send (section 7.4). */
static bool close_code_ok(int c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

/* The reader's position in the caller's input: frames are taken by moving
 * in_pos, and the bytes taken are removed from the front of the buffer once
 * (when more bytes are needed), not after every frame: a buffer of many
 * small frames would otherwise be moved once per frame. */
static void taken(sb_ws_reader *r, cb_buf *in, size_t n)
{
    r->in_pos += n;
    if (r->in_pos == in->len) {   /* all of it: nothing to move */
        cb_buf_reset(in);
        r->in_pos = 0;
    }
}

static int need_more(sb_ws_reader *r, cb_buf *in)
{
    if (r->in_pos) {
        cb_buf_consume(in, r->in_pos);
        r->in_pos = 0;
    }
    return 0;
}

int sb_ws_read(sb_ws_reader *r, cb_buf *in, sb_ws_msg *m, int *close_code)
{
    if (r->msg_done) {
        cb_buf_reset(&r->msg);
        r->msg_done = false;
        r->msg_opcode = 0;
    }
    if (r->in_pos > in->len)   /* the caller emptied its buffer */
        r->in_pos = 0;
    for (;;) {
        const uint8_t *p = (const uint8_t *)in->data + r->in_pos;
        size_t have = in->len - r->in_pos;
        if (have < 2)
            return need_more(r, in);
        bool fin = p[0] & 0x80;
        int op = p[0] & 0x0f;
        bool masked = p[1] & 0x80;
        uint64_t len = p[1] & 0x7f;
        size_t hl = 2;
        if (p[0] & 0x70)
            return fail(close_code, SB_WS_CLOSE_PROTOCOL);  /* no extension was negotiated */
        bool control = op & 0x8;
        if (op != SB_WS_CONT && op != SB_WS_TEXT && op != SB_WS_BINARY && op != SB_WS_CLOSE &&
            op != SB_WS_PING && op != SB_WS_PONG)
            return fail(close_code, SB_WS_CLOSE_PROTOCOL);
        if (r->need_mask && !masked)
            return fail(close_code, SB_WS_CLOSE_PROTOCOL);
        if (control && (!fin || len > 125))
            return fail(close_code, SB_WS_CLOSE_PROTOCOL);
        if (op == SB_WS_CONT && !r->msg_opcode)
            return fail(close_code, SB_WS_CLOSE_PROTOCOL);
        if ((op == SB_WS_TEXT || op == SB_WS_BINARY) && r->msg_opcode)
            return fail(close_code, SB_WS_CLOSE_PROTOCOL);
        if (len == 126) {
            if (have < 4)
                return need_more(r, in);
            len = (uint64_t)p[2] << 8 | p[3];
            hl = 4;
        } else if (len == 127) {
            if (have < 10)
                return need_more(r, in);
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | p[2 + i];
            if (len >> 63)
                return fail(close_code, SB_WS_CLOSE_PROTOCOL);
            hl = 10;
        }
        /* too big is known from the header: no need to wait for the bytes */
        if (!control && len > r->max_message - (r->msg_opcode ? r->msg.len : 0))
            return fail(close_code, SB_WS_CLOSE_TOO_BIG);
        const uint8_t *mask = masked ? p + hl : NULL;
        if (masked)
            hl += 4;
        if (have < hl || have - hl < len)
            return need_more(r, in);
        cb_buf *dst = control ? &r->ctl : &r->msg;
        if (control)
            cb_buf_reset(&r->ctl);
        size_t at = dst->len;
        cb_buf_append(dst, p + hl, (size_t)len);
        cb_buf_putc(dst, '\0');  /* text stays a C string; not counted */
        dst->len--;
        if (mask)
            for (size_t i = 0; i < len; i++)
                dst->data[at + i] ^= (char)mask[i & 3];
        taken(r, in, hl + (size_t)len);
        if (control) {
            *m = (sb_ws_msg){op, r->ctl.data ? r->ctl.data : "", r->ctl.len, 0};
            if (op == SB_WS_CLOSE) {
                if (r->ctl.len == 1)
                    return fail(close_code, SB_WS_CLOSE_PROTOCOL);
                m->close_code = SB_WS_CLOSE_NO_STATUS;
                if (r->ctl.len >= 2) {
                    m->close_code = (uint8_t)r->ctl.data[0] << 8 | (uint8_t)r->ctl.data[1];
                    if (!close_code_ok(m->close_code))
                        return fail(close_code, SB_WS_CLOSE_PROTOCOL);
                    if (!sb_ws_utf8_valid(r->ctl.data + 2, r->ctl.len - 2))
                        return fail(close_code, SB_WS_CLOSE_BAD_DATA);
                }
            }
            return 1;
        }
        if (op != SB_WS_CONT)
            r->msg_opcode = op;
        if (!fin)
            continue;
        if (r->msg_opcode == SB_WS_TEXT && !sb_ws_utf8_valid(r->msg.data, r->msg.len))
            return fail(close_code, SB_WS_CLOSE_BAD_DATA);
        *m = (sb_ws_msg){r->msg_opcode, r->msg.data ? r->msg.data : "", r->msg.len, 0};
        r->msg_done = true;
        return 1;
    }
}
