#include "search.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "pdstrace/fhir.h"
#include "pdstrace/macros.h"
#include "pdstrace/nhs_number.h"
#include "population.h"

#define SYS_NHS "https://fhir.nhs.uk/Id/nhs-number"
#define URL_VERIFY                                                                                 \
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
#define SYS_VERIFY   "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus"
#define DEFAULT_BASE "https://api.service.nhs.uk/personal-demographics/FHIR/R4/Patient"

/* Scoring (mocks/pds/README.md): a non-fuzzy match starts at 1 and a fuzzy one at 0.9;
 * each field that matched only in a weaker way takes a penalty off. */
#define P_WILDCARD 0.01 /* the caller asked for a wildcard; it still found who they meant */
#define P_HISTORIC 0.06 /* matched a previous name or address: someone should look */
#define P_PARTIAL  0.06 /* the record holds only YYYY or YYYY-MM as birth date */
#define P_EDIT     0.10 /* fuzzy: one letter added, dropped or changed */
#define P_INITIAL  0.15 /* fuzzy: a given name matched by its initial */
#define FUZZY_BASE 0.9
#define FUZZY_MIN  0.6
#define PLAIN_MIN  0.5
#define MAX_DATES  2
#define FOLD_MAX   128

struct bound {
    char op; /* 'e', 'g' or 'l' */
    char date[11];
};

struct query {
    const char *family;
    const char *given[POPULATION_MAX_GIVEN];
    unsigned ngiven;
    const char *gender;
    const char *postcode;
    const char *gp;
    struct bound births[MAX_DATES];
    unsigned nbirths;
    unsigned ndeaths;
    bool fuzzy;
    bool exact;
    bool history;
    long max_results;
};

struct fail {
    int status;
    const char *code;
    char diag[200];
};

/* ---- OperationOutcome ---- */

/* The service's own builder: the mock answers in exactly the shapes the client parses. */
json_t *search_outcome_new(const char *spine_code, const char *diagnostics)
{
    return fhir_operation_outcome(spine_code, NULL, diagnostics);
}

static int fail_set(struct fail *f, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_set(struct fail *f, int status, const char *code, const char *fmt, ...)
{
    va_list ap;

    f->status = status;
    f->code = code;
    va_start(ap, fmt);
    vsnprintf(f->diag, sizeof(f->diag), fmt, ap);
    va_end(ap);
    return status;
}

/* ---- parameter values ---- */

static unsigned days_in(unsigned year, unsigned month)
{
    static const unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return month == 2 && leap ? 29 : days[month - 1];
}

static unsigned digits(const char *s, size_t n)
{
    unsigned v = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v;
}

/* YYYY-MM-DD, a real calendar day. */
static bool valid_date(const char *s)
{
    unsigned year, month, day;

    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    year = digits(s, 4);
    month = digits(s + 5, 2);
    day = digits(s + 8, 2);
    return year >= 1800 && month >= 1 && month <= 12 && day >= 1 && day <= days_in(year, month);
}

/* [eq|ge|le]YYYY-MM-DD */
static bool parse_bound(const char *v, struct bound *b)
{
    b->op = 'e';
    if (strncmp(v, "eq", 2) == 0 || strncmp(v, "ge", 2) == 0 || strncmp(v, "le", 2) == 0) {
        b->op = v[0];
        v += 2;
    }
    if (!valid_date(v))
        return false;
    memcpy(b->date, v, sizeof(b->date));
    return true;
}

static bool parse_bool(const char *v, bool *out)
{
    if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
        return false;
    *out = v[0] == 't';
    return true;
}

/* Parameters PDS refuses to see twice. */
static bool set_once(const char **slot, const char *v)
{
    if (*slot)
        return false;
    *slot = v;
    return true;
}

static bool set_family(struct query *q, const char *v)
{
    return set_once(&q->family, v);
}

static bool set_given(struct query *q, const char *v)
{
    if (q->ngiven == POPULATION_MAX_GIVEN)
        return false;
    q->given[q->ngiven++] = v;
    return true;
}

static bool set_gender(struct query *q, const char *v)
{
    static const char *const genders[] = {"male", "female", "other", "unknown"};
    size_t i;

    for (i = 0; i < ARRAY_SIZE(genders) && !q->gender; i++) {
        if (strcmp(v, genders[i]) == 0)
            q->gender = genders[i];
    }
    return q->gender != NULL;
}

static bool set_birth(struct query *q, const char *v)
{
    return q->nbirths < MAX_DATES && parse_bound(v, &q->births[q->nbirths++]);
}

/* The mock holds no dates of death: the value is checked, never matched. */
static bool set_death(struct query *q, const char *v)
{
    struct bound b;

    return q->ndeaths++ < MAX_DATES && parse_bound(v, &b);
}

static bool set_postcode(struct query *q, const char *v)
{
    return set_once(&q->postcode, v);
}

/* The mock holds no GP data; a GP in the search only hides restricted people. */
static bool set_gp(struct query *q, const char *v)
{
    q->gp = v;
    return true;
}

/* Accepted and ignored: the mock's people have no telecom. */
static bool set_ignored(struct query *q, const char *v)
{
    UNUSED(q);
    UNUSED(v);
    return true;
}

static bool set_fuzzy(struct query *q, const char *v)
{
    return parse_bool(v, &q->fuzzy);
}

static bool set_exact(struct query *q, const char *v)
{
    return parse_bool(v, &q->exact);
}

static bool set_history(struct query *q, const char *v)
{
    return parse_bool(v, &q->history);
}

static bool set_max(struct query *q, const char *v)
{
    size_t len = strlen(v);

    if (len < 1 || len > 2)
        return false;
    q->max_results = (long)digits(v, len);
    return q->max_results >= 1 && q->max_results <= 50;
}

typedef bool param_setter(struct query *q, const char *v);

static const struct {
    const char *name;
    param_setter *set;
} params_known[] = {
    {"family", set_family},
    {"given", set_given},
    {"gender", set_gender},
    {"birthdate", set_birth},
    {"address-postalcode", set_postcode},
    {"death-date", set_death},
    {"email", set_ignored},
    {"phone", set_ignored},
    {"general-practitioner", set_gp},
    {"_fuzzy-match", set_fuzzy},
    {"_exact-match", set_exact},
    {"_history", set_history},
    {"_max-results", set_max},
};

static param_setter *setter_for(const char *name)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(params_known); i++) {
        if (strcmp(params_known[i].name, name) == 0)
            return params_known[i].set;
    }
    return NULL;
}

/* ---- validation, in the order of shared/pds/README.md ---- */

static int check_names(const struct search_param *params, size_t n, struct fail *f)
{
    size_t i;

    if (n == 0)
        return fail_set(f, 400, "UNSUPPORTED_SERVICE", "%s", "");
    for (i = 0; i < n; i++) {
        if (!params[i].name || !setter_for(params[i].name))
            return fail_set(f, 400, "ADDITIONAL_PROPERTIES",
                            "Invalid search data provided - '%.64s' is not a valid parameter",
                            params[i].name ? params[i].name : "");
    }
    return 0;
}

static int check_values(const struct search_param *params, size_t n, struct query *q,
                        struct fail *f)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const char *v = params[i].value ? params[i].value : "";
        if (v[0] == '\0' || !setter_for(params[i].name)(q, v))
            return fail_set(f, 400, "INVALID_VALUE", "Invalid value - '%.64s' in field '%.64s'",
                            strcmp(params[i].name, "birthdate") == 0 ? "(date)" : "(value)",
                            params[i].name);
    }
    return 0;
}

static bool fuzzy_combination(const struct query *q)
{
    bool given = q->ngiven > 0;

    return (given && q->family) || (q->family && q->gender && q->postcode) ||
           (given && q->gender && q->postcode);
}

static int check_wildcard(const char *v, const char *field, const struct query *q, struct fail *f)
{
    const char *star = v ? strchr(v, '*') : NULL;

    if (!star)
        return 0;
    if (q->fuzzy)
        return fail_set(f, 400, "INVALID_SEARCH_DATA",
                        "Wildcards cannot be used with fuzzy search (field '%s')", field);
    if (star - v < 2)
        return fail_set(f, 400, "INVALID_SEARCH_DATA",
                        "Wildcard must not be in the first two characters (field '%s')", field);
    return 0;
}

static int check_search_data(const struct query *q, struct fail *f)
{
    unsigned i;
    int err;

    if (q->fuzzy && !fuzzy_combination(q))
        return fail_set(f, 400, "INVALID_SEARCH_DATA",
                        "Not enough search parameters were provided for a fuzzy search");
    if (!q->fuzzy && !q->family)
        return fail_set(f, 400, "INVALID_SEARCH_DATA",
                        "Not enough search parameters were provided to be able to make a match");
    if (q->fuzzy && q->exact)
        return fail_set(f, 400, "INVALID_SEARCH_DATA",
                        "_fuzzy-match and _exact-match cannot be combined");
    err = check_wildcard(q->family, "family", q, f);
    for (i = 0; !err && i < q->ngiven; i++)
        err = check_wildcard(q->given[i], "given", q, f);
    if (!err)
        err = check_wildcard(q->postcode, "address-postalcode", q, f);
    return err;
}

static int validate(const struct search_param *params, size_t n, struct query *q, struct fail *f)
{
    int err;

    memset(q, 0, sizeof(*q));
    q->max_results = 1;
    err = check_names(params, n, f);
    if (!err)
        err = check_values(params, n, q, f);
    if (!err && q->nbirths == 0)
        err = fail_set(f, 400, "MISSING_VALUE", "Missing value - 'birthdate'");
    if (!err)
        err = check_search_data(q, f);
    if (!err && q->max_results != 1)
        err = fail_set(f, 403, "ACCESS_DENIED",
                       "Application-restricted access must search with _max-results=1");
    return err;
}

/* ---- matching ---- */

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Case-insensitive for ASCII, '*' matching any run of bytes; other bytes (accents) must
 * agree exactly, as PDS non-fuzzy search is exact apart from case. */
static bool glob_ci(const char *pat, const char *s)
{
    const char *star = NULL;
    const char *retry = NULL;

    while (*s) {
        if (*pat == '*') {
            star = pat++;
            retry = s;
        } else if (*pat && lower((unsigned char)*pat) == lower((unsigned char)*s)) {
            pat++;
            s++;
        } else if (star) {
            pat = star + 1;
            s = ++retry;
        } else {
            return false;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

/* Latin-1 letters (UTF-8 C3 80..BF) folded to their ASCII base, lower case. */
static const char fold_c3[] = "aaaaaaaceeeeiiiidnooooo ouuuuytsaaaaaaaceeeeiiiidnooooo ouuuuyty";

/* Lower-cases and strips accents for fuzzy comparison. False when s does not fit. */
static bool fold(const char *s, char out[FOLD_MAX])
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;

    for (; *p && n < FOLD_MAX - 1; p++) {
        if (p[0] == 0xC3 && p[1] >= 0x80 && p[1] <= 0xBF)
            out[n++] = fold_c3[*++p - 0x80];
        else
            out[n++] = (char)lower(*p);
    }
    out[n] = '\0';
    return *p == '\0';
}

/* True when a and b differ by exactly one inserted, deleted or changed byte. */
static bool one_edit(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i = 0;

    if (la > lb)
        return one_edit(b, a);
    if (lb - la > 1)
        return false;
    while (i < la && a[i] == b[i])
        i++;
    if (i == la)
        return la != lb;
    return la == lb ? strcmp(a + i + 1, b + i + 1) == 0 : strcmp(a + i, b + i + 1) == 0;
}

/* Fuzzy: accents and case ignored, one edit tolerated, a given name by its initial. */
static bool fuzzy_field(const char *want, const char *have, bool given, double *pen)
{
    char a[FOLD_MAX], b[FOLD_MAX];

    if (!fold(want, a) || !fold(have, b))
        return false;
    if (strcmp(a, b) == 0)
        return true;
    if (given && ((a[1] == '\0' && a[0] == b[0]) || (b[1] == '\0' && b[0] == a[0]))) {
        *pen += P_INITIAL;
        return true;
    }
    if (!one_edit(a, b))
        return false;
    *pen += P_EDIT;
    return true;
}

static bool field_match(const char *want, const char *have, bool fuzzy, bool given, double *pen)
{
    if (!have)
        return false;
    if (fuzzy)
        return fuzzy_field(want, have, given, pen);
    if (!glob_ci(want, have))
        return false;
    if (strchr(want, '*'))
        *pen += P_WILDCARD;
    return true;
}

/* A wanted given name may match any given name of the entry; the best one counts. */
static bool given_match(const char *want, const struct population_name *n, bool fuzzy, double *pen)
{
    double best = -1;
    unsigned i;

    for (i = 0; i < n->ngiven; i++) {
        double p = 0;
        if (field_match(want, n->given[i], fuzzy, true, &p) && (best < 0 || p < best))
            best = p;
    }
    if (best < 0)
        return false;
    *pen += best;
    return true;
}

static bool name_match(const struct query *q, const struct population_name *n, double *pen)
{
    double p = 0;
    unsigned i;

    /* Fuzzy search always looks at history, as PDS's does. */
    if (n->historic && !q->history && !q->fuzzy)
        return false;
    if (n->historic)
        p += P_HISTORIC;
    if (q->family && !field_match(q->family, n->family, q->fuzzy, false, &p))
        return false;
    for (i = 0; i < q->ngiven; i++) {
        if (!given_match(q->given[i], n, q->fuzzy, &p))
            return false;
    }
    *pen = p;
    return true;
}

static bool best_name(const struct query *q, const struct population_person *p, double *pen)
{
    double best = -1;
    unsigned i;

    for (i = 0; i < p->nnames; i++) {
        double x;
        if (name_match(q, &p->names[i], &x) && (best < 0 || x < best))
            best = x;
    }
    if (best < 0)
        return false;
    *pen += best;
    return true;
}

/* Upper case without spaces; false when it does not fit. */
static bool squash(const char *s, char out[16])
{
    size_t n = 0;

    for (; *s; s++) {
        if (*s == ' ')
            continue;
        if (n == 15)
            return false;
        out[n++] = (char)(*s >= 'a' && *s <= 'z' ? *s - 'a' + 'A' : *s);
    }
    out[n] = '\0';
    return true;
}

static bool best_address(const struct query *q, const struct population_person *p, double *pen)
{
    char want[16], have[16];
    double best = -1;
    unsigned i;

    if (!squash(q->postcode, want))
        return false;
    for (i = 0; i < p->naddrs; i++) {
        const struct population_address *a = &p->addrs[i];
        double x = a->historic ? P_HISTORIC : 0;
        if ((a->historic && !q->history && !q->fuzzy) || !a->postcode ||
            !squash(a->postcode, have) || !glob_ci(want, have))
            continue;
        x += strchr(want, '*') ? P_WILDCARD : 0;
        if (best < 0 || x < best)
            best = x;
    }
    if (best < 0)
        return false;
    *pen += best;
    return true;
}

/* A record's partial birth date ("1931" or "1931-05") matches any day it covers. */
static bool birth_match(const struct query *q, const struct population_person *p, double *pen)
{
    unsigned i;

    if (!p->birth_lo[0])
        return false;
    for (i = 0; i < q->nbirths; i++) {
        const struct bound *b = &q->births[i];
        if ((b->op != 'l' && strcmp(p->birth_hi, b->date) < 0) ||
            (b->op != 'g' && strcmp(p->birth_lo, b->date) > 0))
            return false;
    }
    if (strcmp(p->birth_lo, p->birth_hi) != 0)
        *pen += P_PARTIAL;
    return true;
}

/* Whether p passes the filters that do not score: restriction and gender. */
static bool person_visible(const struct query *q, const struct population_person *p)
{
    /* A search holding a postcode or a GP never returns restricted people. */
    if ((q->postcode || q->gp) && p->security != 'U')
        return false;
    return !q->gender || (p->gender && strcmp(q->gender, p->gender) == 0);
}

static bool person_match(const struct query *q, const struct population_person *p, double *score)
{
    double pen = 0;
    if (!person_visible(q, p) || !birth_match(q, p, &pen) || !best_name(q, p, &pen))
        return false;
    if (q->postcode && !best_address(q, p, &pen))
        return false;
    double floor = q->fuzzy ? FUZZY_MIN : PLAIN_MIN;
    *score = (q->fuzzy ? FUZZY_BASE : 1.0) - pen;
    if (*score < floor)
        *score = floor;
    /* Two decimals, so that the score prints as 0.94 and not 0.9399999999999999. */
    *score = (double)(long)(*score * 100 + 0.5) / 100;
    return !q->exact || *score >= 1.0;
}

/* ---- answers ---- */

static json_t *identifier_new(const char *id)
{
    return json_pack("[{s:s, s:s, s:[{s:s, s:{s:[{s:s, s:s, s:s, s:s}]}}]}]", "system", SYS_NHS,
                     "value", id, "extension", "url", URL_VERIFY, "valueCodeableConcept", "coding",
                     "system", SYS_VERIFY, "version", "1.0.0", "code", "01", "display",
                     "Number present and verified");
}

static int copy_members(json_t *out, json_t *patient)
{
    const char *key;
    json_t *v;

    json_object_foreach(patient, key, v)
    {
        if (json_object_set_new(out, key, json_deep_copy(v)))
            return -1;
    }
    return 0;
}

/* The Patient as PDS sends it: a copy, given the standard identifier (the NHS number,
 * verified) when the stored record has none. Population files leave it out because it
 * follows from the id and would be a third of the file. */
static json_t *patient_new(const struct population_person *p)
{
    json_t *out = json_pack("{s:s, s:s}", "resourceType", "Patient", "id", p->id);

    if (out && !json_object_get(p->patient, "identifier") &&
        json_object_set_new(out, "identifier", identifier_new(p->id))) {
        json_decref(out);
        return NULL;
    }
    if (out && copy_members(out, p->patient)) {
        json_decref(out);
        return NULL;
    }
    return out;
}

static json_t *bundle_new(const struct search_ctx *ctx, const struct population_person *p,
                          double score)
{
    time_t now = ctx && ctx->now ? ctx->now : time(NULL);
    const char *base = ctx && ctx->base_url ? ctx->base_url : DEFAULT_BASE;
    char stamp[32];
    struct tm tm;
    json_t *b;

    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S+00:00", &tm);
    b = json_pack("{s:s, s:s, s:s, s:i}", "resourceType", "Bundle", "type", "searchset",
                  "timestamp", stamp, "total", p ? 1 : 0);
    if (b && p &&
        json_object_set_new(b, "entry",
                            json_pack("[{s:o, s:{s:f}, s:o}]", "fullUrl",
                                      json_sprintf("%s/%s", base, p->id), "search", "score", score,
                                      "resource", patient_new(p)))) {
        json_decref(b);
        return NULL;
    }
    return b;
}

int search_patients(const struct population *pop, const struct search_param *params, size_t nparams,
                    const struct search_ctx *ctx, json_t **body)
{
    const struct population_person *found = NULL;
    struct query q;
    struct fail f;
    double score = 0, s;
    size_t i, matches = 0;

    if (validate(params, nparams, &q, &f)) {
        *body = search_outcome_new(f.code, f.diag[0] ? f.diag : NULL);
        return f.status;
    }
    for (i = 0; i < population_size(pop) && matches <= (size_t)q.max_results; i++) {
        const struct population_person *p = population_at(pop, i);
        if (person_match(&q, p, &s)) {
            matches++;
            found = p;
            score = s;
        }
    }
    if (matches > (size_t)q.max_results) {
        *body = search_outcome_new("TOO_MANY_MATCHES", NULL);
        return 200;
    }
    *body = bundle_new(ctx, found, score);
    return 200;
}

int search_retrieve(const struct population *pop, const char *id, json_t **body)
{
    const struct population_person *p;
    const char *current;

    if (!nhs_number_is_valid(id)) {
        *body = search_outcome_new("INVALID_RESOURCE_ID", NULL);
        return 400;
    }
    if (population_is_invalidated(pop, id)) {
        *body = search_outcome_new("INVALIDATED_RESOURCE", NULL);
        return 404;
    }
    current = population_superseded_by(pop, id);
    p = population_find(pop, current ? current : id);
    if (!p) {
        *body = search_outcome_new("RESOURCE_NOT_FOUND", NULL);
        return 404;
    }
    *body = patient_new(p);
    return 200;
}
