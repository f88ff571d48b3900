#ifndef PDS_TRACE_BULK_JOB_H
#define PDS_TRACE_BULK_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "pdstrace/bulk_format.h"

/* Bulk jobs over HTTP (DESIGN.md §3 "Bulk"), kept in Redis so that every instance sharing
 * it works on every job: the store (a job's upload, its status, its result in batches, its
 * deletion) and the worker (each instance a consumer in one group on one stream of rows of
 * every job). Row contents and results are sealed (AES-256-GCM, associated data: the
 * job id and the row's number); counts, states, ids and owners are clear. A row's result
 * is stored and counted once, however many instances trace it. See docs/internals/bulk.md,
 * "HTTP jobs". */
struct bulk_jobs;
struct bulk_upload;
struct bulk_result;
struct bulk_worker;
struct metrics;
struct objections;
struct redis_conn;
struct trace_service;

#define BULK_JOB_ID_SIZE 37 /* a UUIDv4 and its NUL */

enum bulk_job_state {
    BULK_JOB_QUEUED, /* no row started yet (the upload may still be going on) */
    BULK_JOB_RUNNING,
    BULK_JOB_DONE,   /* every row has its result */
    BULK_JOB_FAILED, /* a row could not be read back from Redis (error says why) */
};

/* The outcomes a job counts: the trace outcomes, then invalid and error (as the
 * pdstrace_bulk_rows_total labels). */
#define BULK_JOB_OUTCOMES 7

/* "matched" ... "objection", "invalid", "error"; NULL past the last. */
const char *bulk_job_outcome_name(unsigned i);
/* "queued" | "running" | "done" | "failed". */
const char *bulk_job_state_name(enum bulk_job_state s);

/* What GET /v1/bulk/{job_id} shows. */
struct bulk_job_info {
    enum bulk_job_state state;
    bool uploaded;       /* the whole file is in; rows_total is final */
    uint64_t rows_total; /* data rows of the file (so far, while uploading) */
    uint64_t rows_done;
    uint64_t outcome[BULK_JOB_OUTCOMES]; /* by bulk_job_outcome_name's index */
    char error[160];                     /* FAILED: why; otherwise "" */
};

struct bulk_jobs_config {
    const char *prefix;      /* redis.key_prefix; copied */
    unsigned retention_s;    /* a job's keys live this long after its last change; 0: 604800 */
    struct metrics *metrics; /* borrowed; NULL: none. The store declares pdstrace_bulk_jobs */
};

/* ---- the store ---- */

/* The store over redis (borrowed, outlives it until bulk_jobs_close); the sealing key is
 * derived from secret (HKDF-SHA256, info "pds-trace bulk v1"), which is not kept. Returns
 * 0, UV_ENOMEM, ERR_INVALID_INPUT (prefix too long) or ERR_INTERNAL. */
int bulk_jobs_new(struct bulk_jobs **out, struct redis_conn *redis, const void *secret,
                  size_t secret_len, const struct bulk_jobs_config *cfg);

/* From now on nothing is sent to Redis: every call fails with ERR_UNAVAILABLE. The app
 * calls it before it frees the Redis connection. */
void bulk_jobs_close(struct bulk_jobs *s);

/* Commands in flight keep the memory until they are answered. NULL is fine. */
void bulk_jobs_free(struct bulk_jobs *s);

typedef void bulk_job_info_cb(int status, const struct bulk_job_info *info, void *arg);
typedef void bulk_job_cb(int status, void *arg);

/* The job's figures, for its owner (the API key name that created it). cb runs once:
 * status 0 with info (borrowed until cb returns), ERR_NOT_FOUND (no such job, or another
 * owner's), or ERR_UNAVAILABLE (Redis). Returns 0, or an error and never calls cb. */
int bulk_job_get(struct bulk_jobs *s, const char *job_id, const char *owner, bulk_job_info_cb *cb,
                 void *arg);

/* Deletes every key of the owner's job at once (its rows still in the stream are dropped
 * by the workers). cb: 0, ERR_NOT_FOUND or ERR_UNAVAILABLE. */
int bulk_job_delete(struct bulk_jobs *s, const char *job_id, const char *owner, bulk_job_cb *cb,
                    void *arg);

/* Counts the jobs by state into the pdstrace_bulk_jobs gauges (every instance sees every
 * job, so each reports the same figures) and forgets jobs whose keys are gone. cb may be
 * NULL. */
int bulk_jobs_count(struct bulk_jobs *s, bulk_job_cb *cb, void *arg);

/* ---- an upload (POST /v1/bulk) ---- */

typedef void bulk_upload_cb(int status, void *arg);

struct bulk_upload_config {
    const char *owner;       /* the API key name; copied */
    enum bulk_format format; /* AUTO: as the header says */
    bulk_upload_cb *on_room; /* after bulk_upload_busy() was true: 0 once the writes in flight
                                are below the bound again, or the error that ended the upload */
    bulk_upload_cb *on_done; /* once after bulk_upload_finish: 0 when every row is in Redis and
                                the job counts as uploaded */
    void *arg;
};

/* A new job with a fresh id; nothing is sent before its header arrives. Returns 0 or
 * UV_ENOMEM / ERR_UNAVAILABLE (closed). */
int bulk_upload_new(struct bulk_upload **out, struct bulk_jobs *s,
                    const struct bulk_upload_config *cfg);

const char *bulk_upload_job_id(const struct bulk_upload *u);

/* The next bytes of the CSV file (borrowed; copied as needed). The header creates the job;
 * rows are sealed, numbered from 1 in file order and sent in batches (each batch stores
 * them and adds them to the stream, where workers may start on them at once). Returns 0,
 * ERR_INVALID_INPUT (a bad header or unreadable CSV: bulk_upload_error says why, without
 * quoting data), UV_ENOMEM, or the Redis error that already ended the upload. */
int bulk_upload_feed(struct bulk_upload *u, const char *data, size_t len);

/* True while too many batches are in flight: stop feeding until on_room, which this
 * arms. */
bool bulk_upload_busy(struct bulk_upload *u);

/* The end of the file: the last row, then the job is marked uploaded with its row count
 * (and done at once if every row is already done). Returns 0 and calls on_done once, or
 * returns as bulk_upload_feed (an empty file has no header) and never calls it. */
int bulk_upload_finish(struct bulk_upload *u);

/* "the header has no birth_date column"; "" when none. */
const char *bulk_upload_error(const struct bulk_upload *u);

/* Data rows read so far. */
uint64_t bulk_upload_rows(const struct bulk_upload *u);

/* Gives the upload up (a refused or abandoned file, or after on_done): no callback runs any
 * more. With delete, the job goes from Redis (unless the store is closed, when it expires
 * after retention_s). Memory goes once Redis has answered what is in flight. NULL is fine. */
void bulk_upload_free(struct bulk_upload *u, bool delete_job);

/* ---- a result (GET /v1/bulk/{job_id}/result) ---- */

/* A piece of the result: data (borrowed until the call returns) and len > 0, or len 0 at
 * the end; or status non-zero when it cannot go on (ERR_UNAVAILABLE, ERR_NOT_FOUND when the
 * job went meanwhile, ERR_PARSE when a row cannot be opened, ERR_OBJECTIONS_UNAVAILABLE
 * when a row gives a number and the objection registry is not confirmed current). */
typedef void bulk_result_cb(int status, const char *data, size_t len, void *arg);

/* Looks the owner's job up; cb runs once as for bulk_job_get. When it says 0 and
 * BULK_JOB_DONE, read the result with bulk_result_read; either way free r after.
 * objections (borrowed, outlives r) is checked as the rows are read. Returns 0, or an
 * error and never calls cb (ERR_INVALID_INPUT without objections). */
int bulk_result_open(struct bulk_result **out, struct bulk_jobs *s, const char *job_id,
                     const char *owner, const struct objections *objections, bulk_job_info_cb *cb,
                     void *arg);

/* The next piece, in the input's format: the output header first (simple: the input's
 * header and the four answer columns; pds-mesh: its header record with the row count),
 * then the rows in file order, a batch at a time (a piece is about 256 KiB, or one row
 * when a row is larger). Each row is written out as it is read: a row that gives a
 * number whose case or number is now under objection is answered as an objection, the
 * number withheld (DESIGN.md §3), whenever its trace was. cb runs once per call. Returns
 * 0, ERR_INVALID_INPUT (not open, a read in flight, or after the end), or
 * ERR_OBJECTIONS_UNAVAILABLE (the registry is not confirmed current: nothing is read). */
int bulk_result_read(struct bulk_result *r, bulk_result_cb *cb, void *arg);

/* A read in flight never calls back. NULL is fine. */
void bulk_result_free(struct bulk_result *r);

/* ---- the worker (every `serve` instance) ---- */

struct bulk_worker_config {
    struct trace_service *traces; /* borrowed, outlives the worker */
    struct metrics *metrics;      /* borrowed; NULL: none (pdstrace_bulk_rows_total) */
    unsigned concurrency;         /* rows held by this instance at once; 0: 16 */
    unsigned reclaim_idle_ms;     /* rows idle this long on a dead consumer are taken; 0: 30000 */
    unsigned count_every_ms;      /* pdstrace_bulk_jobs refresh; 0: 5000 */
    unsigned max_attempts;        /* the bulk tracer's; 0: its default */
    unsigned retry_initial_ms;    /* the bulk tracer's; 0: its default */
};

/* The worker reads rows with XREADGROUP BLOCK on blocking (borrowed; its own connection,
 * with a command deadline above BULK_WORKER_READ_BLOCK_MS) and does everything else over
 * the store's. Each row goes through a bulk tracer whose audit lines name the job's owner.
 * Returns 0, ERR_INVALID_INPUT or UV_ENOMEM. */
#define BULK_WORKER_READ_BLOCK_MS 2000u
int bulk_worker_new(struct bulk_worker **out, uv_loop_t *loop, struct bulk_jobs *s,
                    struct redis_conn *blocking, const struct bulk_worker_config *cfg);

/* Takes no more rows (reads and reclaims stop); the rows in hand go on to their end. The
 * start of a graceful stop: the app calls it when it begins to drain. NULL is fine. */
void bulk_worker_drain(struct bulk_worker *w);

/* Stops reading and stops the tracers. Rows still tracing end when the trace service shuts
 * down (call trace_service_shutdown after this); unfinished rows stay pending in Redis and
 * another instance (or this one, restarted) reclaims them after reclaim_idle_ms. Memory
 * goes after the last callback; run the loop. NULL is fine. */
void bulk_worker_free(struct bulk_worker *w);

/* Rows this instance holds (for tests). */
unsigned bulk_worker_held(const struct bulk_worker *w);

#endif
