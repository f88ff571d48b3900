#ifndef PDS_TRACE_MATCH_H
#define PDS_TRACE_MATCH_H

/* enum trace_outcome is what a decision returns, so its full definition is needed. */
#include "pdstrace/trace_result.h"

/* The decision bands of DESIGN.md §3. Pure. */
struct match_bands {
    double accept; /* match.accept_score */
    double review; /* match.review_score */
};

/* The outcome for one candidate of the given score: matched at or above accept, potential
 * at or above review, else no_match. */
enum trace_outcome match_decide(double score, const struct match_bands *bands);

#endif
