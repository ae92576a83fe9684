/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_convert.c -- AMQP 1.0 messages to Kafka records and back (architecture §3;
 * the tables are in docs/amqp.md, "What maps to what in Kafka").
 *
 * Into Kafka (amqp_record_from_message):
 *   body: one data section        -> value = the bytes (no marker)
 *         amqp-value string        -> UTF-8 bytes,  kbridge-amqp-body: value-string
 *           (not valid UTF-8           -> the bytes,    kbridge-amqp-body: value-binary)
 *         amqp-value binary        -> the bytes,    kbridge-amqp-body: value-binary
 *         amqp-value other type    -> its AMQP encoding, kbridge-amqp-body: value-encoded
 *         amqp-sequence            -> its AMQP encoding, kbridge-amqp-body: sequence
 *         no body                  -> empty value,  kbridge-amqp-body: none
 *   header: durable -> persistent: true; priority (if not 4) -> priority;
 *           ttl -> kbridge-amqp-ttl, and expires = (creation-time or now) + ttl
 *           when absolute-expiry-time is not set
 *   properties: message-id, correlation-id (text; ulong decimal, uuid
 *           canonical, binary hex, with kbridge-amqp-message-id-type /
 *           kbridge-amqp-correlation-id-type when not a string), subject,
 *           reply-to, content-type, content-encoding, group-id,
 *           absolute-expiry-time -> expires, creation-time -> timestamp,
 *           group-sequence -> kbridge-amqp-group-sequence,
 *           reply-to-group-id -> kbridge-amqp-reply-to-group-id;
 *           user-id and to are not stored (the core sets user-id)
 *   application properties: one header each, value as text; when any is
 *           not a string, kbridge-amqp-application-properties carries the
 *           whole map AMQP-encoded; names of standard headers and names
 *           starting with kbridge- are dropped (reserved)
 *   message annotations: kbridge-amqp-message-annotations (AMQP-encoded);
 *           x-opt-partition-key is the record key unless kafka-key is set
 * And back (amqp_message_from_record) the other way round; every other
 * header becomes an application property (typed from the encoded map when
 * it is there, else a string, or binary when not valid UTF-8), and a key
 * that no header explains becomes the annotation x-opt-partition-key. */
#include "amqp_convert.h"

#include <inttypes.h>
#include <proton/codec.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "schedule.h"

#define AMQP_HEADER_BODY "kbridge-amqp-body"
#define AMQP_HEADER_TTL "kbridge-amqp-ttl"
#define AMQP_HEADER_MESSAGE_ID_TYPE "kbridge-amqp-message-id-type"
#define AMQP_HEADER_CORRELATION_ID_TYPE "kbridge-amqp-correlation-id-type"
#define AMQP_HEADER_GROUP_SEQUENCE "kbridge-amqp-group-sequence"
#define AMQP_HEADER_REPLY_TO_GROUP_ID "kbridge-amqp-reply-to-group-id"
#define AMQP_HEADER_APPLICATION_PROPERTIES "kbridge-amqp-application-properties"
#define AMQP_HEADER_MESSAGE_ANNOTATIONS "kbridge-amqp-message-annotations"
#define AMQP_PREFIX "kbridge-amqp-"

/* Header names that are properties-section fields, not application properties. */
#define AMQP_NAME(literal)                                                                         \
    {                                                                                              \
        literal, sizeof(literal) - 1                                                               \
    }
static const struct {
    const char *name;
    size_t length; /* known at compile time: no strlen per header per delivery */
} amqp_standard_names[] = {
    AMQP_NAME("message-id"),   AMQP_NAME("correlation-id"),   AMQP_NAME("reply-to"),
    AMQP_NAME("content-type"), AMQP_NAME("content-encoding"), AMQP_NAME("subject"),
    AMQP_NAME("priority"),     AMQP_NAME("expires"),          AMQP_NAME("timestamp"),
    AMQP_NAME("user-id"),      AMQP_NAME("persistent"),       AMQP_NAME("group-id"),
};

static bool amqp_is_standard_name(const char *name, size_t length)
{
    for (size_t i = 0; i < sizeof(amqp_standard_names) / sizeof(amqp_standard_names[0]); i++)
        if (amqp_standard_names[i].length == length &&
            memcmp(amqp_standard_names[i].name, name, length) == 0)
            return true;
    return false;
}

static bool amqp_has_prefix(const char *name, size_t length, const char *prefix)
{
    size_t prefix_len = strlen(prefix);
    return length >= prefix_len && memcmp(name, prefix, prefix_len) == 0;
}

/* ---- record storage ------------------------------------------------------------- */

/* Every allocation of a record is one chunk on the list in record->storage. */
struct amqp_chunk {
    struct amqp_chunk *next;
    max_align_t data[];
};

static void *amqp_record_alloc(struct amqp_record *record, size_t size)
{
    struct amqp_chunk *chunk = malloc(sizeof(*chunk) + size + 1);
    if (!chunk)
        return NULL;
    chunk->next = record->storage;
    record->storage = chunk;
    return chunk->data;
}

void amqp_record_release(struct amqp_record *record)
{
    if (!record)
        return;
    struct amqp_chunk *chunk = record->storage;
    while (chunk) {
        struct amqp_chunk *next = chunk->next;
        free(chunk);
        chunk = next;
    }
    free(record->properties);
    memset(record, 0, sizeof(*record));
}

struct amqp_builder {
    struct amqp_record *record;
    size_t capacity;
    bool failed;
};

/* Add a header; name must be static or owned by the record; value is copied. */
static void amqp_add(struct amqp_builder *builder, const char *name, const void *value,
                     size_t value_len)
{
    if (builder->failed)
        return;
    struct amqp_record *record = builder->record;
    if (record->property_count == builder->capacity) {
        size_t capacity = builder->capacity ? builder->capacity * 2 : 16;
        struct core_property *grown =
            realloc(record->properties, capacity * sizeof(*record->properties));
        if (!grown) {
            builder->failed = true;
            return;
        }
        record->properties = grown;
        builder->capacity = capacity;
    }
    char *copy = amqp_record_alloc(record, value_len);
    if (!copy) {
        builder->failed = true;
        return;
    }
    if (value_len)
        memcpy(copy, value, value_len);
    copy[value_len] = '\0';
    record->properties[record->property_count++] = (struct core_property){name, copy, value_len};
}

static void amqp_add_text(struct amqp_builder *builder, const char *name, const char *text)
{
    if (text)
        amqp_add(builder, name, text, strlen(text));
}

static void amqp_add_number(struct amqp_builder *builder, const char *name, int64_t value)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%" PRId64, value);
    amqp_add(builder, name, text, (size_t)n);
}

static const char *amqp_copy_name(struct amqp_builder *builder, const char *name, size_t length)
{
    char *copy = amqp_record_alloc(builder->record, length);
    if (!copy) {
        builder->failed = true;
        return NULL;
    }
    memcpy(copy, name, length);
    copy[length] = '\0';
    return copy;
}

/* The AMQP encoding of everything in data, as a header value. */
static void amqp_add_encoded(struct amqp_builder *builder, const char *name, pn_data_t *data)
{
    ssize_t size = pn_data_encoded_size(data);
    if (size < 0) {
        builder->failed = true;
        return;
    }
    char *bytes = malloc((size_t)size + 1);
    if (!bytes) {
        builder->failed = true;
        return;
    }
    ssize_t written = pn_data_encode(data, bytes, (size_t)size);
    if (written < 0)
        builder->failed = true;
    else
        amqp_add(builder, name, bytes, (size_t)written);
    free(bytes);
}

/* ---- values as text -------------------------------------------------------------------- */

static int amqp_uuid_text(const pn_uuid_t *uuid, char *out, size_t size)
{
    const unsigned char *b = (const unsigned char *)uuid->bytes;
    return snprintf(out, size,
                    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                    b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                    b[13], b[14], b[15]);
}

static int amqp_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool amqp_uuid_parse(const char *text, size_t length, pn_uuid_t *uuid)
{
    if (length != 36)
        return false;
    size_t j = 0;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-')
                return false;
            continue;
        }
        int high = amqp_hex_value(text[i]), low = amqp_hex_value(text[i + 1]);
        if (high < 0 || low < 0)
            return false;
        uuid->bytes[j++] = (char)(high * 16 + low);
        i++;
    }
    return j == 16;
}

/* Encode one UTF-8 code point; its length. */
static size_t amqp_utf8_encode(uint32_t code, char out[4])
{
    if (code < 0x80) {
        out[0] = (char)code;
        return 1;
    }
    if (code < 0x800) {
        out[0] = (char)(0xC0 | (code >> 6));
        out[1] = (char)(0x80 | (code & 0x3F));
        return 2;
    }
    if (code < 0x10000) {
        out[0] = (char)(0xE0 | (code >> 12));
        out[1] = (char)(0x80 | ((code >> 6) & 0x3F));
        out[2] = (char)(0x80 | (code & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | ((code >> 18) & 0x07));
    out[1] = (char)(0x80 | ((code >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((code >> 6) & 0x3F));
    out[3] = (char)(0x80 | (code & 0x3F));
    return 4;
}

static bool amqp_valid_utf8(const unsigned char *s, size_t length)
{
    size_t i = 0;
    while (i < length) {
        unsigned char c = s[i];
        size_t extra;
        if (c == 0)
            return false; /* NUL: not for text headers */
        if (c < 0x80)
            extra = 0;
        else if ((c & 0xE0) == 0xC0 && c >= 0xC2)
            extra = 1;
        else if ((c & 0xF0) == 0xE0)
            extra = 2;
        else if ((c & 0xF8) == 0xF0 && c <= 0xF4)
            extra = 3;
        else
            return false;
        for (size_t k = 1; k <= extra; k++)
            if (i + k >= length || (s[i + k] & 0xC0) != 0x80)
                return false;
        i += extra + 1;
    }
    return true;
}

/* The value at data's current node as a copy in its own pn_data (for a
 * compound value); NULL on allocation failure. */
static pn_data_t *amqp_copy_current(pn_data_t *data)
{
    pn_data_t *copy = pn_data(0);
    if (!copy)
        return NULL;
    /* appendn copies from the node after the narrowed "current": step back
     * to the map key before the value. */
    pn_handle_t point = pn_data_point(data);
    if (!pn_data_prev(data)) {
        pn_data_free(copy);
        return NULL;
    }
    pn_data_narrow(data);
    int rc = pn_data_appendn(copy, data, 1);
    pn_data_widen(data);
    pn_data_restore(data, point);
    if (rc != 0) {
        pn_data_free(copy);
        return NULL;
    }
    return copy;
}

/* Text of the value at data's current node. *binary: raw bytes (not text).
 * Returns the header value (in buf or pointing into data). */
static const char *amqp_value_text(pn_data_t *data, char *buf, size_t size, size_t *length,
                                   bool *typed)
{
    *typed = true;
    int n = 0;
    switch (pn_data_type(data)) {
    case PN_STRING: {
        pn_bytes_t bytes = pn_data_get_string(data);
        *typed = false;
        *length = bytes.size;
        return bytes.start;
    }
    case PN_SYMBOL: {
        pn_bytes_t bytes = pn_data_get_symbol(data);
        *length = bytes.size;
        return bytes.start;
    }
    case PN_BINARY: {
        pn_bytes_t bytes = pn_data_get_binary(data);
        *length = bytes.size;
        return bytes.start;
    }
    case PN_NULL:
        n = 0;
        buf[0] = '\0';
        break;
    case PN_BOOL: n = snprintf(buf, size, "%s", pn_data_get_bool(data) ? "true" : "false"); break;
    case PN_UBYTE: n = snprintf(buf, size, "%u", (unsigned)pn_data_get_ubyte(data)); break;
    case PN_BYTE: n = snprintf(buf, size, "%d", (int)pn_data_get_byte(data)); break;
    case PN_USHORT: n = snprintf(buf, size, "%u", (unsigned)pn_data_get_ushort(data)); break;
    case PN_SHORT: n = snprintf(buf, size, "%d", (int)pn_data_get_short(data)); break;
    case PN_UINT: n = snprintf(buf, size, "%" PRIu32, pn_data_get_uint(data)); break;
    case PN_INT: n = snprintf(buf, size, "%" PRId32, pn_data_get_int(data)); break;
    case PN_ULONG: n = snprintf(buf, size, "%" PRIu64, pn_data_get_ulong(data)); break;
    case PN_LONG: n = snprintf(buf, size, "%" PRId64, pn_data_get_long(data)); break;
    case PN_FLOAT: n = snprintf(buf, size, "%.9g", (double)pn_data_get_float(data)); break;
    case PN_DOUBLE: n = snprintf(buf, size, "%.17g", pn_data_get_double(data)); break;
    case PN_TIMESTAMP: n = snprintf(buf, size, "%" PRId64, pn_data_get_timestamp(data)); break;
    case PN_UUID: {
        pn_uuid_t uuid = pn_data_get_uuid(data);
        n = amqp_uuid_text(&uuid, buf, size);
        break;
    }
    case PN_CHAR: n = (int)amqp_utf8_encode(pn_data_get_char(data), buf); break;
    default: {
        /* decimals, described, list, map, array: proton's text form */
        pn_data_t *copy = amqp_copy_current(data);
        size_t formatted = size;
        if (!copy || pn_data_format(copy, buf, &formatted) != 0)
            n = snprintf(buf, size, "(AMQP %s)", pn_type_name(pn_data_type(data)));
        else
            n = (int)formatted;
        pn_data_free(copy);
        break;
    }
    }
    *length = n < 0 ? 0 : (size_t)n >= size ? size - 1 : (size_t)n;
    return buf;
}

/* message-id / correlation-id: text plus a type header when not a string. */
static void amqp_add_id(struct amqp_builder *builder, const char *name, const char *type_name,
                        pn_data_t *data)
{
    pn_data_rewind(data);
    if (!pn_data_next(data))
        return;
    char text[128];
    switch (pn_data_type(data)) {
    case PN_STRING: {
        pn_bytes_t bytes = pn_data_get_string(data);
        amqp_add(builder, name, bytes.start, bytes.size);
        break;
    }
    case PN_ULONG:
        amqp_add(builder, name, text,
                 (size_t)snprintf(text, sizeof(text), "%" PRIu64, pn_data_get_ulong(data)));
        amqp_add_text(builder, type_name, "ulong");
        break;
    case PN_UUID: {
        pn_uuid_t uuid = pn_data_get_uuid(data);
        amqp_add(builder, name, text, (size_t)amqp_uuid_text(&uuid, text, sizeof(text)));
        amqp_add_text(builder, type_name, "uuid");
        break;
    }
    case PN_BINARY: {
        pn_bytes_t bytes = pn_data_get_binary(data);
        char *hex = malloc(bytes.size * 2 + 1);
        if (!hex) {
            builder->failed = true;
            return;
        }
        for (size_t i = 0; i < bytes.size; i++)
            snprintf(hex + 2 * i, 3, "%02x", (unsigned char)bytes.start[i]);
        amqp_add(builder, name, hex, bytes.size * 2);
        free(hex);
        amqp_add_text(builder, type_name, "binary");
        break;
    }
    default: break; /* not a legal message id type; dropped */
    }
}

/* ---- AMQP -> record ------------------------------------------------------------------------ */

static int amqp_add_application_properties(struct amqp_builder *builder, pn_data_t *properties,
                                           bool *has_kafka_key, char *err, size_t err_size)
{
    pn_data_rewind(properties);
    if (!pn_data_next(properties))
        return 0;
    if (pn_data_type(properties) != PN_MAP) {
        snprintf(err, err_size, "application-properties is not a map");
        return -1;
    }
    size_t count = pn_data_get_map(properties);
    bool typed_any = false;
    pn_data_enter(properties);
    for (size_t i = 0; i + 1 < count + 1 && i < count; i += 2) {
        if (!pn_data_next(properties))
            break;
        pn_type_t key_type = pn_data_type(properties);
        if (key_type != PN_STRING && key_type != PN_SYMBOL) {
            pn_data_exit(properties);
            snprintf(err, err_size, "application property keys must be strings (found %s)",
                     pn_type_name(key_type));
            return -1;
        }
        pn_bytes_t key =
            key_type == PN_STRING ? pn_data_get_string(properties) : pn_data_get_symbol(properties);
        if (!pn_data_next(properties))
            break;
        if (key.size == 0 || memchr(key.start, '\0', key.size) ||
            amqp_is_standard_name(key.start, key.size) ||
            amqp_has_prefix(key.start, key.size, "kbridge-"))
            continue; /* reserved names are dropped */
        if (key.size == 9 && memcmp(key.start, "kafka-key", 9) == 0)
            *has_kafka_key = true;
        char buf[512];
        size_t length = 0;
        bool typed = false;
        const char *value = amqp_value_text(properties, buf, sizeof(buf), &length, &typed);
        typed_any |= typed;
        const char *name = amqp_copy_name(builder, key.start, key.size);
        if (name)
            amqp_add(builder, name, value, length);
    }
    pn_data_exit(properties);
    if (typed_any)
        amqp_add_encoded(builder, AMQP_HEADER_APPLICATION_PROPERTIES, properties);
    return 0;
}

/* x-opt-partition-key of the annotations (string or symbol), if any. */
static bool amqp_partition_key(pn_data_t *annotations, pn_bytes_t *key)
{
    pn_data_rewind(annotations);
    if (!pn_data_next(annotations) || pn_data_type(annotations) != PN_MAP)
        return false;
    size_t count = pn_data_get_map(annotations);
    bool found = false;
    pn_data_enter(annotations);
    for (size_t i = 0; i < count && !found; i += 2) {
        if (!pn_data_next(annotations))
            break;
        pn_type_t type = pn_data_type(annotations);
        pn_bytes_t name = type == PN_SYMBOL   ? pn_data_get_symbol(annotations)
                          : type == PN_STRING ? pn_data_get_string(annotations)
                                              : pn_bytes(0, NULL);
        if (!pn_data_next(annotations))
            break;
        if (name.size == 19 && memcmp(name.start, "x-opt-partition-key", 19) == 0) {
            type = pn_data_type(annotations);
            if (type == PN_STRING || type == PN_SYMBOL) {
                *key = type == PN_STRING ? pn_data_get_string(annotations)
                                         : pn_data_get_symbol(annotations);
                found = true;
            }
        }
    }
    pn_data_exit(annotations);
    return found;
}

/* An integral annotation value (timestamp, long, ulong, int, uint, short,
 * ushort, byte, ubyte) into *value; false for any other type. */
static bool amqp_annotation_integer(pn_data_t *data, int64_t *value)
{
    switch (pn_data_type(data)) {
    case PN_TIMESTAMP: *value = pn_data_get_timestamp(data); return true;
    case PN_LONG: *value = pn_data_get_long(data); return true;
    case PN_ULONG: {
        uint64_t v = pn_data_get_ulong(data);
        *value = v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
        return true;
    }
    case PN_INT: *value = pn_data_get_int(data); return true;
    case PN_UINT: *value = pn_data_get_uint(data); return true;
    case PN_SHORT: *value = pn_data_get_short(data); return true;
    case PN_USHORT: *value = pn_data_get_ushort(data); return true;
    case PN_BYTE: *value = pn_data_get_byte(data); return true;
    case PN_UBYTE: *value = pn_data_get_ubyte(data); return true;
    default: return false;
    }
}

/* Scheduled delivery (architecture §13): the due time from the annotations
 * x-opt-delivery-time (absolute epoch ms, Artemis / Azure Service Bus) or
 * x-opt-delivery-delay (ms from now, Artemis); the time wins when both are
 * there. 0 (*deliver_at 0: now) or -1 with err naming the annotation. */
static int amqp_delivery_time(pn_data_t *annotations, uint64_t now_ms, uint64_t *deliver_at,
                              char *err, size_t err_size)
{
    *deliver_at = 0;
    pn_data_rewind(annotations);
    if (!pn_data_next(annotations) || pn_data_type(annotations) != PN_MAP)
        return 0;
    size_t count = pn_data_get_map(annotations);
    uint64_t at = 0, after = 0;
    bool has_at = false;
    int rc = 0;
    pn_data_enter(annotations);
    for (size_t i = 0; i < count && rc == 0; i += 2) {
        if (!pn_data_next(annotations))
            break;
        pn_type_t type = pn_data_type(annotations);
        pn_bytes_t name = type == PN_SYMBOL   ? pn_data_get_symbol(annotations)
                          : type == PN_STRING ? pn_data_get_string(annotations)
                                              : pn_bytes(0, NULL);
        if (!pn_data_next(annotations))
            break;
        bool time = name.size == 19 && memcmp(name.start, "x-opt-delivery-time", 19) == 0;
        bool delay = name.size == 20 && memcmp(name.start, "x-opt-delivery-delay", 20) == 0;
        if (!time && !delay)
            continue;
        int64_t value;
        if (!amqp_annotation_integer(annotations, &value)) {
            snprintf(err, err_size,
                     "message annotation %s must be a timestamp or an integer (milliseconds)",
                     time ? "x-opt-delivery-time" : "x-opt-delivery-delay");
            rc = -1;
        } else if (time) {
            at = schedule_due_at(value, now_ms);
            has_at = true;
        } else {
            after = schedule_due_after(value, now_ms);
        }
    }
    pn_data_exit(annotations);
    if (rc == 0)
        *deliver_at = has_at ? at : after;
    return rc;
}

static void amqp_set_body(struct amqp_builder *builder, pn_message_t *message)
{
    struct amqp_record *record = builder->record;
    pn_data_t *body = pn_message_body(message);
    pn_data_rewind(body);
    if (!pn_data_next(body)) {
        amqp_add_text(builder, AMQP_HEADER_BODY, "none");
        record->body = "";
        record->body_len = 0;
        return;
    }
    pn_type_t type = pn_data_type(body);
    bool inferred = pn_message_is_inferred(message);
    const char *marker = NULL;
    pn_bytes_t bytes = {0, NULL};
    if (type == PN_BINARY) {
        bytes = pn_data_get_binary(body);
        marker = inferred ? NULL : "value-binary";
    } else if (type == PN_STRING && !inferred) {
        bytes = pn_data_get_string(body);
        /* An AMQP string is UTF-8; one that is not cannot be delivered as a
         * string again, so it is kept as what it will be delivered as: a
         * binary amqp-value (the fuzz target's round trip found the record
         * changing on its next trip otherwise). */
        marker = amqp_valid_utf8((const unsigned char *)bytes.start, bytes.size) ? "value-string"
                                                                                 : "value-binary";
    } else {
        marker = inferred && type == PN_LIST ? "sequence" : "value-encoded";
        ssize_t size = pn_data_encoded_size(body);
        char *encoded = size >= 0 ? amqp_record_alloc(record, (size_t)size) : NULL;
        ssize_t written = encoded ? pn_data_encode(body, encoded, (size_t)size) : -1;
        if (written < 0) {
            builder->failed = true;
            return;
        }
        record->body = encoded;
        record->body_len = (size_t)written;
        amqp_add_text(builder, AMQP_HEADER_BODY, marker);
        return;
    }
    char *copy = amqp_record_alloc(record, bytes.size);
    if (!copy) {
        builder->failed = true;
        return;
    }
    if (bytes.size)
        memcpy(copy, bytes.start, bytes.size);
    record->body = copy;
    record->body_len = bytes.size;
    if (marker)
        amqp_add_text(builder, AMQP_HEADER_BODY, marker);
}

int amqp_record_from_message(pn_message_t *message, struct amqp_record *record, char *err,
                             size_t err_size)
{
    memset(record, 0, sizeof(*record));
    struct amqp_builder builder = {.record = record};

    /* Standard properties first. */
    amqp_add_id(&builder, "message-id", AMQP_HEADER_MESSAGE_ID_TYPE, pn_message_id(message));
    amqp_add_id(&builder, "correlation-id", AMQP_HEADER_CORRELATION_ID_TYPE,
                pn_message_correlation_id(message));
    amqp_add_text(&builder, "reply-to", pn_message_get_reply_to(message));
    amqp_add_text(&builder, "content-type", pn_message_get_content_type(message));
    amqp_add_text(&builder, "content-encoding", pn_message_get_content_encoding(message));
    amqp_add_text(&builder, "subject", pn_message_get_subject(message));
    amqp_add_text(&builder, "group-id", pn_message_get_group_id(message));
    if (pn_message_get_priority(message) != PN_DEFAULT_PRIORITY)
        amqp_add_number(&builder, "priority", pn_message_get_priority(message));
    pn_timestamp_t creation = pn_message_get_creation_time(message);
    pn_timestamp_t expiry = pn_message_get_expiry_time(message);
    pn_millis_t ttl = pn_message_get_ttl(message);
    if (expiry)
        amqp_add_number(&builder, "expires", expiry);
    else if (ttl) {
        int64_t base = creation ? creation : (int64_t)clock_wall_ms();
        amqp_add_number(&builder, "expires", base > INT64_MAX - ttl ? INT64_MAX : base + ttl);
    }
    if (creation)
        amqp_add_number(&builder, "timestamp", creation);
    if (pn_message_is_durable(message))
        amqp_add_text(&builder, "persistent", "true");

    bool has_kafka_key = false;
    if (amqp_add_application_properties(&builder, pn_message_properties(message), &has_kafka_key,
                                        err, err_size) < 0) {
        amqp_record_release(record);
        return -1;
    }

    /* What only AMQP needs. */
    if (ttl)
        amqp_add_number(&builder, AMQP_HEADER_TTL, ttl);
    if (pn_message_get_group_sequence(message))
        amqp_add_number(&builder, AMQP_HEADER_GROUP_SEQUENCE,
                        pn_message_get_group_sequence(message));
    amqp_add_text(&builder, AMQP_HEADER_REPLY_TO_GROUP_ID,
                  pn_message_get_reply_to_group_id(message));
    pn_data_t *annotations = pn_message_annotations(message);
    if (amqp_delivery_time(annotations, clock_wall_ms(), &record->deliver_at, err, err_size) < 0) {
        amqp_record_release(record);
        return -1;
    }
    pn_data_rewind(annotations);
    if (pn_data_next(annotations) && pn_data_type(annotations) == PN_MAP &&
        pn_data_get_map(annotations) > 0)
        amqp_add_encoded(&builder, AMQP_HEADER_MESSAGE_ANNOTATIONS, annotations);
    amqp_set_body(&builder, message);

    pn_bytes_t partition_key;
    if (!has_kafka_key && !builder.failed && amqp_partition_key(annotations, &partition_key)) {
        char *key = amqp_record_alloc(record, partition_key.size);
        if (!key) {
            builder.failed = true;
        } else {
            if (partition_key.size)
                memcpy(key, partition_key.start, partition_key.size);
            record->key = key;
            record->key_len = partition_key.size;
        }
    }
    if (builder.failed) {
        amqp_record_release(record);
        snprintf(err, err_size, "out of memory converting the message");
        return -1;
    }
    return 0;
}

/* ---- record -> AMQP ---------------------------------------------------------------------------
 */

/* A header name's bit in amqp_record_view.header_names (FNV-1a, 64 bits). */
static uint64_t amqp_name_bit(const char *name)
{
    uint64_t hash = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        hash = (hash ^ *p) * 1099511628211ULL;
    return 1ULL << (hash >> 58);
}

/* The names amqp_message_from_record looks up: their bits in
 * header_names are computed once (amqp_lookup_init), not at every lookup of
 * every delivery. */
enum amqp_lookup {
    AMQP_FIND_BODY,
    AMQP_FIND_MESSAGE_ID,
    AMQP_FIND_MESSAGE_ID_TYPE,
    AMQP_FIND_CORRELATION_ID,
    AMQP_FIND_CORRELATION_ID_TYPE,
    AMQP_FIND_USER_ID,
    AMQP_FIND_REPLY_TO,
    AMQP_FIND_CONTENT_TYPE,
    AMQP_FIND_CONTENT_ENCODING,
    AMQP_FIND_SUBJECT,
    AMQP_FIND_GROUP_ID,
    AMQP_FIND_REPLY_TO_GROUP_ID,
    AMQP_FIND_GROUP_SEQUENCE,
    AMQP_FIND_EXPIRES,
    AMQP_FIND_TIMESTAMP,
    AMQP_FIND_PRIORITY,
    AMQP_FIND_PERSISTENT,
    AMQP_FIND_TTL,
    AMQP_FIND_APPLICATION_PROPERTIES,
    AMQP_FIND_MESSAGE_ANNOTATIONS,
    AMQP_FIND_COUNT
};

static const char *const amqp_lookup_names[AMQP_FIND_COUNT] = {
    [AMQP_FIND_BODY] = AMQP_HEADER_BODY,
    [AMQP_FIND_MESSAGE_ID] = "message-id",
    [AMQP_FIND_MESSAGE_ID_TYPE] = AMQP_HEADER_MESSAGE_ID_TYPE,
    [AMQP_FIND_CORRELATION_ID] = "correlation-id",
    [AMQP_FIND_CORRELATION_ID_TYPE] = AMQP_HEADER_CORRELATION_ID_TYPE,
    [AMQP_FIND_USER_ID] = "user-id",
    [AMQP_FIND_REPLY_TO] = "reply-to",
    [AMQP_FIND_CONTENT_TYPE] = "content-type",
    [AMQP_FIND_CONTENT_ENCODING] = "content-encoding",
    [AMQP_FIND_SUBJECT] = "subject",
    [AMQP_FIND_GROUP_ID] = "group-id",
    [AMQP_FIND_REPLY_TO_GROUP_ID] = AMQP_HEADER_REPLY_TO_GROUP_ID,
    [AMQP_FIND_GROUP_SEQUENCE] = AMQP_HEADER_GROUP_SEQUENCE,
    [AMQP_FIND_EXPIRES] = "expires",
    [AMQP_FIND_TIMESTAMP] = "timestamp",
    [AMQP_FIND_PRIORITY] = "priority",
    [AMQP_FIND_PERSISTENT] = "persistent",
    [AMQP_FIND_TTL] = AMQP_HEADER_TTL,
    [AMQP_FIND_APPLICATION_PROPERTIES] = AMQP_HEADER_APPLICATION_PROPERTIES,
    [AMQP_FIND_MESSAGE_ANNOTATIONS] = AMQP_HEADER_MESSAGE_ANNOTATIONS,
};

static uint64_t amqp_lookup_bits[AMQP_FIND_COUNT];
static pthread_once_t amqp_lookup_once = PTHREAD_ONCE_INIT;

static void amqp_lookup_init(void)
{
    for (size_t i = 0; i < AMQP_FIND_COUNT; i++)
        amqp_lookup_bits[i] = amqp_name_bit(amqp_lookup_names[i]);
}

/* The first header called amqp_lookup_names[which]. A conversion looks up
 * some twenty names, most of them absent: the view's name index answers
 * those without a walk (architecture "Data path of a delivery"). */
static const struct core_property *amqp_find(const struct amqp_record_view *record,
                                             enum amqp_lookup which)
{
    if (!(record->header_names & amqp_lookup_bits[which]))
        return NULL;
    const char *name = amqp_lookup_names[which];
    for (size_t i = 0; i < record->header_count; i++)
        if (strcmp(record->headers[i].name, name) == 0)
            return &record->headers[i];
    return NULL;
}

/* A header value as a NUL-terminated string (copied into buf; NULL when it
 * does not fit or contains NUL). */
static const char *amqp_header_string(const struct core_property *header, char *buf, size_t size)
{
    if (!header || header->value_len >= size || memchr(header->value, '\0', header->value_len))
        return NULL;
    memcpy(buf, header->value, header->value_len);
    buf[header->value_len] = '\0';
    return buf;
}

static bool amqp_parse_int64(const struct core_property *header, int64_t *out)
{
    char text[32];
    if (!amqp_header_string(header, text, sizeof(text)) || !text[0])
        return false;
    char *end;
    long long value = strtoll(text, &end, 10);
    if (*end)
        return false;
    *out = value;
    return true;
}

/* Put an id (message-id / correlation-id) back with its type. */
static void amqp_put_id(pn_data_t *data, const struct core_property *header,
                        const struct core_property *type)
{
    char type_text[16] = "";
    amqp_header_string(type, type_text, sizeof(type_text));
    pn_data_clear(data);
    if (strcmp(type_text, "ulong") == 0) {
        char text[32], *end;
        if (amqp_header_string(header, text, sizeof(text)) && text[0] && text[0] != '-') {
            unsigned long long value = strtoull(text, &end, 10);
            if (!*end) {
                pn_data_put_ulong(data, value);
                return;
            }
        }
    } else if (strcmp(type_text, "uuid") == 0) {
        pn_uuid_t uuid;
        if (amqp_uuid_parse(header->value, header->value_len, &uuid)) {
            pn_data_put_uuid(data, uuid);
            return;
        }
    } else if (strcmp(type_text, "binary") == 0 && header->value_len % 2 == 0) {
        char *bytes = malloc(header->value_len / 2 + 1);
        bool ok = bytes != NULL;
        for (size_t i = 0; ok && i < header->value_len / 2; i++) {
            int high = amqp_hex_value(header->value[2 * i]);
            int low = amqp_hex_value(header->value[2 * i + 1]);
            ok = high >= 0 && low >= 0;
            if (ok)
                bytes[i] = (char)(high * 16 + low);
        }
        if (ok) {
            pn_data_put_binary(data, pn_bytes(header->value_len / 2, bytes));
            free(bytes);
            return;
        }
        free(bytes);
    }
    pn_data_put_string(data, pn_bytes(header->value_len, header->value));
}

/* Find `name` in the decoded application-properties map and copy its value
 * into `out` (positioned inside the map being built). */
static bool amqp_put_typed(pn_data_t *out, pn_data_t *typed, const char *name, size_t length)
{
    if (!typed)
        return false;
    pn_data_rewind(typed);
    if (!pn_data_next(typed) || pn_data_type(typed) != PN_MAP)
        return false;
    size_t count = pn_data_get_map(typed);
    pn_data_enter(typed);
    bool found = false;
    for (size_t i = 0; i < count && !found; i += 2) {
        if (!pn_data_next(typed))
            break;
        pn_type_t type = pn_data_type(typed);
        pn_bytes_t key = type == PN_STRING   ? pn_data_get_string(typed)
                         : type == PN_SYMBOL ? pn_data_get_symbol(typed)
                                             : pn_bytes(0, NULL);
        /* a key without a value (a map of odd count) is no match */
        if ((type == PN_STRING || type == PN_SYMBOL) && key.size == length && i + 1 < count &&
            (length == 0 || memcmp(key.start, name, length) == 0)) {
            /* current = the key: appendn copies the node after it, the value */
            pn_data_narrow(typed);
            found = pn_data_appendn(out, typed, 1) == 0;
            pn_data_widen(typed);
            break;
        }
        if (!pn_data_next(typed))
            break;
    }
    pn_data_rewind(typed);
    return found;
}

/* Whether every described value in data has two parts, neither of them a
 * described value. Grammar allows a described value whose value is
 * described (0x00 d1 0x00 d2 v), but proton 0.37 mishandles one: decoded
 * inside a list or map it also takes the value after it (and the list's or
 * map's count is written one short), copied with pn_data_appendn it leaves
 * the copy open so the next values go inside it, and a peer decodes such a
 * body as the amqp-value section itself. Iterative: the nesting is as deep
 * as the bytes say. */
static bool amqp_described_are_sound(pn_data_t *data)
{
    pn_data_rewind(data);
    size_t depth = 0;
    for (;;) {
        if (!pn_data_next(data)) {
            if (depth == 0)
                return true;
            pn_data_exit(data);
            depth--;
            continue;
        }
        pn_type_t type = pn_data_type(data);
        if (type != PN_DESCRIBED && type != PN_LIST && type != PN_MAP && type != PN_ARRAY)
            continue;
        if (!pn_data_enter(data))
            return false;
        depth++;
        if (type == PN_DESCRIBED) {
            size_t parts = 0;
            bool described_part = false;
            while (pn_data_next(data)) {
                parts++;
                described_part = described_part || pn_data_type(data) == PN_DESCRIBED;
            }
            if (parts != 2 || described_part)
                return false;
            pn_data_exit(data); /* and in again, before the descriptor */
            pn_data_enter(data);
        }
    }
}

/* data's AMQP encoding in a new buffer (*size its length); NULL on failure. */
static char *amqp_encode_all(pn_data_t *data, size_t *size)
{
    ssize_t need = pn_data_encoded_size(data);
    if (need < 0)
        return NULL;
    char *bytes = malloc((size_t)need + 1);
    if (!bytes)
        return NULL;
    ssize_t written = pn_data_encode(data, bytes, (size_t)need);
    if (written < 0) {
        free(bytes);
        return NULL;
    }
    *size = (size_t)written;
    return bytes;
}

/* Whether data, just decoded from the `length` bytes at `bytes` (what a
 * Kafka producer wrote in a kbridge-amqp-* header or an encoded body), is
 * what proton will send on. Some trees that proton decodes it cannot encode
 * faithfully (amqp_described_are_sound: entries are lost and a value
 * swallows its neighbours), and kbridge would deliver a message that differs
 * from what was written, more on every trip. Refused unless every described
 * value is sound and data's encoding is either the bytes read or one that
 * decodes whole to a tree encoding to the same bytes again. False also when
 * out of memory. */
static bool amqp_reencodes_faithfully(pn_data_t *data, const void *bytes, size_t length)
{
    bool faithful = false;
    if (!amqp_described_are_sound(data))
        goto done;
    size_t size = 0;
    char *encoded = amqp_encode_all(data, &size);
    if (!encoded)
        goto done;
    if (size == length && memcmp(encoded, bytes, length) == 0) {
        faithful = true; /* as written (kbridge's own encodings) */
    } else {
        pn_data_t *again = pn_data(0);
        size_t size_again = 0;
        char *encoded_again = NULL;
        if (again && pn_data_decode(again, encoded, size) == (ssize_t)size)
            encoded_again = amqp_encode_all(again, &size_again);
        faithful = encoded_again && size_again == size && memcmp(encoded_again, encoded, size) == 0;
        free(encoded_again);
        pn_data_free(again);
    }
    free(encoded);
done:
    pn_data_rewind(data);
    return faithful;
}

/* The header's AMQP encoding decoded (when it starts with an `expect`, unless
 * PN_INVALID); NULL when it does not decode, is not one or would not be sent
 * on as decoded (amqp_reencodes_faithfully). Bytes after the first value are
 * ignored. */
static pn_data_t *amqp_decode_header(const struct core_property *header, pn_type_t expect)
{
    if (!header)
        return NULL;
    pn_data_t *data = pn_data(0);
    if (!data)
        return NULL;
    ssize_t used = pn_data_decode(data, header->value, header->value_len);
    if (used < 0 || !amqp_reencodes_faithfully(data, header->value, (size_t)used)) {
        pn_data_free(data);
        return NULL;
    }
    pn_data_rewind(data);
    if (expect != PN_INVALID && (!pn_data_next(data) || pn_data_type(data) != expect)) {
        pn_data_free(data);
        return NULL;
    }
    pn_data_rewind(data);
    return data;
}

static bool amqp_is_key_header(const char *name)
{
    return strcmp(name, "kafka-key") == 0 || strcmp(name, "JMSXGroupID") == 0 ||
           strcmp(name, "group-id") == 0;
}

static void amqp_put_body(const struct amqp_record_view *record, pn_message_t *message)
{
    char marker[24] = "";
    amqp_header_string(amqp_find(record, AMQP_FIND_BODY), marker, sizeof(marker));
    pn_data_t *body = pn_message_body(message);
    pn_data_clear(body);
    if (strcmp(marker, "none") == 0) {
        pn_message_set_inferred(message, false);
        return;
    }
    if (strcmp(marker, "value-string") == 0 && amqp_valid_utf8(record->body, record->body_len)) {
        pn_data_put_string(body, pn_bytes(record->body_len, record->body));
        pn_message_set_inferred(message, false);
        return;
    }
    if (strcmp(marker, "value-binary") == 0) {
        pn_data_put_binary(body, pn_bytes(record->body_len, record->body));
        pn_message_set_inferred(message, false);
        return;
    }
    bool sequence = strcmp(marker, "sequence") == 0;
    if (sequence || strcmp(marker, "value-encoded") == 0) {
        bool ok =
            pn_data_decode(body, record->body, record->body_len) == (ssize_t)record->body_len &&
            amqp_reencodes_faithfully(body, record->body, record->body_len);
        pn_data_rewind(body);
        if (ok && sequence)
            ok = pn_data_next(body) && pn_data_type(body) == PN_LIST;
        pn_data_rewind(body);
        if (ok) {
            pn_message_set_inferred(message, sequence);
            return;
        }
        pn_data_clear(body); /* undecodable: the bytes as they are */
    }
    pn_data_put_binary(body, pn_bytes(record->body_len, record->body));
    pn_message_set_inferred(message, true);
}

int amqp_message_from_record(const struct amqp_record_view *view, pn_message_t *message, char *err,
                             size_t err_size)
{
    pthread_once(&amqp_lookup_once, amqp_lookup_init);
    struct amqp_record_view indexed = *view;
    indexed.header_names = 0;
    for (size_t i = 0; i < view->header_count; i++)
        indexed.header_names |= amqp_name_bit(view->headers[i].name);
    const struct amqp_record_view *record = &indexed;
    pn_message_clear(message);
    const struct core_property *header;
    char text[1024];

    if ((header = amqp_find(record, AMQP_FIND_MESSAGE_ID)))
        amqp_put_id(pn_message_id(message), header, amqp_find(record, AMQP_FIND_MESSAGE_ID_TYPE));
    if ((header = amqp_find(record, AMQP_FIND_CORRELATION_ID)))
        amqp_put_id(pn_message_correlation_id(message), header,
                    amqp_find(record, AMQP_FIND_CORRELATION_ID_TYPE));
    if ((header = amqp_find(record, AMQP_FIND_USER_ID)))
        pn_message_set_user_id(message, pn_bytes(header->value_len, header->value));
    if (amqp_header_string(amqp_find(record, AMQP_FIND_REPLY_TO), text, sizeof(text)))
        pn_message_set_reply_to(message, text);
    if (amqp_header_string(amqp_find(record, AMQP_FIND_CONTENT_TYPE), text, sizeof(text)))
        pn_message_set_content_type(message, text);
    if (amqp_header_string(amqp_find(record, AMQP_FIND_CONTENT_ENCODING), text, sizeof(text)))
        pn_message_set_content_encoding(message, text);
    if (amqp_header_string(amqp_find(record, AMQP_FIND_SUBJECT), text, sizeof(text)))
        pn_message_set_subject(message, text);
    if (amqp_header_string(amqp_find(record, AMQP_FIND_GROUP_ID), text, sizeof(text)))
        pn_message_set_group_id(message, text);
    if (amqp_header_string(amqp_find(record, AMQP_FIND_REPLY_TO_GROUP_ID), text, sizeof(text)))
        pn_message_set_reply_to_group_id(message, text);
    int64_t number;
    if (amqp_parse_int64(amqp_find(record, AMQP_FIND_GROUP_SEQUENCE), &number))
        pn_message_set_group_sequence(message, (pn_sequence_t)number);
    bool expires_numeric = amqp_parse_int64(amqp_find(record, AMQP_FIND_EXPIRES), &number);
    if (expires_numeric)
        pn_message_set_expiry_time(message, number);
    bool timestamp_numeric = amqp_parse_int64(amqp_find(record, AMQP_FIND_TIMESTAMP), &number);
    if (timestamp_numeric)
        pn_message_set_creation_time(message, number);
    bool priority_numeric = amqp_parse_int64(amqp_find(record, AMQP_FIND_PRIORITY), &number) &&
                            number >= 0 && number <= 255;
    if (priority_numeric)
        pn_message_set_priority(message, (uint8_t)number);
    if (amqp_header_string(amqp_find(record, AMQP_FIND_PERSISTENT), text, sizeof(text)) &&
        strcmp(text, "true") == 0)
        pn_message_set_durable(message, true);
    if (amqp_parse_int64(amqp_find(record, AMQP_FIND_TTL), &number) && number > 0 &&
        number <= UINT32_MAX)
        pn_message_set_ttl(message, (pn_millis_t)number);
    pn_message_set_delivery_count(message, record->delivery_count ? record->delivery_count - 1 : 0);
    pn_message_set_first_acquirer(message, record->delivery_count <= 1);

    /* Application properties: every other header, first occurrence of a name. */
    pn_data_t *typed =
        amqp_decode_header(amqp_find(record, AMQP_FIND_APPLICATION_PROPERTIES), PN_MAP);
    pn_data_t *properties = pn_message_properties(message);
    pn_data_put_map(properties);
    pn_data_enter(properties);
    bool key_explained = false;
    for (size_t i = 0; i < record->header_count; i++) {
        const struct core_property *h = &record->headers[i];
        size_t name_len = strlen(h->name);
        if (amqp_is_key_header(h->name))
            key_explained = true;
        if (amqp_has_prefix(h->name, name_len, AMQP_PREFIX))
            continue;
        if (amqp_is_standard_name(h->name, name_len)) {
            /* A standard header that could not be put where it belongs is
             * kept as a string property rather than lost. */
            bool placed = (strcmp(h->name, "expires") != 0 || expires_numeric) &&
                          (strcmp(h->name, "timestamp") != 0 || timestamp_numeric) &&
                          (strcmp(h->name, "priority") != 0 || priority_numeric) &&
                          strcmp(h->name, "persistent") != 0;
            if (placed)
                continue;
            if (strcmp(h->name, "persistent") == 0)
                continue;
        }
        bool repeated = false;
        for (size_t j = 0; j < i && !repeated; j++)
            repeated = strcmp(record->headers[j].name, h->name) == 0;
        if (repeated)
            continue;
        pn_data_put_string(properties, pn_bytes(name_len, h->name));
        if (amqp_put_typed(properties, typed, h->name, name_len))
            continue;
        if (amqp_valid_utf8((const unsigned char *)h->value, h->value_len))
            pn_data_put_string(properties, pn_bytes(h->value_len, h->value));
        else
            pn_data_put_binary(properties, pn_bytes(h->value_len, h->value));
    }
    pn_data_exit(properties);
    pn_data_free(typed);
    pn_data_rewind(properties);
    if (pn_data_next(properties) && pn_data_get_map(properties) == 0)
        pn_data_clear(properties);

    /* Annotations. */
    pn_data_t *annotations = pn_message_annotations(message);
    const struct core_property *encoded = amqp_find(record, AMQP_FIND_MESSAGE_ANNOTATIONS);
    bool annotated = false;
    ssize_t used = encoded ? pn_data_decode(annotations, encoded->value, encoded->value_len) : -1;
    if (used >= 0 && amqp_reencodes_faithfully(annotations, encoded->value, (size_t)used)) {
        pn_data_rewind(annotations);
        annotated = pn_data_next(annotations) && pn_data_type(annotations) == PN_MAP;
        pn_data_rewind(annotations);
    }
    if (!annotated) /* also after a failed or refused decode, which leaves what it had read */
        pn_data_clear(annotations);
    if (!annotated && record->key && !key_explained &&
        amqp_valid_utf8(record->key, record->key_len)) {
        pn_data_put_map(annotations);
        pn_data_enter(annotations);
        pn_data_put_symbol(annotations, pn_bytes(19, "x-opt-partition-key"));
        pn_data_put_string(annotations, pn_bytes(record->key_len, record->key));
        pn_data_exit(annotations);
    }

    amqp_put_body(record, message);
    (void)err;
    (void)err_size;
    return 0;
}
