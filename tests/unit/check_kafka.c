/* SPDX-License-Identifier: Apache-2.0 */
/* check_kafka.c -- the Kafka layer (kafka.c) against the embedded mock
 * cluster, driven by a real libevent loop: readiness, produce with delivery
 * reports, group consumers with stored/committed offsets, end-offset readers. */
#include <check.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "kafka.h"
#include "metrics.h"
#include "unit_main.h"
#include "worker.h"

struct fixture {
    struct event_base *base;
    struct metrics *metrics;
    struct config *config;
    struct worker_pool *workers;
    struct kafka *kafka;
};

static struct fixture fx;

static void setup(void)
{
    /* A small drain budget: every test also runs the rescheduled drains. */
    static const char yaml[] = "node_id: unit\nkafka:\n  bootstrap: embedded\n"
                               "  drain_budget: 3\n"
                               "  consumer: {session.timeout.ms: 6000}\nlog:\n  level: warn\n";
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
}

static void teardown(void)
{
    worker_pool_free(fx.workers); /* completes Kafka's jobs first */
    kafka_free(fx.kafka);
    metrics_free(fx.metrics);
    config_free(fx.config);
    event_base_free(fx.base);
}

/* Run the loop until cond(arg) holds or timeout_ms passes; returns cond. */
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

static bool is_ready(void *arg) { return kafka_is_ready(fx.kafka); }

/* ---- produce ------------------------------------------------------------- */

struct deliveries {
    int count;
    int errors;
    int32_t partition;
    uint32_t partitions_seen; /* bit per partition */
    int64_t offsets[256];
};

static void on_delivery(void *opaque, int err, int32_t partition, int64_t offset)
{
    struct deliveries *d = opaque;
    if (err) {
        d->errors++;
        return;
    }
    d->partition = partition;
    if (partition >= 0 && partition < 32)
        d->partitions_seen |= 1u << partition;
    d->offsets[d->count++] = offset;
}

static bool deliveries_done_100(void *arg)
{
    struct deliveries *d = arg;
    return d->count + d->errors >= 100;
}

static bool deliveries_done_32(void *arg)
{
    struct deliveries *d = arg;
    return d->count + d->errors >= 32;
}

static void produce_keyed(const char *topic, int from, int to, struct deliveries *d)
{
    for (int i = from; i < to; i++) {
        char value[32];
        snprintf(value, sizeof(value), "message-%d", i);
        struct kafka_header headers[] = {{"message-id", value, strlen(value)},
                                         {"kbridge-null", NULL, 0}};
        ck_assert_int_eq(kafka_produce(fx.kafka, topic, -1, 0, "key-1", 5, value, strlen(value),
                                       headers, 2, on_delivery, d),
                         KAFKA_OK);
    }
}

/* kafka.drain_budget (3 here): one loop iteration serves at most one
 * producer wake-up (its pipe, or its `again` timer: at most both), so at
 * most 2 x 3 delivery reports, however many Kafka has ready; the rest come
 * on later iterations, and all of them come. */
START_TEST(delivery_reports_are_bounded_per_loop_iteration)
{
    ck_assert(run_until(is_ready, NULL, 15000));
    struct deliveries d = {0};
    produce_keyed("unit.budget", 0, 100, &d);
    int most = 0;
    for (int i = 0; i < 100000 && !deliveries_done_100(&d); i++) {
        int before = d.count + d.errors;
        event_base_loop(fx.base, EVLOOP_ONCE);
        int served = d.count + d.errors - before;
        if (served > most)
            most = served;
    }
    ck_assert_int_eq(d.count, 100);
    ck_assert_int_eq(d.errors, 0);
    ck_assert_int_le(most, 6);
    ck_assert_int_ge(most, 1);
    ck_assert_int_eq(kafka_unconfirmed(fx.kafka), 0);
}
END_TEST

START_TEST(becomes_ready_once_metadata_is_fetched)
{
    ck_assert_msg(run_until(is_ready, NULL, 15000), "not ready: %s",
                  kafka_not_ready_reason(fx.kafka));
    ck_assert_str_eq(kafka_not_ready_reason(fx.kafka), "");
    ck_assert(kafka_is_embedded(fx.kafka));
    ck_assert_ptr_nonnull(strstr(kafka_bootstrap(fx.kafka), "127.0.0.1:"));
}
END_TEST

START_TEST(every_produce_gets_one_delivery_report_in_order)
{
    struct deliveries d = {0};
    produce_keyed("unit.produce", 0, 100, &d);
    ck_assert(run_until(deliveries_done_100, &d, 15000));
    ck_assert_int_eq(d.errors, 0);
    ck_assert_int_eq(d.count, 100);
    for (int i = 1; i < 100; i++) /* one key, one partition: consecutive offsets */
        ck_assert_int_eq(d.offsets[i], d.offsets[i - 1] + 1);
    ck_assert_int_eq(kafka_unconfirmed(fx.kafka), 0);
}
END_TEST

/* Records without a key and with a sticky value all go to partition
 * sticky % partitions (one producer's order, architecture §3); with sticky 0 they
 * spread as librdkafka's partitioner places them. */
START_TEST(records_without_key_stay_on_their_sticky_partition)
{
    static const uint32_t stickies[] = {7, 8, 0};
    for (size_t s = 0; s < 3; s++) {
        struct deliveries d = {0};
        for (int i = 0; i < 100; i++) {
            char value[32];
            snprintf(value, sizeof(value), "message-%d", i);
            ck_assert_int_eq(kafka_produce(fx.kafka, "unit.sticky", -1, stickies[s], NULL, 0, value,
                                           strlen(value), NULL, 0, on_delivery, &d),
                             KAFKA_OK);
        }
        ck_assert(run_until(deliveries_done_100, &d, 15000));
        ck_assert_int_eq(d.errors, 0);
        if (stickies[s]) { /* the mock creates 4 partitions */
            ck_assert_uint_eq(d.partitions_seen, 1u << (stickies[s] % 4));
            for (int i = 1; i < 100; i++)
                ck_assert_int_eq(d.offsets[i], d.offsets[i - 1] + 1);
        } else {
            /* random per record: all 100 on one of 4 partitions has odds 4^-99 */
            ck_assert_uint_ne(__builtin_popcount(d.partitions_seen), 1);
        }
    }
}
END_TEST

/* ---- consume ------------------------------------------------------------- */

struct received {
    int count;
    int assigned;
    int revoked;
    int64_t first_offset;
    int64_t last_offset;
    char last_topic[64];
    int32_t last_partition;
    bool headers_ok;
    bool order_ok;
    struct kafka_consumer *consumer;
    bool store;
};

static void on_record(void *opaque, struct kafka_record *record)
{
    struct received *r = opaque;
    char expected[32];
    snprintf(expected, sizeof(expected), "message-%d", r->count);
    if (r->count == 0) {
        r->first_offset = record->offset;
        r->headers_ok = true;
        r->order_ok = true;
    }
    if (record->value_len != strlen(expected) ||
        memcmp(record->value, expected, record->value_len) != 0)
        r->order_ok = false;
    const char *name;
    const void *value;
    size_t value_len;
    if (kafka_record_header_count(record) != 2 ||
        kafka_record_header(record, 0, &name, &value, &value_len) != 0 ||
        strcmp(name, "message-id") != 0 || value_len != strlen(expected) ||
        kafka_record_header(record, 1, &name, &value, &value_len) != 0 || value != NULL ||
        record->key_len != 5 || memcmp(record->key, "key-1", 5) != 0)
        r->headers_ok = false;
    r->last_offset = record->offset;
    r->last_partition = record->partition;
    snprintf(r->last_topic, sizeof(r->last_topic), "%s", record->topic);
    if (r->store)
        ck_assert_int_eq(kafka_consumer_store_offset(r->consumer, record->topic, record->partition,
                                                     record->offset + 1),
                         0);
    r->count++;
    kafka_record_free(record);
}

static void on_assigned(void *opaque, const struct kafka_partition *parts, size_t count)
{
    ((struct received *)opaque)->assigned += (int)count;
}

static void on_revoked(void *opaque, const struct kafka_partition *parts, size_t count)
{
    ((struct received *)opaque)->revoked += (int)count;
}

static const struct kafka_consumer_handlers handlers = {
    .record = on_record, .assigned = on_assigned, .revoked = on_revoked};

static bool received_100(void *arg) { return ((struct received *)arg)->count >= 100; }
static bool received_1(void *arg) { return ((struct received *)arg)->count >= 1; }

START_TEST(group_consumer_gets_records_with_headers_and_resumes_after_commit)
{
    struct deliveries d = {0};
    produce_keyed("unit.group", 0, 100, &d);
    ck_assert(run_until(deliveries_done_100, &d, 15000));

    char err[256];
    struct received r = {.store = true};
    r.consumer = kafka_consumer_new(fx.kafka, "unit-group", NULL, &handlers, &r, err, sizeof(err));
    ck_assert_msg(r.consumer != NULL, "%s", err);
    const char *topics[] = {"unit.group"};
    ck_assert_int_eq(kafka_consumer_subscribe(r.consumer, topics, 1), 0);
    ck_assert_msg(run_until(received_100, &r, 20000), "got %d of 100", r.count);
    ck_assert_int_eq(r.count, 100);
    ck_assert(r.headers_ok);
    ck_assert(r.order_ok);
    ck_assert_int_eq(r.assigned, 4); /* the mock creates 4 partitions */
    ck_assert_int_eq(kafka_consumer_commit(r.consumer), 0);
    kafka_consumer_close(r.consumer); /* async: commits and leaves */

    /* One more record; a new member of the group starts after the commit. */
    struct deliveries more = {0};
    ck_assert_int_eq(kafka_produce(fx.kafka, "unit.group", -1, 0, "key-1", 5, "message-0", 9, NULL,
                                   0, on_delivery, &more),
                     KAFKA_OK);
    struct received again = {.store = false};
    again.consumer =
        kafka_consumer_new(fx.kafka, "unit-group", NULL, &handlers, &again, err, sizeof(err));
    ck_assert_msg(again.consumer != NULL, "%s", err);
    ck_assert_int_eq(kafka_consumer_subscribe(again.consumer, topics, 1), 0);
    ck_assert(run_until(received_1, &again, 30000));
    ck_assert_int_eq(again.first_offset, r.last_offset + 1);
    kafka_consumer_close(again.consumer);
}
END_TEST

/* kafka_consumer_store_offsets (the queue engine's coalesced stores) stores
 * each partition of its list at that entry's own position: a new member of
 * the group starts each partition exactly where it was stored. */
struct positions {
    int count;
    int64_t first[4]; /* the first offset seen per partition; -1: none */
};

static void on_position(void *opaque, struct kafka_record *record)
{
    struct positions *seen = opaque;
    if (record->partition >= 0 && record->partition < 4 && seen->first[record->partition] < 0)
        seen->first[record->partition] = record->offset;
    seen->count++;
    kafka_record_free(record);
}

static bool positions_32(void *arg) { return ((struct positions *)arg)->count >= 32; }
static bool positions_26(void *arg) { return ((struct positions *)arg)->count >= 26; }

START_TEST(stored_offsets_of_several_partitions_are_each_their_own)
{
    struct deliveries d = {0};
    for (int32_t partition = 0; partition < 4; partition++)
        for (int i = 0; i < 8; i++)
            ck_assert_int_eq(kafka_produce(fx.kafka, "unit.stores", partition, 0, "k", 1, "v", 1,
                                           NULL, 0, on_delivery, &d),
                             KAFKA_OK);
    ck_assert(run_until(deliveries_done_32, &d, 15000));
    ck_assert_int_eq(d.errors, 0);

    static const struct kafka_consumer_handlers position_handlers = {.record = on_position};
    const char *topics[] = {"unit.stores"};
    char err[256];
    struct positions first = {.first = {-1, -1, -1, -1}};
    struct kafka_consumer *consumer = kafka_consumer_new(
        fx.kafka, "unit-stores", NULL, &position_handlers, &first, err, sizeof(err));
    ck_assert_msg(consumer != NULL, "%s", err);
    ck_assert_int_eq(kafka_consumer_subscribe(consumer, topics, 1), 0);
    ck_assert_msg(run_until(positions_32, &first, 20000), "got %d of 32", first.count);
    ck_assert_int_eq(first.count, 32);
    /* Partition p is settled up to its first offset + p: 0 + 1 + 2 + 3 of
     * the 32 records stay behind the stored positions. */
    struct kafka_partition_offset offsets[4];
    for (int32_t partition = 0; partition < 4; partition++) {
        ck_assert_int_ge(first.first[partition], 0);
        offsets[partition] = (struct kafka_partition_offset){
            "unit.stores", partition, first.first[partition] + partition, -1};
    }
    ck_assert_int_eq(kafka_consumer_store_offsets(consumer, offsets, 4), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(offsets[i].err, 0);
    ck_assert_int_eq(kafka_consumer_commit(consumer), 0);
    kafka_consumer_close(consumer); /* async: commits and leaves */

    struct positions again = {.first = {-1, -1, -1, -1}};
    consumer = kafka_consumer_new(fx.kafka, "unit-stores", NULL, &position_handlers, &again, err,
                                  sizeof(err));
    ck_assert_msg(consumer != NULL, "%s", err);
    ck_assert_int_eq(kafka_consumer_subscribe(consumer, topics, 1), 0);
    ck_assert_msg(run_until(positions_26, &again, 30000), "got %d of 26", again.count);
    ck_assert_int_eq(again.count, 26);
    for (int32_t partition = 0; partition < 4; partition++)
        ck_assert_int_eq(again.first[partition], first.first[partition] + partition);
    kafka_consumer_close(consumer);
}
END_TEST

/* The same bound for fetched records: at most 2 x 3 records reach the
 * handler per loop iteration, and all 100 come. */
START_TEST(fetched_records_are_bounded_per_loop_iteration)
{
    struct deliveries d = {0};
    produce_keyed("unit.budget.read", 0, 100, &d);
    ck_assert(run_until(deliveries_done_100, &d, 15000));

    char err[256];
    struct received r = {.store = true};
    r.consumer = kafka_consumer_new(fx.kafka, "unit-budget", NULL, &handlers, &r, err, sizeof(err));
    ck_assert_msg(r.consumer != NULL, "%s", err);
    const char *topics[] = {"unit.budget.read"};
    ck_assert_int_eq(kafka_consumer_subscribe(r.consumer, topics, 1), 0);
    int most = 0;
    for (int i = 0; i < 100000 && r.count < 100; i++) {
        int before = r.count;
        event_base_loop(fx.base, EVLOOP_ONCE);
        if (r.count - before > most)
            most = r.count - before;
    }
    ck_assert_int_eq(r.count, 100);
    ck_assert(r.order_ok);
    ck_assert_int_le(most, 6);
    kafka_consumer_close(r.consumer);
}
END_TEST

struct reader_state {
    int markers; /* records with value "marker" received */
    int others;  /* anything else: must stay 0 */
    int produced;
    int ticks;
    struct deliveries d;
};

static void on_reader_record(void *opaque, struct kafka_record *record)
{
    struct reader_state *state = opaque;
    if (record->value_len == 6 && memcmp(record->value, "marker", 6) == 0)
        state->markers++;
    else
        state->others++;
    kafka_record_free(record);
}

static bool reader_got_marker(void *arg)
{
    struct reader_state *state = arg;
    if (state->markers >= 1)
        return true;
    /* keep publishing (every 100 ms) until the reader's end position is in place */
    if (state->ticks++ % 20 == 0 && state->produced < 200) {
        kafka_produce(fx.kafka, "unit.reader", -1, 0, "key-1", 5, "marker", 6, NULL, 0, on_delivery,
                      &state->d);
        state->produced++;
    }
    return false;
}

START_TEST(reader_starts_at_the_end)
{
    struct deliveries old = {0};
    produce_keyed("unit.reader", 0, 100, &old); /* before the reader: must not be seen */
    ck_assert(run_until(deliveries_done_100, &old, 15000));

    static const struct kafka_consumer_handlers reader_handlers = {.record = on_reader_record};
    char err[256];
    struct reader_state state = {0};
    struct kafka_consumer *reader =
        kafka_consumer_new(fx.kafka, NULL, NULL, &reader_handlers, &state, err, sizeof(err));
    ck_assert_msg(reader != NULL, "%s", err);
    ck_assert_int_eq(kafka_consumer_assign_end(reader, "unit.reader", 4), 0);
    ck_assert(run_until(reader_got_marker, &state, 20000));
    ck_assert_int_eq(state.others, 0);
    kafka_consumer_close(reader);
}
END_TEST

/* The admin path that creates a missing reply topic answers, one way or
 * the other, within its timeout: the mock cluster of librdkafka 2.0.2 may
 * not implement CreateTopics, and a real cluster says "created" or "exists". */
START_TEST(create_topic_answers_with_a_named_result)
{
    ck_assert(run_until(is_ready, NULL, 15000));
    char err[256] = "";
    int rc = kafka_create_topic(fx.kafka, "unit.created", 3, err, sizeof(err));
    if (rc != KAFKA_OK)
        ck_assert_msg(err[0] != '\0', "error %d without a reason", rc);
    /* again: an existing topic is not an error on a cluster that creates */
    int again = kafka_create_topic(fx.kafka, "unit.created", 3, err, sizeof(err));
    if (rc == KAFKA_OK)
        ck_assert_int_eq(again, KAFKA_OK);
    ck_assert_int_ne(kafka_create_topic(fx.kafka, "", 3, err, sizeof(err)), KAFKA_OK);
}
END_TEST

/* kafka_new refuses settings that would confirm before Kafka stored a
 * record or commit before the client settled it, naming the setting. */
static void assert_refused(const char *yaml, const char *named)
{
    struct config *config;
    char err[512];
    ck_assert_msg(config_load_string("unit.yaml", yaml, strlen(yaml), &config, err, sizeof(err)) ==
                      0,
                  "%s", err);
    struct event_base *base = event_base_new();
    struct metrics *metrics = metrics_new();
    err[0] = '\0';
    struct kafka *kafka = kafka_new(base, config, metrics, NULL, err, sizeof(err));
    ck_assert_ptr_null(kafka);
    ck_assert_msg(strstr(err, named) != NULL, "error '%s' does not name %s", err, named);
    metrics_free(metrics);
    config_free(config);
    event_base_free(base);
}

/* ---- transactional producers (kafka_transaction.c) ------------------------ */

struct txn_state {
    bool begun;
    bool ended;
    int begin_err;
    int end_err;
    struct kafka_txn *txn;
};

static void on_txn_begin(void *opaque, int err, const char *reason, struct kafka_txn *txn)
{
    struct txn_state *state = opaque;
    state->begun = true;
    state->begin_err = err;
    state->txn = txn;
    ck_assert_msg(err == 0, "begin: %s", reason);
}

static void on_txn_end(void *opaque, int err, const char *reason)
{
    struct txn_state *state = opaque;
    state->ended = true;
    state->end_err = err;
    ck_assert_msg(err == 0, "end: %s", reason);
}

static bool txn_begun(void *arg) { return ((struct txn_state *)arg)->begun; }
static bool txn_ended(void *arg) { return ((struct txn_state *)arg)->ended; }

START_TEST(transactions_commit_and_abort_on_a_bounded_pool)
{
    ck_assert(run_until(is_ready, NULL, 10000));
    fx.config->transactions.producers = 1; /* the pool is made on first use */
    struct txn_state first = {0}, second = {0};
    ck_assert_int_eq(kafka_txn_begin(fx.kafka, on_txn_begin, &first), 0);
    ck_assert_int_eq(kafka_txn_begin(fx.kafka, on_txn_begin, &second), 0);
    ck_assert(run_until(txn_begun, &first, 30000));
    ck_assert_str_eq(kafka_txn_id(first.txn), "kbridge.unit.0");
    /* one producer: the second begin waits for the first transaction's end */
    ck_assert(!run_until(txn_begun, &second, 300));
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(kafka_txn_produce(first.txn, "unit.txn", 7, NULL, 0, "v", 1, NULL, 0),
                         KAFKA_OK);
    ck_assert_int_eq(kafka_txn_commit(first.txn, on_txn_end, &first), 0);
    ck_assert(run_until(txn_ended, &first, 30000));
    ck_assert_int_eq(first.end_err, 0);
    ck_assert(run_until(txn_begun, &second, 30000));
    ck_assert_ptr_eq(second.txn, first.txn);
    ck_assert_int_eq(kafka_txn_produce(second.txn, "unit.txn", 7, NULL, 0, "w", 1, NULL, 0),
                     KAFKA_OK);
    ck_assert_int_eq(kafka_txn_abort(second.txn, on_txn_end, &second), 0);
    ck_assert(run_until(txn_ended, &second, 30000));
    ck_assert_int_eq(second.end_err, 0);
}
END_TEST

START_TEST(refuses_settings_that_break_the_delivery_contract)
{
    assert_refused("node_id: unit\nkafka:\n  bootstrap: embedded\n"
                   "  producer: {acks: \"1\"}\n",
                   "acks=all");
    assert_refused("node_id: unit\nkafka:\n  bootstrap: embedded\n"
                   "  producer: {enable.idempotence: \"false\"}\n",
                   "enable.idempotence=true");
    assert_refused("node_id: unit\nkafka:\n  bootstrap: embedded\n"
                   "  consumer: {enable.auto.offset.store: \"true\"}\n",
                   "enable.auto.offset.store=false");
    assert_refused("node_id: unit\nkafka:\n  bootstrap: embedded\n"
                   "  consumer: {isolation.level: read_uncommitted}\n",
                   "isolation.level=read_committed");
}
END_TEST

/* kbridge's producer lingers 1 ms (KAFKA_PRODUCER_LINGER_MS) unless the
 * config says otherwise, under either name, in kafka.producer or
 * kafka.properties. */
static void assert_linger(const char *yaml, const char *want)
{
    struct config *config;
    char err[512];
    ck_assert_msg(config_load_string("unit.yaml", yaml, strlen(yaml), &config, err, sizeof(err)) ==
                      0,
                  "%s", err);
    struct event_base *base = event_base_new();
    struct metrics *metrics = metrics_new();
    struct kafka *kafka = kafka_new(base, config, metrics, NULL, err, sizeof(err));
    ck_assert_msg(kafka != NULL, "%s", err);
    char value[32] = "";
    ck_assert_int_eq(kafka_producer_property(kafka, "linger.ms", value, sizeof(value)), 0);
    ck_assert_str_eq(value, want);
    ck_assert_int_eq(kafka_producer_property(kafka, "no.such.property", value, sizeof(value)), -1);
    kafka_free(kafka);
    metrics_free(metrics);
    config_free(config);
    event_base_free(base);
}

START_TEST(producer_lingers_1_ms_unless_configured)
{
    assert_linger("node_id: unit\nkafka:\n  bootstrap: embedded\n", "1");
    assert_linger("node_id: unit\nkafka:\n  bootstrap: embedded\n"
                  "  producer: {linger.ms: \"7\"}\n",
                  "7");
    assert_linger("node_id: unit\nkafka:\n  bootstrap: embedded\n"
                  "  properties: {queue.buffering.max.ms: \"9\"}\n",
                  "9");
}
END_TEST

START_TEST(cleanup_policies_that_compact_are_told_apart)
{
    ck_assert(kafka_cleanup_policy_compacts("compact"));
    ck_assert(kafka_cleanup_policy_compacts("compact,delete"));
    ck_assert(kafka_cleanup_policy_compacts("delete, compact"));
    ck_assert(!kafka_cleanup_policy_compacts("delete"));
    ck_assert(!kafka_cleanup_policy_compacts(""));
    ck_assert(!kafka_cleanup_policy_compacts(NULL));
    ck_assert(!kafka_cleanup_policy_compacts("compacted"));
    ck_assert(!kafka_cleanup_policy_compacts("nocompact"));
}
END_TEST

static Suite *kafka_suite(void)
{
    Suite *suite = suite_create("kafka");
    TCase *tc = tcase_create("embedded");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, becomes_ready_once_metadata_is_fetched);
    tcase_add_test(tc, transactions_commit_and_abort_on_a_bounded_pool);
    tcase_add_test(tc, delivery_reports_are_bounded_per_loop_iteration);
    tcase_add_test(tc, every_produce_gets_one_delivery_report_in_order);
    tcase_add_test(tc, records_without_key_stay_on_their_sticky_partition);
    tcase_add_test(tc, group_consumer_gets_records_with_headers_and_resumes_after_commit);
    tcase_add_test(tc, reader_starts_at_the_end);
    tcase_add_test(tc, fetched_records_are_bounded_per_loop_iteration);
    tcase_add_test(tc, stored_offsets_of_several_partitions_are_each_their_own);
    tcase_add_test(tc, create_topic_answers_with_a_named_result);
    suite_add_tcase(suite, tc);
    TCase *contract = tcase_create("contract");
    tcase_add_test(contract, refuses_settings_that_break_the_delivery_contract);
    tcase_add_test(contract, producer_lingers_1_ms_unless_configured);
    tcase_add_test(contract, cleanup_policies_that_compact_are_told_apart);
    suite_add_tcase(suite, contract);
    return suite;
}

CHECK_MAIN(kafka_suite)
