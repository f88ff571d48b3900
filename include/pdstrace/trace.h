#ifndef PDS_TRACE_TRACE_H
#define PDS_TRACE_TRACE_H

#include <stdbool.h>

#include "pdstrace/cascade.h" /* struct cascade_options, embedded below */

/* One trace as a small state machine (DESIGN.md §1): cache lookup, verification of a held
 * NHS number, the search cascade, the decision, the cache store. See
 * docs/internals/trace.md. */
struct trace_service;
struct pds_client;
struct cache;
struct demographics;
struct trace_result;

struct trace_service_config {
    struct cascade_options cascade;
    unsigned deadline_ms;          /* one trace with PDS, every step and retry included; 0: 30 s */
    struct objections *objections; /* borrowed, outlives the service; NULL: none recorded */
};

/* status 0: r holds the result; a result carrying a number the person objected to comes
 * as outcome objection, the number withheld (the true result is still cached: objections
 * are checked again on every answer, from the cache or not). Otherwise the trace failed:
 * ERR_OBJECTIONS_UNAVAILABLE (it would give a number, and the objection registry is not
 * confirmed current), or ERR_UPSTREAM or ERR_UPSTREAM_TLS
 * (PDS unavailable after retries), ERR_UPSTREAM_TIMEOUT (also: the trace's deadline
 * passed), ERR_UPSTREAM_REJECTED (PDS refused our request, or gave an answer that is none
 * of the ones it gives; detail says what came back, e.g. "the search: OperationOutcome
 * not-supported"), ERR_RATE_LIMITED (the PDS queue is full), UV_ECANCELED (shutdown, or
 * the caller left). r and detail are borrowed; valid until cb returns; detail is "" when
 * there is none. */
typedef void trace_cb(int status, const struct trace_result *r, const char *detail, void *arg);

/* Whether the caller of a trace has gone (arg is the trace's cb arg). */
typedef bool trace_gone_fn(void *arg);

/* One trace request; copied by trace_run. */
struct trace_call {
    const char *trace_id; /* sent to PDS as X-Correlation-ID */
    trace_cb *cb;
    trace_gone_fn *gone; /* NULL, or asked before every PDS request: once true, the trace
                            stops with UV_ECANCELED rather than spend the PDS budget */
    void *arg;
    bool bulk;            /* a row of a bulk run: its PDS requests give way to single traces'
                             (PDS_PRIORITY_BULK); false: a single trace */
    unsigned deadline_ms; /* this trace's time with PDS; 0: the service's deadline_ms. Bulk
                             rows wait their turn behind single traces and other instances,
                             which no caller is waiting on, so they take longer */
};

/* pds and cache (NULL: no caching) are borrowed and must outlive the service. */
int trace_service_new(struct trace_service **out, struct pds_client *pds, struct cache *cache,
                      const struct trace_service_config *cfg);
/* Call after every trace has completed (after trace_service_shutdown and freeing what the
 * traces wait on). NULL is fine. */
void trace_service_free(struct trace_service *svc);

/* From now on a trace whose current step ends finishes with UV_ECANCELED instead of
 * starting the next one, so that the PDS client and Redis can be freed under it. */
void trace_service_shutdown(struct trace_service *svc);

/* Starts a trace of d (copied). Returns 0 and calls call->cb exactly once later, or returns
 * <0 and never calls it: ERR_OBJECTION when d's case_id is under objection (nothing is
 * sent to PDS, nothing cached; answer outcome objection), ERR_OBJECTIONS_UNAVAILABLE when
 * d has a case_id and the registry is not confirmed current. */
int trace_run(struct trace_service *svc, const struct demographics *d,
              const struct trace_call *call);

/* Traces in progress. */
unsigned trace_service_active(const struct trace_service *svc);

#endif
