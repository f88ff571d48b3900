#include "pdstrace/match.h"

#include <criterion/criterion.h>

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
