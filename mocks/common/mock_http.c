#include "mock_http.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "pdstrace/err.h"
#include "pdstrace/http_server.h"
#include "pdstrace/log.h"

#define MOCK_JSON "application/json"

long long mock_wall_ms(void)
{
    return mock_wall_us() / 1000;
}

long long mock_wall_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000000 + tv.tv_usec;
}

bool mock_is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0;
}

int mock_listen(struct http_server **out, uv_loop_t *loop, const char *host, int port,
                struct router *router)
{
    struct http_server_config sc = {
        .host = host,
        .port = port,
        .max_header_bytes = 32 * 1024,
        .max_body_bytes = 64 * 1024,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
        .max_connections = 10000,
        .handler = router_dispatch,
        .handler_arg = router,
    };
    return http_server_new(out, loop, &sc);
}

void mock_close_server(struct http_server **srv)
{
    struct http_server *s = *srv;
    *srv = NULL;
    http_server_free(s);
}

void mock_respond_json(struct http_exchange *x, int status, json_t *body, size_t json_flags)
{
    char *text = body != NULL ? json_dumps(body, json_flags) : NULL;
    json_decref(body);
    if (text == NULL) {
        http_exchange_respond_error(x, 500, "internal", NULL, "out of memory");
        return;
    }
    http_exchange_respond(x, status, MOCK_JSON, text, strlen(text));
    free(text);
}

json_t *mock_body_object(struct http_exchange *x, size_t load_flags)
{
    size_t len;
    const char *text = http_exchange_body(x, &len);
    json_t *body = json_loadb(text, len, load_flags, NULL);
    if (json_is_object(body))
        return body;
    json_decref(body);
    http_exchange_respond_error(x, 400, "invalid_json", NULL, "expected a JSON object");
    return NULL;
}

int mock_add_routes(struct router *r, const struct mock_route *routes, size_t n, void *arg)
{
    int err = 0;
    for (size_t i = 0; !err && i < n; i++)
        err = router_add(r, routes[i].method, routes[i].path, NULL, routes[i].fn, arg);
    return err;
}

bool mock_stop_begin(struct mock_stop *s, mock_stopped_fn *cb, void *arg)
{
    if (s->stopping)
        return false;
    s->stopping = true;
    s->_cb = cb;
    s->_arg = arg;
    return true;
}

void mock_stop_end(struct mock_stop *s, int status, mock_close_fn *close_all, void *mock)
{
    mock_stopped_fn *cb = s->_cb;
    if (status == ERR_UPSTREAM_TIMEOUT)
        log_msgf(LOG_LEVEL_WARN, NULL, "drain deadline passed: closing the rest");
    /* Cleared first: freeing a server that is still draining comes back here, and the
     * callback runs only once. */
    s->_cb = NULL;
    close_all(mock);
    if (cb != NULL)
        cb(s->_arg);
}
