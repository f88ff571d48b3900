#include "pdstrace/app.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/api.h"
#include "pdstrace/apikeys.h"
#include "pdstrace/buf.h"
#include "pdstrace/bulk_job.h"
#include "pdstrace/cache.h"
#include "pdstrace/config.h"
#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/http_client.h"
#include "pdstrace/http_server.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/objections.h"
#include "pdstrace/pds_client.h"
#include "pdstrace/redis_conn.h"
#include "pdstrace/router.h"
#include "pdstrace/tls_files.h"
#include "pdstrace/token.h"
#include "pdstrace/trace.h"
#include "pdstrace/writeback.h"

/* How often the token source tries again while readiness lacks a PDS token. */
#define TOKEN_WARM_INTERVAL_MS 2000u

struct app {
    uv_loop_t *loop;
    struct config cfg;
    struct metrics *metrics; /* every module counts into this one, borrowed */
    struct apikeys *keys;
    struct redis_conn *redis;
    struct http_client *http;
    struct token_source *tokens;
    struct pds_client *pds;
    struct cache *cache;
    struct objections *objections;
    struct trace_service *traces;
    struct writeback_queue *writebacks;
    struct redis_conn *worker_redis; /* the write-back worker's blocking reads */
    struct writeback_worker *worker; /* NULL without case.base_url */
    struct bulk_jobs *bulk;          /* HTTP bulk jobs in Redis */
    struct redis_conn *bulk_redis;   /* the bulk worker's blocking reads */
    struct bulk_worker *bulk_worker; /* serve only: the bulk CLI works on its own file */
    struct router *router;
    struct http_server *server;
    struct api_context api;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_check_t log_check; /* flushes the log once per loop iteration */
    app_stop_hook *stop_hook;
    void *stop_hook_arg;
    bool stopping;
};

static int start_redis(struct app *app)
{
    struct redis_conn_config rc = {
        .url = app->cfg.redis.url,
        .connect_timeout_ms = app->cfg.redis.connect_timeout_ms,
        .command_timeout_ms = app->cfg.redis.command_timeout_ms,
    };
    return redis_conn_new(&app->redis, app->loop, &rc);
}

/* "PDS_TRACE_PDS_CA_FILE (pds.ca_file) /etc/x.pem: why", the shape of config errors, for
 * a setting "<prefix>.<what>" whose value a module refused; value "" is left out. */
static void setting_error(char *err, size_t n, const char *prefix, const char *what,
                          const char *value, const char *why)
{
    char env[64];
    int len = snprintf(env, sizeof(env), "PDS_TRACE_%s_%s", prefix, what);
    for (int i = 0; i < len && (size_t)i < sizeof(env); i++)
        env[i] = (char)toupper((unsigned char)env[i]);
    snprintf(err, n, "%s (%s.%s)%s%s: %s", env, prefix, what, value[0] ? " " : "", value, why);
}

/* The TLS files of one upstream, as http_client takes them (the case system's client
 * will take its own the same way). */
static struct http_client_tls upstream_tls(const char *ca, const char *cert, const char *key)
{
    return (struct http_client_tls){.ca_file = ca, .cert_file = cert, .key_file = key};
}

/* The TLS files are checked at start-up, so that a bad one stops the service by name. The
 * case system's are checked too, although its client does not exist yet: a setting that
 * is accepted must be one that works. */
static int check_tls(const struct config *c, char *err, size_t n)
{
    struct tls_files_error e;
    const char *prefix = "pds";
    struct http_client_tls pds =
        upstream_tls(c->pds.ca_file, c->pds.client_cert_file, c->pds.client_key_file);
    struct http_client_tls case_system = upstream_tls(
        c->case_system.ca_file, c->case_system.client_cert_file, c->case_system.client_key_file);
    int r = tls_files_check(&pds, &e);
    if (!r) {
        prefix = "case";
        r = tls_files_check(&case_system, &e);
    }
    if (r)
        setting_error(err, n, prefix, e.what, e.path, e.why);
    return r;
}

/* The token source for signed-JWT auth. A setting it refuses is named with its reason;
 * only the key file's value is shown, the others are only ever missing. */
static int start_auth(struct app *app, const struct http_client_tls *tls, char *err, size_t n)
{
    const struct config *c = &app->cfg;
    struct token_config tc = {.token_url = c->pds.token_url,
                              .client_id = c->pds.client_id,
                              .kid = c->pds.kid,
                              .key_file = c->pds.key_file,
                              .timeout_ms = c->pds.timeout_ms,
                              .tls = *tls};
    struct token_config_error why;
    int e = token_source_new(&app->tokens, app->loop, app->http, &tc, &why);
    if (e && why.field != NULL) {
        bool key = strcmp(why.field, "key_file") == 0;
        setting_error(err, n, "pds", why.field, key ? c->pds.key_file : "", why.reason);
        return ERR_CONFIG;
    }
    return e;
}

static int start_pds(struct app *app, char *err, size_t n)
{
    const struct config *c = &app->cfg;
    struct http_client_tls tls =
        upstream_tls(c->pds.ca_file, c->pds.client_cert_file, c->pds.client_key_file);
    int e = check_tls(c, err, n);
    if (!e && c->pds.auth == CONFIG_PDS_AUTH_SIGNED_JWT)
        e = start_auth(app, &tls, err, n);
    if (e)
        return e;
    struct pds_client_config pc = {
        .base_url = c->pds.base_url,
        .ods_code = c->pds.ods_code,
        .rate = c->pds.rate,
        .concurrency = c->pds.concurrency,
        .timeout_ms = c->pds.timeout_ms,
        .max_attempts = c->pds.max_attempts,
        .max_queue = c->pds.max_queue,
        .tls = tls,
        .metrics = app->metrics,
        .redis = app->redis, /* the rate limit is shared by every instance */
        .key_prefix = c->redis.key_prefix,
    };
    e = pds_client_new(&app->pds, app->loop, app->http, app->tokens, &pc);
    if (!e && app->tokens != NULL)
        e = token_source_keep_warm(app->tokens, TOKEN_WARM_INTERVAL_MS);
    return e;
}

/* The secret file, which every key of the store derives from. */
static int load_secret(const struct config *c, struct buf *secret, char *err, size_t n)
{
    if (c->secret_file[0] == '\0' || crypto_load_secret(c->secret_file, secret) != 0) {
        snprintf(err, n, "PDS_TRACE_SECRET_FILE (secret_file) %s: %s", c->secret_file,
                 c->secret_file[0] ? "must be a readable file of at least 32 bytes"
                                   : "is required (a file of at least 32 bytes)");
        return ERR_CONFIG;
    }
    return 0;
}

static int start_cache(struct app *app, const struct buf *secret)
{
    const struct config *c = &app->cfg;
    struct cache_config cc = {c->redis.key_prefix, c->cache.ttl_s, c->cache.negative_ttl_s,
                              app->metrics};
    return cache_new(&app->cache, app->redis, buf_cstr(secret), buf_len(secret), &cc);
}

static int start_objections(struct app *app, const struct buf *secret)
{
    const struct config *c = &app->cfg;
    struct objections_config oc = {c->redis.key_prefix, c->objections.max_staleness_ms,
                                   app->metrics};
    return objections_new(&app->objections, app->loop, app->redis, buf_cstr(secret),
                          buf_len(secret), &oc);
}

/* The write-back settings as the queue and the worker take them; token may be NULL. */
static struct writeback_config writeback_settings(const struct app *app, const char *token)
{
    const struct config *c = &app->cfg;
    return (struct writeback_config){
        .prefix = c->redis.key_prefix,
        .base_url = c->case_system.base_url,
        .token = token,
        .tls = upstream_tls(c->case_system.ca_file, c->case_system.client_cert_file,
                            c->case_system.client_key_file),
        .timeout_ms = c->case_system.timeout_ms,
        .concurrency = c->case_system.concurrency,
        .retry_initial_ms = c->case_system.retry_initial_ms,
        .retry_max_ms = c->case_system.retry_max_ms,
        .reclaim_idle_ms = c->case_system.reclaim_idle_ms,
        .max_age_s = c->case_system.max_age_s,
        .metrics = app->metrics,
    };
}

/* The write-back queue, sealing numbers with a key derived from the secret. */
static int start_writeback(struct app *app, const struct buf *secret)
{
    struct writeback_config wc = writeback_settings(app, NULL);
    return writeback_queue_new(&app->writebacks, app->redis, buf_cstr(secret), buf_len(secret),
                               &wc);
}

/* The store of HTTP bulk jobs, sealing rows with a key derived from the secret. */
static int start_bulk_jobs(struct app *app, const struct buf *secret)
{
    const struct config *c = &app->cfg;
    struct bulk_jobs_config bc = {c->redis.key_prefix, c->bulk.retention_s, app->metrics};
    return bulk_jobs_new(&app->bulk, app->redis, buf_cstr(secret), buf_len(secret), &bc);
}

/* The cache, the objection registry and the trace service over them. The secret never
 * stays in memory: only the keys derived from it do. */
static int start_traces(struct app *app, char *err, size_t n)
{
    const struct config *c = &app->cfg;
    struct buf secret;
    int e = load_secret(c, &secret, err, n);
    if (e)
        return e;
    e = start_cache(app, &secret);
    e = e ? e : start_objections(app, &secret);
    e = e ? e : start_writeback(app, &secret);
    e = e ? e : start_bulk_jobs(app, &secret);
    buf_wipe(&secret);
    if (e)
        return e;
    struct trace_service_config tc = {
        .cascade = {{c->match.accept_score, c->match.review_score}, c->pds.fuzzy, c->pds.history},
        .deadline_ms = c->pds.deadline_ms,
        .objections = app->objections,
    };
    return trace_service_new(&app->traces, app->pds, app->cache, &tc);
}

/* objections_check, as the worker asks it just before every delivery. */
static int writeback_withheld(void *arg, const char *case_id, const char *nhs_number)
{
    return objections_check(arg, case_id, nhs_number);
}

/* The worker's own connection: a blocked read must never hold up the service's commands,
 * and its deadline must outlast the block. */
static int start_worker_redis(struct app *app)
{
    struct redis_conn_config rc = {
        .url = app->cfg.redis.url,
        .connect_timeout_ms = app->cfg.redis.connect_timeout_ms,
        .command_timeout_ms = app->cfg.redis.command_timeout_ms + WRITEBACK_READ_BLOCK_MS,
    };
    return redis_conn_new(&app->worker_redis, app->loop, &rc);
}

/* The delivery worker, only when there is a case system to deliver to. The token is
 * wiped once the worker has its copy, and never logged. */
static int start_writeback_worker(struct app *app, char *err, size_t n)
{
    const struct config *c = &app->cfg;
    struct buf token;
    if (c->case_system.base_url[0] == '\0') {
        log_msgf(LOG_LEVEL_WARN, NULL,
                 "case.base_url is not set: traces that ask for a "
                 "write-back answer write_back \"failed\"");
        return 0;
    }
    buf_init(&token, 1);
    if (c->case_system.token_file[0] != '\0' &&
        writeback_token_load(c->case_system.token_file, &token) != 0) {
        snprintf(err, n, "PDS_TRACE_CASE_TOKEN_FILE (case.token_file) %s: %s",
                 c->case_system.token_file, "must be a readable file holding one token");
        return ERR_CONFIG;
    }
    struct writeback_config wc = writeback_settings(app, buf_cstr(&token));
    int e = start_worker_redis(app);
    e = e ? e
          : writeback_worker_new(&app->worker, app->loop, app->http, app->worker_redis,
                                 app->writebacks, writeback_withheld, app->objections, &wc);
    buf_wipe(&token);
    return e;
}

/* Every serving instance works on the rows of every job, reading them over a connection
 * of its own whose deadline outlasts the blocking read. */
static int start_bulk_worker(struct app *app)
{
    const struct config *c = &app->cfg;
    struct redis_conn_config rc = {
        .url = c->redis.url,
        .connect_timeout_ms = c->redis.connect_timeout_ms,
        .command_timeout_ms = c->redis.command_timeout_ms + BULK_WORKER_READ_BLOCK_MS,
    };
    struct bulk_worker_config wc = {
        .traces = app->traces,
        .metrics = app->metrics,
        .concurrency = c->bulk.concurrency,
        .reclaim_idle_ms = c->bulk.reclaim_idle_ms,
    };
    int e = redis_conn_new(&app->bulk_redis, app->loop, &rc);
    return e ? e : bulk_worker_new(&app->bulk_worker, app->loop, app->bulk, app->bulk_redis, &wc);
}

static int start_routes(struct app *app)
{
    app->api = (struct api_context){
        .cfg = &app->cfg,
        .redis = app->redis,
        .http = app->http,
        .keys = app->keys,
        .traces = app->traces,
        .tokens = app->tokens,
        .metrics = app->metrics,
        .objections = app->objections,
        .writebacks = app->writebacks,
        .bulk = app->bulk,
    };
    int err = router_new(&app->router);
    if (err)
        return err;
    router_set_guard(app->router, api_guard, &app->api);
    err = api_health_register(app->router, &app->api);
    err = err ? err : api_trace_register(app->router, &app->api);
    err = err ? err : api_objections_register(app->router, &app->api);
    err = err ? err : api_writebacks_register(app->router, &app->api);
    err = err ? err : api_bulk_register(app->router, &app->api);
    return err ? err : api_admin_register(app->router, &app->api);
}

static int start_server(struct app *app, char *err, size_t n)
{
    char host[256];
    int port;
    config_parse_listen(app->cfg.listen, host, sizeof(host), &port);
    const struct config *c = &app->cfg;
    struct http_server_config sc = {
        .host = host,
        .port = port,
        .max_header_bytes = c->server.max_header_bytes,
        .max_body_bytes = c->server.max_body_bytes,
        .header_timeout_ms = c->server.header_timeout_ms,
        .body_timeout_ms = c->server.body_timeout_ms,
        .idle_timeout_ms = c->server.idle_timeout_ms,
        .max_connections = c->server.max_connections,
        .max_connections_per_client = c->server.max_connections_per_client,
        .handler = router_dispatch,
        .handler_arg = app->router,
        .head = router_head,
        .metrics = app->metrics,
    };
    int e = http_server_new(&app->server, app->loop, &sc);
    if (e)
        snprintf(err, n, "PDS_TRACE_LISTEN (listen) %s: %s", c->listen, err_str(e));
    return e;
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct app *app = s->data;
    log_msgf(LOG_LEVEL_INFO, NULL, "signal %d: draining", signum);
    app_stop(app);
}

static void on_log_check(uv_check_t *c)
{
    (void)c;
    log_flush();
}

static int start_signals(struct app *app)
{
    uv_signal_init(app->loop, &app->sigterm);
    uv_signal_init(app->loop, &app->sigint);
    /* One write per loop iteration instead of one per line: audit lines are per request. */
    uv_check_init(app->loop, &app->log_check);
    uv_check_start(&app->log_check, on_log_check);
    uv_unref((uv_handle_t *)&app->log_check);
    log_set_buffered(1);
    app->sigterm.data = app;
    app->sigint.data = app;
    int err = uv_signal_start(&app->sigterm, on_signal, SIGTERM);
    return err ? err : uv_signal_start(&app->sigint, on_signal, SIGINT);
}

static void log_listening(const struct app *app)
{
    log_event(LOG_LEVEL_INFO, NULL, "listening",
              json_pack("{s:i, s:s}", "port", app_port(app), "version", PDS_TRACE_VERSION));
}

/* What serve and bulk share: everything up to the trace service and the write-back queue. */
static int start_core(struct app **out, uv_loop_t *loop, const struct config *cfg, bool keys,
                      char *err, size_t err_size)
{
    struct app *app = calloc(1, sizeof(*app));
    if (app == NULL)
        return UV_ENOMEM;
    *out = app;
    app->loop = loop;
    app->cfg = *cfg;
    /* Signals first: from here on app_stop() may close them, whatever fails next. */
    int e = start_signals(app);
    e = e ? e : metrics_new(&app->metrics);
    if (!e && keys)
        e = apikeys_load(&app->keys, cfg->api_keys_file, err, err_size);
    if (!e && keys && apikeys_count(app->keys) == 0)
        log_msgf(LOG_LEVEL_WARN, NULL, "no API keys: every protected route answers 401");
    e = e ? e : http_client_new(&app->http, loop);
    e = e ? e : start_redis(app);
    e = e ? e : start_pds(app, err, err_size);
    return e ? e : start_traces(app, err, err_size);
}

int app_new(struct app **out, uv_loop_t *loop, const struct config *cfg, char *err, size_t err_size)
{
    int e = start_core(out, loop, cfg, true, err, err_size);
    struct app *app = *out;
    e = e ? e : start_writeback_worker(app, err, err_size);
    e = e ? e : start_bulk_worker(app);
    e = e ? e : start_routes(app);
    e = e ? e : start_server(app, err, err_size);
    if (!e)
        log_listening(app);
    return e;
}

int app_new_bulk(struct app **out, uv_loop_t *loop, const struct config *cfg, char *err,
                 size_t err_size)
{
    return start_core(out, loop, cfg, false, err, err_size);
}

void app_set_stop_hook(struct app *app, app_stop_hook *fn, void *arg)
{
    app->stop_hook = fn;
    app->stop_hook_arg = arg;
}

struct trace_service *app_traces(const struct app *app)
{
    return app->traces;
}

struct writeback_queue *app_writebacks(const struct app *app)
{
    return app->writebacks;
}

struct objections *app_objections(const struct app *app)
{
    return app->objections;
}

struct metrics *app_metrics(const struct app *app)
{
    return app->metrics;
}

struct pds_client *app_pds(const struct app *app)
{
    return app->pds;
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Everything after the drain: the order of CONVENTIONS.md §1.5. */
static void close_all(struct app *app)
{
    /* Rows of bulk jobs in flight stay pending in Redis for another instance. */
    bulk_worker_free(app->bulk_worker);
    app->bulk_worker = NULL;
    /* Traces still waiting end with UV_ECANCELED as what they wait on goes away. */
    if (app->traces != NULL)
        trace_service_shutdown(app->traces);
    pds_client_free(app->pds);
    app->pds = NULL;
    token_source_free(app->tokens);
    app->tokens = NULL;
    http_server_free(app->server);
    app->server = NULL;
    /* The worker before the client and the connections it uses: what it has in flight
     * stays pending in Redis and is reclaimed after a restart. */
    writeback_worker_free(app->worker);
    app->worker = NULL;
    http_client_free(app->http);
    app->http = NULL;
    objections_free(app->objections);
    app->objections = NULL;
    redis_conn_free(app->worker_redis);
    app->worker_redis = NULL;
    bulk_jobs_close(app->bulk);
    redis_conn_free(app->bulk_redis);
    app->bulk_redis = NULL;
    redis_conn_free(app->redis);
    app->redis = NULL;
    close_handle((uv_handle_t *)&app->sigterm);
    close_handle((uv_handle_t *)&app->sigint);
    close_handle((uv_handle_t *)&app->log_check);
}

static void on_drained(int status, void *arg)
{
    struct app *app = arg;
    if (status)
        log_msgf(LOG_LEVEL_WARN, NULL, "drain deadline passed: closing the rest");
    else
        log_msgf(LOG_LEVEL_INFO, NULL, "drained");
    close_all(app);
}

void app_stop(struct app *app)
{
    if (app == NULL || app->stopping)
        return;
    app->stopping = true;
    if (app->stop_hook != NULL)
        app->stop_hook(app->stop_hook_arg);
    bulk_worker_drain(app->bulk_worker);
    if (app->server == NULL) {
        close_all(app);
        return;
    }
    http_server_drain(app->server, app->cfg.server.drain_ms, on_drained, app);
}

void app_free(struct app *app)
{
    log_set_buffered(0);
    if (app == NULL)
        return;
    trace_service_free(app->traces);
    cache_free(app->cache);
    writeback_queue_free(app->writebacks);
    bulk_jobs_free(app->bulk);
    apikeys_free(app->keys);
    router_free(app->router);
    metrics_free(app->metrics);
    free(app);
}

int app_port(const struct app *app)
{
    return app->server != NULL ? http_server_port(app->server) : 0;
}
