#ifndef PDS_MOCKCASE_CASE_SYSTEM_H
#define PDS_MOCKCASE_CASE_SYSTEM_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* The mock case-management system's HTTP side on a libuv loop (the project's http_server
 * and router): PUT /clients/{case_id}/nhs-number (the write-back of DESIGN.md §5), the
 * inspection route GET /clients/{case_id}, and the admin API (/_admin/faults, /_admin/stats,
 * /_admin/requests, /_admin/reset), served only when bound to a loopback address. Routes,
 * flags and the admin API are documented in mocks/case-system/README.md. */
struct mock_case;

#define MOCK_CASE_LOG_CAP      10000  /* requests kept in the log; older ones are dropped */
#define MOCK_CASE_MAX_DELAY    600000 /* latency_ms and refuse_ms ceiling (10 minutes) */
#define MOCK_CASE_MAX_REJECTED 1000   /* case ids that can be set to answer 422 */

/* Faults, set from flags and changed at run time through PUT /_admin/faults. The case ids
 * that answer 422 (reject_cases) and the one-shot refuse_ms live in the admin API only. */
struct mock_case_faults {
    unsigned latency_ms;   /* every write answer waits this long (a timer; the loop runs on) */
    unsigned fail_next;    /* the next N writes answer fail_status */
    double fail_rate;      /* share of writes answered fail_status, 0..1, from the seeded PRNG */
    int fail_status;       /* 503 by default; 408, 429 or 500..504 */
    bool drop_connections; /* every write's connection is reset unanswered, until cleared */
};

struct mock_case_config {
    const char *host;  /* copied; default 127.0.0.1 */
    int port;          /* 0 picks a free port */
    const char *token; /* the bearer token writes need, copied; NULL: any or none */
    uint64_t seed;     /* seeds the PRNG behind fail_rate */
    struct mock_case_faults faults;
};

/* Sets the defaults: 127.0.0.1, port 0, no token, seed 1, fail_status 503, no faults. */
void mock_case_config_init(struct mock_case_config *cfg);

/* Checks fault values against their ranges. Returns 0 or ERR_INVALID_INPUT, with the
 * offending field's name in *field (field may be NULL). */
int mock_case_faults_check(const struct mock_case_faults *f, const char **field);

/* Starts serving. cfg is copied. Returns 0, ERR_CONFIG (bad faults), UV_ENOMEM or a libuv
 * code from binding; on failure *out is NULL and the loop must still be run so that opened
 * handles close. */
int mock_case_new(struct mock_case **out, uv_loop_t *loop, const struct mock_case_config *cfg);

/* The bound port (kept while the listener is closed by refuse_ms). */
int mock_case_port(const struct mock_case *m);

typedef void mock_case_stopped_cb(void *arg);

/* Graceful stop: writes being handled are answered (delayed answers included) until
 * deadline_ms, then every handle is closed and cb runs once, later, never from inside this
 * call. Only the first call counts. Free the mock afterwards with mock_case_free. */
void mock_case_stop(struct mock_case *m, unsigned deadline_ms, mock_case_stopped_cb *cb, void *arg);

/* Closes everything at once (pending answers are dropped); the memory goes once the
 * handles have closed, so run the loop afterwards. NULL is fine. */
void mock_case_free(struct mock_case *m);

#endif
