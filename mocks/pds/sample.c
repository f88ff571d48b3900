/* Sample bulk files from the population (sample.h). Every choice comes from one splitmix64
 * stream seeded by the caller, so a sample is reproducible byte for byte; only a ring of
 * the last people drawn is kept, whatever the number of rows. */
#include "sample.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>
#include <uv.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "population.h"

#define RECENT      64           /* the people a repeat is drawn from */
#define FIXED_BELOW "9100000000" /* the fixed people's numbers are below every random one */
#define ROW_MAX     65536        /* bytes in one record: far above any row written here */

static const char *const simple_columns[] = {
    "reference", "family",  "given",      "birth_date", "gender",
    "postcode",  "address", "nhs_number", "case_id",
};

static const char *const mesh_columns[] = {
    "UNIQUE REFERENCE",     "NHS_NO",           "FAMILY_NAME",   "GIVEN_NAME",
    "OTHER_GIVEN_NAME",     "GENDER",           "DATE_OF_BIRTH", "POSTCODE",
    "DATE_OF_DEATH",        "ADDRESS_LINE1",    "ADDRESS_LINE2", "ADDRESS_LINE3",
    "ADDRESS_LINE4",        "ADDRESS_LINE5",    "ADDRESS_DATE",  "GP_PRACTICE_CODE",
    "GP_REGISTRATION_DATE", "NHAIS_POSTING_ID", "AS_AT_DATE",    "LOCAL_PATIENT_ID",
    "INTERNAL_ID",          "TELEPHONE_NUMBER", "MOBILE_NUMBER", "EMAIL_ADDRESS",
};

enum kind {
    KIND_RECORDED,     /* current name, birth date and postcode; half with address lines */
    KIND_NUMBER,       /* the same and the NHS number */
    KIND_OLD_NUMBER,   /* the same with a superseded or an invalidated number */
    KIND_OLD_POSTCODE, /* someone who has moved, with the previous address's postcode */
    KIND_NO_POSTCODE,
    KIND_MADE_UP, /* names and a birth date nobody has: PDS finds no one */
    KIND_BAD_FAMILY,
    KIND_BAD_DATE,
    KIND_BAD_NUMBER,
    KIND_BAD_COLUMNS,
};

/* Per mille, as mocks/pds/README.md gives them; the rest are KIND_RECORDED. */
static const struct {
    unsigned upto;
    enum kind kind;
} mix[] = {
    {3, KIND_BAD_FAMILY},   {6, KIND_BAD_DATE},       {8, KIND_BAD_NUMBER},
    {10, KIND_BAD_COLUMNS}, {40, KIND_MADE_UP},       {160, KIND_NUMBER},
    {190, KIND_OLD_NUMBER}, {230, KIND_OLD_POSTCODE}, {270, KIND_NO_POSTCODE},
};

/* Per mille of people drawn: again one of the last RECENT, or one of the fixed people. */
#define REPEAT_PER_MILLE 100
#define FIXED_PER_MILLE  50

struct sampler {
    const struct population *pop;
    const struct sample_opts *o;
    uint64_t state;
    size_t nfixed; /* people sort by number, so the fixed ones come first */
    const struct population_person *recent[RECENT];
    uint64_t drawn;
    uint64_t row; /* 1-based */
    struct buf line;
};

/* What one row says; strings are borrowed from the population, NULL or "" when empty. */
struct row {
    const char *family;
    const char *given;
    const char *other_given;
    const char *gender;
    const char *postcode;
    const json_t *lines; /* the address's "line" array (may hold null); NULL: none given */
    char birth[11];      /* YYYY-MM-DD */
    char nhs[11];
    bool short_row; /* one field fewer than the header */
};

/* ---- randomness (splitmix64, as generate.c) ---- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t next(struct sampler *s)
{
    return mix64(s->state += 0x9E3779B97F4A7C15ULL);
}

static size_t below(struct sampler *s, size_t n)
{
    return n ? (size_t)(next(s) % n) : 0;
}

/* ---- people ---- */

static const struct population_name *current_name(const struct population_person *p)
{
    for (unsigned i = 0; i < p->nnames; i++) {
        if (!p->names[i].historic && p->names[i].family && p->names[i].ngiven > 0)
            return &p->names[i];
    }
    return NULL;
}

/* The person at i or the next one with a current name (minimal records have none). The
 * fixed people include named ones, so the search ends. */
static const struct population_person *named_from(const struct sampler *s, size_t i)
{
    size_t n = population_size(s->pop);

    for (size_t k = 0; k < n; k++) {
        const struct population_person *p = population_at(s->pop, (i + k) % n);
        if (current_name(p))
            return p;
    }
    return NULL;
}

static const struct population_person *remember(struct sampler *s,
                                                const struct population_person *p)
{
    if (p)
        s->recent[s->drawn++ % RECENT] = p;
    return p;
}

static const struct population_person *pick_person(struct sampler *s)
{
    size_t r = below(s, 1000);
    size_t known = s->drawn < RECENT ? (size_t)s->drawn : RECENT;

    if (r < REPEAT_PER_MILLE && known > 0)
        return remember(s, s->recent[below(s, known)]);
    if (r < REPEAT_PER_MILLE + FIXED_PER_MILLE && s->nfixed > 0)
        return remember(s, named_from(s, below(s, s->nfixed)));
    return remember(s, named_from(s, below(s, population_size(s->pop))));
}

static bool is_old(const json_t *entry)
{
    const char *use = json_string_value(json_object_get(entry, "use"));
    return use && strcmp(use, "old") == 0;
}

/* The first current (or previous) address of p, or NULL. */
static const json_t *address_of(const struct population_person *p, bool previous)
{
    size_t i;
    const json_t *entry;

    json_array_foreach(json_object_get(p->patient, "address"), i, entry)
    {
        if (is_old(entry) == previous)
            return entry;
    }
    return NULL;
}

/* ---- rows ---- */

static void set_birth(struct row *r, const struct population_person *p)
{
    /* A partial birth date ("1931-05") covers days; a council holds one of them. */
    const char *d = p->birth_date && strlen(p->birth_date) == 10 ? p->birth_date : p->birth_lo;
    snprintf(r->birth, sizeof r->birth, "%s", d);
}

/* p as recorded: current name, birth date and postcode, address lines when asked. */
static void fill_person(struct row *r, const struct population_person *p, bool lines)
{
    const struct population_name *n = current_name(p);
    const json_t *addr = address_of(p, false);

    memset(r, 0, sizeof *r);
    r->family = n->family;
    r->given = n->given[0];
    r->other_given = n->ngiven > 1 ? n->given[1] : NULL;
    r->gender = p->gender;
    set_birth(r, p);
    r->postcode = json_string_value(json_object_get(addr, "postalCode"));
    r->lines = lines ? json_object_get(addr, "line") : NULL;
}

static unsigned days_in(unsigned year, unsigned month)
{
    static const unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return month == 2 && leap ? 29 : days[month - 1];
}

/* A family name, a given name and a postcode of three people, and a random birth date:
 * that nobody has all of them is all but certain. */
static void fill_made_up(struct sampler *s, struct row *r)
{
    const struct population_person *a = named_from(s, below(s, population_size(s->pop)));
    const struct population_person *b = named_from(s, below(s, population_size(s->pop)));
    const struct population_person *c = named_from(s, below(s, population_size(s->pop)));
    unsigned year = 1920 + (unsigned)below(s, 105);
    unsigned month = 1 + (unsigned)below(s, 12);
    unsigned day = 1 + (unsigned)below(s, days_in(year, month));

    fill_person(r, c, false);
    r->family = current_name(a)->family;
    r->given = current_name(b)->given[0];
    r->other_given = NULL;
    r->gender = b->gender;
    snprintf(r->birth, sizeof r->birth, "%04u-%02u-%02u", year % 10000, month % 100, day % 100);
}

static void set_nhs(struct row *r, const char *id)
{
    snprintf(r->nhs, sizeof r->nhs, "%s", id ? id : "");
}

/* Half superseded (the person the old number leads to, given with it), half invalidated
 * (someone given a number that was withdrawn); false when the population has neither. */
static bool fill_old_number(struct sampler *s, struct row *r)
{
    size_t nsup = population_superseded_count(s->pop);
    size_t ninv = population_invalidated_count(s->pop);
    bool superseded = nsup > 0 && (ninv == 0 || below(s, 2) == 0);
    const char *new_id = NULL;
    const struct population_person *p;

    if (nsup + ninv == 0)
        return false;
    if (!superseded) {
        fill_person(r, pick_person(s), below(s, 2) == 0);
        set_nhs(r, population_invalidated_at(s->pop, below(s, ninv)));
        return true;
    }
    const char *old_id = population_superseded_at(s->pop, below(s, nsup), &new_id);
    p = population_find(s->pop, new_id);
    if (!p || !current_name(p))
        return false;
    fill_person(r, remember(s, p), below(s, 2) == 0);
    set_nhs(r, old_id);
    return true;
}

/* Someone who has moved (one in twenty has a previous address), found from a random
 * place on; the postcode given is the previous one. With nobody who has moved, none. */
static void fill_old_postcode(struct sampler *s, struct row *r)
{
    size_t n = population_size(s->pop), from = below(s, n);
    const struct population_person *p = NULL;

    for (size_t k = 0; k < n && !p; k++) {
        p = population_at(s->pop, (from + k) % n);
        p = current_name(p) && address_of(p, true) ? p : NULL;
    }
    if (!p) {
        fill_person(r, pick_person(s), false);
        r->postcode = NULL;
        return;
    }
    fill_person(r, remember(s, p), false);
    r->postcode = json_string_value(json_object_get(address_of(p, true), "postalCode"));
}

/* A row that PDS could trace, made bad in one way. */
static void fill_bad(struct sampler *s, struct row *r, enum kind kind)
{
    const struct population_person *p = pick_person(s);

    fill_person(r, p, below(s, 2) == 0);
    if (kind == KIND_BAD_FAMILY) {
        r->family = NULL;
    } else if (kind == KIND_BAD_DATE) {
        snprintf(r->birth, sizeof r->birth, "2023-02-30");
    } else if (kind == KIND_BAD_NUMBER) {
        /* Another last digit: exactly one check digit is valid. */
        set_nhs(r, p->id);
        r->nhs[9] = (char)('0' + (r->nhs[9] - '0' + 1) % 10);
    } else {
        r->short_row = true;
    }
}

static enum kind roll(struct sampler *s)
{
    size_t r = below(s, 1000);

    for (size_t i = 0; i < ARRAY_SIZE(mix); i++) {
        if (r < mix[i].upto)
            return mix[i].kind;
    }
    return KIND_RECORDED;
}

static void fill_row(struct sampler *s, struct row *r)
{
    enum kind kind = roll(s);
    const struct population_person *p;

    if (kind == KIND_OLD_NUMBER && fill_old_number(s, r))
        return;
    if (kind == KIND_MADE_UP) {
        fill_made_up(s, r);
    } else if (kind == KIND_OLD_POSTCODE) {
        fill_old_postcode(s, r);
    } else if (kind >= KIND_BAD_FAMILY) {
        fill_bad(s, r, kind);
    } else {
        p = pick_person(s);
        fill_person(r, p, kind != KIND_NO_POSTCODE && below(s, 2) == 0);
        if (kind == KIND_NO_POSTCODE)
            r->postcode = NULL;
        if (kind == KIND_NUMBER || kind == KIND_OLD_NUMBER)
            set_nhs(r, p->id);
    }
}

/* ---- CSV ---- */

static bool needs_quotes(const char *v)
{
    size_t n = strlen(v);

    return strpbrk(v, ",\"\r\n") != NULL ||
           (n > 0 && (strchr(" \t", v[0]) != NULL || strchr(" \t", v[n - 1]) != NULL));
}

/* Appends one field (NULL: empty), after a comma unless it is the first. */
static int put(struct buf *b, const char *v, bool first)
{
    int err = first ? 0 : buf_append(b, ",", 1);

    if (err || !v || !v[0])
        return err;
    if (!needs_quotes(v))
        return buf_append_str(b, v);
    err = buf_append(b, "\"", 1);
    /* Each quote is written twice: once with the text before it, once alone. */
    for (const char *q; err == 0 && (q = strchr(v, '"')) != NULL; v = q + 1) {
        err = buf_append(b, v, (size_t)(q - v + 1));
        if (err == 0)
            err = buf_append(b, "\"", 1);
    }
    if (err == 0)
        err = buf_append_str(b, v);
    return err ? err : buf_append(b, "\"", 1);
}

/* Appends fields[0..n) as one record with its CRLF. */
static int put_record(struct buf *b, const char *const *fields, size_t n)
{
    int err = 0;

    for (size_t i = 0; err == 0 && i < n; i++)
        err = put(b, fields[i], i == 0);
    return err ? err : buf_append(b, "\r\n", 2);
}

static const char *line_at(const json_t *lines, size_t i)
{
    return json_string_value(json_array_get(lines, i));
}

/* Address lines joined with ", ", as the simple format takes them. */
static int join_lines(struct buf *out, const json_t *lines)
{
    int err = 0;

    for (size_t i = 0; err == 0 && i < json_array_size(lines); i++) {
        const char *l = line_at(lines, i);
        if (l && l[0])
            err = buf_len(out) ? buf_appendf(out, ", %s", l) : buf_append_str(out, l);
    }
    return err;
}

static int write_simple(struct sampler *s, const struct row *r)
{
    char ref[24], case_id[24];
    struct buf address;
    int err;

    buf_init(&address, ROW_MAX);
    snprintf(ref, sizeof ref, "R%07llu", (unsigned long long)s->row);
    snprintf(case_id, sizeof case_id, "CASE-%07llu", (unsigned long long)s->row);
    err = join_lines(&address, r->lines);
    const char *fields[] = {
        ref,
        r->family,
        r->given,
        r->birth,
        r->gender,
        r->postcode,
        buf_cstr(&address),
        r->nhs,
        below(s, 2) ? case_id : NULL,
    };
    if (err == 0)
        err = put_record(&s->line, fields, ARRAY_SIZE(fields) - r->short_row);
    buf_free(&address);
    return err;
}

static const char *mesh_gender(const char *gender)
{
    if (!gender)
        return NULL;
    if (strcmp(gender, "male") == 0)
        return "1";
    if (strcmp(gender, "female") == 0)
        return "2";
    return strcmp(gender, "other") == 0 ? "9" : "0";
}

/* YYYY-MM-DD as YYYYMMDD. */
static void mesh_date(const char *iso, char out[9])
{
    size_t n = 0;

    for (; *iso && n < 8; iso++) {
        if (*iso != '-')
            out[n++] = *iso;
    }
    out[n] = '\0';
}

static int write_mesh(struct sampler *s, const struct row *r)
{
    char ref[24], local[24], dob[9];
    const json_t *l = r->lines;

    snprintf(ref, sizeof ref, "R%07llu", (unsigned long long)s->row);
    snprintf(local, sizeof local, "LP%07llu", (unsigned long long)s->row);
    mesh_date(r->birth, dob);
    const char *fields[] = {
        ref,
        r->nhs,
        r->family,
        r->given,
        r->other_given,
        mesh_gender(r->gender),
        dob,
        r->postcode,
        NULL,
        line_at(l, 0),
        line_at(l, 1),
        line_at(l, 2),
        line_at(l, 3),
        line_at(l, 4),
        NULL,
        NULL,
        NULL,
        NULL,
        NULL,
        below(s, 2) ? local : NULL,
        NULL,
        NULL,
        NULL,
        NULL,
    };
    static_assert(ARRAY_SIZE(fields) == ARRAY_SIZE(mesh_columns), "one field per column");
    return put_record(&s->line, fields, ARRAY_SIZE(fields) - r->short_row);
}

/* ---- the file ---- */

static int flush_line(struct sampler *s, FILE *f)
{
    size_t n = buf_len(&s->line);

    if (fwrite(buf_cstr(&s->line), 1, n, f) != n)
        return ERR_INTERNAL;
    buf_reset(&s->line);
    return 0;
}

static int write_header(struct sampler *s, FILE *f)
{
    int err;

    if (s->o->format == SAMPLE_SIMPLE)
        err = put_record(&s->line, simple_columns, ARRAY_SIZE(simple_columns));
    else
        err = put_record(&s->line, mesh_columns, ARRAY_SIZE(mesh_columns));
    return err ? err : flush_line(s, f);
}

static size_t count_fixed(const struct population *pop)
{
    size_t n = 0;

    while (n < population_size(pop) && strcmp(population_at(pop, n)->id, FIXED_BELOW) < 0)
        n++;
    return n;
}

static int write_rows(struct sampler *s, FILE *f)
{
    int err = 0;
    struct row r;

    for (s->row = 1; err == 0 && s->row <= s->o->rows; s->row++) {
        fill_row(s, &r);
        if (s->o->format == SAMPLE_SIMPLE)
            err = write_simple(s, &r);
        else
            err = write_mesh(s, &r);
        if (err == 0)
            err = flush_line(s, f);
    }
    return err;
}

int sample_write(const struct population *pop, const struct sample_opts *o, FILE *f)
{
    struct sampler s = {
        .pop = pop, .o = o, .state = o->seed ^ mix64(o->sample_seed), .nfixed = count_fixed(pop)};
    int err;

    if (!named_from(&s, 0))
        return ERR_INVALID_INPUT;
    buf_init(&s.line, ROW_MAX);
    err = write_header(&s, f);
    if (err == 0)
        err = write_rows(&s, f);
    buf_free(&s.line);
    if (err == ERR_TOO_LARGE)
        err = ERR_INTERNAL;
    if (err == 0 && fflush(f) != 0)
        err = ERR_INTERNAL;
    return err;
}

int sample_save(const struct population *pop, const struct sample_opts *o, const char *path)
{
    FILE *f = fopen(path, "wb");
    int err;

    if (!f)
        return ERR_NOT_FOUND;
    err = sample_write(pop, o, f);
    if (fclose(f) != 0 && err == 0)
        err = ERR_INTERNAL;
    return err;
}

int sample_format_parse(const char *name, enum sample_format *out)
{
    if (name && strcmp(name, "simple") == 0)
        *out = SAMPLE_SIMPLE;
    else if (name && strcmp(name, "pds-mesh") == 0)
        *out = SAMPLE_PDS_MESH;
    else
        return ERR_INVALID_INPUT;
    return 0;
}
