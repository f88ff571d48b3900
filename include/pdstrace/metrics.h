#ifndef PDS_CORE_METRICS_H
#define PDS_CORE_METRICS_H

#include "pdstrace/buf.h"

/* A process-wide registry rendered in Prometheus text format (GET /metrics). A series is a
 * family name plus a label string such as `route="/v1/trace",status="200"`; label values
 * come from our own fixed vocabularies, never from requests, so they need no escaping.
 * One loop thread uses it, so there is no locking. */
enum metrics_type {
    METRICS_COUNTER,
    METRICS_GAUGE,
    METRICS_HISTOGRAM,
};

/* Declares a family's type and help text; name and help must be static strings. Series of
 * undeclared families are dropped. Returns 0 or UV_ENOMEM. */
int metrics_declare(const char *name, enum metrics_type type, const char *help);

/* labels may be NULL or "". They are copied. Unknown families and wrong types are ignored. */
void metrics_inc(const char *name, const char *labels, double by);
void metrics_set(const char *name, const char *labels, double value);
/* Histogram buckets (seconds): 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5
 * 5 10, then +Inf. */
void metrics_observe(const char *name, const char *labels, double value);

/* Called just before each render, to refresh gauges (Redis state, queue depth). */
typedef void metrics_collect_fn(void *arg);
int metrics_add_collector(metrics_collect_fn *fn, void *arg);

/* Appends the text exposition of every declared family. Returns 0 or a buf error. */
int metrics_render(struct buf *out);

/* A series' current value (counter or gauge; a histogram's count), 0 when absent. */
double metrics_value(const char *name, const char *labels);

/* Forgets every family, series and collector. */
void metrics_reset(void);

#endif
