/* kafka.c -- owns every librdkafka handle of the node: the idempotent
 * producer, the consumers, the embedded mock cluster and the readiness probe.
 *
 * DESIGN
 * ------
 * Wake-ups: each handle's final queue (the producer's main queue, a
 * consumer's consumer queue) is tied to an O_NONBLOCK pipe with
 * rd_kafka_queue_io_event_enable(). librdkafka writes one byte when the queue
 * goes from empty to non-empty, so on each wake the loop drains the queue
 * until it is empty (rd_kafka_poll / rd_kafka_consumer_poll with timeout 0);
 * a partial drain would stall. Callbacks (delivery reports, rebalances,
 * errors) therefore run on the loop thread. librdkafka's log callback runs on
 * its own threads and only calls the thread-safe log_write.
 *
 * Readiness: rd_kafka_metadata() blocks, so a probe thread calls it and
 * reports changes to the loop over a pipe. The probe asks every second while
 * not ready and every five seconds while ready.
 *
 * Consumer close: rd_kafka_consumer_close_queue() runs the leave/commit in
 * the background; its rebalance events are served from the loop and the
 * final rd_kafka_destroy() runs on a detached thread, so nothing blocks. */
#include "kafka.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "kafka_mock.h"
#include "log.h"
#include "metrics.h"

#define KAFKA_PROBE_TIMEOUT_MS 2000
#define KAFKA_PROBE_INTERVAL_NOT_READY_MS 1000
#define KAFKA_PROBE_INTERVAL_READY_MS 5000
/* A paused partition is left out of the fetch request in flight; once
 * resumed it waits for that request to come back, which the broker may hold
 * fetch.wait.max.ms when it has nothing for the others (librdkafka's default,
 * 500 ms, caps a queue that pauses and resumes at max_in_flight messages a
 * second). New data ends a long poll at once, so this costs only some empty
 * fetches while idle. Configurable under kafka.consumer. */
#define KAFKA_FETCH_WAIT_MAX_MS "100"

/* A pipe whose read end wakes the loop. */
struct kafka_wakeup {
    int fds[2];
    struct event *event;
};

struct kafka_probe {
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;                  /* under lock */
    bool ready;                 /* under lock: last answer */
    char reason[512];           /* under lock */
    int broker_count;           /* under lock */
    struct kafka_wakeup wakeup; /* probe -> loop */
};

typedef int32_t (*kafka_partitioner_fn)(const rd_kafka_topic_t *topic, const void *key,
                                        size_t key_len, int32_t partition_count, void *topic_opaque,
                                        void *message_opaque);

struct kafka {
    struct event_base *base;
    const struct config *config; /* for properties at consumer creation */
    struct metrics *metrics;
    struct kafka_mock *mock; /* embedded cluster, or NULL */
    char *bootstrap;
    rd_kafka_t *producer;
    kafka_partitioner_fn keyed_partitioner; /* the configured one, for keyed records */
    rd_kafka_queue_t *producer_queue;
    struct kafka_wakeup producer_wakeup;
    struct kafka_probe probe;

    bool ready;      /* loop copy of the probe state */
    bool fatal;      /* the producer hit a fatal error */
    bool destroying; /* kafka_free: delivery reports no longer reach owners */
    char reason[512];

    struct kafka_consumer *consumers; /* open and closing consumers */

    /* topic lookups: threads append finished ones under lookup_lock and wake the loop */
    pthread_mutex_t lookup_lock;
    pthread_cond_t lookup_idle;
    struct kafka_lookup *lookups_done;
    int lookups_running;
    struct kafka_forget *forgetting; /* groups whose position is being forgotten */
    struct kafka_wakeup lookup_wakeup;

    uint64_t *produced;
    uint64_t *delivered;
    uint64_t *delivery_errors;
    uint64_t *errors;
};

struct kafka_delivery {
    kafka_delivery_fn done;
    void *opaque;
    uint32_t sticky; /* kafka_produce's: the partition of a record without key */
};

struct kafka_consumer {
    struct kafka_consumer *next;
    struct kafka *kafka;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;       /* consumer queue (records, callbacks) */
    rd_kafka_queue_t *close_queue; /* set while closing */
    struct kafka_wakeup wakeup;
    struct kafka_consumer_handlers handlers;
    void *opaque;
    char *group_id;
    bool closing;
    int anchors_running;         /* group anchor lookups using rk on a thread */
    bool close_deferred;         /* closed while an anchor ran: finish when it reports */
    struct kafka_lookup *forget; /* kafka_consumer_close_forget: started once closed */
};

/* A group in kafka->forgetting (under lookup_lock): an anchor of that group
 * waits until it is gone. */
struct kafka_forget {
    struct kafka_forget *next;
    char *group_id;
};

/* ---- small helpers ------------------------------------------------------ */

const char *kafka_error_name(int err) { return rd_kafka_err2str((rd_kafka_resp_err_t)err); }

static int kafka_wakeup_open(struct kafka_wakeup *wakeup, struct event_base *base,
                             event_callback_fn fn, void *arg, char *err, size_t err_size)
{
    wakeup->event = NULL;
    if (pipe2(wakeup->fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, err_size, "kafka: cannot create wake-up pipe: %s", strerror(errno));
        wakeup->fds[0] = wakeup->fds[1] = -1;
        return -1;
    }
    wakeup->event = event_new(base, wakeup->fds[0], EV_READ | EV_PERSIST, fn, arg);
    if (!wakeup->event || event_add(wakeup->event, NULL) < 0) {
        snprintf(err, err_size, "kafka: cannot watch wake-up pipe");
        return -1;
    }
    return 0;
}

static void kafka_wakeup_close(struct kafka_wakeup *wakeup)
{
    if (wakeup->event)
        event_free(wakeup->event);
    wakeup->event = NULL;
    for (int i = 0; i < 2; i++) {
        if (wakeup->fds[i] >= 0)
            close(wakeup->fds[i]);
        wakeup->fds[i] = -1;
    }
}

/* Empty the pipe; the queue itself is drained by the caller. */
static void kafka_wakeup_consume(struct kafka_wakeup *wakeup)
{
    char buf[256];
    while (read(wakeup->fds[0], buf, sizeof(buf)) > 0) {
    }
}

/* librdkafka log lines (any thread) into our log. */
static void kafka_on_log(const rd_kafka_t *rk, int level, const char *facility, const char *buf)
{
    /* librdkafka logs every failed broker connect at 3 (LOG_ERR); the error
     * callback reports the same condition, so keep those at warn. */
    enum log_level ours = level <= 2   ? LOG_LEVEL_ERROR
                          : level <= 4 ? LOG_LEVEL_WARN
                          : level <= 6 ? LOG_LEVEL_INFO
                                       : LOG_LEVEL_DEBUG;
    log_write(ours, "kafka", "%s: %s: %s", rd_kafka_name(rk), facility, buf);
}

static int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *name,
                          const char *value, char *err, size_t err_size)
{
    char why[512];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(err, err_size, "%s.%s: %s", key, name, why);
        return -1;
    }
    return 0;
}

static int kafka_conf_apply(rd_kafka_conf_t *conf, const char *key,
                            const struct config_properties *props, char *err, size_t err_size)
{
    for (size_t i = 0; i < props->count; i++)
        if (kafka_conf_set(conf, key, props->items[i].name, props->items[i].value, err, err_size) <
            0)
            return -1;
    return 0;
}

static const char *kafka_config_property(const struct config_properties *props, const char *name)
{
    const char *found = NULL;
    for (size_t i = 0; i < props->count; i++)
        if (strcmp(props->items[i].name, name) == 0)
            found = props->items[i].value;
    return found;
}

/* Base configuration shared by every handle of the node. */
static rd_kafka_conf_t *kafka_conf_base(struct kafka *kafka, const char *role, char *err,
                                        size_t err_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char client_id[300];
    snprintf(client_id, sizeof(client_id), "kbridge-%s-%s", kafka->config->node_id, role);
    if (kafka_conf_set(conf, "kafka", "bootstrap.servers", kafka->bootstrap, err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka", "client.id", client_id, err, err_size) < 0 ||
        kafka_conf_apply(conf, "kafka.properties", &kafka->config->kafka.properties, err,
                         err_size) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, kafka_on_log);
    return conf;
}

/* ---- readiness probe ------------------------------------------------------ */

static void *kafka_probe_main(void *arg)
{
    struct kafka *kafka = arg;
    struct kafka_probe *probe = &kafka->probe;
    pthread_mutex_lock(&probe->lock);
    while (!probe->stop) {
        pthread_mutex_unlock(&probe->lock);

        const struct rd_kafka_metadata *metadata = NULL;
        rd_kafka_resp_err_t err =
            rd_kafka_metadata(kafka->producer, 0, NULL, &metadata, KAFKA_PROBE_TIMEOUT_MS);
        bool ready = err == RD_KAFKA_RESP_ERR_NO_ERROR;
        int brokers = ready ? metadata->broker_cnt : 0;
        if (metadata)
            rd_kafka_metadata_destroy(metadata);

        char reason[sizeof(probe->reason)] = "";
        if (!ready)
            snprintf(reason, sizeof(reason), "no metadata from Kafka at %s: %s", kafka->bootstrap,
                     rd_kafka_err2str(err));
        pthread_mutex_lock(&probe->lock);
        if (ready != probe->ready || brokers != probe->broker_count ||
            strcmp(reason, probe->reason) != 0) {
            probe->ready = ready;
            probe->broker_count = brokers;
            memcpy(probe->reason, reason, sizeof(reason));
            ssize_t ignored = write(probe->wakeup.fds[1], "p", 1);
            (void)ignored;
        }
        if (probe->stop)
            break;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        long wait_ms = ready ? KAFKA_PROBE_INTERVAL_READY_MS : KAFKA_PROBE_INTERVAL_NOT_READY_MS;
        until.tv_sec += wait_ms / 1000;
        until.tv_nsec += (wait_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!probe->stop && pthread_cond_timedwait(&probe->cond, &probe->lock, &until) == 0) {
        }
    }
    pthread_mutex_unlock(&probe->lock);
    return NULL;
}

static void kafka_update_ready(struct kafka *kafka)
{
    struct kafka_probe *probe = &kafka->probe;
    char previous[sizeof(kafka->reason)];
    memcpy(previous, kafka->reason, sizeof(previous));
    pthread_mutex_lock(&probe->lock);
    bool ready = probe->ready && !kafka->fatal;
    if (!kafka->fatal)
        memcpy(kafka->reason, probe->reason, sizeof(kafka->reason));
    pthread_mutex_unlock(&probe->lock);
    bool changed = ready != kafka->ready;
    kafka->ready = ready;
    if (ready && changed)
        log_info("kafka", "ready: cluster metadata fetched from %s", kafka->bootstrap);
    else if (!ready && (changed || strcmp(previous, kafka->reason) != 0))
        log_warn("kafka", "not ready: %s", kafka->reason);
}

static void kafka_on_probe_wakeup(evutil_socket_t fd, short what, void *arg)
{
    struct kafka *kafka = arg;
    kafka_wakeup_consume(&kafka->probe.wakeup);
    kafka_update_ready(kafka);
}

/* ---- producer ------------------------------------------------------------- */

static void kafka_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *message, void *arg)
{
    struct kafka *kafka = arg;
    struct kafka_delivery *delivery = message->_private;
    if (message->err) {
        (*kafka->delivery_errors)++;
        log_debug("kafka", "delivery to %s failed: %s", rd_kafka_topic_name(message->rkt),
                  rd_kafka_err2str(message->err));
    } else {
        (*kafka->delivered)++;
    }
    if (delivery) {
        if (!kafka->destroying)
            delivery->done(delivery->opaque, (int)message->err, message->partition,
                           message->offset);
        free(delivery);
    }
}

static void kafka_on_error(rd_kafka_t *rk, int err, const char *reason, void *arg)
{
    struct kafka *kafka = arg;
    (*kafka->errors)++;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[400];
        rd_kafka_resp_err_t cause = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        log_error("kafka", "%s: fatal error %s: %s", rd_kafka_name(rk), rd_kafka_err2name(cause),
                  fatal);
        if (rk == kafka->producer) {
            kafka->fatal = true;
            snprintf(kafka->reason, sizeof(kafka->reason), "producer fatal error: %s", fatal);
            kafka_update_ready(kafka);
        }
        return;
    }
    log_warn("kafka", "%s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name(err), reason);
}

/* Serve every queued producer callback. */
static void kafka_producer_drain(struct kafka *kafka)
{
    while (rd_kafka_poll(kafka->producer, 0) > 0) {
    }
}

static void kafka_on_producer_wakeup(evutil_socket_t fd, short what, void *arg)
{
    struct kafka *kafka = arg;
    kafka_wakeup_consume(&kafka->producer_wakeup);
    kafka_producer_drain(kafka);
}

/* The partitioner librdkafka's `partitioner` property names, for keyed records. */
static kafka_partitioner_fn kafka_partitioner_named(const char *name)
{
    static const struct {
        const char *name;
        kafka_partitioner_fn fn;
    } partitioners[] = {
        {"random", rd_kafka_msg_partitioner_random},
        {"consistent", rd_kafka_msg_partitioner_consistent},
        {"consistent_random", rd_kafka_msg_partitioner_consistent_random},
        {"murmur2", rd_kafka_msg_partitioner_murmur2},
        {"murmur2_random", rd_kafka_msg_partitioner_murmur2_random},
        {"fnv1a", rd_kafka_msg_partitioner_fnv1a},
        {"fnv1a_random", rd_kafka_msg_partitioner_fnv1a_random},
    };
    for (size_t i = 0; i < sizeof(partitioners) / sizeof(partitioners[0]); i++)
        if (strcmp(name, partitioners[i].name) == 0)
            return partitioners[i].fn;
    return NULL;
}

/* librdkafka's partitioner callback (any thread; touches only immutable
 * state): a record without key but with a sticky value goes to its sticky
 * partition (one producer, one partition: its order is kept, architecture §3);
 * the rest to the configured partitioner. */
static int32_t kafka_partition(const rd_kafka_topic_t *topic, const void *key, size_t key_len,
                               int32_t partition_count, void *topic_opaque, void *message_opaque)
{
    const struct kafka *kafka = topic_opaque;
    const struct kafka_delivery *delivery = message_opaque;
    if ((!key || key_len == 0) && delivery && delivery->sticky && partition_count > 0)
        return (int32_t)(delivery->sticky % (uint32_t)partition_count);
    return kafka->keyed_partitioner(topic, key, key_len, partition_count, topic_opaque,
                                    message_opaque);
}

/* Install kafka_partition on the producer's default topic config, keyed
 * records going to the partitioner the user configured (if any). */
static int kafka_producer_partitioner(struct kafka *kafka, rd_kafka_conf_t *conf, char *err,
                                      size_t err_size)
{
    rd_kafka_topic_conf_t *topic_conf = rd_kafka_conf_get_default_topic_conf(conf);
    if (!topic_conf) {
        topic_conf = rd_kafka_topic_conf_new();
        rd_kafka_conf_set_default_topic_conf(conf, topic_conf); /* conf owns it now */
    }
    char name[64];
    size_t name_size = sizeof(name);
    if (rd_kafka_topic_conf_get(topic_conf, "partitioner", name, &name_size) != RD_KAFKA_CONF_OK)
        snprintf(name, sizeof(name), "consistent_random");
    kafka->keyed_partitioner = kafka_partitioner_named(name);
    if (!kafka->keyed_partitioner) {
        snprintf(err, err_size, "kafka.producer: partitioner '%s' is not one kbridge knows", name);
        return -1;
    }
    /* While sticky.partitioning.linger.ms > 0, librdkafka places records
     * without a key itself (a partition per batch window) and never asks the
     * callback: kbridge's per-producer choice replaces that batching. */
    char why[256];
    if (rd_kafka_conf_set(conf, "sticky.partitioning.linger.ms", "0", why, sizeof(why)) !=
        RD_KAFKA_CONF_OK) {
        snprintf(err, err_size, "kafka.producer: cannot set sticky.partitioning.linger.ms: %s",
                 why);
        return -1;
    }
    rd_kafka_topic_conf_set_partitioner_cb(topic_conf, kafka_partition);
    rd_kafka_topic_conf_set_opaque(topic_conf, kafka);
    return 0;
}

static int kafka_producer_create(struct kafka *kafka, char *err, size_t err_size)
{
    const struct config *config = kafka->config;
    rd_kafka_conf_t *conf = kafka_conf_base(kafka, "producer", err, err_size);
    if (!conf)
        return -1;
    /* Room for a body of limits.max_message_size plus its headers, unless the
     * user sized it. */
    if (!kafka_config_property(&config->kafka.producer, "message.max.bytes") &&
        !kafka_config_property(&config->kafka.properties, "message.max.bytes")) {
        char size[32];
        uint64_t want = config->limits.max_message_size + 65536;
        snprintf(size, sizeof(size), "%llu", (unsigned long long)(want > 1000000 ? want : 1000000));
        if (kafka_conf_set(conf, "kafka.producer", "message.max.bytes", size, err, err_size) < 0)
            goto fail;
    }
    if (kafka_conf_apply(conf, "kafka.producer", &config->kafka.producer, err, err_size) < 0)
        goto fail;
    /* The contract (architecture §4), set last so nothing overrides it; a config
     * that tries is refused by kafka_check_contract. */
    if (kafka_conf_set(conf, "kafka.producer", "enable.idempotence", "true", err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka.producer", "acks", "all", err, err_size) < 0)
        goto fail;
    if (kafka_producer_partitioner(kafka, conf, err, err_size) < 0)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, kafka_on_delivery);
    rd_kafka_conf_set_error_cb(conf, kafka_on_error);
    rd_kafka_conf_set_opaque(conf, kafka);

    char why[512];
    kafka->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!kafka->producer) {
        snprintf(err, err_size, "kafka: cannot create producer: %s", why);
        goto fail;
    }
    kafka->producer_queue = rd_kafka_queue_get_main(kafka->producer);
    if (kafka_wakeup_open(&kafka->producer_wakeup, kafka->base, kafka_on_producer_wakeup, kafka,
                          err, err_size) < 0)
        return -1;
    rd_kafka_queue_io_event_enable(kafka->producer_queue, kafka->producer_wakeup.fds[1], "p", 1);
    /* anything queued before the pipe was attached */
    event_active(kafka->producer_wakeup.event, EV_READ, 0);
    return 0;
fail:
    rd_kafka_conf_destroy(conf);
    return -1;
}

int kafka_produce(struct kafka *kafka, const char *topic, int32_t partition, uint32_t sticky,
                  const void *key, size_t key_len, const void *value, size_t value_len,
                  const struct kafka_header *headers, size_t header_count, kafka_delivery_fn done,
                  void *opaque)
{
    struct kafka_delivery *delivery = malloc(sizeof(*delivery));
    if (!delivery)
        return RD_KAFKA_RESP_ERR__FAIL;
    delivery->done = done;
    delivery->opaque = opaque;
    delivery->sticky = sticky;

    rd_kafka_headers_t *kafka_headers = NULL;
    if (header_count > 0) {
        kafka_headers = rd_kafka_headers_new(header_count);
        for (size_t i = 0; i < header_count; i++)
            rd_kafka_header_add(kafka_headers, headers[i].name, -1, headers[i].value,
                                (ssize_t)headers[i].value_len);
    }
    rd_kafka_resp_err_t err = rd_kafka_producev(
        kafka->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(kafka_headers),
        RD_KAFKA_V_OPAQUE(delivery), RD_KAFKA_V_END);
    if (err) {
        if (kafka_headers)
            rd_kafka_headers_destroy(kafka_headers);
        free(delivery);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            (*kafka->delivery_errors)++;
        return (int)err;
    }
    (*kafka->produced)++;
    return KAFKA_OK;
}

int kafka_unconfirmed(const struct kafka *kafka) { return rd_kafka_outq_len(kafka->producer); }

/* ---- topic lookups ------------------------------------------------------------ */

#define KAFKA_LOOKUP_TIMEOUT_MS 5000
/* Committed-offset metadata of a deleted durable subscription: an anchor
 * treats such a partition as having no offset (starts at the end). */
#define KAFKA_FORGOTTEN "kbridge:forgotten"
/* How long an anchor waits for a forget of its group to finish. */
#define KAFKA_FORGET_WAIT_MS 30000

struct kafka_lookup {
    struct kafka_lookup *next; /* in lookups_done */
    struct kafka *kafka;
    char *topic; /* NULL: all topics through filter */
    kafka_topic_filter_fn filter;
    void *filter_arg;
    kafka_lookup_fn done;
    void *opaque;
    struct kafka_consumer *anchor; /* commit end offsets for this consumer's group */
    char *forget_group;            /* forget this group's position (with forget_rk) */
    rd_kafka_t *forget_rk;         /* a consumer handle of forget_group, destroyed here */
    char *forget_subscription;     /* what forget_rk subscribes to if it must join */
    int create_partitions;         /* > 0: create the topic when it does not exist */
    bool cancelled;                /* loop only */
    bool finished;                 /* under lookup_lock: result ready */
    /* result */
    int err;
    struct kafka_topic_info *topics;
    size_t count;
};

static void kafka_lookup_free(struct kafka_lookup *lookup)
{
    for (size_t i = 0; i < lookup->count; i++) {
        free((char *)lookup->topics[i].topic);
        free((int64_t *)lookup->topics[i].end_offsets);
    }
    free(lookup->topics);
    free(lookup->topic);
    free(lookup->filter_arg);
    free(lookup->forget_group);
    free(lookup->forget_subscription);
    if (lookup->forget_rk)
        rd_kafka_destroy(lookup->forget_rk);
    free(lookup);
}

static int kafka_lookup_topic(struct kafka_lookup *lookup, const rd_kafka_metadata_topic_t *meta)
{
    struct kafka_topic_info *info = &lookup->topics[lookup->count];
    int64_t *offsets =
        calloc((size_t)(meta->partition_cnt > 0 ? meta->partition_cnt : 1), sizeof(*offsets));
    char *name = strdup(meta->topic);
    if (!offsets || !name) {
        free(offsets);
        free(name);
        return RD_KAFKA_RESP_ERR__FAIL;
    }
    for (int i = 0; i < meta->partition_cnt; i++) {
        int64_t low = 0, high = 0;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
            lookup->kafka->producer, meta->topic, meta->partitions[i].id, &low, &high,
            KAFKA_LOOKUP_TIMEOUT_MS);
        if (err) {
            free(offsets);
            free(name);
            return err;
        }
        if (meta->partitions[i].id >= 0 && meta->partitions[i].id < meta->partition_cnt)
            offsets[meta->partitions[i].id] = high;
    }
    info->topic = name;
    info->partition_count = meta->partition_cnt;
    info->end_offsets = offsets;
    lookup->count++;
    return 0;
}

/* Give the anchor consumer's group a committed offset (the end offset just
 * looked up) on every partition that has none, so that a new durable
 * subscription starts where it was created and never skips a partition it
 * has not read yet. Blocking coordinator calls: lookup thread only. */
static bool kafka_forgetting(struct kafka *kafka, const char *group_id)
{
    for (struct kafka_forget *f = kafka->forgetting; f; f = f->next)
        if (strcmp(f->group_id, group_id) == 0)
            return true;
    return false;
}

static void kafka_forgetting_remove(struct kafka *kafka, const char *group_id)
{
    for (struct kafka_forget **link = &kafka->forgetting; *link; link = &(*link)->next) {
        if (strcmp((*link)->group_id, group_id) == 0) {
            struct kafka_forget *gone = *link;
            *link = gone->next;
            free(gone->group_id);
            free(gone);
            return;
        }
    }
}

static bool kafka_offset_forgotten(const rd_kafka_topic_partition_t *p)
{
    return p->metadata && p->metadata_size == sizeof(KAFKA_FORGOTTEN) - 1 &&
           memcmp(p->metadata, KAFKA_FORGOTTEN, p->metadata_size) == 0;
}

static rd_kafka_resp_err_t kafka_forget_commit(rd_kafka_t *rk,
                                               rd_kafka_topic_partition_list_t *offsets)
{
    if (offsets->cnt == 0)
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t err = rd_kafka_commit(rk, offsets, 0);
    for (int i = 0; !err && i < offsets->cnt; i++)
        if (offsets->elems[i].err)
            err = offsets->elems[i].err;
    return err;
}

/* Join the forgotten group with forget_rk and wait (on this thread) for its
 * assignment. */
static rd_kafka_resp_err_t kafka_forget_join(struct kafka_lookup *lookup)
{
    rd_kafka_t *rk = lookup->forget_rk;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, lookup->forget_subscription, RD_KAFKA_PARTITION_UA);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    uint64_t deadline = clock_monotonic_ms() + KAFKA_FORGET_WAIT_MS / 2;
    while (!err) {
        rd_kafka_topic_partition_list_t *assigned = NULL;
        if (rd_kafka_assignment(rk, &assigned) == 0 && assigned->cnt > 0) {
            rd_kafka_topic_partition_list_destroy(assigned);
            break;
        }
        if (assigned)
            rd_kafka_topic_partition_list_destroy(assigned);
        if (clock_monotonic_ms() > deadline)
            err = RD_KAFKA_RESP_ERR__TIMED_OUT;
        rd_kafka_message_t *message = rd_kafka_consumer_poll(rk, 100);
        if (message)
            rd_kafka_message_destroy(message);
    }
    return err;
}

/* Commit the end offsets just looked up, marked KAFKA_FORGOTTEN, for the
 * forgotten group (its consumer has left it). Lookup thread only. */
static rd_kafka_resp_err_t kafka_lookup_forget(struct kafka_lookup *lookup)
{
    rd_kafka_topic_partition_list_t *all = rd_kafka_topic_partition_list_new(16);
    for (size_t i = 0; i < lookup->count; i++) {
        for (int32_t p = 0; p < lookup->topics[i].partition_count; p++) {
            rd_kafka_topic_partition_t *tp =
                rd_kafka_topic_partition_list_add(all, lookup->topics[i].topic, p);
            tp->offset = lookup->topics[i].end_offsets[p];
            tp->metadata = strdup(KAFKA_FORGOTTEN);
            tp->metadata_size = tp->metadata ? sizeof(KAFKA_FORGOTTEN) - 1 : 0;
        }
    }
    rd_kafka_resp_err_t err = kafka_forget_commit(lookup->forget_rk, all);
    if (err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION) {
        /* A broker that takes commits only from members (librdkafka's mock
         * once the group has existed; a real Kafka takes them from anyone
         * while the group is empty): join it, then commit. */
        err = kafka_forget_join(lookup);
        if (!err)
            err = kafka_forget_commit(lookup->forget_rk, all);
        rd_kafka_consumer_close(lookup->forget_rk);
    }
    if (err)
        log_warn("kafka",
                 "group %s: cannot forget its position: %s (a durable subscription of this "
                 "name will resume where it was)",
                 lookup->forget_group, rd_kafka_err2str(err));
    else
        log_info("kafka", "group %s: position forgotten on %d partition(s)", lookup->forget_group,
                 all->cnt);
    rd_kafka_topic_partition_list_destroy(all);
    return err;
}

static rd_kafka_resp_err_t kafka_lookup_anchor(struct kafka_lookup *lookup)
{
    rd_kafka_t *rk = lookup->anchor->rk;
    struct kafka *kafka = lookup->kafka;
    /* A group being forgotten: its old position must be marked first. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += KAFKA_FORGET_WAIT_MS / 1000;
    pthread_mutex_lock(&kafka->lookup_lock);
    while (kafka_forgetting(kafka, lookup->anchor->group_id) &&
           pthread_cond_timedwait(&kafka->lookup_idle, &kafka->lookup_lock, &deadline) == 0)
        ;
    pthread_mutex_unlock(&kafka->lookup_lock);
    rd_kafka_topic_partition_list_t *all = rd_kafka_topic_partition_list_new(16);
    for (size_t i = 0; i < lookup->count; i++)
        for (int32_t p = 0; p < lookup->topics[i].partition_count; p++)
            rd_kafka_topic_partition_list_add(all, lookup->topics[i].topic, p);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (all->cnt > 0)
        err = rd_kafka_committed(rk, all, KAFKA_LOOKUP_TIMEOUT_MS);
    rd_kafka_topic_partition_list_t *missing = rd_kafka_topic_partition_list_new(16);
    int forgotten = 0;
    for (int i = 0; !err && i < all->cnt; i++) {
        if (all->elems[i].offset >= 0 && !kafka_offset_forgotten(&all->elems[i]))
            continue;
        forgotten += all->elems[i].offset >= 0;
        for (size_t t = 0; t < lookup->count; t++)
            if (strcmp(lookup->topics[t].topic, all->elems[i].topic) == 0)
                rd_kafka_topic_partition_list_add(missing, all->elems[i].topic,
                                                  all->elems[i].partition)
                    ->offset = lookup->topics[t].end_offsets[all->elems[i].partition];
    }
    if (!err && missing->cnt > 0) {
        err = rd_kafka_commit(rk, missing, 0);
        for (int i = 0; !err && i < missing->cnt; i++)
            if (missing->elems[i].err)
                err = missing->elems[i].err;
        if (!err) {
            log_info("kafka", "group %s: starts at the end of %d partition(s) it had no offset for",
                     lookup->anchor->group_id, missing->cnt);
        } else if (forgotten == missing->cnt && (err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID ||
                                                 err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION)) {
            /* A broker that takes commits only from members (librdkafka's
             * mock): the forgotten position, the end when it was deleted,
             * stands; a real Kafka takes the commit above. */
            log_info("kafka",
                     "group %s: starts where it was deleted on %d partition(s) (the broker "
                     "takes offset commits only from group members)",
                     lookup->anchor->group_id, forgotten);
            err = RD_KAFKA_RESP_ERR_NO_ERROR;
        }
    }
    rd_kafka_topic_partition_list_destroy(missing);
    rd_kafka_topic_partition_list_destroy(all);
    return err;
}

int kafka_create_topic(struct kafka *kafka, const char *topic, int partitions, char *err,
                       size_t err_size)
{
    char errstr[256] = "";
    rd_kafka_NewTopic_t *new_topic =
        rd_kafka_NewTopic_new(topic, partitions, -1, errstr, sizeof(errstr));
    if (!new_topic) {
        snprintf(err, err_size, "%s", errstr);
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
    }
    rd_kafka_queue_t *queue = rd_kafka_queue_new(kafka->producer);
    rd_kafka_AdminOptions_t *options =
        rd_kafka_AdminOptions_new(kafka->producer, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(options, KAFKA_LOOKUP_TIMEOUT_MS, errstr,
                                              sizeof(errstr));
    rd_kafka_CreateTopics(kafka->producer, &new_topic, 1, options, queue);
    rd_kafka_event_t *event = rd_kafka_queue_poll(queue, KAFKA_LOOKUP_TIMEOUT_MS + 1000);
    int rc;
    if (!event) {
        rc = RD_KAFKA_RESP_ERR__TIMED_OUT;
        snprintf(err, err_size, "no answer to CreateTopics");
    } else if ((rc = rd_kafka_event_error(event)) != 0) {
        snprintf(err, err_size, "%s", rd_kafka_event_error_string(event));
    } else {
        size_t count = 0;
        const rd_kafka_topic_result_t **results =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count);
        rc = count > 0 ? rd_kafka_topic_result_error(results[0]) : RD_KAFKA_RESP_ERR__FAIL;
        if (rc == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            rc = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (rc)
            snprintf(err, err_size, "%s",
                     count > 0 && rd_kafka_topic_result_error_string(results[0])
                         ? rd_kafka_topic_result_error_string(results[0])
                         : rd_kafka_err2str(rc));
    }
    if (event)
        rd_kafka_event_destroy(event);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_queue_destroy(queue);
    rd_kafka_NewTopic_destroy(new_topic);
    return rc;
}

static bool kafka_topic_missing(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
           err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
}

static void *kafka_lookup_main(void *arg)
{
    struct kafka_lookup *lookup = arg;
    struct kafka *kafka = lookup->kafka;
    const struct rd_kafka_metadata *metadata = NULL;
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_resp_err_t err;
    if (lookup->topic) {
        rkt = rd_kafka_topic_new(kafka->producer, lookup->topic, NULL);
        err = rd_kafka_metadata(kafka->producer, 0, rkt, &metadata, KAFKA_LOOKUP_TIMEOUT_MS);
        if (!err && metadata->topic_cnt == 1 && kafka_topic_missing(metadata->topics[0].err) &&
            lookup->create_partitions > 0) {
            char reason[256] = "";
            int created = kafka_create_topic(kafka, lookup->topic, lookup->create_partitions,
                                             reason, sizeof(reason));
            if (created)
                log_warn("kafka", "cannot create topic %s: %s", lookup->topic, reason);
            else
                log_info("kafka", "created topic %s (%d partitions)", lookup->topic,
                         lookup->create_partitions);
            rd_kafka_metadata_destroy(metadata);
            metadata = NULL;
            err = rd_kafka_metadata(kafka->producer, 0, rkt, &metadata, KAFKA_LOOKUP_TIMEOUT_MS);
        }
    } else {
        err = rd_kafka_metadata(kafka->producer, 1, NULL, &metadata, KAFKA_LOOKUP_TIMEOUT_MS);
    }
    if (!err) {
        lookup->topics = calloc((size_t)metadata->topic_cnt + 1, sizeof(*lookup->topics));
        if (!lookup->topics)
            err = RD_KAFKA_RESP_ERR__FAIL;
        for (int i = 0; !err && i < metadata->topic_cnt; i++) {
            const rd_kafka_metadata_topic_t *meta = &metadata->topics[i];
            if (lookup->topic && strcmp(meta->topic, lookup->topic) != 0)
                continue;
            if (!lookup->topic &&
                (meta->topic[0] == '_' || !lookup->filter(meta->topic, lookup->filter_arg)))
                continue;
            if (meta->err) {
                err = meta->err;
                break;
            }
            err = kafka_lookup_topic(lookup, meta);
        }
        if (!err && lookup->topic && lookup->count == 0)
            err = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    }
    if (metadata)
        rd_kafka_metadata_destroy(metadata);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (!err && lookup->anchor)
        err = kafka_lookup_anchor(lookup);
    if (lookup->forget_group) {
        if (!err)
            err = kafka_lookup_forget(lookup);
        else if (!kafka_topic_missing(err))
            log_warn("kafka", "group %s: cannot forget its position: %s", lookup->forget_group,
                     rd_kafka_err2str(err));
        rd_kafka_destroy(lookup->forget_rk);
        lookup->forget_rk = NULL;
    }
    lookup->err = (int)err;

    pthread_mutex_lock(&kafka->lookup_lock);
    if (lookup->forget_group)
        kafka_forgetting_remove(kafka, lookup->forget_group);
    lookup->finished = true;
    lookup->next = kafka->lookups_done;
    kafka->lookups_done = lookup;
    kafka->lookups_running--;
    ssize_t ignored = write(kafka->lookup_wakeup.fds[1], "l", 1);
    (void)ignored;
    pthread_cond_broadcast(&kafka->lookup_idle);
    pthread_mutex_unlock(&kafka->lookup_lock);
    return NULL;
}

static void kafka_on_lookup_wakeup(evutil_socket_t fd, short what, void *arg)
{
    struct kafka *kafka = arg;
    kafka_wakeup_consume(&kafka->lookup_wakeup);
    pthread_mutex_lock(&kafka->lookup_lock);
    struct kafka_lookup *done = kafka->lookups_done;
    kafka->lookups_done = NULL;
    pthread_mutex_unlock(&kafka->lookup_lock);
    while (done) {
        struct kafka_lookup *next = done->next;
        if (done->anchor) {
            struct kafka_consumer *consumer = done->anchor;
            consumer->anchors_running--;
            if (consumer->close_deferred && consumer->anchors_running == 0) {
                consumer->closing = false;
                kafka_consumer_close(consumer);
            }
        }
        if (!done->cancelled && done->done)
            done->done(done->opaque, done->err, done->err ? NULL : done->topics,
                       done->err ? 0 : done->count);
        kafka_lookup_free(done);
        done = next;
    }
}

static struct kafka_lookup *kafka_lookup_start(struct kafka *kafka, struct kafka_consumer *anchor,
                                               const char *topic, kafka_topic_filter_fn filter,
                                               const void *filter_arg, size_t filter_arg_size,
                                               int create_partitions, kafka_lookup_fn done,
                                               void *opaque);
static struct kafka_lookup *kafka_lookup_prepare(struct kafka *kafka, const char *topic,
                                                 kafka_topic_filter_fn filter,
                                                 const void *filter_arg, size_t filter_arg_size);
static int kafka_lookup_run(struct kafka_lookup *lookup);

struct kafka_lookup *kafka_lookup_end_offsets_or_create(struct kafka *kafka, const char *topic,
                                                        int partitions, kafka_lookup_fn done,
                                                        void *opaque)
{
    return kafka_lookup_start(kafka, NULL, topic, NULL, NULL, 0, partitions, done, opaque);
}

struct kafka_lookup *kafka_lookup_end_offsets(struct kafka *kafka, const char *topic,
                                              kafka_topic_filter_fn filter, const void *filter_arg,
                                              size_t filter_arg_size, kafka_lookup_fn done,
                                              void *opaque)
{
    return kafka_lookup_start(kafka, NULL, topic, filter, filter_arg, filter_arg_size, 0, done,
                              opaque);
}

struct kafka_lookup *kafka_lookup_anchor_group(struct kafka_consumer *consumer, const char *topic,
                                               kafka_topic_filter_fn filter, const void *filter_arg,
                                               size_t filter_arg_size, kafka_lookup_fn done,
                                               void *opaque)
{
    return kafka_lookup_start(consumer->kafka, consumer, topic, filter, filter_arg, filter_arg_size,
                              0, done, opaque);
}

static struct kafka_lookup *kafka_lookup_start(struct kafka *kafka, struct kafka_consumer *anchor,
                                               const char *topic, kafka_topic_filter_fn filter,
                                               const void *filter_arg, size_t filter_arg_size,
                                               int create_partitions, kafka_lookup_fn done,
                                               void *opaque)
{
    struct kafka_lookup *lookup =
        kafka_lookup_prepare(kafka, topic, filter, filter_arg, filter_arg_size);
    if (!lookup)
        return NULL;
    lookup->anchor = anchor;
    lookup->create_partitions = create_partitions;
    lookup->done = done;
    lookup->opaque = opaque;
    if (kafka_lookup_run(lookup) < 0)
        return NULL;
    if (anchor)
        anchor->anchors_running++;
    return lookup;
}

/* A lookup of `topic`, or of the topics `filter` takes, not started yet. */
static struct kafka_lookup *kafka_lookup_prepare(struct kafka *kafka, const char *topic,
                                                 kafka_topic_filter_fn filter,
                                                 const void *filter_arg, size_t filter_arg_size)
{
    struct kafka_lookup *lookup = calloc(1, sizeof(*lookup));
    if (!lookup)
        return NULL;
    lookup->kafka = kafka;
    lookup->filter = filter;
    if ((topic && !(lookup->topic = strdup(topic))) ||
        (!topic &&
         (!filter || !(lookup->filter_arg = malloc(filter_arg_size ? filter_arg_size : 1))))) {
        kafka_lookup_free(lookup);
        return NULL;
    }
    if (!topic && filter_arg_size)
        memcpy(lookup->filter_arg, filter_arg, filter_arg_size);
    return lookup;
}

/* Start a prepared lookup on its thread; on failure it is freed, -1. */
static int kafka_lookup_run(struct kafka_lookup *lookup)
{
    struct kafka *kafka = lookup->kafka;
    pthread_attr_t attr;
    pthread_t thread;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&kafka->lookup_lock);
    kafka->lookups_running++;
    pthread_mutex_unlock(&kafka->lookup_lock);
    if (pthread_create(&thread, &attr, kafka_lookup_main, lookup) != 0) {
        pthread_mutex_lock(&kafka->lookup_lock);
        kafka->lookups_running--;
        pthread_mutex_unlock(&kafka->lookup_lock);
        pthread_attr_destroy(&attr);
        kafka_lookup_free(lookup);
        return -1;
    }
    pthread_attr_destroy(&attr);
    return 0;
}

void kafka_lookup_cancel(struct kafka_lookup *lookup)
{
    if (lookup)
        lookup->cancelled = true; /* freed by the loop once its thread reports */
}

/* ---- records ---------------------------------------------------------------- */

static struct kafka_record *kafka_record_wrap(rd_kafka_message_t *message)
{
    struct kafka_record *record = malloc(sizeof(*record));
    if (!record) {
        rd_kafka_message_destroy(message);
        return NULL;
    }
    rd_kafka_timestamp_type_t type;
    record->topic = rd_kafka_topic_name(message->rkt);
    record->partition = message->partition;
    record->offset = message->offset;
    record->timestamp_ms = rd_kafka_message_timestamp(message, &type);
    record->key = message->key;
    record->key_len = message->key_len;
    record->value = message->payload;
    record->value_len = message->len;
    record->impl = message;
    return record;
}

size_t kafka_record_header_count(const struct kafka_record *record)
{
    rd_kafka_headers_t *headers = NULL;
    if (rd_kafka_message_headers(record->impl, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    return rd_kafka_header_cnt(headers);
}

int kafka_record_header(const struct kafka_record *record, size_t index, const char **name,
                        const void **value, size_t *value_len)
{
    rd_kafka_headers_t *headers = NULL;
    if (rd_kafka_message_headers(record->impl, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    if (rd_kafka_header_get_all(headers, index, name, value, value_len) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    return 0;
}

void kafka_record_free(struct kafka_record *record)
{
    if (!record)
        return;
    rd_kafka_message_destroy(record->impl);
    free(record);
}

/* ---- consumers ---------------------------------------------------------------- */

static void kafka_partitions_call(struct kafka_consumer *consumer,
                                  const rd_kafka_topic_partition_list_t *list, bool assigned)
{
    void (*fn)(void *, const struct kafka_partition *, size_t) =
        assigned ? consumer->handlers.assigned : consumer->handlers.revoked;
    if (!fn || consumer->closing || (list->cnt == 0 && !assigned))
        return;
    struct kafka_partition *parts = calloc((size_t)list->cnt + 1, sizeof(*parts));
    if (!parts) {
        log_error("kafka", "consumer %s: out of memory reporting a rebalance", consumer->group_id);
        return;
    }
    for (int i = 0; i < list->cnt; i++) {
        parts[i].topic = list->elems[i].topic;
        parts[i].partition = list->elems[i].partition;
    }
    fn(consumer->opaque, parts, (size_t)list->cnt);
    free(parts);
}

static void kafka_apply_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t *partitions)
{
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t plain = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, partitions);
        else
            plain = rd_kafka_assign(rk, partitions);
    } else {
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, partitions);
        else
            plain = rd_kafka_assign(rk, NULL);
    }
    if (error) {
        log_warn("kafka", "%s: rebalance: %s", rd_kafka_name(rk), rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (plain) {
        log_warn("kafka", "%s: rebalance: %s", rd_kafka_name(rk), rd_kafka_err2str(plain));
    }
}

static void kafka_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                               rd_kafka_topic_partition_list_t *partitions, void *arg)
{
    struct kafka_consumer *consumer = arg;
    bool assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    log_info("kafka", "consumer %s: %s %d partition(s)", consumer->group_id,
             assign ? "assigned" : "revoked", partitions->cnt);
    if (!assign)
        kafka_partitions_call(consumer, partitions, false); /* settle before they go */
    kafka_apply_rebalance(rk, err, partitions);
    if (assign)
        kafka_partitions_call(consumer, partitions, true);
}

static void kafka_on_consumer_error(rd_kafka_t *rk, int err, const char *reason, void *arg)
{
    struct kafka_consumer *consumer = arg;
    (*consumer->kafka->errors)++;
    log_warn("kafka", "consumer %s: %s: %s", consumer->group_id, rd_kafka_err2name(err), reason);
    if (consumer->handlers.error && !consumer->closing)
        consumer->handlers.error(consumer->opaque, err, reason);
}

static void *kafka_consumer_destroy_main(void *arg)
{
    rd_kafka_destroy((rd_kafka_t *)arg);
    return NULL;
}

static void kafka_consumer_unlink(struct kafka_consumer *consumer)
{
    struct kafka *kafka = consumer->kafka;
    for (struct kafka_consumer **link = &kafka->consumers; *link; link = &(*link)->next) {
        if (*link == consumer) {
            *link = consumer->next;
            return;
        }
    }
}

/* Release everything; `destroy_async` hands rd_kafka_destroy to a thread. */
static void kafka_consumer_free(struct kafka_consumer *consumer, bool destroy_async)
{
    kafka_consumer_unlink(consumer);
    if (consumer->forget) { /* never started (close failed, or shutdown) */
        log_warn("kafka",
                 "group %s: its position was not forgotten (the consumer did not close in "
                 "time); a durable subscription of this name will resume where it was",
                 consumer->group_id);
        pthread_mutex_lock(&consumer->kafka->lookup_lock);
        kafka_forgetting_remove(consumer->kafka, consumer->group_id);
        pthread_mutex_unlock(&consumer->kafka->lookup_lock);
        kafka_lookup_free(consumer->forget);
        consumer->forget = NULL;
    }
    kafka_wakeup_close(&consumer->wakeup);
    if (consumer->close_queue)
        rd_kafka_queue_destroy(consumer->close_queue);
    if (consumer->queue)
        rd_kafka_queue_destroy(consumer->queue);
    if (consumer->rk) {
        pthread_t thread;
        pthread_attr_t attr;
        bool detached = false;
        if (destroy_async && pthread_attr_init(&attr) == 0) {
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            detached =
                pthread_create(&thread, &attr, kafka_consumer_destroy_main, consumer->rk) == 0;
            pthread_attr_destroy(&attr);
        }
        if (!detached)
            rd_kafka_destroy(consumer->rk);
    }
    free(consumer->group_id);
    free(consumer);
}

static void kafka_consumer_drain_close(struct kafka_consumer *consumer)
{
    rd_kafka_event_t *event;
    while ((event = rd_kafka_queue_poll(consumer->close_queue, 0))) {
        if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE)
            kafka_apply_rebalance(consumer->rk, rd_kafka_event_error(event),
                                  rd_kafka_event_topic_partition_list(event));
        rd_kafka_event_destroy(event);
    }
    if (rd_kafka_consumer_closed(consumer->rk)) {
        log_debug("kafka", "consumer %s closed", consumer->group_id);
        if (consumer->forget) {
            /* It has left the group and committed: now mark its position. */
            struct kafka_lookup *forget = consumer->forget;
            consumer->forget = NULL;
            if (kafka_lookup_run(forget) < 0) {
                log_warn("kafka", "group %s: cannot start forgetting its position",
                         consumer->group_id);
                pthread_mutex_lock(&consumer->kafka->lookup_lock);
                kafka_forgetting_remove(consumer->kafka, consumer->group_id);
                pthread_mutex_unlock(&consumer->kafka->lookup_lock);
            }
        }
        kafka_consumer_free(consumer, true);
    }
}

static void kafka_on_consumer_wakeup(evutil_socket_t fd, short what, void *arg)
{
    struct kafka_consumer *consumer = arg;
    kafka_wakeup_consume(&consumer->wakeup);
    if (consumer->closing) {
        kafka_consumer_drain_close(consumer);
        return;
    }
    rd_kafka_message_t *message;
    while (!consumer->closing && (message = rd_kafka_consumer_poll(consumer->rk, 0))) {
        if (message->err) {
            if (message->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                char reason[512];
                snprintf(reason, sizeof(reason), "%s [%d]: %s",
                         message->rkt ? rd_kafka_topic_name(message->rkt) : "-", message->partition,
                         rd_kafka_message_errstr(message));
                kafka_on_consumer_error(consumer->rk, message->err, reason, consumer);
            }
            rd_kafka_message_destroy(message);
            continue;
        }
        struct kafka_record *record = kafka_record_wrap(message);
        if (!record) {
            log_error("kafka",
                      "consumer %s: out of memory; record dropped before delivery "
                      "(it will be fetched again after a restart)",
                      consumer->group_id);
            continue;
        }
        consumer->handlers.record(consumer->opaque, record);
    }
}

struct kafka_consumer *kafka_consumer_new(struct kafka *kafka, const char *group_id,
                                          const char *offset_reset,
                                          const struct kafka_consumer_handlers *handlers,
                                          void *opaque, char *err, size_t err_size)
{
    struct kafka_consumer *consumer = calloc(1, sizeof(*consumer));
    if (!consumer) {
        snprintf(err, err_size, "kafka: out of memory creating a consumer");
        return NULL;
    }
    consumer->wakeup.fds[0] = consumer->wakeup.fds[1] = -1;
    consumer->kafka = kafka;
    consumer->handlers = *handlers;
    consumer->opaque = opaque;
    consumer->group_id = strdup(group_id ? group_id : "(reader)");
    consumer->next = kafka->consumers;
    kafka->consumers = consumer;

    rd_kafka_conf_t *conf = kafka_conf_base(kafka, "consumer", err, err_size);
    if (!conf)
        goto fail;
    /* A group id is required by librdkafka even for assign-only readers; such
     * a reader never commits, so the id is only a label. */
    char reader_group[300];
    snprintf(reader_group, sizeof(reader_group), "kbridge.reader.%s", kafka->config->node_id);
    if (kafka_conf_set(conf, "kafka.consumer", "group.id", group_id ? group_id : reader_group, err,
                       err_size) < 0 ||
        kafka_conf_set(conf, "kafka.consumer", "auto.commit.interval.ms", "1000", err, err_size) <
            0 ||
        kafka_conf_set(conf, "kafka.consumer", "auto.offset.reset",
                       offset_reset ? offset_reset : "earliest", err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka.consumer", "session.timeout.ms", "10000", err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka.consumer", "fetch.wait.max.ms", KAFKA_FETCH_WAIT_MAX_MS, err,
                       err_size) < 0 ||
        kafka_conf_apply(conf, "kafka.consumer", &kafka->config->kafka.consumer, err, err_size) <
            0 ||
        /* after the config, so nothing overrides it (kafka_check_contract) */
        kafka_conf_set(conf, "kafka.consumer", "enable.auto.offset.store", "false", err, err_size) <
            0 ||
        kafka_conf_set(conf, "kafka.consumer", "enable.auto.commit", group_id ? "true" : "false",
                       err, err_size) < 0) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    rd_kafka_conf_set_rebalance_cb(conf, kafka_on_rebalance);
    rd_kafka_conf_set_error_cb(conf, kafka_on_consumer_error);
    rd_kafka_conf_set_opaque(conf, consumer);
    char why[512];
    consumer->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!consumer->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, err_size, "kafka: cannot create consumer %s: %s", consumer->group_id, why);
        goto fail;
    }
    rd_kafka_poll_set_consumer(consumer->rk);
    consumer->queue = rd_kafka_queue_get_consumer(consumer->rk);
    if (kafka_wakeup_open(&consumer->wakeup, kafka->base, kafka_on_consumer_wakeup, consumer, err,
                          err_size) < 0)
        goto fail;
    rd_kafka_queue_io_event_enable(consumer->queue, consumer->wakeup.fds[1], "c", 1);
    event_active(consumer->wakeup.event, EV_READ, 0);
    return consumer;
fail:
    kafka_consumer_free(consumer, false);
    return NULL;
}

int kafka_consumer_subscribe(struct kafka_consumer *consumer, const char *const *topics,
                             size_t count)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)count);
    for (size_t i = 0; i < count; i++)
        rd_kafka_topic_partition_list_add(list, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    return (int)err;
}

int kafka_consumer_assign_end(struct kafka_consumer *consumer, const char *topic,
                              int32_t partitions)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partitions);
    for (int32_t p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = RD_KAFKA_OFFSET_END;
    rd_kafka_error_t *error = rd_kafka_incremental_assign(consumer->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (!error)
        return 0;
    int code = (int)rd_kafka_error_code(error);
    rd_kafka_error_destroy(error);
    return code;
}

int kafka_consumer_assign_at(struct kafka_consumer *consumer, const char *topic,
                             const int64_t *offsets, int32_t count)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(count);
    for (int32_t p = 0; p < count; p++)
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = offsets[p];
    rd_kafka_error_t *error = rd_kafka_incremental_assign(consumer->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (!error)
        return 0;
    int code = (int)rd_kafka_error_code(error);
    rd_kafka_error_destroy(error);
    return code;
}

int64_t kafka_offset_beginning(void) { return RD_KAFKA_OFFSET_BEGINNING; }

int kafka_consumer_store_offset(struct kafka_consumer *consumer, const char *topic,
                                int32_t partition, int64_t next_offset)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic, partition)->offset = next_offset;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(consumer->rk, list);
    if (!err)
        err = list->elems[0].err;
    rd_kafka_topic_partition_list_destroy(list);
    return (int)err;
}

int kafka_consumer_commit(struct kafka_consumer *consumer)
{
    rd_kafka_resp_err_t err = rd_kafka_commit(consumer->rk, NULL, 1);
    return err == RD_KAFKA_RESP_ERR__NO_OFFSET ? 0 : (int)err;
}

static int kafka_consumer_pause_resume(struct kafka_consumer *consumer, const char *topic,
                                       int32_t partition, bool pause)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic, partition);
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(consumer->rk, list)
                                    : rd_kafka_resume_partitions(consumer->rk, list);
    if (!err)
        err = list->elems[0].err;
    rd_kafka_topic_partition_list_destroy(list);
    return (int)err;
}

int kafka_consumer_pause(struct kafka_consumer *consumer, const char *topic, int32_t partition)
{
    return kafka_consumer_pause_resume(consumer, topic, partition, true);
}

int kafka_consumer_resume(struct kafka_consumer *consumer, const char *topic, int32_t partition,
                          int64_t next_offset)
{
    int err = kafka_consumer_pause_resume(consumer, topic, partition, false);
    if (err || next_offset < 0)
        return err;
    /* librdkafka 2.0 does not wake the broker thread on resume, so the fetch
     * would wait for its next idle wake-up (up to 1 s: with a buffer that
     * pauses and resumes often this caps a queue at max_in_flight messages a
     * second). An async seek to where the fetch resumes anyway wakes it. */
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic, partition)->offset = next_offset;
    rd_kafka_error_t *error = rd_kafka_seek_partitions(consumer->rk, list, 0);
    rd_kafka_topic_partition_list_destroy(list);
    if (error) {
        log_debug("kafka", "consumer %s: seek %s [%d] to %lld on resume: %s", consumer->group_id,
                  topic, partition, (long long)next_offset, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    return 0;
}

void kafka_consumer_close(struct kafka_consumer *consumer)
{
    if (!consumer || consumer->closing)
        return;
    consumer->closing = true;
    if (consumer->anchors_running > 0) {
        consumer->close_deferred = true; /* the anchor thread uses rk: close when it reports */
        return;
    }
    /* Serve the close on our own queue: its rebalance events come to the loop. */
    rd_kafka_queue_io_event_enable(consumer->queue, -1, NULL, 0);
    consumer->close_queue = rd_kafka_queue_new(consumer->rk);
    rd_kafka_queue_io_event_enable(consumer->close_queue, consumer->wakeup.fds[1], "c", 1);
    rd_kafka_error_t *error = rd_kafka_consumer_close_queue(consumer->rk, consumer->close_queue);
    if (error) {
        log_warn("kafka", "consumer %s: close: %s", consumer->group_id,
                 rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        kafka_consumer_free(consumer, true);
        return;
    }
    event_active(consumer->wakeup.event, EV_READ, 0);
}

int kafka_consumer_close_forget(struct kafka_consumer *consumer, const char *subscription,
                                const char *topic, kafka_topic_filter_fn filter,
                                const void *filter_arg, size_t filter_arg_size)
{
    struct kafka *kafka = consumer->kafka;
    if (consumer->closing)
        return -1;
    struct kafka_lookup *lookup =
        kafka_lookup_prepare(kafka, topic, filter, filter_arg, filter_arg_size);
    struct kafka_forget *entry = calloc(1, sizeof(*entry));
    char err[1024];
    rd_kafka_conf_t *conf = lookup ? kafka_conf_base(kafka, "consumer", err, sizeof(err)) : NULL;
    /* As kafka_consumer_new sets it up, in case it must join (and leave). */
    if (conf && (kafka_conf_set(conf, "kafka.consumer", "group.id", consumer->group_id, err,
                                sizeof(err)) < 0 ||
                 kafka_conf_set(conf, "kafka.consumer", "session.timeout.ms", "10000", err,
                                sizeof(err)) < 0 ||
                 kafka_conf_apply(conf, "kafka.consumer", &kafka->config->kafka.consumer, err,
                                  sizeof(err)) < 0 ||
                 kafka_conf_set(conf, "kafka.consumer", "enable.auto.offset.store", "false", err,
                                sizeof(err)) < 0 ||
                 kafka_conf_set(conf, "kafka.consumer", "enable.auto.commit", "false", err,
                                sizeof(err)) < 0)) {
        rd_kafka_conf_destroy(conf);
        conf = NULL;
    }
    if (conf && lookup) {
        char why[512];
        lookup->forget_rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
        if (!lookup->forget_rk)
            rd_kafka_conf_destroy(conf);
    }
    if (!lookup || !entry || !lookup->forget_rk ||
        !(lookup->forget_group = strdup(consumer->group_id)) ||
        !(lookup->forget_subscription = strdup(subscription)) ||
        !(entry->group_id = strdup(consumer->group_id))) {
        if (lookup)
            kafka_lookup_free(lookup);
        free(entry);
        kafka_consumer_close(consumer);
        return -1;
    }
    lookup->cancelled = true; /* nobody to tell */
    pthread_mutex_lock(&kafka->lookup_lock);
    entry->next = kafka->forgetting;
    kafka->forgetting = entry;
    pthread_mutex_unlock(&kafka->lookup_lock);
    consumer->forget = lookup;
    kafka_consumer_close(consumer);
    return 0;
}

/* ---- the node's layer ----------------------------------------------------------- */

/* Refuse librdkafka settings that would break kbridge's promises (architecture §4):
 * the producer must be idempotent with acks=all (nothing is confirmed to a
 * client before every in-sync replica has it), and the consumer must not
 * store offsets by itself (nothing is committed before the client settled
 * it). kbridge sets these itself; a config may only repeat them. */
static int kafka_check_contract(const struct config *config, char *err, size_t err_size)
{
    const char *acks = kafka_config_property(&config->kafka.producer, "acks");
    const char *idempotence = kafka_config_property(&config->kafka.producer, "enable.idempotence");
    if ((acks && strcmp(acks, "all") != 0 && strcmp(acks, "-1") != 0) ||
        (idempotence && strcmp(idempotence, "true") != 0)) {
        snprintf(err, err_size,
                 "kafka.producer: kbridge requires acks=all and enable.idempotence=true "
                 "(nothing is confirmed to a client before every in-sync replica has it)");
        return -1;
    }
    const char *offset_store =
        kafka_config_property(&config->kafka.consumer, "enable.auto.offset.store");
    if (offset_store && strcmp(offset_store, "false") != 0) {
        snprintf(err, err_size,
                 "kafka.consumer: kbridge requires enable.auto.offset.store=false (it stores "
                 "an offset only once the client settled every message before it); remove "
                 "the setting");
        return -1;
    }
    return 0;
}

struct kafka *kafka_new(struct event_base *base, const struct config *config,
                        struct metrics *metrics, char *err, size_t err_size)
{
    if (kafka_check_contract(config, err, err_size) < 0)
        return NULL;
    struct kafka *kafka = calloc(1, sizeof(*kafka));
    if (!kafka) {
        snprintf(err, err_size, "kafka: out of memory");
        return NULL;
    }
    kafka->base = base;
    kafka->config = config;
    kafka->metrics = metrics;
    kafka->producer_wakeup.fds[0] = kafka->producer_wakeup.fds[1] = -1;
    kafka->probe.wakeup.fds[0] = kafka->probe.wakeup.fds[1] = -1;
    pthread_mutex_init(&kafka->probe.lock, NULL);
    pthread_mutex_init(&kafka->lookup_lock, NULL);
    pthread_cond_init(&kafka->lookup_idle, NULL);
    kafka->lookup_wakeup.fds[0] = kafka->lookup_wakeup.fds[1] = -1;
    pthread_condattr_t cond_attr;
    pthread_condattr_init(&cond_attr);
    pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&kafka->probe.cond, &cond_attr);
    pthread_condattr_destroy(&cond_attr);
    snprintf(kafka->reason, sizeof(kafka->reason), "waiting for the first metadata from Kafka");
    snprintf(kafka->probe.reason, sizeof(kafka->probe.reason), "%s", kafka->reason);

    kafka->produced = metrics_counter(metrics, "kbridge_kafka_produced_total",
                                      "Records handed to the Kafka producer.", NULL);
    kafka->delivered = metrics_counter(metrics, "kbridge_kafka_delivered_total",
                                       "Records Kafka confirmed as stored.", NULL);
    kafka->delivery_errors = metrics_counter(metrics, "kbridge_kafka_delivery_errors_total",
                                             "Records Kafka did not store (failed produce).", NULL);
    kafka->errors =
        metrics_counter(metrics, "kbridge_kafka_errors_total",
                        "Client-level Kafka errors (connections, brokers, groups).", NULL);
    if (!kafka->produced || !kafka->delivered || !kafka->delivery_errors || !kafka->errors) {
        snprintf(err, err_size, "kafka: out of memory");
        goto fail;
    }

    if (strcmp(config->kafka.bootstrap, "embedded") == 0) {
        kafka->mock = kafka_mock_start(1, 4, err, err_size);
        if (!kafka->mock)
            goto fail;
        kafka->bootstrap = strdup(kafka_mock_bootstraps(kafka->mock));
        log_warn("kafka",
                 "kafka.bootstrap is \"embedded\": an in-process mock Kafka cluster at %s "
                 "holds all data IN MEMORY ONLY; it is lost when kbridged stops. "
                 "Use a real Kafka cluster in production.",
                 kafka->bootstrap);
    } else {
        kafka->bootstrap = strdup(config->kafka.bootstrap);
    }
    if (!kafka->bootstrap) {
        snprintf(err, err_size, "kafka: out of memory");
        goto fail;
    }
    if (kafka_producer_create(kafka, err, err_size) < 0)
        goto fail;
    if (kafka_wakeup_open(&kafka->probe.wakeup, base, kafka_on_probe_wakeup, kafka, err, err_size) <
            0 ||
        kafka_wakeup_open(&kafka->lookup_wakeup, base, kafka_on_lookup_wakeup, kafka, err,
                          err_size) < 0)
        goto fail;
    if (pthread_create(&kafka->probe.thread, NULL, kafka_probe_main, kafka) != 0) {
        snprintf(err, err_size, "kafka: cannot start the readiness probe thread");
        goto fail;
    }
    kafka->probe.started = true;
    log_info("kafka", "producer started for %s (idempotent, acks=all)", kafka->bootstrap);
    return kafka;
fail:
    kafka_free(kafka);
    return NULL;
}

const char *kafka_bootstrap(const struct kafka *kafka) { return kafka->bootstrap; }
bool kafka_is_embedded(const struct kafka *kafka) { return kafka->mock != NULL; }
bool kafka_is_ready(const struct kafka *kafka) { return kafka->ready; }
const char *kafka_not_ready_reason(const struct kafka *kafka)
{
    return kafka->ready ? "" : kafka->reason;
}

void kafka_set_config(struct kafka *kafka, const struct config *config) { kafka->config = config; }

void kafka_free(struct kafka *kafka)
{
    if (!kafka)
        return;
    if (kafka->probe.started) {
        pthread_mutex_lock(&kafka->probe.lock);
        kafka->probe.stop = true;
        pthread_cond_signal(&kafka->probe.cond);
        pthread_mutex_unlock(&kafka->probe.lock);
        pthread_join(kafka->probe.thread, NULL);
    }
    kafka_wakeup_close(&kafka->probe.wakeup);
    /* Lookup threads use the producer: wait for them, then drop their results. */
    pthread_mutex_lock(&kafka->lookup_lock);
    while (kafka->lookups_running > 0)
        pthread_cond_wait(&kafka->lookup_idle, &kafka->lookup_lock);
    struct kafka_lookup *lookup = kafka->lookups_done;
    kafka->lookups_done = NULL;
    pthread_mutex_unlock(&kafka->lookup_lock);
    while (lookup) {
        struct kafka_lookup *next = lookup->next;
        kafka_lookup_free(lookup);
        lookup = next;
    }
    kafka_wakeup_close(&kafka->lookup_wakeup);
    /* Consumers still open at shutdown: close synchronously (commits stored offsets). */
    while (kafka->consumers) {
        struct kafka_consumer *consumer = kafka->consumers;
        if (!consumer->closing || consumer->close_deferred) {
            rd_kafka_queue_io_event_enable(consumer->queue, -1, NULL, 0);
            rd_kafka_resp_err_t err = rd_kafka_consumer_close(consumer->rk);
            if (err)
                log_warn("kafka", "consumer %s: close: %s", consumer->group_id,
                         rd_kafka_err2str(err));
        } else {
            rd_kafka_queue_io_event_enable(consumer->close_queue, -1, NULL, 0);
            while (!rd_kafka_consumer_closed(consumer->rk)) {
                rd_kafka_event_t *event = rd_kafka_queue_poll(consumer->close_queue, 100);
                if (!event)
                    continue;
                if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE)
                    kafka_apply_rebalance(consumer->rk, rd_kafka_event_error(event),
                                          rd_kafka_event_topic_partition_list(event));
                rd_kafka_event_destroy(event);
            }
        }
        kafka_consumer_free(consumer, false);
    }
    if (kafka->producer) {
        rd_kafka_queue_io_event_enable(kafka->producer_queue, -1, NULL, 0);
        rd_kafka_queue_destroy(kafka->producer_queue);
        int left = rd_kafka_outq_len(kafka->producer);
        if (left > 0)
            log_warn("kafka",
                     "%d record(s) still unconfirmed at shutdown; their clients were "
                     "never told they were stored",
                     left);
        kafka->destroying = true;
        rd_kafka_purge(kafka->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        kafka_producer_drain(kafka); /* frees the purged records' delivery state */
        rd_kafka_destroy(kafka->producer);
    }
    kafka_wakeup_close(&kafka->producer_wakeup);
    kafka_mock_stop(kafka->mock);
    pthread_mutex_destroy(&kafka->probe.lock);
    pthread_mutex_destroy(&kafka->lookup_lock);
    pthread_cond_destroy(&kafka->lookup_idle);
    while (kafka->forgetting) /* consumers freed above left theirs */
        kafka_forgetting_remove(kafka, kafka->forgetting->group_id);
    pthread_cond_destroy(&kafka->probe.cond);
    free(kafka->bootstrap);
    free(kafka);
}
