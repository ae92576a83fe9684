/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_connection.c -- one AMQP 1.0 client connection: bytes between a
 * bufferevent and proton's connection driver, proton's events dispatched to
 * the handlers, idle-timeout ticks, output backpressure and the orderly end.
 *
 * I/O LOOP (the shape of skupper-router's libwebsockets driver)
 * --------
 *  - read: input is copied into pn_connection_driver_read_buffer() and
 *    handed over with read_done(); then amqp_connection_run().
 *  - amqp_connection_run(): drain pn_connection_driver_next_event() into
 *    amqp_connection_dispatch(); copy write_buffer() into the bufferevent
 *    and write_done(); repeat until neither has anything; arm the tick
 *    timer from pn_transport_tick(); start closing once the driver's write
 *    side is closed.
 *  - Core callbacks (publish confirmed, a delivery, a subscription ready)
 *    change proton state outside an event; they call
 *    amqp_connection_schedule(), a zero-timeout event that runs the loop
 *    once, so a burst of confirmations becomes one write.
 *
 * BACKPRESSURE
 * ------------
 *  - Publishing: the client may send only what it has credit for. Each
 *    sending link gets up to AMQP_IN_CREDIT_WINDOW, and no more than the room
 *    left under limits.max_unconfirmed for the whole connection; credit is
 *    topped up as Kafka confirms (pre-settled transfers count until Kafka
 *    has them too, so a pre-settled flood is bounded the same way).
 *  - Delivering: a receiving link is blocked in the core while it has no
 *    credit or while the socket's output holds more than
 *    adapter_output_high() bytes (4 x limits.max_frame_size within 1-4 MiB;
 *    unblocked at half, from the write callback).
 *
 * CLOSE
 * -----
 *  Our close (error or shutdown) sets a condition and pn_connection_close();
 *  a client's close is answered the same way; EOF closes the driver's read
 *  side. Once proton has written its last frame (write side closed),
 *  connection_flush_then_close (the adapter base, connection.c) flushes it
 *  (at most CONNECTION_FLUSH_TIMEOUT_MS), ends the transport's write side
 *  and discards input until the peer closes (at most CONNECTION_LINGER_MS),
 *  so the close frame is not lost to a reset. Then the connection is freed
 *  from the base's reap event: links are unsubscribed (unsettled deliveries
 *  are released for redelivery), the core session is closed and publishes
 *  still waiting for Kafka are abandoned (amqp_link_in_done, once each).
 */
#include "amqp_connection.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <proton/connection.h>
#include <proton/delivery.h>
#include <proton/event.h>
#include <proton/link.h>
#include <proton/session.h>
#include <proton/transport.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "amqp_sasl.h"
#include "clock.h"
#include "config.h"
#include "core.h"
#include "listener.h"
#include "log.h"

static void amqp_connection_run(struct amqp_connection *connection);

static const struct config *amqp_connection_config(const struct amqp_connection *connection)
{
    return amqp_adapter_config(connection->adapter);
}

void amqp_condition_set(pn_condition_t *condition, const char *name, const char *format, ...)
{
    char description[512];
    va_list args;
    va_start(args, format);
    vsnprintf(description, sizeof(description), format, args);
    va_end(args);
    pn_condition_set_name(condition, name);
    pn_condition_set_description(condition, description);
}

/* ---- SASL ------------------------------------------------------------------------- */

/* The answer of core_authenticate_start: post the SASL outcome. */
static void amqp_connection_checked(void *opaque, int result, const char *user, const char *reason)
{
    struct amqp_connection *connection = opaque;
    connection->auth = NULL;
    if (result != CORE_OK) {
        amqp_adapter_count_error(connection->adapter, amqp_core_error(result)->login.kind);
        log_info("amqp", "%s: SASL %s refused for '%s': %s", connection->base.peer,
                 connection->auth_mechanism,
                 connection->auth_login[0] ? connection->auth_login : "(anonymous)",
                 reason ? reason : "");
        amqp_sasl_complete(connection->driver.transport, NULL, reason);
    } else {
        amqp_sasl_complete(connection->driver.transport, user, NULL);
    }
    amqp_connection_schedule(connection);
}

/* proton's SASL layer asks: the hash is checked on the worker pool. */
static int amqp_connection_check_credentials(void *opaque, const char *mechanism, const char *login,
                                             const char *password, char *user, size_t user_size,
                                             char *reason, size_t reason_size)
{
    struct amqp_connection *connection = opaque;
    struct amqp_adapter *adapter = connection->adapter;
    if (strcmp(mechanism, "EXTERNAL") == 0) { /* mTLS: no hash to check */
        snprintf(connection->auth_mechanism, sizeof(connection->auth_mechanism), "%s", mechanism);
        snprintf(connection->auth_login, sizeof(connection->auth_login), "%s", login);
        int rc = core_authenticate_certificate(adapter->base.context.core, login, user, user_size,
                                               reason, reason_size);
        if (rc != CORE_OK) {
            amqp_adapter_count_error(adapter, amqp_core_error(rc)->login.kind);
            log_info("amqp", "%s: SASL EXTERNAL refused: %s", connection->base.peer, reason);
            return -1;
        }
        return 0;
    }
    if (connection->auth) {
        snprintf(reason, reason_size, "a SASL check is already running");
        return -1;
    }
    snprintf(connection->auth_mechanism, sizeof(connection->auth_mechanism), "%s", mechanism);
    snprintf(connection->auth_login, sizeof(connection->auth_login), "%s", login ? login : "");
    connection->auth =
        core_authenticate_start_from(adapter->base.context.core, connection->base.peer, login,
                                     password, amqp_connection_checked, connection);
    if (!connection->auth) {
        amqp_adapter_count_error(adapter, AMQP_KIND_INTERNAL);
        snprintf(reason, reason_size, "out of memory checking the credentials");
        return -1;
    }
    return AMQP_SASL_PENDING;
}

/* ---- scheduling and output ---------------------------------------------------------- */

void amqp_connection_schedule(struct amqp_connection *connection)
{
    if (!connection->base.disused && connection->process_event)
        event_active(connection->process_event, EV_TIMEOUT, 0);
}

static void amqp_connection_on_process(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    amqp_connection_run(arg);
}

static void amqp_connection_block_deliveries(struct amqp_connection *connection, bool blocked)
{
    if (connection->output_blocked == blocked)
        return;
    connection->output_blocked = blocked;
    for (struct amqp_link *link = connection->links; link; link = link->next)
        if (link->outgoing)
            amqp_link_out_update_block(link);
}

void amqp_connection_update_credit(struct amqp_connection *connection)
{
    for (struct amqp_link *link = connection->links; link; link = link->next)
        if (!link->outgoing)
            amqp_link_in_update_credit(link);
}

/* ---- events ------------------------------------------------------------------------------ */

static void amqp_connection_session_closed(struct amqp_connection *connection,
                                           pn_session_t *session)
{
    struct amqp_link *link = connection->links;
    while (link) {
        struct amqp_link *next = link->next;
        if (pn_link_session(link->link) == session)
            amqp_link_free(link);
        link = next;
    }
}

static void amqp_connection_dispatch(struct amqp_connection *connection, pn_event_t *event)
{
    pn_connection_t *pc = connection->driver.connection;
    switch (pn_event_type(event)) {
    case PN_CONNECTION_REMOTE_OPEN: amqp_handle_connection_open(connection); break;
    case PN_CONNECTION_REMOTE_CLOSE: {
        pn_condition_t *condition = pn_connection_remote_condition(pc);
        if (pn_condition_is_set(condition))
            log_info("amqp", "%s: client closed the connection with %s: %s", connection->base.peer,
                     pn_condition_get_name(condition),
                     pn_condition_get_description(condition)
                         ? pn_condition_get_description(condition)
                         : "");
        if (!connection->base.close_reason)
            connection->base.close_reason = "client closed";
        if (!(pn_connection_state(pc) & PN_LOCAL_CLOSED)) {
            if (pn_connection_state(pc) & PN_LOCAL_UNINIT)
                pn_connection_open(pc);
            pn_connection_close(pc);
        }
        break;
    }
    case PN_SESSION_REMOTE_OPEN: {
        pn_session_t *session = pn_event_session(event);
        if (pn_session_state(session) & PN_LOCAL_UNINIT)
            pn_session_open(session);
        break;
    }
    case PN_SESSION_REMOTE_CLOSE: {
        pn_session_t *session = pn_event_session(event);
        amqp_connection_session_closed(connection, session);
        if (!(pn_session_state(session) & PN_LOCAL_CLOSED))
            pn_session_close(session);
        pn_session_free(session);
        break;
    }
    case PN_LINK_REMOTE_OPEN: amqp_handle_link_open(connection, pn_event_link(event)); break;
    case PN_LINK_REMOTE_CLOSE:
        amqp_handle_link_close(connection, pn_event_link(event), true);
        break;
    case PN_LINK_REMOTE_DETACH:
        amqp_handle_link_close(connection, pn_event_link(event), false);
        break;
    case PN_LINK_FLOW: {
        struct amqp_link *link = pn_link_get_context(pn_event_link(event));
        if (link && link->outgoing && !link->closed)
            amqp_link_out_flow(link);
        break;
    }
    case PN_DELIVERY: {
        pn_delivery_t *delivery = pn_event_delivery(event);
        struct amqp_link *link = pn_link_get_context(pn_delivery_link(delivery));
        if (!link || link->closed) {
            if (pn_link_is_receiver(pn_delivery_link(delivery)) && !pn_delivery_partial(delivery))
                pn_delivery_settle(delivery); /* for a link we refused: drop */
        } else if (link->outgoing) {
            amqp_link_out_disposition(link, delivery);
        } else {
            amqp_link_in_delivery(link, delivery);
        }
        break;
    }
    case PN_TRANSPORT_ERROR: {
        pn_condition_t *condition = pn_transport_condition(connection->driver.transport);
        const char *name = pn_condition_get_name(condition);
        const char *description = pn_condition_get_description(condition);
        const char *sasl = amqp_sasl_failure(connection->driver.transport);
        if (sasl && *sasl) {
            connection->base.close_reason = "authentication failed";
        } else {
            log_info("amqp", "%s: transport error %s: %s", connection->base.peer, name ? name : "?",
                     description ? description : "");
            if (!connection->base.close_reason)
                connection->base.close_reason = "transport error";
            if (name && strcmp(name, "amqp:connection:framing-error") != 0 &&
                strstr(name, "decode"))
                amqp_adapter_count_error(connection->adapter, AMQP_KIND_DECODE);
            else if (name && strstr(name, "framing"))
                amqp_adapter_count_error(connection->adapter, AMQP_KIND_DECODE);
        }
        break;
    }
    default: break;
    }
}

/* ---- close -------------------------------------------------------------------------------- */

static struct amqp_connection *amqp_connection_of(struct connection *base)
{
    return (struct amqp_connection *)base;
}

/* connection_ops.disposed: nobody is left for an outcome or a deadline. */
static void amqp_connection_on_disposed(struct connection *base)
{
    struct amqp_connection *connection = amqp_connection_of(base);
    core_authenticate_cancel(connection->auth);
    connection->auth = NULL;
    if (connection->tick_timer)
        evtimer_del(connection->tick_timer);
    if (connection->open_timer)
        evtimer_del(connection->open_timer);
}

static void amqp_connection_finish(struct amqp_connection *connection)
{
    connection_dispose(&connection->base);
}

void amqp_connection_close(struct amqp_connection *connection, const char *condition,
                           const char *description)
{
    pn_connection_t *pc = connection->driver.connection;
    if (!pc || (pn_connection_state(pc) & PN_LOCAL_CLOSED))
        return;
    if (condition) {
        amqp_condition_set(pn_connection_condition(pc), condition, "%s", description);
        if (!connection->base.close_reason)
            connection->base.close_reason = "closed with an error";
        log_info("amqp", "%s: closing the connection with %s: %s", connection->base.peer, condition,
                 description);
    }
    if (pn_connection_state(pc) & PN_LOCAL_UNINIT)
        pn_connection_open(pc);
    pn_connection_close(pc);
    amqp_connection_schedule(connection);
}

/* ---- the loop ---------------------------------------------------------------------------------
 */

static void amqp_connection_run(struct amqp_connection *connection)
{
    if (connection->base.disused || !connection->driver_ok)
        return;
    pn_connection_driver_t *driver = &connection->driver;
    struct evbuffer *output = bufferevent_get_output(connection->base.transport.stream);
    for (int rounds = 0; rounds < 1000; rounds++) {
        bool progress = false;
        pn_event_t *event;
        while ((event = pn_connection_driver_next_event(driver))) {
            amqp_connection_dispatch(connection, event);
            progress = true;
        }
        /* proton 0.37 stops reading at a frame it cannot decode, as if the
         * input had ended, and sends no close: drop the connection (the
         * client sees the socket close; the log says why). */
        if (pn_connection_driver_read_closed(driver) && !connection->base.read_eof &&
            !pn_connection_driver_write_closed(driver) &&
            !(pn_connection_state(driver->connection) & PN_REMOTE_CLOSED) &&
            !pn_condition_is_set(pn_transport_condition(driver->transport))) {
            amqp_adapter_count_error(connection->adapter, AMQP_KIND_DECODE);
            log_info("amqp", "%s: amqp:decode-error: a frame could not be decoded; closing",
                     connection->base.peer);
            connection->base.close_reason = "undecodable frame";
            pn_connection_driver_close(driver);
            progress = true;
        }
        /* Links whose subscription failed, closed in a core callback. */
        for (struct amqp_link *link = connection->links, *next; link; link = next) {
            next = link->next;
            if (link->closed)
                amqp_link_free(link);
        }
        pn_bytes_t pending = pn_connection_driver_write_buffer(driver);
        if (pending.size > 0 && !connection->base.lingering) {
            if (evbuffer_add(output, pending.start, pending.size) < 0) {
                log_warn("amqp", "%s: cannot queue %zu bytes of output (out of memory)",
                         connection->base.peer, pending.size);
                connection->base.close_reason = "out of memory";
                pn_connection_driver_close(driver);
                amqp_connection_finish(connection);
                return;
            }
            pn_connection_driver_write_done(driver, pending.size);
            progress = true;
        }
        if (!progress)
            break;
    }
    if (connection_output_above_high(&connection->base))
        amqp_connection_block_deliveries(connection, true);

    int64_t now = (int64_t)clock_monotonic_ms();
    int64_t deadline = pn_transport_tick(driver->transport, now);
    if (deadline > 0 && !pn_connection_driver_write_closed(driver)) {
        int64_t delay = deadline > now ? deadline - now : 0;
        struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)((delay % 1000) * 1000)};
        evtimer_add(connection->tick_timer, &tv);
    }
    if (pn_connection_driver_write_closed(driver) && !connection->base.closing) {
        /* The last frame is queued: flush it, then linger (the base). */
        evtimer_del(connection->tick_timer);
        connection_flush_then_close(&connection->base);
    }
}

/* No open within limits.handshake_timeout (a client stuck in or before SASL):
 * there is nobody to send a close to, drop the socket. */
static void amqp_connection_on_open_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct amqp_connection *connection = arg;
    if (connection->session || connection->base.disused)
        return;
    amqp_adapter_count_error(connection->adapter, AMQP_KIND_LIMIT);
    log_info("amqp", "%s: no AMQP open within limits.handshake_timeout (%llu ms); closing",
             connection->base.peer,
             (unsigned long long)adapter_base_config(&connection->adapter->base)
                 ->limits.handshake_timeout_ms);
    connection->base.close_reason = "no open in time";
    amqp_connection_finish(connection);
}

static void amqp_connection_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    amqp_connection_run(arg);
}

/* ---- stream callbacks (through the adapter base) ---------------------------------- */

/* connection_ops.read: bytes for proton (the base discards them once closing). */
/* AMQP 1.0 §5.2.1: "AMQP" 2 1 0 0 asks for in-band TLS, which kbridge does
 * not offer (TLS is the listener's: tls:). Answer with the header we do
 * speak (SASL, id 3) and close, as the spec asks of a server refusing a
 * protocol header. 1 refused, 0 not that header, -1 too few bytes yet. */
static int amqp_connection_refuse_tls_header(struct amqp_connection *connection,
                                             struct evbuffer *input)
{
    static const unsigned char tls_header[5] = {'A', 'M', 'Q', 'P', 2};
    static const unsigned char sasl_header[8] = {'A', 'M', 'Q', 'P', 3, 1, 0, 0};
    size_t len = evbuffer_get_length(input);
    size_t want = len < sizeof(tls_header) ? len : sizeof(tls_header);
    unsigned char *bytes = evbuffer_pullup(input, (ev_ssize_t)want);
    if (!bytes || memcmp(bytes, tls_header, want) != 0)
        return 0;
    if (want < sizeof(tls_header))
        return -1;
    log_info("amqp",
             "%s: the client asked for AMQP's in-band TLS layer (protocol id 2), which kbridge "
             "does not offer; answered with the SASL header and closed (connect with TLS to a "
             "listener with tls: set)",
             connection->base.peer);
    connection->base.close_reason = "in-band TLS (protocol id 2) requested";
    evbuffer_add(bufferevent_get_output(connection->base.transport.stream), sasl_header,
                 sizeof(sasl_header));
    connection_flush_then_close(&connection->base);
    return 1;
}

static void amqp_connection_on_read(struct connection *base)
{
    struct amqp_connection *connection = amqp_connection_of(base);
    struct evbuffer *input = bufferevent_get_input(base->transport.stream);
    pn_connection_driver_t *driver = &connection->driver;
    if (!connection->header_checked) {
        int refused = amqp_connection_refuse_tls_header(connection, input);
        if (refused != 0)
            return; /* refused, or wait for the fifth byte */
        connection->header_checked = true;
    }
    while (evbuffer_get_length(input) > 0) {
        if (pn_connection_driver_read_closed(driver)) {
            evbuffer_drain(input, evbuffer_get_length(input));
            break;
        }
        pn_rwbytes_t space = pn_connection_driver_read_buffer(driver);
        if (space.size == 0) {
            amqp_connection_run(connection);
            space = pn_connection_driver_read_buffer(driver);
            if (space.size == 0)
                break; /* proton takes no more now; the rest waits for the next read */
        }
        int n = evbuffer_remove(input, space.start, space.size);
        if (n <= 0)
            break;
        pn_connection_driver_read_done(driver, (size_t)n);
        amqp_connection_run(connection);
        if (connection->base.closing || connection->base.disused)
            break; /* the base discards the rest */
    }
}

/* connection_ops.output_drained: the output is down to half the high mark. */
static void amqp_connection_on_output_drained(struct connection *base)
{
    amqp_connection_block_deliveries(amqp_connection_of(base), false);
}

/* connection_ops.event: EOF, error or timeout before flush-then-close. */
static void amqp_connection_on_event(struct connection *base, short events)
{
    struct amqp_connection *connection = amqp_connection_of(base);
    if (events & BEV_EVENT_EOF) {
        if (!connection->base.close_reason)
            connection->base.close_reason = "client closed the socket";
        pn_connection_driver_read_close(&connection->driver);
        amqp_connection_run(connection);
        /* Nobody reads what is left to write: don't wait for it. */
        if (!connection->base.disused && pn_connection_driver_finished(&connection->driver))
            amqp_connection_finish(connection);
        else if (!connection->base.disused && !connection->base.closing)
            connection_dispose_after(&connection->base, CONNECTION_LINGER_MS);
    } else {
        if (!connection->base.close_reason)
            connection->base.close_reason = evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR());
        amqp_connection_finish(connection);
    }
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static int amqp_connection_setup_transport(struct amqp_connection *connection, char *err,
                                           size_t err_size)
{
    const struct config *config = amqp_connection_config(connection);
    if (pn_connection_driver_init(&connection->driver, NULL, NULL) != 0) {
        snprintf(err, err_size, "cannot create the AMQP connection (out of memory)");
        return -1;
    }
    connection->driver_ok = true;
    pn_transport_t *transport = connection->driver.transport;
    pn_transport_set_server(transport);
    uint64_t frame = config->limits.max_frame_size;
    if (frame < 512)
        frame = 512; /* AMQP's minimum max-frame-size */
    if (frame > UINT32_MAX)
        frame = UINT32_MAX;
    pn_transport_set_max_frame(transport, (uint32_t)frame);
    pn_transport_set_channel_max(transport, AMQP_MAX_SESSIONS - 1);
    uint64_t idle = config->limits.heartbeat_ms; /* announced and enforced; 0: none */
    pn_transport_set_idle_timeout(transport, idle > UINT32_MAX ? UINT32_MAX : (pn_millis_t)idle);
    /* mTLS: the listener's handshake is done, so the identity is known now */
    char identity[256];
    int has_identity =
        transport_peer_identity(&connection->base.transport, identity, sizeof(identity));
    if (has_identity < 0)
        log_info("amqp", "%s: no SASL EXTERNAL: %s", connection->base.peer, identity);
    if (amqp_sasl_install(transport, config->auth.anonymous, has_identity > 0 ? identity : NULL,
                          amqp_connection_check_credentials, connection, err, err_size) < 0)
        return -1;
    if (pn_connection_driver_bind(&connection->driver) != 0) {
        snprintf(err, err_size, "cannot bind the AMQP transport");
        return -1;
    }
    return 0;
}

/* connection_ops.open: take over an accepted socket. refuse: over
 * max_connections (open, then close with amqp:resource-limit-exceeded). */
static void amqp_connection_open(struct adapter_base *adapter_base, evutil_socket_t fd,
                                 const struct sockaddr *peer, int peer_len,
                                 struct bufferevent *stream, bool refuse)
{
    struct event_base *base = adapter_base->context.base;
    /* Linked from here on: amqp_connection_free undoes everything. */
    struct amqp_connection *connection = (struct amqp_connection *)connection_new(
        adapter_base, sizeof(struct amqp_connection), fd, peer, peer_len, stream);
    if (!connection)
        return;
    connection->adapter = (struct amqp_adapter *)adapter_base;
    connection->refused = refuse;
    connection->refused_limit = adapter_base->refusal;
    connection->refused_value = adapter_base->refusal_value;
    connection->process_event = event_new(base, -1, 0, amqp_connection_on_process, connection);
    connection->tick_timer = evtimer_new(base, amqp_connection_on_tick, connection);
    connection->open_timer = evtimer_new(base, amqp_connection_on_open_timer, connection);

    char err[256] = "out of memory";
    if (!connection->process_event || !connection->tick_timer || !connection->open_timer ||
        amqp_connection_setup_transport(connection, err, sizeof(err)) < 0) {
        log_error("amqp", "%s: cannot accept the connection: %s", connection->base.peer, err);
        connection->base.close_reason = "setup failed";
        amqp_connection_finish(connection);
        return;
    }
    bufferevent_enable(connection->base.transport.stream, EV_READ);
    log_info("amqp", "%s: connection opened (%s)%s", connection->base.peer,
             transport_name(&connection->base.transport),
             refuse ? " (over a connection limit)" : "");
    uint64_t open_ms = adapter_base_config(adapter_base)->limits.handshake_timeout_ms;
    struct timeval open_timeout = {(time_t)(open_ms / 1000), (suseconds_t)(open_ms % 1000) * 1000};
    evtimer_add(connection->open_timer, &open_timeout);
    amqp_connection_run(connection);
}

/* connection_ops.shutdown: close politely with amqp:connection:forced (the
 * base then flushes once). */
static void amqp_connection_on_shutdown(struct connection *base)
{
    struct amqp_connection *connection = amqp_connection_of(base);
    if (!connection->driver_ok || connection->base.lingering)
        return;
    amqp_connection_close(connection, "amqp:connection:forced", "the server is shutting down");
    amqp_connection_run(connection);
}

/* connection_ops.free: from the reap event or the adapter's destroy. */
static void amqp_connection_free(struct connection *base)
{
    struct amqp_connection *connection = amqp_connection_of(base);
    core_authenticate_cancel(connection->auth);
    connection->auth = NULL;
    while (connection->links)
        amqp_link_free(connection->links);
    /* After this no publish callback comes: the base abandons what waits. */
    core_session_close(connection->session); /* aborts open transactions */
    amqp_txns_free(connection);
    connection->session = NULL;
    if (connection->driver_ok)
        pn_connection_driver_destroy(&connection->driver);
    if (connection->process_event)
        event_free(connection->process_event);
    if (connection->tick_timer)
        event_free(connection->tick_timer);
    if (connection->open_timer)
        event_free(connection->open_timer);
    connection_release(&connection->base); /* closes the socket, unlinks */
    log_info("amqp", "%s: connection closed (%s) after %llu transfers in, %llu out",
             connection->base.peer,
             connection->base.close_reason ? connection->base.close_reason : "closed",
             (unsigned long long)connection->transfers_in,
             (unsigned long long)connection->transfers_out);
    free(connection);
}

const struct connection_ops amqp_connection_ops = {
    .protocol = "amqp",
    .open = amqp_connection_open,
    .read = amqp_connection_on_read,
    .event = amqp_connection_on_event,
    .output_drained = amqp_connection_on_output_drained,
    .disposed = amqp_connection_on_disposed,
    .shutdown = amqp_connection_on_shutdown,
    .free = amqp_connection_free,
    .adapter_free = amqp_adapter_free,
    .publish_done = amqp_link_in_done,
    .publish_retry = amqp_link_in_retry_held,
};
