#ifndef PDS_STORE_OBJECTIONS_INT_H
#define PDS_STORE_OBJECTIONS_INT_H

/* Shared by the files of the objection registry only (objections.c, objections_index.c,
 * objections_sync.c, objections_ops.c); callers use pdstrace/objections.h. The design is in
 * docs/internals/objections.md. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "pdstrace/crypto.h"
#include "pdstrace/list.h"
#include "pdstrace/objections.h"

#define OBJ_MAC_LEN    CRYPTO_SHA256_LEN
#define OBJ_HEX_LEN    (2 * OBJ_MAC_LEN)
#define OBJ_KEY_SIZE   192
#define OBJ_ID_SIZE    48    /* a stream entry id, "1700000000000-12" */
#define OBJ_LOG_MAXLEN 10000 /* entries kept in the change stream (approximately) */
#define OBJ_POLL_COUNT 1000  /* entries one poll reads; a larger gap reloads */

/* One slot of an open-addressing table of HMACs (linear probing, backward-shift delete, so
 * no tombstones). In the case table val is the number's HMAC (has_val); in the number
 * table n counts the objections naming that number. */
struct obj_slot {
    unsigned char key[OBJ_MAC_LEN];
    unsigned char val[OBJ_MAC_LEN];
    uint32_t n;
    bool used;
    bool has_val;
};

struct obj_table {
    struct obj_slot *slots; /* NULL until the first insert */
    size_t cap;             /* a power of two, or 0 */
    size_t len;
};

/* The in-memory copy: case HMAC -> number HMAC (or none), and number HMAC -> how many
 * objections name it (several cases may name one number). */
struct objections_index {
    struct obj_table cases;
    struct obj_table numbers;
};

void objections_index_init(struct objections_index *ix);
void objections_index_free(struct objections_index *ix);
/* Records (or replaces) the objection of case_mac; nhs_mac NULL: it names no number.
 * Returns 0 or UV_ENOMEM, leaving the index as it was on failure. */
int objections_index_put(struct objections_index *ix, const unsigned char *case_mac,
                         const unsigned char *nhs_mac);
/* Removes case_mac's objection; a no-op when there is none. */
void objections_index_del(struct objections_index *ix, const unsigned char *case_mac);
bool objections_index_has_case(const struct objections_index *ix, const unsigned char *mac);
bool objections_index_has_number(const struct objections_index *ix, const unsigned char *mac);
size_t objections_index_count(const struct objections_index *ix);

/* A Redis command in flight. It outlives the registry when freed meanwhile: then o is
 * NULL and the reply only frees it. cancel answers the caller with UV_ECANCELED. */
struct obj_op {
    struct list_node link; /* in o->ops while o is set */
    struct objections *o;
    void (*cancel)(struct obj_op *op);
};

struct objections {
    uv_loop_t *loop;
    struct redis_conn *redis;
    struct metrics *metrics;
    struct crypto_hmac *mac;
    unsigned char enc_key[CRYPTO_KEY_LEN];
    unsigned max_staleness_ms;
    unsigned interval_ms;
    char prefix[64];
    char k_hash[OBJ_KEY_SIZE];
    char k_version[OBJ_KEY_SIZE];
    char k_log[OBJ_KEY_SIZE];
    struct objections_index ix;
    bool loaded;      /* a load has succeeded once */
    bool need_reload; /* the change stream cannot bring the copy up to date */
    long long version;
    char last_id[OBJ_ID_SIZE];
    uint64_t confirmed_ns; /* when the last confirming poll or load was sent */
    struct obj_op *sync;   /* the poll or load in flight, NULL when none */
    struct list_node ops;  /* every obj_op in flight, sync included */
    uv_timer_t timer;
};

/* HMAC of a case id ('c') or NHS number ('n'): the kind byte keeps the two apart. */
int objections_mac(const struct objections *o, char kind, const char *s,
                   unsigned char out[OBJ_MAC_LEN]);

/* objections_sync.c: the load and poll cycle, started by objections_new. */
int objections_sync_start(struct objections *o);

/* After a put or delete through this instance answered version v with stream id id: the
 * change is applied to the copy, which also moves on to v when nothing came between. */
int objections_sync_local(struct objections *o, const unsigned char *case_mac,
                          const unsigned char *nhs_mac, bool put, long long v, const char *id);

/* Links op into o->ops. */
void objections_op_track(struct objections *o, struct obj_op *op);
/* Unlinks op; returns the registry, or NULL when it is gone. */
struct objections *objections_op_untrack(struct obj_op *op);

#endif
