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
#include "pdstrace/writeback.h"

/* One POST /v1/trace in flight. It holds the exchange until it answers; if the caller has
 * gone by then the server drops the answer, but the trace itself still completes. */
struct trace_request {
    struct http_exchange *x;
    const struct api_context *ctx;
    char trace_id[CRYPTO_UUID_SIZE];
    char purpose[201];
    const char *caller;
    struct demographics wb; /* only what the write-back needs: case_id, nhs_number, write_back */
    struct trace_result result;
};

static void today_utc(char out[11])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

/* The audit line and the outcome count of every answered trace; r is NULL when it failed. */
static void record(const struct trace_request *t, const struct trace_result *r, const char *wb)
{
    const char *outcome = r != NULL ? trace_outcome_name(r->outcome) : "error";
    const char *source = r != NULL && r->source == TRACE_SOURCE_CACHE ? "cache" : "pds";
    char labels[64];
    snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome);
    metrics_inc(t->ctx->metrics, "pdstrace_trace_outcomes_total", labels, 1);
    const struct log_field f[] = {
        {"event", "trace", 0},        {"caller", t->caller, 0},
        {"purpose", t->purpose, 0},   {"case_id", t->wb.case_id, 0},
        {"outcome", outcome, 0},      {"steps", NULL, r != NULL ? r->steps : 0},
        {"source", source, 0},        {"write_back", wb, 0},
        {"trace_id", t->trace_id, 0},
    };
    log_fields(LOG_LEVEL_INFO, http_exchange_request_id(t->x), "audit", f, ARRAY_SIZE(f));
}

/* Written by hand rather than through jansson: this is the hot path of a cached trace,
 * and every value is an id, a name from a fixed vocabulary or a number. */
static void answer(struct trace_request *t, const struct trace_result *r, const char *wb)
{
    struct buf b;
    buf_init(&b, 1024);
    int err = buf_appendf(&b, "{\"trace_id\":\"%s\",", t->trace_id);
    err = err ? err : trace_result_format(r, &b);
    err = err ? err : buf_appendf(&b, ",\"write_back\":\"%s\"}", wb);
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
    else if (status == ERR_OBJECTIONS_UNAVAILABLE)
        snprintf(msg, sizeof(msg), "objections could not be confirmed current: no number given");
    else if (status == ERR_UNAVAILABLE)
        snprintf(msg, sizeof(msg), "Redis is unavailable");
    else if (err_http_status(status) == 503)
        snprintf(msg, sizeof(msg), "PDS is unavailable: %s", err_str(status));
    else
        snprintf(msg, sizeof(msg), "%s", err_str(status));
    if (status == ERR_RATE_LIMITED)
        add_retry_after(t->x, t->ctx->cfg);
    http_exchange_respond_err(t->x, status, NULL, msg);
}

/* Answers t->result with what became of its write-back, and ends the request. */
static void complete(struct trace_request *t, enum trace_write_back wb)
{
    record(t, &t->result, trace_write_back_name(wb));
    answer(t, &t->result, trace_write_back_name(wb));
    free(t);
}

static void on_queued(int status, void *arg)
{
    struct trace_request *t = arg;
    if (status)
        log_msgf(LOG_LEVEL_WARN, http_exchange_request_id(t->x),
                 "write-back of trace %s not queued: %s", t->trace_id, err_name(status));
    complete(t, status == 0 ? TRACE_WB_QUEUED : TRACE_WB_FAILED);
}

/* Puts the write-back in the durable queue; the answer waits for it, so "queued" is only
 * said of a write-back Redis holds. Without a case system (case.base_url) nothing would
 * ever deliver it, so it is not queued: the caller hears "failed". Returns 0 when
 * on_queued will follow. */
static int queue_write_back(struct trace_request *t)
{
    struct writeback_item item = {.score = t->result.score < 0 ? 0 : t->result.score};
    struct timespec now;
    if (t->ctx->writebacks == NULL || t->ctx->cfg->case_system.base_url[0] == '\0')
        return ERR_CONFIG;
    clock_gettime(CLOCK_REALTIME, &now);
    item.traced_at_ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
    memcpy(item.trace_id, t->trace_id, sizeof(item.trace_id));
    memcpy(item.case_id, t->wb.case_id, sizeof(item.case_id));
    memcpy(item.nhs_number, t->result.nhs_number, sizeof(item.nhs_number));
    return writeback_enqueue(t->ctx->writebacks, &item, on_queued, t);
}

static void on_traced(int status, const struct trace_result *r, const char *detail, void *arg)
{
    struct trace_request *t = arg;
    if (status) {
        record(t, NULL, "not_requested");
        fail(t, status, detail);
        free(t);
        return;
    }
    t->result = *r;
    enum trace_write_back wb = trace_write_back_plan(&t->wb, r);
    if (wb == TRACE_WB_QUEUED && queue_write_back(t) == 0)
        return;
    complete(t, wb == TRACE_WB_QUEUED ? TRACE_WB_FAILED : wb);
}

/* The person objected by case: nothing was asked of PDS. */
static void answer_objection(struct trace_request *t)
{
    t->result = (struct trace_result){.score = -1, .source = TRACE_SOURCE_PDS};
    trace_result_withhold(&t->result);
    complete(t, TRACE_WB_WITHHELD);
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
    t->ctx = ctx;
    t->caller = api_caller(x);
    crypto_uuid4(t->trace_id);
    memcpy(t->purpose, d.purpose, sizeof(t->purpose));
    memcpy(t->wb.case_id, d.case_id, sizeof(t->wb.case_id));
    memcpy(t->wb.nhs_number, d.nhs_number, sizeof(t->wb.nhs_number));
    t->wb.write_back = d.write_back;
    const struct trace_call call = {
        .trace_id = t->trace_id, .cb = on_traced, .gone = caller_gone, .arg = t};
    int err = trace_run(ctx->traces, &d, &call);
    if (err == ERR_OBJECTION) {
        answer_objection(t);
    } else if (err) {
        record(t, NULL, "not_requested");
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
