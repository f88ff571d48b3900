#include "worker_int.h"

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/http_client.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/redis_conn.h"

/* One delivery: open the number, ask about objections, PUT it, and settle the entry in
 * Redis by what the case system said. Each path ends in exactly one wb_worker_release. */

#define RETRY_AFTER_MAX_S 3600 /* a Retry-After beyond an hour is read as an hour */

enum verdict {
    V_DONE,  /* 2xx */
    V_RETRY, /* 408, 429, 5xx, timeouts, connection errors */
    V_DEAD,  /* any other answer: retrying would get the same */
};

static void audit(const struct wb_delivery *d, const char *event, const char *why)
{
    const struct log_field f[] = {
        {"event", event, 0},
        {"case_id", d->e.case_id, 0},
        {"trace_id", d->e.trace_id, 0},
        {"attempts", NULL, d->e.attempts},
        {"last_error", why, 0},
    };
    log_fields(LOG_LEVEL_INFO, NULL, "audit", f, why != NULL ? 5 : 4);
}

/* ---- settling in Redis ---- */

static void on_settled(int status, struct redisReply *reply, void *arg)
{
    struct wb_delivery *d = arg;
    if (status == 0 && reply->type == REDIS_REPLY_ERROR)
        status = ERR_UNAVAILABLE;
    /* The entry stays in our pending list: a reclaim delivers it again, and the case
     * system's idempotency key makes that harmless. */
    if (status != 0 && status != UV_ECANCELED)
        log_msgf(LOG_LEVEL_WARN, NULL,
                 "write-back %s not settled in Redis (%s): it will be reclaimed", d->e.trace_id,
                 err_name(status));
    wb_worker_release(d);
}

static void settle(struct wb_delivery *d, int argc, const char **argv)
{
    d->state = WB_SETTLING;
    int err = redis_conn_command_argv(d->w->q->redis, on_settled, d, argc, argv, NULL);
    if (err) {
        log_msgf(LOG_LEVEL_WARN, NULL,
                 "write-back %s not settled in Redis (%s): it will be reclaimed", d->e.trace_id,
                 err_name(err));
        wb_worker_release(d);
    }
}

/* Delivered, or dropped under an objection: gone from every key. */
static void ack(struct wb_delivery *d)
{
    const struct wb_keys *k = &d->w->q->keys;
    const char *argv[] = {"EVAL",     wb_script_ack, "4",      k->stream, k->pending,
                          k->delayed, k->entries,    WB_GROUP, d->e.id,   d->e.trace_id};
    settle(d, (int)ARRAY_SIZE(argv), argv);
}

static void defer(struct wb_delivery *d, uint64_t delay_ms)
{
    const struct wb_keys *k = &d->w->q->keys;
    char due[24];
    struct buf json;
    buf_init(&json, 1024);
    snprintf(due, sizeof(due), "%llu", (unsigned long long)(wb_now_ms() + delay_ms));
    int err = wb_entry_json(&d->e, &json);
    const char *argv[] = {"EVAL",         wb_script_defer, "3",     k->stream,     k->delayed,
                          k->entries,     WB_GROUP,        d->e.id, d->e.trace_id, due,
                          buf_cstr(&json)};
    if (err)
        wb_worker_release(d);
    else
        settle(d, (int)ARRAY_SIZE(argv), argv);
    buf_free(&json);
}

/* why comes from our own fixed vocabulary ("HTTP 422", "timeout"): no escaping needed. */
static void bury(struct wb_delivery *d, const char *why)
{
    const struct wb_keys *k = &d->w->q->keys;
    char at[25];
    struct buf json;
    buf_init(&json, 1024);
    wb_iso8601(wb_now_ms(), at);
    int err = buf_appendf(&json,
                          "{\"case_id\":\"%s\",\"attempts\":%u,\"last_error\":\"%s\","
                          "\"dead_at\":\"%s\",\"entry\":",
                          d->e.case_id, d->e.attempts, why, at);
    err = err ? err : wb_entry_json(&d->e, &json);
    err = err ? err : buf_append_str(&json, "}");
    const char *argv[] = {"EVAL",  wb_script_dead, "3",     k->stream,     k->pending,
                          k->dead, WB_GROUP,       d->e.id, d->e.trace_id, buf_cstr(&json)};
    audit(d, "writeback_dead", why);
    wb_count(d->w->q, "dead");
    if (err)
        wb_worker_release(d);
    else
        settle(d, (int)ARRAY_SIZE(argv), argv);
    buf_free(&json);
}

/* ---- the verdict and the delay ---- */

static enum verdict judge(int status, const struct http_client_response *res, char *why, size_t n)
{
    if (status == 0) {
        long s = res->status;
        snprintf(why, n, "HTTP %ld", s);
        if (s >= 200 && s < 300)
            return V_DONE;
        return s == 408 || s == 429 || s >= 500 ? V_RETRY : V_DEAD;
    }
    /* A refused certificate, like a dead connection, may be fixed by the operator: retry
     * until max_age_s rather than lose the write-back at once. */
    snprintf(why, n, "%s",
             status == ERR_UPSTREAM_TIMEOUT ? "timeout"
             : status == ERR_UPSTREAM_TLS   ? "tls refused"
             : status == ERR_TOO_LARGE      ? "response too large"
                                            : "connection failed");
    return V_RETRY;
}

/* Retry-After in delta-seconds; the HTTP-date form falls back to our backoff. */
static bool retry_after_ms(const struct http_client_response *res, uint64_t *out)
{
    const char *v = res != NULL ? http_client_response_header(res, "Retry-After") : NULL;
    char *end = NULL;
    if (v == NULL || *v < '0' || *v > '9')
        return false;
    unsigned long secs = strtoul(v, &end, 10);
    if (*end != '\0' && *end != ' ')
        return false;
    *out = (uint64_t)(secs > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : secs) * 1000u;
    return true;
}

/* Capped exponential backoff with full jitter (a uniform draw below the cap), so that a
 * recovering case system is not met by every instance at the same moment. */
static uint64_t backoff_ms(const struct writeback_worker *w, unsigned attempts)
{
    unsigned shift = attempts > 1 ? attempts - 1 : 0;
    uint64_t cap = (uint64_t)w->retry_initial_ms << (shift > 32 ? 32 : shift);
    uint32_t rnd = 0;
    if (cap > w->retry_max_ms)
        cap = w->retry_max_ms;
    if (crypto_random(&rnd, sizeof(rnd)) != 0)
        return cap;
    return rnd % (cap + 1);
}

static void failed(struct wb_delivery *d, const char *why, const struct http_client_response *res)
{
    const struct writeback_worker *w = d->w;
    d->e.attempts++;
    if (wb_now_ms() >= d->e.enqueued_at_ms + w->max_age_ms) {
        bury(d, why);
        return;
    }
    uint64_t delay;
    if (!retry_after_ms(res, &delay))
        delay = backoff_ms(w, d->e.attempts);
    log_msgf(LOG_LEVEL_INFO, NULL, "write-back %s: %s, attempt %u, next in %llu ms", d->e.trace_id,
             why, d->e.attempts, (unsigned long long)delay);
    wb_count(d->w->q, "retry");
    defer(d, delay);
}

/* ---- the PUT ---- */

static void on_put(int status, const struct http_client_response *res, void *arg)
{
    struct wb_delivery *d = arg;
    char why[WB_ERROR_MAX];
    /* Abandoned: the entry stays pending in Redis and is reclaimed later. */
    if (d->w->closing || status == UV_ECANCELED) {
        wb_worker_release(d);
        return;
    }
    switch (judge(status, res, why, sizeof(why))) {
    case V_DONE:
        d->e.attempts++;
        audit(d, "writeback_delivered", NULL);
        wb_count(d->w->q, "delivered");
        ack(d);
        break;
    case V_RETRY:
        failed(d, why, res);
        break;
    case V_DEAD:
        d->e.attempts++;
        bury(d, why);
        break;
    }
}

static int put_body(const struct wb_delivery *d, const char *nhs, struct buf *body)
{
    char traced[25];
    wb_iso8601(d->e.traced_at_ms, traced);
    return buf_appendf(body,
                       "{\"nhs_number\":\"%s\",\"nhs_number_status\":\"01\",\"trace_id\":\"%s\","
                       "\"traced_at\":\"%s\",\"score\":%s}",
                       nhs, d->e.trace_id, traced, d->e.score);
}

static int send_put(struct wb_delivery *d, const char *nhs)
{
    const struct writeback_worker *w = d->w;
    char url[1024], key[64];
    struct buf body;
    buf_init(&body, 1024);
    snprintf(url, sizeof(url), "%s/clients/%s/nhs-number", w->base_url, d->e.case_id);
    snprintf(key, sizeof(key), "Idempotency-Key: %s", d->e.trace_id);
    const char *headers[] = {"Content-Type: application/json", key, w->auth, NULL};
    int err = put_body(d, nhs, &body);
    struct http_client_request req = {
        .method = "PUT",
        .url = url,
        .headers = headers,
        .body = buf_cstr(&body),
        .body_len = buf_len(&body),
        .timeout_ms = w->timeout_ms,
        .max_response_bytes = 64 * 1024,
        .tls = &w->tls,
    };
    if (!err)
        err = http_client_request(w->http, &req, on_put, d);
    buf_wipe(&body);
    return err;
}

void wb_deliver_start(struct wb_delivery *d)
{
    const struct writeback_worker *w = d->w;
    char nhs[11];
    d->state = WB_SENDING;
    if (wb_entry_open(w->q, &d->e, nhs) != 0) {
        bury(d, "unreadable (another secret?)");
        return;
    }
    int verdict = w->withheld != NULL ? w->withheld(w->withheld_arg, d->e.case_id, nhs) : 0;
    int err = verdict == 0 ? send_put(d, nhs) : 0;
    OPENSSL_cleanse(nhs, sizeof(nhs));
    if (verdict > 0) {
        audit(d, "writeback_withheld", NULL);
        wb_count(d->w->q, "withheld");
        ack(d);
    } else if (verdict < 0) {
        /* The registry cannot vouch for itself now: neither deliver nor drop. */
        defer(d, w->retry_initial_ms);
    } else if (err) {
        failed(d, err_name(err), NULL);
    }
}
