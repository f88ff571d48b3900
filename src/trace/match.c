#include "pdstrace/match.h"

#include <string.h>

#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/nhs_number.h"

static const char *const outcome_names[] = {
    [TRACE_MATCHED] = "matched",     [TRACE_POTENTIAL_MATCH] = "potential_match",
    [TRACE_NO_MATCH] = "no_match",   [TRACE_MULTIPLE_MATCHES] = "multiple_matches",
    [TRACE_OBJECTION] = "objection",
};

enum trace_outcome match_decide(double score, const struct match_bands *bands)
{
    if (score >= bands->accept)
        return TRACE_MATCHED;
    if (score >= bands->review)
        return TRACE_POTENTIAL_MATCH;
    return TRACE_NO_MATCH;
}

const char *trace_outcome_name(enum trace_outcome o)
{
    return (unsigned)o < ARRAY_SIZE(outcome_names) ? outcome_names[o] : "unknown";
}

int trace_outcome_parse(const char *name, enum trace_outcome *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(outcome_names); i++) {
        if (strcmp(name, outcome_names[i]) == 0) {
            *out = (enum trace_outcome)i;
            return 0;
        }
    }
    return ERR_INVALID_INPUT;
}

static json_t *string_or_null(const char *s)
{
    return s[0] != '\0' ? json_string(s) : json_null();
}

json_t *trace_result_to_json(const struct trace_result *r)
{
    return json_pack("{s:s, s:o, s:o, s:b, s:o, s:s, s:i}", "outcome",
                     trace_outcome_name(r->outcome), "nhs_number", string_or_null(r->nhs_number),
                     "score", r->score >= 0 ? json_real(r->score) : json_null(), "restricted",
                     r->restricted, "superseded_from", string_or_null(r->superseded_from), "source",
                     r->source == TRACE_SOURCE_CACHE ? "cache" : "pds", "steps", (int)r->steps);
}

/* A number field: null or absent leaves "", else it must be a valid NHS number. */
static int number_field(const json_t *j, const char *key, char out[11])
{
    const json_t *v = json_object_get(j, key);
    out[0] = '\0';
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v) || strlen(json_string_value(v)) != 10 ||
        !nhs_number_is_valid(json_string_value(v)))
        return ERR_PARSE;
    memcpy(out, json_string_value(v), 11);
    return 0;
}

int trace_result_from_json(const json_t *j, struct trace_result *out)
{
    memset(out, 0, sizeof(*out));
    const char *outcome = json_string_value(json_object_get(j, "outcome"));
    const json_t *score = json_object_get(j, "score");
    const json_t *steps = json_object_get(j, "steps");
    if (outcome == NULL || trace_outcome_parse(outcome, &out->outcome) != 0)
        return ERR_PARSE;
    if (number_field(j, "nhs_number", out->nhs_number) ||
        number_field(j, "superseded_from", out->superseded_from))
        return ERR_PARSE;
    if (!json_is_boolean(json_object_get(j, "restricted")) || !json_is_integer(steps))
        return ERR_PARSE;
    if (score != NULL && !json_is_null(score) && !json_is_number(score))
        return ERR_PARSE;
    out->score = json_is_number(score) ? json_number_value(score) : -1;
    out->restricted = json_is_true(json_object_get(j, "restricted"));
    out->steps = (unsigned)json_integer_value(steps);
    const char *source = json_string_value(json_object_get(j, "source"));
    out->source =
        source != NULL && strcmp(source, "cache") == 0 ? TRACE_SOURCE_CACHE : TRACE_SOURCE_PDS;
    return 0;
}
