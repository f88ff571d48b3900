#include "pdstrace/ratelimit.h"

#include <math.h>

void ratelimit_init(struct ratelimit *rl, double rate, double burst, uint64_t now_ns)
{
    rl->rate = rate;
    rl->burst = burst < 1 ? 1 : burst;
    rl->tokens = rl->burst;
    rl->last_ns = now_ns;
}

uint64_t ratelimit_take(struct ratelimit *rl, uint64_t now_ns)
{
    if (now_ns > rl->last_ns) {
        rl->tokens += (double)(now_ns - rl->last_ns) * rl->rate / 1e9;
        if (rl->tokens > rl->burst)
            rl->tokens = rl->burst;
        rl->last_ns = now_ns;
    }
    if (rl->tokens >= 1) {
        rl->tokens -= 1;
        return 0;
    }
    /* Round up so the caller's timer never fires a hair before the token exists. */
    return (uint64_t)ceil((1 - rl->tokens) * 1e9 / rl->rate);
}
