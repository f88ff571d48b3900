#include "pdstrace/token.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/http_client.h"
#include "pdstrace/jwt.h"
#include "pdstrace/list.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"

/* See docs/internals/pds_client.md ("Tokens") for the life of a token. */

#define DEFAULT_TIMEOUT_MS      10000u
#define DEFAULT_REFRESH_EARLY_S 60u
/* Under NHS's 5-minute ceiling, with a minute's room for our clock running ahead. */
#define ASSERTION_TTL_S    240
#define MAX_TOKEN_LEN      4096
#define MAX_RESPONSE_BYTES (64u * 1024u)
#define MAX_EXPIRES_IN_S   86400L
#define NS_PER_S           1000000000ull

static const char form_prefix[] =
    "grant_type=client_credentials"
    "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
    "&client_assertion=";

struct token_waiter {
    token_cb *cb;
    void *arg;
    struct list_node link; /* in waiters */
};

/* The argument of the exchange in flight; ts is cleared when the source goes first. */
struct token_exchange {
    struct token_source *ts;
};

struct token_source {
    uv_loop_t *loop;
    struct http_client *http;
    struct jwt_key *key;
    char *token_url;
    char *client_id;
    char *kid;
    char *tls_names[3]; /* ca, cert, key: copies behind tls */
    struct http_client_tls tls;
    unsigned timeout_ms;
    unsigned refresh_early_s;
    char *token;             /* the cached token, or NULL */
    uint64_t fresh_until_ns; /* uv_hrtime() before which token is used as it is */
    bool last_ok;
    struct list_node waiters;        /* FIFO of struct token_waiter */
    struct token_exchange *exchange; /* in flight, or NULL: never more than one */
    uv_timer_t timer;                /* runs serve() on the next loop turn */
    uv_timer_t warm;                 /* token_source_keep_warm */
    unsigned open_handles;           /* the two timers, until each is closed */
    bool closing;
};

static bool is_fresh(const struct token_source *ts)
{
    return ts->token != NULL && uv_hrtime() < ts->fresh_until_ns;
}

/* Answers every waiter queued so far. Waiters added by the callbacks wait for the next
 * turn. The token string stays valid meanwhile: it is only replaced by an exchange
 * completing, and freed in the close callback. */
static void deliver(struct token_source *ts, int status)
{
    struct list_node now, *node;
    list_init(&now);
    list_splice_tail(&now, &ts->waiters);
    while ((node = list_first(&now)) != NULL) {
        struct token_waiter *w = LIST_ENTRY(node, struct token_waiter, link);
        list_remove(node);
        w->cb(status, status == 0 ? ts->token : NULL, w->arg);
        free(w);
    }
}

/* ---- the exchange ---- */

/* ERR_UPSTREAM_TLS passes through: a refused certificate is not retried by anyone. */
static int map_transport(int status)
{
    if (status == ERR_UPSTREAM_TIMEOUT || status == ERR_UPSTREAM_TLS || status == UV_ECANCELED)
        return status;
    return ERR_UPSTREAM;
}

/* NHS sends expires_in as a string ("599"); a number is accepted too. */
static int read_expires_in(json_t *v, long *out)
{
    char *end = NULL;
    long n = -1;
    if (json_is_integer(v))
        n = (long)json_integer_value(v);
    else if (json_is_string(v) && json_string_value(v)[0] != '\0')
        n = strtol(json_string_value(v), &end, 10);
    if (end != NULL && *end != '\0')
        return ERR_PARSE;
    if (n <= 0 || n > MAX_EXPIRES_IN_S)
        return ERR_PARSE;
    *out = n;
    return 0;
}

/* The token goes into an Authorization header: printable ASCII without spaces only. */
static bool is_token(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f || n >= MAX_TOKEN_LEN)
            return false;
    }
    return n > 0;
}

static int parse_token(const struct http_client_response *res, char **token, long *expires_in)
{
    json_t *j = json_loadb(res->body, res->body_len, 0, NULL);
    json_t *type = json_object_get(j, "token_type");
    const char *tok = json_string_value(json_object_get(j, "access_token"));
    int err = tok != NULL && is_token(tok) ? 0 : ERR_PARSE;

    if (!err && type != NULL &&
        (!json_is_string(type) || strcasecmp(json_string_value(type), "Bearer") != 0))
        err = ERR_PARSE;
    if (!err)
        err = read_expires_in(json_object_get(j, "expires_in"), expires_in);
    if (!err && (*token = strdup(tok)) == NULL)
        err = UV_ENOMEM;
    json_decref(j);
    return err;
}

/* Tokens that live no longer than refresh_early_s are used for half their life instead,
 * rounded up: a token stale on arrival would send every user straight back for another. */
static void store_token(struct token_source *ts, char *token, long expires_in)
{
    long life = expires_in > (long)ts->refresh_early_s ? expires_in - (long)ts->refresh_early_s
                                                       : (expires_in + 1) / 2;
    free(ts->token);
    ts->token = token;
    ts->fresh_until_ns = uv_hrtime() + (uint64_t)life * NS_PER_S;
}

static int accept_response(struct token_source *ts, const struct http_client_response *res)
{
    char *token = NULL;
    long expires_in = 0;
    if (res->status >= 400 && res->status < 500)
        return ERR_UPSTREAM_REJECTED;
    if (res->status < 200 || res->status >= 300)
        return ERR_UPSTREAM;
    int err = parse_token(res, &token, &expires_in);
    if (err)
        return err == UV_ENOMEM ? err : ERR_UPSTREAM;
    store_token(ts, token, expires_in);
    log_event(LOG_LEVEL_INFO, NULL, "pds token refreshed",
              json_pack("{s:I}", "expires_in", (json_int_t)expires_in));
    return 0;
}

static void log_failure(int err, long http_status)
{
    log_event(
        LOG_LEVEL_WARN, NULL, "pds token exchange failed",
        json_pack("{s:s,s:I}", "error", err_name(err), "http_status", (json_int_t)http_status));
}

static void on_exchange(int status, const struct http_client_response *res, void *arg)
{
    struct token_exchange *x = arg;
    struct token_source *ts = x->ts;
    free(x);
    if (ts == NULL)
        return;
    ts->exchange = NULL;
    int err = status != 0 ? map_transport(status) : accept_response(ts, res);
    ts->last_ok = err == 0;
    if (err)
        log_failure(err, res != NULL ? res->status : 0);
    deliver(ts, err);
}

static int build_form(const struct token_source *ts, struct buf *body)
{
    char *jwt = jwt_client_assertion(ts->key, ts->kid, ts->client_id, ts->token_url,
                                     (long long)time(NULL), ASSERTION_TTL_S);
    if (jwt == NULL)
        return ERR_INTERNAL;
    /* base64url and '.' are unreserved characters: the JWT needs no form encoding. */
    int err = buf_append_str(body, form_prefix);
    if (!err)
        err = buf_append_str(body, jwt);
    free(jwt);
    return err;
}

static int start_exchange(struct token_source *ts)
{
    static const char *const headers[] = {"Content-Type: application/x-www-form-urlencoded",
                                          "Accept: application/json", NULL};
    struct buf body;
    buf_init(&body, sizeof(form_prefix) + JWT_MAX_LEN);
    struct token_exchange *x = calloc(1, sizeof(*x));
    int err = x != NULL ? build_form(ts, &body) : UV_ENOMEM;
    struct http_client_request req = {.method = "POST",
                                      .url = ts->token_url,
                                      .headers = headers,
                                      .body = buf_cstr(&body),
                                      .body_len = buf_len(&body),
                                      .timeout_ms = ts->timeout_ms,
                                      .max_response_bytes = MAX_RESPONSE_BYTES,
                                      .tls = &ts->tls};
    if (!err)
        err = http_client_request(ts->http, &req, on_exchange, x);
    buf_free(&body);
    if (err) {
        free(x);
        return err;
    }
    x->ts = ts;
    ts->exchange = x;
    return 0;
}

/* ---- serving waiters ---- */

static void serve(struct token_source *ts)
{
    if (list_is_empty(&ts->waiters))
        return;
    if (is_fresh(ts)) {
        deliver(ts, 0);
        return;
    }
    if (ts->exchange != NULL)
        return;
    int err = start_exchange(ts);
    if (err) {
        ts->last_ok = false;
        deliver(ts, err);
    }
}

static void on_timer(uv_timer_t *t)
{
    serve(container_of(t, struct token_source, timer));
}

int token_get(struct token_source *ts, token_cb *cb, void *arg)
{
    if (ts == NULL || cb == NULL)
        return ERR_INVALID_INPUT;
    if (ts->closing)
        return UV_ECANCELED;
    struct token_waiter *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return UV_ENOMEM;
    w->cb = cb;
    w->arg = arg;
    list_push_tail(&ts->waiters, &w->link);
    /* Even a cached token is handed over on the next turn, never inside this call. */
    if (ts->exchange == NULL)
        uv_timer_start(&ts->timer, on_timer, 0, 0);
    return 0;
}

const char *token_peek(struct token_source *ts)
{
    return ts != NULL && is_fresh(ts) ? ts->token : NULL;
}

void token_invalidate(struct token_source *ts, const char *token)
{
    /* Only marked stale, not freed: a callback may still be holding the string. */
    if (ts != NULL && token != NULL && ts->token != NULL && strcmp(ts->token, token) == 0)
        ts->fresh_until_ns = 0;
}

bool token_source_healthy(const struct token_source *ts)
{
    return ts != NULL && (is_fresh(ts) || ts->last_ok);
}

/* The exchange is started here rather than through token_get: nobody waits for its answer
 * but readiness, which reads last_ok. Callers that come meanwhile wait for it as they
 * would for one of their own. */
static void on_warm(uv_timer_t *t)
{
    struct token_source *ts = container_of(t, struct token_source, warm);
    if (ts->exchange != NULL || token_source_healthy(ts))
        return;
    int err = start_exchange(ts);
    if (err) {
        ts->last_ok = false;
        log_failure(err, 0);
    }
}

int token_source_keep_warm(struct token_source *ts, unsigned interval_ms)
{
    if (ts == NULL || interval_ms == 0)
        return ERR_INVALID_INPUT;
    if (ts->closing)
        return UV_ECANCELED;
    return uv_timer_start(&ts->warm, on_warm, 0, interval_ms);
}

/* ---- lifetime ---- */

static bool is_set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* The first setting that is missing, by its token_config name, or NULL. */
static const char *missing(const struct token_config *cfg)
{
    if (!is_set(cfg->token_url))
        return "token_url";
    if (!is_set(cfg->client_id))
        return "client_id";
    if (!is_set(cfg->kid))
        return "kid";
    return is_set(cfg->key_file) ? NULL : "key_file";
}

static int check_config(const struct token_config *cfg, struct token_config_error *why)
{
    if (cfg == NULL)
        return ERR_CONFIG;
    why->field = missing(cfg);
    why->reason = why->field != NULL ? "is required" : NULL;
    return why->field != NULL ? ERR_CONFIG : 0;
}

static void source_free(struct token_source *ts)
{
    if (ts == NULL)
        return;
    free(ts->token_url);
    free(ts->client_id);
    free(ts->kid);
    for (size_t i = 0; i < ARRAY_SIZE(ts->tls_names); i++)
        free(ts->tls_names[i]);
    free(ts->token);
    jwt_key_free(ts->key);
    free(ts);
}

/* NULL stays NULL; anything else is copied, so that *out is NULL only when s was. */
static int copy_opt(char **out, const char *s)
{
    *out = s != NULL ? strdup(s) : NULL;
    return s != NULL && *out == NULL ? UV_ENOMEM : 0;
}

static int copy_tls(struct token_source *ts, const struct http_client_tls *tls)
{
    int err = copy_opt(&ts->tls_names[0], tls->ca_file);
    if (!err)
        err = copy_opt(&ts->tls_names[1], tls->cert_file);
    if (!err)
        err = copy_opt(&ts->tls_names[2], tls->key_file);
    ts->tls = (struct http_client_tls){ts->tls_names[0], ts->tls_names[1], ts->tls_names[2]};
    return err;
}

static int copy_config(struct token_source *ts, const struct token_config *cfg,
                       struct token_config_error *why)
{
    ts->token_url = strdup(cfg->token_url);
    ts->client_id = strdup(cfg->client_id);
    ts->kid = strdup(cfg->kid);
    if (ts->token_url == NULL || ts->client_id == NULL || ts->kid == NULL)
        return UV_ENOMEM;
    ts->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    ts->refresh_early_s = cfg->refresh_early_s ? cfg->refresh_early_s : DEFAULT_REFRESH_EARLY_S;
    int err = copy_tls(ts, &cfg->tls);
    if (err)
        return err;
    err = jwt_key_load_why(&ts->key, cfg->key_file, &why->reason);
    why->field = err ? "key_file" : NULL;
    return err;
}

int token_source_new(struct token_source **out, uv_loop_t *loop, struct http_client *http,
                     const struct token_config *cfg, struct token_config_error *why)
{
    struct token_config_error spare;
    why = why != NULL ? why : &spare;
    *why = (struct token_config_error){NULL, NULL};
    if (out == NULL || loop == NULL || http == NULL)
        return ERR_INVALID_INPUT;
    int err = check_config(cfg, why);
    struct token_source *ts = err ? NULL : calloc(1, sizeof(*ts));
    if (!err)
        err = ts != NULL ? copy_config(ts, cfg, why) : UV_ENOMEM;
    if (err) {
        source_free(ts);
        return err;
    }
    ts->loop = loop;
    ts->http = http;
    list_init(&ts->waiters);
    uv_timer_init(loop, &ts->timer);
    uv_timer_init(loop, &ts->warm);
    ts->open_handles = 2;
    *out = ts;
    return 0;
}

/* The source goes with the last of its two timers. */
static void closed(struct token_source *ts)
{
    if (--ts->open_handles == 0)
        source_free(ts);
}

static void on_close_timer(uv_handle_t *h)
{
    closed(container_of((uv_timer_t *)h, struct token_source, timer));
}

static void on_close_warm(uv_handle_t *h)
{
    closed(container_of((uv_timer_t *)h, struct token_source, warm));
}

void token_source_free(struct token_source *ts)
{
    if (ts == NULL || ts->closing)
        return;
    ts->closing = true;
    if (ts->exchange != NULL) {
        ts->exchange->ts = NULL;
        ts->exchange = NULL;
    }
    uv_timer_stop(&ts->timer);
    uv_timer_stop(&ts->warm);
    deliver(ts, UV_ECANCELED);
    uv_close((uv_handle_t *)&ts->timer, on_close_timer);
    uv_close((uv_handle_t *)&ts->warm, on_close_warm);
}
