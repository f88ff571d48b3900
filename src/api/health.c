#include "api_int.h"

#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/config.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/objections.h"
#include "pdstrace/redis_conn.h"
#include "pdstrace/token.h"
#include "pdstrace/writeback.h"

/* Liveness: answering at all proves the loop turns. */
static void healthz(struct http_exchange *x, const struct route_params *p, void *arg)
{
    (void)p;
    (void)arg;
    api_respond_json(x, 200, json_pack("{s:s}", "status", "ok"));
}

static const char *redis_check(const struct api_context *ctx)
{
    return redis_conn_state(ctx->redis) == REDIS_CONN_CONNECTED ? "ok" : "unavailable";
}

/* The write-back backlog as the worker last saw it. Never a reason to be unready: while
 * the case system is down the queue absorbs the write-backs, and traces must go on. */
static json_t *writeback_check(const struct api_context *ctx)
{
    uint64_t depth;
    double oldest;
    writeback_queue_last_backlog(ctx->writebacks, &depth, &oldest);
    return json_pack("{s:s, s:I, s:f}", "status", ctx->writebacks != NULL ? "ok" : "not_configured",
                     "depth", (json_int_t)depth, "oldest_pending_s", oldest);
}

/* An instance whose copy of the objections is not confirmed current would answer every
 * trace that finds a number with 503 (it fails closed): it is not ready for traffic. */
static const char *objections_state(const struct api_context *ctx)
{
    if (ctx->objections == NULL)
        return "not_configured";
    return objections_current(ctx->objections) ? "ok" : "unavailable";
}

/* Readiness: Redis answers, the objections are current and PDS auth can be had. The connection's
 * heartbeat PING with its deadline keeps the state honest, so a frozen Redis shows here within
 * seconds. */
static void readyz(struct http_exchange *x, const struct route_params *p, void *arg)
{
    (void)p;
    const struct api_context *ctx = arg;
    const char *redis = redis_check(ctx);
    const char *auth = ctx->tokens == NULL                 ? "not_required"
                       : token_source_healthy(ctx->tokens) ? "ok"
                                                           : "unavailable";
    const char *objections = objections_state(ctx);
    int ok = strcmp(redis, "ok") == 0 && strcmp(auth, "unavailable") != 0 &&
             strcmp(objections, "unavailable") != 0;
    json_t *body = json_pack("{s:s, s:{s:s, s:s, s:s}}", "status", ok ? "ok" : "degraded", "checks",
                             "redis", redis, "pds_auth", auth, "objections", objections);
    json_object_set_new(json_object_get(body, "checks"), "writeback", writeback_check(ctx));
    api_respond_json(x, ok ? 200 : 503, body);
}

static const struct metrics_family families[] = {
    {"pdstrace_redis_up", METRICS_GAUGE, "1 while the Redis connection is up"},
};

static void metrics(struct http_exchange *x, const struct route_params *p, void *arg)
{
    const struct api_context *ctx = arg;
    (void)p;
    struct buf out;
    buf_init(&out, 8 << 20);
    metrics_set(ctx->metrics, "pdstrace_redis_up", NULL,
                redis_conn_state(ctx->redis) == REDIS_CONN_CONNECTED);
    if (metrics_render(ctx->metrics, &out) != 0) {
        buf_free(&out);
        http_exchange_respond_err(x, ERR_INTERNAL, NULL, "metrics too large");
        return;
    }
    http_exchange_respond(x, 200, "text/plain; version=0.0.4", buf_cstr(&out), buf_len(&out));
    buf_free(&out);
}

int api_health_register(struct router *r, struct api_context *ctx)
{
    int err = metrics_declare(ctx->metrics, families, ARRAY_SIZE(families));
    if (!err)
        err = router_add(r, "GET", "/healthz", NULL, healthz, ctx);
    if (!err)
        err = router_add(r, "GET", "/readyz", NULL, readyz, ctx);
    if (!err)
        err = router_add(r, "GET", "/metrics", NULL, metrics, ctx);
    return err;
}
