/* core_internal.h -- the core's own structures and the calls between its
 * files (core.c, core_session.c, core_publish.c, core_subscription.c); not
 * for adapters (core.h) nor for engines (engine.h gives them what they may
 * use of the core).
 *
 * Layers, top to bottom (architecture "Layers and layout"):
 *   core_session.c       sessions, authentication (worker pool), ACLs
 *   core_publish.c       the publish path: record building, message ids
 *   core_subscription.c  subscriptions, settling, deliveries -> engines
 *   engines              queue.c, topic.c (topic and temporary queue), via engine.h
 *   below                request_reply.c, record.c, stats.c, kafka.c */
#ifndef KBRIDGE_CORE_INTERNAL_H
#define KBRIDGE_CORE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"
#include "engine.h"
#include "stats.h"
#include "u64_map.h"

struct event;
struct request_reply;
struct definitions_store;
struct core_definitions_op;
struct core_exclusive;

struct core {
    struct event_base *base;
    struct config *const *config;
    struct kafka *kafka;
    struct metrics *metrics;
    struct worker_pool *workers;
    struct core_session *sessions;
    struct stats_table stats; /* per-destination series */
    struct request_reply *request_reply;
    struct engine_context engine_context;  /* given to every engine */
    struct engine *queue_engine;           /* queues and durable subscriptions */
    struct engine *topic_engine;           /* non-durable topics */
    struct engine *temporary_engine;       /* temporary queues (part of topic_engine) */
    struct definitions_store *definitions; /* the node's view of exchanges, queues, bindings */
    uint64_t next_session_serial;          /* names sessions as exclusive-queue owners */
    size_t startup_writes;                 /* start-up writes not yet done (core_definitions.c) */
    bool draining;
    uint64_t config_generation; /* 1, raised by each reload: sessions' ACL caches follow it */
    uint64_t *late_settles;
    uint64_t *auth_failures;
    uint64_t *expired[2]; /* kbridge_expired_total{kind="queue"|"topic"} */
    /* Replies delivered in memory (architecture §7) confirm to their
     * publisher on the next loop turn, in order: core_publish.c's queue. */
    struct core_publish_pending *local_confirms;
    struct core_publish_pending *local_confirms_tail;
    struct event *local_confirm_event;
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
    uint64_t serial;                            /* owner "NODE/SERIAL" of its exclusive queues */
    struct core_definitions_op *definition_ops; /* declares etc. awaiting Kafka */
    struct core_exclusive *exclusives;          /* exclusive queues it declared */
    /* ACL decisions by destination name (core_acl_allows): struct
     * core_acl_entry by u64_map_string_key, at most CORE_ACL_CACHE_MAX, and
     * the session's config_user; valid while acl_generation is the core's
     * config_generation (0: not filled yet). */
    struct u64_map acl_cache;
    uint64_t acl_generation;
    const struct config_user *acl_user; /* NULL: not a configured user (any more) */
};

/* struct core_subscription is defined in engine.h: engines read part of it. */

/* ---- core_session.c ---- */

/* May the session publish (or consume) `name`? Cached per session and config. */
bool core_acl_allows(struct core_session *session, bool publish, const char *name);
/* May the session consume from Kafka topic `topic` (prefix included)? A
 * wildcard subscription is checked against each concrete topic it reads. */
bool core_session_may_consume_topic(struct core_session *session, const char *topic);
/* After a reload: revoke the sessions the config no longer allows. */
void core_revoke_sessions(struct core *core);

/* ---- core_publish.c ---- */

/* The session is closing: its pending publishes will not call back. */
void core_publish_forget_session(struct core_session *session);
/* Shutdown: drop the local replies' confirmations not yet called (after
 * every session closed) and their event. */
void core_publish_free(struct core *core);

/* ---- core_definitions.c ---- */

/* Create the node's definitions store (core->definitions) and hook its
 * start-up work. 0, or -1 with err. */
int core_definitions_start(struct core *core, char *err, size_t err_size);
/* The session is closing: its pending definition calls will not call back,
 * and its exclusive queues are deleted (with their bindings). */
void core_definitions_session_closed(struct core_session *session);

/* ---- core_subscription.c ---- */

/* Fill the engine context's calls into the core (ready, deliver, failed,
 * may_consume_topic). */
void core_subscription_context(struct engine_context *context);

#endif
