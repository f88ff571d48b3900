#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "mock_main.h"
#include "mock_opts.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "population.h"
#include "sample.h"
#include "sandbox.h"
#include "server.h"

/* mock-pds: the command line around server.c, with the option table and the serving loop
 * of mocks/common. Exit codes as pds-trace's (MOCK_EXIT_*). */

struct opts {
    struct mock_pds_config cfg;
    const char *population;
    const char *out;
    const char *log_level;
    const char *sandbox;
    const char *sample;
    uint64_t rows;
    uint64_t sample_seed;
    uint64_t generate;
    uint64_t seed;
    bool has_generate;
    bool has_rows;
    bool help;
};

#define OPT(name, kind, member)   MOCK_OPT(struct opts, name, MOCK_OPT_##kind, member)
#define FAULT(name, kind, member) MOCK_FAULT_OPT(struct opts, name, MOCK_OPT_##kind, member)

static const struct mock_opt options[] = {
    OPT("--port", PORT, cfg.port),
    OPT("--host", STR, cfg.host),
    OPT("--population", STR, population),
    OPT("--generate", U64, generate),
    OPT("--seed", U64, seed),
    OPT("--out", STR, out),
    OPT("--sample", STR, sample),
    OPT("--rows", U64, rows),
    OPT("--sample-seed", U64, sample_seed),
    OPT("--jwt-public-key", STR, cfg.jwt_public_key),
    OPT("--client-id", STR, cfg.client_id),
    OPT("--token-url", STR, cfg.token_url),
    OPT("--token-ttl", UINT, cfg.token_ttl_s),
    FAULT("--latency-ms", UINT, latency_ms),
    FAULT("--fail-rate", RATE, fail_rate),
    FAULT("--fail-status", STATUS, fail_status),
    FAULT("--retry-after", UINT, retry_after),
    FAULT("--reset-rate", RATE, reset_rate),
    FAULT("--rate-limit", UINT, rate_limit_per_min),
    FAULT("--rate-window-ms", UINT, rate_window_ms),
    OPT("--seed-faults", U64, cfg.fault_seed),
    OPT("--log-level", STR, log_level),
    OPT("--sandbox", STR, sandbox),
    OPT("--help", FLAG, help),
};

/* --generate 0 is a value given too, so whether it was given is kept apart. */
static void seen(void *opts, const struct mock_opt *opt)
{
    struct opts *o = opts;
    o->has_generate |= opt->offset == offsetof(struct opts, generate);
    o->has_rows |= opt->offset == offsetof(struct opts, rows);
}

static const struct mock_cli cli = {"mock-pds", options, ARRAY_SIZE(options), seen};

static void usage(FILE *f)
{
    fprintf(f, "usage: mock-pds --generate N [--seed S] --out FILE\n"
               "       mock-pds (--generate N | --population FILE) [--seed S]\n"
               "                --sample simple|pds-mesh [--rows R] [--sample-seed K] --out FILE\n"
               "       mock-pds [--port P] [--host ADDR] (--population FILE | --generate N "
               "[--seed S])\n"
               "                [--jwt-public-key PEM --client-id ID [--token-url URL] "
               "[--token-ttl S]]\n"
               "                [--latency-ms N] [--fail-rate F] [--fail-status 503|429|...]\n"
               "                [--retry-after S] [--reset-rate F] [--rate-limit N] "
               "[--rate-window-ms MS]\n"
               "                [--seed-faults S]\n"
               "                [--log-level debug|info|warn|error] [--sandbox DIR]\n\n"
               "A synthetic PDS FHIR server (mocks/pds/README.md). --port 0 picks a free port,\n"
               "logged as {\"msg\":\"listening\",\"port\":N}. Defaults: host 127.0.0.1, seed 1,\n"
               "token TTL 599 s, fail statuses 503, no faults. --rate-limit counts requests per\n"
               "application over a rolling 60 s (0: off; --rate-window-ms changes the window).\n"
               "The admin API (/_admin/faults, /_admin/requests) is served on loopback\n"
               "addresses only. --sample writes a bulk file of R rows (default 1000) drawn\n"
               "from the population (another one for each --sample-seed) and exits.\n");
}

static int check_sample(const struct opts *o)
{
    enum sample_format format;

    if (o->sample == NULL)
        return o->has_rows ? mock_opts_bad(&cli, "--rows needs --sample FORMAT") : 0;
    if (sample_format_parse(o->sample, &format) != 0)
        return mock_opts_bad(&cli, "--sample must be simple or pds-mesh");
    if (o->out == NULL)
        return mock_opts_bad(&cli, "--sample needs --out FILE");
    return 0;
}

static int check_opts(struct opts *o)
{
    const char *field = NULL;
    if (o->help)
        return 0;
    if ((o->population != NULL) == o->has_generate)
        return mock_opts_bad(&cli, "give exactly one of --population FILE and --generate N");
    if (check_sample(o) != 0)
        return MOCK_EXIT_USAGE;
    if (o->out != NULL && !o->has_generate && o->sample == NULL)
        return mock_opts_bad(&cli, "--out needs --generate N or --sample FORMAT");
    if (o->cfg.jwt_public_key != NULL && (o->cfg.client_id == NULL || !o->cfg.client_id[0]))
        return mock_opts_bad(&cli, "--jwt-public-key needs --client-id ID");
    if (o->cfg.token_ttl_s == 0)
        return mock_opts_bad(&cli, "--token-ttl must be at least 1");
    if (mock_opts_log_level(&cli, o->log_level) != 0)
        return MOCK_EXIT_USAGE;
    if (mock_pds_faults_check(&o->cfg.faults, &field) != 0)
        return mock_opts_out_of_range(&cli, field);
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
        fprintf(stderr, "mock-pds: --generate %llu: %s\n", (unsigned long long)o->generate,
                err_str(err));
    else
        fprintf(stderr, "mock-pds: --population %s: %s\n", o->population,
                err == ERR_PARSE ? "not a valid population file" : err_str(err));
    return MOCK_EXIT_USAGE;
}

static int save(struct population *pop, const char *path)
{
    int err = population_save(pop, path);
    population_free(pop);
    if (err) {
        fprintf(stderr, "mock-pds: --out %s: cannot write the file\n", path);
        return MOCK_EXIT_FAILED;
    }
    return MOCK_EXIT_OK;
}

/* Writes the sample bulk file and frees pop. */
static int save_sample(struct population *pop, const struct opts *o)
{
    struct sample_opts so = {SAMPLE_SIMPLE, o->has_rows ? o->rows : 1000, o->seed, o->sample_seed};
    int err = sample_format_parse(o->sample, &so.format);

    if (err == 0)
        err = sample_save(pop, &so, o->out);
    population_free(pop);
    if (err) {
        fprintf(stderr, "mock-pds: --out %s: cannot write the sample: %s\n", o->out, err_str(err));
        return MOCK_EXIT_FAILED;
    }
    return MOCK_EXIT_OK;
}

/* ---- serving ----------------------------------------------------------------------- */

/* What serving needs: the options, and the population until the mock has taken it. */
struct serve_ctx {
    const struct opts *o;
    struct population *pop;
};

static int start(void **mock, uv_loop_t *loop, void *arg)
{
    struct serve_ctx *c = arg;
    struct mock_pds *m = NULL;
    struct population *pop = c->pop;
    c->pop = NULL;
    int err = mock_pds_new(&m, loop, pop, &c->o->cfg);
    *mock = m;
    return err;
}

static int port(const void *mock)
{
    return mock_pds_port(mock);
}

static void stop(void *mock, unsigned deadline_ms, mock_stopped_fn *cb, void *cb_arg)
{
    mock_pds_stop(mock, deadline_ms, cb, cb_arg);
}

static void free_mock(void *mock)
{
    mock_pds_free(mock);
}

static void report_start_error(int err, void *arg)
{
    const struct opts *o = ((const struct serve_ctx *)arg)->o;
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
    static const struct mock_main_ops ops = {start, port, stop, free_mock, report_start_error};
    struct serve_ctx c = {o, pop};
    int err = mock_main_serve(&ops, &c);
    /* Still here when the signals could not be set up, before the mock took it. */
    population_free(c.pop);
    if (err)
        return err == ERR_CONFIG ? MOCK_EXIT_USAGE : MOCK_EXIT_FAILED;
    return MOCK_EXIT_OK;
}

int main(int argc, char **argv)
{
    struct opts o = {.seed = 1};
    mock_pds_config_init(&o.cfg);
    int rc = mock_opts_parse(&cli, &o, argc, argv);
    rc = rc ? rc : check_opts(&o);
    if (rc)
        return rc;
    if (o.help) {
        usage(stdout);
        return MOCK_EXIT_OK;
    }
    struct population *pop = NULL;
    if (load(&o, &pop) != 0)
        return MOCK_EXIT_USAGE;
    if (o.sample != NULL)
        return save_sample(pop, &o);
    if (o.out != NULL)
        return save(pop, o.out);
    struct sandbox *sb = NULL;
    if (o.sandbox != NULL && sandbox_load(&sb, o.sandbox) != 0) {
        fprintf(stderr, "mock-pds: --sandbox %s: not a directory of PDS example bodies\n",
                o.sandbox);
        population_free(pop);
        return MOCK_EXIT_USAGE;
    }
    o.cfg.sandbox = sb;
    rc = serve(&o, pop);
    sandbox_free(sb);
    return rc;
}
