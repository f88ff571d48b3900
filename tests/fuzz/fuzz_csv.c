/* libFuzzer harness: the bulk CSV reader and both bulk formats on the same bytes. The
 * first two bytes choose where the rest is cut in two; the rest is read whole, then cut
 * there, and both reads must give the same records (numbers, end offsets, fields) and the
 * same result. Record 1 is read as a header (AUTO), the others as rows, and each row's
 * output (its answer made up from the row) is read back: one record of the layout's width
 * (simple: the header's columns + 4; pds-mesh: 29), valid UTF-8, no field a spreadsheet
 * would run as a formula. The header's output reads back the same way. Every failure is
 * ERR_INVALID_INPUT with a reason. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/bulk_csv.h"
#include "pdstrace/bulk_format.h"
#include "pdstrace/demographics.h"
#include "pdstrace/err.h"
#include "pdstrace/nhs_number.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

#define TODAY "2024-06-15"

struct run {
    bool formats; /* read header and rows through the formats (the first read only) */
    size_t total; /* bytes of input */
    uint64_t hash;
    uint64_t records;
    uint64_t last_end;
    bool have_layout;
    struct bulk_layout layout;
};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3u;
    return h;
}

/* An oracle of its own, not the code under test. */
static bool utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k = c < 0x80                 ? 1
                   : c >= 0xC2 && c <= 0xDF ? 2
                   : c >= 0xE0 && c <= 0xEF ? 3
                   : c >= 0xF0 && c <= 0xF4 ? 4
                                            : 0;
        if (k == 0 || i + k > n)
            return false;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F) ||
            (c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F))
            return false;
        i += k;
    }
    return true;
}

struct reread {
    uint64_t records;
    size_t n_fields;
    bool formula;
};

static int on_reread(const struct bulk_csv_record *rec, void *arg)
{
    struct reread *r = arg;
    r->records++;
    r->n_fields = rec->n_fields;
    for (size_t i = 0; i < rec->n_kept; i++)
        if (rec->len[i] > 0 && memchr("=+-@\t\r", rec->field[i][0], 6) != NULL)
            r->formula = true;
    return 0;
}

/* What bulk_output_* wrote: one record of `fields` fields, safe for a spreadsheet. */
static void check_output(const struct buf *out, size_t fields)
{
    struct reread rr = {0};
    struct bulk_csv_reader *rd;
    if (!utf8_ok((const unsigned char *)buf_cstr(out), buf_len(out)))
        __builtin_trap();
    if (bulk_csv_reader_new(&rd, on_reread, &rr) != 0)
        return;
    if (bulk_csv_feed(rd, buf_cstr(out), buf_len(out)) != 0 || bulk_csv_finish(rd) != 0)
        __builtin_trap();
    bulk_csv_reader_free(rd);
    if (rr.records != 1 || rr.n_fields != fields || rr.formula)
        __builtin_trap();
}

static size_t out_width(const struct bulk_layout *l)
{
    return l->format == BULK_FORMAT_MESH ? 29 : l->n_columns + 4;
}

static void read_header(struct run *r, const struct bulk_csv_record *rec)
{
    char why[200] = "";
    struct buf out;
    int err = bulk_layout_read(&r->layout, BULK_FORMAT_AUTO, rec, why, sizeof why);
    if (err != 0 && (err != ERR_INVALID_INPUT || why[0] == '\0'))
        __builtin_trap();
    if (err != 0)
        return;
    if (r->layout.n_columns != rec->n_fields || r->layout.n_columns > BULK_CSV_MAX_FIELDS)
        __builtin_trap();
    r->have_layout = true;
    buf_init(&out, 1 << 20);
    if (bulk_output_header(&r->layout, rec, "ref", 3, false, &out) == 0)
        check_output(&out, r->layout.format == BULK_FORMAT_MESH ? 4 : out_width(&r->layout));
    buf_free(&out);
}

static void check_good(const struct demographics *dm)
{
    if (dm->family[0] == '\0' || dm->n_given > DEMOG_MAX_GIVEN ||
        dm->n_address > DEMOG_MAX_ADDRESS || demog_check_birth_date(dm->birth_date, TODAY) != 0)
        __builtin_trap();
    if (dm->nhs_number[0] != '\0' && !nhs_number_is_valid(dm->nhs_number))
        __builtin_trap();
    if (dm->write_back != -1 || dm->purpose[0] != '\0')
        __builtin_trap();
}

/* An answer of every kind, chosen by the record number. */
static void make_answer(uint64_t number, int err, const char *why, struct bulk_answer *a)
{
    static const char *const numbers[] = {"9000000009", "9000000017"};
    memset(a, 0, sizeof *a);
    a->kind = err != 0          ? BULK_ANSWER_BAD
              : number % 7 == 0 ? BULK_ANSWER_FAILED
                                : BULK_ANSWER_TRACED;
    a->why = err != 0 ? why : "pds_unavailable: PDS did not answer";
    a->result.outcome = (enum trace_outcome)(number % 5);
    a->result.score =
        a->result.outcome <= TRACE_POTENTIAL_MATCH ? 0.5 + (double)(number % 51) / 100 : -1;
    if (a->result.outcome <= TRACE_POTENTIAL_MATCH)
        memcpy(a->result.nhs_number, numbers[number & 1], 11);
    if (number & 8)
        memcpy(a->result.superseded_from, numbers[(number + 1) & 1], 11);
    a->result.restricted = (number & 16) != 0;
    a->result.held_invalidated = (number & 32) != 0;
}

static void read_row(struct run *r, const struct bulk_csv_record *rec)
{
    struct demographics dm;
    struct bulk_answer a;
    struct buf out;
    char why[200] = "";
    int err = bulk_row_read(&r->layout, rec, TODAY, &dm, why, sizeof why);
    if (err != 0 && (err != ERR_INVALID_INPUT || why[0] == '\0'))
        __builtin_trap();
    if (err == 0)
        check_good(&dm);
    make_answer(rec->number, err, why, &a);
    buf_init(&out, 1 << 20);
    if (bulk_output_row(&r->layout, rec, &a, &out) == 0)
        check_output(&out, out_width(&r->layout));
    buf_free(&out);
}

static int on_record(const struct bulk_csv_record *rec, void *arg)
{
    struct run *r = arg;
    size_t kept = rec->n_fields < BULK_CSV_MAX_FIELDS ? rec->n_fields : BULK_CSV_MAX_FIELDS;
    if (rec->number != ++r->records || rec->n_kept != kept || rec->n_fields == 0)
        __builtin_trap();
    if (rec->end_offset <= r->last_end || rec->end_offset > r->total)
        __builtin_trap();
    r->last_end = rec->end_offset;
    r->hash = mix(r->hash, &rec->end_offset, sizeof rec->end_offset);
    r->hash = mix(r->hash, &rec->n_fields, sizeof rec->n_fields);
    for (size_t i = 0; i < rec->n_kept; i++) {
        if (rec->len[i] > BULK_CSV_MAX_FIELD || rec->field[i][rec->len[i]] != '\0')
            __builtin_trap();
        r->hash = mix(r->hash, &rec->len[i], sizeof rec->len[i]);
        r->hash = mix(r->hash, rec->field[i], rec->len[i]);
    }
    if (r->formats && rec->number == 1)
        read_header(r, rec);
    else if (r->formats && r->have_layout)
        read_row(r, rec);
    return 0;
}

struct outcome {
    int err;
    bool bom;
    char message[128];
};

static void read_all(struct run *r, const char *s, size_t n, size_t cut, struct outcome *o)
{
    struct bulk_csv_reader *rd;
    r->total = n;
    r->hash = 0xcbf29ce484222325u;
    if (bulk_csv_reader_new(&rd, on_record, r) != 0)
        abort();
    o->err = bulk_csv_feed(rd, s, cut);
    if (o->err == 0)
        o->err = bulk_csv_feed(rd, s + cut, n - cut);
    if (o->err == 0)
        o->err = bulk_csv_finish(rd);
    o->bom = bulk_csv_reader_had_bom(rd);
    memcpy(o->message, bulk_csv_reader_error(rd), strlen(bulk_csv_reader_error(rd)) + 1);
    bulk_csv_reader_free(rd);
    if (o->err != 0 && (o->err != ERR_INVALID_INPUT || strncmp(o->message, "record ", 7) != 0))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct run whole = {.formats = true}, cut = {0};
    struct outcome a, b;
    size_t at;
    if (n < 2)
        return 0;
    at = ((size_t)d[0] << 8 | d[1]) % (n - 1);
    read_all(&whole, (const char *)d + 2, n - 2, n - 2, &a);
    read_all(&cut, (const char *)d + 2, n - 2, at, &b);
    if (a.err != b.err || a.bom != b.bom || strcmp(a.message, b.message) != 0 ||
        whole.records != cut.records || whole.hash != cut.hash)
        __builtin_trap();
    return 0;
}
