/* POST /v1/trace end to end: the service, a real Redis and the mock PDS with signed-JWT
 * auth, over HTTP on 127.0.0.1. The people are the fixed ones of mocks/pds/README.md. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "http_util.h"
#include "stack.h"
#include "test_util.h"

TestSuite(trace, .timeout = 90);

static struct stack st;

static void start(const char *const pds_args[], const char *const env[])
{
    cr_assert_eq(stack_start_pds(&st, pds_args, env), 0, "stack did not start: see %s and %s",
                 st.svc.log_path, st.pds.log_path);
}

/* POSTs body to /v1/trace with the trace key; returns the JSON answer and its status. */
static json_t *trace(const char *body, long *status)
{
    struct http_reply r;
    const char *h[] = {stack_auth(STACK_KEY_TRACE), "Content-Type: application/json", NULL};
    cr_assert_eq(http_do(st.svc.port, "POST", "/v1/trace", h, body, &r), 0);
    *status = r.status;
    json_t *j = json_loads(r.body, 0, NULL);
    cr_assert_not_null(j, "not JSON: %s", r.body);
    http_reply_free(&r);
    return j;
}

static json_t *trace_ok(const char *body)
{
    long status;
    json_t *j = trace(body, &status);
    char *text = json_dumps(j, 0);
    cr_assert_eq(status, 200, "%ld %s", status, text);
    free(text);
    return j;
}

static const char *str(const json_t *j, const char *key)
{
    const char *v = json_string_value(json_object_get(j, key));
    return v != NULL ? v : "(null)";
}

static long num(const json_t *j, const char *key)
{
    return (long)json_integer_value(json_object_get(j, key));
}

struct redis_keys {
    redisContext *c;
    size_t want;
};

static bool redis_holds_keys(void *arg)
{
    struct redis_keys *k = arg;
    redisReply *r = redisCommand(k->c, "DBSIZE");
    cr_assert_not_null(r);
    bool held = (size_t)r->integer >= k->want;
    freeReplyObject(r);
    return held;
}

/* The answer can leave before the cache store reaches Redis: waits for n keys. */
static void wait_cache_entries(size_t n)
{
    struct redis_keys k = {redisConnect("127.0.0.1", st.redis.port), n};
    cr_assert(k.c != NULL && k.c->err == 0);
    bool held = wait_until(redis_holds_keys, &k, 1000);
    redisFree(k.c);
    cr_assert(held, "the cache store never reached Redis");
}

static json_t *pds_requests(void)
{
    json_t *j = stack_pds_admin(&st, "GET", "/_admin/requests", NULL);
    cr_assert_not_null(j);
    return j;
}

static long pds_count(void)
{
    json_t *j = pds_requests();
    long n = (long)json_array_size(json_object_get(j, "requests"));
    json_decref(j);
    return n;
}

/* FHIR requests only: the token endpoint's are left out. */
static json_t *fhir_requests(void)
{
    json_t *all = pds_requests(), *out = json_array(), *r;
    size_t i;
    json_array_foreach(json_object_get(all, "requests"), i, r)
    {
        if (strstr(str(r, "path"), "/Patient") != NULL)
            json_array_append(out, r);
    }
    json_decref(all);
    return out;
}

static bool pds_saw_fhir_requests(void *arg)
{
    json_t *reqs = fhir_requests();
    bool saw = json_array_size(reqs) >= *(const size_t *)arg;
    json_decref(reqs);
    return saw;
}

/* Waits until the mock PDS has logged n FHIR requests: it logs each one as it arrives,
 * before any latency or hang, so a trace that got this far is waiting on PDS. */
static void wait_pds_requests(size_t n)
{
    cr_assert(wait_until(pds_saw_fhir_requests, &n, 5000), "PDS never saw %zu FHIR requests", n);
}

/* Sends a trace over a raw connection, to hang up on it or read the answer later. */
static int send_trace_raw(const char *body)
{
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "POST /v1/trace HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     STACK_KEY_TRACE, strlen(body), body);
    int fd = tcp_connect(st.svc.port, 5000);
    cr_assert_geq(fd, 0);
    cr_assert_eq(tcp_send(fd, req, (size_t)n), 0);
    return fd;
}

#define JANE                                                                                       \
    "{\"case_id\":\"LAS-000123\",\"family\":\"Smith\",\"given\":[\"Jane\"],"                       \
    "\"birth_date\":\"2010-10-22\",\"gender\":\"female\",\"postcode\":\"LS1 6AE\","                \
    "\"purpose\":\"hospital discharge\"}"

Test(trace, plain_match_with_real_headers_then_cache_hit)
{
    start(NULL, NULL);
    json_t *j = trace_ok(JANE);
    cr_assert_str_eq(str(j, "outcome"), "matched");
    cr_assert_str_eq(str(j, "nhs_number"), "9000000009");
    cr_assert_float_eq(json_number_value(json_object_get(j, "score")), 1.0, 1e-9);
    cr_assert_str_eq(str(j, "source"), "pds");
    cr_assert_eq(num(j, "steps"), 1);
    /* A case_id asks for a write-back, and this service has no case system to write to. */
    cr_assert_str_eq(str(j, "write_back"), "failed");
    cr_assert(json_is_false(json_object_get(j, "restricted")));
    cr_assert(json_is_null(json_object_get(j, "superseded_from")));
    char trace_id[64];
    snprintf(trace_id, sizeof(trace_id), "%s", str(j, "trace_id"));
    cr_assert_eq(strlen(trace_id), 36);
    json_decref(j);

    json_t *reqs = fhir_requests();
    cr_assert_eq(json_array_size(reqs), 1);
    json_t *r = json_array_get(reqs, 0);
    cr_assert_str_eq(str(r, "x_correlation_id"), trace_id);
    cr_assert_eq(strlen(str(r, "x_request_id")), 36);
    cr_assert(strstr(str(r, "query"), "_max-results=1") != NULL);
    cr_assert_str_eq(str(r, "client_id"), STACK_PDS_CLIENT_ID);
    json_decref(reqs);

    wait_cache_entries(1);
    long before = pds_count();
    j = trace_ok(JANE);
    cr_assert_str_eq(str(j, "source"), "cache");
    cr_assert_eq(num(j, "steps"), 0);
    cr_assert_str_eq(str(j, "nhs_number"), "9000000009");
    cr_assert_eq(pds_count(), before, "a cache hit called PDS");
    json_decref(j);

    struct http_reply m;
    cr_assert_eq(http_do(st.svc.port, "GET", "/metrics", NULL, NULL, &m), 0);
    cr_assert(strstr(m.body, "pdstrace_trace_outcomes_total{outcome=\"matched\"} 2\n"), "%s",
              m.body);
    cr_assert(strstr(m.body, "pdstrace_cache_lookups_total{result=\"hit\"} 1\n"));
    cr_assert(strstr(m.body, "pdstrace_cache_lookups_total{result=\"miss\"} 1\n"));
    cr_assert(strstr(m.body, "pdstrace_pds_requests_total{op=\"search\",status=\"200\"} 1\n"));
    cr_assert(strstr(m.body, "pdstrace_pds_request_duration_seconds_count{op=\"search\"} 1\n"));
    http_reply_free(&m);
    stack_stop(&st);
}

struct cascade_case {
    char body[400];
    char outcome[24];
    char nhs[11];
    int steps;
    int restricted;
};

ParameterizedTestParameters(trace, outcomes_of_the_cascade)
{
    static struct cascade_case cases[] = {
        /* Step 2: the postcode wildcard. */
        {"{\"family\":\"Patel\",\"given\":\"Priya\",\"birth_date\":\"1979-09-03\","
         "\"postcode\":\"BD9 4RU\"}",
         "matched", "9000000092", 2, 0},
        /* Step 4: the given-name wildcard (after the postcode steps). */
        {"{\"family\":\"Whitfield\",\"given\":\"Jonny\",\"birth_date\":\"1964-02-29\","
         "\"postcode\":\"S10 2TN\"}",
         "matched", "9000000106", 4, 0},
        /* Step 5: the family-name wildcard. */
        {"{\"family\":\"Thomson\",\"given\":\"Eleanor\",\"birth_date\":\"1952-11-05\","
         "\"postcode\":\"NE6 5QD\"}",
         "matched", "9000000114", 5, 0},
        /* TOO_MANY_MATCHES with history, one without. */
        {"{\"family\":\"Holloway\",\"given\":\"Grace\",\"birth_date\":\"1990-07-19\","
         "\"postcode\":\"YO31 8HE\"}",
         "matched", "9000000122", 2, 0},
        /* A previous name only: a person must review it. */
        {"{\"family\":\"Pennington\",\"given\":\"Margaret\",\"birth_date\":\"1947-08-23\","
         "\"postcode\":\"PR1 8JD\"}",
         "potential_match", "9000000149", 1, 0},
        /* Restricted: hidden from searches with a postcode, found without. */
        {"{\"family\":\"O'Hara\",\"given\":\"Alexis\",\"birth_date\":\"1988-03-14\","
         "\"postcode\":\"LS2 9JT\"}",
         "matched", "9000000017", 3, 1},
        /* Two people, no postcode to tell them apart. */
        {"{\"family\":\"Khan\",\"given\":\"Mohammed\",\"birth_date\":\"1983-01-15\"}",
         "multiple_matches", "", 2, 0},
        /* Nobody: the whole cascade. */
        {"{\"family\":\"Nobodyson\",\"given\":\"Quentin\",\"birth_date\":\"1970-01-01\","
         "\"postcode\":\"LS1 6AE\"}",
         "no_match", "", 5, 0},
    };
    return cr_make_param_array(struct cascade_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct cascade_case *c, trace, outcomes_of_the_cascade)
{
    start(NULL, NULL);
    json_t *j = trace_ok(c->body);
    cr_assert_str_eq(str(j, "outcome"), c->outcome);
    if (c->nhs[0] != '\0')
        cr_assert_str_eq(str(j, "nhs_number"), c->nhs);
    else
        cr_assert(json_is_null(json_object_get(j, "nhs_number")));
    cr_assert_eq(num(j, "steps"), c->steps);
    cr_assert_eq(json_is_true(json_object_get(j, "restricted")), c->restricted);
    json_t *reqs = fhir_requests();
    cr_assert_eq((int)json_array_size(reqs), c->steps, "PDS saw another number of searches");
    json_decref(reqs);
    json_decref(j);
    stack_stop(&st);
}

Test(trace, verifying_a_superseded_number)
{
    start(NULL, NULL);
    json_t *j = trace_ok("{\"family\":\"Cuff\",\"given\":\"Ruth\",\"birth_date\":\"1926-01-07\","
                         "\"nhs_number\":\"900 000 0025\"}");
    cr_assert_str_eq(str(j, "outcome"), "matched");
    cr_assert_str_eq(str(j, "nhs_number"), "9000000041");
    cr_assert_str_eq(str(j, "superseded_from"), "9000000025");
    cr_assert_eq(num(j, "steps"), 1);
    json_decref(j);
    stack_stop(&st);
}

Test(trace, retry_after_503_reuses_the_request_id)
{
    start(NULL, NULL);
    json_decref(stack_pds_admin(&st, "PUT", "/_admin/faults",
                                "{\"fail_next\":1,\"fail_next_status\":503,\"retry_after\":1}"));
    json_t *j = trace_ok(JANE);
    cr_assert_str_eq(str(j, "outcome"), "matched");
    json_decref(j);
    json_t *reqs = fhir_requests();
    cr_assert_eq(json_array_size(reqs), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(reqs, 0), "status")), 503);
    cr_assert_str_eq(str(json_array_get(reqs, 0), "x_request_id"),
                     str(json_array_get(reqs, 1), "x_request_id"));
    json_decref(reqs);
    stack_stop(&st);
}

Test(trace, backs_off_on_429_and_succeeds)
{
    start(NULL, NULL);
    json_decref(stack_pds_admin(&st, "PUT", "/_admin/faults",
                                "{\"fail_next\":2,\"fail_next_status\":429,\"retry_after\":0}"));
    json_t *j = trace_ok(JANE);
    cr_assert_str_eq(str(j, "outcome"), "matched");
    json_decref(j);
    json_t *reqs = fhir_requests();
    cr_assert_eq(json_array_size(reqs), 3);
    json_decref(reqs);
    stack_stop(&st);
}

Test(trace, pds_down_is_503_pds_unavailable)
{
    const char *env[] = {"PDS_TRACE_PDS_MAX_ATTEMPTS=2", "PDS_TRACE_PDS_TIMEOUT_MS=500", NULL};
    start(NULL, env);
    cr_assert_eq(proc_stop(&st.pds, SIGKILL, 5000), 128 + SIGKILL);
    long status;
    json_t *j = trace(JANE, &status);
    cr_assert_eq(status, 503);
    cr_assert_str_eq(str(json_object_get(j, "error"), "code"), "pds_unavailable");
    json_decref(j);
    stack_stop(&st);
}

Test(trace, pds_rejecting_our_request_is_502)
{
    start(NULL, NULL);
    json_decref(stack_pds_admin(&st, "PUT", "/_admin/faults",
                                "{\"fail_next\":1,\"fail_next_status\":400}"));
    long status;
    json_t *j = trace(JANE, &status);
    cr_assert_eq(status, 502);
    cr_assert_str_eq(str(json_object_get(j, "error"), "code"), "pds_rejected");
    json_decref(j);
    stack_stop(&st);
}

Test(trace, token_is_refreshed_after_expiry)
{
    const char *args[] = {"--token-ttl", "2", NULL};
    start(args, NULL);
    json_decref(trace_ok(JANE));
    sleep_ms(2500);
    json_decref(trace_ok("{\"family\":\"Patel\",\"given\":\"Priya\",\"birth_date\":"
                         "\"1979-09-03\",\"postcode\":\"BD7 1DP\"}"));
    json_t *all = pds_requests(), *r;
    size_t i, tokens = 0;
    json_array_foreach(json_object_get(all, "requests"), i, r)
    {
        if (strstr(str(r, "path"), "/oauth2/token") != NULL)
            tokens += json_integer_value(json_object_get(r, "status")) == 200;
        if (strstr(str(r, "path"), "/Patient") != NULL)
            cr_assert_eq(json_integer_value(json_object_get(r, "status")), 200);
    }
    cr_assert_geq(tokens, 2, "the token was not refreshed");
    json_decref(all);
    stack_stop(&st);
}

Test(trace, redis_down_still_traces_and_readyz_degrades)
{
    start(NULL, NULL);
    cr_assert_eq(redis_server_stop(&st.redis), 0);
    struct http_probe degraded = {st.svc.port, "/readyz", 503};
    cr_assert(wait_until(http_probe_answers, &degraded, 5000), "Redis stopped, still ready");
    json_t *j = trace_ok(JANE);
    cr_assert_str_eq(str(j, "outcome"), "matched");
    cr_assert_str_eq(str(j, "source"), "pds");
    json_decref(j);
    struct http_reply r;
    http_do(st.svc.port, "GET", "/readyz", NULL, NULL, &r);
    cr_assert_eq(r.status, 503);
    http_reply_free(&r);
    stack_stop(&st);
}

struct bad_case {
    char body[200];
    char code[24];
    char field[16];
};

ParameterizedTestParameters(trace, bad_input_names_the_field)
{
    static struct bad_case cases[] = {
        {"{\"given\":\"Jane\",\"birth_date\":\"2010-10-22\"}", "missing_field", "family"},
        {"{\"family\":\"Smith\"}", "missing_field", "birth_date"},
        {"{\"family\":\"Smith\",\"birth_date\":\"2010-02-30\"}", "invalid_field", "birth_date"},
        {"{\"family\":\"Smith\",\"birth_date\":\"2010-10-22\",\"nhs_number\":\"9000000000\"}",
         "invalid_field", "nhs_number"},
        {"{\"family\":\"Smith\",\"birth_date\":\"2010-10-22\",\"postcode\":\"12345\"}",
         "invalid_field", "postcode"},
        {"{\"family\":\"Smith\",\"birth_date\":\"2010-10-22\",\"gender\":\"f\"}", "invalid_field",
         "gender"},
        {"{\"family\":\"Sm1th\",\"birth_date\":\"2010-10-22\"}", "invalid_field", "family"},
        {"{\"family\":\"Smith\"", "invalid_json", ""},
        {"[1,2]", "invalid_json", ""},
    };
    return cr_make_param_array(struct bad_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad_case *c, trace, bad_input_names_the_field)
{
    start(NULL, NULL);
    long status;
    json_t *j = trace(c->body, &status);
    cr_assert_eq(status, 400);
    json_t *e = json_object_get(j, "error");
    cr_assert_str_eq(str(e, "code"), c->code);
    if (c->field[0] != '\0')
        cr_assert_str_eq(str(e, "field"), c->field);
    json_t *reqs = fhir_requests();
    cr_assert_eq(json_array_size(reqs), 0, "bad input reached PDS");
    json_decref(reqs);
    json_decref(j);
    stack_stop(&st);
}

Test(trace, trace_needs_the_trace_role)
{
    start(NULL, NULL);
    struct http_reply r;
    const char *h[] = {stack_auth(STACK_KEY_ADMIN), NULL};
    http_do(st.svc.port, "POST", "/v1/trace", h, JANE, &r);
    cr_assert_eq(r.status, 403);
    http_reply_free(&r);
    http_do(st.svc.port, "POST", "/v1/trace", NULL, JANE, &r);
    cr_assert_eq(r.status, 401);
    http_reply_free(&r);
    stack_stop(&st);
}

/* memmem is a GNU extension. */
static const char *find_bytes(const char *data, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; n <= len && i <= len - n; i++)
        if (memcmp(data + i, needle, n) == 0)
            return data + i;
    return NULL;
}

static void assert_no_personal_data(const char *what, const char *data, size_t len)
{
    static const char *const needles[] = {"Smith",   "Patel",   "2010-10-22", "1979-09-03",
                                          "LS1 6AE", "BD7 1DP", "Jane",       "Priya"};
    for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++)
        cr_assert_null(find_bytes(data, len, needles[i]), "%s holds %s", what, needles[i]);
}

Test(trace, redis_and_logs_hold_no_demographics_in_clear)
{
    start(NULL, NULL);
    json_decref(trace_ok(JANE));
    json_decref(trace_ok("{\"case_id\":\"LAS-9\",\"family\":\"Patel\",\"given\":\"Priya\","
                         "\"birth_date\":\"1979-09-03\",\"postcode\":\"BD7 1DP\"}"));
    json_decref(trace_ok("{\"family\":\"Nobodyson\",\"given\":\"Quentin\",\"birth_date\":"
                         "\"1970-01-01\"}"));
    wait_cache_entries(3);
    redisContext *c = redisConnect("127.0.0.1", st.redis.port);
    redisReply *cached = redisCommand(c, "KEYS *:trace:*");
    cr_assert_eq(cached->elements, 3, "one cache entry per trace");
    freeReplyObject(cached);
    redisReply *keys = redisCommand(c, "KEYS *");
    for (size_t i = 0; i < keys->elements; i++) {
        const char *k = keys->element[i]->str;
        assert_no_personal_data("a Redis key", k, strlen(k));
        redisReply *v = redisCommand(c, "DUMP %s", k);
        assert_no_personal_data("a Redis value", v->str, v->len);
        freeReplyObject(v);
    }
    freeReplyObject(keys);
    redisFree(c);
    char *log = proc_log(&st.svc);
    assert_no_personal_data("the service log", log, strlen(log));
    cr_assert_null(strstr(log, "9000000009"), "full NHS number in the log");
    free(log);
    cr_assert_eq(proc_log_count(&st.svc, "\"msg\":\"audit\""), 3);
    cr_assert_eq(proc_log_count(&st.svc, "\"purpose\":\"hospital discharge\""), 1);
    cr_assert_eq(proc_log_count(&st.svc, "\"caller\":\"case-system\""), 3);
    stack_stop(&st);
}

Test(trace, sigterm_lets_an_in_flight_trace_finish)
{
    const char *args[] = {"--latency-ms", "400", NULL};
    start(args, NULL);
    int fd = send_trace_raw(JANE);
    /* The search is at PDS, 400 ms from its answer: SIGTERM lands mid-trace. */
    wait_pds_requests(1);
    kill(st.svc.pid, SIGTERM);
    static char out[8192];
    cr_assert_gt(tcp_recv_all(fd, out, sizeof(out)), 0);
    cr_assert(strncmp(out, "HTTP/1.1 200", 12) == 0, "%s", out);
    cr_assert(strstr(out, "9000000009") != NULL);
    close(fd);
    cr_assert_eq(proc_wait(&st.svc, 10000), 0);
    stack_stop(&st);
}

/* An instance that starts while the token endpoint is down must become ready by itself:
 * an unready instance gets no traffic that would fetch a token for it. */
Test(trace, readiness_recovers_when_the_token_endpoint_comes_back)
{
    start(NULL, NULL);
    cr_assert_eq(stack_stop_service(&st), 0);
    proc_stop(&st.pds, SIGKILL, 5000);
    cr_assert_eq(stack_start_service(&st, NULL), 0);
    struct http_reply r;
    http_do(st.svc.port, "GET", "/readyz", NULL, NULL, &r);
    cr_assert_eq(r.status, 503);
    cr_assert(strstr(r.body, "\"pds_auth\":\"unavailable\"") != NULL, "%s", r.body);
    http_reply_free(&r);
    cr_assert_eq(stack_restart_pds(&st), 0);
    struct http_probe ready = {st.svc.port, "/readyz", 200};
    cr_assert(wait_until(http_probe_answers, &ready, 10000),
              "not ready 10 s after the token endpoint came back");
    stack_stop(&st);
}

/* A trace stuck on a PDS that never answers must not hold the process past the drain. */
Test(trace, drain_deadline_ends_a_hung_trace_and_exits_zero)
{
    const char *env[] = {"PDS_TRACE_SERVER_DRAIN_MS=500", "PDS_TRACE_PDS_TIMEOUT_MS=60000", NULL};
    start(NULL, env);
    json_decref(stack_pds_admin(&st, "PUT", "/_admin/faults", "{\"hang_next\":1}"));
    int fd = send_trace_raw(JANE);
    /* The search is at PDS, which will never answer it. */
    wait_pds_requests(1);
    kill(st.svc.pid, SIGTERM);
    cr_assert_eq(proc_wait(&st.svc, 3000), 0, "not gone 3 s after SIGTERM with a 0.5 s drain");
    cr_assert(tcp_peer_closed(fd));
    close(fd);
    cr_assert_gt(proc_log_count(&st.svc, "drain deadline passed"), 0);
    stack_stop(&st);
}

/* ---- issue 6: answers PDS never gives, gender, deceased, names, deadlines ---- */

static const char *error_code(const json_t *j)
{
    return str(json_object_get(j, "error"), "code");
}

static const char *error_message(const json_t *j)
{
    return str(json_object_get(j, "error"), "message");
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static const char *const sandbox_args[] = {"--sandbox", PDS_TEST_DATA "/pds", NULL};

/* The README's example against the mock in the public sandbox's shape, with the settings
 * the README gives for the sandbox: matched, and the sandbox's Jane Smith has a death
 * notice. */
Test(trace, readme_example_against_the_sandbox_is_matched)
{
    const char *env[] = {"PDS_TRACE_PDS_HISTORY=false", NULL};
    start(sandbox_args, env);
    json_t *j = trace_ok(JANE);
    cr_assert_str_eq(str(j, "outcome"), "matched");
    cr_assert_str_eq(str(j, "nhs_number"), "9000000009");
    cr_assert(json_is_true(json_object_get(j, "deceased")));
    cr_assert_eq(num(j, "steps"), 1);
    json_decref(j);
    json_t *reqs = fhir_requests();
    cr_assert(strstr(str(json_array_get(reqs, 0), "query"), "gender=female") != NULL);
    json_decref(reqs);
    /* The cached answer keeps deceased. */
    wait_cache_entries(1);
    j = trace_ok(JANE);
    cr_assert_str_eq(str(j, "source"), "cache");
    cr_assert(json_is_true(json_object_get(j, "deceased")));
    json_decref(j);
    stack_stop(&st);
}

/* The sandbox answers "not-supported" at 200 to searches it has no example for: the trace
 * says PDS refused the search, and caches nothing, rather than answer no_match. */
Test(trace, not_supported_at_200_is_502_never_no_match)
{
    start(sandbox_args, NULL);
    long status;
    json_t *j = trace(JANE, &status);
    cr_assert_eq(status, 502);
    cr_assert_str_eq(error_code(j), "pds_rejected");
    cr_assert(strstr(error_message(j), "search") != NULL, "%s", error_message(j));
    cr_assert(strstr(error_message(j), "not-supported") != NULL, "%s", error_message(j));
    json_decref(j);
    long before = pds_count();
    j = trace(JANE, &status);
    cr_assert_eq(status, 502, "nothing was cached");
    cr_assert_gt(pds_count(), before);
    json_decref(j);
    stack_stop(&st);
}

/* A held number the sandbox does not know: its retrieve is a definite 404, and the search
 * that follows is refused: the message says which request was refused. */
Test(trace, the_message_names_the_refused_request)
{
    start(sandbox_args, NULL);
    long status;
    json_t *j = trace("{\"family\":\"Nobody\",\"birth_date\":\"2000-01-01\","
                      "\"nhs_number\":\"9000000017\"}",
                      &status);
    cr_assert_eq(status, 502);
    cr_assert_str_eq(error_message(j), "PDS refused the search: OperationOutcome not-supported");
    json_decref(j);
    json_t *reqs = fhir_requests();
    cr_assert_eq(json_array_size(reqs), 2, "a retrieve, then a search");
    json_decref(reqs);
    stack_stop(&st);
}

/* Jane Smith traced as male: the exact step (gender=male) finds nobody, a later step
 * without gender finds her. */
Test(trace, a_different_gender_is_found_by_a_later_step)
{
    start(NULL, NULL);
    json_t *j = trace_ok("{\"family\":\"Smith\",\"given\":[\"Jane\"],\"birth_date\":\"2010-10-22\","
                         "\"gender\":\"male\",\"postcode\":\"LS1 6AE\"}");
    cr_assert_str_eq(str(j, "outcome"), "matched");
    cr_assert_str_eq(str(j, "nhs_number"), "9000000009");
    cr_assert_eq(num(j, "steps"), 2);
    cr_assert(json_is_false(json_object_get(j, "deceased")));
    json_decref(j);
    json_t *reqs = fhir_requests();
    cr_assert(strstr(str(json_array_get(reqs, 0), "query"), "gender=male") != NULL);
    cr_assert(strstr(str(json_array_get(reqs, 1), "query"), "gender") == NULL);
    json_decref(reqs);
    stack_stop(&st);
}

Test(trace, names_pds_cannot_hold_are_400)
{
    static const char *const bodies[] = {
        "{\"family\":\"Smith\xf0\x9f\x98\x80\",\"birth_date\":\"2010-10-22\"}",
        "{\"family\":\"Abcdefghijklmnopqrstuvwxyzabcdefghij\",\"birth_date\":\"2010-10-22\"}",
        "{\"family\":\"Smith\",\"given\":[\"Jane\xe2\x84\xa2\"],\"birth_date\":\"2010-10-22\"}",
    };
    static const char *const fields[] = {"family", "family", "given"};
    start(NULL, NULL);
    for (size_t i = 0; i < 3; i++) {
        long status;
        json_t *j = trace(bodies[i], &status);
        cr_assert_eq(status, 400, "body %zu", i);
        cr_assert_str_eq(str(json_object_get(j, "error"), "field"), fields[i]);
        json_decref(j);
    }
    json_t *reqs = fhir_requests();
    cr_assert_eq(json_array_size(reqs), 0, "nothing reached PDS");
    json_decref(reqs);
    stack_stop(&st);
}

/* pds.deadline_ms bounds a trace whose PDS hangs; a Retry-After beyond it fails at once. */
Test(trace, a_trace_ends_at_its_deadline)
{
    const char *env[] = {"PDS_TRACE_PDS_DEADLINE_MS=1500", NULL};
    start(NULL, env);
    json_decref(stack_pds_admin(&st, "PUT", "/_admin/faults", "{\"hang_next\":10}"));
    uint64_t t0 = now_ms();
    long status;
    json_t *j = trace(JANE, &status);
    uint64_t took = now_ms() - t0;
    cr_assert_eq(status, 503);
    cr_assert_str_eq(error_code(j), "pds_unavailable");
    cr_assert(took >= 1400 && took < 3000, "took %llu ms", (unsigned long long)took);
    json_decref(j);
    json_decref(stack_pds_admin(&st, "PUT", "/_admin/faults",
                                "{\"hang_next\":0,\"fail_next\":1,\"fail_next_status\":503,"
                                "\"retry_after\":30}"));
    t0 = now_ms();
    j = trace(JANE, &status);
    took = now_ms() - t0;
    cr_assert_eq(status, 503);
    cr_assert_lt(took, 1000, "a Retry-After of 30 s beyond a 1.5 s deadline fails at once");
    json_decref(j);
    stack_stop(&st);
}

static bool audit_logged(void *arg)
{
    (void)arg;
    return proc_log_count(&st.svc, "\"msg\":\"audit\"") > 0;
}

/* A caller that hangs up mid-cascade: the trace stops before its next PDS request. */
Test(trace, a_trace_stops_when_its_caller_leaves)
{
    start(NULL, NULL);
    json_decref(stack_pds_admin(&st, "PUT", "/_admin/faults", "{\"latency_ms\":400}"));
    int fd = send_trace_raw("{\"family\":\"Nobodyson\",\"given\":[\"Nemo\"],"
                            "\"birth_date\":\"1970-01-01\",\"postcode\":\"LS1 6AE\"}");
    wait_pds_requests(1);
    close(fd);
    /* The trace ends (its audit line) once the search under way comes back; without the
     * check it would first make the other four searches of the cascade. */
    cr_assert(wait_until(audit_logged, NULL, 5000), "the abandoned trace never ended");
    json_t *reqs = fhir_requests();
    cr_assert_leq(json_array_size(reqs), 2, "%zu PDS requests after the caller left",
                  json_array_size(reqs));
    json_decref(reqs);
    stack_stop(&st);
}

/* The value of a series on the service's /metrics, or -1 when it is absent. */
static double metric(const char *series)
{
    struct http_reply m;
    cr_assert_eq(http_do(st.svc.port, "GET", "/metrics", NULL, NULL, &m), 0);
    char needle[160];
    snprintf(needle, sizeof(needle), "\n%s ", series);
    const char *at = strstr(m.body, needle);
    double v = at != NULL ? strtod(at + strlen(needle), NULL) : -1;
    http_reply_free(&m);
    return v;
}

static bool cache_misses_reach(void *arg)
{
    return metric("pdstrace_cache_lookups_total{result=\"miss\"}") >= *(const double *)arg;
}

/* pds.max_queue bounds the traces waiting for the rate limit: beyond it, 429. */
Test(trace, a_full_pds_queue_is_429_with_retry_after)
{
    const char *env[] = {"PDS_TRACE_PDS_MAX_QUEUE=1", "PDS_TRACE_PDS_RATE=0.2",
                         "PDS_TRACE_PDS_CONCURRENCY=1", NULL};
    start(NULL, env);
    json_decref(stack_pds_admin(&st, "PUT", "/_admin/faults", "{\"latency_ms\":1500}"));
    int fds[3];
    for (int i = 0; i < 3; i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"family\":\"Queue\",\"given\":[\"Person\"],\"birth_date\":\"19%02d-01-01\"}",
                 50 + i);
        fds[i] = send_trace_raw(body);
        /* In order: the first is sent, the second waits in the queue, the third finds it
         * full. A miss hands the trace to the PDS client in the same loop turn. */
        double misses = i + 1;
        if (i < 2)
            cr_assert(wait_until(cache_misses_reach, &misses, 5000), "trace %d never got to PDS",
                      i);
    }
    char out[4096];
    long got = tcp_recv_until(fds[2], out, sizeof(out), "}}", 1);
    cr_assert_gt(got, 0);
    cr_assert(strstr(out, "429") != NULL, "%s", out);
    cr_assert(strstr(out, "Retry-After:") != NULL, "%s", out);
    cr_assert(strstr(out, "rate_limited") != NULL, "%s", out);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    stack_stop(&st);
}
