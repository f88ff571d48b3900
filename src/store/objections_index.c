#include "objections_int.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAP 64

/* The keys are HMACs, so their first bytes are already uniformly spread: no hashing. */
static size_t home(const struct obj_table *t, const unsigned char *key)
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return (size_t)h & (t->cap - 1);
}

/* The slot holding key, or the empty slot where it would go (cap > 0; the table is never
 * full, so the probe ends). */
static size_t probe(const struct obj_table *t, const unsigned char *key)
{
    size_t i = home(t, key);
    while (t->slots[i].used && memcmp(t->slots[i].key, key, OBJ_MAC_LEN) != 0)
        i = (i + 1) & (t->cap - 1);
    return i;
}

static const struct obj_slot *find(const struct obj_table *t, const unsigned char *key)
{
    if (t->len == 0)
        return NULL;
    const struct obj_slot *s = &t->slots[probe(t, key)];
    return s->used ? s : NULL;
}

static void table_free(struct obj_table *t)
{
    if (t->slots != NULL)
        OPENSSL_cleanse(t->slots, t->cap * sizeof(*t->slots));
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

/* Makes room for one more key, keeping the load factor at most one half. */
static int reserve(struct obj_table *t)
{
    if ((t->len + 1) * 2 <= t->cap)
        return 0;
    struct obj_table bigger = {calloc(t->cap ? t->cap * 2 : MIN_CAP, sizeof(struct obj_slot)),
                               t->cap ? t->cap * 2 : MIN_CAP, t->len};
    if (bigger.slots == NULL)
        return UV_ENOMEM;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].used)
            bigger.slots[probe(&bigger, t->slots[i].key)] = t->slots[i];
    table_free(t);
    *t = bigger;
    return 0;
}

/* Backward-shift deletion: later members of the probe run move up into the hole, so
 * lookups never need tombstones. */
static void remove_at(struct obj_table *t, size_t hole)
{
    size_t mask = t->cap - 1;
    for (size_t j = (hole + 1) & mask; t->slots[j].used; j = (j + 1) & mask) {
        size_t h = home(t, t->slots[j].key);
        /* The member at j may move to the hole unless its home lies cyclically in
         * (hole, j]. */
        bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
        if (!stays) {
            t->slots[hole] = t->slots[j];
            hole = j;
        }
    }
    memset(&t->slots[hole], 0, sizeof(t->slots[hole]));
    t->len--;
}

static void number_release(struct obj_table *numbers, const unsigned char *mac)
{
    if (numbers->len == 0)
        return;
    size_t i = probe(numbers, mac);
    if (numbers->slots[i].used && --numbers->slots[i].n == 0)
        remove_at(numbers, i);
}

static void number_hold(struct obj_table *numbers, const unsigned char *mac)
{
    struct obj_slot *s = &numbers->slots[probe(numbers, mac)];
    if (!s->used) {
        memcpy(s->key, mac, OBJ_MAC_LEN);
        s->used = true;
        numbers->len++;
    }
    s->n++;
}

void objections_index_init(struct objections_index *ix)
{
    memset(ix, 0, sizeof(*ix));
}

void objections_index_free(struct objections_index *ix)
{
    table_free(&ix->cases);
    table_free(&ix->numbers);
}

int objections_index_put(struct objections_index *ix, const unsigned char *case_mac,
                         const unsigned char *nhs_mac)
{
    /* Both tables grow first, so that nothing below can fail half-way. */
    int err = reserve(&ix->cases);
    err = err ? err : reserve(&ix->numbers);
    if (err)
        return err;
    struct obj_slot *s = &ix->cases.slots[probe(&ix->cases, case_mac)];
    if (s->used && s->has_val)
        number_release(&ix->numbers, s->val);
    if (!s->used) {
        memcpy(s->key, case_mac, OBJ_MAC_LEN);
        s->used = true;
        ix->cases.len++;
    }
    s->has_val = nhs_mac != NULL;
    if (nhs_mac != NULL) {
        memcpy(s->val, nhs_mac, OBJ_MAC_LEN);
        number_hold(&ix->numbers, nhs_mac);
    }
    return 0;
}

void objections_index_del(struct objections_index *ix, const unsigned char *case_mac)
{
    if (ix->cases.len == 0)
        return;
    size_t i = probe(&ix->cases, case_mac);
    if (!ix->cases.slots[i].used)
        return;
    if (ix->cases.slots[i].has_val)
        number_release(&ix->numbers, ix->cases.slots[i].val);
    remove_at(&ix->cases, i);
}

bool objections_index_has_case(const struct objections_index *ix, const unsigned char *mac)
{
    return find(&ix->cases, mac) != NULL;
}

bool objections_index_has_number(const struct objections_index *ix, const unsigned char *mac)
{
    return find(&ix->numbers, mac) != NULL;
}

size_t objections_index_count(const struct objections_index *ix)
{
    return ix->cases.len;
}
