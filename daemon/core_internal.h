/* core_internal.h -- structures shared by core.c, queue.c and topic.c; not
 * for adapters (they use core.h). */
#ifndef KBRIDGE_CORE_INTERNAL_H
#define KBRIDGE_CORE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"
#include "u64_map.h"

struct event;
struct metrics_histogram;
struct kafka_record;
struct queue;
struct topic_reader;

#define CORE_STATS_BUCKETS 4096 /* hash buckets of core->stats */

/* Per-destination counters for /metrics (architecture §9: published, delivered, acked,
 * nacked, redelivered, dead-lettered, in-flight, consumers, paused partitions). */
struct destination_stats {
    struct destination_stats *next; /* in its bucket of core->stats */
    enum destination_kind kind;
    char name[ADDRESS_NAME_MAX + 1];
    uint64_t *published;
    uint64_t *delivered;
    uint64_t *acked;
    uint64_t *nacked;
    uint64_t *redelivered;
    uint64_t *dead_lettered;
    double *in_flight;
    double *consumers;
    double *paused_partitions;
};

struct core {
    struct event_base *base;
    struct config *const *config;
    struct kafka *kafka;
    struct metrics *metrics;
    struct worker_pool *workers;
    struct core_session *sessions;
    struct queue *queues;
    struct topic_reader *readers;
    /* per-destination stats by hash of kind and name: looked up on every
     * publish, so a node with thousands of destinations must not scan them */
    struct destination_stats *stats[CORE_STATS_BUCKETS];
    bool draining;
    uint64_t config_generation; /* 1, raised by each reload: sessions' ACL caches follow it */
    uint64_t *late_settles;
    uint64_t *auth_failures;
    uint64_t *expired[2];            /* kbridge_expired_total{kind="queue"|"topic"} */
    struct reply_requests *requests; /* outstanding requests (reply.h) */
    uint64_t *requests_total;        /* publishes with a /reply-queue/ reply-to */
    uint64_t *replies_routed;
    uint64_t *replies_dropped;         /* reason="unknown-token" */
    uint64_t *replies_dropped_expired; /* reason="expired" */
    struct metrics_histogram *reply_latency;
    char correlation_scratch[256]; /* correlation-id of the message being delivered */
    char reply_to_scratch[ADDRESS_NAME_MAX + 16];
};

struct core_session {
    struct core_session *next; /* core->sessions, doubly linked: O(1) unlink */
    struct core_session *prev;
    struct core *core;
    char *protocol;
    char *user;
    char *client_id;
    char *peer;
    bool anonymous;
    bool revoked;          /* a reload took its access: every right is refused */
    char *password_hash;   /* the user's hash when it logged in (NULL: anonymous) */
    core_revoke_fn revoke; /* the adapter's handler, or NULL */
    void *revoke_opaque;
    uint32_t unconfirmed;
    uint64_t sticky_seed;                 /* random: picks its producers' partitions */
    struct core_publish_pending *pending; /* publishes awaiting Kafka */
    struct core_subscription *subscriptions;
    /* ACL decisions by destination name (core_acl_allows): struct
     * core_acl_entry by u64_map_string_key, at most CORE_ACL_CACHE_MAX, and
     * the session's config_user; valid while acl_generation is the core's
     * config_generation (0: not filled yet). */
    struct u64_map acl_cache;
    uint64_t acl_generation;
    const struct config_user *acl_user; /* NULL: not a configured user (any more) */
};

/* One subscriber of a queue (or durable subscription) or of a topic reader. */
struct core_subscription {
    struct core_subscription *next; /* in the session (doubly linked) */
    struct core_subscription *prev;
    struct core_subscription *peer_next; /* in the queue's / reader's list (doubly linked) */
    struct core_subscription *peer_prev;
    struct core_session *session;
    struct destination destination;
    struct core_subscribe_options options;
    char *durable_name;
    struct core_subscription_handlers handlers;
    void *opaque;
    struct queue *queue;         /* queue or durable subscription */
    struct topic_reader *reader; /* non-durable topic */
    struct event *ready_event;   /* deferred ready callback */
    /* Deliveries stop while `blocked` (= client_blocked || !ready_sent): none
     * goes out before the adapter has seen ready and set up its side. */
    bool blocked;
    bool client_blocked; /* core_subscription_block() from the adapter */
    bool ready_sent;
    /* non-durable topic: bounded backlog of shared records, a ring of
     * backlog_size slots grown on demand up to backlog_capacity
     * (topics.max_backlog), so an idle subscriber costs no backlog */
    struct shared_record **backlog;
    uint32_t backlog_head;
    uint32_t backlog_count;
    uint32_t backlog_size;
    uint32_t backlog_capacity;
    uint64_t dropped;
    bool overflowed;   /* backlog full under the disconnect policy */
    char *reply_token; /* temporary queue: only records routed to this token */
    /* next temporary queue whose token has the same map key (topic.c) */
    struct core_subscription *token_next;
};

/* Is `record` a reply routed to `token`: header kbridge-reply-token, or a
 * kafka_correlationId "TOKEN:REQUEST" copied back by a native responder? */
bool core_record_is_reply_to(const struct kafka_record *record, const char *token);
/* The token a reply record is routed to, as core_record_is_reply_to reads it
 * (pointing into the record, *length bytes, not NUL-terminated), or NULL. */
const char *core_record_reply_token(const struct kafka_record *record, size_t *length);
/* Has the record's `expires` header (epoch ms) passed? Counts it when it
 * has (`queue`: a queue or durable subscription, else a topic). */
bool core_record_expired(struct core *core, const struct kafka_record *record, bool queue);
/* Is the Kafka topic (prefix included) one of kbridge's reply topics? */
bool core_topic_is_reserved(const struct core *core, const char *topic);
/* A reply that expired before its temporary queue could take it. */
void core_count_expired_reply(struct core *core);
/* A record read from this node's reply topic: count it routed or dropped. */
void core_count_reply(struct core *core, const struct kafka_record *record, bool routed);
/* A reply about to be delivered: add the requester's correlation-id when the
 * record has none but names a remembered request (kafka_correlationId). */
void core_reply_complete(struct core *core, struct core_delivery *delivery);
/* A native request (kafka_replyTopic, no reply-to) about to be delivered to a
 * bridge client: add reply-to /queue/REPLYTOPIC and, when it has none, the
 * correlation-id from kafka_correlationId, so STOMP and AMQP responders answer
 * as they always do. */
void core_request_complete(struct core *core, struct core_delivery *delivery);

/* A fetched record shared by the subscribers of a topic reader. */
struct shared_record {
    struct kafka_record *record;
    uint32_t refs;
};

/* Stats for a destination, created on first use. NULL on allocation failure. */
struct destination_stats *core_stats(struct core *core, enum destination_kind kind,
                                     const char *name);

/* Fill a core_delivery from a record. */
void core_delivery_from_record(struct core_delivery *delivery, const struct core_subscription *sub,
                               const struct kafka_record *record, uint64_t id,
                               uint32_t delivery_count);

/* May the session consume from Kafka topic `topic` (prefix included)? A
 * wildcard subscription is checked against each concrete topic it reads. */
bool core_session_may_consume_topic(struct core_session *session, const char *topic);

/* Schedule the subscription's ready callback on the next loop turn. */
void core_subscription_schedule_ready(struct core_subscription *sub);

/* ---- queue.c ------------------------------------------------------------- */

/* Attach a subscriber to the queue (or durable subscription) for sub; creates
 * the queue and its consumer group on first use. 0 or a core_error with err. */
int queue_attach(struct core *core, struct core_subscription *sub, char *err, size_t err_size);
/* Detach: releases the subscriber's unsettled deliveries; the queue leaves its
 * group after a short linger when no subscriber is left. */
void queue_detach(struct core_subscription *sub);
int queue_settle(struct core_subscription *sub, uint64_t id, enum queue_outcome outcome,
                 const char *reason);
void queue_block(struct core_subscription *sub, bool blocked);
/* After its last subscriber detached: delete the durable subscription
 * `queue` serves (leave the group now, forget its position, free it). */
void queue_forget(struct queue *queue);
/* Apply reloaded limits to every queue. */
void queue_reconfigure_all(struct core *core);
/* Close every queue (shutdown). */
void queue_free_all(struct core *core);

/* ---- topic.c ------------------------------------------------------------- */

int topic_attach(struct core *core, struct core_subscription *sub, char *err, size_t err_size);
void topic_detach(struct core_subscription *sub);
void topic_block(struct core_subscription *sub, bool blocked);
void topic_free_all(struct core *core);

#endif
