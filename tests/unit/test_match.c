#include "pdstrace/match.h"

#include <criterion/criterion.h>
#include <string.h>

#include "pdstrace/err.h"

TestSuite(match, .timeout = 10);

Test(match, bands_of_design)
{
    struct match_bands b = {0.95, 0.85};
    cr_assert_eq(match_decide(1.0, &b), TRACE_MATCHED);
    cr_assert_eq(match_decide(0.95, &b), TRACE_MATCHED);
    cr_assert_eq(match_decide(0.9499, &b), TRACE_POTENTIAL_MATCH);
    cr_assert_eq(match_decide(0.85, &b), TRACE_POTENTIAL_MATCH);
    cr_assert_eq(match_decide(0.8499, &b), TRACE_NO_MATCH);
}

Test(match, result_round_trips_through_json)
{
    struct trace_result r = {.outcome = TRACE_MATCHED,
                             .score = 0.97,
                             .restricted = true,
                             .source = TRACE_SOURCE_PDS,
                             .steps = 3};
    memcpy(r.nhs_number, "9000000009", 11);
    memcpy(r.superseded_from, "9000000017", 11);
    json_t *j = trace_result_to_json(&r);
    struct trace_result back;
    cr_assert_eq(trace_result_from_json(j, &back), 0);
    cr_assert_eq(back.outcome, TRACE_MATCHED);
    cr_assert_str_eq(back.nhs_number, "9000000009");
    cr_assert_str_eq(back.superseded_from, "9000000017");
    cr_assert_float_eq(back.score, 0.97, 1e-12);
    cr_assert(back.restricted);
    cr_assert_eq(back.steps, 3);
    json_decref(j);
}

Test(match, no_match_serialises_nulls)
{
    struct trace_result r = {.outcome = TRACE_NO_MATCH, .score = -1, .steps = 5};
    json_t *j = trace_result_to_json(&r);
    cr_assert(json_is_null(json_object_get(j, "nhs_number")));
    cr_assert(json_is_null(json_object_get(j, "score")));
    cr_assert(json_is_null(json_object_get(j, "superseded_from")));
    cr_assert_str_eq(json_string_value(json_object_get(j, "outcome")), "no_match");
    struct trace_result back;
    cr_assert_eq(trace_result_from_json(j, &back), 0);
    cr_assert_lt(back.score, 0);
    json_decref(j);
}

Test(match, rejects_damaged_values)
{
    static const char *const bad[] = {
        "{}",
        "{\"outcome\":\"found\",\"restricted\":false,\"steps\":1}",
        "{\"outcome\":\"matched\",\"nhs_number\":\"9000000000\",\"restricted\":false,"
        "\"steps\":1}",
        "{\"outcome\":\"matched\",\"nhs_number\":\"9000000009\",\"restricted\":\"no\","
        "\"steps\":1}",
        "{\"outcome\":\"matched\",\"score\":\"high\",\"restricted\":false,\"steps\":1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = json_loads(bad[i], 0, NULL);
        struct trace_result r;
        cr_assert_eq(trace_result_from_json(j, &r), ERR_PARSE, "case %zu", i);
        json_decref(j);
    }
}
