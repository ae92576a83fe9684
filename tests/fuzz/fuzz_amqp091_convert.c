/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_amqp091_convert.c -- libFuzzer target for the Kafka record -> AMQP
 * 0-9-1 basic properties conversion (amqp091_properties_from_record_headers
 * in adapters/amqp091/amqp091_convert.c), which reads bytes any Kafka
 * producer can write: the typed headers table kbridge-amqp091-headers (0-9-1's
 * own table encoding), kbridge-amqp091-expiration / -delivery-mode, and the
 * text headers that become properties (priority, timestamp, expires, ...).
 *
 * The input is one flags byte and then fields separated by the two bytes
 * FF FE (FUZZ_SEPARATOR), each one record header (at most 32): its first byte
 * picks the name, below 0x80 the entry (byte % 32) of header_names[], the
 * rest of the field being the value; from 0x80 on the name is the bytes up
 * to the first '=' and the value what follows it. flags bits 0-1 give the
 * delivery count (0, 1, 2 or 9). Every name and value is copied to an
 * exact-size buffer, so ASan sees any read past them.
 *
 * What must hold for every input (any failure aborts):
 *  - the conversion succeeds (a record kbridge cannot turn into properties
 *    would be released and redelivered for ever);
 *  - the properties encode as a content header (amqp091_content_header_encode,
 *    what the adapter sends) and that frame decodes back
 *    (amqp091_content_header_decode: what a client's codec meets);
 *  - the decoded properties go the publish way
 *    (amqp091_record_headers_from_properties): either they become record
 *    headers, or they are refused with 406 (an expiration or a header value
 *    the publish side does not accept, which a client could not have sent
 *    through kbridge either); the record headers made then convert back and
 *    encode again.
 * Also built by `make check` with replay_main.c, which runs this over
 * tests/fuzz/corpus/amqp091_convert without clang. */
#include "amqp091_convert.h"
#include "amqp091_frame.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

#define FUZZ_SEPARATOR "\xff\xfe"
#define FUZZ_MAX_HEADERS 32
#define FUZZ_NOW_MS 1765000000000ULL
#define FUZZ_FRAME_MAX 131072 /* amqp091.frame_max's default */

/* The names amqp091_properties_from_record_headers reads, and a few others. */
static const char *const header_names[32] = {
    AMQP091_HEADER_TABLE,
    AMQP091_HEADER_EXPIRATION,
    AMQP091_HEADER_DELIVERY_MODE,
    AMQP091_HEADER_NO_MESSAGE_ID,
    "content-type",
    "content-encoding",
    "persistent",
    "priority",
    "correlation-id",
    "reply-to",
    "expires",
    "message-id",
    "timestamp",
    "type",
    "user-id",
    "app-id",
    "cluster-id",
    "kbridge-routing-key",
    "x-delivery-count",
    "tenant",
    "n",
    "d",
    "list",
    "",
    "kbridge-reply-to",
    "kafka-key",
    "JMSXGroupID",
    "destination",
    "x-death",
    "subject",
    "kbridge-dlq-reason",
    "app",
};

struct fuzz_headers {
    struct amqp091_header_in in[FUZZ_MAX_HEADERS];
    char *names[FUZZ_MAX_HEADERS];
    void *values[FUZZ_MAX_HEADERS];
    size_t count;
};

static void fuzz_headers_free(struct fuzz_headers *headers)
{
    for (size_t i = 0; i < headers->count; i++) {
        free(headers->names[i]);
        free(headers->values[i]);
    }
    headers->count = 0;
}

/* One header from a field (see the top); false when it has no name. */
static bool fuzz_header_add(struct fuzz_headers *headers, const uint8_t *field, size_t len)
{
    if (len == 0 || headers->count == FUZZ_MAX_HEADERS)
        return false;
    const uint8_t *value;
    size_t name_len, value_len;
    const char *name;
    if (field[0] < 0x80) {
        name = header_names[field[0] % 32];
        name_len = strlen(name);
        value = field + 1;
        value_len = len - 1;
    } else {
        const uint8_t *equals = memchr(field + 1, '=', len - 1);
        if (!equals)
            return false;
        name = (const char *)field + 1;
        name_len = (size_t)(equals - field - 1);
        value = equals + 1;
        value_len = len - (size_t)(value - field);
    }
    size_t i = headers->count;
    headers->names[i] = malloc(name_len ? name_len : 1);
    headers->values[i] = malloc(value_len ? value_len : 1);
    FUZZ_CHECK(headers->names[i] && headers->values[i], "out of memory");
    memcpy(headers->names[i], name, name_len);
    memcpy(headers->values[i], value, value_len);
    headers->in[i] =
        (struct amqp091_header_in){headers->names[i], name_len, headers->values[i], value_len};
    headers->count++;
    return true;
}

/* Encode `properties` as the adapter would, decode the frame back; the
 * decoded properties (in pool) in *out. */
static void fuzz_encode_decode(amqp_basic_properties_t *properties, uint8_t *frame_buffer,
                               amqp_pool_t *pool, amqp_basic_properties_t **out)
{
    int n = amqp091_content_header_encode(1, AMQP_BASIC_CLASS, 5, properties, frame_buffer,
                                          FUZZ_FRAME_MAX);
    FUZZ_CHECK(n > 0, "the properties do not encode as a content header");
    struct amqp091_frame frame;
    size_t consumed = 0;
    FUZZ_CHECK(amqp091_frame_parse(frame_buffer, (size_t)n, FUZZ_FRAME_MAX, &frame, &consumed,
                                   NULL) == AMQP091_PARSE_FRAME,
               "the encoded content header is not one frame");
    FUZZ_CHECK(consumed == (size_t)n && frame.type == AMQP091_FRAME_HEADER, "consumed %zu of %d",
               consumed, n);
    struct amqp091_content_header header;
    struct amqp091_error error;
    FUZZ_CHECK(amqp091_content_header_decode(&frame, pool, &header, &error) == 0, "%s", error.text);
    FUZZ_CHECK(header.class_id == AMQP_BASIC_CLASS && header.body_size == 5, "class %u size %llu",
               header.class_id, (unsigned long long)header.body_size);
    *out = header.properties;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const uint32_t delivery_counts[4] = {0, 1, 2, 9};
    uint32_t delivery_count = delivery_counts[data[0] & 3];
    struct fuzz_headers headers = {0};
    const uint8_t *p = data + 1, *end = data + size;
    while (p < end) {
        const uint8_t *next = p;
        while (next + 1 < end && memcmp(next, FUZZ_SEPARATOR, 2) != 0)
            next++;
        if (next + 1 >= end)
            next = end;
        fuzz_header_add(&headers, p, (size_t)(next - p));
        p = next == end ? end : next + 2;
    }

    /* two: decoded properties point into the frame they were decoded from,
     * and the second encoding reads them */
    static uint8_t frame_buffer[FUZZ_FRAME_MAX], second_buffer[FUZZ_FRAME_MAX];
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    amqp_basic_properties_t properties;
    FUZZ_CHECK(amqp091_properties_from_record_headers(headers.in, headers.count, delivery_count,
                                                      FUZZ_NOW_MS, &pool, &properties) == 0,
               "record headers -> properties failed");
    amqp_basic_properties_t *decoded = NULL;
    fuzz_encode_decode(&properties, frame_buffer, &pool, &decoded);

    /* the publish way, and back once more */
    struct amqp091_record_headers record = {0};
    uint16_t code = 0;
    char err[512];
    if (amqp091_record_headers_from_properties(decoded, FUZZ_NOW_MS, &record, &code, err,
                                               sizeof(err)) != 0) {
        FUZZ_CHECK(code == 406 && err[0] != '\0', "publish refused with %u: %s", code, err);
    } else {
        struct amqp091_header_in again[FUZZ_MAX_HEADERS * 2 + 32];
        size_t count = 0;
        for (size_t i = 0; i < record.count && count < sizeof(again) / sizeof(again[0]); i++)
            again[count++] = (struct amqp091_header_in){
                record.properties[i].name, strlen(record.properties[i].name),
                record.properties[i].value, record.properties[i].value_len};
        FUZZ_CHECK(count == record.count, "%zu record headers", record.count);
        amqp_basic_properties_t back;
        FUZZ_CHECK(
            amqp091_properties_from_record_headers(again, count, 0, FUZZ_NOW_MS, &pool, &back) == 0,
            "our own record headers -> properties failed");
        amqp_basic_properties_t *decoded_back = NULL;
        fuzz_encode_decode(&back, second_buffer, &pool, &decoded_back);
        amqp091_record_headers_free(&record);
    }
    empty_amqp_pool(&pool);
    fuzz_headers_free(&headers);
    return 0;
}
