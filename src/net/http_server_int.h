#ifndef PDS_NET_HTTP_SERVER_INT_H
#define PDS_NET_HTTP_SERVER_INT_H

/* Shared only by the files of the HTTP server module: http_server.c (connection lifecycle:
 * accept, timers, reading, close, drain, free, metrics), http_parse.c (the http-parser
 * glue: callbacks, framing checks, dispatch), http_response.c (building and writing
 * responses, streamed ones too), http_server_stream.c (streamed request bodies),
 * http_conn_limit.c (who is admitted when the server is full) and http_exchange.c (the
 * request accessors). Nothing outside src/net/http_*.c includes it. */

#include <http_parser.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "pdstrace/buf.h"
#include "pdstrace/http_server.h"
#include "pdstrace/list.h"

/* One read's worth of bytes; also the ceiling on bytes held back while a request is being
 * handled, so a client that floods us is simply not read any more. */
#define READ_BUF_SIZE  65536
#define REQUEST_ID_MAX 128
#define MAX_HEADERS    100 /* request headers, trailers not counted */

enum conn_phase {
    PHASE_WAIT,     /* accepted, nothing received yet: header timeout */
    PHASE_IDLE,     /* keep-alive, between requests: idle timeout */
    PHASE_HEADERS,  /* request line and headers: header timeout */
    PHASE_BODY,     /* body: body timeout */
    PHASE_STREAM,   /* a streaming handler reads the body: body timeout while not paused */
    PHASE_HANDLING, /* the handler has the request: no timer, parser paused */
    PHASE_WRITING,  /* the response is queued: write deadline (idle timeout) */
    PHASE_LINGER,   /* write side shut, discarding input until EOF: linger deadline */
};

enum header_state { HS_NONE, HS_FIELD, HS_VALUE };

/* The connections of one client address (http_conn_limit.c). */
struct http_peer;

struct http_peer_table {
    struct list_node *buckets; /* lists of struct http_peer; NULL without a per-address cap */
    size_t mask;               /* buckets - 1; a power of two */
    uint64_t seed;             /* random, so that addresses cannot be chosen to collide */
};

struct http_server {
    uv_loop_t *loop;
    struct http_server_config cfg;
    uv_tcp_t listener;
    uv_timer_t drain_timer;
    struct list_node conns; /* every open connection, newest first */
    struct list_node idle;  /* idle connections, least recently active first */
    struct http_peer_table peers;
    unsigned nconns;
    unsigned in_flight;
    unsigned refs; /* the owner, two handles, one per connection struct */
    int port;
    char *host;
    bool listener_open;
    bool timer_open;
    bool freeing;
    bool draining;
    uv_timer_t kick_timer;   /* runs deferred streaming work (http_server_stream.c) */
    struct list_node kicked; /* exchanges waiting for it, each holding a reference */
    bool kick_open;
    http_server_drained_cb *drain_cb;
    void *drain_arg;
    time_t date_sec;
    char date[40];
    char rbuf[READ_BUF_SIZE];
};

struct conn {
    struct http_server *srv;
    struct list_node link;      /* in srv->conns until it closes */
    struct list_node idle_node; /* in srv->idle while idle */
    struct list_node peer_node; /* in peer's idle list while idle */
    struct http_peer *peer;     /* NULL without a per-address cap */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    http_parser parser;
    enum conn_phase phase;
    struct buf pending;        /* bytes received but not yet parsed */
    struct http_exchange *cur; /* the request being parsed, handled or answered */
    unsigned refs;             /* one for the open handles, one per exchange */
    unsigned writes;           /* uv_writes queued and not yet called back */
    int handles_open;
    size_t header_bytes;
    unsigned nheaders;
    enum header_state hstate;
    int fail_status;
    const char *fail_code;
    const char *fail_msg;
    const char *scan_at; /* next byte to check for framing, inside the buffer being parsed */
    char scan_last;      /* the last framing byte checked; 0 after body data */
    bool crlf_due;       /* chunk data ended: the next framing bytes must be CRLF */
    bool want_continue;  /* answer "100 Continue" once the bytes parsed so far are checked */
    bool closing;
    bool close_after;
    bool msg_done;
    bool read_paused;
    bool eof;
    bool headers_done;
};

/* A streamed request body being read (http_server_stream.c). */
struct http_reader {
    http_body_data_fn *on_data; /* NULL until http_exchange_read_body */
    http_body_end_fn *on_end;
    void *arg;
    size_t max;
    size_t got;
    int end_status; /* what on_end is owed when end_due */
    bool active;    /* reading: on_end not yet called nor owed */
    bool paused;
    bool flowing; /* the parser has left the headers: the conn is in PHASE_STREAM */
    bool end_due; /* on_end is owed from the next kick */
};

struct http_exchange {
    struct conn *conn;
    unsigned refs; /* one for the connection, one for the handler */
    bool detached;
    bool responded;
    bool keep_alive;
    bool is_head;
    bool http10;
    bool streaming;       /* claimed by cfg.head: dispatched at its headers */
    bool expect_continue; /* streaming, and the client waits for "100 Continue" */
    bool started;         /* a streamed response has begun (http_exchange_start) */
    bool finished;
    int status;            /* of the streamed response, for the metrics at finish */
    uint64_t declared_len; /* Content-Length, or UINT64_MAX when chunked or absent */
    struct http_reader rd;
    struct buf piece;           /* streamed body bytes parsed from one read, for on_data */
    struct list_node kick_node; /* in srv->kicked */
    const char *method;
    const char *route;
    const void *user;
    unsigned long long start_ns;
    struct buf url, path, query, headers, body, resp_headers;
    char request_id[REQUEST_ID_MAX + 1];
};

/* ---- connection lifecycle (http_server.c) ---- */

/* Closes c at once, without an answer. */
void http_conn_close(struct conn *c);

/* Stops or restarts reading c's socket (back-pressure); start does nothing while bytes
 * held back fill the pending buffer or the client has sent EOF. */
void http_conn_read_stop(struct conn *c);
void http_conn_read_start(struct conn *c);

/* Closes c at once with a reset (SO_LINGER 0), for http_exchange_abort. */
void http_conn_reset(struct conn *c);

/* Enters phase: re-arms the connection timer and updates the idle lists. */
void http_conn_set_phase(struct conn *c, enum conn_phase phase);

/* Continues after the final response of c->cur is written: lingers or reads the next. */
void http_conn_answered(struct conn *c);

/* A new exchange on c holding the connection's reference, or NULL without memory. */
struct http_exchange *http_exchange_new(struct conn *c);

/* Drops one reference to x, freeing it (and its hold on the connection) at the last. */
void http_exchange_unref(struct http_exchange *x);

/* Counts a response in the server's metrics as it is handed to the socket. */
void http_server_count_response(const struct http_exchange *x, int status);

/* ---- parser glue (http_parse.c); the only file that calls http_parser_* ---- */

/* Sets up c's parser for its first request. */
void http_parse_init(struct conn *c);

/* Makes sure http-parser's process-wide header limit is no tighter than max_header_bytes. */
void http_parse_raise_limit(size_t max_header_bytes);

/* Un-pauses c's parser after a response, ready for the next pipelined request. */
void http_parse_next(struct conn *c);

/* Parses bytes that are ours, then answers a bad request, sends 100 Continue or dispatches. */
void http_conn_feed(struct conn *c, const char *data, size_t n);

/* ---- responses (http_response.c) ---- */

/* Answers a request that never reached a handler (400, 408, 413, 431, 500) and closes. */
void http_conn_fail(struct conn *c, int status, const char *code, const char *msg);

/* Queues the interim "100 Continue". Returns 0 or a uv_write error. */
int http_conn_send_continue(struct conn *c);

/* ---- streamed request bodies (http_server_stream.c) ---- */

/* At free, before the kick timer closes: runs what is still queued (owed on_end calls)
 * and drops the references. */
void http_stream_flush(struct http_server *srv);

/* After the parser ran over bytes of a streamed body (PHASE_STREAM): hands the piece to
 * on_data, then ends the read with status when non-zero or when the body is complete. */
void http_stream_parsed(struct conn *c, int status);

/* The body timeout of PHASE_STREAM passed. */
void http_stream_timeout(struct conn *c);

/* The connection of x is closing (x is detached): an active read ends with status now. */
void http_stream_gone(struct http_exchange *x, int status);

/* The handler answers while reading: the read ends, and on_end(UV_ECANCELED) is owed. */
void http_stream_cancel(struct http_exchange *x);

/* ---- request accessors (http_exchange.c) and connection limits (http_conn_limit.c) ---- */

/* How many request headers are named name (case-insensitively); *first gets the first
 * value, or NULL. */
unsigned http_exchange_header_count(const struct http_exchange *x, const char *name,
                                    const char **first);

/* The connection limits. init returns 0 or UV_ENOMEM; free releases
 * the table once every connection has gone. */
int http_limit_init(struct http_server *srv);
void http_limit_free(struct http_server *srv);

/* Called on every phase change of c: idle connections (WAIT and IDLE) go to the tail of
 * the server's and their address's idle lists, the others leave them. */
void http_limit_phase(struct conn *c);

/* Called for a connection just accepted (and counted in srv->nconns). Makes room for it
 * by closing the oldest idle connection of its address, at the per-address cap, or of the
 * server, at max_connections. Returns 0 to admit c, or <0 when c must be refused because
 * nothing idle can make room. */
int http_limit_admit(struct conn *c);

/* Called when c closes: it leaves the idle lists and its address's count. */
void http_limit_forget(struct conn *c);

#endif
