/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_handle_send.c -- SEND: destination, properties, size and feature
 * checks, core_publish, and the confirmation callback that sends the RECEIPT
 * only once Kafka has stored the record (architecture §4).
 *
 * Properties are every header of the SEND except the frame-level ones
 * (destination, receipt, content-length, transaction); the first of repeated
 * headers wins, as in the spec. content-type, persistent, priority, expires,
 * correlation-id, reply-to, message-id, kafka-key ... travel under their own
 * names; the core adds message-id when absent and sets user-id. A SEND
 * with a `transaction` header is held by that transaction until its COMMIT
 * (stomp_handle_transaction.c); its RECEIPT means held. AMQ_SCHEDULED_DELAY
 * (ActiveMQ's, milliseconds) schedules the message (architecture §13):
 * stored at once, delivered when due; ActiveMQ's repeating schedules
 * (AMQ_SCHEDULED_PERIOD / _REPEAT / _CRON) are refused by name. */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "core.h"
#include "log.h"
#include "schedule.h"
#include "stomp_address.h"
#include "stomp_handlers.h"

static bool stomp_send_frame_level(const char *name)
{
    return strcmp(name, "destination") == 0 || strcmp(name, "receipt") == 0 ||
           strcmp(name, "content-length") == 0 || strcmp(name, "transaction") == 0;
}

/* The SEND's due time from AMQ_SCHEDULED_DELAY (0: now) into *deliver_at,
 * or STOMP_FAILED with the error naming the header. */
static int stomp_send_schedule(const struct stomp_frame *frame, uint64_t *deliver_at,
                               struct stomp_error *error)
{
    static const char *const repeating[] = {"AMQ_SCHEDULED_PERIOD", "AMQ_SCHEDULED_REPEAT",
                                            "AMQ_SCHEDULED_CRON"};
    for (size_t i = 0; i < sizeof(repeating) / sizeof(repeating[0]); i++)
        if (stomp_frame_header_value(frame, repeating[i]))
            return stomp_fail(error, STOMP_KIND_UNSUPPORTED,
                              "repeating schedules are not supported",
                              "The SEND has a %s header: kbridge schedules a message once "
                              "(AMQ_SCHEDULED_DELAY, milliseconds) and does not repeat it. Send "
                              "each occurrence as its own message.",
                              repeating[i]);
    *deliver_at = 0;
    const char *delay = stomp_frame_header_value(frame, "AMQ_SCHEDULED_DELAY");
    if (!delay)
        return STOMP_OK;
    int64_t delay_ms;
    if (schedule_parse_integer(delay, strlen(delay), &delay_ms) < 0)
        return stomp_fail(error, STOMP_KIND_INVALID, "invalid AMQ_SCHEDULED_DELAY",
                          "The SEND's AMQ_SCHEDULED_DELAY header is '%.64s': it must be a whole "
                          "number of milliseconds (0 or less: delivered now).",
                          delay);
    *deliver_at = schedule_due_after(delay_ms, clock_wall_ms());
    return STOMP_OK;
}

static void stomp_publish_free(struct stomp_publish *publish)
{
    free(publish->receipt);
    free(publish);
}

/* connection_ops.publish_done, exactly once per SEND handed to the core:
 * Kafka stored the record, refused it, or the connection is being freed
 * (CONNECTION_PUBLISH_ABANDONED: nobody is left to tell). */
void stomp_send_done(struct connection_publish *base, int result, const char *reason)
{
    struct stomp_publish *publish = (struct stomp_publish *)base;
    struct stomp_connection *connection = (struct stomp_connection *)base->connection;
    if (result == CONNECTION_PUBLISH_ABANDONED) {
        stomp_publish_free(publish);
        return;
    }
    if (connection->state != STOMP_STATE_CLOSING) {
        if (result == CORE_OK || result == CORE_UNROUTABLE) {
            /* unroutable (an exchange with no matching binding): confirmed
             * and dropped, as RabbitMQ does; the core counted it */
            if (publish->receipt)
                stomp_connection_send_receipt(connection, publish->receipt);
        } else if (publish->commit) {
            struct stomp_error error;
            char message[256];
            snprintf(message, sizeof(message), "transaction %.100s not committed: %.120s",
                     publish->destination, reason ? reason : "Kafka error");
            stomp_fail(&error, stomp_core_error(result)->later, message,
                       "Transaction '%s' was not committed: %s. None of its messages was "
                       "written and the messages it acknowledged will be redelivered; run it "
                       "again (on a new connection).",
                       publish->destination, reason ? reason : "Kafka error");
            stomp_send_error(connection, &error, publish->receipt);
        } else if (result == CORE_ERR_FULL) {
            /* x-overflow reject-publish: refused before it was written */
            struct stomp_error error;
            char message[256];
            snprintf(message, sizeof(message), "message to %.60s refused: %.170s",
                     publish->destination, reason ? reason : "a queue is full");
            stomp_fail(&error, stomp_core_error(result)->later, message,
                       "kbridge refused the message sent to %s before writing it: %s. It is not "
                       "in Kafka; send it again (on a new connection) once the queue's "
                       "consumers have caught up. Messages that got a RECEIPT before this "
                       "ERROR are stored.",
                       publish->destination, reason ? reason : "a queue is full");
            stomp_send_error(connection, &error, publish->receipt);
        } else {
            struct stomp_error error;
            char message[256];
            snprintf(message, sizeof(message), "message to %.100s not stored: %.120s",
                     publish->destination, reason ? reason : "Kafka error");
            stomp_fail(&error, stomp_core_error(result)->later, message,
                       "Kafka did not store the message sent to %s: %s. It is not in Kafka; "
                       "send it again (on a new connection). Messages that got a RECEIPT "
                       "before this ERROR are stored.",
                       publish->destination, reason ? reason : "Kafka error");
            stomp_send_error(connection, &error, publish->receipt);
        }
    }
    stomp_publish_free(publish);
    stomp_connection_publish_done(connection);
}

/* A SEND the core refused now: the kind and label from the table
 * (stomp_core_error), the text naming the publish. */
static int stomp_send_core_error(struct stomp_error *error, int rc, const char *destination,
                                 const char *reason)
{
    enum stomp_error_kind kind = stomp_core_error(rc)->now;
    char message[256];
    switch (rc) {
    case CORE_ERR_ACCESS:
        snprintf(message, sizeof(message), "not allowed to publish to %s", destination);
        return stomp_fail_as(error, kind, stomp_core_error(rc)->label, message,
                             "This user may not publish to %s (%s). The publish ACL of the user "
                             "in kbridged's auth.users lists the destinations allowed.",
                             destination, reason);
    case CORE_ERR_TOO_LARGE:
        return stomp_fail(error, kind, "message too large", "The message to %s was refused: %s.",
                          destination, reason);
    case CORE_ERR_UNAVAILABLE:
        snprintf(message, sizeof(message), "Kafka unavailable: %.200s", reason);
        return stomp_fail(error, kind, message,
                          "The message to %s could not be handed to Kafka: %s. It was not "
                          "stored; try again later.",
                          destination, reason);
    case CORE_ERR_INVALID:
    case CORE_ERR_UNSUPPORTED:
        return stomp_fail(error, kind, reason, "The message to %s was refused: %s.", destination,
                          reason);
    case CORE_ERR_NOT_FOUND:
        return stomp_fail(error, kind, "destination not found",
                          "The message to %s was refused: %s.", destination, reason);
    default:
        return stomp_fail(error, kind, "internal error",
                          "The message to %s could not be published: %s. It was not stored.",
                          destination, reason);
    }
}

int stomp_handle_send(struct stomp_connection *connection, const struct stomp_frame *frame,
                      struct stomp_error *error)
{
    const struct config *config = stomp_adapter_config(connection->adapter);
    bool transaction_found;
    struct stomp_transaction *transaction =
        stomp_transaction_of(connection, frame, &transaction_found, error);
    if (!transaction_found)
        return STOMP_FAILED;

    const char *destination_text = stomp_frame_header_value(frame, "destination");
    if (!destination_text || !destination_text[0])
        return stomp_fail_as(
            error, STOMP_KIND_INVALID, "Missing destination", "SEND has no destination",
            "Every SEND needs a destination header, e.g. destination:/queue/orders "
            "or destination:/topic/prices.");
    struct destination destination;
    char reason[256] = "";
    if (address_parse(&stomp_addresses, destination_text, &destination, reason, sizeof(reason)) < 0)
        return stomp_fail_as(error, STOMP_KIND_INVALID, "Invalid destination", reason,
                             "%s. Destinations are /queue/NAME, /amq/queue/NAME, /topic/NAME or "
                             "/exchange/NAME/KEY, where NAME is a legal Kafka topic name "
                             "(A-Z a-z 0-9 . _ -, at most 249 characters).",
                             reason);
    if (destination.kind == DESTINATION_TEMP_QUEUE)
        return stomp_fail(error, STOMP_KIND_UNSUPPORTED, "/temp-queue is not supported yet",
                          "Sending to %s is not supported yet: temporary queues (request-reply) "
                          "come in a later version of kbridge.",
                          destination_text);
    if (destination.wildcard)
        return stomp_fail_as(error, STOMP_KIND_INVALID, "Invalid destination",
                             "cannot send to a wildcard destination",
                             "%s contains the wildcard words * or #, which only SUBSCRIBE "
                             "accepts. Send to one topic name.",
                             destination_text);
    /* reply-to:/temp-queue/NAME (RabbitMQ semantics): the connection's
     * temporary queue NAME, created now if needed; its replies come to this
     * connection without a SUBSCRIBE. What goes to Kafka is its reply
     * address, /reply-queue/TOKEN, which any node can answer (architecture §7). */
    const char *reply_to = stomp_frame_header_value(frame, "reply-to");
    const char *reply_address = NULL;
    if (reply_to && strncmp(reply_to, "/temp-queue/", 12) == 0) {
        struct stomp_subscription *temp =
            stomp_temp_queue(connection, reply_to, NULL, STOMP_ACK_AUTO, NULL, error);
        if (!temp)
            return STOMP_FAILED;
        if (!temp->ready)
            return STOMP_RETRY; /* until it reads the reply topic, no reply could be missed */
        reply_address = temp->reply_address;
    }
    uint64_t deliver_at;
    if (stomp_send_schedule(frame, &deliver_at, error) != STOMP_OK)
        return STOMP_FAILED;
    if (frame->body_len > config->limits.max_message_size)
        return stomp_fail(error, STOMP_KIND_LIMIT, "message too large",
                          "The body has %zu bytes; this server accepts at most %llu "
                          "(limits.max_message_size).",
                          frame->body_len, (unsigned long long)config->limits.max_message_size);

    /* Properties: the user headers, first occurrence of each name. */
    struct core_property *properties =
        calloc(frame->header_count ? frame->header_count : 1, sizeof(*properties));
    if (!properties)
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not take the message.");
    size_t property_count = 0;
    for (size_t i = 0; i < frame->header_count; i++) {
        const struct stomp_header *header = &frame->headers[i];
        if (stomp_send_frame_level(header->name))
            continue;
        bool repeated = false;
        for (size_t j = 0; j < i && !repeated; j++)
            repeated = strcmp(frame->headers[j].name, header->name) == 0;
        if (repeated)
            continue;
        if (reply_address && strcmp(header->name, "reply-to") == 0)
            properties[property_count++] =
                (struct core_property){"reply-to", reply_address, strlen(reply_address)};
        else
            properties[property_count++] =
                (struct core_property){header->name, header->value, header->value_len};
    }
    /* /exchange/NAME/KEY: KEY is the routing key (RabbitMQ: none is "") */
    const char *routing_key = destination.key_at ? destination_text + destination.key_at : "";
    struct core_message message = {
        .key = NULL, /* the core takes it from kafka-key / JMSXGroupID */
        .routing_key = routing_key,
        .routing_key_len = strlen(routing_key),
        .body = frame->body,
        .body_len = frame->body_len,
        .properties = properties,
        .property_count = property_count,
        .deliver_at = deliver_at,
    };
    if (transaction) {
        /* held until COMMIT (stomp_handle_transaction.c); the RECEIPT says held */
        char err[256] = "";
        int rc =
            core_transaction_publish(transaction->core, &destination, &message, err, sizeof(err));
        free(properties);
        if (rc != CORE_OK)
            return stomp_send_core_error(error, rc, destination_text, err[0] ? err : "refused");
        return STOMP_OK;
    }

    size_t destination_len = strlen(destination_text);
    struct stomp_publish *publish = calloc(1, sizeof(*publish) + destination_len + 1);
    const char *receipt = stomp_frame_header_value(frame, "receipt");
    if (!publish || (receipt && !(publish->receipt = strdup(receipt)))) {
        free(properties);
        if (publish)
            stomp_publish_free(publish);
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not take the message.");
    }
    memcpy(publish->destination, destination_text, destination_len + 1);
    connection_publish_begin(&connection->base, &publish->base);

    char err[256] = "";
    int rc = core_publish(connection->session, &destination, &message, connection_publish_confirmed,
                          &publish->base, err, sizeof(err));
    free(properties);
    if (rc != CORE_OK) {
        connection_publish_cancel(&publish->base);
        stomp_publish_free(publish);
        if (rc == CORE_ERR_BUSY) {
            log_debug("stomp", "%s: Kafka's queue is full, SEND to %s waits", connection->base.peer,
                      destination_text);
            return STOMP_RETRY;
        }
        return stomp_send_core_error(error, rc, destination_text, err[0] ? err : "refused");
    }
    /* `publish` may already be gone if the core confirmed synchronously. */

    uint32_t max_unconfirmed = config->limits.max_unconfirmed ? config->limits.max_unconfirmed : 1;
    /* Pause only with a confirmation of ours to come: that is what resumes. */
    if (connection->state == STOMP_STATE_CONNECTED && connection->base.unconfirmed > 0 &&
        (connection->base.unconfirmed >= max_unconfirmed ||
         core_session_unconfirmed(connection->session) >= max_unconfirmed)) {
        if (!connection->publish_paused)
            log_debug("stomp", "%s: %u publish(es) unconfirmed, reading paused",
                      connection->base.peer, connection->base.unconfirmed);
        connection->publish_paused = true;
        stomp_connection_update_reading(connection);
    }
    return receipt ? STOMP_PENDING : STOMP_OK;
}
