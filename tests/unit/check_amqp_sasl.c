/* SPDX-License-Identifier: Apache-2.0 */
/* check_amqp_sasl.c -- kbridge's AMQP SASL server (adapters/amqp/amqp_sasl.c),
 * driven black-box: a proton client connection driver talks to a server
 * driver with amqp_sasl_install in memory, bytes copied between them. */
#include <check.h>
#include <proton/connection.h>
#include <proton/connection_driver.h>
#include <proton/event.h>
#include <proton/sasl.h>
#include <proton/transport.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp_sasl.h"
#include "unit_main.h"

struct pair {
    pn_connection_driver_t client;
    pn_connection_driver_t server;
    bool server_remote_open; /* the server saw the client's open */
    int checks;
    char last_mechanism[32];
};

/* Accepts alice/secret and anonymous (when asked). */
static int test_check(void *opaque, const char *mechanism, const char *login, const char *password,
                      char *user, size_t user_size, char *reason, size_t reason_size)
{
    struct pair *pair = opaque;
    pair->checks++;
    snprintf(pair->last_mechanism, sizeof(pair->last_mechanism), "%s", mechanism);
    if (!login) {
        snprintf(user, user_size, "anonymous");
        return 0;
    }
    if (strcmp(login, "alice") == 0 && strcmp(password, "secret") == 0) {
        snprintf(user, user_size, "alice");
        return 0;
    }
    snprintf(reason, reason_size, "bad login or passcode");
    return -1;
}

/* Client: SASL with `mechanisms` (NULL: no SASL layer at all). */
static void pair_init_as(struct pair *pair, bool allow_anonymous, const char *mechanisms,
                         const char *user, const char *password, const char *authzid)
{
    memset(pair, 0, sizeof(*pair));
    ck_assert_int_eq(pn_connection_driver_init(&pair->client, NULL, NULL), 0);
    ck_assert_int_eq(pn_connection_driver_init(&pair->server, NULL, NULL), 0);
    if (mechanisms) {
        pn_sasl_t *sasl = pn_sasl(pair->client.transport);
        pn_sasl_allowed_mechs(sasl, mechanisms);
        pn_sasl_set_allow_insecure_mechs(sasl, true);
    }
    if (user)
        pn_connection_set_user(pair->client.connection, user);
    if (password)
        pn_connection_set_password(pair->client.connection, password);
    if (authzid)
        pn_connection_set_authorization(pair->client.connection, authzid);
    pn_connection_set_container(pair->client.connection, "test-client");
    pn_transport_set_server(pair->server.transport);
    char err[128];
    ck_assert_int_eq(amqp_sasl_install(pair->server.transport, allow_anonymous, NULL, test_check,
                                       pair, err, sizeof(err)),
                     0);
    pn_connection_driver_bind(&pair->client);
    pn_connection_driver_bind(&pair->server);
    pn_connection_open(pair->client.connection);
}

static void pair_init(struct pair *pair, bool allow_anonymous, const char *mechanisms,
                      const char *user, const char *password)
{
    pair_init_as(pair, allow_anonymous, mechanisms, user, password, NULL);
}

static bool copy_bytes(pn_connection_driver_t *from, pn_connection_driver_t *to)
{
    pn_bytes_t out = pn_connection_driver_write_buffer(from);
    if (out.size == 0) {
        if (pn_connection_driver_write_closed(from) && !pn_connection_driver_read_closed(to)) {
            pn_connection_driver_read_close(to);
            return true;
        }
        return false;
    }
    pn_rwbytes_t in = pn_connection_driver_read_buffer(to);
    size_t n = out.size < in.size ? out.size : in.size;
    if (n == 0) {
        pn_connection_driver_write_done(from, out.size); /* peer closed: discard */
        return true;
    }
    memcpy(in.start, out.start, n);
    pn_connection_driver_read_done(to, n);
    pn_connection_driver_write_done(from, n);
    return true;
}

/* Run both sides until nothing moves. */
static void pair_run(struct pair *pair)
{
    for (int rounds = 0; rounds < 200; rounds++) {
        bool progress = false;
        pn_event_t *event;
        while ((event = pn_connection_driver_next_event(&pair->client)))
            progress = true;
        while ((event = pn_connection_driver_next_event(&pair->server))) {
            progress = true;
            if (pn_event_type(event) == PN_CONNECTION_REMOTE_OPEN) {
                pair->server_remote_open = true;
                pn_connection_open(pair->server.connection);
            }
        }
        progress |= copy_bytes(&pair->client, &pair->server);
        progress |= copy_bytes(&pair->server, &pair->client);
        if (!progress)
            return;
    }
}

static void pair_free(struct pair *pair)
{
    pn_connection_driver_destroy(&pair->client);
    pn_connection_driver_destroy(&pair->server);
}

START_TEST(plain_with_the_right_password_authenticates)
{
    struct pair pair;
    pair_init(&pair, false, "PLAIN", "alice", "secret");
    pair_run(&pair);
    ck_assert(pair.server_remote_open);
    ck_assert_int_eq(pair.checks, 1);
    ck_assert_str_eq(pair.last_mechanism, "PLAIN");
    ck_assert_str_eq(pn_sasl_get_user(pn_sasl(pair.server.transport)), "alice");
    ck_assert_str_eq(pn_transport_get_user(pair.server.transport), "alice");
    ck_assert_str_eq(pn_sasl_get_mech(pn_sasl(pair.server.transport)), "PLAIN");
    ck_assert_int_eq(pn_sasl_outcome(pn_sasl(pair.client.transport)), PN_SASL_OK);
    ck_assert_str_eq(amqp_sasl_failure(pair.server.transport), "");
    pair_free(&pair);
}
END_TEST

START_TEST(plain_with_a_wrong_password_is_refused)
{
    struct pair pair;
    pair_init(&pair, true, "PLAIN", "alice", "guess");
    pair_run(&pair);
    ck_assert(!pair.server_remote_open);
    ck_assert_int_eq(pn_sasl_outcome(pn_sasl(pair.client.transport)), PN_SASL_AUTH);
    ck_assert_str_eq(amqp_sasl_failure(pair.server.transport), "bad login or passcode");
    ck_assert(pn_connection_driver_write_closed(&pair.server));
    pair_free(&pair);
}
END_TEST

START_TEST(anonymous_only_when_allowed)
{
    struct pair pair;
    pair_init(&pair, true, "ANONYMOUS", NULL, NULL);
    pair_run(&pair);
    ck_assert(pair.server_remote_open);
    ck_assert_str_eq(pn_sasl_get_user(pn_sasl(pair.server.transport)), "anonymous");
    pair_free(&pair);

    pair_init(&pair, false, "ANONYMOUS", NULL, NULL);
    pair_run(&pair);
    ck_assert(!pair.server_remote_open);
    ck_assert_int_eq(pair.checks, 0);
    pair_free(&pair);
}
END_TEST

START_TEST(a_client_without_sasl_is_anonymous_only_when_allowed)
{
    struct pair pair;
    pair_init(&pair, false, NULL, NULL, NULL);
    pair_run(&pair);
    ck_assert(!pair.server_remote_open);
    pn_condition_t *condition = pn_transport_condition(pair.server.transport);
    ck_assert_str_eq(pn_condition_get_name(condition), "amqp:connection:policy-error");
    pair_free(&pair);

    pair_init(&pair, true, NULL, NULL, NULL);
    pair_run(&pair);
    ck_assert(pair.server_remote_open);
    ck_assert(!pn_transport_is_authenticated(pair.server.transport));
    pair_free(&pair);
}
END_TEST

START_TEST(offered_mechanisms_follow_the_anonymous_setting)
{
    /* A client that only speaks a mechanism we do not offer gets nowhere. */
    struct pair pair;
    pair_init(&pair, false, "ANONYMOUS EXTERNAL", NULL, NULL);
    pair_run(&pair);
    ck_assert(!pair.server_remote_open);
    ck_assert_int_eq(pair.checks, 0);
    pair_free(&pair);
    /* PLAIN is preferred over ANONYMOUS by proton's client when both are offered. */
    pair_init(&pair, true, "PLAIN ANONYMOUS", "alice", "secret");
    pair_run(&pair);
    ck_assert(pair.server_remote_open);
    ck_assert_str_eq(pair.last_mechanism, "PLAIN");
    pair_free(&pair);
}
END_TEST

START_TEST(impersonation_by_authzid_is_refused)
{
    struct pair pair;
    pair_init_as(&pair, false, "PLAIN", "alice", "secret", "bob");
    pair_run(&pair);
    ck_assert(!pair.server_remote_open);
    ck_assert_int_eq(pair.checks, 0);
    ck_assert_ptr_nonnull(strstr(amqp_sasl_failure(pair.server.transport), "another"));
    pair_free(&pair);

    pair_init_as(&pair, false, "PLAIN", "alice", "secret", "alice");
    pair_run(&pair);
    ck_assert(pair.server_remote_open);
    pair_free(&pair);
}
END_TEST

static Suite *amqp_sasl_suite(void)
{
    Suite *suite = suite_create("amqp_sasl");
    TCase *tcase = tcase_create("server");
    tcase_add_test(tcase, plain_with_the_right_password_authenticates);
    tcase_add_test(tcase, plain_with_a_wrong_password_is_refused);
    tcase_add_test(tcase, anonymous_only_when_allowed);
    tcase_add_test(tcase, a_client_without_sasl_is_anonymous_only_when_allowed);
    tcase_add_test(tcase, offered_mechanisms_follow_the_anonymous_setting);
    tcase_add_test(tcase, impersonation_by_authzid_is_refused);
    suite_add_tcase(suite, tcase);
    return suite;
}

CHECK_MAIN(amqp_sasl_suite)
