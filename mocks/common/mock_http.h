#ifndef PDS_MOCKCOMMON_MOCK_HTTP_H
#define PDS_MOCKCOMMON_MOCK_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "mock_main.h"
#include "pdstrace/router.h"

/* What the mocks' HTTP sides share on top of the project's http_server and router: the
 * listener with the mocks' limits, JSON answers, route tables, and the graceful stop. */

struct http_exchange;
struct http_server;

/* Wall-clock milliseconds since the epoch. */
long long mock_wall_ms(void);
/* The same in microseconds. */
long long mock_wall_us(void);

/* Whether host is a loopback address, where an admin API without auth may be served. */
bool mock_is_loopback(const char *host);

/* Binds host:port with the mocks' limits (32 KiB of headers, 64 KiB of body, 10 s for each,
 * 60 s idle, 10000 connections), every request going to router (borrowed). Returns 0 or a
 * libuv code; as http_server_new, the loop must be run after a failure. */
int mock_listen(struct http_server **out, uv_loop_t *loop, const char *host, int port,
                struct router *router);

/* Frees *srv (NULL is fine), cleared first: freeing calls drain callbacks that look at it. */
void mock_close_server(struct http_server **srv);

/* Answers x at once with body dumped with json_flags as application/json. Takes ownership
 * of body; NULL (a failed json_pack) answers 500. */
void mock_respond_json(struct http_exchange *x, int status, json_t *body, size_t json_flags);

/* x's body as a JSON object (json_loadb with load_flags; the caller owns it), or NULL once
 * x has been answered 400 invalid_json because it is not one. */
json_t *mock_body_object(struct http_exchange *x, size_t load_flags);

struct mock_route {
    const char *method, *path;
    route_handler_fn *fn;
};

/* Adds n routes, each called with arg. Returns 0 or the first router error. */
int mock_add_routes(struct router *r, const struct mock_route *routes, size_t n, void *arg);

/* Whether a mock is stopping, and whom to tell once it has stopped. Embedded in the mock. */
struct mock_stop {
    bool stopping;
    mock_stopped_fn *_cb;
    void *_arg;
};

/* Begins the stop: true, or false (and nothing changes) when it had begun already. */
bool mock_stop_begin(struct mock_stop *s, mock_stopped_fn *cb, void *arg);

/* Closes what is left of a mock at once. */
typedef void mock_close_fn(void *mock);

/* Ends the stop once draining has ended with status (ERR_UPSTREAM_TIMEOUT: the deadline
 * passed, which is logged): close_all(mock), then the stop callback, which runs once. */
void mock_stop_end(struct mock_stop *s, int status, mock_close_fn *close_all, void *mock);

#endif
