#include "server.h"

#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/http_server.h"
#include "pdstrace/jwt.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/router.h"
#include "pdstrace/url.h"
#include "population.h"
#include "sandbox.h"
#include "search.h"

#define FHIR_JSON     "application/fhir+json"
#define PLAIN_JSON    "application/json"
#define FORM_TYPE     "application/x-www-form-urlencoded"
#define ASSERTION_TYP "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#define ANONYMOUS     "anonymous"
#define WINDOW_MS     60000
#define STORE_MAX     100000 /* tokens or jtis remembered at once */
#define DUMP_FLAGS    (JSON_COMPACT | JSON_REAL_PRECISION(6))
#define HOST_MAX      200

/* One FHIR or token request as the admin API shows it. The strings live in the same
 * allocation; client_id and fault are static or borrowed from the mock. */
struct log_entry {
    uint64_t seq;
    long long time_ms;
    int status; /* 0 until answered; stays 0 for resets and hangs */
    bool authorization;
    const char *client_id;
    const char *fault;
    const char *method, *path, *query, *request_id, *correlation_id, *ods;
    char strings[];
};

/* An answer held back by latency_ms (timer_open) or a request never answered (hang). */
struct pending {
    struct pending *prev, *next;
    struct mock_pds *m;
    uv_timer_t timer;
    bool timer_open;
    struct http_exchange *x;
    int status;
    const char *ctype;
    char *body;
};

struct app_window {
    struct app_window *next;
    uint64_t *stamps; /* loop times (ms) of the last admitted requests, a ring */
    unsigned head, count;
    char name[];
};

struct mock_pds {
    uv_loop_t *loop;
    struct population *pop;
    const struct sandbox *sandbox;
    struct http_server *server;
    struct router *router;
    struct jwt_pubkey *pubkey;
    char *host, *client_id, *token_url;
    unsigned token_ttl_s;
    struct mock_pds_faults faults;
    uint64_t prng;
    json_t *tokens; /* access token -> expiry (ms since the epoch) */
    json_t *jtis;   /* jti -> its exp (s since the epoch) */
    struct app_window *windows;
    struct log_entry **ring;
    uint64_t next_seq, cleared_seq;
    struct pending *delayed, *hung;
    bool stopping;
    mock_pds_stopped_cb *stop_cb;
    void *stop_arg;
};

/* What one FHIR request carries through the fault and serving steps. */
struct fhir_req {
    struct mock_pds *m;
    struct http_exchange *x;
    uint64_t seq;
    const char *app; /* the token's client id, or NULL */
    const char *id;  /* GET /Patient/{id}; NULL for a search */
};

/* ---- small helpers ----------------------------------------------------------------- */

static long long wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* splitmix64: a seeded PRNG, so a fault pattern can be replayed. */
static uint64_t prng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static bool chance(struct mock_pds *m, double rate)
{
    if (rate <= 0)
        return false;
    return (double)(prng_next(&m->prng) >> 11) * 0x1.0p-53 < rate;
}

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

/* ---- query strings and form bodies ------------------------------------------------- */

struct kv_list {
    char *copy;
    struct search_param *items;
    size_t n;
};

static void kv_free(struct kv_list *kv)
{
    free(kv->copy);
    free(kv->items);
    kv->copy = NULL;
    kv->items = NULL;
    kv->n = 0;
}

static int kv_add(struct kv_list *kv, char *piece, bool plus_space)
{
    char *eq = strchr(piece, '=');
    char *value = eq != NULL ? eq + 1 : piece + strlen(piece);
    if (eq != NULL)
        *eq = '\0';
    if (url_decode(piece, plus_space) || url_decode(value, plus_space))
        return ERR_PARSE;
    kv->items[kv->n++] = (struct search_param){piece, value};
    return 0;
}

/* Splits "a=1&b=2" into decoded pairs in order, repeats kept; empty pieces are skipped. */
static int kv_parse(struct kv_list *kv, const char *s, size_t len, bool plus_space)
{
    size_t max = 1;
    *kv = (struct kv_list){0};
    for (size_t i = 0; i < len; i++)
        max += s[i] == '&';
    kv->copy = malloc(len + 1);
    kv->items = malloc(max * sizeof(*kv->items));
    if (kv->copy == NULL || kv->items == NULL) {
        kv_free(kv);
        return UV_ENOMEM;
    }
    memcpy(kv->copy, s, len);
    kv->copy[len] = '\0';
    int err = 0;
    for (char *p = kv->copy, *amp; !err && p != NULL; p = amp != NULL ? amp + 1 : NULL) {
        amp = strchr(p, '&');
        if (amp != NULL)
            *amp = '\0';
        if (*p != '\0')
            err = kv_add(kv, p, plus_space);
    }
    if (err)
        kv_free(kv);
    return err;
}

static const char *kv_get(const struct kv_list *kv, const char *name)
{
    for (size_t i = 0; i < kv->n; i++)
        if (strcmp(kv->items[i].name, name) == 0)
            return kv->items[i].value;
    return NULL;
}

/* ---- request log -------------------------------------------------------------------- */

enum { LF_METHOD, LF_PATH, LF_QUERY, LF_REQUEST_ID, LF_CORRELATION_ID, LF_ODS, LF_COUNT };

static struct log_entry *entry_new(const char *const v[LF_COUNT])
{
    size_t total = 0;
    for (int i = 0; i < LF_COUNT; i++)
        total += v[i] != NULL ? strlen(v[i]) + 1 : 0;
    struct log_entry *e = calloc(1, sizeof(*e) + total);
    if (e == NULL)
        return NULL;
    const char **dst[LF_COUNT] = {&e->method,     &e->path,           &e->query,
                                  &e->request_id, &e->correlation_id, &e->ods};
    char *p = e->strings;
    for (int i = 0; i < LF_COUNT; i++) {
        if (v[i] == NULL)
            continue;
        size_t n = strlen(v[i]) + 1;
        memcpy(p, v[i], n);
        *dst[i] = p;
        p += n;
    }
    return e;
}

/* Records a request and returns its sequence number (0 when out of memory). */
static uint64_t log_record(struct mock_pds *m, struct http_exchange *x, const char *client)
{
    const char *v[LF_COUNT] = {
        http_exchange_method(x),
        http_exchange_path(x),
        http_exchange_query(x),
        http_exchange_header(x, "X-Request-ID"),
        http_exchange_header(x, "X-Correlation-ID"),
        http_exchange_header(x, "NHSD-End-User-Organisation-ODS"),
    };
    struct log_entry *e = entry_new(v);
    if (e == NULL)
        return 0;
    e->seq = m->next_seq++;
    e->time_ms = wall_ms();
    e->authorization = http_exchange_header(x, "Authorization") != NULL;
    e->client_id = client;
    struct log_entry **slot = &m->ring[e->seq % MOCK_PDS_LOG_CAP];
    free(*slot);
    *slot = e;
    return e->seq;
}

static struct log_entry *log_find(struct mock_pds *m, uint64_t seq)
{
    struct log_entry *e = m->ring[seq % MOCK_PDS_LOG_CAP];
    return e != NULL && e->seq == seq ? e : NULL;
}

static void log_outcome(struct mock_pds *m, uint64_t seq, int status, const char *fault)
{
    struct log_entry *e = log_find(m, seq);
    if (e == NULL)
        return;
    e->status = status;
    e->fault = fault;
}

static void log_clear(struct mock_pds *m)
{
    for (size_t i = 0; i < MOCK_PDS_LOG_CAP; i++) {
        free(m->ring[i]);
        m->ring[i] = NULL;
    }
    m->cleared_seq = m->next_seq - 1;
}

static json_t *entry_json(const struct log_entry *e)
{
    return json_pack("{s:I, s:I, s:s, s:s, s:s, s:s?, s:s?, s:b, s:s?, s:s?, s:i, s:s?}", "seq",
                     (json_int_t)e->seq, "time_ms", (json_int_t)e->time_ms, "method", e->method,
                     "path", e->path, "query", e->query, "x_request_id", e->request_id,
                     "x_correlation_id", e->correlation_id, "authorization", e->authorization,
                     "client_id", e->client_id, "ods", e->ods, "status", e->status, "fault",
                     e->fault);
}

static json_t *log_json(struct mock_pds *m)
{
    uint64_t count = m->next_seq - 1 - m->cleared_seq;
    json_t *list = json_array();
    json_t *root = json_pack("{s:I, s:o}", "count", (json_int_t)count, "requests", list);
    uint64_t first = m->next_seq - (count < MOCK_PDS_LOG_CAP ? count : MOCK_PDS_LOG_CAP);
    for (uint64_t s = first; root != NULL && s < m->next_seq; s++) {
        const struct log_entry *e = log_find(m, s);
        if (e != NULL && json_array_append_new(list, entry_json(e)) != 0) {
            json_decref(root);
            return NULL;
        }
    }
    return root;
}

/* Debug only, and without the query string or the path: both can hold personal data. */
static void log_line(struct http_exchange *x, int status, const char *fault)
{
    if (!log_enabled(LOG_LEVEL_DEBUG))
        return;
    json_int_t us = (json_int_t)((uv_hrtime() - http_exchange_start_ns(x)) / 1000);
    log_event(LOG_LEVEL_DEBUG, http_exchange_request_id(x), "request",
              json_pack("{s:s, s:s, s:i, s:s*, s:I}", "method", http_exchange_method(x), "route",
                        http_exchange_route(x), "status", status, "fault", fault, "us", us));
}

/* ---- pending answers ---------------------------------------------------------------- */

static void list_add(struct pending **head, struct pending *p)
{
    p->prev = NULL;
    p->next = *head;
    if (*head != NULL)
        (*head)->prev = p;
    *head = p;
}

static void list_del(struct pending **head, struct pending *p)
{
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        *head = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
}

static void pending_free(struct pending *p)
{
    free(p->body);
    free(p);
}

static void on_pending_close(uv_handle_t *h)
{
    pending_free(h->data);
}

/* Ends a pending entry; the body goes out (or is dropped, when the exchange is detached),
 * or with reset the connection is dropped. The struct goes once its timer has closed. */
static void pending_finish(struct pending *p, bool reset)
{
    if (reset)
        http_exchange_abort(p->x);
    else
        http_exchange_respond(p->x, p->status, p->ctype, p->body, strlen(p->body));
    if (!p->timer_open) {
        pending_free(p);
        return;
    }
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_pending_close);
}

static void on_delay(uv_timer_t *t)
{
    struct pending *p = t->data;
    list_del(&p->m->delayed, p);
    pending_finish(p, false);
}

/* Takes ownership of body. Returns false (body freed) when nothing could be set up. */
static bool delay(struct mock_pds *m, struct http_exchange *x, int status, const char *ctype,
                  char *body)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (p == NULL || uv_timer_init(m->loop, &p->timer) != 0) {
        free(p);
        free(body);
        return false;
    }
    p->m = m;
    p->timer_open = true;
    p->x = x;
    p->status = status;
    p->ctype = ctype;
    p->body = body;
    p->timer.data = p;
    /* The loop's cached time may be stale after other work in this turn. */
    uv_update_time(m->loop);
    uv_timer_start(&p->timer, on_delay, m->faults.latency_ms, 0);
    list_add(&m->delayed, p);
    return true;
}

static void drop_all(struct mock_pds *m)
{
    while (m->hung != NULL) {
        struct pending *p = m->hung;
        list_del(&m->hung, p);
        pending_finish(p, true);
    }
    while (m->delayed != NULL) {
        struct pending *p = m->delayed;
        list_del(&m->delayed, p);
        pending_finish(p, false);
    }
}

/* Hung exchanges whose client has gone would otherwise be held until shutdown. */
static void sweep_hung(struct mock_pds *m)
{
    struct pending *next;
    for (struct pending *p = m->hung; p != NULL; p = next) {
        next = p->next;
        if (http_exchange_is_detached(p->x)) {
            list_del(&m->hung, p);
            pending_finish(p, true);
        }
    }
}

/* ---- answering ---------------------------------------------------------------------- */

static void respond_text(struct mock_pds *m, struct http_exchange *x, int status, const char *ctype,
                         char *text, bool may_delay)
{
    if (may_delay && m->faults.latency_ms > 0 && !m->stopping) {
        if (!delay(m, x, status, ctype, text))
            http_exchange_respond_error(x, 500, "internal", NULL, "out of memory");
        return;
    }
    http_exchange_respond(x, status, ctype, text, strlen(text));
    free(text);
}

/* Takes ownership of body. FHIR answers wait latency_ms; others go at once. */
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
    log_outcome(r->m, r->seq, status, fault);
    log_line(r->x, status, fault);
    respond_text(r->m, r->x, status, FHIR_JSON, text, true);
}

static void answer_outcome(struct fhir_req *r, int status, const char *code, const char *diag,
                           const char *fault)
{
    answer(r, status, search_outcome_new(code, diag), fault);
}

static void answer_json(struct http_exchange *x, int status, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        http_exchange_respond_error(x, 500, "internal", NULL, "out of memory");
        return;
    }
    http_exchange_respond(x, status, PLAIN_JSON, text, strlen(text));
    free(text);
}

/* ---- tokens and rate windows -------------------------------------------------------- */

/* The client id behind a valid bearer token, or NULL. */
static const char *token_client(struct mock_pds *m, struct http_exchange *x)
{
    const char *h = http_exchange_header(x, "Authorization");
    if (m->pubkey == NULL || h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    json_t *exp = json_object_get(m->tokens, h + 7);
    if (exp == NULL || json_integer_value(exp) <= wall_ms())
        return NULL;
    return m->client_id;
}

static void prune(json_t *store, long long now)
{
    const char *key;
    json_t *value;
    void *tmp;
    json_object_foreach_safe(store, tmp, key, value)
    {
        if (json_integer_value(value) <= now)
            json_object_del(store, key);
    }
}

static void windows_free(struct mock_pds *m)
{
    while (m->windows != NULL) {
        struct app_window *w = m->windows;
        m->windows = w->next;
        free(w->stamps);
        free(w);
    }
}

static struct app_window *window_get(struct mock_pds *m, const char *app)
{
    for (struct app_window *w = m->windows; w != NULL; w = w->next)
        if (strcmp(w->name, app) == 0)
            return w;
    size_t n = strlen(app) + 1;
    struct app_window *w = calloc(1, sizeof(*w) + n);
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
 * a minute means over the limit. Refused requests do not count, so a client that backs off
 * gets through again. */
static bool rate_admit(struct mock_pds *m, const char *app)
{
    unsigned limit = m->faults.rate_limit_per_min;
    if (limit == 0)
        return true;
    struct app_window *w = window_get(m, app);
    if (w == NULL)
        return true;
    uint64_t now = uv_now(m->loop);
    if (w->count == limit) {
        if (now - w->stamps[w->head] < WINDOW_MS)
            return false;
        w->stamps[w->head] = now;
        w->head = (w->head + 1) % limit;
        return true;
    }
    w->stamps[(w->head + w->count++) % limit] = now;
    return true;
}

/* ---- FHIR steps: each answers and returns true, or lets the next step run ------------ */

static bool step_hang(struct fhir_req *r)
{
    struct mock_pds *m = r->m;
    sweep_hung(m);
    if (!take(&m->faults.hang_next))
        return false;
    log_outcome(m, r->seq, 0, "hang");
    log_line(r->x, 0, "hang");
    struct pending *p = calloc(1, sizeof(*p));
    if (p == NULL || m->stopping) {
        free(p);
        http_exchange_abort(r->x);
        return true;
    }
    p->m = m;
    p->x = r->x;
    list_add(&m->hung, p);
    return true;
}

static bool step_reset(struct fhir_req *r)
{
    if (!take(&r->m->faults.reset_next) && !chance(r->m, r->m->faults.reset_rate))
        return false;
    log_outcome(r->m, r->seq, 0, "reset");
    log_line(r->x, 0, "reset");
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
    if (rate_admit(r->m, r->app != NULL ? r->app : ANONYMOUS))
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
    else if (chance(r->m, f->fail_rate))
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

static void fhir_base(struct fhir_req *r, char *out, size_t size)
{
    const char *host = http_exchange_header(r->x, "Host");
    char fallback[32];
    if (host == NULL || strlen(host) > HOST_MAX || strpbrk(host, "/\"\\ ") != NULL) {
        snprintf(fallback, sizeof(fallback), "127.0.0.1:%d", mock_pds_port(r->m));
        host = fallback;
    }
    snprintf(out, size, "http://%s%s/Patient", host, MOCK_PDS_BASE_PATH);
}

static void serve_search(struct fhir_req *r)
{
    const char *q = http_exchange_query(r->x);
    struct kv_list kv;
    int err = kv_parse(&kv, q, strlen(q), false);
    if (err) {
        answer_outcome(r, err == ERR_PARSE ? 400 : 500,
                       err == ERR_PARSE ? "INVALID_VALUE" : "SERVER_ERROR",
                       "Malformed query string", NULL);
        return;
    }
    char base[HOST_MAX + 64];
    fhir_base(r, base, sizeof(base));
    struct search_ctx ctx = {.base_url = base, .now = 0};
    json_t *body = NULL;
    int status = r->m->sandbox != NULL ? sandbox_search(r->m->sandbox, kv.items, kv.n, &body)
                                       : search_patients(r->m->pop, kv.items, kv.n, &ctx, &body);
    kv_free(&kv);
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
    r.app = token_client(m, x);
    r.seq = log_record(m, x, r.app);
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

/* ---- POST /oauth2/token -------------------------------------------------------------- */

/* The NHS OAuth server's error shape. */
struct oauth_fail {
    int status;
    const char *error;
    const char *desc;
};

static bool oauth_fail(struct oauth_fail *f, int status, const char *error, const char *desc)
{
    *f = (struct oauth_fail){status, error, desc};
    return false;
}

static bool bad_request(struct oauth_fail *f, const char *desc)
{
    return oauth_fail(f, 400, "invalid_request", desc);
}

static bool form_ok(struct http_exchange *x, struct kv_list *kv, struct oauth_fail *f)
{
    const char *ct = http_exchange_header(x, "Content-Type");
    size_t n = strlen(FORM_TYPE);
    if (ct == NULL || strncasecmp(ct, FORM_TYPE, n) != 0 || (ct[n] != '\0' && ct[n] != ';'))
        return bad_request(f, "Content-Type must be " FORM_TYPE);
    size_t len;
    const char *body = http_exchange_body(x, &len);
    if (kv_parse(kv, body, len, true) != 0)
        return bad_request(f, "Malformed form body");
    const char *grant = kv_get(kv, "grant_type");
    const char *type = kv_get(kv, "client_assertion_type");
    if (grant == NULL)
        return bad_request(f, "grant_type is missing");
    if (strcmp(grant, "client_credentials") != 0)
        return bad_request(f, "grant_type is invalid");
    if (type == NULL || strcmp(type, ASSERTION_TYP) != 0)
        return bad_request(f, "Missing or invalid client_assertion_type - must be '" ASSERTION_TYP
                              "'");
    if (kv_get(kv, "client_assertion") == NULL)
        return bad_request(f, "Missing client_assertion");
    return true;
}

static bool aud_ok(struct mock_pds *m, struct http_exchange *x, const char *aud)
{
    const char *host = http_exchange_header(x, "Host");
    char used[HOST_MAX + 32];
    if (aud == NULL)
        return false;
    if (m->token_url != NULL && strcmp(aud, m->token_url) == 0)
        return true;
    if (host == NULL || strlen(host) > HOST_MAX)
        return false;
    snprintf(used, sizeof(used), "http://%s/oauth2/token", host);
    return strcmp(aud, used) == 0;
}

static bool exp_ok(json_t *exp, long long now, struct oauth_fail *f)
{
    if (!json_is_integer(exp))
        return bad_request(f, "Missing exp claim in client_assertion JWT");
    json_int_t v = json_integer_value(exp);
    if (v <= now)
        return bad_request(f, "Invalid exp claim in client_assertion JWT - JWT has expired");
    if (v > now + JWT_MAX_TTL_S)
        return bad_request(f, "Invalid exp claim in client_assertion JWT - more than 5 "
                              "minutes in future");
    return true;
}

static bool claims_ok(struct mock_pds *m, struct http_exchange *x, json_t *claims,
                      struct oauth_fail *f)
{
    const char *iss = json_string_value(json_object_get(claims, "iss"));
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    const char *jti = json_string_value(json_object_get(claims, "jti"));
    long long now = wall_ms() / 1000;
    if (iss == NULL || sub == NULL || strcmp(iss, sub) != 0 || strcmp(iss, m->client_id) != 0)
        return oauth_fail(f, 401, "invalid_client",
                          "Missing or non-matching 'iss'/'sub' claims in client_assertion JWT");
    if (!aud_ok(m, x, json_string_value(json_object_get(claims, "aud"))))
        return oauth_fail(f, 401, "invalid_client",
                          "Missing or non-matching 'aud' claim in client_assertion JWT");
    if (!exp_ok(json_object_get(claims, "exp"), now, f))
        return false;
    if (jti == NULL || jti[0] == '\0')
        return bad_request(f, "Missing jti claim in client_assertion JWT");
    prune(m->jtis, now);
    if (json_object_get(m->jtis, jti) != NULL)
        return bad_request(f, "Non-unique jti claim in client_assertion JWT");
    if (json_object_size(m->jtis) >= STORE_MAX)
        return oauth_fail(f, 503, "temporarily_unavailable", "Too many assertions in flight");
    json_object_set_new(m->jtis, jti,
                        json_integer(json_integer_value(json_object_get(claims, "exp"))));
    return true;
}

static bool assertion_ok(struct mock_pds *m, struct http_exchange *x, const char *jwt,
                         struct oauth_fail *f)
{
    json_t *header = NULL;
    json_t *claims = NULL;
    int err = jwt_verify(m->pubkey, jwt, &header, &claims);
    bool ok;
    if (err == ERR_PARSE)
        ok = bad_request(f, "Malformed JWT in client_assertion");
    else if (err)
        ok = oauth_fail(f, 401, "invalid_client",
                        "Unable to verify the client_assertion JWT (RS512 signature)");
    else if (!json_is_string(json_object_get(header, "kid")))
        ok = bad_request(f, "Missing 'kid' header in client_assertion JWT");
    else
        ok = claims_ok(m, x, claims, f);
    json_decref(header);
    json_decref(claims);
    return ok;
}

/* A random opaque token, remembered with its expiry. Returns 0 or ERR_UNAVAILABLE. */
static int token_issue(struct mock_pds *m, char token[40])
{
    unsigned char raw[24];
    long long now = wall_ms();
    if (crypto_random(raw, sizeof(raw)) != 0)
        return ERR_UNAVAILABLE;
    crypto_base64url(raw, sizeof(raw), token, 40);
    prune(m->tokens, now);
    if (json_object_size(m->tokens) >= STORE_MAX)
        return ERR_UNAVAILABLE;
    json_object_set_new(m->tokens, token, json_integer(now + (long long)m->token_ttl_s * 1000));
    return 0;
}

/* NHS answers expires_in and issued_at as strings. */
static json_t *token_body(struct mock_pds *m)
{
    char token[40], ttl[16], issued[24];
    if (token_issue(m, token) != 0)
        return NULL;
    snprintf(ttl, sizeof(ttl), "%u", m->token_ttl_s);
    snprintf(issued, sizeof(issued), "%lld", wall_ms());
    return json_pack("{s:s, s:s, s:s, s:s}", "access_token", token, "expires_in", ttl, "token_type",
                     "Bearer", "issued_at", issued);
}

static void token_refuse(struct mock_pds *m, struct http_exchange *x, uint64_t seq,
                         const struct oauth_fail *f)
{
    log_outcome(m, seq, f->status, NULL);
    log_line(x, f->status, NULL);
    answer_json(x, f->status,
                json_pack("{s:s, s:s}", "error", f->error, "error_description", f->desc));
}

static void on_token(struct http_exchange *x, const struct route_params *p, void *arg)
{
    struct mock_pds *m = arg;
    struct oauth_fail f = {0};
    struct kv_list kv = {0};
    uint64_t seq = log_record(m, x, NULL);
    UNUSED(p);
    http_exchange_add_header(x, "Cache-Control", "no-store");
    if (m->pubkey == NULL)
        bad_request(&f, "mock-pds runs without --jwt-public-key: no tokens are issued");
    else if (form_ok(x, &kv, &f) && assertion_ok(m, x, kv_get(&kv, "client_assertion"), &f)) {
        struct log_entry *e = log_find(m, seq);
        json_t *body = token_body(m);
        if (e != NULL)
            e->client_id = m->client_id;
        if (body == NULL)
            oauth_fail(&f, 503, "temporarily_unavailable", "Cannot issue a token now");
        else {
            log_outcome(m, seq, 200, NULL);
            log_line(x, 200, NULL);
            answer_json(x, 200, body);
        }
    }
    kv_free(&kv);
    if (f.status != 0)
        token_refuse(m, x, seq, &f);
}

/* ---- admin API ------------------------------------------------------------------------ */

enum fault_kind { FK_UINT, FK_RATE, FK_STATUS };

static const struct fault_field {
    const char *name;
    enum fault_kind kind;
    size_t offset;
} fault_fields[] = {
    {"latency_ms", FK_UINT, offsetof(struct mock_pds_faults, latency_ms)},
    {"fail_rate", FK_RATE, offsetof(struct mock_pds_faults, fail_rate)},
    {"fail_status", FK_STATUS, offsetof(struct mock_pds_faults, fail_status)},
    {"retry_after", FK_UINT, offsetof(struct mock_pds_faults, retry_after)},
    {"reset_rate", FK_RATE, offsetof(struct mock_pds_faults, reset_rate)},
    {"rate_limit_per_min", FK_UINT, offsetof(struct mock_pds_faults, rate_limit_per_min)},
    {"fail_next", FK_UINT, offsetof(struct mock_pds_faults, fail_next)},
    {"fail_next_status", FK_STATUS, offsetof(struct mock_pds_faults, fail_next_status)},
    {"reset_next", FK_UINT, offsetof(struct mock_pds_faults, reset_next)},
    {"hang_next", FK_UINT, offsetof(struct mock_pds_faults, hang_next)},
};

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
    if (field != NULL)
        *field = bad;
    return bad != NULL ? ERR_INVALID_INPUT : 0;
}

static json_t *faults_json(const struct mock_pds_faults *f)
{
    json_t *o = json_object();
    for (size_t i = 0; o != NULL && i < ARRAY_SIZE(fault_fields); i++) {
        const char *at = (const char *)f + fault_fields[i].offset;
        json_t *v;
        if (fault_fields[i].kind == FK_RATE)
            v = json_real(*(const double *)(const void *)at);
        else if (fault_fields[i].kind == FK_STATUS)
            v = json_integer(*(const int *)(const void *)at);
        else
            v = json_integer(*(const unsigned *)(const void *)at);
        json_object_set_new(o, fault_fields[i].name, v);
    }
    return o;
}

static bool fault_set(struct mock_pds_faults *f, const struct fault_field *ff, json_t *v)
{
    void *at = (char *)f + ff->offset;
    if (ff->kind == FK_RATE) {
        if (!json_is_number(v))
            return false;
        *(double *)at = json_number_value(v);
        return true;
    }
    json_int_t i = json_integer_value(v);
    if (!json_is_integer(v) || i < 0 || i > INT_MAX)
        return false;
    if (ff->kind == FK_STATUS)
        *(int *)at = (int)i;
    else
        *(unsigned *)at = (unsigned)i;
    return true;
}

static const struct fault_field *fault_field(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(fault_fields); i++)
        if (strcmp(fault_fields[i].name, name) == 0)
            return &fault_fields[i];
    return NULL;
}

/* Applies a PUT body to a copy; the faults change only when every field is good. */
static const char *faults_apply(struct mock_pds_faults *f, json_t *body)
{
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        const struct fault_field *ff = fault_field(key);
        if (ff == NULL || !fault_set(f, ff, v))
            return key;
    }
    const char *bad = NULL;
    mock_pds_faults_check(f, &bad);
    return bad;
}

static void on_faults_get(struct http_exchange *x, const struct route_params *p, void *arg)
{
    struct mock_pds *m = arg;
    UNUSED(p);
    answer_json(x, 200, faults_json(&m->faults));
}

static void on_faults_put(struct http_exchange *x, const struct route_params *p, void *arg)
{
    struct mock_pds *m = arg;
    size_t len;
    const char *text = http_exchange_body(x, &len);
    json_t *body = json_loadb(text, len, 0, NULL);
    struct mock_pds_faults f = m->faults;
    UNUSED(p);
    if (!json_is_object(body)) {
        json_decref(body);
        http_exchange_respond_error(x, 400, "invalid_json", NULL, "expected a JSON object");
        return;
    }
    const char *bad = faults_apply(&f, body);
    if (bad != NULL) {
        http_exchange_respond_error(x, 400, "invalid_field", bad, "unknown field or bad value");
        json_decref(body);
        return;
    }
    /* A new limit starts every application's window afresh. */
    if (json_object_get(body, "rate_limit_per_min") != NULL)
        windows_free(m);
    json_decref(body);
    m->faults = f;
    log_event(LOG_LEVEL_INFO, NULL, "faults set", faults_json(&m->faults));
    answer_json(x, 200, faults_json(&m->faults));
}

static void on_requests_get(struct http_exchange *x, const struct route_params *p, void *arg)
{
    UNUSED(p);
    answer_json(x, 200, log_json(arg));
}

static void on_requests_delete(struct http_exchange *x, const struct route_params *p, void *arg)
{
    UNUSED(p);
    log_clear(arg);
    http_exchange_respond(x, 204, NULL, NULL, 0);
}

/* ---- life cycle ---------------------------------------------------------------------- */

void mock_pds_config_init(struct mock_pds_config *cfg)
{
    *cfg = (struct mock_pds_config){
        .host = "127.0.0.1",
        .token_ttl_s = 599,
        .fault_seed = 1,
        .faults = {.fail_status = 503, .fail_next_status = 503},
    };
}

static bool is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0;
}

static int add_routes(struct mock_pds *m)
{
    struct router *r = m->router;
    int err = router_add(r, "GET", MOCK_PDS_BASE_PATH "/Patient", NULL, on_search, m);
    err =
        err ? err : router_add(r, "GET", MOCK_PDS_BASE_PATH "/Patient/{id}", NULL, on_retrieve, m);
    err = err ? err : router_add(r, "POST", "/oauth2/token", NULL, on_token, m);
    if (err || !is_loopback(m->host))
        return err;
    err = router_add(r, "GET", "/_admin/faults", NULL, on_faults_get, m);
    err = err ? err : router_add(r, "PUT", "/_admin/faults", NULL, on_faults_put, m);
    err = err ? err : router_add(r, "GET", "/_admin/requests", NULL, on_requests_get, m);
    return err ? err : router_add(r, "DELETE", "/_admin/requests", NULL, on_requests_delete, m);
}

static int copy_config(struct mock_pds *m, const struct mock_pds_config *cfg)
{
    m->host = strdup(cfg->host != NULL ? cfg->host : "127.0.0.1");
    m->client_id = cfg->client_id != NULL ? strdup(cfg->client_id) : NULL;
    m->token_url = cfg->token_url != NULL ? strdup(cfg->token_url) : NULL;
    m->token_ttl_s = cfg->token_ttl_s;
    m->faults = cfg->faults;
    m->sandbox = cfg->sandbox;
    m->prng = cfg->fault_seed;
    m->next_seq = 1;
    m->tokens = json_object();
    m->jtis = json_object();
    m->ring = calloc(MOCK_PDS_LOG_CAP, sizeof(*m->ring));
    if (m->host == NULL || (cfg->client_id != NULL && m->client_id == NULL) ||
        (cfg->token_url != NULL && m->token_url == NULL) || m->tokens == NULL || m->jtis == NULL ||
        m->ring == NULL)
        return UV_ENOMEM;
    return 0;
}

static int load_key(struct mock_pds *m, const struct mock_pds_config *cfg)
{
    if (cfg->jwt_public_key == NULL)
        return 0;
    if (cfg->client_id == NULL || cfg->client_id[0] == '\0' || cfg->token_ttl_s == 0)
        return ERR_CONFIG;
    return jwt_pubkey_load(&m->pubkey, cfg->jwt_public_key);
}

static int start_server(struct mock_pds *m, const struct mock_pds_config *cfg)
{
    struct http_server_config sc = {
        .host = m->host,
        .port = cfg->port,
        .max_header_bytes = 32 * 1024,
        .max_body_bytes = 64 * 1024,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
        .max_connections = 10000,
        .handler = router_dispatch,
        .handler_arg = m->router,
    };
    return http_server_new(&m->server, m->loop, &sc);
}

int mock_pds_new(struct mock_pds **out, uv_loop_t *loop, struct population *pop,
                 const struct mock_pds_config *cfg)
{
    *out = NULL;
    if (mock_pds_faults_check(&cfg->faults, NULL) != 0) {
        population_free(pop);
        return ERR_CONFIG;
    }
    struct mock_pds *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        population_free(pop);
        return UV_ENOMEM;
    }
    m->loop = loop;
    m->pop = pop;
    int err = copy_config(m, cfg);
    err = err ? err : load_key(m, cfg);
    err = err ? err : router_new(&m->router);
    err = err ? err : add_routes(m);
    err = err ? err : start_server(m, cfg);
    if (err) {
        mock_pds_free(m);
        return err;
    }
    *out = m;
    return 0;
}

int mock_pds_port(const struct mock_pds *m)
{
    return m->server != NULL ? http_server_port(m->server) : 0;
}

/* Closes the server (so every exchange is detached) and then lets go of what waits. */
static void close_all(struct mock_pds *m)
{
    struct http_server *srv = m->server;
    m->server = NULL;
    http_server_free(srv);
    drop_all(m);
}

static void on_drained(int status, void *arg)
{
    struct mock_pds *m = arg;
    mock_pds_stopped_cb *cb = m->stop_cb;
    if (status == ERR_UPSTREAM_TIMEOUT)
        log_msgf(LOG_LEVEL_WARN, NULL, "drain deadline passed: closing the rest");
    m->stop_cb = NULL;
    close_all(m);
    if (cb != NULL)
        cb(m->stop_arg);
}

void mock_pds_stop(struct mock_pds *m, unsigned deadline_ms, mock_pds_stopped_cb *cb, void *arg)
{
    if (m->stopping)
        return;
    m->stopping = true;
    m->stop_cb = cb;
    m->stop_arg = arg;
    while (m->hung != NULL) {
        struct pending *p = m->hung;
        list_del(&m->hung, p);
        pending_finish(p, true);
    }
    http_server_drain(m->server, deadline_ms, on_drained, m);
}

void mock_pds_free(struct mock_pds *m)
{
    if (m == NULL)
        return;
    close_all(m);
    router_free(m->router);
    population_free(m->pop);
    jwt_pubkey_free(m->pubkey);
    json_decref(m->tokens);
    json_decref(m->jtis);
    windows_free(m);
    if (m->ring != NULL)
        log_clear(m);
    free(m->ring);
    free(m->host);
    free(m->client_id);
    free(m->token_url);
    free(m);
}
