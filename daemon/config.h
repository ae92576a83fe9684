/* SPDX-License-Identifier: Apache-2.0 */
/* config.h -- the daemon's configuration: one YAML file parsed with libyaml
 * into a plain struct. Every shared key, its type, bounds and default lives
 * in one table (config_table.c); a protocol adapter's own keys live in its
 * config section (struct config_section, declared by its descriptor and
 * handed to config_load_sections by whoever holds the adapter registry);
 * docs/configuration.md is generated from those tables.
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

#include "config_key.h"
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

/* One entry of auth.users[].permissions: RabbitMQ's per-vhost permissions
 * (`rabbitmqctl set_permissions -p VHOST USER CONFIGURE WRITE READ`), what
 * the user may do in that vhost (architecture §10). Each list holds one
 * pattern, or none for RabbitMQ's "" (nothing). */
struct config_permission {
    char *vhost;                      /* the key under `permissions`: a configured vhost */
    struct config_pattern *configure; /* declare and delete exchanges and queues */
    size_t configure_count;
    struct config_pattern *write; /* publish (as a user's `publish`) */
    size_t write_count;
    struct config_pattern *read; /* consume, purge, bind from (as `consume`) */
    size_t read_count;
};

struct config_user {
    char *name;
    char *password_hash; /* crypt(3) "$6$...", "$y$..." or RabbitMQ base64 (password.h) */
    char *password;      /* plaintext: only with auth.insecure_plaintext; then hash is NULL */
    struct config_pattern *publish; /* destinations the user may publish to */
    size_t publish_count;
    struct config_pattern *consume; /* destinations the user may consume from */
    size_t consume_count;
    char **tags; /* RabbitMQ's user tags for the admin API: "administrator", ... */
    size_t tag_count;
    /* The vhosts the user may use (RabbitMQ's per-vhost permissions): NULL
     * when the key is absent (every vhost); `[]` is non-NULL with a count of
     * 0 (none). Each names a configured vhost (checked at load). */
    char **vhosts;
    size_t vhost_count;
    /* `permissions`, by vhost: NULL when the key is absent (then publish,
     * consume and vhosts apply, in every vhost); `{}` is non-NULL with a
     * count of 0 (no vhost). A user has this or those, never both. */
    struct config_permission *permissions;
    size_t permission_count;
    bool imported; /* read from definitions.file (definitions.import_users) */
};

/* May `user` use vhost `vhost` (its `vhosts` list, every vhost when absent)? */
bool config_user_may_use_vhost(const struct config_user *user, const char *vhost);

/* The patterns that say where `user` may publish (`write`) or what it may
 * consume from in `vhost`: its `permissions` entry's write or read, or
 * without `permissions` its publish or consume list (every vhost). NULL
 * with *count 0 when none. Owned by the config. */
const struct config_pattern *config_user_patterns(const struct config_user *user, const char *vhost,
                                                  bool write, size_t *count);

/* Does one of `count` patterns match `name`? */
bool config_patterns_match(const struct config_pattern *patterns, size_t count, const char *name);

/* Compile `source` into `pattern` as an ACL pattern (POSIX extended, the
 * complexity limits of auth.users[].publish). 0, or -1 with a reason; the
 * pattern's source and regex then belong to the caller's config. */
int config_pattern_compile(struct config_pattern *pattern, const char *source, char *reason,
                           size_t reason_size);

/* The user's `permissions` entry for `vhost`; NULL when it has none (or no
 * `permissions` at all: then its publish and consume patterns apply). */
const struct config_permission *config_user_permission(const struct config_user *user,
                                                       const char *vhost);

/* One entry of `listeners`: a socket and the protocols served on it. The
 * names are adapter names (adapters/registry.c) or "http", the ops endpoint;
 * config.c does not know which exist: the server checks them at start
 * (server_check_listeners). */
struct config_listener {
    char *name;            /* the key under `listeners`: "stomp", "public" */
    char *bind;            /* "host:port", "[v6]:port"; port 0 picks a free port */
    char **protocols;      /* default: { name } */
    size_t protocol_count; /* at least 1 once loaded */
    char *transport;       /* "tcp" or "websocket"; NULL: tcp */
    struct {
        char *path;     /* the upgrade's request path; NULL: "/ws" */
        char **origins; /* allowed Origin values; none: any origin */
        size_t origin_count;
        uint64_t max_message_size; /* bytes; 0: limits.max_frame_size */
    } websocket;                   /* read when transport is "websocket" */
    /* `tls:` (daemon/tls.c): TLS on this listener when cert is set; NULL
     * strings are the defaults. Checked (files read) at start by tls.c.
     * With `transport: websocket` too, the listener serves wss. */
    struct {
        char *cert;              /* PEM certificate (chain) file */
        char *key;               /* PEM private key file */
        char *key_password_file; /* file holding the key's passphrase; NULL: none */
        char *ca;                /* PEM CA bundle for client certificates */
        char *verify;            /* "none" (default), "optional", "required" */
        char *min_version;       /* "1.2" (default), "1.3" */
        char *ciphers;           /* OpenSSL cipher list (TLS 1.2); NULL: OpenSSL's */
        char *identity;          /* "cn" (default), "san_email", "san_dns" */
    } tls;
};

/* One entry of `vhosts` (architecture §11): a RabbitMQ virtual host and the
 * Kafka topic prefix its exchanges and queues live under. The loader always
 * has "/" (first), mapped to kafka.topic_prefix; another vhost without its own
 * topic_prefix gets kafka.topic_prefix + NAME + ".". */
struct config_vhost {
    char *name;         /* the key under `vhosts`: "/", "shop" */
    char *topic_prefix; /* resolved at load, never NULL once loaded */
};

/* One end of a shovel (architecture §15): kbridge itself (`protocol:
 * kbridge`, a destination /queue/NAME or /topic/NAME) or a legacy broker
 * kbridged connects to as a client (`protocol: stomp` or `amqp`). */
struct config_shovel_end {
    char *protocol;      /* "kbridge", "stomp" or "amqp" */
    char *address;       /* legacy: "host:port" (a name is resolved off the loop) */
    char *host;          /* legacy: STOMP CONNECT host (vhost), default "/"; AMQP open hostname */
    char *login;         /* legacy: NULL: none */
    char *passcode;      /* legacy: NULL: none (or passcode_file) */
    char *passcode_file; /* legacy: a file whose first line is the passcode */
    char *destination;   /* "/queue/x", "/topic/x"; AMQP: the broker's address */
};

/* One entry of `shovels` (config_finish_shovel checked that exactly one end
 * is kbridge and the other a legacy broker). */
struct config_shovel {
    char *name;
    struct config_shovel_end source;
    struct config_shovel_end destination;
    char *user;                       /* kbridge user the shovel acts as; NULL: anonymous */
    uint32_t prefetch;                /* unacknowledged messages at once */
    uint64_t reconnect_delay_initial; /* ms, doubled after each failed attempt */
    uint64_t reconnect_delay_max;     /* ms */
    uint64_t heartbeat;               /* ms asked of the broker; 0: none */
    uint64_t connect_timeout;         /* ms for connecting, logging in, a write to progress */
};

/* Is the listener's transport WebSocket (transport: websocket)? */
bool config_listener_is_websocket(const struct config_listener *listener);

/* A former spelling of a section key, still accepted: "limits.heartbeat_min"
 * (a dotted path from the file's root) sets the section's "heartbeat_min".
 * Using it logs one deprecation warning per load; writing both spellings is
 * refused. */
struct config_alias {
    const char *old_name; /* "limits.heartbeat_min" */
    const char *key;      /* "heartbeat_min": a row of the section */
};

/* A protocol adapter's own keys: the top-level mapping called `name`
 * ("stomp: {heartbeat_min: 1s}"). The rows' names are relative to it and
 * their offsets are into a struct of `size` bytes that the config allocates,
 * fills (defaults when the file has no such section) and frees. Static
 * storage, owned by the adapter; it must outlive every config loaded with it.
 * The config module never names an adapter: it gets sections from callers. */
struct config_section {
    const char *name;  /* the adapter's name: "stomp" */
    const char *title; /* "STOMP": for the reference's heading */
    const struct config_key *keys;
    size_t key_count;
    size_t size; /* of the struct the rows fill */
    const struct config_alias *aliases;
    size_t alias_count;
};

/* A loaded section: its declaration and its values (a struct of
 * section->size bytes, owned by the config). */
struct config_section_values {
    const struct config_section *section;
    void *values;
};

struct config {
    char *path;         /* file it was loaded from */
    char *node_id;      /* default: host name */
    uint32_t processes; /* worker processes per host (supervisor.c), default 1; 0: online CPUs */

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

    struct config_vhost *vhosts; /* "/" first, then the file's, in its order */
    size_t vhost_count;

    struct config_shovel *shovels; /* in file order; read at start (architecture §15) */
    size_t shovel_count;

    struct {
        char *topic;       /* the definitions topic, default "kbridge.definitions" */
        char *file;        /* a RabbitMQ definitions export loaded at start; NULL: none */
        bool import_users; /* take the file's users and permissions into auth.users */
        /* what the loader took from the file when import_users (for the log) */
        size_t imported_users, imported_permissions;
        size_t skipped_users, skipped_permissions; /* named in auth.users; vhost not configured */
    } definitions;

    struct {
        char *topic;                     /* the status topic, default "kbridge.status" */
        uint64_t interval_ms;            /* default 5 s */
        uint64_t expiry_ms;              /* 0 (default): 3 x interval_ms */
        uint32_t max_connections_listed; /* per record, default 1000 */
        uint64_t min_write_gap_ms;       /* between early writes, default 100 ms */
    } status;

    struct {
        char *ui_dir;              /* the dashboard's files (http_ui.c); NULL: KBRIDGE_UI_DIR */
        uint64_t max_body_size;    /* a request body, bytes (default 16 MiB) */
        uint64_t max_headers_size; /* a request's headers, bytes (default 16 KiB) */
        uint64_t timeout_ms;       /* idle read/write on a connection (default 30 s) */
    } http;

    struct {
        bool anonymous;          /* default false */
        bool insecure_plaintext; /* default false: users[].password is refused */
        struct config_user *users;
        size_t user_count;
    } auth;

    struct {
        uint32_t max_deliveries;      /* default 5, 1..1000000 */
        bool dead_letter_expired;     /* default false: expired messages are dropped */
        char *dead_letter_topic;      /* pattern with {name}; default "{name}.DLQ" */
        uint64_t ack_timeout_ms;      /* default 30m */
        uint64_t selector_hold_ms;    /* unselected records settled after it, default 5m */
        uint32_t max_in_flight;       /* default 10000 */
        uint64_t linger_ms;           /* stay in the group after the last subscriber, default 30s */
        uint64_t overflow_refresh_ms; /* reject-publish depth lookups at most this often, 1s */
        struct {
            uint64_t initial_ms; /* first NACK's delay; default 0: redelivered at once */
            char *multiplier;    /* decimal >= 1, default "2": each next delay */
            uint64_t max_ms;     /* default 1h: no delay beyond it */
        } redelivery_delay;      /* architecture §13 "Delayed redelivery" */
        char *retry_topic; /* pattern with {name} and {n}/{index}/{delay}, "{name}.retry.{n}" */
    } queues;

    struct {
        bool enabled;        /* run this node's scheduler, default true */
        char *topic;         /* the delay topic under kafka.topic_prefix, "kbridge.scheduled" */
        char *group;         /* the schedulers' consumer group, "kbridge.scheduler" */
        uint32_t max_held;   /* records held in memory before pausing, default 100000 */
        uint32_t partitions; /* partitions when kbridged creates the delay topic, default 4 */
    } scheduler;

    struct {
        uint32_t max_backlog;  /* non-durable topic subscriber backlog, default 10000 */
        char *slow_subscriber; /* "drop-oldest" (default) or "disconnect" */
    } topics;

    struct {
        uint32_t max_outstanding; /* requests remembered, default 100000 */
        uint64_t remember_ms;     /* how long, default 10m */
        bool local;               /* replies to this node's temp queues in memory, default true */
    } replies;

    struct {
        uint32_t producers;       /* pooled transactional producers per node, default 4 */
        uint32_t max_messages;    /* sends held per transaction, default 10000 */
        uint64_t max_bytes;       /* their bodies, default 16MiB */
        uint64_t timeout_ms;      /* an open transaction's lifetime, default 60s */
        uint64_t call_timeout_ms; /* each blocking Kafka transaction call, default 30s */
        bool exactly_once; /* acked offsets committed in the Kafka transaction, default off */
    } transactions;

    struct {
        uint32_t threads; /* worker pool threads (password checks, Kafka calls), default 2 */
    } workers;

    struct {
        uint32_t peek_max;      /* most records one peek returns, default 100 */
        uint32_t redrive_batch; /* records per redrive job (confirmed, then committed) */
        uint32_t redrive_debug_batch_delay_ms; /* debug: pause between batches, default 0 */
    } dlq;

    struct {
        uint64_t max_frame_size;              /* bytes, default 1MiB */
        uint64_t max_message_size;            /* bytes, default 1MiB */
        uint32_t max_headers;                 /* default 64 */
        uint32_t max_connections;             /* default 10000 */
        uint32_t max_unconfirmed;             /* default 1000 */
        uint32_t max_unacked;                 /* deliveries unsettled per connection, 100000 */
        uint64_t heartbeat_ms;                /* default 10s */
        uint64_t protocol_detect_timeout_ms;  /* shared listener: wait for first bytes, 10s */
        uint32_t protocol_detect_bytes;       /* shared listener: most bytes peeked, 256 */
        uint64_t tls_handshake_timeout_ms;    /* TLS listener: handshake deadline, 10s */
        uint64_t handshake_timeout_ms;        /* WebSocket upgrade, STOMP CONNECT, AMQP open: 10s */
        uint32_t max_subscriptions;           /* per connection (AMQP: links), default 1024 */
        uint32_t max_connections_per_address; /* default 0: no limit */
        uint32_t max_connections_per_user;    /* default 0: no limit */
        uint32_t max_auth_failures_per_minute; /* per source address, default 10; 0: off */
        uint64_t auth_failure_delay_ms;        /* before refusing a throttled login, 1s */
    } limits;

    struct {
        enum log_level level;   /* default info */
        enum log_format format; /* default text */
    } log;

    uint64_t shutdown_grace_ms; /* default 10s: how long SIGTERM waits for Kafka */

    /* The adapters' sections, in the order they were handed to the loader. */
    struct config_section_values *sections;
    size_t section_count;
};

/* Load and validate `path`. On success returns 0 and *out owns a new config
 * (free with config_free). On failure returns -1 and writes one line into
 * err: "FILE:LINE: KEY: reason" (or "FILE: reason" when unreadable). */
int config_load(const char *path, struct config **out, char *err, size_t err_size);

/* Same as config_load, from a YAML text in memory; `name` stands in for the
 * file name in messages. */
int config_load_string(const char *name, const char *yaml, size_t len, struct config **out,
                       char *err, size_t err_size);

/* Same as config_load / config_load_string, also accepting the top-level
 * sections of `sections` (count of them; NULL when 0): their keys are
 * parsed into each section's struct, with defaults for keys and sections the
 * file leaves out, and their aliases are accepted. Unknown keys in a section
 * are refused with the full key ("stomp.heartbeat_mn"). A section whose name
 * is a shared top-level key, or two of one name, is refused. */
int config_load_sections(const char *path, const struct config_section *const *sections,
                         size_t count, struct config **out, char *err, size_t err_size);
int config_load_string_sections(const char *name, const char *yaml, size_t len,
                                const struct config_section *const *sections, size_t count,
                                struct config **out, char *err, size_t err_size);

/* Add to a loaded `config` every section of `sections` it lacks, with its
 * defaults (the server does this for its adapters, so a config loaded
 * without sections still serves them). 0 ok; -1 with err on out of memory,
 * a section that clashes with a shared key, or a default that does not
 * parse. */
int config_add_sections(struct config *config, const struct config_section *const *sections,
                        size_t count, char *err, size_t err_size);

/* The values of the section called `name` (a pointer to the struct its rows
 * fill, owned by config), or NULL when config was loaded without it. */
const void *config_section_values(const struct config *config, const char *name);

/* The listener named `name` ("stomp"), or NULL when the file has none. */
const struct config_listener *config_listener_find(const struct config *config, const char *name);

/* The vhost named `name` ("/" always exists), or NULL: not configured. */
const struct config_vhost *config_vhost_find(const struct config *config, const char *name);

/* Free a config and everything it owns; NULL is fine. */
void config_free(struct config *config);

/* Parse "1MiB", "512KiB", "10", "2GiB", "100B" into bytes; 0 ok, -1 bad. */
int config_parse_size(const char *text, uint64_t *out);

/* Parse "250ms", "10s", "30m", "2h" (a bare number is seconds) into ms; 0 ok, -1 bad. */
int config_parse_duration(const char *text, uint64_t *out_ms);

/* Compare an old and a new config for reload: writes into `out` (a new config
 * the caller keeps) the restart-only values of `old` (node_id, kafka.*,
 * listeners.*, and section keys flagged CONFIG_KEY_RESTART in sections both
 * hold), logging a warning for each that differs. Users, ACLs, queues,
 * limits, log, shutdown_grace and the other section keys take the new values. */
void config_apply_live(const struct config *old, struct config *out);

/* Write the key reference (Markdown) to `stream`: the shared keys, then the
 * keys of each of `sections` (count of them; main passes the built-in
 * adapters'); used to generate docs/configuration.md and to check it is
 * current. */
void config_write_reference(FILE *stream, const struct config_section *const *sections,
                            size_t count);

#endif
