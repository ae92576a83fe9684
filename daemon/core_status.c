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

size_t core_queue_in_flight(const struct core *core, const char *vhost, const char *name)
{
    const struct destination_stats *s = stats_find(&core->stats, DESTINATION_QUEUE, vhost, name);
    return s && *s->in_flight > 0 ? (size_t)*s->in_flight : 0;
}

/* Whether `sub` is one of the subscribers core_each_queue_load counts for
 * queue `name` in `vhost` ("/" for the default). */
static bool core_subscribes_queue(const struct core_subscription *sub, const char *vhost,
                                  const char *name)
{
    const char *its_vhost = sub->vhost && *sub->vhost ? sub->vhost : "/";
    return sub->destination.kind == DESTINATION_QUEUE && !sub->durable_name &&
           strcmp(sub->destination.name, name) == 0 && strcmp(its_vhost, vhost) == 0;
}

void core_each_queue_load(const struct core *core, core_queue_load_fn fn, void *opaque)
{
    for (size_t i = 0; i < STATS_BUCKETS; i++) {
        for (const struct destination_stats *s = core->stats.buckets[i]; s; s = s->next) {
            if (s->kind != DESTINATION_QUEUE)
                continue;
            const char *vhost = *s->vhost ? s->vhost : "/";
            size_t in_flight = *s->in_flight > 0 ? (size_t)*s->in_flight : 0;
            size_t consumers = 0;
            bool exclusive = false;
            for (const struct core_session *session = core->sessions; session;
                 session = session->next)
                for (const struct core_subscription *sub = session->subscriptions; sub;
                     sub = sub->next)
                    if (core_subscribes_queue(sub, vhost, s->name)) {
                        consumers++;
                        exclusive |= sub->options.exclusive_consumer;
                    }
            if ((consumers || in_flight) &&
                !fn(opaque, vhost, s->name, consumers, in_flight, exclusive))
                return;
        }
    }
}
