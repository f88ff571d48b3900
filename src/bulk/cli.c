/* The bulk command: options, the app's parts without the HTTP side, the run, and what a
 * person sees: a live bar on a terminal, JSON progress lines otherwise, then a summary. */
#include "pdstrace/bulk_cli.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "pdstrace/app.h"
#include "pdstrace/buf.h"
#include "pdstrace/bulk_run.h"
#include "pdstrace/bulk_tracer.h"
#include "pdstrace/config.h"
#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "pdstrace/objections.h"
#include "pdstrace/pds_client.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

#define BAR_EVERY_MS      200u
#define LOG_EVERY_MS      5000u
#define READY_POLL_MS     50u
#define READY_TIMEOUT_MS  15000u
#define MAX_CONCURRENCY   1024u
#define BAR_WIDTH_DEFAULT 120u

struct bulk_opts {
    const char *input, *output, *config;
    enum bulk_format format;
    double rate; /* 0: pds.rate */
    unsigned concurrency;
    bool write_back, resume;
};

struct bulk_cli {
    uv_loop_t loop;
    struct config cfg;
    struct bulk_opts o;
    struct app *app;
    struct bulk_tracer *tracer;
    struct bulk_run *run;
    uv_timer_t timer; /* waits for the objection registry, then draws the progress */
    uint64_t started_ns, waited_ms;
    uint64_t pds_sent_before; /* PDS requests before the run (the token's included) */
    uint64_t pds_sent;        /* and at the last look */
    bool tty, started;
    int status; /* the run's */
    int exit;
    FILE *log; /* the log file on a terminal */
    char log_path[4096];
};

static int usage(FILE *f, int code)
{
    fprintf(f, "usage: pds-trace bulk INPUT.csv -o OUTPUT.csv [--format simple|pds-mesh]\n"
               "                      [--rate N] [--concurrency N] [--write-back] [--resume]\n"
               "                      [--config FILE]\n\n"
               "Traces every row of INPUT.csv and writes OUTPUT.csv in the same order (the\n"
               "format is the input's, told by its header unless --format says). --rate: PDS\n"
               "requests per second for every instance sharing Redis (pds.rate); --concurrency:\n"
               "rows in flight (16); --write-back: queue write-backs of rows with a case_id;\n"
               "--resume: continue OUTPUT.csv after an interruption.\n");
    return code;
}

static int bad(const char *what, const char *value)
{
    fprintf(stderr, "pds-trace bulk: %s%s%s\n", what, value ? " " : "", value ? value : "");
    return EXIT_USAGE;
}

/* The value of an option that takes one, or NULL when it is missing. */
static const char *value_of(int argc, char **argv, int *i)
{
    return *i + 1 < argc ? argv[++*i] : NULL;
}

static int parse_number(const char *name, const char *v, double lo, double hi, double *out)
{
    char *end;
    double d = v != NULL ? strtod(v, &end) : 0;
    if (v == NULL || end == v || *end != '\0' || !(d >= lo && d <= hi)) {
        fprintf(stderr, "pds-trace bulk: %s needs a number from %g to %g\n", name, lo, hi);
        return EXIT_USAGE;
    }
    *out = d;
    return 0;
}

static int parse_concurrency(struct bulk_opts *o, const char *v)
{
    double d = 0;
    int e = parse_number("--concurrency", v, 1, MAX_CONCURRENCY, &d);
    o->concurrency = (unsigned)d;
    return e;
}

/* An option that takes a value, v (NULL when none followed). */
static int parse_valued(struct bulk_opts *o, const char *a, const char *v)
{
    if (v == NULL)
        return bad("a value must follow", a);
    if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)
        o->output = v;
    else if (strcmp(a, "--config") == 0)
        o->config = v;
    else if (strcmp(a, "--format") == 0)
        return bulk_format_parse(v, &o->format) == 0
                   ? 0
                   : bad("--format must be simple or pds-mesh, not", v);
    else if (strcmp(a, "--rate") == 0)
        return parse_number("--rate", v, 0.1, 1000, &o->rate);
    else
        return parse_concurrency(o, v);
    return 0;
}

static bool takes_value(const char *a)
{
    static const char *const valued[] = {"-o",       "--output", "--config",
                                         "--format", "--rate",   "--concurrency"};
    for (size_t i = 0; i < sizeof(valued) / sizeof(valued[0]); i++)
        if (strcmp(a, valued[i]) == 0)
            return true;
    return false;
}

static int parse_option(struct bulk_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (strcmp(a, "--write-back") == 0)
        o->write_back = true;
    else if (strcmp(a, "--resume") == 0)
        o->resume = true;
    else if (takes_value(a))
        return parse_valued(o, a, value_of(argc, argv, i));
    else if (a[0] == '-' || o->input != NULL)
        return bad("unknown argument", a);
    else
        o->input = a;
    return 0;
}

static int parse_args(struct bulk_opts *o, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout, -1);
        int e = parse_option(o, argc, argv, &i);
        if (e)
            return e;
    }
    if (o->input == NULL || o->output == NULL)
        return usage(stderr, EXIT_USAGE);
    return 0;
}

static double elapsed_s(const struct bulk_cli *c)
{
    return c->started ? (double)(uv_hrtime() - c->started_ns) / 1e9 : 0;
}

static unsigned terminal_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
        return ws.ws_col - 1u;
    return BAR_WIDTH_DEFAULT;
}

/* The run's counts, with the PDS requests as the client counted them (retries included). */
static struct bulk_counts counts_now(const struct bulk_cli *c)
{
    struct bulk_counts n = *bulk_run_counts(c->run);
    n.pds_calls = c->pds_sent - c->pds_sent_before;
    return n;
}

/* The client's count, read while it exists: a stop frees it before the run ends. */
static void note_pds_sent(struct bulk_cli *c)
{
    const struct pds_client *pds = app_pds(c->app);
    if (pds != NULL)
        c->pds_sent = pds_client_requests_sent(pds);
}

static void draw(struct bulk_cli *c, bool last)
{
    note_pds_sent(c);
    struct bulk_counts counts = counts_now(c);
    const struct bulk_counts *n = &counts;
    if (!c->tty) {
        bulk_progress_log(n, elapsed_s(c), last ? "bulk_summary" : "bulk_progress");
        return;
    }
    struct buf b;
    buf_init(&b, 4096);
    if (bulk_progress_bar(n, elapsed_s(c), terminal_width(), &b) == 0)
        fprintf(stderr, "\r%s\033[K%s", buf_cstr(&b), last ? "\n" : "");
    buf_free(&b);
}

static void on_progress(uv_timer_t *t)
{
    draw(t->data, false);
}

/* The summary is the command's result: on stdout, whatever stderr is. */
static void summary(struct bulk_cli *c)
{
    draw(c, true);
    struct buf b;
    buf_init(&b, 4096);
    struct bulk_counts n = counts_now(c);
    if (bulk_summary_text(&n, elapsed_s(c), &b) == 0)
        printf("%s", buf_cstr(&b));
    buf_free(&b);
    if (c->tty)
        printf("log and audit lines: %s\n", c->log_path);
    fflush(stdout);
}

static void on_run_done(int status, void *arg)
{
    struct bulk_cli *c = arg;
    c->status = status;
    uv_timer_stop(&c->timer);
    summary(c);
    if (status == UV_ECANCELED)
        fprintf(stderr,
                "pds-trace bulk: interrupted; %s holds every row done before it, in "
                "order: run again with --resume to go on\n",
                c->o.output);
    else if (status)
        fprintf(stderr, "pds-trace bulk: %s\n", bulk_run_error(c->run));
    c->exit = status ? EXIT_FAILED : EXIT_OK; /* the only way to exit 0 */
    app_stop(c->app);
}

/* A signal: no more rows; what is in flight ends as the app closes under it. */
static void on_stop(void *arg)
{
    struct bulk_cli *c = arg;
    note_pds_sent(c);
    uv_timer_stop(&c->timer);
    if (c->run != NULL && c->started) {
        bulk_run_stop(c->run);
        bulk_tracer_stop(c->tracer);
    }
}

static void start_run(struct bulk_cli *c)
{
    c->started = true;
    c->started_ns = uv_hrtime();
    c->pds_sent_before = c->pds_sent = pds_client_requests_sent(app_pds(c->app));
    bulk_run_start(c->run, c->tracer, on_run_done, c);
    unsigned every = c->tty ? BAR_EVERY_MS : LOG_EVERY_MS;
    uv_timer_start(&c->timer, on_progress, every, every);
}

/* Rows that would give a number wait for the objection registry, so the run starts only
 * once it is confirmed current; Redis away is told at once rather than as failed rows. */
static void on_ready_poll(uv_timer_t *t)
{
    struct bulk_cli *c = t->data;
    if (objections_current(app_objections(c->app))) {
        uv_timer_stop(t);
        start_run(c);
        return;
    }
    c->waited_ms += READY_POLL_MS;
    if (c->waited_ms < READY_TIMEOUT_MS)
        return;
    fprintf(stderr,
            "pds-trace bulk: Redis at PDS_TRACE_REDIS_URL (redis.url) cannot be read, so the "
            "objection registry cannot be confirmed and no number may be given\n");
    c->exit = EXIT_FAILED;
    app_stop(c->app);
}

static void today_utc(char out[11])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

/* On a terminal the bar owns stderr, so the log (audit lines included) goes to a file
 * next to the output. */
static int open_log(struct bulk_cli *c)
{
    c->tty = isatty(STDERR_FILENO) == 1;
    if (!c->tty)
        return 0;
    snprintf(c->log_path, sizeof(c->log_path), "%s.log", c->o.output);
    c->log = fopen(c->log_path, "a");
    if (c->log == NULL) {
        fprintf(stderr, "pds-trace bulk: %s cannot be written\n", c->log_path);
        return EXIT_FAILED;
    }
    log_set_stream(c->log);
    return 0;
}

static int load_config(struct bulk_cli *c)
{
    char err[512];
    if (config_load(&c->cfg, c->o.config, err, sizeof(err))) {
        fprintf(stderr, "pds-trace: %s\n", err);
        return EXIT_USAGE;
    }
    if (c->o.rate > 0)
        c->cfg.pds.rate = c->o.rate;
    log_set_level((enum log_level)c->cfg.log.level);
    return 0;
}

static int open_files(struct bulk_cli *c)
{
    char today[11], err[512] = "";
    today_utc(today);
    struct bulk_run_config rc = {
        .input = c->o.input,
        .output = c->o.output,
        .format = c->o.format,
        .concurrency = c->o.concurrency,
        .resume = c->o.resume,
        .write_back = c->o.write_back,
        .today = today,
    };
    int e = bulk_run_new(&c->run, &c->loop, &rc, err, sizeof(err));
    if (e)
        fprintf(stderr, "pds-trace bulk: %s\n", err[0] ? err : err_str(e));
    return e ? EXIT_FAILED : 0;
}

static int start_app(struct bulk_cli *c)
{
    char err[512] = "";
    int e = app_new_bulk(&c->app, &c->loop, &c->cfg, err, sizeof(err));
    struct bulk_tracer_config tc = {
        .traces = c->app != NULL ? app_traces(c->app) : NULL,
        .writebacks = c->o.write_back && c->app != NULL ? app_writebacks(c->app) : NULL,
        .metrics = c->app != NULL ? app_metrics(c->app) : NULL,
        .caller = "bulk-cli",
    };
    e = e ? e : bulk_tracer_new(&c->tracer, &c->loop, &tc);
    if (e) {
        fprintf(stderr, "pds-trace bulk: %s\n", err[0] ? err : err_str(e));
        app_stop(c->app);
        return e == ERR_CONFIG ? EXIT_USAGE : EXIT_FAILED;
    }
    app_set_stop_hook(c->app, on_stop, c);
    uv_timer_start(&c->timer, on_ready_poll, 0, READY_POLL_MS);
    return 0;
}

static void close_all(struct bulk_cli *c)
{
    bulk_run_free(c->run);
    bulk_tracer_free(c->tracer);
    uv_close((uv_handle_t *)&c->timer, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    app_free(c->app);
    if (uv_loop_close(&c->loop) != 0)
        log_msgf(LOG_LEVEL_WARN, NULL, "handles left open at exit");
    log_flush();
    if (c->log != NULL) {
        log_set_stream(stderr);
        fclose(c->log);
    }
}

int bulk_cli(int argc, char **argv)
{
    struct bulk_cli c = {.exit = EXIT_FAILED};
    int e = parse_args(&c.o, argc, argv);
    if (e)
        return e < 0 ? EXIT_OK : e;
    e = load_config(&c);
    if (e)
        return e;
    uv_loop_init(&c.loop);
    uv_timer_init(&c.loop, &c.timer);
    c.timer.data = &c;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    e = open_files(&c);
    e = e ? e : open_log(&c);
    e = e ? e : start_app(&c);
    if (!e)
        uv_run(&c.loop, UV_RUN_DEFAULT);
    close_all(&c);
    curl_global_cleanup();
    return e ? e : c.exit;
}
