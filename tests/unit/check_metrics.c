/* SPDX-License-Identifier: Apache-2.0 */
/* check_metrics.c -- unit tests of the Prometheus registry (metrics.c). */
#include <check.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "unit_main.h"

static char *render(struct metrics *metrics)
{
    struct evbuffer *out = evbuffer_new();
    ck_assert_int_eq(metrics_render(metrics, out), 0);
    size_t len = evbuffer_get_length(out);
    char *text = malloc(len + 1);
    evbuffer_remove(out, text, len);
    text[len] = '\0';
    evbuffer_free(out);
    return text;
}

static double twelve(void *arg) { return *(double *)arg * 12; }

START_TEST(counter_and_gauge_render_in_exposition_format)
{
    struct metrics *metrics = metrics_new();
    uint64_t *sent =
        metrics_counter(metrics, "kb_sent_total", "Frames sent.", "protocol=\"stomp\"");
    uint64_t *sent_amqp =
        metrics_counter(metrics, "kb_sent_total", "Frames sent.", "protocol=\"amqp\"");
    double *open = metrics_gauge(metrics, "kb_open", "Open things.", NULL);
    *sent += 3;
    *sent_amqp += 1;
    *open = 2.5;
    char *text = render(metrics);
    ck_assert_str_eq(text, "# HELP kb_sent_total Frames sent.\n"
                           "# TYPE kb_sent_total counter\n"
                           "kb_sent_total{protocol=\"stomp\"} 3\n"
                           "kb_sent_total{protocol=\"amqp\"} 1\n"
                           "# HELP kb_open Open things.\n"
                           "# TYPE kb_open gauge\n"
                           "kb_open 2.5\n");
    free(text);
    metrics_free(metrics);
}
END_TEST

START_TEST(same_series_returns_same_pointer_and_type_conflict_fails)
{
    struct metrics *metrics = metrics_new();
    uint64_t *a = metrics_counter(metrics, "kb_x_total", "X.", "a=\"1\"");
    uint64_t *b = metrics_counter(metrics, "kb_x_total", "X.", "a=\"1\"");
    ck_assert_ptr_eq(a, b);
    ck_assert_ptr_null(metrics_gauge(metrics, "kb_x_total", "X.", NULL));
    metrics_free(metrics);
}
END_TEST

START_TEST(callback_gauge_is_computed_at_render)
{
    struct metrics *metrics = metrics_new();
    double base = 1;
    ck_assert_int_eq(metrics_gauge_callback(metrics, "kb_calc", "Calc.", NULL, twelve, &base), 0);
    base = 2;
    char *text = render(metrics);
    ck_assert_ptr_nonnull(strstr(text, "kb_calc 24\n"));
    free(text);
    metrics_free(metrics);
}
END_TEST

START_TEST(removed_series_disappears_and_empty_family_is_not_rendered)
{
    struct metrics *metrics = metrics_new();
    uint64_t *a = metrics_counter(metrics, "kb_dest_total", "D.", "destination=\"a\"");
    uint64_t *b = metrics_counter(metrics, "kb_dest_total", "D.", "destination=\"b\"");
    metrics_remove(metrics, a);
    char *text = render(metrics);
    ck_assert_ptr_null(strstr(text, "destination=\"a\""));
    ck_assert_ptr_nonnull(strstr(text, "destination=\"b\""));
    free(text);
    metrics_remove(metrics, b);
    text = render(metrics);
    ck_assert_str_eq(text, "");
    free(text);
    metrics_free(metrics);
}
END_TEST

START_TEST(histogram_renders_cumulative_buckets_sum_and_count)
{
    struct metrics *metrics = metrics_new();
    static const double bounds[] = {0.01, 0.1, 1};
    struct metrics_histogram *h =
        metrics_histogram(metrics, "rt_seconds", "Round trips.", NULL, bounds, 3);
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_eq(metrics_histogram(metrics, "rt_seconds", "Round trips.", NULL, bounds, 3), h);
    metrics_histogram_observe(h, 0.005);
    metrics_histogram_observe(h, 0.01); /* on the bound: counted in le="0.01" */
    metrics_histogram_observe(h, 0.5);
    metrics_histogram_observe(h, 7);
    char *text = render(metrics);
    ck_assert_ptr_nonnull(strstr(text, "# TYPE rt_seconds histogram\n"));
    ck_assert_ptr_nonnull(strstr(text, "rt_seconds_bucket{le=\"0.01\"} 2\n"));
    /* the shortest decimal that reads back as the double, as Prometheus's clients write */
    ck_assert_ptr_nonnull(strstr(text, "rt_seconds_bucket{le=\"0.1\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(text, "rt_seconds_bucket{le=\"1\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "rt_seconds_bucket{le=\"+Inf\"} 4\n"));
    ck_assert_ptr_nonnull(strstr(text, "rt_seconds_sum 7.515\n"));
    ck_assert_ptr_nonnull(strstr(text, "rt_seconds_count 4\n"));
    /* too many buckets */
    double many[METRICS_HISTOGRAM_MAX_BUCKETS + 1] = {0};
    ck_assert_ptr_null(
        metrics_histogram(metrics, "x_seconds", "", NULL, many, METRICS_HISTOGRAM_MAX_BUCKETS + 1));
    free(text);
    metrics_free(metrics);
}
END_TEST

START_TEST(label_values_are_escaped)
{
    char buf[64];
    ck_assert_int_eq(metrics_label(buf, sizeof(buf), "destination", "a\"b\\c\nd"), 0);
    ck_assert_str_eq(buf, "destination=\"a\\\"b\\\\c\\nd\"");
    ck_assert_int_eq(metrics_label(buf, 8, "destination", "orders"), -1);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *suite = suite_create("metrics");
    TCase *tc = tcase_create("registry");
    tcase_add_test(tc, counter_and_gauge_render_in_exposition_format);
    tcase_add_test(tc, same_series_returns_same_pointer_and_type_conflict_fails);
    tcase_add_test(tc, callback_gauge_is_computed_at_render);
    tcase_add_test(tc, removed_series_disappears_and_empty_family_is_not_rendered);
    tcase_add_test(tc, label_values_are_escaped);
    tcase_add_test(tc, histogram_renders_cumulative_buckets_sum_and_count);
    suite_add_tcase(suite, tc);
    return suite;
}

CHECK_MAIN(metrics_suite)
