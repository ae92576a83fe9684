/* SPDX-License-Identifier: Apache-2.0 */
/* check_core_limits.c -- the limits across protocols (daemon/core_limits.c)
 * on a core with only what they use (config, metrics): connections in all
 * and per source host (IPv4 and IPv6 peers, ports ignored), sessions per
 * user, failed logins per host, each refusal naming its key and counted. */
#include <check.h>
#include <string.h>

#include "config.h"
#include "core.h"
#include "core_internal.h"
#include "metrics.h"
#include "unit_main.h"

static struct config *config;
static struct core core;

static void setup_with(const char *yaml)
{
    char err[512];
    ck_assert_msg(config_load_string("t.yaml", yaml, strlen(yaml), &config, err, sizeof(err)) == 0,
                  "%s", err);
    memset(&core, 0, sizeof(core));
    core.config = &config;
    core.metrics = metrics_new();
    ck_assert_ptr_nonnull(core.metrics);
    ck_assert_int_eq(core_limits_init(&core), 0);
}

static void teardown(void)
{
    core_limits_free(&core);
    metrics_free(core.metrics);
    config_free(config);
}

START_TEST(connections_in_all_and_per_host)
{
    setup_with("limits: {max_connections: 4, max_connections_per_address: 2}\n");
    uint32_t value = 0;
    ck_assert_ptr_null(core_connection_admit(&core, "10.0.0.1:1000", &value));
    ck_assert_ptr_null(core_connection_admit(&core, "10.0.0.1:1001", &value));
    ck_assert_str_eq(core_connection_admit(&core, "10.0.0.1:1002", &value),
                     "limits.max_connections_per_address");
    ck_assert_uint_eq(value, 2);
    ck_assert_ptr_null(core_connection_admit(&core, "[::1]:5000", &value));
    ck_assert_ptr_null(core_connection_admit(&core, "[::1]:5001", &value));
    ck_assert_uint_eq(core_connection_count(&core), 4);
    ck_assert_str_eq(core_connection_admit(&core, "10.0.0.9:1", &value), "limits.max_connections");
    ck_assert_uint_eq(value, 4);
    ck_assert_uint_eq(*core.limits.refusals[CORE_LIMIT_PER_ADDRESS], 1);
    ck_assert_uint_eq(*core.limits.refusals[CORE_LIMIT_CONNECTIONS], 1);
    /* a release frees its host's slot (whatever the port) and one in all */
    core_connection_release(&core, "10.0.0.1:1000");
    ck_assert_ptr_null(core_connection_admit(&core, "10.0.0.1:2000", &value));
    core_connection_release(&core, "[::1]:5000");
    core_connection_release(&core, "[::1]:5001");
    core_connection_release(&core, "10.0.0.1:1001");
    core_connection_release(&core, "10.0.0.1:2000");
    ck_assert_uint_eq(core_connection_count(&core), 0);
    ck_assert_uint_eq(core.limits.by_address.count, 0); /* idle hosts are forgotten */
    teardown();
}
END_TEST

START_TEST(sessions_per_user)
{
    setup_with("limits: {max_connections_per_user: 2}\n");
    uint32_t value = 0;
    for (int i = 0; i < 2; i++) {
        ck_assert_ptr_null(core_session_admit(&core, "alice", &value));
        core_limits_session_opened(&core, "alice");
    }
    ck_assert_str_eq(core_session_admit(&core, "alice", &value), "limits.max_connections_per_user");
    ck_assert_uint_eq(value, 2);
    ck_assert_ptr_null(core_session_admit(&core, "bob", &value));
    core_limits_session_closed(&core, "alice");
    ck_assert_ptr_null(core_session_admit(&core, "alice", &value));
    core_limits_session_closed(&core, "alice");
    ck_assert_uint_eq(core.limits.by_user.count, 0);
    ck_assert_uint_eq(*core.limits.refusals[CORE_LIMIT_PER_USER], 1);
    teardown();
}
END_TEST

START_TEST(failed_logins_per_host)
{
    setup_with("limits: {max_auth_failures_per_minute: 3}\n");
    uint32_t value = 0;
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_null(core_auth_throttled(&core, "192.0.2.7:4000", &value));
        core_limits_auth_failed(&core, "192.0.2.7:4000");
    }
    ck_assert_str_eq(core_auth_throttled(&core, "192.0.2.7:9999", &value),
                     "limits.max_auth_failures_per_minute");
    ck_assert_uint_eq(value, 3);
    ck_assert_ptr_null(core_auth_throttled(&core, "192.0.2.8:4000", &value));
    /* the host's open connections and its failures share one entry */
    ck_assert_ptr_null(core_connection_admit(&core, "192.0.2.7:4001", &value));
    core_connection_release(&core, "192.0.2.7:4001");
    ck_assert_str_eq(core_auth_throttled(&core, "192.0.2.7:1", &value),
                     "limits.max_auth_failures_per_minute");
    ck_assert_uint_eq(*core.limits.refusals[CORE_LIMIT_AUTH_FAILURES], 2);
    teardown();
}
END_TEST

START_TEST(zero_turns_a_limit_off)
{
    setup_with("limits: {max_auth_failures_per_minute: 0}\n");
    uint32_t value = 0;
    for (int i = 0; i < 100; i++) {
        core_limits_auth_failed(&core, "192.0.2.7:4000");
        ck_assert_ptr_null(core_connection_admit(&core, "192.0.2.7:4000", &value));
        core_limits_session_opened(&core, "alice");
    }
    ck_assert_ptr_null(core_auth_throttled(&core, "192.0.2.7:4000", &value));
    ck_assert_ptr_null(core_session_admit(&core, "alice", &value));
    teardown();
}
END_TEST

static Suite *core_limits_suite(void)
{
    Suite *suite = suite_create("core_limits");
    TCase *tc = tcase_create("limits");
    tcase_add_test(tc, connections_in_all_and_per_host);
    tcase_add_test(tc, sessions_per_user);
    tcase_add_test(tc, failed_logins_per_host);
    tcase_add_test(tc, zero_turns_a_limit_off);
    suite_add_tcase(suite, tc);
    return suite;
}

CHECK_MAIN(core_limits_suite)
