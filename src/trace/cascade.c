#include "pdstrace/cascade.h"

#include <stdio.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/demographics.h"
#include "pdstrace/trace_result.h"
#include "pdstrace/url.h"

void cascade_init(struct cascade *c, const struct demographics *d,
                  const struct cascade_options *opt)
{
    memset(c, 0, sizeof(*c));
    c->d = d;
    c->bands = opt->bands;
    c->fuzzy = opt->fuzzy;
    c->history = opt->history;
    c->step = CASCADE_EXACT;
}

/* The first n UTF-8 characters of s followed by '*'. */
static void prefix_wildcard(const char *s, unsigned n, char *out, size_t size)
{
    size_t i = 0;
    for (unsigned chars = 0; s[i] != '\0' && i + 2 < size; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80 && chars++ == n)
            break;
    }
    memcpy(out, s, i);
    out[i] = '*';
    out[i + 1] = '\0';
}

static unsigned utf8_length(const char *s)
{
    unsigned n = 0;
    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* PDS narrows on gender, and NHS England's sandbox keys its people on it, but only male and
 * female say something: other and unknown would hide people recorded either way. */
static const char *exact_gender(const struct demographics *d)
{
    if (d->gender == DEMOG_GENDER_MALE || d->gender == DEMOG_GENDER_FEMALE)
        return demog_gender_name(d->gender);
    return NULL;
}

static bool step_applies(const struct cascade *c, enum cascade_step s)
{
    const struct demographics *d = c->d;
    switch (s) {
    case CASCADE_POSTCODE:
        return d->postcode[0] != '\0';
    case CASCADE_BROAD:
        return d->postcode[0] != '\0' || exact_gender(d) != NULL;
    case CASCADE_GIVEN:
        return d->n_given > 0 && utf8_length(d->given[0]) > 3;
    case CASCADE_FAMILY:
        return utf8_length(d->family) > 3;
    case CASCADE_FUZZY:
        return c->fuzzy &&
               (d->n_given > 0 || (d->gender != DEMOG_GENDER_NONE && d->postcode[0] != '\0'));
    case CASCADE_NO_HISTORY:
        return false; /* only ever entered straight from EXACT */
    default:
        return true;
    }
}

static int append_names(struct buf *q, const struct cascade *c, bool wild_given, bool wild_family)
{
    char w[DEMOG_NAME_SIZE + 1];
    const struct demographics *d = c->d;
    if (wild_family)
        prefix_wildcard(d->family, 3, w, sizeof(w));
    int err = url_query_append(q, "family", wild_family ? w : d->family);
    for (unsigned i = 0; i < d->n_given && !err; i++) {
        if (i == 0 && wild_given)
            prefix_wildcard(d->given[0], 3, w, sizeof(w));
        err = url_query_append(q, "given", i == 0 && wild_given ? w : d->given[i]);
    }
    return err;
}

static int append_fuzzy(struct buf *q, const struct demographics *d)
{
    int err = url_query_append(q, "_fuzzy-match", "true");
    if (!err && d->gender != DEMOG_GENDER_NONE)
        err = url_query_append(q, "gender", demog_gender_name(d->gender));
    if (!err && d->postcode[0] != '\0')
        err = url_query_append(q, "address-postalcode", d->postcode);
    return err;
}

static int append_exact(struct buf *q, const struct demographics *d)
{
    const char *gender = exact_gender(d);
    int err = gender != NULL ? url_query_append(q, "gender", gender) : 0;
    if (!err && d->postcode[0] != '\0')
        err = url_query_append(q, "address-postalcode", d->postcode);
    return err;
}

static int build(const struct cascade *c, struct buf *q)
{
    const struct demographics *d = c->d;
    enum cascade_step s = c->step;
    char birth[16], pc[8];
    snprintf(birth, sizeof(birth), "eq%s", d->birth_date);
    int err = append_names(q, c, s == CASCADE_GIVEN, s == CASCADE_FAMILY);
    err = err ? err : url_query_append(q, "birthdate", birth);
    if (err || s == CASCADE_FUZZY)
        return err ? err : append_fuzzy(q, d);
    if (s == CASCADE_POSTCODE) {
        prefix_wildcard(d->postcode, 2, pc, sizeof(pc));
        err = url_query_append(q, "address-postalcode", pc);
    } else if (s == CASCADE_EXACT || s == CASCADE_NO_HISTORY) {
        err = append_exact(q, d);
    }
    if (!err && s != CASCADE_NO_HISTORY && c->history)
        err = url_query_append(q, "_history", "true");
    return err;
}

int cascade_query(struct cascade *c, struct buf *q)
{
    while (c->step != CASCADE_DONE && c->step != CASCADE_NO_HISTORY && !step_applies(c, c->step))
        c->step++;
    if (c->step == CASCADE_DONE)
        return 0;
    buf_reset(q);
    int err = build(c, q);
    return err ? err : 1;
}

/* Where to go after a step: NO_HISTORY is a detour from EXACT and rejoins after it. */
static enum cascade_step next_step(enum cascade_step s)
{
    return s == CASCADE_EXACT ? CASCADE_POSTCODE : s + 1;
}

static void take_candidate(struct cascade *c, const struct fhir_patient *p)
{
    /* PDS's candidate is its best guess: with _history or a wildcard its current birth date
     * can differ from ours. Such a candidate is someone else, and the search goes on. */
    if (fhir_birth_date_contradicts(p->birth_date, c->d->birth_date)) {
        c->contradicted++;
        c->step = next_step(c->step);
        return;
    }
    if (c->have && strcmp(c->best.id, p->id) != 0) {
        c->conflict = true;
        c->step = CASCADE_DONE;
        return;
    }
    if (!c->have || p->score > c->best.score)
        c->best = *p;
    c->have = true;
    /* A candidate a person could accept or review ends the search; one too weak for that
     * (fuzzy scores) lets later steps look for someone better, or for a conflict. */
    c->step = c->best.score >= c->bands.review ? CASCADE_DONE : next_step(c->step);
}

void cascade_feed(struct cascade *c, const struct fhir_result *r)
{
    c->searches++;
    if (r->kind == FHIR_SEARCH_ONE) {
        take_candidate(c, &r->patient);
        return;
    }
    if (r->kind == FHIR_TOO_MANY) {
        /* Every later step searches a wider net than EXACT, so once a step finds too many,
         * only dropping _history from EXACT can still narrow things down. */
        c->too_many = true;
        bool retry = c->step == CASCADE_EXACT && !c->have && c->history;
        c->step = retry ? CASCADE_NO_HISTORY : CASCADE_DONE;
        return;
    }
    c->step = next_step(c->step);
}

void cascade_result(const struct cascade *c, struct trace_result *out)
{
    memset(out, 0, sizeof(*out));
    out->steps = c->searches;
    out->score = -1;
    if (c->conflict || (!c->have && c->too_many)) {
        out->outcome = TRACE_MULTIPLE_MATCHES;
        return;
    }
    out->outcome = c->have ? match_decide(c->best.score, &c->bands) : TRACE_NO_MATCH;
    if (out->outcome == TRACE_NO_MATCH)
        return;
    memcpy(out->nhs_number, c->best.id, sizeof(out->nhs_number));
    out->score = c->best.score;
    out->restricted = c->best.security == FHIR_SEC_R || c->best.security == FHIR_SEC_V;
    out->deceased = c->best.death_date[0] != '\0';
}
