#include "case_body.h"

#include <jansson.h>
#include <string.h>

#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/nhs_number.h"

/* ---- case ids, keys and times ---------------------------------------------------- */

static bool id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

bool case_id_is_valid(const char *s)
{
    size_t n = 0;
    if (s == NULL)
        return false;
    for (; s[n] != '\0'; n++)
        if (n >= CASE_ID_MAX || !id_char(s[n]))
            return false;
    return n > 0;
}

bool case_key_is_valid(const char *s)
{
    size_t n = 0;
    if (s == NULL)
        return false;
    for (; s[n] != '\0'; n++)
        if (n >= CASE_KEY_MAX || s[n] < 0x21 || s[n] > 0x7e)
            return false;
    return n > 0;
}

/* Reads exactly n digits at s into *out; false when any is not a digit. */
static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* "YYYY-MM-DD" on a real day. */
static bool date_ok(const char *s)
{
    int y, mo, d;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d))
        return false;
    return y >= 1 && mo >= 1 && mo <= 12 && d >= 1 && d <= days_in_month(y, mo);
}

/* "HH:MM:SS" with hours 0..23, minutes and seconds 0..59. */
static bool clock_ok(const char *s)
{
    int h, mi, se;
    if (!digits(s, 2, &h) || s[2] != ':' || !digits(s + 3, 2, &mi) || s[5] != ':' ||
        !digits(s + 6, 2, &se))
        return false;
    return h <= 23 && mi <= 59 && se <= 59;
}

bool case_time_is_valid(const char *s)
{
    if (s == NULL || strlen(s) > CASE_TIME_MAX || strlen(s) < 20)
        return false;
    if (!date_ok(s) || s[10] != 'T' || !clock_ok(s + 11))
        return false;
    const char *p = s + 19;
    if (*p == '.') {
        size_t n = strspn(p + 1, "0123456789");
        if (n < 1 || n > 9)
            return false;
        p += 1 + n;
    }
    return strcmp(p, "Z") == 0;
}

/* ---- the body -------------------------------------------------------------------- */

struct body_ctx {
    json_t *root;
    const char *key;
    struct case_write *out;
    struct field_error *fe;
};

/* Sets fe and returns ERR_INVALID_INPUT, so that checks can end with it. */
static int fail(struct body_ctx *c, const char *field, const char *reason)
{
    c->fe->field = field;
    c->fe->reason = reason;
    return ERR_INVALID_INPUT;
}

/* A string member, or NULL after setting fe (missing, or not a string). */
static const char *string_field(struct body_ctx *c, const char *name, int *err)
{
    json_t *v = json_object_get(c->root, name);
    if (v == NULL)
        *err = fail(c, name, CASE_REASON_MISSING);
    else if (!json_is_string(v))
        *err = fail(c, name, "must be a string");
    return *err ? NULL : json_string_value(v);
}

static int check_nhs_number(struct body_ctx *c)
{
    int err = 0;
    const char *s = string_field(c, "nhs_number", &err);
    if (err)
        return err;
    if (!nhs_number_is_valid(s))
        return fail(c, "nhs_number", "must be ten digits with a valid check digit");
    memcpy(c->out->nhs_number, s, sizeof(c->out->nhs_number));
    return 0;
}

static int check_status(struct body_ctx *c)
{
    int err = 0;
    const char *s = string_field(c, "nhs_number_status", &err);
    if (err)
        return err;
    return strcmp(s, "01") == 0 ? 0 : fail(c, "nhs_number_status", "must be \"01\"");
}

static int check_trace_id(struct body_ctx *c)
{
    int err = 0;
    const char *s = string_field(c, "trace_id", &err);
    if (err)
        return err;
    size_t n = strlen(s);
    if (n == 0 || n > CASE_TRACE_ID_MAX)
        return fail(c, "trace_id", "must be 1 to 128 characters");
    /* The key is the trace id (DESIGN.md §5): a mismatch is a bug in the sender. */
    if (strcmp(s, c->key) != 0)
        return fail(c, "trace_id", "must equal the Idempotency-Key header");
    memcpy(c->out->trace_id, s, n + 1);
    return 0;
}

static int check_traced_at(struct body_ctx *c)
{
    int err = 0;
    const char *s = string_field(c, "traced_at", &err);
    if (err)
        return err;
    if (!case_time_is_valid(s))
        return fail(c, "traced_at", "must be ISO 8601 UTC, e.g. 2026-12-02T10:15:00Z");
    memcpy(c->out->traced_at, s, strlen(s) + 1);
    return 0;
}

static int check_score(struct body_ctx *c)
{
    json_t *v = json_object_get(c->root, "score");
    if (v == NULL)
        return fail(c, "score", CASE_REASON_MISSING);
    if (!json_is_number(v))
        return fail(c, "score", "must be a number");
    double d = json_number_value(v);
    if (!(d >= 0 && d <= 1))
        return fail(c, "score", "must be between 0 and 1");
    c->out->score = d;
    return 0;
}

static const char *const known_fields[] = {"nhs_number", "nhs_number_status", "trace_id",
                                           "traced_at", "score"};

/* A field outside the contract is refused: it would mean the sender and DESIGN.md §5 have
 * drifted apart, which a contract mock is there to catch. */
static int check_unknown(struct body_ctx *c)
{
    const char *name;
    json_t *v;
    json_object_foreach(c->root, name, v)
    {
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(known_fields); i++)
            known = known || strcmp(name, known_fields[i]) == 0;
        if (known)
            continue;
        /* The name is copied into out, since the parsed body goes before fe is read. */
        size_t n = strlen(name) < CASE_FIELD_NAME_MAX ? strlen(name) : CASE_FIELD_NAME_MAX;
        memcpy(c->out->unknown_field, name, n);
        c->out->unknown_field[n] = '\0';
        return fail(c, c->out->unknown_field, "is not a field of the write-back body");
    }
    return 0;
}

int case_body_parse(const char *text, size_t len, const char *key, struct case_write *out,
                    struct field_error *fe)
{
    static int (*const checks[])(struct body_ctx *) = {
        check_nhs_number, check_status, check_trace_id, check_traced_at, check_score, check_unknown,
    };
    struct body_ctx c = {json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL), key, out, fe};
    *out = (struct case_write){0};
    int err = 0;
    if (!json_is_object(c.root)) {
        fe->field = NULL;
        fe->reason = "the body must be a JSON object";
        err = ERR_PARSE;
    }
    for (size_t i = 0; !err && i < ARRAY_SIZE(checks); i++)
        err = checks[i](&c);
    json_decref(c.root);
    return err;
}

const char *case_body_error_code(const struct field_error *fe)
{
    if (fe->field == NULL)
        return "invalid_json";
    return strcmp(fe->reason, CASE_REASON_MISSING) == 0 ? "missing_field" : "invalid_field";
}
