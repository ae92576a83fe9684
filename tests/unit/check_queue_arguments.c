/* SPDX-License-Identifier: Apache-2.0 */
/* check_queue_arguments.c -- a queue's RabbitMQ arguments
 * (daemon/queue_arguments.c): parsed into the struct the queue engine reads,
 * refused by name when kbridge does not honour them or when of the wrong
 * type; the delivery limit and TTL rules; the x-death rendering. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "queue_arguments.h"
#include "unit_main.h"

static json_t *json(const char *text)
{
    json_t *value = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(value);
    return value;
}

START_TEST(no_arguments_are_the_defaults)
{
    struct queue_arguments parsed;
    char err[256];
    ck_assert_int_eq(queue_arguments_parse(NULL, &parsed, err, sizeof(err)), 0);
    ck_assert_int_eq(parsed.message_ttl_ms, -1);
    ck_assert_int_eq(parsed.delivery_limit, -1);
    ck_assert_int_eq(parsed.expires_ms, -1);
    ck_assert_int_eq(parsed.max_length, -1);
    ck_assert_int_eq(parsed.max_length_bytes, -1);
    ck_assert(!parsed.has_dead_letter_exchange);
    ck_assert(!parsed.has_dead_letter_routing_key);
    ck_assert(!parsed.single_active_consumer);
    ck_assert_int_eq(parsed.type, QUEUE_TYPE_CLASSIC);
    ck_assert_uint_eq(queue_arguments_max_deliveries(&parsed, 5), 5);
    ck_assert(!queue_arguments_expired(&parsed, 0, 1000000));
}
END_TEST

START_TEST(honoured_arguments_are_parsed)
{
    json_t *arguments = json("{\"x-message-ttl\": 1500, \"x-dead-letter-exchange\": \"\", "
                             "\"x-dead-letter-routing-key\": \"dead\", \"x-delivery-limit\": 2, "
                             "\"x-queue-type\": \"quorum\", \"x-queue-mode\": \"lazy\", "
                             "\"x-single-active-consumer\": true, \"x-expires\": 60000, "
                             "\"x-max-length\": 10, \"x-max-length-bytes\": 4096, "
                             "\"x-overflow\": \"drop-head\"}");
    struct queue_arguments parsed;
    char err[256];
    ck_assert_msg(queue_arguments_parse(arguments, &parsed, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(parsed.message_ttl_ms, 1500);
    ck_assert(parsed.has_dead_letter_exchange);
    ck_assert_str_eq(parsed.dead_letter_exchange, ""); /* the default exchange */
    ck_assert(parsed.has_dead_letter_routing_key);
    ck_assert_str_eq(parsed.dead_letter_routing_key, "dead");
    ck_assert_int_eq(parsed.delivery_limit, 2);
    ck_assert_int_eq(parsed.type, QUEUE_TYPE_QUORUM);
    ck_assert(parsed.lazy);
    ck_assert(parsed.single_active_consumer);
    ck_assert_int_eq(parsed.expires_ms, 60000);
    ck_assert_int_eq(parsed.max_length, 10);
    ck_assert_int_eq(parsed.max_length_bytes, 4096);
    ck_assert(!parsed.reject_publish); /* drop-head */
    /* x-delivery-limit 2: two returns allowed, three deliveries in all */
    ck_assert_uint_eq(queue_arguments_max_deliveries(&parsed, 5), 3);
    ck_assert(!queue_arguments_expired(&parsed, 10000, 11499));
    ck_assert(queue_arguments_expired(&parsed, 10000, 11500));
    ck_assert(!queue_arguments_expired(&parsed, -1, 99999));    /* no timestamp */
    ck_assert(!queue_arguments_expired(&parsed, 20000, 11500)); /* from the future */
    json_decref(arguments);
}
END_TEST

START_TEST(a_stream_queue_is_parsed)
{
    json_t *arguments = json("{\"x-queue-type\": \"stream\"}");
    struct queue_arguments parsed;
    char err[256];
    ck_assert_msg(queue_arguments_parse(arguments, &parsed, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(parsed.type, QUEUE_TYPE_STREAM);
    json_decref(arguments);
}
END_TEST

START_TEST(a_zero_delivery_limit_dead_letters_the_first_return)
{
    json_t *arguments = json("{\"x-delivery-limit\": 0}");
    struct queue_arguments parsed;
    char err[256];
    ck_assert_int_eq(queue_arguments_parse(arguments, &parsed, err, sizeof(err)), 0);
    ck_assert_uint_eq(queue_arguments_max_deliveries(&parsed, 5), 1);
    json_decref(arguments);
}
END_TEST

START_TEST(other_arguments_are_refused_by_name)
{
    static const struct {
        const char *arguments, *message;
    } bad[] = {
        {"{\"x-max-priority\": 10}",
         "invalid arg 'x-max-priority': kbridge does not support this queue argument"},
        {"{\"x-queue-type\": \"stream\", \"x-message-ttl\": 1000}",
         "invalid arg 'x-message-ttl' for a stream queue: a stream keeps every message (Kafka's "
         "retention decides; set it on the topic)"},
        {"{\"x-queue-type\": \"stream\", \"x-dead-letter-exchange\": \"dlx\"}",
         "invalid arg 'x-dead-letter-exchange' for a stream queue: a stream keeps every message "
         "(Kafka's retention decides; set it on the topic)"},
        {"{\"x-queue-type\": \"mirrored\"}",
         "invalid arg 'x-queue-type': 'mirrored', must be classic|quorum|stream"},
        {"{\"x-message-ttl\": -1}",
         "invalid arg 'x-message-ttl': -1, must be a non-negative integer"},
        {"{\"x-delivery-limit\": 1.5}",
         "invalid arg 'x-delivery-limit': 1.5, must be a non-negative integer"},
        {"{\"x-dead-letter-exchange\": 7}",
         "invalid arg 'x-dead-letter-exchange': 7, must be a string of at most 255 bytes"},
        {"{\"x-dead-letter-routing-key\": \"k\"}",
         "invalid arg 'x-dead-letter-routing-key': it requires x-dead-letter-exchange"},
        {"{\"x-queue-mode\": \"eager\"}",
         "invalid arg 'x-queue-mode': 'eager', must be default|lazy"},
        {"{\"x-expires\": 0}", "invalid arg 'x-expires': 0, must be a positive integer"},
        {"{\"x-overflow\": \"drop-tail\"}",
         "invalid arg 'x-overflow': 'drop-tail', must be drop-head|reject-publish"},
        {"{\"x-max-length-bytes\": \"1k\"}",
         "invalid arg 'x-max-length-bytes': '1k', must be a non-negative integer"},
        {"{\"x-queue-type\": \"stream\", \"x-max-length-bytes\": 1024}",
         "invalid arg 'x-max-length-bytes' for a stream queue: a stream keeps every message "
         "(Kafka's retention decides; set it on the topic)"},
        {"[1]", "queue arguments must be a table"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *arguments = json(bad[i].arguments);
        struct queue_arguments parsed;
        char err[256] = "";
        ck_assert_int_eq(queue_arguments_parse(arguments, &parsed, err, sizeof(err)), -1);
        ck_assert_str_eq(err, bad[i].message);
        json_decref(arguments);
    }
}
END_TEST

START_TEST(x_death_counts_per_queue_and_reason)
{
    char *first = queue_arguments_x_death(NULL, 0, QUEUE_DEATH_REJECTED, "work", "jobs", "k", 100);
    ck_assert_ptr_nonnull(first);
    ck_assert_str_eq(first, "[{\"count\":1,\"reason\":\"rejected\",\"queue\":\"work\","
                            "\"exchange\":\"jobs\",\"routing-keys\":[\"k\"],\"time\":100}]");
    char *again = queue_arguments_x_death(first, strlen(first), QUEUE_DEATH_REJECTED, "work",
                                          "jobs", "k", 200);
    ck_assert_ptr_nonnull(again);
    ck_assert_str_eq(again, "[{\"count\":2,\"reason\":\"rejected\",\"queue\":\"work\","
                            "\"exchange\":\"jobs\",\"routing-keys\":[\"k\"],\"time\":200}]");
    char *other = queue_arguments_x_death(again, strlen(again), QUEUE_DEATH_EXPIRED, "retry", "dlx",
                                          "k", 300);
    ck_assert_ptr_nonnull(other);
    ck_assert_str_eq(other, "[{\"count\":1,\"reason\":\"expired\",\"queue\":\"retry\","
                            "\"exchange\":\"dlx\",\"routing-keys\":[\"k\"],\"time\":300},"
                            "{\"count\":2,\"reason\":\"rejected\",\"queue\":\"work\","
                            "\"exchange\":\"jobs\",\"routing-keys\":[\"k\"],\"time\":200}]");
    char *garbage =
        queue_arguments_x_death("not json", 8, QUEUE_DEATH_DELIVERY_LIMIT, "q", "", "q", 5);
    ck_assert_ptr_nonnull(garbage);
    ck_assert_str_eq(garbage, "[{\"count\":1,\"reason\":\"delivery_limit\",\"queue\":\"q\","
                              "\"exchange\":\"\",\"routing-keys\":[\"q\"],\"time\":5}]");
    free(first);
    free(again);
    free(other);
    free(garbage);
}
END_TEST

START_TEST(reject_publish_is_parsed)
{
    json_t *arguments = json("{\"x-max-length\": 5, \"x-overflow\": \"reject-publish\"}");
    struct queue_arguments parsed;
    char err[256];
    ck_assert_msg(queue_arguments_parse(arguments, &parsed, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(parsed.max_length, 5);
    ck_assert(parsed.reject_publish);
    json_decref(arguments);
}
END_TEST

static Suite *queue_arguments_suite(void)
{
    Suite *s = suite_create("queue_arguments");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, no_arguments_are_the_defaults);
    tcase_add_test(tc, reject_publish_is_parsed);
    tcase_add_test(tc, honoured_arguments_are_parsed);
    tcase_add_test(tc, a_zero_delivery_limit_dead_letters_the_first_return);
    tcase_add_test(tc, a_stream_queue_is_parsed);
    tcase_add_test(tc, other_arguments_are_refused_by_name);
    tcase_add_test(tc, x_death_counts_per_queue_and_reason);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(queue_arguments_suite)
