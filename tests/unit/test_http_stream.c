#include "pdstrace/http_server.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
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

/* Streaming request bodies and streamed responses over real sockets. The server runs on a
 * private loop in the test's main thread; a client thread (libcurl, or a raw socket where
 * curl would tidy the detail away) drives it, and the main thread asserts on what both
 * sides recorded once the client thread has been joined. Requests under /stream/ are
 * claimed at their headers (cfg.head); /download/N streams N bytes back. Bodies in both
 * directions follow pat(), so every byte is checked where it lands. */

#define BIG        50000000u /* 50 MB */
#define READ_BUF   65536     /* the server's read buffer */
#define WRITE_SIZE 65536

static unsigned char pat(uint64_t i)
{
    return (unsigned char)(i * 31u + (i >> 16));
}

/* What the streaming handler saw of one upload. */
struct upload {
    struct http_exchange *x;
    uint64_t got;
    size_t max_piece;
    size_t max_buffered;
    unsigned pieces;
    unsigned data_while_paused;
    unsigned mismatches;
    unsigned ends;
    int end_status;
    unsigned in_flight;
    bool paused;
    bool check; /* the body follows pat() */
    bool signalled;
    bool ended;
};

/* The producer of a streamed response. */
struct producer {
    struct http_exchange *x;
    uint64_t total;
    uint64_t sent;
    size_t piece;
    bool fail; /* finish with an error once total bytes are out */
    bool wrote;
    bool done;
    unsigned cbs;
    unsigned errors;
    int cb_status; /* the first error */
};

struct ctx {
    uv_loop_t loop;
    struct http_server *srv;
    struct metrics *metrics;
    uv_async_t async;
    uv_timer_t resume_timer;
    uv_timer_t late_timer; /* /stream/late reads once the client has sent everything */
    bool client_done;
    void (*client)(struct ctx *);
    int port;
    /* handler behaviour */
    bool pace;                /* pause after every piece, resume from a timer */
    unsigned first_pause;     /* ms: pause this long after the first piece only */
    uint64_t signal_at;       /* post sem once this many body bytes arrived */
    unsigned drain_at_signal; /* non-zero: the signal also starts a drain with this deadline */
    bool answer_in_data;      /* answer 503 from the first on_data */
    bool free_in_data;        /* and free the server right after the answer */
    bool drained;
    int drain_status;
    bool ended_before_drained;
    struct upload up;
    struct producer prod;
    sem_t sem;
    /* client observations */
    long rc[4];
    long status[4];
    bool flag[4];
    uint64_t bytes[4];
    unsigned mismatches[4];
    char text[4][2048];
};

static struct ctx T;

/* ---- the handler: uploads ----------------------------------------------------------- */

static void on_resume(uv_timer_t *timer)
{
    struct ctx *t = timer->data;
    t->up.paused = false;
    http_exchange_resume_body(t->up.x);
}

static void pause_for(struct ctx *t, struct http_exchange *x, unsigned ms)
{
    http_exchange_pause_body(x);
    t->up.paused = true;
    uv_update_time(&t->loop);
    uv_timer_start(&t->resume_timer, on_resume, ms, 0);
}

static void on_drained(int status, void *arg)
{
    struct ctx *t = arg;
    t->drained = true;
    t->drain_status = status;
    t->ended_before_drained = t->up.ends > 0;
}

static void signal_client(struct ctx *t)
{
    t->up.signalled = true;
    if (t->drain_at_signal != 0)
        http_server_drain(t->srv, t->drain_at_signal, on_drained, t);
    sem_post(&t->sem);
}

static void check_piece(struct upload *u, const char *data, size_t len)
{
    if (!u->check)
        return;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] != pat(u->got + i))
            u->mismatches++;
}

static void on_up_data(struct http_exchange *x, const char *data, size_t len, void *arg)
{
    struct ctx *t = arg;
    struct upload *u = &t->up;
    size_t held = http_exchange_body_buffered(x);
    u->data_while_paused += u->paused;
    u->max_buffered = held > u->max_buffered ? held : u->max_buffered;
    u->max_piece = len > u->max_piece ? len : u->max_piece;
    u->in_flight = http_server_in_flight(t->srv);
    check_piece(u, data, len);
    u->got += len;
    u->pieces++;
    if (t->signal_at != 0 && !u->signalled && u->got >= t->signal_at)
        signal_client(t);
    if (t->answer_in_data && u->pieces == 1) {
        http_exchange_respond_err(x, ERR_UNAVAILABLE, NULL, "busy");
        if (t->free_in_data) {
            http_server_free(t->srv);
            t->srv = NULL;
        }
    } else if (t->first_pause != 0 && u->pieces == 1)
        pause_for(t, x, t->first_pause);
    else if (t->pace)
        pause_for(t, x, u->pieces % 16 == 0 ? 2 : 0);
}

/* The answer carries what the handler saw, so that a client can check it too. */
static void on_up_end(struct http_exchange *x, int status, void *arg)
{
    struct ctx *t = arg;
    struct upload *u = &t->up;
    uv_timer_stop(&t->resume_timer);
    u->paused = false;
    u->ends++;
    u->end_status = status;
    u->ended = true;
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"got\":%llu,\"status\":\"%s\",\"mismatches\":%u}",
                     (unsigned long long)u->got, err_name(status), u->mismatches);
    int code = status == 0 ? 200 : status == UV_ETIMEDOUT ? 408 : err_http_status(status);
    http_exchange_respond(x, code, "application/json", body, (size_t)n);
}

static void read_upload(struct ctx *t, struct http_exchange *x)
{
    const char *q = http_exchange_query(x);
    size_t max = strncmp(q, "max=", 4) == 0 ? strtoull(q + 4, NULL, 10) : SIZE_MAX;
    int err = http_exchange_read_body(x, max, on_up_data, on_up_end, t);
    if (err)
        http_exchange_respond_err(x, err, NULL, NULL);
}

/* The client posts sem once its whole request is sent; one more turn lets the loop take
 * in what it can before the handler reads. */
static void on_late(uv_timer_t *timer)
{
    struct ctx *t = timer->data;
    if (timer->repeat == 0) {
        read_upload(t, t->up.x);
        return;
    }
    if (sem_trywait(&t->sem) == 0)
        uv_timer_start(timer, on_late, 20, 0);
}

static void start_upload(struct ctx *t, struct http_exchange *x)
{
    memset(&t->up, 0, sizeof(t->up));
    t->up.x = x;
    t->up.check = strcmp(http_exchange_path(x), "/stream/raw") != 0;
    if (strcmp(http_exchange_path(x), "/stream/late") == 0)
        uv_timer_start(&t->late_timer, on_late, 5, 5);
    else
        read_upload(t, x);
}

/* ---- the handler: streamed responses ------------------------------------------------- */

static void produce(struct ctx *t);

static void produced(struct ctx *t, int status)
{
    t->prod.done = true;
    http_exchange_finish(t->prod.x, status);
    sem_post(&t->sem);
}

static void on_wrote(int status, void *arg)
{
    struct ctx *t = arg;
    struct producer *p = &t->prod;
    p->cbs++;
    if (status != 0 && p->errors++ == 0)
        p->cb_status = status;
    if (p->done)
        return;
    if (status != 0)
        produced(t, status);
    else
        produce(t);
}

static void produce(struct ctx *t)
{
    struct producer *p = &t->prod;
    if (p->sent >= p->total) {
        produced(t, p->fail ? ERR_INTERNAL : 0);
        return;
    }
    size_t n = p->total - p->sent < p->piece ? (size_t)(p->total - p->sent) : p->piece;
    char *data = malloc(n);
    cr_assert_not_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)pat(p->sent + i);
    int err = http_exchange_write(p->x, data, n, on_wrote, t);
    free(data);
    if (err) {
        p->errors++;
        produced(t, err);
        return;
    }
    p->sent += n;
    p->wrote = true;
}

static void start_download(struct ctx *t, struct http_exchange *x, const char *path)
{
    struct producer *p = &t->prod;
    memset(p, 0, sizeof(*p));
    p->x = x;
    p->fail = strncmp(path, "/download-fail/", 15) == 0;
    p->piece = strncmp(path, "/download-big/", 14) == 0 ? 32u << 20 : WRITE_SIZE;
    p->total = strtoull(strrchr(path, '/') + 1, NULL, 10);
    http_exchange_set_route(x, "/download");
    cr_assert_eq(http_exchange_add_header(x, "X-Test", "streamed"), 0);
    int err = http_exchange_start(x, 200, "text/csv");
    if (err) {
        produced(t, err);
        return;
    }
    cr_assert_eq(http_exchange_start(x, 200, "text/csv"), ERR_INVALID_INPUT);
    produce(t);
}

static int claim(const struct http_exchange *x, void *arg)
{
    (void)arg;
    return strncmp(http_exchange_path(x), "/stream/", 8) == 0;
}

static void handler(struct http_exchange *x, void *arg)
{
    struct ctx *t = arg;
    const char *path = http_exchange_path(x);
    if (strcmp(path, "/stream/deny") == 0)
        http_exchange_respond_err(x, ERR_UNAUTHORISED, NULL, NULL);
    else if (strncmp(path, "/stream/", 8) == 0 || strcmp(path, "/whole") == 0)
        start_upload(t, x);
    else if (strncmp(path, "/download", 9) == 0)
        start_download(t, x, path);
    else
        http_exchange_respond(x, 200, "text/plain", path, strlen(path));
}

/* ---- fixture ------------------------------------------------------------------------- */

static void on_async(uv_async_t *a)
{
    ((struct ctx *)a->data)->client_done = true;
}

static struct http_server_config default_cfg(void)
{
    struct http_server_config cfg = {
        .host = "127.0.0.1",
        .max_header_bytes = 4096,
        .max_body_bytes = 1 << 20,
        .header_timeout_ms = 5000,
        .body_timeout_ms = 5000,
        .idle_timeout_ms = 5000,
        .max_connections = 16,
        .handler = handler,
        .handler_arg = &T,
        .head = claim,
    };
    return cfg;
}

static void start(struct http_server_config cfg)
{
    memset(&T, 0, sizeof(T));
    cr_assert_eq(uv_loop_init(&T.loop), 0);
    cr_assert_eq(metrics_new(&T.metrics), 0);
    cfg.metrics = T.metrics;
    cr_assert_eq(http_server_new(&T.srv, &T.loop, &cfg), 0);
    T.port = http_server_port(T.srv);
    uv_async_init(&T.loop, &T.async, on_async);
    T.async.data = &T;
    uv_timer_init(&T.loop, &T.resume_timer);
    T.resume_timer.data = &T;
    uv_timer_init(&T.loop, &T.late_timer);
    T.late_timer.data = &T;
    sem_init(&T.sem, 0, 0);
}

static void *client_main(void *arg)
{
    struct ctx *t = arg;
    t->client(t);
    uv_async_send(&t->async);
    return NULL;
}

static pthread_t spawn(void (*client)(struct ctx *))
{
    pthread_t th;
    T.client = client;
    T.client_done = false;
    cr_assert_eq(pthread_create(&th, NULL, client_main, &T), 0);
    return th;
}

static void run_client(void (*client)(struct ctx *))
{
    pthread_t th = spawn(client);
    bool ok = run_until(&T.loop, &T.client_done, 20000);
    pthread_join(th, NULL);
    cr_assert(ok, "client did not finish in time");
}

static void finish(void)
{
    http_server_free(T.srv);
    uv_close((uv_handle_t *)&T.async, NULL);
    uv_close((uv_handle_t *)&T.resume_timer, NULL);
    uv_close((uv_handle_t *)&T.late_timer, NULL);
    cr_assert_eq(close_loop(&T.loop), 0);
    metrics_free(T.metrics);
    sem_destroy(&T.sem);
}

/* Copies a NUL-terminated string into a text slot, cut to fit. */
static void keep(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
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

/* ---- raw client ---------------------------------------------------------------------- */

struct cli {
    int fd;
    size_t len;
    char buf[65536];
};

struct resp {
    int status;
    char head[2048];
    char body[2048];
    size_t body_len;
    uint64_t total;
    unsigned mismatches; /* against pat(), for bodies that follow it */
};

static void set_rcvtimeo(int fd, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static bool cli_connect(struct cli *c, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1;
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    c->len = 0;
    c->buf[0] = '\0';
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return false;
    set_rcvtimeo(c->fd, 5000);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
}

/* Closes with a reset instead of a FIN. */
static void cli_reset(struct cli *c)
{
    struct linger l = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
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

/* Sends n bytes of pat() from offset, in pieces. */
static bool cli_send_pat(struct cli *c, uint64_t offset, uint64_t n)
{
    char piece[16384];
    while (n > 0) {
        size_t k = n < sizeof(piece) ? (size_t)n : sizeof(piece);
        for (size_t i = 0; i < k; i++)
            piece[i] = (char)pat(offset + i);
        if (!cli_send(c, piece, k))
            return false;
        offset += k;
        n -= k;
    }
    return true;
}

/* Reads more bytes; 0 on EOF or reset, -1 on timeout or a full buffer. */
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
    return n == 0 || errno == ECONNRESET ? 0 : -1;
}

static void consume(struct cli *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n + 1);
    c->len -= n;
}

/* True when the server closes within 5 s (bytes before that are discarded). */
static bool cli_wait_closed(struct cli *c)
{
    int got;
    c->len = 0;
    while ((got = cli_fill(c)) > 0)
        c->len = 0;
    return got == 0;
}

static const char *find_header(const char *head, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) != 0 || p[2 + n] != ':')
            continue;
        const char *v = p + 3 + n + strspn(p + 3 + n, " ");
        size_t len = strcspn(v, "\r\n");
        len = len < cap ? len : cap - 1;
        memcpy(out, v, len);
        out[len] = '\0';
        return out;
    }
    return NULL;
}

static const char *hdr(const struct resp *r, const char *name)
{
    static char v[256];
    return find_header(r->head, name, v, sizeof(v));
}

static bool take_head(struct cli *c, struct resp *r)
{
    char *end;
    while ((end = strstr(c->buf, "\r\n\r\n")) == NULL)
        if (cli_fill(c) <= 0)
            return false;
    size_t n = (size_t)(end - c->buf) + 4;
    if (n >= sizeof(r->head) || strncmp(c->buf, "HTTP/1.1 ", 9) != 0)
        return false;
    memcpy(r->head, c->buf, n);
    r->head[n] = '\0';
    r->status = (int)strtol(r->head + 9, NULL, 10);
    consume(c, n);
    return true;
}

static void take_bytes(struct cli *c, struct resp *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        r->mismatches += (unsigned char)c->buf[i] != pat(r->total + i);
    size_t room = sizeof(r->body) - 1 - r->body_len;
    size_t k = n < room ? n : room;
    memcpy(r->body + r->body_len, c->buf, k);
    r->body_len += k;
    r->body[r->body_len] = '\0';
    r->total += n;
    consume(c, n);
}

static bool read_exact(struct cli *c, struct resp *r, uint64_t n)
{
    while (n > 0) {
        if (c->len == 0 && cli_fill(c) <= 0)
            return false;
        size_t k = n < c->len ? (size_t)n : c->len;
        take_bytes(c, r, k);
        n -= k;
    }
    return true;
}

static bool read_line(struct cli *c, char *out, size_t cap)
{
    char *end;
    while ((end = strstr(c->buf, "\r\n")) == NULL)
        if (cli_fill(c) <= 0)
            return false;
    size_t n = (size_t)(end - c->buf);
    if (n >= cap)
        return false;
    memcpy(out, c->buf, n);
    out[n] = '\0';
    consume(c, n + 2);
    return true;
}

static bool read_chunked(struct cli *c, struct resp *r)
{
    char line[64];
    for (;;) {
        if (!read_line(c, line, sizeof(line)))
            return false;
        unsigned long long n = strtoull(line, NULL, 16);
        if (n == 0)
            return read_line(c, line, sizeof(line)) && line[0] == '\0';
        if (!read_exact(c, r, n) || !read_line(c, line, sizeof(line)) || line[0] != '\0')
            return false;
    }
}

/* Reads one response: Content-Length, chunked, or (neither) up to the server's close. */
static bool read_response(struct cli *c, struct resp *r, bool head_only)
{
    char v[64];
    memset(r, 0, sizeof(*r));
    if (!take_head(c, r))
        return false;
    if (head_only || r->status < 200)
        return true;
    if (find_header(r->head, "Transfer-Encoding", v, sizeof(v)) != NULL)
        return strcmp(v, "chunked") == 0 && read_chunked(c, r);
    if (find_header(r->head, "Content-Length", v, sizeof(v)) != NULL)
        return read_exact(c, r, strtoull(v, NULL, 10));
    while (c->len > 0 || cli_fill(c) > 0)
        take_bytes(c, r, c->len);
    return true;
}

/* ---- curl client --------------------------------------------------------------------- */

struct transfer {
    uint64_t total; /* to send */
    uint64_t sent;
    uint64_t received;
    unsigned mismatches;
    bool saw_continue;
    char headers[4096];
    size_t headers_len;
    char body[1024];
    size_t body_len;
};

static size_t src_read(char *buf, size_t size, size_t n, void *arg)
{
    struct transfer *tr = arg;
    size_t k = size * n;
    if (k > tr->total - tr->sent)
        k = (size_t)(tr->total - tr->sent);
    for (size_t i = 0; i < k; i++)
        buf[i] = (char)pat(tr->sent + i);
    tr->sent += k;
    return k;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct transfer *tr = arg;
    size_t k = size * n;
    if (k > 9 && strncmp(p, "HTTP/1.1 100", 12) == 0)
        tr->saw_continue = true;
    if (tr->headers_len + k < sizeof(tr->headers)) {
        memcpy(tr->headers + tr->headers_len, p, k);
        tr->headers_len += k;
        tr->headers[tr->headers_len] = '\0';
    }
    return k;
}

/* Response bodies: checked against pat() and counted; the start is kept. */
static size_t sink(char *p, size_t size, size_t n, void *arg)
{
    struct transfer *tr = arg;
    size_t k = size * n;
    for (size_t i = 0; i < k; i++)
        tr->mismatches += (unsigned char)p[i] != pat(tr->received + i);
    size_t room = sizeof(tr->body) - 1 - tr->body_len;
    memcpy(tr->body + tr->body_len, p, k < room ? k : room);
    tr->body_len += k < room ? k : room;
    tr->body[tr->body_len] = '\0';
    tr->received += k;
    return k;
}

/* An upload of tr->total bytes (chunked when asked) or a GET; returns the CURLcode. */
static long curl_run(int port, const char *path, struct transfer *tr, bool upload, bool chunked,
                     long *status)
{
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = chunked ? curl_slist_append(NULL, "Transfer-Encoding: chunked") : NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, tr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, tr);
    if (upload) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, src_read);
        curl_easy_setopt(c, CURLOPT_READDATA, tr);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        if (!chunked)
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)tr->total);
    }
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return (long)rc;
}

TestSuite(http_stream, .timeout = 30);

/* ---- uploads at the handler's pace --------------------------------------------------- */

static void client_upload_length(struct ctx *t)
{
    struct transfer tr = {.total = BIG};
    t->rc[0] = curl_run(t->port, "/stream/up", &tr, true, false, &t->status[0]);
    t->flag[0] = tr.saw_continue;
    keep(t->text[0], sizeof(t->text[0]), tr.body);
}

static void client_upload_chunked(struct ctx *t)
{
    struct transfer tr = {.total = BIG};
    t->rc[0] = curl_run(t->port, "/stream/up", &tr, true, true, &t->status[0]);
    t->flag[0] = tr.saw_continue;
    keep(t->text[0], sizeof(t->text[0]), tr.body);
}

/* Every byte arrived in order, never while paused, in pieces of at most one read buffer,
 * with at most one read buffer held by the server at any time. */
static void assert_paced_upload(void)
{
    cr_assert_eq(T.rc[0], CURLE_OK, "curl: %s", curl_easy_strerror((CURLcode)T.rc[0]));
    cr_assert_eq(T.status[0], 200, "status %ld: %s", T.status[0], T.text[0]);
    cr_assert(T.flag[0], "curl was not sent 100 Continue");
    cr_assert_eq(T.up.got, BIG);
    cr_assert_eq(T.up.mismatches, 0);
    cr_assert_eq(T.up.ends, 1);
    cr_assert_eq(T.up.end_status, 0);
    cr_assert_eq(T.up.data_while_paused, 0, "on_data while paused");
    cr_assert_leq(T.up.max_piece, READ_BUF);
    cr_assert_leq(T.up.max_buffered, READ_BUF, "server held %zu bytes", T.up.max_buffered);
    cr_assert_gt(T.up.pieces, BIG / READ_BUF / 2, "too few pauses: %u", T.up.pieces);
    cr_assert_eq(T.up.in_flight, 1, "a streaming exchange counts as in flight");
    cr_assert_eq(http_server_in_flight(T.srv), 0);
}

Test(http_stream, upload_with_content_length_paced, .timeout = 60)
{
    start(default_cfg());
    T.pace = true;
    run_client(client_upload_length);
    assert_paced_upload();
    finish();
}

Test(http_stream, chunked_upload_paced, .timeout = 60)
{
    start(default_cfg());
    T.pace = true;
    run_client(client_upload_chunked);
    assert_paced_upload();
    finish();
}

/* ---- 100 Continue, refusals and limits ---------------------------------------------- */

/* The client sends the body only after 100 Continue, so an answer proves it was sent:
 * for a streaming request when the handler reads, and for a buffered one as before. */
static void client_continue(struct ctx *t)
{
    const char *paths[] = {"/stream/up", "/whole"};
    for (int i = 0; i < 2; i++) {
        struct cli c;
        struct resp r;
        char req[256];
        snprintf(req, sizeof(req),
                 "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n"
                 "Expect: 100-continue\r\n\r\n",
                 paths[i]);
        bool ok = cli_connect(&c, t->port) && cli_sends(&c, req) && read_response(&c, &r, false);
        t->status[i] = ok ? r.status : -1;
        ok = ok && r.status == 100 && cli_send_pat(&c, 0, 100000) && read_response(&c, &r, false);
        t->rc[i] = ok ? r.status : -1;
        keep(t->text[i], sizeof(t->text[i]), ok ? r.body : "");
        close(c.fd);
    }
}

Test(http_stream, expect_100_continue_before_the_body)
{
    start(default_cfg());
    run_client(client_continue);
    cr_assert_eq(T.status[0], 100, "streaming: first answer %ld", T.status[0]);
    cr_assert_eq(T.rc[0], 200);
    cr_assert(strstr(T.text[0], "\"got\":100000,") != NULL, "%s", T.text[0]);
    cr_assert(strstr(T.text[0], "\"mismatches\":0") != NULL, "%s", T.text[0]);
    cr_assert_eq(T.status[1], 100, "buffered: first answer %ld", T.status[1]);
    cr_assert_eq(T.rc[1], 200);
    /* A buffered request read with read_body gets its body in one piece. */
    cr_assert(strstr(T.text[1], "\"got\":100000,") != NULL, "%s", T.text[1]);
    cr_assert_eq(T.up.max_piece, 100000);
    finish();
}

/* A refusal before the body: no 100 Continue, the answer closes the connection. */
static void client_refused(struct ctx *t)
{
    static const char *const reqs[] = {
        "POST /stream/deny HTTP/1.1\r\nContent-Length: 50000000\r\nExpect: 100-continue\r\n\r\n",
        "POST /stream/deny HTTP/1.1\r\nContent-Length: 50000000\r\n\r\n",
    };
    for (int i = 0; i < 2; i++) {
        struct cli c;
        struct resp r;
        bool ok = cli_connect(&c, t->port) && cli_sends(&c, reqs[i]);
        if (ok && i == 1)
            ok = cli_send_pat(&c, 0, 100000);
        ok = ok && read_response(&c, &r, false);
        t->status[i] = ok ? r.status : -1;
        t->flag[i] =
            ok && hdr(&r, "Connection") != NULL && strcmp(hdr(&r, "Connection"), "close") == 0;
        t->rc[i] = ok && cli_wait_closed(&c);
        close(c.fd);
    }
}

Test(http_stream, refusal_before_the_body_closes_the_connection)
{
    start(default_cfg());
    run_client(client_refused);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(T.status[i], 401, "request %d: %ld", i, T.status[i]);
        cr_assert(T.flag[i], "request %d: no Connection: close", i);
        cr_assert(T.rc[i], "request %d: the connection stayed open", i);
    }
    cr_assert_eq(T.up.pieces, 0);
    cr_assert_eq(http_server_in_flight(T.srv), 0);
    finish();
}

static void client_too_large_declared(struct ctx *t)
{
    struct cli c;
    struct resp r;
    bool ok = cli_connect(&c, t->port) &&
              cli_sends(&c, "POST /stream/up?max=1000000 HTTP/1.1\r\nContent-Length: 2000000\r\n"
                            "Expect: 100-continue\r\n\r\n") &&
              read_response(&c, &r, false);
    t->status[0] = ok ? r.status : -1;
    t->rc[0] = ok && cli_wait_closed(&c);
    close(c.fd);
}

static void client_too_large_chunked(struct ctx *t)
{
    struct cli c;
    struct resp r;
    char size[16];
    bool ok = cli_connect(&c, t->port) && cli_sends(&c, "POST /stream/up?max=100000 HTTP/1.1\r\n"
                                                        "Transfer-Encoding: chunked\r\n\r\n");
    /* 30 chunks of 10000 bytes; the server may stop listening part-way. */
    for (int i = 0; ok && i < 30; i++) {
        snprintf(size, sizeof(size), "%x\r\n", 10000);
        ok = cli_sends(&c, size) && cli_send_pat(&c, (uint64_t)i * 10000, 10000) &&
             cli_sends(&c, "\r\n");
    }
    ok = read_response(&c, &r, false);
    t->status[0] = ok ? r.status : -1;
    t->rc[0] = ok && cli_wait_closed(&c);
    close(c.fd);
}

Test(http_stream, over_the_limit_ends_with_too_large)
{
    start(default_cfg());
    run_client(client_too_large_declared);
    cr_assert_eq(T.status[0], 413, "declared: %ld", T.status[0]);
    cr_assert(T.rc[0], "declared: the connection stayed open");
    cr_assert_eq(T.up.ends, 1);
    cr_assert_eq(T.up.end_status, ERR_TOO_LARGE);
    cr_assert_eq(T.up.pieces + T.up.got, 0, "a body declared too large was read");
    run_client(client_too_large_chunked);
    cr_assert_eq(T.status[0], 413, "chunked: %ld", T.status[0]);
    cr_assert(T.rc[0], "chunked: the connection stayed open");
    cr_assert_eq(T.up.ends, 1);
    cr_assert_eq(T.up.end_status, ERR_TOO_LARGE);
    cr_assert_leq(T.up.got, 100000);
    cr_assert_eq(T.up.mismatches, 0);
    finish();
}

/* ---- the end of a read: client gone, timeout, an answer, drain, free ---------------- */

static void client_gone(struct ctx *t)
{
    struct cli c;
    bool ok = cli_connect(&c, t->port) &&
              cli_sends(&c, "POST /stream/up HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n") &&
              cli_send_pat(&c, 0, 1000000);
    t->flag[0] = ok && sem_wait_ms(&t->sem, 5000);
    if (t->rc[3] != 0)
        cli_reset(&c);
    else
        close(c.fd);
}

Test(http_stream, client_gone_mid_body_ends_the_read_once)
{
    start(default_cfg());
    T.signal_at = 1;
    for (int reset = 0; reset < 2; reset++) {
        T.rc[3] = reset;
        run_client(client_gone);
        cr_assert(T.flag[0]);
        cr_assert(run_until(&T.loop, &T.up.ended, 5000), "no on_end");
        cr_assert_eq(T.up.ends, 1);
        cr_assert(T.up.end_status == UV_EOF || T.up.end_status == UV_ECONNRESET, "status %s",
                  err_name(T.up.end_status));
        cr_assert_lt(T.up.got, 10000000);
    }
    finish();
    cr_assert_eq(T.up.ends, 1, "on_end ran again at free");
}

static void client_silent(struct ctx *t)
{
    struct cli c;
    struct resp r;
    bool ok = cli_connect(&c, t->port) &&
              cli_sends(&c, "POST /stream/up HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n") &&
              cli_send_pat(&c, 0, 1000) && read_response(&c, &r, false);
    t->status[0] = ok ? r.status : -1;
    t->rc[0] = ok && cli_wait_closed(&c);
    close(c.fd);
}

static void client_steady(struct ctx *t)
{
    struct cli c;
    struct resp r;
    bool ok = cli_connect(&c, t->port) &&
              cli_sends(&c, "POST /stream/up HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n") &&
              cli_send_pat(&c, 0, 1000000) && read_response(&c, &r, false);
    t->status[0] = ok ? r.status : -1;
    close(c.fd);
}

/* The body timeout measures silence while reading, not time spent paused. */
Test(http_stream, body_timeout_counts_silence_not_pauses)
{
    struct http_server_config cfg = default_cfg();
    cfg.body_timeout_ms = 300;
    start(cfg);
    run_client(client_silent);
    cr_assert_eq(T.status[0], 408);
    cr_assert(T.rc[0], "the connection stayed open");
    cr_assert_eq(T.up.ends, 1);
    cr_assert_eq(T.up.end_status, UV_ETIMEDOUT);
    cr_assert_eq(T.up.got, 1000);
    T.first_pause = 900; /* three body timeouts */
    run_client(client_steady);
    cr_assert_eq(T.status[0], 200);
    cr_assert_eq(T.up.end_status, 0, "%s", err_name(T.up.end_status));
    cr_assert_eq(T.up.got, 1000000);
    finish();
}

static void client_answered_early(struct ctx *t)
{
    struct cli c;
    struct resp r;
    bool ok = cli_connect(&c, t->port) &&
              cli_sends(&c, "POST /stream/up HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n");
    cli_send_pat(&c, 0, 1000000); /* the server may stop listening part-way */
    ok = ok && read_response(&c, &r, false);
    t->status[0] = ok ? r.status : -1;
    t->rc[0] = ok && cli_wait_closed(&c);
    close(c.fd);
}

/* An answer while reading ends the read; on_end still comes, once, afterwards. */
Test(http_stream, answer_while_reading_ends_the_read)
{
    start(default_cfg());
    T.answer_in_data = true;
    run_client(client_answered_early);
    cr_assert_eq(T.status[0], 503);
    cr_assert(T.rc[0], "the connection stayed open");
    cr_assert(run_until(&T.loop, &T.up.ended, 5000), "no on_end");
    cr_assert_eq(T.up.ends, 1);
    cr_assert_eq(T.up.end_status, UV_ECANCELED);
    cr_assert_eq(T.up.pieces, 1, "on_data after the answer");
    finish();
    cr_assert_eq(T.up.ends, 1);
}

/* The on_end owed after an answer is still paid when the server is freed before the kick
 * that would run it. */
Test(http_stream, free_right_after_an_answer_pays_the_owed_end)
{
    start(default_cfg());
    T.answer_in_data = true;
    T.free_in_data = true;
    run_client(client_answered_early);
    cr_assert_null(T.srv);
    cr_assert_eq(T.up.ends, 1);
    cr_assert_eq(T.up.end_status, UV_ECANCELED);
    finish();
    cr_assert_eq(T.up.ends, 1);
}

/* HTTP/1.0 (so the connection closes after the answer) and a handler that reads only once
 * the whole request has been sent: what arrived meanwhile is kept for it. */
static void client_early_body(struct ctx *t)
{
    struct cli c;
    struct resp r;
    bool ok = cli_connect(&c, t->port) &&
              cli_sends(&c, "POST /stream/late HTTP/1.0\r\nContent-Length: 100000\r\n\r\n") &&
              cli_send_pat(&c, 0, 100000);
    sem_post(&t->sem);
    ok = ok && read_response(&c, &r, false);
    t->status[0] = ok ? r.status : -1;
    keep(t->text[0], sizeof(t->text[0]), ok ? r.body : "");
    close(c.fd);
}

Test(http_stream, a_body_that_arrives_before_the_handler_reads_is_kept)
{
    struct http_server_config cfg = default_cfg();
    cfg.body_timeout_ms = 1000;
    start(cfg);
    run_client(client_early_body);
    cr_assert_eq(T.status[0], 200, "%ld: %s", T.status[0], T.text[0]);
    cr_assert_eq(T.up.got, 100000);
    cr_assert_eq(T.up.mismatches, 0);
    finish();
}

static void client_drained(struct ctx *t)
{
    struct cli c;
    struct resp r;
    bool ok = cli_connect(&c, t->port) &&
              cli_sends(&c, "POST /stream/up HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n") &&
              cli_send_pat(&c, 0, 1000000) && sem_wait_ms(&t->sem, 5000) &&
              cli_send_pat(&c, 1000000, 1000000) && read_response(&c, &r, false);
    t->status[0] = ok ? r.status : -1;
    t->flag[0] = ok && hdr(&r, "Connection") != NULL && strcmp(hdr(&r, "Connection"), "close") == 0;
    close(c.fd);
}

Test(http_stream, drain_waits_for_a_streaming_upload)
{
    start(default_cfg());
    T.signal_at = 1;
    T.drain_at_signal = 10000;
    run_client(client_drained);
    cr_assert_eq(T.status[0], 200);
    cr_assert(T.flag[0], "no Connection: close while draining");
    cr_assert(run_until(&T.loop, &T.drained, 5000));
    cr_assert_eq(T.drain_status, 0);
    cr_assert(T.ended_before_drained);
    cr_assert_eq(T.up.got, 2000000);
    finish();
}

static void client_stuck(struct ctx *t)
{
    struct cli c;
    bool ok = cli_connect(&c, t->port) &&
              cli_sends(&c, "POST /stream/up HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n") &&
              cli_send_pat(&c, 0, 1000) && sem_wait_ms(&t->sem, 5000);
    t->flag[0] = ok && cli_wait_closed(&c);
    close(c.fd);
}

Test(http_stream, drain_deadline_cancels_a_stuck_upload)
{
    start(default_cfg());
    T.signal_at = 1;
    T.drain_at_signal = 200;
    run_client(client_stuck);
    cr_assert(T.flag[0], "the stuck connection stayed open");
    cr_assert(run_until(&T.loop, &T.drained, 5000));
    cr_assert_eq(T.drain_status, ERR_UPSTREAM_TIMEOUT);
    cr_assert_eq(T.up.ends, 1);
    cr_assert_eq(T.up.end_status, UV_ECANCELED);
    finish();
    cr_assert_eq(T.up.ends, 1);
}

Test(http_stream, free_while_reading_ends_the_read_once)
{
    start(default_cfg());
    T.signal_at = 1;
    pthread_t th = spawn(client_stuck);
    cr_assert(run_until(&T.loop, &T.up.signalled, 5000));
    http_server_free(T.srv);
    cr_assert_eq(T.up.ends, 1);
    cr_assert_eq(T.up.end_status, UV_ECANCELED);
    T.srv = NULL;
    bool ok = run_until(&T.loop, &T.client_done, 10000);
    pthread_join(th, NULL);
    cr_assert(ok);
    cr_assert(T.flag[0], "the connection stayed open");
    finish();
    cr_assert_eq(T.up.ends, 1);
}

/* ---- streamed responses -------------------------------------------------------------- */

static void client_download(struct ctx *t)
{
    struct transfer tr = {0};
    char path[64];
    snprintf(path, sizeof(path), "/download/%u", BIG);
    t->rc[0] = curl_run(t->port, path, &tr, false, false, &t->status[0]);
    t->bytes[0] = tr.received;
    t->mismatches[0] = tr.mismatches;
    keep(t->text[0], sizeof(t->text[0]), tr.headers);
}

Test(http_stream, streamed_response_read_by_curl, .timeout = 60)
{
    start(default_cfg());
    run_client(client_download);
    cr_assert_eq(T.rc[0], CURLE_OK, "curl: %s", curl_easy_strerror((CURLcode)T.rc[0]));
    cr_assert_eq(T.status[0], 200);
    cr_assert_eq(T.bytes[0], BIG);
    cr_assert_eq(T.mismatches[0], 0);
    const char *h = T.text[0];
    cr_assert(strstr(h, "Transfer-Encoding: chunked\r\n") != NULL, "%s", h);
    cr_assert(strstr(h, "Content-Type: text/csv\r\n") != NULL, "%s", h);
    cr_assert(strstr(h, "X-Test: streamed\r\n") != NULL, "%s", h);
    cr_assert(strstr(h, "X-Request-ID: ") != NULL, "%s", h);
    cr_assert(strstr(h, "Date: ") != NULL, "%s", h);
    cr_assert(strstr(h, "Content-Length") == NULL, "%s", h);
    cr_assert(T.prod.done);
    cr_assert_eq(T.prod.errors, 0);
    cr_assert_eq(http_server_in_flight(T.srv), 0);
    cr_assert_eq(metrics_value(T.metrics, "pdstrace_http_requests_total",
                               "route=\"/download\",status=\"200\""),
                 1);
    finish();
}

static void client_truncated(struct ctx *t)
{
    struct transfer tr = {0};
    t->rc[0] = curl_run(t->port, "/download-fail/1000000", &tr, false, false, &t->status[0]);
    t->bytes[0] = tr.received;
}

Test(http_stream, producer_failure_truncates_the_response)
{
    start(default_cfg());
    run_client(client_truncated);
    cr_assert(T.rc[0] == CURLE_PARTIAL_FILE || T.rc[0] == CURLE_RECV_ERROR, "curl: %s",
              curl_easy_strerror((CURLcode)T.rc[0]));
    cr_assert_leq(T.bytes[0], 1000000);
    cr_assert(T.prod.done);
    cr_assert_eq(http_server_in_flight(T.srv), 0);
    finish();
}

/* A client that asks for a long stream (t->text[3]) and never reads it. */
static void client_not_reading(struct ctx *t)
{
    struct cli c;
    char req[sizeof(t->text[3]) + 32];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n\r\n", t->text[3]);
    bool ok = cli_connect(&c, t->port) && cli_sends(&c, req);
    t->flag[0] = ok && sem_wait_ms(&t->sem, 10000);
    close(c.fd);
}

Test(http_stream, a_client_that_does_not_read_is_cut_by_the_write_deadline)
{
    struct http_server_config cfg = default_cfg();
    cfg.idle_timeout_ms = 300;
    start(cfg);
    snprintf(T.text[3], sizeof(T.text[3]), "/download/1000000000");
    run_client(client_not_reading);
    cr_assert(T.flag[0], "the producer never finished");
    cr_assert(T.prod.done);
    cr_assert_eq(T.prod.errors, 1);
    cr_assert_eq(T.prod.cb_status, UV_ECANCELED, "%s", err_name(T.prod.cb_status));
    cr_assert_lt(T.prod.sent, 1000000000);
    cr_assert_eq(http_server_connections(T.srv), 0);
    finish();
}

Test(http_stream, free_with_a_write_queued_calls_it_back_once)
{
    start(default_cfg());
    /* One write bigger than the socket buffers: it stays queued. */
    snprintf(T.text[3], sizeof(T.text[3]), "/download-big/%u", 32u << 20);
    pthread_t th = spawn(client_not_reading);
    cr_assert(run_until(&T.loop, &T.prod.wrote, 5000));
    http_server_free(T.srv);
    T.srv = NULL;
    bool ok = run_until(&T.loop, &T.prod.done, 5000);
    run_until(&T.loop, &T.client_done, 15000);
    pthread_join(th, NULL);
    cr_assert(ok, "the write never called back");
    cr_assert_eq(T.prod.cbs, 1);
    cr_assert_eq(T.prod.cb_status, UV_ECANCELED, "%s", err_name(T.prod.cb_status));
    finish();
    cr_assert_eq(T.prod.cbs, 1);
}

/* ---- pipelining and old clients ------------------------------------------------------- */

static void client_pipelined(struct ctx *t)
{
    struct cli c;
    struct resp r[4];
    bool ok = cli_connect(&c, t->port) &&
              cli_sends(&c, "GET /download/100000 HTTP/1.1\r\n\r\n"
                            "HEAD /download/5000 HTTP/1.1\r\n\r\n"
                            "POST /stream/raw HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                            "GET /last HTTP/1.1\r\n\r\n");
    ok = ok && read_response(&c, &r[0], false) && read_response(&c, &r[1], true) &&
         read_response(&c, &r[2], false) && read_response(&c, &r[3], false);
    t->flag[0] = ok;
    for (int i = 0; ok && i < 4; i++) {
        t->status[i] = r[i].status;
        t->bytes[i] = r[i].total;
        keep(t->text[i], sizeof(t->text[i]), i == 1 ? r[i].head : r[i].body);
    }
    t->mismatches[0] = ok ? r[0].mismatches : 1;
    close(c.fd);
}

Test(http_stream, pipelined_requests_after_streams_are_answered_in_order)
{
    start(default_cfg());
    run_client(client_pipelined);
    cr_assert(T.flag[0], "a response was missing or malformed");
    cr_assert_eq(T.status[0], 200);
    cr_assert_eq(T.bytes[0], 100000);
    cr_assert_eq(T.mismatches[0], 0);
    cr_assert_eq(T.status[1], 200);
    cr_assert(strstr(T.text[1], "Transfer-Encoding: chunked") != NULL, "%s", T.text[1]);
    cr_assert_eq(T.status[2], 200);
    cr_assert(strstr(T.text[2], "\"got\":5,") != NULL, "%s", T.text[2]);
    cr_assert_str_eq(T.text[3], "/last");
    finish();
}

static void client_http10(struct ctx *t)
{
    struct cli c;
    struct resp r;
    bool ok = cli_connect(&c, t->port) && cli_sends(&c, "GET /download/3000 HTTP/1.0\r\n\r\n") &&
              read_response(&c, &r, false);
    t->flag[0] = ok;
    t->bytes[0] = ok ? r.total : 0;
    t->mismatches[0] = ok ? r.mismatches : 1;
    keep(t->text[0], sizeof(t->text[0]), ok ? r.head : "");
    close(c.fd);
}

Test(http_stream, http10_gets_the_stream_unchunked_until_close)
{
    start(default_cfg());
    run_client(client_http10);
    cr_assert(T.flag[0]);
    cr_assert(strstr(T.text[0], "Transfer-Encoding") == NULL, "%s", T.text[0]);
    cr_assert(strstr(T.text[0], "Connection: close") != NULL, "%s", T.text[0]);
    cr_assert_eq(T.bytes[0], 3000);
    cr_assert_eq(T.mismatches[0], 0);
    finish();
}
