/* SPDX-License-Identifier: Apache-2.0 */
/* topic.c -- non-durable topic subscriptions (architecture §6): one reader per
 * destination per node, with no consumer group, assigned to every partition
 * at the end offsets looked up when the first subscriber arrived, fanning
 * each record out to every local subscriber.
 *
 * A subscription is "ready" once the reader is positioned: everything
 * published after that is delivered. Wildcard readers (`*`, `#`) look for
 * new matching topics every TOPIC_RESCAN_MS and read those from the
 * beginning (they were created after the subscription).
 *
 * Slow subscribers: each has a bounded backlog (topics.max_backlog
 * records); when it is full, topics.slow_subscriber decides: drop-oldest
 * drops its oldest record and counts it (kbridge_topic_dropped_total),
 * disconnect ends the subscription through its failed handler. Records are shared
 * between backlogs with a reference count.
 *
 * Pace: the reader goes at the speed of its fastest subscriber. When every
 * subscriber's backlog is at least half full it pauses its partitions (the
 * records stay in Kafka), and it resumes, where it stopped, as soon as one
 * backlog is down to a quarter. So a burst from Kafka larger than a backlog
 * (librdkafka prefetches far more than one) costs a subscriber that keeps up
 * nothing, memory stays bounded, and only a subscriber that falls more than
 * a backlog behind the fastest one loses records.
 *
 * Backlogs are allocated on demand (TOPIC_BACKLOG_FIRST slots, doubled up to
 * topics.max_backlog), so a subscriber that keeps up, such as a temporary
 * queue waiting for its one reply, holds a few slots rather than the limit.
 *
 * The reply reader (this node's reply topic, architecture §7) routes each
 * record to the one temporary queue named by its token, found in O(1) by
 * request_reply_temp_queue (request_reply.c), not by asking every temporary
 * queue.
 *
 * Two engines (engine.h) live here: "topic" (non-durable subscriptions) and
 * "temporary-queue" (topic_engine_temporary: subscriptions on the node's
 * reply topic that take only their token's records). Both reach the core
 * only through their engine_context. */
#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "engine.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "reply.h"
#include "request_reply.h"
#include "stats.h"
#include "u64_map.h"

#define TOPIC_LINGER_MS 2000
#define TOPIC_RESCAN_MS 5000
#define TOPIC_REPLY_PARTITIONS 4 /* a reply topic kbridge creates */
#define TOPIC_BACKLOG_FIRST 8    /* a backlog's first allocation, in records */
#define TOPIC_BROWSE_CHECK_MS 50 /* how often a browse looks whether it is done */

/* An assigned Kafka topic and, per partition, the offset after the last
 * record received, where fetching goes on after a pause (-1: none yet and
 * reading from the beginning). */
struct topic_assigned {
    char *topic;
    int32_t partition_count;
    int64_t *next_offsets;
    bool *before_start;    /* replay from a time: still skipping older records (NULL: none) */
    int64_t *stop_offsets; /* browse: the end offsets when it started (NULL: none) */
};

/* The topic engine (engine.h) and, inside it, the temporary-queue engine:
 * both serve their subscribers from the readers of `readers`. */
struct topic_engine {
    struct engine base;
    struct engine temporary;
    struct topic_reader *readers;
};

/* A subscriber's state on its reader (core_subscription.engine_state): a
 * bounded backlog of shared records, a ring of backlog_size slots grown on
 * demand up to backlog_capacity (topics.max_backlog), so an idle subscriber
 * costs no backlog. */
struct topic_subscriber {
    struct core_subscription *sub;
    struct topic_subscriber *next; /* in the reader's list (doubly linked) */
    struct topic_subscriber *prev;
    struct topic_reader *reader; /* NULL once detached */
    struct shared_record **backlog;
    uint32_t backlog_head;
    uint32_t backlog_count;
    uint32_t backlog_size;
    uint32_t backlog_capacity;
    bool overflowed; /* backlog full under the disconnect policy */
    bool temporary;  /* a temporary queue: `temp` is registered by its token */
    struct request_reply_temp_queue temp;
};

struct topic_reader {
    struct topic_reader *next;
    struct topic_engine *engine;
    const struct engine_context *context;
    struct destination destination;
    char *prefix; /* its subscribers' vhost's topic prefix (the reply reader: kafka.topic_prefix) */
    struct kafka_consumer *consumer;
    struct kafka_lookup *lookup;
    struct event *rescan_timer;
    struct event *linger_timer;
    struct topic_assigned *topics;
    size_t topic_count;
    bool positioned;
    bool failed;
    bool paused; /* every subscriber is behind: not fetching */
    /* Replay (architecture §13): the reader of one subscription that starts
     * at `start` (x-stream-offset); never shared. */
    bool replay;
    struct stream_offset start;
    /* Browse (architecture §13): the reader of one queue browser, from the
     * queue group's committed offsets to the end offsets at the start; the
     * timer checks whether every partition got there. */
    bool browse;
    bool browse_ended;
    struct topic_browse_lookup *browse_lookup; /* the group lookup under way, or NULL */
    struct event *browse_timer;
    struct topic_subscriber *subscribers;
    size_t subscriber_count;
    struct destination_stats *stats;
    uint64_t *dropped;
    uint64_t *not_selected; /* kbridge_selector_skipped_total */
};

/* A browse's group lookup (kafka_group_lag cannot be cancelled): the
 * answer frees it; a reader freed first only forgets it. */
struct topic_browse_lookup {
    struct topic_reader *reader; /* NULL once the reader is gone */
};

/* A fetched record shared by the subscribers of a topic reader. */
struct shared_record {
    struct kafka_record *record;
    uint32_t refs;
};

static void shared_record_unref(struct shared_record *shared)
{
    if (--shared->refs == 0) {
        kafka_record_free(shared->record);
        free(shared);
    }
}

/* ---- pace ----------------------------------------------------------------------------- */

static void topic_pause_topic(struct topic_reader *reader, const struct topic_assigned *t,
                              bool pause)
{
    for (int32_t p = 0; p < t->partition_count; p++) {
        int rc = pause ? kafka_consumer_pause(reader->consumer, t->topic, p)
                       : kafka_consumer_resume(reader->consumer, t->topic, p, t->next_offsets[p]);
        if (rc != 0)
            log_warn("topic", "%s: cannot %s %s [%d]: %s", reader->destination.name,
                     pause ? "pause" : "resume", t->topic, p, kafka_error_name(rc));
    }
}

static void topic_set_paused(struct topic_reader *reader, bool pause)
{
    if (reader->paused == pause || !reader->consumer)
        return;
    reader->paused = pause;
    double partitions = 0;
    for (size_t i = 0; i < reader->topic_count; i++) {
        topic_pause_topic(reader, &reader->topics[i], pause);
        partitions += reader->topics[i].partition_count;
    }
    if (reader->stats)
        *reader->stats->paused_partitions = pause ? partitions : 0;
    log_debug("topic", "%s: %s fetching (%s)", reader->destination.name,
              pause ? "pausing" : "resuming",
              pause ? "every subscriber is behind" : "a subscriber caught up");
}

/* Every subscriber has at least half a backlog waiting. */
static bool topic_all_behind(const struct topic_reader *reader)
{
    if (reader->subscriber_count == 0)
        return false;
    for (const struct topic_subscriber *sub = reader->subscribers; sub; sub = sub->next)
        if (sub->backlog_count < (sub->backlog_capacity + 1) / 2)
            return false;
    return true;
}

/* ---- subscriber backlogs -------------------------------------------------------- */

static void topic_dispatch(struct topic_subscriber *sub)
{
    const struct engine_context *context = sub->reader ? sub->reader->context : NULL;
    while (sub->reader && !sub->sub->blocked && sub->backlog_count > 0) {
        struct shared_record *shared = sub->backlog[sub->backlog_head];
        sub->backlog_head = (sub->backlog_head + 1) % sub->backlog_size;
        sub->backlog_count--;
        if (engine_record_expired(context, shared->record, false)) {
            if (sub->temporary)
                request_reply_count_expired(context->request_reply);
            shared_record_unref(shared);
            continue;
        }
        struct core_delivery delivery;
        engine_delivery_from_record(context, &delivery, sub->sub, shared->record, 0, 1);
        if (sub->temporary)
            request_reply_complete_reply(context->request_reply, &delivery);
        else
            request_reply_complete_request(context->request_reply, &delivery);
        if (sub->reader->stats)
            (*sub->reader->stats->delivered)++;
        context->deliver(sub->sub, &delivery);
        shared_record_unref(shared);
    }
    /* Caught up enough: the reader fetches again (sub->reader is NULL once detached). */
    struct topic_reader *reader = sub->reader;
    if (reader && reader->paused && sub->backlog_count <= sub->backlog_capacity / 4)
        topic_set_paused(reader, false);
}

/* Double a full backlog's ring (up to its capacity), oldest record first. */
static int topic_backlog_grow(struct topic_subscriber *sub)
{
    uint64_t want = sub->backlog_size ? (uint64_t)sub->backlog_size * 2 : TOPIC_BACKLOG_FIRST;
    uint32_t size = want < sub->backlog_capacity ? (uint32_t)want : sub->backlog_capacity;
    struct shared_record **ring = malloc(size * sizeof(*ring));
    if (!ring)
        return -1;
    for (uint32_t i = 0; i < sub->backlog_count; i++)
        ring[i] = sub->backlog[(sub->backlog_head + i) % sub->backlog_size];
    free(sub->backlog);
    sub->backlog = ring;
    sub->backlog_size = size;
    sub->backlog_head = 0;
    return 0;
}

static void topic_backlog_push(struct topic_reader *reader, struct topic_subscriber *sub,
                               struct shared_record *shared)
{
    if (sub->overflowed)
        return; /* ended by the disconnect policy; the adapter is closing it */
    if (sub->backlog_count == sub->backlog_capacity &&
        strcmp(engine_config(reader->context)->topics.slow_subscriber, "disconnect") == 0) {
        char reason[256];
        snprintf(reason, sizeof(reason),
                 "slow subscriber: %u messages waiting for this subscription "
                 "(topics.max_backlog; topics.slow_subscriber is disconnect)",
                 sub->backlog_capacity);
        sub->overflowed = true;
        (*reader->dropped)++;
        reader->context->failed(sub->sub, CORE_ERR_BUSY, reason);
        return;
    }
    if (sub->backlog_count == sub->backlog_capacity) {
        shared_record_unref(sub->backlog[sub->backlog_head]);
        sub->backlog_head = (sub->backlog_head + 1) % sub->backlog_size;
        sub->backlog_count--;
        (*reader->dropped)++;
    } else if (sub->backlog_count == sub->backlog_size && topic_backlog_grow(sub) < 0) {
        log_error("topic", "%s: out of memory growing a backlog; record dropped",
                  reader->destination.name);
        (*reader->dropped)++;
        return;
    }
    uint32_t tail = (sub->backlog_head + sub->backlog_count) % sub->backlog_size;
    sub->backlog[tail] = shared;
    sub->backlog_count++;
    shared->refs++;
}

static void topic_backlog_clear(struct topic_subscriber *sub)
{
    while (sub->backlog_count > 0) {
        shared_record_unref(sub->backlog[sub->backlog_head]);
        sub->backlog_head = (sub->backlog_head + 1) % sub->backlog_size;
        sub->backlog_count--;
    }
    free(sub->backlog);
    sub->backlog = NULL;
    sub->backlog_size = 0;
    sub->backlog_head = 0;
}

/* ---- the reader --------------------------------------------------------------------- */

static struct topic_assigned *topic_find(struct topic_reader *reader, const char *topic)
{
    for (size_t i = 0; i < reader->topic_count; i++)
        if (strcmp(reader->topics[i].topic, topic) == 0)
            return &reader->topics[i];
    return NULL;
}

static bool topic_is_reply_reader(const struct topic_reader *reader)
{
    return strncmp(reader->destination.name, REPLY_TOPIC_BASE, strlen(REPLY_TOPIC_BASE)) == 0;
}

/* ---- temporary queues on the reply reader ------------------------------------------ */

static struct topic_subscriber *topic_subscriber_of_temp(struct request_reply_temp_queue *temp)
{
    return temp
               ? (struct topic_subscriber *)((char *)temp - offsetof(struct topic_subscriber, temp))
               : NULL;
}

/* A record of this node's reply topic: to the temporary queue its token
 * names, or counted as dropped (unknown, forged or gone). */
static void topic_route_reply(struct topic_reader *reader, struct shared_record *shared)
{
    size_t length = 0;
    struct request_reply *rr = reader->context->request_reply;
    const char *token = request_reply_token(shared->record, &length);
    struct topic_subscriber *sub =
        token ? topic_subscriber_of_temp(request_reply_temp_queue(rr, token, length)) : NULL;
    request_reply_count(rr, shared->record, sub != NULL);
    if (!sub)
        return;
    topic_backlog_push(reader, sub, shared);
    topic_dispatch(sub);
    if (!reader->paused && topic_all_behind(reader))
        topic_set_paused(reader, true);
}

/* A reply made on this node for one of its temporary queues (replies.local,
 * architecture §7): routed as if the reply reader had fetched it. */
static void topic_engine_deliver_local(struct engine *engine, struct kafka_record *record)
{
    struct request_reply *rr = engine->context->request_reply;
    size_t length = 0;
    const char *token = request_reply_token(record, &length);
    struct topic_subscriber *sub =
        token ? topic_subscriber_of_temp(request_reply_temp_queue(rr, token, length)) : NULL;
    struct shared_record *shared = sub && sub->reader ? calloc(1, sizeof(*shared)) : NULL;
    if (!shared) {
        if (sub && sub->reader)
            log_error("topic", "out of memory; a local reply is dropped");
        request_reply_count(rr, record, false); /* its temporary queue is gone */
        kafka_record_free(record);
        return;
    }
    shared->record = record;
    shared->refs = 1;
    topic_route_reply(sub->reader, shared);
    shared_record_unref(shared);
}

static void topic_on_record(void *opaque, struct kafka_record *record)
{
    struct topic_reader *reader = opaque;
    struct topic_assigned *t = topic_find(reader, record->topic);
    if (t && record->partition >= 0 && record->partition < t->partition_count) {
        t->next_offsets[record->partition] = record->offset + 1; /* where a resume goes on */
        if (t->stop_offsets && record->offset >= t->stop_offsets[record->partition]) {
            kafka_record_free(record); /* browse: arrived after the browse started */
            return;
        }
        if (t->before_start && t->before_start[record->partition]) {
            /* replay from a time: Kafka's offsets_for_times, done as a scan
             * (the first record at or after the time, per partition) */
            if (record->timestamp_ms >= 0 && record->timestamp_ms < reader->start.value) {
                kafka_record_free(record);
                return;
            }
            t->before_start[record->partition] = false;
        }
    }
    struct shared_record *shared = calloc(1, sizeof(*shared));
    if (!shared) {
        log_error("topic", "%s: out of memory; record dropped", reader->destination.name);
        kafka_record_free(record);
        return;
    }
    shared->record = record;
    shared->refs = 1; /* ours, for the fan-out below */
    if (topic_is_reply_reader(reader)) {
        topic_route_reply(reader, shared);
        shared_record_unref(shared);
        return;
    }
    /* every subscriber of a positioned reader has been told it is ready */
    for (struct topic_subscriber *sub = reader->subscribers; sub; sub = sub->next) {
        if (sub->sub->destination.wildcard &&
            (!reader->context->may_consume_topic(sub->sub, record->topic) ||
             request_reply_topic_is_reserved(reader->context->request_reply, record->topic))) {
            continue; /* not allowed, or another node's replies */
        }
        if (!engine_record_selected(sub->sub, record)) {
            (*reader->not_selected)++;
            continue; /* its selector does not select it (architecture §13) */
        }
        topic_backlog_push(reader, sub, shared);
    }
    struct topic_subscriber *sub = reader->subscribers;
    while (sub) {
        struct topic_subscriber *next = sub->next;
        topic_dispatch(sub);
        sub = next;
    }
    shared_record_unref(shared);
    if (!reader->paused && topic_all_behind(reader))
        topic_set_paused(reader, true);
}

/* Passing consumer errors are logged; Kafka refusing the topic ends the
 * reader's subscriptions as access refused (see queue_on_consumer_error). */
static void topic_on_error(void *opaque, int err, const char *reason)
{
    struct topic_reader *reader = opaque;
    log_warn("topic", "%s: %s", reader->destination.name, reason);
    if (kafka_error_classify(err) != KAFKA_CLASS_AUTHORIZATION)
        return;
    char text[512];
    snprintf(text, sizeof(text), "Kafka refused topic %s: %s", reader->destination.name, reason);
    for (struct topic_subscriber *sub = reader->subscribers; sub;) {
        struct topic_subscriber *next = sub->next;
        reader->context->failed(sub->sub, CORE_ERR_ACCESS, text);
        sub = next;
    }
}

static const struct kafka_consumer_handlers topic_consumer_handlers = {
    .record = topic_on_record,
    .error = topic_on_error,
};

static int topic_assign(struct topic_reader *reader, const struct kafka_topic_info *info,
                        bool from_beginning)
{
    struct topic_assigned *grown =
        realloc(reader->topics, (reader->topic_count + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    reader->topics = grown;
    struct topic_assigned *t = &reader->topics[reader->topic_count];
    *t = (struct topic_assigned){0};
    t->partition_count = info->partition_count;
    t->topic = strdup(info->topic);
    t->next_offsets = calloc((size_t)info->partition_count + 1, sizeof(*t->next_offsets));
    int64_t *offsets = calloc((size_t)info->partition_count + 1, sizeof(*offsets));
    if (!t->topic || !t->next_offsets || !offsets) {
        free(t->topic);
        free(t->next_offsets);
        free(offsets);
        return -1;
    }
    bool from_time = reader->replay && reader->start.kind == STREAM_OFFSET_TIMESTAMP;
    if (from_time && !(t->before_start = calloc((size_t)info->partition_count + 1, 1))) {
        free(t->topic);
        free(t->next_offsets);
        free(offsets);
        return -1;
    }
    for (int32_t p = 0; p < info->partition_count; p++) {
        if (reader->replay && reader->start.kind != STREAM_OFFSET_NEXT) {
            /* the start of the log is not known here: the beginning stands for it */
            int64_t end = info->end_offsets[p];
            int64_t at = stream_offset_position(&reader->start, 0, end);
            bool beginning = reader->start.kind == STREAM_OFFSET_FIRST || from_time;
            offsets[p] = beginning ? kafka_offset_beginning() : at;
            t->next_offsets[p] = beginning ? -1 : at;
            if (from_time)
                t->before_start[p] = true;
            continue;
        }
        offsets[p] = from_beginning ? kafka_offset_beginning() : info->end_offsets[p];
        t->next_offsets[p] = from_beginning ? -1 : info->end_offsets[p];
    }
    int rc =
        kafka_consumer_assign_at(reader->consumer, info->topic, offsets, info->partition_count);
    free(offsets);
    if (rc != 0) {
        log_warn("topic", "%s: cannot read %s: %s", reader->destination.name, info->topic,
                 kafka_error_name(rc));
        free(t->topic);
        free(t->next_offsets);
        free(t->before_start);
        return -1;
    }
    reader->topic_count++;
    if (reader->paused) /* a new topic of a wildcard while every subscriber is behind */
        topic_pause_topic(reader, t, true);
    log_debug("topic", "%s: reading %s (%d partitions) from %s", reader->destination.name,
              info->topic, info->partition_count, from_beginning ? "the beginning" : "the end");
    return 0;
}

static void topic_on_lookup(void *opaque, int err, const struct kafka_topic_info *topics,
                            size_t count)
{
    struct topic_reader *reader = opaque;
    reader->lookup = NULL;
    if (err) {
        char reason[512];
        snprintf(reason, sizeof(reason), "cannot read topic %s: %s", reader->destination.name,
                 kafka_error_name(err));
        log_warn("topic", "%s", reason);
        if (!reader->positioned) {
            reader->failed = true;
            for (struct topic_subscriber *sub = reader->subscribers; sub;) {
                struct topic_subscriber *next = sub->next;
                reader->context->failed(sub->sub, engine_error_from_kafka(err), reason);
                sub = next;
            }
        }
        return;
    }
    bool first = !reader->positioned;
    for (size_t i = 0; i < count; i++)
        if (!topic_find(reader, topics[i].topic))
            topic_assign(reader, &topics[i], !first);
    if (first) {
        reader->positioned = true;
        for (struct topic_subscriber *sub = reader->subscribers; sub; sub = sub->next)
            reader->context->ready(sub->sub);
    }
}

/* ---- browsing a queue (architecture §13) ------------------------------- */

/* Has the browse read everything up to where it stops, on every partition? */
static bool topic_browse_done(struct topic_reader *reader)
{
    for (size_t i = 0; i < reader->topic_count; i++) {
        struct topic_assigned *t = &reader->topics[i];
        for (int32_t p = 0; p < t->partition_count; p++) {
            int64_t stop = t->stop_offsets[p];
            if (t->next_offsets[p] >= stop)
                continue;
            /* past control records (transaction markers) that never arrive */
            if (kafka_consumer_position(reader->consumer, t->topic, p) >= stop)
                continue;
            return false;
        }
    }
    return true;
}

static void topic_on_browse_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct topic_reader *reader = arg;
    if (reader->browse_ended || !reader->positioned || !topic_browse_done(reader))
        return;
    /* every record up to the stop is in the backlogs: end once they are out */
    for (struct topic_subscriber *sub = reader->subscribers; sub; sub = sub->next)
        if (sub->backlog_count > 0)
            return;
    reader->browse_ended = true;
    event_del(reader->browse_timer);
    for (struct topic_subscriber *sub = reader->subscribers, *next; sub; sub = next) {
        next = sub->next;
        reader->context->browse_end(sub->sub);
    }
}

/* The group's committed offsets and the end offsets: read from the one to
 * the other (from what Kafka keeps where the group has committed nothing). */
static void topic_on_browse_lookup(void *opaque, int err, const char *reason,
                                   const struct kafka_partition_lag *parts, size_t count)
{
    struct topic_browse_lookup *lookup = opaque;
    struct topic_reader *reader = lookup->reader;
    free(lookup);
    if (!reader)
        return; /* freed meanwhile */
    reader->browse_lookup = NULL;
    int32_t partitions = 0;
    for (size_t i = 0; i < count; i++)
        if (parts[i].partition + 1 > partitions)
            partitions = parts[i].partition + 1;
    struct topic_assigned t = {0};
    int64_t *offsets = NULL;
    if (!err && count > 0) {
        t.topic = strdup(parts[0].topic);
        t.partition_count = partitions;
        t.next_offsets = calloc((size_t)partitions + 1, sizeof(*t.next_offsets));
        t.stop_offsets = calloc((size_t)partitions + 1, sizeof(*t.stop_offsets));
        offsets = calloc((size_t)partitions + 1, sizeof(*offsets));
        if (!t.topic || !t.next_offsets || !t.stop_offsets || !offsets)
            err = -1;
    }
    for (size_t i = 0; !err && i < count; i++) {
        int32_t p = parts[i].partition;
        int64_t from = parts[i].committed >= 0 ? parts[i].committed : parts[i].low;
        if (from < parts[i].low)
            from = parts[i].low; /* committed below what Kafka still keeps */
        offsets[p] = from >= 0 ? from : kafka_offset_beginning();
        t.next_offsets[p] = from;
        t.stop_offsets[p] = parts[i].end;
    }
    struct topic_assigned *grown = NULL;
    if (!err && count > 0 &&
        (!(grown = realloc(reader->topics, (reader->topic_count + 1) * sizeof(*grown))) ||
         kafka_consumer_assign_at(reader->consumer, t.topic, offsets, partitions) != 0))
        err = -1;
    if (grown)
        reader->topics = grown;
    free(offsets);
    if (err) {
        free(t.topic);
        free(t.next_offsets);
        free(t.stop_offsets);
        char text[512];
        snprintf(text, sizeof(text), "cannot browse queue %s: %s", reader->destination.name,
                 reason && reason[0] ? reason : "out of memory");
        log_warn("topic", "%s", text);
        reader->failed = true;
        for (struct topic_subscriber *sub = reader->subscribers, *next; sub; sub = next) {
            next = sub->next;
            reader->context->failed(sub->sub, CORE_ERR_UNAVAILABLE, text);
        }
        return;
    }
    if (count > 0)
        reader->topics[reader->topic_count++] = t;
    reader->positioned = true;
    for (struct topic_subscriber *sub = reader->subscribers; sub; sub = sub->next)
        reader->context->ready(sub->sub);
    struct timeval interval = {0, TOPIC_BROWSE_CHECK_MS * 1000};
    event_add(reader->browse_timer, &interval);
}

static int topic_start_browse(struct topic_reader *reader, const char *vhost)
{
    char topic[ADDRESS_NAME_MAX + 1], err[256], group[ADDRESS_GROUP_ID_MAX + 1];
    if (address_kafka_topic(&reader->destination, reader->prefix, topic, sizeof(topic), err,
                            sizeof(err)) < 0 ||
        address_group_id(vhost, "q", reader->destination.name, NULL, group, sizeof(group)) < 0)
        return -1;
    struct topic_browse_lookup *lookup = calloc(1, sizeof(*lookup));
    reader->browse_timer =
        event_new(reader->context->base, -1, EV_PERSIST, topic_on_browse_timer, reader);
    if (!lookup || !reader->browse_timer) {
        free(lookup);
        return -1;
    }
    char *topics[1] = {topic};
    lookup->reader = reader;
    if (kafka_group_lag(reader->context->kafka, group, topics, 1, topic_on_browse_lookup, lookup) <
        0) {
        free(lookup);
        return -1;
    }
    reader->browse_lookup = lookup;
    return 0;
}

static int topic_start_lookup(struct topic_reader *reader)
{
    if (reader->destination.wildcard) {
        struct address_filter filter;
        if (address_filter_init(&filter, reader->prefix, reader->destination.name) < 0)
            return -1;
        reader->lookup =
            kafka_lookup_end_offsets(reader->context->kafka, NULL, address_filter_match, &filter,
                                     sizeof(filter), topic_on_lookup, reader);
    } else {
        char topic[ADDRESS_NAME_MAX + 1], err[256];
        if (address_kafka_topic(&reader->destination, reader->prefix, topic, sizeof(topic), err,
                                sizeof(err)) < 0)
            return -1;
        /* A node's reply topic is created when missing (auto-creation may be off). */
        reader->lookup = topic_is_reply_reader(reader)
                             ? kafka_lookup_end_offsets_or_create(reader->context->kafka, topic,
                                                                  TOPIC_REPLY_PARTITIONS,
                                                                  topic_on_lookup, reader)
                             : kafka_lookup_end_offsets(reader->context->kafka, topic, NULL, NULL,
                                                        0, topic_on_lookup, reader);
    }
    return reader->lookup ? 0 : -1;
}

static void topic_on_rescan(evutil_socket_t fd, short what, void *arg)
{
    struct topic_reader *reader = arg;
    if (!reader->lookup && reader->positioned)
        topic_start_lookup(reader);
}

static void topic_reader_free(struct topic_reader *reader)
{
    for (struct topic_reader **link = &reader->engine->readers; *link; link = &(*link)->next) {
        if (*link == reader) {
            *link = reader->next;
            break;
        }
    }
    kafka_lookup_cancel(reader->lookup);
    if (reader->consumer)
        kafka_consumer_close(reader->consumer);
    if (reader->rescan_timer)
        event_free(reader->rescan_timer);
    if (reader->linger_timer)
        event_free(reader->linger_timer);
    for (size_t i = 0; i < reader->topic_count; i++) {
        free(reader->topics[i].topic);
        free(reader->topics[i].next_offsets);
        free(reader->topics[i].before_start);
        free(reader->topics[i].stop_offsets);
    }
    if (reader->browse_lookup)
        reader->browse_lookup->reader = NULL;
    if (reader->browse_timer)
        event_free(reader->browse_timer);
    free(reader->topics);
    if (reader->stats) {
        *reader->stats->consumers = 0;
        *reader->stats->paused_partitions = 0;
    }
    free(reader->prefix);
    free(reader);
}

static void topic_on_linger(evutil_socket_t fd, short what, void *arg)
{
    struct topic_reader *reader = arg;
    if (reader->subscriber_count == 0)
        topic_reader_free(reader);
}

/* A reader of `destination`; `replay` (or NULL): a replay subscription's own,
 * starting there; `browse`: a queue browser's own. */
static struct topic_reader *topic_reader_create(struct topic_engine *engine,
                                                const struct destination *destination,
                                                const char *vhost, const char *prefix,
                                                const struct stream_offset *replay, bool browse,
                                                char *err, size_t err_size)
{
    const struct engine_context *context = engine->base.context;
    struct topic_reader *reader = calloc(1, sizeof(*reader));
    if (!reader || !(reader->prefix = strdup(prefix))) {
        free(reader);
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    reader->engine = engine;
    reader->context = context;
    reader->destination = *destination;
    if (replay) {
        reader->replay = true;
        reader->start = *replay;
    }
    reader->browse = browse;
    reader->stats = stats_get(context->stats, DESTINATION_TOPIC, vhost, destination->name);
    reader->dropped =
        metrics_counter(context->metrics, "kbridge_topic_dropped_total",
                        "Records dropped for slow topic subscribers (drop-oldest).", NULL);
    reader->not_selected = metrics_counter(
        context->metrics, "kbridge_selector_skipped_total",
        "Topic records a subscriber's message selector did not select (one per subscriber).", NULL);
    reader->linger_timer = event_new(context->base, -1, 0, topic_on_linger, reader);
    reader->rescan_timer = event_new(context->base, -1, EV_PERSIST, topic_on_rescan, reader);
    if (!reader->dropped || !reader->not_selected || !reader->linger_timer ||
        !reader->rescan_timer) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    reader->consumer = kafka_consumer_new(context->kafka, NULL, NULL, &topic_consumer_handlers,
                                          reader, err, err_size);
    if (!reader->consumer)
        goto fail;
    if ((browse ? topic_start_browse(reader, vhost) : topic_start_lookup(reader)) < 0) {
        snprintf(err, err_size, "cannot look up topic %s", destination->name);
        goto fail;
    }
    if (destination->wildcard) {
        struct timeval interval = {TOPIC_RESCAN_MS / 1000, (TOPIC_RESCAN_MS % 1000) * 1000};
        event_add(reader->rescan_timer, &interval);
    }
    reader->next = engine->readers;
    engine->readers = reader;
    return reader;
fail:
    topic_reader_free(reader);
    return NULL;
}

/* Attach `sub` to the reader of its destination (created on first use);
 * `temporary`: a temporary queue on the node's reply topic, registered by
 * its token. */
static int topic_subscribe(struct topic_engine *engine, struct core_subscription *core_sub,
                           bool temporary, char *err, size_t err_size)
{
    const struct engine_context *context = engine->base.context;
    struct topic_subscriber *sub = core_sub->engine_state;
    sub->sub = core_sub;
    struct topic_reader *reader = NULL;
    bool own = core_sub->replay || core_sub->options.browse; /* a reader of its own */
    /* the node's reply topic is under kafka.topic_prefix whatever the vhost */
    const char *prefix =
        temporary ? engine_config(context)->kafka.topic_prefix : core_sub->topic_prefix;
    for (struct topic_reader *r = engine->readers; r && !own; r = r->next)
        if (!r->failed && !r->replay && !r->browse &&
            strcmp(r->destination.name, core_sub->destination.name) == 0 &&
            strcmp(r->prefix, prefix) == 0)
            reader = r;
    if (!reader) {
        reader = topic_reader_create(engine, &core_sub->destination, core_sub->vhost, prefix,
                                     core_sub->replay ? &core_sub->stream_offset : NULL,
                                     core_sub->options.browse, err, err_size);
        if (!reader)
            return CORE_ERR_UNAVAILABLE;
    }
    if (temporary) {
        sub->temporary = true;
        sub->temp.token = core_sub->reply_token;
        if (request_reply_temp_queue_add(context->request_reply, &sub->temp) < 0) {
            snprintf(err, err_size, "out of memory");
            if (reader->subscriber_count == 0 && !topic_is_reply_reader(reader)) {
                /* do not keep a reader nobody uses */
                struct timeval linger = {TOPIC_LINGER_MS / 1000, (TOPIC_LINGER_MS % 1000) * 1000};
                event_add(reader->linger_timer, &linger);
            }
            return CORE_ERR_INTERNAL;
        }
    }
    sub->backlog_capacity = engine_config(context)->topics.max_backlog; /* allocated on demand */
    event_del(reader->linger_timer);
    sub->reader = reader;
    sub->prev = NULL;
    sub->next = reader->subscribers;
    if (reader->subscribers)
        reader->subscribers->prev = sub;
    reader->subscribers = sub;
    reader->subscriber_count++;
    if (reader->stats)
        *reader->stats->consumers = (double)reader->subscriber_count;
    if (reader->paused) /* the newcomer is not behind */
        topic_set_paused(reader, false);
    if (reader->positioned)
        context->ready(core_sub);
    return CORE_OK;
}

static int topic_engine_subscribe(struct engine *base, struct core_subscription *sub, char *err,
                                  size_t err_size)
{
    return topic_subscribe((struct topic_engine *)base, sub, false, err, err_size);
}

static int topic_engine_subscribe_temporary(struct engine *base, struct core_subscription *sub,
                                            char *err, size_t err_size)
{
    struct topic_engine *engine =
        (struct topic_engine *)((char *)base - offsetof(struct topic_engine, temporary));
    return topic_subscribe(engine, sub, true, err, err_size);
}

static void topic_engine_unsubscribe(struct core_subscription *core_sub, bool forget)
{
    (void)forget; /* a non-durable subscription has nothing to forget */
    struct topic_subscriber *sub = core_sub->engine_state;
    struct topic_reader *reader = sub->reader;
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        reader->subscribers = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    sub->reader = NULL;
    if (sub->temporary)
        request_reply_temp_queue_remove(reader->context->request_reply, &sub->temp);
    topic_backlog_clear(sub);
    reader->subscriber_count--;
    if (reader->stats)
        *reader->stats->consumers = (double)reader->subscriber_count;
    /* The one that was behind may have left; with nobody left, go back to
     * the head (and drop what comes) so that a new subscriber starts there. */
    if (reader->paused && !topic_all_behind(reader))
        topic_set_paused(reader, false);
    /* A node's reply reader stays once started: replies to temporary queues
     * that are gone must still be read to be counted as dropped. */
    if (reader->subscriber_count == 0 && !topic_is_reply_reader(reader)) {
        struct timeval linger = {TOPIC_LINGER_MS / 1000, (TOPIC_LINGER_MS % 1000) * 1000};
        event_add(reader->linger_timer, &linger);
    }
}

static void topic_engine_block(struct core_subscription *core_sub, bool blocked)
{
    if (!blocked)
        topic_dispatch(core_sub->engine_state);
}

static size_t topic_engine_subscriber_count(const struct core_subscription *core_sub)
{
    const struct topic_subscriber *sub = core_sub->engine_state;
    return sub->reader ? sub->reader->subscriber_count : 0;
}

static void topic_engine_free(struct engine *base)
{
    struct topic_engine *engine = (struct topic_engine *)base;
    if (!engine)
        return;
    while (engine->readers)
        topic_reader_free(engine->readers);
    free(engine);
}

static void topic_engine_free_temporary(struct engine *base)
{
    (void)base; /* part of its topic engine, freed with it */
}

/* Non-durable topic deliveries carry nothing to settle: settle is NULL. */
static const struct engine_ops topic_engine_ops = {
    .name = "topic",
    .state_size = sizeof(struct topic_subscriber),
    .subscribe = topic_engine_subscribe,
    .block = topic_engine_block,
    .unsubscribe = topic_engine_unsubscribe,
    .subscriber_count = topic_engine_subscriber_count,
    .free = topic_engine_free,
};

static const struct engine_ops topic_engine_temporary_ops = {
    .name = "temporary-queue",
    .state_size = sizeof(struct topic_subscriber),
    .subscribe = topic_engine_subscribe_temporary,
    .block = topic_engine_block,
    .unsubscribe = topic_engine_unsubscribe,
    .subscriber_count = topic_engine_subscriber_count,
    .deliver_local = topic_engine_deliver_local,
    .free = topic_engine_free_temporary,
};

struct engine *topic_engine_new(const struct engine_context *context, char *err, size_t err_size)
{
    struct topic_engine *engine = calloc(1, sizeof(*engine));
    if (!engine) {
        snprintf(err, err_size, "topic engine: out of memory");
        return NULL;
    }
    engine->base.ops = &topic_engine_ops;
    engine->base.context = context;
    engine->temporary.ops = &topic_engine_temporary_ops;
    engine->temporary.context = context;
    return &engine->base;
}

struct engine *topic_engine_temporary(struct engine *topic_engine)
{
    return &((struct topic_engine *)topic_engine)->temporary;
}
