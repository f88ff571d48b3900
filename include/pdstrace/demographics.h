#ifndef PDS_TRACE_DEMOGRAPHICS_H
#define PDS_TRACE_DEMOGRAPHICS_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

struct buf;

/* Validation and normalisation of the POST /v1/trace body (DESIGN.md §3), and the single
 * normalisers the CSV bulk module reuses. Pure functions: no allocation beyond what a
 * struct buf argument does, no state, no logging. Reasons given back never quote the
 * value, because every value here is personal data. */

#define DEMOG_MAX_GIVEN      4
#define DEMOG_MAX_ADDRESS    5
#define DEMOG_NAME_SIZE      101 /* names and address lines: at most 100 bytes of UTF-8 */
#define DEMOG_NAME_MAX_CHARS 35  /* PDS's limit on a name: longer ones get a 400 */

enum demog_gender {
    DEMOG_GENDER_NONE, /* absent */
    DEMOG_GENDER_MALE,
    DEMOG_GENDER_FEMALE,
    DEMOG_GENDER_OTHER,
    DEMOG_GENDER_UNKNOWN,
};

/* A normalised request. Absent optional strings are "". */
struct demographics {
    char case_id[65];                             /* visible ASCII, 1..64 bytes */
    char family[DEMOG_NAME_SIZE];                 /* normalised name; UTF-8 kept */
    char given[DEMOG_MAX_GIVEN][DEMOG_NAME_SIZE]; /* the first may hold several names */
    unsigned n_given;
    char birth_date[11]; /* YYYY-MM-DD */
    enum demog_gender gender;
    char postcode[9]; /* "LS1 6AE" form */
    char address[DEMOG_MAX_ADDRESS][DEMOG_NAME_SIZE];
    unsigned n_address;
    char nhs_number[11]; /* bare digits with a valid check digit */
    int write_back;      /* -1 absent, else 0 or 1; the default is the caller's decision */
    char purpose[201];
};

/* Which field of a request is wrong and why, for the 4xx body. Both strings are static.
 * field is the JSON field name, or NULL when the body as a whole is wrong (not an
 * object). It lives here until the lead moves it to err.h (CONVENTIONS.md §2.2). */
struct field_error {
    const char *field;
    const char *reason;
};

/* Fills out from a parsed request body. today is the current UTC date "YYYY-MM-DD",
 * passed in so that results are reproducible. Fields are checked in the order of
 * DESIGN.md §3 and the first violation is reported in fe; unknown fields are ignored.
 * Optional fields that are null, or strings of only spaces, count as absent. Returns 0,
 * ERR_INVALID_INPUT (fe filled in; out is then unspecified), or ERR_INTERNAL when today
 * is malformed. body is borrowed; fe may be NULL. */
int demographics_from_json(const json_t *body, const char *today, struct demographics *out,
                           struct field_error *fe);

/* True when fe reports a required field that is missing (API code missing_field) rather
 * than a present but invalid one (invalid_field). */
bool demographics_error_is_missing(const struct field_error *fe);

/* Appends to out a deterministic string of exactly the fields that shape a PDS search
 * (family, given, birth_date, gender, postcode, nhs_number), ASCII letters folded to
 * lower case, fields and given names separated by control bytes that no normalised value
 * contains. Two requests differing only in case or spacing give the same string. Returns
 * 0, ERR_INVALID_INPUT if a value holds a control byte (it did not come through the
 * normalisers), or the buf error; on failure out is left as it was. */
int demographics_canonical(const struct demographics *d, struct buf *out);

/* A person's name: trims, collapses whitespace runs to one space, maps curly apostrophes
 * to ' and Unicode dashes to -, drops one trailing parenthesised suffix such as
 * "(nee Jones)", and keeps accents and other UTF-8 as they are. Rejects invalid UTF-8,
 * control characters, digits, punctuation other than space ' - and full stop, results
 * without a letter, and results longer than size - 1 bytes. Returns 0 or
 * ERR_INVALID_INPUT (out then ""). */
int demog_normalise_name(const char *in, char *out, size_t size);

/* A UK postcode: upper-cases, drops spaces, checks the outward/inward shape (plus
 * "GIR 0AA") and writes it with one space before the last three characters, e.g.
 * "sw1a1aa" -> "SW1A 1AA". Returns 0 or ERR_INVALID_INPUT (out then ""). */
int demog_normalise_postcode(const char *in, char out[9]);

/* Checks that in is exactly "YYYY-MM-DD", a real calendar date, in 1880 or later and not
 * after today ("YYYY-MM-DD", UTC). Returns 0, ERR_INVALID_INPUT, or ERR_INTERNAL when
 * today itself is not a valid date. */
int demog_check_birth_date(const char *in, const char *today);

/* male | female | other | unknown, in any case, surrounding spaces ignored. Returns 0 or
 * ERR_INVALID_INPUT (out untouched). */
int demog_parse_gender(const char *in, enum demog_gender *out);

/* "male", "female", "other", "unknown", or "" for DEMOG_GENDER_NONE; never NULL. */
const char *demog_gender_name(enum demog_gender g);

/* The checks above that can fail for several reasons, with the reason, for messages
 * "<column>: <reason>" about bulk CSV rows: on ERR_INVALID_INPUT *why is a static phrase
 * that never quotes the value ("must not contain digits", "is not a real calendar date");
 * otherwise as demog_normalise_name and demog_check_birth_date. */
int demog_normalise_name_why(const char *in, char *out, size_t size, const char **why);
int demog_check_birth_date_why(const char *in, const char *today, const char **why);

/* Free text such as an address line, as POST /v1/trace reads "address": trims, collapses
 * whitespace runs to one space, maps curly apostrophes to ' and Unicode dashes to -.
 * Rejects invalid UTF-8, control and invisible characters, and results longer than
 * size - 1 bytes. The result may be "". Returns 0 or ERR_INVALID_INPUT (*why set, out ""). */
int demog_normalise_text(const char *in, char *out, size_t size, const char **why);

/* A case_id as POST /v1/trace takes it: 1..64 visible ASCII characters, no spaces.
 * Returns 0 or ERR_INVALID_INPUT (*why set). */
int demog_check_case_id(const char *in, const char **why);

#endif
