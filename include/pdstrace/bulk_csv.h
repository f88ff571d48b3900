#ifndef PDS_TRACE_BULK_CSV_H
#define PDS_TRACE_BULK_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CSV records in and out for bulk tracing (DESIGN.md §6), over libcsv. Reading streams:
 * bytes go in as they come, records come out through a callback, and memory stays bounded
 * whatever the file's size. What is accepted: RFC 4180 and what spreadsheets write, that
 * is quoted fields holding commas, quotes (doubled), CR and LF; CRLF, LF or CR line ends;
 * a UTF-8 byte order mark at the very start (dropped); no line end after the last record;
 * blank lines, or lines of only spaces and tabs (skipped: they are not records); a stray
 * quote inside an unquoted field (kept as data). Spaces and tabs around an unquoted field
 * are dropped, as libcsv does. Names are bulk_csv_* because csv_* is libcsv's. See
 * docs/internals/bulk.md. */
struct buf;
struct bulk_csv_reader;

#define BULK_CSV_MAX_FIELD  65536 /* bytes in one field; beyond it the file is unreadable */
#define BULK_CSV_MAX_FIELDS 64    /* fields kept per record; more are counted, not kept */

/* One record, as the callback sees it; borrowed until the callback returns. */
struct bulk_csv_record {
    uint64_t number;          /* 1-based count of records so far; the header is record 1 */
    uint64_t end_offset;      /* bytes of input (BOM included) up to and including this
                                 record's line end (CRLF counted whole), or to the end of the
                                 input for a last record without one */
    size_t n_fields;          /* fields in the record, perhaps more than kept */
    size_t n_kept;            /* min(n_fields, BULK_CSV_MAX_FIELDS) */
    const char *const *field; /* n_kept fields, unquoted, each NUL-terminated (a field may
                                 itself hold NUL bytes: use len) */
    const size_t *len;
};

/* Returns 0 to go on, or a negative code, which stops the reader and comes back from
 * bulk_csv_feed or bulk_csv_finish. */
typedef int bulk_csv_record_fn(const struct bulk_csv_record *rec, void *arg);

/* Returns 0 or UV_ENOMEM. */
int bulk_csv_reader_new(struct bulk_csv_reader **out, bulk_csv_record_fn *fn, void *arg);
/* NULL is fine. */
void bulk_csv_reader_free(struct bulk_csv_reader *r);

/* Feeds the next len bytes; every record that ends inside them goes to fn before this
 * returns, except one whose line end is a CR that is the last byte fed: it waits for the
 * next bytes, which may start with its LF. Returns 0, fn's code, or ERR_INVALID_INPUT when
 * the input cannot be read on as CSV (a field over BULK_CSV_MAX_FIELD bytes, which is what
 * an unterminated quote looks like): bulk_csv_reader_error() then says where and why,
 * without quoting the data. UV_ENOMEM when memory runs out. After an error every call
 * returns it again; after bulk_csv_finish, ERR_INTERNAL. */
int bulk_csv_feed(struct bulk_csv_reader *r, const char *data, size_t len);

/* The end of the input: a last record without a line end goes to fn (an unterminated
 * quote then ends at the end of the input). Returns as bulk_csv_feed; a second call
 * does nothing more. */
int bulk_csv_finish(struct bulk_csv_reader *r);

/* "record 12: a field longer than 65536 bytes (an unterminated quote?)"; "" when none. */
const char *bulk_csv_reader_error(const struct bulk_csv_reader *r);

/* Whether the input began with a UTF-8 byte order mark. */
bool bulk_csv_reader_had_bom(const struct bulk_csv_reader *r);

/* How bulk_csv_append writes a field. */
enum bulk_csv_style {
    BULK_CSV_EXACT, /* round trips through the reader byte for byte */
    BULK_CSV_SAFE,  /* for people's spreadsheets: a field that a spreadsheet would run as a
                       formula (starting with = + - @ TAB or CR) gets a leading ' (OWASP's
                       advice on CSV injection) */
};

/* Appends one record: fields separated by commas, a field quoted (quotes doubled) when it
 * holds a comma, quote, CR or LF, starts or ends with a space or tab, or starts with a
 * byte order mark, and a record of one empty field as "" (a blank line is no record);
 * then CRLF. Returns 0, ERR_INVALID_INPUT when n is 0, or a buf error; on failure out is
 * left as it was. */
int bulk_csv_append(struct buf *out, const char *const *field, const size_t *len, size_t n,
                    enum bulk_csv_style style);

#endif
