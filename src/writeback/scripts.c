#include "writeback_int.h"

/* The Lua scripts of the queue. Each runs atomically in Redis, so an entry is always in
 * exactly one place: the stream (pending in the group or not yet read), the delayed set
 * with its hash, or the dead letters; and the pending zset lists it until it is
 * delivered, dropped or dead. Values in the entry JSON are strings, so that Lua passes
 * them through unchanged. Redis 7 replicates scripts by their effects, so XADD with an
 * automatic id is allowed in them. */

/* Appends the entry table e to stream s. */
#define ADD                                                                                        \
    "local function add(s, e) "                                                                    \
    "return redis.call('XADD', s, '*', 'trace_id', e.trace_id, 'case_id', e.case_id, "             \
    "'sealed', e.sealed, 'score', e.score, 'traced_at', e.traced_at, "                             \
    "'enqueued_at', e.enqueued_at, 'attempts', e.attempts) end "

/* KEYS stream, pending; ARGV trace_id, case_id, sealed, score, traced_at, enqueued_at. */
const char wb_script_enqueue[] =
    ADD "add(KEYS[1], {trace_id=ARGV[1], case_id=ARGV[2], sealed=ARGV[3], score=ARGV[4], "
        "traced_at=ARGV[5], enqueued_at=ARGV[6], attempts='0'}) "
        "redis.call('ZADD', KEYS[2], 'NX', ARGV[6], ARGV[1]) "
        "return 1";

/* Delivered or withheld: gone everywhere, a copy waiting for a retry included (another
 * instance may have reclaimed and deferred it meanwhile).
 * KEYS stream, pending, delayed, entries; ARGV group, id, trace_id. */
const char wb_script_ack[] = "redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) "
                             "redis.call('XDEL', KEYS[1], ARGV[2]) "
                             "redis.call('ZREM', KEYS[2], ARGV[3]) "
                             "redis.call('ZREM', KEYS[3], ARGV[3]) "
                             "redis.call('HDEL', KEYS[4], ARGV[3]) "
                             "return 1";

/* Out of the stream into the delayed set, unless another consumer has settled it first
 * (XACK then answers 0). KEYS stream, delayed, entries; ARGV group, id, trace_id, due,
 * entry JSON. */
const char wb_script_defer[] = "if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then "
                               "return 0 end "
                               "redis.call('XDEL', KEYS[1], ARGV[2]) "
                               "redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3]) "
                               "redis.call('HSET', KEYS[3], ARGV[3], ARGV[5]) "
                               "return 1";

/* Out of the stream into the dead letters. KEYS stream, pending, dead; ARGV group, id,
 * trace_id, dead letter JSON. */
const char wb_script_dead[] = "if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then "
                              "return 0 end "
                              "redis.call('XDEL', KEYS[1], ARGV[2]) "
                              "redis.call('ZREM', KEYS[2], ARGV[3]) "
                              "redis.call('HSET', KEYS[3], ARGV[3], ARGV[4]) "
                              "return 1";

/* Due retries back into the stream. KEYS delayed, entries, stream; ARGV now, limit.
 * Returns how many moved. */
const char wb_script_promote[] =
    ADD "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2]) "
        "for _, t in ipairs(ids) do "
        "local j = redis.call('HGET', KEYS[2], t) "
        "if j then add(KEYS[3], cjson.decode(j)) end "
        "redis.call('ZREM', KEYS[1], t) redis.call('HDEL', KEYS[2], t) "
        "end "
        "return #ids";

/* A dead letter back into the stream, with a fresh age and attempt count (otherwise
 * max_age_s would kill it again at once). KEYS dead, stream, pending; ARGV trace_id, now.
 * Returns 0 when there is no such dead letter. */
const char wb_script_retry[] = ADD "local j = redis.call('HGET', KEYS[1], ARGV[1]) "
                                   "if not j then return 0 end "
                                   "local e = cjson.decode(j).entry "
                                   "e.attempts = '0' e.enqueued_at = ARGV[2] "
                                   "add(KEYS[2], e) "
                                   "redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1]) "
                                   "redis.call('HDEL', KEYS[1], ARGV[1]) "
                                   "return 1";

/* KEYS pending, delayed, dead; ARGV limit. Returns {depth, oldest enqueued_at or '0',
 * retrying, dead letters, dead letter JSON...} with at most limit of the latter. */
const char wb_script_backlog[] =
    "local o = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES') "
    "local r = {redis.call('ZCARD', KEYS[1]), o[2] or '0', redis.call('ZCARD', KEYS[2]), "
    "redis.call('HLEN', KEYS[3])} "
    "if r[4] > 0 then "
    "local v = redis.call('HVALS', KEYS[3]) "
    "for i = 1, math.min(#v, tonumber(ARGV[1])) do r[#r + 1] = v[i] end "
    "end "
    "return r";
