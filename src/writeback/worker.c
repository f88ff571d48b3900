#include "pdstrace/writeback.h"

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/redis_conn.h"
#include "worker_int.h"

/* The worker's rhythm: one timer ticks, and each tick moves due retries back into the
 * stream, reclaims what a dead consumer left behind, refreshes the backlog figures and
 * keeps our own pending entries fresh. Reading is a blocking XREADGROUP on a connection
 * of its own, re-issued as soon as it answers. See docs/internals/writeback.md. */

#define REFRESH_MS    2000u /* backlog figures for /readyz and /metrics */
#define PROMOTE_BATCH 100   /* due retries moved per script run */

static void maybe_read(struct writeback_worker *w);
static void pump(struct writeback_worker *w);

/* ---- worker-level commands ---- */

static int command(struct writeback_worker *w, struct redis_conn *rc, redis_conn_cb *cb, int argc,
                   const char **argv)
{
    int err = redis_conn_command_argv(rc, cb, w, argc, argv, NULL);
    if (!err)
        w->cmds++;
    return err;
}

/* Every worker-level reply starts here: true when the worker is still open for it. */
static bool replied(struct writeback_worker *w)
{
    w->cmds--;
    if (!w->closing)
        return true;
    wb_worker_maybe_free(w);
    return false;
}

static bool is_error(const redisReply *r, const char *prefix)
{
    return r != NULL && r->type == REDIS_REPLY_ERROR &&
           strncmp(r->str, prefix, strlen(prefix)) == 0;
}

/* ---- the consumer group ---- */

static void on_group(int status, struct redisReply *reply, void *arg)
{
    struct writeback_worker *w = arg;
    w->group_creating = false;
    if (!replied(w))
        return;
    if (status == 0 && (reply->type != REDIS_REPLY_ERROR || is_error(reply, "BUSYGROUP")))
        w->group_ready = true;
    maybe_read(w);
}

/* From 0, not $: the stream holds only undelivered entries (delivered ones are deleted),
 * so a group created late, or again after Redis lost it, still sees every one. */
static void ensure_group(struct writeback_worker *w)
{
    if (w->group_ready || w->group_creating)
        return;
    const char *argv[] = {"XGROUP", "CREATE", w->q->keys.stream, WB_GROUP, "0", "MKSTREAM"};
    if (command(w, w->q->redis, on_group, (int)ARRAY_SIZE(argv), argv) == 0)
        w->group_creating = true;
}

/* ---- taking entries ---- */

static struct wb_delivery *find_held(struct writeback_worker *w, const char *id)
{
    struct list_node *n, *tmp;
    LIST_FOREACH_SAFE(n, tmp, &w->held)
    {
        struct wb_delivery *d = LIST_ENTRY(n, struct wb_delivery, link);
        if (strcmp(d->e.id, id) == 0)
            return d;
    }
    return NULL;
}

static void on_dropped(int status, struct redisReply *reply, void *arg)
{
    (void)status;
    (void)reply;
    replied(arg);
}

/* An entry we cannot read (written by something else): acknowledged away, or it would
 * be reclaimed forever. */
static void drop_foreign(struct writeback_worker *w, const char *id)
{
    const struct wb_keys *k = &w->q->keys;
    log_msgf(LOG_LEVEL_WARN, NULL, "write-back stream entry %s is malformed: dropped", id);
    const char *argv[] = {"EVAL",     wb_script_ack, "4",      k->stream, k->pending,
                          k->delayed, k->entries,    WB_GROUP, id,        ""};
    command(w, w->q->redis, on_dropped, (int)ARRAY_SIZE(argv), argv);
}

static void take_one(struct writeback_worker *w, const redisReply *r)
{
    struct wb_entry e;
    if (wb_entry_parse(r, &e) != 0) {
        if (e.id[0] != '\0')
            drop_foreign(w, e.id);
        return;
    }
    struct wb_delivery *d = find_held(w, e.id);
    if (d == NULL) {
        d = calloc(1, sizeof(*d));
        if (d == NULL)
            return; /* still pending in Redis: reclaimed later */
        d->w = w;
        d->e = e;
        d->state = WB_WAITING;
        list_push_tail(&w->held, &d->link);
        w->n_held++;
    }
    d->fresh_ms = uv_now(w->loop);
}

/* entries: an array of [id, [field, value, ...]]. */
static void take(struct writeback_worker *w, const redisReply *entries)
{
    if (entries == NULL || entries->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < entries->elements; i++)
        take_one(w, entries->element[i]);
    pump(w);
}

/* ---- reading ---- */

static void on_read(int status, struct redisReply *reply, void *arg)
{
    struct writeback_worker *w = arg;
    w->reading = false;
    if (!replied(w))
        return;
    if (status != 0 || reply->type == REDIS_REPLY_ERROR) {
        /* The group is gone (Redis lost it): the next tick creates it again. */
        if (status == 0 && is_error(reply, "NOGROUP"))
            w->group_ready = false;
        return; /* the next tick reads again */
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2)
        take(w, reply->element[0]->element[1]);
    maybe_read(w);
}

static void maybe_read(struct writeback_worker *w)
{
    char count[16], block[16];
    if (w->closing || w->reading || !w->group_ready || w->n_held >= w->concurrency)
        return;
    snprintf(count, sizeof(count), "%u", w->concurrency - w->n_held);
    snprintf(block, sizeof(block), "%u", WRITEBACK_READ_BLOCK_MS);
    const char *argv[] = {"XREADGROUP", "GROUP", WB_GROUP,  w->consumer,       "COUNT", count,
                          "BLOCK",      block,   "STREAMS", w->q->keys.stream, ">"};
    if (command(w, w->blocking, on_read, (int)ARRAY_SIZE(argv), argv) == 0)
        w->reading = true;
}

/* ---- deliveries ---- */

static struct wb_delivery *first_waiting(struct writeback_worker *w)
{
    struct list_node *n, *tmp;
    LIST_FOREACH_SAFE(n, tmp, &w->held)
    {
        struct wb_delivery *d = LIST_ENTRY(n, struct wb_delivery, link);
        if (d->state == WB_WAITING)
            return d;
    }
    return NULL;
}

/* Starts waiting deliveries while slots are free. A delivery may settle at once and come
 * back through wb_worker_release, which calls here again: the flag keeps that flat. */
static void pump(struct writeback_worker *w)
{
    struct wb_delivery *d;
    if (w->closing || w->pumping)
        return;
    w->pumping = true;
    while (w->n_busy < w->concurrency && (d = first_waiting(w)) != NULL) {
        w->n_busy++;
        wb_deliver_start(d);
    }
    w->pumping = false;
}

void wb_worker_release(struct wb_delivery *d)
{
    struct writeback_worker *w = d->w;
    if (d->state != WB_WAITING)
        w->n_busy--;
    list_remove(&d->link);
    w->n_held--;
    OPENSSL_cleanse(d, sizeof(*d));
    free(d);
    if (w->closing) {
        wb_worker_maybe_free(w);
        return;
    }
    pump(w);
    maybe_read(w);
}

/* ---- the tick: retries, reclaims, figures, freshness ---- */

static void promote(struct writeback_worker *w);

static void on_promoted(int status, struct redisReply *reply, void *arg)
{
    struct writeback_worker *w = arg;
    w->promoting = false;
    if (!replied(w))
        return;
    /* A full batch: more may be due, so go on rather than wait for the next tick. */
    if (status == 0 && reply->type == REDIS_REPLY_INTEGER && reply->integer >= PROMOTE_BATCH)
        promote(w);
}

/* Due retries go back into the stream, where any instance's blocked read picks them up. */
static void promote(struct writeback_worker *w)
{
    char now[24], limit[16];
    if (w->promoting)
        return;
    snprintf(now, sizeof(now), "%llu", (unsigned long long)wb_now_ms());
    snprintf(limit, sizeof(limit), "%d", PROMOTE_BATCH);
    const struct wb_keys *k = &w->q->keys;
    const char *argv[] = {"EVAL",     wb_script_promote, "3", k->delayed,
                          k->entries, k->stream,         now, limit};
    if (command(w, w->q->redis, on_promoted, (int)ARRAY_SIZE(argv), argv) == 0)
        w->promoting = true;
}

static void on_claimed(int status, struct redisReply *reply, void *arg)
{
    struct writeback_worker *w = arg;
    w->claiming = false;
    if (!replied(w))
        return;
    if (status != 0 || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
        return;
    const redisReply *cursor = reply->element[0];
    if (cursor->type == REDIS_REPLY_STRING && cursor->len < sizeof(w->claim_cursor))
        snprintf(w->claim_cursor, sizeof(w->claim_cursor), "%s", cursor->str);
    take(w, reply->element[1]);
}

/* Entries idle for reclaim_idle_ms in any consumer's pending list belong to an instance
 * that died (a live one keeps its own fresh): XAUTOCLAIM hands them to us. */
static void reclaim(struct writeback_worker *w)
{
    char idle[16], count[16];
    uint64_t now = uv_now(w->loop);
    if (w->claiming || !w->group_ready || now < w->next_claim_ms || w->n_held >= w->concurrency)
        return;
    w->next_claim_ms = now + w->reclaim_idle_ms / 2;
    snprintf(idle, sizeof(idle), "%u", w->reclaim_idle_ms);
    snprintf(count, sizeof(count), "%u", w->concurrency - w->n_held);
    const char *argv[] = {"XAUTOCLAIM", w->q->keys.stream, WB_GROUP, w->consumer,
                          idle,         w->claim_cursor,   "COUNT",  count};
    if (command(w, w->q->redis, on_claimed, (int)ARRAY_SIZE(argv), argv) == 0)
        w->claiming = true;
}

static void on_refreshed(int status, const struct writeback_backlog *b, void *arg)
{
    struct writeback_worker *w = arg;
    (void)status;
    (void)b;
    w->refreshing = false;
    replied(w);
}

static void refresh(struct writeback_worker *w)
{
    uint64_t now = uv_now(w->loop);
    if (w->refreshing || now < w->next_refresh_ms)
        return;
    w->next_refresh_ms = now + REFRESH_MS;
    if (writeback_backlog(w->q, on_refreshed, w) == 0) {
        w->refreshing = true;
        w->cmds++;
    }
}

/* Entries we hold get their idle time reset long before reclaim_idle_ms, so that no other
 * instance reclaims one we are still working on (a slow PUT, a wait for a slot). */
static void freshen(struct writeback_worker *w)
{
    const char *argv[7 + 64] = {"XCLAIM", w->q->keys.stream, WB_GROUP, w->consumer, "0"};
    int argc = 5;
    uint64_t now = uv_now(w->loop);
    struct list_node *n, *tmp;
    LIST_FOREACH_SAFE(n, tmp, &w->held)
    {
        struct wb_delivery *d = LIST_ENTRY(n, struct wb_delivery, link);
        if (now - d->fresh_ms < w->reclaim_idle_ms / 3 || argc >= (int)ARRAY_SIZE(argv) - 1)
            continue;
        d->fresh_ms = now;
        argv[argc++] = d->e.id;
    }
    argv[argc++] = "JUSTID";
    if (argc > 6)
        command(w, w->q->redis, on_dropped, argc, argv);
}

static void on_tick(uv_timer_t *t)
{
    struct writeback_worker *w = container_of(t, struct writeback_worker, tick);
    ensure_group(w);
    promote(w);
    reclaim(w);
    refresh(w);
    freshen(w);
    pump(w);
    maybe_read(w);
}

/* ---- life cycle ---- */

void wb_worker_maybe_free(struct writeback_worker *w)
{
    if (!w->closing || !w->tick_closed || w->cmds > 0 || w->n_held > 0)
        return;
    if (w->auth != NULL)
        OPENSSL_cleanse(w->auth, strlen(w->auth));
    free(w->auth);
    free(w->base_url);
    free(w);
}

static void on_tick_closed(uv_handle_t *h)
{
    struct writeback_worker *w = container_of((uv_timer_t *)h, struct writeback_worker, tick);
    w->tick_closed = true;
    wb_worker_maybe_free(w);
}

void writeback_worker_free(struct writeback_worker *w)
{
    if (w == NULL || w->closing)
        return;
    w->closing = true;
    uv_close((uv_handle_t *)&w->tick, on_tick_closed);
    /* Waiting entries are simply let go; busy ones go when their callbacks run. Either
     * way they stay pending in Redis for a reclaim. */
    struct list_node *n, *tmp;
    LIST_FOREACH_SAFE(n, tmp, &w->held)
    {
        struct wb_delivery *d = LIST_ENTRY(n, struct wb_delivery, link);
        if (d->state == WB_WAITING) {
            list_remove(&d->link);
            w->n_held--;
            free(d);
        }
    }
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

static void configure(struct writeback_worker *w, const struct writeback_config *cfg)
{
    w->tls = cfg->tls;
    w->timeout_ms = or_default(cfg->timeout_ms, 10000);
    w->concurrency = or_default(cfg->concurrency, 4);
    w->retry_initial_ms = or_default(cfg->retry_initial_ms, 1000);
    w->retry_max_ms = or_default(cfg->retry_max_ms, 300000);
    if (w->retry_max_ms < w->retry_initial_ms)
        w->retry_max_ms = w->retry_initial_ms;
    w->reclaim_idle_ms = or_default(cfg->reclaim_idle_ms, 60000);
    w->max_age_ms = (uint64_t)or_default(cfg->max_age_s, 604800) * 1000u;
    snprintf(w->claim_cursor, sizeof(w->claim_cursor), "0-0");
    consumer_name(w->consumer, sizeof(w->consumer));
}

/* The base URL without its trailing slashes, and the header line carrying the token. */
static int copy_strings(struct writeback_worker *w, const struct writeback_config *cfg)
{
    size_t n = strlen(cfg->base_url);
    while (n > 0 && cfg->base_url[n - 1] == '/')
        n--;
    w->base_url = strndup(cfg->base_url, n);
    if (w->base_url == NULL)
        return UV_ENOMEM;
    if (cfg->token == NULL || cfg->token[0] == '\0')
        return 0;
    size_t len = strlen("Authorization: Bearer ") + strlen(cfg->token) + 1;
    w->auth = malloc(len);
    if (w->auth == NULL)
        return UV_ENOMEM;
    snprintf(w->auth, len, "Authorization: Bearer %s", cfg->token);
    return 0;
}

int writeback_worker_new(struct writeback_worker **out, uv_loop_t *loop, struct http_client *http,
                         struct redis_conn *blocking, struct writeback_queue *q,
                         writeback_withheld_fn *withheld, void *withheld_arg,
                         const struct writeback_config *cfg)
{
    if (loop == NULL || http == NULL || blocking == NULL || q == NULL || cfg == NULL ||
        cfg->base_url == NULL || cfg->base_url[0] == '\0')
        return ERR_INVALID_INPUT;
    struct writeback_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return UV_ENOMEM;
    *w = (struct writeback_worker){.loop = loop, .http = http, .blocking = blocking, .q = q};
    w->withheld = withheld;
    w->withheld_arg = withheld_arg;
    list_init(&w->held);
    configure(w, cfg);
    int err = copy_strings(w, cfg);
    if (err) {
        free(w->base_url);
        free(w->auth);
        free(w);
        return err;
    }
    uv_timer_init(loop, &w->tick);
    unsigned period = w->retry_initial_ms / 2;
    period = period < 10 ? 10 : period > 500 ? 500 : period;
    uv_timer_start(&w->tick, on_tick, 0, period);
    *out = w;
    return 0;
}
