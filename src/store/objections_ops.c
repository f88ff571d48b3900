#include "objections_int.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/redis_conn.h"

/* Big enough for a record whose every character needs a two-byte escape. */
#define RECORD_JSON_MAX 8192

/* KEYS: hash, version, record; log. ARGV: case HMAC, number HMAC or "", sealed record,
 * stream length. The hash, the record, the version and the stream change in one atomic
 * script; HSET's answer says whether the objection is new. */
static const char put_lua[] = "local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) "
                              "redis.call('SET', KEYS[4], ARGV[3]) "
                              "local v = redis.call('INCR', KEYS[2]) "
                              "local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', "
                              "'op', 'put', 'c', ARGV[1], 'n', ARGV[2], 'v', v) "
                              "return {created, v, id}";

/* KEYS as above. ARGV: case HMAC, stream length. {0} when there is no such objection. */
static const char del_lua[] = "local n = redis.call('HGET', KEYS[1], ARGV[1]) "
                              "if not n then return {0} end "
                              "redis.call('HDEL', KEYS[1], ARGV[1]) "
                              "redis.call('DEL', KEYS[4]) "
                              "local v = redis.call('INCR', KEYS[2]) "
                              "local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], "
                              "'*', 'op', 'del', 'c', ARGV[1], 'n', n, 'v', v) "
                              "return {1, v, id}";

enum op_kind { OP_PUT, OP_GET, OP_DELETE };

struct op_req {
    struct obj_op op;
    enum op_kind kind;
    union {
        objections_put_cb *put;
        objections_get_cb *get;
        objections_delete_cb *del;
    } cb;
    void *arg;
    bool has_nhs;
    unsigned char case_mac[OBJ_MAC_LEN];
    unsigned char nhs_mac[OBJ_MAC_LEN];
    char key[OBJ_KEY_SIZE]; /* the sealed record's key, also its associated data */
    struct objection obj;   /* put: what was stored; get: what was read */
};

static void op_free(struct op_req *q)
{
    OPENSSL_cleanse(q, sizeof(*q));
    free(q);
}

static void complete(struct op_req *q, int status, bool created)
{
    switch (q->kind) {
    case OP_PUT:
        q->cb.put(status, created, status == 0 ? &q->obj : NULL, q->arg);
        break;
    case OP_GET:
        q->cb.get(status, status == 0 ? &q->obj : NULL, q->arg);
        break;
    case OP_DELETE:
        q->cb.del(status, q->arg);
        break;
    }
}

static void cancel(struct obj_op *op)
{
    complete(container_of(op, struct op_req, op), UV_ECANCELED, false);
}

static void count_change(const struct objections *o, const struct op_req *q, int status)
{
    const char *labels[2][3] = {{"op=\"put\",result=\"ok\"", "op=\"put\",result=\"not_found\"",
                                 "op=\"put\",result=\"error\""},
                                {"op=\"delete\",result=\"ok\"",
                                 "op=\"delete\",result=\"not_found\"",
                                 "op=\"delete\",result=\"error\""}};
    if (q->kind == OP_GET)
        return;
    int r = status == 0 ? 0 : status == ERR_NOT_FOUND ? 1 : 2;
    metrics_inc(o->metrics, "pdstrace_objections_changes_total", labels[q->kind == OP_DELETE][r],
                1);
}

static int op_new(struct objections *o, enum op_kind kind, const char *case_id, void *arg,
                  struct op_req **out)
{
    struct op_req *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return UV_ENOMEM;
    q->kind = kind;
    q->arg = arg;
    q->op.cancel = cancel;
    char hex[OBJ_HEX_LEN + 1];
    int err = objections_mac(o, 'c', case_id, q->case_mac);
    if (err) {
        op_free(q);
        return err;
    }
    crypto_hex(q->case_mac, OBJ_MAC_LEN, hex);
    snprintf(q->key, sizeof(q->key), "%sobjection:%s", o->prefix, hex);
    *out = q;
    return 0;
}

/* What the caller hears: Redis' own failures pass through, anything else Redis said that
 * we cannot use is the store being unavailable. */
static int store_status(int status)
{
    switch (status) {
    case 0:
    case ERR_NOT_FOUND:
    case ERR_UNAVAILABLE:
    case ERR_UPSTREAM_TIMEOUT:
    case UV_ECANCELED:
        return status;
    default:
        return ERR_UNAVAILABLE;
    }
}

/* Redis' answer to a change: [1 or 0, version, stream id], or [0] for a delete of nothing. */
static int change_reply(const redisReply *r, long long *flag, long long *v, const char **id)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
        return ERR_UNAVAILABLE;
    *flag = r->element[0]->integer;
    if (r->elements == 1)
        return *flag == 0 ? ERR_NOT_FOUND : ERR_UNAVAILABLE;
    if (r->elements != 3 || r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_STRING)
        return ERR_UNAVAILABLE;
    *v = r->element[1]->integer;
    *id = r->element[2]->str;
    return 0;
}

/* A put or delete answered: the change goes into this instance's copy before the caller
 * hears of it, so its own next check already honours it. */
static void on_change(int status, redisReply *reply, void *arg)
{
    struct op_req *q = arg;
    struct objections *o = objections_op_untrack(&q->op);
    if (o == NULL) {
        op_free(q);
        return;
    }
    long long flag = 0, v = 0;
    const char *id = "";
    if (status == 0)
        status = change_reply(reply, &flag, &v, &id);
    if (status == 0)
        status = objections_sync_local(o, q->case_mac, q->has_nhs ? q->nhs_mac : NULL,
                                       q->kind == OP_PUT, v, id);
    count_change(o, q, status);
    complete(q, store_status(status), flag != 0);
    op_free(q);
}

static void now_iso(char out[25])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 25, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The record as JSON, sealed under the value key with the record's Redis key as
 * associated data (a sealed record cannot be moved to another case). */
static int seal_record(const struct objections *o, const struct op_req *q, struct buf *out)
{
    const struct objection *ob = &q->obj;
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "case_id", ob->case_id, "nhs_number", ob->nhs_number,
                  "recorded_by", ob->recorded_by, "note", ob->note, "recorded_at", ob->recorded_at);
    char text[RECORD_JSON_MAX];
    size_t n = j != NULL ? json_dumpb(j, text, sizeof(text), JSON_COMPACT) : 0;
    json_decref(j);
    int err = n == 0 || n > sizeof(text) ? ERR_TOO_LARGE : 0;
    err = err ? err : crypto_seal(o->enc_key, q->key, strlen(q->key), text, n, out);
    OPENSSL_cleanse(text, sizeof(text));
    return err;
}

static int send_put(struct objections *o, struct op_req *q)
{
    char case_hex[OBJ_HEX_LEN + 1], nhs_hex[OBJ_HEX_LEN + 1] = "";
    crypto_hex(q->case_mac, OBJ_MAC_LEN, case_hex);
    if (q->has_nhs)
        crypto_hex(q->nhs_mac, OBJ_MAC_LEN, nhs_hex);
    struct buf sealed;
    buf_init(&sealed, RECORD_JSON_MAX + CRYPTO_SEAL_OVERHEAD);
    int err = seal_record(o, q, &sealed);
    if (!err)
        err = redis_conn_command(o->redis, on_change, q, "EVAL %s 4 %s %s %s %s %s %s %b %d",
                                 put_lua, o->k_hash, o->k_version, o->k_log, q->key, case_hex,
                                 nhs_hex, buf_cstr(&sealed), buf_len(&sealed), OBJ_LOG_MAXLEN);
    buf_free(&sealed);
    return err;
}

/* Sends q and tracks it, or frees it and returns the code. */
static int launch(struct objections *o, struct op_req *q, int err)
{
    if (err) {
        op_free(q);
        return err;
    }
    objections_op_track(o, &q->op);
    return 0;
}

int objections_put(struct objections *o, const struct objection *obj, objections_put_cb *cb,
                   void *arg)
{
    struct op_req *q;
    int err = op_new(o, OP_PUT, obj->case_id, arg, &q);
    if (err)
        return err;
    q->cb.put = cb;
    q->obj = *obj;
    now_iso(q->obj.recorded_at);
    q->has_nhs = obj->nhs_number[0] != '\0';
    err = q->has_nhs ? objections_mac(o, 'n', obj->nhs_number, q->nhs_mac) : 0;
    return launch(o, q, err ? err : send_put(o, q));
}

int objections_delete(struct objections *o, const char *case_id, objections_delete_cb *cb,
                      void *arg)
{
    struct op_req *q;
    int err = op_new(o, OP_DELETE, case_id, arg, &q);
    if (err)
        return err;
    q->cb.del = cb;
    char case_hex[OBJ_HEX_LEN + 1];
    crypto_hex(q->case_mac, OBJ_MAC_LEN, case_hex);
    err = redis_conn_command(o->redis, on_change, q, "EVAL %s 4 %s %s %s %s %s %d", del_lua,
                             o->k_hash, o->k_version, o->k_log, q->key, case_hex, OBJ_LOG_MAXLEN);
    return launch(o, q, err);
}

static int copy_str(const json_t *j, const char *name, char *out, size_t size)
{
    const json_t *v = json_object_get(j, name);
    if (!json_is_string(v) || json_string_length(v) >= size)
        return ERR_PARSE;
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int decode_record(const char *text, size_t n, struct objection *ob)
{
    json_t *j = json_loadb(text, n, 0, NULL);
    int err = copy_str(j, "case_id", ob->case_id, sizeof(ob->case_id));
    err = err ? err : copy_str(j, "nhs_number", ob->nhs_number, sizeof(ob->nhs_number));
    err = err ? err : copy_str(j, "recorded_by", ob->recorded_by, sizeof(ob->recorded_by));
    err = err ? err : copy_str(j, "note", ob->note, sizeof(ob->note));
    err = err ? err : copy_str(j, "recorded_at", ob->recorded_at, sizeof(ob->recorded_at));
    json_decref(j);
    return err;
}

static int open_record(const struct op_req *q, const unsigned char *key, const redisReply *r,
                       struct objection *ob)
{
    struct buf plain;
    buf_init(&plain, RECORD_JSON_MAX);
    int err = crypto_open(key, q->key, strlen(q->key), r->str, r->len, &plain);
    err = err ? err : decode_record(buf_cstr(&plain), buf_len(&plain), ob);
    buf_wipe(&plain);
    return err;
}

static void on_get(int status, redisReply *reply, void *arg)
{
    struct op_req *q = arg;
    struct objections *o = objections_op_untrack(&q->op);
    if (o == NULL) {
        op_free(q);
        return;
    }
    if (status == 0 && reply->type == REDIS_REPLY_NIL)
        status = ERR_NOT_FOUND;
    else if (status == 0 && reply->type != REDIS_REPLY_STRING)
        status = ERR_UNAVAILABLE;
    /* A record that does not open (another secret, tampering) cannot be answered. */
    if (status == 0 && open_record(q, o->enc_key, reply, &q->obj) != 0)
        status = ERR_UNAVAILABLE;
    complete(q, store_status(status), false);
    op_free(q);
}

int objections_get(struct objections *o, const char *case_id, objections_get_cb *cb, void *arg)
{
    struct op_req *q;
    int err = op_new(o, OP_GET, case_id, arg, &q);
    if (err)
        return err;
    q->cb.get = cb;
    return launch(o, q, redis_conn_command(o->redis, on_get, q, "GET %s", q->key));
}
