/* The request accessors of an exchange; the parsing that fills them is in http_server.c. */
#include "pdstrace/http_server.h"
#include "http_server_int.h"

#include <string.h>
#include <strings.h>

#include "pdstrace/err.h"

const char *http_exchange_method(const struct http_exchange *x)
{
    return x->method;
}

const char *http_exchange_path(const struct http_exchange *x)
{
    return buf_cstr(&x->path);
}

const char *http_exchange_query(const struct http_exchange *x)
{
    return buf_cstr(&x->query);
}

unsigned http_exchange_header_count(const struct http_exchange *x, const char *name,
                                    const char **first)
{
    const char *p = buf_cstr(&x->headers);
    unsigned n = 0;
    *first = NULL;
    if (p == NULL)
        return 0; /* no headers: and NULL + 0 is undefined, so no end pointer either */
    const char *end = p + buf_len(&x->headers);
    while (p < end) {
        const char *value = p + strlen(p) + 1;
        if (value >= end)
            break;
        if (strcasecmp(p, name) == 0 && n++ == 0)
            *first = value;
        p = value + strlen(value) + 1;
    }
    return n;
}

const char *http_exchange_header(const struct http_exchange *x, const char *name)
{
    const char *value;
    http_exchange_header_count(x, name, &value);
    return value;
}

const char *http_exchange_body(const struct http_exchange *x, size_t *len)
{
    if (len != NULL)
        *len = buf_len(&x->body);
    return buf_cstr(&x->body);
}

const char *http_exchange_request_id(const struct http_exchange *x)
{
    return x->request_id;
}

unsigned long long http_exchange_start_ns(const struct http_exchange *x)
{
    return x->start_ns;
}

void http_exchange_set_route(struct http_exchange *x, const char *route)
{
    x->route = route;
}

const char *http_exchange_route(const struct http_exchange *x)
{
    return x->route != NULL ? x->route : "unmatched";
}

void http_exchange_set_user(struct http_exchange *x, const void *user)
{
    x->user = user;
}

const void *http_exchange_user(const struct http_exchange *x)
{
    return x->user;
}

int http_exchange_is_detached(const struct http_exchange *x)
{
    return x->detached;
}

static bool is_token(const char *s)
{
    static const char seps[] = "()<>@,;:\\\"/[]?={} \t";
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || strchr(seps, *s) != NULL)
            return false;
    return true;
}

int http_exchange_add_header(struct http_exchange *x, const char *name, const char *value)
{
    if (!is_token(name) || strpbrk(value, "\r\n") != NULL)
        return ERR_INVALID_INPUT;
    return buf_appendf(&x->resp_headers, "%s: %s\r\n", name, value);
}
