#include "pdstrace/url.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"

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

/* ---- query encoding (url_query_append) ---- */

struct enc_case {
    char name[24];
    char value[48];
    char want[128];
};

ParameterizedTestParameters(url, query_append_encodes_values)
{
    static struct enc_case cases[] = {
        {"family", "Smith", "family=Smith"},
        {"family", "Smi*", "family=Smi%2A"},
        {"family", "O'Brien", "family=O%27Brien"},
        {"given", "Mary Ann", "given=Mary%20Ann"},
        {"family", "Ren\xc3\xa9", "family=Ren%C3%A9"},
        {"birthdate", "eq2010-10-22", "birthdate=eq2010-10-22"},
        {"address-postalcode", "LS1 6AE", "address-postalcode=LS1%206AE"},
        {"family", "a&b=c+d/e?f#g%", "family=a%26b%3Dc%2Bd%2Fe%3Ff%23g%25"},
        {"x", "-._~", "x=-._~"},
        {"x", "", "x="},
    };
    return cr_make_param_array(struct enc_case, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(struct enc_case *c, url, query_append_encodes_values)
{
    struct buf q;
    buf_init(&q, 1024);
    cr_assert_eq(url_query_append(&q, c->name, c->value), 0);
    cr_assert_str_eq(buf_cstr(&q), c->want);
    buf_free(&q);
}

Test(url, query_append_joins_with_ampersand_and_keeps_buffer_on_overflow)
{
    struct buf q;
    buf_init(&q, 40);
    cr_assert_eq(url_query_append(&q, "family", "Smith"), 0);
    cr_assert_eq(url_query_append(&q, "given", "Jane"), 0);
    cr_assert_str_eq(buf_cstr(&q), "family=Smith&given=Jane");
    cr_assert_eq(url_query_append(&q, "address-postalcode", "LS1 6AE"), ERR_TOO_LARGE);
    cr_assert_str_eq(buf_cstr(&q), "family=Smith&given=Jane");
    cr_assert_eq(buf_len(&q), strlen("family=Smith&given=Jane"));
    buf_free(&q);
}
