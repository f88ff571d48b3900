#include "pdstrace/bulk_format.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/bulk_csv.h"
#include "pdstrace/demographics.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"

/* All people here are synthetic (NHS numbers 9000000000-9999999999). Records are read
 * from CSV text with the bulk reader. Parameterised tests get an index into a table:
 * criterion re-executes the binary, so a parameter must not hold pointers. */

TestSuite(bulk_format, .timeout = 20);

#define TODAY "2024-06-15"
#define IN(s) s, sizeof(s) - 1

#define X10  "xxxxxxxxxx"
#define X100 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10

#define SIMPLE_HEADER                                                                              \
    "reference,family,given,birth_date,gender,postcode,address,nhs_number,case_id,notes\n"
/* A simple row: the columns of SIMPLE_HEADER. */
#define SROW(ref, fam, giv, dob, gen, pc, addr, nhs, cid, notes)                                   \
    ref "," fam "," giv "," dob "," gen "," pc "," addr "," nhs "," cid "," notes "\n"
#define SGOOD(fam)                                                                                 \
    SROW("R1", fam, "Jane", "2010-10-22", "female", "LS1 6AE", "1 High St", "9000000009", "C1", "n")

#define MESH_HEADER                                                                                \
    "UNIQUE REFERENCE,NHS_NO,FAMILY_NAME,GIVEN_NAME,OTHER_GIVEN_NAME,GENDER,DATE_OF_BIRTH,"        \
    "POSTCODE,DATE_OF_DEATH,ADDRESS_LINE1,ADDRESS_LINE2,ADDRESS_LINE3,ADDRESS_LINE4,"              \
    "ADDRESS_LINE5,ADDRESS_DATE,GP_PRACTICE_CODE,GP_REGISTRATION_DATE,NHAIS_POSTING_ID,"           \
    "AS_AT_DATE,LOCAL_PATIENT_ID,INTERNAL_ID,TELEPHONE_NUMBER,MOBILE_NUMBER,EMAIL_ADDRESS\n"
/* A pds-mesh request row: the first 14 columns, then 10 empty ones (ADDRESS_DATE...). */
#define MROW(ref, nhs, fam, giv, oth, gen, dob, pc, dod, a1, a2, a3, a4, a5)                       \
    ref "," nhs "," fam "," giv "," oth "," gen "," dob "," pc "," dod "," a1 "," a2 "," a3 "," a4 \
        "," a5 ",,,,,,,,,,\n"
#define MGOOD(dob, gen)                                                                            \
    MROW("REF1", "", "SMITH", "JANE", "", gen, dob, "LS1 6AE", "", "", "", "", "", "")

/* ---- Records from CSV text ---- */

struct rec {
    struct bulk_csv_record r;
    char *copy[BULK_CSV_MAX_FIELDS];
    const char *field[BULK_CSV_MAX_FIELDS];
    size_t len[BULK_CSV_MAX_FIELDS];
    int seen;
};

static int take(const struct bulk_csv_record *r, void *arg)
{
    struct rec *c = arg;

    cr_assert_eq(c->seen++, 0, "one record expected");
    c->r = *r;
    for (size_t i = 0; i < r->n_kept; i++) {
        c->copy[i] = malloc(r->len[i] + 1);
        cr_assert_not_null(c->copy[i]);
        memcpy(c->copy[i], r->field[i], r->len[i] + 1);
        c->field[i] = c->copy[i];
        c->len[i] = r->len[i];
    }
    c->r.field = c->field;
    c->r.len = c->len;
    return 0;
}

static void rec_read(struct rec *c, const char *csv, size_t n)
{
    struct bulk_csv_reader *rd;

    memset(c, 0, sizeof *c);
    cr_assert_eq(bulk_csv_reader_new(&rd, take, c), 0);
    cr_assert_eq(bulk_csv_feed(rd, csv, n), 0);
    cr_assert_eq(bulk_csv_finish(rd), 0);
    cr_assert_eq(c->seen, 1);
    bulk_csv_reader_free(rd);
}

static void rec_free(struct rec *c)
{
    for (size_t i = 0; i < c->r.n_kept; i++)
        free(c->copy[i]);
}

static int layout_of(struct bulk_layout *l, enum bulk_format want, const char *header, size_t n,
                     char *why, size_t why_size)
{
    struct rec h;
    int err;

    rec_read(&h, header, n);
    err = bulk_layout_read(l, want, &h.r, why, why_size);
    rec_free(&h);
    return err;
}

static void layout_ok(struct bulk_layout *l, enum bulk_format want, const char *header, size_t n)
{
    char why[200] = "junk";

    cr_assert_eq(layout_of(l, want, header, n, why, sizeof why), 0, "%s", why);
    cr_assert_str_eq(why, "");
}

/* ---- Names ---- */

Test(bulk_format, names)
{
    enum bulk_format f = BULK_FORMAT_AUTO;

    cr_assert_str_eq(bulk_format_name(BULK_FORMAT_SIMPLE), "simple");
    cr_assert_str_eq(bulk_format_name(BULK_FORMAT_MESH), "pds-mesh");
    cr_assert_str_eq(bulk_format_name(BULK_FORMAT_AUTO), "auto");
    cr_assert_str_eq(bulk_format_name((enum bulk_format)42), "unknown");
    cr_assert_eq(bulk_format_parse("pds-mesh", &f), 0);
    cr_assert_eq(f, BULK_FORMAT_MESH);
    cr_assert_eq(bulk_format_parse("simple", &f), 0);
    cr_assert_eq(f, BULK_FORMAT_SIMPLE);
    cr_assert_eq(bulk_format_parse("auto", &f), ERR_INVALID_INPUT);
    cr_assert_eq(bulk_format_parse("mesh", &f), ERR_INVALID_INPUT);
    cr_assert_eq(f, BULK_FORMAT_SIMPLE);
}

/* ---- Layouts ---- */

Test(bulk_format, simple_layout_in_order)
{
    struct bulk_layout l;

    layout_ok(&l, BULK_FORMAT_AUTO, IN(SIMPLE_HEADER));
    cr_assert_eq(l.format, BULK_FORMAT_SIMPLE);
    cr_assert_eq(l.n_columns, 10);
    cr_assert_eq(l.col[BULK_COL_REFERENCE], 0);
    cr_assert_eq(l.col[BULK_COL_FAMILY], 1);
    cr_assert_eq(l.col[BULK_COL_GIVEN], 2);
    cr_assert_eq(l.col[BULK_COL_BIRTH_DATE], 3);
    cr_assert_eq(l.col[BULK_COL_GENDER], 4);
    cr_assert_eq(l.col[BULK_COL_POSTCODE], 5);
    cr_assert_eq(l.col[BULK_COL_ADDRESS], 6);
    cr_assert_eq(l.col[BULK_COL_NHS_NUMBER], 7);
    cr_assert_eq(l.col[BULK_COL_CASE_ID], 8);
    cr_assert_eq(l.col[BULK_COL_OTHER_GIVEN], -1);
    cr_assert_eq(l.col[BULK_COL_ADDRESS2], -1);
}

Test(bulk_format, simple_layout_any_order_any_case)
{
    struct bulk_layout l;

    layout_ok(&l, BULK_FORMAT_AUTO, IN("\" Family \",notes,REFERENCE,Birth_Date\r\n"));
    cr_assert_eq(l.format, BULK_FORMAT_SIMPLE);
    cr_assert_eq(l.n_columns, 4);
    cr_assert_eq(l.col[BULK_COL_FAMILY], 0);
    cr_assert_eq(l.col[BULK_COL_REFERENCE], 2);
    cr_assert_eq(l.col[BULK_COL_BIRTH_DATE], 3);
    cr_assert_eq(l.col[BULK_COL_GIVEN], -1);
    cr_assert_eq(l.col[BULK_COL_NHS_NUMBER], -1);
    layout_ok(&l, BULK_FORMAT_SIMPLE, IN("reference,family,birth_date\n"));
    cr_assert_eq(l.format, BULK_FORMAT_SIMPLE);
}

Test(bulk_format, mesh_layout)
{
    struct bulk_layout l;

    layout_ok(&l, BULK_FORMAT_AUTO, IN(MESH_HEADER));
    cr_assert_eq(l.format, BULK_FORMAT_MESH);
    cr_assert_eq(l.n_columns, 24);
    cr_assert_eq(l.col[BULK_COL_REFERENCE], 0);
    cr_assert_eq(l.col[BULK_COL_NHS_NUMBER], 1);
    cr_assert_eq(l.col[BULK_COL_FAMILY], 2);
    cr_assert_eq(l.col[BULK_COL_GIVEN], 3);
    cr_assert_eq(l.col[BULK_COL_OTHER_GIVEN], 4);
    cr_assert_eq(l.col[BULK_COL_GENDER], 5);
    cr_assert_eq(l.col[BULK_COL_BIRTH_DATE], 6);
    cr_assert_eq(l.col[BULK_COL_POSTCODE], 7);
    cr_assert_eq(l.col[BULK_COL_ADDRESS], 9);
    cr_assert_eq(l.col[BULK_COL_ADDRESS5], 13);
    cr_assert_eq(l.col[BULK_COL_CASE_ID], 19, "LOCAL_PATIENT_ID serves objections by case");
    /* A file may stop after any column from POSTCODE on, and names ignore case. */
    layout_ok(&l, BULK_FORMAT_MESH,
              IN("unique reference,NHS_NO,FAMILY_NAME,GIVEN_NAME,OTHER_GIVEN_NAME,GENDER,"
                 "DATE_OF_BIRTH, postcode \n"));
    cr_assert_eq(l.format, BULK_FORMAT_MESH);
    cr_assert_eq(l.n_columns, 8);
    cr_assert_eq(l.col[BULK_COL_POSTCODE], 7);
    cr_assert_eq(l.col[BULK_COL_ADDRESS], -1);
    cr_assert_eq(l.col[BULK_COL_CASE_ID], -1);
    layout_ok(&l, BULK_FORMAT_AUTO,
              IN("UNIQUE REFERENCE,NHS_NO,FAMILY_NAME,GIVEN_NAME,OTHER_GIVEN_NAME,GENDER,"
                 "DATE_OF_BIRTH,POSTCODE,DATE_OF_DEATH,ADDRESS_LINE1,ADDRESS_LINE2\n"));
    cr_assert_eq(l.col[BULK_COL_ADDRESS2], 10);
    cr_assert_eq(l.col[BULK_COL_ADDRESS3], -1);
}

struct layout_case {
    const char *name;
    enum bulk_format want;
    const char *header;
    size_t len;
    const char *why;
};

static const struct layout_case bad_layouts[] = {
    {"no birth_date", BULK_FORMAT_AUTO, IN("reference,family,given\n"),
     "the header has no birth_date column"},
    {"no family", BULK_FORMAT_SIMPLE, IN("reference,birth_date\n"),
     "the header has no family column"},
    {"duplicate", BULK_FORMAT_AUTO, IN("reference,family,FAMILY,birth_date\n"),
     "column family appears twice"},
    {"unknown format", BULK_FORMAT_AUTO, IN("name,dob\n"),
     "the header is neither simple (reference,...) nor pds-mesh (UNIQUE REFERENCE,...)"},
    {"simple wanted, pds-mesh given", BULK_FORMAT_SIMPLE, IN(MESH_HEADER),
     "the header has no reference column"},
    {"pds-mesh wanted, simple given", BULK_FORMAT_MESH, IN(SIMPLE_HEADER),
     "the pds-mesh header's column 1 should be UNIQUE REFERENCE"},
    {"pds-mesh out of order", BULK_FORMAT_AUTO,
     IN("UNIQUE REFERENCE,NHS_NO,GIVEN_NAME,FAMILY_NAME,OTHER_GIVEN_NAME,GENDER,"
        "DATE_OF_BIRTH,POSTCODE\n"),
     "the pds-mesh header's column 3 should be FAMILY_NAME"},
    {"pds-mesh stops too soon", BULK_FORMAT_AUTO,
     IN("UNIQUE REFERENCE,NHS_NO,FAMILY_NAME,GIVEN_NAME,OTHER_GIVEN_NAME,GENDER,"
        "DATE_OF_BIRTH\n"),
     "the pds-mesh header stops before POSTCODE"},
    {"pds-mesh too long", BULK_FORMAT_AUTO,
     IN("UNIQUE REFERENCE,NHS_NO,FAMILY_NAME,GIVEN_NAME,"
        "OTHER_GIVEN_NAME,GENDER,DATE_OF_BIRTH,POSTCODE,"
        "DATE_OF_DEATH,ADDRESS_LINE1,ADDRESS_LINE2,"
        "ADDRESS_LINE3,ADDRESS_LINE4,ADDRESS_LINE5,"
        "ADDRESS_DATE,GP_PRACTICE_CODE,"
        "GP_REGISTRATION_DATE,NHAIS_POSTING_ID,AS_AT_DATE,"
        "LOCAL_PATIENT_ID,INTERNAL_ID,TELEPHONE_NUMBER,"
        "MOBILE_NUMBER,EMAIL_ADDRESS,EXTRA\n"),
     "the pds-mesh header has 25 columns; a request has 24"},
    {"pds-mesh misspelt", BULK_FORMAT_AUTO, IN("UNIQUE REFERENCE,NHS_NO,FAMILY NAME\n"),
     "the pds-mesh header's column 3 should be FAMILY_NAME"},
};

struct idx {
    int i;
};

ParameterizedTestParameters(bulk_format, bad_layout)
{
    static struct idx p[ARRAY_SIZE(bad_layouts)];
    for (size_t i = 0; i < ARRAY_SIZE(bad_layouts); i++)
        p[i].i = (int)i;
    return cr_make_param_array(struct idx, p, ARRAY_SIZE(p));
}

ParameterizedTest(struct idx *p, bulk_format, bad_layout)
{
    const struct layout_case *c = &bad_layouts[p->i];
    struct bulk_layout l;
    char why[200];

    cr_assert_eq(layout_of(&l, c->want, c->header, c->len, why, sizeof why), ERR_INVALID_INPUT,
                 "%s", c->name);
    cr_assert_str_eq(why, c->why, "%s", c->name);
}

Test(bulk_format, header_over_the_field_cap)
{
    struct buf h;
    struct bulk_layout l;
    char why[200];

    buf_init(&h, 4096);
    cr_assert_eq(buf_append_str(&h, "reference,family,birth_date"), 0);
    for (int i = 3; i < BULK_CSV_MAX_FIELDS + 1; i++)
        cr_assert_eq(buf_appendf(&h, ",c%d", i), 0);
    cr_assert_eq(layout_of(&l, BULK_FORMAT_AUTO, buf_cstr(&h), buf_len(&h), why, sizeof why),
                 ERR_INVALID_INPUT);
    cr_assert_str_eq(why, "the header has 65 columns; at most 64 can be read");
    buf_free(&h);
}

/* ---- Bad rows ---- */

struct row_case {
    const char *name;
    enum bulk_format format;
    const char *row;
    size_t len;
    const char *why;
};

static const struct row_case bad_rows[] = {
    {"family missing", BULK_FORMAT_SIMPLE, IN(SGOOD("")), "family: missing"},
    {"family blank", BULK_FORMAT_SIMPLE, IN(SGOOD("\"  \"")), "family: missing"},
    {"reference missing", BULK_FORMAT_SIMPLE,
     IN(SROW("", "Smith", "", "2010-10-22", "", "", "", "", "", "")), "reference: missing"},
    {"reference too long", BULK_FORMAT_SIMPLE,
     IN(SROW(X100 "x", "Smith", "", "2010-10-22", "", "", "", "", "", "")),
     "reference: longer than 100 bytes"},
    {"impossible date", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "", "2023-02-30", "", "", "", "", "", "")),
     "birth_date: is not a real calendar date"},
    {"future date", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "", "2024-06-16", "", "", "", "", "", "")),
     "birth_date: must not be in the future"},
    {"date form", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "", "22/10/2010", "", "", "", "", "", "")),
     "birth_date: must be a date in the form YYYY-MM-DD"},
    {"date before 1880", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "", "1879-12-31", "", "", "", "", "", "")),
     "birth_date: must not be before 1880"},
    {"date missing", BULK_FORMAT_SIMPLE, IN(SROW("R1", "Smith", "", "", "", "", "", "", "", "")),
     "birth_date: missing"},
    {"bad NHS number", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "", "2010-10-22", "", "", "", "9000000000", "", "")),
     "nhs_number: is not a valid NHS number (10 digits with a valid check digit)"},
    {"too few fields", BULK_FORMAT_SIMPLE, IN("R1,Smith\n"),
     "the row has 2 fields; the header has 10"},
    {"too many fields", BULK_FORMAT_SIMPLE,
     IN("R1,Smith,Jane,2010-10-22,female,LS1 6AE,1 High St,9000000009,C1,n,extra\n"),
     "the row has 11 fields; the header has 10"},
    {"given over the limit", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", X100 "x", "2010-10-22", "", "", "", "", "", "")),
     "given: longer than 100 bytes"},
    {"family over PDS's limit", BULK_FORMAT_SIMPLE,
     IN(SGOOD("Abcdefghijabcdefghijabcdefghijabcdef")),
     "family: must be at most 35 characters, the most PDS holds"},
    {"family with digits", BULK_FORMAT_SIMPLE, IN(SGOOD("Sm1th")),
     "family: must not contain digits"},
    {"invalid UTF-8", BULK_FORMAT_SIMPLE, IN(SGOOD("Sm\xffth")), "family: not valid UTF-8"},
    {"overlong UTF-8", BULK_FORMAT_SIMPLE, IN(SGOOD("\xc0\xaf")), "family: not valid UTF-8"},
    {"UTF-8 surrogate", BULK_FORMAT_SIMPLE, IN(SGOOD("\xed\xa0\x80")), "family: not valid UTF-8"},
    {"UTF-8 beyond U+10FFFF", BULK_FORMAT_SIMPLE, IN(SGOOD("\xf4\x90\x80\x80")),
     "family: not valid UTF-8"},
    {"UTF-8 cut short", BULK_FORMAT_SIMPLE, IN(SGOOD("Zo\xc3")), "family: not valid UTF-8"},
    {"NUL byte", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "Ja\0ne", "2010-10-22", "", "", "", "", "", "")),
     "given: holds a NUL byte"},
    {"NUL in the reference", BULK_FORMAT_SIMPLE,
     IN(SROW("R\0", "Smith", "", "2010-10-22", "", "", "", "", "", "")),
     "reference: holds a NUL byte"},
    {"invalid UTF-8 in another column", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "", "2010-10-22", "", "", "", "", "", "\xfe")),
     "column 10: not valid UTF-8"},
    {"gender", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "", "2010-10-22", "f", "", "", "", "", "")),
     "gender: must be one of male, female, other, unknown"},
    {"postcode", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "", "2010-10-22", "", "LS1", "", "", "", "")),
     "postcode: is not a valid UK postcode"},
    {"case_id with a space", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "", "2010-10-22", "", "", "", "", "a b", "")),
     "case_id: may hold only visible ASCII characters, without spaces"},
    {"case_id too long", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "", "2010-10-22", "", "", "", "", "C" X10 X10 X10 X10 X10 X10 "abcd",
             "")),
     "case_id: must be at most 64 characters"},
    {"six address lines", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "", "2010-10-22", "", "", "\"a,b,c\nd,e\r\nf\"", "", "", "")),
     "address: more than 5 lines"},
    {"address line too long", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "", "2010-10-22", "", "", "\"1 High St," X100 "x\"", "", "", "")),
     "address: a line is longer than 100 bytes"},
    {"address control character", BULK_FORMAT_SIMPLE,
     IN(SROW("R1", "Smith", "", "2010-10-22", "", "", "1 High St\x01", "", "", "")),
     "address: contains a control or invisible character"},
    {"pds-mesh YYYYMM", BULK_FORMAT_MESH, IN(MGOOD("201010", "2")),
     "DATE_OF_BIRTH: needs a full date (YYYYMMDD)"},
    {"pds-mesh YYYY", BULK_FORMAT_MESH, IN(MGOOD("2010", "2")),
     "DATE_OF_BIRTH: needs a full date (YYYYMMDD)"},
    {"pds-mesh ISO date", BULK_FORMAT_MESH, IN(MGOOD("2010-10-22", "2")),
     "DATE_OF_BIRTH: must be a date in the form YYYYMMDD"},
    {"pds-mesh 9 digits", BULK_FORMAT_MESH, IN(MGOOD("201010221", "2")),
     "DATE_OF_BIRTH: must be a date in the form YYYYMMDD"},
    {"pds-mesh impossible date", BULK_FORMAT_MESH, IN(MGOOD("20230230", "2")),
     "DATE_OF_BIRTH: is not a real calendar date"},
    {"pds-mesh future date", BULK_FORMAT_MESH, IN(MGOOD("202406160000", "2")),
     "DATE_OF_BIRTH: must not be in the future"},
    {"pds-mesh date missing", BULK_FORMAT_MESH, IN(MGOOD("", "2")), "DATE_OF_BIRTH: missing"},
    {"pds-mesh gender 3", BULK_FORMAT_MESH, IN(MGOOD("20101022", "3")),
     "GENDER: must be 0, 1, 2 or 9"},
    {"pds-mesh gender word", BULK_FORMAT_MESH, IN(MGOOD("20101022", "female")),
     "GENDER: must be 0, 1, 2 or 9"},
    {"pds-mesh family missing", BULK_FORMAT_MESH,
     IN(MROW("REF1", "", "", "JANE", "", "", "20101022", "", "", "", "", "", "", "")),
     "FAMILY_NAME: missing"},
    {"pds-mesh reference missing", BULK_FORMAT_MESH,
     IN(MROW("", "", "SMITH", "JANE", "", "", "20101022", "", "", "", "", "", "", "")),
     "UNIQUE REFERENCE: missing"},
    {"pds-mesh bad NHS number", BULK_FORMAT_MESH,
     IN(MROW("REF1", "9000000000", "SMITH", "", "", "", "20101022", "", "", "", "", "", "", "")),
     "NHS_NO: is not a valid NHS number (10 digits with a valid check digit)"},
    {"pds-mesh NUL in a column not read", BULK_FORMAT_MESH,
     IN(MROW("REF1", "", "SMITH", "", "", "", "20101022", "", "2\0", "", "", "", "", "")),
     "DATE_OF_DEATH: holds a NUL byte"},
    {"pds-mesh invalid UTF-8 in the last column", BULK_FORMAT_MESH,
     IN("REF1,,SMITH,,,,20101022,,,,,,,,,,,,,,,,,\x80\n"), "EMAIL_ADDRESS: not valid UTF-8"},
    {"pds-mesh address line too long", BULK_FORMAT_MESH,
     IN(MROW("REF1", "", "SMITH", "", "", "", "20101022", "", "", "1", "2", X100 "x", "", "")),
     "ADDRESS_LINE3: longer than 100 bytes"},
    {"pds-mesh other given name", BULK_FORMAT_MESH,
     IN(MROW("REF1", "", "SMITH", "JANE", "M4RY", "", "20101022", "", "", "", "", "", "", "")),
     "OTHER_GIVEN_NAME: must not contain digits"},
    {"pds-mesh too few fields", BULK_FORMAT_MESH, IN("REF1,,SMITH,,,,20101022,,,,,,,,,,,,,,,,\n"),
     "the row has 23 fields; the header has 24"},
};

ParameterizedTestParameters(bulk_format, bad_row)
{
    static struct idx p[ARRAY_SIZE(bad_rows)];
    for (size_t i = 0; i < ARRAY_SIZE(bad_rows); i++)
        p[i].i = (int)i;
    return cr_make_param_array(struct idx, p, ARRAY_SIZE(p));
}

static void layout_for(struct bulk_layout *l, enum bulk_format f)
{
    if (f == BULK_FORMAT_MESH)
        layout_ok(l, BULK_FORMAT_AUTO, IN(MESH_HEADER));
    else
        layout_ok(l, BULK_FORMAT_AUTO, IN(SIMPLE_HEADER));
}

ParameterizedTest(struct idx *p, bulk_format, bad_row)
{
    const struct row_case *c = &bad_rows[p->i];
    struct bulk_layout l;
    struct demographics d;
    struct rec row;
    char why[200];

    layout_for(&l, c->format);
    rec_read(&row, c->row, c->len);
    cr_assert_eq(bulk_row_read(&l, &row.r, TODAY, &d, why, sizeof why), ERR_INVALID_INPUT, "%s",
                 c->name);
    cr_assert_str_eq(why, c->why, "%s", c->name);
    rec_free(&row);
}

/* The good row each bad one was made from is read. */
Test(bulk_format, baselines_are_good)
{
    static const struct {
        enum bulk_format f;
        const char *row;
        size_t len;
    } good[] = {
        {BULK_FORMAT_SIMPLE, IN(SGOOD("Smith"))},
        {BULK_FORMAT_MESH, IN(MGOOD("20101022", "2"))},
    };

    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        struct bulk_layout l;
        struct demographics d;
        struct rec row;
        char why[200] = "junk";
        layout_for(&l, good[i].f);
        rec_read(&row, good[i].row, good[i].len);
        cr_assert_eq(bulk_row_read(&l, &row.r, TODAY, &d, why, sizeof why), 0, "%s", why);
        cr_assert_str_eq(why, "");
        rec_free(&row);
    }
}

Test(bulk_format, malformed_today_is_internal)
{
    struct bulk_layout l;
    struct demographics d;
    struct rec row;
    char why[200];

    layout_for(&l, BULK_FORMAT_SIMPLE);
    rec_read(&row, IN(SGOOD("Smith")));
    cr_assert_eq(bulk_row_read(&l, &row.r, "2024-13-01", &d, why, sizeof why), ERR_INTERNAL);
    cr_assert_eq(bulk_row_read(&l, &row.r, "today", &d, why, sizeof why), ERR_INTERNAL);
    rec_free(&row);
}

/* ---- Good rows ---- */

static void read_good(enum bulk_format f, const char *header, size_t hlen, const char *csv,
                      size_t n, struct demographics *d)
{
    struct bulk_layout l;
    struct rec row;
    char why[200];

    layout_ok(&l, BULK_FORMAT_AUTO, header, hlen);
    cr_assert_eq(l.format, f);
    rec_read(&row, csv, n);
    cr_assert_eq(bulk_row_read(&l, &row.r, TODAY, d, why, sizeof why), 0, "%s", why);
    rec_free(&row);
}

Test(bulk_format, simple_full_row)
{
    struct demographics d;

    read_good(BULK_FORMAT_SIMPLE, IN(SIMPLE_HEADER),
              IN(SROW("R1",
                      " O\xe2\x80\x99"
                      "Brien ",
                      "\"Mary  Ann \"", "2010-10-22", "Female", "ls16ae",
                      "\"1 Trevelyan Square, Leeds\nWest\tYorkshire\r\n,\"", "900 000 0009",
                      "LAS-000123", "anything")),
              &d);
    cr_assert_str_eq(d.family, "O'Brien");
    cr_assert_eq(d.n_given, 1);
    cr_assert_str_eq(d.given[0], "Mary Ann");
    cr_assert_str_eq(d.birth_date, "2010-10-22");
    cr_assert_eq(d.gender, DEMOG_GENDER_FEMALE);
    cr_assert_str_eq(d.postcode, "LS1 6AE");
    cr_assert_eq(d.n_address, 3);
    cr_assert_str_eq(d.address[0], "1 Trevelyan Square");
    cr_assert_str_eq(d.address[1], "Leeds");
    cr_assert_str_eq(d.address[2], "West Yorkshire");
    cr_assert_str_eq(d.nhs_number, "9000000009");
    cr_assert_str_eq(d.case_id, "LAS-000123");
    cr_assert_eq(d.write_back, -1);
    cr_assert_str_eq(d.purpose, "");
}

Test(bulk_format, simple_minimal_row_in_any_order)
{
    struct demographics d;

    read_good(BULK_FORMAT_SIMPLE, IN("notes,birth_date,Family,reference\n"),
              IN("x,2010-10-22,Smith,R2\n"), &d);
    cr_assert_str_eq(d.family, "Smith");
    cr_assert_eq(d.n_given, 0);
    cr_assert_str_eq(d.birth_date, "2010-10-22");
    cr_assert_eq(d.gender, DEMOG_GENDER_NONE);
    cr_assert_str_eq(d.postcode, "");
    cr_assert_eq(d.n_address, 0);
    cr_assert_str_eq(d.nhs_number, "");
    cr_assert_str_eq(d.case_id, "");
    cr_assert_eq(d.write_back, -1);
    /* Empty optional fields are absent. */
    read_good(BULK_FORMAT_SIMPLE, IN(SIMPLE_HEADER),
              IN(SROW("R3", "Smith", " ", "2010-10-22", "", "\" \"", "\",,\"", "", "", "")), &d);
    cr_assert_eq(d.n_given, 0);
    cr_assert_eq(d.gender, DEMOG_GENDER_NONE);
    cr_assert_str_eq(d.postcode, "");
    cr_assert_eq(d.n_address, 0);
}

Test(bulk_format, mesh_full_row)
{
    struct demographics d;

    read_good(
        BULK_FORMAT_MESH, IN(MESH_HEADER),
        IN(MROW("REF1", "900 000 0009", "SMITH", "JANE", "MARY ANN", "2", "20101022", "ls1 6ae",
                "20200101", "1 TREVELYAN SQUARE", "", "\"LEEDS, WEST\"", "", "YORKSHIRE")),
        &d);
    cr_assert_str_eq(d.family, "SMITH");
    cr_assert_eq(d.n_given, 2);
    cr_assert_str_eq(d.given[0], "JANE");
    cr_assert_str_eq(d.given[1], "MARY ANN");
    cr_assert_str_eq(d.birth_date, "2010-10-22");
    cr_assert_eq(d.gender, DEMOG_GENDER_FEMALE);
    cr_assert_str_eq(d.postcode, "LS1 6AE");
    cr_assert_eq(d.n_address, 3);
    cr_assert_str_eq(d.address[0], "1 TREVELYAN SQUARE");
    cr_assert_str_eq(d.address[1], "LEEDS, WEST");
    cr_assert_str_eq(d.address[2], "YORKSHIRE");
    cr_assert_str_eq(d.nhs_number, "9000000009");
    cr_assert_str_eq(d.case_id, "");
    cr_assert_eq(d.write_back, -1);
}

/* LOCAL_PATIENT_ID is the case for objections when it can be a case id; otherwise it is
 * the council's business and the row stays good. */
Test(bulk_format, mesh_local_patient_id_is_the_case_when_it_can_be)
{
    struct demographics d;
    const char *base = "REF1,,SMITH,JANE,,2,20101022,LS1 6AE,,,,,,,,,,,,";

    char row[256];
    snprintf(row, sizeof(row), "%s%s,,,,\n", base, "LAS-7");
    read_good(BULK_FORMAT_MESH, IN(MESH_HEADER), row, strlen(row), &d);
    cr_assert_str_eq(d.case_id, "LAS-7");
    snprintf(row, sizeof(row), "%s%s,,,,\n", base, "\"LOCAL ID 7\"");
    read_good(BULK_FORMAT_MESH, IN(MESH_HEADER), row, strlen(row), &d);
    cr_assert_str_eq(d.case_id, "", "a space: no case id, and no bad row");
    snprintf(row, sizeof(row), "%s%.80s,,,,\n", base,
             "L12345678901234567890123456789012345678901234567890123456789012345678901234567890");
    read_good(BULK_FORMAT_MESH, IN(MESH_HEADER), row, strlen(row), &d);
    cr_assert_str_eq(d.case_id, "", "over 64 characters: none");
}

Test(bulk_format, mesh_dates_genders_and_short_files)
{
    struct demographics d;

    read_good(BULK_FORMAT_MESH, IN(MESH_HEADER), IN(MGOOD("201010221230", "1")), &d);
    cr_assert_str_eq(d.birth_date, "2010-10-22", "the time is dropped");
    cr_assert_eq(d.gender, DEMOG_GENDER_MALE);
    read_good(BULK_FORMAT_MESH, IN(MESH_HEADER), IN(MGOOD("20101022", "0")), &d);
    cr_assert_eq(d.gender, DEMOG_GENDER_NONE, "0 (not known) sends no gender");
    read_good(BULK_FORMAT_MESH, IN(MESH_HEADER), IN(MGOOD("20101022", "9")), &d);
    cr_assert_eq(d.gender, DEMOG_GENDER_NONE, "9 (not specified) sends no gender");
    read_good(BULK_FORMAT_MESH, IN(MESH_HEADER), IN(MGOOD("20101022", "")), &d);
    cr_assert_eq(d.gender, DEMOG_GENDER_NONE);
    /* OTHER_GIVEN_NAME alone is the first given name. */
    read_good(BULK_FORMAT_MESH, IN(MESH_HEADER),
              IN(MROW("REF1", "", "SMITH", "", "ANN", "", "20101022", "", "", "", "", "", "", "")),
              &d);
    cr_assert_eq(d.n_given, 1);
    cr_assert_str_eq(d.given[0], "ANN");
    read_good(BULK_FORMAT_MESH,
              IN("UNIQUE REFERENCE,NHS_NO,FAMILY_NAME,GIVEN_NAME,OTHER_GIVEN_NAME,GENDER,"
                 "DATE_OF_BIRTH,POSTCODE\n"),
              IN("REF2,,SMITH,JOHN,,1,19991231,LS1 6AE\n"), &d);
    cr_assert_str_eq(d.birth_date, "1999-12-31");
    cr_assert_str_eq(d.postcode, "LS1 6AE");
    cr_assert_eq(d.n_address, 0);
}

/* ---- Output ---- */

#define OUT_SIMPLE_HEADER "reference,family,birth_date,notes\n"
#define OUT_SIMPLE_ROW    "R1,Smith,2010-10-22,n1\n"
#define SOUT(tail)        "R1,Smith,2010-10-22,n1," tail "\r\n"

#define MESH_A MGOOD("20101022", "2")
#define MESH_B                                                                                     \
    MROW("REF2", "900 000 0009", "SMITH", "", "", "", "20101022", "", "", "", "", "", "", "")
/* A pds-mesh response row: 29 columns, FAMILY_NAME ... EMAIL_ADDRESS and MPS_ID empty. */
#define MOUT(ref, req, sens, code, num, ind, conf)                                                 \
    ref "," req ",,,,,,,,,,,,,,,,,,,,,," sens ",," code "," num "," ind "," conf "\r\n"

struct out_case {
    const char *name;
    enum bulk_format format;
    const char *row;
    size_t len;
    enum bulk_answer_kind kind;
    enum trace_outcome outcome;
    const char *nhs;
    double score;
    bool restricted;
    const char *superseded;
    bool invalidated;
    const char *why;
    const char *want;
};

#define SIMPLE BULK_FORMAT_SIMPLE
#define MESH   BULK_FORMAT_MESH
#define TRACED BULK_ANSWER_TRACED
#define BAD    BULK_ANSWER_BAD
#define FAILED BULK_ANSWER_FAILED
#define N9     "9000000009"
#define N17    "9000000017"

static const struct out_case outs[] = {
    {"matched", SIMPLE, IN(OUT_SIMPLE_ROW), TRACED, TRACE_MATCHED, N9, 1, 0, "", 0, NULL,
     SOUT("matched,9000000009,1,")},
    {"matched 0.96", SIMPLE, IN(OUT_SIMPLE_ROW), TRACED, TRACE_MATCHED, N9, 0.96, 0, "", 0, NULL,
     SOUT("matched,9000000009,0.96,")},
    {"potential match", SIMPLE, IN(OUT_SIMPLE_ROW), TRACED, TRACE_POTENTIAL_MATCH, N17, 0.8734, 0,
     "", 0, NULL, SOUT("potential_match,9000000017,0.8734,")},
    {"score 0.9", SIMPLE, IN(OUT_SIMPLE_ROW), TRACED, TRACE_POTENTIAL_MATCH, N17, 0.9, 0, "", 0,
     NULL, SOUT("potential_match,9000000017,0.9,")},
    {"score rounded to 4 places", SIMPLE, IN(OUT_SIMPLE_ROW), TRACED, TRACE_POTENTIAL_MATCH, N17,
     0.87346, 0, "", 0, NULL, SOUT("potential_match,9000000017,0.8735,")},
    {"score rounded up to 1", SIMPLE, IN(OUT_SIMPLE_ROW), TRACED, TRACE_MATCHED, N9, 0.99996, 0, "",
     0, NULL, SOUT("matched,9000000009,1,")},
    {"score 0", SIMPLE, IN(OUT_SIMPLE_ROW), TRACED, TRACE_POTENTIAL_MATCH, N17, 0, 0, "", 0, NULL,
     SOUT("potential_match,9000000017,0,")},
    {"no match", SIMPLE, IN(OUT_SIMPLE_ROW), TRACED, TRACE_NO_MATCH, "", -1, 0, "", 0, NULL,
     SOUT("no_match,,,")},
    {"multiple matches", SIMPLE, IN(OUT_SIMPLE_ROW), TRACED, TRACE_MULTIPLE_MATCHES, "", -1, 0, "",
     0, NULL, SOUT("multiple_matches,,,")},
    {"objection", SIMPLE, IN(OUT_SIMPLE_ROW), TRACED, TRACE_OBJECTION, "", -1, 0, "", 0, NULL,
     SOUT("objection,,,")},
    {"bad row", SIMPLE, IN(OUT_SIMPLE_ROW), BAD, 0, "", -1, 0, "", 0, "family: missing",
     SOUT("invalid,,,family: missing")},
    {"failed", SIMPLE, IN(OUT_SIMPLE_ROW), FAILED, 0, "", -1, 0, "", 0,
     "pds_unavailable: PDS did not answer, after 3 attempts",
     SOUT("error,,,\"pds_unavailable: PDS did not answer, after 3 attempts\"")},
    {"short row padded", SIMPLE, IN("R1,Smith\n"), BAD, 0, "", -1, 0, "", 0,
     "the row has 2 fields; the header has 4",
     "R1,Smith,,,invalid,,,the row has 2 fields; the header has 4\r\n"},
    {"long row cut", SIMPLE, IN("R1,Smith,2010-10-22,n1,extra\n"), BAD, 0, "", -1, 0, "", 0,
     "the row has 5 fields; the header has 4",
     SOUT("invalid,,,the row has 5 fields; the header has 4")},
    {"formulas guarded", SIMPLE, IN("=1+2,Smith,2010-10-22,\"-x,y\"\n"), TRACED, TRACE_NO_MATCH, "",
     -1, 0, "", 0, NULL, "'=1+2,Smith,2010-10-22,\"'-x,y\",no_match,,,\r\n"},
    {"quotes and line ends echoed", SIMPLE, IN("R1,\"a\"\"b\",\"x\r\ny\",\" n \"\n"), TRACED,
     TRACE_NO_MATCH, "", -1, 0, "", 0, NULL, "R1,\"a\"\"b\",\"x\r\ny\",\" n \",no_match,,,\r\n"},
    {"invalid UTF-8 replaced", SIMPLE, IN("R1,Sm\xffth,\"Zo\xc3\",\"a\0b\xe2\x82\"\n"), BAD, 0, "",
     -1, 0, "", 0, "family: not valid UTF-8",
     "R1,Sm\xef\xbf\xbdth,Zo\xef\xbf\xbd,a\xef\xbf\xbd"
     "b\xef\xbf\xbd\xef\xbf\xbd,invalid,,,family: not valid UTF-8\r\n"},
    {"mesh matched, score 1", MESH, IN(MESH_A), TRACED, TRACE_MATCHED, N9, 1, 0, "", 0, NULL,
     MOUT("REF1", "", "", "00", N9, "2", "100")},
    {"mesh matched, algorithmic", MESH, IN(MESH_A), TRACED, TRACE_MATCHED, N9, 0.96, 0, "", 0, NULL,
     MOUT("REF1", "", "", "00", N9, "4", "96")},
    {"mesh matched, cross-checked", MESH, IN(MESH_B), TRACED, TRACE_MATCHED, N9, 0.96, 0, "", 0,
     NULL, MOUT("REF2", "900 000 0009", "", "00", N9, "1", "96")},
    {"mesh matched, another number than given", MESH, IN(MESH_B), TRACED, TRACE_MATCHED, N17, 1, 0,
     "", 0, NULL, MOUT("REF2", "900 000 0009", "", "00", N17, "2", "100")},
    {"mesh superseded", MESH, IN(MESH_B), TRACED, TRACE_MATCHED, N17, 1, 0, N9, 0, NULL,
     MOUT("REF2", "900 000 0009", "", "90", N17, "1", "100")},
    {"mesh superseded, not the one given", MESH, IN(MESH_A), TRACED, TRACE_MATCHED, N17, 0.97, 0,
     N9, 0, NULL, MOUT("REF1", "", "", "90", N17, "4", "97")},
    {"mesh restricted", MESH, IN(MESH_A), TRACED, TRACE_MATCHED, N9, 1, 1, "", 0, NULL,
     MOUT("REF1", "", "S", "92", N9, "2", "100")},
    {"mesh restricted and superseded", MESH, IN(MESH_B), TRACED, TRACE_MATCHED, N17, 1, 1, N9, 0,
     NULL, MOUT("REF2", "900 000 0009", "S", "92", N17, "1", "100")},
    {"mesh potential match", MESH, IN(MESH_A), TRACED, TRACE_POTENTIAL_MATCH, N9, 0.87, 0, "", 0,
     NULL, MOUT("REF1", "", "", "00", N9, "4", "87")},
    {"mesh percentage rounded", MESH, IN(MESH_A), TRACED, TRACE_POTENTIAL_MATCH, N9, 0.875, 0, "",
     0, NULL, MOUT("REF1", "", "", "00", N9, "4", "88")},
    {"mesh held number invalidated", MESH, IN(MESH_B), TRACED, TRACE_NO_MATCH, "", -1, 0, "", 1,
     NULL, MOUT("REF2", "900 000 0009", "", "91", "0000000000", "1", "0")},
    {"mesh no match", MESH, IN(MESH_A), TRACED, TRACE_NO_MATCH, "", -1, 0, "", 0, NULL,
     MOUT("REF1", "", "", "98", "0000000000", "0", "0")},
    {"mesh multiple matches", MESH, IN(MESH_A), TRACED, TRACE_MULTIPLE_MATCHES, "", -1, 0, "", 0,
     NULL, MOUT("REF1", "", "", "97", "9999999999", "0", "0")},
    {"mesh objection", MESH, IN(MESH_B), TRACED, TRACE_OBJECTION, "", -1, 0, "", 0, NULL,
     MOUT("REF2", "900 000 0009", "", "", "", "0", "0")},
    {"mesh bad row", MESH, IN(MESH_A), BAD, 0, "", -1, 0, "", 0, "GENDER: must be 0, 1, 2 or 9",
     MOUT("REF1", "", "", "96", "0000000000", "0", "0")},
    {"mesh failed", MESH, IN(MESH_B), FAILED, 0, "", -1, 0, "", 0, "pds_unavailable: x",
     MOUT("REF2", "900 000 0009", "", "", "", "0", "0")},
    {"mesh short row", MESH, IN("REF9,9000000009\n"), BAD, 0, "", -1, 0, "", 0,
     "the row has 2 fields; the header has 24", MOUT("REF9", N9, "", "96", "0000000000", "0", "0")},
    {"mesh reference guarded", MESH, IN("-REF,,SMITH,,,,20101022,,,,,,,,,,,,,,,,,\n"), TRACED,
     TRACE_NO_MATCH, "", -1, 0, "", 0, NULL, MOUT("'-REF", "", "", "98", "0000000000", "0", "0")},
};

ParameterizedTestParameters(bulk_format, output_row)
{
    static struct idx p[ARRAY_SIZE(outs)];
    for (size_t i = 0; i < ARRAY_SIZE(outs); i++)
        p[i].i = (int)i;
    return cr_make_param_array(struct idx, p, ARRAY_SIZE(p));
}

static void answer_of(const struct out_case *c, struct bulk_answer *a)
{
    memset(a, 0, sizeof *a);
    a->kind = c->kind;
    a->result.outcome = c->outcome;
    snprintf(a->result.nhs_number, sizeof a->result.nhs_number, "%s", c->nhs);
    a->result.score = c->score;
    a->result.restricted = c->restricted;
    snprintf(a->result.superseded_from, sizeof a->result.superseded_from, "%s", c->superseded);
    a->result.held_invalidated = c->invalidated;
    a->why = c->why;
}

ParameterizedTest(struct idx *p, bulk_format, output_row)
{
    const struct out_case *c = &outs[p->i];
    struct bulk_layout l;
    struct bulk_answer a;
    struct rec row;
    struct buf out;

    if (c->format == BULK_FORMAT_MESH)
        layout_ok(&l, BULK_FORMAT_AUTO, IN(MESH_HEADER));
    else
        layout_ok(&l, BULK_FORMAT_AUTO, IN(OUT_SIMPLE_HEADER));
    rec_read(&row, c->row, c->len);
    answer_of(c, &a);
    buf_init(&out, 1 << 16);
    cr_assert_eq(buf_append_str(&out, "x"), 0);
    cr_assert_eq(bulk_output_row(&l, &row.r, &a, &out), 0, "%s", c->name);
    cr_assert_str_eq(buf_cstr(&out) + 1, c->want, "%s", c->name);
    buf_free(&out);
    rec_free(&row);
}

Test(bulk_format, mesh_output_from_a_short_file_has_29_columns)
{
    struct bulk_layout l;
    struct bulk_answer a = {.kind = BULK_ANSWER_TRACED};
    struct rec row;
    struct buf out;

    layout_ok(&l, BULK_FORMAT_AUTO,
              IN("UNIQUE REFERENCE,NHS_NO,FAMILY_NAME,GIVEN_NAME,OTHER_GIVEN_NAME,GENDER,"
                 "DATE_OF_BIRTH,POSTCODE\n"));
    rec_read(&row, IN("REF3,,SMITH,,,,20101022,\n"));
    a.result.outcome = TRACE_MATCHED;
    memcpy(a.result.nhs_number, N9, 11);
    a.result.score = 1;
    buf_init(&out, 4096);
    cr_assert_eq(bulk_output_row(&l, &row.r, &a, &out), 0);
    cr_assert_str_eq(buf_cstr(&out), MOUT("REF3", "", "", "00", N9, "2", "100"));
    buf_free(&out);
    rec_free(&row);
}

Test(bulk_format, output_headers)
{
    struct bulk_layout l;
    struct rec h;
    struct buf out;

    buf_init(&out, 4096);
    rec_read(&h, IN("reference,\"Family \",birth_date,=notes\r\n"));
    cr_assert_eq(bulk_layout_read(&l, BULK_FORMAT_AUTO, &h.r, NULL, 0), 0);
    cr_assert_eq(bulk_output_header(&l, &h.r, "ignored", 3, true, &out), 0);
    cr_assert_str_eq(buf_cstr(&out), "\xEF\xBB\xBFreference,\"Family \",birth_date,'=notes,"
                                     "outcome,matched_nhs_number,score,error\r\n");
    rec_free(&h);
    buf_reset(&out);
    rec_read(&h, IN(MESH_HEADER));
    cr_assert_eq(bulk_layout_read(&l, BULK_FORMAT_AUTO, &h.r, NULL, 0), 0);
    cr_assert_eq(bulk_output_header(&l, &h.r, "clients", 450000, false, &out), 0);
    cr_assert_str_eq(buf_cstr(&out), "clients,SPINE_MPT_RESPONSE,450000,00\r\n");
    buf_reset(&out);
    cr_assert_eq(bulk_output_header(&l, &h.r, "clients", 0, true, &out), 0);
    cr_assert_str_eq(buf_cstr(&out), "\xEF\xBB\xBF"
                                     "clients,SPINE_MPT_RESPONSE,0,00\r\n");
    rec_free(&h);
    buf_free(&out);
}

Test(bulk_format, output_failure_leaves_out_as_it_was)
{
    struct bulk_layout l;
    struct bulk_answer a = {.kind = BULK_ANSWER_BAD, .why = "family: missing"};
    struct rec h, row;
    struct buf out;

    rec_read(&h, IN(OUT_SIMPLE_HEADER));
    cr_assert_eq(bulk_layout_read(&l, BULK_FORMAT_AUTO, &h.r, NULL, 0), 0);
    rec_read(&row, IN(OUT_SIMPLE_ROW));
    buf_init(&out, 20);
    cr_assert_eq(buf_append_str(&out, "kept"), 0);
    cr_assert_eq(bulk_output_row(&l, &row.r, &a, &out), ERR_TOO_LARGE);
    cr_assert_str_eq(buf_cstr(&out), "kept");
    cr_assert_eq(bulk_output_header(&l, &h.r, "f", 1, true, &out), ERR_TOO_LARGE);
    cr_assert_str_eq(buf_cstr(&out), "kept");
    buf_free(&out);
    rec_free(&row);
    rec_free(&h);
}
