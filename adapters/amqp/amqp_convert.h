/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_convert.h -- AMQP 1.0 messages to Kafka records and back (architecture §3).
 * Pure conversion on proton's pn_message_t and the core's property lists: no
 * I/O, no core calls, so both directions are unit-tested on their own
 * (tests/unit/check_amqp_convert.c). The mapping tables are in docs/amqp.md.
 *
 * Into Kafka, everything a STOMP or native reader needs is plain text under
 * the standard header names (message-id, correlation-id, reply-to,
 * content-type, ...) and one header per application property; what only
 * AMQP needs for an exact round trip (property types, amqp-value and
 * amqp-sequence bodies, message annotations, ttl, id types) travels in
 * kbridge-amqp-* headers, which adapters never deliver to clients. */
#ifndef KBRIDGE_AMQP_CONVERT_H
#define KBRIDGE_AMQP_CONVERT_H

#include <proton/message.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

/* A Kafka record built from an AMQP message. Every pointer points into
 * storage the record owns; release it with amqp_record_release(). */
struct amqp_record {
    const void *key; /* NULL: the core picks kafka-key / JMSXGroupID / group-id */
    size_t key_len;
    const void *body;
    size_t body_len;
    struct core_property *properties; /* headers for core_publish */
    size_t property_count;
    /* core_message.deliver_at: from the annotations x-opt-delivery-time
     * (absolute) or x-opt-delivery-delay (relative); 0: now */
    uint64_t deliver_at;
    void *storage; /* private: owned buffers */
};

/* Convert a decoded AMQP message into a record for core_publish. 0, or -1
 * with a one-line reason in err (a property value that cannot be
 * represented, out of memory). On failure nothing needs releasing. */
int amqp_record_from_message(pn_message_t *message, struct amqp_record *record, char *err,
                             size_t err_size);
/* Free what amqp_record_from_message allocated. NULL-safe, idempotent. */
void amqp_record_release(struct amqp_record *record);

/* A Kafka record as a subscriber gets it (the adapter fills it from a
 * core_delivery). Nothing is owned. */
struct amqp_record_view {
    const void *key;
    size_t key_len;
    const void *body;
    size_t body_len;
    const struct core_property *headers; /* in record order, kbridge-amqp-* included */
    size_t header_count;
    int64_t timestamp_ms;    /* the record's timestamp */
    uint32_t delivery_count; /* 1 on the first delivery */
    uint64_t header_names;   /* private: amqp_message_from_record's index of the names */
};

/* Fill `message` (cleared first) from a record: properties, application
 * properties, annotations and body as the record's headers say. 0, or -1 with
 * err (out of memory only: undecodable kbridge-amqp-* headers, and those
 * proton would not send on as decoded, fall back to the plain text and never
 * fail a delivery). */
int amqp_message_from_record(const struct amqp_record_view *record, pn_message_t *message,
                             char *err, size_t err_size);

#endif
