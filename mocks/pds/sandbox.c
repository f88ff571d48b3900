#include "sandbox.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pdstrace/err.h"
#include "pdstrace/macros.h"

/* The sandbox's people, from its published source (NHSDigital/personal-demographics-service-api,
 * sandbox/src/test/java/mocks/sandbox): NULL matches anything. The Jane Smith answer carries
 * score 1, as the sandbox's SIMPLE_SEARCH does; the example file's own score is 0.75. */
static const struct canned {
    const char *family, *gender, *birthdate, *file;
    double score; /* < 0: as in the file */
} people[] = {
    {"Smith", "female", "eq2010-10-22", "search/PatientSearch.json", 1.0},
    {"Smythe", NULL, NULL, "search/Sensitive_PatientSearch.json", -1},
    {"Godsoe", "male", "eq1936-02-24", "search/rodney_godsoe_searchset.json", -1},
    {"Cuff", "female", "eq1926-01-07", "search/cuff_superseded_searchset.json", -1},
    {"YOUDS", NULL, NULL, "search/TOO_MANY_MATCHES.json", -1},
};

static const struct {
    const char *id, *file;
} patients[] = {
    {"9000000009", "retrieve/Patient.json"},
    {"9000000025", "retrieve/Sensitive_Patient.json"},
    {"9000000033", "retrieve/Minimal_Patient.json"},
};

struct sandbox {
    json_t *search[ARRAY_SIZE(people)];
    json_t *patient[ARRAY_SIZE(patients)];
    json_t *not_supported;
    json_t *not_found;
};

static json_t *load(const char *dir, const char *file)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    return json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
}

static json_t *with_score(json_t *bundle, double score)
{
    json_t *search = json_object_get(json_array_get(json_object_get(bundle, "entry"), 0), "search");
    if (bundle != NULL && score >= 0 && json_object_set_new(search, "score", json_real(score)))
        return NULL;
    return bundle;
}

int sandbox_load(struct sandbox **out, const char *dir)
{
    struct sandbox *sb = calloc(1, sizeof(*sb));
    bool ok = sb != NULL;
    for (size_t i = 0; ok && i < ARRAY_SIZE(people); i++)
        ok = (sb->search[i] = with_score(load(dir, people[i].file), people[i].score)) != NULL;
    for (size_t i = 0; ok && i < ARRAY_SIZE(patients); i++)
        ok = (sb->patient[i] = load(dir, patients[i].file)) != NULL;
    ok = ok && (sb->not_supported = load(dir, "search/NOT_SUPPORTED_SEARCH.json")) != NULL;
    ok = ok && (sb->not_found = load(dir, "errors/RESOURCE_NOT_FOUND.json")) != NULL;
    if (!ok) {
        sandbox_free(sb);
        sb = NULL;
    }
    *out = sb;
    return ok ? 0 : ERR_CONFIG;
}

void sandbox_free(struct sandbox *sb)
{
    if (sb == NULL)
        return;
    for (size_t i = 0; i < ARRAY_SIZE(people); i++)
        json_decref(sb->search[i]);
    for (size_t i = 0; i < ARRAY_SIZE(patients); i++)
        json_decref(sb->patient[i]);
    json_decref(sb->not_supported);
    json_decref(sb->not_found);
    free(sb);
}

static const char *param(const struct search_param *p, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].name, name) == 0)
            return p[i].value;
    return NULL;
}

static bool same(const char *want, const char *have)
{
    return want == NULL || (have != NULL && strcasecmp(want, have) == 0);
}

static bool is_canned(const struct canned *c, const struct search_param *p, size_t n)
{
    return same(c->family, param(p, n, "family")) && same(c->gender, param(p, n, "gender")) &&
           same(c->birthdate, param(p, n, "birthdate"));
}

int sandbox_search(const struct sandbox *sb, const struct search_param *params, size_t n,
                   json_t **body)
{
    *body = NULL;
    bool routed_away = param(params, n, "_history") != NULL || param(params, n, "_fuzzy-match");
    for (size_t i = 0; !routed_away && *body == NULL && i < ARRAY_SIZE(people); i++)
        if (is_canned(&people[i], params, n))
            *body = json_deep_copy(sb->search[i]);
    if (*body == NULL)
        *body = json_deep_copy(sb->not_supported);
    return 200;
}

int sandbox_retrieve(const struct sandbox *sb, const char *id, json_t **body)
{
    for (size_t i = 0; i < ARRAY_SIZE(patients); i++) {
        if (strcmp(patients[i].id, id) == 0) {
            *body = json_deep_copy(sb->patient[i]);
            return 200;
        }
    }
    *body = json_deep_copy(sb->not_found);
    return 404;
}
