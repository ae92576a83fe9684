/* SPDX-License-Identifier: Apache-2.0 */
/* kafka_internal.h -- what the files of the Kafka layer share, and nothing
 * outside daemon/kafka*.c may include (it pulls in librdkafka/rdkafka.h).
 *
 * The layer is split along its seams (architecture "Kafka layer"):
 *   kafka.c          the node's layer: kafka_new/kafka_free, shared helpers
 *                    (wake-up pipes, librdkafka config), the contract check
 *   kafka_producer.c the idempotent producer, delivery reports, partitioner
 *   kafka_transaction.c the pool of transactional producers (architecture §8)
 *   kafka_consumer.c consumers, rebalances, records, closing
 *   kafka_lookup.c   metadata / end offsets / topic creation / group anchor
 *                    and forget: blocking admin calls run as worker jobs
 *   kafka_probe.c    the readiness probe, a worker job every few seconds
 *   kafka_error.c    rd_kafka_resp_err_t -> enum kafka_error_class
 *   kafka_mock.c     the embedded mock cluster (also kbridge-devkafka)
 *
 * Threads: every struct here belongs to the loop thread, except what a
 * worker job was handed (its own job record, and the rd_kafka_t handles,
 * which librdkafka makes thread-safe). Blocking librdkafka calls run only
 * in worker jobs (kafka_submit) or in kafka_free. */
#ifndef KBRIDGE_KAFKA_INTERNAL_H
#define KBRIDGE_KAFKA_INTERNAL_H

#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

#include "kafka.h"

struct config;
struct config_properties;
struct metrics;
struct worker_pool;

/* A pipe whose read end wakes the loop (librdkafka writes to it when a
 * queue becomes non-empty), plus a zero-timeout timer that runs the same
 * handler on the next loop iteration when a drain ran out of budget. */
struct kafka_wakeup {
    int fds[2];
    struct event *event; /* the pipe's read end */
    struct event *again; /* zero-timeout: the rest of a bounded drain */
};

typedef int32_t (*kafka_partitioner_fn)(const rd_kafka_topic_t *topic, const void *key,
                                        size_t key_len, int32_t partition_count, void *topic_opaque,
                                        void *message_opaque);

/* What a produced record carries as its message opaque (kafka_producer.c):
 * the delivery callback and the sticky partition; a transactional record's
 * (kafka_transaction.c) has no callback. */
struct kafka_delivery {
    kafka_delivery_fn done;
    void *opaque;
    uint32_t sticky; /* kafka_produce's: the partition of a record without key */
};

/* Queue one record on producer `rk` (the node's or a transactional one)
 * with `delivery` as its opaque; headers and value are copied. 0, or
 * librdkafka's error: nothing queued, `delivery` still the caller's. */
int kafka_produce_on(rd_kafka_t *rk, const char *topic, int32_t partition, const void *key,
                     size_t key_len, const void *value, size_t value_len,
                     const struct kafka_header *headers, size_t header_count,
                     struct kafka_delivery *delivery);

struct kafka_txn;
struct kafka_txn_wait;

/* The readiness probe's loop-side state (kafka_probe.c). */
struct kafka_probe {
    struct event *timer; /* next probe job */
    bool running;        /* a probe job is on the pool */
    bool stopped;        /* kafka_free / pool gone: submit no more */
    bool ready;          /* last answer */
    int broker_count;
    char reason[512];
};

struct kafka {
    struct event_base *base;
    const struct config *config; /* for properties at consumer creation */
    struct metrics *metrics;
    struct worker_pool *workers; /* blocking calls run here */
    struct kafka_mock *mock;     /* embedded cluster, or NULL */
    char *bootstrap;
    unsigned drain_budget; /* events served per wake-up before yielding */

    rd_kafka_t *producer;
    kafka_partitioner_fn keyed_partitioner; /* the configured one, for keyed records */
    rd_kafka_queue_t *producer_queue;
    struct kafka_wakeup producer_wakeup;
    rd_kafka_event_t *producer_event; /* a delivery report batch served in part */
    int producer_event_left;          /* its messages not yet reported */

    struct kafka_probe probe;
    bool ready;      /* probe answer and no fatal error */
    bool fatal;      /* the producer hit a fatal error */
    bool destroying; /* kafka_free: delivery reports no longer reach owners */
    char reason[512];
    /* From the readiness probe ("" until the first answer). */
    char cluster_id[128];
    /* librdkafka's mock cluster (embedded, or kbridge-devkafka by its cluster
     * id): it holds an empty fetch for the whole fetch.wait.max.ms even when
     * data arrives, so consumers created from now on wait less (architecture
     * §9, "Fetch wait"). */
    bool late_fetch_answers;

    struct kafka_txn *txns;             /* transactions.producers pooled producers (lazy) */
    unsigned txn_count;                 /* their number */
    struct kafka_txn_wait *txn_waiting; /* begins waiting for a free producer, FIFO */
    struct kafka_txn_wait *txn_waiting_tail;

    struct kafka_consumer *consumers;     /* open and closing consumers */
    struct kafka_forget *forgetting;      /* groups whose position is being forgotten */
    struct kafka_lookup *anchors_waiting; /* anchors of a group being forgotten */
    size_t jobs;                          /* worker jobs submitted and not yet completed */

    uint64_t *produced;
    uint64_t *delivered;
    uint64_t *delivery_errors;
    uint64_t *errors;
};

struct kafka_consumer {
    struct kafka_consumer *next;
    struct kafka *kafka;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;       /* consumer queue (records, callbacks) */
    rd_kafka_queue_t *close_queue; /* set while closing */
    struct kafka_wakeup wakeup;
    struct kafka_consumer_handlers handlers;
    void *opaque;
    char *group_id;
    bool closing;
    int anchors_running;         /* group anchor lookups using rk on a worker */
    bool close_deferred;         /* closed while an anchor ran: finish when it reports */
    struct kafka_lookup *forget; /* kafka_consumer_close_forget: started once closed */
};

/* One lookup (kafka_lookup.c): inputs, then outputs written by its job. */
struct kafka_lookup {
    struct kafka_lookup *next; /* in kafka->anchors_waiting */
    struct kafka *kafka;
    char *topic; /* NULL: all topics through filter */
    kafka_topic_filter_fn filter;
    void *filter_arg;
    kafka_lookup_fn done;
    void *opaque;
    struct kafka_consumer *anchor; /* commit end offsets for this consumer's group */
    char *forget_group;            /* forget this group's position (with forget_rk) */
    rd_kafka_t *forget_rk;         /* a consumer handle of forget_group, destroyed here */
    char *forget_subscription;     /* what forget_rk subscribes to if it must join */
    int create_partitions;         /* > 0: create the topic when it does not exist */
    bool create_compacted;         /* ... with cleanup.policy=compact */
    bool cancelled;                /* loop only */
    /* result */
    int err;
    struct kafka_topic_info *topics;
    size_t count;
    char cluster_id[128]; /* learnt with the metadata ("" if not) */
};

/* A group in kafka->forgetting (loop only): an anchor of that group waits
 * in kafka->anchors_waiting until it is gone. */
struct kafka_forget {
    struct kafka_forget *next;
    char *group_id;
};

/* ---- kafka.c: shared helpers -------------------------------------------- */

/* Open the pipe and its read event (and the `again` timer) calling fn(arg).
 * 0, or -1 with err filled. */
int kafka_wakeup_open(struct kafka_wakeup *wakeup, struct event_base *base, event_callback_fn fn,
                      void *arg, char *err, size_t err_size);
/* Close both ends and free the events; safe on a never-opened wakeup whose
 * fds are -1. */
void kafka_wakeup_close(struct kafka_wakeup *wakeup);
/* Empty the pipe; the queue itself is drained by the caller. */
void kafka_wakeup_consume(struct kafka_wakeup *wakeup);
/* A drain ran out of budget: run the handler again on the next iteration. */
void kafka_wakeup_again(struct kafka_wakeup *wakeup);

int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *name, const char *value,
                   char *err, size_t err_size);
/* Set every property of `props` (the config key `key` names them in errors).
 * A name ending in "_file" ("sasl.password_file") sets the property without
 * the suffix to the first line of that file, so secrets stay out of the
 * config file. */
int kafka_conf_apply(rd_kafka_conf_t *conf, const char *key, const struct config_properties *props,
                     char *err, size_t err_size);
/* The last value of `name` in props, or NULL. */
const char *kafka_config_property(const struct config_properties *props, const char *name);
/* A new config with the bootstrap, client id `kbridge-NODE-ROLE`, the
 * user's kafka.properties and the log callback. NULL with err filled. */
rd_kafka_conf_t *kafka_conf_base(struct kafka *kafka, const char *role, char *err, size_t err_size);

/* Run `work(arg)` on the worker pool and `done(arg, cancelled)` on the loop
 * (worker.h); counted in kafka->jobs. -1 when it cannot be queued (nothing
 * is called then). cancelled is true only when the pool is being freed. */
int kafka_submit(struct kafka *kafka, void (*work)(void *arg),
                 void (*done)(void *arg, bool cancelled), void *arg);
/* Called by every job's done: one job less. */
void kafka_job_finished(struct kafka *kafka);

/* ---- kafka_producer.c --------------------------------------------------- */

int kafka_producer_create(struct kafka *kafka, char *err, size_t err_size);
/* librdkafka's partitioner callback: a keyless record with a sticky value
 * (its opaque is a struct kafka_delivery) to its sticky partition, the rest
 * to kafka->keyed_partitioner. */
int32_t kafka_partition(const rd_kafka_topic_t *topic, const void *key, size_t key_len,
                        int32_t partition_count, void *topic_opaque, void *message_opaque);
/* Install kafka_partition on `conf`'s default topic config (and set
 * kafka->keyed_partitioner from its `partitioner`). 0, or -1 with err. */
int kafka_producer_partitioner(struct kafka *kafka, rd_kafka_conf_t *conf, char *err,
                               size_t err_size);
/* Serve every queued producer event (shutdown only: no budget). */
void kafka_producer_drain_all(struct kafka *kafka);
/* Purge what is left, serve the purged reports, destroy the producer. */
void kafka_producer_destroy(struct kafka *kafka);

/* ---- kafka_transaction.c ------------------------------------------------ */

/* Shutdown (after worker_pool_free): destroy the pooled transactional
 * producers (an open Kafka transaction is aborted by the broker when it
 * times out, or fenced by the next start's init_transactions); the begins
 * still waiting are answered with __DESTROY (their owners free what they
 * kept). */
void kafka_txn_pool_free(struct kafka *kafka);

/* linger.ms of the producer unless kafka.producer or kafka.properties set it
 * (or its alias queue.buffering.max.ms): librdkafka's default, 5 ms, is added
 * to every hop of a message nobody batches with (a request, a confirmed
 * publish); under load records still batch while produce requests are in
 * flight. Measured (architecture §4 "Producer linger"): 1 ms doubles
 * confirmed publishing with 1,000 in flight and request-reply with 100 in
 * flight, and costs about 20% of unconfirmed (fire-and-forget) publishing;
 * 0 ms costs that 36% and helps confirmed publishing less. */
#define KAFKA_PRODUCER_LINGER_MS "1"

/* ---- kafka_probe.c ------------------------------------------------------ */

/* fetch.wait.max.ms of every consumer unless kafka.consumer sets it: a real
 * broker answers a waiting fetch as soon as data arrives, so this only
 * bounds empty fetches while idle (10 requests a second per consumer and
 * broker) and how long a resumed partition waits for the fetch in flight;
 * librdkafka's mock cluster holds an empty fetch for all of it, so there
 * it is the latency of every hop and is short (architecture §9). */
#define KAFKA_FETCH_WAIT_MAX_MS "100"
#define KAFKA_FETCH_WAIT_MAX_MS_MOCK "5"
/* Is this cluster id librdkafka's mock cluster's ("mockCluster..."): the
 * embedded broker or kbridge-devkafka? */
bool kafka_cluster_is_mock(const char *cluster_id);

/* Submit the first probe; later ones follow on a timer. */
void kafka_probe_start(struct kafka *kafka);
/* No more probes; frees the timer (a job still on the pool reports to
 * nobody). */
void kafka_probe_stop(struct kafka *kafka);
/* Recompute kafka->ready from the probe's answer and kafka->fatal. */
void kafka_update_ready(struct kafka *kafka);
/* The cluster id the handle's last metadata answer carried, into out ("" if
 * none yet); never waits. Worker threads call it after a metadata request. */
void kafka_cluster_id_cached(rd_kafka_t *rk, char *out, size_t out_size);
/* Keep the cluster id the probe or a lookup learnt (copied) and whether it names
 * librdkafka's mock cluster (late_fetch_answers); logs it. */
void kafka_set_cluster_id(struct kafka *kafka, const char *cluster_id);

/* ---- kafka_lookup.c ----------------------------------------------------- */

/* A lookup of `topic`, or of the topics `filter` takes, not started yet.
 * NULL on allocation failure. */
struct kafka_lookup *kafka_lookup_prepare(struct kafka *kafka, const char *topic,
                                          kafka_topic_filter_fn filter, const void *filter_arg,
                                          size_t filter_arg_size);
/* Start a prepared lookup on the pool. -1 when it cannot be queued: the
 * caller still owns it. */
int kafka_lookup_run(struct kafka_lookup *lookup);
void kafka_lookup_free(struct kafka_lookup *lookup);
/* Shutdown: free the anchors still waiting for a forget (nobody is told). */
void kafka_lookups_free_waiting(struct kafka *kafka);
/* A forget of `group_id` will not run (or has finished): anchors waiting
 * for it start. */
void kafka_forgetting_remove(struct kafka *kafka, const char *group_id);

/* ---- kafka_consumer.c --------------------------------------------------- */

/* Shutdown: close every consumer synchronously (commits stored offsets). */
void kafka_consumers_close_all(struct kafka *kafka);

#endif
