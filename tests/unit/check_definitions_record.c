/* SPDX-License-Identifier: Apache-2.0 */
/* check_definitions_record.c -- the definitions topic's records and RabbitMQ
 * definitions exports (daemon/definitions_record.c): keys and values, round
 * trips through a fresh model (what another node's reader does), names with
 * '/' and '%', tombstones removing exactly what their key names, records
 * kbridge cannot read refused with a reason and the model unchanged, and a
 * realistic export (tests/unit/data/rabbitmq-definitions.json) loaded into
 * a model that routes sample publishes as RabbitMQ would. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "definitions_record.h"
#include "unit_main.h"

static struct definitions *model;

static void setup(void)
{
    model = definitions_new();
    ck_assert_ptr_nonnull(model);
}

static void teardown(void) { definitions_free(model); }

static json_t *json(const char *text)
{
    json_error_t error;
    json_t *value = json_loads(text, 0, &error);
    ck_assert_msg(value != NULL, "bad JSON in the test: %s", error.text);
    return value;
}

/* Apply key/value as the reader would; the record must be accepted. */
static void apply(const char *key, const char *value)
{
    char err[256] = "";
    int rc = definitions_record_apply(model, key, strlen(key), value, value ? strlen(value) : 0,
                                      err, sizeof(err));
    ck_assert_msg(rc == 0, "record %s refused: %s", key, err);
}

static bool collect(const struct queue_definition *queue, void *opaque)
{
    char *out = opaque;
    if (*out)
        strcat(out, ",");
    strcat(out, queue->spec.name);
    return true;
}

/* Reached queues, in binding order (the tests bind in sorted order). */
static const char *route(const char *vhost, const char *exchange, const char *key,
                         const struct binding_header *headers, size_t count)
{
    static char text[512];
    text[0] = '\0';
    definitions_route(model, vhost, exchange, key, headers, count, collect, text);
    return text;
}

START_TEST(exchange_record_key_value_and_round_trip)
{
    json_t *arguments = json("{\"alternate-exchange\": \"ae\"}");
    struct exchange_spec spec = {.vhost = "/",
                                 .name = "logs/eu%1",
                                 .type = EXCHANGE_TOPIC,
                                 .durable = true,
                                 .internal = true,
                                 .arguments = arguments};
    char *key, *value;
    ck_assert_int_eq(definitions_record_exchange(&spec, &key, &value), 0);
    ck_assert_str_eq(key, "exchange/%2F/logs%2Feu%251");
    ck_assert_str_eq(value, "{\"arguments\":{\"alternate-exchange\":\"ae\"},\"auto_delete\":false,"
                            "\"durable\":true,\"internal\":true,\"name\":\"logs/eu%1\","
                            "\"type\":\"topic\",\"vhost\":\"/\"}");
    apply(key, value);
    const struct exchange_definition *d = definitions_exchange(model, "/", "logs/eu%1");
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(d->spec.type, EXCHANGE_TOPIC);
    ck_assert(d->spec.durable && d->spec.internal && !d->spec.auto_delete);
    ck_assert_str_eq(d->alternate_exchange, "ae");
    /* a tombstone of the same key deletes it */
    apply(key, NULL);
    ck_assert_ptr_null(definitions_exchange(model, "/", "logs/eu%1"));
    free(key);
    free(value);
    json_decref(arguments);
}
END_TEST

START_TEST(queue_and_binding_records_round_trip_and_tombstones_remove_exactly_one)
{
    struct queue_spec queue = {
        .vhost = "v1", .name = "q", .exclusive = true, .auto_delete = true, .owner = "node1/12"};
    struct exchange_spec exchange = {.vhost = "v1", .name = "h", .type = EXCHANGE_HEADERS};
    json_t *pdf = json("{\"x-match\": \"any\", \"format\": \"pdf\"}");
    json_t *zip = json("{\"x-match\": \"any\", \"format\": \"zip\"}");
    struct binding_spec by_pdf = {.vhost = "v1",
                                  .source = "h",
                                  .destination_kind = BINDING_TO_QUEUE,
                                  .destination = "q",
                                  .routing_key = "",
                                  .arguments = pdf};
    struct binding_spec by_zip = by_pdf;
    by_zip.arguments = zip;
    char *keys[4], *values[4];
    ck_assert_int_eq(definitions_record_queue(&queue, &keys[0], &values[0]), 0);
    ck_assert_int_eq(definitions_record_exchange(&exchange, &keys[1], &values[1]), 0);
    ck_assert_int_eq(definitions_record_binding(&by_pdf, &keys[2], &values[2]), 0);
    ck_assert_int_eq(definitions_record_binding(&by_zip, &keys[3], &values[3]), 0);
    ck_assert_str_eq(keys[0], "queue/v1/q");
    /* two bindings that differ only in their arguments have different keys */
    ck_assert(strncmp(keys[2], "binding/v1/h/q/q//", 18) == 0);
    ck_assert_str_ne(keys[2], keys[3]);
    ck_assert_uint_eq(strlen(keys[2]), strlen("binding/v1/h/q/q//") + 16);
    for (int i = 3; i >= 0; i--) /* bindings first: any order works */
        apply(keys[i], values[i]);
    const struct queue_definition *q = definitions_queue(model, "v1", "q");
    ck_assert_ptr_nonnull(q);
    ck_assert(q->spec.exclusive && q->spec.auto_delete && !q->spec.durable);
    ck_assert_str_eq(q->spec.owner, "node1/12");
    struct binding_header as_pdf[] = {{"format", "pdf", 3}};
    struct binding_header as_zip[] = {{"format", "zip", 3}};
    ck_assert_str_eq(route("v1", "h", "", as_pdf, 1), "q");
    ck_assert_str_eq(route("v1", "h", "", as_zip, 1), "q");
    apply(keys[2], NULL); /* unbind the pdf binding only */
    ck_assert_str_eq(route("v1", "h", "", as_pdf, 1), "");
    ck_assert_str_eq(route("v1", "h", "", as_zip, 1), "q");
    apply(keys[2], NULL); /* again: nothing to remove, still accepted */
    apply(keys[0], NULL); /* the queue, with its remaining binding */
    ck_assert_ptr_null(definitions_queue(model, "v1", "q"));
    ck_assert_uint_eq(definitions_exchange_binding_count(model, "v1", "h"), 0);
    for (int i = 0; i < 4; i++) {
        free(keys[i]);
        free(values[i]);
    }
    json_decref(pdf);
    json_decref(zip);
}
END_TEST

START_TEST(purge_records_set_the_queue_s_purge_offsets_kept_across_redeclares)
{
    struct queue_spec queue = {.vhost = "/", .name = "orders", .durable = true};
    char *qkey, *qvalue, *key, *value;
    ck_assert_int_eq(definitions_record_queue(&queue, &qkey, &qvalue), 0);
    apply(qkey, qvalue);
    json_t *offsets = json("[{\"topic\": \"orders\", \"partition\": 1, \"offset\": 20}]");
    ck_assert_int_eq(definitions_record_purge("/", "orders", offsets, &key, &value), 0);
    ck_assert_str_eq(key, "purge/%2F/orders");
    apply(key, value);
    const struct queue_definition *d = definitions_queue(model, "/", "orders");
    ck_assert_ptr_nonnull(d);
    ck_assert(json_equal(d->purge_offsets, offsets));
    struct definitions_record_key parsed;
    ck_assert_int_eq(definitions_record_key_parse(key, strlen(key), &parsed), 0);
    ck_assert_int_eq(parsed.kind, DEFINITIONS_RECORD_PURGE);
    ck_assert_str_eq(parsed.name, "orders");
    definitions_record_key_free(&parsed);
    apply(qkey, qvalue); /* a redeclare keeps the purge */
    ck_assert(json_equal(definitions_queue(model, "/", "orders")->purge_offsets, offsets));
    /* a purge of a queue not in the view is accepted and changes nothing */
    char *other_key, *other_value;
    ck_assert_int_eq(definitions_record_purge("/", "none", offsets, &other_key, &other_value), 0);
    apply(other_key, other_value);
    ck_assert_ptr_null(definitions_queue(model, "/", "none"));
    /* offsets that are not {topic, partition, offset} are refused */
    char err[256] = "";
    const char *bad = "{\"vhost\":\"/\",\"name\":\"orders\",\"offsets\":[{\"topic\":1}]}";
    ck_assert_int_eq(
        definitions_record_apply(model, key, strlen(key), bad, strlen(bad), err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "offsets[0]"));
    /* the queue's tombstone takes the purge with it */
    apply(qkey, NULL);
    apply(qkey, qvalue);
    ck_assert_ptr_null(definitions_queue(model, "/", "orders")->purge_offsets);
    json_decref(offsets);
    free(qkey);
    free(qvalue);
    free(key);
    free(value);
    free(other_key);
    free(other_value);
}
END_TEST

START_TEST(records_kbridge_cannot_read_are_refused_with_a_reason)
{
    static const struct {
        const char *key, *value, *reason;
    } bad[] = {
        {"exchange/%2F/x", "{not json", "the value is not JSON"},
        {"exchange/%2F/x", "{\"name\": \"x\", \"type\": \"x-delayed-message\"}",
         "exchange 'x': type 'x-delayed-message' is not supported"},
        {"exchange/%2F/x", "{\"name\": \"x\"}", "'type' is missing"},
        {"queue/%2F/q", "{\"name\": \"q\", \"durable\": \"yes\"}",
         "'durable' must be true or false"},
        {"queue/%2F/q", "{\"name\": 7}", "'name' must be a string"},
        {"binding/%2F/a/q/b/k/-",
         "{\"source\": \"a\", \"destination\": \"b\", "
         "\"destination_type\": \"topic\"}",
         "'destination_type' must be queue or exchange"},
        {"policy/%2F/p", "{}", "a record key of an unknown form"},
        {"queue/%2F", "{\"name\": \"q\"}", "a record key of an unknown form"},
        {"queue/%2F/a%2", "{\"name\": \"q\"}", "a record key of an unknown form"},
        {"queue/%2F/a%41", "{\"name\": \"q\"}", "a record key of an unknown form"},
        {"binding/%2F/a/x/b/k/-", NULL, "a record key of an unknown form"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        int rc =
            definitions_record_apply(model, bad[i].key, strlen(bad[i].key), bad[i].value,
                                     bad[i].value ? strlen(bad[i].value) : 0, err, sizeof(err));
        ck_assert_msg(rc == -1, "record %zu accepted", i);
        ck_assert_msg(strstr(err, bad[i].reason) != NULL, "record %zu: '%s' lacks '%s'", i, err,
                      bad[i].reason);
    }
    ck_assert_ptr_null(definitions_exchange(model, "/", "x"));
    ck_assert_ptr_null(definitions_queue(model, "/", "q"));
    ck_assert(!definitions_vhost_known(model, "/"));
}
END_TEST

/* ---- RabbitMQ's export --------------------------------------------------------------- */

struct import_log {
    int vhosts, exchanges, queues, bindings;
};

static int on_vhost(const char *vhost, void *opaque)
{
    ((struct import_log *)opaque)->vhosts++;
    return definitions_vhost_add(model, vhost);
}

static int on_exchange(const struct exchange_spec *spec, void *opaque)
{
    char err[256];
    bool exists;
    ck_assert_msg(definitions_check_exchange(model, spec, false, &exists, err, sizeof(err)) ==
                      DEFINITIONS_OK,
                  "%s", err);
    ((struct import_log *)opaque)->exchanges++;
    return definitions_apply_exchange(model, spec);
}

static int on_queue(const struct queue_spec *spec, void *opaque)
{
    char err[256];
    bool exists;
    ck_assert_msg(definitions_check_queue(model, spec, false, &exists, err, sizeof(err)) ==
                      DEFINITIONS_OK,
                  "%s", err);
    ((struct import_log *)opaque)->queues++;
    return definitions_apply_queue(model, spec);
}

static int on_binding(const struct binding_spec *spec, void *opaque)
{
    char err[256];
    ck_assert_msg(definitions_check_binding(model, spec, err, sizeof(err)) == DEFINITIONS_OK, "%s",
                  err);
    ((struct import_log *)opaque)->bindings++;
    return definitions_apply_binding(model, spec);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char buffer[65536];
    *len = fread(buffer, 1, sizeof(buffer) - 1, f);
    fclose(f);
    buffer[*len] = '\0';
    return buffer;
}

START_TEST(a_rabbitmq_export_loads_and_routes_as_rabbitmq_would)
{
    size_t len;
    const char *text = read_file(TEST_DATA_DIR "/rabbitmq-definitions.json", &len);
    struct import_log log = {0};
    struct definitions_import import = {on_vhost, on_exchange, on_queue, on_binding, &log, 0, 0};
    char err[256];
    ck_assert_msg(definitions_import_json(text, len, &import, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(log.vhosts, 2);
    ck_assert_int_eq(log.exchanges, 5);
    ck_assert_int_eq(log.queues, 6);
    ck_assert_int_eq(log.bindings, 8);
    ck_assert_uint_eq(import.users, 2); /* counted, not imported */
    ck_assert_uint_eq(import.permissions, 2);

    /* publishes to the topic exchange: direct queue, pattern queue, and the
     * exchange-to-exchange fanout that feeds the audit queue */
    ck_assert_str_eq(route("billing", "billing.events", "invoice.created", NULL, 0),
                     "invoices.created,invoices.audit");
    ck_assert_str_eq(route("billing", "billing.events", "invoice.paid.eu", NULL, 0),
                     "invoices.eu,invoices.audit");
    ck_assert_str_eq(route("billing", "billing.events", "invoice.paid.us", NULL, 0),
                     "invoices.audit");
    /* unroutable on billing.events: the caller sends it to its alternate exchange */
    ck_assert_str_eq(route("billing", "billing.events", "refund.created", NULL, 0), "");
    const struct exchange_definition *events =
        definitions_exchange(model, "billing", "billing.events");
    ck_assert_str_eq(events->alternate_exchange, "billing.unrouted");
    ck_assert_str_eq(route("billing", events->alternate_exchange, "refund.created", NULL, 0),
                     "invoices.dead");
    /* the dead-letter exchange, the headers exchange, the default exchange */
    ck_assert_str_eq(route("billing", "billing.dlx", "invoices.created", NULL, 0), "invoices.dead");
    struct binding_header pdf[] = {{"format", "pdf", 3}, {"render", "true", 4}};
    struct binding_header pdf_only[] = {{"format", "pdf", 3}};
    ck_assert_str_eq(route("billing", "billing.documents", "", pdf, 2), "pdf-render");
    ck_assert_str_eq(route("billing", "billing.documents", "", pdf_only, 1), "");
    ck_assert_str_eq(route("billing", "", "invoices.eu", NULL, 0), "invoices.eu");
    /* vhosts are separate; the built-in amq.topic of "/" */
    ck_assert_str_eq(route("/", "amq.topic", "user.signed-up", NULL, 0), "notifications");
    ck_assert_str_eq(route("billing", "amq.topic", "user.signed-up", NULL, 0), "");
    ck_assert_str_eq(route("/", "billing.events", "invoice.created", NULL, 0), "");
    /* queue arguments came along */
    const struct queue_definition *created =
        definitions_queue(model, "billing", "invoices.created");
    ck_assert_int_eq(json_integer_value(json_object_get(created->spec.arguments, "x-message-ttl")),
                     86400000);
}
END_TEST

START_TEST(a_bad_export_names_the_entry)
{
    static const struct {
        const char *text, *message;
    } bad[] = {
        {"[]", "a definitions export is a JSON object"},
        {"{\"exchanges\": {}}", "'exchanges' must be an array"},
        {"{\"exchanges\": [{\"name\": \"a\", \"type\": \"direct\"}, {\"name\": \"d\", "
         "\"type\": \"x-delayed-message\"}]}",
         "exchanges[1]: exchange 'd': type 'x-delayed-message' is not supported"},
        {"{\"queues\": [{\"durable\": true}]}", "queues[0]: 'name' is missing"},
        {"{\"bindings\": [{\"source\": \"a\"}]}", "bindings[0]: 'destination' is missing"},
        {"{\n\"vhosts\": [}", "line 2:"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct definitions_import import = {0};
        char err[256] = "";
        ck_assert_int_eq(
            definitions_import_json(bad[i].text, strlen(bad[i].text), &import, err, sizeof(err)),
            -1);
        ck_assert_msg(strncmp(err, bad[i].message, strlen(bad[i].message)) == 0,
                      "export %zu: '%s', expected '%s'", i, err, bad[i].message);
    }
}
END_TEST

static Suite *record_suite(void)
{
    Suite *suite = suite_create("definitions_record");
    TCase *records = tcase_create("records");
    tcase_add_checked_fixture(records, setup, teardown);
    tcase_add_test(records, exchange_record_key_value_and_round_trip);
    tcase_add_test(records, queue_and_binding_records_round_trip_and_tombstones_remove_exactly_one);
    tcase_add_test(records, records_kbridge_cannot_read_are_refused_with_a_reason);
    tcase_add_test(records, purge_records_set_the_queue_s_purge_offsets_kept_across_redeclares);
    suite_add_tcase(suite, records);
    TCase *exports = tcase_create("exports");
    tcase_add_checked_fixture(exports, setup, teardown);
    tcase_add_test(exports, a_rabbitmq_export_loads_and_routes_as_rabbitmq_would);
    tcase_add_test(exports, a_bad_export_names_the_entry);
    suite_add_tcase(suite, exports);
    return suite;
}

CHECK_MAIN(record_suite)
