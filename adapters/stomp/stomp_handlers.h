/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_handlers.h -- the command handlers (one file per STOMP command) and
 * the dispatcher that calls them (stomp_dispatch.c).
 *
 * Handler shape: guard state -> header checks -> work. A handler never writes
 * an ERROR frame itself: it fills a struct stomp_error with stomp_fail() and
 * returns its negative code; the dispatcher (or, for asynchronous failures,
 * stomp_send_error) turns it into the ERROR frame, the metric and the log
 * line, and closes the connection, in one place. */
#ifndef KBRIDGE_STOMP_HANDLERS_H
#define KBRIDGE_STOMP_HANDLERS_H

#include "stomp_adapter.h"
#include "stomp_connection.h"
#include "stomp_frame.h"

/* What a handler returns. */
enum stomp_result {
    STOMP_OK = 0,      /* done; the dispatcher sends the RECEIPT if one was asked for */
    STOMP_PENDING = 1, /* done so far; the handler's callback sends the RECEIPT later */
    STOMP_RETRY = 2,   /* SEND only: Kafka's queue is full, keep the frame and retry it */
    STOMP_FAILED = -1, /* *error is filled: send ERROR, close */
};

/* Why a frame failed: becomes one ERROR frame. */
struct stomp_error {
    enum stomp_error_kind kind;
    const char *label;   /* RabbitMQ's `message` text for this error, or NULL */
    char message[256];   /* kbridge's short text: `message` header when no label */
    char detail[1024];   /* body: what was wrong and what to do */
    const char *version; /* extra `version` header (failed negotiation), or NULL */
};

/* Fill *error (message is a plain string; detail a printf format) and return
 * STOMP_FAILED, so that handlers can `return stomp_fail(...)`. */
int stomp_fail(struct stomp_error *error, enum stomp_error_kind kind, const char *message,
               const char *detail_fmt, ...) __attribute__((format(printf, 4, 5)));

/* The same for an error RabbitMQ's STOMP adapter also reports: its `message`
 * header text (`label`, e.g. "Invalid destination", so clients and tests
 * written against RabbitMQ recognise it) goes in the header, and kbridge's
 * `message` becomes the first line of the body, above the detail. */
int stomp_fail_as(struct stomp_error *error, enum stomp_error_kind kind, const char *label,
                  const char *message, const char *detail_fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The row of a core error (CORE_ERR_*, anything else is internal) in the
 * one table from core errors to STOMP errors (stomp_dispatch.c): the error
 * kind by when it happened and RabbitMQ's label. Static; never NULL. */
struct stomp_core_error {
    enum stomp_error_kind now;   /* the core refused an operation */
    enum stomp_error_kind later; /* an accepted publish failed (Kafka did not store it) */
    enum stomp_error_kind login; /* CONNECT's credentials check */
    const char *label;           /* RabbitMQ's `message` for a refused operation, or NULL */
};
const struct stomp_core_error *stomp_core_error(int core_error);

/* Send `error` as an ERROR frame (with receipt-id when not NULL), count it,
 * log it at info and close the connection. Used by the dispatcher and by
 * asynchronous paths (publish failure, heart-beat timeout, failed
 * subscription, parse errors, refused connections). */
void stomp_send_error(struct stomp_connection *connection, const struct stomp_error *error,
                      const char *receipt_id);

/* Run one parsed frame. Takes ownership of `frame` (frees it, or keeps it as
 * the connection's busy_frame when Kafka is busy). */
void stomp_dispatch(struct stomp_connection *connection, struct stomp_frame *frame);

/* The connection's temporary queue for destination_text ("/temp-queue/NAME"),
 * created on first use with subscription id `id` (the destination itself
 * when NULL) and `ack_mode`. NULL with error filled on failure
 * (stomp_handle_subscribe.c). */
struct stomp_subscription *stomp_temp_queue(struct stomp_connection *connection,
                                            const char *destination_text, const char *id,
                                            enum stomp_ack_mode ack_mode, const char *receipt,
                                            struct stomp_error *error);

/* The open transaction named by the frame's `transaction` header: NULL
 * with *found true when the frame has none; NULL with *found false and
 * error filled when it names no open transaction of the connection
 * (stomp_handle_transaction.c). */
struct stomp_transaction *stomp_transaction_of(struct stomp_connection *connection,
                                               const struct stomp_frame *frame, bool *found,
                                               struct stomp_error *error);
/* Free the connection's transaction records; the session's close has
 * aborted their core transactions (stomp_connection_free). */
void stomp_transactions_free(struct stomp_connection *connection);

/* RabbitMQ's durable:true or its alias persistent:true (any case) on
 * SUBSCRIBE or UNSUBSCRIBE (stomp_handle_subscribe.c). */
bool stomp_durable_header(const struct stomp_frame *frame);

/* ---- handlers: one file each ------------------------------------------------------ */

int stomp_handle_connect(struct stomp_connection *connection, const struct stomp_frame *frame,
                         struct stomp_error *error);
int stomp_handle_send(struct stomp_connection *connection, const struct stomp_frame *frame,
                      struct stomp_error *error);
int stomp_handle_subscribe(struct stomp_connection *connection, const struct stomp_frame *frame,
                           struct stomp_error *error);
int stomp_handle_unsubscribe(struct stomp_connection *connection, const struct stomp_frame *frame,
                             struct stomp_error *error);
/* ACK and NACK. */
int stomp_handle_ack(struct stomp_connection *connection, const struct stomp_frame *frame,
                     struct stomp_error *error);
/* BEGIN, COMMIT, ABORT (refused until transactions land, architecture §8). */
int stomp_handle_transaction(struct stomp_connection *connection, const struct stomp_frame *frame,
                             struct stomp_error *error);
int stomp_handle_disconnect(struct stomp_connection *connection, const struct stomp_frame *frame,
                            struct stomp_error *error);

#endif
