/* SPDX-License-Identifier: Apache-2.0 */
/* check_shovel.c -- what the STOMP and AMQP shovel clients share
 * (daemon/shovel.c, architecture §15): the settings copied from a config
 * entry, the reconnect back-off, the passcode_file reader, and an end as
 * status text. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "shovel.h"
#include "unit_main.h"

static struct config_shovel entry(bool to_kbridge)
{
    struct config_shovel_end legacy = {.protocol = "amqp",
                                       .address = "127.0.0.1:5672",
                                       .host = "vhost:/",
                                       .login = "guest",
                                       .passcode = "secret",
                                       .destination = "/amq/queue/orders"};
    struct config_shovel_end kbridge = {.protocol = "kbridge", .destination = "/queue/orders"};
    return (struct config_shovel){.name = "orders",
                                  .source = to_kbridge ? legacy : kbridge,
                                  .destination = to_kbridge ? kbridge : legacy,
                                  .prefetch = 7,
                                  .reconnect_delay_initial = 100,
                                  .reconnect_delay_max = 350,
                                  .heartbeat = 10000,
                                  .connect_timeout = 3000};
}

START_TEST(settings_copy_the_legacy_and_kbridge_ends_either_way)
{
    for (int way = 0; way < 2; way++) {
        struct config_shovel config = entry(way == 0);
        struct shovel_settings settings;
        char err[256] = "";
        ck_assert_int_eq(shovel_settings_copy(&settings, &config, err, sizeof(err)), 0);
        ck_assert(settings.to_kbridge == (way == 0));
        ck_assert_str_eq(settings.name, "orders");
        ck_assert_str_eq(settings.address, "127.0.0.1:5672");
        ck_assert_str_eq(settings.host, "vhost:/");
        ck_assert_str_eq(settings.login, "guest");
        ck_assert_str_eq(settings.passcode, "secret");
        ck_assert_ptr_null(settings.passcode_file);
        ck_assert_str_eq(settings.legacy_destination, "/amq/queue/orders");
        ck_assert_str_eq(settings.kbridge_text, "/queue/orders");
        ck_assert_str_eq(settings.user, "anonymous"); /* no user: anonymous */
        ck_assert_ptr_ne(settings.name, config.name); /* copies */
        ck_assert_uint_eq(settings.prefetch, 7);
        ck_assert_uint_eq(settings.heartbeat_ms, 10000);
        ck_assert_uint_eq(settings.timeout_ms, 3000);
        shovel_settings_clear(&settings);
        ck_assert_ptr_null(settings.name);
    }
}
END_TEST

START_TEST(backoff_doubles_up_to_the_max_and_resets)
{
    struct config_shovel config = entry(true);
    struct shovel_settings settings;
    char err[256];
    ck_assert_int_eq(shovel_settings_copy(&settings, &config, err, sizeof(err)), 0);
    ck_assert_uint_eq(shovel_backoff_next(&settings), 100);
    ck_assert_uint_eq(shovel_backoff_next(&settings), 200);
    ck_assert_uint_eq(shovel_backoff_next(&settings), 350);
    ck_assert_uint_eq(shovel_backoff_next(&settings), 350);
    shovel_backoff_reset(&settings);
    ck_assert_uint_eq(shovel_backoff_next(&settings), 100);
    shovel_settings_clear(&settings);
}
END_TEST

START_TEST(passcode_is_the_first_line_of_the_file)
{
    char path[] = "/tmp/check_shovel_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "s3cret\r\nsecond line\n", 20), 20);
    close(fd);
    char err[256] = "";
    char *passcode = shovel_read_passcode(path, err, sizeof(err));
    ck_assert_str_eq(passcode, "s3cret");
    free(passcode);
    unlink(path);
    ck_assert_ptr_null(shovel_read_passcode(path, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, path)); /* names the file */
}
END_TEST

START_TEST(end_text_names_protocol_address_and_destination)
{
    char text[SHOVEL_TEXT_MAX];
    shovel_end_text("kbridge", NULL, "/queue/x", text, sizeof(text));
    ck_assert_str_eq(text, "kbridge:/queue/x");
    shovel_end_text("stomp", "10.0.0.5:61613", "/queue/x", text, sizeof(text));
    ck_assert_str_eq(text, "stomp://10.0.0.5:61613/queue/x");
    shovel_end_text("amqp", "10.0.0.5:5672", "orders", text, sizeof(text));
    ck_assert_str_eq(text, "amqp://10.0.0.5:5672/orders"); /* a slash before a bare address */
}
END_TEST

static Suite *shovel_suite(void)
{
    Suite *suite = suite_create("shovel");
    TCase *tcase = tcase_create("shared");
    tcase_add_test(tcase, settings_copy_the_legacy_and_kbridge_ends_either_way);
    tcase_add_test(tcase, backoff_doubles_up_to_the_max_and_resets);
    tcase_add_test(tcase, passcode_is_the_first_line_of_the_file);
    tcase_add_test(tcase, end_text_names_protocol_address_and_destination);
    suite_add_tcase(suite, tcase);
    return suite;
}

CHECK_MAIN(shovel_suite)
