#include "writeback_int.h"

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"

uint64_t wb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void wb_iso8601(uint64_t ms, char out[25])
{
    time_t secs = (time_t)(ms / 1000u);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL || strftime(out, 25, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 25, "1970-01-01T00:00:00Z");
}

int wb_keys_init(struct wb_keys *k, const char *prefix)
{
    const char *p = prefix != NULL ? prefix : "";
    if (strlen(p) >= WB_PREFIX_MAX)
        return ERR_INVALID_INPUT;
    snprintf(k->stream, sizeof(k->stream), "%swriteback", p);
    snprintf(k->pending, sizeof(k->pending), "%swriteback:pending", p);
    snprintf(k->delayed, sizeof(k->delayed), "%swriteback:delayed", p);
    snprintf(k->entries, sizeof(k->entries), "%swriteback:delayed:entries", p);
    snprintf(k->dead, sizeof(k->dead), "%swriteback:dead", p);
    return 0;
}

/* Copies a bulk string into out (size bytes) when it fits. */
static int copy_str(const redisReply *r, char *out, size_t size)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len >= size)
        return ERR_PARSE;
    memcpy(out, r->str, r->len);
    out[r->len] = '\0';
    return 0;
}

static int copy_u64(const redisReply *r, uint64_t *out)
{
    char text[24], *end = NULL;
    if (copy_str(r, text, sizeof(text)) != 0 || text[0] < '0' || text[0] > '9')
        return ERR_PARSE;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0')
        return ERR_PARSE;
    *out = v;
    return 0;
}

/* One field of the entry, by name; unknown fields are ignored (a later version may add
 * some). */
static int set_field(struct wb_entry *e, const redisReply *name, const redisReply *v)
{
    uint64_t n = 0;
    const char *f = name->type == REDIS_REPLY_STRING ? name->str : "";
    if (strcmp(f, "trace_id") == 0)
        return copy_str(v, e->trace_id, sizeof(e->trace_id));
    if (strcmp(f, "case_id") == 0)
        return copy_str(v, e->case_id, sizeof(e->case_id));
    if (strcmp(f, "sealed") == 0)
        return copy_str(v, e->sealed, sizeof(e->sealed));
    if (strcmp(f, "score") == 0)
        return copy_str(v, e->score, sizeof(e->score));
    if (strcmp(f, "traced_at") == 0)
        return copy_u64(v, &e->traced_at_ms);
    if (strcmp(f, "enqueued_at") == 0)
        return copy_u64(v, &e->enqueued_at_ms);
    if (strcmp(f, "attempts") == 0) {
        int err = copy_u64(v, &n);
        e->attempts = n > 1000000u ? 1000000u : (unsigned)n;
        return err;
    }
    return 0;
}

int wb_entry_parse(const redisReply *r, struct wb_entry *e)
{
    memset(e, 0, sizeof(*e));
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        copy_str(r->element[0], e->id, sizeof(e->id)) != 0)
        return ERR_PARSE;
    const redisReply *f = r->element[1];
    if (f == NULL || f->type != REDIS_REPLY_ARRAY || f->elements % 2 != 0)
        return ERR_PARSE;
    for (size_t i = 0; i < f->elements; i += 2) {
        if (set_field(e, f->element[i], f->element[i + 1]) != 0)
            return ERR_PARSE;
    }
    bool complete = e->trace_id[0] && e->case_id[0] && e->sealed[0] && e->score[0];
    return complete ? 0 : ERR_PARSE;
}

int wb_entry_json(const struct wb_entry *e, struct buf *out)
{
    /* Every value is an id, hex or a number written by us: nothing needs escaping. */
    return buf_appendf(out,
                       "{\"trace_id\":\"%s\",\"case_id\":\"%s\",\"sealed\":\"%s\",\"score\":\"%s\","
                       "\"traced_at\":\"%llu\",\"enqueued_at\":\"%llu\",\"attempts\":\"%u\"}",
                       e->trace_id, e->case_id, e->sealed, e->score,
                       (unsigned long long)e->traced_at_ms, (unsigned long long)e->enqueued_at_ms,
                       e->attempts);
}

int wb_entry_open(const struct writeback_queue *q, const struct wb_entry *e, char out[11])
{
    unsigned char sealed[(WB_SEALED_HEX - 1) / 2];
    size_t n = strlen(e->sealed);
    if (n != 2 * sizeof(sealed) || crypto_unhex(e->sealed, sealed, sizeof(sealed)) != 0)
        return ERR_PARSE;
    struct buf plain;
    buf_init(&plain, 64);
    int err = crypto_open(q->key, e->trace_id, strlen(e->trace_id), sealed, sizeof(sealed), &plain);
    if (!err && buf_len(&plain) != 10)
        err = ERR_PARSE;
    if (!err)
        memcpy(out, buf_cstr(&plain), 11);
    buf_wipe(&plain);
    return err ? ERR_PARSE : 0;
}
