/* SPDX-License-Identifier: Apache-2.0 */
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
#include "kafka.h"
#include "stats.h"
#include "u64_map.h"

struct definitions;
struct event;
struct request_reply;
struct definitions_store;
struct core_definitions_op;
struct core_queue_expiry;
struct json_t;
struct core_exclusive;
struct core_exchange_op;
struct core_purge_op;
struct core_depth_op;
struct core_transaction;
struct core_overflow;
struct binding_header;
struct kafka_txn;
struct metrics_histogram;

/* The limits across protocols (core_limits.c; enum core_limit is in core.h). */
struct core_limits_state {
    uint64_t connections;      /* admitted and not released, all protocols */
    struct u64_map by_address; /* host -> struct core_limit_entry (connections, failures) */
    struct u64_map by_user;    /* user -> struct core_limit_entry (sessions) */
    uint64_t *refusals[CORE_LIMIT_COUNT]; /* kbridge_limit_refusals_total{limit=...} */
};

/* Register the limits' metrics (0, or -1 out of memory) / free their maps. */
int core_limits_init(struct core *core);
void core_limits_free(struct core *core);
/* A session of `user` was opened / closed (core_session_new / _close). */
void core_limits_session_opened(struct core *core, const char *user);
void core_limits_session_closed(struct core *core, const char *user);
/* A login from `peer` failed (core_auth_done). */
void core_limits_auth_failed(struct core *core, const char *peer);
/* The session is closing: free what limits.max_unacked kept for it
 * (core_subscription.c; its subscriptions are gone already). */
void core_unacked_session_closed(struct core_session *session);

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
    uint64_t *expired[2];       /* kbridge_expired_total{kind="queue"|"topic"} */
    uint64_t *unroutable;       /* kbridge_unroutable_total */
    uint64_t *scheduled;        /* kbridge_scheduled_total: written to the delay topic */
    uint64_t *alternate_routed; /* kbridge_alternate_routed_total */
    /* Replies delivered in memory (architecture §7) confirm to their
     * publisher on the next loop turn, in order: core_publish.c's queue. */
    struct core_publish_pending *local_confirms;
    struct core_publish_pending *local_confirms_tail;
    struct event *local_confirm_event;
    struct core_limits_state limits;
    struct core_anchor *binding_anchors;      /* core_anchor.c: new bindings being anchored */
    struct core_queue_expiry *queue_expiries; /* x-expires timers (core_queue_expiry.c) */
    struct core_overflow *overflow;           /* reject-publish queues' figures (core_overflow.c) */
    /* Transactions (core_transaction.c): commits whose session closed, and
     * the metrics. */
    struct core_transaction *committing;
    double *tx_open;
    uint64_t *tx_committed;
    uint64_t *tx_aborted;
    uint64_t *tx_timed_out;
    uint64_t *tx_group_offsets; /* exactly-once: offsets committed in Kafka transactions */
    struct metrics_histogram *tx_commit_seconds;
    /* The cluster view (core_set_cluster; NULL: none): exclusive consumers
     * across nodes (core_subscription.c). */
    const struct core_cluster_hooks *cluster;
    void *cluster_opaque;
};

struct core_session {
    struct core_session *next; /* core->sessions, doubly linked: O(1) unlink */
    struct core_session *prev;
    struct core *core;
    char *protocol;
    char *user;
    char *client_id;
    char *peer;
    /* Its vhost (architecture §11 "Vhosts"), "/" until core_session_set_vhost,
     * and that vhost's Kafka topic prefix as the config had it then: every
     * topic, consumer group and definitions lookup of the session uses them. */
    char *vhost;
    char *topic_prefix;
    /* It entered its vhost through core_session_set_vhost (client sessions):
     * a reload that takes the vhost from the user's auth.users[].vhosts
     * revokes it. Shovel and admin API sessions stay in "/" unchecked. */
    bool vhost_checked;
    bool anonymous;
    bool revoked;          /* a reload took its access: every right is refused */
    char *password_hash;   /* the user's hash when it logged in (NULL: anonymous) */
    core_revoke_fn revoke; /* the adapter's handler, or NULL */
    void *revoke_opaque;
    uint32_t unconfirmed;
    /* limits.max_unacked (core_subscription.c): deliveries of its
     * subscriptions that wait for the client's settlement; at the limit
     * every subscription of the session is blocked (unacked_stopped) until
     * a settlement brings it below, which unblocks them on the next loop
     * turn (unacked_event, made on first use). */
    uint32_t unacked;
    bool unacked_stopped;
    struct event *unacked_event;
    uint64_t sticky_seed;                 /* random: picks its producers' partitions */
    struct core_publish_pending *pending; /* publishes awaiting Kafka */
    struct core_subscription *subscriptions;
    uint64_t serial;                            /* owner "NODE/SERIAL" of its exclusive queues */
    uint64_t connected_ms;                      /* wall clock at core_session_new (admin API) */
    struct core_definitions_op *definition_ops; /* declares etc. awaiting Kafka */
    struct core_exclusive *exclusives;          /* exclusive queues it declared */
    struct core_exchange_op *exchange_ops;      /* exchange subscriptions being set up */
    struct core_purge_op *purge_ops;            /* purges waiting (core_purge.c) */
    struct core_depth_op *depth_ops;            /* depth lookups waiting (core_depth.c) */
    /* ACL decisions by destination name (core_acl_allows): struct
     * core_acl_entry by u64_map_string_key, at most CORE_ACL_CACHE_MAX, and
     * the session's config_user; valid while acl_generation is the core's
     * config_generation (0: not filled yet). */
    struct u64_map acl_cache;
    uint64_t acl_generation;
    const struct config_user *acl_user;    /* NULL: not a configured user (any more) */
    struct core_transaction *transactions; /* open or committing (core_transaction.c) */
    /* Set while a commit replays its sends through core_publish: records go
     * into this Kafka transaction, with no per-record answer. */
    struct kafka_txn *txn_target;
    /* During a commit's core_publish: the send reached no queue
     * (core_publish_answer_later with CORE_UNROUTABLE, nothing written) */
    bool txn_unroutable;
};

/* struct core_subscription is defined in engine.h: engines read part of it. */

/* ---- core_session.c ---- */

/* What a session asks to do with a name, for its ACL (architecture §10). */
enum core_acl_action {
    CORE_ACL_PUBLISH,            /* write */
    CORE_ACL_CONSUME,            /* read: consume, get, purge, bind from */
    CORE_ACL_CONFIGURE_EXCHANGE, /* declare, delete: configure; else publish */
    CORE_ACL_CONFIGURE_QUEUE,    /* declare, delete: configure; else consume */
    CORE_ACL_BIND_TO_QUEUE,      /* a binding's queue: write; else consume */
    CORE_ACL_ACTIONS
};

/* May the session do `action` with `name` in its vhost (its user's
 * permissions for the vhost, or its publish and consume patterns)? Cached
 * per session, config and vhost. */
bool core_acl_may(struct core_session *session, enum core_acl_action action, const char *name);
/* core_acl_may with CORE_ACL_PUBLISH or CORE_ACL_CONSUME. */
bool core_acl_allows(struct core_session *session, bool publish, const char *name);
/* The permission `action` needs for the session's user, for messages:
 * "configure", "write", "read" (per-vhost permissions), "publish",
 * "consume". Static text. */
const char *core_acl_action_name(const struct core_session *session, enum core_acl_action action);
/* May the session consume from Kafka topic `topic` (prefix included)? A
 * wildcard subscription is checked against each concrete topic it reads. */
bool core_session_may_consume_topic(struct core_session *session, const char *topic);
/* After a reload: revoke the sessions the config no longer allows. */
void core_revoke_sessions(struct core *core);

/* ---- core_definitions.c ---- */

/* The checks every definitions call starts with: the node has read the
 * topic, the session may still act, the vhost is configured. CORE_OK or an
 * error with the reason in err. */
int core_definitions_precheck(struct core_session *session, const char *vhost, char *err,
                              size_t err_size);
/* May the session do `action` with the `kind` (queue, exchange) `name`?
 * CORE_OK or CORE_ERR_ACCESS naming the user and the permission it lacks. */
int core_definitions_acl(struct core_session *session, enum core_acl_action action,
                         const char *kind, const char *name, const char *vhost, char *err,
                         size_t err_size);

/* Exclusive consumers (core_exclusive.c, architecture §12): may the session
 * subscribe to queue `name` of its vhost, `exclusive` or not? CORE_OK, or
 * CORE_ERR_IN_USE with "queue 'Q' in vhost 'V' in exclusive use" in err when
 * an exclusive consumer holds it here or on another live node, or when
 * `exclusive` and it has any other subscriber here or there. */
int core_exclusive_check(struct core_session *session, const char *name, bool exclusive, char *err,
                         size_t err_size);
/* An exclusive consumer of this node came or went: tell the cluster view. */
void core_exclusive_changed(struct core *core);

/* Did the session declare the exclusive queue `name` (it alone may use it:
 * the name ACLs do not apply to it, as to a temporary queue)? */
bool core_session_owns_exclusive(const struct core_session *session, const char *vhost,
                                 const char *name);

/* ---- core_publish.c ---- */

/* 0 when the message body fits limits.max_message_size; otherwise -1 with
 * the reason in err (every publish path refuses it with CORE_ERR_TOO_LARGE). */
int core_check_message_size(const struct config *config, const struct core_message *message,
                            char *err, size_t err_size);

/* The session is closing: its pending publishes will not call back. */
void core_publish_forget_session(struct core_session *session);
/* Shutdown: drop the local replies' confirmations not yet called (after
 * every session closed) and their event. */
void core_publish_free(struct core *core);

/* ---- core_overflow.c: x-overflow reject-publish (architecture §11) ---- */

/* A reject-publish queue's figure as this node knows it. The decisions are
 * pure (unit-tested with the clock given). */
struct core_overflow_figure {
    int64_t ready;            /* ready messages the last answered lookup saw; -1: none yet */
    uint64_t since_figure;    /* publishes let through since that answer */
    uint64_t since_bytes;     /* their bodies' bytes */
    double body_mean;         /* mean body size of the publishes let through (~last 32) */
    uint64_t asked_ms;        /* monotonic: when the last lookup started */
    uint64_t last_publish_ms; /* monotonic: the last publish that reached it (let through
                                 or refused) */
    bool asked;               /* a lookup was ever started */
    bool asking;              /* a lookup is running */
};
#define CORE_OVERFLOW_NEVER UINT64_MAX
/* A figure with no lookup yet (not full). */
void core_overflow_figure_init(struct core_overflow_figure *figure);
/* A publish reaching the queue is being decided at `now_ms`. */
void core_overflow_figure_published(struct core_overflow_figure *figure, uint64_t now_ms);
/* When the next lookup should start (monotonic ms; at or before now: now),
 * or CORE_OVERFLOW_NEVER: none while one runs; at once when none ran yet;
 * else `refresh_ms` after the last one started, as long as a publish came
 * less than `refresh_ms` before that start (so lookups go on while
 * publishes keep coming, and the last one starts a whole interval after the
 * last publish: it sees it in Kafka). */
uint64_t core_overflow_figure_next_ask(const struct core_overflow_figure *figure,
                                       uint64_t refresh_ms);
/* A lookup starts at `now_ms`. */
void core_overflow_figure_asking(struct core_overflow_figure *figure, uint64_t now_ms);
/* The running lookup answered: `ready` when ok, else the last figure stays. */
void core_overflow_figure_answered(struct core_overflow_figure *figure, bool ok, int64_t ready);
/* The last answer's ready count plus the publishes let through since it
 * came (those in flight during a lookup are left out rather than counted
 * twice: the figure errs low); -1 before the first answer. */
int64_t core_overflow_figure_estimate(const struct core_overflow_figure *figure);
/* Full: the estimate is known and >= max_length. */
bool core_overflow_figure_full(const struct core_overflow_figure *figure, int64_t max_length);
/* The ready bytes for x-max-length-bytes (Kafka tells offsets, not bytes):
 * the answer's ready count at the mean body size of this node's publishes
 * to the queue (`body_len`, the one being decided, before the first), plus
 * the bodies let through since the answer; -1 before the first answer. */
int64_t core_overflow_figure_estimate_bytes(const struct core_overflow_figure *figure,
                                            size_t body_len);
/* Full by bytes: that estimate is known and >= max_bytes. */
bool core_overflow_figure_full_bytes(const struct core_overflow_figure *figure, int64_t max_bytes,
                                     size_t body_len);
/* A publish that reaches the queue was let through, `body_len` bytes of body. */
void core_overflow_figure_accepted(struct core_overflow_figure *figure, size_t body_len);

/* core->overflow and its metric: 0, or -1 out of memory / free it (a
 * lookup still running frees its queue's entry when it answers). */
int core_overflow_init(struct core *core);
void core_overflow_free(struct core *core);

/* Where a message goes, as definitions_route sees it. */
struct core_overflow_target {
    const char *exchange; /* "" the default exchange */
    const char *routing_key;
};
/* The check before a publish is written: route it through `targets` in
 * `vhost`'s view; for each reject-publish queue reached, start a lookup of
 * its depth when core_overflow_figure_next_ask says so (queues.
 * overflow_refresh; a timer starts the later ones); if one
 * is full, CORE_ERR_FULL with err naming the queue and its limit (counted
 * in kbridge_overflow_rejected_total), else CORE_OK (the publish counts in
 * each queue's figure). CORE_ERR_INTERNAL when out of memory. */
int core_overflow_check(struct core *core, const char *vhost,
                        const struct core_overflow_target *targets, size_t target_count,
                        const struct binding_header *headers, size_t header_count, size_t body_len,
                        char *err, size_t err_size);

/* ---- core_anchor.c: a new binding anchors its queue (architecture §11) ---- */

struct core_anchor;
typedef void (*core_anchor_fn)(void *opaque);
/* Give queue `queue`'s group a committed offset at the end of every partition
 * of the topics its bindings read that has none, then call done(opaque) on
 * the loop. NULL when there is nothing to anchor (no bindings, another vhost
 * than the default, out of memory): done is not called. Owned by the core. */
struct core_anchor *core_anchor_queue(struct core *core, const char *vhost, const char *queue,
                                      core_anchor_fn done, void *opaque);
/* done will not be called (its waiter is gone); the anchor finishes alone. */
void core_anchor_cancel(struct core_anchor *anchor);
/* At core_free: cancel and free every anchor still in flight. */
void core_anchor_free_all(struct core *core);

/* Where core_publish_record writes a message. */
struct core_record_target {
    const char *topic;                /* Kafka topic, prefix included */
    enum destination_kind stats_kind; /* the per-destination series it counts in */
    const char *stats_name;
    const char *reply_token; /* a reply: the kbridge-reply-token header; else NULL */
    /* An exchange's record: its kbridge-routing-key header and, unless the
     * message has a key or it is empty, its record key (architecture §11);
     * else NULL. */
    const char *routing_key;
    size_t routing_key_len;
};

/* Build the record of `message` (headers, key, ids) and produce it to
 * target->topic; the checks (ACL, size, names) are the caller's. As
 * core_publish: CORE_OK and `done` called once from Kafka's report, or an
 * error with err and no call. */
int core_publish_record(struct core_session *session, const struct core_record_target *target,
                        const struct core_message *message, core_publish_fn done, void *opaque,
                        char *err, size_t err_size);

/* Answer a publish without Kafka: `done(opaque, code, reason)` on a later
 * loop turn (never inside this call), counted as unconfirmed until then and
 * forgotten as the others when the session closes. `reason` is copied.
 * CORE_OK, or CORE_ERR_INTERNAL with err (nothing will be called). */
int core_publish_answer_later(struct core_session *session, int code, const char *reason,
                              core_publish_fn done, void *opaque, char *err, size_t err_size);

/* The reject-publish check of a publish (core_overflow_check through
 * `targets`): CORE_OK with *refused false to go on and write it; CORE_OK
 * with *refused true when a queue is full: `done` gets CORE_ERR_FULL and
 * the reason on a later loop turn (as Kafka's refusal would come); an error
 * with err now inside a transaction's commit (the commit fails with it) or
 * when out of memory. */
int core_publish_overflow(struct core_session *session, const char *vhost,
                          const struct core_overflow_target *targets, size_t target_count,
                          const struct binding_header *headers, size_t header_count,
                          size_t body_len, core_publish_fn done, void *opaque, bool *refused,
                          char *err, size_t err_size);

/* ---- core_exchange.c ---- */

/* core_publish for an exchange destination (architecture §11). */
int core_exchange_publish(struct core_session *session, const struct destination *destination,
                          const struct core_message *message, core_publish_fn done, void *opaque,
                          char *err, size_t err_size);

/* Set up exchange subscription `sub` (not attached yet): declare its
 * server-named exclusive, auto-delete queue, bind it to `exchange` with
 * `key` (both through the declare API, answered once applied), then attach
 * it to the queue (core_subscription_attach); a failure on the way goes to
 * sub->handlers.failed. CORE_OK, or an error with err now (no such
 * exchange, store not ready, ACL) and nothing started. */
int core_exchange_subscribe(struct core_subscription *sub, const char *exchange, const char *key,
                            char *err, size_t err_size);
/* `sub` ends while its set-up is under way: the queue is deleted when the
 * next answer comes. */
void core_exchange_subscription_ended(struct core_subscription *sub);
/* A subscription to queue `destination`: refused when it is another
 * session's exclusive queue (CORE_ERR_LOCKED) or, spelled as an existing
 * queue (/amq/queue/NAME), when it is not declared (CORE_ERR_NOT_FOUND);
 * otherwise CORE_OK, and a queue the view lacks is declared durable (no one
 * waits for it). */
int core_exchange_queue_first_use(struct core_session *session,
                                  const struct destination *destination, char *err,
                                  size_t err_size);
/* The session closes: its set-ups are dropped (no answer comes any more). */
void core_exchange_session_closed(struct core_session *session);
/* Delete queue `name` if the view says auto-delete (its last subscriber on
 * this node went), on behalf of `session`; nobody waits for the answer. */
void core_exchange_auto_delete(struct core_session *session, const char *name);

/* x-expires (core_queue_expiry.c): a declare of queue `name` on this node
 * (its `arguments`; NULL: the view's) arms its timer when it has x-expires
 * and no local subscriber; the last local subscriber going arms it; one
 * attaching removes it. When it runs out, the queue is deleted
 * (core_delete_queue_unattended). core_queue_expiry_free at shutdown. */
void core_queue_expiry_declared(struct core *core, const char *vhost, const char *name,
                                const struct json_t *arguments);
void core_queue_expiry_unused(struct core *core, const char *vhost, const char *name);
void core_queue_expiry_in_use(struct core *core, const char *vhost, const char *name);
void core_queue_expiry_free(struct core *core);

/* Delete a queue and its bindings with nobody waiting (core_definitions.c):
 * tombstones written through the store; a failure is logged naming `what`. */
void core_delete_queue_unattended(struct core *core, const char *vhost, const char *name,
                                  const char *what);

/* ---- core_definitions.c ---- */

/* The checks every definitions call starts with: the node has read the
 * topic, the session may still act, the vhost is configured. CORE_OK or an
 * error with the reason in err. */
int core_definitions_precheck(struct core_session *session, const char *vhost, char *err,
                              size_t err_size);

/* Create the node's definitions store (core->definitions) and hook its
 * start-up work. 0, or -1 with err. */
int core_definitions_start(struct core *core, char *err, size_t err_size);
/* The session is closing: its pending definition calls will not call back,
 * and its exclusive queues are deleted (with their bindings). */
void core_definitions_session_closed(struct core_session *session);
/* ---- core_depth.c ---- */
/* The session closes: its depth lookups' callbacks will not be called. */
void core_depth_session_closed(struct core_session *session);

/* ---- core_purge.c ---- */
/* The session closes: its purges' callbacks will not be called. */
void core_purge_session_closed(struct core_session *session);

/* ---- core_transaction.c ---- */

/* Register the transactions' metrics: 0, or -1 out of memory. */
int core_transaction_metrics_init(struct core *core);
/* `subscription` ends: settlements held for it are dropped (its deliveries
 * are released by the engine). */
void core_transaction_subscription_ended(struct core_subscription *subscription);
/* The session closes: open transactions are aborted (settlements released),
 * commits under way finish without an answer. */
void core_transaction_session_closed(struct core_session *session);
/* Shutdown, after every session closed: commits still waiting for Kafka
 * are detached (their answer frees them). */
void core_transaction_free_all(struct core *core);

/* ---- core_subscription.c ---- */

/* Serve `sub` (allocated, linked in its session, not attached yet) as a
 * subscription of `destination`: pick its engine and subscribe. CORE_OK, or
 * an error with err. */
int core_subscription_attach(struct core_subscription *sub, const struct destination *destination,
                             char *err, size_t err_size);

/* Fill the engine context's calls into the core (ready, deliver, failed,
 * may_consume_topic). */
void core_subscription_context(struct engine_context *context);

/* How many messages of queue `name` are not yet committed by its group (ready
 * and unacknowledged): the sum over a kafka_group_lag answer's partitions of
 * end - core_queue_ready_from. What purge, declare-ok, x-overflow and the
 * admin API count. */
uint64_t core_queue_ready_count(const struct definitions *view, const char *vhost, const char *name,
                                const struct kafka_partition_lag *parts, size_t count);
/* Look up, on the worker pool, the committed offsets of queue `name`'s group
 * (kbridge.q.NAME) and the end offsets of every topic it reads
 * (core_queue_topics): kafka_group_lag, whose `done` runs on the loop with
 * `opaque`. CORE_OK (done will run, once), CORE_ERR_INTERNAL out of memory or
 * CORE_ERR_UNAVAILABLE when the lookup cannot be queued (done will not run). */
int core_queue_lag(struct core *core, const char *vhost, const char *name, kafka_group_lag_fn done,
                   void *opaque);

#endif
