/* SPDX-License-Identifier: Apache-2.0 */
/* core_transaction.c -- client transactions on Kafka transactions
 * (architecture §8): the protocol-free part every adapter's BEGIN / tx.select
 * / coordinator link uses.
 *
 * A transaction belongs to its session (session->transactions) while it is
 * open. It holds copies of its sends (bounded by transactions.max_messages
 * and max_bytes) and its settlements (subscription, delivery id, outcome;
 * the deliveries stay acquired meanwhile). Commit:
 *   1. kafka_txn_begin: a pooled transactional producer, begin_transaction
 *      (worker job);
 *   2. on the loop, every held send goes through core_publish (routing,
 *      exchanges, ACLs, headers, keys: the one publish path) with
 *      session->txn_target set, so core_publish_record produces it into the
 *      Kafka transaction instead of the node's producer;
 *   3. kafka_txn_commit (worker job; a failure is aborted there);
 *   4. on success the held settlements go through core_settle (the
 *      ordinary path: offsets reach the group through the low-watermark
 *      commit: at-least-once), then the adapter's `done(CORE_OK)`.
 *      With transactions.exactly_once, step 3 first adds the group
 *      offsets the transaction's accepts advance (core_tx_add_offsets),
 *      which Kafka commits with the sends.
 * A commit with no sends skips Kafka (steps 1-3). Abort, a failed commit,
 * transactions.timeout and the session closing release the held
 * settlements (the messages are redelivered) and drop the sends, which were
 * never written. A commit under way when its session closes finishes
 * without telling anyone (the transaction moves to core->committing); its
 * settlements are dropped (the closing session released its deliveries).
 *
 * Owns: struct core_transaction, its held sends and settlements, its timer,
 * and the transactions' metrics. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "core.h"
#include "core_internal.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"

enum core_transaction_state {
    CORE_TX_OPEN,
    CORE_TX_COMMITTING, /* waiting for the producer, or for commit_transaction */
};

struct core_tx_send {
    struct destination destination;
    struct core_message message; /* points into the allocation */
    struct core_property *properties;
    size_t size;     /* what it counts against transactions.max_bytes */
    bool unroutable; /* at commit it reached no queue: not written */
};

struct core_tx_settle {
    struct core_subscription *subscription; /* NULL once it ended */
    uint64_t id;
    enum queue_outcome outcome;
    char *reason; /* NULL or a copy */
};

struct core_transaction {
    struct core_transaction *next; /* session->transactions or core->committing */
    struct core_transaction *prev;
    struct core *core;            /* NULL once the core was freed under a Kafka call */
    struct core_session *session; /* NULL once the session closed */
    enum core_transaction_state state;
    struct event *timer; /* transactions.timeout */
    core_transaction_expired_fn expired;
    void *expired_opaque;
    core_transaction_fn done;
    void *done_opaque;
    core_transaction_unroutable_fn unroutable; /* or NULL */
    void *unroutable_opaque;
    struct core_tx_send **sends;
    size_t send_count, send_cap;
    uint64_t bytes;
    struct core_tx_settle *settles;
    size_t settle_count, settle_cap;
    struct timespec commit_start;
    int failed;           /* a held send core_publish refused at commit (CORE_ERR_*), or 0 */
    size_t group_offsets; /* exactly-once: partition offsets in the Kafka transaction */
    char failed_reason[1024];
};

/* ---- metrics -------------------------------------------------------------------- */

int core_transaction_metrics_init(struct core *core)
{
    struct metrics *metrics = core->metrics;
    static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                    0.25,  0.5,    1,     2.5,  5,     10};
    core->tx_open = metrics_gauge(metrics, "kbridge_transactions_open",
                                  "Client transactions open (begun, not yet committed or "
                                  "aborted), every protocol.",
                                  NULL);
    core->tx_committed =
        metrics_counter(metrics, "kbridge_transactions_committed_total",
                        "Client transactions committed (their Kafka transaction committed).", NULL);
    core->tx_aborted = metrics_counter(
        metrics, "kbridge_transactions_aborted_total",
        "Client transactions aborted: by the client, a failed commit, or the connection "
        "closing.",
        NULL);
    core->tx_timed_out =
        metrics_counter(metrics, "kbridge_transactions_timed_out_total",
                        "Client transactions aborted by transactions.timeout.", NULL);
    core->tx_group_offsets =
        metrics_counter(metrics, "kbridge_transaction_group_offsets_total",
                        "Consumer-group partition offsets committed inside Kafka transactions "
                        "(transactions.exactly_once), counted when their transaction committed.",
                        NULL);
    core->tx_commit_seconds = metrics_histogram(
        metrics, "kbridge_transaction_commit_seconds",
        "Time from a client's commit to its answer (producer, Kafka commit, settlements).", NULL,
        bounds, sizeof(bounds) / sizeof(bounds[0]));
    return core->tx_open && core->tx_committed && core->tx_aborted && core->tx_timed_out &&
                   core->tx_group_offsets && core->tx_commit_seconds
               ? 0
               : -1;
}

/* ---- lists ------------------------------------------------------------------------ */

static struct core_transaction **core_tx_list(struct core_transaction *tx)
{
    return tx->session ? &tx->session->transactions : &tx->core->committing;
}

static void core_tx_unlink(struct core_transaction *tx)
{
    if (!tx->core)
        return; /* the core is gone: in no list */
    if (tx->prev)
        tx->prev->next = tx->next;
    else
        *core_tx_list(tx) = tx->next;
    if (tx->next)
        tx->next->prev = tx->prev;
    tx->next = tx->prev = NULL;
}

static void core_tx_link(struct core_transaction *tx)
{
    struct core_transaction **head = core_tx_list(tx);
    tx->prev = NULL;
    tx->next = *head;
    if (*head)
        (*head)->prev = tx;
    *head = tx;
}

static void core_tx_free(struct core_transaction *tx)
{
    if (tx->timer)
        event_free(tx->timer);
    for (size_t i = 0; i < tx->send_count; i++)
        free(tx->sends[i]);
    free(tx->sends);
    for (size_t i = 0; i < tx->settle_count; i++)
        free(tx->settles[i].reason);
    free(tx->settles);
    free(tx);
}

/* Give the held settlements back: each delivery is released (redelivered,
 * its count raised), or, with `release` false, left acquired by its
 * subscriber (AMQP 1.0: a discharge with fail=true leaves them so). */
static void core_tx_return_settlements(struct core_transaction *tx, bool release)
{
    for (size_t i = 0; i < tx->settle_count; i++) {
        struct core_tx_settle *s = &tx->settles[i];
        if (release && s->subscription && tx->session)
            core_settle(s->subscription, s->id, QUEUE_RELEASE, NULL);
        free(s->reason);
        s->reason = NULL;
    }
    tx->settle_count = 0;
}

/* End an open (or failed) transaction: unlink, count, free. */
static void core_tx_abort(struct core_transaction *tx, bool release)
{
    core_tx_return_settlements(tx, release);
    if (tx->core) {
        (*tx->core->tx_aborted)++;
        *tx->core->tx_open -= 1;
    }
    core_tx_unlink(tx);
    core_tx_free(tx);
}

static void core_tx_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct core_transaction *tx = arg;
    if (tx->state != CORE_TX_OPEN)
        return; /* a commit under way is bounded by transactions.call_timeout */
    struct core *core = tx->core;
    char reason[256];
    snprintf(reason, sizeof(reason),
             "the transaction was open longer than transactions.timeout (%llu ms) and was "
             "aborted: its sends were dropped and its acknowledgements undone",
             (unsigned long long)core_config(core)->transactions.timeout_ms);
    log_info("core", "%s: %s", tx->session->peer, reason);
    (*core->tx_timed_out)++;
    core_transaction_expired_fn expired = tx->expired;
    void *opaque = tx->expired_opaque;
    core_tx_abort(tx, true);
    if (expired)
        expired(opaque, reason);
}

/* ---- the API ----------------------------------------------------------------------- */

struct core_transaction *core_transaction_begin(struct core_session *session,
                                                core_transaction_expired_fn expired, void *opaque,
                                                char *err, size_t err_size)
{
    struct core *core = session->core;
    if (session->revoked) {
        snprintf(err, err_size, "access revoked by a configuration reload");
        return NULL;
    }
    struct core_transaction *tx = calloc(1, sizeof(*tx));
    if (tx)
        tx->timer = evtimer_new(core->base, core_tx_on_timeout, tx);
    if (!tx || !tx->timer) {
        free(tx);
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    tx->core = core;
    tx->session = session;
    tx->expired = expired;
    tx->expired_opaque = opaque;
    uint64_t ms = core_config(core)->transactions.timeout_ms;
    struct timeval timeout = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(tx->timer, &timeout);
    core_tx_link(tx);
    *core->tx_open += 1;
    return tx;
}

int core_transaction_publish(struct core_transaction *tx, const struct destination *destination,
                             const struct core_message *message, char *err, size_t err_size)
{
    struct core_session *session = tx->session;
    const struct config *config = core_config(tx->core);
    if (tx->state != CORE_TX_OPEN) {
        snprintf(err, err_size, "the transaction is being committed");
        return CORE_ERR_INVALID;
    }
    /* What can be refused now is refused now, as core_publish would; the
     * rest (routing through exchanges) is checked again at commit. */
    if (session->revoked) {
        snprintf(err, err_size, "access revoked by a configuration reload");
        return CORE_ERR_ACCESS;
    }
    if (destination->wildcard) {
        snprintf(err, err_size, "cannot publish to a wildcard destination");
        return CORE_ERR_INVALID;
    }
    if (destination->kind != DESTINATION_REPLY_QUEUE && destination->kind != DESTINATION_EXCHANGE &&
        !core_may_publish(session, destination)) {
        snprintf(err, err_size, "user '%s' may not publish to %s", session->user,
                 destination->name);
        return CORE_ERR_ACCESS;
    }
    if (core_check_message_size(config, message, err, err_size) != 0)
        return CORE_ERR_TOO_LARGE;
    if (tx->send_count >= config->transactions.max_messages) {
        snprintf(err, err_size,
                 "the transaction already holds transactions.max_messages (%u) sends; commit it "
                 "and send the rest in another",
                 config->transactions.max_messages);
        return CORE_ERR_TOO_LARGE;
    }
    size_t data = message->key_len + message->body_len + message->routing_key_len;
    for (size_t i = 0; i < message->property_count; i++)
        data += strlen(message->properties[i].name) + 1 + message->properties[i].value_len;
    if (tx->bytes + data > config->transactions.max_bytes) {
        snprintf(err, err_size,
                 "the transaction would hold more than transactions.max_bytes (%llu bytes) of "
                 "sends; commit it and send the rest in another",
                 (unsigned long long)config->transactions.max_bytes);
        return CORE_ERR_TOO_LARGE;
    }
    if (tx->send_count == tx->send_cap) {
        size_t cap = tx->send_cap ? tx->send_cap * 2 : 16;
        struct core_tx_send **sends = realloc(tx->sends, cap * sizeof(*sends));
        if (!sends) {
            snprintf(err, err_size, "out of memory");
            return CORE_ERR_INTERNAL;
        }
        tx->sends = sends;
        tx->send_cap = cap;
    }
    /* one allocation: the send, its property array, then the bytes */
    size_t head =
        sizeof(struct core_tx_send) + message->property_count * sizeof(struct core_property);
    struct core_tx_send *send = malloc(head + data);
    if (!send) {
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    send->destination = *destination;
    send->message = *message;
    send->size = data;
    send->properties = (struct core_property *)(send + 1);
    char *p = (char *)send + head;
    /* (memcpy only with bytes to copy: a zero-length source may be NULL) */
    if (message->key) {
        if (message->key_len)
            memcpy(p, message->key, message->key_len);
        send->message.key = p;
        p += message->key_len;
    }
    if (message->body_len)
        memcpy(p, message->body, message->body_len);
    send->message.body = p;
    p += message->body_len;
    if (message->routing_key) {
        if (message->routing_key_len)
            memcpy(p, message->routing_key, message->routing_key_len);
        send->message.routing_key = p;
        p += message->routing_key_len;
    }
    for (size_t i = 0; i < message->property_count; i++) {
        size_t name_len = strlen(message->properties[i].name);
        memcpy(p, message->properties[i].name, name_len + 1);
        send->properties[i].name = p;
        p += name_len + 1;
        if (message->properties[i].value_len)
            memcpy(p, message->properties[i].value, message->properties[i].value_len);
        send->properties[i].value = p;
        send->properties[i].value_len = message->properties[i].value_len;
        p += message->properties[i].value_len;
    }
    send->message.properties = send->properties;
    tx->sends[tx->send_count++] = send;
    tx->bytes += data;
    return CORE_OK;
}

int core_transaction_settle(struct core_transaction *tx, struct core_subscription *subscription,
                            uint64_t id, enum queue_outcome outcome, const char *reason)
{
    if (tx->state != CORE_TX_OPEN)
        return CORE_ERR_INVALID;
    if (tx->settle_count == tx->settle_cap) {
        size_t cap = tx->settle_cap ? tx->settle_cap * 2 : 16;
        struct core_tx_settle *settles = realloc(tx->settles, cap * sizeof(*settles));
        if (!settles)
            return CORE_ERR_INTERNAL;
        tx->settles = settles;
        tx->settle_cap = cap;
    }
    char *copy = reason ? strdup(reason) : NULL;
    if (reason && !copy)
        return CORE_ERR_INTERNAL;
    tx->settles[tx->settle_count++] = (struct core_tx_settle){subscription, id, outcome, copy};
    return CORE_OK;
}

size_t core_transaction_send_count(const struct core_transaction *tx) { return tx->send_count; }

void core_transaction_on_unroutable(struct core_transaction *tx, core_transaction_unroutable_fn fn,
                                    void *opaque)
{
    tx->unroutable = fn;
    tx->unroutable_opaque = opaque;
}

static void core_tx_ignore_publish(void *opaque, int err, const char *reason)
{
    (void)opaque;
    (void)err;
    (void)reason;
}

/* The commit's end: count, apply or return the settlements, answer, free. */
static void core_tx_finish(struct core_transaction *tx, int code, const char *reason)
{
    struct core *core = tx->core;
    if (!core) { /* freed under the Kafka call: nobody left */
        core_tx_free(tx);
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    metrics_histogram_observe(core->tx_commit_seconds,
                              (double)(now.tv_sec - tx->commit_start.tv_sec) +
                                  (double)(now.tv_nsec - tx->commit_start.tv_nsec) / 1e9);
    *core->tx_open -= 1;
    if (code == CORE_OK) {
        (*core->tx_committed)++;
        *core->tx_group_offsets += tx->group_offsets;
        for (size_t i = 0; i < tx->settle_count && tx->session; i++) {
            struct core_tx_settle *s = &tx->settles[i];
            if (s->subscription)
                core_settle(s->subscription, s->id, s->outcome, s->reason);
        }
    } else {
        (*core->tx_aborted)++;
        core_tx_return_settlements(tx, true);
    }
    core_tx_unlink(tx);
    struct core_session *session = tx->session;
    /* what reached no queue, before the commit's answer (basic.return
     * comes before tx.commit-ok) */
    for (size_t i = 0; code == CORE_OK && session && tx->unroutable && i < tx->send_count; i++)
        if (tx->sends[i]->unroutable)
            tx->unroutable(tx->unroutable_opaque, i);
    core_transaction_fn done = tx->done;
    void *opaque = tx->done_opaque;
    char text[sizeof(tx->failed_reason)]; /* `reason` may be tx->failed_reason */
    snprintf(text, sizeof(text), "%s", reason ? reason : "");
    core_tx_free(tx);
    if (session)
        done(opaque, code, text);
}

static void core_tx_on_answer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    core_tx_finish(arg, CORE_OK, "");
}

static void core_tx_on_end(void *opaque, int err, const char *reason)
{
    struct core_transaction *tx = opaque;
    if (tx->failed)
        core_tx_finish(tx, tx->failed, tx->failed_reason);
    else if (err) {
        char text[600];
        snprintf(text, sizeof(text), "Kafka did not commit the transaction: %s", reason);
        core_tx_finish(tx, CORE_ERR_UNAVAILABLE, text);
    } else
        core_tx_finish(tx, CORE_OK, "");
}

/* transactions.exactly_once: the offsets the transaction's accepted
 * deliveries let each subscription's group commit go into the Kafka
 * transaction (only accepts: a released or rejected delivery is redelivered
 * or dead-lettered after the commit, so its offset must not be committed
 * with it). One engine call per subscription. */
static void core_tx_add_offsets(struct core_transaction *tx, struct kafka_txn *txn)
{
    uint64_t *ids = malloc(tx->settle_count * sizeof(*ids) + 1);
    bool *done = calloc(tx->settle_count + 1, sizeof(*done));
    for (size_t i = 0; ids && done && i < tx->settle_count && !tx->failed; i++) {
        struct core_subscription *sub = tx->settles[i].subscription;
        if (done[i] || !sub || !sub->engine->ops->transaction_offsets)
            continue;
        size_t count = 0;
        for (size_t j = i; j < tx->settle_count; j++) {
            if (done[j] || tx->settles[j].subscription != sub)
                continue;
            done[j] = true;
            if (tx->settles[j].outcome == QUEUE_ACCEPT)
                ids[count++] = tx->settles[j].id;
        }
        int added = count ? sub->engine->ops->transaction_offsets(sub, ids, count, txn) : 0;
        if (added > 0)
            tx->group_offsets += (size_t)added;
        if (added < 0) {
            tx->failed = CORE_ERR_INTERNAL;
            snprintf(tx->failed_reason, sizeof(tx->failed_reason),
                     "out of memory adding the acknowledged offsets to the transaction");
        }
    }
    if (!ids || !done) {
        tx->failed = CORE_ERR_INTERNAL;
        snprintf(tx->failed_reason, sizeof(tx->failed_reason), "out of memory");
    }
    free(ids);
    free(done);
}

static void core_tx_on_begin(void *opaque, int err, const char *reason, struct kafka_txn *txn)
{
    struct core_transaction *tx = opaque;
    if (err) {
        char text[600];
        snprintf(text, sizeof(text), "no Kafka transaction could be begun: %s", reason);
        core_tx_finish(tx, CORE_ERR_UNAVAILABLE, text);
        return;
    }
    struct core_session *session = tx->session;
    if (!session || !tx->core) {
        tx->failed = CORE_ERR_UNAVAILABLE;
        snprintf(tx->failed_reason, sizeof(tx->failed_reason), "the session closed");
    } else {
        /* every held send through the one publish path, into txn */
        session->txn_target = txn;
        for (size_t i = 0; i < tx->send_count && !tx->failed; i++) {
            char why[512];
            session->txn_unroutable = false;
            int rc = core_publish(session, &tx->sends[i]->destination, &tx->sends[i]->message,
                                  core_tx_ignore_publish, NULL, why, sizeof(why));
            tx->sends[i]->unroutable = session->txn_unroutable;
            if (rc != CORE_OK) {
                tx->failed = rc;
                snprintf(tx->failed_reason, sizeof(tx->failed_reason),
                         "send %zu of the transaction was refused: %s", i + 1, why);
            }
        }
        session->txn_target = NULL;
        session->txn_unroutable = false;
        if (!tx->failed && core_config(tx->core)->transactions.exactly_once)
            core_tx_add_offsets(tx, txn);
    }
    int rc = tx->failed ? kafka_txn_abort(txn, core_tx_on_end, tx)
                        : kafka_txn_commit(txn, core_tx_on_end, tx);
    if (rc < 0)
        core_tx_finish(tx, tx->failed ? tx->failed : CORE_ERR_UNAVAILABLE,
                       tx->failed ? tx->failed_reason : "cannot run the Kafka commit");
}

int core_transaction_commit(struct core_transaction *tx, core_transaction_fn done, void *opaque,
                            char *err, size_t err_size)
{
    struct core *core = tx->core;
    if (tx->state != CORE_TX_OPEN) {
        snprintf(err, err_size, "the transaction is already being committed");
        return CORE_ERR_INVALID;
    }
    tx->state = CORE_TX_COMMITTING;
    tx->done = done;
    tx->done_opaque = opaque;
    evtimer_del(tx->timer);
    clock_gettime(CLOCK_MONOTONIC, &tx->commit_start);
    if (tx->send_count == 0) {
        /* only settlements: no Kafka transaction, answered on the next turn */
        const struct timeval now = {0, 0};
        if (event_base_once(core->base, -1, EV_TIMEOUT, core_tx_on_answer, tx, &now) == 0)
            return CORE_OK;
    } else if (kafka_txn_begin(core->kafka, core_tx_on_begin, tx) == 0) {
        return CORE_OK;
    }
    tx->state = CORE_TX_OPEN;
    snprintf(err, err_size, "out of memory");
    return CORE_ERR_INTERNAL;
}

void core_transaction_abort(struct core_transaction *tx, bool release)
{
    if (tx->state != CORE_TX_OPEN) {
        /* a commit under way goes on; nobody is told */
        tx->done = NULL;
        tx->unroutable = NULL;
        core_tx_unlink(tx);
        tx->session = NULL;
        core_tx_link(tx);
        return;
    }
    core_tx_abort(tx, release);
}

/* ---- the session and the core ------------------------------------------------------ */

void core_transaction_subscription_ended(struct core_subscription *subscription)
{
    for (struct core_transaction *tx = subscription->session->transactions; tx; tx = tx->next)
        for (size_t i = 0; i < tx->settle_count; i++)
            if (tx->settles[i].subscription == subscription)
                tx->settles[i].subscription = NULL;
}

void core_transaction_session_closed(struct core_session *session)
{
    while (session->transactions) {
        struct core_transaction *tx = session->transactions;
        if (tx->state == CORE_TX_OPEN) {
            log_debug("core", "%s: connection closed with a transaction open: aborted",
                      session->peer);
            core_tx_abort(tx, true);
            continue;
        }
        /* committing: it finishes without an answer; its settlements go
         * (the session's deliveries are released as it closes) */
        core_tx_unlink(tx);
        for (size_t i = 0; i < tx->settle_count; i++)
            tx->settles[i].subscription = NULL;
        tx->session = NULL;
        core_tx_link(tx);
    }
}

void core_transaction_free_all(struct core *core)
{
    while (core->committing) {
        struct core_transaction *tx = core->committing;
        core->committing = tx->next;
        tx->next = tx->prev = NULL;
        tx->core = NULL; /* its Kafka answer frees it */
        evtimer_del(tx->timer);
    }
}
