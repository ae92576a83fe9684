/* SPDX-License-Identifier: Apache-2.0 */
/* core_depth.c -- a queue's depth, cluster-wide, for a session that asks
 * (core.h core_queue_depth; architecture §9 "Queue depth"): AMQP 0-9-1's
 * queue.declare-ok message_count. One kafka_group_lag lookup on the worker
 * pool (the committed offsets of the queue's group `kbridge.q.NAME` and
 * the end offsets of every topic it reads), summed from where its ready
 * messages start (core_queue_ready_from: the committed offset, or the last
 * purge's end). What this node has delivered and not had settled yet is
 * still counted (it is not committed), as RabbitMQ counts unacknowledged
 * messages apart: declare-ok's count is then an upper bound.
 *
 * Owns: every struct core_depth_op from core_queue_depth until its lookup
 * ended (the session may have closed meanwhile: then nobody is told). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "core_internal.h"
#include "kafka.h"
#include "queue_bindings.h"

struct core_depth_op {
    struct core_depth_op *next, *prev; /* in session->depth_ops */
    struct core_session *session;      /* NULL once the session closed */
    struct core *core;
    core_depth_fn done;
    void *opaque;
    char *vhost;
    char *name;
};

static void depth_unlink(struct core_depth_op *op)
{
    if (!op->session)
        return;
    if (op->prev)
        op->prev->next = op->next;
    else
        op->session->depth_ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->next = op->prev = NULL;
    op->session = NULL;
}

static void depth_on_lag(void *opaque, int err, const char *reason,
                         const struct kafka_partition_lag *parts, size_t count)
{
    struct core_depth_op *op = opaque;
    core_depth_fn done = op->session ? op->done : NULL;
    uint64_t depth = 0;
    if (done && !err)
        depth =
            core_queue_ready_count(core_definitions(op->core), op->vhost, op->name, parts, count);
    depth_unlink(op);
    void *done_opaque = op->opaque;
    free(op->vhost);
    free(op->name);
    free(op);
    if (done)
        done(done_opaque, err ? CORE_ERR_UNAVAILABLE : CORE_OK, err ? reason : "", depth);
}

int core_queue_depth(struct core_session *session, const char *vhost, const char *name,
                     core_depth_fn done, void *opaque, char *err, size_t err_size)
{
    struct core *core = session->core;
    if (!vhost)
        vhost = "/";
    int rc = CORE_ERR_INTERNAL;
    struct core_depth_op *op = calloc(1, sizeof(*op));
    if (op && (op->vhost = strdup(vhost)) && (op->name = strdup(name))) {
        op->core = core;
        op->done = done;
        op->opaque = opaque;
        rc = core_queue_lag(core, vhost, name, depth_on_lag, op);
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
    op->next = session->depth_ops;
    if (op->next)
        op->next->prev = op;
    session->depth_ops = op;
    return CORE_OK;
}

void core_depth_session_closed(struct core_session *session)
{
    while (session->depth_ops)
        depth_unlink(session->depth_ops); /* the lookup frees each when it ends */
}
