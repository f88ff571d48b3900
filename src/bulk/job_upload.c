/* An upload: the CSV file of POST /v1/bulk as it arrives, into Redis. The header creates
 * the job; rows are sealed, numbered and sent in batches, each batch one script that
 * stores the rows and adds them to the stream. Only a few batches are in flight at once,
 * so memory stays bounded whatever the file's size: the caller pauses the body meanwhile. */
#include "pdstrace/bulk_job.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/bulk_csv.h"
#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "job_int.h"

#define BATCH_ROWS    256
#define BATCH_BYTES   (256u * 1024)       /* sealed bytes that close a batch */
#define BATCH_MAX     (16u * 1024 * 1024) /* a batch and one row of the largest kind */
#define MAX_IN_FLIGHT 4u
#define BATCH_FIXED   9 /* EVAL, script, numkeys, 4 keys, id, ttl */

struct bulk_upload {
    struct bulk_jobs *s;
    struct bulk_upload_config cfg;
    char owner[BJ_OWNER_MAX];
    char id[BULK_JOB_ID_SIZE];
    struct bj_keys keys;
    struct bulk_csv_reader *reader;
    struct bulk_layout layout;
    uint64_t rows;    /* data rows read */
    struct buf batch; /* the sealed rows gathered, one after another */
    size_t lens[BATCH_ROWS];
    unsigned batch_n;
    uint64_t batch_first; /* the first one's row number */
    unsigned in_flight;   /* commands sent and not answered */
    int err;              /* sticky: the first failure */
    bool created, want_room, finishing, freed;
    char why[200];
};

static void release(struct bulk_upload *u)
{
    bulk_csv_reader_free(u->reader);
    buf_wipe(&u->batch);
    free(u);
}

/* What a reply means to the caller; the callbacks come last, since they may free u. */
static void notify(struct bulk_upload *u)
{
    if (u->finishing) {
        if (u->in_flight == 0) {
            u->finishing = false;
            u->cfg.on_done(u->err, u->cfg.arg);
        }
        return;
    }
    if (u->want_room && (u->err != 0 || u->in_flight < MAX_IN_FLIGHT)) {
        u->want_room = false;
        u->cfg.on_room(u->err, u->cfg.arg);
    }
}

/* Every script of the upload answers 1 when it did its work. */
static void on_written(int status, struct redisReply *reply, void *arg)
{
    struct bulk_upload *u = arg;
    u->in_flight--;
    if (status == 0 && reply->type == REDIS_REPLY_INTEGER && reply->integer == -1)
        status = ERR_INTERNAL;
    else if (status != 0 || reply->type != REDIS_REPLY_INTEGER || reply->integer != 1)
        status = ERR_UNAVAILABLE;
    if (status != 0 && u->err == 0)
        u->err = status;
    if (u->freed) {
        if (u->in_flight == 0)
            release(u);
        return;
    }
    notify(u);
}

static int send_cmd(struct bulk_upload *u, int argc, const char **argv, const size_t *lens)
{
    int err = bj_send(u->s, on_written, u, argc, argv, lens);
    if (!err)
        u->in_flight++;
    return err;
}

static int send_batch(struct bulk_upload *u)
{
    const char *argv[BATCH_FIXED + 2 * BATCH_ROWS] = {
        "EVAL",      bj_script_append, "4",   u->keys.meta,   u->keys.in,
        u->keys.out, u->s->stream,     u->id, u->s->retention};
    size_t lens[BATCH_FIXED + 2 * BATCH_ROWS];
    char numbers[BATCH_ROWS][24];
    const char *p = buf_cstr(&u->batch);
    for (int i = 0; i < BATCH_FIXED; i++)
        lens[i] = strlen(argv[i]);
    for (unsigned i = 0; i < u->batch_n; i++) {
        size_t at = BATCH_FIXED + 2 * i;
        lens[at] = (size_t)snprintf(numbers[i], sizeof(numbers[i]), "%llu",
                                    (unsigned long long)(u->batch_first + i));
        argv[at] = numbers[i];
        argv[at + 1] = p;
        lens[at + 1] = u->lens[i];
        p += u->lens[i];
    }
    int err = send_cmd(u, (int)(BATCH_FIXED + 2 * u->batch_n), argv, lens);
    /* Sent or not, the batch is done with: hiredis has its own copy. */
    buf_reset(&u->batch);
    u->batch_n = 0;
    return err;
}

/* The header: the layout, then the job. */
static int header(struct bulk_upload *u, const struct bulk_csv_record *rec)
{
    if (bulk_layout_read(&u->layout, u->cfg.format, rec, u->why, sizeof(u->why)) != 0)
        return ERR_INVALID_INPUT;
    struct buf sealed;
    buf_init(&sealed, BATCH_MAX);
    char now[24];
    snprintf(now, sizeof(now), "%llu", (unsigned long long)bj_now_ms());
    int err = bj_seal_record(u->s, "header", u->id, 0, rec, &sealed);
    const char *argv[] = {"EVAL",
                          bj_script_create,
                          "2",
                          u->keys.meta,
                          u->s->jobs,
                          u->id,
                          u->owner,
                          bulk_format_name(u->layout.format),
                          buf_cstr(&sealed),
                          bulk_csv_reader_had_bom(u->reader) ? "1" : "0",
                          now,
                          u->s->retention};
    size_t lens[ARRAY_SIZE(argv)];
    for (size_t i = 0; i < ARRAY_SIZE(argv); i++)
        lens[i] = i == 8 ? buf_len(&sealed) : strlen(argv[i]);
    err = err ? err : send_cmd(u, (int)ARRAY_SIZE(argv), argv, lens);
    buf_free(&sealed);
    u->created = err == 0;
    return err;
}

static int on_record(const struct bulk_csv_record *rec, void *arg)
{
    struct bulk_upload *u = arg;
    if (rec->number == 1)
        return header(u, rec);
    u->rows++;
    size_t before = buf_len(&u->batch);
    int err = bj_seal_record(u->s, "in", u->id, u->rows, rec, &u->batch);
    if (err)
        return err;
    if (u->batch_n == 0)
        u->batch_first = u->rows;
    u->lens[u->batch_n++] = buf_len(&u->batch) - before;
    if (u->batch_n == BATCH_ROWS || buf_len(&u->batch) >= BATCH_BYTES)
        return send_batch(u);
    return 0;
}

int bulk_upload_new(struct bulk_upload **out, struct bulk_jobs *s,
                    const struct bulk_upload_config *cfg)
{
    if (s->closed)
        return ERR_UNAVAILABLE;
    if (cfg->owner == NULL || strlen(cfg->owner) >= BJ_OWNER_MAX || cfg->on_room == NULL ||
        cfg->on_done == NULL)
        return ERR_INVALID_INPUT;
    struct bulk_upload *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return UV_ENOMEM;
    u->s = s;
    u->cfg = *cfg;
    snprintf(u->owner, sizeof(u->owner), "%s", cfg->owner);
    u->cfg.owner = u->owner;
    crypto_uuid4(u->id);
    bj_keys_of(s, u->id, &u->keys);
    buf_init(&u->batch, BATCH_MAX);
    int err = bulk_csv_reader_new(&u->reader, on_record, u);
    if (err) {
        release(u);
        return err;
    }
    *out = u;
    return 0;
}

const char *bulk_upload_job_id(const struct bulk_upload *u)
{
    return u->id;
}

/* A failure of the reader: its own words when the callbacks gave none. */
static int failed(struct bulk_upload *u, int err)
{
    if (err == ERR_INVALID_INPUT && u->why[0] == '\0')
        snprintf(u->why, sizeof(u->why), "%s", bulk_csv_reader_error(u->reader));
    if (u->err == 0)
        u->err = err;
    return u->err;
}

int bulk_upload_feed(struct bulk_upload *u, const char *data, size_t len)
{
    if (u->err)
        return u->err;
    int err = bulk_csv_feed(u->reader, data, len);
    return err ? failed(u, err) : 0;
}

bool bulk_upload_busy(struct bulk_upload *u)
{
    u->want_room = u->in_flight >= MAX_IN_FLIGHT;
    return u->want_room;
}

int bulk_upload_finish(struct bulk_upload *u)
{
    if (u->err)
        return u->err;
    int err = bulk_csv_finish(u->reader);
    if (!err && !u->created) {
        snprintf(u->why, sizeof(u->why), "empty: a bulk file starts with a header row");
        err = ERR_INVALID_INPUT;
    }
    if (!err && u->batch_n > 0)
        err = send_batch(u);
    char rows[24], now[24];
    snprintf(rows, sizeof(rows), "%llu", (unsigned long long)u->rows);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)bj_now_ms());
    const char *argv[] = {"EVAL",         bj_script_uploaded, "3",  u->keys.meta,
                          u->keys.in,     u->keys.out,        rows, now,
                          u->s->retention};
    err = err ? err : send_cmd(u, (int)ARRAY_SIZE(argv), argv, NULL);
    if (err)
        return failed(u, err);
    u->want_room = false;
    u->finishing = true;
    return 0;
}

const char *bulk_upload_error(const struct bulk_upload *u)
{
    return u->why;
}

uint64_t bulk_upload_rows(const struct bulk_upload *u)
{
    return u->rows;
}

void bulk_upload_free(struct bulk_upload *u, bool delete_job)
{
    if (u == NULL)
        return;
    /* Sent after every batch on the same connection, so Redis runs it last. */
    if (delete_job && u->created)
        bulk_job_delete(u->s, u->id, u->owner, NULL, NULL);
    u->freed = true;
    if (u->in_flight == 0)
        release(u);
}
