/* SPDX-License-Identifier: Apache-2.0 */
/* record.c -- the Kafka record contract (architecture §3): which class each
 * header name is in, what reaches clients, what clients may set, and the
 * `expires` rule. The table is in record.h. */
#include "record.h"

#include <string.h>

#include "kafka.h"

static bool record_has_prefix(const char *name, size_t name_len, const char *prefix)
{
    size_t prefix_len = strlen(prefix);
    return name_len >= prefix_len && memcmp(name, prefix, prefix_len) == 0;
}

static bool record_is(const char *name, size_t name_len, const char *what)
{
    return strlen(what) == name_len && memcmp(name, what, name_len) == 0;
}

enum record_header_class record_header_classify(const char *name, size_t name_len)
{
    if (record_has_prefix(name, name_len, RECORD_AMQP_PREFIX))
        return RECORD_HEADER_AMQP;
    if (record_has_prefix(name, name_len, RECORD_AMQP091_PREFIX))
        return RECORD_HEADER_AMQP091;
    if (record_has_prefix(name, name_len, RECORD_REPLY_PREFIX) ||
        record_is(name, name_len, RECORD_DELIVER_AT) ||
        record_is(name, name_len, RECORD_DELIVER_TO))
        return RECORD_HEADER_ROUTING;
    if (record_is(name, name_len, RECORD_NATIVE_REPLY_TOPIC) ||
        record_is(name, name_len, RECORD_NATIVE_CORRELATION))
        return RECORD_HEADER_NATIVE_RR;
    if (record_has_prefix(name, name_len, RECORD_DLQ_PREFIX) ||
        record_has_prefix(name, name_len, RECORD_RETRY_PREFIX) ||
        record_has_prefix(name, name_len, RECORD_REDRIVE_PREFIX) ||
        record_is(name, name_len, RECORD_DELIVERY_COUNT))
        return RECORD_HEADER_PROVENANCE;
    if (record_is(name, name_len, RECORD_HEADER_USER_ID))
        return RECORD_HEADER_SET_BY_CORE;
    return RECORD_HEADER_USER;
}

bool record_header_delivered(const char *name, size_t name_len, unsigned flags)
{
    switch (record_header_classify(name, name_len)) {
    case RECORD_HEADER_USER:
    case RECORD_HEADER_SET_BY_CORE:
    case RECORD_HEADER_PROVENANCE: return true;
    case RECORD_HEADER_AMQP: return (flags & RECORD_DELIVER_AMQP_DATA) != 0;
    case RECORD_HEADER_AMQP091: return (flags & RECORD_DELIVER_AMQP091_DATA) != 0;
    case RECORD_HEADER_ROUTING:
    case RECORD_HEADER_NATIVE_RR: return false;
    }
    return false;
}

bool record_header_from_client(const char *name, size_t name_len)
{
    enum record_header_class class = record_header_classify(name, name_len);
    return class != RECORD_HEADER_SET_BY_CORE && class != RECORD_HEADER_ROUTING;
}

bool record_expires_passed(const char *value, size_t len, bool dead_letter, uint64_t now_ms)
{
    if (!value || len == 0 || len > 19 || dead_letter)
        return false;
    uint64_t expires = 0;
    for (size_t i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9')
            return false; /* not a time kbridge understands: delivered */
        expires = expires * 10 + (uint64_t)(value[i] - '0');
    }
    return expires != 0 && expires <= now_ms; /* 0: never (JMS) */
}

const void *record_header_find(const struct kafka_record *record, const char *name,
                               size_t *value_len)
{
    return kafka_record_header_find(record, name, value_len);
}

bool record_expired(const struct kafka_record *record, uint64_t now_ms)
{
    size_t len = 0, reason_len;
    const char *value = record_header_find(record, RECORD_HEADER_EXPIRES, &len);
    if (!value)
        return false;
    bool dead_letter = record_header_find(record, RECORD_DLQ_REASON, &reason_len) != NULL;
    return record_expires_passed(value, len, dead_letter, now_ms);
}
