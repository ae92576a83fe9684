/* SPDX-License-Identifier: Apache-2.0 */
/* kafka_group.c -- a consumer group's position against the end of the
 * topics it reads (kafka.h "group lag"): what the admin API reports as a
 * queue's depth (architecture §9). One worker job per lookup, in the shape
 * of kafka_lookup.c: metadata and watermarks through the producer handle,
 * the group's committed offsets through a short-lived consumer handle of
 * that group (never joined: rd_kafka_committed only asks the coordinator),
 * the answer on the loop.
 *
 * Owns: every struct kafka_group_job from kafka_group_lag until its done ran. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_internal.h"
#include "log.h"

#define KAFKA_GROUP_TIMEOUT_MS 5000

struct kafka_group_job {
    struct kafka *kafka;
    char *group_id;
    char **topics;
    size_t topic_count;
    kafka_group_lag_fn done;
    void *opaque;
    rd_kafka_conf_t *conf; /* the group's consumer config, until the worker takes it */
    /* result */
    int err;
    char reason[1024];
    struct kafka_partition_lag *parts;
    size_t part_count, part_capacity;
};

static void kafka_group_job_free(struct kafka_group_job *job)
{
    for (size_t i = 0; i < job->topic_count; i++)
        free(job->topics[i]);
    free(job->topics);
    for (size_t i = 0; i < job->part_count; i++)
        free((char *)job->parts[i].topic);
    free(job->parts);
    free(job->group_id);
    if (job->conf)
        rd_kafka_conf_destroy(job->conf);
    free(job);
}

static int kafka_group_add(struct kafka_group_job *job, const char *topic, int32_t partition,
                           int64_t low, int64_t end)
{
    if (job->part_count == job->part_capacity) {
        size_t capacity = job->part_capacity ? job->part_capacity * 2 : 16;
        struct kafka_partition_lag *parts = realloc(job->parts, capacity * sizeof(*parts));
        if (!parts)
            return -1;
        job->parts = parts;
        job->part_capacity = capacity;
    }
    char *name = strdup(topic);
    if (!name)
        return -1;
    job->parts[job->part_count++] = (struct kafka_partition_lag){
        .topic = name, .partition = partition, .committed = -1, .low = low, .end = end};
    return 0;
}

/* Partitions and watermarks of one topic; a topic that does not exist adds
 * nothing (nothing was published to it). Worker only. */
static rd_kafka_resp_err_t kafka_group_topic(struct kafka_group_job *job, const char *topic)
{
    rd_kafka_t *rk = job->kafka->producer;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *metadata = NULL;
    rd_kafka_resp_err_t err = rkt ? rd_kafka_metadata(rk, 0, rkt, &metadata, KAFKA_GROUP_TIMEOUT_MS)
                                  : RD_KAFKA_RESP_ERR__FAIL;
    if (!err && metadata->topic_cnt == 1 && !metadata->topics[0].err) {
        const rd_kafka_metadata_topic_t *meta = &metadata->topics[0];
        for (int i = 0; !err && i < meta->partition_cnt; i++) {
            int64_t low = 0, high = 0;
            err = rd_kafka_query_watermark_offsets(rk, topic, meta->partitions[i].id, &low, &high,
                                                   KAFKA_GROUP_TIMEOUT_MS);
            if (!err && kafka_group_add(job, topic, meta->partitions[i].id, low, high) < 0)
                err = RD_KAFKA_RESP_ERR__FAIL;
        }
    }
    if (metadata)
        rd_kafka_metadata_destroy(metadata);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    return err;
}

/* Worker thread: touches only the job and thread-safe handles. */
static void kafka_group_work(void *arg)
{
    struct kafka_group_job *job = arg;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (size_t i = 0; !err && i < job->topic_count; i++)
        err = kafka_group_topic(job, job->topics[i]);
    if (err) {
        job->err = err;
        snprintf(job->reason, sizeof(job->reason), "cannot read the end offsets: %s",
                 rd_kafka_err2str(err));
        return;
    }
    if (job->part_count == 0)
        return; /* job->conf is freed with the job */
    char why[512];
    rd_kafka_conf_t *conf = job->conf; /* made on the loop: the config is the loop's */
    job->conf = NULL;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        job->err = RD_KAFKA_RESP_ERR__FAIL;
        snprintf(job->reason, sizeof(job->reason), "cannot make a consumer of group %s: %s",
                 job->group_id, why);
        return;
    }
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)job->part_count);
    for (size_t i = 0; i < job->part_count; i++)
        rd_kafka_topic_partition_list_add(list, job->parts[i].topic, job->parts[i].partition);
    err = rd_kafka_committed(rk, list, KAFKA_GROUP_TIMEOUT_MS);
    for (int i = 0; !err && i < list->cnt; i++)
        job->parts[i].committed = list->elems[i].err ? -1 : list->elems[i].offset;
    if (err) {
        job->err = err;
        snprintf(job->reason, sizeof(job->reason), "cannot read group %s's committed offsets: %s",
                 job->group_id, rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_destroy(rk);
}

static void kafka_group_done(void *arg, bool cancelled)
{
    struct kafka_group_job *job = arg;
    kafka_job_finished(job->kafka);
    if (cancelled) { /* the pool is being freed: the owner still hears, to free its side */
        job->err = RD_KAFKA_RESP_ERR__DESTROY;
        snprintf(job->reason, sizeof(job->reason), "kbridged is shutting down");
    }
    job->done(job->opaque, job->err, job->err ? job->reason : "", job->err ? NULL : job->parts,
              job->err ? 0 : job->part_count);
    kafka_group_job_free(job);
}

int kafka_group_lag(struct kafka *kafka, const char *group_id, char *const *topics,
                    size_t topic_count, kafka_group_lag_fn done, void *opaque)
{
    struct kafka_group_job *job = calloc(1, sizeof(*job));
    if (!job)
        return -1;
    job->kafka = kafka;
    job->done = done;
    job->opaque = opaque;
    job->group_id = strdup(group_id);
    job->topics = calloc(topic_count ? topic_count : 1, sizeof(*job->topics));
    bool failed = !job->group_id || !job->topics;
    for (size_t i = 0; !failed && i < topic_count; i++, job->topic_count++)
        failed = !(job->topics[i] = strdup(topics[i]));
    char why[512];
    if (!failed && !(job->conf = kafka_conf_base(kafka, "admin", why, sizeof(why))))
        failed = true;
    if (!failed &&
        (kafka_conf_set(job->conf, "kafka", "group.id", group_id, why, sizeof(why)) < 0 ||
         kafka_conf_set(job->conf, "kafka", "enable.auto.commit", "false", why, sizeof(why)) < 0))
        failed = true;
    if (failed && job->conf)
        log_warn("kafka", "group %s: cannot look up its offsets: %s", group_id, why);
    if (failed || kafka_submit(kafka, kafka_group_work, kafka_group_done, job) < 0) {
        kafka_group_job_free(job);
        return -1;
    }
    return 0;
}
