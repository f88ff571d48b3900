#include "pdstrace/http_client.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "test_util.h"
#include "tls_util.h"

/* A tiny HTTP server on the test's own loop: it reads a request head and any
 * Content-Length body, then answers a canned response, stays silent, or resets. In
 * SRV_CLOSE_REUSED it answers the first request of each connection and closes (FIN, no
 * answer) on the second: what a server closing an idle keep-alive connection just as a
 * request arrives looks like to the client. */

#define MAX_CONNS 256
#define CONN_BUF  16384

enum srv_mode { SRV_ANSWER, SRV_SILENT, SRV_RESET, SRV_CLOSE_REUSED };

struct srv_conn {
    uv_tcp_t tcp;
    struct test_server *srv;
    char buf[CONN_BUF];
    size_t len;
    bool in_body;
    size_t body_left;
    unsigned served; /* requests read on this connection */
};

struct test_server {
    uv_tcp_t tcp;
    int port;
    enum srv_mode mode;
    const char *response;
    size_t response_len;
    unsigned accepted;
    unsigned requests;
    unsigned want_requests; /* sets reached once requests gets there */
    bool reached;
    /* The last request: its head and as much of its body as fits, NUL-terminated, and
     * the full body length (bodies are streamed, not kept). */
    char last[CONN_BUF];
    size_t last_len;
    size_t last_body_len;
    struct srv_conn conns[MAX_CONNS];
};

/* Static storage: close_loop closes the handles with no callback, and nothing here is
 * heap memory that would then leak. Each criterion test runs in its own process. */
static struct test_server srv;

static void on_srv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct srv_conn *conn = h->data;
    (void)suggested;
    b->base = conn->buf + conn->len;
    b->len = CONN_BUF - 1 - conn->len;
}

static void on_srv_write(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static size_t find_head_end(const char *p, size_t len)
{
    for (size_t i = 0; i + 4 <= len; i++) {
        if (memcmp(p + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    }
    return 0;
}

static size_t content_length(const char *head, size_t head_len)
{
    const char *end = head + head_len;
    for (const char *p = head; p < end; p++) {
        if ((p == head || p[-1] == '\n') && strncasecmp(p, "Content-Length:", 15) == 0)
            return strtoul(p + 15, NULL, 10);
    }
    return 0;
}

static void keep(struct test_server *s, const char *p, size_t n)
{
    size_t room = sizeof(s->last) - 1 - s->last_len;
    if (n > room)
        n = room;
    memcpy(s->last + s->last_len, p, n);
    s->last_len += n;
    s->last[s->last_len] = '\0';
}

static void request_done(struct test_server *s)
{
    s->requests++;
    if (s->want_requests && s->requests >= s->want_requests)
        s->reached = true;
}

static void answer(struct srv_conn *conn)
{
    uv_write_t *w = malloc(sizeof(*w));
    cr_assert_not_null(w);
    uv_buf_t b =
        uv_buf_init((char *)(uintptr_t)conn->srv->response, (unsigned)conn->srv->response_len);
    cr_assert_eq(uv_write(w, (uv_stream_t *)&conn->tcp, &b, 1, on_srv_write), 0);
}

static void consume(struct srv_conn *conn, size_t n)
{
    memmove(conn->buf, conn->buf + n, conn->len - n);
    conn->len -= n;
}

/* Takes a request head off the front of the buffer; false when none is complete yet. */
static bool take_head(struct srv_conn *conn)
{
    struct test_server *s = conn->srv;
    size_t head = find_head_end(conn->buf, conn->len);
    if (head == 0)
        return false;
    s->last_len = 0;
    s->last_body_len = 0;
    keep(s, conn->buf, head);
    conn->body_left = content_length(conn->buf, head);
    conn->in_body = true;
    consume(conn, head);
    return true;
}

/* Handles the buffered bytes of one request; false when more must be read first or the
 * connection went away. */
static bool serve_one(struct srv_conn *conn)
{
    struct test_server *s = conn->srv;
    if (!conn->in_body && !take_head(conn))
        return false;
    size_t n = conn->len < conn->body_left ? conn->len : conn->body_left;
    keep(s, conn->buf, n);
    s->last_body_len += n;
    conn->body_left -= n;
    consume(conn, n);
    if (conn->body_left > 0)
        return false;
    conn->in_body = false;
    request_done(s);
    conn->served++;
    if (s->mode == SRV_CLOSE_REUSED && conn->served > 1) {
        uv_read_stop((uv_stream_t *)&conn->tcp);
        uv_close((uv_handle_t *)&conn->tcp, NULL);
        return false;
    }
    if (s->mode == SRV_RESET) {
        uv_read_stop((uv_stream_t *)&conn->tcp);
        uv_tcp_close_reset(&conn->tcp, NULL);
        return false;
    }
    if (s->mode == SRV_ANSWER || s->mode == SRV_CLOSE_REUSED)
        answer(conn);
    return true;
}

static void on_srv_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    struct srv_conn *conn = stream->data;
    (void)b;
    if (nread < 0) {
        if (!uv_is_closing((uv_handle_t *)stream))
            uv_close((uv_handle_t *)stream, NULL);
        return;
    }
    conn->len += (size_t)nread;
    conn->buf[conn->len] = '\0';
    while (serve_one(conn))
        ;
    if (!uv_is_closing((uv_handle_t *)stream))
        cr_assert_lt(conn->len, CONN_BUF - 1, "request too big for the test server");
}

static void on_srv_connection(uv_stream_t *server, int status)
{
    struct test_server *s = server->data;
    cr_assert_eq(status, 0);
    cr_assert_lt(s->accepted, MAX_CONNS);
    struct srv_conn *conn = &s->conns[s->accepted++];
    conn->srv = s;
    cr_assert_eq(uv_tcp_init(server->loop, &conn->tcp), 0);
    conn->tcp.data = conn;
    cr_assert_eq(uv_accept(server, (uv_stream_t *)&conn->tcp), 0);
    cr_assert_eq(uv_read_start((uv_stream_t *)&conn->tcp, on_srv_alloc, on_srv_read), 0);
}

static int bound_port(uv_tcp_t *tcp)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    cr_assert_eq(uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void bind_any(uv_loop_t *loop, uv_tcp_t *tcp)
{
    struct sockaddr_in addr;
    cr_assert_eq(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    cr_assert_eq(uv_tcp_init(loop, tcp), 0);
    cr_assert_eq(uv_tcp_bind(tcp, (const struct sockaddr *)&addr, 0), 0);
}

static void server_start(uv_loop_t *loop, enum srv_mode mode, const char *response,
                         size_t response_len)
{
    srv.mode = mode;
    srv.response = response;
    srv.response_len = response_len;
    bind_any(loop, &srv.tcp);
    srv.tcp.data = &srv;
    cr_assert_eq(uv_listen((uv_stream_t *)&srv.tcp, 511, on_srv_connection), 0);
    srv.port = bound_port(&srv.tcp);
}

/* ---- client side ---- */

struct result {
    bool done;
    int calls;
    int status;
    long code;
    size_t body_len;
    char body[256];
    char retry_after[32];
    bool has_interim;
    uint64_t at_ms;
};

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "");
}

static void on_result(int status, const struct http_client_response *res, void *arg)
{
    struct result *r = arg;
    r->calls++;
    r->status = status;
    r->done = true;
    r->at_ms = uv_hrtime() / 1000000u;
    if (res == NULL)
        return;
    r->code = res->status;
    r->body_len = res->body_len;
    copy_str(r->body, sizeof(r->body), res->body);
    copy_str(r->retry_after, sizeof(r->retry_after),
             http_client_response_header(res, "retry-after"));
    r->has_interim = http_client_response_header(res, "X-Interim") != NULL;
}

static char url[128];

static const char *server_url(const char *path)
{
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", srv.port, path);
    return url;
}

static const char ok_response[] = "HTTP/1.1 200 OK\r\n"
                                  "Content-Type: text/plain\r\n"
                                  "Retry-After: 120\r\n"
                                  "Content-Length: 5\r\n"
                                  "\r\n"
                                  "hello";

static void setup(void)
{
    /* The test server writes to sockets the client may have closed. */
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(&srv, 0, sizeof(srv));
}

static void teardown(void)
{
    curl_global_cleanup();
}

TestSuite(http_client, .timeout = 60, .init = setup, .fini = teardown);

static struct http_client *start(uv_loop_t *loop, enum srv_mode mode, const char *response,
                                 size_t response_len)
{
    struct http_client *c = NULL;
    cr_assert_eq(uv_loop_init(loop), 0);
    server_start(loop, mode, response, response_len);
    cr_assert_eq(http_client_new(&c, loop), 0);
    return c;
}

/* Frees the client and checks that the loop closes with nothing left behind. */
static void stop(uv_loop_t *loop, struct http_client *c)
{
    http_client_free(c);
    cr_assert_eq(close_loop(loop), 0);
}

static void get(struct http_client *c, const char *path, struct result *r)
{
    struct http_client_request req = {.method = "GET", .url = server_url(path)};
    cr_assert_eq(http_client_request(c, &req, on_result, r), 0);
}

Test(http_client, get_returns_status_body_and_headers)
{
    uv_loop_t loop;
    struct http_client *c = start(&loop, SRV_ANSWER, ok_response, sizeof(ok_response) - 1);
    struct result r = {0};

    get(c, "/hello", &r);
    cr_assert_eq(r.calls, 0, "cb must never run inside http_client_request");
    cr_assert_eq(http_client_in_flight(c), 1);
    cr_assert(run_until(&loop, &r.done, 5000));
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(r.status, 0, "status %d", r.status);
    cr_assert_eq(r.code, 200);
    cr_assert_str_eq(r.body, "hello");
    cr_assert_eq(r.body_len, 5);
    cr_assert_str_eq(r.retry_after, "120");
    cr_assert_eq(http_client_in_flight(c), 0);
    cr_assert(strncmp(srv.last, "GET /hello HTTP/1.1\r\n", 21) == 0, "%s", srv.last);
    stop(&loop, c);
}

struct header_probe {
    bool done;
    const char *missing;
    char final_value[16];
    char first_dup[16];
};

static void on_header_probe(int status, const struct http_client_response *res, void *arg)
{
    struct header_probe *p = arg;
    p->done = true;
    cr_assert_eq(status, 0);
    cr_assert_eq(res->status, 200);
    p->missing = http_client_response_header(res, "X-Interim");
    copy_str(p->final_value, sizeof(p->final_value), http_client_response_header(res, "x-final"));
    copy_str(p->first_dup, sizeof(p->first_dup), http_client_response_header(res, "X-Dup"));
    cr_assert_null(http_client_response_header(res, "X-Absent"));
}

Test(http_client, headers_are_those_of_the_last_response_only)
{
    static const char two[] = "HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
                              "HTTP/1.1 200 OK\r\nX-Final:  v1 \r\nX-Dup: first\r\n"
                              "X-Dup: second\r\nContent-Length: 2\r\n\r\nok";
    uv_loop_t loop;
    struct http_client *c = start(&loop, SRV_ANSWER, two, sizeof(two) - 1);
    struct header_probe p = {0};
    struct http_client_request req = {.url = server_url("/h")};

    cr_assert_eq(http_client_request(c, &req, on_header_probe, &p), 0);
    cr_assert(run_until(&loop, &p.done, 5000));
    cr_assert_null(p.missing, "headers of the 100 response leaked into the final one");
    cr_assert_str_eq(p.final_value, "v1");
    cr_assert_str_eq(p.first_dup, "first");
    stop(&loop, c);
}

static bool contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

/* Sends body from a heap copy that is freed at once, so a client that kept the caller's
 * pointer reads freed memory (ASan and valgrind catch that). */
static void send_with_body(struct http_client *c, const char *method, const char *path,
                           const char *body, struct result *r)
{
    char *copy = strdup(body);
    char *h1 = strdup("Content-Type: application/json");
    char *h2 = strdup("X-Trace-Id: t-1");
    const char *headers[] = {h1, h2, NULL};
    struct http_client_request req = {.method = method,
                                      .url = server_url(path),
                                      .headers = headers,
                                      .body = copy,
                                      .body_len = strlen(body)};
    cr_assert_eq(http_client_request(c, &req, on_result, r), 0);
    free(copy);
    free(h1);
    free(h2);
}

static void assert_sent(const char *line, const char *body)
{
    char clen[64];
    size_t n = strlen(body);
    snprintf(clen, sizeof(clen), "\r\nContent-Length: %zu\r\n", n);
    cr_assert(strncmp(srv.last, line, strlen(line)) == 0, "request line: %.40s", srv.last);
    cr_assert(contains(srv.last, "\r\nX-Trace-Id: t-1\r\n"));
    cr_assert(contains(srv.last, "\r\nContent-Type: application/json\r\n"));
    cr_assert(contains(srv.last, clen));
    cr_assert(contains(srv.last, "\r\nUser-Agent: pds-trace/" PDS_TRACE_VERSION "\r\n"));
    cr_assert_not(contains(srv.last, "Expect:"), "curl asked for 100-continue");
    /* The server keeps as much of the body as fits after the head. */
    const char *head_end = strstr(srv.last, "\r\n\r\n");
    cr_assert_not_null(head_end);
    const char *kept = head_end + 4;
    size_t kept_len = srv.last_len - (size_t)(kept - srv.last);
    cr_assert_eq(srv.last_body_len, n);
    cr_assert(kept_len == n || srv.last_len == sizeof(srv.last) - 1);
    cr_assert_eq(memcmp(kept, body, kept_len), 0, "body differs");
}

Test(http_client, post_and_put_send_body_and_headers)
{
    uv_loop_t loop;
    struct http_client *c = start(&loop, SRV_ANSWER, ok_response, sizeof(ok_response) - 1);
    struct result r1 = {0}, r2 = {0};
    /* Over 1 MiB (and 1 KiB for older curl), curl adds "Expect: 100-continue" unless told
     * not to, and then waits a second for an answer this server never sends. */
    size_t big_len = 2u * 1024u * 1024u;
    char *big = malloc(big_len + 1);
    cr_assert_not_null(big);
    memset(big, 'x', big_len);
    big[big_len] = '\0';

    send_with_body(c, "POST", "/submit", "{\"nhs\":\"9000000009\"}", &r1);
    cr_assert(run_until(&loop, &r1.done, 5000));
    cr_assert_eq(r1.status, 0);
    assert_sent("POST /submit HTTP/1.1\r\n", "{\"nhs\":\"9000000009\"}");

    send_with_body(c, "PUT", "/put", big, &r2);
    cr_assert(run_until(&loop, &r2.done, 10000));
    cr_assert_eq(r2.status, 0);
    assert_sent("PUT /put HTTP/1.1\r\n", big);
    cr_assert_eq(srv.requests, 2);
    free(big);
    stop(&loop, c);
}

Test(http_client, sequential_requests_reuse_the_connection)
{
    uv_loop_t loop;
    struct http_client *c = start(&loop, SRV_ANSWER, ok_response, sizeof(ok_response) - 1);
    struct result r1 = {0}, r2 = {0};

    get(c, "/one", &r1);
    cr_assert(run_until(&loop, &r1.done, 5000));
    get(c, "/two", &r2);
    cr_assert(run_until(&loop, &r2.done, 5000));
    cr_assert_eq(r1.status, 0);
    cr_assert_eq(r2.status, 0);
    cr_assert_eq(srv.requests, 2);
    cr_assert_eq(srv.accepted, 1, "accepted %u connections", srv.accepted);
    stop(&loop, c);
}

/* Only the timer path can end this transfer: no byte ever arrives (CONVENTIONS §1.1
 * pitfall 10). */
Test(http_client, silent_server_times_out_on_the_timer_path)
{
    uv_loop_t loop;
    struct http_client *c = start(&loop, SRV_SILENT, NULL, 0);
    struct result r = {0};
    struct http_client_request req = {.url = server_url("/slow"), .timeout_ms = 200};
    uint64_t t0 = uv_hrtime() / 1000000u;

    cr_assert_eq(http_client_request(c, &req, on_result, &r), 0);
    cr_assert(run_until(&loop, &r.done, 2000), "the timeout never completed the transfer");
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(r.status, ERR_UPSTREAM_TIMEOUT, "status %d", r.status);
    cr_assert_geq(r.at_ms - t0, 150);
    cr_assert_lt(r.at_ms - t0, 1000);
    cr_assert_eq(srv.requests, 1, "the request should have reached the server");
    stop(&loop, c);
}

Test(http_client, reset_connection_is_upstream_error)
{
    uv_loop_t loop;
    struct http_client *c = start(&loop, SRV_RESET, NULL, 0);
    struct result r = {0};

    get(c, "/reset", &r);
    cr_assert(run_until(&loop, &r.done, 5000));
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(r.status, ERR_UPSTREAM, "status %d", r.status);
    cr_assert_eq(srv.requests, 1);
    stop(&loop, c);
}

Test(http_client, refused_connection_is_upstream_error)
{
    uv_loop_t loop;
    uv_tcp_t unused;
    struct http_client *c = start(&loop, SRV_ANSWER, ok_response, sizeof(ok_response) - 1);
    struct result r = {0};
    char refused[64];

    /* A bound socket that never listens: its port is ours, and connecting is refused. */
    bind_any(&loop, &unused);
    snprintf(refused, sizeof(refused), "http://127.0.0.1:%d/", bound_port(&unused));
    struct http_client_request req = {.url = refused};
    cr_assert_eq(http_client_request(c, &req, on_result, &r), 0);
    cr_assert(run_until(&loop, &r.done, 5000));
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(r.status, ERR_UPSTREAM, "status %d", r.status);
    cr_assert_eq(srv.accepted, 0);
    stop(&loop, c);
}

Test(http_client, body_over_the_ceiling_is_too_large)
{
    static char big[128 + 65536];
    int head = snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n");
    memset(big + head, 'b', 65536);
    uv_loop_t loop;
    struct http_client *c = start(&loop, SRV_ANSWER, big, (size_t)head + 65536);
    struct result small = {0}, enough = {0};
    struct http_client_request req = {.url = server_url("/big"), .max_response_bytes = 1000};

    cr_assert_eq(http_client_request(c, &req, on_result, &small), 0);
    cr_assert(run_until(&loop, &small.done, 5000));
    cr_assert_eq(small.calls, 1);
    cr_assert_eq(small.status, ERR_TOO_LARGE, "status %d", small.status);

    /* The same response fits a larger ceiling, so the ceiling was the cause. */
    req.max_response_bytes = 65536;
    cr_assert_eq(http_client_request(c, &req, on_result, &enough), 0);
    cr_assert(run_until(&loop, &enough.done, 5000));
    cr_assert_eq(enough.status, 0, "status %d", enough.status);
    cr_assert_eq(enough.body_len, 65536);
    stop(&loop, c);
}

#define MANY 200

struct many {
    bool done;
    unsigned completed;
    int calls[MANY];
    int status[MANY];
    long code[MANY];
};

static struct many many;

static void on_many(int status, const struct http_client_response *res, void *arg)
{
    size_t i = (size_t)((int *)arg - many.calls);
    many.calls[i]++;
    many.status[i] = status;
    many.code[i] = res != NULL ? res->status : 0;
    if (++many.completed == MANY)
        many.done = true;
}

Test(http_client, many_concurrent_requests_complete_once_each)
{
    uv_loop_t loop;
    struct http_client *c = start(&loop, SRV_ANSWER, ok_response, sizeof(ok_response) - 1);
    struct http_client_request req = {.url = server_url("/many")};

    for (int i = 0; i < MANY; i++)
        cr_assert_eq(http_client_request(c, &req, on_many, &many.calls[i]), 0);
    cr_assert_eq(http_client_in_flight(c), MANY);
    cr_assert(run_until(&loop, &many.done, 30000), "only %u completed", many.completed);
    /* Give a duplicate completion a chance to show up. */
    uv_run(&loop, UV_RUN_NOWAIT);
    for (int i = 0; i < MANY; i++) {
        cr_assert_eq(many.calls[i], 1, "request %d completed %d times", i, many.calls[i]);
        cr_assert_eq(many.status[i], 0, "request %d: status %d", i, many.status[i]);
        cr_assert_eq(many.code[i], 200);
    }
    cr_assert_eq(srv.requests, MANY);
    cr_assert_eq(http_client_in_flight(c), 0);
    stop(&loop, c);
}

struct chain {
    struct http_client *client;
    int start_err;
    unsigned in_flight_in_cb;
    struct result first;
    struct result second;
};

static void on_first(int status, const struct http_client_response *res, void *arg)
{
    struct chain *ch = arg;
    on_result(status, res, &ch->first);
    ch->in_flight_in_cb = http_client_in_flight(ch->client);
    struct http_client_request req = {
        .method = "POST", .url = server_url("/second"), .body = "wb", .body_len = 2};
    ch->start_err = http_client_request(ch->client, &req, on_result, &ch->second);
}

Test(http_client, completion_can_start_another_request)
{
    uv_loop_t loop;
    struct chain ch = {.start_err = 1};
    ch.client = start(&loop, SRV_ANSWER, ok_response, sizeof(ok_response) - 1);
    struct http_client_request req = {.url = server_url("/first")};

    cr_assert_eq(http_client_request(ch.client, &req, on_first, &ch), 0);
    cr_assert(run_until(&loop, &ch.second.done, 5000));
    cr_assert_eq(ch.start_err, 0);
    cr_assert_eq(ch.in_flight_in_cb, 0, "the finished transfer still counted in its cb");
    cr_assert_eq(ch.first.calls, 1);
    cr_assert_eq(ch.first.status, 0);
    cr_assert_eq(ch.second.calls, 1);
    cr_assert_eq(ch.second.status, 0);
    cr_assert_str_eq(ch.second.body, "hello");
    cr_assert_eq(srv.requests, 2);
    cr_assert(strncmp(srv.last, "POST /second ", 13) == 0);
    stop(&loop, ch.client);
}

#define INFLIGHT 5

struct cancel_probe {
    struct http_client *client;
    int calls[INFLIGHT];
    int status[INFLIGHT];
    int restart_err[INFLIGHT];
};

static struct cancel_probe cp;

static void on_cancelled(int status, const struct http_client_response *res, void *arg)
{
    size_t i = (size_t)((int *)arg - cp.calls);
    struct http_client_request req = {.url = server_url("/again")};
    cp.calls[i]++;
    cp.status[i] = status;
    cr_assert_null(res);
    /* A client being freed refuses new work, and freeing it again does nothing. */
    cp.restart_err[i] = http_client_request(cp.client, &req, on_result, NULL);
    http_client_free(cp.client);
}

Test(http_client, free_cancels_in_flight_requests)
{
    uv_loop_t loop;
    cp.client = start(&loop, SRV_SILENT, NULL, 0);
    struct http_client_request req = {.url = server_url("/never")};

    srv.want_requests = INFLIGHT;
    for (int i = 0; i < INFLIGHT; i++)
        cr_assert_eq(http_client_request(cp.client, &req, on_cancelled, &cp.calls[i]), 0);
    cr_assert(run_until(&loop, &srv.reached, 5000));
    for (int i = 0; i < INFLIGHT; i++)
        cr_assert_eq(cp.calls[i], 0);
    http_client_free(cp.client);
    for (int i = 0; i < INFLIGHT; i++) {
        cr_assert_eq(cp.calls[i], 1, "request %d: %d calls", i, cp.calls[i]);
        cr_assert_eq(cp.status[i], UV_ECANCELED);
        cr_assert_eq(cp.restart_err[i], UV_ECANCELED);
    }
    cr_assert_eq(close_loop(&loop), 0);
    for (int i = 0; i < INFLIGHT; i++)
        cr_assert_eq(cp.calls[i], 1);
}

/* Leaves the connection unaccepted: the kernel completes the handshake, nobody answers. */
static void on_ignore_connection(uv_stream_t *server, int status)
{
    (void)server;
    (void)status;
}

struct free_probe {
    struct http_client *client;
    struct result first;
    struct result other;
};

static void on_free_from_cb(int status, const struct http_client_response *res, void *arg)
{
    struct free_probe *fp = arg;
    on_result(status, res, &fp->first);
    http_client_free(fp->client);
}

Test(http_client, completion_can_free_the_client)
{
    uv_loop_t loop;
    struct free_probe fp = {0};
    fp.client = start(&loop, SRV_ANSWER, ok_response, sizeof(ok_response) - 1);
    struct http_client_request answered = {.url = server_url("/answered")};
    char silent[64];

    /* A second, silent server keeps the other transfer in flight. */
    uv_tcp_t quiet;
    bind_any(&loop, &quiet);
    cr_assert_eq(uv_listen((uv_stream_t *)&quiet, 8, on_ignore_connection), 0);
    snprintf(silent, sizeof(silent), "http://127.0.0.1:%d/", bound_port(&quiet));
    struct http_client_request pending = {.url = silent};

    cr_assert_eq(http_client_request(fp.client, &pending, on_result, &fp.other), 0);
    cr_assert_eq(http_client_request(fp.client, &answered, on_free_from_cb, &fp), 0);
    cr_assert(run_until(&loop, &fp.first.done, 5000));
    cr_assert_eq(fp.first.calls, 1);
    cr_assert_eq(fp.first.status, 0);
    cr_assert_eq(fp.other.calls, 1);
    cr_assert_eq(fp.other.status, UV_ECANCELED);
    cr_assert_eq(close_loop(&loop), 0);
    cr_assert_eq(fp.first.calls, 1);
    cr_assert_eq(fp.other.calls, 1);
}

static void on_never(int status, const struct http_client_response *res, void *arg)
{
    (void)status;
    (void)res;
    (*(int *)arg)++;
}

Test(http_client, bad_requests_fail_at_once_without_callback)
{
    uv_loop_t loop;
    struct http_client *c = start(&loop, SRV_ANSWER, ok_response, sizeof(ok_response) - 1);
    int calls = 0;
    const char *bad_headers[] = {"X-Ok: 1", "X-Bad: a\r\nInjected: b", NULL};
    struct http_client_request no_url = {.method = "GET"};
    struct http_client_request bad_hdr = {.url = server_url("/"), .headers = bad_headers};
    struct http_client_request bad_method = {.method = "GET /x", .url = server_url("/")};
    struct http_client_request bad_body = {.url = server_url("/"), .body_len = 3};

    cr_assert_eq(http_client_request(c, &no_url, on_never, &calls), ERR_INVALID_INPUT);
    cr_assert_eq(http_client_request(c, &bad_hdr, on_never, &calls), ERR_INVALID_INPUT);
    cr_assert_eq(http_client_request(c, &bad_method, on_never, &calls), ERR_INVALID_INPUT);
    cr_assert_eq(http_client_request(c, &bad_body, on_never, &calls), ERR_INVALID_INPUT);
    cr_assert_eq(http_client_in_flight(c), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    stop(&loop, c);
    cr_assert_eq(calls, 0);
    cr_assert_eq(srv.accepted, 0);
}

/* ---- libcurl's own re-sends (CONVENTIONS §1.1 pitfall 15) ---- */

struct sends {
    unsigned calls;
    unsigned n[4];
    unsigned stop_from; /* refuse sends numbered this or above; 0: never */
};

static int on_send_probe(unsigned n, void *arg)
{
    struct sends *s = arg;
    if (s->calls < 4)
        s->n[s->calls] = n;
    s->calls++;
    return s->stop_from != 0 && n >= s->stop_from ? -1 : 0;
}

/* One GET, run to its end, whose sends are counted. */
static void get_counting(uv_loop_t *loop, struct http_client *c, const char *path, struct sends *s,
                         struct result *r)
{
    struct http_client_request req = {
        .url = server_url(path), .on_send = on_send_probe, .send_arg = s};
    cr_assert_eq(http_client_request(c, &req, on_result, r), 0);
    cr_assert(run_until(loop, &r->done, 5000));
    cr_assert_eq(r->calls, 1);
}

Test(http_client, send_hook_sees_curls_own_resend_on_a_dead_reused_connection)
{
    uv_loop_t loop;
    struct http_client *c = start(&loop, SRV_CLOSE_REUSED, ok_response, sizeof(ok_response) - 1);
    struct sends first = {0}, second = {0};
    struct result r1 = {0}, r2 = {0};

    get_counting(&loop, c, "/one", &first, &r1);
    cr_assert_eq(r1.status, 0, "status %d", r1.status);
    cr_assert_eq(first.calls, 1);
    cr_assert_eq(first.n[0], 1);
    /* The second request goes out on the pooled connection, which the server drops
     * unanswered; libcurl sends it again on a new one by itself. */
    get_counting(&loop, c, "/two", &second, &r2);
    cr_assert_eq(r2.status, 0, "status %d", r2.status);
    cr_assert_eq(srv.requests, 3);
    cr_assert_eq(srv.accepted, 2);
    cr_assert_eq(second.calls, 2, "the hook saw %u sends of a request sent twice", second.calls);
    cr_assert_eq(second.n[0], 1);
    cr_assert_eq(second.n[1], 2);
    stop(&loop, c);
}

Test(http_client, send_hook_can_stop_a_resend)
{
    uv_loop_t loop;
    struct http_client *c = start(&loop, SRV_CLOSE_REUSED, ok_response, sizeof(ok_response) - 1);
    struct sends first = {0}, second = {.stop_from = 2};
    struct result r1 = {0}, r2 = {0};

    get_counting(&loop, c, "/one", &first, &r1);
    get_counting(&loop, c, "/two", &second, &r2);
    cr_assert_eq(r2.status, ERR_UPSTREAM, "status %d", r2.status);
    cr_assert_eq(second.calls, 2);
    cr_assert_eq(srv.requests, 2, "the refused re-send reached the server");
    stop(&loop, c);
}

/* ---- TLS: openssl s_server with a throwaway CA ---- */

static struct tls_pki pki;
static struct tls_server tls_srv;
static FILE *log_capture;

static void tls_start(bool require_client_cert)
{
    cr_assert_eq(tls_pki_make(&pki), 0, "could not make the test PKI");
    cr_assert_eq(tls_server_start(&tls_srv, &pki, require_client_cert), 0,
                 "openssl s_server did not start");
    log_capture = tmpfile();
    cr_assert_not_null(log_capture);
    log_set_stream(log_capture);
}

/* Stops the server and returns how many captured log lines hold both needles. */
static int tls_stop(const char *needle, const char *needle2)
{
    char line[2048];
    int n = 0;
    log_set_stream(NULL);
    tls_server_stop(&tls_srv);
    tls_pki_remove(&pki);
    rewind(log_capture);
    while (fgets(line, sizeof(line), log_capture) != NULL)
        n += strstr(line, needle) != NULL && strstr(line, needle2) != NULL;
    fclose(log_capture);
    return n;
}

/* One GET to the TLS server on a loop of its own; the result is in r. */
static void tls_get(const struct http_client_tls *tls, struct result *r)
{
    uv_loop_t loop;
    struct http_client *c = NULL;
    char u[64];
    snprintf(u, sizeof(u), "https://127.0.0.1:%d/", tls_srv.port);
    struct http_client_request req = {.url = u, .tls = tls, .timeout_ms = 10000};
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(http_client_new(&c, &loop), 0);
    cr_assert_eq(http_client_request(c, &req, on_result, r), 0);
    cr_assert(run_until(&loop, &r->done, 15000));
    cr_assert_eq(r->calls, 1);
    stop(&loop, c);
}

Test(http_client, tls_unknown_ca_is_upstream_tls_with_one_warning)
{
    struct result r = {0};
    tls_start(false);
    tls_get(NULL, &r);
    cr_assert_eq(r.status, ERR_UPSTREAM_TLS, "status %s", err_name(r.status));
    cr_assert_eq(tls_stop("\"upstream TLS failure\"", "\"host\":\"127.0.0.1\""), 1,
                 "want one warning naming the host");
}

Test(http_client, tls_with_ca_file_succeeds)
{
    struct result r = {0};
    struct http_client_tls tls = {0};
    tls_start(false);
    tls.ca_file = pki.ca;
    tls_get(&tls, &r);
    cr_assert_eq(r.status, 0, "status %s", err_name(r.status));
    cr_assert_eq(r.code, 200);
    cr_assert_eq(tls_stop("TLS", "failure"), 0);
}

Test(http_client, tls_unreadable_ca_file_is_upstream_tls)
{
    struct result r = {0};
    struct http_client_tls tls = {.ca_file = "/nonexistent/ca.pem"};
    tls_start(false);
    tls_get(&tls, &r);
    cr_assert_eq(r.status, ERR_UPSTREAM_TLS, "status %s", err_name(r.status));
    cr_assert_eq(tls_stop("\"upstream TLS failure\"", "/nonexistent/ca.pem"), 1,
                 "want one warning quoting curl on the CA file");
}

Test(http_client, mutual_tls_with_client_certificate_succeeds)
{
    struct result r = {0};
    struct http_client_tls tls = {0};
    tls_start(true);
    tls = (struct http_client_tls){pki.ca, pki.client_cert, pki.client_key};
    tls_get(&tls, &r);
    cr_assert_eq(r.status, 0, "status %s", err_name(r.status));
    cr_assert_eq(r.code, 200);
    tls_stop("", "");
}

/* TLS 1.3 reports the refusal as an alert at the first read, which curl 7.88 calls a
 * receive error: it must still count as a TLS failure, not a transient one. */
Test(http_client, mutual_tls_without_client_certificate_is_upstream_tls)
{
    struct result r = {0};
    struct http_client_tls tls = {0};
    tls_start(true);
    tls.ca_file = pki.ca;
    tls_get(&tls, &r);
    cr_assert_eq(r.status, ERR_UPSTREAM_TLS, "status %s", err_name(r.status));
    cr_assert_eq(tls_stop("\"upstream TLS failure\"", "alert"), 1);
}
