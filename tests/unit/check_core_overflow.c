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
    ck_assert(core_overflow_figure_due(&f, 5000, 1000));
    core_overflow_figure_asking(&f, 5000);
    ck_assert(!core_overflow_figure_due(&f, 99999, 1000)); /* one lookup at a time */
    /* publishes let through before the first answer are not refused */
    for (int i = 0; i < 10; i++) {
        ck_assert(!core_overflow_figure_full(&f, 5));
        core_overflow_figure_accepted(&f);
    }
}
END_TEST

START_TEST(refresh_at_most_every_interval)
{
    struct core_overflow_figure f;
    core_overflow_figure_init(&f);
    core_overflow_figure_asking(&f, 1000);
    core_overflow_figure_answered(&f, true, 0);
    ck_assert(!core_overflow_figure_due(&f, 1000, 1000));
    ck_assert(!core_overflow_figure_due(&f, 1999, 1000));
    ck_assert(core_overflow_figure_due(&f, 2000, 1000)); /* measured from the lookup's start */
    core_overflow_figure_asking(&f, 2500);
    ck_assert(!core_overflow_figure_due(&f, 4000, 1000)); /* still running */
    core_overflow_figure_answered(&f, true, 0);
    ck_assert(!core_overflow_figure_due(&f, 3499, 1000));
    ck_assert(core_overflow_figure_due(&f, 3500, 1000));
    ck_assert(core_overflow_figure_due(&f, 3600, 100)); /* the interval is the config's */
}
END_TEST

START_TEST(publishes_since_the_lookup_count)
{
    struct core_overflow_figure f;
    core_overflow_figure_init(&f);
    core_overflow_figure_asking(&f, 0);
    core_overflow_figure_accepted(&f); /* let through while the lookup ran */
    core_overflow_figure_answered(&f, true, 3);
    ck_assert_int_eq(core_overflow_figure_estimate(&f), 4);
    ck_assert(!core_overflow_figure_full(&f, 5));
    core_overflow_figure_accepted(&f);
    ck_assert_int_eq(core_overflow_figure_estimate(&f), 5);
    ck_assert(core_overflow_figure_full(&f, 5)); /* >= x-max-length */
    ck_assert(!core_overflow_figure_full(&f, 6));
    /* the next lookup sees the queue drained: only what was let through
     * since it started counts on top */
    core_overflow_figure_asking(&f, 1000);
    core_overflow_figure_accepted(&f);
    ck_assert_int_eq(core_overflow_figure_estimate(&f), 6); /* the old figure until it answers */
    core_overflow_figure_answered(&f, true, 0);
    ck_assert_int_eq(core_overflow_figure_estimate(&f), 1);
    ck_assert(!core_overflow_figure_full(&f, 5));
}
END_TEST

START_TEST(a_failed_lookup_keeps_the_last_figure)
{
    struct core_overflow_figure f;
    core_overflow_figure_init(&f);
    core_overflow_figure_asking(&f, 0);
    core_overflow_figure_answered(&f, true, 5);
    ck_assert(core_overflow_figure_full(&f, 5));
    core_overflow_figure_asking(&f, 1000);
    core_overflow_figure_answered(&f, false, 0);
    ck_assert_int_eq(core_overflow_figure_estimate(&f), 5);
    ck_assert(core_overflow_figure_full(&f, 5));
    ck_assert(!core_overflow_figure_due(&f, 1999, 1000)); /* a failure waits as an answer */
    ck_assert(core_overflow_figure_due(&f, 2000, 1000));
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
    tcase_add_test(tc, refresh_at_most_every_interval);
    tcase_add_test(tc, publishes_since_the_lookup_count);
    tcase_add_test(tc, a_failed_lookup_keeps_the_last_figure);
    suite_add_tcase(suite, tc);
    return suite;
}

CHECK_MAIN(core_overflow_suite)
