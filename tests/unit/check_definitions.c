/* SPDX-License-Identifier: Apache-2.0 */
/* check_definitions.c -- the routing model (daemon/definitions.c): built-in
 * exchanges, RabbitMQ's precondition checks and their messages, queue
 * arguments honoured or refused by name, routing through direct, fanout,
 * topic and headers exchanges and exchange-to-exchange bindings (each queue
 * once, cycles ended), the consumer-side filter agreeing with routing,
 * deletes taking their bindings along, auto-delete exchanges, records
 * applied in any order, and server-named queues. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "definitions.h"
#include "unit_main.h"

static struct definitions *model;

static void setup(void)
{
    model = definitions_new();
    ck_assert_ptr_nonnull(model);
    ck_assert_int_eq(definitions_vhost_add(model, "/"), 0);
}

static void teardown(void) { definitions_free(model); }

static json_t *json(const char *text)
{
    json_error_t error;
    json_t *value = json_loads(text, JSON_DECODE_ANY, &error);
    ck_assert_msg(value != NULL, "bad JSON in the test: %s", error.text);
    return value;
}

static void exchange(const char *name, enum exchange_type type)
{
    struct exchange_spec spec = {.vhost = "/", .name = name, .type = type, .durable = true};
    ck_assert_int_eq(definitions_apply_exchange(model, &spec), 0);
}

static void queue(const char *name)
{
    struct queue_spec spec = {.vhost = "/", .name = name, .durable = true};
    ck_assert_int_eq(definitions_apply_queue(model, &spec), 0);
}

static void bind_with(const char *source, const char *queue_name, const char *key,
                      const char *arguments)
{
    json_t *args = arguments ? json(arguments) : NULL;
    struct binding_spec spec = {.vhost = "/",
                                .source = source,
                                .destination_kind = BINDING_TO_QUEUE,
                                .destination = queue_name,
                                .routing_key = key,
                                .arguments = args};
    char err[256];
    ck_assert_msg(definitions_check_binding(model, &spec, err, sizeof(err)) == DEFINITIONS_OK, "%s",
                  err);
    ck_assert_int_eq(definitions_apply_binding(model, &spec), 0);
    json_decref(args);
}

static void bind(const char *source, const char *queue_name, const char *key)
{
    bind_with(source, queue_name, key, NULL);
}

static void bind_exchange(const char *source, const char *destination, const char *key)
{
    struct binding_spec spec = {.vhost = "/",
                                .source = source,
                                .destination_kind = BINDING_TO_EXCHANGE,
                                .destination = destination,
                                .routing_key = key};
    ck_assert_int_eq(definitions_apply_binding(model, &spec), 0);
}

/* The queues a message reaches, sorted, comma-separated. */
struct reached {
    char names[16][64];
    size_t count;
};

static bool collect(const struct queue_definition *queue_definition, void *opaque)
{
    struct reached *reached = opaque;
    ck_assert_uint_lt(reached->count, 16);
    snprintf(reached->names[reached->count++], 64, "%s", queue_definition->spec.name);
    return true;
}

static int compare_names(const void *a, const void *b) { return strcmp(a, b); }

static const char *route_headers(const char *exchange_name, const char *key,
                                 const struct binding_header *headers, size_t header_count)
{
    static char text[1024];
    struct reached reached = {0};
    int n =
        definitions_route(model, "/", exchange_name, key, headers, header_count, collect, &reached);
    ck_assert_int_eq(n, (int)reached.count);
    qsort(reached.names, reached.count, sizeof(reached.names[0]), compare_names);
    text[0] = '\0';
    for (size_t i = 0; i < reached.count; i++) {
        if (i)
            strcat(text, ",");
        strcat(text, reached.names[i]);
        /* the consumer side's filter says the same for every queue reached */
        ck_assert_msg(definitions_reaches(model, "/", exchange_name, reached.names[i], key, headers,
                                          header_count),
                      "route reaches %s, definitions_reaches says no", reached.names[i]);
    }
    return text;
}

static const char *route(const char *exchange_name, const char *key)
{
    return route_headers(exchange_name, key, NULL, 0);
}

/* ---- built-ins and checks ------------------------------------------------------ */

START_TEST(a_vhost_has_the_built_in_exchanges)
{
    static const struct {
        const char *name;
        enum exchange_type type;
    } builtins[] = {{"", EXCHANGE_DIRECT},
                    {"amq.direct", EXCHANGE_DIRECT},
                    {"amq.fanout", EXCHANGE_FANOUT},
                    {"amq.topic", EXCHANGE_TOPIC},
                    {"amq.headers", EXCHANGE_HEADERS},
                    {"amq.match", EXCHANGE_HEADERS}};
    for (size_t i = 0; i < 6; i++) {
        const struct exchange_definition *d = definitions_exchange(model, "/", builtins[i].name);
        ck_assert_msg(d != NULL, "no built-in '%s'", builtins[i].name);
        ck_assert_int_eq(d->spec.type, builtins[i].type);
        ck_assert(d->builtin && d->spec.durable);
    }
    ck_assert_ptr_null(definitions_exchange(model, "other", "amq.direct")); /* unknown vhost */
    ck_assert(!definitions_vhost_known(model, "other"));
    queue("q-in-other"); /* applying in "/" does not make "other" */
    struct queue_spec spec = {.vhost = "other", .name = "q"};
    ck_assert_int_eq(definitions_apply_queue(model, &spec), 0);
    ck_assert(definitions_vhost_known(model, "other"));
    ck_assert_ptr_nonnull(definitions_exchange(model, "other", "amq.fanout"));
    ck_assert_ptr_null(definitions_queue(model, "/", "q")); /* vhosts are separate */
}
END_TEST

START_TEST(redeclaring_an_exchange_differently_names_the_property)
{
    char err[512];
    bool exists;
    exchange("logs", EXCHANGE_DIRECT);
    struct exchange_spec same = {
        .vhost = "/", .name = "logs", .type = EXCHANGE_DIRECT, .durable = true};
    ck_assert_int_eq(definitions_check_exchange(model, &same, false, &exists, err, sizeof(err)),
                     DEFINITIONS_OK);
    ck_assert(exists);

    struct exchange_spec other_type = same;
    other_type.type = EXCHANGE_FANOUT;
    ck_assert_int_eq(
        definitions_check_exchange(model, &other_type, false, &exists, err, sizeof(err)),
        DEFINITIONS_PRECONDITION_FAILED);
    ck_assert_str_eq(err, "inequivalent arg 'type' for exchange 'logs' in vhost '/': received "
                          "'fanout' but current is 'direct'");

    struct exchange_spec not_durable = same;
    not_durable.durable = false;
    ck_assert_int_eq(
        definitions_check_exchange(model, &not_durable, false, &exists, err, sizeof(err)),
        DEFINITIONS_PRECONDITION_FAILED);
    ck_assert_str_eq(err, "inequivalent arg 'durable' for exchange 'logs' in vhost '/': received "
                          "'false' but current is 'true'");

    struct exchange_spec with_ae = same;
    with_ae.arguments = json("{\"alternate-exchange\": \"ae\"}");
    ck_assert_int_eq(definitions_check_exchange(model, &with_ae, false, &exists, err, sizeof(err)),
                     DEFINITIONS_PRECONDITION_FAILED);
    ck_assert_str_eq(err, "inequivalent arg 'alternate-exchange' for exchange 'logs' in vhost "
                          "'/': received 'ae' but current is none");
    json_decref(with_ae.arguments);
}
END_TEST

/* kbridge's own exchange argument (docs/routing.md): a boolean. */
START_TEST(keep_unroutable_is_a_boolean_exchange_argument)
{
    char err[512];
    bool exists;
    struct exchange_spec keep = {.vhost = "/", .name = "k", .type = EXCHANGE_DIRECT};
    keep.arguments = json("{\"x-kbridge-keep-unroutable\": true}");
    ck_assert_int_eq(definitions_check_exchange(model, &keep, false, &exists, err, sizeof(err)),
                     DEFINITIONS_OK);
    json_decref(keep.arguments);
    keep.arguments = json("{\"x-kbridge-keep-unroutable\": \"yes\"}");
    ck_assert_int_eq(definitions_check_exchange(model, &keep, false, &exists, err, sizeof(err)),
                     DEFINITIONS_PRECONDITION_FAILED);
    ck_assert_str_eq(err, "invalid arg 'x-kbridge-keep-unroutable': must be true or false");
    json_decref(keep.arguments);
}
END_TEST

START_TEST(topic_per_key_is_a_boolean_argument_of_direct_exchanges_only)
{
    char err[512];
    bool exists;
    struct exchange_spec spec = {.vhost = "/", .name = "per", .type = EXCHANGE_DIRECT};
    spec.arguments = json("{\"x-kbridge-topic-per-key\": true}");
    ck_assert_int_eq(definitions_check_exchange(model, &spec, false, &exists, err, sizeof(err)),
                     DEFINITIONS_OK);
    spec.type = EXCHANGE_FANOUT;
    ck_assert_int_eq(definitions_check_exchange(model, &spec, false, &exists, err, sizeof(err)),
                     DEFINITIONS_PRECONDITION_FAILED);
    ck_assert_str_eq(err, "invalid arg 'x-kbridge-topic-per-key': only a direct exchange can "
                          "have a Kafka topic per routing key");
    json_decref(spec.arguments);
    spec.arguments = json("{\"x-kbridge-topic-per-key\": 1}");
    spec.type = EXCHANGE_DIRECT;
    ck_assert_int_eq(definitions_check_exchange(model, &spec, false, &exists, err, sizeof(err)),
                     DEFINITIONS_PRECONDITION_FAILED);
    ck_assert_str_eq(err, "invalid arg 'x-kbridge-topic-per-key': must be true or false");
    json_decref(spec.arguments);
}
END_TEST

START_TEST(passive_reserved_and_default_exchange_rules)
{
    char err[512];
    bool exists;
    struct exchange_spec missing = {.vhost = "/", .name = "nope", .type = EXCHANGE_DIRECT};
    ck_assert_int_eq(definitions_check_exchange(model, &missing, true, &exists, err, sizeof(err)),
                     DEFINITIONS_NOT_FOUND);
    ck_assert_str_eq(err, "no exchange 'nope' in vhost '/'");
    struct exchange_spec reserved = {.vhost = "/", .name = "amq.custom", .type = EXCHANGE_TOPIC};
    ck_assert_int_eq(definitions_check_exchange(model, &reserved, false, &exists, err, sizeof(err)),
                     DEFINITIONS_ACCESS_REFUSED);
    ck_assert_str_eq(err, "exchange name 'amq.custom' contains reserved prefix 'amq.*'");
    /* redeclaring a built-in as it is, is fine */
    struct exchange_spec topic = {
        .vhost = "/", .name = "amq.topic", .type = EXCHANGE_TOPIC, .durable = true};
    ck_assert_int_eq(definitions_check_exchange(model, &topic, false, &exists, err, sizeof(err)),
                     DEFINITIONS_OK);
    ck_assert_int_eq(definitions_check_exchange_delete(model, "/", "", false, err, sizeof(err)),
                     DEFINITIONS_ACCESS_REFUSED);
    ck_assert_int_eq(
        definitions_check_exchange_delete(model, "/", "amq.fanout", false, err, sizeof(err)),
        DEFINITIONS_ACCESS_REFUSED);
    ck_assert_int_eq(definitions_check_exchange_delete(model, "/", "nope", false, err, sizeof(err)),
                     DEFINITIONS_NOT_FOUND);
    exchange("used", EXCHANGE_FANOUT);
    queue("q");
    bind("used", "q", "");
    ck_assert_int_eq(definitions_check_exchange_delete(model, "/", "used", true, err, sizeof(err)),
                     DEFINITIONS_PRECONDITION_FAILED);
    ck_assert_str_eq(err, "exchange 'used' in vhost '/' in use");
    ck_assert_int_eq(definitions_check_exchange_delete(model, "/", "used", false, err, sizeof(err)),
                     DEFINITIONS_OK);
    /* nothing binds to or from the default exchange */
    struct binding_spec from_default = {.vhost = "/",
                                        .source = "",
                                        .destination_kind = BINDING_TO_QUEUE,
                                        .destination = "q",
                                        .routing_key = "q"};
    ck_assert_int_eq(definitions_check_binding(model, &from_default, err, sizeof(err)),
                     DEFINITIONS_ACCESS_REFUSED);
    ck_assert_str_eq(err, "operation not permitted on the default exchange");
    struct binding_spec no_queue = {.vhost = "/",
                                    .source = "used",
                                    .destination_kind = BINDING_TO_QUEUE,
                                    .destination = "ghost",
                                    .routing_key = ""};
    ck_assert_int_eq(definitions_check_binding(model, &no_queue, err, sizeof(err)),
                     DEFINITIONS_NOT_FOUND);
    ck_assert_str_eq(err, "no queue 'ghost' in vhost '/'");
    struct binding_spec bad_match = {.vhost = "/",
                                     .source = "amq.headers",
                                     .destination_kind = BINDING_TO_QUEUE,
                                     .destination = "q",
                                     .routing_key = "",
                                     .arguments = json("{\"x-match\": \"most\"}")};
    ck_assert_int_eq(definitions_check_binding(model, &bad_match, err, sizeof(err)),
                     DEFINITIONS_PRECONDITION_FAILED);
    json_decref(bad_match.arguments);
}
END_TEST

START_TEST(queues_redeclare_exclusive_owner_and_reserved_names)
{
    char err[512];
    bool exists;
    struct queue_spec mine = {.vhost = "/",
                              .name = "private",
                              .exclusive = true,
                              .auto_delete = true,
                              .owner = "node1/7"};
    ck_assert_int_eq(definitions_apply_queue(model, &mine), 0);
    ck_assert_int_eq(definitions_check_queue(model, &mine, false, &exists, err, sizeof(err)),
                     DEFINITIONS_OK);
    ck_assert(exists);
    struct queue_spec theirs = mine;
    theirs.owner = "node2/1";
    ck_assert_int_eq(definitions_check_queue(model, &theirs, true, &exists, err, sizeof(err)),
                     DEFINITIONS_RESOURCE_LOCKED);
    ck_assert_msg(strstr(err, "cannot obtain exclusive access to locked queue 'private'"), "%s",
                  err);

    queue("jobs");
    struct queue_spec jobs = {.vhost = "/",
                              .name = "jobs",
                              .durable = true,
                              .arguments = json("{\"x-message-ttl\": 60000}")};
    ck_assert_int_eq(definitions_check_queue(model, &jobs, false, &exists, err, sizeof(err)),
                     DEFINITIONS_PRECONDITION_FAILED);
    ck_assert_str_eq(err, "inequivalent arg 'x-message-ttl' for queue 'jobs' in vhost '/': "
                          "received 60000 but current is none");
    json_decref(jobs.arguments);
    struct queue_spec transient = {.vhost = "/", .name = "jobs"};
    ck_assert_int_eq(definitions_check_queue(model, &transient, false, &exists, err, sizeof(err)),
                     DEFINITIONS_PRECONDITION_FAILED);
    ck_assert_str_eq(err, "inequivalent arg 'durable' for queue 'jobs' in vhost '/': received "
                          "'false' but current is 'true'");
    struct queue_spec reserved = {.vhost = "/", .name = "amq.mine"};
    ck_assert_int_eq(definitions_check_queue(model, &reserved, false, &exists, err, sizeof(err)),
                     DEFINITIONS_ACCESS_REFUSED);
    struct queue_spec missing = {.vhost = "/", .name = "nope"};
    ck_assert_int_eq(definitions_check_queue(model, &missing, true, &exists, err, sizeof(err)),
                     DEFINITIONS_NOT_FOUND);
    ck_assert_str_eq(err, "no queue 'nope' in vhost '/'");
}
END_TEST

START_TEST(queue_arguments_are_honoured_or_refused_by_name)
{
    char err[512];
    json_t *good = json("{\"x-message-ttl\": 0, "
                        "\"x-dead-letter-exchange\": \"dlx\", \"x-dead-letter-routing-key\": "
                        "\"dead\", \"x-delivery-limit\": 3, \"x-queue-type\": \"quorum\", "
                        "\"x-queue-mode\": \"lazy\"}");
    ck_assert_msg(definitions_check_queue_arguments(good, err, sizeof(err)) == DEFINITIONS_OK, "%s",
                  err);
    json_decref(good);
    ck_assert_int_eq(definitions_check_queue_arguments(NULL, err, sizeof(err)), DEFINITIONS_OK);
    static const struct {
        const char *arguments, *message;
    } bad[] = {
        {"{\"x-max-priority\": 10}",
         "invalid arg 'x-max-priority': kbridge does not support this queue argument"},
        {"{\"x-message-ttl\": -1}", "invalid arg 'x-message-ttl': -1, must be a non-negative "
                                    "integer"},
        {"{\"x-expires\": 0}", "invalid arg 'x-expires': 0, must be a positive integer"},
        {"{\"x-message-ttl\": \"100\"}", "invalid arg 'x-message-ttl': '100', must be a "
                                         "non-negative integer"},
        {"{\"x-overflow\": \"reject-publish-dlx\"}",
         "invalid arg 'x-overflow': 'reject-publish-dlx', must be drop-head|reject-publish"},
        {"{\"x-queue-type\": \"mirrored\"}",
         "invalid arg 'x-queue-type': 'mirrored', must be classic|quorum|stream"},
        {"{\"x-single-active-consumer\": 1}",
         "invalid arg 'x-single-active-consumer': 1, must be true or false"},
        {"{\"x-dead-letter-routing-key\": \"k\"}",
         "invalid arg 'x-dead-letter-routing-key': it requires x-dead-letter-exchange"},
        {"{\"x-max-length-bytes\": -10}",
         "invalid arg 'x-max-length-bytes': -10, must be a non-negative integer"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *arguments = json(bad[i].arguments);
        ck_assert_int_eq(definitions_check_queue_arguments(arguments, err, sizeof(err)),
                         DEFINITIONS_PRECONDITION_FAILED);
        ck_assert_str_eq(err, bad[i].message);
        json_decref(arguments);
    }
}
END_TEST

/* ---- routing ---------------------------------------------------------------------- */

START_TEST(fanout_direct_and_topic_exchanges_route_as_rabbitmq_does)
{
    exchange("fan", EXCHANGE_FANOUT);
    exchange("dir", EXCHANGE_DIRECT);
    exchange("top", EXCHANGE_TOPIC);
    static const char *const queues[] = {"f1",     "f2",     "f3",     "d-red",
                                         "d-both", "t-star", "t-hash", "t-all"};
    for (size_t i = 0; i < sizeof(queues) / sizeof(queues[0]); i++)
        queue(queues[i]);
    bind("fan", "f1", "");
    bind("fan", "f2", "ignored");
    bind("fan", "f3", "");
    bind("dir", "d-red", "red");
    bind("dir", "d-both", "red");
    bind("dir", "d-both", "green");
    bind("top", "t-star", "a.*");
    bind("top", "t-hash", "a.#");
    bind("top", "t-all", "#");

    ck_assert_str_eq(route("fan", "anything"), "f1,f2,f3");
    ck_assert_str_eq(route("dir", "red"), "d-both,d-red"); /* d-both once */
    ck_assert_str_eq(route("dir", "green"), "d-both");
    ck_assert_str_eq(route("dir", "blue"), "");
    ck_assert_str_eq(route("top", "a"), "t-all,t-hash");
    ck_assert_str_eq(route("top", "a.b"), "t-all,t-hash,t-star");
    ck_assert_str_eq(route("top", "a.b.c"), "t-all,t-hash");
    ck_assert_str_eq(route("top", "b"), "t-all");
    ck_assert_str_eq(route("top", ""), "t-all");
    ck_assert(!definitions_reaches(model, "/", "top", "t-star", "a.b.c", NULL, 0));
    ck_assert(!definitions_reaches(model, "/", "dir", "d-red", "green", NULL, 0));
    /* the default exchange reaches the queue named by the key, and only a declared one */
    ck_assert_str_eq(route("", "f2"), "f2");
    ck_assert_str_eq(route("", "nope"), "");
    ck_assert(definitions_reaches(model, "/", "", "f2", "f2", NULL, 0));
    ck_assert(!definitions_reaches(model, "/", "", "f2", "f1", NULL, 0));
    /* an unknown exchange reaches nothing */
    ck_assert_str_eq(route("ghost", "a"), "");
}
END_TEST

START_TEST(headers_exchange_routes_by_x_match)
{
    queue("h-all");
    queue("h-any");
    queue("h-num");
    queue("h-presence");
    bind_with("amq.headers", "h-all", "",
              "{\"x-match\": \"all\", \"format\": \"pdf\", "
              "\"type\": \"report\"}");
    bind_with("amq.headers", "h-any", "",
              "{\"x-match\": \"any\", \"format\": \"zip\", "
              "\"type\": \"report\"}");
    bind_with("amq.match", "h-num", "", "{\"priority\": 5}"); /* x-match defaults to all */
    bind_with("amq.headers", "h-presence", "", "{\"flag\": null}");
    struct binding_header report[] = {{"format", "pdf", 3}, {"type", "report", 6}};
    ck_assert_str_eq(route_headers("amq.headers", "", report, 2), "h-all,h-any");
    struct binding_header zip[] = {{"format", "zip", 3}};
    ck_assert_str_eq(route_headers("amq.headers", "", zip, 1), "h-any");
    struct binding_header flagged[] = {{"flag", "yes", 3}};
    ck_assert_str_eq(route_headers("amq.headers", "", flagged, 1), "h-presence");
    /* numbers compare by their text, as record headers carry them */
    struct binding_header five[] = {{"priority", "5", 1}};
    struct binding_header fifty[] = {{"priority", "50", 2}};
    ck_assert_str_eq(route_headers("amq.match", "", five, 1), "h-num");
    ck_assert_str_eq(route_headers("amq.match", "", fifty, 1), "");
}
END_TEST

START_TEST(exchange_to_exchange_bindings_compose_and_cycles_end)
{
    exchange("entry", EXCHANGE_TOPIC);
    exchange("mid", EXCHANGE_DIRECT);
    exchange("leaf", EXCHANGE_FANOUT);
    queue("via-mid");
    queue("via-leaf");
    queue("direct-on-entry");
    bind_exchange("entry", "mid", "orders.#");
    bind_exchange("mid", "leaf", "orders.eu");
    bind("mid", "via-mid", "orders.us");
    bind("leaf", "via-leaf", "");
    bind("entry", "direct-on-entry", "#.eu");
    /* the routing key is the same at every hop */
    ck_assert_str_eq(route("entry", "orders.eu"), "direct-on-entry,via-leaf");
    ck_assert_str_eq(route("entry", "orders.us"), "via-mid");
    ck_assert_str_eq(route("entry", "refunds.eu"), "direct-on-entry");
    ck_assert(!definitions_reaches(model, "/", "entry", "via-leaf", "orders.us", NULL, 0));
    ck_assert(definitions_reaches(model, "/", "mid", "via-leaf", "orders.eu", NULL, 0));
    /* a cycle back to the entry neither loops nor delivers twice */
    bind_exchange("leaf", "entry", "");
    ck_assert_str_eq(route("entry", "orders.eu"), "direct-on-entry,via-leaf");
    ck_assert_str_eq(route("leaf", "x.eu"), "direct-on-entry,via-leaf");
}
END_TEST

START_TEST(deletes_take_their_bindings_and_auto_delete_exchanges_go_with_the_last)
{
    exchange("fan", EXCHANGE_FANOUT);
    queue("a");
    queue("b");
    bind("fan", "a", "");
    bind("fan", "b", "");
    ck_assert_uint_eq(definitions_exchange_binding_count(model, "/", "fan"), 2);
    definitions_remove_queue(model, "/", "a");
    ck_assert_ptr_null(definitions_queue(model, "/", "a"));
    ck_assert_str_eq(route("fan", ""), "b");
    ck_assert_uint_eq(definitions_exchange_binding_count(model, "/", "fan"), 1);
    /* a queue of the same name declared again starts without the old bindings */
    queue("a");
    ck_assert_str_eq(route("fan", ""), "b");
    definitions_remove_exchange(model, "/", "fan");
    ck_assert_ptr_null(definitions_exchange(model, "/", "fan"));
    ck_assert_str_eq(route("fan", ""), "");
    ck_assert_ptr_nonnull(definitions_queue(model, "/", "b"));

    struct exchange_spec auto_delete = {
        .vhost = "/", .name = "temp", .type = EXCHANGE_FANOUT, .auto_delete = true};
    ck_assert_int_eq(definitions_apply_exchange(model, &auto_delete), 0);
    bind("temp", "a", "");
    bind("temp", "b", "");
    struct binding_spec first = {.vhost = "/",
                                 .source = "temp",
                                 .destination_kind = BINDING_TO_QUEUE,
                                 .destination = "a",
                                 .routing_key = ""};
    definitions_remove_binding(model, &first);
    ck_assert_ptr_nonnull(definitions_exchange(model, "/", "temp")); /* one binding left */
    definitions_remove_queue(model, "/", "b");                       /* takes the last one */
    ck_assert_ptr_null(definitions_exchange(model, "/", "temp"));

    /* built-ins are never removed */
    definitions_remove_exchange(model, "/", "amq.direct");
    ck_assert_ptr_nonnull(definitions_exchange(model, "/", "amq.direct"));
}
END_TEST

START_TEST(deleting_an_exchange_with_an_auto_delete_source_binding_to_it)
{
    /* source (auto-delete) -> target twice, and target -> queue: removing
     * target removes both bindings from source, which then goes too */
    struct exchange_spec source = {
        .vhost = "/", .name = "source", .type = EXCHANGE_DIRECT, .auto_delete = true};
    ck_assert_int_eq(definitions_apply_exchange(model, &source), 0);
    exchange("target", EXCHANGE_FANOUT);
    queue("q");
    bind_exchange("source", "target", "k1");
    bind_exchange("source", "target", "k2");
    bind("target", "q", "");
    ck_assert_str_eq(route("source", "k2"), "q");
    definitions_remove_exchange(model, "/", "target");
    ck_assert_ptr_null(definitions_exchange(model, "/", "source"));
    ck_assert_ptr_null(definitions_exchange(model, "/", "target"));
    ck_assert_ptr_nonnull(definitions_queue(model, "/", "q"));
    ck_assert_str_eq(route("source", "k2"), "");
}
END_TEST

START_TEST(records_apply_in_any_order)
{
    /* the binding's record arrives before its exchange's and queue's */
    struct binding_spec early = {.vhost = "/",
                                 .source = "late-x",
                                 .destination_kind = BINDING_TO_QUEUE,
                                 .destination = "late-q",
                                 .routing_key = "k"};
    ck_assert_int_eq(definitions_apply_binding(model, &early), 0);
    ck_assert_ptr_null(definitions_exchange(model, "/", "late-x"));
    ck_assert_str_eq(route("late-x", "k"), "");
    exchange("late-x", EXCHANGE_DIRECT);
    ck_assert_str_eq(route("late-x", "k"), ""); /* the queue is not declared yet */
    queue("late-q");
    ck_assert_str_eq(route("late-x", "k"), "late-q");
    /* applying the same binding again changes nothing */
    ck_assert_int_eq(definitions_apply_binding(model, &early), 0);
    ck_assert_uint_eq(definitions_exchange_binding_count(model, "/", "late-x"), 1);
    /* a re-applied exchange record (upsert) keeps its bindings */
    exchange("late-x", EXCHANGE_DIRECT);
    ck_assert_str_eq(route("late-x", "k"), "late-q");
}
END_TEST

START_TEST(server_named_queues_look_like_rabbitmqs)
{
    char a[64], b[64];
    ck_assert_int_eq(definitions_generate_queue_name(a, sizeof(a)), 0);
    ck_assert_int_eq(definitions_generate_queue_name(b, sizeof(b)), 0);
    ck_assert_uint_eq(strlen(a), strlen("amq.gen-") + 22);
    ck_assert(strncmp(a, "amq.gen-", 8) == 0);
    for (const char *c = a + 8; *c; c++)
        ck_assert_msg(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *c),
            "'%c' in %s", *c, a);
    ck_assert_str_ne(a, b);
    char small[16];
    ck_assert_int_eq(definitions_generate_queue_name(small, sizeof(small)), -1);
}
END_TEST

static Suite *definitions_suite(void)
{
    Suite *suite = suite_create("definitions");
    TCase *checks = tcase_create("checks");
    tcase_add_checked_fixture(checks, setup, teardown);
    tcase_add_test(checks, a_vhost_has_the_built_in_exchanges);
    tcase_add_test(checks, redeclaring_an_exchange_differently_names_the_property);
    tcase_add_test(checks, keep_unroutable_is_a_boolean_exchange_argument);
    tcase_add_test(checks, topic_per_key_is_a_boolean_argument_of_direct_exchanges_only);
    tcase_add_test(checks, passive_reserved_and_default_exchange_rules);
    tcase_add_test(checks, queues_redeclare_exclusive_owner_and_reserved_names);
    tcase_add_test(checks, queue_arguments_are_honoured_or_refused_by_name);
    suite_add_tcase(suite, checks);
    TCase *routing = tcase_create("routing");
    tcase_add_checked_fixture(routing, setup, teardown);
    tcase_add_test(routing, fanout_direct_and_topic_exchanges_route_as_rabbitmq_does);
    tcase_add_test(routing, headers_exchange_routes_by_x_match);
    tcase_add_test(routing, exchange_to_exchange_bindings_compose_and_cycles_end);
    tcase_add_test(routing, deletes_take_their_bindings_and_auto_delete_exchanges_go_with_the_last);
    tcase_add_test(routing, deleting_an_exchange_with_an_auto_delete_source_binding_to_it);
    tcase_add_test(routing, records_apply_in_any_order);
    tcase_add_test(routing, server_named_queues_look_like_rabbitmqs);
    suite_add_tcase(suite, routing);
    return suite;
}

CHECK_MAIN(definitions_suite)
