/* SPDX-License-Identifier: Apache-2.0 */
/* kafka_consumer.c -- consumers (kafka.h "consumers"): group members and
 * assign-only readers, their rebalances, the records they fetch, and their
 * closing.
 *
 * Each consumer's queue wakes the loop through its own pipe; a wake-up hands
 * out at most kafka->drain_budget records (or events) and, when more are
 * waiting, runs again on the next loop iteration (kafka_wakeup_again), so
 * one busy partition does not hold every client up.
 *
 * Closing never blocks the loop: rd_kafka_consumer_close_queue() runs the
 * leave and the commit in the background with its events served on the
 * loop; the final rd_kafka_destroy() is a worker job
 * (kafka_consumer_destroy_work). A durable subscription's forget
 * (kafka_consumer_close_forget) starts as a lookup job once the consumer
 * has left its group.
 *
 * Owns: every struct kafka_consumer (kafka->consumers) and its handle,
 * queues and wake-up; the records it hands out belong to the handler. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "kafka_internal.h"
#include "log.h"

/* fetch.wait.max.ms (KAFKA_FETCH_WAIT_MAX_MS, kafka_internal.h): a paused
 * partition is left out of the fetch request in flight; once resumed it
 * waits for that request to come back, which the broker may hold
 * fetch.wait.max.ms when it has nothing for the others (librdkafka's
 * default, 500 ms, would cap a queue that pauses and resumes at
 * max_in_flight messages a second). Configurable under kafka.consumer. */

/* ---- records ---------------------------------------------------------------- */

/* The bit of a header name in kafka_record.header_names (FNV-1a, 64 bits). */
static uint64_t kafka_header_name_bit(const char *name)
{
    uint64_t hash = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        hash = (hash ^ *p) * 1099511628211ULL;
    return 1ULL << (hash >> 58);
}

/* Parse the headers once, when the record is made: every lookup after this
 * (the queue engine's group and expiry, request-reply, the adapter's
 * delivery) reads the list without asking librdkafka again, and a name the
 * record does not have is mostly answered by header_names alone
 * (architecture "Data path of a delivery"). */
static void kafka_record_index_headers(struct kafka_record *record, rd_kafka_headers_t *headers)
{
    record->headers = headers;
    record->header_count = headers ? rd_kafka_header_cnt(headers) : 0;
    record->header_names = 0;
    for (size_t i = 0; i < record->header_count; i++) {
        const char *name;
        const void *value;
        size_t len;
        if (rd_kafka_header_get_all(headers, i, &name, &value, &len) == RD_KAFKA_RESP_ERR_NO_ERROR)
            record->header_names |= kafka_header_name_bit(name);
    }
}

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
    record->local_headers = NULL;
    rd_kafka_headers_t *headers = NULL;
    if (rd_kafka_message_headers(message, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR)
        headers = NULL; /* none (or unparsable: as before, read as none) */
    kafka_record_index_headers(record, headers);
    return record;
}

struct kafka_record *kafka_record_local(const char *topic, const void *key, size_t key_len,
                                        const void *value, size_t value_len,
                                        const struct kafka_header *headers, size_t header_count)
{
    size_t topic_len = strlen(topic);
    struct kafka_record *record = malloc(sizeof(*record) + topic_len + 1 + key_len + value_len);
    rd_kafka_headers_t *list = rd_kafka_headers_new(header_count);
    if (!record || !list) {
        free(record);
        if (list)
            rd_kafka_headers_destroy(list);
        return NULL;
    }
    char *copy = (char *)(record + 1);
    memcpy(copy, topic, topic_len + 1);
    record->topic = copy;
    copy += topic_len + 1;
    record->key = key ? memcpy(copy, key, key_len) : NULL;
    record->key_len = key ? key_len : 0;
    copy += record->key_len;
    record->value = value ? memcpy(copy, value, value_len) : NULL;
    record->value_len = value ? value_len : 0;
    record->partition = -1;
    record->offset = -1;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    record->timestamp_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    for (size_t i = 0; i < header_count; i++) {
        if (rd_kafka_header_add(list, headers[i].name, -1, headers[i].value,
                                headers[i].value ? (ssize_t)headers[i].value_len : 0) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_headers_destroy(list);
            free(record);
            return NULL;
        }
    }
    record->impl = NULL;
    record->local_headers = list;
    kafka_record_index_headers(record, list);
    return record;
}

size_t kafka_record_header_count(const struct kafka_record *record) { return record->header_count; }

int kafka_record_header(const struct kafka_record *record, size_t index, const char **name,
                        const void **value, size_t *value_len)
{
    if (index >= record->header_count ||
        rd_kafka_header_get_all(record->headers, index, name, value, value_len) !=
            RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    return 0;
}

bool kafka_record_may_have_header(const struct kafka_record *record, const char *name)
{
    return (record->header_names & kafka_header_name_bit(name)) != 0;
}

const void *kafka_record_header_find(const struct kafka_record *record, const char *name,
                                     size_t *value_len)
{
    if (!kafka_record_may_have_header(record, name))
        return NULL;
    for (size_t i = 0; i < record->header_count; i++) {
        const char *header;
        const void *value;
        if (rd_kafka_header_get_all(record->headers, i, &header, &value, value_len) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            strcmp(header, name) == 0)
            return value;
    }
    return NULL;
}

void kafka_record_free(struct kafka_record *record)
{
    if (!record)
        return;
    if (record->impl)
        rd_kafka_message_destroy(record->impl);
    else
        rd_kafka_headers_destroy(record->local_headers);
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

/* The final rd_kafka_destroy of a closed consumer: a worker job. */
struct kafka_destroy_job {
    struct kafka *kafka;
    rd_kafka_t *rk; /* NULL once destroyed */
};

static void kafka_consumer_destroy_work(void *arg)
{
    struct kafka_destroy_job *job = arg;
    rd_kafka_destroy(job->rk);
    job->rk = NULL;
}

static void kafka_consumer_destroy_done(void *arg, bool cancelled)
{
    (void)cancelled;
    struct kafka_destroy_job *job = arg;
    kafka_job_finished(job->kafka);
    if (job->rk) /* the pool was freed before it ran: shutdown, blocking is fine */
        rd_kafka_destroy(job->rk);
    free(job);
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

/* Release everything; `destroy_async` hands rd_kafka_destroy to the worker pool. */
static void kafka_consumer_free(struct kafka_consumer *consumer, bool destroy_async)
{
    kafka_consumer_unlink(consumer);
    if (consumer->forget) { /* never started (close failed, or shutdown) */
        log_warn("kafka",
                 "group %s: its position was not forgotten (the consumer did not close in "
                 "time); a durable subscription of this name will resume where it was",
                 consumer->group_id);
        kafka_lookup_free(consumer->forget);
        kafka_forgetting_remove(consumer->kafka, consumer->group_id);
        consumer->forget = NULL;
    }
    kafka_wakeup_close(&consumer->wakeup);
    if (consumer->close_queue)
        rd_kafka_queue_destroy(consumer->close_queue);
    if (consumer->queue)
        rd_kafka_queue_destroy(consumer->queue);
    if (consumer->rk) {
        struct kafka_destroy_job *job = destroy_async ? malloc(sizeof(*job)) : NULL;
        if (job) {
            job->kafka = consumer->kafka;
            job->rk = consumer->rk;
        }
        if (!job || kafka_submit(consumer->kafka, kafka_consumer_destroy_work,
                                 kafka_consumer_destroy_done, job) < 0) {
            free(job);
            rd_kafka_destroy(consumer->rk); /* quick once closed; only on allocation failure */
        }
    }
    free(consumer->group_id);
    free(consumer);
}

static void kafka_consumer_drain_close(struct kafka_consumer *consumer)
{
    rd_kafka_event_t *event;
    unsigned budget = consumer->kafka->drain_budget;
    while ((event = rd_kafka_queue_poll(consumer->close_queue, 0))) {
        if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE)
            kafka_apply_rebalance(consumer->rk, rd_kafka_event_error(event),
                                  rd_kafka_event_topic_partition_list(event));
        rd_kafka_event_destroy(event);
        if (--budget == 0) {
            kafka_wakeup_again(&consumer->wakeup); /* the rest next iteration */
            return;
        }
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
                kafka_lookup_free(forget);
                kafka_forgetting_remove(consumer->kafka, consumer->group_id);
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
    unsigned budget = consumer->kafka->drain_budget;
    while (!consumer->closing) {
        if (budget-- == 0) {
            kafka_wakeup_again(&consumer->wakeup); /* the rest next iteration */
            return;
        }
        if (!(message = rd_kafka_consumer_poll(consumer->rk, 0)))
            break;
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
        kafka_conf_set(conf, "kafka.consumer", "fetch.wait.max.ms",
                       kafka->late_fetch_answers ? KAFKA_FETCH_WAIT_MAX_MS_MOCK
                                                 : KAFKA_FETCH_WAIT_MAX_MS,
                       err, err_size) < 0 ||
        kafka_conf_apply(conf, "kafka.consumer", &kafka->config->kafka.consumer, err, err_size) <
            0 ||
        /* after the config, so nothing overrides it (kafka_check_contract) */
        kafka_conf_set(conf, "kafka.consumer", "enable.auto.offset.store", "false", err, err_size) <
            0 ||
        kafka_conf_set(conf, "kafka.consumer", "isolation.level", "read_committed", err, err_size) <
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

int kafka_consumer_store_offsets(struct kafka_consumer *consumer,
                                 struct kafka_partition_offset *offsets, size_t count)
{
    if (count == 0)
        return 0;
    /* A new list each time: librdkafka caches the partition it resolved in a
     * list entry, so a reused list would store into the first one. */
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)count);
    for (size_t i = 0; i < count; i++)
        rd_kafka_topic_partition_list_add(list, offsets[i].topic, offsets[i].partition)->offset =
            offsets[i].offset;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(consumer->rk, list);
    int first = 0;
    for (size_t i = 0; i < count; i++) {
        offsets[i].err = (int)(list->elems[i].err ? list->elems[i].err : err);
        if (!offsets[i].err)
            continue;
        log_debug("kafka", "consumer %s: store offset %lld for %s [%d]: %s", consumer->group_id,
                  (long long)offsets[i].offset, offsets[i].topic, offsets[i].partition,
                  rd_kafka_err2name((rd_kafka_resp_err_t)offsets[i].err));
        if (!first)
            first = offsets[i].err;
    }
    rd_kafka_topic_partition_list_destroy(list);
    return first;
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

int64_t kafka_consumer_high_watermark(struct kafka_consumer *consumer, const char *topic,
                                      int32_t partition)
{
    int64_t low = -1, high = -1;
    if (rd_kafka_get_watermark_offsets(consumer->rk, topic, partition, &low, &high) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        high < 0)
        return -1;
    return high;
}

int64_t kafka_consumer_position(struct kafka_consumer *consumer, const char *topic,
                                int32_t partition)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic, partition);
    int64_t position = -1;
    if (rd_kafka_position(consumer->rk, list) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        list->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && list->elems[0].offset >= 0)
        position = list->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(list);
    return position;
}

int kafka_consumer_pause(struct kafka_consumer *consumer, const char *topic, int32_t partition)
{
    return kafka_consumer_pause_resume(consumer, topic, partition, true);
}

int kafka_consumer_pause_many(struct kafka_consumer *consumer, struct kafka_partition_offset *parts,
                              size_t count, bool pause)
{
    if (count == 0)
        return 0;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)count);
    for (size_t i = 0; i < count; i++)
        rd_kafka_topic_partition_list_add(list, parts[i].topic, parts[i].partition);
    /* One synchronous call: librdkafka queues every partition's op, then
     * waits for them all (one wait per call where one call per partition
     * waited once each). */
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(consumer->rk, list)
                                    : rd_kafka_resume_partitions(consumer->rk, list);
    int first = 0;
    size_t seeks = 0;
    for (size_t i = 0; i < count; i++) {
        parts[i].err = (int)(err ? err : list->elems[i].err);
        if (parts[i].err && !first)
            first = parts[i].err;
        if (!pause && !parts[i].err && parts[i].offset >= 0)
            seeks++;
    }
    rd_kafka_topic_partition_list_destroy(list);
    if (seeks == 0)
        return first;
    /* The async seek of kafka_consumer_resume, for all of them at once. */
    list = rd_kafka_topic_partition_list_new((int)seeks);
    for (size_t i = 0; i < count; i++)
        if (!parts[i].err && parts[i].offset >= 0)
            rd_kafka_topic_partition_list_add(list, parts[i].topic, parts[i].partition)->offset =
                parts[i].offset;
    rd_kafka_error_t *error = rd_kafka_seek_partitions(consumer->rk, list, 0);
    rd_kafka_topic_partition_list_destroy(list);
    if (error) {
        log_debug("kafka", "consumer %s: seek %zu partition(s) on resume: %s", consumer->group_id,
                  seeks, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    return first;
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
                 kafka_conf_set(conf, "kafka.consumer", "isolation.level", "read_committed", err,
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
    lookup->cancelled = true;        /* nobody to tell */
    entry->next = kafka->forgetting; /* anchors of this group wait for it */
    kafka->forgetting = entry;
    consumer->forget = lookup;
    kafka_consumer_close(consumer);
    return 0;
}

void kafka_consumers_close_all(struct kafka *kafka)
{
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
}
