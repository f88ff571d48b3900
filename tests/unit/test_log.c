#include "pdstrace/log.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "pdstrace/err.h"

TestSuite(log, .timeout = 10);

/* Criterion runs each parameter in a new process image, so cases hold arrays, not
 * pointers into this one. */
struct mask_case {
    char in[16];
    char out[16];
};

ParameterizedTestParameters(log, masks_nhs_numbers)
{
    static struct mask_case cases[] = {
        {"9434765870", "*** *** 5870"},
        {"943 476 5870", "*** *** 5870"},
        {"943-476-5870", "*** *** 5870"},
        {"94347658", "***"},
        {"94347658701", "***"},
        {"94347x5870", "***"},
        {"", "***"},
    };
    return cr_make_param_array(struct mask_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct mask_case *c, log, masks_nhs_numbers)
{
    char out[LOG_MASKED_NHS_SIZE];
    log_mask_nhs(c->in, out);
    cr_assert_str_eq(out, c->out);
}

Test(log, mask_accepts_null)
{
    char out[LOG_MASKED_NHS_SIZE];
    log_mask_nhs(NULL, out);
    cr_assert_str_eq(out, "***");
}

static json_t *capture(void (*emit)(void))
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    log_set_stream(f);
    emit();
    log_set_stream(NULL);
    fclose(f);
    json_t *line = json_loads(text, 0, NULL);
    free(text);
    return line;
}

static void emit_info(void)
{
    log_event(LOG_LEVEL_INFO, "req-1", "hello", json_pack("{s:i}", "port", 8080));
}

Test(log, writes_one_json_line_with_fields)
{
    log_set_level(LOG_LEVEL_INFO);
    json_t *line = capture(emit_info);
    cr_assert_not_null(line);
    cr_assert_str_eq(json_string_value(json_object_get(line, "level")), "info");
    cr_assert_str_eq(json_string_value(json_object_get(line, "request_id")), "req-1");
    cr_assert_str_eq(json_string_value(json_object_get(line, "msg")), "hello");
    cr_assert_eq(json_integer_value(json_object_get(line, "port")), 8080);
    cr_assert_not_null(json_object_get(line, "time"));
    json_decref(line);
}

static void emit_debug(void)
{
    log_msgf(LOG_LEVEL_DEBUG, NULL, "hidden %d", 1);
}

Test(log, drops_lines_below_level)
{
    log_set_level(LOG_LEVEL_INFO);
    cr_assert_null(capture(emit_debug));
}

Test(log, parses_levels)
{
    enum log_level l;
    cr_assert_eq(log_level_parse("warn", &l), 0);
    cr_assert_eq(l, LOG_LEVEL_WARN);
    cr_assert_eq(log_level_parse("loud", &l), ERR_INVALID_INPUT);
}

Test(log, buffered_lines_wait_for_the_flush)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    log_set_stream(f);
    log_set_level(LOG_LEVEL_INFO);
    log_set_buffered(1);
    log_msgf(LOG_LEVEL_INFO, NULL, "one");
    log_msgf(LOG_LEVEL_INFO, NULL, "two");
    fflush(f);
    cr_assert_eq(len, 0, "written before the flush");
    log_flush();
    fflush(f);
    cr_assert(strstr(text, "\"msg\":\"one\"") < strstr(text, "\"msg\":\"two\""));
    log_set_buffered(0);
    log_msgf(LOG_LEVEL_INFO, NULL, "three");
    fflush(f);
    cr_assert(strstr(text, "\"msg\":\"three\"") != NULL, "unbuffered line held back");
    log_set_stream(NULL);
    fclose(f);
    free(text);
}

static void emit_awkward(void)
{
    log_event(LOG_LEVEL_WARN, "id \"7\"", "a \"quoted\"\\ line\nwith\tcontrols",
              json_pack("{s:s}", "field", "v"));
}

Test(log, escapes_what_it_writes)
{
    log_set_level(LOG_LEVEL_INFO);
    json_t *line = capture(emit_awkward);
    cr_assert_not_null(line, "not JSON");
    cr_assert_str_eq(json_string_value(json_object_get(line, "msg")),
                     "a \"quoted\"\\ line\nwith\tcontrols");
    cr_assert_str_eq(json_string_value(json_object_get(line, "request_id")), "id \"7\"");
    cr_assert_str_eq(json_string_value(json_object_get(line, "field")), "v");
    json_decref(line);
}

static void emit_fields(void)
{
    const struct log_field f[] = {{"who", "case-\"system\"", 0}, {"steps", NULL, 3}};
    log_fields(LOG_LEVEL_INFO, "r-1", "audit", f, 2);
}

Test(log, fields_lines_are_json_with_strings_and_numbers)
{
    log_set_level(LOG_LEVEL_INFO);
    json_t *line = capture(emit_fields);
    cr_assert_not_null(line, "not JSON");
    cr_assert_str_eq(json_string_value(json_object_get(line, "msg")), "audit");
    cr_assert_str_eq(json_string_value(json_object_get(line, "who")), "case-\"system\"");
    cr_assert_eq(json_integer_value(json_object_get(line, "steps")), 3);
    json_decref(line);
}
