#include "server_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/http_server.h"
#include "pdstrace/jwt.h"
#include "pdstrace/macros.h"
#include "pdstrace/router.h"

#define FORM_TYPE     "application/x-www-form-urlencoded"
#define ASSERTION_TYP "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#define STORE_MAX     100000 /* tokens or jtis remembered at once */

/* The NHS OAuth server's error shape. */
struct oauth_fail {
    int status;
    const char *error;
    const char *desc;
};

/* The stores map a key to its expiry; expired keys are dropped before each lookup. */
static void prune(json_t *store, long long now)
{
    const char *key;
    json_t *value;
    void *tmp;
    json_object_foreach_safe(store, tmp, key, value)
    {
        if (json_integer_value(value) <= now)
            json_object_del(store, key);
    }
}

const char *server_token_client(struct mock_pds *m, struct http_exchange *x)
{
    const char *h = http_exchange_header(x, "Authorization");
    if (m->pubkey == NULL || h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    json_t *exp = json_object_get(m->tokens, h + 7);
    if (exp == NULL || json_integer_value(exp) <= mock_wall_ms())
        return NULL;
    return m->client_id;
}

/* ---- checking the client assertion ---------------------------------------------------- */

static bool oauth_fail(struct oauth_fail *f, int status, const char *error, const char *desc)
{
    *f = (struct oauth_fail){status, error, desc};
    return false;
}

static bool bad_request(struct oauth_fail *f, const char *desc)
{
    return oauth_fail(f, 400, "invalid_request", desc);
}

static bool form_ok(struct http_exchange *x, struct server_kv *kv, struct oauth_fail *f)
{
    const char *ct = http_exchange_header(x, "Content-Type");
    size_t n = strlen(FORM_TYPE);
    if (ct == NULL || strncasecmp(ct, FORM_TYPE, n) != 0 || (ct[n] != '\0' && ct[n] != ';'))
        return bad_request(f, "Content-Type must be " FORM_TYPE);
    size_t len;
    const char *body = http_exchange_body(x, &len);
    if (server_kv_parse(kv, body, len, true) != 0)
        return bad_request(f, "Malformed form body");
    const char *grant = server_kv_get(kv, "grant_type");
    const char *type = server_kv_get(kv, "client_assertion_type");
    if (grant == NULL)
        return bad_request(f, "grant_type is missing");
    if (strcmp(grant, "client_credentials") != 0)
        return bad_request(f, "grant_type is invalid");
    if (type == NULL || strcmp(type, ASSERTION_TYP) != 0)
        return bad_request(f, "Missing or invalid client_assertion_type - must be '" ASSERTION_TYP
                              "'");
    if (server_kv_get(kv, "client_assertion") == NULL)
        return bad_request(f, "Missing client_assertion");
    return true;
}

static bool aud_ok(struct mock_pds *m, struct http_exchange *x, const char *aud)
{
    const char *host = http_exchange_header(x, "Host");
    char used[SERVER_HOST_MAX + 32];
    if (aud == NULL)
        return false;
    if (m->token_url != NULL && strcmp(aud, m->token_url) == 0)
        return true;
    if (host == NULL || strlen(host) > SERVER_HOST_MAX)
        return false;
    snprintf(used, sizeof(used), "http://%s/oauth2/token", host);
    return strcmp(aud, used) == 0;
}

static bool exp_ok(json_t *exp, long long now, struct oauth_fail *f)
{
    if (!json_is_integer(exp))
        return bad_request(f, "Missing exp claim in client_assertion JWT");
    json_int_t v = json_integer_value(exp);
    if (v <= now)
        return bad_request(f, "Invalid exp claim in client_assertion JWT - JWT has expired");
    if (v > now + JWT_MAX_TTL_S)
        return bad_request(f, "Invalid exp claim in client_assertion JWT - more than 5 "
                              "minutes in future");
    return true;
}

static bool claims_ok(struct mock_pds *m, struct http_exchange *x, json_t *claims,
                      struct oauth_fail *f)
{
    const char *iss = json_string_value(json_object_get(claims, "iss"));
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    const char *jti = json_string_value(json_object_get(claims, "jti"));
    long long now = mock_wall_ms() / 1000;
    if (iss == NULL || sub == NULL || strcmp(iss, sub) != 0 || strcmp(iss, m->client_id) != 0)
        return oauth_fail(f, 401, "invalid_client",
                          "Missing or non-matching 'iss'/'sub' claims in client_assertion JWT");
    if (!aud_ok(m, x, json_string_value(json_object_get(claims, "aud"))))
        return oauth_fail(f, 401, "invalid_client",
                          "Missing or non-matching 'aud' claim in client_assertion JWT");
    if (!exp_ok(json_object_get(claims, "exp"), now, f))
        return false;
    if (jti == NULL || jti[0] == '\0')
        return bad_request(f, "Missing jti claim in client_assertion JWT");
    prune(m->jtis, now);
    if (json_object_get(m->jtis, jti) != NULL)
        return bad_request(f, "Non-unique jti claim in client_assertion JWT");
    if (json_object_size(m->jtis) >= STORE_MAX)
        return oauth_fail(f, 503, "temporarily_unavailable", "Too many assertions in flight");
    json_object_set_new(m->jtis, jti,
                        json_integer(json_integer_value(json_object_get(claims, "exp"))));
    return true;
}

static bool assertion_ok(struct mock_pds *m, struct http_exchange *x, const char *jwt,
                         struct oauth_fail *f)
{
    json_t *header = NULL;
    json_t *claims = NULL;
    int err = jwt_verify(m->pubkey, jwt, &header, &claims);
    bool ok;
    if (err == ERR_PARSE)
        ok = bad_request(f, "Malformed JWT in client_assertion");
    else if (err)
        ok = oauth_fail(f, 401, "invalid_client",
                        "Unable to verify the client_assertion JWT (RS512 signature)");
    else if (!json_is_string(json_object_get(header, "kid")))
        ok = bad_request(f, "Missing 'kid' header in client_assertion JWT");
    else
        ok = claims_ok(m, x, claims, f);
    json_decref(header);
    json_decref(claims);
    return ok;
}

/* ---- issuing ------------------------------------------------------------------------------ */

/* A random opaque token, remembered with its expiry. Returns 0 or ERR_UNAVAILABLE. */
static int token_issue(struct mock_pds *m, char token[40])
{
    unsigned char raw[24];
    long long now = mock_wall_ms();
    if (crypto_random(raw, sizeof(raw)) != 0)
        return ERR_UNAVAILABLE;
    crypto_base64url(raw, sizeof(raw), token, 40);
    prune(m->tokens, now);
    if (json_object_size(m->tokens) >= STORE_MAX)
        return ERR_UNAVAILABLE;
    json_object_set_new(m->tokens, token, json_integer(now + (long long)m->token_ttl_s * 1000));
    return 0;
}

/* NHS answers expires_in and issued_at as strings. */
static json_t *token_body(struct mock_pds *m)
{
    char token[40], ttl[16], issued[24];
    if (token_issue(m, token) != 0)
        return NULL;
    snprintf(ttl, sizeof(ttl), "%u", m->token_ttl_s);
    snprintf(issued, sizeof(issued), "%lld", mock_wall_ms());
    return json_pack("{s:s, s:s, s:s, s:s}", "access_token", token, "expires_in", ttl, "token_type",
                     "Bearer", "issued_at", issued);
}

static void token_refuse(struct mock_pds *m, struct http_exchange *x, uint64_t seq,
                         const struct oauth_fail *f)
{
    server_reqlog_answered(&m->log, seq, x, f->status, NULL);
    server_respond_json(x, f->status,
                        json_pack("{s:s, s:s}", "error", f->error, "error_description", f->desc));
}

static void on_token(struct http_exchange *x, const struct route_params *p, void *arg)
{
    struct mock_pds *m = arg;
    struct oauth_fail f = {0};
    struct server_kv kv = {0};
    uint64_t seq = server_reqlog_record(&m->log, x, NULL);
    UNUSED(p);
    http_exchange_add_header(x, "Cache-Control", "no-store");
    if (m->pubkey == NULL)
        bad_request(&f, "mock-pds runs without --jwt-public-key: no tokens are issued");
    else if (form_ok(x, &kv, &f) &&
             assertion_ok(m, x, server_kv_get(&kv, "client_assertion"), &f)) {
        json_t *body = token_body(m);
        server_reqlog_set_client(&m->log, seq, m->client_id);
        if (body == NULL)
            oauth_fail(&f, 503, "temporarily_unavailable", "Cannot issue a token now");
        else {
            server_reqlog_answered(&m->log, seq, x, 200, NULL);
            server_respond_json(x, 200, body);
        }
    }
    server_kv_free(&kv);
    if (f.status != 0)
        token_refuse(m, x, seq, &f);
}

int server_token_add_routes(struct mock_pds *m)
{
    return router_add(m->router, "POST", "/oauth2/token", NULL, on_token, m);
}
