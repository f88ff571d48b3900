#ifndef PDS_CORE_URL_H
#define PDS_CORE_URL_H

#include <stdbool.h>

/* Percent-decodes the C string s in place (the result is never longer). plus_is_space
 * turns '+' into ' ', as HTML forms encode it; in a path or a PDS query '+' stays '+'.
 * Returns 0, or ERR_INVALID_INPUT for a malformed escape or an encoded NUL (s is then
 * unspecified). */
int url_decode(char *s, bool plus_is_space);

struct buf;

/* Appends "name=value" to q, after a '&' when q is not empty, percent-encoding every byte
 * but A-Z a-z 0-9 - . _ ~ (so UTF-8 bytes become %XX, '*' %2A, space %20). Returns 0,
 * ERR_INVALID_INPUT, ERR_TOO_LARGE or UV_ENOMEM; on failure q is left as it was. */
int url_query_append(struct buf *q, const char *name, const char *value);

#endif
