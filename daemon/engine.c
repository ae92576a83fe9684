/* SPDX-License-Identifier: Apache-2.0 */
/* engine.c -- helpers every subscription engine shares (engine.h): the
 * config in force, a delivery built from a record, and expiry counting. */
#include "engine.h"

#include <string.h>

#include "clock.h"
#include "config.h"
#include "kafka.h"
#include "record.h"
#include "selector.h"

const struct config *engine_config(const struct engine_context *context)
{
    return *context->config;
}

void engine_delivery_from_record(const struct engine_context *context,
                                 struct core_delivery *delivery,
                                 const struct core_subscription *sub,
                                 const struct kafka_record *record, uint64_t id,
                                 uint32_t delivery_count)
{
    (void)context;
    const char *prefix = sub->topic_prefix;
    size_t prefix_len = strlen(prefix);
    delivery->id = id;
    delivery->topic = record->topic;
    delivery->name = strncmp(record->topic, prefix, prefix_len) == 0 ? record->topic + prefix_len
                                                                     : record->topic;
    delivery->kind = sub->destination.kind;
    delivery->partition = record->partition;
    delivery->offset = record->offset;
    delivery->timestamp_ms = record->timestamp_ms;
    delivery->key = record->key;
    delivery->key_len = record->key_len;
    delivery->body = record->value ? record->value : "";
    delivery->body_len = record->value_len;
    delivery->delivery_count = delivery_count;
    delivery->record = record;
    delivery->extra_count = 0;
}

int engine_error_from_kafka(int kafka_error)
{
    switch (kafka_error_classify(kafka_error)) {
    case KAFKA_CLASS_OK: return CORE_OK;
    case KAFKA_CLASS_AUTHORIZATION: return CORE_ERR_ACCESS;
    case KAFKA_CLASS_UNKNOWN_TOPIC: return CORE_ERR_NOT_FOUND;
    case KAFKA_CLASS_TOO_LARGE: return CORE_ERR_TOO_LARGE;
    case KAFKA_CLASS_INVALID: return CORE_ERR_INVALID;
    default: return CORE_ERR_UNAVAILABLE; /* retriable, fatal, other */
    }
}

bool engine_record_expired(const struct engine_context *context, const struct kafka_record *record,
                           bool queue)
{
    /* Most records carry no expiry: answered from the record's header index,
     * without reading the clock (architecture "Data path of a delivery"). */
    if (!kafka_record_may_have_header(record, RECORD_HEADER_EXPIRES) ||
        !record_expired(record, clock_wall_ms()))
        return false;
    (*context->expired[queue ? 0 : 1])++;
    return true;
}

bool engine_exchange_is_topic_per_key(const char *exchange)
{
    return exchange[0] == '\0' || strcmp(exchange, "amq.topic") == 0;
}

/* ---- selectors (architecture §13) ---- */

/* JMS header names and the record headers they read (DESIGN §3). */
static const struct {
    const char *jms;
    const char *header;
} engine_jms_headers[] = {
    {"JMSMessageID", RECORD_HEADER_MESSAGE_ID},
    {"JMSCorrelationID", RECORD_HEADER_CORRELATION_ID},
    {"JMSType", "type"},
    {"JMSPriority", "priority"},
    {"JMSReplyTo", RECORD_HEADER_REPLY_TO},
    {"JMSExpiration", RECORD_HEADER_EXPIRES},
};

static bool engine_header_value(const struct kafka_record *record, const char *name,
                                struct selector_value *out)
{
    size_t count = kafka_record_header_count(record);
    for (size_t i = 0; i < count; i++) {
        const char *header;
        const void *value;
        size_t len;
        if (kafka_record_header(record, i, &header, &value, &len) == 0 &&
            strcmp(header, name) == 0) {
            *out = (struct selector_value){.type = value ? SELECTOR_STRING : SELECTOR_NULL,
                                           .string = value,
                                           .string_len = len};
            return value != NULL;
        }
    }
    return false;
}

static bool engine_selector_lookup(void *opaque, const char *name, struct selector_value *out)
{
    const struct kafka_record *record = opaque;
    if (strcmp(name, "JMSTimestamp") == 0) {
        if (record->timestamp_ms < 0)
            return false;
        *out = (struct selector_value){.type = SELECTOR_NUMBER,
                                       .number = (double)record->timestamp_ms};
        return true;
    }
    if (strcmp(name, "JMSDeliveryMode") == 0) {
        struct selector_value persistent;
        bool yes = engine_header_value(record, "persistent", &persistent) &&
                   persistent.string_len == 4 && memcmp(persistent.string, "true", 4) == 0;
        const char *mode = yes ? "PERSISTENT" : "NON_PERSISTENT";
        *out = (struct selector_value){
            .type = SELECTOR_STRING, .string = mode, .string_len = strlen(mode)};
        return true;
    }
    for (size_t i = 0; i < sizeof(engine_jms_headers) / sizeof(engine_jms_headers[0]); i++)
        if (strcmp(name, engine_jms_headers[i].jms) == 0)
            return engine_header_value(record, engine_jms_headers[i].header, out);
    return engine_header_value(record, name, out);
}

bool engine_record_selected(const struct core_subscription *sub, const struct kafka_record *record)
{
    return !sub->selector ||
           selector_matches(sub->selector, engine_selector_lookup, (void *)record);
}
