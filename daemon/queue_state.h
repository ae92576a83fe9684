/* SPDX-License-Identifier: Apache-2.0 */
/* queue_state.h -- the queue engine's bookkeeping (architecture §5) with no I/O:
 * which fetched records are available, which are acquired by which consumer
 * and how many times they were delivered, what is settled, and which offset
 * each partition may commit. queue.c connects it to Kafka (consumer group,
 * dead-letter produce, offset store) and to protocol subscriptions.
 *
 * Terms (as in Kafka share groups, KIP-932):
 *  - available: fetched, waiting for a consumer with credit;
 *  - acquired: delivered to one consumer, waiting for its outcome;
 *  - accept: done; release: back to available (delivery count goes up on
 *    the next delivery); reject: dead-letter now;
 *  - a record whose delivery count reached max_deliveries is dead-lettered
 *    instead of being released again;
 *  - dead-lettering counts as settled only when queue_state_dead_lettered()
 *    reports the produce confirmed; a failed dead-letter produce makes the
 *    record available again;
 *  - with queue_state_delay_releases, a consumer's release (QUEUE_RELEASE)
 *    leaves the same way through the retry callback (a retry topic,
 *    architecture §13 "Delayed redelivery"), settled when the produce is
 *    confirmed; the record comes back later as a new fetched record
 *    (queue_state_add_delivered). Releases by a consumer's removal or the
 *    ack timeout, and QUEUE_RELEASE_UNDELIVERED, stay immediate.
 *
 * Ordering: available records are delivered in fetch order; a released
 * record goes back to the FRONT of the available list (redelivered first, as
 * a RabbitMQ requeue). Consumers with credit are served round-robin.
 *
 * Offsets: per partition the commit position is the lowest offset seen and
 * not yet settled, or (highest offset seen + 1) when all are settled; the
 * commit callback fires whenever it advances. Offsets may have gaps.
 *
 * Re-entrancy: callbacks may call back into this API (settle, consumer
 * removal, block); the state stays consistent and dispatch resumes. */
#ifndef KBRIDGE_QUEUE_STATE_H
#define KBRIDGE_QUEUE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct queue_state;

/* Identifies one delivery (one acquisition of one record); never 0, never reused. */
typedef uint64_t queue_delivery_id;

enum queue_outcome {
    QUEUE_ACCEPT,  /* acknowledged */
    QUEUE_RELEASE, /* redeliver (NACK requeue, AMQP released/modified) */
    QUEUE_REJECT,  /* dead-letter now (NACK requeue:false, AMQP rejected) */
    /* redeliver without counting this delivery towards max_deliveries (AMQP
     * released, and modified without delivery-failed: the client did not try it) */
    QUEUE_RELEASE_UNDELIVERED,
};

struct queue_state_callbacks {
    /* Deliver `record` to `consumer` (a pointer registered with
     * queue_state_consumer_add). The record stays owned by queue_state.
     * delivery_count is 1 on the first delivery. */
    void (*deliver)(void *opaque, void *consumer, queue_delivery_id id, void *record,
                    uint32_t delivery_count);
    /* Produce `record` to the dead-letter topic, then report the outcome with
     * queue_state_dead_lettered(id, ok). reason: "rejected by the consumer",
     * "delivered N times (max_deliveries)", or the reason given to settle. */
    void (*dead_letter)(void *opaque, queue_delivery_id id, void *record, uint32_t delivery_count,
                        const char *reason);
    /* Delayed release (queue_state_delay_releases): produce `record` to its
     * retry topic, then report with queue_state_dead_lettered(id, ok); !ok
     * makes it available again at once. NULL: no delayed releases. */
    void (*retry)(void *opaque, queue_delivery_id id, void *record, uint32_t delivery_count);
    /* Everything below next_offset on `partition` is settled: store it. */
    void (*commit)(void *opaque, int32_t partition, int64_t next_offset);
    /* queue_state no longer holds `record` (settled, or dropped by revoke or
     * free): the owner frees it. */
    void (*release_record)(void *opaque, void *record);
    /* Buffered records (available + acquired + being dead-lettered) went above
     * max_in_flight (pause = true) or back to max_in_flight/2 or below (false). */
    void (*flow)(void *opaque, bool pause);
    /* Monotonic milliseconds, for ack timeouts. */
    uint64_t (*now_ms)(void *opaque);
    /* Does selective `consumer` (queue_state_consumer_select) select
     * `record`? Asked while dispatching and by queue_state_drop_unselected;
     * must not call back into queue_state. NULL when no consumer is
     * selective. */
    bool (*selects)(void *opaque, void *consumer, const void *record);
};

/* New empty state. max_deliveries >= 1; max_in_flight >= 1. NULL on
 * allocation failure. Caller owns it. */
struct queue_state *queue_state_new(const struct queue_state_callbacks *callbacks, void *opaque,
                                    uint32_t max_deliveries, uint32_t max_in_flight);
/* Free; every record still held goes to release_record. NULL is fine. */
void queue_state_free(struct queue_state *state);
/* New limits (config reload); takes effect at the next decision. */
void queue_state_set_limits(struct queue_state *state, uint32_t max_deliveries,
                            uint32_t max_in_flight);

/* ---- partitions --------------------------------------------------------- */

/* The group gave us `partition`. Records for unassigned partitions are refused. */
void queue_state_assign(struct queue_state *state, int32_t partition);
/* The group took `partition` away: its available and acquired records are
 * dropped (release_record), and later settles of their deliveries return -1
 * and count as late. Its settled prefix was already reported by commit. */
void queue_state_revoke(struct queue_state *state, int32_t partition);

/* ---- records ------------------------------------------------------------ */

/* A fetched record: becomes available and is dispatched at once if a consumer
 * has credit. Offsets per partition must increase. 0 ok; -1 when the partition
 * is not assigned or the offset does not increase (the caller frees record). */
int queue_state_add(struct queue_state *state, int32_t partition, int64_t offset, void *record);
/* The same for a record of message group `group` (a key, e.g. of its
 * JMSXGroupID; 0: none): a group's records go to one consumer at a time,
 * the first that takes one, until it is removed (its unsettled ones come
 * back first, to the group's next consumer) or a record with
 * `closes_group` (JMSXGroupSeq -1) is delivered (architecture §13). */
int queue_state_add_grouped(struct queue_state *state, int32_t partition, int64_t offset,
                            void *record, uint64_t group, bool closes_group);

/* The same for a record delivered `delivered` times already (a delayed
 * redelivery fetched back from a retry topic): its next delivery counts
 * delivered + 1 and is a redelivery. No message group (its order is lost). */
int queue_state_add_delivered(struct queue_state *state, int32_t partition, int64_t offset,
                              void *record, uint32_t delivered);
/* Send a consumer's QUEUE_RELEASE through the retry callback (true) or
 * straight back to available (false, the default). Ignored without a retry
 * callback. */
void queue_state_delay_releases(struct queue_state *state, bool delay);

/* A purge (architecture §11 "Purge"): every available record of `partition`
 * below `end_offset` is settled without delivery, and records below it added
 * later are too (the commit position moves past them); acquired records are
 * left to their consumers, as RabbitMQ's purge leaves unacknowledged
 * messages. Returns how many available records were dropped; 0 when the
 * partition is not assigned here. */
size_t queue_state_purge(struct queue_state *state, int32_t partition, int64_t end_offset);

/* ---- consumers ------------------------------------------------------------ */

/* Register a consumer that may hold up to `credit` unsettled deliveries
 * (UINT32_MAX: no limit). auto_accept: each delivery is accepted right after
 * the deliver callback returns (STOMP ack:auto). blocked: registered as by
 * queue_state_consumer_block(true), so nothing is delivered to it until it is
 * unblocked. 0 ok, -1 on allocation failure. */
int queue_state_consumer_add(struct queue_state *state, void *consumer, uint32_t credit,
                             bool auto_accept, bool blocked);
/* Change a consumer's credit window; more credit dispatches at once. */
void queue_state_consumer_credit(struct queue_state *state, void *consumer, uint32_t credit);
/* Stop / restart deliveries to a consumer (its connection is backed up). */
void queue_state_consumer_block(struct queue_state *state, void *consumer, bool blocked);
/* Remove a consumer: its acquired records are released (available again for
 * the others, or dead-lettered when at max_deliveries). Unknown consumers are ignored. */
void queue_state_consumer_remove(struct queue_state *state, void *consumer);
/* Make a registered consumer selective (a JMS selector, architecture §13):
 * it gets only the records the `selects` callback says it selects; the
 * others stay available for the other consumers, in order (ActiveMQ's
 * queue semantics). */
void queue_state_consumer_select(struct queue_state *state, void *consumer);
/* Set a registered consumer's priority (default 0; RabbitMQ's consumer
 * priorities): a record goes to a ready consumer of the highest priority
 * that may take it, round robin among equals. */
void queue_state_consumer_priority(struct queue_state *state, void *consumer, int32_t priority);
/* Settle the available records that have waited at least hold_ms while
 * every registered consumer is selective and none selects them (so they
 * do not hold the commit position for ever; queues.selector_hold). Not
 * while no consumer is registered. The number settled (stats.unselected). */
size_t queue_state_drop_unselected(struct queue_state *state, uint64_t hold_ms);
/* Deliveries `consumer` holds unsettled. */
uint32_t queue_state_consumer_unsettled(const struct queue_state *state, const void *consumer);
/* Number of registered consumers. */
size_t queue_state_consumer_count(const struct queue_state *state);

/* ---- outcomes ------------------------------------------------------------- */

/* transactions.exactly_once (architecture §8): the commit positions this
 * queue's partitions would reach if the acquired deliveries ids[0..count)
 * were accepted too (a transaction acknowledged them and is committing).
 * For each partition that would move past its commit position, calls
 * out(opaque, partition, position) with the position; ids not acquired
 * are ignored. Changes nothing. */
void queue_state_positions_if_accepted(
    struct queue_state *state, const queue_delivery_id *ids, size_t count,
    void (*out)(void *opaque, int32_t partition, int64_t position), void *opaque);

/* Settle one delivery. reason (may be NULL) is passed to dead_letter for
 * QUEUE_REJECT. 0 ok; -1 when the id is unknown (already settled, or its
 * partition was revoked: counted in late_settles). */
int queue_state_settle(struct queue_state *state, queue_delivery_id id, enum queue_outcome outcome,
                       const char *reason);
/* Report a dead-letter (or retry) produce: ok settles the record; !ok makes
 * it available again with its delivery count unchanged. Unknown ids are ignored. */
void queue_state_dead_lettered(struct queue_state *state, queue_delivery_id id, bool ok);
/* Release every delivery acquired at or before now_ms - ack_timeout_ms
 * (a consumer holding a message too long). Returns how many were released. */
size_t queue_state_expire(struct queue_state *state, uint64_t ack_timeout_ms);

/* ---- numbers for metrics ------------------------------------------------------ */

struct queue_state_stats {
    size_t available;      /* waiting for a consumer */
    size_t acquired;       /* delivered, unsettled */
    size_t dead_lettering; /* dead-letter or retry produce in flight */
    bool paused;           /* flow(pause=true) is in force */
    uint64_t delivered;    /* deliveries made (first and re-) */
    uint64_t redelivered;  /* deliveries with delivery_count > 1 */
    uint64_t accepted;
    uint64_t released;
    uint64_t rejected;
    uint64_t dead_lettered; /* confirmed dead-letter produces */
    uint64_t retried;       /* confirmed retry produces (delayed releases) */
    uint64_t late_settles;  /* settles of unknown ids */
    uint64_t expired;       /* releases by ack timeout */
    uint64_t purged;        /* settled without delivery by queue_state_purge */
    uint64_t unselected;    /* settled without delivery by queue_state_drop_unselected */
};
void queue_state_stats(const struct queue_state *state, struct queue_state_stats *out);

#endif
