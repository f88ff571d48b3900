/* A job's result read back in the input's format: the output header, then the sealed
 * output rows in file order, a batch per read, so that a large result streams out without
 * ever being whole in memory. */
#include "pdstrace/bulk_job.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "job_int.h"

#define FIRST_BATCH  16u
#define MAX_BATCH    1024u
#define TARGET_BYTES (256u * 1024) /* a piece's size the batches aim at */
#define PIECE_MAX    (256u * 1024 * 1024)

struct bulk_result {
    struct bulk_jobs *s;
    char id[BULK_JOB_ID_SIZE];
    char owner[BJ_OWNER_MAX];
    struct bj_keys keys;
    struct bulk_layout layout;
    struct bulk_record_copy header;
    bool had_bom, opened, header_out, ended, busy, freed;
    uint64_t rows_total, next; /* the next row to read, from 1 */
    unsigned batch;            /* rows asked for by the last read */
    struct buf piece;
    bulk_job_info_cb *open_cb;
    bulk_result_cb *cb;
    void *arg;
};

static void release(struct bulk_result *r)
{
    buf_free(&r->header.raw);
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
                     const char *owner, bulk_job_info_cb *cb, void *arg)
{
    if (!bj_id_valid(job_id) || owner == NULL || strlen(owner) >= BJ_OWNER_MAX)
        return ERR_NOT_FOUND;
    struct bulk_result *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return UV_ENOMEM;
    *r = (struct bulk_result){.s = s, .open_cb = cb, .arg = arg, .next = 1, .batch = FIRST_BATCH};
    snprintf(r->id, sizeof(r->id), "%s", job_id);
    snprintf(r->owner, sizeof(r->owner), "%s", owner);
    bj_keys_of(s, job_id, &r->keys);
    buf_init(&r->header.raw, BJ_RECORD_MAX);
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

/* The rows of an HMGET reply, opened, after what the piece holds. */
static int append_rows(struct bulk_result *r, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY)
        return ERR_UNAVAILABLE;
    size_t start = buf_len(&r->piece);
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *v = reply->element[i];
        if (v->type != REDIS_REPLY_STRING)
            return ERR_NOT_FOUND; /* deleted or expired meanwhile */
        int err = bj_open(r->s, "out", r->id, r->next + i, v->str, v->len, &r->piece);
        if (err)
            return err;
    }
    size_batch(r, (unsigned)reply->elements, buf_len(&r->piece) - start);
    r->next += reply->elements;
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
 * of a header alone): either way the answer comes from Redis, never from inside the call. */
static int ask(struct bulk_result *r)
{
    const char *argv[3 + MAX_BATCH] = {"HMGET", r->keys.out};
    char numbers[MAX_BATCH][24];
    uint64_t left = r->rows_total - (r->next - 1);
    unsigned n = left < r->batch ? (unsigned)left : r->batch;
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
