#include "pdstrace/cache.h"

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/crypto.h"
#include "pdstrace/demographics.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/redis_conn.h"
#include "pdstrace/trace_result.h"

#define KEY_SIZE 160

struct cache {
    struct redis_conn *redis;
    struct cache_config cfg;
    char prefix[64];
    struct crypto_hmac *mac;
    unsigned char enc_key[CRYPTO_KEY_LEN];
};

/* A lookup carries its own copy of the key material, so it can complete after the cache
 * itself is gone (shutdown frees the cache before Redis cancels what is pending). */
struct cache_lookup {
    cache_get_cb *cb;
    void *arg;
    struct metrics *metrics;
    unsigned char enc_key[CRYPTO_KEY_LEN];
    char key[KEY_SIZE];
};

static const struct metrics_family families[] = {
    {"pdstrace_cache_lookups_total", METRICS_COUNTER, "cache lookups by result: hit, miss, error"},
    {"pdstrace_cache_stores_total", METRICS_COUNTER, "cache stores by result: ok, error"},
};

int cache_new(struct cache **out, struct redis_conn *redis, const void *secret, size_t secret_len,
              const struct cache_config *cfg)
{
    int err = metrics_declare(cfg->metrics, families, ARRAY_SIZE(families));
    if (err)
        return err;
    struct cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return UV_ENOMEM;
    c->redis = redis;
    c->cfg = *cfg;
    snprintf(c->prefix, sizeof(c->prefix), "%s", cfg->prefix != NULL ? cfg->prefix : "");
    c->cfg.prefix = c->prefix;
    unsigned char mac_key[CRYPTO_KEY_LEN];
    err = crypto_hkdf_sha256(NULL, 0, secret, secret_len, "pds-trace cache key v1", mac_key,
                             sizeof(mac_key));
    if (!err)
        err = crypto_hmac_new(&c->mac, mac_key, sizeof(mac_key));
    OPENSSL_cleanse(mac_key, sizeof(mac_key));
    if (!err)
        err = crypto_hkdf_sha256(NULL, 0, secret, secret_len, "pds-trace cache value v1",
                                 c->enc_key, sizeof(c->enc_key));
    if (err) {
        cache_free(c);
        return err;
    }
    *out = c;
    return 0;
}

void cache_free(struct cache *c)
{
    if (c == NULL)
        return;
    crypto_hmac_free(c->mac);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

static int make_key(struct cache *c, const struct demographics *d, char out[KEY_SIZE])
{
    struct buf canon;
    unsigned char mac[CRYPTO_SHA256_LEN];
    char hex[2 * CRYPTO_SHA256_LEN + 1];
    buf_init(&canon, 4096);
    int err = demographics_canonical(d, &canon);
    if (!err)
        err = crypto_hmac_run(c->mac, buf_cstr(&canon), buf_len(&canon), mac);
    buf_wipe(&canon);
    if (err)
        return err;
    crypto_hex(mac, sizeof(mac), hex);
    snprintf(out, KEY_SIZE, "%strace:%s", c->prefix, hex);
    return 0;
}

static int unseal(const struct cache_lookup *l, const struct redisReply *reply,
                  struct trace_result *r)
{
    struct buf plain;
    buf_init(&plain, 512);
    int err = crypto_open(l->enc_key, l->key, strlen(l->key), reply->str, reply->len, &plain);
    err = err ? err : trace_result_decode(buf_cstr(&plain), buf_len(&plain), r);
    buf_wipe(&plain);
    return err ? ERR_PARSE : 0;
}

static void on_get(int status, struct redisReply *reply, void *arg)
{
    struct cache_lookup *l = arg;
    struct trace_result r;
    if (status == 0 && reply->type == REDIS_REPLY_NIL)
        status = ERR_NOT_FOUND;
    else if (status == 0 && reply->type != REDIS_REPLY_STRING)
        status = ERR_PARSE;
    if (status == 0)
        status = unseal(l, reply, &r);
    if (status == 0) {
        r.source = TRACE_SOURCE_CACHE;
        r.steps = 0;
    }
    /* A value that does not open (another secret, tampering) is just a miss. */
    metrics_inc(l->metrics, "pdstrace_cache_lookups_total",
                status == 0               ? "result=\"hit\""
                : status == ERR_NOT_FOUND ? "result=\"miss\""
                                          : "result=\"error\"",
                1);
    l->cb(status, status == 0 ? &r : NULL, l->arg);
    OPENSSL_cleanse(l, sizeof(*l));
    free(l);
}

int cache_get(struct cache *c, const struct demographics *d, cache_get_cb *cb, void *arg)
{
    struct cache_lookup *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return UV_ENOMEM;
    l->cb = cb;
    l->arg = arg;
    l->metrics = c->cfg.metrics;
    memcpy(l->enc_key, c->enc_key, sizeof(l->enc_key));
    int err = make_key(c, d, l->key);
    if (!err)
        err = redis_conn_command(c->redis, on_get, l, "GET %s", l->key);
    if (err) {
        metrics_inc(c->cfg.metrics, "pdstrace_cache_lookups_total", "result=\"error\"", 1);
        OPENSSL_cleanse(l, sizeof(*l));
        free(l);
    }
    return err;
}

static void on_set(int status, struct redisReply *reply, void *arg)
{
    struct metrics *m = arg;
    if (status != 0 || reply->type == REDIS_REPLY_ERROR)
        metrics_inc(m, "pdstrace_cache_stores_total", "result=\"error\"", 1);
    else
        metrics_inc(m, "pdstrace_cache_stores_total", "result=\"ok\"", 1);
}

static unsigned ttl_for(const struct cache *c, enum trace_outcome o)
{
    switch (o) {
    case TRACE_MATCHED:
    case TRACE_POTENTIAL_MATCH:
        return c->cfg.ttl_s;
    case TRACE_NO_MATCH:
    case TRACE_MULTIPLE_MATCHES:
        return c->cfg.negative_ttl_s;
    default:
        return 0;
    }
}

void cache_put(struct cache *c, const struct demographics *d, const struct trace_result *r)
{
    char key[KEY_SIZE];
    unsigned ttl = ttl_for(c, r->outcome);
    if (ttl == 0 || make_key(c, d, key) != 0)
        return;
    struct buf plain, sealed;
    buf_init(&plain, 512);
    buf_init(&sealed, 1024);
    int err = trace_result_encode(r, &plain);
    err =
        err ? err
            : crypto_seal(c->enc_key, key, strlen(key), buf_cstr(&plain), buf_len(&plain), &sealed);
    /* The plaintext holds the NHS number: it goes, as on the read path. */
    buf_wipe(&plain);
    if (!err)
        err = redis_conn_command(c->redis, on_set, c->cfg.metrics, "SET %s %b EX %u", key,
                                 buf_cstr(&sealed), buf_len(&sealed), ttl);
    if (err)
        metrics_inc(c->cfg.metrics, "pdstrace_cache_stores_total", "result=\"error\"", 1);
    buf_free(&sealed);
}
