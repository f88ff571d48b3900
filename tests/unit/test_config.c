#include "pdstrace/config.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pdstrace/err.h"

/* Each criterion test runs in its own process, so setenv() here cannot leak into others. */
TestSuite(config, .timeout = 10);

static char errline[512];

static int load(const char *path)
{
    struct config c;
    return config_load(&c, path, errline, sizeof(errline));
}

static char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/pdscfgXXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

Test(config, defaults_match_design)
{
    struct config c;
    cr_assert_eq(config_load(&c, NULL, errline, sizeof(errline)), 0);
    cr_assert_str_eq(c.listen, "127.0.0.1:8080");
    cr_assert_str_eq(c.redis.url, "redis://127.0.0.1:6379/0");
    cr_assert_eq(c.server.max_header_bytes, 16384);
    cr_assert_eq(c.server.max_body_bytes, 1048576);
    cr_assert_eq(c.server.drain_ms, 10000);
    cr_assert_float_eq(c.pds.rate, 5.0, 1e-9);
    cr_assert_float_eq(c.match.accept_score, 0.95, 1e-9);
    cr_assert_float_eq(c.match.review_score, 0.85, 1e-9);
    cr_assert_eq(c.log.level, LOG_LEVEL_INFO);
}

Test(config, environment_overrides_file)
{
    char *path = write_tmp("{\"listen\": \"127.0.0.1:9000\", \"pds\": {\"rate\": 2, "
                           "\"fuzzy\": true}, \"match\": {\"accept_score\": 0.97}}");
    setenv("PDS_TRACE_LISTEN", "0.0.0.0:7000", 1);
    setenv("PDS_TRACE_MATCH_ACCEPT_SCORE", "0.99", 1);
    struct config c;
    cr_assert_eq(config_load(&c, path, errline, sizeof(errline)), 0, "%s", errline);
    cr_assert_str_eq(c.listen, "0.0.0.0:7000");
    cr_assert_float_eq(c.pds.rate, 2.0, 1e-9);
    cr_assert(c.pds.fuzzy);
    cr_assert_float_eq(c.match.accept_score, 0.99, 1e-9);
    unlink(path);
}

Test(config, bad_env_value_names_the_setting)
{
    setenv("PDS_TRACE_PDS_RATE", "fast", 1);
    cr_assert_eq(load(NULL), ERR_CONFIG);
    cr_assert(strstr(errline, "PDS_TRACE_PDS_RATE") != NULL, "%s", errline);
    cr_assert(strstr(errline, "pds.rate") != NULL);
    cr_assert(strchr(errline, '\n') == NULL);
}

Test(config, out_of_range_values_rejected)
{
    setenv("PDS_TRACE_SERVER_MAX_BODY_BYTES", "12", 1);
    cr_assert_eq(load(NULL), ERR_CONFIG);
    cr_assert(strstr(errline, "PDS_TRACE_SERVER_MAX_BODY_BYTES") != NULL, "%s", errline);
}

Test(config, unknown_file_key_rejected)
{
    char *path = write_tmp("{\"pds\": {\"rat\": 2}}");
    cr_assert_eq(load(path), ERR_CONFIG);
    cr_assert(strstr(errline, "pds.rat") != NULL, "%s", errline);
    unlink(path);
}

Test(config, malformed_file_rejected)
{
    char *path = write_tmp("{\"pds\": ");
    cr_assert_eq(load(path), ERR_CONFIG);
    cr_assert(strstr(errline, "--config") != NULL, "%s", errline);
    unlink(path);
}

Test(config, missing_file_rejected)
{
    cr_assert_eq(load("/nonexistent/pds-trace.json"), ERR_CONFIG);
}

Test(config, signed_jwt_requires_its_settings)
{
    setenv("PDS_TRACE_PDS_AUTH", "signed-jwt", 1);
    setenv("PDS_TRACE_PDS_TOKEN_URL", "http://127.0.0.1:1/oauth2/token", 1);
    cr_assert_eq(load(NULL), ERR_CONFIG);
    cr_assert(strstr(errline, "PDS_TRACE_PDS_CLIENT_ID") != NULL, "%s", errline);
}

Test(config, bad_enum_and_listen)
{
    setenv("PDS_TRACE_LOG_LEVEL", "loud", 1);
    cr_assert_eq(load(NULL), ERR_CONFIG);
    cr_assert(strstr(errline, "PDS_TRACE_LOG_LEVEL") != NULL);
    unsetenv("PDS_TRACE_LOG_LEVEL");
    setenv("PDS_TRACE_LISTEN", "localhost", 1);
    cr_assert_eq(load(NULL), ERR_CONFIG);
    cr_assert(strstr(errline, "PDS_TRACE_LISTEN") != NULL);
}

Test(config, review_above_accept_rejected)
{
    setenv("PDS_TRACE_MATCH_REVIEW_SCORE", "0.96", 1);
    cr_assert_eq(load(NULL), ERR_CONFIG);
    cr_assert(strstr(errline, "PDS_TRACE_MATCH_REVIEW_SCORE") != NULL);
}

Test(config, parses_listen_forms)
{
    char host[64];
    int port;
    cr_assert_eq(config_parse_listen("127.0.0.1:0", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 0);
    cr_assert_eq(config_parse_listen("[::1]:8080", host, sizeof(host), &port), 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(port, 8080);
    cr_assert_neq(config_parse_listen(":80", host, sizeof(host), &port), 0);
    cr_assert_neq(config_parse_listen("h:70000", host, sizeof(host), &port), 0);
}

Test(config, help_lists_every_env_name_of_design)
{
    static const char *const names[] = {
        "PDS_TRACE_LISTEN",           "PDS_TRACE_REDIS_URL",       "PDS_TRACE_PDS_BASE_URL",
        "PDS_TRACE_PDS_AUTH",         "PDS_TRACE_PDS_TOKEN_URL",   "PDS_TRACE_PDS_CLIENT_ID",
        "PDS_TRACE_PDS_KEY_FILE",     "PDS_TRACE_PDS_KID",         "PDS_TRACE_PDS_ODS_CODE",
        "PDS_TRACE_PDS_RATE",         "PDS_TRACE_PDS_CONCURRENCY", "PDS_TRACE_PDS_TIMEOUT_MS",
        "PDS_TRACE_PDS_MAX_ATTEMPTS", "PDS_TRACE_CASE_BASE_URL",   "PDS_TRACE_CASE_TOKEN_FILE",
        "PDS_TRACE_API_KEYS_FILE",    "PDS_TRACE_SECRET_FILE",     "PDS_TRACE_CACHE_TTL_S",
        "PDS_TRACE_LOG_LEVEL",        "PDS_TRACE_BULK_MAX_BYTES",  "PDS_TRACE_BULK_RECLAIM_IDLE_MS",
        "PDS_TRACE_BULK_RETENTION_S", "PDS_TRACE_BULK_CONCURRENCY"};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_print_help(f);
    fclose(f);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        cr_assert(strstr(text, names[i]) != NULL, "%s missing from help", names[i]);
    free(text);
}

Test(config, bulk_settings_have_their_defaults_and_limits)
{
    struct config c;
    cr_assert_eq(config_load(&c, NULL, errline, sizeof(errline)), 0, "%s", errline);
    cr_assert_eq(c.bulk.max_bytes, (size_t)256 * 1024 * 1024);
    cr_assert_eq(c.bulk.concurrency, 16);
    cr_assert_eq(c.bulk.reclaim_idle_ms, 30000);
    cr_assert_eq(c.bulk.retention_s, 604800);
    setenv("PDS_TRACE_BULK_RECLAIM_IDLE_MS", "1500", 1);
    setenv("PDS_TRACE_BULK_MAX_BYTES", "4096", 1);
    cr_assert_eq(config_load(&c, NULL, errline, sizeof(errline)), 0, "%s", errline);
    cr_assert_eq(c.bulk.reclaim_idle_ms, 1500);
    cr_assert_eq(c.bulk.max_bytes, 4096);
    setenv("PDS_TRACE_BULK_RETENTION_S", "0", 1);
    cr_assert_eq(load(NULL), ERR_CONFIG);
    cr_assert(strncmp(errline, "PDS_TRACE_BULK_RETENTION_S (bulk.retention_s)", 45) == 0, "%s",
              errline);
}

Test(config, example_file_documents_every_setting_and_loads)
{
    struct config c;
    cr_assert_eq(
        config_load(&c, PDS_SOURCE_DIR "/config/pds-trace.example.json", errline, sizeof(errline)),
        0, "%s", errline);
}

/* ---- redis.url and listen are checked at load time, naming the setting (exit 2) ---- */

struct bad_setting {
    char name[48];
    char value[96];
};

ParameterizedTestParameters(config, bad_redis_url_and_listen_named)
{
    static struct bad_setting cases[] = {
        {"PDS_TRACE_REDIS_URL", "redis://127.0.0.1:6379/65536"},
        {"PDS_TRACE_REDIS_URL", "redis://127.0.0.1:6379/abc"},
        {"PDS_TRACE_REDIS_URL", "redis://127.0.0.1:70000/0"},
        {"PDS_TRACE_REDIS_URL", "redis://127.0.0.1:0/0"},
        {"PDS_TRACE_REDIS_URL", "redis://127.0.0.1:port/0"},
        {"PDS_TRACE_REDIS_URL", "redis://alice@127.0.0.1/0"},
        {"PDS_TRACE_REDIS_URL", "http://127.0.0.1:6379"},
        {"PDS_TRACE_LISTEN", "localhost:8080"},
        {"PDS_TRACE_LISTEN", "[localhost]:8080"},
        {"PDS_TRACE_LISTEN", "300.1.1.1:8080"},
    };
    return cr_make_param_array(struct bad_setting, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad_setting *b, config, bad_redis_url_and_listen_named)
{
    setenv(b->name, b->value, 1);
    cr_assert_eq(load(NULL), ERR_CONFIG, "%s=%s accepted", b->name, b->value);
    cr_assert(strncmp(errline, b->name, strlen(b->name)) == 0, "%s", errline);
    cr_assert(
        strstr(errline, strcmp(b->name, "PDS_TRACE_LISTEN") == 0 ? "(listen)" : "(redis.url)"),
        "%s", errline);
    cr_assert(strchr(errline, '\n') == NULL);
}

Test(config, redis_url_with_user_and_password_accepted)
{
    static const char *const ok[] = {
        "redis://alice:s3cret@redis.internal:6380/2",
        "redis://:s3cret@10.0.0.5/0",
        "redis://[::1]:6379/65535",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        setenv("PDS_TRACE_REDIS_URL", ok[i], 1);
        cr_assert_eq(load(NULL), 0, "%s: %s", ok[i], errline);
    }
}

Test(config, redis_url_error_never_shows_the_password)
{
    setenv("PDS_TRACE_REDIS_URL", "redis://alice:hunter2@127.0.0.1:6379/99999", 1);
    cr_assert_eq(load(NULL), ERR_CONFIG);
    cr_assert(strstr(errline, "hunter2") == NULL, "%s", errline);
}

Test(config, numeric_listen_addresses_accepted)
{
    static const char *const ok[] = {"0.0.0.0:8080", "127.0.0.1:0", "[::]:8080", "[::1]:0"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        setenv("PDS_TRACE_LISTEN", ok[i], 1);
        cr_assert_eq(load(NULL), 0, "%s: %s", ok[i], errline);
    }
}
