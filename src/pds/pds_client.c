#include "pdstrace/pds_client.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/err.h"
#include "pdstrace/http_client.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/pds_rate.h"
#include "pdstrace/ratelimit.h"
#include "pdstrace/token.h"
#include "pds_client_int.h"

/* The scheduling (two queues, one timer, one slot of the shared limiter, one token bucket)
 * is described in docs/internals/pds_client.md. */

#define DEFAULT_BACKOFF_BASE_MS 200u
#define DEFAULT_BACKOFF_MAX_MS  10000u
#define DEFAULT_MAX_QUEUE       100000u
#define MAX_BASE_URL_LEN        2048
#define MAX_RESPONSE_BYTES      (1024u * 1024u)

/* The argument of a token_get in flight; pc is cleared when the client goes first. */
struct pds_token_wait {
    struct pds_client *pc;
};

/* The send slot the client holds: at most one, reserved only for a request that can go. */
struct pds_slot {
    bool held;
    bool shared;    /* reserved in Redis; false: Redis was away, the local bucket alone spaces it */
    uint64_t at_ns; /* uv_hrtime() of the slot */
};

struct pds_client {
    uv_loop_t *loop;
    struct http_client *http;
    struct token_source *tokens;
    struct pds_client_config cfg;
    char *base_url;
    char *ods_code;
    struct ratelimit rl;   /* this process's own spacing: a floor under the shared slots, and
                              the whole limit while Redis is away */
    struct pds_rate *rate; /* the limiter shared through Redis; NULL without Redis */
    struct pds_slot slot;
    bool reserving; /* a reservation is in flight (one at a time) */
    bool shared;    /* the slot last taken was reserved in Redis */
    enum pds_priority reserving_prio;
    uint64_t again_ns[PDS_PRIORITIES]; /* after a refusal: no reservation before */
    uint64_t interval_ns;
    uint64_t sent; /* every attempt sent, libcurl's re-sends included */
    uv_timer_t timer;
    struct list_node lists[PDS_LISTS]; /* by enum pds_where */
    unsigned counts[PDS_LISTS];        /* requests on each list: the caps read them */
    struct pds_token_wait *token_wait;
    bool closing;
};

static void pump(struct pds_client *pc);

/* ---- lists ---- */

/* Moves r to the front or back of list w, or off every list with PDS_NOWHERE. Every move
 * goes through here, so that the counts the caps read stay true. */
static void place(struct pds_request *r, enum pds_where w, bool front)
{
    struct pds_client *pc = r->pc;
    if (r->where != PDS_NOWHERE) {
        list_remove(&r->link);
        pc->counts[r->where]--;
    }
    r->where = w;
    if (w == PDS_NOWHERE)
        return;
    if (front)
        list_push_head(&pc->lists[w], &r->link);
    else
        list_push_tail(&pc->lists[w], &r->link);
    pc->counts[w]++;
}

static void take(struct pds_request *r)
{
    place(r, PDS_NOWHERE, false);
}

static struct pds_request *first(const struct pds_client *pc, enum pds_where w)
{
    struct list_node *node = list_first(&pc->lists[w]);
    return node != NULL ? LIST_ENTRY(node, struct pds_request, link) : NULL;
}

/* The queue r waits on: trace and bulk requests wait apart. */
static enum pds_where queue_of(const struct pds_request *r)
{
    return r->priority == PDS_PRIORITY_BULK ? PDS_QUEUED_BULK : PDS_QUEUED_TRACE;
}

static unsigned waiting(const struct pds_client *pc)
{
    return pc->counts[PDS_QUEUED_TRACE] + pc->counts[PDS_QUEUED_BULK];
}

/* The request to send next: a waiting trace request always goes before a bulk one. */
static struct pds_request *next_waiting(const struct pds_client *pc)
{
    struct pds_request *r = first(pc, PDS_QUEUED_TRACE);
    return r != NULL ? r : first(pc, PDS_QUEUED_BULK);
}

/* ---- completion ---- */

/* The request is on no list any more. The callback may start requests or free the
 * client; the client's memory outlives this call either way (it goes in a close cb). */
static void complete(struct pds_request *r, int status)
{
    if (status != 0 && status != UV_ECANCELED)
        log_event(LOG_LEVEL_INFO, r->request_id, "pds request failed",
                  json_pack("{s:s,s:s,s:I,s:i}", "op", pds_request_op_name(r), "error",
                            err_name(status), "http_status", (json_int_t)r->res.http_status,
                            "attempts", (int)r->res.attempts));
    r->cb(status, status == UV_ECANCELED ? NULL : &r->res, r->arg);
    pds_request_free(r);
}

/* The status a waiting request is to be answered with now, or 0 to leave it waiting. */
typedef int answer_fn(const struct pds_request *r, uint64_t now, int status);

/* Whether a waiting request should go without being sent: its caller left (then it must
 * not spend the rate budget) or its deadline passed. */
static int stale_status(const struct pds_request *r, uint64_t now, int status)
{
    UNUSED(status);
    if (r->gone != NULL && r->gone(r->arg))
        return UV_ECANCELED;
    return r->deadline_ns != 0 && now >= r->deadline_ns ? ERR_UPSTREAM_TIMEOUT : 0;
}

static int given_status(const struct pds_request *r, uint64_t now, int status)
{
    UNUSED(r);
    UNUSED(now);
    return status;
}

/* Answers every request of list w that fn gives a status, in order. All of them are taken
 * off before the first callback runs: a callback may queue new requests, which wait. */
static void answer_list(struct pds_client *pc, enum pds_where w, answer_fn *fn, int status,
                        uint64_t now)
{
    struct list_node done, *node, *tmp;
    list_init(&done);
    LIST_FOREACH_SAFE(node, tmp, &pc->lists[w])
    {
        struct pds_request *r = LIST_ENTRY(node, struct pds_request, link);
        if (fn(r, now, status) != 0) {
            take(r);
            list_push_tail(&done, &r->link);
        }
    }
    while ((node = list_first(&done)) != NULL) {
        struct pds_request *r = LIST_ENTRY(node, struct pds_request, link);
        list_remove(node);
        complete(r, fn(r, now, status));
    }
}

/* Fails every queued request; new ones queued by the callbacks stay queued. */
static void fail_queue(struct pds_client *pc, int status)
{
    answer_list(pc, PDS_QUEUED_TRACE, given_status, status, uv_hrtime());
    answer_list(pc, PDS_QUEUED_BULK, given_status, status, uv_hrtime());
}

/* ---- retries ---- */

/* Completes r with ERR_UPSTREAM_TIMEOUT instead when the retry would fall after the
 * caller's deadline: waiting for it could only end in a timeout. */
static void schedule_retry(struct pds_request *r, int code, const struct http_client_response *res)
{
    uint64_t delay = pds_retry_delay_ms(&r->pc->cfg, r->counted, res);
    r->due_ns = uv_hrtime() + delay * PDS_NS_PER_MS;
    if (r->deadline_ns != 0 && r->due_ns >= r->deadline_ns) {
        complete(r, ERR_UPSTREAM_TIMEOUT);
        return;
    }
    place(r, PDS_BACKOFF, false);
    log_event(LOG_LEVEL_INFO, r->request_id, "pds retry",
              json_pack("{s:s,s:i,s:I,s:s,s:I}", "op", pds_request_op_name(r), "attempt",
                        (int)r->res.attempts, "http_status", (json_int_t)r->res.http_status,
                        "error", err_name(code), "delay_ms", (json_int_t)delay));
}

/* Retries go before new requests: they are older, and a trace is waiting on them. */
static void requeue_due(struct pds_client *pc, uint64_t now)
{
    struct list_node *node, *tmp;
    LIST_FOREACH_SAFE(node, tmp, &pc->lists[PDS_BACKOFF])
    {
        struct pds_request *r = LIST_ENTRY(node, struct pds_request, link);
        if (r->due_ns <= now)
            place(r, queue_of(r), true);
    }
}

/* The earliest retry time (backoff) or caller's deadline (queue) on list w, or UINT64_MAX. */
static uint64_t earliest(const struct pds_client *pc, enum pds_where w)
{
    uint64_t min = UINT64_MAX;
    struct list_node *node, *tmp;
    LIST_FOREACH_SAFE(node, tmp, &pc->lists[w])
    {
        const struct pds_request *r = LIST_ENTRY(node, struct pds_request, link);
        uint64_t t = w == PDS_BACKOFF ? r->due_ns : r->deadline_ns;
        if (t != 0 && t < min)
            min = t;
    }
    return min;
}

/* ---- attempts ---- */

static const struct metrics_family families[] = {
    {"pdstrace_pds_requests_total", METRICS_COUNTER,
     "PDS requests by operation and HTTP status (error: none)"},
    {"pdstrace_pds_request_duration_seconds", METRICS_HISTOGRAM,
     "PDS request latency by operation"},
};

/* Every attempt is counted by HTTP status ("error" when none came) and timed, for
 * /metrics (DESIGN.md §3). */
static void observe_attempt(const struct pds_request *r, const struct http_client_response *res)
{
    struct metrics *m = r->pc->cfg.metrics;
    const char *op = pds_request_op_name(r);
    char labels[64];
    if (res != NULL)
        snprintf(labels, sizeof(labels), "op=\"%s\",status=\"%ld\"", op, res->status);
    else
        snprintf(labels, sizeof(labels), "op=\"%s\",status=\"error\"", op);
    metrics_inc(m, "pdstrace_pds_requests_total", labels, 1);
    if (res != NULL) {
        snprintf(labels, sizeof(labels), "op=\"%s\"", op);
        metrics_observe(m, "pdstrace_pds_request_duration_seconds", labels, res->seconds);
    }
}

static void log_attempt(const struct pds_request *r, int status,
                        const struct http_client_response *res)
{
    observe_attempt(r, res);
    if (!log_enabled(LOG_LEVEL_DEBUG))
        return;
    log_event(LOG_LEVEL_DEBUG, r->request_id, "pds attempt",
              json_pack("{s:s,s:i,s:I,s:s,s:f}", "op", pds_request_op_name(r), "attempt",
                        (int)r->res.attempts, "http_status",
                        (json_int_t)(res != NULL ? res->status : 0), "result",
                        status ? err_name(status) : "answer", "seconds",
                        res != NULL ? res->seconds : 0.0));
}

/* A 401 means the token was revoked or expired early: drop it, and try once more at the
 * front of the queue without counting the attempt. */
static void reauth(struct pds_request *r)
{
    struct pds_client *pc = r->pc;
    r->auth_retried = true;
    r->counted--;
    if (r->token != NULL)
        token_invalidate(pc->tokens, r->token);
    log_event(
        LOG_LEVEL_INFO, r->request_id, "pds retry after 401",
        json_pack("{s:s,s:i}", "op", pds_request_op_name(r), "attempt", (int)r->res.attempts));
    place(r, queue_of(r), true);
}

static void on_http(int status, const struct http_client_response *res, void *arg)
{
    struct pds_request *r = arg;
    struct pds_client *pc = r->pc;
    int code;

    if (pc == NULL) {
        /* pds_client_free already answered UV_ECANCELED. */
        pds_request_free(r);
        return;
    }
    take(r);
    log_attempt(r, status, res);
    enum pds_verdict v = pds_retry_judge(r, status, res, pc->tokens != NULL, &code);
    if (v == PDS_VERDICT_REAUTH)
        reauth(r);
    else if (v == PDS_VERDICT_RETRY && r->counted < pc->cfg.max_attempts)
        schedule_retry(r, code, res);
    else
        complete(r, code);
    if (!pc->closing)
        pump(pc);
}

/* libcurl re-sends a request by itself when the reused connection it went out on died
 * unanswered (CONVENTIONS §1.1 pitfall 15). pump() charged the first send of an attempt;
 * every further one must take its own token from the same bucket, or it is stopped and
 * the attempt ends in ERR_UPSTREAM, whose retry waits for the budget like any other.
 * Runs inside a curl callback: bookkeeping only. */
static int on_send(unsigned n, void *arg)
{
    struct pds_request *r = arg;
    struct pds_client *pc = r->pc;

    if (n == 1)
        return 0;
    /* An attempt that went on a slot reserved in Redis cannot reserve another from inside
     * curl: it is stopped too, and its retry reserves one like any send. */
    if (pc == NULL || pc->closing || r->shared_slot || ratelimit_take(&pc->rl, uv_hrtime()) != 0)
        return -1;
    /* The send before this one reached PDS and got no answer: it is an attempt too. */
    observe_attempt(r, NULL);
    r->res.attempts++;
    r->counted++;
    pc->sent++;
    return 0;
}

static int send_attempt(struct pds_client *pc, struct pds_request *r, const char *token)
{
    struct pds_headers h;
    free(r->token);
    r->token = NULL;
    if (token != NULL && (r->token = strdup(token)) == NULL)
        return UV_ENOMEM;
    int err = pds_request_headers(&h, r, pc->ods_code);
    struct http_client_request req = {
        .method = "GET",
        .url = r->url,
        .headers = h.lines,
        .timeout_ms = pds_retry_attempt_timeout_ms(pc->cfg.timeout_ms, r->deadline_ns, uv_hrtime()),
        .max_response_bytes = MAX_RESPONSE_BYTES,
        .tls = &pc->cfg.tls,
        .on_send = on_send,
        .send_arg = r};
    if (!err)
        err = http_client_request(pc->http, &req, on_http, r);
    pds_request_headers_free(&h);
    if (err)
        return err;
    r->res.attempts++;
    r->counted++;
    pc->sent++;
    place(r, PDS_SENT, false);
    return 0;
}

/* ---- tokens ---- */

static void on_token(int status, const char *token, void *arg)
{
    struct pds_token_wait *tw = arg;
    struct pds_client *pc = tw->pc;
    UNUSED(token);
    free(tw);
    if (pc == NULL)
        return;
    pc->token_wait = NULL;
    /* The token source failed every waiter at once; so do we, or a queue of thousands
     * would each ask the token endpoint again. */
    if (status != 0)
        fail_queue(pc, status);
    if (!pc->closing)
        pump(pc);
}

/* Sets *token to what the next attempt should carry. False while a token is being fetched
 * (on_token pumps again), or when fetching could not start (the queue has failed). */
static bool auth_ready(struct pds_client *pc, const char **token)
{
    *token = NULL;
    if (pc->tokens == NULL)
        return true;
    *token = token_peek(pc->tokens);
    if (*token != NULL)
        return true;
    if (pc->token_wait != NULL)
        return false;
    struct pds_token_wait *tw = calloc(1, sizeof(*tw));
    int err = tw != NULL ? token_get(pc->tokens, on_token, tw) : UV_ENOMEM;
    if (err) {
        free(tw);
        fail_queue(pc, err);
        return false;
    }
    tw->pc = pc;
    pc->token_wait = tw;
    return false;
}

/* ---- slots of the shared limiter ---- */

/* A refused reservation holds back requests of its priority and below until Redis said. */
static void refused(struct pds_client *pc, enum pds_priority prio, uint64_t again_ns)
{
    for (unsigned p = prio; p < PDS_PRIORITIES; p++)
        pc->again_ns[p] = again_ns;
}

static void on_slot(int status, const struct pds_rate_slot *slot, void *arg)
{
    struct pds_client *pc = arg;
    if (status == UV_ECANCELED)
        return;
    pc->reserving = false;
    if (status != 0)
        /* Redis is away: this request is spaced by the local bucket alone. */
        pc->slot = (struct pds_slot){.held = true, .at_ns = uv_hrtime()};
    else if (slot->reserved)
        pc->slot = (struct pds_slot){.held = true, .shared = true, .at_ns = slot->at_ns};
    else
        refused(pc, pc->reserving_prio, slot->at_ns);
    pump(pc);
}

/* How long a held slot makes the next request wait: 0 when it may go now, UINT64_MAX when
 * the slot is no good any more. A shared slot used late crowds the slot after it, which may
 * be another instance's: past half an interval it is dropped. */
static uint64_t held_wait(const struct pds_client *pc, uint64_t now)
{
    const struct pds_slot *s = &pc->slot;
    if (!s->held)
        return UINT64_MAX;
    if (!s->shared)
        return 0;
    if (now < s->at_ns)
        return s->at_ns - now;
    return now - s->at_ns <= pc->interval_ns / 2 ? 0 : UINT64_MAX;
}

/* How long the next request (of priority prio) waits for its slot: 0 when it has one it
 * may use now, or none is needed (no Redis, or Redis away: the local bucket alone decides);
 * UINT64_MAX while a reservation is in flight, which pumps when it answers. A slot is
 * reserved only here, for a request that can go, one at a time. */
static uint64_t slot_wait(struct pds_client *pc, enum pds_priority prio, uint64_t now)
{
    uint64_t wait = held_wait(pc, now);
    if (wait != UINT64_MAX)
        return wait;
    pc->slot.held = false;
    if (pc->rate == NULL)
        return 0;
    if (pc->reserving)
        return UINT64_MAX;
    if (pc->again_ns[prio] > now)
        return pc->again_ns[prio] - now;
    if (pds_rate_reserve(pc->rate, prio, on_slot, pc) != 0) {
        pc->slot = (struct pds_slot){.held = true, .at_ns = now};
        return 0;
    }
    pc->reserving = true;
    pc->reserving_prio = prio;
    return UINT64_MAX;
}

/* 0 when the next request may go now: its slot is taken, and a token of the local bucket,
 * which also spaces this process's own requests when it moves between Redis and the
 * bucket alone. Otherwise how long to wait (UINT64_MAX: for a reservation). */
static uint64_t clear_to_send(struct pds_client *pc, enum pds_priority prio, uint64_t now)
{
    uint64_t wait = slot_wait(pc, prio, now);
    if (wait == 0)
        wait = ratelimit_take(&pc->rl, now);
    if (wait != 0)
        return wait;
    pc->shared = pc->slot.held && pc->slot.shared;
    pc->slot.held = false;
    return 0;
}

/* ---- scheduling ---- */

static void on_timer(uv_timer_t *t)
{
    pump(container_of(t, struct pds_client, timer));
}

/* One timer for the whole client: the earliest of the slot or the local token a request
 * waits for (rate_wait_ns; 0 or UINT64_MAX: none), the first retry that falls due and the
 * first deadline of a queued request. */
static void arm(struct pds_client *pc, uint64_t rate_wait_ns, uint64_t now)
{
    uint64_t wait = rate_wait_ns ? rate_wait_ns : UINT64_MAX;
    for (enum pds_where w = PDS_QUEUED_TRACE; w <= PDS_BACKOFF; w++) {
        uint64_t at = earliest(pc, w);
        uint64_t d = at > now ? at - now : 0;
        if (at != UINT64_MAX && d < wait)
            wait = d;
    }
    if (wait == UINT64_MAX) {
        uv_timer_stop(&pc->timer);
        return;
    }
    /* Round up: a timer a hair early would only find the token missing and re-arm. */
    uv_update_time(pc->loop);
    uv_timer_start(&pc->timer, on_timer, (wait + PDS_NS_PER_MS - 1) / PDS_NS_PER_MS, 0);
}

static void pump(struct pds_client *pc)
{
    uint64_t now = uv_hrtime();
    uint64_t wait_ns = 0;
    const char *token;

    answer_list(pc, PDS_BACKOFF, stale_status, 0, now);
    answer_list(pc, PDS_QUEUED_TRACE, stale_status, 0, now);
    answer_list(pc, PDS_QUEUED_BULK, stale_status, 0, now);
    requeue_due(pc, now);
    while (!pc->closing && waiting(pc) > 0 && pc->counts[PDS_SENT] < pc->cfg.concurrency) {
        if (!auth_ready(pc, &token))
            break;
        struct pds_request *r = next_waiting(pc);
        int stale = stale_status(r, now, 0);
        if (stale != 0) {
            take(r);
            complete(r, stale);
            continue;
        }
        wait_ns = clear_to_send(pc, r->priority, now);
        if (wait_ns)
            break;
        take(r);
        r->shared_slot = pc->shared;
        int err = send_attempt(pc, r, token);
        if (err)
            complete(r, err);
        now = uv_hrtime();
    }
    if (!pc->closing)
        arm(pc, wait_ns, now);
}

/* Runs the queue on the next loop turn, never inside the caller's call. */
static void kick(struct pds_client *pc)
{
    uv_timer_start(&pc->timer, on_timer, 0, 0);
}

/* ---- lifetime ---- */

static int check_config(const struct pds_client_config *cfg)
{
    if (cfg == NULL || cfg->base_url == NULL || cfg->base_url[0] == '\0')
        return ERR_CONFIG;
    if (!(cfg->rate > 0) || cfg->concurrency == 0 || cfg->max_attempts == 0)
        return ERR_CONFIG;
    if (cfg->ods_code != NULL && !pds_request_is_printable(cfg->ods_code, PDS_MAX_ODS_LEN))
        return ERR_CONFIG;
    return pds_request_is_printable(cfg->base_url, MAX_BASE_URL_LEN) ? 0 : ERR_CONFIG;
}

static void apply_defaults(struct pds_client_config *c)
{
    if (c->backoff_base_ms == 0)
        c->backoff_base_ms = DEFAULT_BACKOFF_BASE_MS;
    if (c->backoff_max_ms == 0)
        c->backoff_max_ms = DEFAULT_BACKOFF_MAX_MS;
    if (c->max_queue == 0)
        c->max_queue = DEFAULT_MAX_QUEUE;
}

static void client_free(struct pds_client *pc)
{
    free(pc->base_url);
    free(pc->ods_code);
    free(pc);
}

/* A client with its own copy of cfg (the base URL without trailing slashes), its lists
 * empty; NULL when out of memory. */
static struct pds_client *client_alloc(const struct pds_client_config *cfg)
{
    struct pds_client *pc = calloc(1, sizeof(*pc));
    size_t n = strlen(cfg->base_url);
    bool ods = cfg->ods_code != NULL && cfg->ods_code[0] != '\0';
    if (pc == NULL)
        return NULL;
    while (n > 0 && cfg->base_url[n - 1] == '/')
        n--;
    pc->base_url = strndup(cfg->base_url, n);
    pc->ods_code = ods ? strdup(cfg->ods_code) : NULL;
    if (pc->base_url == NULL || (ods && pc->ods_code == NULL)) {
        client_free(pc);
        return NULL;
    }
    pc->cfg = *cfg;
    pc->cfg.base_url = pc->base_url;
    pc->cfg.ods_code = pc->ods_code;
    pc->cfg.key_prefix = NULL; /* pds_rate keeps its own copy */
    apply_defaults(&pc->cfg);
    for (size_t i = 0; i < PDS_LISTS; i++)
        list_init(&pc->lists[i]);
    return pc;
}

int pds_client_new(struct pds_client **out, uv_loop_t *loop, struct http_client *http,
                   struct token_source *tokens, const struct pds_client_config *cfg)
{
    if (out == NULL || loop == NULL || http == NULL)
        return ERR_INVALID_INPUT;
    int err = check_config(cfg);
    err = err ? err : metrics_declare(cfg->metrics, families, ARRAY_SIZE(families));
    struct pds_client *pc = err ? NULL : client_alloc(cfg);
    if (pc == NULL)
        return err ? err : UV_ENOMEM;
    pc->loop = loop;
    pc->http = http;
    pc->tokens = tokens;
    /* Burst 1: no two requests closer than the interval, whatever PDS's window looks like;
     * the same margin as the shared slots (pds_rate.h). */
    ratelimit_init(&pc->rl, cfg->rate / PDS_RATE_MARGIN, 1, uv_hrtime());
    pc->interval_ns = pds_rate_interval_ns(cfg->rate);
    struct pds_rate_config rc = {cfg->rate, cfg->redis, cfg->key_prefix, cfg->metrics};
    err = cfg->redis != NULL ? pds_rate_new(&pc->rate, &rc) : 0;
    if (err) {
        client_free(pc);
        return err;
    }
    uv_timer_init(loop, &pc->timer);
    *out = pc;
    return 0;
}

static void on_close(uv_handle_t *h)
{
    client_free(container_of((uv_timer_t *)h, struct pds_client, timer));
}

/* Transfers cannot be cancelled one by one: answer now, and let on_http free the request
 * when the http client reports it (it cancels its transfers when the app frees it). */
static void cancel_sent(struct pds_client *pc)
{
    struct pds_request *r;
    while ((r = first(pc, PDS_SENT)) != NULL) {
        take(r);
        r->pc = NULL;
        r->cb(UV_ECANCELED, NULL, r->arg);
    }
}

void pds_client_free(struct pds_client *pc)
{
    if (pc == NULL || pc->closing)
        return;
    pc->closing = true;
    uv_timer_stop(&pc->timer);
    pds_rate_free(pc->rate);
    pc->rate = NULL;
    if (pc->token_wait != NULL) {
        pc->token_wait->pc = NULL;
        pc->token_wait = NULL;
    }
    answer_list(pc, PDS_QUEUED_TRACE, given_status, UV_ECANCELED, 0);
    answer_list(pc, PDS_QUEUED_BULK, given_status, UV_ECANCELED, 0);
    answer_list(pc, PDS_BACKOFF, given_status, UV_ECANCELED, 0);
    cancel_sent(pc);
    uv_close((uv_handle_t *)&pc->timer, on_close);
}

/* ---- requests ---- */

static int check_call(struct pds_client *pc, const struct pds_call *call, pds_cb *cb)
{
    const char *correlation_id = call != NULL ? call->correlation_id : NULL;
    if (pc == NULL || cb == NULL)
        return ERR_INVALID_INPUT;
    if (pc->closing)
        return UV_ECANCELED;
    if (correlation_id != NULL &&
        !pds_request_is_printable(correlation_id, PDS_MAX_CORRELATION_LEN))
        return ERR_INVALID_INPUT;
    if (call != NULL && (unsigned)call->priority >= PDS_PRIORITIES)
        return ERR_INVALID_INPUT;
    /* Each priority has its own room, so bulk rows can never crowd out single traces. */
    bool bulk = call != NULL && call->priority == PDS_PRIORITY_BULK;
    unsigned queued = pc->counts[bulk ? PDS_QUEUED_BULK : PDS_QUEUED_TRACE];
    return queued >= pc->cfg.max_queue ? ERR_RATE_LIMITED : 0;
}

/* A search (what: the query) or a retrieve (what: the NHS number), queued. */
static int submit(struct pds_client *pc, enum pds_op op, const char *what,
                  const struct pds_call *call, pds_cb *cb, void *arg)
{
    char *url = NULL;
    int err = check_call(pc, call, cb);
    err = err ? err : pds_request_url(&url, op, pc->base_url, what);
    struct pds_request *r = err ? NULL : pds_request_new(op, url, call, cb, arg);
    if (r == NULL)
        return err ? err : UV_ENOMEM;
    r->pc = pc;
    place(r, queue_of(r), false);
    kick(pc);
    return 0;
}

int pds_client_search(struct pds_client *pc, const char *query, const struct pds_call *call,
                      pds_cb *cb, void *arg)
{
    return submit(pc, PDS_SEARCH, query, call, cb, arg);
}

int pds_client_retrieve(struct pds_client *pc, const char *nhs_number, const struct pds_call *call,
                        pds_cb *cb, void *arg)
{
    return submit(pc, PDS_RETRIEVE, nhs_number, call, cb, arg);
}

uint64_t pds_client_requests_sent(const struct pds_client *pc)
{
    return pc != NULL ? pc->sent : 0;
}
