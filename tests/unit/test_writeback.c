#include "pdstrace/writeback.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <dirent.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/err.h"
#include "pdstrace/http_client.h"
#include "pdstrace/http_server.h"
#include "pdstrace/log.h"
#include "pdstrace/metrics.h"
#include "pdstrace/redis_conn.h"
#include "proc.h"
#include "redis_server.h"
#include "stack.h"
#include "test_util.h"

/* The queue and the worker against a real redis-server (with its append-only file, as in
 * production) and the mock case system as a process. */
TestSuite(writeback, .timeout = 60);

#define SECRET     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define CASE_TOKEN "case-token-0123456789"
#define PREFIX     "wbt:"

static const char *const numbers[] = {"9000000009", "9000000017", "9000000025", "9000000033",
                                      "9000000041", "9000000068", "9000000076", "9000000084"};

struct fixture {
    struct redis_server rs;
    struct proc mock;
    uv_loop_t loop;
    struct redis_conn *rc;
    struct http_client *http;
    struct metrics *metrics;
    struct writeback_queue *q;
    struct writeback_config cfg;
    char base_url[64];
    redisContext *direct; /* a blocking client to look at what Redis holds */
    char *log;            /* what the code under test logged */
    size_t log_len;
    FILE *log_stream;
};

struct worker_part {
    struct redis_conn *blocking;
    struct http_client *http;
    struct writeback_worker *w;
};

static void connect_conn(struct fixture *f, struct redis_conn **rc, unsigned timeout_ms)
{
    char url[128];
    struct redis_conn_config c = {.url = redis_server_url(&f->rs, url, sizeof(url)),
                                  .command_timeout_ms = timeout_ms};
    cr_assert_eq(redis_conn_new(rc, &f->loop, &c), 0);
    for (int i = 0; i < 300 && redis_conn_state(*rc) != REDIS_CONN_CONNECTED; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    cr_assert_eq(redis_conn_state(*rc), REDIS_CONN_CONNECTED);
}

static void setup_fixture(struct fixture *f, const char *const mock_args[])
{
    memset(f, 0, sizeof(*f));
    const char *args[16] = {"--token", CASE_TOKEN};
    size_t n = 2;
    for (size_t i = 0; mock_args != NULL && mock_args[i] != NULL && n < 15; i++)
        args[n++] = mock_args[i];
    cr_assert_eq(stack_start_case(&f->mock, args), 0);
    cr_assert_eq(redis_server_start_aof(&f->rs), 0);
    f->log_stream = open_memstream(&f->log, &f->log_len);
    log_set_stream(f->log_stream);
    uv_loop_init(&f->loop);
    connect_conn(f, &f->rc, 0);
    cr_assert_eq(http_client_new(&f->http, &f->loop), 0);
    cr_assert_eq(metrics_new(&f->metrics), 0);
    snprintf(f->base_url, sizeof(f->base_url), "http://127.0.0.1:%d/", f->mock.port);
    f->cfg = (struct writeback_config){.prefix = PREFIX,
                                       .base_url = f->base_url,
                                       .token = CASE_TOKEN,
                                       .timeout_ms = 2000,
                                       .concurrency = 4,
                                       .retry_initial_ms = 50,
                                       .retry_max_ms = 200,
                                       .reclaim_idle_ms = 60000,
                                       .max_age_s = 600,
                                       .metrics = f->metrics};
    cr_assert_eq(writeback_queue_new(&f->q, f->rc, SECRET, strlen(SECRET), &f->cfg), 0);
    f->direct = redisConnect("127.0.0.1", f->rs.port);
    cr_assert(f->direct != NULL && f->direct->err == 0);
}

static void start_worker(struct fixture *f, struct worker_part *p, writeback_withheld_fn *fn,
                         void *arg)
{
    memset(p, 0, sizeof(*p));
    connect_conn(f, &p->blocking, WRITEBACK_READ_BLOCK_MS + 1000);
    cr_assert_eq(http_client_new(&p->http, &f->loop), 0);
    cr_assert_eq(
        writeback_worker_new(&p->w, &f->loop, p->http, p->blocking, f->q, fn, arg, &f->cfg), 0);
}

/* As a crash would: nothing is acknowledged, the connections go. */
static void stop_worker(struct worker_part *p)
{
    writeback_worker_free(p->w);
    http_client_free(p->http);
    redis_conn_free(p->blocking);
    p->w = NULL;
}

static void teardown_fixture(struct fixture *f)
{
    redis_conn_free(f->rc);
    http_client_free(f->http);
    writeback_queue_free(f->q);
    cr_assert_eq(close_loop(&f->loop), 0);
    metrics_free(f->metrics);
    redisFree(f->direct);
    redis_server_destroy(&f->rs);
    proc_stop(&f->mock, SIGTERM, 5000);
    log_set_stream(NULL);
    fclose(f->log_stream);
    free(f->log);
}

/* ---- helpers ---- */

struct done {
    bool done;
    int status;
};

static void on_status(int status, void *arg)
{
    struct done *d = arg;
    d->done = true;
    d->status = status;
}

static void trace_id_for(int i, char out[37])
{
    snprintf(out, 37, "00000000-0000-4000-8000-%012d", i);
}

static void enqueue(struct fixture *f, const char *case_id, const char *nhs, int i)
{
    struct writeback_item it = {.score = 0.97, .traced_at_ms = 1796206500000ull};
    trace_id_for(i, it.trace_id);
    snprintf(it.case_id, sizeof(it.case_id), "%s", case_id);
    snprintf(it.nhs_number, sizeof(it.nhs_number), "%s", nhs);
    struct done d = {0};
    cr_assert_eq(writeback_enqueue(f->q, &it, on_status, &d), 0);
    cr_assert(run_until(&f->loop, &d.done, 3000));
    cr_assert_eq(d.status, 0);
}

struct client_wait {
    int port;
    const char *case_id;
    char trace_id[37];
};

static bool client_has(void *arg)
{
    struct client_wait *c = arg;
    json_t *j = stack_case_client(c->port, c->case_id);
    const char *t = json_string_value(json_object_get(j, "trace_id"));
    bool ok = t != NULL && strcmp(t, c->trace_id) == 0;
    json_decref(j);
    return ok;
}

static void wait_delivered(struct fixture *f, const char *case_id, int i, unsigned ms)
{
    struct client_wait c = {f->mock.port, case_id, ""};
    trace_id_for(i, c.trace_id);
    cr_assert(run_loop_until(&f->loop, client_has, &c, ms), "%s not delivered", case_id);
}

static long long redis_int(struct fixture *f, const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(f->direct, fmt, arg);
    long long n = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return n;
}

static bool queue_empty(void *arg)
{
    struct fixture *f = arg;
    return redis_int(f, "ZCARD %s", PREFIX "writeback:pending") == 0 &&
           redis_int(f, "XLEN %s", PREFIX "writeback") == 0;
}

static int log_count(struct fixture *f, const char *needle)
{
    fflush(f->log_stream);
    int n = 0;
    for (const char *p = f->log; p != NULL && (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

struct backlog_got {
    bool done;
    int status;
    struct writeback_backlog b;
    struct writeback_dead dead[8];
};

static void on_backlog(int status, const struct writeback_backlog *b, void *arg)
{
    struct backlog_got *g = arg;
    g->done = true;
    g->status = status;
    if (b == NULL)
        return;
    g->b = *b;
    g->b.n_dead = b->n_dead < 8 ? b->n_dead : 8;
    memcpy(g->dead, b->dead, g->b.n_dead * sizeof(*b->dead));
    g->b.dead = g->dead;
}

static struct backlog_got backlog(struct fixture *f)
{
    struct backlog_got g = {0};
    cr_assert_eq(writeback_backlog(f->q, on_backlog, &g), 0);
    cr_assert(run_until(&f->loop, &g.done, 3000));
    cr_assert_eq(g.status, 0);
    return g;
}

static bool has_dead(void *arg)
{
    struct fixture *f = arg;
    return redis_int(f, "HLEN %s", PREFIX "writeback:dead") > 0;
}

static double delivered_metric(struct fixture *f, const char *result)
{
    char labels[48];
    snprintf(labels, sizeof(labels), "result=\"%s\"", result);
    return metrics_value(f->metrics, "pdstrace_writeback_deliveries_total", labels);
}

/* ---- delivery ---- */

Test(writeback, delivered_once_with_the_contract_headers_and_body)
{
    struct fixture f;
    struct worker_part w;
    setup_fixture(&f, NULL);
    start_worker(&f, &w, NULL, NULL);
    enqueue(&f, "LAS-000123", numbers[0], 1);
    wait_delivered(&f, "LAS-000123", 1, 5000);
    cr_assert(run_loop_until(&f.loop, queue_empty, &f, 3000));

    json_t *c = stack_case_client(f.mock.port, "LAS-000123");
    cr_assert_str_eq(json_string_value(json_object_get(c, "nhs_number")), numbers[0]);
    cr_assert_str_eq(json_string_value(json_object_get(c, "nhs_number_status")), "01");
    cr_assert_str_eq(json_string_value(json_object_get(c, "traced_at")), "2026-12-02T10:15:00Z");
    cr_assert_float_eq(json_number_value(json_object_get(c, "score")), 0.97, 1e-9);
    cr_assert_eq(json_integer_value(json_object_get(c, "writes")), 1);
    json_decref(c);
    /* The mock checked the token and Content-Type; the key is the trace id. */
    json_t *log = stack_case_admin(f.mock.port, "GET", "/_admin/requests", NULL);
    json_t *r0 = json_array_get(json_object_get(log, "requests"), 0);
    cr_assert_eq(json_integer_value(json_object_get(log, "count")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(r0, "method")), "PUT");
    cr_assert_str_eq(json_string_value(json_object_get(r0, "path")),
                     "/clients/LAS-000123/nhs-number");
    cr_assert_str_eq(json_string_value(json_object_get(r0, "idempotency_key")),
                     "00000000-0000-4000-8000-000000000001");
    cr_assert_str_eq(json_string_value(json_object_get(r0, "outcome")), "delivered");
    json_decref(log);
    cr_assert_eq(stack_case_stat(f.mock.port, "duplicates"), 0);
    cr_assert_eq(log_count(&f, "\"event\":\"writeback_delivered\""), 1);
    cr_assert_eq(log_count(&f, numbers[0]), 0, "the log holds the number");
    cr_assert_float_eq(delivered_metric(&f, "delivered"), 1, 1e-9);
    stop_worker(&w);
    teardown_fixture(&f);
}

Test(writeback, enqueue_refuses_a_bad_item)
{
    struct fixture f;
    setup_fixture(&f, NULL);
    struct writeback_item it = {.score = 0.97};
    trace_id_for(1, it.trace_id);
    snprintf(it.case_id, sizeof(it.case_id), "LAS 1");
    snprintf(it.nhs_number, sizeof(it.nhs_number), "%s", numbers[0]);
    cr_assert_eq(writeback_enqueue(f.q, &it, on_status, NULL), ERR_INVALID_INPUT);
    snprintf(it.case_id, sizeof(it.case_id), "LAS-1");
    snprintf(it.nhs_number, sizeof(it.nhs_number), "9000000001");
    cr_assert_eq(writeback_enqueue(f.q, &it, on_status, NULL), ERR_INVALID_INPUT);
    teardown_fixture(&f);
}

Test(writeback, case_system_down_for_a_while_then_every_one_arrives)
{
    struct fixture f;
    struct worker_part w;
    setup_fixture(&f, NULL);
    start_worker(&f, &w, NULL, NULL);
    cr_assert_eq(stack_case_faults(f.mock.port, "{\"refuse_ms\":1500}"), 0);
    for (int i = 0; i < 3; i++) {
        char case_id[16];
        snprintf(case_id, sizeof(case_id), "DOWN-%d", i);
        enqueue(&f, case_id, numbers[i], 10 + i);
    }
    for (int i = 0; i < 3; i++) {
        char case_id[16];
        snprintf(case_id, sizeof(case_id), "DOWN-%d", i);
        wait_delivered(&f, case_id, 10 + i, 10000);
    }
    cr_assert(run_loop_until(&f.loop, queue_empty, &f, 3000));
    cr_assert_gt(delivered_metric(&f, "retry"), 0);
    cr_assert_eq(stack_case_stat(f.mock.port, "deliveries"), 3);
    cr_assert_eq(stack_case_stat(f.mock.port, "duplicates"), 0);
    stop_worker(&w);
    teardown_fixture(&f);
}

Test(writeback, a_503_is_retried_with_backoff_until_delivered)
{
    struct fixture f;
    struct worker_part w;
    setup_fixture(&f, NULL);
    cr_assert_eq(stack_case_faults(f.mock.port, "{\"fail_next\":3,\"fail_status\":503}"), 0);
    start_worker(&f, &w, NULL, NULL);
    enqueue(&f, "RETRY-1", numbers[1], 20);
    wait_delivered(&f, "RETRY-1", 20, 10000);
    cr_assert(run_loop_until(&f.loop, queue_empty, &f, 3000));
    cr_assert_float_eq(delivered_metric(&f, "retry"), 3, 1e-9);
    cr_assert_eq(stack_case_stat(f.mock.port, "requests"), 4);
    cr_assert_eq(log_count(&f, "\"attempts\":4"), 1, "the delivery was the fourth attempt");
    cr_assert_eq(redis_int(&f, "ZCARD %s", PREFIX "writeback:delayed"), 0);
    stop_worker(&w);
    teardown_fixture(&f);
}

/* ---- Retry-After, against a case system of our own on the loop ---- */

struct fake_case {
    struct http_server *srv;
    unsigned requests;
    uint64_t at_ns[4];
};

static void fake_handler(struct http_exchange *x, void *arg)
{
    struct fake_case *fc = arg;
    if (fc->requests < 4)
        fc->at_ns[fc->requests] = uv_hrtime();
    if (fc->requests++ == 0) {
        http_exchange_add_header(x, "Retry-After", "1");
        http_exchange_respond(x, 503, "application/json", "{}", 2);
        return;
    }
    http_exchange_respond(x, 200, "application/json", "{}", 2);
}

static bool fake_got_two(void *arg)
{
    return ((struct fake_case *)arg)->requests >= 2;
}

Test(writeback, retry_after_is_honoured)
{
    struct fixture f;
    struct worker_part w;
    struct fake_case fc = {0};
    setup_fixture(&f, NULL);
    struct http_server_config sc = {.host = "127.0.0.1",
                                    .max_header_bytes = 16384,
                                    .max_body_bytes = 65536,
                                    .handler = fake_handler,
                                    .handler_arg = &fc};
    cr_assert_eq(http_server_new(&fc.srv, &f.loop, &sc), 0);
    snprintf(f.base_url, sizeof(f.base_url), "http://127.0.0.1:%d", http_server_port(fc.srv));
    start_worker(&f, &w, NULL, NULL);
    enqueue(&f, "LATER-1", numbers[2], 30);
    cr_assert(run_loop_until(&f.loop, fake_got_two, &fc, 5000));
    /* Backoff alone would be at most retry_max_ms (200 ms). */
    double gap = (double)(fc.at_ns[1] - fc.at_ns[0]) / 1e9;
    cr_assert_geq(gap, 0.99, "retried after %.3f s", gap);
    cr_assert_lt(gap, 2.5, "retried after %.3f s", gap);
    cr_assert(run_loop_until(&f.loop, queue_empty, &f, 3000));
    stop_worker(&w);
    http_server_free(fc.srv);
    teardown_fixture(&f);
}

/* ---- dead letters ---- */

Test(writeback, a_422_is_a_dead_letter_at_once_and_a_retry_delivers_it)
{
    struct fixture f;
    struct worker_part w;
    setup_fixture(&f, NULL);
    cr_assert_eq(stack_case_faults(f.mock.port, "{\"reject_cases\":[\"BAD-1\"]}"), 0);
    start_worker(&f, &w, NULL, NULL);
    enqueue(&f, "BAD-1", numbers[3], 40);
    cr_assert(run_loop_until(&f.loop, has_dead, &f, 5000));
    struct backlog_got g = backlog(&f);
    cr_assert_eq(g.b.depth, 0);
    cr_assert_eq(g.b.n_dead, 1);
    cr_assert_str_eq(g.dead[0].trace_id, "00000000-0000-4000-8000-000000000040");
    cr_assert_str_eq(g.dead[0].case_id, "BAD-1");
    cr_assert_eq(g.dead[0].attempts, 1);
    cr_assert_str_eq(g.dead[0].last_error, "HTTP 422");
    cr_assert_eq(strlen(g.dead[0].dead_at), 20);
    cr_assert_eq(stack_case_stat(f.mock.port, "requests"), 1);
    cr_assert_eq(log_count(&f, "\"event\":\"writeback_dead\""), 1);

    struct done d = {0};
    cr_assert_eq(writeback_retry(f.q, "00000000-0000-4000-8000-000000000099", on_status, &d), 0);
    cr_assert(run_until(&f.loop, &d.done, 3000));
    cr_assert_eq(d.status, ERR_NOT_FOUND);
    cr_assert_eq(stack_case_faults(f.mock.port, "{\"reject_cases\":[]}"), 0);
    d = (struct done){0};
    cr_assert_eq(writeback_retry(f.q, "00000000-0000-4000-8000-000000000040", on_status, &d), 0);
    cr_assert(run_until(&f.loop, &d.done, 3000));
    cr_assert_eq(d.status, 0);
    wait_delivered(&f, "BAD-1", 40, 5000);
    cr_assert(run_loop_until(&f.loop, queue_empty, &f, 3000));
    g = backlog(&f);
    cr_assert_eq(g.b.n_dead, 0);
    cr_assert_eq(g.b.depth, 0);
    stop_worker(&w);
    teardown_fixture(&f);
}

Test(writeback, past_max_age_a_failing_write_back_is_a_dead_letter)
{
    struct fixture f;
    struct worker_part w;
    setup_fixture(&f, NULL);
    cr_assert_eq(stack_case_faults(f.mock.port, "{\"fail_rate\":1,\"fail_status\":503}"), 0);
    f.cfg.max_age_s = 1;
    start_worker(&f, &w, NULL, NULL);
    enqueue(&f, "OLD-1", numbers[4], 50);
    cr_assert(run_loop_until(&f.loop, has_dead, &f, 8000));
    struct backlog_got g = backlog(&f);
    cr_assert_eq(g.b.n_dead, 1);
    cr_assert_str_eq(g.dead[0].last_error, "HTTP 503");
    cr_assert_gt(g.dead[0].attempts, 1);
    cr_assert_eq(g.b.depth, 0);
    cr_assert_eq(g.b.retrying, 0);
    cr_assert_float_eq(delivered_metric(&f, "dead"), 1, 1e-9);
    stop_worker(&w);
    teardown_fixture(&f);
}

/* ---- objections ---- */

struct objection_stub {
    int answer_for_obj; /* what the check says for case OBJ-1 */
    unsigned asked;
};

static int withheld(void *arg, const char *case_id, const char *nhs)
{
    struct objection_stub *s = arg;
    s->asked++;
    cr_assert_eq(strlen(nhs), 10);
    return strcmp(case_id, "OBJ-1") == 0 ? s->answer_for_obj : 0;
}

Test(writeback, an_objection_drops_it_unsent_with_an_audit_line)
{
    struct fixture f;
    struct worker_part w;
    struct objection_stub stub = {1, 0};
    setup_fixture(&f, NULL);
    start_worker(&f, &w, withheld, &stub);
    enqueue(&f, "OBJ-1", numbers[5], 60);
    enqueue(&f, "FINE-1", numbers[6], 61);
    wait_delivered(&f, "FINE-1", 61, 5000);
    cr_assert(run_loop_until(&f.loop, queue_empty, &f, 3000));
    cr_assert_null(stack_case_client(f.mock.port, "OBJ-1"));
    cr_assert_eq(stack_case_stat(f.mock.port, "requests"), 1);
    cr_assert_eq(log_count(&f, "\"event\":\"writeback_withheld\""), 1);
    cr_assert_eq(log_count(&f, "\"case_id\":\"OBJ-1\""), 1);
    cr_assert_float_eq(delivered_metric(&f, "withheld"), 1, 1e-9);
    stop_worker(&w);
    teardown_fixture(&f);
}

static bool asked_often(void *arg)
{
    return ((struct objection_stub *)arg)->asked >= 4;
}

Test(writeback, an_objection_check_that_cannot_tell_neither_delivers_nor_drops)
{
    struct fixture f;
    struct worker_part w;
    struct objection_stub stub = {ERR_OBJECTIONS_UNAVAILABLE, 0};
    setup_fixture(&f, NULL);
    start_worker(&f, &w, withheld, &stub);
    enqueue(&f, "OBJ-1", numbers[7], 70);
    cr_assert(run_loop_until(&f.loop, asked_often, &stub, 5000));
    cr_assert_eq(stack_case_stat(f.mock.port, "requests"), 0);
    cr_assert_eq(redis_int(&f, "ZCARD %s", PREFIX "writeback:pending"), 1);
    stub.answer_for_obj = 0;
    wait_delivered(&f, "OBJ-1", 70, 5000);
    cr_assert_eq(log_count(&f, "writeback_withheld"), 0);
    stop_worker(&w);
    teardown_fixture(&f);
}

/* ---- several consumers ---- */

static long long pending_in_group(struct fixture *f)
{
    redisReply *r = redisCommand(f->direct, "XPENDING %s workers", PREFIX "writeback");
    long long n = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                          r->element[0]->type == REDIS_REPLY_INTEGER
                      ? r->element[0]->integer
                      : -1;
    freeReplyObject(r);
    return n;
}

static bool three_pending(void *arg)
{
    return pending_in_group(arg) == 3;
}

static bool three_delivered(void *arg)
{
    struct fixture *f = arg;
    return log_count(f, "\"event\":\"writeback_delivered\"") == 3;
}

Test(writeback, a_new_worker_reclaims_what_a_stopped_one_left_pending, .timeout = 60)
{
    struct fixture f;
    struct worker_part a, b;
    setup_fixture(&f, NULL);
    /* Slow answers keep the first worker's PUTs in flight when it goes. */
    cr_assert_eq(stack_case_faults(f.mock.port, "{\"latency_ms\":30000}"), 0);
    f.cfg.reclaim_idle_ms = 1000;
    start_worker(&f, &a, NULL, NULL);
    for (int i = 0; i < 3; i++) {
        char case_id[16];
        snprintf(case_id, sizeof(case_id), "RECL-%d", i);
        enqueue(&f, case_id, numbers[i], 80 + i);
    }
    cr_assert(run_loop_until(&f.loop, three_pending, &f, 5000));
    stop_worker(&a);
    cr_assert_eq(stack_case_faults(f.mock.port, "{\"latency_ms\":0}"), 0);
    uint64_t t0 = uv_hrtime();
    start_worker(&f, &b, NULL, NULL);
    for (int i = 0; i < 3; i++) {
        char case_id[16];
        snprintf(case_id, sizeof(case_id), "RECL-%d", i);
        wait_delivered(&f, case_id, 80 + i, 10000);
    }
    cr_assert(run_loop_until(&f.loop, three_delivered, &f, 5000));
    cr_assert_geq((double)(uv_hrtime() - t0) / 1e6, 500.0, "reclaimed before the entries idled");
    cr_assert(run_loop_until(&f.loop, queue_empty, &f, 3000));
    cr_assert_eq(pending_in_group(&f), 0);
    redisReply *r = redisCommand(f.direct, "XINFO CONSUMERS %s workers", PREFIX "writeback");
    cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, 2, "the new worker has a consumer name of its own");
    freeReplyObject(r);
    stop_worker(&b);
    teardown_fixture(&f);
}

static bool twenty_delivered(void *arg)
{
    struct fixture *f = arg;
    return stack_case_stat(f->mock.port, "deliveries") == 20 && queue_empty(f);
}

Test(writeback, two_workers_share_the_stream_and_deliver_each_once)
{
    struct fixture f;
    struct worker_part a, b;
    setup_fixture(&f, NULL);
    f.cfg.concurrency = 2;
    start_worker(&f, &a, NULL, NULL);
    start_worker(&f, &b, NULL, NULL);
    for (int i = 0; i < 20; i++) {
        char case_id[16];
        snprintf(case_id, sizeof(case_id), "PAIR-%d", i);
        enqueue(&f, case_id, numbers[i % 8], 100 + i);
    }
    cr_assert(run_loop_until(&f.loop, twenty_delivered, &f, 15000));
    cr_assert_eq(stack_case_stat(f.mock.port, "requests"), 20);
    cr_assert_eq(stack_case_stat(f.mock.port, "duplicates"), 0);
    cr_assert_eq(log_count(&f, "\"event\":\"writeback_delivered\""), 20);
    stop_worker(&a);
    stop_worker(&b);
    teardown_fixture(&f);
}

/* ---- the operator's figures ---- */

static bool figures_show_two(void *arg)
{
    struct fixture *f = arg;
    uint64_t depth;
    double oldest;
    writeback_queue_last_backlog(f->q, &depth, &oldest);
    return depth == 2 && oldest > 0;
}

Test(writeback, the_worker_refreshes_the_backlog_figures)
{
    struct fixture f;
    struct worker_part w;
    setup_fixture(&f, NULL);
    cr_assert_eq(stack_case_faults(f.mock.port, "{\"fail_rate\":1,\"fail_status\":503}"), 0);
    f.cfg.retry_initial_ms = 5000;
    f.cfg.retry_max_ms = 5000;
    start_worker(&f, &w, NULL, NULL);
    enqueue(&f, "FIG-1", numbers[0], 120);
    enqueue(&f, "FIG-2", numbers[1], 121);
    cr_assert(run_loop_until(&f.loop, figures_show_two, &f, 6000));
    cr_assert_float_eq(metrics_value(f.metrics, "pdstrace_writeback_queue_depth", NULL), 2, 1e-9);
    stop_worker(&w);
    teardown_fixture(&f);
}

/* ---- privacy ---- */

/* memmem is not POSIX. */
static bool holds(const char *data, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; data != NULL && i + n <= len; i++) {
        if (memcmp(data + i, needle, n) == 0)
            return true;
    }
    return false;
}

static bool file_holds(const char *path, const char *needle)
{
    size_t len = 0;
    char *data = read_file(path, &len);
    bool found = holds(data, len, needle);
    free(data);
    return found;
}

static bool dir_holds(const char *dir, const char *needle, int *files)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool found = false;
    char path[PATH_MAX + 256 + 2];
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%.*s/%s", PATH_MAX, dir, e->d_name);
        found = found || file_holds(path, needle);
        (*files)++;
    }
    if (d != NULL)
        closedir(d);
    return found;
}

static bool has_delayed(void *arg)
{
    return redis_int(arg, "ZCARD %s", PREFIX "writeback:delayed") > 0;
}

Test(writeback, neither_the_dump_nor_the_append_only_file_holds_a_number)
{
    struct fixture f;
    struct worker_part w;
    setup_fixture(&f, NULL);
    /* Something in every key: the dead letters, the delayed set and the stream. */
    cr_assert_eq(stack_case_faults(f.mock.port, "{\"reject_cases\":[\"PRIV-0\"]}"), 0);
    f.cfg.retry_initial_ms = 100000;
    f.cfg.retry_max_ms = 100000;
    start_worker(&f, &w, NULL, NULL);
    enqueue(&f, "PRIV-0", numbers[0], 130);
    cr_assert(run_loop_until(&f.loop, has_dead, &f, 5000));
    cr_assert_eq(stack_case_faults(f.mock.port, "{\"fail_next\":100}"), 0);
    enqueue(&f, "PRIV-1", numbers[1], 131);
    cr_assert(run_loop_until(&f.loop, has_delayed, &f, 5000));
    stop_worker(&w);
    enqueue(&f, "PRIV-9", numbers[7], 139);
    freeReplyObject(redisCommand(f.direct, "CONFIG SET rdbcompression no"));
    freeReplyObject(redisCommand(f.direct, "SAVE"));
    char path[600];
    int files = 0;
    snprintf(path, sizeof(path), "%s/dump.rdb", f.rs.dir);
    for (size_t i = 0; i < 8; i++)
        cr_assert(!file_holds(path, numbers[i]), "dump.rdb holds %s", numbers[i]);
    snprintf(path, sizeof(path), "%s/appendonlydir", f.rs.dir);
    for (size_t i = 0; i < 8; i++)
        cr_assert(!dir_holds(path, numbers[i], &files), "the AOF holds %s", numbers[i]);
    cr_assert_gt(files, 0);
    /* And the test can fail: the ids stored beside the numbers are there in clear. */
    snprintf(path, sizeof(path), "%s/dump.rdb", f.rs.dir);
    cr_assert(file_holds(path, "00000000-0000-4000-8000-000000000139"));
    cr_assert(file_holds(path, "00000000-0000-4000-8000-000000000131"));
    cr_assert(file_holds(path, "00000000-0000-4000-8000-000000000130"));
    teardown_fixture(&f);
}
