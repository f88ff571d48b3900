#include "pdstrace/nhs_number.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "pdstrace/err.h"
#include "pdstrace/macros.h"

TestSuite(nhs_number, .timeout = 10);

/* Inline arrays only: criterion re-executes the binary per test (PIE), so pointers to
 * string literals would not survive. */
struct nhs_case {
    char in[32];
    char want[11]; /* "" when the input must be refused */
};

ParameterizedTestParameters(nhs_number, normalises)
{
    static struct nhs_case cases[] = {
        {"9000000009", "9000000009"},
        {"9000000017", "9000000017"},
        {"9000000025", "9000000025"},
        {"9000000033", "9000000033"},
        {"9434765870", "9434765870"},
        {"943 476 5870", "9434765870"},
        {"943-476-5870", "9434765870"},
        {" 943 476 5870 ", "9434765870"},
        {"943  476--5870", "9434765870"},
        {"9000000300", "9000000300"},
        {"9000000000", ""},
        {"9000000015", ""},
        {"943476587", ""},
        {"94347658701", ""},
        {"943476587a", ""},
        {"", ""},
        {"  -  ", ""},
        {"943.476.5870", ""},
        {"+449434765870", ""},
        {"943\t476\t5870", ""},
        {"9434765871", ""},
        {"9434765870x", ""},
    };
    return cr_make_param_array(struct nhs_case, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(struct nhs_case *c, nhs_number, normalises, .timeout = 10)
{
    char out[11] = "junk";
    int err = nhs_number_normalise(c->in, out);

    if (c->want[0] == '\0') {
        cr_assert_eq(err, ERR_INVALID_INPUT, "accepted case \"%s\"", c->in);
        cr_assert_str_eq(out, "");
    } else {
        cr_assert_eq(err, 0, "refused case \"%s\"", c->in);
        cr_assert_str_eq(out, c->want);
    }
}

struct check_case {
    char first9[10];
    int want;
};

/* 9000000050..9 can never be valid: the sum is 100, 100 mod 11 = 1, so the check is 10.
 * 900000030 sums to 99, a multiple of 11, so 11 maps to check digit 0. */
ParameterizedTestParameters(nhs_number, check_digit)
{
    static struct check_case cases[] = {
        {"900000000", 9}, {"900000001", 7},  {"900000002", 5}, {"900000003", 3},  {"943476587", 0},
        {"900000030", 0}, {"900000005", -1}, {"90000000", -1}, {"90000000x", -1},
    };
    return cr_make_param_array(struct check_case, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(struct check_case *c, nhs_number, check_digit, .timeout = 10)
{
    cr_assert_eq(nhs_number_check_digit(c->first9), c->want, "case %s", c->first9);
}

Test(nhs_number, check_digit_agrees_with_is_valid)
{
    /* Over a run of prefixes, exactly the one minted ending is valid, or none at all when
     * the modulus gives 10; this ties the two functions together. */
    for (int prefix = 900000000; prefix < 900002000; prefix++) {
        char num[11];
        int check, valid = 0;
        for (int i = 8, v = prefix; i >= 0; i--, v /= 10)
            num[i] = (char)('0' + v % 10);
        num[10] = '\0';
        check = nhs_number_check_digit(num);
        for (int d = 0; d <= 9; d++) {
            num[9] = (char)('0' + d);
            if (nhs_number_is_valid(num)) {
                valid++;
                cr_assert_eq(d, check);
            }
        }
        cr_assert_eq(valid, check < 0 ? 0 : 1, "prefix %d", prefix);
    }
}

Test(nhs_number, is_valid_wants_exactly_ten_digits)
{
    cr_assert(nhs_number_is_valid("9434765870"));
    cr_assert_not(nhs_number_is_valid("943 476 5870"));
    cr_assert_not(nhs_number_is_valid("94347658700"));
    cr_assert_not(nhs_number_is_valid("943476587"));
    cr_assert_not(nhs_number_is_valid(""));
    cr_assert_not(nhs_number_is_valid(NULL));
    cr_assert_eq(nhs_number_normalise(NULL, (char[11]){0}), ERR_INVALID_INPUT);
}

Test(nhs_number, formats_for_display)
{
    char out[13];

    nhs_number_format("9434765870", out);
    cr_assert_str_eq(out, "943 476 5870");
    nhs_number_format("9000000009", out);
    cr_assert_str_eq(out, "900 000 0009");
    nhs_number_format("943476587", out);
    cr_assert_str_eq(out, "");
    nhs_number_format("94347658700", out);
    cr_assert_str_eq(out, "");
    nhs_number_format("943 476 58", out);
    cr_assert_str_eq(out, "");
}
