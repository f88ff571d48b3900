/* A row's result as an HTTP job keeps it: the answer (its kind, the trace's result in its
 * cached form, the reason or note), the row's case id and its input row, sealed together
 * as one value. The output row is written from it at download (job_result.c), after the
 * objection check, so that an objection recorded after the row was traced still withholds
 * its number. The plain form is
 * "<kind>\n<case_id>\n<trace_result_encode, or "">\n<why's length>\n<why><input record>". */
#include <stdlib.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "pdstrace/trace_result.h"
#include "job_int.h"

#define WHAT           "result" /* the associated data: "result:<job_id>:<row>" */
#define ENCODED_MAX    128      /* trace_result_encode's line is under 100 bytes */
#define CASE_ID_MAX    64       /* demographics' limit */
#define WHY_LENGTH_MAX 8

static const char *const kinds[] = {
    [BULK_ANSWER_TRACED] = "traced",
    [BULK_ANSWER_BAD] = "bad",
    [BULK_ANSWER_FAILED] = "failed",
};

/* Only a traced answer can carry a number, so only its case id is needed (and kept). */
static int answer_text(const struct bulk_answer *a, const char *case_id, struct buf *out)
{
    bool traced = a->kind == BULK_ANSWER_TRACED;
    const char *id = traced && case_id != NULL && strlen(case_id) <= CASE_ID_MAX ? case_id : "";
    const char *why = a->why != NULL ? a->why : "";
    /* A reason longer than the opened form holds cannot come from a task (its why is as
     * long); cutting it keeps the value openable whatever a caller gives. */
    size_t why_len = strnlen(why, BJ_WHY_MAX - 1);
    if ((unsigned)a->kind >= ARRAY_SIZE(kinds))
        return ERR_INTERNAL;
    int err = buf_appendf(out, "%s\n%s\n", kinds[a->kind], id);
    err = err ? err : traced ? trace_result_encode(&a->result, out) : 0;
    err = err ? err : buf_appendf(out, "\n%zu\n", why_len);
    return err ? err : buf_append(out, why, why_len);
}

int bj_answer_seal(const struct bulk_jobs *s, const char *job_id, uint64_t row,
                   const struct bulk_answer *a, const char *case_id,
                   const struct bulk_csv_record *input, struct buf *out)
{
    struct buf plain;
    buf_init(&plain, BJ_STORED_MAX);
    int err = answer_text(a, case_id, &plain);
    err = err ? err : bj_record_text(input, &plain);
    err = err ? err : bj_seal(s, WHAT, job_id, row, buf_cstr(&plain), buf_len(&plain), out);
    buf_wipe(&plain);
    return err;
}

/* The next line of [*p, end) into out (size bytes with its NUL), past its '\n'. */
static int take_line(const char **p, const char *end, char *out, size_t size)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = nl != NULL ? (size_t)(nl - *p) : 0;
    if (nl == NULL || n >= size || memchr(*p, '\0', n) != NULL)
        return ERR_PARSE;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p = nl + 1;
    return 0;
}

static int kind_of(const char *name, enum bulk_answer_kind *out)
{
    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
        if (strcmp(name, kinds[i]) == 0) {
            *out = (enum bulk_answer_kind)i;
            return 0;
        }
    }
    return ERR_PARSE;
}

/* The why's length line, then that many bytes of why. */
static int take_why(const char **p, const char *end, struct bj_stored *st)
{
    char len[WHY_LENGTH_MAX];
    char *stop;
    int err = take_line(p, end, len, sizeof(len));
    unsigned long n = err ? 0 : strtoul(len, &stop, 10);
    if (err || len[0] < '0' || len[0] > '9' || *stop != '\0' || n >= sizeof(st->why) ||
        n > (size_t)(end - *p))
        return ERR_PARSE;
    memcpy(st->why, *p, n);
    st->why[n] = '\0';
    *p += n;
    return 0;
}

/* The answer's part of the plain form into st, *p moved past it. */
static int parse_answer(const char **p, const char *end, struct bj_stored *st)
{
    char kind[16], encoded[ENCODED_MAX];
    struct bulk_answer *a = &st->answer;
    memset(a, 0, sizeof(*a));
    int err = take_line(p, end, kind, sizeof(kind));
    err = err ? err : take_line(p, end, st->case_id, sizeof(st->case_id));
    err = err ? err : take_line(p, end, encoded, sizeof(encoded));
    err = err ? err : kind_of(kind, &a->kind);
    err = err ? err : take_why(p, end, st);
    if (err)
        return err;
    bool traced = a->kind == BULK_ANSWER_TRACED;
    /* A traced row's note is NULL when it has none, as the tracer gives it. */
    a->why = traced && st->why[0] == '\0' ? NULL : st->why;
    if (traced)
        return trace_result_decode(encoded, strlen(encoded), &a->result);
    return encoded[0] == '\0' ? 0 : ERR_PARSE;
}

int bj_answer_open(const struct bulk_jobs *s, const char *job_id, uint64_t row, const char *sealed,
                   size_t n, struct bj_stored *st)
{
    struct buf plain;
    buf_init(&plain, BJ_STORED_MAX);
    int err = bj_open(s, WHAT, job_id, row, sealed, n, &plain);
    const char *p = buf_cstr(&plain), *end = p + buf_len(&plain);
    err = err ? err : parse_answer(&p, end, st);
    err = err ? err : bj_record_parse(p, (size_t)(end - p), &st->input);
    buf_wipe(&plain);
    return err == UV_ENOMEM ? err : err ? ERR_PARSE : 0;
}
