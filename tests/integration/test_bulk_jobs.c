/* Bulk jobs over HTTP (issue 9 points 6 and 7): the binary against a real Redis and the
 * mock PDS. Both formats end to end (upload, poll the status until done, fetch the result
 * and compare its text), the refusals (a bad header, a file over bulk.max_bytes, another
 * key's job, a deleted one), objections recorded after the rows were traced honoured by
 * the result, HEAD on a result, two instances sharing one job, and an instance killed
 * with SIGKILL mid-job whose rows the other takes over. The people are the fixed ones of
 * mocks/pds/README.md and made-up ones PDS does not know. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http_util.h"
#include "pdstrace/buf.h"
#include "pdstrace/crypto.h"
#include "stack.h"
#include "test_util.h"

#define KEY_B "council-b-key-0123456789" /* another key with the role bulk */

static struct stack st;
static char keys_dir[64], keys_env[160];

static void teardown(void)
{
    stack_stop(&st);
    if (keys_dir[0] != '\0') {
        char path[128];
        snprintf(path, sizeof(path), "%s/keys.json", keys_dir);
        unlink(path);
        rmdir(keys_dir);
    }
}

/* The stack's keys, and council-b's. */
static void write_keys(void)
{
    const char *names[] = {"case-system", "all", "council-b"};
    const char *keys[] = {STACK_KEY_TRACE, STACK_KEY_ALL, KEY_B};
    const char *roles[] = {"[\"trace\"]", "[\"trace\",\"bulk\",\"objections\",\"admin\"]",
                           "[\"bulk\"]"};
    snprintf(keys_dir, sizeof(keys_dir), "/tmp/pdsbulkXXXXXX");
    cr_assert_not_null(mkdtemp(keys_dir));
    snprintf(keys_env, sizeof(keys_env), "PDS_TRACE_API_KEYS_FILE=%s/keys.json", keys_dir);
    FILE *f = fopen(keys_env + strlen("PDS_TRACE_API_KEYS_FILE="), "w");
    cr_assert_not_null(f);
    fprintf(f, "[");
    for (int i = 0; i < 3; i++) {
        unsigned char d[CRYPTO_SHA256_LEN];
        char hex[2 * CRYPTO_SHA256_LEN + 1];
        crypto_sha256(keys[i], strlen(keys[i]), d);
        crypto_hex(d, sizeof(d), hex);
        fprintf(f, "%s{\"name\":\"%s\",\"key_sha256\":\"%s\",\"roles\":%s}", i ? "," : "", names[i],
                hex, roles[i]);
    }
    fprintf(f, "]\n");
    fclose(f);
}

/* The stack with council-b's key and extra settings (NULL-terminated, at most 8). */
static void setup_with(const char *const extra[])
{
    const char *env[12] = {keys_env, "PDS_TRACE_BULK_MAX_BYTES=65536"};
    size_t n = 2;
    write_keys();
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 11; i++)
        env[n++] = extra[i];
    cr_assert_eq(stack_start_pds(&st, NULL, env), 0, "the stack starts");
}

static void setup(void)
{
    setup_with(NULL);
}

/* ---- requests ---- */

static long post_csv(int port, const char *key, const char *type, const char *text, json_t **answer)
{
    struct http_reply r;
    char ct[64];
    snprintf(ct, sizeof(ct), "Content-Type: %s", type);
    const char *h[] = {ct, key != NULL ? stack_auth(key) : NULL, NULL};
    cr_assert_eq(http_do(port, "POST", "/v1/bulk", h, text, &r), 0);
    if (answer != NULL)
        *answer = json_loads(r.body, 0, NULL);
    long status = r.status;
    http_reply_free(&r);
    return status;
}

/* Uploads text as the key "all": the job id (static). */
static const char *upload(int port, const char *text)
{
    static char id[64];
    json_t *j = NULL;
    long status = post_csv(port, STACK_KEY_ALL, "text/csv", text, &j);
    cr_assert_eq(status, 202, "POST /v1/bulk: %ld", status);
    const char *job = json_string_value(json_object_get(j, "job_id"));
    const char *url = json_string_value(json_object_get(j, "status_url"));
    cr_assert(job != NULL && url != NULL);
    snprintf(id, sizeof(id), "%s", job);
    char want[96];
    snprintf(want, sizeof(want), "/v1/bulk/%s", id);
    cr_assert_str_eq(url, want);
    json_decref(j);
    return id;
}

static json_t *status_of(int port, const char *key, const char *id, long *code)
{
    char path[96];
    json_t *j = NULL;
    snprintf(path, sizeof(path), "/v1/bulk/%s", id);
    *code = stack_request(port, key, "GET", path, NULL, &j);
    return j;
}

struct done_wait {
    int port;
    const char *id;
};

static bool job_done(void *arg)
{
    struct done_wait *w = arg;
    long code;
    json_t *j = status_of(w->port, STACK_KEY_ALL, w->id, &code);
    const char *state = json_string_value(json_object_get(j, "state"));
    bool done = code == 200 && state != NULL && strcmp(state, "done") == 0;
    json_decref(j);
    return done;
}

static void wait_done(int port, const char *id, unsigned ms)
{
    struct done_wait w = {port, id};
    cr_assert(wait_until(job_done, &w, ms), "job %s never done", id);
}

/* The result's text (free it), its status in *code. */
static char *result_of(int port, const char *key, const char *id, long *code)
{
    char path[128];
    struct http_reply r;
    snprintf(path, sizeof(path), "/v1/bulk/%s/result", id);
    const char *h[] = {stack_auth(key), NULL};
    cr_assert_eq(http_do(port, "GET", path, h, NULL, &r), 0);
    *code = r.status;
    char *body = r.body;
    r.body = NULL;
    http_reply_free(&r);
    return body;
}

static char *result_ok(int port, const char *id)
{
    long code;
    char *out = result_of(port, STACK_KEY_ALL, id, &code);
    cr_assert_eq(code, 200, "result: %ld %s", code, out);
    return out;
}

static void assert_error(long status, json_t *j, long want, const char *code, const char *says)
{
    json_t *e = json_object_get(j, "error");
    const char *c = json_string_value(json_object_get(e, "code"));
    const char *m = json_string_value(json_object_get(e, "message"));
    cr_assert_eq(status, want, "status %ld, want %ld", status, want);
    cr_assert(c != NULL && strcmp(c, code) == 0, "code %s, want %s", c ? c : "(none)", code);
    cr_assert(says == NULL || (m != NULL && strstr(m, says) != NULL), "message: %s",
              m ? m : "(none)");
}

/* ---- the files ---- */

static const char simple_in[] = "reference,family,given,birth_date,gender,postcode,nhs_number\n"
                                "r1,Smith,Jane,2010-10-22,female,LS1 6AE,\n"
                                "r2,Khan,Mohammed,1983-01-15,male,,\n"
                                "r3,Nobody,Anne,1950-01-01,,,\n"
                                "r4,Cuff,Ruth,1926-01-07,female,,9000000025\n"
                                "r5,,Jane,2010-10-22,,,\n"
                                "\"r6, quoted\",\"SMITH\",\"Jane\",2010-10-22,female,ls16ae,\n"
                                "r7,Smith,Jane\n";

static const char simple_out[] =
    "reference,family,given,birth_date,gender,postcode,nhs_number,outcome,matched_nhs_number,"
    "score,error\r\n"
    "r1,Smith,Jane,2010-10-22,female,LS1 6AE,,matched,9000000009,1,\r\n"
    "r2,Khan,Mohammed,1983-01-15,male,,,multiple_matches,,,\r\n"
    "r3,Nobody,Anne,1950-01-01,,,,no_match,,,\r\n"
    "r4,Cuff,Ruth,1926-01-07,female,,9000000025,matched,9000000041,1,\r\n"
    "r5,,Jane,2010-10-22,,,,invalid,,,family: missing\r\n"
    "\"r6, quoted\",SMITH,Jane,2010-10-22,female,ls16ae,,matched,9000000009,1,\r\n"
    "r7,Smith,Jane,,,,,invalid,,,the row has 3 fields; the header has 7\r\n";

static const char mesh_in[] =
    "UNIQUE REFERENCE,NHS_NO,FAMILY_NAME,GIVEN_NAME,OTHER_GIVEN_NAME,GENDER,DATE_OF_BIRTH,"
    "POSTCODE\r\n"
    "m1,,SMITH,JANE,,2,20101022,LS1 6AE\r\n"
    "m2,,O'Hara,Alexis,,2,19880314,\r\n"
    "m3,9000000025,Cuff,Ruth,Edna,2,19260107,DN20 0PQ\r\n"
    "m4,9000000068,Nobody,Anne,,0,19500101,\r\n"
    "m5,,Khan,Mohammed,,1,19830115,\r\n"
    "m6,,Smith,Jane,,2,201010,\r\n";

#define EMPTY21 ",,,,,,,,,,,,,,,,,,,,,"
static const char mesh_rows[] = "m1," EMPTY21 ",,,00,9000000009,2,100\r\n"
                                "m2," EMPTY21 ",S,,92,9000000017,2,100\r\n"
                                "m3,9000000025" EMPTY21 ",,,90,9000000041,1,100\r\n"
                                "m4,9000000068" EMPTY21 ",,,91,0000000000,1,0\r\n"
                                "m5," EMPTY21 ",,,97,9999999999,0,0\r\n"
                                "m6," EMPTY21 ",,,96,0000000000,0,0\r\n";

/* Made-up people PDS does not know, each costing the whole cascade (malloc'd). */
static char *unknown_people(int rows)
{
    struct buf b;
    buf_init(&b, 1u << 20);
    cr_assert_eq(buf_append_str(&b, "reference,family,given,birth_date,address\n"), 0);
    for (int i = 0; i < rows; i++)
        cr_assert_eq(
            buf_appendf(&b, "ref-%d,Unknown,Person,19%02d-%02d-%02d,\"%d Long Road,\nLeeds\"\n", i,
                        20 + i % 80, 1 + i % 12, 1 + i % 28, i),
            0);
    char *s = strdup(buf_cstr(&b));
    buf_free(&b);
    return s;
}

/* Every row ref-0..ref-(rows-1) exactly once, in order, answered no_match. */
static void assert_each_once(const char *out, int rows)
{
    const char *p = out;
    for (int i = 0; i < rows; i++) {
        char ref[32];
        snprintf(ref, sizeof(ref), "\nref-%d,", i);
        const char *at = strstr(p, ref);
        cr_assert_not_null(at, "ref-%d missing or out of order", i);
        cr_assert_null(strstr(at + 1, ref), "ref-%d twice", i);
        const char *end = strstr(at, "\r\n");
        cr_assert(end != NULL && end - at > 12 && strncmp(end - 12, ",no_match,,,", 12) == 0,
                  "ref-%d: %.*s", i, (int)(end ? end - at : 40), at);
        p = at + 1;
    }
}

/* ---- the tests ---- */

Test(bulk_jobs, a_simple_file_end_to_end, .init = setup, .fini = teardown, .timeout = 120)
{
    const char *id = upload(st.svc.port, simple_in);
    wait_done(st.svc.port, id, 60000);
    char *out = result_ok(st.svc.port, id);
    cr_assert_str_eq(out, simple_out);
    free(out);
    long code;
    json_t *j = status_of(st.svc.port, STACK_KEY_ALL, id, &code);
    cr_assert_eq(code, 200);
    cr_assert_eq(json_integer_value(json_object_get(j, "rows_total")), 7);
    cr_assert_eq(json_integer_value(json_object_get(j, "rows_done")), 7);
    json_t *o = json_object_get(j, "outcomes");
    cr_assert_eq(json_integer_value(json_object_get(o, "matched")), 3);
    cr_assert_eq(json_integer_value(json_object_get(o, "multiple_matches")), 1);
    cr_assert_eq(json_integer_value(json_object_get(o, "no_match")), 1);
    cr_assert_eq(json_integer_value(json_object_get(o, "invalid")), 2);
    cr_assert_eq(json_integer_value(json_object_get(o, "potential_match")), 0);
    json_decref(j);
    cr_assert_eq(proc_log_count(&st.svc, "\"event\":\"bulk_job_created\""), 1);
    cr_assert_eq(proc_log_count(&st.svc, "\"purpose\":\"bulk\""), 5, "an audit line per trace");
    cr_assert_eq(proc_log_count(&st.svc, "\"caller\":\"all\""), 6);
    cr_assert_eq(proc_log_count(&st.svc, "Smith"), 0, "no names in the log");
}

Test(bulk_jobs, a_pds_mesh_file_end_to_end, .init = setup, .fini = teardown, .timeout = 120)
{
    const char *id = upload(st.svc.port, mesh_in);
    wait_done(st.svc.port, id, 60000);
    char *out = result_ok(st.svc.port, id);
    char want[4096];
    snprintf(want, sizeof(want), "%s,SPINE_MPT_RESPONSE,6,00\r\n%s", id, mesh_rows);
    cr_assert_str_eq(out, want);
    free(out);
}

static long count_job_keys(void)
{
    return redis_server_query(&st.redis, "KEYS pdstrace:bulk:job:*");
}

Test(bulk_jobs, refused_files_leave_no_job, .init = setup, .fini = teardown, .timeout = 120)
{
    json_t *j = NULL;
    long s = post_csv(st.svc.port, STACK_KEY_ALL, "text/csv", "id,name\n1,x\n", &j);
    assert_error(s, j, 400, "invalid_field", "neither simple");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "field")),
                     "body");
    json_decref(j);
    s = post_csv(st.svc.port, STACK_KEY_ALL, "text/csv", "reference,given\nx,y\n", &j);
    assert_error(s, j, 400, "invalid_field", "family");
    json_decref(j);
    s = post_csv(st.svc.port, STACK_KEY_ALL, "application/json", simple_in, &j);
    assert_error(s, j, 415, "invalid_field", "text/csv");
    json_decref(j);
    char *big = unknown_people(2000); /* about 90 KB, over the 64 KiB of this stack */
    s = post_csv(st.svc.port, STACK_KEY_ALL, "text/csv", big, &j);
    free(big);
    assert_error(s, j, 413, "payload_too_large", "bulk.max_bytes");
    json_decref(j);
    s = post_csv(st.svc.port, NULL, "text/csv", simple_in, &j);
    assert_error(s, j, 401, "unauthorised", NULL);
    json_decref(j);
    s = post_csv(st.svc.port, STACK_KEY_TRACE, "text/csv", simple_in, &j);
    assert_error(s, j, 403, "forbidden", "bulk");
    json_decref(j);
    cr_assert_eq(count_job_keys(), 0, "no job was left behind");
    cr_assert_eq(proc_log_count(&st.svc, "bulk_job_created"), 0);
}

static bool job_keys_exist(void *arg)
{
    (void)arg;
    return count_job_keys() > 0;
}

static bool no_job_keys(void *arg)
{
    (void)arg;
    return count_job_keys() == 0;
}

/* Sends text as one chunk of a chunked body. */
static int send_chunk(int fd, const char *text, size_t n)
{
    char size[32];
    snprintf(size, sizeof(size), "%zx\r\n", n);
    return tcp_send(fd, size, strlen(size)) || tcp_send(fd, text, n) || tcp_send(fd, "\r\n", 2);
}

/* A chunked upload has no length to refuse it by: it goes over bulk.max_bytes midway,
 * once its job is in Redis, and the job goes. */
Test(bulk_jobs, a_chunked_file_over_the_limit_is_refused_midway, .init = setup, .fini = teardown,
     .timeout = 120)
{
    char head[256];
    snprintf(head, sizeof(head),
             "POST /v1/bulk HTTP/1.1\r\nHost: t\r\n%s\r\nContent-Type: text/csv\r\n"
             "Transfer-Encoding: chunked\r\n\r\n",
             stack_auth(STACK_KEY_ALL));
    char *text = unknown_people(2000);
    size_t n = strlen(text), first = 30000;
    int fd = tcp_connect(st.svc.port, 10000);
    cr_assert_geq(fd, 0);
    cr_assert_eq(tcp_send(fd, head, strlen(head)), 0);
    cr_assert_eq(send_chunk(fd, text, first), 0);
    cr_assert(wait_until(job_keys_exist, NULL, 10000), "the job was made from the first part");
    send_chunk(fd, text + first, n - first); /* the server may close before the end */
    free(text);
    char answer[4096];
    cr_assert_gt(tcp_recv_until(fd, answer, sizeof(answer), "}}", 1), 0);
    close(fd);
    cr_assert(strncmp(answer, "HTTP/1.1 413", 12) == 0, "%s", answer);
    cr_assert(strstr(answer, "payload_too_large") != NULL, "%s", answer);
    cr_assert(wait_until(no_job_keys, NULL, 10000), "the job was deleted");
}

Test(bulk_jobs, another_key_finds_nothing_and_delete_removes_the_job, .init = setup,
     .fini = teardown, .timeout = 120)
{
    const char *id = upload(st.svc.port, simple_in);
    char job[64], path[128], result[160];
    snprintf(job, sizeof(job), "%s", id);
    snprintf(path, sizeof(path), "/v1/bulk/%s", job);
    snprintf(result, sizeof(result), "/v1/bulk/%s/result", job);
    wait_done(st.svc.port, job, 60000);
    long code;
    json_t *j = status_of(st.svc.port, KEY_B, job, &code);
    assert_error(code, j, 404, "not_found", NULL);
    json_decref(j);
    char *out = result_of(st.svc.port, KEY_B, job, &code);
    cr_assert_eq(code, 404);
    free(out);
    cr_assert_eq(stack_request(st.svc.port, KEY_B, "DELETE", path, NULL, NULL), 404);
    j = status_of(st.svc.port, STACK_KEY_ALL, "not-a-job", &code);
    assert_error(code, j, 404, "not_found", NULL);
    json_decref(j);
    cr_assert_gt(count_job_keys(), 0);
    cr_assert_eq(stack_request(st.svc.port, STACK_KEY_ALL, "DELETE", path, NULL, NULL), 204);
    cr_assert_eq(count_job_keys(), 0, "every key of the job went");
    j = status_of(st.svc.port, STACK_KEY_ALL, job, &code);
    assert_error(code, j, 404, "not_found", NULL);
    json_decref(j);
    out = result_of(st.svc.port, STACK_KEY_ALL, job, &code);
    cr_assert_eq(code, 404);
    free(out);
    cr_assert_eq(stack_request(st.svc.port, STACK_KEY_ALL, "DELETE", path, NULL, NULL), 404);
    cr_assert_eq(proc_log_count(&st.svc, "\"event\":\"bulk_job_deleted\""), 1);
}

/* ---- objections at download ---- */

static const char cases_in[] =
    "reference,family,given,birth_date,gender,postcode,nhs_number,case_id\n"
    "r1,Smith,Jane,2010-10-22,female,LS1 6AE,,case-1\n"
    "r2,Patel,Priya,1979-09-03,,BD9 4RU,,case-2\n"
    "r3,Cuff,Ruth,1926-01-07,female,,9000000025,case-3\n"
    "r4,Nobody,Anne,1950-01-01,,,,case-4\n";

#define CASES_HEAD                                                                                 \
    "reference,family,given,birth_date,gender,postcode,nhs_number,case_id,outcome,"                \
    "matched_nhs_number,score,error\r\n"
static const char cases_out[] =
    CASES_HEAD "r1,Smith,Jane,2010-10-22,female,LS1 6AE,,case-1,matched,9000000009,1,\r\n"
               "r2,Patel,Priya,1979-09-03,,BD9 4RU,,case-2,matched,9000000092,0.99,\r\n"
               "r3,Cuff,Ruth,1926-01-07,female,,9000000025,case-3,matched,9000000041,1,\r\n"
               "r4,Nobody,Anne,1950-01-01,,,,case-4,no_match,,,\r\n";
/* r1 objected to by its case, r3's number by another case. */
static const char cases_objected[] =
    CASES_HEAD "r1,Smith,Jane,2010-10-22,female,LS1 6AE,,case-1,objection,,,\r\n"
               "r2,Patel,Priya,1979-09-03,,BD9 4RU,,case-2,matched,9000000092,0.99,\r\n"
               "r3,Cuff,Ruth,1926-01-07,female,,9000000025,case-3,objection,,,\r\n"
               "r4,Nobody,Anne,1950-01-01,,,,case-4,no_match,,,\r\n";

struct result_wait {
    int port;
    const char *id;
    const char *want;
};

static bool result_is(void *arg)
{
    struct result_wait *w = arg;
    long code;
    char *out = result_of(w->port, STACK_KEY_ALL, w->id, &code);
    bool is = code == 200 && strcmp(out, w->want) == 0;
    free(out);
    return is;
}

static const char *const fast_objections[] = {"PDS_TRACE_OBJECTIONS_MAX_STALENESS_MS=500", NULL};

/* Recorded through one instance once every row was traced, the objections reach the result
 * read through the other within objections.max_staleness_ms; withdrawn, the numbers come
 * back. */
Test(bulk_jobs, objections_recorded_after_the_trace_are_honoured_by_the_result, .fini = teardown,
     .timeout = 120)
{
    setup_with(fast_objections);
    const char *id = upload(st.svc.port, cases_in);
    char job[64];
    snprintf(job, sizeof(job), "%s", id);
    wait_done(st.svc.port, job, 60000);
    char *out = result_ok(st.svc.port, job);
    cr_assert_str_eq(out, cases_out);
    free(out);
    struct proc peer;
    cr_assert_eq(stack_start_peer(&st, &peer, fast_objections), 0);
    long s = stack_request(st.svc.port, STACK_KEY_ALL, "PUT", "/v1/objections/case-1",
                           "{\"recorded_by\":\"x\"}", NULL);
    cr_assert_eq(s, 201);
    s = stack_request(st.svc.port, STACK_KEY_ALL, "PUT", "/v1/objections/case-other",
                      "{\"recorded_by\":\"x\",\"nhs_number\":\"9000000041\"}", NULL);
    cr_assert_eq(s, 201);
    struct result_wait here = {st.svc.port, job, cases_objected};
    cr_assert(result_is(&here), "the instance that recorded them honours them at once");
    struct result_wait there = {peer.port, job, cases_objected};
    cr_assert(wait_until(result_is, &there, 5000), "the other instance honours them");
    cr_assert_eq(
        stack_request(st.svc.port, STACK_KEY_ALL, "DELETE", "/v1/objections/case-1", NULL, NULL),
        204);
    cr_assert_eq(stack_request(st.svc.port, STACK_KEY_ALL, "DELETE", "/v1/objections/case-other",
                               NULL, NULL),
                 204);
    struct result_wait back = {peer.port, job, cases_out};
    cr_assert(wait_until(result_is, &back, 5000), "the numbers come back");
    json_t *j = NULL;
    long code;
    j = status_of(st.svc.port, STACK_KEY_ALL, job, &code);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "outcomes"), "matched")), 3,
                 "the figures are the trace's");
    json_decref(j);
    cr_assert_eq(proc_stop(&peer, SIGTERM, 10000), 0);
    unlink(peer.log_path);
}

/* HEAD answers the head GET would have without reading a row: a row that cannot be opened
 * stops GET (before its head: 503), not HEAD. */
Test(bulk_jobs, head_on_a_result_reads_no_row, .init = setup, .fini = teardown, .timeout = 120)
{
    const char *id = upload(st.svc.port, simple_in);
    char job[64], path[128], cmd[192];
    snprintf(job, sizeof(job), "%s", id);
    wait_done(st.svc.port, job, 60000);
    snprintf(path, sizeof(path), "/v1/bulk/%s/result", job);
    snprintf(cmd, sizeof(cmd), "HSET pdstrace:bulk:job:%s:out 1 tampered", job);
    cr_assert_eq(redis_server_query(&st.redis, cmd), 0, "the stored row replaced");
    struct http_reply r;
    const char *h[] = {stack_auth(STACK_KEY_ALL), NULL};
    cr_assert_eq(http_do(st.svc.port, "HEAD", path, h, NULL, &r), 0);
    char v[128];
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 0);
    cr_assert_not_null(http_reply_header(&r, "Content-Disposition", v, sizeof(v)));
    cr_assert(strstr(v, job) != NULL, "%s", v);
    http_reply_free(&r);
    long code;
    char *out = result_of(st.svc.port, STACK_KEY_ALL, job, &code);
    cr_assert_eq(code, 503, "%s", out);
    free(out);
}

/* ---- two instances ---- */

struct audit_wait {
    const struct proc *p;
    int at_least;
};

static bool audited(void *arg)
{
    struct audit_wait *w = arg;
    return proc_log_count(w->p, "\"purpose\":\"bulk\"") >= w->at_least;
}

static const char *const slow_pds[] = {"PDS_TRACE_BULK_CONCURRENCY=2",
                                       "PDS_TRACE_BULK_RECLAIM_IDLE_MS=1500", NULL};

/* Each PDS answer waits, so that each instance holds its two rows for a while. */
static void slow_down_pds(unsigned ms)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"latency_ms\":%u}", ms);
    json_decref(stack_pds_admin(&st, "PUT", "/_admin/faults", body));
}

Test(bulk_jobs, two_instances_share_one_job, .fini = teardown, .timeout = 180)
{
    setup_with(slow_pds);
    struct proc peer;
    cr_assert_eq(stack_start_peer(&st, &peer, NULL), 0);
    slow_down_pds(100);
    char *text = unknown_people(16);
    const char *id = upload(st.svc.port, text);
    free(text);
    wait_done(peer.port, id, 120000); /* the status is the same through either */
    char *out = result_ok(peer.port, id);
    assert_each_once(out, 16);
    free(out);
    int a = proc_log_count(&st.svc, "\"purpose\":\"bulk\"");
    int b = proc_log_count(&peer, "\"purpose\":\"bulk\"");
    cr_assert_gt(a, 0, "the first instance traced rows of the job");
    cr_assert_gt(b, 0, "the second instance traced rows of the job");
    cr_assert_eq(a + b, 16, "each row traced once (%d + %d)", a, b);
    cr_assert_eq(proc_stop(&peer, SIGTERM, 10000), 0, "a clean exit");
    unlink(peer.log_path);
}

struct metric_wait {
    int port;
    const char *needle;
};

static bool metrics_show(void *arg)
{
    struct metric_wait *w = arg;
    struct http_reply r;
    bool ok = http_do(w->port, "GET", "/metrics", NULL, NULL, &r) == 0 && r.status == 200 &&
              strstr(r.body, w->needle) != NULL;
    http_reply_free(&r);
    return ok;
}

Test(bulk_jobs, an_instance_killed_mid_job_leaves_its_rows_to_the_other, .fini = teardown,
     .timeout = 180)
{
    setup_with(slow_pds);
    struct proc peer;
    cr_assert_eq(stack_start_peer(&st, &peer, NULL), 0);
    slow_down_pds(100);
    char *text = unknown_people(24);
    const char *id = upload(st.svc.port, text);
    char job[64];
    snprintf(job, sizeof(job), "%s", id);
    free(text);
    /* Killed once it has answered a row, so that it holds others half done. */
    struct audit_wait w = {&peer, 1};
    cr_assert(wait_until(audited, &w, 60000), "the peer never took a row");
    long code;
    char *early = result_of(st.svc.port, STACK_KEY_ALL, job, &code);
    cr_assert_eq(code, 409, "no result before the job is done: %s", early);
    cr_assert(strstr(early, "not_ready") != NULL, "%s", early);
    free(early);
    kill(peer.pid, SIGKILL);
    proc_wait(&peer, 10000);
    int by_peer = proc_log_count(&peer, "\"purpose\":\"bulk\"");
    cr_assert_lt(by_peer, 24, "killed mid-job");
    wait_done(st.svc.port, job, 120000);
    char *out = result_ok(st.svc.port, job);
    assert_each_once(out, 24);
    free(out);
    json_t *j = status_of(st.svc.port, STACK_KEY_ALL, job, &code);
    cr_assert_eq(json_integer_value(json_object_get(j, "rows_done")), 24);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "outcomes"), "no_match")),
                 24);
    json_decref(j);
    struct metric_wait m1 = {st.svc.port, "pdstrace_bulk_rows_total{outcome=\"no_match\"}"};
    cr_assert(wait_until(metrics_show, &m1, 5000), "rows counted in /metrics");
    struct metric_wait m2 = {st.svc.port, "pdstrace_bulk_jobs{state=\"done\"} 1"};
    cr_assert(wait_until(metrics_show, &m2, 15000), "the job counted as done in /metrics");
    unlink(peer.log_path);
}

/* SIGTERM mid-job: the instance exits cleanly with rows in hand, which stay pending; the
 * instance started again (a new consumer) takes them over and finishes the job. */
Test(bulk_jobs, a_stop_mid_job_exits_cleanly_and_a_restart_finishes_it, .fini = teardown,
     .timeout = 180)
{
    setup_with(slow_pds);
    slow_down_pds(100);
    char *text = unknown_people(12);
    const char *id = upload(st.svc.port, text);
    char job[64];
    snprintf(job, sizeof(job), "%s", id);
    free(text);
    struct audit_wait w = {&st.svc, 1};
    cr_assert(wait_until(audited, &w, 60000), "no row was traced");
    cr_assert_eq(stack_stop_service(&st), 0, "a clean exit with rows in flight");
    int before = proc_log_count(&st.svc, "\"purpose\":\"bulk\"");
    cr_assert_lt(before, 12, "stopped mid-job");
    unlink(st.svc.log_path);
    cr_assert_eq(stack_start_service(&st, NULL), 0);
    wait_done(st.svc.port, job, 120000);
    char *out = result_ok(st.svc.port, job);
    assert_each_once(out, 12);
    free(out);
}
