#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "case_system.h"
#include "mock_main.h"
#include "mock_opts.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"

/* mock-case-system: the command line around case_server.c, with the option table and the
 * serving loop of mocks/common. Exit codes as pds-trace's and mock-pds's (MOCK_EXIT_*). */

#define TOKEN_MAX     4096 /* longest token accepted from --token or --token-file */
#define TOKEN_FILE_SZ (TOKEN_MAX + 2)

struct opts {
    struct mock_case_config cfg;
    const char *token;
    const char *token_file;
    const char *log_level;
    bool help;
    char token_buf[TOKEN_FILE_SZ];
};

#define OPT(name, kind, member)   MOCK_OPT(struct opts, name, MOCK_OPT_##kind, member)
#define FAULT(name, kind, member) MOCK_FAULT_OPT(struct opts, name, MOCK_OPT_##kind, member)

static const struct mock_opt options[] = {
    OPT("--port", PORT, cfg.port),
    OPT("--host", STR, cfg.host),
    OPT("--token", STR, token),
    OPT("--token-file", STR, token_file),
    OPT("--seed", U64, cfg.seed),
    FAULT("--latency-ms", UINT, latency_ms),
    FAULT("--fail-rate", RATE, fail_rate),
    FAULT("--fail-status", STATUS, fail_status),
    OPT("--log-level", STR, log_level),
    OPT("--help", FLAG, help),
};

static const struct mock_cli cli = {"mock-case-system", options, ARRAY_SIZE(options), NULL};

static void usage(FILE *f)
{
    fprintf(f, "usage: mock-case-system [--port P] [--host ADDR] [--token TOKEN | --token-file "
               "FILE]\n"
               "                        [--seed S] [--latency-ms N] [--fail-rate F] "
               "[--fail-status 503|429|...]\n"
               "                        [--log-level debug|info|warn|error]\n\n"
               "A mock case-management system for pds-trace's write-backs\n"
               "(mocks/case-system/README.md). --port 0 picks a free port, logged as\n"
               "{\"msg\":\"listening\",\"port\":N}. Without a token any or no Authorization is\n"
               "accepted. Defaults: host 127.0.0.1, seed 1, fail status 503, no faults. The\n"
               "admin API (/_admin/faults, /_admin/stats, /_admin/requests, /_admin/reset) and\n"
               "GET /clients/{case_id} are served on loopback addresses only.\n");
}

/* The token is the file's first line: trailing CR, LF, spaces and tabs are dropped. */
static int read_token_file(struct opts *o)
{
    FILE *f = fopen(o->token_file, "rb");
    if (f == NULL)
        return mock_opts_bad(&cli, "--token-file %s: cannot read the file", o->token_file);
    /* One byte more than a token may have, so that a longer one is seen and refused. */
    size_t n = fread(o->token_buf, 1, sizeof(o->token_buf) - 1, f);
    fclose(f);
    o->token_buf[n] = '\0';
    o->token_buf[strcspn(o->token_buf, "\r\n")] = '\0';
    n = strlen(o->token_buf);
    while (n > 0 && (o->token_buf[n - 1] == ' ' || o->token_buf[n - 1] == '\t'))
        o->token_buf[--n] = '\0';
    o->token = o->token_buf;
    return 0;
}

/* A token goes into an HTTP header: visible ASCII only. */
static bool token_ok(const char *t)
{
    size_t n = strlen(t);
    for (size_t i = 0; i < n; i++)
        if (t[i] < 0x21 || t[i] > 0x7e)
            return false;
    return n > 0 && n <= TOKEN_MAX;
}

static int check_opts(struct opts *o)
{
    const char *field = NULL;
    if (o->help)
        return 0;
    if (o->token != NULL && o->token_file != NULL)
        return mock_opts_bad(&cli, "give at most one of --token and --token-file");
    if (o->token_file != NULL && read_token_file(o) != 0)
        return MOCK_EXIT_USAGE;
    if (o->token != NULL && !token_ok(o->token))
        return mock_opts_bad(&cli, "the token must be 1 to %d visible ASCII characters", TOKEN_MAX);
    o->cfg.token = o->token;
    if (mock_opts_log_level(&cli, o->log_level) != 0)
        return MOCK_EXIT_USAGE;
    if (mock_case_faults_check(&o->cfg.faults, &field) != 0)
        return mock_opts_out_of_range(&cli, field);
    return 0;
}

/* ---- serving ---------------------------------------------------------------------- */

static int start(void **mock, uv_loop_t *loop, void *arg)
{
    const struct opts *o = arg;
    struct mock_case *m = NULL;
    int err = mock_case_new(&m, loop, &o->cfg);
    *mock = m;
    return err;
}

static int port(const void *mock)
{
    return mock_case_port(mock);
}

static void stop(void *mock, unsigned deadline_ms, mock_stopped_fn *cb, void *cb_arg)
{
    mock_case_stop(mock, deadline_ms, cb, cb_arg);
}

static void free_mock(void *mock)
{
    mock_case_free(mock);
}

static void report_start_error(int err, void *arg)
{
    const struct opts *o = arg;
    fprintf(stderr, "mock-case-system: cannot listen on %s:%d: %s\n", o->cfg.host, o->cfg.port,
            err_str(err));
}

static int serve(struct opts *o)
{
    static const struct mock_main_ops ops = {start, port, stop, free_mock, report_start_error};
    return mock_main_serve(&ops, o) != 0 ? MOCK_EXIT_FAILED : MOCK_EXIT_OK;
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    mock_case_config_init(&o.cfg);
    int rc = mock_opts_parse(&cli, &o, argc, argv);
    rc = rc ? rc : check_opts(&o);
    if (rc)
        return rc;
    if (o.help) {
        usage(stdout);
        return MOCK_EXIT_OK;
    }
    signal(SIGPIPE, SIG_IGN);
    return serve(&o);
}
