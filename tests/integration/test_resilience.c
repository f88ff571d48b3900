/* The running service against a slow resolver and a Redis that wants credentials, and the
 * start-up checks of the Redis and listen settings. The slow resolver is
 * tests/support/slow_dns.c, preloaded into the service only: every host name takes
 * SLOW_DNS_MS to resolve, and "slow.test" is 127.0.0.1. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http_util.h"
#include "stack.h"
#include "test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define PDS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PDS_ASAN 1
#endif
#endif

#define SLOW_DNS_MS 2000
#define POLL_MS     3000
/* A lookup on the loop would hold /healthz for the whole SLOW_DNS_MS; this bound sits far
 * below that and far above what a loaded machine under ASan adds to one request. */
#define MAX_HEALTHZ_MS    400.0
#define FAILED_HEALTHZ_MS 10000.0

TestSuite(resilience, .timeout = 90);

static struct stack st;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Appends the shim to a service environment. An ASan binary insists on its runtime coming
 * first among the loaded libraries, which a preload breaks unless told otherwise. */
static size_t add_slow_dns(const char **env, size_t n)
{
    env[n++] = "LD_PRELOAD=" PDS_SLOW_DNS_LIB;
    env[n++] = "SLOW_DNS_MS=2000";
#ifdef PDS_ASAN
    env[n++] = "ASAN_OPTIONS=verify_asan_link_order=0";
#endif
    env[n] = NULL;
    return n;
}

/* GETs /healthz every 10 ms for ms and returns the slowest answer in ms; a request that
 * fails counts as FAILED_HEALTHZ_MS. */
static double slowest_healthz(unsigned ms, int *count)
{
    double end = now_ms() + ms, worst = 0;
    *count = 0;
    while (now_ms() < end) {
        struct http_reply r;
        double t0 = now_ms();
        int ok = http_do(st.svc.port, "GET", "/healthz", NULL, NULL, &r) == 0 && r.status == 200;
        double took = ok ? now_ms() - t0 : FAILED_HEALTHZ_MS;
        http_reply_free(&r);
        worst = took > worst ? took : worst;
        (*count)++;
        sleep_ms(10);
    }
    return worst;
}

static long readyz(void)
{
    struct http_reply r;
    long status = http_do(st.svc.port, "GET", "/readyz", NULL, NULL, &r) == 0 ? r.status : 0;
    http_reply_free(&r);
    return status;
}

/* Polls /readyz until it answers want, for up to limit_ms; true when it did. */
static bool ready_becomes(long want, unsigned limit_ms)
{
    double end = now_ms() + limit_ms;
    while (now_ms() < end) {
        if (readyz() == want)
            return true;
        sleep_ms(20);
    }
    return false;
}

/* Starts the stack on a numeric Redis URL (fast), then the service again with env. */
static void restart_service_with(const char *const env[])
{
    cr_assert_eq(stack_start(&st, NULL), 0, "stack did not start; see %s", st.svc.log_path);
    cr_assert_eq(stack_stop_service(&st), 0);
    cr_assert_eq(stack_start_service(&st, env), 0, "service did not start; see %s",
                 st.svc.log_path);
}

Test(resilience, healthz_fast_while_redis_resolves_slowly)
{
    static char url[96];
    static const char *env[8] = {url};
    add_slow_dns(env, 1);
    /* The Redis port is known only once the stack runs: the URL is filled in before the
     * service starts again. */
    cr_assert_eq(stack_start(&st, NULL), 0, "stack did not start; see %s", st.svc.log_path);
    cr_assert_eq(stack_stop_service(&st), 0);
    snprintf(url, sizeof(url), "PDS_TRACE_REDIS_URL=redis://slow.test:%d/0", st.redis.port);
    cr_assert_eq(stack_start_service(&st, env), 0, "see %s", st.svc.log_path);
    int n;
    double worst = slowest_healthz(POLL_MS, &n);
    fprintf(stderr, "slow Redis lookup, connecting: slowest /healthz %.1f ms (%d requests)\n",
            worst, n);
    cr_assert_lt(worst, MAX_HEALTHZ_MS, "/healthz took %.0f ms while connecting", worst);
    cr_assert(ready_becomes(200, 4 * SLOW_DNS_MS), "never connected through the slow resolver");
    /* A lost connection: every reconnect resolves the name again. */
    cr_assert_eq(redis_server_stop(&st.redis), 0);
    cr_assert_eq(redis_server_restart(&st.redis), 0);
    worst = slowest_healthz(POLL_MS, &n);
    fprintf(stderr, "slow Redis lookup, reconnecting: slowest /healthz %.1f ms (%d requests)\n",
            worst, n);
    cr_assert_lt(worst, MAX_HEALTHZ_MS, "/healthz took %.0f ms while reconnecting", worst);
    cr_assert(ready_becomes(200, 4 * SLOW_DNS_MS), "never reconnected through the slow resolver");
    stack_stop(&st);
}

#define JANE                                                                                       \
    "{\"case_id\":\"LAS-000123\",\"family\":\"Smith\",\"given\":[\"Jane\"],"                       \
    "\"birth_date\":\"2010-10-22\",\"gender\":\"female\",\"postcode\":\"LS1 6AE\","                \
    "\"purpose\":\"hospital discharge\"}"

/* Sends a trace without waiting for its answer; returns the connection. */
static int send_trace(void)
{
    char req[1024];
    int fd = tcp_connect(st.svc.port, 10000);
    cr_assert_geq(fd, 0);
    int n = snprintf(req, sizeof(req),
                     "POST /v1/trace HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     STACK_KEY_TRACE, strlen(JANE), JANE);
    cr_assert_eq(tcp_send(fd, req, (size_t)n), 0);
    return fd;
}

Test(resilience, healthz_fast_while_pds_lookup_times_out)
{
    static const char *env[8] = {
        "PDS_TRACE_PDS_BASE_URL=http://slow.test:1/personal-demographics/FHIR/R4",
        "PDS_TRACE_PDS_TIMEOUT_MS=200", "PDS_TRACE_PDS_MAX_ATTEMPTS=4"};
    add_slow_dns(env, 3);
    restart_service_with(env);
    cr_assert(ready_becomes(200, 5000));
    /* Each PDS attempt times out 200 ms into a 2 s lookup, and curl lets go of it. */
    int fd = send_trace();
    int n;
    double worst = slowest_healthz(POLL_MS, &n);
    close(fd);
    fprintf(stderr, "slow PDS lookup: slowest /healthz %.1f ms (%d requests)\n", worst, n);
    cr_assert_lt(worst, MAX_HEALTHZ_MS, "/healthz took %.0f ms while a PDS lookup was abandoned",
                 worst);
    stack_stop(&st);
}

/* ---- Redis credentials, end to end ---- */

#define ALICE_PASSWORD "alice-secret"

/* Replaces the stack's Redis by one that wants a password and knows an ACL user. */
static void start_with_auth_redis(void)
{
    static const char *const conf[] = {"requirepass default-secret",
                                       "user alice on >" ALICE_PASSWORD " ~* +@all", NULL};
    cr_assert_eq(stack_start(&st, NULL), 0, "stack did not start; see %s", st.svc.log_path);
    cr_assert_eq(stack_stop_service(&st), 0);
    redis_server_destroy(&st.redis);
    cr_assert_eq(redis_server_start_conf(&st.redis, conf), 0);
}

static void start_service_url(const char *userinfo)
{
    static char url[160];
    static const char *env[2] = {url, NULL};
    snprintf(url, sizeof(url), "PDS_TRACE_REDIS_URL=redis://%s@127.0.0.1:%d/1", userinfo,
             st.redis.port);
    cr_assert_eq(stack_start_service(&st, env), 0, "see %s", st.svc.log_path);
}

Test(resilience, redis_acl_user_and_password)
{
    start_with_auth_redis();
    start_service_url("alice:wrong-secret");
    cr_assert_not(ready_becomes(200, 1500), "ready with a wrong password");
    cr_assert_eq(readyz(), 503);
    cr_assert_eq(proc_log_count(&st.svc, "wrong-secret"), 0, "the password was logged");
    cr_assert_eq(stack_stop_service(&st), 0);
    start_service_url("alice:" ALICE_PASSWORD);
    cr_assert(ready_becomes(200, 3000), "not ready as alice; see %s", st.svc.log_path);
    cr_assert_eq(stack_stop_service(&st), 0);
    start_service_url(":default-secret");
    cr_assert(ready_becomes(200, 3000), "not ready with the password; see %s", st.svc.log_path);
    cr_assert_eq(proc_log_count(&st.svc, ALICE_PASSWORD), 0, "the password was logged");
    stack_stop(&st);
}

/* ---- settings refused at start-up: exit 2, one line naming the setting ---- */

static void assert_exits_2_naming(const char *const env[], const char *name, const char *secret)
{
    struct proc p;
    const char *argv[] = {PDS_BINARY_DIR "/pds-trace", "serve", NULL};
    cr_assert_eq(proc_spawn(&p, argv, env), 0);
    cr_assert_eq(proc_wait(&p, 5000), 2);
    char *log = proc_log(&p);
    cr_assert(strstr(log, name) != NULL, "%s", log);
    cr_assert_eq(strchr(log, '\n'), log + strlen(log) - 1, "more than one line: %s", log);
    cr_assert(secret == NULL || strstr(log, secret) == NULL, "the password shows: %s", log);
    free(log);
    unlink(p.log_path);
}

Test(resilience, bad_redis_url_exits_2_naming_it)
{
    const char *db[] = {"PDS_TRACE_LISTEN=127.0.0.1:0",
                        "PDS_TRACE_REDIS_URL=redis://:hunter2@127.0.0.1:6379/70000", NULL};
    assert_exits_2_naming(db, "PDS_TRACE_REDIS_URL (redis.url)", "hunter2");
    const char *port[] = {"PDS_TRACE_LISTEN=127.0.0.1:0",
                          "PDS_TRACE_REDIS_URL=redis://127.0.0.1:99999/0", NULL};
    assert_exits_2_naming(port, "PDS_TRACE_REDIS_URL (redis.url)", NULL);
}

Test(resilience, listen_host_name_exits_2_naming_it)
{
    const char *env[] = {"PDS_TRACE_LISTEN=localhost:8080", NULL};
    assert_exits_2_naming(env, "PDS_TRACE_LISTEN (listen)", NULL);
}
