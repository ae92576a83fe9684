/* SPDX-License-Identifier: Apache-2.0 */
/* kafka_lookup.c -- lookups and admin calls (kafka.h "topic lookups"):
 * a topic's partitions and end offsets, topic creation, anchoring a new
 * durable subscription's group at the end, forgetting a deleted one's
 * position.
 *
 * Every lookup is one worker job (kafka_lookup_work, on the node's pool:
 * metadata, watermarks, CreateTopics, committed offsets and commits all
 * block); its answer comes back on the loop in kafka_lookup_done, which
 * calls the owner's `done` unless the lookup was cancelled. A new blocking
 * call (the transactional ones to come) follows the same shape: a job
 * record with its inputs and outputs, a work function touching only the
 * record and thread-safe rd_kafka_t handles, a done function on the loop
 * (kafka_submit in kafka_internal.h).
 *
 * Ordering: an anchor of a group whose position is being forgotten
 * (kafka->forgetting) is not submitted until that forget has finished: it
 * waits on the loop in kafka->anchors_waiting (kafka_forgetting_remove
 * starts it), so no worker thread ever waits for another job.
 *
 * Owns: every struct kafka_lookup from kafka_lookup_* until its done ran. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "kafka_internal.h"
#include "log.h"
#include "record.h"

/* ---- topic lookups ------------------------------------------------------------ */

#define KAFKA_LOOKUP_TIMEOUT_MS 5000
/* Committed-offset metadata of a deleted durable subscription (the record
 * contract's, record.h): an anchor treats such a partition as having no
 * offset (starts at the end). */
#define KAFKA_FORGOTTEN RECORD_OFFSET_FORGOTTEN
/* How long a forget waits to join its group when it must (the mock). */
#define KAFKA_FORGET_WAIT_MS 30000

void kafka_lookup_free(struct kafka_lookup *lookup)
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

static void kafka_lookup_done(void *arg, bool cancelled);

/* True while a forget of `group_id` has not finished (loop only). */
static bool kafka_forgetting(struct kafka *kafka, const char *group_id)
{
    for (struct kafka_forget *f = kafka->forgetting; f; f = f->next)
        if (strcmp(f->group_id, group_id) == 0)
            return true;
    return false;
}

void kafka_forgetting_remove(struct kafka *kafka, const char *group_id)
{
    for (struct kafka_forget **link = &kafka->forgetting; *link; link = &(*link)->next) {
        if (strcmp((*link)->group_id, group_id) == 0) {
            struct kafka_forget *gone = *link;
            *link = gone->next;
            free(gone->group_id);
            free(gone);
            break;
        }
    }
    /* Anchors of the group that waited for it start now. */
    struct kafka_lookup **link = &kafka->anchors_waiting;
    while (*link) {
        struct kafka_lookup *lookup = *link;
        if (kafka_forgetting(kafka, lookup->anchor->group_id)) {
            link = &lookup->next;
            continue;
        }
        *link = lookup->next;
        lookup->next = NULL;
        if (kafka_lookup_run(lookup) < 0) {
            /* Cannot queue it (out of memory): answer now as a failed lookup. */
            log_warn("kafka", "group %s: cannot start its anchor lookup (out of memory)",
                     lookup->anchor->group_id);
            lookup->err = RD_KAFKA_RESP_ERR__FAIL;
            kafka->jobs++; /* kafka_lookup_done counts it off */
            kafka_lookup_done(lookup, false);
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
 * forgotten group (its consumer has left it). Worker only. */
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

/* Give the anchor consumer's group a committed offset (the end offset just
 * looked up) on every partition that has none, so that a new durable
 * subscription starts where it was created and never skips a partition it
 * has not read yet. Blocking coordinator calls: worker only. A forget of
 * the group has finished before this runs (kafka_lookup_start). */
static rd_kafka_resp_err_t kafka_lookup_anchor(struct kafka_lookup *lookup)
{
    rd_kafka_t *rk = lookup->anchor->rk;
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

static int kafka_create_topic_as(struct kafka *kafka, const char *topic, int partitions,
                                 bool compacted, char *err, size_t err_size)
{
    char errstr[256] = "";
    rd_kafka_NewTopic_t *new_topic =
        rd_kafka_NewTopic_new(topic, partitions, -1, errstr, sizeof(errstr));
    if (!new_topic) {
        snprintf(err, err_size, "%s", errstr);
        return RD_KAFKA_RESP_ERR__INVALID_ARG;
    }
    if (compacted && rd_kafka_NewTopic_set_config(new_topic, "cleanup.policy", "compact")) {
        rd_kafka_NewTopic_destroy(new_topic);
        snprintf(err, err_size, "cannot set cleanup.policy");
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

int kafka_create_topic(struct kafka *kafka, const char *topic, int partitions, char *err,
                       size_t err_size)
{
    return kafka_create_topic_as(kafka, topic, partitions, false, err, err_size);
}

bool kafka_cleanup_policy_compacts(const char *policy)
{
    for (const char *p = policy; p && *p;) {
        p += strspn(p, " ,");
        size_t len = strcspn(p, " ,");
        if (len == 7 && strncmp(p, "compact", 7) == 0)
            return true;
        p += len;
    }
    return false;
}

/* An existing topic a lookup would have created compacted (the definitions
 * topic): warn when its cleanup.policy does not compact (DescribeConfigs; a
 * broker that cannot answer, as librdkafka's mock, is logged once at info).
 * Runs on the lookup's worker thread; only logs. */
static void kafka_check_compacted(struct kafka *kafka, const char *topic)
{
    char errstr[256] = "";
    rd_kafka_ConfigResource_t *resource =
        rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(kafka->producer);
    rd_kafka_AdminOptions_t *options =
        rd_kafka_AdminOptions_new(kafka->producer, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    if (!resource || !queue || !options) {
        log_info("kafka", "cannot check the cleanup.policy of topic %s: out of memory", topic);
        goto out;
    }
    rd_kafka_AdminOptions_set_request_timeout(options, KAFKA_LOOKUP_TIMEOUT_MS, errstr,
                                              sizeof(errstr));
    rd_kafka_DescribeConfigs(kafka->producer, &resource, 1, options, queue);
    rd_kafka_event_t *event = rd_kafka_queue_poll(queue, KAFKA_LOOKUP_TIMEOUT_MS + 1000);
    const char *policy = NULL, *why = NULL;
    size_t count = 0;
    const rd_kafka_ConfigResource_t **results = NULL;
    if (!event)
        why = "no answer to DescribeConfigs";
    else if (rd_kafka_event_error(event))
        why = rd_kafka_event_error_string(event);
    else if (!(results = rd_kafka_DescribeConfigs_result_resources(
                   rd_kafka_event_DescribeConfigs_result(event), &count)) ||
             count < 1)
        why = "an empty DescribeConfigs answer";
    else if (rd_kafka_ConfigResource_error(results[0]))
        why = rd_kafka_ConfigResource_error_string(results[0]);
    else {
        size_t entries = 0;
        const rd_kafka_ConfigEntry_t **configs =
            rd_kafka_ConfigResource_configs(results[0], &entries);
        for (size_t i = 0; i < entries; i++)
            if (strcmp(rd_kafka_ConfigEntry_name(configs[i]), "cleanup.policy") == 0)
                policy = rd_kafka_ConfigEntry_value(configs[i]);
        if (!policy)
            why = "no cleanup.policy in DescribeConfigs' answer";
    }
    if (why)
        log_info("kafka", "cannot check the cleanup.policy of topic %s: %s", topic,
                 why[0] ? why : "unknown error");
    else if (!kafka_cleanup_policy_compacts(policy))
        log_warn("kafka",
                 "topic %s has cleanup.policy=%s, not compact: Kafka will delete its records "
                 "after retention.ms, and the definitions in them with it; set "
                 "cleanup.policy=compact on it (kafka-configs.sh --alter --entity-type topics "
                 "--entity-name %s --add-config cleanup.policy=compact)",
                 topic, policy, topic);
    else
        log_debug("kafka", "topic %s is compacted (cleanup.policy=%s)", topic, policy);
    if (event)
        rd_kafka_event_destroy(event);
out:
    if (options)
        rd_kafka_AdminOptions_destroy(options);
    if (queue)
        rd_kafka_queue_destroy(queue);
    if (resource)
        rd_kafka_ConfigResource_destroy(resource);
}

static bool kafka_topic_missing(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
           err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
}

/* The job: every blocking call of a lookup, on a worker thread. */
static void kafka_lookup_work(void *arg)
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
            int created = kafka_create_topic_as(kafka, lookup->topic, lookup->create_partitions,
                                                lookup->create_compacted, reason, sizeof(reason));
            if (created)
                log_warn("kafka", "cannot create topic %s: %s", lookup->topic, reason);
            else
                log_info("kafka", "created topic %s (%d partitions)", lookup->topic,
                         lookup->create_partitions);
            rd_kafka_metadata_destroy(metadata);
            metadata = NULL;
            err = rd_kafka_metadata(kafka->producer, 0, rkt, &metadata, KAFKA_LOOKUP_TIMEOUT_MS);
        } else if (!err && metadata->topic_cnt == 1 && !metadata->topics[0].err &&
                   lookup->create_compacted) {
            char cluster_id[64];
            kafka_cluster_id_cached(kafka->producer, cluster_id, sizeof(cluster_id));
            if (kafka_cluster_is_mock(cluster_id)) /* no DescribeConfigs: it would time out */
                log_debug("kafka",
                          "cleanup.policy of topic %s not checked: the mock cluster "
                          "has no DescribeConfigs",
                          lookup->topic);
            else
                kafka_check_compacted(kafka, lookup->topic); /* one that existed before */
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
    kafka_cluster_id_cached(kafka->producer, lookup->cluster_id, sizeof(lookup->cluster_id));
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
}

/* The job's answer, on the loop (cancelled: the pool is being freed and the
 * work may not have run; nobody is told). */
static void kafka_lookup_done(void *arg, bool cancelled)
{
    struct kafka_lookup *done = arg;
    struct kafka *kafka = done->kafka;
    kafka_job_finished(kafka);
    if (done->forget_group)
        kafka_forgetting_remove(kafka, done->forget_group);
    if (done->anchor) {
        struct kafka_consumer *consumer = done->anchor;
        consumer->anchors_running--;
        if (!cancelled && consumer->close_deferred && consumer->anchors_running == 0) {
            consumer->closing = false;
            kafka_consumer_close(consumer);
        }
    }
    /* before the owner's callback, which may create a consumer */
    if (!cancelled && done->cluster_id[0] && strcmp(done->cluster_id, kafka->cluster_id) != 0)
        kafka_set_cluster_id(kafka, done->cluster_id);
    if (!cancelled && !done->cancelled && done->done)
        done->done(done->opaque, done->err, done->err ? NULL : done->topics,
                   done->err ? 0 : done->count);
    kafka_lookup_free(done);
}

static struct kafka_lookup *kafka_lookup_start(struct kafka *kafka, struct kafka_consumer *anchor,
                                               const char *topic, kafka_topic_filter_fn filter,
                                               const void *filter_arg, size_t filter_arg_size,
                                               int create_partitions, bool create_compacted,
                                               kafka_lookup_fn done, void *opaque);

struct kafka_lookup *kafka_lookup_end_offsets_or_create(struct kafka *kafka, const char *topic,
                                                        int partitions, kafka_lookup_fn done,
                                                        void *opaque)
{
    return kafka_lookup_start(kafka, NULL, topic, NULL, NULL, 0, partitions, false, done, opaque);
}

struct kafka_lookup *kafka_lookup_end_offsets_or_create_compacted(struct kafka *kafka,
                                                                  const char *topic, int partitions,
                                                                  kafka_lookup_fn done,
                                                                  void *opaque)
{
    return kafka_lookup_start(kafka, NULL, topic, NULL, NULL, 0, partitions, true, done, opaque);
}

struct kafka_lookup *kafka_lookup_end_offsets(struct kafka *kafka, const char *topic,
                                              kafka_topic_filter_fn filter, const void *filter_arg,
                                              size_t filter_arg_size, kafka_lookup_fn done,
                                              void *opaque)
{
    return kafka_lookup_start(kafka, NULL, topic, filter, filter_arg, filter_arg_size, 0, false,
                              done, opaque);
}

struct kafka_lookup *kafka_lookup_anchor_group(struct kafka_consumer *consumer, const char *topic,
                                               kafka_topic_filter_fn filter, const void *filter_arg,
                                               size_t filter_arg_size, kafka_lookup_fn done,
                                               void *opaque)
{
    return kafka_lookup_start(consumer->kafka, consumer, topic, filter, filter_arg, filter_arg_size,
                              0, false, done, opaque);
}

static struct kafka_lookup *kafka_lookup_start(struct kafka *kafka, struct kafka_consumer *anchor,
                                               const char *topic, kafka_topic_filter_fn filter,
                                               const void *filter_arg, size_t filter_arg_size,
                                               int create_partitions, bool create_compacted,
                                               kafka_lookup_fn done, void *opaque)
{
    struct kafka_lookup *lookup =
        kafka_lookup_prepare(kafka, topic, filter, filter_arg, filter_arg_size);
    if (!lookup)
        return NULL;
    lookup->anchor = anchor;
    lookup->create_partitions = create_partitions;
    lookup->create_compacted = create_compacted;
    lookup->done = done;
    lookup->opaque = opaque;
    if (anchor && kafka_forgetting(kafka, anchor->group_id)) {
        /* Its old position must be marked first: start once the forget is done. */
        lookup->next = kafka->anchors_waiting;
        kafka->anchors_waiting = lookup;
        anchor->anchors_running++;
        return lookup;
    }
    if (kafka_lookup_run(lookup) < 0) {
        kafka_lookup_free(lookup);
        return NULL;
    }
    if (anchor)
        anchor->anchors_running++;
    return lookup;
}

struct kafka_lookup *kafka_lookup_prepare(struct kafka *kafka, const char *topic,
                                          kafka_topic_filter_fn filter, const void *filter_arg,
                                          size_t filter_arg_size)
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

int kafka_lookup_run(struct kafka_lookup *lookup)
{
    return kafka_submit(lookup->kafka, kafka_lookup_work, kafka_lookup_done, lookup);
}

void kafka_lookup_cancel(struct kafka_lookup *lookup)
{
    if (lookup)
        lookup->cancelled = true; /* freed by kafka_lookup_done */
}

/* ---- records ---------------------------------------------------------------- */

void kafka_lookups_free_waiting(struct kafka *kafka)
{
    while (kafka->anchors_waiting) {
        struct kafka_lookup *lookup = kafka->anchors_waiting;
        kafka->anchors_waiting = lookup->next;
        kafka_lookup_free(lookup);
    }
}
