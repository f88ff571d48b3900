/* HTTP bulk jobs (src/bulk/job_*.c, docs/internals/bulk.md "HTTP jobs"): the store and
 * the worker in this process against a private redis-server, with the mock PDS as a
 * process behind the trace service. Uploads, results in both formats, every row done
 * once when workers race and when a dead consumer's rows are reclaimed, deleted jobs'
 * rows dropped, expiry, a row that cannot be read back, nothing personal in clear in
 * Redis, objections recorded after the trace honoured at download (and a stale registry
 * stopping it), and a row whose output is far larger than its input. The people are the
 * fixed ones of mocks/pds/README.md. */
#include "pdstrace/bulk_job.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/cache.h"
#include "pdstrace/err.h"
#include "pdstrace/http_client.h"
#include "pdstrace/log.h"
#include "pdstrace/metrics.h"
#include "pdstrace/objections.h"
#include "pdstrace/pds_client.h"
#include "pdstrace/redis_conn.h"
#include "pdstrace/trace.h"
#include "bulk_fixtures.h"
#include "stack.h"
#include "test_util.h"

/* The shared files (tests/support/bulk_fixtures.c). */
#define EMPTY21    BULK_FIXTURE_EMPTY21
#define simple_in  bulk_fixture_simple_in
#define simple_out bulk_fixture_simple_out
#define mesh_in    bulk_fixture_mesh_in
#define mesh_rows  bulk_fixture_mesh_rows

#define PDS_BASE  "/personal-demographics/FHIR/R4"
#define PREFIX    "bjt:"
#define OWNER     "council-a"
#define RETENTION 3600u

static const char secret[] = "0123456789abcdef0123456789abcdef-bulk-test-secret";

static struct fixture {
    struct stack st;
    uv_loop_t loop;
    struct redis_conn *rc;
    struct cache *cache;
    struct http_client *http;
    struct pds_client *pds;
    struct trace_service *svc;
    struct bulk_jobs *jobs;
    struct objections *objections;
    redisContext *direct;
    char *log;
    size_t log_len;
    FILE *log_stream;
} F;

/* A worker with its own blocking connection and its own metrics, so that each one's rows
 * can be told apart. The fixture stops them. */
struct worker {
    struct redis_conn *blocking;
    struct metrics *metrics;
    struct bulk_worker *w;
};
static struct worker W[2];
static size_t NW;

/* ---- the parts ---- */

static void connect_to(struct redis_server *rs, struct redis_conn **rc, unsigned timeout_ms)
{
    char url[128];
    struct redis_conn_config c = {.url = redis_server_url(rs, url, sizeof(url)),
                                  .command_timeout_ms = timeout_ms};
    cr_assert_eq(redis_conn_new(rc, &F.loop, &c), 0);
    for (int i = 0; i < 500 && redis_conn_state(*rc) != REDIS_CONN_CONNECTED; i++)
        uv_run(&F.loop, UV_RUN_ONCE);
    cr_assert_eq(redis_conn_state(*rc), REDIS_CONN_CONNECTED);
}

static void connect_conn(struct redis_conn **rc, unsigned timeout_ms)
{
    connect_to(&F.st.redis, rc, timeout_ms);
}

static bool registry_current(void *arg)
{
    return objections_current(arg);
}

static bool registry_stale(void *arg)
{
    return !objections_current(arg);
}

/* The objection registry results are checked against, on redis (borrowed), loaded. */
static struct objections *objections_on(struct redis_conn *redis, unsigned max_staleness_ms)
{
    struct objections *o;
    struct objections_config oc = {.prefix = PREFIX, .max_staleness_ms = max_staleness_ms};
    cr_assert_eq(objections_new(&o, &F.loop, redis, secret, strlen(secret), &oc), 0);
    cr_assert(run_loop_until(&F.loop, registry_current, o, 5000), "the registry never loaded");
    return o;
}

static void start_pds(void)
{
    static char base[160];
    const char *argv[] = {PDS_BINARY_DIR "/mock-pds", "--port", "0", "--generate", "0", NULL};
    cr_assert_eq(proc_start(&F.st.pds, argv, NULL), 0, "mock-pds did not start: see %s",
                 F.st.pds.log_path);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d" PDS_BASE, F.st.pds.port);
    struct pds_client_config pcfg = {
        .base_url = base, .rate = 1000, .concurrency = 16, .timeout_ms = 5000, .max_attempts = 1};
    cr_assert_eq(http_client_new(&F.http, &F.loop), 0);
    cr_assert_eq(pds_client_new(&F.pds, &F.loop, F.http, NULL, &pcfg), 0);
}

/* no_cache: every row asks PDS, however often its person comes. */
static void setup_with(bool no_cache)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(&F, 0, sizeof(F));
    NW = 0;
    F.log_stream = open_memstream(&F.log, &F.log_len);
    log_set_stream(F.log_stream);
    cr_assert_eq(uv_loop_init(&F.loop), 0);
    cr_assert_eq(redis_server_start(&F.st.redis), 0);
    connect_conn(&F.rc, 0);
    struct cache_config cc = {.prefix = PREFIX, .ttl_s = 3600, .negative_ttl_s = 60};
    cr_assert_eq(cache_new(&F.cache, F.rc, secret, strlen(secret), &cc), 0);
    start_pds();
    struct trace_service_config tc = {
        .cascade = {.bands = {0.95, 0.85}, .fuzzy = false, .history = true},
        .deadline_ms = 20000,
    };
    cr_assert_eq(trace_service_new(&F.svc, F.pds, no_cache ? NULL : F.cache, &tc), 0);
    struct bulk_jobs_config jc = {.prefix = PREFIX, .retention_s = RETENTION};
    cr_assert_eq(bulk_jobs_new(&F.jobs, F.rc, secret, strlen(secret), &jc), 0);
    F.objections = objections_on(F.rc, 2000);
    F.direct = redisConnect("127.0.0.1", F.st.redis.port);
    cr_assert(F.direct != NULL && F.direct->err == 0);
}

static void setup(void)
{
    setup_with(false);
}

static void setup_no_cache(void)
{
    setup_with(true);
}

static struct worker *start_worker(unsigned concurrency, unsigned reclaim_idle_ms)
{
    cr_assert_lt(NW, 2);
    struct worker *w = &W[NW++];
    memset(w, 0, sizeof(*w));
    connect_conn(&w->blocking, BULK_WORKER_READ_BLOCK_MS + 1000);
    cr_assert_eq(metrics_new(&w->metrics), 0);
    struct bulk_worker_config c = {.traces = F.svc,
                                   .metrics = w->metrics,
                                   .concurrency = concurrency,
                                   .reclaim_idle_ms = reclaim_idle_ms,
                                   .count_every_ms = 100,
                                   .max_attempts = 1};
    cr_assert_eq(bulk_worker_new(&w->w, &F.loop, F.jobs, w->blocking, &c), 0);
    return w;
}

/* As the app does: the workers first, then the traces under them, then the connections. */
static void teardown(void)
{
    for (size_t i = 0; i < NW; i++)
        bulk_worker_free(W[i].w);
    trace_service_shutdown(F.svc);
    bulk_jobs_close(F.jobs);
    objections_free(F.objections);
    for (size_t i = 0; i < NW; i++)
        redis_conn_free(W[i].blocking);
    pds_client_free(F.pds);
    cache_free(F.cache);
    redis_conn_free(F.rc);
    http_client_free(F.http);
    cr_assert_eq(close_loop(&F.loop), 0, "handles left on the loop");
    trace_service_free(F.svc);
    bulk_jobs_free(F.jobs);
    for (size_t i = 0; i < NW; i++)
        metrics_free(W[i].metrics);
    redisFree(F.direct);
    proc_stop(&F.st.pds, SIGTERM, 5000);
    redis_server_destroy(&F.st.redis);
    log_set_stream(NULL);
    fclose(F.log_stream);
    free(F.log);
    curl_global_cleanup();
}

TestSuite(bulk_job, .timeout = 90);

/* ---- uploads ---- */

struct upload_wait {
    bool room, done;
    int room_status, done_status;
};

static void on_room(int status, void *arg)
{
    struct upload_wait *u = arg;
    u->room = true;
    u->room_status = status;
}

static void on_done(int status, void *arg)
{
    struct upload_wait *u = arg;
    u->done = true;
    u->done_status = status;
}

struct upload_result {
    int status;
    char id[BULK_JOB_ID_SIZE];
    char why[200];
    bool was_busy;
    uint64_t rows;
};

static int feed_all(struct bulk_upload *up, struct upload_wait *w, const char *text, size_t piece,
                    struct upload_result *res)
{
    size_t n = strlen(text);
    for (size_t at = 0; at < n; at += piece) {
        int e = bulk_upload_feed(up, text + at, n - at < piece ? n - at : piece);
        if (e)
            return e;
        if (!bulk_upload_busy(up))
            continue;
        res->was_busy = true;
        w->room = false;
        cr_assert(run_until(&F.loop, &w->room, 10000), "no room came back");
        if (w->room_status)
            return w->room_status;
    }
    return 0;
}

/* Uploads text in pieces of piece bytes as owner, as the route does. */
static struct upload_result upload_as(const char *text, size_t piece, const char *owner)
{
    struct upload_result res = {0};
    struct upload_wait w = {0};
    struct bulk_upload_config c = {
        .owner = owner, .on_room = on_room, .on_done = on_done, .arg = &w};
    struct bulk_upload *up;
    cr_assert_eq(bulk_upload_new(&up, F.jobs, &c), 0);
    snprintf(res.id, sizeof(res.id), "%s", bulk_upload_job_id(up));
    res.status = feed_all(up, &w, text, piece, &res);
    res.status = res.status ? res.status : bulk_upload_finish(up);
    if (res.status == 0) {
        cr_assert_not(w.done, "on_done ran inside bulk_upload_finish");
        cr_assert(run_until(&F.loop, &w.done, 10000), "the upload never ended");
        res.status = w.done_status;
    }
    snprintf(res.why, sizeof(res.why), "%s", bulk_upload_error(up));
    res.rows = bulk_upload_rows(up);
    bulk_upload_free(up, res.status != 0);
    return res;
}

static struct upload_result upload(const char *text)
{
    struct upload_result r = upload_as(text, 7, OWNER);
    cr_assert_eq(r.status, 0, "upload: %s (%s)", err_str(r.status), r.why);
    return r;
}

/* ---- what Redis holds ---- */

static long long redis_int(const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(F.direct, fmt, arg);
    long long n = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return n;
}

static void meta_key(const char *id, const char *suffix, char out[160])
{
    snprintf(out, 160, PREFIX "bulk:job:%s%s", id, suffix);
}

static bool stream_empty(void *arg)
{
    (void)arg;
    return redis_int("XLEN %s", PREFIX "bulk:rows") == 0;
}

struct state_wait {
    const char *id;
    const char *state;
};

static bool in_state(void *arg)
{
    struct state_wait *s = arg;
    char key[160];
    meta_key(s->id, "", key);
    redisReply *r = redisCommand(F.direct, "HGET %s state", key);
    bool ok = r != NULL && r->type == REDIS_REPLY_STRING && strcmp(r->str, s->state) == 0;
    freeReplyObject(r);
    return ok;
}

static void wait_state(const char *id, const char *state, unsigned ms)
{
    struct state_wait s = {id, state};
    cr_assert(run_loop_until(&F.loop, in_state, &s, ms), "job %s never %s", id, state);
}

/* ---- figures and results ---- */

struct info_wait {
    bool done;
    int status;
    struct bulk_job_info info;
};

static void on_info(int status, const struct bulk_job_info *info, void *arg)
{
    struct info_wait *w = arg;
    w->done = true;
    w->status = status;
    if (info != NULL)
        w->info = *info;
}

static struct info_wait job_info(const char *id, const char *owner)
{
    struct info_wait w = {0};
    cr_assert_eq(bulk_job_get(F.jobs, id, owner, on_info, &w), 0);
    cr_assert(run_until(&F.loop, &w.done, 5000));
    return w;
}

struct piece_wait {
    bool done;
    int status;
    struct buf text;
    size_t pieces;
};

static void on_piece(int status, const char *data, size_t len, void *arg)
{
    struct piece_wait *w = arg;
    w->done = true;
    w->status = status;
    if (status == 0 && len > 0) {
        cr_assert_eq(buf_append(&w->text, data, len), 0);
        w->pieces++;
    }
}

/* The owner's job's result opened through jobs with objections: NULL unless the job is
 * done. */
static struct bulk_result *open_result(struct bulk_jobs *jobs, const char *id, const char *owner,
                                       const struct objections *objections)
{
    struct info_wait iw = {0};
    struct bulk_result *r;
    cr_assert_eq(bulk_result_open(&r, jobs, id, owner, objections, on_info, &iw), 0);
    cr_assert(run_until(&F.loop, &iw.done, 5000));
    if (iw.status != 0 || iw.info.state != BULK_JOB_DONE) {
        bulk_result_free(r);
        return NULL;
    }
    return r;
}

/* The whole result (free it), read piece by piece; NULL unless the job is done. */
static char *result_of(const char *id, const char *owner, size_t *pieces)
{
    struct bulk_result *r = open_result(F.jobs, id, owner, F.objections);
    if (r == NULL)
        return NULL;
    struct piece_wait w = {0};
    buf_init(&w.text, 64u * 1024 * 1024);
    for (;;) {
        size_t before = buf_len(&w.text);
        w.done = false;
        cr_assert_eq(bulk_result_read(r, on_piece, &w), 0);
        cr_assert_not(w.done, "called back from inside bulk_result_read");
        cr_assert(run_until(&F.loop, &w.done, 5000));
        cr_assert_eq(w.status, 0, "%s", err_str(w.status));
        if (buf_len(&w.text) == before)
            break;
    }
    bulk_result_free(r);
    if (pieces != NULL)
        *pieces = w.pieces;
    char *s = strdup(buf_cstr(&w.text));
    buf_free(&w.text);
    return s;
}

static double rows_counted(const struct worker *w)
{
    double n = 0;
    for (unsigned i = 0; bulk_job_outcome_name(i) != NULL; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "outcome=\"%s\"", bulk_job_outcome_name(i));
        n += metrics_value(w->metrics, "pdstrace_bulk_rows_total", labels);
    }
    return n;
}

static bool workers_idle(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < NW; i++)
        if (bulk_worker_held(W[i].w) != 0)
            return false;
    return true;
}

/* ---- the files ---- */

/* rows copies of Jane Smith under references j1..jN (malloc'd). */
static char *janes(int rows)
{
    struct buf b;
    buf_init(&b, 1u << 20);
    cr_assert_eq(buf_append_str(&b, "reference,family,given,birth_date,gender,postcode\n"), 0);
    for (int i = 1; i <= rows; i++)
        cr_assert_eq(buf_appendf(&b, "j%d,Smith,Jane,2010-10-22,female,LS1 6AE\n", i), 0);
    char *s = strdup(buf_cstr(&b));
    buf_free(&b);
    return s;
}

/* Every row j1..jN exactly once, in order, matched. */
static void assert_janes(const char *out, int rows)
{
    const char *p = strchr(out, '\n');
    cr_assert_not_null(p);
    for (int i = 1; i <= rows; i++) {
        char line[128];
        snprintf(line, sizeof(line),
                 "\nj%d,Smith,Jane,2010-10-22,female,LS1 6AE,matched,9000000009,1,\r", i);
        const char *at = strstr(p, line);
        cr_assert_not_null(at, "row j%d missing or out of order:\n%s", i, out);
        p = at + 1;
        cr_assert_null(strstr(p, line), "row j%d twice", i);
    }
    cr_assert_null(strstr(p + 1, "\nj"), "a row after the last: %s", out);
}

/* ---- the tests ---- */

Test(bulk_job, a_simple_file_gives_one_row_per_row_in_order, .init = setup, .fini = teardown)
{
    struct worker *w = start_worker(16, 30000);
    struct upload_result up = upload(simple_in);
    cr_assert_eq(up.rows, 11);
    wait_state(up.id, "done", 30000);
    size_t pieces = 0;
    char *out = result_of(up.id, OWNER, &pieces);
    cr_assert_str_eq(out, simple_out);
    free(out);
    struct info_wait iw = job_info(up.id, OWNER);
    cr_assert_eq(iw.status, 0);
    cr_assert_eq(iw.info.state, BULK_JOB_DONE);
    cr_assert(iw.info.uploaded);
    cr_assert_eq(iw.info.rows_total, 11);
    cr_assert_eq(iw.info.rows_done, 11);
    const uint64_t want[BULK_JOB_OUTCOMES] = {4, 1, 1, 1, 0, 4, 0};
    for (unsigned i = 0; i < BULK_JOB_OUTCOMES; i++)
        cr_assert_eq(iw.info.outcome[i], want[i], "%s", bulk_job_outcome_name(i));
    cr_assert_eq(rows_counted(w), 11);
    fflush(F.log_stream);
    cr_assert(bytes_hold(F.log, F.log_len, "\"caller\":\"" OWNER "\""),
              "audit lines name the owner");
    cr_assert_not(bytes_hold(F.log, F.log_len, "Smith"), "no names in the log");
}

Test(bulk_job, a_pds_mesh_file_answers_in_the_mesh_layout_with_its_row_count, .init = setup,
     .fini = teardown)
{
    start_worker(4, 30000);
    struct upload_result up = upload(mesh_in);
    wait_state(up.id, "done", 30000);
    char *out = result_of(up.id, OWNER, NULL);
    char want[4096];
    snprintf(want, sizeof(want), "%s,SPINE_MPT_RESPONSE,8,00\r\n%s", up.id, mesh_rows);
    cr_assert_str_eq(out, want);
    free(out);
}

/* A cut after every byte, a header-only file, a byte order mark kept. */
Test(bulk_job, pieces_of_any_size_and_edge_files, .init = setup, .fini = teardown)
{
    start_worker(4, 30000);
    struct upload_result a = upload_as(simple_in, 1, OWNER);
    cr_assert_eq(a.status, 0);
    wait_state(a.id, "done", 30000);
    char *out = result_of(a.id, OWNER, NULL);
    cr_assert_str_eq(out, simple_out);
    free(out);
    struct upload_result b = upload("reference,family,birth_date\n");
    wait_state(b.id, "done", 5000);
    out = result_of(b.id, OWNER, NULL);
    cr_assert_str_eq(out, "reference,family,birth_date,outcome,matched_nhs_number,score,error\r\n");
    free(out);
    struct upload_result c = upload("\xEF\xBB\xBFreference,family,birth_date\nx,Nobody,1950-01-01");
    wait_state(c.id, "done", 10000);
    out = result_of(c.id, OWNER, NULL);
    cr_assert_str_eq(out, "\xEF\xBB\xBFreference,family,birth_date,outcome,matched_nhs_number,"
                          "score,error\r\nx,Nobody,1950-01-01,no_match,,,\r\n");
    free(out);
}

Test(bulk_job, a_bad_file_is_refused_and_leaves_nothing, .init = setup, .fini = teardown)
{
    struct upload_result r = upload_as("id,name\n1,x\n", 64, OWNER);
    cr_assert_eq(r.status, ERR_INVALID_INPUT);
    cr_assert(strstr(r.why, "neither simple") != NULL, "%s", r.why);
    r = upload_as("", 64, OWNER);
    cr_assert_eq(r.status, ERR_INVALID_INPUT);
    cr_assert(strstr(r.why, "empty") != NULL, "%s", r.why);
    /* A header that is fine, then a field that never ends: the job it made goes. */
    static char big[100000];
    memcpy(big, "reference,family,birth_date\nx,\"", 31);
    memset(big + 31, 'a', sizeof(big) - 32);
    r = upload_as(big, 4096, OWNER);
    cr_assert_eq(r.status, ERR_INVALID_INPUT);
    cr_assert(strstr(r.why, "longer than") != NULL, "%s", r.why);
    /* Commands on one connection run in order: once this is answered, so are the job's. */
    cr_assert_eq(job_info(r.id, OWNER).status, ERR_NOT_FOUND, "the job was left in Redis");
    cr_assert_eq(redis_int("DBSIZE", NULL), 0, "a key was left in Redis");
}

Test(bulk_job, another_owner_finds_no_job, .init = setup, .fini = teardown)
{
    struct upload_result up = upload(simple_in);
    cr_assert_eq(job_info(up.id, "council-b").status, ERR_NOT_FOUND);
    cr_assert_eq(job_info(up.id, OWNER).status, 0);
    cr_assert_eq(job_info("00000000-0000-4000-8000-000000000000", OWNER).status, ERR_NOT_FOUND);
    cr_assert_eq(bulk_job_get(F.jobs, "../etc", OWNER, on_info, NULL), ERR_NOT_FOUND);
    struct info_wait iw = {0};
    struct bulk_result *r;
    cr_assert_eq(bulk_result_open(&r, F.jobs, up.id, "council-b", F.objections, on_info, &iw), 0);
    cr_assert(run_until(&F.loop, &iw.done, 5000));
    cr_assert_eq(iw.status, ERR_NOT_FOUND);
    bulk_result_free(r);
    /* Not done: the result is not there yet. */
    cr_assert_null(result_of(up.id, OWNER, NULL));
    struct upload_wait d = {0};
    cr_assert_eq(bulk_job_delete(F.jobs, up.id, "council-b", on_done, &d), 0);
    cr_assert(run_until(&F.loop, &d.done, 5000));
    cr_assert_eq(d.done_status, ERR_NOT_FOUND);
    cr_assert_eq(job_info(up.id, OWNER).status, 0, "still there");
}

Test(bulk_job, a_deleted_jobs_rows_are_dropped_untraced, .init = setup, .fini = teardown)
{
    char *text = janes(20);
    struct upload_result up = upload(text);
    free(text);
    char meta[160], in[160];
    meta_key(up.id, "", meta);
    meta_key(up.id, ":in", in);
    cr_assert_eq(redis_int("XLEN %s", PREFIX "bulk:rows"), 20);
    struct upload_wait d = {0};
    cr_assert_eq(bulk_job_delete(F.jobs, up.id, OWNER, on_done, &d), 0);
    cr_assert(run_until(&F.loop, &d.done, 5000));
    cr_assert_eq(d.done_status, 0);
    cr_assert_eq(redis_int("EXISTS %s", meta), 0);
    cr_assert_eq(redis_int("EXISTS %s", in), 0, "the sealed rows went with the job");
    cr_assert_eq(job_info(up.id, OWNER).status, ERR_NOT_FOUND);
    d.done = false;
    cr_assert_eq(bulk_job_delete(F.jobs, up.id, OWNER, on_done, &d), 0);
    cr_assert(run_until(&F.loop, &d.done, 5000));
    cr_assert_eq(d.done_status, ERR_NOT_FOUND, "a second delete finds nothing");
    struct worker *w = start_worker(4, 30000);
    cr_assert(run_loop_until(&F.loop, stream_empty, NULL, 10000), "the rows were dropped");
    cr_assert_eq(rows_counted(w), 0, "and never traced");
}

Test(bulk_job, every_key_expires_after_retention, .init = setup, .fini = teardown)
{
    struct upload_result up = upload(simple_in);
    char meta[160], in[160], out[160];
    meta_key(up.id, "", meta);
    meta_key(up.id, ":in", in);
    meta_key(up.id, ":out", out);
    /* Uploaded but not done: an upload that never completes goes too. */
    cr_assert(redis_int("TTL %s", meta) > RETENTION - 10 && redis_int("TTL %s", meta) <= RETENTION);
    cr_assert(redis_int("TTL %s", in) > RETENTION - 10);
    start_worker(16, 30000);
    wait_state(up.id, "done", 30000);
    cr_assert(redis_int("TTL %s", meta) > RETENTION - 10 && redis_int("TTL %s", meta) <= RETENTION);
    cr_assert(redis_int("TTL %s", out) > RETENTION - 10 && redis_int("TTL %s", out) <= RETENTION);
    cr_assert_eq(redis_int("EXISTS %s", in), 0, "inputs go as their rows are done");
}

/* Two workers hold rows at once, and the second, with a short reclaim time and room for
 * more, takes rows from the first while the first still traces them (each PDS answer waits
 * 1.5 s): rows are traced twice, stored and counted once. */
Test(bulk_job, racing_workers_store_and_count_each_row_once, .init = setup_no_cache,
     .fini = teardown)
{
    json_decref(stack_pds_admin(&F.st, "PUT", "/_admin/faults", "{\"latency_ms\":1500}"));
    struct worker *a = start_worker(6, 600000), *b = start_worker(12, 1000);
    char *text = janes(12);
    struct upload_result up = upload(text);
    free(text);
    wait_state(up.id, "done", 60000);
    /* The second copies of rows end after the job is done: they must change nothing. */
    cr_assert(run_loop_until(&F.loop, workers_idle, NULL, 30000), "rows still held");
    char *out = result_of(up.id, OWNER, NULL);
    assert_janes(out, 12);
    free(out);
    struct info_wait iw = job_info(up.id, OWNER);
    cr_assert_eq(iw.info.rows_done, 12);
    cr_assert_eq(iw.info.outcome[0], 12);
    cr_assert_gt(rows_counted(a), 0, "the first worker traced rows");
    cr_assert_gt(rows_counted(b), 0, "the second worker traced rows");
    cr_assert_gt(rows_counted(a) + rows_counted(b), 12, "some rows were traced twice: %g + %g",
                 rows_counted(a), rows_counted(b));
    cr_assert_eq(redis_int("XLEN %s", PREFIX "bulk:rows"), 0);
}

/* Rows that take longer than reclaim_idle_ms are kept fresh by the worker tracing them, so
 * that the other worker never takes them: each row traced exactly once. */
Test(bulk_job, a_live_worker_keeps_its_rows_from_the_others, .init = setup_no_cache,
     .fini = teardown)
{
    json_decref(stack_pds_admin(&F.st, "PUT", "/_admin/faults", "{\"latency_ms\":1500}"));
    struct worker *a = start_worker(4, 1000), *b = start_worker(4, 1000);
    char *text = janes(6);
    struct upload_result up = upload(text);
    free(text);
    wait_state(up.id, "done", 60000);
    cr_assert(run_loop_until(&F.loop, workers_idle, NULL, 30000), "rows still held");
    cr_assert_eq(rows_counted(a) + rows_counted(b), 6, "a row was taken from a live worker");
    char *out = result_of(up.id, OWNER, NULL);
    assert_janes(out, 6);
    free(out);
}

/* A draining worker (a graceful stop has begun) takes no more rows: another does them. */
Test(bulk_job, a_draining_worker_takes_no_rows, .init = setup, .fini = teardown)
{
    struct worker *a = start_worker(4, 1000);
    bulk_worker_drain(a->w);
    struct upload_result up = upload(simple_in);
    struct worker *b = start_worker(4, 1000);
    wait_state(up.id, "done", 30000);
    cr_assert_eq(rows_counted(a), 0);
    cr_assert_eq(rows_counted(b), 11);
}

/* A consumer that read rows and died: another worker takes them after reclaim_idle_ms. */
Test(bulk_job, rows_of_a_dead_consumer_are_reclaimed, .init = setup, .fini = teardown)
{
    char *text = janes(10);
    struct upload_result up = upload(text);
    free(text);
    redisReply *r =
        redisCommand(F.direct, "XGROUP CREATE %s workers 0 MKSTREAM", PREFIX "bulk:rows");
    freeReplyObject(r);
    r = redisCommand(F.direct, "XREADGROUP GROUP workers dead-one COUNT 4 STREAMS %s >",
                     PREFIX "bulk:rows");
    freeReplyObject(r);
    start_worker(16, 1000);
    wait_state(up.id, "done", 30000);
    char *out = result_of(up.id, OWNER, NULL);
    assert_janes(out, 10);
    free(out);
    cr_assert_eq(job_info(up.id, OWNER).info.rows_done, 10);
    r = redisCommand(F.direct, "XPENDING %s workers", PREFIX "bulk:rows");
    cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY && r->element[0]->integer == 0,
              "nothing left pending");
    freeReplyObject(r);
}

/* A row whose sealed input was changed (or sealed under another secret) fails its job. */
Test(bulk_job, a_row_that_cannot_be_read_back_fails_its_job, .init = setup, .fini = teardown)
{
    struct upload_result up = upload(simple_in);
    char in[160];
    meta_key(up.id, ":in", in);
    redisReply *r = redisCommand(F.direct, "HSET %s 3 %s", in, "not sealed at all");
    freeReplyObject(r);
    start_worker(1, 30000);
    wait_state(up.id, "failed", 30000);
    struct info_wait iw = job_info(up.id, OWNER);
    cr_assert_eq(iw.info.state, BULK_JOB_FAILED);
    cr_assert(strstr(iw.info.error, "could not be opened") != NULL, "%s", iw.info.error);
    cr_assert_null(result_of(up.id, OWNER, NULL));
    cr_assert_eq(redis_int("EXISTS %s", in), 0, "the inputs went");
}

/* Redis holds names, birth dates, postcodes and numbers only sealed: a dump of every key
 * and value has none of them. */
Test(bulk_job, nothing_personal_in_clear_in_redis, .init = setup, .fini = teardown)
{
    struct upload_result up = upload(simple_in);
    struct upload_result mesh = upload(mesh_in);
    static const char *const words[] = {
        "Smith",      "SMITH",      "Jane",         "JANE",       "Patel",      "Priya",
        "Khan",       "Mohammed",   "Cuff",         "Ruth",       "Edna",       "Pennington",
        "Margaret",   "O'Hara",     "Alexis",       "Nobody",     "LS1 6AE",    "BD9 4RU",
        "PR1 8JD",    "DN20 0PQ",   "2010-10-22",   "20101022",   "1979-09-03", "19260107",
        "9000000025", "9000000068", "943 476 5870", "9000000009", "9000000041"};
    size_t len = 0;
    char *dump = redis_server_dump(&F.st.redis, &len);
    cr_assert_not_null(dump);
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        cr_assert_not(bytes_hold(dump, len, words[i]), "%s in clear while queued", words[i]);
    free(dump);
    start_worker(16, 30000);
    wait_state(up.id, "done", 30000);
    wait_state(mesh.id, "done", 30000);
    dump = redis_server_dump(&F.st.redis, &len);
    cr_assert_not_null(dump);
    cr_assert(bytes_hold(dump, len, up.id), "the dump holds the jobs");
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        cr_assert_not(bytes_hold(dump, len, words[i]), "%s in clear when done", words[i]);
    free(dump);
}

/* A large file goes in batches, with the body paused while too many are in flight, and
 * its result comes out in several pieces. */
Test(bulk_job, a_large_file_streams_in_and_out_in_batches, .init = setup, .fini = teardown)
{
    char *text = janes(5000);
    struct upload_result up = upload_as(text, 65536, OWNER);
    free(text);
    cr_assert_eq(up.status, 0);
    cr_assert_eq(up.rows, 5000);
    cr_assert(up.was_busy, "the upload asked for a pause");
    start_worker(64, 30000);
    wait_state(up.id, "done", 60000);
    size_t pieces = 0;
    char *out = result_of(up.id, OWNER, &pieces);
    assert_janes(out, 5000);
    cr_assert_gt(pieces, 3, "the result came in batches");
    free(out);
}

Test(bulk_job, jobs_are_counted_by_state, .init = setup, .fini = teardown)
{
    struct upload_result a = upload(simple_in);
    (void)a;
    struct metrics *m;
    cr_assert_eq(metrics_new(&m), 0);
    struct bulk_jobs *counted;
    struct bulk_jobs_config jc = {.prefix = PREFIX, .retention_s = RETENTION, .metrics = m};
    cr_assert_eq(bulk_jobs_new(&counted, F.rc, secret, strlen(secret), &jc), 0);
    struct upload_wait d = {0};
    cr_assert_eq(bulk_jobs_count(counted, on_done, &d), 0);
    cr_assert(run_until(&F.loop, &d.done, 5000));
    cr_assert_eq(metrics_value(m, "pdstrace_bulk_jobs", "state=\"queued\""), 1);
    cr_assert_eq(metrics_value(m, "pdstrace_bulk_jobs", "state=\"done\""), 0);
    struct upload_result b = upload("reference,family,birth_date\n");
    wait_state(b.id, "done", 5000);
    d.done = false;
    cr_assert_eq(bulk_jobs_count(counted, on_done, &d), 0);
    cr_assert(run_until(&F.loop, &d.done, 5000));
    cr_assert_eq(metrics_value(m, "pdstrace_bulk_jobs", "state=\"queued\""), 1);
    cr_assert_eq(metrics_value(m, "pdstrace_bulk_jobs", "state=\"done\""), 1);
    bulk_jobs_free(counted);
    metrics_free(m);
}

/* ---- objections at download ---- */

struct objection_wait {
    bool done;
    int status;
};

static void on_objection_put(int status, bool created, const struct objection *stored, void *arg)
{
    struct objection_wait *w = arg;
    (void)created;
    (void)stored;
    w->done = true;
    w->status = status;
}

static void on_objection_deleted(int status, void *arg)
{
    struct objection_wait *w = arg;
    w->done = true;
    w->status = status;
}

/* An objection by case_id, naming nhs_number too unless it is NULL. */
static void object(const char *case_id, const char *nhs_number)
{
    struct objection ob = {0};
    snprintf(ob.case_id, sizeof(ob.case_id), "%s", case_id);
    snprintf(ob.nhs_number, sizeof(ob.nhs_number), "%s", nhs_number ? nhs_number : "");
    snprintf(ob.recorded_by, sizeof(ob.recorded_by), "test");
    struct objection_wait w = {0};
    cr_assert_eq(objections_put(F.objections, &ob, on_objection_put, &w), 0);
    cr_assert(run_until(&F.loop, &w.done, 5000));
    cr_assert_eq(w.status, 0);
}

static void withdraw(const char *case_id)
{
    struct objection_wait w = {0};
    cr_assert_eq(objections_delete(F.objections, case_id, on_objection_deleted, &w), 0);
    cr_assert(run_until(&F.loop, &w.done, 5000));
    cr_assert_eq(w.status, 0);
}

/* pds-mesh up to LOCAL_PATIENT_ID, the council's id of the person: its case_id. */
#define MESH_TO_LOCAL_ID                                                                           \
    "UNIQUE REFERENCE,NHS_NO,FAMILY_NAME,GIVEN_NAME,OTHER_GIVEN_NAME,GENDER,DATE_OF_BIRTH,"        \
    "POSTCODE,DATE_OF_DEATH,ADDRESS_LINE1,ADDRESS_LINE2,ADDRESS_LINE3,ADDRESS_LINE4,"              \
    "ADDRESS_LINE5,ADDRESS_DATE,GP_PRACTICE_CODE,GP_REGISTRATION_DATE,NHAIS_POSTING_ID,"           \
    "AS_AT_DATE,LOCAL_PATIENT_ID\r\n"
#define EMPTY11 ",,,,,,,,,,,"
static const char mesh_ids_in[] =
    MESH_TO_LOCAL_ID "m1,,SMITH,JANE,,2,20101022,LS1 6AE" EMPTY11 ",case-m1\r\n"
                     "m2,,O'Hara,Alexis,,2,19880314," EMPTY11 ",case-m2\r\n"
                     "m3,9000000025,Cuff,Ruth,Edna,2,19260107,DN20 0PQ" EMPTY11 ",case-m3\r\n"
                     "m5,,Khan,Mohammed,,1,19830115," EMPTY11 ",case-m5\r\n";
static const char mesh_ids_rows[] = "m1," EMPTY21 ",,,00,9000000009,2,100\r\n"
                                    "m2," EMPTY21 ",S,,92,9000000017,2,100\r\n"
                                    "m3,9000000025" EMPTY21 ",,,90,9000000041,1,100\r\n"
                                    "m5," EMPTY21 ",,,97,9999999999,0,0\r\n";
/* m2 objected to by its case, m3's number by another case: no code, number, flag or
 * score, as a trace under objection answers. */
static const char mesh_ids_objected[] = "m1," EMPTY21 ",,,00,9000000009,2,100\r\n"
                                        "m2," EMPTY21 ",,,,,0,0\r\n"
                                        "m3,9000000025" EMPTY21 ",,,,,0,0\r\n"
                                        "m5," EMPTY21 ",,,97,9999999999,0,0\r\n";

/* Objections recorded after every row was traced: the result withholds those numbers at
 * download (the case from LOCAL_PATIENT_ID), and gives them again once withdrawn. */
Test(bulk_job, objections_recorded_after_the_trace_withhold_numbers_at_download, .init = setup,
     .fini = teardown)
{
    start_worker(4, 30000);
    struct upload_result up = upload(mesh_ids_in);
    wait_state(up.id, "done", 30000);
    char want[4096], objected[4096];
    snprintf(want, sizeof(want), "%s,SPINE_MPT_RESPONSE,4,00\r\n%s", up.id, mesh_ids_rows);
    snprintf(objected, sizeof(objected), "%s,SPINE_MPT_RESPONSE,4,00\r\n%s", up.id,
             mesh_ids_objected);
    char *out = result_of(up.id, OWNER, NULL);
    cr_assert_str_eq(out, want, "as traced");
    free(out);
    object("case-m2", NULL);
    object("case-other", "9000000041");
    out = result_of(up.id, OWNER, NULL);
    cr_assert_str_eq(out, objected);
    free(out);
    withdraw("case-m2");
    withdraw("case-other");
    out = result_of(up.id, OWNER, NULL);
    cr_assert_str_eq(out, want, "the numbers come back once the objections are withdrawn");
    free(out);
    cr_assert_eq(job_info(up.id, OWNER).info.outcome[0], 3, "the figures are the trace's");
}

struct side_redis {
    struct redis_server redis;
    struct redis_conn *rc;
};

/* The registry on a Redis of its own goes stale (its Redis frozen) while the jobs' Redis
 * answers: a read is refused before it reads anything, and a read in flight when it goes
 * stale fails, since its rows give numbers. */
Test(bulk_job, a_stale_objection_registry_stops_the_result, .init = setup, .fini = teardown)
{
    start_worker(16, 30000);
    struct upload_result up = upload(simple_in);
    wait_state(up.id, "done", 30000);
    struct side_redis side = {0};
    cr_assert_eq(redis_server_start(&side.redis), 0);
    connect_to(&side.redis, &side.rc, 5000);
    struct objections *o = objections_on(side.rc, 300);
    /* The jobs read over a connection whose deadline outlasts the freeze below. */
    struct redis_conn *patient;
    connect_conn(&patient, 10000);
    struct bulk_jobs *reader;
    struct bulk_jobs_config jc = {.prefix = PREFIX, .retention_s = RETENTION};
    cr_assert_eq(bulk_jobs_new(&reader, patient, secret, strlen(secret), &jc), 0);
    struct bulk_result *r = open_result(reader, up.id, OWNER, o);
    cr_assert_not_null(r);
    struct piece_wait w = {0};
    buf_init(&w.text, 1u << 20);
    cr_assert_eq(redis_server_freeze(&side.redis), 0);
    cr_assert(run_loop_until(&F.loop, registry_stale, o, 5000));
    cr_assert_eq(bulk_result_read(r, on_piece, &w), ERR_OBJECTIONS_UNAVAILABLE);
    cr_assert_eq(redis_server_thaw(&side.redis), 0);
    cr_assert(run_loop_until(&F.loop, registry_current, o, 5000));
    cr_assert_eq(bulk_result_read(r, on_piece, &w), 0);
    cr_assert_eq(redis_server_freeze(&F.st.redis), 0);
    cr_assert_eq(redis_server_freeze(&side.redis), 0);
    cr_assert(run_loop_until(&F.loop, registry_stale, o, 5000));
    cr_assert_not(w.done, "the rows came while the registry was current");
    cr_assert_eq(redis_server_thaw(&F.st.redis), 0);
    cr_assert(run_until(&F.loop, &w.done, 5000));
    cr_assert_eq(w.status, ERR_OBJECTIONS_UNAVAILABLE, "%s", err_str(w.status));
    cr_assert_eq(buf_len(&w.text), 0, "nothing was given");
    cr_assert_eq(redis_server_thaw(&side.redis), 0);
    buf_free(&w.text);
    bulk_result_free(r);
    objections_free(o);
    bulk_jobs_close(reader);
    redis_conn_free(patient);
    redis_conn_free(side.rc);
    bulk_jobs_free(reader);
    redis_server_destroy(&side.redis);
}

/* ---- a row far larger written out than read in ---- */

static bool ended(void *arg)
{
    struct state_wait done = {arg, "done"}, failed = {arg, "failed"};
    return in_state(&done) || in_state(&failed);
}

#define WIDE_COLUMNS 60
#define WIDE_FIELD   60000

/* A header with WIDE_COLUMNS extra columns and a row whose extra fields are each
 * WIDE_FIELD bytes that are not UTF-8 (each written out as U+FFFD, three bytes), then a
 * small row (malloc'd). */
static char *wide_file(void)
{
    struct buf b;
    buf_init(&b, 8u << 20);
    cr_assert_eq(buf_append_str(&b, "reference,family,birth_date"), 0);
    for (int i = 0; i < WIDE_COLUMNS; i++)
        cr_assert_eq(buf_appendf(&b, ",x%d", i), 0);
    cr_assert_eq(buf_append_str(&b, "\nwide,Nobody,1950-01-01"), 0);
    static char junk[WIDE_FIELD];
    memset(junk, 0xFF, sizeof(junk));
    for (int i = 0; i < WIDE_COLUMNS; i++)
        cr_assert(buf_append(&b, ",", 1) == 0 && buf_append(&b, junk, sizeof(junk)) == 0);
    cr_assert_eq(buf_append_str(&b, "\nsmall,Nobody,1950-01-01"), 0);
    for (int i = 0; i < WIDE_COLUMNS; i++)
        cr_assert_eq(buf_append(&b, ",", 1), 0);
    cr_assert_eq(buf_append(&b, "\n", 1), 0);
    char *s = strdup(buf_cstr(&b));
    buf_free(&b);
    return s;
}

/* Without strstr in a loop, which the sanitizers make quadratic (each call measures s). */
static size_t count_of(const char *s, const char *needle)
{
    size_t n = 0, len = strlen(s), k = strlen(needle);
    for (size_t i = 0; i + k <= len; i++) {
        if (memcmp(s + i, needle, k) == 0) {
            n++;
            i += k - 1;
        }
    }
    return n;
}

/* Its output row (over 10 MB) is no reason to fail the job: the row is answered invalid,
 * every bad byte replaced, and the next row follows it. */
Test(bulk_job, a_row_written_out_larger_than_any_input_row_is_answered, .init = setup,
     .fini = teardown)
{
    start_worker(4, 30000);
    char *text = wide_file();
    struct upload_result up = upload_as(text, 65536, OWNER);
    free(text);
    cr_assert_eq(up.status, 0, "%s", up.why);
    cr_assert(run_loop_until(&F.loop, ended, up.id, 30000), "the job never ended");
    cr_assert_eq(job_info(up.id, OWNER).info.state, BULK_JOB_DONE, "the job failed");
    size_t pieces = 0;
    char *out = result_of(up.id, OWNER, &pieces);
    cr_assert_not_null(out);
    cr_assert_gt(strlen(out), (size_t)WIDE_COLUMNS * WIDE_FIELD * 3);
    cr_assert_eq(count_of(out, "\xEF\xBF\xBD"), (size_t)WIDE_COLUMNS * WIDE_FIELD);
    const char *wide = strstr(out, "\r\nwide,Nobody,1950-01-01,\xEF\xBF\xBD");
    cr_assert_not_null(wide);
    const char *end = strstr(wide + 2, "\r\n");
    cr_assert_not_null(end);
    cr_assert(strstr(wide, ",invalid,,,") != NULL && strstr(wide, ",invalid,,,") < end);
    cr_assert(strncmp(end, "\r\nsmall,Nobody,1950-01-01,", 26) == 0, "%.60s", end);
    cr_assert(strstr(end, ",no_match,,,\r\n") != NULL);
    cr_assert_eq(pieces, 2, "a piece stops taking rows after the wide one");
    free(out);
}
