/* SPDX-License-Identifier: Apache-2.0 */
/* echo_adapter.c -- the "echo" line protocol of echo_adapter.h: a complete
 * adapter (descriptor, detector, metrics, connections, drain, destroy) on
 * the adapter base (adapters/connection.h), in about as little code as the
 * contract allows. Like a real adapter it reads and writes only its
 * transport's stream and lets the base own the connection list, deferred
 * free, refusal at limits.max_connections and flush-then-close. Its own
 * config section (`echo: {greeting: ...}`) sets the answer to the hello,
 * read from the config in force, so SIGHUP changes it like a shared key. */
#include "echo_adapter.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "connection.h"
#include "log.h"
#include "metrics.h"

#define ECHO_HELLO "ECHO"
#define ECHO_LINE_MAX 1024 /* longer lines close the connection */

struct echo_connection {
    struct connection base; /* first: the adapter base's part */
    bool greeted;
};

/* The `echo` config section's values. */
struct echo_config {
    char *greeting; /* echo.greeting: the answer to the hello, default "HELLO" */
};

static const struct config_key echo_config_keys[] = {
    {
        .name = "greeting",
        .type = CONFIG_TYPE_STRING,
        .offset = offsetof(struct echo_config, greeting),
        .min = 1,
        .max = 64,
        .default_value = "HELLO",
        .description = "The line the echo adapter answers a hello with.",
    },
};

static const struct config_section echo_config_section = {
    .name = "echo",
    .keys = echo_config_keys,
    .key_count = sizeof(echo_config_keys) / sizeof(echo_config_keys[0]),
    .size = sizeof(struct echo_config),
};

struct echo_adapter {
    struct adapter_base base; /* first */
    uint64_t *lines;          /* kbridge_echo_lines_total */
};

static enum adapter_detect echo_detect(const unsigned char *bytes, size_t len)
{
    static const char hello[] = ECHO_HELLO "\n";
    size_t compare = len < sizeof(hello) - 1 ? len : sizeof(hello) - 1;
    if (memcmp(bytes, hello, compare) != 0)
        return ADAPTER_DETECT_NO;
    return len >= sizeof(hello) - 1 ? ADAPTER_DETECT_YES : ADAPTER_DETECT_MORE;
}

static void echo_open(struct adapter_base *base, evutil_socket_t fd, const struct sockaddr *peer,
                      int peer_len, struct bufferevent *tls_stream, bool refuse)
{
    struct echo_connection *connection = (struct echo_connection *)connection_new(
        base, sizeof(struct echo_connection), fd, peer, peer_len, tls_stream);
    if (!connection)
        return;
    struct bufferevent *stream = connection->base.transport.stream;
    if (refuse) {
        evbuffer_add_printf(bufferevent_get_output(stream), "BUSY\n");
        connection_flush_then_close(&connection->base);
        return;
    }
    bufferevent_enable(stream, EV_READ);
    log_debug("echo", "%s: connected", connection->base.peer);
}

static void echo_read(struct connection *base_connection)
{
    struct echo_connection *connection = (struct echo_connection *)base_connection;
    struct echo_adapter *adapter = (struct echo_adapter *)base_connection->adapter;
    struct bufferevent *stream = base_connection->transport.stream;
    struct evbuffer *input = bufferevent_get_input(stream);
    char *line;
    size_t len;
    while ((line = evbuffer_readln(input, &len, EVBUFFER_EOL_LF))) {
        if (!connection->greeted) {
            const struct echo_config *settings =
                config_section_values(*adapter->base.context.config, echo_config_section.name);
            connection->greeted = strcmp(line, ECHO_HELLO) == 0;
            evbuffer_add_printf(bufferevent_get_output(stream), "%s\n",
                                connection->greeted ? settings->greeting : "BAD HELLO");
        } else {
            (*adapter->lines)++;
            evbuffer_add_printf(bufferevent_get_output(stream), "%s\n", line);
        }
        free(line);
    }
    if (evbuffer_get_length(input) > ECHO_LINE_MAX)
        connection_flush_then_close(base_connection);
}

static void echo_event(struct connection *connection, short events)
{
    (void)events; /* EOF or error: nothing more to say */
    connection_dispose(connection);
}

static void echo_output_drained(struct connection *connection)
{
    (void)connection; /* nothing is delivered: nothing to resume */
}

static void echo_free(struct connection *connection)
{
    connection_release(connection);
    free(connection);
}

static void echo_adapter_free(struct adapter_base *base) { free(base); }

static const struct connection_ops echo_connection_ops = {
    .protocol = "echo",
    .open = echo_open,
    .read = echo_read,
    .event = echo_event,
    .output_drained = echo_output_drained,
    .free = echo_free,
    .adapter_free = echo_adapter_free,
};

static struct adapter *echo_create(const struct adapter_context *context, char *err,
                                   size_t err_size)
{
    struct echo_adapter *adapter = (struct echo_adapter *)adapter_base_new(
        sizeof(struct echo_adapter), context, &echo_connection_ops, err, err_size);
    if (!adapter)
        return NULL;
    if (!config_section_values(*context->config, echo_config_section.name)) {
        snprintf(err, err_size, "echo: the configuration has no echo section");
        adapter_base_destroy((struct adapter *)adapter);
        return NULL;
    }
    adapter->lines = metrics_counter(context->metrics, "kbridge_echo_lines_total",
                                     "Lines echoed by the test adapter.", NULL);
    if (!adapter->lines) {
        snprintf(err, err_size, "echo: cannot register metrics");
        adapter_base_destroy((struct adapter *)adapter);
        return NULL;
    }
    return (struct adapter *)adapter;
}

const struct adapter_ops echo_adapter_ops = {
    .name = "echo",
    .title = "line echo (tests)",
    .detect = echo_detect,
    .addresses = NULL,
    .config_section = &echo_config_section,
    .create = echo_create,
    .accept = adapter_base_accept,
    .reconfigure = adapter_base_reconfigure,
    .drain = adapter_base_drain,
    .connection_count = adapter_base_connection_count,
    .destroy = adapter_base_destroy,
};
