#ifndef PDS_STORE_CACHE_H
#define PDS_STORE_CACHE_H

#include <stddef.h>

/* Trace results in Redis (DESIGN.md §8): the key is an HMAC-SHA256 of the normalised
 * demographics, the value the result sealed with AES-256-GCM (the key as associated data,
 * so a value cannot be moved to another key). Both keys are derived with HKDF from the
 * secret file. Redis never sees a name, address or date of birth. The cache never fails a
 * trace: when Redis is away every lookup is a miss and every store is dropped. */
struct metrics;
struct cache;
struct redis_conn;
struct demographics;
struct trace_result;

struct cache_config {
    const char *prefix;      /* redis.key_prefix */
    unsigned ttl_s;          /* matched and potential_match; 0 stores nothing */
    unsigned negative_ttl_s; /* no_match and multiple_matches; 0 stores nothing */
    struct metrics *metrics; /* borrowed; outlives the cache and its Redis connection (a
                                lookup may complete after cache_free). NULL: none */
};

/* secret is borrowed (the derived keys are kept, not the secret); redis is borrowed and
 * must outlive the cache. cfg is copied. */
int cache_new(struct cache **out, struct redis_conn *redis, const void *secret, size_t secret_len,
              const struct cache_config *cfg);

/* NULL is fine. Lookups in flight still complete (with what Redis answers). */
void cache_free(struct cache *c);

/* status 0: hit, r filled (borrowed; valid until cb returns) with source "cache" and
 * steps 0. ERR_NOT_FOUND: miss. Other codes: Redis failed; treat as a miss. */
typedef void cache_get_cb(int status, const struct trace_result *r, void *arg);

/* Returns 0 and calls cb exactly once later, or returns <0 (Redis not connected) and never
 * calls cb. d is read during the call only. */
int cache_get(struct cache *c, const struct demographics *d, cache_get_cb *cb, void *arg);

/* Stores r for d with the TTL its outcome calls for; objections are never stored. Fire
 * and forget: failures are counted, not reported. */
void cache_put(struct cache *c, const struct demographics *d, const struct trace_result *r);

#endif
