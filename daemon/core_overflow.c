/* SPDX-License-Identifier: Apache-2.0 */
/* core_overflow.c -- x-overflow reject-publish (architecture §11,
 * docs/routing.md "Queue arguments"): the publishing node's figure of how
 * full each queue with `x-overflow: reject-publish` and `x-max-length` is,
 * and the check every publish path makes before it writes a record.
 *
 * Owns: core->overflow, one struct core_overflow_queue per such queue this
 * node published to (a list: such queues are few), each with its figure:
 * the ready count of the queue's group (kafka_group_lag summed over
 * partitions from core_queue_ready_from, as the admin API's depth) plus the
 * publishes this node let through since that answer came. The first
 * publish starts a lookup on the worker pool; then one every
 * queues.overflow_refresh (a timer per queue) while publishes keep coming,
 * until one has started a whole interval after the last publish; none for
 * queues nobody publishes to. A failed lookup keeps the last figure (logged
 * at debug, counted). A queue without a figure yet is not full. A publish that would reach a full
 * queue is refused as a whole with CORE_ERR_FULL, before anything is written.
 *
 * An entry goes (with its series) when a lookup answers, or another
 * queue's entry is made, and the view no longer has the queue with
 * reject-publish. A lookup running when the core is
 * freed keeps its entry (orphaned) and frees it when it answers. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "clock.h"
#include "config.h"
#include "core.h"
#include "core_internal.h"
#include "definitions.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "queue_bindings.h"

/* Queues one publish may reach that the check looks at, at most; beyond
 * them (a fanout to hundreds of reject-publish queues) the rest are not
 * checked and a warning says so. */
#define CORE_OVERFLOW_ROUTE_MAX 64

struct core_overflow_queue {
    struct core_overflow_queue *next;
    struct core_overflow *owner; /* NULL: the core is gone, the lookup frees it */
    char *vhost;
    char *name;
    struct core_overflow_figure figure;
    struct event *timer; /* the next lookup, when one is due later (made on first use) */
    uint64_t *rejected;  /* kbridge_overflow_rejected_total{kind="queue",destination} */
    double *ready;       /* kbridge_overflow_queue_ready{kind="queue",destination} */
};

struct core_overflow {
    struct core *core;
    struct core_overflow_queue *queues;
    uint64_t *lookup_failures; /* kbridge_overflow_lookup_failures_total */
};

/* ---- the figure (pure) ------------------------------------------------------------- */

void core_overflow_figure_init(struct core_overflow_figure *figure)
{
    memset(figure, 0, sizeof(*figure));
    figure->ready = -1;
}

void core_overflow_figure_published(struct core_overflow_figure *figure, uint64_t now_ms)
{
    figure->last_publish_ms = now_ms;
}

uint64_t core_overflow_figure_next_ask(const struct core_overflow_figure *figure,
                                       uint64_t refresh_ms)
{
    if (figure->asking)
        return CORE_OVERFLOW_NEVER;
    if (!figure->asked)
        return 0;
    if (figure->last_publish_ms + refresh_ms <= figure->asked_ms)
        return CORE_OVERFLOW_NEVER; /* nobody published for an interval before it */
    return figure->asked_ms + refresh_ms;
}

void core_overflow_figure_asking(struct core_overflow_figure *figure, uint64_t now_ms)
{
    figure->asking = true;
    figure->asked = true;
    figure->asked_ms = now_ms;
}

void core_overflow_figure_answered(struct core_overflow_figure *figure, bool ok, int64_t ready)
{
    figure->asking = false;
    if (!ok)
        return; /* the last figure stands, with every publish since it counted */
    figure->ready = ready;
    figure->since_figure = 0;
    figure->since_bytes = 0;
}

int64_t core_overflow_figure_estimate(const struct core_overflow_figure *figure)
{
    if (figure->ready < 0)
        return -1;
    return figure->ready + (int64_t)figure->since_figure;
}

bool core_overflow_figure_full(const struct core_overflow_figure *figure, int64_t max_length)
{
    int64_t estimate = core_overflow_figure_estimate(figure);
    return estimate >= 0 && max_length >= 0 && estimate >= max_length;
}

int64_t core_overflow_figure_estimate_bytes(const struct core_overflow_figure *figure,
                                            size_t body_len)
{
    if (figure->ready < 0)
        return -1;
    double mean = figure->body_mean > 0 ? figure->body_mean : (double)body_len;
    return (int64_t)((double)figure->ready * mean + 0.5) + (int64_t)figure->since_bytes;
}

bool core_overflow_figure_full_bytes(const struct core_overflow_figure *figure, int64_t max_bytes,
                                     size_t body_len)
{
    int64_t estimate = core_overflow_figure_estimate_bytes(figure, body_len);
    return estimate >= 0 && max_bytes >= 0 && estimate >= max_bytes;
}

void core_overflow_figure_accepted(struct core_overflow_figure *figure, size_t body_len)
{
    figure->since_figure++;
    figure->since_bytes += body_len;
    double body = (double)body_len;
    figure->body_mean =
        figure->body_mean > 0 ? figure->body_mean + (body - figure->body_mean) / 32 : body;
}

/* ---- the cache --------------------------------------------------------------------- */

int core_overflow_init(struct core *core)
{
    struct core_overflow *overflow = calloc(1, sizeof(*overflow));
    if (!overflow)
        return -1;
    overflow->core = core;
    overflow->lookup_failures = metrics_counter(
        core->metrics, "kbridge_overflow_lookup_failures_total",
        "Lookups of a reject-publish queue's depth (x-overflow) that failed; the last figure "
        "was kept.",
        NULL);
    if (!overflow->lookup_failures) {
        free(overflow);
        return -1;
    }
    core->overflow = overflow;
    return 0;
}

static void overflow_queue_free(struct core_overflow_queue *queue)
{
    if (queue->timer)
        event_free(queue->timer);
    free(queue->vhost);
    free(queue->name);
    free(queue);
}

void core_overflow_free(struct core *core)
{
    struct core_overflow *overflow = core->overflow;
    if (!overflow)
        return;
    while (overflow->queues) {
        struct core_overflow_queue *queue = overflow->queues;
        overflow->queues = queue->next;
        if (queue->figure.asking) {
            queue->owner = NULL; /* its lookup's answer frees it */
            if (queue->timer) {
                event_free(queue->timer); /* the event base goes before the answer comes */
                queue->timer = NULL;
            }
        } else
            overflow_queue_free(queue);
    }
    free(overflow);
    core->overflow = NULL;
}

/* The queue's reject-publish limit: its x-max-length when it has
 * `x-overflow: reject-publish`, else -1. */
/* A reject-publish queue's limits (x-max-length, x-max-length-bytes; -1:
 * none); false when the queue rejects nothing. */
static bool overflow_limit(const struct queue_definition *queue, int64_t limits[2])
{
    const json_t *arguments = queue->spec.arguments;
    if (!arguments)
        return false;
    const json_t *mode = json_object_get(arguments, "x-overflow");
    if (!json_is_string(mode) || strcmp(json_string_value(mode), "reject-publish") != 0)
        return false;
    static const char *const names[2] = {"x-max-length", "x-max-length-bytes"};
    for (int i = 0; i < 2; i++) {
        const json_t *max = json_object_get(arguments, names[i]);
        limits[i] = json_is_integer(max) && json_integer_value(max) >= 0
                        ? (int64_t)json_integer_value(max)
                        : -1;
    }
    return limits[0] >= 0 || limits[1] >= 0;
}

static struct core_overflow_queue *overflow_find(struct core_overflow *overflow, const char *vhost,
                                                 const char *name)
{
    for (struct core_overflow_queue *q = overflow->queues; q; q = q->next)
        if (strcmp(q->name, name) == 0 && strcmp(q->vhost, vhost) == 0)
            return q;
    return NULL;
}

/* Drop a queue's entry and its series (no lookup of it is running). */
static void overflow_forget(struct core_overflow *overflow, struct core_overflow_queue *queue)
{
    struct core_overflow_queue **link = &overflow->queues;
    while (*link && *link != queue)
        link = &(*link)->next;
    if (*link)
        *link = queue->next;
    metrics_remove(overflow->core->metrics, queue->rejected);
    metrics_remove(overflow->core->metrics, queue->ready);
    overflow_queue_free(queue);
}

/* Forget the entries of queues the view no longer has with reject-publish
 * (deleted while nobody published to them), but for those whose lookup
 * runs: it forgets them when it answers. */
static void overflow_sweep(struct core_overflow *overflow)
{
    const struct definitions *view = core_definitions(overflow->core);
    struct core_overflow_queue *queue = overflow->queues;
    while (queue) {
        struct core_overflow_queue *next = queue->next;
        const struct queue_definition *definition =
            definitions_queue(view, queue->vhost, queue->name);
        int64_t limits[2];
        if (!queue->figure.asking && (!definition || !overflow_limit(definition, limits)))
            overflow_forget(overflow, queue);
        queue = next;
    }
}

static struct core_overflow_queue *overflow_add(struct core_overflow *overflow, const char *vhost,
                                                const char *name)
{
    overflow_sweep(overflow); /* new entries are rare: the list stays the live queues' */
    struct core_overflow_queue *queue = calloc(1, sizeof(*queue));
    if (!queue)
        return NULL;
    queue->owner = overflow;
    queue->vhost = strdup(vhost);
    queue->name = strdup(name);
    core_overflow_figure_init(&queue->figure);
    char labels[STATS_LABELS_MAX]; /* as the kbridge_destination_* series */
    if (!queue->vhost || !queue->name ||
        stats_labels(labels, sizeof(labels), DESTINATION_QUEUE, vhost, name) < 0) {
        overflow_queue_free(queue);
        return NULL;
    }
    struct metrics *metrics = overflow->core->metrics;
    queue->rejected = metrics_counter(
        metrics, "kbridge_overflow_rejected_total",
        "Publishes refused because a queue they would reach was at its x-max-length with "
        "x-overflow reject-publish.",
        labels);
    queue->ready = metrics_gauge(metrics, "kbridge_overflow_queue_ready",
                                 "This node's figure of a reject-publish queue's ready messages "
                                 "(its last lookup plus the publishes let through since); -1 "
                                 "before the first lookup answered.",
                                 labels);
    if (!queue->rejected || !queue->ready) {
        overflow_queue_free(queue);
        return NULL;
    }
    *queue->ready = -1;
    queue->next = overflow->queues;
    overflow->queues = queue;
    return queue;
}

static void overflow_show(struct core_overflow_queue *queue)
{
    *queue->ready = (double)core_overflow_figure_estimate(&queue->figure);
}

static void overflow_schedule(struct core_overflow *overflow, struct core_overflow_queue *queue);

static void overflow_on_lag(void *opaque, int err, const char *reason,
                            const struct kafka_partition_lag *parts, size_t count)
{
    struct core_overflow_queue *queue = opaque;
    struct core_overflow *overflow = queue->owner;
    if (!overflow) {
        overflow_queue_free(queue);
        return;
    }
    const struct queue_definition *definition =
        definitions_queue(core_definitions(overflow->core), queue->vhost, queue->name);
    int64_t limits[2];
    if (!definition || !overflow_limit(definition, limits)) {
        overflow_forget(overflow, queue); /* deleted, or redeclared without reject-publish */
        return;
    }
    if (err) {
        log_debug("core", "queue '%s': cannot look up its depth for x-overflow: %s", queue->name,
                  reason);
        (*overflow->lookup_failures)++;
        core_overflow_figure_answered(&queue->figure, false, 0);
        overflow_schedule(overflow, queue);
        return;
    }
    uint64_t ready = core_queue_ready_count(core_definitions(overflow->core), queue->vhost,
                                            queue->name, parts, count);
    core_overflow_figure_answered(&queue->figure, true, (int64_t)ready);
    overflow_show(queue);
    overflow_schedule(overflow, queue);
}

/* Start a lookup of the queue's depth. */
static void overflow_ask(struct core_overflow *overflow, struct core_overflow_queue *queue,
                         uint64_t now_ms)
{
    /* asked before the lookup starts: it may answer at once */
    core_overflow_figure_asking(&queue->figure, now_ms);
    int rc = core_queue_lag(overflow->core, queue->vhost, queue->name, overflow_on_lag, queue);
    if (rc == CORE_OK)
        return;
    log_debug("core", "queue '%s': cannot queue a depth lookup for x-overflow (%s)", queue->name,
              rc == CORE_ERR_INTERNAL ? "out of memory" : "the worker pool refused it");
    (*overflow->lookup_failures)++;
    core_overflow_figure_answered(&queue->figure, false, 0);
}

static void overflow_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct core_overflow_queue *queue = arg;
    overflow_schedule(queue->owner, queue);
}

/* Start the next lookup now or arm the timer for it, as the figure says. */
static void overflow_schedule(struct core_overflow *overflow, struct core_overflow_queue *queue)
{
    uint64_t when = core_overflow_figure_next_ask(
        &queue->figure, core_config(overflow->core)->queues.overflow_refresh_ms);
    if (when == CORE_OVERFLOW_NEVER)
        return;
    uint64_t now_ms = clock_monotonic_ms();
    if (when <= now_ms) {
        if (queue->timer)
            evtimer_del(queue->timer);
        overflow_ask(overflow, queue, now_ms);
        return;
    }
    if (!queue->timer)
        queue->timer = evtimer_new(overflow->core->base, overflow_on_timer, queue);
    if (!queue->timer || evtimer_pending(queue->timer, NULL))
        return; /* out of memory: the next publish asks; or armed already */
    uint64_t wait_ms = when - now_ms;
    struct timeval delay = {(time_t)(wait_ms / 1000), (suseconds_t)(wait_ms % 1000) * 1000};
    evtimer_add(queue->timer, &delay);
}

/* What one publish reaches: the reject-publish queues among them. */
struct overflow_route {
    struct core_overflow *overflow;
    struct core_overflow_queue *queues[CORE_OVERFLOW_ROUTE_MAX];
    int64_t limits[CORE_OVERFLOW_ROUTE_MAX][2]; /* x-max-length, x-max-length-bytes */
    size_t count;
    bool truncated;
    bool failed; /* out of memory */
};

static bool overflow_route_each(const struct queue_definition *definition, void *opaque)
{
    struct overflow_route *route = opaque;
    int64_t limit[2];
    if (!overflow_limit(definition, limit))
        return true;
    for (size_t i = 0; i < route->count; i++)
        if (strcmp(route->queues[i]->name, definition->spec.name) == 0)
            return true; /* reached twice (the default exchange and a binding) */
    if (route->count == CORE_OVERFLOW_ROUTE_MAX) {
        route->truncated = true;
        return false;
    }
    struct core_overflow_queue *queue =
        overflow_find(route->overflow, definition->spec.vhost, definition->spec.name);
    if (!queue)
        queue = overflow_add(route->overflow, definition->spec.vhost, definition->spec.name);
    if (!queue) {
        route->failed = true;
        return false;
    }
    route->limits[route->count][0] = limit[0];
    route->limits[route->count][1] = limit[1];
    route->queues[route->count++] = queue;
    return true;
}

int core_overflow_check(struct core *core, const char *vhost,
                        const struct core_overflow_target *targets, size_t target_count,
                        const struct binding_header *headers, size_t header_count, size_t body_len,
                        char *err, size_t err_size)
{
    struct core_overflow *overflow = core->overflow;
    if (!overflow)
        return CORE_OK;
    const struct definitions *view = core_definitions(core);
    struct overflow_route route = {.overflow = overflow};
    for (size_t t = 0; t < target_count && !route.failed && !route.truncated; t++) {
        if (definitions_route(view, vhost, targets[t].exchange, targets[t].routing_key, headers,
                              header_count, overflow_route_each, &route) < 0)
            route.failed = true;
    }
    if (route.failed) {
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    if (route.truncated)
        log_warn("core", "a publish reaches more than %d reject-publish queues: only %d checked",
                 CORE_OVERFLOW_ROUTE_MAX, CORE_OVERFLOW_ROUTE_MAX);
    if (route.count == 0)
        return CORE_OK;
    uint64_t now_ms = clock_monotonic_ms();
    for (size_t i = 0; i < route.count; i++) {
        core_overflow_figure_published(&route.queues[i]->figure, now_ms);
        overflow_schedule(overflow, route.queues[i]);
    }
    for (size_t i = 0; i < route.count; i++) {
        struct core_overflow_queue *queue = route.queues[i];
        if (core_overflow_figure_full(&queue->figure, route.limits[i][0])) {
            (*queue->rejected)++;
            snprintf(err, err_size,
                     "queue '%s' in vhost '%s' is full (x-max-length %lld, x-overflow "
                     "reject-publish; %lld messages ready as this node last saw it)",
                     queue->name, queue->vhost, (long long)route.limits[i][0],
                     (long long)core_overflow_figure_estimate(&queue->figure));
            return CORE_ERR_FULL;
        }
        if (core_overflow_figure_full_bytes(&queue->figure, route.limits[i][1], body_len)) {
            (*queue->rejected)++;
            snprintf(err, err_size,
                     "queue '%s' in vhost '%s' is full (x-max-length-bytes %lld, x-overflow "
                     "reject-publish; about %lld bytes ready as this node last saw it)",
                     queue->name, queue->vhost, (long long)route.limits[i][1],
                     (long long)core_overflow_figure_estimate_bytes(&queue->figure, body_len));
            return CORE_ERR_FULL;
        }
    }
    for (size_t i = 0; i < route.count; i++) {
        core_overflow_figure_accepted(&route.queues[i]->figure, body_len);
        overflow_show(route.queues[i]);
    }
    return CORE_OK;
}
