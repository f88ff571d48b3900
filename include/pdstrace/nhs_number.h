#ifndef PDS_TRACE_NHS_NUMBER_H
#define PDS_TRACE_NHS_NUMBER_H

#include <stdbool.h>

/* NHS numbers (pds/README.md "NHS numbers"): ten digits, the tenth a modulus-11 check over
 * the first nine with weights 10..2. Pure functions: no allocation, no state, no logging.
 * Only the 9000000000-9999999999 block may appear in tests and mock data. */

/* The check digit for the nine digits at first9 (further characters are ignored): 0..9,
 * or -1 when the modulus gives 10 (no valid number starts with these nine digits) or
 * when first9 does not start with nine ASCII digits. */
int nhs_number_check_digit(const char *first9);

/* True when digits10 is exactly ten ASCII digits (then NUL) with a valid check digit.
 * NULL is false. */
bool nhs_number_is_valid(const char *digits10);

/* Accepts an NHS number as people type it: spaces and hyphens anywhere are dropped, and
 * what remains must be exactly ten digits with a valid check digit. Writes the bare
 * digits to out and returns 0, or returns ERR_INVALID_INPUT and leaves out "". */
int nhs_number_normalise(const char *in, char out[11]);

/* Writes the display form "943 476 5870". Gives "" unless digits10 is exactly ten
 * digits; the check digit is not verified here. */
void nhs_number_format(const char *digits10, char out[13]);

#endif
