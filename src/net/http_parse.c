/* The http-parser glue of the HTTP server: its callbacks fill the exchange, our own checks
 * refuse what Debian's lenient build lets through, and feed() acts on the result once
 * http_parser_execute has returned. Every http_parser_* call of the project is in this
 * file (CONVENTIONS.md §1.3), so a move to llhttp touches only it. Design notes:
 * docs/internals/http_server.md. */
#include "pdstrace/http_server.h"
#include "http_server_int.h"

#include <http_parser.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "pdstrace/buf.h"
#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/log.h"

#define HEADER_OVERHEAD 4 /* ": " and CRLF, counted per header */

/* ---- failures: recorded in a callback, answered by feed() ------------------------- */

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

/* ---- request id ------------------------------------------------------------------- */

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
        c->cur = http_exchange_new(c);
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

/* A request claimed by cfg.head goes to its handler now: pausing here makes
 * http_parser_execute return just before the last LF of the header block, and the parser
 * goes on from there (its body) only once the handler asks for the body. */
static int claim_for_stream(struct conn *c, http_parser *p)
{
    struct http_exchange *x = c->cur;
    x->streaming = true;
    x->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    x->expect_continue = expects_continue(x, p);
    x->start_ns = uv_hrtime();
    http_parser_pause(p, 1);
    return 0;
}

static bool head_claims(struct conn *c)
{
    const struct http_server_config *cfg = &c->srv->cfg;
    return cfg->head != NULL && cfg->head(c->cur, cfg->handler_arg) != 0;
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
    if (!chunked)
        x->declared_len = p->content_length; /* ULLONG_MAX when absent, as UINT64_MAX */
    if (head_claims(c))
        return claim_for_stream(c, p);
    if (x->declared_len != UINT64_MAX && x->declared_len > c->srv->cfg.max_body_bytes)
        return fail(c, 413, "payload_too_large", "request body too large");
    /* Sent by feed(), once the framing of the bytes parsed so far has been checked. */
    c->want_continue = expects_continue(x, p);
    http_conn_set_phase(c, PHASE_BODY);
    return 0;
}

/* Streamed body bytes of one read are gathered for one on_data call after the parser
 * returns (http_stream_parsed), counted against the handler's max_bytes. */
static int take_piece(struct conn *c, const char *at, size_t len)
{
    struct http_reader *rd = &c->cur->rd;
    if (len > rd->max - rd->got)
        return fail(c, 413, "payload_too_large", "request body too large");
    rd->got += len;
    if (buf_append(&c->cur->piece, at, len) != 0)
        return fail(c, 500, "internal", "body piece too large");
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
    if (c->cur->streaming)
        return take_piece(c, at, len);
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
    if (!x->streaming)
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

/* ---- the parser's life ------------------------------------------------------------ */

void http_parse_init(struct conn *c)
{
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
}

/* http-parser's limit is process-global, so it only ever grows, as a safety net behind
 * our own per-server count of request-line and header bytes. */
void http_parse_raise_limit(size_t max_header_bytes)
{
    static size_t current = 80 * 1024;
    if (max_header_bytes + 1024 <= current || max_header_bytes > UINT32_MAX / 2)
        return;
    current = max_header_bytes + 1024;
    http_parser_set_max_header_size((uint32_t)current);
}

void http_parse_next(struct conn *c)
{
    http_parser_pause(&c->parser, 0);
    c->msg_done = false;
}

/* ---- feeding ---------------------------------------------------------------------- */

static void dispatch(struct conn *c)
{
    struct http_exchange *x = c->cur;
    struct http_server *srv = c->srv;
    http_conn_set_phase(c, PHASE_HANDLING);
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
        http_conn_fail(c, 431, "payload_too_large", "header block too large");
    else
        http_conn_fail(c, 400, "invalid_field", "malformed HTTP request");
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

/* A streaming request goes to its handler with its headers; what followed them is kept
 * for the handler to read (http_exchange_read_body). */
static void dispatch_stream(struct conn *c, const char *rest, size_t n)
{
    if (buf_append(&c->pending, rest, n) != 0) {
        http_conn_fail(c, 500, "internal", "out of memory");
        return;
    }
    dispatch(c);
}

/* What a failure recorded while parsing a streamed body means to its handler. */
static int stream_error(int fail_status)
{
    if (fail_status == 413)
        return ERR_TOO_LARGE;
    return fail_status == 400 ? ERR_INVALID_INPUT : ERR_INTERNAL;
}

/* The parser ran over body bytes of a streaming request: the handler gets them, and the
 * end of the read when the body is complete or broken. A pipelined request after it waits
 * in pending, as after any request. */
static void feed_stream(struct conn *c, const char *data, size_t n, size_t done)
{
    int status = 0;
    if (c->fail_status != 0)
        status = stream_error(c->fail_status);
    else if (!c->msg_done && (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || done != n))
        status = ERR_INVALID_INPUT;
    c->fail_status = 0;
    if (c->msg_done && c->cur->keep_alive && done < n &&
        buf_append(&c->pending, data + done, n - done) != 0) {
        http_conn_close(c);
        return;
    }
    http_stream_parsed(c, status);
}

/* Before the end of a message: a broken request, "100 Continue", a streaming request
 * claimed at its headers, or simply more to read. */
static void feed_partial(struct conn *c, const char *data, size_t n, size_t done)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED && c->cur != NULL && c->cur->streaming)
        dispatch_stream(c, data + done, n - done);
    else if (e != HPE_OK || done != n)
        parse_failed(c, e);
    else if (c->want_continue && http_conn_send_continue(c) != 0)
        http_conn_fail(c, 500, "internal", "write failed");
}

void http_conn_feed(struct conn *c, const char *data, size_t n)
{
    if (c->phase == PHASE_WAIT || c->phase == PHASE_IDLE)
        http_conn_set_phase(c, PHASE_HEADERS);
    bool body = c->phase == PHASE_STREAM;
    size_t done = parse(c, data, n);
    if (c->closing)
        return;
    if (body) {
        feed_stream(c, data, n, done);
        return;
    }
    if (c->fail_status != 0) {
        http_conn_fail(c, c->fail_status, c->fail_code, c->fail_msg);
        return;
    }
    if (!c->msg_done) {
        feed_partial(c, data, n, done);
        return;
    }
    if (c->cur->keep_alive && done < n && buf_append(&c->pending, data + done, n - done)) {
        http_conn_close(c);
        return;
    }
    dispatch(c);
}
