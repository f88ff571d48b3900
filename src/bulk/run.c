#include "pdstrace/bulk_run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pdstrace/demographics.h"
#include "pdstrace/err.h"
#include "pdstrace/macros.h"
#include "run_int.h"

#define DEFAULT_CONCURRENCY 16u
#define WRITE_AT            65536u /* output bytes gathered before a write */
#define WRITE_EVERY_MS                                                                             \
    100u /* or the age of the oldest unwritten row: a kill loses                                   \
            no more than this much finished work */

/* One input row from its reading to its output row. */
struct bulk_slot {
    struct bulk_task task;
    struct list_node link; /* in the run's window, in input order */
    struct list_node pend; /* in the run's pending list until given to the tracer */
    struct bulk_run *run;
    struct bulk_record_copy record;
    bool done;
    bool cancelled;
};

static void pump(struct bulk_run *r);
static void on_kick(uv_timer_t *t);

/* How many rows may wait in order behind the oldest unfinished one. */
static unsigned window_max(const struct bulk_run *r)
{
    return r->cfg.concurrency * 8 + 256;
}

static void slot_free(struct bulk_slot *s)
{
    buf_free(&s->record.raw);
    free(s);
}

static int on_record(const struct bulk_csv_record *rec, void *arg)
{
    struct bulk_run *r = arg;
    if (rec->number == 1 || r->seen++ < r->skip)
        return 0;
    struct bulk_slot *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return UV_ENOMEM;
    s->run = r;
    buf_init(&s->record.raw, BULK_RECORD_KEPT_MAX);
    if (bulk_record_copy_set(&s->record, rec) != 0) {
        slot_free(s);
        return UV_ENOMEM;
    }
    struct bulk_task *t = &s->task;
    if (bulk_row_read(&r->layout, rec, r->today, &t->d, t->why, sizeof(t->why)) != 0)
        t->answer = (struct bulk_answer){.kind = BULK_ANSWER_BAD, .why = t->why};
    /* pds-mesh's case_id is LOCAL_PATIENT_ID, read only to honour objections. */
    t->d.write_back =
        r->cfg.write_back && r->layout.format == BULK_FORMAT_SIMPLE && t->d.case_id[0] != '\0';
    list_push_tail(&r->window, &s->link);
    list_push_tail(&r->pending, &s->pend);
    r->window_len++;
    return 0;
}

/* The first failure stops the run: "OUT.csv: write failed: no space left on device". */
static void fail(struct bulk_run *r, int status, const char *path, const char *what)
{
    if (r->status == 0) {
        r->status = status;
        snprintf(r->error, sizeof(r->error), "%s: %s: %s", path, what, uv_strerror(status));
    }
    r->stopping = true;
}

/* Reads the next chunk of input into slots. */
static void read_more(struct bulk_run *r)
{
    ssize_t got;
    do
        got = read(r->in_fd, r->chunk, BULK_RUN_CHUNK);
    while (got < 0 && errno == EINTR);
    int e = got < 0    ? uv_translate_sys_error(errno)
            : got == 0 ? bulk_csv_finish(r->reader)
                       : bulk_csv_feed(r->reader, r->chunk, (size_t)got);
    r->eof = got == 0;
    /* The first read accepted the whole file, so only a change under us gets here. */
    if (e)
        fail(r, e, r->input, "read failed");
}

static void count(struct bulk_run *r, const struct bulk_answer *a)
{
    struct bulk_counts *c = &r->counts;
    c->rows_done++;
    if (a->kind == BULK_ANSWER_BAD)
        c->invalid++;
    else if (a->kind == BULK_ANSWER_FAILED)
        c->failed++;
    else
        c->outcome[a->result.outcome]++;
}

int bulk_run_write_out(struct bulk_run *r)
{
    /* After a failed write the file ends in part of a row: writing more would put rows
     * after it (or part of the buffer twice). Resume cuts the partial row. */
    if (r->status)
        return r->status;
    const char *p = buf_cstr(&r->out);
    size_t left = buf_len(&r->out);
    while (left > 0) {
        ssize_t n = write(r->out_fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = uv_translate_sys_error(errno);
            fail(r, e, r->output, "write failed");
            return e;
        }
        p += n;
        left -= (size_t)n;
    }
    buf_truncate(&r->out, 0);
    return 0;
}

/* Writes the gathered rows when there are enough of them, or when the oldest has waited
 * long enough; otherwise makes sure a timer will. */
static void write_some(struct bulk_run *r, bool more_coming)
{
    if (buf_len(&r->out) == 0)
        return;
    uint64_t now = uv_now(r->loop);
    if (buf_len(&r->out) >= WRITE_AT || (!more_coming && now - r->written_at >= WRITE_EVERY_MS)) {
        r->written_at = now;
        bulk_run_write_out(r);
    } else if (!more_coming && !uv_is_active((uv_handle_t *)&r->kick)) {
        uv_timer_start(&r->kick, on_kick, WRITE_EVERY_MS, 0);
    }
}

/* Moves the done rows at the head of the window to the output, in order. */
static void flush(struct bulk_run *r)
{
    while (!list_is_empty(&r->window) && r->status == 0) {
        struct bulk_slot *s = LIST_ENTRY(list_first(&r->window), struct bulk_slot, link);
        if (!s->done)
            break;
        if (bulk_output_row(&r->layout, &s->record.view, &s->task.answer, &r->out) != 0) {
            fail(r, UV_ENOMEM, r->output, "a row could not be written");
            break;
        }
        count(r, &s->task.answer);
        list_remove(&s->link);
        r->window_len--;
        slot_free(s);
        write_some(r, true);
    }
    write_some(r, false);
}

static void on_task(int status, struct bulk_task *task, void *arg)
{
    struct bulk_slot *s = arg;
    (void)task;
    s->run->tracing--;
    s->done = status == 0;
    s->cancelled = status != 0;
    pump(s->run);
}

static void give_rows(struct bulk_run *r)
{
    while (!r->stopping && r->tracing < r->cfg.concurrency && !list_is_empty(&r->pending)) {
        struct bulk_slot *s = LIST_ENTRY(list_first(&r->pending), struct bulk_slot, pend);
        list_remove(&s->pend);
        r->tracing++;
        bulk_tracer_start(r->tracer, &s->task, on_task, s);
    }
}

/* The end: the rest written and synced, or the stop once the tracer has let go. */
static void end(struct bulk_run *r)
{
    int status = r->status;
    if (status == 0 && r->stopping)
        status = UV_ECANCELED;
    if (bulk_run_write_out(r) != 0 && status == 0)
        status = r->status;
    if (status == 0 && fdatasync(r->out_fd) != 0) {
        status = uv_translate_sys_error(errno);
        fail(r, status, r->output, "sync failed");
    }
    r->ended = true;
    r->cb(status, r->arg);
}

static void pump(struct bulk_run *r)
{
    while (!r->stopping && !r->eof && r->window_len < window_max(r))
        read_more(r);
    give_rows(r);
    flush(r);
    bool drained = list_is_empty(&r->window) && r->eof;
    if (!r->ended && r->tracing == 0 && (drained || r->stopping))
        end(r);
}

static void on_kick(uv_timer_t *t)
{
    pump(t->data);
}

int bulk_run_new(struct bulk_run **out, uv_loop_t *loop, const struct bulk_run_config *cfg,
                 char *err, size_t err_size)
{
    struct bulk_run *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return UV_ENOMEM;
    *out = r;
    r->loop = loop;
    r->cfg = *cfg;
    r->in_fd = r->out_fd = -1;
    if (r->cfg.concurrency == 0)
        r->cfg.concurrency = DEFAULT_CONCURRENCY;
    r->input = strdup(cfg->input);
    r->output = strdup(cfg->output);
    r->chunk = malloc(BULK_RUN_CHUNK);
    snprintf(r->today, sizeof(r->today), "%s", cfg->today);
    buf_init(&r->header, BULK_RECORD_WRITE_MAX);
    buf_init(&r->out, WRITE_AT + BULK_RECORD_WRITE_MAX);
    buf_init(&r->input_header.raw, BULK_RECORD_KEPT_MAX);
    list_init(&r->window);
    list_init(&r->pending);
    uv_timer_init(loop, &r->kick);
    r->kick.data = r;
    if (r->input == NULL || r->output == NULL || r->chunk == NULL)
        return UV_ENOMEM;
    int e = bulk_run_open(r, err, err_size);
    return e ? e : bulk_csv_reader_new(&r->reader, on_record, r);
}

void bulk_run_start(struct bulk_run *r, struct bulk_tracer *tracer, bulk_run_done_cb *cb, void *arg)
{
    r->tracer = tracer;
    r->cb = cb;
    r->arg = arg;
    uv_timer_start(&r->kick, on_kick, 0, 0);
}

void bulk_run_stop(struct bulk_run *r)
{
    if (r->stopping)
        return;
    r->stopping = true;
    if (r->cb != NULL)
        uv_timer_start(&r->kick, on_kick, 0, 0);
}

const struct bulk_counts *bulk_run_counts(const struct bulk_run *r)
{
    return &r->counts;
}

const char *bulk_run_error(const struct bulk_run *r)
{
    return r->error;
}

static void on_close(uv_handle_t *h)
{
    free(h->data);
}

void bulk_run_free(struct bulk_run *r)
{
    if (r == NULL)
        return;
    struct list_node *pos, *next;
    LIST_FOREACH_SAFE(pos, next, &r->window)
    slot_free(LIST_ENTRY(pos, struct bulk_slot, link));
    bulk_csv_reader_free(r->reader);
    if (r->in_fd >= 0)
        close(r->in_fd);
    if (r->out_fd >= 0)
        close(r->out_fd);
    buf_free(&r->header);
    buf_wipe(&r->out);
    buf_free(&r->input_header.raw);
    free(r->input);
    free(r->output);
    free(r->chunk);
    uv_close((uv_handle_t *)&r->kick, on_close);
}
