/* SPDX-License-Identifier: Apache-2.0 */
/* queue.c -- queues and durable subscriptions on Kafka consumer groups
 * (architecture §5, §6): one consumer per queue per node, joined only while the
 * node has a local subscriber, its records kept in a queue_state that hands
 * them out to subscribers with credit, dead-letters them, and reports the
 * offsets that may be committed.
 *
 *   queue NAME                    group kbridge.q.NAME, topic PREFIX+NAME, from earliest
 *   durable subscription D of C   group kbridge.sub.C.D, topic (or regex), from latest
 *   durable D of topic T, no C    group kbridge.dsub.T.D (RabbitMQ's durable:true)
 *
 * PREFIX is the subscribers' vhost's topic prefix, and in a vhost other than
 * "/" the groups are kbridge.v.VHOST/q.NAME etc. (address_group_id,
 * architecture §11 "Vhosts"): a queue is one per (vhost, name).
 *
 * Partitions are numbered locally (queue_state works on int32 partition ids,
 * a durable wildcard subscription spans several topics): `partitions` maps a
 * local index to (topic, partition), `partition_map` (a u64_map) the other
 * way, one lookup per fetched record.
 *
 * Bindings (architecture §11, queue_bindings.h): a queue (not a durable
 * subscription) bound to exchanges also reads their topics (amq.topic
 * bindings: the topics their keys name) and settles without delivery, and
 * counts in kbridge_unmatched_total, every record from them that its
 * bindings do not match. Before its group reads a topic it did not read
 * yet, the group is anchored there (kafka_lookup_anchor_group: partitions
 * without a committed offset start at the end), so a binding sees what is
 * published after the queue's consumer first joins with it; until then a
 * queue's subscribers wait for `ready`. When the view changes
 * (definitions_store_watch → queue_engine_definitions_changed) each queue recomputes its bindings
 * and, when its topics changed, anchors the new ones and resubscribes.
 *
 * Linger: a queue without subscribers stays in its group for queues.linger
 * (30 s by default), so that a subscriber coming back finds its partitions
 * assigned and its messages fetched instead of waiting for a rebalance
 * (seconds: group.initial.rebalance.delay.ms on Kafka, 3 s in librdkafka's
 * mock). Then, once its dead-letter and retry produces are confirmed (at
 * most QUEUE_LEAVE_WAIT_MS; their offsets are committed with the rest), it
 * closes its consumer (which commits the stored offsets and leaves the
 * group) and frees its buffered records. It leaves at once when
 * the group rebalances while it lingers (another node joined or left: that
 * node can deliver the partitions, this one cannot) and at shutdown
 * (queue_free_all). */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "definitions.h"
#include "definitions_store.h"
#include "engine.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "queue_arguments.h"
#include "queue_bindings.h"
#include "queue_ready.h"
#include "queue_retry.h"
#include "record.h"
#include "request_reply.h"
#include "stats.h"
#include "topic_pattern.h"
#include "u64_map.h"

#define QUEUE_EXPIRE_CHECK_MS 1000

/* A record fetched from a retry topic before it is due (architecture §13
 * "Delayed redelivery"): held in its partition's FIFO, which is paused. */
struct queue_held {
    struct queue_held *next;
    struct kafka_record *record;
    uint64_t due_ms;    /* wall clock, kbridge-deliver-at */
    uint32_t delivered; /* kbridge-delivery-count: deliveries before the retry */
};

struct queue_topic_partition {
    char *topic;
    int32_t partition;
    int32_t same_key; /* index + 1 of the next partition with the same map key; 0: none */
    bool assigned;
    bool paused;
    bool retry;                               /* a partition of one of the queue's retry topics */
    struct queue_held *held_head, *held_tail; /* retry: fetched, not due yet (fetch order) */
    int64_t next_offset; /* after the last record fetched since assignment; -1: none */
    /* x-max-length: after the last record dispatch handled (delivered or
     * dropped), else the first fetched; -1: none fetched since assignment */
    int64_t next_undelivered;
    /* The queue's last purge's end offset here (records below it are settled
     * without delivery when fetched); -1: none since assignment */
    int64_t purge_floor;
    /* Settled up to here and not yet stored (queue_store_pending): the
     * commit callback only records it; one store per loop iteration. */
    int64_t store_offset;
    bool store_pending;
};

struct queue_dead_letter {
    struct queue_dead_letter *next;
    struct queue_dead_letter *prev;
    struct queue *queue; /* NULL once the queue is gone */
    queue_delivery_id id;
};

/* The queue engine (engine.h): every queue of the node. */
struct queue_engine {
    struct engine base;
    struct queue *queues;
    uint64_t *unmatched;             /* kbridge_unmatched_total */
    uint64_t *maxlen_dropped;        /* kbridge_maxlen_dropped_total */
    uint64_t *unselected;            /* kbridge_selector_unselected_total */
    uint64_t *retried;               /* kbridge_redelivery_delayed_total */
    double *held;                    /* kbridge_redelivery_held: retry records not due yet */
    struct event *definitions_event; /* the view changed: follow it on the next turn */
    bool watching;                   /* registered with the definitions store */
};

/* One anchor lookup of a queue's binding topics. */
struct queue_anchor {
    struct queue *queue;
    struct kafka_lookup *lookup; /* NULL once done */
};

/* A subscriber's state in its queue (core_subscription.engine_state). */
struct queue_subscriber {
    struct core_subscription *sub;
    struct queue_subscriber *next; /* in the queue's list (doubly linked) */
    struct queue_subscriber *prev;
    struct queue *queue;
};

struct queue {
    struct queue *next;
    struct queue_engine *engine;
    const struct engine_context *context;
    enum destination_kind kind;
    char name[ADDRESS_NAME_MAX + 1];
    char *vhost;  /* its subscribers' vhost (architecture §11 "Vhosts") */
    char *prefix; /* that vhost's topic prefix when the queue was made */
    char *group_id;
    char *subscription; /* Kafka topic or ^regex */
    char *dead_letter_topic;
    /* x-max-length-bytes: the mean body size of the records this node
     * checked (an average over the last ~32; 0 before the first) */
    double body_mean;
    struct kafka_consumer *consumer;
    struct queue_state *state;
    struct queue_subscriber *subscribers;
    size_t subscriber_count;
    struct queue_topic_partition *partitions;
    struct u64_map partition_map; /* queue_partition_key -> index + 1 of the first */
    size_t partition_count;
    size_t partition_capacity;
    bool assigned_once;
    bool paused;
    struct queue_dead_letter *dead_letters; /* dead-letter and retry produces in flight */
    struct queue_retry_plan retry;          /* delayed redelivery; no levels: off */
    struct event *retry_timer;              /* the earliest held retry record is due */
    size_t held_count;                      /* retry records held, every partition */
    struct event *linger_timer;
    bool leave_now;           /* lingering and the group rebalanced: leave on the next loop turn */
    uint64_t leave_waited_ms; /* leaving: waited this long for dead-letter/retry produces */
    struct event *expire_timer;
    /* Coalesced offset stores (architecture "Data path of a delivery"):
     * partitions with store_pending, and the event that stores them all at
     * once after this loop iteration's other callbacks. */
    size_t stores_pending;
    struct event *store_event;
    struct destination_stats *stats;
    struct kafka_lookup *anchor; /* durable: anchoring the group before subscribing */
    /* A queue (not a durable subscription) reads its bindings (§11). */
    bool bound;
    bool defined;         /* declared in this node's view when last looked: its deletion ends it */
    bool wait_assignment; /* subscribers get `ready` once the group assigned it */
    struct queue_bindings bindings; /* what it reads beyond its own topic */
    struct queue_anchor *anchors;   /* anchoring binding topics before (re)subscribing */
    size_t anchor_count;
    size_t anchors_pending;
    /* A queue's arguments (§11, queue_arguments.h) as the view has them
     * (defaults for durable subscriptions and queues the view lacks). */
    struct queue_arguments arguments;
    bool arguments_refused; /* the view's arguments did not parse (logged once) */
    /* x-single-active-consumer: the one subscriber deliveries go to (the
     * others are blocked in queue_state); NULL: none yet, or not SAC. */
    struct queue_subscriber *active;
};

static void queue_anchors_cancel(struct queue *queue);

static const struct config *queue_config(const struct queue *queue)
{
    return engine_config(queue->context);
}

static struct queue_subscriber *queue_subscriber_of(const struct core_subscription *sub)
{
    return sub->engine_state;
}

/* queue_state pauses once its buffer goes ABOVE the limit it is given, after
 * the record that crossed it was added. Pausing a partition makes librdkafka
 * drop what it had fetched beyond that record (its version barrier), so one
 * record lands per crossing: give it max_in_flight - 1 and the buffer
 * never exceeds queues.max_in_flight. */
static uint32_t queue_pause_limit(const struct config *config)
{
    return config->queues.max_in_flight > 1 ? config->queues.max_in_flight - 1 : 1;
}

/* x-single-active-consumer: keep one subscriber active (the current one, else
 * the oldest: the list's tail) and every other blocked in queue_state; a
 * queue without it unblocks all (but those the core blocks). Deliveries the
 * previous active subscriber left were released to the front, so the next
 * one takes over in order. */
static void queue_apply_single_active(struct queue *queue)
{
    if (!queue->arguments.single_active_consumer) {
        queue->active = NULL;
    } else if (!queue->active) {
        for (struct queue_subscriber *qs = queue->subscribers; qs; qs = qs->next)
            queue->active = qs;
        if (queue->active)
            log_info("queue",
                     "%s: single active consumer: the oldest of %zu subscriber(s) is active",
                     queue->group_id, queue->subscriber_count);
    }
    for (struct queue_subscriber *qs = queue->subscribers; qs; qs = qs->next)
        queue_state_consumer_block(queue->state, qs->sub,
                                   qs->sub->blocked || (queue->active && qs != queue->active));
}

/* Read the queue's arguments from the view (queue_create, and each time the
 * view changes) and apply its delivery limit. Arguments the view holds that
 * kbridge does not honour (written to the definitions topic by something
 * other than a kbridge declare) are logged and left at their defaults. */
static void queue_read_arguments(struct queue *queue)
{
    const struct queue_definition *definition =
        queue->bound ? definitions_queue(queue->context->definitions, queue->vhost, queue->name)
                     : NULL;
    char err[512];
    struct queue_arguments arguments;
    bool refused = queue_arguments_parse(definition ? definition->spec.arguments : NULL, &arguments,
                                         err, sizeof(err)) < 0;
    if (refused) {
        if (!queue->arguments_refused) /* once, not at every change of the view */
            log_warn("queue", "%s: its arguments in the definitions are not honoured: %s",
                     queue->group_id, err);
        queue_arguments_default(&arguments);
    }
    queue->arguments_refused = refused;
    bool was_single = queue->arguments.single_active_consumer;
    queue->arguments = arguments;
    if (was_single != arguments.single_active_consumer)
        queue_apply_single_active(queue);
    const struct config *config = queue_config(queue);
    if (queue->state)
        queue_state_set_limits(
            queue->state,
            queue_arguments_max_deliveries(&queue->arguments, config->queues.max_deliveries),
            queue_pause_limit(config));
}

static void queue_update_gauges(struct queue *queue)
{
    if (!queue->stats)
        return;
    struct queue_state_stats stats;
    queue_state_stats(queue->state, &stats);
    *queue->stats->in_flight = (double)(stats.available + stats.acquired + stats.dead_lettering);
    *queue->stats->consumers = (double)queue->subscriber_count;
    size_t paused = 0;
    for (size_t i = 0; i < queue->partition_count; i++)
        paused += queue->partitions[i].assigned && queue->partitions[i].paused;
    *queue->stats->paused_partitions = (double)paused;
}

/* ---- partitions ----------------------------------------------------------- */

/* The map key of (topic, partition): the topic's string key mixed with the
 * partition. Distinct pairs may share it: queue_partition_index compares. */
static uint64_t queue_partition_key(const char *topic, int32_t partition)
{
    uint64_t key = u64_map_string_key(topic, strlen(topic)) ^
                   ((uint64_t)(uint32_t)partition * UINT64_C(0x9e3779b97f4a7c15));
    return key ? key : 1;
}

/* The local index of (topic, partition), found through partition_map (one
 * lookup per fetched record); created when `create`. -1: absent or out of memory. */
static int32_t queue_partition_index(struct queue *queue, const char *topic, int32_t partition,
                                     bool create)
{
    uint64_t key = queue_partition_key(topic, partition);
    intptr_t first = (intptr_t)u64_map_get(&queue->partition_map, key);
    for (intptr_t at = first; at; at = queue->partitions[at - 1].same_key)
        if (queue->partitions[at - 1].partition == partition &&
            strcmp(queue->partitions[at - 1].topic, topic) == 0)
            return (int32_t)(at - 1);
    if (!create || queue->partition_count >= INT32_MAX - 1 ||
        u64_map_reserve(&queue->partition_map) < 0)
        return -1;
    if (queue->partition_count == queue->partition_capacity) {
        size_t capacity = queue->partition_capacity ? queue->partition_capacity * 2 : 8;
        struct queue_topic_partition *grown =
            realloc(queue->partitions, capacity * sizeof(*queue->partitions));
        if (!grown)
            return -1;
        queue->partitions = grown;
        queue->partition_capacity = capacity;
    }
    char *copy = strdup(topic);
    if (!copy)
        return -1;
    queue->partitions[queue->partition_count] = (struct queue_topic_partition){
        .topic = copy, .partition = partition, .same_key = (int32_t)first};
    /* the newest heads its key's chain */
    u64_map_remove(&queue->partition_map, key);
    u64_map_put(&queue->partition_map, key, (void *)(intptr_t)(queue->partition_count + 1));
    return (int32_t)queue->partition_count++;
}

static void queue_pause_partition(struct queue *queue, struct queue_topic_partition *p, bool pause)
{
    if (p->paused == pause)
        return;
    int rc = pause ? kafka_consumer_pause(queue->consumer, p->topic, p->partition)
                   : kafka_consumer_resume(queue->consumer, p->topic, p->partition, p->next_offset);
    if (rc != 0)
        log_warn("queue", "%s: cannot %s %s [%d]: %s", queue->group_id, pause ? "pause" : "resume",
                 p->topic, p->partition, kafka_error_name(rc));
    else
        p->paused = pause;
}

/* ---- bindings ----------------------------------------------------------------- */

#define QUEUE_MATCH_HEADERS 64 /* on the stack; more: allocated */

/* Does a record reach this queue: from its own topic always, from a bound
 * exchange's topic when a binding matches it (queue_bindings_match)? */
static bool queue_record_bound(const struct queue *queue, const struct kafka_record *record)
{
    if (queue_bindings_empty(&queue->bindings) || strcmp(record->topic, queue->subscription) == 0)
        return true;
    size_t count = kafka_record_header_count(record);
    struct binding_header local[QUEUE_MATCH_HEADERS];
    struct binding_header *headers =
        count <= QUEUE_MATCH_HEADERS ? local : calloc(count, sizeof(*headers));
    if (!headers)
        return true; /* out of memory: deliver rather than lose */
    char key[ADDRESS_KEY_MAX + 1] = "";
    bool have_key = false;
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        const char *name;
        const void *value;
        size_t len;
        if (kafka_record_header(record, i, &name, &value, &len) != 0)
            continue;
        if (!have_key && strcmp(name, RECORD_ROUTING_KEY) == 0 && len <= ADDRESS_KEY_MAX &&
            (!len || !memchr(value, '\0', len))) {
            memcpy(key, value, len);
            key[len] = '\0';
            have_key = true;
        }
        headers[used++] = (struct binding_header){name, value, value ? len : 0};
    }
    bool match =
        queue_bindings_match(&queue->bindings, queue->context->definitions, queue->vhost,
                             queue->name, queue->prefix, record->topic, key, headers, used);
    if (headers != local)
        free(headers);
    return match;
}

/* ---- x-max-length ---------------------------------------------------------------- */

/* Is `record` beyond the queue's x-max-length: are more than N records
 * ready, counting from it on its partition and from the next undelivered
 * one on every other partition this node holds (end offsets as the last
 * fetch saw them)? Or beyond its x-max-length-bytes: do they hold more than
 * N bytes of body, counting its own body and the others at the mean body
 * size of the records checked so far (Kafka tells offsets, not bytes; an
 * estimate, architecture §5)? Drop-head: the record that would be
 * delivered is the oldest of its partition. Also moves its partition's
 * next_undelivered. */
static bool queue_over_max_length(struct queue *queue, const struct kafka_record *record)
{
    int32_t index = queue_partition_index(queue, record->topic, record->partition, false);
    if (index < 0 || !queue->consumer)
        return false;
    int64_t ready = 0;
    for (size_t i = 0; i < queue->partition_count; i++) {
        struct queue_topic_partition *p = &queue->partitions[i];
        if (!p->assigned)
            continue;
        struct queue_ready_partition counted = {
            .end = kafka_consumer_high_watermark(queue->consumer, p->topic, p->partition),
            .fetched = (int32_t)i == index ? record->offset : p->next_undelivered,
            .position = -1,
            .purge_floor = -1,
        };
        ready += (int64_t)queue_ready_unread(&counted);
    }
    struct queue_topic_partition *own = &queue->partitions[index];
    if (own->next_undelivered <= record->offset)
        own->next_undelivered = record->offset + 1;
    if (queue->arguments.max_length >= 0 && ready > queue->arguments.max_length)
        return true;
    if (queue->arguments.max_length_bytes < 0)
        return false;
    double body = (double)record->value_len;
    queue->body_mean =
        queue->body_mean > 0 ? queue->body_mean + (body - queue->body_mean) / 32 : body;
    double bytes = body + (double)(ready > 1 ? ready - 1 : 0) * queue->body_mean;
    return bytes > (double)queue->arguments.max_length_bytes;
}

/* ---- queue_state callbacks --------------------------------------------------- */

static void queue_on_deliver(void *opaque, void *consumer, queue_delivery_id id, void *record,
                             uint32_t delivery_count)
{
    struct queue *queue = opaque;
    struct core_subscription *sub = consumer;
    const struct kafka_record *kafka_record = record;
    bool expired;
    if (sub->destination.wildcard && !queue->context->may_consume_topic(sub, kafka_record->topic)) {
        /* a wildcard durable subscription only gets the topics its user may read */
        queue_state_settle(queue->state, id, QUEUE_ACCEPT, NULL);
        return;
    }
    bool retried =
        queue->retry.level_count > 0 && queue_retry_is_topic(&queue->retry, kafka_record->topic);
    if (queue->bound && !retried && !queue_record_bound(queue, kafka_record)) {
        /* from a bound exchange's topic, matching none of its bindings */
        (*queue->engine->unmatched)++;
        queue_state_settle(queue->state, id, QUEUE_ACCEPT, NULL);
        return;
    }
    if (queue->arguments.message_ttl_ms >= 0 && /* no clock read without a TTL */
        queue_arguments_expired(&queue->arguments, kafka_record->timestamp_ms, clock_wall_ms())) {
        (*queue->context->expired[0])++; /* x-message-ttl */
        expired = true;
    } else {
        expired = engine_record_expired(queue->context, kafka_record, true); /* its own expiry */
    }
    if (expired) {
        /* with x-dead-letter-exchange expired messages go there, as in RabbitMQ */
        bool dead_letter = queue->arguments.has_dead_letter_exchange ||
                           queue_config(queue)->queues.dead_letter_expired;
        queue_state_settle(queue->state, id, dead_letter ? QUEUE_REJECT : QUEUE_ACCEPT,
                           dead_letter ? "expired" : NULL);
        return;
    }
    if ((queue->arguments.max_length >= 0 || queue->arguments.max_length_bytes >= 0) &&
        !queue->arguments.reject_publish && !retried &&
        queue_over_max_length(queue, kafka_record)) {
        /* x-max-length(-bytes), drop-head: dead-lettered with a DLX, else dropped */
        (*queue->engine->maxlen_dropped)++;
        bool dead_letter = queue->arguments.has_dead_letter_exchange;
        queue_state_settle(queue->state, id, dead_letter ? QUEUE_REJECT : QUEUE_ACCEPT,
                           dead_letter ? QUEUE_DEATH_MAXLEN : NULL);
        return;
    }
    struct core_delivery delivery;
    engine_delivery_from_record(queue->context, &delivery, sub, record, id, delivery_count);
    request_reply_complete_request(queue->context->request_reply, &delivery);
    if (queue->stats) {
        (*queue->stats->delivered)++;
        if (delivery_count > 1)
            (*queue->stats->redelivered)++;
    }
    queue->context->deliver(sub, &delivery);
}

static void queue_dead_letter_unlink(struct queue *queue, struct queue_dead_letter *dl)
{
    if (dl->prev)
        dl->prev->next = dl->next;
    else
        queue->dead_letters = dl->next;
    if (dl->next)
        dl->next->prev = dl->prev;
}

/* Produce the copy of released record `id` (to its dead-letter or retry
 * topic) with `headers`, and keep it in queue->dead_letters until Kafka
 * answers `done` (the queue's settling produces: a leaving queue waits for
 * them). When it cannot even be queued, "`failure` TOPIC (reason);
 * `fallback`" is logged and the record is available again. Frees nothing of the
 * caller's but takes dl. */
static void queue_produce_settling(struct queue *queue, struct queue_dead_letter *dl,
                                   queue_delivery_id id, const char *topic, const void *key,
                                   size_t key_len, const struct kafka_record *record,
                                   const struct kafka_header *headers, size_t count,
                                   kafka_delivery_fn done, const char *failure,
                                   const char *fallback)
{
    dl->queue = queue;
    dl->id = id;
    int rc = kafka_produce(queue->context->kafka, topic, -1, 0, key, key_len, record->value,
                           record->value_len, headers, count, done, dl);
    if (rc != KAFKA_OK) {
        log_warn("queue", "%s: %s %s (%s); %s", queue->group_id, failure, topic,
                 kafka_error_name(rc), fallback);
        free(dl);
        queue_state_dead_lettered(queue->state, id, false);
        return;
    }
    dl->next = queue->dead_letters;
    if (queue->dead_letters)
        queue->dead_letters->prev = dl;
    queue->dead_letters = dl;
}

static void queue_on_dead_letter_delivery(void *opaque, int err, int32_t partition, int64_t offset)
{
    struct queue_dead_letter *dl = opaque;
    struct queue *queue = dl->queue;
    if (queue) {
        queue_dead_letter_unlink(queue, dl);
        if (err)
            log_warn("queue", "%s: dead-letter produce failed (%s); the message is available again",
                     queue->group_id, kafka_error_name(err));
        else if (queue->stats)
            (*queue->stats->dead_lettered)++;
        queue_state_dead_lettered(queue->state, dl->id, err == 0);
        queue_update_gauges(queue);
    }
    free(dl);
}

/* Where a dead letter goes (§5, §11): the queue's dead-letter topic
 * (queues.dead_letter_topic), or with x-dead-letter-exchange the topic a
 * publish to that exchange would take (the key's topic for the default
 * exchange and amq.topic, else the exchange's own topic with the key in
 * kbridge-routing-key). */
struct queue_dead_letter_target {
    char topic[ADDRESS_NAME_MAX * 2 + 2];
    char routing_key[ADDRESS_KEY_MAX + 1]; /* set in kbridge-routing-key; "" for none */
    bool exchange;                         /* the DLX path: x-death and routing key headers */
    char original_exchange[ADDRESS_NAME_MAX + 1];
    char original_key[ADDRESS_KEY_MAX + 1];
};

/* The exchange and routing key the record was published with, as far as
 * its topic and headers tell: its own topic is the default exchange with
 * the queue's name; an exchange's topic is that exchange; any other topic
 * an amq.topic key. */
static void queue_record_origin(const struct queue *queue, const struct kafka_record *record,
                                const char *record_topic, struct queue_dead_letter_target *target)
{
    const char *prefix = queue->prefix;
    size_t prefix_len = strlen(prefix);
    const char *topic = record_topic;
    if (strncmp(topic, prefix, prefix_len) == 0)
        topic += prefix_len;
    size_t len = 0;
    const char *key = record_header_find(record, RECORD_ROUTING_KEY, &len);
    if (strcmp(record_topic, queue->subscription) == 0) {
        target->original_exchange[0] = '\0';
        if (!key) {
            key = queue->name;
            len = strlen(key);
        }
    } else if (strlen(topic) < sizeof(target->original_exchange) &&
               definitions_exchange(queue->context->definitions, queue->vhost, topic)) {
        /* an exchange's name fits: exchange names are at most ADDRESS_NAME_MAX */
        memcpy(target->original_exchange, topic, strlen(topic) + 1);
    } else {
        snprintf(target->original_exchange, sizeof(target->original_exchange), "amq.topic");
        if (!key) {
            key = topic;
            len = strlen(key);
        }
    }
    if (!key || len > ADDRESS_KEY_MAX || memchr(key, '\0', len))
        len = 0;
    if (len)
        memcpy(target->original_key, key, len);
    target->original_key[len] = '\0';
}

/* Fill `target` for `record`. The DLX the view lacks falls back to the
 * dead-letter topic (logged): nothing is dropped. */
static void queue_dead_letter_target(const struct queue *queue, const struct kafka_record *record,
                                     const char *record_topic,
                                     struct queue_dead_letter_target *target)
{
    memset(target, 0, sizeof(*target));
    snprintf(target->topic, sizeof(target->topic), "%s", queue->dead_letter_topic);
    if (!queue->arguments.has_dead_letter_exchange)
        return;
    queue_record_origin(queue, record, record_topic, target);
    const char *exchange = queue->arguments.dead_letter_exchange;
    const char *key = queue->arguments.has_dead_letter_routing_key
                          ? queue->arguments.dead_letter_routing_key
                          : target->original_key;
    const char *prefix = queue->prefix;
    const struct exchange_definition *definition =
        definitions_exchange(queue->context->definitions, queue->vhost, exchange);
    if (!definition) {
        log_warn("queue", "%s: x-dead-letter-exchange '%s' does not exist: dead-lettering to %s",
                 queue->group_id, exchange, queue->dead_letter_topic);
        return;
    }
    if (definition->topic_per_key) { /* NAME.KEY, as core_exchange_publish writes it */
        if (!key[0] || strlen(prefix) + strlen(exchange) + 1 + strlen(key) > ADDRESS_NAME_MAX) {
            log_warn("queue",
                     "%s: dead-letter routing key '%s' names no topic of exchange '%s': "
                     "dead-lettering to %s",
                     queue->group_id, key, exchange, queue->dead_letter_topic);
            return;
        }
        int used = snprintf(target->topic, sizeof(target->topic), "%s%s.%s", prefix, exchange, key);
        if (used < 0 || (size_t)used >= sizeof(target->topic)) { /* checked above: cannot be */
            snprintf(target->topic, sizeof(target->topic), "%s", queue->dead_letter_topic);
            return;
        }
        snprintf(target->routing_key, sizeof(target->routing_key), "%s", key);
    } else if (engine_exchange_is_topic_per_key(exchange)) {
        if (!key[0] || strlen(prefix) + strlen(key) > ADDRESS_NAME_MAX) {
            log_warn("queue",
                     "%s: dead-letter routing key '%s' names no topic of exchange '%s': "
                     "dead-lettering to %s",
                     queue->group_id, key, exchange, queue->dead_letter_topic);
            return;
        }
        snprintf(target->topic, sizeof(target->topic), "%s%s", prefix, key);
    } else {
        snprintf(target->topic, sizeof(target->topic), "%s%s", prefix, exchange);
        snprintf(target->routing_key, sizeof(target->routing_key), "%s", key);
    }
    target->exchange = true;
}

/* RabbitMQ's reason for a dead letter (x-death) from queue_state's text. */
static const char *queue_death_reason(const char *reason)
{
    if (strncmp(reason, "delivered ", 10) == 0)
        return QUEUE_DEATH_DELIVERY_LIMIT;
    if (strcmp(reason, "expired") == 0)
        return QUEUE_DEATH_EXPIRED;
    if (strcmp(reason, QUEUE_DEATH_MAXLEN) == 0)
        return QUEUE_DEATH_MAXLEN;
    return QUEUE_DEATH_REJECTED;
}

/* A retry record's first position (kbridge-retry-original-*), into the
 * buffers that hold its own; a header missing or too long keeps its own. */
static void queue_retry_origin(const struct kafka_record *record, char *topic, size_t topic_size,
                               char *partition, size_t partition_size, char *offset,
                               size_t offset_size)
{
    const struct {
        const char *name;
        char *out;
        size_t size;
    } fields[] = {{RECORD_RETRY_ORIGINAL_TOPIC, topic, topic_size},
                  {RECORD_RETRY_ORIGINAL_PARTITION, partition, partition_size},
                  {RECORD_RETRY_ORIGINAL_OFFSET, offset, offset_size}};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        size_t len = 0;
        const char *value = record_header_find(record, fields[i].name, &len);
        if (value && len > 0 && len < fields[i].size && !memchr(value, '\0', len)) {
            memcpy(fields[i].out, value, len);
            fields[i].out[len] = '\0';
        }
    }
}

/* Headers a dead letter gets anew, not copied from the record. */
static bool queue_dead_letter_replaces(const char *name, bool exchange)
{
    if (strncmp(name, RECORD_DLQ_PREFIX, strlen(RECORD_DLQ_PREFIX)) == 0 ||
        strcmp(name, RECORD_DELIVERY_COUNT) == 0)
        return true;
    return exchange && (strcmp(name, RECORD_ROUTING_KEY) == 0 || strcmp(name, "x-death") == 0);
}

#define QUEUE_DEAD_LETTER_HEADERS 11 /* the most queue_on_dead_letter adds */

static void queue_on_dead_letter(void *opaque, queue_delivery_id id, void *record_ptr,
                                 uint32_t delivery_count, const char *reason)
{
    struct queue *queue = opaque;
    const struct kafka_record *record = record_ptr;
    /* where it was published: a delayed redelivery's first position (§13) */
    char origin_topic[ADDRESS_NAME_MAX * 2 + 2], partition[16], offset[24];
    snprintf(origin_topic, sizeof(origin_topic), "%s", record->topic);
    snprintf(partition, sizeof(partition), "%d", record->partition);
    snprintf(offset, sizeof(offset), "%lld", (long long)record->offset);
    if (queue->retry.level_count > 0 && queue_retry_is_topic(&queue->retry, record->topic))
        queue_retry_origin(record, origin_topic, sizeof(origin_topic), partition, sizeof(partition),
                           offset, sizeof(offset));
    struct queue_dead_letter_target target;
    queue_dead_letter_target(queue, record, origin_topic, &target);
    size_t original = kafka_record_header_count(record);
    struct kafka_header *headers = calloc(original + QUEUE_DEAD_LETTER_HEADERS, sizeof(*headers));
    struct queue_dead_letter *dl = calloc(1, sizeof(*dl));
    char *x_death = NULL;
    uint64_t now_ms = clock_wall_ms();
    if (headers && dl && target.exchange) {
        size_t len = 0;
        const char *previous = record_header_find(record, "x-death", &len);
        x_death =
            queue_arguments_x_death(previous, len, queue_death_reason(reason), queue->name,
                                    target.original_exchange, target.original_key, now_ms / 1000);
    }
    if (!headers || !dl || (target.exchange && !x_death)) {
        free(headers);
        free(dl);
        free(x_death);
        log_error("queue", "%s: out of memory dead-lettering; the message is available again",
                  queue->group_id);
        queue_state_dead_lettered(queue->state, id, false);
        return;
    }
    size_t count = 0;
    bool first_death = true;
    for (size_t i = 0; i < original; i++) {
        const char *name;
        const void *value;
        size_t len;
        if (kafka_record_header(record, i, &name, &value, &len) != 0 ||
            queue_dead_letter_replaces(name, target.exchange) ||
            strcmp(name, RECORD_DELIVER_AT) == 0)
            continue;
        if (strcmp(name, "x-first-death-reason") == 0)
            first_death = false; /* dead-lettered before: the first death stays */
        headers[count++] = (struct kafka_header){name, value, len};
    }
    char deliveries[16], now[24];
    snprintf(deliveries, sizeof(deliveries), "%u", delivery_count);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)now_ms);
    headers[count++] = (struct kafka_header){RECORD_DLQ_REASON, reason, strlen(reason)};
    headers[count++] =
        (struct kafka_header){RECORD_DLQ_ORIGINAL_TOPIC, origin_topic, strlen(origin_topic)};
    headers[count++] =
        (struct kafka_header){RECORD_DLQ_ORIGINAL_PARTITION, partition, strlen(partition)};
    headers[count++] = (struct kafka_header){RECORD_DLQ_ORIGINAL_OFFSET, offset, strlen(offset)};
    headers[count++] = (struct kafka_header){RECORD_DELIVERY_COUNT, deliveries, strlen(deliveries)};
    headers[count++] = (struct kafka_header){RECORD_DLQ_TIME, now, strlen(now)};
    const void *key = record->key;
    size_t key_len = record->key_len;
    if (target.exchange) {
        const char *death = queue_death_reason(reason);
        headers[count++] = (struct kafka_header){"x-death", x_death, strlen(x_death)};
        if (first_death) {
            headers[count++] = (struct kafka_header){"x-first-death-reason", death, strlen(death)};
            headers[count++] =
                (struct kafka_header){"x-first-death-queue", queue->name, strlen(queue->name)};
            headers[count++] =
                (struct kafka_header){"x-first-death-exchange", target.original_exchange,
                                      strlen(target.original_exchange)};
        }
        if (target.routing_key[0]) {
            headers[count++] = (struct kafka_header){RECORD_ROUTING_KEY, target.routing_key,
                                                     strlen(target.routing_key)};
            if (!key) { /* as core_exchange_publish: the key is the record key */
                key = target.routing_key;
                key_len = strlen(target.routing_key);
            }
        }
    }
    queue_produce_settling(queue, dl, id, target.topic, key, key_len, record, headers, count,
                           queue_on_dead_letter_delivery, "cannot dead-letter to",
                           "the message is available again");
    free(headers);
    free(x_death);
}

/* ---- delayed redelivery (architecture §13) ---------------------------------------- */

static void queue_on_retry_delivery(void *opaque, int err, int32_t partition, int64_t offset)
{
    struct queue_dead_letter *dl = opaque;
    struct queue *queue = dl->queue;
    (void)partition;
    (void)offset;
    if (queue) {
        queue_dead_letter_unlink(queue, dl);
        if (err)
            log_warn("queue",
                     "%s: retry produce failed (%s); the message is redelivered at once instead",
                     queue->group_id, kafka_error_name(err));
        else
            (*queue->engine->retried)++;
        queue_state_dead_lettered(queue->state, dl->id, err == 0);
        queue_update_gauges(queue);
    }
    free(dl);
}

#define QUEUE_RETRY_HEADERS 5 /* the most queue_on_retry adds */

/* A subscriber released `record` after its delivery_count-th delivery
 * (queue_state's retry callback): produce it to the retry topic of that
 * level with its due time and count; settled when Kafka confirms. Its first
 * position stays in kbridge-retry-original-* across retries. */
static void queue_on_retry(void *opaque, queue_delivery_id id, void *record_ptr,
                           uint32_t delivery_count)
{
    struct queue *queue = opaque;
    const struct kafka_record *record = record_ptr;
    size_t level = queue_retry_level(&queue->retry, delivery_count);
    const char *topic = queue->retry.topics[level];
    size_t original = kafka_record_header_count(record);
    struct kafka_header *headers = calloc(original + QUEUE_RETRY_HEADERS, sizeof(*headers));
    struct queue_dead_letter *dl = calloc(1, sizeof(*dl));
    if (!headers || !dl) {
        free(headers);
        free(dl);
        log_error("queue", "%s: out of memory delaying a redelivery; it is redelivered at once",
                  queue->group_id);
        queue_state_dead_lettered(queue->state, id, false);
        return;
    }
    size_t count = 0;
    bool has_origin = false;
    for (size_t i = 0; i < original; i++) {
        const char *name;
        const void *value;
        size_t len;
        if (kafka_record_header(record, i, &name, &value, &len) != 0 ||
            strcmp(name, RECORD_DELIVER_AT) == 0 || strcmp(name, RECORD_DELIVERY_COUNT) == 0)
            continue;
        if (strcmp(name, RECORD_RETRY_ORIGINAL_TOPIC) == 0)
            has_origin = true;
        headers[count++] = (struct kafka_header){name, value, len};
    }
    char due[24], deliveries[16], partition[16], offset[24];
    snprintf(due, sizeof(due), "%llu",
             (unsigned long long)(clock_wall_ms() + queue->retry.delay_ms[level]));
    snprintf(deliveries, sizeof(deliveries), "%u", delivery_count);
    headers[count++] = (struct kafka_header){RECORD_DELIVER_AT, due, strlen(due)};
    headers[count++] = (struct kafka_header){RECORD_DELIVERY_COUNT, deliveries, strlen(deliveries)};
    if (!has_origin) {
        snprintf(partition, sizeof(partition), "%d", record->partition);
        snprintf(offset, sizeof(offset), "%lld", (long long)record->offset);
        headers[count++] = (struct kafka_header){RECORD_RETRY_ORIGINAL_TOPIC, record->topic,
                                                 strlen(record->topic)};
        headers[count++] =
            (struct kafka_header){RECORD_RETRY_ORIGINAL_PARTITION, partition, strlen(partition)};
        headers[count++] =
            (struct kafka_header){RECORD_RETRY_ORIGINAL_OFFSET, offset, strlen(offset)};
    }
    queue_produce_settling(queue, dl, id, topic, record->key, record->key_len, record, headers,
                           count, queue_on_retry_delivery, "cannot delay a redelivery through",
                           "it is redelivered at once");
    free(headers);
}

/* Hand a due retry record to queue_state with the deliveries it had. */
static void queue_add_retried(struct queue *queue, int32_t index, struct kafka_record *record,
                              uint32_t delivered)
{
    if (queue_state_add_delivered(queue->state, index, record->offset, record, delivered) != 0) {
        log_debug("queue", "%s: dropped retry record %s [%d] @%lld of an unassigned partition",
                  queue->group_id, record->topic, record->partition, (long long)record->offset);
        kafka_record_free(record);
    }
}

/* Arm retry_timer for the earliest held record (each FIFO's head is its
 * partition's earliest: one delay per retry topic). */
static void queue_arm_retry_timer(struct queue *queue)
{
    uint64_t earliest = UINT64_MAX;
    for (size_t i = 0; i < queue->partition_count; i++)
        if (queue->partitions[i].held_head && queue->partitions[i].held_head->due_ms < earliest)
            earliest = queue->partitions[i].held_head->due_ms;
    if (earliest == UINT64_MAX) {
        event_del(queue->retry_timer);
        return;
    }
    uint64_t now = clock_wall_ms();
    uint64_t wait = earliest > now ? earliest - now : 0;
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)((wait % 1000) * 1000)};
    event_add(queue->retry_timer, &tv);
}

/* Move every due head of every FIFO into queue_state; resume the
 * partitions whose FIFO emptied (unless flow control pauses them all). */
static void queue_release_due(struct queue *queue)
{
    uint64_t now = clock_wall_ms();
    for (size_t i = 0; i < queue->partition_count; i++) {
        struct queue_topic_partition *p = &queue->partitions[i];
        if (!p->held_head)
            continue;
        while (p->held_head && p->held_head->due_ms <= now) {
            struct queue_held *held = p->held_head;
            p->held_head = held->next;
            if (!p->held_head)
                p->held_tail = NULL;
            queue->held_count--;
            (*queue->engine->held)--;
            queue_add_retried(queue, (int32_t)i, held->record, held->delivered);
            free(held);
        }
        if (!p->held_head && p->assigned && !queue->paused)
            queue_pause_partition(queue, p, false);
    }
    queue_arm_retry_timer(queue);
    queue_update_gauges(queue);
}

static void queue_on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    queue_release_due(arg);
}

/* Free partition `index`'s held records (revoked, or the queue goes): the
 * group's next owner fetches them again from the committed offset. */
static void queue_drop_held(struct queue *queue, struct queue_topic_partition *p)
{
    while (p->held_head) {
        struct queue_held *held = p->held_head;
        p->held_head = held->next;
        queue->held_count--;
        (*queue->engine->held)--;
        kafka_record_free(held->record);
        free(held);
    }
    p->held_tail = NULL;
}

/* A record fetched from a retry topic: into queue_state when due and
 * nothing older waits, else held (its partition paused until it is due). */
static void queue_on_retry_record(struct queue *queue, int32_t index, struct kafka_record *record)
{
    struct queue_topic_partition *p = &queue->partitions[index];
    size_t len = 0;
    const void *value = record_header_find(record, RECORD_DELIVER_AT, &len);
    uint64_t due = 0, delivered = 0;
    if (value && queue_retry_parse_decimal(value, len, &due) != 0)
        due = 0; /* not ours to read: due now */
    value = record_header_find(record, RECORD_DELIVERY_COUNT, &len);
    if (!value || queue_retry_parse_decimal(value, len, &delivered) != 0 || delivered > UINT32_MAX)
        delivered = 1;
    if (!p->held_head && due <= clock_wall_ms()) {
        queue_add_retried(queue, index, record, (uint32_t)delivered);
        return;
    }
    struct queue_held *held = calloc(1, sizeof(*held));
    if (!held) {
        log_error("queue", "%s: out of memory holding a delayed redelivery: delivered now",
                  queue->group_id);
        queue_add_retried(queue, index, record, (uint32_t)delivered);
        return;
    }
    held->record = record;
    held->due_ms = due;
    held->delivered = (uint32_t)delivered;
    if (p->held_tail)
        p->held_tail->next = held;
    else
        p->held_head = held;
    p->held_tail = held;
    queue->held_count++;
    (*queue->engine->held)++;
    queue_pause_partition(queue, p, true);
    queue_arm_retry_timer(queue);
}

/* Store every pending position (queue_on_commit) in one call: run by
 * store_event once per loop iteration, and before anything that commits or
 * forgets them (a revoke, the consumer's close), so what the client settled
 * is never lost and nothing unsettled is stored. */
static void queue_store_pending(struct queue *queue)
{
    if (queue->stores_pending == 0)
        return;
    size_t count = queue->stores_pending;
    queue->stores_pending = 0;
    struct kafka_partition_offset *offsets = malloc(count * sizeof(*offsets));
    size_t n = 0;
    for (size_t i = 0; i < queue->partition_count && n < count; i++) {
        struct queue_topic_partition *p = &queue->partitions[i];
        if (!p->store_pending)
            continue;
        p->store_pending = false;
        if (!p->assigned || !queue->consumer)
            continue;
        if (offsets) {
            offsets[n++] =
                (struct kafka_partition_offset){p->topic, p->partition, p->store_offset, 0};
            continue;
        }
        /* out of memory for the list: one by one */
        int rc =
            kafka_consumer_store_offset(queue->consumer, p->topic, p->partition, p->store_offset);
        if (rc != 0)
            log_debug("queue", "%s: store offset %lld for %s [%d]: %s", queue->group_id,
                      (long long)p->store_offset, p->topic, p->partition, kafka_error_name(rc));
    }
    if (offsets && n > 0 && queue->consumer) {
        int rc = kafka_consumer_store_offsets(queue->consumer, offsets, n);
        if (rc != 0)
            log_debug("queue", "%s: storing %zu offset(s): %s", queue->group_id, n,
                      kafka_error_name(rc));
    }
    free(offsets);
}

static void queue_on_store_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    queue_store_pending(arg);
}

/* queue_state's commit: everything below next_offset of partition `index`
 * is settled. Remembered, and stored with the others after this loop
 * iteration's callbacks (queue_store_pending): one rd_kafka_offsets_store
 * per queue per iteration instead of one per settled record. */
static void queue_on_commit(void *opaque, int32_t index, int64_t next_offset)
{
    struct queue *queue = opaque;
    if (index < 0 || (size_t)index >= queue->partition_count || !queue->consumer)
        return;
    struct queue_topic_partition *p = &queue->partitions[index];
    if (!p->assigned)
        return;
    p->store_offset = next_offset;
    if (p->store_pending)
        return;
    p->store_pending = true;
    if (queue->stores_pending++ == 0)
        event_active(queue->store_event, EV_TIMEOUT, 1);
}

static void queue_on_release_record(void *opaque, void *record) { kafka_record_free(record); }

/* Pause or resume every assigned partition that is not so yet (a held
 * retry partition stays paused) in one librdkafka call: each call waits for
 * librdkafka's fetcher thread, so one per partition made every crossing of
 * queues.max_in_flight wait 2 x partitions times on the loop. */
static void queue_pause_all(struct queue *queue, bool pause)
{
    if (!queue->consumer)
        return;
    struct kafka_partition_offset *parts = malloc(queue->partition_count * sizeof(*parts));
    size_t *which = malloc(queue->partition_count * sizeof(*which));
    size_t n = 0;
    for (size_t i = 0; i < queue->partition_count; i++) {
        struct queue_topic_partition *p = &queue->partitions[i];
        bool want = pause || p->held_head;
        if (!p->assigned || p->paused == want)
            continue;
        if (!parts || !which || want != pause) { /* out of memory, or a held one: alone */
            queue_pause_partition(queue, p, want);
            continue;
        }
        which[n] = i;
        parts[n++] = (struct kafka_partition_offset){p->topic, p->partition, p->next_offset, 0};
    }
    if (n > 0)
        kafka_consumer_pause_many(queue->consumer, parts, n, pause);
    for (size_t i = 0; i < n; i++) {
        if (parts[i].err)
            log_warn("queue", "%s: cannot %s %s [%d]: %s", queue->group_id,
                     pause ? "pause" : "resume", parts[i].topic, parts[i].partition,
                     kafka_error_name(parts[i].err));
        else
            queue->partitions[which[i]].paused = pause;
    }
    free(parts);
    free(which);
}

static void queue_on_flow(void *opaque, bool pause)
{
    struct queue *queue = opaque;
    queue->paused = pause;
    log_info("queue", "%s: %s fetching: %s max_in_flight", queue->group_id,
             pause ? "pausing" : "resuming", pause ? "above" : "back under half of");
    queue_pause_all(queue, pause);
    queue_update_gauges(queue);
}

static uint64_t queue_now_ms(void *opaque)
{
    (void)opaque;
    return clock_monotonic_ms();
}

/* A selective subscriber's JMS selector over the record (architecture §13). */
static bool queue_on_selects(void *opaque, void *consumer, const void *record)
{
    (void)opaque;
    return engine_record_selected(consumer, record);
}

static const struct queue_state_callbacks queue_state_callbacks = {
    .selects = queue_on_selects,
    .deliver = queue_on_deliver,
    .dead_letter = queue_on_dead_letter,
    .retry = queue_on_retry,
    .commit = queue_on_commit,
    .release_record = queue_on_release_record,
    .flow = queue_on_flow,
    .now_ms = queue_now_ms,
};

/* ---- consumer callbacks ------------------------------------------------------ */

/* End a linger on the next turn of the loop (never from inside a librdkafka
 * callback: closing the consumer there would pull it from under the caller).
 * Another member joined or left: partitions this node keeps while it has no
 * subscriber would wait for the linger instead of going to a node that can
 * deliver them. */
static void queue_leave_soon(struct queue *queue, const char *why)
{
    if (queue->leave_now)
        return;
    queue->leave_now = true;
    log_info("queue", "%s: %s while no local subscriber is left: leaving the group now",
             queue->group_id, why);
    struct timeval now = {0, 0};
    event_add(queue->linger_timer, &now);
}

/* The record's message group (architecture §13): a key of its JMSXGroupID
 * (STOMP, JMS) or group-id (AMQP 1.0) header, 0 when it has none; and
 * whether JMSXGroupSeq -1 closes the group with it (ActiveMQ's). */
static uint64_t queue_record_group(const struct kafka_record *record, bool *closes)
{
    uint64_t group = 0;
    *closes = false;
    if (!kafka_record_may_have_header(record, RECORD_HEADER_GROUP_ID) &&
        !kafka_record_may_have_header(record, RECORD_HEADER_GROUP_ID_AMQP) &&
        !kafka_record_may_have_header(record, RECORD_HEADER_GROUP_SEQ))
        return 0; /* most records: no walk (the record's header index) */
    size_t count = kafka_record_header_count(record);
    for (size_t i = 0; i < count; i++) {
        const char *name;
        const void *value;
        size_t len;
        if (kafka_record_header(record, i, &name, &value, &len) != 0 || !value)
            continue;
        if (!group && len > 0 &&
            (strcmp(name, RECORD_HEADER_GROUP_ID) == 0 ||
             strcmp(name, RECORD_HEADER_GROUP_ID_AMQP) == 0)) {
            group = u64_map_string_key(value, len);
            if (!group)
                group = 1;
        } else if (strcmp(name, RECORD_HEADER_GROUP_SEQ) == 0 && len == 2 &&
                   memcmp(value, "-1", 2) == 0) {
            *closes = true;
        }
    }
    return group;
}

static void queue_on_record(void *opaque, struct kafka_record *record)
{
    struct queue *queue = opaque;
    int32_t index = queue_partition_index(queue, record->topic, record->partition, false);
    if (index >= 0 && queue->partitions[index].assigned) {
        queue->partitions[index].next_offset = record->offset + 1;
        if (queue->partitions[index].next_undelivered < 0)
            queue->partitions[index].next_undelivered = record->offset;
    }
    if (index >= 0 && queue->partitions[index].retry && queue->partitions[index].assigned) {
        queue_on_retry_record(queue, index, record);
        queue_update_gauges(queue);
        return;
    }
    bool closes_group = false;
    uint64_t group = queue_record_group(record, &closes_group);
    if (index < 0 || queue_state_add_grouped(queue->state, index, record->offset, record, group,
                                             closes_group) != 0) {
        log_debug("queue", "%s: dropped record %s [%d] @%lld of an unassigned partition",
                  queue->group_id, record->topic, record->partition, (long long)record->offset);
        kafka_record_free(record);
    }
    queue_update_gauges(queue);
}

/* Apply the queue's last purge (architecture §11 "Purge", the definitions
 * view's purge_offsets) to local partition `only`, or to every assigned one
 * (only < 0): what lies below the purge's end offsets is settled without
 * delivery, so this node's commits move past it. */
static void queue_apply_purge(struct queue *queue, int32_t only)
{
    if (!queue->bound)
        return; /* durable subscriptions are not purged */
    const struct queue_definition *definition =
        definitions_queue(queue->context->definitions, queue->vhost, queue->name);
    if (!definition || !definition->purge_offsets)
        return;
    size_t i, purged = 0;
    const json_t *entry;
    json_array_foreach(definition->purge_offsets, i, entry)
    {
        const char *topic = json_string_value(json_object_get(entry, "topic"));
        json_int_t partition = json_integer_value(json_object_get(entry, "partition"));
        json_int_t offset = json_integer_value(json_object_get(entry, "offset"));
        int32_t index = topic ? queue_partition_index(queue, topic, (int32_t)partition, false) : -1;
        if (index < 0 || (only >= 0 && index != only) || !queue->partitions[index].assigned)
            continue;
        if (queue->partitions[index].purge_floor < (int64_t)offset)
            queue->partitions[index].purge_floor = (int64_t)offset;
        purged += queue_state_purge(queue->state, index, (int64_t)offset);
    }
    if (purged)
        log_info("queue", "%s: purge dropped %zu buffered record(s)", queue->group_id, purged);
    queue_update_gauges(queue);
}

static void queue_on_assigned(void *opaque, const struct kafka_partition *parts, size_t count)
{
    struct queue *queue = opaque;
    for (size_t i = 0; i < count; i++) {
        int32_t index = queue_partition_index(queue, parts[i].topic, parts[i].partition, true);
        if (index < 0) {
            log_error("queue", "%s: out of memory tracking %s [%d]", queue->group_id,
                      parts[i].topic, parts[i].partition);
            continue;
        }
        queue->partitions[index].assigned = true;
        queue->partitions[index].paused = false;
        queue->partitions[index].retry = queue_retry_is_topic(&queue->retry, parts[i].topic);
        queue->partitions[index].next_offset = -1;
        queue->partitions[index].next_undelivered = -1;
        queue->partitions[index].purge_floor = -1;
        queue_state_assign(queue->state, index);
        queue_apply_purge(queue, index);
        if (queue->paused)
            queue_pause_partition(queue, &queue->partitions[index], true);
    }
    if (queue->assigned_once && queue->subscriber_count == 0)
        queue_leave_soon(queue, "the group rebalanced"); /* cooperative: no revoke came */
    if (!queue->assigned_once) {
        queue->assigned_once = true;
        for (struct queue_subscriber *qs = queue->subscribers; qs; qs = qs->next)
            queue->context->ready(qs->sub);
    }
    queue_update_gauges(queue);
}

static void queue_on_revoked(void *opaque, const struct kafka_partition *parts, size_t count)
{
    struct queue *queue = opaque;
    for (size_t i = 0; i < count; i++) {
        int32_t index = queue_partition_index(queue, parts[i].topic, parts[i].partition, false);
        if (index < 0)
            continue;
        queue_state_revoke(queue->state, index);
        queue_drop_held(queue, &queue->partitions[index]);
    }
    /* What the clients settled is stored before librdkafka commits on revoke. */
    queue_store_pending(queue);
    for (size_t i = 0; i < count; i++) {
        int32_t index = queue_partition_index(queue, parts[i].topic, parts[i].partition, false);
        if (index < 0)
            continue;
        queue->partitions[index].assigned = false;
        queue->partitions[index].paused = false;
    }
    if (queue->subscriber_count == 0)
        queue_leave_soon(queue, "the group rebalanced");
    queue_update_gauges(queue);
}

/* Kafka's consumer errors are mostly passing (a topic not created yet, a
 * broker away): logged. Kafka refusing the group or topic is not: the
 * subscribers are told, as access refused. */
static void queue_on_consumer_error(void *opaque, int err, const char *reason)
{
    struct queue *queue = opaque;
    log_warn("queue", "%s: %s", queue->group_id, reason);
    if (kafka_error_classify(err) != KAFKA_CLASS_AUTHORIZATION)
        return;
    char text[512];
    snprintf(text, sizeof(text), "Kafka refused %s to group %s: %s", queue->subscription,
             queue->group_id, reason);
    for (struct queue_subscriber *qs = queue->subscribers; qs;) {
        struct queue_subscriber *next = qs->next;
        queue->context->failed(qs->sub, CORE_ERR_ACCESS, text);
        qs = next;
    }
}

static const struct kafka_consumer_handlers queue_consumer_handlers = {
    .record = queue_on_record,
    .assigned = queue_on_assigned,
    .revoked = queue_on_revoked,
    .error = queue_on_consumer_error,
};

/* ---- lifecycle ---------------------------------------------------------------- */

static void queue_free(struct queue *queue)
{
    for (struct queue **link = &queue->engine->queues; *link; link = &(*link)->next) {
        if (*link == queue) {
            *link = queue->next;
            break;
        }
    }
    kafka_lookup_cancel(queue->anchor);
    queue_anchors_cancel(queue);
    queue_bindings_clear(&queue->bindings);
    if (queue->consumer) {
        log_info("queue", "%s: leaving the group (no local subscriber)", queue->group_id);
        queue_store_pending(queue);            /* before the close's commit */
        kafka_consumer_close(queue->consumer); /* commits stored offsets, leaves the group */
        queue->consumer = NULL;                /* no commit callback stores after this */
    }
    for (struct queue_dead_letter *dl = queue->dead_letters; dl; dl = dl->next)
        dl->queue = NULL;
    queue_state_free(queue->state);
    if (queue->linger_timer)
        event_free(queue->linger_timer);
    if (queue->expire_timer)
        event_free(queue->expire_timer);
    if (queue->retry_timer)
        event_free(queue->retry_timer);
    if (queue->store_event)
        event_free(queue->store_event);
    for (size_t i = 0; i < queue->partition_count; i++) {
        queue_drop_held(queue, &queue->partitions[i]);
        free(queue->partitions[i].topic);
    }
    queue_retry_plan_clear(&queue->retry);
    if (queue->stats)
        *queue->stats->in_flight = *queue->stats->consumers = *queue->stats->paused_partitions = 0;
    free(queue->partitions);
    u64_map_free(&queue->partition_map);
    free(queue->group_id);
    free(queue->vhost);
    free(queue->prefix);
    free(queue->subscription);
    free(queue->dead_letter_topic);
    free(queue);
}

/* How long a queue leaving its group waits, at most, for its dead-letter
 * and retry produces to be confirmed, so that their offsets are committed
 * before it leaves (else the next member delivers them again). */
#define QUEUE_LEAVE_WAIT_MS 10000
#define QUEUE_LEAVE_POLL_MS 20

static void queue_on_linger(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct queue *queue = arg;
    if (queue->subscriber_count != 0)
        return;
    if (queue->dead_letters && queue->leave_waited_ms < QUEUE_LEAVE_WAIT_MS) {
        queue->leave_waited_ms += QUEUE_LEAVE_POLL_MS;
        struct timeval poll = {0, QUEUE_LEAVE_POLL_MS * 1000};
        event_add(queue->linger_timer, &poll);
        return;
    }
    queue_free(queue);
}

static void queue_on_expire_timer(evutil_socket_t fd, short what, void *arg)
{
    struct queue *queue = arg;
    size_t expired = queue_state_expire(queue->state, queue_config(queue)->queues.ack_timeout_ms);
    /* A durable subscription's selector is the subscription's (JMS), and an
     * exclusive queue (an /exchange/ subscription's own) has no one else to
     * wait for: what they do not select is settled on the next tick. A
     * shared queue's waits for the subscribers that may come. */
    const struct queue_definition *definition =
        queue->bound ? definitions_queue(queue->context->definitions, queue->vhost, queue->name)
                     : NULL;
    bool private_queue = !queue->bound || (definition && definition->spec.exclusive);
    size_t unselected = queue_state_drop_unselected(
        queue->state, private_queue ? 0 : queue_config(queue)->queues.selector_hold_ms);
    if (unselected > 0) {
        *queue->engine->unselected += unselected;
        log_info("queue",
                 "%s: %zu message(s) no subscriber's selector selected for queues.selector_hold "
                 "were settled without delivery",
                 queue->group_id, unselected);
    }
    if (expired > 0)
        log_warn("queue",
                 "%s: %zu message(s) held longer than queues.ack_timeout were released "
                 "for redelivery",
                 queue->group_id, expired);
    if (unselected > 0 || expired > 0)
        queue_update_gauges(queue);
}

/* Expand the dead-letter pattern: every "{name}" becomes the queue name. */
static char *queue_dead_letter_topic(const char *prefix, const char *pattern, const char *name)
{
    const struct topic_pattern_fill fill = {"{name}", name};
    return topic_pattern_expand(prefix, pattern, &fill, 1);
}

/* Subscribe (or resubscribe) the group: its own topic or wildcard, and
 * what its bindings read (queue_bindings_topics). */
static int queue_subscribe(struct queue *queue, char *err, size_t err_size)
{
    char **topics = NULL;
    size_t count = 0;
    if (!queue_bindings_empty(&queue->bindings) &&
        queue_bindings_topics(&queue->bindings, queue->prefix, queue->subscription, &topics,
                              &count) < 0) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    /* the group reads its own topic, its bindings' and its retry topics (§13) */
    size_t base = topics ? count : 1;
    const char **all = calloc(base + queue->retry.level_count, sizeof(*all));
    if (!all) {
        queue_bindings_free_topics(topics, count);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < base; i++)
        all[i] = topics ? topics[i] : queue->subscription;
    for (size_t i = 0; i < queue->retry.level_count; i++)
        all[base + i] = queue->retry.topics[i];
    int rc = kafka_consumer_subscribe(queue->consumer, all, base + queue->retry.level_count);
    free(all);
    if (rc != 0) {
        snprintf(err, err_size, "cannot subscribe to %s: %s", queue->subscription,
                 kafka_error_name(rc));
        queue_bindings_free_topics(topics, count);
        return -1;
    }
    if (topics)
        log_info("queue", "%s: joining the group for %s and %zu topic(s) of its bindings",
                 queue->group_id, queue->subscription, count - 1);
    else
        log_info("queue", "%s: joining the group for %s", queue->group_id, queue->subscription);
    if (queue->retry.level_count > 0)
        log_info("queue", "%s: with %zu retry topic(s) for delayed redelivery, %s to %s",
                 queue->group_id, queue->retry.level_count, queue->retry.topics[0],
                 queue->retry.topics[queue->retry.level_count - 1]);
    queue_bindings_free_topics(topics, count);
    return 0;
}

/* Stop anchoring (a newer set of bindings, or the queue goes). */
static void queue_anchors_cancel(struct queue *queue)
{
    for (size_t i = 0; i < queue->anchor_count; i++)
        kafka_lookup_cancel(queue->anchors[i].lookup);
    free(queue->anchors);
    queue->anchors = NULL;
    queue->anchor_count = queue->anchors_pending = 0;
}

static void queue_fail_subscribers(struct queue *queue, int error, const char *reason)
{
    log_warn("queue", "%s", reason);
    for (struct queue_subscriber *qs = queue->subscribers; qs;) {
        struct queue_subscriber *next = qs->next;
        queue->context->failed(qs->sub, error, reason);
        qs = next;
    }
}

/* One binding topic is anchored; the last one (re)subscribes the group. A
 * failed anchor only costs the anchor: the topic is read from its
 * committed offsets, else from the beginning (a group that already has
 * members elsewhere refuses a non-member's commit: they anchored it). */
static void queue_on_binding_anchored(void *opaque, int err, const struct kafka_topic_info *topics,
                                      size_t count)
{
    struct queue_anchor *anchor = opaque;
    struct queue *queue = anchor->queue;
    anchor->lookup = NULL;
    if (err)
        log_warn("queue",
                 "%s: cannot anchor a topic of its bindings (%s): it is read from its "
                 "committed offsets, or from the beginning",
                 queue->group_id, kafka_error_name(err));
    if (--queue->anchors_pending > 0)
        return;
    free(queue->anchors);
    queue->anchors = NULL;
    queue->anchor_count = 0;
    char reason[512];
    if (queue_subscribe(queue, reason, sizeof(reason)) < 0)
        queue_fail_subscribers(queue, CORE_ERR_UNAVAILABLE, reason);
}

/* Anchor the group on every topic its bindings read (each partition without
 * a committed offset starts at the end), then subscribe; without bindings
 * subscribe at once. 0, or -1 with err. */
static int queue_anchor_bindings(struct queue *queue, char *err, size_t err_size)
{
    queue_anchors_cancel(queue);
    if (queue_bindings_empty(&queue->bindings))
        return queue_subscribe(queue, err, err_size);
    const char *prefix = queue->prefix;
    char **topics = NULL;
    size_t count = 0;
    if (queue_bindings_topics(&queue->bindings, prefix, queue->subscription, &topics, &count) < 0) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    if (count <= 1) { /* no binding names a legal topic */
        queue_bindings_free_topics(topics, count);
        return queue_subscribe(queue, err, err_size);
    }
    queue->anchors = calloc(count - 1, sizeof(*queue->anchors));
    if (!queue->anchors) {
        queue_bindings_free_topics(topics, count);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    queue->anchor_count = count - 1;
    queue->anchors_pending = count - 1;
    for (size_t i = 1; i < count; i++) { /* topics[0] is the queue's own: never anchored */
        struct queue_anchor *anchor = &queue->anchors[i - 1];
        anchor->queue = queue;
        if (topics[i][0] == '^') {
            /* an amq.topic wildcard: the topics it matches */
            struct address_filter filter;
            const char *pattern = NULL;
            for (size_t p = 0; p < queue->bindings.pattern_count && !pattern; p++) {
                char regex[ADDRESS_NAME_MAX * 4 + 8];
                if (address_wildcard_regex(queue->bindings.patterns[p], prefix, regex,
                                           sizeof(regex)) == 0 &&
                    strcmp(regex, topics[i]) == 0)
                    pattern = queue->bindings.patterns[p];
            }
            if (pattern && address_filter_init(&filter, prefix, pattern) == 0)
                anchor->lookup =
                    kafka_lookup_anchor_group(queue->consumer, NULL, address_filter_match, &filter,
                                              sizeof(filter), queue_on_binding_anchored, anchor);
        } else {
            anchor->lookup = kafka_lookup_anchor_group(queue->consumer, topics[i], NULL, NULL, 0,
                                                       queue_on_binding_anchored, anchor);
        }
        if (!anchor->lookup)
            queue->anchors_pending--; /* out of memory: that topic goes unanchored */
    }
    queue_bindings_free_topics(topics, count);
    if (queue->anchors_pending == 0) {
        free(queue->anchors);
        queue->anchors = NULL;
        queue->anchor_count = 0;
        return queue_subscribe(queue, err, err_size);
    }
    log_info("queue", "%s: anchoring %zu topic(s) of its bindings before joining", queue->group_id,
             queue->anchors_pending);
    return 0;
}

/* A durable subscription's group has a committed offset on every partition
 * now (new ones at the end): join it. */
static void queue_on_anchored(void *opaque, int err, const struct kafka_topic_info *topics,
                              size_t count)
{
    struct queue *queue = opaque;
    queue->anchor = NULL;
    char reason[512];
    int error = CORE_ERR_UNAVAILABLE;
    if (err) {
        snprintf(reason, sizeof(reason), "cannot set up durable subscription %s on %s: %s",
                 queue->group_id, queue->subscription, kafka_error_name(err));
        error = engine_error_from_kafka(err);
    } else if (queue_subscribe(queue, reason, sizeof(reason)) == 0) {
        return;
    }
    log_warn("queue", "%s", reason);
    for (struct queue_subscriber *qs = queue->subscribers; qs;) {
        struct queue_subscriber *next = qs->next;
        queue->context->failed(qs->sub, error, reason);
        qs = next;
    }
}

static struct queue *queue_create(struct queue_engine *engine, const struct core_subscription *sub,
                                  const char *group_id, char *err, size_t err_size)
{
    const struct engine_context *context = engine->base.context;
    const struct config *config = engine_config(context);
    struct queue *queue = calloc(1, sizeof(*queue));
    if (!queue) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    queue->engine = engine;
    queue->context = context;
    queue->kind = sub->destination.kind;
    queue->bound = sub->destination.kind == DESTINATION_QUEUE && !sub->durable_name;
    memcpy(queue->name, sub->destination.name, sizeof(queue->name));
    queue->vhost = strdup(sub->vhost);
    queue->prefix = strdup(sub->topic_prefix);
    if (!queue->vhost || !queue->prefix) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    queue->defined =
        queue->bound && definitions_queue(context->definitions, queue->vhost, queue->name) != NULL;
    queue->group_id = strdup(group_id);
    char subscription[ADDRESS_NAME_MAX * 4 + 8];
    if (sub->destination.wildcard) {
        if (address_wildcard_regex(sub->destination.name, queue->prefix, subscription,
                                   sizeof(subscription)) < 0) {
            snprintf(err, err_size, "wildcard %s is too long", sub->destination.name);
            goto fail;
        }
    } else if (address_kafka_topic(&sub->destination, queue->prefix, subscription,
                                   sizeof(subscription), err, err_size) < 0) {
        goto fail;
    }
    queue->subscription = strdup(subscription);
    queue->dead_letter_topic =
        queue_dead_letter_topic(queue->prefix, config->queues.dead_letter_topic, queue->name);
    queue->state = queue_state_new(&queue_state_callbacks, queue, config->queues.max_deliveries,
                                   queue_pause_limit(config));
    queue->linger_timer = event_new(context->base, -1, 0, queue_on_linger, queue);
    queue->expire_timer = event_new(context->base, -1, EV_PERSIST, queue_on_expire_timer, queue);
    queue->retry_timer = event_new(context->base, -1, 0, queue_on_retry_timer, queue);
    queue->store_event = event_new(context->base, -1, 0, queue_on_store_event, queue);
    queue->stats = stats_get(context->stats, queue->kind, queue->vhost, queue->name);
    if (!queue->group_id || !queue->subscription || !queue->dead_letter_topic || !queue->state ||
        !queue->linger_timer || !queue->expire_timer || !queue->retry_timer ||
        !queue->store_event) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    queue_read_arguments(queue);
    /* Delayed redelivery (§13): queues only; a durable subscription's name
     * is its topic's, which other subscriptions share. */
    if (queue->bound &&
        queue_retry_plan_init(
            &queue->retry, queue->prefix, config->queues.retry_topic, queue->name,
            config->queues.redelivery_delay.initial_ms,
            strtod(config->queues.redelivery_delay.multiplier, NULL),
            config->queues.redelivery_delay.max_ms,
            queue_arguments_max_deliveries(&queue->arguments, config->queues.max_deliveries)) < 0) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    queue_state_delay_releases(queue->state, queue->retry.level_count > 0);
    /* earliest: a durable group has offsets on every partition it knew at
     * creation (anchored below); partitions and topics that appear later
     * were created after the subscription, so all their records are for it. */
    queue->consumer = kafka_consumer_new(context->kafka, group_id, "earliest",
                                         &queue_consumer_handlers, queue, err, err_size);
    if (!queue->consumer)
        goto fail;
    if (sub->durable_name) {
        struct address_filter filter;
        if (sub->destination.wildcard &&
            address_filter_init(&filter, queue->prefix, sub->destination.name) < 0) {
            snprintf(err, err_size, "wildcard %s is too long", sub->destination.name);
            goto fail;
        }
        queue->anchor =
            sub->destination.wildcard
                ? kafka_lookup_anchor_group(queue->consumer, NULL, address_filter_match, &filter,
                                            sizeof(filter), queue_on_anchored, queue)
                : kafka_lookup_anchor_group(queue->consumer, queue->subscription, NULL, NULL, 0,
                                            queue_on_anchored, queue);
        if (!queue->anchor) {
            snprintf(err, err_size, "out of memory");
            goto fail;
        }
    } else if (queue->bound) {
        if (queue_bindings_compute(context->definitions, queue->vhost, queue->name,
                                   &queue->bindings) < 0) {
            snprintf(err, err_size, "out of memory");
            goto fail;
        }
        /* bound: nothing published from now on may be missed, so its
         * subscribers are ready once the group holds its anchored partitions */
        queue->wait_assignment = !queue_bindings_empty(&queue->bindings);
        if (queue_anchor_bindings(queue, err, err_size) < 0)
            goto fail;
    } else if (queue_subscribe(queue, err, err_size) < 0) {
        goto fail;
    }
    struct timeval interval = {QUEUE_EXPIRE_CHECK_MS / 1000, (QUEUE_EXPIRE_CHECK_MS % 1000) * 1000};
    event_add(queue->expire_timer, &interval);
    queue->next = engine->queues;
    engine->queues = queue;
    return queue;
fail:
    if (queue->consumer) {
        kafka_consumer_close(queue->consumer);
        queue->consumer = NULL;
    }
    /* queue_free unlinks (a no-op here) and frees the rest */
    queue_free(queue);
    return NULL;
}

static int queue_engine_subscribe(struct engine *base, struct core_subscription *sub, char *err,
                                  size_t err_size)
{
    struct queue_engine *engine = (struct queue_engine *)base;
    char group_id[ADDRESS_GROUP_ID_MAX + 1];
    /* Without a client-id (RabbitMQ's durable:true) the topic and name scope
     * it, as RabbitMQ names its subscription queue after destination and id. */
    const char *client_id = sub->client_id;
    int named;
    if (sub->durable_name && client_id && !sub->options.durable_by_destination)
        named = address_group_id(sub->vhost, "sub", client_id, sub->durable_name, group_id,
                                 sizeof(group_id));
    else if (sub->durable_name)
        named = address_group_id(sub->vhost, "dsub", sub->destination.name, sub->durable_name,
                                 group_id, sizeof(group_id));
    else
        named = address_group_id(sub->vhost, "q", sub->destination.name, NULL, group_id,
                                 sizeof(group_id));
    if (named < 0) {
        snprintf(err, err_size, "the consumer group name of %s '%s' in vhost '%s' is too long",
                 sub->durable_name ? "durable subscription" : "queue",
                 sub->durable_name ? sub->durable_name : sub->destination.name, sub->vhost);
        return CORE_ERR_INVALID;
    }
    struct queue *queue = NULL;
    for (struct queue *q = engine->queues; q; q = q->next)
        if (strcmp(q->group_id, group_id) == 0)
            queue = q;
    if (queue && sub->durable_name && queue->subscriber_count > 0) {
        snprintf(err, err_size, "durable subscription '%s' of %s '%s' is already active",
                 sub->durable_name, client_id ? "client-id" : "topic",
                 client_id ? client_id : sub->destination.name);
        return CORE_ERR_INVALID;
    }
    struct queue_subscriber *qs = queue_subscriber_of(sub);
    if (!queue) {
        queue = queue_create(engine, sub, group_id, err, err_size);
        if (!queue)
            return CORE_ERR_UNAVAILABLE;
    }
    /* added blocked, so that a selective one gets nothing before it is marked */
    if (queue_state_consumer_add(queue->state, sub, sub->options.credit, sub->options.auto_accept,
                                 true) != 0) {
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    if (sub->selector)
        queue_state_consumer_select(queue->state, sub);
    if (sub->options.priority != 0)
        queue_state_consumer_priority(queue->state, sub, sub->options.priority);
    if (!sub->blocked)
        queue_state_consumer_block(queue->state, sub, false);
    event_del(queue->linger_timer);
    queue->leave_now = false;
    qs->sub = sub;
    qs->queue = queue;
    qs->prev = NULL;
    qs->next = queue->subscribers;
    if (queue->subscribers)
        queue->subscribers->prev = qs;
    queue->subscribers = qs;
    queue->subscriber_count++;
    if (queue->arguments.single_active_consumer)
        queue_apply_single_active(queue); /* blocks it unless it is the first */
    /* A queue has its messages in Kafka already: nothing can be missed. A
     * durable subscription is positioned once the group has assigned it. */
    if ((!sub->durable_name && !queue->wait_assignment) || queue->assigned_once)
        queue->context->ready(sub);
    queue_update_gauges(queue);
    return CORE_OK;
}

/* After its last subscriber detached: delete the durable subscription
 * `queue` serves (leave the group now, forget its position, free it). */
static void queue_forget(struct queue *queue)
{
    if (queue->subscriber_count > 0 || !queue->consumer)
        return; /* still in use: an UNSUBSCRIBE does not delete it from under others */
    struct address_filter filter;
    bool wildcard = queue->subscription[0] == '^';
    if (wildcard && address_filter_init(&filter, queue->prefix, queue->name) < 0)
        return; /* cannot happen: queue_create built the same filter */
    log_info("queue", "%s: durable subscription deleted: leaving the group, forgetting its place",
             queue->group_id);
    kafka_lookup_cancel(queue->anchor);
    queue->anchor = NULL;
    queue_store_pending(queue); /* as a close would commit them before forgetting */
    kafka_consumer_close_forget(queue->consumer, queue->subscription,
                                wildcard ? NULL : queue->subscription,
                                wildcard ? address_filter_match : NULL, &filter, sizeof(filter));
    queue->consumer = NULL;
    queue_free(queue);
}

/* Detach: releases the subscriber's unsettled deliveries; the queue leaves
 * its group after queues.linger when no subscriber is left (at once, and
 * forgetting its position, when `forget` and it serves a durable subscription). */
static void queue_engine_unsubscribe(struct core_subscription *sub, bool forget)
{
    struct queue_subscriber *qs = queue_subscriber_of(sub);
    struct queue *queue = qs->queue;
    if (qs->prev)
        qs->prev->next = qs->next;
    else
        queue->subscribers = qs->next;
    if (qs->next)
        qs->next->prev = qs->prev;
    queue->subscriber_count--;
    qs->queue = NULL;
    queue_state_consumer_remove(queue->state, sub); /* releases its deliveries */
    if (queue->active == qs) {
        queue->active = NULL;
        queue_apply_single_active(queue); /* the next oldest takes over */
    }
    if (queue->subscriber_count == 0) {
        uint64_t linger_ms = queue_config(queue)->queues.linger_ms;
        struct timeval linger = {(time_t)(linger_ms / 1000),
                                 (suseconds_t)(linger_ms % 1000) * 1000};
        log_debug("queue", "%s: no local subscriber left; staying in the group for %llu ms",
                  queue->group_id, (unsigned long long)linger_ms);
        queue->leave_waited_ms = 0;
        event_add(queue->linger_timer, &linger);
    }
    queue_update_gauges(queue);
    if (forget && sub->durable_name)
        queue_forget(queue);
}

static int queue_engine_settle(struct core_subscription *sub, uint64_t id,
                               enum queue_outcome outcome, const char *reason)
{
    struct queue *queue = queue_subscriber_of(sub)->queue;
    int rc = queue_state_settle(queue->state, id, outcome, reason);
    if (rc == 0 && queue->stats) {
        if (outcome == QUEUE_ACCEPT)
            (*queue->stats->acked)++;
        else
            (*queue->stats->nacked)++;
    }
    queue_update_gauges(queue);
    return rc == 0 ? CORE_OK : CORE_ERR_INVALID;
}

struct queue_transaction_offsets {
    struct queue *queue;
    struct kafka_txn *txn;
    int added; /* -1 once out of memory */
};

static void queue_transaction_offset(void *opaque, int32_t index, int64_t position)
{
    struct queue_transaction_offsets *t = opaque;
    if (index < 0 || (size_t)index >= t->queue->partition_count || !t->queue->consumer)
        return;
    const struct queue_topic_partition *p = &t->queue->partitions[index];
    if (!p->assigned || t->added < 0)
        return;
    if (kafka_txn_add_offset(t->txn, t->queue->consumer, p->topic, p->partition, position) !=
        KAFKA_OK)
        t->added = -1;
    else
        t->added++;
}

static int queue_engine_transaction_offsets(struct core_subscription *sub, const uint64_t *ids,
                                            size_t count, struct kafka_txn *txn)
{
    struct queue_transaction_offsets t = {queue_subscriber_of(sub)->queue, txn, 0};
    queue_state_positions_if_accepted(t.queue->state, ids, count, queue_transaction_offset, &t);
    return t.added;
}

static void queue_engine_block(struct core_subscription *sub, bool blocked)
{
    struct queue_subscriber *qs = queue_subscriber_of(sub);
    struct queue *queue = qs->queue;
    queue_state_consumer_block(queue->state, sub,
                               blocked || (queue->active && queue->active != qs));
}

static size_t queue_engine_subscriber_count(const struct core_subscription *sub)
{
    return queue_subscriber_of(sub)->queue->subscriber_count;
}

/* The ready count of the subscription's queue on this node's member
 * (queue_ready.h, architecture §12 "basic.get-ok's message_count"): its
 * available records plus, per partition it holds, what it has not read up
 * to librdkafka's cached end offset (updated by every fetch response: no
 * I/O). Retry topics' partitions are left out (what they hold is not due
 * yet); their records count once due and available. Asked per get-ok, not
 * per delivery: one walk of the partitions, the consumer's position asked
 * only of those not read up to their end. */
static uint64_t queue_engine_ready_count(const struct core_subscription *sub)
{
    struct queue *queue = queue_subscriber_of(sub)->queue;
    if (!queue || !queue->state)
        return 0;
    struct queue_state_stats stats;
    queue_state_stats(queue->state, &stats);
    uint64_t unread = 0;
    for (size_t i = 0; queue->consumer && i < queue->partition_count; i++) {
        const struct queue_topic_partition *p = &queue->partitions[i];
        if (!p->assigned || p->retry || p->next_offset < 0)
            continue; /* nothing read since assignment: counts 0 (queue_ready_unread) */
        struct queue_ready_partition counted = {
            .end = kafka_consumer_high_watermark(queue->consumer, p->topic, p->partition),
            .fetched = p->next_offset,
            .position = -1,
            .purge_floor = p->purge_floor,
        };
        if (counted.end <= counted.fetched)
            continue; /* read up to its end: no position to ask for */
        counted.position = kafka_consumer_position(queue->consumer, p->topic, p->partition);
        unread += queue_ready_unread(&counted);
    }
    bool drop_head = queue->arguments.max_length >= 0 && !queue->arguments.reject_publish;
    return queue_ready_total(stats.available, unread, drop_head ? queue->arguments.max_length : -1);
}

/* The view of the definitions changed: each queue recomputes what its
 * bindings read and, when its topics changed, anchors the new ones and
 * resubscribes its group (a queue without a consumer does so when it gets
 * one: queue_create). Run once per loop turn however many records the
 * store applied (queue_on_definitions_change). */
static void queue_engine_definitions_changed(evutil_socket_t fd, short what, void *arg)
{
    struct queue_engine *engine = arg;
    struct engine *base = &engine->base;
    for (struct queue *q = engine->queues, *next; q; q = next) {
        next = q->next;
        if (q->bound)
            queue_read_arguments(q); /* deleted and declared again with other arguments */
        if (!q->bound || !q->consumer)
            continue;
        if (q->subscriber_count == 0 && !queue_bindings_empty(&q->bindings) &&
            !definitions_queue(base->context->definitions, q->vhost, q->name)) {
            /* deleted (auto-delete, or by a client): no linger for it */
            queue_free(q);
            continue;
        }
        bool defined = definitions_queue(base->context->definitions, q->vhost, q->name) != NULL;
        bool deleted = q->defined && !defined;
        q->defined = defined;
        if (q->subscriber_count > 0 && deleted) {
            /* deleted under its subscribers (by a client, on any node): they
             * end (AMQP 0-9-1 sends basic.cancel), as in RabbitMQ; the last
             * one's unsubscribe frees the queue on a later turn */
            char reason[ADDRESS_NAME_MAX + 64];
            snprintf(reason, sizeof(reason), "queue '%s' in vhost '%s' was deleted", q->name,
                     q->vhost);
            queue_fail_subscribers(q, CORE_ERR_NOT_FOUND, reason);
            continue;
        }
        struct queue_bindings now;
        if (queue_bindings_compute(base->context->definitions, q->vhost, q->name, &now) < 0) {
            log_error("queue", "%s: out of memory reading its bindings; kept the old ones",
                      q->group_id);
            continue;
        }
        if (queue_bindings_equal(&now, &q->bindings)) {
            queue_bindings_clear(&now);
            continue;
        }
        queue_bindings_clear(&q->bindings);
        q->bindings = now;
        log_info("queue",
                 "%s: its bindings changed (%zu exchange topic(s), %zu amq.topic key(s)): "
                 "resubscribing",
                 q->group_id, now.exchange_count, now.pattern_count);
        char reason[512];
        if (queue_anchor_bindings(q, reason, sizeof(reason)) < 0)
            queue_fail_subscribers(q, CORE_ERR_UNAVAILABLE, reason);
    }
}

/* definitions_store_watch: an exchange, queue or binding was applied. */
static void queue_on_definitions_change(void *opaque, const struct definitions_change *change)
{
    struct queue_engine *engine = opaque;
    if (change->kind == DEFINITIONS_RECORD_PURGE) {
        if (change->removed)
            return;
        for (struct queue *q = engine->queues; q; q = q->next)
            if (q->bound && strcmp(q->name, change->name) == 0 &&
                strcmp(q->vhost, change->vhost) == 0)
                queue_apply_purge(q, -1);
        return;
    }
    if (engine->queues)
        event_active(engine->definitions_event, EV_TIMEOUT, 0);
}

static void queue_engine_reconfigure(struct engine *base)
{
    struct queue_engine *engine = (struct queue_engine *)base;
    const struct config *config = engine_config(base->context);
    for (struct queue *q = engine->queues; q; q = q->next)
        queue_state_set_limits(
            q->state, queue_arguments_max_deliveries(&q->arguments, config->queues.max_deliveries),
            queue_pause_limit(config));
}

/* Close every queue (shutdown) and free the engine. */
static void queue_engine_free(struct engine *base)
{
    struct queue_engine *engine = (struct queue_engine *)base;
    if (!engine)
        return;
    if (engine->watching)
        definitions_store_unwatch(base->context->definitions_store, queue_on_definitions_change,
                                  engine);
    while (engine->queues)
        queue_free(engine->queues);
    if (engine->definitions_event)
        event_free(engine->definitions_event);
    free(engine);
}

static const struct engine_ops queue_engine_ops = {
    .name = "queue",
    .state_size = sizeof(struct queue_subscriber),
    .subscribe = queue_engine_subscribe,
    .settle = queue_engine_settle,
    .transaction_offsets = queue_engine_transaction_offsets,
    .block = queue_engine_block,
    .unsubscribe = queue_engine_unsubscribe,
    .subscriber_count = queue_engine_subscriber_count,
    .ready_count = queue_engine_ready_count,
    .reconfigure = queue_engine_reconfigure,
    .free = queue_engine_free,
};

struct engine *queue_engine_new(const struct engine_context *context, char *err, size_t err_size)
{
    struct queue_engine *engine = calloc(1, sizeof(*engine));
    if (!engine) {
        snprintf(err, err_size, "queue engine: out of memory");
        return NULL;
    }
    engine->base.ops = &queue_engine_ops;
    engine->base.context = context;
    engine->unmatched = metrics_counter(
        context->metrics, "kbridge_unmatched_total",
        "Records a queue read from a bound exchange's topic that none of its bindings match: "
        "settled without delivery.",
        NULL);
    engine->maxlen_dropped = metrics_counter(
        context->metrics, "kbridge_maxlen_dropped_total",
        "Records a queue with x-max-length (drop-head) did not deliver because more than its "
        "limit were ready after them: dead-lettered with a dead-letter exchange, else dropped.",
        NULL);
    engine->unselected = metrics_counter(
        context->metrics, "kbridge_selector_unselected_total",
        "Queue records that no subscriber's message selector selected for queues.selector_hold "
        "while every subscriber had one: settled without delivery.",
        NULL);
    engine->retried = metrics_counter(
        context->metrics, "kbridge_redelivery_delayed_total",
        "Queue messages a subscriber released that went to a retry topic, confirmed by Kafka, "
        "to be redelivered after queues.redelivery_delay.",
        NULL);
    engine->held = metrics_gauge(
        context->metrics, "kbridge_redelivery_held",
        "Records this node fetched from retry topics and holds until their redelivery time.", NULL);
    engine->definitions_event =
        event_new(context->base, -1, 0, queue_engine_definitions_changed, engine);
    if (!engine->unmatched || !engine->maxlen_dropped || !engine->unselected || !engine->retried ||
        !engine->held || !engine->definitions_event ||
        (context->definitions_store &&
         definitions_store_watch(context->definitions_store, queue_on_definitions_change, engine) <
             0)) {
        queue_engine_free(&engine->base);
        snprintf(err, err_size, "queue engine: out of memory");
        return NULL;
    }
    engine->watching = context->definitions_store != NULL;
    return &engine->base;
}
