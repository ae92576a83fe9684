/* SPDX-License-Identifier: Apache-2.0 */
/* check_shovel.c -- what the STOMP and AMQP shovel clients share
 * (daemon/shovel.c, architecture §15): the settings copied from a config
 * entry, the reconnect back-off, the passcode_file reader, an end as status
 * text, and the last writes at stop (flush and linger on a socket pair). */
#include <check.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* A socket bufferevent on one end of a socket pair; *peer is the broker's end. */
static struct bufferevent *socket_pair_bufferevent(struct event_base *base, int *peer)
{
    int fds[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    ck_assert_int_eq(evutil_make_socket_nonblocking(fds[0]), 0);
    struct bufferevent *bev = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
    ck_assert_ptr_nonnull(bev);
    *peer = fds[1];
    return bev;
}

START_TEST(flush_writes_what_the_loop_has_not_written)
{
    struct event_base *base = event_base_new();
    int peer;
    struct bufferevent *bev = socket_pair_bufferevent(base, &peer);
    /* the loop never ran: a socket bufferevent keeps its output's start
     * frozen, so a plain evbuffer_write would write nothing */
    ck_assert_int_eq(evbuffer_add_printf(bufferevent_get_output(bev), "ACK\nid:7\n\n"), 10);
    ck_assert_uint_eq(shovel_socket_flush(bev, 1000), 0);
    char got[32] = "";
    ck_assert_int_eq(read(peer, got, sizeof(got) - 1), 10);
    ck_assert_str_eq(got, "ACK\nid:7\n\n");
    /* the loop may write through it again afterwards */
    ck_assert_int_eq(evbuffer_add(bufferevent_get_output(bev), "x", 1), 0);
    event_base_loop(base, EVLOOP_NONBLOCK); /* 1 once nothing is left to wait for */
    ck_assert_int_eq(read(peer, got, sizeof(got)), 1);
    bufferevent_free(bev);
    close(peer);
    event_base_free(base);
}
END_TEST

static bool heard_bye(void *opaque, const char *bytes, size_t size)
{
    size_t *heard = opaque;
    *heard += size;
    return size >= 3 && memcmp(bytes + size - 3, "bye", 3) == 0;
}

START_TEST(linger_ends_when_the_broker_closes_or_says_goodbye)
{
    struct event_base *base = event_base_new();
    int peer;
    /* the broker closes: linger sees the end after our half-close */
    struct bufferevent *bev = socket_pair_bufferevent(base, &peer);
    ck_assert_int_eq(shutdown(peer, SHUT_WR), 0);
    ck_assert(shovel_socket_linger(bev, 1000, NULL, NULL));
    char got[8];
    ck_assert_int_eq(read(peer, got, sizeof(got)), 0); /* our side was half-closed */
    bufferevent_free(bev);
    close(peer);
    /* the broker answers without closing: the goodbye callback decides */
    bev = socket_pair_bufferevent(base, &peer);
    ck_assert_int_eq(write(peer, "still bye", 9), 9);
    size_t heard = 0;
    ck_assert(shovel_socket_linger(bev, 1000, heard_bye, &heard));
    ck_assert_uint_eq(heard, 9);
    bufferevent_free(bev);
    close(peer);
    /* the broker stays silent: false once the time is up */
    bev = socket_pair_bufferevent(base, &peer);
    ck_assert(!shovel_socket_linger(bev, 50, heard_bye, &heard));
    bufferevent_free(bev);
    close(peer);
    event_base_free(base);
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
    tcase_add_test(tcase, flush_writes_what_the_loop_has_not_written);
    tcase_add_test(tcase, linger_ends_when_the_broker_closes_or_says_goodbye);
    suite_add_tcase(suite, tcase);
    return suite;
}

CHECK_MAIN(shovel_suite)
