#include "api_int.h"

#include <stdlib.h>
#include <string.h>

#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/writeback.h"

/* GET /v1/writebacks and POST /v1/writebacks/{trace_id}/retry (role admin): the operator's
 * view of the write-back queue. Nothing here holds an NHS number: the queue answers with
 * ids, counts and error names only. */

/* One request waiting for Redis; the exchange stays ours until we respond. */
struct writebacks_request {
    struct http_exchange *x;
    char trace_id[37];
};

/* Whatever Redis did (timed out, went away, refused a script), the caller sees the store
 * as unavailable: a Redis deadline is not a PDS one. */
static int store_error(int err)
{
    return err == UV_ENOMEM ? err : ERR_UNAVAILABLE;
}

static json_t *dead_json(const struct writeback_dead *d)
{
    return json_pack("{s:s, s:s, s:i, s:s, s:s}", "trace_id", d->trace_id, "case_id", d->case_id,
                     "attempts", (int)d->attempts, "last_error", d->last_error, "dead_at",
                     d->dead_at);
}

static json_t *backlog_json(const struct writeback_backlog *b)
{
    json_t *dead = json_array();
    for (size_t i = 0; dead != NULL && i < b->n_dead; i++)
        json_array_append_new(dead, dead_json(&b->dead[i]));
    return json_pack("{s:I, s:f, s:I, s:o}", "depth", (json_int_t)b->depth, "oldest_pending_s",
                     b->oldest_pending_s, "retrying", (json_int_t)b->retrying, "dead_letters",
                     dead);
}

static void on_backlog(int status, const struct writeback_backlog *b, void *arg)
{
    struct writebacks_request *r = arg;
    if (status)
        http_exchange_respond_err(r->x, store_error(status), NULL,
                                  "the write-back queue could not be read");
    else
        api_respond_json(r->x, 200, backlog_json(b));
    free(r);
}

static struct writebacks_request *request_new(struct http_exchange *x)
{
    struct writebacks_request *r = calloc(1, sizeof(*r));
    if (r == NULL)
        http_exchange_respond_err(x, UV_ENOMEM, NULL, NULL);
    else
        r->x = x;
    return r;
}

static void get_writebacks(struct http_exchange *x, const struct route_params *p, void *arg)
{
    const struct api_context *ctx = arg;
    (void)p;
    struct writebacks_request *r = request_new(x);
    if (r == NULL)
        return;
    int err = writeback_backlog(ctx->writebacks, on_backlog, r);
    if (err) {
        free(r);
        http_exchange_respond_err(x, store_error(err), NULL,
                                  "the write-back queue could not be read");
    }
}

static void audit_retry(const struct writebacks_request *r)
{
    const struct log_field f[] = {
        {"event", "writeback_requeued", 0},
        {"caller", api_caller(r->x), 0},
        {"trace_id", r->trace_id, 0},
    };
    log_fields(LOG_LEVEL_INFO, http_exchange_request_id(r->x), "audit", f, ARRAY_SIZE(f));
}

static void on_retry(int status, void *arg)
{
    struct writebacks_request *r = arg;
    if (status == ERR_NOT_FOUND) {
        http_exchange_respond_err(r->x, status, "trace_id", "no dead letter for this trace_id");
    } else if (status) {
        http_exchange_respond_err(r->x, store_error(status), NULL,
                                  "the write-back queue could not be changed");
    } else {
        audit_retry(r);
        api_respond_json(r->x, 202,
                         json_pack("{s:s, s:s}", "trace_id", r->trace_id, "status", "queued"));
    }
    free(r);
}

/* A trace id is a UUID: anything else cannot name a dead letter. */
static bool trace_id_valid(const char *s)
{
    return s != NULL && strlen(s) == 36 && strspn(s, "0123456789abcdefABCDEF-") == 36;
}

static void post_retry(struct http_exchange *x, const struct route_params *p, void *arg)
{
    const struct api_context *ctx = arg;
    const char *id = route_param(p, "trace_id");
    if (!trace_id_valid(id)) {
        http_exchange_respond_err(x, ERR_NOT_FOUND, "trace_id", "no dead letter for this trace_id");
        return;
    }
    struct writebacks_request *r = request_new(x);
    if (r == NULL)
        return;
    memcpy(r->trace_id, id, sizeof(r->trace_id));
    int err = writeback_retry(ctx->writebacks, r->trace_id, on_retry, r);
    if (err) {
        free(r);
        http_exchange_respond_err(x, store_error(err), NULL,
                                  "the write-back queue could not be changed");
    }
}

int api_writebacks_register(struct router *r, struct api_context *ctx)
{
    int err = router_add(r, "GET", "/v1/writebacks", "admin", get_writebacks, ctx);
    return err ? err
               : router_add(r, "POST", "/v1/writebacks/{trace_id}/retry", "admin", post_retry, ctx);
}
