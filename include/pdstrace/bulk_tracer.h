#ifndef PDS_TRACE_BULK_TRACER_H
#define PDS_TRACE_BULK_TRACER_H

#include <stdint.h>
#include <uv.h>

#include "pdstrace/bulk_format.h"  /* struct bulk_answer, embedded below */
#include "pdstrace/demographics.h" /* struct demographics, embedded below */
#include "pdstrace/list.h"

/* One bulk row through the trace service, the same for the CLI and for HTTP jobs: the
 * trace (verification first when the row holds a number, then the cascade: trace.c),
 * retries of transient failures, identical people traced once, the write-back, the audit
 * line and the row count by outcome. A row's answer is final: a failure is only given
 * after the retries, and never as "no match". See docs/internals/bulk.md. */
struct bulk_tracer;
struct metrics;
struct trace_service;
struct writeback_queue;
struct bulk_task;

struct bulk_tracer_config {
    struct trace_service *traces;       /* borrowed, outlives the tracer */
    struct writeback_queue *writebacks; /* borrowed; NULL: rows are never written back */
    struct metrics *metrics;            /* borrowed; NULL: none. pdstrace_bulk_rows_total */
    const char *caller;                 /* the audit line's "caller"; copied */
    unsigned max_attempts;              /* traces of one row before it fails; 0: 4 */
    unsigned retry_initial_ms;          /* first wait before a retry, doubling; 0: 1000 */
};

/* Called once per task: status 0 with task->answer final, or UV_ECANCELED when the tracer
 * stopped first (the row is not done). */
typedef void bulk_task_cb(int status, struct bulk_task *task, void *arg);

/* One row. The caller owns it, fills d, and must keep it alive until cb has run. */
struct bulk_task {
    struct demographics d;     /* d.write_back 1 asks for a write-back (with a case_id) */
    struct bulk_answer answer; /* when cb runs with 0; answer.why points into why */
    char why[192];
    /* The tracer's own from here on. */
    struct bulk_tracer *tracer;
    bulk_task_cb *cb;
    void *arg;
    int state;
    int status; /* what cb will be given, for a call back from the timer */
    unsigned attempts;
    uint64_t retry_at_ns;
    struct list_node link;      /* in the tracer's list of its state */
    struct list_node followers; /* tasks waiting for this one's trace */
    char trace_id[37];
    char *canonical; /* the person, as demographics_canonical writes it */
};

/* Returns 0 or UV_ENOMEM. */
int bulk_tracer_new(struct bulk_tracer **out, uv_loop_t *loop,
                    const struct bulk_tracer_config *cfg);

/* Call after bulk_tracer_stop and once every task has called back (the traces in flight
 * end when the trace service shuts down). Then run the loop to close its timer. NULL is
 * fine. */
void bulk_tracer_free(struct bulk_tracer *t);

/* Starts a task; cb runs exactly once, never from inside this call. A task whose
 * answer.kind is BULK_ANSWER_BAD on entry (the row could not be read: why holds the
 * reason) is only counted and called back. */
void bulk_tracer_start(struct bulk_tracer *t, struct bulk_task *task, bulk_task_cb *cb, void *arg);

/* Tasks waiting for a retry or for another task end with UV_ECANCELED; tasks tracing end
 * when their trace does (shut the trace service down to hurry them). New tasks end with
 * UV_ECANCELED. */
void bulk_tracer_stop(struct bulk_tracer *t);

/* Tasks started and not yet called back. */
unsigned bulk_tracer_active(const struct bulk_tracer *t);

#endif
