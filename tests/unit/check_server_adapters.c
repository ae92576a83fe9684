/* SPDX-License-Identifier: Apache-2.0 */
/* check_server_adapters.c -- the real server (daemon/server.c, unchanged)
 * started from a config with an adapter registry the test chooses: a dummy
 * third protocol (tests/adapters/echo_adapter.c) on a listener of its own and
 * sharing one with STOMP by first bytes; garbage and silence on the shared
 * listener are closed and counted; a listener naming an adapter the
 * registry lacks is refused at start; the dummy adapter's own config section
 * reaches it through the server, at start and on SIGHUP. Embedded Kafka,
 * loopback sockets. The
 * server runs its loop on a second thread; SIGTERM stops it as in kbridged. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "adapter.h"
#include "config.h"
#include "echo_adapter.h"
#include "listener.h"
#include "metrics.h"
#include "server.h"

extern const struct adapter_ops stomp_adapter_ops;

static const struct adapter_ops *const test_adapters[] = {&stomp_adapter_ops, &echo_adapter_ops};
static const struct adapter_registry test_registry = {test_adapters, 2};

static const char test_config[] = "kafka: { bootstrap: embedded }\n"
                                  "auth: { anonymous: true }\n"
                                  "limits: { protocol_detect_timeout: 300ms }\n"
                                  "listeners:\n"
                                  "  echo: { bind: \"127.0.0.1:0\" }\n"
                                  "  shared: { bind: \"127.0.0.1:0\", protocols: [stomp, echo] }\n";

struct running {
    struct server *server;
    pthread_t thread;
    int exit_code;
};

static void *run_server(void *arg)
{
    struct running *running = arg;
    running->exit_code = server_run(running->server);
    return NULL;
}

static void start(struct running *running, const char *yaml)
{
    struct config *config = NULL;
    char err[1024];
    ck_assert_msg(config_load_string("t.yaml", yaml, strlen(yaml), &config, err, sizeof(err)) == 0,
                  "%s", err);
    running->server = server_new(config, &test_registry, err, sizeof(err));
    ck_assert_msg(running->server != NULL, "%s", err);
    ck_assert_int_eq(pthread_create(&running->thread, NULL, run_server, running), 0);
}

/* SIGTERM drains and stops the loop; then the server is the test's again. */
static void stop(struct running *running)
{
    kill(getpid(), SIGTERM);
    ck_assert_int_eq(pthread_join(running->thread, NULL), 0);
    ck_assert_int_eq(running->exit_code, 0);
}

/* The bound address of the listener called `name`. */
static const char *address_of(const struct server *server, const char *name)
{
    for (size_t i = 0; i < server_listener_count(server); i++)
        if (strcmp(listener_name(server_listener(server, i)), name) == 0)
            return listener_address(server_listener(server, i));
    ck_abort_msg("no listener %s", name);
    return NULL;
}

/* A blocking client socket. The receive timeout only keeps a broken server
 * from hanging the test; no assertion depends on it. */
static int connect_to(const char *address)
{
    char host[64];
    const char *colon = strrchr(address, ':');
    ck_assert_ptr_nonnull(colon);
    snprintf(host, sizeof(host), "%.*s", (int)(colon - address), address);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    ck_assert_int_eq(inet_pton(AF_INET, host, &sin.sin_addr), 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval timeout = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

static void send_all(int fd, const char *bytes, size_t len)
{
    ck_assert_int_eq(send(fd, bytes, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Read until `expected` has arrived (true) or the peer closed (false). */
static bool read_until(int fd, const char *expected, char *got, size_t got_size)
{
    size_t used = 0;
    got[0] = '\0';
    while (used + 1 < got_size) {
        ssize_t n = recv(fd, got + used, got_size - 1 - used, 0);
        if (n <= 0)
            return false;
        used += (size_t)n;
        got[used] = '\0';
        if (strstr(got, expected))
            return true;
    }
    return false;
}

/* True when the server closed the connection, reading what it sent: EOF,
 * or a reset when it closed with our bytes unread (it peeked, never read). */
static bool closed_by_server(int fd)
{
    char buf[256];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0)
            return true;
        if (n < 0)
            return errno == ECONNRESET;
    }
}

static char *metrics_text(struct server *server)
{
    struct evbuffer *out = evbuffer_new();
    ck_assert_int_eq(metrics_render(server_metrics(server), out), 0);
    size_t len = evbuffer_get_length(out);
    char *text = malloc(len + 1);
    evbuffer_remove(out, text, len);
    text[len] = '\0';
    evbuffer_free(out);
    return text;
}

START_TEST(dummy_adapter_on_its_own_listener)
{
    struct running running;
    start(&running, test_config);
    char got[512];
    int fd = connect_to(address_of(running.server, "echo"));
    send_all(fd, "ECHO\nhello\nworld\n", 17);
    ck_assert_msg(read_until(fd, "HELLO\nhello\nworld\n", got, sizeof(got)), "got '%s'", got);
    close(fd);
    stop(&running);
    char *metrics = metrics_text(running.server);
    ck_assert_ptr_nonnull(strstr(metrics, "kbridge_echo_lines_total 2"));
    ck_assert_ptr_nonnull(strstr(metrics, "kbridge_connections{protocol=\"echo\"}"));
    ck_assert_ptr_nonnull(strstr(metrics, "kbridge_connections{protocol=\"stomp\"}"));
    free(metrics);
    server_free(running.server);
}
END_TEST

START_TEST(first_bytes_pick_the_adapter)
{
    struct running running;
    start(&running, test_config);
    const char *shared = address_of(running.server, "shared");
    char got[2048];

    /* the dummy protocol, its hello sent in two pieces */
    int echo = connect_to(shared);
    send_all(echo, "EC", 2);
    /* a STOMP client meanwhile, with heart-beat EOLs first */
    int stomp = connect_to(shared);
    static const char connect[] = "\n\nCONNECT\naccept-version:1.2\nhost:/\n\n";
    send_all(stomp, connect, sizeof(connect)); /* with the frame's NUL */
    ck_assert_msg(read_until(stomp, "CONNECTED\n", got, sizeof(got)), "got '%s'", got);
    send_all(echo, "HO\nping\n", 8);
    ck_assert_msg(read_until(echo, "HELLO\nping\n", got, sizeof(got)), "got '%s'", got);

    /* bytes of no protocol served here, AMQP 1.0 included: closed */
    int garbage = connect_to(shared);
    send_all(garbage, "GET / HTTP/1.1\r\n\r\n", 18);
    ck_assert(closed_by_server(garbage));
    int amqp = connect_to(shared);
    send_all(amqp, "AMQP\3\1\0\0", 8);
    ck_assert(closed_by_server(amqp));
    /* a prefix, then the client's half-close: no more bytes can come */
    int half = connect_to(shared);
    send_all(half, "EC", 2);
    ck_assert_int_eq(shutdown(half, SHUT_WR), 0);
    ck_assert(closed_by_server(half));
    /* silence until limits.protocol_detect_timeout: closed */
    int silent = connect_to(shared);
    ck_assert(closed_by_server(silent));

    close(garbage);
    close(half);
    close(amqp);
    close(silent);
    close(echo);
    close(stomp);
    stop(&running);
    char *metrics = metrics_text(running.server);
    ck_assert_msg(strstr(metrics, "kbridge_protocol_detect_failures_total{reason=\"unknown\"} 2") !=
                      NULL,
                  "%s", metrics);
    ck_assert_msg(strstr(metrics, "kbridge_protocol_detect_failures_total{reason=\"timeout\"} 1") !=
                      NULL,
                  "%s", metrics);
    ck_assert_ptr_nonnull(strstr(metrics, "kbridge_echo_lines_total 1"));
    free(metrics);
    server_free(running.server);
}
END_TEST

/* The greeting a new echo connection to `address` gets. */
static void echo_greeting(const char *address, char *got, size_t got_size)
{
    int fd = connect_to(address);
    send_all(fd, "ECHO\n", 5);
    ck_assert_msg(read_until(fd, "\n", got, got_size), "got '%s'", got);
    close(fd);
}

static void write_file(const char *path, const char *text)
{
    FILE *stream = fopen(path, "w");
    ck_assert_ptr_nonnull(stream);
    ck_assert_int_eq(fputs(text, stream) >= 0, 1);
    ck_assert_int_eq(fclose(stream), 0);
}

/* echo.greeting, a key of the dummy adapter's own config section, loaded
 * with the registry's sections as kbridged's main does, reaches the adapter
 * through the unchanged server; SIGHUP reloads it with the same sections. */
/* The config file of dummy_adapter_config_section: made and removed by the
 * parent process (an unchecked fixture), so it goes even when the test fails. */
static char section_config_path[] = "/tmp/check_server_adapters_XXXXXX";

static void section_config_create(void)
{
    int file = mkstemp(section_config_path);
    ck_assert_int_ge(file, 0);
    close(file);
}

static void section_config_remove(void) { unlink(section_config_path); }

START_TEST(dummy_adapter_config_section)
{
    static const char first[] = "kafka: { bootstrap: embedded }\n"
                                "listeners:\n"
                                "  echo: { bind: \"127.0.0.1:0\" }\n"
                                "echo: { greeting: \"HI THERE\" }\n";
    static const char second[] = "kafka: { bootstrap: embedded }\n"
                                 "listeners:\n"
                                 "  echo: { bind: \"127.0.0.1:0\" }\n"
                                 "echo: { greeting: RELOADED }\n";
    const char *path = section_config_path;
    write_file(path, first);

    const struct config_section *sections[2];
    size_t count = adapter_registry_config_sections(&test_registry, sections);
    ck_assert_uint_eq(count, 2); /* stomp's and echo's */
    struct config *config = NULL;
    char err[1024];
    ck_assert_msg(config_load_sections(path, sections, count, &config, err, sizeof(err)) == 0, "%s",
                  err);
    struct running running;
    running.server = server_new(config, &test_registry, err, sizeof(err));
    ck_assert_msg(running.server != NULL, "%s", err);
    ck_assert_int_eq(pthread_create(&running.thread, NULL, run_server, &running), 0);
    char echo_address[64];
    snprintf(echo_address, sizeof(echo_address), "%s", address_of(running.server, "echo"));

    char got[512];
    echo_greeting(echo_address, got, sizeof(got));
    ck_assert_str_eq(got, "HI THERE\n");

    /* SIGHUP: the loop reloads the file; connections opened after the
     * reload was applied get the new greeting (each round trip lets the
     * loop run; no sleep, no time limit beyond the socket's safety net) */
    write_file(path, second);
    kill(getpid(), SIGHUP);
    bool reloaded = false;
    for (int attempt = 0; attempt < 10000 && !reloaded; attempt++) {
        echo_greeting(echo_address, got, sizeof(got));
        reloaded = strcmp(got, "RELOADED\n") == 0;
        if (!reloaded)
            ck_assert_str_eq(got, "HI THERE\n");
    }
    ck_assert_msg(reloaded, "the reload never reached the echo adapter");
    stop(&running);
    server_free(running.server);

    /* an unknown key of the section is refused with its full name */
    write_file(path, "echo: { greting: x }\n");
    ck_assert_int_eq(config_load_sections(path, sections, count, &config, err, sizeof(err)), -1);
    char expected[1024];
    snprintf(expected, sizeof(expected),
             "%s:1: echo.greting: unknown key (did you mean \"greeting\"?)", path);
    ck_assert_str_eq(err, expected);
}
END_TEST

START_TEST(unknown_adapter_refused_at_start)
{
    static const char yaml[] = "kafka: { bootstrap: embedded }\n"
                               "listeners:\n"
                               "  public: { bind: \"127.0.0.1:0\", protocols: [echo, amqp] }\n";
    struct config *config = NULL;
    char err[1024];
    ck_assert_int_eq(config_load_string("t.yaml", yaml, strlen(yaml), &config, err, sizeof(err)),
                     0);
    ck_assert_ptr_null(server_new(config, &test_registry, err, sizeof(err)));
    ck_assert_str_eq(err, "listeners.public.protocols[1]: no protocol \"amqp\" is built into "
                          "kbridged (built in: stomp, echo; and http, the operations endpoint)");
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("server_adapters");
    TCase *server = tcase_create("server");
    tcase_add_unchecked_fixture(server, section_config_create, section_config_remove);
    tcase_set_timeout(server, 120);
    tcase_add_test(server, dummy_adapter_on_its_own_listener);
    tcase_add_test(server, first_bytes_pick_the_adapter);
    tcase_add_test(server, unknown_adapter_refused_at_start);
    tcase_add_test(server, dummy_adapter_config_section);
    suite_add_tcase(suite, server);
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
