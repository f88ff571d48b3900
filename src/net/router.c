#include "pdstrace/router.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/url.h"

/* Paths with more segments than this match no route (every route is far shorter). */
#define ROUTER_MAX_SEGS 32
#define ALLOW_MAX       256

struct route {
    const char *method;
    const char *pattern;
    const char *role;
    route_handler_fn *fn;
    void *arg;
    bool stream; /* dispatched at its headers; the handler reads the body itself */
    unsigned nsegs;
    char *segs[ROUTER_MAX_SEGS]; /* owned copies; "{name}" segments hold the bare name */
    bool is_param[ROUTER_MAX_SEGS];
};

struct router {
    struct route *routes;
    size_t count;
    size_t cap;
    router_guard_fn *guard;
    void *guard_arg;
};

enum match { MATCH_NO, MATCH_YES, MATCH_BAD_ENCODING };

/* A split path: segs point into a private copy of the path. */
struct split_path {
    char *copy;
    unsigned nsegs;
    char *segs[ROUTER_MAX_SEGS];
};

int router_new(struct router **out)
{
    *out = calloc(1, sizeof(**out));
    return *out != NULL ? 0 : UV_ENOMEM;
}

static void route_free(struct route *rt)
{
    for (unsigned i = 0; i < rt->nsegs; i++)
        free(rt->segs[i]);
}

void router_free(struct router *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->count; i++)
        route_free(&r->routes[i]);
    free(r->routes);
    free(r);
}

void router_set_guard(struct router *r, router_guard_fn *fn, void *arg)
{
    r->guard = fn;
    r->guard_arg = arg;
}

const char *route_param(const struct route_params *p, const char *name)
{
    for (unsigned i = 0; i < p->count; i++)
        if (strcmp(p->names[i], name) == 0)
            return p->values[i];
    return NULL;
}

/* Splits "/a/b" into "a","b" in place; "/" gives one empty segment. */
static int split(char *path, char **segs, unsigned *nsegs)
{
    if (path[0] != '/')
        return ERR_INVALID_INPUT;
    unsigned n = 0;
    char *p = path + 1;
    for (;;) {
        if (n == ROUTER_MAX_SEGS)
            return ERR_TOO_LARGE;
        segs[n++] = p;
        char *slash = strchr(p, '/');
        if (slash == NULL)
            break;
        *slash = '\0';
        p = slash + 1;
    }
    *nsegs = n;
    return 0;
}

/* Turns a pattern segment into a literal or a parameter name. */
static int parse_segment(struct route *rt, unsigned i, const char *seg)
{
    size_t n = strlen(seg);
    bool param = n >= 2 && seg[0] == '{' && seg[n - 1] == '}';
    const char *start = param ? seg + 1 : seg;
    size_t len = param ? n - 2 : n;
    if (param && len == 0)
        return ERR_INVALID_INPUT;
    if (memchr(start, '{', len) != NULL || memchr(start, '}', len) != NULL)
        return ERR_INVALID_INPUT;
    rt->segs[i] = strndup(start, len);
    if (rt->segs[i] == NULL)
        return UV_ENOMEM;
    rt->is_param[i] = param;
    return 0;
}

static int count_params(const struct route *rt)
{
    unsigned n = 0;
    for (unsigned i = 0; i < rt->nsegs; i++)
        n += rt->is_param[i];
    return n > ROUTER_MAX_PARAMS ? ERR_INVALID_INPUT : 0;
}

static int compile(struct route *rt, const char *pattern)
{
    char *copy = strdup(pattern);
    char *segs[ROUTER_MAX_SEGS];
    unsigned n = 0;
    if (copy == NULL)
        return UV_ENOMEM;
    int err = split(copy, segs, &n);
    if (err == ERR_TOO_LARGE)
        err = ERR_INVALID_INPUT;
    for (unsigned i = 0; !err && i < n; i++) {
        err = parse_segment(rt, i, segs[i]);
        if (!err)
            rt->nsegs = i + 1;
    }
    if (!err)
        err = count_params(rt);
    free(copy);
    return err;
}

static int grow(struct router *r)
{
    if (r->count < r->cap)
        return 0;
    size_t cap = r->cap ? r->cap * 2 : 8;
    struct route *p = realloc(r->routes, cap * sizeof(*p));
    if (p == NULL)
        return UV_ENOMEM;
    r->routes = p;
    r->cap = cap;
    return 0;
}

static int add(struct router *r, const char *method, const char *pattern, const char *role,
               route_handler_fn *fn, void *arg, bool stream)
{
    if (method == NULL || method[0] == '\0' || pattern == NULL || fn == NULL)
        return ERR_INVALID_INPUT;
    int err = grow(r);
    if (err)
        return err;
    struct route *rt = &r->routes[r->count];
    memset(rt, 0, sizeof(*rt));
    err = compile(rt, pattern);
    if (err) {
        route_free(rt);
        return err;
    }
    rt->method = method;
    rt->pattern = pattern;
    rt->role = role;
    rt->fn = fn;
    rt->arg = arg;
    rt->stream = stream;
    r->count++;
    return 0;
}

int router_add(struct router *r, const char *method, const char *pattern, const char *role,
               route_handler_fn *fn, void *arg)
{
    return add(r, method, pattern, role, fn, arg, false);
}

int router_add_stream(struct router *r, const char *method, const char *pattern, const char *role,
                      route_handler_fn *fn, void *arg)
{
    return add(r, method, pattern, role, fn, arg, true);
}

/* Percent-decodes s into a new string. NULL for a malformed escape or an encoded NUL. */
static char *decode(const char *s)
{
    char *out = strdup(s);
    if (out != NULL && url_decode(out, false) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static void params_free(struct route_params *p)
{
    for (unsigned i = 0; i < p->count; i++)
        free(p->values[i]);
    p->count = 0;
}

static enum match match_route(const struct route *rt, const struct split_path *sp,
                              struct route_params *params)
{
    params->count = 0;
    if (rt->nsegs != sp->nsegs)
        return MATCH_NO;
    for (unsigned i = 0; i < rt->nsegs; i++) {
        if (!rt->is_param[i] && strcmp(rt->segs[i], sp->segs[i]) != 0)
            return MATCH_NO;
        if (rt->is_param[i] && sp->segs[i][0] == '\0')
            return MATCH_NO;
    }
    for (unsigned i = 0; i < rt->nsegs; i++) {
        if (!rt->is_param[i])
            continue;
        char *v = decode(sp->segs[i]);
        if (v == NULL) {
            params_free(params);
            return MATCH_BAD_ENCODING;
        }
        params->names[params->count] = rt->segs[i];
        params->values[params->count++] = v;
    }
    return MATCH_YES;
}

static bool method_matches(const struct route *rt, const char *method)
{
    if (strcmp(rt->method, method) == 0)
        return true;
    /* HEAD is answered by GET routes; the server leaves out the body. */
    return strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0;
}

/* Adds method to the Allow list unless it is there. Returns 0 or a buf error. */
static int add_allow(struct buf *allow, const char *method)
{
    const char *p = buf_cstr(allow);
    size_t n = strlen(method);
    while ((p = strstr(p, method)) != NULL) {
        bool start = p == buf_cstr(allow) || p[-1] == ' ';
        if (start && (p[n] == ',' || p[n] == '\0'))
            return 0;
        p += n;
    }
    int err = buf_len(allow) > 0 ? buf_append_str(allow, ", ") : 0;
    return err ? err : buf_append_str(allow, method);
}

static void run_route(struct router *r, const struct route *rt, struct http_exchange *x,
                      struct route_params *params)
{
    http_exchange_set_route(x, rt->pattern);
    if (r->guard != NULL && r->guard(x, rt->role, r->guard_arg) != 0)
        return;
    rt->fn(x, params, rt->arg);
}

static void respond_unmatched(struct http_exchange *x, const struct buf *allow, bool bad)
{
    if (bad) {
        http_exchange_respond_error(x, 400, "invalid_field", "path",
                                    "malformed percent-encoding in path");
    } else if (buf_len(allow) > 0) {
        http_exchange_add_header(x, "Allow", buf_cstr(allow));
        http_exchange_respond_error(x, 405, "invalid_field", "method", "method not allowed");
    } else {
        http_exchange_respond_err(x, ERR_NOT_FOUND, NULL, "no such resource");
    }
}

/* Tries every route; a match with the right method wins, others only collect Allow. A
 * failure to collect Allow (out of memory) ends the search with *err set. */
static const struct route *find(struct router *r, const char *method, const struct split_path *sp,
                                struct route_params *params, struct buf *allow, bool *bad, int *err)
{
    for (size_t i = 0; i < r->count; i++) {
        const struct route *rt = &r->routes[i];
        enum match m = match_route(rt, sp, params);
        if (m == MATCH_BAD_ENCODING)
            *bad = true;
        if (m != MATCH_YES)
            continue;
        if (method_matches(rt, method))
            return rt;
        params_free(params);
        *err = add_allow(allow, rt->method);
        if (*err)
            break;
    }
    return NULL;
}

/* The same search as router_dispatch, so that the route claimed here is the one that
 * runs: the first whose segments and method match. */
int router_head(const struct http_exchange *x, void *router)
{
    struct router *r = router;
    struct split_path sp = {.copy = strdup(http_exchange_path(x))};
    struct route_params params = {0};
    struct buf allow;
    bool bad = false;
    int err = 0;
    const struct route *rt = NULL;
    buf_init(&allow, ALLOW_MAX);
    if (sp.copy != NULL && split(sp.copy, sp.segs, &sp.nsegs) == 0)
        rt = find(r, http_exchange_method(x), &sp, &params, &allow, &bad, &err);
    params_free(&params);
    buf_free(&allow);
    free(sp.copy);
    return rt != NULL && rt->stream;
}

void router_dispatch(struct http_exchange *x, void *router)
{
    struct router *r = router;
    struct split_path sp = {.copy = strdup(http_exchange_path(x))};
    struct route_params params = {0};
    struct buf allow;
    bool bad = false;
    buf_init(&allow, ALLOW_MAX);
    if (sp.copy == NULL) {
        http_exchange_respond_err(x, UV_ENOMEM, NULL, NULL);
        return;
    }
    const struct route *rt = NULL;
    int err = 0;
    if (split(sp.copy, sp.segs, &sp.nsegs) == 0)
        rt = find(r, http_exchange_method(x), &sp, &params, &allow, &bad, &err);
    if (rt != NULL)
        run_route(r, rt, x, &params);
    else if (err)
        http_exchange_respond_err(x, err, NULL, NULL);
    else
        respond_unmatched(x, &allow, bad);
    params_free(&params);
    buf_free(&allow);
    free(sp.copy);
}
