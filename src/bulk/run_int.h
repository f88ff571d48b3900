#ifndef PDS_TRACE_BULK_RUN_INT_H
#define PDS_TRACE_BULK_RUN_INT_H

/* What run.c (the pipeline) and run_files.c (opening, the first read, resume) share. */
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "pdstrace/buf.h"
#include "pdstrace/bulk_csv.h"
#include "pdstrace/bulk_run.h"
#include "pdstrace/bulk_tracer.h"
#include "pdstrace/list.h"

/* A record kept after the reader's callback: the header, or a row waiting for its answer. */
struct bulk_record_copy {
    struct buf raw; /* the kept fields, each followed by a NUL */
    size_t n_fields, n_kept;
    size_t len[BULK_CSV_MAX_FIELDS];
    const char *field[BULK_CSV_MAX_FIELDS];
    struct bulk_csv_record view;
};

/* Copies rec into c (initialised with buf_init or freed before); returns 0 or a buf error. */
int bulk_record_copy_set(struct bulk_record_copy *c, const struct bulk_csv_record *rec);

#define BULK_RUN_CHUNK 65536 /* bytes read at a time */
/* Ceilings (not sizes: buffers grow as needed) for one record as kept, and one written:
 * quotes doubled, formula guards and U+FFFD for bad bytes at most quadruple a field. */
#define BULK_RECORD_KEPT_MAX  (BULK_CSV_MAX_FIELDS * (BULK_CSV_MAX_FIELD + 1))
#define BULK_RECORD_WRITE_MAX (4 * BULK_RECORD_KEPT_MAX + 4096)

struct bulk_run {
    uv_loop_t *loop;
    char *chunk; /* BULK_RUN_CHUNK bytes */
    struct bulk_run_config cfg;
    struct bulk_tracer *tracer;
    char *input, *output, today[11];
    int in_fd, out_fd;
    struct bulk_layout layout;
    struct buf header; /* the output's first line(s) */
    struct bulk_record_copy input_header;
    uint64_t skip; /* data rows the output already holds (resume) */
    uint64_t seen; /* data rows read so far in this pass */
    struct bulk_csv_reader *reader;
    struct list_node window;  /* slots in input order, from the next to write */
    struct list_node pending; /* slots not yet given to the tracer */
    unsigned window_len, tracing;
    struct buf out;      /* output rows not yet written */
    uint64_t written_at; /* uv_now() of the last write */
    struct bulk_counts counts;
    bool eof, stopping, ended;
    int status;
    char error[256];
    uv_timer_t kick; /* calls back from the loop, never from inside start */
    bulk_run_done_cb *cb;
    void *arg;
};

/* Opens both files, reads the input through (format, header, rows: r->layout, r->header,
 * r->counts.rows_total) and prepares the output (r->skip with resume). */
int bulk_run_open(struct bulk_run *r, char *err, size_t n);

/* Writes r->out to the output. Returns 0 or a libuv code (r->error says). */
int bulk_run_write_out(struct bulk_run *r);

#endif
