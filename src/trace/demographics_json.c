/* The POST /v1/trace body to a struct demographics, and the canonical form of a request
 * (demographics.h); the single normalisers are in demographics.c. */
#include <jansson.h>
#include <string.h>

#include "demographics_int.h"
#include "pdstrace/buf.h"
#include "pdstrace/demographics.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/nhs_number.h"

static const char R_ADDRESS_MANY[] = "must have at most 5 non-empty lines";
static const char R_CASE_ID_CHARS[] = "may hold only visible ASCII characters, without spaces";
static const char R_CASE_ID_LEN[] = "must be at most 64 characters";
static const char R_GENDER[] = "must be one of male, female, other, unknown";
static const char R_GIVEN_MANY[] = "must have at most 4 items";
static const char R_ITEM_TYPE[] = "must hold only strings";
static const char R_NHS[] = "is not a valid NHS number (10 digits with a valid check digit)";
static const char R_NOT_BOOL[] = "must be true or false";
static const char R_NOT_LIST[] = "must be a string or an array of strings";
static const char R_NOT_STRING[] = "must be a string";
static const char R_POSTCODE[] = "is not a valid UK postcode";
static const char R_REQUIRED[] = "is required";

/* ---- The request body. ---- */

struct parse_ctx {
    const json_t *body;
    const char *today;
    struct demographics *d;
    struct field_error *fe;
};

static int fail(struct parse_ctx *c, const char *field, const char *reason)
{
    c->fe->field = field;
    c->fe->reason = reason;
    return ERR_INVALID_INPUT;
}

/* jansson keeps "\u0000" inside strings; C code would silently cut the value there. */
static bool has_nul(const json_t *s)
{
    return strlen(json_string_value(s)) != json_string_length(s);
}

/* *s is NULL when the field is absent, null or blank. */
static int opt_string(struct parse_ctx *c, const char *key, const char **s)
{
    const json_t *v = json_object_get(c->body, key);

    *s = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(c, key, R_NOT_STRING);
    if (has_nul(v))
        return fail(c, key, R_CONTROL);
    if (!is_blank(json_string_value(v)))
        *s = json_string_value(v);
    return 0;
}

static int req_string(struct parse_ctx *c, const char *key, const char **s)
{
    const json_t *v = json_object_get(c->body, key);

    if (v == NULL || json_is_null(v))
        return fail(c, key, R_REQUIRED);
    if (!json_is_string(v))
        return fail(c, key, R_NOT_STRING);
    if (has_nul(v))
        return fail(c, key, R_CONTROL);
    *s = json_string_value(v);
    return 0;
}

int demog_check_case_id(const char *in, const char **why)
{
    size_t n = strlen(in);

    *why = n >= sizeof((struct demographics *)NULL)->case_id ? R_CASE_ID_LEN : NULL;
    if (n == 0)
        *why = R_EMPTY;
    for (size_t i = 0; *why == NULL && i < n; i++)
        if ((unsigned char)in[i] < 0x21 || (unsigned char)in[i] > 0x7E)
            *why = R_CASE_ID_CHARS;
    return *why != NULL ? ERR_INVALID_INPUT : 0;
}

static int parse_case_id(struct parse_ctx *c)
{
    const char *s, *why;
    int err = opt_string(c, "case_id", &s);

    if (err || s == NULL)
        return err;
    if (demog_check_case_id(s, &why) != 0)
        return fail(c, "case_id", why);
    memcpy(c->d->case_id, s, strlen(s) + 1);
    return 0;
}

static int parse_family(struct parse_ctx *c)
{
    const char *s, *why;
    int err = req_string(c, "family", &s);

    if (err)
        return err;
    if (demog_normalise_name_why(s, c->d->family, sizeof c->d->family, &why) != 0)
        return fail(c, "family", why);
    return 0;
}

/* How a list field (a string taken as one item, or an array of strings) is read. */
struct list_spec {
    const char *key;
    unsigned max;
    const char *too_many;
    int (*norm)(const char *in, char *out, size_t size, const char **why);
};

/* Empty results are skipped: that only happens for address lines, because a name that
 * normalises to nothing is an error. */
static int list_add(struct parse_ctx *c, const struct list_spec *ls, const json_t *item,
                    char (*items)[DEMOG_NAME_SIZE], unsigned *n)
{
    char tmp[DEMOG_NAME_SIZE];
    const char *why;

    if (!json_is_string(item))
        return fail(c, ls->key, R_ITEM_TYPE);
    if (has_nul(item))
        return fail(c, ls->key, R_CONTROL);
    if (ls->norm(json_string_value(item), tmp, sizeof tmp, &why) != 0)
        return fail(c, ls->key, why);
    if (tmp[0] == '\0')
        return 0;
    if (*n == ls->max)
        return fail(c, ls->key, ls->too_many);
    memcpy(items[(*n)++], tmp, sizeof tmp);
    return 0;
}

static int parse_list(struct parse_ctx *c, const struct list_spec *ls,
                      char (*items)[DEMOG_NAME_SIZE], unsigned *n)
{
    const json_t *v = json_object_get(c->body, ls->key);

    *n = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_string(v))
        return is_blank(json_string_value(v)) ? 0 : list_add(c, ls, v, items, n);
    if (!json_is_array(v))
        return fail(c, ls->key, R_NOT_LIST);
    for (size_t i = 0; i < json_array_size(v); i++) {
        int err = list_add(c, ls, json_array_get(v, i), items, n);
        if (err)
            return err;
    }
    return 0;
}

static int parse_given(struct parse_ctx *c)
{
    static const struct list_spec spec = {"given", DEMOG_MAX_GIVEN, R_GIVEN_MANY,
                                          demog_normalise_name_why};

    return parse_list(c, &spec, c->d->given, &c->d->n_given);
}

static int parse_birth_date(struct parse_ctx *c)
{
    const char *s, *why;
    int err = req_string(c, "birth_date", &s);

    if (err)
        return err;
    if (demog_check_birth_date_why(s, c->today, &why) != 0)
        return fail(c, "birth_date", why);
    memcpy(c->d->birth_date, s, sizeof c->d->birth_date);
    return 0;
}

static int parse_gender(struct parse_ctx *c)
{
    const char *s;
    int err = opt_string(c, "gender", &s);

    if (err || s == NULL)
        return err;
    if (demog_parse_gender(s, &c->d->gender) != 0)
        return fail(c, "gender", R_GENDER);
    return 0;
}

static int parse_postcode(struct parse_ctx *c)
{
    const char *s;
    int err = opt_string(c, "postcode", &s);

    if (err || s == NULL)
        return err;
    if (demog_normalise_postcode(s, c->d->postcode) != 0)
        return fail(c, "postcode", R_POSTCODE);
    return 0;
}

static int parse_address(struct parse_ctx *c)
{
    static const struct list_spec spec = {"address", DEMOG_MAX_ADDRESS, R_ADDRESS_MANY,
                                          demog_normalise_text};

    return parse_list(c, &spec, c->d->address, &c->d->n_address);
}

static int parse_nhs_number(struct parse_ctx *c)
{
    const char *s;
    int err = opt_string(c, "nhs_number", &s);

    if (err || s == NULL)
        return err;
    if (nhs_number_normalise(s, c->d->nhs_number) != 0)
        return fail(c, "nhs_number", R_NHS);
    return 0;
}

static int parse_write_back(struct parse_ctx *c)
{
    const json_t *v = json_object_get(c->body, "write_back");

    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return fail(c, "write_back", R_NOT_BOOL);
    c->d->write_back = json_is_true(v) ? 1 : 0;
    return 0;
}

static int parse_purpose(struct parse_ctx *c)
{
    const char *s, *why;
    int err = opt_string(c, "purpose", &s);

    if (err || s == NULL)
        return err;
    if (demog_normalise_text(s, c->d->purpose, sizeof c->d->purpose, &why) != 0)
        return fail(c, "purpose", why);
    return 0;
}

/* In the order of DESIGN.md §3, so that the first error reported is predictable. */
static int (*const field_parsers[])(struct parse_ctx *c) = {
    parse_case_id,  parse_family,  parse_given,      parse_birth_date, parse_gender,
    parse_postcode, parse_address, parse_nhs_number, parse_write_back, parse_purpose,
};

int demographics_from_json(const json_t *body, const char *today, struct demographics *out,
                           struct field_error *fe)
{
    struct field_error spare;
    struct parse_ctx c = {body, today, out, fe != NULL ? fe : &spare};

    memset(out, 0, sizeof *out);
    out->gender = DEMOG_GENDER_NONE;
    out->write_back = -1;
    c.fe->field = NULL;
    c.fe->reason = NULL;
    if (today == NULL || !demog_date_real(today))
        return ERR_INTERNAL;
    if (!json_is_object(body))
        return fail(&c, NULL, "must be a JSON object");
    for (size_t i = 0; i < ARRAY_SIZE(field_parsers); i++) {
        int err = field_parsers[i](&c);
        if (err)
            return err;
    }
    return 0;
}

bool demographics_error_is_missing(const struct field_error *fe)
{
    return fe != NULL && fe->reason != NULL &&
           strncmp(fe->reason, R_REQUIRED, sizeof R_REQUIRED - 1) == 0;
}

/* ---- Canonical form for cache keys. ---- */

/* Separators: 0x1f between fields, 0x1e between given names. */
static int append_folded(struct buf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char f = to_lower(c);
        if (c < 0x20 || c == 0x7F)
            return ERR_INVALID_INPUT;
        int err = buf_append(b, &f, 1);
        if (err)
            return err;
    }
    return 0;
}

static int put_field(struct buf *b, char tag, const char *value)
{
    const char head[3] = {0x1f, tag, '='};
    int err = buf_append(b, head, sizeof head);

    return err ? err : append_folded(b, value);
}

static int put_given(struct buf *b, const struct demographics *d)
{
    unsigned n = d->n_given < DEMOG_MAX_GIVEN ? d->n_given : DEMOG_MAX_GIVEN;
    int err = put_field(b, 'g', n > 0 ? d->given[0] : "");

    for (unsigned i = 1; err == 0 && i < n; i++) {
        err = buf_append(b, "\x1e", 1);
        if (err == 0)
            err = append_folded(b, d->given[i]);
    }
    return err;
}

static int put_fields(const struct demographics *d, struct buf *b)
{
    /* The version tag lets a future change of this format miss old cache entries. */
    int err = buf_append_str(b, "pds-search-v1");

    if (err == 0)
        err = put_field(b, 'f', d->family);
    if (err == 0)
        err = put_given(b, d);
    if (err == 0)
        err = put_field(b, 'd', d->birth_date);
    if (err == 0)
        err = put_field(b, 's', demog_gender_name(d->gender));
    if (err == 0)
        err = put_field(b, 'p', d->postcode);
    if (err == 0)
        err = put_field(b, 'n', d->nhs_number);
    return err;
}

int demographics_canonical(const struct demographics *d, struct buf *out)
{
    size_t len0 = buf_len(out);
    int err = put_fields(d, out);
    if (err)
        buf_truncate(out, len0);
    return err;
}
