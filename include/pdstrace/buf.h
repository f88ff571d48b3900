#ifndef PDS_CORE_BUF_H
#define PDS_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

/* A growable byte buffer with a ceiling fixed at init (curl's dynbuf): every buffer that
 * holds bytes from the network is one of these. The contents are always NUL-terminated,
 * so text can be read with buf->data directly. A failed append leaves the buffer as it
 * was. Embed it; buf_free releases the memory and leaves an empty buffer behind. */
struct buf {
    char *data; /* NULL until the first append */
    size_t len;
    size_t cap;
    size_t max; /* ceiling on len */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);

/* Forgets the contents but keeps the memory for reuse. */
void buf_reset(struct buf *b);

/* Cuts the contents back to len bytes (no-op when already shorter), keeping the NUL. */
void buf_truncate(struct buf *b, size_t len);

/* Bytes held, without the terminating NUL. */
size_t buf_len(const struct buf *b);

/* Returns 0, ERR_TOO_LARGE when the result would exceed max, or UV_ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vappendf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* The contents as a C string: "" for an empty buffer, never NULL. */
const char *buf_cstr(const struct buf *b);

/* Hands the memory to the caller (free() it) and leaves the buffer empty. Returns NULL for
 * an empty buffer. */
char *buf_steal(struct buf *b);

#endif
