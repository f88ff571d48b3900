#include "pdstrace/bulk_progress.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>

#include "pdstrace/buf.h"
#include "pdstrace/log.h"
#include "pdstrace/macros.h"

#define BAR_CELLS 20

/* Rows this run has answered (the rate and the ETA are about this run only). */
static uint64_t rows_this_run(const struct bulk_counts *c)
{
    return c->rows_done - c->rows_resumed;
}

static double rows_per_s(const struct bulk_counts *c, double elapsed_s)
{
    return elapsed_s > 0 ? (double)rows_this_run(c) / elapsed_s : 0;
}

/* Seconds to go at this run's rate; -1 when it cannot be told yet. */
static double eta_s(const struct bulk_counts *c, double elapsed_s)
{
    double rate = rows_per_s(c, elapsed_s);
    return rate > 0 ? (double)(c->rows_total - c->rows_done) / rate : -1;
}

/* 1234567 -> "1,234,567". */
static void grouped(uint64_t n, char out[32])
{
    char digits[24];
    int len = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)n), o = 0;
    for (int i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

/* "0:18", "4:05:00", "--:--" when unknown. */
static void clock_text(double s, char out[24])
{
    if (s < 0 || s > 99 * 3600.0) {
        snprintf(out, 24, "--:--");
        return;
    }
    unsigned long t = (unsigned long)llround(s);
    if (t >= 3600)
        snprintf(out, 24, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(out, 24, "%lu:%02lu", t / 60, t % 60);
}

static const char *const short_names[BULK_OUTCOMES] = {"matched", "potential", "none", "multiple",
                                                       "objection"};

static int append_count(const char *name, uint64_t count, bool all, struct buf *out)
{
    char n[32];
    if (count == 0 && !all)
        return 0;
    grouped(count, n);
    return buf_appendf(out, "  %s %s", name, n);
}

/* all: zero counts too (the bar leaves them out, for room). */
static int append_counts(const struct bulk_counts *c, bool all, struct buf *out)
{
    int err = 0;
    for (int i = 0; i < BULK_OUTCOMES && !err; i++)
        err = append_count(short_names[i], c->outcome[i], all, out);
    err = err ? err : append_count("invalid", c->invalid, all, out);
    return err ? err : append_count("error", c->failed, all, out);
}

int bulk_progress_bar(const struct bulk_counts *c, double elapsed_s, unsigned width,
                      struct buf *out)
{
    size_t start = buf_len(out);
    double part = c->rows_total ? (double)c->rows_done / (double)c->rows_total : 1;
    int cells = (int)(part * BAR_CELLS), err = buf_append(out, "[", 1);
    for (int i = 0; i < BAR_CELLS && !err; i++)
        err = buf_append(out, i < cells ? "#" : "-", 1);
    char done[32], total[32], eta[24];
    grouped(c->rows_done, done);
    grouped(c->rows_total, total);
    clock_text(eta_s(c, elapsed_s), eta);
    err = err ? err
              : buf_appendf(out, "] %3d%%  %s/%s  %.0f rows/s  ETA %s", (int)(part * 100), done,
                            total, rows_per_s(c, elapsed_s), eta);
    err = err ? err : append_counts(c, false, out);
    if (!err && width > 0 && buf_len(out) - start > width)
        buf_truncate(out, start + width);
    return err;
}

static double calls_per_row(const struct bulk_counts *c)
{
    uint64_t rows = rows_this_run(c);
    return rows ? (double)c->pds_calls / (double)rows : 0;
}

void bulk_progress_log(const struct bulk_counts *c, double elapsed_s, const char *msg)
{
    char per_row[32];
    snprintf(per_row, sizeof(per_row), "%.2f", calls_per_row(c));
    const struct log_field f[] = {
        {"rows_total", NULL, (long long)c->rows_total},
        {"rows_done", NULL, (long long)c->rows_done},
        {"rows_resumed", NULL, (long long)c->rows_resumed},
        {"matched", NULL, (long long)c->outcome[TRACE_MATCHED]},
        {"potential_match", NULL, (long long)c->outcome[TRACE_POTENTIAL_MATCH]},
        {"no_match", NULL, (long long)c->outcome[TRACE_NO_MATCH]},
        {"multiple_matches", NULL, (long long)c->outcome[TRACE_MULTIPLE_MATCHES]},
        {"objection", NULL, (long long)c->outcome[TRACE_OBJECTION]},
        {"invalid", NULL, (long long)c->invalid},
        {"error", NULL, (long long)c->failed},
        {"pds_calls", NULL, (long long)c->pds_calls},
        {"rows_per_s", NULL, llround(rows_per_s(c, elapsed_s))},
        {"eta_s", NULL, llround(eta_s(c, elapsed_s))},
        {"elapsed_s", NULL, llround(elapsed_s)},
        {"pds_calls_per_row", per_row, 0},
    };
    log_fields(LOG_LEVEL_INFO, NULL, msg, f, ARRAY_SIZE(f));
}

int bulk_summary_text(const struct bulk_counts *c, double elapsed_s, struct buf *out)
{
    char done[32], total[32], took[24];
    grouped(c->rows_done, done);
    grouped(c->rows_total, total);
    clock_text(elapsed_s, took);
    int err = buf_appendf(out, "rows: %s of %s written", done, total);
    if (!err && c->rows_resumed) {
        grouped(c->rows_resumed, done);
        err = buf_appendf(out, " (%s by an earlier run)", done);
    }
    err = err ? err : buf_appendf(out, "\noutcomes:");
    err = err ? err : append_counts(c, true, out);
    err = err ? err
              : buf_appendf(out, "\nPDS calls: %llu (%.2f per row)\nelapsed: %s (%.0f rows/s)\n",
                            (unsigned long long)c->pds_calls, calls_per_row(c), took,
                            rows_per_s(c, elapsed_s));
    return err;
}
