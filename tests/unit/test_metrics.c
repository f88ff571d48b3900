#include "pdstrace/metrics.h"

#include <criterion/criterion.h>
#include <string.h>

#include "pdstrace/buf.h"
#include "pdstrace/macros.h"

TestSuite(metrics, .timeout = 10);

static const struct metrics_family families[] = {
    {"t_requests_total", METRICS_COUNTER, "requests"},
    {"t_seconds", METRICS_HISTOGRAM, "latency"},
    {"t_up", METRICS_GAUGE, "up"},
};

static struct metrics *new_registry(void)
{
    struct metrics *m;
    cr_assert_eq(metrics_new(&m), 0);
    cr_assert_eq(metrics_declare(m, families, ARRAY_SIZE(families)), 0);
    return m;
}

/* The rendered text; the caller frees it. */
static char *render(struct metrics *m)
{
    struct buf out;
    buf_init(&out, 1 << 20);
    cr_assert_eq(metrics_render(m, &out), 0);
    char *text = buf_steal(&out);
    cr_assert_not_null(text);
    return text;
}

Test(metrics, counters_by_label)
{
    struct metrics *m = new_registry();
    metrics_inc(m, "t_requests_total", "route=\"/a\",status=\"200\"", 1);
    metrics_inc(m, "t_requests_total", "route=\"/a\",status=\"200\"", 2);
    metrics_inc(m, "t_requests_total", "route=\"/a\",status=\"404\"", 1);
    char *text = render(m);
    cr_assert(strstr(text, "# TYPE t_requests_total counter\n") != NULL);
    cr_assert(strstr(text, "t_requests_total{route=\"/a\",status=\"200\"} 3\n") != NULL, "%s",
              text);
    cr_assert(strstr(text, "t_requests_total{route=\"/a\",status=\"404\"} 1\n") != NULL);
    free(text);
    metrics_free(m);
}

Test(metrics, histogram_buckets_are_cumulative)
{
    struct metrics *m = new_registry();
    metrics_observe(m, "t_seconds", NULL, 0.003);
    metrics_observe(m, "t_seconds", NULL, 0.2);
    metrics_observe(m, "t_seconds", NULL, 60);
    char *text = render(m);
    cr_assert(strstr(text, "t_seconds_bucket{le=\"0.001\"} 0\n") != NULL, "%s", text);
    cr_assert(strstr(text, "t_seconds_bucket{le=\"0.005\"} 1\n") != NULL);
    cr_assert(strstr(text, "t_seconds_bucket{le=\"0.25\"} 2\n") != NULL);
    cr_assert(strstr(text, "t_seconds_bucket{le=\"10\"} 2\n") != NULL);
    cr_assert(strstr(text, "t_seconds_bucket{le=\"+Inf\"} 3\n") != NULL);
    cr_assert(strstr(text, "t_seconds_count 3\n") != NULL);
    cr_assert_eq(metrics_value(m, "t_seconds", NULL), 3);
    free(text);
    metrics_free(m);
}

struct gauge {
    struct metrics *m;
    int up;
};

static void set_gauge(void *arg)
{
    const struct gauge *g = arg;
    metrics_set(g->m, "t_up", NULL, g->up);
}

Test(metrics, collectors_refresh_gauges_at_render_until_removed)
{
    struct gauge g = {new_registry(), 0};
    cr_assert_eq(metrics_add_collector(g.m, set_gauge, &g), 0);
    free(render(g.m));
    cr_assert_eq(metrics_value(g.m, "t_up", NULL), 0);
    g.up = 1;
    char *text = render(g.m);
    cr_assert(strstr(text, "t_up 1\n") != NULL, "%s", text);
    free(text);
    metrics_remove_collector(g.m, set_gauge, &g);
    g.up = 7;
    free(render(g.m));
    cr_assert_eq(metrics_value(g.m, "t_up", NULL), 1, "a removed collector still ran");
    metrics_free(g.m);
}

Test(metrics, undeclared_and_mistyped_series_are_dropped)
{
    struct metrics *m = new_registry();
    metrics_inc(m, "t_unknown", NULL, 1);
    metrics_set(m, "t_requests_total", NULL, 5);
    cr_assert_eq(metrics_value(m, "t_requests_total", NULL), 0);
    char *text = render(m);
    cr_assert(strstr(text, "t_unknown") == NULL);
    free(text);
    metrics_free(m);
}

/* Two registries in one process (two app instances in a test) never see each other. */
Test(metrics, registries_are_independent)
{
    struct metrics *a = new_registry(), *b = new_registry();
    metrics_inc(a, "t_requests_total", NULL, 2);
    cr_assert_eq(metrics_value(a, "t_requests_total", NULL), 2);
    cr_assert_eq(metrics_value(b, "t_requests_total", NULL), 0);
    metrics_free(a);
    metrics_free(b);
}

/* A module built without metrics passes NULL: every call is a no-op. */
Test(metrics, a_null_registry_is_a_no_op)
{
    struct buf out;
    buf_init(&out, 64);
    cr_assert_eq(metrics_declare(NULL, families, ARRAY_SIZE(families)), 0);
    metrics_inc(NULL, "t_requests_total", NULL, 1);
    metrics_observe(NULL, "t_seconds", NULL, 1);
    cr_assert_eq(metrics_add_collector(NULL, set_gauge, NULL), 0);
    metrics_remove_collector(NULL, set_gauge, NULL);
    cr_assert_eq(metrics_render(NULL, &out), 0);
    cr_assert_eq(buf_len(&out), 0);
    cr_assert_eq(metrics_value(NULL, "t_requests_total", NULL), 0);
    metrics_free(NULL);
}

Test(metrics, declaring_twice_keeps_the_series)
{
    struct metrics *m = new_registry();
    metrics_inc(m, "t_requests_total", NULL, 1);
    cr_assert_eq(metrics_declare(m, families, ARRAY_SIZE(families)), 0);
    cr_assert_eq(metrics_value(m, "t_requests_total", NULL), 1);
    metrics_free(m);
}
