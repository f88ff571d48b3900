#include "pdstrace/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <netinet/in.h>
#include <uv.h>

#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/redis_conn.h"

enum setting_type {
    T_STR,
    T_UINT,
    T_SIZE,
    T_DOUBLE,
    T_BOOL,
    T_ENUM,
};

/* One row per setting: the whole of §7 in one table, so parsing, environment names,
 * validation and --help cannot drift apart. */
struct setting {
    const char *key; /* "section.key" or "key" */
    enum setting_type type;
    size_t offset;
    size_t size; /* T_STR: capacity */
    const char *def;
    double min, max;            /* T_UINT, T_SIZE, T_DOUBLE */
    const char *const *choices; /* T_ENUM, NULL-terminated; stored as the index */
    const char *help;
};

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const pds_auths[] = {"none", "signed-jwt", NULL};

#define OFF(field) offsetof(struct config, field)
#define STR(key, field, def, help)                                                                 \
    {                                                                                              \
        key, T_STR, OFF(field), sizeof(((struct config *)0)->field), def, 0, 0, NULL, help         \
    }
#define NUM(key, type, field, def, min, max, help)                                                 \
    {                                                                                              \
        key, type, OFF(field), 0, def, min, max, NULL, help                                        \
    }
#define ENUM(key, field, def, choices, help)                                                       \
    {                                                                                              \
        key, T_ENUM, OFF(field), 0, def, 0, 0, choices, help                                       \
    }

static const struct setting settings[] = {
    STR("listen", listen, "127.0.0.1:8080", "address and port to serve on (host:port, [v6]:port)"),
    STR("api_keys_file", api_keys_file, "",
        "JSON file of API keys [{name, key_sha256, roles}]; empty: every protected route is 401"),
    STR("secret_file", secret_file, "",
        "required: a file of at least 32 bytes; the cache's keys are derived from it"),
    NUM("server.max_header_bytes", T_SIZE, server.max_header_bytes, "16384", 1024, 1048576,
        "request line + headers limit; larger requests get 431"),
    NUM("server.max_body_bytes", T_SIZE, server.max_body_bytes, "1048576", 1024, 1073741824,
        "JSON request body limit; larger bodies get 413"),
    NUM("server.header_timeout_ms", T_UINT, server.header_timeout_ms, "10000", 100, 600000,
        "time allowed to send a request's headers"),
    NUM("server.body_timeout_ms", T_UINT, server.body_timeout_ms, "30000", 100, 3600000,
        "time allowed to send a request's body"),
    NUM("server.idle_timeout_ms", T_UINT, server.idle_timeout_ms, "60000", 100, 3600000,
        "keep-alive connections idle this long are closed"),
    NUM("server.drain_ms", T_UINT, server.drain_ms, "10000", 0, 600000,
        "on SIGTERM/SIGINT, time allowed for in-flight requests before exit"),
    NUM("server.max_connections", T_UINT, server.max_connections, "10000", 1, 1000000,
        "open connections; at the limit the oldest idle keep-alive one is closed to admit a "
        "new one, which is refused only when none is idle"),
    NUM("server.max_connections_per_client", T_UINT, server.max_connections_per_client, "256", 1,
        1000000, "open connections from one client address, with the same rule"),
    STR("redis.url", redis.url, "redis://127.0.0.1:6379/0",
        "redis://[[user]:password@]host:port/db (host: an address or a DNS name)"),
    NUM("redis.connect_timeout_ms", T_UINT, redis.connect_timeout_ms, "1000", 10, 60000,
        "Redis connect deadline"),
    NUM("redis.command_timeout_ms", T_UINT, redis.command_timeout_ms, "1000", 10, 60000,
        "Redis command deadline; a late answer drops the connection"),
    STR("redis.key_prefix", redis.key_prefix, "pdstrace:", "prefix of every Redis key"),
    ENUM("log.level", log.level, "info", log_levels, "debug, info, warn or error"),
    STR("pds.base_url", pds.base_url,
        "https://sandbox.api.service.nhs.uk/personal-demographics/FHIR/R4", "PDS FHIR R4 base URL"),
    ENUM("pds.auth", pds.auth, "none", pds_auths,
         "none (sandbox) or signed-jwt (application-restricted)"),
    STR("pds.token_url", pds.token_url, "", "OAuth2 token URL (signed-jwt)"),
    STR("pds.client_id", pds.client_id, "", "API key of the application (signed-jwt)"),
    STR("pds.key_file", pds.key_file, "", "PEM RSA private key for the JWT (signed-jwt)"),
    STR("pds.kid", pds.kid, "", "key id of that key, as registered (signed-jwt)"),
    STR("pds.ods_code", pds.ods_code, "", "NHSD-End-User-Organisation-ODS header, when needed"),
    NUM("pds.rate", T_DOUBLE, pds.rate, "5", 0.1, 1000,
        "PDS requests per second for every instance on the same Redis, single traces and bulk rows "
        "together"),
    NUM("pds.concurrency", T_UINT, pds.concurrency, "10", 1, 1000, "PDS requests in flight"),
    NUM("pds.timeout_ms", T_UINT, pds.timeout_ms, "10000", 100, 120000, "PDS request timeout"),
    NUM("pds.max_attempts", T_UINT, pds.max_attempts, "4", 1, 20,
        "attempts per PDS request (retries of 429, 408, 5xx, connection errors)"),
    NUM("pds.deadline_ms", T_UINT, pds.deadline_ms, "30000", 100, 600000,
        "one trace's time with PDS, every step and retry included"),
    NUM("pds.max_queue", T_UINT, pds.max_queue, "1000", 1, 1000000,
        "PDS requests waiting for the rate limit; beyond it traces get 429"),
    STR("pds.ca_file", pds.ca_file, "", "PEM bundle of CAs to trust for PDS; empty: the system's"),
    STR("pds.client_cert_file", pds.client_cert_file, "",
        "PEM client certificate for mutual TLS with PDS"),
    STR("pds.client_key_file", pds.client_key_file, "", "PEM private key of that certificate"),
    NUM("pds.fuzzy", T_BOOL, pds.fuzzy, "false", 0, 0,
        "add a fuzzy search to the cascade (gives wrong people more often)"),
    NUM("pds.history", T_BOOL, pds.history, "true", 0, 0,
        "searches carry _history=true (previous names and addresses count); NHS England's "
        "public sandbox answers only searches without it"),
    NUM("match.accept_score", T_DOUBLE, match.accept_score, "0.95", 0, 1,
        "lowest score for outcome matched"),
    NUM("match.review_score", T_DOUBLE, match.review_score, "0.85", 0, 1,
        "lowest score for outcome potential_match"),
    NUM("cache.ttl_s", T_UINT, cache.ttl_s, "86400", 0, 31536000,
        "cache lifetime of matched results (0: no caching)"),
    NUM("cache.negative_ttl_s", T_UINT, cache.negative_ttl_s, "3600", 0, 31536000,
        "cache lifetime of no_match and multiple_matches"),
    STR("case.base_url", case_system.base_url, "", "case-management system base URL"),
    STR("case.token_file", case_system.token_file, "", "file holding the case system token"),
    NUM("case.max_age_s", T_UINT, case_system.max_age_s, "604800", 60, 31536000,
        "a write-back still failing after this long is dead-lettered"),
    NUM("case.timeout_ms", T_UINT, case_system.timeout_ms, "10000", 100, 600000,
        "one write-back delivery's time limit"),
    NUM("case.concurrency", T_UINT, case_system.concurrency, "4", 1, 256,
        "write-back deliveries in flight per instance"),
    NUM("case.retry_initial_ms", T_UINT, case_system.retry_initial_ms, "1000", 10, 3600000,
        "first retry delay of a failed write-back (doubling, with jitter)"),
    NUM("case.retry_max_ms", T_UINT, case_system.retry_max_ms, "300000", 10, 86400000,
        "ceiling on the retry delay of a write-back"),
    NUM("case.reclaim_idle_ms", T_UINT, case_system.reclaim_idle_ms, "60000", 1000, 86400000,
        "write-backs left pending this long by a stopped instance are taken over"),
    NUM("objections.max_staleness_ms", T_UINT, objections.max_staleness_ms, "2000", 100, 600000,
        "an objection takes effect on every instance within this; an instance that cannot "
        "confirm its copy is this current answers 503 objections_unavailable"),
    STR("case.ca_file", case_system.ca_file, "",
        "PEM bundle of CAs to trust for the case system; empty: the system's"),
    STR("case.client_cert_file", case_system.client_cert_file, "",
        "PEM client certificate for mutual TLS with the case system"),
    STR("case.client_key_file", case_system.client_key_file, "",
        "PEM private key of that certificate"),
    NUM("bulk.max_bytes", T_SIZE, bulk.max_bytes, "268435456", 1024, 68719476736.0,
        "POST /v1/bulk file size limit (streamed into Redis, never held whole); larger: 413"),
    NUM("bulk.concurrency", T_UINT, bulk.concurrency, "16", 1, 1024,
        "rows of HTTP bulk jobs traced at once per instance"),
    NUM("bulk.reclaim_idle_ms", T_UINT, bulk.reclaim_idle_ms, "30000", 1000, 86400000,
        "rows of HTTP bulk jobs left this long by a stopped instance are taken over"),
    NUM("bulk.retention_s", T_UINT, bulk.retention_s, "604800", 60, 31536000,
        "an HTTP bulk job and its result are deleted this long after it is done"),
};

static void env_name(const struct setting *s, char *out, size_t size)
{
    size_t n = (size_t)snprintf(out, size, "PDS_TRACE_");
    for (const char *p = s->key; *p != '\0' && n + 1 < size; p++)
        out[n++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

static int fail(char *err, size_t size, const struct setting *s, const char *why)
{
    char env[96];
    env_name(s, env, sizeof(env));
    snprintf(err, size, "%s (%s): %s", env, s->key, why);
    return ERR_CONFIG;
}

static int set_str(struct config *c, const struct setting *s, const char *v)
{
    if (strlen(v) >= s->size)
        return ERR_CONFIG;
    memcpy((char *)c + s->offset, v, strlen(v) + 1);
    return 0;
}

static int parse_number(const struct setting *s, const char *v, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !isfinite(d))
        return ERR_CONFIG;
    if (d < s->min || d > s->max)
        return ERR_CONFIG;
    if (s->type != T_DOUBLE && d != floor(d))
        return ERR_CONFIG;
    *out = d;
    return 0;
}

static int set_bool(struct config *c, const struct setting *s, const char *v)
{
    bool *p = (bool *)((char *)c + s->offset);
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
        *p = true;
    else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
        *p = false;
    else
        return ERR_CONFIG;
    return 0;
}

static int set_enum(struct config *c, const struct setting *s, const char *v)
{
    for (int i = 0; s->choices[i] != NULL; i++) {
        if (strcmp(v, s->choices[i]) == 0) {
            *(int *)((char *)c + s->offset) = i;
            return 0;
        }
    }
    return ERR_CONFIG;
}

/* Sets one setting from its text form; the JSON file's values arrive as text too. */
static int set_value(struct config *c, const struct setting *s, const char *v)
{
    double d = 0;
    switch (s->type) {
    case T_STR:
        return set_str(c, s, v);
    case T_BOOL:
        return set_bool(c, s, v);
    case T_ENUM:
        return set_enum(c, s, v);
    case T_UINT:
    case T_SIZE:
    case T_DOUBLE:
        if (parse_number(s, v, &d))
            return ERR_CONFIG;
        break;
    }
    char *p = (char *)c + s->offset;
    if (s->type == T_UINT)
        *(unsigned *)p = (unsigned)d;
    else if (s->type == T_SIZE)
        *(size_t *)p = (size_t)d;
    else
        *(double *)p = d;
    return 0;
}

static const char *why_invalid(const struct setting *s, char *buf, size_t size)
{
    switch (s->type) {
    case T_STR:
        snprintf(buf, size, "must be a string shorter than %zu bytes", s->size);
        break;
    case T_BOOL:
        snprintf(buf, size, "must be true or false");
        break;
    case T_ENUM:
        snprintf(buf, size, "must be one of: %s", s->help);
        break;
    case T_DOUBLE:
        snprintf(buf, size, "must be a number from %g to %g", s->min, s->max);
        break;
    case T_UINT:
    case T_SIZE:
        snprintf(buf, size, "must be a whole number from %.0f to %.0f", s->min, s->max);
        break;
    }
    return buf;
}

static int apply(struct config *c, const struct setting *s, const char *v, char *err, size_t n)
{
    char why[160];
    if (set_value(c, s, v) == 0)
        return 0;
    return fail(err, n, s, why_invalid(s, why, sizeof(why)));
}

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < ARRAY_SIZE(settings); i++)
        set_value(c, &settings[i], settings[i].def);
}

static const struct setting *find_setting(const char *key)
{
    for (size_t i = 0; i < ARRAY_SIZE(settings); i++)
        if (strcmp(settings[i].key, key) == 0)
            return &settings[i];
    return NULL;
}

/* Turns a JSON scalar into the text form set_value() takes. */
static int json_text(const json_t *v, char *out, size_t size)
{
    if (json_is_string(v))
        snprintf(out, size, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, size, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, size, "%.17g", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(out, size, "%s", json_is_true(v) ? "true" : "false");
    else
        return ERR_CONFIG;
    return 0;
}

static int apply_json_value(struct config *c, const char *key, const json_t *v, char *err, size_t n)
{
    char text[CONFIG_STR_MAX + 1];
    const struct setting *s = find_setting(key);
    if (s == NULL) {
        snprintf(err, n, "%s: unknown setting in the config file", key);
        return ERR_CONFIG;
    }
    if (json_text(v, text, sizeof(text)))
        return fail(err, n, s, "must be a string, number or boolean");
    return apply(c, s, text, err, n);
}

static int apply_json(struct config *c, json_t *root, char *err, size_t n)
{
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v)
    {
        char key[128];
        int e = 0;
        if (!json_is_object(v)) {
            e = apply_json_value(c, name, v, err, n);
        } else {
            const char *sub;
            json_t *sv;
            json_object_foreach(v, sub, sv)
            {
                snprintf(key, sizeof(key), "%s.%s", name, sub);
                e = apply_json_value(c, key, sv, err, n);
                if (e)
                    break;
            }
        }
        if (e)
            return e;
    }
    return 0;
}

static int load_file(struct config *c, const char *path, char *err, size_t n)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        snprintf(err, n, "--config %s: line %d: %s", path, je.line, je.text);
        return ERR_CONFIG;
    }
    int e = json_is_object(root) ? apply_json(c, root, err, n) : ERR_CONFIG;
    if (e && !json_is_object(root))
        snprintf(err, n, "--config %s: must hold a JSON object", path);
    json_decref(root);
    return e;
}

static int apply_env(struct config *c, char *err, size_t n)
{
    for (size_t i = 0; i < ARRAY_SIZE(settings); i++) {
        char name[96];
        env_name(&settings[i], name, sizeof(name));
        const char *v = getenv(name);
        if (v == NULL)
            continue;
        int e = apply(c, &settings[i], v, err, n);
        if (e)
            return e;
    }
    return 0;
}

static int require(const struct config *c, const char *key, char *err, size_t n)
{
    const struct setting *s = find_setting(key);
    if (((const char *)c + s->offset)[0] != '\0')
        return 0;
    return fail(err, n, s, "is required when pds.auth is signed-jwt");
}

static int check_url(const struct setting *s, const char *url, char *err, size_t n)
{
    if (url[0] == '\0' || strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0)
        return 0;
    return fail(err, n, s, "must be an http:// or https:// URL");
}

/* The listener binds what it is given, without a lookup: a host name is refused here
 * rather than failing later as a bind error. The IPv6 test is the listener's own. */
static int check_listen(const struct config *c, char *err, size_t n)
{
    char host[256];
    unsigned char addr[sizeof(struct in6_addr)];
    int port;
    const struct setting *s = find_setting("listen");
    if (config_parse_listen(c->listen, host, sizeof(host), &port))
        return fail(err, n, s, "must be host:port with a port 0-65535");
    if (uv_inet_pton(strchr(host, ':') != NULL ? AF_INET6 : AF_INET, host, addr) != 0)
        return fail(err, n, s,
                    "the host must be an IP address such as 0.0.0.0, 127.0.0.1 or [::] "
                    "(host names are not resolved)");
    return 0;
}

/* The parser the connection uses, so that whatever passes here also connects; the
 * message never repeats the URL, which may hold a password. */
static int check_redis_url(const struct config *c, char *err, size_t n)
{
    struct redis_url u;
    if (redis_url_parse(c->redis.url, &u) == 0)
        return 0;
    return fail(err, n, find_setting("redis.url"),
                "must be redis://[[user]:password@]host[:port][/db] with a port 1-65535 "
                "and a db 0-65535");
}

/* Checks that concern more than one setting, or a setting's shape beyond its type. */
static int check(const struct config *c, char *err, size_t n)
{
    int e = check_listen(c, err, n);
    if (!e)
        e = check_redis_url(c, err, n);
    if (e)
        return e;
    if (c->match.review_score > c->match.accept_score)
        return fail(err, n, find_setting("match.review_score"),
                    "must not be above match.accept_score");
    e = check_url(find_setting("pds.base_url"), c->pds.base_url, err, n);
    if (!e && c->pds.base_url[0] == '\0')
        e = fail(err, n, find_setting("pds.base_url"), "is required");
    if (!e)
        e = check_url(find_setting("case.base_url"), c->case_system.base_url, err, n);
    if (!e)
        e = check_url(find_setting("pds.token_url"), c->pds.token_url, err, n);
    if (e || c->pds.auth != CONFIG_PDS_AUTH_SIGNED_JWT)
        return e;
    static const char *const jwt_keys[] = {"pds.token_url", "pds.client_id", "pds.key_file",
                                           "pds.kid"};
    for (size_t i = 0; i < ARRAY_SIZE(jwt_keys) && !e; i++)
        e = require(c, jwt_keys[i], err, n);
    return e;
}

int config_load(struct config *c, const char *path, char *err, size_t err_size)
{
    config_defaults(c);
    int e = path != NULL ? load_file(c, path, err, err_size) : 0;
    if (!e)
        e = apply_env(c, err, err_size);
    if (!e)
        e = check(c, err, err_size);
    return e;
}

void config_print_help(FILE *f)
{
    fprintf(f, "Settings (JSON key / environment variable, default):\n");
    for (size_t i = 0; i < ARRAY_SIZE(settings); i++) {
        char env[96];
        env_name(&settings[i], env, sizeof(env));
        fprintf(f, "  %-26s %-34s [%s]\n      %s\n", settings[i].key, env, settings[i].def,
                settings[i].help);
    }
}

static int parse_port(const char *s, int *port)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > 65535)
        return ERR_INVALID_INPUT;
    *port = (int)v;
    return 0;
}

int config_parse_listen(const char *listen, char *host, size_t host_size, int *port)
{
    const char *colon, *start = listen, *end;
    if (listen[0] == '[') {
        end = strchr(listen, ']');
        if (end == NULL || end[1] != ':')
            return ERR_INVALID_INPUT;
        start = listen + 1;
        colon = end + 1;
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL)
            return ERR_INVALID_INPUT;
        end = colon;
    }
    size_t len = (size_t)(end - start);
    if (len == 0 || len >= host_size)
        return ERR_INVALID_INPUT;
    memcpy(host, start, len);
    host[len] = '\0';
    return parse_port(colon + 1, port);
}
