/* interp/png.c: PNG encoding of RGBA buffers with libpng (see png.h).
 *
 * Why these defaults: a matplotlib figure is mostly flat background with
 * thin lines and anti-aliased text. The Up filter (one fixed filter: no
 * per-row search) turns repeated rows into runs of zeros, and zlib's fast
 * deflate (level 3, the last level without lazy matching) finds the runs
 * and the repeated pixels within rows. Measured on figures (line plot,
 * imshow, scatter, histogram, contour: bench/images/README.md), this is
 * several times faster than matplotlib's writer (Pillow: level 6 with
 * adaptive filtering) at sizes from 0.9x to 1.35x of its files; RLE was a
 * little faster on line plots but twice the size on images. Opaque images
 * (the usual white figure) are written as RGB: a quarter less data to
 * filter and compress, the same decoded pixels.
 *
 * libpng reports errors by longjmp: write_guarded() is the only function
 * that sets the jump point; it holds no state of its own, and
 * ip_png_encode() frees everything on both paths.
 */
#include "config.h"
#include "interp/png.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

ip_png_opts ip_png_defaults(void)
{
    return (ip_png_opts){
        .level = 3,
        .strategy = Z_DEFAULT_STRATEGY,
        .filters = PNG_FILTER_UP,
        .alpha = IP_PNG_ALPHA_AUTO,
        .dpi = 0,
        .text = NULL,
    };
}

int ip_png_is_opaque(const uint8_t *rgba, uint32_t w, uint32_t h, size_t stride)
{
    for (uint32_t y = 0; y < h; y++) {
        const uint8_t *row = rgba + (size_t)y * stride;
        /* AND of all alpha bytes, a word at a time where possible */
        uint32_t acc = 0xffffffffu;
        uint32_t x = 0;
        for (; x + 4 <= w; x += 4) {
            uint32_t p[4];
            memcpy(p, row + (size_t)x * 4, sizeof p);
            acc &= p[0] & p[1] & p[2] & p[3];
        }
        for (; x < w; x++) {
            uint32_t p;
            memcpy(&p, row + (size_t)x * 4, sizeof p);
            acc &= p;
        }
        /* the alpha byte is the 4th in memory, the top byte on little endian
         * and the bottom one on big endian: test it through a byte view */
        uint8_t b[4];
        memcpy(b, &acc, sizeof b);
        if (b[3] != 0xff)
            return 0;
    }
    return 1;
}

typedef struct sink {
    cb_buf *out;
    const char *err;
} sink;

static void sink_write(png_structp png, png_bytep data, png_size_t len)
{
    sink *s = png_get_io_ptr(png);
    cb_buf_append(s->out, data, len);
}

static void sink_flush(png_structp png)
{
    (void)png;
}

static void on_error(png_structp png, png_const_charp msg)
{
    sink *s = png_get_error_ptr(png);
    s->err = "libpng failed to encode the image";
    (void)msg;
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* Everything that may longjmp out; ip_png_encode() frees what this
 * allocated (*texts) on both paths. */
static void write_png(png_structp png, png_infop info, const ip_png_opts *o, uint32_t w, uint32_t h, int rgb,
                      png_bytep *rows, png_text **texts)
{
    png_set_compression_level(png, o->level);
    png_set_compression_strategy(png, o->strategy);
    png_set_filter(png, PNG_FILTER_TYPE_BASE, o->filters);
    png_set_IHDR(png, info, w, h, 8, rgb ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_BASE, PNG_FILTER_TYPE_BASE);
    if (o->dpi > 0) {
        png_uint_32 ppm = (png_uint_32)(o->dpi / 0.0254 + 0.5);
        png_set_pHYs(png, info, ppm, ppm, PNG_RESOLUTION_METER);
    }
    size_t nt = 0;
    for (const char *const *t = o->text; t && t[0] && t[1]; t += 2)
        nt++;
    if (nt) {
        *texts = calloc(nt, sizeof **texts);
        if (!*texts)
            png_error(png, "out of memory");
        for (size_t i = 0; i < nt; i++) {
            (*texts)[i].compression = PNG_TEXT_COMPRESSION_NONE;
            (*texts)[i].key = (png_charp)o->text[2 * i];
            (*texts)[i].text = (png_charp)o->text[2 * i + 1];
        }
        png_set_text(png, info, *texts, (int)nt);
    }
    png_write_info(png, info);
    if (rgb)
        png_set_filler(png, 0, PNG_FILLER_AFTER);  /* input has 4 bytes a pixel: drop the 4th */
    png_write_image(png, rows);
    png_write_end(png, NULL);
}

/* The jump point for libpng's errors: 1 when writing failed. Nothing here
 * lives in a register across the jump (only arguments passed through). */
static int write_guarded(png_structp png, png_infop info, const ip_png_opts *o, uint32_t w, uint32_t h, int rgb,
                         png_bytep *rows, png_text **texts)
{
    if (setjmp(png_jmpbuf(png)))
        return 1;
    write_png(png, info, o, w, h, rgb, rows, texts);
    return 0;
}

int ip_png_encode(const uint8_t *rgba, uint32_t w, uint32_t h, size_t stride, const ip_png_opts *opts,
                  cb_buf *out, const char **err)
{
    ip_png_opts o = opts ? *opts : ip_png_defaults();
    if (w == 0 || h == 0 || w > PNG_USER_WIDTH_MAX || h > PNG_USER_HEIGHT_MAX || stride < (size_t)w * 4) {
        *err = "invalid image size";
        return -1;
    }
    int rgb = o.alpha == IP_PNG_ALPHA_DROP || (o.alpha == IP_PNG_ALPHA_AUTO && ip_png_is_opaque(rgba, w, h, stride));

    sink s = {out, NULL};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &s, on_error, on_warning);
    if (!png) {
        *err = "out of memory";
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    png_bytep *rows = malloc(sizeof *rows * h);
    if (!info || !rows) {
        png_destroy_write_struct(&png, info ? &info : NULL);
        free(rows);
        *err = "out of memory";
        return -1;
    }
    for (uint32_t y = 0; y < h; y++)
        rows[y] = (png_bytep)(rgba + (size_t)y * stride);
    png_set_write_fn(png, &s, sink_write, sink_flush);

    png_text *texts = NULL;  /* set by write_png through its address */
    int failed = write_guarded(png, info, &o, w, h, rgb, rows, &texts);
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(texts);
    if (failed) {
        *err = s.err ? s.err : "libpng failed";
        return -1;
    }
    return 0;
}
