#include "pdstrace/url.h"

#include "pdstrace/buf.h"
#include "pdstrace/err.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int url_decode(char *s, bool plus_is_space)
{
    char *w = s;
    for (const char *r = s; *r != '\0'; r++) {
        if (*r != '%') {
            *w++ = plus_is_space && *r == '+' ? ' ' : *r;
            continue;
        }
        /* hexval('\0') is -1, so a truncated escape stops here without reading past. */
        int hi = hexval(r[1]);
        int lo = hi < 0 ? -1 : hexval(r[2]);
        if (lo < 0 || (hi == 0 && lo == 0))
            return ERR_INVALID_INPUT;
        *w++ = (char)(hi * 16 + lo);
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
