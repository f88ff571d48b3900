#include "api_int.h"

#include <stdio.h>
#include <string.h>

#include "pdstrace/config.h"

/* GET /v1/config (role admin): the settings this instance runs with, so an operator can
 * see what the environment made of them. Only file paths of secrets appear, never their
 * contents, and the Redis URL loses any password. */
static json_t *effective_config(const struct config *c)
{
    const char *at = strchr(c->redis.url, '@');
    char redis[CONFIG_STR_MAX + 16];
    if (at != NULL)
        snprintf(redis, sizeof(redis), "redis://***%s", at);
    else
        snprintf(redis, sizeof(redis), "%s", c->redis.url);
    return json_pack("{s:s, s:s, s:s, s:{s:s}, s:{s:s, s:s, s:f, s:i, s:i, s:i, s:b}, "
                     "s:{s:f, s:f}, s:{s:i, s:i}, s:{s:s}}",
                     "version", PDS_TRACE_VERSION, "listen", c->listen, "api_keys_file",
                     c->api_keys_file, "redis", "url", redis, "pds", "base_url", c->pds.base_url,
                     "auth", c->pds.auth == CONFIG_PDS_AUTH_NONE ? "none" : "signed-jwt", "rate",
                     c->pds.rate, "concurrency", (int)c->pds.concurrency, "timeout_ms",
                     (int)c->pds.timeout_ms, "max_attempts", (int)c->pds.max_attempts, "fuzzy",
                     c->pds.fuzzy, "match", "accept_score", c->match.accept_score, "review_score",
                     c->match.review_score, "cache", "ttl_s", (int)c->cache.ttl_s, "negative_ttl_s",
                     (int)c->cache.negative_ttl_s, "case", "base_url", c->case_system.base_url);
}

static void get_config(struct http_exchange *x, const struct route_params *p, void *arg)
{
    (void)p;
    const struct api_context *ctx = arg;
    api_respond_json(x, 200, effective_config(ctx->cfg));
}

int api_admin_register(struct router *r, struct api_context *ctx)
{
    return router_add(r, "GET", "/v1/config", "admin", get_config, ctx);
}
