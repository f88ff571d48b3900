#ifndef PDS_PDS_PDS_RATE_H
#define PDS_PDS_PDS_RATE_H

#include <stdbool.h>
#include <stdint.h>

#include "pdstrace/pds_client.h" /* enum pds_priority */

/* The PDS rate limit shared by every instance through Redis (docs/internals/pds_client.md,
 * "The shared limiter"): one Lua script, run on the Redis server's clock, hands out the
 * next free send slot ("next free slot" GCRA with no burst). Slots are PDS_RATE_MARGIN
 * times 1/rate apart; a bulk request may reserve at most one interval ahead of now, a
 * trace request up to PDS_RATE_TRACE_AHEAD_MS. The pds_client asks for one slot at a time
 * and falls back to its own token bucket whenever this says Redis is away; the limiter
 * logs the fall-back and the return and counts pdstrace_pds_rate_fallback_total. */
struct metrics;
struct pds_rate;
struct redis_conn;

/* Slots are 1 % further apart than 1/rate. PDS counts a rolling minute: were requests
 * reserved at exactly 1/rate, any request reaching PDS later than the one 300 slots after
 * it (network jitter) would make the minute hold 301. 1 % of a minute tolerates 0.6 s of
 * jitter and still uses 99 % of the budget. */
#define PDS_RATE_MARGIN 1.01

/* How far ahead of now a trace request may still reserve a slot. */
#define PDS_RATE_TRACE_AHEAD_MS 60000u

struct pds_rate_config {
    double rate;              /* requests per second, every instance together; > 0 */
    struct redis_conn *redis; /* borrowed, outlives the limiter; required */
    const char *key_prefix;   /* redis.key_prefix; the key is <prefix>pds:rate; copied; NULL
                                 means "" */
    struct metrics *metrics;  /* borrowed, outlives the limiter; NULL: none */
};

/* What a reservation came to. */
struct pds_rate_slot {
    bool reserved;     /* true: the slot at at_ns is ours; false: none was reserved (a bulk
                          request found every slot within its reach taken), ask again at at_ns */
    uint64_t at_ns;    /* uv_hrtime() of the slot or of the next try (Redis' wait added to the
                          time the answer came, so never early) */
    uint64_t redis_us; /* the slot on the Redis server's clock, microseconds since the epoch */
};

/* status 0 with slot; ERR_UNAVAILABLE, ERR_UPSTREAM_TIMEOUT or ERR_UPSTREAM when Redis went
 * away, timed out or gave an answer that is none of the script's (the caller spaces this
 * request with its local bucket); UV_ECANCELED (pds_rate_free). slot is borrowed, valid
 * until cb returns, NULL unless status is 0. */
typedef void pds_rate_cb(int status, const struct pds_rate_slot *slot, void *arg);

/* cfg is copied. Returns 0, ERR_CONFIG (rate not > 0, no redis, a key_prefix over 200
 * bytes) or UV_ENOMEM. */
int pds_rate_new(struct pds_rate **out, const struct pds_rate_config *cfg);

/* A reservation in flight completes with UV_ECANCELED, inside this call. NULL is fine, and
 * so is calling it from a pds_rate_cb. */
void pds_rate_free(struct pds_rate *pr);

/* Reserves the next slot for a request of priority prio (EVALSHA, and EVAL when Redis has
 * not cached the script). Returns 0 and calls cb exactly once, later; or returns UV_EBUSY
 * (a reservation is already in flight), or ERR_UNAVAILABLE (Redis is not connected) or
 * UV_ENOMEM, after which the caller falls back to its local bucket, and never calls cb. A
 * failure that means falling back (those two, and a status other than 0 and UV_ECANCELED
 * in cb) is logged when falling back starts and counted every time; the first success
 * after it is logged too. */
int pds_rate_reserve(struct pds_rate *pr, enum pds_priority prio, pds_rate_cb *cb, void *arg);

/* The time between two slots at rate, margin included, in nanoseconds. */
uint64_t pds_rate_interval_ns(double rate);

#endif
