/* SPDX-License-Identifier: Apache-2.0 */
/* status.c -- the status topic's writer and reader (status.h, architecture
 * §9 "Cluster view").
 *
 * Start: look the topic up (kafka_lookup_end_offsets_or_create_compacted:
 * one partition where the broker lets kbridged create it) to learn every
 * partition's end offset, then assign every partition from the beginning
 * to a group-less consumer and follow it for the node's life. A record
 * below the end seen at start is backlog: it counts as heard at its own
 * updated_at (status_view_apply), so a node killed before this one started
 * is stale at once. Lookup failures retry every second.
 *
 * Writes: a timer every status.interval builds this node's record
 * (status_local) and produces it keyed by the node id (the partitioner puts
 * a key on one partition, so the latest record of a node is its last); one
 * write at a time: a tick while the last is unconfirmed is skipped (Kafka
 * down must not pile records up). The same tick drops nodes not heard of
 * for 2 x expiry. status_drain writes the tombstone.
 *
 * Exclusive consumers (architecture §12): the status is the core's cluster
 * view (core_set_cluster): status_queue_consumers answers from the live
 * nodes' records, and when an exclusive consumer of this node comes or goes
 * (status_exclusive_changed) the record is written early: at once, or
 * status.min_write_gap after the last write, or when the write in flight is
 * confirmed (still one at a time). */
#include "status.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "core.h"
#include "kafka.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "status_record.h"
#include "version.h"

#define STATUS_RETRY_MS 1000

struct status {
    struct event_base *base;
    struct server *server;
    char *topic;
    struct kafka_lookup *lookup;
    struct kafka_consumer *consumer;
    struct event *retry_timer;
    struct event *write_timer;
    struct event *soon_timer; /* an early write (status_exclusive_changed) */
    bool write_soon;          /* one is wanted: the state changed since the last write */
    uint64_t last_write_ms;   /* monotonic, when the last record was produced */
    struct status_view *view;
    int64_t *end_at_start; /* per partition */
    int32_t partitions;
    int64_t started_at_ms;
    uint64_t totals[3]; /* at the last tick: publish, deliver, ack */
    double rates[3];    /* per second over the last tick */
    int64_t totals_ms;  /* when totals was taken */
    bool writing;       /* a record is on its way */
    bool draining;
    char last_error[256];
    uint64_t *records_written;
    uint64_t *records_read;
    uint64_t *records_bad;
    uint64_t *write_failures;
};

int64_t status_now_ms(void) { return (int64_t)clock_wall_ms(); }

const struct status_view *status_view_of(const struct status *status) { return status->view; }

const char *status_topic(const struct status *status) { return status->topic; }

bool status_reading(const struct status *status) { return status->consumer != NULL; }

uint64_t status_expiry_ms(const struct status *status)
{
    const struct config *config = server_config(status->server);
    return config->status.expiry_ms ? config->status.expiry_ms : 3 * config->status.interval_ms;
}

/* ---- this node's record ----------------------------------------------------- */

json_t *status_connection_json(const char *node, const struct core_session_info *info)
{
    char name[300], host[80];
    snprintf(name, sizeof(name), "%s-%llu", node, (unsigned long long)info->id);
    const char *colon = strrchr(info->peer, ':');
    const char *start = info->peer[0] == '[' ? info->peer + 1 : info->peer;
    int host_len = colon && colon > start ? (int)(colon - start) : (int)strlen(start);
    if (host_len > 0 && start[host_len - 1] == ']')
        host_len--;
    snprintf(host, sizeof(host), "%.*s", host_len, start);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:I,s:s,s:i,s:s*,s:{s:i,s:i}}", "name", name,
                     "node", node, "user", info->user, "protocol", info->protocol, "vhost",
                     info->vhost ? info->vhost : "/", "peer_host", host, "peer_port",
                     colon ? atoi(colon + 1) : 0, "connected_at", (json_int_t)info->connected_ms,
                     "state", "running", "channels", 1, "client_id", info->client_id, "kbridge",
                     "subscriptions", (json_int_t)info->subscriptions, "unconfirmed",
                     (json_int_t)info->unconfirmed);
}

static json_t *status_listener_json(const char *protocol, const char *address)
{
    if (!address)
        address = "";
    const char *colon = strrchr(address, ':');
    char host[80];
    snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - address) : 0, address);
    return json_pack("{s:s,s:s,s:i}", "protocol", protocol, "ip_address", host, "port",
                     colon ? atoi(colon + 1) : 0);
}

struct status_build {
    json_t *record;
    const char *node;
    size_t max_listed;
    bool failed;
};

static bool status_add_session(const struct core_session_info *info, void *opaque)
{
    struct status_build *build = opaque;
    if (strcmp(info->protocol, "http") == 0)
        return true; /* the admin API's own short-lived sessions */
    if (status_record_add_connection(build->record, status_connection_json(build->node, info),
                                     build->max_listed) < 0)
        build->failed = true;
    return !build->failed;
}

static bool status_add_queue(void *opaque, const char *vhost, const char *name, size_t consumers,
                             size_t in_flight, bool exclusive)
{
    struct status_build *build = opaque;
    if (status_record_add_queue(build->record, vhost, name, consumers, in_flight, exclusive) < 0)
        build->failed = true;
    return !build->failed;
}

/* This node's record; `max_listed` bounds its connections list. */
static json_t *status_build(struct status *status, size_t max_listed)
{
    struct server *server = status->server;
    const struct config *config = server_config(server);
    struct core *core = server_core(server);
    struct status_build build = {
        .record = status_record_new(config->node_id, KBRIDGE_VERSION, status->started_at_ms,
                                    status_now_ms(), config->status.interval_ms),
        .node = config->node_id,
        .max_listed = max_listed,
    };
    if (!build.record)
        return NULL;
    json_t *listeners = json_object_get(build.record, "listeners");
    for (size_t i = 0; i < server_listener_count(server); i++) {
        const struct listener *listener = server_listener(server, i);
        if (json_array_append_new(listeners, status_listener_json(listener_name(listener),
                                                                  listener_address(listener))) < 0)
            build.failed = true;
    }
    if (server_http_address(server) &&
        json_array_append_new(listeners,
                              status_listener_json("http", server_http_address(server))) < 0)
        build.failed = true;
    uint64_t totals[3] = {0, 0, 0}; /* live; the rates are the last tick's */
    if (core) {
        core_each_session(core, status_add_session, &build);
        core_each_queue_load(core, status_add_queue, &build);
        core_message_totals(core, totals);
    }
    if (build.failed || status_record_set_messages(build.record, totals, status->rates) < 0) {
        json_decref(build.record);
        return NULL;
    }
    return build.record;
}

json_t *status_local(struct status *status) { return status_build(status, SIZE_MAX); }

/* ---- writing ------------------------------------------------------------------- */

static void status_schedule_soon(struct status *status);

static void status_on_delivery(void *opaque, int err, int32_t partition, int64_t offset)
{
    (void)partition;
    (void)offset;
    struct status *status = opaque;
    status->writing = false;
    if (status->write_soon && !status->draining)
        status_schedule_soon(status); /* a change came while this one was on its way */
    if (!err) {
        (*status->records_written)++;
        status->last_error[0] = '\0';
        return;
    }
    (*status->write_failures)++;
    if (strcmp(status->last_error, kafka_error_name(err)) != 0) { /* once per reason */
        snprintf(status->last_error, sizeof(status->last_error), "%s", kafka_error_name(err));
        log_warn("status", "writing this node's record to %s: %s", status->topic,
                 status->last_error);
    }
}

static void status_write(struct status *status, bool tombstone)
{
    const struct config *config = server_config(status->server);
    char *value = NULL;
    if (!tombstone) {
        status->write_soon = false; /* this record says what changed */
        status->last_write_ms = clock_monotonic_ms();
        json_t *record = status_build(status, config->status.max_connections_listed);
        value = record ? status_record_encode(record) : NULL;
        json_decref(record);
        if (!value) {
            log_warn("status", "out of memory building this node's record");
            return;
        }
    }
    int rc = kafka_produce(server_kafka(status->server), status->topic, -1, 0, config->node_id,
                           strlen(config->node_id), value, value ? strlen(value) : 0, NULL, 0,
                           status_on_delivery, status);
    free(value);
    if (rc == KAFKA_OK) {
        status->writing = true;
        return;
    }
    (*status->write_failures)++;
    if (!tombstone)
        status->write_soon = true; /* a change it carried is still untold: the next tick tells */
    log_warn("status", "cannot write this node's %s to %s: %s", tombstone ? "tombstone" : "record",
             status->topic, kafka_error_name(rc));
}

/* The message totals and their rates since the last tick. */
static void status_take_totals(struct status *status)
{
    struct core *core = server_core(status->server);
    uint64_t now[3] = {0, 0, 0};
    if (core)
        core_message_totals(core, now);
    int64_t now_ms = (int64_t)clock_monotonic_ms();
    for (size_t i = 0; i < 3; i++)
        status->rates[i] = status_rate(status->totals[i], now[i], now_ms - status->totals_ms);
    memcpy(status->totals, now, sizeof(now));
    status->totals_ms = now_ms;
}

static void status_arm(struct status *status)
{
    uint64_t ms = server_config(status->server)->status.interval_ms; /* a reload may change it */
    struct timeval delay = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(status->write_timer, &delay);
}

static void status_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct status *status = arg;
    if (status->draining)
        return;
    status_take_totals(status);
    size_t gone = status_view_expire(status->view, status_now_ms(), status_expiry_ms(status));
    if (gone)
        log_info("status", "%zu node(s) not heard of for twice status.expiry dropped from the view",
                 gone);
    if (!status->writing)
        status_write(status, false);
    status_arm(status);
}

/* ---- early writes: an exclusive consumer came or went ----------------------------- */

static void status_on_soon(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct status *status = arg;
    if (status->draining || !status->write_soon || status->writing)
        return; /* nothing new, or the delivery of the write in flight reschedules */
    status_write(status, false);
}

/* Write this node's record at once, or status.min_write_gap after the
 * last, unless a write is on its way (its delivery calls this again). */
static void status_schedule_soon(struct status *status)
{
    if (status->writing || evtimer_pending(status->soon_timer, NULL))
        return;
    uint64_t gap = server_config(status->server)->status.min_write_gap_ms;
    uint64_t since = clock_monotonic_ms() - status->last_write_ms;
    uint64_t ms = since >= gap ? 0 : gap - since;
    struct timeval delay = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(status->soon_timer, &delay);
}

static void status_exclusive_changed(void *opaque)
{
    struct status *status = opaque;
    if (status->draining)
        return; /* the tombstone follows */
    status->write_soon = true;
    status_schedule_soon(status);
}

static void status_queue_consumers(void *opaque, const char *vhost, const char *name,
                                   size_t *consumers, bool *exclusive)
{
    struct status *status = opaque;
    status_view_queue(status->view, status_now_ms(), status_expiry_ms(status), vhost, name,
                      consumers, exclusive);
}

static const struct core_cluster_hooks status_cluster_hooks = {
    .queue_consumers = status_queue_consumers,
    .exclusive_changed = status_exclusive_changed,
};

void status_drain(struct status *status)
{
    if (!status || status->draining)
        return;
    status->draining = true;
    event_del(status->write_timer);
    event_del(status->soon_timer);
    status_write(status, true);
}

/* ---- reading ------------------------------------------------------------------- */

static void status_on_record(void *opaque, struct kafka_record *record)
{
    struct status *status = opaque;
    const char *node = server_config(status->server)->node_id;
    bool backlog = record->partition >= 0 && record->partition < status->partitions &&
                   record->offset < status->end_at_start[record->partition];
    if (record->key && record->key_len == strlen(node) &&
        memcmp(record->key, node, record->key_len) == 0) {
        kafka_record_free(record); /* this node's own: status_local is fresher */
        return;
    }
    char err[300];
    int rc = status_view_apply(status->view, record->key, record->key_len, record->value,
                               record->value_len, status_now_ms(), backlog, err, sizeof(err));
    if (rc < 0) {
        (*status->records_bad)++;
        log_warn("status", "%s partition %d offset %lld: skipped: %s", status->topic,
                 (int)record->partition, (long long)record->offset, err);
    } else {
        (*status->records_read)++;
        if (rc == 1 && !backlog)
            log_info("status", "node %.*s stopped (its tombstone in %s)",
                     (int)(record->key_len > 255 ? 255 : record->key_len),
                     (const char *)record->key, status->topic);
    }
    kafka_record_free(record);
}

static void status_on_error(void *opaque, int err, const char *reason)
{
    (void)err;
    struct status *status = opaque;
    log_warn("status", "reading %s: %s", status->topic, reason);
}

static void status_start_lookup(struct status *status);

static void status_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    status_start_lookup(arg);
}

static void status_retry_later(struct status *status)
{
    struct timeval delay = {STATUS_RETRY_MS / 1000, (STATUS_RETRY_MS % 1000) * 1000};
    event_add(status->retry_timer, &delay);
}

static void status_on_lookup(void *opaque, int err, const struct kafka_topic_info *topics,
                             size_t count)
{
    struct status *status = opaque;
    status->lookup = NULL;
    if (err || count != 1 || topics[0].partition_count < 1) {
        char reason[256];
        snprintf(reason, sizeof(reason), "%s",
                 err ? kafka_error_name(err) : "no such topic or no partitions");
        if (strcmp(reason, status->last_error) != 0) {
            snprintf(status->last_error, sizeof(status->last_error), "%s", reason);
            log_warn("status",
                     "cannot look up %s: %s; retrying every second (the admin API "
                     "shows this node only meanwhile)",
                     status->topic, reason);
        }
        status_retry_later(status);
        return;
    }
    int32_t n = topics[0].partition_count;
    int64_t *ends = calloc((size_t)n, sizeof(*ends));
    int64_t *from = calloc((size_t)n, sizeof(*from));
    static const struct kafka_consumer_handlers handlers = {
        .record = status_on_record,
        .error = status_on_error,
    };
    char why[256] = "out of memory";
    if (ends && from)
        status->consumer = kafka_consumer_new(server_kafka(status->server), NULL, "earliest",
                                              &handlers, status, why, sizeof(why));
    int rc = -1;
    if (status->consumer) {
        for (int32_t p = 0; p < n; p++)
            from[p] = kafka_offset_beginning();
        rc = kafka_consumer_assign_at(status->consumer, status->topic, from, n);
    }
    free(from);
    if (rc != 0) {
        log_warn("status", "cannot read %s: %s; retrying", status->topic,
                 status->consumer ? kafka_error_name(rc) : why);
        if (status->consumer)
            kafka_consumer_close(status->consumer);
        status->consumer = NULL;
        free(ends);
        status_retry_later(status);
        return;
    }
    status->partitions = n;
    status->end_at_start = ends;
    for (int32_t p = 0; p < n; p++)
        ends[p] = topics[0].end_offsets[p];
    status->last_error[0] = '\0';
    log_info("status", "reading %s from the beginning (%d partition(s))", status->topic, (int)n);
}

static void status_start_lookup(struct status *status)
{
    status->lookup = kafka_lookup_end_offsets_or_create_compacted(
        server_kafka(status->server), status->topic, 1, status_on_lookup, status);
    if (!status->lookup)
        status_retry_later(status);
}

struct status *status_new(struct event_base *base, struct server *server, char *err,
                          size_t err_size)
{
    struct status *status = calloc(1, sizeof(*status));
    if (!status) {
        snprintf(err, err_size, "status: out of memory");
        return NULL;
    }
    struct metrics *metrics = server_metrics(server);
    status->base = base;
    status->server = server;
    status->started_at_ms = status_now_ms();
    status->totals_ms = (int64_t)clock_monotonic_ms();
    status->topic = strdup(server_config(server)->status.topic);
    status->view = status_view_new();
    status->retry_timer = event_new(base, -1, 0, status_on_retry, status);
    status->write_timer = event_new(base, -1, 0, status_on_tick, status);
    status->soon_timer = event_new(base, -1, 0, status_on_soon, status);
    status->records_written =
        metrics_counter(metrics, "kbridge_status_records_written_total",
                        "This node's records Kafka confirmed in the status topic.", NULL);
    status->records_read = metrics_counter(metrics, "kbridge_status_records_read_total",
                                           "Other nodes' status records read.", NULL);
    status->records_bad =
        metrics_counter(metrics, "kbridge_status_bad_records_total",
                        "Status topic records this node could not read (logged, skipped).", NULL);
    status->write_failures =
        metrics_counter(metrics, "kbridge_status_write_failures_total",
                        "This node's status records Kafka did not take or confirm.", NULL);
    if (!status->topic || !status->view || !status->retry_timer || !status->write_timer ||
        !status->soon_timer || !status->records_written || !status->records_read ||
        !status->records_bad || !status->write_failures) {
        snprintf(err, err_size, "status: out of memory");
        status_free(status);
        return NULL;
    }
    status_start_lookup(status);
    if (server_core(server)) /* exclusive consumers across nodes (architecture §12) */
        core_set_cluster(server_core(server), &status_cluster_hooks, status);
    /* the first record soon (the node is seen at once), then every interval */
    struct timeval soon = {0, 100 * 1000};
    event_add(status->write_timer, &soon);
    return status;
}

void status_free(struct status *status)
{
    if (!status)
        return;
    struct core *core = server_core(status->server);
    if (core)
        core_set_cluster(core, NULL, NULL);
    kafka_lookup_cancel(status->lookup);
    if (status->consumer)
        kafka_consumer_close(status->consumer);
    if (status->retry_timer)
        event_free(status->retry_timer);
    if (status->write_timer)
        event_free(status->write_timer);
    if (status->soon_timer)
        event_free(status->soon_timer);
    status_view_free(status->view);
    free(status->end_at_start);
    free(status->topic);
    free(status);
}
