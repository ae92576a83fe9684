/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_adapter.h -- the AMQP 1.0 adapter's shared state (private to
 * adapters/amqp/): the adapter base (connection list, deferred free, drain:
 * connection.h), metrics, the table from core errors to AMQP conditions and
 * the scratch message and buffer used to encode and decode transfers. The
 * server sees only amqp_adapter_ops (adapter.h); everything here runs on the
 * loop thread. */
#ifndef KBRIDGE_AMQP_ADAPTER_H
#define KBRIDGE_AMQP_ADAPTER_H

#include <proton/message.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connection.h"

struct config;
struct event;
struct amqp_connection;
struct amqp_shovel;

/* Kinds of errors, the label of kbridge_amqp_errors_total{kind="..."}. Every
 * error condition kbridge sends (on a connection, link or rejected delivery)
 * is counted under exactly one. */
enum amqp_error_kind {
    AMQP_KIND_DECODE,      /* amqp:decode-error, framing errors */
    AMQP_KIND_AUTH,        /* SASL refused */
    AMQP_KIND_ACL,         /* amqp:unauthorized-access */
    AMQP_KIND_ADDRESS,     /* amqp:not-found: an illegal address */
    AMQP_KIND_UNSUPPORTED, /* amqp:not-implemented */
    AMQP_KIND_KAFKA,       /* Kafka refused a produce or a subscription */
    AMQP_KIND_LIMIT,       /* connections, links, message size, headers */
    AMQP_KIND_INTERNAL,    /* out of memory and the like */
    AMQP_KIND_COUNT,
};

struct amqp_adapter {
    struct adapter_base base; /* first: connections, deferred free, drain (connection.h) */

    /* Metrics (pointers into the registry, bumped directly). */
    uint64_t *transfers_received;
    uint64_t *transfers_sent;
    uint64_t *errors[AMQP_KIND_COUNT];

    /* The shovels whose legacy end speaks AMQP 1.0 (amqp_shovel.c). */
    struct amqp_shovel *shovels;

    /* Scratch for one transfer at a time (the loop is single-threaded). */
    pn_message_t *message;
    char *buffer;
    size_t buffer_cap;
};

/* The config in force (follows SIGHUP reloads). */
const struct config *amqp_adapter_config(const struct amqp_adapter *adapter);
/* Grow the scratch buffer to at least `size` bytes. 0, or -1 on allocation failure. */
int amqp_adapter_buffer_reserve(struct amqp_adapter *adapter, size_t size);
/* Free the adapter's own state and struct (connection_ops.adapter_free). */
void amqp_adapter_free(struct adapter_base *base);

struct core_delivery;
/* Convert a kbridge delivery into adapter->message (the scratch message;
 * valid until the next call): the record's headers that reach AMQP clients
 * (record_header_delivered, RECORD_DELIVER_AMQP_DATA: the kbridge-amqp-*
 * encodings included for the converter) through amqp_message_from_record.
 * 0, or -1 with err. Used by receiving links and shovels towards a broker. */
int amqp_adapter_message_from_delivery(struct amqp_adapter *adapter,
                                       const struct core_delivery *delivery, char *err,
                                       size_t err_size);
/* Count one error condition sent. */
void amqp_adapter_count_error(struct amqp_adapter *adapter, enum amqp_error_kind kind);

/* An AMQP error: the kind it is counted under and the condition name. */
struct amqp_error {
    enum amqp_error_kind kind;
    const char *condition; /* "amqp:unauthorized-access" */
};
/* The row of a core error (daemon/core.h's CORE_ERR_*, anything else is
 * internal) in the one table from core errors to AMQP errors
 * (amqp_adapter.c). Static; never NULL. */
struct amqp_core_error {
    struct amqp_error now;    /* the core refused a transfer */
    struct amqp_error later;  /* an accepted transfer failed (Kafka did not store it) */
    struct amqp_error attach; /* the core refused a receiving link's subscription */
    struct amqp_error login;  /* SASL or an anonymous open */
};
const struct amqp_core_error *amqp_core_error(int core_error);

#endif
