/* SPDX-License-Identifier: Apache-2.0 */
/* definitions_store.h -- the node's copy of RabbitMQ's model and its link to
 * Kafka (architecture §11): it owns the node's `struct definitions`, reads
 * the definitions topic (config `definitions.topic`: one partition,
 * compacted) from the beginning with a group-less consumer and follows it,
 * and writes records through the node's idempotent producer.
 *
 * Readiness: the store is not ready until it has applied every record up to
 * the end offset it saw at start, and its owner's start-up work (see
 * definitions_store_set_startup) is done. Writes: a write (one or more
 * records) completes only when Kafka confirmed every record **and** this
 * node's reader has applied the last of them (read-your-writes): pending
 * writes wait in offset order (struct definitions_pending). A record the
 * reader cannot read is logged and skipped; it never stops the node.
 *
 * Everything runs on the loop thread. Ownership: the store owns the view,
 * its consumer, its pending writes and its watchers list; callers own what
 * they pass (records are copied by Kafka when produced). */
#ifndef KBRIDGE_DEFINITIONS_STORE_H
#define KBRIDGE_DEFINITIONS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "definitions.h"
#include "definitions_record.h"

struct config;
struct event_base;
struct kafka;
struct metrics;
struct definitions_store;
struct definitions_write;

/* ---- pending writes in offset order (pure, unit-tested) ------------------- */

/* A write waiting for the reader: `offset` is the last offset it wrote. */
struct definitions_pending {
    struct definitions_pending *next;
    int64_t offset;
};

/* Insert `item` into the list at *head, kept in ascending offset order
 * (after others of the same offset). */
void definitions_pending_insert(struct definitions_pending **head,
                                struct definitions_pending *item);
/* Detach and return (in order) every item whose offset is <= `applied`;
 * NULL when none. */
struct definitions_pending *definitions_pending_take(struct definitions_pending **head,
                                                     int64_t applied);

/* ---- the store ------------------------------------------------------------- */

/* What one applied record changed, for watchers. Strings valid during the
 * call only. */
struct definitions_change {
    enum definitions_record_kind kind;
    bool removed; /* a tombstone: the entity (with its bindings) is gone */
    const char *vhost;
    const char *name; /* exchange or queue; a binding's source exchange */
    /* bindings only */
    enum binding_destination destination_kind;
    const char *destination;
    const char *routing_key;
    int64_t offset; /* in the definitions topic */
};
/* A purge (kind DEFINITIONS_RECORD_PURGE) is applied to the view first: its
 * offsets are the queue's definitions_queue(...)->purge_offsets. */

/* Called on the loop after each applied change (the view already shows it). */
typedef void definitions_watch_fn(void *opaque, const struct definitions_change *change);

/* Create the store and start reading the definitions topic (looked up, and
 * created with one partition where the broker allows, on the worker pool;
 * retried every second while Kafka cannot answer). `config` is the server's
 * current-config pointer; the configured vhosts are made known. NULL with
 * err on failure. Free with definitions_store_free. */
struct definitions_store *definitions_store_new(struct event_base *base,
                                                struct config *const *config, struct kafka *kafka,
                                                struct metrics *metrics, char *err,
                                                size_t err_size);
/* Close the reader; pending writes are dropped (their callbacks are not
 * called). NULL is fine. */
void definitions_store_free(struct definitions_store *store);

/* The node's view (owned by the store, changed only by applying records). */
const struct definitions *definitions_store_view(const struct definitions_store *store);
/* Caught up with the topic and start-up work done? */
bool definitions_store_ready(const struct definitions_store *store);
/* Why not (empty when ready). Owned by the store. */
const char *definitions_store_not_ready_reason(const struct definitions_store *store);

/* Called once, on the loop, when the reader has caught up at start, before
 * the store is ready: the owner's start-up work (removing its previous
 * incarnation's exclusive queues, loading definitions.file). The store
 * becomes ready when the owner calls definitions_store_startup_done. Without
 * a hook the store is ready as soon as it caught up. */
typedef void definitions_startup_fn(void *opaque);
void definitions_store_set_startup(struct definitions_store *store, definitions_startup_fn *fn,
                                   void *opaque);
void definitions_store_startup_done(struct definitions_store *store);

/* Call `fn` after every applied change. 0, or -1 out of memory. */
int definitions_store_watch(struct definitions_store *store, definitions_watch_fn *fn,
                            void *opaque);
/* Stop calling `fn` with `opaque`. */
void definitions_store_unwatch(struct definitions_store *store, definitions_watch_fn *fn,
                               void *opaque);

/* One record of a write: `value` NULL is a tombstone (a delete). */
struct definitions_store_record {
    const char *key;
    const char *value;
};

/* The outcome of a write, on the loop: kafka_err 0 (KAFKA_OK) once every
 * record is confirmed by Kafka and applied by this node's reader, else
 * Kafka's error code and its text. */
typedef void definitions_write_fn(void *opaque, int kafka_err, const char *reason);

/* Write `count` records, in order, to the definitions topic. A handle, and
 * `done` (may be NULL) is called exactly once later, never inside this call,
 * unless cancelled; NULL with *kafka_err set when nothing could be queued
 * (then `done` is never called). When a later record cannot be queued, the
 * ones before it are already on their way: `done` reports the error. */
struct definitions_write *definitions_store_write(struct definitions_store *store,
                                                  const struct definitions_store_record *records,
                                                  size_t count, definitions_write_fn *done,
                                                  void *opaque, int *kafka_err);
/* `done` will not be called (the records may still be written and applied). */
void definitions_store_write_cancel(struct definitions_write *write);

/* ---- definitions.file --------------------------------------------------------- */

/* Read a whole definitions file: malloc'd text (NUL-terminated, *len bytes),
 * or NULL with err ("cannot open: No such file or directory"). */
char *definitions_file_read(const char *path, size_t *len, char *err, size_t err_size);

/* Check a RabbitMQ definitions export as `kbridged --check-config` does:
 * JSON and entries readable, every exchange and queue declarable (names,
 * types, arguments; declared twice only alike), no exclusive queue, every
 * binding's exchange and queue in the file or built in (an export is
 * self-contained). 0, or -1 with err "PATH: exchanges[2]: reason". Vhosts
 * not in config's `vhosts` are allowed (skipped at start, with a warning). */
int definitions_file_check(const char *path, char *err, size_t err_size);

#endif
