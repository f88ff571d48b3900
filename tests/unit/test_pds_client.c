#include "pdstrace/pds_client.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/http_client.h"
#include "pdstrace/http_server.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "test_util.h"
#include "tls_util.h"

/* A scripted PDS on loopback: the project's http_server on the test's private loop
 * answers the n-th request with steps[n] (or dflt) and records what each request carried.
 * Everything lives in static storage; each criterion test is its own process. */

#define MAX_STEPS 16
#define MAX_RECS  32
#define MAX_REQS  8
#define BASE_PATH "/personal-demographics/FHIR/R4"

struct step {
    int status; /* 0: never answer */
    char retry_after[8];
    char body_file[64]; /* under tests/data/pds/, or "" for no body */
    unsigned delay_ms;
};

struct rec {
    char method[8];
    char path[96];
    char query[512];
    char accept[64];
    char request_id[80];
    char correlation[160];
    char ods[64];
    char auth[256];
    bool has_correlation, has_ods, has_auth;
    uint64_t at_ns;
};

struct pending {
    uv_timer_t timer;
    struct http_exchange *x;
    struct step step;
    bool waiting;
};

struct outcome {
    bool done;
    int calls;
    int status;
    bool has_res;
    struct pds_response res;
    uint64_t at_ns;
};

static struct fake {
    uv_loop_t loop;
    struct http_server *srv;
    struct http_client *http;
    struct pds_client *pc;
    int port;
    char base[128];
    struct step steps[MAX_STEPS];
    unsigned nsteps;
    struct step dflt;
    struct rec recs[MAX_RECS];
    unsigned nrecs;
    unsigned want_recs;
    bool reached;
    unsigned open, max_open;
    struct pending pend[MAX_RECS];
    struct http_exchange *never[MAX_RECS];
    unsigned nnever;
} F;

/* ---- the scripted server ---- */

static void copy_hdr(char *dst, size_t size, const char *v, bool *present)
{
    snprintf(dst, size, "%s", v != NULL ? v : "");
    if (present != NULL)
        *present = v != NULL;
}

static void record(struct http_exchange *x, struct rec *r)
{
    r->at_ns = uv_hrtime();
    copy_hdr(r->method, sizeof(r->method), http_exchange_method(x), NULL);
    copy_hdr(r->path, sizeof(r->path), http_exchange_path(x), NULL);
    copy_hdr(r->query, sizeof(r->query), http_exchange_query(x), NULL);
    copy_hdr(r->accept, sizeof(r->accept), http_exchange_header(x, "Accept"), NULL);
    copy_hdr(r->request_id, sizeof(r->request_id), http_exchange_header(x, "X-Request-ID"), NULL);
    copy_hdr(r->correlation, sizeof(r->correlation), http_exchange_header(x, "X-Correlation-ID"),
             &r->has_correlation);
    copy_hdr(r->ods, sizeof(r->ods), http_exchange_header(x, "NHSD-End-User-Organisation-ODS"),
             &r->has_ods);
    copy_hdr(r->auth, sizeof(r->auth), http_exchange_header(x, "Authorization"), &r->has_auth);
}

static void respond(struct http_exchange *x, const struct step *s)
{
    char path[256];
    char *body = NULL;
    size_t len = 0;

    if (s->body_file[0] != '\0') {
        snprintf(path, sizeof(path), "%s/pds/%s", PDS_TEST_DATA, s->body_file);
        body = read_file(path, &len);
        cr_assert_not_null(body, "missing test data %s", path);
    }
    if (s->retry_after[0] != '\0')
        http_exchange_add_header(x, "Retry-After", s->retry_after);
    F.open--;
    http_exchange_respond(x, s->status, "application/fhir+json", body, len);
    free(body);
}

static void on_delay(uv_timer_t *t)
{
    struct pending *p = t->data;
    p->waiting = false;
    respond(p->x, &p->step);
}

static void handler(struct http_exchange *x, void *arg)
{
    UNUSED(arg);
    cr_assert_lt(F.nrecs, MAX_RECS);
    unsigned i = F.nrecs++;
    record(x, &F.recs[i]);
    if (F.want_recs && F.nrecs >= F.want_recs)
        F.reached = true;
    if (++F.open > F.max_open)
        F.max_open = F.open;
    const struct step *s = i < F.nsteps ? &F.steps[i] : &F.dflt;
    if (s->status == 0) {
        F.never[F.nnever++] = x;
        return;
    }
    if (s->delay_ms == 0) {
        respond(x, s);
        return;
    }
    struct pending *p = &F.pend[i];
    p->x = x;
    p->step = *s;
    p->waiting = true;
    uv_timer_init(&F.loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_delay, s->delay_ms, 0);
}

static struct step step(int status, const char *retry_after, const char *body_file)
{
    struct step s = {.status = status};
    snprintf(s.retry_after, sizeof(s.retry_after), "%s", retry_after ? retry_after : "");
    snprintf(s.body_file, sizeof(s.body_file), "%s", body_file ? body_file : "");
    return s;
}

static void script(const struct step *steps, unsigned n, struct step dflt)
{
    if (n > 0)
        memcpy(F.steps, steps, n * sizeof(*steps));
    F.nsteps = n;
    F.dflt = dflt;
}

/* ---- fixture ---- */

static void setup(void)
{
    /* The server may answer on connections the client has already dropped. */
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(&F, 0, sizeof(F));
}

static void teardown(void)
{
    curl_global_cleanup();
}

TestSuite(pds_client, .timeout = 30, .init = setup, .fini = teardown);

static struct pds_client_config base_cfg(void)
{
    struct pds_client_config cfg = {
        .rate = 1000,
        .concurrency = 8,
        .timeout_ms = 3000,
        .max_attempts = 3,
        .backoff_base_ms = 20,
        .backoff_max_ms = 200,
    };
    return cfg;
}

static void start(struct pds_client_config cfg)
{
    struct http_server_config scfg = {
        .host = "127.0.0.1",
        .max_header_bytes = 16384,
        .max_body_bytes = 4096,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .idle_timeout_ms = 10000,
        .max_connections = 64,
        .handler = handler,
    };
    cr_assert_eq(uv_loop_init(&F.loop), 0);
    cr_assert_eq(http_server_new(&F.srv, &F.loop, &scfg), 0);
    F.port = http_server_port(F.srv);
    cr_assert_eq(http_client_new(&F.http, &F.loop), 0);
    /* A trailing slash, as an operator might write it. */
    snprintf(F.base, sizeof(F.base), "http://127.0.0.1:%d" BASE_PATH "/", F.port);
    if (cfg.base_url == NULL)
        cfg.base_url = F.base;
    cr_assert_eq(pds_client_new(&F.pc, &F.loop, F.http, NULL, &cfg), 0);
}

static void finish(void)
{
    pds_client_free(F.pc);
    for (unsigned i = 0; i < MAX_RECS; i++) {
        if (F.pend[i].waiting) {
            uv_timer_stop(&F.pend[i].timer);
            F.pend[i].waiting = false;
            respond(F.pend[i].x, &F.pend[i].step);
        }
    }
    for (unsigned i = 0; i < F.nnever; i++)
        http_exchange_respond(F.never[i], 503, NULL, NULL, 0);
    http_server_free(F.srv);
    http_client_free(F.http);
    cr_assert_eq(close_loop(&F.loop), 0);
}

static void on_done(int status, const struct pds_response *res, void *arg)
{
    struct outcome *o = arg;
    o->calls++;
    o->status = status;
    o->done = true;
    o->at_ns = uv_hrtime();
    o->has_res = res != NULL;
    if (res != NULL)
        o->res = *res;
}

static void search(const char *query, const char *cid, struct outcome *o)
{
    cr_assert_eq(
        pds_client_search(F.pc, query, &(struct pds_call){.correlation_id = cid}, on_done, o), 0);
    cr_assert_eq(o->calls, 0, "cb must never run inside pds_client_search");
}

static bool all_done(const struct outcome *o, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (!o[i].done)
            return false;
    }
    return true;
}

/* Runs the loop until every outcome is in. */
static void wait_all(struct outcome *o, unsigned n, unsigned deadline_ms)
{
    uint64_t end = uv_hrtime() + (uint64_t)deadline_ms * 1000000u;
    bool done = false;
    while (!done && uv_hrtime() < end) {
        bool tick = false;
        run_until(&F.loop, &tick, 10);
        done = all_done(o, n);
    }
    cr_assert(done, "requests did not complete in %u ms", deadline_ms);
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx */
static bool is_uuid4(const char *s)
{
    if (strlen(s) != 36 || s[14] != '4' || strchr("89ab", s[19]) == NULL)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_hex(s[i]))
            return false;
    }
    return true;
}

static double ms_between(uint64_t a, uint64_t b)
{
    return (double)(b - a) / 1e6;
}

/* ---- headers and parsing ---- */

Test(pds_client, search_sends_pds_headers_and_parses_one_match)
{
    struct pds_client_config cfg = base_cfg();
    struct outcome o = {0};
    cfg.ods_code = "Y12345";
    start(cfg);
    script(NULL, 0, step(200, NULL, "search/PatientSearch.json"));

    search("family=Smith&birthdate=eq2010-10-22", "6f1c2a2e-8d0b-4c55-9a43-0f0d7f0e9a11", &o);
    wait_all(&o, 1, 5000);
    cr_assert_eq(o.status, 0, "status %s", err_name(o.status));
    cr_assert_eq(o.calls, 1);
    cr_assert_eq(o.res.http_status, 200);
    cr_assert_eq(o.res.attempts, 1);
    cr_assert_eq(o.res.result.kind, FHIR_SEARCH_ONE);
    cr_assert_str_eq(o.res.result.patient.id, "9000000009");
    cr_assert_float_eq(o.res.result.patient.score, 0.75, 1e-9);

    cr_assert_eq(F.nrecs, 1);
    const struct rec *r = &F.recs[0];
    cr_assert_str_eq(r->method, "GET");
    cr_assert_str_eq(r->path, BASE_PATH "/Patient");
    cr_assert_str_eq(r->query, "family=Smith&birthdate=eq2010-10-22&_max-results=1");
    cr_assert_str_eq(r->accept, "application/fhir+json");
    cr_assert(is_uuid4(r->request_id), "X-Request-ID %s", r->request_id);
    cr_assert_str_eq(r->correlation, "6f1c2a2e-8d0b-4c55-9a43-0f0d7f0e9a11");
    cr_assert(r->has_ods);
    cr_assert_str_eq(r->ods, "Y12345");
    cr_assert_not(r->has_auth, "no token source, no Authorization");
    finish();
}

Test(pds_client, retrieve_uses_patient_path_without_ods_when_unset)
{
    struct outcome o[2] = {{0}};
    start(base_cfg());
    script(NULL, 0, step(200, NULL, "retrieve/Patient.json"));

    cr_assert_eq(pds_client_retrieve(F.pc, "9000000009",
                                     &(struct pds_call){.correlation_id = "t-1"}, on_done, &o[0]),
                 0);
    cr_assert_eq(pds_client_retrieve(F.pc, "9000000009", NULL, on_done, &o[1]), 0);
    wait_all(o, 2, 5000);
    cr_assert_eq(o[0].status, 0, "status %s", err_name(o[0].status));
    cr_assert_eq(o[0].res.result.kind, FHIR_PATIENT);
    cr_assert_str_eq(o[0].res.result.patient.id, "9000000009");
    cr_assert_eq(F.nrecs, 2);
    cr_assert_str_eq(F.recs[0].path, BASE_PATH "/Patient/9000000009");
    cr_assert_str_eq(F.recs[0].query, "");
    cr_assert_not(F.recs[0].has_ods, "ODS header sent though none is configured");
    cr_assert(F.recs[0].has_correlation);
    cr_assert_not(F.recs[1].has_correlation, "X-Correlation-ID sent without one");
    cr_assert_str_neq(F.recs[0].request_id, F.recs[1].request_id,
                      "two requests must not share an X-Request-ID");
    finish();
}

Test(pds_client, retrieve_404_is_an_answer_with_its_outcome)
{
    struct outcome o = {0};
    start(base_cfg());
    script(NULL, 0, step(404, NULL, "errors/RESOURCE_NOT_FOUND.json"));

    cr_assert_eq(pds_client_retrieve(F.pc, "9000000017",
                                     &(struct pds_call){.correlation_id = "t-1"}, on_done, &o),
                 0);
    wait_all(&o, 1, 5000);
    cr_assert_eq(o.status, 0, "status %s", err_name(o.status));
    cr_assert_eq(o.res.http_status, 404);
    cr_assert_eq(o.res.result.kind, FHIR_ERROR);
    cr_assert_str_eq(o.res.result.error_code, "RESOURCE_NOT_FOUND");
    cr_assert_eq(F.nrecs, 1, "a 404 must not be retried");
    finish();
}

Test(pds_client, refuses_bad_arguments_without_calling_back)
{
    struct outcome o = {0};
    struct pds_client_config cfg = base_cfg();
    struct pds_client *pc = NULL;
    start(base_cfg());

    cr_assert_eq(pds_client_retrieve(F.pc, "900000000", NULL, on_done, &o), ERR_INVALID_INPUT);
    cr_assert_eq(pds_client_retrieve(F.pc, "9000000009/x", NULL, on_done, &o), ERR_INVALID_INPUT);
    cr_assert_eq(pds_client_search(F.pc, "family=A B", NULL, on_done, &o), ERR_INVALID_INPUT);
    cr_assert_eq(pds_client_search(F.pc, "family=A",
                                   &(struct pds_call){.correlation_id = "bad\r\nX: y"}, on_done,
                                   &o),
                 ERR_INVALID_INPUT);
    cfg.base_url = F.base;
    cfg.rate = 0;
    cr_assert_eq(pds_client_new(&pc, &F.loop, F.http, NULL, &cfg), ERR_CONFIG);
    cfg.rate = 5;
    cfg.max_attempts = 0;
    cr_assert_eq(pds_client_new(&pc, &F.loop, F.http, NULL, &cfg), ERR_CONFIG);
    bool tick = false;
    run_until(&F.loop, &tick, 50);
    cr_assert_eq(o.calls, 0);
    cr_assert_eq(F.nrecs, 0);
    finish();
}

/* ---- retries ---- */

Test(pds_client, retry_after_is_honoured_with_the_same_request_id)
{
    struct outcome o = {0};
    struct step steps[] = {step(503, "1", "errors/UNSUPPORTED_SERVICE.json")};
    start(base_cfg());
    script(steps, 1, step(200, NULL, "search/PatientSearch.json"));

    search("family=Smith&birthdate=eq2010-10-22", "t-2", &o);
    wait_all(&o, 1, 5000);
    cr_assert_eq(o.status, 0, "status %s", err_name(o.status));
    cr_assert_eq(o.res.attempts, 2);
    cr_assert_eq(o.res.result.kind, FHIR_SEARCH_ONE);
    cr_assert_eq(F.nrecs, 2);
    cr_assert_str_eq(F.recs[0].request_id, F.recs[1].request_id);
    cr_assert(is_uuid4(F.recs[1].request_id));
    cr_assert_str_eq(F.recs[1].correlation, "t-2");
    double gap = ms_between(F.recs[0].at_ns, F.recs[1].at_ns);
    cr_assert_geq(gap, 990.0, "Retry-After: 1 not honoured: retried after %.1f ms", gap);
    cr_assert_lt(gap, 2000.0, "retried after %.1f ms", gap);
    finish();
}

Test(pds_client, retries_429_with_backoff)
{
    struct outcome o = {0};
    struct pds_client_config cfg = base_cfg();
    struct step steps[] = {step(429, NULL, NULL)};
    cfg.backoff_base_ms = 200;
    cfg.backoff_max_ms = 1000;
    start(cfg);
    script(steps, 1, step(200, NULL, "search/PatientSearch.json"));

    search("family=Smith&birthdate=eq2010-10-22", NULL, &o);
    wait_all(&o, 1, 5000);
    cr_assert_eq(o.status, 0, "status %s", err_name(o.status));
    cr_assert_eq(o.res.attempts, 2);
    cr_assert_eq(F.nrecs, 2);
    cr_assert_str_eq(F.recs[0].request_id, F.recs[1].request_id);
    /* Equal jitter: at least half the base delay, at most the base. */
    double gap = ms_between(F.recs[0].at_ns, F.recs[1].at_ns);
    cr_assert_geq(gap, 99.0, "no backoff after 429: %.1f ms", gap);
    cr_assert_lt(gap, 600.0, "backoff too long after one 429: %.1f ms", gap);
    finish();
}

Test(pds_client, gives_up_after_max_attempts_of_5xx)
{
    struct outcome o = {0};
    struct step steps[] = {step(500, NULL, NULL), step(502, NULL, NULL)};
    start(base_cfg());
    script(steps, 2, step(503, NULL, NULL));

    search("family=Smith&birthdate=eq2010-10-22", NULL, &o);
    wait_all(&o, 1, 5000);
    cr_assert_eq(o.status, ERR_UPSTREAM, "status %s", err_name(o.status));
    cr_assert_eq(o.calls, 1);
    cr_assert_eq(o.res.attempts, 3);
    cr_assert_eq(o.res.http_status, 503);
    bool tick = false;
    run_until(&F.loop, &tick, 300);
    cr_assert_eq(F.nrecs, 3, "max_attempts 3 but the server saw %u requests", F.nrecs);
    finish();
}

Test(pds_client, rejects_400_at_once_with_its_error_code)
{
    struct outcome o = {0};
    start(base_cfg());
    script(NULL, 0, step(400, NULL, "errors/INVALID_VALUE.json"));

    search("family=Smith&birthdate=eq2010-13-45", NULL, &o);
    wait_all(&o, 1, 5000);
    cr_assert_eq(o.status, ERR_UPSTREAM_REJECTED, "status %s", err_name(o.status));
    cr_assert_eq(o.res.http_status, 400);
    cr_assert_eq(o.res.attempts, 1);
    cr_assert_eq(o.res.result.kind, FHIR_ERROR);
    cr_assert_str_eq(o.res.result.error_code, "INVALID_VALUE");
    bool tick = false;
    run_until(&F.loop, &tick, 300);
    cr_assert_eq(F.nrecs, 1, "a 400 was retried");
    finish();
}

Test(pds_client, times_out_each_attempt)
{
    struct outcome o = {0};
    struct pds_client_config cfg = base_cfg();
    cfg.timeout_ms = 200;
    cfg.max_attempts = 2;
    start(cfg);
    script(NULL, 0, step(0, NULL, NULL));

    uint64_t t0 = uv_hrtime();
    search("family=Smith&birthdate=eq2010-10-22", NULL, &o);
    wait_all(&o, 1, 5000);
    double took = ms_between(t0, o.at_ns);
    cr_assert_eq(o.status, ERR_UPSTREAM_TIMEOUT, "status %s", err_name(o.status));
    cr_assert_eq(o.res.attempts, 2);
    cr_assert_eq(o.res.http_status, 0);
    cr_assert_eq(F.nrecs, 2);
    cr_assert_geq(took, 400.0, "gave up after %.1f ms", took);
    cr_assert_leq(took, 1500.0, "gave up after %.1f ms", took);
    finish();
}

Test(pds_client, retries_connection_errors)
{
    struct outcome o = {0};
    struct pds_client_config cfg = base_cfg();
    uv_tcp_t probe;
    struct sockaddr_in addr;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char url[96];

    start(cfg);
    /* A port that was free a moment ago: bind it, read it, close it. */
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(&F.loop, &probe);
    cr_assert_eq(uv_tcp_bind(&probe, (const struct sockaddr *)&addr, 0), 0);
    cr_assert_eq(uv_tcp_getsockname(&probe, (struct sockaddr *)&ss, &len), 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x",
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
    uv_close((uv_handle_t *)&probe, NULL);
    pds_client_free(F.pc);
    cfg.base_url = url;
    cr_assert_eq(pds_client_new(&F.pc, &F.loop, F.http, NULL, &cfg), 0);

    search("family=Smith&birthdate=eq2010-10-22", NULL, &o);
    wait_all(&o, 1, 5000);
    cr_assert_eq(o.status, ERR_UPSTREAM, "status %s", err_name(o.status));
    cr_assert_eq(o.res.attempts, 3);
    finish();
}

/* ---- rate limit and concurrency ---- */

Test(pds_client, rate_limit_spaces_requests)
{
    struct outcome warm = {0};
    struct outcome o[6] = {{0}};
    struct pds_client_config cfg = base_cfg();
    cfg.rate = 10;
    start(cfg);
    script(NULL, 0, step(200, NULL, "search/PatientSearch.json"));

    /* Open the connection first, so that arrival times measure the limiter rather than a
     * connect (slow under valgrind). */
    search("family=Smith&birthdate=eq2010-10-22", NULL, &warm);
    wait_all(&warm, 1, 5000);
    for (unsigned i = 0; i < 6; i++)
        search("family=Smith&birthdate=eq2010-10-22", NULL, &o[i]);
    wait_all(o, 6, 5000);
    cr_assert_eq(F.nrecs, 7);
    for (unsigned i = 0; i < 6; i++)
        cr_assert_eq(o[i].status, 0, "request %u: %s", i, err_name(o[i].status));
    /* Arrivals are stamped by the server's thread, which a loaded machine may deschedule
     * and then stamp two requests at once: one short gap is that, not a burst. A limiter
     * that let bursts through would show a short gap every other request. */
    unsigned short_gaps = 0;
    for (unsigned i = 1; i < 7; i++) {
        double gap = ms_between(F.recs[i - 1].at_ns, F.recs[i].at_ns);
        if (gap < 90.0)
            short_gaps++;
    }
    cr_assert_leq(short_gaps, 1, "%u of 6 requests came less than 90 ms apart at 10/s", short_gaps);
    double span = ms_between(F.recs[1].at_ns, F.recs[6].at_ns);
    cr_assert_geq(span, 475.0, "six requests at 10/s within %.1f ms", span);
    cr_assert_lt(span, 1500.0, "six requests at 10/s took %.1f ms", span);
    finish();
}

Test(pds_client, concurrency_cap_holds)
{
    struct outcome o[6] = {{0}};
    struct pds_client_config cfg = base_cfg();
    struct step slow = step(200, NULL, "search/PatientSearch.json");
    slow.delay_ms = 200;
    cfg.concurrency = 2;
    start(cfg);
    script(NULL, 0, slow);

    for (unsigned i = 0; i < 6; i++)
        search("family=Smith&birthdate=eq2010-10-22", NULL, &o[i]);
    wait_all(o, 6, 5000);
    for (unsigned i = 0; i < 6; i++)
        cr_assert_eq(o[i].status, 0, "request %u: %s", i, err_name(o[i].status));
    cr_assert_eq(F.nrecs, 6);
    cr_assert_eq(F.max_open, 2, "%u requests open at the server at once", F.max_open);
    finish();
}

/* ---- shutdown ---- */

Test(pds_client, free_cancels_waiting_backing_off_and_in_flight)
{
    struct outcome o[3] = {{0}};
    struct pds_client_config cfg = base_cfg();
    struct step steps[] = {step(503, "30", NULL), step(0, NULL, NULL)};
    cfg.concurrency = 1;
    start(cfg);
    script(steps, 2, step(200, NULL, "search/PatientSearch.json"));

    /* o[0] gets a 503 and backs off for 30 s, o[1] hangs at the server, o[2] waits for
     * the concurrency cap. */
    for (unsigned i = 0; i < 3; i++)
        search("family=Smith&birthdate=eq2010-10-22", NULL, &o[i]);
    F.want_recs = 2;
    cr_assert(run_until(&F.loop, &F.reached, 5000));
    cr_assert_eq(o[0].calls + o[1].calls + o[2].calls, 0);
    pds_client_free(F.pc);
    for (unsigned i = 0; i < 3; i++) {
        cr_assert_eq(o[i].calls, 1, "request %u: %d calls", i, o[i].calls);
        cr_assert_eq(o[i].status, UV_ECANCELED, "request %u: %s", i, err_name(o[i].status));
        cr_assert_not(o[i].has_res);
    }
    cr_assert_eq(pds_client_search(F.pc, "family=A", NULL, on_done, &o[0]), UV_ECANCELED);
    F.pc = NULL;
    finish();
    for (unsigned i = 0; i < 3; i++)
        cr_assert_eq(o[i].calls, 1, "request %u called again after free", i);
}

/* ---- libcurl's own re-sends are charged to the rate budget ---- */

/* A raw PDS on loopback. The scripted server above can only reset a connection, which
 * libcurl reports as an error; a server that closes an idle keep-alive connection (FIN)
 * just as a request arrives makes libcurl send the request again by itself, on a new
 * connection. This one answers the first request of each connection with a search Bundle
 * and closes on the second, recording every request in F.recs. */

#define RAW_CONNS 32
#define RAW_BUF   8192

struct raw_conn {
    uv_tcp_t tcp;
    char buf[RAW_BUF];
    size_t len;
    unsigned served;
};

static struct raw_pds {
    uv_tcp_t listener;
    struct raw_conn conns[RAW_CONNS];
    unsigned accepted;
    char answer[8192];
    size_t answer_len;
} R;

static void on_raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct raw_conn *c = h->data;
    UNUSED(suggested);
    b->base = c->buf + c->len;
    b->len = RAW_BUF - 1 - c->len;
}

static void on_raw_write(uv_write_t *w, int status)
{
    UNUSED(status);
    free(w);
}

static void raw_record(const char *head)
{
    struct rec *r = &F.recs[F.nrecs++];
    const char *id = strstr(head, "\r\nX-Request-ID: ");
    r->at_ns = uv_hrtime();
    if (id != NULL)
        snprintf(r->request_id, sizeof(r->request_id), "%.*s", (int)strcspn(id + 16, "\r\n"),
                 id + 16);
}

/* Handles one complete request head; false once the connection is closed. */
static bool raw_serve(struct raw_conn *c, size_t head_len)
{
    cr_assert_lt(F.nrecs, MAX_RECS);
    c->buf[head_len - 1] = '\0';
    raw_record(c->buf);
    memmove(c->buf, c->buf + head_len, c->len - head_len);
    c->len -= head_len;
    if (++c->served > 1) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        uv_close((uv_handle_t *)&c->tcp, NULL);
        return false;
    }
    uv_write_t *w = malloc(sizeof(*w));
    uv_buf_t b = uv_buf_init(R.answer, (unsigned)R.answer_len);
    cr_assert_not_null(w);
    cr_assert_eq(uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_raw_write), 0);
    return true;
}

static void on_raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct raw_conn *c = s->data;
    const char *end;
    UNUSED(b);
    if (nread < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, NULL);
        return;
    }
    c->len += (size_t)nread;
    c->buf[c->len] = '\0';
    while ((end = strstr(c->buf, "\r\n\r\n")) != NULL) {
        if (!raw_serve(c, (size_t)(end - c->buf) + 4))
            return;
    }
}

static void on_raw_connection(uv_stream_t *server, int status)
{
    cr_assert_eq(status, 0);
    cr_assert_lt(R.accepted, RAW_CONNS);
    struct raw_conn *c = &R.conns[R.accepted++];
    cr_assert_eq(uv_tcp_init(server->loop, &c->tcp), 0);
    c->tcp.data = c;
    cr_assert_eq(uv_accept(server, (uv_stream_t *)&c->tcp), 0);
    cr_assert_eq(uv_read_start((uv_stream_t *)&c->tcp, on_raw_alloc, on_raw_read), 0);
}

static void raw_answer(void)
{
    size_t len = 0;
    char file[256];
    snprintf(file, sizeof(file), "%s/pds/search/PatientSearch.json", PDS_TEST_DATA);
    char *body = read_file(file, &len);
    cr_assert_not_null(body);
    int n = snprintf(R.answer, sizeof(R.answer),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     len, body);
    cr_assert(n > 0 && (size_t)n < sizeof(R.answer));
    R.answer_len = (size_t)n;
    free(body);
}

static void raw_start(struct pds_client_config cfg)
{
    struct sockaddr_in addr;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    memset(&R, 0, sizeof(R));
    raw_answer();
    cr_assert_eq(uv_loop_init(&F.loop), 0);
    uv_ip4_addr("127.0.0.1", 0, &addr);
    cr_assert_eq(uv_tcp_init(&F.loop, &R.listener), 0);
    cr_assert_eq(uv_tcp_bind(&R.listener, (const struct sockaddr *)&addr, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&R.listener, 64, on_raw_connection), 0);
    cr_assert_eq(uv_tcp_getsockname(&R.listener, (struct sockaddr *)&ss, &len), 0);
    F.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    snprintf(F.base, sizeof(F.base), "http://127.0.0.1:%d" BASE_PATH, F.port);
    cfg.base_url = F.base;
    cr_assert_eq(http_client_new(&F.http, &F.loop), 0);
    cr_assert_eq(pds_client_new(&F.pc, &F.loop, F.http, NULL, &cfg), 0);
}

static void raw_finish(void)
{
    pds_client_free(F.pc);
    http_client_free(F.http);
    cr_assert_eq(close_loop(&F.loop), 0);
}

/* The smallest gap between two requests in a row that reached the server, in ms. */
static double min_gap_ms(void)
{
    double min = 1e9;
    for (unsigned i = 1; i < F.nrecs; i++) {
        double gap = ms_between(F.recs[i - 1].at_ns, F.recs[i].at_ns);
        if (gap < min)
            min = gap;
    }
    return min;
}

/* Every request after the first goes out on a pooled connection that the server drops. */
Test(pds_client, curl_resends_wait_for_the_rate_budget)
{
    struct outcome o[6] = {{0}};
    struct pds_client_config cfg = base_cfg();
    cfg.rate = 5;
    raw_start(cfg);

    for (unsigned i = 0; i < 6; i++)
        search("family=Smith&birthdate=eq2010-10-22", NULL, &o[i]);
    wait_all(o, 6, 10000);
    double span = ms_between(F.recs[0].at_ns, F.recs[F.nrecs - 1].at_ns) / 1000.0;
    double gap = min_gap_ms();
    cr_log_info("%u requests reached the server in %.2f s (%.1f/s), smallest gap %.1f ms", F.nrecs,
                span, (F.nrecs - 1) / span, gap);
    for (unsigned i = 0; i < 6; i++)
        cr_assert_eq(o[i].status, 0, "request %u: %s", i, err_name(o[i].status));
    cr_assert_eq(F.nrecs, 11, "%u requests reached the server", F.nrecs);
    /* 5/s is 200 ms between requests, whichever request they belong to; 10% for jitter. */
    cr_assert_geq(gap, 180.0, "two requests %.1f ms apart at 5/s", gap);
    raw_finish();
}

/* With the budget to spare, the re-send goes ahead, and it is counted: in attempts, and
 * in the metric as an attempt without an answer. */
Test(pds_client, curl_resend_within_the_budget_counts_as_an_attempt)
{
    struct outcome o[2] = {{0}};
    struct pds_client_config cfg = base_cfg();
    const char *lost = "op=\"search\",status=\"error\"";
    cfg.rate = 1e6;
    cr_assert_eq(metrics_new(&cfg.metrics), 0);
    raw_start(cfg);

    search("family=Smith&birthdate=eq2010-10-22", NULL, &o[0]);
    wait_all(&o[0], 1, 5000);
    search("family=Smith&birthdate=eq2010-10-22", NULL, &o[1]);
    wait_all(&o[1], 1, 5000);
    cr_assert_eq(o[1].status, 0, "status %s", err_name(o[1].status));
    cr_assert_eq(F.nrecs, 3);
    cr_assert_str_eq(F.recs[1].request_id, F.recs[2].request_id);
    cr_assert_eq(o[1].res.attempts, 2, "libcurl's re-send was not counted");
    cr_assert_float_eq(metrics_value(cfg.metrics, "pdstrace_pds_requests_total", lost), 1.0, 1e-9);
    raw_finish();
    metrics_free(cfg.metrics);
}

/* ---- TLS ---- */

Test(pds_client, tls_failure_is_not_retried)
{
    struct tls_pki pki;
    struct tls_server ts;
    struct outcome o = {0};
    struct pds_client_config cfg = base_cfg();
    char base[128];
    char line[2048];
    int warnings = 0;
    FILE *log = tmpfile();
    cr_assert_not_null(log);
    cr_assert_eq(tls_pki_make(&pki), 0);
    cr_assert_eq(tls_server_start(&ts, &pki, false), 0);
    /* The server's CA is not trusted: no ca_file. */
    snprintf(base, sizeof(base), "https://127.0.0.1:%d" BASE_PATH, ts.port);
    cfg.base_url = base;
    log_set_stream(log);
    start(cfg);

    search("family=Smith&birthdate=eq2010-10-22", NULL, &o);
    wait_all(&o, 1, 10000);
    bool tick = false;
    run_until(&F.loop, &tick, 300);
    finish();
    log_set_stream(NULL);
    tls_server_stop(&ts);
    tls_pki_remove(&pki);
    rewind(log);
    while (fgets(line, sizeof(line), log) != NULL)
        warnings += strstr(line, "\"upstream TLS failure\"") != NULL;
    fclose(log);
    cr_assert_eq(o.calls, 1);
    cr_assert_eq(o.status, ERR_UPSTREAM_TLS, "status %s", err_name(o.status));
    cr_assert_eq(o.res.attempts, 1, "a refused certificate was tried %u times", o.res.attempts);
    cr_assert_eq(warnings, 1, "%d TLS warnings", warnings);
}
