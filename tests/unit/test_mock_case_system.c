/* The pure logic of the mock case system: case ids, Idempotency-Key values, ISO 8601 UTC
 * times, the write-back body of DESIGN.md §5, the idempotency table and the fault ranges. */
#include "case_body.h"
#include "case_store.h"
#include "case_system.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "pdstrace/err.h"

#define KEY  "0b6f1d1e-7c1a-4f43-9f0e-3c2d8a1b5e77"
#define KEY2 "5a8d2c4e-1b3f-4a6d-8e9c-7f0b1a2d3c4e"
#define GOOD                                                                                       \
    "{\"nhs_number\":\"9000000009\",\"nhs_number_status\":\"01\",\"trace_id\":\"" KEY "\","        \
    "\"traced_at\":\"2026-12-02T10:15:00Z\",\"score\":0.97}"

TestSuite(mock_case, .timeout = 30);

/* ---- case ids, keys and times ---- */

/* Inline arrays only: criterion re-executes the binary per test (PIE), so pointers to
 * string literals would not survive. */
struct str_case {
    char s[80];
    bool ok;
};

ParameterizedTestParameters(mock_case, case_ids)
{
    static struct str_case cases[] = {
        {"LAS-000123", true},
        {"a", true},
        {"A.b_c:d-9", true},
        {"0123456789012345678901234567890123456789012345678901234567890123", true},
        {"01234567890123456789012345678901234567890123456789012345678901234", false},
        {"", false},
        {"LAS 1", false},
        {"LAS/1", false},
        {"caf\xc3\xa9", false},
    };
    return cr_make_param_array(struct str_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct str_case *c, mock_case, case_ids)
{
    cr_expect_eq(case_id_is_valid(c->s), c->ok, "case_id '%s'", c->s);
}

Test(mock_case, case_id_null_is_invalid)
{
    cr_expect_not(case_id_is_valid(NULL));
    cr_expect_not(case_key_is_valid(NULL));
    cr_expect_not(case_time_is_valid(NULL));
}

Test(mock_case, idempotency_keys)
{
    char long_key[CASE_KEY_MAX + 2];
    memset(long_key, 'k', sizeof(long_key));
    long_key[CASE_KEY_MAX] = '\0';
    cr_expect(case_key_is_valid(long_key), "200 characters are allowed");
    long_key[CASE_KEY_MAX] = 'k';
    long_key[CASE_KEY_MAX + 1] = '\0';
    cr_expect_not(case_key_is_valid(long_key), "201 characters are not");
    cr_expect(case_key_is_valid(KEY));
    cr_expect(case_key_is_valid("~!x"));
    cr_expect_not(case_key_is_valid(""));
    cr_expect_not(case_key_is_valid("a b"));
    cr_expect_not(case_key_is_valid("a\tb"));
    cr_expect_not(case_key_is_valid("a\x7f"));
}

ParameterizedTestParameters(mock_case, times)
{
    static struct str_case cases[] = {
        {"2026-12-02T10:15:00Z", true},
        {"2026-12-02T10:15:00.1Z", true},
        {"2026-12-02T10:15:00.123456789Z", true},
        {"2024-02-29T23:59:59Z", true},
        {"2000-02-29T00:00:00Z", true},
        {"1900-02-29T00:00:00Z", false},
        {"2023-02-29T00:00:00Z", false},
        {"2026-04-31T00:00:00Z", false},
        {"2026-13-01T00:00:00Z", false},
        {"2026-00-01T00:00:00Z", false},
        {"2026-12-00T00:00:00Z", false},
        {"2026-12-02T24:00:00Z", false},
        {"2026-12-02T10:60:00Z", false},
        {"2026-12-02T10:15:60Z", false},
        {"2026-12-02T10:15:00", false},
        {"2026-12-02T10:15:00z", false},
        {"2026-12-02T10:15:00+00:00", false},
        {"2026-12-02 10:15:00Z", false},
        {"2026-12-02T10:15Z", false},
        {"2026-12-02T10:15:00.Z", false},
        {"2026-12-02T10:15:00.1234567890Z", false},
        {"2026-12-02T10:15:00ZZ", false},
        {"26-12-02T10:15:00Z", false},
        {"2026-12-02", false},
        {"", false},
    };
    return cr_make_param_array(struct str_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct str_case *c, mock_case, times)
{
    cr_expect_eq(case_time_is_valid(c->s), c->ok, "traced_at '%s'", c->s);
}

/* ---- the body ---- */

static int parse(const char *text, struct case_write *w, struct field_error *fe)
{
    return case_body_parse(text, strlen(text), KEY, w, fe);
}

Test(mock_case, good_body_is_read)
{
    struct case_write w;
    struct field_error fe = {0};
    cr_assert_eq(parse(GOOD, &w, &fe), 0, "refused: %s %s", fe.field, fe.reason);
    cr_expect_str_eq(w.nhs_number, "9000000009");
    cr_expect_str_eq(w.trace_id, KEY);
    cr_expect_str_eq(w.traced_at, "2026-12-02T10:15:00Z");
    cr_expect_float_eq(w.score, 0.97, 1e-9);
}

Test(mock_case, integer_scores_are_numbers)
{
    struct case_write w;
    struct field_error fe = {0};
    const char *one = "{\"nhs_number\":\"9000000017\",\"nhs_number_status\":\"01\",\"trace_id\":"
                      "\"" KEY "\",\"traced_at\":\"2026-01-01T00:00:00.5Z\",\"score\":1}";
    cr_assert_eq(parse(one, &w, &fe), 0, "refused: %s %s", fe.field, fe.reason);
    cr_expect_float_eq(w.score, 1.0, 1e-9);
    cr_expect_str_eq(w.nhs_number, "9000000017");
}

/* A body with one field replaced (value a JSON text) or, with value NULL, left out. */
static void body_with(char *out, size_t size, const char *field, const char *value)
{
    json_t *j = json_loads(GOOD, 0, NULL);
    if (value == NULL || value[0] == '\0')
        json_object_del(j, field);
    else
        json_object_set_new(j, field, json_loads(value, JSON_DECODE_ANY, NULL));
    char *text = json_dumps(j, JSON_COMPACT);
    snprintf(out, size, "%s", text);
    free(text);
    json_decref(j);
}

struct bad_body {
    char field[24];
    char value[48]; /* "": the field is left out */
    char code[16];
};

ParameterizedTestParameters(mock_case, bad_bodies)
{
    static struct bad_body cases[] = {
        {"nhs_number", "", "missing_field"},
        {"nhs_number", "9000000009", "invalid_field"},
        {"nhs_number", "\"9000000008\"", "invalid_field"},
        {"nhs_number", "\"900000000\"", "invalid_field"},
        {"nhs_number", "\"900 000 0009\"", "invalid_field"},
        {"nhs_number", "null", "invalid_field"},
        {"nhs_number_status", "", "missing_field"},
        {"nhs_number_status", "\"02\"", "invalid_field"},
        {"nhs_number_status", "1", "invalid_field"},
        {"trace_id", "", "missing_field"},
        {"trace_id", "\"\"", "invalid_field"},
        {"trace_id", "\"" KEY2 "\"", "invalid_field"},
        {"trace_id", "42", "invalid_field"},
        {"traced_at", "", "missing_field"},
        {"traced_at", "\"2026-12-02T10:15:00+01:00\"", "invalid_field"},
        {"traced_at", "\"yesterday\"", "invalid_field"},
        {"traced_at", "1764670500", "invalid_field"},
        {"score", "", "missing_field"},
        {"score", "\"0.97\"", "invalid_field"},
        {"score", "1.01", "invalid_field"},
        {"score", "-0.1", "invalid_field"},
        {"score", "true", "invalid_field"},
        {"reason", "\"extra\"", "invalid_field"},
    };
    return cr_make_param_array(struct bad_body, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad_body *c, mock_case, bad_bodies)
{
    char text[512];
    struct case_write w;
    struct field_error fe = {0};
    body_with(text, sizeof(text), c->field, c->value);
    cr_assert_eq(parse(text, &w, &fe), ERR_INVALID_INPUT, "accepted %s", text);
    cr_expect_str_eq(fe.field, c->field, "%s named instead of %s", fe.field, c->field);
    cr_expect_str_eq(case_body_error_code(&fe), c->code, "for %s", text);
}

Test(mock_case, first_bad_field_is_named)
{
    char text[512];
    struct case_write w;
    struct field_error fe = {0};
    const char *both = "{\"nhs_number_status\":\"02\",\"trace_id\":\"x\"}";
    cr_assert_eq(parse(both, &w, &fe), ERR_INVALID_INPUT);
    cr_expect_str_eq(fe.field, "nhs_number", "fields are checked in contract order");
    body_with(text, sizeof(text), "score", "2");
    cr_assert_eq(parse(text, &w, &fe), ERR_INVALID_INPUT);
    cr_expect_str_eq(fe.field, "score");
}

Test(mock_case, not_an_object_is_invalid_json)
{
    static const char *const texts[] = {"", "{", "[1,2]", "\"x\"", "null", "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct case_write w;
        struct field_error fe = {"x", "x"};
        cr_expect_eq(parse(texts[i], &w, &fe), ERR_PARSE, "'%s'", texts[i]);
        cr_expect_null(fe.field, "'%s'", texts[i]);
        cr_expect_str_eq(case_body_error_code(&fe), "invalid_json");
    }
}

Test(mock_case, long_unknown_field_name_is_cut)
{
    char name[100], text[512];
    struct case_write w;
    struct field_error fe = {0};
    memset(name, 'z', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    body_with(text, sizeof(text), name, "1");
    cr_assert_eq(parse(text, &w, &fe), ERR_INVALID_INPUT);
    cr_expect_eq(strlen(fe.field), CASE_FIELD_NAME_MAX);
    cr_expect_eq(strncmp(fe.field, name, CASE_FIELD_NAME_MAX), 0);
}

/* ---- the idempotency table ---- */

static struct case_write write_of(const char *nhs, const char *trace_id, double score)
{
    struct case_write w = {.score = score};
    snprintf(w.nhs_number, sizeof(w.nhs_number), "%s", nhs);
    snprintf(w.trace_id, sizeof(w.trace_id), "%s", trace_id);
    snprintf(w.traced_at, sizeof(w.traced_at), "%s", "2026-12-02T10:15:00Z");
    return w;
}

static json_int_t client_int(struct case_store *s, const char *case_id, const char *name)
{
    json_t *c = case_store_client(s, case_id);
    cr_assert_not_null(c, "no record for %s", case_id);
    json_int_t v = json_integer_value(json_object_get(c, name));
    json_decref(c);
    return v;
}

static json_t *reply_json(const char *reply)
{
    json_t *j = json_loads(reply, 0, NULL);
    cr_assert_not_null(j, "reply is not JSON: %s", reply);
    return j;
}

Test(mock_case, first_write_is_recorded)
{
    struct case_store *s;
    enum case_outcome o;
    const char *reply = NULL;
    struct case_write w = write_of("9000000009", KEY, 0.97);
    cr_assert_eq(case_store_new(&s, 10), 0);
    cr_assert_null(case_store_client(s, "LAS-1"));
    cr_assert_eq(case_store_apply(s, "LAS-1", KEY, &w, &o, &reply), 0);
    cr_expect_eq(o, CASE_DELIVERED);
    json_t *r = reply_json(reply);
    cr_expect_str_eq(json_string_value(json_object_get(r, "case_id")), "LAS-1");
    cr_expect_str_eq(json_string_value(json_object_get(r, "nhs_number")), "9000000009");
    cr_expect_str_eq(json_string_value(json_object_get(r, "trace_id")), KEY);
    cr_expect_eq(json_integer_value(json_object_get(r, "version")), 1);
    json_decref(r);
    json_t *c = case_store_client(s, "LAS-1");
    cr_assert_not_null(c);
    cr_expect_str_eq(json_string_value(json_object_get(c, "nhs_number")), "9000000009");
    cr_expect_str_eq(json_string_value(json_object_get(c, "traced_at")), "2026-12-02T10:15:00Z");
    cr_expect_float_eq(json_real_value(json_object_get(c, "score")), 0.97, 1e-9);
    cr_expect_eq(json_integer_value(json_object_get(c, "writes")), 1);
    cr_expect_eq(json_integer_value(json_object_get(c, "duplicates")), 0);
    json_decref(c);
    cr_expect_null(case_store_client(s, "LAS-2"));
    cr_expect_eq(case_store_clients(s), 1);
    cr_expect_eq(case_store_keys(s), 1);
    case_store_free(s);
}

Test(mock_case, repeat_is_a_duplicate_with_the_same_reply)
{
    struct case_store *s;
    enum case_outcome o;
    const char *reply = NULL;
    struct case_write w = write_of("9000000009", KEY, 0.97);
    cr_assert_eq(case_store_new(&s, 10), 0);
    cr_assert_eq(case_store_apply(s, "LAS-1", KEY, &w, &o, &reply), 0);
    char *first = strdup(reply);
    /* Sent again, even with another score and time, it is the same write. */
    w.score = 0.5;
    cr_assert_eq(case_store_apply(s, "LAS-1", KEY, &w, &o, &reply), 0);
    cr_expect_eq(o, CASE_DUPLICATE);
    cr_expect_str_eq(reply, first);
    cr_assert_eq(case_store_apply(s, "LAS-1", KEY, &w, &o, &reply), 0);
    cr_expect_eq(o, CASE_DUPLICATE);
    cr_expect_eq(client_int(s, "LAS-1", "writes"), 1);
    cr_expect_eq(client_int(s, "LAS-1", "duplicates"), 2);
    json_t *c = case_store_client(s, "LAS-1");
    cr_expect_float_eq(json_real_value(json_object_get(c, "score")), 0.97, 1e-9);
    json_decref(c);
    cr_expect_eq(case_store_keys(s), 1);
    free(first);
    case_store_free(s);
}

Test(mock_case, reused_key_for_other_case_or_number_conflicts)
{
    struct case_store *s;
    enum case_outcome o;
    const char *reply = "x";
    struct case_write w = write_of("9000000009", KEY, 0.97);
    struct case_write other = write_of("9000000017", KEY, 0.97);
    cr_assert_eq(case_store_new(&s, 10), 0);
    cr_assert_eq(case_store_apply(s, "LAS-1", KEY, &w, &o, &reply), 0);
    cr_assert_eq(case_store_apply(s, "LAS-2", KEY, &w, &o, &reply), 0);
    cr_expect_eq(o, CASE_CONFLICT);
    cr_expect_null(reply);
    cr_assert_eq(case_store_apply(s, "LAS-1", KEY, &other, &o, &reply), 0);
    cr_expect_eq(o, CASE_CONFLICT);
    cr_expect_null(case_store_client(s, "LAS-2"), "a conflict records nothing");
    cr_expect_eq(client_int(s, "LAS-1", "writes"), 1);
    cr_expect_eq(client_int(s, "LAS-1", "duplicates"), 0);
    case_store_free(s);
}

Test(mock_case, new_key_overwrites_and_old_replay_keeps_its_body)
{
    struct case_store *s;
    enum case_outcome o;
    const char *reply = NULL;
    struct case_write w1 = write_of("9000000009", KEY, 0.97);
    struct case_write w2 = write_of("9000000017", KEY2, 1.0);
    cr_assert_eq(case_store_new(&s, 10), 0);
    cr_assert_eq(case_store_apply(s, "LAS-1", KEY, &w1, &o, &reply), 0);
    cr_assert_eq(case_store_apply(s, "LAS-1", KEY2, &w2, &o, &reply), 0);
    cr_expect_eq(o, CASE_DELIVERED);
    json_t *r = reply_json(reply);
    cr_expect_eq(json_integer_value(json_object_get(r, "version")), 2);
    json_decref(r);
    json_t *c = case_store_client(s, "LAS-1");
    cr_expect_str_eq(json_string_value(json_object_get(c, "nhs_number")), "9000000017");
    cr_expect_str_eq(json_string_value(json_object_get(c, "trace_id")), KEY2);
    json_decref(c);
    cr_assert_eq(case_store_apply(s, "LAS-1", KEY, &w1, &o, &reply), 0);
    cr_expect_eq(o, CASE_DUPLICATE);
    r = reply_json(reply);
    cr_expect_eq(json_integer_value(json_object_get(r, "version")), 1);
    cr_expect_str_eq(json_string_value(json_object_get(r, "nhs_number")), "9000000009");
    json_decref(r);
    cr_expect_eq(client_int(s, "LAS-1", "writes"), 2);
    cr_expect_eq(client_int(s, "LAS-1", "duplicates"), 1);
    case_store_free(s);
}

Test(mock_case, oldest_keys_are_forgotten_past_the_cap)
{
    struct case_store *s;
    enum case_outcome o;
    const char *reply;
    cr_assert_eq(case_store_new(&s, 2), 0);
    static const char *const keys[] = {"k1", "k2", "k3"};
    for (size_t i = 0; i < 3; i++) {
        struct case_write w = write_of("9000000009", keys[i], 0.97);
        cr_assert_eq(case_store_apply(s, "LAS-1", keys[i], &w, &o, &reply), 0);
        cr_assert_eq(o, CASE_DELIVERED);
    }
    cr_expect_eq(case_store_keys(s), 2);
    struct case_write w3 = write_of("9000000009", "k3", 0.97);
    cr_assert_eq(case_store_apply(s, "LAS-1", "k3", &w3, &o, &reply), 0);
    cr_expect_eq(o, CASE_DUPLICATE, "the newest key is kept");
    struct case_write w1 = write_of("9000000009", "k1", 0.97);
    cr_assert_eq(case_store_apply(s, "LAS-1", "k1", &w1, &o, &reply), 0);
    cr_expect_eq(o, CASE_DELIVERED, "the oldest key was forgotten");
    cr_expect_eq(client_int(s, "LAS-1", "writes"), 4);
    case_store_free(s);
}

Test(mock_case, clear_forgets_everything)
{
    struct case_store *s;
    enum case_outcome o;
    const char *reply;
    struct case_write w = write_of("9000000009", KEY, 0.97);
    cr_assert_eq(case_store_new(&s, 10), 0);
    cr_assert_eq(case_store_apply(s, "LAS-1", KEY, &w, &o, &reply), 0);
    case_store_clear(s);
    cr_expect_null(case_store_client(s, "LAS-1"));
    cr_expect_eq(case_store_clients(s), 0);
    cr_expect_eq(case_store_keys(s), 0);
    cr_assert_eq(case_store_apply(s, "LAS-1", KEY, &w, &o, &reply), 0);
    cr_expect_eq(o, CASE_DELIVERED, "the key was forgotten too");
    case_store_free(s);
}

Test(mock_case, store_needs_room_for_a_key)
{
    struct case_store *s = (struct case_store *)1;
    cr_expect_eq(case_store_new(&s, 0), ERR_INVALID_INPUT);
    cr_expect_null(s);
    case_store_free(NULL);
}

/* ---- fault ranges ---- */

Test(mock_case, fault_ranges)
{
    struct mock_case_config cfg;
    const char *field = "x";
    mock_case_config_init(&cfg);
    cr_expect_eq(mock_case_faults_check(&cfg.faults, &field), 0);
    cr_expect_null(field);
    cr_expect_eq(cfg.faults.fail_status, 503);
    cr_expect_eq(cfg.seed, 1);
    cr_expect_str_eq(cfg.host, "127.0.0.1");

    struct mock_case_faults f = cfg.faults;
    f.latency_ms = MOCK_CASE_MAX_DELAY + 1;
    cr_expect_eq(mock_case_faults_check(&f, &field), ERR_INVALID_INPUT);
    cr_expect_str_eq(field, "latency_ms");
    f = cfg.faults;
    f.fail_rate = 1.5;
    cr_expect_eq(mock_case_faults_check(&f, &field), ERR_INVALID_INPUT);
    cr_expect_str_eq(field, "fail_rate");
    static const int bad_status[] = {200, 404, 422, 505, 0};
    static const int good_status[] = {408, 429, 500, 502, 504};
    for (size_t i = 0; i < 5; i++) {
        f = cfg.faults;
        f.fail_status = bad_status[i];
        cr_expect_eq(mock_case_faults_check(&f, &field), ERR_INVALID_INPUT, "%d", bad_status[i]);
        f.fail_status = good_status[i];
        cr_expect_eq(mock_case_faults_check(&f, NULL), 0, "%d", good_status[i]);
    }
}
