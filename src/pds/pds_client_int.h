#ifndef PDS_PDS_PDS_CLIENT_INT_H
#define PDS_PDS_PDS_CLIENT_INT_H

/* Shared only by the files of the PDS client (docs/internals/pds_client.md):
 *   pds_client.c   the lists, the timer, the rate slots (pds_rate.h) and the token
 *                  bucket: when each attempt goes;
 *   pds_request.c  one request: what the caller passed, checked, and each attempt's URL
 *                  and headers;
 *   pds_retry.c    what an answer means, and how long to wait for the next attempt.
 * Nothing outside src/pds/pds_*.c includes it. */

#include <stdbool.h>
#include <stdint.h>

#include "pdstrace/buf.h"
#include "pdstrace/crypto.h"
#include "pdstrace/list.h"
#include "pdstrace/pds_client.h"

#define PDS_MAX_CORRELATION_LEN 128
#define PDS_MAX_ODS_LEN         64
#define PDS_NS_PER_MS           1000000ull

enum pds_op { PDS_SEARCH, PDS_RETRIEVE };

/* The lists of the client a request can be on (pds_client.c), and none. */
enum pds_where {
    PDS_QUEUED_TRACE, /* trace requests waiting for the rate limit or the concurrency cap */
    PDS_QUEUED_BULK,  /* bulk requests, likewise: sent only while no trace request waits */
    PDS_BACKOFF,      /* waiting for its retry time */
    PDS_SENT,         /* an attempt in flight */
    PDS_LISTS,
    PDS_NOWHERE = PDS_LISTS
};

/* What one attempt's answer means for the request. */
enum pds_verdict { PDS_VERDICT_DONE, PDS_VERDICT_RETRY, PDS_VERDICT_REAUTH };

struct pds_request {
    struct pds_client *pc; /* NULL once pds_client_free has answered it */
    struct list_node link; /* in the client's list `where` */
    enum pds_where where;
    enum pds_op op;
    enum pds_priority priority;
    char *url;
    char correlation_id[PDS_MAX_CORRELATION_LEN + 1];
    char request_id[CRYPTO_UUID_SIZE]; /* the same on every attempt: PDS de-duplicates */
    char *token;                       /* bearer token of the attempt in flight */
    unsigned counted;                  /* attempts that count against max_attempts */
    bool shared_slot;                  /* the attempt in flight went on a slot reserved in
                                          Redis (pds_rate.h) */
    bool auth_retried;
    uint64_t due_ns;      /* while backing off: when it may queue again */
    uint64_t deadline_ns; /* the caller's deadline (uv_hrtime); 0: none */
    pds_gone_fn *gone;    /* NULL, or true once nobody waits for the answer */
    pds_cb *cb;
    void *arg;
    struct pds_response res;
};

/* ---- pds_request.c ---- */

/* Whether s is 1..max printable ASCII characters without spaces. */
bool pds_request_is_printable(const char *s, size_t max);

/* A new request on no list, with a fresh X-Request-ID. Takes ownership of url (freed on
 * failure too); call may be NULL. NULL when out of memory. */
struct pds_request *pds_request_new(enum pds_op op, char *url, const struct pds_call *call,
                                    pds_cb *cb, void *arg);
void pds_request_free(struct pds_request *r);

/* "search" or "retrieve", for logs and metric labels. */
const char *pds_request_op_name(const struct pds_request *r);

/* The URL of a search (what: the query) or a retrieve (what: the NHS number) under
 * base_url (no trailing slash), malloc'd into *out. Returns 0, ERR_INVALID_INPUT (see
 * pds_client_search and pds_client_retrieve), ERR_TOO_LARGE or UV_ENOMEM. */
int pds_request_url(char **out, enum pds_op op, const char *base_url, const char *what);

/* The header lines of one attempt (docs/internals/pds_client.md): lines is
 * NULL-terminated and points into the struct, so it lives as long as h. */
struct pds_headers {
    char request_id[64];
    char correlation[PDS_MAX_CORRELATION_LEN + 32];
    char ods[PDS_MAX_ODS_LEN + 40];
    struct buf auth;
    const char *lines[6];
};

/* Fills h for r's next attempt (r->token, if any, as the bearer token; ods_code may be
 * NULL). Returns 0 or an append error; release h with pds_request_headers_free either way. */
int pds_request_headers(struct pds_headers *h, const struct pds_request *r, const char *ods_code);
void pds_request_headers_free(struct pds_headers *h);

/* ---- pds_retry.c ---- */

/* Judges one attempt's outcome (status and res as http_client gives them), sets
 * r->res.http_status and r->res.result, and puts the request's status in *code for
 * PDS_VERDICT_DONE and PDS_VERDICT_RETRY (the status should no retry be left).
 * can_reauth: a 401 may be answered by fetching a new token. */
enum pds_verdict pds_retry_judge(struct pds_request *r, int status,
                                 const struct http_client_response *res, bool can_reauth,
                                 int *code);

/* How long to wait before the next attempt, the attempt-th counted one having failed with
 * res (NULL when no answer came): Retry-After when PDS gave one, else backoff with jitter. */
uint64_t pds_retry_delay_ms(const struct pds_client_config *cfg, unsigned attempt,
                            const struct http_client_response *res);

/* The timeout of an attempt starting at now: timeout_ms, cut to what is left before
 * deadline_ns (0: none), and at least 1 ms. */
unsigned pds_retry_attempt_timeout_ms(unsigned timeout_ms, uint64_t deadline_ns, uint64_t now);

#endif
