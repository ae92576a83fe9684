/* amqp_adapter.h -- the AMQP 1.0 adapter's shared state (private to
 * adapters/amqp/): the connection list, the deferred-free list, metrics and
 * the scratch message and buffer used to encode and decode transfers. The
 * server sees only amqp_adapter_ops (adapter.h); everything here runs on the
 * loop thread. */
#ifndef KBRIDGE_AMQP_ADAPTER_H
#define KBRIDGE_AMQP_ADAPTER_H

#include <proton/message.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter.h"

struct config;
struct event;
struct amqp_connection;

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
    struct adapter_context context; /* base, core, metrics, config (copied at create) */

    struct amqp_connection *connections; /* open connections (doubly linked) */
    size_t connection_count;             /* including those closing, until freed */
    struct amqp_connection *disused;     /* closed, waiting for reap_event (singly linked) */
    struct event *reap_event;            /* zero-timeout: frees the disused list */
    bool draining;                       /* SIGTERM: take no more work from clients */

    /* Metrics (pointers into the registry, bumped directly). */
    double *connections_gauge; /* kbridge_connections{protocol="amqp"} */
    uint64_t *transfers_received;
    uint64_t *transfers_sent;
    uint64_t *errors[AMQP_KIND_COUNT];

    /* Scratch for one transfer at a time (the loop is single-threaded). */
    pn_message_t *message;
    char *buffer;
    size_t buffer_cap;
};

/* The config in force (follows SIGHUP reloads). */
const struct config *amqp_adapter_config(const struct amqp_adapter *adapter);
/* Output bytes above which a connection's deliveries are blocked (resumed at half). */
size_t amqp_adapter_output_high(const struct amqp_adapter *adapter);
/* Queue a finished connection for freeing at the next loop iteration. */
void amqp_adapter_defer_free(struct amqp_adapter *adapter, struct amqp_connection *connection);
/* Grow the scratch buffer to at least `size` bytes. 0, or -1 on allocation failure. */
int amqp_adapter_buffer_reserve(struct amqp_adapter *adapter, size_t size);
/* Count one error condition sent. */
void amqp_adapter_count_error(struct amqp_adapter *adapter, enum amqp_error_kind kind);

#endif
