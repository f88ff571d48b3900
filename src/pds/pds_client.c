#include "pdstrace/pds_client.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/http_client.h"
#include "pdstrace/log.h"
#include "pdstrace/metrics.h"
#include "pdstrace/macros.h"
#include "pdstrace/ratelimit.h"
#include "pdstrace/token.h"

/* The scheduling (one queue, one timer, one token bucket) is described in
 * docs/internals/pds_client.md. */

#define DEFAULT_BACKOFF_BASE_MS 200u
#define DEFAULT_BACKOFF_MAX_MS  10000u
#define DEFAULT_MAX_QUEUE       100000u
#define RETRY_AFTER_MAX_S       60L
#define MAX_CORRELATION_LEN     128
#define MAX_ODS_LEN             64
#define MAX_QUERY_LEN           4096
#define MAX_TOKEN_LEN           8192
#define MAX_RESPONSE_BYTES      (1024u * 1024u)
#define NS_PER_MS               1000000ull

enum pds_op { PDS_SEARCH, PDS_RETRIEVE };

/* What one attempt's answer means for the request. */
enum verdict { VERDICT_DONE, VERDICT_RETRY, VERDICT_REAUTH };

struct pds_request {
    struct pds_client *pc; /* NULL once pds_client_free has answered it */
    struct pds_request *prev, *next;
    enum pds_op op;
    char *url;
    char correlation_id[MAX_CORRELATION_LEN + 1];
    char request_id[CRYPTO_UUID_SIZE]; /* the same on every attempt: PDS de-duplicates */
    char *token;                       /* bearer token of the attempt in flight */
    unsigned counted;                  /* attempts that count against max_attempts */
    bool auth_retried;
    uint64_t due_ns;      /* while backing off: when it may queue again */
    uint64_t deadline_ns; /* the caller's deadline (uv_hrtime); 0: none */
    pds_gone_fn *gone;    /* NULL, or true once nobody waits for the answer */
    pds_cb *cb;
    void *arg;
    struct pds_response res;
};

struct pds_list {
    struct pds_request *head, *tail;
    unsigned n;
};

/* The argument of a token_get in flight; pc is cleared when the client goes first. */
struct pds_token_wait {
    struct pds_client *pc;
};

struct pds_client {
    uv_loop_t *loop;
    struct http_client *http;
    struct token_source *tokens;
    struct pds_client_config cfg;
    char *base_url;
    char *ods_code;
    struct ratelimit rl;
    uv_timer_t timer;
    struct pds_list queue;   /* waiting for the rate limit or the concurrency cap */
    struct pds_list backoff; /* waiting for their retry time */
    struct pds_list sent;    /* attempts in flight */
    struct pds_token_wait *token_wait;
    bool closing;
};

static void pump(struct pds_client *pc);

/* ---- lists ---- */

static void list_push_tail(struct pds_list *l, struct pds_request *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->n++;
}

static void list_push_head(struct pds_list *l, struct pds_request *r)
{
    r->prev = NULL;
    r->next = l->head;
    if (l->head != NULL)
        l->head->prev = r;
    else
        l->tail = r;
    l->head = r;
    l->n++;
}

static void list_remove(struct pds_list *l, struct pds_request *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->n--;
}

/* ---- completion ---- */

static void request_free(struct pds_request *r)
{
    free(r->url);
    free(r->token);
    free(r);
}

static const char *op_name(const struct pds_request *r)
{
    return r->op == PDS_SEARCH ? "search" : "retrieve";
}

/* The request is on no list any more. The callback may start requests or free the
 * client; the client's memory outlives this call either way (it goes in a close cb). */
static void complete(struct pds_request *r, int status)
{
    if (status != 0 && status != UV_ECANCELED)
        log_event(LOG_LEVEL_INFO, r->request_id, "pds request failed",
                  json_pack("{s:s,s:s,s:I,s:i}", "op", op_name(r), "error", err_name(status),
                            "http_status", (json_int_t)r->res.http_status, "attempts",
                            (int)r->res.attempts));
    r->cb(status, status == UV_ECANCELED ? NULL : &r->res, r->arg);
    request_free(r);
}

/* Fails every queued request; new ones queued by the callbacks stay queued. */
static void fail_queue(struct pds_client *pc, int status)
{
    struct pds_list l = pc->queue;
    memset(&pc->queue, 0, sizeof(pc->queue));
    while (l.head != NULL) {
        struct pds_request *r = l.head;
        list_remove(&l, r);
        complete(r, status);
    }
}

/* ---- retries ---- */

static bool is_retryable_status(long s)
{
    return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

/* Retry-After in delta-seconds; the HTTP-date form is ignored in favour of our backoff. */
static bool parse_retry_after(const char *v, long *secs)
{
    char *end = NULL;
    if (v == NULL || *v < '0' || *v > '9')
        return false;
    long n = strtol(v, &end, 10);
    if (*end != '\0' || n < 0)
        return false;
    *secs = n > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : n;
    return true;
}

/* Exponential backoff with "equal jitter": half the delay is fixed so that a server
 * answering 429 is never hammered at once, the other half random so that clients spread. */
static uint64_t backoff_ms(const struct pds_client *pc, unsigned attempt)
{
    unsigned shift = attempt > 1 ? attempt - 1 : 0;
    uint64_t d = pc->cfg.backoff_base_ms;
    uint32_t rnd = 0;

    if (shift > 20)
        shift = 20;
    d <<= shift;
    if (d > pc->cfg.backoff_max_ms)
        d = pc->cfg.backoff_max_ms;
    if (crypto_random(&rnd, sizeof(rnd)) != 0)
        rnd = 0;
    return d / 2 + (d / 2 > 0 ? rnd % (d / 2 + 1) : 0);
}

static uint64_t retry_delay_ms(const struct pds_request *r, const struct http_client_response *res)
{
    long secs;
    const char *ra = res != NULL ? http_client_response_header(res, "Retry-After") : NULL;
    if (parse_retry_after(ra, &secs))
        return (uint64_t)secs * 1000u;
    return backoff_ms(r->pc, r->counted);
}

/* Returns false, having completed r with code, when the retry would fall after the
 * caller's deadline: waiting for it could only end in a timeout. */
static bool schedule_retry(struct pds_request *r, int code, const struct http_client_response *res)
{
    uint64_t delay = retry_delay_ms(r, res);
    r->due_ns = uv_hrtime() + delay * NS_PER_MS;
    if (r->deadline_ns != 0 && r->due_ns >= r->deadline_ns) {
        complete(r, ERR_UPSTREAM_TIMEOUT);
        return false;
    }
    list_push_tail(&r->pc->backoff, r);
    log_event(LOG_LEVEL_INFO, r->request_id, "pds retry",
              json_pack("{s:s,s:i,s:I,s:s,s:I}", "op", op_name(r), "attempt", (int)r->res.attempts,
                        "http_status", (json_int_t)r->res.http_status, "error", err_name(code),
                        "delay_ms", (json_int_t)delay));
    return true;
}

/* Retries go before new requests: they are older, and a trace is waiting on them. */
static void requeue_due(struct pds_client *pc, uint64_t now)
{
    struct pds_request *r = pc->backoff.head;
    while (r != NULL) {
        struct pds_request *next = r->next;
        if (r->due_ns <= now) {
            list_remove(&pc->backoff, r);
            list_push_head(&pc->queue, r);
        }
        r = next;
    }
}

/* Whether a waiting request should go without being sent: its caller left (then it must
 * not spend the rate budget) or its deadline passed. */
static int stale_status(const struct pds_request *r, uint64_t now)
{
    if (r->gone != NULL && r->gone(r->arg))
        return UV_ECANCELED;
    return r->deadline_ns != 0 && now >= r->deadline_ns ? ERR_UPSTREAM_TIMEOUT : 0;
}

/* Answers every waiting request whose caller left or whose deadline passed, so that it
 * neither holds a queue place nor delays the live ones behind it. */
static void expire_list(struct pds_list *l, uint64_t now)
{
    struct pds_list done = {0};
    for (struct pds_request *r = l->head, *next; r != NULL; r = next) {
        next = r->next;
        if (stale_status(r, now) != 0) {
            list_remove(l, r);
            list_push_tail(&done, r);
        }
    }
    /* Completed only now: a callback may queue requests on l. */
    while (done.head != NULL) {
        struct pds_request *r = done.head;
        list_remove(&done, r);
        complete(r, stale_status(r, now));
    }
}

/* The earliest deadline of the waiting requests, or UINT64_MAX. */
static uint64_t next_deadline(const struct pds_list *l)
{
    uint64_t min = UINT64_MAX;
    for (const struct pds_request *r = l->head; r != NULL; r = r->next)
        if (r->deadline_ns != 0 && r->deadline_ns < min)
            min = r->deadline_ns;
    return min;
}

/* ---- answers ---- */

static int parse_body(struct pds_request *r, const struct http_client_response *res)
{
    memset(&r->res.result, 0, sizeof(r->res.result));
    if (res->body_len == 0)
        return ERR_PARSE;
    if (r->op == PDS_SEARCH)
        return fhir_parse_search(res->body, res->body_len, &r->res.result);
    return fhir_parse_patient(res->body, res->body_len, &r->res.result);
}

static enum verdict judge_http(struct pds_request *r, const struct http_client_response *res,
                               int *code)
{
    long s = res->status;
    int perr = parse_body(r, res);

    *code = 0;
    if (s >= 200 && s < 300) {
        *code = perr ? ERR_PARSE : 0;
        return VERDICT_DONE;
    }
    /* Retrieve's 404 is an answer (RESOURCE_NOT_FOUND or INVALIDATED_RESOURCE); a 404
     * without an OperationOutcome means a wrong base URL, which no retry mends. */
    if (s == 404 && r->op == PDS_RETRIEVE && r->res.result.kind == FHIR_ERROR)
        return VERDICT_DONE;
    if (s == 401 && r->pc->tokens != NULL && !r->auth_retried)
        return VERDICT_REAUTH;
    if (is_retryable_status(s)) {
        *code = s == 408 ? ERR_UPSTREAM_TIMEOUT : ERR_UPSTREAM;
        return VERDICT_RETRY;
    }
    *code = s >= 400 && s < 500 ? ERR_UPSTREAM_REJECTED : ERR_UPSTREAM;
    return VERDICT_DONE;
}

static enum verdict judge(struct pds_request *r, int status, const struct http_client_response *res,
                          int *code)
{
    r->res.http_status = res != NULL ? res->status : 0;
    if (status == 0)
        return judge_http(r, res, code);
    memset(&r->res.result, 0, sizeof(r->res.result));
    /* Connection failures and timeouts are worth another try; a body over the ceiling is
     * not, it would only be as large again, and neither is ERR_UPSTREAM_TLS: a refused
     * certificate stays refused (http_client has logged it once). */
    *code = status == ERR_TOO_LARGE ? ERR_UPSTREAM : status;
    if (status == ERR_UPSTREAM || status == ERR_UPSTREAM_TIMEOUT)
        return VERDICT_RETRY;
    return VERDICT_DONE;
}

/* Every attempt is counted by HTTP status ("error" when none came) and timed, for
 * /metrics (DESIGN.md §3). */
static void observe_attempt(const struct pds_request *r, const struct http_client_response *res)
{
    char labels[64];
    if (res != NULL)
        snprintf(labels, sizeof(labels), "op=\"%s\",status=\"%ld\"", op_name(r), res->status);
    else
        snprintf(labels, sizeof(labels), "op=\"%s\",status=\"error\"", op_name(r));
    metrics_inc("pdstrace_pds_requests_total", labels, 1);
    if (res != NULL) {
        snprintf(labels, sizeof(labels), "op=\"%s\"", op_name(r));
        metrics_observe("pdstrace_pds_request_duration_seconds", labels, res->seconds);
    }
}

static void log_attempt(const struct pds_request *r, int status,
                        const struct http_client_response *res)
{
    observe_attempt(r, res);
    if (!log_enabled(LOG_LEVEL_DEBUG))
        return;
    log_event(LOG_LEVEL_DEBUG, r->request_id, "pds attempt",
              json_pack("{s:s,s:i,s:I,s:s,s:f}", "op", op_name(r), "attempt", (int)r->res.attempts,
                        "http_status", (json_int_t)(res != NULL ? res->status : 0), "result",
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
    log_event(LOG_LEVEL_INFO, r->request_id, "pds retry after 401",
              json_pack("{s:s,s:i}", "op", op_name(r), "attempt", (int)r->res.attempts));
    list_push_head(&pc->queue, r);
}

static void on_http(int status, const struct http_client_response *res, void *arg)
{
    struct pds_request *r = arg;
    struct pds_client *pc = r->pc;
    int code;

    if (pc == NULL) {
        /* pds_client_free already answered UV_ECANCELED. */
        request_free(r);
        return;
    }
    list_remove(&pc->sent, r);
    log_attempt(r, status, res);
    enum verdict v = judge(r, status, res, &code);
    if (v == VERDICT_REAUTH)
        reauth(r);
    else if (v == VERDICT_RETRY && r->counted < pc->cfg.max_attempts)
        schedule_retry(r, code, res);
    else
        complete(r, code);
    if (!pc->closing)
        pump(pc);
}

/* ---- sending ---- */

struct pds_headers {
    char request_id[64];
    char correlation[MAX_CORRELATION_LEN + 32];
    char ods[MAX_ODS_LEN + 40];
    struct buf auth;
    const char *lines[6];
};

static int build_headers(struct pds_headers *h, const struct pds_request *r,
                         const struct pds_client *pc)
{
    size_t n = 0;
    h->lines[n++] = "Accept: application/fhir+json";
    snprintf(h->request_id, sizeof(h->request_id), "X-Request-ID: %s", r->request_id);
    h->lines[n++] = h->request_id;
    if (r->correlation_id[0] != '\0') {
        snprintf(h->correlation, sizeof(h->correlation), "X-Correlation-ID: %s", r->correlation_id);
        h->lines[n++] = h->correlation;
    }
    if (pc->ods_code != NULL) {
        snprintf(h->ods, sizeof(h->ods), "NHSD-End-User-Organisation-ODS: %s", pc->ods_code);
        h->lines[n++] = h->ods;
    }
    buf_init(&h->auth, MAX_TOKEN_LEN + 32);
    if (r->token != NULL) {
        int err = buf_appendf(&h->auth, "Authorization: Bearer %s", r->token);
        if (err)
            return err;
        h->lines[n++] = buf_cstr(&h->auth);
    }
    h->lines[n] = NULL;
    return 0;
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
    if (pc == NULL || pc->closing || ratelimit_take(&pc->rl, uv_hrtime()) != 0)
        return -1;
    /* The send before this one reached PDS and got no answer: it is an attempt too. */
    observe_attempt(r, NULL);
    r->res.attempts++;
    r->counted++;
    return 0;
}

/* An attempt never outlives its caller's deadline: a hung PDS ends the trace on time. */
static unsigned attempt_timeout_ms(const struct pds_client *pc, const struct pds_request *r)
{
    uint64_t now = uv_hrtime();
    if (r->deadline_ns == 0)
        return pc->cfg.timeout_ms;
    uint64_t left = r->deadline_ns > now ? (r->deadline_ns - now) / NS_PER_MS : 0;
    return left < 1 ? 1 : left < pc->cfg.timeout_ms ? (unsigned)left : pc->cfg.timeout_ms;
}

static int send_attempt(struct pds_client *pc, struct pds_request *r, const char *token)
{
    struct pds_headers h;
    free(r->token);
    r->token = NULL;
    if (token != NULL && (r->token = strdup(token)) == NULL)
        return UV_ENOMEM;
    int err = build_headers(&h, r, pc);
    struct http_client_request req = {.method = "GET",
                                      .url = r->url,
                                      .headers = h.lines,
                                      .timeout_ms = attempt_timeout_ms(pc, r),
                                      .max_response_bytes = MAX_RESPONSE_BYTES,
                                      .tls = &pc->cfg.tls,
                                      .on_send = on_send,
                                      .send_arg = r};
    if (!err)
        err = http_client_request(pc->http, &req, on_http, r);
    buf_free(&h.auth);
    if (err)
        return err;
    r->res.attempts++;
    r->counted++;
    list_push_tail(&pc->sent, r);
    return 0;
}

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

/* ---- scheduling ---- */

static void on_timer(uv_timer_t *t)
{
    pump(container_of(t, struct pds_client, timer));
}

/* One timer for the whole client: the earlier of the next rate-limit token (when a
 * request is waiting for one) and the first retry that falls due. */
static void arm(struct pds_client *pc, uint64_t rate_wait_ns, uint64_t now)
{
    uint64_t wait = rate_wait_ns ? rate_wait_ns : UINT64_MAX;
    for (struct pds_request *r = pc->backoff.head; r != NULL; r = r->next) {
        uint64_t d = r->due_ns > now ? r->due_ns - now : 0;
        if (d < wait)
            wait = d;
    }
    uint64_t deadline = next_deadline(&pc->queue);
    if (deadline != UINT64_MAX) {
        uint64_t d = deadline > now ? deadline - now : 0;
        if (d < wait)
            wait = d;
    }
    if (wait == UINT64_MAX) {
        uv_timer_stop(&pc->timer);
        return;
    }
    /* Round up: a timer a hair early would only find the token missing and re-arm. */
    uv_update_time(pc->loop);
    uv_timer_start(&pc->timer, on_timer, (wait + NS_PER_MS - 1) / NS_PER_MS, 0);
}

static void pump(struct pds_client *pc)
{
    uint64_t now = uv_hrtime();
    uint64_t wait_ns = 0;
    const char *token;

    expire_list(&pc->backoff, now);
    expire_list(&pc->queue, now);
    requeue_due(pc, now);
    while (!pc->closing && pc->queue.head != NULL && pc->sent.n < pc->cfg.concurrency) {
        if (!auth_ready(pc, &token))
            break;
        struct pds_request *r = pc->queue.head;
        int stale = stale_status(r, now);
        if (stale != 0) {
            list_remove(&pc->queue, r);
            complete(r, stale);
            continue;
        }
        wait_ns = ratelimit_take(&pc->rl, now);
        if (wait_ns)
            break;
        list_remove(&pc->queue, r);
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

/* ---- public ---- */

static bool is_printable(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f || n >= max)
            return false;
    }
    return true;
}

static int check_config(const struct pds_client_config *cfg)
{
    if (cfg == NULL || cfg->base_url == NULL || cfg->base_url[0] == '\0')
        return ERR_CONFIG;
    if (!(cfg->rate > 0) || cfg->concurrency == 0 || cfg->max_attempts == 0)
        return ERR_CONFIG;
    if (cfg->ods_code != NULL && !is_printable(cfg->ods_code, MAX_ODS_LEN))
        return ERR_CONFIG;
    return is_printable(cfg->base_url, 2048) ? 0 : ERR_CONFIG;
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

static int copy_strings(struct pds_client *pc, const struct pds_client_config *cfg)
{
    size_t n = strlen(cfg->base_url);
    while (n > 0 && cfg->base_url[n - 1] == '/')
        n--;
    pc->base_url = strndup(cfg->base_url, n);
    if (pc->base_url == NULL)
        return UV_ENOMEM;
    if (cfg->ods_code != NULL && cfg->ods_code[0] != '\0') {
        pc->ods_code = strdup(cfg->ods_code);
        if (pc->ods_code == NULL)
            return UV_ENOMEM;
    }
    return 0;
}

int pds_client_new(struct pds_client **out, uv_loop_t *loop, struct http_client *http,
                   struct token_source *tokens, const struct pds_client_config *cfg)
{
    if (out == NULL || loop == NULL || http == NULL)
        return ERR_INVALID_INPUT;
    int err = check_config(cfg);
    if (err)
        return err;
    struct pds_client *pc = calloc(1, sizeof(*pc));
    if (pc == NULL)
        return UV_ENOMEM;
    err = copy_strings(pc, cfg);
    if (err) {
        free(pc->base_url);
        free(pc);
        return err;
    }
    pc->loop = loop;
    pc->http = http;
    pc->tokens = tokens;
    pc->cfg = *cfg;
    pc->cfg.base_url = pc->base_url;
    pc->cfg.ods_code = pc->ods_code;
    apply_defaults(&pc->cfg);
    /* Burst 1: no two requests closer than 1/rate, whatever PDS's window looks like. */
    ratelimit_init(&pc->rl, cfg->rate, 1, uv_hrtime());
    uv_timer_init(loop, &pc->timer);
    *out = pc;
    return 0;
}

static void on_close(uv_handle_t *h)
{
    struct pds_client *pc = container_of((uv_timer_t *)h, struct pds_client, timer);
    free(pc->base_url);
    free(pc->ods_code);
    free(pc);
}

static void cancel_list(struct pds_list *l)
{
    while (l->head != NULL) {
        struct pds_request *r = l->head;
        list_remove(l, r);
        complete(r, UV_ECANCELED);
    }
}

/* Transfers cannot be cancelled one by one: answer now, and let on_http free the request
 * when the http client reports it (it cancels its transfers when the app frees it). */
static void cancel_sent(struct pds_list *l)
{
    while (l->head != NULL) {
        struct pds_request *r = l->head;
        list_remove(l, r);
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
    if (pc->token_wait != NULL) {
        pc->token_wait->pc = NULL;
        pc->token_wait = NULL;
    }
    cancel_list(&pc->queue);
    cancel_list(&pc->backoff);
    cancel_sent(&pc->sent);
    uv_close((uv_handle_t *)&pc->timer, on_close);
}

static int enqueue(struct pds_client *pc, enum pds_op op, char *url, const struct pds_call *call,
                   pds_cb *cb, void *arg)
{
    struct pds_request *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        free(url);
        return UV_ENOMEM;
    }
    r->pc = pc;
    r->op = op;
    r->url = url;
    r->cb = cb;
    r->arg = arg;
    if (call != NULL && call->correlation_id != NULL)
        snprintf(r->correlation_id, sizeof(r->correlation_id), "%s", call->correlation_id);
    r->deadline_ns = call != NULL ? call->deadline_ns : 0;
    r->gone = call != NULL ? call->gone : NULL;
    crypto_uuid4(r->request_id);
    list_push_tail(&pc->queue, r);
    kick(pc);
    return 0;
}

static int check_call(struct pds_client *pc, const struct pds_call *call, pds_cb *cb)
{
    const char *correlation_id = call != NULL ? call->correlation_id : NULL;
    if (pc == NULL || cb == NULL)
        return ERR_INVALID_INPUT;
    if (pc->closing)
        return UV_ECANCELED;
    if (correlation_id != NULL && !is_printable(correlation_id, MAX_CORRELATION_LEN))
        return ERR_INVALID_INPUT;
    return pc->queue.n >= pc->cfg.max_queue ? ERR_RATE_LIMITED : 0;
}

/* A query is already percent-encoded: anything that would break the request line or
 * smuggle a fragment is refused. */
static bool is_query(const char *q)
{
    return is_printable(q, MAX_QUERY_LEN) && strchr(q, '#') == NULL;
}

int pds_client_search(struct pds_client *pc, const char *query, const struct pds_call *call,
                      pds_cb *cb, void *arg)
{
    int err = check_call(pc, call, cb);
    if (err)
        return err;
    if (query == NULL || !is_query(query))
        return ERR_INVALID_INPUT;
    struct buf url;
    buf_init(&url, MAX_QUERY_LEN + strlen(pc->base_url) + 64);
    err = buf_appendf(&url, "%s/Patient?%s%s_max-results=1", pc->base_url, query,
                      query[0] != '\0' ? "&" : "");
    if (err) {
        buf_free(&url);
        return err;
    }
    return enqueue(pc, PDS_SEARCH, buf_steal(&url), call, cb, arg);
}

static bool is_nhs_number(const char *s)
{
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9')
        n++;
    return n == 10 && s[n] == '\0';
}

int pds_client_retrieve(struct pds_client *pc, const char *nhs_number, const struct pds_call *call,
                        pds_cb *cb, void *arg)
{
    int err = check_call(pc, call, cb);
    if (err)
        return err;
    if (nhs_number == NULL || !is_nhs_number(nhs_number))
        return ERR_INVALID_INPUT;
    struct buf url;
    buf_init(&url, strlen(pc->base_url) + 64);
    err = buf_appendf(&url, "%s/Patient/%s", pc->base_url, nhs_number);
    if (err) {
        buf_free(&url);
        return err;
    }
    return enqueue(pc, PDS_RETRIEVE, buf_steal(&url), call, cb, arg);
}
