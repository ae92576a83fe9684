/* SPDX-License-Identifier: Apache-2.0 */
/* check_kafka_dlq.c -- kafka_redrive_header_name (daemon/kafka_dlq.c): which
 * headers of a dead letter a redrive keeps, renames or drops (docs/operations.md
 * "Dead letters"). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_dlq.h"
#include "record.h"
#include "unit_main.h"

/* The dead-letter provenance gets the redrive's names: a record with
 * kbridge-dlq-reason would be a dead letter again (record_expires_passed). */
START_TEST(provenance_is_renamed)
{
    ck_assert_str_eq(kafka_redrive_header_name(RECORD_DLQ_REASON), RECORD_REDRIVE_REASON);
    ck_assert_str_eq(kafka_redrive_header_name(RECORD_DLQ_ORIGINAL_TOPIC),
                     RECORD_REDRIVE_ORIGINAL_TOPIC);
    ck_assert_str_eq(kafka_redrive_header_name(RECORD_DLQ_ORIGINAL_PARTITION),
                     RECORD_REDRIVE_ORIGINAL_PARTITION);
    ck_assert_str_eq(kafka_redrive_header_name(RECORD_DLQ_ORIGINAL_OFFSET),
                     RECORD_REDRIVE_ORIGINAL_OFFSET);
    ck_assert_str_eq(kafka_redrive_header_name(RECORD_DLQ_TIME), RECORD_REDRIVE_DEAD_LETTERED_AT);
    ck_assert_str_eq(RECORD_REDRIVE_REASON, "kbridge-redrive-reason");
}
END_TEST

/* The delivery count starts anew; unknown kbridge-dlq-* and an earlier
 * redrive's headers are replaced by this redrive's. */
START_TEST(counts_and_earlier_redrives_are_dropped)
{
    ck_assert_ptr_null(kafka_redrive_header_name(RECORD_DELIVERY_COUNT));
    ck_assert_ptr_null(kafka_redrive_header_name("kbridge-dlq-something-new"));
    ck_assert_ptr_null(kafka_redrive_header_name(RECORD_REDRIVE_FROM_OFFSET));
    ck_assert_ptr_null(kafka_redrive_header_name(RECORD_REDRIVE_COUNT));
    ck_assert_ptr_null(kafka_redrive_header_name(RECORD_REDRIVE_REASON));
}
END_TEST

/* Everything else travels as it is: user headers, the standard names,
 * retry provenance, the 0-9-1 and AMQP round-trip data. */
START_TEST(the_rest_is_kept)
{
    static const char *const kept[] = {
        "trace-id",     RECORD_HEADER_MESSAGE_ID,    RECORD_HEADER_CORRELATION_ID,
        "x-death",      RECORD_RETRY_ORIGINAL_TOPIC, "kbridge-amqp091-properties",
        "kbridge-dlqx", "kbridge-delivery-count-x",  "kafka-key"};
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        const char *got = kafka_redrive_header_name(kept[i]);
        ck_assert_msg(got == kept[i], "%s: %s", kept[i], got ? got : "dropped");
    }
}
END_TEST

static Suite *kafka_dlq_suite(void)
{
    Suite *s = suite_create("kafka_dlq");
    TCase *tc = tcase_create("redrive headers");
    tcase_add_test(tc, provenance_is_renamed);
    tcase_add_test(tc, counts_and_earlier_redrives_are_dropped);
    tcase_add_test(tc, the_rest_is_kept);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(kafka_dlq_suite)
