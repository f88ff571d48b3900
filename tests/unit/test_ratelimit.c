#include "pdstrace/ratelimit.h"

#include <criterion/criterion.h>

TestSuite(ratelimit, .timeout = 10);

#define SEC 1000000000ULL

Test(ratelimit, burst_one_spaces_requests_by_one_over_rate)
{
    struct ratelimit rl;
    ratelimit_init(&rl, 5, 1, 0);
    cr_assert_eq(ratelimit_take(&rl, 0), 0);
    uint64_t wait = ratelimit_take(&rl, 0);
    cr_assert(wait >= SEC / 5 - 1 && wait <= SEC / 5 + 1, "wait %llu", (unsigned long long)wait);
    cr_assert_neq(ratelimit_take(&rl, SEC / 10), 0);
    cr_assert_eq(ratelimit_take(&rl, SEC / 5), 0);
}

Test(ratelimit, never_more_than_rate_over_a_long_run)
{
    struct ratelimit rl;
    ratelimit_init(&rl, 5, 1, 0);
    unsigned granted = 0;
    /* Ask every millisecond for 60 s: a rolling minute allows at most 300 (+1 at t=0). */
    for (uint64_t t = 0; t < 60 * SEC; t += SEC / 1000)
        granted += ratelimit_take(&rl, t) == 0;
    cr_assert(granted <= 301 && granted >= 299, "granted %u", granted);
}

Test(ratelimit, idle_time_does_not_build_a_burst)
{
    struct ratelimit rl;
    ratelimit_init(&rl, 5, 1, 0);
    ratelimit_take(&rl, 0);
    cr_assert_eq(ratelimit_take(&rl, 100 * SEC), 0);
    cr_assert_neq(ratelimit_take(&rl, 100 * SEC), 0);
}

Test(ratelimit, clock_going_backwards_is_harmless)
{
    struct ratelimit rl;
    ratelimit_init(&rl, 10, 1, 5 * SEC);
    cr_assert_eq(ratelimit_take(&rl, 5 * SEC), 0);
    cr_assert_neq(ratelimit_take(&rl, 4 * SEC), 0);
}
