#include "pdstrace/url.h"

#include "pdstrace/buf.h"
#include "pdstrace/crypto.h"
#include "pdstrace/err.h"

/* The byte of the escape whose two hex digits start at r, through the one hex decoder
 * (crypto_unhex, either case). A string that ends early stops at its NUL without reading
 * past it. Returns 0 or ERR_INVALID_INPUT. */
static int unescape(const char *r, unsigned char *out)
{
    const char hex[3] = {r[0], r[0] != '\0' ? r[1] : '\0', '\0'};
    return crypto_unhex(hex, out, 1);
}

int url_decode(char *s, bool plus_is_space)
{
    char *w = s;
    for (const char *r = s; *r != '\0'; r++) {
        if (*r != '%') {
            *w++ = plus_is_space && *r == '+' ? ' ' : *r;
            continue;
        }
        unsigned char c;
        if (unescape(r + 1, &c) != 0 || c == 0)
            return ERR_INVALID_INPUT;
        *w++ = (char)c;
        r += 2;
    }
    *w = '\0';
    return 0;
}

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static int encode(struct buf *q, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
        int err = is_unreserved(*p) ? buf_append(q, p, 1) : buf_append(q, esc, 3);
        if (err)
            return err;
    }
    return 0;
}

int url_query_append(struct buf *q, const char *name, const char *value)
{
    if (q == NULL || name == NULL || name[0] == '\0' || value == NULL)
        return ERR_INVALID_INPUT;
    size_t old = buf_len(q);
    int err = old > 0 ? buf_append(q, "&", 1) : 0;
    if (!err)
        err = encode(q, name);
    if (!err)
        err = buf_append(q, "=", 1);
    if (!err)
        err = encode(q, value);
    /* A failed append leaves the buffer as it was, as buf's own appends do. */
    if (err)
        buf_truncate(q, old);
    return err;
}
