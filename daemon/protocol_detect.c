/* SPDX-License-Identifier: Apache-2.0 */
/* protocol_detect.c -- connections of a shared listener waiting for the
 * first bytes that name their protocol (see protocol_detect.h).
 *
 * Each waiting connection has two events: an edge-triggered, persistent
 * read event (woken once per arrival of new bytes, and by the peer's
 * half-close where the backend reports it, EV_CLOSED; the bytes are peeked,
 * so a level-triggered event would fire again at once) and a one-shot
 * deadline timer. Memory per waiting connection is this struct; the peek buffer is
 * on the stack (limits.protocol_detect_bytes, at most 4 KiB). */
#include "protocol_detect.h"

#include <errno.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "listener.h"
#include "log.h"

#define PROTOCOL_DETECT_BUFFER_MAX 4096 /* the table's maximum of protocol_detect_bytes */

struct protocol_pending {
    struct protocol_detector *detector;
    evutil_socket_t fd;
    struct sockaddr_storage peer;
    int peer_len;
    char peer_text[80];
    uint32_t max_bytes;
    struct event *read_event;
    struct event *deadline;
    struct protocol_pending *prev, *next;
};

struct protocol_detector {
    struct event_base *base;
    char *name;
    const struct adapter_ops *const *candidates;
    size_t candidate_count;
    protocol_detect_found_fn found;
    void *opaque;
    uint64_t *failures[PROTOCOL_DETECT_FAILURE_COUNT];
    struct protocol_pending *pending;
    size_t pending_count;
};

int protocol_detect_pick(const struct adapter_ops *const *candidates, size_t count,
                         const unsigned char *bytes, size_t len, size_t max_len)
{
    bool more = false;
    for (size_t i = 0; i < count; i++) {
        enum adapter_detect answer = candidates[i]->detect(bytes, len);
        if (answer == ADAPTER_DETECT_YES)
            return (int)i;
        if (answer == ADAPTER_DETECT_MORE)
            more = true;
    }
    return more && len < max_len ? PROTOCOL_DETECT_MORE : PROTOCOL_DETECT_NONE;
}

const char *protocol_detect_failure_name(enum protocol_detect_failure failure)
{
    switch (failure) {
    case PROTOCOL_DETECT_UNKNOWN: return "unknown";
    case PROTOCOL_DETECT_TIMEOUT: return "timeout";
    case PROTOCOL_DETECT_CLOSED: return "closed";
    case PROTOCOL_DETECT_FAILURE_COUNT: break;
    }
    return "?";
}

/* Unlink and free a waiting connection and its events; its fd is the
 * caller's business, closed only after this (an fd closed while its event
 * is still registered could be reused by another thread before the event's
 * removal reaches epoll). */
static void protocol_pending_free(struct protocol_pending *pending)
{
    struct protocol_detector *detector = pending->detector;
    if (pending->prev)
        pending->prev->next = pending->next;
    else
        detector->pending = pending->next;
    if (pending->next)
        pending->next->prev = pending->prev;
    detector->pending_count--;
    if (pending->read_event)
        event_free(pending->read_event);
    if (pending->deadline)
        event_free(pending->deadline);
    free(pending);
}

/* Close a connection that went to no adapter: log why, count it. */
static void protocol_pending_fail(struct protocol_pending *pending,
                                  enum protocol_detect_failure failure, const char *why)
{
    struct protocol_detector *detector = pending->detector;
    (*detector->failures[failure])++;
    if (failure == PROTOCOL_DETECT_CLOSED)
        log_debug("listener", "listener %s: connection from %s %s", detector->name,
                  pending->peer_text, why);
    else
        log_warn("listener", "listener %s: connection from %s closed: %s", detector->name,
                 pending->peer_text, why);
    evutil_socket_t fd = pending->fd;
    protocol_pending_free(pending);
    evutil_closesocket(fd);
}

static void protocol_pending_on_read(evutil_socket_t fd, short what, void *arg)
{
    struct protocol_pending *pending = arg;
    struct protocol_detector *detector = pending->detector;
    unsigned char bytes[PROTOCOL_DETECT_BUFFER_MAX];
    ssize_t got = recv(fd, bytes, pending->max_bytes, MSG_PEEK | MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (got <= 0) {
        protocol_pending_fail(pending, PROTOCOL_DETECT_CLOSED,
                              got == 0 ? "closed before sending a protocol header"
                                       : "failed before sending a protocol header");
        return;
    }
    int pick = protocol_detect_pick(detector->candidates, detector->candidate_count, bytes,
                                    (size_t)got, pending->max_bytes);
    if (pick == PROTOCOL_DETECT_MORE && (what & EV_CLOSED)) {
        /* the peer half-closed after a prefix: no more bytes will come */
        protocol_pending_fail(pending, PROTOCOL_DETECT_CLOSED,
                              "closed before its protocol header was complete");
        return;
    }
    if (pick == PROTOCOL_DETECT_MORE)
        return; /* the edge-triggered event wakes us when more arrives */
    if (pick == PROTOCOL_DETECT_NONE) {
        char why[160];
        snprintf(why, sizeof(why), "its first %zd byte(s) are none of the protocols served here",
                 got);
        protocol_pending_fail(pending, PROTOCOL_DETECT_UNKNOWN, why);
        return;
    }
    struct sockaddr_storage peer = pending->peer;
    int peer_len = pending->peer_len;
    protocol_pending_free(pending);
    detector->found(detector->opaque, (size_t)pick, fd, (struct sockaddr *)&peer, peer_len);
}

static void protocol_pending_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    protocol_pending_fail(arg, PROTOCOL_DETECT_TIMEOUT,
                          "no protocol header before limits.protocol_detect_timeout");
}

struct protocol_detector *protocol_detector_new(struct event_base *base, const char *name,
                                                const struct adapter_ops *const *candidates,
                                                size_t count, protocol_detect_found_fn found,
                                                void *opaque, uint64_t *const *failures)
{
    struct protocol_detector *detector = calloc(1, sizeof(*detector));
    if (!detector || !(detector->name = strdup(name))) {
        free(detector);
        return NULL;
    }
    detector->base = base;
    detector->candidates = candidates;
    detector->candidate_count = count;
    detector->found = found;
    detector->opaque = opaque;
    for (size_t i = 0; i < PROTOCOL_DETECT_FAILURE_COUNT; i++)
        detector->failures[i] = failures[i];
    return detector;
}

void protocol_detector_add(struct protocol_detector *detector, evutil_socket_t fd,
                           const struct sockaddr *peer, int peer_len, uint64_t timeout_ms,
                           uint32_t max_bytes)
{
    struct protocol_pending *pending = calloc(1, sizeof(*pending));
    char address[80] = "(unknown)";
    if (peer && peer_len > 0)
        listener_format_address(peer, address, sizeof(address));
    if (!pending) {
        log_error("listener", "listener %s: connection from %s closed: out of memory",
                  detector->name, address);
        evutil_closesocket(fd);
        return;
    }
    pending->detector = detector;
    pending->fd = fd;
    if (peer && peer_len > 0 && (size_t)peer_len <= sizeof(pending->peer)) {
        memcpy(&pending->peer, peer, (size_t)peer_len);
        pending->peer_len = peer_len;
    }
    memcpy(pending->peer_text, address, sizeof(pending->peer_text));
    pending->max_bytes =
        max_bytes < PROTOCOL_DETECT_BUFFER_MAX ? max_bytes : PROTOCOL_DETECT_BUFFER_MAX;
    pending->next = detector->pending;
    if (detector->pending)
        detector->pending->prev = pending;
    detector->pending = pending;
    detector->pending_count++;

    evutil_make_socket_nonblocking(fd);
    pending->read_event = event_new(detector->base, fd, EV_READ | EV_CLOSED | EV_ET | EV_PERSIST,
                                    protocol_pending_on_read, pending);
    pending->deadline = evtimer_new(detector->base, protocol_pending_on_deadline, pending);
    struct timeval timeout = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    if (!pending->read_event || !pending->deadline || event_add(pending->read_event, NULL) < 0 ||
        event_add(pending->deadline, &timeout) < 0) {
        log_error("listener", "listener %s: connection from %s closed: cannot watch it",
                  detector->name, address);
        protocol_pending_free(pending);
        evutil_closesocket(fd);
    }
}

size_t protocol_detector_pending(const struct protocol_detector *detector)
{
    return detector->pending_count;
}

void protocol_detector_close_all(struct protocol_detector *detector)
{
    while (detector->pending) {
        evutil_socket_t fd = detector->pending->fd;
        protocol_pending_free(detector->pending);
        evutil_closesocket(fd);
    }
}

void protocol_detector_free(struct protocol_detector *detector)
{
    if (!detector)
        return;
    protocol_detector_close_all(detector);
    free(detector->name);
    free(detector);
}
