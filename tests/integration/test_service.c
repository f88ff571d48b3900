/* The running service over real HTTP with a real Redis: probes, metrics, auth, routing
 * errors, keep-alive, pipelining, limits, timeouts, configuration errors and SIGTERM. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http_util.h"
#include "stack.h"
#include "test_util.h"

TestSuite(service, .timeout = 60);

static struct stack st;

static void start(const char *const env[])
{
    cr_assert_eq(stack_start(&st, env), 0, "stack did not start; see %s", st.svc.log_path);
}

static json_t *get_json(const char *path, const char *auth, long want_status)
{
    struct http_reply r;
    const char *h[] = {auth, NULL};
    cr_assert_eq(http_do(st.svc.port, "GET", path, auth ? h : NULL, NULL, &r), 0);
    cr_assert_eq(r.status, want_status, "%s: %ld %s", path, r.status, r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    cr_assert_not_null(j, "%s: body is not JSON: %s", path, r.body);
    http_reply_free(&r);
    return j;
}

static const char *error_code(const json_t *j)
{
    return json_string_value(json_object_get(json_object_get(j, "error"), "code"));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Polls /readyz until it answers want, for up to limit_s seconds; returns the time taken,
 * or -1. */
static double wait_ready(long want, double limit_s)
{
    struct http_probe ready = {st.svc.port, "/readyz", want};
    double t0 = now_s();
    return wait_until(http_probe_answers, &ready, (unsigned)(limit_s * 1000)) ? now_s() - t0 : -1;
}

Test(service, healthz_answers_and_echoes_request_id)
{
    start(NULL);
    struct http_reply r;
    const char *h[] = {"X-Request-ID: caller-id-42", NULL};
    cr_assert_eq(http_do(st.svc.port, "GET", "/healthz", h, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    char v[128];
    cr_assert_str_eq(http_reply_header(&r, "X-Request-ID", v, sizeof(v)), "caller-id-42");
    http_reply_free(&r);
    cr_assert_eq(http_do(st.svc.port, "GET", "/healthz", NULL, NULL, &r), 0);
    cr_assert_eq(strlen(http_reply_header(&r, "X-Request-ID", v, sizeof(v))), 36);
    http_reply_free(&r);
    stack_stop(&st);
}

Test(service, readyz_follows_redis_down_and_back)
{
    const char *env[] = {"PDS_TRACE_REDIS_COMMAND_TIMEOUT_MS=300", NULL};
    start(env);
    cr_assert_geq(wait_ready(200, 5), 0, "not ready with Redis up");
    cr_assert_eq(redis_server_stop(&st.redis), 0);
    cr_assert_geq(wait_ready(503, 5), 0, "still ready with Redis stopped");
    json_t *j = get_json("/readyz", NULL, 503);
    cr_assert_str_eq(json_string_value(json_object_get(j, "status")), "degraded");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "checks"), "redis")),
                     "unavailable");
    json_decref(j);
    cr_assert_eq(redis_server_restart(&st.redis), 0);
    double t = wait_ready(200, 5);
    cr_assert(t >= 0 && t <= 2.0, "ready again after %.2f s (limit 2 s)", t);
    stack_stop(&st);
}

Test(service, readyz_notices_frozen_redis)
{
    const char *env[] = {"PDS_TRACE_REDIS_COMMAND_TIMEOUT_MS=300", NULL};
    start(env);
    cr_assert_geq(wait_ready(200, 5), 0);
    cr_assert_eq(redis_server_freeze(&st.redis), 0);
    cr_assert_geq(wait_ready(503, 5), 0, "frozen Redis not noticed");
    cr_assert_eq(redis_server_thaw(&st.redis), 0);
    cr_assert_geq(wait_ready(200, 5), 0, "not ready after thaw");
    stack_stop(&st);
}

Test(service, metrics_count_requests_by_route_and_status)
{
    start(NULL);
    json_decref(get_json("/healthz", NULL, 200));
    json_decref(get_json("/healthz", NULL, 200));
    json_decref(get_json("/nowhere", NULL, 404));
    struct http_reply r;
    cr_assert_eq(http_do(st.svc.port, "GET", "/metrics", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "pdstrace_http_requests_total{route=\"/healthz\",status=\"200\"} 2\n"),
              "%s", r.body);
    cr_assert(strstr(r.body, "pdstrace_http_requests_total{route=\"unmatched\",status=\"404\"} 1"));
    cr_assert(strstr(r.body, "pdstrace_http_request_duration_seconds_bucket{route=\"/healthz\","));
    cr_assert(strstr(r.body, "pdstrace_redis_up "));
    http_reply_free(&r);
    stack_stop(&st);
}

Test(service, api_keys_and_roles)
{
    start(NULL);
    json_t *j = get_json("/v1/config", NULL, 401);
    cr_assert_str_eq(error_code(j), "unauthorised");
    json_decref(j);
    j = get_json("/v1/config", stack_auth("not-a-key"), 401);
    cr_assert_str_eq(error_code(j), "unauthorised");
    json_decref(j);
    j = get_json("/v1/config", stack_auth(STACK_KEY_TRACE), 403);
    cr_assert_str_eq(error_code(j), "forbidden");
    json_decref(j);
    j = get_json("/v1/config", stack_auth(STACK_KEY_ADMIN), 200);
    cr_assert_str_eq(json_string_value(json_object_get(j, "listen")), "127.0.0.1:0");
    json_decref(j);
    stack_stop(&st);
}

Test(service, unknown_path_and_method_get_json_errors)
{
    start(NULL);
    json_t *j = get_json("/v2/nothing", NULL, 404);
    cr_assert_str_eq(error_code(j), "not_found");
    json_decref(j);
    struct http_reply r;
    cr_assert_eq(http_do(st.svc.port, "DELETE", "/healthz", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 405);
    char v[64];
    cr_assert_not_null(http_reply_header(&r, "Allow", v, sizeof(v)));
    cr_assert(strstr(v, "GET") != NULL);
    http_reply_free(&r);
    stack_stop(&st);
}

Test(service, keep_alive_and_pipelining_answer_in_order)
{
    start(NULL);
    int fd = tcp_connect(st.svc.port, 5000);
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: first\r\n\r\n"
                      "GET /nowhere HTTP/1.1\r\nHost: x\r\nX-Request-ID: second\r\n\r\n"
                      "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: third\r\n\r\n";
    cr_assert_eq(tcp_send(fd, req, strlen(req)), 0);
    static char out[16384];
    /* Up to the end of the third header block: the request ids below are headers. */
    cr_assert_gt(tcp_recv_until(fd, out, sizeof(out), "\r\n\r\n", 3), 0);
    char *a = strstr(out, "first"), *b = strstr(out, "second"), *c = strstr(out, "third");
    cr_assert(a && b && c && a < b && b < c, "out of order: %s", out);
    cr_assert(strstr(out, "HTTP/1.1 404") > a);
    /* The connection stays open for a fourth request. */
    const char *more = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(tcp_send(fd, more, strlen(more)), 0);
    cr_assert_gt(tcp_recv_until(fd, out, sizeof(out), "HTTP/1.1 200", 1), 0);
    close(fd);
    stack_stop(&st);
}

Test(service, header_and_body_limits)
{
    const char *env[] = {"PDS_TRACE_SERVER_MAX_BODY_BYTES=2048", NULL};
    start(env);
    static char big[20000];
    memset(big, 'a', sizeof(big) - 1);
    char *hdr = malloc(sizeof(big) + 16);
    snprintf(hdr, sizeof(big) + 16, "X-Big: %s", big);
    const char *h[] = {hdr, NULL};
    struct http_reply r;
    http_do(st.svc.port, "GET", "/healthz", h, NULL, &r);
    cr_assert_eq(r.status, 431, "got %ld", r.status);
    http_reply_free(&r);
    free(hdr);
    big[4000] = '\0';
    http_do(st.svc.port, "POST", "/healthz", NULL, big, &r);
    cr_assert_eq(r.status, 413, "got %ld", r.status);
    json_t *j = json_loads(r.body, 0, NULL);
    cr_assert_str_eq(error_code(j), "payload_too_large");
    json_decref(j);
    http_reply_free(&r);
    stack_stop(&st);
}

Test(service, malformed_request_gets_400_and_close)
{
    start(NULL);
    int fd = tcp_connect(st.svc.port, 3000);
    const char *junk = "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n";
    tcp_send(fd, junk, strlen(junk));
    static char out[4096];
    cr_assert_gt(tcp_recv_all(fd, out, sizeof(out)), 0);
    cr_assert(strncmp(out, "HTTP/1.1 400", 12) == 0, "%s", out);
    close(fd);
    json_decref(get_json("/healthz", NULL, 200));
    stack_stop(&st);
}

Test(service, slow_and_idle_clients_are_cut_off)
{
    const char *env[] = {"PDS_TRACE_SERVER_HEADER_TIMEOUT_MS=300",
                         "PDS_TRACE_SERVER_IDLE_TIMEOUT_MS=400", NULL};
    start(env);
    int slow = tcp_connect(st.svc.port, 3000);
    tcp_send(slow, "GET /heal", 9);
    double t0 = now_s();
    cr_assert(tcp_peer_closed(slow), "slow client kept open");
    cr_assert_lt(now_s() - t0, 2.0);
    close(slow);
    int idle = tcp_connect(st.svc.port, 3000);
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    tcp_send(idle, req, strlen(req));
    t0 = now_s();
    cr_assert(tcp_peer_closed(idle), "idle keep-alive connection kept open");
    cr_assert_lt(now_s() - t0, 2.0);
    close(idle);
    stack_stop(&st);
}

Test(service, sigterm_exits_zero_and_closes_connections)
{
    start(NULL);
    int fd = tcp_connect(st.svc.port, 5000);
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    tcp_send(fd, req, strlen(req));
    static char out[4096];
    cr_assert_gt(tcp_recv_until(fd, out, sizeof(out), "\r\n\r\n", 1), 0);
    cr_assert_eq(proc_stop(&st.svc, SIGTERM, 5000), 0, "exit status not 0");
    cr_assert(tcp_peer_closed(fd));
    close(fd);
    cr_assert_gt(proc_log_count(&st.svc, "\"msg\":\"drained\""), 0);
    stack_stop(&st);
}

Test(service, bad_setting_exits_2_naming_it)
{
    struct proc p;
    const char *argv[] = {PDS_BINARY_DIR "/pds-trace", "serve", NULL};
    const char *env[] = {"PDS_TRACE_PDS_RATE=fast", NULL};
    cr_assert_eq(proc_spawn(&p, argv, env), 0);
    cr_assert_eq(proc_wait(&p, 5000), 2);
    char *log = proc_log(&p);
    cr_assert(strstr(log, "PDS_TRACE_PDS_RATE") != NULL, "%s", log);
    cr_assert_eq(strchr(log, '\n'), log + strlen(log) - 1, "more than one line: %s", log);
    free(log);
}

Test(service, bad_keys_file_exits_2)
{
    struct proc p;
    const char *argv[] = {PDS_BINARY_DIR "/pds-trace", "serve", NULL};
    const char *env[] = {"PDS_TRACE_API_KEYS_FILE=/nonexistent/keys.json",
                         "PDS_TRACE_LISTEN=127.0.0.1:0", NULL};
    cr_assert_eq(proc_spawn(&p, argv, env), 0);
    cr_assert_eq(proc_wait(&p, 5000), 2);
    cr_assert_gt(proc_log_count(&p, "PDS_TRACE_API_KEYS_FILE"), 0);
}

Test(service, minted_api_key_works)
{
    struct proc mint;
    const char *argv[] = {PDS_BINARY_DIR "/pds-trace", "apikey", "council-ops", "admin,trace",
                          NULL};
    cr_assert_eq(proc_spawn(&mint, argv, NULL), 0);
    cr_assert_eq(proc_wait(&mint, 5000), 0);
    char *out = proc_log(&mint);
    char key[64];
    cr_assert_eq(strncmp(out, "key: ", 5), 0, "%s", out);
    size_t n = strcspn(out + 5, "\n");
    memcpy(key, out + 5, n);
    key[n] = '\0';
    const char *entry = strchr(out, '{');
    json_t *e = json_loads(entry, 0, NULL);
    cr_assert_not_null(e);
    start(NULL);
    FILE *f = fopen(st.keys_path, "w");
    json_t *arr = json_pack("[o]", e);
    json_dumpf(arr, f, 0);
    fclose(f);
    json_decref(arr);
    free(out);
    cr_assert_eq(stack_stop_service(&st), 0);
    cr_assert_eq(stack_start_service(&st, NULL), 0);
    json_decref(get_json("/v1/config", stack_auth(key), 200));
    stack_stop(&st);
}

Test(service, missing_secret_file_exits_2_naming_it)
{
    struct proc p;
    const char *argv[] = {PDS_BINARY_DIR "/pds-trace", "serve", NULL};
    const char *env[] = {"PDS_TRACE_LISTEN=127.0.0.1:0", "PDS_TRACE_SECRET_FILE=", NULL};
    cr_assert_eq(proc_spawn(&p, argv, env), 0);
    cr_assert_eq(proc_wait(&p, 5000), 2);
    cr_assert_gt(proc_log_count(&p, "PDS_TRACE_SECRET_FILE (secret_file)"), 0);
}
