#ifndef PDS_NET_HTTP_SERVER_H
#define PDS_NET_HTTP_SERVER_H

#include <stddef.h>
#include <uv.h>

/* An HTTP/1.1 server on a libuv loop, parsing with http-parser: keep-alive, pipelined
 * requests answered in order, Content-Length and chunked bodies, header and body limits
 * (431/413), a header-read timeout and an idle keep-alive timeout, 400 and close on
 * malformed input, including framing that a lenient parser would accept (bare LF,
 * Transfer-Encoding other than "chunked", chunk data not followed by CRLF). Handlers answer
 * asynchronously through the exchange they are given. */
struct http_server;
struct metrics;
struct http_exchange; /* one request and its response; opaque */

/* Called once per complete request. The handler owns one reference to x until it calls
 * http_exchange_respond*(), which it must do exactly once, now or later. */
typedef void http_handler_fn(struct http_exchange *x, void *arg);

/* Called once when a drain finishes. status is 0 when every connection closed by itself,
 * ERR_UPSTREAM_TIMEOUT when the deadline forced the rest closed, or UV_ECANCELED when
 * http_server_free came first. */
typedef void http_server_drained_cb(int status, void *arg);

struct http_server_config {
    const char *host;           /* "127.0.0.1", "0.0.0.0", "::" */
    int port;                   /* 0 picks a free port: read it with http_server_port() */
    size_t max_header_bytes;    /* request line + header block; beyond it: 431 */
    size_t max_body_bytes;      /* beyond it: 413 */
    unsigned header_timeout_ms; /* from the first byte of a request (or the connect) to its
                                   last header; then 408 and close. 0: none */
    unsigned body_timeout_ms;   /* from the last header to the end of the body. 0: none */
    unsigned idle_timeout_ms;   /* keep-alive wait for the next request, and the deadline for
                                   writing a response. 0: none */
    unsigned max_connections;   /* at the limit a new connection closes the oldest idle one
                                   (silent or between requests), or is accepted and closed
                                   at once when none is idle. 0: no limit */
    unsigned max_connections_per_client; /* the same, per client IP address, closing the
                                            oldest idle connection of that address. 0: none */
    http_handler_fn *handler;
    void *handler_arg;
    struct metrics *metrics; /* borrowed, outlives the server; NULL: none. The server
                                declares and counts the pdstrace_http_* families */
};

/* Binds and starts listening. cfg is copied (host too). On failure *out is NULL and the
 * loop must still be run once so that the handles already opened can close. */
int http_server_new(struct http_server **out, uv_loop_t *loop,
                    const struct http_server_config *cfg);

/* Closes everything at once; in-flight exchanges stay valid for their handlers, whose
 * responses are then dropped. NULL is fine. Run the loop afterwards so handles close. */
void http_server_free(struct http_server *srv);

/* The bound port (useful after port 0). */
int http_server_port(const struct http_server *srv);

/* Graceful shutdown: stops accepting, closes idle connections, lets in-flight requests
 * finish (their responses carry "Connection: close"), and calls cb once, never from inside
 * this call, when the last connection has closed or deadline_ms has passed (then the rest
 * are closed). Only the first call counts; later ones are ignored. */
void http_server_drain(struct http_server *srv, unsigned deadline_ms, http_server_drained_cb *cb,
                       void *arg);

/* Number of open connections and of requests being handled (for metrics and tests). */
unsigned http_server_connections(const struct http_server *srv);
unsigned http_server_in_flight(const struct http_server *srv);

/* Request accessors: strings are NUL-terminated and borrowed; they stay valid until the
 * response is sent. path excludes the query string; query is "" when absent and is not
 * percent-decoded. */
const char *http_exchange_method(const struct http_exchange *x);
const char *http_exchange_path(const struct http_exchange *x);
const char *http_exchange_query(const struct http_exchange *x);
/* Case-insensitive header lookup; the first value, or NULL. */
const char *http_exchange_header(const struct http_exchange *x, const char *name);
const char *http_exchange_body(const struct http_exchange *x, size_t *len);

/* The X-Request-ID of the caller when it sent a sane one (at most 128 printable
 * characters), otherwise a generated UUIDv4. Echoed on the response. */
const char *http_exchange_request_id(const struct http_exchange *x);

/* Monotonic time (uv_hrtime, ns) at which the request was complete. */
unsigned long long http_exchange_start_ns(const struct http_exchange *x);

/* A label for metrics, such as "/v1/objections/{case_id}"; the string must be static.
 * Unset exchanges count as "unmatched". */
void http_exchange_set_route(struct http_exchange *x, const char *route);
const char *http_exchange_route(const struct http_exchange *x);

/* A per-exchange value for the layers above (the API key name after auth, say). */
void http_exchange_set_user(struct http_exchange *x, const void *user);
const void *http_exchange_user(const struct http_exchange *x);

/* True once the client has gone away (including its EOF while the handler works) or the
 * server was freed or drained past its deadline; the response will be dropped. */
int http_exchange_is_detached(const struct http_exchange *x);

/* Adds a response header before responding; name and value are copied. Returns
 * ERR_INVALID_INPUT for a name that is not a token or a value holding CR or LF, or
 * ERR_TOO_LARGE past 8 KiB of added headers. */
int http_exchange_add_header(struct http_exchange *x, const char *name, const char *value);

/* Sends the response and gives up the handler's reference: x must not be used again.
 * body is copied. Content-Length, Date, X-Request-ID and Connection are added. */
void http_exchange_respond(struct http_exchange *x, int status, const char *content_type,
                           const char *body, size_t len);

/* Drops the connection with a TCP reset (uv_tcp_close_reset) instead of answering; gives
 * up the handler's reference like respond, so x must not be used again. A test tool's
 * fault (the mock PDS), and a way to refuse a request without a word. */
void http_exchange_abort(struct http_exchange *x);

/* The error body of DESIGN.md §3: {"error":{"code","field","message"}}; field may be NULL. */
void http_exchange_respond_error(struct http_exchange *x, int status, const char *code,
                                 const char *field, const char *message);

/* The same for an error code (err.h): its HTTP status and API code come from
 * err_http_status/err_api_code, the one mapping; message NULL takes err_str(err). */
void http_exchange_respond_err(struct http_exchange *x, int err, const char *field,
                               const char *message);

#endif
