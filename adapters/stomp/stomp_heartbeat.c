/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_heartbeat.c -- STOMP heart-beating and the CONNECT timeout (the
 * STOMP counterpart of mosquitto's keepalive.c).
 *
 * DESIGN
 * ------
 * Negotiation (STOMP 1.1 "Heart-beating"): the client's CONNECT says
 * heart-beat:cx,cy (it can send every cx ms, wants to receive every cy ms);
 * we answer heart-beat:sx,sy where each direction the client asked for gets
 * its own value, clamped to [stomp.heartbeat_min, limits.heartbeat]:
 * sx = clamp(cy), sy = clamp(cx), and 0 where the client said 0 (or sent no
 * header: STOMP 1.0 CONNECT gets heart-beat:0,0, as from RabbitMQ). So a
 * client asking for 1 s gets 1 s (dead-peer detection in ~2 s), not
 * limits.heartbeat; one asking for 60 s gets 60 s (the spec's max below);
 * limits.heartbeat = 0 turns heart-beating off. Then
 *   - we send something at least every max(sx, cy) ms, when both are > 0;
 *   - we expect something from the client at least every max(cx, sy) ms,
 *     when both are > 0, and give up after twice that (the grace the spec
 *     suggests for network delays).
 * Any byte counts: a frame or a heart-beat EOL. A missed beat gets ERROR
 * "heart-beat timeout" (if the socket still takes it), the connection is
 * closed and kbridge_stomp_errors_total{kind="heartbeat"} counts it.
 *
 * Cost: two timers per connection, no list walk. Each timer is one-shot and
 * re-armed for the exact remaining time on expiry, instead of being pushed
 * back on every frame: frames only store a timestamp (one clock_gettime).
 * The send timer writes an EOL only when nothing else was written for the
 * interval.
 *
 * Before CONNECT the receive timer is the CONNECT timeout
 * (limits.handshake_timeout): a socket that never says CONNECT does not
 * hold a connection slot for ever. While the connection has stopped reading
 * on purpose (publish backpressure, DISCONNECT) the client's beats cannot be
 * seen, so that time does not count against it. */
#include <event2/event.h>
#include <stdio.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "stomp_config.h"
#include "stomp_connection.h"
#include "stomp_handlers.h"

static void stomp_heartbeat_arm(struct event *timer, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(timer, &tv);
}

static void stomp_heartbeat_on_receive_timer(evutil_socket_t fd, short what, void *arg)
{
    struct stomp_connection *connection = arg;
    struct stomp_error error;
    if (connection->state == STOMP_STATE_CLOSING)
        return;
    if (connection->state == STOMP_STATE_CONNECTING) {
        stomp_fail(&error, STOMP_KIND_HEARTBEAT, "no CONNECT frame received",
                   "A STOMP connection must start with a CONNECT (or STOMP) frame and log in "
                   "within %llu ms of opening the socket (limits.handshake_timeout).",
                   (unsigned long long)adapter_base_config(&connection->adapter->base)
                       ->limits.handshake_timeout_ms);
        stomp_send_error(connection, &error, NULL);
        return;
    }
    if (connection->heartbeat_recv_ms == 0)
        return;
    uint64_t now = clock_monotonic_coarse_ms();
    if (!connection->reading)
        connection->last_received_ms = now; /* paused by us: the client is not to blame */
    uint64_t limit = 2 * (uint64_t)connection->heartbeat_recv_ms;
    uint64_t elapsed = now - connection->last_received_ms;
    if (elapsed < limit) {
        stomp_heartbeat_arm(connection->heartbeat_recv_timer, limit - elapsed);
        return;
    }
    (*connection->adapter->heartbeat_timeouts)++;
    stomp_fail(&error, STOMP_KIND_HEARTBEAT, "heart-beat timeout",
               "Nothing was received from the client for %llu ms; the negotiated heart-beat "
               "promised something at least every %u ms (the server allows twice that). Make "
               "sure the client sends heart-beats (stomp.py: heartbeats=(cx,cy); stompjs: "
               "heartbeatOutgoing) and that its I/O thread is not blocked.",
               (unsigned long long)elapsed, connection->heartbeat_recv_ms);
    stomp_send_error(connection, &error, NULL);
}

static void stomp_heartbeat_on_send_timer(evutil_socket_t fd, short what, void *arg)
{
    struct stomp_connection *connection = arg;
    if (connection->state == STOMP_STATE_CLOSING || connection->heartbeat_send_ms == 0)
        return;
    uint64_t interval = connection->heartbeat_send_ms;
    uint64_t elapsed = clock_monotonic_coarse_ms() - connection->last_sent_ms;
    /* 10% early is fine; it avoids re-arming for a millisecond or two. */
    if (elapsed >= interval - interval / 10) {
        stomp_connection_write_heartbeat(connection);
        elapsed = 0;
    }
    stomp_heartbeat_arm(connection->heartbeat_send_timer, interval - elapsed);
}

int stomp_heartbeat_arm_connect_timeout(struct stomp_connection *connection)
{
    if (!connection->heartbeat_recv_timer)
        connection->heartbeat_recv_timer = evtimer_new(
            connection->adapter->base.context.base, stomp_heartbeat_on_receive_timer, connection);
    if (!connection->heartbeat_recv_timer)
        return -1;
    stomp_heartbeat_arm(
        connection->heartbeat_recv_timer,
        adapter_base_config(&connection->adapter->base)->limits.handshake_timeout_ms);
    return 0;
}

/* What we offer for one direction the client asked for (`wanted` ms, 0:
 * none): its own value within [floor, ceiling]; 0 when it wants none or
 * heart-beating is off (ceiling 0). */
static uint32_t stomp_heartbeat_clamp(uint32_t wanted, uint64_t floor, uint64_t ceiling)
{
    if (wanted == 0 || ceiling == 0)
        return 0;
    uint64_t ms = wanted;
    if (ms > ceiling)
        ms = ceiling;
    if (ms < floor)
        ms = floor;
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

int stomp_heartbeat_negotiate(struct stomp_connection *connection, const char *header, char *reply,
                              size_t reply_size)
{
    uint32_t cx = 0, cy = 0;
    if (header && stomp_heartbeat_parse(header, &cx, &cy) < 0)
        return -1;
    const struct config *config = stomp_adapter_config(connection->adapter);
    uint64_t floor_ms = stomp_config_of(config)->heartbeat_min_ms;
    uint32_t sx = stomp_heartbeat_clamp(cy, floor_ms, config->limits.heartbeat_ms);
    uint32_t sy = stomp_heartbeat_clamp(cx, floor_ms, config->limits.heartbeat_ms);
    connection->heartbeat_send_ms = (sx && cy) ? (sx > cy ? sx : cy) : 0;
    connection->heartbeat_recv_ms = (cx && sy) ? (cx > sy ? cx : sy) : 0;
    snprintf(reply, reply_size, "%u,%u", sx, sy);
    return 0;
}

int stomp_heartbeat_start(struct stomp_connection *connection)
{
    struct event_base *base = connection->adapter->base.context.base;
    if (connection->heartbeat_recv_timer)
        event_del(connection->heartbeat_recv_timer); /* the CONNECT timeout */
    uint64_t now = clock_monotonic_coarse_ms();
    connection->last_received_ms = now;
    connection->last_sent_ms = now;
    if (connection->heartbeat_recv_ms > 0) {
        if (!connection->heartbeat_recv_timer)
            connection->heartbeat_recv_timer =
                evtimer_new(base, stomp_heartbeat_on_receive_timer, connection);
        if (!connection->heartbeat_recv_timer)
            return -1;
        stomp_heartbeat_arm(connection->heartbeat_recv_timer,
                            2 * (uint64_t)connection->heartbeat_recv_ms);
    }
    if (connection->heartbeat_send_ms > 0) {
        if (!connection->heartbeat_send_timer)
            connection->heartbeat_send_timer =
                evtimer_new(base, stomp_heartbeat_on_send_timer, connection);
        if (!connection->heartbeat_send_timer)
            return -1;
        stomp_heartbeat_arm(connection->heartbeat_send_timer, connection->heartbeat_send_ms);
    }
    log_debug("stomp", "%s: heart-beat: send every %u ms, expect every %u ms",
              connection->base.peer, connection->heartbeat_send_ms, connection->heartbeat_recv_ms);
    return 0;
}

void stomp_heartbeat_stop(struct stomp_connection *connection)
{
    /* Only disarm: this may run inside one of these timers' callbacks. */
    if (connection->heartbeat_recv_timer)
        event_del(connection->heartbeat_recv_timer);
    if (connection->heartbeat_send_timer)
        event_del(connection->heartbeat_send_timer);
}

void stomp_heartbeat_free(struct stomp_connection *connection)
{
    if (connection->heartbeat_recv_timer) {
        event_free(connection->heartbeat_recv_timer);
        connection->heartbeat_recv_timer = NULL;
    }
    if (connection->heartbeat_send_timer) {
        event_free(connection->heartbeat_send_timer);
        connection->heartbeat_send_timer = NULL;
    }
}
