/* SPDX-License-Identifier: Apache-2.0 */
/* check_stream_offset.c -- RabbitMQ's x-stream-offset spellings
 * (daemon/stream_offset.c): first, last, next, offset=N and bare N,
 * timestamp=SECONDS, intervals back from now, refusals, and where each starts
 * in a partition holding [start, end). */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "stream_offset.h"
#include "unit_main.h"

#define NOW_MS INT64_C(1800000000000) /* 2027-01-15 */

static struct stream_offset parsed(const char *text)
{
    struct stream_offset out;
    char err[256] = "";
    ck_assert_msg(stream_offset_parse(text, NOW_MS, &out, err, sizeof(err)) == 0, "%s: %s", text,
                  err);
    return out;
}

static void refused(const char *text, const char *words)
{
    struct stream_offset out;
    char err[256] = "";
    ck_assert_int_eq(stream_offset_parse(text, NOW_MS, &out, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, words) != NULL, "%s: '%s' lacks '%s'", text, err, words);
}

START_TEST(words_offsets_and_timestamps)
{
    ck_assert_int_eq(parsed("first").kind, STREAM_OFFSET_FIRST);
    ck_assert_int_eq(parsed("last").kind, STREAM_OFFSET_LAST);
    ck_assert_int_eq(parsed("next").kind, STREAM_OFFSET_NEXT);
    struct stream_offset o = parsed("offset=42");
    ck_assert_int_eq(o.kind, STREAM_OFFSET_OFFSET);
    ck_assert_int_eq(o.value, 42);
    o = parsed("7"); /* 0-9-1 and AMQP 1.0 send a number */
    ck_assert_int_eq(o.kind, STREAM_OFFSET_OFFSET);
    ck_assert_int_eq(o.value, 7);
    o = parsed("timestamp=1700000000");
    ck_assert_int_eq(o.kind, STREAM_OFFSET_TIMESTAMP);
    ck_assert_int_eq(o.value, INT64_C(1700000000000));
}
END_TEST

START_TEST(intervals_count_back_from_now)
{
    static const struct {
        const char *text;
        int64_t back_ms;
    } cases[] = {
        {"30s", 30000},
        {"15m", 15 * 60000},
        {"2h", 2 * 3600000},
        {"1D", 86400000},
        {"1W", 7 * INT64_C(86400000)},
        {"1M", 30 * INT64_C(86400000)},
        {"1Y", 365 * INT64_C(86400000)},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct stream_offset o = parsed(cases[i].text);
        ck_assert_int_eq(o.kind, STREAM_OFFSET_TIMESTAMP);
        ck_assert_int_eq(o.value, NOW_MS - cases[i].back_ms);
    }
    ck_assert_int_eq(parsed("999999Y").value, 0); /* before the epoch: from the start */
}
END_TEST

START_TEST(bad_spellings_are_refused_saying_why)
{
    refused("", "not a stream offset");
    refused("First", "not a stream offset");
    refused("offset=", "offset= needs a non-negative number");
    refused("offset=-1", "offset= needs a non-negative number");
    refused("offset=12x", "offset= needs a non-negative number");
    refused("-5", "not a stream offset");
    refused("timestamp=", "timestamp= needs epoch seconds");
    refused("timestamp=99999999999999999", "timestamp= needs epoch seconds");
    refused("10x", "not a stream offset");
    refused("h", "not a stream offset");
    refused("99999999999999999999999s", "not a stream offset");
}
END_TEST

START_TEST(positions_in_a_partition)
{
    struct stream_offset first = {STREAM_OFFSET_FIRST, 0}, last = {STREAM_OFFSET_LAST, 0},
                         next = {STREAM_OFFSET_NEXT, 0}, at = {STREAM_OFFSET_OFFSET, 25};
    ck_assert_int_eq(stream_offset_position(&first, 10, 50), 10);
    ck_assert_int_eq(stream_offset_position(&last, 10, 50), 49);
    ck_assert_int_eq(stream_offset_position(&last, 50, 50), 50); /* empty: from the end */
    ck_assert_int_eq(stream_offset_position(&next, 10, 50), 50);
    ck_assert_int_eq(stream_offset_position(&at, 10, 50), 25);
    ck_assert_int_eq(stream_offset_position(&at, 30, 50), 30); /* gone: the first kept */
    ck_assert_int_eq(stream_offset_position(&at, 0, 20), 20);  /* beyond: the end */
}
END_TEST

static Suite *stream_offset_suite(void)
{
    Suite *s = suite_create("stream_offset");
    TCase *tc = tcase_create("stream_offset");
    tcase_add_test(tc, words_offsets_and_timestamps);
    tcase_add_test(tc, intervals_count_back_from_now);
    tcase_add_test(tc, bad_spellings_are_refused_saying_why);
    tcase_add_test(tc, positions_in_a_partition);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(stream_offset_suite)
