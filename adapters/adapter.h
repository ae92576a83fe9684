/* SPDX-License-Identifier: Apache-2.0 */
/* adapter.h -- the contract between the server and a protocol adapter: the
 * adapter descriptor (struct adapter_ops) and the registry of descriptors the
 * server is started with (architecture "Adding a protocol or a transport").
 *
 * An adapter declares itself: its name (what `listeners.NAME.protocols`
 * says), its config section (its own keys under the top-level key of its
 * name), its first-bytes detector (for a listener shared by several
 * protocols), its address spellings and its lifecycle. It owns its client
 * connections: the server binds the listeners and hands every accepted
 * socket to the adapter the listener serves, or, when the listener serves
 * several, to the one whose detector claims the connection's first bytes.
 * The server registers kbridge_connections{protocol=NAME} for every adapter
 * of its registry; an adapter registers its own protocol's metrics in
 * create. Adapters talk to the rest of kbridge only through core.h (and
 * metrics/log/config/address); a new protocol is one more folder under
 * adapters/ plus one line in adapters/registry.c, and nothing under daemon/
 * names one. */
#ifndef KBRIDGE_ADAPTER_H
#define KBRIDGE_ADAPTER_H

#include <event2/util.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct config_listener;
struct core;
struct event_base;
struct metrics;
struct sockaddr;
struct adapter;
struct bufferevent;
struct shovel_table;
struct worker_pool;

/* What an adapter gets from the server; valid for the adapter's lifetime. */
struct adapter_context {
    struct event_base *base;
    struct core *core;
    struct metrics *metrics;
    struct config *const *config; /* the server's current config (replaced on reload) */
    /* The shovels' status table (daemon/shovel.h): an adapter running the
     * shovels of its protocol (`shovels:` in the config) reports there. */
    struct shovel_table *shovels;
    /* The server's worker pool (daemon/worker.h): for what must not run on
     * the loop (a shovel's passcode_file). */
    struct worker_pool *workers;
};

/* What a detector makes of a connection's first bytes. */
enum adapter_detect {
    ADAPTER_DETECT_NO,   /* these bytes are not this protocol */
    ADAPTER_DETECT_YES,  /* this protocol: hand the connection over */
    ADAPTER_DETECT_MORE, /* a prefix of this protocol's opening: wait for more */
};

struct address_spelling;
struct config_section;

struct adapter_ops {
    const char *name;  /* "stomp": what listeners.NAME.protocols lists */
    const char *title; /* "STOMP 1.0-1.2": for logs and messages */
    /* The client's first `len` bytes (peeked, not consumed; len >= 1):
     * pure, no state. A listener shared by several adapters hands the
     * connection to the first whose answer is YES. */
    enum adapter_detect (*detect)(const unsigned char *bytes, size_t len);
    /* How this protocol's clients write addresses (address_parse); NULL
     * when it has none. */
    const struct address_spelling *addresses;
    /* This protocol's own config keys (config.h): a section whose name is
     * the adapter's ("stomp: {heartbeat_min: 1s}"), loaded with defaults
     * when the file leaves it out and reloaded by SIGHUP like the shared
     * keys; read with config_section_values(config, name). NULL: none. */
    const struct config_section *config_section;
    /* Create the adapter. NULL with err on failure. */
    struct adapter *(*create)(const struct adapter_context *context, char *err, size_t err_size);
    /* Take over an accepted connection (the adapter owns fd from now on)
     * that came in on `listener` (its transport and options; valid during
     * the call only; NULL: plain TCP). `stream` is NULL on a plain listener;
     * on a TLS listener it is the bufferevent_openssl over fd with the
     * handshake done (daemon/tls.h), owned by the adapter from now on
     * (freeing it closes fd). WebSocket (`transport: websocket`) is stacked
     * on whichever of the two it is (wss over TLS). */
    void (*accept)(struct adapter *adapter, evutil_socket_t fd, const struct sockaddr *peer,
                   int peer_len, struct bufferevent *stream,
                   const struct config_listener *listener);
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

/* A list of adapters the server may serve; main passes the built-in one,
 * tests their own. Both arrays outlive the server. */
struct adapter_registry {
    const struct adapter_ops *const *adapters;
    size_t count;
};

/* The adapters built into kbridged (adapters/registry.c); static storage. */
const struct adapter_registry *adapter_registry_builtin(void);

/* The adapter called `name` in `registry`, or NULL. */
const struct adapter_ops *adapter_registry_find(const struct adapter_registry *registry,
                                                const char *name);

/* The config sections the registry's adapters declare, in the registry's
 * order, into out (room for registry->count entries; they are the
 * adapters' static storage). Returns how many were written. main passes
 * them to config_load_sections and config_write_reference, the server to
 * its reloads. */
size_t adapter_registry_config_sections(const struct adapter_registry *registry,
                                        const struct config_section **out);

/* "stomp, amqp": the registry's names for messages, into out (cut to fit). */
void adapter_registry_names(const struct adapter_registry *registry, char *out, size_t out_size);

#endif
