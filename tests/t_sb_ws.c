/* tests/t_sb_ws.c: the WebSocket frame codec (sandbox/sb_ws.c) on byte
 * strings: the handshake key, frame lengths at every boundary (125, 126,
 * 65535, 65536), masking, fragments with control frames in between, byte
 * by byte feeding, and the bad frames that must close the connection (with
 * 1002, 1007 or 1009). */
#include "config.h"

#include <string.h>

#include "base/buf.h"
#include "sandbox/sb_ws.h"
#include "tests/tap.h"

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Read one message from a buffer holding exactly `in`. */
static int read1(sb_ws_reader *r, cb_buf *in, sb_ws_msg *m, int *code)
{
    *code = 0;
    return sb_ws_read(r, in, m, code);
}

static void test_accept_key(void)
{
    char out[29];
    /* RFC 6455 section 1.3's example */
    sb_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out);
    is_str(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "Sec-WebSocket-Accept of the RFC's example");
    ok(sb_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=="), "a 16-byte key is valid");
    ok(!sb_ws_key_valid(NULL) && !sb_ws_key_valid("") && !sb_ws_key_valid("abc") &&
       !sb_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=!") && !sb_ws_key_valid("dGhlIHNhbXBsZSBub25jZSE="),
       "bad keys are refused (missing, short, not base64, 17 bytes)");
}

static void test_rfc_examples(void)
{
    /* section 5.7: unmasked and masked "Hello" */
    cb_buf b = CB_BUF_INIT;
    sb_ws_encode(&b, SB_WS_TEXT, true, "Hello", 5, NULL);
    ok(b.len == 7 && memcmp(b.data, "\x81\x05\x48\x65\x6c\x6c\x6f", 7) == 0, "unmasked Hello as in the RFC");
    cb_buf_reset(&b);
    sb_ws_encode(&b, SB_WS_TEXT, true, "Hello", 5, MASK);
    ok(b.len == 11 && memcmp(b.data, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11) == 0,
       "masked Hello as in the RFC");
    sb_ws_reader r;
    sb_ws_reader_init(&r, true, 1 << 20);
    sb_ws_msg m;
    int code;
    ok(read1(&r, &b, &m, &code) == 1 && m.opcode == SB_WS_TEXT && m.len == 5 &&
       memcmp(m.data, "Hello", 5) == 0 && b.len == 0, "the masked frame reads back, unmasked");
    /* fragmented: "Hel" + "lo" */
    cb_buf_append(&b, "\x01\x03\x48\x65\x6c\x80\x02\x6c\x6f", 9);
    sb_ws_reader nm;
    sb_ws_reader_init(&nm, false, 1 << 20);
    ok(read1(&nm, &b, &m, &code) == 1 && m.opcode == SB_WS_TEXT && m.len == 5 &&
       memcmp(m.data, "Hello", 5) == 0, "the RFC's fragmented Hello is one message");
    sb_ws_reader_clear(&nm);
    sb_ws_reader_clear(&r);
    cb_buf_clear(&b);
}

static void test_lengths(void)
{
    size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 200000};
    size_t hdr[] = {2, 2, 2, 4, 4, 4, 10, 10};
    static char data[200000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 7 + 3);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        cb_buf b = CB_BUF_INIT;
        sb_ws_encode(&b, SB_WS_BINARY, true, data, lens[i], NULL);
        ok(b.len == hdr[i] + lens[i], "server frame of %zu bytes has a %zu-byte header", lens[i], hdr[i]);
        cb_buf_reset(&b);
        sb_ws_encode(&b, SB_WS_BINARY, true, data, lens[i], MASK);
        ok(b.len == hdr[i] + 4 + lens[i], "masked frame of %zu bytes: header + mask + payload", lens[i]);
        sb_ws_reader r;
        sb_ws_reader_init(&r, true, 1 << 20);
        sb_ws_msg m;
        int code;
        /* all but the last byte: incomplete, nothing consumed */
        size_t total = b.len;
        b.len = total - 1;
        int rc = read1(&r, &b, &m, &code);
        b.len = total;
        ok(rc == 0 && b.len == total, "%zu bytes: incomplete frame waits", lens[i]);
        rc = read1(&r, &b, &m, &code);
        ok(rc == 1 && m.opcode == SB_WS_BINARY && m.len == lens[i] &&
           (lens[i] == 0 || memcmp(m.data, data, lens[i]) == 0) && b.len == 0,
           "%zu bytes round trip (masked)", lens[i]);
        sb_ws_reader_clear(&r);
        cb_buf_clear(&b);
    }
    /* the 16-bit and 64-bit length fields, big endian */
    cb_buf b = CB_BUF_INIT;
    sb_ws_encode(&b, SB_WS_BINARY, true, data, 65535, NULL);
    ok((uint8_t)b.data[1] == 126 && (uint8_t)b.data[2] == 0xff && (uint8_t)b.data[3] == 0xff,
       "65535: 126 then 0xffff");
    cb_buf_reset(&b);
    sb_ws_encode(&b, SB_WS_BINARY, true, data, 65536, NULL);
    ok((uint8_t)b.data[1] == 127 && memcmp(b.data + 2, "\0\0\0\0\0\x01\0\0", 8) == 0,
       "65536: 127 then 64-bit 0x10000");
    cb_buf_clear(&b);
}

static void test_byte_by_byte(void)
{
    cb_buf all = CB_BUF_INIT, in = CB_BUF_INIT;
    sb_ws_encode(&all, SB_WS_BINARY, false, "abc", 3, MASK);
    sb_ws_encode(&all, SB_WS_PING, true, "p", 1, MASK);
    sb_ws_encode(&all, SB_WS_CONT, true, "def", 3, MASK);
    sb_ws_reader r;
    sb_ws_reader_init(&r, true, 1 << 20);
    sb_ws_msg m;
    int code, got = 0;
    bool order_ok = true;
    for (size_t i = 0; i < all.len; i++) {
        cb_buf_append(&in, all.data + i, 1);
        int rc;
        while ((rc = read1(&r, &in, &m, &code)) == 1) {
            got++;
            if (got == 1)
                order_ok &= m.opcode == SB_WS_PING && m.len == 1 && m.data[0] == 'p';
            else
                order_ok &= m.opcode == SB_WS_BINARY && m.len == 6 && memcmp(m.data, "abcdef", 6) == 0;
        }
        order_ok &= rc == 0;
    }
    ok(got == 2 && order_ok && in.len == 0,
       "fed byte by byte: the ping between two fragments comes first, then the whole message");
    sb_ws_reader_clear(&r);
    cb_buf_clear(&all);
    cb_buf_clear(&in);
}

static void test_fragments(void)
{
    cb_buf b = CB_BUF_INIT;
    sb_ws_encode(&b, SB_WS_TEXT, false, "Hel", 3, MASK);
    sb_ws_encode(&b, SB_WS_PONG, true, NULL, 0, MASK);
    sb_ws_encode(&b, SB_WS_CONT, false, "", 0, MASK);
    sb_ws_encode(&b, SB_WS_PING, true, "x", 1, MASK);
    sb_ws_encode(&b, SB_WS_CONT, true, "lo", 2, MASK);
    sb_ws_encode(&b, SB_WS_BINARY, true, "\x00\x01", 2, MASK);
    sb_ws_reader r;
    sb_ws_reader_init(&r, true, 1 << 20);
    sb_ws_msg m;
    int code;
    ok(read1(&r, &b, &m, &code) == 1 && m.opcode == SB_WS_PONG && m.len == 0, "pong inside a message");
    ok(read1(&r, &b, &m, &code) == 1 && m.opcode == SB_WS_PING && m.len == 1, "ping inside a message");
    ok(read1(&r, &b, &m, &code) == 1 && m.opcode == SB_WS_TEXT && m.len == 5 &&
       strcmp(m.data, "Hello") == 0, "three fragments (one empty) make Hello");
    ok(read1(&r, &b, &m, &code) == 1 && m.opcode == SB_WS_BINARY && m.len == 2 &&
       m.data[0] == 0 && m.data[1] == 1, "the next message starts fresh");
    ok(read1(&r, &b, &m, &code) == 0, "then nothing");
    sb_ws_reader_clear(&r);
    cb_buf_clear(&b);
}

/* One bad input: expect -1 and this close code. */
static void expect_fail(const char *bytes, size_t len, bool need_mask, size_t max, int want, const char *what)
{
    cb_buf b = CB_BUF_INIT;
    cb_buf_append(&b, bytes, len);
    sb_ws_reader r;
    sb_ws_reader_init(&r, need_mask, max);
    sb_ws_msg m;
    int code = 0, rc;
    while ((rc = sb_ws_read(&r, &b, &m, &code)) == 1)
        ;
    ok(rc == -1 && code == want, "%s: close %d", what, want);
    if (rc != -1 || code != want)
        printf("#   rc %d code %d\n", rc, code);
    sb_ws_reader_clear(&r);
    cb_buf_clear(&b);
}

static void test_bad_frames(void)
{
    cb_buf b = CB_BUF_INIT;
    sb_ws_encode(&b, SB_WS_BINARY, true, "abc", 3, NULL);
    expect_fail(b.data, b.len, true, 1 << 20, 1002, "unmasked client frame");
    cb_buf_clear(&b);
    expect_fail("\xc2\x80\0\0\0\0", 6, true, 1 << 20, 1002, "reserved bit RSV1");
    expect_fail("\x83\x80\0\0\0\0", 6, true, 1 << 20, 1002, "reserved opcode 3");
    expect_fail("\x8b\x80\0\0\0\0", 6, true, 1 << 20, 1002, "reserved control opcode 0xB");
    expect_fail("\x80\x80\0\0\0\0", 6, true, 1 << 20, 1002, "continuation without a message");
    expect_fail("\x01\x80\0\0\0\0\x02\x80\0\0\0\0", 12, true, 1 << 20, 1002,
                "a new message inside a fragmented one");
    expect_fail("\x09\x80\0\0\0\0", 6, true, 1 << 20, 1002, "fragmented ping");
    expect_fail("\x89\xfe\x00\x7e\0\0\0\0", 8, true, 1 << 20, 1002, "ping longer than 125 bytes");
    expect_fail("\x88\x81\0\0\0\0\x03", 7, true, 1 << 20, 1002, "close with a 1-byte payload");
    expect_fail("\x88\x82\0\0\0\0\x03\xed", 8, true, 1 << 20, 1002, "close code 1005 may not be sent");
    expect_fail("\x88\x84\0\0\0\0\x03\xe8\xc3\x28", 10, true, 1 << 20, 1007, "close reason not UTF-8");
    expect_fail("\x82\xff\x80\0\0\0\0\0\0\0\0\0\0\0", 14, true, 1 << 20, 1002, "64-bit length with the top bit");
    /* too big: known from the header, before the payload arrives */
    expect_fail("\x82\xff\0\0\0\0\0\x10\0\x01" "\0\0\0\0", 14, true, 1 << 20, 1009,
                "1 MiB + 1 in one frame (header only)");
    cb_buf big = CB_BUF_INIT;
    static char chunk[600000];
    sb_ws_encode(&big, SB_WS_BINARY, false, chunk, sizeof chunk, MASK);
    sb_ws_encode(&big, SB_WS_CONT, true, chunk, sizeof chunk, MASK);
    expect_fail(big.data, big.len, true, 1 << 20, 1009, "two fragments over 1 MiB together");
    cb_buf_clear(&big);
    cb_buf t = CB_BUF_INIT;
    sb_ws_encode(&t, SB_WS_TEXT, true, "\xff\xfe", 2, MASK);
    expect_fail(t.data, t.len, true, 1 << 20, 1007, "text not UTF-8");
    cb_buf_reset(&t);
    sb_ws_encode(&t, SB_WS_TEXT, true, "\xed\xa0\x80", 3, MASK);
    expect_fail(t.data, t.len, true, 1 << 20, 1007, "text with a UTF-16 surrogate");
    cb_buf_clear(&t);
    /* exactly the limit is fine */
    cb_buf ok_b = CB_BUF_INIT;
    sb_ws_encode(&ok_b, SB_WS_BINARY, true, chunk, 1000, MASK);
    sb_ws_reader r;
    sb_ws_reader_init(&r, true, 1000);
    sb_ws_msg m;
    int code;
    ok(sb_ws_read(&r, &ok_b, &m, &code) == 1 && m.len == 1000, "a message of exactly max_message is read");
    sb_ws_reader_clear(&r);
    cb_buf_clear(&ok_b);
}

static void test_close_and_utf8(void)
{
    cb_buf b = CB_BUF_INIT;
    sb_ws_encode_close(&b, 1000, "bye");
    ok(b.len == 7 && memcmp(b.data, "\x88\x05\x03\xe8" "bye", 7) == 0, "close 1000 'bye' (server)");
    cb_buf_reset(&b);
    cb_buf_append(&b, "\x88\x80\0\0\0\0", 6);
    sb_ws_reader r;
    sb_ws_reader_init(&r, true, 100);
    sb_ws_msg m;
    int code;
    ok(sb_ws_read(&r, &b, &m, &code) == 1 && m.opcode == SB_WS_CLOSE && m.close_code == 1005,
       "an empty close reads as 1005 (no status)");
    uint8_t c[] = {0x03, 0xe9};
    cb_buf_reset(&b);
    sb_ws_encode(&b, SB_WS_CLOSE, true, c, 2, MASK);
    ok(sb_ws_read(&r, &b, &m, &code) == 1 && m.close_code == 1001, "close 1001 from a client");
    sb_ws_reader_clear(&r);
    cb_buf_clear(&b);
    ok(sb_ws_utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15), "valid UTF-8");
    ok(!sb_ws_utf8_valid("\xc0\xaf", 2) && !sb_ws_utf8_valid("\xe2\x82", 2) &&
       !sb_ws_utf8_valid("\xf4\x90\x80\x80", 4), "overlong, truncated, above U+10FFFF");
}

/* Many small frames in one read, the last one cut: each comes out in order,
 * what was taken leaves the buffer by the time more bytes are needed, and
 * the cut frame completes when its bytes are appended. */
static void test_many_small_frames(void)
{
    static const uint8_t mask[4] = {1, 2, 3, 4};
    cb_buf in = CB_BUF_INIT, last = CB_BUF_INIT;
    enum { N = 5000 };
    for (int i = 0; i < N; i++) {
        char c = (char)('a' + i % 26);
        sb_ws_encode(&in, SB_WS_BINARY, true, &c, 1, mask);
    }
    sb_ws_encode(&last, SB_WS_TEXT, true, "tail", 4, mask);
    cb_buf_append(&in, last.data, 5);   /* its first 5 bytes only */
    sb_ws_reader r;
    sb_ws_reader_init(&r, true, 1 << 20);
    sb_ws_msg m;
    int code, got = 0, rc;
    bool order = true;
    while ((rc = read1(&r, &in, &m, &code)) == 1) {
        order &= m.opcode == SB_WS_BINARY && m.len == 1 && m.data[0] == (char)('a' + got % 26);
        got++;
    }
    ok(rc == 0 && got == N && order, "%d one-byte frames from one buffer, in order", N);
    ok(in.len == 5, "when more bytes are needed, only the cut frame's 5 bytes are left in the input");
    cb_buf_append(&in, last.data + 5, last.len - 5);
    ok(read1(&r, &in, &m, &code) == 1 && m.opcode == SB_WS_TEXT && m.len == 4 && memcmp(m.data, "tail", 4) == 0 &&
       in.len == 0, "the cut frame completes once its bytes are appended; the input is then empty");
    sb_ws_reader_clear(&r);
    cb_buf_clear(&in);
    cb_buf_clear(&last);
}

int main(void)
{
    test_accept_key();
    test_rfc_examples();
    test_lengths();
    test_byte_by_byte();
    test_fragments();
    test_bad_frames();
    test_close_and_utf8();
    test_many_small_frames();
    tap_done();
}
