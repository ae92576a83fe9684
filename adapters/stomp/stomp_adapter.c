/* stomp_adapter.c -- the STOMP adapter behind adapter.h: takes accepted
 * sockets (refusing those over limits.max_connections with an ERROR),
 * keeps the connection list, frees closed connections from a zero-timeout
 * event (never inside their own callbacks), registers the STOMP metrics,
 * and applies reload, drain and shutdown to every connection. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "stomp_adapter.h"
#include "stomp_address.h"
#include "stomp_connection.h"
#include "stomp_detect.h"

static const char *const stomp_error_kind_names[STOMP_KIND_COUNT] = {
    [STOMP_KIND_PARSE] = "parse",
    [STOMP_KIND_AUTH] = "auth",
    [STOMP_KIND_ACL] = "acl",
    [STOMP_KIND_INVALID] = "invalid",
    [STOMP_KIND_UNSUPPORTED] = "unsupported",
    [STOMP_KIND_KAFKA] = "kafka",
    [STOMP_KIND_LIMIT] = "limit",
    [STOMP_KIND_HEARTBEAT] = "heartbeat",
    [STOMP_KIND_INTERNAL] = "internal",
};

const char *stomp_error_kind_name(enum stomp_error_kind kind)
{
    return kind < STOMP_KIND_COUNT ? stomp_error_kind_names[kind] : "internal";
}

static struct stomp_adapter *stomp_adapter_of(struct adapter *adapter)
{
    return (struct stomp_adapter *)adapter;
}

const struct config *stomp_adapter_config(const struct stomp_adapter *adapter)
{
    return *adapter->context.config;
}

size_t stomp_adapter_output_high(const struct stomp_adapter *adapter)
{
    return adapter_output_high(stomp_adapter_config(adapter)->limits.max_frame_size);
}

int stomp_adapter_scratch_reserve(struct stomp_adapter *adapter, size_t headers, size_t text)
{
    if (headers > adapter->scratch_headers_cap) {
        size_t cap = adapter->scratch_headers_cap ? adapter->scratch_headers_cap : 32;
        while (cap < headers)
            cap *= 2;
        struct stomp_header *grown =
            realloc(adapter->scratch_headers, cap * sizeof(*adapter->scratch_headers));
        if (!grown)
            return -1;
        adapter->scratch_headers = grown;
        adapter->scratch_headers_cap = cap;
    }
    if (text > adapter->scratch_text_cap) {
        size_t cap = adapter->scratch_text_cap ? adapter->scratch_text_cap : 4096;
        while (cap < text)
            cap *= 2;
        char *grown = realloc(adapter->scratch_text, cap);
        if (!grown)
            return -1;
        adapter->scratch_text = grown;
        adapter->scratch_text_cap = cap;
    }
    return 0;
}

/* ---- deferred free -------------------------------------------------------------- */

void stomp_adapter_defer_free(struct stomp_adapter *adapter, struct stomp_connection *connection)
{
    if (connection->disused)
        return;
    connection->disused = true;
    connection->next_disused = adapter->disused;
    adapter->disused = connection;
    event_active(adapter->reap_event, EV_TIMEOUT, 0);
}

static void stomp_adapter_on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct stomp_adapter *adapter = arg;
    while (adapter->disused) {
        struct stomp_connection *connection = adapter->disused;
        adapter->disused = connection->next_disused;
        stomp_connection_free(connection);
    }
}

/* ---- adapter_ops ------------------------------------------------------------------ */

static struct adapter *stomp_adapter_create(const struct adapter_context *context, char *err,
                                            size_t err_size)
{
    struct stomp_adapter *adapter = calloc(1, sizeof(*adapter));
    if (!adapter) {
        snprintf(err, err_size, "stomp: out of memory");
        return NULL;
    }
    adapter->context = *context;
    struct metrics *metrics = context->metrics;
    char labels[64];
    metrics_label(labels, sizeof(labels), "protocol", "stomp");
    adapter->connections_gauge =
        metrics_gauge(metrics, "kbridge_connections", "Open client connections.", labels);
    adapter->frames_received =
        metrics_counter(metrics, "kbridge_stomp_frames_received_total",
                        "STOMP frames received from clients (heart-beats not counted).", NULL);
    adapter->frames_sent =
        metrics_counter(metrics, "kbridge_stomp_frames_sent_total",
                        "STOMP frames sent to clients (heart-beats not counted).", NULL);
    adapter->heartbeat_timeouts = metrics_counter(
        metrics, "kbridge_stomp_heartbeat_timeouts_total",
        "STOMP connections closed because the client missed its heart-beats.", NULL);
    bool ok = adapter->connections_gauge && adapter->frames_received && adapter->frames_sent &&
              adapter->heartbeat_timeouts;
    for (int kind = 0; kind < STOMP_KIND_COUNT && ok; kind++) {
        metrics_label(labels, sizeof(labels), "kind", stomp_error_kind_names[kind]);
        adapter->errors[kind] = metrics_counter(
            metrics, "kbridge_stomp_errors_total",
            "STOMP ERROR frames sent, by kind (every ERROR closes its connection).", labels);
        ok = adapter->errors[kind] != NULL;
    }
    adapter->reap_event = event_new(context->base, -1, 0, stomp_adapter_on_reap, adapter);
    if (!ok || !adapter->reap_event) {
        snprintf(err, err_size, "stomp: cannot register metrics or events (out of memory)");
        if (adapter->reap_event)
            event_free(adapter->reap_event);
        free(adapter);
        return NULL;
    }
    *adapter->connections_gauge = 0;
    return (struct adapter *)adapter;
}

static void stomp_adapter_accept(struct adapter *base_adapter, evutil_socket_t fd,
                                 const struct sockaddr *peer, int peer_len)
{
    struct stomp_adapter *adapter = stomp_adapter_of(base_adapter);
    const struct config *config = stomp_adapter_config(adapter);
    if (adapter->draining) { /* the listener is paused; a straggler is just closed */
        evutil_closesocket(fd);
        return;
    }
    bool refuse = adapter->connection_count >= config->limits.max_connections;
    stomp_connection_new(adapter, fd, peer, peer_len, refuse);
}

static void stomp_adapter_reconfigure(struct adapter *base_adapter)
{
    struct stomp_adapter *adapter = stomp_adapter_of(base_adapter);
    for (struct stomp_connection *c = adapter->connections; c; c = c->next)
        stomp_connection_reconfigure(c);
}

static void stomp_adapter_drain(struct adapter *base_adapter)
{
    struct stomp_adapter *adapter = stomp_adapter_of(base_adapter);
    adapter->draining = true;
    for (struct stomp_connection *c = adapter->connections; c; c = c->next)
        stomp_connection_drain(c);
    log_info("stomp", "draining: %zu connection(s) stop sending work", adapter->connection_count);
}

static size_t stomp_adapter_connection_count(const struct adapter *base_adapter)
{
    return ((const struct stomp_adapter *)base_adapter)->connection_count;
}

static void stomp_adapter_destroy(struct adapter *base_adapter)
{
    struct stomp_adapter *adapter = stomp_adapter_of(base_adapter);
    if (!adapter)
        return;
    /* Every connection is on `connections` until freed, disused or not. */
    adapter->disused = NULL;
    while (adapter->connections) {
        struct stomp_connection *connection = adapter->connections;
        stomp_connection_shutdown(connection);
        stomp_connection_free(connection); /* unlinks it */
    }
    event_free(adapter->reap_event);
    free(adapter->scratch_headers);
    free(adapter->scratch_text);
    free(adapter);
}

const struct adapter_ops stomp_adapter_ops = {
    .name = "stomp",
    .title = "STOMP 1.0-1.2",
    .detect = stomp_detect,
    .addresses = &stomp_addresses,
    .create = stomp_adapter_create,
    .accept = stomp_adapter_accept,
    .reconfigure = stomp_adapter_reconfigure,
    .drain = stomp_adapter_drain,
    .connection_count = stomp_adapter_connection_count,
    .destroy = stomp_adapter_destroy,
};
