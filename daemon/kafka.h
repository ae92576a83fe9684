/* SPDX-License-Identifier: Apache-2.0 */
/* kafka.h -- the only door to librdkafka: one idempotent producer per node,
 * consumers created on demand, all driven from the libevent loop. The
 * implementation is split along its seams (daemon/kafka_internal.h lists
 * the files); nothing outside daemon/kafka*.c includes librdkafka.
 *
 * Threading: librdkafka runs its own threads. Every queue we read is set up
 * with rd_kafka_queue_io_event_enable() on a non-blocking pipe; the loop
 * wakes on the pipe and serves at most `kafka.drain_budget` events per
 * wake-up (the rest on the next loop iteration), calling the callbacks
 * below, always on the loop thread. Blocking calls (metadata, offsets,
 * admin, a consumer's final destroy, the readiness probe) run as jobs on
 * the node's worker pool (worker.h). Nothing here blocks the loop, except
 * kafka_free, which is for shutdown.
 *
 * Readiness: a probe job asks the cluster for metadata every few seconds;
 * the node is ready while the last answer succeeded. The reason for not
 * being ready is kept for /readyz.
 *
 * Error codes are librdkafka's rd_kafka_resp_err_t values passed as int;
 * kafka_error_name() turns one into text, kafka_error_classify() into the
 * class callers act on. */
#ifndef KBRIDGE_KAFKA_H
#define KBRIDGE_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct event_base;
struct metrics;
struct kafka;
struct kafka_consumer;
struct worker_pool;

/* Error codes callers test for (values of rd_kafka_resp_err_t). */
#define KAFKA_OK 0
#define KAFKA_ERR_QUEUE_FULL (-184)     /* producer queue full: stop reading clients */
#define KAFKA_ERR_MSG_SIZE_TOO_LARGE 10 /* record larger than message.max.bytes */

/* What a Kafka error means for the client (kafka_error_classify). */
enum kafka_error_class {
    KAFKA_CLASS_OK = 0,
    KAFKA_CLASS_RETRIABLE,     /* transient (timeouts, leaders moving, brokers down, queue
                                  full): the same request may succeed later */
    KAFKA_CLASS_AUTHORIZATION, /* topic, group, cluster or transactional id authorization;
                                  SASL authentication */
    KAFKA_CLASS_UNKNOWN_TOPIC, /* the topic or partition does not exist */
    KAFKA_CLASS_TOO_LARGE,     /* the record (or its batch) is over a size limit */
    KAFKA_CLASS_INVALID,       /* the record or request itself is refused (invalid record,
                                  topic name, timestamp, policy) */
    KAFKA_CLASS_FATAL,         /* the producer cannot go on (fatal idempotence error, fenced) */
    KAFKA_CLASS_OTHER,         /* anything else */
};

/* The class of an error code (rd_kafka_resp_err_t as int); pure. */
enum kafka_error_class kafka_error_classify(int err);
/* Static name of a class ("authorization"), for logs and metrics. */
const char *kafka_error_class_name(enum kafka_error_class error_class);

/* One record header; name NUL-terminated, value may hold any bytes. */
struct kafka_header {
    const char *name;
    const void *value; /* NULL for a null header value */
    size_t value_len;
};

/* A fetched record. Owned by whoever received it from a consumer callback;
 * release it with kafka_record_free. Pointers stay valid until then. */
struct kafka_record {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* -1 when the broker gave none */
    const void *key;      /* NULL for a null key */
    size_t key_len;
    const void *value; /* NULL for a null value (tombstone) */
    size_t value_len;
    void *impl;          /* private: the rd_kafka_message_t (NULL: a local record) */
    void *local_headers; /* private: a local record's rd_kafka_headers_t */
    /* private: the headers as parsed once when the record was made (NULL:
     * none), their count, and a bit per name hash (kafka_record_header_find
     * answers most misses from it without a walk) */
    void *headers;
    size_t header_count;
    uint64_t header_names;
};

/* Delivery report for one produce, on the loop. err is KAFKA_OK when Kafka
 * stored the record at (partition, offset). */
typedef void (*kafka_delivery_fn)(void *opaque, int err, int32_t partition, int64_t offset);

/* ---- the node's Kafka layer ------------------------------------------- */

/* Create the producer (and, for `kafka.bootstrap: embedded`, the in-memory
 * mock cluster) and start the readiness probe. Blocking calls run on
 * `workers`, which must outlive every job: free the pool (worker_pool_free
 * completes every job) before kafka_free. Kafka being unreachable is not
 * an error here: the node starts not ready. Returns NULL with err filled on
 * a bad property or an allocation failure. Caller owns the result. */
struct kafka *kafka_new(struct event_base *base, const struct config *config,
                        struct metrics *metrics, struct worker_pool *workers, char *err,
                        size_t err_size);

/* The bootstrap list in use (the mock's addresses when embedded). */
const char *kafka_bootstrap(const struct kafka *kafka);
/* True when the bootstrap is the in-process mock cluster. */
bool kafka_is_embedded(const struct kafka *kafka);
/* True while the last metadata request succeeded and no fatal error occurred. */
bool kafka_is_ready(const struct kafka *kafka);
/* Why the node is not ready (empty string when it is). Owned by kafka. */
const char *kafka_not_ready_reason(const struct kafka *kafka);
/* Point the layer at a reloaded config (its kafka.* values are unchanged:
 * config_apply_live keeps them). The config must outlive the layer. */
void kafka_set_config(struct kafka *kafka, const struct config *config);

/* The running producer's value of librdkafka property `name` (what kbridge
 * and the config set, else librdkafka's default) into `value` (`size`
 * bytes). 0, or -1 (unknown property, or it does not fit). */
int kafka_producer_property(const struct kafka *kafka, const char *name, char *value, size_t size);

/* Queue one record. Copies topic, key, value and headers. partition -1 lets
 * the partitioner choose: by key (kafka.producer `partitioner`, librdkafka's
 * consistent_random by default); a record without a key and with a nonzero
 * `sticky` goes to partition sticky % partitions, so every record of one
 * sticky value (one producer) lands on one partition and keeps its order
 * (architecture §3); sticky 0: the partitioner's choice. On KAFKA_OK, `done` is
 * called exactly once on the loop with the outcome; on any other return it
 * is never called (KAFKA_ERR_QUEUE_FULL: try again after deliveries drain). */
int kafka_produce(struct kafka *kafka, const char *topic, int32_t partition, uint32_t sticky,
                  const void *key, size_t key_len, const void *value, size_t value_len,
                  const struct kafka_header *headers, size_t header_count, kafka_delivery_fn done,
                  void *opaque);

/* Records queued in the producer and not yet reported. */
int kafka_unconfirmed(const struct kafka *kafka);

/* Shutdown only (blocks; after worker_pool_free): stop the probe, close consumers still open
 * (committing stored offsets), purge records still unconfirmed (their
 * delivery callbacks are NOT called: owners are gone by now), destroy the
 * producer and the mock cluster. NULL is fine. */
void kafka_free(struct kafka *kafka);

/* Static text of an error code ("Broker: Not leader for partition"). */
const char *kafka_error_name(int err);

/* ---- transactions (kafka_transaction.c, architecture §8) --------------------
 *
 * A bounded pool of transactional producers (transactions.producers, made
 * on first use), producer N with transactional.id "kbridge.NODE.N", so a
 * restarted node fences its own zombies. Each call that blocks in
 * librdkafka (creating the producer and init_transactions, begin, commit,
 * abort) is a job on the worker pool, each bounded by
 * transactions.call_timeout; its answer comes back on the loop. A producer
 * is lent to one transaction from kafka_txn_begin's answer until
 * kafka_txn_commit's or kafka_txn_abort's. Records produced in it get no
 * delivery report: commit_transaction succeeds only once every one is
 * stored. */
struct kafka_txn;

/* kafka_txn_begin's answer: KAFKA_OK and the producer, in a Kafka
 * transaction now; or an error code with reason (txn NULL). */
typedef void (*kafka_txn_begin_fn)(void *opaque, int err, const char *reason,
                                   struct kafka_txn *txn);
/* kafka_txn_commit's / kafka_txn_abort's answer: KAFKA_OK, or the error
 * with reason (a failed commit was aborted). The producer is back in the
 * pool either way. */
typedef void (*kafka_txn_end_fn)(void *opaque, int err, const char *reason);

/* Take a producer (waiting, in order, while all are lent) and begin a Kafka
 * transaction on it; `done` is called exactly once, later, on the loop
 * (also when the worker pool goes away: an error). 0, or -1 out of memory
 * (nothing is called). The caller must keep `opaque` alive until then. */
int kafka_txn_begin(struct kafka *kafka, kafka_txn_begin_fn done, void *opaque);
/* Produce one record inside txn's Kafka transaction (copied; partitioned as
 * kafka_produce does). KAFKA_OK or the error code (the transaction should
 * then be aborted). */
int kafka_txn_produce(struct kafka_txn *txn, const char *topic, uint32_t sticky, const void *key,
                      size_t key_len, const void *value, size_t value_len,
                      const struct kafka_header *headers, size_t header_count);
/* transactions.exactly_once: commit `next_offset` for `topic` [partition]
 * of consumer's group inside txn's Kafka transaction (the commit job sends
 * every group's offsets with send_offsets_to_transaction before
 * commit_transaction; they count only if it commits). KAFKA_OK, or -1 out
 * of memory or when the consumer has no group metadata. */
int kafka_txn_add_offset(struct kafka_txn *txn, struct kafka_consumer *consumer, const char *topic,
                         int32_t partition, int64_t next_offset);
/* Commit (flushing every record) / abort the transaction and give the
 * producer back; `done` once, later, on the loop. 0, or -1 when the job
 * cannot be queued (the producer is dropped from the pool then and `done`
 * is not called). */
int kafka_txn_commit(struct kafka_txn *txn, kafka_txn_end_fn done, void *opaque);
int kafka_txn_abort(struct kafka_txn *txn, kafka_txn_end_fn done, void *opaque);
/* The transactional.id of a lent producer (for logs). */
const char *kafka_txn_id(const struct kafka_txn *txn);

/* ---- topic lookups ------------------------------------------------------ */

/* A topic's partitions and their end offsets (high watermarks) at lookup time. */
struct kafka_topic_info {
    const char *topic;
    int32_t partition_count;
    const int64_t *end_offsets; /* [partition_count] */
};

/* Lookup result on the loop: err KAFKA_OK and the topics found, or an error
 * code with count 0. Pointers are valid only during the call. */
typedef void (*kafka_lookup_fn)(void *opaque, int err, const struct kafka_topic_info *topics,
                                size_t count);
/* Which topics a whole-cluster lookup keeps; runs on a worker thread, so it
 * must be a pure function of its arguments. */
typedef bool (*kafka_topic_filter_fn)(const char *topic, const void *filter_arg);

struct kafka_lookup;

/* Does a topic's cleanup.policy (Kafka's list: "compact", "delete",
 * "compact,delete", spaces allowed) keep the last record of every key, as a
 * definitions or status topic needs? Pure: unit-tested. */
bool kafka_cleanup_policy_compacts(const char *policy);

/* Look up partitions and end offsets of `topic` (created by the broker's
 * auto-create rules if missing), or, with topic NULL, of every topic that
 * `filter(topic, filter_arg)` keeps (filter_arg is copied: filter_arg_size
 * bytes). Blocking calls run on the worker pool; `done` runs on the loop unless the
 * lookup is cancelled first. NULL on allocation failure. */
struct kafka_lookup *kafka_lookup_end_offsets(struct kafka *kafka, const char *topic,
                                              kafka_topic_filter_fn filter, const void *filter_arg,
                                              size_t filter_arg_size, kafka_lookup_fn done,
                                              void *opaque);
/* Like kafka_lookup_end_offsets, then give `consumer`'s group a committed
 * offset (the end offset found) on every partition that has none yet, so a
 * new durable subscription starts at its creation on every partition. The
 * consumer must not be subscribed yet; closing it waits for the lookup. */
struct kafka_lookup *kafka_lookup_anchor_group(struct kafka_consumer *consumer, const char *topic,
                                               kafka_topic_filter_fn filter, const void *filter_arg,
                                               size_t filter_arg_size, kafka_lookup_fn done,
                                               void *opaque);
/* Like kafka_lookup_end_offsets for one topic, creating it with `partitions`
 * partitions (and the cluster's default replication) through the admin API
 * when the cluster says it does not exist (auto-creation off). */
struct kafka_lookup *kafka_lookup_end_offsets_or_create(struct kafka *kafka, const char *topic,
                                                        int partitions, kafka_lookup_fn done,
                                                        void *opaque);
/* The same, creating it (when missing) with cleanup.policy=compact: a topic
 * that keeps the last record per key (the definitions topic, architecture §11). */
struct kafka_lookup *kafka_lookup_end_offsets_or_create_compacted(struct kafka *kafka,
                                                                  const char *topic, int partitions,
                                                                  kafka_lookup_fn done,
                                                                  void *opaque);
/* Create `topic` now (blocking: not on the loop). KAFKA_OK when it was made
 * or already exists, else a Kafka error code with the broker's reason in err. */
int kafka_create_topic(struct kafka *kafka, const char *topic, int partitions, char *err,
                       size_t err_size);
/* `done` will not be called; the lookup frees itself when its job ends. */
void kafka_lookup_cancel(struct kafka_lookup *lookup);

/* ---- group lag (kafka_group.c) ------------------------------------------ */

/* One partition a group reads: its committed offset (-1: none yet), the
 * first offset still in the log and the end offset. */
struct kafka_partition_lag {
    const char *topic;
    int32_t partition;
    int64_t committed;
    int64_t low;
    int64_t end;
};
/* The answer on the loop: err KAFKA_OK and every partition of the topics
 * that exist, or an error with a reason. Valid during the call only. */
typedef void (*kafka_group_lag_fn)(void *opaque, int err, const char *reason,
                                   const struct kafka_partition_lag *parts, size_t count);
/* Look up group `group_id`'s committed offsets and the watermarks of every
 * partition of `topics` (copied) on the worker pool; `done` is called once
 * on the loop (with an error when the pool is freed at shutdown first). -1
 * when it cannot be queued (then never). */
int kafka_group_lag(struct kafka *kafka, const char *group_id, char *const *topics,
                    size_t topic_count, kafka_group_lag_fn done, void *opaque);

/* ---- records ---------------------------------------------------------- */

/* A record that never went through Kafka: a reply delivered in memory to a
 * temporary queue of this node (architecture §7). The accessors below and
 * kafka_record_free work on it as on a fetched one. Copies topic, key, value
 * and headers; partition and offset are -1, the timestamp is now. NULL when
 * out of memory. */
struct kafka_record *kafka_record_local(const char *topic, const void *key, size_t key_len,
                                        const void *value, size_t value_len,
                                        const struct kafka_header *headers, size_t header_count);
/* Number of headers of a record. */
size_t kafka_record_header_count(const struct kafka_record *record);
/* Header `index` (0-based): 0 ok, -1 out of range. Pointers owned by record. */
int kafka_record_header(const struct kafka_record *record, size_t index, const char **name,
                        const void **value, size_t *value_len);
/* The value of the first header called `name` (its length in *value_len),
 * NULL when the record has none. Pointer owned by record. */
const void *kafka_record_header_find(const struct kafka_record *record, const char *name,
                                     size_t *value_len);
/* False when the record has no header called `name`; true when it may (a
 * check without walking the headers, for the few names the loop looks for
 * on every record). */
bool kafka_record_may_have_header(const struct kafka_record *record, const char *name);
/* Release a record; NULL is fine. */
void kafka_record_free(struct kafka_record *record);

/* ---- consumers -------------------------------------------------------- */

struct kafka_partition {
    const char *topic;
    int32_t partition;
};

struct kafka_consumer_handlers {
    /* A fetched record; the handler owns it (kafka_record_free). */
    void (*record)(void *opaque, struct kafka_record *record);
    /* Partitions assigned to this member (group consumers); also called with
     * count 0 when the group gave this member nothing. */
    void (*assigned)(void *opaque, const struct kafka_partition *parts, size_t count);
    /* Partitions about to be revoked: settle/commit what can be before returning. */
    void (*revoked)(void *opaque, const struct kafka_partition *parts, size_t count);
    /* A consumer error worth knowing (not per-record). */
    void (*error)(void *opaque, int err, const char *reason);
};

/* A consumer in `group_id` (NULL: no group, partitions are assigned with
 * kafka_consumer_assign_end/at). `offset_reset` ("earliest" or "latest") is
 * where a group starts on a partition without a committed offset; NULL means
 * earliest. Offsets are stored only by
 * kafka_consumer_store_offset and committed by kafka_consumer_commit (and
 * on close). Returns NULL with err filled. Owned by the caller; close with
 * kafka_consumer_close. */
struct kafka_consumer *kafka_consumer_new(struct kafka *kafka, const char *group_id,
                                          const char *offset_reset,
                                          const struct kafka_consumer_handlers *handlers,
                                          void *opaque, char *err, size_t err_size);
/* Subscribe to topics; a name starting with '^' is a regex. 0 or error code. */
int kafka_consumer_subscribe(struct kafka_consumer *consumer, const char *const *topics,
                             size_t count);
/* Assign partitions 0..partitions-1 of `topic` at their end offsets (no
 * group): the non-durable topic reader. 0 or error code. */
int kafka_consumer_assign_end(struct kafka_consumer *consumer, const char *topic,
                              int32_t partitions);
/* Add partitions 0..count-1 of `topic` to the assignment at the given offsets
 * (no group). 0 or error code. */
int kafka_consumer_assign_at(struct kafka_consumer *consumer, const char *topic,
                             const int64_t *offsets, int32_t count);
/* The librdkafka offset constant for "the beginning of the partition". */
int64_t kafka_offset_beginning(void);
/* Mark everything below `next_offset` of (topic, partition) as settled. */
int kafka_consumer_store_offset(struct kafka_consumer *consumer, const char *topic,
                                int32_t partition, int64_t next_offset);

/* One partition and a position in it, for the calls on several partitions
 * at once (kafka_consumer_store_offsets, kafka_consumer_pause_many). */
struct kafka_partition_offset {
    const char *topic;
    int32_t partition;
    int64_t offset; /* store: everything below it is settled; resume: as next_offset */
    int err;        /* out: 0 or what librdkafka said of this partition */
};

/* Store `count` positions in one call (one librdkafka partition list, made
 * anew each time): the queue engine's coalesced stores (architecture "Data
 * path of a delivery"). The array stays the caller's; each entry's err is
 * set. 0, or the first error code (each refusal is logged at debug). */
int kafka_consumer_store_offsets(struct kafka_consumer *consumer,
                                 struct kafka_partition_offset *offsets, size_t count);
/* Commit stored offsets asynchronously. 0 or error code. */
int kafka_consumer_commit(struct kafka_consumer *consumer);
/* Stop / restart fetching one partition. 0 or error code. `next_offset` is
 * where fetching goes on (the offset after the last record the consumer
 * handed out for that partition), or -1 when none was: with it, fetching
 * starts at once (librdkafka only notices a plain resume at its broker
 * thread's next idle wake-up, up to a second later). */
int kafka_consumer_pause(struct kafka_consumer *consumer, const char *topic, int32_t partition);
/* Pause (pause true) or resume `count` partitions in one call, as
 * kafka_consumer_pause / kafka_consumer_resume do one (a resume's next_offset
 * is each entry's offset, -1: none). librdkafka waits for its fetcher thread
 * once per call, not once per partition: the queue's flow control
 * (architecture "Data path of a delivery"). The array stays the caller's;
 * each entry's err is set. 0, or the first error code. */
int kafka_consumer_pause_many(struct kafka_consumer *consumer, struct kafka_partition_offset *parts,
                              size_t count, bool pause);
/* The partition's end offset as the consumer's last fetch saw it (no I/O:
 * librdkafka's cached high watermark); -1 when not known yet. */
int64_t kafka_consumer_high_watermark(struct kafka_consumer *consumer, const char *topic,
                                      int32_t partition);
/* Where the consumer fetches next in `topic` [partition] (after the last
 * record it fetched, past control records and gaps), or -1 when it does not
 * know yet. Does not block. */
int64_t kafka_consumer_position(struct kafka_consumer *consumer, const char *topic,
                                int32_t partition);
int kafka_consumer_resume(struct kafka_consumer *consumer, const char *topic, int32_t partition,
                          int64_t next_offset);
/* Leave the group (committing stored offsets) without blocking the loop;
 * the handle is freed once librdkafka has finished. No callbacks after this. */
void kafka_consumer_close(struct kafka_consumer *consumer);
/* Close it as kafka_consumer_close does, then forget its group's position
 * (a deleted durable subscription): once it has left the group, commit the
 * end offsets of `topic` (or of the topics `filter` takes) marked as
 * forgotten, so the next anchor of that group (kafka_lookup_anchor_group,
 * which waits for this) starts at the end as for a new group. Plain offset
 * commits, not DeleteGroups: any broker and the mock (librdkafka 2.0.2's
 * mock has no DeleteGroups; its client aborts on one) take them; where only
 * members may commit (the mock) a short-lived consumer joins the group
 * (`subscription`: the topic or ^regex) to commit. The group's offsets stay
 * in Kafka and expire with offsets.retention.minutes. Runs on the worker pool.
 * -1 when the forget cannot be set up (the consumer is closed anyway). */
int kafka_consumer_close_forget(struct kafka_consumer *consumer, const char *subscription,
                                const char *topic, kafka_topic_filter_fn filter,
                                const void *filter_arg, size_t filter_arg_size);

#endif
