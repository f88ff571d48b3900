#ifndef PDS_AUTH_TOKEN_H
#define PDS_AUTH_TOKEN_H

#include <stdbool.h>
#include <uv.h>

#include "pdstrace/http_client.h"

/* OAuth2 access tokens for PDS (signed-JWT application-restricted auth, DESIGN.md §4):
 * signs a client assertion, exchanges it at the token URL, caches the token until shortly
 * before it expires, and keeps at most one refresh in flight, however many callers wait. */
struct token_source;

struct token_config {
    const char *token_url;
    const char *client_id;
    const char *kid;
    const char *key_file;       /* PEM RSA private key */
    unsigned timeout_ms;        /* per exchange; 0 means 10000 */
    unsigned refresh_early_s;   /* refresh this long before expiry; 0 means 60 */
    struct http_client_tls tls; /* PEM files for the token endpoint, which is on the PDS
                                   host: the same as the PDS client's; NULL or "": none */
};

/* token is borrowed; valid until cb returns. status is 0, ERR_UPSTREAM(_TIMEOUT) when the
 * token endpoint failed or could not be reached, ERR_UPSTREAM_TLS when a certificate was
 * refused, ERR_UPSTREAM_REJECTED when it refused our assertion, or UV_ECANCELED
 * (token_source_free). */
typedef void token_cb(int status, const char *token, void *arg);

/* What token_source_new refused, for a start-up message that names the setting: field is
 * the token_config member ("token_url", "client_id", "kid" or "key_file") and reason a
 * static phrase ("is required", "does not exist", "is not an RSA key (RS512 needs one)"...,
 * see jwt_key_load_why). Both NULL when the failure was no setting's (out of memory). */
struct token_config_error {
    const char *field;
    const char *reason;
};

/* Loads the key (ERR_CONFIG if unusable, or a setting is missing: then why, which may be
 * NULL, says which and why). cfg is copied (the TLS file names too); http is borrowed and
 * must outlive the source. Nothing is fetched until the first token_get, or
 * token_source_keep_warm. */
int token_source_new(struct token_source **out, uv_loop_t *loop, struct http_client *http,
                     const struct token_config *cfg, struct token_config_error *why);

/* Waiting callbacks run once with UV_ECANCELED; keep_warm stops. NULL is fine. */
void token_source_free(struct token_source *ts);

/* Readiness (/readyz) needs a token, and an instance that is not ready gets no traffic that
 * would fetch one: from the next loop turn and then every interval_ms, while the source is
 * not healthy (token_source_healthy) and no exchange is in flight, it starts one by itself,
 * until token_source_free. Returns 0, ERR_INVALID_INPUT (interval_ms 0), UV_ECANCELED
 * (freeing) or a libuv code. */
int token_source_keep_warm(struct token_source *ts, unsigned interval_ms);

/* The cached token while it is fresh, else NULL. Borrowed; valid until the next call into
 * this module. */
const char *token_peek(struct token_source *ts);

/* Gets a token: returns 0 and calls cb exactly once later (at once on the next loop turn
 * when one is cached), or returns <0 and never calls cb. */
int token_get(struct token_source *ts, token_cb *cb, void *arg);

/* Forgets token if it is still the cached one (PDS answered 401 to it), so that the next
 * token_get fetches a new one. */
void token_invalidate(struct token_source *ts, const char *token);

/* True while a fresh token is cached or the last exchange succeeded (for /readyz). */
bool token_source_healthy(const struct token_source *ts);

#endif
