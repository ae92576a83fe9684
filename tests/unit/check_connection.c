/* SPDX-License-Identifier: Apache-2.0 */
/* check_connection.c -- the adapter base (adapters/connection.c) with a
 * dummy adapter over socketpairs: the publish callback runs exactly once
 * per publish (Kafka's answer, or abandoned when the connection is freed
 * first; never for a cancelled one, never twice), accept/refuse at
 * limits.max_connections and when draining, flush-then-close-then-linger
 * delivering the last bytes before the end of the stream, deferred free
 * (never inside the caller), and destroy freeing every connection. */
#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "connection.h"
#include "core.h"
#include "metrics.h"
#include "unit_main.h"

/* ---- a dummy adapter ------------------------------------------------------------ */

struct test_publish {
    struct connection_publish base;
    int done;        /* times publish_done ran for it */
    int last_result; /* its result */
};

struct test_connection {
    struct connection base;
};

static int events;         /* ops.event calls */
static bool event_saw_eof; /* the last ops.event call had read_eof set */
static int frees;          /* ops.free calls */
static int adapter_frees;  /* ops.adapter_free calls */
static int opens;          /* ops.open calls */
static int refusals;       /* of which told to refuse */
static int shutdowns;      /* ops.shutdown calls */
static int disposeds;      /* ops.disposed calls */
static int done_calls;     /* publish_done calls, all publishes */

/* ops.open: the base handed over an accepted socket (accept_one). */
static void test_open(struct adapter_base *base, evutil_socket_t fd, const struct sockaddr *peer,
                      int peer_len, struct bufferevent *stream, bool refuse)
{
    (void)base;
    (void)peer;
    (void)peer_len;
    (void)stream;
    opens++;
    if (refuse)
        refusals++;
    close(fd);
}

static void test_read(struct connection *connection)
{
    struct evbuffer *input = bufferevent_get_input(connection->transport.stream);
    evbuffer_drain(input, evbuffer_get_length(input));
}

static void test_event(struct connection *connection, short what)
{
    (void)what;
    events++;
    event_saw_eof = connection->read_eof;
    connection_dispose(connection);
}

static void test_disposed(struct connection *connection)
{
    (void)connection;
    disposeds++;
}

static void test_shutdown(struct connection *connection)
{
    (void)connection;
    shutdowns++;
}

static void test_free(struct connection *connection)
{
    frees++;
    connection_release(connection);
    free(connection);
}

static void test_adapter_free(struct adapter_base *base)
{
    adapter_frees++;
    free(base);
}

/* Does not free: the test owns its publishes and checks them afterwards. */
static void test_publish_done(struct connection_publish *publish, int result, const char *reason)
{
    if (result != CORE_OK)
        ck_assert_ptr_nonnull(reason);
    struct test_publish *p = (struct test_publish *)publish;
    p->done++;
    p->last_result = result;
    done_calls++;
}

static const struct connection_ops test_ops = {
    .protocol = "test",
    .open = test_open,
    .read = test_read,
    .event = test_event,
    .disposed = test_disposed,
    .shutdown = test_shutdown,
    .free = test_free,
    .adapter_free = test_adapter_free,
    .publish_done = test_publish_done,
};

/* ---- fixture ----------------------------------------------------------------------- */

static struct event_base *base;
static struct metrics *metrics;
static struct config *config;
static struct adapter_base *adapter;

static void setup(void)
{
    events = 0;
    event_saw_eof = false;
    frees = shutdowns = disposeds = done_calls = opens = refusals = adapter_frees = 0;
    base = event_base_new();
    metrics = metrics_new();
    ck_assert_ptr_nonnull(base);
    ck_assert_ptr_nonnull(metrics);
    static const char yaml[] = "limits:\n  max_connections: 2\n";
    char err[512] = "";
    ck_assert_msg(config_load_string("t.yaml", yaml, strlen(yaml), &config, err, sizeof(err)) == 0,
                  "config: %s", err);
    struct adapter_context context = {base, NULL, metrics, &config, NULL, NULL};
    adapter = adapter_base_new(sizeof(*adapter), &context, &test_ops, err, sizeof(err));
    ck_assert_msg(adapter != NULL, "adapter_base_new: %s", err);
}

static void teardown(void)
{
    if (adapter)
        adapter_base_destroy((struct adapter *)adapter);
    ck_assert_int_eq(adapter_frees, 1);
    config_free(config);
    metrics_free(metrics);
    event_base_free(base);
}

/* A connection over one end of a socketpair; *peer_fd is the other end. */
static struct test_connection *open_connection(int *peer_fd)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct test_connection *connection = (struct test_connection *)connection_new(
        adapter, sizeof(struct test_connection), sv[0], NULL, 0, NULL);
    ck_assert_ptr_nonnull(connection);
    bufferevent_enable(connection->base.transport.stream, EV_READ);
    *peer_fd = sv[1];
    return connection;
}

/* Run the loop until `*counter` reaches `want` (bounded: a stuck test fails, not hangs). */
static void run_until(const int *counter, int want)
{
    for (int i = 0; i < 1000 && *counter < want; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    ck_assert_int_eq(*counter, want);
}

/* ---- tests ---------------------------------------------------------------------------- */

START_TEST(publish_done_runs_once_per_publish)
{
    int peer;
    struct test_connection *connection = open_connection(&peer);
    struct test_publish p[5];
    memset(p, 0, sizeof(p));
    for (int i = 0; i < 5; i++)
        connection_publish_begin(&connection->base, &p[i].base);
    ck_assert_uint_eq(connection->base.unconfirmed, 5);

    connection_publish_confirmed(&p[0].base, CORE_OK, NULL);                     /* stored */
    connection_publish_confirmed(&p[1].base, CORE_ERR_UNAVAILABLE, "timed out"); /* refused */
    connection_publish_cancel(&p[2].base); /* core_publish failed: no callback */
    ck_assert_uint_eq(connection->base.unconfirmed, 2);
    ck_assert_int_eq(p[0].done, 1);
    ck_assert_int_eq(p[0].last_result, CORE_OK);
    ck_assert_int_eq(p[1].done, 1);
    ck_assert_int_eq(p[1].last_result, CORE_ERR_UNAVAILABLE);

    /* Closing with p[3], p[4] in flight: not freed inside the call ... */
    connection_dispose(&connection->base);
    connection_dispose(&connection->base); /* twice is fine */
    ck_assert_int_eq(frees, 0);
    ck_assert_int_eq(disposeds, 1);
    ck_assert_int_eq(p[3].done, 0);
    /* ... but at the next loop iteration, abandoning each waiting publish once. */
    run_until(&frees, 1);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(p[i].done, i == 2 ? 0 : 1);
    ck_assert_int_eq(p[3].last_result, CONNECTION_PUBLISH_ABANDONED);
    ck_assert_int_eq(p[4].last_result, CONNECTION_PUBLISH_ABANDONED);
    ck_assert_int_eq(done_calls, 4);
    ck_assert_uint_eq(adapter->connection_count, 0);
    ck_assert(*adapter->connections_gauge == 0.0);
    close(peer);
}
END_TEST

/* adapter_ops.accept with a fresh socketpair; returns the accepted end. */
static int accept_one(void)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    adapter_base_accept((struct adapter *)adapter, sv[0], NULL, 0, NULL, NULL);
    close(sv[1]);
    return sv[0];
}

START_TEST(accept_refuses_over_max_connections_and_when_draining)
{
    int peer1, peer2;
    open_connection(&peer1);
    accept_one();
    ck_assert_int_eq(opens, 1);
    ck_assert_int_eq(refusals, 0);
    open_connection(&peer2);
    ck_assert_uint_eq(adapter->connection_count, 2);
    ck_assert_uint_eq(adapter_base_connection_count((struct adapter *)adapter), 2);
    ck_assert(*adapter->connections_gauge == 2.0);
    accept_one();
    ck_assert_int_eq(opens, 2);
    ck_assert_int_eq(refusals, 1); /* limits.max_connections: 2 */

    adapter_base_drain((struct adapter *)adapter);
    ck_assert(adapter->draining);
    int straggler = accept_one();
    ck_assert_int_eq(opens, 2); /* not handed to the adapter ... */
    errno = 0;
    ck_assert_int_eq(fcntl(straggler, F_GETFD), -1); /* ... and its socket is closed */
    ck_assert_int_eq(errno, EBADF);
    close(peer1);
    close(peer2);
}
END_TEST

START_TEST(flush_then_close_delivers_the_last_bytes_then_ends)
{
    int peer;
    struct test_connection *connection = open_connection(&peer);
    struct test_publish pending = {0};
    connection_publish_begin(&connection->base, &pending.base);
    static const char goodbye[] = "ERROR\n\nbye\n";
    bufferevent_write(connection->base.transport.stream, goodbye, sizeof(goodbye));
    connection_flush_then_close(&connection->base);
    connection_flush_then_close(&connection->base); /* twice is fine */
    ck_assert(connection->base.closing);

    /* The peer gets every byte, then the end of the stream (our write side
     * shut, the socket still open: lingering). */
    char got[64];
    size_t have = 0;
    for (int i = 0; i < 1000; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        ssize_t n = recv(peer, got + have, sizeof(got) - have, MSG_DONTWAIT);
        if (n == 0)
            break;
        if (n > 0)
            have += (size_t)n;
    }
    ck_assert_uint_eq(have, sizeof(goodbye));
    ck_assert_mem_eq(got, goodbye, sizeof(goodbye));
    ck_assert(connection->base.lingering);
    ck_assert_int_eq(frees, 0);
    /* Input while lingering is discarded, not handed to the adapter. */
    ck_assert_int_eq(send(peer, "x", 1, 0), 1);
    /* The peer closes: disposed and freed, the publish abandoned once. */
    close(peer);
    run_until(&frees, 1);
    ck_assert_int_eq(pending.done, 1);
    ck_assert_int_eq(pending.last_result, CONNECTION_PUBLISH_ABANDONED);
}
END_TEST

START_TEST(eof_while_open_goes_to_the_adapter)
{
    int peer;
    open_connection(&peer);
    close(peer);
    /* The adapter's event disposes of it; the base frees it afterwards. */
    run_until(&frees, 1);
    ck_assert_int_eq(events, 1);
    ck_assert(event_saw_eof);
}
END_TEST

START_TEST(destroy_frees_every_connection_and_abandons_publishes)
{
    int peer1, peer2;
    struct test_connection *c1 = open_connection(&peer1);
    open_connection(&peer2);
    struct test_publish p = {0};
    connection_publish_begin(&c1->base, &p.base);
    connection_dispose(&c1->base); /* one already on the reap list */
    adapter_base_destroy((struct adapter *)adapter);
    ck_assert_int_eq(adapter_frees, 1);
    ck_assert_int_eq(frees, 2);
    ck_assert_int_eq(shutdowns, 1); /* not for the disposed one */
    ck_assert_int_eq(p.done, 1);
    ck_assert_int_eq(p.last_result, CONNECTION_PUBLISH_ABANDONED);
    adapter = NULL; /* freed */
    close(peer1);
    close(peer2);
}
END_TEST

START_TEST(core_error_rows)
{
    ck_assert_uint_eq(core_error_row(CORE_ERR_ACCESS), 1);
    ck_assert_uint_eq(core_error_row(CORE_ERR_INTERNAL), 7);
    ck_assert_uint_lt(core_error_row(CORE_ERR_INTERNAL), CORE_ERROR_ROWS);
    ck_assert_uint_eq(core_error_row(CORE_ERR_LOCKED), 10);
    ck_assert_uint_eq(core_error_row(CORE_ERR_FULL), 11);
    ck_assert_uint_eq(core_error_row(CORE_ERR_IN_USE), 12); /* the lowest has a row */
    ck_assert_uint_lt(core_error_row(CORE_ERR_IN_USE), CORE_ERROR_ROWS);
    ck_assert_uint_eq(core_error_row(CORE_OK), core_error_row(CORE_ERR_INTERNAL));
    ck_assert_uint_eq(core_error_row(-100), core_error_row(CORE_ERR_INTERNAL));
    ck_assert_uint_eq(core_error_row(CONNECTION_PUBLISH_ABANDONED),
                      core_error_row(CORE_ERR_INTERNAL));
}
END_TEST

static Suite *connection_suite(void)
{
    Suite *suite = suite_create("connection");
    TCase *tc = tcase_create("base");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, publish_done_runs_once_per_publish);
    tcase_add_test(tc, accept_refuses_over_max_connections_and_when_draining);
    tcase_add_test(tc, core_error_rows);
    tcase_add_test(tc, flush_then_close_delivers_the_last_bytes_then_ends);
    tcase_add_test(tc, eof_while_open_goes_to_the_adapter);
    tcase_add_test(tc, destroy_frees_every_connection_and_abandons_publishes);
    suite_add_tcase(suite, tc);
    return suite;
}

CHECK_MAIN(connection_suite)
