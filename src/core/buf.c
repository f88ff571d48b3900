#include "pdstrace/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "pdstrace/err.h"

void buf_init(struct buf *b, size_t max)
{
    b->priv_mem = NULL;
    b->priv_len = 0;
    b->priv_cap = 0;
    b->priv_max = max;
}

void buf_free(struct buf *b)
{
    free(b->priv_mem);
    b->priv_mem = NULL;
    b->priv_len = 0;
    b->priv_cap = 0;
}

void buf_reset(struct buf *b)
{
    b->priv_len = 0;
    if (b->priv_mem != NULL)
        b->priv_mem[0] = '\0';
}

void buf_truncate(struct buf *b, size_t len)
{
    if (len >= b->priv_len)
        return;
    b->priv_len = len;
    b->priv_mem[len] = '\0';
}

void buf_wipe(struct buf *b)
{
    if (b->priv_mem != NULL)
        OPENSSL_cleanse(b->priv_mem, b->priv_cap);
    buf_free(b);
}

size_t buf_len(const struct buf *b)
{
    return b->priv_len;
}

size_t buf_room(const struct buf *b)
{
    return b->priv_max - b->priv_len;
}

/* Makes room for len + extra bytes plus the terminating NUL. */
static int reserve(struct buf *b, size_t extra)
{
    if (extra > b->priv_max - b->priv_len)
        return ERR_TOO_LARGE;
    size_t need = b->priv_len + extra + 1;
    if (need <= b->priv_cap)
        return 0;
    size_t cap = b->priv_cap ? b->priv_cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > b->priv_max + 1)
        cap = b->priv_max + 1;
    char *p = realloc(b->priv_mem, cap);
    if (p == NULL)
        return UV_ENOMEM;
    b->priv_mem = p;
    b->priv_cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    int err = reserve(b, n);
    if (err)
        return err;
    if (n > 0)
        memcpy(b->priv_mem + b->priv_len, p, n);
    b->priv_len += n;
    b->priv_mem[b->priv_len] = '\0';
    return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_vappendf(struct buf *b, const char *fmt, va_list ap)
{
    /* Format straight into the spare room first: most appends fit, and the second pass
     * (size, grow, format again) is then never paid. */
    va_list copy;
    va_copy(copy, ap);
    size_t room = b->priv_cap > b->priv_len ? b->priv_cap - b->priv_len : 0;
    int n = vsnprintf(room ? b->priv_mem + b->priv_len : NULL, room, fmt, copy);
    va_end(copy);
    if (n < 0)
        return ERR_INTERNAL;
    if ((size_t)n < room && (size_t)n <= b->priv_max - b->priv_len) {
        b->priv_len += (size_t)n;
        return 0;
    }
    if (b->priv_mem != NULL)
        b->priv_mem[b->priv_len] = '\0';
    int err = reserve(b, (size_t)n);
    if (err)
        return err;
    vsnprintf(b->priv_mem + b->priv_len, (size_t)n + 1, fmt, ap);
    b->priv_len += (size_t)n;
    return 0;
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int err = buf_vappendf(b, fmt, ap);
    va_end(ap);
    return err;
}

const char *buf_cstr(const struct buf *b)
{
    return b->priv_mem != NULL ? b->priv_mem : "";
}

char *buf_steal(struct buf *b)
{
    char *p = b->priv_mem;
    b->priv_mem = NULL;
    b->priv_len = 0;
    b->priv_cap = 0;
    return p;
}
