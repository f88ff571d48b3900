/* The trace state machine (src/trace/trace.c, docs/internals/trace.md) against real parts:
 * a private redis-server behind the cache and the mock PDS as a process behind the PDS
 * client, all on the test's own loop. Every person is one of the mock's fixed synthetic
 * people (mocks/pds/README.md). */
#include "pdstrace/trace.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "pdstrace/cache.h"
#include "pdstrace/demographics.h"
#include "pdstrace/err.h"
#include "pdstrace/http_client.h"
#include "pdstrace/pds_client.h"
#include "pdstrace/redis_conn.h"
#include "pdstrace/trace_result.h"
#include "stack.h"
#include "test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define HAVE_LSAN 1
#endif

#define TRACE_ID "unit-trace-0001"
#define PDS_BASE "/personal-demographics/FHIR/R4"

static const char secret[] = "0123456789abcdef0123456789abcdef-test-secret";

/* What one test runs on. Only the stack's Redis and mock PDS are used: the module under
 * test runs in this process. Each criterion test is its own process. */
static struct fixture {
    struct stack st;
    uv_loop_t loop;
    struct redis_conn *rc;
    struct cache *cache;
    struct http_client *http;
    struct pds_client *pds;
    struct trace_service *svc;
    redisContext *direct; /* a blocking client to look at what Redis holds */
} F;

struct options {
    bool no_cache;
    unsigned deadline_ms;
};

/* One caller of trace_run: what its callback saw, and whether it has gone. */
struct caller {
    int calls;
    int status;
    struct trace_result r;
    char detail[128];
    bool left;
};

/* ---- the parts ---- */

static bool redis_connected(void *arg)
{
    (void)arg;
    return redis_conn_state(F.rc) == REDIS_CONN_CONNECTED;
}

static void start_redis(void)
{
    char url[128];
    cr_assert_eq(redis_server_start(&F.st.redis), 0);
    struct redis_conn_config rcfg = {.url = redis_server_url(&F.st.redis, url, sizeof(url))};
    cr_assert_eq(redis_conn_new(&F.rc, &F.loop, &rcfg), 0);
    cr_assert(run_loop_until(&F.loop, redis_connected, NULL, 5000));
    struct cache_config cc = {.prefix = "t:", .ttl_s = 3600, .negative_ttl_s = 60};
    cr_assert_eq(cache_new(&F.cache, F.rc, secret, strlen(secret), &cc), 0);
    F.direct = redisConnect("127.0.0.1", F.st.redis.port);
    cr_assert(F.direct != NULL && F.direct->err == 0);
}

/* The mock with its fixed people only and no auth: the PDS client sends no token. */
static void start_pds(void)
{
    static char base[160];
    const char *argv[] = {PDS_BINARY_DIR "/mock-pds", "--port", "0", "--generate", "0", NULL};
    cr_assert_eq(proc_start(&F.st.pds, argv, NULL), 0, "mock-pds did not start: see %s",
                 F.st.pds.log_path);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d" PDS_BASE, F.st.pds.port);
    struct pds_client_config pcfg = {
        .base_url = base, .rate = 1000, .concurrency = 8, .timeout_ms = 5000, .max_attempts = 1};
    cr_assert_eq(http_client_new(&F.http, &F.loop), 0);
    cr_assert_eq(pds_client_new(&F.pds, &F.loop, F.http, NULL, &pcfg), 0);
}

static void setup(struct options o)
{
    cr_assert_eq(uv_loop_init(&F.loop), 0);
    start_redis();
    start_pds();
    struct trace_service_config tc = {
        .cascade = {.bands = {0.95, 0.85}, .fuzzy = false, .history = true},
        .deadline_ms = o.deadline_ms,
    };
    cr_assert_eq(trace_service_new(&F.svc, F.pds, o.no_cache ? NULL : F.cache, &tc), 0);
}

/* A criterion test process ends without LeakSanitizer's exit check, so under ASan each
 * test asks for one once everything is freed: a trace that never frees its job fails. */
static void assert_no_leaks(void)
{
#ifdef HAVE_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaked: see the report above");
#endif
}

/* The app's shutdown order (CONVENTIONS.md §1.5): traces first, then PDS and Redis under
 * them, then the loop, which must close with nothing left on it. */
static void teardown(void)
{
    if (F.svc != NULL)
        trace_service_shutdown(F.svc);
    pds_client_free(F.pds);
    cache_free(F.cache);
    redis_conn_free(F.rc);
    http_client_free(F.http);
    cr_assert_eq(close_loop(&F.loop), 0, "handles left on the loop");
    if (F.svc != NULL)
        cr_assert_eq(trace_service_active(F.svc), 0, "a trace never completed");
    trace_service_free(F.svc);
    if (F.direct != NULL)
        redisFree(F.direct);
    proc_stop(&F.st.pds, SIGTERM, 5000);
    redis_server_destroy(&F.st.redis);
    memset(&F, 0, sizeof(F));
    assert_no_leaks();
}

static void init(void)
{
    /* hiredis writes to a Redis the test has stopped. */
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(&F, 0, sizeof(F));
}

static void fini(void)
{
    curl_global_cleanup();
}

TestSuite(trace, .timeout = 30, .init = init, .fini = fini);

/* ---- people and callers ---- */

static struct demographics person(const char *family, const char *given, const char *birth,
                                  const char *postcode, const char *nhs)
{
    struct demographics d;
    memset(&d, 0, sizeof(d));
    snprintf(d.family, sizeof(d.family), "%s", family);
    snprintf(d.given[0], sizeof(d.given[0]), "%s", given);
    d.n_given = 1;
    snprintf(d.birth_date, sizeof(d.birth_date), "%s", birth);
    snprintf(d.postcode, sizeof(d.postcode), "%s", postcode != NULL ? postcode : "");
    snprintf(d.nhs_number, sizeof(d.nhs_number), "%s", nhs != NULL ? nhs : "");
    d.write_back = -1;
    return d;
}

/* Jane Smith (9000000009), found by the first search. */
static struct demographics jane(const char *nhs)
{
    struct demographics d = person("Smith", "Jane", "2010-10-22", "LS1 6AE", nhs);
    d.gender = DEMOG_GENDER_FEMALE;
    return d;
}

/* Nobody: every step of the cascade applies (postcode, given and family over 3
 * characters), five searches in all. given tells such people apart. */
static struct demographics nobody(const char *given)
{
    return person("Nobodyson", given, "1970-01-01", "LS1 6AE", NULL);
}

static void on_traced(int status, const struct trace_result *r, const char *detail, void *arg)
{
    struct caller *c = arg;
    c->calls++;
    c->status = status;
    if (r != NULL)
        c->r = *r;
    cr_assert_not_null(detail);
    snprintf(c->detail, sizeof(c->detail), "%s", detail);
}

static bool caller_gone(void *arg)
{
    const struct caller *c = arg;
    return c->left;
}

static int start_trace(const struct demographics *d, struct caller *c)
{
    const struct trace_call call = {
        .trace_id = TRACE_ID, .cb = on_traced, .gone = caller_gone, .arg = c};
    return trace_run(F.svc, d, &call);
}

static bool called(void *arg)
{
    const struct caller *c = arg;
    return c->calls > 0;
}

static void wait_called(struct caller *c)
{
    cr_assert(run_loop_until(&F.loop, called, c, 10000), "the trace never called back");
    cr_assert_eq(c->calls, 1);
}

/* Starts a trace and runs the loop until it calls back. */
static struct caller trace(const struct demographics *d)
{
    struct caller c = {0};
    cr_assert_eq(start_trace(d, &c), 0);
    cr_assert_eq(c.calls, 0, "called back from inside trace_run");
    wait_called(&c);
    return c;
}

/* ---- what PDS and Redis saw ---- */

/* The FHIR requests the mock PDS logged, oldest first, as "<path after the base>?<query>"
 * ("/Patient/9000000009", "/Patient?family=..."). Returns how many (at most max). */
static size_t pds_log(char out[][512], size_t max)
{
    json_t *all = stack_pds_admin(&F.st, "GET", "/_admin/requests", NULL), *r;
    cr_assert_not_null(all);
    size_t i, n = 0;
    json_array_foreach(json_object_get(all, "requests"), i, r)
    {
        const char *path = json_string_value(json_object_get(r, "path"));
        const char *query = json_string_value(json_object_get(r, "query"));
        const char *corr = json_string_value(json_object_get(r, "x_correlation_id"));
        cr_assert(path != NULL && strncmp(path, PDS_BASE, strlen(PDS_BASE)) == 0, "%s", path);
        cr_assert_str_eq(corr != NULL ? corr : "(none)", TRACE_ID);
        bool has_query = query != NULL && query[0] != '\0';
        if (n < max)
            snprintf(out[n], 512, "%s%s%s", path + strlen(PDS_BASE), has_query ? "?" : "",
                     has_query ? query : "");
        n++;
    }
    json_decref(all);
    return n;
}

static size_t pds_count(void)
{
    char log[1][512];
    return pds_log(log, 0);
}

static bool pds_saw(void *arg)
{
    return pds_count() >= *(const size_t *)arg;
}

/* Runs the loop until the mock has logged n requests: it logs each as it arrives, before
 * any latency or hang, so the traces that sent them are waiting on PDS. */
static void wait_pds_saw(size_t n)
{
    cr_assert(run_loop_until(&F.loop, pds_saw, &n, 5000), "PDS never saw %zu requests", n);
}

static void pds_faults(const char *json)
{
    json_t *j = stack_pds_admin(&F.st, "PUT", "/_admin/faults", json);
    cr_assert_not_null(j, "the mock refused %s", json);
    json_decref(j);
}

static bool redis_idle(void *arg)
{
    (void)arg;
    return redis_conn_pending(F.rc) == 0;
}

/* Entries in Redis once every command sent (a cache store) has been answered. */
static long long cached_entries(void)
{
    cr_assert(run_loop_until(&F.loop, redis_idle, NULL, 2000));
    redisReply *r = redisCommand(F.direct, "DBSIZE");
    cr_assert_not_null(r);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

/* ---- each way out of each state ---- */

Test(trace, a_cache_miss_asks_pds_and_stores_the_answer)
{
    setup((struct options){0});
    struct demographics d = jane(NULL);
    struct caller c = {0};
    cr_assert_eq(start_trace(&d, &c), 0);
    cr_assert_eq(trace_service_active(F.svc), 1);
    wait_called(&c);
    cr_assert_eq(trace_service_active(F.svc), 0);
    cr_assert_eq(c.status, 0, "%s %s", err_name(c.status), c.detail);
    cr_assert_eq(c.r.outcome, TRACE_MATCHED);
    cr_assert_str_eq(c.r.nhs_number, "9000000009");
    cr_assert_eq(c.r.source, TRACE_SOURCE_PDS);
    cr_assert_eq(c.r.steps, 1);
    cr_assert_float_eq(c.r.score, 1.0, 1e-9);
    cr_assert_str_eq(c.detail, "");
    char log[4][512];
    cr_assert_eq(pds_log(log, 4), 1);
    cr_assert(strncmp(log[0], "/Patient?family=Smith&", 22) == 0, "%s", log[0]);
    cr_assert_eq(cached_entries(), 1, "the answer was not stored");
    teardown();
}

Test(trace, a_cache_hit_answers_without_pds)
{
    setup((struct options){0});
    struct demographics d = jane(NULL);
    struct caller first = trace(&d);
    cr_assert_eq(first.status, 0);
    cr_assert_eq(cached_entries(), 1);
    struct caller again = trace(&d);
    cr_assert_eq(again.status, 0);
    cr_assert_eq(again.r.source, TRACE_SOURCE_CACHE);
    cr_assert_eq(again.r.steps, 0);
    cr_assert_eq(again.r.outcome, TRACE_MATCHED);
    cr_assert_str_eq(again.r.nhs_number, "9000000009");
    cr_assert_eq(pds_count(), 1, "a cache hit asked PDS");
    teardown();
}

static bool redis_away(void *arg)
{
    (void)arg;
    return redis_conn_state(F.rc) != REDIS_CONN_CONNECTED;
}

/* The cache never fails a trace: with Redis away the lookup cannot even be sent. */
Test(trace, with_redis_away_a_trace_goes_straight_to_pds)
{
    setup((struct options){0});
    cr_assert_eq(redis_server_stop(&F.st.redis), 0);
    cr_assert(run_loop_until(&F.loop, redis_away, NULL, 5000), "Redis stopped, still connected");
    struct demographics d = jane(NULL);
    struct caller c = trace(&d);
    cr_assert_eq(c.status, 0, "%s", err_name(c.status));
    cr_assert_eq(c.r.source, TRACE_SOURCE_PDS);
    cr_assert_str_eq(c.r.nhs_number, "9000000009");
    cr_assert_eq(pds_count(), 1);
    teardown();
}

Test(trace, without_a_cache_every_trace_asks_pds)
{
    setup((struct options){.no_cache = true});
    struct demographics d = jane(NULL);
    for (int i = 0; i < 2; i++) {
        struct caller c = trace(&d);
        cr_assert_eq(c.status, 0, "%s", err_name(c.status));
        cr_assert_eq(c.r.source, TRACE_SOURCE_PDS);
    }
    cr_assert_eq(pds_count(), 2);
    cr_assert_eq(cached_entries(), 0);
    teardown();
}

struct held {
    struct demographics d;
    char want[11];       /* the number the trace answers */
    char superseded[11]; /* superseded_from */
};

Test(trace, a_held_number_that_stands_is_verified_by_one_retrieve)
{
    const struct held cases[] = {
        {jane("9000000009"), "9000000009", ""},
        /* Superseded: retrieving 9000000025 returns 9000000041. */
        {person("Cuff", "Ruth", "1926-01-07", NULL, "9000000025"), "9000000041", "9000000025"},
    };
    setup((struct options){0});
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_decref(stack_pds_admin(&F.st, "DELETE", "/_admin/requests", NULL));
        struct caller c = trace(&cases[i].d);
        cr_assert_eq(c.status, 0, "%s %s", err_name(c.status), c.detail);
        cr_assert_eq(c.r.outcome, TRACE_MATCHED);
        cr_assert_str_eq(c.r.nhs_number, cases[i].want);
        cr_assert_str_eq(c.r.superseded_from, cases[i].superseded);
        cr_assert_eq(c.r.steps, 1);
        char log[4][512], want[32];
        cr_assert_eq(pds_log(log, 4), 1, "a verified number needs no search");
        snprintf(want, sizeof(want), "/Patient/%s", cases[i].d.nhs_number);
        cr_assert_str_eq(log[0], want);
    }
    teardown();
}

/* Jane Smith with a number that is someone else's (Alexis O'Hara), an invalidated one and
 * one PDS does not know: each retrieve fails to confirm it, and the search finds her. */
Test(trace, a_held_number_that_does_not_stand_falls_back_to_search)
{
    static const char *const numbers[] = {"9000000017", "9000000068", "9000000238"};
    setup((struct options){0});
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
        json_decref(stack_pds_admin(&F.st, "DELETE", "/_admin/requests", NULL));
        struct demographics d = jane(numbers[i]);
        struct caller c = trace(&d);
        cr_assert_eq(c.status, 0, "%s: %s %s", numbers[i], err_name(c.status), c.detail);
        cr_assert_eq(c.r.outcome, TRACE_MATCHED);
        cr_assert_str_eq(c.r.nhs_number, "9000000009");
        cr_assert_str_eq(c.r.superseded_from, "");
        cr_assert_eq(c.r.held_invalidated, i == 1, "%s: only 9000000068 is invalidated",
                     numbers[i]);
        cr_assert_eq(c.r.steps, 2, "%s: a retrieve and a search", numbers[i]);
        char log[4][512], want[32];
        cr_assert_eq(pds_log(log, 4), 2);
        snprintf(want, sizeof(want), "/Patient/%s", numbers[i]);
        cr_assert_str_eq(log[0], want);
        cr_assert(strncmp(log[1], "/Patient?family=Smith&", 22) == 0, "%s", log[1]);
    }
    teardown();
}

Test(trace, a_cascade_that_finds_nobody_is_no_match_after_every_step)
{
    setup((struct options){0});
    struct demographics d = nobody("Quentin");
    struct caller c = trace(&d);
    cr_assert_eq(c.status, 0, "%s %s", err_name(c.status), c.detail);
    cr_assert_eq(c.r.outcome, TRACE_NO_MATCH);
    cr_assert_str_eq(c.r.nhs_number, "");
    cr_assert_eq(c.r.steps, 5);
    cr_assert_eq(pds_count(), 5);
    cr_assert_eq(cached_entries(), 1, "no_match is cached too");
    teardown();
}

struct failure {
    const char *faults;
    bool held; /* trace with a held number: the retrieve fails */
    int status;
    const char *detail; /* its start */
};

Test(trace, a_pds_failure_ends_the_trace_and_nothing_is_cached)
{
    const struct failure cases[] = {
        {"{\"fail_next\":1,\"fail_next_status\":400}", false, ERR_UPSTREAM_REJECTED,
         "the search: OperationOutcome "},
        {"{\"fail_next\":1,\"fail_next_status\":400}", true, ERR_UPSTREAM_REJECTED,
         "the retrieve: OperationOutcome "},
        /* One attempt (start_pds): unavailable at once. */
        {"{\"fail_next\":1,\"fail_next_status\":503}", false, ERR_UPSTREAM, ""},
    };
    setup((struct options){0});
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct failure *f = &cases[i];
        json_decref(stack_pds_admin(&F.st, "DELETE", "/_admin/requests", NULL));
        pds_faults(f->faults);
        struct demographics d = jane(f->held ? "9000000009" : NULL);
        struct caller c = trace(&d);
        cr_assert_eq(c.status, f->status, "case %zu: %s", i, err_name(c.status));
        cr_assert(strncmp(c.detail, f->detail, strlen(f->detail)) == 0, "case %zu: %s", i,
                  c.detail);
        cr_assert_eq(f->detail[0] == '\0', c.detail[0] == '\0', "case %zu: %s", i, c.detail);
        cr_assert_eq(pds_count(), 1, "case %zu: no step after a failure", i);
        cr_assert_eq(cached_entries(), 0, "case %zu: a failure was cached", i);
    }
    teardown();
}

Test(trace, the_deadline_ends_a_trace_whose_pds_hangs)
{
    setup((struct options){.deadline_ms = 400});
    pds_faults("{\"hang_next\":10}");
    struct demographics d = jane(NULL);
    uint64_t t0 = uv_hrtime();
    struct caller c = trace(&d);
    uint64_t took_ms = (uv_hrtime() - t0) / 1000000u;
    cr_assert_eq(c.status, ERR_UPSTREAM_TIMEOUT, "%s", err_name(c.status));
    cr_assert(took_ms >= 350 && took_ms < 3000, "took %llu ms", (unsigned long long)took_ms);
    cr_assert_eq(pds_count(), 1);
    cr_assert_eq(cached_entries(), 0);
    teardown();
}

/* ---- callers that leave ---- */

Test(trace, a_caller_gone_before_pds_costs_no_request)
{
    setup((struct options){0});
    struct demographics d = jane(NULL);
    struct caller c = {.left = true};
    cr_assert_eq(start_trace(&d, &c), 0, "the cache lookup starts before anyone asks");
    wait_called(&c);
    cr_assert_eq(c.status, UV_ECANCELED, "%s", err_name(c.status));
    cr_assert_eq(pds_count(), 0);
    cr_assert_eq(cached_entries(), 0);
    teardown();
}

Test(trace, a_caller_that_leaves_mid_cascade_stops_it_before_the_next_search)
{
    setup((struct options){0});
    pds_faults("{\"latency_ms\":300}");
    struct demographics d = nobody("Quentin");
    struct caller c = {0};
    cr_assert_eq(start_trace(&d, &c), 0);
    wait_pds_saw(1);
    c.left = true;
    wait_called(&c);
    cr_assert_eq(c.status, UV_ECANCELED, "%s", err_name(c.status));
    cr_assert_eq(pds_count(), 1, "searched again after the caller left");
    teardown();
}

/* Without a cache the first PDS request is started inside trace_run, so a trace that
 * cannot start fails there (CONVENTIONS.md §2.5: <0 and never a callback). */
Test(trace, a_trace_that_cannot_start_returns_the_error_and_never_calls_back)
{
    setup((struct options){.no_cache = true});
    struct demographics d = jane(NULL);
    struct caller c = {.left = true};
    cr_assert_eq(start_trace(&d, &c), UV_ECANCELED);
    cr_assert_eq(trace_service_active(F.svc), 0);
    teardown();
    cr_assert_eq(c.calls, 0, "called back after trace_run failed");
}

/* ---- shutdown ---- */

/* Starts n traces: all but the last until PDS has their requests, then the last, which is
 * left waiting on its cache lookup; then shuts the service down under them. */
static void start_then_shut_down(const struct demographics *d, struct caller *c, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        cr_assert_eq(start_trace(&d[i], &c[i]), 0);
    wait_pds_saw(n - 1);
    cr_assert_eq(start_trace(&d[n - 1], &c[n - 1]), 0);
    trace_service_shutdown(F.svc);
}

/* After teardown, when nothing is left that could call back. */
static void assert_called_once(const struct caller *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(c[i].calls, 1, "trace %zu called back %d times", i, c[i].calls);
}

/* Three traces waiting on PDS and one on its cache lookup: none starts another step after
 * trace_service_shutdown, and each caller hears UV_ECANCELED exactly once. */
Test(trace, shutdown_lets_each_step_end_and_cancels_the_next)
{
    setup((struct options){0});
    pds_faults("{\"latency_ms\":300}");
    struct demographics d[4] = {nobody("Quentin"), nobody("Quincy"), nobody("Quilla"), jane(NULL)};
    struct caller c[4] = {0};
    start_then_shut_down(d, c, 4);
    for (int i = 0; i < 4; i++) {
        wait_called(&c[i]);
        cr_assert_eq(c[i].status, UV_ECANCELED, "trace %d: %s", i, err_name(c[i].status));
    }
    cr_assert_eq(trace_service_active(F.svc), 0);
    cr_assert_eq(pds_count(), 3, "a step started after shutdown");
    teardown();
    assert_called_once(c, 4);
}

/* The app frees the PDS client and Redis under traces still waiting on them. */
Test(trace, freeing_pds_and_redis_under_waiting_traces_cancels_each_once)
{
    setup((struct options){0});
    pds_faults("{\"hang_next\":10}");
    struct demographics d[3] = {nobody("Quentin"), nobody("Quincy"), jane(NULL)};
    struct caller c[3] = {0};
    start_then_shut_down(d, c, 3);
    pds_client_free(F.pds);
    F.pds = NULL;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(c[i].calls, 1, "trace %d: not cancelled by pds_client_free", i);
        cr_assert_eq(c[i].status, UV_ECANCELED, "trace %d: %s", i, err_name(c[i].status));
    }
    cache_free(F.cache);
    F.cache = NULL;
    redis_conn_free(F.rc);
    F.rc = NULL;
    wait_called(&c[2]);
    cr_assert_eq(c[2].status, UV_ECANCELED, "%s", err_name(c[2].status));
    cr_assert_eq(trace_service_active(F.svc), 0);
    teardown();
    assert_called_once(c, 3);
}
