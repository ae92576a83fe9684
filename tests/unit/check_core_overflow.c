/* SPDX-License-Identifier: Apache-2.0 */
/* check_core_overflow.c -- the decisions of x-overflow reject-publish's
 * figure (core_overflow.c): when a publish starts a depth lookup (the clock
 * is given), what a lookup's answer or failure leaves, and when a queue is
 * full. */
#include <check.h>

#include "core_internal.h"
#include "unit_main.h"

START_TEST(no_figure_is_not_full_and_asks_at_once)
{
    struct core_overflow_figure f;
    core_overflow_figure_init(&f);
    ck_assert_int_eq(core_overflow_figure_estimate(&f), -1);
    ck_assert(!core_overflow_figure_full(&f, 0)); /* not even x-max-length 0 */
    core_overflow_figure_published(&f, 5000);
    ck_assert_uint_le(core_overflow_figure_next_ask(&f, 1000), 5000); /* now */
    core_overflow_figure_asking(&f, 5000);
    /* one lookup at a time */
    ck_assert(core_overflow_figure_next_ask(&f, 1000) == CORE_OVERFLOW_NEVER);
    /* publishes let through before the first answer are not refused */
    for (int i = 0; i < 10; i++) {
        core_overflow_figure_published(&f, 5000 + (uint64_t)i);
        ck_assert(!core_overflow_figure_full(&f, 5));
        core_overflow_figure_accepted(&f, 100);
    }
}
END_TEST

START_TEST(refresh_every_interval_while_publishes_come)
{
    struct core_overflow_figure f;
    core_overflow_figure_init(&f);
    core_overflow_figure_published(&f, 1000);
    core_overflow_figure_asking(&f, 1000);
    core_overflow_figure_answered(&f, true, 0);
    /* the publish came at the lookup's start: one more a whole interval on */
    ck_assert_uint_eq(core_overflow_figure_next_ask(&f, 1000), 2000);
    core_overflow_figure_published(&f, 1900);
    ck_assert_uint_eq(core_overflow_figure_next_ask(&f, 1000), 2000); /* not earlier */
    core_overflow_figure_asking(&f, 2000);
    ck_assert(core_overflow_figure_next_ask(&f, 1000) == CORE_OVERFLOW_NEVER); /* running */
    core_overflow_figure_answered(&f, true, 0);
    /* the last publish (1900) came less than an interval before 2000: again */
    ck_assert_uint_eq(core_overflow_figure_next_ask(&f, 1000), 3000);
    core_overflow_figure_asking(&f, 3000);
    core_overflow_figure_answered(&f, true, 0);
    /* that lookup started a whole interval after the last publish: idle */
    ck_assert(core_overflow_figure_next_ask(&f, 1000) == CORE_OVERFLOW_NEVER);
    /* a publish much later: asked at once (the last start is long past) */
    core_overflow_figure_published(&f, 60000);
    ck_assert_uint_le(core_overflow_figure_next_ask(&f, 1000), 60000);
    ck_assert_uint_eq(core_overflow_figure_next_ask(&f, 100), 3100); /* the config's interval */
}
END_TEST

START_TEST(publishes_since_the_answer_count)
{
    struct core_overflow_figure f;
    core_overflow_figure_init(&f);
    core_overflow_figure_asking(&f, 0);
    core_overflow_figure_accepted(&f, 100); /* let through while the lookup ran: in it or not */
    core_overflow_figure_answered(&f, true, 3);
    ck_assert_int_eq(core_overflow_figure_estimate(&f), 3); /* errs low, never counts twice */
    core_overflow_figure_accepted(&f, 100);
    ck_assert_int_eq(core_overflow_figure_estimate(&f), 4);
    ck_assert(!core_overflow_figure_full(&f, 5));
    core_overflow_figure_accepted(&f, 100);
    ck_assert_int_eq(core_overflow_figure_estimate(&f), 5);
    ck_assert(core_overflow_figure_full(&f, 5)); /* >= x-max-length */
    ck_assert(!core_overflow_figure_full(&f, 6));
    /* the next lookup sees the queue drained */
    core_overflow_figure_asking(&f, 1000);
    ck_assert(core_overflow_figure_full(&f, 5)); /* the old figure until it answers */
    core_overflow_figure_answered(&f, true, 0);
    ck_assert_int_eq(core_overflow_figure_estimate(&f), 0);
    ck_assert(!core_overflow_figure_full(&f, 5));
}
END_TEST

/* x-max-length-bytes: the ready count at the mean body size of this node's
 * publishes, plus the bodies let through since the answer. */
START_TEST(bytes_are_estimated_from_the_mean_body)
{
    struct core_overflow_figure f;
    core_overflow_figure_init(&f);
    ck_assert_int_eq(core_overflow_figure_estimate_bytes(&f, 100), -1);
    ck_assert(!core_overflow_figure_full_bytes(&f, 0, 100)); /* no figure: not full */
    core_overflow_figure_asking(&f, 0);
    core_overflow_figure_answered(&f, true, 4);
    /* nothing published through this node yet: the message being decided is the mean */
    ck_assert_int_eq(core_overflow_figure_estimate_bytes(&f, 250), 1000);
    ck_assert(core_overflow_figure_full_bytes(&f, 1000, 250)); /* >= x-max-length-bytes */
    ck_assert(!core_overflow_figure_full_bytes(&f, 1001, 250));
    core_overflow_figure_accepted(&f, 100);
    ck_assert_int_eq(core_overflow_figure_estimate_bytes(&f, 250), 4 * 100 + 100);
    core_overflow_figure_accepted(&f, 100);
    ck_assert_int_eq(core_overflow_figure_estimate_bytes(&f, 100), 600);
    ck_assert(core_overflow_figure_full_bytes(&f, 600, 100));
    ck_assert(!core_overflow_figure_full_bytes(&f, -1, 100)); /* no byte limit */
    /* the next answer takes over what was let through */
    core_overflow_figure_asking(&f, 1000);
    core_overflow_figure_answered(&f, true, 1);
    ck_assert_int_eq(core_overflow_figure_estimate_bytes(&f, 100), 100);
}
END_TEST

START_TEST(a_failed_lookup_keeps_the_last_figure)
{
    struct core_overflow_figure f;
    core_overflow_figure_init(&f);
    core_overflow_figure_published(&f, 0);
    core_overflow_figure_asking(&f, 0);
    core_overflow_figure_answered(&f, true, 5);
    ck_assert(core_overflow_figure_full(&f, 5));
    core_overflow_figure_published(&f, 900);
    core_overflow_figure_asking(&f, 1000);
    core_overflow_figure_answered(&f, false, 0);
    ck_assert_int_eq(core_overflow_figure_estimate(&f), 5);
    ck_assert(core_overflow_figure_full(&f, 5));
    ck_assert_uint_eq(core_overflow_figure_next_ask(&f, 1000), 2000); /* as after an answer */
    /* a failure before any answer leaves no figure: not full */
    core_overflow_figure_init(&f);
    core_overflow_figure_asking(&f, 0);
    core_overflow_figure_answered(&f, false, 0);
    ck_assert(!core_overflow_figure_full(&f, 0));
}
END_TEST

static Suite *core_overflow_suite(void)
{
    Suite *suite = suite_create("core_overflow");
    TCase *tc = tcase_create("figure");
    tcase_add_test(tc, no_figure_is_not_full_and_asks_at_once);
    tcase_add_test(tc, refresh_every_interval_while_publishes_come);
    tcase_add_test(tc, publishes_since_the_answer_count);
    tcase_add_test(tc, bytes_are_estimated_from_the_mean_body);
    tcase_add_test(tc, a_failed_lookup_keeps_the_last_figure);
    suite_add_tcase(suite, tc);
    return suite;
}

CHECK_MAIN(core_overflow_suite)
