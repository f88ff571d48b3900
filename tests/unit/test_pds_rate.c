/* The PDS rate limit shared through Redis (src/pds/pds_rate.c, docs/internals/pds_client.md
 * "The shared limiter"): the script alone on a private redis-server, then PDS clients on
 * the test's loop sharing it against the mock PDS as a process, whose request log stamps
 * every arrival (time_us). */
#include "pdstrace/pds_rate.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/err.h"
#include "pdstrace/http_client.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/pds_client.h"
#include "pdstrace/redis_conn.h"
#include "stack.h"
#include "test_util.h"

#define RATE       20.0
#define NOMINAL_US 50000.0 /* 1/RATE */
#define PREFIX     "t:"
#define KEY        PREFIX "pds:rate"
#define PDS_BASE   "/personal-demographics/FHIR/R4"
#define QUERY      "family=Nobody&birthdate=eq2010-10-22"
#define MAX_LIMITS 4
#define MAX_SLOTS  64
#define MAX_REQS   64
#define FALLBACK   "pdstrace_pds_rate_fallback_total"
#define MSG_AWAY   "\"pds rate limit not shared: Redis is away\""
#define MSG_BACK   "\"pds rate limit shared through Redis again\""
/* Arrivals are stamped by the mock, another process, which a loaded machine may deschedule
 * and then stamp two requests close together; a gap this much under 1/RATE is short. */
#define SLACK_US 5000.0

/* What one test runs on. Each criterion test is its own process. */
static struct fixture {
    struct stack st; /* its Redis and mock PDS only */
    uv_loop_t loop;
    struct redis_conn *rc[2];
    struct pds_rate *pr[MAX_LIMITS];
    struct http_client *http;
    struct pds_client *pc[2];
    struct metrics *metrics;
    FILE *log;
} F;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(&F, 0, sizeof(F));
    cr_assert_eq(uv_loop_init(&F.loop), 0);
    cr_assert_eq(metrics_new(&F.metrics), 0);
    F.log = tmpfile();
    cr_assert_not_null(F.log);
    log_set_stream(F.log);
}

static void teardown(void)
{
    for (size_t i = 0; i < 2; i++)
        pds_client_free(F.pc[i]);
    for (size_t i = 0; i < MAX_LIMITS; i++)
        pds_rate_free(F.pr[i]);
    for (size_t i = 0; i < 2; i++)
        redis_conn_free(F.rc[i]);
    http_client_free(F.http);
    cr_assert_eq(close_loop(&F.loop), 0, "handles left on the loop");
    if (F.st.pds.pid > 0)
        proc_stop(&F.st.pds, SIGTERM, 5000);
    redis_server_destroy(&F.st.redis);
    log_set_stream(NULL);
    fclose(F.log);
    metrics_free(F.metrics);
    curl_global_cleanup();
}

TestSuite(pds_rate, .init = setup, .fini = teardown, .timeout = 30);

/* ---- the parts ---- */

static bool all_connected(void *arg)
{
    UNUSED(arg);
    for (size_t i = 0; i < 2; i++)
        if (redis_conn_state(F.rc[i]) != REDIS_CONN_CONNECTED)
            return false;
    return true;
}

static bool none_connected(void *arg)
{
    UNUSED(arg);
    for (size_t i = 0; i < 2; i++)
        if (redis_conn_state(F.rc[i]) == REDIS_CONN_CONNECTED)
            return false;
    return true;
}

/* Two connections to one Redis, as two instances of the service would have. They come
 * back within 100 ms of Redis. */
static void start_redis(void)
{
    char url[128];
    cr_assert_eq(redis_server_start(&F.st.redis), 0);
    struct redis_conn_config cfg = {.url = redis_server_url(&F.st.redis, url, sizeof(url)),
                                    .reconnect_min_ms = 20,
                                    .reconnect_max_ms = 100};
    for (size_t i = 0; i < 2; i++)
        cr_assert_eq(redis_conn_new(&F.rc[i], &F.loop, &cfg), 0);
    cr_assert(run_loop_until(&F.loop, all_connected, NULL, 5000), "Redis did not connect");
}

static void new_limiter(size_t i, size_t conn)
{
    struct pds_rate_config cfg = {RATE, F.rc[conn], PREFIX, F.metrics};
    cr_assert_eq(pds_rate_new(&F.pr[i], &cfg), 0);
}

/* The mock with its fixed people only and no auth: searches for nobody answer 200. */
static void start_pds(void)
{
    const char *argv[] = {PDS_BINARY_DIR "/mock-pds", "--port", "0", "--generate", "0", NULL};
    cr_assert_eq(proc_start(&F.st.pds, argv, NULL), 0, "mock-pds did not start: see %s",
                 F.st.pds.log_path);
    cr_assert_eq(http_client_new(&F.http, &F.loop), 0);
}

/* Client i at rate, sharing the limit through connection i, or alone without Redis. */
static void new_client(size_t i, bool shared, double rate)
{
    static char base[160];
    snprintf(base, sizeof(base), "http://127.0.0.1:%d" PDS_BASE, F.st.pds.port);
    struct pds_client_config cfg = {.base_url = base,
                                    .rate = rate,
                                    .concurrency = 4,
                                    .timeout_ms = 5000,
                                    .max_attempts = 1,
                                    .metrics = F.metrics,
                                    .redis = shared ? F.rc[i] : NULL,
                                    .key_prefix = PREFIX};
    cr_assert_eq(pds_client_new(&F.pc[i], &F.loop, F.http, NULL, &cfg), 0);
}

/* Lines of the log holding needle. */
static int log_count(const char *needle)
{
    char line[4096];
    int n = 0;
    fflush(F.log);
    rewind(F.log);
    while (fgets(line, sizeof(line), F.log) != NULL)
        n += strstr(line, needle) != NULL;
    fseek(F.log, 0, SEEK_END);
    return n;
}

/* ---- reservations ---- */

/* One limiter reserving want slots one after another, each as soon as the last answers. */
struct taker {
    struct pds_rate *pr;
    enum pds_priority prio;
    unsigned want, got;
    int status;
    bool done;
    struct pds_rate_slot slots[MAX_SLOTS];
};

static void on_taken(int status, const struct pds_rate_slot *slot, void *arg)
{
    struct taker *t = arg;
    t->status = status;
    if (status == 0)
        t->slots[t->got++] = *slot;
    if (status != 0 || t->got == t->want) {
        t->done = true;
        return;
    }
    cr_assert_eq(pds_rate_reserve(t->pr, t->prio, on_taken, t), 0);
}

static bool takers_done(void *arg)
{
    const struct taker *t = arg;
    return t[0].done && t[1].done;
}

/* One reservation, waited for. */
static struct pds_rate_slot reserve(struct pds_rate *pr, enum pds_priority prio)
{
    struct taker t = {.pr = pr, .prio = prio, .want = 1};
    cr_assert_eq(pds_rate_reserve(pr, prio, on_taken, &t), 0);
    cr_assert(run_until(&F.loop, &t.done, 5000), "no answer from the limiter");
    cr_assert_eq(t.status, 0, "status %s", err_name(t.status));
    return t.slots[0];
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static unsigned long long interval_us(void)
{
    return (pds_rate_interval_ns(RATE) + 999) / 1000;
}

Test(pds_rate, two_limiters_never_share_or_crowd_a_slot)
{
    struct taker t[2];
    uint64_t all[2 * 25];
    start_redis();
    for (size_t i = 0; i < 2; i++) {
        new_limiter(i, i);
        t[i] = (struct taker){.pr = F.pr[i], .prio = PDS_PRIORITY_TRACE, .want = 25};
        cr_assert_eq(pds_rate_reserve(F.pr[i], PDS_PRIORITY_TRACE, on_taken, &t[i]), 0);
        cr_assert_eq(pds_rate_reserve(F.pr[i], PDS_PRIORITY_TRACE, on_taken, &t[i]), UV_EBUSY,
                     "a second reservation in flight");
    }
    cr_assert(run_loop_until(&F.loop, takers_done, t, 10000));
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(t[i].status, 0, "status %s", err_name(t[i].status));
        for (size_t k = 0; k < 25; k++) {
            cr_assert(t[i].slots[k].reserved);
            all[i * 25 + k] = t[i].slots[k].redis_us;
            if (k > 0)
                cr_assert_gt(t[i].slots[k].at_ns, t[i].slots[k - 1].at_ns);
        }
    }
    qsort(all, 50, sizeof(all[0]), cmp_u64);
    /* Every slot is one interval (1/RATE and 1 %) after the one before: none closer, and
     * none left empty while both asked. */
    for (size_t k = 1; k < 50; k++)
        cr_assert_eq(all[k] - all[k - 1], interval_us(), "slots %zu and %zu are %llu us apart",
                     k - 1, k, (unsigned long long)(all[k] - all[k - 1]));
    cr_assert_eq(interval_us(), 50500);
    /* The key goes once its last slot has passed (1 s later). */
    long long pttl = redis_server_query(&F.st.redis, "PTTL " KEY);
    cr_assert(pttl > 0 && pttl <= (long long)(50 * interval_us() / 1000) + 1000, "PTTL %lld", pttl);
}

Test(pds_rate, bulk_reaches_one_interval_ahead_and_a_trace_further)
{
    start_redis();
    new_limiter(0, 0);
    new_limiter(1, 1);
    uint64_t i_us = interval_us();
    struct pds_rate_slot s0 = reserve(F.pr[0], PDS_PRIORITY_BULK);
    struct pds_rate_slot s1 = reserve(F.pr[0], PDS_PRIORITY_BULK);
    cr_assert(s0.reserved && s1.reserved, "bulk within one interval is refused");
    cr_assert_eq(s1.redis_us, s0.redis_us + i_us);

    /* Two intervals ahead: out of a bulk request's reach, from any instance. */
    uint64_t asked = uv_hrtime();
    struct pds_rate_slot refused = reserve(F.pr[1], PDS_PRIORITY_BULK);
    cr_assert_not(refused.reserved, "bulk reserved a slot two intervals ahead");
    cr_assert_eq(refused.redis_us, s0.redis_us + 2 * i_us);
    cr_assert_gt(refused.at_ns, asked);
    cr_assert_leq(refused.at_ns - asked, i_us * 1000 + 100000000ull, "try again in %llu ns",
                  (unsigned long long)(refused.at_ns - asked));

    /* A trace takes that slot (the refusal reserved nothing), and the next. */
    struct pds_rate_slot t0 = reserve(F.pr[1], PDS_PRIORITY_TRACE);
    struct pds_rate_slot t1 = reserve(F.pr[1], PDS_PRIORITY_TRACE);
    cr_assert(t0.reserved && t1.reserved, "a trace was refused within the minute");
    cr_assert_eq(t0.redis_us, s0.redis_us + 2 * i_us);
    cr_assert_eq(t1.redis_us, s0.redis_us + 3 * i_us);
    cr_assert_not(reserve(F.pr[0], PDS_PRIORITY_BULK).reserved);
}

/* Redis forgets scripts (restart, SCRIPT FLUSH): EVALSHA answers NOSCRIPT and the text goes
 * once, after which EVALSHA serves again. */
static long long command_calls(redisContext *c, const char *name)
{
    redisReply *r = redisCommand(c, "INFO commandstats");
    cr_assert(r != NULL && r->type == REDIS_REPLY_STRING);
    char needle[64];
    snprintf(needle, sizeof(needle), "cmdstat_%s:calls=", name);
    const char *p = strstr(r->str, needle);
    long long n = p != NULL ? strtoll(p + strlen(needle), NULL, 10) : 0;
    freeReplyObject(r);
    return n;
}

Test(pds_rate, evalsha_with_the_text_when_redis_forgot_it)
{
    start_redis();
    new_limiter(0, 0);
    redisContext *c = redisConnect("127.0.0.1", F.st.redis.port);
    cr_assert(c != NULL && c->err == 0);
    cr_assert(reserve(F.pr[0], PDS_PRIORITY_TRACE).reserved);
    cr_assert(reserve(F.pr[0], PDS_PRIORITY_TRACE).reserved);
    cr_assert_eq(command_calls(c, "eval"), 1, "the text was sent more than once");
    cr_assert_eq(command_calls(c, "evalsha"), 2);
    cr_assert_eq(redis_server_query(&F.st.redis, "SCRIPT FLUSH"), 0);
    cr_assert(reserve(F.pr[0], PDS_PRIORITY_TRACE).reserved);
    cr_assert(reserve(F.pr[0], PDS_PRIORITY_TRACE).reserved);
    cr_assert_eq(command_calls(c, "eval"), 2);
    cr_assert_eq(command_calls(c, "evalsha"), 4);
    redisFree(c);
    cr_assert_float_eq(metrics_value(F.metrics, FALLBACK, NULL), 0.0, 1e-9);
}

Test(pds_rate, redis_away_is_logged_once_and_counted_each_time)
{
    start_redis();
    new_limiter(0, 0);
    cr_assert(reserve(F.pr[0], PDS_PRIORITY_TRACE).reserved);
    cr_assert_eq(redis_server_kill(&F.st.redis), 0);
    cr_assert(run_loop_until(&F.loop, none_connected, NULL, 5000));
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pds_rate_reserve(F.pr[0], PDS_PRIORITY_TRACE, on_taken, NULL),
                     ERR_UNAVAILABLE);
    cr_assert_float_eq(metrics_value(F.metrics, FALLBACK, NULL), 3.0, 1e-9);
    cr_assert_eq(log_count(MSG_AWAY), 1);
    cr_assert_eq(log_count(MSG_BACK), 0);
    cr_assert_eq(redis_server_restart(&F.st.redis), 0);
    cr_assert(run_loop_until(&F.loop, all_connected, NULL, 5000));
    cr_assert(reserve(F.pr[0], PDS_PRIORITY_TRACE).reserved);
    cr_assert_eq(log_count(MSG_BACK), 1);
    cr_assert_float_eq(metrics_value(F.metrics, FALLBACK, NULL), 3.0, 1e-9);
}

/* An answer that is none of the script's (here the key holds a hash) falls back too, and
 * the warning says what Redis said. */
Test(pds_rate, a_redis_error_falls_back_and_says_why)
{
    struct taker t = {.want = 1};
    start_redis();
    new_limiter(0, 0);
    cr_assert_eq(redis_server_query(&F.st.redis, "HSET " KEY " a b"), 1);
    t.pr = F.pr[0];
    cr_assert_eq(pds_rate_reserve(F.pr[0], PDS_PRIORITY_BULK, on_taken, &t), 0);
    cr_assert(run_until(&F.loop, &t.done, 5000));
    cr_assert_eq(t.status, ERR_UPSTREAM, "status %s", err_name(t.status));
    cr_assert_eq(log_count(MSG_AWAY), 1);
    cr_assert_eq(log_count("WRONGTYPE"), 1);
    cr_assert_float_eq(metrics_value(F.metrics, FALLBACK, NULL), 1.0, 1e-9);
}

/* ---- PDS clients sharing it ---- */

struct outcome {
    bool done;
    int status;
    bool left; /* the caller has gone */
};

static void on_done(int status, const struct pds_response *res, void *arg)
{
    struct outcome *o = arg;
    UNUSED(res);
    o->status = status;
    o->done = true;
}

static void search(size_t client, const char *cid, enum pds_priority prio, struct outcome *o)
{
    struct pds_call call = {.correlation_id = cid, .priority = prio};
    cr_assert_eq(pds_client_search(F.pc[client], QUERY, &call, on_done, o), 0);
}

struct waiting {
    struct outcome *o;
    size_t n;
};

static bool outcomes_done(void *arg)
{
    const struct waiting *w = arg;
    for (size_t i = 0; i < w->n; i++)
        if (!w->o[i].done)
            return false;
    return true;
}

static void wait_outcomes(struct outcome *o, size_t n, unsigned deadline_ms)
{
    struct waiting w = {o, n};
    cr_assert(run_loop_until(&F.loop, outcomes_done, &w, deadline_ms), "requests left waiting");
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(o[i].status, 0, "request %zu: %s", i, err_name(o[i].status));
}

/* The mock's FHIR requests since its log was last cleared: arrival times (us), sorted,
 * and correlation ids in arrival order. Returns how many. */
static size_t arrivals(uint64_t *us, char (*cid)[64], size_t max)
{
    json_t *all = stack_pds_admin(&F.st, "GET", "/_admin/requests", NULL), *r;
    size_t i, n = 0;
    cr_assert_not_null(all);
    json_array_foreach(json_object_get(all, "requests"), i, r)
    {
        if (strstr(json_string_value(json_object_get(r, "path")), "/Patient") == NULL)
            continue;
        cr_assert_lt(n, max);
        us[n] = (uint64_t)json_integer_value(json_object_get(r, "time_us"));
        cr_assert_gt(us[n], 0, "the mock gave no time_us");
        const char *c = json_string_value(json_object_get(r, "x_correlation_id"));
        if (cid != NULL)
            snprintf(cid[n], sizeof(cid[n]), "%s", c != NULL ? c : "");
        n++;
    }
    json_decref(all);
    qsort(us, n, sizeof(us[0]), cmp_u64);
    return n;
}

static void clear_arrivals(void)
{
    json_decref(stack_pds_admin(&F.st, "DELETE", "/_admin/requests", NULL));
}

/* What PDS's rolling window sees of n arrivals at RATE: how many gaps are short, and
 * whether any twenty gaps in a row took clearly less than twenty intervals (a rate above
 * the limit, or a burst). A few gaps shorter than 1/RATE are the scheduling of a loaded
 * machine (the mock may even stamp two requests in one turn of its loop); a limiter that
 * lets two clients each send at RATE makes every other gap short, and twenty gaps take
 * half a second. */
static void assert_spaced(const uint64_t *us, size_t n)
{
    unsigned short_gaps = 0;
    double min_gap = 1e12;
    for (size_t k = 1; k < n; k++) {
        double gap = (double)(us[k] - us[k - 1]);
        short_gaps += gap < NOMINAL_US - SLACK_US;
        min_gap = gap < min_gap ? gap : min_gap;
    }
    cr_log_info("%zu arrivals, smallest gap %.1f ms, %u short", n, min_gap / 1000, short_gaps);
    cr_assert_leq(short_gaps, 5, "%u of %zu gaps under %.0f ms at %.0f/s", short_gaps, n - 1,
                  (NOMINAL_US - SLACK_US) / 1000, RATE);
    for (size_t k = 20; k < n; k++) {
        double span = (double)(us[k] - us[k - 20]);
        cr_assert_geq(span, 20 * NOMINAL_US - 10 * SLACK_US,
                      "arrivals %zu..%zu: twenty gaps in %.1f ms at %.0f/s", k - 20, k, span / 1000,
                      RATE);
    }
}

/* And that they used the budget: at least 95 % of RATE over their span. */
static void assert_busy(const uint64_t *us, size_t n)
{
    double span_s = (double)(us[n - 1] - us[0]) / 1e6;
    double rate = (double)(n - 1) / span_s;
    cr_log_info("%zu arrivals in %.2f s: %.2f/s", n, span_s, rate);
    cr_assert_geq(rate, 0.95 * RATE, "%.2f requests/s at a limit of %.0f/s", rate, RATE);
}

Test(pds_rate, two_clients_share_the_rate_against_the_mock)
{
    enum { EACH = 30 };
    struct outcome warm[2] = {{0}}, o[2 * EACH] = {{0}};
    uint64_t us[MAX_REQS];
    start_redis();
    start_pds();
    new_client(0, true, RATE);
    new_client(1, true, RATE);
    /* Open the connections first, so that arrivals measure the limiter. */
    search(0, "warm-0", PDS_PRIORITY_TRACE, &warm[0]);
    search(1, "warm-1", PDS_PRIORITY_TRACE, &warm[1]);
    wait_outcomes(warm, 2, 5000);
    clear_arrivals();

    /* One instance's single traces, the other's bulk rows. */
    for (size_t i = 0; i < EACH; i++) {
        search(0, NULL, PDS_PRIORITY_TRACE, &o[i]);
        search(1, NULL, PDS_PRIORITY_BULK, &o[EACH + i]);
    }
    wait_outcomes(o, 2 * EACH, 10000);
    size_t n = arrivals(us, NULL, MAX_REQS);
    cr_assert_eq(n, 2 * EACH);
    assert_spaced(us, n);
    assert_busy(us, n);
    cr_assert_eq(pds_client_requests_sent(F.pc[0]), EACH + 1);
    cr_assert_eq(pds_client_requests_sent(F.pc[1]), EACH + 1);
    cr_assert_float_eq(metrics_value(F.metrics, FALLBACK, NULL), 0.0, 1e-9);
}

static bool sent_at_least(void *arg)
{
    return pds_client_requests_sent(F.pc[0]) >= *(const uint64_t *)arg;
}

/* Bulk rows queued, then a trace: it goes with the next slot, ahead of them. At 5/s the
 * test has 200 ms to see the first row go and queue the trace. */
static void trace_overtakes_queued_bulk(bool shared)
{
    struct outcome o[6] = {{0}};
    uint64_t us[MAX_REQS], one = 1;
    char cid[MAX_REQS][64], name[16];
    start_redis();
    start_pds();
    new_client(0, shared, 5);
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "bulk-%d", i);
        search(0, name, PDS_PRIORITY_BULK, &o[i]);
    }
    cr_assert(run_loop_until(&F.loop, sent_at_least, &one, 5000));
    search(0, "trace-0", PDS_PRIORITY_TRACE, &o[5]);
    cr_assert_eq(pds_client_requests_sent(F.pc[0]), 1, "the test was too slow to queue it");
    wait_outcomes(o, 6, 5000);
    size_t n = arrivals(us, cid, MAX_REQS);
    cr_assert_eq(n, 6);
    const char *want[] = {"bulk-0", "trace-0", "bulk-1", "bulk-2", "bulk-3", "bulk-4"};
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(cid[i], want[i], "request %zu was %s", i, cid[i]);
}

Test(pds_rate, a_trace_goes_before_queued_bulk_rows)
{
    trace_overtakes_queued_bulk(true);
}

Test(pds_rate, a_trace_goes_before_queued_bulk_rows_without_redis)
{
    trace_overtakes_queued_bulk(false);
}

static bool is_gone(void *arg)
{
    return ((const struct outcome *)arg)->left;
}

static bool time_reached(void *arg)
{
    return uv_hrtime() >= *(const uint64_t *)arg;
}

/* A slot whose request went away before its time is kept for the next request, but not
 * past half an interval: used later, it would crowd the slot after it, here another
 * instance's. */
Test(pds_rate, a_slot_left_unused_is_not_used_late)
{
    struct outcome o[3] = {{0}};
    uint64_t us[MAX_REQS], one = 1;
    start_redis();
    start_pds();
    new_client(0, true, RATE);
    new_limiter(0, 1);
    search(0, "first", PDS_PRIORITY_TRACE, &o[0]);
    struct pds_call call = {.correlation_id = "left", .gone = is_gone};
    cr_assert_eq(pds_client_search(F.pc[0], QUERY, &call, on_done, &o[1]), 0);
    cr_assert(run_loop_until(&F.loop, sent_at_least, &one, 5000));
    /* The second request holds the next slot; its caller leaves before it comes. */
    o[1].left = true;
    struct pds_rate_slot other = reserve(F.pr[0], PDS_PRIORITY_TRACE);
    cr_assert(other.reserved);
    uint64_t late = other.at_ns - 10 * 1000000ull; /* 40 ms after the held slot */
    cr_assert(run_loop_until(&F.loop, time_reached, &late, 5000));
    search(0, "late", PDS_PRIORITY_TRACE, &o[2]);
    wait_outcomes(o + 2, 1, 5000);
    cr_assert(o[0].done && o[1].done);
    cr_assert_eq(o[1].status, UV_ECANCELED);
    cr_assert_eq(pds_client_requests_sent(F.pc[0]), 2, "the request that left was sent");
    cr_assert_eq(arrivals(us, NULL, MAX_REQS), 2);
    double after = (double)us[1] - (double)other.redis_us;
    cr_assert_geq(after, (double)interval_us() - SLACK_US,
                  "sent %.1f ms after another instance's slot", after / 1000);
}

/* Redis killed mid-run: the client goes on at its own rate, no faster, and shares again
 * once Redis is back. */
Test(pds_rate, redis_killed_mid_run_falls_back_to_the_local_rate)
{
    enum { N = 60 };
    struct outcome warm = {0}, o[N] = {{0}};
    uint64_t us[MAX_REQS], mark;
    start_redis();
    start_pds();
    new_client(0, true, RATE);
    search(0, "warm", PDS_PRIORITY_TRACE, &warm);
    wait_outcomes(&warm, 1, 5000);
    clear_arrivals();

    for (size_t i = 0; i < N; i++)
        search(0, NULL, i % 2 ? PDS_PRIORITY_BULK : PDS_PRIORITY_TRACE, &o[i]);
    mark = 1 + 15;
    cr_assert(run_loop_until(&F.loop, sent_at_least, &mark, 5000));
    cr_assert_eq(redis_server_kill(&F.st.redis), 0);
    mark = 1 + 35;
    cr_assert(run_loop_until(&F.loop, sent_at_least, &mark, 5000));
    cr_assert_gt(metrics_value(F.metrics, FALLBACK, NULL), 5.0, "no request went by the bucket");
    cr_assert_eq(redis_server_restart(&F.st.redis), 0);
    wait_outcomes(o, N, 10000);

    size_t n = arrivals(us, NULL, MAX_REQS);
    cr_assert_eq(n, N);
    assert_spaced(us, n);
    cr_assert_eq(log_count(MSG_AWAY), 1);
    cr_assert_eq(log_count(MSG_BACK), 1, "the client did not share again once Redis was back");
}
