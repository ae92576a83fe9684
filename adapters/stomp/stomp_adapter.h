/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_adapter.h -- the STOMP adapter's shared state (private to
 * adapters/stomp/): the adapter base (connection list, deferred free,
 * drain: connection.h), metrics, the table from core errors to STOMP
 * errors and scratch space for building frames. The server sees only stomp_adapter_ops
 * (adapter.h); everything here runs on the loop thread. */
#ifndef KBRIDGE_STOMP_ADAPTER_H
#define KBRIDGE_STOMP_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connection.h"

struct config;
struct event;
struct stomp_connection;
struct stomp_header;
struct stomp_shovel;

/* Kinds of errors, the label of kbridge_stomp_errors_total{kind="..."}. Every
 * ERROR frame is counted under exactly one. */
enum stomp_error_kind {
    STOMP_KIND_PARSE,       /* the byte stream broke the framing rules */
    STOMP_KIND_AUTH,        /* login/passcode refused */
    STOMP_KIND_ACL,         /* the user may not publish to / consume from that destination */
    STOMP_KIND_INVALID,     /* a frame that is well formed but wrong (missing header, bad value) */
    STOMP_KIND_UNSUPPORTED, /* a feature that is not built yet (transactions, selectors) */
    STOMP_KIND_KAFKA,       /* Kafka refused or failed a produce or subscription */
    STOMP_KIND_LIMIT,       /* a configured limit (connections, message size, subscriptions) */
    STOMP_KIND_HEARTBEAT,   /* the client missed its heart-beats (or never sent CONNECT) */
    STOMP_KIND_INTERNAL,    /* out of memory and the like */
    STOMP_KIND_COUNT,
};

struct stomp_adapter {
    struct adapter_base base; /* first: connections, deferred free, drain (connection.h) */
    uint64_t sessions;        /* sessions opened, part of the session id */

    /* Metrics (pointers into the registry, bumped directly). */
    uint64_t *frames_received;
    uint64_t *frames_sent;
    uint64_t *heartbeat_timeouts; /* also counted in errors{kind="heartbeat"} */
    uint64_t *errors[STOMP_KIND_COUNT];

    /* The shovels whose legacy end speaks STOMP (stomp_shovel.c). */
    struct stomp_shovel *shovels;

    /* Scratch for MESSAGE frames: headers and their NUL-terminated values.
     * Frames are serialised synchronously, so one buffer serves the loop. */
    struct stomp_header *scratch_headers;
    size_t scratch_headers_cap;
    char *scratch_text;
    size_t scratch_text_cap;
};

/* The config in force (follows SIGHUP reloads). */
const struct config *stomp_adapter_config(const struct stomp_adapter *adapter);

/* Free the adapter's own state and struct (connection_ops.adapter_free). */
void stomp_adapter_free(struct adapter_base *base);

/* Static name of an error kind ("parse"). */
const char *stomp_error_kind_name(enum stomp_error_kind kind);

/* Grow the scratch space to hold `headers` headers and `text` bytes of
 * values. 0, or -1 on allocation failure. */
int stomp_adapter_scratch_reserve(struct stomp_adapter *adapter, size_t headers, size_t text);

#endif
