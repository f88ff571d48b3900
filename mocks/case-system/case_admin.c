#include "case_server_int.h"

#include <stdlib.h>
#include <string.h>

#include "case_body.h"
#include "case_store.h"
#include "mock_faults.h"
#include "pdstrace/err.h"
#include "pdstrace/http_server.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/router.h"

#define FIELD(member, kind) MOCK_FIELD(struct mock_case_faults, member, kind)

/* GET /_admin/faults shows them in this order, then reject_cases and refuse_ms. */
static const struct mock_field fault_fields[] = {
    FIELD(latency_ms, MOCK_FIELD_UINT),       FIELD(fail_next, MOCK_FIELD_UINT),
    FIELD(fail_rate, MOCK_FIELD_RATE),        FIELD(fail_status, MOCK_FIELD_STATUS),
    FIELD(drop_connections, MOCK_FIELD_BOOL),
};

/* A PUT /_admin/faults body applied to copies, so that nothing changes unless all is good. */
struct faults_change {
    struct mock_case_faults f;
    json_t *reject; /* the new reject_cases set, or NULL when not given */
    unsigned refuse_ms;
};

/* ---- checking the faults ---------------------------------------------------------- */

static bool status_ok(int s)
{
    /* What a write-back worker retries (DESIGN.md §5); other 4xx come from reject_cases. */
    return s == 408 || s == 429 || (s >= 500 && s <= 504);
}

int mock_case_faults_check(const struct mock_case_faults *f, const char **field)
{
    const char *bad = NULL;
    if (f->latency_ms > MOCK_CASE_MAX_DELAY)
        bad = "latency_ms";
    else if (!(f->fail_rate >= 0 && f->fail_rate <= 1))
        bad = "fail_rate";
    else if (!status_ok(f->fail_status))
        bad = "fail_status";
    if (field != NULL)
        *field = bad;
    return bad != NULL ? ERR_INVALID_INPUT : 0;
}

static json_t *faults_json(const struct mock_case *m)
{
    json_t *o = mock_fields_json(fault_fields, ARRAY_SIZE(fault_fields), &m->faults);
    json_t *cases = json_array();
    const char *id;
    json_t *v;
    json_object_foreach(m->reject_cases, id, v)
    {
        json_array_append_new(cases, json_string(id));
    }
    json_object_set_new(o, "reject_cases", cases);
    /* A one-shot action: nothing is left of it once the listener is back. */
    json_object_set_new(o, "refuse_ms", json_integer(0));
    return o;
}

/* reject_cases: an array of valid case ids, which replaces the set. */
static bool reject_set(struct faults_change *ch, json_t *v)
{
    size_t i;
    json_t *id;
    if (!json_is_array(v) || json_array_size(v) > MOCK_CASE_MAX_REJECTED)
        return false;
    json_decref(ch->reject);
    ch->reject = json_object();
    json_array_foreach(v, i, id)
    {
        if (ch->reject == NULL || !case_id_is_valid(json_string_value(id)) ||
            json_object_set_new(ch->reject, json_string_value(id), json_true()) != 0)
            return false;
    }
    return true;
}

static bool apply_one(struct faults_change *ch, const char *key, json_t *v)
{
    if (strcmp(key, "reject_cases") == 0)
        return reject_set(ch, v);
    if (strcmp(key, "refuse_ms") == 0)
        return mock_json_uint(v, MOCK_CASE_MAX_DELAY, &ch->refuse_ms);
    const struct mock_field *f = mock_field_find(fault_fields, ARRAY_SIZE(fault_fields), key);
    return f != NULL && mock_field_set(f, &ch->f, v);
}

/* Returns the first bad field (borrowed from body), or NULL when every field is good. */
static const char *faults_apply(struct faults_change *ch, json_t *body)
{
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        if (!apply_one(ch, key, v))
            return key;
    }
    const char *bad = NULL;
    mock_case_faults_check(&ch->f, &bad);
    return bad;
}

void case_admin_faults_off(struct mock_case *m)
{
    m->faults = (struct mock_case_faults){.fail_status = 503};
    json_object_clear(m->reject_cases);
}

/* ---- the routes ------------------------------------------------------------------- */

static void on_faults_get(struct http_exchange *x, const struct route_params *p, void *arg)
{
    UNUSED(p);
    case_server_respond_json(x, 200, faults_json(arg));
}

static void on_faults_put(struct http_exchange *x, const struct route_params *p, void *arg)
{
    struct mock_case *m = arg;
    json_t *body = mock_body_object(x, JSON_REJECT_DUPLICATES);
    struct faults_change ch = {.f = m->faults};
    UNUSED(p);
    if (body == NULL)
        return;
    const char *bad = faults_apply(&ch, body);
    if (bad != NULL) {
        http_exchange_respond_error(x, 400, "invalid_field", bad, "unknown field or bad value");
        json_decref(ch.reject);
        json_decref(body);
        return;
    }
    json_decref(body);
    m->faults = ch.f;
    if (ch.reject != NULL) {
        json_decref(m->reject_cases);
        m->reject_cases = ch.reject;
    }
    log_event(LOG_LEVEL_INFO, NULL, "faults set", faults_json(m));
    /* Before answering, so that the listener is closed by the time the client reads this
     * answer; the answer still goes out, as the last one on its connection. */
    case_server_refuse(m, ch.refuse_ms);
    case_server_respond_json(x, 200, faults_json(m));
}

static void on_faults_delete(struct http_exchange *x, const struct route_params *p, void *arg)
{
    UNUSED(p);
    case_admin_faults_off(arg);
    log_msgf(LOG_LEVEL_INFO, NULL, "faults cleared");
    http_exchange_respond(x, 204, NULL, NULL, 0);
}

static void on_stats(struct http_exchange *x, const struct route_params *p, void *arg)
{
    struct mock_case *m = arg;
    const struct case_stats *s = &m->stats;
    UNUSED(p);
    case_server_respond_json(
        x, 200,
        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "requests", (json_int_t)s->requests,
                  "deliveries", (json_int_t)s->deliveries, "duplicates", (json_int_t)s->duplicates,
                  "rejected", (json_int_t)s->rejected, "failed", (json_int_t)s->failed, "clients",
                  (json_int_t)case_store_clients(m->store), "keys",
                  (json_int_t)case_store_keys(m->store)));
}

static void on_reset(struct http_exchange *x, const struct route_params *p, void *arg)
{
    UNUSED(p);
    case_server_reset(arg);
    log_msgf(LOG_LEVEL_INFO, NULL, "reset");
    http_exchange_respond(x, 204, NULL, NULL, 0);
}

int case_admin_add_routes(struct mock_case *m)
{
    static const struct mock_route routes[] = {
        {"GET", "/_admin/faults", on_faults_get},
        {"PUT", "/_admin/faults", on_faults_put},
        {"DELETE", "/_admin/faults", on_faults_delete},
        {"GET", "/_admin/stats", on_stats},
        {"POST", "/_admin/reset", on_reset},
    };
    return mock_add_routes(m->router, routes, ARRAY_SIZE(routes), m);
}
