#include "pdstrace/buf.h"

#include <criterion/criterion.h>
#include <string.h>

#include "pdstrace/err.h"

TestSuite(buf, .timeout = 10);

Test(buf, appends_and_terminates)
{
    struct buf b;
    buf_init(&b, 100);
    cr_assert_str_eq(buf_cstr(&b), "");
    cr_assert_eq(buf_append_str(&b, "hello"), 0);
    cr_assert_eq(buf_appendf(&b, " %d", 42), 0);
    cr_assert_str_eq(buf_cstr(&b), "hello 42");
    cr_assert_eq(buf_len(&b), 8);
    buf_free(&b);
}

Test(buf, refuses_past_ceiling_and_keeps_contents)
{
    struct buf b;
    buf_init(&b, 8);
    cr_assert_eq(buf_append_str(&b, "12345678"), 0);
    cr_assert_eq(buf_append_str(&b, "9"), ERR_TOO_LARGE);
    cr_assert_eq(buf_appendf(&b, "%s", "x"), ERR_TOO_LARGE);
    cr_assert_str_eq(buf_cstr(&b), "12345678");
    buf_free(&b);
}

Test(buf, grows_across_many_appends)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(buf_append(&b, "ab", 2), 0);
    cr_assert_eq(buf_len(&b), 20000);
    cr_assert_eq(strlen(buf_cstr(&b)), 20000);
    char *p = buf_steal(&b);
    cr_assert_eq(buf_len(&b), 0);
    cr_assert_str_eq(buf_cstr(&b), "");
    free(p);
}

Test(buf, reset_keeps_memory)
{
    struct buf b;
    buf_init(&b, 100);
    cr_assert_eq(buf_append_str(&b, "abc"), 0);
    buf_reset(&b);
    cr_assert_str_eq(buf_cstr(&b), "");
    cr_assert_not_null(buf_cstr(&b));
    buf_free(&b);
}
