#include "pdstrace/trace_result.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/demographics.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"

TestSuite(trace_result, .timeout = 10);

static struct trace_result full(void)
{
    struct trace_result r = {.outcome = TRACE_MATCHED,
                             .score = 0.97,
                             .restricted = true,
                             .deceased = true,
                             .source = TRACE_SOURCE_PDS,
                             .steps = 3};
    memcpy(r.nhs_number, "9000000009", 11);
    memcpy(r.superseded_from, "9000000017", 11);
    return r;
}

/* Encodes r to its cached form and decodes that. */
static struct trace_result round_trip(const struct trace_result *r)
{
    struct trace_result back;
    struct buf b;
    buf_init(&b, 256);
    cr_assert_eq(trace_result_encode(r, &b), 0);
    cr_assert_eq(trace_result_decode(buf_cstr(&b), buf_len(&b), &back), 0, "%s", buf_cstr(&b));
    buf_free(&b);
    return back;
}

Test(trace_result, cached_form_round_trips)
{
    struct trace_result r = full(), back = round_trip(&r);
    cr_assert_eq(back.outcome, TRACE_MATCHED);
    cr_assert_str_eq(back.nhs_number, "9000000009");
    cr_assert_str_eq(back.superseded_from, "9000000017");
    cr_assert_float_eq(back.score, 0.97, 1e-12);
    cr_assert(back.restricted);
    cr_assert(back.deceased);
    cr_assert_eq(back.steps, 3);
}

Test(trace_result, no_match_round_trips_without_number_or_score)
{
    struct trace_result r = {.outcome = TRACE_NO_MATCH, .score = -1, .steps = 5};
    struct trace_result back = round_trip(&r);
    cr_assert_eq(back.outcome, TRACE_NO_MATCH);
    cr_assert_str_eq(back.nhs_number, "");
    cr_assert_lt(back.score, 0);
    cr_assert_eq(back.steps, 5);
}

Test(trace_result, answer_members_are_the_contract)
{
    struct trace_result r = full();
    r.score = 1.0;
    struct buf b;
    buf_init(&b, 1024);
    cr_assert_eq(buf_append_str(&b, "{"), 0);
    cr_assert_eq(trace_result_format(&r, &b), 0);
    cr_assert_eq(buf_append_str(&b, "}"), 0);
    json_error_t je;
    json_t *j = json_loads(buf_cstr(&b), 0, &je);
    cr_assert_not_null(j, "%s: %s", buf_cstr(&b), je.text);
    cr_assert_str_eq(json_string_value(json_object_get(j, "outcome")), "matched");
    cr_assert_str_eq(json_string_value(json_object_get(j, "nhs_number")), "9000000009");
    cr_assert_float_eq(json_number_value(json_object_get(j, "score")), 1.0, 1e-12);
    cr_assert(json_is_true(json_object_get(j, "restricted")));
    cr_assert_str_eq(json_string_value(json_object_get(j, "superseded_from")), "9000000017");
    cr_assert(json_is_true(json_object_get(j, "deceased")), "%s", buf_cstr(&b));
    cr_assert_str_eq(json_string_value(json_object_get(j, "source")), "pds");
    cr_assert_eq(json_integer_value(json_object_get(j, "steps")), 3);
    cr_assert(strstr(buf_cstr(&b), "\"score\":1.0") != NULL, "%s", buf_cstr(&b));
    json_decref(j);
    buf_free(&b);
}

Test(trace_result, absent_values_format_as_null_and_scores_stay_short)
{
    struct trace_result r = {.outcome = TRACE_POTENTIAL_MATCH, .score = 0.94, .steps = 1};
    memcpy(r.nhs_number, "9000000149", 11);
    struct buf b;
    buf_init(&b, 1024);
    cr_assert_eq(trace_result_format(&r, &b), 0);
    cr_assert(strstr(buf_cstr(&b), "\"superseded_from\":null") != NULL, "%s", buf_cstr(&b));
    cr_assert(strstr(buf_cstr(&b), "\"score\":0.94,") != NULL, "%s", buf_cstr(&b));
    buf_free(&b);
}

struct damaged {
    char text[96];
};

ParameterizedTestParameters(trace_result, rejects_damaged_cached_values)
{
    static struct damaged cases[] = {
        {""},
        {"1|matched|9000000009|1|0||2"},
        {"2|matched|9000000009|1|0||0|2"},
        {"4|matched|9000000009|1|0||0|0|2"},
        {"3|matched|9000000009|1|0||0|maybe|2"},
        {"3|found|9000000009|1|0||0|0|2"},
        {"3|matched|9000000000|1|0||0|0|2"},
        {"3|matched|9000000009|1.5|0||0|0|2"},
        {"3|matched|9000000009|high|0||0|0|2"},
        {"3|matched|9000000009|1|yes||0|0|2"},
        {"3|matched|9000000009|1|0||dead|0|2"},
        {"3|matched|9000000009|1|0||0|0|two"},
        {"3|matched|9000000009|1|0||0|0|2|extra"},
        {"3|matched|9000000009|1|0||0|0"},
    };
    return cr_make_param_array(struct damaged, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct damaged *c, trace_result, rejects_damaged_cached_values)
{
    struct trace_result r;
    cr_assert_eq(trace_result_decode(c->text, strlen(c->text), &r), ERR_PARSE, "%s", c->text);
}

/* Found by tests/fuzz/fuzz_cached_value: a NUL byte inside a field cut it short for the
 * checks, so "1\0junk|..." read as version 1. */
Test(trace_result, rejects_nul_bytes_in_cached_values)
{
    static const char good[] = "3|matched|9000000009|1|0||1|0|2";
    struct trace_result r;
    char v[sizeof(good)];
    cr_assert_eq(trace_result_decode(good, sizeof(good) - 1, &r), 0);
    for (size_t i = 0; i < sizeof(good) - 1; i++) {
        memcpy(v, good, sizeof(good));
        v[i] = '\0';
        cr_assert_eq(trace_result_decode(v, sizeof(good) - 1, &r), ERR_PARSE, "NUL at %zu", i);
    }
    static const char tail[] = "2\0junk|matched|9000000009|1|0||1|2";
    cr_assert_eq(trace_result_decode(tail, sizeof(tail) - 1, &r), ERR_PARSE);
}

Test(trace_result, outcome_names_parse_back)
{
    enum trace_outcome o;
    for (int i = TRACE_MATCHED; i <= TRACE_OBJECTION; i++) {
        const char *name = trace_outcome_name((enum trace_outcome)i);
        cr_assert_eq(trace_outcome_parse(name, &o), 0, "%s", name);
        cr_assert_eq((int)o, i, "%s", name);
    }
    cr_assert_str_eq(trace_outcome_name(TRACE_POTENTIAL_MATCH), "potential_match");
    cr_assert_str_eq(trace_outcome_name((enum trace_outcome)99), "unknown");
    cr_assert_eq(trace_outcome_parse("unknown", &o), ERR_INVALID_INPUT);
    cr_assert_eq(trace_outcome_parse("Matched", &o), ERR_INVALID_INPUT);
}

/* ---- what a trace's answer means for its write-back ---- */

struct plan_case {
    char case_id[16];
    int write_back; /* -1 absent */
    char held[11];  /* the number the request carried */
    enum trace_outcome outcome;
    char found[11];
    char superseded_from[11];
    enum trace_write_back want;
};

ParameterizedTestParameters(trace_result, write_back_plan)
{
    static struct plan_case cases[] = {
        /* matched with a case: queued, unless the case holds that very number */
        {"LAS-1", -1, "", TRACE_MATCHED, "9000000009", "", TRACE_WB_QUEUED},
        {"LAS-1", 1, "", TRACE_MATCHED, "9000000009", "", TRACE_WB_QUEUED},
        {"LAS-1", -1, "9000000017", TRACE_MATCHED, "9000000009", "", TRACE_WB_QUEUED},
        {"LAS-1", -1, "9000000009", TRACE_MATCHED, "9000000009", "", TRACE_WB_UNCHANGED},
        /* the held number was superseded: the new one must be written */
        {"LAS-1", -1, "9000000017", TRACE_MATCHED, "9000000009", "9000000017", TRACE_WB_QUEUED},
        /* not asked for */
        {"", -1, "", TRACE_MATCHED, "9000000009", "", TRACE_WB_NOT_REQUESTED},
        {"LAS-1", 0, "", TRACE_MATCHED, "9000000009", "", TRACE_WB_NOT_REQUESTED},
        /* a potential match is for a person to review, never written */
        {"LAS-1", -1, "", TRACE_POTENTIAL_MATCH, "9000000009", "", TRACE_WB_WITHHELD},
        {"", -1, "", TRACE_POTENTIAL_MATCH, "9000000009", "", TRACE_WB_NOT_REQUESTED},
        /* an objection is withheld, asked for or not */
        {"LAS-1", -1, "", TRACE_OBJECTION, "", "", TRACE_WB_WITHHELD},
        {"", 0, "", TRACE_OBJECTION, "", "", TRACE_WB_WITHHELD},
        /* nothing to write */
        {"LAS-1", -1, "", TRACE_NO_MATCH, "", "", TRACE_WB_NOT_REQUESTED},
        {"LAS-1", 1, "", TRACE_MULTIPLE_MATCHES, "", "", TRACE_WB_NOT_REQUESTED},
    };
    return cr_make_param_array(struct plan_case, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(struct plan_case *c, trace_result, write_back_plan)
{
    struct demographics d;
    memset(&d, 0, sizeof(d));
    memcpy(d.case_id, c->case_id, sizeof(c->case_id));
    memcpy(d.nhs_number, c->held, sizeof(c->held));
    d.write_back = c->write_back;
    struct trace_result r = {.outcome = c->outcome, .score = 1.0};
    memcpy(r.nhs_number, c->found, sizeof(c->found));
    memcpy(r.superseded_from, c->superseded_from, sizeof(c->superseded_from));
    enum trace_write_back got = trace_write_back_plan(&d, &r);
    cr_assert_eq(got, c->want, "case %s write_back %d held %s %s: %s, want %s", c->case_id,
                 c->write_back, c->held, trace_outcome_name(c->outcome), trace_write_back_name(got),
                 trace_write_back_name(c->want));
}

Test(trace_result, write_back_names)
{
    cr_assert_str_eq(trace_write_back_name(TRACE_WB_NOT_REQUESTED), "not_requested");
    cr_assert_str_eq(trace_write_back_name(TRACE_WB_QUEUED), "queued");
    cr_assert_str_eq(trace_write_back_name(TRACE_WB_WITHHELD), "withheld");
    cr_assert_str_eq(trace_write_back_name(TRACE_WB_UNCHANGED), "unchanged");
    cr_assert_str_eq(trace_write_back_name(TRACE_WB_FAILED), "failed");
    cr_assert_str_eq(trace_write_back_name((enum trace_write_back)99), "unknown");
}

/* An objection answer says nothing about the person: no number, score or flags. */
Test(trace_result, withhold_hides_everything_about_the_person)
{
    struct trace_result r = full();
    trace_result_withhold(&r);
    cr_assert_eq(r.outcome, TRACE_OBJECTION);
    cr_assert_str_eq(r.nhs_number, "");
    cr_assert_str_eq(r.superseded_from, "");
    cr_assert_lt(r.score, 0);
    cr_assert_not(r.restricted);
    cr_assert_not(r.deceased);
    cr_assert_eq(r.steps, 3, "the PDS requests made are still counted");
    struct buf b;
    buf_init(&b, 512);
    cr_assert_eq(trace_result_format(&r, &b), 0);
    cr_assert(strstr(buf_cstr(&b), "\"nhs_number\":null") != NULL, "%s", buf_cstr(&b));
    cr_assert(strstr(buf_cstr(&b), "900000") == NULL, "%s", buf_cstr(&b));
    buf_free(&b);
}
