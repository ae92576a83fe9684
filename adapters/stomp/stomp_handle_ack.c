/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_handle_ack.c -- ACK and NACK.
 *
 * Which delivery: 1.2 names it by `id` (the MESSAGE's ack header,
 * "S<subscription seq>-<delivery seq>"); 1.1 by `message-id` + `subscription`;
 * 1.0 by `message-id` (with `subscription` when the client sends it). A
 * `subscription` that names no subscription of the connection, or none in
 * 1.1, is not an error: the message-id alone finds the delivery, as in
 * RabbitMQ (whose message-id names its subscription). A message-id can repeat (a native producer
 * reusing ids): the oldest unacknowledged delivery with that id is meant. A 1.2 client that sends
 * message-id instead of id is served the 1.1 way. A 1.2 id is found through
 * maps (the connection's subscriptions and each subscription's unacked
 * deliveries by seq); a message-id walks the unacked deliveries oldest
 * first, so an ACK in delivery order finds its delivery at once.
 *
 * What: in `client` mode ACK and NACK are cumulative (every earlier
 * unacknowledged delivery of that subscription, in delivery order, then the
 * named one); in `client-individual` mode they settle the named one. ACK ->
 * accept; NACK -> release (redeliver) by default (stomp.nack_requeue),
 * requeue:true -> release, requeue:false -> reject (dead-letter now); true
 * and false in any case ("True" from stomp.py), as RabbitMQ accepts them.
 *
 * With a `transaction` header (one BEGIN opened) the settlement is held by
 * the transaction and applied at its COMMIT (stomp_handle_transaction.c).
 *
 * ACKs for an auto-ack subscription, or for a plain (non-durable) topic
 * subscription where there is nothing to settle in Kafka, are ignored. An id
 * that names nothing of this connection is an ERROR (the spec's rule), with
 * RabbitMQ's `message` texts ("Message not found", "Missing header"). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core.h"
#include "log.h"
#include "stomp_config.h"
#include "stomp_handlers.h"

static bool stomp_ack_settles(const struct stomp_subscription *sub)
{
    return sub->ack_mode != STOMP_ACK_AUTO && sub->settles;
}

static struct stomp_unacked *stomp_ack_find_seq(struct stomp_subscription *sub, uint64_t seq)
{
    return u64_map_get(&sub->unacked_by_seq, seq);
}

static struct stomp_unacked *stomp_ack_find_message_id(struct stomp_subscription *sub,
                                                       const char *message_id)
{
    for (struct stomp_unacked *u = sub->unacked_head; u; u = u->next)
        if (strcmp(u->message_id, message_id) == 0)
            return u;
    return NULL;
}

/* "S<seq>-<n>" -> seq, n. */
static int stomp_ack_parse_id(const char *text, uint32_t *sub_seq, uint64_t *seq)
{
    char *end;
    if (text[0] != 'S' || text[1] < '0' || text[1] > '9')
        return -1;
    unsigned long long a = strtoull(text + 1, &end, 10);
    if (*end != '-' || a > UINT32_MAX || end[1] < '0' || end[1] > '9')
        return -1;
    unsigned long long b = strtoull(end + 1, &end, 10);
    if (*end != '\0')
        return -1;
    *sub_seq = (uint32_t)a;
    *seq = b;
    return 0;
}

/* Settle now, or, inside a transaction, hold the settlement until its
 * COMMIT (an ABORT redelivers the message). Either way the delivery is no
 * longer this connection's to acknowledge. */
static void stomp_ack_settle(struct stomp_connection *connection, struct stomp_subscription *sub,
                             struct stomp_unacked *unacked, enum queue_outcome outcome,
                             struct stomp_transaction *transaction)
{
    const char *reason = outcome == QUEUE_REJECT ? "rejected by the STOMP client (NACK)" : NULL;
    if (sub->core && transaction) {
        if (core_transaction_settle(transaction->core, sub->core, unacked->delivery_id, outcome,
                                    reason) != CORE_OK)
            log_warn("stomp", "%s: out of memory holding an ACK in transaction '%s'",
                     connection->base.peer, transaction->name);
    } else if (sub->core &&
               core_settle(sub->core, unacked->delivery_id, outcome, reason) != CORE_OK)
        log_debug("stomp",
                  "%s: settle of delivery %" PRIu64 " on %s came too late (its "
                  "partition moved or it timed out)",
                  connection->base.peer, unacked->delivery_id, sub->destination_text);
    stomp_subscription_forget(sub, unacked);
}

int stomp_handle_ack(struct stomp_connection *connection, const struct stomp_frame *frame,
                     struct stomp_error *error)
{
    const struct config *config = stomp_adapter_config(connection->adapter);
    bool nack = frame->command == STOMP_COMMAND_NACK;
    const char *verb = nack ? "NACK" : "ACK";
    char message[256];

    bool transaction_found;
    struct stomp_transaction *transaction =
        stomp_transaction_of(connection, frame, &transaction_found, error);
    if (!transaction_found)
        return STOMP_FAILED;

    enum queue_outcome outcome = QUEUE_ACCEPT;
    if (nack) {
        const char *requeue = stomp_frame_header_value(frame, "requeue");
        bool release = stomp_config_of(config)->nack_requeue;
        if (requeue && stomp_bool_parse(requeue, &release) < 0) {
            snprintf(message, sizeof(message), "invalid requeue '%s'", requeue);
            return stomp_fail_as(error, STOMP_KIND_INVALID, "Invalid header", message,
                                 "The requeue header of NACK must be true (redeliver) or false "
                                 "(dead-letter), in any case; got '%s'.",
                                 requeue);
        }
        outcome = release ? QUEUE_RELEASE : QUEUE_REJECT;
    }

    const char *id = stomp_frame_header_value(frame, "id");
    const char *message_id = stomp_frame_header_value(frame, "message-id");
    const char *subscription_id = stomp_frame_header_value(frame, "subscription");
    const char *named = NULL; /* what the client named, for the error */
    struct stomp_subscription *sub = NULL;
    struct stomp_unacked *unacked = NULL;

    if (connection->version == STOMP_VERSION_1_2 && id && id[0]) {
        named = id;
        uint32_t sub_seq;
        uint64_t seq;
        if (stomp_ack_parse_id(id, &sub_seq, &seq) == 0 &&
            (sub = stomp_connection_find_subscription_seq(connection, sub_seq))) {
            if (!stomp_ack_settles(sub))
                return STOMP_OK; /* nothing to settle: ignored */
            unacked = stomp_ack_find_seq(sub, seq);
        }
    } else {
        if (!message_id || !message_id[0]) {
            if (connection->version == STOMP_VERSION_1_2) {
                snprintf(message, sizeof(message), "%s has no id", verb);
                return stomp_fail_as(error, STOMP_KIND_INVALID, "Missing header", message,
                                     "In STOMP 1.2 %s names the message by an id header holding "
                                     "the value of the MESSAGE's ack header.",
                                     verb);
            }
            snprintf(message, sizeof(message), "%s has no message-id", verb);
            return stomp_fail_as(error, STOMP_KIND_INVALID, "Missing header", message,
                                 "In STOMP %s %s names the message by its message-id header.",
                                 stomp_version_name(connection->version), verb);
        }
        named = message_id;
        if (subscription_id && subscription_id[0])
            sub = stomp_connection_find_subscription(connection, subscription_id);
        if (sub) {
            if (!stomp_ack_settles(sub))
                return STOMP_OK;
            unacked = stomp_ack_find_message_id(sub, message_id);
        } else {
            /* No subscription named, or one this connection does not have:
             * the message-id alone, as RabbitMQ serves it. */
            bool any_ignored = false;
            for (struct stomp_subscription *s = connection->subscriptions; s && !unacked;
                 s = s->next) {
                if (!stomp_ack_settles(s)) {
                    any_ignored = true;
                    continue;
                }
                if ((unacked = stomp_ack_find_message_id(s, message_id)))
                    sub = s;
            }
            if (!unacked && any_ignored)
                return STOMP_OK; /* most likely a message of an auto-ack subscription */
        }
    }

    if (!unacked) {
        snprintf(message, sizeof(message), "unknown ack id '%s'", named);
        return stomp_fail_as(error, STOMP_KIND_INVALID, "Message not found", message,
                             "%s names '%s', which is not an unacknowledged message of this "
                             "connection: it was acknowledged already, its subscription ended, or "
                             "it was delivered on another connection. Acknowledge each message "
                             "once, on the connection that received it, with the %s.",
                             verb, named,
                             connection->version == STOMP_VERSION_1_2
                                 ? "value of its ack header as id"
                                 : "message-id and subscription headers of the MESSAGE");
    }

    if (sub->ack_mode == STOMP_ACK_CLIENT) {
        while (sub->unacked_head != unacked)
            stomp_ack_settle(connection, sub, sub->unacked_head, outcome, transaction);
    }
    stomp_ack_settle(connection, sub, unacked, outcome, transaction);
    return STOMP_OK;
}
