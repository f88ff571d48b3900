#include "case_store.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "pdstrace/err.h"
#include "pdstrace/list.h"

/* A remembered key, in the order keys arrived, so that the oldest can be forgotten. Its
 * entry in the keys object is the answer's text alone, which also names the case and the
 * number: one string per key keeps a full table near 50 MB. */
struct key_node {
    struct list_node link;
    char key[];
};

struct case_store {
    json_t *clients; /* case_id -> record (case_store_client's fields) */
    json_t *keys;    /* Idempotency-Key -> the answer's text (reply_text) */
    struct list_node order;
    size_t nkeys, max_keys;
};

int case_store_new(struct case_store **out, size_t max_keys)
{
    *out = NULL;
    if (max_keys == 0)
        return ERR_INVALID_INPUT;
    struct case_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return UV_ENOMEM;
    list_init(&s->order);
    s->max_keys = max_keys;
    s->clients = json_object();
    s->keys = json_object();
    if (s->clients == NULL || s->keys == NULL) {
        case_store_free(s);
        return UV_ENOMEM;
    }
    *out = s;
    return 0;
}

static void forget_keys(struct case_store *s)
{
    struct list_node *n, *tmp;
    LIST_FOREACH_SAFE(n, tmp, &s->order)
    {
        list_remove(n);
        free(LIST_ENTRY(n, struct key_node, link));
    }
    s->nkeys = 0;
}

void case_store_free(struct case_store *s)
{
    if (s == NULL)
        return;
    forget_keys(s);
    json_decref(s->clients);
    json_decref(s->keys);
    free(s);
}

void case_store_clear(struct case_store *s)
{
    forget_keys(s);
    json_object_clear(s->clients);
    json_object_clear(s->keys);
}

static void bump(json_t *record, const char *counter)
{
    json_t *v = json_object_get(record, counter);
    json_integer_set(v, json_integer_value(v) + 1);
}

/* Whether the answer held under a key was for case_id and nhs. */
static int same_write(const char *held, const char *case_id, const char *nhs, bool *same)
{
    json_t *j = json_loads(held, 0, NULL);
    if (j == NULL)
        return UV_ENOMEM;
    *same = strcmp(json_string_value(json_object_get(j, "case_id")), case_id) == 0 &&
            strcmp(json_string_value(json_object_get(j, "nhs_number")), nhs) == 0;
    json_decref(j);
    return 0;
}

static int duplicate(json_t *k, json_t *clients, const char *case_id, const struct case_write *w,
                     enum case_outcome *outcome, const char **reply)
{
    bool same = false;
    int err = same_write(json_string_value(k), case_id, w->nhs_number, &same);
    if (err)
        return err;
    *outcome = same ? CASE_DUPLICATE : CASE_CONFLICT;
    *reply = same ? json_string_value(k) : NULL;
    if (same)
        bump(json_object_get(clients, case_id), "duplicates");
    return 0;
}

/* The client's record, made (with zero counts) when the case is new; NULL when out of
 * memory. */
static json_t *record_for(struct case_store *s, const char *case_id)
{
    json_t *r = json_object_get(s->clients, case_id);
    if (r != NULL)
        return r;
    r = json_pack("{s:s,s:s,s:s,s:s,s:s,s:f,s:i,s:i}", "case_id", case_id, "nhs_number", "",
                  "nhs_number_status", "01", "trace_id", "", "traced_at", "", "score", 0.0,
                  "writes", 0, "duplicates", 0);
    if (r == NULL || json_object_set_new(s->clients, case_id, r) != 0)
        return NULL;
    return r;
}

static int record_write(json_t *r, const struct case_write *w)
{
    int err = json_object_set_new(r, "nhs_number", json_string(w->nhs_number));
    err |= json_object_set_new(r, "trace_id", json_string(w->trace_id));
    err |= json_object_set_new(r, "traced_at", json_string(w->traced_at));
    err |= json_object_set_new(r, "score", json_real(w->score));
    bump(r, "writes");
    return err ? UV_ENOMEM : 0;
}

/* The answer to a first write: the record as written, with the version (the client's write
 * count) it became, so that a replay shows which write it repeats. */
static char *reply_text(const char *case_id, const struct case_write *w, json_int_t version)
{
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:f,s:I}", "case_id", case_id, "nhs_number",
                          w->nhs_number, "nhs_number_status", "01", "trace_id", w->trace_id,
                          "traced_at", w->traced_at, "score", w->score, "version", version);
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    json_decref(j);
    return text;
}

static void evict_oldest(struct case_store *s)
{
    struct key_node *old = LIST_ENTRY(list_first(&s->order), struct key_node, link);
    list_remove(&old->link);
    json_object_del(s->keys, old->key);
    free(old);
    s->nkeys--;
}

/* Everything that can fail is allocated before anything changes. */
static int deliver(struct case_store *s, const char *case_id, const char *key,
                   const struct case_write *w, const char **reply)
{
    json_t *r = record_for(s, case_id);
    if (r == NULL)
        return UV_ENOMEM;
    size_t klen = strlen(key);
    json_int_t version = json_integer_value(json_object_get(r, "writes")) + 1;
    char *text = reply_text(case_id, w, version);
    struct key_node *node = malloc(sizeof(*node) + klen + 1);
    json_t *entry = text != NULL ? json_string(text) : NULL;
    free(text);
    if (node == NULL || entry == NULL || json_object_set_new(s->keys, key, entry) != 0) {
        free(node);
        return UV_ENOMEM;
    }
    memcpy(node->key, key, klen + 1);
    list_push_tail(&s->order, &node->link);
    if (++s->nkeys > s->max_keys)
        evict_oldest(s);
    *reply = json_string_value(entry);
    return record_write(r, w);
}

int case_store_apply(struct case_store *s, const char *case_id, const char *key,
                     const struct case_write *w, enum case_outcome *outcome, const char **reply)
{
    json_t *k = json_object_get(s->keys, key);
    if (k != NULL)
        return duplicate(k, s->clients, case_id, w, outcome, reply);
    *outcome = CASE_DELIVERED;
    return deliver(s, case_id, key, w, reply);
}

json_t *case_store_client(const struct case_store *s, const char *case_id)
{
    const json_t *r = json_object_get(s->clients, case_id);
    if (r == NULL || json_integer_value(json_object_get(r, "writes")) == 0)
        return NULL;
    return json_deep_copy(r);
}

size_t case_store_clients(const struct case_store *s)
{
    return json_object_size(s->clients);
}

size_t case_store_keys(const struct case_store *s)
{
    return s->nkeys;
}
