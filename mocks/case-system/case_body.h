#ifndef PDS_MOCKCASE_CASE_BODY_H
#define PDS_MOCKCASE_CASE_BODY_H

#include <stdbool.h>
#include <stddef.h>

#include "pdstrace/demographics.h" /* struct field_error */

/* The pure checks of the mock case system's write route (mocks/case-system/README.md):
 * case ids, Idempotency-Key values, ISO 8601 UTC times and the write-back body of
 * DESIGN.md §5. No allocation that outlives a call, no state, no logging. */

#define CASE_ID_MAX         64  /* characters of a case_id */
#define CASE_KEY_MAX        200 /* characters of an Idempotency-Key */
#define CASE_TRACE_ID_MAX   128 /* characters of a trace_id */
#define CASE_TIME_MAX       30  /* "YYYY-MM-DDTHH:MM:SS.fffffffffZ" */
#define CASE_FIELD_NAME_MAX 64  /* an unknown field's name is cut to this in errors */

/* The reason given for a field that is absent; any other reason means "present but
 * wrong". */
#define CASE_REASON_MISSING "is required"

/* A write-back body that passed case_body_parse. */
struct case_write {
    char nhs_number[11];
    char trace_id[CASE_TRACE_ID_MAX + 1];
    char traced_at[CASE_TIME_MAX + 1];
    double score;
    char unknown_field[CASE_FIELD_NAME_MAX + 1]; /* fe->field for a refused unknown field */
};

/* True for 1..CASE_ID_MAX characters of A-Za-z0-9._:- (the case_id of DESIGN.md §3). */
bool case_id_is_valid(const char *s);

/* True for 1..CASE_KEY_MAX visible ASCII characters (0x21..0x7e). */
bool case_key_is_valid(const char *s);

/* True for "YYYY-MM-DDTHH:MM:SS" on a real calendar day, with an optional fraction of
 * 1..9 digits, ending in "Z" (UTC; offsets such as +00:00 are refused). */
bool case_time_is_valid(const char *s);

/* Parses and checks a write-back body against the Idempotency-Key it came with (borrowed,
 * already checked with case_key_is_valid): nhs_number (ten digits, valid check digit),
 * nhs_number_status ("01"), trace_id (1..CASE_TRACE_ID_MAX characters, equal to key),
 * traced_at (case_time_is_valid) and score (a number in 0..1), in that order; any other
 * field is refused. Returns 0 with out filled in, ERR_PARSE when text is not a JSON object
 * (fe->field NULL), or ERR_INVALID_INPUT with the first bad field in fe (reason
 * CASE_REASON_MISSING for an absent one). fe's strings are static, except that the name
 * of an unknown field points into out->unknown_field. */
int case_body_parse(const char *text, size_t len, const char *key, struct case_write *out,
                    struct field_error *fe);

/* The API error code of DESIGN.md §3 for a failed case_body_parse: "invalid_json",
 * "missing_field" or "invalid_field". */
const char *case_body_error_code(const struct field_error *fe);

#endif
