/* SPDX-License-Identifier: Apache-2.0 */
/* connection.c -- the adapter base (connection.h): the connection list,
 * deferred free, accept/refuse, drain, reload, shutdown, the bufferevent
 * callbacks with output watermarks and flush-then-close-then-linger, and
 * the publishes waiting for Kafka, for every protocol adapter alike. */
#include "connection.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "core.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "transport_ws.h"

/* ---- the adapter ------------------------------------------------------------ */

static void adapter_base_on_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct adapter_base *base = arg;
    while (base->disused) {
        struct connection *connection = base->disused;
        base->disused = connection->next_disused;
        base->ops->free(connection);
    }
}

struct adapter_base *adapter_base_new(size_t size, const struct adapter_context *context,
                                      const struct connection_ops *ops, char *err, size_t err_size)
{
    struct adapter_base *base = calloc(1, size);
    if (!base) {
        snprintf(err, err_size, "%s: out of memory", ops->protocol);
        return NULL;
    }
    base->context = *context;
    base->ops = ops;
    char labels[64];
    metrics_label(labels, sizeof(labels), "protocol", ops->protocol);
    base->connections_gauge =
        metrics_gauge(context->metrics, "kbridge_connections", "Open client connections.", labels);
    base->reap_event = event_new(context->base, -1, 0, adapter_base_on_reap, base);
    if (!base->connections_gauge || !base->reap_event) {
        snprintf(err, err_size, "%s: cannot register metrics or events (out of memory)",
                 ops->protocol);
        if (base->reap_event)
            event_free(base->reap_event);
        free(base);
        return NULL;
    }
    *base->connections_gauge = 0;
    return base;
}

const struct config *adapter_base_config(const struct adapter_base *base)
{
    return *base->context.config;
}

size_t adapter_base_output_high(const struct adapter_base *base)
{
    return adapter_output_high(adapter_base_config(base)->limits.max_frame_size);
}

static struct adapter_base *adapter_base_of(struct adapter *adapter)
{
    return (struct adapter_base *)adapter;
}

void adapter_base_accept(struct adapter *adapter, evutil_socket_t fd, const struct sockaddr *peer,
                         int peer_len, struct bufferevent *stream,
                         const struct config_listener *listener)
{
    struct adapter_base *base = adapter_base_of(adapter);
    if (base->draining) { /* the listener is paused; a straggler is just closed */
        if (stream)
            bufferevent_free(stream); /* closes fd */
        else
            evutil_closesocket(fd);
        return;
    }
    const struct config *config = adapter_base_config(base);
    char address[64] = "(unknown)"; /* as transport_open_tcp names the peer */
    if (peer && peer_len > 0)
        listener_format_address(peer, address, sizeof(address));
    base->refusal = NULL;
    base->refusal_value = 0;
    if (base->context.core) {
        base->refusal = core_connection_admit(base->context.core, address, &base->refusal_value);
    } else if (base->connection_count >= config->limits.max_connections) {
        base->refusal = "limits.max_connections";
        base->refusal_value = config->limits.max_connections;
    }
    base->admitted = base->context.core && !base->refusal;
    base->accepting = listener;
    base->ops->open(base, fd, peer, peer_len, stream, base->refusal != NULL);
    if (base->admitted) /* no connection took it over (connection_new failed) */
        core_connection_release(base->context.core, address);
    base->accepting = NULL;
    base->refusal = NULL;
    base->admitted = false;
}

size_t adapter_base_connection_count(const struct adapter *adapter)
{
    return ((const struct adapter_base *)adapter)->connection_count;
}

void adapter_base_reconfigure(struct adapter *adapter)
{
    struct adapter_base *base = adapter_base_of(adapter);
    size_t high = adapter_base_output_high(base);
    for (struct connection *c = base->connections; c; c = c->next) {
        if (c->closing || c->disused)
            continue;
        bufferevent_setwatermark(c->transport.stream, EV_WRITE, high / 2, 0);
        if (base->ops->reconfigure)
            base->ops->reconfigure(c);
    }
}

void adapter_base_drain(struct adapter *adapter)
{
    struct adapter_base *base = adapter_base_of(adapter);
    base->draining = true;
    if (base->ops->drain)
        for (struct connection *c = base->connections; c; c = c->next)
            base->ops->drain(c);
    log_info(base->ops->protocol, "draining: %zu connection(s) take no more work",
             base->connection_count);
}

void adapter_base_destroy(struct adapter *adapter)
{
    struct adapter_base *base = adapter_base_of(adapter);
    if (!base)
        return;
    /* Every connection is on `connections` until freed, disused or not. */
    base->disused = NULL;
    while (base->connections) {
        struct connection *connection = base->connections;
        if (!connection->disused && base->ops->shutdown)
            base->ops->shutdown(connection);
        transport_flush_now(&connection->transport);
        base->ops->free(connection); /* unlinks it (connection_release) */
    }
    if (base->reap_event)
        event_free(base->reap_event);
    base->reap_event = NULL;
    base->ops->adapter_free(base);
}

size_t core_error_row(int code)
{
    if (code >= 0 || code < CORE_ERR_IN_USE) /* the lowest enum core_error value */
        return (size_t)-CORE_ERR_INTERNAL;
    return (size_t)-code;
}

/* ---- closing ---------------------------------------------------------------------- */

void connection_dispose(struct connection *connection)
{
    if (connection->disused)
        return;
    if (connection->close_timer)
        event_del(connection->close_timer);
    struct adapter_base *base = connection->adapter;
    if (base->ops->disposed)
        base->ops->disposed(connection);
    connection->disused = true;
    connection->next_disused = base->disused;
    base->disused = connection;
    event_active(base->reap_event, EV_TIMEOUT, 0);
}

void connection_dispose_after(struct connection *connection, uint32_t ms)
{
    if (connection->disused)
        return;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (!connection->close_timer || event_add(connection->close_timer, &tv) < 0)
        connection_dispose(connection);
}

/* The output is flushed: end our direction and discard input until the
 * peer closes, so that the kernel does not answer unread input with a RST
 * that could destroy the last frame before the client reads it. */
static void connection_linger(struct connection *connection)
{
    if (connection->lingering || connection->disused)
        return;
    connection->lingering = true;
    if (connection->read_eof || transport_shutdown_write(&connection->transport) < 0) {
        connection_dispose(connection);
        return;
    }
    struct evbuffer *input = bufferevent_get_input(connection->transport.stream);
    evbuffer_drain(input, evbuffer_get_length(input));
    bufferevent_setwatermark(connection->transport.stream, EV_READ, 0, 0);
    bufferevent_enable(connection->transport.stream, EV_READ);
    connection_dispose_after(connection, CONNECTION_LINGER_MS);
}

void connection_flush_then_close(struct connection *connection)
{
    if (connection->closing || connection->disused)
        return;
    connection->closing = true;
    struct bufferevent *stream = connection->transport.stream;
    bufferevent_disable(stream, EV_READ);
    struct evbuffer *input = bufferevent_get_input(stream);
    evbuffer_drain(input, evbuffer_get_length(input));
    if (evbuffer_get_length(bufferevent_get_output(stream)) == 0) {
        connection_linger(connection);
        return;
    }
    bufferevent_setwatermark(stream, EV_WRITE, 0, 0);
    bufferevent_enable(stream, EV_WRITE);
    connection_dispose_after(connection, CONNECTION_FLUSH_TIMEOUT_MS);
}

static void connection_on_publish_retry(evutil_socket_t fd, short what, void *arg);

static void connection_on_close_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct connection *connection = arg;
    if (connection->closing && !connection->lingering) {
        log_info(connection->adapter->ops->protocol,
                 "%s: the client did not read the last frame within %d ms", connection->peer,
                 CONNECTION_FLUSH_TIMEOUT_MS);
        if (!connection->close_reason)
            connection->close_reason = "close not flushed in time";
    }
    connection_dispose(connection);
}

/* ---- bufferevent callbacks --------------------------------------------------------- */

static void connection_on_read(struct bufferevent *stream, void *arg)
{
    struct connection *connection = arg;
    if (connection->closing || connection->disused) {
        struct evbuffer *input = bufferevent_get_input(stream);
        evbuffer_drain(input, evbuffer_get_length(input));
        return;
    }
    connection->adapter->ops->read(connection);
}

static void connection_on_write(struct bufferevent *stream, void *arg)
{
    struct connection *connection = arg;
    if (connection->disused)
        return;
    size_t length = evbuffer_get_length(bufferevent_get_output(stream));
    if (connection->closing) {
        if (length == 0)
            connection_linger(connection);
        return;
    }
    if (length <= adapter_base_output_high(connection->adapter) / 2 &&
        connection->adapter->ops->output_drained)
        connection->adapter->ops->output_drained(connection);
}

static void connection_on_event(struct bufferevent *stream, short events, void *arg)
{
    (void)stream;
    struct connection *connection = arg;
    if (!(events & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
        return;
    if (events & BEV_EVENT_EOF)
        connection->read_eof = true;
    if (connection->disused)
        return;
    if (connection->closing) { /* nothing more can be written or read */
        connection_dispose(connection);
        return;
    }
    connection->adapter->ops->event(connection, events);
}

/* ---- a connection -------------------------------------------------------------------- */

struct connection *connection_new(struct adapter_base *base, size_t size, evutil_socket_t fd,
                                  const struct sockaddr *peer, int peer_len,
                                  struct bufferevent *tls_stream)
{
    struct connection *connection = calloc(1, size);
    if (!connection) {
        log_error(base->ops->protocol, "out of memory accepting a connection");
        if (tls_stream)
            bufferevent_free(tls_stream); /* closes fd */
        else
            evutil_closesocket(fd);
        return NULL;
    }
    connection->adapter = base;
    connection->peer = connection->transport.peer;
    /* TLS when the listener made a stream, else TCP; WebSocket stacked on
     * either when the listener says `transport: websocket` (wss over TLS). */
    int opened = tls_stream
                     ? transport_open_tls(&connection->transport, tls_stream, fd, peer, peer_len)
                     : transport_open_tcp(&connection->transport, base->context.base,
                                          base->ops->protocol, fd, peer, peer_len);
    const struct config_listener *listener = base->accepting;
    if (opened == 0 && listener && config_listener_is_websocket(listener))
        opened = transport_ws_stack(&connection->transport, base->context.base, base->ops->protocol,
                                    base->context.config, listener->name,
                                    adapter_base_config(base)->limits.handshake_timeout_ms);
    if (opened < 0) {
        free(connection);
        return NULL;
    }
    connection->close_timer =
        evtimer_new(base->context.base, connection_on_close_timer, connection);
    connection->publish_retry_event =
        evtimer_new(base->context.base, connection_on_publish_retry, connection);
    if (!connection->close_timer || !connection->publish_retry_event) {
        log_error(base->ops->protocol, "%s: out of memory accepting the connection",
                  connection->peer);
        if (connection->close_timer)
            event_free(connection->close_timer);
        if (connection->publish_retry_event)
            event_free(connection->publish_retry_event);
        transport_close(&connection->transport);
        free(connection);
        return NULL;
    }
    connection->admitted = base->admitted;
    base->admitted = false;
    connection->next = base->connections;
    if (base->connections)
        base->connections->prev = connection;
    base->connections = connection;
    base->connection_count++;
    *base->connections_gauge = (double)base->connection_count;

    struct bufferevent *stream = connection->transport.stream;
    bufferevent_setcb(stream, connection_on_read, connection_on_write, connection_on_event,
                      connection);
    bufferevent_setwatermark(stream, EV_WRITE, adapter_base_output_high(base) / 2, 0);
    bufferevent_enable(stream, EV_WRITE);
    /* Bytes a shared TLS listener read to tell the protocol wait in the
     * input: a deferred read callback hands them over once the adapter has
     * finished opening (no new bytes may come to wake it). */
    if (evbuffer_get_length(bufferevent_get_input(stream)) > 0)
        bufferevent_trigger(stream, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
    return connection;
}

void connection_release(struct connection *connection)
{
    struct adapter_base *base = connection->adapter;
    while (connection->publishes) {
        struct connection_publish *publish = connection->publishes;
        connection_publish_cancel(publish);
        base->ops->publish_done(publish, CONNECTION_PUBLISH_ABANDONED,
                                "the connection closed before Kafka answered");
    }
    transport_close(&connection->transport);
    if (connection->admitted)
        core_connection_release(base->context.core, connection->peer);
    connection->admitted = false;
    if (connection->close_timer)
        event_free(connection->close_timer);
    connection->close_timer = NULL;
    if (connection->publish_retry_event)
        event_free(connection->publish_retry_event);
    connection->publish_retry_event = NULL;
    connection->publish_holding = false;
    if (connection->prev)
        connection->prev->next = connection->next;
    else
        base->connections = connection->next;
    if (connection->next)
        connection->next->prev = connection->prev;
    connection->prev = connection->next = NULL;
    base->connection_count--;
    *base->connections_gauge = (double)base->connection_count;
}

size_t connection_output_length(const struct connection *connection)
{
    return evbuffer_get_length(bufferevent_get_output(connection->transport.stream));
}

bool connection_output_above_high(const struct connection *connection)
{
    return connection_output_length(connection) > adapter_base_output_high(connection->adapter);
}

/* ---- publishes ------------------------------------------------------------------------ */

void connection_publish_begin(struct connection *connection, struct connection_publish *publish)
{
    publish->connection = connection;
    publish->prev = NULL;
    publish->next = connection->publishes;
    if (connection->publishes)
        connection->publishes->prev = publish;
    connection->publishes = publish;
    connection->unconfirmed++;
}

void connection_publish_cancel(struct connection_publish *publish)
{
    struct connection *connection = publish->connection;
    if (publish->prev)
        publish->prev->next = publish->next;
    else
        connection->publishes = publish->next;
    if (publish->next)
        publish->next->prev = publish->prev;
    publish->prev = publish->next = NULL;
    connection->unconfirmed--;
}

void connection_publish_confirmed(void *opaque, int err, const char *reason)
{
    struct connection_publish *publish = opaque;
    struct connection *connection = publish->connection;
    connection_publish_cancel(publish);
    connection->adapter->ops->publish_done(publish, err, reason);
    /* room in Kafka's queue, perhaps: retry outside the core's callback */
    if (connection->publish_holding)
        event_active(connection->publish_retry_event, EV_TIMEOUT, 0);
}

static void connection_on_publish_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct connection *connection = arg;
    evtimer_del(connection->publish_retry_event);
    if (!connection->publish_holding)
        return;
    connection->publish_holding = false;
    if (!connection->closing && !connection->disused && connection->adapter->ops->publish_retry)
        connection->adapter->ops->publish_retry(connection); /* may hold again */
}

int connection_publish_hold(struct connection *connection)
{
    connection->publish_holding = true;
    struct timeval wait = {0, CONNECTION_PUBLISH_RETRY_MS * 1000};
    if (evtimer_add(connection->publish_retry_event, &wait) < 0) {
        log_warn(connection->adapter->ops->protocol,
                 "%s: cannot arm the retry of a held publish: it waits for a confirmation",
                 connection->peer);
        return -1;
    }
    return 0;
}

_Static_assert(-CORE_ERR_INTERNAL < CORE_ERROR_ROWS, "CORE_ERROR_ROWS must cover enum core_error");
