#ifndef PDS_WRITEBACK_WRITEBACK_INT_H
#define PDS_WRITEBACK_WRITEBACK_INT_H

/* Shared by the files of src/writeback/ only: the queue's state, one stream entry as the
 * worker handles it, the Lua scripts and the small helpers around them. The layout in
 * Redis is described in docs/internals/writeback.md. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pdstrace/crypto.h"
#include "pdstrace/writeback.h"

struct buf;
struct redisReply;

#define WB_GROUP      "workers"
#define WB_PREFIX_MAX 64
#define WB_KEY_MAX    (WB_PREFIX_MAX + 32)
#define WB_ID_MAX     48                                    /* a stream id, "ms-seq" */
#define WB_SEALED_HEX (2 * (10 + CRYPTO_SEAL_OVERHEAD) + 1) /* the sealed number in hex */
#define WB_DEAD_LIMIT 1000 /* dead letters a backlog answer lists at most */
#define WB_ERROR_MAX  128

/* The keys of one prefix. */
struct wb_keys {
    char stream[WB_KEY_MAX];  /* the stream read by the group "workers" */
    char pending[WB_KEY_MAX]; /* zset trace_id -> enqueued_at ms: every undelivered one */
    char delayed[WB_KEY_MAX]; /* zset trace_id -> due ms: waiting for a retry */
    char entries[WB_KEY_MAX]; /* hash trace_id -> entry JSON, for the delayed ones */
    char dead[WB_KEY_MAX];    /* hash trace_id -> dead letter JSON */
};

/* The queue is shared by the API, the traces and the worker. It counts the commands it
 * has outstanding so that freeing it while Redis still owes replies is safe. */
struct writeback_queue {
    struct redis_conn *redis;
    struct metrics *metrics;
    struct wb_keys keys;
    unsigned char key[CRYPTO_KEY_LEN]; /* seals the NHS number */
    uint64_t last_depth;
    double last_oldest_s;
    unsigned refs; /* commands in flight, plus one while not freed */
};

/* One stream entry, copied out of a reply. The number stays sealed in here. */
struct wb_entry {
    char id[WB_ID_MAX];
    char trace_id[37];
    char case_id[65];
    char sealed[WB_SEALED_HEX];
    char score[32]; /* as enqueued, so that a round trip through Redis changes nothing */
    uint64_t traced_at_ms;
    uint64_t enqueued_at_ms;
    unsigned attempts;
};

/* Wall-clock milliseconds: enqueue and due times are compared across instances. */
uint64_t wb_now_ms(void);

/* "2026-12-02T10:15:00Z" for a Unix time in ms. */
void wb_iso8601(uint64_t ms, char out[25]);

int wb_keys_init(struct wb_keys *k, const char *prefix);

/* Fills e from one [id, [field, value, ...]] element of an XREADGROUP or XAUTOCLAIM
 * reply. Returns 0, or ERR_PARSE for a deleted or foreign entry (id is still set when
 * it could be read, so that the entry can be acknowledged away). */
int wb_entry_parse(const struct redisReply *r, struct wb_entry *e);

/* The entry as JSON with string values, as the delayed hash and dead letters keep it. */
int wb_entry_json(const struct wb_entry *e, struct buf *out);

/* Opens the sealed number into out[11]. Returns 0 or ERR_PARSE. */
int wb_entry_open(const struct writeback_queue *q, const struct wb_entry *e, char out[11]);

/* The scripts (EVAL): KEYS and ARGV are listed in scripts.c next to each. */
extern const char wb_script_enqueue[];
extern const char wb_script_ack[];
extern const char wb_script_defer[];
extern const char wb_script_dead[];
extern const char wb_script_promote[];
extern const char wb_script_retry[];
extern const char wb_script_backlog[];

/* The queue's reference count: a command's context holds one until its reply. */
void wb_queue_ref(struct writeback_queue *q);
void wb_queue_unref(struct writeback_queue *q);

/* Records the backlog figures for writeback_queue_last_backlog and the gauges. */
void wb_queue_note(struct writeback_queue *q, uint64_t depth, double oldest_s, uint64_t dead);

/* Counts a delivery outcome: "delivered", "retry", "dead", "withheld". */
void wb_count(struct writeback_queue *q, const char *result);

#endif
