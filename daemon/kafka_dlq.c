/* SPDX-License-Identifier: Apache-2.0 */
/* kafka_dlq.c -- peek, redrive and discard of a dead-letter topic through
 * its own never-joined consumer group (kafka_dlq.h, architecture §9 "Dead
 * letters").
 *
 * Every batch is one worker job (kafka_submit) that touches only the
 * struct kafka_dlq (the loop leaves it alone while a job runs) and
 * short-lived librdkafka handles made from config templates built on the
 * loop: a consumer of the DLQ group (assign, never subscribe: nothing
 * joins the group, rd_kafka_committed and rd_kafka_commit go to the
 * coordinator as a simple consumer's would) and, for a redrive, an
 * idempotent producer (acks=all) flushed before anything is committed.
 * Partitions are read one after the other, each from the group's committed
 * offset (the log start when none) up to the end offset taken when the
 * operation started, so "all" means what was there at the start and a
 * count means the first N in partition order.
 *
 * Owns: the struct kafka_dlq and its copies of the caller's inputs, the
 * config templates, the records a peek read. */
#include "kafka_dlq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "kafka_internal.h"
#include "log.h"
#include "record.h"

#define KAFKA_DLQ_TIMEOUT_MS 10000
/* A partition that yields nothing for this long while records are due: the
 * batch stops with an error (a broker gone, a topic deleted). */
#define KAFKA_DLQ_STALL_MS 20000
#define KAFKA_DLQ_FLUSH_MS 60000 /* > the producer's message.timeout.ms below */

struct kafka_dlq_peeked {
    struct kafka_dlq_record record;
    void *key, *value;
    struct kafka_header *headers;
};

struct kafka_dlq {
    struct kafka *kafka;
    enum kafka_dlq_action action;
    char *group_id, *topic, *destination, *fallback;
    char **allowed;
    size_t allowed_count;
    uint64_t left; /* records still to do; UINT64_MAX: all */
    size_t batch;
    kafka_dlq_fn done;
    void *opaque;
    rd_kafka_conf_t *consumer_conf, *producer_conf; /* templates, duplicated per job */
    bool running;
    /* the snapshot, taken by the first job */
    bool started;
    int32_t partition_count;
    int64_t *ends; /* [partition_count] */
    struct kafka_dlq_progress progress;
    /* one job's result */
    int err;
    char reason[1024];
    bool finished;
    struct kafka_dlq_peeked *peeked;
    size_t peeked_count;
    struct kafka_dlq_record *records; /* the peeked records as handed to the owner */
    /* delivery reports of the job's producer (its flush calls them here) */
    uint64_t delivered, failed;
    rd_kafka_resp_err_t first_failure;
};

const char *kafka_redrive_header_name(const char *name)
{
    static const struct {
        const char *from, *to;
    } renamed[] = {
        {RECORD_DLQ_REASON, RECORD_REDRIVE_REASON},
        {RECORD_DLQ_ORIGINAL_TOPIC, RECORD_REDRIVE_ORIGINAL_TOPIC},
        {RECORD_DLQ_ORIGINAL_PARTITION, RECORD_REDRIVE_ORIGINAL_PARTITION},
        {RECORD_DLQ_ORIGINAL_OFFSET, RECORD_REDRIVE_ORIGINAL_OFFSET},
        {RECORD_DLQ_TIME, RECORD_REDRIVE_DEAD_LETTERED_AT},
    };
    for (size_t i = 0; i < sizeof(renamed) / sizeof(renamed[0]); i++)
        if (strcmp(name, renamed[i].from) == 0)
            return renamed[i].to;
    if (strcmp(name, RECORD_DELIVERY_COUNT) == 0 ||
        strncmp(name, RECORD_DLQ_PREFIX, strlen(RECORD_DLQ_PREFIX)) == 0 ||
        strncmp(name, RECORD_REDRIVE_PREFIX, strlen(RECORD_REDRIVE_PREFIX)) == 0)
        return NULL;
    return name;
}

static void kafka_dlq_peeked_free(struct kafka_dlq *dlq)
{
    for (size_t i = 0; i < dlq->peeked_count; i++) {
        struct kafka_dlq_peeked *p = &dlq->peeked[i];
        for (size_t h = 0; h < p->record.header_count; h++) {
            free((char *)p->headers[h].name);
            free((void *)p->headers[h].value);
        }
        free(p->headers);
        free(p->key);
        free(p->value);
    }
    free(dlq->peeked);
    free(dlq->records);
    dlq->peeked = NULL;
    dlq->records = NULL;
    dlq->peeked_count = 0;
}

void kafka_dlq_free(struct kafka_dlq *dlq)
{
    if (!dlq)
        return;
    kafka_dlq_peeked_free(dlq);
    free(dlq->group_id);
    free(dlq->topic);
    free(dlq->destination);
    free(dlq->fallback);
    for (size_t i = 0; i < dlq->allowed_count; i++)
        free(dlq->allowed[i]);
    free(dlq->allowed);
    free(dlq->ends);
    if (dlq->consumer_conf)
        rd_kafka_conf_destroy(dlq->consumer_conf);
    if (dlq->producer_conf)
        rd_kafka_conf_destroy(dlq->producer_conf);
    free(dlq);
}

static void kafka_dlq_fail(struct kafka_dlq *dlq, int err, const char *fmt, const char *what)
{
    if (dlq->err)
        return; /* the first reason stands */
    dlq->err = err ? err : RD_KAFKA_RESP_ERR__FAIL;
    snprintf(dlq->reason, sizeof(dlq->reason), fmt, what);
}

/* ---- the worker side ------------------------------------------------------- */

/* The topic's partitions and end offsets (worker). A missing topic has
 * none: nothing was dead-lettered yet. */
static void kafka_dlq_snapshot(struct kafka_dlq *dlq)
{
    rd_kafka_t *rk = dlq->kafka->producer;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, dlq->topic, NULL);
    const struct rd_kafka_metadata *metadata = NULL;
    rd_kafka_resp_err_t err = rkt ? rd_kafka_metadata(rk, 0, rkt, &metadata, KAFKA_DLQ_TIMEOUT_MS)
                                  : RD_KAFKA_RESP_ERR__FAIL;
    if (!err && metadata->topic_cnt == 1 && !metadata->topics[0].err &&
        metadata->topics[0].partition_cnt > 0) {
        const rd_kafka_metadata_topic_t *meta = &metadata->topics[0];
        dlq->ends = calloc((size_t)meta->partition_cnt, sizeof(*dlq->ends));
        if (!dlq->ends)
            err = RD_KAFKA_RESP_ERR__FAIL;
        for (int i = 0; !err && i < meta->partition_cnt; i++) {
            int64_t low = 0, high = 0;
            int32_t id = meta->partitions[i].id;
            err = rd_kafka_query_watermark_offsets(rk, dlq->topic, id, &low, &high,
                                                   KAFKA_DLQ_TIMEOUT_MS);
            if (!err && id >= 0 && id < meta->partition_cnt)
                dlq->ends[id] = high;
        }
        if (!err)
            dlq->partition_count = meta->partition_cnt;
    }
    if (err)
        kafka_dlq_fail(dlq, err, "cannot read the end offsets of %s", dlq->topic);
    if (metadata)
        rd_kafka_metadata_destroy(metadata);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
}

/* Where each partition starts: the group's committed offset, else the log
 * start. Fills starts[partition_count]. */
static void kafka_dlq_starts(struct kafka_dlq *dlq, rd_kafka_t *consumer, int64_t *starts)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(dlq->partition_count);
    for (int32_t p = 0; p < dlq->partition_count; p++)
        rd_kafka_topic_partition_list_add(list, dlq->topic, p);
    rd_kafka_resp_err_t err = rd_kafka_committed(consumer, list, KAFKA_DLQ_TIMEOUT_MS);
    for (int i = 0; !err && i < list->cnt; i++) {
        int32_t p = list->elems[i].partition;
        int64_t low = 0, high = 0;
        int64_t committed = list->elems[i].err ? -1 : list->elems[i].offset;
        err = rd_kafka_query_watermark_offsets(dlq->kafka->producer, dlq->topic, p, &low, &high,
                                               KAFKA_DLQ_TIMEOUT_MS);
        starts[p] = committed > low ? committed : low;
    }
    if (err)
        kafka_dlq_fail(dlq, err, "cannot read the committed offsets of group %s", dlq->group_id);
    rd_kafka_topic_partition_list_destroy(list);
}

static void kafka_dlq_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque)
{
    (void)rk;
    (void)opaque;
    struct kafka_dlq *dlq = message->_private;
    if (!dlq)
        return;
    if (message->err) {
        if (dlq->failed++ == 0)
            dlq->first_failure = message->err;
    } else {
        dlq->delivered++;
    }
}

static bool kafka_dlq_allowed(const struct kafka_dlq *dlq, const char *topic)
{
    for (size_t i = 0; i < dlq->allowed_count; i++)
        if (strcmp(dlq->allowed[i], topic) == 0)
            return true;
    return false;
}

static rd_kafka_resp_err_t kafka_dlq_header_add(rd_kafka_headers_t *headers, const char *name,
                                                const char *text)
{
    return rd_kafka_header_add(headers, name, -1, text, (ssize_t)strlen(text));
}

/* Re-publish one dead letter (worker): same key and value, the headers of
 * kafka_redrive_header_name plus where it came from. 0, or -1 with the
 * error set. */
static int kafka_dlq_produce(struct kafka_dlq *dlq, rd_kafka_t *producer,
                             const rd_kafka_message_t *message)
{
    rd_kafka_headers_t *in = NULL;
    if (rd_kafka_message_headers(message, &in) != RD_KAFKA_RESP_ERR_NO_ERROR)
        in = NULL;
    size_t in_count = in ? rd_kafka_header_cnt(in) : 0;
    rd_kafka_headers_t *out = rd_kafka_headers_new(in_count + 8);
    char original[256] = ""; /* a Kafka topic name is at most 249 bytes */
    unsigned long long redrives = 0;
    for (size_t i = 0; i < in_count; i++) {
        const char *name;
        const void *value;
        size_t size;
        if (rd_kafka_header_get_all(in, i, &name, &value, &size))
            continue;
        if (strcmp(name, RECORD_DLQ_ORIGINAL_TOPIC) == 0 && value && size < sizeof(original)) {
            memcpy(original, value, size);
            original[size] = '\0';
        }
        if (strcmp(name, RECORD_REDRIVE_COUNT) == 0 && value && size < 20) {
            char text[21];
            memcpy(text, value, size);
            text[size] = '\0';
            redrives = strtoull(text, NULL, 10);
        }
        const char *kept = kafka_redrive_header_name(name);
        if (kept)
            rd_kafka_header_add(out, kept, -1, value, value ? (ssize_t)size : 0);
    }
    char partition[16], offset[24], now[24], count[24];
    snprintf(partition, sizeof(partition), "%d", (int)message->partition);
    snprintf(offset, sizeof(offset), "%lld", (long long)message->offset);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)clock_wall_ms());
    snprintf(count, sizeof(count), "%llu", redrives + 1);
    kafka_dlq_header_add(out, RECORD_REDRIVE_FROM_TOPIC, dlq->topic);
    kafka_dlq_header_add(out, RECORD_REDRIVE_FROM_PARTITION, partition);
    kafka_dlq_header_add(out, RECORD_REDRIVE_FROM_OFFSET, offset);
    kafka_dlq_header_add(out, RECORD_REDRIVE_TIME, now);
    kafka_dlq_header_add(out, RECORD_REDRIVE_COUNT, count);
    const char *topic = dlq->destination;
    bool to_original = false;
    if (!topic) {
        to_original = original[0] && kafka_dlq_allowed(dlq, original);
        topic = to_original ? original : dlq->fallback;
    }
    rd_kafka_resp_err_t err;
    for (;;) {
        err = rd_kafka_producev(
            producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(message->key, message->key ? message->key_len : 0),
            RD_KAFKA_V_VALUE(message->payload, message->payload ? message->len : 0),
            RD_KAFKA_V_HEADERS(out), RD_KAFKA_V_OPAQUE(dlq), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(producer, 100); /* room frees as deliveries are reported */
    }
    if (err) {
        rd_kafka_headers_destroy(out);
        kafka_dlq_fail(dlq, err, "cannot re-publish a dead letter to %s", topic);
        return -1;
    }
    if (to_original)
        dlq->progress.to_original++;
    else if (!dlq->destination)
        dlq->progress.to_fallback++;
    return 0;
}

static char *kafka_dlq_dup(const void *data, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy) {
        if (len)
            memcpy(copy, data, len);
        copy[len] = '\0';
    }
    return copy;
}

/* Keep a copy of one record for a peek (worker). */
static int kafka_dlq_keep(struct kafka_dlq *dlq, const rd_kafka_message_t *message)
{
    struct kafka_dlq_peeked *grown =
        realloc(dlq->peeked, (dlq->peeked_count + 1) * sizeof(*dlq->peeked));
    if (!grown)
        return -1;
    dlq->peeked = grown;
    struct kafka_dlq_peeked *p = &dlq->peeked[dlq->peeked_count];
    memset(p, 0, sizeof(*p));
    rd_kafka_timestamp_type_t type;
    p->record.partition = message->partition;
    p->record.offset = message->offset;
    p->record.timestamp = rd_kafka_message_timestamp(message, &type);
    if (message->key && !(p->key = kafka_dlq_dup(message->key, message->key_len)))
        return -1;
    p->record.key = p->key;
    p->record.key_len = message->key ? message->key_len : 0;
    if (message->payload && !(p->value = kafka_dlq_dup(message->payload, message->len))) {
        free(p->key);
        return -1;
    }
    p->record.value = p->value;
    p->record.value_len = message->payload ? message->len : 0;
    rd_kafka_headers_t *in = NULL;
    if (rd_kafka_message_headers(message, &in) != RD_KAFKA_RESP_ERR_NO_ERROR)
        in = NULL;
    size_t count = in ? rd_kafka_header_cnt(in) : 0;
    p->headers = calloc(count ? count : 1, sizeof(*p->headers));
    if (!p->headers) {
        free(p->key);
        free(p->value);
        return -1;
    }
    dlq->peeked_count++; /* from here kafka_dlq_peeked_free frees what is set */
    for (size_t i = 0; i < count; i++) {
        const char *name;
        const void *value;
        size_t size;
        if (rd_kafka_header_get_all(in, i, &name, &value, &size))
            continue;
        struct kafka_header *h = &p->headers[p->record.header_count];
        h->name = kafka_dlq_dup(name, strlen(name));
        h->value = value ? kafka_dlq_dup(value, size) : NULL;
        h->value_len = value ? size : 0;
        if (!h->name || (value && !h->value)) {
            free((char *)h->name);
            free((void *)h->value);
            return -1;
        }
        p->record.header_count++;
    }
    p->record.headers = p->headers;
    return 0;
}

/* Read partition `p` from starts[p] up to the snapshot's end or until
 * *budget runs out, handing each record to a peek or a redrive; *next is
 * the offset after the last one handled (what the group may commit). */
static void kafka_dlq_read(struct kafka_dlq *dlq, rd_kafka_t *consumer, rd_kafka_t *producer,
                           int32_t p, int64_t start, uint64_t *budget, int64_t *next)
{
    int64_t end = dlq->ends[p];
    *next = start;
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(assign, dlq->topic, p)->offset = start;
    rd_kafka_resp_err_t err = rd_kafka_assign(consumer, assign);
    rd_kafka_topic_partition_list_destroy(assign);
    if (err) {
        kafka_dlq_fail(dlq, err, "cannot read %s", dlq->topic);
        return;
    }
    uint64_t last_progress = clock_monotonic_ms();
    for (;;) {
        bool due = *next < end;
        if (!due || *budget == 0 || dlq->err)
            break;
        rd_kafka_message_t *message = rd_kafka_consumer_poll(consumer, 100);
        if (!message) {
            if (clock_monotonic_ms() - last_progress > KAFKA_DLQ_STALL_MS)
                kafka_dlq_fail(dlq, RD_KAFKA_RESP_ERR__TIMED_OUT,
                               "reading %s stalled: no record for 20 s before its end", dlq->topic);
            continue;
        }
        if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* Every record before the EOF's offset was handed out: what is
             * left below it are offsets without records (transaction
             * markers), which the group may skip. */
            int64_t reached = message->offset < end ? message->offset : end;
            if (reached > *next)
                *next = reached;
            rd_kafka_message_destroy(message);
            break;
        }
        if (message->err) {
            /* A broker going away and coming back is reported here too: only
             * what will not pass stops the batch (else the stall check does). */
            if (kafka_error_classify(message->err) != KAFKA_CLASS_RETRIABLE)
                kafka_dlq_fail(dlq, message->err, "cannot read %s",
                               rd_kafka_message_errstr(message));
            else
                log_info("kafka", "group %s reading %s: %s (retrying)", dlq->group_id, dlq->topic,
                         rd_kafka_message_errstr(message));
            rd_kafka_message_destroy(message);
            continue;
        }
        last_progress = clock_monotonic_ms();
        if (message->partition != p || message->offset < *next) {
            rd_kafka_message_destroy(message);
            continue;
        }
        if (message->offset >= end) {
            *next = end;
            rd_kafka_message_destroy(message);
            break;
        }
        int rc =
            producer ? kafka_dlq_produce(dlq, producer, message) : kafka_dlq_keep(dlq, message);
        if (rc < 0 && !dlq->err)
            kafka_dlq_fail(dlq, RD_KAFKA_RESP_ERR__FAIL, "out of memory reading %s", dlq->topic);
        if (rc == 0) {
            *next = message->offset + 1;
            (*budget)--;
            dlq->progress.batch_records++;
        }
        rd_kafka_message_destroy(message);
    }
    rd_kafka_assign(consumer, NULL);
}

/* Commit the group at `list`'s offsets (worker). */
static void kafka_dlq_commit(struct kafka_dlq *dlq, rd_kafka_t *consumer,
                             rd_kafka_topic_partition_list_t *list)
{
    if (list->cnt == 0)
        return;
    rd_kafka_resp_err_t err = rd_kafka_commit(consumer, list, 0);
    for (int i = 0; !err && i < list->cnt; i++)
        err = list->elems[i].err;
    if (err)
        kafka_dlq_fail(dlq, err, "cannot commit the offsets of group %s", dlq->group_id);
}

static void kafka_dlq_work(void *arg)
{
    struct kafka_dlq *dlq = arg;
    dlq->progress.batch_records = 0;
    if (!dlq->started)
        kafka_dlq_snapshot(dlq);
    if (dlq->err || dlq->partition_count == 0) {
        dlq->started = true;
        dlq->finished = true;
        return;
    }
    char why[512] = "";
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(dlq->consumer_conf);
    rd_kafka_t *consumer = conf ? rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why)) : NULL;
    if (!consumer) {
        if (conf)
            rd_kafka_conf_destroy(conf);
        kafka_dlq_fail(dlq, RD_KAFKA_RESP_ERR__FAIL, "cannot make a consumer: %s", why);
        dlq->finished = true;
        return;
    }
    int64_t *starts = calloc((size_t)dlq->partition_count, sizeof(*starts));
    rd_kafka_topic_partition_list_t *commit =
        rd_kafka_topic_partition_list_new(dlq->partition_count);
    rd_kafka_t *producer = NULL;
    if (!starts)
        kafka_dlq_fail(dlq, RD_KAFKA_RESP_ERR__FAIL, "out of memory reading %s", dlq->topic);
    else
        kafka_dlq_starts(dlq, consumer, starts);
    if (!dlq->err && !dlq->started) {
        for (int32_t p = 0; p < dlq->partition_count; p++)
            if (dlq->ends[p] > starts[p])
                dlq->progress.depth_before += (uint64_t)(dlq->ends[p] - starts[p]);
        dlq->started = true;
    }
    if (!dlq->err && dlq->action == KAFKA_DLQ_REDRIVE) {
        conf = rd_kafka_conf_dup(dlq->producer_conf);
        producer = conf ? rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why)) : NULL;
        if (!producer) {
            if (conf)
                rd_kafka_conf_destroy(conf);
            kafka_dlq_fail(dlq, RD_KAFKA_RESP_ERR__FAIL, "cannot make a producer: %s", why);
        }
    }
    uint64_t budget = dlq->left;
    if (dlq->action == KAFKA_DLQ_REDRIVE && budget > dlq->batch)
        budget = dlq->batch;
    bool more = false; /* a partition still has records before its end */
    for (int32_t p = 0; !dlq->err && p < dlq->partition_count; p++) {
        if (starts[p] >= dlq->ends[p])
            continue;
        if (budget == 0) {
            more = true;
            break;
        }
        int64_t next = starts[p];
        if (dlq->action == KAFKA_DLQ_DISCARD) {
            uint64_t n = (uint64_t)(dlq->ends[p] - starts[p]);
            if (n > budget)
                n = budget;
            next = starts[p] + (int64_t)n;
            budget -= n;
            dlq->progress.batch_records += n;
        } else {
            kafka_dlq_read(dlq, consumer, producer, p, starts[p], &budget, &next);
        }
        if (next > starts[p])
            rd_kafka_topic_partition_list_add(commit, dlq->topic, p)->offset = next;
        if (next < dlq->ends[p])
            more = true;
    }
    if (producer) {
        /* Nothing is committed before Kafka confirmed every record. */
        rd_kafka_flush(producer, KAFKA_DLQ_FLUSH_MS);
        int left = rd_kafka_outq_len(producer);
        if (!dlq->err && (dlq->failed > 0 || left > 0)) {
            char what[300];
            snprintf(what, sizeof(what), "%llu of %llu re-published records were not confirmed: %s",
                     (unsigned long long)(dlq->failed + (uint64_t)left),
                     (unsigned long long)dlq->progress.batch_records,
                     dlq->failed ? rd_kafka_err2str(dlq->first_failure) : "timed out");
            kafka_dlq_fail(dlq,
                           dlq->failed ? (int)dlq->first_failure : RD_KAFKA_RESP_ERR__TIMED_OUT,
                           "%s; the dead-letter offsets were not moved", what);
        }
        dlq->delivered = dlq->failed = 0;
        if (left > 0) /* not confirmed: dropped (they are redriven again next time) */
            rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_destroy(producer);
    }
    if (!dlq->err && more && commit->cnt == 0 && dlq->action == KAFKA_DLQ_REDRIVE)
        kafka_dlq_fail(dlq, RD_KAFKA_RESP_ERR__FAIL,
                       "no progress reading %s: its log ends before the end offsets it had",
                       dlq->topic);
    if (!dlq->err && dlq->action != KAFKA_DLQ_PEEK)
        kafka_dlq_commit(dlq, consumer, commit);
    if (!dlq->err) {
        dlq->progress.records += dlq->progress.batch_records;
        if (dlq->left != UINT64_MAX)
            dlq->left -= dlq->progress.batch_records;
    }
    dlq->finished = dlq->err || dlq->action != KAFKA_DLQ_REDRIVE || dlq->left == 0 || !more;
    rd_kafka_topic_partition_list_destroy(commit);
    free(starts);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
}

/* ---- the loop side ------------------------------------------------------------ */

static void kafka_dlq_done(void *arg, bool cancelled)
{
    struct kafka_dlq *dlq = arg;
    kafka_job_finished(dlq->kafka);
    dlq->running = false;
    if (cancelled) {
        dlq->err = RD_KAFKA_RESP_ERR__DESTROY;
        snprintf(dlq->reason, sizeof(dlq->reason), "kbridged is shutting down");
        dlq->finished = true;
    }
    dlq->progress.peeked = NULL;
    dlq->progress.peeked_count = 0;
    if (dlq->action == KAFKA_DLQ_PEEK && !dlq->err && dlq->peeked_count > 0) {
        dlq->records = calloc(dlq->peeked_count, sizeof(*dlq->records));
        if (!dlq->records) {
            dlq->err = RD_KAFKA_RESP_ERR__FAIL;
            snprintf(dlq->reason, sizeof(dlq->reason), "out of memory");
        }
        for (size_t i = 0; dlq->records && i < dlq->peeked_count; i++)
            dlq->records[i] = dlq->peeked[i].record;
        dlq->progress.peeked = dlq->records;
        dlq->progress.peeked_count = dlq->records ? dlq->peeked_count : 0;
    }
    dlq->done(dlq->opaque, dlq->err, dlq->err ? dlq->reason : "", &dlq->progress, dlq->finished);
}

int kafka_dlq_next(struct kafka_dlq *dlq)
{
    if (dlq->running || dlq->finished)
        return -1;
    if (kafka_submit(dlq->kafka, kafka_dlq_work, kafka_dlq_done, dlq) < 0)
        return -1;
    dlq->running = true;
    return 0;
}

static rd_kafka_conf_t *kafka_dlq_consumer_conf(struct kafka *kafka, const char *group_id,
                                                char *err, size_t err_size)
{
    rd_kafka_conf_t *conf = kafka_conf_base(kafka, "dlq", err, err_size);
    if (!conf)
        return NULL;
    if (kafka_conf_apply(conf, "kafka.consumer", &kafka->config->kafka.consumer, err, err_size) <
            0 ||
        kafka_conf_set(conf, "kafka", "group.id", group_id, err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka", "enable.auto.commit", "false", err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka", "enable.auto.offset.store", "false", err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka", "enable.partition.eof", "true", err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka", "auto.offset.reset", "earliest", err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka", "isolation.level", "read_committed", err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka", "queued.max.messages.kbytes", "8192", err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka", "fetch.wait.max.ms",
                       kafka->late_fetch_answers ? KAFKA_FETCH_WAIT_MAX_MS_MOCK
                                                 : KAFKA_FETCH_WAIT_MAX_MS,
                       err, err_size) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

static rd_kafka_conf_t *kafka_dlq_producer_conf(struct kafka *kafka, char *err, size_t err_size)
{
    rd_kafka_conf_t *conf = kafka_conf_base(kafka, "dlq-redrive", err, err_size);
    if (!conf)
        return NULL;
    char size[32];
    uint64_t want = kafka->config->limits.max_message_size + 65536;
    snprintf(size, sizeof(size), "%llu", (unsigned long long)(want > 1000000 ? want : 1000000));
    if (kafka_conf_set(conf, "kafka", "message.max.bytes", size, err, err_size) < 0 ||
        kafka_conf_apply(conf, "kafka.producer", &kafka->config->kafka.producer, err, err_size) <
            0 ||
        kafka_conf_set(conf, "kafka", "enable.idempotence", "true", err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka", "acks", "all", err, err_size) < 0 ||
        kafka_conf_set(conf, "kafka", "linger.ms", "5", err, err_size) < 0 ||
        /* a record Kafka cannot take fails within the batch's flush */
        kafka_conf_set(conf, "kafka", "message.timeout.ms", "45000", err, err_size) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, kafka_dlq_on_delivery);
    return conf;
}

struct kafka_dlq *kafka_dlq_start(struct kafka *kafka, const struct kafka_dlq_spec *spec,
                                  kafka_dlq_fn done, void *opaque, char *err, size_t err_size)
{
    struct kafka_dlq *dlq = calloc(1, sizeof(*dlq));
    if (!dlq) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    dlq->kafka = kafka;
    dlq->action = spec->action;
    dlq->left = spec->count ? spec->count : UINT64_MAX;
    dlq->batch = spec->batch ? spec->batch : 1;
    dlq->done = done;
    dlq->opaque = opaque;
    dlq->group_id = strdup(spec->group_id);
    dlq->topic = strdup(spec->topic);
    dlq->destination = spec->destination ? strdup(spec->destination) : NULL;
    dlq->fallback = spec->fallback ? strdup(spec->fallback) : NULL;
    dlq->allowed = calloc(spec->allowed_count ? spec->allowed_count : 1, sizeof(*dlq->allowed));
    bool failed = !dlq->group_id || !dlq->topic || !dlq->allowed ||
                  (spec->destination && !dlq->destination) || (spec->fallback && !dlq->fallback);
    for (size_t i = 0; !failed && i < spec->allowed_count; i++, dlq->allowed_count++)
        failed = !(dlq->allowed[i] = strdup(spec->allowed[i]));
    if (failed) {
        snprintf(err, err_size, "out of memory");
        kafka_dlq_free(dlq);
        return NULL;
    }
    if (spec->action == KAFKA_DLQ_REDRIVE && !dlq->destination && !dlq->fallback) {
        snprintf(err, err_size, "a redrive needs a destination or a fallback topic");
        kafka_dlq_free(dlq);
        return NULL;
    }
    dlq->consumer_conf = kafka_dlq_consumer_conf(kafka, dlq->group_id, err, err_size);
    if (!dlq->consumer_conf ||
        (spec->action == KAFKA_DLQ_REDRIVE &&
         !(dlq->producer_conf = kafka_dlq_producer_conf(kafka, err, err_size)))) {
        kafka_dlq_free(dlq);
        return NULL;
    }
    if (kafka_dlq_next(dlq) < 0) {
        snprintf(err, err_size, "cannot queue the job (out of memory)");
        kafka_dlq_free(dlq);
        return NULL;
    }
    return dlq;
}
