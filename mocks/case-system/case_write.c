#include "case_server_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "case_body.h"
#include "case_store.h"
#include "mock_faults.h"
#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/http_server.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/router.h"

/* One write request on its way through the steps of mocks/case-system/README.md. */
struct put_ctx {
    struct mock_case *m;
    struct http_exchange *x;
    const char *case_id;
    const char *key;
    struct case_write w;
    /* The answer, once a step has given it. */
    int status;
    char *body;
    const char *outcome; /* "delivered", "duplicate", "rejected", "failed" or "error" */
    const char *fault;   /* the injected fault, or NULL */
};

/* Each step returns true when it has decided the answer. */
typedef bool put_step_fn(struct put_ctx *c);

static bool refuse(struct put_ctx *c, int status, const char *code, const char *field,
                   const char *message)
{
    c->status = status;
    c->body = case_server_error_text(code, field, message);
    c->outcome = "rejected";
    return true;
}

static bool inject(struct put_ctx *c, int status, const char *fault, const char *code,
                   const char *field, const char *message)
{
    refuse(c, status, code, field, message);
    c->outcome = "failed";
    c->fault = fault;
    return true;
}

/* Bearer token in constant time; without a configured token anything goes. */
static bool step_auth(struct put_ctx *c)
{
    const char *tok = c->m->token;
    const char *h = http_exchange_header(c->x, "Authorization");
    if (tok == NULL)
        return false;
    size_t n = strlen(tok);
    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0 && strlen(h + 7) == n &&
        crypto_equal(h + 7, tok, n))
        return false;
    if (http_exchange_add_header(c->x, "WWW-Authenticate", "Bearer") != 0)
        log_msgf(LOG_LEVEL_WARN, NULL, "cannot add WWW-Authenticate");
    return refuse(c, 401, "unauthorised", NULL, "a valid bearer token is required");
}

static bool step_fail(struct put_ctx *c)
{
    struct mock_case_faults *f = &c->m->faults;
    if (f->fail_next > 0) {
        f->fail_next--;
        return inject(c, f->fail_status, "fail_next", "unavailable", NULL, "injected failure");
    }
    if (mock_chance(&c->m->prng, f->fail_rate))
        return inject(c, f->fail_status, "fail_rate", "unavailable", NULL, "injected failure");
    return false;
}

static bool step_media(struct put_ctx *c)
{
    const char *ct = http_exchange_header(c->x, "Content-Type");
    size_t n = strlen(CASE_JSON);
    if (ct != NULL && strncasecmp(ct, CASE_JSON, n) == 0 && (ct[n] == '\0' || ct[n] == ';'))
        return false;
    return refuse(c, 415, "unsupported_media_type", "Content-Type", "must be application/json");
}

static bool step_case_id(struct put_ctx *c)
{
    if (case_id_is_valid(c->case_id))
        return false;
    return refuse(c, 400, "invalid_field", "case_id", "must be 1 to 64 of A-Za-z0-9._:-");
}

static bool step_key(struct put_ctx *c)
{
    c->key = http_exchange_header(c->x, "Idempotency-Key");
    if (c->key == NULL)
        return refuse(c, 400, "missing_field", "Idempotency-Key", "the header is required");
    if (case_key_is_valid(c->key))
        return false;
    return refuse(c, 400, "invalid_field", "Idempotency-Key",
                  "must be 1 to 200 visible ASCII characters");
}

static bool step_body(struct put_ctx *c)
{
    size_t len;
    const char *text = http_exchange_body(c->x, &len);
    struct field_error fe = {0};
    if (case_body_parse(text, len, c->key, &c->w, &fe) == 0)
        return false;
    return refuse(c, 400, case_body_error_code(&fe), fe.field, fe.reason);
}

static bool step_reject(struct put_ctx *c)
{
    if (json_object_get(c->m->reject_cases, c->case_id) == NULL)
        return false;
    return inject(c, 422, "reject_case", "unprocessable", "case_id",
                  "the case system refuses writes for this client (injected)");
}

static bool step_apply(struct put_ctx *c)
{
    enum case_outcome outcome;
    const char *reply = NULL;
    if (case_store_apply(c->m->store, c->case_id, c->key, &c->w, &outcome, &reply) != 0) {
        c->outcome = "error";
        c->status = 500;
        c->body = case_server_error_text("internal", NULL, "out of memory");
        return true;
    }
    if (outcome == CASE_CONFLICT)
        return refuse(c, 409, "idempotency_conflict", "Idempotency-Key",
                      "already used for another client or number");
    c->status = 200;
    c->body = strdup(reply);
    c->outcome = outcome == CASE_DUPLICATE ? "duplicate" : "delivered";
    /* As Stripe does: a replayed answer says so, its body being the first one's. */
    if (outcome == CASE_DUPLICATE &&
        http_exchange_add_header(c->x, "Idempotent-Replayed", "true") != 0)
        log_msgf(LOG_LEVEL_WARN, NULL, "cannot add Idempotent-Replayed");
    return true;
}

static void count(struct case_stats *s, const char *outcome)
{
    if (strcmp(outcome, "delivered") == 0)
        s->deliveries++;
    else if (strcmp(outcome, "duplicate") == 0)
        s->duplicates++;
    else if (strcmp(outcome, "rejected") == 0)
        s->rejected++;
    else if (strcmp(outcome, "failed") == 0)
        s->failed++;
}

/* One debug line per write: never the number in full (DESIGN.md §8), and a case id only
 * when it is one, since a broken sender could put anything in the path. */
static void log_write(const struct put_ctx *c)
{
    char masked[LOG_MASKED_NHS_SIZE] = "";
    if (!log_enabled(LOG_LEVEL_DEBUG))
        return;
    if (c->w.nhs_number[0] != '\0')
        log_mask_nhs(c->w.nhs_number, masked);
    const char *case_id = case_id_is_valid(c->case_id) ? c->case_id : "(invalid)";
    struct log_field f[] = {
        {"case_id", case_id, 0},    {"status", NULL, c->status},
        {"outcome", c->outcome, 0}, {"fault", c->fault != NULL ? c->fault : "none", 0},
        {"nhs_number", masked, 0},
    };
    log_fields(LOG_LEVEL_DEBUG, http_exchange_request_id(c->x), "write", f, ARRAY_SIZE(f));
}

static void on_put(struct http_exchange *x, const struct route_params *p, void *arg)
{
    static put_step_fn *const steps[] = {step_auth, step_fail, step_media,  step_case_id,
                                         step_key,  step_body, step_reject, step_apply};
    struct put_ctx c = {.m = arg, .x = x, .case_id = route_param(p, "case_id")};
    struct case_log_entry *e = case_reqlog_record(&c.m->log, x);
    c.m->stats.requests++;
    if (c.m->faults.drop_connections) {
        c.m->stats.failed++;
        case_reqlog_answered(e, 0, "failed", "drop");
        http_exchange_abort(x);
        return;
    }
    size_t i = 0;
    while (i < ARRAY_SIZE(steps) && !steps[i](&c))
        i++;
    count(&c.m->stats, c.outcome);
    case_reqlog_answered(e, c.status, c.outcome, c.fault);
    log_write(&c);
    case_server_answer_later(c.m, x, c.status, c.body);
}

static void on_get_client(struct http_exchange *x, const struct route_params *p, void *arg)
{
    struct mock_case *m = arg;
    const char *case_id = route_param(p, "case_id");
    if (!case_id_is_valid(case_id)) {
        http_exchange_respond_error(x, 400, "invalid_field", "case_id",
                                    "must be 1 to 64 of A-Za-z0-9._:-");
        return;
    }
    json_t *client = case_store_client(m->store, case_id);
    if (client == NULL) {
        http_exchange_respond_error(x, 404, "not_found", "case_id", "nothing written for it");
        return;
    }
    case_server_respond_json(x, 200, client);
}

int case_write_add_routes(struct mock_case *m, bool admin)
{
    int err = router_add(m->router, "PUT", "/clients/{case_id}/nhs-number", NULL, on_put, m);
    if (err || !admin)
        return err;
    return router_add(m->router, "GET", "/clients/{case_id}", NULL, on_get_client, m);
}
