/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_connection.h -- one STOMP client connection: its socket
 * (bufferevent), parser, negotiated version, core session, subscriptions,
 * publishes awaiting Kafka's confirmation, heart-beat timers and
 * backpressure state. The state machine and thresholds are described at the
 * top of stomp_connection.c.
 *
 * Lifetime: created by the adapter on accept; stomp_connection_close() starts
 * the end (flush what is queued, then free); the struct is freed only from
 * the adapter's reap event, never inside one of its own callbacks, so every
 * callback may close the connection and then return normally. */
#ifndef KBRIDGE_STOMP_CONNECTION_H
#define KBRIDGE_STOMP_CONNECTION_H

#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "address.h"
#include "clock.h"
#include "core.h"
#include "stomp_adapter.h"
#include "stomp_frame.h"
#include "u64_map.h"

struct bufferevent;
struct core_session;
struct core_subscription;
struct event;
struct sockaddr;

/* Named thresholds (see the comment at the top of stomp_connection.c). */
#define STOMP_PREAUTH_MAX_FRAME (64 * 1024) /* frame size cap until CONNECTED */
#define STOMP_MAX_HEADER_LINE (64 * 1024)   /* one header line (capped by max_frame_size) */
#define STOMP_DEFAULT_PREFETCH 1000         /* when SUBSCRIBE names none */

enum stomp_state {
    STOMP_STATE_CONNECTING, /* waiting for CONNECT/STOMP; no session */
    STOMP_STATE_CONNECTED,  /* CONNECTED sent; frames are dispatched */
    STOMP_STATE_CLOSING,    /* last frame queued: flushing, then freed; reads nothing */
};

enum stomp_ack_mode {
    STOMP_ACK_AUTO,              /* settled by the core as it is sent */
    STOMP_ACK_CLIENT,            /* ACK is cumulative */
    STOMP_ACK_CLIENT_INDIVIDUAL, /* ACK settles one message */
};

/* A delivery the client still has to ACK or NACK, kept in delivery order. */
struct stomp_unacked {
    struct stomp_unacked *prev;
    struct stomp_unacked *next;
    uint64_t delivery_id; /* core_delivery.id */
    uint64_t seq;         /* per-subscription number: the ack id is "S<sub seq>-<seq>" */
    char message_id[];    /* the MESSAGE's message-id (1.0/1.1 ACK by message-id) */
};

struct stomp_subscription {
    struct stomp_connection *connection;
    struct stomp_subscription *prev;
    struct stomp_subscription *next;
    struct stomp_subscription *id_next; /* next with the same id key (subscriptions_by_id) */
    struct core_subscription *core;     /* NULL until core_subscribe returned */
    char *id;                           /* the STOMP subscription id */
    char *destination_text;             /* the destination as the client wrote it */
    struct destination destination;
    uint32_t seq; /* connection-unique number, in ack ids */
    enum stomp_ack_mode ack_mode;
    bool settles;                       /* deliveries carry ids to settle (not a plain topic) */
    bool ready;                         /* the core called ready */
    bool blocked;                       /* last value given to core_subscription_block */
    char *receipt;                      /* SUBSCRIBE receipt, sent from ready (NULL when none) */
    uint64_t next_seq;                  /* ack id numbers */
    struct stomp_unacked *unacked_head; /* oldest first */
    struct stomp_unacked *unacked_tail;
    size_t unacked_count;
    struct u64_map unacked_by_seq; /* seq -> struct stomp_unacked: a 1.2 ACK's lookup */
    /* A temporary queue (/temp-queue/NAME): replies to reply_address. */
    bool temporary;
    char reply_address[CORE_REPLY_ADDRESS_MAX];
};

/* A SEND handed to the core, waiting for its outcome. Owned by the
 * connection's base until stomp_send_done (exactly once: Kafka's answer, or
 * CONNECTION_PUBLISH_ABANDONED when the connection is freed first). */
struct stomp_publish {
    struct connection_publish base; /* first: linked on the connection's base */
    char *receipt;                  /* receipt header of the SEND, or NULL */
    bool commit;                    /* a COMMIT (destination holds the transaction's name) */
    char destination[];             /* as the client wrote it, for error messages */
};

/* An open transaction of the connection (BEGIN .. COMMIT/ABORT,
 * stomp_handle_transaction.c, architecture §8): the core's transaction
 * under the client's name. A COMMIT hands it to a struct stomp_publish
 * (commit = true), so the RECEIPT waits as a SEND's does. */
struct stomp_transaction {
    struct stomp_transaction *next;
    struct stomp_connection *connection;
    struct core_transaction *core;
    char name[];
};

/* What a CONNECT keeps for its password check's answer
 * (stomp_handle_connect.c): allocated apart, from CONNECT until CONNECTED is
 * sent (or with the connection), so established connections do not carry it. */
struct stomp_connect_wait {
    enum stomp_version version;
    char heartbeat[32]; /* the negotiated heart-beat header of CONNECTED */
    char *receipt;      /* CONNECT's receipt header, for the ERROR's receipt-id */
    char *login;        /* CONNECT's login header (NULL: none), for the ERROR */
    char *vhost;        /* CONNECT's host when it names a configured vhost, else NULL: "/" */
};

/* Free a stomp_connect_wait (NULL: nothing). */
void stomp_connect_wait_free(struct stomp_connect_wait *wait);

/* One per client connection, idle ones included: keep it within 512 bytes
 * (464 on x86-64), jemalloc's next size class being 640. */
struct stomp_connection {
    struct connection base; /* first: transport, list, close, publishes (connection.h) */
    struct stomp_adapter *adapter;
    struct stomp_parser *parser;
    enum stomp_state state;
    enum stomp_version version; /* negotiated at CONNECT (1.0 until then) */
    bool refused;               /* over max_connections: ERROR then close */
    bool reading;               /* EV_READ is enabled */

    /* CONNECT waiting for its password check (core_authenticate_start):
     * nothing more is parsed until the answer. */
    struct core_auth *auth;
    struct stomp_connect_wait *connect; /* from CONNECT until CONNECTED is sent */

    /* After CONNECT. */
    struct core_session *session;
    char *user;      /* the logged-in user (NULL until CONNECT was accepted) */
    char *client_id; /* CONNECT client-id, or NULL */
    char session_id[48];

    /* Subscriptions (doubly linked, in subscribe order). */
    struct stomp_subscription *subscriptions;
    size_t subscription_count;
    uint32_t next_subscription_seq;
    struct u64_map subscriptions_by_seq; /* seq -> struct stomp_subscription */
    struct u64_map subscriptions_by_id;  /* u64_map_string_key(id) -> first of an id_next chain */
    bool deliveries_blocked;             /* output above the high watermark */

    /* Publishing (the publishes waiting for Kafka are on base.publishes). */
    bool publish_paused;            /* reading stopped: unconfirmed >= max_unconfirmed */
    struct stomp_frame *busy_frame; /* a SEND refused with CORE_ERR_BUSY, to retry */
    struct event *process_event;    /* zero-timeout: parse buffered input */

    /* Open transactions (BEGIN without COMMIT/ABORT yet). */
    struct stomp_transaction *transactions;

    /* DISCONNECT: wait for every publish to be confirmed, then RECEIPT. */
    bool eof_pending; /* the client closed while frames waited unparsed (paused) */
    bool disconnecting;
    char *disconnect_receipt;

    /* Heart-beating (stomp_heartbeat.c). */
    uint32_t heartbeat_send_ms; /* we send at least this often (0: never) */
    uint32_t heartbeat_recv_ms; /* the client sends at least this often (0: not checked) */
    uint64_t last_received_ms;  /* monotonic, any byte */
    uint64_t last_sent_ms;      /* monotonic, any frame or EOL */
    struct event *heartbeat_send_timer;
    struct event *heartbeat_recv_timer; /* also the CONNECT timeout */

    /* Counters for the close line. */
    uint64_t frames_in;
    uint64_t frames_out;
};

/* ---- lifecycle (stomp_connection.c) ----------------------------------------- */

/* Begin closing: stop reading and deliveries, flush what is queued, then
 * linger and free from the reap event (connection_flush_then_close). `reason` is a static string
 * for the log. Safe to call more than once and from any callback. */
void stomp_connection_close(struct stomp_connection *connection, const char *reason);
/* The adapter base's hooks for a STOMP connection (stomp_connection.c). */
extern const struct connection_ops stomp_connection_ops;
/* Parser limits for the current state and config: frames are capped at
 * STOMP_PREAUTH_MAX_FRAME until CONNECTED. Called after CONNECT and on reload. */
void stomp_connection_reconfigure(struct stomp_connection *connection);
/* A SEND's outcome (connection_ops.publish_done, stomp_handle_send.c). */
void stomp_send_done(struct connection_publish *publish, int result, const char *reason);

/* ---- writing ----------------------------------------------------------------- */

/* Queue one frame. Bumps metrics and heart-beat time, and blocks deliveries
 * when the output passes the high watermark. Nothing is written once
 * CLOSING. 0, or -1 when the frame could not be queued. */
int stomp_connection_write(struct stomp_connection *connection, enum stomp_command command,
                           const struct stomp_header *headers, size_t header_count,
                           const void *body, size_t body_len);
/* RECEIPT with receipt-id. */
void stomp_connection_send_receipt(struct stomp_connection *connection, const char *receipt_id);
/* Queue a heart-beat EOL. */
void stomp_connection_write_heartbeat(struct stomp_connection *connection);

/* A stomp_header for a NUL-terminated name and value. */
struct stomp_header stomp_header_make(const char *name, const char *value);

/* ---- reading and flow control ----------------------------------------------------- */

/* Re-evaluate whether the socket should be read (state, DISCONNECT, publish
 * backpressure, busy frame, drain) and enable/disable EV_READ accordingly;
 * when reading resumes with buffered input, parse it from a zero-timeout event. */
void stomp_connection_update_reading(struct stomp_connection *connection);
/* A publish of this connection was confirmed or failed (called after the
 * bookkeeping): resume reading at half of max_unconfirmed, retry a busy
 * frame, finish a DISCONNECT. */
void stomp_connection_publish_done(struct stomp_connection *connection);
/* Block or unblock deliveries for every subscription. */
void stomp_connection_block_deliveries(struct stomp_connection *connection, bool blocked);

/* ---- subscriptions ----------------------------------------------------------------- */

struct stomp_subscription *stomp_connection_find_subscription(struct stomp_connection *connection,
                                                              const char *id);
struct stomp_subscription *
stomp_connection_find_subscription_seq(struct stomp_connection *connection, uint32_t seq);
/* Number a new subscription (its `seq`, unique on the connection) and link
 * it first in the connection's list and its seq and id maps (its `id` is
 * set and unused on the connection). 0, or -1 when out of memory (nothing
 * linked). */
int stomp_connection_add_subscription(struct stomp_connection *connection,
                                      struct stomp_subscription *subscription);
/* End a subscription (core_unsubscribe when it has a core side) and free it. */
void stomp_subscription_remove(struct stomp_subscription *subscription);
/* Forget one unacked delivery (after settling it). */
void stomp_subscription_forget(struct stomp_subscription *subscription,
                               struct stomp_unacked *unacked);

/* ---- heart-beating (stomp_heartbeat.c) ----------------------------------------------- */

/* Arm the CONNECT timeout (limits.handshake_timeout). 0, or -1 on failure. */
int stomp_heartbeat_arm_connect_timeout(struct stomp_connection *connection);
/* Negotiate from the CONNECT heart-beat header (NULL: "0,0") and
 * limits.heartbeat_ms; writes our answer ("sx,sy") into reply. 0, or -1 when
 * the header is malformed. */
int stomp_heartbeat_negotiate(struct stomp_connection *connection, const char *header, char *reply,
                              size_t reply_size);
/* Start the timers for the negotiated intervals (replaces the CONNECT timeout). */
int stomp_heartbeat_start(struct stomp_connection *connection);
/* Disarm the timers (safe inside their callbacks). */
void stomp_heartbeat_stop(struct stomp_connection *connection);
/* Free the timers (stomp_connection_free only). */
void stomp_heartbeat_free(struct stomp_connection *connection);

#endif
