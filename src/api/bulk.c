#include "api_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pdstrace/bulk_job.h"
#include "pdstrace/config.h"
#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/objections.h"

/* The bulk routes (role bulk): a CSV file uploaded as a job, streamed into Redis as it
 * arrives and never held whole; its status; its result streamed out in batches; its
 * deletion. A job belongs to the API key that created it: another key finds nothing. The
 * work itself is done by the bulk worker of every instance (src/bulk/job_worker.c). */

static const char no_job[] = "no such job for this API key";

/* ---- POST /v1/bulk ---- */

/* One upload; freed once its answer is given and the body's read has ended. */
struct bulk_post {
    struct http_exchange *x;
    const struct api_context *ctx;
    struct bulk_upload *up;
    bool answered, read_over;
};

static void post_maybe_free(struct bulk_post *p)
{
    if (p->answered && p->read_over)
        free(p);
}

/* The audit line of a new job: who, which job, how many rows; no data. */
static void audit_created(struct bulk_post *p)
{
    const struct log_field f[] = {
        {"event", "bulk_job_created", 0},
        {"caller", api_caller(p->x), 0},
        {"job_id", bulk_upload_job_id(p->up), 0},
        {"rows", NULL, (long long)bulk_upload_rows(p->up)},
    };
    log_fields(LOG_LEVEL_INFO, http_exchange_request_id(p->x), "audit", f, ARRAY_SIZE(f));
}

static void answer_created(struct bulk_post *p)
{
    char url[64];
    const char *id = bulk_upload_job_id(p->up);
    snprintf(url, sizeof(url), "/v1/bulk/%s", id);
    audit_created(p);
    http_exchange_add_header(p->x, "Location", url);
    api_respond_json(p->x, 202, json_pack("{s:s, s:s}", "job_id", id, "status_url", url));
}

/* The upload failed: the job goes, and the caller learns why (a refused file names the
 * problem without quoting it). why: the message, or NULL for the code's own. */
static void answer_failed(struct bulk_post *p, int err, const char *why)
{
    char msg[160];
    if (err == ERR_TOO_LARGE) {
        snprintf(msg, sizeof(msg), "the file is larger than bulk.max_bytes (%zu bytes)",
                 p->ctx->cfg->bulk.max_bytes);
        why = msg;
    }
    if (err == ERR_INVALID_INPUT || err == ERR_TOO_LARGE)
        http_exchange_respond_err(p->x, err, "body", why);
    else if (err == UV_ENOMEM || err == ERR_INTERNAL)
        http_exchange_respond_err(p->x, err, NULL, NULL);
    else
        http_exchange_respond_err(p->x, ERR_UNAVAILABLE, NULL, "the job could not be stored");
    bulk_upload_free(p->up, true);
    p->up = NULL;
}

/* Answers once: an answer while the body is still being read ends the read (on_end then
 * comes with UV_ECANCELED). */
static void finish_post(struct bulk_post *p, int err, const char *why)
{
    if (p->answered)
        return;
    p->answered = true;
    if (err) {
        answer_failed(p, err, why);
    } else {
        answer_created(p);
        bulk_upload_free(p->up, false);
        p->up = NULL;
    }
    post_maybe_free(p);
}

/* A failure of the upload itself: the CSV, Redis or memory. */
static void upload_failed(struct bulk_post *p, int err)
{
    const char *why = bulk_upload_error(p->up);
    finish_post(p, err, why[0] ? why : "the CSV cannot be read");
}

static void on_room(int status, void *arg)
{
    struct bulk_post *p = arg;
    if (status)
        upload_failed(p, status);
    else
        http_exchange_resume_body(p->x);
}

static void on_stored(int status, void *arg)
{
    struct bulk_post *p = arg;
    if (status)
        upload_failed(p, status);
    else
        finish_post(p, 0, NULL);
}

static void on_data(struct http_exchange *x, const char *data, size_t len, void *arg)
{
    struct bulk_post *p = arg;
    if (p->answered)
        return;
    int err = bulk_upload_feed(p->up, data, len);
    if (err)
        upload_failed(p, err);
    else if (bulk_upload_busy(p->up))
        http_exchange_pause_body(x);
}

static void on_end(struct http_exchange *x, int status, void *arg)
{
    struct bulk_post *p = arg;
    (void)x;
    p->read_over = true;
    if (p->answered) {
        post_maybe_free(p);
        return;
    }
    int err = status;
    if (status == 0) {
        err = bulk_upload_finish(p->up); /* on_stored answers */
        if (err)
            upload_failed(p, err);
    } else if (status == ERR_TOO_LARGE) {
        finish_post(p, err, NULL);
    } else if (status == ERR_INVALID_INPUT) {
        finish_post(p, err, "the body's chunked framing is broken");
    } else {
        /* Gone, or silent past server.body_timeout_ms: an answer nobody may read. */
        finish_post(p, ERR_INVALID_INPUT, "the upload ended before the whole file arrived");
    }
}

/* text/csv, with parameters (charset) or not. */
static bool is_csv(const char *type)
{
    size_t n = strlen("text/csv");
    return type != NULL && strncasecmp(type, "text/csv", n) == 0 &&
           (type[n] == '\0' || type[n] == ';' || type[n] == ' ');
}

static void post_bulk(struct http_exchange *x, const struct route_params *params, void *arg)
{
    const struct api_context *ctx = arg;
    (void)params;
    if (!is_csv(http_exchange_header(x, "Content-Type"))) {
        http_exchange_respond_error(x, 415, "invalid_field", "Content-Type",
                                    "a bulk file is sent as text/csv");
        return;
    }
    struct bulk_post *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        http_exchange_respond_err(x, UV_ENOMEM, NULL, NULL);
        return;
    }
    *p = (struct bulk_post){.x = x, .ctx = ctx};
    struct bulk_upload_config uc = {
        .owner = api_caller(x), .on_room = on_room, .on_done = on_stored, .arg = p};
    int err = bulk_upload_new(&p->up, ctx->bulk, &uc);
    err = err ? err : http_exchange_read_body(x, ctx->cfg->bulk.max_bytes, on_data, on_end, p);
    if (err) {
        p->read_over = true;
        finish_post(p, err == UV_ECANCELED ? ERR_UNAVAILABLE : err, NULL);
    }
}

/* ---- GET /v1/bulk/{job_id} ---- */

/* One request waiting for Redis; the exchange stays ours until we answer. */
struct bulk_request {
    struct http_exchange *x;
    const struct api_context *ctx;
    struct bulk_result *result;
    bool started; /* the result's head has gone out: an error can only cut it */
    char job_id[BULK_JOB_ID_SIZE];
};

static struct bulk_request *request_new(struct http_exchange *x, const struct route_params *p,
                                        const struct api_context *ctx)
{
    struct bulk_request *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        http_exchange_respond_err(x, UV_ENOMEM, NULL, NULL);
        return NULL;
    }
    r->x = x;
    r->ctx = ctx;
    const char *id = route_param(p, "job_id");
    snprintf(r->job_id, sizeof(r->job_id), "%s", id != NULL ? id : "");
    return r;
}

/* Whatever Redis did, the caller sees the store as unavailable. */
static void respond_store_err(struct http_exchange *x, int err)
{
    if (err == ERR_NOT_FOUND)
        http_exchange_respond_err(x, err, "job_id", no_job);
    else
        http_exchange_respond_err(x, err == UV_ENOMEM ? err : ERR_UNAVAILABLE, NULL,
                                  "the job could not be read");
}

static json_t *info_json(const struct bulk_job_info *info)
{
    json_t *outcomes = json_object();
    for (unsigned i = 0; outcomes != NULL && i < BULK_JOB_OUTCOMES; i++)
        json_object_set_new(outcomes, bulk_job_outcome_name(i),
                            json_integer((json_int_t)info->outcome[i]));
    json_t *j = json_pack("{s:s, s:I, s:I, s:o}", "state", bulk_job_state_name(info->state),
                          "rows_total", (json_int_t)info->rows_total, "rows_done",
                          (json_int_t)info->rows_done, "outcomes", outcomes);
    if (j != NULL && info->state == BULK_JOB_FAILED)
        json_object_set_new(j, "error", json_string(info->error));
    return j;
}

static void on_status(int status, const struct bulk_job_info *info, void *arg)
{
    struct bulk_request *r = arg;
    if (status)
        respond_store_err(r->x, status);
    else
        api_respond_json(r->x, 200, info_json(info));
    free(r);
}

static void get_bulk(struct http_exchange *x, const struct route_params *params, void *arg)
{
    const struct api_context *ctx = arg;
    struct bulk_request *r = request_new(x, params, ctx);
    if (r == NULL)
        return;
    int err = bulk_job_get(ctx->bulk, r->job_id, api_caller(x), on_status, r);
    if (err) {
        free(r);
        respond_store_err(x, err);
    }
}

/* ---- GET /v1/bulk/{job_id}/result ---- */

/* Before the head an error is an answer of its own (503 objections_unavailable while the
 * registry is stale); after it, a reset: the client sees a truncated transfer, never a
 * clean end. */
static void result_done(struct bulk_request *r, int status)
{
    if (r->started)
        http_exchange_finish(r->x, status);
    else if (status == ERR_OBJECTIONS_UNAVAILABLE)
        http_exchange_respond_err(r->x, status, NULL,
                                  "objections could not be confirmed current: no number given");
    else
        respond_store_err(r->x, status != 0 ? status : ERR_INTERNAL);
    bulk_result_free(r->result);
    free(r);
}

static void read_more(struct bulk_request *r);

static void on_written(int status, void *arg)
{
    struct bulk_request *r = arg;
    if (status)
        result_done(r, status);
    else
        read_more(r);
}

static int start_result(struct bulk_request *r)
{
    char disposition[96];
    snprintf(disposition, sizeof(disposition), "attachment; filename=\"%s.csv\"", r->job_id);
    http_exchange_add_header(r->x, "Content-Disposition", disposition);
    int err = http_exchange_start(r->x, 200, "text/csv; charset=utf-8");
    r->started = err == 0;
    return err;
}

/* The head goes out with the first piece, so that whatever stops that piece (a stale
 * registry above all) is still an answer of its own. */
static void on_piece(int status, const char *data, size_t len, void *arg)
{
    struct bulk_request *r = arg;
    if (status != 0 || len == 0) {
        result_done(r, status);
        return;
    }
    int err = r->started ? 0 : start_result(r);
    err = err ? err : http_exchange_write(r->x, data, len, on_written, r);
    if (err)
        result_done(r, err);
}

/* One piece at a time: the next is asked for once the last is with the kernel. */
static void read_more(struct bulk_request *r)
{
    int err = bulk_result_read(r->result, on_piece, r);
    if (err)
        result_done(r, err);
}

/* HEAD: the head GET would have, without reading a row. */
static void answer_head(struct bulk_request *r)
{
    int err = objections_current(r->ctx->objections) ? start_result(r) : ERR_OBJECTIONS_UNAVAILABLE;
    result_done(r, err);
}

static void on_result_open(int status, const struct bulk_job_info *info, void *arg)
{
    struct bulk_request *r = arg;
    if (status == 0 && info->state == BULK_JOB_DONE) {
        if (strcmp(http_exchange_method(r->x), "HEAD") == 0)
            answer_head(r);
        else
            read_more(r);
        return;
    }
    if (status)
        respond_store_err(r->x, status);
    else
        http_exchange_respond_error(r->x, 409, "not_ready", "job_id",
                                    info->state == BULK_JOB_FAILED
                                        ? "the job failed: it has no result"
                                        : "the job is not done yet: see its status_url");
    bulk_result_free(r->result);
    free(r);
}

static void get_result(struct http_exchange *x, const struct route_params *params, void *arg)
{
    const struct api_context *ctx = arg;
    struct bulk_request *r = request_new(x, params, ctx);
    if (r == NULL)
        return;
    int err = bulk_result_open(&r->result, ctx->bulk, r->job_id, api_caller(x), ctx->objections,
                               on_result_open, r);
    if (err) {
        free(r);
        respond_store_err(x, err);
    }
}

/* ---- DELETE /v1/bulk/{job_id} ---- */

static void audit_deleted(const struct bulk_request *r)
{
    const struct log_field f[] = {
        {"event", "bulk_job_deleted", 0},
        {"caller", api_caller(r->x), 0},
        {"job_id", r->job_id, 0},
    };
    log_fields(LOG_LEVEL_INFO, http_exchange_request_id(r->x), "audit", f, ARRAY_SIZE(f));
}

static void on_deleted(int status, void *arg)
{
    struct bulk_request *r = arg;
    if (status) {
        respond_store_err(r->x, status);
    } else {
        audit_deleted(r);
        http_exchange_respond(r->x, 204, NULL, NULL, 0);
    }
    free(r);
}

static void delete_bulk(struct http_exchange *x, const struct route_params *params, void *arg)
{
    const struct api_context *ctx = arg;
    struct bulk_request *r = request_new(x, params, ctx);
    if (r == NULL)
        return;
    int err = bulk_job_delete(ctx->bulk, r->job_id, api_caller(x), on_deleted, r);
    if (err) {
        free(r);
        respond_store_err(x, err);
    }
}

int api_bulk_register(struct router *r, struct api_context *ctx)
{
    int err = router_add_stream(r, "POST", "/v1/bulk", "bulk", post_bulk, ctx);
    err = err ? err : router_add(r, "GET", "/v1/bulk/{job_id}", "bulk", get_bulk, ctx);
    err = err ? err : router_add(r, "GET", "/v1/bulk/{job_id}/result", "bulk", get_result, ctx);
    return err ? err : router_add(r, "DELETE", "/v1/bulk/{job_id}", "bulk", delete_bulk, ctx);
}
