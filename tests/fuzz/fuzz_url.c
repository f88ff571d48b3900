/* libFuzzer harness: url_decode on the input as a C string, in both '+' modes.
 * Invariants: it succeeds exactly when every '%' starts an escape of two hex digits other
 * than %00; then each escape became one byte and the rest is copied, so the result is the
 * input's length less two bytes per escape (a decoded NUL would cut it shorter), and with
 * plus_is_space no '+' is left but the decoded ones. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

/* The number of escapes in s, or -1 when one is malformed or encodes NUL. */
static long count_escapes(const char *s)
{
    long k = 0;
    for (; (s = strchr(s, '%')) != NULL; s += 3, k++) {
        if (!isxdigit((unsigned char)s[1]) || !isxdigit((unsigned char)s[2]))
            return -1;
        if (s[1] == '0' && s[2] == '0')
            return -1;
    }
    return k;
}

static size_t count_char(const char *s, char c)
{
    size_t k = 0;
    for (; *s != '\0'; s++)
        k += *s == c;
    return k;
}

/* Decoded '+' come from %2B escapes, so there are at most as many as escapes. */
static void check(const char *in, bool plus_is_space)
{
    size_t before = strlen(in);
    long escapes = count_escapes(in);
    char *s = malloc(before + 1);
    if (s == NULL)
        return;
    memcpy(s, in, before + 1);
    int rc = url_decode(s, plus_is_space);
    if ((rc == 0) != (escapes >= 0))
        __builtin_trap();
    if (rc == 0 && strlen(s) != before - 2 * (size_t)escapes)
        __builtin_trap();
    if (rc == 0 && plus_is_space && count_char(s, '+') > (size_t)escapes)
        __builtin_trap();
    if (rc == 0 && !plus_is_space && count_char(s, '+') < count_char(in, '+'))
        __builtin_trap();
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    char *in = malloc(n + 1);
    if (in == NULL)
        return 0;
    memcpy(in, d, n);
    in[n] = '\0';
    check(in, false);
    check(in, true);
    free(in);
    return 0;
}
