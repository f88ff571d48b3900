#include "pdstrace/bulk_csv.h"

#include <csv.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "pdstrace/buf.h"
#include "pdstrace/err.h"

/* libcsv keeps an unquoted field's trailing spaces, and a quoted field's closing quote and
 * the spaces after it, in its buffer until the field ends; the slack lets a field of
 * exactly BULK_CSV_MAX_FIELD bytes through with some of those around it. */
#define FIELD_SLACK 1024
#define ENTRY_MAX   (BULK_CSV_MAX_FIELD + FIELD_SLACK)
#define ENTRY_BLOCK 4096 /* libcsv grows its buffer by this much at a time */

static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};

struct bulk_csv_reader {
    struct csv_parser p;
    bulk_csv_record_fn *fn;
    void *arg;
    int err;       /* sticky: once set, every call returns it */
    bool finished; /* bulk_csv_finish ran */
    bool bom_open; /* still matching a byte order mark at the start */
    bool had_bom;
    unsigned bom_seen; /* bytes of the mark matched (and held back) so far */
    bool pending_cr;   /* the last byte fed was a CR, held back until we know if LF follows */
    uint64_t offset;   /* input bytes up to the end of the piece libcsv is parsing */
    uint64_t records;
    size_t n_fields; /* fields of the record being read, kept or not */
    struct buf kept; /* the kept fields of that record, each followed by a NUL */
    size_t start[BULK_CSV_MAX_FIELDS];
    size_t len[BULK_CSV_MAX_FIELDS];
    char message[96];
};

/* libcsv grows its field buffer without limit; refusing here makes it fail with
 * CSV_ENOMEM, which the reader reports as a field too long. Stateless, so process-wide. */
static void *bounded_realloc(void *p, size_t size)
{
    return size > ENTRY_MAX ? NULL : realloc(p, size);
}

int bulk_csv_reader_new(struct bulk_csv_reader **out, bulk_csv_record_fn *fn, void *arg)
{
    struct bulk_csv_reader *r = calloc(1, sizeof *r);

    *out = NULL;
    if (r == NULL)
        return UV_ENOMEM;
    /* Not strict: a stray quote inside an unquoted field is kept as data, as spreadsheets
     * do. Without CSV_REPALL_NL, blank lines are not records. */
    csv_init(&r->p, 0);
    csv_set_realloc_func(&r->p, bounded_realloc);
    csv_set_blk_size(&r->p, ENTRY_BLOCK);
    r->fn = fn;
    r->arg = arg;
    r->bom_open = true;
    buf_init(&r->kept, (size_t)BULK_CSV_MAX_FIELDS * (BULK_CSV_MAX_FIELD + 1));
    *out = r;
    return 0;
}

/* Both buffers held personal data. */
void bulk_csv_reader_free(struct bulk_csv_reader *r)
{
    if (r == NULL)
        return;
    if (r->p.entry_buf != NULL)
        OPENSSL_cleanse(r->p.entry_buf, r->p.entry_size);
    csv_free(&r->p);
    buf_wipe(&r->kept);
    free(r);
}

static void fail_too_long(struct bulk_csv_reader *r)
{
    snprintf(r->message, sizeof r->message,
             "record %" PRIu64 ": a field longer than %d bytes (an unterminated quote?)",
             r->records + 1, BULK_CSV_MAX_FIELD);
    r->err = ERR_INVALID_INPUT;
}

static void keep_field(struct bulk_csv_reader *r, const void *data, size_t len)
{
    size_t i = r->n_fields;
    int err;

    r->start[i] = buf_len(&r->kept);
    r->len[i] = len;
    err = len > 0 ? buf_append(&r->kept, data, len) : 0;
    if (err == 0)
        err = buf_append(&r->kept, "", 1);
    if (err)
        r->err = err;
}

/* libcsv's field callback. After an error libcsv parses on to the end of its piece, but
 * nothing more is kept or reported. */
static void on_field(void *data, size_t len, void *arg)
{
    struct bulk_csv_reader *r = arg;

    if (r->err)
        return;
    if (len > BULK_CSV_MAX_FIELD) {
        fail_too_long(r);
        return;
    }
    if (r->n_fields < BULK_CSV_MAX_FIELDS)
        keep_field(r, data, len);
    r->n_fields++;
}

/* libcsv's record callback. Records end only at a line end, and the input is parsed in
 * pieces that each end just after one, so the record ends where the piece does. */
static void on_record(int c, void *arg)
{
    struct bulk_csv_reader *r = arg;
    const char *field[BULK_CSV_MAX_FIELDS];
    struct bulk_csv_record rec;
    int err;

    (void)c;
    if (r->err)
        return;
    rec.number = ++r->records;
    rec.end_offset = r->offset;
    rec.n_fields = r->n_fields;
    rec.n_kept = r->n_fields < BULK_CSV_MAX_FIELDS ? r->n_fields : BULK_CSV_MAX_FIELDS;
    for (size_t i = 0; i < rec.n_kept; i++)
        field[i] = buf_cstr(&r->kept) + r->start[i];
    rec.field = field;
    rec.len = r->len;
    err = r->fn(&rec, r->arg);
    if (err)
        r->err = err;
    r->n_fields = 0;
    buf_reset(&r->kept);
}

/* csv_parse stops early only when its buffer could not grow: at our limit, or out of
 * memory below it. */
static int parse(struct bulk_csv_reader *r, const void *piece, size_t n)
{
    r->offset += n;
    if (csv_parse(&r->p, piece, n, on_field, on_record, r) != n && r->err == 0) {
        if (csv_get_buffer_size(&r->p) >= ENTRY_MAX)
            fail_too_long(r);
        else
            r->err = UV_ENOMEM;
    }
    return r->err;
}

/* Drops a byte order mark at the start, which may come a byte per feed; bytes that
 * turned out not to be one are parsed as data. */
static int take_bom(struct bulk_csv_reader *r, const char **data, size_t *len)
{
    while (r->bom_open && *len > 0) {
        if ((unsigned char)**data != bom[r->bom_seen]) {
            r->bom_open = false;
            return parse(r, bom, r->bom_seen);
        }
        (*data)++;
        (*len)--;
        if (++r->bom_seen == sizeof bom) {
            r->bom_open = false;
            r->had_bom = true;
            r->offset += sizeof bom;
        }
    }
    return 0;
}

/* Bytes up to and including the first line end (CRLF as one), or all of them. */
static size_t line_len(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            return i + 1;
        if (s[i] == '\r')
            return i + 1 < n && s[i + 1] == '\n' ? i + 2 : i + 1;
    }
    return n;
}

/* A CR held back from the last feed: with an LF starting this one it is one line end. */
static int take_pending_cr(struct bulk_csv_reader *r, const char **data, size_t *len)
{
    if (!r->pending_cr || *len == 0)
        return 0;
    r->pending_cr = false;
    if (**data != '\n')
        return parse(r, "\r", 1);
    (*data)++;
    (*len)--;
    return parse(r, "\r\n", 2);
}

static int feed_lines(struct bulk_csv_reader *r, const char *data, size_t len)
{
    int err = 0;

    while (err == 0 && len > 0) {
        size_t n = line_len(data, len);
        if (n == len && data[n - 1] == '\r') {
            r->pending_cr = true;
            return n > 1 ? parse(r, data, n - 1) : 0;
        }
        err = parse(r, data, n);
        data += n;
        len -= n;
    }
    return err;
}

int bulk_csv_feed(struct bulk_csv_reader *r, const char *data, size_t len)
{
    int err;

    if (r->err)
        return r->err;
    if (r->finished)
        return ERR_INTERNAL;
    err = take_bom(r, &data, &len);
    if (err == 0)
        err = take_pending_cr(r, &data, &len);
    if (err == 0)
        err = feed_lines(r, data, len);
    return err;
}

int bulk_csv_finish(struct bulk_csv_reader *r)
{
    int err = r->err;

    if (err || r->finished)
        return err;
    r->finished = true;
    if (r->bom_open) {
        r->bom_open = false;
        err = parse(r, bom, r->bom_seen);
    }
    if (err == 0 && r->pending_cr) {
        r->pending_cr = false;
        err = parse(r, "\r", 1);
    }
    if (err == 0)
        csv_fini(&r->p, on_field, on_record, r);
    return r->err;
}

const char *bulk_csv_reader_error(const struct bulk_csv_reader *r)
{
    return r->message;
}

bool bulk_csv_reader_had_bom(const struct bulk_csv_reader *r)
{
    return r->had_bom;
}

/* ---- Writing ---- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool has_special(const char *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (f[i] == ',' || f[i] == '"' || f[i] == '\r' || f[i] == '\n')
            return true;
    return false;
}

/* What the reader would not give back as it is, unquoted: a special character, spaces
 * or tabs around it (libcsv trims those), a byte order mark at its start (dropped at the
 * start of a file), and a record of one empty field (a blank line is no record). */
static bool needs_quotes(const char *f, size_t n, bool guarded, bool lone)
{
    if (n == 0)
        return lone && !guarded;
    if (has_special(f, n) || is_blank(f[n - 1]))
        return true;
    return !guarded && (is_blank(f[0]) || (n >= 3 && memcmp(f, bom, 3) == 0));
}

static int append_quoted(struct buf *out, const char *f, size_t n, bool guarded)
{
    int err = buf_append(out, guarded ? "\"'" : "\"", guarded ? 2 : 1);

    while (err == 0 && n > 0) {
        const char *q = memchr(f, '"', n);
        size_t k = q != NULL ? (size_t)(q - f) + 1 : n;
        err = buf_append(out, f, k);
        if (err == 0 && q != NULL)
            err = buf_append(out, "\"", 1);
        f += k;
        n -= k;
    }
    return err ? err : buf_append(out, "\"", 1);
}

static int append_field(struct buf *out, const char *f, size_t n, bool lone,
                        enum bulk_csv_style style)
{
    bool guarded = style == BULK_CSV_SAFE && n > 0 && memchr("=+-@\t\r", f[0], 6) != NULL;
    int err;

    if (needs_quotes(f, n, guarded, lone))
        return append_quoted(out, f, n, guarded);
    err = guarded ? buf_append(out, "'", 1) : 0;
    return err || n == 0 ? err : buf_append(out, f, n);
}

int bulk_csv_append(struct buf *out, const char *const *field, const size_t *len, size_t n,
                    enum bulk_csv_style style)
{
    size_t len0 = buf_len(out);
    int err = n == 0 ? ERR_INVALID_INPUT : 0;

    for (size_t i = 0; err == 0 && i < n; i++) {
        err = i > 0 ? buf_append(out, ",", 1) : 0;
        if (err == 0)
            err = append_field(out, field[i], len[i], n == 1, style);
    }
    if (err == 0)
        err = buf_append(out, "\r\n", 2);
    if (err)
        buf_truncate(out, len0);
    return err;
}
