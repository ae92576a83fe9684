/* amqp_adapter.c -- the AMQP 1.0 adapter behind adapter.h: takes accepted
 * sockets (those over limits.max_connections are opened and closed with
 * amqp:resource-limit-exceeded), keeps the connection list, frees finished
 * connections from a zero-timeout event (never inside their own callbacks),
 * registers the AMQP metrics and applies drain and shutdown. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp_adapter.h"
#include "amqp_address.h"
#include "amqp_connection.h"
#include "amqp_detect.h"
#include "config.h"
#include "log.h"
#include "metrics.h"

static const char *const amqp_error_kind_names[AMQP_KIND_COUNT] = {
    [AMQP_KIND_DECODE] = "decode",
    [AMQP_KIND_AUTH] = "auth",
    [AMQP_KIND_ACL] = "acl",
    [AMQP_KIND_ADDRESS] = "address",
    [AMQP_KIND_UNSUPPORTED] = "unsupported",
    [AMQP_KIND_KAFKA] = "kafka",
    [AMQP_KIND_LIMIT] = "limit",
    [AMQP_KIND_INTERNAL] = "internal",
};

static struct amqp_adapter *amqp_adapter_of(struct adapter *adapter)
{
    return (struct amqp_adapter *)adapter;
}

const struct config *amqp_adapter_config(const struct amqp_adapter *adapter)
{
    return *adapter->context.config;
}

size_t amqp_adapter_output_high(const struct amqp_adapter *adapter)
{
    return adapter_output_high(amqp_adapter_config(adapter)->limits.max_frame_size);
}

int amqp_adapter_buffer_reserve(struct amqp_adapter *adapter, size_t size)
{
    if (size <= adapter->buffer_cap)
        return 0;
    size_t cap = adapter->buffer_cap ? adapter->buffer_cap : 64 * 1024;
    while (cap < size)
        cap *= 2;
    char *grown = realloc(adapter->buffer, cap);
    if (!grown)
        return -1;
    adapter->buffer = grown;
    adapter->buffer_cap = cap;
    return 0;
}

void amqp_adapter_count_error(struct amqp_adapter *adapter, enum amqp_error_kind kind)
{
    if (kind < AMQP_KIND_COUNT && adapter->errors[kind])
        (*adapter->errors[kind])++;
}

/* ---- deferred free ------------------------------------------------------------------ */

void amqp_adapter_defer_free(struct amqp_adapter *adapter, struct amqp_connection *connection)
{
    if (connection->disused)
        return;
    connection->disused = true;
    connection->next_disused = adapter->disused;
    adapter->disused = connection;
    event_active(adapter->reap_event, EV_TIMEOUT, 0);
}

static void amqp_adapter_on_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct amqp_adapter *adapter = arg;
    while (adapter->disused) {
        struct amqp_connection *connection = adapter->disused;
        adapter->disused = connection->next_disused;
        amqp_connection_free(connection);
    }
}

/* ---- adapter_ops ------------------------------------------------------------------------ */

static struct adapter *amqp_adapter_create(const struct adapter_context *context, char *err,
                                           size_t err_size)
{
    struct amqp_adapter *adapter = calloc(1, sizeof(*adapter));
    if (!adapter) {
        snprintf(err, err_size, "amqp: out of memory");
        return NULL;
    }
    adapter->context = *context;
    struct metrics *metrics = context->metrics;
    char labels[64];
    metrics_label(labels, sizeof(labels), "protocol", "amqp");
    adapter->connections_gauge =
        metrics_gauge(metrics, "kbridge_connections", "Open client connections.", labels);
    adapter->transfers_received =
        metrics_counter(metrics, "kbridge_amqp_transfers_received_total",
                        "AMQP messages (complete transfers) received from clients.", NULL);
    adapter->transfers_sent = metrics_counter(metrics, "kbridge_amqp_transfers_sent_total",
                                              "AMQP messages sent to clients.", NULL);
    bool ok = adapter->connections_gauge && adapter->transfers_received && adapter->transfers_sent;
    for (int kind = 0; kind < AMQP_KIND_COUNT && ok; kind++) {
        metrics_label(labels, sizeof(labels), "kind", amqp_error_kind_names[kind]);
        adapter->errors[kind] = metrics_counter(
            metrics, "kbridge_amqp_errors_total",
            "AMQP error conditions sent (connection, link or rejected delivery), by kind.", labels);
        ok = adapter->errors[kind] != NULL;
    }
    adapter->message = pn_message();
    adapter->reap_event = event_new(context->base, -1, 0, amqp_adapter_on_reap, adapter);
    if (!ok || !adapter->reap_event || !adapter->message ||
        amqp_adapter_buffer_reserve(adapter, 64 * 1024) < 0) {
        snprintf(err, err_size, "amqp: cannot register metrics or events (out of memory)");
        if (adapter->reap_event)
            event_free(adapter->reap_event);
        if (adapter->message)
            pn_message_free(adapter->message);
        free(adapter->buffer);
        free(adapter);
        return NULL;
    }
    *adapter->connections_gauge = 0;
    return (struct adapter *)adapter;
}

static void amqp_adapter_accept(struct adapter *base_adapter, evutil_socket_t fd,
                                const struct sockaddr *peer, int peer_len)
{
    struct amqp_adapter *adapter = amqp_adapter_of(base_adapter);
    if (adapter->draining) {
        evutil_closesocket(fd);
        return;
    }
    bool refuse = adapter->connection_count >= amqp_adapter_config(adapter)->limits.max_connections;
    amqp_connection_new(adapter, fd, peer, peer_len, refuse);
}

static void amqp_adapter_reconfigure(struct adapter *base_adapter)
{
    (void)base_adapter; /* limits are read from the config when used */
}

static void amqp_adapter_drain(struct adapter *base_adapter)
{
    struct amqp_adapter *adapter = amqp_adapter_of(base_adapter);
    adapter->draining = true;
    for (struct amqp_connection *c = adapter->connections; c; c = c->next)
        amqp_connection_drain(c);
    log_info("amqp", "draining: %zu connection(s) get no more credit", adapter->connection_count);
}

static size_t amqp_adapter_connection_count(const struct adapter *base_adapter)
{
    return ((const struct amqp_adapter *)base_adapter)->connection_count;
}

static void amqp_adapter_destroy(struct adapter *base_adapter)
{
    struct amqp_adapter *adapter = amqp_adapter_of(base_adapter);
    if (!adapter)
        return;
    adapter->disused = NULL;
    while (adapter->connections) {
        struct amqp_connection *connection = adapter->connections;
        amqp_connection_shutdown(connection);
        amqp_connection_free(connection); /* unlinks it */
    }
    event_free(adapter->reap_event);
    pn_message_free(adapter->message);
    free(adapter->buffer);
    free(adapter);
}

const struct adapter_ops amqp_adapter_ops = {
    .name = "amqp",
    .title = "AMQP 1.0",
    .detect = amqp_detect,
    .addresses = &amqp_addresses,
    .create = amqp_adapter_create,
    .accept = amqp_adapter_accept,
    .reconfigure = amqp_adapter_reconfigure,
    .drain = amqp_adapter_drain,
    .connection_count = amqp_adapter_connection_count,
    .destroy = amqp_adapter_destroy,
};
