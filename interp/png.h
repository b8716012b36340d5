/* interp/png.h: a fast PNG encoder for 8-bit RGBA buffers (libpng).
 *
 * Made for matplotlib's Agg canvas: its buffer_rgba() is encoded as is,
 * without Pillow and without a copy. The settings trade a little size for a
 * lot of speed (see ip_png_defaults()); the pixels are exactly the input's.
 *
 * Ownership: the input buffer is borrowed; ip_png_encode() appends the file
 * to a caller-owned cb_buf. Nothing here touches Python: the _cellbox_c
 * wrapper in interp/python.c releases the GIL around the call.
 */
#ifndef IP_PNG_H
#define IP_PNG_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* Colour handling. */
typedef enum ip_png_alpha {
    IP_PNG_ALPHA_AUTO = 0,  /* RGB when every pixel is opaque, else RGBA */
    IP_PNG_ALPHA_KEEP,      /* always RGBA (colour type 6), like matplotlib */
    IP_PNG_ALPHA_DROP,      /* always RGB: the alpha byte is ignored */
} ip_png_alpha;

typedef struct ip_png_opts {
    int level;             /* zlib level 0..9 */
    int strategy;          /* zlib strategy (Z_DEFAULT_STRATEGY, Z_RLE, ...) */
    int filters;           /* libpng PNG_FILTER_* mask (one filter = no per-row search) */
    ip_png_alpha alpha;
    double dpi;            /* > 0: a pHYs chunk, as Pillow writes for matplotlib */
    /* tEXt chunks: text[0] key, text[1] value, ..., ended by NULL (borrowed) */
    const char *const *text;
} ip_png_opts;

/* The speed-oriented defaults: zlib level 3, the Up filter only, alpha
 * auto (opaque images are written as RGB). */
ip_png_opts ip_png_defaults(void);

/* Encodes w x h pixels of 4 bytes (R,G,B,A), rows `stride` bytes apart,
 * and appends the PNG file to out. Returns 0, or -1 with *err set to a
 * static message (out then holds an unspecified prefix). */
int ip_png_encode(const uint8_t *rgba, uint32_t w, uint32_t h, size_t stride, const ip_png_opts *opts,
                  cb_buf *out, const char **err);

/* True when every alpha byte is 255. */
int ip_png_is_opaque(const uint8_t *rgba, uint32_t w, uint32_t h, size_t stride);

#endif
