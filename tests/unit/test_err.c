#include "pdstrace/err.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>
#include <uv.h>

#include "pdstrace/macros.h"

/* err_http_status/err_api_code are the one mapping from a code to an HTTP answer
 * (CONVENTIONS.md §2.2): every route answers errors through them. */
TestSuite(err, .timeout = 10);

struct mapping {
    int code;
    int status;
    char api[32];
};

ParameterizedTestParameters(err, maps_every_code)
{
    static struct mapping cases[] = {
        {ERR_INVALID_INPUT, 400, "invalid_field"},
        {ERR_NOT_FOUND, 404, "not_found"},
        {ERR_UPSTREAM, 503, "pds_unavailable"},
        {ERR_UPSTREAM_TIMEOUT, 503, "pds_unavailable"},
        {ERR_UPSTREAM_REJECTED, 502, "pds_rejected"},
        {ERR_UPSTREAM_TLS, 503, "pds_unavailable"},
        {ERR_RATE_LIMITED, 429, "rate_limited"},
        {ERR_UNAVAILABLE, 503, "store_unavailable"},
        {ERR_TOO_LARGE, 413, "payload_too_large"},
        {ERR_UNAUTHORISED, 401, "unauthorised"},
        {ERR_FORBIDDEN, 403, "forbidden"},
        {ERR_PARSE, 502, "pds_rejected"},
        {ERR_CONFIG, 500, "internal"},
        {ERR_INTERNAL, 500, "internal"},
        {ERR_OBJECTIONS_UNAVAILABLE, 503, "objections_unavailable"},
        {UV_ENOMEM, 500, "internal"},
        {UV_ETIMEDOUT, 503, "pds_unavailable"},
        {UV_ECONNREFUSED, 503, "pds_unavailable"},
        {UV_EINVAL, 500, "internal"},
    };
    return cr_make_param_array(struct mapping, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(struct mapping *m, err, maps_every_code)
{
    cr_assert_eq(err_http_status(m->code), m->status, "%s", err_name(m->code));
    cr_assert_str_eq(err_api_code(m->code), m->api, "%s", err_name(m->code));
}

/* Every code of ours has a name, a text and an API code from the list of DESIGN.md §3. */
Test(err, every_code_is_in_the_table_and_the_contract)
{
    static const char *const api[] = {
        "invalid_json", "invalid_field", "missing_field",          "unauthorised",
        "forbidden",    "not_found",     "payload_too_large",      "pds_unavailable",
        "pds_rejected", "rate_limited",  "objections_unavailable", "store_unavailable",
        "internal",
    };
    for (int c = ERR_BASE + 1; c < ERR_LAST; c++) {
        cr_assert(strncmp(err_name(c), "ERR_", 4) == 0, "code %d has no name", c);
        cr_assert_neq(err_str(c)[0], '\0');
        int s = err_http_status(c);
        cr_assert(s >= 400 && s <= 599, "%s: %d", err_name(c), s);
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(api); i++)
            known = known || strcmp(api[i], err_api_code(c)) == 0;
        cr_assert(known, "%s: %s", err_name(c), err_api_code(c));
    }
}
