/* The output side of the bulk formats: the header line(s), simple's rows, and the fields
 * of any row made valid UTF-8 for the spreadsheets that open them. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "format_int.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"

/* Every field a reader keeps could triple in size (each byte a U+FFFD), plus ours. */
#define OUT_TEXT_MAX ((size_t)(BULK_CSV_MAX_FIELDS + 4) * 3 * (BULK_CSV_MAX_FIELD + 256))

static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

void bulk_out_row_init(struct bulk_out_row *o)
{
    o->n = 0;
    o->err = 0;
    buf_init(&o->text, OUT_TEXT_MAX);
}

/* Valid runs are copied whole; a NUL is valid UTF-8, but no spreadsheet wants one. */
static int append_clean(struct buf *b, const char *f, size_t n)
{
    size_t run = 0;
    int err = 0;

    for (size_t i = 0; err == 0 && i < n;) {
        size_t k = f[i] == '\0' ? 0 : bulk_utf8_seq((const unsigned char *)f + i, n - i);
        if (k > 0) {
            i += k;
            continue;
        }
        err = buf_append(b, f + run, i - run);
        if (err == 0)
            err = buf_append(b, replacement, sizeof replacement - 1);
        run = ++i;
    }
    return err ? err : buf_append(b, f + run, n - run);
}

void bulk_out_row_add(struct bulk_out_row *o, const char *f, size_t len)
{
    if (o->err)
        return;
    if (o->n == ARRAY_SIZE(o->at)) {
        o->err = ERR_INTERNAL;
        return;
    }
    o->at[o->n] = buf_len(&o->text);
    o->err = append_clean(&o->text, f, len);
    o->len[o->n] = buf_len(&o->text) - o->at[o->n];
    o->n++;
}

void bulk_out_row_add_str(struct bulk_out_row *o, const char *s)
{
    bulk_out_row_add(o, s, strlen(s));
}

void bulk_out_row_echo(struct bulk_out_row *o, const struct bulk_csv_record *rec, int i)
{
    if (i >= 0 && (size_t)i < rec->n_kept)
        bulk_out_row_add(o, rec->field[i], rec->len[i]);
    else
        bulk_out_row_add_str(o, "");
}

/* The fields point into o->text only now that it has stopped moving. It held copies of
 * personal data. */
int bulk_out_row_write(struct bulk_out_row *o, struct buf *out)
{
    const char *field[ARRAY_SIZE(o->at)];
    int err = o->err;

    for (size_t i = 0; i < o->n; i++)
        field[i] = buf_cstr(&o->text) + o->at[i];
    if (err == 0)
        err = bulk_csv_append(out, field, o->len, o->n, BULK_CSV_SAFE);
    buf_wipe(&o->text);
    return err;
}

/* ---- The header ---- */

static int simple_header(const struct bulk_layout *l, const struct bulk_csv_record *header,
                         struct buf *out)
{
    static const char *const added[] = {"outcome", "matched_nhs_number", "score", "error"};
    struct bulk_out_row o;

    bulk_out_row_init(&o);
    for (size_t i = 0; i < l->n_columns; i++)
        bulk_out_row_echo(&o, header, (int)i);
    for (size_t i = 0; i < ARRAY_SIZE(added); i++)
        bulk_out_row_add_str(&o, added[i]);
    return bulk_out_row_write(&o, out);
}

/* PDS MESH responses have this record and no line of column names. */
static int mesh_header(const char *file_ref, uint64_t rows, struct buf *out)
{
    char count[24];
    struct bulk_out_row o;

    snprintf(count, sizeof count, "%" PRIu64, rows);
    bulk_out_row_init(&o);
    bulk_out_row_add_str(&o, file_ref != NULL ? file_ref : "");
    bulk_out_row_add_str(&o, "SPINE_MPT_RESPONSE");
    bulk_out_row_add_str(&o, count);
    bulk_out_row_add_str(&o, "00");
    return bulk_out_row_write(&o, out);
}

int bulk_output_header(const struct bulk_layout *l, const struct bulk_csv_record *header,
                       const char *file_ref, uint64_t rows, bool had_bom, struct buf *out)
{
    size_t len0 = buf_len(out);
    int err = had_bom ? buf_append(out, "\xEF\xBB\xBF", 3) : 0;

    if (err == 0 && l->format == BULK_FORMAT_MESH)
        err = mesh_header(file_ref, rows, out);
    else if (err == 0)
        err = simple_header(l, header, out);
    if (err)
        buf_truncate(out, len0);
    return err;
}

/* ---- A row ---- */

static const char *outcome_of(const struct bulk_answer *a)
{
    switch (a->kind) {
    case BULK_ANSWER_TRACED:
        return trace_outcome_name(a->result.outcome);
    case BULK_ANSWER_BAD:
        return "invalid";
    default:
        return "error";
    }
}

/* The shortest decimal with at most 4 places: "1", "0.9", "0.8734". */
static void format_score(double score, char out[16])
{
    size_t n;

    snprintf(out, 16, "%.4f", score);
    n = strlen(out);
    while (n > 0 && out[n - 1] == '0')
        n--;
    if (n > 0 && out[n - 1] == '.')
        n--;
    out[n] = '\0';
}

/* Exactly as many fields as the header, whatever the row had. */
static void simple_output(const struct bulk_layout *l, const struct bulk_csv_record *row,
                          const struct bulk_answer *a, struct bulk_out_row *o)
{
    bool traced = a->kind == BULK_ANSWER_TRACED;
    char score[16] = "";

    if (traced && a->result.score >= 0)
        format_score(a->result.score, score);
    for (size_t i = 0; i < l->n_columns; i++)
        bulk_out_row_echo(o, row, (int)i);
    bulk_out_row_add_str(o, outcome_of(a));
    bulk_out_row_add_str(o, traced ? a->result.nhs_number : "");
    bulk_out_row_add_str(o, score);
    /* A traced row's why is a note on it, such as a write-back that could not be queued. */
    bulk_out_row_add_str(o, a->why != NULL ? a->why : "");
}

int bulk_output_row(const struct bulk_layout *l, const struct bulk_csv_record *row,
                    const struct bulk_answer *a, struct buf *out)
{
    struct bulk_out_row o;

    bulk_out_row_init(&o);
    if (l->format == BULK_FORMAT_MESH)
        bulk_mesh_output(l, row, a, &o);
    else
        simple_output(l, row, a, &o);
    return bulk_out_row_write(&o, out);
}
