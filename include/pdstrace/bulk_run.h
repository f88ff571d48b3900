#ifndef PDS_TRACE_BULK_RUN_H
#define PDS_TRACE_BULK_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "pdstrace/bulk_format.h"
#include "pdstrace/bulk_progress.h"

/* A bulk run of the CLI (`pds-trace bulk`): one input file to one output file, every row
 * through the bulk tracer, rows written in input order as soon as those before them are
 * done. The output file is the checkpoint: a run killed at any moment and started again
 * with resume reads how many rows the output holds, cuts a half-written last row, and
 * goes on from the next input row, so the final file is the one an uninterrupted run
 * writes. See docs/internals/bulk.md. */
struct bulk_run;
struct bulk_tracer;

struct bulk_run_config {
    const char *input;       /* path; copied */
    const char *output;      /* path; copied */
    enum bulk_format format; /* AUTO: as the header says */
    unsigned concurrency;    /* rows in the tracer at once; 0: 16 */
    bool resume;             /* continue the output file instead of starting it again */
    bool write_back;         /* ask for the write-back of rows with a case_id */
    const char *today;       /* "YYYY-MM-DD", UTC; copied */
};

/* status 0: every row is in the output, which is synced and closed. UV_ECANCELED: stopped;
 * the output holds the rows done before the first unfinished one, in order. Otherwise a
 * write failed (bulk_run_error says which). */
typedef void bulk_run_done_cb(int status, void *arg);

/* Opens and reads the input through once (to know its format, its header and its rows)
 * and prepares the output (with resume, checks that it continues this input and cuts it
 * after its last whole row). Returns 0, or ERR_INVALID_INPUT / ERR_IO-like codes with
 * one line in err naming the file and why ("INPUT.csv: no such file", "the header has no
 * family column", "OUTPUT.csv was not written from this input: its first line differs").
 */
int bulk_run_new(struct bulk_run **out, uv_loop_t *loop, const struct bulk_run_config *cfg,
                 char *err, size_t err_size);

/* Starts tracing through tracer (borrowed, outlives the run); cb runs exactly once, never
 * from inside this call. */
void bulk_run_start(struct bulk_run *r, struct bulk_tracer *tracer, bulk_run_done_cb *cb,
                    void *arg);

/* Starts no more rows, writes out what is done in order, and calls back with UV_ECANCELED
 * once the rows in the tracer have ended (stop the tracer and the trace service too). */
void bulk_run_stop(struct bulk_run *r);

const struct bulk_counts *bulk_run_counts(const struct bulk_run *r);
const char *bulk_run_error(const struct bulk_run *r);

/* After cb (or instead of start). NULL is fine. */
void bulk_run_free(struct bulk_run *r);

#endif
