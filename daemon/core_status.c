/* SPDX-License-Identifier: Apache-2.0 */
/* core_status.c -- this node's load as the status topic reports it (core.h,
 * architecture §9 "Cluster view"): message totals and per-queue consumers
 * (per vhost, with whether one is an exclusive consumer: architecture §12)
 * and in-flight messages, read from the per-destination stats table and the
 * sessions' subscriptions. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core.h"
#include "core_internal.h"
#include "stats.h"

void core_message_totals(const struct core *core, uint64_t totals[3])
{
    totals[0] = totals[1] = totals[2] = 0;
    for (size_t i = 0; i < STATS_BUCKETS; i++) {
        for (const struct destination_stats *s = core->stats.buckets[i]; s; s = s->next) {
            totals[0] += *s->published;
            totals[1] += *s->delivered;
            totals[2] += *s->acked;
        }
    }
}

size_t core_queue_in_flight(const struct core *core, const char *name)
{
    const struct destination_stats *s = stats_find(&core->stats, DESTINATION_QUEUE, name);
    return s && *s->in_flight > 0 ? (size_t)*s->in_flight : 0;
}

/* One vhost's subscribers of a queue name (core_each_queue_load). */
struct core_vhost_load {
    const char *vhost;
    size_t consumers;
    bool exclusive;
};

/* Subscribers of queue `name` by vhost, in `loads` (malloc'd, caller frees;
 * a name is nearly always used in one vhost). How many vhosts, or -1 out of
 * memory. */
static ssize_t core_queue_vhost_loads(const struct core *core, const char *name,
                                      struct core_vhost_load **loads)
{
    size_t count = 0, size = 0;
    *loads = NULL;
    for (const struct core_session *session = core->sessions; session; session = session->next)
        for (const struct core_subscription *sub = session->subscriptions; sub; sub = sub->next) {
            if (sub->destination.kind != DESTINATION_QUEUE || sub->durable_name ||
                strcmp(sub->destination.name, name) != 0)
                continue;
            size_t i = 0;
            while (i < count && strcmp((*loads)[i].vhost, sub->vhost) != 0)
                i++;
            if (i == count) {
                if (count == size) {
                    size = size ? 2 * size : 2;
                    struct core_vhost_load *grown = realloc(*loads, size * sizeof(*grown));
                    if (!grown) {
                        free(*loads);
                        *loads = NULL;
                        return -1;
                    }
                    *loads = grown;
                }
                (*loads)[count++] = (struct core_vhost_load){sub->vhost, 0, false};
            }
            (*loads)[i].consumers++;
            (*loads)[i].exclusive |= sub->options.exclusive_consumer;
        }
    return (ssize_t)count;
}

void core_each_queue_load(const struct core *core, core_queue_load_fn fn, void *opaque)
{
    for (size_t i = 0; i < STATS_BUCKETS; i++) {
        for (const struct destination_stats *s = core->stats.buckets[i]; s; s = s->next) {
            if (s->kind != DESTINATION_QUEUE)
                continue;
            size_t in_flight = *s->in_flight > 0 ? (size_t)*s->in_flight : 0;
            struct core_vhost_load *loads;
            ssize_t count = core_queue_vhost_loads(core, s->name, &loads);
            if (count < 0) { /* out of memory: the name's consumers over every vhost */
                struct core_vhost_load all = {NULL, 0, false};
                for (const struct core_session *session = core->sessions; session;
                     session = session->next)
                    for (const struct core_subscription *sub = session->subscriptions; sub;
                         sub = sub->next)
                        if (sub->destination.kind == DESTINATION_QUEUE && !sub->durable_name &&
                            strcmp(sub->destination.name, s->name) == 0) {
                            all.consumers++;
                            all.exclusive |= sub->options.exclusive_consumer;
                        }
                if ((all.consumers || in_flight) &&
                    !fn(opaque, NULL, s->name, all.consumers, in_flight, all.exclusive))
                    return;
                continue;
            }
            bool more = true;
            for (ssize_t v = 0; more && v < count; v++)
                more = fn(opaque, loads[v].vhost, s->name, loads[v].consumers, in_flight,
                          loads[v].exclusive);
            free(loads);
            if (!more ||
                (count == 0 && in_flight && !fn(opaque, NULL, s->name, 0, in_flight, false)))
                return;
        }
    }
}
