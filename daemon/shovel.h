/* SPDX-License-Identifier: Apache-2.0 */
/* shovel.h -- the shovels' shared status (architecture §15): one entry per
 * configured shovel with its state, what it moved, its last error, and its
 * metrics (kbridge_shovel_*{shovel="NAME"}). Protocol-free: the shovels
 * themselves live with the adapter of their legacy protocol
 * (adapters/stomp/stomp_shovel.c, adapters/amqp/amqp_shovel.c) and report
 * here; the admin API (admin_shovel.c) and /metrics read it. The server owns
 * the table and hands it to the adapters (adapter_context.shovels). Also
 * what both clients share: their settings copied from the config, the
 * reconnect back-off and the passcode_file reader. Loop thread only
 * (shovel_read_passcode: any thread). */
#ifndef KBRIDGE_SHOVEL_H
#define KBRIDGE_SHOVEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct config_shovel;
struct metrics;
struct shovel_table;

enum shovel_state {
    SHOVEL_CONNECTING, /* connecting, or waiting to reconnect (last_error says why) */
    SHOVEL_RUNNING,    /* both ends open: messages move */
    SHOVEL_BLOCKED,    /* connected, but the kbridge end refuses or is unavailable */
    SHOVEL_STATE_COUNT,
};

#define SHOVEL_TEXT_MAX 600
#define SHOVEL_ERROR_MAX 512

/* One shovel's status. Strings are NUL-terminated copies. */
struct shovel_status {
    char name[65];
    char source[SHOVEL_TEXT_MAX];      /* "stomp://127.0.0.1:61613/queue/x", "kbridge:/queue/x" */
    char destination[SHOVEL_TEXT_MAX]; /* the same shape */
    enum shovel_state state;
    uint64_t since_ms;                 /* wall clock ms when `state` was entered */
    char last_error[SHOVEL_ERROR_MAX]; /* "" while none */
    uint64_t last_error_ms;
    /* Metrics (pointers into the registry; NULL-safe helpers below). */
    uint64_t *moved;      /* kbridge_shovel_messages_total: confirmed at the destination,
                             acknowledged at the source */
    uint64_t *duplicates; /* kbridge_shovel_duplicates_total: redeliveries seen */
    uint64_t *reconnects; /* kbridge_shovel_reconnects_total */
    double *state_gauges[SHOVEL_STATE_COUNT]; /* kbridge_shovel_state{state=...}: 1 / 0 */
};

/* New empty table registering its series in `metrics` (borrowed; it must
 * outlive the table). NULL when out of memory. */
struct shovel_table *shovel_table_new(struct metrics *metrics);
/* Free the table and its entries; NULL is fine. */
void shovel_table_free(struct shovel_table *table);

/* Add a status entry for `config` (copied) in state connecting and register
 * its metrics. The table owns it; NULL when out of memory. */
struct shovel_status *shovel_status_add(struct shovel_table *table,
                                        const struct config_shovel *config);

/* Entries, in the order added. */
size_t shovel_table_count(const struct shovel_table *table);
const struct shovel_status *shovel_table_at(const struct shovel_table *table, size_t index);

/* Enter `state` (since_ms moves only when it changes); `error` (may be
 * NULL) becomes last_error. */
void shovel_status_set(struct shovel_status *status, enum shovel_state state, const char *error);
/* Count one message moved / one redelivery seen / one reconnect. */
void shovel_status_moved(struct shovel_status *status);
void shovel_status_duplicate(struct shovel_status *status);
void shovel_status_reconnect(struct shovel_status *status);

/* "running", "connecting", "blocked" (static). */
const char *shovel_state_name(enum shovel_state state);
/* A shovel end as text: "kbridge:/queue/x", "stomp://HOST:PORT/queue/x",
 * "amqp://HOST:PORT/orders" (a slash added before an address without one). */
void shovel_end_text(const char *protocol, const char *address, const char *destination, char *out,
                     size_t out_size);

/* A shovel's settings, copied from its config entry (the config may be
 * reloaded under it), and its reconnect back-off. The strings are owned
 * (NULL when not configured); the passcode is wiped when cleared. */
struct shovel_settings {
    bool to_kbridge; /* legacy source -> kbridge destination */
    char *name;
    char *address, *host, *login, *passcode, *passcode_file; /* the legacy end */
    char *legacy_destination;                                /* the broker's address or queue */
    char *kbridge_text;                                      /* "/queue/x" */
    char *user;                                              /* the kbridge user ("anonymous") */
    uint32_t prefetch;
    uint64_t delay_initial_ms, delay_max_ms;
    uint64_t delay_ms; /* the next reconnect's wait */
    uint64_t heartbeat_ms, timeout_ms;
    uint32_t connects; /* shovel_prepare_start calls: which of a name's addresses is next */
};

/* Copy `config`'s entry into `settings` (zeroed first). 0, or -1 with err
 * naming the shovel (out of memory; then nothing needs clearing). */
int shovel_settings_copy(struct shovel_settings *settings, const struct config_shovel *config,
                         char *err, size_t err_size);
/* Free the copies (the passcode wiped first); zeroes `settings`. */
void shovel_settings_clear(struct shovel_settings *settings);
/* Replace the passcode (the old one wiped); takes `passcode` (malloc'd). */
void shovel_settings_set_passcode(struct shovel_settings *settings, char *passcode);
/* The wait before the next reconnect; the one after is doubled, up to
 * reconnect_delay_max. */
uint64_t shovel_backoff_next(struct shovel_settings *settings);
/* A message moved: the next reconnect waits reconnect_delay_initial again. */
void shovel_backoff_reset(struct shovel_settings *settings);

/* The first line of the file at `path` (a passcode_file), malloc'd (the
 * caller wipes and frees it); NULL with err naming the file. Blocks on the
 * file system: new code calls it on a worker thread. */
char *shovel_read_passcode(const char *path, char *err, size_t err_size);

/* ---- the kbridge end ----------------------------------------------------------- */

struct address_spelling;
struct core;
struct core_session;
struct destination;

/* Open a shovel's kbridge end, the same for every legacy protocol: parse
 * settings->kbridge_text with the adapter's `spelling` into `destination`
 * (no wildcards), open its core session (protocol "shovel", settings->user,
 * peer "shovel:NAME") and add its status entry to `table`. 0, or -1 with
 * err naming the shovel; *session and *status may be set then (the caller
 * frees its shovel as after any failure: core_session_close takes NULL). */
int shovel_kbridge_open(const struct shovel_settings *settings, const struct config_shovel *config,
                        const struct address_spelling *spelling, struct core *core,
                        struct shovel_table *table, struct destination *destination,
                        struct core_session **session, struct shovel_status **status, char *err,
                        size_t err_size);

/* ---- before each connect: off the loop ---------------------------------------- */

struct worker_pool;
struct shovel_prepare;

/* What a shovel needs before it connects, found on the worker pool: its
 * address resolved (an IP literal parsed, a host name through getaddrinfo,
 * which blocks; a name with several addresses gives the next one at each
 * connect, so a dual-stack name whose first address refuses still works)
 * and its passcode_file read (again at every connect, so a
 * rotated secret is picked up). */
struct shovel_target {
    struct sockaddr_storage address;
    int address_len;
    char *passcode; /* passcode_file's first line (malloc'd), or NULL without one */
};
/* On the loop: `target` (the callee may take target->passcode, setting it
 * to NULL; the rest is wiped and freed after the call), or NULL and the
 * error naming the address or the file. */
typedef void (*shovel_prepared_fn)(void *opaque, struct shovel_target *target, const char *error);
/* Start preparing `settings`' next connect on `workers`; `done` comes
 * later, never inside this call. NULL with err when it cannot start (out
 * of memory, no pool). */
struct shovel_prepare *shovel_prepare_start(struct worker_pool *workers,
                                            struct shovel_settings *settings,
                                            shovel_prepared_fn done, void *opaque, char *err,
                                            size_t err_size);
/* The shovel is going away or reconnecting otherwise: `done` is not called. */
void shovel_prepare_cancel(struct shovel_prepare *prepare);

/* ---- at stop: the last frames out ------------------------------------------- */

struct bufferevent;

/* Write what the socket bufferevent `bev`'s output holds straight to its
 * socket, waiting for the socket at most timeout_ms (the loop that would
 * write it has stopped). For a connection closed on purpose right after, so
 * its last acks and outcomes reach the broker. Returns the bytes left
 * unwritten (0 when everything went). */
size_t shovel_socket_flush(struct bufferevent *bev, uint64_t timeout_ms);
/* Told what the broker sent while lingering (what `bev`'s input held
 * first); true once it holds the broker's goodbye (its close frame, the
 * DISCONNECT's receipt). */
typedef bool (*shovel_goodbye_fn)(void *opaque, const char *bytes, size_t size);
/* Half-close `bev`'s socket and read what the broker still sends until it
 * closes too or `goodbye` (may be NULL) says it answered, at most
 * timeout_ms. Closing a socket with unread input sends a reset, and a reset
 * makes the broker's kernel drop what its process had not read yet: the
 * last outcomes. Blocks; during shutdown only. true when the broker closed
 * or answered in time. */
bool shovel_socket_linger(struct bufferevent *bev, uint64_t timeout_ms, shovel_goodbye_fn goodbye,
                          void *opaque);

#endif
