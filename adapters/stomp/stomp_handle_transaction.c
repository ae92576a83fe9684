/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_handle_transaction.c -- BEGIN, COMMIT and ABORT (STOMP 1.0-1.2,
 * architecture §8) on the core's transactions (core.h).
 *
 * BEGIN opens a core transaction under the client's `transaction` name (a
 * name already open on the connection is an ERROR). SEND, ACK and NACK
 * carrying that name are held by it (stomp_handle_send.c,
 * stomp_handle_ack.c): a SEND's RECEIPT then means "held", not "stored".
 * COMMIT hands the transaction to the core and waits as a SEND does (a
 * struct stomp_publish with `commit` set, counted in the connection's
 * unconfirmed publishes, so DISCONNECT's RECEIPT waits for it too): its
 * RECEIPT comes only once Kafka's commit_transaction succeeded and the
 * acknowledgements were applied; a failed commit is an ERROR with the
 * receipt-id (nothing of it was written, its acknowledged messages are
 * redelivered). ABORT drops the sends and releases the acknowledged
 * messages (redelivered, as ActiveMQ and RabbitMQ do). A transaction name
 * the connection has not begun is an ERROR. transactions.timeout aborts a
 * transaction and ends the connection with an ERROR naming it; closing the
 * connection (DISCONNECT or lost) aborts what is open. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "log.h"
#include "stomp_handlers.h"

static struct stomp_transaction *stomp_transaction_find(struct stomp_connection *connection,
                                                        const char *name)
{
    for (struct stomp_transaction *t = connection->transactions; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static void stomp_transaction_unlink(struct stomp_transaction *tx)
{
    struct stomp_transaction **at = &tx->connection->transactions;
    while (*at && *at != tx)
        at = &(*at)->next;
    if (*at)
        *at = tx->next;
}

void stomp_transactions_free(struct stomp_connection *connection)
{
    while (connection->transactions) {
        struct stomp_transaction *next = connection->transactions->next;
        free(connection->transactions);
        connection->transactions = next;
    }
}

struct stomp_transaction *stomp_transaction_of(struct stomp_connection *connection,
                                               const struct stomp_frame *frame, bool *found,
                                               struct stomp_error *error)
{
    const char *name = stomp_frame_header_value(frame, "transaction");
    *found = true;
    if (!name)
        return NULL;
    struct stomp_transaction *tx = stomp_transaction_find(connection, name);
    if (!tx) {
        *found = false;
        char message[200];
        snprintf(message, sizeof(message), "unknown transaction '%.120s'", name);
        stomp_fail_as(error, STOMP_KIND_INVALID, "Bad transaction", message,
                      "'%s' is not an open transaction of this connection: BEGIN it first "
                      "(a transaction ends with its COMMIT or ABORT, or when it was open "
                      "longer than the server's transactions.timeout).",
                      name);
    }
    return tx;
}

/* transactions.timeout: the core aborted it; tell the client and close. */
static void stomp_transaction_expired(void *opaque, const char *reason)
{
    struct stomp_transaction *tx = opaque;
    struct stomp_connection *connection = tx->connection;
    struct stomp_error error;
    char message[200];
    snprintf(message, sizeof(message), "transaction '%.120s' timed out", tx->name);
    stomp_fail(&error, STOMP_KIND_LIMIT, message, "Transaction '%s': %s.", tx->name, reason);
    stomp_transaction_unlink(tx);
    free(tx);
    stomp_send_error(connection, &error, NULL);
}

static int stomp_handle_begin(struct stomp_connection *connection, const char *name,
                              struct stomp_error *error)
{
    if (stomp_transaction_find(connection, name))
        return stomp_fail_as(error, STOMP_KIND_INVALID, "Bad transaction",
                             "transaction already begun",
                             "Transaction '%s' is already open on this connection: COMMIT or "
                             "ABORT it before beginning another of that name.",
                             name);
    size_t len = strlen(name);
    struct stomp_transaction *tx = calloc(1, sizeof(*tx) + len + 1);
    if (!tx)
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not begin the transaction.");
    memcpy(tx->name, name, len + 1);
    tx->connection = connection;
    char err[256];
    tx->core = core_transaction_begin(connection->session, stomp_transaction_expired, tx, err,
                                      sizeof(err));
    if (!tx->core) {
        free(tx);
        return stomp_fail(error, STOMP_KIND_INTERNAL, "cannot begin the transaction",
                          "Transaction '%s' could not begin: %s.", name, err);
    }
    tx->next = connection->transactions;
    connection->transactions = tx;
    return STOMP_OK;
}

static int stomp_handle_commit(struct stomp_connection *connection, struct stomp_transaction *tx,
                               const struct stomp_frame *frame, struct stomp_error *error)
{
    size_t len = strlen(tx->name);
    struct stomp_publish *publish = calloc(1, sizeof(*publish) + len + 1);
    const char *receipt = stomp_frame_header_value(frame, "receipt");
    if (!publish || (receipt && !(publish->receipt = strdup(receipt)))) {
        free(publish);
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not commit the transaction.");
    }
    publish->commit = true;
    memcpy(publish->destination, tx->name, len + 1);
    connection_publish_begin(&connection->base, &publish->base);
    char err[256];
    int rc = core_transaction_commit(tx->core, connection_publish_confirmed, &publish->base, err,
                                     sizeof(err));
    if (rc != CORE_OK) {
        connection_publish_cancel(&publish->base);
        free(publish->receipt);
        free(publish);
        return stomp_fail(error, STOMP_KIND_INTERNAL, "cannot commit the transaction",
                          "Transaction '%s' could not be committed: %s.", tx->name, err);
    }
    /* the core owns its transaction now: the name is free again */
    stomp_transaction_unlink(tx);
    free(tx);
    return STOMP_PENDING; /* stomp_send_done answers (RECEIPT or ERROR) */
}

int stomp_handle_transaction(struct stomp_connection *connection, const struct stomp_frame *frame,
                             struct stomp_error *error)
{
    const char *verb = frame->command == STOMP_COMMAND_BEGIN    ? "BEGIN"
                       : frame->command == STOMP_COMMAND_COMMIT ? "COMMIT"
                                                                : "ABORT";
    const char *name = stomp_frame_header_value(frame, "transaction");
    if (!name || !name[0]) {
        char message[64];
        snprintf(message, sizeof(message), "%s has no transaction", verb);
        return stomp_fail_as(error, STOMP_KIND_INVALID, "Missing transaction", message,
                             "%s needs a transaction header naming the transaction.", verb);
    }
    if (frame->command == STOMP_COMMAND_BEGIN)
        return stomp_handle_begin(connection, name, error);
    bool found;
    struct stomp_transaction *tx = stomp_transaction_of(connection, frame, &found, error);
    if (!tx)
        return STOMP_FAILED;
    if (frame->command == STOMP_COMMAND_COMMIT)
        return stomp_handle_commit(connection, tx, frame, error);
    log_debug("stomp", "%s: transaction '%s' aborted by the client", connection->base.peer,
              tx->name);
    core_transaction_abort(tx->core, true);
    stomp_transaction_unlink(tx);
    free(tx);
    return STOMP_OK;
}
