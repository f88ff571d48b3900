#ifndef PDS_MOCKCOMMON_MOCK_FAULTS_H
#define PDS_MOCKCOMMON_MOCK_FAULTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the mocks' fault injection shares: the seeded PRNG behind their fail rates, and a
 * table of a faults struct's fields, for GET and PUT /_admin/faults. */

/* True with probability rate, from the splitmix64 PRNG whose state is *prng: seeded, so
 * that a fault pattern can be replayed. No draw when rate is 0 or less. */
bool mock_chance(uint64_t *prng, double rate);

/* What a field holds, and the member type it is stored in. */
enum mock_field_kind {
    MOCK_FIELD_UINT,   /* unsigned; JSON integer 0..INT_MAX */
    MOCK_FIELD_RATE,   /* double; any JSON number (the mock's check bounds it) */
    MOCK_FIELD_STATUS, /* int; JSON integer 0..INT_MAX */
    MOCK_FIELD_BOOL,   /* bool; JSON true or false */
};

struct mock_field {
    const char *name; /* as JSON names it: "latency_ms" */
    enum mock_field_kind kind;
    size_t offset; /* of the member in the faults struct */
};

/* The field that JSON names as member of struct type is named in C. */
#define MOCK_FIELD(type, member, kind)                                                             \
    {                                                                                              \
#member, kind, offsetof(type, member)                                                      \
    }

/* Every field of table (n of them) in base as one JSON object, in table order; NULL when
 * out of memory. */
json_t *mock_fields_json(const struct mock_field *table, size_t n, const void *base);

/* The field called name, or NULL. */
const struct mock_field *mock_field_find(const struct mock_field *table, size_t n,
                                         const char *name);

/* Stores v in f's member of base. Returns false, leaving it as it was, when v is not of
 * f's kind or out of its range. */
bool mock_field_set(const struct mock_field *f, void *base, json_t *v);

/* v as an unsigned 0..max: true, or false when it is not such an integer. */
bool mock_json_uint(json_t *v, unsigned max, unsigned *out);

#endif
