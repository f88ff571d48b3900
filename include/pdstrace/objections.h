#ifndef PDS_STORE_OBJECTIONS_H
#define PDS_STORE_OBJECTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* The objection registry (DESIGN.md §3, §8): a person may object to the council's use of
 * their NHS number. Objections live in Redis with the case id and NHS number only as
 * HMACs (for lookup) plus an AES-GCM sealed record (to answer GET): no NHS number, name or
 * note in clear. Every instance keeps the HMACs in memory, loaded at start and kept
 * current from Redis, so a check never waits on Redis; a copy not confirmed current within
 * max_staleness_ms fails closed. */
struct objections;
struct redis_conn;
struct metrics;

#define OBJECTION_CASE_ID_MAX     64
#define OBJECTION_RECORDED_BY_MAX 200
#define OBJECTION_NOTE_MAX        1000

struct objection {
    char case_id[OBJECTION_CASE_ID_MAX + 1];
    char nhs_number[11]; /* "" when the objection names no number */
    char recorded_by[OBJECTION_RECORDED_BY_MAX + 1];
    char note[OBJECTION_NOTE_MAX + 1]; /* "" when none */
    char recorded_at[25];              /* ISO 8601 UTC, "2026-12-02T10:15:00Z"; set by put */
};

struct objections_config {
    const char *prefix;        /* redis.key_prefix */
    unsigned max_staleness_ms; /* objections.max_staleness_ms */
    struct metrics *metrics;   /* borrowed, outlives the registry; NULL: none */
};

/* redis is borrowed and must outlive the registry; secret is borrowed (only keys derived
 * from it are kept). Starts loading at once. Returns 0 or a negative code. */
int objections_new(struct objections **out, uv_loop_t *loop, struct redis_conn *redis,
                   const void *secret, size_t secret_len, const struct objections_config *cfg);

/* Operations in flight complete with UV_ECANCELED, inside this call. NULL is fine. */
void objections_free(struct objections *o);

/* What a check found: bits, both may be set. */
#define OBJECTIONS_BY_CASE   1
#define OBJECTIONS_BY_NUMBER 2

/* Checks the in-memory copy only; never waits. case_id and nhs_number may be NULL or "".
 * Returns 0 (no objection), OBJECTIONS_BY_CASE | OBJECTIONS_BY_NUMBER, or
 * ERR_OBJECTIONS_UNAVAILABLE while the copy is not confirmed current (never loaded, or
 * not confirmed within max_staleness_ms): the caller must then give and write no number. */
int objections_check(const struct objections *o, const char *case_id, const char *nhs_number);

/* Whether the copy is confirmed current now (for /readyz), and how many it holds. */
bool objections_current(const struct objections *o);
size_t objections_count(const struct objections *o);

/* stored is borrowed, valid until cb returns. created: a new objection (201), else it
 * replaced one (200). The change is in this instance's copy before cb runs. */
typedef void objections_put_cb(int status, bool created, const struct objection *stored, void *arg);
/* status ERR_NOT_FOUND when there is none. */
typedef void objections_get_cb(int status, const struct objection *obj, void *arg);
typedef void objections_delete_cb(int status, void *arg);

/* Each either fails at once (no callback) or calls cb exactly once, never from inside
 * the call. Redis failures are ERR_UNAVAILABLE or ERR_UPSTREAM_TIMEOUT. obj and case_id
 * are copied; they are not validated here (the API does that). */
int objections_put(struct objections *o, const struct objection *obj, objections_put_cb *cb,
                   void *arg);
int objections_get(struct objections *o, const char *case_id, objections_get_cb *cb, void *arg);
int objections_delete(struct objections *o, const char *case_id, objections_delete_cb *cb,
                      void *arg);

#endif
