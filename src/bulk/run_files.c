/* Opening a bulk run's files: the first read of the input (format, header, row count),
 * and the output, started afresh or continued (resume). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pdstrace/err.h"
#include "run_int.h"

int bulk_record_copy_set(struct bulk_record_copy *c, const struct bulk_csv_record *rec)
{
    buf_truncate(&c->raw, 0);
    int err = 0;
    for (size_t i = 0; i < rec->n_kept && !err; i++) {
        c->len[i] = rec->len[i];
        err = buf_append(&c->raw, rec->field[i], rec->len[i]);
        err = err ? err : buf_append(&c->raw, "", 1);
    }
    if (err)
        return err;
    /* The pointers only now: the appends may have moved the bytes. */
    const char *p = buf_cstr(&c->raw);
    for (size_t i = 0; i < rec->n_kept; i++) {
        c->field[i] = p;
        p += c->len[i] + 1;
    }
    c->n_fields = rec->n_fields;
    c->n_kept = rec->n_kept;
    c->view = *rec;
    c->view.field = c->field;
    c->view.len = c->len;
    return 0;
}

static int io_error(char *err, size_t n, const char *path, const char *what, int code)
{
    snprintf(err, n, "%s: %s%s", path, what, uv_strerror(code));
    return code;
}

/* Reads fd from where it is to its end through rd. */
static int read_through(int fd, struct bulk_csv_reader *rd, char *chunk)
{
    for (;;) {
        ssize_t got = read(fd, chunk, BULK_RUN_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return uv_translate_sys_error(errno);
        if (got == 0)
            return bulk_csv_finish(rd);
        int e = bulk_csv_feed(rd, chunk, (size_t)got);
        if (e)
            return e;
    }
}

struct first_read {
    struct bulk_run *r;
    char *why;
    size_t why_size;
};

static int on_first_record(const struct bulk_csv_record *rec, void *arg)
{
    struct first_read *f = arg;
    struct bulk_run *r = f->r;
    if (rec->number > 1) {
        r->counts.rows_total++;
        return 0;
    }
    int e = bulk_layout_read(&r->layout, r->cfg.format, rec, f->why, f->why_size);
    return e ? e : bulk_record_copy_set(&r->input_header, rec);
}

/* "clients.csv" -> "clients": the reference of pds-mesh's header record. */
static void file_ref(const char *path, char out[64])
{
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    size_t o = 0;
    for (const char *p = base; *p != '\0' && *p != '.' && o < 63; p++)
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '_' || *p == '-')
            out[o++] = *p;
    out[o] = '\0';
}

/* The first read: the layout, the header, the rows; and the output's first line(s). */
static int read_input(struct bulk_run *r, char *err, size_t n)
{
    char why[200] = "";
    struct first_read f = {r, why, sizeof(why)};
    struct bulk_csv_reader *rd;
    int e = bulk_csv_reader_new(&rd, on_first_record, &f);
    if (e)
        return e;
    e = read_through(r->in_fd, rd, r->chunk);
    bool had_bom = bulk_csv_reader_had_bom(rd);
    if (e == ERR_INVALID_INPUT && why[0] == '\0')
        snprintf(why, sizeof(why), "%s", bulk_csv_reader_error(rd));
    bulk_csv_reader_free(rd);
    if (!e && r->input_header.view.number == 0) {
        e = ERR_INVALID_INPUT;
        snprintf(why, sizeof(why), "empty: a bulk file starts with a header row");
    }
    if (e)
        return why[0] ? (snprintf(err, n, "%s: %s", r->input, why), e)
                      : io_error(err, n, r->input, "cannot be read: ", e);
    if (r->cfg.write_back && r->layout.format == BULK_FORMAT_MESH) {
        snprintf(err, n,
                 "%s: --write-back needs the simple format's case_id column; a pds-mesh "
                 "file names no case (its LOCAL_PATIENT_ID only serves objections)",
                 r->input);
        return ERR_INVALID_INPUT;
    }
    char ref[64];
    file_ref(r->input, ref);
    e = bulk_output_header(&r->layout, &r->input_header.view, ref, r->counts.rows_total, had_bom,
                           &r->header);
    return e ? e : (lseek(r->in_fd, 0, SEEK_SET) < 0 ? uv_translate_sys_error(errno) : 0);
}

/* Where the output's whole rows end. */
struct output_scan {
    uint64_t rows;
    uint64_t end;  /* just past the last whole row */
    uint64_t prev; /* just past the one before */
};

static int on_output_record(const struct bulk_csv_record *rec, void *arg)
{
    struct output_scan *s = arg;
    s->rows++;
    s->prev = s->end;
    s->end = rec->end_offset;
    return 0;
}

/* Counts the rows after the header; a row is whole when it ends in CRLF, as written. */
static int scan_output(struct bulk_run *r, struct output_scan *s)
{
    size_t head = buf_len(&r->header);
    struct bulk_csv_reader *rd;
    int e = bulk_csv_reader_new(&rd, on_output_record, s);
    if (e)
        return e;
    e = lseek(r->out_fd, (off_t)head, SEEK_SET) < 0 ? uv_translate_sys_error(errno) : 0;
    /* No finish: a last row without its line end was cut by the kill. */
    for (ssize_t got = 1; !e && got > 0;) {
        got = read(r->out_fd, r->chunk, BULK_RUN_CHUNK);
        e = got < 0 ? uv_translate_sys_error(errno) : bulk_csv_feed(rd, r->chunk, (size_t)got);
    }
    bulk_csv_reader_free(rd);
    char tail[2];
    if (!e && s->rows > 0 && pread(r->out_fd, tail, 2, (off_t)(head + s->end - 2)) == 2 &&
        memcmp(tail, "\r\n", 2) != 0) {
        s->rows--;
        s->end = s->prev;
    }
    s->end += head;
    return e;
}

/* Continues an output file: it must begin with this input's header, and is cut after its
 * last whole row. */
static int continue_output(struct bulk_run *r, char *err, size_t n)
{
    size_t head = buf_len(&r->header);
    char *first = malloc(head + 1);
    ssize_t got = first != NULL ? pread(r->out_fd, first, head, 0) : -1;
    bool same = got == (ssize_t)head && memcmp(first, buf_cstr(&r->header), head) == 0;
    free(first);
    if (!same) {
        snprintf(err, n,
                 "%s was not written from this input (its first line differs): remove it, "
                 "or run without --resume to start again",
                 r->output);
        return ERR_INVALID_INPUT;
    }
    struct output_scan s = {0};
    int e = scan_output(r, &s);
    if (!e && s.rows > r->counts.rows_total) {
        snprintf(err, n, "%s holds more rows than this input: it was not written from it",
                 r->output);
        return ERR_INVALID_INPUT;
    }
    if (!e &&
        (ftruncate(r->out_fd, (off_t)s.end) != 0 || lseek(r->out_fd, (off_t)s.end, SEEK_SET) < 0))
        e = uv_translate_sys_error(errno);
    if (e)
        return io_error(err, n, r->output, "cannot be continued: ", e);
    r->skip = s.rows;
    r->counts.rows_done = r->counts.rows_resumed = s.rows;
    return 0;
}

/* The output holds personal data: only its owner may read it. */
static int open_output(struct bulk_run *r, char *err, size_t n)
{
    struct stat st;
    bool resume = r->cfg.resume && stat(r->output, &st) == 0 && st.st_size > 0;
    r->out_fd = open(r->output, resume ? O_RDWR : O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (r->out_fd < 0)
        return io_error(err, n, r->output, "cannot be written: ", uv_translate_sys_error(errno));
    if (resume)
        return continue_output(r, err, n);
    int e = buf_append(&r->out, buf_cstr(&r->header), buf_len(&r->header));
    return e ? e : bulk_run_write_out(r);
}

int bulk_run_open(struct bulk_run *r, char *err, size_t n)
{
    r->in_fd = open(r->input, O_RDONLY);
    if (r->in_fd < 0)
        return io_error(err, n, r->input, "", uv_translate_sys_error(errno));
    int e = read_input(r, err, n);
    return e ? e : open_output(r, err, n);
}
