/* pds-mesh: the PDS MESH batch trace request in, its response out (pds/README.md "Batch
 * tracing today").
 *
 * How an answer becomes the response's codes (the README's "Bulk tracing" table):
 *
 * | answer                                 | code | MATCHED_NHS_NO | algorithm | confidence |
 * |----------------------------------------|------|----------------|-----------|------------|
 * | matched or potential_match, restricted | 92   | the number     | 1/2/4     | score*100  |
 * | the same, superseded_from set          | 90   | the new number | 1/2/4     | score*100  |
 * | the same, otherwise                    | 00   | the number     | 1/2/4     | score*100  |
 * | no_match, the held number invalidated  | 91   | 0000000000     | 1         | 0          |
 * | no_match                               | 98   | 0000000000     | 0         | 0          |
 * | multiple_matches                       | 97   | 9999999999     | 0         | 0          |
 * | objection (local: MESH has no code)    | ""   | "" (withheld)  | 0         | 0          |
 * | the row could not be read              | 96   | 0000000000     | 0         | 0          |
 * | the trace failed (PDS unavailable...)  | ""   | ""             | 0         | 0          |
 *
 * MATCHED_ALGORITHM_INDICATOR 1/2/4: 1 (cross-check) when the row gave an NHS number and
 * the answer's number, or the number it superseded, is that one; else 2 (simple) when the
 * score is 1; else 4 (algorithmic). A potential match thus has its lower percentage.
 * An empty code means "not answered": an objection must not be told apart from a failure
 * by a code, and a failed row should be traced again. SENSITIVITY_FLAG is S for a
 * restricted record; MPS_ID and PDS's demographic columns (FAMILY_NAME ... EMAIL_ADDRESS)
 * stay empty, because pds-trace answers numbers, not PDS's record of the person. */
#include <stdio.h>
#include <string.h>

#include "format_int.h"
#include "pdstrace/demographics.h"
#include "pdstrace/macros.h"
#include "pdstrace/nhs_number.h"

/* The request's columns in order, and the column each is read as (-1: not read). */
static const struct {
    const char *name;
    int col;
} request[BULK_MESH_REQUEST] = {
    {"UNIQUE REFERENCE", BULK_COL_REFERENCE},
    {"NHS_NO", BULK_COL_NHS_NUMBER},
    {"FAMILY_NAME", BULK_COL_FAMILY},
    {"GIVEN_NAME", BULK_COL_GIVEN},
    {"OTHER_GIVEN_NAME", BULK_COL_OTHER_GIVEN},
    {"GENDER", BULK_COL_GENDER},
    {"DATE_OF_BIRTH", BULK_COL_BIRTH_DATE},
    {"POSTCODE", BULK_COL_POSTCODE},
    {"DATE_OF_DEATH", -1},
    {"ADDRESS_LINE1", BULK_COL_ADDRESS},
    {"ADDRESS_LINE2", BULK_COL_ADDRESS2},
    {"ADDRESS_LINE3", BULK_COL_ADDRESS3},
    {"ADDRESS_LINE4", BULK_COL_ADDRESS4},
    {"ADDRESS_LINE5", BULK_COL_ADDRESS5},
    {"ADDRESS_DATE", -1},
    {"GP_PRACTICE_CODE", -1},
    {"GP_REGISTRATION_DATE", -1},
    {"NHAIS_POSTING_ID", -1},
    {"AS_AT_DATE", -1},
    {"LOCAL_PATIENT_ID", BULK_COL_CASE_ID},
    {"INTERNAL_ID", -1},
    {"TELEPHONE_NUMBER", -1},
    {"MOBILE_NUMBER", -1},
    {"EMAIL_ADDRESS", -1},
};

const char *bulk_mesh_column(size_t i)
{
    return i < BULK_MESH_REQUEST ? request[i].name : NULL;
}

int bulk_mesh_layout(struct bulk_layout *l, const struct bulk_csv_record *header, char *why,
                     size_t why_size)
{
    size_t n = header->n_fields;

    if (n > BULK_MESH_REQUEST)
        return bulk_say(why, why_size, "the pds-mesh header has %zu columns; a request has %d", n,
                        BULK_MESH_REQUEST);
    for (size_t i = 0; i < n; i++)
        if (!bulk_header_is(header->field[i], header->len[i], request[i].name))
            return bulk_say(why, why_size, "the pds-mesh header's column %zu should be %s", i + 1,
                            request[i].name);
    if (n < BULK_MESH_MIN)
        return bulk_say(why, why_size, "the pds-mesh header stops before POSTCODE");
    for (size_t i = 0; i < n; i++)
        if (request[i].col >= 0)
            l->col[request[i].col] = (int)i;
    return 0;
}

/* ---- A request row ---- */

/* YYYYMMDD, or YYYYMMDDHHMM with the time dropped. PDS also takes YYYYMM and YYYY, but a
 * trace needs the whole date. */
static int mesh_birth_date(struct bulk_row_ctx *c)
{
    char v[BULK_SHORT_VALUE], iso[11];
    size_t n;
    int err = bulk_row_value(c, BULK_COL_BIRTH_DATE, v, sizeof v);

    if (err)
        return err;
    if (v[0] == '\0')
        return bulk_row_bad(c, BULK_COL_BIRTH_DATE, "missing");
    n = strlen(v);
    if (strspn(v, "0123456789") != n || (n != 4 && n != 6 && n != 8 && n != 12))
        return bulk_row_bad(c, BULK_COL_BIRTH_DATE, "must be a date in the form YYYYMMDD");
    if (n < 8)
        return bulk_row_bad(c, BULK_COL_BIRTH_DATE, "needs a full date (YYYYMMDD)");
    snprintf(iso, sizeof iso, "%.4s-%.2s-%.2s", v, v + 4, v + 6);
    return bulk_row_birth_date(c, iso, BULK_COL_BIRTH_DATE);
}

/* 1 male, 2 female. 0 (not known), 9 (not specified) and blank send no gender at all:
 * asking PDS for "unknown" would find only the records whose gender is recorded as
 * unknown. */
static int mesh_gender(struct bulk_row_ctx *c)
{
    char v[BULK_SHORT_VALUE];
    int err = bulk_row_value(c, BULK_COL_GENDER, v, sizeof v);

    if (err || v[0] == '\0' || strcmp(v, "0") == 0 || strcmp(v, "9") == 0)
        return err;
    if (strcmp(v, "1") == 0)
        c->d->gender = DEMOG_GENDER_MALE;
    else if (strcmp(v, "2") == 0)
        c->d->gender = DEMOG_GENDER_FEMALE;
    else
        return bulk_row_bad(c, BULK_COL_GENDER, "must be 0, 1, 2 or 9");
    return 0;
}

static int mesh_read_names(struct bulk_row_ctx *c)
{
    int err = bulk_row_family(c);

    if (err == 0)
        err = bulk_row_given(c, BULK_COL_GIVEN);
    if (err == 0)
        err = bulk_row_given(c, BULK_COL_OTHER_GIVEN);
    return err;
}

/* One line per column; a file may stop before some of them. */
static int mesh_address(struct bulk_row_ctx *c)
{
    static const enum bulk_column lines[] = {BULK_COL_ADDRESS, BULK_COL_ADDRESS2, BULK_COL_ADDRESS3,
                                             BULK_COL_ADDRESS4, BULK_COL_ADDRESS5};
    int err = 0;

    for (size_t i = 0; err == 0 && i < ARRAY_SIZE(lines); i++) {
        char v[DEMOG_NAME_SIZE];
        err = bulk_row_value(c, lines[i], v, sizeof v);
        if (err == 0 && v[0] != '\0')
            err = bulk_row_address_line(c, lines[i], v);
    }
    return err;
}

/* LOCAL_PATIENT_ID, the council's own id of the person, is read as the case_id when it
 * can be one, only so that an objection recorded by case is honoured; the runner never
 * writes back from a pds-mesh file. Anything else in it is the council's business, not a
 * bad row. */
static int mesh_local_id(struct bulk_row_ctx *c)
{
    char v[BULK_SHORT_VALUE];
    const char *why;
    int i = c->l->col[BULK_COL_CASE_ID];

    if (i < 0 || c->row->len[i] >= sizeof v || bulk_row_value(c, BULK_COL_CASE_ID, v, sizeof v))
        return 0;
    if (v[0] != '\0' && demog_check_case_id(v, &why) == 0)
        memcpy(c->d->case_id, v, strlen(v) + 1);
    return 0;
}

/* The columns in the order of the request, but names first as in simple. */
int bulk_mesh_row(struct bulk_row_ctx *c)
{
    static int (*const readers[])(struct bulk_row_ctx * c) = {
        bulk_row_reference, mesh_read_names, mesh_birth_date,     mesh_gender,
        bulk_row_postcode,  mesh_address,    bulk_row_nhs_number, mesh_local_id,
    };

    for (size_t i = 0; i < ARRAY_SIZE(readers); i++) {
        int err = readers[i](c);
        if (err)
            return err;
    }
    return 0;
}

/* ---- A response row ---- */

#define MESH_NONE    "0000000000"
#define MESH_SEVERAL "9999999999"

struct mesh_codes {
    const char *code;
    const char *number;
    int indicator;
    int confidence;
};

/* The NHS number the row gave, bare, or "". */
static void given_number(const struct bulk_layout *l, const struct bulk_csv_record *row,
                         char out[11])
{
    int i = l->col[BULK_COL_NHS_NUMBER];

    out[0] = '\0';
    if (i >= 0 && (size_t)i < row->n_kept)
        nhs_number_normalise(row->field[i], out);
}

static int percent(double score)
{
    int p = score > 0 ? (int)(score * 100 + 0.5) : 0;

    return p > 100 ? 100 : p;
}

static void found_codes(const struct trace_result *r, const char *given, struct mesh_codes *m)
{
    bool cross_checked = given[0] != '\0' && (strcmp(r->nhs_number, given) == 0 ||
                                              strcmp(r->superseded_from, given) == 0);

    m->code = r->restricted ? "92" : r->superseded_from[0] != '\0' ? "90" : "00";
    m->number = r->nhs_number;
    m->indicator = cross_checked ? 1 : r->score >= 1 ? 2 : 4;
    m->confidence = percent(r->score);
}

static struct mesh_codes codes_for(const struct bulk_answer *a, const char *given)
{
    static const struct mesh_codes bad = {"96", MESH_NONE, 0, 0}, failed = {"", "", 0, 0},
                                   invalidated = {"91", MESH_NONE, 1, 0},
                                   none = {"98", MESH_NONE, 0, 0},
                                   several = {"97", MESH_SEVERAL, 0, 0}, withheld = {"", "", 0, 0};
    struct mesh_codes m;

    if (a->kind == BULK_ANSWER_BAD)
        return bad;
    if (a->kind != BULK_ANSWER_TRACED)
        return failed;
    switch (a->result.outcome) {
    case TRACE_MATCHED:
    case TRACE_POTENTIAL_MATCH:
        found_codes(&a->result, given, &m);
        return m;
    case TRACE_NO_MATCH:
        return a->result.held_invalidated ? invalidated : none;
    case TRACE_MULTIPLE_MATCHES:
        return several;
    default:
        return withheld;
    }
}

void bulk_mesh_output(const struct bulk_layout *l, const struct bulk_csv_record *row,
                      const struct bulk_answer *a, struct bulk_out_row *o)
{
    char given[11], indicator[12], confidence[12];
    struct mesh_codes m;
    bool sensitive = a->kind == BULK_ANSWER_TRACED && a->result.restricted;

    given_number(l, row, given);
    m = codes_for(a, given);
    snprintf(indicator, sizeof indicator, "%d", m.indicator);
    snprintf(confidence, sizeof confidence, "%d", m.confidence);
    bulk_out_row_echo(o, row, l->col[BULK_COL_REFERENCE]);
    bulk_out_row_echo(o, row, l->col[BULK_COL_NHS_NUMBER]);
    /* FAMILY_NAME ... EMAIL_ADDRESS: PDS's record of the person, which we do not give. */
    for (int i = 2; i < BULK_MESH_RESPONSE - 6; i++)
        bulk_out_row_add_str(o, "");
    bulk_out_row_add_str(o, sensitive ? "S" : "");
    bulk_out_row_add_str(o, ""); /* MPS_ID */
    bulk_out_row_add_str(o, m.code);
    bulk_out_row_add_str(o, m.number);
    bulk_out_row_add_str(o, indicator);
    bulk_out_row_add_str(o, confidence);
}
