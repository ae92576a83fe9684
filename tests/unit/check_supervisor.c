/* SPDX-License-Identifier: Apache-2.0 */
/* check_supervisor.c -- `processes: N` (daemon/supervisor.c): what a config
 * with N > 1 must satisfy, the process count, and the shared ports of
 * listener.c (a reserved address takes several SO_REUSEPORT listeners and
 * refuses a port some other socket holds). */
#include <arpa/inet.h>
#include <check.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "listener.h"
#include "supervisor.h"
#include "unit_main.h"

static struct config *load(const char *yaml)
{
    struct config *config = NULL;
    char err[512];
    int rc = config_load_string("t.yaml", yaml, strlen(yaml), &config, err, sizeof(err));
    ck_assert_msg(rc == 0, "config: %s", err);
    return config;
}

START_TEST(processes_default_to_one_and_zero_means_every_cpu)
{
    struct config *config = load("node_id: n\nkafka: {bootstrap: 'k:9092'}\n");
    ck_assert_uint_eq(config->processes, 1);
    ck_assert_uint_eq(supervisor_process_count(config), 1);
    config->processes = 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    ck_assert_uint_eq(supervisor_process_count(config), (uint32_t)(cpus < 1 ? 1 : cpus));
    config_free(config);
}
END_TEST

START_TEST(several_processes_need_a_shared_kafka_and_room_for_ids_and_ops_ports)
{
    char err[512];
    struct config *config = load("node_id: n\nprocesses: 2\nkafka: {bootstrap: embedded}\n");
    ck_assert_int_eq(supervisor_check_config(config, 1, err, sizeof(err)), 0);
    ck_assert_int_eq(supervisor_check_config(config, 2, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "processes: 2 processes need a Kafka they share") != NULL, "%s", err);
    config_free(config);

    config = load("node_id: n\nprocesses: 4\nkafka: {bootstrap: 'k:9092'}\n"
                  "listeners: {http: {bind: '127.0.0.1:65533'}}\n");
    ck_assert_int_eq(supervisor_check_config(config, 3, err, sizeof(err)), 0); /* 65535 */
    ck_assert_int_eq(supervisor_check_config(config, 4, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "listeners.http: port 65533 + 3 workers passes 65535") != NULL, "%s",
                  err);
    config_free(config);

    char yaml[600];
    char long_id[256];
    memset(long_id, 'a', 254);
    long_id[254] = '\0';
    snprintf(yaml, sizeof(yaml), "node_id: %s\nkafka: {bootstrap: 'k:9092'}\n", long_id);
    config = load(yaml);
    ck_assert_int_eq(supervisor_check_config(config, 2, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "node_id: too long for processes: 2") != NULL, "%s", err);
    config_free(config);
}
END_TEST

/* A connection to `port` on loopback is accepted by someone (0) or refused (-1). */
static int connect_loopback(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    close(fd);
    return rc;
}

static void ignore_accept(void *opaque, evutil_socket_t fd, const struct sockaddr *peer,
                          int peer_len)
{
    close(fd);
}

START_TEST(a_reserved_port_takes_shared_listeners_and_no_connection_itself)
{
    char bound[80], again[80], err[400];
    evutil_socket_t reserved, first;
    ck_assert_int_eq(
        listener_socket_reserve("127.0.0.1:0", &reserved, bound, sizeof(bound), err, sizeof(err)),
        0);
    ck_assert_msg(strncmp(bound, "127.0.0.1:", 10) == 0 && strcmp(bound, "127.0.0.1:0") != 0, "%s",
                  bound);
    int port = atoi(bound + 10);
    /* bound, not listening: nobody accepts yet */
    ck_assert_int_eq(connect_loopback(port), -1);
    /* the workers' SO_REUSEPORT listeners (listener_new, as server.c) share it */
    struct event_base *base = event_base_new();
    struct listener *worker0 =
        listener_new(base, "stomp", bound, true, ignore_accept, NULL, err, sizeof(err));
    ck_assert_msg(worker0 != NULL, "%s", err);
    struct listener *worker1 =
        listener_new(base, "stomp", bound, true, ignore_accept, NULL, err, sizeof(err));
    ck_assert_msg(worker1 != NULL, "%s", err);
    ck_assert_str_eq(listener_address(worker0), bound);
    ck_assert_str_eq(listener_address(worker1), bound);
    ck_assert_int_eq(connect_loopback(port), 0);
    /* while they listen, a plain listener (another kbridged of one process)
     * and another supervisor's reservation are refused */
    ck_assert_int_eq(listener_socket_open(bound, &first, again, sizeof(again), err, sizeof(err)),
                     -1);
    ck_assert_msg(strstr(err, "Address already in use") != NULL, "%s", err);
    ck_assert_int_eq(listener_socket_reserve(bound, &first, again, sizeof(again), err, sizeof(err)),
                     -1);
    ck_assert_msg(strstr(err, "Address already in use") != NULL, "%s", err);
    /* without SO_REUSEPORT (processes: 1) a listener cannot join */
    ck_assert_ptr_null(
        listener_new(base, "stomp", bound, false, ignore_accept, NULL, err, sizeof(err)));
    listener_free(worker0);
    listener_free(worker1);
    event_base_free(base);
    close(reserved);
}
END_TEST

static Suite *supervisor_suite(void)
{
    Suite *suite = suite_create("supervisor");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, processes_default_to_one_and_zero_means_every_cpu);
    tcase_add_test(tc, several_processes_need_a_shared_kafka_and_room_for_ids_and_ops_ports);
    tcase_add_test(tc, a_reserved_port_takes_shared_listeners_and_no_connection_itself);
    suite_add_tcase(suite, tc);
    return suite;
}

CHECK_MAIN(supervisor_suite)
