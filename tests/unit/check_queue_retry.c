/* SPDX-License-Identifier: Apache-2.0 */
/* check_queue_retry.c -- delayed redelivery's plan (daemon/queue_retry.c):
 * the delay of each retry level (initial, multiplier, max), where levels
 * stop, which level a release goes to, the retry topic names with every
 * placeholder, and the decimal header parser. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue_retry.h"
#include "topic_pattern.h"
#include "unit_main.h"

START_TEST(delays_grow_by_the_multiplier_up_to_the_max)
{
    struct queue_retry_plan plan;
    ck_assert_int_eq(
        queue_retry_plan_init(&plan, "k.", "{name}.retry.{n}", "orders", 1000, 2.0, 10000, 100), 0);
    /* 1 s, 2 s, 4 s, 8 s, then 10 s (the max) ends the levels */
    ck_assert_uint_eq(plan.level_count, 5);
    const uint64_t expect[] = {1000, 2000, 4000, 8000, 10000};
    for (size_t i = 0; i < 5; i++)
        ck_assert_uint_eq(plan.delay_ms[i], expect[i]);
    ck_assert_str_eq(plan.topics[0], "k.orders.retry.1");
    ck_assert_str_eq(plan.topics[4], "k.orders.retry.5");
    /* the release after delivery N goes to level N-1; beyond the last, the last */
    ck_assert_uint_eq(queue_retry_level(&plan, 1), 0);
    ck_assert_uint_eq(queue_retry_level(&plan, 3), 2);
    ck_assert_uint_eq(queue_retry_level(&plan, 5), 4);
    ck_assert_uint_eq(queue_retry_level(&plan, 40), 4);
    ck_assert(queue_retry_is_topic(&plan, "k.orders.retry.3"));
    ck_assert(!queue_retry_is_topic(&plan, "k.orders"));
    ck_assert(!queue_retry_is_topic(&plan, "k.orders.retry.6"));
    queue_retry_plan_clear(&plan);
    ck_assert_uint_eq(plan.level_count, 0);
}
END_TEST

START_TEST(levels_stop_at_max_deliveries_and_at_a_constant_delay)
{
    struct queue_retry_plan plan;
    /* max_deliveries 3: two redeliveries at most, so two levels */
    ck_assert_int_eq(
        queue_retry_plan_init(&plan, "", "{name}.retry.{n}", "q", 500, 3.0, 3600000, 3), 0);
    ck_assert_uint_eq(plan.level_count, 2);
    ck_assert_uint_eq(plan.delay_ms[0], 500);
    ck_assert_uint_eq(plan.delay_ms[1], 1500);
    queue_retry_plan_clear(&plan);
    /* multiplier 1: one level, every redelivery waits the same */
    ck_assert_int_eq(
        queue_retry_plan_init(&plan, "", "{name}.retry.{n}", "q", 700, 1.0, 3600000, 9), 0);
    ck_assert_uint_eq(plan.level_count, 1);
    ck_assert_uint_eq(queue_retry_level(&plan, 8), 0);
    queue_retry_plan_clear(&plan);
    /* a fractional multiplier */
    ck_assert_int_eq(
        queue_retry_plan_init(&plan, "", "{name}.retry.{n}", "q", 1000, 1.5, 3600000, 4), 0);
    ck_assert_uint_eq(plan.level_count, 3);
    ck_assert_uint_eq(plan.delay_ms[2], 2250);
    queue_retry_plan_clear(&plan);
    /* no delay, or a single allowed delivery: no levels */
    ck_assert_int_eq(queue_retry_plan_init(&plan, "", "{name}.retry.{n}", "q", 0, 2.0, 1000, 5), 0);
    ck_assert_uint_eq(plan.level_count, 0);
    ck_assert_int_eq(queue_retry_plan_init(&plan, "", "{name}.retry.{n}", "q", 10, 2.0, 1000, 1),
                     0);
    ck_assert_uint_eq(plan.level_count, 0);
    /* an initial delay above the max is the max */
    ck_assert_int_eq(queue_retry_plan_init(&plan, "", "{name}.retry.{n}", "q", 9000, 2.0, 5000, 5),
                     0);
    ck_assert_uint_eq(plan.level_count, 1);
    ck_assert_uint_eq(plan.delay_ms[0], 5000);
    queue_retry_plan_clear(&plan);
    /* at most QUEUE_RETRY_LEVELS_MAX levels */
    ck_assert_int_eq(
        queue_retry_plan_init(&plan, "", "{name}.retry.{n}", "q", 1, 1.01, 3600000, 1000000), 0);
    ck_assert_uint_eq(plan.level_count, QUEUE_RETRY_LEVELS_MAX);
    queue_retry_plan_clear(&plan);
}
END_TEST

START_TEST(topic_names_fill_every_placeholder)
{
    struct queue_retry_plan plan;
    ck_assert_int_eq(
        queue_retry_plan_init(&plan, "", "{name}-retry-{index}", "payments", 1000, 2.0, 4000, 10),
        0);
    ck_assert_str_eq(plan.topics[0], "payments-retry-0"); /* Spring's index suffix */
    ck_assert_str_eq(plan.topics[2], "payments-retry-2");
    queue_retry_plan_clear(&plan);
    ck_assert_int_eq(
        queue_retry_plan_init(&plan, "pre.", "{name}-retry-{delay}", "p", 250, 4.0, 4000, 10), 0);
    ck_assert_uint_eq(plan.level_count, 3);
    ck_assert_str_eq(plan.topics[0], "pre.p-retry-250");
    ck_assert_str_eq(plan.topics[1], "pre.p-retry-1000");
    ck_assert_str_eq(plan.topics[2], "pre.p-retry-4000");
    queue_retry_plan_clear(&plan);
    ck_assert_int_eq(
        queue_retry_plan_init(&plan, "", "retry.{n}.of.{name}.{name}", "x", 10, 2.0, 10, 10), 0);
    ck_assert_str_eq(plan.topics[0], "retry.1.of.x.x");
    queue_retry_plan_clear(&plan);
}
END_TEST

START_TEST(dead_letter_names_expand_and_fit_or_are_refused)
{
    char out[16];
    ck_assert_int_eq(topic_pattern_name_into("p.", "{name}.DLQ", "q", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "p.q.DLQ");
    ck_assert_int_eq(topic_pattern_name_into("", "dlq.{name}.{name}", "ab", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "dlq.ab.ab");
    /* exactly 15 bytes fit a 16-byte buffer, 16 do not */
    ck_assert_int_eq(topic_pattern_name_into("", "{name}", "123456789012345", out, sizeof(out)), 0);
    ck_assert_int_eq(topic_pattern_name_into("", "{name}", "1234567890123456", out, sizeof(out)),
                     -1);
    ck_assert_str_eq(out, "");
    const struct topic_pattern_fill fills[] = {{"{n}", "7"}, {"{name}", "q"}};
    char *name = topic_pattern_expand("x-", "{name}-{n}-{nope}", fills, 2);
    ck_assert_str_eq(name, "x-q-7-{nope}");
    free(name);
}
END_TEST

START_TEST(decimal_headers_parse_or_are_refused)
{
    uint64_t value = 7;
    ck_assert_int_eq(queue_retry_parse_decimal("1765000000123", 13, &value), 0);
    ck_assert_uint_eq(value, UINT64_C(1765000000123));
    ck_assert_int_eq(queue_retry_parse_decimal("18446744073709551615", 20, &value), 0);
    ck_assert_uint_eq(value, UINT64_MAX);
    ck_assert_int_eq(queue_retry_parse_decimal("18446744073709551616", 20, &value), -1);
    ck_assert_int_eq(queue_retry_parse_decimal("12a", 3, &value), -1);
    ck_assert_int_eq(queue_retry_parse_decimal("-1", 2, &value), -1);
    ck_assert_int_eq(queue_retry_parse_decimal("", 0, &value), -1);
    ck_assert_int_eq(queue_retry_parse_decimal(NULL, 0, &value), -1);
    ck_assert_int_eq(queue_retry_parse_decimal("42xyz", 2, &value), 0); /* only len bytes */
    ck_assert_uint_eq(value, 42);
}
END_TEST

static Suite *queue_retry_suite(void)
{
    Suite *s = suite_create("queue_retry");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, delays_grow_by_the_multiplier_up_to_the_max);
    tcase_add_test(tc, levels_stop_at_max_deliveries_and_at_a_constant_delay);
    tcase_add_test(tc, topic_names_fill_every_placeholder);
    tcase_add_test(tc, decimal_headers_parse_or_are_refused);
    tcase_add_test(tc, dead_letter_names_expand_and_fit_or_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(queue_retry_suite)
