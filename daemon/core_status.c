/* SPDX-License-Identifier: Apache-2.0 */
/* core_status.c -- this node's load as the status topic reports it (core.h,
 * architecture §9 "Cluster view"): message totals and per-queue consumers
 * and in-flight messages, read from the per-destination stats table. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

void core_each_queue_load(const struct core *core, core_queue_load_fn fn, void *opaque)
{
    for (size_t i = 0; i < STATS_BUCKETS; i++) {
        for (const struct destination_stats *s = core->stats.buckets[i]; s; s = s->next) {
            if (s->kind != DESTINATION_QUEUE)
                continue;
            size_t consumers = core_queue_consumer_count(core, NULL, s->name);
            size_t in_flight = *s->in_flight > 0 ? (size_t)*s->in_flight : 0;
            if ((consumers || in_flight) && !fn(opaque, s->name, consumers, in_flight))
                return;
        }
    }
}
