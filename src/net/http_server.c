/* The HTTP server's connections from accept to free: references, the per-phase timer,
 * reading and back-pressure, the lingering close, drain, and the server's metrics. The
 * parser glue is in http_parse.c, responses in http_response.c. Design notes:
 * docs/internals/http_server.md. */
#include "pdstrace/http_server.h"
#include "http_server_int.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/list.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"

#define RESP_HEADERS_MAX 8192
#define LINGER_MS        2000
#define LISTEN_BACKLOG   511

/* ---- reference counting ---------------------------------------------------------- */

static void srv_unref(struct http_server *srv)
{
    if (--srv->refs > 0)
        return;
    http_limit_free(srv);
    free(srv->host);
    free(srv);
}

static void conn_unref(struct conn *c)
{
    if (--c->refs > 0)
        return;
    struct http_server *srv = c->srv;
    buf_free(&c->pending);
    free(c);
    srv_unref(srv);
}

void http_exchange_unref(struct http_exchange *x)
{
    if (--x->refs > 0)
        return;
    buf_free(&x->url);
    buf_free(&x->path);
    buf_free(&x->query);
    buf_free(&x->headers);
    buf_free(&x->body);
    buf_free(&x->resp_headers);
    buf_free(&x->piece);
    conn_unref(x->conn);
    free(x);
}

struct http_exchange *http_exchange_new(struct conn *c)
{
    struct http_exchange *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    const struct http_server_config *cfg = &c->srv->cfg;
    x->conn = c;
    x->refs = 1;
    c->refs++;
    x->method = "";
    x->start_ns = uv_hrtime();
    buf_init(&x->url, cfg->max_header_bytes);
    buf_init(&x->path, cfg->max_header_bytes);
    buf_init(&x->query, cfg->max_header_bytes);
    buf_init(&x->headers, cfg->max_header_bytes + 2 * MAX_HEADERS);
    buf_init(&x->body, cfg->max_body_bytes);
    buf_init(&x->resp_headers, RESP_HEADERS_MAX);
    buf_init(&x->piece, READ_BUF_SIZE);
    list_init(&x->kick_node);
    x->declared_len = UINT64_MAX;
    return x;
}

/* ---- metrics: the families this server counts -------------------------------------- */

static const struct metrics_family families[] = {
    {"pdstrace_http_requests_total", METRICS_COUNTER,
     "HTTP requests answered, by route and status"},
    {"pdstrace_http_request_duration_seconds", METRICS_HISTOGRAM,
     "time from a complete request to its response, by route"},
    {"pdstrace_http_connections", METRICS_GAUGE, "open client connections"},
    {"pdstrace_http_in_flight", METRICS_GAUGE, "requests being handled"},
};

static void collect(void *arg)
{
    const struct http_server *srv = arg;
    metrics_set(srv->cfg.metrics, "pdstrace_http_connections", NULL, srv->nconns);
    metrics_set(srv->cfg.metrics, "pdstrace_http_in_flight", NULL, srv->in_flight);
}

static int metrics_start(struct http_server *srv)
{
    int err = metrics_declare(srv->cfg.metrics, families, ARRAY_SIZE(families));
    return err ? err : metrics_add_collector(srv->cfg.metrics, collect, srv);
}

void http_server_count_response(const struct http_exchange *x, int status)
{
    struct metrics *m = x->conn->srv->cfg.metrics;
    if (m == NULL)
        return;
    char labels[160];
    double secs = (double)(uv_hrtime() - x->start_ns) / 1e9;
    snprintf(labels, sizeof(labels), "route=\"%s\",status=\"%d\"", http_exchange_route(x), status);
    metrics_inc(m, "pdstrace_http_requests_total", labels, 1);
    snprintf(labels, sizeof(labels), "route=\"%s\"", http_exchange_route(x));
    metrics_observe(m, "pdstrace_http_request_duration_seconds", labels, secs);
}

/* ---- phases and reading ----------------------------------------------------------- */

static void on_conn_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->phase == PHASE_HEADERS || c->phase == PHASE_BODY)
        http_conn_fail(c, 408, "invalid_field", "request timed out");
    else if (c->phase == PHASE_STREAM)
        http_stream_timeout(c);
    else
        http_conn_close(c);
}

/* Each phase has its own deadline; one timer re-armed per phase is enough. */
void http_conn_set_phase(struct conn *c, enum conn_phase phase)
{
    const struct http_server_config *cfg = &c->srv->cfg;
    static const unsigned linger = LINGER_MS;
    const unsigned *ms[] = {
        [PHASE_WAIT] = &cfg->header_timeout_ms,
        [PHASE_IDLE] = &cfg->idle_timeout_ms,
        [PHASE_HEADERS] = &cfg->header_timeout_ms,
        [PHASE_BODY] = &cfg->body_timeout_ms,
        [PHASE_STREAM] = &cfg->body_timeout_ms, /* stopped while the handler pauses */
        [PHASE_HANDLING] = NULL,
        [PHASE_WRITING] = &cfg->idle_timeout_ms,
        [PHASE_LINGER] = &linger,
    };
    c->phase = phase;
    if (ms[phase] == NULL || *ms[phase] == 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_conn_timer, *ms[phase], 0);
    http_limit_phase(c);
}

void http_conn_read_stop(struct conn *c)
{
    if (!c->read_paused && !c->closing) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_paused = true;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct conn *c = h->data;
    size_t n = sizeof(c->srv->rbuf);
    UNUSED(suggested);
    if (c->phase == PHASE_HANDLING || c->phase == PHASE_WRITING) {
        size_t room = buf_room(&c->pending);
        n = room < n ? room : n;
    }
    /* One buffer serves every connection: read_cb consumes it before the next alloc. */
    *b = uv_buf_init(c->srv->rbuf, (unsigned)n);
}

/* Bytes that arrive while a request is handled are kept (bounded) for later parsing; this
 * keeps the read side open so that a client going away is noticed. A streamed body not
 * yet read is kept even when the connection will close: its handler may still read it. */
static void stash(struct conn *c, const char *data, size_t n)
{
    if (c->close_after && c->msg_done)
        return;
    if (buf_append(&c->pending, data, n) != 0) {
        http_conn_close(c);
        return;
    }
    if (buf_room(&c->pending) == 0)
        http_conn_read_stop(c);
}

static void conn_teardown(struct conn *c, bool reset, int status);

static void on_read_end(struct conn *c, ssize_t nread)
{
    c->eof = true;
    if (nread == UV_EOF && c->phase == PHASE_WRITING) {
        c->close_after = true; /* the answer is on its way: finish writing it first */
        return;
    }
    conn_teardown(c, false, (int)nread);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = s->data;
    if (c->closing)
        return;
    if (nread == UV_ENOBUFS) {
        http_conn_read_stop(c);
        return;
    }
    if (nread < 0) {
        on_read_end(c, nread);
        return;
    }
    if (nread == 0 || c->phase == PHASE_LINGER)
        return;
    if (c->phase == PHASE_HANDLING || c->phase == PHASE_WRITING) {
        stash(c, b->base, (size_t)nread);
        return;
    }
    if (c->phase == PHASE_STREAM)
        http_conn_set_phase(c, PHASE_STREAM); /* progress: the body timeout starts again */
    http_conn_feed(c, b->base, (size_t)nread);
}

void http_conn_read_start(struct conn *c)
{
    if (!c->read_paused || c->closing || c->eof)
        return;
    if (c->phase != PHASE_LINGER && buf_room(&c->pending) == 0)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        http_conn_close(c);
        return;
    }
    c->read_paused = false;
}

/* ---- connection teardown ---------------------------------------------------------- */

static void drain_finish(struct http_server *srv, int status)
{
    http_server_drained_cb *cb = srv->drain_cb;
    srv->drain_cb = NULL;
    uv_timer_stop(&srv->drain_timer);
    if (cb != NULL)
        cb(status, srv->drain_arg);
}

static void on_conn_handle_close(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles_open == 0)
        conn_unref(c);
}

/* With reset, SO_LINGER 0 makes close() send RST (http_exchange_abort). The socket is only
 * shut down after a final response, so uv_tcp_close_reset cannot meet a pending shutdown
 * while a request is handled; should it fail anyway, the handle is still open and a plain
 * close follows. */
static void close_tcp(struct conn *c, bool reset)
{
    if (!reset || uv_tcp_close_reset(&c->tcp, on_conn_handle_close) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_close);
}

/* Closes at once. The exchange being handled is detached, not freed: the handler still
 * holds its reference, and the struct lives until both handles and all exchanges are gone.
 * A body being streamed ends with status, once the connection is already closed. */
static void conn_teardown(struct conn *c, bool reset, int status)
{
    if (c->closing)
        return;
    c->closing = true;
    list_remove(&c->link);
    c->srv->nconns--;
    http_limit_forget(c);
    struct http_exchange *x = c->cur;
    c->cur = NULL;
    close_tcp(c, reset);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_close);
    if (x != NULL) {
        x->detached = true;
        http_stream_gone(x, status);
        http_exchange_unref(x);
    }
    struct http_server *srv = c->srv;
    if (srv->draining && srv->drain_cb != NULL && srv->nconns == 0)
        drain_finish(srv, 0);
}

void http_conn_close(struct conn *c)
{
    conn_teardown(c, false, UV_ECANCELED);
}

void http_conn_reset(struct conn *c)
{
    conn_teardown(c, true, UV_ECANCELED);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    if (status < 0 && !c->closing)
        http_conn_close(c);
}

/* After a final response we shut our side and read until the client's EOF, so that
 * unread request bytes do not turn our close into a reset that destroys the response. */
static void linger(struct conn *c)
{
    if (c->eof) {
        http_conn_close(c);
        return;
    }
    http_conn_set_phase(c, PHASE_LINGER);
    buf_reset(&c->pending);
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        http_conn_close(c);
        return;
    }
    http_conn_read_start(c);
}

/* ---- after a response ------------------------------------------------------------- */

/* Parses what arrived while the last request was handled, then reads again. */
static void resume(struct conn *c)
{
    http_parse_next(c);
    http_conn_set_phase(c, PHASE_IDLE);
    if (buf_len(&c->pending) > 0) {
        size_t n = buf_len(&c->pending);
        char *data = buf_steal(&c->pending);
        http_conn_feed(c, data, n);
        free(data);
    }
    http_conn_read_start(c);
}

void http_conn_answered(struct conn *c)
{
    struct http_exchange *x = c->cur;
    c->cur = NULL;
    if (x != NULL)
        http_exchange_unref(x);
    if (c->close_after || c->srv->draining)
        linger(c);
    else
        resume(c);
}

/* ---- accepting -------------------------------------------------------------------- */

static void on_reject_close(uv_handle_t *h)
{
    free(h);
}

static void reject_one(struct http_server *srv)
{
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t == NULL || uv_tcp_init(srv->loop, t) != 0) {
        free(t);
        log_msgf(LOG_LEVEL_ERROR, NULL, "cannot refuse a connection: out of memory");
        return;
    }
    uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, on_reject_close);
}

static struct conn *conn_new(struct http_server *srv)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL || uv_tcp_init(srv->loop, &c->tcp) != 0) {
        free(c);
        return NULL;
    }
    uv_timer_init(srv->loop, &c->timer);
    c->srv = srv;
    srv->refs++;
    c->refs = 1;
    c->handles_open = 2;
    c->tcp.data = c;
    c->timer.data = c;
    buf_init(&c->pending, READ_BUF_SIZE);
    http_parse_init(c);
    list_init(&c->idle_node);
    list_init(&c->peer_node);
    list_push_head(&srv->conns, &c->link);
    srv->nconns++;
    return c;
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct http_server *srv = container_of(listener, struct http_server, listener);
    if (status < 0) {
        log_msgf(LOG_LEVEL_WARN, NULL, "accept failed: %s", uv_err_name(status));
        return;
    }
    struct conn *c = conn_new(srv);
    if (c == NULL) {
        reject_one(srv);
        return;
    }
    /* Admission needs the peer's address, so the connection is accepted first; a refused
     * one is closed before anything is read from it. */
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || http_limit_admit(c) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        http_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    http_conn_set_phase(c, PHASE_WAIT);
}

/* ---- server ----------------------------------------------------------------------- */

static void on_srv_handle_close(uv_handle_t *h)
{
    srv_unref(h->data);
}

static void close_listener(struct http_server *srv)
{
    if (!srv->listener_open)
        return;
    srv->listener_open = false;
    uv_close((uv_handle_t *)&srv->listener, on_srv_handle_close);
}

static int bind_listen(struct http_server *srv)
{
    struct sockaddr_storage ss;
    const char *host = srv->cfg.host;
    int err;
    if (strchr(host, ':') != NULL)
        err = uv_ip6_addr(host, srv->cfg.port, (struct sockaddr_in6 *)&ss);
    else
        err = uv_ip4_addr(host, srv->cfg.port, (struct sockaddr_in *)&ss);
    if (!err)
        err = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (!err)
        err = uv_listen((uv_stream_t *)&srv->listener, LISTEN_BACKLOG, on_connection);
    int len = sizeof(ss);
    if (!err)
        err = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len);
    if (!err)
        srv->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return err;
}

static int init_handles(struct http_server *srv)
{
    int err = uv_tcp_init(srv->loop, &srv->listener);
    if (err)
        return err;
    srv->listener.data = srv;
    srv->listener_open = true;
    srv->refs++;
    uv_timer_init(srv->loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    srv->timer_open = true;
    srv->refs++;
    uv_timer_init(srv->loop, &srv->kick_timer);
    srv->kick_timer.data = srv;
    srv->kick_open = true;
    srv->refs++;
    return 0;
}

int http_server_new(struct http_server **out, uv_loop_t *loop, const struct http_server_config *cfg)
{
    *out = NULL;
    if (cfg == NULL || cfg->handler == NULL || cfg->host == NULL)
        return ERR_INVALID_INPUT;
    struct http_server *srv = calloc(1, sizeof(*srv));
    char *host = strdup(cfg->host);
    if (srv == NULL || host == NULL) {
        free(srv);
        free(host);
        return UV_ENOMEM;
    }
    srv->loop = loop;
    srv->cfg = *cfg;
    srv->cfg.host = host;
    srv->host = host;
    srv->refs = 1;
    list_init(&srv->conns);
    list_init(&srv->kicked);
    http_parse_raise_limit(cfg->max_header_bytes);
    int err = http_limit_init(srv);
    if (!err)
        err = metrics_start(srv);
    if (!err)
        err = init_handles(srv);
    if (!err)
        err = bind_listen(srv);
    if (err) {
        http_server_free(srv);
        return err;
    }
    *out = srv;
    return 0;
}

static void close_all(struct http_server *srv)
{
    while (!list_is_empty(&srv->conns))
        http_conn_close(LIST_ENTRY(list_first(&srv->conns), struct conn, link));
}

void http_server_free(struct http_server *srv)
{
    if (srv == NULL || srv->freeing)
        return;
    srv->freeing = true;
    metrics_remove_collector(srv->cfg.metrics, collect, srv);
    close_listener(srv);
    http_server_drained_cb *cb = srv->drain_cb;
    srv->drain_cb = NULL;
    close_all(srv);
    http_stream_flush(srv);
    if (srv->timer_open)
        uv_close((uv_handle_t *)&srv->drain_timer, on_srv_handle_close);
    if (srv->kick_open)
        uv_close((uv_handle_t *)&srv->kick_timer, on_srv_handle_close);
    srv->kick_open = false;
    if (cb != NULL)
        cb(UV_ECANCELED, srv->drain_arg);
    srv_unref(srv);
}

int http_server_port(const struct http_server *srv)
{
    return srv->port;
}

static void on_drain_timer(uv_timer_t *t)
{
    struct http_server *srv = t->data;
    if (srv->drain_cb == NULL)
        return;
    if (srv->nconns == 0) {
        drain_finish(srv, 0);
        return;
    }
    http_server_drained_cb *cb = srv->drain_cb;
    srv->drain_cb = NULL;
    close_all(srv);
    cb(ERR_UPSTREAM_TIMEOUT, srv->drain_arg);
}

void http_server_drain(struct http_server *srv, unsigned deadline_ms, http_server_drained_cb *cb,
                       void *arg)
{
    if (srv->freeing || srv->draining)
        return;
    srv->draining = true;
    close_listener(srv);
    struct list_node *node, *tmp;
    LIST_FOREACH_SAFE(node, tmp, &srv->conns)
    {
        struct conn *c = LIST_ENTRY(node, struct conn, link);
        if (c->phase == PHASE_WAIT || c->phase == PHASE_IDLE)
            http_conn_close(c);
        else if (c->phase != PHASE_WRITING)
            c->close_after = true;
    }
    /* Set only now, so that the closes above cannot call cb from inside this function. */
    srv->drain_cb = cb;
    srv->drain_arg = arg;
    /* The deadline is counted from now, not from the loop's cached time. */
    uv_update_time(srv->loop);
    uv_timer_start(&srv->drain_timer, on_drain_timer, srv->nconns == 0 ? 0 : deadline_ms, 0);
}

unsigned http_server_connections(const struct http_server *srv)
{
    return srv->nconns;
}

unsigned http_server_in_flight(const struct http_server *srv)
{
    return srv->in_flight;
}
