/* Unit tests of interp/png.c: encode RGBA buffers, decode them back with
 * libpng's own reader, compare every pixel. Opaque and translucent images,
 * odd sizes, padded rows (stride), every filter/strategy combination the
 * options allow, the pHYs and tEXt chunks, bad sizes. */
#include "config.h"

#include <png.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "base/buf.h"
#include "interp/png.h"
#include "tests/tap.h"

/* A test pattern: gradients, a flat area, thin lines, alpha as asked. */
static uint8_t *pattern(uint32_t w, uint32_t h, size_t stride, int alpha_kind)
{
    uint8_t *p = calloc(1, stride * h + 1);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            uint8_t *px = p + y * stride + x * 4;
            int flat = x < w / 3;
            px[0] = flat ? 255 : (uint8_t)(x * 7 + y);
            px[1] = flat ? 255 : (uint8_t)(y * 3);
            px[2] = (x % 17 == 0 || y % 13 == 0) ? 0 : (uint8_t)(x ^ y);
            px[3] = alpha_kind == 0 ? 255 : alpha_kind == 1 ? (uint8_t)((x + y) & 0xff) : (x == w - 1 ? 254 : 255);
        }
    /* the padding of each row must be ignored: fill it with junk */
    for (uint32_t y = 0; y < h; y++)
        memset(p + y * stride + (size_t)w * 4, 0xa5, stride - (size_t)w * 4);
    return p;
}

typedef struct decoded {
    uint32_t w, h;
    int color_type;
    uint8_t *rgba;  /* w*h*4 */
} decoded;

static int decode(const cb_buf *png, decoded *d)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, png->data, png->len))
        return -1;
    d->w = img.width;
    d->h = img.height;
    d->color_type = (img.format & PNG_FORMAT_FLAG_ALPHA) ? PNG_COLOR_TYPE_RGBA : PNG_COLOR_TYPE_RGB;
    img.format = PNG_FORMAT_RGBA;
    d->rgba = malloc(PNG_IMAGE_SIZE(img));
    if (!png_image_finish_read(&img, NULL, d->rgba, 0, NULL)) {
        free(d->rgba);
        return -1;
    }
    return 0;
}

static int same_pixels(const uint8_t *src, uint32_t w, uint32_t h, size_t stride, const decoded *d)
{
    if (d->w != w || d->h != h)
        return 0;
    for (uint32_t y = 0; y < h; y++)
        if (memcmp(src + y * stride, d->rgba + (size_t)y * w * 4, (size_t)w * 4) != 0)
            return 0;
    return 1;
}

/* Finds a chunk by type; returns its data offset or -1. */
static long find_chunk(const cb_buf *png, const char *type, uint32_t *len)
{
    size_t pos = 8;
    while (pos + 12 <= png->len) {
        const uint8_t *c = (const uint8_t *)png->data + pos;
        uint32_t n = (uint32_t)c[0] << 24 | (uint32_t)c[1] << 16 | (uint32_t)c[2] << 8 | c[3];
        if (memcmp(c + 4, type, 4) == 0) {
            *len = n;
            return (long)pos + 8;
        }
        pos += 12 + (size_t)n;
    }
    return -1;
}

static void roundtrip(uint32_t w, uint32_t h, size_t pad, int alpha_kind, ip_png_opts o, const char *what)
{
    size_t stride = (size_t)w * 4 + pad;
    uint8_t *src = pattern(w, h, stride, alpha_kind);
    cb_buf out = CB_BUF_INIT;
    const char *err = NULL;
    int rc = ip_png_encode(src, w, h, stride, &o, &out, &err);
    decoded d = {0};
    int okd = rc == 0 && decode(&out, &d) == 0;
    ok(okd && same_pixels(src, w, h, stride, &d), "%s: %ux%u stride %zu decodes to the same pixels", what, w, h,
       stride);
    int want_rgb = o.alpha == IP_PNG_ALPHA_DROP || (o.alpha == IP_PNG_ALPHA_AUTO && alpha_kind == 0);
    if (okd && o.alpha != IP_PNG_ALPHA_DROP)
        is_int(d.color_type, want_rgb ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA, "%s: colour type", what);
    free(d.rgba);
    free(src);
    cb_buf_clear(&out);
}

int main(void)
{
    ip_png_opts o = ip_png_defaults();
    roundtrip(640, 480, 0, 0, o, "opaque (written as RGB)");
    roundtrip(640, 480, 0, 1, o, "translucent (RGBA)");
    roundtrip(640, 480, 0, 2, o, "one pixel not opaque (RGBA)");
    roundtrip(1, 1, 0, 0, o, "1x1");
    roundtrip(3, 7, 12, 1, o, "odd size, padded rows");
    roundtrip(1921, 33, 4, 0, o, "wide, padded");
    static const struct { int filters; const char *name; } filters[] = {
        {PNG_FILTER_NONE, "none"}, {PNG_FILTER_SUB, "sub"}, {PNG_FILTER_UP, "up"},
        {PNG_FILTER_AVG, "avg"}, {PNG_FILTER_PAETH, "paeth"}, {PNG_ALL_FILTERS, "all"},
    };
    static const int strategies[] = {Z_DEFAULT_STRATEGY, Z_FILTERED, Z_RLE, Z_HUFFMAN_ONLY};
    for (size_t f = 0; f < sizeof filters / sizeof filters[0]; f++)
        for (size_t s = 0; s < sizeof strategies / sizeof strategies[0]; s++)
            for (int level = 0; level <= 9; level += 3) {
                ip_png_opts v = ip_png_defaults();
                v.filters = filters[f].filters;
                v.strategy = strategies[s];
                v.level = level;
                char what[64];
                snprintf(what, sizeof what, "filter %s strategy %d level %d", filters[f].name, strategies[s], level);
                roundtrip(97, 31, 0, (int)((f + s) % 2), v, what);
            }
    ip_png_opts drop = ip_png_defaults();
    drop.alpha = IP_PNG_ALPHA_DROP;
    {
        /* alpha dropped: the decoded image is opaque with the same colours */
        uint32_t w = 20, h = 10;
        uint8_t *src = pattern(w, h, w * 4, 1);
        cb_buf out = CB_BUF_INIT;
        const char *err;
        ok(ip_png_encode(src, w, h, w * 4, &drop, &out, &err) == 0, "alpha dropped: encodes");
        decoded d = {0};
        int same = decode(&out, &d) == 0;
        for (uint32_t i = 0; same && i < w * h; i++)
            same = memcmp(src + i * 4, d.rgba + i * 4, 3) == 0 && d.rgba[i * 4 + 3] == 255;
        ok(same, "alpha dropped: same colours, opaque");
        free(d.rgba);
        free(src);
        cb_buf_clear(&out);
    }
    ip_png_opts keep = ip_png_defaults();
    keep.alpha = IP_PNG_ALPHA_KEEP;
    roundtrip(64, 48, 0, 0, keep, "alpha kept on an opaque image");

    {
        /* pHYs for the dpi (as Pillow writes it for matplotlib) and tEXt */
        uint32_t w = 8, h = 8;
        uint8_t *src = pattern(w, h, w * 4, 0);
        const char *text[] = {"Software", "Matplotlib version3.6.3, https://matplotlib.org/", "Title", "t", NULL};
        ip_png_opts m = ip_png_defaults();
        m.dpi = 100;
        m.text = text;
        cb_buf out = CB_BUF_INIT;
        const char *err;
        ok(ip_png_encode(src, w, h, w * 4, &m, &out, &err) == 0, "with metadata: encodes");
        uint32_t len = 0;
        long at = find_chunk(&out, "pHYs", &len);
        const uint8_t *p = (const uint8_t *)out.data + (at < 0 ? 0 : at);
        ok(at > 0 && len == 9 && (((uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]) == 3937) && p[8] == 1,
           "pHYs: 3937 pixels per metre for 100 dpi");
        at = find_chunk(&out, "tEXt", &len);
        ok(at > 0 && len == strlen(text[0]) + 1 + strlen(text[1]) &&
               memcmp(out.data + at, "Software\0Matplotlib version", 27) == 0,
           "tEXt: the Software key and value");
        ok(find_chunk(&out, "IDAT", &len) > find_chunk(&out, "tEXt", &len), "tEXt before the image data");
        free(src);
        cb_buf_clear(&out);
    }
    {
        /* bad input is refused, not encoded */
        uint8_t px[16] = {0};
        cb_buf out = CB_BUF_INIT;
        const char *err = NULL;
        ok(ip_png_encode(px, 0, 1, 4, NULL, &out, &err) < 0 && err, "zero width refused");
        ok(ip_png_encode(px, 2, 2, 4, NULL, &out, &err) < 0 && err, "stride smaller than a row refused");
        ok(ip_png_encode(px, 2, 2, 8, NULL, &out, &err) == 0, "NULL options mean the defaults");
        cb_buf_clear(&out);
    }
    {
        uint8_t a[8] = {1, 2, 3, 255, 4, 5, 6, 255};
        ok(ip_png_is_opaque(a, 2, 1, 8), "is_opaque: all 255");
        a[7] = 0;
        ok(!ip_png_is_opaque(a, 2, 1, 8), "is_opaque: one transparent pixel");
    }
    return tap_done();
}
