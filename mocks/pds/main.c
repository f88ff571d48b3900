#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "population.h"
#include "sandbox.h"
#include "server.h"

/* mock-pds: the command line around server.c. Exit codes as pds-trace's: 0 done, 1 failed
 * while running, 2 bad usage or setting. */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

#define DRAIN_MS 5000

struct opts {
    struct mock_pds_config cfg;
    const char *population;
    const char *out;
    const char *log_level;
    const char *sandbox;
    unsigned long long generate;
    unsigned long long seed;
    bool has_generate;
    bool help;
};

enum opt_kind { K_STR, K_PORT, K_UINT, K_U64, K_RATE, K_STATUS, K_FLAG };

struct opt {
    const char *name;
    enum opt_kind kind;
    size_t offset;
};

#define OPT(name, kind, member)                                                                    \
    {                                                                                              \
        name, kind, offsetof(struct opts, member)                                                  \
    }

static const struct opt options[] = {
    OPT("--port", K_PORT, cfg.port),
    OPT("--host", K_STR, cfg.host),
    OPT("--population", K_STR, population),
    OPT("--generate", K_U64, generate),
    OPT("--seed", K_U64, seed),
    OPT("--out", K_STR, out),
    OPT("--jwt-public-key", K_STR, cfg.jwt_public_key),
    OPT("--client-id", K_STR, cfg.client_id),
    OPT("--token-url", K_STR, cfg.token_url),
    OPT("--token-ttl", K_UINT, cfg.token_ttl_s),
    OPT("--latency-ms", K_UINT, cfg.faults.latency_ms),
    OPT("--fail-rate", K_RATE, cfg.faults.fail_rate),
    OPT("--fail-status", K_STATUS, cfg.faults.fail_status),
    OPT("--retry-after", K_UINT, cfg.faults.retry_after),
    OPT("--reset-rate", K_RATE, cfg.faults.reset_rate),
    OPT("--rate-limit", K_UINT, cfg.faults.rate_limit_per_min),
    OPT("--seed-faults", K_U64, cfg.fault_seed),
    OPT("--log-level", K_STR, log_level),
    OPT("--sandbox", K_STR, sandbox),
    OPT("--help", K_FLAG, help),
};

static void usage(FILE *f)
{
    fprintf(f, "usage: mock-pds --generate N [--seed S] --out FILE\n"
               "       mock-pds [--port P] [--host ADDR] (--population FILE | --generate N "
               "[--seed S])\n"
               "                [--jwt-public-key PEM --client-id ID [--token-url URL] "
               "[--token-ttl S]]\n"
               "                [--latency-ms N] [--fail-rate F] [--fail-status 503|429|...]\n"
               "                [--retry-after S] [--reset-rate F] [--rate-limit N] "
               "[--seed-faults S]\n"
               "                [--log-level debug|info|warn|error] [--sandbox DIR]\n\n"
               "A synthetic PDS FHIR server (mocks/pds/README.md). --port 0 picks a free port,\n"
               "logged as {\"msg\":\"listening\",\"port\":N}. Defaults: host 127.0.0.1, seed 1,\n"
               "token TTL 599 s, fail statuses 503, no faults. --rate-limit counts requests per\n"
               "application over a rolling 60 s (0: off). The admin API (/_admin/faults,\n"
               "/_admin/requests) is served on loopback addresses only.\n");
}

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr, as every bad argument gets. */
static int bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mock-pds: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

static int parse_u64(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    *out = strtoull(s, &end, 10);
    return errno != 0 || *end != '\0' || *out > max ? -1 : 0;
}

static int parse_rate(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return errno != 0 || end == s || *end != '\0' || !(*out >= 0 && *out <= 1) ? -1 : 0;
}

/* Stores one option's value at its place in o. Returns 0 or -1 for a bad value. */
static int set_value(struct opts *o, const struct opt *opt, const char *v)
{
    void *at = (char *)o + opt->offset;
    unsigned long long n = 0;
    switch (opt->kind) {
    case K_STR:
        *(const char **)at = v;
        return 0;
    case K_RATE:
        return parse_rate(v, at);
    case K_U64:
        return parse_u64(v, ULLONG_MAX, at);
    case K_PORT:
    case K_STATUS:
        if (parse_u64(v, opt->kind == K_PORT ? 65535 : 599, &n) != 0)
            return -1;
        *(int *)at = (int)n;
        return 0;
    default:
        if (parse_u64(v, UINT_MAX, &n) != 0)
            return -1;
        *(unsigned *)at = (unsigned)n;
        return 0;
    }
}

static const struct opt *find_opt(const char *name)
{
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
        if (strcmp(options[i].name, name) == 0)
            return &options[i];
    return NULL;
}

static int parse_argv(struct opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const struct opt *opt = find_opt(argv[i]);
        if (opt == NULL)
            return bad("unknown argument %s", argv[i]);
        if (opt->kind == K_FLAG) {
            *(bool *)(void *)((char *)o + opt->offset) = true;
            continue;
        }
        if (i + 1 >= argc)
            return bad("%s needs a value", argv[i]);
        if (set_value(o, opt, argv[i + 1]) != 0)
            return bad("%s: bad value '%s'", argv[i], argv[i + 1]);
        o->has_generate |= opt->offset == offsetof(struct opts, generate);
        i++;
    }
    return 0;
}

static const char *flag_for_field(const char *field)
{
    static const char *const map[][2] = {
        {"latency_ms", "--latency-ms"},         {"fail_rate", "--fail-rate"},
        {"reset_rate", "--reset-rate"},         {"fail_status", "--fail-status"},
        {"rate_limit_per_min", "--rate-limit"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i][0], field) == 0)
            return map[i][1];
    return field;
}

static int check_opts(struct opts *o)
{
    enum log_level level;
    const char *field = NULL;
    if (o->help)
        return 0;
    if ((o->population != NULL) == o->has_generate)
        return bad("give exactly one of --population FILE and --generate N");
    if (o->out != NULL && !o->has_generate)
        return bad("--out needs --generate N");
    if (o->cfg.jwt_public_key != NULL && (o->cfg.client_id == NULL || !o->cfg.client_id[0]))
        return bad("--jwt-public-key needs --client-id ID");
    if (o->cfg.token_ttl_s == 0)
        return bad("--token-ttl must be at least 1");
    if (o->log_level != NULL && log_level_parse(o->log_level, &level) != 0)
        return bad("--log-level: bad value '%s'", o->log_level);
    if (o->log_level != NULL)
        log_set_level(level);
    if (mock_pds_faults_check(&o->cfg.faults, &field) != 0)
        return bad("%s: value out of range", flag_for_field(field));
    return 0;
}

static int load(const struct opts *o, struct population **pop)
{
    int err;
    if (o->has_generate)
        err = population_generate(pop, (size_t)o->generate, o->seed);
    else
        err = population_load(pop, o->population);
    if (err == 0)
        return 0;
    if (o->has_generate)
        fprintf(stderr, "mock-pds: --generate %llu: %s\n", o->generate, err_str(err));
    else
        fprintf(stderr, "mock-pds: --population %s: %s\n", o->population,
                err == ERR_PARSE ? "not a valid population file" : err_str(err));
    return EXIT_USAGE;
}

static int save(struct population *pop, const char *path)
{
    int err = population_save(pop, path);
    population_free(pop);
    if (err) {
        fprintf(stderr, "mock-pds: --out %s: cannot write the file\n", path);
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

/* ---- serving ----------------------------------------------------------------------- */

struct runner {
    uv_loop_t loop;
    struct mock_pds *mock;
    uv_signal_t sigterm, sigint;
};

static void close_signals(struct runner *r)
{
    if (!uv_is_closing((uv_handle_t *)&r->sigterm))
        uv_close((uv_handle_t *)&r->sigterm, NULL);
    if (!uv_is_closing((uv_handle_t *)&r->sigint))
        uv_close((uv_handle_t *)&r->sigint, NULL);
}

static void on_stopped(void *arg)
{
    struct runner *r = arg;
    log_msgf(LOG_LEVEL_INFO, NULL, "drained");
    close_signals(r);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct runner *r = s->data;
    log_msgf(LOG_LEVEL_INFO, NULL, "signal %d: draining", signum);
    mock_pds_stop(r->mock, DRAIN_MS, on_stopped, r);
}

static int start_signals(struct runner *r)
{
    uv_signal_init(&r->loop, &r->sigterm);
    uv_signal_init(&r->loop, &r->sigint);
    r->sigterm.data = r;
    r->sigint.data = r;
    int err = uv_signal_start(&r->sigterm, on_signal, SIGTERM);
    return err ? err : uv_signal_start(&r->sigint, on_signal, SIGINT);
}

static void report_start_error(const struct opts *o, int err)
{
    if (err == ERR_CONFIG)
        fprintf(stderr, "mock-pds: --jwt-public-key %s: not a readable RSA public key (PEM)\n",
                o->cfg.jwt_public_key);
    else
        fprintf(stderr, "mock-pds: cannot listen on %s:%d: %s\n", o->cfg.host, o->cfg.port,
                err_str(err));
}

/* Takes ownership of pop. */
static int serve(const struct opts *o, struct population *pop)
{
    struct runner r = {0};
    uv_loop_init(&r.loop);
    int err = start_signals(&r);
    if (err)
        population_free(pop);
    else
        err = mock_pds_new(&r.mock, &r.loop, pop, &o->cfg);
    if (err) {
        report_start_error(o, err);
        close_signals(&r);
    } else {
        log_event(LOG_LEVEL_INFO, NULL, "listening",
                  json_pack("{s:i}", "port", mock_pds_port(r.mock)));
    }
    uv_run(&r.loop, UV_RUN_DEFAULT);
    mock_pds_free(r.mock);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&r.loop) != 0)
        log_msgf(LOG_LEVEL_WARN, NULL, "handles left open at exit");
    if (err)
        return err == ERR_CONFIG ? EXIT_USAGE : EXIT_FAILED;
    log_msgf(LOG_LEVEL_INFO, NULL, "stopped");
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    struct opts o = {.seed = 1};
    mock_pds_config_init(&o.cfg);
    int rc = parse_argv(&o, argc, argv);
    rc = rc ? rc : check_opts(&o);
    if (rc)
        return rc;
    if (o.help) {
        usage(stdout);
        return EXIT_OK;
    }
    struct population *pop = NULL;
    if (load(&o, &pop) != 0)
        return EXIT_USAGE;
    if (o.out != NULL)
        return save(pop, o.out);
    struct sandbox *sb = NULL;
    if (o.sandbox != NULL && sandbox_load(&sb, o.sandbox) != 0) {
        fprintf(stderr, "mock-pds: --sandbox %s: not a directory of PDS example bodies\n",
                o.sandbox);
        population_free(pop);
        return EXIT_USAGE;
    }
    o.cfg.sandbox = sb;
    rc = serve(&o, pop);
    sandbox_free(sb);
    return rc;
}
