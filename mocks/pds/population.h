#ifndef PDS_MOCKPDS_POPULATION_H
#define PDS_MOCKPDS_POPULATION_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The mock PDS's synthetic population: FHIR Patient resources (the shapes of
 * shared/pds/examples/retrieve), a map of superseded numbers to the numbers that replaced
 * them, and a list of invalidated numbers. The JSON document is the source of truth; the
 * population keeps a read-only index over it (pointers into its strings) so that a search
 * scans plain structs. Everything here is synchronous and single-threaded.
 *
 * File format (also what population_save writes):
 *   { "patients": [ Patient, ... ],
 *     "superseded": { "<old number>": "<current number>", ... },
 *     "invalidated": [ "<number>", ... ] }
 * Every number is ten digits with a valid check digit; superseded targets are patients. */

struct population;

#define POPULATION_MAX_GIVEN 3
#define POPULATION_MAX_NAMES 4
#define POPULATION_MAX_ADDRS 4

/* One entry of Patient.name[]. A name whose use is "old" is historic (found only by
 * searches with _history=true). Extra given names beyond the limit are not indexed. */
struct population_name {
    const char *family; /* NULL when absent */
    const char *given[POPULATION_MAX_GIVEN];
    unsigned ngiven;
    bool historic;
};

/* One entry of Patient.address[]; use "old" marks a historic address. */
struct population_address {
    const char *postcode; /* as written, NULL when absent */
    bool historic;
};

/* The index of one person. Every pointer is borrowed from the population and valid until
 * population_free. */
struct population_person {
    json_t *patient;        /* the Patient resource */
    const char *id;         /* the NHS number */
    const char *birth_date; /* NULL, "YYYY", "YYYY-MM" or "YYYY-MM-DD" */
    char birth_lo[11];      /* first and last day birth_date covers ("1931-05" gives */
    char birth_hi[11];      /* 1931-05-01 and 1931-05-31); "" when there is none */
    const char *gender;     /* NULL or male|female|other|unknown */
    char security;          /* 'U', 'R' or 'V' (meta.security[0].code) */
    unsigned nnames;
    unsigned naddrs;
    struct population_name names[POPULATION_MAX_NAMES];
    struct population_address addrs[POPULATION_MAX_ADDRS];
};

/* Builds a population from a document in the file format above; takes ownership of root
 * (released on failure too). Returns 0, ERR_PARSE for a malformed document (bad or
 * duplicate number, dangling superseded target) or UV_ENOMEM. */
int population_from_json(struct population **out, json_t *root);

/* Generates n random people (deterministic for a given seed) plus the fixed people of
 * mocks/pds/README.md. Returns 0, ERR_INVALID_INPUT when n is above 1,000,000, or
 * UV_ENOMEM. */
int population_generate(struct population **out, size_t n, uint64_t seed);

/* Reads a population file. Returns 0, ERR_NOT_FOUND when the file cannot be read,
 * ERR_PARSE when it is not a valid population, or UV_ENOMEM. */
int population_load(struct population **out, const char *path);

/* Writes the population file (compact JSON, UTF-8). Returns 0 or ERR_INTERNAL. */
int population_save(const struct population *pop, const char *path);

/* NULL is fine. */
void population_free(struct population *pop);

/* The document behind the population; borrowed, do not modify. */
const json_t *population_json(const struct population *pop);

/* People are kept sorted by NHS number; i < population_size(). */
size_t population_size(const struct population *pop);
const struct population_person *population_at(const struct population *pop, size_t i);

/* The person whose current number is id, or NULL (superseded and invalidated numbers are
 * not people). */
const struct population_person *population_find(const struct population *pop, const char *id);

/* The number that replaced old_id (borrowed), or NULL when old_id is not superseded. */
const char *population_superseded_by(const struct population *pop, const char *old_id);

bool population_is_invalidated(const struct population *pop, const char *id);

/* The superseded numbers, sorted; i < population_superseded_count(). *new_id (may be NULL)
 * gets the number that replaced the i-th one. Both borrowed. */
size_t population_superseded_count(const struct population *pop);
const char *population_superseded_at(const struct population *pop, size_t i, const char **new_id);

/* The invalidated numbers, sorted; i < population_invalidated_count(). Borrowed. */
size_t population_invalidated_count(const struct population *pop);
const char *population_invalidated_at(const struct population *pop, size_t i);

#endif
