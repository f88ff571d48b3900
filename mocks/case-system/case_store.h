#ifndef PDS_MOCKCASE_CASE_STORE_H
#define PDS_MOCKCASE_CASE_STORE_H

#include <jansson.h>
#include <stddef.h>

#include "case_body.h"

/* What the mock case system remembers (pure: no loop, no logging): each client's recorded
 * NHS number with its write and duplicate counts, and the idempotency table, which maps an
 * Idempotency-Key to the answer first given under it. Synthetic data only. */
struct case_store;

/* How a write was taken. */
enum case_outcome {
    CASE_DELIVERED, /* a new key: the number was recorded */
    CASE_DUPLICATE, /* a key already applied to the same case and number: nothing written */
    CASE_CONFLICT,  /* a key already applied to another case or number: refused */
};

#define CASE_STORE_MAX_KEYS 100000 /* keys remembered by the mock (about 50 MB); older ones go */

/* max_keys (at least 1) bounds the idempotency table: past it the oldest key is forgotten,
 * as a real system would let keys expire. Returns 0, ERR_INVALID_INPUT or UV_ENOMEM. */
int case_store_new(struct case_store **out, size_t max_keys);

/* NULL is fine. */
void case_store_free(struct case_store *s);

/* Forgets every client and key. */
void case_store_clear(struct case_store *s);

/* Applies a checked write w for case_id under key (both borrowed). A new key records w as
 * the client's number (its write count grows) and sets *reply to the answer body; a key
 * seen before with the same case_id and nhs_number is a duplicate, *reply the body first
 * answered under it, and the client's duplicate count grows; any other reuse of a key is a
 * conflict with *reply NULL. *reply is borrowed from the store and valid until its next
 * change. Returns 0, or UV_ENOMEM with nothing changed. */
int case_store_apply(struct case_store *s, const char *case_id, const char *key,
                     const struct case_write *w, enum case_outcome *outcome, const char **reply);

/* A new JSON object (json_decref it) with the client's case_id, nhs_number,
 * nhs_number_status, trace_id, traced_at, score, writes and duplicates; NULL when nothing
 * was ever written for case_id. */
json_t *case_store_client(const struct case_store *s, const char *case_id);

/* Clients with a recorded number, and keys remembered. */
size_t case_store_clients(const struct case_store *s);
size_t case_store_keys(const struct case_store *s);

#endif
