#ifndef PDS_BULK_FORMAT_INT_H
#define PDS_BULK_FORMAT_INT_H

/* Shared only by the files of the bulk formats (docs/internals/bulk.md):
 *   format.c       names, header layouts (and telling the formats apart), reading a data
 *                  row: the checks of every field and the columns both formats share;
 *   format_mesh.c  pds-mesh: its request header, its columns, its response row;
 *   format_out.c   output: the header line(s), simple's row, UTF-8 made safe.
 * Nothing outside src/bulk/format*.c includes it. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pdstrace/bulk_csv.h"
#include "pdstrace/bulk_format.h"
#include "pdstrace/buf.h"

#define BULK_REFERENCE_MAX 100 /* bytes of a row's reference */
#define BULK_MESH_REQUEST  24  /* columns of a pds-mesh request */
#define BULK_MESH_RESPONSE 29  /* columns of a pds-mesh response */
#define BULK_MESH_MIN      8   /* a pds-mesh file may stop after POSTCODE */

/* A data row being read into a request. */
struct bulk_row_ctx {
    const struct bulk_layout *l;
    const struct bulk_csv_record *row;
    const char *today;
    struct demographics *d;
    char *why;
    size_t why_size;
};

/* Room for a short value (a date, a gender, a postcode, an NHS number, a case_id) with
 * some spaces around it; anything longer is wrong anyway. */
#define BULK_SHORT_VALUE 128

/* ---- format.c ---- */

/* Writes the message to why (when why_size > 0) and returns ERR_INVALID_INPUT. */
int bulk_say(char *why, size_t why_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Whether the header field (n bytes) is name, ignoring ASCII case and surrounding spaces
 * and tabs. */
bool bulk_header_is(const char *f, size_t n, const char *name);

/* The column's name in format f ("family", "FAMILY_NAME"); NULL when f has no such
 * column. */
const char *bulk_column_name(enum bulk_format f, enum bulk_column col);

/* Writes "<column>: <reason>" to c->why and returns ERR_INVALID_INPUT. */
int bulk_row_bad(struct bulk_row_ctx *c, enum bulk_column col, const char *reason);

/* The column's field with surrounding spaces and tabs dropped, copied to out (which has
 * size bytes), or "" when the layout lacks the column or the field is blank: an absent
 * value. A longer field gives ERR_INVALID_INPUT ("<column>: longer than N bytes"). */
int bulk_row_value(struct bulk_row_ctx *c, enum bulk_column col, char *out, size_t size);

/* Column readers that both formats use, each for one column of the layout. A name goes
 * to the next free given name (n_given counts them); an address line to the next free
 * address line, when not blank. */
int bulk_row_reference(struct bulk_row_ctx *c);
int bulk_row_family(struct bulk_row_ctx *c);
int bulk_row_given(struct bulk_row_ctx *c, enum bulk_column col);
int bulk_row_birth_date(struct bulk_row_ctx *c, const char *iso, enum bulk_column col);
int bulk_row_postcode(struct bulk_row_ctx *c);
int bulk_row_address_line(struct bulk_row_ctx *c, enum bulk_column col, const char *line);
int bulk_row_nhs_number(struct bulk_row_ctx *c);

/* The length of the valid UTF-8 sequence at s (n > 0 bytes there), or 0 when the bytes
 * there start none (malformed, overlong, a surrogate, beyond U+10FFFF). */
size_t bulk_utf8_seq(const unsigned char *s, size_t n);

/* ---- format_mesh.c ---- */

/* The name of column i (0-based) of a pds-mesh request; NULL beyond the 24. */
const char *bulk_mesh_column(size_t i);

/* Checks a pds-mesh request header and fills l's columns. */
int bulk_mesh_layout(struct bulk_layout *l, const struct bulk_csv_record *header, char *why,
                     size_t why_size);

/* Reads the pds-mesh columns of a row already checked as a whole. */
int bulk_mesh_row(struct bulk_row_ctx *c);

/* ---- format_out.c ---- */

/* The fields of one output row, made valid UTF-8 as they are added (format_out.c). */
struct bulk_out_row {
    size_t n;
    int err; /* the first failure to add: reported by bulk_out_row_write */
    size_t at[BULK_CSV_MAX_FIELDS + 4];
    size_t len[BULK_CSV_MAX_FIELDS + 4];
    struct buf text;
};

void bulk_out_row_init(struct bulk_out_row *o);
/* Adds a field, every byte not part of valid UTF-8, and every NUL, replaced by U+FFFD. */
void bulk_out_row_add(struct bulk_out_row *o, const char *f, size_t len);
void bulk_out_row_add_str(struct bulk_out_row *o, const char *s);
/* Adds field i of rec, or "" when rec has no such field. */
void bulk_out_row_echo(struct bulk_out_row *o, const struct bulk_csv_record *rec, int i);
/* Appends the row to out (BULK_CSV_SAFE) and releases o. Returns 0 or a buf error (out
 * then as it was). */
int bulk_out_row_write(struct bulk_out_row *o, struct buf *out);

/* Adds the pds-mesh response columns for a row and its answer. */
void bulk_mesh_output(const struct bulk_layout *l, const struct bulk_csv_record *row,
                      const struct bulk_answer *a, struct bulk_out_row *o);

#endif
