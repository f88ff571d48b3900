#include "api_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pdstrace/apikeys.h"
#include "pdstrace/err.h"

static const char *bearer_token(const struct http_exchange *x)
{
    const char *h = http_exchange_header(x, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return *h != '\0' ? h : NULL;
}

int api_guard(struct http_exchange *x, const char *role, void *arg)
{
    const struct api_context *ctx = arg;
    if (role == NULL)
        return 0;
    const char *token = bearer_token(x);
    const struct apikey *key = token != NULL ? apikeys_find(ctx->keys, token) : NULL;
    if (key == NULL) {
        http_exchange_add_header(x, "WWW-Authenticate", "Bearer");
        http_exchange_respond_err(x, ERR_UNAUTHORISED, "Authorization",
                                  "a valid API key is required: Authorization: Bearer <key>");
        return -1;
    }
    if ((key->roles & apikeys_role(role)) == 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "this API key lacks the role %s", role);
        http_exchange_respond_err(x, ERR_FORBIDDEN, NULL, msg);
        return -1;
    }
    http_exchange_set_user(x, key);
    return 0;
}

const char *api_caller(const struct http_exchange *x)
{
    const struct apikey *key = http_exchange_user(x);
    return key != NULL ? key->name : "-";
}

void api_respond_json(struct http_exchange *x, int status, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(body);
    if (text == NULL) {
        http_exchange_respond_err(x, UV_ENOMEM, NULL, NULL);
        return;
    }
    http_exchange_respond(x, status, "application/json", text, strlen(text));
    free(text);
}
