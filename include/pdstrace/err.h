#ifndef PDS_CORE_ERR_H
#define PDS_CORE_ERR_H

/* One error convention (CONVENTIONS.md §2.2): functions that can fail return 0 or a
 * negative code. libuv's codes (negative errno values) pass through unchanged; ours sit
 * far below them so the two ranges never meet. */
enum err_code {
    ERR_BASE = -20000,
    ERR_INVALID_INPUT,          /* a caller's value is wrong: 400 */
    ERR_NOT_FOUND,              /* 404 */
    ERR_AMBIGUOUS,              /* more than one candidate */
    ERR_OBJECTION,              /* the person objected to the use of their number */
    ERR_UPSTREAM,               /* PDS / case system failed or could not be reached: 503 */
    ERR_UPSTREAM_TIMEOUT,       /* an upstream (Redis, PDS, case system) did not answer in time */
    ERR_UPSTREAM_REJECTED,      /* an upstream answered 4xx to our request: 502 */
    ERR_UPSTREAM_TLS,           /* the upstream's certificate was not trusted, or ours refused:
                                   not transient, so never retried: 503 */
    ERR_RATE_LIMITED,           /* 429 */
    ERR_UNAVAILABLE,            /* a dependency is down (Redis closed): 503 */
    ERR_TOO_LARGE,              /* a bounded buffer or body limit was exceeded: 413 */
    ERR_UNAUTHORISED,           /* 401 */
    ERR_FORBIDDEN,              /* 403 */
    ERR_PARSE,                  /* malformed data from a peer */
    ERR_CONFIG,                 /* a bad setting */
    ERR_INTERNAL,               /* a bug or an impossible state: 500 */
    ERR_OBJECTIONS_UNAVAILABLE, /* the objection registry could not be confirmed current,
                                   so no number may be given or written: 503 */
    ERR_LAST
};

/* Stable machine name of a code ("ERR_UPSTREAM", or libuv's "ECONNREFUSED"). */
const char *err_name(int code);

/* Human-readable text for a code; never NULL. */
const char *err_str(int code);

/* The only place where codes become HTTP statuses (500 for anything unknown). */
int err_http_status(int code);

/* The API error code of DESIGN.md §3 for a code ("pds_unavailable", "internal", ...). */
const char *err_api_code(int code);

#endif
