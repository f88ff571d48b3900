#ifndef PDS_WRITEBACK_WRITEBACK_H
#define PDS_WRITEBACK_WRITEBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "pdstrace/http_client.h"

/* Durable write-back of traced NHS numbers to the case-management system (DESIGN.md §5).
 * The queue is a Redis stream read by a consumer group, so a write-back survives a crash
 * of pds-trace or of the case system, and several instances share the work. The NHS
 * number travels sealed with AES-GCM: Redis never holds it in clear. See
 * docs/internals/writeback.md. */
struct writeback_queue;
struct writeback_worker;
struct redis_conn;
struct metrics;

/* One write-back, as a trace hands it over; copied. */
struct writeback_item {
    char trace_id[37];   /* the Idempotency-Key */
    char case_id[65];    /* 1-64 characters of A-Za-z0-9._:- */
    char nhs_number[11]; /* ten digits, valid */
    double score;
    uint64_t traced_at_ms; /* Unix time in ms */
};

struct writeback_config {
    const char *prefix;         /* redis.key_prefix */
    const char *base_url;       /* case.base_url; "" or NULL: the worker is not started */
    const char *token;          /* bearer token (from case.token_file); NULL or "": none */
    struct http_client_tls tls; /* case.ca_file etc.; borrowed */
    unsigned timeout_ms;        /* case.timeout_ms */
    unsigned concurrency;       /* case.concurrency */
    unsigned retry_initial_ms;  /* case.retry_initial_ms */
    unsigned retry_max_ms;      /* case.retry_max_ms */
    unsigned reclaim_idle_ms;   /* case.reclaim_idle_ms */
    unsigned max_age_s;         /* case.max_age_s */
    struct metrics *metrics;    /* borrowed, outlives queue and worker; NULL: none */
};

/* ---- the queue: enqueue and the operator's view, on the service's Redis connection ---- */

/* redis is borrowed and outlives the queue; secret is borrowed (keys derived from it are
 * kept); cfg is copied (its strings too). */
int writeback_queue_new(struct writeback_queue **out, struct redis_conn *redis, const void *secret,
                        size_t secret_len, const struct writeback_config *cfg);
/* NULL is fine. Commands in flight still call back once Redis answers (or redis_conn_free
 * cancels them); the memory goes after the last of them. */
void writeback_queue_free(struct writeback_queue *q);

/* status 0: the write-back is in the stream (durable as Redis is). Otherwise it is not,
 * and nothing will be written. Fails at once (ERR_INVALID_INPUT for a bad item: case_id,
 * trace_id, a number failing modulus 11, a score outside 0..1; ERR_UNAVAILABLE while Redis
 * is not connected) or calls back exactly once, never from inside the call. */
typedef void writeback_enqueue_cb(int status, void *arg);
int writeback_enqueue(struct writeback_queue *q, const struct writeback_item *item,
                      writeback_enqueue_cb *cb, void *arg);

struct writeback_dead {
    char trace_id[37];
    char case_id[65];
    unsigned attempts;
    char last_error[128]; /* "HTTP 422", "timeout", ...: never a number or demographics */
    char dead_at[25];     /* ISO 8601 UTC */
};

struct writeback_backlog {
    uint64_t depth;          /* write-backs not yet delivered, dead letters excluded */
    double oldest_pending_s; /* age of the oldest of them; 0 when none */
    uint64_t retrying;       /* waiting for a retry */
    size_t n_dead;
    struct writeback_dead *dead; /* n_dead of them, oldest first */
};

/* GET /v1/writebacks. backlog is borrowed, valid until cb returns. */
typedef void writeback_backlog_cb(int status, const struct writeback_backlog *b, void *arg);
int writeback_backlog(struct writeback_queue *q, writeback_backlog_cb *cb, void *arg);

/* POST /v1/writebacks/{trace_id}/retry: a dead letter back into the queue. status
 * ERR_NOT_FOUND when there is no such dead letter. */
typedef void writeback_retry_cb(int status, void *arg);
int writeback_retry(struct writeback_queue *q, const char *trace_id, writeback_retry_cb *cb,
                    void *arg);

/* The last backlog figures the worker saw (refreshed every few seconds), for /readyz and
 * /metrics without a Redis round trip. */
void writeback_queue_last_backlog(const struct writeback_queue *q, uint64_t *depth,
                                  double *oldest_pending_s);

/* Reads the case system's bearer token (case.token_file): trailing whitespace is dropped,
 * and the rest must be 1-4096 visible ASCII characters. out must not be initialised; on
 * success it holds the token (buf_wipe it), on failure it is empty. Returns 0 or
 * ERR_CONFIG. */
struct buf;
int writeback_token_load(const char *path, struct buf *out);

/* ---- the worker: delivery, retries, dead letters ---- */

/* Asked just before every delivery: objections_check's contract (0: deliver; > 0: an
 * objection, drop and audit writeback_withheld; < 0: cannot tell now, try again later). */
typedef int writeback_withheld_fn(void *arg, const char *case_id, const char *nhs_number);

/* How long one XREADGROUP blocks. The worker's own connection must have a command_timeout_ms
 * above it, or every idle read would time out and drop the connection. */
#define WRITEBACK_READ_BLOCK_MS 2000u

/* blocking is a Redis connection of the worker's own (blocking reads), borrowed; http is
 * the service's shared client; q is borrowed and outlives the worker. cfg is copied (the
 * base URL and token too), except cfg->tls, which is borrowed. Starts reading at once. */
int writeback_worker_new(struct writeback_worker **out, uv_loop_t *loop, struct http_client *http,
                         struct redis_conn *blocking, struct writeback_queue *q,
                         writeback_withheld_fn *withheld, void *withheld_arg,
                         const struct writeback_config *cfg);

/* Stops reading; deliveries in flight are abandoned unacknowledged (another instance, or
 * this one after a restart, reclaims them). NULL is fine. */
void writeback_worker_free(struct writeback_worker *w);

#endif
