#include "pdstrace/http_server.h"
#include "http_server_int.h"

#include <http_parser.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pdstrace/buf.h"
#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"

#define MAX_HEADERS      100
#define HEADER_OVERHEAD  4 /* ": " and CRLF, counted per header */
#define RESP_HEADERS_MAX 8192
#define LINGER_MS        2000
#define LISTEN_BACKLOG   511

struct write_req {
    uv_write_t req;
    struct conn *conn;
    char *data;
    bool final; /* the response, not an interim "100 Continue" */
};

static http_server_observer_fn *observer;

static const char CONTINUE_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void conn_close(struct conn *c);
static void conn_fail(struct conn *c, int status, const char *code, const char *msg);
static void feed(struct conn *c, const char *data, size_t n);

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

static void exchange_unref(struct http_exchange *x)
{
    if (--x->refs > 0)
        return;
    buf_free(&x->url);
    buf_free(&x->path);
    buf_free(&x->query);
    buf_free(&x->headers);
    buf_free(&x->body);
    buf_free(&x->resp_headers);
    conn_unref(x->conn);
    free(x);
}

static struct http_exchange *exchange_new(struct conn *c)
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
    return x;
}

/* ---- small helpers --------------------------------------------------------------- */

static void arm(struct conn *c, unsigned ms, uv_timer_cb cb)
{
    if (ms == 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, cb, ms, 0);
}

static void on_conn_timer(uv_timer_t *t);

/* Each phase has its own deadline; one timer re-armed per phase is enough. */
static void set_phase(struct conn *c, enum conn_phase phase)
{
    const struct http_server_config *cfg = &c->srv->cfg;
    static const unsigned linger = LINGER_MS;
    const unsigned *ms[] = {
        [PHASE_WAIT] = &cfg->header_timeout_ms,
        [PHASE_IDLE] = &cfg->idle_timeout_ms,
        [PHASE_HEADERS] = &cfg->header_timeout_ms,
        [PHASE_BODY] = &cfg->body_timeout_ms,
        [PHASE_HANDLING] = NULL,
        [PHASE_WRITING] = &cfg->idle_timeout_ms,
        [PHASE_LINGER] = &linger,
    };
    c->phase = phase;
    arm(c, ms[phase] ? *ms[phase] : 0, on_conn_timer);
    http_limit_phase(c);
}

static void pause_reading(struct conn *c)
{
    if (!c->read_paused && !c->closing) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->read_paused = true;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void resume_reading(struct conn *c)
{
    if (!c->read_paused || c->closing || c->eof)
        return;
    if (c->phase != PHASE_LINGER && buf_room(&c->pending) == 0)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    c->read_paused = false;
}

static int fail(struct conn *c, int status, const char *code, const char *msg)
{
    if (c->fail_status == 0) {
        c->fail_status = status;
        c->fail_code = code;
        c->fail_msg = msg;
    }
    return -1;
}

static int fail_too_large_headers(struct conn *c)
{
    return fail(c, 431, "payload_too_large", "header block too large");
}

static int fail_buf(struct conn *c, int err, int status, const char *msg)
{
    if (err == ERR_TOO_LARGE)
        return fail(c, status, "payload_too_large", msg);
    return fail(c, 500, "internal", "out of memory");
}

/* ---- request id and date ---------------------------------------------------------- */

static bool request_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\'')
            return false;
    }
    return true;
}

static void choose_request_id(struct http_exchange *x)
{
    const char *v = http_exchange_header(x, "X-Request-ID");
    if (v != NULL && request_id_ok(v))
        memcpy(x->request_id, v, strlen(v) + 1);
    else
        crypto_uuid4(x->request_id);
}

/* Formatted by hand: strftime's %a and %b follow the locale. */
static const char *http_date(struct http_server *srv)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    if (now == srv->date_sec && srv->date[0] != '\0')
        return srv->date;
    if (gmtime_r(&now, &tm) == NULL)
        return srv->date;
    snprintf(srv->date, sizeof(srv->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    srv->date_sec = now;
    return srv->date;
}

static const char *reason(int status)
{
    static const struct {
        int status;
        const char *text;
    } tab[] = {
        {100, "Continue"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {413, "Payload Too Large"},
        {415, "Unsupported Media Type"},
        {422, "Unprocessable Entity"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(tab); i++)
        if (tab[i].status == status)
            return tab[i].text;
    return "Unknown";
}

/* ---- responses -------------------------------------------------------------------- */

static bool status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

static int build_head(struct buf *out, struct http_exchange *x, int status, const char *ct,
                      size_t len, bool close)
{
    int err = buf_appendf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, reason(status),
                          http_date(x->conn->srv));
    if (!err && ct != NULL && len > 0 && status_has_body(status))
        err = buf_appendf(out, "Content-Type: %s\r\n", ct);
    if (!err && status_has_body(status))
        err = buf_appendf(out, "Content-Length: %zu\r\n", len);
    if (!err)
        err = buf_appendf(out, "X-Request-ID: %s\r\n", x->request_id);
    if (!err && close)
        err = buf_append_str(out, "Connection: close\r\n");
    else if (!err && x->http10)
        err = buf_append_str(out, "Connection: keep-alive\r\n");
    if (!err)
        err = buf_append(out, buf_cstr(&x->resp_headers), buf_len(&x->resp_headers));
    if (!err)
        err = buf_append_str(out, "\r\n");
    return err;
}

static void on_write(uv_write_t *req, int status);

/* Takes ownership of data (malloc'd) on every path. */
static int queue_write(struct conn *c, char *data, size_t len, bool final)
{
    struct write_req *w = malloc(sizeof(*w));
    if (w == NULL) {
        free(data);
        return UV_ENOMEM;
    }
    w->conn = c;
    w->data = data;
    w->final = final;
    uv_buf_t b = uv_buf_init(data != NULL ? data : (char *)(uintptr_t)CONTINUE_100, (unsigned)len);
    int err = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (err) {
        free(data);
        free(w);
    }
    return err;
}

static void notify_observer(const struct http_exchange *x, int status)
{
    if (observer == NULL)
        return;
    double secs = (double)(uv_hrtime() - x->start_ns) / 1e9;
    observer(http_exchange_route(x), status, secs);
}

/* Queues the whole response of the connection's current exchange. */
static void send_response(struct http_exchange *x, int status, const char *ct, const char *body,
                          size_t len)
{
    struct conn *c = x->conn;
    bool close = !x->keep_alive || c->close_after || c->srv->draining || c->srv->freeing;
    struct buf out;
    buf_init(&out, SIZE_MAX / 2);
    int err = build_head(&out, x, status, ct, len, close);
    if (!err && !x->is_head && status_has_body(status) && len > 0)
        err = buf_append(&out, body, len);
    size_t n = buf_len(&out);
    if (!err)
        err = queue_write(c, buf_steal(&out), n, true);
    buf_free(&out);
    notify_observer(x, status);
    if (err) {
        conn_close(c);
        return;
    }
    c->close_after = close;
    set_phase(c, PHASE_WRITING);
}

static char *error_json(const char *code, const char *field, const char *message)
{
    json_t *err = json_object();
    json_t *root = json_object();
    char *out = NULL;
    if (err != NULL && root != NULL) {
        json_object_set_new(err, "code", json_string(code != NULL ? code : "internal"));
        if (field != NULL)
            json_object_set_new(err, "field", json_string(field));
        json_object_set_new(err, "message", json_string(message != NULL ? message : ""));
        json_object_set(root, "error", err);
        out = json_dumps(root, JSON_COMPACT);
    }
    json_decref(err);
    json_decref(root);
    return out;
}

static void send_error(struct http_exchange *x, int status, const char *code, const char *field,
                       const char *message)
{
    static const char fallback[] = "{\"error\":{\"code\":\"internal\",\"message\":\"\"}}";
    char *body = error_json(code, field, message);
    const char *b = body != NULL ? body : fallback;
    send_response(x, status, "application/json", b, strlen(b));
    free(body);
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

static void unlink_conn(struct conn *c)
{
    struct http_server *srv = c->srv;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    srv->nconns--;
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
 * holds its reference, and the struct lives until both handles and all exchanges are gone. */
static void conn_teardown(struct conn *c, bool reset)
{
    if (c->closing)
        return;
    c->closing = true;
    unlink_conn(c);
    http_limit_forget(c);
    struct http_exchange *x = c->cur;
    c->cur = NULL;
    if (x != NULL) {
        x->detached = true;
        exchange_unref(x);
    }
    close_tcp(c, reset);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_close);
    struct http_server *srv = c->srv;
    if (srv->draining && srv->drain_cb != NULL && srv->nconns == 0)
        drain_finish(srv, 0);
}

static void conn_close(struct conn *c)
{
    conn_teardown(c, false);
}

void http_conn_close(struct conn *c)
{
    conn_close(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    if (status < 0 && !c->closing)
        conn_close(c);
}

/* After a final response we shut our side and read until the client's EOF, so that
 * unread request bytes do not turn our close into a reset that destroys the response. */
static void linger(struct conn *c)
{
    if (c->eof) {
        conn_close(c);
        return;
    }
    set_phase(c, PHASE_LINGER);
    buf_reset(&c->pending);
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    resume_reading(c);
}

/* ---- after a response ------------------------------------------------------------- */

static void resume(struct conn *c)
{
    http_parser_pause(&c->parser, 0);
    c->msg_done = false;
    set_phase(c, PHASE_IDLE);
    if (buf_len(&c->pending) > 0) {
        size_t n = buf_len(&c->pending);
        char *data = buf_steal(&c->pending);
        feed(c, data, n);
        free(data);
    }
    resume_reading(c);
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = container_of(req, struct write_req, req);
    struct conn *c = w->conn;
    bool final = w->final;
    free(w->data);
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (!final)
        return;
    struct http_exchange *x = c->cur;
    c->cur = NULL;
    if (x != NULL)
        exchange_unref(x);
    if (c->close_after || c->srv->draining)
        linger(c);
    else
        resume(c);
}

static void on_conn_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->phase == PHASE_HEADERS || c->phase == PHASE_BODY)
        conn_fail(c, 408, "invalid_field", "request timed out");
    else
        conn_close(c);
}

/* Answers a request that never reached a handler (400, 408, 413, 431) and closes. */
static void conn_fail(struct conn *c, int status, const char *code, const char *msg)
{
    if (c->closing)
        return;
    if (c->cur == NULL)
        c->cur = exchange_new(c);
    if (c->cur == NULL) {
        conn_close(c);
        return;
    }
    struct http_exchange *x = c->cur;
    if (x->request_id[0] == '\0')
        crypto_uuid4(x->request_id);
    x->keep_alive = false;
    c->close_after = true;
    send_error(x, status, code, NULL, msg);
}

/* ---- strict framing --------------------------------------------------------------- */

/* Debian builds http-parser with HTTP_PARSER_STRICT=0: it takes a bare LF, or a CR followed
 * by anything, for a line end, and skips the two bytes after chunk data unseen. A proxy in
 * front of us may frame such a request differently (request smuggling), so we check every
 * byte the parser consumes outside body data: each LF follows a CR, each CR precedes an LF,
 * and each chunk's data is followed by CRLF. on_body tells us where body data lies; every
 * other byte lies before a data callback's token end or before where execute stopped. */
static bool framing_ok(struct conn *c, const char *p, const char *end)
{
    for (; p < end; p++) {
        char ch = *p;
        if (c->crlf_due && ch != '\r')
            return false;
        c->crlf_due = false;
        if ((c->scan_last == '\r') != (ch == '\n'))
            return false;
        c->scan_last = ch;
    }
    return true;
}

/* Checks the bytes after the last checked one up to end, in the buffer being parsed. */
static int check_framing(struct conn *c, const char *end)
{
    const char *from = c->scan_at;
    if (from == NULL || end <= from)
        return 0;
    c->scan_at = end;
    if (framing_ok(c, from, end))
        return 0;
    return fail(c, 400, "invalid_field", "malformed HTTP framing");
}

/* The lenient parser reads "identity, chunked", "chunked, gzip" or a repeated header its
 * own way, and a proxy in front of us may read them another. One Transfer-Encoding header
 * whose value is the single coding "chunked" (in any case, as codings are
 * case-insensitive) is all we accept. */
static bool transfer_encoding_ok(const struct http_exchange *x)
{
    const char *v;
    unsigned n = http_exchange_header_count(x, "Transfer-Encoding", &v);
    if (n == 0)
        return true;
    if (n > 1 || strncasecmp(v, "chunked", 7) != 0)
        return false;
    return v[7 + strspn(v + 7, " \t")] == '\0';
}

/* ---- parser callbacks ------------------------------------------------------------- */

static int count_header_bytes(struct conn *c, size_t n)
{
    c->header_bytes += n;
    if (c->header_bytes > c->srv->cfg.max_header_bytes)
        return fail_too_large_headers(c);
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;
    c->header_bytes = 0;
    c->nheaders = 0;
    c->hstate = HS_NONE;
    c->headers_done = false;
    c->want_continue = false;
    if (c->cur == NULL)
        c->cur = exchange_new(c);
    if (c->cur == NULL)
        return fail(c, 500, "internal", "out of memory");
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (check_framing(c, at + len) || count_header_bytes(c, len))
        return -1;
    if (memchr(at, '\0', len) != NULL)
        return fail(c, 400, "invalid_field", "malformed request target");
    int err = buf_append(&c->cur->url, at, len);
    return err ? fail_buf(c, err, 431, "header block too large") : 0;
}

/* Headers are stored as "name\0value\0" pairs; the NULs are added on each transition of
 * the field/value state machine because both tokens may arrive in many pieces. */
static int header_piece(struct conn *c, enum header_state to, const char *at, size_t len)
{
    struct buf *h = &c->cur->headers;
    int err = 0;
    if (c->hstate != to && c->hstate != HS_NONE)
        err = buf_append(h, "", 1);
    if (!err && len > 0)
        err = buf_append(h, at, len);
    c->hstate = to;
    return err ? fail_buf(c, err, 431, "header block too large") : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (check_framing(c, at + len) || count_header_bytes(c, len))
        return -1;
    if (c->headers_done)
        return 0; /* a trailer: counted, not kept */
    /* http-parser's lax mode allows spaces in names ("Content-Length : 5"), which other
     * parsers read differently: a request smuggling vector (RFC 9112 section 5.1). */
    if (memchr(at, '\0', len) != NULL || memchr(at, ' ', len) != NULL ||
        memchr(at, '\t', len) != NULL)
        return fail(c, 400, "invalid_field", "malformed header");
    if (c->hstate != HS_FIELD) {
        /* A new header begins; pieces of one name arrive with no state change. */
        if (++c->nheaders > MAX_HEADERS)
            return fail_too_large_headers(c);
        if (count_header_bytes(c, HEADER_OVERHEAD))
            return -1;
    }
    return header_piece(c, HS_FIELD, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (check_framing(c, at + len) || count_header_bytes(c, len))
        return -1;
    if (c->headers_done)
        return 0;
    if (memchr(at, '\0', len) != NULL)
        return fail(c, 400, "invalid_field", "malformed header");
    return header_piece(c, HS_VALUE, at, len);
}

/* Terminates the last pair; a field with no value callback gets an empty value. */
static int close_header_block(struct conn *c)
{
    struct buf *h = &c->cur->headers;
    int err = 0;
    if (c->hstate == HS_FIELD)
        err = buf_append(h, "\0", 2);
    else if (c->hstate == HS_VALUE)
        err = buf_append(h, "", 1);
    c->hstate = HS_NONE;
    c->headers_done = true;
    return err ? fail_buf(c, err, 431, "header block too large") : 0;
}

static int split_url(struct http_exchange *x)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (buf_len(&x->url) == 0 ||
        http_parser_parse_url(buf_cstr(&x->url), buf_len(&x->url), 0, &u) != 0)
        return -1;
    if (!(u.field_set & (1 << UF_PATH)))
        return -1;
    const char *s = buf_cstr(&x->url);
    int err = buf_append(&x->path, s + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    if (!err && (u.field_set & (1 << UF_QUERY)))
        err = buf_append(&x->query, s + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    return err;
}

static bool expects_continue(struct http_exchange *x, const http_parser *p)
{
    const char *v = http_exchange_header(x, "Expect");
    return v != NULL && strcasecmp(v, "100-continue") == 0 && p->http_major == 1 &&
           p->http_minor >= 1;
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct http_exchange *x = c->cur;
    if (close_header_block(c))
        return -1;
    x->method = http_method_str((enum http_method)p->method);
    x->is_head = p->method == HTTP_HEAD;
    x->http10 = p->http_major == 0 || (p->http_major == 1 && p->http_minor == 0);
    choose_request_id(x);
    if (split_url(x) != 0)
        return fail(c, 400, "invalid_field", "malformed request target");
    if (!transfer_encoding_ok(x))
        return fail(c, 400, "invalid_field", "unsupported Transfer-Encoding");
    bool chunked = (p->flags & F_CHUNKED) != 0;
    if (!chunked && p->content_length != ULLONG_MAX &&
        p->content_length > c->srv->cfg.max_body_bytes)
        return fail(c, 413, "payload_too_large", "request body too large");
    /* Sent by feed(), once the framing of the bytes parsed so far has been checked. */
    c->want_continue = expects_continue(x, p);
    set_phase(c, PHASE_BODY);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (check_framing(c, at))
        return -1;
    /* Body bytes are data, not framing. The parser counts content_length down before this
     * call, so 0 in a chunked body means the chunk's data is complete. */
    c->scan_at = at + len;
    c->scan_last = 0;
    c->crlf_due = (p->flags & F_CHUNKED) && p->content_length == 0;
    int err = buf_append(&c->cur->body, at, len);
    return err ? fail_buf(c, err, 413, "request body too large") : 0;
}

/* Pausing here makes http_parser_execute return right after this message, so pipelined
 * requests wait in the connection's pending buffer until this one has been answered. */
static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct http_exchange *x = c->cur;
    x->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    x->start_ns = uv_hrtime();
    c->msg_done = true;
    c->want_continue = false; /* the body is all here already */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- reading and parsing ---------------------------------------------------------- */

static void dispatch(struct conn *c)
{
    struct http_exchange *x = c->cur;
    struct http_server *srv = c->srv;
    set_phase(c, PHASE_HANDLING);
    if (!x->keep_alive)
        c->close_after = true;
    x->refs++;
    srv->in_flight++;
    srv->cfg.handler(x, srv->cfg.handler_arg);
}

static void parse_failed(struct conn *c, enum http_errno e)
{
    log_msgf(LOG_LEVEL_DEBUG, NULL, "http parse error: %s", http_errno_name(e));
    if (e == HPE_HEADER_OVERFLOW)
        conn_fail(c, 431, "payload_too_large", "header block too large");
    else
        conn_fail(c, 400, "invalid_field", "malformed HTTP request");
}

/* Runs the parser over data and checks the framing of the bytes it consumed. */
static size_t parse(struct conn *c, const char *data, size_t n)
{
    c->scan_at = data;
    size_t done = http_parser_execute(&c->parser, &parser_settings, data, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_OK || e == HPE_PAUSED)
        check_framing(c, data + done);
    c->scan_at = NULL;
    return done;
}

static void send_continue(struct conn *c)
{
    c->want_continue = false;
    if (queue_write(c, NULL, sizeof(CONTINUE_100) - 1, false) != 0)
        conn_fail(c, 500, "internal", "write failed");
}

/* Runs the parser over bytes that are ours (copied or from the read buffer). */
static void feed(struct conn *c, const char *data, size_t n)
{
    if (c->phase == PHASE_WAIT || c->phase == PHASE_IDLE)
        set_phase(c, PHASE_HEADERS);
    size_t done = parse(c, data, n);
    if (c->closing)
        return;
    if (c->fail_status != 0) {
        conn_fail(c, c->fail_status, c->fail_code, c->fail_msg);
        return;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (!c->msg_done) {
        if (e != HPE_OK || done != n)
            parse_failed(c, e);
        else if (c->want_continue)
            send_continue(c);
        return;
    }
    if (c->cur->keep_alive && done < n && buf_append(&c->pending, data + done, n - done)) {
        conn_close(c);
        return;
    }
    dispatch(c);
}

/* Bytes that arrive while a request is handled are kept (bounded) for later parsing; this
 * keeps the read side open so that a client going away is noticed. */
static void stash(struct conn *c, const char *data, size_t n)
{
    if (c->close_after)
        return;
    if (buf_append(&c->pending, data, n) != 0) {
        conn_close(c);
        return;
    }
    if (buf_room(&c->pending) == 0)
        pause_reading(c);
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

static void on_read_end(struct conn *c, ssize_t nread)
{
    c->eof = true;
    if (nread == UV_EOF && c->phase == PHASE_WRITING) {
        c->close_after = true; /* the answer is on its way: finish writing it first */
        return;
    }
    conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = s->data;
    if (c->closing)
        return;
    if (nread == UV_ENOBUFS) {
        pause_reading(c);
        return;
    }
    if (nread < 0) {
        on_read_end(c, nread);
        return;
    }
    if (nread == 0 || c->phase == PHASE_LINGER)
        return;
    if (c->phase == PHASE_HANDLING || c->phase == PHASE_WRITING)
        stash(c, b->base, (size_t)nread);
    else
        feed(c, b->base, (size_t)nread);
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
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = c;
    srv->conns = c;
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
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    set_phase(c, PHASE_WAIT);
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

/* http-parser's limit is process-global, so it only ever grows, as a safety net behind
 * our own per-server count of request-line and header bytes. */
static void raise_parser_limit(size_t max_header_bytes)
{
    static size_t current = 80 * 1024;
    if (max_header_bytes + 1024 <= current || max_header_bytes > UINT32_MAX / 2)
        return;
    current = max_header_bytes + 1024;
    http_parser_set_max_header_size((uint32_t)current);
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
    raise_parser_limit(cfg->max_header_bytes);
    int err = http_limit_init(srv);
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
    while (srv->conns != NULL)
        conn_close(srv->conns);
}

void http_server_free(struct http_server *srv)
{
    if (srv == NULL || srv->freeing)
        return;
    srv->freeing = true;
    close_listener(srv);
    http_server_drained_cb *cb = srv->drain_cb;
    srv->drain_cb = NULL;
    close_all(srv);
    if (srv->timer_open)
        uv_close((uv_handle_t *)&srv->drain_timer, on_srv_handle_close);
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
    struct conn *next;
    for (struct conn *c = srv->conns; c != NULL; c = next) {
        next = c->next;
        if (c->phase == PHASE_WAIT || c->phase == PHASE_IDLE)
            conn_close(c);
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

void http_server_set_observer(http_server_observer_fn *fn)
{
    observer = fn;
}

/* ---- exchanges -------------------------------------------------------------------- */

void http_exchange_respond(struct http_exchange *x, int status, const char *content_type,
                           const char *body, size_t len)
{
    if (x->responded)
        return;
    x->responded = true;
    struct http_server *srv = x->conn->srv;
    srv->in_flight--;
    if (!x->detached)
        send_response(x, status, content_type, body, len);
    exchange_unref(x);
}

void http_exchange_abort(struct http_exchange *x)
{
    if (x->responded)
        return;
    x->responded = true;
    struct conn *c = x->conn;
    c->srv->in_flight--;
    /* The handler's reference keeps x (and so c) alive through the close below. */
    if (!x->detached)
        conn_teardown(c, true);
    exchange_unref(x);
}

void http_exchange_respond_err(struct http_exchange *x, int err, const char *field,
                               const char *message)
{
    http_exchange_respond_error(x, err_http_status(err), err_api_code(err), field,
                                message != NULL ? message : err_str(err));
}

void http_exchange_respond_error(struct http_exchange *x, int status, const char *code,
                                 const char *field, const char *message)
{
    static const char fallback[] = "{\"error\":{\"code\":\"internal\",\"message\":\"\"}}";
    char *body = error_json(code, field, message);
    const char *b = body != NULL ? body : fallback;
    http_exchange_respond(x, status, "application/json", b, strlen(b));
    free(body);
}
