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
 * record to the one temporary queue named by its token, found in
 * `temp_queues` (a u64_map keyed by the token's hash, chained on
 * collisions), not by asking every temporary queue. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core_internal.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "reply.h"
#include "u64_map.h"

#define TOPIC_LINGER_MS 2000
#define TOPIC_RESCAN_MS 5000
#define TOPIC_REPLY_PARTITIONS 4 /* a reply topic kbridge creates */
#define TOPIC_BACKLOG_FIRST 8    /* a backlog's first allocation, in records */

/* An assigned Kafka topic and, per partition, the offset after the last
 * record received, where fetching goes on after a pause (-1: none yet and
 * reading from the beginning). */
struct topic_assigned {
    char *topic;
    int32_t partition_count;
    int64_t *next_offsets;
};

struct topic_reader {
    struct topic_reader *next;
    struct core *core;
    struct destination destination;
    struct kafka_consumer *consumer;
    struct kafka_lookup *lookup;
    struct event *rescan_timer;
    struct event *linger_timer;
    struct topic_assigned *topics;
    size_t topic_count;
    bool positioned;
    bool failed;
    bool paused; /* every subscriber is behind: not fetching */
    struct core_subscription *subscribers;
    size_t subscriber_count;
    struct destination_stats *stats;
    uint64_t *dropped;
    struct u64_map temp_queues; /* reply reader: token key -> chain of subscriptions */
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
    for (const struct core_subscription *sub = reader->subscribers; sub; sub = sub->peer_next)
        if (sub->backlog_count < (sub->backlog_capacity + 1) / 2)
            return false;
    return true;
}

/* ---- subscriber backlogs -------------------------------------------------------- */

static void topic_dispatch(struct core_subscription *sub)
{
    while (!sub->blocked && sub->backlog_count > 0 && sub->reader) {
        struct shared_record *shared = sub->backlog[sub->backlog_head];
        sub->backlog_head = (sub->backlog_head + 1) % sub->backlog_size;
        sub->backlog_count--;
        if (core_record_expired(sub->reader->core, shared->record, false)) {
            if (sub->reply_token)
                core_count_expired_reply(sub->reader->core);
            shared_record_unref(shared);
            continue;
        }
        struct core_delivery delivery;
        core_delivery_from_record(&delivery, sub, shared->record, 0, 1);
        if (sub->reply_token)
            core_reply_complete(sub->reader->core, &delivery);
        else
            core_request_complete(sub->reader->core, &delivery);
        if (sub->reader->stats)
            (*sub->reader->stats->delivered)++;
        sub->handlers.deliver(sub->opaque, &delivery);
        shared_record_unref(shared);
    }
    /* Caught up enough: the reader fetches again (sub->reader is NULL once detached). */
    struct topic_reader *reader = sub->reader;
    if (reader && reader->paused && sub->backlog_count <= sub->backlog_capacity / 4)
        topic_set_paused(reader, false);
}

/* Double a full backlog's ring (up to its capacity), oldest record first. */
static int topic_backlog_grow(struct core_subscription *sub)
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

static void topic_backlog_push(struct topic_reader *reader, struct core_subscription *sub,
                               struct shared_record *shared)
{
    if (sub->overflowed)
        return; /* ended by the disconnect policy; the adapter is closing it */
    if (sub->backlog_count == sub->backlog_capacity &&
        strcmp(core_config(reader->core)->topics.slow_subscriber, "disconnect") == 0) {
        char reason[256];
        snprintf(reason, sizeof(reason),
                 "slow subscriber: %u messages waiting for this subscription "
                 "(topics.max_backlog; topics.slow_subscriber is disconnect)",
                 sub->backlog_capacity);
        sub->overflowed = true;
        (*reader->dropped)++;
        sub->handlers.failed(sub->opaque, reason);
        return;
    }
    if (sub->backlog_count == sub->backlog_capacity) {
        shared_record_unref(sub->backlog[sub->backlog_head]);
        sub->backlog_head = (sub->backlog_head + 1) % sub->backlog_size;
        sub->backlog_count--;
        sub->dropped++;
        (*reader->dropped)++;
    } else if (sub->backlog_count == sub->backlog_size && topic_backlog_grow(sub) < 0) {
        log_error("topic", "%s: out of memory growing a backlog; record dropped",
                  reader->destination.name);
        sub->dropped++;
        (*reader->dropped)++;
        return;
    }
    uint32_t tail = (sub->backlog_head + sub->backlog_count) % sub->backlog_size;
    sub->backlog[tail] = shared;
    sub->backlog_count++;
    shared->refs++;
}

static void topic_backlog_clear(struct core_subscription *sub)
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

static uint64_t topic_token_key(const char *token, size_t length)
{
    return u64_map_string_key(token, length);
}

/* The temporary queue whose token is token[0..length), or NULL. */
static struct core_subscription *topic_temp_queue(const struct topic_reader *reader,
                                                  const char *token, size_t length)
{
    for (struct core_subscription *sub =
             u64_map_get(&reader->temp_queues, topic_token_key(token, length));
         sub; sub = sub->token_next)
        if (strlen(sub->reply_token) == length && memcmp(sub->reply_token, token, length) == 0)
            return sub;
    return NULL;
}

static int topic_temp_queue_add(struct topic_reader *reader, struct core_subscription *sub)
{
    uint64_t key = topic_token_key(sub->reply_token, strlen(sub->reply_token));
    struct core_subscription *first = u64_map_get(&reader->temp_queues, key);
    if (first) { /* another token with the same key: chain behind it */
        sub->token_next = first->token_next;
        first->token_next = sub;
        return 0;
    }
    if (u64_map_reserve(&reader->temp_queues) != 0)
        return -1;
    sub->token_next = NULL;
    u64_map_put(&reader->temp_queues, key, sub);
    return 0;
}

static void topic_temp_queue_remove(struct topic_reader *reader, struct core_subscription *sub)
{
    uint64_t key = topic_token_key(sub->reply_token, strlen(sub->reply_token));
    struct core_subscription *first = u64_map_get(&reader->temp_queues, key);
    if (first == sub) {
        u64_map_remove(&reader->temp_queues, key);
        if (sub->token_next && u64_map_reserve(&reader->temp_queues) == 0)
            u64_map_put(&reader->temp_queues, key, sub->token_next);
    } else {
        for (struct core_subscription *at = first; at; at = at->token_next)
            if (at->token_next == sub) {
                at->token_next = sub->token_next;
                break;
            }
    }
    sub->token_next = NULL;
}

/* A record of this node's reply topic: to the temporary queue its token
 * names, or counted as dropped (unknown, forged or gone). */
static void topic_route_reply(struct topic_reader *reader, struct shared_record *shared)
{
    size_t length = 0;
    const char *token = core_record_reply_token(shared->record, &length);
    struct core_subscription *sub = token ? topic_temp_queue(reader, token, length) : NULL;
    core_count_reply(reader->core, shared->record, sub != NULL);
    if (!sub)
        return;
    topic_backlog_push(reader, sub, shared);
    topic_dispatch(sub);
    if (!reader->paused && topic_all_behind(reader))
        topic_set_paused(reader, true);
}

static void topic_on_record(void *opaque, struct kafka_record *record)
{
    struct topic_reader *reader = opaque;
    struct topic_assigned *t = topic_find(reader, record->topic);
    if (t && record->partition >= 0 && record->partition < t->partition_count)
        t->next_offsets[record->partition] = record->offset + 1; /* where a resume goes on */
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
    for (struct core_subscription *sub = reader->subscribers; sub; sub = sub->peer_next) {
        if (sub->destination.wildcard &&
            (!core_session_may_consume_topic(sub->session, record->topic) ||
             core_topic_is_reserved(reader->core, record->topic))) {
            continue; /* not allowed, or another node's replies */
        }
        topic_backlog_push(reader, sub, shared);
    }
    struct core_subscription *sub = reader->subscribers;
    while (sub) {
        struct core_subscription *next = sub->peer_next;
        topic_dispatch(sub);
        sub = next;
    }
    shared_record_unref(shared);
    if (!reader->paused && topic_all_behind(reader))
        topic_set_paused(reader, true);
}

static void topic_on_error(void *opaque, int err, const char *reason)
{
    struct topic_reader *reader = opaque;
    log_warn("topic", "%s: %s", reader->destination.name, reason);
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
    for (int32_t p = 0; p < info->partition_count; p++) {
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
            for (struct core_subscription *sub = reader->subscribers; sub;) {
                struct core_subscription *next = sub->peer_next;
                sub->handlers.failed(sub->opaque, reason);
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
        for (struct core_subscription *sub = reader->subscribers; sub; sub = sub->peer_next)
            core_subscription_schedule_ready(sub);
    }
}

static int topic_start_lookup(struct topic_reader *reader)
{
    const struct config *config = core_config(reader->core);
    if (reader->destination.wildcard) {
        struct address_filter filter;
        if (address_filter_init(&filter, config->kafka.topic_prefix, reader->destination.name) < 0)
            return -1;
        reader->lookup = kafka_lookup_end_offsets(reader->core->kafka, NULL, address_filter_match,
                                                  &filter, sizeof(filter), topic_on_lookup, reader);
    } else {
        char topic[ADDRESS_NAME_MAX + 1], err[256];
        if (address_kafka_topic(&reader->destination, config->kafka.topic_prefix, topic,
                                sizeof(topic), err, sizeof(err)) < 0)
            return -1;
        /* A node's reply topic is created when missing (auto-creation may be off). */
        reader->lookup = topic_is_reply_reader(reader)
                             ? kafka_lookup_end_offsets_or_create(reader->core->kafka, topic,
                                                                  TOPIC_REPLY_PARTITIONS,
                                                                  topic_on_lookup, reader)
                             : kafka_lookup_end_offsets(reader->core->kafka, topic, NULL, NULL, 0,
                                                        topic_on_lookup, reader);
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
    struct core *core = reader->core;
    for (struct topic_reader **link = &core->readers; *link; link = &(*link)->next) {
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
    }
    free(reader->topics);
    u64_map_free(&reader->temp_queues);
    if (reader->stats) {
        *reader->stats->consumers = 0;
        *reader->stats->paused_partitions = 0;
    }
    free(reader);
}

static void topic_on_linger(evutil_socket_t fd, short what, void *arg)
{
    struct topic_reader *reader = arg;
    if (reader->subscriber_count == 0)
        topic_reader_free(reader);
}

static struct topic_reader *topic_reader_create(struct core *core,
                                                const struct destination *destination, char *err,
                                                size_t err_size)
{
    struct topic_reader *reader = calloc(1, sizeof(*reader));
    if (!reader) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    reader->core = core;
    reader->destination = *destination;
    reader->stats = core_stats(core, DESTINATION_TOPIC, destination->name);
    reader->dropped =
        metrics_counter(core->metrics, "kbridge_topic_dropped_total",
                        "Records dropped for slow topic subscribers (drop-oldest).", NULL);
    reader->linger_timer = event_new(core->base, -1, 0, topic_on_linger, reader);
    reader->rescan_timer = event_new(core->base, -1, EV_PERSIST, topic_on_rescan, reader);
    if (!reader->dropped || !reader->linger_timer || !reader->rescan_timer) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    reader->consumer = kafka_consumer_new(core->kafka, NULL, NULL, &topic_consumer_handlers, reader,
                                          err, err_size);
    if (!reader->consumer)
        goto fail;
    if (topic_start_lookup(reader) < 0) {
        snprintf(err, err_size, "cannot look up topic %s", destination->name);
        goto fail;
    }
    if (destination->wildcard) {
        struct timeval interval = {TOPIC_RESCAN_MS / 1000, (TOPIC_RESCAN_MS % 1000) * 1000};
        event_add(reader->rescan_timer, &interval);
    }
    reader->next = core->readers;
    core->readers = reader;
    return reader;
fail:
    topic_reader_free(reader);
    return NULL;
}

int topic_attach(struct core *core, struct core_subscription *sub, char *err, size_t err_size)
{
    struct topic_reader *reader = NULL;
    for (struct topic_reader *r = core->readers; r; r = r->next)
        if (!r->failed && strcmp(r->destination.name, sub->destination.name) == 0)
            reader = r;
    if (!reader) {
        reader = topic_reader_create(core, &sub->destination, err, err_size);
        if (!reader)
            return CORE_ERR_UNAVAILABLE;
    }
    if (sub->reply_token && topic_temp_queue_add(reader, sub) < 0) {
        snprintf(err, err_size, "out of memory");
        if (reader->subscriber_count == 0 && !topic_is_reply_reader(reader)) {
            /* do not keep a reader nobody uses */
            struct timeval linger = {TOPIC_LINGER_MS / 1000, (TOPIC_LINGER_MS % 1000) * 1000};
            event_add(reader->linger_timer, &linger);
        }
        return CORE_ERR_INTERNAL;
    }
    sub->backlog_capacity = core_config(core)->topics.max_backlog; /* allocated on demand */
    event_del(reader->linger_timer);
    sub->reader = reader;
    sub->peer_prev = NULL;
    sub->peer_next = reader->subscribers;
    if (reader->subscribers)
        reader->subscribers->peer_prev = sub;
    reader->subscribers = sub;
    reader->subscriber_count++;
    if (reader->stats)
        *reader->stats->consumers = (double)reader->subscriber_count;
    if (reader->paused) /* the newcomer is not behind */
        topic_set_paused(reader, false);
    if (reader->positioned)
        core_subscription_schedule_ready(sub);
    return CORE_OK;
}

void topic_detach(struct core_subscription *sub)
{
    struct topic_reader *reader = sub->reader;
    if (sub->peer_prev)
        sub->peer_prev->peer_next = sub->peer_next;
    else
        reader->subscribers = sub->peer_next;
    if (sub->peer_next)
        sub->peer_next->peer_prev = sub->peer_prev;
    sub->reader = NULL;
    if (sub->reply_token)
        topic_temp_queue_remove(reader, sub);
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

void topic_block(struct core_subscription *sub, bool blocked)
{
    if (!blocked)
        topic_dispatch(sub);
}

void topic_free_all(struct core *core)
{
    while (core->readers)
        topic_reader_free(core->readers);
}
