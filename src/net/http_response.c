/* Responses of the HTTP server: the head is built by hand into one heap buffer with the
 * body, and each uv_write owns its buffer until on_write. Handlers answer through
 * http_exchange_respond*, or stream through http_exchange_start/write/finish; the server
 * answers requests that never reached a handler through http_conn_fail. Design notes:
 * docs/internals/http_server.md. */
#include "pdstrace/http_server.h"
#include "http_server_int.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pdstrace/buf.h"
#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"

enum write_kind {
    WRITE_INTERIM, /* "100 Continue" */
    WRITE_STREAM,  /* the head or a chunk of a streamed response */
    WRITE_FINAL,   /* the whole response, or the end of a streamed one */
};

struct write_req {
    uv_write_t req;
    struct conn *conn;
    char *data;
    enum write_kind kind;
    http_write_cb *cb; /* a streamed chunk's producer, or NULL */
    void *arg;
};

static const char CONTINUE_100[] = "HTTP/1.1 100 Continue\r\n\r\n";
static const char LAST_CHUNK[] = "0\r\n\r\n";

/* The length given to build_head for a streamed response. */
#define LEN_STREAMED SIZE_MAX

/* ---- the head ------------------------------------------------------------------- */

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

static bool status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

/* Content-Type and the framing: Content-Length, or for a streamed response chunked
 * (HTTP/1.0 clients cannot read chunks: the body then ends with the connection). */
static int body_headers(struct buf *out, const struct http_exchange *x, int status, const char *ct,
                        size_t len)
{
    if (!status_has_body(status))
        return 0;
    int err = 0;
    if (ct != NULL && len > 0)
        err = buf_appendf(out, "Content-Type: %s\r\n", ct);
    if (err || len != LEN_STREAMED)
        return err ? err : buf_appendf(out, "Content-Length: %zu\r\n", len);
    return x->http10 ? 0 : buf_append_str(out, "Transfer-Encoding: chunked\r\n");
}

static int build_head(struct buf *out, struct http_exchange *x, int status, const char *ct,
                      size_t len, bool close)
{
    int err = buf_appendf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, reason(status),
                          http_date(x->conn->srv));
    if (!err)
        err = body_headers(out, x, status, ct, len);
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

/* ---- writing -------------------------------------------------------------------- */

/* While a streamed response has writes queued, the write deadline runs; each completed
 * write is progress and starts it again, and with nothing queued (the producer is busy)
 * it stops, as for a handler at work. */
static void arm_write_deadline(struct conn *c)
{
    if (!uv_is_active((uv_handle_t *)&c->timer))
        http_conn_set_phase(c, PHASE_WRITING);
}

static void stream_progress(struct conn *c)
{
    if (c->writes > 0)
        http_conn_set_phase(c, PHASE_WRITING);
    else
        uv_timer_stop(&c->timer);
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = container_of(req, struct write_req, req);
    struct conn *c = w->conn;
    enum write_kind kind = w->kind;
    http_write_cb *cb = w->cb;
    void *arg = w->arg;
    free(w->data);
    free(w);
    c->writes--;
    if (!c->closing && status < 0)
        http_conn_close(c);
    else if (!c->closing && kind == WRITE_FINAL)
        http_conn_answered(c);
    else if (!c->closing && kind == WRITE_STREAM)
        stream_progress(c);
    /* Last: the producer may write again or finish from here. */
    if (cb != NULL)
        cb(status, arg);
}

/* Takes ownership of data (malloc'd; NULL for the static "100 Continue", or for an empty
 * write that only calls back) on every path. */
static int queue(struct conn *c, char *data, size_t len, enum write_kind kind, http_write_cb *cb,
                 void *arg)
{
    struct write_req *w = malloc(sizeof(*w));
    if (w == NULL) {
        free(data);
        return UV_ENOMEM;
    }
    *w = (struct write_req){.conn = c, .data = data, .kind = kind, .cb = cb, .arg = arg};
    uv_buf_t b = uv_buf_init(data != NULL ? data : (char *)(uintptr_t)CONTINUE_100, (unsigned)len);
    int err = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (err) {
        free(data);
        free(w);
        return err;
    }
    c->writes++;
    return 0;
}

static int queue_write(struct conn *c, char *data, size_t len, bool final)
{
    return queue(c, data, len, final ? WRITE_FINAL : WRITE_INTERIM, NULL, NULL);
}

/* Whether the connection ends after this response: besides the usual reasons, a
 * streaming request whose body was not read to its end (msg_done is always true for a
 * request read whole) leaves the parser in the middle of it. */
static bool must_close(const struct http_exchange *x)
{
    const struct conn *c = x->conn;
    return !x->keep_alive || c->close_after || c->srv->draining || c->srv->freeing || !c->msg_done;
}

/* Queues the whole response of the connection's current exchange. */
static void send_response(struct http_exchange *x, int status, const char *ct, const char *body,
                          size_t len)
{
    struct conn *c = x->conn;
    bool close = must_close(x);
    struct buf out;
    buf_init(&out, SIZE_MAX / 2);
    int err = build_head(&out, x, status, ct, len, close);
    if (!err && !x->is_head && status_has_body(status) && len > 0)
        err = buf_append(&out, body, len);
    size_t n = buf_len(&out);
    if (!err)
        err = queue_write(c, buf_steal(&out), n, true);
    buf_free(&out);
    http_server_count_response(x, status);
    if (err) {
        http_conn_close(c);
        return;
    }
    c->close_after = close;
    http_conn_set_phase(c, PHASE_WRITING);
}

int http_conn_send_continue(struct conn *c)
{
    c->want_continue = false;
    return queue_write(c, NULL, sizeof(CONTINUE_100) - 1, false);
}

/* ---- error bodies --------------------------------------------------------------- */

/* Points *body at {"error":{"code","field"?,"message"}}, or at a fixed body without
 * memory. Returns what the caller frees once the body is queued (NULL for the fixed one). */
static char *error_json(const char *code, const char *field, const char *message, const char **body)
{
    static const char fallback[] = "{\"error\":{\"code\":\"internal\",\"message\":\"\"}}";
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
    *body = out != NULL ? out : fallback;
    return out;
}

void http_conn_fail(struct conn *c, int status, const char *code, const char *msg)
{
    if (c->closing)
        return;
    if (c->cur == NULL)
        c->cur = http_exchange_new(c);
    if (c->cur == NULL) {
        http_conn_close(c);
        return;
    }
    struct http_exchange *x = c->cur;
    if (x->request_id[0] == '\0')
        crypto_uuid4(x->request_id);
    x->keep_alive = false;
    c->close_after = true;
    const char *body;
    char *owned = error_json(code, NULL, msg, &body);
    send_response(x, status, "application/json", body, strlen(body));
    free(owned);
}

/* ---- the handler's answers ------------------------------------------------------ */

void http_exchange_respond(struct http_exchange *x, int status, const char *content_type,
                           const char *body, size_t len)
{
    if (x->responded)
        return;
    x->responded = true;
    struct http_server *srv = x->conn->srv;
    srv->in_flight--;
    http_stream_cancel(x);
    if (!x->detached)
        send_response(x, status, content_type, body, len);
    http_exchange_unref(x);
}

void http_exchange_abort(struct http_exchange *x)
{
    if (x->responded)
        return;
    x->responded = true;
    http_stream_cancel(x);
    struct conn *c = x->conn;
    c->srv->in_flight--;
    /* The handler's reference keeps x (and so c) alive through the close below. */
    if (!x->detached)
        http_conn_reset(c);
    http_exchange_unref(x);
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
    const char *body;
    char *owned = error_json(code, field, message, &body);
    http_exchange_respond(x, status, "application/json", body, strlen(body));
    free(owned);
}

/* ---- streamed responses --------------------------------------------------------- */

int http_exchange_start(struct http_exchange *x, int status, const char *content_type)
{
    if (x->responded || !status_has_body(status))
        return ERR_INVALID_INPUT;
    if (x->detached)
        return UV_ECANCELED;
    struct conn *c = x->conn;
    bool close = must_close(x) || x->http10;
    struct buf out;
    buf_init(&out, SIZE_MAX / 2);
    int err = build_head(&out, x, status, content_type, LEN_STREAMED, close);
    size_t n = buf_len(&out);
    if (!err)
        err = queue(c, buf_steal(&out), n, WRITE_STREAM, NULL, NULL);
    buf_free(&out);
    if (err)
        return err;
    x->responded = true;
    x->started = true;
    x->status = status;
    http_stream_cancel(x);
    c->close_after = close;
    http_conn_set_phase(c, PHASE_WRITING);
    return 0;
}

/* One write's bytes as they go on the wire: a chunk, the raw bytes for HTTP/1.0, nothing
 * for HEAD or an empty write (a zero-length chunk would end the body). */
static int frame(const struct http_exchange *x, const char *data, size_t len, char **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (x->is_head || len == 0)
        return 0;
    struct buf b;
    buf_init(&b, len + 32);
    int err = x->http10 ? 0 : buf_appendf(&b, "%zx\r\n", len);
    if (!err)
        err = buf_append(&b, data, len);
    if (!err && !x->http10)
        err = buf_append_str(&b, "\r\n");
    *n = buf_len(&b);
    *out = err ? NULL : buf_steal(&b);
    buf_free(&b);
    return err;
}

int http_exchange_write(struct http_exchange *x, const char *data, size_t len, http_write_cb *cb,
                        void *arg)
{
    if (!x->started || x->finished || cb == NULL)
        return ERR_INVALID_INPUT;
    if (x->detached)
        return UV_ECANCELED;
    char *wire;
    size_t n;
    int err = frame(x, data, len, &wire, &n);
    if (!err)
        err = queue(x->conn, wire, n, WRITE_STREAM, cb, arg);
    if (!err)
        arm_write_deadline(x->conn);
    return err;
}

/* The last chunk; once it is written the connection goes on as after any response. */
static void end_stream(struct http_exchange *x)
{
    struct conn *c = x->conn;
    bool chunked = !x->is_head && !x->http10;
    char *last = chunked ? strdup(LAST_CHUNK) : NULL;
    int err = chunked && last == NULL ? UV_ENOMEM : 0;
    if (!err)
        err = queue(c, last, chunked ? sizeof(LAST_CHUNK) - 1 : 0, WRITE_FINAL, NULL, NULL);
    if (err)
        http_conn_close(c);
    else
        arm_write_deadline(c);
}

void http_exchange_finish(struct http_exchange *x, int status)
{
    if (!x->started) {
        http_exchange_respond_err(x, status != 0 ? status : ERR_INTERNAL, NULL, NULL);
        return;
    }
    if (x->finished)
        return;
    x->finished = true;
    x->conn->srv->in_flight--;
    http_server_count_response(x, x->status);
    if (!x->detached && status != 0)
        http_conn_reset(x->conn);
    else if (!x->detached)
        end_stream(x);
    http_exchange_unref(x);
}
