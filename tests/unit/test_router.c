#include "pdstrace/router.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "http_util.h"
#include "pdstrace/err.h"
#include "pdstrace/metrics.h"
#include "test_util.h"

/* A real server on a private loop in the main thread, with the router as its handler; a
 * client thread sends a table of requests with libcurl and keeps the replies, and the
 * main thread asserts on them afterwards. */

struct req {
    const char *method;
    const char *path;
    const char *auth; /* an Authorization header line, or NULL */
    size_t body_len;  /* a body of this many 'a's, or none */
};

#define MAX_REQS 16

struct ctx {
    uv_loop_t loop;
    struct http_server *srv;
    struct router *router;
    uv_async_t async;
    bool done;
    int port;
    const struct req *reqs;
    size_t nreqs;
    struct http_reply replies[MAX_REQS];
    /* what the guard saw, per request, in order */
    char guard_roles[MAX_REQS][32];
    char guard_routes[MAX_REQS][64];
    size_t guard_body[MAX_REQS]; /* body bytes the server had read when the guard ran */
    unsigned nguard;
    struct metrics *metrics; /* the server counts each answer by route and status */
};

static struct ctx T;

static const char ROLE_ADMIN[] = "admin";
static const char ROLE_OBJECTIONS[] = "objections";

static void respond_json(struct http_exchange *x, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    http_exchange_respond(x, 200, "application/json", s, strlen(s));
    free(s);
    json_decref(j);
}

/* Answers with the route label, the parameters and the user the guard set. */
static void show(struct http_exchange *x, const struct route_params *p, void *arg)
{
    json_t *params = json_object();
    for (unsigned i = 0; i < p->count; i++)
        json_object_set_new(params, p->names[i], json_string(p->values[i]));
    const char *user = http_exchange_user(x);
    respond_json(x, json_pack("{s:s,s:s,s:o,s:s?}", "handler", (const char *)arg, "route",
                              http_exchange_route(x), "params", params, "user", user));
}

static int guard(struct http_exchange *x, const char *role, void *arg)
{
    struct ctx *t = arg;
    unsigned i = t->nguard++ % MAX_REQS;
    snprintf(t->guard_roles[i], sizeof(t->guard_roles[i]), "%s", role ? role : "(none)");
    snprintf(t->guard_routes[i], sizeof(t->guard_routes[i]), "%s", http_exchange_route(x));
    http_exchange_body(x, &t->guard_body[i]);
    if (role == NULL)
        return 0;
    const char *auth = http_exchange_header(x, "Authorization");
    if (auth == NULL || strcmp(auth, "Bearer good") != 0) {
        http_exchange_respond_error(x, 401, "unauthorised", NULL, "missing or bad key");
        return 1;
    }
    http_exchange_set_user(x, "case-system");
    return 0;
}

/* How many answers the server counted under route and status. */
static double counted(const char *route, int status)
{
    char labels[128];
    snprintf(labels, sizeof(labels), "route=\"%s\",status=\"%d\"", route, status);
    return metrics_value(T.metrics, "pdstrace_http_requests_total", labels);
}

static void on_async(uv_async_t *a)
{
    ((struct ctx *)a->data)->done = true;
}

static void *client_main(void *arg)
{
    struct ctx *t = arg;
    for (size_t i = 0; i < t->nreqs; i++) {
        const char *hdrs[] = {t->reqs[i].auth, NULL};
        char *body = NULL;
        if (t->reqs[i].body_len > 0) {
            body = malloc(t->reqs[i].body_len + 1);
            memset(body, 'a', t->reqs[i].body_len);
            body[t->reqs[i].body_len] = '\0';
        }
        http_do(t->port, t->reqs[i].method, t->reqs[i].path, hdrs, body, &t->replies[i]);
        free(body);
    }
    uv_async_send(&t->async);
    return NULL;
}

/* Handler names, passed as the handler arg (writable: the arg is a void *). */
static char h_list[] = "list", h_get[] = "get", h_delete[] = "delete", h_object[] = "object",
            h_admin[] = "admin", h_root[] = "root";

/* A streaming route's handler: counts the body as it comes. */
struct counter {
    size_t got;
};

static void on_piece(struct http_exchange *x, const char *data, size_t len, void *arg)
{
    (void)x;
    (void)data;
    ((struct counter *)arg)->got += len;
}

static void on_counted(struct http_exchange *x, int status, void *arg)
{
    struct counter *n = arg;
    if (status == 0)
        respond_json(x, json_pack("{s:s,s:s,s:I}", "handler", "upload", "route",
                                  http_exchange_route(x), "got", (json_int_t)n->got));
    else
        http_exchange_respond_err(x, status, NULL, NULL);
    free(n);
}

static void upload(struct http_exchange *x, const struct route_params *p, void *arg)
{
    (void)p;
    (void)arg;
    struct counter *n = calloc(1, sizeof(*n));
    int err = n != NULL ? http_exchange_read_body(x, 1 << 20, on_piece, on_counted, n) : UV_ENOMEM;
    if (err) {
        free(n);
        http_exchange_respond_err(x, err, NULL, NULL);
    }
}

static void add_routes(struct router *r)
{
    cr_assert_eq(router_add(r, "GET", "/v1/items", NULL, show, h_list), 0);
    cr_assert_eq(router_add(r, "GET", "/v1/items/{id}", NULL, show, h_get), 0);
    cr_assert_eq(router_add(r, "DELETE", "/v1/items/{id}", ROLE_ADMIN, show, h_delete), 0);
    cr_assert_eq(
        router_add(r, "POST", "/v1/objections/{case_id}/{nhs}", ROLE_OBJECTIONS, show, h_object),
        0);
    cr_assert_eq(router_add(r, "GET", "/admin", ROLE_ADMIN, show, h_admin), 0);
    cr_assert_eq(router_add(r, "GET", "/", NULL, show, h_root), 0);
    cr_assert_eq(router_add_stream(r, "POST", "/v1/uploads/{id}", ROLE_ADMIN, upload, NULL), 0);
    cr_assert_eq(router_add_stream(r, "PUT", "/v1/files/{id}", NULL, upload, NULL), 0);
    cr_assert_eq(router_add(r, "POST", "/v1/notes", NULL, show, h_list), 0);
}

static void run(const struct req *reqs, size_t n)
{
    memset(&T, 0, sizeof(T));
    cr_assert_eq(uv_loop_init(&T.loop), 0);
    cr_assert_eq(router_new(&T.router), 0);
    add_routes(T.router);
    router_set_guard(T.router, guard, &T);
    cr_assert_eq(metrics_new(&T.metrics), 0);
    struct http_server_config cfg = {
        .host = "127.0.0.1",
        .max_header_bytes = 8192,
        .max_body_bytes = 8192,
        .header_timeout_ms = 5000,
        .body_timeout_ms = 5000,
        .idle_timeout_ms = 5000,
        .max_connections = 16,
        .handler = router_dispatch,
        .handler_arg = T.router,
        .head = router_head,
        .metrics = T.metrics,
    };
    cr_assert_eq(http_server_new(&T.srv, &T.loop, &cfg), 0);
    T.port = http_server_port(T.srv);
    T.reqs = reqs;
    T.nreqs = n;
    uv_async_init(&T.loop, &T.async, on_async);
    T.async.data = &T;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, client_main, &T), 0);
    bool ok = run_until(&T.loop, &T.done, 20000);
    pthread_join(th, NULL);
    cr_assert(ok, "client did not finish");
}

static void finish(void)
{
    for (size_t i = 0; i < T.nreqs; i++)
        http_reply_free(&T.replies[i]);
    http_server_free(T.srv);
    router_free(T.router);
    metrics_free(T.metrics);
    uv_close((uv_handle_t *)&T.async, NULL);
    cr_assert_eq(close_loop(&T.loop), 0);
}

static json_t *reply_json(size_t i)
{
    json_t *j = json_loadb(T.replies[i].body, T.replies[i].body_len, 0, NULL);
    cr_assert_not_null(j, "reply %zu is not JSON: %s", i, T.replies[i].body);
    return j;
}

static const char *jget(json_t *j, const char *path1, const char *path2)
{
    json_t *v = json_object_get(j, path1);
    if (path2 != NULL)
        v = json_object_get(v, path2);
    return json_string_value(v) ? json_string_value(v) : "";
}

static void assert_error(size_t i, long status, const char *code, const char *field)
{
    cr_assert_eq(T.replies[i].status, status, "reply %zu: status %ld", i, T.replies[i].status);
    json_t *j = reply_json(i);
    json_t *e = json_object_get(j, "error");
    cr_assert_str_eq(jget(e, "code", NULL), code);
    if (field != NULL)
        cr_assert_str_eq(jget(e, "field", NULL), field);
    else
        cr_assert_null(json_object_get(e, "field"));
    json_decref(j);
}

TestSuite(router, .timeout = 30);

static const struct req matching[] = {
    {"GET", "/v1/items", NULL, 0},
    {"GET", "/v1/items/abc%20def%2Fx", NULL, 0},
    {"POST", "/v1/objections/LAS-1/9000000009", "Authorization: Bearer good", 0},
    {"GET", "/", NULL, 0},
    {"HEAD", "/v1/items", NULL, 0},
};

Test(router, literal_and_param_routes)
{
    run(matching, 5);
    json_t *j = reply_json(0);
    cr_assert_eq(T.replies[0].status, 200);
    cr_assert_str_eq(jget(j, "handler", NULL), "list");
    cr_assert_str_eq(jget(j, "route", NULL), "/v1/items");
    json_decref(j);
    j = reply_json(1);
    cr_assert_str_eq(jget(j, "handler", NULL), "get");
    cr_assert_str_eq(jget(j, "params", "id"), "abc def/x", "param not percent-decoded");
    cr_assert_str_eq(jget(j, "route", NULL), "/v1/items/{id}");
    json_decref(j);
    j = reply_json(2);
    cr_assert_eq(T.replies[2].status, 200);
    cr_assert_str_eq(jget(j, "params", "case_id"), "LAS-1");
    cr_assert_str_eq(jget(j, "params", "nhs"), "9000000009");
    cr_assert_str_eq(jget(j, "user", NULL), "case-system", "guard's user not passed on");
    json_decref(j);
    j = reply_json(3);
    cr_assert_str_eq(jget(j, "handler", NULL), "root");
    json_decref(j);
    cr_assert_eq(T.replies[4].status, 200, "HEAD not served by the GET route");
    cr_assert_eq(T.replies[4].body_len, 0);
    /* The guard ran for every match, with the route's role and the label already set. */
    cr_assert_eq(T.nguard, 5);
    cr_assert_str_eq(T.guard_roles[2], "objections");
    cr_assert_str_eq(T.guard_routes[2], "/v1/objections/{case_id}/{nhs}");
    cr_assert_str_eq(T.guard_roles[0], "(none)");
    cr_assert_str_eq(T.guard_routes[1], "/v1/items/{id}");
    cr_assert_eq(counted("/v1/items/{id}", T.replies[1].status), 1);
    finish();
}

static const struct req unmatched[] = {
    {"GET", "/nope", NULL, 0},           {"GET", "/v1/items/", NULL, 0},
    {"GET", "/v1/items/a/b", NULL, 0},   {"PUT", "/v1/items/5", NULL, 0},
    {"GET", "/v1/items/a%00b", NULL, 0}, {"GET", "/v1/items/a%zz", NULL, 0},
    {"PATCH", "/v1/items", NULL, 0},
};

Test(router, not_found_method_not_allowed_and_bad_encoding)
{
    run(unmatched, 7);
    assert_error(0, 404, "not_found", NULL);
    assert_error(1, 404, "not_found", NULL);
    assert_error(2, 404, "not_found", NULL);
    assert_error(3, 405, "invalid_field", "method");
    char allow[128];
    cr_assert_not_null(http_reply_header(&T.replies[3], "Allow", allow, sizeof(allow)));
    cr_assert_str_eq(allow, "GET, DELETE");
    assert_error(4, 400, "invalid_field", "path");
    assert_error(5, 400, "invalid_field", "path");
    assert_error(6, 405, "invalid_field", "method");
    cr_assert_not_null(http_reply_header(&T.replies[6], "Allow", allow, sizeof(allow)));
    cr_assert_str_eq(allow, "GET");
    cr_assert_eq(T.nguard, 0, "the guard ran for an unmatched request");
    cr_assert_eq(counted("unmatched", 404), 3);
    cr_assert_eq(counted("unmatched", 405), 2);
    cr_assert_eq(counted("unmatched", 400), 2);
    finish();
}

static const struct req guarded[] = {
    {"GET", "/admin", NULL, 0},
    {"GET", "/admin", "Authorization: Bearer bad", 0},
    {"GET", "/admin", "Authorization: Bearer good", 0},
    {"DELETE", "/v1/items/7", NULL, 0},
};

Test(router, guard_blocks_or_passes_with_the_route_role)
{
    run(guarded, 4);
    assert_error(0, 401, "unauthorised", NULL);
    assert_error(1, 401, "unauthorised", NULL);
    cr_assert_eq(T.replies[2].status, 200);
    json_t *j = reply_json(2);
    cr_assert_str_eq(jget(j, "handler", NULL), "admin");
    json_decref(j);
    assert_error(3, 401, "unauthorised", NULL);
    cr_assert_eq(T.nguard, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_str_eq(T.guard_roles[i], "admin");
    cr_assert_str_eq(T.guard_routes[3], "/v1/items/{id}");
    /* A request the guard refused still counts under its route. */
    cr_assert_eq(counted("/admin", 401), 2);
    cr_assert_eq(counted("/v1/items/{id}", 401), 1);
    finish();
}

static void dummy(struct http_exchange *x, const struct route_params *p, void *arg)
{
    (void)x;
    (void)p;
    (void)arg;
}

static const struct req streaming[] = {
    {"POST", "/v1/uploads/1", NULL, 100000},
    {"POST", "/v1/uploads/2", "Authorization: Bearer good", 100000},
    {"POST", "/v1/notes", NULL, 100000},
    {"PUT", "/v1/files/7", NULL, 5},
    {"POST", "/v1/uploads/3", "Authorization: Bearer good", 2 << 20},
    {"GET", "/v1/files/7", NULL, 0},
};

/* Streaming routes go to their guard and handler at their headers: max_body_bytes (8192)
 * does not apply to them, while it still does to the others. */
Test(router, stream_routes_are_dispatched_before_their_body)
{
    run(streaming, 6);
    assert_error(0, 401, "unauthorised", NULL);
    cr_assert_eq(T.replies[1].status, 200);
    json_t *j = reply_json(1);
    cr_assert_str_eq(jget(j, "route", NULL), "/v1/uploads/{id}");
    cr_assert_eq(json_integer_value(json_object_get(j, "got")), 100000);
    json_decref(j);
    assert_error(2, 413, "payload_too_large", NULL);
    j = reply_json(3);
    cr_assert_eq(json_integer_value(json_object_get(j, "got")), 5);
    json_decref(j);
    /* The handler's own limit (1 MiB). */
    assert_error(4, 413, "payload_too_large", NULL);
    assert_error(5, 405, "invalid_field", "method");
    char allow[64];
    cr_assert_not_null(http_reply_header(&T.replies[5], "Allow", allow, sizeof(allow)));
    cr_assert_str_eq(allow, "PUT");
    /* The guard ran for the stream routes (not for the 413 and the 405) before a byte of
     * their body was kept. */
    cr_assert_eq(T.nguard, 4);
    cr_assert_str_eq(T.guard_roles[0], "admin");
    cr_assert_str_eq(T.guard_routes[2], "/v1/files/{id}");
    cr_assert_eq(T.guard_body[0] + T.guard_body[1] + T.guard_body[2] + T.guard_body[3], 0);
    cr_assert_eq(counted("/v1/uploads/{id}", 401), 1);
    cr_assert_eq(counted("/v1/uploads/{id}", 200), 1);
    finish();
}

Test(router, rejects_bad_patterns)
{
    struct router *r;
    cr_assert_eq(router_new(&r), 0);
    cr_assert_eq(router_add(r, "GET", "no-slash", NULL, dummy, NULL), ERR_INVALID_INPUT);
    cr_assert_eq(router_add(r, "GET", "/a/{}", NULL, dummy, NULL), ERR_INVALID_INPUT);
    cr_assert_eq(router_add(r, "GET", "/a/{x", NULL, dummy, NULL), ERR_INVALID_INPUT);
    cr_assert_eq(router_add(r, "GET", "/a/x}", NULL, dummy, NULL), ERR_INVALID_INPUT);
    cr_assert_eq(router_add(r, "GET", "/{a}/{b}/{c}/{d}/{e}", NULL, dummy, NULL),
                 ERR_INVALID_INPUT);
    cr_assert_eq(router_add(r, "", "/a", NULL, dummy, NULL), ERR_INVALID_INPUT);
    cr_assert_eq(router_add(r, "GET", "/a", NULL, NULL, NULL), ERR_INVALID_INPUT);
    cr_assert_eq(router_add(r, "GET", "/{a}/{b}/{c}/{d}", NULL, dummy, NULL), 0);
    cr_assert_eq(router_add_stream(r, "POST", "/a/{", NULL, dummy, NULL), ERR_INVALID_INPUT);
    cr_assert_eq(router_add_stream(r, "POST", "/a", NULL, NULL, NULL), ERR_INVALID_INPUT);
    router_free(r);
    router_free(NULL);
}

Test(router, route_param_lookup)
{
    char v0[] = "one", v1[] = "two";
    struct route_params p = {.count = 2, .names = {"a", "b"}, .values = {v0, v1}};
    cr_assert_str_eq(route_param(&p, "b"), "two");
    cr_assert_str_eq(route_param(&p, "a"), "one");
    cr_assert_null(route_param(&p, "c"));
}
