#ifndef PDS_TRACE_TRACE_RESULT_H
#define PDS_TRACE_TRACE_RESULT_H

#include <stdbool.h>
#include <stddef.h>

/* What a trace found (DESIGN.md §3), and its two written forms: the members of the answer
 * to POST /v1/trace, and the cached value. Pure. */
enum trace_outcome {
    TRACE_MATCHED,
    TRACE_POTENTIAL_MATCH,
    TRACE_NO_MATCH,
    TRACE_MULTIPLE_MATCHES,
    TRACE_OBJECTION,
};

enum trace_source {
    TRACE_SOURCE_PDS,
    TRACE_SOURCE_CACHE,
};

/* The cached value and the body of POST /v1/trace share it. */
struct trace_result {
    enum trace_outcome outcome;
    char nhs_number[11];      /* "" unless matched or potential_match */
    double score;             /* PDS score of the accepted candidate; < 0 when none */
    bool restricted;          /* meta.security R or V */
    char superseded_from[11]; /* the held number PDS replaced, "" when none */
    bool deceased;            /* PDS holds a death notice (deceasedDateTime) */
    bool held_invalidated;    /* PDS says the held number given to verify is invalidated
                                 (what PDS MESH reports as code 91) */
    enum trace_source source;
    unsigned steps; /* PDS requests made; 0 on cache hit or objection */
};

struct buf;
struct demographics;

/* What became of a trace's write-back to the case system (DESIGN.md §3 "write_back"). */
enum trace_write_back {
    TRACE_WB_NOT_REQUESTED, /* no case_id, "write_back": false, or nothing to write */
    TRACE_WB_QUEUED,        /* in the durable queue */
    TRACE_WB_WITHHELD,      /* an objection, or a potential match (never written) */
    TRACE_WB_UNCHANGED,     /* the held number was confirmed: nothing to write */
    TRACE_WB_FAILED,        /* the number is answered but could not be queued */
};

/* "not_requested", "queued", "withheld", "unchanged", "failed". Never NULL. */
const char *trace_write_back_name(enum trace_write_back w);

/* What a trace's answer r for the request d means for its write-back: TRACE_WB_QUEUED
 * means "queue it now" (the caller answers queued or failed by how that goes). Pure. */
enum trace_write_back trace_write_back_plan(const struct demographics *d,
                                            const struct trace_result *r);

/* Hides what r says about the person and marks it an objection: what a trace answers
 * when the person objected (by case or by number). steps and source are kept. */
void trace_result_withhold(struct trace_result *r);

/* "matched", "potential_match", "no_match", "multiple_matches", "objection"; "unknown" for
 * a value outside the enum. Never NULL. */
const char *trace_outcome_name(enum trace_outcome o);
/* Returns 0 or ERR_INVALID_INPUT. */
int trace_outcome_parse(const char *name, enum trace_outcome *out);

/* Appends the members "outcome","nhs_number","score","restricted","superseded_from",
 * "deceased","source","steps" of the answer of DESIGN.md §3 (JSON, without the braces, null for
 * absent values). Every value comes from a fixed vocabulary or is a number, so no escaping is
 * needed. Returns 0 or a buf error. */
int trace_result_format(const struct trace_result *r, struct buf *out);

/* The cached form: a short versioned line ("3|matched|9000000009|1|0||0|0|2": outcome,
 * number, score, restricted, superseded_from, deceased, held_invalidated, steps). Returns 0
 * or a buf error. */
int trace_result_encode(const struct trace_result *r, struct buf *out);

/* The reverse; checks every field (a valid NHS number, a score in 0..1...). Returns 0 or
 * ERR_PARSE, also for a value of an older version (it lacks fields: the caller traces
 * again). s need not be NUL-terminated. */
int trace_result_decode(const char *s, size_t len, struct trace_result *out);

#endif
