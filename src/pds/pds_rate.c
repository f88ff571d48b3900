#include "pdstrace/pds_rate.h"

#include <hiredis/hiredis.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "pdstrace/crypto.h"
#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/redis_conn.h"

/* The shared limiter (docs/internals/pds_client.md, "The shared limiter"). */

#define MAX_PREFIX_LEN 200
#define KEY_SUFFIX     "pds:rate"
#define SHA1_LEN       20
/* A next free slot further ahead than this was never handed out by the script (a trace
 * reserves at most PDS_RATE_TRACE_AHEAD_MS ahead): Redis' clock has stepped back, and the
 * slot starts again from now rather than stall every instance until the clock catches up. */
#define CLAMP_US (2ull * PDS_RATE_TRACE_AHEAD_MS * 1000ull)
/* The key outlives the last slot it holds by this long, then goes: a slot in the past
 * means the same as no key. */
#define LINGER_MS 1000

/* KEYS: the next free slot, in microseconds on the server's clock (TIME, so that the
 * instances' own clocks do not matter). ARGV: the interval, how far ahead of now this
 * request may reserve, beyond which a stored slot is bogus (all microseconds), and how long
 * the key outlives its slot (ms). Returns {1, wait, slot} when slot is reserved and comes
 * after wait microseconds, or {0, wait, slot} when it is out of reach: nothing is
 * reserved, ask again after wait. The number is stored with %.0f: Lua 5.1's tostring keeps
 * only 14 digits, and a time in microseconds has 16. */
static const char script[] = "local t = redis.call('TIME') "
                             "local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) "
                             "local slot = tonumber(redis.call('GET', KEYS[1]) or '') or 0 "
                             "if slot < now or slot - now > tonumber(ARGV[3]) then slot = now end "
                             "local ahead = slot - now "
                             "local reach = tonumber(ARGV[2]) "
                             "if ahead > reach then return {0, ahead - reach, slot} end "
                             "local nxt = slot + tonumber(ARGV[1]) "
                             "redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', "
                             "math.ceil((nxt - now) / 1000) + tonumber(ARGV[4])) "
                             "return {1, ahead, slot}";

/* One reservation in flight; pr is cleared when the limiter goes first (Redis answers
 * every command, later). */
struct rate_query {
    struct pds_rate *pr;
    enum pds_priority prio;
    bool eval; /* sent with the script's text: Redis did not know its SHA1 */
    pds_rate_cb *cb;
    void *arg;
};

struct pds_rate {
    struct redis_conn *redis;
    struct metrics *metrics;
    double rate;
    unsigned long long interval_us;
    char key[MAX_PREFIX_LEN + sizeof(KEY_SUFFIX)];
    char sha[2 * SHA1_LEN + 1];
    struct rate_query *query;
    bool falling_back; /* no reservation succeeded since the last failure */
};

static const struct metrics_family families[] = {
    {"pdstrace_pds_rate_fallback_total", METRICS_COUNTER,
     "PDS request slots taken from this instance's own token bucket because the rate limit "
     "shared through Redis could not be reached"},
};

uint64_t pds_rate_interval_ns(double rate)
{
    return (uint64_t)ceil(1e9 * PDS_RATE_MARGIN / rate);
}

/* EVALSHA names a script by the SHA1 of its text. Should OpenSSL fail, a name Redis never
 * knows only costs an EVAL each time. */
static void script_sha(char out[2 * SHA1_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(script, strlen(script), md, &n, EVP_sha1(), NULL) != 1 || n != SHA1_LEN) {
        memset(out, '0', 2 * SHA1_LEN);
        out[2 * SHA1_LEN] = '\0';
        return;
    }
    crypto_hex(md, n, out);
}

/* ---- falling back and coming back ---- */

/* redis_error: what Redis answered instead of the script's result (READONLY, OOM, a script
 * error), or NULL. It holds no personal data: the script sees only times and the key. */
static void fell_back(struct pds_rate *pr, int status, const char *redis_error)
{
    metrics_inc(pr->metrics, "pdstrace_pds_rate_fallback_total", NULL, 1);
    if (pr->falling_back)
        return;
    pr->falling_back = true;
    log_event(LOG_LEVEL_WARN, NULL, "pds rate limit not shared: Redis is away",
              json_pack("{s:s,s:s*,s:f}", "error", err_name(status), "redis_error", redis_error,
                        "rate", pr->rate));
}

static void came_back(struct pds_rate *pr)
{
    if (!pr->falling_back)
        return;
    pr->falling_back = false;
    log_event(LOG_LEVEL_INFO, NULL, "pds rate limit shared through Redis again",
              json_pack("{s:f}", "rate", pr->rate));
}

/* ---- the script ---- */

static bool is_noscript(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

static const char *reply_error(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : NULL;
}

static int parse(const redisReply *r, struct pds_rate_slot *slot)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return ERR_UPSTREAM;
    for (size_t i = 0; i < 3; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER || r->element[i]->integer < 0)
            return ERR_UPSTREAM;
    }
    /* The wait counts from when the answer came, a little after Redis read its clock:
     * late rather than early. */
    slot->reserved = r->element[0]->integer == 1;
    slot->at_ns = uv_hrtime() + (uint64_t)r->element[1]->integer * 1000u;
    slot->redis_us = (uint64_t)r->element[2]->integer;
    return 0;
}

static void on_reply(int status, struct redisReply *reply, void *arg);

static int send_query(struct pds_rate *pr, struct rate_query *q)
{
    unsigned long long reach =
        q->prio == PDS_PRIORITY_BULK ? pr->interval_us : PDS_RATE_TRACE_AHEAD_MS * 1000ull;
    char interval[24], ahead[24], clamp[24], linger[24];
    snprintf(interval, sizeof(interval), "%llu", pr->interval_us);
    snprintf(ahead, sizeof(ahead), "%llu", reach);
    snprintf(clamp, sizeof(clamp), "%llu", CLAMP_US);
    snprintf(linger, sizeof(linger), "%d", LINGER_MS);
    const char *argv[] = {q->eval ? "EVAL" : "EVALSHA",
                          q->eval ? script : pr->sha,
                          "1",
                          pr->key,
                          interval,
                          ahead,
                          clamp,
                          linger};
    return redis_conn_command_argv(pr->redis, on_reply, q, (int)ARRAY_SIZE(argv), argv, NULL);
}

/* Redis forgets scripts when it restarts or is told SCRIPT FLUSH: NOSCRIPT is answered
 * by sending the text once, which caches it again. */
static void on_reply(int status, struct redisReply *reply, void *arg)
{
    struct rate_query *q = arg;
    struct pds_rate *pr = q->pr;
    struct pds_rate_slot slot;
    if (pr == NULL) {
        free(q);
        return;
    }
    if (status == 0 && is_noscript(reply) && !q->eval) {
        q->eval = true;
        status = send_query(pr, q);
        if (status == 0)
            return;
    }
    /* Redis freed under us is Redis away too; UV_ECANCELED is ours to give. */
    if (status == UV_ECANCELED)
        status = ERR_UNAVAILABLE;
    if (status == 0)
        status = parse(reply, &slot);
    pds_rate_cb *cb = q->cb;
    void *cb_arg = q->arg;
    pr->query = NULL;
    free(q);
    if (status == 0)
        came_back(pr);
    else
        fell_back(pr, status, reply_error(reply));
    cb(status, status == 0 ? &slot : NULL, cb_arg);
}

/* ---- lifetime ---- */

int pds_rate_new(struct pds_rate **out, const struct pds_rate_config *cfg)
{
    const char *prefix = cfg != NULL && cfg->key_prefix != NULL ? cfg->key_prefix : "";
    if (cfg == NULL || !(cfg->rate > 0) || cfg->redis == NULL || strlen(prefix) > MAX_PREFIX_LEN)
        return ERR_CONFIG;
    int err = metrics_declare(cfg->metrics, families, ARRAY_SIZE(families));
    struct pds_rate *pr = err ? NULL : calloc(1, sizeof(*pr));
    if (pr == NULL)
        return err ? err : UV_ENOMEM;
    pr->redis = cfg->redis;
    pr->metrics = cfg->metrics;
    pr->rate = cfg->rate;
    pr->interval_us = (unsigned long long)ceil(1e6 * PDS_RATE_MARGIN / cfg->rate);
    snprintf(pr->key, sizeof(pr->key), "%s" KEY_SUFFIX, prefix);
    script_sha(pr->sha);
    *out = pr;
    return 0;
}

void pds_rate_free(struct pds_rate *pr)
{
    if (pr == NULL)
        return;
    struct rate_query *q = pr->query;
    free(pr);
    if (q == NULL)
        return;
    /* Redis answers later; on_reply then only frees q. */
    q->pr = NULL;
    q->cb(UV_ECANCELED, NULL, q->arg);
}

int pds_rate_reserve(struct pds_rate *pr, enum pds_priority prio, pds_rate_cb *cb, void *arg)
{
    if (pr->query != NULL)
        return UV_EBUSY;
    struct rate_query *q = malloc(sizeof(*q));
    int err = q != NULL ? 0 : UV_ENOMEM;
    if (q != NULL) {
        *q = (struct rate_query){.pr = pr, .prio = prio, .cb = cb, .arg = arg};
        err = send_query(pr, q);
    }
    if (err) {
        free(q);
        fell_back(pr, err, NULL);
        return err;
    }
    pr->query = q;
    return 0;
}
