#include "pdstrace/token.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pdstrace/err.h"
#include "pdstrace/http_client.h"
#include "pdstrace/http_server.h"
#include "pdstrace/jwt.h"
#include "pdstrace/macros.h"
#include "pdstrace/pds_client.h"
#include "test_util.h"
#include "tls_util.h"

/* A fake OAuth2 token endpoint (and a small PDS for the 401 tests) on the project's own
 * http_server, on the test's private loop. The endpoint verifies every client assertion
 * against the public half of a key pair made for the test, as NHS's would. */

#define CLIENT_ID "client-123"
#define KID       "test-kid-1"
#define MAX_EXCH  16
#define MAX_PDS   8

struct tstep {
    int status;
    char expires_in[16];
    bool numeric; /* send expires_in as a JSON number */
    unsigned delay_ms;
};

struct claims_seen {
    char iss[64], sub[64], aud[128], kid[64], alg[16], jti[64];
    long long exp, now;
};

struct delayed {
    uv_timer_t timer;
    struct http_exchange *x;
    int status;
    char body[512];
    bool waiting;
};

static struct fake {
    uv_loop_t loop;
    struct http_server *srv;
    struct http_client *http;
    struct token_source *ts;
    struct pds_client *pc;
    struct jwt_pubkey *pub;
    char dir[64], key_path[96], pub_path[96];
    char token_url[128];
    char pds_base[128];
    struct tstep steps[MAX_EXCH];
    unsigned nsteps;
    struct tstep dflt;
    unsigned nexch;
    char bad[256]; /* the first thing the endpoint found wrong */
    struct claims_seen seen[MAX_EXCH];
    struct delayed pend[MAX_EXCH];
    /* PDS side */
    bool reject_all; /* 401 to every token */
    char reject[32]; /* 401 to this bearer token */
    unsigned npds;
    char pds_auth[MAX_PDS][64];
    char pds_reqid[MAX_PDS][64];
} T;

/* ---- keys ---- */

static void write_keys(void)
{
    snprintf(T.dir, sizeof(T.dir), "/tmp/pds-token-XXXXXX");
    cr_assert_not_null(mkdtemp(T.dir));
    snprintf(T.key_path, sizeof(T.key_path), "%s/key.pem", T.dir);
    snprintf(T.pub_path, sizeof(T.pub_path), "%s/pub.pem", T.dir);
    EVP_PKEY *pkey = EVP_RSA_gen(2048);
    cr_assert_not_null(pkey);
    FILE *f = fopen(T.key_path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    f = fopen(T.pub_path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(PEM_write_PUBKEY(f, pkey), 1);
    fclose(f);
    EVP_PKEY_free(pkey);
    cr_assert_eq(jwt_pubkey_load(&T.pub, T.pub_path), 0);
}

static void remove_keys(void)
{
    jwt_pubkey_free(T.pub);
    unlink(T.key_path);
    unlink(T.pub_path);
    rmdir(T.dir);
}

/* ---- the token endpoint ---- */

static void set_bad(const char *why)
{
    if (T.bad[0] == '\0')
        snprintf(T.bad, sizeof(T.bad), "%s", why);
}

/* The value of name in an x-www-form-urlencoded body, copied raw (not decoded). */
static bool form_value(const char *body, size_t len, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp != NULL ? amp : end;
        if ((size_t)(stop - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            snprintf(out, size, "%.*s", (int)(stop - p - nlen - 1), p + nlen + 1);
            return true;
        }
        p = stop + 1;
    }
    return false;
}

static void copy_json_str(char *dst, size_t size, json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    snprintf(dst, size, "%s", s != NULL ? s : "");
}

static void check_assertion(const char *jwt, struct claims_seen *c)
{
    json_t *hdr = NULL, *claims = NULL;
    if (jwt_verify(T.pub, jwt, &hdr, &claims) != 0) {
        set_bad("assertion does not verify");
        return;
    }
    copy_json_str(c->alg, sizeof(c->alg), hdr, "alg");
    copy_json_str(c->kid, sizeof(c->kid), hdr, "kid");
    copy_json_str(c->iss, sizeof(c->iss), claims, "iss");
    copy_json_str(c->sub, sizeof(c->sub), claims, "sub");
    copy_json_str(c->aud, sizeof(c->aud), claims, "aud");
    copy_json_str(c->jti, sizeof(c->jti), claims, "jti");
    json_t *exp = json_object_get(claims, "exp");
    if (!json_is_integer(exp))
        set_bad("exp is not an integer");
    c->exp = json_integer_value(exp);
    c->now = (long long)time(NULL);
    json_decref(hdr);
    json_decref(claims);
}

static void check_form(struct http_exchange *x, struct claims_seen *c)
{
    static char jwt[JWT_MAX_LEN + 1];
    char v[128];
    size_t len;
    const char *body = http_exchange_body(x, &len);
    const char *ct = http_exchange_header(x, "Content-Type");

    if (strcmp(http_exchange_method(x), "POST") != 0)
        set_bad("not a POST");
    if (ct == NULL || strcmp(ct, "application/x-www-form-urlencoded") != 0)
        set_bad("wrong Content-Type");
    if (!form_value(body, len, "grant_type", v, sizeof(v)) || strcmp(v, "client_credentials") != 0)
        set_bad("grant_type");
    if (!form_value(body, len, "client_assertion_type", v, sizeof(v)) ||
        strcmp(v, "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer") != 0)
        set_bad("client_assertion_type");
    if (!form_value(body, len, "client_assertion", jwt, sizeof(jwt)))
        set_bad("no client_assertion");
    else
        check_assertion(jwt, c);
}

static void on_delayed(uv_timer_t *t)
{
    struct delayed *d = t->data;
    d->waiting = false;
    http_exchange_respond(d->x, d->status, "application/json", d->body, strlen(d->body));
}

static void token_endpoint(struct http_exchange *x)
{
    cr_assert_lt(T.nexch, MAX_EXCH);
    unsigned i = T.nexch++;
    const struct tstep *s = i < T.nsteps ? &T.steps[i] : &T.dflt;
    struct delayed *d = &T.pend[i];

    check_form(x, &T.seen[i]);
    d->x = x;
    d->status = T.bad[0] != '\0' ? 400 : s->status;
    if (d->status == 200)
        snprintf(d->body, sizeof(d->body),
                 s->numeric ? "{\"access_token\":\"tok-%u\",\"expires_in\":%s,"
                              "\"token_type\":\"Bearer\",\"issued_at\":\"1700000000000\"}"
                            : "{\"access_token\":\"tok-%u\",\"expires_in\":\"%s\","
                              "\"token_type\":\"Bearer\",\"issued_at\":\"1700000000000\"}",
                 i + 1, s->expires_in);
    else
        snprintf(d->body, sizeof(d->body), "{\"error\":\"invalid_request\"}");
    d->waiting = true;
    uv_timer_init(&T.loop, &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, on_delayed, s->delay_ms, 0);
}

/* ---- the PDS side ---- */

static void pds_endpoint(struct http_exchange *x)
{
    const char *auth = http_exchange_header(x, "Authorization");
    const char *rid = http_exchange_header(x, "X-Request-ID");
    char want[64];
    cr_assert_lt(T.npds, MAX_PDS);
    snprintf(T.pds_auth[T.npds], sizeof(T.pds_auth[0]), "%s", auth ? auth : "");
    snprintf(T.pds_reqid[T.npds], sizeof(T.pds_reqid[0]), "%s", rid ? rid : "");
    T.npds++;
    snprintf(want, sizeof(want), "Bearer %s", T.reject);
    if (T.reject_all || (auth != NULL && strcmp(auth, want) == 0)) {
        char *body = read_file(PDS_TEST_DATA "/pds/errors/ACCESS_DENIED.json", NULL);
        cr_assert_not_null(body);
        http_exchange_respond(x, 401, "application/fhir+json", body, strlen(body));
        free(body);
        return;
    }
    char *body = read_file(PDS_TEST_DATA "/pds/search/PatientSearch.json", NULL);
    cr_assert_not_null(body);
    http_exchange_respond(x, 200, "application/fhir+json", body, strlen(body));
    free(body);
}

static void handler(struct http_exchange *x, void *arg)
{
    UNUSED(arg);
    if (strcmp(http_exchange_path(x), "/oauth2/token") == 0)
        token_endpoint(x);
    else
        pds_endpoint(x);
}

/* ---- fixture ---- */

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(&T, 0, sizeof(T));
    T.dflt = (struct tstep){.status = 200, .expires_in = "599"};
}

static void teardown(void)
{
    curl_global_cleanup();
}

TestSuite(token, .timeout = 30, .init = setup, .fini = teardown);

static struct token_config token_cfg(void)
{
    struct token_config cfg = {
        .token_url = T.token_url,
        .client_id = CLIENT_ID,
        .kid = KID,
        .key_file = T.key_path,
        .timeout_ms = 3000,
        .refresh_early_s = 0,
    };
    return cfg;
}

static void start_server(void)
{
    struct http_server_config scfg = {
        .host = "127.0.0.1",
        .max_header_bytes = 16384,
        .max_body_bytes = 32768,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .idle_timeout_ms = 10000,
        .max_connections = 64,
        .handler = handler,
    };
    write_keys();
    cr_assert_eq(uv_loop_init(&T.loop), 0);
    cr_assert_eq(http_server_new(&T.srv, &T.loop, &scfg), 0);
    int port = http_server_port(T.srv);
    snprintf(T.token_url, sizeof(T.token_url), "http://127.0.0.1:%d/oauth2/token", port);
    snprintf(T.pds_base, sizeof(T.pds_base), "http://127.0.0.1:%d/FHIR/R4", port);
    cr_assert_eq(http_client_new(&T.http, &T.loop), 0);
}

static void start(struct token_config cfg)
{
    start_server();
    cr_assert_eq(token_source_new(&T.ts, &T.loop, T.http, &cfg, NULL), 0);
}

static void finish(void)
{
    pds_client_free(T.pc);
    token_source_free(T.ts);
    for (unsigned i = 0; i < MAX_EXCH; i++) {
        if (T.pend[i].waiting) {
            uv_timer_stop(&T.pend[i].timer);
            on_delayed(&T.pend[i].timer);
        }
    }
    http_server_free(T.srv);
    http_client_free(T.http);
    cr_assert_eq(close_loop(&T.loop), 0);
    remove_keys();
}

struct got {
    bool done;
    int calls;
    int status;
    char token[64];
    bool null_token;
};

static void on_token(int status, const char *token, void *arg)
{
    struct got *g = arg;
    g->calls++;
    g->done = true;
    g->status = status;
    g->null_token = token == NULL;
    snprintf(g->token, sizeof(g->token), "%s", token != NULL ? token : "");
}

static void get(struct got *g)
{
    memset(g, 0, sizeof(*g));
    cr_assert_eq(token_get(T.ts, on_token, g), 0);
    cr_assert_eq(g->calls, 0, "cb must never run inside token_get");
}

static void run_ms(unsigned ms)
{
    bool never = false;
    run_until(&T.loop, &never, ms);
}

/* Like run_until, but in 10 ms slices: run_until's UV_RUN_ONCE would sit in the poll
 * phase until its deadline when the flag is set from a timer callback (our tokens are
 * handed over from a 0 ms timer) and no socket wakes the loop. */
static bool wait_flag(const bool *flag, unsigned deadline_ms)
{
    for (unsigned waited = 0; !*flag && waited < deadline_ms; waited += 10) {
        bool tick = false;
        run_until(&T.loop, &tick, 10);
    }
    return *flag;
}

static void wait_got(struct got *g, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        cr_assert(wait_flag(&g[i].done, 5000), "token %u never arrived", i);
}

/* ---- tests ---- */

Test(token, assertion_is_rs512_with_the_nhs_claims)
{
    struct got g;
    start(token_cfg());
    get(&g);
    wait_got(&g, 1);
    cr_assert_str_empty(T.bad, "token endpoint: %s", T.bad);
    cr_assert_eq(g.status, 0, "status %s", err_name(g.status));
    cr_assert_str_eq(g.token, "tok-1");
    const struct claims_seen *c = &T.seen[0];
    cr_assert_str_eq(c->alg, "RS512");
    cr_assert_str_eq(c->kid, KID);
    cr_assert_str_eq(c->iss, CLIENT_ID);
    cr_assert_str_eq(c->sub, CLIENT_ID);
    cr_assert_str_eq(c->aud, T.token_url);
    cr_assert_eq(strlen(c->jti), 36, "jti %s", c->jti);
    cr_assert_gt(c->exp, c->now, "exp in the past");
    cr_assert_leq(c->exp, c->now + 300, "exp more than 5 minutes ahead");
    cr_assert(token_source_healthy(T.ts));
    finish();
}

Test(token, concurrent_gets_share_one_exchange)
{
    struct got g[5];
    start(token_cfg());
    T.dflt.delay_ms = 150;

    cr_assert_not(token_source_healthy(T.ts));
    cr_assert_null(token_peek(T.ts));
    for (unsigned i = 0; i < 3; i++)
        get(&g[i]);
    run_ms(50);
    cr_assert_eq(T.nexch, 1, "exchange not started");
    for (unsigned i = 3; i < 5; i++)
        get(&g[i]);
    wait_got(g, 5);
    cr_assert_str_empty(T.bad, "token endpoint: %s", T.bad);
    cr_assert_eq(T.nexch, 1, "%u exchanges for 5 concurrent gets", T.nexch);
    for (unsigned i = 0; i < 5; i++) {
        cr_assert_eq(g[i].calls, 1);
        cr_assert_eq(g[i].status, 0, "get %u: %s", i, err_name(g[i].status));
        cr_assert_str_eq(g[i].token, "tok-1");
    }
    cr_assert_str_eq(token_peek(T.ts), "tok-1");
    cr_assert(token_source_healthy(T.ts));

    /* A cached token still arrives on a later turn, and costs no exchange. */
    get(&g[0]);
    wait_got(g, 1);
    cr_assert_str_eq(g[0].token, "tok-1");
    cr_assert_eq(T.nexch, 1);
    finish();
}

Test(token, refreshes_shortly_before_expiry)
{
    struct got g;
    struct token_config cfg = token_cfg();
    cfg.refresh_early_s = 1;
    T.dflt.expires_in[0] = '2';
    T.dflt.expires_in[1] = '\0';
    start(cfg);

    get(&g);
    wait_got(&g, 1);
    cr_assert_str_eq(g.token, "tok-1");
    get(&g);
    wait_got(&g, 1);
    cr_assert_str_eq(g.token, "tok-1", "a fresh token was fetched again");
    cr_assert_eq(T.nexch, 1);
    run_ms(1150);
    cr_assert_null(token_peek(T.ts), "token kept past expires_in - refresh_early_s");
    get(&g);
    wait_got(&g, 1);
    cr_assert_str_eq(g.token, "tok-2");
    cr_assert_eq(T.nexch, 2);
    cr_assert_str_empty(T.bad, "token endpoint: %s", T.bad);
    cr_assert_str_neq(T.seen[0].jti, T.seen[1].jti, "jti reused");
    finish();
}

Test(token, invalidate_forces_a_new_exchange)
{
    struct got g;
    start(token_cfg());

    get(&g);
    wait_got(&g, 1);
    cr_assert_str_eq(g.token, "tok-1");
    token_invalidate(T.ts, "tok-1");
    cr_assert_null(token_peek(T.ts));
    get(&g);
    wait_got(&g, 1);
    cr_assert_str_eq(g.token, "tok-2");
    cr_assert_eq(T.nexch, 2);
    /* A late 401 for the old token must not throw the new one away. */
    token_invalidate(T.ts, "tok-1");
    cr_assert_str_eq(token_peek(T.ts), "tok-2");
    finish();
}

Test(token, accepts_expires_in_as_a_number)
{
    struct got g;
    T.dflt = (struct tstep){.status = 200, .expires_in = "599", .numeric = true};
    start(token_cfg());
    get(&g);
    wait_got(&g, 1);
    cr_assert_eq(g.status, 0, "status %s", err_name(g.status));
    cr_assert_str_eq(g.token, "tok-1");
    cr_assert_str_eq(token_peek(T.ts), "tok-1");
    finish();
}

Test(token, endpoint_401_rejects_every_waiter)
{
    struct got g[3];
    T.dflt = (struct tstep){.status = 401};
    start(token_cfg());
    for (unsigned i = 0; i < 3; i++)
        get(&g[i]);
    wait_got(g, 3);
    for (unsigned i = 0; i < 3; i++) {
        cr_assert_eq(g[i].calls, 1);
        cr_assert_eq(g[i].status, ERR_UPSTREAM_REJECTED, "get %u: %s", i, err_name(g[i].status));
        cr_assert(g[i].null_token);
    }
    cr_assert_eq(T.nexch, 1);
    cr_assert_not(token_source_healthy(T.ts));
    cr_assert_null(token_peek(T.ts));
    finish();
}

Test(token, endpoint_5xx_is_upstream_failure)
{
    struct got g;
    T.dflt = (struct tstep){.status = 503};
    start(token_cfg());
    get(&g);
    wait_got(&g, 1);
    cr_assert_eq(g.status, ERR_UPSTREAM, "status %s", err_name(g.status));
    cr_assert_not(token_source_healthy(T.ts));
    finish();
}

/* token_source_new refuses cfg with ERR_CONFIG, naming want_field and a reason that holds
 * want_reason. */
static void expect_refused(const struct token_config *cfg, const char *want_field,
                           const char *want_reason)
{
    struct token_source *ts = NULL;
    struct token_config_error why;
    cr_assert_eq(token_source_new(&ts, &T.loop, T.http, cfg, &why), ERR_CONFIG);
    cr_assert_null(ts);
    cr_assert_str_eq(why.field, want_field);
    cr_assert_not_null(why.reason);
    cr_assert(strstr(why.reason, want_reason) != NULL, "%s: %s", why.field, why.reason);
}

Test(token, bad_key_is_a_config_error_that_says_why)
{
    struct token_config cfg;
    char path[128], pub[128];
    start_server();
    cfg = token_cfg();
    cfg.key_file = T.pub_path; /* a public key cannot sign */
    expect_refused(&cfg, "key_file", "no PEM private key");
    cfg.key_file = "/nonexistent/key.pem";
    expect_refused(&cfg, "key_file", "does not exist");
    snprintf(path, sizeof(path), "%s/small.pem", T.dir);
    snprintf(pub, sizeof(pub), "%s/small-pub.pem", T.dir);
    cr_assert_eq(tls_rsa_pair_write(path, pub, 1024), 0);
    cfg.key_file = path;
    expect_refused(&cfg, "key_file", "fewer than 2048 bits");
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    cr_assert_eq(tls_pem_write(path, ec, true), 0);
    EVP_PKEY_free(ec);
    expect_refused(&cfg, "key_file", "not an RSA key");
    unlink(path);
    unlink(pub);
    finish();
}

Test(token, missing_setting_is_named)
{
    struct token_config cfg;
    start_server();
    cfg = token_cfg();
    cfg.client_id = "";
    expect_refused(&cfg, "client_id", "is required");
    cfg = token_cfg();
    cfg.kid = NULL;
    expect_refused(&cfg, "kid", "is required");
    cfg = token_cfg();
    cfg.token_url = "";
    expect_refused(&cfg, "token_url", "is required");
    cfg = token_cfg();
    cfg.key_file = "";
    expect_refused(&cfg, "key_file", "is required");
    finish();
}

/* While it has no token, a source kept warm asks the endpoint by itself, again and again
 * while that fails, and no more once it has one; freed, it asks no more. */
Test(token, keep_warm_fetches_until_healthy_and_stops_when_freed)
{
    T.dflt = (struct tstep){.status = 503};
    start(token_cfg());
    cr_assert_eq(token_source_keep_warm(T.ts, 0), ERR_INVALID_INPUT);
    cr_assert_eq(token_source_keep_warm(T.ts, 200), 0);
    run_ms(60);
    cr_assert_eq(T.nexch, 1, "%u exchanges before the first interval", T.nexch);
    run_ms(500);
    cr_assert_geq(T.nexch, 3, "only %u exchanges while failing", T.nexch);
    cr_assert_not(token_source_healthy(T.ts));

    T.dflt = (struct tstep){.status = 200, .expires_in = "599"};
    for (unsigned i = 0; i < 50 && token_peek(T.ts) == NULL; i++)
        run_ms(20);
    cr_assert_str_empty(T.bad, "token endpoint: %s", T.bad);
    cr_assert_not_null(token_peek(T.ts), "no token fetched");
    cr_assert(token_source_healthy(T.ts));
    unsigned n = T.nexch;
    run_ms(500);
    cr_assert_eq(T.nexch, n, "fetched again while healthy");

    token_invalidate(T.ts, token_peek(T.ts));
    T.dflt = (struct tstep){.status = 503};
    struct got g;
    get(&g);
    wait_got(&g, 1);
    cr_assert_not(token_source_healthy(T.ts));
    n = T.nexch;
    token_source_free(T.ts);
    T.ts = NULL;
    run_ms(500);
    cr_assert_eq(T.nexch, n, "a freed source fetched again");
    finish();
}

Test(token, free_cancels_waiters_once)
{
    struct got g[2];
    T.dflt.delay_ms = 500;
    start(token_cfg());
    get(&g[0]);
    get(&g[1]);
    run_ms(50);
    cr_assert_eq(T.nexch, 1);
    token_source_free(T.ts);
    T.ts = NULL;
    for (unsigned i = 0; i < 2; i++) {
        cr_assert_eq(g[i].calls, 1);
        cr_assert_eq(g[i].status, UV_ECANCELED);
    }
    finish();
    for (unsigned i = 0; i < 2; i++)
        cr_assert_eq(g[i].calls, 1, "waiter %u called again", i);
}

/* ---- with pds_client ---- */

struct answer {
    bool done;
    int calls;
    int status;
    struct pds_response res;
};

static void on_pds(int status, const struct pds_response *res, void *arg)
{
    struct answer *a = arg;
    a->calls++;
    a->done = true;
    a->status = status;
    if (res != NULL)
        a->res = *res;
}

static void start_pds(void)
{
    struct pds_client_config cfg = {
        .base_url = T.pds_base,
        .rate = 100,
        .concurrency = 4,
        .timeout_ms = 3000,
        .max_attempts = 3,
        .backoff_base_ms = 10,
    };
    start(token_cfg());
    cr_assert_eq(pds_client_new(&T.pc, &T.loop, T.http, T.ts, &cfg), 0);
}

Test(token, pds_401_refreshes_the_token_and_retries_once)
{
    struct answer a = {0};
    snprintf(T.reject, sizeof(T.reject), "tok-1");
    start_pds();

    cr_assert_eq(pds_client_search(T.pc, "family=Smith&birthdate=eq2010-10-22",
                                   &(struct pds_call){.correlation_id = "t-9"}, on_pds, &a),
                 0);
    cr_assert(wait_flag(&a.done, 5000));
    cr_assert_eq(a.status, 0, "status %s", err_name(a.status));
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(a.res.result.kind, FHIR_SEARCH_ONE);
    cr_assert_eq(T.npds, 2);
    cr_assert_str_eq(T.pds_auth[0], "Bearer tok-1");
    cr_assert_str_eq(T.pds_auth[1], "Bearer tok-2");
    cr_assert_str_eq(T.pds_reqid[0], T.pds_reqid[1]);
    cr_assert_eq(T.nexch, 2);
    cr_assert_str_empty(T.bad, "token endpoint: %s", T.bad);
    finish();
}

Test(token, pds_401_twice_is_rejected_after_one_retry)
{
    struct answer a = {0};
    T.reject_all = true;
    start_pds();

    cr_assert_eq(pds_client_search(T.pc, "family=Smith&birthdate=eq2010-10-22", NULL, on_pds, &a),
                 0);
    cr_assert(wait_flag(&a.done, 5000));
    run_ms(200);
    cr_assert_eq(a.status, ERR_UPSTREAM_REJECTED, "status %s", err_name(a.status));
    cr_assert_eq(a.res.http_status, 401);
    cr_assert_eq(T.npds, 2, "PDS saw %u requests", T.npds);
    cr_assert_eq(T.nexch, 2);
    finish();
}

Test(token, pds_fails_when_no_token_can_be_had)
{
    struct answer a[2] = {{0}};
    T.dflt = (struct tstep){.status = 500};
    start_pds();

    for (unsigned i = 0; i < 2; i++)
        cr_assert_eq(
            pds_client_search(T.pc, "family=Smith&birthdate=eq2010-10-22", NULL, on_pds, &a[i]), 0);
    cr_assert(wait_flag(&a[1].done, 5000));
    for (unsigned i = 0; i < 2; i++)
        cr_assert_eq(a[i].status, ERR_UPSTREAM, "search %u: %s", i, err_name(a[i].status));
    cr_assert_eq(T.npds, 0, "PDS called without a token");
    cr_assert_eq(T.nexch, 1);
    finish();
}
