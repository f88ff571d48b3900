#ifndef PDS_WRITEBACK_WORKER_INT_H
#define PDS_WRITEBACK_WORKER_INT_H

/* Shared by worker.c (reading, reclaiming, timers) and deliver.c (one delivery and how it
 * is settled in Redis). */

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "pdstrace/list.h"
#include "writeback_int.h"

enum wb_state {
    WB_WAITING,  /* claimed by us, waiting for a delivery slot */
    WB_SENDING,  /* the PUT is in flight */
    WB_SETTLING, /* the script that acknowledges, defers or buries it is in flight */
};

/* One entry this consumer holds in the group's pending list. */
struct wb_delivery {
    struct list_node link; /* in w->held */
    struct writeback_worker *w;
    struct wb_entry e;
    enum wb_state state;
    uint64_t fresh_ms; /* uv_now when we last (re)claimed it */
};

struct writeback_worker {
    uv_loop_t *loop;
    struct http_client *http;
    struct redis_conn *blocking; /* XREADGROUP BLOCK only */
    struct writeback_queue *q;   /* its connection carries every other command */
    writeback_withheld_fn *withheld;
    void *withheld_arg;
    char *base_url;
    char *auth; /* "Authorization: Bearer <token>", or NULL; wiped when freed */
    struct http_client_tls tls;
    unsigned timeout_ms, concurrency, retry_initial_ms, retry_max_ms, reclaim_idle_ms;
    uint64_t max_age_ms;
    char consumer[128]; /* host-pid-random: unique for this worker's life */
    uv_timer_t tick;
    struct list_node held;   /* struct wb_delivery */
    unsigned n_held, n_busy; /* held; of them sending or settling */
    unsigned cmds;           /* worker-level commands in flight */
    bool reading, promoting, claiming, refreshing, pumping;
    bool group_ready, group_creating;
    bool closing, tick_closed;
    char claim_cursor[WB_ID_MAX];
    uint64_t next_claim_ms, next_refresh_ms; /* uv_now deadlines */
};

/* Starts the delivery of a held entry (deliver.c): it ends in wb_worker_release. */
void wb_deliver_start(struct wb_delivery *d);

/* A delivery is settled (or abandoned): unlinks and frees it, then lets the worker start
 * the next one and read more (worker.c). */
void wb_worker_release(struct wb_delivery *d);

/* Frees the worker once it is closing and nothing refers to it any more. */
void wb_worker_maybe_free(struct writeback_worker *w);

#endif
