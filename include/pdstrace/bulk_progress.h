#ifndef PDS_TRACE_BULK_PROGRESS_H
#define PDS_TRACE_BULK_PROGRESS_H

#include <stdint.h>

#include "pdstrace/trace_result.h"

/* What a bulk run has done so far, and its three written forms: the live bar on a
 * terminal, the JSON progress line elsewhere, and the summary at the end. Pure apart from
 * bulk_progress_log, which writes a log line. */
struct buf;

#define BULK_OUTCOMES (TRACE_OBJECTION + 1)

struct bulk_counts {
    uint64_t rows_total;             /* data rows in the input */
    uint64_t rows_done;              /* rows in the output, an earlier run's included */
    uint64_t rows_resumed;           /* rows already in the output when this run started */
    uint64_t outcome[BULK_OUTCOMES]; /* by enum trace_outcome, this run's rows */
    uint64_t invalid;                /* rows that could not be read */
    uint64_t failed;                 /* rows whose trace failed after its retries */
    uint64_t pds_calls;              /* PDS requests this run made, retries included (the
                                        run leaves it 0: pds_client_requests_sent knows) */
};

/* "[#########-----------]  45%  4,500/10,000  298 rows/s  ETA 0:18  matched 4,300 ...":
 * one line of at most width columns, no line end. elapsed_s: this run's time. Returns 0
 * or a buf error. */
int bulk_progress_bar(const struct bulk_counts *c, double elapsed_s, unsigned width,
                      struct buf *out);

/* One log line (msg "bulk_progress" or "bulk_summary") with every count, the rate, the ETA
 * and the PDS calls per row. */
void bulk_progress_log(const struct bulk_counts *c, double elapsed_s, const char *msg);

/* The summary for a person, several lines each ending in "\n". Returns 0 or a buf error. */
int bulk_summary_text(const struct bulk_counts *c, double elapsed_s, struct buf *out);

#endif
