/* SPDX-License-Identifier: Apache-2.0 */
/* kafka_transaction.c -- the pool of transactional producers (kafka.h
 * "transactions", architecture §8): lending a producer to one client
 * transaction, and the blocking transaction calls as worker jobs.
 *
 * Producer N (0 <= N < transactions.producers) has transactional.id
 * "kbridge.NODE.N"; it is made on its first use, in a job that creates the
 * handle and runs init_transactions (which also fences and aborts what an
 * earlier run of this node left open under that id). A begin takes a free
 * producer (or waits in kafka->txn_waiting, in order) and runs
 * begin_transaction in a job; the owner produces on the loop
 * (kafka_txn_produce: rd_kafka_producev does not block); commit and abort
 * are jobs again. A commit that fails is aborted in the same job; an error
 * librdkafka calls fatal (fenced, or a state it cannot leave) destroys the
 * handle in the job, so the next use makes it afresh.
 *
 * With transactions.exactly_once the owner also adds consumer-group offsets
 * (kafka_txn_add_offset, on the loop: the group metadata is taken from the
 * consumer there); the commit job sends them per group with
 * send_offsets_to_transaction before commit_transaction.
 *
 * The producer's delivery reports go to a callback that does nothing
 * (kafka_txn_on_delivery): commit_transaction flushes and fails when any
 * record was not stored, which is the one answer the owner needs. The
 * callback is there for the flush's sake: librdkafka 2.0's flush polls the
 * report queue in steps of 10 ms and, with no reports at all (DR mode
 * "none"), each step waits out its 10 ms even when every record is stored,
 * which put a 10 ms floor under every commit. Each
 * record's struct kafka_delivery (the sticky partition kafka_partition
 * reads, possibly later on a librdkafka thread) is kept on the producer
 * until its transaction ends.
 *
 * Owns: the pool (kafka->txns), the waiting begins, each producer's
 * handle and its records' partitioner state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kafka_internal.h"
#include "log.h"

enum kafka_txn_op {
    KAFKA_TXN_BEGIN,
    KAFKA_TXN_COMMIT,
    KAFKA_TXN_ABORT,
};

struct kafka_txn {
    struct kafka *kafka;
    unsigned index;
    char id[300];          /* transactional.id */
    rd_kafka_t *rk;        /* NULL until its first begin job made it (or after a fatal error) */
    rd_kafka_conf_t *conf; /* built on the loop for the job that makes rk */
    bool lent;             /* to a transaction (begin asked .. commit/abort answered) */
    bool running;          /* a job of it is on the pool */
    /* the job's input */
    enum kafka_txn_op op;
    int timeout_ms;
    kafka_txn_begin_fn begin_done;
    kafka_txn_end_fn end_done;
    void *opaque;
    /* the job's output */
    int err;
    char reason[512];
    /* exactly-once: per consumer group, the offsets to commit with it */
    struct kafka_txn_group *groups;
    size_t group_count;
    /* partitioner state of the records of the open transaction */
    struct kafka_delivery **records;
    size_t record_count;
    size_t record_cap;
};

struct kafka_txn_group {
    const struct kafka_consumer *consumer; /* identity only: never used in the job */
    rd_kafka_consumer_group_metadata_t *metadata;
    rd_kafka_topic_partition_list_t *offsets;
};

struct kafka_txn_wait {
    struct kafka_txn_wait *next;
    kafka_txn_begin_fn done;
    void *opaque;
};

const char *kafka_txn_id(const struct kafka_txn *txn) { return txn->id; }

static void kafka_txn_groups_free(struct kafka_txn *txn)
{
    for (size_t i = 0; i < txn->group_count; i++) {
        rd_kafka_consumer_group_metadata_destroy(txn->groups[i].metadata);
        rd_kafka_topic_partition_list_destroy(txn->groups[i].offsets);
    }
    free(txn->groups);
    txn->groups = NULL;
    txn->group_count = 0;
}

int kafka_txn_add_offset(struct kafka_txn *txn, struct kafka_consumer *consumer, const char *topic,
                         int32_t partition, int64_t next_offset)
{
    struct kafka_txn_group *group = NULL;
    for (size_t i = 0; i < txn->group_count && !group; i++)
        if (txn->groups[i].consumer == consumer)
            group = &txn->groups[i];
    if (!group) {
        struct kafka_txn_group *grown =
            realloc(txn->groups, (txn->group_count + 1) * sizeof(*txn->groups));
        if (!grown)
            return -1;
        txn->groups = grown;
        rd_kafka_consumer_group_metadata_t *metadata =
            rd_kafka_consumer_group_metadata(consumer->rk);
        if (!metadata)
            return -1;
        group = &txn->groups[txn->group_count++];
        *group = (struct kafka_txn_group){
            .consumer = consumer,
            .metadata = metadata,
            .offsets = rd_kafka_topic_partition_list_new(4),
        };
    }
    rd_kafka_topic_partition_t *entry =
        rd_kafka_topic_partition_list_find(group->offsets, topic, partition);
    if (!entry)
        entry = rd_kafka_topic_partition_list_add(group->offsets, topic, partition);
    if (next_offset > entry->offset)
        entry->offset = next_offset;
    return KAFKA_OK;
}

static void kafka_txn_records_free(struct kafka_txn *txn)
{
    for (size_t i = 0; i < txn->record_count; i++)
        free(txn->records[i]);
    free(txn->records);
    txn->records = NULL;
    txn->record_count = txn->record_cap = 0;
}

/* Keep the error of a librdkafka transaction call; true when there was one.
 * A fatal one destroys the handle (in the job: rd_kafka_destroy blocks). */
static bool kafka_txn_failed(struct kafka_txn *txn, rd_kafka_error_t *error, const char *call)
{
    if (!error)
        return false;
    txn->err = (int)rd_kafka_error_code(error);
    if (txn->err == 0)
        txn->err = RD_KAFKA_RESP_ERR__FAIL;
    snprintf(txn->reason, sizeof(txn->reason), "%s: %s", call, rd_kafka_error_string(error));
    if (rd_kafka_error_is_fatal(error) && txn->rk) {
        rd_kafka_destroy(txn->rk);
        txn->rk = NULL;
    }
    rd_kafka_error_destroy(error);
    return true;
}

/* The job, before commit_transaction: every group's offsets into the
 * transaction. false (with txn->err) when one was refused. */
static bool kafka_txn_send_offsets(struct kafka_txn *txn)
{
    for (size_t i = 0; i < txn->group_count; i++) {
        rd_kafka_error_t *error = rd_kafka_send_offsets_to_transaction(
            txn->rk, txn->groups[i].offsets, txn->groups[i].metadata, txn->timeout_ms);
        if (error && rd_kafka_error_is_retriable(error)) {
            rd_kafka_error_destroy(error); /* retried with the same offsets, as librdkafka asks */
            error = rd_kafka_send_offsets_to_transaction(txn->rk, txn->groups[i].offsets,
                                                         txn->groups[i].metadata, txn->timeout_ms);
        }
        if (kafka_txn_failed(txn, error, "send_offsets_to_transaction"))
            return false;
    }
    return true;
}

/* Worker thread: only `txn` (and its thread-safe handle) is touched. */
static void kafka_txn_work(void *arg)
{
    struct kafka_txn *txn = arg;
    txn->err = 0;
    txn->reason[0] = '\0';
    switch (txn->op) {
    case KAFKA_TXN_BEGIN:
        if (!txn->rk) {
            char why[400];
            txn->rk = rd_kafka_new(RD_KAFKA_PRODUCER, txn->conf, why, sizeof(why));
            if (!txn->rk) {
                rd_kafka_conf_destroy(txn->conf);
                txn->conf = NULL;
                txn->err = RD_KAFKA_RESP_ERR__FAIL;
                snprintf(txn->reason, sizeof(txn->reason), "cannot create producer: %s", why);
                return;
            }
            txn->conf = NULL; /* the handle owns it now */
            if (kafka_txn_failed(txn, rd_kafka_init_transactions(txn->rk, txn->timeout_ms),
                                 "init_transactions")) {
                if (txn->rk) { /* not initialised: start afresh next time */
                    rd_kafka_destroy(txn->rk);
                    txn->rk = NULL;
                }
                return;
            }
        }
        kafka_txn_failed(txn, rd_kafka_begin_transaction(txn->rk), "begin_transaction");
        return;
    case KAFKA_TXN_COMMIT: {
        if (kafka_txn_send_offsets(txn)) {
            rd_kafka_error_t *error = rd_kafka_commit_transaction(txn->rk, txn->timeout_ms);
            if (error && rd_kafka_error_is_retriable(error)) {
                rd_kafka_error_destroy(error); /* librdkafka: a retriable commit may be retried */
                error = rd_kafka_commit_transaction(txn->rk, txn->timeout_ms);
            }
            if (!kafka_txn_failed(txn, error, "commit_transaction"))
                return;
        }
        if (!txn->rk)
            return;
        /* Not committed: abort, so nothing of it is ever visible to
         * read_committed readers and the producer can be used again. */
        rd_kafka_error_t *abort_error = rd_kafka_abort_transaction(txn->rk, txn->timeout_ms);
        if (abort_error) {
            log_warn("kafka",
                     "%s: abort after a failed commit failed too: %s; the producer is "
                     "made afresh on its next use",
                     txn->id, rd_kafka_error_string(abort_error));
            rd_kafka_error_destroy(abort_error);
            rd_kafka_destroy(txn->rk);
            txn->rk = NULL;
        }
        return;
    }
    case KAFKA_TXN_ABORT:
        if (kafka_txn_failed(txn, rd_kafka_abort_transaction(txn->rk, txn->timeout_ms),
                             "abort_transaction") &&
            txn->rk) {
            rd_kafka_destroy(txn->rk); /* in an unknown state: start afresh */
            txn->rk = NULL;
        }
        return;
    }
}

static int kafka_txn_submit(struct kafka_txn *txn);

/* Give the producer back; the next waiting begin takes it. */
static void kafka_txn_release(struct kafka_txn *txn)
{
    struct kafka *kafka = txn->kafka;
    kafka_txn_records_free(txn);
    kafka_txn_groups_free(txn);
    txn->lent = false;
    struct kafka_txn_wait *wait = kafka->txn_waiting;
    if (!wait)
        return;
    kafka->txn_waiting = wait->next;
    if (!kafka->txn_waiting)
        kafka->txn_waiting_tail = NULL;
    txn->lent = true;
    txn->op = KAFKA_TXN_BEGIN;
    txn->begin_done = wait->done;
    txn->opaque = wait->opaque;
    free(wait);
    if (kafka_txn_submit(txn) < 0) {
        txn->lent = false;
        txn->begin_done(txn->opaque, RD_KAFKA_RESP_ERR__FAIL, "cannot start a worker job", NULL);
    }
}

/* The loop: a job of `txn` is done. */
static void kafka_txn_job_done(void *arg, bool cancelled)
{
    struct kafka_txn *txn = arg;
    struct kafka *kafka = txn->kafka;
    kafka_job_finished(kafka);
    txn->running = false;
    if (cancelled && txn->err == 0) {
        txn->err = RD_KAFKA_RESP_ERR__DESTROY;
        snprintf(txn->reason, sizeof(txn->reason), "kbridged is shutting down");
    }
    if (txn->op == KAFKA_TXN_BEGIN) {
        if (txn->err) {
            log_warn("kafka", "%s: %s", txn->id, txn->reason);
            kafka_txn_begin_fn done = txn->begin_done;
            void *opaque = txn->opaque;
            char reason[512];
            snprintf(reason, sizeof(reason), "%s", txn->reason);
            int err = txn->err;
            kafka_txn_release(txn);
            done(opaque, err, reason, NULL);
            return;
        }
        txn->begin_done(txn->opaque, KAFKA_OK, "", txn);
        return;
    }
    if (txn->err)
        log_warn("kafka", "%s: %s", txn->id, txn->reason);
    kafka_txn_end_fn done = txn->end_done;
    void *opaque = txn->opaque;
    char reason[512];
    snprintf(reason, sizeof(reason), "%s", txn->reason);
    int err = txn->err;
    kafka_txn_release(txn);
    done(opaque, err, reason);
}

/* A transactional record's delivery report: nothing to do (commit_transaction
 * reports the outcome), but its arrival ends the flush's wait at once. */
static void kafka_txn_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque)
{
    (void)rk;
    (void)message;
    (void)opaque;
}

/* Submit txn's job (txn->op set); builds the producer's config first when
 * it has no handle. 0, or -1 (nothing runs). */
static int kafka_txn_submit(struct kafka_txn *txn)
{
    struct kafka *kafka = txn->kafka;
    const struct config *config = kafka->config;
    txn->timeout_ms = (int)config->transactions.call_timeout_ms;
    if (txn->op == KAFKA_TXN_BEGIN && !txn->rk && !txn->conf) {
        char err[512];
        rd_kafka_conf_t *conf = kafka_conf_base(kafka, "txn", err, sizeof(err));
        if (!conf) {
            log_error("kafka", "%s: %s", txn->id, err);
            return -1;
        }
        if (kafka_conf_apply(conf, "kafka.producer", &config->kafka.producer, err, sizeof(err)) <
                0 ||
            kafka_conf_set(conf, "kafka.producer", "enable.idempotence", "true", err, sizeof(err)) <
                0 ||
            kafka_conf_set(conf, "kafka.producer", "acks", "all", err, sizeof(err)) < 0 ||
            kafka_conf_set(conf, "kafka.producer", "transactional.id", txn->id, err, sizeof(err)) <
                0 ||
            kafka_producer_partitioner(kafka, conf, err, sizeof(err)) < 0) {
            log_error("kafka", "%s: %s", txn->id, err);
            rd_kafka_conf_destroy(conf);
            return -1;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, kafka_txn_on_delivery);
        txn->conf = conf;
    }
    if (kafka_submit(kafka, kafka_txn_work, kafka_txn_job_done, txn) < 0)
        return -1;
    txn->running = true;
    return 0;
}

/* Make the pool on first use. 0, or -1 out of memory. */
static int kafka_txn_pool_open(struct kafka *kafka)
{
    if (kafka->txns)
        return 0;
    unsigned count =
        kafka->config->transactions.producers ? kafka->config->transactions.producers : 1;
    kafka->txns = calloc(count, sizeof(*kafka->txns));
    if (!kafka->txns)
        return -1;
    kafka->txn_count = count;
    for (unsigned i = 0; i < count; i++) {
        kafka->txns[i].kafka = kafka;
        kafka->txns[i].index = i;
        snprintf(kafka->txns[i].id, sizeof(kafka->txns[i].id), "kbridge.%s.%u",
                 kafka->config->node_id, i);
    }
    return 0;
}

int kafka_txn_begin(struct kafka *kafka, kafka_txn_begin_fn done, void *opaque)
{
    if (kafka_txn_pool_open(kafka) < 0)
        return -1;
    struct kafka_txn *txn = NULL;
    /* a producer already made first: no init_transactions to wait for */
    for (unsigned i = 0; i < kafka->txn_count && !txn; i++)
        if (!kafka->txns[i].lent && kafka->txns[i].rk)
            txn = &kafka->txns[i];
    for (unsigned i = 0; i < kafka->txn_count && !txn; i++)
        if (!kafka->txns[i].lent)
            txn = &kafka->txns[i];
    if (!txn) {
        struct kafka_txn_wait *wait = calloc(1, sizeof(*wait));
        if (!wait)
            return -1;
        wait->done = done;
        wait->opaque = opaque;
        if (kafka->txn_waiting_tail)
            kafka->txn_waiting_tail->next = wait;
        else
            kafka->txn_waiting = wait;
        kafka->txn_waiting_tail = wait;
        return 0;
    }
    txn->lent = true;
    txn->op = KAFKA_TXN_BEGIN;
    txn->begin_done = done;
    txn->opaque = opaque;
    if (kafka_txn_submit(txn) < 0) {
        txn->lent = false;
        return -1;
    }
    return 0;
}

int kafka_txn_produce(struct kafka_txn *txn, const char *topic, uint32_t sticky, const void *key,
                      size_t key_len, const void *value, size_t value_len,
                      const struct kafka_header *headers, size_t header_count)
{
    if (!txn->rk || txn->running)
        return RD_KAFKA_RESP_ERR__STATE;
    if (txn->record_count == txn->record_cap) {
        size_t cap = txn->record_cap ? txn->record_cap * 2 : 64;
        struct kafka_delivery **records = realloc(txn->records, cap * sizeof(*records));
        if (!records)
            return RD_KAFKA_RESP_ERR__FAIL;
        txn->records = records;
        txn->record_cap = cap;
    }
    struct kafka_delivery *delivery = calloc(1, sizeof(*delivery));
    if (!delivery)
        return RD_KAFKA_RESP_ERR__FAIL;
    delivery->sticky = sticky;
    int err = kafka_produce_on(txn->rk, topic, RD_KAFKA_PARTITION_UA, key, key_len, value,
                               value_len, headers, header_count, delivery);
    if (err) {
        free(delivery);
        return err;
    }
    txn->records[txn->record_count++] = delivery;
    (*txn->kafka->produced)++;
    return KAFKA_OK;
}

static int kafka_txn_end(struct kafka_txn *txn, enum kafka_txn_op op, kafka_txn_end_fn done,
                         void *opaque)
{
    txn->op = op;
    txn->end_done = done;
    txn->opaque = opaque;
    if (!txn->rk || kafka_txn_submit(txn) < 0) {
        /* Only when the pool is gone (shutdown) or out of memory: the
         * producer stays lent, its transaction is left to
         * transaction.timeout.ms (or to the next init_transactions under its
         * id), and kafka_txn_pool_free destroys it. */
        log_error("kafka", "%s: cannot run %s; the producer is out of the pool until restart",
                  txn->id, op == KAFKA_TXN_COMMIT ? "commit_transaction" : "abort_transaction");
        return -1;
    }
    return 0;
}

int kafka_txn_commit(struct kafka_txn *txn, kafka_txn_end_fn done, void *opaque)
{
    return kafka_txn_end(txn, KAFKA_TXN_COMMIT, done, opaque);
}

int kafka_txn_abort(struct kafka_txn *txn, kafka_txn_end_fn done, void *opaque)
{
    return kafka_txn_end(txn, KAFKA_TXN_ABORT, done, opaque);
}

void kafka_txn_pool_free(struct kafka *kafka)
{
    while (kafka->txn_waiting) {
        struct kafka_txn_wait *wait = kafka->txn_waiting;
        kafka->txn_waiting = wait->next;
        /* the owner frees what it kept for the answer */
        wait->done(wait->opaque, RD_KAFKA_RESP_ERR__DESTROY, "kbridged is shutting down", NULL);
        free(wait);
    }
    kafka->txn_waiting_tail = NULL;
    for (unsigned i = 0; i < kafka->txn_count; i++) {
        struct kafka_txn *txn = &kafka->txns[i];
        if (txn->rk) {
            rd_kafka_purge(txn->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_destroy(txn->rk);
        }
        if (txn->conf)
            rd_kafka_conf_destroy(txn->conf);
        kafka_txn_records_free(txn);
        kafka_txn_groups_free(txn);
    }
    free(kafka->txns);
    kafka->txns = NULL;
    kafka->txn_count = 0;
}
