/* engine.c -- helpers every subscription engine shares (engine.h): the
 * config in force, a delivery built from a record, and expiry counting. */
#include "engine.h"

#include <string.h>

#include "clock.h"
#include "config.h"
#include "kafka.h"
#include "record.h"

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
    const char *prefix = engine_config(context)->kafka.topic_prefix;
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
    if (!record_expired(record, clock_wall_ms()))
        return false;
    (*context->expired[queue ? 0 : 1])++;
    return true;
}

bool engine_exchange_is_topic_per_key(const char *exchange)
{
    return exchange[0] == '\0' || strcmp(exchange, "amq.topic") == 0;
}
