#include "pdstrace/match.h"

enum trace_outcome match_decide(double score, const struct match_bands *bands)
{
    if (score >= bands->accept)
        return TRACE_MATCHED;
    if (score >= bands->review)
        return TRACE_POTENTIAL_MATCH;
    return TRACE_NO_MATCH;
}
