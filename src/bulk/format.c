#include "pdstrace/bulk_format.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "format_int.h"
#include "pdstrace/demographics.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/nhs_number.h"

/* ---- Names ---- */

static const char *const format_names[] = {
    [BULK_FORMAT_AUTO] = "auto",
    [BULK_FORMAT_SIMPLE] = "simple",
    [BULK_FORMAT_MESH] = "pds-mesh",
};

static const char *const simple_names[BULK_COL_COUNT] = {
    [BULK_COL_REFERENCE] = "reference", [BULK_COL_FAMILY] = "family",
    [BULK_COL_GIVEN] = "given",         [BULK_COL_BIRTH_DATE] = "birth_date",
    [BULK_COL_GENDER] = "gender",       [BULK_COL_POSTCODE] = "postcode",
    [BULK_COL_ADDRESS] = "address",     [BULK_COL_NHS_NUMBER] = "nhs_number",
    [BULK_COL_CASE_ID] = "case_id",
};

static const char *const mesh_names[BULK_COL_COUNT] = {
    [BULK_COL_REFERENCE] = "UNIQUE REFERENCE", [BULK_COL_FAMILY] = "FAMILY_NAME",
    [BULK_COL_GIVEN] = "GIVEN_NAME",           [BULK_COL_OTHER_GIVEN] = "OTHER_GIVEN_NAME",
    [BULK_COL_BIRTH_DATE] = "DATE_OF_BIRTH",   [BULK_COL_GENDER] = "GENDER",
    [BULK_COL_POSTCODE] = "POSTCODE",          [BULK_COL_ADDRESS] = "ADDRESS_LINE1",
    [BULK_COL_ADDRESS2] = "ADDRESS_LINE2",     [BULK_COL_ADDRESS3] = "ADDRESS_LINE3",
    [BULK_COL_ADDRESS4] = "ADDRESS_LINE4",     [BULK_COL_ADDRESS5] = "ADDRESS_LINE5",
    [BULK_COL_NHS_NUMBER] = "NHS_NO",
};

const char *bulk_format_name(enum bulk_format f)
{
    return (unsigned)f < ARRAY_SIZE(format_names) ? format_names[f] : "unknown";
}

int bulk_format_parse(const char *name, enum bulk_format *out)
{
    for (size_t f = BULK_FORMAT_SIMPLE; f < ARRAY_SIZE(format_names); f++) {
        if (strcmp(name, format_names[f]) == 0) {
            *out = (enum bulk_format)f;
            return 0;
        }
    }
    return ERR_INVALID_INPUT;
}

const char *bulk_column_name(enum bulk_format f, enum bulk_column col)
{
    if ((unsigned)col >= BULK_COL_COUNT)
        return NULL;
    return f == BULK_FORMAT_MESH ? mesh_names[col] : simple_names[col];
}

int bulk_say(char *why, size_t why_size, const char *fmt, ...)
{
    va_list ap;

    if (why != NULL && why_size > 0) {
        va_start(ap, fmt);
        vsnprintf(why, why_size, fmt, ap);
        va_end(ap);
    }
    return ERR_INVALID_INPUT;
}

/* ---- Header layouts ---- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* ASCII only: header names are ASCII, and <ctype.h> depends on the locale. */
static char lower(char c)
{
    return (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
}

bool bulk_header_is(const char *f, size_t n, const char *name)
{
    while (n > 0 && is_blank(f[0])) {
        f++;
        n--;
    }
    while (n > 0 && is_blank(f[n - 1]))
        n--;
    if (n != strlen(name))
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(f[i]) != lower(name[i]))
            return false;
    return true;
}

static bool header_has(const struct bulk_csv_record *h, const char *name)
{
    for (size_t i = 0; i < h->n_kept; i++)
        if (bulk_header_is(h->field[i], h->len[i], name))
            return true;
    return false;
}

static int simple_column(struct bulk_layout *l, const struct bulk_csv_record *h, size_t i,
                         char *why, size_t why_size)
{
    for (size_t c = 0; c < BULK_COL_COUNT; c++) {
        if (simple_names[c] == NULL || !bulk_header_is(h->field[i], h->len[i], simple_names[c]))
            continue;
        if (l->col[c] >= 0)
            return bulk_say(why, why_size, "column %s appears twice", simple_names[c]);
        l->col[c] = (int)i;
        return 0;
    }
    return 0;
}

/* Any order; columns of other names are carried through to the output untouched. */
static int simple_layout(struct bulk_layout *l, const struct bulk_csv_record *h, char *why,
                         size_t why_size)
{
    static const enum bulk_column required[] = {BULK_COL_REFERENCE, BULK_COL_FAMILY,
                                                BULK_COL_BIRTH_DATE};

    for (size_t i = 0; i < h->n_kept; i++) {
        int err = simple_column(l, h, i, why, why_size);
        if (err)
            return err;
    }
    for (size_t i = 0; i < ARRAY_SIZE(required); i++)
        if (l->col[required[i]] < 0)
            return bulk_say(why, why_size, "the header has no %s column",
                            simple_names[required[i]]);
    return 0;
}

int bulk_layout_read(struct bulk_layout *l, enum bulk_format want,
                     const struct bulk_csv_record *header, char *why, size_t why_size)
{
    l->format = want;
    l->n_columns = header->n_fields;
    for (size_t c = 0; c < BULK_COL_COUNT; c++)
        l->col[c] = -1;
    bulk_say(why, why_size, "%s", "");
    /* Every field of a row must be kept to be echoed. */
    if (header->n_fields > header->n_kept)
        return bulk_say(why, why_size, "the header has %zu columns; at most %d can be read",
                        header->n_fields, BULK_CSV_MAX_FIELDS);
    if (want == BULK_FORMAT_AUTO && header_has(header, mesh_names[BULK_COL_REFERENCE]))
        l->format = BULK_FORMAT_MESH;
    else if (want == BULK_FORMAT_AUTO && header_has(header, simple_names[BULK_COL_REFERENCE]))
        l->format = BULK_FORMAT_SIMPLE;
    if (l->format == BULK_FORMAT_SIMPLE)
        return simple_layout(l, header, why, why_size);
    if (l->format == BULK_FORMAT_MESH)
        return bulk_mesh_layout(l, header, why, why_size);
    return bulk_say(why, why_size,
                    "the header is neither simple (reference,...) nor pds-mesh "
                    "(UNIQUE REFERENCE,...)");
}

/* ---- Reading a row: every field ---- */

int bulk_row_bad(struct bulk_row_ctx *c, enum bulk_column col, const char *reason)
{
    return bulk_say(c->why, c->why_size, "%s: %s", bulk_column_name(c->l->format, col), reason);
}

/* A field by its place, named as its header names it (simple's other columns by number). */
static int field_bad(struct bulk_row_ctx *c, size_t i, const char *reason)
{
    const char *name = c->l->format == BULK_FORMAT_MESH ? bulk_mesh_column(i) : NULL;

    for (size_t col = 0; name == NULL && col < BULK_COL_COUNT; col++)
        if (c->l->col[col] == (int)i)
            name = bulk_column_name(c->l->format, (enum bulk_column)col);
    if (name != NULL)
        return bulk_say(c->why, c->why_size, "%s: %s", name, reason);
    return bulk_say(c->why, c->why_size, "column %zu: %s", i + 1, reason);
}

/* The length of a sequence from its lead byte; 0 for a continuation byte or no lead. */
static size_t seq_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0)
        return 2;
    if ((c & 0xF0) == 0xE0)
        return 3;
    return (c & 0xF8) == 0xF0 ? 4 : 0;
}

size_t bulk_utf8_seq(const unsigned char *s, size_t n)
{
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len = seq_len(s[0]);
    uint32_t cp = s[0] & (0x7Fu >> len);

    if (len == 1)
        return 1;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static bool utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0, k; i < n; i += k) {
        k = bulk_utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0)
            return false;
    }
    return true;
}

/* The checks no value may fail, in the order of the fields, before any column is read:
 * a NUL would cut a value short unseen, and the output must be UTF-8. */
static int check_fields(struct bulk_row_ctx *c)
{
    const struct bulk_csv_record *row = c->row;

    for (size_t i = 0; i < row->n_kept; i++) {
        if (memchr(row->field[i], '\0', row->len[i]) != NULL)
            return field_bad(c, i, "holds a NUL byte");
        if (!utf8_valid(row->field[i], row->len[i]))
            return field_bad(c, i, "not valid UTF-8");
    }
    return 0;
}

/* ---- Reading a row: the columns both formats have ---- */

int bulk_row_value(struct bulk_row_ctx *c, enum bulk_column col, char *out, size_t size)
{
    const char *f;
    size_t n;

    out[0] = '\0';
    if (c->l->col[col] < 0)
        return 0;
    f = c->row->field[c->l->col[col]];
    n = c->row->len[c->l->col[col]];
    while (n > 0 && is_blank(f[0])) {
        f++;
        n--;
    }
    while (n > 0 && is_blank(f[n - 1]))
        n--;
    if (n >= size) {
        char reason[48];
        snprintf(reason, sizeof reason, "longer than %zu bytes", size - 1);
        return bulk_row_bad(c, col, reason);
    }
    memcpy(out, f, n);
    out[n] = '\0';
    return 0;
}

/* Kept only to be echoed in the output. */
int bulk_row_reference(struct bulk_row_ctx *c)
{
    char v[BULK_REFERENCE_MAX + 1];
    int err = bulk_row_value(c, BULK_COL_REFERENCE, v, sizeof v);

    if (err == 0 && v[0] == '\0')
        return bulk_row_bad(c, BULK_COL_REFERENCE, "missing");
    return err;
}

int bulk_row_family(struct bulk_row_ctx *c)
{
    char v[DEMOG_NAME_SIZE];
    const char *why;
    int err = bulk_row_value(c, BULK_COL_FAMILY, v, sizeof v);

    if (err)
        return err;
    if (v[0] == '\0')
        return bulk_row_bad(c, BULK_COL_FAMILY, "missing");
    if (demog_normalise_name_why(v, c->d->family, sizeof c->d->family, &why) != 0)
        return bulk_row_bad(c, BULK_COL_FAMILY, why);
    return 0;
}

/* The API's first given name may hold several names separated by spaces; so may this. */
int bulk_row_given(struct bulk_row_ctx *c, enum bulk_column col)
{
    char v[DEMOG_NAME_SIZE];
    const char *why;
    struct demographics *d = c->d;
    int err = bulk_row_value(c, col, v, sizeof v);

    if (err || v[0] == '\0')
        return err;
    if (d->n_given == DEMOG_MAX_GIVEN)
        return bulk_row_bad(c, col, "too many given names");
    if (demog_normalise_name_why(v, d->given[d->n_given], DEMOG_NAME_SIZE, &why) != 0)
        return bulk_row_bad(c, col, why);
    d->n_given++;
    return 0;
}

int bulk_row_birth_date(struct bulk_row_ctx *c, const char *iso, enum bulk_column col)
{
    const char *why;
    int err = demog_check_birth_date_why(iso, c->today, &why);

    if (err == ERR_INVALID_INPUT)
        return bulk_row_bad(c, col, why);
    if (err == 0)
        memcpy(c->d->birth_date, iso, sizeof c->d->birth_date);
    return err;
}

int bulk_row_postcode(struct bulk_row_ctx *c)
{
    char v[BULK_SHORT_VALUE];
    int err = bulk_row_value(c, BULK_COL_POSTCODE, v, sizeof v);

    if (err || v[0] == '\0')
        return err;
    if (demog_normalise_postcode(v, c->d->postcode) != 0)
        return bulk_row_bad(c, BULK_COL_POSTCODE, "is not a valid UK postcode");
    return 0;
}

/* Blank lines, before or after normalising, are skipped. */
int bulk_row_address_line(struct bulk_row_ctx *c, enum bulk_column col, const char *line)
{
    char tmp[DEMOG_NAME_SIZE];
    const char *why;
    struct demographics *d = c->d;

    if (demog_normalise_text(line, tmp, sizeof tmp, &why) != 0)
        return bulk_row_bad(c, col, why);
    if (tmp[0] == '\0')
        return 0;
    if (d->n_address == DEMOG_MAX_ADDRESS)
        return bulk_row_bad(c, col, "more than 5 lines");
    memcpy(d->address[d->n_address++], tmp, sizeof tmp);
    return 0;
}

int bulk_row_nhs_number(struct bulk_row_ctx *c)
{
    char v[BULK_SHORT_VALUE];
    int err = bulk_row_value(c, BULK_COL_NHS_NUMBER, v, sizeof v);

    if (err || v[0] == '\0')
        return err;
    if (nhs_number_normalise(v, c->d->nhs_number) != 0)
        return bulk_row_bad(c, BULK_COL_NHS_NUMBER,
                            "is not a valid NHS number (10 digits with a valid check digit)");
    return 0;
}

/* ---- Reading a row: simple's own columns ---- */

static int simple_birth_date(struct bulk_row_ctx *c)
{
    char v[BULK_SHORT_VALUE];
    int err = bulk_row_value(c, BULK_COL_BIRTH_DATE, v, sizeof v);

    if (err)
        return err;
    if (v[0] == '\0')
        return bulk_row_bad(c, BULK_COL_BIRTH_DATE, "missing");
    return bulk_row_birth_date(c, v, BULK_COL_BIRTH_DATE);
}

static int simple_gender(struct bulk_row_ctx *c)
{
    char v[BULK_SHORT_VALUE];
    int err = bulk_row_value(c, BULK_COL_GENDER, v, sizeof v);

    if (err || v[0] == '\0')
        return err;
    if (demog_parse_gender(v, &c->d->gender) != 0)
        return bulk_row_bad(c, BULK_COL_GENDER, "must be one of male, female, other, unknown");
    return 0;
}

/* One field holding the lines, separated by commas or line ends. */
static int simple_address(struct bulk_row_ctx *c)
{
    const char *f, *end;
    int err = 0;

    if (c->l->col[BULK_COL_ADDRESS] < 0)
        return 0;
    f = c->row->field[c->l->col[BULK_COL_ADDRESS]];
    end = f + c->row->len[c->l->col[BULK_COL_ADDRESS]];
    while (err == 0 && f < end) {
        char line[DEMOG_NAME_SIZE];
        size_t n = strcspn(f, ",\r\n");
        if (n >= sizeof line)
            return bulk_row_bad(c, BULK_COL_ADDRESS, "a line is longer than 100 bytes");
        memcpy(line, f, n);
        line[n] = '\0';
        err = bulk_row_address_line(c, BULK_COL_ADDRESS, line);
        f += n + 1;
    }
    return err;
}

static int simple_case_id(struct bulk_row_ctx *c)
{
    char v[BULK_SHORT_VALUE];
    const char *why;
    int err = bulk_row_value(c, BULK_COL_CASE_ID, v, sizeof v);

    if (err || v[0] == '\0')
        return err;
    if (demog_check_case_id(v, &why) != 0)
        return bulk_row_bad(c, BULK_COL_CASE_ID, why);
    memcpy(c->d->case_id, v, strlen(v) + 1);
    return 0;
}

static int simple_given(struct bulk_row_ctx *c)
{
    return bulk_row_given(c, BULK_COL_GIVEN);
}

/* In the order of the columns of DESIGN.md §6, so the first problem reported is
 * predictable. */
static int simple_row(struct bulk_row_ctx *c)
{
    static int (*const readers[])(struct bulk_row_ctx * c) = {
        bulk_row_reference, bulk_row_family, simple_given,        simple_birth_date, simple_gender,
        bulk_row_postcode,  simple_address,  bulk_row_nhs_number, simple_case_id,
    };

    for (size_t i = 0; i < ARRAY_SIZE(readers); i++) {
        int err = readers[i](c);
        if (err)
            return err;
    }
    return 0;
}

int bulk_row_read(const struct bulk_layout *l, const struct bulk_csv_record *row, const char *today,
                  struct demographics *d, char *why, size_t why_size)
{
    struct bulk_row_ctx c = {l, row, today, d, why, why_size};
    int err;

    memset(d, 0, sizeof *d);
    d->gender = DEMOG_GENDER_NONE;
    d->write_back = -1;
    bulk_say(why, why_size, "%s", "");
    if (demog_check_birth_date(today, today) == ERR_INTERNAL)
        return ERR_INTERNAL;
    if (row->n_fields != l->n_columns)
        return bulk_say(why, why_size, "the row has %zu fields; the header has %zu", row->n_fields,
                        l->n_columns);
    err = check_fields(&c);
    if (err)
        return err;
    return l->format == BULK_FORMAT_MESH ? bulk_mesh_row(&c) : simple_row(&c);
}
