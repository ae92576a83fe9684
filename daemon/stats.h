/* SPDX-License-Identifier: Apache-2.0 */
/* stats.h -- per-destination counters for /metrics (architecture §9):
 * published, delivered, acked, nacked, redelivered, dead-lettered, in-flight,
 * consumers, paused partitions. A hash table of series by (kind, vhost,
 * name): a queue `orders` in vhost `sales` is not `orders` in `/`,
 * created on first use: it is looked up on every publish, so a node with
 * thousands of destinations does not scan them. Loop thread only. */
#ifndef KBRIDGE_STATS_H
#define KBRIDGE_STATS_H

#include <stdint.h>

#include "address.h"

struct metrics;

#define STATS_BUCKETS 4096                            /* hash buckets of a stats_table */
#define STATS_LABELS_MAX (ADDRESS_NAME_MAX * 4 + 160) /* what stats_labels may write */

struct destination_stats {
    struct destination_stats *next; /* in its bucket */
    enum destination_kind kind;
    char name[ADDRESS_NAME_MAX + 1];
    char vhost[ADDRESS_NAME_MAX + 1]; /* "" for the default vhost `/` */
    /* series owned by the metrics registry */
    uint64_t *published;
    uint64_t *delivered;
    uint64_t *acked;
    uint64_t *nacked;
    uint64_t *redelivered;
    uint64_t *dead_lettered;
    double *in_flight;
    double *consumers;
    double *paused_partitions;
};

struct stats_table {
    struct metrics *metrics;
    struct destination_stats *buckets[STATS_BUCKETS];
};

/* An empty table registering its series in `metrics`. */
void stats_table_init(struct stats_table *table, struct metrics *metrics);
/* Free the entries (the series stay with the metrics registry). */
void stats_table_clear(struct stats_table *table);
/* Stats for a destination in `vhost` (NULL or "/": the default vhost, whose
 * series carry no vhost label; another's carry `vhost="NAME"`), created on
 * first use; owned by the table. NULL on allocation failure or for a name
 * longer than any destination's. */
struct destination_stats *stats_get(struct stats_table *table, enum destination_kind kind,
                                    const char *vhost, const char *name);

/* The labels of a destination's series into buf: `kind="K",destination="NAME"`,
 * plus `,vhost="V"` outside the default vhost (NULL or "/"). 0, or -1 when
 * they do not fit. */
int stats_labels(char *buf, size_t size, enum destination_kind kind, const char *vhost,
                 const char *name);

/* Stats for a destination if it has any (never creates); borrowed. */
const struct destination_stats *stats_find(const struct stats_table *table,
                                           enum destination_kind kind, const char *vhost,
                                           const char *name);

#endif
