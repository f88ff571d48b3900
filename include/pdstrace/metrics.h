#ifndef PDS_CORE_METRICS_H
#define PDS_CORE_METRICS_H

#include <stddef.h>

struct buf;

/* A registry rendered in Prometheus text format (GET /metrics). A series is a family name
 * plus a label string such as `route="/v1/trace",status="200"`; label values come from our
 * own fixed vocabularies, never from requests, so they need no escaping.
 *
 * The app owns one registry and hands it to each module, which declares its own families
 * next to the code that updates them. Every function takes the registry first and is a
 * no-op on NULL (a module built without metrics, as in most unit tests). One loop thread
 * uses it, so there is no locking. */
struct metrics;

enum metrics_type {
    METRICS_COUNTER,
    METRICS_GAUGE,
    METRICS_HISTOGRAM,
};

/* A family, as a module declares it: name and help must be static strings. */
struct metrics_family {
    const char *name;
    enum metrics_type type;
    const char *help;
};

/* Returns 0 or UV_ENOMEM. */
int metrics_new(struct metrics **out);
/* Frees every family, series and collector. NULL is a no-op. */
void metrics_free(struct metrics *m);

/* Declares n families (again is harmless). Series of undeclared families are dropped.
 * Returns 0 (also for a NULL registry) or UV_ENOMEM. */
int metrics_declare(struct metrics *m, const struct metrics_family *f, size_t n);

/* labels may be NULL or "". They are copied. Unknown families and wrong types are ignored. */
void metrics_inc(struct metrics *m, const char *name, const char *labels, double by);
void metrics_set(struct metrics *m, const char *name, const char *labels, double value);
/* Histogram buckets (seconds): 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5
 * 5 10, then +Inf. */
void metrics_observe(struct metrics *m, const char *name, const char *labels, double value);

/* Called just before each render, to refresh gauges (Redis state, queue depth). A module
 * that adds a collector removes it before it goes. Return 0 or UV_ENOMEM. */
typedef void metrics_collect_fn(void *arg);
int metrics_add_collector(struct metrics *m, metrics_collect_fn *fn, void *arg);
void metrics_remove_collector(struct metrics *m, metrics_collect_fn *fn, void *arg);

/* Appends the text exposition of every declared family. Returns 0 or a buf error. */
int metrics_render(struct metrics *m, struct buf *out);

/* A series' current value (counter or gauge; a histogram's count), 0 when absent. */
double metrics_value(const struct metrics *m, const char *name, const char *labels);

#endif
