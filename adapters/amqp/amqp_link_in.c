/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_link_in.c -- links on which the client sends: credit, reading
 * (possibly multi-frame) transfers, decoding, conversion to a Kafka record
 * and core_publish. An unsettled transfer is settled `accepted` only from
 * the core's confirmation callback, i.e. after Kafka's delivery report, or
 * `rejected` with a condition that names the reason; a pre-settled one is
 * settled at once and published fire-and-forget (it still counts against
 * limits.max_unconfirmed until Kafka has it, so a flood is bounded).
 *
 * Credit: each link gets up to AMQP_IN_CREDIT_WINDOW, never more than the
 * room left under limits.max_unconfirmed for the connection, topped up when
 * it falls to half of what it may have; none while the server drains. */
#include <event2/event.h>
#include <proton/codec.h>
#include <proton/connection.h>
#include <proton/delivery.h>
#include <proton/disposition.h>
#include <proton/link.h>
#include <proton/message.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp_address.h"
#include "amqp_connection.h"
#include "amqp_convert.h"
#include "config.h"
#include "core.h"
#include "log.h"

/* pn_delivery context of a transfer being discarded because it is too large. */
static char amqp_oversize_marker;

int amqp_link_in_open(struct amqp_link *link)
{
    const struct config *config = amqp_adapter_config(link->connection->adapter);
    pn_link_t *pl = link->link;
    pn_terminus_copy(pn_link_target(pl), pn_link_remote_target(pl));
    pn_terminus_copy(pn_link_source(pl), pn_link_remote_source(pl));
    pn_link_set_snd_settle_mode(pl, pn_link_remote_snd_settle_mode(pl));
    pn_link_set_rcv_settle_mode(pl, PN_RCV_FIRST);
    pn_link_set_max_message_size(pl, config->limits.max_message_size + AMQP_MESSAGE_OVERHEAD);
    pn_link_open(pl);
    amqp_link_in_update_credit(link);
    amqp_connection_schedule(link->connection);
    return 0;
}

void amqp_link_in_update_credit(struct amqp_link *link)
{
    struct amqp_connection *connection = link->connection;
    if (link->closed || connection->adapter->base.draining ||
        !(pn_link_state(link->link) & PN_LOCAL_ACTIVE))
        return;
    uint32_t max = amqp_adapter_config(connection->adapter)->limits.max_unconfirmed;
    uint32_t room = connection->base.unconfirmed < max ? max - connection->base.unconfirmed : 0;
    int want = room < AMQP_IN_CREDIT_WINDOW ? (int)room : AMQP_IN_CREDIT_WINDOW;
    if (link->held)
        return; /* nothing more until the held transfer went */
    int credit = pn_link_credit(link->link);
    if (credit < want && credit <= want / 2) {
        pn_link_flow(link->link, want - credit);
        amqp_connection_schedule(connection);
    }
}

/* ---- publishes ------------------------------------------------------------------------ */

/* Unlink a publish from the connection's base and its link. */
static void amqp_publish_unlink(struct amqp_publish *publish)
{
    connection_publish_cancel(&publish->base);
    if (publish->link)
        publish->link->pending--;
}

void amqp_publishes_detach(struct amqp_connection *connection, struct amqp_link *link)
{
    if (link->pending == 0)
        return;
    for (struct connection_publish *p = connection->base.publishes; p; p = p->next) {
        struct amqp_publish *publish = (struct amqp_publish *)p;
        if (publish->link == link) {
            publish->link = NULL;
            publish->delivery = NULL;
        }
    }
    link->pending = 0;
}

/* Settle a transfer as rejected with a condition (or just settle it when the
 * client had settled it already: nobody would see the outcome). */
static void amqp_link_in_reject(struct amqp_connection *connection, pn_delivery_t *delivery,
                                enum amqp_error_kind kind, const char *condition,
                                const char *description)
{
    amqp_adapter_count_error(connection->adapter, kind);
    log_info("amqp", "%s: message rejected with %s: %s", connection->base.peer, condition,
             description);
    if (!pn_delivery_settled(delivery)) {
        pn_disposition_t *local = pn_delivery_local(delivery);
        amqp_condition_set(pn_disposition_condition(local), condition, "%s", description);
        pn_delivery_update(delivery, PN_REJECTED);
    }
    pn_delivery_settle(delivery);
}

/* Reject a transfer with the AMQP error for a core error (the one table,
 * amqp_core_error). */
static void amqp_link_in_reject_as(struct amqp_connection *connection, pn_delivery_t *delivery,
                                   struct amqp_error error, const char *description)
{
    amqp_link_in_reject(connection, delivery, error.kind, error.condition, description);
}

/* A transfer the core refused now. */
static void amqp_link_in_core_error(struct amqp_connection *connection, pn_delivery_t *delivery,
                                    int rc, const char *destination, const char *reason)
{
    char description[512];
    switch (rc) {
    case CORE_ERR_ACCESS:
        snprintf(description, sizeof(description), "not allowed to publish to '%s': %s",
                 destination, reason);
        break;
    case CORE_ERR_TOO_LARGE:
    case CORE_ERR_INVALID:
    case CORE_ERR_UNSUPPORTED:
    case CORE_ERR_NOT_FOUND:
        snprintf(description, sizeof(description), "message to '%s' refused: %s", destination,
                 reason);
        break;
    case CORE_ERR_BUSY:
    case CORE_ERR_UNAVAILABLE:
        snprintf(description, sizeof(description),
                 "message to '%s' not stored, Kafka is not taking it now (%s); send it again",
                 destination, reason);
        break;
    default:
        snprintf(description, sizeof(description), "message to '%s' not stored: %s", destination,
                 reason);
        break;
    }
    amqp_link_in_reject_as(connection, delivery, amqp_core_error(rc)->now, description);
}

/* connection_ops.publish_done, exactly once per transfer handed to the
 * core: Kafka stored the record, refused it, or the connection is being
 * freed (CONNECTION_PUBLISH_ABANDONED: its links and deliveries are gone). */
void amqp_link_in_done(struct connection_publish *base, int result, const char *reason)
{
    struct amqp_publish *publish = (struct amqp_publish *)base;
    struct amqp_connection *connection = (struct amqp_connection *)base->connection;
    if (publish->link)
        publish->link->pending--;
    if (result == CONNECTION_PUBLISH_ABANDONED) {
        free(publish);
        return;
    }
    if (publish->delivery && publish->discharge) {
        /* a transaction's commit (amqp_tx.c) */
        if (result == CORE_OK) {
            pn_delivery_update(publish->delivery, PN_ACCEPTED);
            pn_delivery_settle(publish->delivery);
        } else {
            char description[512];
            snprintf(description, sizeof(description),
                     "%s was not committed: %s; none of its messages was written and the "
                     "messages it settled will be redelivered",
                     publish->destination, reason ? reason : "Kafka error");
            amqp_link_in_reject(connection, publish->delivery, AMQP_KIND_KAFKA,
                                "amqp:transaction:rollback", description);
        }
    } else if (publish->delivery) {
        if (result == CORE_OK) {
            pn_delivery_update(publish->delivery, PN_ACCEPTED);
            pn_delivery_settle(publish->delivery);
        } else if (result == CORE_UNROUTABLE) {
            /* an exchange with no matching binding: RabbitMQ's `released` */
            pn_delivery_update(publish->delivery, PN_RELEASED);
            pn_delivery_settle(publish->delivery);
        } else if (result == CORE_ERR_ACCESS || result == CORE_ERR_TOO_LARGE ||
                   result == CORE_ERR_INVALID || result == CORE_ERR_NOT_FOUND) {
            /* the core's own refusal or Kafka's classified one, only known at
             * Kafka's answer: the transfer's own condition (the table's `now`) */
            amqp_link_in_core_error(connection, publish->delivery, result, publish->destination,
                                    reason ? reason : "refused");
        } else {
            char description[512];
            snprintf(description, sizeof(description),
                     "Kafka did not store the message sent to '%s': %s; it is not in Kafka, "
                     "send it again",
                     publish->destination, reason ? reason : "Kafka error");
            amqp_link_in_reject_as(connection, publish->delivery, amqp_core_error(result)->later,
                                   description);
        }
    } else if (result != CORE_OK && result != CORE_UNROUTABLE) {
        log_warn("amqp", "%s: a pre-settled message to '%s' was not stored: %s",
                 connection->base.peer, publish->destination, reason ? reason : "Kafka error");
    }
    free(publish); /* a held transfer: the base retries it (amqp_link_in_retry_held) */
    amqp_connection_update_credit(connection);
    amqp_connection_schedule(connection);
}

/* A complete message of `size` encoded bytes: published, refused, or
 * (Kafka's producer queue full) kept by the link: true then. */
static bool amqp_link_in_publish(struct amqp_link *link, pn_delivery_t *delivery, const char *bytes,
                                 size_t size)
{
    struct amqp_connection *connection = link->connection;
    struct amqp_adapter *adapter = connection->adapter;
    const struct config *config = amqp_adapter_config(adapter);
    pn_message_t *message = adapter->message;
    pn_message_clear(message);
    if (pn_message_decode(message, bytes, size) != 0) {
        char description[256];
        snprintf(description, sizeof(description), "cannot decode the message: %s",
                 pn_error_text(pn_message_error(message)));
        amqp_link_in_reject(connection, delivery, AMQP_KIND_DECODE, "amqp:decode-error",
                            description);
        return false;
    }
    if (link->coordinator) {
        amqp_tx_control(link, delivery, message);
        return false;
    }

    struct destination relay_destination;
    const struct destination *destination = &link->destination;
    const char *address = link->address;
    if (link->relay) {
        address = pn_message_get_address(message);
        char reason[256];
        if (!address || !*address) {
            amqp_link_in_reject(connection, delivery, AMQP_KIND_ADDRESS, "amqp:not-found",
                                "a message on the anonymous relay needs a 'to' address");
            return false;
        }
        if (address_parse(&amqp_addresses, address, &relay_destination, reason, sizeof(reason)) <
            0) {
            amqp_link_in_reject(connection, delivery, AMQP_KIND_ADDRESS, "amqp:not-found", reason);
            return false;
        }
        if (relay_destination.kind == DESTINATION_TEMP_QUEUE) {
            amqp_link_in_reject(connection, delivery, AMQP_KIND_UNSUPPORTED, "amqp:not-implemented",
                                "cannot send to a temporary queue by name; send to the "
                                "/reply-queue/ address it was given");
            return false;
        }
        if (relay_destination.wildcard) {
            amqp_link_in_reject(connection, delivery, AMQP_KIND_ADDRESS, "amqp:not-found",
                                "cannot send to a wildcard address");
            return false;
        }
        destination = &relay_destination;
    }

    struct amqp_record record;
    char err[256] = "";
    if (amqp_record_from_message(message, &record, err, sizeof(err)) < 0) {
        amqp_link_in_reject(connection, delivery, AMQP_KIND_DECODE, "amqp:invalid-field", err);
        return false;
    }
    if (record.property_count > config->limits.max_headers) {
        char description[256];
        snprintf(description, sizeof(description),
                 "the message has %zu properties; this server accepts at most %u "
                 "(limits.max_headers)",
                 record.property_count, config->limits.max_headers);
        amqp_record_release(&record);
        amqp_link_in_reject(connection, delivery, AMQP_KIND_LIMIT, "amqp:resource-limit-exceeded",
                            description);
        return false;
    }
    /* An exchange address: its KEY, else the message's subject (RabbitMQ's
     * /exchanges/NAME), else the empty key. */
    const char *routing_key = "";
    if (destination->kind == DESTINATION_EXCHANGE) {
        const char *subject = pn_message_get_subject(message);
        if (destination->key_at)
            routing_key = address + destination->key_at;
        else if (subject)
            routing_key = subject;
    }
    struct core_message core_message = {
        .key = record.key,
        .routing_key = routing_key,
        .routing_key_len = strlen(routing_key),
        .key_len = record.key_len,
        .body = record.body,
        .body_len = record.body_len,
        .properties = record.properties,
        .property_count = record.property_count,
        .producer = link->number,
        .deliver_at = record.deliver_at,
    };
    int tx_rc;
    if (amqp_tx_publish(link, delivery, destination, &core_message, &tx_rc, err, sizeof(err))) {
        amqp_record_release(&record);
        if (tx_rc != CORE_OK)
            amqp_link_in_core_error(connection, delivery, tx_rc, address, err);
        return false;
    }
    struct amqp_publish *publish = calloc(1, sizeof(*publish));
    if (!publish) {
        amqp_record_release(&record);
        amqp_link_in_reject(connection, delivery, AMQP_KIND_INTERNAL, "amqp:internal-error",
                            "out of memory");
        return false;
    }
    bool presettled = pn_delivery_settled(delivery);
    publish->link = link;
    publish->delivery = presettled ? NULL : delivery;
    snprintf(publish->destination, sizeof(publish->destination), "%s", address);
    connection_publish_begin(&connection->base, &publish->base);
    link->pending++;

    int rc = core_publish(connection->session, destination, &core_message,
                          connection_publish_confirmed, &publish->base, err, sizeof(err));
    amqp_record_release(&record);
    if (rc == CORE_ERR_BUSY) {
        /* Kafka's producer queue is full: the link keeps the transfer and
         * tries again (architecture §12's held publish, as STOMP and 0-9-1) */
        amqp_publish_unlink(publish);
        free(publish);
        return true;
    }
    if (rc != CORE_OK) {
        amqp_publish_unlink(publish);
        free(publish);
        amqp_link_in_core_error(connection, delivery, rc, address, err);
        return false;
    }
    if (presettled)
        pn_delivery_settle(delivery);
    return false;
}

void amqp_link_in_retry_held(struct connection *base)
{
    struct amqp_connection *connection = (struct amqp_connection *)base;
    for (struct amqp_link *l = connection->links; l; l = l->next)
        if (!l->outgoing && l->held)
            amqp_link_in_retry(l);
    amqp_connection_update_credit(connection);
    amqp_connection_schedule(connection);
}

/* Keep the transfer in `bytes` (the link's first held one); the adapter base
 * retries (connection_publish_hold, amqp_link_in_retry_held). */
static void amqp_link_in_hold(struct amqp_link *link, pn_delivery_t *delivery, const char *bytes,
                              size_t size)
{
    struct amqp_connection *connection = link->connection;
    if (!link->held) {
        link->held = malloc(size ? size : 1);
        if (!link->held) {
            amqp_link_in_reject(connection, delivery, AMQP_KIND_INTERNAL, "amqp:internal-error",
                                "out of memory");
            return;
        }
        memcpy(link->held, bytes, size);
        link->held_len = size;
        link->held_delivery = delivery;
        log_debug("amqp", "%s: link %s: Kafka's producer queue is full, the transfer waits",
                  connection->base.peer, link->address);
    }
    connection_publish_hold(&connection->base);
}

void amqp_link_in_forget_held(struct amqp_link *link)
{
    free(link->held);
    link->held = NULL;
    link->held_delivery = NULL;
}

void amqp_link_in_retry(struct amqp_link *link)
{
    if (!link->held || link->closed)
        return;
    char *bytes = link->held;
    size_t size = link->held_len;
    pn_delivery_t *delivery = link->held_delivery;
    link->held = NULL; /* publishing it again may hold it again */
    link->held_delivery = NULL;
    if (amqp_link_in_publish(link, delivery, bytes, size)) {
        link->held = bytes;
        link->held_len = size;
        link->held_delivery = delivery;
        amqp_link_in_hold(link, delivery, bytes, size); /* held again */
        return;
    }
    free(bytes);
    /* the transfers that waited behind it, in order */
    for (pn_delivery_t *next = pn_link_current(link->link); next && !link->held && !link->closed &&
                                                            pn_delivery_readable(next) &&
                                                            !pn_delivery_partial(next);) {
        amqp_link_in_delivery(link, next);
        pn_delivery_t *after = pn_link_current(link->link);
        if (after == next)
            break; /* not taken: its event comes again */
        next = after;
    }
    amqp_link_in_update_credit(link);
}

void amqp_link_in_delivery(struct amqp_link *link, pn_delivery_t *delivery)
{
    struct amqp_connection *connection = link->connection;
    struct amqp_adapter *adapter = connection->adapter;
    pn_link_t *pl = link->link;
    if (pn_delivery_aborted(delivery)) {
        pn_delivery_settle(delivery); /* the client gave up on a multi-frame transfer */
        return;
    }
    if (!pn_delivery_readable(delivery))
        return;
    if (link->held)
        return; /* it waits in proton behind the held transfer (amqp_link_in_retry) */
    uint64_t limit = amqp_adapter_config(adapter)->limits.max_message_size + AMQP_MESSAGE_OVERHEAD;
    size_t pending = pn_delivery_pending(delivery);
    bool oversize = pn_delivery_get_context(delivery) == &amqp_oversize_marker || pending > limit;
    if (oversize) {
        /* Read and drop, keep the link going; reject when the last frame is in. */
        pn_delivery_set_context(delivery, &amqp_oversize_marker);
        while (pn_link_recv(pl, adapter->buffer, adapter->buffer_cap) > 0) {
        }
        if (pn_delivery_partial(delivery))
            return;
        pn_link_advance(pl);
        char description[256];
        snprintf(description, sizeof(description),
                 "the message is larger than this server accepts (limits.max_message_size = "
                 "%llu bytes of body)",
                 (unsigned long long)amqp_adapter_config(adapter)->limits.max_message_size);
        amqp_link_in_reject(connection, delivery, AMQP_KIND_LIMIT,
                            "amqp:link:message-size-exceeded", description);
        amqp_link_in_update_credit(link);
        return;
    }
    if (pn_delivery_partial(delivery))
        return; /* proton keeps the frames until the last one */
    if (amqp_adapter_buffer_reserve(adapter, pending + 1) < 0) {
        amqp_link_in_reject(connection, delivery, AMQP_KIND_INTERNAL, "amqp:internal-error",
                            "out of memory");
        return;
    }
    size_t size = 0;
    for (;;) {
        ssize_t n = pn_link_recv(pl, adapter->buffer + size, adapter->buffer_cap - size);
        if (n <= 0)
            break;
        size += (size_t)n;
        if (size == adapter->buffer_cap &&
            amqp_adapter_buffer_reserve(adapter, adapter->buffer_cap * 2) < 0)
            break;
    }
    pn_link_advance(pl);
    connection->transfers_in++;
    (*adapter->transfers_received)++;
    if (amqp_link_in_publish(link, delivery, adapter->buffer, size))
        amqp_link_in_hold(link, delivery, adapter->buffer, size);
    amqp_link_in_update_credit(link);
}
