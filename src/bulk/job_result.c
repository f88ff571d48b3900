/* A job's result read back in the input's format: the output header, then the rows in
 * file order, a batch per read, so that a large result streams out without ever being
 * whole in memory. Each row is stored as its answer and input (job_answer.c) and written
 * out here, after the objection check: an objection recorded since the row was traced
 * withholds its number, and a registry not confirmed current stops the result (DESIGN.md
 * §3, objections.max_staleness_ms). */
#include "pdstrace/bulk_job.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/objections.h"
#include "pdstrace/trace_result.h"
#include "job_int.h"

#define FIRST_BATCH  16u
#define MAX_BATCH    1024u
#define TARGET_BYTES (256u * 1024) /* a piece stops taking rows past this */
/* A piece is under TARGET_BYTES when its last row starts, and one row written out is at
 * most BULK_RECORD_WRITE_MAX (every byte of a 4 MiB row a U+FFFD or a doubled quote), so
 * this is never reached; the output header comes alone when it is that large. */
#define PIECE_MAX (TARGET_BYTES + BULK_RECORD_WRITE_MAX)

struct bulk_result {
    struct bulk_jobs *s;
    const struct objections *objections;
    char id[BULK_JOB_ID_SIZE];
    char owner[BJ_OWNER_MAX];
    struct bj_keys keys;
    struct bulk_layout layout;
    struct bulk_record_copy header;
    struct bj_stored row; /* the row being written out */
    bool had_bom, opened, header_out, ended, busy, freed;
    uint64_t rows_total, next; /* the next row to read, from 1 */
    unsigned batch;            /* rows asked for by the next read */
    struct buf piece;
    bulk_job_info_cb *open_cb;
    bulk_result_cb *cb;
    void *arg;
};

static void release(struct bulk_result *r)
{
    buf_free(&r->header.raw);
    buf_wipe(&r->row.input.raw);
    buf_wipe(&r->piece);
    free(r);
}

/* True when the reply may go on to the caller; false after bulk_result_free. */
static bool answered(struct bulk_result *r)
{
    r->busy = false;
    if (!r->freed)
        return true;
    release(r);
    return false;
}

/* ---- opening ---- */

static int opened(struct bulk_result *r, const struct bj_meta *m)
{
    if (strcmp(m->owner, r->owner) != 0)
        return ERR_NOT_FOUND;
    if (m->info.state != BULK_JOB_DONE)
        return 0;
    r->had_bom = m->had_bom;
    r->rows_total = m->info.rows_total;
    int err = bj_meta_header(r->s, r->id, m, &r->layout, &r->header);
    r->opened = err == 0;
    return err;
}

static void on_open(int status, struct redisReply *reply, void *arg)
{
    struct bulk_result *r = arg;
    struct bj_meta m;
    if (!answered(r))
        return;
    if (status == 0)
        status = reply->type == REDIS_REPLY_ERROR ? ERR_UNAVAILABLE : bj_meta_parse(reply, &m);
    status = status == 0 ? opened(r, &m) : status;
    if (status != 0 && status != ERR_NOT_FOUND && status != UV_ENOMEM)
        status = ERR_UNAVAILABLE;
    r->open_cb(status, status == 0 ? &m.info : NULL, r->arg);
}

int bulk_result_open(struct bulk_result **out, struct bulk_jobs *s, const char *job_id,
                     const char *owner, const struct objections *objections, bulk_job_info_cb *cb,
                     void *arg)
{
    if (objections == NULL)
        return ERR_INVALID_INPUT;
    if (!bj_id_valid(job_id) || owner == NULL || strlen(owner) >= BJ_OWNER_MAX)
        return ERR_NOT_FOUND;
    struct bulk_result *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return UV_ENOMEM;
    *r = (struct bulk_result){.s = s,
                              .objections = objections,
                              .open_cb = cb,
                              .arg = arg,
                              .next = 1,
                              .batch = FIRST_BATCH};
    snprintf(r->id, sizeof(r->id), "%s", job_id);
    snprintf(r->owner, sizeof(r->owner), "%s", owner);
    bj_keys_of(s, job_id, &r->keys);
    buf_init(&r->header.raw, BJ_RECORD_MAX);
    buf_init(&r->row.input.raw, BJ_RECORD_MAX);
    buf_init(&r->piece, PIECE_MAX);
    const char *argv[] = {"HGETALL", r->keys.meta};
    int err = bj_send(s, on_open, r, (int)ARRAY_SIZE(argv), argv, NULL);
    if (err) {
        release(r);
        return err;
    }
    r->busy = true;
    *out = r;
    return 0;
}

/* ---- reading ---- */

/* The next batch's size, from the last one's bytes per row. */
static void size_batch(struct bulk_result *r, unsigned rows, size_t bytes)
{
    if (rows == 0 || bytes == 0)
        return;
    uint64_t n = (uint64_t)TARGET_BYTES * rows / bytes;
    r->batch = n < 1 ? 1 : n > MAX_BATCH ? MAX_BATCH : (unsigned)n;
}

/* Only a row that gives a number is checked, as a trace is: its number withheld when the
 * case or the number is under objection. Returns 0 or ERR_OBJECTIONS_UNAVAILABLE. */
static int honour_objections(const struct bulk_result *r, struct bj_stored *st)
{
    struct bulk_answer *a = &st->answer;
    if (a->kind != BULK_ANSWER_TRACED || a->result.nhs_number[0] == '\0')
        return 0;
    int found = objections_check(r->objections, st->case_id, a->result.nhs_number);
    if (found < 0)
        return found;
    if (found > 0)
        trace_result_withhold(&a->result);
    return 0;
}

/* One stored row, opened, checked and written out after what the piece holds. */
static int append_row(struct bulk_result *r, uint64_t row, const redisReply *v)
{
    if (v->type != REDIS_REPLY_STRING)
        return ERR_NOT_FOUND; /* deleted or expired meanwhile */
    int err = bj_answer_open(r->s, r->id, row, v->str, v->len, &r->row);
    err = err ? err : honour_objections(r, &r->row);
    return err ? err : bulk_output_row(&r->layout, &r->row.input.view, &r->row.answer, &r->piece);
}

/* The rows of an HMGET reply after what the piece holds, until it holds TARGET_BYTES: the
 * rest are asked for again by the next read. */
static int append_rows(struct bulk_result *r, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY)
        return ERR_UNAVAILABLE;
    size_t start = buf_len(&r->piece), i = 0;
    for (; i < reply->elements && buf_len(&r->piece) < TARGET_BYTES; i++) {
        int err = append_row(r, r->next + i, reply->element[i]);
        if (err)
            return err;
    }
    size_batch(r, (unsigned)i, buf_len(&r->piece) - start);
    r->next += i;
    return 0;
}

static void on_rows(int status, struct redisReply *reply, void *arg)
{
    struct bulk_result *r = arg;
    if (!answered(r))
        return;
    if (status == 0 && reply->type == REDIS_REPLY_INTEGER)
        status = reply->integer == 1 ? 0 : ERR_NOT_FOUND; /* EXISTS, when no rows were asked */
    else if (status == 0)
        status = append_rows(r, reply);
    else
        status = ERR_UNAVAILABLE;
    if (status == 0 && buf_len(&r->piece) == 0)
        r->ended = true;
    r->cb(status, buf_cstr(&r->piece), status == 0 ? buf_len(&r->piece) : 0, r->arg);
}

/* HMGET of the next batch, or EXISTS of the job when no row is left (the end, or a result
 * of a header alone) or the output header fills the piece by itself: either way the
 * answer comes from Redis, never from inside the call. */
static int ask(struct bulk_result *r)
{
    const char *argv[3 + MAX_BATCH] = {"HMGET", r->keys.out};
    char numbers[MAX_BATCH][24];
    uint64_t left = r->rows_total - (r->next - 1);
    unsigned n = left < r->batch ? (unsigned)left : r->batch;
    if (buf_len(&r->piece) >= TARGET_BYTES)
        n = 0;
    for (unsigned i = 0; i < n; i++) {
        snprintf(numbers[i], sizeof(numbers[i]), "%llu", (unsigned long long)(r->next + i));
        argv[2 + i] = numbers[i];
    }
    if (n == 0) {
        argv[0] = "EXISTS";
        argv[1] = r->keys.meta;
    }
    return bj_send(r->s, on_rows, r, n == 0 ? 2 : (int)(2 + n), argv, NULL);
}

int bulk_result_read(struct bulk_result *r, bulk_result_cb *cb, void *arg)
{
    if (!r->opened || r->busy || r->ended)
        return ERR_INVALID_INPUT;
    /* Not a byte while the registry is stale; each row's own check comes with its reply. */
    if (!objections_current(r->objections))
        return ERR_OBJECTIONS_UNAVAILABLE;
    buf_reset(&r->piece);
    int err = 0;
    if (!r->header_out) {
        err = bulk_output_header(&r->layout, &r->header.view, r->id, r->rows_total, r->had_bom,
                                 &r->piece);
        r->header_out = err == 0;
    }
    err = err ? err : ask(r);
    if (err)
        return err;
    r->cb = cb;
    r->arg = arg;
    r->busy = true;
    return 0;
}

void bulk_result_free(struct bulk_result *r)
{
    if (r == NULL)
        return;
    r->freed = true;
    if (!r->busy)
        release(r);
}
