/* The mock PDS as a process over real HTTP: FHIR search and retrieve, the X-Request-ID
 * rules, the PDS error order, the signed-JWT token endpoint, fault injection through the
 * admin API, the request log, population files and shutdown. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http_util.h"
#include "pdstrace/crypto.h"
#include "pdstrace/jwt.h"
#include "population.h"
#include "proc.h"
#include "test_util.h"
#include "tls_util.h"

#define BASE        "/personal-demographics/FHIR/R4"
#define CLIENT_ID   "test-client"
#define FORM_HEADER "Content-Type: application/x-www-form-urlencoded"
#define JANE_SEARCH                                                                                \
    BASE "/Patient?family=Smith&given=Jane&birthdate=eq2010-10-22"                                 \
         "&address-postalcode=LS1%206AE&_max-results=1"

TestSuite(mock_pds_server, .timeout = 90);

static struct proc mock;
static char dir[64];
static char rid_line[64];

static void start_mock(const char *const extra[])
{
    const char *argv[40] = {
        PDS_BINARY_DIR "/mock-pds", "--port", "0", "--generate", "2000", "--seed", "7"};
    size_t n = 7;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 39; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    cr_assert_eq(proc_start(&mock, argv, NULL), 0, "mock-pds did not start; see %s", mock.log_path);
}

static void stop_mock(void)
{
    cr_assert_eq(proc_stop(&mock, SIGTERM, 10000), 0, "mock-pds did not exit 0 on SIGTERM; see %s",
                 mock.log_path);
    unlink(mock.log_path); /* kept when the test fails */
}

/* "X-Request-ID: <fresh UUID>" */
static const char *rid(void)
{
    char id[CRYPTO_UUID_SIZE];
    crypto_uuid4(id);
    snprintf(rid_line, sizeof(rid_line), "X-Request-ID: %s", id);
    return rid_line;
}

static long get(const char *path, const char *const *headers, struct http_reply *r)
{
    http_do(mock.port, "GET", path, headers, NULL, r);
    return r->status;
}

/* A GET with a fresh X-Request-ID and no other header; returns the status. */
static long fhir_status(const char *path)
{
    struct http_reply r;
    const char *h[] = {rid(), NULL};
    long status = get(path, h, &r);
    http_reply_free(&r);
    return status;
}

static json_t *body_json(const struct http_reply *r)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    cr_assert_not_null(j, "body is not JSON: %s", r->body);
    return j;
}

/* issue[0].details.coding[0].code of an OperationOutcome, or "". */
static const char *spine_code(json_t *oo)
{
    json_t *issue = json_array_get(json_object_get(oo, "issue"), 0);
    json_t *coding =
        json_array_get(json_object_get(json_object_get(issue, "details"), "coding"), 0);
    const char *code = json_string_value(json_object_get(coding, "code"));
    return code != NULL ? code : "";
}

static void assert_outcome(const char *path, const char *const *headers, long status,
                           const char *code)
{
    struct http_reply r;
    char ct[64];
    cr_assert_eq(get(path, headers, &r), status, "%s: %ld %s", path, r.status, r.body);
    json_t *j = body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "resourceType")), "OperationOutcome");
    cr_assert_str_eq(spine_code(j), code, "%s: %s", path, r.body);
    cr_assert_str_eq(http_reply_header(&r, "Content-Type", ct, sizeof(ct)),
                     "application/fhir+json");
    json_decref(j);
    http_reply_free(&r);
}

static void assert_search_outcome(const char *query, long status, const char *code)
{
    char path[512];
    const char *h[] = {rid(), NULL};
    snprintf(path, sizeof(path), BASE "/Patient%s", query);
    assert_outcome(path, h, status, code);
}

static void admin_put(const char *json)
{
    struct http_reply r;
    const char *h[] = {"Content-Type: application/json", NULL};
    cr_assert_eq(http_do(mock.port, "PUT", "/_admin/faults", h, json, &r), 0);
    cr_assert_eq(r.status, 200, "PUT /_admin/faults %s: %ld %s", json, r.status, r.body);
    http_reply_free(&r);
}

static json_t *admin_requests(void)
{
    struct http_reply r;
    cr_assert_eq(get("/_admin/requests", NULL, &r), 200);
    json_t *j = body_json(&r);
    http_reply_free(&r);
    return j;
}

/* ---- search and retrieve ---------------------------------------------------------- */

Test(mock_pds_server, search_finds_a_fixed_person_and_echoes_ids)
{
    struct http_reply r;
    char v[128];
    start_mock(NULL);
    const char *h[] = {"X-Request-ID: 60e0b220-8136-4ca5-ae46-1d97ef59d068",
                       "X-Correlation-ID: corr-42", NULL};
    cr_assert_eq(get(JANE_SEARCH, h, &r), 200, "%s", r.body);
    cr_assert_str_eq(http_reply_header(&r, "X-Request-ID", v, sizeof(v)),
                     "60e0b220-8136-4ca5-ae46-1d97ef59d068");
    cr_assert_str_eq(http_reply_header(&r, "X-Correlation-ID", v, sizeof(v)), "corr-42");
    cr_assert_str_eq(http_reply_header(&r, "Content-Type", v, sizeof(v)), "application/fhir+json");
    json_t *j = body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "resourceType")), "Bundle");
    cr_assert_str_eq(json_string_value(json_object_get(j, "type")), "searchset");
    cr_assert_eq(json_integer_value(json_object_get(j, "total")), 1);
    json_t *entry = json_array_get(json_object_get(j, "entry"), 0);
    json_t *res = json_object_get(entry, "resource");
    cr_assert_str_eq(json_string_value(json_object_get(res, "id")), "9000000009");
    cr_assert_float_eq(
        json_number_value(json_object_get(json_object_get(entry, "search"), "score")), 1.0, 1e-9);
    const char *full = json_string_value(json_object_get(entry, "fullUrl"));
    cr_assert(full != NULL && strstr(full, BASE "/Patient/9000000009") != NULL, "%s", full);
    json_decref(j);
    http_reply_free(&r);
    stop_mock();
}

Test(mock_pds_server, no_match_many_matches_and_plus_stays_plus)
{
    struct http_reply r;
    const char *h[] = {rid(), NULL};
    start_mock(NULL);
    cr_assert_eq(get(BASE "/Patient?family=Nobody&birthdate=eq2010-10-22&_max-results=1", h, &r),
                 200);
    json_t *j = body_json(&r);
    cr_assert_eq(json_integer_value(json_object_get(j, "total")), 0);
    cr_assert_null(json_object_get(j, "entry"), "a no-match Bundle has no entry key");
    json_decref(j);
    http_reply_free(&r);
    /* The O'Neill twins share family, birth date and postcode. */
    assert_search_outcome("?family=O%27Neill&birthdate=eq2015-06-30&_max-results=1", 200,
                          "TOO_MANY_MATCHES");
    /* "Mary Ann" is one given name; '+' in a PDS query is a plus sign, not a space. */
    const char *ok = BASE "/Patient?family=Cholmondeley&given=Mary%20Ann&birthdate=eq1938-04-02"
                          "&_max-results=1";
    const char *plus = BASE "/Patient?family=Cholmondeley&given=Mary+Ann&birthdate=eq1938-04-02"
                            "&_max-results=1";
    cr_assert_eq(get(ok, h, &r), 200);
    j = body_json(&r);
    cr_assert_eq(json_integer_value(json_object_get(j, "total")), 1, "%s", r.body);
    json_decref(j);
    http_reply_free(&r);
    cr_assert_eq(get(plus, h, &r), 200);
    j = body_json(&r);
    cr_assert_eq(json_integer_value(json_object_get(j, "total")), 0, "%s", r.body);
    json_decref(j);
    http_reply_free(&r);
    stop_mock();
}

Test(mock_pds_server, retrieve_sends_etag_and_follows_supersession)
{
    struct http_reply r;
    char v[64], want[64];
    const char *h[] = {rid(), NULL};
    start_mock(NULL);
    cr_assert_eq(get(BASE "/Patient/9000000009", h, &r), 200, "%s", r.body);
    json_t *j = body_json(&r);
    const char *version =
        json_string_value(json_object_get(json_object_get(j, "meta"), "versionId"));
    cr_assert_not_null(version);
    snprintf(want, sizeof(want), "W/\"%s\"", version);
    cr_assert_str_eq(http_reply_header(&r, "ETag", v, sizeof(v)), want);
    cr_assert_str_eq(json_string_value(json_object_get(j, "id")), "9000000009");
    json_decref(j);
    http_reply_free(&r);
    cr_assert_eq(get(BASE "/Patient/9000000025", h, &r), 200);
    j = body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "id")), "9000000041");
    json_decref(j);
    http_reply_free(&r);
    assert_outcome(BASE "/Patient/9000000068", h, 404, "INVALIDATED_RESOURCE");
    assert_outcome(BASE "/Patient/9000000000", h, 400, "INVALID_RESOURCE_ID");
    assert_outcome(BASE "/Patient/9434765870", h, 404, "RESOURCE_NOT_FOUND");
    stop_mock();
}

Test(mock_pds_server, x_request_id_is_required_and_must_be_a_uuid)
{
    start_mock(NULL);
    const char *none[] = {"X-Correlation-ID: c", NULL};
    const char *bad[] = {"X-Request-ID: not-a-uuid", NULL};
    const char *bad_hex[] = {"X-Request-ID: 60e0b220-8136-4ca5-ae46-1d97ef59d06g", NULL};
    assert_outcome(JANE_SEARCH, none, 400, "MISSING_VALUE");
    assert_outcome(JANE_SEARCH, bad, 400, "INVALID_VALUE");
    assert_outcome(JANE_SEARCH, bad_hex, 400, "INVALID_VALUE");
    assert_outcome(BASE "/Patient/9000000009", none, 400, "MISSING_VALUE");
    assert_outcome(BASE "/Patient/9000000009", bad, 400, "INVALID_VALUE");
    stop_mock();
}

Test(mock_pds_server, searches_fail_in_the_pds_error_order)
{
    start_mock(NULL);
    assert_search_outcome("", 400, "UNSUPPORTED_SERVICE");
    /* An unknown parameter wins over a bad date and a missing birth date. */
    assert_search_outcome("?family=Smith&birthdate=eq2010-13-45&colour=blue", 400,
                          "ADDITIONAL_PROPERTIES");
    /* A bad value (the gender) wins over the missing birth date. */
    assert_search_outcome("?family=Smith&gender=dog", 400, "INVALID_VALUE");
    assert_search_outcome("?family=Smith&given=Jane", 400, "MISSING_VALUE");
    assert_search_outcome("?given=Jane&birthdate=eq2010-10-22", 400, "INVALID_SEARCH_DATA");
    assert_search_outcome("?family=Smith&birthdate=eq2010-10-22&_max-results=2", 403,
                          "ACCESS_DENIED");
    assert_search_outcome("?family=Sm%zzith&birthdate=eq2010-10-22", 400, "INVALID_VALUE");
    stop_mock();
}

/* ---- signed-JWT token flow -------------------------------------------------------- */

struct keys {
    struct jwt_key *key;
    struct jwt_key *other; /* signs with a key the mock does not know */
    char pub_path[128];
};

static struct jwt_key *make_key(const char *name, char pub_path[128])
{
    char priv[128];
    struct jwt_key *k = NULL;
    snprintf(priv, sizeof(priv), "%s/%s-private.pem", dir, name);
    snprintf(pub_path, 128, "%s/%s-public.pem", dir, name);
    cr_assert_eq(tls_rsa_pair_write(priv, pub_path, 2048), 0);
    cr_assert_eq(jwt_key_load(&k, priv), 0);
    return k;
}

static void start_with_auth(struct keys *k, const char *ttl)
{
    char other_pub[128];
    memcpy(dir, "/tmp/mockpds-XXXXXX", sizeof("/tmp/mockpds-XXXXXX"));
    cr_assert_not_null(mkdtemp(dir));
    k->key = make_key("good", k->pub_path);
    k->other = make_key("other", other_pub);
    const char *extra[] = {"--jwt-public-key", k->pub_path, "--client-id", CLIENT_ID,
                           "--token-ttl",      ttl,         NULL};
    start_mock(extra);
}

static void stop_with_auth(struct keys *k)
{
    char cmd[160];
    jwt_key_free(k->key);
    jwt_key_free(k->other);
    stop_mock();
    const char *names[] = {"good-private.pem", "good-public.pem", "other-private.pem",
                           "other-public.pem"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(cmd, sizeof(cmd), "%s/%s", dir, names[i]);
        unlink(cmd);
    }
    rmdir(dir);
}

/* Posts an assertion; returns the status and, on 200, copies the access token. */
static long exchange(const char *jwt, char *token, size_t size, json_t **body)
{
    struct http_reply r;
    const char *h[] = {FORM_HEADER, NULL};
    size_t n = strlen(jwt) + 256;
    char *form = malloc(n);
    cr_assert_not_null(form);
    snprintf(form, n,
             "grant_type=client_credentials&client_assertion_type=urn%%3Aietf%%3Aparams%%3Aoauth"
             "%%3Aclient-assertion-type%%3Ajwt-bearer&client_assertion=%s",
             jwt);
    http_do(mock.port, "POST", "/oauth2/token", h, form, &r);
    free(form);
    json_t *j = body_json(&r);
    const char *t = json_string_value(json_object_get(j, "access_token"));
    if (token != NULL && t != NULL)
        snprintf(token, size, "%s", t);
    long status = r.status;
    http_reply_free(&r);
    if (body != NULL)
        *body = j;
    else
        json_decref(j);
    return status;
}

static char *assertion(const struct jwt_key *k, const char *client, const char *aud_path,
                       long long now, int ttl)
{
    char aud[128];
    snprintf(aud, sizeof(aud), "http://127.0.0.1:%d%s", mock.port, aud_path);
    char *jwt = jwt_client_assertion(k, "kid-1", client, aud, now, ttl);
    cr_assert_not_null(jwt);
    return jwt;
}

static void assert_refused(char *jwt, long status, const char *error, const char *why)
{
    json_t *j = NULL;
    cr_assert_eq(exchange(jwt, NULL, 0, &j), status, "%s: wrong status", why);
    cr_assert_str_eq(json_string_value(json_object_get(j, "error")), error, "%s", why);
    cr_assert(json_is_string(json_object_get(j, "error_description")), "%s", why);
    json_decref(j);
    free(jwt);
}

static long search_with_token(const char *token)
{
    struct http_reply r;
    char auth[128];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    const char *h[] = {rid(), auth, NULL};
    long status = get(JANE_SEARCH, h, &r);
    http_reply_free(&r);
    return status;
}

Test(mock_pds_server, token_exchange_grants_access_to_fhir_routes)
{
    struct keys k;
    char token[128] = "";
    json_t *body = NULL;
    start_with_auth(&k, "599");
    long long now = (long long)time(NULL);
    const char *h[] = {rid(), NULL};
    assert_outcome(JANE_SEARCH, h, 401, "ACCESS_DENIED");
    char *jwt = assertion(k.key, CLIENT_ID, "/oauth2/token", now, 300);
    cr_assert_eq(exchange(jwt, token, sizeof(token), &body), 200);
    free(jwt);
    cr_assert_str_eq(json_string_value(json_object_get(body, "expires_in")), "599");
    cr_assert_str_eq(json_string_value(json_object_get(body, "token_type")), "Bearer");
    const char *issued = json_string_value(json_object_get(body, "issued_at"));
    cr_assert(issued != NULL && strtoll(issued, NULL, 10) / 1000 >= now - 5, "issued_at %s",
              issued);
    json_decref(body);
    cr_assert_eq(search_with_token(token), 200);
    cr_assert_eq(search_with_token("not-a-token-we-issued"), 401);
    json_t *log = admin_requests();
    json_t *last = json_array_get(json_object_get(log, "requests"), 2);
    cr_assert_eq(json_object_get(last, "authorization"), json_true());
    cr_assert_str_eq(json_string_value(json_object_get(last, "client_id")), CLIENT_ID);
    json_decref(log);
    stop_with_auth(&k);
}

Test(mock_pds_server, token_endpoint_refuses_bad_assertions)
{
    struct keys k;
    start_with_auth(&k, "599");
    long long now = (long long)time(NULL);
    assert_refused(assertion(k.other, CLIENT_ID, "/oauth2/token", now, 60), 401, "invalid_client",
                   "bad signature");
    assert_refused(assertion(k.key, CLIENT_ID, "/oauth2/other", now, 60), 401, "invalid_client",
                   "wrong aud");
    assert_refused(assertion(k.key, "someone-else", "/oauth2/token", now, 60), 401,
                   "invalid_client", "wrong client id");
    assert_refused(assertion(k.key, CLIENT_ID, "/oauth2/token", now - 400, 300), 400,
                   "invalid_request", "expired");
    assert_refused(assertion(k.key, CLIENT_ID, "/oauth2/token", now + 120, 300), 400,
                   "invalid_request", "exp more than 5 minutes ahead");
    assert_refused(strdup("not.a-jwt"), 400, "invalid_request", "malformed");
    char *jwt = assertion(k.key, CLIENT_ID, "/oauth2/token", now, 60);
    cr_assert_eq(exchange(jwt, NULL, 0, NULL), 200);
    assert_refused(jwt, 400, "invalid_request", "reused jti");
    struct http_reply r;
    const char *h[] = {FORM_HEADER, NULL};
    http_do(mock.port, "POST", "/oauth2/token", h, "grant_type=password", &r);
    cr_assert_eq(r.status, 400);
    http_reply_free(&r);
    stop_with_auth(&k);
}

Test(mock_pds_server, issued_tokens_expire)
{
    struct keys k;
    char token[128] = "";
    start_with_auth(&k, "1");
    char *jwt = assertion(k.key, CLIENT_ID, "/oauth2/token", (long long)time(NULL), 60);
    cr_assert_eq(exchange(jwt, token, sizeof(token), NULL), 200);
    free(jwt);
    cr_assert_eq(search_with_token(token), 200);
    sleep_ms(1200);
    cr_assert_eq(search_with_token(token), 401, "a token outlived its expires_in");
    stop_with_auth(&k);
}

Test(mock_pds_server, token_endpoint_without_a_key_answers_400)
{
    struct http_reply r;
    const char *h[] = {FORM_HEADER, NULL};
    start_mock(NULL);
    http_do(mock.port, "POST", "/oauth2/token", h, "grant_type=client_credentials", &r);
    cr_assert_eq(r.status, 400);
    json_t *j = body_json(&r);
    cr_assert_str_eq(json_string_value(json_object_get(j, "error")), "invalid_request");
    json_decref(j);
    http_reply_free(&r);
    stop_mock();
}

/* ---- faults ------------------------------------------------------------------------ */

Test(mock_pds_server, fail_next_fails_exactly_n_requests_with_retry_after)
{
    struct http_reply r;
    char v[32];
    start_mock(NULL);
    admin_put("{\"fail_next\":2,\"fail_next_status\":503,\"retry_after\":5}");
    for (int i = 0; i < 2; i++) {
        const char *h[] = {rid(), NULL};
        cr_assert_eq(get(JANE_SEARCH, h, &r), 503, "request %d", i + 1);
        cr_assert_str_eq(http_reply_header(&r, "Retry-After", v, sizeof(v)), "5");
        json_t *j = body_json(&r);
        cr_assert_str_eq(spine_code(j), "SERVICE_UNAVAILABLE");
        json_decref(j);
        http_reply_free(&r);
    }
    cr_assert_eq(fhir_status(JANE_SEARCH), 200);
    cr_assert_eq(fhir_status(JANE_SEARCH), 200);
    stop_mock();
}

Test(mock_pds_server, rate_limit_answers_429_past_the_limit)
{
    struct http_reply r;
    char v[32];
    start_mock(NULL);
    admin_put("{\"rate_limit_per_min\":3}");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(fhir_status(JANE_SEARCH), 200, "request %d", i + 1);
    const char *h[] = {rid(), NULL};
    cr_assert_eq(get(JANE_SEARCH, h, &r), 429);
    cr_assert_null(http_reply_header(&r, "Retry-After", v, sizeof(v)),
                   "PDS sends no Retry-After with its rate limit");
    json_t *j = body_json(&r);
    cr_assert_str_eq(spine_code(j), "TOO_MANY_REQUESTS");
    json_decref(j);
    http_reply_free(&r);
    /* Setting the limit again starts the window afresh. */
    admin_put("{\"rate_limit_per_min\":3}");
    cr_assert_eq(fhir_status(JANE_SEARCH), 200);
    stop_mock();
}

/* Sends JANE_SEARCH on a raw connection and returns the socket: resets and hangs show as
 * what arrives on it, with no HTTP client in between to retry or time out. */
static int raw_search(unsigned recv_timeout_ms)
{
    const char req[] = "GET " JANE_SEARCH " HTTP/1.1\r\nHost: x\r\n\r\n";
    int fd = tcp_connect(mock.port, recv_timeout_ms);
    cr_assert_geq(fd, 0);
    tcp_send(fd, req, sizeof(req) - 1);
    return fd;
}

Test(mock_pds_server, reset_next_resets_the_connection)
{
    struct http_reply r;
    start_mock(NULL);
    admin_put("{\"reset_next\":1}");
    const char *h[] = {rid(), NULL};
    cr_assert_neq(http_do(mock.port, "GET", JANE_SEARCH, h, NULL, &r), 0,
                  "the client got an answer instead of a reset");
    cr_assert_eq(r.status, 0);
    http_reply_free(&r);
    cr_assert_eq(fhir_status(JANE_SEARCH), 200);
    /* A raw client sees the connection end with nothing received. */
    admin_put("{\"reset_next\":1}");
    int fd = raw_search(2000);
    char buf[256];
    cr_assert_leq(tcp_recv_all(fd, buf, sizeof(buf)), 0);
    close(fd);
    stop_mock();
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

Test(mock_pds_server, latency_delays_answers)
{
    start_mock(NULL);
    admin_put("{\"latency_ms\":200}");
    long long t0 = mono_ms();
    cr_assert_eq(fhir_status(JANE_SEARCH), 200);
    long long took = mono_ms() - t0;
    cr_assert_geq(took, 200, "answered after %lld ms", took);
    admin_put("{\"latency_ms\":0}");
    t0 = mono_ms();
    cr_assert_eq(fhir_status(JANE_SEARCH), 200);
    took = mono_ms() - t0;
    cr_assert_lt(took, 200, "still delayed: %lld ms", took);
    stop_mock();
}

Test(mock_pds_server, hang_next_never_answers_and_shutdown_still_exits_0)
{
    start_mock(NULL);
    admin_put("{\"hang_next\":1}");
    int fd = raw_search(500);
    char buf[256];
    cr_assert_eq(tcp_recv_all(fd, buf, sizeof(buf)), -1, "a hung request was answered: %s", buf);
    cr_assert_eq(fhir_status(JANE_SEARCH), 200, "the next request is served");
    stop_mock();
    close(fd);
}

Test(mock_pds_server, admin_api_refuses_bad_faults)
{
    struct http_reply r;
    const char *h[] = {"Content-Type: application/json", NULL};
    const char *bad[] = {"{\"fail_rate\":2}",
                         "{\"fail_status\":200}",
                         "{\"latency\":5}",
                         "{\"fail_next\":-1}",
                         "[1]",
                         "{\"reset_rate\":\"x\"}"};
    start_mock(NULL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http_do(mock.port, "PUT", "/_admin/faults", h, bad[i], &r);
        cr_assert_eq(r.status, 400, "%s: %ld", bad[i], r.status);
        http_reply_free(&r);
    }
    cr_assert_eq(get("/_admin/faults", NULL, &r), 200);
    json_t *j = body_json(&r);
    cr_assert_eq(json_integer_value(json_object_get(j, "fail_status")), 503);
    cr_assert_float_eq(json_number_value(json_object_get(j, "fail_rate")), 0.0, 1e-9);
    json_decref(j);
    http_reply_free(&r);
    stop_mock();
}

Test(mock_pds_server, fail_rate_flags_fail_about_that_share)
{
    const char *extra[] = {"--fail-rate", "0.5", "--fail-status", "429", "--seed-faults",
                           "9",           NULL};
    int fails = 0;
    start_mock(extra);
    for (int i = 0; i < 60; i++) {
        long s = fhir_status(JANE_SEARCH);
        cr_assert(s == 200 || s == 429, "status %ld", s);
        fails += s == 429;
    }
    cr_assert(fails >= 15 && fails <= 45, "%d of 60 failed at rate 0.5", fails);
    stop_mock();
}

/* ---- request log ------------------------------------------------------------------- */

Test(mock_pds_server, request_log_shows_headers_and_count)
{
    struct http_reply r;
    start_mock(NULL);
    fhir_status(JANE_SEARCH);
    cr_assert_eq(http_do(mock.port, "DELETE", "/_admin/requests", NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 204);
    http_reply_free(&r);
    const char *h[] = {"X-Request-ID: 11111111-2222-4333-8444-555555555555",
                       "X-Correlation-ID: trace-1", "NHSD-End-User-Organisation-ODS: Y12345",
                       "Authorization: Bearer whatever", NULL};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(get(JANE_SEARCH, h, &r), 200);
        http_reply_free(&r);
    }
    json_t *log = admin_requests();
    cr_assert_eq(json_integer_value(json_object_get(log, "count")), 3);
    json_t *list = json_object_get(log, "requests");
    cr_assert_eq(json_array_size(list), 3);
    json_t *e = json_array_get(list, 0);
    cr_assert_str_eq(json_string_value(json_object_get(e, "method")), "GET");
    cr_assert_str_eq(json_string_value(json_object_get(e, "path")), BASE "/Patient");
    cr_assert(strstr(json_string_value(json_object_get(e, "query")), "family=Smith") != NULL);
    cr_assert_str_eq(json_string_value(json_object_get(e, "x_request_id")),
                     "11111111-2222-4333-8444-555555555555");
    cr_assert_str_eq(json_string_value(json_object_get(e, "x_correlation_id")), "trace-1");
    cr_assert_str_eq(json_string_value(json_object_get(e, "ods")), "Y12345");
    cr_assert_eq(json_object_get(e, "authorization"), json_true());
    cr_assert_eq(json_integer_value(json_object_get(e, "status")), 200);
    json_decref(log);
    stop_mock();
}

/* ---- command line ------------------------------------------------------------------ */

Test(mock_pds_server, generate_out_writes_a_loadable_population)
{
    char path[128];
    struct proc p;
    memcpy(dir, "/tmp/mockpds-XXXXXX", sizeof("/tmp/mockpds-XXXXXX"));
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/population.json", dir);
    const char *argv[] = {
        PDS_BINARY_DIR "/mock-pds", "--generate", "50", "--seed", "3", "--out", path, NULL};
    cr_assert_eq(proc_spawn(&p, argv, NULL), 0);
    cr_assert_eq(proc_wait(&p, 10000), 0);
    struct population *pop = NULL;
    cr_assert_eq(population_load(&pop, path), 0);
    cr_assert_geq(population_size(pop), 50);
    cr_assert_not_null(population_find(pop, "9000000009"));
    population_free(pop);
    const char *serve[] = {PDS_BINARY_DIR "/mock-pds", "--port", "0", "--population", path, NULL};
    cr_assert_eq(proc_start(&mock, serve, NULL), 0);
    cr_assert_eq(fhir_status(JANE_SEARCH), 200);
    stop_mock();
    unlink(path);
    rmdir(dir);
}

Test(mock_pds_server, bad_arguments_exit_2_and_help_exits_0)
{
    struct proc p;
    const char *const cases[][6] = {
        {"--bogus", NULL},
        {"--port", "0", NULL},
        {"--port", "70000", "--generate", "5", NULL},
        {"--port", "0", "--generate", "5", "--fail-rate", "1.5"},
        {"--port", "0", "--population", "/nonexistent/population.json", NULL},
        {"--generate", "5", "--jwt-public-key", "/nonexistent.pem", "--client-id", "x"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *argv[8] = {PDS_BINARY_DIR "/mock-pds"};
        for (size_t j = 0; j < 6 && cases[i][j] != NULL; j++)
            argv[j + 1] = cases[i][j];
        cr_assert_eq(proc_spawn(&p, argv, NULL), 0);
        cr_assert_eq(proc_wait(&p, 10000), 2, "case %zu did not exit 2", i);
        cr_assert_eq(proc_log_count(&p, "mock-pds: "), 1, "case %zu: not one line", i);
        unlink(p.log_path);
    }
    const char *help[] = {PDS_BINARY_DIR "/mock-pds", "--help", NULL};
    cr_assert_eq(proc_spawn(&p, help, NULL), 0);
    cr_assert_eq(proc_wait(&p, 10000), 0);
    cr_assert_geq(proc_log_count(&p, "usage: mock-pds"), 1);
    unlink(p.log_path);
}
