#ifndef PDS_TRACE_BULK_FORMAT_H
#define PDS_TRACE_BULK_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pdstrace/trace_result.h" /* struct trace_result, embedded below */

/* The two bulk file formats of DESIGN.md §6: what a header says, a data row as a trace
 * request, and the output row for its answer. Pure: no I/O, no state, no logging; reasons
 * given back name the column and never quote a value (every value is personal data).
 * The mapping to PDS MESH codes is documented in the README ("Bulk tracing"), at the top
 * of src/bulk/format_mesh.c and in docs/internals/bulk.md. */
struct buf;
struct bulk_csv_record;
struct demographics;

enum bulk_format {
    BULK_FORMAT_AUTO, /* decided by the header */
    BULK_FORMAT_SIMPLE,
    BULK_FORMAT_MESH,
};

/* "simple" or "pds-mesh" (AUTO: "auto"). Never NULL. */
const char *bulk_format_name(enum bulk_format f);
/* "simple" | "pds-mesh". Returns 0 or ERR_INVALID_INPUT. */
int bulk_format_parse(const char *name, enum bulk_format *out);

/* The columns a row is read from, in either format. */
enum bulk_column {
    BULK_COL_REFERENCE,   /* reference | UNIQUE REFERENCE */
    BULK_COL_FAMILY,      /* family | FAMILY_NAME */
    BULK_COL_GIVEN,       /* given | GIVEN_NAME */
    BULK_COL_OTHER_GIVEN, /* OTHER_GIVEN_NAME */
    BULK_COL_BIRTH_DATE,  /* birth_date (YYYY-MM-DD) | DATE_OF_BIRTH (YYYYMMDD[HHMM]) */
    BULK_COL_GENDER,      /* gender (male...) | GENDER (0 1 2 9) */
    BULK_COL_POSTCODE,    /* postcode | POSTCODE */
    BULK_COL_ADDRESS,     /* address (lines separated by commas or newlines) | ADDRESS_LINE1 */
    BULK_COL_ADDRESS2,    /* ADDRESS_LINE2 .. 5 */
    BULK_COL_ADDRESS3,
    BULK_COL_ADDRESS4,
    BULK_COL_ADDRESS5,
    BULK_COL_NHS_NUMBER, /* nhs_number | NHS_NO */
    BULK_COL_CASE_ID,    /* case_id */
    BULK_COL_COUNT,
};

/* What the header row said. */
struct bulk_layout {
    enum bulk_format format;
    size_t n_columns;        /* fields in the header */
    int col[BULK_COL_COUNT]; /* where each column is in a row, -1 when absent */
};

/* Reads the header (record 1). With want AUTO the format is pds-mesh when a column is
 * named "UNIQUE REFERENCE" and simple when one is named "reference". Names are matched
 * without regard to case or surrounding spaces; simple's columns may come in any order and
 * unknown columns are carried through untouched; pds-mesh needs its request columns (24,
 * DESIGN.md §6), in order, though a file may stop after POSTCODE. A header of more than
 * BULK_CSV_MAX_FIELDS columns is refused (every field of a row is echoed). Returns 0, or
 * ERR_INVALID_INPUT with why set ("the header has no birth_date column", "column family
 * appears twice", "the pds-mesh header's column 3 should be FAMILY_NAME", "the header is
 * neither simple (reference,...) nor pds-mesh (UNIQUE REFERENCE,...)"). why may be NULL
 * when why_size is 0. */
int bulk_layout_read(struct bulk_layout *l, enum bulk_format want,
                     const struct bulk_csv_record *header, char *why, size_t why_size);

/* A data row as a trace request, with the same normalisers and limits as POST /v1/trace
 * (today is "YYYY-MM-DD", UTC). d->write_back is -1 (the caller decides) and d->purpose
 * "". Blank optional fields are absent. Every field, read or not, must be valid UTF-8
 * without NUL bytes. Returns 0, or ERR_INVALID_INPUT with why naming the column by its
 * header name (simple's other columns by number) and the reason: "DATE_OF_BIRTH: is not a
 * real calendar date", "family: missing", "the row has 7 fields; the header has 9",
 * "given: longer than 100 bytes", "reference: not valid UTF-8", "column 10: holds a NUL
 * byte". ERR_INTERNAL when today is malformed. */
int bulk_row_read(const struct bulk_layout *l, const struct bulk_csv_record *row, const char *today,
                  struct demographics *d, char *why, size_t why_size);

/* What became of one row. */
enum bulk_answer_kind {
    BULK_ANSWER_TRACED, /* result holds the trace's answer (objection included) */
    BULK_ANSWER_BAD,    /* the row could not be read; why says which column and why */
    BULK_ANSWER_FAILED, /* the trace failed (PDS unavailable...); why holds the API error
                           code and detail ("pds_unavailable: ...") */
};

struct bulk_answer {
    enum bulk_answer_kind kind;
    struct trace_result result; /* TRACED */
    const char *why;            /* BAD and FAILED: the reason; TRACED: NULL, or a note for
                                   simple's error column (a write-back not queued); borrowed */
};

/* The first output line(s): simple writes the input header's fields, then outcome,
 * matched_nhs_number, score, error; pds-mesh writes its header record
 * "<file_ref>,SPINE_MPT_RESPONSE,<rows>,00" (rows: data rows in the file). had_bom: start
 * with a UTF-8 byte order mark, as the input did. Returns 0 or a buf error. */
int bulk_output_header(const struct bulk_layout *l, const struct bulk_csv_record *header,
                       const char *file_ref, uint64_t rows, bool had_bom, struct buf *out);

/* The output row for one input row (the same record bulk_row_read saw) and its answer:
 * simple echoes the row's fields (as many as the header has, empty ones added) and adds
 * outcome ("invalid" for BAD, "error" for FAILED), matched_nhs_number, score and error;
 * pds-mesh writes the 29 response columns, echoing UNIQUE REFERENCE and the NHS number
 * given, leaving PDS's demographic columns empty, with the codes of the README's mapping.
 * Fields are written BULK_CSV_SAFE, each byte that is not part of valid UTF-8, and each
 * NUL, replaced by U+FFFD. Returns 0 or a buf error (out then as it was). */
int bulk_output_row(const struct bulk_layout *l, const struct bulk_csv_record *row,
                    const struct bulk_answer *a, struct buf *out);

#endif
