#include "mock_faults.h"

#include <limits.h>
#include <string.h>

/* splitmix64 (Steele, Lea and Flood): one add and three mixes, and any seed is good. */
static uint64_t prng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

bool mock_chance(uint64_t *prng, double rate)
{
    if (rate <= 0)
        return false;
    return (double)(prng_next(prng) >> 11) * 0x1.0p-53 < rate;
}

static json_t *field_json(const struct mock_field *f, const void *base)
{
    const char *at = (const char *)base + f->offset;
    switch (f->kind) {
    case MOCK_FIELD_RATE:
        return json_real(*(const double *)(const void *)at);
    case MOCK_FIELD_STATUS:
        return json_integer(*(const int *)(const void *)at);
    case MOCK_FIELD_BOOL:
        return json_boolean(*(const bool *)(const void *)at);
    default:
        return json_integer(*(const unsigned *)(const void *)at);
    }
}

json_t *mock_fields_json(const struct mock_field *table, size_t n, const void *base)
{
    json_t *o = json_object();
    for (size_t i = 0; o != NULL && i < n; i++)
        json_object_set_new(o, table[i].name, field_json(&table[i], base));
    return o;
}

const struct mock_field *mock_field_find(const struct mock_field *table, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

bool mock_json_uint(json_t *v, unsigned max, unsigned *out)
{
    json_int_t i = json_integer_value(v);
    if (!json_is_integer(v) || i < 0 || i > (json_int_t)max)
        return false;
    *out = (unsigned)i;
    return true;
}

bool mock_field_set(const struct mock_field *f, void *base, json_t *v)
{
    void *at = (char *)base + f->offset;
    unsigned u;
    switch (f->kind) {
    case MOCK_FIELD_RATE:
        if (!json_is_number(v))
            return false;
        *(double *)at = json_number_value(v);
        return true;
    case MOCK_FIELD_BOOL:
        if (!json_is_boolean(v))
            return false;
        *(bool *)at = json_is_true(v);
        return true;
    default:
        if (!mock_json_uint(v, INT_MAX, &u))
            return false;
        if (f->kind == MOCK_FIELD_STATUS)
            *(int *)at = (int)u;
        else
            *(unsigned *)at = u;
        return true;
    }
}
