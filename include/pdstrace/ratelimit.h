#ifndef PDS_TRACE_RATELIMIT_H
#define PDS_TRACE_RATELIMIT_H

#include <stdint.h>

/* A token bucket, pure arithmetic over a clock the caller passes in (uv_hrtime() in the
 * service, made-up times in tests). With burst 1 no two requests are ever closer than
 * 1/rate seconds, which is what PDS's rolling-minute limit needs. */
struct ratelimit {
    double rate;  /* tokens per second */
    double burst; /* bucket size, >= 1 */
    double tokens;
    uint64_t last_ns;
};

/* Starts with a full bucket at now_ns. */
void ratelimit_init(struct ratelimit *rl, double rate, double burst, uint64_t now_ns);

/* Takes one token at now_ns and returns 0, or returns the nanoseconds until one will be
 * there (nothing taken). */
uint64_t ratelimit_take(struct ratelimit *rl, uint64_t now_ns);

#endif
