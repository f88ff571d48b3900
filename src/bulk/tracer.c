#include "pdstrace/bulk_tracer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "pdstrace/buf.h"
#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/trace.h"
#include "pdstrace/trace_result.h"
#include "pdstrace/writeback.h"

#define NS_PER_MS        1000000ull
#define RETRY_MAX_MS     60000u
#define DEFAULT_ATTEMPTS 4u
#define DEFAULT_RETRY_MS 1000u
/* A row's time with PDS: mostly waiting for its turn at the shared rate, behind single
 * traces and other instances; each request still has its own timeout (pds.timeout_ms). */
#define ROW_DEADLINE_MS (60u * 60u * 1000u)

enum task_state {
    TASK_NEW,
    TASK_WAITING,   /* behind a leader tracing the same person */
    TASK_TRACING,   /* a trace in flight: a leader */
    TASK_RETRY,     /* waiting to trace again: still a leader */
    TASK_ANSWERING, /* has its answer; its followers are being let go */
    TASK_QUEUEING,  /* the write-back being queued */
    TASK_READY,     /* to be called back from the timer */
};

struct bulk_tracer {
    struct bulk_tracer_config cfg;
    char caller[64];
    uv_timer_t timer;
    struct list_node leaders; /* TRACING and RETRY tasks */
    struct list_node ready;   /* READY tasks */
    struct list_node others;  /* QUEUEING tasks */
    unsigned active;
    bool stopped;
};

static const struct metrics_family families[] = {
    {"pdstrace_bulk_rows_total", METRICS_COUNTER,
     "bulk rows answered, by outcome (invalid: the row could not be read; error: the trace "
     "failed after its retries)"},
};

static void begin(struct bulk_task *task, bool now);
static void release_followers(struct bulk_task *leader);
static void on_timer(uv_timer_t *timer);

static uint64_t now_unix_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

static const char *answer_outcome(const struct bulk_answer *a)
{
    if (a->kind == BULK_ANSWER_BAD)
        return "invalid";
    return a->kind == BULK_ANSWER_FAILED ? "error" : trace_outcome_name(a->result.outcome);
}

/* The audit line of a traced row (DESIGN.md §8: no demographics) and its count. */
static void record(const struct bulk_task *task, const char *write_back)
{
    struct bulk_tracer *t = task->tracer;
    const char *outcome = answer_outcome(&task->answer);
    char labels[64];
    snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome);
    metrics_inc(t->cfg.metrics, "pdstrace_bulk_rows_total", labels, 1);
    if (task->answer.kind == BULK_ANSWER_BAD)
        return;
    const struct trace_result *r = &task->answer.result;
    const struct log_field f[] = {
        {"event", "trace", 0},
        {"caller", t->caller, 0},
        {"purpose", "bulk", 0},
        {"case_id", task->d.case_id, 0},
        {"outcome", outcome, 0},
        {"steps", NULL, task->answer.kind == BULK_ANSWER_TRACED ? r->steps : 0},
        {"source", r->source == TRACE_SOURCE_CACHE ? "cache" : "pds", 0},
        {"write_back", write_back, 0},
        {"trace_id", task->trace_id, 0},
    };
    log_fields(LOG_LEVEL_INFO, NULL, "audit", f, ARRAY_SIZE(f));
}

static void finish(struct bulk_task *task, int status)
{
    struct bulk_tracer *t = task->tracer;
    list_remove(&task->link);
    release_followers(task); /* none by now; never left behind if there were */
    t->active--;
    free(task->canonical);
    task->canonical = NULL;
    task->cb(status, task, task->arg);
}

/* Calls back from the timer, so that no callback runs inside bulk_tracer_start. */
static void defer(struct bulk_task *task, int status)
{
    struct bulk_tracer *t = task->tracer;
    list_remove(&task->link);
    task->state = TASK_READY;
    task->status = status;
    list_push_tail(&t->ready, &task->link);
    uv_timer_start(&t->timer, on_timer, 0, 0);
}

/* A leader that has its answer stops being one before anything is called back, so that a
 * row started from a callback cannot queue behind it and be left there. */
static void step_down(struct bulk_task *task)
{
    list_remove(&task->link);
    list_push_tail(&task->tracer->others, &task->link);
    task->state = TASK_ANSWERING;
}

static void answered(struct bulk_task *task, const char *write_back)
{
    record(task, write_back);
    finish(task, 0);
}

/* The followers of a leader that has its answer: each traces on its own now, which the
 * cache answers (the leader's result was stored before its callback), and each gets its
 * own objection check and write-back. */
static void release_followers(struct bulk_task *leader)
{
    struct list_node *pos, *next;
    LIST_FOREACH_SAFE(pos, next, &leader->followers)
    {
        struct bulk_task *f = LIST_ENTRY(pos, struct bulk_task, link);
        list_remove(&f->link);
        begin(f, true);
    }
}

/* The followers of a leader that failed get its answer: the same person, the same PDS. */
static void fail_followers(struct bulk_task *leader, int status)
{
    struct list_node *pos, *next;
    LIST_FOREACH_SAFE(pos, next, &leader->followers)
    {
        struct bulk_task *f = LIST_ENTRY(pos, struct bulk_task, link);
        if (status) {
            finish(f, status);
            continue;
        }
        f->answer = leader->answer;
        memcpy(f->why, leader->why, sizeof(f->why));
        f->answer.why = f->why;
        crypto_uuid4(f->trace_id);
        answered(f, "not_requested");
    }
}

static void on_enqueued(int status, void *arg)
{
    struct bulk_task *task = arg;
    if (status == UV_ECANCELED) {
        finish(task, UV_ECANCELED); /* not done: a resumed run queues it again */
        return;
    }
    if (status) {
        snprintf(task->why, sizeof(task->why), "write_back: could not be queued (%s)",
                 err_str(status));
        task->answer.why = task->why;
    }
    answered(task, status ? "failed" : "queued");
}

/* Queues the write-back the answer calls for, then answers. */
static void write_back(struct bulk_task *task)
{
    struct bulk_tracer *t = task->tracer;
    const struct trace_result *r = &task->answer.result;
    enum trace_write_back plan = trace_write_back_plan(&task->d, r);
    if (plan != TRACE_WB_QUEUED || t->cfg.writebacks == NULL) {
        answered(task, trace_write_back_name(plan == TRACE_WB_QUEUED ? TRACE_WB_FAILED : plan));
        return;
    }
    struct writeback_item item = {.score = r->score, .traced_at_ms = now_unix_ms()};
    memcpy(item.trace_id, task->trace_id, sizeof(item.trace_id));
    memcpy(item.case_id, task->d.case_id, sizeof(item.case_id));
    memcpy(item.nhs_number, r->nhs_number, sizeof(item.nhs_number));
    task->state = TASK_QUEUEING;
    int e = writeback_enqueue(t->cfg.writebacks, &item, on_enqueued, task);
    if (e)
        on_enqueued(e, task);
}

static bool transient(int status)
{
    return status == ERR_UPSTREAM || status == ERR_UPSTREAM_TIMEOUT || status == ERR_RATE_LIMITED ||
           status == ERR_OBJECTIONS_UNAVAILABLE || status == ERR_UNAVAILABLE || status == UV_ENOMEM;
}

static void schedule_retry(struct bulk_task *task)
{
    struct bulk_tracer *t = task->tracer;
    unsigned shift = task->attempts - 1 < 6 ? task->attempts - 1 : 6;
    uint64_t ms = (uint64_t)t->cfg.retry_initial_ms << shift;
    task->retry_at_ns = uv_hrtime() + (ms < RETRY_MAX_MS ? ms : RETRY_MAX_MS) * NS_PER_MS;
    task->state = TASK_RETRY;
    if (!uv_is_active((uv_handle_t *)&t->timer) || uv_timer_get_due_in(&t->timer) > ms)
        uv_timer_start(&t->timer, on_timer, ms, 0);
}

/* A trace that did not answer: try again later, or give the failure as the row's answer
 * (the row says why; it is never read as "no match"). now: false inside
 * bulk_tracer_start, where the answer must wait for the timer. */
static void failed(struct bulk_task *task, int status, const char *detail, bool now)
{
    if (task->tracer->stopped) {
        step_down(task);
        fail_followers(task, UV_ECANCELED);
        defer(task, UV_ECANCELED); /* not answered: a resumed run traces it again */
        return;
    }
    if (transient(status) && task->attempts < task->tracer->cfg.max_attempts) {
        schedule_retry(task);
        return;
    }
    step_down(task);
    task->answer = (struct bulk_answer){.kind = BULK_ANSWER_FAILED, .why = task->why};
    snprintf(task->why, sizeof(task->why), "%s: %s", err_api_code(status),
             detail != NULL && detail[0] ? detail : err_str(status));
    fail_followers(task, 0);
    if (now) {
        answered(task, "not_requested");
        return;
    }
    record(task, "not_requested");
    defer(task, 0);
}

static void on_traced(int status, const struct trace_result *r, const char *detail, void *arg)
{
    struct bulk_task *task = arg;
    if (status == UV_ECANCELED) {
        step_down(task);
        fail_followers(task, UV_ECANCELED);
        finish(task, UV_ECANCELED);
        return;
    }
    if (status) {
        failed(task, status, detail, true);
        return;
    }
    task->answer = (struct bulk_answer){.kind = BULK_ANSWER_TRACED, .result = *r};
    step_down(task);
    release_followers(task);
    write_back(task);
}

/* A case under objection: answered at once, nothing sent to PDS. */
static void objection(struct bulk_task *task)
{
    task->answer = (struct bulk_answer){.kind = BULK_ANSWER_TRACED};
    trace_result_withhold(&task->answer.result);
    task->answer.result.steps = 0;
    step_down(task);
    release_followers(task);
    record(task, "withheld");
    defer(task, 0);
}

/* now: as for failed(). */
static void begin(struct bulk_task *task, bool now)
{
    struct bulk_tracer *t = task->tracer;
    task->attempts++;
    crypto_uuid4(task->trace_id);
    list_remove(&task->link);
    list_push_tail(&t->leaders, &task->link);
    task->state = TASK_TRACING;
    /* bulk: single traces go first, in this process and in every other on the same Redis. */
    const struct trace_call call = {
        .trace_id = task->trace_id,
        .cb = on_traced,
        .arg = task,
        .bulk = true,
        .deadline_ms = ROW_DEADLINE_MS,
    };
    int e = trace_run(t->cfg.traces, &task->d, &call);
    if (e == ERR_OBJECTION)
        objection(task);
    else if (e)
        failed(task, e, NULL, now);
}

static struct bulk_task *find_leader(struct bulk_tracer *t, const char *canonical)
{
    struct list_node *pos, *next;
    LIST_FOREACH_SAFE(pos, next, &t->leaders)
    {
        struct bulk_task *l = LIST_ENTRY(pos, struct bulk_task, link);
        if (l->canonical != NULL && strcmp(l->canonical, canonical) == 0)
            return l;
    }
    return NULL;
}

/* The person, for spotting the same one twice in flight; NULL when it cannot be made. */
static char *canonical_of(const struct demographics *d)
{
    struct buf b;
    buf_init(&b, sizeof(*d)); /* the canonical form is shorter than the struct */
    char *copy = demographics_canonical(d, &b) == 0 ? strdup(buf_cstr(&b)) : NULL;
    buf_free(&b);
    return copy;
}

void bulk_tracer_start(struct bulk_tracer *t, struct bulk_task *task, bulk_task_cb *cb, void *arg)
{
    task->tracer = t;
    task->cb = cb;
    task->arg = arg;
    task->attempts = 0;
    task->canonical = NULL;
    task->trace_id[0] = '\0';
    list_init(&task->link);
    list_init(&task->followers);
    t->active++;
    if (t->stopped || task->answer.kind == BULK_ANSWER_BAD) {
        if (!t->stopped)
            record(task, "not_requested");
        defer(task, t->stopped ? UV_ECANCELED : 0);
        return;
    }
    task->answer = (struct bulk_answer){.kind = BULK_ANSWER_TRACED};
    task->canonical = canonical_of(&task->d);
    struct bulk_task *leader = task->canonical ? find_leader(t, task->canonical) : NULL;
    if (leader != NULL) {
        task->state = TASK_WAITING;
        list_push_tail(&leader->followers, &task->link);
        return;
    }
    begin(task, false);
}

/* Calls back the tasks that were ready on entry (not those made ready by the callbacks:
 * they wait for the next turn of the loop), then starts the retries that are due. */
static void on_timer(uv_timer_t *timer)
{
    struct bulk_tracer *t = timer->data;
    struct list_node ready, *pos, *next;
    list_init(&ready);
    list_splice_tail(&ready, &t->ready);
    while (!list_is_empty(&ready)) {
        struct bulk_task *task = LIST_ENTRY(list_first(&ready), struct bulk_task, link);
        finish(task, task->status);
    }
    uint64_t now = uv_hrtime(), soonest = UINT64_MAX;
    LIST_FOREACH_SAFE(pos, next, &t->leaders)
    {
        struct bulk_task *task = LIST_ENTRY(pos, struct bulk_task, link);
        if (task->state == TASK_RETRY && task->retry_at_ns <= now)
            begin(task, true);
        else if (task->state == TASK_RETRY && task->retry_at_ns < soonest)
            soonest = task->retry_at_ns;
    }
    if (!list_is_empty(&t->ready))
        uv_timer_start(timer, on_timer, 0, 0);
    else if (soonest != UINT64_MAX)
        uv_timer_start(timer, on_timer, (soonest - now + NS_PER_MS - 1) / NS_PER_MS, 0);
}

int bulk_tracer_new(struct bulk_tracer **out, uv_loop_t *loop, const struct bulk_tracer_config *cfg)
{
    struct bulk_tracer *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return UV_ENOMEM;
    t->cfg = *cfg;
    if (t->cfg.max_attempts == 0)
        t->cfg.max_attempts = DEFAULT_ATTEMPTS;
    if (t->cfg.retry_initial_ms == 0)
        t->cfg.retry_initial_ms = DEFAULT_RETRY_MS;
    snprintf(t->caller, sizeof(t->caller), "%s", cfg->caller != NULL ? cfg->caller : "");
    t->cfg.caller = t->caller;
    list_init(&t->leaders);
    list_init(&t->ready);
    list_init(&t->others);
    uv_timer_init(loop, &t->timer);
    t->timer.data = t;
    *out = t;
    return metrics_declare(cfg->metrics, families, ARRAY_SIZE(families));
}

static void on_close(uv_handle_t *h)
{
    free(h->data);
}

void bulk_tracer_free(struct bulk_tracer *t)
{
    if (t != NULL)
        uv_close((uv_handle_t *)&t->timer, on_close);
}

/* Ends the followers of every leader, and the leaders waiting for a retry. */
void bulk_tracer_stop(struct bulk_tracer *t)
{
    struct list_node *pos, *next, *fpos, *fnext;
    t->stopped = true;
    LIST_FOREACH_SAFE(pos, next, &t->leaders)
    {
        struct bulk_task *l = LIST_ENTRY(pos, struct bulk_task, link);
        LIST_FOREACH_SAFE(fpos, fnext, &l->followers)
        defer(LIST_ENTRY(fpos, struct bulk_task, link), UV_ECANCELED);
        if (l->state == TASK_RETRY)
            defer(l, UV_ECANCELED);
    }
}

unsigned bulk_tracer_active(const struct bulk_tracer *t)
{
    return t->active;
}
