/* SPDX-License-Identifier: Apache-2.0 */
/* record.h -- the Kafka record contract (DESIGN §3, architecture §3) in one
 * place: every header name kbridge itself reads or writes, which of them
 * clients may set, and which reach clients on delivery. Adapters decide
 * whether a record header goes to their clients with
 * record_header_delivered and nothing else; the core decides what a
 * client's property may become with record_header_from_client.
 *
 * The classes (record_header_classify):
 *
 *   class        names                                     from clients   delivered
 *   USER         anything not below (user headers, the     yes            yes
 *                standard names, unknown kbridge-*)
 *   SET_BY_CORE  user-id (always the session's user)       no (replaced)  yes
 *   PROVENANCE   kbridge-dlq-*, kbridge-retry-*,           yes            yes
 *                kbridge-redrive-*, kbridge-delivery-count
 *   ROUTING      kbridge-reply-* (reply token),            no             no
 *                kbridge-deliver-at, kbridge-deliver-to
 *   NATIVE_RR    kafka_replyTopic, kafka_correlationId     yes (*)        no (**)
 *   AMQP         kbridge-amqp-* (AMQP round-trip data)     yes (***)      no (****)
 *   AMQP091      kbridge-amqp091-* (AMQP 0-9-1 round-trip  yes (***)      no (*****)
 *                data)
 *
 *   (*)    replaced by the core's own when the message is a request to a
 *          temporary queue (architecture §7).
 *   (**)   the core turns them into reply-to / correlation-id for clients.
 *   (***)  the AMQP adapter writes them (amqp_record_from_message); a STOMP
 *          client's are stored as sent.
 *   (****) never shown to a client as such: the AMQP adapter decodes them
 *          back into the message (amqp_message_from_record), so it asks for
 *          them with RECORD_DELIVER_AMQP_DATA; every other reader skips them.
 *   (*****) the same for the AMQP 0-9-1 adapter (amqp091_convert.c), which
 *          asks for them with RECORD_DELIVER_AMQP091_DATA.
 *
 * Not a header but part of the same contract: RECORD_OFFSET_FORGOTTEN, the
 * committed-offset metadata of a deleted durable subscription (kafka_lookup.c
 * commits and recognises it).
 *
 * Pure functions of names and values: no I/O, no allocation. The lookup of
 * a header in a fetched record is record_header_find. */
#ifndef KBRIDGE_RECORD_H
#define KBRIDGE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kafka_record;

/* ---- standard names (DESIGN §3), the same in every protocol ---- */
#define RECORD_HEADER_MESSAGE_ID "message-id"
#define RECORD_HEADER_CORRELATION_ID "correlation-id"
#define RECORD_HEADER_REPLY_TO "reply-to"
#define RECORD_HEADER_USER_ID "user-id"
#define RECORD_HEADER_EXPIRES "expires" /* absolute, epoch ms; 0: never */
/* Properties that give a keyless message its record key, first present wins. */
#define RECORD_KEY_PROPERTIES                                                                      \
    {                                                                                              \
        "kafka-key", "JMSXGroupID", "group-id"                                                     \
    }
#define RECORD_KEY_PROPERTY_COUNT 3
/* A queue's message group (architecture §13): the first of these headers;
 * RECORD_HEADER_GROUP_SEQ "-1" closes the group (ActiveMQ's JMSXGroupSeq). */
#define RECORD_HEADER_GROUP_ID "JMSXGroupID"
#define RECORD_HEADER_GROUP_ID_AMQP "group-id"
#define RECORD_HEADER_GROUP_SEQ "JMSXGroupSeq"

/* ---- kbridge's own ---- */
#define RECORD_HEADER_PREFIX "kbridge-"
/* request-reply routing (architecture §7): private */
#define RECORD_REPLY_PREFIX "kbridge-reply-"
#define RECORD_REPLY_TOKEN "kbridge-reply-token"
/* Spring Kafka's request-reply headers, read and written for native peers: private */
#define RECORD_NATIVE_REPLY_TOPIC "kafka_replyTopic"
#define RECORD_NATIVE_CORRELATION "kafka_correlationId"
/* dead-letter provenance (architecture §5): delivered */
#define RECORD_DLQ_PREFIX "kbridge-dlq-"
#define RECORD_DLQ_REASON "kbridge-dlq-reason"
#define RECORD_DLQ_ORIGINAL_TOPIC "kbridge-dlq-original-topic"
#define RECORD_DLQ_ORIGINAL_PARTITION "kbridge-dlq-original-partition"
#define RECORD_DLQ_ORIGINAL_OFFSET "kbridge-dlq-original-offset"
#define RECORD_DLQ_TIME "kbridge-dlq-time"
#define RECORD_DELIVERY_COUNT "kbridge-delivery-count"
/* Delays (architecture §13, docs/redelivery.md): when a record on a retry or
 * delay topic is due, UTC epoch milliseconds as decimal text; private */
#define RECORD_DELIVER_AT "kbridge-deliver-at"
/* the Kafka topic a scheduled record (delay topic) is forwarded to when due: private */
#define RECORD_DELIVER_TO "kbridge-deliver-to"
/* retry provenance of a delayed redelivery (a retry topic's record):
 * where the record was when it was NACKed; delivered */
#define RECORD_RETRY_PREFIX "kbridge-retry-"
#define RECORD_RETRY_ORIGINAL_TOPIC "kbridge-retry-original-topic"
#define RECORD_RETRY_ORIGINAL_PARTITION "kbridge-retry-original-partition"
#define RECORD_RETRY_ORIGINAL_OFFSET "kbridge-retry-original-offset"
/* redrive provenance (architecture §9 "Dead letters", docs/operations.md):
 * a dead letter re-published by the admin API carries its kbridge-dlq-*
 * under these names (kafka_redrive_header_name) and where it came from;
 * delivered */
#define RECORD_REDRIVE_PREFIX "kbridge-redrive-"
#define RECORD_REDRIVE_REASON "kbridge-redrive-reason"
#define RECORD_REDRIVE_ORIGINAL_TOPIC "kbridge-redrive-original-topic"
#define RECORD_REDRIVE_ORIGINAL_PARTITION "kbridge-redrive-original-partition"
#define RECORD_REDRIVE_ORIGINAL_OFFSET "kbridge-redrive-original-offset"
#define RECORD_REDRIVE_DEAD_LETTERED_AT "kbridge-redrive-dead-lettered-at"
#define RECORD_REDRIVE_FROM_TOPIC "kbridge-redrive-from-topic"
#define RECORD_REDRIVE_FROM_PARTITION "kbridge-redrive-from-partition"
#define RECORD_REDRIVE_FROM_OFFSET "kbridge-redrive-from-offset"
#define RECORD_REDRIVE_TIME "kbridge-redrive-time"
#define RECORD_REDRIVE_COUNT "kbridge-redrive-count"
/* The routing key of a message published to an exchange (architecture
 * §11): set by the core (a client's own is dropped), read by the queues
 * bound to the exchange; a user header otherwise (delivered). */
#define RECORD_ROUTING_KEY "kbridge-routing-key"
/* AMQP round-trip data (adapters/amqp/amqp_convert.c, docs/amqp.md): private */
#define RECORD_AMQP_PREFIX "kbridge-amqp-"
/* AMQP 0-9-1 round-trip data (adapters/amqp091/amqp091_convert.c,
 * docs/amqp091.md "Properties"): the typed headers table and the basic
 * properties text cannot carry exactly; private */
#define RECORD_AMQP091_PREFIX "kbridge-amqp091-"
/* Offset-commit metadata of a forgotten durable subscription (not a header). */
#define RECORD_OFFSET_FORGOTTEN "kbridge:forgotten"

enum record_header_class {
    RECORD_HEADER_USER,        /* delivered, taken from clients */
    RECORD_HEADER_SET_BY_CORE, /* delivered, never taken from clients (user-id) */
    RECORD_HEADER_PROVENANCE,  /* delivered: kbridge-dlq-*, kbridge-retry-*, kbridge-delivery-count
                                */
    RECORD_HEADER_ROUTING,     /* private, never from clients: kbridge-reply-*, kbridge-deliver-* */
    RECORD_HEADER_NATIVE_RR,   /* private: kafka_replyTopic, kafka_correlationId */
    RECORD_HEADER_AMQP,        /* private: kbridge-amqp-*, decoded by the AMQP adapter */
    RECORD_HEADER_AMQP091,     /* private: kbridge-amqp091-*, decoded by the 0-9-1 adapter */
};

/* Which class the header `name` (name_len bytes, not NUL-terminated) is in. */
enum record_header_class record_header_classify(const char *name, size_t name_len);

/* Flags of record_header_delivered. */
#define RECORD_DELIVER_CLIENT 0u
/* The reader decodes kbridge-amqp-* itself (the AMQP adapter's converter):
 * they are passed to it, never to a client as they are. */
#define RECORD_DELIVER_AMQP_DATA 1u
/* The same for kbridge-amqp091-* (the AMQP 0-9-1 adapter's converter). */
#define RECORD_DELIVER_AMQP091_DATA 2u

/* Does the record header `name` go to the reader? The one decision every
 * adapter makes for every header of a delivery (architecture §3). */
bool record_header_delivered(const char *name, size_t name_len, unsigned flags);

/* May a client's property `name` be stored as it is? False for what only
 * kbridge writes (user-id, kbridge-reply-*); the core sets those itself. */
bool record_header_from_client(const char *name, size_t name_len);

/* Has an `expires` value (decimal epoch ms, `len` bytes) passed at now_ms?
 * False for 0 (never), for what is not a decimal number (delivered as is)
 * and for dead letters (`dead_letter`: the record has kbridge-dlq-reason;
 * kept for inspection, they do not expire). */
bool record_expires_passed(const char *value, size_t len, bool dead_letter, uint64_t now_ms);

/* The first header `name` of a fetched record (pointing into the record,
 * *value_len bytes), or NULL. */
const void *record_header_find(const struct kafka_record *record, const char *name,
                               size_t *value_len);

/* Has the record's `expires` header passed at now_ms (record_expires_passed)? */
bool record_expired(const struct kafka_record *record, uint64_t now_ms);

#endif
