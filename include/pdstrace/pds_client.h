#ifndef PDS_PDS_CLIENT_H
#define PDS_PDS_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "pdstrace/fhir.h"
#include "pdstrace/http_client.h"

/* Searches and retrieves against a PDS FHIR R4 endpoint (DESIGN.md §4, pds/README.md) over
 * the shared HTTP client: the real headers, a rate limit with no bursts shared by every
 * instance through Redis (a local token bucket while Redis is away), single traces before
 * bulk rows, a cap on requests in flight, and retries of 429/408/5xx/connection errors
 * with exponential backoff and jitter (Retry-After wins), reusing the request's
 * X-Request-ID on every attempt. See docs/internals/pds_client.md. */
struct metrics;
struct pds_client;
struct http_client;
struct redis_conn;
struct token_source;

/* Which requests go first when several wait for the rate limit: in this process a waiting
 * trace request is always sent before a waiting bulk one, and across instances a bulk
 * request never reserves a slot more than about one interval ahead (pds_rate.h). */
enum pds_priority {
    PDS_PRIORITY_TRACE = 0, /* a single trace (POST /v1/trace) */
    PDS_PRIORITY_BULK,      /* a row of a bulk run */
    PDS_PRIORITIES
};

struct pds_client_config {
    const char *base_url;       /* ".../personal-demographics/FHIR/R4", no trailing slash needed */
    const char *ods_code;       /* NHSD-End-User-Organisation-ODS, or NULL/"" */
    double rate;                /* requests per second: of every instance sharing Redis
                                   together, and of this client alone while Redis is away */
    unsigned concurrency;       /* requests in flight */
    unsigned timeout_ms;        /* per attempt */
    unsigned max_attempts;      /* >= 1 */
    unsigned backoff_base_ms;   /* first retry delay before jitter; 0 means 200 */
    unsigned backoff_max_ms;    /* ceiling; 0 means 10000 */
    unsigned max_queue;         /* waiting requests beyond which new ones fail with
                                   ERR_RATE_LIMITED; 0 means 100000 */
    struct http_client_tls tls; /* PEM files for PDS ("" or NULL: none); the names are
                                   borrowed and must outlive the client */
    struct metrics *metrics;    /* borrowed, outlives the client; NULL: none. The client
                                   declares and counts the pdstrace_pds_* families */
    struct redis_conn *redis;   /* borrowed, outlives the client; NULL: the local token
                                   bucket only. Holds the rate limit shared by instances */
    const char *key_prefix;     /* of the limiter's Redis key (redis.key_prefix); copied;
                                   NULL means "" */
};

struct pds_response {
    long http_status;          /* of the last attempt; 0 when none got an answer */
    unsigned attempts;         /* requests sent, the one repeated after a 401 and
                                  libcurl's own re-sends on a new connection included */
    struct fhir_result result; /* parsed body of the last attempt */
};

/* status: 0 with a parsed answer (search: any 200; retrieve: 200, or 404 with its
 * OperationOutcome in result); ERR_UPSTREAM_REJECTED when PDS refused our request (4xx
 * other than 401/408/429; result.error_code says why); ERR_UPSTREAM or
 * ERR_UPSTREAM_TIMEOUT when it stayed unavailable through every attempt; ERR_UPSTREAM_TLS
 * after one attempt when a certificate was refused (never retried); ERR_PARSE for an
 * unreadable 200; UV_ECANCELED (pds_client_free). res is borrowed; valid until cb returns,
 * and is given on every status but UV_ECANCELED. */
typedef void pds_cb(int status, const struct pds_response *res, void *arg);

/* cfg is copied. http and tokens (NULL when auth is none) are borrowed and must outlive
 * the client. Returns 0, ERR_CONFIG (no base_url, rate <= 0, concurrency or max_attempts
 * 0, an ods_code that is not printable ASCII, a key_prefix over 200 bytes), ERR_INVALID_INPUT
 * or UV_ENOMEM. */
int pds_client_new(struct pds_client **out, uv_loop_t *loop, struct http_client *http,
                   struct token_source *tokens, const struct pds_client_config *cfg);

/* Waiting and in-flight requests complete with UV_ECANCELED, inside this call. NULL is
 * fine, and so is calling it from a cb. Free the http client only after this. */
void pds_client_free(struct pds_client *pc);

/* Whether the caller of a request has gone (arg is the request's cb arg). */
typedef bool pds_gone_fn(void *arg);

/* What a caller says about one request; copied. */
struct pds_call {
    const char *correlation_id; /* the trace id, sent as X-Correlation-ID; NULL for none */
    uint64_t deadline_ns;       /* uv_hrtime() by which cb runs: a request still waiting
                                   then, or whose retry would fall after it, completes with
                                   ERR_UPSTREAM_TIMEOUT; 0 for none */
    pds_gone_fn *gone;          /* NULL, or asked before each send: once true, a waiting
                                   request completes with UV_ECANCELED unsent */
    enum pds_priority priority; /* 0: PDS_PRIORITY_TRACE */
};

/* GET {base}/Patient?{query}&_max-results=1. query is an already percent-encoded
 * parameter string without _max-results ("family=Smith&birthdate=eq2010-10-22"); it is
 * copied, and call may be NULL. Returns 0 and calls cb exactly once later, or returns <0
 * and never calls cb: ERR_INVALID_INPUT (query with spaces, controls or '#';
 * correlation_id over 128 printable characters; a priority that is none of
 * enum pds_priority), ERR_RATE_LIMITED (max_queue requests of the same priority are
 * waiting: bulk rows never take single traces' room), UV_ECANCELED (freeing). */
int pds_client_search(struct pds_client *pc, const char *query, const struct pds_call *call,
                      pds_cb *cb, void *arg);

/* GET {base}/Patient/{nhs_number} (exactly 10 digits, else ERR_INVALID_INPUT); as
 * pds_client_search. */
int pds_client_retrieve(struct pds_client *pc, const char *nhs_number, const struct pds_call *call,
                        pds_cb *cb, void *arg);

/* Requests sent to PDS since the client was made: every attempt (retries, the one repeated
 * after a 401 and libcurl's own re-sends included), answered or not. */
uint64_t pds_client_requests_sent(const struct pds_client *pc);

#endif
