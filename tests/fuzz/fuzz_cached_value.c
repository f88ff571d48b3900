/* libFuzzer harness: trace_result_decode, the reader of cached trace results (a Redis value
 * that another process wrote). Invariants: a decoded value has fields in their ranges, and
 * encoding it and decoding that again gives the same fields (the round trip is exact); a
 * value holding a NUL byte is never accepted. */
#include <stdint.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/nhs_number.h"
#include "pdstrace/trace_result.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

static void check_ranges(const struct trace_result *r)
{
    if (r->outcome > TRACE_OBJECTION || r->steps > 100)
        __builtin_trap();
    if (r->score > 1 || (r->score < 0 && r->score != -1))
        __builtin_trap();
    if (r->nhs_number[0] != '\0' && !nhs_number_is_valid(r->nhs_number))
        __builtin_trap();
    if (r->superseded_from[0] != '\0' && !nhs_number_is_valid(r->superseded_from))
        __builtin_trap();
}

static void check_same(const struct trace_result *a, const struct trace_result *b)
{
    if (a->outcome != b->outcome || a->score != b->score || a->restricted != b->restricted ||
        a->source != b->source || a->steps != b->steps)
        __builtin_trap();
    if (strcmp(a->nhs_number, b->nhs_number) != 0 ||
        strcmp(a->superseded_from, b->superseded_from) != 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct trace_result r, again;
    struct buf b;

    if (trace_result_decode((const char *)d, n, &r) != 0)
        return 0;
    if (memchr(d, '\0', n) != NULL)
        __builtin_trap(); /* a NUL would have hidden part of a field from the checks */
    check_ranges(&r);
    buf_init(&b, 4096);
    if (trace_result_encode(&r, &b) != 0)
        __builtin_trap();
    if (trace_result_decode(buf_cstr(&b), buf_len(&b), &again) != 0)
        __builtin_trap();
    check_same(&r, &again);
    buf_free(&b);
    return 0;
}
