#ifndef PDS_API_API_H
#define PDS_API_API_H

/* The HTTP API of DESIGN.md §3: route groups register themselves on the router. What the
 * groups share among themselves is in src/api/api_int.h. */
struct apikeys;
struct bulk_jobs;
struct config;
struct http_client;
struct http_exchange;
struct metrics;
struct objections;
struct redis_conn;
struct router;
struct token_source;
struct trace_service;
struct writeback_queue;

/* What the handlers reach; every part is borrowed from the app, which outlives them. */
struct api_context {
    const struct config *cfg;
    struct redis_conn *redis;
    struct http_client *http;
    const struct apikeys *keys;
    struct trace_service *traces;
    struct token_source *tokens;        /* NULL when PDS needs no auth */
    struct metrics *metrics;            /* /metrics renders it; the routes declare their families */
    struct objections *objections;      /* the registry every trace checks */
    struct writeback_queue *writebacks; /* where matched traces queue their write-back */
    struct bulk_jobs *bulk;             /* HTTP bulk jobs */
};

/* GET /healthz, /readyz and /metrics, which need no key. */
int api_health_register(struct router *r, struct api_context *ctx);

/* GET /v1/config (role admin): the effective settings, without secrets. */
int api_admin_register(struct router *r, struct api_context *ctx);

/* POST /v1/trace (role trace). */
int api_trace_register(struct router *r, struct api_context *ctx);

/* PUT/GET/DELETE /v1/objections/{case_id} (role objections). */
int api_objections_register(struct router *r, struct api_context *ctx);

/* GET /v1/writebacks, POST /v1/writebacks/{trace_id}/retry (role admin). */
int api_writebacks_register(struct router *r, struct api_context *ctx);

/* POST /v1/bulk, GET /v1/bulk/{job_id}, GET /v1/bulk/{job_id}/result, DELETE
 * /v1/bulk/{job_id} (role bulk). */
int api_bulk_register(struct router *r, struct api_context *ctx);

/* A router_guard_fn (arg: struct api_context): "Authorization: Bearer <key>" must name a
 * key holding role; answers 401 or 403 itself. On success the key is the exchange's user. */
int api_guard(struct http_exchange *x, const char *role, void *ctx);

#endif
