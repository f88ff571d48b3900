#include "pdstrace/objections.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objections_int.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/nhs_number.h"

#define NS_PER_MS 1000000ull

static const struct metrics_family families[] = {
    {"pdstrace_objections", METRICS_GAUGE, "objections held in this instance's copy"},
    {"pdstrace_objections_current", METRICS_GAUGE,
     "1 while the copy is confirmed current within objections.max_staleness_ms, else 0"},
    {"pdstrace_objections_staleness_seconds", METRICS_GAUGE,
     "seconds since the copy was last confirmed current (since start when never)"},
    {"pdstrace_objections_syncs_total", METRICS_COUNTER,
     "polls and loads of the copy, by kind (poll, load) and result (ok, error)"},
    {"pdstrace_objections_changes_total", METRICS_COUNTER,
     "puts and deletes through this instance, by op and result (ok, not_found, error)"},
};

static uint64_t age_ns(const struct objections *o)
{
    return uv_hrtime() - o->confirmed_ns;
}

static void collect(void *arg)
{
    const struct objections *o = arg;
    metrics_set(o->metrics, "pdstrace_objections", NULL, (double)objections_count(o));
    metrics_set(o->metrics, "pdstrace_objections_current", NULL, objections_current(o) ? 1 : 0);
    metrics_set(o->metrics, "pdstrace_objections_staleness_seconds", NULL, (double)age_ns(o) / 1e9);
}

static void set_keys(struct objections *o, const struct objections_config *cfg)
{
    snprintf(o->prefix, sizeof(o->prefix), "%s", cfg->prefix != NULL ? cfg->prefix : "");
    snprintf(o->k_hash, sizeof(o->k_hash), "%sobjections", o->prefix);
    snprintf(o->k_version, sizeof(o->k_version), "%sobjections:version", o->prefix);
    snprintf(o->k_log, sizeof(o->k_log), "%sobjections:log", o->prefix);
}

/* The HMAC key and the sealing key, each from the secret under its own HKDF info. */
static int derive_keys(struct objections *o, const void *secret, size_t secret_len)
{
    unsigned char mac_key[CRYPTO_KEY_LEN];
    int err = crypto_hkdf_sha256(NULL, 0, secret, secret_len, "pds-trace objections mac v1",
                                 mac_key, sizeof(mac_key));
    if (!err)
        err = crypto_hmac_new(&o->mac, mac_key, sizeof(mac_key));
    OPENSSL_cleanse(mac_key, sizeof(mac_key));
    if (!err)
        err = crypto_hkdf_sha256(NULL, 0, secret, secret_len, "pds-trace objections value v1",
                                 o->enc_key, sizeof(o->enc_key));
    return err;
}

static void on_closed(uv_handle_t *h)
{
    struct objections *o = container_of(h, struct objections, timer);
    OPENSSL_cleanse(o, sizeof(*o));
    free(o);
}

int objections_new(struct objections **out, uv_loop_t *loop, struct redis_conn *redis,
                   const void *secret, size_t secret_len, const struct objections_config *cfg)
{
    int err = metrics_declare(cfg->metrics, families, ARRAY_SIZE(families));
    if (err)
        return err;
    struct objections *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return UV_ENOMEM;
    o->loop = loop;
    o->redis = redis;
    o->metrics = cfg->metrics;
    o->max_staleness_ms = cfg->max_staleness_ms ? cfg->max_staleness_ms : 2000;
    o->interval_ms = o->max_staleness_ms / 4 < 100 ? 100 : o->max_staleness_ms / 4;
    o->confirmed_ns = uv_hrtime();
    list_init(&o->ops);
    objections_index_init(&o->ix);
    set_keys(o, cfg);
    uv_timer_init(loop, &o->timer);
    err = derive_keys(o, secret, secret_len);
    err = err ? err : metrics_add_collector(o->metrics, collect, o);
    err = err ? err : objections_sync_start(o);
    if (err) {
        objections_free(o);
        return err;
    }
    *out = o;
    return 0;
}

void objections_free(struct objections *o)
{
    if (o == NULL)
        return;
    metrics_remove_collector(o->metrics, collect, o);
    struct list_node *n, *tmp;
    LIST_FOREACH_SAFE(n, tmp, &o->ops)
    {
        struct obj_op *op = LIST_ENTRY(n, struct obj_op, link);
        objections_op_untrack(op);
        if (op->cancel != NULL)
            op->cancel(op);
    }
    o->sync = NULL;
    crypto_hmac_free(o->mac);
    o->mac = NULL;
    objections_index_free(&o->ix);
    uv_timer_stop(&o->timer);
    uv_close((uv_handle_t *)&o->timer, on_closed);
}

void objections_op_track(struct objections *o, struct obj_op *op)
{
    op->o = o;
    list_push_tail(&o->ops, &op->link);
}

struct objections *objections_op_untrack(struct obj_op *op)
{
    struct objections *o = op->o;
    if (o != NULL)
        list_remove(&op->link);
    op->o = NULL;
    return o;
}

int objections_mac(const struct objections *o, char kind, const char *s,
                   unsigned char out[OBJ_MAC_LEN])
{
    char msg[2 + OBJECTION_CASE_ID_MAX + 1];
    int n = snprintf(msg, sizeof(msg), "%c:%s", kind, s);
    if (n < 0 || (size_t)n >= sizeof(msg))
        return ERR_INVALID_INPUT;
    return crypto_hmac_run(o->mac, msg, (size_t)n, out);
}

bool objections_current(const struct objections *o)
{
    return o != NULL && o->loaded && age_ns(o) <= o->max_staleness_ms * NS_PER_MS;
}

size_t objections_count(const struct objections *o)
{
    return o != NULL ? objections_index_count(&o->ix) : 0;
}

/* 1 when the copy holds s, 0 when not, or a negative code: a MAC that cannot be computed
 * must not read as "no objection". A case id too long to be stored is simply absent. */
static int has(const struct objections *o, char kind, const char *s)
{
    unsigned char mac[OBJ_MAC_LEN];
    int err = objections_mac(o, kind, s, mac);
    if (err)
        return err == ERR_INVALID_INPUT ? 0 : ERR_OBJECTIONS_UNAVAILABLE;
    return kind == 'c' ? objections_index_has_case(&o->ix, mac)
                       : objections_index_has_number(&o->ix, mac);
}

int objections_check(const struct objections *o, const char *case_id, const char *nhs_number)
{
    if (!objections_current(o))
        return ERR_OBJECTIONS_UNAVAILABLE;
    int by_case = 0, by_number = 0;
    char digits[11];
    if (case_id != NULL && case_id[0] != '\0')
        by_case = has(o, 'c', case_id);
    if (nhs_number != NULL && nhs_number_normalise(nhs_number, digits) == 0)
        by_number = has(o, 'n', digits);
    if (by_case < 0 || by_number < 0)
        return ERR_OBJECTIONS_UNAVAILABLE;
    return (by_case ? OBJECTIONS_BY_CASE : 0) | (by_number ? OBJECTIONS_BY_NUMBER : 0);
}
