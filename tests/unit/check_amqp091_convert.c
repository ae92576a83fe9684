/* SPDX-License-Identifier: Apache-2.0 */
/* check_amqp091_convert.c -- AMQP 0-9-1 properties to record headers and
 * back (adapters/amqp091/amqp091_convert.c, docs/amqp091.md "Properties"):
 * every mapped basic property, header values of each mapped type as text,
 * expiration relative <-> expires absolute, refusals with their reply
 * codes, the way back from record headers (standard names to properties,
 * the rest to the headers table, kbridge-routing-key left out), and
 * argument tables to JSON. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "amqp091_convert.h"
#include "unit_main.h"

static amqp_pool_t pool;

static void setup(void) { init_amqp_pool(&pool, 4096); }

static void teardown(void) { empty_amqp_pool(&pool); }

/* The value of record header `name`, NUL-terminated into a static buffer;
 * NULL when absent. */
static const char *header(const struct amqp091_record_headers *h, const char *name)
{
    static char value[256];
    for (size_t i = 0; i < h->count; i++)
        if (strcmp(h->properties[i].name, name) == 0) {
            snprintf(value, sizeof(value), "%.*s", (int)h->properties[i].value_len,
                     h->properties[i].value);
            return value;
        }
    return NULL;
}

static amqp_table_entry_t entry(const char *key, amqp_field_value_t value)
{
    return (amqp_table_entry_t){amqp_cstring_bytes(key), value};
}

START_TEST(every_basic_property_becomes_its_record_header)
{
    amqp_table_entry_t entries[] = {
        entry("region", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_UTF8,
                                             .value.bytes = amqp_cstring_bytes("eu")}),
        entry("n", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I32, .value.i32 = -7}),
        entry("big", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I64, .value.i64 = 1LL << 40}),
        entry("small", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_U8, .value.u8 = 200}),
        entry("flag", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}),
        entry("off", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 0}),
        entry("ratio", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_F64, .value.f64 = 0.5}),
        entry("price",
              (amqp_field_value_t){.kind = AMQP_FIELD_KIND_DECIMAL, .value.decimal = {2, 1234}}),
        entry("cents",
              (amqp_field_value_t){.kind = AMQP_FIELD_KIND_DECIMAL, .value.decimal = {3, 5}}),
        entry("at",
              (amqp_field_value_t){.kind = AMQP_FIELD_KIND_TIMESTAMP, .value.u64 = 1700000000}),
    };
    amqp_basic_properties_t p = {
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG |
                  AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                  AMQP_BASIC_PRIORITY_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG |
                  AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_EXPIRATION_FLAG |
                  AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_TYPE_FLAG |
                  AMQP_BASIC_USER_ID_FLAG | AMQP_BASIC_APP_ID_FLAG,
        .content_type = amqp_cstring_bytes("application/json"),
        .content_encoding = amqp_cstring_bytes("gzip"),
        .headers = {sizeof(entries) / sizeof(entries[0]), entries},
        .delivery_mode = 2,
        .priority = 9,
        .correlation_id = amqp_cstring_bytes("c-1"),
        .reply_to = amqp_cstring_bytes("replies"),
        .expiration = amqp_cstring_bytes("60000"),
        .message_id = amqp_cstring_bytes("m-1"),
        .timestamp = 1700000000,
        .type = amqp_cstring_bytes("order.created"),
        .user_id = amqp_cstring_bytes("alice"),
        .app_id = amqp_cstring_bytes("shop"),
    };
    struct amqp091_record_headers h;
    uint16_t code = 0;
    char err[256] = "";
    ck_assert_int_eq(
        amqp091_record_headers_from_properties(&p, 1000000, &h, &code, err, sizeof(err)), 0);
    /* 12 properties + the expiration as sent + the typed table + 10 entries */
    ck_assert_uint_eq(h.count, 12 + 2 + 10);
    ck_assert_str_eq(header(&h, "kbridge-amqp091-expiration"), "60000");
    ck_assert_ptr_nonnull(header(&h, "kbridge-amqp091-headers"));
    ck_assert_str_eq(header(&h, "content-type"), "application/json");
    ck_assert_str_eq(header(&h, "content-encoding"), "gzip");
    ck_assert_str_eq(header(&h, "persistent"), "true");
    ck_assert_str_eq(header(&h, "priority"), "9");
    ck_assert_str_eq(header(&h, "correlation-id"), "c-1");
    ck_assert_str_eq(header(&h, "reply-to"), "replies");
    ck_assert_str_eq(header(&h, "expires"), "1060000"); /* now + 60 s, absolute */
    ck_assert_str_eq(header(&h, "message-id"), "m-1");
    ck_assert_str_eq(header(&h, "timestamp"), "1700000000000"); /* seconds -> ms */
    ck_assert_str_eq(header(&h, "type"), "order.created");
    ck_assert_str_eq(header(&h, "user-id"), "alice");
    ck_assert_str_eq(header(&h, "app-id"), "shop");
    ck_assert_str_eq(header(&h, "region"), "eu");
    ck_assert_str_eq(header(&h, "n"), "-7");
    ck_assert_str_eq(header(&h, "big"), "1099511627776");
    ck_assert_str_eq(header(&h, "small"), "200");
    ck_assert_str_eq(header(&h, "flag"), "true");
    ck_assert_str_eq(header(&h, "off"), "false");
    ck_assert_str_eq(header(&h, "ratio"), "0.5");
    ck_assert_str_eq(header(&h, "price"), "12.34");
    ck_assert_str_eq(header(&h, "cents"), "0.005");
    ck_assert_str_eq(header(&h, "at"), "1700000000");
    amqp091_record_headers_free(&h);

    /* transient: no persistent header, the mode kept for 0-9-1 only */
    amqp_basic_properties_t transient = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
                                         .delivery_mode = 1};
    ck_assert_int_eq(
        amqp091_record_headers_from_properties(&transient, 1, &h, &code, err, sizeof(err)), 0);
    ck_assert_uint_eq(h.count, 2);
    ck_assert_str_eq(header(&h, "kbridge-amqp091-delivery-mode"), "1");
    ck_assert_str_eq(header(&h, "kbridge-amqp091-no-message-id"), "true");
    amqp091_record_headers_free(&h);
    /* nothing set: only that; long strings only: no typed table */
    amqp_basic_properties_t none = {0};
    ck_assert_int_eq(amqp091_record_headers_from_properties(&none, 1, &h, &code, err, sizeof(err)),
                     0);
    ck_assert_uint_eq(h.count, 1); /* only: no message_id was given */
    amqp091_record_headers_free(&h);
    amqp_basic_properties_t strings = {._flags = AMQP_BASIC_HEADERS_FLAG, .headers = {1, entries}};
    ck_assert_int_eq(
        amqp091_record_headers_from_properties(&strings, 1, &h, &code, err, sizeof(err)), 0);
    ck_assert_uint_eq(h.count, 2);
    ck_assert_str_eq(header(&h, "region"), "eu");
    amqp091_record_headers_free(&h);
}
END_TEST

START_TEST(bad_expiration_is_refused)
{
    amqp_basic_properties_t p = {._flags = AMQP_BASIC_EXPIRATION_FLAG,
                                 .expiration = amqp_cstring_bytes("-5")};
    struct amqp091_record_headers h;
    uint16_t code = 0;
    char err[256] = "";
    ck_assert_int_eq(amqp091_record_headers_from_properties(&p, 1, &h, &code, err, sizeof(err)),
                     -1);
    ck_assert_uint_eq(code, 406);
    ck_assert_str_eq(err, "PRECONDITION_FAILED - invalid expiration '-5'");
}
END_TEST

/* A headers table whose encoding reaches the end of the first 4096-byte
 * buffer exactly at a value's type octet: librabbitmq answers BAD_AMQP_DATA
 * there, not TABLE_TOO_BIG, and the publish was refused as out of memory
 * (541; found by fuzz_amqp091_convert). Table length 4, then "a" (key length,
 * key, 'S', length, 4083 bytes: 4090), then "b"'s key length and key: 4096. */
START_TEST(a_table_that_fills_the_first_buffer_at_a_type_octet_is_kept)
{
    static char big[4084];
    memset(big, 'x', sizeof(big) - 1);
    amqp_table_entry_t entries[] = {
        entry("a", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_UTF8,
                                        .value.bytes = amqp_cstring_bytes(big)}),
        entry("b", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I32, .value.i32 = 7}),
    };
    amqp_basic_properties_t p = {._flags = AMQP_BASIC_HEADERS_FLAG, .headers = {2, entries}};
    struct amqp091_record_headers h;
    uint16_t code = 0;
    char err[256] = "";
    ck_assert_msg(amqp091_record_headers_from_properties(&p, 1, &h, &code, err, sizeof(err)) == 0,
                  "%u %s", code, err);
    ck_assert_uint_eq(h.typed_len, 4 + 4090 + 2 + 1 + 4);
    ck_assert_str_eq(header(&h, "b"), "7");
    amqp091_record_headers_free(&h);
}
END_TEST

/* Encode a table (0-9-1's encoding) to compare two tables byte for byte. */
static size_t encoded(amqp_table_t *table, uint8_t *out, size_t size)
{
    size_t offset = 0;
    ck_assert_int_eq(amqp_encode_table((amqp_bytes_t){size, out}, table, &offset), 0);
    return offset;
}

/* Every field type of the headers table: natural text for other protocols
 * (nested tables and arrays as JSON, void empty), and the same table, types
 * and order, back for 0-9-1 from kbridge-amqp091-headers. */
START_TEST(every_header_type_round_trips_exactly)
{
    amqp_field_value_t inner_array[] = {
        {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 1},
        {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("two")},
        {.kind = AMQP_FIELD_KIND_VOID},
    };
    amqp_table_entry_t inner_table[] = {
        entry("k", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}),
        entry("d", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_DECIMAL, .value.decimal = {1, 15}}),
    };
    amqp_table_entry_t entries[] = {
        entry("s", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_UTF8,
                                        .value.bytes = amqp_cstring_bytes("text")}),
        entry("bytes", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_BYTES,
                                            .value.bytes = {3, (void *)"a\0b"}}),
        entry("i8", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I8, .value.i8 = -8}),
        entry("u8", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_U8, .value.u8 = 8}),
        entry("i16", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I16, .value.i16 = -16}),
        entry("u16", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_U16, .value.u16 = 16}),
        entry("i32", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I32, .value.i32 = -32}),
        entry("u32", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_U32, .value.u32 = 32}),
        entry("i64", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I64, .value.i64 = -64}),
        entry("u64", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_U64, .value.u64 = 64}),
        entry("bool", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 0}),
        entry("f32", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_F32, .value.f32 = 1.5f}),
        entry("f64", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_F64, .value.f64 = 0.1}),
        entry("dec",
              (amqp_field_value_t){.kind = AMQP_FIELD_KIND_DECIMAL, .value.decimal = {2, 1234}}),
        entry("ts",
              (amqp_field_value_t){.kind = AMQP_FIELD_KIND_TIMESTAMP, .value.u64 = 1700000000}),
        entry("void", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_VOID}),
        entry("table",
              (amqp_field_value_t){.kind = AMQP_FIELD_KIND_TABLE, .value.table = {2, inner_table}}),
        entry("array",
              (amqp_field_value_t){.kind = AMQP_FIELD_KIND_ARRAY, .value.array = {3, inner_array}}),
    };
    enum { N = sizeof(entries) / sizeof(entries[0]) };
    amqp_basic_properties_t p = {._flags = AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_EXPIRATION_FLAG,
                                 .headers = {N, entries},
                                 .expiration = amqp_cstring_bytes("60000")};
    struct amqp091_record_headers h;
    uint16_t code = 0;
    char err[256] = "";
    ck_assert_int_eq(amqp091_record_headers_from_properties(&p, 1000, &h, &code, err, sizeof(err)),
                     0);
    /* what STOMP, AMQP 1.0 and Kafka readers see */
    ck_assert_str_eq(header(&h, "s"), "text");
    ck_assert_str_eq(header(&h, "i8"), "-8");
    ck_assert_str_eq(header(&h, "u64"), "64");
    ck_assert_str_eq(header(&h, "bool"), "false");
    ck_assert_str_eq(header(&h, "f32"), "1.5");
    ck_assert_str_eq(header(&h, "f64"), "0.10000000000000001");
    ck_assert_str_eq(header(&h, "dec"), "12.34");
    ck_assert_str_eq(header(&h, "ts"), "1700000000");
    ck_assert_str_eq(header(&h, "void"), "");
    ck_assert_str_eq(header(&h, "table"), "{\"k\":true,\"d\":\"1.5\"}");
    ck_assert_str_eq(header(&h, "array"), "[1,\"two\",null]");

    /* delivered back to 0-9-1: the record's headers as a reader gets them */
    struct amqp091_header_in in_headers[64];
    for (size_t i = 0; i < h.count; i++)
        in_headers[i] =
            (struct amqp091_header_in){h.properties[i].name, strlen(h.properties[i].name),
                                       h.properties[i].value, h.properties[i].value_len};
    in_headers[h.count] = (struct amqp091_header_in){"message-id", 10, "added-by-the-core", 17};
    amqp_basic_properties_t back;
    ck_assert_int_eq(
        amqp091_properties_from_record_headers(in_headers, h.count + 1, 1, 5000, &pool, &back), 0);
    ck_assert_int_eq(back.headers.num_entries, N);
    uint8_t a[4096], b[4096];
    size_t a_len = encoded(&p.headers, a, sizeof(a));
    size_t b_len = encoded(&back.headers, b, sizeof(b));
    ck_assert_uint_eq(a_len, b_len);
    ck_assert_int_eq(memcmp(a, b, a_len), 0);
    /* the expiration as sent, not what is left of it */
    ck_assert_uint_eq(back.expiration.len, 5);
    ck_assert_int_eq(memcmp(back.expiration.bytes, "60000", 5), 0);
    /* no message_id was published: the core's is not given back */
    ck_assert(!(back._flags & AMQP_BASIC_MESSAGE_ID_FLAG));

    /* a redelivery: x-delivery-count after the typed entries */
    ck_assert_int_eq(
        amqp091_properties_from_record_headers(in_headers, h.count, 2, 5000, &pool, &back), 0);
    ck_assert_int_eq(back.headers.num_entries, N + 1);
    ck_assert_int_eq(memcmp(back.headers.entries[N].key.bytes, "x-delivery-count", 16), 0);

    /* a typed table that does not decode is ignored: the text headers stand */
    for (size_t i = 0; i < h.count; i++)
        if (strcmp(in_headers[i].name, "kbridge-amqp091-headers") == 0)
            in_headers[i].value_len = 3;
    ck_assert_int_eq(
        amqp091_properties_from_record_headers(in_headers, h.count, 1, 5000, &pool, &back), 0);
    ck_assert_int_eq(back.headers.num_entries, N);
    ck_assert_uint_eq(back.headers.entries[2].value.kind, AMQP_FIELD_KIND_UTF8);
    amqp091_record_headers_free(&h);
}
END_TEST

static struct amqp091_header_in in(const char *name, const char *value)
{
    return (struct amqp091_header_in){name, strlen(name), value, strlen(value)};
}

START_TEST(record_headers_go_back_to_properties_and_the_headers_table)
{
    struct amqp091_header_in headers[] = {
        in("content-type", "text/plain"),
        in("persistent", "true"),
        in("priority", "4"),
        in("correlation-id", "c-9"),
        in("reply-to", "/queue/back"),
        in("expires", "5000"),
        in("message-id", "m-9"),
        in("timestamp", "1700000000123"),
        in("type", "t"),
        in("user-id", "bob"),
        in("app-id", "a"),
        in("kbridge-routing-key", "rk"),
        in("colour", "blue"),
        in("content-type", "ignored/second"), /* the first of a name wins */
    };
    amqp_basic_properties_t p;
    ck_assert_int_eq(amqp091_properties_from_record_headers(
                         headers, sizeof(headers) / sizeof(headers[0]), 1, 2000, &pool, &p),
                     0);
    ck_assert(p._flags & AMQP_BASIC_CONTENT_TYPE_FLAG);
    ck_assert_int_eq(memcmp(p.content_type.bytes, "text/plain", 10), 0);
    ck_assert_uint_eq(p.content_type.len, 10);
    ck_assert_uint_eq(p.delivery_mode, 2);
    ck_assert_uint_eq(p.priority, 4);
    ck_assert_int_eq(memcmp(p.correlation_id.bytes, "c-9", 3), 0);
    ck_assert_int_eq(memcmp(p.reply_to.bytes, "/queue/back", 11), 0);
    ck_assert(p._flags & AMQP_BASIC_EXPIRATION_FLAG);
    ck_assert_uint_eq(p.expiration.len, 4);
    ck_assert_int_eq(memcmp(p.expiration.bytes, "3000", 4), 0); /* what is left of it */
    ck_assert_int_eq(memcmp(p.message_id.bytes, "m-9", 3), 0);
    ck_assert_uint_eq(p.timestamp, 1700000000);
    ck_assert_int_eq(memcmp(p.type.bytes, "t", 1), 0);
    ck_assert_int_eq(memcmp(p.user_id.bytes, "bob", 3), 0);
    ck_assert_int_eq(memcmp(p.app_id.bytes, "a", 1), 0);
    ck_assert(p._flags & AMQP_BASIC_HEADERS_FLAG);
    ck_assert_int_eq(p.headers.num_entries, 1); /* colour; not the routing key */
    ck_assert_uint_eq(p.headers.entries[0].key.len, 6);
    ck_assert_int_eq(memcmp(p.headers.entries[0].key.bytes, "colour", 6), 0);
    ck_assert_uint_eq(p.headers.entries[0].value.kind, AMQP_FIELD_KIND_UTF8);
    ck_assert_int_eq(memcmp(p.headers.entries[0].value.value.bytes.bytes, "blue", 4), 0);

    /* not numbers: headers, not properties; expires 0 is "never" */
    struct amqp091_header_in odd[] = {in("priority", "high"), in("expires", "0")};
    ck_assert_int_eq(amqp091_properties_from_record_headers(odd, 2, 1, 2000, &pool, &p), 0);
    ck_assert(!(p._flags & AMQP_BASIC_PRIORITY_FLAG));
    ck_assert(!(p._flags & AMQP_BASIC_EXPIRATION_FLAG));
    ck_assert_int_eq(p.headers.num_entries, 1);
    ck_assert_int_eq(memcmp(p.headers.entries[0].key.bytes, "priority", 8), 0);

    /* a redelivery: x-delivery-count counts the deliveries before it */
    ck_assert_int_eq(amqp091_properties_from_record_headers(NULL, 0, 3, 2000, &pool, &p), 0);
    ck_assert(p._flags & AMQP_BASIC_HEADERS_FLAG);
    ck_assert_int_eq(p.headers.num_entries, 1);
    ck_assert_int_eq(memcmp(p.headers.entries[0].key.bytes, "x-delivery-count", 16), 0);
    ck_assert_uint_eq(p.headers.entries[0].value.kind, AMQP_FIELD_KIND_I64);
    ck_assert_int_eq(p.headers.entries[0].value.value.i64, 2);
}
END_TEST

START_TEST(argument_tables_become_json)
{
    amqp_field_value_t items[] = {
        {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("a")},
        {.kind = AMQP_FIELD_KIND_I16, .value.i16 = 3},
    };
    amqp_table_entry_t inner[] = {
        entry("x", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}),
    };
    amqp_table_entry_t entries[] = {
        entry("x-message-ttl",
              (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I32, .value.i32 = 60000}),
        entry("x-dead-letter-exchange",
              (amqp_field_value_t){.kind = AMQP_FIELD_KIND_UTF8,
                                   .value.bytes = amqp_cstring_bytes("dlx")}),
        entry("list",
              (amqp_field_value_t){.kind = AMQP_FIELD_KIND_ARRAY, .value.array = {2, items}}),
        entry("nested",
              (amqp_field_value_t){.kind = AMQP_FIELD_KIND_TABLE, .value.table = {1, inner}}),
    };
    amqp_table_t table = {4, entries};
    json_t *json = NULL;
    char err[128] = "";
    ck_assert_int_eq(amqp091_table_to_json(&table, &json, err, sizeof(err)), 0);
    char *text = json_dumps(json, JSON_SORT_KEYS | JSON_COMPACT);
    ck_assert_str_eq(text, "{\"list\":[\"a\",3],\"nested\":{\"x\":true},"
                           "\"x-dead-letter-exchange\":\"dlx\",\"x-message-ttl\":60000}");
    free(text);
    json_decref(json);

    amqp_table_t empty = {0, NULL};
    ck_assert_int_eq(amqp091_table_to_json(&empty, &json, err, sizeof(err)), 0);
    ck_assert_ptr_null(json);

    amqp_table_entry_t bad[] = {
        entry("d", (amqp_field_value_t){.kind = AMQP_FIELD_KIND_DECIMAL, .value.decimal = {1, 1}}),
    };
    amqp_table_t refused = {1, bad};
    ck_assert_int_eq(amqp091_table_to_json(&refused, &json, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "an argument value of type 'D' is not supported");
}
END_TEST

static Suite *amqp091_convert_suite(void)
{
    Suite *suite = suite_create("amqp091_convert");
    TCase *convert = tcase_create("convert");
    tcase_add_checked_fixture(convert, setup, teardown);
    tcase_add_test(convert, every_basic_property_becomes_its_record_header);
    tcase_add_test(convert, bad_expiration_is_refused);
    tcase_add_test(convert, a_table_that_fills_the_first_buffer_at_a_type_octet_is_kept);
    tcase_add_test(convert, every_header_type_round_trips_exactly);
    tcase_add_test(convert, record_headers_go_back_to_properties_and_the_headers_table);
    tcase_add_test(convert, argument_tables_become_json);
    suite_add_tcase(suite, convert);
    return suite;
}

CHECK_MAIN(amqp091_convert_suite)
