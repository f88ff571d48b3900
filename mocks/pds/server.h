#ifndef PDS_MOCKPDS_SERVER_H
#define PDS_MOCKPDS_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* The mock PDS's HTTP side on a libuv loop (the project's http_server and router): the
 * FHIR routes under /personal-demographics/FHIR/R4 over a population (search.h), the
 * signed-JWT token endpoint /oauth2/token, fault injection, and a request log. The admin
 * API (/_admin/faults, /_admin/requests) is served only when bound to a loopback address.
 * Routes, flags and the admin API are documented in mocks/pds/README.md. */
struct mock_pds;
struct population;

#define MOCK_PDS_BASE_PATH "/personal-demographics/FHIR/R4"
#define MOCK_PDS_LOG_CAP   100000 /* requests kept in the log; older ones are dropped */
#define MOCK_PDS_MAX_DELAY 600000 /* latency_ms ceiling (10 minutes) */

/* Faults, set from flags and changed at run time through PUT /_admin/faults. */
struct mock_pds_faults {
    unsigned latency_ms;         /* every FHIR answer waits this long */
    double fail_rate;            /* share of FHIR requests answered fail_status, 0..1 */
    int fail_status;             /* 429, 408 or 500..504 */
    unsigned retry_after;        /* Retry-After seconds on injected failures; 0: none */
    double reset_rate;           /* share of FHIR requests whose connection is reset */
    unsigned rate_limit_per_min; /* per application, over a rolling window; 0: off */
    unsigned rate_window_ms;     /* that window: 60000 as PDS; shorter in tests */
    unsigned fail_next;          /* the next N FHIR requests fail with fail_next_status */
    int fail_next_status;
    unsigned reset_next; /* the next N FHIR requests get a connection reset */
    unsigned hang_next;  /* the next N FHIR requests are never answered */
};

struct sandbox;

struct mock_pds_config {
    const char *host; /* copied */
    int port;         /* 0 picks a free port */
    /* Signed-JWT auth: a PEM public key path, or NULL for none (then FHIR routes need no
     * token and the token endpoint answers 400). */
    const char *jwt_public_key;
    const char *client_id; /* the one application the key belongs to */
    const char *token_url; /* an extra accepted aud besides http://<Host>/oauth2/token */
    unsigned token_ttl_s;  /* lifetime of issued tokens; expires_in */
    uint64_t fault_seed;   /* seeds the PRNG behind fail_rate and reset_rate */
    struct mock_pds_faults faults;
    /* Answer FHIR requests as NHS England's public sandbox does (sandbox.h), instead of
     * from the population; borrowed, must outlive the mock. NULL: the population. */
    const struct sandbox *sandbox;
};

/* Sets the defaults: 127.0.0.1, port 0, no auth, token TTL 599 s, fail statuses 503, no
 * faults, fault seed 1. */
void mock_pds_config_init(struct mock_pds_config *cfg);

/* Checks fault values against their ranges. Returns 0 or ERR_INVALID_INPUT, with the
 * offending field's name in *field. */
int mock_pds_faults_check(const struct mock_pds_faults *f, const char **field);

/* Starts serving. Takes ownership of pop (released on failure too). cfg is copied. Returns
 * 0, ERR_CONFIG (unreadable key, bad faults), or a libuv code from binding; on failure the
 * loop must still be run so that opened handles close. */
int mock_pds_new(struct mock_pds **out, uv_loop_t *loop, struct population *pop,
                 const struct mock_pds_config *cfg);

/* The bound port. */
int mock_pds_port(const struct mock_pds *m);

typedef void mock_pds_stopped_cb(void *arg);

/* Graceful stop: hung requests are dropped with a reset, the rest are answered (delayed
 * answers included), then every handle is closed and cb runs once, later, never from inside
 * this call. Only the first call counts. Free the mock afterwards with mock_pds_free. */
void mock_pds_stop(struct mock_pds *m, unsigned deadline_ms, mock_pds_stopped_cb *cb, void *arg);

/* Closes everything at once (pending answers are dropped). NULL is fine. Run the loop
 * afterwards so that handles close. */
void mock_pds_free(struct mock_pds *m);

#endif
