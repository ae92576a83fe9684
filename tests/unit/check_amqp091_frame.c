/* SPDX-License-Identifier: Apache-2.0 */
/* check_amqp091_frame.c -- AMQP 0-9-1's frame layer and codec
 * (adapters/amqp091/amqp091_frame.c): the protocol header against 0-9-1,
 * 1.0 and STOMP openings, frames parsed whole, byte by byte and back to
 * back, every framing error with its reply code (and an oversized frame
 * refused from its header alone), and methods and content headers encoded
 * and decoded through librabbitmq's codec, field tables included. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "amqp091_frame.h"
#include "unit_main.h"

static amqp_pool_t pool;

static void setup(void) { init_amqp_pool(&pool, 4096); }

static void teardown(void) { empty_amqp_pool(&pool); }

START_TEST(the_protocol_header_is_told_from_other_protocols)
{
    ck_assert_int_eq(amqp091_header_check((const uint8_t *)"AMQP\0\0\x09\x01", 8),
                     AMQP091_HEADER_OK);
    ck_assert_int_eq(amqp091_header_check((const uint8_t *)"AMQP\0\0\x09\x01", 12),
                     AMQP091_HEADER_OK);
    ck_assert_int_eq(amqp091_header_check((const uint8_t *)"AMQ", 3), AMQP091_HEADER_NEED_MORE);
    ck_assert_int_eq(amqp091_header_check((const uint8_t *)"AMQP\0\0", 6),
                     AMQP091_HEADER_NEED_MORE);
    ck_assert_int_eq(amqp091_header_check((const uint8_t *)"AMQP\0\1\0\0", 8),
                     AMQP091_HEADER_MISMATCH); /* AMQP 1.0 */
    ck_assert_int_eq(amqp091_header_check((const uint8_t *)"AMQP\3\1\0\0", 8),
                     AMQP091_HEADER_MISMATCH); /* AMQP 1.0 SASL */
    ck_assert_int_eq(amqp091_header_check((const uint8_t *)"AMQP\0\0\x09\x00", 8),
                     AMQP091_HEADER_MISMATCH); /* 0-9-0 */
    ck_assert_int_eq(amqp091_header_check((const uint8_t *)"CONNECT\n", 8),
                     AMQP091_HEADER_MISMATCH);
}
END_TEST

static const uint8_t heartbeat[] = {8, 0, 0, 0, 0, 0, 0, 0xCE};

START_TEST(frames_parse_whole_byte_by_byte_and_back_to_back)
{
    struct amqp091_frame frame;
    struct amqp091_error error;
    size_t consumed;
    ck_assert_int_eq(
        amqp091_frame_parse(heartbeat, sizeof(heartbeat), 131072, &frame, &consumed, &error),
        AMQP091_PARSE_FRAME);
    ck_assert_uint_eq(frame.type, AMQP091_FRAME_HEARTBEAT);
    ck_assert_uint_eq(frame.channel, 0);
    ck_assert_uint_eq(frame.size, 0);
    ck_assert_uint_eq(consumed, 8);

    /* a body frame on channel 3, then a heartbeat, in one buffer */
    uint8_t two[32];
    amqp091_frame_header_write(two, AMQP091_FRAME_BODY, 3, 5);
    memcpy(two + 7, "hello", 5);
    two[12] = AMQP091_FRAME_END;
    memcpy(two + 13, heartbeat, sizeof(heartbeat));
    size_t total = 13 + sizeof(heartbeat);
    /* byte by byte: nothing until the frame-end octet is there */
    for (size_t len = 0; len < 13; len++)
        ck_assert_int_eq(amqp091_frame_parse(two, len, 131072, &frame, &consumed, &error),
                         AMQP091_PARSE_NEED_MORE);
    ck_assert_int_eq(amqp091_frame_parse(two, total, 131072, &frame, &consumed, &error),
                     AMQP091_PARSE_FRAME);
    ck_assert_uint_eq(frame.type, AMQP091_FRAME_BODY);
    ck_assert_uint_eq(frame.channel, 3);
    ck_assert_uint_eq(frame.size, 5);
    ck_assert(memcmp(frame.payload, "hello", 5) == 0);
    ck_assert_uint_eq(consumed, 13);
    ck_assert_int_eq(
        amqp091_frame_parse(two + consumed, total - consumed, 131072, &frame, &consumed, &error),
        AMQP091_PARSE_FRAME);
    ck_assert_uint_eq(frame.type, AMQP091_FRAME_HEARTBEAT);
}
END_TEST

static struct amqp091_error parse_error(const uint8_t *data, size_t len, uint32_t frame_max)
{
    struct amqp091_frame frame;
    struct amqp091_error error = {0};
    size_t consumed = 99;
    ck_assert_int_eq(amqp091_frame_parse(data, len, frame_max, &frame, &consumed, &error),
                     AMQP091_PARSE_ERROR);
    ck_assert_uint_eq(consumed, 0);
    return error;
}

START_TEST(framing_errors_carry_501)
{
    uint8_t bad_end[] = {3, 0, 1, 0, 0, 0, 1, 'x', 0xCD};
    struct amqp091_error e = parse_error(bad_end, sizeof(bad_end), 131072);
    ck_assert_uint_eq(e.code, 501);
    ck_assert_str_eq(e.text, "FRAME_ERROR - frame end octet 0xcd, expected 0xce");

    uint8_t unknown_type[] = {9, 0, 0, 0, 0, 0, 0, 0xCE};
    e = parse_error(unknown_type, sizeof(unknown_type), 131072);
    ck_assert_uint_eq(e.code, 501);
    ck_assert_str_eq(e.text, "FRAME_ERROR - unknown frame type 9");

    uint8_t heartbeat_on_channel[] = {8, 0, 1, 0, 0, 0, 0, 0xCE};
    e = parse_error(heartbeat_on_channel, sizeof(heartbeat_on_channel), 131072);
    ck_assert_uint_eq(e.code, 501);

    /* larger than frame_max: refused from the 7-byte header, before any payload */
    uint8_t too_large[7];
    amqp091_frame_header_write(too_large, AMQP091_FRAME_BODY, 1, 131072 - 8 + 1);
    e = parse_error(too_large, sizeof(too_large), 131072);
    ck_assert_uint_eq(e.code, 501);
    ck_assert_str_eq(e.text, "FRAME_ERROR - frame size 131073 larger than negotiated maximum "
                             "131072");
    /* exactly frame_max is fine (it only waits for the bytes) */
    amqp091_frame_header_write(too_large, AMQP091_FRAME_BODY, 1, 131072 - 8);
    struct amqp091_frame frame;
    size_t consumed;
    ck_assert_int_eq(amqp091_frame_parse(too_large, 7, 131072, &frame, &consumed, &e),
                     AMQP091_PARSE_NEED_MORE);
    /* a frame_max below the spec's minimum counts as 4096 (before Tune-Ok) */
    amqp091_frame_header_write(too_large, AMQP091_FRAME_BODY, 1, 4096 - 8);
    ck_assert_int_eq(amqp091_frame_parse(too_large, 7, 0, &frame, &consumed, &e),
                     AMQP091_PARSE_NEED_MORE);
    amqp091_frame_header_write(too_large, AMQP091_FRAME_BODY, 1, 4096 - 7);
    e = parse_error(too_large, sizeof(too_large), 0);
    ck_assert_uint_eq(e.code, 501);
    /* the largest size field cannot wrap the arithmetic */
    uint8_t huge[] = {3, 0, 1, 0xff, 0xff, 0xff, 0xff};
    e = parse_error(huge, sizeof(huge), UINT32_MAX);
    ck_assert_uint_eq(e.code, 501);
}
END_TEST

/* Encode `id`/`decoded` into a frame, parse it back and decode it. */
static void *round_trip(amqp_method_number_t id, void *decoded, uint16_t channel)
{
    uint8_t buffer[8192];
    int len = amqp091_method_encode(channel, id, decoded, buffer, sizeof(buffer));
    ck_assert_int_gt(len, 0);
    struct amqp091_frame frame;
    struct amqp091_error error;
    size_t consumed;
    ck_assert_int_eq(amqp091_frame_parse(buffer, (size_t)len, 131072, &frame, &consumed, &error),
                     AMQP091_PARSE_FRAME);
    ck_assert_uint_eq(consumed, (size_t)len);
    ck_assert_uint_eq(frame.type, AMQP091_FRAME_METHOD);
    ck_assert_uint_eq(frame.channel, channel);
    struct amqp091_method method;
    ck_assert_msg(amqp091_method_decode(&frame, &pool, &method, &error) == 0, "%s", error.text);
    ck_assert_uint_eq(method.id, id);
    return method.decoded;
}

START_TEST(methods_round_trip_through_the_codec)
{
    amqp_basic_publish_t publish = {.exchange = amqp_cstring_bytes("orders"),
                                    .routing_key = amqp_cstring_bytes("order.created.eu"),
                                    .mandatory = 1};
    amqp_basic_publish_t *got = round_trip(AMQP_BASIC_PUBLISH_METHOD, &publish, 7);
    ck_assert_uint_eq(got->exchange.len, 6);
    ck_assert(memcmp(got->exchange.bytes, "orders", 6) == 0);
    ck_assert_uint_eq(got->routing_key.len, 16);
    ck_assert(got->mandatory && !got->immediate);

    /* queue.declare with an arguments table of several field types */
    amqp_table_entry_t entries[] = {
        {.key = amqp_cstring_bytes("x-message-ttl"),
         .value = {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 60000}},
        {.key = amqp_cstring_bytes("x-dead-letter-exchange"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("dlx")}},
        {.key = amqp_cstring_bytes("x-single-active-consumer"),
         .value = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
        {.key = amqp_cstring_bytes("x-max-length-bytes"),
         .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = 1LL << 40}},
    };
    amqp_queue_declare_t declare = {
        .queue = amqp_cstring_bytes("jobs"), .durable = 1, .arguments = {4, entries}};
    amqp_queue_declare_t *decl = round_trip(AMQP_QUEUE_DECLARE_METHOD, &declare, 1);
    ck_assert(decl->durable && !decl->exclusive && !decl->passive);
    ck_assert_int_eq(decl->arguments.num_entries, 4);
    ck_assert_int_eq(decl->arguments.entries[0].value.kind, AMQP_FIELD_KIND_I32);
    ck_assert_int_eq(decl->arguments.entries[0].value.value.i32, 60000);
    ck_assert_int_eq(decl->arguments.entries[3].value.value.i64, 1LL << 40);
    ck_assert_int_eq(decl->arguments.entries[2].value.value.boolean, 1);

    amqp_basic_ack_t ack = {.delivery_tag = UINT64_MAX, .multiple = 1};
    amqp_basic_ack_t *acked = round_trip(AMQP_BASIC_ACK_METHOD, &ack, 65535);
    ck_assert(acked->delivery_tag == UINT64_MAX && acked->multiple);
}
END_TEST

START_TEST(method_decode_errors_carry_502_and_540)
{
    uint8_t buffer[512];
    amqp_basic_publish_t publish = {.exchange = amqp_cstring_bytes("orders"),
                                    .routing_key = amqp_cstring_bytes("key")};
    int len = amqp091_method_encode(1, AMQP_BASIC_PUBLISH_METHOD, &publish, buffer, sizeof(buffer));
    ck_assert_int_gt(len, 0);
    struct amqp091_frame frame = {
        .type = AMQP091_FRAME_METHOD, .channel = 1, .payload = buffer + 7};
    struct amqp091_method method;
    struct amqp091_error error;
    /* every truncation of the arguments is a syntax error, never a crash */
    for (uint32_t size = 4; size < (uint32_t)len - 8; size++) {
        frame.size = size;
        ck_assert_int_eq(amqp091_method_decode(&frame, &pool, &method, &error), -1);
        ck_assert_uint_eq(error.code, 502);
    }
    frame.size = 4 - 1;
    ck_assert_int_eq(amqp091_method_decode(&frame, &pool, &method, &error), -1);
    ck_assert_uint_eq(error.code, 502);
    ck_assert_str_eq(error.text, "SYNTAX_ERROR - method frame shorter than its ids");
    uint8_t unknown[] = {0, 99, 0, 10};
    struct amqp091_frame unknown_frame = {
        .type = AMQP091_FRAME_METHOD, .size = 4, .payload = unknown};
    ck_assert_int_eq(amqp091_method_decode(&unknown_frame, &pool, &method, &error), -1);
    ck_assert_uint_eq(error.code, 540);
    ck_assert_str_eq(error.text, "NOT_IMPLEMENTED - unknown method class 99 method 10");
    /* too small an output buffer is refused, not overrun */
    ck_assert_int_eq(amqp091_method_encode(1, AMQP_BASIC_PUBLISH_METHOD, &publish, buffer, 20), -1);
}
END_TEST

START_TEST(content_headers_round_trip_with_properties_and_headers)
{
    amqp_table_entry_t headers[] = {
        {.key = amqp_cstring_bytes("tenant"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("acme")}},
        {.key = amqp_cstring_bytes("attempt"),
         .value = {.kind = AMQP_FIELD_KIND_I8, .value.i8 = -3}},
        {.key = amqp_cstring_bytes("ratio"),
         .value = {.kind = AMQP_FIELD_KIND_F64, .value.f64 = 0.25}},
        {.key = amqp_cstring_bytes("none"), .value = {.kind = AMQP_FIELD_KIND_VOID}},
    };
    amqp_basic_properties_t properties = {
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_HEADERS_FLAG |
                  AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_EXPIRATION_FLAG |
                  AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG,
        .content_type = amqp_cstring_bytes("application/json"),
        .headers = {4, headers},
        .delivery_mode = 2,
        .expiration = amqp_cstring_bytes("60000"),
        .timestamp = 1765000000,
        .correlation_id = amqp_cstring_bytes("req-17"),
    };
    uint8_t buffer[1024];
    int len = amqp091_content_header_encode(5, AMQP_BASIC_CLASS, 1234, &properties, buffer,
                                            sizeof(buffer));
    ck_assert_int_gt(len, 0);
    struct amqp091_frame frame;
    struct amqp091_error error;
    size_t consumed;
    ck_assert_int_eq(amqp091_frame_parse(buffer, (size_t)len, 131072, &frame, &consumed, &error),
                     AMQP091_PARSE_FRAME);
    ck_assert_uint_eq(frame.type, AMQP091_FRAME_HEADER);
    struct amqp091_content_header header;
    ck_assert_msg(amqp091_content_header_decode(&frame, &pool, &header, &error) == 0, "%s",
                  error.text);
    ck_assert_uint_eq(header.class_id, AMQP_BASIC_CLASS);
    ck_assert_uint_eq(header.body_size, 1234);
    amqp_basic_properties_t *got = header.properties;
    ck_assert_uint_eq(got->_flags, properties._flags);
    ck_assert_uint_eq(got->delivery_mode, 2);
    ck_assert_uint_eq(got->timestamp, 1765000000);
    ck_assert_uint_eq(got->expiration.len, 5);
    ck_assert_int_eq(got->headers.num_entries, 4);
    ck_assert_int_eq(got->headers.entries[1].value.value.i8, -3);
    ck_assert(got->headers.entries[2].value.value.f64 == 0.25);
    ck_assert_int_eq(got->headers.entries[3].value.kind, AMQP_FIELD_KIND_VOID);

    /* truncated properties and an unknown class are syntax errors */
    frame.size = 13;
    ck_assert_int_eq(amqp091_content_header_decode(&frame, &pool, &header, &error), -1);
    ck_assert_uint_eq(error.code, 502);
    frame.size = (uint32_t)len - 8 - 3;
    ck_assert_int_eq(amqp091_content_header_decode(&frame, &pool, &header, &error), -1);
    ck_assert_uint_eq(error.code, 502);
    /* property flags naming no basic property (bit 1) or a continuation word (bit 0) */
    uint8_t continued[16] = {0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0x80, 0x01, 0, 0};
    struct amqp091_frame continued_frame = {
        .type = AMQP091_FRAME_HEADER, .size = 16, .payload = continued};
    ck_assert_int_eq(amqp091_content_header_decode(&continued_frame, &pool, &header, &error), -1);
    ck_assert_uint_eq(error.code, 502);
    ck_assert_str_eq(error.text,
                     "SYNTAX_ERROR - content header property flags 0x8001 name no property");
    uint8_t unknown_class[14] = {0, 99};
    struct amqp091_frame unknown = {
        .type = AMQP091_FRAME_HEADER, .size = 14, .payload = unknown_class};
    ck_assert_int_eq(amqp091_content_header_decode(&unknown, &pool, &header, &error), -1);
    ck_assert_str_eq(error.text, "SYNTAX_ERROR - content header of unknown class 99");
}
END_TEST

/* A table nesting `depth` tables ({"k": {"k": ... {}}}) into buf; its size. */
static size_t nested_table(uint8_t *buf, int depth)
{
    size_t at = 0;
    for (int i = 0; i < depth; i++) {
        at += 4; /* length, filled below */
        buf[at++] = 1;
        buf[at++] = 'k';
        buf[at++] = 'F';
    }
    memset(buf + at, 0, 4); /* the innermost, empty */
    size_t end = at + 4;
    for (int i = depth - 1; i >= 0; i--) {
        size_t start = (size_t)i * 7;
        uint32_t len = (uint32_t)(end - start - 4);
        buf[start] = (uint8_t)(len >> 24);
        buf[start + 1] = (uint8_t)(len >> 16);
        buf[start + 2] = (uint8_t)(len >> 8);
        buf[start + 3] = (uint8_t)len;
    }
    return end;
}

/* librabbitmq's table decoder recurses without a limit: what kbridged
 * decodes is checked first (lengths, kinds, depth). */
START_TEST(tables_nested_too_deep_or_malformed_are_refused)
{
    static uint8_t buf[7 * 200 + 16];
    size_t len = nested_table(buf, AMQP091_TABLE_MAX_DEPTH);
    ck_assert(amqp091_table_check(buf, len, AMQP091_TABLE_MAX_DEPTH));
    len = nested_table(buf, AMQP091_TABLE_MAX_DEPTH + 1);
    ck_assert(!amqp091_table_check(buf, len, AMQP091_TABLE_MAX_DEPTH));
    len = nested_table(buf, 200);
    ck_assert(!amqp091_table_check(buf, len, AMQP091_TABLE_MAX_DEPTH));
    /* every kind, in an array too */
    static const uint8_t every[] = {
        0,   0,   0,   35,                            /* table length */
        1,   'a', 't', 1,                             /* bool */
        1,   'b', 's', 0,  7,                         /* short */
        1,   'c', 'D', 2,  0, 0,   4,   210,          /* decimal */
        1,   'd', 'A', 0,  0, 0,   11,                /* array of 3 values: */
        'I', 0,   0,   0,  1, 'V', 'S', 0,   0, 0, 0, /* int, void, empty string */
    };
    ck_assert(amqp091_table_check(every, sizeof(every), AMQP091_TABLE_MAX_DEPTH));
    /* a length past the end, an unknown kind, a truncated value */
    ck_assert(!amqp091_table_check(every, sizeof(every) - 1, AMQP091_TABLE_MAX_DEPTH));
    uint8_t bad[sizeof(every)];
    memcpy(bad, every, sizeof(every));
    bad[6] = 'Z';
    ck_assert(!amqp091_table_check(bad, sizeof(bad), AMQP091_TABLE_MAX_DEPTH));
    static const uint8_t truncated[] = {0, 0, 0, 5, 1, 'x', 'l', 0, 0};
    ck_assert(!amqp091_table_check(truncated, sizeof(truncated), AMQP091_TABLE_MAX_DEPTH));
}
END_TEST
START_TEST(method_argument_tables_nested_too_deep_are_refused)
{
    /* queue.declare: reserved short, queue shortstr, bits, then the arguments table */
    static uint8_t payload[4 + 2 + 2 + 1 + 7 * 200 + 16];
    size_t at = 0;
    payload[at++] = 0, payload[at++] = 50, payload[at++] = 0, payload[at++] = 10;
    payload[at++] = 0, payload[at++] = 0;
    payload[at++] = 1, payload[at++] = 'q';
    payload[at++] = 0;
    struct amqp091_method method;
    struct amqp091_error error;
    size_t len = nested_table(payload + at, 8);
    struct amqp091_frame frame = {.type = AMQP091_FRAME_METHOD,
                                  .channel = 1,
                                  .size = (uint32_t)(at + len),
                                  .payload = payload};
    ck_assert_int_eq(amqp091_method_decode(&frame, &pool, &method, &error), 0);
    ck_assert_uint_eq(method.id, AMQP_QUEUE_DECLARE_METHOD);
    len = nested_table(payload + at, 200);
    frame.size = (uint32_t)(at + len);
    ck_assert_int_eq(amqp091_method_decode(&frame, &pool, &method, &error), -1);
    ck_assert_uint_eq(error.code, 502);
    ck_assert_str_eq(error.text,
                     "SYNTAX_ERROR - malformed arguments table of AMQP_QUEUE_DECLARE_METHOD "
                     "(or nested deeper than 64)");
    /* connection.start-ok: client-properties first */
    static uint8_t start_ok[4 + 7 * 200 + 16] = {0, 10, 0, 11};
    len = nested_table(start_ok + 4, 200);
    frame.size = (uint32_t)(4 + len);
    frame.channel = 0;
    frame.payload = start_ok;
    ck_assert_int_eq(amqp091_method_decode(&frame, &pool, &method, &error), -1);
    ck_assert_uint_eq(error.code, 502);
}
END_TEST

static Suite *amqp091_frame_suite(void)
{
    Suite *suite = suite_create("amqp091_frame");
    TCase *frames = tcase_create("frames");
    tcase_add_checked_fixture(frames, setup, teardown);
    tcase_add_test(frames, the_protocol_header_is_told_from_other_protocols);
    tcase_add_test(frames, frames_parse_whole_byte_by_byte_and_back_to_back);
    tcase_add_test(frames, framing_errors_carry_501);
    tcase_add_test(frames, methods_round_trip_through_the_codec);
    tcase_add_test(frames, method_decode_errors_carry_502_and_540);
    tcase_add_test(frames, content_headers_round_trip_with_properties_and_headers);
    tcase_add_test(frames, tables_nested_too_deep_or_malformed_are_refused);
    tcase_add_test(frames, method_argument_tables_nested_too_deep_are_refused);
    suite_add_tcase(suite, frames);
    return suite;
}

CHECK_MAIN(amqp091_frame_suite)
