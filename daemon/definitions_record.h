/* SPDX-License-Identifier: Apache-2.0 */
/* definitions_record.h -- the records of the definitions topic and RabbitMQ's
 * definitions export (architecture §11).
 *
 * A record's key names what it defines: "exchange/VHOST/NAME",
 * "queue/VHOST/NAME" or "binding/VHOST/SOURCE/q|e/DESTINATION/KEY/ARGS",
 * each component percent-encoded ('%' and '/'), ARGS a digest of the
 * binding's arguments ("-" without any), so that compaction keeps the
 * latest record per entity and a tombstone (null value) deletes it. The
 * value is JSON in the shape of a RabbitMQ definitions export entry
 * ({"name", "vhost", "type", "durable", ...}), plus kbridge's "exclusive"
 * and "owner" for queues, so one decoder reads both the topic and an export.
 *
 * Ownership: encoders return malloc'd strings the caller frees; specs
 * decoded from JSON borrow from the json_t they came from. */
#ifndef KBRIDGE_DEFINITIONS_RECORD_H
#define KBRIDGE_DEFINITIONS_RECORD_H

#include <jansson.h>
#include <stddef.h>

#include "definitions.h"

/* The record key and JSON value of a declare, a queue and a binding.
 * 0 with *key and *value malloc'd (NUL-terminated), or -1 out of memory. */
int definitions_record_exchange(const struct exchange_spec *spec, char **key, char **value);
int definitions_record_queue(const struct queue_spec *spec, char **key, char **value);
int definitions_record_binding(const struct binding_spec *spec, char **key, char **value);

/* The key alone (malloc'd; NULL out of memory): what a delete's tombstone
 * carries. */
char *definitions_record_exchange_key(const char *vhost, const char *name);
char *definitions_record_queue_key(const char *vhost, const char *name);
char *definitions_record_binding_key(const struct binding_spec *spec);
/* A purge of queue NAME: key "purge/VHOST/NAME", value {"vhost", "name",
 * "offsets": [{"topic", "partition", "offset"}]} with `offsets` (borrowed),
 * the end offsets its group skips to. 0, or -1 out of memory. */
int definitions_record_purge(const char *vhost, const char *name, const json_t *offsets, char **key,
                             char **value);

/* What a record key names, decoded (for watchers and logs). */
enum definitions_record_kind {
    DEFINITIONS_RECORD_EXCHANGE,
    DEFINITIONS_RECORD_QUEUE,
    DEFINITIONS_RECORD_BINDING,
    DEFINITIONS_RECORD_PURGE, /* "purge/VHOST/NAME": a queue's purge (architecture §11) */
};
struct definitions_record_key {
    enum definitions_record_kind kind;
    const char *vhost;
    const char *name; /* the exchange or queue; a binding's source exchange */
    /* bindings only */
    enum binding_destination destination_kind;
    const char *destination;
    const char *routing_key;
    char *parts[7]; /* owned: the decoded components the pointers above point into */
    int count;
};
/* 0 with *out filled (free with definitions_record_key_free); -1 when the
 * key is not of a known form; -2 out of memory. */
int definitions_record_key_parse(const char *key, size_t key_len,
                                 struct definitions_record_key *out);
void definitions_record_key_free(struct definitions_record_key *key);

/* Apply one record of the definitions topic to `definitions`: a value
 * declares (or replaces), a NULL value (tombstone) deletes what the key
 * names. 0 applied; -1 with err when the record is not one kbridge can read
 * (the reader logs and skips it: a bad record must not stop a node); -2 out
 * of memory. */
int definitions_record_apply(struct definitions *definitions, const char *key, size_t key_len,
                             const char *value, size_t value_len, char *err, size_t err_size);

/* What an export holds, entity by entity, in the order they must be applied
 * (vhosts, exchanges, queues, bindings). Each callback returns 0 to go on or
 * -1 to stop the import (its error is the caller's). Users and permissions
 * are counted, never imported here. */
struct definitions_import {
    int (*vhost)(const char *vhost, void *opaque);
    int (*exchange)(const struct exchange_spec *spec, void *opaque);
    int (*queue)(const struct queue_spec *spec, void *opaque);
    int (*binding)(const struct binding_spec *spec, void *opaque);
    void *opaque;
    size_t users, permissions; /* out: how many the export holds */
};

/* Read a RabbitMQ definitions export (`rabbitmqctl export_definitions`,
 * GET /api/definitions) and call `import`'s callbacks. 0 ok; -1 with err
 * ("exchanges[3]: type 'x-delayed-message' is not supported") when the
 * JSON or an entry is not valid or a callback stopped. */
int definitions_import_json(const char *text, size_t len, struct definitions_import *import,
                            char *err, size_t err_size);

#endif
