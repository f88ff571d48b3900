#include "pdstrace/app.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/api.h"
#include "pdstrace/apikeys.h"
#include "pdstrace/buf.h"
#include "pdstrace/cache.h"
#include "pdstrace/config.h"
#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/http_client.h"
#include "pdstrace/http_server.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/pds_client.h"
#include "pdstrace/redis_conn.h"
#include "pdstrace/router.h"
#include "pdstrace/token.h"
#include "pdstrace/trace.h"

struct app {
    uv_loop_t *loop;
    struct config cfg;
    struct apikeys *keys;
    struct redis_conn *redis;
    struct http_client *http;
    struct token_source *tokens;
    struct pds_client *pds;
    struct cache *cache;
    struct trace_service *traces;
    struct router *router;
    struct http_server *server;
    struct api_context api;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_timer_t token_timer; /* re-fetches a PDS token while readiness lacks one */
    uv_check_t log_check;   /* flushes the log once per loop iteration */
    bool token_fetching;
    bool stopping;
};

static void observe_request(const char *route, int status, double seconds)
{
    char labels[160];
    snprintf(labels, sizeof(labels), "route=\"%s\",status=\"%d\"", route, status);
    metrics_inc("pdstrace_http_requests_total", labels, 1);
    snprintf(labels, sizeof(labels), "route=\"%s\"", route);
    metrics_observe("pdstrace_http_request_duration_seconds", labels, seconds);
}

static void collect(void *arg)
{
    const struct app *app = arg;
    enum redis_conn_state st = redis_conn_state(app->redis);
    metrics_set("pdstrace_redis_up", NULL, st == REDIS_CONN_CONNECTED);
    metrics_set("pdstrace_http_connections", NULL, http_server_connections(app->server));
    metrics_set("pdstrace_http_in_flight", NULL, http_server_in_flight(app->server));
}

/* Every family /metrics exposes; the modules count into them by name. */
static const struct {
    const char *name;
    enum metrics_type type;
    const char *help;
} families[] = {
    {"pdstrace_http_requests_total", METRICS_COUNTER,
     "HTTP requests answered, by route and status"},
    {"pdstrace_http_request_duration_seconds", METRICS_HISTOGRAM,
     "time from a complete request to its response, by route"},
    {"pdstrace_http_connections", METRICS_GAUGE, "open client connections"},
    {"pdstrace_http_in_flight", METRICS_GAUGE, "requests being handled"},
    {"pdstrace_redis_up", METRICS_GAUGE, "1 while the Redis connection is up"},
    {"pdstrace_trace_outcomes_total", METRICS_COUNTER,
     "traces answered, by outcome (error: PDS failed)"},
    {"pdstrace_cache_lookups_total", METRICS_COUNTER, "cache lookups by result: hit, miss, error"},
    {"pdstrace_cache_stores_total", METRICS_COUNTER, "cache stores by result: ok, error"},
    {"pdstrace_pds_requests_total", METRICS_COUNTER,
     "PDS requests by operation and HTTP status (error: none)"},
    {"pdstrace_pds_request_duration_seconds", METRICS_HISTOGRAM,
     "PDS request latency by operation"},
};

static int declare_metrics(struct app *app)
{
    for (size_t i = 0; i < ARRAY_SIZE(families); i++) {
        int err = metrics_declare(families[i].name, families[i].type, families[i].help);
        if (err)
            return err;
    }
    http_server_set_observer(observe_request);
    return metrics_add_collector(collect, app);
}

static int start_redis(struct app *app)
{
    struct redis_conn_config rc = {
        .url = app->cfg.redis.url,
        .connect_timeout_ms = app->cfg.redis.connect_timeout_ms,
        .command_timeout_ms = app->cfg.redis.command_timeout_ms,
    };
    return redis_conn_new(&app->redis, app->loop, &rc);
}

static void on_token(int status, const char *token, void *arg)
{
    struct app *app = arg;
    (void)token;
    app->token_fetching = false;
    if (status)
        log_msgf(LOG_LEVEL_WARN, NULL, "PDS token endpoint: %s", err_str(status));
}

/* Readiness needs a PDS token, and an unready instance gets no traffic that would fetch
 * one: so while there is none, fetch it here, every few seconds. */
static void on_token_timer(uv_timer_t *t)
{
    struct app *app = container_of(t, struct app, token_timer);
    if (app->tokens == NULL || app->token_fetching || token_source_healthy(app->tokens))
        return;
    app->token_fetching = token_get(app->tokens, on_token, app) == 0;
}

/* ---- TLS files: checked at start-up, so that a bad one stops the service by name ---- */

/* The first bad TLS setting found: "<prefix>.<what>" names it. */
struct tls_check {
    const char *prefix; /* "pds" or "case" */
    const char *what;   /* "ca_file", "client_cert_file" or "client_key_file" */
    const char *path;
    const char *why;
};

static bool is_set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* OpenSSL would otherwise ask for a passphrase on the terminal; curl is given none, so an
 * encrypted key is unusable and must fail here, not at the first request. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    UNUSED(buf);
    UNUSED(size);
    UNUSED(rwflag);
    UNUSED(u);
    return -1;
}

/* The first certificate (or private key) of a PEM file; NULL when the file cannot be
 * read or holds none. */
static void *read_pem(const char *path, bool want_key)
{
    FILE *f = fopen(path, "r");
    void *v = NULL;
    if (f == NULL)
        return NULL;
    if (want_key)
        v = PEM_read_PrivateKey(f, NULL, no_password, NULL);
    else
        v = PEM_read_X509(f, NULL, no_password, NULL);
    fclose(f);
    ERR_clear_error();
    return v;
}

static bool tls_fail(struct tls_check *k, const char *what, const char *path, const char *why)
{
    k->what = what;
    k->path = path;
    k->why = why;
    return false;
}

/* A client certificate and its key: both or neither, both readable, and a pair. */
static bool check_client_pair(struct tls_check *k, const struct http_client_tls *t)
{
    if (!is_set(t->cert_file) && !is_set(t->key_file))
        return true;
    if (!is_set(t->key_file))
        return tls_fail(k, "client_key_file", "", "is required with client_cert_file");
    if (!is_set(t->cert_file))
        return tls_fail(k, "client_cert_file", "", "is required with client_key_file");
    X509 *cert = read_pem(t->cert_file, false);
    EVP_PKEY *key = cert != NULL ? read_pem(t->key_file, true) : NULL;
    bool ok = cert != NULL && key != NULL && X509_check_private_key(cert, key) == 1;
    ERR_clear_error();
    if (cert == NULL)
        tls_fail(k, "client_cert_file", t->cert_file,
                 "not a readable PEM file holding a certificate");
    else if (key == NULL)
        tls_fail(k, "client_key_file", t->key_file,
                 "not a readable PEM file holding an unencrypted private key");
    else if (!ok)
        tls_fail(k, "client_key_file", t->key_file, "is not the key of client_cert_file");
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok;
}

static bool check_upstream_tls(struct tls_check *k, const struct http_client_tls *t)
{
    if (is_set(t->ca_file)) {
        X509 *ca = read_pem(t->ca_file, false);
        X509_free(ca);
        if (ca == NULL)
            return tls_fail(k, "ca_file", t->ca_file,
                            "not a readable PEM file holding a certificate");
    }
    return check_client_pair(k, t);
}

/* The TLS files of one upstream, as http_client takes them (the case system's client
 * will take its own the same way). */
static struct http_client_tls upstream_tls(const char *ca, const char *cert, const char *key)
{
    return (struct http_client_tls){.ca_file = ca, .cert_file = cert, .key_file = key};
}

/* "PDS_TRACE_PDS_CA_FILE (pds.ca_file) /etc/x.pem: why", the shape of config errors. */
static void tls_message(const struct tls_check *k, char *err, size_t n)
{
    char env[64];
    int len = snprintf(env, sizeof(env), "PDS_TRACE_%s_%s", k->prefix, k->what);
    for (int i = 0; i < len && (size_t)i < sizeof(env); i++)
        env[i] = (char)toupper((unsigned char)env[i]);
    snprintf(err, n, "%s (%s.%s)%s%s: %s", env, k->prefix, k->what, k->path[0] ? " " : "", k->path,
             k->why);
}

/* The case system's files are checked too, although its client does not exist yet: a
 * setting that is accepted must be one that works. */
static int check_tls(const struct config *c, char *err, size_t n)
{
    struct tls_check k = {.prefix = "pds"};
    struct http_client_tls pds =
        upstream_tls(c->pds.ca_file, c->pds.client_cert_file, c->pds.client_key_file);
    struct http_client_tls case_system = upstream_tls(
        c->case_system.ca_file, c->case_system.client_cert_file, c->case_system.client_key_file);
    bool ok = check_upstream_tls(&k, &pds);
    if (ok) {
        k.prefix = "case";
        ok = check_upstream_tls(&k, &case_system);
    }
    if (ok)
        return 0;
    tls_message(&k, err, n);
    return ERR_CONFIG;
}

static int start_pds(struct app *app, char *err, size_t n)
{
    const struct config *c = &app->cfg;
    struct http_client_tls tls =
        upstream_tls(c->pds.ca_file, c->pds.client_cert_file, c->pds.client_key_file);
    int e = check_tls(c, err, n);
    if (e)
        return e;
    if (c->pds.auth == CONFIG_PDS_AUTH_SIGNED_JWT) {
        struct token_config tc = {c->pds.token_url,
                                  c->pds.client_id,
                                  c->pds.kid,
                                  c->pds.key_file,
                                  c->pds.timeout_ms,
                                  0,
                                  tls};
        e = token_source_new(&app->tokens, app->loop, app->http, &tc);
        if (e) {
            snprintf(err, n,
                     "PDS_TRACE_PDS_KEY_FILE (pds.key_file) %s: not a usable RSA "
                     "private key (PEM, 2048 bits or more)",
                     c->pds.key_file);
            return ERR_CONFIG;
        }
    }
    struct pds_client_config pc = {
        .base_url = c->pds.base_url,
        .ods_code = c->pds.ods_code,
        .rate = c->pds.rate,
        .concurrency = c->pds.concurrency,
        .timeout_ms = c->pds.timeout_ms,
        .max_attempts = c->pds.max_attempts,
        .max_queue = c->pds.max_queue,
        .tls = tls,
    };
    e = pds_client_new(&app->pds, app->loop, app->http, app->tokens, &pc);
    if (!e && app->tokens != NULL) {
        on_token_timer(&app->token_timer);
        e = uv_timer_start(&app->token_timer, on_token_timer, 2000, 2000);
    }
    return e;
}

/* The cache and the trace service over it. The secret never stays in memory: only the
 * keys derived from it do. */
static int start_traces(struct app *app, char *err, size_t n)
{
    const struct config *c = &app->cfg;
    struct buf secret;
    if (c->secret_file[0] == '\0' || crypto_load_secret(c->secret_file, &secret) != 0) {
        snprintf(err, n, "PDS_TRACE_SECRET_FILE (secret_file) %s: %s", c->secret_file,
                 c->secret_file[0] ? "must be a readable file of at least 32 bytes"
                                   : "is required (a file of at least 32 bytes)");
        return ERR_CONFIG;
    }
    struct cache_config cc = {c->redis.key_prefix, c->cache.ttl_s, c->cache.negative_ttl_s};
    int e = cache_new(&app->cache, app->redis, buf_cstr(&secret), buf_len(&secret), &cc);
    buf_wipe(&secret);
    if (e)
        return e;
    struct trace_service_config tc = {
        {{c->match.accept_score, c->match.review_score}, c->pds.fuzzy, c->pds.history},
        c->pds.deadline_ms};
    return trace_service_new(&app->traces, app->pds, app->cache, &tc);
}

static int start_routes(struct app *app)
{
    app->api =
        (struct api_context){&app->cfg, app->redis, app->http, app->keys, app->traces, app->tokens};
    int err = router_new(&app->router);
    if (err)
        return err;
    router_set_guard(app->router, api_guard, &app->api);
    err = api_health_register(app->router, &app->api);
    err = err ? err : api_trace_register(app->router, &app->api);
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
    uv_timer_init(app->loop, &app->token_timer);
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

int app_new(struct app **out, uv_loop_t *loop, const struct config *cfg, char *err, size_t err_size)
{
    struct app *app = calloc(1, sizeof(*app));
    if (app == NULL)
        return UV_ENOMEM;
    *out = app;
    app->loop = loop;
    app->cfg = *cfg;
    /* Signals first: from here on app_stop() may close them, whatever fails next. */
    int e = start_signals(app);
    e = e ? e : apikeys_load(&app->keys, cfg->api_keys_file, err, err_size);
    if (!e && apikeys_count(app->keys) == 0)
        log_msgf(LOG_LEVEL_WARN, NULL, "no API keys: every protected route answers 401");
    e = e ? e : http_client_new(&app->http, loop);
    e = e ? e : start_redis(app);
    e = e ? e : start_pds(app, err, err_size);
    e = e ? e : start_traces(app, err, err_size);
    e = e ? e : start_routes(app);
    e = e ? e : start_server(app, err, err_size);
    e = e ? e : declare_metrics(app);
    if (!e)
        log_listening(app);
    return e;
}

/* Everything after the drain: the order of CONVENTIONS.md §1.5. */
static void close_all(struct app *app)
{
    /* Traces still waiting end with UV_ECANCELED as what they wait on goes away. */
    if (app->traces != NULL)
        trace_service_shutdown(app->traces);
    pds_client_free(app->pds);
    app->pds = NULL;
    token_source_free(app->tokens);
    app->tokens = NULL;
    http_server_free(app->server);
    app->server = NULL;
    http_client_free(app->http);
    app->http = NULL;
    redis_conn_free(app->redis);
    app->redis = NULL;
    if (!uv_is_closing((uv_handle_t *)&app->sigterm))
        uv_close((uv_handle_t *)&app->sigterm, NULL);
    if (!uv_is_closing((uv_handle_t *)&app->sigint))
        uv_close((uv_handle_t *)&app->sigint, NULL);
    if (!uv_is_closing((uv_handle_t *)&app->token_timer))
        uv_close((uv_handle_t *)&app->token_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&app->log_check))
        uv_close((uv_handle_t *)&app->log_check, NULL);
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
    apikeys_free(app->keys);
    router_free(app->router);
    metrics_reset();
    free(app);
}

int app_port(const struct app *app)
{
    return app->server != NULL ? http_server_port(app->server) : 0;
}
