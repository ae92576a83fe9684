/* SPDX-License-Identifier: Apache-2.0 */
/* bench_amqp091.c -- kbridge-bench's AMQP 0-9-1 client: librabbitmq
 * (rabbitmq-c) over one blocking socket per session, PLAIN login, channel 1.
 * Publishers declare the queue (durable) and publish to the default exchange
 * with the queue's name as routing key: --confirm unsettled keeps --window
 * publisher confirms in flight, each waits for every confirm before the next
 * publish, none publishes without confirm.select. Consumers set basic.qos to
 * the prefetch and ack each delivery. Request-reply: the responder consumes
 * the queue and answers to reply_to through the default exchange; the
 * requester's replies come to a server-named exclusive queue of its own, or
 * with --reply-to direct through RabbitMQ's direct reply-to (a no-ack
 * consumer of amq.rabbitmq.reply-to, the same name as reply_to). */
#include "bench.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#define AMQP091_CHANNEL 1
#define AMQP091_FRAME_MAX 131072

struct amqp091_client {
    amqp_connection_state_t conn;
};

/* Describe a failed RPC reply into session->error; returns -1. */
static int reply_fail(struct bench_session *session, const char *what, amqp_rpc_reply_t reply)
{
    switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL: return bench_fail(session, "%s: failed", what);
    case AMQP_RESPONSE_NONE: return bench_fail(session, "%s: no reply", what);
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return bench_fail(session, "%s: %s", what, amqp_error_string2(reply.library_error));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            const amqp_connection_close_t *m = reply.reply.decoded;
            return bench_fail(session, "%s: connection closed %u %.*s", what, m->reply_code,
                              (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        }
        if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            const amqp_channel_close_t *m = reply.reply.decoded;
            return bench_fail(session, "%s: channel closed %u %.*s", what, m->reply_code,
                              (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        }
        return bench_fail(session, "%s: server exception 0x%08x", what, reply.reply.id);
    }
    return bench_fail(session, "%s: unknown reply", what);
}

static void client_close(struct amqp091_client *client)
{
    if (!client->conn)
        return;
    amqp_destroy_connection(client->conn);
    client->conn = NULL;
}

/* Connect, log in and open channel 1; the queue is declared (durable) when
 * queue is not NULL. */
static int client_open(struct amqp091_client *client, struct bench_session *session,
                       const char *queue)
{
    const struct bench_options *options = session->options;
    client->conn = amqp_new_connection();
    if (!client->conn)
        return bench_fail(session, "out of memory");
    amqp_socket_t *socket = amqp_tcp_socket_new(client->conn);
    if (!socket) {
        client_close(client);
        return bench_fail(session, "out of memory");
    }
    int status = amqp_socket_open(socket, options->host, options->port);
    if (status != AMQP_STATUS_OK) {
        client_close(client);
        return bench_fail(session, "connect %s:%d: %s", options->host, options->port,
                          amqp_error_string2(status));
    }
    amqp_rpc_reply_t reply = amqp_login(
        client->conn, "/", 0, AMQP091_FRAME_MAX, 0, AMQP_SASL_METHOD_PLAIN,
        options->user ? options->user : "guest", options->password ? options->password : "guest");
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        reply_fail(session, "login", reply);
        client_close(client);
        return -1;
    }
    amqp_channel_open(client->conn, AMQP091_CHANNEL);
    reply = amqp_get_rpc_reply(client->conn);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        reply_fail(session, "channel.open", reply);
        client_close(client);
        return -1;
    }
    if (queue) {
        amqp_queue_declare(client->conn, AMQP091_CHANNEL, amqp_cstring_bytes(queue), 0, 1, 0, 0,
                           amqp_empty_table);
        reply = amqp_get_rpc_reply(client->conn);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
            reply_fail(session, "queue.declare", reply);
            client_close(client);
            return -1;
        }
    }
    return 0;
}

/* Close the channel and the connection politely (the close-ok proves the
 * server processed everything before it), then free the client. */
static int client_finish(struct amqp091_client *client, struct bench_session *session)
{
    amqp_rpc_reply_t reply = amqp_channel_close(client->conn, AMQP091_CHANNEL, AMQP_REPLY_SUCCESS);
    int rc = 0;
    if (reply.reply_type != AMQP_RESPONSE_NORMAL)
        rc = reply_fail(session, "channel.close", reply);
    else {
        reply = amqp_connection_close(client->conn, AMQP_REPLY_SUCCESS);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL)
            rc = reply_fail(session, "connection.close", reply);
    }
    client_close(client);
    return rc;
}

static void amqp091_queue_address(char *buf, size_t buf_size, const char *queue)
{
    snprintf(buf, buf_size, "%s", queue);
}

/* Publish message number seq of the session to routing_key (default
 * exchange); reply_to and correlation may be NULL. */
static int publish_one(struct amqp091_client *client, struct bench_session *session,
                       const char *routing_key, uint64_t seq, const char *reply_to,
                       const char *correlation, char *body)
{
    const struct bench_options *options = session->options;
    char key[32];
    bench_message_format(options, session->tag, seq, body, key, sizeof(key));
    amqp_table_entry_t entry = {
        .key = amqp_cstring_bytes("kafka-key"),
        .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(key)}};
    amqp_basic_properties_t props = {._flags =
                                         AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG,
                                     .delivery_mode = 2,
                                     .headers = {.num_entries = 1, .entries = &entry}};
    if (reply_to) {
        props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
        props.reply_to = amqp_cstring_bytes(reply_to);
    }
    if (correlation) {
        props._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        props.correlation_id = amqp_cstring_bytes(correlation);
    }
    int status = amqp_basic_publish(client->conn, AMQP091_CHANNEL, amqp_cstring_bytes(""),
                                    amqp_cstring_bytes(routing_key), 0, 0, &props,
                                    (amqp_bytes_t){options->size, body});
    if (status != AMQP_STATUS_OK)
        return bench_fail(session, "basic.publish: %s", amqp_error_string2(status));
    return 0;
}

/* Wait up to timeout_ms (0: only what is buffered or readable now) for one
 * frame; a basic.ack/nack counts the confirms it covers (`multiple` up to
 * its tag). Returns 1 when a frame was handled, 0 on timeout, -1 on error. */
static int read_confirm(struct amqp091_client *client, struct bench_session *session,
                        int timeout_ms)
{
    amqp_frame_t frame;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    int status = amqp_simple_wait_frame_noblock(client->conn, &frame, &tv);
    if (status == AMQP_STATUS_TIMEOUT)
        return 0;
    if (status != AMQP_STATUS_OK)
        return bench_fail(session, "waiting for confirms: %s", amqp_error_string2(status));
    if (frame.frame_type != AMQP_FRAME_METHOD)
        return 1;
    uint64_t settled = session->confirmed + session->refused;
    uint64_t tag = 0;
    int multiple = 0, nacked = 0;
    switch (frame.payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        const amqp_basic_ack_t *ack = frame.payload.method.decoded;
        tag = ack->delivery_tag;
        multiple = ack->multiple;
        break;
    }
    case AMQP_BASIC_NACK_METHOD: {
        const amqp_basic_nack_t *nack = frame.payload.method.decoded;
        tag = nack->delivery_tag;
        multiple = nack->multiple;
        nacked = 1;
        break;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
        const amqp_channel_close_t *m = frame.payload.method.decoded;
        return bench_fail(session, "channel closed %u %.*s", m->reply_code, (int)m->reply_text.len,
                          (const char *)m->reply_text.bytes);
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
        const amqp_connection_close_t *m = frame.payload.method.decoded;
        return bench_fail(session, "connection closed %u %.*s", m->reply_code,
                          (int)m->reply_text.len, (const char *)m->reply_text.bytes);
    }
    default: return 1;
    }
    /* delivery tags count from 1 per channel, in publish order */
    uint64_t covered = multiple ? (tag > settled ? tag - settled : 0) : 1;
    if (nacked)
        session->refused += covered;
    else
        session->confirmed += covered;
    return 1;
}

static int amqp091_publish(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    int confirms = 1;
    uint64_t window = options->window > 0 ? (uint64_t)options->window : 1;
    if (!options->confirm || strcmp(options->confirm, "unsettled") == 0)
        confirms = 1;
    else if (strcmp(options->confirm, "each") == 0)
        window = 1;
    else if (strcmp(options->confirm, "none") == 0)
        confirms = 0;
    else
        return bench_fail(session, "confirm '%s' is not unsettled, each or none", options->confirm);
    struct amqp091_client client = {0};
    if (client_open(&client, session, session->destination) != 0)
        return -1;
    char *body = malloc(options->size);
    if (!body) {
        client_close(&client);
        return bench_fail(session, "out of memory");
    }
    int rc = 0;
    if (confirms) {
        amqp_confirm_select(client.conn, AMQP091_CHANNEL);
        amqp_rpc_reply_t reply = amqp_get_rpc_reply(client.conn);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL)
            rc = reply_fail(session, "confirm.select", reply);
    }
    session->start_ns = bench_now_ns();
    while (rc == 0 && session->sent < session->count) {
        if (confirms && session->sent - session->confirmed - session->refused >= window) {
            if (read_confirm(&client, session, 100) < 0)
                rc = -1;
            continue;
        }
        bench_pace(session->start_ns, session->sent, session->rate);
        if (publish_one(&client, session, session->destination, session->first_seq + session->sent,
                        NULL, NULL, body) != 0) {
            rc = -1;
            break;
        }
        session->sent++;
        /* take the confirms already here without waiting */
        while (confirms && rc == 0) {
            int got = read_confirm(&client, session, 0);
            if (got < 0)
                rc = -1;
            if (got <= 0)
                break;
        }
    }
    int64_t deadline = bench_now_ns() + (int64_t)(options->idle_timeout * 1e9);
    while (rc == 0 && confirms && session->confirmed + session->refused < session->sent) {
        int got = read_confirm(&client, session, 100);
        if (got < 0)
            rc = -1;
        else if (got > 0)
            deadline = bench_now_ns() + (int64_t)(options->idle_timeout * 1e9);
        else if (bench_now_ns() > deadline)
            rc = bench_fail(session, "%" PRIu64 " confirms missing after %.0f quiet seconds",
                            session->sent - session->confirmed - session->refused,
                            options->idle_timeout);
    }
    session->end_ns = bench_now_ns();
    if (rc == 0 && client_finish(&client, session) != 0)
        rc = -1;
    if (rc == 0 && !confirms)
        session->confirmed = session->sent; /* the close-ok came after every publish */
    client_close(&client);
    free(body);
    return rc;
}

/* Deliveries on client until the tracker is complete, the stop flag is set
 * or nothing came for the idle timeout. on_delivery handles each envelope. */
typedef int (*delivery_handler)(struct amqp091_client *client, struct bench_session *session,
                                amqp_envelope_t *envelope);

static int receive_loop(struct amqp091_client *client, struct bench_session *session,
                        delivery_handler on_delivery, int64_t *last_ns)
{
    const struct bench_options *options = session->options;
    int64_t idle_ns = (int64_t)(options->idle_timeout * 1e9);
    for (;;) {
        if (session->tracker && session->tracker->unique >= session->tracker->expected &&
            !session->stop)
            return 0;
        if (session->stop && *session->stop)
            return 0;
        amqp_maybe_release_buffers(client->conn);
        amqp_envelope_t envelope;
        struct timeval tv = {0, 50000};
        amqp_rpc_reply_t reply = amqp_consume_message(client->conn, &envelope, &tv, 0);
        if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
            *last_ns = bench_now_ns();
            int rc = on_delivery(client, session, &envelope);
            amqp_destroy_envelope(&envelope);
            if (rc != 0)
                return -1;
            continue;
        }
        if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
            /* another frame than a delivery: a close ends the session */
            amqp_frame_t frame;
            if (amqp_simple_wait_frame(client->conn, &frame) != AMQP_STATUS_OK)
                return bench_fail(session, "reading a frame failed");
            if (frame.frame_type == AMQP_FRAME_METHOD &&
                (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
                 frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD))
                return bench_fail(session, "closed by the server (method 0x%08x)",
                                  frame.payload.method.id);
            continue;
        }
        if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            reply.library_error == AMQP_STATUS_TIMEOUT) {
            if (bench_now_ns() - *last_ns > idle_ns) {
                if (session->stop)
                    continue; /* a responder waits for its stop flag */
                return 0;     /* quiet: the tracker reports what is missing */
            }
            continue;
        }
        return reply_fail(session, "consuming", reply);
    }
}

static int start_consumer(struct amqp091_client *client, struct bench_session *session,
                          const char *queue, int prefetch, int no_ack)
{
    if (prefetch > 0) {
        amqp_basic_qos(client->conn, AMQP091_CHANNEL, 0, (uint16_t)prefetch, 0);
        amqp_rpc_reply_t reply = amqp_get_rpc_reply(client->conn);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL)
            return reply_fail(session, "basic.qos", reply);
    }
    amqp_basic_consume(client->conn, AMQP091_CHANNEL, amqp_cstring_bytes(queue), amqp_empty_bytes,
                       0, no_ack, 0, amqp_empty_table);
    amqp_rpc_reply_t reply = amqp_get_rpc_reply(client->conn);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL)
        return reply_fail(session, "basic.consume", reply);
    return 0;
}

static int consume_delivery(struct amqp091_client *client, struct bench_session *session,
                            amqp_envelope_t *envelope)
{
    bench_tracker_record(session->tracker, envelope->message.body.bytes, envelope->message.body.len,
                         envelope->redelivered, bench_now_ns());
    int status = amqp_basic_ack(client->conn, AMQP091_CHANNEL, envelope->delivery_tag, 0);
    return status == AMQP_STATUS_OK ? 0 : bench_fail(session, "basic.ack failed");
}

static int amqp091_consume(struct bench_session *session)
{
    struct amqp091_client client = {0};
    if (client_open(&client, session, session->destination) != 0)
        return -1;
    int64_t last_ns = bench_now_ns();
    session->start_ns = last_ns;
    int rc = start_consumer(&client, session, session->destination, session->options->prefetch, 0);
    if (rc == 0)
        rc = receive_loop(&client, session, consume_delivery, &last_ns);
    session->end_ns = last_ns;
    /* the close-ok proves every ack before it was processed */
    if (rc == 0 && client_finish(&client, session) != 0)
        rc = -1;
    client_close(&client);
    return rc;
}

/* ---- request-reply ------------------------------------------------------------------------ */

static int respond_delivery(struct amqp091_client *client, struct bench_session *session,
                            amqp_envelope_t *envelope)
{
    amqp_basic_properties_t *in = &envelope->message.properties;
    if (!(in->_flags & AMQP_BASIC_REPLY_TO_FLAG))
        return 0;
    amqp_basic_properties_t props = {0};
    if (in->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
        props._flags = AMQP_BASIC_CORRELATION_ID_FLAG;
        props.correlation_id = in->correlation_id;
    }
    session->sent++;
    int status = amqp_basic_publish(client->conn, AMQP091_CHANNEL, amqp_cstring_bytes(""),
                                    in->reply_to, 0, 0, &props, envelope->message.body);
    return status == AMQP_STATUS_OK ? 0
                                    : bench_fail(session, "reply: %s", amqp_error_string2(status));
}

static int amqp091_respond(struct bench_session *session)
{
    struct amqp091_client client = {0};
    if (client_open(&client, session, session->destination) != 0)
        return -1;
    int64_t last_ns = bench_now_ns();
    int rc = start_consumer(&client, session, session->destination, 0, 1);
    if (rc == 0)
        rc = receive_loop(&client, session, respond_delivery, &last_ns);
    client_close(&client);
    return rc;
}

static int amqp091_request(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    struct amqp091_client client = {0};
    if (client_open(&client, session, session->destination) != 0)
        return -1;
    char reply_queue[256] = "amq.rabbitmq.reply-to";
    amqp_rpc_reply_t reply;
    if (!options->reply_to || strcmp(options->reply_to, "direct") != 0) {
        /* a server-named exclusive queue for the replies */
        amqp_queue_declare_ok_t *ok = amqp_queue_declare(
            client.conn, AMQP091_CHANNEL, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
        reply = amqp_get_rpc_reply(client.conn);
        if (!ok || reply.reply_type != AMQP_RESPONSE_NORMAL) {
            reply_fail(session, "reply queue.declare", reply);
            client_close(&client);
            return -1;
        }
        snprintf(reply_queue, sizeof(reply_queue), "%.*s", (int)ok->queue.len,
                 (const char *)ok->queue.bytes);
    }
    char *body = malloc(options->size);
    if (!body) {
        client_close(&client);
        return bench_fail(session, "out of memory");
    }
    int rc = start_consumer(&client, session, reply_queue, 0, 1);
    struct bench_tracker *tracker = session->tracker;
    uint64_t window = options->window > 0 ? (uint64_t)options->window : 1;
    int64_t idle_ns = (int64_t)(options->idle_timeout * 1e9);
    int64_t last_ns = bench_now_ns();
    session->start_ns = last_ns;
    while (rc == 0 && tracker->unique < session->count) {
        while (rc == 0 && session->sent < session->count &&
               session->sent - tracker->unique < window) {
            char correlation[32];
            snprintf(correlation, sizeof(correlation), "c%" PRIu64, session->sent);
            rc = publish_one(&client, session, session->destination, session->sent, reply_queue,
                             correlation, body);
            session->sent++;
        }
        if (rc != 0)
            break;
        amqp_envelope_t envelope;
        struct timeval tv = {0, 50000};
        amqp_maybe_release_buffers(client.conn);
        reply = amqp_consume_message(client.conn, &envelope, &tv, 0);
        if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
            last_ns = bench_now_ns();
            bench_tracker_record(tracker, envelope.message.body.bytes, envelope.message.body.len, 0,
                                 last_ns);
            amqp_destroy_envelope(&envelope);
        } else if (!(reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                     reply.library_error == AMQP_STATUS_TIMEOUT)) {
            rc = reply_fail(session, "waiting for replies", reply);
        } else if (bench_now_ns() - last_ns > idle_ns) {
            break; /* replies stopped: the tracker reports what is missing */
        }
    }
    session->end_ns = last_ns;
    session->confirmed = tracker->unique;
    free(body);
    client_close(&client);
    return rc;
}

const struct bench_protocol bench_amqp091 = {
    .name = "amqp091",
    .queue_address = amqp091_queue_address,
    .publish = amqp091_publish,
    .consume = amqp091_consume,
    .respond = amqp091_respond,
    .request = amqp091_request,
    .open_idle = NULL,
};
