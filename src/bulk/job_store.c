/* The store of HTTP bulk jobs: its life cycle, the commands it sends, sealing, a job's
 * figures, its deletion and the count of jobs by state. */
#include "pdstrace/bulk_job.h"

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pdstrace/buf.h"
#include "pdstrace/bulk_csv.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/metrics.h"
#include "pdstrace/redis_conn.h"
#include "pdstrace/trace_result.h"
#include "job_int.h"

#define DEFAULT_RETENTION_S 604800u
#define COUNT_LIMIT         "10000" /* jobs counted at most per run */

static const struct metrics_family families[] = {
    {"pdstrace_bulk_jobs", METRICS_GAUGE,
     "HTTP bulk jobs in Redis by state (every instance reports the same figures)"},
};

static const char *const outcome_names[BULK_JOB_OUTCOMES] = {
    "matched", "potential_match", "no_match", "multiple_matches", "objection", "invalid", "error",
};

static const char *const state_names[] = {"queued", "running", "done", "failed"};

const char *bulk_job_outcome_name(unsigned i)
{
    return i < BULK_JOB_OUTCOMES ? outcome_names[i] : NULL;
}

const char *bulk_job_state_name(enum bulk_job_state s)
{
    return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

/* ---- life cycle and commands ---- */

int bulk_jobs_new(struct bulk_jobs **out, struct redis_conn *redis, const void *secret,
                  size_t secret_len, const struct bulk_jobs_config *cfg)
{
    const char *p = cfg->prefix != NULL ? cfg->prefix : "";
    if (redis == NULL || strlen(p) >= BJ_PREFIX_MAX)
        return ERR_INVALID_INPUT;
    int err = metrics_declare(cfg->metrics, families, ARRAY_SIZE(families));
    struct bulk_jobs *s = err ? NULL : calloc(1, sizeof(*s));
    if (s == NULL)
        return UV_ENOMEM;
    s->redis = redis;
    s->metrics = cfg->metrics;
    s->refs = 1;
    snprintf(s->stream, sizeof(s->stream), "%sbulk:rows", p);
    snprintf(s->jobs, sizeof(s->jobs), "%sbulk:jobs", p);
    snprintf(s->job_prefix, sizeof(s->job_prefix), "%sbulk:job:", p);
    snprintf(s->retention, sizeof(s->retention), "%u",
             cfg->retention_s != 0 ? cfg->retention_s : DEFAULT_RETENTION_S);
    err = crypto_hkdf_sha256(NULL, 0, secret, secret_len, "pds-trace bulk v1", s->key,
                             sizeof(s->key));
    if (err) {
        bulk_jobs_free(s);
        return err;
    }
    *out = s;
    return 0;
}

static void unref(struct bulk_jobs *s)
{
    if (--s->refs > 0)
        return;
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

void bulk_jobs_close(struct bulk_jobs *s)
{
    if (s != NULL)
        s->closed = true;
}

void bulk_jobs_free(struct bulk_jobs *s)
{
    if (s == NULL)
        return;
    s->closed = true;
    OPENSSL_cleanse(s->key, sizeof(s->key));
    unref(s);
}

struct bj_call {
    struct bulk_jobs *s;
    bj_reply_fn *fn;
    void *arg;
};

static void on_reply(int status, struct redisReply *reply, void *arg)
{
    struct bj_call *c = arg;
    c->fn(status, reply, c->arg);
    unref(c->s);
    free(c);
}

int bj_send(struct bulk_jobs *s, bj_reply_fn *fn, void *arg, int argc, const char **argv,
            const size_t *lens)
{
    if (s->closed)
        return ERR_UNAVAILABLE;
    struct bj_call *c = malloc(sizeof(*c));
    if (c == NULL)
        return UV_ENOMEM;
    *c = (struct bj_call){s, fn, arg};
    int err = redis_conn_command_argv(s->redis, on_reply, c, argc, argv, lens);
    if (err) {
        free(c);
        return err;
    }
    s->refs++;
    return 0;
}

void bj_keys_of(const struct bulk_jobs *s, const char *job_id, struct bj_keys *k)
{
    snprintf(k->meta, sizeof(k->meta), "%s%.36s", s->job_prefix, job_id);
    snprintf(k->in, sizeof(k->in), "%s%.36s:in", s->job_prefix, job_id);
    snprintf(k->out, sizeof(k->out), "%s%.36s:out", s->job_prefix, job_id);
}

bool bj_id_valid(const char *id)
{
    return id != NULL && strlen(id) == BULK_JOB_ID_SIZE - 1 &&
           strspn(id, "0123456789abcdef-") == BULK_JOB_ID_SIZE - 1;
}

uint64_t bj_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- sealing ---- */

static void aad_of(const char *what, const char *job_id, uint64_t row, char out[96])
{
    snprintf(out, 96, "%s:%s:%llu", what, job_id, (unsigned long long)row);
}

int bj_seal(const struct bulk_jobs *s, const char *what, const char *job_id, uint64_t row,
            const char *p, size_t n, struct buf *out)
{
    char aad[96];
    aad_of(what, job_id, row, aad);
    return crypto_seal(s->key, aad, strlen(aad), p, n, out);
}

int bj_open(const struct bulk_jobs *s, const char *what, const char *job_id, uint64_t row,
            const char *sealed, size_t n, struct buf *out)
{
    char aad[96];
    aad_of(what, job_id, row, aad);
    return crypto_open(s->key, aad, strlen(aad), sealed, n, out);
}

int bj_record_text(const struct bulk_csv_record *rec, struct buf *out)
{
    size_t len0 = buf_len(out);
    int err = buf_appendf(out, "%zu\n", rec->n_fields);
    err = err ? err : bulk_csv_append(out, rec->field, rec->len, rec->n_kept, BULK_CSV_EXACT);
    if (err)
        buf_truncate(out, len0);
    return err;
}

int bj_seal_record(const struct bulk_jobs *s, const char *what, const char *job_id, uint64_t row,
                   const struct bulk_csv_record *rec, struct buf *out)
{
    struct buf plain;
    buf_init(&plain, BJ_RECORD_MAX);
    int err = bj_record_text(rec, &plain);
    err = err ? err : bj_seal(s, what, job_id, row, buf_cstr(&plain), buf_len(&plain), out);
    buf_wipe(&plain);
    return err;
}

struct one_record {
    struct bulk_record_copy *c;
    unsigned seen;
};

static int on_one_record(const struct bulk_csv_record *rec, void *arg)
{
    struct one_record *o = arg;
    return o->seen++ == 0 ? bulk_record_copy_set(o->c, rec) : ERR_PARSE;
}

int bj_record_parse(const char *p, size_t n, struct bulk_record_copy *c)
{
    const char *nl = memchr(p, '\n', n);
    char *end = NULL;
    unsigned long long fields = nl != NULL ? strtoull(p, &end, 10) : 0;
    if (nl == NULL || end != nl || fields == 0)
        return ERR_PARSE;
    struct one_record o = {c, 0};
    struct bulk_csv_reader *rd;
    int err = bulk_csv_reader_new(&rd, on_one_record, &o);
    if (err)
        return err;
    err = bulk_csv_feed(rd, nl + 1, n - (size_t)(nl + 1 - p));
    err = err ? err : bulk_csv_finish(rd);
    bulk_csv_reader_free(rd);
    if (err || o.seen != 1 || fields < c->n_kept)
        return err == UV_ENOMEM ? err : ERR_PARSE;
    c->n_fields = c->view.n_fields = (size_t)fields;
    return 0;
}

int bj_open_record(const struct bulk_jobs *s, const char *what, const char *job_id, uint64_t row,
                   const char *sealed, size_t n, struct bulk_record_copy *c)
{
    struct buf plain;
    buf_init(&plain, BJ_RECORD_MAX);
    int err = bj_open(s, what, job_id, row, sealed, n, &plain);
    err = err ? err : bj_record_parse(buf_cstr(&plain), buf_len(&plain), c);
    buf_wipe(&plain);
    return err == UV_ENOMEM ? err : err ? ERR_PARSE : 0;
}

/* ---- the meta hash ---- */

static uint64_t u64_of(const redisReply *v)
{
    return v->type == REDIS_REPLY_STRING ? strtoull(v->str, NULL, 10) : 0;
}

static void set_outcome(struct bulk_job_info *info, const char *name, const redisReply *v)
{
    for (unsigned i = 0; i < BULK_JOB_OUTCOMES; i++)
        if (strcmp(name, outcome_names[i]) == 0)
            info->outcome[i] = u64_of(v);
}

static void set_state(struct bulk_job_info *info, const char *name)
{
    for (unsigned i = 0; i < ARRAY_SIZE(state_names); i++)
        if (strcmp(name, state_names[i]) == 0)
            info->state = (enum bulk_job_state)i;
}

/* The fields of the meta hash that hold text; false when f is none of them. */
static bool set_text(struct bj_meta *m, const char *f, const redisReply *v)
{
    if (strcmp(f, "owner") == 0) {
        snprintf(m->owner, sizeof(m->owner), "%s", v->str);
    } else if (strcmp(f, "format") == 0) {
        if (bulk_format_parse(v->str, &m->format) != 0)
            m->format = BULK_FORMAT_AUTO;
    } else if (strcmp(f, "header") == 0) {
        m->header = v->str;
        m->header_len = v->len;
    } else if (strcmp(f, "state") == 0) {
        set_state(&m->info, v->str);
    } else if (strcmp(f, "error") == 0) {
        snprintf(m->info.error, sizeof(m->info.error), "%s", v->str);
    } else {
        return false;
    }
    return true;
}

/* One field of the meta hash; those not listed are ignored. */
static void set_meta(struct bj_meta *m, const char *f, const redisReply *v, uint64_t *added)
{
    if (set_text(m, f, v))
        return;
    if (strcmp(f, "had_bom") == 0)
        m->had_bom = strcmp(v->str, "1") == 0;
    else if (strcmp(f, "uploaded") == 0)
        m->info.uploaded = strcmp(v->str, "1") == 0;
    else if (strcmp(f, "rows_added") == 0)
        *added = u64_of(v);
    else if (strcmp(f, "rows_total") == 0)
        m->info.rows_total = u64_of(v);
    else if (strcmp(f, "rows_done") == 0)
        m->info.rows_done = u64_of(v);
    else if (strncmp(f, "o:", 2) == 0)
        set_outcome(&m->info, f + 2, v);
}

int bj_meta_parse(const redisReply *r, struct bj_meta *m)
{
    uint64_t added = 0;
    memset(m, 0, sizeof(*m));
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0)
        return ERR_PARSE;
    if (r->elements == 0)
        return ERR_NOT_FOUND;
    for (size_t i = 0; i < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING)
            set_meta(m, f->str, v, &added);
    }
    if (!m->info.uploaded)
        m->info.rows_total = added;
    return m->owner[0] != '\0' && m->format != BULK_FORMAT_AUTO && m->header != NULL ? 0
                                                                                     : ERR_PARSE;
}

int bj_meta_header(const struct bulk_jobs *s, const char *job_id, const struct bj_meta *m,
                   struct bulk_layout *l, struct bulk_record_copy *header)
{
    char why[160];
    int err = bj_open_record(s, "header", job_id, 0, m->header, m->header_len, header);
    if (err)
        return err;
    header->view.number = 1;
    return bulk_layout_read(l, m->format, &header->view, why, sizeof(why)) ? ERR_PARSE : 0;
}

/* ---- a job's figures ---- */

struct get_call {
    bulk_job_info_cb *cb;
    void *arg;
    char owner[BJ_OWNER_MAX];
};

static void on_get(int status, struct redisReply *reply, void *arg)
{
    struct get_call *g = arg;
    struct bj_meta m;
    if (status == 0)
        status = reply->type == REDIS_REPLY_ERROR ? ERR_UNAVAILABLE : bj_meta_parse(reply, &m);
    if (status == 0 && strcmp(m.owner, g->owner) != 0)
        status = ERR_NOT_FOUND;
    else if (status != 0 && status != ERR_NOT_FOUND)
        status = ERR_UNAVAILABLE;
    g->cb(status, status == 0 ? &m.info : NULL, g->arg);
    free(g);
}

int bulk_job_get(struct bulk_jobs *s, const char *job_id, const char *owner, bulk_job_info_cb *cb,
                 void *arg)
{
    if (!bj_id_valid(job_id) || owner == NULL || strlen(owner) >= BJ_OWNER_MAX)
        return ERR_NOT_FOUND;
    struct get_call *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return UV_ENOMEM;
    *g = (struct get_call){.cb = cb, .arg = arg};
    snprintf(g->owner, sizeof(g->owner), "%s", owner);
    struct bj_keys k;
    bj_keys_of(s, job_id, &k);
    const char *argv[] = {"HGETALL", k.meta};
    int err = bj_send(s, on_get, g, (int)ARRAY_SIZE(argv), argv, NULL);
    if (err)
        free(g);
    return err;
}

/* ---- deletion ---- */

struct delete_call {
    bulk_job_cb *cb;
    void *arg;
};

static void on_deleted(int status, struct redisReply *reply, void *arg)
{
    struct delete_call *d = arg;
    if (status == 0 && reply->type != REDIS_REPLY_INTEGER)
        status = ERR_UNAVAILABLE;
    else if (status == 0 && reply->integer == 0)
        status = ERR_NOT_FOUND;
    else if (status != 0)
        status = ERR_UNAVAILABLE;
    if (d->cb != NULL)
        d->cb(status, d->arg);
    free(d);
}

int bulk_job_delete(struct bulk_jobs *s, const char *job_id, const char *owner, bulk_job_cb *cb,
                    void *arg)
{
    if (!bj_id_valid(job_id) || owner == NULL)
        return ERR_NOT_FOUND;
    struct delete_call *d = malloc(sizeof(*d));
    if (d == NULL)
        return UV_ENOMEM;
    *d = (struct delete_call){cb, arg};
    struct bj_keys k;
    bj_keys_of(s, job_id, &k);
    const char *argv[] = {"EVAL", bj_script_delete, "4",   k.meta, k.in,
                          k.out,  s->jobs,          owner, job_id};
    int err = bj_send(s, on_deleted, d, (int)ARRAY_SIZE(argv), argv, NULL);
    if (err)
        free(d);
    return err;
}

/* ---- jobs by state ---- */

struct count_call {
    struct bulk_jobs *s;
    bulk_job_cb *cb;
    void *arg;
};

static void on_counted(int status, struct redisReply *reply, void *arg)
{
    struct count_call *c = arg;
    bool ok = status == 0 && reply->type == REDIS_REPLY_ARRAY &&
              reply->elements == ARRAY_SIZE(state_names);
    for (size_t i = 0; ok && i < reply->elements; i++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "state=\"%s\"", state_names[i]);
        metrics_set(c->s->metrics, "pdstrace_bulk_jobs", labels,
                    (double)reply->element[i]->integer);
    }
    if (c->cb != NULL)
        c->cb(ok ? 0 : ERR_UNAVAILABLE, c->arg);
    free(c);
}

int bulk_jobs_count(struct bulk_jobs *s, bulk_job_cb *cb, void *arg)
{
    struct count_call *c = malloc(sizeof(*c));
    if (c == NULL)
        return UV_ENOMEM;
    *c = (struct count_call){s, cb, arg};
    const char *argv[] = {"EVAL", bj_script_count, "1", s->jobs, s->job_prefix, COUNT_LIMIT};
    int err = bj_send(s, on_counted, c, (int)ARRAY_SIZE(argv), argv, NULL);
    if (err)
        free(c);
    return err;
}
