#include "pdstrace/metrics.h"

#include <criterion/criterion.h>
#include <string.h>

TestSuite(metrics, .timeout = 10);

/* The rendered text; the caller frees it. */
static char *render(void)
{
    struct buf out;
    buf_init(&out, 1 << 20);
    cr_assert_eq(metrics_render(&out), 0);
    char *text = buf_steal(&out);
    cr_assert_not_null(text);
    return text;
}

Test(metrics, counters_by_label)
{
    metrics_declare("t_requests_total", METRICS_COUNTER, "requests");
    metrics_inc("t_requests_total", "route=\"/a\",status=\"200\"", 1);
    metrics_inc("t_requests_total", "route=\"/a\",status=\"200\"", 2);
    metrics_inc("t_requests_total", "route=\"/a\",status=\"404\"", 1);
    char *text = render();
    cr_assert(strstr(text, "# TYPE t_requests_total counter\n") != NULL);
    cr_assert(strstr(text, "t_requests_total{route=\"/a\",status=\"200\"} 3\n") != NULL, "%s",
              text);
    cr_assert(strstr(text, "t_requests_total{route=\"/a\",status=\"404\"} 1\n") != NULL);
    free(text);
    metrics_reset();
}

Test(metrics, histogram_buckets_are_cumulative)
{
    metrics_declare("t_seconds", METRICS_HISTOGRAM, "latency");
    metrics_observe("t_seconds", NULL, 0.003);
    metrics_observe("t_seconds", NULL, 0.2);
    metrics_observe("t_seconds", NULL, 60);
    char *text = render();
    cr_assert(strstr(text, "t_seconds_bucket{le=\"0.001\"} 0\n") != NULL, "%s", text);
    cr_assert(strstr(text, "t_seconds_bucket{le=\"0.005\"} 1\n") != NULL);
    cr_assert(strstr(text, "t_seconds_bucket{le=\"0.25\"} 2\n") != NULL);
    cr_assert(strstr(text, "t_seconds_bucket{le=\"10\"} 2\n") != NULL);
    cr_assert(strstr(text, "t_seconds_bucket{le=\"+Inf\"} 3\n") != NULL);
    cr_assert(strstr(text, "t_seconds_count 3\n") != NULL);
    cr_assert_eq(metrics_value("t_seconds", NULL), 3);
    free(text);
    metrics_reset();
}

static void set_gauge(void *arg)
{
    metrics_set("t_up", NULL, *(int *)arg);
}

Test(metrics, collectors_refresh_gauges_at_render)
{
    int up = 0;
    metrics_declare("t_up", METRICS_GAUGE, "up");
    metrics_add_collector(set_gauge, &up);
    free(render());
    cr_assert_eq(metrics_value("t_up", NULL), 0);
    up = 1;
    char *text = render();
    cr_assert(strstr(text, "t_up 1\n") != NULL, "%s", text);
    free(text);
    metrics_reset();
}

Test(metrics, undeclared_and_mistyped_series_are_dropped)
{
    metrics_declare("t_c", METRICS_COUNTER, "c");
    metrics_inc("t_unknown", NULL, 1);
    metrics_set("t_c", NULL, 5);
    cr_assert_eq(metrics_value("t_c", NULL), 0);
    char *text = render();
    cr_assert(strstr(text, "t_unknown") == NULL);
    free(text);
    metrics_reset();
}
