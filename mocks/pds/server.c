#include "server.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/err.h"
#include "pdstrace/http_server.h"
#include "pdstrace/jwt.h"
#include "pdstrace/router.h"
#include "pdstrace/url.h"
#include "population.h"
#include "search.h"
#include "server_int.h"

/* A request never answered (hang_next), held until its client leaves or the mock stops. */
struct server_hung {
    struct list_node link;
    struct http_exchange *x;
};

/* ---- query strings and form bodies ------------------------------------------------- */

void server_kv_free(struct server_kv *kv)
{
    free(kv->copy);
    free(kv->items);
    kv->copy = NULL;
    kv->items = NULL;
    kv->n = 0;
}

static int kv_add(struct server_kv *kv, char *piece, bool plus_space)
{
    char *eq = strchr(piece, '=');
    char *value = eq != NULL ? eq + 1 : piece + strlen(piece);
    if (eq != NULL)
        *eq = '\0';
    if (url_decode(piece, plus_space) || url_decode(value, plus_space))
        return ERR_PARSE;
    kv->items[kv->n++] = (struct search_param){piece, value};
    return 0;
}

int server_kv_parse(struct server_kv *kv, const char *s, size_t len, bool plus_space)
{
    size_t max = 1;
    *kv = (struct server_kv){0};
    for (size_t i = 0; i < len; i++)
        max += s[i] == '&';
    kv->copy = malloc(len + 1);
    kv->items = malloc(max * sizeof(*kv->items));
    if (kv->copy == NULL || kv->items == NULL) {
        server_kv_free(kv);
        return UV_ENOMEM;
    }
    memcpy(kv->copy, s, len);
    kv->copy[len] = '\0';
    int err = 0;
    for (char *p = kv->copy, *amp; !err && p != NULL; p = amp != NULL ? amp + 1 : NULL) {
        amp = strchr(p, '&');
        if (amp != NULL)
            *amp = '\0';
        if (*p != '\0')
            err = kv_add(kv, p, plus_space);
    }
    if (err)
        server_kv_free(kv);
    return err;
}

const char *server_kv_get(const struct server_kv *kv, const char *name)
{
    for (size_t i = 0; i < kv->n; i++)
        if (strcmp(kv->items[i].name, name) == 0)
            return kv->items[i].value;
    return NULL;
}

/* ---- hung requests ------------------------------------------------------------------ */

void server_hang(struct mock_pds *m, struct http_exchange *x)
{
    struct server_hung *h = malloc(sizeof(*h));
    if (h == NULL || m->stop.stopping) {
        free(h);
        http_exchange_abort(x);
        return;
    }
    h->x = x;
    list_push_head(&m->hung, &h->link);
}

/* Drops the connection of a hung request and lets go of it. */
static void hung_reset(struct server_hung *h)
{
    list_remove(&h->link);
    http_exchange_abort(h->x);
    free(h);
}

static void drop_hung(struct mock_pds *m)
{
    while (!list_is_empty(&m->hung))
        hung_reset(LIST_ENTRY(list_first(&m->hung), struct server_hung, link));
}

/* Hung exchanges whose client has gone would otherwise be held until shutdown. */
void server_sweep_hung(struct mock_pds *m)
{
    struct list_node *node, *tmp;
    LIST_FOREACH_SAFE(node, tmp, &m->hung)
    {
        struct server_hung *h = LIST_ENTRY(node, struct server_hung, link);
        if (http_exchange_is_detached(h->x))
            hung_reset(h);
    }
}

/* ---- answering ---------------------------------------------------------------------- */

void server_respond_later(struct mock_pds *m, struct http_exchange *x, int status,
                          const char *ctype, char *text)
{
    if (m->faults.latency_ms > 0 && !m->stop.stopping) {
        if (!mock_later_add(&m->delayed, m->faults.latency_ms, x, status, ctype, text)) {
            free(text);
            http_exchange_respond_error(x, 500, "internal", NULL, "out of memory");
        }
        return;
    }
    http_exchange_respond(x, status, ctype, text, strlen(text));
    free(text);
}

void server_respond_json(struct http_exchange *x, int status, json_t *body)
{
    mock_respond_json(x, status, body, JSON_COMPACT);
}

/* ---- life cycle ---------------------------------------------------------------------- */

void mock_pds_config_init(struct mock_pds_config *cfg)
{
    *cfg = (struct mock_pds_config){
        .host = "127.0.0.1",
        .token_ttl_s = 599,
        .fault_seed = 1,
        .faults = {.fail_status = 503, .fail_next_status = 503, .rate_window_ms = 60000},
    };
}

/* The admin API has no auth, so it exists only where nobody else can reach it. */
static int add_routes(struct mock_pds *m)
{
    int err = server_fhir_add_routes(m);
    err = err ? err : server_token_add_routes(m);
    if (err || !mock_is_loopback(m->host))
        return err;
    err = server_faults_add_routes(m);
    return err ? err : mock_reqlog_add_routes(&m->log, m->router);
}

static int copy_config(struct mock_pds *m, const struct mock_pds_config *cfg)
{
    m->host = strdup(cfg->host != NULL ? cfg->host : "127.0.0.1");
    m->client_id = cfg->client_id != NULL ? strdup(cfg->client_id) : NULL;
    m->token_url = cfg->token_url != NULL ? strdup(cfg->token_url) : NULL;
    m->token_ttl_s = cfg->token_ttl_s;
    m->faults = cfg->faults;
    m->sandbox = cfg->sandbox;
    m->prng = cfg->fault_seed;
    m->tokens = json_object();
    m->jtis = json_object();
    int err = server_reqlog_init(&m->log);
    if (err || m->host == NULL || (cfg->client_id != NULL && m->client_id == NULL) ||
        (cfg->token_url != NULL && m->token_url == NULL) || m->tokens == NULL || m->jtis == NULL)
        return UV_ENOMEM;
    return 0;
}

static int load_key(struct mock_pds *m, const struct mock_pds_config *cfg)
{
    if (cfg->jwt_public_key == NULL)
        return 0;
    if (cfg->client_id == NULL || cfg->client_id[0] == '\0' || cfg->token_ttl_s == 0)
        return ERR_CONFIG;
    return jwt_pubkey_load(&m->pubkey, cfg->jwt_public_key);
}

int mock_pds_new(struct mock_pds **out, uv_loop_t *loop, struct population *pop,
                 const struct mock_pds_config *cfg)
{
    *out = NULL;
    if (mock_pds_faults_check(&cfg->faults, NULL) != 0) {
        population_free(pop);
        return ERR_CONFIG;
    }
    struct mock_pds *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        population_free(pop);
        return UV_ENOMEM;
    }
    m->loop = loop;
    m->pop = pop;
    mock_later_init(&m->delayed, loop);
    list_init(&m->hung);
    int err = copy_config(m, cfg);
    err = err ? err : load_key(m, cfg);
    err = err ? err : router_new(&m->router);
    err = err ? err : add_routes(m);
    err = err ? err : mock_listen(&m->server, m->loop, m->host, cfg->port, m->router);
    if (err) {
        mock_pds_free(m);
        return err;
    }
    *out = m;
    return 0;
}

int mock_pds_port(const struct mock_pds *m)
{
    return m->server != NULL ? http_server_port(m->server) : 0;
}

/* Closes the server (so every exchange is detached) and then lets go of what waits. */
static void close_all(void *arg)
{
    struct mock_pds *m = arg;
    mock_close_server(&m->server);
    drop_hung(m);
    mock_later_flush(&m->delayed);
}

static void on_drained(int status, void *arg)
{
    struct mock_pds *m = arg;
    mock_stop_end(&m->stop, status, close_all, m);
}

void mock_pds_stop(struct mock_pds *m, unsigned deadline_ms, mock_pds_stopped_cb *cb, void *arg)
{
    if (!mock_stop_begin(&m->stop, cb, arg))
        return;
    drop_hung(m);
    http_server_drain(m->server, deadline_ms, on_drained, m);
}

void mock_pds_free(struct mock_pds *m)
{
    if (m == NULL)
        return;
    close_all(m);
    router_free(m->router);
    population_free(m->pop);
    jwt_pubkey_free(m->pubkey);
    json_decref(m->tokens);
    json_decref(m->jtis);
    server_faults_windows_free(m);
    mock_reqlog_close(&m->log);
    free(m->host);
    free(m->client_id);
    free(m->token_url);
    free(m);
}
