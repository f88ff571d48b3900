#include "pdstrace/http_server.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "pdstrace/err.h"
#include "pdstrace/metrics.h"
#include "test_util.h"

/* The server runs on a private loop in the test's main thread; a client thread drives it
 * with blocking sockets (receive timeouts make a bug fail instead of hang) and records
 * what it saw, and the main thread asserts after joining it. */

#define MAX_RESP  16
#define MAX_NEVER 4

struct resp {
    bool ok;
    int status;
    char head[4096];
    char body[8192];
    size_t body_len;
    bool closed_after; /* the server closed the connection after this response */
    long elapsed_ms;
};

struct ctx {
    uv_loop_t loop;
    struct http_server *srv;
    struct http_server_config cfg;
    uv_async_t async;
    bool client_done;
    pthread_t thread;
    void (*client)(struct ctx *);
    int port;
    struct resp r[MAX_RESP];
    int flags[8]; /* per-test client observations */
    long times[8];
    /* handler side */
    unsigned handled;
    unsigned delayed_pending;
    bool delayed_done;
    bool detached_seen;
    struct http_exchange *never[MAX_NEVER];
    unsigned nnever;
    bool abort_delayed; /* delayed handlers abort instead of answering */
    bool post_each;     /* the handler posts sem for every request it gets */
    bool drain_on_request;
    unsigned drain_deadline;
    bool drained;
    int drain_status;
    uint64_t drain_started_ms;
    uint64_t drained_ms;
    sem_t sem;
    /* server_sync: the client thread asks, the loop answers after reading */
    uv_async_t sync_async;
    uv_check_t sync_check;
    unsigned sync_turns;
    sem_t synced;
};

struct delayed {
    uv_timer_t timer;
    struct http_exchange *x;
    struct ctx *t;
};

static struct ctx T;

/* ---- handlers ---------------------------------------------------------------------- */

static void echo(struct http_exchange *x)
{
    size_t blen;
    const char *body = http_exchange_body(x, &blen);
    const char *xt = http_exchange_header(x, "X-Test");
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s?,s:I,s:s%,s:s}", "method", http_exchange_method(x), "path",
                  http_exchange_path(x), "query", http_exchange_query(x), "x_test", xt, "body_len",
                  (json_int_t)blen, "body", body, blen, "request_id", http_exchange_request_id(x));
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s != NULL)
        http_exchange_respond(x, 200, "application/json", s, strlen(s));
    else
        http_exchange_respond_error(x, 500, "internal", NULL, "echo failed");
    free(s);
    json_decref(j);
}

static void on_delayed_close(uv_handle_t *h)
{
    free(h->data);
}

static void on_delay(uv_timer_t *timer)
{
    struct delayed *d = timer->data;
    d->t->detached_seen = http_exchange_is_detached(d->x);
    if (d->t->abort_delayed)
        http_exchange_abort(d->x);
    else
        echo(d->x);
    if (--d->t->delayed_pending == 0)
        d->t->delayed_done = true;
    uv_close((uv_handle_t *)timer, on_delayed_close);
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void on_drained(int status, void *arg)
{
    struct ctx *t = arg;
    t->drained = true;
    t->drain_status = status;
    t->drained_ms = now_ms();
}

static void maybe_drain(struct ctx *t)
{
    if (!t->drain_on_request)
        return;
    t->drain_on_request = false;
    t->drain_started_ms = now_ms();
    http_server_drain(t->srv, t->drain_deadline, on_drained, t);
    sem_post(&t->sem);
}

static void handler(struct http_exchange *x, void *arg)
{
    struct ctx *t = arg;
    const char *path = http_exchange_path(x);
    t->handled++;
    if (strncmp(path, "/delay/", 7) == 0) {
        struct delayed *d = calloc(1, sizeof(*d));
        cr_assert_not_null(d);
        d->x = x;
        d->t = t;
        d->timer.data = d;
        t->delayed_pending++;
        /* Timers count from the loop's cached time, which is stale after slow work (such
         * as valgrind translating new code); the delay must be real. */
        uv_update_time(&t->loop);
        uv_timer_init(&t->loop, &d->timer);
        uv_timer_start(&d->timer, on_delay, strtoul(path + 7, NULL, 10), 0);
    } else if (strcmp(path, "/abort") == 0) {
        http_exchange_abort(x);
    } else if (strcmp(path, "/never") == 0 && t->nnever < MAX_NEVER) {
        t->never[t->nnever++] = x;
    } else {
        echo(x);
    }
    if (t->post_each)
        sem_post(&t->sem);
    maybe_drain(t);
}

/* ---- fixture ----------------------------------------------------------------------- */

static void on_async(uv_async_t *a)
{
    ((struct ctx *)a->data)->client_done = true;
}

/* Runs after the I/O of each loop iteration. Two turns: in the first, a connection the
 * client has just opened may only be accepted, its reads starting with the next poll. */
static void on_sync_check(uv_check_t *h)
{
    struct ctx *t = h->data;
    if (--t->sync_turns > 0)
        return;
    uv_check_stop(h);
    sem_post(&t->synced);
}

static void on_sync(uv_async_t *a)
{
    struct ctx *t = a->data;
    t->sync_turns = 2;
    uv_check_start(&t->sync_check, on_sync_check);
}

static void *client_main(void *arg)
{
    struct ctx *t = arg;
    t->client(t);
    uv_async_send(&t->async);
    return NULL;
}

static struct http_server_config default_cfg(void)
{
    struct http_server_config cfg = {
        .host = "127.0.0.1",
        .port = 0,
        .max_header_bytes = 4096,
        .max_body_bytes = 4096,
        .header_timeout_ms = 3000,
        .body_timeout_ms = 3000,
        .idle_timeout_ms = 3000,
        .max_connections = 64,
        .handler = handler,
        .handler_arg = &T,
    };
    return cfg;
}

static void start(const struct http_server_config *cfg)
{
    memset(&T, 0, sizeof(T));
    cr_assert_eq(uv_loop_init(&T.loop), 0);
    T.cfg = *cfg;
    cr_assert_eq(http_server_new(&T.srv, &T.loop, &T.cfg), 0);
    T.port = http_server_port(T.srv);
    cr_assert_gt(T.port, 0);
    uv_async_init(&T.loop, &T.async, on_async);
    T.async.data = &T;
    sem_init(&T.sem, 0, 0);
    uv_async_init(&T.loop, &T.sync_async, on_sync);
    T.sync_async.data = &T;
    uv_check_init(&T.loop, &T.sync_check);
    T.sync_check.data = &T;
    sem_init(&T.synced, 0, 0);
}

static void run_client(void (*client)(struct ctx *), unsigned deadline_ms)
{
    T.client = client;
    T.client_done = false;
    cr_assert_eq(pthread_create(&T.thread, NULL, client_main, &T), 0);
    bool ok = run_until(&T.loop, &T.client_done, deadline_ms);
    pthread_join(T.thread, NULL);
    cr_assert(ok, "client did not finish in time");
}

static void finish(void)
{
    for (unsigned i = 0; i < T.nnever; i++)
        http_exchange_respond(T.never[i], 200, NULL, NULL, 0);
    http_server_free(T.srv);
    uv_close((uv_handle_t *)&T.async, NULL);
    uv_close((uv_handle_t *)&T.sync_async, NULL);
    uv_close((uv_handle_t *)&T.sync_check, NULL);
    cr_assert_eq(close_loop(&T.loop), 0);
    sem_destroy(&T.sem);
    sem_destroy(&T.synced);
}

/* ---- blocking client --------------------------------------------------------------- */

struct cli {
    int fd;
    char buf[65536];
    size_t len;
};

static void set_rcvtimeo(int fd, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* Connects from the loopback address from (any address of 127/8 works on Linux), or from
 * the kernel's choice when from is NULL. */
static int cli_connect_from(struct cli *c, int port, const char *from)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct sockaddr_in src = {.sin_family = AF_INET};
    int one = 1;
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    c->len = 0;
    c->buf[0] = '\0';
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    set_rcvtimeo(c->fd, 3000);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (from != NULL && (inet_pton(AF_INET, from, &src.sin_addr) != 1 ||
                         bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0)) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

static int cli_connect(struct cli *c, int port)
{
    return cli_connect_from(c, port, NULL);
}

static void cli_close(struct cli *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static bool cli_send(struct cli *c, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

static bool cli_sends(struct cli *c, const char *s)
{
    return cli_send(c, s, strlen(s));
}

/* Reads more bytes; 0 on EOF or reset, -1 on timeout. */
static int cli_fill(struct cli *c)
{
    if (c->len >= sizeof(c->buf) - 1)
        return -1;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    if (n > 0) {
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
        return 1;
    }
    if (n == 0 || errno == ECONNRESET)
        return 0;
    return -1;
}

static const char *find_header(const char *head, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r\n");
            if (len >= outlen)
                len = outlen - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
    }
    return NULL;
}

static bool take_head(struct cli *c, struct resp *r, size_t *hlen)
{
    char *end;
    while ((end = strstr(c->buf, "\r\n\r\n")) == NULL)
        if (cli_fill(c) <= 0)
            return false;
    *hlen = (size_t)(end - c->buf) + 4;
    if (*hlen >= sizeof(r->head))
        return false;
    memcpy(r->head, c->buf, *hlen);
    r->head[*hlen] = '\0';
    if (strncmp(r->head, "HTTP/1.1 ", 9) != 0)
        return false;
    r->status = (int)strtol(r->head + 9, NULL, 10);
    return true;
}

/* Reads one response; a HEAD response has no body however long Content-Length says. */
static bool cli_read(struct cli *c, struct resp *r, bool head_only)
{
    size_t hlen;
    char v[64];
    memset(r, 0, sizeof(*r));
    if (!take_head(c, r, &hlen))
        return false;
    size_t blen = find_header(r->head, "Content-Length", v, sizeof(v)) ? strtoul(v, 0, 10) : 0;
    if (head_only)
        blen = 0;
    while (c->len < hlen + blen)
        if (cli_fill(c) <= 0)
            return false;
    if (blen >= sizeof(r->body))
        return false;
    memcpy(r->body, c->buf + hlen, blen);
    r->body_len = blen;
    memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen + 1);
    c->len -= hlen + blen;
    r->ok = true;
    return true;
}

/* True when the server closes within ms (extra bytes are discarded). */
static bool cli_wait_closed(struct cli *c, long ms)
{
    set_rcvtimeo(c->fd, ms);
    c->len = 0;
    int got;
    while ((got = cli_fill(c)) > 0)
        c->len = 0;
    c->buf[0] = '\0';
    set_rcvtimeo(c->fd, 3000);
    return got == 0;
}

static bool sem_wait_ms(sem_t *s, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return sem_timedwait(s, &ts) == 0;
}

/* Returns once the server's loop has read what this thread sent before the call: those
 * bytes were already queued on the server's socket when the loop woke up for the request,
 * so the poll that saw it saw them too. Puts the pieces of a request into separate reads,
 * or lets the server act on one piece before the next is sent, without guessing a time. */
static bool server_sync(struct ctx *t)
{
    uv_async_send(&t->sync_async);
    return sem_wait_ms(&t->synced, 3000);
}

static bool exchange_once(struct cli *c, const char *req, struct resp *r)
{
    return cli_sends(c, req) && cli_read(c, r, false);
}

static json_t *body_json(const struct resp *r)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    cr_assert_not_null(j, "body is not JSON: %.*s", (int)r->body_len, r->body);
    return j;
}

static const char *jstr(json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s != NULL ? s : "";
}

static const char *hdr(const struct resp *r, const char *name)
{
    static char v[256];
    return find_header(r->head, name, v, sizeof(v));
}

static void assert_error_body(const struct resp *r, int status, const char *code)
{
    cr_assert_eq(r->status, status, "status %d, expected %d", r->status, status);
    json_t *j = body_json(r);
    json_t *e = json_object_get(j, "error");
    cr_assert_str_eq(jstr(e, "code"), code);
    cr_assert_not_null(json_object_get(e, "message"));
    json_decref(j);
}

static bool is_uuid4(const char *s)
{
    if (s == NULL || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : strchr("0123456789abcdef", s[i]) == NULL)
            return false;
    }
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

TestSuite(http_server, .timeout = 30);

/* ---- 1. simple GET and request ids -------------------------------------------------- */

static void client_simple(struct ctx *t)
{
    struct cli c;
    char longid[200];
    char req[512];
    memset(longid, 'a', 129);
    longid[129] = '\0';
    if (cli_connect(&c, t->port) != 0)
        return;
    exchange_once(&c, "GET /hello?x=1&y=%20 HTTP/1.1\r\nHost: a\r\nX-Test: foo\r\n\r\n", &t->r[0]);
    exchange_once(&c, "GET /id HTTP/1.1\r\nX-Request-ID: abc-123_Z\r\n\r\n", &t->r[1]);
    snprintf(req, sizeof(req), "GET /id HTTP/1.1\r\nX-Request-ID: %s\r\n\r\n", longid);
    exchange_once(&c, req, &t->r[2]);
    exchange_once(&c, "GET /id HTTP/1.1\r\nX-Request-ID: has space\r\n\r\n", &t->r[3]);
    exchange_once(&c, "GET /id HTTP/1.1\r\nX-Request-ID: q\"uote\r\n\r\n", &t->r[4]);
    cli_sends(&c, "HEAD /head HTTP/1.1\r\n\r\n");
    cli_read(&c, &t->r[5], true);
    exchange_once(&c, "GET /after-head HTTP/1.1\r\n\r\n", &t->r[6]);
    cli_close(&c);
}

Test(http_server, simple_get_headers_and_request_ids)
{
    struct http_server_config cfg = default_cfg();
    start(&cfg);
    run_client(client_simple, 10000);
    struct resp *r = T.r;
    for (int i = 0; i < 7; i++)
        cr_assert(r[i].ok, "response %d missing", i);
    cr_assert_eq(r[0].status, 200);
    cr_assert(strncmp(r[0].head, "HTTP/1.1 200 OK\r\n", 17) == 0);
    cr_assert_not_null(hdr(&r[0], "Date"));
    cr_assert_str_eq(hdr(&r[0], "Content-Type"), "application/json");
    cr_assert_eq(strtoul(hdr(&r[0], "Content-Length"), NULL, 10), r[0].body_len);
    json_t *j = body_json(&r[0]);
    cr_assert_str_eq(jstr(j, "method"), "GET");
    cr_assert_str_eq(jstr(j, "path"), "/hello");
    cr_assert_str_eq(jstr(j, "query"), "x=1&y=%20");
    cr_assert_str_eq(jstr(j, "x_test"), "foo");
    cr_assert(is_uuid4(hdr(&r[0], "X-Request-ID")));
    cr_assert_str_eq(jstr(j, "request_id"), hdr(&r[0], "X-Request-ID"));
    json_decref(j);
    cr_assert_str_eq(hdr(&r[1], "X-Request-ID"), "abc-123_Z");
    cr_assert(is_uuid4(hdr(&r[2], "X-Request-ID")), "too long id kept");
    cr_assert(is_uuid4(hdr(&r[3], "X-Request-ID")), "id with space kept");
    cr_assert(is_uuid4(hdr(&r[4], "X-Request-ID")), "id with quote kept");
    cr_assert_str_neq(hdr(&r[2], "X-Request-ID"), "");
    /* HEAD: the would-be body's length, and no body bytes before the next response. */
    cr_assert_eq(r[5].status, 200);
    cr_assert_gt(strtoul(hdr(&r[5], "Content-Length"), NULL, 10), 0);
    cr_assert_eq(r[6].status, 200);
    j = body_json(&r[6]);
    cr_assert_str_eq(jstr(j, "path"), "/after-head");
    json_decref(j);
    cr_assert_eq(T.handled, 7);
    finish();
}

/* ---- 2. keep-alive and HTTP/1.0 --------------------------------------------------- */

static void client_keepalive(struct ctx *t)
{
    struct cli c;
    const char *paths[] = {"/a", "/b", "/c"};
    char req[128];
    if (cli_connect(&c, t->port) != 0)
        return;
    for (int i = 0; i < 3; i++) {
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", paths[i]);
        exchange_once(&c, req, &t->r[i]);
    }
    cli_close(&c);
    if (cli_connect(&c, t->port) != 0)
        return;
    exchange_once(&c, "GET /old HTTP/1.0\r\n\r\n", &t->r[3]);
    t->r[3].closed_after = cli_wait_closed(&c, 2000);
    cli_close(&c);
    if (cli_connect(&c, t->port) != 0)
        return;
    exchange_once(&c, "GET /old-ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &t->r[4]);
    exchange_once(&c, "GET /old-ka2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &t->r[5]);
    exchange_once(&c, "GET /close HTTP/1.1\r\nConnection: close\r\n\r\n", &t->r[6]);
    t->r[6].closed_after = cli_wait_closed(&c, 2000);
    cli_close(&c);
}

Test(http_server, keep_alive_and_http10)
{
    struct http_server_config cfg = default_cfg();
    start(&cfg);
    run_client(client_keepalive, 15000);
    const char *want[] = {"/a", "/b", "/c"};
    for (int i = 0; i < 3; i++) {
        cr_assert(T.r[i].ok && T.r[i].status == 200, "request %d not answered", i);
        json_t *j = body_json(&T.r[i]);
        cr_assert_str_eq(jstr(j, "path"), want[i]);
        json_decref(j);
        cr_assert_null(hdr(&T.r[i], "Connection"));
    }
    cr_assert_eq(T.r[3].status, 200);
    /* A request without a single header: the echo handler's header lookup found nothing
     * (it once did pointer arithmetic on NULL there, which clang's UBSan reports). */
    json_t *bare = body_json(&T.r[3]);
    cr_assert(json_is_null(json_object_get(bare, "x_test")));
    cr_assert_str_eq(jstr(bare, "path"), "/old");
    json_decref(bare);
    cr_assert_str_eq(hdr(&T.r[3], "Connection"), "close");
    cr_assert(T.r[3].closed_after, "HTTP/1.0 connection left open");
    cr_assert_str_eq(hdr(&T.r[4], "Connection"), "keep-alive");
    cr_assert(T.r[5].ok && T.r[5].status == 200, "HTTP/1.0 keep-alive not kept");
    cr_assert_str_eq(hdr(&T.r[6], "Connection"), "close");
    cr_assert(T.r[6].closed_after);
    finish();
}

/* ---- 3. pipelining ---------------------------------------------------------------- */

static void client_pipeline(struct ctx *t)
{
    struct cli c;
    if (cli_connect(&c, t->port) != 0)
        return;
    cli_sends(&c, "GET /delay/100 HTTP/1.1\r\n\r\n"
                  "POST /p2 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                  "GET /p3 HTTP/1.1\r\n\r\n");
    for (int i = 0; i < 3; i++)
        cli_read(&c, &t->r[i], false);
    cli_close(&c);
}

Test(http_server, pipelined_responses_in_request_order)
{
    struct http_server_config cfg = default_cfg();
    start(&cfg);
    run_client(client_pipeline, 10000);
    const char *want[] = {"/delay/100", "/p2", "/p3"};
    for (int i = 0; i < 3; i++) {
        cr_assert(T.r[i].ok, "response %d missing", i);
        json_t *j = body_json(&T.r[i]);
        cr_assert_str_eq(jstr(j, "path"), want[i], "response %d out of order", i);
        if (i == 1)
            cr_assert_str_eq(jstr(j, "body"), "hello");
        json_decref(j);
    }
    cr_assert(T.delayed_done);
    finish();
}

/* ---- 4. bodies -------------------------------------------------------------------- */

static void client_bodies(struct ctx *t)
{
    struct cli c;
    char body[1001];
    char head[128];
    for (int i = 0; i < 1000; i++)
        body[i] = (char)('a' + i % 26);
    body[1000] = '\0';
    if (cli_connect(&c, t->port) != 0)
        return;
    snprintf(head, sizeof(head), "POST /cl HTTP/1.1\r\nContent-Length: %d\r\n\r\n", 1000);
    cli_sends(&c, head);
    server_sync(t);
    cli_send(&c, body, 300);
    server_sync(t);
    cli_send(&c, body + 300, 700);
    cli_read(&c, &t->r[0], false);
    const char *parts[] = {"POST /chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe",
                           "llo\r\n",
                           "6\r\n worl",
                           "d\r\n",
                           "0\r\n",
                           "\r\n"};
    for (size_t i = 0; i < 6; i++) {
        cli_sends(&c, parts[i]);
        server_sync(t);
    }
    cli_read(&c, &t->r[1], false);
    exchange_once(&c, "POST /empty HTTP/1.1\r\nContent-Length: 0\r\nX-Empty:\r\nX-Test: v\r\n\r\n",
                  &t->r[2]);
    cli_sends(&c, "POST /expect HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    cli_read(&c, &t->r[3], false);
    cli_sends(&c, "body");
    cli_read(&c, &t->r[4], false);
    cli_close(&c);
}

Test(http_server, content_length_and_chunked_bodies)
{
    struct http_server_config cfg = default_cfg();
    start(&cfg);
    run_client(client_bodies, 10000);
    json_t *j = body_json(&T.r[0]);
    cr_assert_eq(json_integer_value(json_object_get(j, "body_len")), 1000);
    const char *b = jstr(j, "body");
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(b[i], 'a' + i % 26, "byte %d corrupted", i);
    json_decref(j);
    j = body_json(&T.r[1]);
    cr_assert_str_eq(jstr(j, "body"), "hello world");
    json_decref(j);
    j = body_json(&T.r[2]);
    cr_assert_eq(json_integer_value(json_object_get(j, "body_len")), 0);
    cr_assert_str_eq(jstr(j, "x_test"), "v", "empty header value confused the header list");
    json_decref(j);
    cr_assert_eq(T.r[3].status, 100, "no interim 100 Continue");
    cr_assert_eq(T.r[4].status, 200);
    j = body_json(&T.r[4]);
    cr_assert_str_eq(jstr(j, "body"), "body");
    json_decref(j);
    finish();
}

/* ---- 5. limits -------------------------------------------------------------------- */

static void limit_case(struct ctx *t, int i, const char *req, const char *extra, size_t n)
{
    struct cli c;
    if (cli_connect(&c, t->port) != 0)
        return;
    cli_sends(&c, req);
    if (extra != NULL)
        cli_send(&c, extra, n);
    cli_read(&c, &t->r[i], false);
    t->r[i].closed_after = cli_wait_closed(&c, 3000);
    cli_close(&c);
}

static void client_limits(struct ctx *t)
{
    static char big[5000];
    char req[2600];
    memset(big, 'x', sizeof(big));
    snprintf(req, sizeof(req), "GET /h HTTP/1.1\r\nX-Big: %.*s\r\n\r\n", 2000, big);
    limit_case(t, 0, req, NULL, 0);
    limit_case(t, 1, "POST /cl HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", big, 5000);
    snprintf(req, sizeof(req), "258\r\n%.*s\r\n258\r\n%.*s\r\n258\r\n%.*s\r\n0\r\n\r\n", 600, big,
             600, big, 600, big);
    limit_case(t, 2, "POST /ch HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", req, strlen(req));
    /* The client goes on sending after our 413: the lingering close keeps its sends
     * from failing with a reset, and the answer still arrives. */
    struct cli l;
    if (cli_connect(&l, t->port) != 0)
        return;
    cli_sends(&l, "POST /big HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n");
    server_sync(t); /* the 413 is written */
    t->flags[0] = 1;
    for (int i = 0; i < 16; i++) {
        /* Each piece is read before the next is sent: a close with unread bytes would
         * have answered with a reset by then, failing the next send. */
        t->flags[0] &= cli_send(&l, big, sizeof(big));
        server_sync(t);
    }
    cli_read(&l, &t->r[4], false);
    cli_close(&l);
    /* Exactly at the limits is fine. */
    struct cli c;
    if (cli_connect(&c, t->port) != 0)
        return;
    cli_sends(&c, "POST /ok HTTP/1.1\r\nContent-Length: 1024\r\n\r\n");
    cli_send(&c, big, 1024);
    cli_read(&c, &t->r[3], false);
    cli_close(&c);
}

Test(http_server, header_and_body_limits)
{
    struct http_server_config cfg = default_cfg();
    cfg.max_header_bytes = 1024;
    cfg.max_body_bytes = 1024;
    start(&cfg);
    run_client(client_limits, 20000);
    assert_error_body(&T.r[0], 431, "payload_too_large");
    assert_error_body(&T.r[1], 413, "payload_too_large");
    assert_error_body(&T.r[2], 413, "payload_too_large");
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(hdr(&T.r[i], "Connection"), "close");
        cr_assert(T.r[i].closed_after, "connection %d left open", i);
    }
    cr_assert_eq(T.r[3].status, 200);
    cr_assert(T.flags[0], "sending after a 413 failed: no lingering close");
    assert_error_body(&T.r[4], 413, "payload_too_large");
    cr_assert_eq(T.handled, 1, "an oversized request reached the handler");
    finish();
}

/* ---- 6. malformed requests --------------------------------------------------------- */

static void client_malformed(struct ctx *t)
{
    static const char *bad[] = {
        "GARBAGE\x01\x02 / HTTP/1.1\r\n\r\n",
        "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "GET /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /x HTTP/1.1\r\nBad Header Name: v\r\n\r\n",
    };
    for (int i = 0; i < 4; i++)
        limit_case(t, i, bad[i], NULL, 0);
    struct cli c;
    if (cli_connect(&c, t->port) != 0)
        return;
    exchange_once(&c, "GET /fine HTTP/1.1\r\n\r\n", &t->r[4]);
    cli_close(&c);
}

Test(http_server, malformed_requests_get_400_and_close)
{
    struct http_server_config cfg = default_cfg();
    start(&cfg);
    run_client(client_malformed, 20000);
    for (int i = 0; i < 4; i++) {
        assert_error_body(&T.r[i], 400, "invalid_field");
        cr_assert(T.r[i].closed_after, "connection %d left open", i);
        cr_assert(is_uuid4(hdr(&T.r[i], "X-Request-ID")));
    }
    cr_assert_eq(T.r[4].status, 200, "server stopped serving after bad input");
    cr_assert_eq(T.handled, 1);
    finish();
}

/* ---- 7. slow clients --------------------------------------------------------------- */

static long since(uint64_t start)
{
    return (long)(now_ms() - start);
}

static void client_slow(struct ctx *t)
{
    struct cli c;
    uint64_t t0;
    if (cli_connect(&c, t->port) != 0)
        return;
    t0 = now_ms();
    cli_sends(&c, "GET /sl");
    cli_read(&c, &t->r[0], false);
    t->r[0].closed_after = cli_wait_closed(&c, 3000);
    t->r[0].elapsed_ms = since(t0);
    cli_close(&c);
    if (cli_connect(&c, t->port) != 0)
        return;
    t0 = now_ms();
    t->flags[0] = cli_wait_closed(&c, 3000);
    t->times[0] = since(t0);
    cli_close(&c);
    if (cli_connect(&c, t->port) != 0)
        return;
    exchange_once(&c, "GET /idle HTTP/1.1\r\n\r\n", &t->r[1]);
    t0 = now_ms();
    t->flags[1] = cli_wait_closed(&c, 3000);
    t->times[1] = since(t0);
    cli_close(&c);
    if (cli_connect(&c, t->port) != 0)
        return;
    t0 = now_ms();
    cli_sends(&c, "POST /b HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    cli_read(&c, &t->r[2], false);
    t->r[2].elapsed_ms = since(t0);
    t->r[2].closed_after = cli_wait_closed(&c, 3000);
    cli_close(&c);
}

Test(http_server, slow_silent_and_idle_clients_are_closed)
{
    struct http_server_config cfg = default_cfg();
    cfg.header_timeout_ms = 300;
    cfg.body_timeout_ms = 300;
    cfg.idle_timeout_ms = 300;
    start(&cfg);
    run_client(client_slow, 20000);
    /* Lower bounds are loose: libuv arms timers from the loop's cached time, which lags
     * behind under valgrind. */
    assert_error_body(&T.r[0], 408, "invalid_field");
    cr_assert(T.r[0].closed_after);
    cr_assert(T.r[0].elapsed_ms >= 150 && T.r[0].elapsed_ms < 1500, "took %ld ms",
              T.r[0].elapsed_ms);
    cr_assert(T.flags[0], "silent client not closed");
    cr_assert(T.times[0] >= 150 && T.times[0] < 1500, "silent close took %ld ms", T.times[0]);
    cr_assert_eq(T.r[1].status, 200);
    cr_assert(T.flags[1], "idle keep-alive connection not closed");
    cr_assert(T.times[1] >= 150 && T.times[1] < 1500, "idle close took %ld ms", T.times[1]);
    assert_error_body(&T.r[2], 408, "invalid_field");
    cr_assert(T.r[2].elapsed_ms >= 150 && T.r[2].elapsed_ms < 1500);
    cr_assert(T.r[2].closed_after);
    cr_assert_eq(T.handled, 1);
    finish();
}

/* ---- 8. client gone while the handler works ---------------------------------------- */

static void client_disconnect(struct ctx *t)
{
    struct cli c;
    if (cli_connect(&c, t->port) != 0)
        return;
    /* Gone once the handler has the request (post_each), not after a guessed time. */
    cli_sends(&c, "GET /delay/500 HTTP/1.1\r\n\r\n");
    sem_wait_ms(&t->sem, 3000);
    cli_close(&c);
}

Test(http_server, client_disconnect_detaches_exchange)
{
    struct http_server_config cfg = default_cfg();
    start(&cfg);
    T.post_each = true;
    run_client(client_disconnect, 5000);
    cr_assert(run_until(&T.loop, &T.delayed_done, 3000), "delayed handler never ran");
    cr_assert(T.detached_seen, "exchange not detached after the client left");
    cr_assert_eq(http_server_in_flight(T.srv), 0);
    cr_assert_eq(http_server_connections(T.srv), 0);
    finish();
}

/* ---- 9. drain ---------------------------------------------------------------------- */

static void client_drain(struct ctx *t)
{
    struct cli idle, a, b;
    if (cli_connect(&idle, t->port) != 0 || cli_connect(&a, t->port) != 0)
        return;
    cli_sends(&a, "GET /delay/200 HTTP/1.1\r\n\r\n");
    if (!sem_wait_ms(&t->sem, 3000))
        return;
    t->flags[0] = cli_connect(&b, t->port) != 0; /* refused */
    if (!t->flags[0])
        cli_close(&b);
    t->flags[1] = cli_wait_closed(&idle, 1000);
    cli_read(&a, &t->r[0], false);
    t->r[0].closed_after = cli_wait_closed(&a, 3000);
    cli_close(&idle);
    cli_close(&a);
}

Test(http_server, drain_finishes_in_flight_requests)
{
    struct http_server_config cfg = default_cfg();
    start(&cfg);
    T.drain_on_request = true;
    T.drain_deadline = 5000;
    run_client(client_drain, 10000);
    cr_assert(run_until(&T.loop, &T.drained, 6000), "drain never finished");
    cr_assert(T.flags[0], "a new connection was accepted during drain");
    cr_assert(T.flags[1], "idle connection not closed by drain");
    cr_assert_eq(T.r[0].status, 200);
    cr_assert_str_eq(hdr(&T.r[0], "Connection"), "close");
    cr_assert(T.r[0].closed_after);
    cr_assert_eq(T.drain_status, 0);
    cr_assert_lt(T.drained_ms - T.drain_started_ms, 4000);
    cr_assert_eq(http_server_connections(T.srv), 0);
    finish();
}

static void client_drain_stuck(struct ctx *t)
{
    struct cli a;
    if (cli_connect(&a, t->port) != 0)
        return;
    cli_sends(&a, "GET /never HTTP/1.1\r\n\r\n");
    if (!sem_wait_ms(&t->sem, 3000))
        return;
    t->flags[0] = cli_wait_closed(&a, 3000);
    cli_close(&a);
}

Test(http_server, drain_deadline_forces_close)
{
    struct http_server_config cfg = default_cfg();
    start(&cfg);
    T.drain_on_request = true;
    T.drain_deadline = 200;
    run_client(client_drain_stuck, 10000);
    cr_assert(run_until(&T.loop, &T.drained, 3000), "drain never finished");
    cr_assert_eq(T.drain_status, ERR_UPSTREAM_TIMEOUT);
    uint64_t took = T.drained_ms - T.drain_started_ms;
    cr_assert(took >= 150 && took < 2000, "deadline after %llu ms", (unsigned long long)took);
    cr_assert(T.flags[0], "stuck connection not closed at the deadline");
    cr_assert_eq(T.nnever, 1);
    cr_assert(http_exchange_is_detached(T.never[0]));
    cr_assert_eq(http_server_in_flight(T.srv), 1);
    finish();
}

/* ---- 10. byte at a time ---------------------------------------------------------- */

static void client_bytewise(struct ctx *t)
{
    struct cli c;
    const char *req = "POST /bytes?q=1 HTTP/1.1\r\nHost: h\r\nX-Test: slowly\r\n"
                      "Content-Length: 11\r\n\r\nhello world";
    if (cli_connect(&c, t->port) != 0)
        return;
    for (size_t i = 0; req[i] != '\0'; i++) {
        cli_send(&c, req + i, 1);
        server_sync(t);
    }
    cli_read(&c, &t->r[0], false);
    cli_close(&c);
}

Test(http_server, byte_at_a_time_request_parses)
{
    struct http_server_config cfg = default_cfg();
    start(&cfg);
    run_client(client_bytewise, 10000);
    cr_assert_eq(T.r[0].status, 200);
    json_t *j = body_json(&T.r[0]);
    cr_assert_str_eq(jstr(j, "method"), "POST");
    cr_assert_str_eq(jstr(j, "path"), "/bytes");
    cr_assert_str_eq(jstr(j, "query"), "q=1");
    cr_assert_str_eq(jstr(j, "x_test"), "slowly");
    cr_assert_str_eq(jstr(j, "body"), "hello world");
    json_decref(j);
    finish();
}

/* ---- metrics, add_header, max_connections ----------------------------------------- */

/* The first connection is busy (a silent or idle one would make way for the second). */
static void client_maxconn(struct ctx *t)
{
    struct cli a, b;
    if (cli_connect(&a, t->port) != 0)
        return;
    cli_sends(&a, "GET /delay/200 HTTP/1.1\r\n\r\n");
    if (!sem_wait_ms(&t->sem, 3000) || cli_connect(&b, t->port) != 0)
        return;
    t->flags[0] = cli_wait_closed(&b, 2000);
    cli_read(&a, &t->r[0], false);
    cli_close(&a);
    cli_close(&b);
}

Test(http_server, max_connections_and_metrics)
{
    struct http_server_config cfg = default_cfg();
    struct metrics *m;
    cr_assert_eq(metrics_new(&m), 0);
    cfg.max_connections = 1;
    cfg.metrics = m;
    start(&cfg);
    T.post_each = true;
    run_client(client_maxconn, 10000);
    cr_assert(T.flags[0], "connection beyond max_connections kept open");
    cr_assert_eq(T.r[0].status, 200);
    cr_assert_eq(
        metrics_value(m, "pdstrace_http_requests_total", "route=\"unmatched\",status=\"200\""), 1);
    cr_assert_eq(metrics_value(m, "pdstrace_http_request_duration_seconds", "route=\"unmatched\""),
                 1);
    finish();
    metrics_free(m);
}

Test(http_server, rejects_bad_config_and_bad_headers)
{
    struct http_server_config cfg = default_cfg();
    uv_loop_t loop;
    struct http_server *srv = (struct http_server *)&cfg;
    uv_loop_init(&loop);
    cfg.handler = NULL;
    cr_assert_eq(http_server_new(&srv, &loop, &cfg), ERR_INVALID_INPUT);
    cr_assert_null(srv);
    cfg = default_cfg();
    cfg.host = "not-an-address";
    cr_assert_neq(http_server_new(&srv, &loop, &cfg), 0);
    cr_assert_null(srv);
    cr_assert_eq(close_loop(&loop), 0);
}

/* ---- abort: the client sees a reset, not an answer or a plain close -------------- */

/* 1 for a reset, 0 for an orderly close (FIN), -1 for data or a timeout. */
static int recv_reset(int fd)
{
    char b[256];
    errno = 0;
    ssize_t n = recv(fd, b, sizeof(b), 0);
    if (n < 0 && errno == ECONNRESET)
        return 1;
    return n == 0 ? 0 : -1;
}

static void client_abort(struct ctx *t)
{
    struct cli c;
    const char *reqs[] = {"GET /abort HTTP/1.1\r\n\r\n", "GET /delay/100 HTTP/1.1\r\n\r\n"};
    for (int i = 0; i < 2; i++) {
        if (cli_connect(&c, t->port) != 0)
            return;
        cli_sends(&c, reqs[i]);
        t->flags[i] = recv_reset(c.fd);
        cli_close(&c);
    }
    /* A connection that answered once and then aborts: still a reset. */
    if (cli_connect(&c, t->port) != 0)
        return;
    t->flags[2] = exchange_once(&c, "GET /ok HTTP/1.1\r\n\r\n", &t->r[0]);
    cli_sends(&c, "GET /abort HTTP/1.1\r\n\r\n");
    t->flags[3] = recv_reset(c.fd);
    cli_close(&c);
    if (cli_connect(&c, t->port) == 0)
        exchange_once(&c, "GET /after HTTP/1.1\r\n\r\n", &t->r[1]);
    cli_close(&c);
}

Test(http_server, abort_resets_the_connection)
{
    struct http_server_config cfg = default_cfg();
    start(&cfg);
    T.abort_delayed = true;
    run_client(client_abort, 10000);
    cr_assert_eq(T.flags[0], 1, "immediate abort: %d, expected a reset", T.flags[0]);
    cr_assert_eq(T.flags[1], 1, "delayed abort: %d, expected a reset", T.flags[1]);
    cr_assert(T.flags[2] && T.r[0].status == 200);
    cr_assert_eq(T.flags[3], 1, "abort after a keep-alive answer: %d", T.flags[3]);
    cr_assert_eq(T.r[1].status, 200, "server stopped answering after aborts");
    cr_assert(T.delayed_done);
    cr_assert_eq(http_server_in_flight(T.srv), 0);
    cr_assert_eq(http_server_connections(T.srv), 0);
    finish();
}

Test(http_server, abort_of_a_detached_exchange_only_lets_go)
{
    struct http_server_config cfg = default_cfg();
    start(&cfg);
    T.abort_delayed = true;
    T.post_each = true;
    run_client(client_disconnect, 5000);
    cr_assert(run_until(&T.loop, &T.delayed_done, 3000), "delayed handler never ran");
    cr_assert(T.detached_seen, "exchange not detached after the client left");
    cr_assert_eq(http_server_in_flight(T.srv), 0);
    cr_assert_eq(http_server_connections(T.srv), 0);
    finish();
}

/* ---- fuzz-ish --------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static size_t mutate(char *out, size_t cap)
{
    static const char valid[] = "POST /m?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                "X-Request-ID: abc\r\nX-Test: y\r\n\r\nhello";
    size_t n = sizeof(valid) - 1;
    memcpy(out, valid, n);
    for (int k = (int)(rng() % 4) + 1; k > 0 && n > 2 && n < cap - 1; k--) {
        size_t at = rng() % n;
        switch (rng() % 3) {
        case 0:
            out[at] = (char)rng();
            break;
        case 1:
            memmove(out + at, out + at + 1, n - at - 1);
            n--;
            break;
        default:
            memmove(out + at + 1, out + at, n - at);
            out[at] = (char)rng();
            n++;
        }
    }
    return n;
}

static size_t random_bytes(char *out, size_t cap)
{
    size_t n = 1 + rng() % (cap - 1);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)rng();
    return n;
}

static void client_fuzz(struct ctx *t)
{
    char data[512];
    struct cli c;
    int iters = getenv("FUZZ_N") ? (int)strtol(getenv("FUZZ_N"), NULL, 10) : 2000;
    for (int i = 0; i < iters; i++) {
        size_t n = (i % 2) ? mutate(data, sizeof(data)) : random_bytes(data, 200);
        if (cli_connect(&c, t->port) != 0) {
            t->flags[0]++;
            continue;
        }
        cli_send(&c, data, n);
        shutdown(c.fd, SHUT_WR);
        if (cli_fill(&c) > 0 && strncmp(c.buf, "HTTP/1.1 200 ", 13) == 0)
            t->flags[2]++;
        if (!cli_wait_closed(&c, 3000))
            t->flags[1]++;
        cli_close(&c);
    }
    if (cli_connect(&c, t->port) != 0)
        return;
    exchange_once(&c, "GET /still-alive HTTP/1.1\r\n\r\n", &t->r[0]);
    cli_close(&c);
}

Test(http_server, survives_random_and_mutated_input, .timeout = 240)
{
    struct http_server_config cfg = default_cfg();
    cfg.header_timeout_ms = 1000;
    cfg.body_timeout_ms = 1000;
    start(&cfg);
    run_client(client_fuzz, 230000);
    cr_assert_eq(T.flags[0], 0, "%d connections refused", T.flags[0]);
    cr_assert_eq(T.flags[1], 0, "%d connections not closed", T.flags[1]);
    cr_assert_gt(T.flags[2], 0, "no mutated request was valid: the mutator is broken");
    cr_assert_eq(T.r[0].status, 200, "server stopped answering after fuzzing");
    cr_assert_eq(http_server_in_flight(T.srv), 0);
    finish();
}

/* ---- idle connections make way for new ones ---------------------------------------- */

/* True when the server closes c without sending a byte: a refusal or an eviction. */
static bool cli_closed_silently(struct cli *c)
{
    set_rcvtimeo(c->fd, 2000);
    c->len = 0;
    int got = cli_fill(c);
    set_rcvtimeo(c->fd, 3000);
    return got == 0 && c->len == 0;
}

/* Sends a request that the handler keeps (/never) and waits until it has it. */
static bool make_busy(struct ctx *t, struct cli *c)
{
    return cli_sends(c, "GET /never HTTP/1.1\r\n\r\n") && sem_wait_ms(&t->sem, 3000);
}

/* Marks every client unconnected, so that close_all_cli may follow a partial setup. */
static void cli_none(struct cli *c, int n)
{
    for (int i = 0; i < n; i++)
        c[i].fd = -1;
}

static void close_all_cli(struct cli *c, int n)
{
    for (int i = 0; i < n; i++)
        cli_close(&c[i]);
}

/* n idle keep-alive connections, oldest first: each connects (from from[i], or the
 * kernel's choice without from) and makes one request, answered into r[i]. */
static bool connect_idle(struct ctx *t, struct cli *c, int n, const char *const *from,
                         struct resp *r)
{
    for (int i = 0; i < n; i++)
        if (cli_connect_from(&c[i], t->port, from != NULL ? from[i] : NULL) != 0 ||
            !exchange_once(&c[i], "GET /a HTTP/1.1\r\n\r\n", &r[i]))
            return false;
    return true;
}

/* A newcomer asks for /healthz (answered into r): true when victim was closed, without a
 * word, to make room for it. */
static bool newcomer_evicts(struct ctx *t, struct cli *newcomer, struct cli *victim, struct resp *r)
{
    if (cli_connect(newcomer, t->port) != 0)
        return false;
    exchange_once(newcomer, "GET /healthz HTTP/1.1\r\n\r\n", r);
    return cli_closed_silently(victim);
}

/* Makes c[0..n) busy: true when one more connection, extra, is then refused. */
static bool refused_when_busy(struct ctx *t, struct cli *c, int n, struct cli *extra)
{
    t->post_each = true;
    for (int i = 0; i < n; i++)
        if (!make_busy(t, &c[i]))
            return false;
    return cli_connect(extra, t->port) == 0 && cli_closed_silently(extra);
}

/* Asserts the n answers from first on that set a test up. */
static void assert_setup_answered(const struct resp *first, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(first[i].status, 200, "setup request %d: %d", i, first[i].status);
}

/* What client_per_client_cap and client_global_max saw: n newcomers answered (r[i]), each
 * closing the oldest idle connection (flags[i]); a younger idle connection still answering
 * (r[n]); and with every connection busy (busy exchanges held), one more refused
 * (flags[n]). */
static void assert_evictions(int n, unsigned busy)
{
    for (int i = 0; i < n; i++) {
        cr_assert_eq(T.r[i].status, 200, "newcomer %d was not served", i);
        cr_assert(T.flags[i], "newcomer %d did not close the oldest idle connection", i);
    }
    cr_assert_eq(T.r[n].status, 200, "a younger idle connection was closed as well");
    cr_assert(T.flags[n], "a connection beyond the limit was admitted with nothing idle");
    cr_assert_eq(T.nnever, busy);
}

/* cap 4: a silent connection and three idle keep-alive ones, oldest first. */
static void client_per_client_cap(struct ctx *t)
{
    struct cli c[7];
    cli_none(c, 7);
    if (cli_connect(&c[0], t->port) != 0 || !connect_idle(t, &c[1], 3, NULL, &t->r[8]))
        goto out;
    /* The fifth connection from the same address is a probe: it gets through, and the
     * silent connection, the oldest idle one, makes way. */
    t->flags[0] = newcomer_evicts(t, &c[4], &c[0], &t->r[0]);
    /* The next one closes the oldest idle keep-alive connection, and only that one. */
    t->flags[1] = newcomer_evicts(t, &c[5], &c[1], &t->r[1]);
    exchange_once(&c[2], "GET /still-open HTTP/1.1\r\n\r\n", &t->r[2]);
    /* When every connection of the address is busy, a new one is refused. */
    t->flags[2] = refused_when_busy(t, &c[2], 4, &c[6]);
out:
    close_all_cli(c, 7);
}

Test(http_server, per_client_cap_closes_the_oldest_idle_connection)
{
    struct http_server_config cfg = default_cfg();
    cfg.max_connections_per_client = 4;
    start(&cfg);
    run_client(client_per_client_cap, 20000);
    assert_setup_answered(&T.r[8], 3);
    /* The silent connection goes first, then the oldest idle keep-alive one. */
    assert_evictions(2, 4);
    finish();
}

/* cap 2: two idle connections from 127.0.0.1 are older than two from 127.0.0.2. */
static void client_cap_by_address(struct ctx *t)
{
    static const char *const from[] = {"127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2",
                                       "127.0.0.2"};
    static const int still_open[] = {0, 1, 3};
    struct cli c[5];
    cli_none(c, 5);
    if (!connect_idle(t, c, 5, from, t->r))
        goto out;
    /* The third from 127.0.0.2 closed that address's oldest, not the older ones of
     * 127.0.0.1. */
    t->flags[0] = cli_closed_silently(&c[2]);
    for (int i = 0; i < 3; i++)
        exchange_once(&c[still_open[i]], "GET /b HTTP/1.1\r\n\r\n", &t->r[5 + i]);
out:
    close_all_cli(c, 5);
}

Test(http_server, per_client_cap_closes_only_that_address)
{
    struct http_server_config cfg = default_cfg();
    cfg.max_connections_per_client = 2;
    start(&cfg);
    run_client(client_cap_by_address, 20000);
    assert_setup_answered(T.r, 8);
    cr_assert(T.flags[0], "the oldest connection of 127.0.0.2 was not closed");
    finish();
}

/* max_connections 3, three idle keep-alive connections. */
static void client_global_max(struct ctx *t)
{
    struct cli c[5];
    cli_none(c, 5);
    if (!connect_idle(t, c, 3, NULL, &t->r[8]))
        goto out;
    t->flags[0] = newcomer_evicts(t, &c[3], &c[0], &t->r[0]);
    exchange_once(&c[1], "GET /still-open HTTP/1.1\r\n\r\n", &t->r[1]);
    t->flags[1] = refused_when_busy(t, &c[1], 3, &c[4]);
out:
    close_all_cli(c, 5);
}

Test(http_server, max_connections_closes_the_oldest_idle_connection)
{
    struct http_server_config cfg = default_cfg();
    cfg.max_connections = 3;
    cfg.max_connections_per_client = 100;
    start(&cfg);
    run_client(client_global_max, 20000);
    assert_setup_answered(&T.r[8], 3);
    assert_evictions(1, 3);
    finish();
}

/* ---- strict framing ----------------------------------------------------------------- */

#define CHUNKED_POST "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"

static const char *const lenient[] = {
    "GET /lf HTTP/1.1\nHost: x\n\n",
    "GET /lf HTTP/1.1\r\nHost: x\n\r\n",
    "GET /lf HTTP/1.1\r\nHost: x\r\n\n",
    "GET /cr HTTP/1.1\r\nHost: x\rX-Test: y\r\n\r\n",
    "POST /te HTTP/1.1\r\nTransfer-Encoding: identity, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "POST /te HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    "POST /te HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
    "0\r\n\r\n",
    "POST /te HTTP/1.1\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n",
    CHUNKED_POST "5\r\nhelloXY0\r\n\r\n",
    CHUNKED_POST "5\nhello\r\n0\r\n\r\n",
    CHUNKED_POST "5\r\nhello\r\n0\r\nX-Trailer: t\n\r\n",
};
#define NLENIENT ((int)(sizeof(lenient) / sizeof(lenient[0])))

/* Sends first, then second in a later read. */
static void split_case(struct ctx *t, int i, const char *first, const char *second)
{
    struct cli c;
    if (cli_connect(&c, t->port) != 0)
        return;
    cli_sends(&c, first);
    server_sync(t);
    cli_sends(&c, second);
    cli_read(&c, &t->r[i], false);
    t->r[i].closed_after = cli_wait_closed(&c, 3000);
    cli_close(&c);
}

static void client_lenient(struct ctx *t)
{
    for (int i = 0; i < NLENIENT; i++)
        limit_case(t, i, lenient[i], NULL, 0);
    /* The two bytes after chunk data arrive in the next read. */
    split_case(t, NLENIENT, CHUNKED_POST "5\r\nhello", "XY0\r\n\r\n");
}

Test(http_server, lenient_framing_gets_400_and_close)
{
    struct http_server_config cfg = default_cfg();
    start(&cfg);
    run_client(client_lenient, 30000);
    for (int i = 0; i <= NLENIENT; i++) {
        cr_assert_eq(T.r[i].status, 400, "case %d: status %d", i, T.r[i].status);
        assert_error_body(&T.r[i], 400, "invalid_field");
        cr_assert(T.r[i].closed_after, "case %d: connection left open", i);
    }
    cr_assert_eq(T.handled, 0, "a badly framed request reached the handler");
    finish();
}

/* What strictness must not refuse: codings in any case, chunk extensions and trailers,
 * a CRLF before a request, bare CR and LF inside body data, chunk data ending a read. */
static void client_strict_ok(struct ctx *t)
{
    struct cli c;
    if (cli_connect(&c, t->port) != 0)
        return;
    cli_sends(&c, "POST /ok1 HTTP/1.1\r\nTransfer-Encoding: Chunked \r\n\r\n"
                  "5;ext=1\r\nh\ne\rl\r\n3\r\nab\r\r\n0\r\nX-Trailer: t\r\n\r\n"
                  "\r\nGET /ok2 HTTP/1.1\r\n\r\n"
                  "POST /ok3 HTTP/1.1\r\nContent-Length: 5\r\n\r\na\nb\rc");
    for (int i = 0; i < 3; i++)
        cli_read(&c, &t->r[i], false);
    cli_sends(&c, CHUNKED_POST "5\r\nhello");
    server_sync(t);
    exchange_once(&c, "\r\n0\r\n\r\n", &t->r[3]);
    cli_close(&c);
}

Test(http_server, strict_framing_keeps_valid_requests)
{
    static const char *const want[] = {"h\ne\rlab\r", "", "a\nb\rc", "hello"};
    struct http_server_config cfg = default_cfg();
    start(&cfg);
    run_client(client_strict_ok, 10000);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(T.r[i].status, 200, "request %d: %d", i, T.r[i].status);
        json_t *j = body_json(&T.r[i]);
        cr_assert_str_eq(jstr(j, "body"), want[i], "request %d", i);
        json_decref(j);
    }
    finish();
}
