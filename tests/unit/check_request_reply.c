/* SPDX-License-Identifier: Apache-2.0 */
/* check_request_reply.c -- request-reply's decisions (daemon/request_reply.c,
 * architecture §7): the headers of a request, the reply topic of a token,
 * reserved topic names, and the temporary queues found by token. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "config.h"
#include "core.h"
#include "metrics.h"
#include "record.h"
#include "request_reply.h"
#include "unit_main.h"

static struct config *config;
static struct metrics *metrics;
static struct request_reply *rr;

static void setup(void)
{
    static const char yaml[] = "node_id: n1.local\nkafka:\n  topic_prefix: \"pre.\"\n";
    char err[512] = "";
    ck_assert_msg(config_load_string("t.yaml", yaml, strlen(yaml), &config, err, sizeof(err)) == 0,
                  "%s", err);
    metrics = metrics_new();
    ck_assert_ptr_nonnull(metrics);
    rr = request_reply_new(&config, metrics, err, sizeof(err));
    ck_assert_msg(rr != NULL, "%s", err);
}

static void teardown(void)
{
    request_reply_free(rr);
    metrics_free(metrics);
    config_free(config);
}

START_TEST(reply_topics_are_reserved_with_or_without_prefix)
{
    ck_assert(request_reply_topic_is_reserved(rr, "pre.kbridge.reply.n1_local"));
    ck_assert(request_reply_topic_is_reserved(rr, "kbridge.reply.other"));
    ck_assert(!request_reply_topic_is_reserved(rr, "pre.orders"));
    ck_assert(!request_reply_topic_is_reserved(rr, "pre.kbridge.replyx"));
}
END_TEST

START_TEST(a_token_names_its_nodes_reply_topic)
{
    char token[REPLY_TOKEN_MAX + 1], name[ADDRESS_NAME_MAX + 1];
    ck_assert_int_eq(reply_token_new("n2", token, sizeof(token)), 0);
    ck_assert_int_eq(request_reply_reply_topic(token, name, sizeof(name)), 0);
    ck_assert_str_eq(name, "kbridge.reply.n2");
    ck_assert_int_eq(request_reply_reply_topic("n2.not-hex", name, sizeof(name)), -1);
    ck_assert_int_eq(request_reply_reply_topic("", name, sizeof(name)), -1);
}
END_TEST

/* Publish one message with the given properties through request_reply_request. */
static bool request(const char *reply_to, const char *correlation_id, char *topic,
                    char *correlation)
{
    struct core_property props[2];
    size_t count = 0;
    if (reply_to)
        props[count++] = (struct core_property){RECORD_HEADER_REPLY_TO, reply_to, strlen(reply_to)};
    if (correlation_id)
        props[count++] = (struct core_property){RECORD_HEADER_CORRELATION_ID, correlation_id,
                                                strlen(correlation_id)};
    struct core_message message = {.body = "", .properties = props, .property_count = count};
    return request_reply_request(rr, &message, topic, ADDRESS_NAME_MAX + 1, correlation,
                                 REPLY_TOKEN_MAX + REPLY_REQUEST_ID_LEN + 2);
}

START_TEST(a_request_gets_native_headers)
{
    char token[REPLY_TOKEN_MAX + 1], reply_to[REPLY_TOKEN_MAX + 16];
    char topic[ADDRESS_NAME_MAX + 1], correlation[REPLY_TOKEN_MAX + REPLY_REQUEST_ID_LEN + 2];
    char again[sizeof(correlation)];
    ck_assert_int_eq(reply_token_new("n1.local", token, sizeof(token)), 0);
    snprintf(reply_to, sizeof(reply_to), "/reply-queue/%s", token);
    ck_assert(request(reply_to, "c-1", topic, correlation));
    ck_assert_str_eq(topic, "pre.kbridge.reply.n1_local");
    ck_assert_uint_eq(strlen(correlation), strlen(token) + 1 + REPLY_REQUEST_ID_LEN);
    ck_assert(strncmp(correlation, token, strlen(token)) == 0);
    ck_assert_int_eq(correlation[strlen(token)], ':');
    /* the same token and correlation-id make the same request id */
    ck_assert(request(reply_to, "c-1", topic, again));
    ck_assert_str_eq(correlation, again);
    ck_assert(request(reply_to, "c-2", topic, again));
    ck_assert_str_ne(correlation, again);
    /* not a reply address: not a request */
    ck_assert(!request("/queue/replies", "c-1", topic, correlation));
    ck_assert(!request(NULL, "c-1", topic, correlation));
    ck_assert(!request("/reply-queue/", NULL, topic, correlation));
    ck_assert(!request("/reply-queue/not-a-token", NULL, topic, correlation));
}
END_TEST

#define TEMP_QUEUES 2000

START_TEST(temporary_queues_are_found_by_token)
{
    static char tokens[TEMP_QUEUES][REPLY_TOKEN_MAX + 1];
    static struct request_reply_temp_queue temps[TEMP_QUEUES];
    for (int i = 0; i < TEMP_QUEUES; i++) {
        ck_assert_int_eq(reply_token_new("n1", tokens[i], sizeof(tokens[i])), 0);
        temps[i].token = tokens[i];
        ck_assert_int_eq(request_reply_temp_queue_add(rr, &temps[i]), 0);
    }
    ck_assert_uint_eq(request_reply_temp_queue_count(rr), TEMP_QUEUES);
    for (int i = 0; i < TEMP_QUEUES; i++)
        ck_assert_ptr_eq(request_reply_temp_queue(rr, tokens[i], strlen(tokens[i])), &temps[i]);
    /* a prefix of a token, or another token, finds nothing */
    ck_assert_ptr_null(request_reply_temp_queue(rr, tokens[0], strlen(tokens[0]) - 1));
    char other[REPLY_TOKEN_MAX + 1];
    ck_assert_int_eq(reply_token_new("n1", other, sizeof(other)), 0);
    ck_assert_ptr_null(request_reply_temp_queue(rr, other, strlen(other)));
    /* removing every other one keeps the rest findable */
    for (int i = 0; i < TEMP_QUEUES; i += 2)
        request_reply_temp_queue_remove(rr, &temps[i]);
    ck_assert_uint_eq(request_reply_temp_queue_count(rr), TEMP_QUEUES / 2);
    for (int i = 0; i < TEMP_QUEUES; i++)
        ck_assert_ptr_eq(request_reply_temp_queue(rr, tokens[i], strlen(tokens[i])),
                         i % 2 ? &temps[i] : NULL);
    for (int i = 1; i < TEMP_QUEUES; i += 2)
        request_reply_temp_queue_remove(rr, &temps[i]);
    ck_assert_uint_eq(request_reply_temp_queue_count(rr), 0);
}
END_TEST

/* Two temporary queues with the same token (cannot happen with random
 * tokens, but it is the map's collision chain): both are registered, the
 * first found, and removing either keeps the other. */
START_TEST(same_key_chain_survives_removal)
{
    struct request_reply_temp_queue a = {.token = "n1.0123456789abcdef0123456789abcdef"};
    struct request_reply_temp_queue b = {.token = a.token};
    struct request_reply_temp_queue c = {.token = a.token};
    const char *t = a.token;
    ck_assert_int_eq(request_reply_temp_queue_add(rr, &a), 0);
    ck_assert_int_eq(request_reply_temp_queue_add(rr, &b), 0);
    ck_assert_int_eq(request_reply_temp_queue_add(rr, &c), 0);
    ck_assert_ptr_eq(request_reply_temp_queue(rr, t, strlen(t)), &a);
    request_reply_temp_queue_remove(rr, &a); /* the head: the chain moves up */
    ck_assert_ptr_nonnull(request_reply_temp_queue(rr, t, strlen(t)));
    request_reply_temp_queue_remove(rr, &b);
    ck_assert_ptr_eq(request_reply_temp_queue(rr, t, strlen(t)), &c);
    request_reply_temp_queue_remove(rr, &c);
    ck_assert_ptr_null(request_reply_temp_queue(rr, t, strlen(t)));
    ck_assert_uint_eq(request_reply_temp_queue_count(rr), 0);
}
END_TEST

static Suite *request_reply_suite(void)
{
    Suite *suite = suite_create("request_reply");
    TCase *tcase = tcase_create("decisions");
    tcase_add_checked_fixture(tcase, setup, teardown);
    tcase_add_test(tcase, reply_topics_are_reserved_with_or_without_prefix);
    tcase_add_test(tcase, a_token_names_its_nodes_reply_topic);
    tcase_add_test(tcase, a_request_gets_native_headers);
    tcase_add_test(tcase, temporary_queues_are_found_by_token);
    tcase_add_test(tcase, same_key_chain_survives_removal);
    suite_add_tcase(suite, tcase);
    return suite;
}

CHECK_MAIN(request_reply_suite)
