#ifndef PDS_NET_ROUTER_H
#define PDS_NET_ROUTER_H

#include "pdstrace/http_server.h"

/* Method + path pattern routing. Patterns are literal segments and "{name}" parameters
 * matching one non-empty segment: "/v1/objections/{case_id}". A path matching no pattern
 * gets 404, a path matching only with other methods gets 405 with Allow; both carry the
 * JSON error body. */
struct router;

#define ROUTER_MAX_PARAMS 4

struct route_params {
    unsigned count;
    const char *names[ROUTER_MAX_PARAMS];
    char
        *values[ROUTER_MAX_PARAMS]; /* percent-decoded; borrowed, valid until the handler returns */
};

typedef void route_handler_fn(struct http_exchange *x, const struct route_params *params,
                              void *arg);

/* Runs before a matched handler with the route's role (NULL when the route needs none).
 * Returns 0 to go on, or non-zero after responding itself (401/403). */
typedef int router_guard_fn(struct http_exchange *x, const char *role, void *arg);

int router_new(struct router **out);
void router_free(struct router *r);

/* Adds a route. method, pattern and role must be static strings (they are not copied);
 * pattern doubles as the metrics label. Returns 0, ERR_INVALID_INPUT for a bad pattern, or
 * UV_ENOMEM. */
int router_add(struct router *r, const char *method, const char *pattern, const char *role,
               route_handler_fn *fn, void *arg);

/* Adds a streaming route (same rules as router_add): with router_head as the server's
 * cfg.head, a request for it is dispatched as soon as its headers are complete, the guard
 * runs before any body byte is read, max_body_bytes does not apply, and the handler reads
 * the body with http_exchange_read_body (or answers without it, which closes the
 * connection). Responses may stream from any route (http_exchange_start). */
int router_add_stream(struct router *r, const char *method, const char *pattern, const char *role,
                      route_handler_fn *fn, void *arg);

void router_set_guard(struct router *r, router_guard_fn *fn, void *arg);

/* An http_handler_fn: pass the router as handler_arg. */
void router_dispatch(struct http_exchange *x, void *router);

/* An http_head_fn: non-zero when the route router_dispatch would pick for x was added
 * with router_add_stream. Pass the router as handler_arg. */
int router_head(const struct http_exchange *x, void *router);

/* Looks up a parameter by name; NULL when absent. */
const char *route_param(const struct route_params *p, const char *name);

#endif
