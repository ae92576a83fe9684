/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_connection.c -- one STOMP client connection: socket I/O through a
 * bufferevent, feeding the parser, writing frames, flow control and the
 * orderly end of a connection.
 *
 * STATE MACHINE
 * -------------
 *   CONNECTING --CONNECT/STOMP accepted--> CONNECTED --ERROR / DISCONNECT done /
 *        |                                     |       heart-beat timeout /
 *        |                                     |       socket EOF or error--> CLOSING --> freed
 *        +--any other frame, bad frame, wrong credentials, CONNECT timeout--> CLOSING
 *
 *  - CONNECTING: no core session, no subscriptions, so nothing can be
 *    delivered. Frames are capped at STOMP_PREAUTH_MAX_FRAME (64 KiB, or
 *    max_frame_size if smaller) and CONNECT must arrive within
 *    limits.handshake_timeout (10 s). Anything but CONNECT/STOMP is answered
 *    with ERROR "expected CONNECT".
 *  - CONNECTED: frames go to stomp_dispatch(); deliveries go out as MESSAGE.
 *    After DISCONNECT nothing more is read and deliveries are blocked; the
 *    RECEIPT goes out once every publish of the connection is confirmed by
 *    Kafka, then the connection closes.
 *  - CLOSING: entered with the last frame (ERROR, DISCONNECT's RECEIPT)
 *    already queued. Nothing is read or written any more, deliveries are
 *    blocked (so an auto-ack subscription loses nothing).
 *    connection_flush_then_close (the adapter base, connection.c) flushes
 *    the output (at most CONNECTION_FLUSH_TIMEOUT_MS, 5 s), ends the
 *    transport's write side and discards input until the peer closes (at
 *    most CONNECTION_LINGER_MS, 2 s): closing with unread input would make
 *    the kernel send a RST that can destroy the ERROR frame before the
 *    client reads it. Then the connection goes on the base's reap list.
 *  - freed: from the base's zero-timeout reap event, never inside one of
 *    the connection's own callbacks. Subscriptions are ended (unsettled
 *    deliveries are released for redelivery), the core session is closed
 *    and publishes still waiting for Kafka are abandoned (stomp_send_done
 *    runs once for each: their records may still reach Kafka, but nobody
 *    is left to tell).
 *
 * BACKPRESSURE
 * ------------
 *  - Publishing: after a SEND, when this connection's unconfirmed publishes
 *    (core_session_unconfirmed) reach limits.max_unconfirmed, frames are no
 *    longer parsed; parsing resumes as soon as a confirmation brings it
 *    below max_unconfirmed (no hysteresis: waiting for half the window to
 *    drain left librdkafka without new records and cost 4x the throughput
 *    with a client window equal to max_unconfirmed). While paused the socket is still read, up to
 *    limits.max_frame_size bytes ahead (the bufferevent's read high
 *    watermark; a connection may buffer one such frame anyway): stopping
 *    the socket outright closed the client's TCP window, and reopening it
 *    waited for delayed ACKs (~40 ms stalls that cut STOMP publish
 *    throughput by 3-10x in kbridge-bench). An EOF that arrives while frames
 *    wait is held (eof_pending) until they are parsed. When
 *    core_publish answers CORE_ERR_BUSY (librdkafka's queue is full) the SEND
 *    is kept (busy_frame), reading stops, and the adapter base retries it
 *    (connection_publish_hold: when one of our publishes is confirmed or
 *    after CONNECTION_PUBLISH_RETRY_MS, whichever comes first).
 *  - Delivering: when the output buffer holds more than
 *    adapter_output_high() (4 x limits.max_frame_size within 1-4 MiB; plus
 *    the one frame that crossed it), every
 *    subscription of the connection is blocked in the core
 *    (core_subscription_block); the bufferevent's write low watermark is
 *    half of that, and its write callback unblocks them when the output has
 *    drained to it. The core's own bounds (prefetch credit, max_in_flight,
 *    the slow-subscriber policy of topics) take over while blocked.
 *  - While we are not reading, the client's heart-beats are not seen: the
 *    heart-beat check treats a connection we paused as alive.
 */
#include "stomp_connection.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "config.h"
#include "core.h"
#include "listener.h"
#include "log.h"
#include "stomp_handlers.h"

static void stomp_connection_process_input(struct stomp_connection *connection);

/* ---- helpers ---------------------------------------------------------------------- */

struct stomp_header stomp_header_make(const char *name, const char *value)
{
    struct stomp_header header = {name, value, strlen(name), strlen(value)};
    return header;
}

static const struct config *stomp_connection_config(const struct stomp_connection *connection)
{
    return stomp_adapter_config(connection->adapter);
}

static void stomp_connection_limits(const struct stomp_connection *connection,
                                    struct stomp_limits *limits)
{
    const struct config *config = stomp_connection_config(connection);
    uint64_t frame = config->limits.max_frame_size;
    if (connection->state != STOMP_STATE_CONNECTED && frame > STOMP_PREAUTH_MAX_FRAME)
        frame = STOMP_PREAUTH_MAX_FRAME;
    limits->max_frame_size = (size_t)frame;
    limits->max_headers = config->limits.max_headers;
    limits->max_header_length =
        frame < STOMP_MAX_HEADER_LINE ? (size_t)frame : (size_t)STOMP_MAX_HEADER_LINE;
}

/* Most bytes that one frame (plus its EOLs) can take in the input buffer:
 * pulling up more than this for the parser is never needed. */
static size_t stomp_connection_pull_limit(const struct stomp_connection *connection)
{
    struct stomp_limits limits;
    stomp_connection_limits(connection, &limits);
    return limits.max_frame_size + 4 * limits.max_headers + 1024;
}

static bool stomp_connection_may_parse(const struct stomp_connection *connection)
{
    return connection->state != STOMP_STATE_CLOSING && !connection->disconnecting &&
           !connection->auth && !connection->publish_paused && !connection->busy_frame &&
           !connection->adapter->base.draining;
}

/* ---- writing ---------------------------------------------------------------------- */

int stomp_connection_write(struct stomp_connection *connection, enum stomp_command command,
                           const struct stomp_header *headers, size_t header_count,
                           const void *body, size_t body_len)
{
    if (connection->state == STOMP_STATE_CLOSING)
        return -1;
    struct evbuffer *output = bufferevent_get_output(connection->base.transport.stream);
    bool content_length = body_len > 0 || command == STOMP_COMMAND_MESSAGE;
    if (stomp_frame_write(output, connection->version, command, headers, header_count, body,
                          body_len, content_length) < 0) {
        log_warn("stomp", "%s: cannot queue a %s frame (out of memory)", connection->base.peer,
                 stomp_command_name(command));
        return -1;
    }
    (*connection->adapter->frames_sent)++;
    connection->frames_out++;
    connection->last_sent_ms = clock_monotonic_coarse_ms();
    if (!connection->deliveries_blocked && connection_output_above_high(&connection->base)) {
        log_debug("stomp", "%s: output above %zu bytes, deliveries blocked", connection->base.peer,
                  adapter_base_output_high(&connection->adapter->base));
        stomp_connection_block_deliveries(connection, true);
    }
    return 0;
}

void stomp_connection_send_receipt(struct stomp_connection *connection, const char *receipt_id)
{
    struct stomp_header header = stomp_header_make("receipt-id", receipt_id);
    stomp_connection_write(connection, STOMP_COMMAND_RECEIPT, &header, 1, NULL, 0);
}

void stomp_connection_write_heartbeat(struct stomp_connection *connection)
{
    if (connection->state == STOMP_STATE_CLOSING)
        return;
    evbuffer_add(bufferevent_get_output(connection->base.transport.stream), "\n", 1);
    connection->last_sent_ms = clock_monotonic_coarse_ms();
}

/* ---- flow control ------------------------------------------------------------------- */

void stomp_connection_block_deliveries(struct stomp_connection *connection, bool blocked)
{
    if (connection->deliveries_blocked == blocked)
        return;
    connection->deliveries_blocked = blocked;
    for (struct stomp_subscription *sub = connection->subscriptions; sub; sub = sub->next) {
        if (!sub->core || sub->blocked == blocked)
            continue;
        sub->blocked = blocked;
        core_subscription_block(sub->core, blocked);
    }
}

/* Paused for publishing backpressure only: the socket may be read ahead. */
static bool stomp_connection_may_read_ahead(const struct stomp_connection *connection)
{
    return connection->state != STOMP_STATE_CLOSING && !connection->disconnecting &&
           !connection->adapter->base.draining && !connection->eof_pending &&
           (connection->publish_paused || connection->busy_frame);
}

void stomp_connection_update_reading(struct stomp_connection *connection)
{
    if (connection->state == STOMP_STATE_CLOSING)
        return;
    bool want = stomp_connection_may_parse(connection);
    if (want && !connection->reading) {
        bufferevent_setwatermark(connection->base.transport.stream, EV_READ, 0, 0);
        if (!connection->eof_pending)
            bufferevent_enable(connection->base.transport.stream, EV_READ);
        connection->reading = true;
        /* We were not reading: the client's heart-beats could not be seen. */
        connection->last_received_ms = clock_monotonic_coarse_ms();
        if (evbuffer_get_length(bufferevent_get_input(connection->base.transport.stream)) > 0 ||
            connection->eof_pending)
            event_active(connection->process_event, EV_TIMEOUT, 0);
    } else if (!want && connection->reading) {
        /* reading stays false while paused: heart-beats are not checked */
        connection->reading = false;
        if (stomp_connection_may_read_ahead(connection)) {
            struct stomp_limits limits;
            stomp_connection_limits(connection, &limits);
            bufferevent_setwatermark(connection->base.transport.stream, EV_READ, 0,
                                     limits.max_frame_size);
        } else {
            bufferevent_disable(connection->base.transport.stream, EV_READ);
        }
    } else if (!want && !stomp_connection_may_read_ahead(connection)) {
        /* e.g. paused, then draining */
        bufferevent_disable(connection->base.transport.stream, EV_READ);
    }
}

void stomp_connection_publish_done(struct stomp_connection *connection)
{
    if (connection->state == STOMP_STATE_CLOSING)
        return;
    uint32_t max_unconfirmed = stomp_connection_config(connection)->limits.max_unconfirmed;
    if (connection->publish_paused && connection->base.unconfirmed < max_unconfirmed) {
        connection->publish_paused = false;
        log_debug("stomp", "%s: %u publish(es) unconfirmed, reading again", connection->base.peer,
                  connection->base.unconfirmed);
        stomp_connection_update_reading(connection);
    }
    if (connection->disconnecting && connection->base.unconfirmed == 0) {
        if (connection->disconnect_receipt)
            stomp_connection_send_receipt(connection, connection->disconnect_receipt);
        stomp_connection_close(connection, "client disconnected");
    }
}

/* Zero-timeout work that must not run inside a core callback: parse input
 * that waited while reading was paused. */
static void stomp_connection_on_process(evutil_socket_t fd, short what, void *arg)
{
    struct stomp_connection *connection = arg;
    if (connection->state == STOMP_STATE_CLOSING)
        return;
    stomp_connection_update_reading(connection);
    if (stomp_connection_may_parse(connection))
        stomp_connection_process_input(connection);
}

/* connection_ops.publish_retry: the SEND that found Kafka's queue full
 * (busy_frame) goes again, then the input that waited behind it. */
static void stomp_connection_publish_retry(struct connection *base)
{
    struct stomp_connection *connection = (struct stomp_connection *)base;
    if (connection->state == STOMP_STATE_CLOSING || !connection->busy_frame)
        return;
    struct stomp_frame *frame = connection->busy_frame;
    connection->busy_frame = NULL;
    stomp_dispatch(connection, frame); /* may keep it again */
    stomp_connection_on_process(-1, 0, connection);
}

/* ---- reading ---------------------------------------------------------------------- */

static void stomp_connection_parse_failed(struct stomp_connection *connection, const char *reason)
{
    struct stomp_error error;
    stomp_fail(&error, STOMP_KIND_PARSE, reason,
               "The bytes received do not form a valid STOMP frame: %s. The stream cannot be "
               "resynchronised, so the connection is closed. Check the client's framing: each "
               "frame ends with a NUL byte, content-length (when sent) is exact, header values "
               "use only the escapes of the negotiated version, and frames stay within the "
               "server's limits (max_frame_size, max_headers).",
               reason);
    stomp_send_error(connection, &error, NULL);
}

/* Before CONNECT: when the first line is already there and is not CONNECT
 * or STOMP (an HTTP request, a TLS handshake, a frame sent too early), say
 * so now rather than wait for a NUL that may never come (the CONNECT
 * timeout). Returns true when it sent the ERROR. */
static bool stomp_connection_not_connect(struct stomp_connection *connection, const char *data,
                                         size_t len)
{
    if (len == 0 || data[0] == '\r' || data[0] == '\n')
        return false; /* EOLs between frames: the parser's business */
    const char *eol = memchr(data, '\n', len < 64 ? len : 64);
    size_t line = eol ? (size_t)(eol - data) : (len < 64 ? len : 64);
    if (eol && line > 0 && data[line - 1] == '\r')
        line--;
    static const char *const commands[] = {"CONNECT", "STOMP"};
    for (size_t i = 0; i < 2; i++) {
        size_t command_len = strlen(commands[i]);
        if (eol ? line == command_len && memcmp(data, commands[i], command_len) == 0
                : (line <= command_len && memcmp(data, commands[i], line) == 0) ||
                      (line == command_len + 1 && memcmp(data, commands[i], command_len) == 0 &&
                       data[command_len] == '\r'))
            return false; /* CONNECT, or the start of it */
    }
    char command[40];
    size_t n = 0;
    for (; n < line && n < 32; n++)
        command[n] = (data[n] >= 0x20 && data[n] < 0x7f) ? data[n] : '?';
    command[n] = '\0';
    struct stomp_error error;
    stomp_fail_as(&error, STOMP_KIND_INVALID, "Illegal command", "expected CONNECT",
                  "The first frame on a STOMP connection must be CONNECT (or STOMP), not '%s%s'. "
                  "Send CONNECT with accept-version, login and passcode first and wait for "
                  "CONNECTED.",
                  command, line > 32 ? "..." : "");
    stomp_send_error(connection, &error, NULL);
    return true;
}

/* Is part of a frame buffered (anything but heart-beat EOLs)? */
static bool stomp_connection_partial_frame(struct stomp_connection *connection)
{
    struct evbuffer *input = bufferevent_get_input(connection->base.transport.stream);
    struct evbuffer_iovec chunks[8];
    int n = evbuffer_peek(input, -1, NULL, chunks, 8);
    for (int i = 0; i < n && i < 8; i++) {
        const char *bytes = chunks[i].iov_base;
        for (size_t j = 0; j < chunks[i].iov_len; j++)
            if (bytes[j] != '\n' && bytes[j] != '\r')
                return true;
    }
    return n > 8; /* that many chunks are not all EOLs */
}

/* Feed buffered input to the parser and dispatch whole frames, while the
 * connection may take work. The parser needs each frame contiguous: it first
 * gets the input's first chunk; only when that holds an incomplete frame and
 * more bytes are buffered is the buffer pulled up (to at most one frame's
 * worth). libevent grows the first chunk geometrically, so a large frame
 * arriving in small reads is copied O(size) times in total. */
static void stomp_connection_parse_input(struct stomp_connection *connection)
{
    struct evbuffer *input = bufferevent_get_input(connection->base.transport.stream);
    size_t want = 0; /* 0: the first chunk as it is; else pull up this many bytes */
    while (stomp_connection_may_parse(connection)) {
        size_t available = evbuffer_get_length(input);
        if (available == 0)
            return;
        const char *data;
        size_t len;
        if (want == 0) {
            struct evbuffer_iovec chunk;
            if (evbuffer_peek(input, -1, NULL, &chunk, 1) < 1)
                return;
            data = chunk.iov_base;
            len = chunk.iov_len;
        } else {
            len = want < available ? want : available;
            data = (const char *)evbuffer_pullup(input, (ev_ssize_t)len);
            if (!data) {
                struct stomp_error error;
                stomp_fail(&error, STOMP_KIND_INTERNAL, "out of memory",
                           "The server could not buffer the frame being received.");
                stomp_send_error(connection, &error, NULL);
                return;
            }
        }

        size_t consumed = 0;
        struct stomp_frame *frame = NULL;
        char reason[256] = "";
        enum stomp_parse_status status =
            stomp_parse(connection->parser, data, len, &consumed, &frame, reason, sizeof(reason));
        if (status != STOMP_PARSE_ERROR && consumed > 0)
            evbuffer_drain(input, consumed);
        switch (status) {
        case STOMP_PARSE_FRAME:
            want = 0;
            (*connection->adapter->frames_received)++;
            connection->frames_in++;
            stomp_dispatch(connection, frame);
            break;
        case STOMP_PARSE_HEARTBEAT: want = 0; break;
        case STOMP_PARSE_NEED_MORE: {
            size_t left = available - consumed; /* bytes still buffered */
            size_t seen = len - consumed;       /* of which the parser has seen */
            if (connection->state == STOMP_STATE_CONNECTING &&
                stomp_connection_not_connect(connection, data + consumed, seen))
                return;
            if (seen >= left)
                return; /* wait for more bytes */
            size_t limit = stomp_connection_pull_limit(connection);
            if (seen >= limit) {
                stomp_connection_parse_failed(connection, "frame larger than max_frame_size");
                return;
            }
            want = left < limit ? left : limit;
            break;
        }
        case STOMP_PARSE_ERROR:
        default:
            stomp_connection_parse_failed(connection, reason[0] ? reason : "malformed frame");
            return;
        }
    }
}

static void stomp_connection_on_event(struct connection *base, short events);

/* Parse what is buffered; then act on an EOF that waited for it. */
static void stomp_connection_process_input(struct stomp_connection *connection)
{
    stomp_connection_parse_input(connection);
    if (connection->eof_pending && connection->state != STOMP_STATE_CLOSING &&
        stomp_connection_may_parse(connection)) {
        connection->eof_pending = false;
        stomp_connection_on_event(&connection->base, BEV_EVENT_EOF | BEV_EVENT_READING);
    }
}

static struct stomp_connection *stomp_connection_of(struct connection *base)
{
    return (struct stomp_connection *)base;
}

/* connection_ops.read: bytes arrived (the base discards them once closing). */
static void stomp_connection_on_read(struct connection *base)
{
    struct stomp_connection *connection = stomp_connection_of(base);
    connection->last_received_ms = clock_monotonic_coarse_ms(); /* any byte counts as traffic */
    if (connection->state == STOMP_STATE_CLOSING) {
        struct evbuffer *input = bufferevent_get_input(base->transport.stream);
        evbuffer_drain(input, evbuffer_get_length(input));
        return;
    }
    stomp_connection_process_input(connection);
}

/* ---- closing ---------------------------------------------------------------------- */

/* connection_ops.output_drained: the output is down to half the high mark. */
static void stomp_connection_on_output_drained(struct connection *base)
{
    struct stomp_connection *connection = stomp_connection_of(base);
    if (connection->state == STOMP_STATE_CLOSING)
        return;
    if (connection->deliveries_blocked && !connection->disconnecting) {
        log_debug("stomp", "%s: output drained, deliveries resumed", connection->base.peer);
        stomp_connection_block_deliveries(connection, false);
    }
}

/* Enter CLOSING: stop reading, heart-beats and deliveries. */
static void stomp_connection_begin_close(struct stomp_connection *connection, const char *reason)
{
    connection->state = STOMP_STATE_CLOSING;
    connection->base.close_reason = reason;
    core_authenticate_cancel(connection->auth); /* its answer would find nobody */
    connection->auth = NULL;
    stomp_heartbeat_stop(connection);
    /* Block before anything else: an auto-ack subscription must not get
     * deliveries that would never be written. */
    stomp_connection_block_deliveries(connection, true);
    bufferevent_disable(connection->base.transport.stream, EV_READ);
    connection->reading = false;
    struct evbuffer *input = bufferevent_get_input(connection->base.transport.stream);
    evbuffer_drain(input, evbuffer_get_length(input));
}

/* connection_ops.event: EOF, error or timeout before CLOSING. */
static void stomp_connection_on_event(struct connection *base, short events)
{
    struct stomp_connection *connection = stomp_connection_of(base);
    struct bufferevent *bev = base->transport.stream;
    /* Paused with frames still to parse: they were sent before the close
     * and are handled first (stomp_connection_process_input comes back). */
    if ((events & BEV_EVENT_EOF) && !(events & BEV_EVENT_ERROR) &&
        connection->state != STOMP_STATE_CLOSING && !stomp_connection_may_parse(connection) &&
        evbuffer_get_length(bufferevent_get_input(bev)) > 0) {
        connection->eof_pending = true;
        bufferevent_disable(bev, EV_READ);
        return;
    }
    /* The client shut its side in the middle of a frame (no NUL came): say
     * so, in case it still reads (a half-closed socket). Only while reading:
     * then what is buffered is an incomplete frame, not frames held back. */
    if ((events & BEV_EVENT_EOF) && !(events & BEV_EVENT_ERROR) &&
        connection->state != STOMP_STATE_CLOSING && connection->reading &&
        stomp_connection_may_parse(connection) && stomp_connection_partial_frame(connection)) {
        stomp_connection_parse_failed(connection, "the connection ended in the middle of a frame "
                                                  "(no NUL byte ended it)");
        return; /* closing: the linger sees the EOF and disposes */
    }
    if (connection->state != STOMP_STATE_CLOSING) {
        const char *reason = "closed by the client";
        if (events & BEV_EVENT_ERROR) {
            reason = "socket error";
            log_debug("stomp", "%s: socket error: %s", connection->base.peer,
                      evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        } else if (events & BEV_EVENT_TIMEOUT) {
            reason = "socket timeout";
        }
        stomp_connection_begin_close(connection, reason);
    }
    /* Nothing more can be written or read. */
    connection_dispose(&connection->base);
}

void stomp_connection_close(struct stomp_connection *connection, const char *reason)
{
    if (connection->state == STOMP_STATE_CLOSING)
        return;
    stomp_connection_begin_close(connection, reason);
    connection_flush_then_close(&connection->base);
}

/* ---- subscriptions ---------------------------------------------------------------- */

static uint64_t stomp_subscription_id_key(const char *id)
{
    return u64_map_string_key(id, strlen(id));
}

struct stomp_subscription *stomp_connection_find_subscription(struct stomp_connection *connection,
                                                              const char *id)
{
    for (struct stomp_subscription *sub =
             u64_map_get(&connection->subscriptions_by_id, stomp_subscription_id_key(id));
         sub; sub = sub->id_next)
        if (strcmp(sub->id, id) == 0)
            return sub;
    return NULL;
}

struct stomp_subscription *
stomp_connection_find_subscription_seq(struct stomp_connection *connection, uint32_t seq)
{
    return u64_map_get(&connection->subscriptions_by_seq, seq);
}

int stomp_connection_add_subscription(struct stomp_connection *connection,
                                      struct stomp_subscription *subscription)
{
    if (u64_map_reserve(&connection->subscriptions_by_seq) < 0 ||
        u64_map_reserve(&connection->subscriptions_by_id) < 0)
        return -1;
    do /* 0 is no key; after a wrap, skip numbers still in use */
        subscription->seq = ++connection->next_subscription_seq;
    while (!subscription->seq || u64_map_get(&connection->subscriptions_by_seq, subscription->seq));
    u64_map_put(&connection->subscriptions_by_seq, subscription->seq, subscription);
    uint64_t id_key = stomp_subscription_id_key(subscription->id);
    subscription->id_next = u64_map_get(&connection->subscriptions_by_id, id_key);
    u64_map_remove(&connection->subscriptions_by_id, id_key); /* it heads its key's chain */
    u64_map_put(&connection->subscriptions_by_id, id_key, subscription);
    subscription->prev = NULL;
    subscription->next = connection->subscriptions;
    if (connection->subscriptions)
        connection->subscriptions->prev = subscription;
    connection->subscriptions = subscription;
    connection->subscription_count++;
    return 0;
}

void stomp_subscription_forget(struct stomp_subscription *subscription,
                               struct stomp_unacked *unacked)
{
    if (unacked->prev)
        unacked->prev->next = unacked->next;
    else
        subscription->unacked_head = unacked->next;
    if (unacked->next)
        unacked->next->prev = unacked->prev;
    else
        subscription->unacked_tail = unacked->prev;
    subscription->unacked_count--;
    u64_map_remove(&subscription->unacked_by_seq, unacked->seq);
    free(unacked);
}

void stomp_subscription_remove(struct stomp_subscription *subscription)
{
    struct stomp_connection *connection = subscription->connection;
    if (subscription->core)
        core_unsubscribe(subscription->core); /* releases what was not settled */
    while (subscription->unacked_head) {
        struct stomp_unacked *next = subscription->unacked_head->next;
        free(subscription->unacked_head);
        subscription->unacked_head = next;
    }
    u64_map_free(&subscription->unacked_by_seq);
    u64_map_remove(&connection->subscriptions_by_seq, subscription->seq);
    uint64_t id_key = stomp_subscription_id_key(subscription->id);
    struct stomp_subscription *first = u64_map_get(&connection->subscriptions_by_id, id_key);
    if (first == subscription) {
        u64_map_remove(&connection->subscriptions_by_id, id_key);
        if (subscription->id_next) /* the slot just freed takes it */
            u64_map_put(&connection->subscriptions_by_id, id_key, subscription->id_next);
    } else {
        for (struct stomp_subscription *s = first; s; s = s->id_next)
            if (s->id_next == subscription) {
                s->id_next = subscription->id_next;
                break;
            }
    }
    if (subscription->prev)
        subscription->prev->next = subscription->next;
    else
        connection->subscriptions = subscription->next;
    if (subscription->next)
        subscription->next->prev = subscription->prev;
    connection->subscription_count--;
    free(subscription->id);
    free(subscription->destination_text);
    free(subscription->receipt);
    free(subscription);
}

/* ---- lifecycle -------------------------------------------------------------------- */

/* connection_ops.open: take over an accepted socket. refuse: send ERROR
 * "too many connections" and close. */
static void stomp_connection_open(struct adapter_base *adapter_base, evutil_socket_t fd,
                                  const struct sockaddr *peer, int peer_len,
                                  struct bufferevent *stream, bool refuse)
{
    struct event_base *base = adapter_base->context.base;
    /* Linked from here on: stomp_connection_free undoes everything. */
    struct stomp_connection *connection = (struct stomp_connection *)connection_new(
        adapter_base, sizeof(struct stomp_connection), fd, peer, peer_len, stream);
    if (!connection)
        return;
    connection->adapter = (struct stomp_adapter *)adapter_base;
    connection->state = STOMP_STATE_CONNECTING;
    connection->version = STOMP_VERSION_1_0;
    struct stomp_limits limits;
    stomp_connection_limits(connection, &limits);
    connection->parser = stomp_parser_new(&limits);
    connection->process_event = event_new(base, -1, 0, stomp_connection_on_process, connection);
    if (!connection->parser || !connection->process_event) {
        log_error("stomp", "%s: out of memory accepting the connection", connection->base.peer);
        connection->state = STOMP_STATE_CLOSING;
        connection->base.close_reason = "out of memory";
        connection_dispose(&connection->base);
        return;
    }
    connection->last_received_ms = connection->last_sent_ms = clock_monotonic_coarse_ms();
    log_info("stomp", "%s: connection opened (%s)%s", connection->base.peer,
             transport_name(&connection->base.transport),
             refuse ? " (over a connection limit)" : "");

    if (refuse) {
        connection->refused = true;
        struct stomp_error error;
        stomp_fail_as(&error, STOMP_KIND_LIMIT, "Bad CONNECT", "too many connections",
                      "The server has %u connections open already (%s%s). Try again later "
                      "or ask the operator to raise the limit.",
                      adapter_base->refusal_value, adapter_base->refusal,
                      strcmp(adapter_base->refusal, "limits.max_connections_per_address") == 0
                          ? ", from this address"
                          : ", every protocol together");
        stomp_send_error(connection, &error, NULL);
        return;
    }
    if (stomp_heartbeat_arm_connect_timeout(connection) < 0) {
        connection->state = STOMP_STATE_CLOSING;
        connection->base.close_reason = "out of memory";
        connection_dispose(&connection->base);
        return;
    }
    stomp_connection_update_reading(connection);
}

void stomp_connection_reconfigure(struct stomp_connection *connection)
{
    if (!connection->parser)
        return;
    struct stomp_limits limits;
    stomp_connection_limits(connection, &limits);
    stomp_parser_set_limits(connection->parser, &limits);
}

static void stomp_connection_on_reconfigure(struct connection *base)
{
    stomp_connection_reconfigure(stomp_connection_of(base));
}

/* connection_ops.drain: stop reading frames (the base's draining flag is set). */
static void stomp_connection_on_drain(struct connection *base)
{
    struct stomp_connection *connection = stomp_connection_of(base);
    if (connection->parser && !connection->base.disused)
        stomp_connection_update_reading(connection);
}

/* connection_ops.shutdown: a best-effort ERROR "server shutting down" (the
 * base then flushes once). */
static void stomp_connection_on_shutdown(struct connection *base)
{
    struct stomp_connection *connection = stomp_connection_of(base);
    if (connection->state == STOMP_STATE_CONNECTED && !connection->disconnecting) {
        static const char body[] =
            "kbridged is shutting down. Messages this connection published and got a RECEIPT "
            "for are stored in Kafka; unacknowledged deliveries will be redelivered. Reconnect "
            "to another node or when the server is back.";
        struct stomp_header headers[] = {
            stomp_header_make("message", "server shutting down"),
            stomp_header_make("content-type", "text/plain"),
        };
        stomp_connection_write(connection, STOMP_COMMAND_ERROR, headers, 2, body, sizeof(body) - 1);
        stomp_connection_close(connection, "server shutting down");
    }
}

/* connection_ops.free: from the reap event or the adapter's destroy. */
static void stomp_connection_free(struct connection *base)
{
    struct stomp_connection *connection = stomp_connection_of(base);
    core_authenticate_cancel(connection->auth);
    connection->auth = NULL;
    stomp_heartbeat_free(connection);
    while (connection->subscriptions)
        stomp_subscription_remove(connection->subscriptions);
    u64_map_free(&connection->subscriptions_by_seq);
    u64_map_free(&connection->subscriptions_by_id);
    /* After this no publish callback comes: the base abandons what waits. */
    core_session_close(connection->session); /* aborts the open transactions */
    connection->session = NULL;
    stomp_transactions_free(connection);
    stomp_frame_free(connection->busy_frame);
    if (connection->process_event)
        event_free(connection->process_event);
    stomp_parser_free(connection->parser);
    connection_release(&connection->base); /* closes the socket, unlinks */

    log_info("stomp", "%s: connection closed (%s); user %s, %llu frame(s) in, %llu out",
             connection->base.peer,
             connection->base.close_reason ? connection->base.close_reason : "closed",
             connection->user ? connection->user : "-", (unsigned long long)connection->frames_in,
             (unsigned long long)connection->frames_out);
    free(connection->user);
    free(connection->client_id);
    free(connection->disconnect_receipt);
    stomp_connect_wait_free(connection->connect);
    free(connection);
}

void stomp_connect_wait_free(struct stomp_connect_wait *wait)
{
    if (!wait)
        return;
    free(wait->receipt);
    free(wait->login);
    free(wait->vhost);
    free(wait);
}

const struct connection_ops stomp_connection_ops = {
    .protocol = "stomp",
    .open = stomp_connection_open,
    .read = stomp_connection_on_read,
    .event = stomp_connection_on_event,
    .output_drained = stomp_connection_on_output_drained,
    .reconfigure = stomp_connection_on_reconfigure,
    .drain = stomp_connection_on_drain,
    .shutdown = stomp_connection_on_shutdown,
    .free = stomp_connection_free,
    .adapter_free = stomp_adapter_free,
    .publish_done = stomp_send_done,
    .publish_retry = stomp_connection_publish_retry,
};
