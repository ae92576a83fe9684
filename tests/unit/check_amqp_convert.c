/* SPDX-License-Identifier: Apache-2.0 */
/* check_amqp_convert.c -- AMQP message <-> Kafka record conversion
 * (adapters/amqp/amqp_convert.c), both directions and full round trips
 * through proton's wire encoding, as the adapter does them. */
#include <check.h>
#include <proton/codec.h>
#include <proton/message.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp_convert.h"
#include "unit_main.h"

/* ---- helpers ------------------------------------------------------------------------ */

/* Encode and decode, as the message crosses the wire. */
static pn_message_t *wire(pn_message_t *message)
{
    size_t size = 4 * 1024 * 1024;
    char *buffer = malloc(size);
    ck_assert_ptr_nonnull(buffer);
    ck_assert_int_eq(pn_message_encode(message, buffer, &size), 0);
    pn_message_t *decoded = pn_message();
    ck_assert_int_eq(pn_message_decode(decoded, buffer, size), 0);
    free(buffer);
    pn_message_free(message);
    return decoded;
}

static const struct core_property *find(const struct core_property *headers, size_t count,
                                        const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(headers[i].name, name) == 0)
            return &headers[i];
    return NULL;
}

static void assert_header(const struct amqp_record *record, const char *name, const char *value)
{
    const struct core_property *h = find(record->properties, record->property_count, name);
    ck_assert_msg(h != NULL, "no header %s", name);
    ck_assert_msg(h->value_len == strlen(value) && memcmp(h->value, value, h->value_len) == 0,
                  "header %s is '%.*s', expected '%s'", name, (int)h->value_len, h->value, value);
}

static void assert_no_header(const struct amqp_record *record, const char *name)
{
    ck_assert_msg(find(record->properties, record->property_count, name) == NULL,
                  "unexpected header %s", name);
}

/* pn_data as text, for comparing whole sections. */
static char *inspect(pn_data_t *data)
{
    static char text[4][8192];
    static int slot;
    char *out = text[slot++ % 4];
    size_t size = sizeof(text[0]);
    pn_data_rewind(data);
    if (pn_data_format(data, out, &size) != 0)
        snprintf(out, sizeof(text[0]), "(unformattable)");
    return out;
}

/* A view of a record as the core would deliver it: its headers plus a
 * user-id the core adds, its key, delivery count. */
static struct amqp_record_view view_of(const struct amqp_record *record,
                                       struct core_property *headers, size_t capacity,
                                       uint32_t delivery_count)
{
    ck_assert_uint_lt(record->property_count, capacity);
    if (record->property_count)
        memcpy(headers, record->properties, record->property_count * sizeof(*headers));
    headers[record->property_count] = (struct core_property){"user-id", "alice", 5};
    return (struct amqp_record_view){
        .key = record->key,
        .key_len = record->key_len,
        .body = record->body,
        .body_len = record->body_len,
        .headers = headers,
        .header_count = record->property_count + 1,
        .timestamp_ms = 1700000000000,
        .delivery_count = delivery_count,
    };
}

static void put_string_key(pn_data_t *data, const char *key)
{
    pn_data_put_string(data, pn_bytes(strlen(key), key));
}

static pn_uuid_t test_uuid(void)
{
    pn_uuid_t uuid;
    for (int i = 0; i < 16; i++)
        uuid.bytes[i] = (char)(0x10 + i);
    return uuid;
}

/* A message with everything AMQP can say. */
static pn_message_t *full_message(void)
{
    pn_message_t *m = pn_message();
    pn_data_put_ulong(pn_message_id(m), 42);
    pn_data_put_uuid(pn_message_correlation_id(m), test_uuid());
    pn_message_set_subject(m, "subject-1");
    pn_message_set_reply_to(m, "replies");
    pn_message_set_content_type(m, "application/x-map");
    pn_message_set_content_encoding(m, "identity");
    pn_message_set_group_id(m, "group-a");
    pn_message_set_group_sequence(m, 3);
    pn_message_set_reply_to_group_id(m, "rgroup");
    pn_message_set_creation_time(m, 1700000000123);
    pn_message_set_expiry_time(m, 1700000999000);
    pn_message_set_priority(m, 7);
    pn_message_set_durable(m, true);
    pn_message_set_ttl(m, 60000);
    pn_data_t *p = pn_message_properties(m);
    pn_data_put_map(p);
    pn_data_enter(p);
    put_string_key(p, "count");
    pn_data_put_int(p, 7);
    put_string_key(p, "big");
    pn_data_put_long(p, 123456789012LL);
    put_string_key(p, "flag");
    pn_data_put_bool(p, true);
    put_string_key(p, "price");
    pn_data_put_double(p, 1.25);
    put_string_key(p, "name");
    pn_data_put_string(p, pn_bytes(5, "hello"));
    put_string_key(p, "id");
    pn_data_put_uuid(p, test_uuid());
    put_string_key(p, "raw");
    pn_data_put_binary(p, pn_bytes(3, "\x00\x01\x02"));
    put_string_key(p, "when");
    pn_data_put_timestamp(p, 1700000000000);
    put_string_key(p, "nothing");
    pn_data_put_null(p);
    pn_data_exit(p);
    pn_data_t *a = pn_message_annotations(m);
    pn_data_put_map(a);
    pn_data_enter(a);
    pn_data_put_symbol(a, pn_bytes(9, "x-opt-foo"));
    pn_data_put_string(a, pn_bytes(3, "bar"));
    pn_data_put_symbol(a, pn_bytes(19, "x-opt-partition-key"));
    pn_data_put_string(a, pn_bytes(4, "pk-1"));
    pn_data_exit(a);
    pn_data_t *b = pn_message_body(m);
    pn_data_put_map(b);
    pn_data_enter(b);
    put_string_key(b, "a");
    pn_data_put_int(b, 1);
    put_string_key(b, "b");
    pn_data_put_list(b);
    pn_data_enter(b);
    pn_data_put_int(b, 2);
    pn_data_put_string(b, pn_bytes(1, "x"));
    pn_data_exit(b);
    pn_data_exit(b);
    return m;
}

/* ---- AMQP -> record ---------------------------------------------------------------------- */

START_TEST(properties_become_standard_headers_as_text)
{
    pn_message_t *m = wire(full_message());
    struct amqp_record record;
    char err[256];
    ck_assert_int_eq(amqp_record_from_message(m, &record, err, sizeof(err)), 0);
    assert_header(&record, "message-id", "42");
    assert_header(&record, "kbridge-amqp-message-id-type", "ulong");
    assert_header(&record, "correlation-id", "10111213-1415-1617-1819-1a1b1c1d1e1f");
    assert_header(&record, "kbridge-amqp-correlation-id-type", "uuid");
    assert_header(&record, "subject", "subject-1");
    assert_header(&record, "reply-to", "replies");
    assert_header(&record, "content-type", "application/x-map");
    assert_header(&record, "content-encoding", "identity");
    assert_header(&record, "group-id", "group-a");
    assert_header(&record, "timestamp", "1700000000123");
    assert_header(&record, "expires", "1700000999000");
    assert_header(&record, "priority", "7");
    assert_header(&record, "persistent", "true");
    assert_header(&record, "kbridge-amqp-ttl", "60000");
    assert_header(&record, "kbridge-amqp-group-sequence", "3");
    assert_header(&record, "kbridge-amqp-reply-to-group-id", "rgroup");
    assert_no_header(&record, "user-id");
    amqp_record_release(&record);
    pn_message_free(m);
}
END_TEST

START_TEST(application_properties_are_text_with_types_kept_aside)
{
    pn_message_t *m = wire(full_message());
    struct amqp_record record;
    char err[256];
    ck_assert_int_eq(amqp_record_from_message(m, &record, err, sizeof(err)), 0);
    assert_header(&record, "count", "7");
    assert_header(&record, "big", "123456789012");
    assert_header(&record, "flag", "true");
    assert_header(&record, "price", "1.25");
    assert_header(&record, "name", "hello");
    assert_header(&record, "id", "10111213-1415-1617-1819-1a1b1c1d1e1f");
    const struct core_property *raw = find(record.properties, record.property_count, "raw");
    ck_assert_ptr_nonnull(raw);
    ck_assert_uint_eq(raw->value_len, 3);
    ck_assert_int_eq(memcmp(raw->value, "\x00\x01\x02", 3), 0);
    assert_header(&record, "when", "1700000000000");
    assert_header(&record, "nothing", "");
    ck_assert_ptr_nonnull(
        find(record.properties, record.property_count, "kbridge-amqp-application-properties"));
    ck_assert_ptr_nonnull(
        find(record.properties, record.property_count, "kbridge-amqp-message-annotations"));
    /* The partition key annotation is the key; the body is the encoded map. */
    ck_assert_uint_eq(record.key_len, 4);
    ck_assert_int_eq(memcmp(record.key, "pk-1", 4), 0);
    assert_header(&record, "kbridge-amqp-body", "value-encoded");
    amqp_record_release(&record);
    pn_message_free(m);
}
END_TEST

START_TEST(string_properties_need_no_type_header)
{
    pn_message_t *m = pn_message();
    pn_data_t *p = pn_message_properties(m);
    pn_data_put_map(p);
    pn_data_enter(p);
    put_string_key(p, "color");
    pn_data_put_string(p, pn_bytes(3, "red"));
    put_string_key(p, "kafka-key");
    pn_data_put_string(p, pn_bytes(2, "k1"));
    put_string_key(p, "kbridge-dlq-reason"); /* reserved: dropped */
    pn_data_put_string(p, pn_bytes(4, "fake"));
    put_string_key(p, "user-id"); /* standard name: dropped */
    pn_data_put_string(p, pn_bytes(4, "root"));
    pn_data_exit(p);
    pn_data_t *a = pn_message_annotations(m);
    pn_data_put_map(a);
    pn_data_enter(a);
    pn_data_put_symbol(a, pn_bytes(19, "x-opt-partition-key"));
    pn_data_put_string(a, pn_bytes(2, "pk"));
    pn_data_exit(a);
    pn_data_put_binary(pn_message_body(m), pn_bytes(5, "bytes"));
    pn_message_set_inferred(m, true); /* a data section */
    m = wire(m);
    struct amqp_record record;
    char err[256];
    ck_assert_int_eq(amqp_record_from_message(m, &record, err, sizeof(err)), 0);
    assert_header(&record, "color", "red");
    assert_header(&record, "kafka-key", "k1");
    assert_no_header(&record, "kbridge-dlq-reason");
    assert_no_header(&record, "user-id");
    assert_no_header(&record, "kbridge-amqp-application-properties");
    assert_no_header(&record, "kbridge-amqp-body"); /* a data section: plain bytes */
    ck_assert_ptr_null(record.key);                 /* kafka-key wins: the core takes it */
    ck_assert_uint_eq(record.body_len, 5);
    ck_assert_int_eq(memcmp(record.body, "bytes", 5), 0);
    amqp_record_release(&record);
    pn_message_free(m);
}
END_TEST

START_TEST(bodies_are_marked_by_section)
{
    struct {
        const char *marker; /* NULL: no marker */
        const char *bytes;
        size_t length;
    } cases[5];
    pn_message_t *messages[5];
    for (int i = 0; i < 5; i++)
        messages[i] = pn_message();
    pn_data_put_string(pn_message_body(messages[0]), pn_bytes(4, "text"));
    cases[0].marker = "value-string";
    cases[0].bytes = "text";
    cases[0].length = 4;
    pn_data_put_binary(pn_message_body(messages[1]), pn_bytes(3, "bin"));
    pn_message_set_inferred(messages[1], false);
    cases[1].marker = "value-binary";
    cases[1].bytes = "bin";
    cases[1].length = 3;
    pn_data_put_binary(pn_message_body(messages[2]), pn_bytes(4, "data"));
    pn_message_set_inferred(messages[2], true);
    cases[2].marker = NULL;
    cases[2].bytes = "data";
    cases[2].length = 4;
    pn_data_t *list = pn_message_body(messages[3]);
    pn_data_put_list(list);
    pn_data_enter(list);
    pn_data_put_int(list, 1);
    pn_data_exit(list);
    pn_message_set_inferred(messages[3], true);
    cases[3].marker = "sequence";
    cases[3].bytes = NULL;
    cases[4].marker = "none";
    cases[4].bytes = "";
    cases[4].length = 0;
    for (int i = 0; i < 5; i++) {
        pn_message_t *m = wire(messages[i]);
        struct amqp_record record;
        char err[256];
        ck_assert_int_eq(amqp_record_from_message(m, &record, err, sizeof(err)), 0);
        if (cases[i].marker)
            assert_header(&record, "kbridge-amqp-body", cases[i].marker);
        else
            assert_no_header(&record, "kbridge-amqp-body");
        if (cases[i].bytes) {
            ck_assert_uint_eq(record.body_len, cases[i].length);
            ck_assert_int_eq(memcmp(record.body, cases[i].bytes, cases[i].length), 0);
        }
        /* ... and each comes back as the same section. */
        struct core_property headers[64];
        struct amqp_record_view view = view_of(&record, headers, 64, 1);
        pn_message_t *back = pn_message();
        ck_assert_int_eq(amqp_message_from_record(&view, back, err, sizeof(err)), 0);
        back = wire(back);
        ck_assert_str_eq(inspect(pn_message_body(back)), inspect(pn_message_body(m)));
        ck_assert_int_eq(pn_message_is_inferred(back), pn_message_is_inferred(m));
        pn_message_free(back);
        amqp_record_release(&record);
        pn_message_free(m);
    }
}
END_TEST

/* A string body that is not UTF-8 (proton does not check what it decodes)
 * is kept as a binary amqp-value: that is how it can be delivered, and its
 * record is the same after another trip (found by fuzz_amqp_convert). */
START_TEST(string_body_not_utf8_is_kept_as_binary_value)
{
    pn_message_t *sent = pn_message();
    pn_data_put_string(pn_message_body(sent), pn_bytes(4, "fla\xcc"));
    pn_message_set_inferred(sent, false);
    pn_message_t *m = wire(sent);
    struct amqp_record record;
    char err[256];
    ck_assert_int_eq(amqp_record_from_message(m, &record, err, sizeof(err)), 0);
    assert_header(&record, "kbridge-amqp-body", "value-binary");
    ck_assert_uint_eq(record.body_len, 4);
    ck_assert_int_eq(memcmp(record.body, "fla\xcc", 4), 0);
    struct core_property headers[64];
    struct amqp_record_view view = view_of(&record, headers, 64, 1);
    pn_message_t *back = pn_message();
    ck_assert_int_eq(amqp_message_from_record(&view, back, err, sizeof(err)), 0);
    back = wire(back);
    pn_data_t *body = pn_message_body(back);
    pn_data_rewind(body);
    ck_assert(pn_data_next(body));
    ck_assert_int_eq(pn_data_type(body), PN_BINARY);
    ck_assert(!pn_message_is_inferred(back));
    struct amqp_record again;
    ck_assert_int_eq(amqp_record_from_message(back, &again, err, sizeof(err)), 0);
    assert_header(&again, "kbridge-amqp-body", "value-binary");
    ck_assert_uint_eq(again.body_len, 4);
    amqp_record_release(&again);
    pn_message_free(back);
    amqp_record_release(&record);
    pn_message_free(m);
}
END_TEST

START_TEST(non_string_property_keys_are_refused)
{
    pn_message_t *m = pn_message();
    pn_data_t *p = pn_message_properties(m);
    pn_data_put_map(p);
    pn_data_enter(p);
    pn_data_put_int(p, 1);
    pn_data_put_string(p, pn_bytes(1, "x"));
    pn_data_exit(p);
    struct amqp_record record;
    char err[256] = "";
    ck_assert_int_eq(amqp_record_from_message(m, &record, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "must be strings"));
    ck_assert_ptr_null(record.storage);
    amqp_record_release(&record); /* harmless after a failure */
    pn_message_free(m);
}
END_TEST

/* ---- round trips ---------------------------------------------------------------------------- */

START_TEST(amqp_to_kafka_to_amqp_is_exact)
{
    pn_message_t *original = wire(full_message());
    struct amqp_record record;
    char err[256];
    ck_assert_int_eq(amqp_record_from_message(original, &record, err, sizeof(err)), 0);
    struct core_property headers[64];
    struct amqp_record_view view = view_of(&record, headers, 64, 1);
    pn_message_t *back = pn_message();
    ck_assert_int_eq(amqp_message_from_record(&view, back, err, sizeof(err)), 0);
    back = wire(back);
    ck_assert_str_eq(inspect(pn_message_properties(back)),
                     inspect(pn_message_properties(original)));
    ck_assert_str_eq(inspect(pn_message_annotations(back)),
                     inspect(pn_message_annotations(original)));
    ck_assert_str_eq(inspect(pn_message_body(back)), inspect(pn_message_body(original)));
    ck_assert_str_eq(inspect(pn_message_id(back)), inspect(pn_message_id(original)));
    ck_assert_str_eq(inspect(pn_message_correlation_id(back)),
                     inspect(pn_message_correlation_id(original)));
    ck_assert_str_eq(pn_message_get_subject(back), "subject-1");
    ck_assert_str_eq(pn_message_get_reply_to(back), "replies");
    ck_assert_str_eq(pn_message_get_content_type(back), "application/x-map");
    ck_assert_str_eq(pn_message_get_content_encoding(back), "identity");
    ck_assert_str_eq(pn_message_get_group_id(back), "group-a");
    ck_assert_int_eq(pn_message_get_group_sequence(back), 3);
    ck_assert_str_eq(pn_message_get_reply_to_group_id(back), "rgroup");
    ck_assert_int_eq(pn_message_get_creation_time(back), 1700000000123);
    ck_assert_int_eq(pn_message_get_expiry_time(back), 1700000999000);
    ck_assert_int_eq(pn_message_get_priority(back), 7);
    ck_assert(pn_message_is_durable(back));
    ck_assert_uint_eq(pn_message_get_ttl(back), 60000);
    pn_bytes_t user = pn_message_get_user_id(back);
    ck_assert_uint_eq(user.size, 5);
    ck_assert_int_eq(memcmp(user.start, "alice", 5), 0);
    ck_assert_uint_eq(pn_message_get_delivery_count(back), 0);
    ck_assert(pn_message_is_first_acquirer(back));
    pn_message_free(back);
    amqp_record_release(&record);
    pn_message_free(original);
}
END_TEST

START_TEST(redelivery_sets_the_delivery_count)
{
    struct core_property headers[] = {{"message-id", "m1", 2}};
    struct amqp_record_view view = {
        .body = "x", .body_len = 1, .headers = headers, .header_count = 1, .delivery_count = 3};
    pn_message_t *m = pn_message();
    char err[256];
    ck_assert_int_eq(amqp_message_from_record(&view, m, err, sizeof(err)), 0);
    ck_assert_uint_eq(pn_message_get_delivery_count(m), 2);
    ck_assert(!pn_message_is_first_acquirer(m));
    pn_message_free(m);
}
END_TEST

START_TEST(stomp_records_arrive_as_data_with_string_properties)
{
    /* What a STOMP SEND stores: plain text headers, no kbridge-amqp-*. */
    struct core_property headers[] = {
        {"content-type", "text/plain", 10},
        {"correlation-id", "c-7", 3},
        {"reply-to", "/queue/replies", 14},
        {"message-id", "abc-1", 5},
        {"custom", "v1", 2},
        {"custom", "second", 6},
        {"persistent", "true", 4},
        {"priority", "9", 1},
        {"expires", "0x", 2},
        {"kbridge-dlq-reason", "rejected", 8},
    };
    struct amqp_record_view view = {.body = "hello\0world",
                                    .body_len = 11,
                                    .headers = headers,
                                    .header_count = sizeof(headers) / sizeof(headers[0]),
                                    .delivery_count = 1};
    pn_message_t *m = pn_message();
    char err[256];
    ck_assert_int_eq(amqp_message_from_record(&view, m, err, sizeof(err)), 0);
    m = wire(m);
    ck_assert(pn_message_is_inferred(m));
    pn_data_t *body = pn_message_body(m);
    pn_data_rewind(body);
    ck_assert(pn_data_next(body));
    ck_assert_int_eq(pn_data_type(body), PN_BINARY);
    pn_bytes_t bytes = pn_data_get_binary(body);
    ck_assert_uint_eq(bytes.size, 11);
    ck_assert_int_eq(memcmp(bytes.start, "hello\0world", 11), 0);
    ck_assert_str_eq(pn_message_get_content_type(m), "text/plain");
    ck_assert_str_eq(inspect(pn_message_correlation_id(m)), "\"c-7\"");
    ck_assert_str_eq(inspect(pn_message_id(m)), "\"abc-1\"");
    ck_assert_str_eq(pn_message_get_reply_to(m), "/queue/replies");
    ck_assert(pn_message_is_durable(m));
    ck_assert_int_eq(pn_message_get_priority(m), 9);
    /* first custom wins; a non-numeric expires stays a property; DLQ headers delivered */
    ck_assert_str_eq(
        inspect(pn_message_properties(m)),
        "{\"custom\"=\"v1\", \"expires\"=\"0x\", \"kbridge-dlq-reason\"=\"rejected\"}");
    pn_data_rewind(pn_message_annotations(m));
    ck_assert(!pn_data_next(pn_message_annotations(m)));
    pn_message_free(m);
}
END_TEST

START_TEST(native_records_keep_binary_headers_and_the_key)
{
    struct core_property headers[] = {
        {"trace", "t-1", 3},
        {"blob", "\xff\xfe\x00", 3},
    };
    struct amqp_record_view view = {.key = "user-9",
                                    .key_len = 6,
                                    .body = "{}",
                                    .body_len = 2,
                                    .headers = headers,
                                    .header_count = 2,
                                    .delivery_count = 1};
    pn_message_t *m = pn_message();
    char err[256];
    ck_assert_int_eq(amqp_message_from_record(&view, m, err, sizeof(err)), 0);
    m = wire(m);
    ck_assert_str_eq(inspect(pn_message_properties(m)),
                     "{\"trace\"=\"t-1\", \"blob\"=b\"\\xff\\xfe\\x00\"}");
    ck_assert_str_eq(inspect(pn_message_annotations(m)), "{:\"x-opt-partition-key\"=\"user-9\"}");
    pn_message_free(m);
}
END_TEST

START_TEST(kbridge_amqp_headers_never_become_properties)
{
    struct core_property headers[] = {
        {"kbridge-amqp-body", "nonsense", 8},
        {"kbridge-amqp-application-properties", "\x01\x02", 2},
        {"kbridge-amqp-message-annotations", "\xff", 1},
        {"kbridge-amqp-ttl", "abc", 3},
        {"a", "1", 1},
    };
    struct amqp_record_view view = {
        .body = "raw", .body_len = 3, .headers = headers, .header_count = 5, .delivery_count = 1};
    pn_message_t *m = pn_message();
    char err[256];
    ck_assert_int_eq(amqp_message_from_record(&view, m, err, sizeof(err)), 0);
    m = wire(m);
    ck_assert_str_eq(inspect(pn_message_properties(m)), "{\"a\"=\"1\"}");
    pn_data_rewind(pn_message_annotations(m));
    ck_assert(!pn_data_next(pn_message_annotations(m)));
    ck_assert_uint_eq(pn_message_get_ttl(m), 0);
    pn_message_free(m);
}
END_TEST

START_TEST(corrupt_encoded_bodies_fall_back_to_the_bytes)
{
    struct core_property headers[] = {{"kbridge-amqp-body", "value-encoded", 13}};
    struct amqp_record_view view = {.body = "\xa1\x09short",
                                    .body_len = 7,
                                    .headers = headers,
                                    .header_count = 1,
                                    .delivery_count = 1};
    pn_message_t *m = pn_message();
    char err[256];
    ck_assert_int_eq(amqp_message_from_record(&view, m, err, sizeof(err)), 0);
    pn_data_t *body = pn_message_body(m);
    pn_data_rewind(body);
    ck_assert(pn_data_next(body));
    ck_assert_int_eq(pn_data_type(body), PN_BINARY);
    ck_assert_uint_eq(pn_data_get_binary(body).size, 7);
    pn_message_free(m);
}
END_TEST

/* The message delivered for `view`, as encoded on the wire (*size bytes). */
static char *delivered_bytes(const struct amqp_record_view *view, size_t *size)
{
    pn_message_t *m = pn_message();
    char err[256];
    ck_assert_int_eq(amqp_message_from_record(view, m, err, sizeof(err)), 0);
    *size = 64 * 1024;
    char *bytes = malloc(*size);
    ck_assert_ptr_nonnull(bytes);
    ck_assert_int_eq(pn_message_encode(m, bytes, size), 0);
    pn_message_free(m);
    return bytes;
}

/* @:d @:e 1: a described value whose value is described. Proton 0.37
 * decodes it inside a map or list into a node that swallows the next entry
 * and then encodes the map or list with its count one short. */
#define NESTED_DESCRIBED                                                                           \
    "\x00\xa3\x01"                                                                                 \
    "d"                                                                                            \
    "\x00\xa3\x01"                                                                                 \
    "e"                                                                                            \
    "\x53\x01"

START_TEST(encodings_proton_cannot_send_on_fall_back_to_the_text)
{
    /* {"count"=@:d @:e 1, "price"=true}, {:"x-a"=@:d @:e 1, :"x-b"="ok"}, [@:d @:e 1, "tail"] */
    static const char properties[] = "\xc1\x19\x04"
                                     "\xa1\x05"
                                     "count" NESTED_DESCRIBED "\xa1\x05"
                                     "price"
                                     "\x41";
    static const char annotations[] = "\xc1\x19\x04"
                                      "\xa3\x03"
                                      "x-a" NESTED_DESCRIBED "\xa3\x03"
                                      "x-b"
                                      "\xa1\x02"
                                      "ok";
    static const char body[] = "\xc0\x11\x02" NESTED_DESCRIBED "\xa1\x04"
                               "tail";
    struct core_property headers[] = {
        {"kbridge-amqp-application-properties", properties, sizeof(properties) - 1},
        {"kbridge-amqp-message-annotations", annotations, sizeof(annotations) - 1},
        {"kbridge-amqp-body", "sequence", 8},
        {"count", "7", 1},
        {"price", "true", 4},
        {"kafka-key", "k1", 2},
    };
    struct amqp_record_view hostile = {.key = "k1",
                                       .key_len = 2,
                                       .body = body,
                                       .body_len = sizeof(body) - 1,
                                       .headers = headers,
                                       .header_count = 6,
                                       .delivery_count = 1};
    /* The same record without the three headers: what kbridge delivers when
     * they do not decode. */
    struct amqp_record_view fallback = hostile;
    fallback.headers = headers + 3;
    fallback.header_count = 3;
    size_t hostile_size, fallback_size;
    char *hostile_bytes = delivered_bytes(&hostile, &hostile_size);
    char *fallback_bytes = delivered_bytes(&fallback, &fallback_size);
    ck_assert_uint_eq(hostile_size, fallback_size);
    ck_assert(memcmp(hostile_bytes, fallback_bytes, hostile_size) == 0);
    free(hostile_bytes);
    free(fallback_bytes);

    pn_message_t *m = pn_message();
    char err[256];
    ck_assert_int_eq(amqp_message_from_record(&hostile, m, err, sizeof(err)), 0);
    m = wire(m);
    ck_assert_str_eq(inspect(pn_message_properties(m)),
                     "{\"count\"=\"7\", \"price\"=\"true\", \"kafka-key\"=\"k1\"}");
    pn_data_rewind(pn_message_annotations(m));
    ck_assert(!pn_data_next(pn_message_annotations(m)));
    ck_assert_str_eq(inspect(pn_message_body(m)),
                     "b\"\\xc0\\x11\\x02\\x00\\xa3\\x01d\\x00\\xa3\\x01e"
                     "S\\x01\\xa1\\x04tail\"");
    pn_message_free(m);
}
END_TEST

START_TEST(sound_foreign_encodings_still_decode)
{
    /* map8 and str8 (proton writes map32): encodings it sends on faithfully */
    static const char properties[] = "\xc1\x0e\x02"
                                     "\xa1\x05"
                                     "count"
                                     "\x00\xa3\x01"
                                     "d"
                                     "\x53\x07";
    static const char body[] = "\x00\xa3\x01"
                               "d"
                               "\xc0\x04\x01\xa1\x01"
                               "x";
    struct core_property headers[] = {
        {"kbridge-amqp-application-properties", properties, sizeof(properties) - 1},
        {"kbridge-amqp-body", "value-encoded", 13},
        {"count", "7", 1},
    };
    struct amqp_record_view view = {.body = body,
                                    .body_len = sizeof(body) - 1,
                                    .headers = headers,
                                    .header_count = 3,
                                    .delivery_count = 1};
    pn_message_t *m = pn_message();
    char err[256];
    ck_assert_int_eq(amqp_message_from_record(&view, m, err, sizeof(err)), 0);
    ck_assert_str_eq(inspect(pn_message_body(m)), "@:d [\"x\"]");
    m = wire(m);
    ck_assert_str_eq(inspect(pn_message_properties(m)), "{\"count\"=@:d 7}");
    pn_message_free(m);
}
END_TEST

START_TEST(a_one_mebibyte_body_passes_intact)
{
    size_t size = 1024 * 1024;
    char *bytes = malloc(size);
    ck_assert_ptr_nonnull(bytes);
    for (size_t i = 0; i < size; i++)
        bytes[i] = (char)(i * 31);
    pn_message_t *m = pn_message();
    pn_data_put_binary(pn_message_body(m), pn_bytes(size, bytes));
    pn_message_set_inferred(m, true);
    m = wire(m);
    struct amqp_record record;
    char err[256];
    ck_assert_int_eq(amqp_record_from_message(m, &record, err, sizeof(err)), 0);
    ck_assert_uint_eq(record.body_len, size);
    ck_assert_int_eq(memcmp(record.body, bytes, size), 0);
    struct core_property headers[8];
    struct amqp_record_view view = view_of(&record, headers, 8, 1);
    pn_message_t *back = pn_message();
    ck_assert_int_eq(amqp_message_from_record(&view, back, err, sizeof(err)), 0);
    back = wire(back);
    pn_data_t *body = pn_message_body(back);
    pn_data_rewind(body);
    ck_assert(pn_data_next(body));
    pn_bytes_t out = pn_data_get_binary(body);
    ck_assert_uint_eq(out.size, size);
    ck_assert_int_eq(memcmp(out.start, bytes, size), 0);
    pn_message_free(back);
    amqp_record_release(&record);
    pn_message_free(m);
    free(bytes);
}
END_TEST

static Suite *amqp_convert_suite(void)
{
    Suite *suite = suite_create("amqp_convert");
    TCase *in = tcase_create("amqp_to_record");
    tcase_add_test(in, properties_become_standard_headers_as_text);
    tcase_add_test(in, application_properties_are_text_with_types_kept_aside);
    tcase_add_test(in, string_properties_need_no_type_header);
    tcase_add_test(in, string_body_not_utf8_is_kept_as_binary_value);
    tcase_add_test(in, bodies_are_marked_by_section);
    tcase_add_test(in, non_string_property_keys_are_refused);
    suite_add_tcase(suite, in);
    TCase *out = tcase_create("record_to_amqp");
    tcase_add_test(out, amqp_to_kafka_to_amqp_is_exact);
    tcase_add_test(out, redelivery_sets_the_delivery_count);
    tcase_add_test(out, stomp_records_arrive_as_data_with_string_properties);
    tcase_add_test(out, native_records_keep_binary_headers_and_the_key);
    tcase_add_test(out, kbridge_amqp_headers_never_become_properties);
    tcase_add_test(out, corrupt_encoded_bodies_fall_back_to_the_bytes);
    tcase_add_test(out, encodings_proton_cannot_send_on_fall_back_to_the_text);
    tcase_add_test(out, sound_foreign_encodings_still_decode);
    tcase_add_test(out, a_one_mebibyte_body_passes_intact);
    suite_add_tcase(suite, out);
    return suite;
}

CHECK_MAIN(amqp_convert_suite)
