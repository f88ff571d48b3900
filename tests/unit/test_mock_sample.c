/* Sample bulk files from the mock population (mocks/pds/sample.h): read back with libcsv
 * in strict mode, both formats, the mix of rows, determinism, quoting, and the mock-pds
 * command line that writes them. */
#include "../../mocks/pds/population.h"
#include "../../mocks/pds/sample.h"

#include <criterion/criterion.h>
#include <csv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/nhs_number.h"
#include "proc.h"

#define N_PEOPLE 2000
#define SEED     7
#define ROWS     3000
#define MAX_COLS 32

static struct population *pop;

static void setup(void)
{
    cr_assert_eq(population_generate(&pop, N_PEOPLE, SEED), 0);
}

static void teardown(void)
{
    population_free(pop);
    pop = NULL;
}

TestSuite(mock_sample, .init = setup, .fini = teardown, .timeout = 120);

/* ---- writing to memory ---- */

struct text {
    char *data;
    size_t len;
};

static struct text sample_text(const struct population *p, enum sample_format format, uint64_t rows,
                               uint64_t sample_seed)
{
    struct sample_opts o = {format, rows, SEED, sample_seed};
    struct text t = {NULL, 0};
    FILE *f = open_memstream(&t.data, &t.len);

    cr_assert_not_null(f);
    cr_assert_eq(sample_write(p, &o, f), 0);
    cr_assert_eq(fclose(f), 0);
    return t;
}

/* ---- reading back ---- */

/* Where a format keeps what the checks look at. */
struct cols {
    size_t n;
    int family, given, birth, nhs;
    const char *bad_date;
};

static const struct cols simple_cols = {9, 1, 2, 3, 7, "2023-02-30"};
static const struct cols mesh_cols = {24, 2, 3, 6, 1, "20230230"};

/* What the rows hold, tallied as libcsv hands them over. */
struct tally {
    const struct cols *c;
    char *field[MAX_COLS];
    size_t nf;
    size_t records;
    char *header[MAX_COLS];
    size_t nheader;
    size_t short_rows, other_width, no_family, bad_date, bad_number;
    size_t numbers, superseded, invalidated, made_up, fixed, jane;
    size_t commas; /* fields holding a comma (so quoted in the file) */
    char **keys;   /* family|given|birth of each full row, for the repeats */
    size_t nkeys;
};

static void on_field(void *s, size_t len, void *arg)
{
    struct tally *t = arg;

    if (t->nf < MAX_COLS)
        t->field[t->nf] = strndup(s, len);
    t->nf++;
    t->commas += memchr(s, ',', len) != NULL;
}

/* Someone in the population with this family name and birth date (as written in the
 * row's format), or NULL. */
static const struct population_person *find(const char *family, const char *birth,
                                            const struct cols *c)
{
    char iso[16];

    snprintf(iso, sizeof iso, "%s", birth);
    if (c == &mesh_cols) /* YYYYMMDD to YYYY-MM-DD */
        snprintf(iso, sizeof iso, "%.4s-%.2s-%.2s", birth, birth + 4, birth + 6);
    for (size_t i = 0; i < population_size(pop); i++) {
        const struct population_person *p = population_at(pop, i);
        if (p->nnames > 0 && p->names[0].family && strcmp(iso, p->birth_lo) == 0 &&
            strcmp(family, p->names[0].family) == 0)
            return p;
    }
    return NULL;
}

/* One full-width data row. */
static void tally_row(struct tally *t)
{
    const char *nhs = t->field[t->c->nhs], *family = t->field[t->c->family];
    const char *birth = t->field[t->c->birth];
    const struct population_person *p = family[0] ? find(family, birth, t->c) : NULL;
    char key[512];

    t->no_family += !family[0];
    t->bad_date += strcmp(birth, t->c->bad_date) == 0;
    t->bad_number += nhs[0] && !nhs_number_is_valid(nhs);
    t->numbers += nhs[0] != '\0';
    t->superseded += population_superseded_by(pop, nhs) != NULL;
    t->invalidated += population_is_invalidated(pop, nhs);
    t->jane += strcmp(family, "Smith") == 0 && strcmp(t->field[t->c->given], "Jane") == 0 &&
               strncmp(t->field[t->c->birth], "2010", 4) == 0;
    /* The fixed people's numbers are below the random people's (mocks/pds/README.md). */
    t->fixed += p && strcmp(p->id, "9100000000") < 0;
    t->made_up += family[0] && !nhs[0] && !p && strcmp(birth, t->c->bad_date) != 0;
    snprintf(key, sizeof key, "%s|%s|%s", family, t->field[t->c->given], t->field[t->c->birth]);
    t->keys = realloc(t->keys, (t->nkeys + 1) * sizeof *t->keys);
    t->keys[t->nkeys++] = strdup(key);
}

static void on_record(int c, void *arg)
{
    struct tally *t = arg;

    UNUSED(c);
    if (t->records++ == 0) {
        memcpy(t->header, t->field, sizeof t->header);
        t->nheader = t->nf;
        t->nf = 0;
        return;
    }
    if (t->nf == t->c->n)
        tally_row(t);
    else if (t->nf == t->c->n - 1)
        t->short_rows++;
    else
        t->other_width++;
    for (size_t i = 0; i < t->nf && i < MAX_COLS; i++)
        free(t->field[i]);
    t->nf = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Rows whose family, given name and birth date an earlier row had. */
static size_t repeats(struct tally *t)
{
    size_t n = 0;

    qsort(t->keys, t->nkeys, sizeof *t->keys, cmp_str);
    for (size_t i = 1; i < t->nkeys; i++)
        n += strcmp(t->keys[i - 1], t->keys[i]) == 0;
    return n;
}

static void tally_free(struct tally *t)
{
    for (size_t i = 0; i < t->nkeys; i++)
        free(t->keys[i]);
    free(t->keys);
    for (size_t i = 0; i < t->nheader && i < MAX_COLS; i++)
        free(t->header[i]);
}

/* Parses text strictly (a stray quote, or a quote not closed, is an error). */
static void read_back(const struct text *text, struct tally *t)
{
    struct csv_parser p;

    cr_assert_eq(csv_init(&p, CSV_STRICT | CSV_STRICT_FINI), 0);
    cr_assert_eq(csv_parse(&p, text->data, text->len, on_field, on_record, t), text->len,
                 "libcsv: %s", csv_strerror(csv_error(&p)));
    cr_assert_eq(csv_fini(&p, on_field, on_record, t), 0);
    csv_free(&p);
}

static const char *const simple_header[] = {"reference",  "family",     "given",
                                            "birth_date", "gender",     "postcode",
                                            "address",    "nhs_number", "case_id"};

static const char *const mesh_header[] = {
    "UNIQUE REFERENCE",     "NHS_NO",           "FAMILY_NAME",   "GIVEN_NAME",
    "OTHER_GIVEN_NAME",     "GENDER",           "DATE_OF_BIRTH", "POSTCODE",
    "DATE_OF_DEATH",        "ADDRESS_LINE1",    "ADDRESS_LINE2", "ADDRESS_LINE3",
    "ADDRESS_LINE4",        "ADDRESS_LINE5",    "ADDRESS_DATE",  "GP_PRACTICE_CODE",
    "GP_REGISTRATION_DATE", "NHAIS_POSTING_ID", "AS_AT_DATE",    "LOCAL_PATIENT_ID",
    "INTERNAL_ID",          "TELEPHONE_NUMBER", "MOBILE_NUMBER", "EMAIL_ADDRESS"};

static void check_header(const struct tally *t, const char *const *want, size_t n)
{
    cr_assert_eq(t->nheader, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(t->header[i], want[i]);
}

/* The mix of mocks/pds/README.md, with room for chance: 1 % bad (a quarter each: one field
 * short, no family name, a date that does not exist, a bad check digit), 3 % made up, 5 %
 * fixed people, 15 % with their number and 3 % with an old one. */
static void check_mix(struct tally *t, size_t rows)
{
    size_t bad = t->short_rows + t->no_family + t->bad_date + t->bad_number;

    cr_assert_eq(t->records, rows + 1);
    cr_assert_eq(t->other_width, 0);
    cr_assert(t->short_rows && t->no_family && t->bad_date && t->bad_number);
    cr_assert(bad >= rows / 200 && bad <= rows / 50, "%zu bad rows in %zu", bad, rows);
    cr_assert(t->fixed >= rows / 50 && t->fixed <= rows / 10, "%zu fixed", t->fixed);
    cr_assert(t->made_up >= rows / 100 && t->made_up <= rows / 15, "%zu made up", t->made_up);
    cr_assert(t->numbers >= rows / 10 && t->numbers <= rows / 4, "%zu numbers", t->numbers);
    cr_assert_gt(t->superseded, 0);
    cr_assert_gt(t->invalidated, 0);
    cr_assert_gt(t->jane, 0, "the fixed people are drawn too");
    /* Rows > people: many repeats (at most N_PEOPLE plus the made-up people differ). */
    cr_assert_gt(repeats(t), rows - N_PEOPLE - rows / 10);
}

Test(mock_sample, simple_reads_back_with_the_header_and_the_mix)
{
    struct text text = sample_text(pop, SAMPLE_SIMPLE, ROWS, 0);
    struct tally t = {.c = &simple_cols};

    read_back(&text, &t);
    check_header(&t, simple_header, ARRAY_SIZE(simple_header));
    check_mix(&t, ROWS);
    cr_assert_gt(t.commas, ROWS / 10, "addresses joined with \", \" are quoted fields");
    tally_free(&t);
    free(text.data);
}

Test(mock_sample, pds_mesh_reads_back_with_the_header_and_the_mix)
{
    struct text text = sample_text(pop, SAMPLE_PDS_MESH, ROWS, 0);
    struct tally t = {.c = &mesh_cols};

    read_back(&text, &t);
    check_header(&t, mesh_header, ARRAY_SIZE(mesh_header));
    check_mix(&t, ROWS);
    tally_free(&t);
    free(text.data);
}

/* One row in ten is someone of the last 64 rows again: about 10 repeats in 100 rows, where
 * 100 draws from 2,000 people would give 2 or 3. */
Test(mock_sample, rows_repeat_even_when_there_are_fewer_rows_than_people)
{
    struct text text = sample_text(pop, SAMPLE_SIMPLE, 100, 0);
    struct tally t = {.c = &simple_cols};

    read_back(&text, &t);
    cr_assert_eq(t.records, 101);
    cr_assert_geq(repeats(&t), 6);
    tally_free(&t);
    free(text.data);
}

Test(mock_sample, same_arguments_give_the_same_bytes)
{
    for (int f = SAMPLE_SIMPLE; f <= SAMPLE_PDS_MESH; f++) {
        struct text a = sample_text(pop, (enum sample_format)f, 1000, 0);
        struct text b = sample_text(pop, (enum sample_format)f, 1000, 0);
        struct text c = sample_text(pop, (enum sample_format)f, 1000, 1);
        cr_assert_eq(a.len, b.len);
        cr_assert_eq(memcmp(a.data, b.data, a.len), 0);
        cr_assert(a.len != c.len || memcmp(a.data, c.data, a.len) != 0,
                  "another sample seed, another sample");
        free(a.data);
        free(b.data);
        free(c.data);
    }
}

Test(mock_sample, both_formats_hold_the_same_people)
{
    struct text s = sample_text(pop, SAMPLE_SIMPLE, 200, 3);
    struct text m = sample_text(pop, SAMPLE_PDS_MESH, 200, 3);
    struct tally ts = {.c = &simple_cols}, tm = {.c = &mesh_cols};

    read_back(&s, &ts);
    read_back(&m, &tm);
    cr_assert_eq(ts.nkeys, tm.nkeys);
    cr_assert_eq(ts.numbers, tm.numbers);
    cr_assert_eq(ts.made_up, tm.made_up);
    tally_free(&ts);
    tally_free(&tm);
    free(s.data);
    free(m.data);
}

/* A family name with a quote and a comma (no generated name has one) is quoted with the
 * quote doubled, and every record ends in CRLF. */
Test(mock_sample, fields_are_quoted_as_rfc_4180_says)
{
    static const char doc[] =
        "{\"patients\":[{\"resourceType\":\"Patient\",\"id\":\"9000000009\",\"gender\":\"female\","
        "\"birthDate\":\"2010-10-22\",\"name\":[{\"use\":\"usual\",\"family\":\"O\\\"Hare, Jr\","
        "\"given\":[\"Ann\"]}],\"address\":[{\"use\":\"home\",\"line\":[\"1 A Street\",\"Leeds\"],"
        "\"postalCode\":\"LS1 6AE\"}]}],\"superseded\":{},\"invalidated\":[]}";
    struct population *one = NULL;
    json_error_t jerr;

    cr_assert_eq(population_from_json(&one, json_loads(doc, 0, &jerr)), 0, "%s", jerr.text);
    struct text text = sample_text(one, SAMPLE_SIMPLE, 50, 0);
    cr_assert_not_null(strstr(text.data, ",\"O\"\"Hare, Jr\",Ann,2010-10-22,"));
    cr_assert_not_null(strstr(text.data, "\"1 A Street, Leeds\""));
    size_t crlf = 0;
    for (size_t i = 0; i < text.len; i++) {
        cr_assert(text.data[i] != '\n' || (i > 0 && text.data[i - 1] == '\r'));
        crlf += text.data[i] == '\n';
    }
    cr_assert_eq(crlf, 51);
    struct tally t = {.c = &simple_cols};
    read_back(&text, &t);
    cr_assert_eq(t.records, 51);
    tally_free(&t);
    free(text.data);
    population_free(one);
}

Test(mock_sample, format_names)
{
    enum sample_format f;

    cr_assert_eq(sample_format_parse("simple", &f), 0);
    cr_assert_eq(f, SAMPLE_SIMPLE);
    cr_assert_eq(sample_format_parse("pds-mesh", &f), 0);
    cr_assert_eq(f, SAMPLE_PDS_MESH);
    cr_assert_eq(sample_format_parse("mesh", &f), ERR_INVALID_INPUT);
    cr_assert_eq(sample_format_parse(NULL, &f), ERR_INVALID_INPUT);
}

static struct text slurp(const char *path)
{
    struct text t = {NULL, 0};
    FILE *f = fopen(path, "rb");
    FILE *m = open_memstream(&t.data, &t.len);
    char chunk[4096];
    size_t n;

    cr_assert(f && m);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        cr_assert_eq(fwrite(chunk, 1, n, m), n);
    fclose(f);
    fclose(m);
    return t;
}

/* tests/data/bulk holds the README's examples; mocks/pds/README.md has the command that
 * writes them, which this repeats: a change to the mix shows here. */
Test(mock_sample, the_committed_examples_are_what_the_command_writes)
{
    static const struct {
        enum sample_format format;
        const char *path;
    } files[] = {{SAMPLE_SIMPLE, PDS_TEST_DATA "/bulk/sample-simple.csv"},
                 {SAMPLE_PDS_MESH, PDS_TEST_DATA "/bulk/sample-pds-mesh.csv"}};

    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        struct text want = sample_text(pop, files[i].format, 14, 8092);
        struct text got = slurp(files[i].path);
        cr_assert(got.len == want.len && memcmp(got.data, want.data, got.len) == 0,
                  "%s differs: regenerate it (mocks/pds/README.md)", files[i].path);
        free(want.data);
        free(got.data);
    }
}

/* ---- the command line ---- */

static int run(const char *const argv[])
{
    struct proc p;
    int rc;

    cr_assert_eq(proc_spawn(&p, argv, NULL), 0);
    rc = proc_wait(&p, 30000);
    unlink(p.log_path);
    return rc;
}

/* What mock-pds writes is what sample_write gives for the same arguments, from a
 * generated population and from the same population read from a file. */
Test(mock_sample, mock_pds_writes_the_sample_and_exits)
{
    char dir[] = "/tmp/mocksample-XXXXXX", pop_path[64], out[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(pop_path, sizeof pop_path, "%s/people.json", dir);
    snprintf(out, sizeof out, "%s/rows.csv", dir);
    const char *gen[] = {PDS_BINARY_DIR "/mock-pds",
                         "--generate",
                         "2000",
                         "--seed",
                         "7",
                         "--sample",
                         "pds-mesh",
                         "--rows",
                         "300",
                         "--sample-seed",
                         "5",
                         "--out",
                         out,
                         NULL};
    cr_assert_eq(run(gen), 0);
    struct text want = sample_text(pop, SAMPLE_PDS_MESH, 300, 5);
    struct text got = slurp(out);
    cr_assert(got.len == want.len && memcmp(got.data, want.data, got.len) == 0);
    free(got.data);
    cr_assert_eq(population_save(pop, pop_path), 0);
    const char *file[] = {PDS_BINARY_DIR "/mock-pds",
                          "--population",
                          pop_path,
                          "--seed",
                          "7",
                          "--sample",
                          "pds-mesh",
                          "--rows",
                          "300",
                          "--sample-seed",
                          "5",
                          "--out",
                          out,
                          NULL};
    cr_assert_eq(run(file), 0);
    got = slurp(out);
    cr_assert(got.len == want.len && memcmp(got.data, want.data, got.len) == 0);
    free(got.data);
    free(want.data);
    unlink(out);
    unlink(pop_path);
    rmdir(dir);
}

Test(mock_sample, mock_pds_refuses_bad_sample_arguments)
{
    char dir[] = "/tmp/mocksample-XXXXXX", never[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(never, sizeof never, "%s/never.csv", dir);
    const char *const cases[][8] = {
        {"--generate", "10", "--sample", "csv", "--out", never},
        {"--generate", "10", "--sample", "simple"},
        {"--generate", "10", "--rows", "5", "--out", never},
        {"--sample", "simple", "--out", never},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const char *argv[10] = {PDS_BINARY_DIR "/mock-pds"};
        for (size_t j = 0; j < 8 && cases[i][j] != NULL; j++)
            argv[j + 1] = cases[i][j];
        cr_assert_eq(run(argv), 2, "case %zu did not exit 2", i);
    }
    cr_assert_eq(access(never, F_OK), -1, "nothing is written");
    unlink(never);
    rmdir(dir);
    const char *unwritable[] = {
        PDS_BINARY_DIR "/mock-pds",  "--generate", "10", "--sample", "simple", "--out",
        "/nonexistent/dir/rows.csv", NULL};
    cr_assert_eq(run(unwritable), 1);
}
