/* SPDX-License-Identifier: Apache-2.0 */
/* amqp091_convert.h -- AMQP 0-9-1 values to and from kbridge's: basic
 * properties and the headers table to the record's headers (DESIGN §3,
 * architecture §12, docs/amqp091.md "Properties"), and argument tables
 * (exchange/queue/binding arguments) to the JSON the definitions hold.
 *
 * Pure functions: no I/O. What they return points into the caller's
 * buffers or pool, as each says. */
#ifndef KBRIDGE_AMQP091_CONVERT_H
#define KBRIDGE_AMQP091_CONVERT_H

#include <amqp.h>
#include <amqp_framing.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

/* The record headers one publish becomes: `properties` (count entries)
 * point into the decoded properties and into `text`, both owned by the
 * caller (amqp091_publish_properties_free frees the arrays). */
struct amqp091_record_headers {
    struct core_property *properties;
    size_t count;
    char *text;     /* numbers and other values written as text */
    uint8_t *typed; /* the encoded headers table (AMQP091_HEADER_TABLE), or NULL */
    size_t typed_len;
};

/* What 0-9-1 needs back exactly and text headers cannot carry (record.h's
 * kbridge-amqp091-* class: only this adapter reads them, other protocols
 * never see them, native Kafka readers do):
 *  - the headers table in 0-9-1's own encoding (amqp_encode_table), written
 *    when an entry is anything but a long string;
 *  - the expiration as sent (relative ms; `expires` holds the absolute time);
 *  - a delivery_mode other than 2 (2 is `persistent: true`);
 *  - that the message had no message_id. */
#define AMQP091_HEADER_TABLE "kbridge-amqp091-headers"
#define AMQP091_HEADER_EXPIRATION "kbridge-amqp091-expiration"
#define AMQP091_HEADER_DELIVERY_MODE "kbridge-amqp091-delivery-mode"
/* The publisher gave no message_id (the core adds a message-id for other
 * protocols; 0-9-1 gets none back, as from RabbitMQ). */
#define AMQP091_HEADER_NO_MESSAGE_ID "kbridge-amqp091-no-message-id"

/* Map a publish's basic properties to record headers: content_type ->
 * content-type, content_encoding -> content-encoding, delivery_mode 2 ->
 * persistent: true, priority, correlation_id -> correlation-id, reply_to ->
 * reply-to, expiration (relative ms) -> expires (absolute epoch ms from
 * now_ms), message_id -> message-id, timestamp (s) -> timestamp (ms), type,
 * user_id -> user-id, app_id -> app-id, cluster_id -> cluster-id; each
 * headers-table entry as text under its own name (strings and byte arrays
 * as they are, integers in decimal, booleans true/false, floats %.9g,
 * doubles %.17g, decimals exactly, timestamps in seconds, void empty,
 * tables and arrays as JSON); and the AMQP091_HEADER_* above. 0, or -1
 * with the 0-9-1 reply code in *code (406 bad expiration or a value that
 * cannot be written) and RabbitMQ-shaped text in err. */
int amqp091_record_headers_from_properties(const amqp_basic_properties_t *properties,
                                           uint64_t now_ms, struct amqp091_record_headers *out,
                                           uint16_t *code, char *err, size_t err_size);
void amqp091_record_headers_free(struct amqp091_record_headers *headers);

/* One delivered record header (already passed by record_header_delivered). */
struct amqp091_header_in {
    const char *name;
    size_t name_len;
    const void *value;
    size_t value_len;
};

/* The reverse: build a delivery's basic properties from its record headers
 * (the names above go back to their properties; expires becomes the
 * remaining expiration unless the expiration as sent is there, timestamp
 * seconds; AMQP091_HEADER_TABLE's entries come back with their types, in
 * their order, and every other header becomes a long-string entry of the
 * headers table after them; one whose name the typed table has is its text
 * copy and is left out). kbridge-routing-key is left out (it is the
 * delivery's routing key). A `delivery_count` above 1 adds
 * `x-delivery-count` (a long: the deliveries before this one, as RabbitMQ's
 * quorum queues count). Strings point into `headers`; arrays are allocated
 * in `pool`. A typed table that does not decode is ignored (the text
 * headers stand). 0, or -1 out of memory. */
int amqp091_properties_from_record_headers(const struct amqp091_header_in *headers, size_t count,
                                           uint32_t delivery_count, uint64_t now_ms,
                                           amqp_pool_t *pool, amqp_basic_properties_t *out);

/* An argument table as a JSON object (strings, integers, booleans,
 * floats, nested tables and arrays); an empty table is NULL with 0.
 * -1 with err for a value type not representable (byte arrays, decimals).
 * The caller owns *out (json_decref). */
int amqp091_table_to_json(const amqp_table_t *table, json_t **out, char *err, size_t err_size);

#endif
