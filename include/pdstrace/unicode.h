#ifndef PDS_TRACE_UNICODE_H
#define PDS_TRACE_UNICODE_H

#include <stdbool.h>
#include <stdint.h>

/* Whether a code point is a letter (or a combining mark accenting one) of the scripts
 * names are written in: ASCII letters, Latin, Greek, Cyrillic, Armenian, Hebrew, Arabic,
 * the Indic scripts, Thai, Georgian, Hangul, kana and CJK. Digits, punctuation, symbols,
 * emoji and private use are not. Pure; no locale. */
bool unicode_is_letter(uint32_t cp);

#endif
