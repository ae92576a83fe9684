/* SPDX-License-Identifier: Apache-2.0 */
/* core_purge.c -- purging a queue, cluster-wide (core.h core_purge_queue;
 * architecture §11 "Purge").
 *
 * A purge looks up, on the worker pool (kafka_group_lag), the end offset of
 * every partition of every topic the queue's group `kbridge.q.NAME` reads
 * and the group's committed offsets (the answer's message count), then
 * writes a purge record `purge/VHOST/NAME` with those end offsets to the
 * definitions topic, and answers once Kafka confirmed it and this node's
 * reader applied it. Every node applies it to its view (the queue's
 * purge_offsets) and, through the queue engine's watch, to the in-flight
 * state of the partitions it holds: available records below the end
 * offsets are settled without delivery, records below them fetched later
 * too, so the group's commits move to the end. A partition assigned later
 * (to any node) gets the same floor when assigned. No commit is made from
 * outside the group: its members move it, or the next member to join.
 *
 * Owns: every struct core_purge_op from core_purge_queue until its done
 * ran or the lookup ended after the session closed. */
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
#include "queue_bindings.h"

struct core_purge_op {
    struct core_purge_op *next, *prev; /* in session->purge_ops */
    struct core_session *session;      /* NULL once the session closed */
    struct core *core;
    core_purge_fn done;
    void *opaque;
    struct definitions_write *write;
    char *vhost;
    char *name;
    uint64_t count;
};

static void purge_unlink(struct core_purge_op *op)
{
    if (!op->session)
        return;
    if (op->prev)
        op->prev->next = op->next;
    else
        op->session->purge_ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->next = op->prev = NULL;
    op->session = NULL;
}

static void purge_free(struct core_purge_op *op)
{
    purge_unlink(op);
    free(op->vhost);
    free(op->name);
    free(op);
}

static void purge_answer(struct core_purge_op *op, int core_error, const char *reason)
{
    core_purge_fn done = op->session ? op->done : NULL;
    void *opaque = op->opaque;
    uint64_t count = op->count;
    purge_free(op);
    if (done)
        done(opaque, core_error, reason, count);
}

static void purge_on_written(void *opaque, int kafka_err, const char *reason)
{
    struct core_purge_op *op = opaque;
    op->write = NULL;
    if (kafka_err) {
        char text[512];
        snprintf(text, sizeof(text), "cannot write the purge to the definitions topic: %s", reason);
        purge_answer(op, CORE_ERR_UNAVAILABLE, text);
        return;
    }
    log_info("core", "queue '%s' in vhost '%s' purged: %llu message(s)", op->name, op->vhost,
             (unsigned long long)op->count);
    purge_answer(op, CORE_OK, "");
}

/* The floor a previous purge left on (topic, partition), or -1. */
static int64_t purge_floor(const struct queue_definition *definition, const char *topic,
                           int32_t partition)
{
    size_t i;
    const json_t *entry;
    int64_t floor = -1;
    json_array_foreach(definition ? definition->purge_offsets : NULL, i, entry)
    {
        const char *entry_topic = json_string_value(json_object_get(entry, "topic"));
        if (json_integer_value(json_object_get(entry, "partition")) == partition && entry_topic &&
            strcmp(entry_topic, topic) == 0)
            floor = (int64_t)json_integer_value(json_object_get(entry, "offset"));
    }
    return floor;
}

int64_t core_queue_ready_from(const struct definitions *view, const char *vhost, const char *name,
                              const char *topic, int32_t partition, int64_t committed, int64_t low)
{
    int64_t from = committed >= 0 ? committed : low;
    int64_t floor = purge_floor(definitions_queue(view, vhost, name), topic, partition);
    return floor > from ? floor : from;
}

uint64_t core_queue_ready_count(const struct definitions *view, const char *vhost, const char *name,
                                const struct kafka_partition_lag *parts, size_t count)
{
    uint64_t ready = 0;
    for (size_t i = 0; i < count; i++) {
        int64_t from = core_queue_ready_from(view, vhost, name, parts[i].topic, parts[i].partition,
                                             parts[i].committed, parts[i].low);
        if (parts[i].end > from)
            ready += (uint64_t)(parts[i].end - from);
    }
    return ready;
}

static void purge_on_lag(void *opaque, int err, const char *reason,
                         const struct kafka_partition_lag *parts, size_t count)
{
    struct core_purge_op *op = opaque;
    if (!op->session) { /* the session closed while Kafka answered */
        purge_free(op);
        return;
    }
    if (err) {
        purge_answer(op, CORE_ERR_UNAVAILABLE, reason);
        return;
    }
    op->count =
        core_queue_ready_count(core_definitions(op->core), op->vhost, op->name, parts, count);
    json_t *offsets = json_array();
    for (size_t i = 0; offsets && i < count; i++) {
        if (json_array_append_new(offsets, json_pack("{s:s,s:i,s:I}", "topic", parts[i].topic,
                                                     "partition", (int)parts[i].partition, "offset",
                                                     (json_int_t)parts[i].end)) < 0) {
            json_decref(offsets);
            offsets = NULL;
        }
    }
    char *key = NULL, *value = NULL;
    if (!offsets || definitions_record_purge(op->vhost, op->name, offsets, &key, &value) < 0) {
        json_decref(offsets);
        purge_answer(op, CORE_ERR_INTERNAL, "out of memory");
        return;
    }
    json_decref(offsets);
    struct definitions_store_record record = {key, value};
    int kafka_err = 0;
    op->write = definitions_store_write(op->core->definitions, &record, 1, purge_on_written, op,
                                        &kafka_err);
    free(key);
    free(value);
    if (!op->write) {
        char text[300];
        snprintf(text, sizeof(text), "cannot write the definitions topic: %s",
                 kafka_err == -1 ? "out of memory" : kafka_error_name(kafka_err));
        purge_answer(op, kafka_err == -1 ? CORE_ERR_INTERNAL : CORE_ERR_UNAVAILABLE, text);
    }
}

int core_queue_topics(struct core *core, const char *vhost, const char *name, char ***topics,
                      size_t *count)
{
    const char *prefix = core_vhost_topic_prefix(core, vhost);
    if (!prefix)
        prefix = "";
    size_t own_len = strlen(prefix) + strlen(name) + 1;
    char *own = malloc(own_len);
    if (!own)
        return -1;
    snprintf(own, own_len, "%s%s", prefix, name);
    struct queue_bindings bindings = {0};
    int rc = queue_bindings_compute(core_definitions(core), vhost, name, &bindings);
    if (rc == 0)
        rc = queue_bindings_topics(&bindings, prefix, own, topics, count);
    queue_bindings_clear(&bindings);
    free(own);
    if (rc < 0)
        return -1;
    size_t kept = 0;
    for (size_t i = 0; i < *count; i++) {
        if ((*topics)[i][0] == '^')
            free((*topics)[i]); /* an amq.topic wildcard binding: not looked up */
        else
            (*topics)[kept++] = (*topics)[i];
    }
    *count = kept;
    return 0;
}

int core_queue_lag(struct core *core, const char *vhost, const char *name, kafka_group_lag_fn done,
                   void *opaque)
{
    char **topics = NULL;
    size_t topic_count = 0;
    if (core_queue_topics(core, vhost, name, &topics, &topic_count) < 0)
        return CORE_ERR_INTERNAL;
    char group[ADDRESS_GROUP_ID_MAX + 1];
    if (address_group_id(vhost, "q", name, NULL, group, sizeof(group)) < 0) {
        queue_bindings_free_topics(topics, topic_count);
        return CORE_ERR_INVALID;
    }
    int rc = kafka_group_lag(core->kafka, group, topics, topic_count, done, opaque);
    queue_bindings_free_topics(topics, topic_count);
    return rc < 0 ? CORE_ERR_UNAVAILABLE : CORE_OK;
}

int core_purge_queue(struct core_session *session, const char *vhost, const char *name,
                     core_purge_fn done, void *opaque, char *err, size_t err_size)
{
    struct core *core = session->core;
    if (!vhost)
        vhost = "/";
    int rc = core_definitions_precheck(session, vhost, err, err_size);
    if (rc != CORE_OK)
        return rc;
    if (!definitions_queue(core_definitions(core), vhost, name)) {
        snprintf(err, err_size, "no queue '%s' in vhost '%s'", name, vhost);
        return CORE_ERR_NOT_FOUND;
    }
    rc = core_definitions_acl(session, CORE_ACL_CONSUME, "queue", name, vhost, err, err_size);
    if (rc != CORE_OK)
        return rc;
    rc = core_queue_usable(session, vhost, name, err, err_size);
    if (rc != CORE_OK)
        return rc;
    struct core_purge_op *op = calloc(1, sizeof(*op));
    if (op && (op->vhost = strdup(vhost)) && (op->name = strdup(name))) {
        op->core = core;
        op->done = done;
        op->opaque = opaque;
        rc = core_queue_lag(core, vhost, name, purge_on_lag, op);
    } else {
        rc = CORE_ERR_INTERNAL;
    }
    if (rc != CORE_OK) {
        if (op) {
            free(op->vhost);
            free(op->name);
        }
        free(op);
        snprintf(err, err_size, "%s",
                 rc == CORE_ERR_INTERNAL ? "out of memory"
                                         : "cannot look up the queue's offsets now");
        return rc;
    }
    op->session = session;
    op->next = session->purge_ops;
    if (op->next)
        op->next->prev = op;
    session->purge_ops = op;
    return CORE_OK;
}

void core_purge_session_closed(struct core_session *session)
{
    while (session->purge_ops) {
        struct core_purge_op *op = session->purge_ops;
        if (op->write) { /* the record may still be written: nobody hears of it */
            definitions_store_write_cancel(op->write);
            purge_free(op);
        } else {
            purge_unlink(op); /* the lookup is running: it frees the op when it ends */
        }
    }
}
