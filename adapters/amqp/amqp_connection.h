/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_connection.h -- one AMQP 1.0 client connection: its socket
 * (bufferevent), proton's connection driver, the core session, the links
 * and the publishes awaiting Kafka's confirmation. The I/O loop and the
 * close sequence are described at the top of amqp_connection.c; links are in
 * amqp_link_in.c (the client sends) and amqp_link_out.c (the client receives).
 *
 * Lifetime: created by the adapter on accept; freed only from the adapter's
 * reap event, never inside one of its own callbacks, so every handler may
 * close the connection and return normally. */
#ifndef KBRIDGE_AMQP_CONNECTION_H
#define KBRIDGE_AMQP_CONNECTION_H

#include <event2/util.h>
#include <proton/condition.h>
#include <proton/connection_driver.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "address.h"
#include "amqp_adapter.h"
#include "core.h"

struct bufferevent;
struct core_session;
struct core_subscription;
struct event;
struct sockaddr;

/* Named limits and timings (see amqp_connection.c and docs/amqp.md). */
#define AMQP_MAX_SESSIONS 256       /* per connection (channel-max) */
#define AMQP_IN_CREDIT_WINDOW 500   /* credit granted per sending link, at most */
#define AMQP_OUT_PREFETCH_MAX 10000 /* unsettled deliveries per receiving link, at most */
#define AMQP_DRAIN_QUIET_MS 200     /* drain ends after this long without a delivery */
#define AMQP_MESSAGE_OVERHEAD 65536 /* encoded sections allowed beyond max_message_size */

/* A link the client attached. `outgoing`: kbridge sends on it (the client
 * receives from a source); otherwise the client sends to a target. */
struct amqp_link {
    struct amqp_connection *connection;
    struct amqp_link *prev;
    struct amqp_link *next;
    pn_link_t *link;
    bool outgoing;
    bool closed;      /* detached by either side: ignore further events */
    bool relay;       /* incoming with a null target: per-message `to` */
    bool dynamic;     /* outgoing from a dynamic source: a temporary queue */
    bool coordinator; /* incoming to a transaction coordinator (amqp_tx.c) */
    struct destination destination;
    char address[CORE_REPLY_ADDRESS_MAX]; /* as the client wrote it (or we assigned it) */

    /* Incoming. */
    uint32_t pending; /* publishes of this link waiting for Kafka */
    uint32_t number;  /* the core's producer number: one partition per link (architecture §3) */
    /* A transfer Kafka's producer queue had no room for (CORE_ERR_BUSY):
     * its encoded message (owned), its delivery (unsettled meanwhile); the
     * link's later transfers wait in proton and it gets no credit until
     * the held one went (amqp_link_in_retry_held, from the adapter base) */
    char *held;
    size_t held_len;
    pn_delivery_t *held_delivery;

    /* Outgoing. */
    struct core_subscription *core;
    bool ready;       /* the core positioned the subscription; attach answered */
    bool auto_accept; /* snd-settle-mode settled: deliveries go pre-settled */
    bool browse;      /* distribution-mode copy on a queue: a browser (architecture §13) */
    bool blocked;     /* last value given to core_subscription_block */
    struct event *drain_timer;
};

/* A transfer handed to the core, waiting for its outcome. Owned by the
 * connection's base until amqp_link_in_done (exactly once: Kafka's answer,
 * or CONNECTION_PUBLISH_ABANDONED when the connection is freed first). */
struct amqp_publish {
    struct connection_publish base; /* first: linked on the connection's base */
    struct amqp_link *link;         /* NULL once the link is gone */
    pn_delivery_t *delivery;        /* NULL when pre-settled or the link is gone */
    bool discharge;                 /* a transaction's commit (amqp_tx.c), not a message */
    char destination[ADDRESS_NAME_MAX + 32];
};

struct amqp_connection {
    struct connection base; /* first: transport, list, close, publishes (connection.h) */
    struct amqp_adapter *adapter;

    pn_connection_driver_t driver;
    bool driver_ok;
    bool refused; /* over a connection limit: open, close with resource-limit-exceeded */
    const char *refused_limit;   /* that limit's key ("limits.max_connections"), static */
    uint32_t refused_value;      /* and its value */
    bool header_checked;         /* the first 5 bytes are not the TLS protocol header (id 2) */
    bool output_blocked;         /* deliveries blocked: output above the high mark */
    struct event *process_event; /* zero-timeout: run proton and flush */
    struct event *tick_timer;    /* proton's idle-timeout deadline */
    struct event *open_timer;    /* limits.handshake_timeout until the client's open */

    struct core_auth *auth; /* SASL PLAIN/ANONYMOUS check on its way (core_authenticate_start) */
    char auth_mechanism[16];
    char auth_login[256];
    struct core_session *session; /* after the client's open */
    char user[128];
    char container_id[256];

    struct amqp_link *links;
    size_t link_count;
    uint32_t links_attached; /* ever: numbers the links */
    uint64_t next_tag;

    uint64_t transfers_in;
    uint64_t transfers_out;

    struct amqp_txn *txns; /* declared transactions (amqp_tx.c) */
    uint32_t next_txn;     /* the last txn-id given */
};

/* ---- lifecycle (amqp_connection.c) ---------------------------------------------- */

/* Run proton's pending events and flush its output soon (from a zero-timeout
 * event, so many core callbacks make one write). Safe anywhere. */
void amqp_connection_schedule(struct amqp_connection *connection);
/* Close with an error condition (NULL name: a clean close). Safe anywhere. */
void amqp_connection_close(struct amqp_connection *connection, const char *condition,
                           const char *description);
/* The adapter base's hooks for an AMQP connection (amqp_connection.c). */
extern const struct connection_ops amqp_connection_ops;
/* A publish finished: update credit of every incoming link. */
void amqp_connection_update_credit(struct amqp_connection *connection);

/* Set `condition` (name + printf description) on a proton condition. */
void amqp_condition_set(pn_condition_t *condition, const char *name, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- handlers (one per kind of event) ---------------------------------------------- */

/* amqp_handle_open.c: the client's open (authenticated by SASL) -> session, our open. */
void amqp_handle_connection_open(struct amqp_connection *connection);
/* amqp_handle_attach.c: a link the client attached; a link the client
 * detached (closed: detach with closed=true, else a plain detach to echo). */
void amqp_handle_link_open(struct amqp_connection *connection, pn_link_t *link);
void amqp_handle_link_close(struct amqp_connection *connection, pn_link_t *link, bool closed);
/* Refuse an attach: answer with a null terminus and detach with the condition. */
void amqp_link_refuse(struct amqp_connection *connection, pn_link_t *link,
                      enum amqp_error_kind kind, const char *condition, const char *format, ...)
    __attribute__((format(printf, 5, 6)));
/* End our side of a link: unsubscribe, forget publishes, free the struct. */
void amqp_link_free(struct amqp_link *link);

/* amqp_tx.c: transactions (architecture §8). A control message (declare,
 * discharge) on a coordinator link. */
void amqp_tx_control(struct amqp_link *link, pn_delivery_t *delivery, pn_message_t *message);
/* A transfer with transactional-state: held by its transaction (settled
 * transactional-state accepted; or rejected naming why, *rc CORE_OK), or
 * refused by the core (*rc and err: the caller rejects it); true. False:
 * not transactional. */
bool amqp_tx_publish(struct amqp_link *link, pn_delivery_t *delivery,
                     const struct destination *destination, const struct core_message *message,
                     int *rc, char *err, size_t err_size);
/* A receiver's disposition with transactional-state for core delivery `id`:
 * 0 not transactional; 1 held by its transaction (or released when it names
 * none): settle the delivery; 2 no outcome yet: leave it. */
int amqp_tx_settle(struct amqp_link *link, pn_delivery_t *delivery, uint64_t id);
/* Free the connection's transaction records (after core_session_close
 * aborted their core transactions). */
void amqp_txns_free(struct amqp_connection *connection);

/* amqp_link_in.c: the client sends. */
int amqp_link_in_open(struct amqp_link *link);
void amqp_link_in_delivery(struct amqp_link *link, pn_delivery_t *delivery);
void amqp_link_in_update_credit(struct amqp_link *link);
/* Publish the link's held transfer again; once it went, read the transfers
 * that waited behind it and give credit again. */
void amqp_link_in_retry(struct amqp_link *link);
/* Free what a held transfer keeps (the link is going away). */
void amqp_link_in_forget_held(struct amqp_link *link);
/* connection_ops.publish_retry: every link's held transfer again. */
void amqp_link_in_retry_held(struct connection *base);
/* A transfer's outcome (connection_ops.publish_done). */
void amqp_link_in_done(struct connection_publish *publish, int result, const char *reason);
/* Publishes of `link` lose their link and delivery (the link is going away). */
void amqp_publishes_detach(struct amqp_connection *connection, struct amqp_link *link);

/* amqp_link_out.c: the client receives, only what `selector` (a JMS selector
 * from the source's filter set, or NULL) selects, from `stream_offset` (an
 * x-stream-offset spelling, or NULL: from now on); the caller keeps both. 0
 * when the subscription is being set up (the attach is answered from the
 * core's ready callback), -1 when the link was refused. */
int amqp_link_out_open(struct amqp_link *link, const char *durable_name, const char *selector,
                       const char *stream_offset);
void amqp_link_out_flow(struct amqp_link *link);
void amqp_link_out_disposition(struct amqp_link *link, pn_delivery_t *delivery);
/* Re-evaluate whether the core may deliver (credit, output, drain). */
void amqp_link_out_update_block(struct amqp_link *link);
void amqp_link_out_close(struct amqp_link *link);

#endif
