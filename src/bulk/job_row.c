/* One row of an HTTP job on this instance: fetched (the sealed input and the job's
 * layout), traced through the owner's bulk tracer, and settled with one script that
 * stores (its answer and input row, job_answer.c), counts and acknowledges it, or drops it
 * (its job gone, or done already), or fails its job (it cannot be read back). */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/trace_result.h"
#include "job_int.h"

#define FETCH_OK      1
#define FETCH_MISSING 3 /* 0: the job is gone or failed; 2: the row is done already */

static void on_settled(int status, struct redisReply *reply, void *arg)
{
    (void)status;
    (void)reply;
    /* A script that failed leaves the entry pending here: it is reclaimed later. */
    bj_worker_release(arg);
}

static void settle(struct bj_row *r, int argc, const char **argv, const size_t *lens)
{
    r->state = BJ_ROW_SETTLING;
    if (bj_send(r->w->s, on_settled, r, argc, argv, lens) != 0)
        bj_worker_release(r);
}

static void drop(struct bj_row *r)
{
    const char *argv[] = {"EVAL", bj_script_drop, "1", r->w->s->stream, BJ_GROUP, r->entry};
    settle(r, (int)ARRAY_SIZE(argv), argv, NULL);
}

/* The job cannot go on: its state says failed, with reason (no data in it). */
static void fail(struct bj_row *r, const char *reason)
{
    struct bj_keys k;
    char now[24];
    log_msgf(LOG_LEVEL_WARN, NULL, "bulk job %s failed at row %llu: %s", r->job,
             (unsigned long long)r->row, reason);
    bj_keys_of(r->w->s, r->job, &k);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)bj_now_ms());
    const char *argv[] = {"EVAL", bj_script_fail,    "4",      k.meta,   k.in,
                          k.out,  r->w->s->stream,   BJ_GROUP, r->entry, reason,
                          now,    r->w->s->retention};
    settle(r, (int)ARRAY_SIZE(argv), argv, NULL);
}

static const char *outcome_of(const struct bulk_answer *a)
{
    if (a->kind == BULK_ANSWER_BAD)
        return "invalid";
    return a->kind == BULK_ANSWER_FAILED ? "error" : trace_outcome_name(a->result.outcome);
}

/* The finish script: stored and counted unless another instance was first. */
static void finish(struct bj_row *r, const struct buf *sealed)
{
    struct bulk_jobs *s = r->w->s;
    struct bj_keys k;
    char row[24], now[24];
    bj_keys_of(s, r->job, &k);
    snprintf(row, sizeof(row), "%llu", (unsigned long long)r->row);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)bj_now_ms());
    const char *argv[] = {"EVAL",
                          bj_script_finish,
                          "4",
                          k.meta,
                          k.in,
                          k.out,
                          s->stream,
                          BJ_GROUP,
                          r->entry,
                          row,
                          buf_cstr(sealed),
                          outcome_of(&r->task.answer),
                          now,
                          s->retention};
    size_t lens[ARRAY_SIZE(argv)];
    for (size_t i = 0; i < ARRAY_SIZE(argv); i++)
        lens[i] = i == 10 ? buf_len(sealed) : strlen(argv[i]);
    settle(r, (int)ARRAY_SIZE(argv), argv, lens);
}

/* What is stored is the answer with the input row, not the output row: the output row is
 * written at download, after the objection check (job_answer.c), and whatever its size
 * it never fails the job here. */
static void store(struct bj_row *r)
{
    struct buf sealed;
    buf_init(&sealed, BJ_STORED_MAX + 1024);
    int err = bj_answer_seal(r->w->s, r->job, r->row, &r->task.answer, r->task.d.case_id,
                             &r->record.view, &sealed);
    if (err == 0)
        finish(r, &sealed);
    else if (err == UV_ENOMEM)
        bj_worker_release(r); /* left pending for a reclaim */
    else
        fail(r, "a row's result could not be written");
    buf_wipe(&sealed);
}

static void on_task(int status, struct bulk_task *task, void *arg)
{
    struct bj_row *r = arg;
    (void)task;
    /* Cancelled (the worker stops): not done, so left pending for a reclaim. */
    if (status != 0 || r->w->s->closed) {
        bj_worker_release(r);
        return;
    }
    store(r);
}

static void today_utc(char out[11])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

/* The job's layout and the row, opened; then the row as a trace request. */
static int open_row(struct bj_row *r, const struct bj_meta *m, const redisReply *data)
{
    struct bulk_record_copy header;
    buf_init(&header.raw, BJ_RECORD_MAX);
    int err = bj_meta_header(r->w->s, r->job, m, &r->layout, &header);
    buf_free(&header.raw);
    err =
        err ? err : bj_open_record(r->w->s, "in", r->job, r->row, data->str, data->len, &r->record);
    if (err)
        return err;
    char today[11];
    struct bulk_task *t = &r->task;
    today_utc(today);
    r->record.view.number = r->row + 1;
    if (bulk_row_read(&r->layout, &r->record.view, today, &t->d, t->why, sizeof(t->why)) != 0)
        t->answer = (struct bulk_answer){.kind = BULK_ANSWER_BAD, .why = t->why};
    t->d.write_back = 0; /* HTTP jobs answer numbers; they queue no write-back */
    return 0;
}

/* reply: {1, sealed input, the job's meta as HGETALL}. */
static void begin(struct bj_row *r, const redisReply *reply)
{
    struct bj_meta m;
    const redisReply *data = reply->elements == 3 ? reply->element[1] : NULL;
    int err = data != NULL && data->type == REDIS_REPLY_STRING
                  ? bj_meta_parse(reply->element[2], &m)
                  : ERR_PARSE;
    err = err ? err : open_row(r, &m, data);
    if (err == UV_ENOMEM) {
        bj_worker_release(r);
        return;
    }
    if (err) {
        fail(r, "a row could not be opened: was the secret file changed?");
        return;
    }
    struct bulk_tracer *tracer = bj_worker_tracer(r->w, m.owner);
    if (tracer == NULL) {
        bj_worker_release(r);
        return;
    }
    r->state = BJ_ROW_TRACING;
    bulk_tracer_start(tracer, &r->task, on_task, r);
}

static void on_fetched(int status, struct redisReply *reply, void *arg)
{
    struct bj_row *r = arg;
    bool ok = status == 0 && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
              reply->element[0]->type == REDIS_REPLY_INTEGER;
    /* Redis away, or the worker stopping: the entry stays pending for a reclaim. */
    if (!ok || r->w->closing) {
        bj_worker_release(r);
        return;
    }
    long long what = reply->element[0]->integer;
    if (what == FETCH_OK)
        begin(r, reply);
    else if (what == FETCH_MISSING)
        fail(r, "a row's input is missing from Redis");
    else
        drop(r);
}

void bj_row_start(struct bj_row *r)
{
    struct bj_keys k;
    char row[24];
    bj_keys_of(r->w->s, r->job, &k);
    snprintf(row, sizeof(row), "%llu", (unsigned long long)r->row);
    const char *argv[] = {"EVAL", bj_script_fetch, "3", k.meta, k.in, k.out, row};
    r->state = BJ_ROW_FETCHING;
    if (bj_send(r->w->s, on_fetched, r, (int)ARRAY_SIZE(argv), argv, NULL) != 0)
        bj_worker_release(r);
}
