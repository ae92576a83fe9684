/* SPDX-License-Identifier: Apache-2.0 */
/* metrics.h -- the registry of counters and gauges behind /metrics.
 *
 * A metric family has a name, a help text and a type; each family holds
 * series keyed by a label set (already formatted, e.g. `protocol="stomp"`).
 * Registering returns a stable pointer to the series value, which the owner
 * bumps directly on the hot path (no lookup, no lock: the loop thread owns
 * the registry). Rendering writes the Prometheus text exposition format. */
#ifndef KBRIDGE_METRICS_H
#define KBRIDGE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct metrics;

enum metric_type {
    METRIC_COUNTER,
    METRIC_GAUGE,
    METRIC_HISTOGRAM,
};

/* A histogram's state (cumulative buckets are computed when rendering). */
#define METRICS_HISTOGRAM_MAX_BUCKETS 16
struct metrics_histogram {
    size_t bucket_count;
    double bounds[METRICS_HISTOGRAM_MAX_BUCKETS]; /* upper bounds, ascending; +Inf implied */
    uint64_t counts[METRICS_HISTOGRAM_MAX_BUCKETS + 1];
    double sum;
    uint64_t count;
};

/* Computes a gauge at scrape time. */
typedef double (*metrics_gauge_fn)(void *arg);

/* New empty registry; NULL on allocation failure. Caller owns it. */
struct metrics *metrics_new(void);
/* Free the registry and every series; NULL is fine. */
void metrics_free(struct metrics *metrics);

/* Find or create the counter series `name{labels}` (labels may be NULL or "").
 * The returned pointer stays valid until metrics_free or metrics_remove.
 * NULL on allocation failure or when `name` exists with another type. */
uint64_t *metrics_counter(struct metrics *metrics, const char *name, const char *help,
                          const char *labels);
/* Same for a gauge whose value the owner sets. */
double *metrics_gauge(struct metrics *metrics, const char *name, const char *help,
                      const char *labels);
/* A gauge computed by fn(arg) at each scrape; 0 on success, -1 on failure. */
int metrics_gauge_callback(struct metrics *metrics, const char *name, const char *help,
                           const char *labels, metrics_gauge_fn fn, void *arg);
/* Find or create the histogram series `name{labels}` with these bucket upper
 * bounds (ascending, at most METRICS_HISTOGRAM_MAX_BUCKETS; +Inf is added).
 * Rendered as name_bucket{le=...}, name_sum, name_count. NULL on failure. */
struct metrics_histogram *metrics_histogram(struct metrics *metrics, const char *name,
                                            const char *help, const char *labels,
                                            const double *bounds, size_t bucket_count);
/* Count one observation. */
void metrics_histogram_observe(struct metrics_histogram *histogram, double value);

/* Drop the series whose value pointer is `value` (from metrics_counter or
 * metrics_gauge); unknown pointers are ignored. */
void metrics_remove(struct metrics *metrics, const void *value);

/* Append the whole registry in Prometheus text format to `out`. */
int metrics_render(const struct metrics *metrics, struct evbuffer *out);

/* Format one label pair into buf with the value escaped per the exposition
 * format (\\, \", \n). Returns 0, or -1 when buf is too small. */
int metrics_label(char *buf, size_t size, const char *name, const char *value);

#endif
