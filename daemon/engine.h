/* SPDX-License-Identifier: Apache-2.0 */
/* engine.h -- the interface between the core's subscriptions and the engines
 * that serve them (architecture "Layers and layout"): queue.c (queues and
 * durable subscriptions, on consumer groups), topic.c (non-durable topics)
 * and topic.c's temporary queues (request-reply, on the node's reply topic).
 *
 * The core (core_subscription.c) calls an engine only through its
 * `struct engine_ops`; an engine reaches the core only through the
 * `struct engine_context` it was created with -- never a core*.c function.
 * What an engine may call directly is below the core: record.h (the record
 * contract), stats.h (metrics series), request_reply.h, kafka.h, and the
 * helpers at the end of this header (engine.c).
 *
 * A subscription (`struct core_subscription`, below) holds the
 * engine serving it and that engine's per-subscriber state
 * (`engine_state`): `state_size` zeroed bytes the core allocates with the
 * subscription (one allocation per subscription), which the engine fills in
 * `subscribe` and releases what it holds in `unsubscribe`. Loop thread only. */
#ifndef KBRIDGE_ENGINE_H
#define KBRIDGE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "address.h"
#include "core.h"
#include "queue_state.h"
#include "stream_offset.h"

struct kafka_txn;

struct config;
struct core_session;
struct core_exchange_op;
struct definitions;
struct event;
struct event_base;
struct kafka;
struct kafka_record;
struct metrics;
struct request_reply;
struct stats_table;
struct engine;
struct definitions;
struct definitions_store;

/* One subscriber of a queue (or durable subscription), a topic or a
 * temporary queue, owned by the core (core_subscription.c). Engines read
 * destination, options, durable_name, client_id, reply_token and blocked,
 * and own engine_state; the rest is the core's. */
struct core_subscription {
    struct core_subscription *next; /* in the session (doubly linked) */
    struct core_subscription *prev;
    struct core_session *session;
    struct destination destination;
    struct core_subscribe_options options;
    char *durable_name;    /* options.durable_name points here */
    const char *client_id; /* the session's (NULL: none) */
    /* The session's vhost and its Kafka topic prefix (architecture §11
     * "Vhosts"): every topic and group the engine makes for it uses them. */
    const char *vhost;
    const char *topic_prefix;
    char *reply_token; /* temporary queue: only records routed to this token */
    struct core_subscription_handlers handlers;
    void *opaque;
    struct engine *engine;     /* serves it */
    void *engine_state;        /* ops->state_size bytes, the engine's (in engine_storage) */
    bool attached;             /* between a successful subscribe and the unsubscribe */
    struct event *ready_event; /* deferred ready callback */
    /* Deliveries stop while `blocked` (= client_blocked || !ready_sent): none
     * goes out before the adapter has seen ready and set up its side. */
    bool blocked;
    bool client_blocked; /* core_subscription_block() from the adapter */
    bool ready_sent;
    /* Its deliveries count in the session's limits.max_unacked (the client
     * settles them: not auto-accepted, an engine that settles); `unacked`
     * of them are not settled yet. */
    bool counts_unacked;
    uint32_t unacked;
    struct core_exchange_op *exchange_op; /* an exchange subscription being set up (core's) */
    struct selector *selector;            /* options.selector parsed, or NULL (owned) */
    bool replay;                          /* options.stream_offset given: ... */
    struct stream_offset stream_offset;   /* ... parsed here (topic engine) */
    _Alignas(max_align_t) unsigned char engine_storage[]; /* engine_state points here */
};

/* What the core gives every engine at creation; it outlives the engines. */
struct engine_context {
    struct event_base *base;
    struct config *const *config; /* the server's current-config pointer */
    struct kafka *kafka;
    struct metrics *metrics;
    struct stats_table *stats;
    struct request_reply *request_reply;
    uint64_t *expired[2]; /* kbridge_expired_total{kind="queue"|"topic"} */
    /* RabbitMQ's model as this node reads it (architecture §11): the view
     * (read-only) and its store, whose definitions_store_watch tells an
     * engine about each applied change. */
    const struct definitions *definitions;
    struct definitions_store *definitions_store;
    /* The calls back into the core, the only ones an engine makes. */
    /* The subscription is positioned: the core sends `ready` on a later loop turn. */
    void (*ready)(struct core_subscription *sub);
    /* Hand a delivery to the subscription's adapter. */
    void (*deliver)(struct core_subscription *sub, const struct core_delivery *delivery);
    /* The subscription cannot go on (error: a CORE_ERR_*, see
     * core_subscription_handlers.failed); the adapter is told (it unsubscribes). */
    void (*failed)(struct core_subscription *sub, int error, const char *reason);
    /* A browse subscription (options.browse) has delivered all it will. */
    void (*browse_end)(struct core_subscription *sub);
    /* May the subscription's session read Kafka topic `topic` (prefix
     * included)? Wildcard subscriptions ask per concrete topic. */
    bool (*may_consume_topic)(struct core_subscription *sub, const char *topic);
};

/* The operations of one engine. Results are enum core_error values. */
struct engine_ops {
    const char *name;  /* "queue", "topic", "temporary-queue" */
    size_t state_size; /* of the per-subscriber state (engine_state) */
    /* Start serving `sub` (its destination, options, durable name and
     * reply token are set; it is blocked until ready; engine_state is
     * zeroed): fill sub->engine_state, join or create what serves it, and call
     * context->ready once it is positioned. CORE_OK, or an error with err. */
    int (*subscribe)(struct engine *engine, struct core_subscription *sub, char *err,
                     size_t err_size);
    /* Settle delivery `id`: CORE_OK, CORE_ERR_INVALID when unknown. NULL:
     * the engine's deliveries carry nothing to settle (id 0). */
    int (*settle)(struct core_subscription *sub, uint64_t id, enum queue_outcome outcome,
                  const char *reason);
    /* transactions.exactly_once (architecture §8): add to `txn` the group
     * offsets `sub`'s group could commit if its deliveries ids[0..count)
     * were accepted (kafka_txn_add_offset). The number of partition offsets
     * added, or -1 out of memory. NULL: the engine commits no group offsets. */
    int (*transaction_offsets)(struct core_subscription *sub, const uint64_t *ids, size_t count,
                               struct kafka_txn *txn);
    /* Flow: stop (blocked) or resume deliveries to `sub`; resuming may deliver at once. */
    void (*block)(struct core_subscription *sub, bool blocked);
    /* Stop serving `sub` (the core frees engine_state with it); unsettled deliveries are
     * released. `forget`: also delete what the subscription named (a
     * durable subscription's group position) when nobody else uses it. */
    void (*unsubscribe)(struct core_subscription *sub, bool forget);
    /* Subscribers of `sub`'s destination on this node (the stats gauge). */
    size_t (*subscriber_count)(const struct core_subscription *sub);
    /* Take a record made on this node without Kafka (kafka_record_local) as
     * if it had been fetched: the temporary-queue engine routes a local reply
     * by its token (architecture §7). Owns the record from the call on. NULL:
     * the engine takes none. */
    void (*deliver_local)(struct engine *engine, struct kafka_record *record);
    /* Messages of `sub`'s queue ready on this node's member of its group:
     * neither delivered and unsettled nor settled, fetched or not yet
     * (queue.c, queue_ready.h). No I/O: cached end offsets. NULL: 0. */
    uint64_t (*ready_count)(const struct core_subscription *sub);
    /* Apply a reloaded config. May be NULL. */
    void (*reconfigure)(struct engine *engine);
    /* Close everything and free the engine (shutdown, after every unsubscribe). */
    void (*free)(struct engine *engine);
};

struct engine {
    const struct engine_ops *ops;
    const struct engine_context *context;
};

/* The engines (queue.c, topic.c). NULL with err on failure; free with ops->free. */
struct engine *queue_engine_new(const struct engine_context *context, char *err, size_t err_size);
struct engine *topic_engine_new(const struct engine_context *context, char *err, size_t err_size);
/* The temporary-queue engine shares its topic engine's readers: it is part
 * of it and freed with it (its own `free` does nothing). */
struct engine *topic_engine_temporary(struct engine *topic_engine);

/* ---- helpers engines share (engine.c) ---- */

/* Is `exchange` one whose routing key names the Kafka topic (the default
 * exchange "" and amq.topic, architecture §11), rather than one topic per
 * exchange? */
bool engine_exchange_is_topic_per_key(const char *exchange);

/* The config in force. */
const struct config *engine_config(const struct engine_context *context);
/* Fill `delivery` from a record for `sub`: names without sub's topic prefix,
 * body "" for a null value; no extra headers yet. */
void engine_delivery_from_record(const struct engine_context *context,
                                 struct core_delivery *delivery,
                                 const struct core_subscription *sub,
                                 const struct kafka_record *record, uint64_t id,
                                 uint32_t delivery_count);
/* A Kafka error (kafka.h's codes) as the core error adapters map to their
 * protocol's, by its class (kafka_error_classify): authorization -> ACCESS,
 * unknown topic -> NOT_FOUND, too large -> TOO_LARGE, invalid -> INVALID,
 * the rest -> UNAVAILABLE. 0 stays CORE_OK. */
int engine_error_from_kafka(int kafka_error);

/* Does the subscription's selector (sub->selector) select the record? True
 * without one. Identifiers are the record's headers by name; the JMS names
 * JMSMessageID, JMSCorrelationID, JMSType, JMSPriority, JMSReplyTo,
 * JMSExpiration, JMSDeliveryMode ('PERSISTENT' when the `persistent` header
 * is true) and JMSTimestamp (the record's timestamp) map onto them
 * (architecture §13). */
bool engine_record_selected(const struct core_subscription *sub, const struct kafka_record *record);

/* Has the record's `expires` passed (record.h)? Counts it in
 * kbridge_expired_total (`queue`: a queue or durable subscription). */
bool engine_record_expired(const struct engine_context *context, const struct kafka_record *record,
                           bool queue);

#endif
