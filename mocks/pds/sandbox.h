#ifndef PDS_MOCKPDS_SANDBOX_H
#define PDS_MOCKPDS_SANDBOX_H

#include <jansson.h>
#include <stddef.h>

#include "search.h"

/* NHS England's public PDS sandbox, as pds-trace meets it (mock-pds --sandbox DIR): a few
 * canned people keyed on family name, gender and birth date, answered from the example
 * bodies in DIR (tests/data/pds), and a 200 "not-supported" OperationOutcome
 * (search/NOT_SUPPORTED_SEARCH.json) for every other search, including any that carries
 * _history or _fuzzy-match, which the sandbox routes to canned answers of its own. See
 * mocks/pds/README.md. */
struct sandbox;

/* Loads the bodies from dir. Returns 0, or ERR_CONFIG naming nothing (a file is missing or
 * not JSON) and *out NULL. */
int sandbox_load(struct sandbox **out, const char *dir);
void sandbox_free(struct sandbox *sb);

/* GET /Patient as the sandbox answers it: always 200. *body is a new reference. */
int sandbox_search(const struct sandbox *sb, const struct search_param *params, size_t n,
                   json_t **body);

/* GET /Patient/{id}: 200 with a canned Patient, else 404 RESOURCE_NOT_FOUND. */
int sandbox_retrieve(const struct sandbox *sb, const char *id, json_t **body);

#endif
