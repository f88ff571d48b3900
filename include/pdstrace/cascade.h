#ifndef PDS_TRACE_CASCADE_H
#define PDS_TRACE_CASCADE_H

#include <stdbool.h>

#include "pdstrace/fhir.h"  /* struct fhir_patient, embedded below */
#include "pdstrace/match.h" /* struct match_bands, embedded below */

/* The unattended search cascade (pds/README.md), as pure state: it says which search to
 * make next, takes each answer, and decides. See docs/internals/cascade.md.
 *
 *   EXACT        family + given + birthdate (+ gender male/female, + postcode),
 *                _history=true
 *   NO_HISTORY   the same without _history, only after EXACT says TOO_MANY_MATCHES
 *   POSTCODE     postcode as its first 2 characters + '*'          (postcode given)
 *   BROAD        EXACT without the postcode and the gender: restricted records never
 *                answer a search with a postcode, people move, and genders are
 *                recorded differently               (postcode or male/female given)
 *   GIVEN        given as its first 3 characters + '*', no postcode (given > 3 chars)
 *   FAMILY       family as its first 3 characters + '*', no postcode (family > 3 chars)
 *   FUZZY        _fuzzy-match=true                                  (pds.fuzzy only)
 *
 * A step that finds nobody moves on, and so does one whose candidate's birth date contradicts
 * the request (a different person). One candidate at or above the review score ends the
 * cascade; one below it is kept while later steps look for a better or a conflicting
 * answer. Two steps naming different people end it with multiple_matches, and so does
 * TOO_MANY_MATCHES with no candidate: every later step casts a wider net. */
enum cascade_step {
    CASCADE_EXACT,
    CASCADE_NO_HISTORY,
    CASCADE_POSTCODE,
    CASCADE_BROAD,
    CASCADE_GIVEN,
    CASCADE_FAMILY,
    CASCADE_FUZZY,
    CASCADE_DONE,
};

/* How the cascade searches: the decision bands, whether a fuzzy search ends it, and whether
 * searches carry _history=true (pds.history; NHS England's public sandbox answers only
 * searches without it). */
struct cascade_options {
    struct match_bands bands;
    bool fuzzy;
    bool history;
};

struct cascade {
    const struct demographics *d; /* borrowed for the cascade's life */
    struct match_bands bands;
    bool fuzzy;
    bool history;
    enum cascade_step step;
    unsigned searches;
    bool have;             /* a candidate was found */
    bool too_many;         /* some step answered TOO_MANY_MATCHES */
    bool conflict;         /* two steps named different people */
    unsigned contradicted; /* candidates refused for a contradicting birth date */
    struct fhir_patient best;
};

struct buf;
struct demographics;
struct trace_result;

void cascade_init(struct cascade *c, const struct demographics *d,
                  const struct cascade_options *opt);

/* Writes the current step's query (percent-encoded, without _max-results) into q, which it
 * resets first, and returns 1; returns 0 when the cascade is over; <0 on a buf error. */
int cascade_query(struct cascade *c, struct buf *q);

/* Takes the answer to the current step's search and moves on. */
void cascade_feed(struct cascade *c, const struct fhir_result *r);

/* The decision once cascade_query has returned 0: outcome, number, score, restricted and
 * steps (source and superseded_from are the caller's). */
void cascade_result(const struct cascade *c, struct trace_result *out);

#endif
