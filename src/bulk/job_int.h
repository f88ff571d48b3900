#ifndef PDS_TRACE_BULK_JOB_INT_H
#define PDS_TRACE_BULK_JOB_INT_H

/* Shared by the files of HTTP bulk jobs (job_*.c) only: the store's state, the keys of a
 * job, sealing, the Lua scripts. The layout in Redis is in docs/internals/bulk.md, "HTTP
 * jobs". */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "pdstrace/bulk_job.h"
#include "pdstrace/bulk_tracer.h"
#include "pdstrace/crypto.h"
#include "pdstrace/list.h"
#include "run_int.h" /* struct bulk_record_copy */

struct buf;
struct bulk_csv_record;
struct redisReply;

#define BJ_GROUP       "workers"
#define BJ_PREFIX_MAX  64
#define BJ_KEY_MAX     (BJ_PREFIX_MAX + 64)
#define BJ_JOB_KEY_MAX (BJ_KEY_MAX + BULK_JOB_ID_SIZE + 8)
#define BJ_OWNER_MAX   64                 /* an API key name */
#define BJ_RECORD_MAX  (8u * 1024 * 1024) /* a record opened back: 64 fields of 64 KiB */

/* The keys of one job. */
struct bj_keys {
    char meta[BJ_JOB_KEY_MAX]; /* hash: owner, format, header (sealed), had_bom, state, uploaded,
                              rows_added, rows_total, rows_done, o:<outcome>, error,
                              created_at, done_at */
    char in[BJ_JOB_KEY_MAX];   /* hash row -> sealed input row, until the row is done */
    char out[BJ_JOB_KEY_MAX];  /* hash row -> sealed stored result (struct bj_stored) */
};

struct bulk_jobs {
    struct redis_conn *redis;
    struct metrics *metrics;
    char stream[BJ_KEY_MAX];     /* {prefix}bulk:rows: entries job, row; group "workers" */
    char jobs[BJ_KEY_MAX];       /* {prefix}bulk:jobs: zset job id -> created_at ms */
    char job_prefix[BJ_KEY_MAX]; /* {prefix}bulk:job: */
    char retention[16];          /* seconds, as text for the scripts */
    unsigned char key[CRYPTO_KEY_LEN];
    unsigned refs; /* commands in flight, plus one until freed */
    bool closed;
};

/* A reply's callback through bj_send: reply is borrowed, NULL unless status is 0. */
typedef void bj_reply_fn(int status, struct redisReply *reply, void *arg);

/* Sends a command over the store's connection (lens may be NULL for C strings). Returns 0
 * and calls fn exactly once, or ERR_UNAVAILABLE when closed / not connected, UV_ENOMEM. */
int bj_send(struct bulk_jobs *s, bj_reply_fn *fn, void *arg, int argc, const char **argv,
            const size_t *lens);

void bj_keys_of(const struct bulk_jobs *s, const char *job_id, struct bj_keys *k);

/* A job id as we make them (a lower-case UUID): anything else names no job. */
bool bj_id_valid(const char *id);

/* Wall-clock ms: times are compared across instances. */
uint64_t bj_now_ms(void);

/* A record (the header, or a data row numbered row) sealed as "<n_fields>\n<fields as CSV>"
 * with the associated data "<what>:<job_id>:<row>", appended to out. */
int bj_seal_record(const struct bulk_jobs *s, const char *what, const char *job_id, uint64_t row,
                   const struct bulk_csv_record *rec, struct buf *out);

/* The reverse, into c (initialised with buf_init). Returns 0, ERR_PARSE (tampered, another
 * key or place, or not one record) or UV_ENOMEM. */
int bj_open_record(const struct bulk_jobs *s, const char *what, const char *job_id, uint64_t row,
                   const char *sealed, size_t n, struct bulk_record_copy *c);

/* Plain bytes sealed and opened the same way. */
int bj_seal(const struct bulk_jobs *s, const char *what, const char *job_id, uint64_t row,
            const char *p, size_t n, struct buf *out);
int bj_open(const struct bulk_jobs *s, const char *what, const char *job_id, uint64_t row,
            const char *sealed, size_t n, struct buf *out);

/* A record's plain form, "<n_fields>\n<fields as CSV>", appended to out (all or nothing),
 * and the reverse into c. bj_record_parse returns 0, ERR_PARSE (not one record) or
 * UV_ENOMEM. */
int bj_record_text(const struct bulk_csv_record *rec, struct buf *out);
int bj_record_parse(const char *p, size_t n, struct bulk_record_copy *c);

/* ---- a row's result as stored (job_answer.c) ---- */

/* The stored value's plain form stays under this: the input row's (which fits
 * BJ_RECORD_MAX, or the upload would have failed) and the answer's few hundred bytes. */
#define BJ_STORED_MAX (BJ_RECORD_MAX + 4096)
#define BJ_WHY_MAX    192 /* a reason or note with its NUL, as a bulk task's why */

/* A row's result as it is kept in the job's out hash: the answer, not the output row, so
 * that the output row is written at download, after the objection check (DESIGN.md §3:
 * an objection recorded after the row was traced still withholds its number). */
struct bj_stored {
    struct bulk_answer answer; /* answer.why points into why, or is NULL */
    char why[BJ_WHY_MAX];
    char case_id[65];              /* what an objection by case is checked against; "" */
    struct bulk_record_copy input; /* the input row; raw initialised by the caller */
};

/* Seals row's answer a, its case_id (NULL or "": none) and its input record as the
 * stored result "result:<job_id>:<row>", appended to out. Returns 0 or a buf error. */
int bj_answer_seal(const struct bulk_jobs *s, const char *job_id, uint64_t row,
                   const struct bulk_answer *a, const char *case_id,
                   const struct bulk_csv_record *input, struct buf *out);

/* The reverse, into st (st->input.raw initialised with buf_init). Returns 0, ERR_PARSE
 * (tampered, another key or place, or malformed) or UV_ENOMEM. */
int bj_answer_open(const struct bulk_jobs *s, const char *job_id, uint64_t row, const char *sealed,
                   size_t n, struct bj_stored *st);

/* What a job's meta hash holds, parsed from HGETALL. */
struct bj_meta {
    char owner[BJ_OWNER_MAX];
    enum bulk_format format;
    bool had_bom;
    const char *header; /* sealed; borrowed from the reply */
    size_t header_len;
    struct bulk_job_info info;
};

/* Parses an HGETALL reply. Returns 0, ERR_NOT_FOUND (empty: no such job) or ERR_PARSE. */
int bj_meta_parse(const struct redisReply *r, struct bj_meta *m);

/* The job's layout and header record from its meta. Returns 0, ERR_PARSE or UV_ENOMEM. */
int bj_meta_header(const struct bulk_jobs *s, const char *job_id, const struct bj_meta *m,
                   struct bulk_layout *l, struct bulk_record_copy *header);

/* The scripts (EVAL): KEYS and ARGV are listed in job_scripts.c next to each. */
extern const char bj_script_create[];
extern const char bj_script_append[];
extern const char bj_script_uploaded[];
extern const char bj_script_fetch[];
extern const char bj_script_finish[];
extern const char bj_script_fail[];
extern const char bj_script_drop[];
extern const char bj_script_delete[];
extern const char bj_script_count[];

/* ---- the worker (job_worker.c: reading, reclaiming, the tick; job_row.c: one row) ---- */

#define BJ_ENTRY_ID_MAX 48 /* a stream id, "ms-seq" */

enum bj_row_state {
    BJ_ROW_FETCHING, /* the fetch script is in flight */
    BJ_ROW_TRACING,  /* in the owner's bulk tracer */
    BJ_ROW_SETTLING, /* the finish, fail or drop script is in flight */
};

/* The bulk tracer of one owner: audit lines name the caller per tracer. */
struct bj_owner {
    struct list_node link; /* in w->owners */
    char name[BJ_OWNER_MAX];
    struct bulk_tracer *tracer;
};

/* One stream entry this consumer holds: a row of a job. */
struct bj_row {
    struct list_node link; /* in w->held */
    struct bulk_worker *w;
    char entry[BJ_ENTRY_ID_MAX];
    char job[BULK_JOB_ID_SIZE];
    uint64_t row;
    enum bj_row_state state;
    uint64_t fresh_ms; /* uv_now when we last (re)claimed it */
    struct bulk_layout layout;
    struct bulk_record_copy record;
    struct bulk_task task;
};

struct bulk_worker {
    uv_loop_t *loop;
    struct bulk_jobs *s;
    struct redis_conn *blocking; /* XREADGROUP BLOCK only */
    struct bulk_worker_config cfg;
    char consumer[128]; /* host-pid-random: unique for this worker's life */
    uv_timer_t tick;
    struct list_node held;   /* struct bj_row */
    struct list_node owners; /* struct bj_owner */
    unsigned n_held;
    unsigned cmds; /* worker-level commands in flight */
    bool reading, claiming, counting, group_ready, group_creating;
    bool draining, closing, tick_closed;
    char claim_cursor[BJ_ENTRY_ID_MAX];
    uint64_t next_claim_ms, next_count_ms; /* uv_now deadlines */
};

/* Starts a held row (job_row.c); it ends in bj_worker_release. */
void bj_row_start(struct bj_row *r);

/* A row is settled or let go: unlinks and frees it, then reads more (job_worker.c). */
void bj_worker_release(struct bj_row *r);

/* The tracer for owner, made on first use; NULL when it cannot be made. */
struct bulk_tracer *bj_worker_tracer(struct bulk_worker *w, const char *owner);

#endif
