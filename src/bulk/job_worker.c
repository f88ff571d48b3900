/* The worker of HTTP bulk jobs: a consumer in the group of the stream of rows of every
 * job. Reading is a blocking XREADGROUP on a connection of its own, re-issued as soon as it
 * answers and while rows are free; a tick creates the group, reclaims rows a dead instance
 * left behind, keeps our own rows fresh and counts the jobs. The shape is the write-back
 * worker's (docs/internals/writeback.md); see docs/internals/bulk.md, "HTTP jobs". */
#include "pdstrace/bulk_job.h"

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/redis_conn.h"
#include "job_int.h"

#define DEFAULT_CONCURRENCY 16u
#define DEFAULT_RECLAIM_MS  30000u
#define DEFAULT_COUNT_MS    5000u
#define FRESHEN_MAX         64 /* ids per XCLAIM */

static void maybe_read(struct bulk_worker *w);
static void maybe_free(struct bulk_worker *w);

/* ---- worker-level commands ---- */

static int command(struct bulk_worker *w, struct redis_conn *rc, redis_conn_cb *cb, int argc,
                   const char **argv)
{
    int err = w->s->closed ? ERR_UNAVAILABLE : redis_conn_command_argv(rc, cb, w, argc, argv, NULL);
    if (!err)
        w->cmds++;
    return err;
}

/* Every worker-level reply starts here: true when the worker is still open for it. */
static bool replied(struct bulk_worker *w)
{
    w->cmds--;
    if (!w->closing)
        return true;
    maybe_free(w);
    return false;
}

static bool is_error(const redisReply *r, const char *prefix)
{
    return r != NULL && r->type == REDIS_REPLY_ERROR &&
           strncmp(r->str, prefix, strlen(prefix)) == 0;
}

static void on_ignored(int status, struct redisReply *reply, void *arg)
{
    (void)status;
    (void)reply;
    replied(arg);
}

/* ---- the consumer group ---- */

static void on_group(int status, struct redisReply *reply, void *arg)
{
    struct bulk_worker *w = arg;
    w->group_creating = false;
    if (!replied(w))
        return;
    if (status == 0 && (reply->type != REDIS_REPLY_ERROR || is_error(reply, "BUSYGROUP")))
        w->group_ready = true;
    maybe_read(w);
}

/* From 0: the stream holds only rows not yet done (done ones are deleted), so a group made
 * late, or again after Redis lost it, still sees every one. */
static void ensure_group(struct bulk_worker *w)
{
    if (w->group_ready || w->group_creating)
        return;
    const char *argv[] = {"XGROUP", "CREATE", w->s->stream, BJ_GROUP, "0", "MKSTREAM"};
    if (command(w, w->s->redis, on_group, (int)ARRAY_SIZE(argv), argv) == 0)
        w->group_creating = true;
}

/* ---- taking rows ---- */

static bool held(struct bulk_worker *w, const char *entry, uint64_t now)
{
    struct list_node *n, *tmp;
    LIST_FOREACH_SAFE(n, tmp, &w->held)
    {
        struct bj_row *r = LIST_ENTRY(n, struct bj_row, link);
        if (strcmp(r->entry, entry) == 0) {
            r->fresh_ms = now;
            return true;
        }
    }
    return false;
}

static bool copy_str(const redisReply *r, char *out, size_t size)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len >= size)
        return false;
    memcpy(out, r->str, r->len);
    out[r->len] = '\0';
    return true;
}

/* The fields job and row of an entry's [field, value, ...] into r. */
static bool parse_fields(const redisReply *f, struct bj_row *r)
{
    char row[24] = "", *end = NULL;
    for (size_t i = 0; f != NULL && f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
        const redisReply *name = f->element[i], *v = f->element[i + 1];
        if (name->type == REDIS_REPLY_STRING && strcmp(name->str, "job") == 0)
            copy_str(v, r->job, sizeof(r->job));
        else if (name->type == REDIS_REPLY_STRING && strcmp(name->str, "row") == 0)
            copy_str(v, row, sizeof(row));
    }
    r->row = strtoull(row, &end, 10);
    return bj_id_valid(r->job) && row[0] >= '1' && row[0] <= '9' && *end == '\0';
}

static struct bj_row *row_new(struct bulk_worker *w, const char *entry)
{
    struct bj_row *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->w = w;
    snprintf(r->entry, sizeof(r->entry), "%s", entry);
    buf_init(&r->record.raw, BJ_RECORD_MAX);
    r->fresh_ms = uv_now(w->loop);
    list_push_tail(&w->held, &r->link);
    w->n_held++;
    return r;
}

/* An entry we cannot read (deleted meanwhile, or not ours): acknowledged away, or it would
 * be reclaimed forever. */
static void drop_entry(struct bulk_worker *w, const char *entry)
{
    const char *argv[] = {"EVAL", bj_script_drop, "1", w->s->stream, BJ_GROUP, entry};
    command(w, w->s->redis, on_ignored, (int)ARRAY_SIZE(argv), argv);
}

/* One [id, [field, value, ...]] element of XREADGROUP or XAUTOCLAIM. */
static void take_one(struct bulk_worker *w, const redisReply *e)
{
    char entry[BJ_ENTRY_ID_MAX];
    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        !copy_str(e->element[0], entry, sizeof(entry)) || held(w, entry, uv_now(w->loop)))
        return;
    struct bj_row *r = row_new(w, entry);
    if (r == NULL)
        return; /* still pending in Redis: reclaimed later */
    if (!parse_fields(e->element[1], r)) {
        drop_entry(w, entry);
        bj_worker_release(r);
        return;
    }
    bj_row_start(r);
}

static void take(struct bulk_worker *w, const redisReply *entries)
{
    for (size_t i = 0; entries != NULL && entries->type == REDIS_REPLY_ARRAY &&
                       i < entries->elements && !w->closing;
         i++)
        take_one(w, entries->element[i]);
}

/* ---- reading ---- */

static void on_read(int status, struct redisReply *reply, void *arg)
{
    struct bulk_worker *w = arg;
    w->reading = false;
    if (!replied(w))
        return;
    if (status != 0 || reply->type == REDIS_REPLY_ERROR) {
        /* The group is gone (Redis lost it): the next tick makes it again and reads. */
        if (status == 0 && is_error(reply, "NOGROUP"))
            w->group_ready = false;
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2)
        take(w, reply->element[0]->element[1]);
    maybe_read(w);
}

static void maybe_read(struct bulk_worker *w)
{
    char count[16], block[16];
    if (w->closing || w->draining || w->reading || !w->group_ready ||
        w->n_held >= w->cfg.concurrency)
        return;
    snprintf(count, sizeof(count), "%u", w->cfg.concurrency - w->n_held);
    snprintf(block, sizeof(block), "%u", BULK_WORKER_READ_BLOCK_MS);
    const char *argv[] = {"XREADGROUP", "GROUP", BJ_GROUP,  w->consumer,  "COUNT", count,
                          "BLOCK",      block,   "STREAMS", w->s->stream, ">"};
    if (command(w, w->blocking, on_read, (int)ARRAY_SIZE(argv), argv) == 0)
        w->reading = true;
}

void bj_worker_release(struct bj_row *r)
{
    struct bulk_worker *w = r->w;
    list_remove(&r->link);
    w->n_held--;
    buf_wipe(&r->record.raw);
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
    if (w->closing) {
        maybe_free(w);
        return;
    }
    maybe_read(w);
}

/* ---- the tick: reclaims, freshness, the count ---- */

static void on_claimed(int status, struct redisReply *reply, void *arg)
{
    struct bulk_worker *w = arg;
    w->claiming = false;
    if (!replied(w))
        return;
    if (status != 0 || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
        return;
    if (!copy_str(reply->element[0], w->claim_cursor, sizeof(w->claim_cursor)))
        snprintf(w->claim_cursor, sizeof(w->claim_cursor), "0-0");
    take(w, reply->element[1]);
}

/* Rows idle for reclaim_idle_ms in any consumer's pending list belong to an instance that
 * died (a live one keeps its own fresh): XAUTOCLAIM hands them to us. */
static void reclaim(struct bulk_worker *w)
{
    char idle[16], count[16];
    uint64_t now = uv_now(w->loop);
    if (w->claiming || !w->group_ready || now < w->next_claim_ms || w->n_held >= w->cfg.concurrency)
        return;
    w->next_claim_ms = now + w->cfg.reclaim_idle_ms / 2;
    snprintf(idle, sizeof(idle), "%u", w->cfg.reclaim_idle_ms);
    snprintf(count, sizeof(count), "%u", w->cfg.concurrency - w->n_held);
    const char *argv[] = {"XAUTOCLAIM", w->s->stream,    BJ_GROUP, w->consumer,
                          idle,         w->claim_cursor, "COUNT",  count};
    if (command(w, w->s->redis, on_claimed, (int)ARRAY_SIZE(argv), argv) == 0)
        w->claiming = true;
}

/* Rows we hold get their idle time reset long before reclaim_idle_ms, so that no other
 * instance takes one we are still tracing (a slow PDS, retries). */
static void freshen(struct bulk_worker *w)
{
    const char *argv[6 + FRESHEN_MAX] = {"XCLAIM", w->s->stream, BJ_GROUP, w->consumer, "0"};
    int argc = 5;
    uint64_t now = uv_now(w->loop);
    struct list_node *n, *tmp;
    LIST_FOREACH_SAFE(n, tmp, &w->held)
    {
        struct bj_row *r = LIST_ENTRY(n, struct bj_row, link);
        if (now - r->fresh_ms < w->cfg.reclaim_idle_ms / 3 || argc >= 5 + FRESHEN_MAX)
            continue;
        r->fresh_ms = now;
        argv[argc++] = r->entry;
    }
    argv[argc++] = "JUSTID";
    if (argc > 6)
        command(w, w->s->redis, on_ignored, argc, argv);
}

static void on_counted(int status, void *arg)
{
    struct bulk_worker *w = arg;
    (void)status;
    w->counting = false;
    replied(w);
}

static void count_jobs(struct bulk_worker *w)
{
    uint64_t now = uv_now(w->loop);
    if (w->counting || now < w->next_count_ms)
        return;
    w->next_count_ms = now + w->cfg.count_every_ms;
    if (!w->s->closed && bulk_jobs_count(w->s, on_counted, w) == 0) {
        w->counting = true;
        w->cmds++;
    }
}

static void on_tick(uv_timer_t *t)
{
    struct bulk_worker *w = container_of(t, struct bulk_worker, tick);
    ensure_group(w);
    reclaim(w);
    freshen(w);
    count_jobs(w);
    maybe_read(w);
}

/* ---- the tracers, one per owner ---- */

struct bulk_tracer *bj_worker_tracer(struct bulk_worker *w, const char *owner)
{
    struct list_node *n, *tmp;
    LIST_FOREACH_SAFE(n, tmp, &w->owners)
    {
        struct bj_owner *o = LIST_ENTRY(n, struct bj_owner, link);
        if (strcmp(o->name, owner) == 0)
            return o->tracer;
    }
    struct bj_owner *o = calloc(1, sizeof(*o));
    struct bulk_tracer_config tc = {
        .traces = w->cfg.traces,
        .metrics = w->cfg.metrics,
        .caller = owner,
        .max_attempts = w->cfg.max_attempts,
        .retry_initial_ms = w->cfg.retry_initial_ms,
    };
    if (o == NULL || bulk_tracer_new(&o->tracer, w->loop, &tc) != 0) {
        if (o != NULL && o->tracer != NULL)
            bulk_tracer_free(o->tracer);
        free(o);
        return NULL;
    }
    snprintf(o->name, sizeof(o->name), "%s", owner);
    list_push_tail(&w->owners, &o->link);
    return o->tracer;
}

/* ---- life cycle ---- */

static void maybe_free(struct bulk_worker *w)
{
    if (!w->closing || !w->tick_closed || w->cmds > 0 || w->n_held > 0)
        return;
    struct list_node *n, *tmp;
    LIST_FOREACH_SAFE(n, tmp, &w->owners)
    {
        struct bj_owner *o = LIST_ENTRY(n, struct bj_owner, link);
        bulk_tracer_free(o->tracer);
        free(o);
    }
    free(w);
}

static void on_tick_closed(uv_handle_t *h)
{
    struct bulk_worker *w = container_of((uv_timer_t *)h, struct bulk_worker, tick);
    w->tick_closed = true;
    maybe_free(w);
}

void bulk_worker_drain(struct bulk_worker *w)
{
    if (w != NULL)
        w->draining = true;
}

void bulk_worker_free(struct bulk_worker *w)
{
    if (w == NULL || w->closing)
        return;
    w->closing = true;
    uv_close((uv_handle_t *)&w->tick, on_tick_closed);
    struct list_node *n, *tmp;
    LIST_FOREACH_SAFE(n, tmp, &w->owners)
    bulk_tracer_stop(LIST_ENTRY(n, struct bj_owner, link)->tracer);
}

unsigned bulk_worker_held(const struct bulk_worker *w)
{
    return w->n_held;
}

/* host-pid-random: unique per process and per worker, stable for the worker's life. */
static void consumer_name(char *out, size_t n)
{
    char host[64] = "host";
    unsigned char rnd[4] = {0};
    char hex[9];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "host");
    host[sizeof(host) - 1] = '\0';
    crypto_random(rnd, sizeof(rnd));
    crypto_hex(rnd, sizeof(rnd), hex);
    snprintf(out, n, "%s-%ld-%s", host, (long)getpid(), hex);
}

static unsigned or_default(unsigned v, unsigned def)
{
    return v != 0 ? v : def;
}

int bulk_worker_new(struct bulk_worker **out, uv_loop_t *loop, struct bulk_jobs *s,
                    struct redis_conn *blocking, const struct bulk_worker_config *cfg)
{
    if (loop == NULL || s == NULL || blocking == NULL || cfg == NULL || cfg->traces == NULL)
        return ERR_INVALID_INPUT;
    struct bulk_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return UV_ENOMEM;
    *w = (struct bulk_worker){.loop = loop, .s = s, .blocking = blocking, .cfg = *cfg};
    w->cfg.concurrency = or_default(cfg->concurrency, DEFAULT_CONCURRENCY);
    w->cfg.reclaim_idle_ms = or_default(cfg->reclaim_idle_ms, DEFAULT_RECLAIM_MS);
    w->cfg.count_every_ms = or_default(cfg->count_every_ms, DEFAULT_COUNT_MS);
    snprintf(w->claim_cursor, sizeof(w->claim_cursor), "0-0");
    consumer_name(w->consumer, sizeof(w->consumer));
    list_init(&w->held);
    list_init(&w->owners);
    uv_timer_init(loop, &w->tick);
    /* Often enough to freshen rows three times within reclaim_idle_ms. */
    unsigned period = w->cfg.reclaim_idle_ms / 6;
    period = period < 10 ? 10 : period > 500 ? 500 : period;
    uv_timer_start(&w->tick, on_tick, 0, period);
    *out = w;
    return 0;
}
