/* SPDX-License-Identifier: Apache-2.0 */
/* stats.c -- per-destination metrics series, found by a hash of (kind,
 * vhost, name) (stats.h). */
#include "stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

void stats_table_init(struct stats_table *table, struct metrics *metrics)
{
    memset(table, 0, sizeof(*table));
    table->metrics = metrics;
}

void stats_table_clear(struct stats_table *table)
{
    for (size_t i = 0; i < STATS_BUCKETS; i++) {
        while (table->buckets[i]) {
            struct destination_stats *next = table->buckets[i]->next;
            free(table->buckets[i]);
            table->buckets[i] = next;
        }
    }
}

/* The vhost as stats_get keys it: "" for the default vhost. */
static const char *stats_vhost_key(const char *vhost)
{
    return !vhost || strcmp(vhost, "/") == 0 ? "" : vhost;
}

int stats_labels(char *buf, size_t size, enum destination_kind kind, const char *vhost,
                 const char *name)
{
    vhost = stats_vhost_key(vhost);
    char kind_label[64], name_label[ADDRESS_NAME_MAX * 2 + 32];
    char vhost_label[ADDRESS_NAME_MAX * 2 + 32] = "";
    if (metrics_label(kind_label, sizeof(kind_label), "kind", destination_kind_name(kind)) < 0 ||
        metrics_label(name_label, sizeof(name_label), "destination", name) < 0 ||
        (*vhost && metrics_label(vhost_label, sizeof(vhost_label), "vhost", vhost) < 0))
        return -1;
    int written =
        snprintf(buf, size, "%s,%s%s%s", kind_label, name_label, *vhost ? "," : "", vhost_label);
    return written < 0 || (size_t)written >= size ? -1 : 0;
}

/* The bucket of (kind, vhost, name) and the name's length. */
static struct destination_stats **stats_bucket(const struct stats_table *table,
                                               enum destination_kind kind, const char *vhost,
                                               const char *name, size_t *name_len)
{
    uint32_t hash = 2166136261u ^ (uint32_t)kind; /* FNV-1a */
    for (const char *c = vhost; *c; c++)
        hash = (hash ^ (unsigned char)*c) * 16777619u;
    hash = (hash ^ 0xffu) * 16777619u; /* between the vhost and the name */
    *name_len = 0;
    for (const char *c = name; *c; c++, (*name_len)++)
        hash = (hash ^ (unsigned char)*c) * 16777619u;
    return (struct destination_stats **)&table->buckets[hash % STATS_BUCKETS];
}

const struct destination_stats *stats_find(const struct stats_table *table,
                                           enum destination_kind kind, const char *vhost,
                                           const char *name)
{
    size_t name_len;
    vhost = stats_vhost_key(vhost);
    for (struct destination_stats *s = *stats_bucket(table, kind, vhost, name, &name_len); s;
         s = s->next)
        if (s->kind == kind && strcmp(s->name, name) == 0 && strcmp(s->vhost, vhost) == 0)
            return s;
    return NULL;
}

struct destination_stats *stats_get(struct stats_table *table, enum destination_kind kind,
                                    const char *vhost, const char *name)
{
    size_t name_len;
    vhost = stats_vhost_key(vhost);
    struct destination_stats **bucket = stats_bucket(table, kind, vhost, name, &name_len);
    for (struct destination_stats *s = *bucket; s; s = s->next)
        if (s->kind == kind && strcmp(s->name, name) == 0 && strcmp(s->vhost, vhost) == 0)
            return s;
    size_t vhost_len = strlen(vhost);
    if (name_len >= sizeof(((struct destination_stats *)0)->name) ||
        vhost_len >= sizeof(((struct destination_stats *)0)->vhost))
        return NULL; /* longer than any valid destination name: no stats */
    struct destination_stats *stats = calloc(1, sizeof(*stats));
    if (!stats)
        return NULL;
    stats->kind = kind;
    memcpy(stats->name, name, name_len + 1);
    memcpy(stats->vhost, vhost, vhost_len + 1);
    char labels[STATS_LABELS_MAX];
    if (stats_labels(labels, sizeof(labels), kind, vhost, name) < 0) {
        free(stats);
        return NULL;
    }
    struct metrics *m = table->metrics;
    stats->published = metrics_counter(m, "kbridge_destination_published_total",
                                       "Messages confirmed by Kafka, per destination.", labels);
    stats->delivered = metrics_counter(m, "kbridge_destination_delivered_total",
                                       "Deliveries to subscribers (first and repeated).", labels);
    stats->acked = metrics_counter(m, "kbridge_destination_acked_total",
                                   "Deliveries acknowledged (accepted).", labels);
    stats->nacked =
        metrics_counter(m, "kbridge_destination_nacked_total",
                        "Deliveries negatively acknowledged (released or rejected).", labels);
    stats->redelivered = metrics_counter(m, "kbridge_destination_redelivered_total",
                                         "Deliveries of a message delivered before.", labels);
    stats->dead_lettered = metrics_counter(m, "kbridge_destination_dead_lettered_total",
                                           "Messages confirmed in the dead-letter topic.", labels);
    stats->in_flight =
        metrics_gauge(m, "kbridge_destination_in_flight",
                      "Messages buffered on this node (available + unacked).", labels);
    stats->consumers =
        metrics_gauge(m, "kbridge_destination_consumers", "Subscribers on this node.", labels);
    stats->paused_partitions =
        metrics_gauge(m, "kbridge_destination_paused_partitions",
                      "Partitions paused because in-flight hit max_in_flight.", labels);
    if (!stats->published || !stats->delivered || !stats->acked || !stats->nacked ||
        !stats->redelivered || !stats->dead_lettered || !stats->in_flight || !stats->consumers ||
        !stats->paused_partitions) {
        free(stats);
        return NULL;
    }
    stats->next = *bucket;
    *bucket = stats;
    return stats;
}
