/* SPDX-License-Identifier: Apache-2.0 */
/* check_schedule.c -- scheduled delivery's pure parts (daemon/schedule.c):
 * delay parsing (ActiveMQ's Long.parseLong shape), due times from delays
 * and absolute times, the delay topic's name, the heap of held records by
 * due time (ties in arrival order, removal of a revoked partition's) and a
 * partition's window of offsets not yet forwarded. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "schedule.h"
#include "unit_main.h"

#define NOW_MS UINT64_C(1800000000000)

static int parse(const char *text, int64_t *value)
{
    return schedule_parse_integer(text, strlen(text), value);
}

START_TEST(delays_parse_as_whole_numbers)
{
    int64_t v = 0;
    ck_assert_int_eq(parse("0", &v), 0);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(parse("5000", &v), 0);
    ck_assert_int_eq(v, 5000);
    ck_assert_int_eq(parse("+12", &v), 0);
    ck_assert_int_eq(v, 12);
    ck_assert_int_eq(parse("-250", &v), 0);
    ck_assert_int_eq(v, -250);
    ck_assert_int_eq(parse("9223372036854775807", &v), 0);
    ck_assert(v == INT64_MAX);
    const char *bad[] = {"",
                         "-",
                         "+",
                         "abc",
                         "12a",
                         " 12",
                         "12 ",
                         "1.5",
                         "1e3",
                         "9223372036854775808",
                         "99999999999999999999",
                         "0x10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(parse(bad[i], &v) == -1, "'%s' accepted", bad[i]);
    /* not NUL-terminated: only len bytes count */
    ck_assert_int_eq(schedule_parse_integer("123xyz", 3, &v), 0);
    ck_assert_int_eq(v, 123);
}
END_TEST

START_TEST(due_times)
{
    ck_assert(schedule_due_after(0, NOW_MS) == 0);
    ck_assert(schedule_due_after(-5, NOW_MS) == 0);
    ck_assert(schedule_due_after(1500, NOW_MS) == NOW_MS + 1500);
    /* at most INT64_MAX, so that kbridge-deliver-at reads back */
    ck_assert(schedule_due_after(INT64_MAX, NOW_MS) == (uint64_t)INT64_MAX);
    ck_assert(schedule_due_after(INT64_MAX - 5, 5) == (uint64_t)INT64_MAX);
    ck_assert(schedule_due_after(INT64_MAX - 6, 5) == (uint64_t)INT64_MAX - 1);
    ck_assert(schedule_due_at(0, NOW_MS) == 0);
    ck_assert(schedule_due_at(-1, NOW_MS) == 0);
    ck_assert(schedule_due_at((int64_t)NOW_MS, NOW_MS) == 0); /* now: not later */
    ck_assert(schedule_due_at((int64_t)NOW_MS - 1000, NOW_MS) == 0);
    ck_assert(schedule_due_at((int64_t)NOW_MS + 1, NOW_MS) == NOW_MS + 1);
}
END_TEST

START_TEST(delay_topic_under_the_prefix)
{
    struct config config = {0};
    config.kafka.topic_prefix = "dev.";
    config.scheduler.topic = "kbridge.scheduled";
    char out[64];
    ck_assert_int_eq(schedule_topic(&config, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "dev.kbridge.scheduled");
    config.kafka.topic_prefix = "";
    ck_assert_int_eq(schedule_topic(&config, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "kbridge.scheduled");
    ck_assert_int_eq(schedule_topic(&config, out, 10), -1);
}
END_TEST

static bool drop_odd(void *item, void *arg)
{
    (*(int *)arg)++;
    return ((intptr_t)item) % 2 == 1;
}

START_TEST(heap_orders_by_due_then_arrival)
{
    struct schedule_heap heap = {0};
    ck_assert_ptr_null(schedule_heap_peek(&heap));
    ck_assert_ptr_null(schedule_heap_pop(&heap));
    /* 1000 items with due times in a scrambled order, many equal */
    for (intptr_t i = 0; i < 1000; i++)
        ck_assert_int_eq(schedule_heap_push(&heap, (uint64_t)((i * 7919) % 100), (void *)(i + 1)),
                         0);
    ck_assert_uint_eq(heap.count, 1000);
    uint64_t last_due = 0;
    intptr_t last_item = 0;
    for (int n = 0; n < 1000; n++) {
        const struct schedule_entry *first = schedule_heap_peek(&heap);
        ck_assert_ptr_nonnull(first);
        uint64_t due = first->due;
        intptr_t item = (intptr_t)schedule_heap_pop(&heap);
        ck_assert_uint_ge(due, last_due);
        if (due == last_due && n > 0)
            ck_assert_int_gt(item, last_item); /* ties: in arrival order */
        ck_assert_uint_eq(due, (uint64_t)(((item - 1) * 7919) % 100));
        last_due = due;
        last_item = item;
    }
    ck_assert_uint_eq(heap.count, 0);
    schedule_heap_free(&heap);
}
END_TEST

START_TEST(heap_remove_if_keeps_the_order)
{
    struct schedule_heap heap = {0};
    for (intptr_t i = 1; i <= 200; i++)
        ck_assert_int_eq(schedule_heap_push(&heap, (uint64_t)(1000 - i), (void *)i), 0);
    int asked = 0;
    ck_assert_uint_eq(schedule_heap_remove_if(&heap, drop_odd, &asked), 100);
    ck_assert_int_eq(asked, 200);
    ck_assert_uint_eq(heap.count, 100);
    intptr_t expect = 200; /* the latest pushed is the earliest due */
    while (heap.count) {
        intptr_t item = (intptr_t)schedule_heap_pop(&heap);
        ck_assert_int_eq(item, expect);
        expect -= 2;
    }
    schedule_heap_free(&heap);
}
END_TEST

START_TEST(window_commits_the_lowest_pending)
{
    struct schedule_window w = {0};
    ck_assert_int_eq(schedule_window_low(&w), -1);
    for (int64_t o = 10; o < 15; o++)
        ck_assert_int_eq(schedule_window_add(&w, o), 0);
    ck_assert_int_eq(schedule_window_low(&w), 10);
    ck_assert(schedule_window_done(&w, 12));
    ck_assert_int_eq(schedule_window_low(&w), 10); /* 10 still waits */
    ck_assert(!schedule_window_done(&w, 99));
    ck_assert(schedule_window_done(&w, 10));
    ck_assert_int_eq(schedule_window_low(&w), 11);
    ck_assert(schedule_window_done(&w, 11));
    ck_assert_int_eq(schedule_window_low(&w), 13); /* 12 was done */
    ck_assert(schedule_window_done(&w, 14));
    ck_assert(schedule_window_done(&w, 13));
    ck_assert_int_eq(schedule_window_low(&w), 15); /* all done: the next offset */
    /* growth across the ring's wrap, with gaps (control records) */
    for (int64_t o = 20; o < 2020; o += 2)
        ck_assert_int_eq(schedule_window_add(&w, o), 0);
    for (int64_t o = 2018; o >= 22; o -= 2)
        ck_assert(schedule_window_done(&w, o));
    ck_assert_int_eq(schedule_window_low(&w), 20);
    ck_assert(schedule_window_done(&w, 20));
    ck_assert_int_eq(schedule_window_low(&w), 2019);
    schedule_window_reset(&w);
    ck_assert_int_eq(schedule_window_low(&w), -1);
    ck_assert_int_eq(schedule_window_add(&w, 0), 0);
    ck_assert_int_eq(schedule_window_low(&w), 0);
    ck_assert(schedule_window_done(&w, 0));
    ck_assert_int_eq(schedule_window_low(&w), 1);
    schedule_window_free(&w);
}
END_TEST

static Suite *schedule_suite(void)
{
    Suite *s = suite_create("schedule");
    TCase *tc = tcase_create("schedule");
    tcase_add_test(tc, delays_parse_as_whole_numbers);
    tcase_add_test(tc, due_times);
    tcase_add_test(tc, delay_topic_under_the_prefix);
    tcase_add_test(tc, heap_orders_by_due_then_arrival);
    tcase_add_test(tc, heap_remove_if_keeps_the_order);
    tcase_add_test(tc, window_commits_the_lowest_pending);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(schedule_suite)
