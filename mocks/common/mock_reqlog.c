#include "mock_reqlog.h"

#include <stdlib.h>
#include <uv.h>

#include "mock_http.h"
#include "pdstrace/http_server.h"
#include "pdstrace/macros.h"
#include "pdstrace/router.h"

int mock_reqlog_init(struct mock_reqlog *log, size_t cap, mock_log_json_fn *entry_json)
{
    log->_next_seq = 1;
    log->_cleared_seq = 0;
    log->_cap = cap;
    log->_entry_json = entry_json;
    log->_ring = calloc(cap, sizeof(*log->_ring));
    return log->_ring != NULL ? 0 : UV_ENOMEM;
}

void mock_reqlog_clear(struct mock_reqlog *log)
{
    for (size_t i = 0; i < log->_cap; i++) {
        free(log->_ring[i]);
        log->_ring[i] = NULL;
    }
    log->_cleared_seq = log->_next_seq - 1;
}

void mock_reqlog_close(struct mock_reqlog *log)
{
    if (log->_ring != NULL)
        mock_reqlog_clear(log);
    free(log->_ring);
    log->_ring = NULL;
}

uint64_t mock_reqlog_add(struct mock_reqlog *log, struct mock_log_entry *e)
{
    e->seq = log->_next_seq++;
    e->time_us = mock_wall_us();
    e->time_ms = e->time_us / 1000;
    /* The slot of the entry cap requests older, which leaves the log now. */
    struct mock_log_entry **slot = &log->_ring[e->seq % log->_cap];
    free(*slot);
    *slot = e;
    return e->seq;
}

struct mock_log_entry *mock_reqlog_find(struct mock_reqlog *log, uint64_t seq)
{
    struct mock_log_entry *e = log->_ring[seq % log->_cap];
    return e != NULL && e->seq == seq ? e : NULL;
}

/* count is every request since the last clear, which may be more than the log holds. */
static json_t *log_json(struct mock_reqlog *log)
{
    uint64_t count = log->_next_seq - 1 - log->_cleared_seq;
    json_t *list = json_array();
    json_t *root = json_pack("{s:I, s:o}", "count", (json_int_t)count, "requests", list);
    uint64_t first = log->_next_seq - (count < log->_cap ? count : log->_cap);
    for (uint64_t s = first; root != NULL && s < log->_next_seq; s++) {
        const struct mock_log_entry *e = mock_reqlog_find(log, s);
        if (e != NULL && json_array_append_new(list, log->_entry_json(e)) != 0) {
            json_decref(root);
            return NULL;
        }
    }
    return root;
}

static void on_requests_get(struct http_exchange *x, const struct route_params *p, void *arg)
{
    UNUSED(p);
    /* Entries hold integers and strings only, so no real precision applies. */
    mock_respond_json(x, 200, log_json(arg), JSON_COMPACT);
}

static void on_requests_delete(struct http_exchange *x, const struct route_params *p, void *arg)
{
    UNUSED(p);
    mock_reqlog_clear(arg);
    http_exchange_respond(x, 204, NULL, NULL, 0);
}

int mock_reqlog_add_routes(struct mock_reqlog *log, struct router *r)
{
    static const struct mock_route routes[] = {
        {"GET", "/_admin/requests", on_requests_get},
        {"DELETE", "/_admin/requests", on_requests_delete},
    };
    return mock_add_routes(r, routes, ARRAY_SIZE(routes), log);
}
