/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_tx.c -- AMQP 1.0 local transactions (AMQP 1.0 part 4, architecture
 * §8) on the core's transactions (core.h).
 *
 * A coordinator link (target type coordinator, amqp_attach_incoming) takes
 * control messages: `declare` opens a core transaction and is settled with
 * `declared` carrying a 4-byte txn-id; `discharge` with fail=false commits it
 * (settled `accepted` only once Kafka's commit_transaction succeeded,
 * `rejected` with amqp:transaction:rollback otherwise: nothing was written),
 * with fail=true aborts it (`accepted`). A transfer on any incoming link
 * whose state is transactional-state names its transaction: the message is
 * held (amqp_tx_publish) and settled transactional-state{txn-id, accepted}.
 * A receiver's disposition with transactional-state{txn-id, outcome} holds
 * that settlement until the discharge (amqp_tx_settle). An abort releases
 * the messages so settled (they are redelivered, as ActiveMQ Artemis does;
 * the spec would leave them acquired, which a client that settled its side
 * cannot use). transactions.timeout aborts; the next use or discharge of
 * that txn-id is rejected with amqp:transaction:timeout. Closing the
 * connection aborts what is open.
 *
 * proton 0.37 keeps a delivery state it has no constant for (0x33 declared,
 * 0x34 transactional-state) as its type plus the fields in
 * pn_disposition_data (a list), for transfers and dispositions alike.
 *
 * Owns: the connection's struct amqp_txn list. */
#include <proton/codec.h>
#include <proton/delivery.h>
#include <proton/disposition.h>
#include <proton/link.h>
#include <proton/message.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp_connection.h"
#include "core.h"
#include "log.h"

#define AMQP_TX_DECLARE 0x31
#define AMQP_TX_DISCHARGE 0x32
#define AMQP_TX_DECLARED 0x33
#define AMQP_TX_STATE 0x34

struct amqp_txn {
    struct amqp_txn *next;
    struct amqp_connection *connection;
    uint32_t id;
    struct core_transaction *core; /* NULL once it timed out */
};

static void amqp_txn_unlink(struct amqp_txn *txn)
{
    struct amqp_txn **at = &txn->connection->txns;
    while (*at && *at != txn)
        at = &(*at)->next;
    if (*at)
        *at = txn->next;
}

void amqp_txns_free(struct amqp_connection *connection)
{
    while (connection->txns) {
        struct amqp_txn *next = connection->txns->next;
        free(connection->txns);
        connection->txns = next;
    }
}

static struct amqp_txn *amqp_txn_find(struct amqp_connection *connection, uint32_t id)
{
    for (struct amqp_txn *t = connection->txns; t; t = t->next)
        if (t->id == id)
            return t;
    return NULL;
}

/* A txn-id as binary (ours are 4 bytes, big-endian). -1 when it is not one. */
static int amqp_txn_id_get(pn_data_t *data, uint32_t *id)
{
    if (pn_data_type(data) != PN_BINARY)
        return -1;
    pn_bytes_t bytes = pn_data_get_binary(data);
    if (bytes.size != 4)
        return -1;
    const unsigned char *b = (const unsigned char *)bytes.start;
    *id = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return 0;
}

static void amqp_txn_id_put(pn_data_t *data, uint32_t id)
{
    char b[4] = {(char)(id >> 24), (char)(id >> 16), (char)(id >> 8), (char)id};
    pn_data_put_binary(data, pn_bytes(4, b));
}

/* A transactional-state's fields (a list: txn-id, outcome): 0, or -1 when
 * malformed. *outcome is the outcome's descriptor, 0 when there is none. */
static int amqp_tx_state_parse(pn_data_t *data, uint32_t *id, uint64_t *outcome)
{
    *outcome = 0;
    pn_data_rewind(data);
    if (!pn_data_next(data) || pn_data_type(data) != PN_LIST)
        return -1;
    pn_data_enter(data);
    if (!pn_data_next(data) || amqp_txn_id_get(data, id) < 0)
        return -1;
    if (pn_data_next(data) && pn_data_type(data) == PN_DESCRIBED) {
        pn_data_enter(data);
        if (pn_data_next(data) && pn_data_type(data) == PN_ULONG)
            *outcome = pn_data_get_ulong(data);
        pn_data_exit(data);
    }
    pn_data_exit(data);
    return 0;
}

/* The transaction a transactional-state names: NULL with condition and
 * description filled when it is none of this connection's (or timed out). */
static struct amqp_txn *amqp_txn_of(struct amqp_connection *connection, pn_data_t *data,
                                    uint64_t *outcome, const char **condition, char *description,
                                    size_t description_size)
{
    uint32_t id;
    if (amqp_tx_state_parse(data, &id, outcome) < 0) {
        *condition = "amqp:decode-error";
        snprintf(description, description_size, "malformed transactional-state");
        return NULL;
    }
    struct amqp_txn *txn = amqp_txn_find(connection, id);
    if (!txn) {
        *condition = "amqp:transaction:unknown-id";
        snprintf(description, description_size, "no declared transaction %u on this connection",
                 id);
        return NULL;
    }
    if (!txn->core) {
        *condition = "amqp:transaction:timeout";
        snprintf(description, description_size,
                 "transaction %u was open longer than transactions.timeout and was aborted", id);
        return NULL;
    }
    return txn;
}

static void amqp_tx_reject(struct amqp_connection *connection, pn_delivery_t *delivery,
                           const char *condition, const char *description)
{
    log_info("amqp", "%s: transaction control rejected with %s: %s", connection->base.peer,
             condition, description);
    if (!pn_delivery_settled(delivery)) {
        amqp_condition_set(pn_disposition_condition(pn_delivery_local(delivery)), condition, "%s",
                           description);
        pn_delivery_update(delivery, PN_REJECTED);
    }
    pn_delivery_settle(delivery);
    amqp_connection_schedule(connection);
}

/* transactions.timeout: the core aborted it; keep the id to say so. */
static void amqp_txn_expired(void *opaque, const char *reason)
{
    struct amqp_txn *txn = opaque;
    txn->core = NULL;
    log_info("amqp", "%s: transaction %u: %s", txn->connection->base.peer, txn->id, reason);
}

static void amqp_tx_declare(struct amqp_link *link, pn_delivery_t *delivery)
{
    struct amqp_connection *connection = link->connection;
    struct amqp_txn *txn = calloc(1, sizeof(*txn));
    char err[256] = "out of memory";
    if (txn) {
        txn->connection = connection;
        txn->id = ++connection->next_txn;
        txn->core =
            core_transaction_begin(connection->session, amqp_txn_expired, txn, err, sizeof(err));
    }
    if (!txn || !txn->core) {
        free(txn);
        amqp_tx_reject(connection, delivery, "amqp:internal-error", err);
        return;
    }
    txn->next = connection->txns;
    connection->txns = txn;
    pn_data_t *data = pn_disposition_data(pn_delivery_local(delivery));
    pn_data_clear(data);
    pn_data_put_list(data);
    pn_data_enter(data);
    amqp_txn_id_put(data, txn->id);
    pn_data_exit(data);
    pn_delivery_update(delivery, AMQP_TX_DECLARED);
    pn_delivery_settle(delivery);
    amqp_connection_schedule(connection);
}

static void amqp_tx_discharge(struct amqp_link *link, pn_delivery_t *delivery, pn_data_t *fields)
{
    struct amqp_connection *connection = link->connection;
    uint32_t id;
    if (!pn_data_next(fields) || amqp_txn_id_get(fields, &id) < 0) {
        amqp_tx_reject(connection, delivery, "amqp:decode-error", "discharge without a txn-id");
        return;
    }
    bool fail = pn_data_next(fields) && pn_data_type(fields) == PN_BOOL && pn_data_get_bool(fields);
    struct amqp_txn *txn = amqp_txn_find(connection, id);
    if (!txn) {
        char description[128];
        snprintf(description, sizeof(description), "no declared transaction %u on this connection",
                 id);
        amqp_tx_reject(connection, delivery, "amqp:transaction:unknown-id", description);
        return;
    }
    amqp_txn_unlink(txn);
    struct core_transaction *core = txn->core;
    free(txn);
    if (!core) {
        amqp_tx_reject(connection, delivery, "amqp:transaction:timeout",
                       "the transaction was open longer than transactions.timeout and was "
                       "aborted");
        return;
    }
    if (fail) {
        core_transaction_abort(core, true);
        pn_delivery_update(delivery, PN_ACCEPTED);
        pn_delivery_settle(delivery);
        amqp_connection_schedule(connection);
        return;
    }
    /* answered as a publish: amqp_link_in_done, after Kafka's commit */
    struct amqp_publish *publish = calloc(1, sizeof(*publish));
    if (!publish) {
        core_transaction_abort(core, true);
        amqp_tx_reject(connection, delivery, "amqp:transaction:rollback", "out of memory");
        return;
    }
    publish->link = link;
    publish->delivery = delivery;
    publish->discharge = true;
    snprintf(publish->destination, sizeof(publish->destination), "transaction %u", id);
    connection_publish_begin(&connection->base, &publish->base);
    link->pending++;
    char err[256];
    if (core_transaction_commit(core, connection_publish_confirmed, &publish->base, err,
                                sizeof(err)) != CORE_OK) {
        connection_publish_cancel(&publish->base);
        link->pending--;
        free(publish);
        core_transaction_abort(core, true);
        amqp_tx_reject(connection, delivery, "amqp:transaction:rollback", err);
    }
}

void amqp_tx_control(struct amqp_link *link, pn_delivery_t *delivery, pn_message_t *message)
{
    struct amqp_connection *connection = link->connection;
    pn_data_t *body = pn_message_body(message);
    pn_data_rewind(body);
    uint64_t code = 0;
    if (pn_data_next(body) && pn_data_type(body) == PN_DESCRIBED) {
        pn_data_enter(body);
        if (pn_data_next(body)) {
            if (pn_data_type(body) == PN_ULONG) {
                code = pn_data_get_ulong(body);
            } else if (pn_data_type(body) == PN_SYMBOL) {
                pn_bytes_t name = pn_data_get_symbol(body);
                if (name.size == 17 && memcmp(name.start, "amqp:declare:list", 17) == 0)
                    code = AMQP_TX_DECLARE;
                else if (name.size == 19 && memcmp(name.start, "amqp:discharge:list", 19) == 0)
                    code = AMQP_TX_DISCHARGE;
            }
        }
        if (code && pn_data_next(body) && pn_data_type(body) == PN_LIST)
            pn_data_enter(body);
        else
            code = 0;
    }
    if (code == AMQP_TX_DECLARE)
        amqp_tx_declare(link, delivery);
    else if (code == AMQP_TX_DISCHARGE)
        amqp_tx_discharge(link, delivery, body);
    else
        amqp_tx_reject(connection, delivery, "amqp:not-implemented",
                       "a coordinator takes declare and discharge messages only");
}

bool amqp_tx_publish(struct amqp_link *link, pn_delivery_t *delivery,
                     const struct destination *destination, const struct core_message *message,
                     int *rc, char *err, size_t err_size)
{
    if (pn_delivery_remote_state(delivery) != AMQP_TX_STATE)
        return false;
    struct amqp_connection *connection = link->connection;
    uint64_t outcome;
    const char *condition;
    char description[256];
    struct amqp_txn *txn =
        amqp_txn_of(connection, pn_disposition_data(pn_delivery_remote(delivery)), &outcome,
                    &condition, description, sizeof(description));
    if (!txn) {
        amqp_tx_reject(connection, delivery, condition, description);
        *rc = CORE_OK;
        return true;
    }
    *rc = core_transaction_publish(txn->core, destination, message, err, err_size);
    if (*rc != CORE_OK)
        return true; /* the caller rejects it as a refused publish */
    if (!pn_delivery_settled(delivery)) {
        pn_data_t *data = pn_disposition_data(pn_delivery_local(delivery));
        pn_data_clear(data);
        pn_data_put_list(data);
        pn_data_enter(data);
        amqp_txn_id_put(data, txn->id);
        pn_data_put_described(data);
        pn_data_enter(data);
        pn_data_put_ulong(data, PN_ACCEPTED);
        pn_data_put_list(data);
        pn_data_exit(data);
        pn_data_exit(data);
        pn_delivery_update(delivery, AMQP_TX_STATE);
    }
    pn_delivery_settle(delivery);
    amqp_connection_schedule(connection);
    return true;
}

int amqp_tx_settle(struct amqp_link *link, pn_delivery_t *delivery, uint64_t id)
{
    if (pn_delivery_remote_state(delivery) != AMQP_TX_STATE)
        return 0;
    struct amqp_connection *connection = link->connection;
    uint64_t outcome;
    const char *condition;
    char description[256];
    struct amqp_txn *txn =
        amqp_txn_of(connection, pn_disposition_data(pn_delivery_remote(delivery)), &outcome,
                    &condition, description, sizeof(description));
    if (!txn) {
        /* nothing to hold it in: the message goes back for redelivery */
        log_info("amqp", "%s: transactional disposition refused (%s: %s); message released",
                 connection->base.peer, condition, description);
        if (id && link->core)
            core_settle(link->core, id, QUEUE_RELEASE, NULL);
        return 1;
    }
    enum queue_outcome queue_outcome;
    switch (outcome) {
    case PN_ACCEPTED: queue_outcome = QUEUE_ACCEPT; break;
    case PN_REJECTED: queue_outcome = QUEUE_REJECT; break;
    case PN_RELEASED: queue_outcome = QUEUE_RELEASE_UNDELIVERED; break;
    case PN_MODIFIED: queue_outcome = QUEUE_RELEASE; break;
    default: return 2; /* no outcome yet: progress only */
    }
    if (id && link->core &&
        core_transaction_settle(txn->core, link->core, id, queue_outcome,
                                queue_outcome == QUEUE_REJECT ? "rejected by the client" : NULL) !=
            CORE_OK)
        core_settle(link->core, id, QUEUE_RELEASE, NULL);
    return 1;
}
