#include "pdstrace/unicode.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "pdstrace/macros.h"

TestSuite(unicode, .timeout = 10);

struct letter_case {
    uint32_t cp;
    bool letter;
};

ParameterizedTestParameters(unicode, letters)
{
    static struct letter_case cases[] = {
        {'A', true},      {'z', true},     {'0', false},    {'-', false},    {0xE9, true},
        {0xD7, false},    {0xA9, false},   {0x3A9, true},   {0x418, true},   {0x5D0, true},
        {0x62E, true},    {0x663, false},  {0x92A, true},   {0x966, false},  {0xE01, true},
        {0xE3F, false},   {0x10D0, true},  {0xAC00, true},  {0x3042, true},  {0x30FB, false},
        {0x738B, true},   {0x20AC, false}, {0x2122, false}, {0x2022, false}, {0xE000, false},
        {0x1F600, false}, {0x301, true},   {0x20000, true},
    };
    return cr_make_param_array(struct letter_case, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(struct letter_case *c, unicode, letters)
{
    cr_assert_eq(unicode_is_letter(c->cp), c->letter, "U+%04X", (unsigned)c->cp);
}
