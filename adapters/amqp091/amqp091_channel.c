/* SPDX-License-Identifier: Apache-2.0 */
/* amqp091_channel.c -- AMQP 0-9-1 channels (architecture §12): the
 * channel, exchange, queue, basic, confirm and tx classes over the core
 * (core.h).
 *
 *  - exchange.* and queue.* go through the core's declare API
 *    (core_declare_exchange, core_declare_queue, core_bind, core_unbind,
 *    core_delete_*); each is answered once the definitions topic has the
 *    change and this node applied it, and the connection reads nothing
 *    more until then (amqp091_connection.c), so answers keep the order of
 *    requests.
 *  - basic.publish is assembled from its content header and body frames,
 *    mapped to a record (amqp091_convert.c) and published to its exchange
 *    with its routing key (core_publish). In confirm mode the delivery tag
 *    is acked only from Kafka's answer (amqp091_publish_done: basic.ack, or
 *    basic.nack when Kafka refused it); an unroutable mandatory message
 *    comes back as basic.return 312 NO_ROUTE.
 *  - basic.consume subscribes to the queue (core_subscribe, existing queue,
 *    credit = basic.qos prefetch); consume-ok is sent when the subscription
 *    is positioned (ready). Deliveries carry per-channel delivery tags; ack,
 *    nack and reject (multiple, requeue) settle them (core_settle).
 *  - tx.* goes to amqp091_tx.c: in tx mode publishes and acks are held by
 *    the core's transaction (amqp091_tx_publish, amqp091_tx_settle).
 * A channel exception sends channel.close and ends only that channel. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp091_config.h"
#include "amqp091_connection.h"
#include "amqp091_convert.h"
#include "clock.h"
#include "config.h"
#include "definitions.h"
#include "log.h"
#include "record.h"
#include "schedule.h"

/* ---- errors ------------------------------------------------------------------------ */

/* A core error as a 0-9-1 reply code and RabbitMQ's label. */
/* The channel's connection's vhost (set at connection.open). */
static const char *amqp091_vhost(const struct amqp091_channel *channel)
{
    return core_session_vhost(channel->connection->session);
}

static uint16_t amqp091_core_code(int core_error, const char **label)
{
    switch (core_error) {
    case CORE_ERR_ACCESS:
    case CORE_ERR_IN_USE: *label = "ACCESS_REFUSED"; return AMQP_ACCESS_REFUSED;
    case CORE_ERR_NOT_FOUND: *label = "NOT_FOUND"; return AMQP_NOT_FOUND;
    case CORE_ERR_PRECONDITION:
    case CORE_ERR_INVALID:
    case CORE_ERR_TOO_LARGE: *label = "PRECONDITION_FAILED"; return AMQP_PRECONDITION_FAILED;
    case CORE_ERR_LOCKED: *label = "RESOURCE_LOCKED"; return AMQP_RESOURCE_LOCKED;
    case CORE_ERR_UNSUPPORTED: *label = "NOT_IMPLEMENTED"; return AMQP_NOT_IMPLEMENTED;
    case CORE_ERR_BUSY:
    case CORE_ERR_FULL:
    case CORE_ERR_UNAVAILABLE: *label = "RESOURCE_ERROR"; return AMQP_RESOURCE_ERROR;
    default: *label = "INTERNAL_ERROR"; return AMQP_INTERNAL_ERROR;
    }
}

/* Copy a queue name the caller has checked fits (at most out_size - 1 bytes). */
static void amqp091_copy_name(char *out, size_t out_size, const char *name)
{
    size_t len = strlen(name);
    if (len >= out_size)
        len = out_size - 1; /* never: callers refuse longer names first */
    memcpy(out, name, len);
    out[len] = '\0';
}

static struct amqp091_channel *amqp091_channel_find(struct amqp091_connection *connection,
                                                    uint16_t number)
{
    return u64_map_get(&connection->channels, number);
}

static void amqp091_consumer_end(struct amqp091_consumer *consumer);
static void amqp091_get_finish(struct amqp091_channel *channel);
static void amqp091_get_start(struct amqp091_channel *channel);

/* End every consumer and drop content being assembled. */
static void amqp091_channel_quiesce(struct amqp091_channel *channel)
{
    amqp091_tx_end(channel); /* releases held acks while the consumers exist */
    while (channel->consumers)
        amqp091_consumer_end(channel->consumers);
    while (channel->unacked_head) {
        struct amqp091_unacked *next = channel->unacked_head->next;
        free(channel->unacked_head);
        channel->unacked_head = next;
    }
    channel->unacked_tail = NULL;
    u64_map_free(&channel->unacked_by_tag);
    free(channel->exchange);
    free(channel->routing_key);
    free(channel->header_payload);
    free(channel->body);
    channel->exchange = channel->routing_key = NULL;
    channel->header_payload = channel->body = NULL;
    channel->publishing = channel->header_seen = false;
}

void amqp091_channel_free(struct amqp091_channel *channel)
{
    amqp091_channel_quiesce(channel);
    if (channel->confirm_event)
        event_free(channel->confirm_event);
    if (channel->get_timer)
        event_free(channel->get_timer);
    u64_map_free(&channel->confirm_early);
    u64_map_remove(&channel->connection->channels, channel->number);
    free(channel);
}

/* A channel exception: channel.close with code and text; the channel
 * reads nothing but channel.close(-ok) from now on. */
void amqp091_channel_error(struct amqp091_channel *channel, uint16_t code, const char *text,
                           amqp_method_number_t method)
{
    struct amqp091_connection *connection = channel->connection;
    if (channel->closing)
        return;
    (*connection->adapter->channel_errors)++;
    log_info("amqp091", "%s: channel %u error %u: %s", connection->base.peer, channel->number, code,
             text);
    amqp_channel_close_t close = {
        .reply_code = code,
        .reply_text = amqp_cstring_bytes(text),
        .class_id = (uint16_t)(method >> 16),
        .method_id = (uint16_t)(method & 0xffff),
    };
    amqp091_send_method(connection, channel->number, AMQP_CHANNEL_CLOSE_METHOD, &close);
    channel->closing = true;
    amqp091_channel_quiesce(channel);
}

void amqp091_channel_core_error(struct amqp091_channel *channel, int core_error, const char *reason,
                                amqp_method_number_t method)
{
    const char *label;
    uint16_t code = amqp091_core_code(core_error, &label);
    char text[700];
    snprintf(text, sizeof(text), "%s - %s", label, reason && reason[0] ? reason : "refused");
    amqp091_channel_error(channel, code, text, method);
}

/* ---- definitions: exchange.* and queue.* ------------------------------------------------ */

/* A declare/bind/delete waiting for the core's answer. */
struct amqp091_op {
    struct amqp091_connection *connection;
    uint16_t channel;
    uint64_t generation;
    amqp_method_number_t method;
    bool nowait;
    bool count_messages; /* queue.declare of a named queue: declare-ok counts its messages */
};

/* The channel an op was for, if it is still there and open. */
static struct amqp091_channel *amqp091_op_channel(const struct amqp091_op *op)
{
    struct amqp091_connection *connection = op->connection;
    struct amqp091_channel *channel = amqp091_channel_find(connection, op->channel);
    if (channel && channel->generation == op->generation && !channel->closing &&
        connection->state == AMQP091_STATE_RUNNING)
        return channel;
    return NULL;
}

/* declare-ok: consumer_count is this node's consumers of the queue, any
 * protocol (other nodes' are not known here); message_count its depth in
 * Kafka (core_queue_depth) or 0. */
static void amqp091_send_declare_ok(struct amqp091_channel *channel, uint64_t message_count)
{
    struct amqp091_connection *connection = channel->connection;
    amqp_queue_declare_ok_t ok = {
        .queue = amqp_cstring_bytes(channel->last_queue),
        .message_count = message_count > UINT32_MAX ? UINT32_MAX : (uint32_t)message_count,
        .consumer_count = (uint32_t)core_queue_local_consumers(
            connection->adapter->base.context.core, amqp091_vhost(channel), channel->last_queue),
    };
    amqp091_send_method(connection, channel->number, AMQP_QUEUE_DECLARE_OK_METHOD, &ok);
}

/* core_queue_depth's answer for a declare-ok: a failed lookup answers 0
 * (the declare itself succeeded; RabbitMQ's count is never an error). */
static void amqp091_declare_counted(void *opaque, int core_error, const char *reason,
                                    uint64_t message_count)
{
    struct amqp091_op *op = opaque;
    struct amqp091_connection *connection = op->connection;
    connection->waiting--;
    struct amqp091_channel *channel = amqp091_op_channel(op);
    if (core_error != CORE_OK)
        log_debug("amqp091", "%s: declare-ok of '%s' counts 0 messages: %s", connection->base.peer,
                  channel ? channel->last_queue : "?", reason);
    if (channel)
        amqp091_send_declare_ok(channel, core_error == CORE_OK ? message_count : 0);
    free(op);
    amqp091_connection_update_reading(connection);
}

static void amqp091_op_done(void *opaque, int core_error, const char *reason, const char *name)
{
    struct amqp091_op *op = opaque;
    struct amqp091_connection *connection = op->connection;
    connection->waiting--;
    struct amqp091_channel *channel = amqp091_op_channel(op);
    if (channel) {
        if (core_error != CORE_OK) {
            amqp091_channel_core_error(channel, core_error, reason, op->method);
        } else if (op->method == AMQP_QUEUE_DECLARE_METHOD) {
            snprintf(channel->last_queue, sizeof(channel->last_queue), "%s", name ? name : "");
            char err[256];
            if (!op->nowait && op->count_messages &&
                core_queue_depth(connection->session, amqp091_vhost(channel), channel->last_queue,
                                 amqp091_declare_counted, op, err, sizeof(err)) == CORE_OK) {
                connection->waiting++; /* the next method waits for this declare-ok */
                return;
            }
            if (!op->nowait)
                amqp091_send_declare_ok(channel, 0); /* a new server-named queue: empty */
        } else if (!op->nowait) {
            amqp_method_number_t reply = 0;
            switch (op->method) {
            case AMQP_EXCHANGE_DECLARE_METHOD: reply = AMQP_EXCHANGE_DECLARE_OK_METHOD; break;
            case AMQP_EXCHANGE_DELETE_METHOD: reply = AMQP_EXCHANGE_DELETE_OK_METHOD; break;
            case AMQP_EXCHANGE_BIND_METHOD: reply = AMQP_EXCHANGE_BIND_OK_METHOD; break;
            case AMQP_EXCHANGE_UNBIND_METHOD: reply = AMQP_EXCHANGE_UNBIND_OK_METHOD; break;
            case AMQP_QUEUE_BIND_METHOD: reply = AMQP_QUEUE_BIND_OK_METHOD; break;
            case AMQP_QUEUE_UNBIND_METHOD: reply = AMQP_QUEUE_UNBIND_OK_METHOD; break;
            case AMQP_QUEUE_DELETE_METHOD: reply = AMQP_QUEUE_DELETE_OK_METHOD; break;
            default: break;
            }
            /* every -ok of these has no fields, or counts we give as 0 */
            amqp_queue_delete_ok_t zero = {0};
            if (reply)
                amqp091_send_method(connection, channel->number, reply, &zero);
        }
    }
    free(op);
    amqp091_connection_update_reading(connection);
}

static struct amqp091_op *amqp091_op_new(struct amqp091_channel *channel,
                                         amqp_method_number_t method, bool nowait)
{
    struct amqp091_op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    *op = (struct amqp091_op){.connection = channel->connection,
                              .channel = channel->number,
                              .generation = channel->generation,
                              .method = method,
                              .nowait = nowait};
    return op;
}

/* The core took the request (rc CORE_OK: wait for its answer) or refused
 * it; op NULL: it could not be made (out of memory), rc and err say so. */
static void amqp091_op_started(struct amqp091_channel *channel, struct amqp091_op *op, int rc,
                               const char *err, amqp_method_number_t method)
{
    if (op && rc == CORE_OK) {
        channel->connection->waiting++;
        amqp091_connection_update_reading(channel->connection);
        return;
    }
    amqp091_channel_core_error(channel, rc, err, method);
    free(op);
}

static void amqp091_bytes_text(amqp_bytes_t bytes, char *out, size_t out_size)
{
    snprintf(out, out_size, "%.*s", (int)bytes.len, bytes.bytes ? (const char *)bytes.bytes : "");
}

/* An argument table as JSON, or a channel error (406). */
static int amqp091_arguments(struct amqp091_channel *channel, const amqp_table_t *table,
                             json_t **out, amqp_method_number_t method)
{
    char err[160], text[256];
    if (amqp091_table_to_json(table, out, err, sizeof(err)) < 0) {
        snprintf(text, sizeof(text), "PRECONDITION_FAILED - %s", err);
        amqp091_channel_error(channel, AMQP_PRECONDITION_FAILED, text, method);
        return -1;
    }
    return 0;
}

static void amqp091_exchange_declare(struct amqp091_channel *channel,
                                     const amqp_exchange_declare_t *m)
{
    char name[256], type[64], err[256];
    amqp091_bytes_text(m->exchange, name, sizeof(name));
    amqp091_bytes_text(m->type, type, sizeof(type));
    struct exchange_spec spec = {
        .vhost = amqp091_vhost(channel),
        .name = name,
        .durable = m->durable,
        .auto_delete = m->auto_delete,
        .internal = m->internal,
    };
    if (!m->passive && exchange_type_parse(type, &spec.type) < 0) {
        char text[192];
        snprintf(text, sizeof(text), "COMMAND_INVALID - unknown exchange type '%s'", type);
        amqp091_connection_error(channel->connection, AMQP_COMMAND_INVALID, text,
                                 AMQP_EXCHANGE_DECLARE_METHOD);
        return;
    }
    if (amqp091_arguments(channel, &m->arguments, &spec.arguments, AMQP_EXCHANGE_DECLARE_METHOD) <
        0)
        return;
    struct amqp091_op *op = amqp091_op_new(channel, AMQP_EXCHANGE_DECLARE_METHOD, m->nowait);
    snprintf(err, sizeof(err), "out of memory");
    int rc = op ? core_declare_exchange(channel->connection->session, &spec, m->passive,
                                        amqp091_op_done, op, err, sizeof(err))
                : CORE_ERR_INTERNAL;
    json_decref(spec.arguments);
    amqp091_op_started(channel, op, rc, err, AMQP_EXCHANGE_DECLARE_METHOD);
}

static void amqp091_exchange_delete(struct amqp091_channel *channel,
                                    const amqp_exchange_delete_t *m)
{
    char name[256], err[256];
    amqp091_bytes_text(m->exchange, name, sizeof(name));
    struct amqp091_op *op = amqp091_op_new(channel, AMQP_EXCHANGE_DELETE_METHOD, m->nowait);
    if (!op) {
        amqp091_channel_core_error(channel, CORE_ERR_INTERNAL, "out of memory", 0);
        return;
    }
    int rc = core_delete_exchange(channel->connection->session, amqp091_vhost(channel), name,
                                  m->if_unused, amqp091_op_done, op, err, sizeof(err));
    amqp091_op_started(channel, op, rc, err, op->method);
}

/* queue.bind/unbind and exchange.bind/unbind. */
static void amqp091_binding(struct amqp091_channel *channel, amqp_method_number_t method,
                            enum binding_destination kind, amqp_bytes_t destination,
                            amqp_bytes_t source, amqp_bytes_t key, const amqp_table_t *arguments,
                            bool nowait, bool bind)
{
    char destination_text[256], source_text[256], key_text[256], err[256];
    amqp091_bytes_text(destination, destination_text, sizeof(destination_text));
    amqp091_bytes_text(source, source_text, sizeof(source_text));
    amqp091_bytes_text(key, key_text, sizeof(key_text));
    if (kind == BINDING_TO_QUEUE && !destination_text[0]) /* the channel's last queue */
        snprintf(destination_text, sizeof(destination_text), "%s", channel->last_queue);
    struct binding_spec spec = {
        .vhost = amqp091_vhost(channel),
        .source = source_text,
        .destination_kind = kind,
        .destination = destination_text,
        .routing_key = key_text,
    };
    if (amqp091_arguments(channel, arguments, &spec.arguments, method) < 0)
        return;
    struct amqp091_op *op = amqp091_op_new(channel, method, nowait);
    int rc = CORE_ERR_INTERNAL;
    snprintf(err, sizeof(err), "out of memory");
    if (op)
        rc = bind ? core_bind(channel->connection->session, &spec, amqp091_op_done, op, err,
                              sizeof(err))
                  : core_unbind(channel->connection->session, &spec, amqp091_op_done, op, err,
                                sizeof(err));
    json_decref(spec.arguments);
    amqp091_op_started(channel, op, rc, err, method);
}

static void amqp091_queue_declare(struct amqp091_channel *channel, const amqp_queue_declare_t *m)
{
    char name[256], err[256];
    amqp091_bytes_text(m->queue, name, sizeof(name));
    struct queue_spec spec = {
        .vhost = amqp091_vhost(channel),
        .name = name,
        .durable = m->durable,
        .exclusive = m->exclusive,
        .auto_delete = m->auto_delete,
    };
    if (amqp091_arguments(channel, &m->arguments, &spec.arguments, AMQP_QUEUE_DECLARE_METHOD) < 0)
        return;
    struct amqp091_op *op = amqp091_op_new(channel, AMQP_QUEUE_DECLARE_METHOD, m->nowait);
    if (op) /* a server-named queue is new: nothing to count */
        op->count_messages = name[0] != '\0';
    int rc = CORE_ERR_INTERNAL;
    snprintf(err, sizeof(err), "out of memory");
    if (op)
        rc = core_declare_queue(channel->connection->session, &spec, m->passive, amqp091_op_done,
                                op, err, sizeof(err));
    json_decref(spec.arguments);
    amqp091_op_started(channel, op, rc, err, AMQP_QUEUE_DECLARE_METHOD);
}

/* A method's queue name; empty: the channel's last declared queue, as in RabbitMQ. */
static void amqp091_queue_name(const struct amqp091_channel *channel, amqp_bytes_t queue,
                               char *name, size_t size)
{
    amqp091_bytes_text(queue, name, size);
    if (!name[0])
        snprintf(name, size, "%s", channel->last_queue);
}

static void amqp091_queue_delete(struct amqp091_channel *channel, const amqp_queue_delete_t *m)
{
    char name[256], err[256];
    amqp091_queue_name(channel, m->queue, name, sizeof(name));
    struct amqp091_op *op = amqp091_op_new(channel, AMQP_QUEUE_DELETE_METHOD, m->nowait);
    int rc = CORE_ERR_INTERNAL;
    snprintf(err, sizeof(err), "out of memory");
    if (op)
        rc = core_delete_queue(channel->connection->session, amqp091_vhost(channel), name,
                               m->if_unused, m->if_empty, amqp091_op_done, op, err, sizeof(err));
    amqp091_op_started(channel, op, rc, err, AMQP_QUEUE_DELETE_METHOD);
}

/* queue.purge's answer: purge-ok with the count the core purged. */
static void amqp091_purge_done(void *opaque, int core_error, const char *reason,
                               uint64_t message_count)
{
    struct amqp091_op *op = opaque;
    struct amqp091_connection *connection = op->connection;
    connection->waiting--;
    struct amqp091_channel *channel = amqp091_channel_find(connection, op->channel);
    if (channel && channel->generation == op->generation && !channel->closing &&
        connection->state == AMQP091_STATE_RUNNING) {
        if (core_error != CORE_OK) {
            amqp091_channel_core_error(channel, core_error, reason, op->method);
        } else if (!op->nowait) {
            amqp_queue_purge_ok_t ok = {
                .message_count = message_count > UINT32_MAX ? UINT32_MAX : (uint32_t)message_count};
            amqp091_send_method(connection, channel->number, AMQP_QUEUE_PURGE_OK_METHOD, &ok);
        }
    }
    free(op);
    amqp091_connection_update_reading(connection);
}

static void amqp091_queue_purge(struct amqp091_channel *channel, const amqp_queue_purge_t *m)
{
    char name[256], err[256];
    amqp091_queue_name(channel, m->queue, name, sizeof(name));
    struct amqp091_op *op = amqp091_op_new(channel, AMQP_QUEUE_PURGE_METHOD, m->nowait);
    int rc = CORE_ERR_INTERNAL;
    snprintf(err, sizeof(err), "out of memory");
    if (op)
        rc = core_purge_queue(channel->connection->session, amqp091_vhost(channel), name,
                              amqp091_purge_done, op, err, sizeof(err));
    amqp091_op_started(channel, op, rc, err, AMQP_QUEUE_PURGE_METHOD);
}

/* ---- publishing ---------------------------------------------------------------------------- */

/* A basic.publish handed to the core, until its answer (connection.h). */
struct amqp091_publish {
    struct connection_publish base; /* first */
    uint16_t channel;
    uint64_t generation;
    uint64_t tag; /* confirm mode's delivery tag; 0: not confirmed to the client */
    bool mandatory;
    /* the exchange (for the log line); all of it for basic.return when mandatory */
    struct amqp091_content content;
};

static void amqp091_publish_free(struct amqp091_publish *publish)
{
    amqp091_content_free(&publish->content);
    free(publish);
}

void amqp091_content_free(struct amqp091_content *content)
{
    free(content->exchange);
    free(content->routing_key);
    free(content->header_payload);
    free(content->body);
    *content = (struct amqp091_content){0};
}

void amqp091_channel_take_content(struct amqp091_channel *channel, struct amqp091_content *out,
                                  bool whole)
{
    *out = (struct amqp091_content){.exchange = channel->exchange};
    channel->exchange = NULL;
    if (!whole)
        return;
    out->routing_key = channel->routing_key;
    out->header_payload = channel->header_payload;
    out->header_len = channel->header_len;
    out->body = channel->body;
    out->body_len = channel->body_size;
    channel->routing_key = NULL;
    channel->header_payload = channel->body = NULL;
}

void amqp091_send_no_route(struct amqp091_connection *connection, uint16_t channel,
                           const struct amqp091_content *content)
{
    amqp_basic_return_t ret = {
        .reply_code = AMQP_NO_ROUTE,
        .reply_text = amqp_cstring_bytes("NO_ROUTE"),
        .exchange = amqp_cstring_bytes(content->exchange ? content->exchange : ""),
        .routing_key = amqp_cstring_bytes(content->routing_key ? content->routing_key : ""),
    };
    amqp091_send_content(connection, channel, AMQP_BASIC_RETURN_METHOD, &ret,
                         content->header_payload, content->header_len, NULL, content->body,
                         content->body_len);
}

static void amqp091_publish_resume(struct amqp091_connection *connection)
{
    uint32_t max = adapter_base_config(&connection->adapter->base)->limits.max_unconfirmed;
    if (connection->publish_paused && connection->base.unconfirmed < (max ? max : 1)) {
        connection->publish_paused = false;
        amqp091_connection_update_blocked(connection);
        amqp091_connection_update_reading(connection);
    }
}

/* Tell the client about the acks of the answered run: one basic.ack,
 * `multiple` when it covers more than one tag (tags in it that were nacked
 * are no longer outstanding for the client, so covering them is harmless). */
static void amqp091_confirm_flush(struct amqp091_channel *channel)
{
    if (channel->confirm_answered == channel->confirm_sent)
        return;
    if (channel->confirm_acks > 0 && !channel->closing) {
        amqp_basic_ack_t ack = {.delivery_tag = channel->confirm_answered,
                                .multiple = channel->confirm_answered - channel->confirm_sent > 1};
        amqp091_send_method(channel->connection, channel->number, AMQP_BASIC_ACK_METHOD, &ack);
    }
    channel->confirm_sent = channel->confirm_answered;
    channel->confirm_acks = 0;
}

static void amqp091_on_confirm_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct amqp091_channel *channel = arg;
    if (amqp091_connection_writable(channel->connection))
        amqp091_confirm_flush(channel);
}

/* Kafka's answer for publish `tag`: a nack goes out now (after the acks
 * before it); an ack joins the answered run, sent on the next loop turn. */
static void amqp091_send_confirm(struct amqp091_channel *channel, uint64_t tag, bool ok)
{
    if (!ok) {
        amqp091_confirm_flush(channel);
        amqp_basic_nack_t nack = {.delivery_tag = tag, .multiple = 0, .requeue = 0};
        amqp091_send_method(channel->connection, channel->number, AMQP_BASIC_NACK_METHOD, &nack);
    }
    if (tag != channel->confirm_answered + 1) {
        if (u64_map_reserve(&channel->confirm_early) == 0) {
            u64_map_put(&channel->confirm_early, tag, (void *)(uintptr_t)(ok ? 1 : 2));
            return;
        }
        /* out of memory: say it alone */
        if (ok) {
            amqp_basic_ack_t ack = {.delivery_tag = tag, .multiple = 0};
            amqp091_send_method(channel->connection, channel->number, AMQP_BASIC_ACK_METHOD, &ack);
        }
        return;
    }
    channel->confirm_answered = tag;
    channel->confirm_acks += ok;
    void *early;
    while ((early = u64_map_get(&channel->confirm_early, channel->confirm_answered + 1))) {
        channel->confirm_answered++;
        channel->confirm_acks += (uintptr_t)early == 1;
        u64_map_remove(&channel->confirm_early, channel->confirm_answered);
    }
    if (!ok && channel->confirm_acks == 0)
        channel->confirm_sent = channel->confirm_answered; /* nothing to ack in the run */
    if (channel->confirm_event)
        event_active(channel->confirm_event, EV_TIMEOUT, 0);
    else
        amqp091_confirm_flush(channel);
}

void amqp091_publish_done(struct connection_publish *base, int result, const char *reason)
{
    struct amqp091_publish *publish = (struct amqp091_publish *)base;
    struct amqp091_connection *connection = (struct amqp091_connection *)base->connection;
    if (result == CONNECTION_PUBLISH_ABANDONED) {
        amqp091_publish_free(publish);
        return;
    }
    struct amqp091_channel *channel = amqp091_channel_find(connection, publish->channel);
    if (channel && channel->generation == publish->generation && !channel->closing &&
        connection->state == AMQP091_STATE_RUNNING) {
        if (result == CORE_UNROUTABLE && publish->mandatory)
            amqp091_send_no_route(connection, channel->number, &publish->content);
        if (publish->tag)
            amqp091_send_confirm(channel, publish->tag,
                                 result == CORE_OK || result == CORE_UNROUTABLE);
        if (result != CORE_OK && result != CORE_UNROUTABLE)
            log_info("amqp091", "%s: channel %u: a message to exchange '%s' was not stored: %s",
                     connection->base.peer, channel->number,
                     publish->content.exchange ? publish->content.exchange : "",
                     reason ? reason : "Kafka error");
    }
    amqp091_publish_free(publish);
    amqp091_publish_resume(connection); /* a held publish: the base retries it */
}

/* Direct reply-to, the requester's side: reply_to `amq.rabbitmq.reply-to`
 * becomes the channel's temporary queue's reply address
 * ("/reply-queue/TOKEN", architecture §7), which any responder on any
 * node and protocol answers. 0, or -1 after a channel error (406 as
 * RabbitMQ when the channel has no reply consumer). */
static int amqp091_direct_reply_to(struct amqp091_channel *channel,
                                   const amqp_basic_properties_t *properties,
                                   struct amqp091_record_headers *headers)
{
    size_t len = strlen(AMQP091_DIRECT_REPLY_TO);
    if (!(properties->_flags & AMQP_BASIC_REPLY_TO_FLAG) || properties->reply_to.len != len ||
        memcmp(properties->reply_to.bytes, AMQP091_DIRECT_REPLY_TO, len) != 0)
        return 0;
    struct amqp091_consumer *consumer = channel->reply_consumer;
    if (!consumer || !consumer->ready) {
        amqp091_record_headers_free(headers);
        amqp091_channel_error(channel, AMQP_PRECONDITION_FAILED,
                              "PRECONDITION_FAILED - fast reply consumer does not exist",
                              AMQP_BASIC_PUBLISH_METHOD);
        return -1;
    }
    for (size_t i = 0; i < headers->count; i++)
        if (strcmp(headers->properties[i].name, RECORD_HEADER_REPLY_TO) == 0) {
            headers->properties[i].value = consumer->reply_address;
            headers->properties[i].value_len = strlen(consumer->reply_address);
        }
    return 0;
}

/* Direct reply-to, the responder's side: a publish to the default exchange
 * whose routing key is a reply address (the request's reply_to as kbridge
 * wrote it, or RabbitMQ's amq.rabbitmq.reply-to.TOKEN) goes to that
 * temporary queue. True when it is one (*out filled). */
static bool amqp091_reply_destination(const char *exchange, const char *routing_key,
                                      struct destination *out)
{
    if (exchange[0])
        return false;
    const char *token = NULL;
    size_t reply_len = strlen(AMQP091_REPLY_QUEUE_PREFIX);
    size_t direct_len = strlen(AMQP091_DIRECT_REPLY_TO_PREFIX);
    if (strncmp(routing_key, AMQP091_REPLY_QUEUE_PREFIX, reply_len) == 0)
        token = routing_key + reply_len;
    else if (strncmp(routing_key, AMQP091_DIRECT_REPLY_TO_PREFIX, direct_len) == 0)
        token = routing_key + direct_len;
    if (!token || !token[0] || strlen(token) > ADDRESS_NAME_MAX)
        return false;
    *out = (struct destination){.kind = DESTINATION_REPLY_QUEUE};
    snprintf(out->name, sizeof(out->name), "%s", token);
    return true;
}

/* Scheduled delivery (architecture §13): the due time from the x-delay
 * header (milliseconds, RabbitMQ's delayed-message exchange plugin),
 * honoured on every publish; 0: now. 0, or -1 with RabbitMQ-shaped text
 * (406) when it is not a whole number. */
static int amqp091_delay(const struct amqp091_record_headers *headers, uint64_t *deliver_at,
                         char *text, size_t text_size)
{
    *deliver_at = 0;
    for (size_t i = 0; i < headers->count; i++) {
        const struct core_property *p = &headers->properties[i];
        if (strcmp(p->name, "x-delay") != 0)
            continue;
        int64_t delay;
        if (schedule_parse_integer(p->value, p->value_len, &delay) < 0) {
            snprintf(text, text_size,
                     "PRECONDITION_FAILED - invalid x-delay header '%.*s': a whole number of "
                     "milliseconds expected",
                     (int)(p->value_len > 64 ? 64 : p->value_len), (const char *)p->value);
            return -1;
        }
        *deliver_at = schedule_due_after(delay, clock_wall_ms());
        return 0;
    }
    return 0;
}

/* Every frame of a basic.publish has arrived: publish it. */
static void amqp091_publish_complete(struct amqp091_channel *channel);

void amqp091_publish_retry(struct amqp091_connection *connection)
{
    if (!connection->publish_held)
        return;
    connection->publish_held = false;
    struct amqp091_channel *channel = amqp091_channel_find(connection, connection->held_channel);
    if (channel && channel->publishing && !channel->closing &&
        connection->state == AMQP091_STATE_RUNNING)
        amqp091_publish_complete(channel); /* may hold it again */
    if (!connection->publish_held) {
        amqp091_connection_update_blocked(connection);
        amqp091_connection_update_reading(connection);
    }
}

static void amqp091_publish_complete(struct amqp091_channel *channel)
{
    struct amqp091_connection *connection = channel->connection;
    const struct config *config = adapter_base_config(&connection->adapter->base);
    struct amqp091_error error;
    struct amqp091_frame header_frame = {.type = AMQP091_FRAME_HEADER,
                                         .channel = channel->number,
                                         .size = (uint32_t)channel->header_len,
                                         .payload = channel->header_payload};
    struct amqp091_content_header header;
    recycle_amqp_pool(&connection->pool);
    if (amqp091_content_header_decode(&header_frame, &connection->pool, &header, &error) < 0) {
        amqp091_connection_error(connection, error.code, error.text, AMQP_BASIC_PUBLISH_METHOD);
        return;
    }
    const amqp_basic_properties_t *properties = header.properties;
    if ((properties->_flags & AMQP_BASIC_USER_ID_FLAG) &&
        (properties->user_id.len != strlen(connection->user) ||
         memcmp(properties->user_id.bytes, connection->user, properties->user_id.len) != 0)) {
        char text[320];
        snprintf(text, sizeof(text),
                 "PRECONDITION_FAILED - user_id property set to '%.*s' but authenticated user was "
                 "'%s'",
                 (int)(properties->user_id.len > 100 ? 100 : properties->user_id.len),
                 (const char *)properties->user_id.bytes, connection->user);
        amqp091_channel_error(channel, AMQP_PRECONDITION_FAILED, text, AMQP_BASIC_PUBLISH_METHOD);
        return;
    }
    struct amqp091_record_headers headers;
    uint16_t code;
    char text[320];
    if (amqp091_record_headers_from_properties(properties, clock_wall_ms(), &headers, &code, text,
                                               sizeof(text)) < 0) {
        amqp091_channel_error(channel, code, text, AMQP_BASIC_PUBLISH_METHOD);
        return;
    }
    uint64_t deliver_at;
    if (amqp091_delay(&headers, &deliver_at, text, sizeof(text)) < 0) {
        amqp091_record_headers_free(&headers);
        amqp091_channel_error(channel, AMQP_PRECONDITION_FAILED, text, AMQP_BASIC_PUBLISH_METHOD);
        return;
    }
    if (amqp091_direct_reply_to(channel, properties, &headers) < 0)
        return;
    /* a reply goes to the requester's temporary queue, on any node */
    struct destination destination = {.kind = DESTINATION_EXCHANGE};
    bool reply = amqp091_reply_destination(channel->exchange, channel->routing_key, &destination);
    if (!reply && strlen(channel->exchange) > ADDRESS_NAME_MAX) {
        amqp091_record_headers_free(&headers);
        amqp091_channel_error(channel, AMQP_NOT_FOUND, "NOT_FOUND - no such exchange",
                              AMQP_BASIC_PUBLISH_METHOD);
        return;
    }
    if (!reply)
        snprintf(destination.name, sizeof(destination.name), "%s", channel->exchange);
    struct core_message message = {
        .body = channel->body ? channel->body : (const void *)"",
        .body_len = channel->body_size,
        .properties = headers.properties,
        .property_count = headers.count,
        .routing_key = channel->routing_key,
        .routing_key_len = strlen(channel->routing_key),
        .producer = channel->number,
        .deliver_at = deliver_at,
    };
    if (amqp091_tx_publish(channel, &destination, &message)) { /* held until tx.commit */
        amqp091_record_headers_free(&headers);
        goto done;
    }
    struct amqp091_publish *publish = calloc(1, sizeof(*publish));
    if (!publish) {
        amqp091_record_headers_free(&headers);
        amqp091_channel_error(channel, AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory",
                              AMQP_BASIC_PUBLISH_METHOD);
        return;
    }
    publish->channel = channel->number;
    publish->generation = channel->generation;
    publish->mandatory = channel->mandatory;
    publish->tag = channel->confirm ? ++channel->next_publish_tag : 0;
    connection_publish_begin(&connection->base, &publish->base);
    char err[256] = "";
    int rc = core_publish(connection->session, &destination, &message, connection_publish_confirmed,
                          &publish->base, err, sizeof(err));
    amqp091_record_headers_free(&headers);
    if (rc != CORE_OK) {
        connection_publish_cancel(&publish->base);
        uint64_t tag = publish->tag;
        amqp091_publish_free(publish);
        if (rc == CORE_ERR_BUSY) {
            /* Kafka's producer queue is full: the channel keeps the publish
             * and it is tried again (architecture §12 "Backpressure"); its
             * confirm tag is given again then */
            if (tag)
                channel->next_publish_tag--;
            amqp091_connection_hold_publish(connection, channel->number);
            return;
        }
        if (rc == CORE_ERR_UNAVAILABLE) {
            /* not stored: say so to a confirming client, as RabbitMQ's nack */
            log_info("amqp091", "%s: channel %u: publish refused now: %s", connection->base.peer,
                     channel->number, err);
            if (tag)
                amqp091_send_confirm(channel, tag, false);
        } else {
            amqp091_channel_core_error(channel, rc, err, AMQP_BASIC_PUBLISH_METHOD);
        }
    } else {
        /* `publish` waits for Kafka (the core never answers inside
         * core_publish): it keeps the exchange for its log line, and a
         * mandatory one the content for a basic.return */
        amqp091_channel_take_content(channel, &publish->content, publish->mandatory);
    }
done:
    free(channel->exchange);
    free(channel->routing_key);
    free(channel->header_payload);
    free(channel->body);
    channel->exchange = channel->routing_key = NULL;
    channel->header_payload = channel->body = NULL;
    channel->publishing = channel->header_seen = false;

    uint32_t max = config->limits.max_unconfirmed ? config->limits.max_unconfirmed : 1;
    if (connection->base.unconfirmed >= max && !connection->publish_paused) {
        connection->publish_paused = true;
        amqp091_connection_update_blocked(connection);
        amqp091_connection_update_reading(connection);
    }
}

static void amqp091_publish_start(struct amqp091_channel *channel, const amqp_basic_publish_t *m)
{
    channel->exchange = strndup(m->exchange.bytes ? m->exchange.bytes : "", m->exchange.len);
    channel->routing_key =
        strndup(m->routing_key.bytes ? m->routing_key.bytes : "", m->routing_key.len);
    if (!channel->exchange || !channel->routing_key) {
        amqp091_channel_error(channel, AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory",
                              AMQP_BASIC_PUBLISH_METHOD);
        return;
    }
    channel->mandatory = m->mandatory;
    channel->publishing = true;
    channel->header_seen = false;
}

static void amqp091_content_header(struct amqp091_channel *channel,
                                   const struct amqp091_frame *frame)
{
    struct amqp091_connection *connection = channel->connection;
    const struct config *config = adapter_base_config(&connection->adapter->base);
    struct amqp091_content_header header;
    struct amqp091_error error;
    recycle_amqp_pool(&connection->pool);
    if (amqp091_content_header_decode(frame, &connection->pool, &header, &error) < 0) {
        amqp091_connection_error(connection, error.code, error.text, AMQP_BASIC_PUBLISH_METHOD);
        return;
    }
    if (header.class_id != AMQP_BASIC_CLASS) {
        amqp091_connection_error(connection, AMQP_COMMAND_INVALID,
                                 "COMMAND_INVALID - content header of a class other than basic",
                                 AMQP_BASIC_PUBLISH_METHOD);
        return;
    }
    if (header.body_size > config->limits.max_message_size) {
        char text[192];
        snprintf(text, sizeof(text),
                 "PRECONDITION_FAILED - message size %" PRIu64
                 " is larger than configured max size %" PRIu64,
                 header.body_size, (uint64_t)config->limits.max_message_size);
        amqp091_channel_error(channel, AMQP_PRECONDITION_FAILED, text, AMQP_BASIC_PUBLISH_METHOD);
        return;
    }
    channel->header_payload = malloc(frame->size);
    channel->body = malloc(header.body_size ? header.body_size : 1);
    if (!channel->header_payload || !channel->body) {
        amqp091_channel_error(channel, AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory",
                              AMQP_BASIC_PUBLISH_METHOD);
        return;
    }
    memcpy(channel->header_payload, frame->payload, frame->size);
    channel->header_len = frame->size;
    channel->body_size = header.body_size;
    channel->body_received = 0;
    channel->header_seen = true;
    if (channel->body_size == 0)
        amqp091_publish_complete(channel);
}

static void amqp091_content_body(struct amqp091_channel *channel, const struct amqp091_frame *frame)
{
    if (channel->body_received + frame->size > channel->body_size) {
        amqp091_connection_error(channel->connection, AMQP_FRAME_ERROR,
                                 "FRAME_ERROR - content body larger than its header said",
                                 AMQP_BASIC_PUBLISH_METHOD);
        return;
    }
    memcpy(channel->body + channel->body_received, frame->payload, frame->size);
    channel->body_received += frame->size;
    if (channel->body_received == channel->body_size)
        amqp091_publish_complete(channel);
}

/* ---- consuming --------------------------------------------------------------------------- */

static void amqp091_unacked_remove(struct amqp091_channel *channel, struct amqp091_unacked *u)
{
    if (u->prev)
        u->prev->next = u->next;
    else
        channel->unacked_head = u->next;
    if (u->next)
        u->next->prev = u->prev;
    else
        channel->unacked_tail = u->prev;
    u64_map_remove(&channel->unacked_by_tag, u->tag);
    free(u);
}

/* A basic.get has its answer (or its channel or getter is gone): the
 * getter stops delivering and the connection reads again. */
static void amqp091_get_finish(struct amqp091_channel *channel)
{
    if (!channel->get_pending)
        return;
    channel->get_pending = false;
    if (channel->get_timer)
        event_del(channel->get_timer);
    if (channel->getter && channel->getter->core)
        core_subscription_block(channel->getter->core, true);
    channel->connection->waiting--;
    amqp091_connection_update_reading(channel->connection);
}

/* A direct reply-to consumer held the connection's input until its
 * temporary queue was positioned: let it go on. */
static void amqp091_consumer_unhold(struct amqp091_consumer *consumer)
{
    if (!consumer->holding)
        return;
    consumer->holding = false;
    consumer->channel->connection->waiting--;
    amqp091_connection_update_reading(consumer->channel->connection);
}

/* Unsubscribe (unsettled deliveries are released by the core) and free. */
static void amqp091_consumer_end(struct amqp091_consumer *consumer)
{
    struct amqp091_channel *channel = consumer->channel;
    for (struct amqp091_unacked *u = channel->unacked_head, *next; u; u = next) {
        next = u->next;
        if (u->consumer == consumer)
            amqp091_unacked_remove(channel, u);
    }
    if (consumer->core)
        core_unsubscribe(consumer->core);
    if (channel->reply_consumer == consumer)
        channel->reply_consumer = NULL;
    if (channel->getter == consumer) {
        channel->getter = NULL;
        amqp091_get_finish(channel);
    }
    amqp091_consumer_unhold(consumer);
    for (struct amqp091_consumer **at = &channel->consumers; *at; at = &(*at)->next)
        if (*at == consumer) {
            *at = consumer->next;
            break;
        }
    channel->consumer_count--;
    free(consumer);
}

static void amqp091_consumer_deliver(void *opaque, const struct core_delivery *delivery)
{
    struct amqp091_consumer *consumer = opaque;
    struct amqp091_channel *channel = consumer->channel;
    struct amqp091_connection *connection = channel->connection;
    /* released when the consumer ends */
    if (connection->state != AMQP091_STATE_RUNNING || channel->closing)
        return;
    /* a getter delivers while a get waits only (blocked otherwise) */
    if (consumer->getter && !channel->get_pending) {
        core_settle(consumer->core, delivery->id, QUEUE_RELEASE_UNDELIVERED, NULL);
        return;
    }
    bool no_ack = consumer->getter ? channel->get_no_ack : consumer->no_ack;
    size_t count = core_delivery_header_count(delivery);
    struct amqp091_header_in *headers = calloc(count ? count : 1, sizeof(*headers));
    if (!headers) {
        if (delivery->id && !no_ack)
            core_settle(consumer->core, delivery->id, QUEUE_RELEASE_UNDELIVERED, NULL);
        return;
    }
    size_t used = 0;
    /* A record published to an exchange has its routing key in
     * kbridge-routing-key and lives in the exchange's topic (architecture
     * §11), so the topic's name is the exchange (the alternate exchange's
     * when that one took it); a record without it came through the default
     * exchange (or STOMP, AMQP 1.0, Kafka): exchange "", the topic as key. */
    const char *routing_key = delivery->name;
    size_t routing_key_len = strlen(delivery->name);
    const char *exchange = "";
    for (size_t i = 0; i < count; i++) {
        const char *name;
        const void *value;
        size_t value_len;
        if (core_delivery_header(delivery, i, &name, &value, &value_len) < 0)
            continue;
        size_t name_len = strlen(name);
        if (!record_header_delivered(name, name_len, RECORD_DELIVER_AMQP091_DATA))
            continue;
        if (strcmp(name, RECORD_ROUTING_KEY) == 0 && value_len <= 255) {
            routing_key = value;
            routing_key_len = value_len;
            exchange = delivery->name;
        }
        headers[used++] = (struct amqp091_header_in){name, name_len, value, value_len};
    }
    amqp_basic_properties_t properties;
    recycle_amqp_pool(&connection->deliver_pool);
    int rc = amqp091_properties_from_record_headers(headers, used, delivery->delivery_count,
                                                    clock_wall_ms(), &connection->deliver_pool,
                                                    &properties);
    uint64_t tag = ++channel->next_delivery_tag;
    struct amqp091_unacked *unacked = NULL;
    /* a stream queue's deliveries (id 0) are tracked too: the client acks
     * their tags (for flow, as RabbitMQ streams); core_settle ignores them */
    bool track = !no_ack;
    if (rc == 0 && track) {
        unacked = calloc(1, sizeof(*unacked));
        if (!unacked || u64_map_reserve(&channel->unacked_by_tag) < 0) {
            free(unacked);
            unacked = NULL;
            rc = -1;
        }
    }
    if (rc < 0) {
        free(headers);
        log_warn("amqp091", "%s: out of memory delivering to consumer %s", connection->base.peer,
                 consumer->tag);
        if (track || (consumer->getter && delivery->id))
            core_settle(consumer->core, delivery->id, QUEUE_RELEASE_UNDELIVERED, NULL);
        return;
    }
    if (unacked) {
        unacked->tag = tag;
        unacked->id = delivery->id;
        unacked->consumer = consumer;
        unacked->prev = channel->unacked_tail;
        if (channel->unacked_tail)
            channel->unacked_tail->next = unacked;
        else
            channel->unacked_head = unacked;
        channel->unacked_tail = unacked;
        u64_map_put(&channel->unacked_by_tag, tag, unacked);
    }
    if (consumer->direct_reply) { /* RabbitMQ: the reply-to address the reply was sent to */
        routing_key = consumer->reply_address;
        routing_key_len = strlen(consumer->reply_address);
        exchange = "";
    }
    amqp_basic_deliver_t deliver = {
        .consumer_tag = amqp_cstring_bytes(consumer->tag),
        .delivery_tag = tag,
        .redelivered = delivery->delivery_count > 1,
        .exchange = amqp_cstring_bytes(strlen(exchange) <= 255 ? exchange : ""),
        .routing_key = {routing_key_len, (void *)routing_key},
    };
    if (consumer->getter) {
        /* get-ok: message_count is the queue's ready count on this node's
         * member of its group, after this message (architecture §12);
         * the field is 32 bits: a larger count is sent as its maximum */
        uint64_t ready = core_subscription_ready_count(consumer->core);
        amqp_basic_get_ok_t ok = {
            .delivery_tag = tag,
            .redelivered = deliver.redelivered,
            .exchange = deliver.exchange,
            .routing_key = deliver.routing_key,
            .message_count = ready > UINT32_MAX ? UINT32_MAX : (uint32_t)ready,
        };
        int sent = amqp091_send_content(connection, channel->number, AMQP_BASIC_GET_OK_METHOD, &ok,
                                        NULL, 0, &properties, delivery->body, delivery->body_len);
        if (sent < 0 && unacked)
            amqp091_unacked_remove(channel, unacked);
        if (sent < 0 && track)
            core_settle(consumer->core, delivery->id, QUEUE_RELEASE_UNDELIVERED, NULL);
        else if (no_ack && delivery->id)
            core_settle(consumer->core, delivery->id, QUEUE_ACCEPT, NULL);
        free(headers);
        amqp091_get_finish(channel);
        return;
    }
    if (amqp091_send_content(connection, channel->number, AMQP_BASIC_DELIVER_METHOD, &deliver, NULL,
                             0, &properties, delivery->body, delivery->body_len) < 0) {
        log_warn("amqp091", "%s: cannot write a delivery to consumer %s", connection->base.peer,
                 consumer->tag);
        if (unacked)
            amqp091_unacked_remove(channel, unacked);
        if (track)
            core_settle(consumer->core, delivery->id, QUEUE_RELEASE_UNDELIVERED, NULL);
    }
    free(headers);
}

static void amqp091_on_get_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct amqp091_channel *channel = arg;
    if (!channel->get_pending)
        return;
    amqp_basic_get_empty_t empty = {.cluster_id = amqp_cstring_bytes("")};
    amqp091_send_method(channel->connection, channel->number, AMQP_BASIC_GET_EMPTY_METHOD, &empty);
    amqp091_get_finish(channel);
}

/* The getter reads its queue: let one message through, up to get_wait. */
static void amqp091_get_start(struct amqp091_channel *channel)
{
    const struct config *config = adapter_base_config(&channel->connection->adapter->base);
    uint64_t wait_ms = amqp091_config_of(config)->get_wait_ms;
    struct timeval wait = {(time_t)(wait_ms / 1000), (suseconds_t)(wait_ms % 1000) * 1000};
    event_add(channel->get_timer, &wait);
    core_subscription_block(channel->getter->core, false); /* may deliver at once */
}

static void amqp091_consumer_ready(void *opaque)
{
    struct amqp091_consumer *consumer = opaque;
    struct amqp091_channel *channel = consumer->channel;
    consumer->ready = true;
    amqp091_consumer_unhold(consumer);
    if (consumer->getter && channel->get_pending)
        amqp091_get_start(channel);
    if (consumer->nowait || channel->closing)
        return;
    amqp_basic_consume_ok_t ok = {.consumer_tag = amqp_cstring_bytes(consumer->tag)};
    amqp091_send_method(channel->connection, channel->number, AMQP_BASIC_CONSUME_OK_METHOD, &ok);
}

static void amqp091_consumer_failed(void *opaque, int core_error, const char *reason)
{
    struct amqp091_consumer *consumer = opaque;
    struct amqp091_channel *channel = consumer->channel;
    struct amqp091_connection *connection = channel->connection;
    if (core_error == CORE_ERR_NOT_FOUND && consumer->ready && !consumer->getter &&
        connection->client_cancel_notify) {
        /* the queue was deleted: RabbitMQ's consumer_cancel_notify, the
         * channel goes on (unacked deliveries are released) */
        log_info("amqp091", "%s: channel %u: consumer %s cancelled: %s", connection->base.peer,
                 channel->number, consumer->tag, reason ? reason : "queue gone");
        amqp_basic_cancel_t cancel = {.consumer_tag = amqp_cstring_bytes(consumer->tag),
                                      .nowait = 1};
        if (!channel->closing && connection->state == AMQP091_STATE_RUNNING)
            amqp091_send_method(connection, channel->number, AMQP_BASIC_CANCEL_METHOD, &cancel);
        amqp091_consumer_end(consumer);
        return;
    }
    /* The core's error picks the reply code (403 when Kafka refuses the
     * topic, 404 when it does not exist, 541 otherwise), as for a declare. */
    char text[320];
    snprintf(text, sizeof(text), "consumer '%.100s' of queue '%.100s' failed: %.80s", consumer->tag,
             consumer->queue, reason ? reason : "unknown");
    amqp091_channel_core_error(channel, core_error, text, AMQP_BASIC_CONSUME_METHOD);
}

static const struct core_subscription_handlers amqp091_consumer_handlers = {
    .deliver = amqp091_consumer_deliver,
    .ready = amqp091_consumer_ready,
    .failed = amqp091_consumer_failed,
};

static struct amqp091_consumer *amqp091_consumer_find(struct amqp091_channel *channel,
                                                      const char *tag)
{
    for (struct amqp091_consumer *c = channel->consumers; c; c = c->next)
        if (strcmp(c->tag, tag) == 0)
            return c;
    return NULL;
}

/* Consumers on every channel of the connection (limits.max_subscriptions). */
static size_t amqp091_connection_consumers(struct amqp091_connection *connection)
{
    size_t count = 0;
    struct u64_map *channels = &connection->channels;
    for (size_t i = 0; channels->slots && i <= channels->mask; i++)
        if (channels->slots[i].key && channels->slots[i].value)
            count += ((struct amqp091_channel *)channels->slots[i].value)->consumer_count;
    return count;
}

/* A field of any integer type into *out (a u64 above INT64_MAX is
 * INT64_MAX); false for other types. */
static bool amqp091_field_integer(const amqp_field_value_t *v, int64_t *out)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_I8: *out = v->value.i8; return true;
    case AMQP_FIELD_KIND_U8: *out = v->value.u8; return true;
    case AMQP_FIELD_KIND_I16: *out = v->value.i16; return true;
    case AMQP_FIELD_KIND_U16: *out = v->value.u16; return true;
    case AMQP_FIELD_KIND_I32: *out = v->value.i32; return true;
    case AMQP_FIELD_KIND_U32: *out = v->value.u32; return true;
    case AMQP_FIELD_KIND_I64: *out = v->value.i64; return true;
    case AMQP_FIELD_KIND_U64:
        *out = v->value.u64 > INT64_MAX ? INT64_MAX : (int64_t)v->value.u64;
        return true;
    default: return false;
    }
}

/* The value of argument `name` in a table; NULL when absent. */
static const amqp_field_value_t *amqp091_table_get(const amqp_table_t *table, const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < table->num_entries; i++)
        if (table->entries[i].key.len == len && memcmp(table->entries[i].key.bytes, name, len) == 0)
            return &table->entries[i].value;
    return NULL;
}

/* basic.consume's x-priority (RabbitMQ's consumer priorities), any integer
 * type; 0 when absent or of another type. */
static int32_t amqp091_consumer_priority(const amqp_table_t *arguments)
{
    const amqp_field_value_t *v = amqp091_table_get(arguments, "x-priority");
    int64_t value;
    if (!v || !amqp091_field_integer(v, &value))
        return 0;
    return value > INT32_MAX ? INT32_MAX : value < INT32_MIN ? INT32_MIN : (int32_t)value;
}

/* basic.consume's x-stream-offset (RabbitMQ streams, architecture §13):
 * its text in the core's spelling (stream_offset.h) into out: a string as
 * it is ("first", "last", "next", "1h"), an integer as "offset=N", a
 * timestamp as "timestamp=SECONDS". 0 when absent, 1 when found; -1 (with
 * the reason in out) when of another type. */
static int amqp091_stream_offset(const amqp_table_t *arguments, char *out, size_t out_size)
{
    const amqp_field_value_t *v = amqp091_table_get(arguments, "x-stream-offset");
    int64_t value;
    if (!v)
        return 0;
    if (v->kind == AMQP_FIELD_KIND_UTF8 || v->kind == AMQP_FIELD_KIND_BYTES) {
        if (v->value.bytes.len >= out_size ||
            memchr(v->value.bytes.bytes, '\0', v->value.bytes.len)) {
            snprintf(out, out_size, "x-stream-offset is not a stream offset");
            return -1;
        }
        memcpy(out, v->value.bytes.bytes, v->value.bytes.len);
        out[v->value.bytes.len] = '\0';
    } else if (v->kind == AMQP_FIELD_KIND_TIMESTAMP) {
        snprintf(out, out_size, "timestamp=%" PRIu64, v->value.u64);
    } else if (amqp091_field_integer(v, &value)) {
        snprintf(out, out_size, "offset=%" PRId64, value);
    } else {
        snprintf(out, out_size,
                 "x-stream-offset must be a string, an integer offset or a timestamp");
        return -1;
    }
    return 1;
}

static void amqp091_consume(struct amqp091_channel *channel, const amqp_basic_consume_t *m)
{
    struct amqp091_connection *connection = channel->connection;
    char queue[256], tag[256], text[400];
    amqp091_queue_name(channel, m->queue, queue, sizeof(queue));
    amqp091_bytes_text(m->consumer_tag, tag, sizeof(tag));
    if (!queue[0]) {
        amqp091_channel_error(channel, AMQP_NOT_FOUND, "NOT_FOUND - no previously declared queue",
                              AMQP_BASIC_CONSUME_METHOD);
        return;
    }
    if (strlen(queue) > ADDRESS_NAME_MAX) { /* no queue can have that name */
        snprintf(text, sizeof(text), "NOT_FOUND - no queue '%.200s...' in vhost '%.100s'", queue,
                 amqp091_vhost(channel));
        amqp091_channel_error(channel, AMQP_NOT_FOUND, text, AMQP_BASIC_CONSUME_METHOD);
        return;
    }
    bool direct_reply = strcmp(queue, AMQP091_DIRECT_REPLY_TO) == 0;
    if (direct_reply && !m->no_ack) { /* RabbitMQ's checks and texts */
        amqp091_channel_error(channel, AMQP_PRECONDITION_FAILED,
                              "PRECONDITION_FAILED - reply consumer cannot acknowledge",
                              AMQP_BASIC_CONSUME_METHOD);
        return;
    }
    if (direct_reply && channel->reply_consumer) {
        amqp091_channel_error(channel, AMQP_PRECONDITION_FAILED,
                              "PRECONDITION_FAILED - reply consumer already set",
                              AMQP_BASIC_CONSUME_METHOD);
        return;
    }
    if (strlen(queue) > ADDRESS_NAME_MAX) {
        snprintf(text, sizeof(text), "NOT_FOUND - no queue '%.200s' in vhost '%.100s'", queue,
                 amqp091_vhost(channel));
        amqp091_channel_error(channel, AMQP_NOT_FOUND, text, AMQP_BASIC_CONSUME_METHOD);
        return;
    }
    if (!tag[0])
        snprintf(tag, sizeof(tag), "amq.ctag-%" PRIu64 "-%u-%zu", channel->generation,
                 channel->number, channel->consumer_count + 1);
    if (amqp091_consumer_find(channel, tag)) {
        snprintf(text, sizeof(text), "NOT_ALLOWED - attempt to reuse consumer tag '%s'", tag);
        amqp091_connection_error(connection, AMQP_NOT_ALLOWED, text, AMQP_BASIC_CONSUME_METHOD);
        return;
    }
    uint32_t most = adapter_base_config(&connection->adapter->base)->limits.max_subscriptions;
    if (amqp091_connection_consumers(connection) >= most) {
        core_limit_refused(connection->adapter->base.context.core, CORE_LIMIT_SUBSCRIPTIONS);
        snprintf(text, sizeof(text),
                 "RESOURCE_ERROR - too many consumers: this connection holds %u already "
                 "(limits.max_subscriptions, every channel together)",
                 most);
        amqp091_channel_error(channel, AMQP_RESOURCE_ERROR, text, AMQP_BASIC_CONSUME_METHOD);
        return;
    }
    if (channel->consumer_count >= AMQP091_MAX_CONSUMERS) {
        snprintf(text, sizeof(text), "RESOURCE_ERROR - a channel has at most %d consumers",
                 AMQP091_MAX_CONSUMERS);
        amqp091_channel_error(channel, AMQP_RESOURCE_ERROR, text, AMQP_BASIC_CONSUME_METHOD);
        return;
    }
    struct amqp091_consumer *consumer = calloc(1, sizeof(*consumer));
    if (!consumer) {
        amqp091_channel_error(channel, AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory",
                              AMQP_BASIC_CONSUME_METHOD);
        return;
    }
    consumer->channel = channel;
    consumer->no_ack = m->no_ack;
    consumer->nowait = m->nowait;
    snprintf(consumer->tag, sizeof(consumer->tag), "%s", tag);
    amqp091_copy_name(consumer->queue, sizeof(consumer->queue), queue);
    /* linked first: ready/deliver come later, but find it there */
    consumer->next = channel->consumers;
    channel->consumers = consumer;
    channel->consumer_count++;

    struct destination destination = {.kind = DESTINATION_QUEUE, .existing = true};
    amqp091_copy_name(destination.name, sizeof(destination.name), queue);
    struct core_subscribe_options options = {
        .auto_accept = m->no_ack,
        .credit = channel->prefetch ? channel->prefetch : AMQP091_DEFAULT_PREFETCH,
        .priority = amqp091_consumer_priority(&m->arguments),
        /* the core refuses it, or others while it lives, with CORE_ERR_IN_USE
         * (403) and RabbitMQ's text: "queue 'q' in vhost '/' in exclusive use",
         * on this node and, through the status topic, the others
         * (architecture §12 "Exclusive consumers") */
        .exclusive_consumer = m->exclusive && !direct_reply,
    };
    int code = CORE_ERR_INTERNAL;
    char err[600] = "";
    char stream_offset[128];
    int has_offset = amqp091_stream_offset(&m->arguments, stream_offset, sizeof(stream_offset));
    if (has_offset < 0) {
        amqp091_consumer_end(consumer);
        snprintf(text, sizeof(text), "PRECONDITION_FAILED - %s", stream_offset);
        amqp091_channel_error(channel, AMQP_PRECONDITION_FAILED, text, AMQP_BASIC_CONSUME_METHOD);
        return;
    }
    if (has_offset)
        options.stream_offset = stream_offset;
    if (direct_reply) {
        /* the channel's temporary queue (architecture §7); replies are
         * at most once, nothing to settle */
        consumer->direct_reply = true;
        channel->reply_consumer = consumer;
        options.credit = AMQP091_DEFAULT_PREFETCH;
        consumer->core = core_subscribe_temporary(
            connection->session, &options, &amqp091_consumer_handlers, consumer,
            consumer->reply_address, sizeof(consumer->reply_address), &code, err, sizeof(err));
        if (consumer->core) { /* read nothing more until it is positioned */
            consumer->holding = true;
            connection->waiting++;
            amqp091_connection_update_reading(connection);
        }
    } else {
        consumer->core =
            core_subscribe(connection->session, &destination, &options, &amqp091_consumer_handlers,
                           consumer, &code, err, sizeof(err));
    }
    if (!consumer->core) {
        amqp091_consumer_end(consumer);
        amqp091_channel_core_error(channel, code, err, AMQP_BASIC_CONSUME_METHOD);
        return;
    }
    if (connection->deliveries_blocked) {
        consumer->blocked = true;
        core_subscription_block(consumer->core, true);
    }
}

static void amqp091_cancel(struct amqp091_channel *channel, const amqp_basic_cancel_t *m)
{
    char tag[256];
    amqp091_bytes_text(m->consumer_tag, tag, sizeof(tag));
    struct amqp091_consumer *consumer = amqp091_consumer_find(channel, tag);
    if (consumer)
        amqp091_consumer_end(consumer); /* its unacked deliveries are released */
    if (!m->nowait) {
        amqp_basic_cancel_ok_t ok = {.consumer_tag = amqp_cstring_bytes(tag)};
        amqp091_send_method(channel->connection, channel->number, AMQP_BASIC_CANCEL_OK_METHOD, &ok);
    }
}

/* ack / nack / reject: settle one tag, or every tag up to it (multiple;
 * tag 0 with multiple: all). */
static void amqp091_settle(struct amqp091_channel *channel, uint64_t tag, bool multiple,
                           enum queue_outcome outcome, amqp_method_number_t method)
{
    char text[160];
    if (tag > channel->next_delivery_tag || (!multiple && tag == 0)) {
        snprintf(text, sizeof(text), "PRECONDITION_FAILED - unknown delivery tag %" PRIu64, tag);
        amqp091_channel_error(channel, AMQP_PRECONDITION_FAILED, text, method);
        return;
    }
    if (multiple) {
        /* tag 0: everything delivered so far (a release may deliver again
         * at once: those come after it) */
        uint64_t last = tag == 0 ? channel->next_delivery_tag : tag;
        while (channel->unacked_head && channel->unacked_head->tag <= last) {
            struct amqp091_unacked *u = channel->unacked_head;
            uint64_t id = u->id;
            struct core_subscription *core = u->consumer->core;
            amqp091_unacked_remove(channel, u);
            if (!amqp091_tx_settle(channel, core, id, outcome, method))
                core_settle(core, id, outcome, NULL);
        }
        return;
    }
    struct amqp091_unacked *u = u64_map_get(&channel->unacked_by_tag, tag);
    if (!u) {
        snprintf(text, sizeof(text), "PRECONDITION_FAILED - unknown delivery tag %" PRIu64, tag);
        amqp091_channel_error(channel, AMQP_PRECONDITION_FAILED, text, method);
        return;
    }
    if (!amqp091_tx_settle(channel, u->consumer->core, u->id, outcome, method))
        core_settle(u->consumer->core, u->id, outcome, NULL);
    amqp091_unacked_remove(channel, u);
}

/* basic.get: the channel's getter, a consumer of the queue that delivers
 * only while a get waits (blocked otherwise), answers with get-ok, or
 * get-empty when nothing came within amqp091.get_wait; the connection reads
 * nothing else meanwhile. The getter stays for the next get of the same
 * queue (the first one waits for the group to be assigned). */
static void amqp091_get(struct amqp091_channel *channel, const amqp_basic_get_t *m)
{
    struct amqp091_connection *connection = channel->connection;
    char queue[256], text[400];
    amqp091_queue_name(channel, m->queue, queue, sizeof(queue));
    if (!queue[0] || strlen(queue) > ADDRESS_NAME_MAX) {
        snprintf(text, sizeof(text), "NOT_FOUND - no queue '%.200s' in vhost '%.100s'", queue,
                 amqp091_vhost(channel));
        amqp091_channel_error(channel, AMQP_NOT_FOUND, text, AMQP_BASIC_GET_METHOD);
        return;
    }
    if (channel->getter && strcmp(channel->getter->queue, queue) != 0)
        amqp091_consumer_end(channel->getter); /* its unacked gets are released */
    if (!channel->get_timer &&
        !(channel->get_timer =
              evtimer_new(connection->adapter->base.context.base, amqp091_on_get_timer, channel))) {
        amqp091_channel_error(channel, AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory",
                              AMQP_BASIC_GET_METHOD);
        return;
    }
    if (!channel->getter) {
        struct amqp091_consumer *getter = calloc(1, sizeof(*getter));
        if (!getter) {
            amqp091_channel_error(channel, AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory",
                                  AMQP_BASIC_GET_METHOD);
            return;
        }
        getter->channel = channel;
        getter->getter = true;
        getter->nowait = true; /* no consume-ok */
        getter->blocked = true;
        snprintf(getter->tag, sizeof(getter->tag), "amq.get-%" PRIu64 "-%u", channel->generation,
                 channel->number);
        amqp091_copy_name(getter->queue, sizeof(getter->queue), queue);
        getter->next = channel->consumers;
        channel->consumers = getter;
        channel->consumer_count++;
        struct destination destination = {.kind = DESTINATION_QUEUE, .existing = true};
        amqp091_copy_name(destination.name, sizeof(destination.name), queue);
        struct core_subscribe_options options = {.credit = AMQP091_DEFAULT_PREFETCH};
        int code = CORE_ERR_INTERNAL;
        char err[256] = "";
        getter->core = core_subscribe(connection->session, &destination, &options,
                                      &amqp091_consumer_handlers, getter, &code, err, sizeof(err));
        if (!getter->core) {
            amqp091_consumer_end(getter);
            amqp091_channel_core_error(channel, code, err, AMQP_BASIC_GET_METHOD);
            return;
        }
        core_subscription_block(getter->core, true);
        channel->getter = getter;
    }
    channel->get_pending = true;
    channel->get_no_ack = m->no_ack;
    connection->waiting++;
    amqp091_connection_update_reading(connection);
    if (channel->getter->ready)
        amqp091_get_start(channel);
}

/* basic.recover / recover-async: requeue=true releases every delivery of
 * the channel not acked yet, for redelivery (to any consumer, this one
 * included, with redelivered set), as RabbitMQ does; requeue=false (deliver
 * again to the same consumer only) is 540, as in RabbitMQ. */
static void amqp091_recover(struct amqp091_channel *channel, bool requeue, bool async,
                            amqp_method_number_t method)
{
    if (!requeue) {
        amqp091_channel_error(channel, AMQP_NOT_IMPLEMENTED, "NOT_IMPLEMENTED - requeue=false",
                              method);
        return;
    }
    /* only what was delivered before: core_settle may deliver again at once */
    uint64_t last = channel->next_delivery_tag;
    while (channel->unacked_head && channel->unacked_head->tag <= last) {
        struct amqp091_unacked *u = channel->unacked_head;
        uint64_t id = u->id;
        struct core_subscription *core = u->consumer->core;
        amqp091_unacked_remove(channel, u);
        core_settle(core, id, QUEUE_RELEASE, NULL);
    }
    if (!async) {
        amqp_basic_recover_ok_t ok = {0};
        amqp091_send_method(channel->connection, channel->number, AMQP_BASIC_RECOVER_OK_METHOD,
                            &ok);
    }
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static void amqp091_channel_method(struct amqp091_channel *channel,
                                   const struct amqp091_method *method)
{
    struct amqp091_connection *connection = channel->connection;
    void *m = method->decoded;
    switch (method->id) {
    case AMQP_CHANNEL_CLOSE_METHOD: {
        amqp_channel_close_ok_t ok = {0};
        amqp091_send_method(connection, channel->number, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        amqp091_channel_free(channel);
        return;
    }
    case AMQP_CHANNEL_CLOSE_OK_METHOD:
        if (channel->closing)
            amqp091_channel_free(channel);
        return;
    default: break;
    }
    if (channel->closing)
        return; /* dropped until close-ok */
    if (channel->publishing) {
        amqp091_connection_error(connection, AMQP_UNEXPECTED_FRAME,
                                 "UNEXPECTED_FRAME - a method frame where basic.publish's content "
                                 "was expected",
                                 method->id);
        return;
    }
    switch (method->id) {
    case AMQP_CHANNEL_OPEN_METHOD: {
        char text[128];
        snprintf(text, sizeof(text), "CHANNEL_ERROR - second 'channel.open' seen");
        amqp091_connection_error(connection, AMQP_CHANNEL_ERROR, text, method->id);
        return;
    }
    case AMQP_CHANNEL_FLOW_METHOD: {
        amqp_channel_flow_ok_t ok = {.active = ((amqp_channel_flow_t *)m)->active};
        amqp091_send_method(connection, channel->number, AMQP_CHANNEL_FLOW_OK_METHOD, &ok);
        return;
    }
    case AMQP_EXCHANGE_DECLARE_METHOD: amqp091_exchange_declare(channel, m); return;
    case AMQP_EXCHANGE_DELETE_METHOD: amqp091_exchange_delete(channel, m); return;
    case AMQP_EXCHANGE_BIND_METHOD: {
        amqp_exchange_bind_t *b = m;
        amqp091_binding(channel, method->id, BINDING_TO_EXCHANGE, b->destination, b->source,
                        b->routing_key, &b->arguments, b->nowait, true);
        return;
    }
    case AMQP_EXCHANGE_UNBIND_METHOD: {
        amqp_exchange_unbind_t *b = m;
        amqp091_binding(channel, method->id, BINDING_TO_EXCHANGE, b->destination, b->source,
                        b->routing_key, &b->arguments, b->nowait, false);
        return;
    }
    case AMQP_QUEUE_DECLARE_METHOD: amqp091_queue_declare(channel, m); return;
    case AMQP_QUEUE_BIND_METHOD: {
        amqp_queue_bind_t *b = m;
        amqp091_binding(channel, method->id, BINDING_TO_QUEUE, b->queue, b->exchange,
                        b->routing_key, &b->arguments, b->nowait, true);
        return;
    }
    case AMQP_QUEUE_UNBIND_METHOD: {
        amqp_queue_unbind_t *b = m;
        amqp091_binding(channel, method->id, BINDING_TO_QUEUE, b->queue, b->exchange,
                        b->routing_key, &b->arguments, false, false);
        return;
    }
    case AMQP_QUEUE_DELETE_METHOD: amqp091_queue_delete(channel, m); return;
    case AMQP_QUEUE_PURGE_METHOD: amqp091_queue_purge(channel, m); return;
    case AMQP_BASIC_QOS_METHOD: {
        amqp_basic_qos_t *q = m;
        channel->prefetch = q->prefetch_count; /* per consumer, for consumers made after it */
        amqp_basic_qos_ok_t ok = {0};
        amqp091_send_method(connection, channel->number, AMQP_BASIC_QOS_OK_METHOD, &ok);
        return;
    }
    case AMQP_BASIC_CONSUME_METHOD: amqp091_consume(channel, m); return;
    case AMQP_BASIC_CANCEL_METHOD: amqp091_cancel(channel, m); return;
    case AMQP_BASIC_PUBLISH_METHOD: amqp091_publish_start(channel, m); return;
    case AMQP_BASIC_ACK_METHOD: {
        amqp_basic_ack_t *a = m;
        amqp091_settle(channel, a->delivery_tag, a->multiple, QUEUE_ACCEPT, method->id);
        return;
    }
    case AMQP_BASIC_NACK_METHOD: {
        amqp_basic_nack_t *n = m;
        amqp091_settle(channel, n->delivery_tag, n->multiple,
                       n->requeue ? QUEUE_RELEASE : QUEUE_REJECT, method->id);
        return;
    }
    case AMQP_BASIC_REJECT_METHOD: {
        amqp_basic_reject_t *r = m;
        amqp091_settle(channel, r->delivery_tag, false, r->requeue ? QUEUE_RELEASE : QUEUE_REJECT,
                       method->id);
        return;
    }
    case AMQP_BASIC_GET_METHOD: amqp091_get(channel, m); return;
    case AMQP_BASIC_RECOVER_METHOD:
        amqp091_recover(channel, ((amqp_basic_recover_t *)m)->requeue, false, method->id);
        return;
    case AMQP_BASIC_RECOVER_ASYNC_METHOD:
        amqp091_recover(channel, ((amqp_basic_recover_async_t *)m)->requeue, true, method->id);
        return;
    case AMQP_CONFIRM_SELECT_METHOD: {
        if (amqp091_tx_mode(channel)) {
            amqp091_channel_error(channel, AMQP_PRECONDITION_FAILED,
                                  "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
                                  method->id);
            return;
        }
        channel->confirm = true;
        if (!channel->confirm_event) /* without it every ack goes alone */
            channel->confirm_event = event_new(connection->adapter->base.context.base, -1, 0,
                                               amqp091_on_confirm_event, channel);
        if (!((amqp_confirm_select_t *)m)->nowait) {
            amqp_confirm_select_ok_t ok = {0};
            amqp091_send_method(connection, channel->number, AMQP_CONFIRM_SELECT_OK_METHOD, &ok);
        }
        return;
    }
    case AMQP_TX_SELECT_METHOD:
    case AMQP_TX_COMMIT_METHOD:
    case AMQP_TX_ROLLBACK_METHOD: amqp091_tx_method(channel, method->id); return;
    default: {
        char text[192];
        snprintf(text, sizeof(text), "COMMAND_INVALID - unexpected method %s on a channel",
                 amqp_method_name(method->id));
        amqp091_connection_error(connection, AMQP_COMMAND_INVALID, text, method->id);
        return;
    }
    }
}

static void amqp091_channel_open(struct amqp091_connection *connection, uint16_t number)
{
    char text[192];
    if (number > connection->channel_max) {
        core_limit_refused(connection->adapter->base.context.core, CORE_LIMIT_CHANNELS);
        snprintf(text, sizeof(text),
                 "NOT_ALLOWED - channel %u is above the negotiated channel_max %u", number,
                 connection->channel_max);
        amqp091_connection_error(connection, AMQP_NOT_ALLOWED, text, AMQP_CHANNEL_OPEN_METHOD);
        return;
    }
    struct amqp091_channel *channel = calloc(1, sizeof(*channel));
    if (!channel || u64_map_reserve(&connection->channels) < 0) {
        free(channel);
        amqp091_connection_error(connection, AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory",
                                 AMQP_CHANNEL_OPEN_METHOD);
        return;
    }
    channel->connection = connection;
    channel->number = number;
    channel->generation = ++connection->next_generation;
    u64_map_put(&connection->channels, number, channel);
    amqp_channel_open_ok_t ok = {.channel_id = amqp_cstring_bytes("")};
    amqp091_send_method(connection, number, AMQP_CHANNEL_OPEN_OK_METHOD, &ok);
}

void amqp091_channel_frame(struct amqp091_connection *connection, const struct amqp091_frame *frame)
{
    struct amqp091_channel *channel = amqp091_channel_find(connection, frame->channel);
    if (frame->type == AMQP091_FRAME_METHOD) {
        struct amqp091_method method;
        struct amqp091_error error;
        recycle_amqp_pool(&connection->pool);
        if (amqp091_method_decode(frame, &connection->pool, &method, &error) < 0) {
            amqp091_connection_error(connection, error.code, error.text, 0);
            return;
        }
        if (!channel) {
            if (method.id == AMQP_CHANNEL_OPEN_METHOD)
                amqp091_channel_open(connection, frame->channel);
            else if (method.id != AMQP_CHANNEL_CLOSE_OK_METHOD)
                amqp091_connection_error(connection, AMQP_CHANNEL_ERROR,
                                         "CHANNEL_ERROR - expected 'channel.open'", method.id);
            return;
        }
        amqp091_channel_method(channel, &method);
        return;
    }
    if (!channel) {
        amqp091_connection_error(connection, AMQP_CHANNEL_ERROR,
                                 "CHANNEL_ERROR - expected 'channel.open'", 0);
        return;
    }
    if (channel->closing)
        return;
    if (frame->type == AMQP091_FRAME_HEADER) {
        if (!channel->publishing || channel->header_seen) {
            amqp091_connection_error(connection, AMQP_UNEXPECTED_FRAME,
                                     "UNEXPECTED_FRAME - content header without basic.publish", 0);
            return;
        }
        amqp091_content_header(channel, frame);
        return;
    }
    /* a body frame */
    if (!channel->publishing || !channel->header_seen) {
        amqp091_connection_error(connection, AMQP_UNEXPECTED_FRAME,
                                 "UNEXPECTED_FRAME - content body without a content header", 0);
        return;
    }
    amqp091_content_body(channel, frame);
}
