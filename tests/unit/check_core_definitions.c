/* SPDX-License-Identifier: Apache-2.0 */
/* check_core_definitions.c -- the definitions store (definitions_store.c) and
 * the core's declare API (core_definitions.c) against the embedded mock
 * cluster, driven by a real libevent loop: pending writes in offset order,
 * readiness, read-your-writes declares/binds/deletes, precondition and
 * lock errors, exclusive queues deleted with their session, a second node
 * catching up from the topic, watchers, the export and the definitions
 * file check. */
#include <check.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "core.h"
#include "core_internal.h"
#include "definitions.h"
#include "definitions_export.h"
#include "definitions_store.h"
#include "kafka.h"
#include "metrics.h"
#include "unit_main.h"
#include "worker.h"

/* ---- pending writes in offset order (pure) ------------------------------------ */

START_TEST(test_pending_order)
{
    struct definitions_pending items[5] = {
        {.offset = 7}, {.offset = 3}, {.offset = 9}, {.offset = 3}, {.offset = 5}};
    struct definitions_pending *head = NULL;
    for (int i = 0; i < 5; i++)
        definitions_pending_insert(&head, &items[i]);
    /* ascending, equal offsets in arrival order */
    ck_assert_ptr_eq(head, &items[1]);
    ck_assert_ptr_eq(head->next, &items[3]);
    ck_assert_ptr_eq(head->next->next, &items[4]);
    ck_assert_ptr_null(definitions_pending_take(&head, 2));
    struct definitions_pending *taken = definitions_pending_take(&head, 5);
    ck_assert_ptr_eq(taken, &items[1]);
    ck_assert_ptr_eq(taken->next, &items[3]);
    ck_assert_ptr_eq(taken->next->next, &items[4]);
    ck_assert_ptr_null(taken->next->next->next);
    ck_assert_ptr_eq(head, &items[0]);
    taken = definitions_pending_take(&head, 100);
    ck_assert_ptr_eq(taken, &items[0]);
    ck_assert_ptr_eq(taken->next, &items[2]);
    ck_assert_ptr_null(head);
}
END_TEST

/* ---- a node on the embedded cluster ------------------------------------------------ */

struct node {
    struct metrics *metrics;
    struct config *config;
    struct core *core;
};

struct fixture {
    struct event_base *base;
    struct worker_pool *workers;
    struct kafka *kafka;
    struct metrics *metrics;
    struct config *config;
    struct node a, b;
};

static struct fixture fx;

static const char yaml[] = "node_id: unit\nkafka:\n  bootstrap: embedded\n"
                           "auth: {anonymous: true}\nvhosts:\n  shop: {}\nlog:\n  level: warn\n";

static void node_start(struct node *node)
{
    char err[512];
    node->metrics = metrics_new();
    ck_assert_msg(
        config_load_string("unit.yaml", yaml, strlen(yaml), &node->config, err, sizeof(err)) == 0,
        "%s", err);
    node->core =
        core_new(fx.base, &node->config, fx.kafka, node->metrics, fx.workers, err, sizeof(err));
    ck_assert_msg(node->core != NULL, "%s", err);
}

static void node_stop(struct node *node)
{
    if (!node->core)
        return;
    core_free(node->core);
    metrics_free(node->metrics);
    config_free(node->config);
    memset(node, 0, sizeof(*node));
}

static void setup(void)
{
    char err[512];
    fx.base = event_base_new();
    fx.metrics = metrics_new();
    ck_assert_msg(
        config_load_string("unit.yaml", yaml, strlen(yaml), &fx.config, err, sizeof(err)) == 0,
        "%s", err);
    log_set_level(LOG_LEVEL_WARN);
    fx.workers = worker_pool_new(fx.base, 2, err, sizeof(err));
    ck_assert_msg(fx.workers != NULL, "%s", err);
    fx.kafka = kafka_new(fx.base, fx.config, fx.metrics, fx.workers, err, sizeof(err));
    ck_assert_msg(fx.kafka != NULL, "%s", err);
    node_start(&fx.a);
}

static void teardown(void)
{
    node_stop(&fx.b);
    node_stop(&fx.a);
    worker_pool_free(fx.workers);
    kafka_free(fx.kafka);
    metrics_free(fx.metrics);
    config_free(fx.config);
    event_base_free(fx.base);
}

struct wait_state {
    bool (*cond)(void *);
    void *arg;
    bool expired;
};

static void wait_tick(evutil_socket_t fd, short what, void *arg)
{
    struct wait_state *state = arg;
    if (state->cond(state->arg))
        event_base_loopbreak(fx.base);
}

static void wait_expired(evutil_socket_t fd, short what, void *arg)
{
    struct wait_state *state = arg;
    state->expired = true;
    event_base_loopbreak(fx.base);
}

static bool run_until(bool (*cond)(void *), void *arg, int timeout_ms)
{
    struct wait_state state = {cond, arg, false};
    struct event *tick = event_new(fx.base, -1, EV_PERSIST, wait_tick, &state);
    struct event *deadline = event_new(fx.base, -1, 0, wait_expired, &state);
    struct timeval interval = {0, 5000};
    struct timeval limit = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    event_add(tick, &interval);
    event_add(deadline, &limit);
    while (!cond(arg) && !state.expired)
        event_base_loop(fx.base, EVLOOP_ONCE);
    event_free(tick);
    event_free(deadline);
    return cond(arg);
}

static bool node_ready(void *arg) { return core_definitions_ready(((struct node *)arg)->core); }

/* One answer of a core_declare_* call. */
struct answer {
    int calls;
    int error;
    char reason[512];
    char name[256];
};

static void on_answer(void *opaque, int core_error, const char *reason, const char *name)
{
    struct answer *answer = opaque;
    answer->calls++;
    answer->error = core_error;
    snprintf(answer->reason, sizeof(answer->reason), "%s", reason ? reason : "");
    snprintf(answer->name, sizeof(answer->name), "%s", name ? name : "");
}

static bool answered(void *arg) { return ((struct answer *)arg)->calls > 0; }

/* Wait for the answer and assert it is CORE_OK. */
static void expect_ok(struct answer *answer)
{
    ck_assert_msg(run_until(answered, answer, 10000), "no answer within 10 s");
    ck_assert_msg(answer->error == CORE_OK, "error %d: %s", answer->error, answer->reason);
    ck_assert_int_eq(answer->calls, 1);
}

static struct core_session *session_of(struct node *node)
{
    struct core_session *session =
        core_session_new(node->core, "unit", "anonymous", NULL, "127.0.0.1:1");
    ck_assert_ptr_nonnull(session);
    return session;
}

static void start_a(void) { ck_assert(run_until(node_ready, &fx.a, 10000)); }

START_TEST(test_not_ready_refuses)
{
    /* before the reader caught up (the lookup runs on the worker pool) */
    struct core_session *session = session_of(&fx.a);
    struct exchange_spec spec = {.name = "logs", .type = EXCHANGE_FANOUT, .durable = true};
    struct answer answer = {0};
    char err[256];
    if (!core_definitions_ready(fx.a.core)) {
        ck_assert_int_eq(
            core_declare_exchange(session, &spec, false, on_answer, &answer, err, sizeof(err)),
            CORE_ERR_UNAVAILABLE);
        ck_assert_ptr_nonnull(strstr(err, "not ready"));
        ck_assert_str_ne(core_definitions_not_ready_reason(fx.a.core), "");
    }
    start_a();
    ck_assert_str_eq(core_definitions_not_ready_reason(fx.a.core), "");
    core_session_close(session);
}
END_TEST

START_TEST(test_declare_bind_delete)
{
    start_a();
    struct core_session *session = session_of(&fx.a);
    char err[512];
    struct exchange_spec exchange = {.name = "logs", .type = EXCHANGE_TOPIC, .durable = true};
    struct answer a1 = {0};
    ck_assert_int_eq(
        core_declare_exchange(session, &exchange, false, on_answer, &a1, err, sizeof(err)),
        CORE_OK);
    ck_assert_int_eq(a1.calls, 0); /* never inside the call */
    expect_ok(&a1);
    /* read-your-writes: the view has it when the answer comes */
    const struct exchange_definition *e =
        definitions_exchange(core_definitions(fx.a.core), "/", "logs");
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->spec.type, EXCHANGE_TOPIC);

    struct queue_spec queue = {.name = "q1", .durable = true};
    struct answer a2 = {0};
    ck_assert_int_eq(core_declare_queue(session, &queue, false, on_answer, &a2, err, sizeof(err)),
                     CORE_OK);
    expect_ok(&a2);
    ck_assert_str_eq(a2.name, "q1");

    struct binding_spec binding = {.source = "logs",
                                   .destination_kind = BINDING_TO_QUEUE,
                                   .destination = "q1",
                                   .routing_key = "a.*"};
    struct answer a3 = {0};
    ck_assert_int_eq(core_bind(session, &binding, on_answer, &a3, err, sizeof(err)), CORE_OK);
    expect_ok(&a3);
    ck_assert(definitions_reaches(core_definitions(fx.a.core), "/", "logs", "q1", "a.b", NULL, 0));
    ck_assert(!definitions_reaches(core_definitions(fx.a.core), "/", "logs", "q1", "b.b", NULL, 0));

    /* redeclaring differently: precondition failed, at once, naming the property */
    struct exchange_spec other = exchange;
    other.durable = false;
    struct answer a4 = {0};
    ck_assert_int_eq(
        core_declare_exchange(session, &other, false, on_answer, &a4, err, sizeof(err)),
        CORE_ERR_PRECONDITION);
    ck_assert_ptr_nonnull(strstr(err, "inequivalent arg 'durable'"));
    /* the same again: answered without a write */
    struct answer a5 = {0};
    ck_assert_int_eq(
        core_declare_exchange(session, &exchange, false, on_answer, &a5, err, sizeof(err)),
        CORE_OK);
    expect_ok(&a5);
    /* unknown vhost, reserved name, passive on a missing one */
    struct exchange_spec elsewhere = exchange;
    elsewhere.vhost = "nowhere";
    ck_assert_int_eq(
        core_declare_exchange(session, &elsewhere, false, on_answer, &a5, err, sizeof(err)),
        CORE_ERR_NOT_FOUND);
    struct exchange_spec reserved = {.name = "amq.mine", .type = EXCHANGE_DIRECT};
    ck_assert_int_eq(
        core_declare_exchange(session, &reserved, false, on_answer, &a5, err, sizeof(err)),
        CORE_ERR_ACCESS);
    struct exchange_spec missing = {.name = "missing", .type = EXCHANGE_DIRECT};
    ck_assert_int_eq(
        core_declare_exchange(session, &missing, true, on_answer, &a5, err, sizeof(err)),
        CORE_ERR_NOT_FOUND);

    /* the export shows it (built-ins left out) */
    char *json = definitions_export_json(core_definitions(fx.a.core), true);
    ck_assert_ptr_nonnull(json);
    ck_assert_ptr_nonnull(strstr(json, "\"name\":\"logs\""));
    ck_assert_ptr_nonnull(strstr(json, "\"routing_key\":\"a.*\""));
    ck_assert_ptr_null(strstr(json, "amq.direct"));
    free(json);

    /* if-unused refuses while bound; a delete takes the bindings with it */
    struct answer a6 = {0};
    ck_assert_int_eq(
        core_delete_exchange(session, NULL, "logs", true, on_answer, &a6, err, sizeof(err)),
        CORE_ERR_PRECONDITION);
    ck_assert_int_eq(
        core_delete_exchange(session, NULL, "logs", false, on_answer, &a6, err, sizeof(err)),
        CORE_OK);
    expect_ok(&a6);
    ck_assert_ptr_null(definitions_exchange(core_definitions(fx.a.core), "/", "logs"));
    ck_assert_int_eq(definitions_exchange_binding_count(core_definitions(fx.a.core), "/", "logs"),
                     0);
    struct answer a7 = {0};
    ck_assert_int_eq(
        core_delete_queue(session, NULL, "q1", false, false, on_answer, &a7, err, sizeof(err)),
        CORE_OK);
    expect_ok(&a7);
    ck_assert_ptr_null(definitions_queue(core_definitions(fx.a.core), "/", "q1"));
    ck_assert_int_eq(
        core_delete_queue(session, NULL, "q1", false, true, on_answer, &a7, err, sizeof(err)),
        CORE_ERR_UNSUPPORTED);
    core_session_close(session);
}
END_TEST

static bool queue_gone(void *arg)
{
    return definitions_queue(core_definitions(fx.a.core), "/", arg) == NULL;
}

START_TEST(test_exclusive_queue)
{
    start_a();
    struct core_session *owner = session_of(&fx.a);
    struct core_session *other = session_of(&fx.a);
    char err[512];
    struct queue_spec spec = {.name = "", .exclusive = true, .auto_delete = true};
    struct answer a1 = {0};
    ck_assert_int_eq(core_declare_queue(owner, &spec, false, on_answer, &a1, err, sizeof(err)),
                     CORE_OK);
    expect_ok(&a1);
    ck_assert_msg(strncmp(a1.name, "amq.gen-", 8) == 0, "%s", a1.name);
    const struct queue_definition *queue =
        definitions_queue(core_definitions(fx.a.core), "/", a1.name);
    ck_assert_ptr_nonnull(queue);
    ck_assert_str_eq(queue->spec.owner, "unit/1");
    /* another connection: locked */
    ck_assert_int_eq(core_queue_usable(owner, NULL, a1.name, err, sizeof(err)), CORE_OK);
    ck_assert_int_eq(core_queue_usable(other, NULL, a1.name, err, sizeof(err)), CORE_ERR_LOCKED);
    struct queue_spec passive = {.name = a1.name};
    struct answer a2 = {0};
    ck_assert_int_eq(core_declare_queue(other, &passive, true, on_answer, &a2, err, sizeof(err)),
                     CORE_ERR_LOCKED);
    ck_assert_ptr_nonnull(strstr(err, "locked queue"));
    struct binding_spec binding = {.source = "amq.direct",
                                   .destination_kind = BINDING_TO_QUEUE,
                                   .destination = a1.name,
                                   .routing_key = "k"};
    ck_assert_int_eq(core_bind(other, &binding, on_answer, &a2, err, sizeof(err)), CORE_ERR_LOCKED);
    struct answer a3 = {0};
    ck_assert_int_eq(core_bind(owner, &binding, on_answer, &a3, err, sizeof(err)), CORE_OK);
    expect_ok(&a3);
    /* the owner goes: the queue and its binding go with it */
    char name[256];
    snprintf(name, sizeof(name), "%s", a1.name);
    core_session_close(owner);
    ck_assert(run_until(queue_gone, name, 10000));
    ck_assert_int_eq(
        definitions_exchange_binding_count(core_definitions(fx.a.core), "/", "amq.direct"), 0);
    core_session_close(other);
}
END_TEST

/* Changes to queue "early", counted: [0] declared, [1] removed. */
static void on_early_change(void *opaque, const struct definitions_change *change)
{
    int *counts = opaque;
    if (change->kind == DEFINITIONS_RECORD_QUEUE && strcmp(change->name, "early") == 0)
        counts[change->removed ? 1 : 0]++;
}

static bool early_removed(void *arg) { return ((int *)arg)[1] > 0; }

/* A session that closes before its exclusive declare was answered still
 * deletes the queue, and is not called back. */
START_TEST(test_exclusive_closed_before_answer)
{
    start_a();
    int counts[2] = {0, 0};
    ck_assert_int_eq(definitions_store_watch(fx.a.core->definitions, on_early_change, counts), 0);
    struct core_session *session = session_of(&fx.a);
    char err[512];
    struct queue_spec spec = {.name = "early", .exclusive = true};
    struct answer answer = {0};
    ck_assert_int_eq(
        core_declare_queue(session, &spec, false, on_answer, &answer, err, sizeof(err)), CORE_OK);
    core_session_close(session);
    ck_assert(run_until(early_removed, counts, 10000));
    ck_assert_int_eq(counts[0], 1);
    ck_assert_int_eq(counts[1], 1);
    ck_assert_ptr_null(definitions_queue(core_definitions(fx.a.core), "/", "early"));
    ck_assert_int_eq(answer.calls, 0);
}
END_TEST

static void on_watch(void *opaque, const struct definitions_change *change)
{
    int *count = opaque;
    if (change->kind == DEFINITIONS_RECORD_QUEUE && strcmp(change->name, "watched") == 0 &&
        !change->removed)
        (*count)++;
}

/* Counts tombstones of exchange "temp". */
static void on_exchange_change(void *opaque, const struct definitions_change *change)
{
    if (change->kind == DEFINITIONS_RECORD_EXCHANGE && change->removed &&
        strcmp(change->name, "temp") == 0)
        (*(int *)opaque)++;
}

static bool b_has_queue(void *arg)
{
    return fx.b.core && core_definitions_ready(fx.b.core) &&
           definitions_queue(core_definitions(fx.b.core), "shop", arg) != NULL;
}

START_TEST(test_second_node_and_watchers)
{
    start_a();
    int watched = 0;
    ck_assert_int_eq(definitions_store_watch(fx.a.core->definitions, on_watch, &watched), 0);
    struct core_session *session = session_of(&fx.a);
    char err[512];
    struct queue_spec spec = {.vhost = "shop",
                              .name = "watched",
                              .durable = true,
                              .arguments = json_pack("{s:i}", "x-max-length", 10)};
    struct answer a1 = {0};
    ck_assert_int_eq(core_declare_queue(session, &spec, false, on_answer, &a1, err, sizeof(err)),
                     CORE_OK);
    json_decref(spec.arguments);
    expect_ok(&a1);
    ck_assert_int_eq(watched, 1); /* told before the declare was answered */
    struct exchange_spec exchange = {.vhost = "shop", .name = "orders", .type = EXCHANGE_DIRECT};
    struct answer a2 = {0};
    ck_assert_int_eq(
        core_declare_exchange(session, &exchange, false, on_answer, &a2, err, sizeof(err)),
        CORE_OK);
    expect_ok(&a2);
    struct binding_spec binding = {.vhost = "shop",
                                   .source = "orders",
                                   .destination_kind = BINDING_TO_QUEUE,
                                   .destination = "watched",
                                   .routing_key = "new"};
    struct answer a3 = {0};
    ck_assert_int_eq(core_bind(session, &binding, on_answer, &a3, err, sizeof(err)), CORE_OK);
    expect_ok(&a3);
    definitions_store_unwatch(fx.a.core->definitions, on_watch, &watched);

    /* a second node reads the topic from the beginning and has the same view */
    node_start(&fx.b);
    ck_assert(!core_definitions_ready(fx.b.core));
    ck_assert(run_until(b_has_queue, "watched", 10000));
    char *on_a = definitions_export_json(core_definitions(fx.a.core), true);
    char *on_b = definitions_export_json(core_definitions(fx.b.core), true);
    ck_assert_str_eq(on_a, on_b);
    ck_assert_ptr_nonnull(strstr(on_b, "\"x-max-length\":10"));
    free(on_a);
    free(on_b);
    core_session_close(session);
}
END_TEST

/* Unbinding the last binding of an auto-delete exchange deletes it, in the
 * topic too (a tombstone of its own), not only in the view. */
START_TEST(test_auto_delete_exchange)
{
    start_a();
    struct core_session *session = session_of(&fx.a);
    char err[512];
    struct exchange_spec exchange = {.name = "temp", .type = EXCHANGE_FANOUT, .auto_delete = true};
    struct queue_spec queue = {.name = "tq"};
    struct binding_spec binding = {
        .source = "temp", .destination_kind = BINDING_TO_QUEUE, .destination = "tq"};
    struct answer a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0};
    ck_assert_int_eq(
        core_declare_exchange(session, &exchange, false, on_answer, &a1, err, sizeof(err)),
        CORE_OK);
    expect_ok(&a1);
    ck_assert_int_eq(core_declare_queue(session, &queue, false, on_answer, &a2, err, sizeof(err)),
                     CORE_OK);
    expect_ok(&a2);
    ck_assert_int_eq(core_bind(session, &binding, on_answer, &a3, err, sizeof(err)), CORE_OK);
    expect_ok(&a3);
    ck_assert_int_eq(core_unbind(session, &binding, on_answer, &a4, err, sizeof(err)), CORE_OK);
    expect_ok(&a4);
    ck_assert_ptr_null(definitions_exchange(core_definitions(fx.a.core), "/", "temp"));
    /* the topic holds the exchange's own tombstone: a second node reading it
     * from the beginning applies one */
    int tombstones = 0;
    node_start(&fx.b); /* its reader starts on the loop: watch before running it */
    ck_assert_int_eq(
        definitions_store_watch(fx.b.core->definitions, on_exchange_change, &tombstones), 0);
    ck_assert(run_until(node_ready, &fx.b, 10000));
    ck_assert_int_eq(tombstones, 1);
    ck_assert_ptr_null(definitions_exchange(core_definitions(fx.b.core), "/", "temp"));
    ck_assert_ptr_nonnull(definitions_queue(core_definitions(fx.b.core), "/", "tq"));
    core_session_close(session);
}
END_TEST

START_TEST(test_file_check)
{
    char err[512];
    ck_assert_msg(
        definitions_file_check(TEST_DATA_DIR "/rabbitmq-definitions.json", err, sizeof(err)) == 0,
        "%s", err);
    ck_assert_int_eq(definitions_file_check(TEST_DATA_DIR "/nope.json", err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "nope.json: cannot open"));
    char path[] = "/tmp/check_defs_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    static const char bad[] =
        "{\"queues\":[{\"name\":\"q\",\"vhost\":\"/\",\"durable\":true,"
        "\"auto_delete\":false,\"arguments\":{}}],\"bindings\":[{\"source\":\"ex\","
        "\"vhost\":\"/\",\"destination\":\"q\",\"destination_type\":\"queue\","
        "\"routing_key\":\"k\",\"arguments\":{}}]}";
    ck_assert_int_eq(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
    close(fd);
    ck_assert_int_eq(definitions_file_check(path, err, sizeof(err)), -1);
    unlink(path);
    ck_assert_msg(strstr(err, "bindings[0]: no exchange 'ex' in vhost '/'") != NULL, "%s", err);
}
END_TEST

static Suite *core_definitions_suite(void)
{
    Suite *suite = suite_create("core_definitions");
    TCase *pure = tcase_create("pending");
    tcase_add_test(pure, test_pending_order);
    tcase_add_test(pure, test_file_check);
    suite_add_tcase(suite, pure);
    TCase *node = tcase_create("node");
    tcase_set_timeout(node, 60);
    tcase_add_checked_fixture(node, setup, teardown);
    tcase_add_test(node, test_not_ready_refuses);
    tcase_add_test(node, test_declare_bind_delete);
    tcase_add_test(node, test_exclusive_queue);
    tcase_add_test(node, test_second_node_and_watchers);
    tcase_add_test(node, test_auto_delete_exchange);
    tcase_add_test(node, test_exclusive_closed_before_answer);
    suite_add_tcase(suite, node);
    return suite;
}

CHECK_MAIN(core_definitions_suite)
