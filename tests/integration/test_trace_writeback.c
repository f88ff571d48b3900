/* POST /v1/trace queues write-backs, end to end: pds-trace, a real Redis with its
 * append-only file, the mock PDS and the mock case system as processes, over HTTP on
 * 127.0.0.1 (DESIGN.md §3 and §5, issue 8 points 3, 4 and 8). A matched trace with a case_id
 * is queued before it answers `queued`, from PDS or the cache, and arrives in the case system
 * under its trace_id; the other answers (not_requested, withheld, unchanged, failed) write
 * nothing; an objection recorded while a write-back waits stops it; and afterwards Redis, its
 * append-only file and a dump hold no number, name, birth date, recorded_by or note in
 * clear. The people are the fixed ones of mocks/pds/README.md. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_util.h"
#include "stack.h"
#include "test_util.h"

static struct stack st;
static struct stack_case_system cs;

#define CASE_TOKEN "case-token-0123456789"
#define JANE_NHS   "9000000009"
#define PRIYA_NHS  "9000000092"

static void teardown(void)
{
    stack_stop(&st);
    stack_case_system_stop(&cs);
}

TestSuite(trace_writeback, .timeout = 120, .fini = teardown);

/* The stack (Redis with AOF) with the mock case system as write-back target, fast retries,
 * and extra settings. */
static void start(const char *const extra[])
{
    static const char *env[16] = {"PDS_TRACE_CASE_RETRY_INITIAL_MS=50",
                                  "PDS_TRACE_CASE_RETRY_MAX_MS=200",
                                  "PDS_TRACE_CASE_TIMEOUT_MS=2000"};
    size_t n = 3;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 12; i++)
        env[n++] = extra[i];
    env[n] = NULL;
    cr_assert_eq(stack_start_with_case(&st, &cs, CASE_TOKEN, true, env), 0,
                 "stack did not start: see %s and %s", st.svc.log_path, st.pds.log_path);
}

/* Jane Smith (9000000009), with a case_id or without (NULL), and extra members ("" or
 * "\"write_back\":false," and the like). */
static const char *jane(char *out, size_t size, const char *case_id, const char *extra)
{
    snprintf(out, size,
             "{%s%s%s%s\"family\":\"Smith\",\"given\":[\"Jane\"],\"birth_date\":\"2010-10-22\","
             "\"gender\":\"female\",\"postcode\":\"LS1 6AE\"}",
             case_id != NULL ? "\"case_id\":\"" : "", case_id != NULL ? case_id : "",
             case_id != NULL ? "\"," : "", extra);
    return out;
}

/* The end of a test that passed: the service exits 0 on SIGTERM (under ASan, also without a
 * leak: LeakSanitizer would change the exit status). */
static void stop_cleanly(void)
{
    cr_assert_eq(stack_stop_service(&st), 0, "the service did not exit cleanly; see %s",
                 st.svc.log_path);
}

static const char *str(const json_t *j, const char *key)
{
    const char *v = json_string_value(json_object_get(j, key));
    return v != NULL ? v : "(null)";
}

static json_t *trace_ok(const char *body)
{
    long status;
    json_t *j = stack_trace(st.svc.port, body, &status);
    char *text = j != NULL ? json_dumps(j, 0) : NULL;
    cr_assert_eq(status, 200, "%ld %s for %s", status, text != NULL ? text : "", body);
    free(text);
    return j;
}

/* Traces body and checks outcome and write_back; the trace_id goes into trace_id. */
static void trace_expect(const char *body, const char *outcome, const char *write_back,
                         const char *source, char trace_id[64])
{
    json_t *j = trace_ok(body);
    cr_assert_str_eq(str(j, "outcome"), outcome, "for %s", body);
    cr_assert_str_eq(str(j, "write_back"), write_back, "for %s", body);
    cr_assert_str_eq(str(j, "source"), source, "for %s", body);
    if (trace_id != NULL)
        snprintf(trace_id, 64, "%s", str(j, "trace_id"));
    json_decref(j);
}

struct arrival {
    const char *case_id, *nhs, *trace_id;
};

/* The case system holds nhs for case_id, written under trace_id (its body's trace_id must
 * equal its Idempotency-Key: the mock refuses a write where they differ). */
static bool arrived(void *arg)
{
    const struct arrival *a = arg;
    json_t *j = stack_case_client(cs.proc.port, a->case_id);
    bool ok = j != NULL && strcmp(str(j, "nhs_number"), a->nhs) == 0 &&
              strcmp(str(j, "trace_id"), a->trace_id) == 0;
    json_decref(j);
    return ok;
}

static void assert_arrives(const char *case_id, const char *nhs, const char *trace_id)
{
    struct arrival a = {case_id, nhs, trace_id};
    cr_assert(wait_until(arrived, &a, 10000), "the write-back for %s never arrived; see %s",
              case_id, st.svc.log_path);
}

/* How many writes to case_id the case system answered with status (its request log), and
 * whether each carried Idempotency-Key key (when key is not NULL). */
static int case_writes(const char *case_id, long status, const char *key)
{
    char path[128];
    json_t *all = stack_case_admin(cs.proc.port, "GET", "/_admin/requests", NULL), *r;
    int n = 0;
    size_t i;
    snprintf(path, sizeof(path), "/clients/%s/nhs-number", case_id);
    json_array_foreach(json_object_get(all, "requests"), i, r)
    {
        if (strcmp(str(r, "path"), path) != 0 ||
            json_integer_value(json_object_get(r, "status")) != status)
            continue;
        cr_assert(key == NULL || strcmp(str(r, "idempotency_key"), key) == 0,
                  "a write to %s without Idempotency-Key %s", case_id, key);
        n++;
    }
    json_decref(all);
    return n;
}

static bool queue_empty(void *arg)
{
    (void)arg;
    return redis_server_query(&st.redis, "ZCARD pdstrace:writeback:pending") == 0;
}

/* Nothing is left to deliver, and nothing was buried: a queued write-back stays in the
 * pending set until the case system has answered 2xx, so once the set is empty every
 * write-back ever queued has reached the mock (or was withheld). */
static void wait_queue_settled(void)
{
    cr_assert(wait_until(queue_empty, NULL, 10000), "write-backs still pending; see %s",
              st.svc.log_path);
    cr_assert_eq(redis_server_query(&st.redis, "HLEN pdstrace:writeback:dead"), 0);
}

static void assert_never_arrived(const char *case_id)
{
    json_t *j = stack_case_client(cs.proc.port, case_id);
    cr_assert_null(j, "the case system holds a number for %s", case_id);
    cr_assert_eq(case_writes(case_id, 200, NULL), 0);
}

Test(trace_writeback, a_matched_trace_queues_its_write_back_and_the_others_write_nothing)
{
    char body[400], t1[64], t2[64];
    start(NULL);
    /* From PDS. */
    trace_expect(jane(body, sizeof(body), "WB-1", ""), "matched", "queued", "pds", t1);
    assert_arrives("WB-1", JANE_NHS, t1);
    cr_assert_eq(case_writes("WB-1", 200, t1), 1);
    /* From the cache, for another case: queued like a fresh trace, under its own id. */
    trace_expect(jane(body, sizeof(body), "WB-2", ""), "matched", "queued", "cache", t2);
    cr_assert_str_neq(t1, t2);
    assert_arrives("WB-2", JANE_NHS, t2);
    cr_assert_eq(case_writes("WB-2", 200, t2), 1);
    /* Not asked for. */
    trace_expect(jane(body, sizeof(body), "WB-3", "\"write_back\":false,"), "matched",
                 "not_requested", "cache", NULL);
    /* A previous name only: a person must review it, so it is never written. */
    trace_expect("{\"case_id\":\"WB-4\",\"family\":\"Pennington\",\"given\":\"Margaret\","
                 "\"birth_date\":\"1947-08-23\",\"postcode\":\"PR1 8JD\"}",
                 "potential_match", "withheld", "pds", NULL);
    /* The case system's own number, confirmed by a retrieve: nothing to write. */
    json_t *j = trace_ok("{\"case_id\":\"WB-5\",\"family\":\"Patel\",\"given\":\"Priya\","
                         "\"birth_date\":\"1979-09-03\",\"nhs_number\":\"" PRIYA_NHS "\"}");
    cr_assert_str_eq(str(j, "outcome"), "matched");
    cr_assert_str_eq(str(j, "nhs_number"), PRIYA_NHS);
    cr_assert_str_eq(str(j, "write_back"), "unchanged");
    cr_assert_str_eq(str(j, "source"), "pds");
    cr_assert_eq(json_integer_value(json_object_get(j, "steps")), 1);
    json_decref(j);

    wait_queue_settled();
    assert_never_arrived("WB-3");
    assert_never_arrived("WB-4");
    assert_never_arrived("WB-5");
    cr_assert_eq(stack_case_stat(cs.proc.port, "deliveries"), 2);
    cr_assert_eq(stack_case_stat(cs.proc.port, "duplicates"), 0);
    json_t *a = stack_wait_audit_line(&st.svc, "trace", "WB-2", 5000);
    cr_assert_str_eq(str(a, "write_back"), "queued");
    json_decref(a);
    a = stack_wait_audit_line(&st.svc, "writeback_delivered", "WB-1", 5000);
    cr_assert_not_null(a, "no writeback_delivered for WB-1; see %s", st.svc.log_path);
    cr_assert_str_eq(str(a, "trace_id"), t1);
    json_decref(a);
    stop_cleanly();
}

/* Redis answers PING while it still loads its append-only file, and LOADING to the rest. */
static bool redis_loaded(void *arg)
{
    (void)arg;
    return redis_server_query(&st.redis, "DBSIZE") >= 0;
}

Test(trace_writeback, redis_down_when_the_write_back_is_queued_answers_the_number_and_failed)
{
    /* A long bound keeps the objection copy current once Redis is gone, so that the trace
     * gets as far as queueing (a short one would fail closed first: another test). */
    const char *env[] = {"PDS_TRACE_OBJECTIONS_MAX_STALENESS_MS=20000", NULL};
    char body[400];
    start(env);
    cr_assert_eq(redis_server_stop(&st.redis), 0);
    /* The cache lookup fails, PDS finds Jane, and the queue cannot take the write-back. */
    json_t *j = trace_ok(jane(body, sizeof(body), "WB-DOWN", ""));
    cr_assert_str_eq(str(j, "outcome"), "matched");
    cr_assert_str_eq(str(j, "nhs_number"), JANE_NHS);
    cr_assert_str_eq(str(j, "write_back"), "failed");
    json_decref(j);
    json_t *a = stack_wait_audit_line(&st.svc, "trace", "WB-DOWN", 5000);
    cr_assert_str_eq(str(a, "write_back"), "failed");
    json_decref(a);
    /* Redis back (its append-only file kept everything it acknowledged): nothing waits for
     * WB-DOWN, so nothing will ever be written for it. */
    cr_assert_eq(redis_server_restart(&st.redis), 0);
    cr_assert(wait_until(redis_loaded, NULL, 5000), "Redis never loaded its append-only file");
    cr_assert_eq(redis_server_query(&st.redis, "ZCARD pdstrace:writeback:pending"), 0);
    cr_assert_eq(redis_server_query(&st.redis, "XLEN pdstrace:writeback"), 0);
    struct http_probe ready = {st.svc.port, "/readyz", 200};
    cr_assert(wait_until(http_probe_answers, &ready, 10000));
    assert_never_arrived("WB-DOWN");
    stop_cleanly();
}

static bool failed_at_least(void *arg)
{
    return stack_case_stat(cs.proc.port, "failed") >= *(const long long *)arg;
}

Test(trace_writeback, an_objection_recorded_while_a_write_back_waits_stops_it)
{
    char body[400], t1[64], t2[64];
    start(NULL);
    cr_assert_eq(stack_case_faults(cs.proc.port, "{\"fail_rate\":1,\"fail_status\":503}"), 0);
    trace_expect(jane(body, sizeof(body), "WBO-1", ""), "matched", "queued", "pds", t1);
    /* Refused twice: it is waiting in the queue for its next attempt. */
    long long two = 2;
    cr_assert(wait_until(failed_at_least, &two, 10000), "never attempted; see %s", st.svc.log_path);
    cr_assert_eq(stack_request(st.svc.port, STACK_KEY_ALL, "PUT", "/v1/objections/WBO-1",
                               "{\"recorded_by\":\"Clerk A\"}", NULL),
                 201);
    cr_assert_eq(stack_case_faults(cs.proc.port, "{\"fail_rate\":0}"), 0);
    json_t *a = stack_wait_audit_line(&st.svc, "writeback_withheld", "WBO-1", 10000);
    cr_assert_not_null(a, "no writeback_withheld; see %s", st.svc.log_path);
    cr_assert_str_eq(str(a, "trace_id"), t1);
    json_decref(a);
    /* A write-back queued after it, for another case, goes through: the case system is
     * back and the worker delivers. */
    trace_expect("{\"case_id\":\"WBO-2\",\"family\":\"Patel\",\"given\":\"Priya\","
                 "\"birth_date\":\"1979-09-03\",\"postcode\":\"BD9 4RU\"}",
                 "matched", "queued", "pds", t2);
    assert_arrives("WBO-2", PRIYA_NHS, t2);
    /* Withheld means acknowledged and gone: with the queue empty nothing is left that
     * could ever deliver WBO-1 (no timed wait needed to prove it never arrives). */
    wait_queue_settled();
    assert_never_arrived("WBO-1");
    cr_assert_geq(case_writes("WBO-1", 503, t1), 2);
    cr_assert_eq(stack_case_stat(cs.proc.port, "deliveries"), 1);
    stop_cleanly();
}

static bool dead_letters(void *arg)
{
    return redis_server_query(&st.redis, "HLEN pdstrace:writeback:dead") >= *(const long long *)arg;
}

static bool delayed(void *arg)
{
    (void)arg;
    return redis_server_query(&st.redis, "HLEN pdstrace:writeback:delayed:entries") >= 1;
}

/* What must never be in Redis in clear: the numbers, the person's names, birth date and
 * postcode (in the forms a request or PDS gives them), who recorded an objection and its
 * note. Case ids and trace ids are allowed (the queue needs them). */
static const char *const clear[] = {
    JANE_NHS,     PRIYA_NHS,         "900 000 0009",   "Jane",   "Smith", "SMITH",
    "2010-10-22", "20101022",        "LS1 6AE",        "LS16AE", "Priya", "Patel",
    "1979-09-03", "Recorder Person", "a private note",
};

static void assert_clean(const char *what, const char *data, size_t len)
{
    cr_assert_not_null(data, "no %s", what);
    for (size_t i = 0; i < sizeof(clear) / sizeof(clear[0]); i++)
        cr_assert(!bytes_hold(data, len, clear[i]), "%s holds %s in clear", what, clear[i]);
}

static bool aof_holds(void *arg)
{
    size_t len = 0;
    char *aof = redis_server_read_aof(&st.redis, &len);
    bool holds = bytes_hold(aof, len, arg);
    free(aof);
    return holds;
}

Test(trace_writeback, redis_holds_nothing_in_clear_after_objections_and_write_backs)
{
    char body[400], t1[64], t2[64], t3[64];
    start(NULL);
    cr_assert_eq(stack_case_faults(cs.proc.port, "{\"reject_cases\":[\"DUMP-DEAD\"]}"), 0);
    /* Delivered, buried (422 → a dead letter holding its sealed entry), and waiting. */
    trace_expect(jane(body, sizeof(body), "DUMP-1", ""), "matched", "queued", "pds", t1);
    assert_arrives("DUMP-1", JANE_NHS, t1);
    trace_expect(jane(body, sizeof(body), "DUMP-DEAD", ""), "matched", "queued", "cache", t2);
    long long one = 1;
    cr_assert(wait_until(dead_letters, &one, 10000), "no dead letter");
    cr_assert_eq(stack_case_faults(cs.proc.port, "{\"fail_rate\":1}"), 0);
    trace_expect("{\"case_id\":\"DUMP-WAIT\",\"family\":\"Patel\",\"given\":\"Priya\","
                 "\"birth_date\":\"1979-09-03\",\"postcode\":\"BD9 4RU\"}",
                 "matched", "queued", "pds", t3);
    cr_assert(wait_until(delayed, NULL, 10000), "the write-back never waited for a retry");
    /* Objections with numbers, recorded_by and notes; one withdrawn, one kept. */
    const char *obj = "{\"nhs_number\":\"" JANE_NHS "\",\"recorded_by\":\"Recorder Person\","
                      "\"note\":\"a private note\"}";
    cr_assert_eq(
        stack_request(st.svc.port, STACK_KEY_ALL, "PUT", "/v1/objections/DUMP-OBJ-1", obj, NULL),
        201);
    cr_assert_eq(stack_request(st.svc.port, STACK_KEY_ALL, "PUT", "/v1/objections/DUMP-OBJ-2",
                               "{\"nhs_number\":\"" PRIYA_NHS "\",\"recorded_by\":"
                               "\"Recorder Person\",\"note\":\"a private note\"}",
                               NULL),
                 201);
    cr_assert_eq(stack_request(st.svc.port, STACK_KEY_ALL, "DELETE", "/v1/objections/DUMP-OBJ-2",
                               NULL, NULL),
                 204);
    trace_expect(jane(body, sizeof(body), NULL, ""), "objection", "withheld", "cache", NULL);

    /* Every key and value. */
    size_t len = 0;
    char *dump = redis_server_dump(&st.redis, &len);
    cr_assert_not_null(dump);
    cr_assert(bytes_hold(dump, len, "DUMP-WAIT") || bytes_hold(dump, len, t3),
              "the dump misses the waiting write-back");
    assert_clean("the key dump", dump, len);
    free(dump);
    /* The append-only file, once it holds the last change (the withdrawal's log entry
     * carries "del"; the trace ids prove the queue's writes are in). */
    cr_assert(wait_until(aof_holds, t3, 5000), "the AOF never got the last write-back");
    char *aof = redis_server_read_aof(&st.redis, &len);
    cr_assert(bytes_hold(aof, len, t1) && bytes_hold(aof, len, t2));
    assert_clean("the append-only file", aof, len);
    free(aof);
    /* A snapshot without compression, so that no string hides in LZF. */
    cr_assert_eq(redis_server_query(&st.redis, "CONFIG SET rdbcompression no"), 0);
    cr_assert_eq(redis_server_query(&st.redis, "SAVE"), 0);
    char path[400];
    snprintf(path, sizeof(path), "%s/dump.rdb", st.redis.dir);
    char *rdb = read_file(path, &len);
    cr_assert(rdb != NULL && bytes_hold(rdb, len, t3), "no snapshot at %s", path);
    assert_clean("the snapshot", rdb, len);
    free(rdb);
    stop_cleanly();
}
