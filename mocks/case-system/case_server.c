#include "case_system.h"

#include <stdlib.h>
#include <string.h>

#include "case_server_int.h"
#include "case_store.h"
#include "pdstrace/err.h"
#include "pdstrace/http_server.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/router.h"

#define REOPEN_RETRY_MS 100   /* next try when the port cannot be bound again at once */
#define REFUSE_DRAIN_MS 10000 /* beyond latency_ms, for answers under way when refusing */

char *case_server_error_text(const char *code, const char *field, const char *message)
{
    json_t *e = json_pack("{s:s,s:s}", "code", code, "message", message);
    if (e != NULL && field != NULL)
        json_object_set_new(e, "field", json_string(field));
    json_t *root = e != NULL ? json_pack("{s:o}", "error", e) : NULL;
    char *text = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}

void case_server_respond_json(struct http_exchange *x, int status, json_t *body)
{
    mock_respond_json(x, status, body, JSON_COMPACT | JSON_REAL_PRECISION(6));
}

/* ---- held-back answers ------------------------------------------------------------ */

static void respond_now(struct http_exchange *x, int status, char *body)
{
    if (body == NULL)
        http_exchange_respond_error(x, 500, "internal", NULL, "out of memory");
    else
        http_exchange_respond(x, status, CASE_JSON, body, strlen(body));
    free(body);
}

void case_server_answer_later(struct mock_case *m, struct http_exchange *x, int status, char *body)
{
    /* Out of memory for holding it back, the answer goes at once. */
    if (m->faults.latency_ms == 0 || m->stop.stopping || body == NULL ||
        !mock_later_add(&m->delayed, m->faults.latency_ms, x, status, CASE_JSON, body))
        respond_now(x, status, body);
}

/* ---- the listener ----------------------------------------------------------------- */

static int start_server(struct mock_case *m, int port)
{
    int err = mock_listen(&m->server, m->loop, m->host, port, m->router);
    if (!err)
        m->port = http_server_port(m->server);
    return err;
}

/* Closes the server (so every exchange is detached) and lets go of what waits. */
static void close_all(void *arg)
{
    struct mock_case *m = arg;
    mock_close_server(&m->server);
    mock_close_server(&m->draining);
    mock_later_flush(&m->delayed);
}

static void on_stop_drained(int status, void *arg)
{
    struct mock_case *m = arg;
    mock_stop_end(&m->stop, status, close_all, m);
}

static void on_refuse_drained(int status, void *arg)
{
    struct mock_case *m = arg;
    UNUSED(status);
    /* Cleared first (mock_close_server): freeing comes back here with UV_ECANCELED. */
    mock_close_server(&m->draining);
}

static void on_reopen(uv_timer_t *t)
{
    struct mock_case *m = container_of(t, struct mock_case, reopen);
    if (m->stop.stopping) {
        on_stop_drained(0, m);
        return;
    }
    int err = start_server(m, m->port);
    if (err) {
        log_msgf(LOG_LEVEL_WARN, NULL, "cannot listen on port %d again (%s): retrying", m->port,
                 err_name(err));
        uv_timer_start(&m->reopen, on_reopen, REOPEN_RETRY_MS, 0);
        return;
    }
    log_event(LOG_LEVEL_INFO, NULL, "accepting connections again",
              json_pack("{s:i}", "port", m->port));
}

void case_server_refuse(struct mock_case *m, unsigned ms)
{
    if (m->stop.stopping || m->server == NULL || ms == 0)
        return;
    /* What is left of an earlier refusal goes now: one draining server at a time. */
    mock_close_server(&m->draining);
    m->draining = m->server;
    m->server = NULL;
    /* Draining closes the listening socket at once and lets the answers under way go out,
     * the admin PUT's and delayed ones included, even after the new listener has opened. */
    http_server_drain(m->draining, m->faults.latency_ms + REFUSE_DRAIN_MS, on_refuse_drained, m);
    uv_update_time(m->loop);
    uv_timer_start(&m->reopen, on_reopen, ms, 0);
    log_event(LOG_LEVEL_INFO, NULL, "refusing connections", json_pack("{s:i}", "ms", ms));
}

void case_server_reset(struct mock_case *m)
{
    case_admin_faults_off(m);
    m->prng = m->seed;
    case_store_clear(m->store);
    m->stats = (struct case_stats){0};
    mock_reqlog_clear(&m->log);
}

/* ---- life cycle ------------------------------------------------------------------- */

void mock_case_config_init(struct mock_case_config *cfg)
{
    *cfg = (struct mock_case_config){
        .host = "127.0.0.1",
        .seed = 1,
        .faults = {.fail_status = 503},
    };
}

/* The admin API and the inspection route have no auth, so they exist only where nobody
 * else can reach them. */
static int add_routes(struct mock_case *m)
{
    bool admin = mock_is_loopback(m->host);
    int err = case_write_add_routes(m, admin);
    if (err || !admin)
        return err;
    err = case_admin_add_routes(m);
    return err ? err : mock_reqlog_add_routes(&m->log, m->router);
}

static int copy_config(struct mock_case *m, const struct mock_case_config *cfg)
{
    m->host = strdup(cfg->host != NULL ? cfg->host : "127.0.0.1");
    m->token = cfg->token != NULL ? strdup(cfg->token) : NULL;
    m->faults = cfg->faults;
    m->seed = cfg->seed;
    m->prng = cfg->seed;
    m->reject_cases = json_object();
    if (m->host == NULL || (cfg->token != NULL && m->token == NULL) || m->reject_cases == NULL)
        return UV_ENOMEM;
    return case_store_new(&m->store, CASE_STORE_MAX_KEYS);
}

int mock_case_new(struct mock_case **out, uv_loop_t *loop, const struct mock_case_config *cfg)
{
    *out = NULL;
    if (mock_case_faults_check(&cfg->faults, NULL) != 0)
        return ERR_CONFIG;
    struct mock_case *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return UV_ENOMEM;
    m->loop = loop;
    mock_later_init(&m->delayed, loop);
    uv_timer_init(loop, &m->reopen);
    m->reopen_init = true;
    int err = case_reqlog_init(&m->log);
    err = err ? err : copy_config(m, cfg);
    err = err ? err : router_new(&m->router);
    err = err ? err : add_routes(m);
    err = err ? err : start_server(m, cfg->port);
    if (err) {
        mock_case_free(m);
        return err;
    }
    *out = m;
    return 0;
}

int mock_case_port(const struct mock_case *m)
{
    return m->port;
}

void mock_case_stop(struct mock_case *m, unsigned deadline_ms, mock_case_stopped_cb *cb, void *arg)
{
    if (!mock_stop_begin(&m->stop, cb, arg))
        return;
    uv_timer_stop(&m->reopen);
    if (m->server != NULL) {
        http_server_drain(m->server, deadline_ms, on_stop_drained, m);
        return;
    }
    /* Refusing: nothing listens, so the stop completes from the timer, never from here. */
    uv_timer_start(&m->reopen, on_reopen, 0, 0);
}

static void on_mock_close(uv_handle_t *h)
{
    free(container_of((uv_timer_t *)h, struct mock_case, reopen));
}

void mock_case_free(struct mock_case *m)
{
    if (m == NULL)
        return;
    close_all(m);
    router_free(m->router);
    case_store_free(m->store);
    mock_reqlog_close(&m->log);
    json_decref(m->reject_cases);
    free(m->host);
    free(m->token);
    m->router = NULL;
    m->store = NULL;
    m->reject_cases = NULL;
    if (!m->reopen_init) {
        free(m);
        return;
    }
    uv_timer_stop(&m->reopen);
    uv_close((uv_handle_t *)&m->reopen, on_mock_close);
}
