/* SPDX-License-Identifier: Apache-2.0 */
/* kafka_producer.c -- the node's one idempotent producer (architecture §4):
 * kafka_produce, delivery reports, the sticky partitioner.
 *
 * Delivery reports come as RD_KAFKA_EVENT_DR events on the producer's main
 * queue (rd_kafka_conf_set_events), one event per batch of records, so that
 * a wake-up can stop in the middle of a batch: kafka_on_producer_wakeup
 * reports at most kafka->drain_budget records (and other events), keeps the
 * event it stopped in (kafka->producer_event) and runs again on the next
 * loop iteration (kafka_wakeup_again). Errors on that queue come as
 * RD_KAFKA_EVENT_ERROR events (kafka_on_producer_error).
 *
 * Owns: the producer handle, its main queue and wake-up, and one struct
 * kafka_delivery per record in flight (freed when it is reported). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kafka_internal.h"
#include "log.h"

/* ---- delivery reports and errors ---------------------------------------- */

static void kafka_on_delivery(struct kafka *kafka, const rd_kafka_message_t *message)
{
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

/* An error event of the producer (the event API has already turned
 * __FATAL into the underlying cause). */
static void kafka_on_producer_error(struct kafka *kafka, rd_kafka_event_t *event)
{
    (*kafka->errors)++;
    rd_kafka_resp_err_t err = rd_kafka_event_error(event);
    const char *reason = rd_kafka_event_error_string(event);
    if (rd_kafka_event_error_is_fatal(event)) {
        log_error("kafka", "%s: fatal error %s: %s", rd_kafka_name(kafka->producer),
                  rd_kafka_err2name(err), reason);
        kafka->fatal = true;
        snprintf(kafka->reason, sizeof(kafka->reason), "producer fatal error: %s", reason);
        kafka_update_ready(kafka);
        return;
    }
    log_warn("kafka", "%s: %s: %s", rd_kafka_name(kafka->producer), rd_kafka_err2name(err), reason);
}

/* Serve one event: up to `budget` of its records when it is a delivery
 * report. Returns what was used of the budget; the event is kept in
 * kafka->producer_event when records are left in it. */
static unsigned kafka_producer_serve(struct kafka *kafka, rd_kafka_event_t *event, unsigned budget)
{
    unsigned used = 0;
    if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_DR) {
        while (used < budget && kafka->producer_event_left > 0) {
            const rd_kafka_message_t *message = rd_kafka_event_message_next(event);
            if (!message) {
                kafka->producer_event_left = 0;
                break;
            }
            kafka_on_delivery(kafka, message);
            kafka->producer_event_left--;
            used++;
        }
        if (kafka->producer_event_left > 0) {
            kafka->producer_event = event;
            return used;
        }
    } else if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_ERROR) {
        kafka_on_producer_error(kafka, event);
        used = 1;
    } else {
        used = 1; /* nothing else is enabled; ignore */
    }
    kafka->producer_event = NULL;
    kafka->producer_event_left = 0;
    rd_kafka_event_destroy(event);
    return used ? used : 1;
}

/* Serve at most `budget` records/events. True when some are left. */
static bool kafka_producer_drain(struct kafka *kafka, unsigned budget)
{
    unsigned used = 0;
    while (used < budget) {
        rd_kafka_event_t *event = kafka->producer_event;
        if (!event) {
            event = rd_kafka_queue_poll(kafka->producer_queue, 0);
            if (!event)
                return false;
            kafka->producer_event_left = rd_kafka_event_type(event) == RD_KAFKA_EVENT_DR
                                             ? (int)rd_kafka_event_message_count(event)
                                             : 0;
        }
        used += kafka_producer_serve(kafka, event, budget - used);
    }
    return kafka->producer_event != NULL || rd_kafka_queue_length(kafka->producer_queue) > 0;
}

void kafka_producer_drain_all(struct kafka *kafka)
{
    while (kafka_producer_drain(kafka, 1u << 30)) {
    }
}

static void kafka_on_producer_wakeup(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct kafka *kafka = arg;
    kafka_wakeup_consume(&kafka->producer_wakeup);
    if (kafka_producer_drain(kafka, kafka->drain_budget))
        kafka_wakeup_again(&kafka->producer_wakeup);
}

/* ---- partitioner ---------------------------------------------------------- */

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
int32_t kafka_partition(const rd_kafka_topic_t *topic, const void *key, size_t key_len,
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
int kafka_producer_partitioner(struct kafka *kafka, rd_kafka_conf_t *conf, char *err,
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

int kafka_producer_create(struct kafka *kafka, char *err, size_t err_size)
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
    if (!kafka_config_property(&config->kafka.producer, "linger.ms") &&
        !kafka_config_property(&config->kafka.properties, "linger.ms") &&
        !kafka_config_property(&config->kafka.producer, "queue.buffering.max.ms") &&
        !kafka_config_property(&config->kafka.properties, "queue.buffering.max.ms") &&
        kafka_conf_set(conf, "kafka.producer", "linger.ms", KAFKA_PRODUCER_LINGER_MS, err,
                       err_size) < 0)
        goto fail;
    if (kafka_conf_apply(conf, "kafka.producer", &config->kafka.producer, err, err_size) < 0)
        goto fail;
    /* The contract (architecture §4), set last so nothing overrides it; a config
     * that tries is refused by kafka_check_contract. */
    if (kafka_conf_set(conf, "kafka.producer", "enable.idempotence", "true", err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka.producer", "acks", "all", err, err_size) < 0)
        goto fail;
    if (kafka_producer_partitioner(kafka, conf, err, err_size) < 0)
        goto fail;
    /* Delivery reports and errors as events (served with a budget); the
     * error callback only makes librdkafka queue errors as events. */
    rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR);
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

int kafka_producer_property(const struct kafka *kafka, const char *name, char *value, size_t size)
{
    size_t room = size;
    return kafka->producer && rd_kafka_conf_get(rd_kafka_conf(kafka->producer), name, value,
                                                &room) == RD_KAFKA_CONF_OK
               ? 0
               : -1;
}

int kafka_produce_on(rd_kafka_t *rk, const char *topic, int32_t partition, const void *key,
                     size_t key_len, const void *value, size_t value_len,
                     const struct kafka_header *headers, size_t header_count,
                     struct kafka_delivery *delivery)
{
    rd_kafka_headers_t *kafka_headers = NULL;
    if (header_count > 0) {
        kafka_headers = rd_kafka_headers_new(header_count);
        for (size_t i = 0; i < header_count; i++)
            rd_kafka_header_add(kafka_headers, headers[i].name, -1, headers[i].value,
                                (ssize_t)headers[i].value_len);
    }
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(kafka_headers), RD_KAFKA_V_OPAQUE(delivery), RD_KAFKA_V_END);
    if (err && kafka_headers)
        rd_kafka_headers_destroy(kafka_headers); /* librdkafka owns them only when queued */
    return (int)err;
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
    int err = kafka_produce_on(kafka->producer, topic, partition, key, key_len, value, value_len,
                               headers, header_count, delivery);
    if (err) {
        free(delivery);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            (*kafka->delivery_errors)++;
        return err;
    }
    (*kafka->produced)++;
    return KAFKA_OK;
}

/* Records in librdkafka plus those of a report batch not yet served. */
int kafka_unconfirmed(const struct kafka *kafka)
{
    return rd_kafka_outq_len(kafka->producer) + kafka->producer_event_left;
}

void kafka_producer_destroy(struct kafka *kafka)
{
    if (!kafka->producer)
        return;
    rd_kafka_queue_io_event_enable(kafka->producer_queue, -1, NULL, 0);
    int left = kafka_unconfirmed(kafka);
    if (left > 0)
        log_warn("kafka",
                 "%d record(s) still unconfirmed at shutdown; their clients were "
                 "never told they were stored",
                 left);
    kafka->destroying = true;
    rd_kafka_purge(kafka->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    kafka_producer_drain_all(kafka); /* frees the purged records' delivery state */
    rd_kafka_queue_destroy(kafka->producer_queue);
    kafka->producer_queue = NULL;
    rd_kafka_destroy(kafka->producer);
    kafka->producer = NULL;
}
