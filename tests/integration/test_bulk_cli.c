/* `pds-trace bulk` end to end (issue 9 points 1-5): the binary against a real Redis and the
 * mock PDS (and the mock case system for write-backs), files on disk. Both formats with
 * every answer, bad rows that never stop the file, identical people traced once,
 * objections inside a file, write-back from bulk, the exit codes, and a run killed with
 * SIGKILL (and its output cut mid-row) that --resume finishes byte for byte as an
 * uninterrupted run does. The people are the fixed ones of mocks/pds/README.md. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bulk_fixtures.h"
#include "http_util.h"
#include "stack.h"
#include "test_util.h"

/* The shared files (tests/support/bulk_fixtures.c). */
#define EMPTY21    BULK_FIXTURE_EMPTY21
#define simple_in  bulk_fixture_simple_in
#define simple_out bulk_fixture_simple_out
#define mesh_in    bulk_fixture_mesh_in

static struct stack st;
static struct stack_case_system cs;
static char in_path[160], out_path[160];

static void teardown(void)
{
    stack_stop(&st);
    stack_case_system_stop(&cs);
}

static void setup(void)
{
    cr_assert_eq(stack_start_pds(&st, NULL, NULL), 0, "the stack starts");
    snprintf(in_path, sizeof(in_path), "%s/in.csv", st.dir);
    snprintf(out_path, sizeof(out_path), "%s/out.csv", st.dir);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

/* Runs the bulk command with args (NULL-terminated) and extra settings; returns its exit
 * status, its log kept in p. */
static int bulk(struct proc *p, const char *const args[], const char *const env[])
{
    cr_assert_eq(stack_spawn_bulk(&st, p, args, env), 0);
    return proc_wait(p, 120000);
}

static int bulk_file(struct proc *p, const char *format)
{
    const char *args[] = {in_path, "-o", out_path, format ? "--format" : NULL, format, NULL};
    return bulk(p, args, NULL);
}

/* How many requests the mock PDS logged whose query starts with prefix. */
static int pds_searches(const char *prefix)
{
    json_t *log = stack_pds_admin(&st, "GET", "/_admin/requests", NULL);
    cr_assert_not_null(log);
    json_t *items = json_is_array(log) ? log : json_object_get(log, "requests");
    size_t i;
    json_t *it;
    int n = 0;
    json_array_foreach(items, i, it)
    {
        const char *q = json_string_value(json_object_get(it, "query"));
        n += q != NULL && strncmp(q, prefix, strlen(prefix)) == 0;
    }
    json_decref(log);
    return n;
}

Test(bulk_cli, a_simple_file_gives_one_row_per_row_in_order, .fini = teardown, .timeout = 120)
{
    setup();
    write_text(in_path, simple_in);
    struct proc p;
    cr_assert_eq(bulk_file(&p, NULL), 0, "exit 0 with bad rows in the file");
    char *out = read_file(out_path, NULL);
    cr_assert_str_eq(out, simple_out);
    free(out);
    /* r8 is r1 again in other spellings: traced once, then answered by the cache. */
    cr_assert_eq(pds_searches("family=Smith"), 1);
    cr_assert_eq(proc_log_count(&p, "\"msg\":\"bulk_summary\""), 1);
    cr_assert_eq(proc_log_count(&p, "\"rows_done\":11"), 1);
    cr_assert_eq(proc_log_count(&p, "\"invalid\":4"), 1);
    cr_assert_eq(proc_log_count(&p, "\"event\":\"trace\""), 7, "an audit line per traced row");
    cr_assert_eq(proc_log_count(&p, "Smith"), 0, "no names in the log");
    unlink(p.log_path);
}

/* 29 columns: reference, the number given, 21 empty demographic columns, then
 * SENSITIVITY_FLAG, MPS_ID, the code, the number, the algorithm and the percentage. */
static char mesh_out[2048];

Test(bulk_cli, a_pds_mesh_file_answers_in_the_mesh_response_layout, .fini = teardown,
     .timeout = 120)
{
    setup();
    write_text(in_path, mesh_in);
    snprintf(mesh_out, sizeof(mesh_out), "in,SPINE_MPT_RESPONSE,8,00\r\n%s",
             bulk_fixture_mesh_rows);
    struct proc p;
    cr_assert_eq(bulk_file(&p, NULL), 0);
    char *out = read_file(out_path, NULL);
    cr_assert_str_eq(out, mesh_out);
    free(out);
    unlink(p.log_path);
}

Test(bulk_cli, objections_inside_a_file_withhold_the_number, .fini = teardown, .timeout = 120)
{
    setup();
    long s1 = stack_request(st.svc.port, STACK_KEY_ALL, "PUT", "/v1/objections/LAS-1",
                            "{\"recorded_by\":\"dpo\"}", NULL);
    long s2 = stack_request(st.svc.port, STACK_KEY_ALL, "PUT", "/v1/objections/LAS-9",
                            "{\"recorded_by\":\"dpo\",\"nhs_number\":\"9000000092\"}", NULL);
    cr_assert(s1 == 201 && s2 == 201);
    write_text(in_path, "reference,family,given,birth_date,postcode,case_id\n"
                        "a,Smith,Jane,2010-10-22,LS1 6AE,LAS-1\n"
                        "b,Smith,Jane,2010-10-22,LS1 6AE,LAS-2\n"
                        "c,Patel,Priya,1979-09-03,BD9 4RU,LAS-3\n");
    struct proc p;
    cr_assert_eq(bulk_file(&p, NULL), 0);
    char *out = read_file(out_path, NULL);
    cr_assert_str_eq(out, "reference,family,given,birth_date,postcode,case_id,outcome,"
                          "matched_nhs_number,score,error\r\n"
                          "a,Smith,Jane,2010-10-22,LS1 6AE,LAS-1,objection,,,\r\n"
                          "b,Smith,Jane,2010-10-22,LS1 6AE,LAS-2,matched,9000000009,1,\r\n"
                          "c,Patel,Priya,1979-09-03,BD9 4RU,LAS-3,objection,,,\r\n");
    free(out);
    unlink(p.log_path);
    /* pds-mesh: LOCAL_PATIENT_ID (column 20) serves as the case for objections. */
    write_text(in_path, "UNIQUE REFERENCE,NHS_NO,FAMILY_NAME,GIVEN_NAME,OTHER_GIVEN_NAME,GENDER,"
                        "DATE_OF_BIRTH,POSTCODE,DATE_OF_DEATH,ADDRESS_LINE1,ADDRESS_LINE2,"
                        "ADDRESS_LINE3,ADDRESS_LINE4,ADDRESS_LINE5,ADDRESS_DATE,GP_PRACTICE_CODE,"
                        "GP_REGISTRATION_DATE,NHAIS_POSTING_ID,AS_AT_DATE,LOCAL_PATIENT_ID\n"
                        "m1,,Smith,Jane,,2,20101022,LS1 6AE,,,,,,,,,,,,LAS-1\n"
                        "m2,,Smith,Jane,,2,20101022,LS1 6AE,,,,,,,,,,,,LAS-2\n");
    cr_assert_eq(bulk_file(&p, NULL), 0);
    out = read_file(out_path, NULL);
    cr_assert(strstr(out, "m1," EMPTY21 ",,,,,0,0\r\n") != NULL, "%s", out);
    cr_assert(strstr(out, "m2," EMPTY21 ",,,00,9000000009,2,100\r\n") != NULL, "%s", out);
    free(out);
    unlink(p.log_path);
}

Test(bulk_cli, write_back_queues_matched_rows_with_a_case_id, .fini = teardown, .timeout = 120)
{
    cr_assert_eq(stack_start_with_case(&st, &cs, "case-token-0123456789", false, NULL), 0);
    snprintf(in_path, sizeof(in_path), "%s/in.csv", st.dir);
    snprintf(out_path, sizeof(out_path), "%s/out.csv", st.dir);
    write_text(in_path, "reference,family,given,birth_date,postcode,case_id\n"
                        "a,Smith,Jane,2010-10-22,LS1 6AE,LAS-1\n"
                        "b,Pennington,Margaret,1947-08-23,PR1 8JD,LAS-2\n"
                        "c,Patel,Priya,1979-09-03,BD9 4RU,\n");
    struct proc p;
    const char *args[] = {in_path, "-o", out_path, "--write-back", NULL};
    cr_assert_eq(bulk(&p, args, NULL), 0);
    cr_assert_eq(proc_log_count(&p, "\"write_back\":\"queued\""), 1, "only the match");
    json_t *rec = NULL;
    for (int i = 0; i < 500 && rec == NULL; i++) {
        rec = stack_case_client(cs.proc.port, "LAS-1");
        if (rec == NULL)
            sleep_ms(20);
    }
    cr_assert_not_null(rec, "the service's worker delivered the bulk run's write-back");
    cr_assert_str_eq(json_string_value(json_object_get(rec, "nhs_number")), "9000000009");
    json_decref(rec);
    cr_assert_null(stack_case_client(cs.proc.port, "LAS-2"), "a potential match is never written");
    unlink(p.log_path);
    char *out = read_file(out_path, NULL);
    cr_assert(strstr(out, "a,Smith,Jane,2010-10-22,LS1 6AE,LAS-1,matched,9000000009,1,\r\n"), "%s",
              out);
    free(out);
}

/* A case id the trace takes but the write-back queue does not: the row says so. */
Test(bulk_cli, a_write_back_that_cannot_be_queued_is_noted_on_its_row, .fini = teardown,
     .timeout = 120)
{
    cr_assert_eq(stack_start_with_case(&st, &cs, "case-token-0123456789", false, NULL), 0);
    snprintf(in_path, sizeof(in_path), "%s/in.csv", st.dir);
    snprintf(out_path, sizeof(out_path), "%s/out.csv", st.dir);
    write_text(in_path, "reference,family,given,birth_date,postcode,case_id\n"
                        "a,Smith,Jane,2010-10-22,LS1 6AE,LAS/1\n");
    struct proc p;
    const char *args[] = {in_path, "-o", out_path, "--write-back", NULL};
    cr_assert_eq(bulk(&p, args, NULL), 0);
    unlink(p.log_path);
    char *out = read_file(out_path, NULL);
    cr_assert(strstr(out, "a,Smith,Jane,2010-10-22,LS1 6AE,LAS/1,matched,9000000009,1,"
                          "write_back: could not be queued") != NULL,
              "%s", out);
    free(out);
}

static int exit_of(const char *const args[], const char *const env[], const char *says)
{
    struct proc p;
    int rc = bulk(&p, args, env);
    cr_expect_eq(proc_log_count(&p, says), 1, "the one line says \"%s\"", says);
    unlink(p.log_path);
    return rc;
}

/* pds-mesh names no case: --write-back is refused before anything is traced. */
Test(bulk_cli, write_back_is_refused_for_a_pds_mesh_file, .fini = teardown, .timeout = 60)
{
    setup();
    write_text(in_path, mesh_in);
    const char *args[] = {in_path, "-o", out_path, "--write-back", NULL};
    cr_assert_eq(exit_of(args, NULL, "--write-back needs the simple format"), 1);
    cr_assert_eq(pds_searches("family="), 0);
}

Test(bulk_cli, a_file_that_cannot_be_processed_exits_non_zero_with_one_line, .fini = teardown,
     .timeout = 120)
{
    setup();
    char missing[200], nowhere[200];
    snprintf(missing, sizeof(missing), "%s/absent.csv", st.dir);
    snprintf(nowhere, sizeof(nowhere), "%s/no/such/dir/out.csv", st.dir);
    write_text(in_path, "id,name\n1,x\n");
    const char *a1[] = {missing, "-o", out_path, NULL};
    cr_assert_eq(exit_of(a1, NULL, "absent.csv: no such file or directory"), 1);
    const char *a2[] = {in_path, "-o", out_path, NULL};
    cr_assert_eq(exit_of(a2, NULL, "neither simple"), 1);
    write_text(in_path, simple_in);
    const char *a3[] = {in_path, "-o", nowhere, NULL};
    cr_assert_eq(exit_of(a3, NULL, "cannot be written"), 1);
    const char *a4[] = {in_path, "-o", out_path, "--format", "xlsx", NULL};
    cr_assert_eq(exit_of(a4, NULL, "--format must be simple or pds-mesh"), 2);
    const char *bad_rate[] = {"PDS_TRACE_PDS_RATE=fast", NULL};
    cr_assert_eq(exit_of(a2, bad_rate, "PDS_TRACE_PDS_RATE"), 2);
    const char *a5[] = {in_path, "-o", out_path, "--concurrency", "0", NULL};
    cr_assert_eq(exit_of(a5, NULL, "--concurrency needs a number"), 2);
}

/* Made-up people PDS does not know: each costs the whole cascade, which keeps the run
 * long enough to kill. */
static void many_unknown(const char *path, int rows)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fprintf(f, "reference,family,given,birth_date,address\n");
    for (int i = 0; i < rows; i++)
        fprintf(f, "ref-%d,Unknown,Person,19%02d-%02d-%02d,\"%d Long Road,\nLeeds\"\n", i,
                20 + i % 80, 1 + i % 12, 1 + i % 28, i);
    fclose(f);
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

Test(bulk_cli, a_run_killed_mid_file_resumes_to_the_same_bytes, .fini = teardown, .timeout = 180)
{
    setup();
    many_unknown(in_path, 60);
    const char *args[] = {in_path, "-o", out_path, "--rate", "40", "--concurrency", "4", NULL};
    struct proc p;
    cr_assert_eq(stack_spawn_bulk(&st, &p, args, NULL), 0);
    /* Killed once a few rows are out, and the last one cut in the middle. */
    for (int i = 0; i < 3000 && file_size(out_path) <= 400; i++)
        sleep_ms(20);
    cr_assert_gt(file_size(out_path), 400, "rows come out");
    kill(p.pid, SIGKILL);
    proc_wait(&p, 10000);
    unlink(p.log_path);
    long size = file_size(out_path);
    cr_assert_eq(truncate(out_path, size - 7), 0);

    const char *resume[] = {in_path, "-o", out_path, "--rate", "40", "--resume", NULL};
    cr_assert_eq(bulk(&p, resume, NULL), 0);
    cr_assert_eq(proc_log_count(&p, "\"rows_resumed\":0"), 0, "it went on from the output");
    int traced = proc_log_count(&p, "\"event\":\"trace\"");
    unlink(p.log_path);
    char *resumed = read_file(out_path, NULL);

    char again[200];
    snprintf(again, sizeof(again), "%s/again.csv", st.dir);
    const char *whole[] = {in_path, "-o", again, NULL};
    cr_assert_eq(bulk(&p, whole, NULL), 0);
    cr_assert_eq(proc_log_count(&p, "\"event\":\"trace\""), 60);
    unlink(p.log_path);
    char *uninterrupted = read_file(again, NULL);
    cr_assert_str_eq(resumed, uninterrupted);
    cr_assert_lt(traced, 60, "rows already written were not traced again");
    free(resumed);
    free(uninterrupted);
}

/* PDS unavailable: each row is tried again after a wait, then answered "error" with the
 * reason; never "no match". */
Test(bulk_cli, rows_pds_never_answers_are_errors_not_no_match, .fini = teardown, .timeout = 120)
{
    setup();
    json_decref(stack_pds_admin(&st, "PUT", "/_admin/faults", "{\"fail_rate\":1}"));
    write_text(in_path, "reference,family,given,birth_date\n"
                        "a,Smith,Jane,2010-10-22\n"
                        "b,Nobody,Anne,1950-01-01\n");
    const char *one_attempt[] = {"PDS_TRACE_PDS_MAX_ATTEMPTS=1", NULL};
    const char *args[] = {in_path, "-o", out_path, NULL};
    struct proc p;
    cr_assert_eq(bulk(&p, args, one_attempt), 0, "the file was processed");
    unlink(p.log_path);
    char *out = read_file(out_path, NULL);
    cr_assert(strstr(out, "no_match") == NULL, "%s", out);
    cr_assert(strstr(out, "a,Smith,Jane,2010-10-22,error,,,pds_unavailable: ") != NULL, "%s", out);
    cr_assert(strstr(out, "b,Nobody,Anne,1950-01-01,error,,,pds_unavailable: ") != NULL, "%s", out);
    free(out);
    cr_assert_geq(pds_searches("family="), 4, "each row was tried more than once");
}

/* A short outage: the rows wait and go through once PDS is back. */
Test(bulk_cli, rows_wait_out_a_short_pds_outage, .fini = teardown, .timeout = 120)
{
    setup();
    json_decref(stack_pds_admin(&st, "PUT", "/_admin/faults", "{\"fail_next\":2}"));
    write_text(in_path, "reference,family,given,birth_date,gender,postcode\n"
                        "a,Smith,Jane,2010-10-22,female,LS1 6AE\n");
    const char *one_attempt[] = {"PDS_TRACE_PDS_MAX_ATTEMPTS=1", NULL};
    const char *args[] = {in_path, "-o", out_path, NULL};
    struct proc p;
    cr_assert_eq(bulk(&p, args, one_attempt), 0);
    unlink(p.log_path);
    char *out = read_file(out_path, NULL);
    cr_assert(strstr(out, "a,Smith,Jane,2010-10-22,female,LS1 6AE,matched,9000000009,1,") != NULL,
              "%s", out);
    free(out);
}

/* The README's sample files (tests/data/bulk, drawn from the population the tests' mock
 * PDS generates) give the answers kept next to them, in both formats. */
Test(bulk_cli, the_sample_files_give_their_expected_answers, .fini = teardown, .timeout = 120)
{
    setup();
    static const char *const formats[] = {"simple", "pds-mesh"};
    for (size_t i = 0; i < 2; i++) {
        char in[256], want_path[256], out[256];
        snprintf(in, sizeof(in), PDS_SOURCE_DIR "/tests/data/bulk/sample-%s.csv", formats[i]);
        snprintf(want_path, sizeof(want_path),
                 PDS_SOURCE_DIR "/tests/data/bulk/sample-%s.expected.csv", formats[i]);
        snprintf(out, sizeof(out), "%s/out-%s.csv", st.dir, formats[i]);
        const char *args[] = {in, "-o", out, NULL};
        struct proc p;
        cr_assert_eq(bulk(&p, args, NULL), 0, "%s", formats[i]);
        unlink(p.log_path);
        char *got = read_file(out, NULL), *want = read_file(want_path, NULL);
        cr_assert_not_null(want);
        cr_assert_str_eq(got, want, "%s", formats[i]);
        free(got);
        free(want);
    }
}

/* Three rows of one person PDS refuses, two at a time: the ones waiting behind the first
 * get its answer and every row comes out (this once hung: a row started from the first
 * row's callback queued behind it as it finished). */
Test(bulk_cli, identical_rows_of_a_refused_person_all_come_out, .fini = teardown, .timeout = 120)
{
    setup();
    json_decref(
        stack_pds_admin(&st, "PUT", "/_admin/faults", "{\"fail_rate\":1,\"fail_status\":400}"));
    write_text(in_path, "reference,family,given,birth_date\n"
                        "a,Smith,Jane,2010-10-22\n"
                        "b,Smith,Jane,2010-10-22\n"
                        "c,Smith,Jane,2010-10-22\n"
                        "d,Smith,Jane,2010-10-22\n");
    const char *args[] = {in_path, "-o", out_path, "--concurrency", "2", NULL};
    struct proc p;
    cr_assert_eq(bulk(&p, args, NULL), 0);
    unlink(p.log_path);
    char *out = read_file(out_path, NULL);
    const char *rows[] = {"a,", "b,", "c,", "d,"};
    for (size_t i = 0; i < 4; i++) {
        char want[96];
        snprintf(want, sizeof(want), "\r\n%sSmith,Jane,2010-10-22,error,,,pds_rejected: ", rows[i]);
        cr_assert(strstr(out, want) != NULL, "%s in %s", rows[i], out);
    }
    free(out);
}
