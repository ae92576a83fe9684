/* SPDX-License-Identifier: Apache-2.0 */
/* check_queue_bindings.c -- what a bound queue's group reads and keeps
 * (daemon/queue_bindings.c): the exchanges and amq.topic keys upstream of a
 * queue (exchange-to-exchange bindings followed backwards, cycles ended),
 * the subscription list (own topic first, exchange topics with the prefix,
 * amq.topic keys as literal topics or wildcard regexes, illegal names left
 * out), equality for resubscribing, and the per-record filter for direct,
 * topic, fanout and headers exchanges and amq.topic, and direct exchanges
 * with a Kafka topic per routing key (x-kbridge-topic-per-key). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "definitions.h"
#include "queue_bindings.h"
#include "unit_main.h"

static struct definitions *model;

static void setup(void)
{
    model = definitions_new();
    ck_assert_ptr_nonnull(model);
    ck_assert_int_eq(definitions_vhost_add(model, "/"), 0);
}

static void teardown(void) { definitions_free(model); }

static void exchange(const char *name, enum exchange_type type)
{
    struct exchange_spec spec = {.vhost = "/", .name = name, .type = type, .durable = true};
    ck_assert_int_eq(definitions_apply_exchange(model, &spec), 0);
}

static void queue(const char *name)
{
    struct queue_spec spec = {.vhost = "/", .name = name, .durable = true};
    ck_assert_int_eq(definitions_apply_queue(model, &spec), 0);
}

static void bind(const char *source, enum binding_destination kind, const char *destination,
                 const char *key, const char *arguments)
{
    json_error_t error;
    json_t *args = arguments ? json_loads(arguments, 0, &error) : NULL;
    struct binding_spec spec = {.vhost = "/",
                                .source = source,
                                .destination_kind = kind,
                                .destination = destination,
                                .routing_key = key,
                                .arguments = args};
    ck_assert_int_eq(definitions_apply_binding(model, &spec), 0);
    json_decref(args);
}

static bool match(const struct queue_bindings *bindings, const char *queue_name, const char *topic,
                  const char *key)
{
    return queue_bindings_match(bindings, model, "/", queue_name, "p.", topic, key, NULL, 0);
}

START_TEST(a_queue_without_bindings_reads_only_its_topic)
{
    queue("q");
    struct queue_bindings b;
    ck_assert_int_eq(queue_bindings_compute(model, "/", "q", &b), 0);
    ck_assert(queue_bindings_empty(&b));
    char **topics;
    size_t count;
    ck_assert_int_eq(queue_bindings_topics(&b, "p.", "p.q", &topics, &count), 0);
    ck_assert_uint_eq(count, 1);
    ck_assert_str_eq(topics[0], "p.q");
    queue_bindings_free_topics(topics, count);
    queue_bindings_clear(&b);
    /* an unknown queue too */
    ck_assert_int_eq(queue_bindings_compute(model, "/", "nobody", &b), 0);
    ck_assert(queue_bindings_empty(&b));
}
END_TEST

START_TEST(topics_follow_exchange_to_exchange_bindings_backwards)
{
    exchange("orders", EXCHANGE_DIRECT);
    exchange("audit", EXCHANGE_FANOUT);
    exchange("loop", EXCHANGE_FANOUT);
    queue("q");
    bind("audit", BINDING_TO_QUEUE, "q", "", NULL);
    bind("orders", BINDING_TO_EXCHANGE, "audit", "eu", NULL);
    bind("loop", BINDING_TO_EXCHANGE, "audit", "", NULL);
    bind("audit", BINDING_TO_EXCHANGE, "loop", "", NULL); /* a cycle */
    bind("amq.topic", BINDING_TO_QUEUE, "q", "prices.*", NULL);
    bind("amq.topic", BINDING_TO_EXCHANGE, "orders", "news", NULL);
    bind("amq.topic", BINDING_TO_EXCHANGE, "orders", "bad name!", NULL);
    struct queue_bindings b;
    ck_assert_int_eq(queue_bindings_compute(model, "/", "q", &b), 0);
    ck_assert_uint_eq(b.exchange_count, 3);
    ck_assert_str_eq(b.exchanges[0], "audit");
    ck_assert_str_eq(b.exchanges[1], "loop");
    ck_assert_str_eq(b.exchanges[2], "orders");
    ck_assert_uint_eq(b.pattern_count, 3);
    char **topics;
    size_t count;
    ck_assert_int_eq(queue_bindings_topics(&b, "p.", "p.q", &topics, &count), 0);
    /* own, 3 exchanges, "news" and the regex of prices.*; "bad name!" is no topic */
    ck_assert_uint_eq(count, 6);
    ck_assert_str_eq(topics[0], "p.q");
    ck_assert_str_eq(topics[1], "p.audit");
    ck_assert_str_eq(topics[2], "p.loop");
    ck_assert_str_eq(topics[3], "p.orders");
    ck_assert_str_eq(topics[4], "p.news");
    ck_assert_msg(topics[5][0] == '^', "prices.* is a regex: %s", topics[5]);
    queue_bindings_free_topics(topics, count);

    struct queue_bindings same;
    ck_assert_int_eq(queue_bindings_compute(model, "/", "q", &same), 0);
    ck_assert(queue_bindings_equal(&b, &same));
    queue_bindings_clear(&same);
    definitions_remove_exchange(model, "/", "loop");
    ck_assert_int_eq(queue_bindings_compute(model, "/", "q", &same), 0);
    ck_assert(!queue_bindings_equal(&b, &same));
    ck_assert_uint_eq(same.exchange_count, 2);
    queue_bindings_clear(&same);
    queue_bindings_clear(&b);
    ck_assert(queue_bindings_empty(&b));
}
END_TEST

START_TEST(records_are_kept_only_when_a_binding_matches)
{
    exchange("direct", EXCHANGE_DIRECT);
    exchange("topics", EXCHANGE_TOPIC);
    exchange("all", EXCHANGE_FANOUT);
    queue("q");
    queue("other");
    bind("direct", BINDING_TO_QUEUE, "q", "k1", NULL);
    bind("direct", BINDING_TO_QUEUE, "other", "k2", NULL);
    bind("topics", BINDING_TO_QUEUE, "q", "a.#", NULL);
    bind("all", BINDING_TO_QUEUE, "other", "", NULL);
    bind("amq.topic", BINDING_TO_QUEUE, "q", "prices.*", NULL);
    struct queue_bindings b;
    ck_assert_int_eq(queue_bindings_compute(model, "/", "q", &b), 0);
    ck_assert(match(&b, "q", "p.direct", "k1"));
    ck_assert(!match(&b, "q", "p.direct", "k2"));
    ck_assert(match(&b, "q", "p.topics", "a"));
    ck_assert(match(&b, "q", "p.topics", "a.b.c"));
    ck_assert(!match(&b, "q", "p.topics", "b.a"));
    ck_assert(!match(&b, "q", "p.all", "x"));     /* not bound to q */
    ck_assert(match(&b, "q", "p.prices.eu", "")); /* amq.topic: the topic is the key */
    ck_assert(!match(&b, "q", "p.prices.eu.x", ""));
    ck_assert(!match(&b, "q", "direct", "k1")); /* without the prefix: not ours */
    queue_bindings_clear(&b);
}
END_TEST

START_TEST(a_per_key_exchange_gives_each_binding_key_its_topic)
{
    json_error_t error;
    json_t *args = json_loads("{\"x-kbridge-topic-per-key\": true}", 0, &error);
    struct exchange_spec spec = {.vhost = "/",
                                 .name = "orders",
                                 .type = EXCHANGE_DIRECT,
                                 .durable = true,
                                 .arguments = args};
    ck_assert_int_eq(definitions_apply_exchange(model, &spec), 0);
    json_decref(args);
    ck_assert(definitions_exchange(model, "/", "orders")->topic_per_key);
    queue("eu");
    queue("us");
    bind("orders", BINDING_TO_QUEUE, "eu", "eu", NULL);
    bind("orders", BINDING_TO_QUEUE, "eu", "uk", NULL);
    bind("orders", BINDING_TO_QUEUE, "us", "us", NULL);
    bind("orders", BINDING_TO_QUEUE, "us", "bad key", NULL); /* no legal topic: left out */
    struct queue_bindings b;
    ck_assert_int_eq(queue_bindings_compute(model, "/", "eu", &b), 0);
    ck_assert(!queue_bindings_empty(&b));
    ck_assert_uint_eq(b.exchange_count, 0); /* the exchange's own topic is not read */
    char **topics;
    size_t count;
    ck_assert_int_eq(queue_bindings_topics(&b, "p.", "p.eu", &topics, &count), 0);
    ck_assert_uint_eq(count, 3);
    ck_assert_str_eq(topics[0], "p.eu");
    ck_assert_str_eq(topics[1], "p.orders.eu");
    ck_assert_str_eq(topics[2], "p.orders.uk");
    queue_bindings_free_topics(topics, count);
    /* every record of a key topic it reads matches; nothing else does */
    ck_assert(match(&b, "eu", "p.orders.eu", "eu"));
    ck_assert(match(&b, "eu", "p.orders.uk", "uk"));
    ck_assert(!match(&b, "eu", "p.orders.us", "us"));
    ck_assert(!match(&b, "eu", "p.orders", "eu"));
    struct queue_bindings us;
    ck_assert_int_eq(queue_bindings_compute(model, "/", "us", &us), 0);
    ck_assert(!queue_bindings_equal(&b, &us));
    ck_assert_int_eq(queue_bindings_topics(&us, "p.", "p.us", &topics, &count), 0);
    ck_assert_uint_eq(count, 2);
    ck_assert_str_eq(topics[1], "p.orders.us");
    queue_bindings_free_topics(topics, count);
    queue_bindings_clear(&us);
    queue_bindings_clear(&b);
}
END_TEST

START_TEST(headers_bindings_match_record_headers)
{
    exchange("h", EXCHANGE_HEADERS);
    queue("all");
    queue("any");
    bind("h", BINDING_TO_QUEUE, "all", "", "{\"x-match\": \"all\", \"a\": \"1\", \"b\": \"2\"}");
    bind("h", BINDING_TO_QUEUE, "any", "", "{\"x-match\": \"any\", \"a\": \"1\", \"b\": \"2\"}");
    struct queue_bindings all, any;
    ck_assert_int_eq(queue_bindings_compute(model, "/", "all", &all), 0);
    ck_assert_int_eq(queue_bindings_compute(model, "/", "any", &any), 0);
    struct binding_header both[] = {{"a", "1", 1}, {"b", "2", 1}};
    struct binding_header one[] = {{"a", "1", 1}, {"b", "3", 1}};
    ck_assert(queue_bindings_match(&all, model, "/", "all", "", "h", "", both, 2));
    ck_assert(!queue_bindings_match(&all, model, "/", "all", "", "h", "", one, 2));
    ck_assert(queue_bindings_match(&any, model, "/", "any", "", "h", "", one, 2));
    ck_assert(!queue_bindings_match(&any, model, "/", "any", "", "h", "", NULL, 0));
    queue_bindings_clear(&all);
    queue_bindings_clear(&any);
}
END_TEST

static Suite *queue_bindings_suite(void)
{
    Suite *s = suite_create("queue_bindings");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, a_queue_without_bindings_reads_only_its_topic);
    tcase_add_test(tc, topics_follow_exchange_to_exchange_bindings_backwards);
    tcase_add_test(tc, records_are_kept_only_when_a_binding_matches);
    tcase_add_test(tc, headers_bindings_match_record_headers);
    tcase_add_test(tc, a_per_key_exchange_gives_each_binding_key_its_topic);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(queue_bindings_suite)
