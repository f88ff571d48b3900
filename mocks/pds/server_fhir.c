#include "server_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock_faults.h"
#include "pdstrace/err.h"
#include "pdstrace/http_server.h"
#include "pdstrace/macros.h"
#include "pdstrace/router.h"
#include "sandbox.h"
#include "search.h"

#define ANONYMOUS  "anonymous"
#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(6))

/* What one FHIR request carries through the fault and serving steps. */
struct fhir_req {
    struct mock_pds *m;
    struct http_exchange *x;
    uint64_t seq;
    const char *app; /* the token's client id, or NULL */
    const char *id;  /* GET /Patient/{id}; NULL for a search */
};

static bool take(unsigned *counter)
{
    if (*counter == 0)
        return false;
    (*counter)--;
    return true;
}

static bool is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* Takes ownership of body. FHIR answers wait latency_ms. */
static void answer(struct fhir_req *r, int status, json_t *body, const char *fault)
{
    char *text = body != NULL ? json_dumps(body, DUMP_FLAGS) : NULL;
    json_decref(body);
    if (text == NULL) {
        status = 500;
        text = strdup("{\"resourceType\":\"OperationOutcome\"}");
        if (text == NULL) {
            http_exchange_abort(r->x);
            return;
        }
    }
    server_reqlog_answered(&r->m->log, r->seq, r->x, status, fault);
    server_respond_later(r->m, r->x, status, SERVER_FHIR_JSON, text);
}

static void answer_outcome(struct fhir_req *r, int status, const char *code, const char *diag,
                           const char *fault)
{
    answer(r, status, search_outcome_new(code, diag), fault);
}

/* ---- steps: each answers and returns true, or lets the next step run ------------------ */

static bool step_hang(struct fhir_req *r)
{
    struct mock_pds *m = r->m;
    server_sweep_hung(m);
    if (!take(&m->faults.hang_next))
        return false;
    server_reqlog_answered(&m->log, r->seq, r->x, 0, "hang");
    server_hang(m, r->x);
    return true;
}

static bool step_reset(struct fhir_req *r)
{
    if (!take(&r->m->faults.reset_next) && !mock_chance(&r->m->prng, r->m->faults.reset_rate))
        return false;
    server_reqlog_answered(&r->m->log, r->seq, r->x, 0, "reset");
    http_exchange_abort(r->x);
    return true;
}

static bool step_auth(struct fhir_req *r)
{
    if (r->m->pubkey == NULL || r->app != NULL)
        return false;
    answer_outcome(r, 401, "ACCESS_DENIED", "Invalid access token", "unauthorised");
    return true;
}

static bool step_rate(struct fhir_req *r)
{
    if (server_faults_rate_admit(r->m, r->app != NULL ? r->app : ANONYMOUS))
        return false;
    answer_outcome(r, 429, "TOO_MANY_REQUESTS", NULL, "rate_limit");
    return true;
}

static const char *spine_code_for(int status)
{
    switch (status) {
    case 429:
        return "TOO_MANY_REQUESTS";
    case 408:
        return "TIMEOUT";
    case 500:
        return "SERVER_ERROR";
    case 400:
        return "INVALID_SEARCH_DATA";
    case 403:
        return "ACCESS_DENIED";
    default:
        return "SERVICE_UNAVAILABLE";
    }
}

static bool step_fail(struct fhir_req *r)
{
    struct mock_pds_faults *f = &r->m->faults;
    int status;
    if (take(&f->fail_next))
        status = f->fail_next_status;
    else if (mock_chance(&r->m->prng, f->fail_rate))
        status = f->fail_status;
    else
        return false;
    char v[16];
    snprintf(v, sizeof(v), "%u", f->retry_after);
    if (f->retry_after > 0)
        http_exchange_add_header(r->x, "Retry-After", v);
    answer_outcome(r, status, spine_code_for(status), NULL, "fail");
    return true;
}

static bool step_request_id(struct fhir_req *r)
{
    const char *v = http_exchange_header(r->x, "X-Request-ID");
    if (v == NULL) {
        answer_outcome(r, 400, "MISSING_VALUE",
                       "Invalid request with error - X-Request-ID header must be supplied to "
                       "access this resource",
                       NULL);
        return true;
    }
    if (is_uuid(v))
        return false;
    char diag[256];
    snprintf(diag, sizeof(diag), "Invalid value - '%.160s' in header 'X-Request-ID'", v);
    answer_outcome(r, 400, "INVALID_VALUE", diag, NULL);
    return true;
}

/* ---- serving -------------------------------------------------------------------------- */

static void fhir_base(struct fhir_req *r, char *out, size_t size)
{
    const char *host = http_exchange_header(r->x, "Host");
    char fallback[32];
    if (host == NULL || strlen(host) > SERVER_HOST_MAX || strpbrk(host, "/\"\\ ") != NULL) {
        snprintf(fallback, sizeof(fallback), "127.0.0.1:%d", mock_pds_port(r->m));
        host = fallback;
    }
    snprintf(out, size, "http://%s%s/Patient", host, MOCK_PDS_BASE_PATH);
}

static void serve_search(struct fhir_req *r)
{
    const char *q = http_exchange_query(r->x);
    struct server_kv kv;
    int err = server_kv_parse(&kv, q, strlen(q), false);
    if (err) {
        answer_outcome(r, err == ERR_PARSE ? 400 : 500,
                       err == ERR_PARSE ? "INVALID_VALUE" : "SERVER_ERROR",
                       "Malformed query string", NULL);
        return;
    }
    char base[SERVER_HOST_MAX + 64];
    fhir_base(r, base, sizeof(base));
    struct search_ctx ctx = {.base_url = base, .now = 0};
    json_t *body = NULL;
    int status = r->m->sandbox != NULL ? sandbox_search(r->m->sandbox, kv.items, kv.n, &body)
                                       : search_patients(r->m->pop, kv.items, kv.n, &ctx, &body);
    server_kv_free(&kv);
    answer(r, status, body, NULL);
}

static void serve_retrieve(struct fhir_req *r)
{
    json_t *body = NULL;
    int status = r->m->sandbox != NULL ? sandbox_retrieve(r->m->sandbox, r->id, &body)
                                       : search_retrieve(r->m->pop, r->id, &body);
    const char *version =
        json_string_value(json_object_get(json_object_get(body, "meta"), "versionId"));
    if (status == 200 && version != NULL) {
        char etag[64];
        snprintf(etag, sizeof(etag), "W/\"%.40s\"", version);
        http_exchange_add_header(r->x, "ETag", etag);
    }
    answer(r, status, body, NULL);
}

typedef bool fhir_step(struct fhir_req *r);

/* The order of mocks/pds/README.md: faults first, as a gateway in front of PDS would. */
static void fhir_handle(struct mock_pds *m, struct http_exchange *x, const char *id)
{
    static fhir_step *const steps[] = {step_hang, step_reset, step_auth,
                                       step_rate, step_fail,  step_request_id};
    struct fhir_req r = {.m = m, .x = x, .id = id};
    r.app = server_token_client(m, x);
    r.seq = server_reqlog_record(&m->log, x, r.app);
    const char *corr = http_exchange_header(x, "X-Correlation-ID");
    if (corr != NULL)
        http_exchange_add_header(x, "X-Correlation-ID", corr);
    for (size_t i = 0; i < ARRAY_SIZE(steps); i++)
        if (steps[i](&r))
            return;
    if (id != NULL)
        serve_retrieve(&r);
    else
        serve_search(&r);
}

static void on_search(struct http_exchange *x, const struct route_params *p, void *arg)
{
    UNUSED(p);
    fhir_handle(arg, x, NULL);
}

static void on_retrieve(struct http_exchange *x, const struct route_params *p, void *arg)
{
    fhir_handle(arg, x, route_param(p, "id"));
}

int server_fhir_add_routes(struct mock_pds *m)
{
    int err = router_add(m->router, "GET", MOCK_PDS_BASE_PATH "/Patient", NULL, on_search, m);
    return err ? err
               : router_add(m->router, "GET", MOCK_PDS_BASE_PATH "/Patient/{id}", NULL, on_retrieve,
                            m);
}
