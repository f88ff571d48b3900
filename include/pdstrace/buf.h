#ifndef PDS_CORE_BUF_H
#define PDS_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

/* A growable byte buffer with a ceiling fixed at init (curl's dynbuf): every buffer that
 * holds bytes from the network is one of these. The contents are always NUL-terminated
 * (buf_cstr). A failed append leaves the buffer as it was, and its result must be checked.
 * Embed it; buf_free releases the memory and leaves an empty buffer behind.
 *
 * The fields are private to buf.c, as dynbuf's are to dynbuf.c: callers use the functions
 * (scripts/checksrc.sh refuses any other file that names them). */
struct buf {
    char *priv_mem; /* NULL until the first append */
    size_t priv_len;
    size_t priv_cap;
    size_t priv_max; /* ceiling on priv_len */
};

#define BUF_MUST_CHECK __attribute__((warn_unused_result))

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);

/* Forgets the contents but keeps the memory for reuse. */
void buf_reset(struct buf *b);

/* Cuts the contents back to len bytes (no-op when already shorter), keeping the NUL. An
 * append that must be all or nothing across several calls notes buf_len() first and
 * truncates back to it on failure. */
void buf_truncate(struct buf *b, size_t len);

/* Overwrites the whole allocation with zeros (OPENSSL_cleanse, which the compiler cannot
 * elide), then frees it: for buffers that held a secret or personal data. */
void buf_wipe(struct buf *b);

/* Bytes held, without the terminating NUL. */
size_t buf_len(const struct buf *b);

/* Bytes that can still be appended before the ceiling. */
size_t buf_room(const struct buf *b);

/* Returns 0, ERR_TOO_LARGE when the result would exceed max, or UV_ENOMEM. */
BUF_MUST_CHECK int buf_append(struct buf *b, const void *p, size_t n);
BUF_MUST_CHECK int buf_append_str(struct buf *b, const char *s);
BUF_MUST_CHECK int buf_appendf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
BUF_MUST_CHECK int buf_vappendf(struct buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* The contents as a C string: "" for an empty buffer, never NULL. */
const char *buf_cstr(const struct buf *b);

/* Hands the memory to the caller (free() it) and leaves the buffer empty. Returns NULL for
 * an empty buffer. */
char *buf_steal(struct buf *b);

#endif
