/* base/buf.h: a growable byte buffer / string builder.
 *
 * cb_buf is embedded by value: cb_buf_init() / cb_buf_clear() (clear frees).
 * data is always NUL-terminated after any append, so it can be used as a C
 * string when the content has no NUL bytes. cb_buf_steal() hands out data
 * (owned by the caller) and resets the buffer.
 */
#ifndef CB_BUF_H
#define CB_BUF_H

#include "base/util.h"

typedef struct cb_buf {
    char *data;
    size_t len;
    size_t cap;
} cb_buf;

#define CB_BUF_INIT {NULL, 0, 0}

void cb_buf_init(cb_buf *b);
void cb_buf_clear(cb_buf *b);
void cb_buf_reset(cb_buf *b);                       /* len = 0, keeps memory */
void cb_buf_reserve(cb_buf *b, size_t extra);
void cb_buf_append(cb_buf *b, const void *data, size_t len);
void cb_buf_puts(cb_buf *b, const char *s);
void cb_buf_putc(cb_buf *b, char c);
void cb_buf_printf(cb_buf *b, const char *fmt, ...) CB_PRINTF(2, 3);
void cb_buf_consume(cb_buf *b, size_t n);           /* drop n bytes from the front */
char *cb_buf_steal(cb_buf *b);                      /* returns owned, never NULL */

#endif
