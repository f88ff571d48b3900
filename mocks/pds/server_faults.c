#include "server_int.h"

#include <stdlib.h>
#include <string.h>

#include "mock_faults.h"
#include "pdstrace/err.h"
#include "pdstrace/http_server.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/router.h"

/* One application's rolling rate window. */
struct server_window {
    struct server_window *next;
    uint64_t *stamps; /* loop times (ms) of the last admitted requests, a ring */
    unsigned head, count;
    char name[];
};

#define FIELD(member, kind) MOCK_FIELD(struct mock_pds_faults, member, kind)

/* GET /_admin/faults shows them in this order. */
static const struct mock_field fault_fields[] = {
    FIELD(latency_ms, MOCK_FIELD_UINT),         FIELD(fail_rate, MOCK_FIELD_RATE),
    FIELD(fail_status, MOCK_FIELD_STATUS),      FIELD(retry_after, MOCK_FIELD_UINT),
    FIELD(reset_rate, MOCK_FIELD_RATE),         FIELD(rate_limit_per_min, MOCK_FIELD_UINT),
    FIELD(rate_window_ms, MOCK_FIELD_UINT),     FIELD(fail_next, MOCK_FIELD_UINT),
    FIELD(fail_next_status, MOCK_FIELD_STATUS), FIELD(reset_next, MOCK_FIELD_UINT),
    FIELD(hang_next, MOCK_FIELD_UINT),
};

/* ---- the rate windows ------------------------------------------------------------------ */

void server_faults_windows_free(struct mock_pds *m)
{
    while (m->windows != NULL) {
        struct server_window *w = m->windows;
        m->windows = w->next;
        free(w->stamps);
        free(w);
    }
}

static struct server_window *window_get(struct mock_pds *m, const char *app)
{
    for (struct server_window *w = m->windows; w != NULL; w = w->next)
        if (strcmp(w->name, app) == 0)
            return w;
    size_t n = strlen(app) + 1;
    struct server_window *w = calloc(1, sizeof(*w) + n);
    if (w == NULL)
        return NULL;
    w->stamps = calloc(m->faults.rate_limit_per_min, sizeof(*w->stamps));
    if (w->stamps == NULL) {
        free(w);
        return NULL;
    }
    memcpy(w->name, app, n);
    w->next = m->windows;
    m->windows = w;
    return w;
}

/* A rolling window of the admitted requests' times: full and its oldest entry younger than
 * the window (a minute, unless told otherwise) means over the limit. Refused requests do not count,
 * so a client that backs off gets through again. */
bool server_faults_rate_admit(struct mock_pds *m, const char *app)
{
    unsigned limit = m->faults.rate_limit_per_min;
    if (limit == 0)
        return true;
    struct server_window *w = window_get(m, app);
    if (w == NULL)
        return true;
    uint64_t now = uv_now(m->loop);
    if (w->count == limit) {
        if (now - w->stamps[w->head] < m->faults.rate_window_ms)
            return false;
        w->stamps[w->head] = now;
        w->head = (w->head + 1) % limit;
        return true;
    }
    w->stamps[(w->head + w->count++) % limit] = now;
    return true;
}

/* ---- checking and changing the faults ---------------------------------------------------- */

static bool status_ok(int s)
{
    /* 400 and 403 let tests see how clients treat a refusal of their request. */
    return s == 400 || s == 403 || s == 408 || s == 429 || (s >= 500 && s <= 504);
}

int mock_pds_faults_check(const struct mock_pds_faults *f, const char **field)
{
    const char *bad = NULL;
    if (f->latency_ms > MOCK_PDS_MAX_DELAY)
        bad = "latency_ms";
    else if (!(f->fail_rate >= 0 && f->fail_rate <= 1))
        bad = "fail_rate";
    else if (!(f->reset_rate >= 0 && f->reset_rate <= 1))
        bad = "reset_rate";
    else if (!status_ok(f->fail_status))
        bad = "fail_status";
    else if (!status_ok(f->fail_next_status))
        bad = "fail_next_status";
    else if (f->rate_limit_per_min > 1000000)
        bad = "rate_limit_per_min";
    else if (f->rate_window_ms < 1 || f->rate_window_ms > 3600000)
        bad = "rate_window_ms";
    if (field != NULL)
        *field = bad;
    return bad != NULL ? ERR_INVALID_INPUT : 0;
}

static json_t *faults_json(const struct mock_pds_faults *f)
{
    return mock_fields_json(fault_fields, ARRAY_SIZE(fault_fields), f);
}

/* Applies a PUT body to a copy; the faults change only when every field is good. */
static const char *faults_apply(struct mock_pds_faults *f, json_t *body)
{
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        const struct mock_field *mf = mock_field_find(fault_fields, ARRAY_SIZE(fault_fields), key);
        if (mf == NULL || !mock_field_set(mf, f, v))
            return key;
    }
    const char *bad = NULL;
    mock_pds_faults_check(f, &bad);
    return bad;
}

/* ---- GET and PUT /_admin/faults ------------------------------------------------------- */

static void on_faults_get(struct http_exchange *x, const struct route_params *p, void *arg)
{
    struct mock_pds *m = arg;
    UNUSED(p);
    server_respond_json(x, 200, faults_json(&m->faults));
}

static void on_faults_put(struct http_exchange *x, const struct route_params *p, void *arg)
{
    struct mock_pds *m = arg;
    json_t *body = mock_body_object(x, 0);
    struct mock_pds_faults f = m->faults;
    UNUSED(p);
    if (body == NULL)
        return;
    const char *bad = faults_apply(&f, body);
    if (bad != NULL) {
        http_exchange_respond_error(x, 400, "invalid_field", bad, "unknown field or bad value");
        json_decref(body);
        return;
    }
    /* A new limit or window starts every application's window afresh. */
    if (json_object_get(body, "rate_limit_per_min") != NULL ||
        json_object_get(body, "rate_window_ms") != NULL)
        server_faults_windows_free(m);
    json_decref(body);
    m->faults = f;
    log_event(LOG_LEVEL_INFO, NULL, "faults set", faults_json(&m->faults));
    server_respond_json(x, 200, faults_json(&m->faults));
}

int server_faults_add_routes(struct mock_pds *m)
{
    static const struct mock_route routes[] = {
        {"GET", "/_admin/faults", on_faults_get},
        {"PUT", "/_admin/faults", on_faults_put},
    };
    return mock_add_routes(m->router, routes, ARRAY_SIZE(routes), m);
}
