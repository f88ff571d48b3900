/* Responses of the HTTP server: the head is built by hand into one heap buffer with the
 * body, and each uv_write owns its buffer until on_write. Handlers answer through
 * http_exchange_respond*; the server answers requests that never reached a handler
 * through http_conn_fail. Design notes: docs/internals/http_server.md. */
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

struct write_req {
    uv_write_t req;
    struct conn *conn;
    char *data;
    bool final; /* the response, not an interim "100 Continue" */
};

static const char CONTINUE_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

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

/* ---- writing -------------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = container_of(req, struct write_req, req);
    struct conn *c = w->conn;
    bool final = w->final;
    free(w->data);
    free(w);
    if (c->closing)
        return;
    if (status < 0)
        http_conn_close(c);
    else if (final)
        http_conn_answered(c);
}

/* Takes ownership of data (malloc'd; NULL for "100 Continue") on every path. */
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
    http_server_count_response(x, status);
    if (err) {
        http_conn_close(c);
        return;
    }
    c->close_after = close;
    http_conn_set_phase(c, PHASE_WRITING);
}

void http_conn_send_continue(struct conn *c)
{
    c->want_continue = false;
    if (queue_write(c, NULL, sizeof(CONTINUE_100) - 1, false) != 0)
        http_conn_fail(c, 500, "internal", "write failed");
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
    if (!x->detached)
        send_response(x, status, content_type, body, len);
    http_exchange_unref(x);
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
