/* SPDX-License-Identifier: Apache-2.0 */
/* protocol_detect.h -- a listener shared by several adapters: each new
 * connection waits (on the loop, never blocking it) until its first bytes
 * tell which adapter's protocol it speaks, then goes to that adapter with
 * nothing consumed (the bytes are peeked with recv(MSG_PEEK)), so the
 * adapter's accept is the same as on a listener of its own. A connection
 * whose bytes match no adapter, that closes, or that sends too little before
 * the deadline is closed, logged and counted (architecture "Adding a
 * protocol or a transport").
 *
 * Edge-triggered reads (EV_ET): a peeked byte stays readable, so a
 * level-triggered wait for more would wake the loop again at once. */
#ifndef KBRIDGE_PROTOCOL_DETECT_H
#define KBRIDGE_PROTOCOL_DETECT_H

#include <event2/util.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter.h"

struct event_base;
struct sockaddr;
struct protocol_detector;

/* protocol_detect_pick's answers besides a candidate's index. */
#define PROTOCOL_DETECT_MORE (-1) /* no YES yet, some candidate wants more bytes */
#define PROTOCOL_DETECT_NONE (-2) /* no candidate can match (or max_len reached) */

/* Which of `count` candidates claims `bytes` (len of them, len >= 1): the
 * index of the first whose detector says YES; MORE when none does but one
 * says MORE and len < max_len; NONE otherwise. Pure. */
int protocol_detect_pick(const struct adapter_ops *const *candidates, size_t count,
                         const unsigned char *bytes, size_t len, size_t max_len);

/* Why a connection went to no adapter; indexes the counters. */
enum protocol_detect_failure {
    PROTOCOL_DETECT_UNKNOWN, /* its first bytes match no candidate */
    PROTOCOL_DETECT_TIMEOUT, /* too few bytes before the deadline */
    PROTOCOL_DETECT_CLOSED,  /* closed (or failed) before its bytes told */
    PROTOCOL_DETECT_FAILURE_COUNT,
};

/* "unknown", "timeout", "closed": the metric label of a failure. */
const char *protocol_detect_failure_name(enum protocol_detect_failure failure);

/* Called on the loop when the connection `fd` matched candidates[index]: the
 * callee owns fd from then on. */
typedef void (*protocol_detect_found_fn)(void *opaque, size_t index, evutil_socket_t fd,
                                         const struct sockaddr *peer, int peer_len);

/* A detector for the listener `name` (logs) choosing among `candidates`
 * (count >= 1; the array must outlive the detector). `failures` points at
 * PROTOCOL_DETECT_FAILURE_COUNT counters the caller owns (the metric
 * kbridge_protocol_detect_failures_total). NULL when out of memory. */
struct protocol_detector *protocol_detector_new(struct event_base *base, const char *name,
                                                const struct adapter_ops *const *candidates,
                                                size_t count, protocol_detect_found_fn found,
                                                void *opaque, uint64_t *const *failures);

/* Take the accepted connection `fd` (the detector owns it until it calls
 * found or closes it) and wait up to timeout_ms for at most max_bytes of it. */
void protocol_detector_add(struct protocol_detector *detector, evutil_socket_t fd,
                           const struct sockaddr *peer, int peer_len, uint64_t timeout_ms,
                           uint32_t max_bytes);

/* Connections waiting for their first bytes. */
size_t protocol_detector_pending(const struct protocol_detector *detector);

/* Close every waiting connection (drain: they have sent no work yet). */
void protocol_detector_close_all(struct protocol_detector *detector);

/* Close every waiting connection and free; NULL is fine. */
void protocol_detector_free(struct protocol_detector *detector);

#endif
