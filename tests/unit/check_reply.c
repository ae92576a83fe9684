/* SPDX-License-Identifier: Apache-2.0 */
/* check_reply.c -- request-reply tokens and reply topic names (daemon/reply.c). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "amqp_address.h"
#include "reply.h"
#include "unit_main.h"

START_TEST(node_word_replaces_illegal_characters)
{
    char word[REPLY_NODE_MAX + 1];
    ck_assert_int_eq(reply_node_word("web-1.example.com", word, sizeof(word)), 0);
    ck_assert_str_eq(word, "web-1_example_com");
    ck_assert_int_eq(reply_node_word("", word, sizeof(word)), 0);
    ck_assert_str_eq(word, "node");
    ck_assert_int_eq(reply_node_word(NULL, word, sizeof(word)), 0);
    ck_assert_str_eq(word, "node");
    char small[4];
    ck_assert_int_eq(reply_node_word("abcd", small, sizeof(small)), -1);
}
END_TEST

START_TEST(topic_name_is_per_node)
{
    char topic[ADDRESS_NAME_MAX + 1];
    ck_assert_int_eq(reply_topic_name("node a", topic, sizeof(topic)), 0);
    ck_assert_str_eq(topic, "kbridge.reply.node_a");
}
END_TEST

START_TEST(tokens_are_random_legal_names_that_name_their_node)
{
    char a[REPLY_TOKEN_MAX + 1], b[REPLY_TOKEN_MAX + 1], node[REPLY_NODE_MAX + 1];
    ck_assert_int_eq(reply_token_new("n1.local", a, sizeof(a)), 0);
    ck_assert_int_eq(reply_token_new("n1.local", b, sizeof(b)), 0);
    ck_assert_str_ne(a, b);
    ck_assert_uint_eq(strlen(a), strlen("n1_local.") + REPLY_RANDOM_HEX);
    ck_assert_int_eq(reply_token_node(a, node, sizeof(node)), 0);
    ck_assert_str_eq(node, "n1_local");
    /* A reply address made of it parses as a reply queue. */
    char address[300];
    snprintf(address, sizeof(address), "/reply-queue/%s", a);
    struct destination destination;
    char err[256];
    ck_assert_int_eq(address_parse(&amqp_addresses, address, &destination, err, sizeof(err)), 0);
    ck_assert_int_eq(destination.kind, DESTINATION_REPLY_QUEUE);
    ck_assert_str_eq(destination.name, a);
    char tiny[8];
    ck_assert_int_eq(reply_token_new("n1", tiny, sizeof(tiny)), -1);
}
END_TEST

START_TEST(malformed_tokens_are_refused)
{
    char node[REPLY_NODE_MAX + 1];
    const char *bad[] = {
        "",
        "nodot0123456789abcdef0123456789abcdef",
        "n.0123456789abcdef0123456789abcde",    /* 31 digits */
        "n.0123456789abcdef0123456789abcdeF",   /* upper case */
        "n.0123456789abcdef0123456789abcdeg",   /* not hex */
        ".0123456789abcdef0123456789abcdef",    /* empty node */
        "a.b.0123456789abcdef0123456789abcdef", /* dot in the node word */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(reply_token_node(bad[i], node, sizeof(node)) == -1, "accepted '%s'", bad[i]);
    ck_assert_int_eq(reply_token_node("n-1.0123456789abcdef0123456789abcdef", node, sizeof(node)),
                     0);
    ck_assert_str_eq(node, "n-1");
}
END_TEST

static void request_id(char out[REPLY_REQUEST_ID_LEN + 1], unsigned n)
{
    snprintf(out, REPLY_REQUEST_ID_LEN + 1, "%032x", n);
}

START_TEST(requests_are_remembered_with_their_correlation_id)
{
    struct reply_requests *requests = reply_requests_new(10, 1000);
    ck_assert_ptr_nonnull(requests);
    char id[REPLY_REQUEST_ID_LEN + 1];
    request_id(id, 1);
    ck_assert_int_eq(reply_requests_put(requests, id, "corr-1", 6, 5000), 0);
    request_id(id, 2);
    ck_assert_int_eq(reply_requests_put(requests, id, "", 0, 5001), 0);
    size_t len = 99;
    uint64_t sent = 0;
    request_id(id, 1);
    const char *correlation = reply_requests_find(requests, id, 5500, &len, &sent);
    ck_assert_ptr_nonnull(correlation);
    ck_assert_uint_eq(len, 6);
    ck_assert_int_eq(memcmp(correlation, "corr-1", 6), 0);
    ck_assert_uint_eq(sent, 5000);
    request_id(id, 2);
    ck_assert_ptr_nonnull(reply_requests_find(requests, id, 5500, &len, NULL));
    ck_assert_uint_eq(len, 0);
    request_id(id, 3);
    ck_assert_ptr_null(reply_requests_find(requests, id, 5500, &len, NULL));
    ck_assert_ptr_null(reply_requests_find(requests, "short", 5500, &len, NULL));
    reply_requests_free(requests);
}
END_TEST

START_TEST(requests_expire_and_the_oldest_go_first_when_full)
{
    struct reply_requests *requests = reply_requests_new(3, 1000);
    char id[REPLY_REQUEST_ID_LEN + 1];
    size_t len;
    for (unsigned n = 1; n <= 4; n++) {
        request_id(id, n);
        ck_assert_int_eq(reply_requests_put(requests, id, "c", 1, 100 * n), 0);
    }
    ck_assert_uint_eq(reply_requests_count(requests), 3);
    request_id(id, 1);
    ck_assert_ptr_null(reply_requests_find(requests, id, 450, &len, NULL)); /* evicted */
    request_id(id, 4);
    ck_assert_ptr_nonnull(reply_requests_find(requests, id, 450, &len, NULL));
    /* at 1250, requests sent at 200 expired (ttl 1000); 300 and 400 live */
    request_id(id, 2);
    ck_assert_ptr_null(reply_requests_find(requests, id, 1250, &len, NULL));
    ck_assert_uint_eq(reply_requests_count(requests), 2);
    request_id(id, 3);
    ck_assert_ptr_nonnull(reply_requests_find(requests, id, 1250, &len, NULL));
    ck_assert_ptr_null(reply_requests_find(requests, id, 1300, &len, NULL));
    ck_assert_uint_eq(reply_requests_count(requests), 1);
    /* a reload that lowers the bound forgets the oldest at once */
    for (unsigned n = 10; n < 14; n++) {
        request_id(id, n);
        ck_assert_int_eq(reply_requests_put(requests, id, "c", 1, 2000 + n), 0);
    }
    reply_requests_configure(requests, 2, 1000);
    ck_assert_uint_eq(reply_requests_count(requests), 2);
    request_id(id, 13);
    ck_assert_ptr_nonnull(reply_requests_find(requests, id, 2100, &len, NULL));
    request_id(id, 11);
    ck_assert_ptr_null(reply_requests_find(requests, id, 2100, &len, NULL));
    reply_requests_free(requests);
    reply_requests_free(NULL);
}
END_TEST

static Suite *reply_suite(void)
{
    Suite *suite = suite_create("reply");
    TCase *tcase = tcase_create("names");
    tcase_add_test(tcase, node_word_replaces_illegal_characters);
    tcase_add_test(tcase, topic_name_is_per_node);
    tcase_add_test(tcase, tokens_are_random_legal_names_that_name_their_node);
    tcase_add_test(tcase, malformed_tokens_are_refused);
    tcase_add_test(tcase, requests_are_remembered_with_their_correlation_id);
    tcase_add_test(tcase, requests_expire_and_the_oldest_go_first_when_full);
    suite_add_tcase(suite, tcase);
    return suite;
}

CHECK_MAIN(reply_suite)
