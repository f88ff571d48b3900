/* Streamed request bodies. A request that cfg.head claims reaches its handler with its
 * headers; the parser waits at the end of the header block until the handler calls
 * http_exchange_read_body. From then on each read is parsed at once and its body bytes go
 * to on_data in one piece, so the server never holds more than a read buffer of body;
 * pausing stops reading the socket. What must not run inside the handler's own call (the
 * bytes that arrived early, a resume, an owed on_end) waits for the server's kick timer.
 * Design notes: docs/internals/http_server.md, "Streaming". */
#include "pdstrace/http_server.h"
#include "http_server_int.h"

#include <stdlib.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/list.h"

static void on_kick(uv_timer_t *t);

/* ---- the kick: deferred work, run from a 0 ms timer ----------------------------------- */

static void kick(struct http_exchange *x)
{
    struct http_server *srv = x->conn->srv;
    if (list_is_linked(&x->kick_node) || !srv->kick_open)
        return;
    x->refs++;
    list_push_tail(&srv->kicked, &x->kick_node);
    uv_timer_start(&srv->kick_timer, on_kick, 0, 0);
}

/* Calls on_end once. A read that ends while the body flows puts the connection back to
 * HANDLING, where reading goes on (bounded by pending) so that a client going away is
 * still noticed. */
static void end_read(struct http_exchange *x, int status)
{
    struct conn *c = x->conn;
    x->rd.active = false;
    if (!x->detached && c->phase == PHASE_STREAM) {
        http_conn_set_phase(c, PHASE_HANDLING);
        http_conn_read_start(c);
    }
    x->refs++;
    x->rd.on_end(x, status, x->rd.arg);
    http_exchange_unref(x);
}

/* on_end is owed but may not run now (inside the handler's call): the next kick runs it. */
static void owe_end(struct http_exchange *x, int status)
{
    x->rd.active = false;
    x->rd.end_due = true;
    x->rd.end_status = status;
    kick(x);
}

/* An exchange read whole (not claimed by cfg.head) hands its body over in one piece. */
static void hand_whole(struct http_exchange *x)
{
    size_t len;
    const char *body = http_exchange_body(x, &len);
    if (len > x->rd.max) {
        end_read(x, ERR_TOO_LARGE);
        return;
    }
    if (len > 0)
        x->rd.on_data(x, body, len, x->rd.arg);
    if (x->rd.active)
        end_read(x, 0);
}

/* The first time: the parser leaves the end of the headers, and the body timeout starts. */
static void begin(struct http_exchange *x)
{
    struct conn *c = x->conn;
    x->rd.flowing = true;
    http_parse_next(c);
    http_conn_set_phase(c, PHASE_STREAM);
}

/* Parses what arrived before (or while paused before the first kick), then reads on. */
static void flow(struct http_exchange *x)
{
    struct conn *c = x->conn;
    size_t n = buf_len(&c->pending);
    if (n > 0) {
        char *data = buf_steal(&c->pending);
        http_conn_feed(c, data, n);
        free(data);
    }
    if (x->rd.active && !x->rd.paused && !x->detached) {
        http_conn_read_start(c);
        http_conn_set_phase(c, PHASE_STREAM);
    }
}

static void pump(struct http_exchange *x)
{
    struct http_reader *rd = &x->rd;
    if (rd->end_due) {
        rd->end_due = false;
        end_read(x, rd->end_status);
        return;
    }
    if (!rd->active || rd->paused || x->detached)
        return;
    if (!x->streaming) {
        hand_whole(x);
        return;
    }
    if (!rd->flowing)
        begin(x);
    flow(x);
}

/* Runs and empties list; an exchange queued again meanwhile waits for the next kick. */
static void run(struct list_node *list)
{
    while (!list_is_empty(list)) {
        struct http_exchange *x = LIST_ENTRY(list_first(list), struct http_exchange, kick_node);
        list_remove(&x->kick_node);
        pump(x);
        http_exchange_unref(x);
    }
}

static void on_kick(uv_timer_t *t)
{
    struct http_server *srv = t->data;
    struct list_node batch;
    list_init(&batch);
    while (!list_is_empty(&srv->kicked)) {
        struct list_node *node = list_first(&srv->kicked);
        list_remove(node);
        list_push_tail(&batch, node);
    }
    run(&batch);
}

void http_stream_flush(struct http_server *srv)
{
    run(&srv->kicked);
}

/* ---- called by the rest of the server --------------------------------------------------- */

void http_stream_parsed(struct conn *c, int status)
{
    struct http_exchange *x = c->cur;
    size_t n = buf_len(&x->piece);
    x->refs++;
    if (n > 0 && x->rd.active)
        x->rd.on_data(x, buf_cstr(&x->piece), n, x->rd.arg);
    buf_reset(&x->piece);
    if (x->rd.active && (status != 0 || c->msg_done))
        end_read(x, status);
    http_exchange_unref(x);
}

void http_stream_timeout(struct conn *c)
{
    struct http_exchange *x = c->cur;
    if (x != NULL && x->rd.active)
        end_read(x, UV_ETIMEDOUT);
    else
        http_conn_close(c);
}

void http_stream_gone(struct http_exchange *x, int status)
{
    if (x->rd.active)
        end_read(x, status);
}

void http_stream_cancel(struct http_exchange *x)
{
    if (x->rd.active)
        owe_end(x, UV_ECANCELED);
}

/* ---- the handler's calls ------------------------------------------------------------- */

int http_exchange_read_body(struct http_exchange *x, size_t max_bytes, http_body_data_fn *on_data,
                            http_body_end_fn *on_end, void *arg)
{
    if (on_data == NULL || on_end == NULL || x->rd.on_end != NULL || x->responded)
        return ERR_INVALID_INPUT;
    if (x->detached)
        return UV_ECANCELED;
    bool too_large = x->streaming && x->declared_len != UINT64_MAX && x->declared_len > max_bytes;
    /* As for a buffered request: no "100 Continue" for a body that will be refused. */
    if (!too_large && x->expect_continue) {
        int err = http_conn_send_continue(x->conn);
        if (err)
            return err;
        x->expect_continue = false;
    }
    x->rd = (struct http_reader){
        .on_data = on_data, .on_end = on_end, .arg = arg, .max = max_bytes, .active = true};
    if (too_large)
        owe_end(x, ERR_TOO_LARGE);
    else
        kick(x);
    return 0;
}

void http_exchange_pause_body(struct http_exchange *x)
{
    if (!x->rd.active || x->rd.paused)
        return;
    x->rd.paused = true;
    struct conn *c = x->conn;
    if (x->detached)
        return;
    /* Before the first kick (HANDLING) too: nothing more is taken in until resume. */
    http_conn_read_stop(c);
    if (c->phase == PHASE_STREAM)
        uv_timer_stop(&c->timer);
}

void http_exchange_resume_body(struct http_exchange *x)
{
    if (!x->rd.active || !x->rd.paused)
        return;
    x->rd.paused = false;
    kick(x);
}

size_t http_exchange_body_buffered(const struct http_exchange *x)
{
    const struct conn *c = x->conn;
    if (!x->streaming || x->detached || c->msg_done)
        return 0;
    return buf_len(&c->pending) + buf_len(&x->piece);
}
