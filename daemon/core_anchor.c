/* SPDX-License-Identifier: Apache-2.0 */
/* core_anchor.c -- a new binding anchors its queue before it is answered
 * (architecture §11, "A binding sees what is published after it exists").
 *
 * When a client binds a queue to an exchange, the queue's consumer group
 * (kbridge.q.NAME) is given a committed offset at the end of every partition
 * of the topics its bindings make it read, before the bind is answered: a
 * message published after bind-ok then reaches the queue even when it has
 * no consumer yet (RabbitMQ keeps such messages in the queue). Partitions
 * that already have a committed offset keep it (kafka_lookup_anchor_group),
 * so anchoring twice changes nothing. A group with members (a consumer on
 * some node) refuses offset commits from outside: its members anchor the
 * new topics themselves when their view of the bindings changes (queue.c,
 * queue_engine_definitions_changed), so that refusal is logged, not an error.
 *
 * Owns: the anchors in flight (core->binding_anchors), each with a consumer
 * handle of the group that never joins it, closed once its lookups are done. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "config.h"
#include "core_internal.h"
#include "definitions.h"
#include "kafka.h"
#include "log.h"
#include "queue_bindings.h"

struct core_anchor;

/* One topic (or wildcard) being anchored: the lookup's opaque. */
struct core_anchor_lookup {
    struct core_anchor *anchor;
    struct kafka_lookup *lookup; /* NULL once it answered */
};

struct core_anchor {
    struct core_anchor *next, *prev; /* core->binding_anchors */
    struct core *core;
    struct kafka_consumer *consumer;    /* of the queue's group; never subscribed */
    struct core_anchor_lookup *lookups; /* one per topic (or wildcard) anchored */
    size_t lookup_count;
    size_t pending;
    core_anchor_fn done; /* NULL once cancelled */
    void *opaque;
    char group_id[ADDRESS_GROUP_ID_MAX + 1];
};

static void anchor_unlink(struct core_anchor *anchor)
{
    struct core *core = anchor->core;
    if (anchor->prev)
        anchor->prev->next = anchor->next;
    else
        core->binding_anchors = anchor->next;
    if (anchor->next)
        anchor->next->prev = anchor->prev;
}

static void anchor_free(struct core_anchor *anchor)
{
    anchor_unlink(anchor);
    kafka_consumer_close(anchor->consumer);
    free(anchor->lookups);
    free(anchor);
}

static void anchor_on_lookup(void *opaque, int err, const struct kafka_topic_info *topics,
                             size_t count)
{
    (void)topics;
    (void)count;
    struct core_anchor_lookup *slot = opaque;
    struct core_anchor *anchor = slot->anchor;
    slot->lookup = NULL; /* kafka_lookup_done frees it */
    if (err)
        log_info("core",
                 "group %s: not anchored at a binding's topic (%s); a member of the group "
                 "anchors it when it sees the binding",
                 anchor->group_id, kafka_error_name(err));
    if (--anchor->pending > 0)
        return;
    core_anchor_fn done = anchor->done;
    void *done_opaque = anchor->opaque;
    anchor_free(anchor);
    if (done)
        done(done_opaque);
}

/* Start one lookup: a literal topic, or the topics a wildcard matches. */
static bool anchor_start_lookup(struct core_anchor *anchor, const char *topic,
                                const struct address_filter *filter)
{
    struct core_anchor_lookup *slot = &anchor->lookups[anchor->lookup_count];
    slot->anchor = anchor;
    slot->lookup = filter
                       ? kafka_lookup_anchor_group(anchor->consumer, NULL, address_filter_match,
                                                   filter, sizeof(*filter), anchor_on_lookup, slot)
                       : kafka_lookup_anchor_group(anchor->consumer, topic, NULL, NULL, 0,
                                                   anchor_on_lookup, slot);
    if (!slot->lookup)
        return false; /* out of memory: that topic goes unanchored */
    anchor->lookup_count++;
    anchor->pending++;
    return true;
}

/* The Kafka topic of a destination of `kind` named `name`; none when it is
 * no legal topic name (nothing can be published there). */
static void anchor_named_topic(struct core_anchor *anchor, const char *prefix,
                               enum destination_kind kind, const char *name)
{
    struct destination destination = {.kind = kind};
    char topic[ADDRESS_NAME_MAX * 2 + 8];
    if (strlen(name) > ADDRESS_NAME_MAX)
        return;
    strcpy(destination.name, name);
    if (address_kafka_topic(&destination, prefix, topic, sizeof(topic), NULL, 0) == 0)
        anchor_start_lookup(anchor, topic, NULL);
}

static const struct kafka_consumer_handlers anchor_handlers = {0};

struct core_anchor *core_anchor_queue(struct core *core, const char *vhost, const char *queue,
                                      core_anchor_fn done, void *opaque)
{
    const char *prefix = core_vhost_topic_prefix(core, vhost);
    if (!prefix)
        return NULL; /* a vhost this node does not serve: nobody here reads its queues */
    struct queue_bindings bindings = {0};
    if (queue_bindings_compute(core_definitions(core), vhost, queue, &bindings) < 0)
        return NULL;
    if (queue_bindings_empty(&bindings)) {
        queue_bindings_clear(&bindings);
        return NULL;
    }
    struct core_anchor *anchor = calloc(1, sizeof(*anchor));
    size_t most = bindings.exchange_count + bindings.pattern_count + bindings.keyed_count;
    if (!anchor || !(anchor->lookups = calloc(most, sizeof(*anchor->lookups)))) {
        free(anchor);
        queue_bindings_clear(&bindings);
        return NULL;
    }
    anchor->core = core;
    anchor->done = done;
    anchor->opaque = opaque;
    if (address_group_id(vhost, "q", queue, NULL, anchor->group_id, sizeof(anchor->group_id)) < 0) {
        free(anchor->lookups);
        free(anchor);
        queue_bindings_clear(&bindings);
        return NULL;
    }
    char err[256];
    anchor->consumer = kafka_consumer_new(core->kafka, anchor->group_id, "latest", &anchor_handlers,
                                          anchor, err, sizeof(err));
    if (!anchor->consumer) {
        log_warn("core", "group %s: cannot anchor its new binding: %s", anchor->group_id, err);
        free(anchor->lookups);
        free(anchor);
        queue_bindings_clear(&bindings);
        return NULL;
    }
    anchor->next = core->binding_anchors;
    if (anchor->next)
        anchor->next->prev = anchor;
    core->binding_anchors = anchor;

    /* The topics queue_bindings_topics names, a wildcard as its filter. */
    for (size_t i = 0; i < bindings.exchange_count; i++)
        anchor_named_topic(anchor, prefix, DESTINATION_EXCHANGE, bindings.exchanges[i]);
    for (size_t i = 0; i < bindings.pattern_count; i++) {
        const char *pattern = bindings.patterns[i];
        struct address_filter filter;
        if (!strchr(pattern, '*') && !strchr(pattern, '#'))
            anchor_named_topic(anchor, prefix, DESTINATION_TOPIC, pattern);
        else if (address_filter_init(&filter, prefix, pattern) == 0)
            anchor_start_lookup(anchor, NULL, &filter);
    }
    for (size_t i = 0; i < bindings.keyed_count; i++)
        anchor_named_topic(anchor, prefix, DESTINATION_TOPIC, bindings.keyed[i]);
    queue_bindings_clear(&bindings);
    if (anchor->pending == 0) {
        anchor_free(anchor);
        return NULL;
    }
    return anchor;
}

void core_anchor_cancel(struct core_anchor *anchor)
{
    if (anchor)
        anchor->done = NULL; /* its lookups finish; the consumer is closed after them */
}

void core_anchor_free_all(struct core *core)
{
    while (core->binding_anchors) {
        struct core_anchor *anchor = core->binding_anchors;
        for (size_t i = 0; i < anchor->lookup_count; i++)
            kafka_lookup_cancel(anchor->lookups[i].lookup); /* NULL is fine */
        anchor_free(anchor);
    }
}
