/* base/buf.c: see buf.h. */
#include "config.h"
#include "base/buf.h"

#include <stdio.h>
#include <string.h>

void cb_buf_init(cb_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void cb_buf_clear(cb_buf *b)
{
    free(b->data);
    cb_buf_init(b);
}

void cb_buf_reset(cb_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void cb_buf_reserve(cb_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = cb_realloc(b->data, cap);
    b->cap = cap;
}

void cb_buf_append(cb_buf *b, const void *data, size_t len)
{
    cb_buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void cb_buf_puts(cb_buf *b, const char *s)
{
    cb_buf_append(b, s, strlen(s));
}

void cb_buf_putc(cb_buf *b, char c)
{
    cb_buf_append(b, &c, 1);
}

void cb_buf_printf(cb_buf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        cb_buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void cb_buf_consume(cb_buf *b, size_t n)
{
    if (n >= b->len) {
        cb_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *cb_buf_steal(cb_buf *b)
{
    if (!b->data)
        cb_buf_reserve(b, 0), b->data[0] = '\0';
    char *d = b->data;
    cb_buf_init(b);
    return d;
}
