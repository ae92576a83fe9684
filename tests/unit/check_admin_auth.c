/* SPDX-License-Identifier: Apache-2.0 */
/* check_admin_auth.c -- the admin API's HTTP basic credentials and
 * RabbitMQ user tags (daemon/admin_auth.c). */
#include <check.h>
#include <string.h>

#include "admin_auth.h"
#include "config.h"
#include "unit_main.h"

START_TEST(basic_credentials_parse)
{
    char user[64], password[64];
    /* "guest:guest", as RabbitMQ's docs spell it */
    ck_assert_int_eq(admin_basic_credentials("Basic Z3Vlc3Q6Z3Vlc3Q=", user, sizeof(user), password,
                                             sizeof(password)),
                     0);
    ck_assert_str_eq(user, "guest");
    ck_assert_str_eq(password, "guest");
    /* a password with a colon in it, any case of "basic", no padding */
    ck_assert_int_eq(
        admin_basic_credentials("basic YTpiOmM=", user, sizeof(user), password, sizeof(password)),
        0);
    ck_assert_str_eq(user, "a");
    ck_assert_str_eq(password, "b:c");
    ck_assert_int_eq(admin_basic_credentials("Basic YWRtOnNlY3JldDE=", user, sizeof(user), password,
                                             sizeof(password)),
                     0);
    ck_assert_str_eq(password, "secret1");
    /* an empty password is a password */
    ck_assert_int_eq(
        admin_basic_credentials("Basic YTo=", user, sizeof(user), password, sizeof(password)), 0);
    ck_assert_str_eq(password, "");
}
END_TEST

START_TEST(bad_credentials_refused)
{
    char user[8], password[8];
    const char *bad[] = {
        "Bearer abc",
        "Basic",
        "Basic !!!!",
        "Basic Z3Vlc3Q",              /* not a multiple of 4 */
        "Basic Z3Vlc3Q=",             /* "guest": no colon */
        "Basic OnBhc3M=",             /* ":pass": no user */
        "Basic YWFhYWFhYWFhYWE6eA==", /* user longer than the buffer */
        NULL,
    };
    for (size_t i = 0; bad[i]; i++)
        ck_assert_msg(
            admin_basic_credentials(bad[i], user, sizeof(user), password, sizeof(password)) == -1,
            "'%s' accepted", bad[i]);
    ck_assert_int_eq(admin_basic_credentials(NULL, user, sizeof(user), password, sizeof(password)),
                     -1);
}
END_TEST

START_TEST(tags_give_the_strongest_role)
{
    char *admin[] = {"monitoring", "administrator"};
    char *monitor[] = {"management", "monitoring"};
    char *manage[] = {"policymaker"};
    struct config_user user = {.name = "u"};
    ck_assert_int_eq(admin_role_of(&user), ADMIN_ROLE_NONE);
    ck_assert_int_eq(admin_role_of(NULL), ADMIN_ROLE_NONE);
    user.tags = admin;
    user.tag_count = 2;
    ck_assert_int_eq(admin_role_of(&user), ADMIN_ROLE_ADMINISTRATOR);
    user.tags = monitor;
    ck_assert_int_eq(admin_role_of(&user), ADMIN_ROLE_MONITORING);
    user.tags = manage;
    user.tag_count = 1;
    ck_assert_int_eq(admin_role_of(&user), ADMIN_ROLE_MANAGEMENT);
    ck_assert(admin_role_allows(ADMIN_ROLE_ADMINISTRATOR, true));
    ck_assert(!admin_role_allows(ADMIN_ROLE_MONITORING, true));
    ck_assert(!admin_role_allows(ADMIN_ROLE_MANAGEMENT, true));
    ck_assert(admin_role_allows(ADMIN_ROLE_MANAGEMENT, false));
    ck_assert(!admin_role_allows(ADMIN_ROLE_NONE, false));
    ck_assert_str_eq(admin_role_name(ADMIN_ROLE_MONITORING), "monitoring");
}
END_TEST

static Suite *admin_auth_suite(void)
{
    Suite *suite = suite_create("admin_auth");
    TCase *tcase = tcase_create("auth");
    tcase_add_test(tcase, basic_credentials_parse);
    tcase_add_test(tcase, bad_credentials_refused);
    tcase_add_test(tcase, tags_give_the_strongest_role);
    suite_add_tcase(suite, tcase);
    return suite;
}

CHECK_MAIN(admin_auth_suite)
