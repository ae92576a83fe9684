/* SPDX-License-Identifier: Apache-2.0 */
/* amqp091_connection.h -- one AMQP 0-9-1 client connection and its
 * channels (architecture §12): the adapter's struct, the connection's
 * state (handshake, negotiated limits, heartbeats, core session), its
 * channels (content being assembled, publisher confirms, consumers and
 * the deliveries waiting for an ack), and the calls between
 * amqp091_connection.c (I/O, connection class, heartbeats), and
 * amqp091_channel.c (channel, exchange, queue, basic, confirm, tx
 * classes).
 *
 * Lifetime: as every adapter's connection (connection.h): freed only from
 * the base's reap event. A channel is freed when it closes (or with its
 * connection); answers that come later (a declare, a publish's
 * confirmation) find it by number and generation, and are dropped when it
 * is gone. Everything runs on the loop thread. */
#ifndef KBRIDGE_AMQP091_CONNECTION_H
#define KBRIDGE_AMQP091_CONNECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "amqp091_frame.h"
#include "connection.h"
#include "core.h"
#include "u64_map.h"

struct event;

/* What Tune offers is the `amqp091` config section's (amqp091_config.h);
 * header to Open must take at most limits.handshake_timeout. */
#define AMQP091_CLOSE_OK_TIMEOUT_MS 2000 /* wait this long for Close-Ok after our Close */
#define AMQP091_DEFAULT_PREFETCH 1000    /* credit of a consumer when basic.qos gave none */
#define AMQP091_MAX_CONSUMERS 1024       /* per channel */
/* RabbitMQ's direct reply-to pseudo-queue: consumed with no-ack, named in
 * a publish's reply_to (docs/amqp091.md "Direct reply-to"). */
#define AMQP091_DIRECT_REPLY_TO "amq.rabbitmq.reply-to"
/* What a responder may publish to on the default exchange to answer: the
 * reply address the request carried, or RabbitMQ's spelling of a token. */
#define AMQP091_REPLY_QUEUE_PREFIX "/reply-queue/"
#define AMQP091_DIRECT_REPLY_TO_PREFIX "amq.rabbitmq.reply-to."

struct amqp091_adapter {
    struct adapter_base base; /* first (connection.h) */
    uint64_t *frames_received;
    uint64_t *frames_sent;
    uint64_t *channel_errors;
    uint64_t *connection_errors;
    uint64_t *heartbeat_timeouts;
    uint8_t *scratch; /* one encoded frame: AMQP091_FRAME_MAX_LIMIT bytes */
};

enum amqp091_state {
    AMQP091_STATE_HEADER,     /* waiting for the 8-byte protocol header */
    AMQP091_STATE_START_OK,   /* Start sent */
    AMQP091_STATE_AUTH,       /* credentials being checked (worker pool) */
    AMQP091_STATE_TUNE_OK,    /* Tune sent */
    AMQP091_STATE_OPEN,       /* Tune-Ok received, waiting for Open */
    AMQP091_STATE_RUNNING,    /* Open-Ok sent */
    AMQP091_STATE_CLOSE_SENT, /* our Close sent: only Close-Ok is read */
    AMQP091_STATE_CLOSING,    /* flushing, then freed: nothing is read or written */
};

struct amqp091_channel;

/* A consumer (basic.consume) on a channel. */
struct amqp091_consumer {
    struct amqp091_consumer *next;
    struct amqp091_channel *channel;
    struct core_subscription *core; /* NULL until core_subscribe returned */
    bool no_ack;
    bool ready;  /* consume-ok sent */
    bool nowait; /* no consume-ok */
    bool blocked;
    /* Direct reply-to (amq.rabbitmq.reply-to): the channel's temporary
     * queue (core_subscribe_temporary, architecture §7), its reply address
     * ("/reply-queue/TOKEN"); `holding`: the connection reads nothing until
     * the queue is positioned (no reply missed). */
    bool direct_reply;
    bool holding;
    bool getter; /* the channel's basic.get reader (blocked but while a get waits) */
    char reply_address[CORE_REPLY_ADDRESS_MAX];
    char tag[256];
    char queue[ADDRESS_NAME_MAX + 1];
};

/* A delivery the client has to ack, in delivery-tag order. */
struct amqp091_unacked {
    struct amqp091_unacked *prev;
    struct amqp091_unacked *next;
    uint64_t tag;
    uint64_t id; /* core_delivery.id */
    struct amqp091_consumer *consumer;
};

struct amqp091_channel {
    struct amqp091_connection *connection;
    uint16_t number;
    uint64_t generation; /* connection-unique: later answers check it */
    bool closing;        /* our channel.close sent: frames are dropped until close-ok */
    /* basic.publish being assembled from its header and body frames. */
    bool publishing;
    bool header_seen;
    bool mandatory;
    char *exchange;
    char *routing_key;
    uint8_t *header_payload; /* the content-header frame's payload, as sent */
    size_t header_len;
    uint8_t *body;
    uint64_t body_size;
    uint64_t body_received;
    /* Publisher confirms: Kafka's answers come in any order; an answer
     * whose tag continues the answered run moves `confirm_answered` on (the
     * later ones waiting in `confirm_early`); acks of that run go out
     * together on the next loop turn (`confirm_event`) as one basic.ack
     * with `multiple` up to `confirm_answered`; a nack goes out at once. */
    bool confirm;
    uint64_t next_publish_tag;    /* the last tag given */
    uint64_t confirm_answered;    /* every tag up to it has its answer */
    uint64_t confirm_sent;        /* every tag up to it was told to the client */
    uint64_t confirm_acks;        /* acks among the tags after confirm_sent */
    struct u64_map confirm_early; /* tag -> (void *)1 ack / 2 nack, beyond the run */
    struct event *confirm_event;
    /* Consumers and their deliveries. */
    struct amqp091_consumer *consumers;
    size_t consumer_count;
    struct amqp091_consumer *reply_consumer; /* amq.rabbitmq.reply-to's, or NULL */
    /* basic.get: a consumer of the last queue got from, delivering only
     * while a get waits (get_pending, the input held) up to get_wait */
    struct amqp091_consumer *getter;
    bool get_pending;
    bool get_no_ack;
    struct event *get_timer;
    uint16_t prefetch; /* basic.qos prefetch_count for consumers made after it (0: default) */
    uint64_t next_delivery_tag;
    struct amqp091_unacked *unacked_head;
    struct amqp091_unacked *unacked_tail;
    struct u64_map unacked_by_tag;
    char last_queue[ADDRESS_NAME_MAX + 1]; /* queue.declare's: "" names it */
    struct amqp091_tx *tx;                 /* tx mode (amqp091_tx.c), or NULL */
};

struct amqp091_connection {
    struct connection base; /* first (connection.h) */
    struct amqp091_adapter *adapter;
    enum amqp091_state state;
    bool refused;              /* over a connection limit: Close 530 right after the header */
    const char *refused_limit; /* that limit's config key (static text) */
    uint32_t refused_value;    /* and its value */
    bool reading;
    /* offered in Tune (the config in force then), negotiated in Tune-Ok */
    uint16_t offered_channel_max;
    uint32_t offered_frame_max;
    uint16_t channel_max;
    uint32_t frame_max;
    uint16_t heartbeat_s;
    uint64_t last_received_ms;
    uint64_t last_sent_ms;
    struct event *timer;         /* handshake timeout, then heartbeats */
    struct event *process_event; /* zero-timeout: parse input held while paused */
    amqp_pool_t pool;            /* decoded methods, recycled after each frame */
    /* a delivery's properties: apart from `pool`, since core_settle in a
     * method's handler may deliver at once */
    amqp_pool_t deliver_pool;
    /* authentication and the session */
    struct core_auth *auth;
    struct core_session *session;
    char *user;
    char mechanism[16];
    /* channels by number */
    struct u64_map channels;
    uint64_t next_generation;
    /* work that holds the input: a declare waiting for its answer */
    uint32_t waiting;
    bool publish_paused; /* unconfirmed publishes at limits.max_unconfirmed */
    /* a complete publish on channel held_channel that Kafka's producer queue
     * had no room for (CORE_ERR_BUSY): the channel keeps its frames, input
     * waits, the adapter base retries (connection_publish_hold) */
    bool publish_held;
    uint16_t held_channel;
    bool deliveries_blocked;
    /* the client's capabilities (start-ok's client-properties) */
    bool client_blocked_notify; /* connection.blocked */
    bool client_cancel_notify;  /* consumer_cancel_notify */
    bool blocked_sent;          /* connection.blocked sent, unblocked not yet */
    uint64_t frames_in;
    uint64_t frames_out;
};

/* ---- amqp091_connection.c --------------------------------------------------- */

extern const struct connection_ops amqp091_connection_ops;
/* connection_ops.adapter_free (amqp091_adapter.c): frees the scratch buffer
 * and the adapter. */
void amqp091_adapter_free(struct adapter_base *base);

/* Queue a method frame on `channel`. 0, or -1 (not queued: closing, or it
 * does not fit a frame). */
int amqp091_send_method(struct amqp091_connection *connection, uint16_t channel,
                        amqp_method_number_t id, void *decoded);
/* Queue a method frame, a content header (`header_payload` as encoded, or
 * `properties` encoded now when it is NULL) and the body in frames of
 * frame_max. 0 or -1. */
int amqp091_send_content(struct amqp091_connection *connection, uint16_t channel,
                         amqp_method_number_t id, void *method, const uint8_t *header_payload,
                         size_t header_len, amqp_basic_properties_t *properties, const void *body,
                         size_t body_len);
/* Close the connection with a connection exception: Close with `code` and
 * `text` (RabbitMQ's shape, "NOT_FOUND - ..."), naming the method that
 * caused it (0: none); then wait for Close-Ok. */
void amqp091_connection_error(struct amqp091_connection *connection, uint16_t code,
                              const char *text, amqp_method_number_t method);
/* Re-evaluate reading (paused for a declare's answer, publish backpressure,
 * draining); resume parsing buffered input from a zero-timeout event. */
void amqp091_connection_update_reading(struct amqp091_connection *connection);
/* Is the connection in a state where frames go out? */
bool amqp091_connection_writable(const struct amqp091_connection *connection);
/* Publishing is held (unconfirmed publishes at limits.max_unconfirmed, or a
 * publish waits for room in Kafka's producer queue) or goes on again:
 * connection.blocked / unblocked to a client that announced the capability,
 * once per change, from publish_paused and publish_held. */
void amqp091_connection_update_blocked(struct amqp091_connection *connection);
/* Hold the complete publish of `channel` until Kafka's producer queue has
 * room: input stops, the client is told (connection.blocked) and
 * amqp091_publish_retry runs after CONNECTION_PUBLISH_RETRY_MS or at this
 * connection's next confirmation, whichever comes first. */
void amqp091_connection_hold_publish(struct amqp091_connection *connection, uint16_t channel);
/* Block or unblock every consumer's deliveries (output watermark). */
void amqp091_connection_block_deliveries(struct amqp091_connection *connection, bool blocked);

/* ---- amqp091_channel.c ----------------------------------------------------------- */

/* A publish's content as a basic.return needs it (owned). */
struct amqp091_content {
    char *exchange;
    char *routing_key;
    uint8_t *header_payload; /* the content-header frame's payload, as sent */
    size_t header_len;
    uint8_t *body;
    size_t body_len;
};
/* Move the channel's assembled publish into `out`: the exchange always; the
 * routing key, content header and body too when `whole`. The channel is
 * left without what was moved. */
void amqp091_channel_take_content(struct amqp091_channel *channel, struct amqp091_content *out,
                                  bool whole);
/* Send basic.return 312 NO_ROUTE with `content` on channel `channel`. */
void amqp091_send_no_route(struct amqp091_connection *connection, uint16_t channel,
                           const struct amqp091_content *content);
/* Free what `content` holds and zero it. */
void amqp091_content_free(struct amqp091_content *content);

/* Publish the held publish again (amqp091_connection_hold_publish): it goes
 * to Kafka, or stays held; input resumes once it went. */
void amqp091_publish_retry(struct amqp091_connection *connection);
/* A frame for a channel other than 0 (method, header or body), after the
 * connection is open. Channel and connection errors are sent from here. */
void amqp091_channel_frame(struct amqp091_connection *connection,
                           const struct amqp091_frame *frame);
/* Free a channel (its consumers unsubscribed, unacked deliveries released,
 * content dropped) and unlink it. */
void amqp091_channel_free(struct amqp091_channel *channel);
/* connection_ops.publish_done (basic.ack / basic.nack / basic.return). */
void amqp091_publish_done(struct connection_publish *publish, int result, const char *reason);
/* A channel exception (channel.close with code and text naming `method`),
 * and the same for a core error (its 0-9-1 code and RabbitMQ's label). */
void amqp091_channel_error(struct amqp091_channel *channel, uint16_t code, const char *text,
                           amqp_method_number_t method);
void amqp091_channel_core_error(struct amqp091_channel *channel, int core_error, const char *reason,
                                amqp_method_number_t method);

/* ---- amqp091_tx.c: the tx class (architecture §8) --------------------------------- */

struct amqp091_tx;
/* tx.select, tx.commit, tx.rollback. */
void amqp091_tx_method(struct amqp091_channel *channel, amqp_method_number_t method);
/* Is the channel in tx mode (tx.select seen)? */
bool amqp091_tx_mode(const struct amqp091_channel *channel);
/* In tx mode: hold the publish (copied) in the channel's transaction
 * (channel error when refused) and return true; else false. */
bool amqp091_tx_publish(struct amqp091_channel *channel, const struct destination *destination,
                        const struct core_message *message);
/* In tx mode: hold the settlement and return true; else false. */
bool amqp091_tx_settle(struct amqp091_channel *channel, struct core_subscription *subscription,
                       uint64_t id, enum queue_outcome outcome, amqp_method_number_t method);
/* The channel closes: abort its open transaction (a commit under way goes
 * on unanswered) and free the tx state. */
void amqp091_tx_end(struct amqp091_channel *channel);

#endif
