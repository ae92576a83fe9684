/* echo_adapter.c -- the "echo" line protocol of echo_adapter.h: a complete
 * adapter (descriptor, detector, metrics, connections, drain, destroy) in
 * about as little code as the contract allows. Connections are closed on
 * EOF or error; destroy closes those still open. */
#include "echo_adapter.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

#define ECHO_HELLO "ECHO"
#define ECHO_LINE_MAX 1024 /* longer lines close the connection */

struct echo_connection {
    struct echo_adapter *adapter;
    struct bufferevent *bev;
    bool greeted;
    struct echo_connection *prev, *next;
};

struct echo_adapter {
    struct adapter_context context;
    struct echo_connection *connections;
    size_t connection_count;
    double *connections_gauge; /* kbridge_connections{protocol="echo"} */
    uint64_t *lines;           /* kbridge_echo_lines_total */
    bool draining;
};

static enum adapter_detect echo_detect(const unsigned char *bytes, size_t len)
{
    static const char hello[] = ECHO_HELLO "\n";
    size_t compare = len < sizeof(hello) - 1 ? len : sizeof(hello) - 1;
    if (memcmp(bytes, hello, compare) != 0)
        return ADAPTER_DETECT_NO;
    return len >= sizeof(hello) - 1 ? ADAPTER_DETECT_YES : ADAPTER_DETECT_MORE;
}

static void echo_connection_free(struct echo_connection *connection)
{
    struct echo_adapter *adapter = connection->adapter;
    if (connection->prev)
        connection->prev->next = connection->next;
    else
        adapter->connections = connection->next;
    if (connection->next)
        connection->next->prev = connection->prev;
    adapter->connection_count--;
    *adapter->connections_gauge = (double)adapter->connection_count;
    bufferevent_free(connection->bev);
    free(connection);
}

static void echo_on_read(struct bufferevent *bev, void *arg)
{
    struct echo_connection *connection = arg;
    struct evbuffer *input = bufferevent_get_input(bev);
    char *line;
    size_t len;
    while ((line = evbuffer_readln(input, &len, EVBUFFER_EOL_LF))) {
        if (!connection->greeted) {
            connection->greeted = strcmp(line, ECHO_HELLO) == 0;
            evbuffer_add_printf(bufferevent_get_output(bev), "%s\n",
                                connection->greeted ? "HELLO" : "BAD HELLO");
        } else {
            (*connection->adapter->lines)++;
            evbuffer_add_printf(bufferevent_get_output(bev), "%s\n", line);
        }
        free(line);
    }
    if (evbuffer_get_length(input) > ECHO_LINE_MAX)
        echo_connection_free(connection);
}

static void echo_on_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        echo_connection_free(arg);
}

static struct adapter *echo_create(const struct adapter_context *context, char *err,
                                   size_t err_size)
{
    struct echo_adapter *adapter = calloc(1, sizeof(*adapter));
    if (!adapter) {
        snprintf(err, err_size, "echo: out of memory");
        return NULL;
    }
    adapter->context = *context;
    char labels[64];
    metrics_label(labels, sizeof(labels), "protocol", "echo");
    adapter->connections_gauge =
        metrics_gauge(context->metrics, "kbridge_connections", "Open client connections.", labels);
    adapter->lines = metrics_counter(context->metrics, "kbridge_echo_lines_total",
                                     "Lines echoed by the test adapter.", NULL);
    if (!adapter->connections_gauge || !adapter->lines) {
        snprintf(err, err_size, "echo: cannot register metrics");
        free(adapter);
        return NULL;
    }
    return (struct adapter *)adapter;
}

static void echo_accept(struct adapter *base_adapter, evutil_socket_t fd,
                        const struct sockaddr *peer, int peer_len)
{
    struct echo_adapter *adapter = (struct echo_adapter *)base_adapter;
    char peer_text[80];
    if (adapter->draining) {
        evutil_closesocket(fd);
        return;
    }
    struct bufferevent *bev = adapter_socket_open(adapter->context.base, "echo", fd, peer, peer_len,
                                                  peer_text, sizeof(peer_text));
    if (!bev)
        return;
    struct echo_connection *connection = calloc(1, sizeof(*connection));
    if (!connection) {
        bufferevent_free(bev);
        return;
    }
    connection->adapter = adapter;
    connection->bev = bev;
    connection->next = adapter->connections;
    if (adapter->connections)
        adapter->connections->prev = connection;
    adapter->connections = connection;
    adapter->connection_count++;
    *adapter->connections_gauge = (double)adapter->connection_count;
    bufferevent_setcb(bev, echo_on_read, NULL, echo_on_event, connection);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    log_debug("echo", "%s: connected", peer_text);
}

static void echo_reconfigure(struct adapter *adapter) { (void)adapter; }

static void echo_drain(struct adapter *base_adapter)
{
    ((struct echo_adapter *)base_adapter)->draining = true;
}

static size_t echo_connection_count(const struct adapter *base_adapter)
{
    return ((const struct echo_adapter *)base_adapter)->connection_count;
}

static void echo_destroy(struct adapter *base_adapter)
{
    struct echo_adapter *adapter = (struct echo_adapter *)base_adapter;
    while (adapter->connections)
        echo_connection_free(adapter->connections);
    free(adapter);
}

const struct adapter_ops echo_adapter_ops = {
    .name = "echo",
    .title = "line echo (tests)",
    .detect = echo_detect,
    .addresses = NULL,
    .create = echo_create,
    .accept = echo_accept,
    .reconfigure = echo_reconfigure,
    .drain = echo_drain,
    .connection_count = echo_connection_count,
    .destroy = echo_destroy,
};
