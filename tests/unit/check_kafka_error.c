/* SPDX-License-Identifier: Apache-2.0 */
/* check_kafka_error.c -- kafka_error_classify (daemon/kafka_error.c): the
 * class of each Kafka error a produce or a lookup can end with, which the
 * core turns into the client's error (architecture "Kafka layer"). */
#include <check.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "unit_main.h"

struct row {
    rd_kafka_resp_err_t err;
    enum kafka_error_class expected;
};

static const struct row rows[] = {
    {RD_KAFKA_RESP_ERR_NO_ERROR, KAFKA_CLASS_OK},
    /* retriable: librdkafka retries these itself; a report with one is a
     * timeout, the client may send again */
    {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, KAFKA_CLASS_RETRIABLE},
    {RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, KAFKA_CLASS_RETRIABLE},
    {RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, KAFKA_CLASS_RETRIABLE},
    {RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, KAFKA_CLASS_RETRIABLE},
    {RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, KAFKA_CLASS_RETRIABLE},
    {RD_KAFKA_RESP_ERR__TRANSPORT, KAFKA_CLASS_RETRIABLE},
    {RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, KAFKA_CLASS_RETRIABLE},
    {RD_KAFKA_RESP_ERR__QUEUE_FULL, KAFKA_CLASS_RETRIABLE},
    {RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, KAFKA_CLASS_RETRIABLE},
    /* authorization */
    {RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, KAFKA_CLASS_AUTHORIZATION},
    {RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED, KAFKA_CLASS_AUTHORIZATION},
    {RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED, KAFKA_CLASS_AUTHORIZATION},
    {RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED, KAFKA_CLASS_AUTHORIZATION},
    {RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED, KAFKA_CLASS_AUTHORIZATION},
    {RD_KAFKA_RESP_ERR__AUTHENTICATION, KAFKA_CLASS_AUTHORIZATION},
    /* unknown topic or partition */
    {RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, KAFKA_CLASS_UNKNOWN_TOPIC},
    {RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, KAFKA_CLASS_UNKNOWN_TOPIC},
    {RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION, KAFKA_CLASS_UNKNOWN_TOPIC},
    /* too large */
    {RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, KAFKA_CLASS_TOO_LARGE},
    {RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE, KAFKA_CLASS_TOO_LARGE},
    /* the record itself is refused */
    {RD_KAFKA_RESP_ERR_INVALID_MSG, KAFKA_CLASS_INVALID},
    {RD_KAFKA_RESP_ERR_INVALID_RECORD, KAFKA_CLASS_INVALID},
    {RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION, KAFKA_CLASS_INVALID},
    {RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP, KAFKA_CLASS_INVALID},
    {RD_KAFKA_RESP_ERR_POLICY_VIOLATION, KAFKA_CLASS_INVALID},
    /* the producer cannot go on */
    {RD_KAFKA_RESP_ERR__FATAL, KAFKA_CLASS_FATAL},
    {RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, KAFKA_CLASS_FATAL},
    {RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH, KAFKA_CLASS_FATAL},
    {RD_KAFKA_RESP_ERR_PRODUCER_FENCED, KAFKA_CLASS_FATAL},
    {RD_KAFKA_RESP_ERR__FENCED, KAFKA_CLASS_FATAL},
    /* the rest */
    {RD_KAFKA_RESP_ERR_UNKNOWN, KAFKA_CLASS_OTHER},
    {RD_KAFKA_RESP_ERR__FAIL, KAFKA_CLASS_OTHER},
    {RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND, KAFKA_CLASS_OTHER},
};

START_TEST(each_error_has_its_class)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        enum kafka_error_class got = kafka_error_classify((int)rows[i].err);
        ck_assert_msg(got == rows[i].expected, "%s: class %s, expected %s",
                      rd_kafka_err2name(rows[i].err), kafka_error_class_name(got),
                      kafka_error_class_name(rows[i].expected));
    }
}
END_TEST

/* The codes kafka.h names for its callers keep their classes. */
START_TEST(the_codes_kafka_h_names_are_classified)
{
    ck_assert_int_eq(kafka_error_classify(KAFKA_OK), KAFKA_CLASS_OK);
    ck_assert_int_eq(kafka_error_classify(KAFKA_ERR_QUEUE_FULL), KAFKA_CLASS_RETRIABLE);
    ck_assert_int_eq(kafka_error_classify(KAFKA_ERR_MSG_SIZE_TOO_LARGE), KAFKA_CLASS_TOO_LARGE);
}
END_TEST

/* Every code librdkafka knows gets a class with a name; codes it does not
 * know are "other". */
START_TEST(every_code_has_a_named_class)
{
    const struct rd_kafka_err_desc *descs;
    size_t count;
    rd_kafka_get_err_descs(&descs, &count);
    for (size_t i = 0; i < count; i++) {
        if (!descs[i].name)
            continue;
        enum kafka_error_class got = kafka_error_classify(descs[i].code);
        ck_assert(got >= KAFKA_CLASS_OK && got <= KAFKA_CLASS_OTHER);
        ck_assert(strlen(kafka_error_class_name(got)) > 0);
        ck_assert(got != KAFKA_CLASS_OK || descs[i].code == RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    ck_assert_int_eq(kafka_error_classify(123456), KAFKA_CLASS_OTHER);
    ck_assert_str_eq(kafka_error_class_name(KAFKA_CLASS_AUTHORIZATION), "authorization");
}
END_TEST

static Suite *kafka_error_suite(void)
{
    Suite *suite = suite_create("kafka_error");
    TCase *tcase = tcase_create("classify");
    tcase_add_test(tcase, each_error_has_its_class);
    tcase_add_test(tcase, the_codes_kafka_h_names_are_classified);
    tcase_add_test(tcase, every_code_has_a_named_class);
    suite_add_tcase(suite, tcase);
    return suite;
}

CHECK_MAIN(kafka_error_suite)
