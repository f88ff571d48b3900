#ifndef PDS_PDS_FHIR_H
#define PDS_PDS_FHIR_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/* Pure parsing of PDS FHIR R4 response bodies (pds/README.md): a search Bundle with 0 or 1
 * entries, an OperationOutcome (TOO_MANY_MATCHES or an error), or a retrieved Patient.
 * Nothing here allocates beyond the parse itself, logs or keeps state. Every Patient field
 * but id is optional: absent or wrongly typed fields read as "" (or 0). */

/* FHIR_UNPARSED is 0 so that a zeroed or failed result never reads as "no match". */
enum fhir_kind {
    FHIR_UNPARSED,
    FHIR_SEARCH_NONE, /* Bundle without entries */
    FHIR_SEARCH_ONE,  /* Bundle with exactly one Patient entry */
    FHIR_TOO_MANY,    /* OperationOutcome TOO_MANY_MATCHES, or a Bundle with > 1 entry */
    FHIR_ERROR,       /* any other OperationOutcome */
    FHIR_PATIENT,     /* retrieve: a Patient resource */
};

/* meta.security: U unrestricted, R restricted (no address, telecom, GP), V very restricted.
 * The order matters: with several labels the most restrictive one wins. */
enum fhir_security { FHIR_SEC_UNKNOWN, FHIR_SEC_U, FHIR_SEC_R, FHIR_SEC_V };

#define FHIR_MAX_GIVEN 4

struct fhir_patient {
    char id[11];  /* NHS number, exactly 10 digits (check digit not verified here) */
    double score; /* search score 0..1 (0 when absent or out of range); 1 on retrieve */
    enum fhir_security security;
    char birth_date[11]; /* "YYYY", "YYYY-MM" or "YYYY-MM-DD" as given; "" absent/malformed */
    char family[101];    /* usual name (else the first name), truncated; "" absent */
    char given[FHIR_MAX_GIVEN][101]; /* that name's given names, truncated */
    unsigned n_given;
    char gender[16];      /* "male", "female", "other", "unknown" or "" */
    char postcode[9];     /* home address without period.end, else the first; "" absent */
    char verification[4]; /* NHS number verification status code, e.g. "01"; "" absent */
    char version[16];     /* meta.versionId (the ETag's value); "" absent */
    char death_date[11];  /* date part of deceasedDateTime; "" absent */
};

struct fhir_result {
    enum fhir_kind kind;
    char resource_type[32];      /* the body's resourceType, also when it was refused; "" for
                                    a body that is not a JSON object with one */
    char issue_code[32];         /* OperationOutcome issue[0].code, e.g. "not-supported" */
    unsigned n_entries;          /* Bundle entries seen (search only) */
    struct fhir_patient patient; /* valid for FHIR_SEARCH_ONE and FHIR_PATIENT */
    char error_code[48];         /* issue[0].details.coding[0].code, e.g. "INVALID_VALUE" */
    /* issue[0].diagnostics, truncated, with every quoted value except a field name replaced
     * by '***': PDS quotes the offending request value, which may be personal data. */
    char error_diagnostics[256];
};

/* Parses a search answer (HTTP 200 or 4xx body): a searchset Bundle or an OperationOutcome.
 * Returns 0 with out filled, or ERR_PARSE (not JSON, nested too deeply, wrong resourceType,
 * a Bundle of another type, an entry without a Patient whose id is 10 digits) with
 * out->kind FHIR_UNPARSED and only resource_type kept. body is borrowed and need not be
 * NUL-terminated. */
int fhir_parse_search(const char *body, size_t len, struct fhir_result *out);

/* Parses a retrieve answer: a Patient (kind FHIR_PATIENT, score 1) or an OperationOutcome.
 * Same errors and ownership as fhir_parse_search. */
int fhir_parse_patient(const char *body, size_t len, struct fhir_result *out);

/* Whether a PDS birth date agrees with a full "YYYY-MM-DD" date: a partial PDS date
 * ("YYYY", "YYYY-MM") agrees by prefix. An absent or malformed date never agrees. */
bool fhir_birth_date_agrees(const char *pds_date, const char *yyyy_mm_dd);

/* Whether a PDS birth date contradicts a full "YYYY-MM-DD" date at the precision PDS gives
 * (year, year-month or full date). An absent date says nothing, so it never contradicts. */
bool fhir_birth_date_contradicts(const char *pds_date, const char *yyyy_mm_dd);

/* Describes, for an error message, what an answer that was not the one asked for held:
 * "OperationOutcome not-supported", "OperationOutcome INVALID_SEARCH_DATA", "Patient",
 * "Bundle", "a body that is not a FHIR resource" (empty, HTML, other JSON). Never
 * personal data. */
void fhir_describe(const struct fhir_result *r, char *out, size_t size);

/* Builds an OperationOutcome shaped like PDS's (tests/data/pds/errors): one issue with the
 * FHIR issue type and severity PDS uses for code, details.coding[0] in the Spine
 * ErrorOrWarningCode system. display NULL takes PDS's text for code; diagnostics NULL
 * leaves the key out. Returns a new reference (json_decref it), or NULL on bad input or
 * out of memory. */
json_t *fhir_operation_outcome(const char *code, const char *display, const char *diagnostics);

#endif
