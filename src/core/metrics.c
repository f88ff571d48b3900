#include "pdstrace/metrics.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "pdstrace/macros.h"

static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS ARRAY_SIZE(buckets)

struct series {
    struct series *next; /* in its family, in creation order */
    char *labels;
    double value; /* counter, gauge; histogram sum */
    unsigned long long count;
    unsigned long long *bucket; /* histogram only: NBUCKETS cumulative-at-render counts */
};

struct family {
    const char *name;
    const char *help;
    enum metrics_type type;
    struct series *first, *last;
};

struct collector {
    metrics_collect_fn *fn;
    void *arg;
};

/* Few families and a few hundred series at most: linear search stays cheaper than a
 * hash for the handful of lookups each request makes. */
static struct family families[64];
static size_t n_families;
static struct collector collectors[16];
static size_t n_collectors;

int metrics_declare(const char *name, enum metrics_type type, const char *help)
{
    for (size_t i = 0; i < n_families; i++)
        if (strcmp(families[i].name, name) == 0)
            return 0;
    if (n_families == ARRAY_SIZE(families))
        return UV_ENOMEM;
    families[n_families++] = (struct family){name, help, type, NULL, NULL};
    return 0;
}

static struct family *find_family(const char *name, enum metrics_type type)
{
    for (size_t i = 0; i < n_families; i++)
        if (strcmp(families[i].name, name) == 0)
            return families[i].type == type ? &families[i] : NULL;
    return NULL;
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
    if (f->last != NULL)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    return s;
}

static struct series *get_series(const char *name, enum metrics_type type, const char *labels)
{
    struct family *f = find_family(name, type);
    if (f == NULL)
        return NULL;
    if (labels == NULL)
        labels = "";
    for (struct series *s = f->first; s != NULL; s = s->next)
        if (strcmp(s->labels, labels) == 0)
            return s;
    return new_series(f, labels);
}

void metrics_inc(const char *name, const char *labels, double by)
{
    struct series *s = get_series(name, METRICS_COUNTER, labels);
    if (s != NULL)
        s->value += by;
}

void metrics_set(const char *name, const char *labels, double value)
{
    struct series *s = get_series(name, METRICS_GAUGE, labels);
    if (s != NULL)
        s->value = value;
}

void metrics_observe(const char *name, const char *labels, double value)
{
    struct series *s = get_series(name, METRICS_HISTOGRAM, labels);
    if (s == NULL)
        return;
    s->value += value;
    s->count++;
    for (size_t i = 0; i < NBUCKETS; i++)
        if (value <= buckets[i])
            s->bucket[i]++;
}

int metrics_add_collector(metrics_collect_fn *fn, void *arg)
{
    if (n_collectors == ARRAY_SIZE(collectors))
        return UV_ENOMEM;
    collectors[n_collectors++] = (struct collector){fn, arg};
    return 0;
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
    for (const struct series *s = f->first; s != NULL && !err; s = s->next) {
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

int metrics_render(struct buf *out)
{
    for (size_t i = 0; i < n_collectors; i++)
        collectors[i].fn(collectors[i].arg);
    int err = 0;
    for (size_t i = 0; i < n_families && !err; i++)
        err = render_family(out, &families[i]);
    return err;
}

double metrics_value(const char *name, const char *labels)
{
    for (size_t i = 0; i < n_families; i++) {
        if (strcmp(families[i].name, name) != 0)
            continue;
        for (const struct series *s = families[i].first; s != NULL; s = s->next)
            if (strcmp(s->labels, labels != NULL ? labels : "") == 0)
                return families[i].type == METRICS_HISTOGRAM ? (double)s->count : s->value;
    }
    return 0;
}

void metrics_reset(void)
{
    for (size_t i = 0; i < n_families; i++) {
        struct series *s = families[i].first;
        while (s != NULL) {
            struct series *next = s->next;
            free(s->labels);
            free(s->bucket);
            free(s);
            s = next;
        }
    }
    n_families = 0;
    n_collectors = 0;
}
