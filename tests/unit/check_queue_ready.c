/* SPDX-License-Identifier: Apache-2.0 */
/* check_queue_ready.c -- a queue member's ready count (daemon/queue_ready.c,
 * AMQP 0-9-1 get-ok's message_count): the unread offsets of a partition
 * from where the queue goes on reading (its last record, the consumer's
 * position past control records, a purge's end) to the cached end offset;
 * nothing when the end or the start is not known; the total with the
 * buffer's available records and x-max-length's cap. */
#include <check.h>
#include <stdint.h>

#include "queue_ready.h"
#include "unit_main.h"

static uint64_t unread(int64_t end, int64_t fetched, int64_t position, int64_t purge_floor)
{
    struct queue_ready_partition partition = {end, fetched, position, purge_floor};
    return queue_ready_unread(&partition);
}

START_TEST(unread_is_the_end_minus_what_was_read)
{
    ck_assert_uint_eq(unread(20, 1, 1, -1), 19); /* the first of 20 was read */
    ck_assert_uint_eq(unread(20, 20, 20, -1), 0);
    ck_assert_uint_eq(unread(20, 11, -1, -1), 9); /* no position: what the queue read */
    /* a committed position of 10: the first record read there is 10 */
    ck_assert_uint_eq(unread(20, 11, 11, -1), 9);
}
END_TEST

START_TEST(control_records_and_purges_move_the_start)
{
    /* a transaction marker at 20 after the last record: the position is past it */
    ck_assert_uint_eq(unread(21, 20, 21, -1), 0);
    /* a purge up to 15: records below it are settled without delivery */
    ck_assert_uint_eq(unread(20, 11, 11, 15), 5);
    ck_assert_uint_eq(unread(20, 18, 18, 15), 2); /* read past the purge already */
    ck_assert_uint_eq(unread(20, 11, 11, 30), 0); /* never negative */
}
END_TEST

START_TEST(unknown_figures_count_nothing)
{
    ck_assert_uint_eq(unread(-1, 5, 5, -1), 0);   /* no fetch answered yet */
    ck_assert_uint_eq(unread(20, -1, -1, -1), 0); /* nothing read since assignment */
    /* a position without a record read may be a previous assignment's */
    ck_assert_uint_eq(unread(20, -1, 3, -1), 0);
    ck_assert_uint_eq(unread(20, -1, -1, 4), 0);
    ck_assert_uint_eq(unread(5, 9, 9, -1), 0); /* a lagging end: never negative */
}
END_TEST

START_TEST(the_total_adds_the_available_and_caps_at_max_length)
{
    ck_assert_uint_eq(queue_ready_total(0, 0, -1), 0);
    ck_assert_uint_eq(queue_ready_total(19, 0, -1), 19);
    ck_assert_uint_eq(queue_ready_total(4, 15, -1), 19);
    ck_assert_uint_eq(queue_ready_total(4, 15, 10), 10); /* drop-head keeps 10 */
    ck_assert_uint_eq(queue_ready_total(4, 15, 0), 0);
    ck_assert_uint_eq(queue_ready_total(4, 15, 19), 19);
    ck_assert_uint_eq(queue_ready_total(UINT64_MAX, 1, -1), UINT64_MAX);
}
END_TEST

static Suite *queue_ready_suite(void)
{
    Suite *s = suite_create("queue_ready");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, unread_is_the_end_minus_what_was_read);
    tcase_add_test(tc, control_records_and_purges_move_the_start);
    tcase_add_test(tc, unknown_figures_count_nothing);
    tcase_add_test(tc, the_total_adds_the_available_and_caps_at_max_length);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(queue_ready_suite)
