#ifndef PDS_MOCKCASE_CASE_SERVER_INT_H
#define PDS_MOCKCASE_CASE_SERVER_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "case_system.h"
#include "mock_http.h"
#include "mock_later.h"
#include "mock_reqlog.h"

/* Shared by the files of the mock's HTTP side only (case_system.h is what callers see):
 *   case_server.c  life cycle, closing the listener for a while (refuse_ms);
 *   case_write.c   PUT /clients/{case_id}/nhs-number and GET /clients/{case_id};
 *   case_admin.c   /_admin/faults, /_admin/stats and /_admin/reset;
 *   case_reqlog.c  the request log's entries.
 * What the mock PDS does alike (held-back answers, the fault PRNG, the request log's ring
 * and /_admin/requests, the graceful stop) is in mocks/common. */

struct case_store;
struct http_exchange;
struct http_server;
struct router;
struct case_log_entry;

#define CASE_JSON "application/json"

/* Counters shown by GET /_admin/stats. */
struct case_stats {
    uint64_t requests;   /* write requests received */
    uint64_t deliveries; /* first writes under a key: a number was recorded */
    uint64_t duplicates; /* repeats of a key already applied: nothing written */
    uint64_t rejected;   /* 4xx the mock answered on its own judgement (auth, validation) */
    uint64_t failed;     /* injected failures: fail_next, fail_rate, reject_cases, drops */
};

struct mock_case {
    uv_loop_t *loop;
    struct http_server *server;   /* NULL while the listener is closed (refuse_ms) */
    struct http_server *draining; /* the server closed by refuse_ms, finishing its answers */
    struct router *router;
    char *host, *token;
    int port;
    uint64_t seed, prng;
    struct mock_case_faults faults;
    json_t *reject_cases; /* case_id -> true: these answer 422 */
    struct case_store *store;
    struct case_stats stats;
    struct mock_reqlog log;    /* the last MOCK_CASE_LOG_CAP write requests */
    struct mock_later delayed; /* answers held back by latency_ms */
    uv_timer_t reopen;         /* ends refuse_ms; also completes a stop while refusing */
    bool reopen_init;
    struct mock_stop stop;
};

/* ---- case_server.c ---- */

/* The error body of DESIGN.md §3 as text (free it); NULL when out of memory. */
char *case_server_error_text(const char *code, const char *field, const char *message);

/* Answers x with body (application/json; takes ownership; NULL answers 500) after
 * latency_ms, unless the mock is stopping. */
void case_server_answer_later(struct mock_case *m, struct http_exchange *x, int status, char *body);

/* Answers x at once with body as compact JSON, reals to 6 digits (mock_respond_json). Takes
 * ownership of body; NULL (a failed json_pack) answers 500. */
void case_server_respond_json(struct http_exchange *x, int status, json_t *body);

/* Closes the listener, so that connecting is refused, and opens it again on the same port
 * ms later; answers already under way (this one included) still go out. Ignored while
 * stopping or already refusing. */
void case_server_refuse(struct mock_case *m, unsigned ms);

/* Faults off, the PRNG back at its seed, every client, key, counter and log entry gone. */
void case_server_reset(struct mock_case *m);

/* ---- case_write.c ---- */

/* Adds PUT /clients/{case_id}/nhs-number, and with admin GET /clients/{case_id}. Returns
 * 0 or a router error. */
int case_write_add_routes(struct mock_case *m, bool admin);

/* ---- case_admin.c ---- */

/* Adds /_admin/faults (GET, PUT, DELETE), GET /_admin/stats and POST /_admin/reset.
 * Returns 0 or a router error. */
int case_admin_add_routes(struct mock_case *m);

/* Every fault off (fail_status back to 503) and no case answering 422. */
void case_admin_faults_off(struct mock_case *m);

/* ---- case_reqlog.c ---- */

/* mock_reqlog_init with the write requests' entries. Returns 0 or UV_ENOMEM;
 * mock_reqlog_close releases it (also after a failed init). */
int case_reqlog_init(struct mock_reqlog *log);

/* Records x's method, path and Idempotency-Key; the entry (owned by the log, valid until
 * the handler returns) is NULL when out of memory. */
struct case_log_entry *case_reqlog_record(struct mock_reqlog *log, struct http_exchange *x);

/* Records how the request was answered (status 0: reset; outcome and fault static, fault
 * may be NULL). e may be NULL. */
void case_reqlog_answered(struct case_log_entry *e, int status, const char *outcome,
                          const char *fault);

#endif
