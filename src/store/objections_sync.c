#include "objections_int.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/err.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/redis_conn.h"

/* Until the first load succeeds, tries come this often (Redis may still be connecting). */
#define FIRST_LOAD_RETRY_MS 50u

/* KEYS: hash, version, log. The whole copy and the stream position it stands at, read in
 * one atomic step so that no change can fall between the two. */
static const char load_lua[] =
    "local v = tonumber(redis.call('GET', KEYS[2]) or '0') "
    "local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1) "
    "local id = '0-0' "
    "if #last > 0 then id = last[1][1] end "
    "return {v, id, redis.call('HGETALL', KEYS[1])}";

/* KEYS: hash, version, log; ARGV: last id seen, version held, most entries to return. An
 * unchanged version answers without reading the stream: the common case is cheap. */
static const char poll_lua[] =
    "local v = tonumber(redis.call('GET', KEYS[2]) or '0') "
    "if v == tonumber(ARGV[2]) then return {v, {}} end "
    "local r = redis.call('XREAD', 'COUNT', ARGV[3], 'STREAMS', KEYS[3], ARGV[1]) "
    "if not r then return {v, {}} end "
    "return {v, r[1][2]}";

/* What a sync reply meant for the copy. */
enum sync_result {
    SYNC_CURRENT,   /* the copy is at Redis' version: confirmed as of the send */
    SYNC_BEHIND,    /* the stream cannot bring it up to date: load the whole set */
    SYNC_MALFORMED, /* an answer we do not understand: not confirmed, reload */
};

struct sync_req {
    struct obj_op op;
    bool load;
    uint64_t sent_ns;
};

/* One change read from the stream. */
struct change {
    const char *id;
    bool put;
    bool has_nhs;
    long long v;
    unsigned char case_mac[OBJ_MAC_LEN];
    unsigned char nhs_mac[OBJ_MAC_LEN];
};

static void send_sync(struct objections *o);

static bool is_str(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_STRING;
}

static bool is_array(const redisReply *r, size_t n)
{
    return r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= n;
}

/* A hex HMAC from the hash or the stream; "" means none (nhs_mac only). */
static int unhex_mac(const redisReply *r, unsigned char *out, bool *present)
{
    if (!is_str(r))
        return ERR_PARSE;
    *present = r->len > 0;
    return r->len == 0 ? 0 : crypto_unhex(r->str, out, OBJ_MAC_LEN);
}

static int parse_version(const char *s, long long *v)
{
    char *end;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return errno != 0 || end == s || *end != '\0' || *v <= 0 ? ERR_PARSE : 0;
}

static int change_field(struct change *c, const redisReply *name, const redisReply *val)
{
    bool present = false;
    if (!is_str(name) || !is_str(val))
        return ERR_PARSE;
    if (strcmp(name->str, "op") == 0) {
        c->put = strcmp(val->str, "put") == 0;
        return c->put || strcmp(val->str, "del") == 0 ? 0 : ERR_PARSE;
    }
    if (strcmp(name->str, "c") == 0) {
        int err = unhex_mac(val, c->case_mac, &present);
        return err ? err : present ? 0 : ERR_PARSE;
    }
    if (strcmp(name->str, "n") == 0)
        return unhex_mac(val, c->nhs_mac, &c->has_nhs);
    if (strcmp(name->str, "v") == 0)
        return parse_version(val->str, &c->v);
    return 0;
}

/* A stream entry: [id, [field, value, ...]] with op, c, n and v. */
static int parse_change(const redisReply *e, struct change *c)
{
    memset(c, 0, sizeof(*c));
    if (!is_array(e, 2) || !is_str(e->element[0]) || !is_array(e->element[1], 0))
        return ERR_PARSE;
    c->id = e->element[0]->str;
    const redisReply *f = e->element[1];
    int err = f->elements % 2 == 0 ? 0 : ERR_PARSE;
    for (size_t i = 0; !err && i < f->elements; i += 2)
        err = change_field(c, f->element[i], f->element[i + 1]);
    return err ? err : c->v > 0 && c->id[0] != '\0' ? 0 : ERR_PARSE;
}

static int apply(struct objections_index *ix, const struct change *c)
{
    if (!c->put) {
        objections_index_del(ix, c->case_mac);
        return 0;
    }
    return objections_index_put(ix, c->case_mac, c->has_nhs ? c->nhs_mac : NULL);
}

/* Applies the entries after o->version, which must follow on from it one by one; a gap
 * means the stream was trimmed past what we hold. */
static enum sync_result apply_entries(struct objections *o, const redisReply *entries)
{
    for (size_t i = 0; i < entries->elements; i++) {
        struct change c;
        if (parse_change(entries->element[i], &c) != 0)
            return SYNC_MALFORMED;
        if (c.v <= o->version)
            continue;
        if (c.v != o->version + 1)
            return SYNC_BEHIND;
        if (apply(&o->ix, &c) != 0)
            return SYNC_MALFORMED;
        o->version = c.v;
        snprintf(o->last_id, sizeof(o->last_id), "%s", c.id);
    }
    return SYNC_CURRENT;
}

/* [version, entries]. A version below ours (Redis lost its data) or too far ahead for one
 * poll reloads; so does a stream that does not reach Redis' version. All entries of a
 * reply are applied in one go, so a check never sees half of a poll. */
static enum sync_result apply_poll(struct objections *o, const redisReply *r)
{
    if (!is_array(r, 2) || r->element[0]->type != REDIS_REPLY_INTEGER ||
        !is_array(r->element[1], 0))
        return SYNC_MALFORMED;
    long long v = r->element[0]->integer;
    if (v == o->version)
        return SYNC_CURRENT;
    if (v < o->version || v - o->version > OBJ_POLL_COUNT)
        return SYNC_BEHIND;
    enum sync_result res = apply_entries(o, r->element[1]);
    return res == SYNC_CURRENT && o->version != v ? SYNC_BEHIND : res;
}

static int fill_index(struct objections_index *ix, const redisReply *flat)
{
    if (flat->elements % 2 != 0)
        return ERR_PARSE;
    int err = 0;
    for (size_t i = 0; !err && i < flat->elements; i += 2) {
        unsigned char c[OBJ_MAC_LEN], n[OBJ_MAC_LEN];
        bool has_c = false, has_n = false;
        err = unhex_mac(flat->element[i], c, &has_c);
        err = err ? err : unhex_mac(flat->element[i + 1], n, &has_n);
        err = err ? err : has_c ? objections_index_put(ix, c, has_n ? n : NULL) : ERR_PARSE;
    }
    return err;
}

/* [version, last stream id, [case, number, ...]]: a fresh copy replaces the old one
 * whole, or not at all. */
static enum sync_result apply_load(struct objections *o, const redisReply *r)
{
    if (!is_array(r, 3) || r->element[0]->type != REDIS_REPLY_INTEGER || !is_str(r->element[1]) ||
        r->element[1]->len >= OBJ_ID_SIZE || !is_array(r->element[2], 0))
        return SYNC_MALFORMED;
    struct objections_index fresh;
    objections_index_init(&fresh);
    if (fill_index(&fresh, r->element[2]) != 0) {
        objections_index_free(&fresh);
        return SYNC_MALFORMED;
    }
    objections_index_free(&o->ix);
    o->ix = fresh;
    o->version = r->element[0]->integer;
    snprintf(o->last_id, sizeof(o->last_id), "%s", r->element[1]->str);
    o->loaded = true;
    o->need_reload = false;
    return SYNC_CURRENT;
}

static void count_sync(const struct objections *o, bool load, bool ok)
{
    metrics_inc(o->metrics, "pdstrace_objections_syncs_total",
                load ? (ok ? "kind=\"load\",result=\"ok\"" : "kind=\"load\",result=\"error\"")
                     : (ok ? "kind=\"poll\",result=\"ok\"" : "kind=\"poll\",result=\"error\""),
                1);
}

static enum sync_result interpret(struct objections *o, const struct sync_req *q, int status,
                                  const redisReply *r)
{
    if (status != 0)
        return SYNC_MALFORMED;
    if (r->type == REDIS_REPLY_ERROR) {
        log_msgf(LOG_LEVEL_WARN, NULL, "objections: Redis refused the %s script",
                 q->load ? "load" : "poll");
        return SYNC_MALFORMED;
    }
    return q->load ? apply_load(o, r) : apply_poll(o, r);
}

/* A poll or load answered. Only an answer that brings the copy to Redis' version confirms
 * it, and then as of the moment the question was sent, not when the answer came. */
static void on_sync(int status, redisReply *reply, void *arg)
{
    struct sync_req *q = arg;
    struct objections *o = objections_op_untrack(&q->op);
    if (o != NULL) {
        o->sync = NULL;
        enum sync_result res = interpret(o, q, status, reply);
        count_sync(o, q->load, status == 0 && res != SYNC_MALFORMED);
        if (res == SYNC_CURRENT)
            o->confirmed_ns = q->sent_ns;
        else if (status == 0)
            o->need_reload = true;
        /* A poll that found the copy behind reloads at once; a failed load waits for the
         * timer, so a broken answer cannot make us spin. */
        if (res == SYNC_BEHIND && !q->load)
            send_sync(o);
    }
    free(q);
}

static int send_load(struct objections *o, struct sync_req *q)
{
    return redis_conn_command(o->redis, on_sync, q, "EVAL %s 3 %s %s %s", load_lua, o->k_hash,
                              o->k_version, o->k_log);
}

static int send_poll(struct objections *o, struct sync_req *q)
{
    return redis_conn_command(o->redis, on_sync, q, "EVAL %s 3 %s %s %s %s %lld %d", poll_lua,
                              o->k_hash, o->k_version, o->k_log, o->last_id, o->version,
                              OBJ_POLL_COUNT);
}

/* One sync at a time: a slow Redis gets no pile of polls. */
static void send_sync(struct objections *o)
{
    if (o->sync != NULL)
        return;
    struct sync_req *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return;
    q->load = !o->loaded || o->need_reload;
    q->sent_ns = uv_hrtime();
    int err = q->load ? send_load(o, q) : send_poll(o, q);
    if (err) {
        count_sync(o, q->load, false);
        free(q);
        return;
    }
    objections_op_track(o, &q->op);
    o->sync = &q->op;
}

static void on_tick(uv_timer_t *t)
{
    struct objections *o = container_of(t, struct objections, timer);
    send_sync(o);
    unsigned next = o->loaded ? o->interval_ms : FIRST_LOAD_RETRY_MS;
    uv_timer_start(&o->timer, on_tick, next, 0);
}

int objections_sync_start(struct objections *o)
{
    if (redis_conn_state(o->redis) == REDIS_CONN_CONNECTED)
        send_sync(o);
    return uv_timer_start(&o->timer, on_tick, FIRST_LOAD_RETRY_MS, 0);
}

int objections_sync_local(struct objections *o, const unsigned char *case_mac,
                          const unsigned char *nhs_mac, bool put, long long v, const char *id)
{
    struct change c = {.id = id, .put = put, .has_nhs = nhs_mac != NULL, .v = v};
    memcpy(c.case_mac, case_mac, OBJ_MAC_LEN);
    if (nhs_mac != NULL)
        memcpy(c.nhs_mac, nhs_mac, OBJ_MAC_LEN);
    int err = apply(&o->ix, &c);
    if (err) {
        o->need_reload = true;
        return err;
    }
    /* Replies on one connection come in order, so a poll sent before this change has
     * already been applied: when nothing came between, the copy is now at v. */
    if (o->loaded && !o->need_reload && v == o->version + 1 && strlen(id) < OBJ_ID_SIZE) {
        o->version = v;
        snprintf(o->last_id, sizeof(o->last_id), "%s", id);
    }
    return 0;
}
