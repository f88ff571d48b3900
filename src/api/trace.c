#include "api_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pdstrace/buf.h"
#include "pdstrace/config.h"
#include "pdstrace/crypto.h"
#include "pdstrace/demographics.h"
#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/trace.h"
#include "pdstrace/trace_result.h"

/* One POST /v1/trace in flight. It holds the exchange until it answers; if the caller has
 * gone by then the server drops the answer, but the trace itself still completes. */
struct trace_request {
    struct http_exchange *x;
    char trace_id[CRYPTO_UUID_SIZE];
    char case_id[65];
    char purpose[201];
    const char *caller;
    const struct config *cfg;
    struct metrics *metrics;
};

static void today_utc(char out[11])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

static void audit(const struct trace_request *t, const char *outcome, unsigned steps,
                  const char *source)
{
    const struct log_field f[] = {
        {"event", "trace", 0},      {"caller", t->caller, 0},     {"purpose", t->purpose, 0},
        {"case_id", t->case_id, 0}, {"outcome", outcome, 0},      {"steps", NULL, steps},
        {"source", source, 0},      {"trace_id", t->trace_id, 0},
    };
    log_fields(LOG_LEVEL_INFO, http_exchange_request_id(t->x), "audit", f, ARRAY_SIZE(f));
}

/* Written by hand rather than through jansson: this is the hot path of a cached trace,
 * and every value is an id, a name from a fixed vocabulary or a number. */
static void answer(struct trace_request *t, const struct trace_result *r)
{
    struct buf b;
    buf_init(&b, 1024);
    int err = buf_appendf(&b, "{\"trace_id\":\"%s\",", t->trace_id);
    err = err ? err : trace_result_format(r, &b);
    err = err ? err : buf_append_str(&b, ",\"write_back\":\"not_requested\"}");
    if (err)
        http_exchange_respond_err(t->x, err, NULL, NULL);
    else
        http_exchange_respond(t->x, 200, "application/json", buf_cstr(&b), buf_len(&b));
    buf_free(&b);
}

/* How long a caller turned away for a full PDS queue should wait: about the time the
 * queue takes to drain at the rate limit. */
static void add_retry_after(struct http_exchange *x, const struct config *cfg)
{
    char v[16];
    double s = cfg->pds.rate > 0 ? cfg->pds.max_queue / cfg->pds.rate : 1;
    snprintf(v, sizeof(v), "%u", s < 1 ? 1u : s > 60 ? 60u : (unsigned)s);
    http_exchange_add_header(x, "Retry-After", v);
}

/* Statuses and codes come from err.c; only the message is this route's. */
static void fail(struct trace_request *t, int status, const char *detail)
{
    char msg[192];
    if (status == ERR_UPSTREAM_REJECTED)
        snprintf(msg, sizeof(msg), "PDS refused %s", detail[0] ? detail : "the request");
    else if (status == ERR_RATE_LIMITED)
        snprintf(msg, sizeof(msg), "too many traces are waiting for PDS: retry later");
    else if (err_http_status(status) == 503)
        snprintf(msg, sizeof(msg), "PDS is unavailable: %s", err_str(status));
    else
        snprintf(msg, sizeof(msg), "%s", err_str(status));
    if (status == ERR_RATE_LIMITED)
        add_retry_after(t->x, t->cfg);
    http_exchange_respond_err(t->x, status, NULL, msg);
}

static void on_traced(int status, const struct trace_result *r, const char *detail, void *arg)
{
    struct trace_request *t = arg;
    const char *outcome = status == 0 ? trace_outcome_name(r->outcome) : "error";
    char labels[64];
    snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome);
    metrics_inc(t->metrics, "pdstrace_trace_outcomes_total", labels, 1);
    audit(t, outcome, status == 0 ? r->steps : 0,
          status == 0 && r->source == TRACE_SOURCE_CACHE ? "cache" : "pds");
    if (status == 0)
        answer(t, r);
    else
        fail(t, status, detail);
    free(t);
}

/* A caller that hung up gets no answer, so its trace need not spend the PDS budget. */
static bool caller_gone(void *arg)
{
    const struct trace_request *t = arg;
    return http_exchange_is_detached(t->x);
}

static int parse_body(struct http_exchange *x, struct demographics *d)
{
    size_t len;
    const char *body = http_exchange_body(x, &len);
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        http_exchange_respond_error(x, 400, "invalid_json", NULL, "the body must be a JSON object");
        return ERR_INVALID_INPUT;
    }
    char today[11];
    struct field_error fe = {NULL, NULL};
    today_utc(today);
    int err = demographics_from_json(j, today, d, &fe);
    json_decref(j);
    if (err) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s %s", fe.field ? fe.field : "body",
                 fe.reason ? fe.reason : "is invalid");
        http_exchange_respond_error(
            x, 400, demographics_error_is_missing(&fe) ? "missing_field" : "invalid_field",
            fe.field, msg);
    }
    return err;
}

static void post_trace(struct http_exchange *x, const struct route_params *p, void *arg)
{
    (void)p;
    struct api_context *ctx = arg;
    struct demographics d;
    if (parse_body(x, &d) != 0)
        return;
    struct trace_request *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        http_exchange_respond_err(x, UV_ENOMEM, NULL, NULL);
        return;
    }
    t->x = x;
    t->cfg = ctx->cfg;
    t->metrics = ctx->metrics;
    t->caller = api_caller(x);
    crypto_uuid4(t->trace_id);
    memcpy(t->case_id, d.case_id, sizeof(t->case_id));
    memcpy(t->purpose, d.purpose, sizeof(t->purpose));
    const struct trace_call call = {t->trace_id, on_traced, caller_gone, t};
    int err = trace_run(ctx->traces, &d, &call);
    if (err) {
        fail(t, err, "");
        free(t);
    }
}

static const struct metrics_family families[] = {
    {"pdstrace_trace_outcomes_total", METRICS_COUNTER,
     "traces answered, by outcome (error: PDS failed)"},
};

int api_trace_register(struct router *r, struct api_context *ctx)
{
    int err = metrics_declare(ctx->metrics, families, ARRAY_SIZE(families));
    return err ? err : router_add(r, "POST", "/v1/trace", "trace", post_trace, ctx);
}
