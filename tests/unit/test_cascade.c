#include "pdstrace/cascade.h"

#include <criterion/criterion.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/demographics.h"
#include "pdstrace/macros.h"
#include "pdstrace/trace_result.h"

TestSuite(cascade, .timeout = 10);

static const struct match_bands bands = {0.95, 0.85};
static bool history = true; /* pds.history, for the test under way */

static struct demographics person(const char *family, const char *given, const char *postcode)
{
    struct demographics d;
    memset(&d, 0, sizeof(d));
    snprintf(d.family, sizeof(d.family), "%s", family);
    if (given != NULL) {
        snprintf(d.given[0], sizeof(d.given[0]), "%s", given);
        d.n_given = 1;
    }
    snprintf(d.birth_date, sizeof(d.birth_date), "2010-10-22");
    if (postcode != NULL)
        snprintf(d.postcode, sizeof(d.postcode), "%s", postcode);
    d.write_back = -1;
    return d;
}

static struct fhir_result none(void)
{
    struct fhir_result r = {.kind = FHIR_SEARCH_NONE};
    return r;
}

static struct fhir_result one(const char *id, double score)
{
    struct fhir_result r = {.kind = FHIR_SEARCH_ONE};
    snprintf(r.patient.id, sizeof(r.patient.id), "%s", id);
    r.patient.score = score;
    r.patient.security = FHIR_SEC_U;
    return r;
}

static struct fhir_result too_many(void)
{
    struct fhir_result r = {.kind = FHIR_TOO_MANY};
    return r;
}

/* What one run of the cascade asked and decided. */
struct ran {
    size_t n;       /* searches made */
    char q[8][512]; /* their queries */
    struct trace_result r;
};

/* Runs the cascade, answering step i with answers[i]. The result lives until the next run. */
static const struct ran *run(const struct demographics *d, bool fuzzy,
                             const struct fhir_result *answers, size_t n)
{
    static struct ran ran;
    struct cascade c;
    struct buf q;
    buf_init(&q, 4096);
    const struct cascade_options opt = {bands, fuzzy, history};
    cascade_init(&c, d, &opt);
    memset(&ran, 0, sizeof(ran));
    while (cascade_query(&c, &q) == 1) {
        cr_assert_lt(ran.n, n, "more searches than answers: %s", buf_cstr(&q));
        snprintf(ran.q[ran.n], sizeof(ran.q[0]), "%s", buf_cstr(&q));
        cascade_feed(&c, &answers[ran.n++]);
    }
    buf_free(&q);
    cascade_result(&c, &ran.r);
    return &ran;
}

/* Runs with every answer of the array a. */
#define RUN(d, fuzzy, a) run(d, fuzzy, a, ARRAY_SIZE(a))

Test(cascade, exact_match_is_one_step)
{
    struct demographics d = person("Smith", "Jane", "LS1 6AE");
    struct fhir_result a[] = {one("9000000009", 1.0)};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 1);
    cr_assert_str_eq(x->q[0], "family=Smith&given=Jane&birthdate=eq2010-10-22&"
                              "address-postalcode=LS1%206AE&_history=true");
    cr_assert_eq(x->r.outcome, TRACE_MATCHED);
    cr_assert_str_eq(x->r.nhs_number, "9000000009");
    cr_assert_eq(x->r.steps, 1);
}

Test(cascade, full_cascade_without_a_match_is_no_match)
{
    struct demographics d = person("Smithson", "Jonathan", "LS1 6AE");
    struct fhir_result a[] = {none(), none(), none(), none(), none()};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 5);
    cr_assert(strstr(x->q[1], "address-postalcode=LS%2A") != NULL, "%s", x->q[1]);
    cr_assert(strstr(x->q[2], "address-postalcode") == NULL, "%s", x->q[2]);
    cr_assert(strstr(x->q[3], "given=Jon%2A") != NULL, "%s", x->q[3]);
    cr_assert(strstr(x->q[3], "address-postalcode") == NULL);
    cr_assert(strstr(x->q[4], "family=Smi%2A") != NULL, "%s", x->q[4]);
    cr_assert_eq(x->r.outcome, TRACE_NO_MATCH);
    cr_assert_eq(x->r.steps, 5);
    cr_assert_str_eq(x->r.nhs_number, "");
}

Test(cascade, short_names_and_no_postcode_skip_steps)
{
    struct demographics d = person("Lee", "Ann", NULL);
    struct fhir_result a[] = {none()};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 1);
    cr_assert_eq(x->r.outcome, TRACE_NO_MATCH);
}

Test(cascade, too_many_with_history_retries_without)
{
    struct demographics d = person("Smith", "Jane", NULL);
    struct fhir_result a[] = {too_many(), one("9000000017", 1.0)};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 2);
    cr_assert(strstr(x->q[0], "_history=true") != NULL);
    cr_assert(strstr(x->q[1], "_history") == NULL, "%s", x->q[1]);
    cr_assert_eq(x->r.outcome, TRACE_MATCHED);
    cr_assert_str_eq(x->r.nhs_number, "9000000017");
}

Test(cascade, too_many_twice_is_multiple_matches)
{
    struct demographics d = person("Smith", "Jane", "LS1 6AE");
    struct fhir_result a[] = {too_many(), too_many()};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 2);
    cr_assert_eq(x->r.outcome, TRACE_MULTIPLE_MATCHES);
    cr_assert_str_eq(x->r.nhs_number, "");
}

Test(cascade, later_step_finds_a_restricted_person_without_postcode)
{
    struct demographics d = person("Smith", "Jane", "LS1 6AE");
    struct fhir_result a[] = {none(), none(), one("9000000025", 1.0)};
    a[2].patient.security = FHIR_SEC_R;
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 3);
    cr_assert(strstr(x->q[2], "address-postalcode") == NULL);
    cr_assert_eq(x->r.outcome, TRACE_MATCHED);
    cr_assert(x->r.restricted);
}

Test(cascade, partial_match_keeps_looking_and_conflict_is_multiple)
{
    struct demographics d = person("Smith", "Jonathan", "LS1 6AE");
    struct fhir_result a[] = {one("9000000009", 0.8), one("9000000017", 0.8)};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 2);
    cr_assert_eq(x->r.outcome, TRACE_MULTIPLE_MATCHES);
}

Test(cascade, partial_match_ends_the_cascade_as_potential)
{
    struct demographics d = person("Smith", "Jonathan", "LS1 6AE");
    struct fhir_result a[] = {one("9000000009", 0.9)};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 1);
    cr_assert_eq(x->r.outcome, TRACE_POTENTIAL_MATCH);
    cr_assert_str_eq(x->r.nhs_number, "9000000009");
    cr_assert_float_eq(x->r.score, 0.9, 1e-9);
}

Test(cascade, low_score_is_no_match)
{
    struct demographics d = person("Lee", "Ann", NULL);
    struct fhir_result a[] = {one("9000000009", 0.5)};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->r.outcome, TRACE_NO_MATCH);
    cr_assert_str_eq(x->r.nhs_number, "");
}

Test(cascade, weak_candidate_is_upgraded_by_a_later_step)
{
    struct demographics d = person("Smith", "Jonathan", "LS1 6AE");
    struct fhir_result a[] = {one("9000000009", 0.7), none(), one("9000000009", 0.99)};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 3);
    cr_assert_eq(x->r.outcome, TRACE_MATCHED);
    cr_assert_float_eq(x->r.score, 0.99, 1e-9);
}

Test(cascade, fuzzy_only_when_enabled)
{
    struct demographics d = person("Lee", "Ann", NULL);
    d.gender = DEMOG_GENDER_FEMALE;
    struct fhir_result a[] = {none(), none(), one("9000000009", 0.96)};
    const struct ran *x = RUN(&d, true, a);
    cr_assert_eq(x->n, 3);
    cr_assert(strstr(x->q[2], "_fuzzy-match=true") != NULL, "%s", x->q[2]);
    cr_assert(strstr(x->q[2], "gender=female") != NULL);
    cr_assert(strstr(x->q[2], "%2A") == NULL);
    cr_assert_eq(x->r.outcome, TRACE_MATCHED);
}

Test(cascade, wildcard_counts_characters_not_bytes)
{
    struct demographics d = person("Zoë-Ann", "Chloé", NULL);
    struct fhir_result a[] = {none(), none(), none()};
    const struct ran *x = RUN(&d, false, a);
    cr_assert(strstr(x->q[1], "given=Chl%C3%A9%2A") == NULL, "%s", x->q[1]);
    cr_assert(strstr(x->q[1], "given=Chl%2A") != NULL, "%s", x->q[1]);
    cr_assert(strstr(x->q[2], "family=Zo%C3%AB%2A") != NULL, "%s", x->q[2]);
}

/* ---- gender, contradicting candidates, deceased (issue 6) ---- */

static struct fhir_result born(const char *id, double score, const char *birth)
{
    struct fhir_result r = one(id, score);
    snprintf(r.patient.birth_date, sizeof(r.patient.birth_date), "%s", birth);
    return r;
}

Test(cascade, male_or_female_is_sent_on_the_exact_step_only)
{
    struct demographics d = person("Smithson", "Jonathan", "LS1 6AE");
    d.gender = DEMOG_GENDER_FEMALE;
    struct fhir_result a[] = {none(), none(), none(), none(), none()};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 5);
    cr_assert_str_eq(x->q[0], "family=Smithson&given=Jonathan&birthdate=eq2010-10-22&gender=female&"
                              "address-postalcode=LS1%206AE&_history=true");
    for (size_t i = 1; i < x->n; i++)
        cr_assert(strstr(x->q[i], "gender") == NULL, "step %zu: %s", i, x->q[i]);
}

Test(cascade, other_and_unknown_gender_are_not_sent)
{
    struct demographics d = person("Lee", "Ann", NULL);
    d.gender = DEMOG_GENDER_UNKNOWN;
    struct fhir_result a[] = {none()};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 1, "no postcode and no male/female: nothing to broaden");
    cr_assert(strstr(x->q[0], "gender") == NULL, "%s", x->q[0]);
}

/* Ann Lee is recorded male on PDS: the exact step with female finds nobody, and the broad
 * step, without gender, finds her. */
Test(cascade, a_different_gender_on_pds_is_found_without_it)
{
    struct demographics d = person("Lee", "Ann", NULL);
    d.gender = DEMOG_GENDER_FEMALE;
    struct fhir_result a[] = {none(), one("9000000017", 1.0)};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 2);
    cr_assert(strstr(x->q[0], "gender=female") != NULL, "%s", x->q[0]);
    cr_assert_str_eq(x->q[1], "family=Lee&given=Ann&birthdate=eq2010-10-22&_history=true");
    cr_assert_eq(x->r.outcome, TRACE_MATCHED);
    cr_assert_str_eq(x->r.nhs_number, "9000000017");
}

Test(cascade, a_candidate_with_another_birth_date_is_someone_else)
{
    struct demographics d = person("Smithson", "Jonathan", NULL);
    struct fhir_result a[] = {born("9000000009", 1.0, "1999-10-22"),
                              born("9000000017", 0.9, "2011"), none()};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 3, "every step is still tried");
    cr_assert_eq(x->r.outcome, TRACE_NO_MATCH, "a contradicted candidate is never matched");
    cr_assert_str_eq(x->r.nhs_number, "");
}

Test(cascade, a_partial_birth_date_that_agrees_is_taken)
{
    struct demographics d = person("Smith", "Jane", NULL);
    struct fhir_result a[] = {born("9000000009", 1.0, "2010-10")};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->r.outcome, TRACE_MATCHED);
    cr_assert_str_eq(x->r.nhs_number, "9000000009");
}

Test(cascade, a_contradicted_candidate_does_not_make_a_conflict)
{
    struct demographics d = person("Smithson", "Jonathan", NULL);
    struct fhir_result a[] = {born("9000000009", 1.0, "1950-01-01"),
                              born("9000000017", 1.0, "2010")};
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->r.outcome, TRACE_MATCHED);
    cr_assert_str_eq(x->r.nhs_number, "9000000017");
}

Test(cascade, deceased_comes_from_the_death_date)
{
    struct demographics d = person("Smith", "Jane", NULL);
    struct fhir_result a[] = {one("9000000009", 1.0)};
    snprintf(a[0].patient.death_date, sizeof(a[0].patient.death_date), "2020-01-02");
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->r.outcome, TRACE_MATCHED);
    cr_assert(x->r.deceased);
    a[0].patient.death_date[0] = '\0';
    x = RUN(&d, false, a);
    cr_assert_not(x->r.deceased);
}

/* pds.history false: no step carries _history, and TOO_MANY_MATCHES at EXACT has nothing
 * left to narrow. */
Test(cascade, without_history_no_step_sends_it)
{
    struct demographics d = person("Smith", "Jane", "LS1 6AE");
    d.gender = DEMOG_GENDER_FEMALE;
    struct fhir_result a[] = {too_many()};
    history = false;
    const struct ran *x = RUN(&d, false, a);
    cr_assert_eq(x->n, 1);
    cr_assert_str_eq(x->q[0], "family=Smith&given=Jane&birthdate=eq2010-10-22&gender=female&"
                              "address-postalcode=LS1%206AE");
    cr_assert_eq(x->r.outcome, TRACE_MULTIPLE_MATCHES);
}
