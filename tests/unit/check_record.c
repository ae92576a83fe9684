/* SPDX-License-Identifier: Apache-2.0 */
/* check_record.c -- the record contract (daemon/record.c, architecture §3):
 * which headers reach clients, which clients may set, and `expires`. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "kafka.h"
#include "record.h"
#include "unit_main.h"

static bool delivered(const char *name, unsigned flags)
{
    return record_header_delivered(name, strlen(name), flags);
}

static bool from_client(const char *name) { return record_header_from_client(name, strlen(name)); }

/* Every kbridge-* name kbridge writes, its class, and what the contract says. */
static const struct {
    const char *name;
    enum record_header_class class;
    bool to_clients;   /* a STOMP client (or any reader that decodes nothing) */
    bool to_amqp_data; /* the AMQP adapter's converter */
    bool from_client;
} contract[] = {
    {RECORD_REPLY_TOKEN, RECORD_HEADER_ROUTING, false, false, false},
    {"kbridge-reply-anything", RECORD_HEADER_ROUTING, false, false, false},
    {RECORD_DELIVER_AT, RECORD_HEADER_ROUTING, false, false, false},
    {RECORD_DELIVER_TO, RECORD_HEADER_ROUTING, false, false, false},
    {RECORD_NATIVE_REPLY_TOPIC, RECORD_HEADER_NATIVE_RR, false, false, true},
    {RECORD_NATIVE_CORRELATION, RECORD_HEADER_NATIVE_RR, false, false, true},
    {RECORD_DLQ_REASON, RECORD_HEADER_PROVENANCE, true, true, true},
    {RECORD_DLQ_ORIGINAL_TOPIC, RECORD_HEADER_PROVENANCE, true, true, true},
    {RECORD_DLQ_ORIGINAL_PARTITION, RECORD_HEADER_PROVENANCE, true, true, true},
    {RECORD_DLQ_ORIGINAL_OFFSET, RECORD_HEADER_PROVENANCE, true, true, true},
    {RECORD_DLQ_TIME, RECORD_HEADER_PROVENANCE, true, true, true},
    {RECORD_RETRY_ORIGINAL_TOPIC, RECORD_HEADER_PROVENANCE, true, true, true},
    {RECORD_RETRY_ORIGINAL_OFFSET, RECORD_HEADER_PROVENANCE, true, true, true},
    {RECORD_REDRIVE_REASON, RECORD_HEADER_PROVENANCE, true, true, true},
    {RECORD_REDRIVE_FROM_OFFSET, RECORD_HEADER_PROVENANCE, true, true, true},
    {RECORD_DELIVERY_COUNT, RECORD_HEADER_PROVENANCE, true, true, true},
    /* the AMQP round-trip names of adapters/amqp/amqp_convert.c */
    {"kbridge-amqp-body", RECORD_HEADER_AMQP, false, true, true},
    {"kbridge-amqp-ttl", RECORD_HEADER_AMQP, false, true, true},
    {"kbridge-amqp-message-id-type", RECORD_HEADER_AMQP, false, true, true},
    {"kbridge-amqp-correlation-id-type", RECORD_HEADER_AMQP, false, true, true},
    {"kbridge-amqp-group-sequence", RECORD_HEADER_AMQP, false, true, true},
    {"kbridge-amqp-reply-to-group-id", RECORD_HEADER_AMQP, false, true, true},
    {"kbridge-amqp-application-properties", RECORD_HEADER_AMQP, false, true, true},
    {"kbridge-amqp-message-annotations", RECORD_HEADER_AMQP, false, true, true},
    /* the AMQP 0-9-1 round-trip names of adapters/amqp091/amqp091_convert.c:
     * the AMQP 1.0 converter does not get them either */
    {"kbridge-amqp091-headers", RECORD_HEADER_AMQP091, false, false, true},
    {"kbridge-amqp091-expiration", RECORD_HEADER_AMQP091, false, false, true},
    {"kbridge-amqp091", RECORD_HEADER_USER, true, true, true},
    {RECORD_HEADER_USER_ID, RECORD_HEADER_SET_BY_CORE, true, true, false},
    {RECORD_HEADER_MESSAGE_ID, RECORD_HEADER_USER, true, true, true},
    {RECORD_HEADER_CORRELATION_ID, RECORD_HEADER_USER, true, true, true},
    {RECORD_HEADER_REPLY_TO, RECORD_HEADER_USER, true, true, true},
    {RECORD_HEADER_EXPIRES, RECORD_HEADER_USER, true, true, true},
    {"content-type", RECORD_HEADER_USER, true, true, true},
    {"kafka-key", RECORD_HEADER_USER, true, true, true},
    {"x-custom", RECORD_HEADER_USER, true, true, true},
    /* kbridge- names the contract does not reserve travel as user headers */
    {"kbridge-something-else", RECORD_HEADER_USER, true, true, true},
    /* prefixes need the whole prefix */
    {"kbridge-amqp", RECORD_HEADER_USER, true, true, true},
    {"kbridge-reply", RECORD_HEADER_USER, true, true, true},
    {"kafka_replyTopicX", RECORD_HEADER_USER, true, true, true},
    {"", RECORD_HEADER_USER, true, true, true},
};

START_TEST(each_name_is_in_its_class)
{
    const char *name = contract[_i].name;
    ck_assert_msg(record_header_classify(name, strlen(name)) == contract[_i].class, "%s", name);
    ck_assert_msg(delivered(name, RECORD_DELIVER_CLIENT) == contract[_i].to_clients, "%s", name);
    ck_assert_msg(delivered(name, RECORD_DELIVER_AMQP_DATA) == contract[_i].to_amqp_data, "%s",
                  name);
    ck_assert_msg(from_client(name) == contract[_i].from_client, "%s", name);
    /* the 0-9-1 converter gets what a client gets, and its own data */
    ck_assert_msg(delivered(name, RECORD_DELIVER_AMQP091_DATA) ==
                      (contract[_i].to_clients || contract[_i].class == RECORD_HEADER_AMQP091),
                  "%s", name);
}
END_TEST

/* The request-reply routing headers are the ones no reader gets, whatever
 * it decodes (even a converter asking for RECORD_DELIVER_AMQP_DATA). */
START_TEST(routing_headers_reach_no_reader)
{
    const char *name = contract[_i].name;
    ck_assert_msg(!record_header_delivered(name, strlen(name), RECORD_DELIVER_AMQP_DATA) ==
                      !contract[_i].to_amqp_data,
                  "%s", name);
}
END_TEST

START_TEST(names_are_compared_by_length_not_nul)
{
    /* a name inside a longer buffer: only its first name_len bytes count */
    const char buffer[] = "kbridge-reply-token-and-more";
    ck_assert(record_header_classify(buffer, strlen("kbridge-reply-")) == RECORD_HEADER_ROUTING);
    ck_assert(record_header_classify(buffer, strlen("kbridge-rep")) == RECORD_HEADER_USER);
    const char user[] = "user-idX";
    ck_assert(record_header_classify(user, 7) == RECORD_HEADER_SET_BY_CORE);
    ck_assert(record_header_classify(user, 8) == RECORD_HEADER_USER);
}
END_TEST

START_TEST(expires_rule)
{
    const uint64_t now = 1700000000000ULL;
    ck_assert(record_expires_passed("1699999999999", 13, false, now));
    ck_assert(record_expires_passed("1700000000000", 13, false, now)); /* at now: passed */
    ck_assert(!record_expires_passed("1700000000001", 13, false, now));
    ck_assert(!record_expires_passed("0", 1, false, now));   /* never (JMS) */
    ck_assert(!record_expires_passed("12x", 3, false, now)); /* not a number */
    ck_assert(!record_expires_passed("", 0, false, now));
    ck_assert(!record_expires_passed(NULL, 0, false, now));
    ck_assert(!record_expires_passed("12345678901234567890", 20, false, now)); /* too long */
    ck_assert(!record_expires_passed("1", 1, true, now)); /* dead letters do not expire */
    ck_assert(record_expires_passed("1", 1, false, now));
}
END_TEST

/* record_header_find over the record's header index (kafka_record_index_headers):
 * the first of a repeated name, misses, names that differ only after a prefix,
 * a record without headers. */
START_TEST(header_find_uses_the_index_and_keeps_the_first)
{
    const struct kafka_header headers[] = {
        {"content-type", "text/plain", 10}, {"x", "1", 1}, {"x", "2", 1}, {"x-long", "3", 1},
        {RECORD_HEADER_EXPIRES, "0", 1},
    };
    struct kafka_record *record = kafka_record_local("t", NULL, 0, "v", 1, headers, 5);
    ck_assert_ptr_nonnull(record);
    ck_assert_uint_eq(kafka_record_header_count(record), 5);
    size_t len = 0;
    const char *value = record_header_find(record, "x", &len);
    ck_assert_ptr_nonnull(value);
    ck_assert_uint_eq(len, 1);
    ck_assert_int_eq(value[0], '1');
    value = record_header_find(record, "x-long", &len);
    ck_assert(value && len == 1 && value[0] == '3');
    ck_assert(kafka_record_may_have_header(record, RECORD_HEADER_EXPIRES));
    ck_assert(kafka_record_may_have_header(record, "content-type"));
    ck_assert_ptr_null(record_header_find(record, "x-lon", &len));
    ck_assert_ptr_null(record_header_find(record, "content-typ", &len));
    ck_assert_ptr_null(record_header_find(record, "", &len));
    ck_assert(!record_expired(record, 1700000000000ULL)); /* expires 0: never */
    kafka_record_free(record);

    record = kafka_record_local("t", NULL, 0, NULL, 0, NULL, 0);
    ck_assert_ptr_nonnull(record);
    ck_assert_uint_eq(kafka_record_header_count(record), 0);
    ck_assert(!kafka_record_may_have_header(record, "x"));
    ck_assert_ptr_null(record_header_find(record, "x", &len));
    kafka_record_free(record);
}
END_TEST

static Suite *record_suite(void)
{
    Suite *s = suite_create("record");
    TCase *tc = tcase_create("contract");
    int n = (int)(sizeof(contract) / sizeof(contract[0]));
    tcase_add_loop_test(tc, each_name_is_in_its_class, 0, n);
    tcase_add_loop_test(tc, routing_headers_reach_no_reader, 0, n);
    tcase_add_test(tc, names_are_compared_by_length_not_nul);
    tcase_add_test(tc, expires_rule);
    tcase_add_test(tc, header_find_uses_the_index_and_keeps_the_first);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(record_suite)
