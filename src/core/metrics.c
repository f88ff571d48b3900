#include "pdstrace/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "pdstrace/buf.h"
#include "pdstrace/list.h"
#include "pdstrace/macros.h"

static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS ARRAY_SIZE(buckets)

struct series {
    struct list_node link; /* in its family, in creation order */
    char *labels;
    double value; /* counter, gauge; histogram sum */
    unsigned long long count;
    unsigned long long *bucket; /* histogram only: NBUCKETS cumulative-at-render counts */
};

struct family {
    const char *name;
    const char *help;
    enum metrics_type type;
    struct list_node series;
};

struct collector {
    metrics_collect_fn *fn;
    void *arg;
};

/* Few families and a few hundred series at most: linear search stays cheaper than a
 * hash for the handful of lookups each request makes. */
struct metrics {
    struct family families[64];
    size_t n_families;
    struct collector collectors[16];
    size_t n_collectors;
};

int metrics_new(struct metrics **out)
{
    *out = calloc(1, sizeof(**out));
    return *out != NULL ? 0 : UV_ENOMEM;
}

static void free_series(struct family *f)
{
    struct list_node *node, *tmp;
    LIST_FOREACH_SAFE(node, tmp, &f->series)
    {
        struct series *s = LIST_ENTRY(node, struct series, link);
        free(s->labels);
        free(s->bucket);
        free(s);
    }
    list_init(&f->series);
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_families; i++)
        free_series(&m->families[i]);
    free(m);
}

/* The family's index, or n_families when there is none. */
static size_t find_name(const struct metrics *m, const char *name)
{
    size_t i = 0;
    while (i < m->n_families && strcmp(m->families[i].name, name) != 0)
        i++;
    return i;
}

static int declare_one(struct metrics *m, const struct metrics_family *mf)
{
    if (find_name(m, mf->name) < m->n_families)
        return 0;
    if (m->n_families == ARRAY_SIZE(m->families))
        return UV_ENOMEM;
    struct family *f = &m->families[m->n_families++];
    *f = (struct family){mf->name, mf->help, mf->type, {NULL, NULL}};
    list_init(&f->series);
    return 0;
}

int metrics_declare(struct metrics *m, const struct metrics_family *f, size_t n)
{
    int err = 0;
    for (size_t i = 0; m != NULL && i < n && !err; i++)
        err = declare_one(m, &f[i]);
    return err;
}

static struct series *new_series(struct family *f, const char *labels)
{
    struct series *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->labels = strdup(labels);
    if (f->type == METRICS_HISTOGRAM)
        s->bucket = calloc(NBUCKETS, sizeof(*s->bucket));
    if (s->labels == NULL || (f->type == METRICS_HISTOGRAM && s->bucket == NULL)) {
        free(s->labels);
        free(s->bucket);
        free(s);
        return NULL;
    }
    list_push_tail(&f->series, &s->link);
    return s;
}

static struct series *find_series(const struct family *f, const char *labels)
{
    for (struct list_node *n = f->series.next; n != &f->series; n = n->next) {
        struct series *s = LIST_ENTRY(n, struct series, link);
        if (strcmp(s->labels, labels) == 0)
            return s;
    }
    return NULL;
}

static struct series *get_series(struct metrics *m, const char *name, enum metrics_type type,
                                 const char *labels)
{
    if (m == NULL)
        return NULL;
    size_t i = find_name(m, name);
    if (i == m->n_families || m->families[i].type != type)
        return NULL;
    struct family *f = &m->families[i];
    if (labels == NULL)
        labels = "";
    struct series *s = find_series(f, labels);
    return s != NULL ? s : new_series(f, labels);
}

void metrics_inc(struct metrics *m, const char *name, const char *labels, double by)
{
    struct series *s = get_series(m, name, METRICS_COUNTER, labels);
    if (s != NULL)
        s->value += by;
}

void metrics_set(struct metrics *m, const char *name, const char *labels, double value)
{
    struct series *s = get_series(m, name, METRICS_GAUGE, labels);
    if (s != NULL)
        s->value = value;
}

void metrics_observe(struct metrics *m, const char *name, const char *labels, double value)
{
    struct series *s = get_series(m, name, METRICS_HISTOGRAM, labels);
    if (s == NULL)
        return;
    s->value += value;
    s->count++;
    for (size_t i = 0; i < NBUCKETS; i++)
        if (value <= buckets[i])
            s->bucket[i]++;
}

int metrics_add_collector(struct metrics *m, metrics_collect_fn *fn, void *arg)
{
    if (m == NULL)
        return 0;
    if (m->n_collectors == ARRAY_SIZE(m->collectors))
        return UV_ENOMEM;
    m->collectors[m->n_collectors++] = (struct collector){fn, arg};
    return 0;
}

void metrics_remove_collector(struct metrics *m, metrics_collect_fn *fn, void *arg)
{
    for (size_t i = 0; m != NULL && i < m->n_collectors; i++) {
        if (m->collectors[i].fn != fn || m->collectors[i].arg != arg)
            continue;
        memmove(&m->collectors[i], &m->collectors[i + 1],
                (m->n_collectors - i - 1) * sizeof(m->collectors[0]));
        m->n_collectors--;
        return;
    }
}

/* Joins a series' labels with one more ("le") for histogram lines. */
static int render_labels(struct buf *out, const char *labels, const char *extra)
{
    if (labels[0] == '\0' && extra == NULL)
        return 0;
    const char *sep = labels[0] != '\0' && extra != NULL ? "," : "";
    return buf_appendf(out, "{%s%s%s}", labels, sep, extra != NULL ? extra : "");
}

static int render_histogram(struct buf *out, const struct family *f, const struct series *s)
{
    int err = 0;
    char le[48];
    for (size_t i = 0; i < NBUCKETS && !err; i++) {
        snprintf(le, sizeof(le), "le=\"%g\"", buckets[i]);
        err = buf_appendf(out, "%s_bucket", f->name);
        err = err ? err : render_labels(out, s->labels, le);
        err = err ? err : buf_appendf(out, " %llu\n", s->bucket[i]);
    }
    err = err ? err : buf_appendf(out, "%s_bucket", f->name);
    err = err ? err : render_labels(out, s->labels, "le=\"+Inf\"");
    err = err ? err : buf_appendf(out, " %llu\n%s_sum", s->count, f->name);
    err = err ? err : render_labels(out, s->labels, NULL);
    err = err ? err : buf_appendf(out, " %.9g\n%s_count", s->value, f->name);
    err = err ? err : render_labels(out, s->labels, NULL);
    return err ? err : buf_appendf(out, " %llu\n", s->count);
}

static int render_family(struct buf *out, const struct family *f)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    int err = buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                          type_names[f->type]);
    for (const struct list_node *n = f->series.next; n != &f->series && !err; n = n->next) {
        const struct series *s = LIST_ENTRY(n, const struct series, link);
        if (f->type == METRICS_HISTOGRAM) {
            err = render_histogram(out, f, s);
            continue;
        }
        err = buf_append_str(out, f->name);
        err = err ? err : render_labels(out, s->labels, NULL);
        err = err ? err : buf_appendf(out, " %.17g\n", s->value);
    }
    return err;
}

int metrics_render(struct metrics *m, struct buf *out)
{
    if (m == NULL)
        return 0;
    for (size_t i = 0; i < m->n_collectors; i++)
        m->collectors[i].fn(m->collectors[i].arg);
    int err = 0;
    for (size_t i = 0; i < m->n_families && !err; i++)
        err = render_family(out, &m->families[i]);
    return err;
}

double metrics_value(const struct metrics *m, const char *name, const char *labels)
{
    size_t i = m != NULL ? find_name(m, name) : 0;
    const struct family *f = m != NULL && i < m->n_families ? &m->families[i] : NULL;
    const struct series *s = f != NULL ? find_series(f, labels != NULL ? labels : "") : NULL;
    if (s == NULL)
        return 0;
    return f->type == METRICS_HISTOGRAM ? (double)s->count : s->value;
}
