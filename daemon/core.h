/* SPDX-License-Identifier: Apache-2.0 */
/* core.h -- what protocol adapters call (architecture §1): authenticate, publish,
 * subscribe, settle, unsubscribe; and what the core calls back (deliver,
 * ready, failed). The core maps destinations to Kafka topics, queues to
 * consumer groups (queue.c) and topic subscriptions to readers (topic.c).
 * It never sees a STOMP frame or a proton object; adapters never see
 * librdkafka. Everything runs on the loop thread.
 *
 * Ownership: a core_session belongs to one client connection; its
 * subscriptions belong to it and are released when it closes. Pointers in a
 * core_delivery are valid only during the deliver callback. */
#ifndef KBRIDGE_CORE_H
#define KBRIDGE_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "address.h"
#include "queue_state.h"

struct config;
struct event_base;
struct kafka;
struct metrics;
struct core;
struct core_session;
struct core_subscription;
struct core_auth;
struct worker_pool;
/* definitions.h (RabbitMQ's model; callers of core_declare_* include it) */
struct definitions;
struct exchange_spec;
struct queue_spec;
struct binding_spec;

/* Result codes of core calls (besides 0). Adapters map them to protocol errors. */
enum core_error {
    CORE_OK = 0,
    CORE_ERR_ACCESS = -1,      /* ACL or authentication refused */
    CORE_ERR_INVALID = -2,     /* bad destination, header or value */
    CORE_ERR_TOO_LARGE = -3,   /* body over limits.max_message_size */
    CORE_ERR_BUSY = -4,        /* Kafka producer queue full: back off, retry */
    CORE_ERR_UNAVAILABLE = -5, /* Kafka not ready or failed */
    CORE_ERR_UNSUPPORTED = -6, /* a feature that is not built yet */
    CORE_ERR_INTERNAL = -7,    /* out of memory and the like */
    CORE_ERR_NOT_FOUND = -8,   /* Kafka says the destination's topic does not exist; or
                                  no such exchange, queue or vhost (AMQP 0-9-1 404) */
    /* Definitions (core_declare_* and friends, architecture §11): */
    CORE_ERR_PRECONDITION = -9, /* redeclared with other properties, a bad or unsupported
                                   argument, if-unused not met (AMQP 0-9-1 406
                                   PRECONDITION_FAILED) */
    CORE_ERR_LOCKED = -10,      /* another connection's exclusive queue (AMQP 0-9-1 405
                                   RESOURCE_LOCKED) */
    CORE_ERR_FULL = -11,        /* a queue the message would reach is at its x-max-length
                                   with x-overflow reject-publish (core_overflow.c): not
                                   written; answered through core_publish_fn (0-9-1
                                   basic.nack, STOMP ERROR, AMQP 1.0 rejected
                                   amqp:resource-limit-exceeded) */
    CORE_ERR_IN_USE = -12,      /* a queue held by an exclusive consumer, or an exclusive
                                   consumer of a queue others consume (core_exclusive.c:
                                   AMQP 0-9-1 403 ACCESS_REFUSED, STOMP ERROR
                                   access_refused, AMQP 1.0 amqp:resource-locked) */
};
/* Reserved names (amq.*, the default exchange) are CORE_ERR_ACCESS (AMQP
 * 0-9-1 403 ACCESS_REFUSED), like an ACL refusal. */

/* A publish outcome that is no error (core_publish_fn's `err`): the message
 * was published to an exchange and reached no queue, so it was not written
 * (architecture §11). STOMP confirms it as RabbitMQ does (RECEIPT); AMQP 1.0
 * settles it `released`; AMQP 0-9-1 `mandatory` returns it. */
#define CORE_UNROUTABLE 2 /* (1 is the adapter base's CONNECTION_PUBLISH_ABANDONED) */

/* The vhost of a session until core_session_set_vhost names another. */
#define CORE_DEFAULT_VHOST "/"

/* ---- the core ------------------------------------------------------------ */

/* Create the core on top of the Kafka layer. `config` points at the server's
 * current-config pointer so reloads are seen; password checks run on
 * `workers`, which must outlive the core. NULL with err on failure. */
struct core *core_new(struct event_base *base, struct config *const *config, struct kafka *kafka,
                      struct metrics *metrics, struct worker_pool *workers, char *err,
                      size_t err_size);
/* Free; every session must be closed first. NULL is fine. */
void core_free(struct core *core);
/* Apply a reloaded config (limits, queue settings) and revoke the sessions
 * it no longer allows: anonymous ones when auth.anonymous went off, and
 * those of users removed or whose password changed (their revoke handler
 * is called; they lose every right at once). */
void core_reconfigure(struct core *core);
/* Drain: stop dispatching new deliveries. */
void core_drain(struct core *core);
/* The config in force. */
const struct config *core_config(const struct core *core);

/* ---- sessions ------------------------------------------------------------- */

/* A client with no credentials at all (an AMQP client without a SASL layer):
 * CORE_OK with "anonymous" written into user when auth.anonymous is on, else
 * CORE_ERR_ACCESS with the reason in err. Never hashes: credentials go
 * through core_authenticate_start, off the loop. */
int core_authenticate_anonymous(struct core *core, char *user, size_t user_size, char *err,
                                size_t err_size);

/* A client whose verified TLS client certificate names `identity` (the
 * transport's peer identity, mTLS): CORE_OK with the name written into user
 * when it is a user of auth.users (its ACLs apply as to a password login),
 * else CORE_ERR_ACCESS with the reason in err, counted as an auth failure.
 * Nothing to hash: the TLS handshake verified the certificate. */
int core_authenticate_certificate(struct core *core, const char *identity, char *user,
                                  size_t user_size, char *err, size_t err_size);

/* The answer of core_authenticate_start, on the loop thread: result CORE_OK
 * with the user name ("anonymous" for anonymous), or CORE_ERR_ACCESS /
 * CORE_ERR_INTERNAL with a reason (user NULL) that never reveals which part
 * was wrong. The strings are valid during the call only. */
typedef void (*core_auth_fn)(void *opaque, int result, const char *user, const char *reason);

/* The same check as core_authenticate, with the hash computed on the worker
 * pool: `done` is called exactly once, later, from the loop (never inside
 * this call), unless core_authenticate_cancel is called first. Anonymous
 * logins and unknown users (hashed against a dummy setting, so timing does
 * not tell which users exist) take the same path. The passcode is copied
 * and wiped after use. The outcome is re-checked against the config in
 * force when it arrives (a reload in between may have changed it). NULL
 * (out of memory; nothing will be called) or a handle valid until `done`
 * runs or the cancel. */
struct core_auth *core_authenticate_start(struct core *core, const char *login,
                                          const char *passcode, core_auth_fn done, void *opaque);
/* The owner is going away: `done` will not be called. The check may still
 * finish on its thread; its result is dropped. NULL is fine. */
void core_authenticate_cancel(struct core_auth *auth);

/* The same, for a client at `peer` ("127.0.0.1:5555"): failed logins are
 * counted per source address, and once limits.max_auth_failures_per_minute
 * failed in the last minute, the next attempts from that address are not
 * checked: `done` gets CORE_ERR_ACCESS after limits.auth_failure_delay with
 * a reason naming the limit (core_auth_throttled). */
struct core_auth *core_authenticate_start_from(struct core *core, const char *peer,
                                               const char *login, const char *passcode,
                                               core_auth_fn done, void *opaque);

/* ---- the admin API's view of sessions (core_session.c) ---------------------- */

/* One session as the admin API lists it; strings valid during the callback. */
struct core_session_info {
    uint64_t id; /* this node's serial of the session, unique until restart */
    const char *protocol;
    const char *user;
    const char *client_id; /* NULL: none */
    const char *peer;
    const char *vhost;     /* core_session_vhost */
    uint64_t connected_ms; /* wall clock, ms since the epoch */
    size_t subscriptions;
    uint32_t unconfirmed; /* publishes handed to Kafka, not yet confirmed */
};
/* Return false to stop. */
typedef bool (*core_session_each_fn)(const struct core_session_info *info, void *opaque);
/* Call fn for every session of this node (newest first). */
void core_each_session(struct core *core, core_session_each_fn fn, void *opaque);
/* Subscribers of queue `name` of `vhost` (NULL: of any vhost) among this
 * node's sessions (not cluster-wide). */
size_t core_queue_consumer_count(const struct core *core, const char *vhost, const char *name);

/* ---- this node's load, for the status topic (core_status.c) ------------------ */

/* Messages published (confirmed by Kafka), delivered and acknowledged on this
 * node since it started, over every destination: totals[0..2]. */
void core_message_totals(const struct core *core, uint64_t totals[3]);
/* Messages of queue `name` in `vhost` (NULL: `/`) buffered on this node
 * (available + unacked). */
size_t core_queue_in_flight(const struct core *core, const char *vhost, const char *name);
/* Call fn for every queue with subscribers or messages in flight on this
 * node (strings valid during the call): once per (vhost, name), the vhost
 * "/" for the default, with its subscribers here, whether one is an
 * exclusive consumer (core_subscribe_options.exclusive_consumer) and its
 * messages in flight here. Return false to stop. */
typedef bool (*core_queue_load_fn)(void *opaque, const char *vhost, const char *name,
                                   size_t consumers, size_t in_flight, bool exclusive);
void core_each_queue_load(const struct core *core, core_queue_load_fn fn, void *opaque);

/* ---- the other nodes, as the status topic tells them (architecture §12
 * "Exclusive consumers") ------------------------------------------------------------ */

/* What the core asks of the cluster view and tells it. Called on the loop. */
struct core_cluster_hooks {
    /* Subscribers of queue (vhost, name) on the other live (not stale)
     * nodes, and whether one of them is an exclusive consumer, as their
     * latest status records say. */
    void (*queue_consumers)(void *opaque, const char *vhost, const char *name, size_t *consumers,
                            bool *exclusive);
    /* An exclusive consumer of this node came or went: the others should
     * hear of it soon (a status record written early, rate-limited). */
    void (*exclusive_changed)(void *opaque);
};
/* Has queue `name` of `vhost` an exclusive consumer on this node? */
bool core_queue_exclusive_consumer(const struct core *core, const char *vhost, const char *name);
/* Install (or, hooks NULL, remove) the cluster view: the status module's
 * (status.c). Both are borrowed and must outlive their installation. Without
 * one, exclusivity is this node's alone. */
void core_set_cluster(struct core *core, const struct core_cluster_hooks *hooks, void *opaque);

/* Close session `id` as a reload's revoke does: the adapter tells the client
 * `reason` and closes the connection. CORE_OK, CORE_ERR_NOT_FOUND (no such
 * session), CORE_ERR_UNSUPPORTED (its adapter registered no revoke handler). */
int core_session_close_by_id(struct core *core, uint64_t id, const char *reason);

/* ---- limits across protocols (core_limits.c) ---------------------------------- */

/* Each counted in kbridge_limit_refusals_total{limit="NAME"}, NAME the key
 * without "limits." (core_limit_name). */
enum core_limit {
    CORE_LIMIT_CONNECTIONS,   /* limits.max_connections */
    CORE_LIMIT_PER_ADDRESS,   /* limits.max_connections_per_address */
    CORE_LIMIT_PER_USER,      /* limits.max_connections_per_user */
    CORE_LIMIT_AUTH_FAILURES, /* limits.max_auth_failures_per_minute */
    CORE_LIMIT_SUBSCRIPTIONS, /* limits.max_subscriptions (adapters refuse) */
    CORE_LIMIT_CHANNELS,      /* amqp091.channel_max (the 0-9-1 adapter refuses) */
    CORE_LIMIT_UNACKED,       /* limits.max_unacked: each time a session's deliveries stop */
    CORE_LIMIT_COUNT,
};

/* The limit's label in kbridge_limit_refusals_total ("max_subscriptions"; static). */
const char *core_limit_name(enum core_limit limit);
/* An adapter refused something at a per-connection limit (a subscription
 * or link over limits.max_subscriptions, a channel over channel_max):
 * count it. The adapter says the refusal in its protocol. */
void core_limit_refused(struct core *core, enum core_limit limit);

/* Admit a new client connection from `peer` ("127.0.0.1:5555"; its host is
 * what limits.max_connections_per_address counts): NULL when admitted (it
 * is counted until core_connection_release, which the caller must call
 * once), else the key of the limit it is over ("limits.max_connections",
 * static) with the limit's value in *limit_value. Refusals are counted in
 * kbridge_limit_refusals_total{limit=...}. */
const char *core_connection_admit(struct core *core, const char *peer, uint32_t *limit_value);
void core_connection_release(struct core *core, const char *peer);
/* Connections admitted and not released. */
uint64_t core_connection_count(const struct core *core);
/* May `user` open one more session (limits.max_connections_per_user; the
 * sessions counted are those between core_session_new and
 * core_session_close, every protocol)? NULL, or the limit's key with its
 * value in *limit_value (counted as a refusal). */
const char *core_session_admit(struct core *core, const char *user, uint32_t *limit_value);
/* Has `peer`'s address failed limits.max_auth_failures_per_minute logins in
 * the last minute? NULL, or the limit's key with its value (counted). */
const char *core_auth_throttled(struct core *core, const char *peer, uint32_t *limit_value);

/* A client connection's context: `user` (authenticated), `client_id` (may be
 * NULL), `protocol` ("stomp"), `peer` ("127.0.0.1:5555"). NULL on failure. */
struct core_session *core_session_new(struct core *core, const char *protocol, const char *user,
                                      const char *client_id, const char *peer);
/* Called when a config reload revokes the session's access (see
 * core_reconfigure): the adapter tells the client (reason is a sentence for
 * it) and closes the connection. The session already refuses every publish
 * and subscribe. It may close the connection but must not call
 * core_session_close from inside the call. */
typedef void (*core_revoke_fn)(void *opaque, const char *reason);
void core_session_set_revoke(struct core_session *session, core_revoke_fn revoked, void *opaque);

/* Put the session in vhost `vhost` (architecture §11 "Vhosts"), once, right
 * after core_session_new and before it publishes or subscribes: every topic,
 * consumer group and declare of the session is then that vhost's. Adapters
 * call it for every client session, with CORE_DEFAULT_VHOST when the client
 * chose none, so that the user's permission on `/` is checked too. CORE_OK;
 * CORE_ERR_NOT_FOUND with err ("vhost 'x' not found") when the config has no
 * such vhost; CORE_ERR_ACCESS with err ("access to vhost 'x' refused for
 * user 'u'", RabbitMQ's words) when the user's auth.users[].vhosts lacks it
 * (anonymous sessions reach every vhost); CORE_ERR_INTERNAL out of memory.
 * The session copies the name. */
int core_session_set_vhost(struct core_session *session, const char *vhost, char *err,
                           size_t err_size);
/* The session's vhost ("/" by default); valid while the session is. */
const char *core_session_vhost(const struct core_session *session);

/* Close: unsubscribes everything (unsettled deliveries are released for
 * redelivery) and forgets pending publish callbacks (they will not be called).
 * NULL is fine. */
void core_session_close(struct core_session *session);
/* Publishes of this session handed to Kafka and not yet confirmed. */
uint32_t core_session_unconfirmed(const struct core_session *session);

/* ---- publishing ------------------------------------------------------------ */

/* One Kafka header / message property, as UTF-8 text (value not NUL-terminated). */
struct core_property {
    const char *name;
    const char *value;
    size_t value_len;
};

struct core_message {
    const void *key; /* NULL: taken from kafka-key, JMSXGroupID or group-id properties, else none */
    size_t key_len;
    const void *body;
    size_t body_len;
    /* user headers and the standard names of architecture §3 */
    const struct core_property *properties;
    size_t property_count;
    /* An exchange destination's routing key (not NUL-terminated); NULL: the
     * empty key. Ignored for other destinations. */
    const char *routing_key;
    size_t routing_key_len;
    /* Which producer of the session sent it (an AMQP link's number; 0 for a
     * STOMP connection): messages without a key from one producer all go to
     * one partition, chosen per (session, producer), so they keep their
     * order while producers spread over partitions (architecture §3). */
    uint32_t producer;
    /* Scheduled delivery (architecture §13): when the message is due, UTC
     * epoch ms; 0: now. The adapter reads its protocol's spelling
     * (schedule.h: schedule_due_after / schedule_due_at give 0 for a delay
     * <= 0 or a time passed). A message due later is written to the delay
     * topic at once (confirmed as any publish) with the topic it would have
     * gone to, and a scheduler (scheduler.c) forwards it when due. */
    uint64_t deliver_at;
};

/* May this session publish to `destination` (the publish ACL)? Lets an
 * adapter refuse at attach time what core_publish would refuse per message. */
bool core_may_publish(struct core_session *session, const struct destination *destination);

/* Called once Kafka confirmed (err == CORE_OK) or refused the record (reason
 * names the Kafka error), or, for an exchange, with CORE_UNROUTABLE when the
 * message reached no queue (nothing was written; called on a later loop turn,
 * in order with the session's other answers only as far as Kafka's are).
 * Never called after core_session_close. */
typedef void (*core_publish_fn)(void *opaque, int err, const char *reason);

/* Publish to `destination` (a queue, a topic, an exchange with
 * message->routing_key (architecture §11: routed through this node's view of
 * the definitions, to its alternate-exchange or reported unroutable), or
 * /reply-queue/TOKEN: the owning node's reply topic; the token is the
 * permission, no ACL applies):
 * checks the ACL, size and names, adds message-id
 * (UUID) when absent and user-id (the session's user, replacing any the client
 * sent), and produces to Kafka. CORE_OK: `done` will be called exactly once.
 * Otherwise `done` is never called and err says why. */
int core_publish(struct core_session *session, const struct destination *destination,
                 const struct core_message *message, core_publish_fn done, void *opaque, char *err,
                 size_t err_size);

/* ---- subscribing ------------------------------------------------------------ */

struct core_subscribe_options {
    bool auto_accept;         /* settle on send (STOMP ack:auto) */
    uint32_t credit;          /* max unsettled deliveries (prefetch), >= 1 */
    const char *durable_name; /* topic only: durable subscription name (needs client_id) */
    /* Durable subscription without client_id (RabbitMQ's durable:true): named by
     * its topic and durable_name, shared by whoever uses the same pair. */
    bool durable_by_destination;
    /* An exchange destination: the binding key (a pattern for topic
     * exchanges) of the subscription's own queue; NULL: the empty key. */
    const char *binding_key;
    /* A JMS message selector (architecture §13), or NULL: only messages it
     * selects are delivered. Parsed by core_subscribe (a bad one is
     * CORE_ERR_INVALID naming the position); queues and topics, not
     * temporary queues. Copied: not kept. */
    const char *selector;
    /* Replay (architecture §13): where a non-durable topic subscription
     * starts, in RabbitMQ's x-stream-offset spellings (stream_offset.h), or
     * NULL: what is published from now on. Parsed by core_subscribe (a bad
     * one is CORE_ERR_INVALID; on anything but a non-wildcard, non-durable
     * topic CORE_ERR_UNSUPPORTED). Copied: not kept. */
    const char *stream_offset;
    /* Browse a queue (architecture §13 "Browsing"): deliver what is ready
     * (from the queue group's committed offsets to the end offsets when the
     * subscription started) without acquiring or settling anything, then
     * handlers.browse_end. Queues not bound to exchanges only (else
     * CORE_ERR_UNSUPPORTED). */
    bool browse;
    /* Consumer priority (AMQP 0-9-1's x-priority; default 0): on a queue,
     * ready consumers of a higher priority get messages first; a lower one
     * gets them only while every higher one has no credit or is blocked. */
    int32_t priority;
    /* An exclusive consumer (AMQP 0-9-1's basic.consume exclusive=true;
     * architecture §12 "Exclusive consumers"), queues only: refused while
     * the queue (in the session's vhost) has any other subscriber on this
     * node or on another live node of the cluster view; while it lives, any
     * other subscription to the queue is refused. Both refusals are
     * CORE_ERR_IN_USE with "queue 'Q' in vhost 'V' in exclusive use".
     * Other nodes learn of it through the status topic: see the window in
     * architecture §12. */
    bool exclusive_consumer;
};

/* A message for a subscriber. Pointers valid only during the callback. */
struct core_delivery {
    uint64_t id;                /* settle with this; 0 when nothing to settle (non-durable topic) */
    const char *topic;          /* Kafka topic (without prefix removed) */
    const char *name;           /* destination name (topic prefix removed) */
    enum destination_kind kind; /* of the subscription */
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;
    const void *key;
    size_t key_len;
    const void *body;
    size_t body_len;
    uint32_t delivery_count; /* 1 on first delivery */
    const void *record;      /* private */
    /* private: headers the core adds (request-reply with native Kafka, architecture §7) */
    size_t extra_count;
    struct core_property extra[2];
};

/* Headers of a delivery, in record order, kbridge-internal ones included:
 * adapters pass each through record_header_delivered (record.h,
 * architecture §3) before it reaches a client. */
size_t core_delivery_header_count(const struct core_delivery *delivery);
int core_delivery_header(const struct core_delivery *delivery, size_t index, const char **name,
                         const void **value, size_t *value_len);

struct core_subscription_handlers {
    /* A message; the subscriber had credit and was not blocked. Never called
     * before `ready` has returned, so the adapter may finish setting up its
     * side (keep the subscription pointer) after core_subscribe returns. */
    void (*deliver)(void *opaque, const struct core_delivery *delivery);
    /* The subscription is positioned: from now on nothing published is missed
     * (send the SUBSCRIBE receipt now). Called once, from the loop after
     * core_subscribe has returned; it must not call core_unsubscribe. */
    void (*ready)(void *opaque);
    /* The subscription cannot go on: `error` (a CORE_ERR_*: ACCESS when Kafka
     * refused the topic, NOT_FOUND when it does not exist, BUSY for a slow
     * subscriber ended by topics.slow_subscriber, else UNAVAILABLE) and a
     * reason. The adapter tells the client in its protocol's words for that
     * error and calls core_unsubscribe. */
    void (*failed)(void *opaque, int error, const char *reason);
    /* A browse (options.browse) delivered everything that was ready: the
     * adapter tells the client (STOMP: ActiveMQ's `browser:end` MESSAGE).
     * Called once; may be NULL. */
    void (*browse_end)(void *opaque);
};

/* Subscribe the session to a queue or topic, or to an exchange: as
 * RabbitMQ's STOMP `/exchange/NAME/KEY`, a server-named (`amq.gen-...`)
 * exclusive, auto-delete queue bound to it with options->binding_key is
 * declared and subscribed to; it is deleted with the subscription
 * (architecture §11). A queue declared auto-delete is deleted when this
 * node's last subscriber of it goes. NULL with err (and *error_code) when
 * refused: ACL, bad destination, no such exchange, durable without
 * client-id. */
struct core_subscription *core_subscribe(struct core_session *session,
                                         const struct destination *destination,
                                         const struct core_subscribe_options *options,
                                         const struct core_subscription_handlers *handlers,
                                         void *opaque, int *error_code, char *err, size_t err_size);
/* Open a temporary queue bound to the session (an AMQP dynamic source, a
 * STOMP /temp-queue): it receives exactly the messages published to its
 * reply address, which is written to `address` ("/reply-queue/TOKEN", at
 * most CORE_REPLY_ADDRESS_MAX bytes). Replies travel through this node's
 * reply topic (architecture §7), so any node can answer. Deliveries carry nothing
 * to settle (id 0). It dies with the subscription. NULL with err and
 * *error_code on failure. */
#define CORE_REPLY_ADDRESS_MAX 256
struct core_subscription *
core_subscribe_temporary(struct core_session *session, const struct core_subscribe_options *options,
                         const struct core_subscription_handlers *handlers, void *opaque,
                         char *address, size_t address_size, int *error_code, char *err,
                         size_t err_size);
/* Stop / resume deliveries (the client's connection is backed up). */
void core_subscription_block(struct core_subscription *subscription, bool blocked);
/* Messages of the subscription's queue ready on this node's member of the
 * queue's consumer group (AMQP 0-9-1 get-ok's message_count; architecture
 * §12): on every partition the member holds, the offsets it has not read up
 * to the end offset of its consumer's last fetch, plus those it read and
 * has not delivered (released ones included); delivered and unsettled ones
 * are not ready. Partitions other members hold are not counted (declare-ok's
 * core_queue_depth is cluster-wide). No Kafka round trip: cheap enough per
 * get, not meant per delivery. 0 for topics and temporary queues. */
uint64_t core_subscription_ready_count(const struct core_subscription *subscription);
/* Do the subscription's deliveries need settling (queues, durable
 * subscriptions), or is there nothing to settle (non-durable topics,
 * browsing, stream queues: their deliveries carry id 0, a client's acks of
 * them are accepted and change nothing)? */
bool core_subscription_settles(const struct core_subscription *subscription);
/* Settle a delivery. CORE_OK, or CORE_ERR_INVALID when the id is unknown
 * (already settled, or its partition moved to another node: counted). */
int core_settle(struct core_subscription *subscription, uint64_t id, enum queue_outcome outcome,
                const char *reason);
/* End a subscription; its unsettled deliveries are released. */
void core_unsubscribe(struct core_subscription *subscription);
/* The same, and a durable subscription is deleted: its position in Kafka is
 * forgotten, so the next subscription of that name starts afresh (RabbitMQ's
 * UNSUBSCRIBE with durable:true). Others: as core_unsubscribe. */
void core_unsubscribe_forget(struct core_subscription *subscription);

/* ---- transactions (core_transaction.c, architecture §8) ---------------------------
 *
 * A client transaction (STOMP BEGIN, AMQP 0-9-1 tx.select, an AMQP 1.0
 * declare) belongs to its session. Its sends are held by the core and
 * written at commit inside one Kafka transaction (on a pooled transactional
 * producer), so nothing of an open or aborted transaction is ever written;
 * its settlements are held (the deliveries stay acquired) and applied
 * through the ordinary settle path once the Kafka transaction committed
 * (at-least-once for the offsets). Abort, a failed commit,
 * transactions.timeout and core_session_close drop the sends and release
 * the held settlements (redelivery). */
struct core_transaction;

/* The commit's answer, on the loop (never inside core_transaction_commit):
 * CORE_OK once Kafka committed every send and the settlements were applied;
 * else the error (CORE_ERR_UNAVAILABLE: Kafka did not commit; the refusal of
 * a held send, e.g. CORE_ERR_NOT_FOUND for an exchange gone) with a reason:
 * nothing was written and the settlements were released. The transaction
 * is freed before the call. */
typedef void (*core_transaction_fn)(void *opaque, int err, const char *reason);
/* transactions.timeout passed: the core aborted and freed the transaction
 * (sends dropped, settlements released); tell the client `reason`. */
typedef void (*core_transaction_expired_fn)(void *opaque, const char *reason);

/* Open a transaction; NULL with err (out of memory, access revoked). */
struct core_transaction *core_transaction_begin(struct core_session *session,
                                                core_transaction_expired_fn expired, void *opaque,
                                                char *err, size_t err_size);
/* Hold a send (copied) until commit. Checked now as core_publish would
 * (ACL, size, wildcard) and against transactions.max_messages / max_bytes
 * (CORE_ERR_TOO_LARGE); CORE_OK or the error with err. */
int core_transaction_publish(struct core_transaction *tx, const struct destination *destination,
                             const struct core_message *message, char *err, size_t err_size);
/* Hold a settlement of `subscription`'s delivery `id` until commit (reason
 * copied). CORE_OK, CORE_ERR_INTERNAL out of memory, or CORE_ERR_INVALID
 * while the transaction is being committed. */
int core_transaction_settle(struct core_transaction *tx, struct core_subscription *subscription,
                            uint64_t id, enum queue_outcome outcome, const char *reason);
/* Sends held so far. */
size_t core_transaction_send_count(const struct core_transaction *tx);
/* Called at a successful commit, before its answer, once for each held send
 * that reached no queue (CORE_UNROUTABLE: not written): `send` is its index
 * among the sends (0: the first core_transaction_publish that returned
 * CORE_OK). For AMQP 0-9-1's basic.return of a mandatory publish. */
typedef void (*core_transaction_unroutable_fn)(void *opaque, size_t send);
/* Set (or clear, with NULL) the transaction's unroutable callback. */
void core_transaction_on_unroutable(struct core_transaction *tx, core_transaction_unroutable_fn fn,
                                    void *opaque);
/* Commit: CORE_OK and `done` exactly once later (unless the session closes
 * first), or an error with err and the transaction still open. */
int core_transaction_commit(struct core_transaction *tx, core_transaction_fn done, void *opaque,
                            char *err, size_t err_size);
/* Abort and free an open transaction: its sends are dropped; its held
 * settlements are released (`release`: redelivered, as STOMP and AMQP 0-9-1
 * brokers do) or left acquired by their subscriber (AMQP 1.0). A
 * transaction being committed goes on, and its `done` is not called. */
void core_transaction_abort(struct core_transaction *tx, bool release);

/* ---- definitions: exchanges, queues, bindings (architecture §11) ----------------
 *
 * RabbitMQ's model, shared by every node through the definitions topic
 * (definitions_store.h). Each call checks the request against this node's
 * view (RabbitMQ's rules and texts, definitions.h), writes the record(s) and
 * answers through `done` only once Kafka confirmed them and this node's reader
 * applied them, so the caller's next step sees its own change. Specs are
 * borrowed for the call only; vhost NULL means "/".
 *
 * Returns CORE_OK: `done` is called exactly once, later, on the loop (never
 * inside the call, never after core_session_close). Any other value: refused
 * now with the reason in err, `done` is never called: CORE_ERR_NOT_FOUND (no
 * such vhost, or exchange/queue for passive declares and binds),
 * CORE_ERR_PRECONDITION, CORE_ERR_LOCKED, CORE_ERR_ACCESS (ACL, reserved
 * names), CORE_ERR_UNAVAILABLE (the node has not read the definitions topic
 * yet, or Kafka refused the write at once), CORE_ERR_BUSY (the producer's
 * queue is full: retry later), CORE_ERR_UNSUPPORTED,
 * CORE_ERR_INTERNAL. `done`'s core_error is CORE_OK, or CORE_ERR_UNAVAILABLE
 * when Kafka did not confirm (reason names Kafka's error); `name` is the
 * entity's name (a server-named queue's generated name), valid during the
 * call.
 *
 * ACLs (auth.users' patterns match the plain name, whatever the vhost): an
 * exchange is declared or deleted with publish on its name (a passive
 * declare: publish or consume); a queue with consume on its name; a binding
 * to a queue needs consume on the queue and on the source exchange, one to
 * an exchange publish on the destination and consume on the source. */
typedef void (*core_definitions_fn)(void *opaque, int core_error, const char *reason,
                                    const char *name);

/* Declare an exchange (passive: only check that it exists). */
int core_declare_exchange(struct core_session *session, const struct exchange_spec *spec,
                          bool passive, core_definitions_fn done, void *opaque, char *err,
                          size_t err_size);
/* Declare a queue (passive: only check). An empty name asks for a
 * server-named queue ("amq.gen-..."; given back in `done`). An exclusive
 * queue belongs to this session (spec->owner is ignored: the core sets it):
 * other sessions get CORE_ERR_LOCKED, and it is deleted with its bindings
 * when the session closes. */
int core_declare_queue(struct core_session *session, const struct queue_spec *spec, bool passive,
                       core_definitions_fn done, void *opaque, char *err, size_t err_size);
/* Bind / unbind a queue or an exchange (spec->destination_kind) to an exchange.
 * Binding again what exists, or unbinding what does not, succeeds without a
 * write. */
int core_bind(struct core_session *session, const struct binding_spec *spec,
              core_definitions_fn done, void *opaque, char *err, size_t err_size);
int core_unbind(struct core_session *session, const struct binding_spec *spec,
                core_definitions_fn done, void *opaque, char *err, size_t err_size);
/* Delete an exchange and every binding from or to it. `if_unused`: refused
 * (CORE_ERR_PRECONDITION) while it is the source of a binding. Deleting what
 * does not exist succeeds (as in RabbitMQ). */
int core_delete_exchange(struct core_session *session, const char *vhost, const char *name,
                         bool if_unused, core_definitions_fn done, void *opaque, char *err,
                         size_t err_size);
/* Delete a queue and its bindings. `if_unused`: refused while a session of
 * this node consumes from it (consumers on other nodes are not known here).
 * `if_empty` is refused (CORE_ERR_UNSUPPORTED): kbridge cannot tell cheaply
 * whether a consumer group has unread records. The group's committed
 * offsets are left to expire (offsets.retention.minutes). */
int core_delete_queue(struct core_session *session, const char *vhost, const char *name,
                      bool if_unused, bool if_empty, core_definitions_fn done, void *opaque,
                      char *err, size_t err_size);
/* May this session use queue `name` (CORE_OK), or is it another connection's
 * exclusive queue (CORE_ERR_LOCKED, RabbitMQ's text in err)? CORE_OK also
 * when the queue is not declared. For subscribe paths. */
int core_queue_usable(struct core_session *session, const char *vhost, const char *name, char *err,
                      size_t err_size);

/* ---- importing definitions at run time (core_definitions.c) --------------------- */

/* What an import did: entities written, already as defined, refused (each
 * logged with its reason), in vhosts not configured; users and
 * permissions the document held (never imported: auth.users is the
 * config's). */
struct core_import_counts {
    size_t written, unchanged, refused, skipped_vhost, users, permissions;
};
typedef void (*core_import_fn)(void *opaque, int core_error, const char *reason,
                               const struct core_import_counts *counts);
struct core_import;
/* Load a RabbitMQ definitions export (`text`, copied) as definitions.file is
 * loaded (same checks, same records, exchanges and queues first, then the
 * bindings; no ACL: for administrators), `label` naming it in logs. A
 * handle: `done` is called once, later, on the loop, when every record is
 * confirmed and applied (or Kafka failed: CORE_ERR_UNAVAILABLE), unless
 * core_import_cancel came first. NULL with *core_error and err when refused
 * now: CORE_ERR_INVALID (not a definitions export: err names the entry),
 * CORE_ERR_UNAVAILABLE (not ready, Kafka refused the write). */
struct core_import *core_import_definitions(struct core *core, const char *text, size_t len,
                                            const char *label, core_import_fn done, void *opaque,
                                            int *core_error, char *err, size_t err_size);
/* `done` will not be called (the writes go on). NULL is fine. */
void core_import_cancel(struct core_import *imp);

/* ---- purge (core_purge.c, architecture §11 "Purge") --------------------------- */

/* The answer of core_purge_queue, on the loop: CORE_OK with the number of
 * messages purged (the queue's depth when it was looked up), or an error
 * with its reason. */
typedef void (*core_purge_fn)(void *opaque, int core_error, const char *reason,
                              uint64_t message_count);
/* Purge queue `name` of `vhost` (NULL: "/") on every node: its ready
 * messages are skipped, its unacknowledged ones stay with their consumers.
 * Needs consume on the queue. CORE_OK: `done` is called exactly once, later,
 * on the loop (never after core_session_close). Else refused now with the
 * reason in err: CORE_ERR_NOT_FOUND (no such queue), CORE_ERR_ACCESS,
 * CORE_ERR_LOCKED (another connection's exclusive queue),
 * CORE_ERR_UNAVAILABLE, CORE_ERR_INTERNAL. */
int core_purge_queue(struct core_session *session, const char *vhost, const char *name,
                     core_purge_fn done, void *opaque, char *err, size_t err_size);
/* The answer of core_queue_depth, on the loop: CORE_OK with the queue's
 * ready messages across the cluster (Kafka's lag of its group, from where
 * its ready messages start; unsettled deliveries included), or
 * CORE_ERR_UNAVAILABLE with Kafka's reason. */
typedef void (*core_depth_fn)(void *opaque, int core_error, const char *reason,
                              uint64_t message_count);
/* Look up queue `name`'s depth (core_depth.c; AMQP 0-9-1 declare-ok's
 * message_count). No ACL check: the caller declared the queue. CORE_OK:
 * `done` is called exactly once, later, on the loop (never after
 * core_session_close). Else CORE_ERR_UNAVAILABLE or CORE_ERR_INTERNAL with
 * the reason in err. */
int core_queue_depth(struct core_session *session, const char *vhost, const char *name,
                     core_depth_fn done, void *opaque, char *err, size_t err_size);
/* The Kafka topics queue `name` reads (its own and its bindings' sources;
 * amq.topic wildcards left out): a malloc'd array of malloc'd strings (free
 * with queue_bindings_free_topics). 0, or -1 out of memory. */
int core_queue_topics(struct core *core, const char *vhost, const char *name, char ***topics,
                      size_t *count);
/* Where a queue's ready messages start on (topic, partition): its group's
 * committed offset (the log's first offset when none), or the queue's last
 * purge's end offset when that is further. */
int64_t core_queue_ready_from(const struct definitions *view, const char *vhost, const char *name,
                              const char *topic, int32_t partition, int64_t committed, int64_t low);

/* How many subscriptions of this node's sessions consume from queue `name`
 * of `vhost` (any protocol; consumers on other nodes are not known here). A walk of
 * the sessions' subscriptions: for declare-ok counts and queue.delete's
 * if-unused, not for every message. */
size_t core_queue_local_consumers(const struct core *core, const char *vhost, const char *name);
/* This node's view of the definitions (read-only; changes as the
 * definitions topic is applied). Engines get the same pointer in their
 * engine_context. */
const struct definitions *core_definitions(const struct core *core);
/* Has this node read the definitions topic (and done its start-up work)?
 * Why not (empty when it has). */
bool core_definitions_ready(const struct core *core);
const char *core_definitions_not_ready_reason(const struct core *core);
/* The Kafka topic prefix of `vhost` (config `vhosts`), or NULL when it is not
 * configured. */
const char *core_vhost_topic_prefix(const struct core *core, const char *vhost);

#endif
