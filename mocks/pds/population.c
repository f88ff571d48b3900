#include "population.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "pdstrace/err.h"
#include "pdstrace/nhs_number.h"

struct link {
    const char *old_id;
    const char *new_id;
};

struct population {
    json_t *root;
    struct population_person *people; /* sorted by id */
    size_t npeople;
    struct link *superseded; /* sorted by old_id */
    size_t nsuperseded;
    const char **invalidated; /* sorted */
    size_t ninvalidated;
};

static const char *get_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static bool is_old(const json_t *entry)
{
    const char *use = get_str(entry, "use");
    return use && strcmp(use, "old") == 0;
}

static void index_name(struct population_name *n, const json_t *entry)
{
    size_t i;
    json_t *given;

    n->family = get_str(entry, "family");
    n->historic = is_old(entry);
    n->ngiven = 0;
    json_array_foreach(json_object_get(entry, "given"), i, given)
    {
        if (json_is_string(given) && n->ngiven < POPULATION_MAX_GIVEN)
            n->given[n->ngiven++] = json_string_value(given);
    }
}

static void index_lists(struct population_person *p)
{
    size_t i;
    json_t *entry;

    json_array_foreach(json_object_get(p->patient, "name"), i, entry)
    {
        if (json_is_object(entry) && p->nnames < POPULATION_MAX_NAMES)
            index_name(&p->names[p->nnames++], entry);
    }
    json_array_foreach(json_object_get(p->patient, "address"), i, entry)
    {
        if (!json_is_object(entry) || p->naddrs >= POPULATION_MAX_ADDRS)
            continue;
        p->addrs[p->naddrs].postcode = get_str(entry, "postalCode");
        p->addrs[p->naddrs++].historic = is_old(entry);
    }
}

/* A partial date covers a range of days; "-31" is late enough for any month when the
 * range is compared as strings. */
static void index_birth(struct population_person *p)
{
    static const char lo[] = "0000-01-01", hi[] = "0000-12-31";
    size_t len = p->birth_date ? strlen(p->birth_date) : 0;

    if (len != 4 && len != 7 && len != 10)
        return;
    memcpy(p->birth_lo, lo, sizeof(lo));
    memcpy(p->birth_hi, hi, sizeof(hi));
    memcpy(p->birth_lo, p->birth_date, len);
    memcpy(p->birth_hi, p->birth_date, len);
}

static int index_person(struct population_person *p, json_t *patient)
{
    const json_t *sec;
    const char *code;

    memset(p, 0, sizeof(*p));
    p->patient = patient;
    p->id = get_str(patient, "id");
    if (!json_is_object(patient) || !nhs_number_is_valid(p->id))
        return ERR_PARSE;
    p->birth_date = get_str(patient, "birthDate");
    p->gender = get_str(patient, "gender");
    index_birth(p);
    sec = json_array_get(json_object_get(json_object_get(patient, "meta"), "security"), 0);
    code = get_str(sec, "code");
    p->security = code && (code[0] == 'R' || code[0] == 'V') ? code[0] : 'U';
    index_lists(p);
    return 0;
}

static int cmp_person(const void *a, const void *b)
{
    return strcmp(((const struct population_person *)a)->id,
                  ((const struct population_person *)b)->id);
}

static int cmp_link(const void *a, const void *b)
{
    return strcmp(((const struct link *)a)->old_id, ((const struct link *)b)->old_id);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int index_people(struct population *pop)
{
    const json_t *patients = json_object_get(pop->root, "patients");
    size_t i;
    int err;

    if (!json_is_array(patients))
        return ERR_PARSE;
    pop->npeople = json_array_size(patients);
    pop->people = calloc(pop->npeople ? pop->npeople : 1, sizeof(*pop->people));
    if (!pop->people)
        return UV_ENOMEM;
    for (i = 0; i < pop->npeople; i++) {
        err = index_person(&pop->people[i], json_array_get(patients, i));
        if (err)
            return err;
    }
    qsort(pop->people, pop->npeople, sizeof(*pop->people), cmp_person);
    for (i = 1; i < pop->npeople; i++) {
        if (strcmp(pop->people[i - 1].id, pop->people[i].id) == 0)
            return ERR_PARSE;
    }
    return 0;
}

/* A superseded number must not be a person itself, and must lead to one. */
static int index_superseded(struct population *pop)
{
    json_t *map = json_object_get(pop->root, "superseded");
    const char *old_id;
    json_t *target;
    size_t n = 0;

    if (map && !json_is_object(map))
        return ERR_PARSE;
    pop->superseded = calloc(json_object_size(map) + 1, sizeof(*pop->superseded));
    if (!pop->superseded)
        return UV_ENOMEM;
    json_object_foreach(map, old_id, target)
    {
        const char *new_id = json_string_value(target);
        if (!nhs_number_is_valid(old_id) || !population_find(pop, new_id) ||
            population_find(pop, old_id))
            return ERR_PARSE;
        pop->superseded[n].old_id = old_id;
        pop->superseded[n++].new_id = new_id;
    }
    pop->nsuperseded = n;
    qsort(pop->superseded, n, sizeof(*pop->superseded), cmp_link);
    return 0;
}

static int index_invalidated(struct population *pop)
{
    const json_t *list = json_object_get(pop->root, "invalidated");
    json_t *item;
    size_t i;

    if (list && !json_is_array(list))
        return ERR_PARSE;
    pop->invalidated = calloc(json_array_size(list) + 1, sizeof(*pop->invalidated));
    if (!pop->invalidated)
        return UV_ENOMEM;
    json_array_foreach(list, i, item)
    {
        const char *id = json_string_value(item);
        if (!nhs_number_is_valid(id) || population_find(pop, id))
            return ERR_PARSE;
        pop->invalidated[i] = id;
    }
    pop->ninvalidated = json_array_size(list);
    qsort(pop->invalidated, pop->ninvalidated, sizeof(*pop->invalidated), cmp_str);
    return 0;
}

int population_from_json(struct population **out, json_t *root)
{
    struct population *pop;
    int err;

    *out = NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        return ERR_PARSE;
    }
    pop = calloc(1, sizeof(*pop));
    if (!pop) {
        json_decref(root);
        return UV_ENOMEM;
    }
    pop->root = root;
    err = index_people(pop);
    if (!err)
        err = index_superseded(pop);
    if (!err)
        err = index_invalidated(pop);
    if (err) {
        population_free(pop);
        return err;
    }
    *out = pop;
    return 0;
}

int population_load(struct population **out, const char *path)
{
    json_error_t jerr;
    json_t *root;

    *out = NULL;
    root = json_load_file(path, 0, &jerr);
    if (!root)
        return json_error_code(&jerr) == json_error_cannot_open_file ? ERR_NOT_FOUND : ERR_PARSE;
    return population_from_json(out, root);
}

int population_save(const struct population *pop, const char *path)
{
    return json_dump_file(pop->root, path, JSON_COMPACT) == 0 ? 0 : ERR_INTERNAL;
}

void population_free(struct population *pop)
{
    if (!pop)
        return;
    free(pop->people);
    free(pop->superseded);
    free(pop->invalidated);
    json_decref(pop->root);
    free(pop);
}

const json_t *population_json(const struct population *pop)
{
    return pop->root;
}

size_t population_size(const struct population *pop)
{
    return pop->npeople;
}

const struct population_person *population_at(const struct population *pop, size_t i)
{
    return i < pop->npeople ? &pop->people[i] : NULL;
}

const struct population_person *population_find(const struct population *pop, const char *id)
{
    struct population_person key;

    if (!id)
        return NULL;
    key.id = id;
    return bsearch(&key, pop->people, pop->npeople, sizeof(*pop->people), cmp_person);
}

const char *population_superseded_by(const struct population *pop, const char *old_id)
{
    struct link key = {old_id, NULL};
    const struct link *hit;

    if (!old_id || !pop->nsuperseded)
        return NULL;
    hit = bsearch(&key, pop->superseded, pop->nsuperseded, sizeof(key), cmp_link);
    return hit ? hit->new_id : NULL;
}

bool population_is_invalidated(const struct population *pop, const char *id)
{
    if (!id || !pop->ninvalidated)
        return false;
    return bsearch(&id, pop->invalidated, pop->ninvalidated, sizeof(*pop->invalidated), cmp_str) !=
           NULL;
}

size_t population_superseded_count(const struct population *pop)
{
    return pop->nsuperseded;
}

const char *population_superseded_at(const struct population *pop, size_t i, const char **new_id)
{
    if (i >= pop->nsuperseded)
        return NULL;
    if (new_id)
        *new_id = pop->superseded[i].new_id;
    return pop->superseded[i].old_id;
}

size_t population_invalidated_count(const struct population *pop)
{
    return pop->ninvalidated;
}

const char *population_invalidated_at(const struct population *pop, size_t i)
{
    return i < pop->ninvalidated ? pop->invalidated[i] : NULL;
}
