#ifndef PDS_MOCKPDS_SEARCH_H
#define PDS_MOCKPDS_SEARCH_H

#include <jansson.h>
#include <stddef.h>
#include <time.h>

/* The PDS search and retrieve semantics of shared/pds/README.md over a population, with no
 * network: the HTTP layer decodes the request, calls in here and sends back the status and
 * body. Every function returns the HTTP status and sets *body to a new reference (a Patient,
 * a searchset Bundle or an OperationOutcome) that the caller must json_decref. Scores and
 * matching rules are documented in mocks/pds/README.md. */

struct population;

/* One query parameter, already percent-decoded; both strings are borrowed. */
struct search_param {
    const char *name;
    const char *value;
};

/* What the HTTP layer knows about the request. */
struct search_ctx {
    const char *base_url; /* for entry.fullUrl, e.g. "http://127.0.0.1:9000/Patient";
                             NULL gives the production PDS base */
    time_t now;           /* Bundle.timestamp; 0 means the current time */
};

/* GET /Patient: validates params in the PDS error order, then matches. Always sets *body.
 * Returns 200 (a Bundle with total 0 or 1, or a TOO_MANY_MATCHES OperationOutcome), 400 or
 * 403. ctx may be NULL. */
int search_patients(const struct population *pop, const struct search_param *params, size_t nparams,
                    const struct search_ctx *ctx, json_t **body);

/* GET /Patient/{id}: 200 with the Patient (the new record for a superseded number), 400
 * INVALID_RESOURCE_ID, 404 RESOURCE_NOT_FOUND or 404 INVALIDATED_RESOURCE. The ETag version
 * is the Patient's meta.versionId. */
int search_retrieve(const struct population *pop, const char *id, json_t **body);

/* A new OperationOutcome in the shape of shared/pds/examples/errors for a Spine code
 * (TOO_MANY_REQUESTS, ACCESS_DENIED, MISSING_VALUE, ... any code; unknown codes get issue
 * code "processing"). diagnostics may be NULL (then the key is left out). Returns NULL
 * only when out of memory. */
json_t *search_outcome_new(const char *spine_code, const char *diagnostics);

#endif
