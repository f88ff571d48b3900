#include "job_int.h"

/* The Lua scripts of HTTP bulk jobs. Each runs atomically in Redis, which is what makes a
 * row's result stored and counted once: the first script to store it (HSETNX) counts it,
 * and acknowledges and deletes its stream entry in the same step; a later one (another
 * instance that traced it too, after a reclaim) only acknowledges. Job scripts take the
 * job's keys as KEYS[1] meta, KEYS[2] in, KEYS[3] out. Counts are kept with HINCRBY, so
 * they compare as decimal strings. */

/* Every key of the job lives ttl seconds more (EXPIRE skips a key not there). */
#define KEEP "local function keep(ttl) for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end end "

/* The job is done once its upload is complete and every row has its result. */
#define SETTLE                                                                                     \
    "local function settle(now) "                                                                  \
    "local m = redis.call('HMGET', KEYS[1], 'uploaded', 'rows_total', 'rows_done', 'state') "      \
    "if m[1] == '1' and m[2] == m[3] and m[4] ~= 'done' and m[4] ~= 'failed' then "                \
    "redis.call('HSET', KEYS[1], 'state', 'done', 'done_at', now) end end "

/* Acknowledges and deletes stream entry ARGV[2] of group ARGV[1] in stream s. */
#define ACK                                                                                        \
    "local function ack(s) redis.call('XACK', s, ARGV[1], ARGV[2]) "                               \
    "redis.call('XDEL', s, ARGV[2]) end "

/* KEYS meta, jobs; ARGV id, owner, format, sealed header, had_bom, now, ttl. */
const char bj_script_create[] =
    "redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'format', ARGV[3], 'header', ARGV[4], "
    "'had_bom', ARGV[5], 'state', 'queued', 'uploaded', '0', 'rows_added', '0', "
    "'rows_total', '0', 'rows_done', '0', 'created_at', ARGV[6]) "
    "redis.call('EXPIRE', KEYS[1], ARGV[7]) "
    "redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1]) "
    "return 1";

/* Rows stored and queued. KEYS meta, in, out, stream; ARGV id, ttl, then row, sealed row
 * pairs. Returns 0 when the job is gone. */
const char bj_script_append[] =
    KEEP "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
         "for i = 3, #ARGV, 2 do "
         "redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) "
         "redis.call('XADD', KEYS[4], '*', 'job', ARGV[1], 'row', ARGV[i]) "
         "end "
         "redis.call('HINCRBY', KEYS[1], 'rows_added', (#ARGV - 2) / 2) "
         "keep(ARGV[2]) "
         "return 1";

/* The whole file is in. KEYS meta, in, out; ARGV rows, now, ttl. Returns 0 when the job
 * is gone, -1 when it holds another number of rows (a batch was lost). */
const char bj_script_uploaded[] =
    KEEP SETTLE "local added = redis.call('HGET', KEYS[1], 'rows_added') "
                "if not added then return 0 end "
                "if added ~= ARGV[1] then return -1 end "
                "redis.call('HSET', KEYS[1], 'uploaded', '1', 'rows_total', ARGV[1]) "
                "settle(ARGV[2]) keep(ARGV[3]) "
                "return 1";

/* A row about to be traced. KEYS meta, in, out; ARGV row. Returns {0} when the job is
 * gone or failed, {2} when the row is done already, {3} when its input is missing, or
 * {1, sealed input, the meta as HGETALL}; the job is running from now on. */
const char bj_script_fetch[] =
    "local m = redis.call('HMGET', KEYS[1], 'owner', 'state') "
    "if not m[1] or m[2] == 'failed' then return {0} end "
    "if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return {2} end "
    "local data = redis.call('HGET', KEYS[2], ARGV[1]) "
    "if not data then return {3} end "
    "if m[2] == 'queued' then redis.call('HSET', KEYS[1], 'state', 'running') end "
    "return {1, data, redis.call('HGETALL', KEYS[1])}";

/* A row's result. KEYS meta, in, out, stream; ARGV group, entry id, row, sealed output,
 * outcome, now, ttl. Returns 0 when the job is gone (the entry is dropped), 1 when the row
 * had its result already, 2 when this one was stored and counted. */
const char bj_script_finish[] =
    KEEP SETTLE ACK "if redis.call('EXISTS', KEYS[1]) == 0 then ack(KEYS[4]) return 0 end "
                    "local r = 1 "
                    "if redis.call('HSETNX', KEYS[3], ARGV[3], ARGV[4]) == 1 then "
                    "redis.call('HINCRBY', KEYS[1], 'rows_done', 1) "
                    "redis.call('HINCRBY', KEYS[1], 'o:' .. ARGV[5], 1) "
                    "r = 2 end "
                    "redis.call('HDEL', KEYS[2], ARGV[3]) "
                    "ack(KEYS[4]) settle(ARGV[6]) keep(ARGV[7]) "
                    "return r";

/* A row that cannot be read back fails its job: the inputs go, the results done so far
 * stay until the job expires or is deleted. KEYS meta, in, out, stream; ARGV group, entry
 * id, reason, now, ttl. */
const char bj_script_fail[] =
    KEEP ACK "if redis.call('EXISTS', KEYS[1]) == 1 and "
             "redis.call('HGET', KEYS[1], 'state') ~= 'done' then "
             "redis.call('HSET', KEYS[1], 'state', 'failed', 'error', ARGV[3], 'done_at', ARGV[4]) "
             "redis.call('DEL', KEYS[2]) keep(ARGV[5]) end "
             "ack(KEYS[4]) "
             "return 1";

/* An entry with nothing to do (its job gone, its row done, or not ours to read).
 * KEYS stream; ARGV group, entry id. */
const char bj_script_drop[] = ACK "ack(KEYS[1]) return 1";

/* KEYS meta, in, out, jobs; ARGV owner, id. Returns 0 unless the owner's job was there. */
const char bj_script_delete[] = "if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then "
                                "return 0 end "
                                "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) "
                                "redis.call('ZREM', KEYS[4], ARGV[2]) "
                                "return 1";

/* Jobs by state, forgetting those whose keys have expired or gone. The meta keys are
 * named from the ids, which a standalone Redis allows (like every script here that spans
 * a job's keys and the stream, it is not for Redis Cluster). KEYS jobs; ARGV meta key
 * prefix, limit. Returns {queued, running, done, failed}. */
const char bj_script_count[] =
    "local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1) "
    "local n = {queued = 0, running = 0, done = 0, failed = 0} "
    "for _, id in ipairs(ids) do "
    "local s = redis.call('HGET', ARGV[1] .. id, 'state') "
    "if s and n[s] then n[s] = n[s] + 1 elseif not s then redis.call('ZREM', KEYS[1], id) end "
    "end "
    "return {n.queued, n.running, n.done, n.failed}";
