/* SPDX-License-Identifier: Apache-2.0 */
/* core_exclusive.c -- exclusive consumers of a queue (core.h
 * core_subscribe_options.exclusive_consumer; architecture §12 "Exclusive
 * consumers"): the check core_subscribe makes before a queue subscription
 * starts, over this node's sessions and the cluster view (core_set_cluster,
 * the status topic's records of the other live nodes), and the notice to the
 * cluster view when an exclusive consumer of this node comes or goes.
 *
 * Exact on one node (one loop sees every subscription); across nodes as
 * fresh as the other nodes' latest status records, which they write at once
 * when their exclusive consumers change: two nodes admitting conflicting
 * consumers within one status round trip both succeed (architecture §12). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core.h"
#include "core_internal.h"

void core_set_cluster(struct core *core, const struct core_cluster_hooks *hooks, void *opaque)
{
    core->cluster = hooks;
    core->cluster_opaque = hooks ? opaque : NULL;
}

/* Does subscription `sub` consume from queue (vhost, name)? The same
 * subscriptions core_queue_local_consumers counts. */
static bool core_exclusive_same_queue(const struct core_subscription *sub, const char *vhost,
                                      const char *name)
{
    return sub->destination.kind == DESTINATION_QUEUE && !sub->durable_name &&
           strcmp(sub->destination.name, name) == 0 && strcmp(sub->vhost, vhost) == 0;
}

bool core_queue_exclusive_consumer(const struct core *core, const char *vhost, const char *name)
{
    for (const struct core_session *s = core->sessions; s; s = s->next)
        for (const struct core_subscription *sub = s->subscriptions; sub; sub = sub->next)
            if (core_exclusive_same_queue(sub, vhost, name) && sub->options.exclusive_consumer)
                return true;
    return false;
}

int core_exclusive_check(struct core_session *session, const char *name, bool exclusive, char *err,
                         size_t err_size)
{
    struct core *core = session->core;
    const char *vhost = session->vhost;
    size_t others = 0;
    bool locked = false;
    for (const struct core_session *s = core->sessions; s && !locked; s = s->next)
        for (const struct core_subscription *sub = s->subscriptions; sub && !locked;
             sub = sub->next)
            if (core_exclusive_same_queue(sub, vhost, name)) {
                others++;
                locked = sub->options.exclusive_consumer;
            }
    if (!locked && (!exclusive || others == 0) && core->cluster && core->cluster->queue_consumers) {
        size_t remote = 0;
        bool remote_exclusive = false;
        core->cluster->queue_consumers(core->cluster_opaque, vhost, name, &remote,
                                       &remote_exclusive);
        others += remote;
        locked = remote_exclusive;
    }
    if (!locked && !(exclusive && others > 0))
        return CORE_OK;
    /* RabbitMQ's text (the 0-9-1 adapter adds "ACCESS_REFUSED - ") */
    snprintf(err, err_size, "queue '%s' in vhost '%s' in exclusive use", name, vhost);
    return CORE_ERR_IN_USE;
}

void core_exclusive_changed(struct core *core)
{
    if (core->cluster && core->cluster->exclusive_changed)
        core->cluster->exclusive_changed(core->cluster_opaque);
}
