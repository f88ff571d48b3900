#include "pdstrace/url.h"

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
