#ifndef PDS_TRACE_CASCADE_H
#define PDS_TRACE_CASCADE_H

#include <stdbool.h>

#include "pdstrace/demographics.h"
#include "pdstrace/fhir.h"
#include "pdstrace/match.h"

/* The unattended search cascade (pds/README.md), as pure state: it says which search to
 * make next, takes each answer, and decides. See docs/internals/cascade.md.
 *
 *   EXACT        family + given + birthdate (+ postcode), _history=true
 *   NO_HISTORY   the same without _history, only after EXACT says TOO_MANY_MATCHES
 *   POSTCODE     postcode as its first 2 characters + '*'          (postcode given)
 *   NO_POSTCODE  EXACT without the postcode: restricted records never answer a search
 *                with a postcode, and people move                  (postcode given)
 *   GIVEN        given as its first 3 characters + '*', no postcode (given > 3 chars)
 *   FAMILY       family as its first 3 characters + '*', no postcode (family > 3 chars)
 *   FUZZY        _fuzzy-match=true                                  (pds.fuzzy only)
 *
 * A step that finds nobody moves on. One candidate at or above the review score ends the
 * cascade; one below it is kept while later steps look for a better or a conflicting
 * answer. Two steps naming different people end it with multiple_matches, and so does
 * TOO_MANY_MATCHES with no candidate: every later step casts a wider net. */
enum cascade_step {
    CASCADE_EXACT,
    CASCADE_NO_HISTORY,
    CASCADE_POSTCODE,
    CASCADE_NO_POSTCODE,
    CASCADE_GIVEN,
    CASCADE_FAMILY,
    CASCADE_FUZZY,
    CASCADE_DONE,
};

struct cascade {
    const struct demographics *d; /* borrowed for the cascade's life */
    struct match_bands bands;
    bool fuzzy;
    enum cascade_step step;
    unsigned searches;
    bool have;     /* a candidate was found */
    bool too_many; /* some step answered TOO_MANY_MATCHES */
    bool conflict; /* two steps named different people */
    struct fhir_patient best;
};

struct buf;

void cascade_init(struct cascade *c, const struct demographics *d, const struct match_bands *b,
                  bool fuzzy);

/* Writes the current step's query (percent-encoded, without _max-results) into q, which it
 * resets first, and returns 1; returns 0 when the cascade is over; <0 on a buf error. */
int cascade_query(struct cascade *c, struct buf *q);

/* Takes the answer to the current step's search and moves on. */
void cascade_feed(struct cascade *c, const struct fhir_result *r);

/* The decision once cascade_query has returned 0: outcome, number, score, restricted and
 * steps (source and superseded_from are the caller's). */
void cascade_result(const struct cascade *c, struct trace_result *out);

#endif
