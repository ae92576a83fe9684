/* config.h -- the daemon's configuration: one YAML file parsed with libyaml
 * into a plain struct. Every key, its type, bounds and default lives in one
 * table in config.c; docs/configuration.md is generated from that table.
 *
 * A struct config is immutable once loaded. SIGHUP loads a new one and the
 * server swaps it in (config_apply_live copies what may change live). */
#ifndef KBRIDGE_CONFIG_H
#define KBRIDGE_CONFIG_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

/* One "name: value" pair of a librdkafka property map; value is the YAML
 * scalar as written (numbers and booleans stay text). */
struct config_property {
    char *name;
    char *value;
};

struct config_properties {
    struct config_property *items;
    size_t count;
};

/* A compiled destination ACL pattern, with its source text for messages. */
struct config_pattern {
    char *source;
    regex_t regex; /* POSIX extended, compiled with REG_NOSUB */
};

struct config_user {
    char *name;
    char *password_hash;            /* crypt(3) string: "$6$...", "$5$...", "$y$..." */
    struct config_pattern *publish; /* destinations the user may publish to */
    size_t publish_count;
    struct config_pattern *consume; /* destinations the user may consume from */
    size_t consume_count;
};

/* One entry of `listeners`: a socket and the protocols served on it. The
 * names are adapter names (adapters/registry.c) or "http", the ops endpoint;
 * config.c does not know which exist: the server checks them at start
 * (server_check_listeners). */
struct config_listener {
    char *name;            /* the key under `listeners`: "stomp", "public" */
    char *bind;            /* "host:port", "[v6]:port"; port 0 picks a free port */
    char **protocols;      /* default: { name } */
    size_t protocol_count; /* at least 1 once loaded */
};

struct config {
    char *path;    /* file it was loaded from */
    char *node_id; /* default: host name */

    struct {
        char *bootstrap;                     /* "embedded" or "host:port,host:port" */
        char *topic_prefix;                  /* default "" */
        struct config_properties properties; /* every librdkafka handle */
        struct config_properties producer;   /* producer only */
        struct config_properties consumer;   /* consumer only */
        uint32_t drain_budget;               /* events per wake-up, default 256 */
    } kafka;

    struct config_listener *listeners; /* in file order; none started when empty */
    size_t listener_count;

    struct {
        bool anonymous; /* default false */
        struct config_user *users;
        size_t user_count;
    } auth;

    struct {
        uint32_t max_deliveries;  /* default 5, 1..1000000 */
        bool nack_requeue;        /* default true */
        bool dead_letter_expired; /* default false: expired messages are dropped */
        char *dead_letter_topic;  /* pattern with {name}; default "{name}.DLQ" */
        uint64_t ack_timeout_ms;  /* default 30m */
        uint32_t max_in_flight;   /* default 10000 */
        uint64_t linger_ms;       /* stay in the group after the last subscriber, default 30s */
    } queues;

    struct {
        uint32_t max_backlog;  /* non-durable topic subscriber backlog, default 10000 */
        char *slow_subscriber; /* "drop-oldest" (default) or "disconnect" */
    } topics;

    struct {
        uint32_t max_outstanding; /* requests remembered, default 100000 */
        uint64_t remember_ms;     /* how long, default 10m */
    } replies;

    struct {
        uint32_t threads; /* worker pool threads (password checks, Kafka calls), default 2 */
    } workers;

    struct {
        uint64_t max_frame_size;   /* bytes, default 1MiB */
        uint64_t max_message_size; /* bytes, default 1MiB */
        uint32_t max_headers;      /* default 64 */
        uint32_t max_connections;  /* default 10000 */
        uint32_t max_unconfirmed;  /* default 1000 */
        uint64_t heartbeat_ms;     /* default 10s */
        uint64_t heartbeat_min_ms; /* floor for a client's shorter heart-beat, default 100ms */
        uint64_t protocol_detect_timeout_ms; /* shared listener: wait for first bytes, 10s */
        uint32_t protocol_detect_bytes;      /* shared listener: most bytes peeked, 256 */
    } limits;

    struct {
        enum log_level level;   /* default info */
        enum log_format format; /* default text */
    } log;

    uint64_t shutdown_grace_ms; /* default 10s: how long SIGTERM waits for Kafka */
};

/* Load and validate `path`. On success returns 0 and *out owns a new config
 * (free with config_free). On failure returns -1 and writes one line into
 * err: "FILE:LINE: KEY: reason" (or "FILE: reason" when unreadable). */
int config_load(const char *path, struct config **out, char *err, size_t err_size);

/* Same as config_load, from a YAML text in memory; `name` stands in for the
 * file name in messages. */
int config_load_string(const char *name, const char *yaml, size_t len, struct config **out,
                       char *err, size_t err_size);

/* The listener named `name` ("stomp"), or NULL when the file has none. */
const struct config_listener *config_listener_find(const struct config *config, const char *name);

/* Free a config and everything it owns; NULL is fine. */
void config_free(struct config *config);

/* Parse "1MiB", "512KiB", "10", "2GiB", "100B" into bytes; 0 ok, -1 bad. */
int config_parse_size(const char *text, uint64_t *out);

/* Parse "250ms", "10s", "30m", "2h" (a bare number is seconds) into ms; 0 ok, -1 bad. */
int config_parse_duration(const char *text, uint64_t *out_ms);

/* Compare an old and a new config for reload: writes into `out` (a new config
 * the caller keeps) the restart-only values of `old` (node_id, kafka.*,
 * listeners.*), logging a warning for each that differs. Users, ACLs, queues,
 * limits, log and shutdown_grace take the new values. */
void config_apply_live(const struct config *old, struct config *out);

/* Write the key reference (Markdown) to `stream`; used to generate
 * docs/configuration.md and to check it is current. */
void config_write_reference(FILE *stream);

#endif
