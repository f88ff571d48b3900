/* Durable write-back through the real binaries: pds-trace and redis-server (with its
 * append-only file) killed with SIGKILL while write-backs wait, the operator's routes over
 * HTTP, and readiness while the case system is down. Write-backs are put in the queue by
 * the test itself, through the queue's own API on a loop of its own with the service's
 * secret, exactly as a trace would queue them. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_util.h"
#include "pdstrace/redis_conn.h"
#include "pdstrace/writeback.h"
#include "stack.h"
#include "test_util.h"

TestSuite(writeback_service, .timeout = 120);

/* What tests/support/stack.c writes as the service's secret. */
#define SECRET     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define CASE_TOKEN "case-token-0123456789"
#define PREFIX     "pdstrace:"
#define N_ITEMS    5

static const char *const numbers[N_ITEMS] = {"9000000009", "9000000017", "9000000025", "9000000033",
                                             "9000000041"};

static struct stack st;
static struct proc mock;
static char token_path[160];

/* The mock case system with a token, the token file the service reads, and the two
 * settings that point the service at them (static: the stack keeps the pointers). */
static const char *const *start_case_system(void)
{
    static char base_env[96], token_env[200];
    static const char *env[] = {base_env, token_env, NULL};
    const char *args[] = {"--token", CASE_TOKEN, NULL};
    cr_assert_eq(stack_start_case(&mock, args), 0);
    snprintf(token_path, sizeof(token_path), "/tmp/pds-wb-token-%d", (int)getpid());
    FILE *f = fopen(token_path, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", CASE_TOKEN);
    fclose(f);
    snprintf(base_env, sizeof(base_env), "PDS_TRACE_CASE_BASE_URL=http://127.0.0.1:%d", mock.port);
    snprintf(token_env, sizeof(token_env), "PDS_TRACE_CASE_TOKEN_FILE=%s", token_path);
    return env;
}

static void start(void)
{
    const char *const *cs = start_case_system();
    static const char *env[8];
    const char *fast[] = {cs[0],
                          cs[1],
                          "PDS_TRACE_CASE_RETRY_INITIAL_MS=100",
                          "PDS_TRACE_CASE_RETRY_MAX_MS=500",
                          "PDS_TRACE_CASE_RECLAIM_IDLE_MS=1000",
                          "PDS_TRACE_CASE_TIMEOUT_MS=2000",
                          NULL};
    memcpy(env, fast, sizeof(fast));
    cr_assert_eq(stack_start_aof(&st, env), 0, "stack did not start; see %s", st.svc.log_path);
}

static void stop(void)
{
    stack_stop(&st);
    proc_stop(&mock, SIGTERM, 5000);
    unlink(token_path);
}

/* ---- queueing, as a trace would ---- */

struct enqueue_state {
    bool done;
    int status;
};

static void on_enqueued(int status, void *arg)
{
    struct enqueue_state *e = arg;
    e->done = true;
    e->status = status;
}

static void trace_id_for(int i, char out[37])
{
    snprintf(out, 37, "00000000-0000-4000-8000-%012d", i);
}

static void case_id_for(const char *tag, int i, char out[32])
{
    snprintf(out, 32, "%s-%d", tag, i);
}

static void enqueue_all(const char *tag, int n)
{
    uv_loop_t loop;
    struct redis_conn *rc;
    struct writeback_queue *q;
    char url[128];
    struct redis_conn_config c = {.url = redis_server_url(&st.redis, url, sizeof(url))};
    struct writeback_config cfg = {.prefix = PREFIX};
    uv_loop_init(&loop);
    cr_assert_eq(redis_conn_new(&rc, &loop, &c), 0);
    for (int i = 0; i < 300 && redis_conn_state(rc) != REDIS_CONN_CONNECTED; i++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(writeback_queue_new(&q, rc, SECRET, strlen(SECRET), &cfg), 0);
    for (int i = 0; i < n; i++) {
        struct writeback_item it = {.score = 0.97, .traced_at_ms = 1796206500000ull};
        struct enqueue_state e = {0};
        trace_id_for(i, it.trace_id);
        case_id_for(tag, i, it.case_id);
        snprintf(it.nhs_number, sizeof(it.nhs_number), "%s", numbers[i % N_ITEMS]);
        cr_assert_eq(writeback_enqueue(q, &it, on_enqueued, &e), 0);
        cr_assert(run_until(&loop, &e.done, 3000));
        cr_assert_eq(e.status, 0);
    }
    redis_conn_free(rc);
    writeback_queue_free(q);
    cr_assert_eq(close_loop(&loop), 0);
}

/* ---- conditions ---- */

struct arrivals {
    const char *tag;
    int n;
};

static bool all_arrived(void *arg)
{
    const struct arrivals *a = arg;
    for (int i = 0; i < a->n; i++) {
        char case_id[32], trace_id[37];
        case_id_for(a->tag, i, case_id);
        trace_id_for(i, trace_id);
        json_t *j = stack_case_client(mock.port, case_id);
        const char *t = json_string_value(json_object_get(j, "trace_id"));
        const char *nhs = json_string_value(json_object_get(j, "nhs_number"));
        bool ok = t != NULL && strcmp(t, trace_id) == 0 && nhs != NULL &&
                  strcmp(nhs, numbers[i % N_ITEMS]) == 0;
        json_decref(j);
        if (!ok)
            return false;
    }
    return true;
}

static void assert_all_arrive(const char *tag, int n, unsigned ms)
{
    struct arrivals a = {tag, n};
    cr_assert(wait_until(all_arrived, &a, ms), "not every write-back arrived; see %s",
              st.svc.log_path);
}

static long long redis_count(const char *fmt)
{
    redisContext *c = redisConnect("127.0.0.1", st.redis.port);
    redisReply *r = c != NULL && c->err == 0 ? redisCommand(c, fmt) : NULL;
    long long n = -1;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        n = r->integer;
    else if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
             r->element[0]->type == REDIS_REPLY_INTEGER)
        n = r->element[0]->integer; /* XPENDING's summary */
    freeReplyObject(r);
    redisFree(c);
    return n;
}

static bool read_by_worker(void *arg)
{
    return redis_count("XPENDING " PREFIX "writeback workers") >= *(const long long *)arg;
}

static bool queue_empty(void *arg)
{
    (void)arg;
    return redis_count("ZCARD " PREFIX "writeback:pending") == 0;
}

/* ---- crashes ---- */

Test(writeback_service, kill_9_of_the_service_then_restart_delivers_every_one)
{
    start();
    /* Answers that never come in time keep the deliveries in flight when it dies. */
    cr_assert_eq(stack_case_faults(mock.port, "{\"latency_ms\":60000}"), 0);
    enqueue_all("SVC", N_ITEMS);
    long long in_flight = 4; /* case.concurrency */
    cr_assert(wait_until(read_by_worker, &in_flight, 5000));
    cr_assert_eq(proc_stop(&st.svc, SIGKILL, 5000), 128 + SIGKILL);
    cr_assert_eq(stack_case_faults(mock.port, "{\"latency_ms\":0}"), 0);
    cr_assert_eq(stack_start_service(&st, NULL), 0);
    assert_all_arrive("SVC", N_ITEMS, 20000);
    cr_assert(wait_until(queue_empty, NULL, 5000));
    cr_assert_eq(redis_count("XPENDING " PREFIX "writeback workers"), 0);
    stop();
}

struct aof_probe {
    const char *dir;
    int n;
};

static bool file_holds(const char *path, const char *needle)
{
    size_t len = 0, k = strlen(needle);
    char *data = read_file(path, &len);
    bool found = false;
    for (size_t i = 0; data != NULL && !found && i + k <= len; i++)
        found = memcmp(data + i, needle, k) == 0;
    free(data);
    return found;
}

/* Whether the append-only file already holds every trace id: only then has Redis written
 * (and, within a second, fsynced) what it acknowledged. */
static bool aof_holds_all(void *arg)
{
    const struct aof_probe *p = arg;
    char dir[400], path[700];
    snprintf(dir, sizeof(dir), "%s/appendonlydir", p->dir);
    for (int i = 0; i < p->n; i++) {
        char trace_id[37];
        bool found = false;
        trace_id_for(i, trace_id);
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d != NULL && !found && (e = readdir(d)) != NULL) {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            found = e->d_name[0] != '.' && file_holds(path, trace_id);
        }
        if (d != NULL)
            closedir(d);
        if (!found)
            return false;
    }
    return true;
}

Test(writeback_service, kill_9_of_redis_then_restart_delivers_every_one)
{
    start();
    cr_assert_eq(stack_case_faults(mock.port, "{\"fail_rate\":1,\"fail_status\":503}"), 0);
    enqueue_all("RDS", N_ITEMS);
    struct aof_probe p = {st.redis.dir, N_ITEMS};
    cr_assert(wait_until(aof_holds_all, &p, 5000));
    cr_assert_eq(redis_server_kill(&st.redis), 0);
    cr_assert_eq(stack_case_faults(mock.port, "{\"fail_rate\":0}"), 0);
    cr_assert_eq(redis_server_restart(&st.redis), 0);
    assert_all_arrive("RDS", N_ITEMS, 20000);
    cr_assert(wait_until(queue_empty, NULL, 5000));
    stop();
}

/* ---- the operator's routes ---- */

static json_t *call(const char *method, const char *path, const char *key, long want)
{
    struct http_reply r;
    const char *h[] = {key != NULL ? stack_auth(key) : NULL, NULL};
    cr_assert_eq(http_do(st.svc.port, method, path, key != NULL ? h : NULL, NULL, &r), 0);
    cr_assert_eq(r.status, want, "%s %s: %ld %s", method, path, r.status, r.body);
    for (int i = 0; i < N_ITEMS; i++)
        cr_assert_null(strstr(r.body, numbers[i]), "%s holds an NHS number", path);
    json_t *j = json_loads(r.body, 0, NULL);
    http_reply_free(&r);
    return j;
}

static bool one_dead_letter(void *arg)
{
    (void)arg;
    json_t *j = call("GET", "/v1/writebacks", STACK_KEY_ADMIN, 200);
    bool ok = json_array_size(json_object_get(j, "dead_letters")) == 1;
    json_decref(j);
    return ok;
}

Test(writeback_service, dead_letters_are_listed_and_retried_over_http)
{
    start();
    cr_assert_eq(stack_case_faults(mock.port, "{\"reject_cases\":[\"API-0\"]}"), 0);
    json_decref(call("GET", "/v1/writebacks", NULL, 401));
    json_decref(call("GET", "/v1/writebacks", STACK_KEY_TRACE, 403));
    enqueue_all("API", 1);
    cr_assert(wait_until(one_dead_letter, NULL, 10000));
    json_t *j = call("GET", "/v1/writebacks", STACK_KEY_ADMIN, 200);
    json_t *d = json_array_get(json_object_get(j, "dead_letters"), 0);
    cr_assert_eq(json_integer_value(json_object_get(j, "depth")), 0);
    cr_assert(json_is_number(json_object_get(j, "oldest_pending_s")));
    cr_assert(json_is_integer(json_object_get(j, "retrying")));
    cr_assert_str_eq(json_string_value(json_object_get(d, "trace_id")),
                     "00000000-0000-4000-8000-000000000000");
    cr_assert_str_eq(json_string_value(json_object_get(d, "case_id")), "API-0");
    cr_assert_eq(json_integer_value(json_object_get(d, "attempts")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(d, "last_error")), "HTTP 422");
    cr_assert(json_is_string(json_object_get(d, "dead_at")));
    json_decref(j);

    json_decref(call("POST", "/v1/writebacks/00000000-0000-4000-8000-000000000099/retry",
                     STACK_KEY_ADMIN, 404));
    json_decref(call("POST", "/v1/writebacks/not-a-trace/retry", STACK_KEY_ADMIN, 404));
    cr_assert_eq(stack_case_faults(mock.port, "{\"reject_cases\":[]}"), 0);
    json_decref(call("POST", "/v1/writebacks/00000000-0000-4000-8000-000000000000/retry",
                     STACK_KEY_ADMIN, 202));
    assert_all_arrive("API", 1, 10000);
    cr_assert(wait_until(queue_empty, NULL, 5000));
    j = call("GET", "/v1/writebacks", STACK_KEY_ADMIN, 200);
    cr_assert_eq(json_array_size(json_object_get(j, "dead_letters")), 0);
    json_decref(j);
    cr_assert_gt(proc_log_count(&st.svc, "\"event\":\"writeback_delivered\""), 0);
    cr_assert_eq(proc_log_count(&st.svc, numbers[0]), 0, "the log holds the number");
    /* SIGTERM with the worker running: a clean exit (and no leak under ASan). */
    cr_assert_eq(stack_stop_service(&st), 0, "see %s", st.svc.log_path);
    stop();
}

static bool readyz_shows_backlog(void *arg)
{
    (void)arg;
    json_t *j = call("GET", "/readyz", NULL, 200);
    json_t *wb = json_object_get(json_object_get(j, "checks"), "writeback");
    bool ok = json_integer_value(json_object_get(wb, "depth")) == 2 &&
              json_real_value(json_object_get(wb, "oldest_pending_s")) > 0;
    json_decref(j);
    return ok;
}

Test(writeback_service, readyz_stays_ready_and_names_the_backlog_while_the_case_system_is_down)
{
    start();
    cr_assert_eq(proc_stop(&mock, SIGTERM, 5000), 0);
    enqueue_all("DOWN", 2);
    cr_assert(wait_until(readyz_shows_backlog, NULL, 10000));
    struct http_reply r;
    cr_assert_eq(http_do(st.svc.port, "GET", "/metrics", NULL, NULL, &r), 0);
    cr_assert_not_null(strstr(r.body, "pdstrace_writeback_queue_depth 2"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "pdstrace_writeback_deliveries_total{result=\"retry\"}"));
    http_reply_free(&r);
    stack_stop(&st);
    unlink(token_path);
}

/* ---- end to end: a trace queues, the worker delivers ---- */

static bool e2e_arrived(void *arg)
{
    const char *trace_id = arg;
    json_t *j = stack_case_client(mock.port, "LAS-E2E-1");
    const char *t = json_string_value(json_object_get(j, "trace_id"));
    const char *nhs = json_string_value(json_object_get(j, "nhs_number"));
    bool ok =
        t != NULL && strcmp(t, trace_id) == 0 && nhs != NULL && strcmp(nhs, "9000000009") == 0;
    json_decref(j);
    return ok;
}

static bool trace_answered(void *arg)
{
    json_t **out = arg;
    struct http_reply r;
    const char *h[] = {stack_auth(STACK_KEY_TRACE), "Content-Type: application/json", NULL};
    http_do(st.svc.port, "POST", "/v1/trace", h,
            "{\"case_id\":\"LAS-E2E-1\",\"family\":\"Smith\",\"given\":[\"Jane\"],"
            "\"birth_date\":\"2010-10-22\",\"gender\":\"female\",\"postcode\":\"LS1 6AE\"}",
            &r);
    if (r.status == 200)
        *out = json_loads(r.body, 0, NULL);
    http_reply_free(&r);
    return *out != NULL;
}

Test(writeback_service, a_matched_trace_with_a_case_id_arrives_in_the_case_system)
{
    const char *const *env = start_case_system();
    cr_assert_eq(stack_start_pds(&st, NULL, env), 0, "stack did not start; see %s",
                 st.svc.log_path);
    json_t *j = NULL;
    /* The objection registry loads after the service answers /readyz: until it is
     * confirmed current a trace gives no number (503), and queues nothing. */
    cr_assert(wait_until(trace_answered, &j, 10000), "see %s", st.svc.log_path);
    cr_assert_str_eq(json_string_value(json_object_get(j, "outcome")), "matched");
    cr_assert_str_eq(json_string_value(json_object_get(j, "write_back")), "queued");
    char trace_id[64];
    snprintf(trace_id, sizeof(trace_id), "%s", json_string_value(json_object_get(j, "trace_id")));
    json_decref(j);
    cr_assert(wait_until(e2e_arrived, trace_id, 10000), "see %s", st.svc.log_path);
    stop();
}
