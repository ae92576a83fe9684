/* adapter.h -- the contract between the server and a protocol adapter.
 *
 * An adapter owns its client connections: the server binds the listener and
 * hands every accepted socket to the adapter named after the listener
 * ("stomp", "amqp"). Adapters talk to the rest of kbridge only through
 * core.h (and metrics/log); a new protocol is one more folder under
 * adapters/ plus one line in adapters/registry.c. */
#ifndef KBRIDGE_ADAPTER_H
#define KBRIDGE_ADAPTER_H

#include <event2/util.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct core;
struct event_base;
struct metrics;
struct sockaddr;
struct adapter;
struct bufferevent;

/* What an adapter gets from the server; valid for the adapter's lifetime. */
struct adapter_context {
    struct event_base *base;
    struct core *core;
    struct metrics *metrics;
    struct config *const *config; /* the server's current config (replaced on reload) */
};

struct adapter_ops {
    const char *name; /* listener name: "stomp" */
    /* Create the adapter. NULL with err on failure. */
    struct adapter *(*create)(const struct adapter_context *context, char *err, size_t err_size);
    /* Take over an accepted connection (the adapter owns fd from now on). */
    void (*accept)(struct adapter *adapter, evutil_socket_t fd, const struct sockaddr *peer,
                   int peer_len);
    /* The config was reloaded: apply limits to open connections where sensible. */
    void (*reconfigure)(struct adapter *adapter);
    /* SIGTERM: stop reading new work from clients; connections are closed by
     * destroy once Kafka has confirmed what is in flight. */
    void (*drain)(struct adapter *adapter);
    /* Open connections. */
    size_t (*connection_count)(const struct adapter *adapter);
    /* Close every connection (politely where the protocol allows) and free. */
    void (*destroy)(struct adapter *adapter);
};

/* Output a connection may hold before its deliveries stop (subscriptions
 * blocked in the core until it drains to half): 4 x max_frame_size, at least
 * 1 MiB and at most 4 MiB. Deliveries stop once the output is above it, so
 * one large message still goes out (the overshoot is at most one frame) and
 * a slow reader holds 4 MiB + one frame, however large max_frame_size. */
#define ADAPTER_OUTPUT_HIGH_MIN (1024 * 1024)
#define ADAPTER_OUTPUT_HIGH_FRAMES 4
#define ADAPTER_OUTPUT_HIGH_MAX (4 * 1024 * 1024)
size_t adapter_output_high(uint64_t max_frame_size);

/* The adapter for a listener name, or NULL when none is built in. */
const struct adapter_ops *adapter_find(const char *name);

#endif
