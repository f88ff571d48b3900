/* PUT/GET/DELETE /v1/objections/{case_id} through the real pds-trace binary with a real
 * Redis: statuses, validation naming the field, roles, audit lines, two instances sharing
 * one Redis, Redis down, and what Redis holds afterwards. */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_util.h"
#include "stack.h"
#include "test_util.h"

TestSuite(objections_api, .timeout = 90);

static struct stack st;

#define PATH "/v1/objections/"

static void start(const char *const env[])
{
    cr_assert_eq(stack_start(&st, env), 0, "stack did not start; see %s", st.svc.log_path);
}

/* A request with the all-roles key (or key); returns the status, body in *out (free it). */
static long call_as(int port, const char *key, const char *method, const char *path,
                    const char *body, json_t **out)
{
    struct http_reply r;
    const char *h[] = {key != NULL ? stack_auth(key) : "X-None: 1",
                       "Content-Type: application/json", NULL};
    cr_assert_eq(http_do(port, method, path, h, body, &r), 0, "%s %s: no answer", method, path);
    if (out != NULL)
        *out = r.body_len > 0 ? json_loads(r.body, 0, NULL) : NULL;
    long status = r.status;
    http_reply_free(&r);
    return status;
}

static long call(const char *method, const char *path, const char *body, json_t **out)
{
    return call_as(st.svc.port, STACK_KEY_ALL, method, path, body, out);
}

static const char *str(const json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

static const char *error_field(const json_t *j, const char *key)
{
    return str(json_object_get(j, "error"), key);
}

Test(objections_api, put_get_delete_with_their_statuses)
{
    start(NULL);
    json_t *j = NULL;
    const char *body = "{\"nhs_number\":\"900 000 0009\",\"recorded_by\":\"J. Clerk\","
                       "\"note\":\"by letter\"}";
    cr_assert_eq(call("PUT", PATH "LAS-000123", body, &j), 201);
    cr_assert_str_eq(str(j, "case_id"), "LAS-000123");
    cr_assert_str_eq(str(j, "nhs_number"), "9000000009");
    cr_assert_str_eq(str(j, "recorded_by"), "J. Clerk");
    cr_assert_str_eq(str(j, "note"), "by letter");
    cr_assert_eq(strlen(str(j, "recorded_at")), 20);
    json_decref(j);
    cr_assert_eq(call("PUT", PATH "LAS-000123", "{\"recorded_by\":\"Other\"}", &j), 200);
    cr_assert(json_is_null(json_object_get(j, "nhs_number")));
    cr_assert(json_is_null(json_object_get(j, "note")));
    json_decref(j);
    cr_assert_eq(call("GET", PATH "LAS-000123", NULL, &j), 200);
    cr_assert_str_eq(str(j, "recorded_by"), "Other");
    json_decref(j);
    cr_assert_eq(call("DELETE", PATH "LAS-000123", NULL, &j), 204);
    cr_assert_null(j);
    cr_assert_eq(call("GET", PATH "LAS-000123", NULL, &j), 404);
    cr_assert_str_eq(error_field(j, "code"), "not_found");
    json_decref(j);
    cr_assert_eq(call("DELETE", PATH "LAS-000123", NULL, &j), 404);
    json_decref(j);
    /* Every character the case id may hold. */
    cr_assert_eq(call("PUT", PATH "a.B_9:z-0", "{\"recorded_by\":\"x\"}", NULL), 201);
    stack_stop(&st);
}

struct bad_case {
    const char *path;
    const char *body;
    const char *code;
    const char *field; /* NULL: none named */
};

static const struct bad_case bad_cases[] = {
    {PATH "has%20space", "{\"recorded_by\":\"x\"}", "invalid_field", "case_id"},
    {PATH "star*", "{\"recorded_by\":\"x\"}", "invalid_field", "case_id"},
    {PATH "x12345678901234567890123456789012345678901234567890123456789012345",
     "{\"recorded_by\":\"x\"}", "invalid_field", "case_id"},
    {PATH "C1", "not json", "invalid_json", NULL},
    {PATH "C1", "[1]", "invalid_json", NULL},
    {PATH "C1", "{\"recorded_by\":\"x\",\"recorded_by\":\"y\"}", "invalid_json", NULL},
    {PATH "C1", "{}", "missing_field", "recorded_by"},
    {PATH "C1", "{\"recorded_by\":\"\"}", "invalid_field", "recorded_by"},
    {PATH "C1", "{\"recorded_by\":7}", "invalid_field", "recorded_by"},
    {PATH "C1", "{\"recorded_by\":\"a\\u0001b\"}", "invalid_field", "recorded_by"},
    {PATH "C1", "{\"recorded_by\":\"x\",\"nhs_number\":\"9000000001\"}", "invalid_field",
     "nhs_number"},
    {PATH "C1", "{\"recorded_by\":\"x\",\"nhs_number\":\"900000000\"}", "invalid_field",
     "nhs_number"},
    {PATH "C1", "{\"recorded_by\":\"x\",\"nhs_number\":9000000009}", "invalid_field", "nhs_number"},
    {PATH "C1", "{\"recorded_by\":\"x\",\"note\":5}", "invalid_field", "note"},
    {PATH "C1", "{\"recorded_by\":\"x\",\"name\":\"Jane\"}", "invalid_field", "name"},
};

/* A body whose field holds n letters a (recorded_by alone, or next to a short one). */
static char *long_body(const char *field, size_t n)
{
    bool alone = strcmp(field, "recorded_by") == 0;
    char *s = malloc(n + 64);
    int k = snprintf(s, n + 64, "{%s\"%s\":\"", alone ? "" : "\"recorded_by\":\"x\",", field);
    memset(s + k, 'a', n);
    snprintf(s + k + n, 64, "\"}");
    return s;
}

static void assert_bad(const char *method, const char *path, const char *body, const char *code,
                       const char *field)
{
    json_t *j = NULL;
    long status = call(method, path, body, &j);
    cr_assert_eq(status, 400, "%s %s %s: %ld", method, path, body ? body : "", status);
    cr_assert_str_eq(error_field(j, "code"), code, "%s", body ? body : path);
    if (field != NULL)
        cr_assert_str_eq(error_field(j, "field"), field, "%s", body ? body : path);
    cr_assert_not_null(error_field(j, "message"));
    json_decref(j);
}

Test(objections_api, bad_input_is_400_naming_the_field)
{
    start(NULL);
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *b = &bad_cases[i];
        assert_bad("PUT", b->path, b->body, b->code, b->field);
    }
    char *note = long_body("note", 1001), *by = long_body("recorded_by", 201);
    assert_bad("PUT", PATH "C1", note, "invalid_field", "note");
    assert_bad("PUT", PATH "C1", by, "invalid_field", "recorded_by");
    free(note);
    free(by);
    assert_bad("GET", PATH "bad%2Fslash", NULL, "invalid_field", "case_id");
    assert_bad("DELETE", PATH "bad*", NULL, "invalid_field", "case_id");
    /* Nothing was stored by any of them. */
    cr_assert_eq(call("GET", PATH "C1", NULL, NULL), 404);
    /* The limits themselves are accepted. */
    note = long_body("note", 1000);
    by = long_body("recorded_by", 200);
    cr_assert_eq(call("PUT", PATH "C1", note, NULL), 201);
    cr_assert_eq(call("PUT", PATH "C2", by, NULL), 201);
    free(note);
    free(by);
    stack_stop(&st);
}

Test(objections_api, needs_a_key_with_the_objections_role)
{
    start(NULL);
    const char *methods[] = {"PUT", "GET", "DELETE"};
    for (size_t i = 0; i < 3; i++) {
        json_t *j = NULL;
        const char *body = strcmp(methods[i], "PUT") == 0 ? "{\"recorded_by\":\"x\"}" : NULL;
        cr_assert_eq(call_as(st.svc.port, NULL, methods[i], PATH "C1", body, &j), 401);
        cr_assert_str_eq(error_field(j, "code"), "unauthorised");
        json_decref(j);
        cr_assert_eq(call_as(st.svc.port, STACK_KEY_TRACE, methods[i], PATH "C1", body, &j), 403);
        cr_assert_str_eq(error_field(j, "code"), "forbidden");
        json_decref(j);
        cr_assert_eq(call_as(st.svc.port, STACK_KEY_ADMIN, methods[i], PATH "C1", body, NULL), 403);
    }
    cr_assert_eq(call("GET", PATH "C1", NULL, NULL), 404, "a refused PUT stored something");
    stack_stop(&st);
}

struct log_wait {
    const struct proc *p;
    const char *needle;
    int count;
};

static bool log_has(void *arg)
{
    const struct log_wait *w = arg;
    return proc_log_count(w->p, w->needle) >= w->count;
}

static void wait_log(const struct proc *p, const char *needle, int count)
{
    struct log_wait w = {p, needle, count};
    cr_assert(wait_until(log_has, &w, 5000), "no log line with %s in %s", needle, p->log_path);
}

/* The audit line of event for case_id, parsed (json_decref it). */
static json_t *audit_line(const char *event, const char *case_id)
{
    char *log = proc_log(&st.svc);
    cr_assert_not_null(log);
    json_t *found = NULL;
    for (char *line = log; line != NULL && *line != '\0' && found == NULL;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        json_t *j = json_loads(line, 0, NULL);
        if (j != NULL && strcmp(str(j, "msg") ? str(j, "msg") : "", "audit") == 0 &&
            strcmp(str(j, "event") ? str(j, "event") : "", event) == 0 &&
            strcmp(str(j, "case_id") ? str(j, "case_id") : "", case_id) == 0)
            found = json_incref(j);
        json_decref(j);
        line = nl != NULL ? nl + 1 : NULL;
    }
    free(log);
    cr_assert_not_null(found, "no audit line %s for %s", event, case_id);
    return found;
}

Test(objections_api, changes_are_audited_without_the_number_or_text)
{
    start(NULL);
    const char *body = "{\"nhs_number\":\"9000000017\",\"recorded_by\":\"Bertha Recorder\","
                       "\"note\":\"private remark\"}";
    cr_assert_eq(call("PUT", PATH "AUD-1", body, NULL), 201);
    cr_assert_eq(call("PUT", PATH "AUD-1", body, NULL), 200);
    cr_assert_eq(call("GET", PATH "AUD-1", NULL, NULL), 200);
    cr_assert_eq(call("DELETE", PATH "AUD-1", NULL, NULL), 204);
    wait_log(&st.svc, "objection_withdrawn", 1);
    json_t *j = audit_line("objection_recorded", "AUD-1");
    cr_assert_str_eq(str(j, "caller"), "all");
    cr_assert_str_eq(str(j, "change"), "created");
    json_decref(j);
    j = audit_line("objection_withdrawn", "AUD-1");
    cr_assert_str_eq(str(j, "caller"), "all");
    cr_assert_not_null(str(j, "request_id"));
    json_decref(j);
    cr_assert_eq(proc_log_count(&st.svc, "\"event\":\"objection_recorded\""), 2);
    cr_assert_eq(proc_log_count(&st.svc, "9000000017"), 0, "the number is in the log");
    cr_assert_eq(proc_log_count(&st.svc, "900 000 0017"), 0);
    cr_assert_eq(proc_log_count(&st.svc, "Bertha"), 0, "recorded_by is in the log");
    cr_assert_eq(proc_log_count(&st.svc, "private remark"), 0, "the note is in the log");
    /* A refused change writes no audit line. */
    cr_assert_eq(call("DELETE", PATH "AUD-1", NULL, NULL), 404);
    cr_assert_eq(proc_log_count(&st.svc, "\"event\":\"objection_withdrawn\""), 1);
    stack_stop(&st);
}

/* The value of an unlabelled series in a service's /metrics, or -1. */
static double metric(int port, const char *name)
{
    struct http_reply r;
    double v = -1;
    if (http_do(port, "GET", "/metrics", NULL, NULL, &r) != 0 || r.status != 200) {
        http_reply_free(&r);
        return -1;
    }
    char needle[128];
    snprintf(needle, sizeof(needle), "\n%s ", name);
    const char *at = strstr(r.body, needle);
    if (at != NULL)
        v = strtod(at + strlen(needle), NULL);
    http_reply_free(&r);
    return v;
}

struct metric_wait {
    int port;
    const char *name;
    double want;
};

static bool metric_is(void *arg)
{
    const struct metric_wait *w = arg;
    return metric(w->port, w->name) == w->want;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

Test(objections_api, an_objection_through_one_instance_reaches_the_other)
{
    const char *env[] = {"PDS_TRACE_OBJECTIONS_MAX_STALENESS_MS=1000", NULL};
    start(env);
    struct proc b;
    cr_assert_eq(stack_start_peer(&st, &b, env), 0, "B did not start; see %s", b.log_path);
    struct metric_wait w = {b.port, "pdstrace_objections_current", 1};
    cr_assert(wait_until(metric_is, &w, 5000), "B never current");
    cr_assert_eq(metric(b.port, "pdstrace_objections"), 0);
    cr_assert_eq(
        call("PUT", PATH "SHARED-1", "{\"nhs_number\":\"9000000025\",\"recorded_by\":\"x\"}", NULL),
        201);
    double t0 = now_ms();
    w = (struct metric_wait){b.port, "pdstrace_objections", 1};
    cr_assert(wait_until(metric_is, &w, 3000), "B never saw the objection");
    double took = now_ms() - t0;
    cr_assert_leq(took, 1000, "B saw it after %.0f ms (bound 1000)", took);
    json_t *j = NULL;
    cr_assert_eq(call_as(b.port, STACK_KEY_ALL, "GET", PATH "SHARED-1", NULL, &j), 200);
    cr_assert_str_eq(str(j, "nhs_number"), "9000000025");
    json_decref(j);
    cr_assert_eq(call_as(b.port, STACK_KEY_ALL, "DELETE", PATH "SHARED-1", NULL, NULL), 204);
    w = (struct metric_wait){st.svc.port, "pdstrace_objections", 0};
    cr_assert(wait_until(metric_is, &w, 1000), "A still holds the withdrawn objection");
    cr_assert_eq(proc_stop(&b, SIGTERM, 15000), 0);
    stack_stop(&st);
}

Test(objections_api, redis_down_is_503_store_unavailable_and_not_current)
{
    const char *env[] = {"PDS_TRACE_OBJECTIONS_MAX_STALENESS_MS=500",
                         "PDS_TRACE_REDIS_COMMAND_TIMEOUT_MS=300", NULL};
    start(env);
    struct metric_wait w = {st.svc.port, "pdstrace_objections_current", 1};
    cr_assert(wait_until(metric_is, &w, 5000));
    cr_assert_eq(redis_server_stop(&st.redis), 0);
    json_t *j = NULL;
    const char *methods[] = {"PUT", "GET", "DELETE"};
    struct metric_wait gone = {st.svc.port, "pdstrace_objections_current", 0};
    cr_assert(wait_until(metric_is, &gone, 2000), "still current with Redis stopped");
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(call(methods[i], PATH "DOWN-1", "{\"recorded_by\":\"x\"}", &j), 503);
        cr_assert_str_eq(error_field(j, "code"), "store_unavailable");
        json_decref(j);
    }
    cr_assert_eq(redis_server_restart(&st.redis), 0);
    cr_assert(wait_until(metric_is, &w, 5000), "not current again after Redis came back");
    cr_assert_eq(call("PUT", PATH "DOWN-1", "{\"recorded_by\":\"x\"}", NULL), 201);
    stack_stop(&st);
}

static bool holds(const char *p, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(p + i, needle, m) == 0)
            return true;
    return false;
}

static void assert_reply_clean(const redisReply *r)
{
    const char *clear[] = {"CLEAR-CASE-9", "9000000009", "Recorder Name", "a private note"};
    for (size_t i = 0; r->type == REDIS_REPLY_STRING && i < 4; i++)
        cr_assert(!holds(r->str, r->len, clear[i]), "Redis holds %s in clear", clear[i]);
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        assert_reply_clean(r->element[i]);
}

Test(objections_api, a_redis_dump_holds_nothing_in_clear)
{
    start(NULL);
    const char *body = "{\"nhs_number\":\"9000000009\",\"recorded_by\":\"Recorder Name\","
                       "\"note\":\"a private note\"}";
    cr_assert_eq(call("PUT", PATH "CLEAR-CASE-9", body, NULL), 201);
    cr_assert_eq(call("PUT", PATH "CLEAR-CASE-10", body, NULL), 201);
    cr_assert_eq(call("DELETE", PATH "CLEAR-CASE-10", NULL, NULL), 204);
    redisContext *c = redisConnect("127.0.0.1", st.redis.port);
    cr_assert(c != NULL && c->err == 0);
    redisReply *keys = redisCommand(c, "KEYS *");
    cr_assert_geq(keys->elements, 4);
    assert_reply_clean(keys);
    for (size_t i = 0; i < keys->elements; i++) {
        const char *k = keys->element[i]->str;
        redisReply *t = redisCommand(c, "TYPE %s", k);
        const char *fmt = strcmp(t->str, "hash") == 0     ? "HGETALL %s"
                          : strcmp(t->str, "stream") == 0 ? "XRANGE %s - +"
                          : strcmp(t->str, "string") == 0 ? "GET %s"
                                                          : "TYPE %s";
        redisReply *v = redisCommand(c, fmt, k);
        assert_reply_clean(v);
        freeReplyObject(v);
        freeReplyObject(t);
    }
    freeReplyObject(keys);
    redisFree(c);
    stack_stop(&st);
}
