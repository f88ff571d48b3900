/* The mock case system as a process over real HTTP: writes recorded and visible, duplicates
 * by Idempotency-Key, bearer tokens, refused bodies naming their field, every fault of the
 * admin API (next N failures, a seeded failure rate, 422 for a case, latency, refused and
 * dropped connections), reset, flags and shutdown. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http_util.h"
#include "proc.h"
#include "stack.h"
#include "test_util.h"

#define TOKEN "case-token-0123456789"
#define KEY1  "0b6f1d1e-7c1a-4f43-9f0e-3c2d8a1b5e77"
#define KEY2  "5a8d2c4e-1b3f-4a6d-8e9c-7f0b1a2d3c4e"
#define JSON  "Content-Type: application/json"

TestSuite(mock_case_system, .timeout = 60);

static struct proc mock;

static void start(const char *const args[])
{
    cr_assert_eq(stack_start_case(&mock, args), 0, "mock-case-system did not start; see %s",
                 mock.log_path);
}

static void stop(void)
{
    cr_assert_eq(proc_stop(&mock, SIGTERM, 10000), 0,
                 "mock-case-system did not exit 0 on SIGTERM; see %s", mock.log_path);
    unlink(mock.log_path); /* kept when the test fails */
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A write-back body of DESIGN.md §5 (a static buffer). */
static const char *body_for(const char *nhs, const char *trace_id)
{
    static char b[512];
    return stack_case_body(b, sizeof(b), nhs, trace_id);
}

static long put_raw(const char *case_id, const char *key, const char *auth, const char *body,
                    struct http_reply *r)
{
    return stack_case_put(mock.port, case_id, key, auth, body, r);
}

/* A good write (the key is the trace id); returns the status. */
static long put(const char *case_id, const char *key, const char *auth)
{
    struct http_reply r;
    long status = put_raw(case_id, key, auth, body_for("9000000009", key), &r);
    http_reply_free(&r);
    return status;
}

static json_t *admin(const char *method, const char *path, const char *body)
{
    return stack_case_admin(mock.port, method, path, body);
}

static long admin_status(const char *method, const char *path, const char *body)
{
    struct http_reply r;
    const char *h[] = {JSON, NULL};
    http_do(mock.port, method, path, h, body, &r);
    http_reply_free(&r);
    return r.status;
}

static void set_faults(const char *body)
{
    cr_assert_eq(stack_case_faults(mock.port, body), 0, "PUT /_admin/faults %s refused", body);
}

static long long stat_of(const char *name)
{
    long long n = stack_case_stat(mock.port, name);
    cr_assert_geq(n, 0, "stats has no %s", name);
    return n;
}

static json_t *client(const char *case_id)
{
    return stack_case_client(mock.port, case_id);
}

static const char *str(json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));
    return s != NULL ? s : "(absent)";
}

static json_int_t num(json_t *o, const char *name)
{
    return json_integer_value(json_object_get(o, name));
}

/* ---- writes ---- */

Test(mock_case_system, put_is_recorded_and_visible)
{
    start(NULL);
    struct http_reply r;
    cr_assert_eq(put_raw("LAS-000123", KEY1, NULL, body_for("9000000009", KEY1), &r), 200, "%s",
                 r.body);
    json_t *b = json_loads(r.body, 0, NULL);
    cr_assert_not_null(b, "answer is not JSON: %s", r.body);
    cr_expect_str_eq(str(b, "case_id"), "LAS-000123");
    cr_expect_str_eq(str(b, "nhs_number"), "9000000009");
    cr_expect_str_eq(str(b, "trace_id"), KEY1);
    cr_expect_eq(num(b, "version"), 1);
    json_decref(b);
    http_reply_free(&r);

    json_t *c = client("LAS-000123");
    cr_assert_not_null(c, "GET /clients/LAS-000123 did not answer 200");
    cr_expect_str_eq(str(c, "nhs_number"), "9000000009");
    cr_expect_str_eq(str(c, "nhs_number_status"), "01");
    cr_expect_str_eq(str(c, "trace_id"), KEY1);
    cr_expect_str_eq(str(c, "traced_at"), "2026-12-02T10:15:00Z");
    cr_expect_float_eq(json_number_value(json_object_get(c, "score")), 0.97, 1e-9);
    cr_expect_eq(num(c, "writes"), 1);
    cr_expect_eq(num(c, "duplicates"), 0);
    json_decref(c);
    cr_expect_null(client("LAS-000999"), "a case never written is 404");
    cr_expect_eq(stat_of("deliveries"), 1);
    cr_expect_eq(stat_of("duplicates"), 0);
    cr_expect_eq(stat_of("requests"), 1);

    json_t *log = admin("GET", "/_admin/requests", NULL);
    cr_assert_not_null(log);
    cr_expect_eq(num(log, "count"), 1);
    json_t *e = json_array_get(json_object_get(log, "requests"), 0);
    cr_assert_not_null(e, "the request log is empty");
    cr_expect_str_eq(str(e, "method"), "PUT");
    cr_expect_str_eq(str(e, "path"), "/clients/LAS-000123/nhs-number");
    cr_expect_str_eq(str(e, "idempotency_key"), KEY1);
    cr_expect_eq(num(e, "status"), 200);
    cr_expect_str_eq(str(e, "outcome"), "delivered");
    cr_expect(json_is_null(json_object_get(e, "fault")));
    char *text = json_dumps(log, 0);
    cr_expect_null(strstr(text, "9000000009"), "the request log holds no number: %s", text);
    free(text);
    json_decref(log);

    /* Without --token any Authorization goes; a write without a key is logged without one. */
    cr_expect_eq(put("LAS-2", KEY2, "Bearer whatever"), 200);
    cr_expect_eq(put_raw("LAS-3", NULL, NULL, "{}", &r), 400);
    http_reply_free(&r);
    log = admin("GET", "/_admin/requests", NULL);
    e = json_array_get(json_object_get(log, "requests"), 2);
    cr_expect(json_is_null(json_object_get(e, "idempotency_key")));
    cr_expect_str_eq(str(e, "outcome"), "rejected");
    json_decref(log);
    cr_expect_eq(admin_status("DELETE", "/_admin/requests", NULL), 204);
    log = admin("GET", "/_admin/requests", NULL);
    cr_expect_eq(num(log, "count"), 0);
    json_decref(log);
    cr_expect_eq(stat_of("deliveries"), 2, "clearing the log keeps the counters");
    stop();
}

Test(mock_case_system, repeat_is_a_duplicate_not_a_second_write)
{
    start(NULL);
    struct http_reply r1, r2;
    char replayed[16];
    const char *body = body_for("9000000009", KEY1);
    cr_assert_eq(put_raw("LAS-1", KEY1, NULL, body, &r1), 200);
    cr_assert_eq(put_raw("LAS-1", KEY1, NULL, body, &r2), 200, "%s", r2.body);
    cr_expect_str_eq(r2.body, r1.body, "a replay answers the first body");
    cr_expect_null(http_reply_header(&r1, "Idempotent-Replayed", replayed, sizeof(replayed)));
    cr_assert_not_null(http_reply_header(&r2, "Idempotent-Replayed", replayed, sizeof(replayed)));
    cr_expect_str_eq(replayed, "true");
    http_reply_free(&r1);
    http_reply_free(&r2);
    json_t *c = client("LAS-1");
    cr_assert_not_null(c);
    cr_expect_eq(num(c, "writes"), 1);
    cr_expect_eq(num(c, "duplicates"), 1);
    json_decref(c);
    cr_expect_eq(stat_of("deliveries"), 1);
    cr_expect_eq(stat_of("duplicates"), 1);

    /* A new trace for the same client is a second write. */
    cr_assert_eq(put("LAS-1", KEY2, NULL), 200);
    c = client("LAS-1");
    cr_expect_eq(num(c, "writes"), 2);
    cr_expect_str_eq(str(c, "trace_id"), KEY2);
    json_decref(c);
    cr_expect_eq(stat_of("deliveries"), 2);

    /* The same key for another client is refused and records nothing. */
    cr_expect_eq(put("LAS-2", KEY1, NULL), 409);
    cr_expect_null(client("LAS-2"));
    cr_expect_eq(stat_of("rejected"), 1);
    stop();
}

/* ---- auth ---- */

Test(mock_case_system, token_is_required_when_set)
{
    const char *args[] = {"--token", TOKEN, NULL};
    start(args);
    struct http_reply r;
    char www[64];
    cr_expect_eq(put_raw("LAS-1", KEY1, NULL, body_for("9000000009", KEY1), &r), 401);
    cr_expect_not_null(http_reply_header(&r, "WWW-Authenticate", www, sizeof(www)));
    cr_expect_not_null(strstr(r.body, "\"unauthorised\""), "%s", r.body);
    http_reply_free(&r);
    cr_expect_eq(put("LAS-1", KEY1, "Bearer wrong-token-0123456789"), 401);
    cr_expect_eq(put("LAS-1", KEY1, "Bearer " TOKEN "x"), 401);
    cr_expect_eq(put("LAS-1", KEY1, "Basic " TOKEN), 401);
    cr_expect_eq(put("LAS-1", KEY1, TOKEN), 401);
    cr_expect_null(client("LAS-1"), "refused writes record nothing");
    cr_expect_eq(stat_of("rejected"), 5);
    cr_expect_eq(put("LAS-1", KEY1, "Bearer " TOKEN), 200);
    cr_expect_eq(put("LAS-1", KEY1, "bearer " TOKEN), 200, "the scheme is case-insensitive");
    cr_expect_eq(stat_of("deliveries"), 1);
    stop();
}

Test(mock_case_system, token_file_is_read)
{
    char path[] = "/tmp/pdscasetokXXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "file-token-42\n", 14), 14);
    close(fd);
    const char *args[] = {"--token-file", path, NULL};
    start(args);
    unlink(path);
    cr_expect_eq(put("LAS-1", KEY1, "Bearer file-token-4"), 401,
                 "a prefix of the token is refused");
    cr_expect_eq(put("LAS-1", KEY1, NULL), 401);
    cr_expect_eq(put("LAS-1", KEY1, "Bearer file-token-42"), 200);
    stop();
}

/* ---- refused requests ---- */

/* A refused write: the good body with field set to value (a JSON text; "" leaves the
 * field out), sent under key (NULL: no header) with content_type to case_id. */
struct bad_put {
    const char *field, *value, *case_id, *key, *content_type;
    long status;
    const char *code, *error_field;
};

static void expect_refused(const struct bad_put *b)
{
    json_t *body = json_loads(body_for("9000000009", KEY1), 0, NULL);
    if (b->value[0] == '\0')
        json_object_del(body, b->field);
    else
        json_object_set_new(body, b->field, json_loads(b->value, JSON_DECODE_ANY, NULL));
    char *text = b->field[0] == '{' ? strdup(b->field) : json_dumps(body, JSON_COMPACT);
    char path[256], key_line[256];
    const char *h[] = {b->content_type, key_line, NULL};
    snprintf(key_line, sizeof(key_line), "Idempotency-Key: %s", b->key);
    h[1] = b->key != NULL ? key_line : NULL;
    snprintf(path, sizeof(path), "/clients/%s/nhs-number", b->case_id);
    struct http_reply r;
    http_do(mock.port, "PUT", path, h, text, &r);
    cr_expect_eq(r.status, b->status, "%s: %ld %s", text, r.status, r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    json_t *e = json_object_get(j, "error");
    cr_expect_str_eq(str(e, "code"), b->code, "%s: %s", text, r.body);
    if (b->error_field != NULL)
        cr_expect_str_eq(str(e, "field"), b->error_field, "%s: %s", text, r.body);
    else
        cr_expect_null(json_object_get(e, "field"), "%s", r.body);
    json_decref(j);
    json_decref(body);
    free(text);
    http_reply_free(&r);
}

Test(mock_case_system, bad_writes_are_refused_naming_the_field)
{
    static const struct bad_put cases[] = {
        {"nhs_number", "", "LAS-1", KEY1, JSON, 400, "missing_field", "nhs_number"},
        {"nhs_number", "\"9000000008\"", "LAS-1", KEY1, JSON, 400, "invalid_field", "nhs_number"},
        {"nhs_number", "9000000009", "LAS-1", KEY1, JSON, 400, "invalid_field", "nhs_number"},
        {"nhs_number_status", "\"02\"", "LAS-1", KEY1, JSON, 400, "invalid_field",
         "nhs_number_status"},
        {"trace_id", "\"" KEY2 "\"", "LAS-1", KEY1, JSON, 400, "invalid_field", "trace_id"},
        {"traced_at", "\"2026-12-02T10:15:00+01:00\"", "LAS-1", KEY1, JSON, 400, "invalid_field",
         "traced_at"},
        {"score", "1.5", "LAS-1", KEY1, JSON, 400, "invalid_field", "score"},
        {"score", "", "LAS-1", KEY1, JSON, 400, "missing_field", "score"},
        {"{not json", "", "LAS-1", KEY1, JSON, 400, "invalid_json", NULL},
        {"score", "1", "LAS-1", NULL, JSON, 400, "missing_field", "Idempotency-Key"},
        {"score", "1", "LAS-1", KEY1, "Content-Type: text/plain", 415, "unsupported_media_type",
         "Content-Type"},
        {"score", "1", "LAS%201", KEY1, JSON, 400, "invalid_field", "case_id"},
    };
    start(NULL);
    size_t n = sizeof(cases) / sizeof(cases[0]);
    for (size_t i = 0; i < n; i++)
        expect_refused(&cases[i]);
    cr_expect_null(client("LAS-1"), "nothing refused was recorded");
    cr_expect_eq(stat_of("rejected"), (long long)n);
    cr_expect_eq(stat_of("deliveries"), 0);
    cr_expect_eq(put("LAS-1", KEY1, NULL), 200, "the key was not used up by refusals");
    stop();
}

/* ---- faults ---- */

Test(mock_case_system, fail_next_answers_503_then_recovers)
{
    start(NULL);
    set_faults("{\"fail_next\":2}");
    struct http_reply r;
    cr_expect_eq(put_raw("LAS-1", KEY1, NULL, body_for("9000000009", KEY1), &r), 503);
    cr_expect_not_null(strstr(r.body, "\"error\""), "%s", r.body);
    http_reply_free(&r);
    cr_expect_eq(put("LAS-1", KEY1, NULL), 503);
    cr_expect_null(client("LAS-1"), "a failed write records nothing");
    cr_expect_eq(put("LAS-1", KEY1, NULL), 200);
    cr_expect_eq(stat_of("failed"), 2);
    cr_expect_eq(stat_of("deliveries"), 1);
    json_t *f = admin("GET", "/_admin/faults", NULL);
    cr_expect_eq(num(f, "fail_next"), 0, "fail_next counts down");
    json_decref(f);
    set_faults("{\"fail_next\":1,\"fail_status\":429}");
    cr_expect_eq(put("LAS-2", KEY2, NULL), 429);
    cr_expect_eq(put("LAS-2", KEY2, NULL), 200);
    json_t *log = admin("GET", "/_admin/requests", NULL);
    json_t *e = json_array_get(json_object_get(log, "requests"), 0);
    cr_expect_str_eq(str(e, "fault"), "fail_next");
    cr_expect_str_eq(str(e, "outcome"), "failed");
    cr_expect_eq(num(e, "status"), 503);
    json_decref(log);
    stop();
}

/* The statuses of 24 writes, as a string of 'F' (failed) and 'o'. */
static void rate_pattern(const char *seed, char out[25])
{
    const char *args[] = {"--seed", seed, "--fail-rate", "0.5", NULL};
    start(args);
    for (int i = 0; i < 24; i++) {
        char key[32];
        snprintf(key, sizeof(key), "key-%d", i);
        long s = put("LAS-1", key, NULL);
        cr_assert(s == 200 || s == 503, "status %ld", s);
        out[i] = s == 503 ? 'F' : 'o';
    }
    out[24] = '\0';
    stop();
}

Test(mock_case_system, fail_rate_is_seeded)
{
    char a[25], b[25], c[25];
    rate_pattern("42", a);
    rate_pattern("42", b);
    rate_pattern("43", c);
    cr_expect_str_eq(a, b, "the same seed gives the same failures");
    cr_expect_str_neq(a, c, "another seed gives others");
    cr_expect_not_null(strchr(a, 'F'), "%s", a);
    cr_expect_not_null(strchr(a, 'o'), "%s", a);

    start(NULL);
    set_faults("{\"fail_rate\":1.0}");
    cr_expect_eq(put("LAS-1", KEY1, NULL), 503);
    cr_expect_eq(put("LAS-1", KEY1, NULL), 503);
    set_faults("{\"fail_rate\":0}");
    cr_expect_eq(put("LAS-1", KEY1, NULL), 200);
    stop();
}

Test(mock_case_system, rejected_case_answers_422)
{
    start(NULL);
    set_faults("{\"reject_cases\":[\"LAS-9\",\"LAS-8\"]}");
    struct http_reply r;
    cr_expect_eq(put_raw("LAS-9", KEY1, NULL, body_for("9000000009", KEY1), &r), 422);
    cr_expect_not_null(strstr(r.body, "\"field\":\"case_id\""), "%s", r.body);
    http_reply_free(&r);
    cr_expect_eq(put("LAS-8", KEY2, NULL), 422);
    cr_expect_eq(put("LAS-1", "key-3", NULL), 200, "other cases are written");
    cr_expect_null(client("LAS-9"));
    cr_expect_eq(stat_of("failed"), 2);
    json_t *f = admin("GET", "/_admin/faults", NULL);
    cr_expect_eq(json_array_size(json_object_get(f, "reject_cases")), 2);
    json_decref(f);
    set_faults("{\"reject_cases\":[]}");
    cr_expect_eq(put("LAS-9", KEY1, NULL), 200);
    stop();
}

/* Asks cond every 10 ms until it holds or deadline_ms passes (a local helper, so that this
 * file does not depend on test_util.h's waiting helpers). */
static bool poll_until(bool (*cond)(void *), void *arg, unsigned deadline_ms)
{
    long long end = now_ms() + deadline_ms;
    while (!cond(arg)) {
        if (now_ms() >= end)
            return false;
        sleep_ms(10);
    }
    return true;
}

/* For poll_until: the mock has received a write. */
static bool has_requests(void *arg)
{
    (void)arg;
    return stack_case_stat(mock.port, "requests") > 0;
}

static bool connects(void *arg)
{
    int fd = tcp_connect(*(int *)arg, 1000);
    if (fd >= 0)
        close(fd);
    return fd >= 0;
}

/* A good write for LAS-1 under KEY1 on a raw connection; the answer is read later. */
static int send_raw_put(void)
{
    int fd = stack_case_put_nowait(mock.port, "LAS-1", KEY1, body_for("9000000009", KEY1));
    cr_assert_geq(fd, 0);
    return fd;
}

Test(mock_case_system, latency_delays_writes_without_blocking)
{
    start(NULL);
    set_faults("{\"latency_ms\":800}");
    char reply[4096];
    long long t0 = now_ms();
    int fd = send_raw_put();
    /* While that answer waits, the loop serves other requests at once: the write is seen
     * in the stats long before it is answered. */
    cr_assert(poll_until(has_requests, NULL, 2000));
    long long t_other = now_ms() - t0;
    cr_expect_lt(t_other, 500, "the admin API showed the write after %lld ms", t_other);
    cr_assert_gt(tcp_recv_until(fd, reply, sizeof(reply), "\r\n\r\n", 1), 0);
    long long t_put = now_ms() - t0;
    close(fd);
    cr_expect_not_null(strstr(reply, "HTTP/1.1 200"), "%s", reply);
    cr_expect_geq(t_put, 780, "the write was answered after %lld ms", t_put);
    cr_expect_lt(t_put, 3000, "the write was answered after %lld ms", t_put);
    set_faults("{\"latency_ms\":0}");
    t0 = now_ms();
    cr_expect_eq(put("LAS-2", KEY2, NULL), 200);
    cr_expect_lt(now_ms() - t0, 500);
    stop();
}

Test(mock_case_system, refuse_closes_the_listener_for_a_while)
{
    start(NULL);
    int port = mock.port;
    long long t0 = now_ms();
    set_faults("{\"refuse_ms\":1500}");
    cr_expect_not(connects(&port), "connecting is refused");
    cr_expect_eq(put("LAS-1", KEY1, NULL), 0, "a write gets no answer");
    cr_assert(poll_until(connects, &port, 5000), "the listener never came back");
    long long waited = now_ms() - t0;
    cr_expect_geq(waited, 1400, "back after %lld ms", waited);
    cr_expect_eq(put("LAS-1", KEY1, NULL), 200, "served again on the same port");
    cr_expect_eq(stat_of("deliveries"), 1);
    json_t *f = admin("GET", "/_admin/faults", NULL);
    cr_expect_eq(num(f, "refuse_ms"), 0, "refusing is one-shot");
    json_decref(f);
    cr_expect_eq(proc_log_count(&mock, "\"msg\":\"refusing connections\""), 1);
    /* SIGTERM while nothing listens still stops the mock, with exit code 0. */
    set_faults("{\"refuse_ms\":60000}");
    cr_expect_not(connects(&port));
    stop();
}

Test(mock_case_system, refusing_lets_answers_under_way_finish)
{
    char reply[4096];
    start(NULL);
    set_faults("{\"latency_ms\":800}");
    int fd = send_raw_put();
    cr_assert(poll_until(has_requests, NULL, 2000), "the write never arrived");
    set_faults("{\"refuse_ms\":300}");
    cr_assert_gt(tcp_recv_until(fd, reply, sizeof(reply), "\r\n\r\n", 1), 0);
    close(fd);
    cr_expect_not_null(strstr(reply, "HTTP/1.1 200"), "%s", reply);
    json_t *c = client("LAS-1");
    cr_expect_not_null(c, "the delayed write was recorded");
    json_decref(c);
    stop();
}

Test(mock_case_system, drop_connections_resets_writes_until_cleared)
{
    start(NULL);
    set_faults("{\"drop_connections\":true}");
    cr_expect_eq(put("LAS-1", KEY1, NULL), 0, "a dropped write gets no answer");
    cr_expect_eq(put("LAS-1", KEY1, NULL), 0);
    cr_expect_null(client("LAS-1"));
    cr_expect_eq(stat_of("failed"), 2, "the admin API still answers");
    json_t *log = admin("GET", "/_admin/requests", NULL);
    json_t *e = json_array_get(json_object_get(log, "requests"), 0);
    cr_expect_eq(num(e, "status"), 0);
    cr_expect_str_eq(str(e, "fault"), "drop");
    json_decref(log);
    set_faults("{\"drop_connections\":false}");
    cr_expect_eq(put("LAS-1", KEY1, NULL), 200);
    stop();
}

Test(mock_case_system, bad_fault_settings_change_nothing)
{
    static const char *const bodies[] = {
        "{\"fail_next\":3,\"nonsense\":1}",
        "{\"fail_next\":3,\"fail_status\":404}",
        "{\"fail_rate\":2}",
        "{\"reject_cases\":[\"a b\"]}",
        "{\"latency_ms\":-1}",
        "{\"refuse_ms\":600001}",
        "{\"drop_connections\":1}",
        "[]",
    };
    start(NULL);
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
        cr_expect_eq(admin_status("PUT", "/_admin/faults", bodies[i]), 400, "%s", bodies[i]);
    json_t *j = admin("PUT", "/_admin/faults", bodies[0]);
    cr_expect_str_eq(str(json_object_get(j, "error"), "field"), "nonsense");
    json_decref(j);
    json_t *f = admin("GET", "/_admin/faults", NULL);
    cr_expect_eq(num(f, "fail_next"), 0);
    cr_expect_eq(num(f, "fail_status"), 503);
    cr_expect_eq(json_array_size(json_object_get(f, "reject_cases")), 0);
    json_decref(f);
    cr_expect_eq(put("LAS-1", KEY1, NULL), 200);
    stop();
}

Test(mock_case_system, reset_clears_faults_clients_and_counters)
{
    start(NULL);
    cr_assert_eq(put("LAS-1", KEY1, NULL), 200);
    set_faults("{\"fail_next\":5,\"latency_ms\":2000,\"reject_cases\":[\"LAS-2\"],"
               "\"drop_connections\":false,\"fail_status\":500}");
    /* DELETE /_admin/faults ends the faults only. */
    cr_expect_eq(admin_status("DELETE", "/_admin/faults", NULL), 204);
    json_t *f = admin("GET", "/_admin/faults", NULL);
    cr_expect_eq(num(f, "fail_next"), 0);
    cr_expect_eq(num(f, "latency_ms"), 0);
    cr_expect_eq(num(f, "fail_status"), 503);
    cr_expect_eq(json_array_size(json_object_get(f, "reject_cases")), 0);
    json_decref(f);
    json_t *c = client("LAS-1");
    cr_expect_not_null(c, "clients survive DELETE /_admin/faults");
    json_decref(c);

    set_faults("{\"fail_next\":5,\"latency_ms\":2000,\"reject_cases\":[\"LAS-2\"]}");
    cr_expect_eq(admin_status("POST", "/_admin/reset", NULL), 204);
    cr_expect_null(client("LAS-1"), "reset forgets clients");
    cr_expect_eq(stat_of("deliveries"), 0);
    cr_expect_eq(stat_of("requests"), 0);
    cr_expect_eq(stat_of("clients"), 0);
    json_t *log = admin("GET", "/_admin/requests", NULL);
    cr_expect_eq(num(log, "count"), 0);
    cr_expect_eq(json_array_size(json_object_get(log, "requests")), 0);
    json_decref(log);
    long long t0 = now_ms();
    cr_expect_eq(put("LAS-2", KEY1, NULL), 200, "no fault is left");
    cr_expect_lt(now_ms() - t0, 1000, "no latency is left");
    cr_expect_eq(put("LAS-1", KEY1, NULL), 409, "keys were forgotten: KEY1 is LAS-2's now");
    stop();
}

/* ---- privacy, flags and shutdown ---- */

Test(mock_case_system, logs_mask_nhs_numbers)
{
    const char *args[] = {"--log-level", "debug", NULL};
    start(args);
    cr_assert_eq(put("LAS-1", KEY1, NULL), 200);
    cr_assert_eq(put("LAS-1", KEY1, NULL), 200);
    cr_assert_eq(proc_stop(&mock, SIGTERM, 10000), 0);
    char *log = proc_log(&mock);
    cr_assert_not_null(log);
    cr_expect_null(strstr(log, "9000000009"), "the full number is logged:\n%s", log);
    cr_expect_not_null(strstr(log, "*** *** 0009"), "the masked number is missing:\n%s", log);
    cr_expect_not_null(strstr(log, "\"outcome\":\"duplicate\""), "%s", log);
    free(log);
    unlink(mock.log_path);
}

/* Runs mock-case-system with up to four arguments until it exits; returns the status. */
static int run_exit(const char *const args[5])
{
    struct proc p;
    const char *argv[6] = {PDS_BINARY_DIR "/mock-case-system"};
    for (size_t i = 0; i < 4 && args[i] != NULL; i++)
        argv[i + 1] = args[i];
    cr_assert_eq(proc_spawn(&p, argv, NULL), 0);
    int rc = proc_wait(&p, 10000);
    unlink(p.log_path);
    return rc;
}

Test(mock_case_system, bad_flags_exit_2)
{
    static const char *const cases[][5] = {
        {"--fail-status", "404"},
        {"--token", "a", "--token-file", "/dev/null"},
        {"--bogus"},
        {"--token-file", "/nonexistent/token"},
        {"--fail-rate", "1.5"},
        {"--port", "70000"},
        {"--token", "has space"},
        {"--latency-ms", "600001"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_expect_eq(run_exit(cases[i]), 2, "%s %s", cases[i][0], cases[i][1]);
    static const char *const help[5] = {"--help"};
    cr_expect_eq(run_exit(help), 0);
}

Test(mock_case_system, sigterm_answers_delayed_writes_then_exits_0)
{
    start(NULL);
    set_faults("{\"latency_ms\":700}");
    char reply[4096];
    int fd = send_raw_put();
    cr_assert(poll_until(has_requests, NULL, 2000), "the write never arrived");
    kill(mock.pid, SIGTERM);
    cr_assert_gt(tcp_recv_until(fd, reply, sizeof(reply), "\r\n\r\n", 1), 0);
    cr_expect_not_null(strstr(reply, "HTTP/1.1 200"), "%s", reply);
    close(fd);
    /* No second signal: it could land after the handlers are gone and kill the process. */
    cr_assert_eq(proc_wait(&mock, 10000), 0, "no exit 0 after SIGTERM; see %s", mock.log_path);
    unlink(mock.log_path);
}
