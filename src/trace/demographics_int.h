#ifndef PDS_TRACE_DEMOGRAPHICS_INT_H
#define PDS_TRACE_DEMOGRAPHICS_INT_H

/* What demographics.c (the single normalisers) and demographics_json.c (the request body,
 * the canonical form) share. */
#include <stdbool.h>

/* Reasons end up in "<field> <reason>" messages, so none of them may quote the value. */
static const char R_CONTROL[] = "contains a control or invisible character";
static const char R_EMPTY[] = "must not be empty";

/* ASCII helpers: no <ctype.h>, whose answers depend on the locale. */
static inline bool is_upper(unsigned char c)
{
    return c >= 'A' && c <= 'Z';
}

static inline char to_lower(unsigned char c)
{
    return (char)(is_upper(c) ? c - 'A' + 'a' : c);
}

/* Only spaces and tabs. */
static inline bool is_blank(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return *s == '\0';
}

/* Whether s is "YYYY-MM-DD" on a real calendar day (demographics.c). */
bool demog_date_real(const char *s);

#endif
