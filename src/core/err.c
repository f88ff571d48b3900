#include "pdstrace/err.h"

#include <uv.h>

#include "pdstrace/macros.h"

struct err_entry {
    const char *name;
    const char *text;
    int http_status;
    const char *api_code;
};

static const struct err_entry entries[] = {
    [ERR_INVALID_INPUT - ERR_BASE] = {"ERR_INVALID_INPUT", "invalid input", 400, "invalid_field"},
    [ERR_NOT_FOUND - ERR_BASE] = {"ERR_NOT_FOUND", "not found", 404, "not_found"},
    [ERR_AMBIGUOUS - ERR_BASE] = {"ERR_AMBIGUOUS", "more than one candidate", 409, "internal"},
    [ERR_OBJECTION - ERR_BASE] = {"ERR_OBJECTION", "objection recorded", 409, "internal"},
    [ERR_UPSTREAM - ERR_BASE] = {"ERR_UPSTREAM", "upstream failed", 503, "pds_unavailable"},
    [ERR_UPSTREAM_TIMEOUT -
        ERR_BASE] = {"ERR_UPSTREAM_TIMEOUT", "upstream timed out", 503, "pds_unavailable"},
    [ERR_UPSTREAM_REJECTED -
        ERR_BASE] = {"ERR_UPSTREAM_REJECTED", "upstream rejected the request", 502, "pds_rejected"},
    [ERR_UPSTREAM_TLS - ERR_BASE] = {"ERR_UPSTREAM_TLS", "upstream TLS certificate check failed",
                                     503, "pds_unavailable"},
    [ERR_RATE_LIMITED - ERR_BASE] = {"ERR_RATE_LIMITED", "rate limited", 429, "rate_limited"},
    [ERR_UNAVAILABLE -
        ERR_BASE] = {"ERR_UNAVAILABLE", "dependency unavailable", 503, "store_unavailable"},
    [ERR_TOO_LARGE - ERR_BASE] = {"ERR_TOO_LARGE", "too large", 413, "payload_too_large"},
    [ERR_UNAUTHORISED - ERR_BASE] = {"ERR_UNAUTHORISED", "unauthorised", 401, "unauthorised"},
    [ERR_FORBIDDEN - ERR_BASE] = {"ERR_FORBIDDEN", "forbidden", 403, "forbidden"},
    [ERR_PARSE - ERR_BASE] = {"ERR_PARSE", "malformed data", 502, "pds_rejected"},
    [ERR_CONFIG - ERR_BASE] = {"ERR_CONFIG", "bad setting", 500, "internal"},
    [ERR_INTERNAL - ERR_BASE] = {"ERR_INTERNAL", "internal error", 500, "internal"},
    [ERR_OBJECTIONS_UNAVAILABLE - ERR_BASE] = {"ERR_OBJECTIONS_UNAVAILABLE",
                                               "the objection registry is not confirmed current",
                                               503, "objections_unavailable"},
};

static const struct err_entry *lookup(int code)
{
    if (code <= ERR_BASE || code >= ERR_LAST)
        return NULL;
    return &entries[code - ERR_BASE];
}

const char *err_name(int code)
{
    const struct err_entry *e = lookup(code);
    if (e != NULL)
        return e->name;
    if (code == 0)
        return "OK";
    return uv_err_name(code);
}

const char *err_str(int code)
{
    const struct err_entry *e = lookup(code);
    if (e != NULL)
        return e->text;
    if (code == 0)
        return "success";
    return uv_strerror(code);
}

int err_http_status(int code)
{
    const struct err_entry *e = lookup(code);
    if (e != NULL)
        return e->http_status;
    if (code == 0)
        return 200;
    if (code == UV_ETIMEDOUT || code == UV_ECONNREFUSED || code == UV_ECONNRESET)
        return 503;
    return 500;
}

const char *err_api_code(int code)
{
    const struct err_entry *e = lookup(code);
    if (e != NULL)
        return e->api_code;
    if (err_http_status(code) == 503)
        return "pds_unavailable";
    return "internal";
}
