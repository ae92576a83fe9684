/* SPDX-License-Identifier: Apache-2.0 */
/* kafka_dlq.h -- reading a dead-letter topic through its own consumer group
 * (architecture §9 "Dead letters"): peek (read without moving anything),
 * redrive (re-publish, confirmed, then commit the DLQ group past them) and
 * discard (commit past them only).
 *
 * The group (kbridge.dlq.QUEUE, chosen by the caller) is never joined: its
 * committed offsets are where the dead letters not yet redriven or discarded
 * start, and only these operations move them. An operation runs as worker
 * jobs of at most `batch` records each (kafka_submit, like kafka_group.c):
 * every job reads the group's committed offsets again, so a crash mid-way
 * loses nothing (a batch whose produces were confirmed but not committed is
 * redriven again: at-least-once). Between batches the owner decides when
 * the next one starts (kafka_dlq_next), so memory stays bounded by one
 * batch and the pool is never held for long.
 *
 * Ownership: the caller owns a struct kafka_dlq from kafka_dlq_start until
 * kafka_dlq_free; everything passed in is copied. */
#ifndef KBRIDGE_KAFKA_DLQ_H
#define KBRIDGE_KAFKA_DLQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kafka.h"

enum kafka_dlq_action {
    KAFKA_DLQ_PEEK,
    KAFKA_DLQ_REDRIVE,
    KAFKA_DLQ_DISCARD,
};

struct kafka_dlq_spec {
    enum kafka_dlq_action action;
    const char *group_id; /* the DLQ's own group */
    const char *topic;    /* the dead-letter topic */
    uint64_t count;       /* 0: every record there when the operation starts */
    /* redrive: every record to this topic; NULL: to its
     * kbridge-dlq-original-topic when that is one of `allowed`, else to
     * `fallback` */
    const char *destination;
    char *const *allowed;
    size_t allowed_count;
    const char *fallback;
    size_t batch; /* redrive: records per job (>= 1) */
};

/* One record read by a peek; valid during the callback only. */
struct kafka_dlq_record {
    int32_t partition;
    int64_t offset;
    int64_t timestamp; /* ms since the epoch, -1 when unknown */
    const void *key;   /* NULL: none */
    size_t key_len;
    const void *value; /* NULL: none */
    size_t value_len;
    const struct kafka_header *headers;
    size_t header_count;
};

/* Totals so far (redrive/discard: summed over every batch). */
struct kafka_dlq_progress {
    uint64_t records;       /* redriven, discarded or peeked */
    uint64_t depth_before;  /* what the group had not consumed at the start */
    uint64_t to_original;   /* redrive: records sent to their original topic */
    uint64_t to_fallback;   /* redrive, default destination: to `fallback` */
    uint64_t batch_records; /* redriven by the batch just finished */
    const struct kafka_dlq_record *peeked;
    size_t peeked_count;
};

/* On the loop after every batch: err 0 with `finished` when nothing is left
 * to do (then call kafka_dlq_free), not finished: call kafka_dlq_next when
 * the next batch may run (or kafka_dlq_free to stop). err != 0: the
 * operation stopped with `reason` (finished is true); what earlier batches
 * committed stays committed. At shutdown (the pool is freed) err is set
 * and the owner must only free. */
typedef void (*kafka_dlq_fn)(void *opaque, int err, const char *reason,
                             const struct kafka_dlq_progress *progress, bool finished);

struct kafka_dlq;

/* Start an operation: its first batch is submitted now. NULL when it cannot
 * be (out of memory, the pool refuses, a librdkafka config error: `err`). */
struct kafka_dlq *kafka_dlq_start(struct kafka *kafka, const struct kafka_dlq_spec *spec,
                                  kafka_dlq_fn done, void *opaque, char *err, size_t err_size);
/* Submit the next batch (after a callback with finished false). -1 when it
 * cannot be queued (the callback is not called then). */
int kafka_dlq_next(struct kafka_dlq *dlq);
/* Free it (loop only; never while a batch runs, i.e. only from or after a
 * callback). NULL is fine. */
void kafka_dlq_free(struct kafka_dlq *dlq);

/* The name a redriven record's header `name` (a dead letter's) gets:
 * kbridge-dlq-reason -> kbridge-redrive-reason and so on (record.h's
 * RECORD_REDRIVE_*), NULL when the header is dropped (kbridge-delivery-count,
 * other kbridge-dlq-*, an earlier redrive's kbridge-redrive-*), `name`
 * itself when it is kept as it is.
 * Pure; the unit tests use it. */
const char *kafka_redrive_header_name(const char *name);

#endif
