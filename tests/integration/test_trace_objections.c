/* POST /v1/trace honours objections, end to end: pds-trace, a real Redis, the mock PDS and
 * the mock case system as processes, over HTTP on 127.0.0.1 (DESIGN.md §3, issue 8 point 2).
 * An objection by case stops a trace before PDS hears of it; one carrying a number withholds
 * that number whether it came from PDS or the cache, with or without a case_id; a second
 * instance on the same Redis honours it within objections.max_staleness_ms; and an instance
 * that cannot confirm its copy is current gives no number at all (503). The people are the
 * fixed ones of mocks/pds/README.md. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_util.h"
#include "stack.h"
#include "test_util.h"

static struct stack st;
static struct stack_case_system cs;
static struct proc peer;
static bool frozen;

#define CASE_TOKEN "case-token-0123456789"
#define JANE_NHS   "9000000009"
#define PRIYA_NHS  "9000000092"

/* Jane Smith (9000000009, found by the first search) and Priya Patel (9000000092, found by
 * the second), each with a case_id or without (case_id NULL). */
static const char *jane(char *out, size_t size, const char *case_id)
{
    snprintf(out, size,
             "{%s%s%s\"family\":\"Smith\",\"given\":[\"Jane\"],\"birth_date\":\"2010-10-22\","
             "\"gender\":\"female\",\"postcode\":\"LS1 6AE\"}",
             case_id != NULL ? "\"case_id\":\"" : "", case_id != NULL ? case_id : "",
             case_id != NULL ? "\"," : "");
    return out;
}

static const char *priya(char *out, size_t size, const char *case_id)
{
    snprintf(out, size,
             "{%s%s%s\"family\":\"Patel\",\"given\":\"Priya\",\"birth_date\":\"1979-09-03\","
             "\"postcode\":\"BD9 4RU\"}",
             case_id != NULL ? "\"case_id\":\"" : "", case_id != NULL ? case_id : "",
             case_id != NULL ? "\"," : "");
    return out;
}

/* Every test ends here, also after a failed assertion: Redis is thawed first, so that
 * nothing is left stopped behind a failure. */
static void teardown(void)
{
    if (frozen)
        redis_server_thaw(&st.redis);
    frozen = false;
    if (peer.pid > 0)
        proc_stop(&peer, SIGTERM, 15000);
    stack_stop(&st);
    stack_case_system_stop(&cs);
}

TestSuite(trace_objections, .timeout = 120, .fini = teardown);

/* The stack with the mock case system as write-back target, plus extra settings. */
static void start(const char *const extra[])
{
    static const char *env[16] = {"PDS_TRACE_CASE_RETRY_INITIAL_MS=100",
                                  "PDS_TRACE_CASE_RETRY_MAX_MS=200"};
    size_t n = 2;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 12; i++)
        env[n++] = extra[i];
    env[n] = NULL;
    cr_assert_eq(stack_start_with_case(&st, &cs, CASE_TOKEN, false, env), 0,
                 "stack did not start: see %s and %s", st.svc.log_path, st.pds.log_path);
}

/* The end of a test that passed: the service exits 0 on SIGTERM (under ASan, also without a
 * leak: LeakSanitizer would change the exit status). */
static void stop_cleanly(void)
{
    cr_assert_eq(stack_stop_service(&st), 0, "the service did not exit cleanly; see %s",
                 st.svc.log_path);
}

static const char *str(const json_t *j, const char *key)
{
    const char *v = json_string_value(json_object_get(j, key));
    return v != NULL ? v : "(null)";
}

static json_t *trace_on(int port, const char *body, long want)
{
    long status;
    json_t *j = stack_trace(port, body, &status);
    char *text = j != NULL ? json_dumps(j, 0) : NULL;
    cr_assert_eq(status, want, "%ld %s for %s", status, text != NULL ? text : "", body);
    free(text);
    cr_assert_not_null(j);
    return j;
}

static json_t *trace_ok(const char *body)
{
    return trace_on(st.svc.port, body, 200);
}

/* An objection answer: no number, no score, withheld, from where it came. */
static void assert_objection(const json_t *j, const char *source, long steps)
{
    cr_assert_str_eq(str(j, "outcome"), "objection");
    cr_assert(json_is_null(json_object_get(j, "nhs_number")), "a number under objection");
    cr_assert(json_is_null(json_object_get(j, "score")));
    cr_assert_str_eq(str(j, "write_back"), "withheld");
    cr_assert_str_eq(str(j, "source"), source);
    cr_assert_eq(json_integer_value(json_object_get(j, "steps")), steps);
}

static void object(int port, const char *case_id, const char *nhs, long want)
{
    char path[128], body[160];
    snprintf(path, sizeof(path), "/v1/objections/%s", case_id);
    snprintf(body, sizeof(body), "{%s%s%s\"recorded_by\":\"Clerk A\"}",
             nhs != NULL ? "\"nhs_number\":\"" : "", nhs != NULL ? nhs : "",
             nhs != NULL ? "\"," : "");
    cr_assert_eq(stack_request(port, STACK_KEY_ALL, "PUT", path, body, NULL), want);
}

/* FHIR requests the mock PDS has received (the token endpoint's are left out). */
static long pds_fhir_count(void)
{
    json_t *all = stack_pds_admin(&st, "GET", "/_admin/requests", NULL), *r;
    long n = 0;
    size_t i;
    cr_assert_not_null(all);
    json_array_foreach(json_object_get(all, "requests"), i, r)
    {
        n += strstr(str(r, "path"), "/Patient") != NULL;
    }
    json_decref(all);
    return n;
}

static bool trace_keys_at_least(void *arg)
{
    return redis_server_query(&st.redis, "KEYS pdstrace:trace:*") >= *(const long long *)arg;
}

/* Waits for n cached traces, then insists on exactly n. The cache store goes to Redis just
 * before the answer, on the one connection that carries every store, in order: once the
 * n-th is there, any earlier store is too. */
static void assert_cached_traces(long long n)
{
    cr_assert(wait_until(trace_keys_at_least, &n, 5000), "fewer than %lld cached traces", n);
    cr_assert_eq(redis_server_query(&st.redis, "KEYS pdstrace:trace:*"), n);
}

static bool queue_empty(void *arg)
{
    (void)arg;
    return redis_server_query(&st.redis, "ZCARD pdstrace:writeback:pending") == 0;
}

/* No write-back was queued nor reached the case system. A queued one stays in the pending
 * set until the case system has answered it, so an empty set, then a mock that saw no
 * write, rules out both "queued, not yet sent" and "sent". */
static void assert_nothing_written(void)
{
    cr_assert(wait_until(queue_empty, NULL, 5000), "a write-back is pending");
    cr_assert_eq(redis_server_query(&st.redis, "HLEN pdstrace:writeback:dead"), 0);
    cr_assert_eq(stack_case_stat(cs.proc.port, "requests"), 0, "the case system got a write");
}

Test(trace_objections, an_objection_by_case_stops_the_trace_before_pds)
{
    char body[400];
    start(NULL);
    object(st.svc.port, "OBJ-CASE-1", NULL, 201);
    json_t *j = trace_ok(jane(body, sizeof(body), "OBJ-CASE-1"));
    assert_objection(j, "pds", 0);
    cr_assert(json_is_false(json_object_get(j, "restricted")));
    char trace_id[64];
    snprintf(trace_id, sizeof(trace_id), "%s", str(j, "trace_id"));
    json_decref(j);
    /* The mock logs a request as it arrives; the answer has come, so any would be here. */
    cr_assert_eq(pds_fhir_count(), 0, "PDS was asked about a case under objection");
    /* Another person's trace is cached after it: the objection's would be there too. */
    json_decref(trace_ok(priya(body, sizeof(body), NULL)));
    assert_cached_traces(1);
    json_t *a = stack_wait_audit_line(&st.svc, "trace", "OBJ-CASE-1", 5000);
    cr_assert_not_null(a, "no audit line; see %s", st.svc.log_path);
    cr_assert_str_eq(str(a, "outcome"), "objection");
    cr_assert_str_eq(str(a, "write_back"), "withheld");
    cr_assert_str_eq(str(a, "trace_id"), trace_id);
    cr_assert_eq(json_integer_value(json_object_get(a, "steps")), 0);
    json_decref(a);
    assert_nothing_written();
    stop_cleanly();
}

Test(trace_objections, an_objection_by_number_withholds_it_from_pds_and_from_the_cache)
{
    char body[400];
    start(NULL);
    /* Another case names Jane's number: whoever traces her must not get it. */
    object(st.svc.port, "OTHER-9", JANE_NHS, 201);
    json_t *j = trace_ok(jane(body, sizeof(body), "LAS-N-1"));
    assert_objection(j, "pds", 1);
    char *text = json_dumps(j, 0);
    bool holds = strstr(text, JANE_NHS) != NULL;
    free(text);
    cr_assert(!holds, "the answer holds the number");
    json_decref(j);
    /* The true result is cached (objections change; the cache keeps what PDS said). */
    assert_cached_traces(1);
    j = trace_ok(jane(body, sizeof(body), NULL));
    assert_objection(j, "cache", 0);
    json_decref(j);
    j = trace_ok(jane(body, sizeof(body), "LAS-N-2"));
    assert_objection(j, "cache", 0);
    json_decref(j);
    /* A fresh trace without a case_id, and then its cached answer with one. */
    object(st.svc.port, "OTHER-92", PRIYA_NHS, 201);
    j = trace_ok(priya(body, sizeof(body), NULL));
    assert_objection(j, "pds", 2);
    json_decref(j);
    assert_cached_traces(2);
    j = trace_ok(priya(body, sizeof(body), "LAS-N-3"));
    assert_objection(j, "cache", 0);
    json_decref(j);
    json_t *a = stack_wait_audit_line(&st.svc, "trace", "LAS-N-1", 5000);
    cr_assert_str_eq(str(a, "outcome"), "objection");
    json_decref(a);
    assert_nothing_written();
    cr_assert_eq(proc_log_count(&st.svc, JANE_NHS), 0, "the log holds the number");

    /* Withdrawn: the cached result answers again. */
    cr_assert_eq(
        stack_request(st.svc.port, STACK_KEY_ALL, "DELETE", "/v1/objections/OTHER-9", NULL, NULL),
        204);
    long before = pds_fhir_count();
    j = trace_ok(jane(body, sizeof(body), NULL));
    cr_assert_str_eq(str(j, "outcome"), "matched");
    cr_assert_str_eq(str(j, "nhs_number"), JANE_NHS);
    cr_assert_str_eq(str(j, "source"), "cache");
    cr_assert_str_eq(str(j, "write_back"), "not_requested");
    json_decref(j);
    cr_assert_eq(pds_fhir_count(), before);
    stop_cleanly();
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct peer_probe {
    int port;
    const char *body;
};

static bool peer_answers_objection(void *arg)
{
    const struct peer_probe *p = arg;
    long status;
    json_t *j = stack_trace(p->port, p->body, &status);
    bool is = status == 200 && strcmp(str(j, "outcome"), "objection") == 0;
    json_decref(j);
    return is;
}

#define STALENESS_MS 1000
/* The test's own share of the time: a poll every 10 ms, a request each, scheduling. */
#define MARGIN_MS 300

Test(trace_objections, an_objection_through_one_instance_is_honoured_by_another_within_the_bound)
{
    const char *env[] = {"PDS_TRACE_OBJECTIONS_MAX_STALENESS_MS=1000", NULL};
    char body[400], case_body[400];
    start(env);
    /* The peer takes the first instance's settings (the mock PDS, the case system, the bound). */
    cr_assert_eq(stack_start_peer(&st, &peer, NULL), 0, "B did not start; see %s", peer.log_path);
    struct http_probe ready = {peer.port, "/readyz", 200};
    cr_assert(wait_until(http_probe_answers, &ready, 10000), "B never ready");
    /* B traces Jane first, so that its answer after the objection comes from the cache. */
    json_t *j = trace_on(peer.port, jane(body, sizeof(body), NULL), 200);
    cr_assert_str_eq(str(j, "outcome"), "matched");
    json_decref(j);
    assert_cached_traces(1);

    object(st.svc.port, "TWO-1", JANE_NHS, 201);
    double t0 = now_ms();
    struct peer_probe p = {peer.port, body};
    cr_assert(wait_until(peer_answers_objection, &p, 3 * STALENESS_MS), "B never honoured it");
    double took = now_ms() - t0;
    cr_log_info("B honoured the objection after %.0f ms", took);
    cr_assert_leq(took, STALENESS_MS + MARGIN_MS, "B honoured it after %.0f ms", took);
    /* And the case itself, before PDS hears of it. */
    long before = pds_fhir_count();
    j = trace_on(peer.port, priya(case_body, sizeof(case_body), "TWO-1"), 200);
    assert_objection(j, "pds", 0);
    json_decref(j);
    cr_assert_eq(pds_fhir_count(), before);
    cr_assert_eq(proc_stop(&peer, SIGTERM, 15000), 0, "see %s", peer.log_path);
    stop_cleanly();
}

struct readyz_probe {
    int port;
    long status;
    const char *objections;
};

static bool readyz_is(void *arg)
{
    const struct readyz_probe *p = arg;
    json_t *j = NULL;
    long status = stack_request(p->port, NULL, "GET", "/readyz", NULL, &j);
    const char *o = json_string_value(json_object_get(json_object_get(j, "checks"), "objections"));
    bool is = status == p->status && o != NULL && strcmp(o, p->objections) == 0;
    json_decref(j);
    return is;
}

/* A 503 objections_unavailable without a number anywhere in it. */
static void assert_unavailable(const char *body)
{
    struct http_reply r;
    const char *h[] = {stack_auth(STACK_KEY_TRACE), "Content-Type: application/json", NULL};
    cr_assert_eq(http_do(st.svc.port, "POST", "/v1/trace", h, body, &r), 0);
    cr_assert_eq(r.status, 503, "%ld %s", r.status, r.body);
    cr_assert_null(strstr(r.body, JANE_NHS), "a number in %s", r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    cr_assert_str_eq(str(json_object_get(j, "error"), "code"), "objections_unavailable", "%s",
                     r.body);
    json_decref(j);
    http_reply_free(&r);
}

Test(trace_objections, a_frozen_redis_fails_closed_past_the_bound_then_recovers)
{
    const char *env[] = {"PDS_TRACE_OBJECTIONS_MAX_STALENESS_MS=500",
                         "PDS_TRACE_REDIS_COMMAND_TIMEOUT_MS=300", NULL};
    char body[400];
    start(env);
    cr_assert_eq(redis_server_freeze(&st.redis), 0);
    frozen = true;
    double t0 = now_ms();
    struct readyz_probe unready = {st.svc.port, 503, "unavailable"};
    cr_assert(wait_until(readyz_is, &unready, 5000), "still ready with Redis frozen");
    double took = now_ms() - t0;
    /* The last confirmation came from a poll sent before the freeze: the bound runs from
     * there, and the margin covers this test's polling of /readyz. */
    cr_log_info("failed closed %.0f ms after the freeze", took);
    cr_assert_leq(took, 500 + MARGIN_MS, "fail closed only after %.0f ms", took);

    /* A case: refused before anything starts, PDS not asked. */
    long before = pds_fhir_count();
    assert_unavailable(jane(body, sizeof(body), "FROZEN-1"));
    cr_assert_eq(pds_fhir_count(), before);
    /* No case: PDS finds Jane (the cache lookup times out), and still no number is given. */
    assert_unavailable(jane(body, sizeof(body), NULL));
    cr_assert_gt(pds_fhir_count(), before, "the trace without a case never reached PDS");

    cr_assert_eq(redis_server_thaw(&st.redis), 0);
    frozen = false;
    struct readyz_probe ready = {st.svc.port, 200, "ok"};
    cr_assert(wait_until(readyz_is, &ready, 10000), "not ready again after Redis came back");
    json_t *j = trace_ok(jane(body, sizeof(body), NULL));
    cr_assert_str_eq(str(j, "outcome"), "matched");
    cr_assert_str_eq(str(j, "nhs_number"), JANE_NHS);
    json_decref(j);
    stop_cleanly();
}
