#include "pdstrace/trace_result.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/demographics.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/nhs_number.h"

static const char *const outcome_names[] = {
    [TRACE_MATCHED] = "matched",     [TRACE_POTENTIAL_MATCH] = "potential_match",
    [TRACE_NO_MATCH] = "no_match",   [TRACE_MULTIPLE_MATCHES] = "multiple_matches",
    [TRACE_OBJECTION] = "objection",
};

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

static const char *const write_back_names[] = {
    [TRACE_WB_NOT_REQUESTED] = "not_requested",
    [TRACE_WB_QUEUED] = "queued",
    [TRACE_WB_WITHHELD] = "withheld",
    [TRACE_WB_UNCHANGED] = "unchanged",
    [TRACE_WB_FAILED] = "failed",
};

const char *trace_write_back_name(enum trace_write_back w)
{
    return (unsigned)w < ARRAY_SIZE(write_back_names) ? write_back_names[w] : "unknown";
}

enum trace_write_back trace_write_back_plan(const struct demographics *d,
                                            const struct trace_result *r)
{
    if (r->outcome == TRACE_OBJECTION)
        return TRACE_WB_WITHHELD;
    if (d->case_id[0] == '\0' || d->write_back == 0)
        return TRACE_WB_NOT_REQUESTED;
    if (r->outcome == TRACE_POTENTIAL_MATCH)
        return TRACE_WB_WITHHELD;
    if (r->outcome != TRACE_MATCHED)
        return TRACE_WB_NOT_REQUESTED;
    /* The case system already holds this very number: writing it again changes nothing. */
    if (strcmp(d->nhs_number, r->nhs_number) == 0 && r->superseded_from[0] == '\0')
        return TRACE_WB_UNCHANGED;
    return TRACE_WB_QUEUED;
}

void trace_result_withhold(struct trace_result *r)
{
    r->outcome = TRACE_OBJECTION;
    r->nhs_number[0] = '\0';
    r->score = -1;
    r->restricted = false;
    r->superseded_from[0] = '\0';
    r->deceased = false;
    r->held_invalidated = false;
}

static int append_number_or_null(struct buf *out, const char *key, const char *v)
{
    if (v[0] == '\0')
        return buf_appendf(out, ",\"%s\":null", key);
    return buf_appendf(out, ",\"%s\":\"%s\"", key, v);
}

/* 1 prints as 1.0 and 0.94 as 0.94: what a reader of the API expects. */
static int append_score(struct buf *out, double score)
{
    if (score < 0)
        return buf_append_str(out, ",\"score\":null");
    if (score == 1.0)
        return buf_append_str(out, ",\"score\":1.0");
    if (score == 0.0)
        return buf_append_str(out, ",\"score\":0.0");
    return buf_appendf(out, ",\"score\":%.4g", score);
}

int trace_result_format(const struct trace_result *r, struct buf *out)
{
    int err = buf_appendf(out, "\"outcome\":\"%s\"", trace_outcome_name(r->outcome));
    err = err ? err : append_number_or_null(out, "nhs_number", r->nhs_number);
    err = err ? err : append_score(out, r->score);
    err = err ? err : buf_appendf(out, ",\"restricted\":%s", r->restricted ? "true" : "false");
    err = err ? err : append_number_or_null(out, "superseded_from", r->superseded_from);
    err = err ? err : buf_appendf(out, ",\"deceased\":%s", r->deceased ? "true" : "false");
    err = err ? err
              : buf_appendf(out, ",\"source\":\"%s\",\"steps\":%u",
                            r->source == TRACE_SOURCE_CACHE ? "cache" : "pds", r->steps);
    return err;
}

int trace_result_encode(const struct trace_result *r, struct buf *out)
{
    char score[32] = "";
    if (r->score >= 0)
        snprintf(score, sizeof(score), "%.17g", r->score);
    return buf_appendf(out, "3|%s|%s|%s|%d|%s|%d|%d|%u", trace_outcome_name(r->outcome),
                       r->nhs_number, score, r->restricted ? 1 : 0, r->superseded_from,
                       r->deceased ? 1 : 0, r->held_invalidated ? 1 : 0, r->steps);
}

/* Splits off the next '|'-separated field of [*s, end) into out (size bytes). A NUL byte
 * would hide the rest of the field from the checks below, so it makes the value invalid. */
static int next_field(const char **s, const char *end, char *out, size_t size)
{
    const char *bar = memchr(*s, '|', (size_t)(end - *s));
    const char *stop = bar != NULL ? bar : end;
    size_t n = (size_t)(stop - *s);
    if (n >= size || memchr(*s, '\0', n) != NULL)
        return ERR_PARSE;
    memcpy(out, *s, n);
    out[n] = '\0';
    *s = bar != NULL ? bar + 1 : end;
    return 0;
}

static int number_field(const char *v, char out[11])
{
    if (v[0] != '\0' && (strlen(v) != 10 || !nhs_number_is_valid(v)))
        return ERR_PARSE;
    memcpy(out, v, strlen(v) + 1);
    return 0;
}

static int score_field(const char *v, double *out)
{
    char *end;
    if (v[0] == '\0') {
        *out = -1;
        return 0;
    }
    *out = strtod(v, &end);
    return *end == '\0' && *out >= 0 && *out <= 1 ? 0 : ERR_PARSE;
}

static int steps_field(const char *v, unsigned *out)
{
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || *end != '\0' || n > 100)
        return ERR_PARSE;
    *out = (unsigned)n;
    return 0;
}

static int flag_field(const char *v, bool *out)
{
    if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
        return ERR_PARSE;
    *out = v[0] == '1';
    return 0;
}

int trace_result_decode(const char *s, size_t len, struct trace_result *out)
{
    const char *end = s + len;
    char f[9][32];
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < 9; i++)
        if (s > end || next_field(&s, end, f[i], sizeof(f[i])) != 0)
            return ERR_PARSE;
    if (s != end || strcmp(f[0], "3") != 0 || trace_outcome_parse(f[1], &out->outcome) != 0)
        return ERR_PARSE;
    if (number_field(f[2], out->nhs_number) || score_field(f[3], &out->score) ||
        flag_field(f[4], &out->restricted) || number_field(f[5], out->superseded_from) ||
        flag_field(f[6], &out->deceased) || flag_field(f[7], &out->held_invalidated) ||
        steps_field(f[8], &out->steps))
        return ERR_PARSE;
    out->source = TRACE_SOURCE_PDS;
    return 0;
}
