#ifndef PDS_API_API_H
#define PDS_API_API_H

#include <jansson.h>

#include "pdstrace/http_server.h"
#include "pdstrace/router.h"

/* The HTTP API of DESIGN.md §3: route groups register themselves on the router, and share
 * these helpers for auth and JSON answers. */
struct config;
struct redis_conn;
struct http_client;
struct apikeys;
struct trace_service;
struct token_source;

/* What the handlers reach; every part is borrowed from the app, which outlives them. */
struct api_context {
    const struct config *cfg;
    struct redis_conn *redis;
    struct http_client *http;
    const struct apikeys *keys;
    struct trace_service *traces;
    struct token_source *tokens; /* NULL when PDS needs no auth */
};

/* GET /healthz, /readyz and /metrics, which need no key. */
int api_health_register(struct router *r, struct api_context *ctx);

/* GET /v1/config (role admin): the effective settings, without secrets. */
int api_admin_register(struct router *r, struct api_context *ctx);

/* POST /v1/trace (role trace). */
int api_trace_register(struct router *r, struct api_context *ctx);

/* A router_guard_fn (arg: struct api_context): "Authorization: Bearer <key>" must name a
 * key holding role; answers 401 or 403 itself. On success the key is the exchange's user. */
int api_guard(struct http_exchange *x, const char *role, void *ctx);

/* The name of the key that authorised x, or "-" for open routes. */
const char *api_caller(const struct http_exchange *x);

/* Sends body (takes ownership) as application/json. */
void api_respond_json(struct http_exchange *x, int status, json_t *body);

#endif
