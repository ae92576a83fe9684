/* SPDX-License-Identifier: Apache-2.0 */
/* connection.h -- the adapter base: what every protocol adapter does the
 * same way with its client connections (architecture "Layers and layout").
 *
 * Two structs, each embedded first in the adapter's own:
 *  - struct adapter_base (in struct stomp_adapter, struct amqp_adapter):
 *    the connection list and its gauge, deferred free (a zero-timeout reap
 *    event: a connection is never freed inside one of its own callbacks),
 *    accept/refuse at limits.max_connections, drain, reload and shutdown.
 *  - struct connection (in struct stomp_connection, struct amqp_connection):
 *    the transport (transport.h) and its bufferevent callbacks, the output
 *    watermark (adapter_output_high), flush-then-close and linger, and the
 *    publishes waiting for Kafka.
 * The adapter fills one struct connection_ops with what is its own: reading
 * its protocol, the end of the stream while open, deliveries resuming,
 * a publish's outcome, and freeing its connection struct.
 *
 * Close: connection_flush_then_close() stops reading (input is discarded
 * from then on), flushes the output (at most CONNECTION_FLUSH_TIMEOUT_MS),
 * ends our direction of the stream and discards input until the peer closes
 * (at most CONNECTION_LINGER_MS): closing a socket with unread input makes
 * the kernel send a RST that can destroy the last frame before the client
 * reads it. Then connection_dispose() puts it on the reap list.
 *
 * Publishes: the adapter's publish_done runs exactly once per publish begun
 * with connection_publish_begin and not cancelled: from Kafka's answer
 * (connection_publish_confirmed, the core_publish_fn), or with
 * CONNECTION_PUBLISH_ABANDONED when the connection is freed first.
 *
 * Held publishes: when core_publish answers CORE_ERR_BUSY (Kafka's producer
 * queue is full) the adapter keeps the publish (a frame, a channel's
 * publish, a link's transfer: its own), stops reading it and calls
 * connection_publish_hold; the base calls the adapter's publish_retry after
 * CONNECTION_PUBLISH_RETRY_MS or, sooner, on the loop after this
 * connection's next confirmation (the queue may be full of other
 * connections' records, hence the timer).
 *
 * Everything runs on the loop thread. */
#ifndef KBRIDGE_CONNECTION_H
#define KBRIDGE_CONNECTION_H

#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter.h"
#include "core.h"
#include "transport.h"

struct config;
struct event;
struct sockaddr;
struct adapter_base;
struct connection;

#define CONNECTION_FLUSH_TIMEOUT_MS 5000 /* give up flushing the last frame after this */
#define CONNECTION_LINGER_MS 2000        /* then read and discard until EOF, at most this */
#define CONNECTION_PUBLISH_RETRY_MS 50   /* retry a held publish at the latest after this */

/* The result publish_done gets when the connection is freed before Kafka
 * answered (after core_session_close no answer comes): the record may
 * still be stored, nobody is left to tell. Not a core_error (those are <= 0). */
#define CONNECTION_PUBLISH_ABANDONED 1
_Static_assert(CONNECTION_PUBLISH_ABANDONED != CORE_UNROUTABLE,
               "publish_done must tell an abandoned publish from an unroutable one");

/* Rows of an adapter's table from core errors to its protocol's errors,
 * indexed by core_error_row(code): one per enum core_error value below 0. */
#define CORE_ERROR_ROWS 13
/* The row of `code` (CORE_ERR_ACCESS .. CORE_ERR_IN_USE); anything else
 * (an unknown code) is CORE_ERR_INTERNAL's. */
size_t core_error_row(int code);

/* A publish waiting for Kafka; embedded in the adapter's publish struct. */
struct connection_publish {
    struct connection *connection;
    struct connection_publish *prev;
    struct connection_publish *next;
};

/* What each adapter does its own way. Called on the loop thread. */
struct connection_ops {
    const char *protocol; /* "stomp": log tag and the kbridge_connections label */
    /* Take over an accepted socket (owns fd from now on): connection_new,
     * then the protocol's start; refuse: limits.max_connections are open
     * already, say so in the protocol and close. */
    void (*open)(struct adapter_base *base, evutil_socket_t fd, const struct sockaddr *peer,
                 int peer_len, struct bufferevent *stream, bool refuse);
    /* Input arrived on an open (not closing) connection. */
    void (*read)(struct connection *connection);
    /* EOF, error or timeout on an open connection (BEV_EVENT_* bits). After
     * flush-then-close began the base disposes of the connection itself. */
    void (*event)(struct connection *connection, short events);
    /* The output drained to half of adapter_output_high: deliveries may
     * resume. Open connections only. */
    void (*output_drained)(struct connection *connection);
    /* Optional: the connection goes on the reap list (stop timers, cancel
     * work whose answer would find nobody). Called once. */
    void (*disposed)(struct connection *connection);
    /* Optional: reload (limits in force changed); drain (SIGTERM, the
     * base's draining flag is already set). */
    void (*reconfigure)(struct connection *connection);
    void (*drain)(struct connection *connection);
    /* Daemon shutdown, the loop has stopped: queue a goodbye (the base then
     * tries one non-blocking write of the output). */
    void (*shutdown)(struct connection *connection);
    /* Free the adapter's connection: close its core session, then call
     * connection_release, then free the struct. From the reap event and
     * adapter_base_destroy only. */
    void (*free)(struct connection *connection);
    /* Free the adapter's own state and its struct (every connection is gone;
     * also after a create that failed half-way: NULL members are fine). */
    void (*adapter_free)(struct adapter_base *base);
    /* A publish's outcome: CORE_OK, a core_error, or
     * CONNECTION_PUBLISH_ABANDONED (connection being freed: only free the
     * publish). `publish` is already unlinked and owned by the callee. */
    void (*publish_done)(struct connection_publish *publish, int result, const char *reason);
    /* Optional (needed by an adapter that calls connection_publish_hold):
     * publish what this connection held again. From the loop, never inside
     * a core callback; open (not closing) connections only. */
    void (*publish_retry)(struct connection *connection);
};

struct adapter_base {
    struct adapter_context context;   /* base, core, metrics, config (copied at init) */
    const struct connection_ops *ops; /* the adapter's */
    struct connection *connections;   /* open connections (doubly linked) */
    size_t connection_count;          /* including those closing, until freed */
    struct connection *disused;       /* disposed, waiting for reap_event (singly linked) */
    struct event *reap_event;         /* zero-timeout: frees the disused list */
    bool draining;                    /* SIGTERM: take no more work from clients */
    /* During adapter_base_accept only: the listener of the connection being
     * opened (connection_new picks its transport from it); NULL otherwise. */
    const struct config_listener *accepting;
    /* During adapter_base_accept only: the limit a refused connection is
     * over ("limits.max_connections_per_address") and its value, for the
     * adapter's refusal; and whether the core admitted (counted) it, until
     * connection_new takes that over. */
    const char *refusal;
    uint32_t refusal_value;
    bool admitted;
    double *connections_gauge; /* kbridge_connections{protocol=...} */
};

struct connection {
    struct adapter_base *adapter;
    struct connection *prev; /* adapter->connections */
    struct connection *next;
    struct connection *next_disused; /* adapter->disused */
    struct transport transport;      /* transport.stream is what the adapter reads and writes */
    const char *peer;                /* transport.peer: "127.0.0.1:5555" */
    bool closing;                    /* flush-then-close began: input is discarded */
    bool lingering;                  /* output flushed, write side ended, discarding input */
    bool read_eof;                   /* the stream gave EOF */
    bool disused;                    /* on the reap list */
    const char *close_reason;        /* static text for the adapter's close log line */
    struct event *close_timer;       /* flushing, then lingering deadline */
    struct connection_publish *publishes; /* waiting for Kafka (doubly linked) */
    uint32_t unconfirmed;                 /* length of `publishes` */
    bool publish_holding;                 /* connection_publish_hold: a retry is due */
    struct event *publish_retry_event;    /* CONNECTION_PUBLISH_RETRY_MS, or made active */
    bool admitted; /* counted by core_connection_admit: released in connection_release */
};

/* ---- the adapter ------------------------------------------------------------ */

/* The adapter_ops below work for any adapter whose struct begins with a
 * struct adapter_base; an adapter puts them in its adapter_ops table. */

/* Allocate the adapter's struct (`size` zeroed bytes beginning with a
 * struct adapter_base): copy the context, register
 * kbridge_connections{protocol=ops->protocol}, create the reap event. The
 * adapter fills in the rest; adapter_base_destroy frees it (also after a
 * create that failed half-way). NULL with err (nothing to free). */
struct adapter_base *adapter_base_new(size_t size, const struct adapter_context *context,
                                      const struct connection_ops *ops, char *err, size_t err_size);
/* The config in force (follows SIGHUP reloads). */
const struct config *adapter_base_config(const struct adapter_base *base);
/* adapter_output_high() for the config in force. */
size_t adapter_base_output_high(const struct adapter_base *base);
/* adapter_ops.accept: when draining the socket is closed (the listener is
 * paused, a straggler is dropped); else the adapter's open, told to refuse
 * when the core does not admit the connection (core_connection_admit:
 * limits.max_connections over every protocol, ..._per_address; the limit
 * is in base->refusal during the open). Without a core (unit tests), the
 * adapter's own count is held to limits.max_connections. `listener` is kept
 * in base->accepting for the open's connection_new. */
void adapter_base_accept(struct adapter *adapter, evutil_socket_t fd, const struct sockaddr *peer,
                         int peer_len, struct bufferevent *stream,
                         const struct config_listener *listener);
/* adapter_ops.reconfigure: reset every open connection's output watermark,
 * then the adapter's reconfigure for each. */
void adapter_base_reconfigure(struct adapter *adapter);
/* adapter_ops.drain: set draining, the adapter's drain for each connection. */
void adapter_base_drain(struct adapter *adapter);
/* adapter_ops.connection_count: open connections, closing ones included. */
size_t adapter_base_connection_count(const struct adapter *adapter);
/* adapter_ops.destroy: shut down every connection (adapter's shutdown, one
 * non-blocking flush), free each (adapter's free), free the reap event,
 * then the adapter (adapter_free). NULL is fine. */
void adapter_base_destroy(struct adapter *adapter);

/* ---- a connection ------------------------------------------------------------- */

/* Allocate the adapter's connection struct (`size` zeroed bytes beginning
 * with a struct connection) for an accepted socket: open the transport (TLS
 * over `stream` when the listener made one, else plain TCP over fd), then
 * stack WebSocket on it when base->accepting says `transport: websocket`,
 * link it on the adapter's list, install the base's callbacks and the write
 * watermark and enable writing (the adapter enables reading). The adapter
 * finishes it and frees it in its `free`. NULL (socket closed, nothing
 * linked, logged) on failure. */
struct connection *connection_new(struct adapter_base *base, size_t size, evutil_socket_t fd,
                                  const struct sockaddr *peer, int peer_len,
                                  struct bufferevent *tls_stream);
/* Abandon the publishes still waiting (publish_done with
 * CONNECTION_PUBLISH_ABANDONED, once each), close the transport, free the
 * timer and unlink. Call from the adapter's free, after core_session_close. */
void connection_release(struct connection *connection);

/* Stop reading, flush, end our side, linger, dispose (see the top). Safe
 * to call more than once. */
void connection_flush_then_close(struct connection *connection);
/* Put the connection on the reap list now (freed at the next loop
 * iteration, never inside the caller's callback). Safe to call twice. */
void connection_dispose(struct connection *connection);
/* Dispose of the connection after `ms` unless something else does first
 * (e.g. the peer closed while the protocol still has a goodbye to write). */
void connection_dispose_after(struct connection *connection, uint32_t ms);

/* Bytes waiting in the output. */
size_t connection_output_length(const struct connection *connection);
/* Is the output above adapter_output_high (deliveries should stop)? */
bool connection_output_above_high(const struct connection *connection);

/* ---- publishes ------------------------------------------------------------------ */

/* Link `publish` (embedded in the adapter's publish struct) on the
 * connection, counted in `unconfirmed`, before core_publish. */
void connection_publish_begin(struct connection *connection, struct connection_publish *publish);
/* core_publish refused it (no callback will come): unlink it; the caller
 * frees it. */
void connection_publish_cancel(struct connection_publish *publish);
/* The core_publish_fn to pass with the publish as opaque: unlinks it and
 * calls the adapter's publish_done; then, when a publish is held, makes the
 * retry due on the loop. */
void connection_publish_confirmed(void *opaque, int err, const char *reason);
/* core_publish answered CORE_ERR_BUSY and the adapter keeps the publish:
 * its publish_retry runs after CONNECTION_PUBLISH_RETRY_MS or after the next
 * confirmation, whichever comes first (see the top). Calling it again
 * re-arms the timer. Returns 0, or -1 when the timer could not be armed
 * (logged; then only a confirmation retries). */
int connection_publish_hold(struct connection *connection);

#endif
