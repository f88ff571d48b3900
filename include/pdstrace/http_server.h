#ifndef PDS_NET_HTTP_SERVER_H
#define PDS_NET_HTTP_SERVER_H

#include <stddef.h>
#include <uv.h>

/* An HTTP/1.1 server on a libuv loop, parsing with http-parser: keep-alive, pipelined
 * requests answered in order, Content-Length and chunked bodies, header and body limits
 * (431/413), a header-read timeout and an idle keep-alive timeout, 400 and close on
 * malformed input, including framing that a lenient parser would accept (bare LF,
 * Transfer-Encoding other than "chunked", chunk data not followed by CRLF). Handlers answer
 * asynchronously through the exchange they are given; they may also read a request body
 * and write a response in pieces at their own pace ("streaming" below). */
struct http_server;
struct metrics;
struct http_exchange; /* one request and its response; opaque */

/* Called once per complete request, or once its headers are complete when cfg.head claims
 * it. The handler owns one reference to x until it calls http_exchange_respond*() (or
 * http_exchange_finish after http_exchange_start), which it must do exactly once, now or
 * later. */
typedef void http_handler_fn(struct http_exchange *x, void *arg);

/* Called when a request's headers are complete, before any of its body is read, with
 * handler_arg. Non-zero means the request is for a streaming handler: the handler is
 * called at once, max_body_bytes does not apply, and it reads the body itself with
 * http_exchange_read_body. Must not respond; x is borrowed for the call. */
typedef int http_head_fn(const struct http_exchange *x, void *arg);

/* A piece of a streamed request body; data is borrowed, valid until the call returns. */
typedef void http_body_data_fn(struct http_exchange *x, const char *data, size_t len, void *arg);

/* The end of a streamed request body: status 0 when all of it arrived, ERR_TOO_LARGE past
 * max_bytes, ERR_INVALID_INPUT for malformed chunked framing, UV_ETIMEDOUT after
 * body_timeout_ms of silence while not paused, UV_EOF or a read error when the client went
 * away, UV_ECANCELED when the handler answered first or the server was freed or drained
 * past its deadline. */
typedef void http_body_end_fn(struct http_exchange *x, int status, void *arg);

/* A streamed response's piece has been handed to the kernel (status 0) or has failed
 * (UV_ECANCELED when the connection closed first). */
typedef void http_write_cb(int status, void *arg);

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
    http_head_fn *head;      /* NULL: every request is read whole before its handler runs */
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
/* The whole body; empty for a request claimed by cfg.head, which streams it instead. */
const char *http_exchange_body(const struct http_exchange *x, size_t *len);

/* The X-Request-ID of the caller when it sent a sane one (at most 128 printable
 * characters), otherwise a generated UUIDv4. Echoed on the response. */
const char *http_exchange_request_id(const struct http_exchange *x);

/* Monotonic time (uv_hrtime, ns) at which the request was complete (its headers, for a
 * request claimed by cfg.head). */
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

/* ---- streaming (docs/internals/http_server.md, "Streaming") ----
 *
 * A request that cfg.head claimed is handed to its handler as soon as its headers are
 * complete. The handler either reads the body with http_exchange_read_body or answers
 * without it; any answer before on_end(0) closes the connection after the response, so a
 * refused upload is never read to its end. */

/* Starts reading the request body at the handler's pace: on_data for each piece as it
 * arrives (at most one read buffer, 64 KiB, at a time), then on_end exactly once, never
 * from inside this call. Sends "100 Continue" first when the client asked for it and the
 * declared length fits max_bytes. Answering (respond, abort, start) while reading ends
 * the read: on_end follows later with UV_ECANCELED, and x stays valid until it has run.
 * On an exchange that was read whole (no cfg.head, or not a streaming route) the body
 * comes as one piece. Returns 0, ERR_INVALID_INPUT when called twice, after an answer or
 * without callbacks, or UV_ECANCELED when the client has already gone; then no callback. */
int http_exchange_read_body(struct http_exchange *x, size_t max_bytes, http_body_data_fn *on_data,
                            http_body_end_fn *on_end, void *arg);

/* Back-pressure: pause stops reading the socket (and the body timeout) at once, so no
 * on_data comes until resume; resume starts again from the next loop iteration. Either
 * does nothing when no read is going on. on_end may still come while paused, right after
 * the last piece. */
void http_exchange_pause_body(struct http_exchange *x);
void http_exchange_resume_body(struct http_exchange *x);

/* Bytes of x's request body the server has received and not yet handed to on_data: at
 * most one read buffer, 64 KiB (for tests and metrics). */
size_t http_exchange_body_buffered(const struct http_exchange *x);

/* Begins a streamed response: the head goes out now with Transfer-Encoding: chunked
 * (HTTP/1.0: no length and Connection: close), Date, X-Request-ID and the added headers.
 * The handler keeps its reference until http_exchange_finish, which it must call exactly
 * once; respond and abort are ignored from now on. Returns 0, ERR_INVALID_INPUT after an
 * answer or for a status without a body (1xx, 204, 304), or UV_ECANCELED when the client
 * has gone, or a write error; on failure nothing was sent and x is still to be answered. */
int http_exchange_start(struct http_exchange *x, int status, const char *content_type);

/* Queues len bytes (copied) as one chunk; cb runs exactly once, never from inside this
 * call, when they are handed to the kernel or failed. A producer that waits for cb before
 * writing again holds at most one piece in memory, and the write deadline (idle_timeout_ms
 * without progress while a write is queued) cuts a client that stops reading. Returns 0,
 * ERR_INVALID_INPUT outside start..finish, or UV_ECANCELED when the client has gone; then
 * cb is not called. */
int http_exchange_write(struct http_exchange *x, const char *data, size_t len, http_write_cb *cb,
                        void *arg);

/* Ends a streamed response and gives up the handler's reference. status 0 sends the last
 * chunk; non-zero means the producer failed midway: the connection is reset, so the client
 * sees a truncated transfer, never a clean end. Writes still queued call back as usual.
 * Without a successful start it answers the error status (ERR_INTERNAL for 0) instead. */
void http_exchange_finish(struct http_exchange *x, int status);

/* The error body of DESIGN.md §3: {"error":{"code","field","message"}}; field may be NULL. */
void http_exchange_respond_error(struct http_exchange *x, int status, const char *code,
                                 const char *field, const char *message);

/* The same for an error code (err.h): its HTTP status and API code come from
 * err_http_status/err_api_code, the one mapping; message NULL takes err_str(err). */
void http_exchange_respond_err(struct http_exchange *x, int err, const char *field,
                               const char *message);

#endif
