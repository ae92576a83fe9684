/* SPDX-License-Identifier: Apache-2.0 */
/* core_definitions.c -- the core's protocol-neutral calls on RabbitMQ's model
 * (core.h "definitions", architecture §11): declare, bind, unbind and delete
 * checked against this node's view and written to the definitions topic
 * through the node's store (definitions_store.h); ACLs; exclusive queues
 * owned by their session; the store's start-up work (this node's previous
 * incarnation's exclusive queues, definitions.file).
 *
 * An operation (struct core_definitions_op) lives in its session's list
 * until it completes: from the store's write callback, or from a zero-delay
 * event when nothing had to be written (a passive declare, a redeclare of
 * what exists). Closing the session cancels both, so `done` never runs
 * after core_session_close. */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core.h"
#include "core_internal.h"
#include "definitions.h"
#include "definitions_record.h"
#include "definitions_store.h"
#include "kafka.h"
#include "log.h"

#define CORE_DEFINITIONS_NAME_MAX 256
#define CORE_DEFINITIONS_REASON_MAX 512
#define CORE_OWNER_MAX 300

struct core_definitions_op {
    struct core_definitions_op *next, *prev; /* in session->definition_ops */
    struct core_session *session;
    core_definitions_fn done;
    void *opaque;
    struct definitions_write *write; /* NULL when nothing is written */
    struct event *now;               /* completes an op that wrote nothing */
    bool anchor_queue;               /* a queue binding: anchor it once written */
    struct core_anchor *anchor;      /* ... in flight (core_anchor.c) */
    char vhost[CORE_DEFINITIONS_NAME_MAX];
    char name[CORE_DEFINITIONS_NAME_MAX];
};

/* An exclusive queue a session declared: deleted when the session closes. */
struct core_exclusive {
    struct core_exclusive *next;
    char *vhost;
    char *name;
};

/* ---- small helpers ------------------------------------------------------------ */

static int core_error_of(enum definitions_status status)
{
    switch (status) {
    case DEFINITIONS_OK: return CORE_OK;
    case DEFINITIONS_NOT_FOUND: return CORE_ERR_NOT_FOUND;
    case DEFINITIONS_PRECONDITION_FAILED: return CORE_ERR_PRECONDITION;
    case DEFINITIONS_ACCESS_REFUSED: return CORE_ERR_ACCESS;
    case DEFINITIONS_RESOURCE_LOCKED: return CORE_ERR_LOCKED;
    case DEFINITIONS_NO_MEMORY: return CORE_ERR_INTERNAL;
    }
    return CORE_ERR_INTERNAL;
}

static void core_session_owner(const struct core_session *session, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/%llu", core_config(session->core)->node_id,
             (unsigned long long)session->serial);
}

const struct definitions *core_definitions(const struct core *core)
{
    return definitions_store_view(core->definitions);
}

bool core_definitions_ready(const struct core *core)
{
    return definitions_store_ready(core->definitions);
}

const char *core_definitions_not_ready_reason(const struct core *core)
{
    return definitions_store_not_ready_reason(core->definitions);
}

const char *core_vhost_topic_prefix(const struct core *core, const char *vhost)
{
    const struct config_vhost *entry = config_vhost_find(core_config(core), vhost ? vhost : "/");
    return entry ? entry->topic_prefix : NULL;
}

int core_definitions_precheck(struct core_session *session, const char *vhost, char *err,
                              size_t err_size)
{
    struct core *core = session->core;
    if (session->revoked) {
        snprintf(err, err_size, "access revoked");
        return CORE_ERR_ACCESS;
    }
    if (!definitions_store_ready(core->definitions)) {
        snprintf(err, err_size, "not ready: %s",
                 definitions_store_not_ready_reason(core->definitions));
        return CORE_ERR_UNAVAILABLE;
    }
    if (!config_vhost_find(core_config(core), vhost)) {
        snprintf(err, err_size, "vhost '%s' not found", vhost);
        return CORE_ERR_NOT_FOUND;
    }
    return CORE_OK;
}

int core_definitions_acl(struct core_session *session, enum core_acl_action action,
                         const char *kind, const char *name, const char *vhost, char *err,
                         size_t err_size)
{
    if (core_acl_may(session, action, name))
        return CORE_OK;
    snprintf(err, err_size, "access to %s '%s' in vhost '%s' refused for user '%s' (needs %s)",
             kind, name, vhost, session->user, core_acl_action_name(session, action));
    return CORE_ERR_ACCESS;
}

/* ---- operations ------------------------------------------------------------------- */

static void op_unlink(struct core_definitions_op *op)
{
    struct core_session *session = op->session;
    if (op->prev)
        op->prev->next = op->next;
    else
        session->definition_ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->next = op->prev = NULL;
}

static void op_free(struct core_definitions_op *op)
{
    core_anchor_cancel(op->anchor);
    if (op->now)
        event_free(op->now);
    free(op);
}

bool core_session_owns_exclusive(const struct core_session *session, const char *vhost,
                                 const char *name)
{
    for (const struct core_exclusive *x = session->exclusives; x; x = x->next)
        if (strcmp(x->vhost, vhost) == 0 && strcmp(x->name, name) == 0)
            return true;
    return false;
}

static void core_exclusive_add(struct core_session *session, const char *vhost, const char *name)
{
    for (struct core_exclusive *x = session->exclusives; x; x = x->next)
        if (strcmp(x->vhost, vhost) == 0 && strcmp(x->name, name) == 0)
            return;
    struct core_exclusive *x = calloc(1, sizeof(*x));
    if (x && (x->vhost = strdup(vhost)) && (x->name = strdup(name))) {
        x->next = session->exclusives;
        session->exclusives = x;
        return;
    }
    if (x) {
        free(x->vhost);
        free(x);
    }
    log_error("core", "out of memory: exclusive queue '%s' will outlive its connection", name);
}

/* The op is over: unlink it, tell the adapter, free it. */
static void op_finish(struct core_definitions_op *op, int core_error, const char *reason)
{
    op_unlink(op);
    core_definitions_fn done = op->done;
    void *opaque = op->opaque;
    char name[CORE_DEFINITIONS_NAME_MAX];
    snprintf(name, sizeof(name), "%s", op->name);
    op_free(op);
    if (done)
        done(opaque, core_error, reason, name);
}

static void op_on_now(evutil_socket_t fd, short what, void *arg) { op_finish(arg, CORE_OK, ""); }

static void op_on_anchored(void *opaque)
{
    struct core_definitions_op *op = opaque;
    op->anchor = NULL;
    op_finish(op, CORE_OK, "");
}

static void op_on_written(void *opaque, int kafka_err, const char *reason)
{
    struct core_definitions_op *op = opaque;
    op->write = NULL;
    /* A new binding of a queue is answered once the queue's group is anchored
     * on what it now reads, so nothing published after the answer is missed. */
    if (!kafka_err && op->anchor_queue &&
        (op->anchor =
             core_anchor_queue(op->session->core, op->vhost, op->name, op_on_anchored, op)))
        return;
    op_finish(op, kafka_err ? CORE_ERR_UNAVAILABLE : CORE_OK, reason);
}

static struct core_definitions_op *op_new(struct core_session *session, const char *vhost,
                                          const char *name, core_definitions_fn done, void *opaque)
{
    struct core_definitions_op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->session = session;
    op->done = done;
    op->opaque = opaque;
    snprintf(op->vhost, sizeof(op->vhost), "%s", vhost);
    snprintf(op->name, sizeof(op->name), "%s", name);
    op->next = session->definition_ops;
    if (op->next)
        op->next->prev = op;
    session->definition_ops = op;
    return op;
}

/* Complete `op` on a later loop turn without writing anything. */
static int op_complete_soon(struct core_definitions_op *op, char *err, size_t err_size)
{
    op->now = event_new(op->session->core->base, -1, 0, op_on_now, op);
    if (!op->now) {
        op_unlink(op);
        op_free(op);
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    event_active(op->now, EV_TIMEOUT, 0);
    return CORE_OK;
}

/* Write `records` for `op`; on failure the op is gone and err says why. */
static int op_write(struct core_definitions_op *op, const struct definitions_store_record *records,
                    size_t count, char *err, size_t err_size)
{
    if (count == 0)
        return op_complete_soon(op, err, err_size);
    int kafka_err = 0;
    op->write = definitions_store_write(op->session->core->definitions, records, count,
                                        op_on_written, op, &kafka_err);
    if (op->write)
        return CORE_OK;
    op_unlink(op);
    op_free(op);
    snprintf(err, err_size, "cannot write the definitions topic: %s",
             kafka_err == -1 ? "out of memory" : kafka_error_name(kafka_err));
    if (kafka_err == -1)
        return CORE_ERR_INTERNAL;
    return kafka_err == KAFKA_ERR_QUEUE_FULL ? CORE_ERR_BUSY : CORE_ERR_UNAVAILABLE;
}

/* A growable list of records to write, owning their strings. */
struct record_batch {
    struct definitions_store_record *items;
    char **owned; /* 2 per item */
    size_t count, capacity;
    bool failed;
    /* the source exchanges of the bindings it deletes (vhost, name pairs,
     * owned), for batch_auto_delete */
    char **sources;
    size_t source_count, source_capacity;
};

static void batch_add(struct record_batch *batch, char *key, char *value)
{
    if (!key || batch->failed) {
        free(key);
        free(value);
        batch->failed = true;
        return;
    }
    if (batch->count == batch->capacity) {
        size_t capacity = batch->capacity ? batch->capacity * 2 : 8;
        struct definitions_store_record *items = realloc(batch->items, capacity * sizeof(*items));
        if (items)
            batch->items = items;
        char **owned = items ? realloc(batch->owned, capacity * 2 * sizeof(*owned)) : NULL;
        if (!items || !owned) {
            free(key);
            free(value);
            batch->failed = true;
            return;
        }
        batch->owned = owned;
        batch->capacity = capacity;
    }
    batch->items[batch->count] = (struct definitions_store_record){key, value};
    batch->owned[2 * batch->count] = key;
    batch->owned[2 * batch->count + 1] = value;
    batch->count++;
}

static void batch_free(struct record_batch *batch)
{
    for (size_t i = 0; i < 2 * batch->count; i++)
        free(batch->owned[i]);
    free(batch->owned);
    free(batch->items);
    for (size_t i = 0; i < 2 * batch->source_count; i++)
        free(batch->sources[i]);
    free(batch->sources);
}

static bool batch_has(const struct record_batch *batch, const char *key)
{
    for (size_t i = 0; i < batch->count; i++)
        if (strcmp(batch->items[i].key, key) == 0)
            return true;
    return false;
}

/* Remember a deleted binding's source (once). */
static void batch_note_source(struct record_batch *batch, const char *vhost, const char *source)
{
    for (size_t i = 0; i < batch->source_count; i++)
        if (strcmp(batch->sources[2 * i], vhost) == 0 &&
            strcmp(batch->sources[2 * i + 1], source) == 0)
            return;
    if (batch->source_count == batch->source_capacity) {
        size_t capacity = batch->source_capacity ? batch->source_capacity * 2 : 4;
        char **grown = realloc(batch->sources, 2 * capacity * sizeof(*grown));
        if (!grown) {
            batch->failed = true;
            return;
        }
        batch->sources = grown;
        batch->source_capacity = capacity;
    }
    char *v = strdup(vhost), *n = strdup(source);
    if (!v || !n) {
        free(v);
        free(n);
        batch->failed = true;
        return;
    }
    batch->sources[2 * batch->source_count] = v;
    batch->sources[2 * batch->source_count + 1] = n;
    batch->source_count++;
}

static bool batch_add_binding_tombstone(const struct binding_spec *binding, void *opaque)
{
    struct record_batch *batch = opaque;
    char *key = definitions_record_binding_key(binding);
    if (key && batch_has(batch, key)) {
        free(key);
        return true;
    }
    batch_add(batch, key, NULL);
    batch_note_source(batch, binding->vhost, binding->source);
    return true;
}

struct binding_count {
    const struct record_batch *batch;
    size_t kept; /* bindings the batch does not delete */
    bool failed;
};

static bool binding_count_kept(const struct binding_spec *binding, void *opaque)
{
    struct binding_count *count = opaque;
    char *key = definitions_record_binding_key(binding);
    if (!key) {
        count->failed = true;
        return false;
    }
    if (!batch_has(count->batch, key))
        count->kept++;
    free(key);
    return true;
}

static void batch_delete_exchange(struct record_batch *batch, const struct definitions *view,
                                  const char *vhost, const char *name);

/* RabbitMQ deletes an auto-delete exchange with its last binding, and so
 * does the view when it applies the batch (definitions_remove_binding): the
 * topic must say so too, or a node reading it after compaction (the
 * bindings and their tombstones gone, the exchange's record kept) would
 * still have the exchange. For every source exchange the batch takes the
 * last binding of, add the exchange's delete (which may take the last
 * binding of another: the list grows while it is walked). */
static void batch_auto_delete(struct record_batch *batch, const struct definitions *view)
{
    for (size_t i = 0; i < batch->source_count && !batch->failed; i++) {
        const char *vhost = batch->sources[2 * i], *source = batch->sources[2 * i + 1];
        const struct exchange_definition *exchange = definitions_exchange(view, vhost, source);
        if (!exchange || exchange->builtin || !exchange->spec.auto_delete)
            continue;
        char *key = definitions_record_exchange_key(vhost, source);
        bool already = !key || batch_has(batch, key);
        free(key);
        if (already)
            continue;
        struct binding_count count = {.batch = batch};
        definitions_bindings_from(view, vhost, source, binding_count_kept, &count);
        if (count.failed)
            batch->failed = true;
        else if (count.kept == 0)
            batch_delete_exchange(batch, view, vhost, source);
    }
}

/* Tombstones for a queue and every binding to it (bindings first, so a
 * reader never holds a binding whose queue record is gone; compaction may
 * drop the queue's tombstone, never leave a binding without its own). */
static void batch_delete_queue(struct record_batch *batch, const struct definitions *view,
                               const char *vhost, const char *name)
{
    definitions_bindings_to(view, vhost, BINDING_TO_QUEUE, name, batch_add_binding_tombstone,
                            batch);
    batch_add(batch, definitions_record_queue_key(vhost, name), NULL);
}

static void batch_delete_exchange(struct record_batch *batch, const struct definitions *view,
                                  const char *vhost, const char *name)
{
    definitions_bindings_from(view, vhost, name, batch_add_binding_tombstone, batch);
    definitions_bindings_to(view, vhost, BINDING_TO_EXCHANGE, name, batch_add_binding_tombstone,
                            batch);
    batch_add(batch, definitions_record_exchange_key(vhost, name), NULL);
}

/* Write a batch for `op` (with the auto-delete exchanges it empties) and
 * free it. */
static int op_write_batch(struct core_definitions_op *op, struct record_batch *batch, char *err,
                          size_t err_size)
{
    batch_auto_delete(batch, core_definitions(op->session->core));
    if (batch->failed) {
        batch_free(batch);
        op_unlink(op);
        op_free(op);
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    int rc = op_write(op, batch->items, batch->count, err, err_size);
    batch_free(batch);
    return rc;
}

static int core_out_of_memory(char *err, size_t err_size)
{
    snprintf(err, err_size, "out of memory");
    return CORE_ERR_INTERNAL;
}

/* ---- declares -------------------------------------------------------------------------- */

int core_declare_exchange(struct core_session *session, const struct exchange_spec *spec,
                          bool passive, core_definitions_fn done, void *opaque, char *err,
                          size_t err_size)
{
    struct exchange_spec s = *spec;
    if (!s.vhost)
        s.vhost = "/";
    int rc = core_definitions_precheck(session, s.vhost, err, err_size);
    if (rc != CORE_OK)
        return rc;
    if (!s.name || strlen(s.name) >= CORE_DEFINITIONS_NAME_MAX) {
        snprintf(err, err_size, "an exchange name is at most %d bytes",
                 CORE_DEFINITIONS_NAME_MAX - 1);
        return CORE_ERR_PRECONDITION;
    }
    if (passive
            ? !core_acl_allows(session, true, s.name) && !core_acl_allows(session, false, s.name)
            : !core_acl_may(session, CORE_ACL_CONFIGURE_EXCHANGE, s.name))
        return core_definitions_acl(session,
                                    passive ? CORE_ACL_PUBLISH : CORE_ACL_CONFIGURE_EXCHANGE,
                                    "exchange", s.name, s.vhost, err, err_size);
    const struct definitions *view = core_definitions(session->core);
    bool exists = false;
    enum definitions_status status =
        definitions_check_exchange(view, &s, passive, &exists, err, err_size);
    if (status != DEFINITIONS_OK)
        return core_error_of(status);
    struct core_definitions_op *op = op_new(session, s.vhost, s.name, done, opaque);
    if (!op)
        return core_out_of_memory(err, err_size);
    if (exists)
        return op_complete_soon(op, err, err_size);
    char *key = NULL, *value = NULL;
    if (definitions_record_exchange(&s, &key, &value) < 0) {
        op_unlink(op);
        op_free(op);
        return core_out_of_memory(err, err_size);
    }
    struct definitions_store_record record = {key, value};
    rc = op_write(op, &record, 1, err, err_size);
    free(key);
    free(value);
    return rc;
}

int core_declare_queue(struct core_session *session, const struct queue_spec *spec, bool passive,
                       core_definitions_fn done, void *opaque, char *err, size_t err_size)
{
    struct queue_spec s = *spec;
    if (!s.vhost)
        s.vhost = "/";
    int rc = core_definitions_precheck(session, s.vhost, err, err_size);
    if (rc != CORE_OK)
        return rc;
    char generated[64];
    if (!s.name || s.name[0] == '\0') {
        if (passive) {
            snprintf(err, err_size, "a passive declare needs a queue name");
            return CORE_ERR_NOT_FOUND;
        }
        if (definitions_generate_queue_name(generated, sizeof(generated)) < 0) {
            snprintf(err, err_size, "cannot make a server-named queue: no randomness");
            return CORE_ERR_INTERNAL;
        }
        s.name = generated;
    }
    if (strlen(s.name) >= CORE_DEFINITIONS_NAME_MAX) {
        snprintf(err, err_size, "queue name '%.40s...' is longer than %d bytes", s.name,
                 CORE_DEFINITIONS_NAME_MAX - 1);
        return CORE_ERR_PRECONDITION;
    }
    /* a server-named queue is new and its name random: declaring it grants
     * nothing (what reaches it is what its bindings, each checked, route) */
    if (s.name != generated) {
        rc = core_definitions_acl(session, passive ? CORE_ACL_CONSUME : CORE_ACL_CONFIGURE_QUEUE,
                                  "queue", s.name, s.vhost, err, err_size);
        if (rc != CORE_OK)
            return rc;
    }
    char owner[CORE_OWNER_MAX];
    core_session_owner(session, owner, sizeof(owner));
    s.owner = owner; /* who asks: an exclusive queue of another owner is locked */
    const struct definitions *view = core_definitions(session->core);
    bool exists = false;
    /* a server-named queue is new and may use the reserved amq. prefix */
    enum definitions_status status =
        s.name == generated ? definitions_check_queue_arguments(s.arguments, err, err_size)
                            : definitions_check_queue(view, &s, passive, &exists, err, err_size);
    if (status != DEFINITIONS_OK)
        return core_error_of(status);
    struct core_definitions_op *op = op_new(session, s.vhost, s.name, done, opaque);
    if (!op)
        return core_out_of_memory(err, err_size);
    /* x-expires: a declare on this node is a use of the queue (a passive
     * one only looks) */
    if (!passive)
        core_queue_expiry_declared(session->core, s.vhost, s.name, exists ? NULL : s.arguments);
    if (exists)
        return op_complete_soon(op, err, err_size);
    if (!s.exclusive)
        s.owner = NULL; /* only exclusive queues have an owner */
    else /* now, not when answered: a session closed before the answer still deletes it */
        core_exclusive_add(session, s.vhost, s.name);
    char *key = NULL, *value = NULL;
    if (definitions_record_queue(&s, &key, &value) < 0) {
        op_unlink(op);
        op_free(op);
        return core_out_of_memory(err, err_size);
    }
    struct definitions_store_record record = {key, value};
    rc = op_write(op, &record, 1, err, err_size);
    free(key);
    free(value);
    return rc;
}

/* ---- bindings ------------------------------------------------------------------------------ */

struct binding_lookup {
    const char *key; /* the record key of the binding looked for */
    bool found;
    bool failed;
};

static bool binding_lookup_match(const struct binding_spec *binding, void *opaque)
{
    struct binding_lookup *lookup = opaque;
    char *key = definitions_record_binding_key(binding);
    if (!key) {
        lookup->failed = true;
        return false;
    }
    lookup->found = strcmp(key, lookup->key) == 0;
    free(key);
    return !lookup->found;
}

/* Does the view hold exactly this binding (same key and arguments)? */
static bool binding_exists(const struct definitions *view, const struct binding_spec *spec,
                           const char *key)
{
    struct binding_lookup lookup = {.key = key};
    definitions_bindings_from(view, spec->vhost, spec->source, binding_lookup_match, &lookup);
    return lookup.found;
}

static int core_binding_acl(struct core_session *session, const struct binding_spec *s, char *err,
                            size_t err_size)
{
    int rc = core_definitions_acl(session, CORE_ACL_CONSUME, "exchange", s->source, s->vhost, err,
                                  err_size);
    if (rc != CORE_OK)
        return rc;
    if (s->destination_kind == BINDING_TO_QUEUE)
        return core_session_owns_exclusive(session, s->vhost, s->destination)
                   ? CORE_OK /* its own exclusive queue: only it reads it */
                   : core_definitions_acl(session, CORE_ACL_BIND_TO_QUEUE, "queue", s->destination,
                                          s->vhost, err, err_size);
    return core_definitions_acl(session, CORE_ACL_PUBLISH, "exchange", s->destination, s->vhost,
                                err, err_size);
}

static int core_binding_change(struct core_session *session, const struct binding_spec *spec,
                               bool bind, core_definitions_fn done, void *opaque, char *err,
                               size_t err_size)
{
    struct binding_spec s = *spec;
    if (!s.vhost)
        s.vhost = "/";
    if (!s.routing_key)
        s.routing_key = "";
    int rc = core_definitions_precheck(session, s.vhost, err, err_size);
    if (rc != CORE_OK)
        return rc;
    rc = core_binding_acl(session, &s, err, err_size);
    if (rc != CORE_OK)
        return rc;
    const struct definitions *view = core_definitions(session->core);
    enum definitions_status status = definitions_check_binding(view, &s, err, err_size);
    if (status != DEFINITIONS_OK)
        return core_error_of(status);
    if (s.destination_kind == BINDING_TO_QUEUE) {
        rc = core_queue_usable(session, s.vhost, s.destination, err, err_size);
        if (rc != CORE_OK)
            return rc;
    }
    struct core_definitions_op *op = op_new(session, s.vhost, s.destination, done, opaque);
    if (!op)
        return core_out_of_memory(err, err_size);
    char *key = NULL, *value = NULL;
    if (definitions_record_binding(&s, &key, &value) < 0) {
        op_unlink(op);
        op_free(op);
        return core_out_of_memory(err, err_size);
    }
    bool exists = binding_exists(view, &s, key);
    if (exists == bind) { /* nothing to change */
        free(key);
        free(value);
        return op_complete_soon(op, err, err_size);
    }
    if (!bind) { /* the unbind may empty an auto-delete exchange */
        free(key);
        free(value);
        struct record_batch batch = {0};
        batch_add_binding_tombstone(&s, &batch);
        return op_write_batch(op, &batch, err, err_size);
    }
    struct definitions_store_record record = {key, value};
    op->anchor_queue = s.destination_kind == BINDING_TO_QUEUE;
    rc = op_write(op, &record, 1, err, err_size);
    free(key);
    free(value);
    return rc;
}

int core_bind(struct core_session *session, const struct binding_spec *spec,
              core_definitions_fn done, void *opaque, char *err, size_t err_size)
{
    return core_binding_change(session, spec, true, done, opaque, err, err_size);
}

int core_unbind(struct core_session *session, const struct binding_spec *spec,
                core_definitions_fn done, void *opaque, char *err, size_t err_size)
{
    return core_binding_change(session, spec, false, done, opaque, err, err_size);
}

/* ---- deletes ------------------------------------------------------------------------------- */

int core_delete_exchange(struct core_session *session, const char *vhost, const char *name,
                         bool if_unused, core_definitions_fn done, void *opaque, char *err,
                         size_t err_size)
{
    if (!vhost)
        vhost = "/";
    int rc = core_definitions_precheck(session, vhost, err, err_size);
    if (rc != CORE_OK)
        return rc;
    rc = core_definitions_acl(session, CORE_ACL_CONFIGURE_EXCHANGE, "exchange", name, vhost, err,
                              err_size);
    if (rc != CORE_OK)
        return rc;
    const struct definitions *view = core_definitions(session->core);
    enum definitions_status status =
        definitions_check_exchange_delete(view, vhost, name, if_unused, err, err_size);
    if (status != DEFINITIONS_OK && status != DEFINITIONS_NOT_FOUND)
        return core_error_of(status);
    struct core_definitions_op *op = op_new(session, vhost, name, done, opaque);
    if (!op)
        return core_out_of_memory(err, err_size);
    if (status == DEFINITIONS_NOT_FOUND) /* deleting what is not there succeeds */
        return op_complete_soon(op, err, err_size);
    struct record_batch batch = {0};
    batch_delete_exchange(&batch, view, vhost, name);
    return op_write_batch(op, &batch, err, err_size);
}

size_t core_queue_local_consumers(const struct core *core, const char *vhost, const char *name)
{
    size_t count = 0;
    for (const struct core_session *s = core->sessions; s; s = s->next)
        for (const struct core_subscription *sub = s->subscriptions; sub; sub = sub->next)
            if (sub->destination.kind == DESTINATION_QUEUE &&
                strcmp(sub->destination.name, name) == 0 && strcmp(sub->vhost, vhost) == 0)
                count++;
    return count;
}

int core_delete_queue(struct core_session *session, const char *vhost, const char *name,
                      bool if_unused, bool if_empty, core_definitions_fn done, void *opaque,
                      char *err, size_t err_size)
{
    if (!vhost)
        vhost = "/";
    int rc = core_definitions_precheck(session, vhost, err, err_size);
    if (rc != CORE_OK)
        return rc;
    rc = core_definitions_acl(session, CORE_ACL_CONFIGURE_QUEUE, "queue", name, vhost, err,
                              err_size);
    if (rc != CORE_OK)
        return rc;
    if (if_empty) {
        snprintf(err, err_size,
                 "if-empty is not supported: kbridge cannot tell whether queue '%s' has unread "
                 "messages",
                 name);
        return CORE_ERR_UNSUPPORTED;
    }
    rc = core_queue_usable(session, vhost, name, err, err_size);
    if (rc != CORE_OK)
        return rc;
    const struct definitions *view = core_definitions(session->core);
    if (if_unused && definitions_queue(view, vhost, name) &&
        core_queue_local_consumers(session->core, vhost, name) > 0) {
        snprintf(err, err_size, "queue '%s' in vhost '%s' in use", name, vhost);
        return CORE_ERR_PRECONDITION;
    }
    struct core_definitions_op *op = op_new(session, vhost, name, done, opaque);
    if (!op)
        return core_out_of_memory(err, err_size);
    if (!definitions_queue(view, vhost, name)) /* deleting what is not there succeeds */
        return op_complete_soon(op, err, err_size);
    struct record_batch batch = {0};
    batch_delete_queue(&batch, view, vhost, name);
    return op_write_batch(op, &batch, err, err_size);
}

int core_queue_usable(struct core_session *session, const char *vhost, const char *name, char *err,
                      size_t err_size)
{
    if (!vhost)
        vhost = "/";
    const struct queue_definition *queue =
        definitions_queue(core_definitions(session->core), vhost, name);
    if (!queue || !queue->spec.exclusive)
        return CORE_OK;
    char owner[CORE_OWNER_MAX];
    core_session_owner(session, owner, sizeof(owner));
    if (queue->spec.owner && strcmp(queue->spec.owner, owner) == 0)
        return CORE_OK;
    snprintf(err, err_size,
             "cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It could be "
             "originally declared on another connection or the exclusive property value does "
             "not match that of the original declaration.",
             name, vhost);
    return CORE_ERR_LOCKED;
}

/* ---- sessions closing: their exclusive queues go ------------------------------------------- */

/* Write, without anyone waiting, the deletes of `batch`. */
static void core_write_unattended(struct core *core, struct record_batch *batch, const char *what)
{
    batch_auto_delete(batch, core_definitions(core));
    if (batch->count == 0 || batch->failed) {
        if (batch->failed)
            log_error("core", "out of memory deleting %s", what);
        batch_free(batch);
        return;
    }
    int kafka_err = 0;
    if (!definitions_store_write(core->definitions, batch->items, batch->count, NULL, NULL,
                                 &kafka_err))
        log_error("core", "cannot delete %s: %s", what,
                  kafka_err == -1 ? "out of memory" : kafka_error_name(kafka_err));
    batch_free(batch);
}

void core_delete_queue_unattended(struct core *core, const char *vhost, const char *name,
                                  const char *what)
{
    struct record_batch batch = {0};
    batch_delete_queue(&batch, core_definitions(core), vhost, name);
    core_write_unattended(core, &batch, what);
}

void core_definitions_session_closed(struct core_session *session)
{
    while (session->definition_ops) {
        struct core_definitions_op *op = session->definition_ops;
        op_unlink(op);
        definitions_store_write_cancel(op->write);
        op_free(op);
    }
    if (!session->exclusives) /* most sessions: nothing more to do */
        return;
    struct core *core = session->core;
    const struct definitions *view = core_definitions(core);
    char owner[CORE_OWNER_MAX];
    core_session_owner(session, owner, sizeof(owner));
    struct record_batch batch = {0};
    while (session->exclusives) {
        struct core_exclusive *x = session->exclusives;
        session->exclusives = x->next;
        const struct queue_definition *queue = definitions_queue(view, x->vhost, x->name);
        if (queue && queue->spec.exclusive && queue->spec.owner &&
            strcmp(queue->spec.owner, owner) == 0) {
            log_debug("core", "deleting exclusive queue '%s' in vhost '%s' of %s", x->name,
                      x->vhost, owner);
            batch_delete_queue(&batch, view, x->vhost, x->name);
        } else if (!queue) {
            /* its declare may still be on its way (the session closed before the
             * answer): the tombstone follows it on the one partition; after a
             * failed declare or a delete it removes nothing */
            batch_add(&batch, definitions_record_queue_key(x->vhost, x->name), NULL);
        }
        free(x->vhost);
        free(x->name);
        free(x);
    }
    core_write_unattended(core, &batch, "a closed connection's exclusive queues");
}

/* ---- start-up: the previous incarnation's exclusive queues, definitions.file ---------- */

static void core_startup_write_done(void *opaque, int kafka_err, const char *reason)
{
    struct core *core = opaque;
    if (kafka_err)
        log_error("definitions", "start-up write failed: %s", reason);
    if (--core->startup_writes == 0)
        definitions_store_startup_done(core->definitions);
}

/* Write `batch` as start-up work: the store is ready once it is applied. */
static void core_startup_write(struct core *core, struct record_batch *batch, const char *what)
{
    batch_auto_delete(batch, core_definitions(core));
    if (batch->failed)
        log_error("definitions", "out of memory writing %s", what);
    if (batch->count == 0 || batch->failed) {
        batch_free(batch);
        return;
    }
    int kafka_err = 0;
    core->startup_writes++;
    if (!definitions_store_write(core->definitions, batch->items, batch->count,
                                 core_startup_write_done, core, &kafka_err)) {
        core->startup_writes--;
        log_error("definitions", "cannot write %s: %s", what,
                  kafka_err == -1 ? "out of memory" : kafka_error_name(kafka_err));
    }
    batch_free(batch);
}

struct stale_exclusive {
    const struct definitions *view;
    const char *prefix; /* "NODE/" */
    size_t prefix_len;
    struct record_batch *batch;
    size_t count;
};

static bool stale_exclusive_each(const struct queue_definition *queue, void *opaque)
{
    struct stale_exclusive *stale = opaque;
    if (queue->spec.exclusive && queue->spec.owner &&
        strncmp(queue->spec.owner, stale->prefix, stale->prefix_len) == 0) {
        batch_delete_queue(stale->batch, stale->view, queue->spec.vhost, queue->spec.name);
        stale->count++;
    }
    return true;
}

/* ---- definitions.file ---- */

struct file_import {
    struct core *core;
    const char *path;
    bool bindings; /* second pass: bindings only; first: exchanges and queues */
    struct record_batch batch;
    size_t skipped_vhost, refused, unchanged, written;
};

static bool file_vhost_ok(struct file_import *import, const char *vhost, const char *kind,
                          const char *name)
{
    if (config_vhost_find(core_config(import->core), vhost))
        return true;
    log_warn("definitions", "%s: %s '%s' in vhost '%s' skipped: the vhost is not in vhosts",
             import->path, kind, name, vhost);
    import->skipped_vhost++;
    return false;
}

static int file_exchange(const struct exchange_spec *spec, void *opaque)
{
    struct file_import *import = opaque;
    if (import->bindings || !file_vhost_ok(import, spec->vhost, "exchange", spec->name))
        return 0;
    char err[CORE_DEFINITIONS_REASON_MAX];
    bool exists = false;
    enum definitions_status status = definitions_check_exchange(
        core_definitions(import->core), spec, false, &exists, err, sizeof(err));
    if (status != DEFINITIONS_OK) {
        log_error("definitions", "%s: exchange '%s' in vhost '%s' not loaded: %s", import->path,
                  spec->name, spec->vhost, err);
        import->refused++;
    } else if (exists) {
        import->unchanged++;
    } else {
        char *key = NULL, *value = NULL;
        if (definitions_record_exchange(spec, &key, &value) < 0)
            import->batch.failed = true;
        batch_add(&import->batch, key, value);
        import->written++;
    }
    return 0;
}

static int file_queue(const struct queue_spec *spec, void *opaque)
{
    struct file_import *import = opaque;
    if (import->bindings || !file_vhost_ok(import, spec->vhost, "queue", spec->name))
        return 0;
    char err[CORE_DEFINITIONS_REASON_MAX];
    if (spec->exclusive) {
        log_error("definitions",
                  "%s: queue '%s' in vhost '%s' not loaded: an exclusive queue "
                  "belongs to a connection",
                  import->path, spec->name, spec->vhost);
        import->refused++;
        return 0;
    }
    struct queue_spec s = *spec;
    s.owner = NULL;
    bool exists = false;
    enum definitions_status status = definitions_check_queue(core_definitions(import->core), &s,
                                                             false, &exists, err, sizeof(err));
    if (status != DEFINITIONS_OK) {
        log_error("definitions", "%s: queue '%s' in vhost '%s' not loaded: %s", import->path,
                  spec->name, spec->vhost, err);
        import->refused++;
    } else if (exists) {
        import->unchanged++;
    } else {
        char *key = NULL, *value = NULL;
        if (definitions_record_queue(&s, &key, &value) < 0)
            import->batch.failed = true;
        batch_add(&import->batch, key, value);
        import->written++;
    }
    return 0;
}

static int file_binding(const struct binding_spec *spec, void *opaque)
{
    struct file_import *import = opaque;
    if (!import->bindings || !file_vhost_ok(import, spec->vhost, "binding from", spec->source))
        return 0;
    char err[CORE_DEFINITIONS_REASON_MAX];
    const struct definitions *view = core_definitions(import->core);
    enum definitions_status status = definitions_check_binding(view, spec, err, sizeof(err));
    if (status != DEFINITIONS_OK) {
        log_error("definitions",
                  "%s: binding of %s '%s' to exchange '%s' in vhost '%s' not "
                  "loaded: %s",
                  import->path, spec->destination_kind == BINDING_TO_QUEUE ? "queue" : "exchange",
                  spec->destination, spec->source, spec->vhost, err);
        import->refused++;
        return 0;
    }
    char *key = NULL, *value = NULL;
    if (definitions_record_binding(spec, &key, &value) < 0) {
        import->batch.failed = true;
        return 0;
    }
    if (binding_exists(view, spec, key)) {
        free(key);
        free(value);
        import->unchanged++;
        return 0;
    }
    batch_add(&import->batch, key, value);
    import->written++;
    return 0;
}

/* One pass over definitions.file (entities, or bindings); the records to
 * write go to a start-up write. */
static void core_load_file_pass(struct core *core, bool bindings);

static void core_file_entities_done(void *opaque, int kafka_err, const char *reason)
{
    struct core *core = opaque;
    if (kafka_err)
        log_error("definitions", "%s: writing its exchanges and queues failed: %s",
                  core_config(core)->definitions.file, reason);
    core_load_file_pass(core, true); /* bindings: their exchanges and queues are in the view now */
    core_startup_write_done(core, 0, "");
}

static void core_load_file_pass(struct core *core, bool bindings)
{
    const char *path = core_config(core)->definitions.file;
    char err[CORE_DEFINITIONS_REASON_MAX];
    size_t len = 0;
    char *text = definitions_file_read(path, &len, err, sizeof(err));
    struct file_import import = {.core = core, .path = path, .bindings = bindings};
    struct definitions_import callbacks = {
        .exchange = file_exchange,
        .queue = file_queue,
        .binding = file_binding,
        .opaque = &import,
    };
    if (!text || definitions_import_json(text, len, &callbacks, err, sizeof(err)) < 0) {
        log_error("definitions", "definitions.file: %s: %s (nothing more loaded from it)", path,
                  err);
        free(text);
        batch_free(&import.batch);
        return;
    }
    free(text);
    const struct config *config = core_config(core);
    if (!bindings && config->definitions.import_users)
        log_info("definitions",
                 "%s: %zu user(s) and %zu permission(s) imported into auth.users; %zu user(s) "
                 "left to auth.users' own entry and %zu permission(s) skipped (for those users "
                 "or in vhosts not configured)",
                 path, config->definitions.imported_users, config->definitions.imported_permissions,
                 config->definitions.skipped_users, config->definitions.skipped_permissions);
    else if (!bindings && (callbacks.users || callbacks.permissions))
        log_info("definitions",
                 "%s: %zu user(s) and %zu permission(s) skipped: kbridge takes users and ACLs "
                 "from auth.users (definitions.import_users: true imports them)",
                 path, callbacks.users, callbacks.permissions);
    log_info("definitions",
             "%s: %s: %zu to write, %zu already as defined, %zu refused, %zu in "
             "vhosts not configured",
             path, bindings ? "bindings" : "exchanges and queues", import.written, import.unchanged,
             import.refused, import.skipped_vhost);
    if (bindings) {
        core_startup_write(core, &import.batch, "definitions.file's bindings");
        return;
    }
    /* Exchanges and queues first; the bindings pass runs once they are applied. */
    if (import.batch.failed || import.batch.count == 0) {
        if (import.batch.failed)
            log_error("definitions", "out of memory loading %s", path);
        batch_free(&import.batch);
        core_load_file_pass(core, true);
        return;
    }
    int kafka_err = 0;
    core->startup_writes++;
    if (!definitions_store_write(core->definitions, import.batch.items, import.batch.count,
                                 core_file_entities_done, core, &kafka_err)) {
        core->startup_writes--;
        log_error("definitions", "cannot write %s's exchanges and queues: %s", path,
                  kafka_err == -1 ? "out of memory" : kafka_error_name(kafka_err));
    }
    batch_free(&import.batch);
}

/* ---- the same loader for a definitions document given at run time ---------------- */

/* One core_import_definitions: the two passes of definitions.file over a
 * text, each written and applied before the next (bindings need their
 * exchanges and queues in the view). */
struct core_import {
    struct core *core;
    char *text;
    size_t len;
    char *label;
    bool bindings;       /* the pass being written */
    core_import_fn done; /* NULL once cancelled */
    void *opaque;
    struct core_import_counts counts;
    struct event *soon;
};

static void import_free(struct core_import *imp)
{
    if (imp->soon)
        event_free(imp->soon);
    free(imp->text);
    free(imp->label);
    free(imp);
}

static void import_finish(struct core_import *imp, int core_error, const char *reason)
{
    if (imp->done)
        imp->done(imp->opaque, core_error, reason, &imp->counts);
    import_free(imp);
}

static void import_written(void *opaque, int kafka_err, const char *reason);

/* Build and write one pass. 0: written (import_written follows), 1: nothing
 * to write, -1: out of memory or Kafka refused at once (reason in err). */
static int import_pass(struct core_import *imp, bool bindings, char *err, size_t err_size)
{
    imp->bindings = bindings;
    struct file_import import = {.core = imp->core, .path = imp->label, .bindings = bindings};
    struct definitions_import callbacks = {
        .exchange = file_exchange,
        .queue = file_queue,
        .binding = file_binding,
        .opaque = &import,
    };
    if (definitions_import_json(imp->text, imp->len, &callbacks, err, err_size) < 0) {
        batch_free(&import.batch);
        return -1;
    }
    imp->counts.written += import.written;
    imp->counts.unchanged += import.unchanged;
    imp->counts.refused += import.refused;
    imp->counts.skipped_vhost += import.skipped_vhost;
    if (!bindings) {
        imp->counts.users = callbacks.users;
        imp->counts.permissions = callbacks.permissions;
    }
    log_info("definitions",
             "%s: %s: %zu to write, %zu already as defined, %zu refused, %zu in "
             "vhosts not configured",
             imp->label, bindings ? "bindings" : "exchanges and queues", import.written,
             import.unchanged, import.refused, import.skipped_vhost);
    if (import.batch.failed) {
        batch_free(&import.batch);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    if (import.batch.count == 0) {
        batch_free(&import.batch);
        return 1;
    }
    int kafka_err = 0;
    struct definitions_write *write =
        definitions_store_write(imp->core->definitions, import.batch.items, import.batch.count,
                                import_written, imp, &kafka_err);
    batch_free(&import.batch);
    if (!write) {
        snprintf(err, err_size, "cannot write the definitions topic: %s",
                 kafka_err == -1 ? "out of memory" : kafka_error_name(kafka_err));
        return -1;
    }
    return 0;
}

static void import_written(void *opaque, int kafka_err, const char *reason)
{
    struct core_import *imp = opaque;
    if (kafka_err) {
        import_finish(imp, CORE_ERR_UNAVAILABLE, reason);
        return;
    }
    if (imp->bindings) {
        import_finish(imp, CORE_OK, "");
        return;
    }
    char err[CORE_DEFINITIONS_REASON_MAX] = "";
    int rc = import_pass(imp, true, err, sizeof(err));
    if (rc == 1)
        import_finish(imp, CORE_OK, "");
    else if (rc < 0)
        import_finish(imp, CORE_ERR_UNAVAILABLE, err);
}

static void import_on_soon(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct core_import *imp = arg;
    char err[CORE_DEFINITIONS_REASON_MAX] = "";
    int rc = import_pass(imp, true, err, sizeof(err));
    if (rc == 1)
        import_finish(imp, CORE_OK, "");
    else if (rc < 0)
        import_finish(imp, CORE_ERR_UNAVAILABLE, err);
}

struct core_import *core_import_definitions(struct core *core, const char *text, size_t len,
                                            const char *label, core_import_fn done, void *opaque,
                                            int *core_error, char *err, size_t err_size)
{
    *core_error = CORE_ERR_INTERNAL;
    if (!definitions_store_ready(core->definitions)) {
        snprintf(err, err_size, "not ready: %s",
                 definitions_store_not_ready_reason(core->definitions));
        *core_error = CORE_ERR_UNAVAILABLE;
        return NULL;
    }
    struct core_import *imp = calloc(1, sizeof(*imp));
    if (!imp || !(imp->text = malloc(len + 1)) || !(imp->label = strdup(label)) ||
        !(imp->soon = event_new(core->base, -1, 0, import_on_soon, imp))) {
        if (imp)
            import_free(imp);
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    memcpy(imp->text, text, len);
    imp->text[len] = '\0';
    imp->len = len;
    imp->core = core;
    imp->done = done;
    imp->opaque = opaque;
    int rc = import_pass(imp, false, err, err_size);
    if (rc < 0) {
        *core_error = strstr(err, "definitions topic") || strstr(err, "out of memory")
                          ? CORE_ERR_UNAVAILABLE
                          : CORE_ERR_INVALID;
        import_free(imp);
        return NULL;
    }
    if (rc == 1) /* no entity to write: the bindings pass on the next turn */
        event_active(imp->soon, EV_TIMEOUT, 0);
    *core_error = CORE_OK;
    return imp;
}

void core_import_cancel(struct core_import *imp)
{
    if (imp)
        imp->done = NULL;
}

static void core_definitions_startup(void *opaque)
{
    struct core *core = opaque;
    const struct config *config = core_config(core);
    core->startup_writes = 1; /* held until the work below is under way */
    /* Exclusive queues of this node's previous incarnation: their connections are gone. */
    char prefix[CORE_OWNER_MAX];
    snprintf(prefix, sizeof(prefix), "%s/", config->node_id);
    struct record_batch batch = {0};
    struct stale_exclusive stale = {
        .view = core_definitions(core),
        .prefix = prefix,
        .prefix_len = strlen(prefix),
        .batch = &batch,
    };
    definitions_each_queue(stale.view, stale_exclusive_each, &stale);
    if (stale.count)
        log_info("definitions",
                 "deleting %zu exclusive queue(s) of this node's previous run (owner %s*)",
                 stale.count, prefix);
    core_startup_write(core, &batch, "the previous run's exclusive queues");
    if (config->definitions.file)
        core_load_file_pass(core, false);
    core_startup_write_done(core, 0, "");
}

int core_definitions_start(struct core *core, char *err, size_t err_size)
{
    core->definitions =
        definitions_store_new(core->base, core->config, core->kafka, core->metrics, err, err_size);
    if (!core->definitions)
        return -1;
    definitions_store_set_startup(core->definitions, core_definitions_startup, core);
    return 0;
}
