#include "pdstrace/url.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "pdstrace/err.h"

TestSuite(url, .timeout = 10);

struct url_case {
    char in[32];
    int plus;
    int ok;
    char out[32];
};

ParameterizedTestParameters(url, decodes)
{
    static struct url_case cases[] = {
        {"Smith", 0, 1, "Smith"},
        {"O%27Brien", 0, 1, "O'Brien"},
        {"Zo%C3%AB", 0, 1, "Zo\xc3\xab"},
        {"%2a%2A", 0, 1, "**"},
        {"Mary+Ann", 0, 1, "Mary+Ann"},
        {"Mary+Ann", 1, 1, "Mary Ann"},
        {"LS1%206AE", 0, 1, "LS1 6AE"},
        {"bad%", 0, 0, ""},
        {"bad%4", 0, 0, ""},
        {"bad%G1", 0, 0, ""},
        {"nul%00", 0, 0, ""},
        {"", 0, 1, ""},
    };
    return cr_make_param_array(struct url_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct url_case *c, url, decodes)
{
    char s[32];
    memcpy(s, c->in, sizeof(s));
    int err = url_decode(s, c->plus);
    if (!c->ok) {
        cr_assert_eq(err, ERR_INVALID_INPUT, "%s", c->in);
        return;
    }
    cr_assert_eq(err, 0, "%s", c->in);
    cr_assert_str_eq(s, c->out);
}
