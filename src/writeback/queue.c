#include "pdstrace/writeback.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/nhs_number.h"
#include "pdstrace/redis_conn.h"
#include "writeback_int.h"

static const struct metrics_family families[] = {
    {"pdstrace_writeback_queue_depth", METRICS_GAUGE,
     "write-backs not yet delivered (dead letters excluded)"},
    {"pdstrace_writeback_oldest_pending_seconds", METRICS_GAUGE,
     "age of the oldest write-back not yet delivered"},
    {"pdstrace_writeback_deliveries_total", METRICS_COUNTER,
     "write-back attempts by result: delivered, retry, dead, withheld"},
    {"pdstrace_writeback_dead_letters", METRICS_GAUGE,
     "write-backs given up, awaiting an operator"},
};

/* ---- life cycle ---- */

int writeback_queue_new(struct writeback_queue **out, struct redis_conn *redis, const void *secret,
                        size_t secret_len, const struct writeback_config *cfg)
{
    int err = metrics_declare(cfg->metrics, families, ARRAY_SIZE(families));
    if (err)
        return err;
    struct writeback_queue *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return UV_ENOMEM;
    q->redis = redis;
    q->metrics = cfg->metrics;
    q->refs = 1;
    err = wb_keys_init(&q->keys, cfg->prefix);
    if (!err)
        err = crypto_hkdf_sha256(NULL, 0, secret, secret_len, "pds-trace writeback v1", q->key,
                                 sizeof(q->key));
    if (err) {
        writeback_queue_free(q);
        return err;
    }
    *out = q;
    return 0;
}

void wb_queue_ref(struct writeback_queue *q)
{
    q->refs++;
}

void wb_queue_unref(struct writeback_queue *q)
{
    if (--q->refs > 0)
        return;
    OPENSSL_cleanse(q, sizeof(*q));
    free(q);
}

/* Commands still in flight keep the memory until their replies; their callers learn
 * nothing new from it (enqueue callbacks still run: Redis answers them). */
void writeback_queue_free(struct writeback_queue *q)
{
    if (q == NULL)
        return;
    OPENSSL_cleanse(q->key, sizeof(q->key));
    wb_queue_unref(q);
}

void wb_queue_note(struct writeback_queue *q, uint64_t depth, double oldest_s, uint64_t dead)
{
    q->last_depth = depth;
    q->last_oldest_s = oldest_s;
    metrics_set(q->metrics, "pdstrace_writeback_queue_depth", NULL, (double)depth);
    metrics_set(q->metrics, "pdstrace_writeback_oldest_pending_seconds", NULL, oldest_s);
    metrics_set(q->metrics, "pdstrace_writeback_dead_letters", NULL, (double)dead);
}

void wb_count(struct writeback_queue *q, const char *result)
{
    char labels[48];
    snprintf(labels, sizeof(labels), "result=\"%s\"", result);
    metrics_inc(q->metrics, "pdstrace_writeback_deliveries_total", labels, 1);
}

void writeback_queue_last_backlog(const struct writeback_queue *q, uint64_t *depth,
                                  double *oldest_pending_s)
{
    *depth = q != NULL ? q->last_depth : 0;
    *oldest_pending_s = q != NULL ? q->last_oldest_s : 0;
}

/* ---- enqueue ---- */

/* Any command of the queue with a status-only callback. */
struct wb_call {
    struct writeback_queue *q;
    writeback_enqueue_cb *cb; /* writeback_retry_cb has the same shape */
    void *arg;
};

static bool item_valid(const struct writeback_item *it)
{
    size_t n = strnlen(it->case_id, sizeof(it->case_id));
    if (n == 0 || n >= sizeof(it->case_id) || strnlen(it->trace_id, 37) != 36)
        return false;
    if (strspn(it->case_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") !=
        n)
        return false;
    return nhs_number_is_valid(it->nhs_number) && it->score >= 0 && it->score <= 1;
}

static int seal_hex(const struct writeback_queue *q, const struct writeback_item *it,
                    char out[WB_SEALED_HEX])
{
    struct buf sealed;
    buf_init(&sealed, 128);
    int err = crypto_seal(q->key, it->trace_id, strlen(it->trace_id), it->nhs_number, 10, &sealed);
    if (!err && buf_len(&sealed) * 2 + 1 != WB_SEALED_HEX)
        err = ERR_INTERNAL;
    if (!err)
        crypto_hex((const unsigned char *)buf_cstr(&sealed), buf_len(&sealed), out);
    buf_free(&sealed);
    return err;
}

static void on_enqueued(int status, struct redisReply *reply, void *arg)
{
    struct wb_call *c = arg;
    if (status == 0 && reply->type == REDIS_REPLY_ERROR)
        status = ERR_UNAVAILABLE;
    wb_queue_unref(c->q);
    c->cb(status, c->arg);
    free(c);
}

static int send_call(struct writeback_queue *q, redis_conn_cb *done, writeback_enqueue_cb *cb,
                     void *arg, int argc, const char **argv)
{
    struct wb_call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return UV_ENOMEM;
    *c = (struct wb_call){q, cb, arg};
    int err = redis_conn_command_argv(q->redis, done, c, argc, argv, NULL);
    if (err) {
        free(c);
        return err;
    }
    wb_queue_ref(q);
    return 0;
}

int writeback_enqueue(struct writeback_queue *q, const struct writeback_item *item,
                      writeback_enqueue_cb *cb, void *arg)
{
    char sealed[WB_SEALED_HEX], score[32], traced[24], now[24];
    if (q == NULL || item == NULL || cb == NULL || !item_valid(item))
        return ERR_INVALID_INPUT;
    int err = seal_hex(q, item, sealed);
    if (err)
        return err;
    snprintf(score, sizeof(score), "%.10g", item->score);
    snprintf(traced, sizeof(traced), "%llu", (unsigned long long)item->traced_at_ms);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)wb_now_ms());
    const char *argv[] = {"EVAL",
                          wb_script_enqueue,
                          "2",
                          q->keys.stream,
                          q->keys.pending,
                          item->trace_id,
                          item->case_id,
                          sealed,
                          score,
                          traced,
                          now};
    return send_call(q, on_enqueued, cb, arg, (int)ARRAY_SIZE(argv), argv);
}

/* ---- retry of a dead letter ---- */

static void on_retried(int status, struct redisReply *reply, void *arg)
{
    struct wb_call *c = arg;
    if (status == 0 && reply->type != REDIS_REPLY_INTEGER)
        status = ERR_UNAVAILABLE;
    else if (status == 0 && reply->integer == 0)
        status = ERR_NOT_FOUND;
    wb_queue_unref(c->q);
    c->cb(status, c->arg);
    free(c);
}

int writeback_retry(struct writeback_queue *q, const char *trace_id, writeback_retry_cb *cb,
                    void *arg)
{
    char now[24];
    if (q == NULL || trace_id == NULL || cb == NULL)
        return ERR_INVALID_INPUT;
    snprintf(now, sizeof(now), "%llu", (unsigned long long)wb_now_ms());
    const char *argv[] = {"EVAL",         wb_script_retry, "3",      q->keys.dead,
                          q->keys.stream, q->keys.pending, trace_id, now};
    return send_call(q, on_retried, cb, arg, (int)ARRAY_SIZE(argv), argv);
}

/* ---- the backlog ---- */

struct wb_backlog_call {
    struct writeback_queue *q;
    writeback_backlog_cb *cb;
    void *arg;
};

static uint64_t reply_u64(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer > 0 ? (uint64_t)r->integer : 0;
    return r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
}

/* One dead letter's JSON into d; the sealed entry in it is not looked at. */
static int parse_dead(const redisReply *r, struct writeback_dead *d)
{
    json_t *j = r->type == REDIS_REPLY_STRING ? json_loadb(r->str, r->len, 0, NULL) : NULL;
    const char *trace = json_string_value(json_object_get(json_object_get(j, "entry"), "trace_id"));
    const char *cid = json_string_value(json_object_get(j, "case_id"));
    const char *why = json_string_value(json_object_get(j, "last_error"));
    const char *at = json_string_value(json_object_get(j, "dead_at"));
    int ok = trace != NULL && cid != NULL && why != NULL && at != NULL;
    if (ok) {
        snprintf(d->trace_id, sizeof(d->trace_id), "%s", trace);
        snprintf(d->case_id, sizeof(d->case_id), "%s", cid);
        snprintf(d->last_error, sizeof(d->last_error), "%s", why);
        snprintf(d->dead_at, sizeof(d->dead_at), "%s", at);
        d->attempts = (unsigned)json_integer_value(json_object_get(j, "attempts"));
    }
    json_decref(j);
    return ok ? 0 : ERR_PARSE;
}

static int by_dead_at(const void *a, const void *b)
{
    const struct writeback_dead *x = a, *y = b;
    int c = strcmp(x->dead_at, y->dead_at);
    return c != 0 ? c : strcmp(x->trace_id, y->trace_id);
}

static int parse_backlog(const redisReply *r, struct writeback_backlog *b)
{
    memset(b, 0, sizeof(*b));
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 4)
        return ERR_UNAVAILABLE;
    b->depth = reply_u64(r->element[0]);
    uint64_t oldest = reply_u64(r->element[1]), now = wb_now_ms();
    b->oldest_pending_s = oldest > 0 && now > oldest ? (double)(now - oldest) / 1000.0 : 0;
    b->retrying = reply_u64(r->element[2]);
    b->dead = calloc(r->elements - 4 + 1, sizeof(*b->dead));
    if (b->dead == NULL)
        return UV_ENOMEM;
    for (size_t i = 4; i < r->elements; i++) {
        if (parse_dead(r->element[i], &b->dead[b->n_dead]) == 0)
            b->n_dead++;
    }
    qsort(b->dead, b->n_dead, sizeof(*b->dead), by_dead_at);
    return 0;
}

static void on_backlog(int status, struct redisReply *reply, void *arg)
{
    struct wb_backlog_call *c = arg;
    struct writeback_backlog b = {0};
    if (status == 0)
        status = parse_backlog(reply, &b);
    if (status == 0)
        wb_queue_note(c->q, b.depth, b.oldest_pending_s, reply_u64(reply->element[3]));
    wb_queue_unref(c->q);
    c->cb(status, status == 0 ? &b : NULL, c->arg);
    free(b.dead);
    free(c);
}

int writeback_backlog(struct writeback_queue *q, writeback_backlog_cb *cb, void *arg)
{
    char limit[16];
    if (q == NULL || cb == NULL)
        return ERR_INVALID_INPUT;
    struct wb_backlog_call *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return UV_ENOMEM;
    *c = (struct wb_backlog_call){q, cb, arg};
    snprintf(limit, sizeof(limit), "%d", WB_DEAD_LIMIT);
    const char *argv[] = {"EVAL",          wb_script_backlog, "3",  q->keys.pending,
                          q->keys.delayed, q->keys.dead,      limit};
    int err = redis_conn_command_argv(q->redis, on_backlog, c, (int)ARRAY_SIZE(argv), argv, NULL);
    if (err) {
        free(c);
        return err;
    }
    wb_queue_ref(q);
    return 0;
}
