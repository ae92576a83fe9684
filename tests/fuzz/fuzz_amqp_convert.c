/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_amqp_convert.c -- libFuzzer target for the Kafka record -> AMQP
 * message conversion (amqp_message_from_record in adapters/amqp/amqp_convert.c),
 * which decodes bytes any Kafka producer can write: the kbridge-amqp-*
 * headers carry AMQP encodings (value-encoded and sequence bodies, the typed
 * application-properties map, message annotations) and the -type headers of
 * message-id and correlation-id say how to read the text ids.
 *
 * The input is one flags byte and then fields separated by the two bytes
 * FF FE (FUZZ_SEPARATOR):
 *   flags bits 0-1  delivery count: 0, 1, 2 or 7
 *         bit 2     the first field is the record key (else the key is null)
 *   next field      the record value (body)
 *   each further    one header (at most 32): its first byte picks the name,
 *   field           below 0x80 the entry (byte % 32) of header_names[], the
 *                   rest of the field being the value; from 0x80 on the name
 *                   is the bytes up to the first '=' (a NUL cuts it short)
 *                   and the value what follows the '='
 * Every value and the body are copied to exact-size buffers, so ASan sees
 * any read past them.
 *
 * The record becomes a message (amqp_message_from_record must succeed),
 * which pn_message_encode must encode (a record that cannot be encoded would
 * be released and redelivered for ever), and the encoding must decode. The
 * decoded message then goes the publish way, amqp_record_from_message, and
 * that record through kbridge twice more (to a message, encoded, decoded,
 * to a record): once the record is kbridge's own, a round trip loses
 * nothing, so the three records must be the same (but for the first one's
 * typed-properties map, see check_same_record). Any mismatch aborts. Also built by `make check`
 * with replay_main.c, which runs this over tests/fuzz/corpus/amqp_convert
 * without clang. */
#include "amqp_convert.h"

#include <proton/codec.h>
#include <proton/message.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

#define FUZZ_SEPARATOR "\xff\xfe"
#define FUZZ_MAX_HEADERS 32

/* The names amqp_message_from_record reads, and a few it must pass through. */
static const char *const header_names[32] = {
    "message-id",
    "correlation-id",
    "user-id",
    "reply-to",
    "content-type",
    "content-encoding",
    "subject",
    "group-id",
    "priority",
    "expires",
    "timestamp",
    "persistent",
    "kafka-key",
    "JMSXGroupID",
    "kbridge-amqp-body",
    "kbridge-amqp-ttl",
    "kbridge-amqp-message-id-type",
    "kbridge-amqp-correlation-id-type",
    "kbridge-amqp-group-sequence",
    "kbridge-amqp-reply-to-group-id",
    "kbridge-amqp-application-properties",
    "kbridge-amqp-message-annotations",
    "kbridge-amqp-unknown",
    "kbridge-dlq-reason",
    "kbridge-reply-to",
    "x-opt-partition-key",
    "app",
    "count",
    "price",
    "flag",
    "",
    "destination",
};

static const uint32_t delivery_counts[4] = {0, 1, 2, 7};

/* Owned copies of what the view points to. */
struct fuzz_record {
    struct amqp_record_view view;
    struct core_property headers[FUZZ_MAX_HEADERS];
    char *names[FUZZ_MAX_HEADERS];
    void *values[FUZZ_MAX_HEADERS];
    void *key;
    void *body;
};

static void *copy_bytes(const uint8_t *bytes, size_t len)
{
    void *copy = malloc(len ? len : 1);
    FUZZ_CHECK(copy != NULL, "out of memory");
    if (len)
        memcpy(copy, bytes, len);
    return copy;
}

static char *copy_name(const uint8_t *bytes, size_t len)
{
    char *name = malloc(len + 1);
    FUZZ_CHECK(name != NULL, "out of memory");
    if (len)
        memcpy(name, bytes, len);
    name[len] = '\0';
    return name;
}

/* The next field of [*pos, end): its start and length; false after the last. */
static bool next_field(const uint8_t *data, size_t size, size_t *pos, const uint8_t **field,
                       size_t *len)
{
    if (*pos > size)
        return false;
    const uint8_t *start = data + *pos;
    size_t left = size - *pos;
    const uint8_t *sep = NULL;
    for (size_t i = 0; i + 1 < left; i++)
        if (start[i] == 0xff && start[i + 1] == 0xfe) {
            sep = start + i;
            break;
        }
    *field = start;
    *len = sep ? (size_t)(sep - start) : left;
    *pos += *len + 2; /* past the separator, or past the end after the last field */
    return true;
}

static void record_from_input(const uint8_t *data, size_t size, struct fuzz_record *record)
{
    memset(record, 0, sizeof(*record));
    uint8_t flags = data[0];
    record->view.delivery_count = delivery_counts[flags & 3];
    record->view.timestamp_ms = 1700000000000;
    size_t pos = 1;
    const uint8_t *field;
    size_t len;
    if ((flags & 4) && next_field(data, size, &pos, &field, &len)) {
        record->key = copy_bytes(field, len);
        record->view.key = record->key;
        record->view.key_len = len;
    }
    if (next_field(data, size, &pos, &field, &len)) {
        record->body = copy_bytes(field, len);
        record->view.body_len = len;
    } else {
        record->body = copy_bytes(NULL, 0);
    }
    record->view.body = record->body;
    size_t count = 0;
    while (count < FUZZ_MAX_HEADERS && next_field(data, size, &pos, &field, &len)) {
        if (len == 0)
            continue;
        const uint8_t *value = field + 1;
        size_t value_len = len - 1;
        if (field[0] < 0x80) {
            record->names[count] = copy_name((const uint8_t *)header_names[field[0] % 32],
                                             strlen(header_names[field[0] % 32]));
        } else {
            const uint8_t *equals = memchr(field + 1, '=', len - 1);
            size_t name_len = equals ? (size_t)(equals - (field + 1)) : len - 1;
            record->names[count] = copy_name(field + 1, name_len);
            value = equals ? equals + 1 : field + len;
            value_len = (size_t)(field + len - value);
        }
        record->values[count] = copy_bytes(value, value_len);
        record->headers[count] =
            (struct core_property){record->names[count], record->values[count], value_len};
        count++;
    }
    record->view.headers = record->headers;
    record->view.header_count = count;
}

static void record_free(struct fuzz_record *record)
{
    for (size_t i = 0; i < record->view.header_count; i++) {
        free(record->names[i]);
        free(record->values[i]);
    }
    free(record->key);
    free(record->body);
}

/* The message's AMQP encoding, which must exist; *len its length. */
static char *encode(pn_message_t *message, size_t *len)
{
    size_t capacity = 256;
    for (;;) {
        char *buffer = malloc(capacity);
        FUZZ_CHECK(buffer != NULL, "out of memory");
        size_t used = capacity;
        int rc = pn_message_encode(message, buffer, &used);
        if (rc == 0) {
            *len = used;
            return buffer;
        }
        free(buffer);
        FUZZ_CHECK(rc == PN_OVERFLOW && capacity < ((size_t)1 << 28),
                   "pn_message_encode failed: %s (%s)", pn_code(rc),
                   pn_error_text(pn_message_error(message)));
        capacity *= 2;
    }
}

/* The message as the peer decodes it. */
static pn_message_t *encode_decode(pn_message_t *message)
{
    size_t len = 0;
    char *bytes = encode(message, &len);
    pn_message_t *decoded = pn_message();
    FUZZ_CHECK(decoded != NULL, "out of memory");
    int rc = pn_message_decode(decoded, bytes, len);
    FUZZ_CHECK(rc == 0, "our own encoding of %zu bytes does not decode: %s (%s)", len, pn_code(rc),
               pn_error_text(pn_message_error(decoded)));
    free(bytes);
    return decoded;
}

static struct amqp_record_view view_of(const struct amqp_record *record, uint32_t delivery_count)
{
    return (struct amqp_record_view){
        .key = record->key,
        .key_len = record->key_len,
        .body = record->body,
        .body_len = record->body_len,
        .headers = record->properties,
        .header_count = record->property_count,
        .timestamp_ms = 1700000000000,
        .delivery_count = delivery_count,
    };
}

static bool same_bytes(const void *a, size_t a_len, const void *b, size_t b_len)
{
    return a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0);
}

static bool is_typed_map(const struct core_property *header)
{
    return strcmp(header->name, "kbridge-amqp-application-properties") == 0;
}

/* Records a and b are the same. With `exact` false, the typed-properties
 * header kbridge-amqp-application-properties is left out of the comparison:
 * the first record's map still holds what the Kafka producer wrote there,
 * properties kbridge drops as reserved (standard header names, kbridge-*,
 * empty names) and AMQP strings that are not UTF-8 (delivered as such, and
 * published again as plain text), which the next trip settles. */
static void check_same_record(const struct amqp_record *a, const struct amqp_record *b, bool exact)
{
    FUZZ_CHECK((a->key == NULL) == (b->key == NULL) &&
                   (a->key == NULL || same_bytes(a->key, a->key_len, b->key, b->key_len)),
               "key differs (%zu vs %zu bytes)", a->key_len, b->key_len);
    FUZZ_CHECK(same_bytes(a->body, a->body_len, b->body, b->body_len),
               "body differs (%zu vs %zu bytes)", a->body_len, b->body_len);
    size_t i = 0, j = 0;
    for (;;) {
        while (!exact && i < a->property_count && is_typed_map(&a->properties[i]))
            i++;
        while (!exact && j < b->property_count && is_typed_map(&b->properties[j]))
            j++;
        if (i == a->property_count || j == b->property_count)
            break;
        const struct core_property *x = &a->properties[i++], *y = &b->properties[j++];
        FUZZ_CHECK(strcmp(x->name, y->name) == 0 &&
                       same_bytes(x->value, x->value_len, y->value, y->value_len),
                   "header %zu: '%s' (%zu bytes) vs '%s' (%zu bytes)", i - 1, x->name, x->value_len,
                   y->name, y->value_len);
    }
    FUZZ_CHECK(i == a->property_count && j == b->property_count,
               "%zu vs %zu headers (%zu and %zu compared)", a->property_count, b->property_count, i,
               j);
}

/* Deliver `record` (a kbridge record) as a message, as the peer receives it,
 * and publish that again: the new record in *out. */
static void trip(const struct amqp_record *record, uint32_t delivery_count, pn_message_t *message,
                 struct amqp_record *out)
{
    char err[256] = "";
    struct amqp_record_view view = view_of(record, delivery_count);
    FUZZ_CHECK(amqp_message_from_record(&view, message, err, sizeof(err)) == 0,
               "amqp_message_from_record of kbridge's own record failed: %s", err);
    pn_message_t *received = encode_decode(message);
    FUZZ_CHECK(amqp_record_from_message(received, out, err, sizeof(err)) == 0,
               "amqp_record_from_message of a delivered message failed: %s", err);
    pn_message_free(received);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct fuzz_record input;
    record_from_input(data, size, &input);
    char err[256] = "";

    pn_message_t *message = pn_message();
    FUZZ_CHECK(message != NULL, "out of memory");
    FUZZ_CHECK(amqp_message_from_record(&input.view, message, err, sizeof(err)) == 0,
               "amqp_message_from_record failed: %s", err);
    pn_message_t *received = encode_decode(message);

    /* A message kbridge delivered may be published again (a forward), and
     * from then on each trip through kbridge gives the same record. */
    struct amqp_record first, second, third;
    FUZZ_CHECK(amqp_record_from_message(received, &first, err, sizeof(err)) == 0,
               "amqp_record_from_message of a delivered message failed: %s", err);
    trip(&first, input.view.delivery_count, message, &second);
    check_same_record(&first, &second, false);
    trip(&second, input.view.delivery_count, message, &third);
    check_same_record(&second, &third, true);

    amqp_record_release(&first);
    amqp_record_release(&second);
    amqp_record_release(&third);
    amqp_record_release(&third); /* idempotent */
    pn_message_free(received);
    pn_message_free(message);
    record_free(&input);
    return 0;
}
