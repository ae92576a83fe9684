/* SPDX-License-Identifier: Apache-2.0 */
/* amqp091_tx.c -- the tx class of AMQP 0-9-1 (tx.select, tx.commit,
 * tx.rollback) on the core's transactions (core.h, architecture §8).
 *
 * tx.select puts the channel in tx mode for good (as RabbitMQ; refused
 * with 406 on a channel in confirm mode, and confirm.select on a tx
 * channel likewise). In tx mode a basic.publish is held by the channel's
 * open core transaction (made on the first publish or ack after select or
 * the last commit/rollback, so transactions.timeout counts from the first
 * use) and basic.ack / nack / reject are held settlements. tx.commit hands
 * the transaction to the core and stops reading the connection until the
 * answer (as declares do): tx.commit-ok only once Kafka's
 * commit_transaction succeeded and the acks were applied; a failed commit
 * is a channel error (541 INTERNAL_ERROR naming Kafka's reason, 404 when
 * a held publish's exchange is gone). tx.rollback drops the held publishes
 * and releases the acked messages: they are redelivered (RabbitMQ leaves
 * them unacked on the channel instead; docs/amqp091.md). A channel that
 * closes (or errs) with a transaction open aborts it; a commit under way
 * then finishes without an answer. transactions.timeout ends the channel
 * with 406 PRECONDITION_FAILED. A held mandatory publish keeps its content
 * (struct amqp091_tx_return): when the commit finds that it reached no queue,
 * basic.return 312 NO_ROUTE goes out before tx.commit-ok, as RabbitMQ does;
 * a rollback drops it with the publish.
 *
 * Owns: the channel's struct amqp091_tx (channel->tx) and its returns. */
#include <stdio.h>
#include <stdlib.h>

#include "amqp091_connection.h"
#include "log.h"

/* A mandatory publish held by the transaction: what its basic.return needs. */
struct amqp091_tx_return {
    size_t send; /* its index among the core transaction's sends */
    struct amqp091_content content;
};

struct amqp091_tx {
    struct amqp091_channel *channel;
    struct core_transaction *core;     /* the open (or committing) transaction, or NULL */
    bool committing;                   /* tx.commit handed to the core; the input waits */
    struct amqp091_tx_return *returns; /* the open transaction's mandatory publishes */
    size_t return_count, return_cap;
};

static void amqp091_tx_drop_returns(struct amqp091_tx *tx)
{
    for (size_t i = 0; i < tx->return_count; i++)
        amqp091_content_free(&tx->returns[i].content);
    tx->return_count = 0;
}

/* Take the content of the channel's mandatory publish, the transaction's
 * send number `send`. 0, or -1 out of memory. */
static int amqp091_tx_keep_return(struct amqp091_tx *tx, size_t send)
{
    if (tx->return_count == tx->return_cap) {
        size_t cap = tx->return_cap ? tx->return_cap * 2 : 8;
        struct amqp091_tx_return *returns = realloc(tx->returns, cap * sizeof(*returns));
        if (!returns)
            return -1;
        tx->returns = returns;
        tx->return_cap = cap;
    }
    struct amqp091_tx_return *r = &tx->returns[tx->return_count++];
    r->send = send;
    amqp091_channel_take_content(tx->channel, &r->content, true);
    return 0;
}

/* core_transaction_unroutable_fn: send `send` reached no queue. */
static void amqp091_tx_unroutable(void *opaque, size_t send)
{
    struct amqp091_tx *tx = opaque;
    for (size_t i = 0; i < tx->return_count; i++)
        if (tx->returns[i].send == send) {
            amqp091_send_no_route(tx->channel->connection, tx->channel->number,
                                  &tx->returns[i].content);
            return;
        }
}

bool amqp091_tx_mode(const struct amqp091_channel *channel) { return channel->tx != NULL; }

static void amqp091_tx_expired(void *opaque, const char *reason)
{
    struct amqp091_tx *tx = opaque;
    tx->core = NULL; /* the core freed it */
    char text[320];
    snprintf(text, sizeof(text), "PRECONDITION_FAILED - %s", reason);
    amqp091_channel_error(tx->channel, AMQP_PRECONDITION_FAILED, text, AMQP_TX_COMMIT_METHOD);
}

/* The channel's open transaction, begun now if there is none; NULL after a
 * channel error. */
static struct core_transaction *amqp091_tx_open(struct amqp091_channel *channel,
                                                amqp_method_number_t method)
{
    struct amqp091_tx *tx = channel->tx;
    if (tx->core)
        return tx->core;
    char err[256];
    tx->core = core_transaction_begin(channel->connection->session, amqp091_tx_expired, tx, err,
                                      sizeof(err));
    if (!tx->core)
        amqp091_channel_core_error(channel, CORE_ERR_INTERNAL, err, method);
    else
        core_transaction_on_unroutable(tx->core, amqp091_tx_unroutable, tx);
    amqp091_tx_drop_returns(tx); /* of the last one */
    return tx->core;
}

bool amqp091_tx_publish(struct amqp091_channel *channel, const struct destination *destination,
                        const struct core_message *message)
{
    if (!channel->tx)
        return false;
    struct core_transaction *core = amqp091_tx_open(channel, AMQP_BASIC_PUBLISH_METHOD);
    char err[256] = "";
    int rc =
        core ? core_transaction_publish(core, destination, message, err, sizeof(err)) : CORE_OK;
    if (rc != CORE_OK)
        amqp091_channel_core_error(channel, rc, err, AMQP_BASIC_PUBLISH_METHOD);
    else if (core && channel->mandatory &&
             amqp091_tx_keep_return(channel->tx, core_transaction_send_count(core) - 1) < 0)
        amqp091_channel_error(channel, AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory",
                              AMQP_BASIC_PUBLISH_METHOD);
    return true;
}

bool amqp091_tx_settle(struct amqp091_channel *channel, struct core_subscription *subscription,
                       uint64_t id, enum queue_outcome outcome, amqp_method_number_t method)
{
    if (!channel->tx)
        return false;
    struct core_transaction *core = amqp091_tx_open(channel, method);
    if (core && subscription &&
        core_transaction_settle(core, subscription, id, outcome, NULL) != CORE_OK)
        amqp091_channel_core_error(channel, CORE_ERR_INTERNAL, "out of memory", method);
    return true;
}

/* The core's answer to tx.commit (not called if the channel went first). */
static void amqp091_tx_committed(void *opaque, int err, const char *reason)
{
    struct amqp091_tx *tx = opaque;
    struct amqp091_channel *channel = tx->channel;
    struct amqp091_connection *connection = channel->connection;
    tx->core = NULL;
    tx->committing = false;
    connection->waiting--;
    amqp091_tx_drop_returns(tx); /* the returns due went out already */
    if (err == CORE_OK) {
        amqp_tx_commit_ok_t ok = {0};
        amqp091_send_method(connection, channel->number, AMQP_TX_COMMIT_OK_METHOD, &ok);
    } else {
        amqp091_channel_core_error(channel, err, reason, AMQP_TX_COMMIT_METHOD);
    }
    amqp091_connection_update_reading(connection);
}

void amqp091_tx_method(struct amqp091_channel *channel, amqp_method_number_t method)
{
    struct amqp091_connection *connection = channel->connection;
    struct amqp091_tx *tx = channel->tx;
    switch (method) {
    case AMQP_TX_SELECT_METHOD: {
        if (channel->confirm) {
            amqp091_channel_error(channel, AMQP_PRECONDITION_FAILED,
                                  "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
                                  method);
            return;
        }
        if (!tx && !(channel->tx = calloc(1, sizeof(*channel->tx)))) {
            amqp091_channel_error(channel, AMQP_INTERNAL_ERROR, "INTERNAL_ERROR - out of memory",
                                  method);
            return;
        }
        channel->tx->channel = channel;
        amqp_tx_select_ok_t ok = {0};
        amqp091_send_method(connection, channel->number, AMQP_TX_SELECT_OK_METHOD, &ok);
        return;
    }
    case AMQP_TX_COMMIT_METHOD:
    case AMQP_TX_ROLLBACK_METHOD: break;
    default: return;
    }
    if (!tx) {
        amqp091_channel_error(channel, AMQP_PRECONDITION_FAILED,
                              "PRECONDITION_FAILED - channel is not transactional", method);
        return;
    }
    if (method == AMQP_TX_ROLLBACK_METHOD) {
        if (tx->core)
            core_transaction_abort(tx->core, true);
        tx->core = NULL;
        amqp091_tx_drop_returns(tx);
        amqp_tx_rollback_ok_t ok = {0};
        amqp091_send_method(connection, channel->number, AMQP_TX_ROLLBACK_OK_METHOD, &ok);
        return;
    }
    if (!tx->core) { /* nothing published or acked since the last one */
        amqp_tx_commit_ok_t ok = {0};
        amqp091_send_method(connection, channel->number, AMQP_TX_COMMIT_OK_METHOD, &ok);
        return;
    }
    char err[256];
    int rc = core_transaction_commit(tx->core, amqp091_tx_committed, tx, err, sizeof(err));
    if (rc != CORE_OK) {
        amqp091_channel_core_error(channel, rc, err, method);
        return;
    }
    tx->committing = true;
    connection->waiting++; /* read nothing more until tx.commit-ok */
    amqp091_connection_update_reading(connection);
}

void amqp091_tx_end(struct amqp091_channel *channel)
{
    struct amqp091_tx *tx = channel->tx;
    if (!tx)
        return;
    if (tx->core) {
        log_debug("amqp091", "%s: channel %u closed with a transaction %s",
                  channel->connection->base.peer, channel->number,
                  tx->committing ? "being committed (it finishes unanswered)" : "open: aborted");
        core_transaction_abort(tx->core, true);
    }
    if (tx->committing)
        channel->connection->waiting--;
    amqp091_tx_drop_returns(tx);
    free(tx->returns);
    free(tx);
    channel->tx = NULL;
}
