#ifndef PDS_CORE_URL_H
#define PDS_CORE_URL_H

#include <stdbool.h>

/* Percent-decodes the C string s in place (the result is never longer). plus_is_space
 * turns '+' into ' ', as HTML forms encode it; in a path or a PDS query '+' stays '+'.
 * Returns 0, or ERR_INVALID_INPUT for a malformed escape or an encoded NUL (s is then
 * unspecified). */
int url_decode(char *s, bool plus_is_space);

#endif
