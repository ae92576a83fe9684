/* SPDX-License-Identifier: Apache-2.0 */
/* kafka_probe.c -- readiness: is Kafka answering? (architecture §9, /readyz)
 *
 * rd_kafka_metadata() blocks, so the probe is a worker job
 * (kafka_probe_work) on the node's pool; its answer comes back on the loop
 * (kafka_probe_done), which updates kafka->ready and arms the timer for
 * the next probe: every second while not ready, every five seconds while
 * ready. At most one probe job is on the pool at a time.
 *
 * Owns: the probe timer and the job record of the probe in flight (freed
 * by its done, also when the pool is freed first). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_internal.h"
#include "log.h"

#define KAFKA_PROBE_TIMEOUT_MS 2000
#define KAFKA_PROBE_INTERVAL_NOT_READY_MS 1000
#define KAFKA_PROBE_INTERVAL_READY_MS 5000

/* One probe: the job's own data, touched by the worker while it runs. */
struct kafka_probe_job {
    struct kafka *kafka;
    rd_kafka_t *producer; /* thread-safe handle */
    const char *bootstrap;
    bool ready;
    int broker_count;
    char cluster_id[128]; /* "" when the cluster did not say */
    char reason[512];
};

static void kafka_probe_work(void *arg)
{
    struct kafka_probe_job *job = arg;
    const struct rd_kafka_metadata *metadata = NULL;
    rd_kafka_resp_err_t err =
        rd_kafka_metadata(job->producer, 0, NULL, &metadata, KAFKA_PROBE_TIMEOUT_MS);
    job->ready = err == RD_KAFKA_RESP_ERR_NO_ERROR;
    job->broker_count = job->ready ? metadata->broker_cnt : 0;
    if (metadata)
        rd_kafka_metadata_destroy(metadata);
    kafka_cluster_id_cached(job->producer, job->cluster_id, sizeof(job->cluster_id));
    job->reason[0] = '\0';
    if (!job->ready)
        snprintf(job->reason, sizeof(job->reason), "no metadata from Kafka at %s: %s",
                 job->bootstrap, rd_kafka_err2str(err));
}

static void kafka_probe_done(void *arg, bool cancelled)
{
    struct kafka_probe_job *job = arg;
    struct kafka *kafka = job->kafka;
    struct kafka_probe *probe = &kafka->probe;
    kafka_job_finished(kafka);
    probe->running = false;
    if (!cancelled) {
        bool changed = job->ready != probe->ready || job->broker_count != probe->broker_count ||
                       strcmp(job->reason, probe->reason) != 0;
        probe->ready = job->ready;
        probe->broker_count = job->broker_count;
        memcpy(probe->reason, job->reason, sizeof(probe->reason));
        if (job->cluster_id[0] && strcmp(job->cluster_id, kafka->cluster_id) != 0)
            kafka_set_cluster_id(kafka, job->cluster_id);
        if (changed)
            kafka_update_ready(kafka);
    }
    if (cancelled)
        probe->stopped = true; /* the pool is going away */
    if (!probe->stopped && probe->timer) {
        long wait_ms =
            probe->ready ? KAFKA_PROBE_INTERVAL_READY_MS : KAFKA_PROBE_INTERVAL_NOT_READY_MS;
        struct timeval in = {wait_ms / 1000, (wait_ms % 1000) * 1000};
        event_add(probe->timer, &in);
    }
    free(job);
}

static void kafka_probe_submit(struct kafka *kafka)
{
    struct kafka_probe *probe = &kafka->probe;
    if (probe->stopped || probe->running)
        return;
    struct kafka_probe_job *job = calloc(1, sizeof(*job));
    if (job) {
        job->kafka = kafka;
        job->producer = kafka->producer;
        job->bootstrap = kafka->bootstrap;
    }
    if (!job || kafka_submit(kafka, kafka_probe_work, kafka_probe_done, job) < 0) {
        free(job);
        log_warn("kafka", "cannot queue the readiness probe (out of memory); trying again in 1 s");
        struct timeval in = {1, 0};
        event_add(probe->timer, &in);
        return;
    }
    probe->running = true;
}

static void kafka_on_probe_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kafka_probe_submit(arg);
}

void kafka_probe_start(struct kafka *kafka)
{
    kafka->probe.timer = evtimer_new(kafka->base, kafka_on_probe_timer, kafka);
    if (!kafka->probe.timer) {
        log_error("kafka", "cannot create the readiness probe timer; the node stays not ready");
        return;
    }
    kafka_probe_submit(kafka);
}

void kafka_probe_stop(struct kafka *kafka)
{
    kafka->probe.stopped = true;
    if (kafka->probe.timer)
        event_free(kafka->probe.timer);
    kafka->probe.timer = NULL;
}

void kafka_cluster_id_cached(rd_kafka_t *rk, char *out, size_t out_size)
{
    out[0] = '\0';
    char *cluster_id = rd_kafka_clusterid(rk, 0); /* timeout 0: what metadata brought */
    if (cluster_id) {
        snprintf(out, out_size, "%s", cluster_id);
        rd_kafka_mem_free(rk, cluster_id);
    }
}

/* librdkafka's mock cluster names itself "mockCluster" + hex digits
 * (rdkafka_mock.c); a real cluster's id is 22 characters of base64. */
#define KAFKA_MOCK_CLUSTER_ID_PREFIX "mockCluster"

bool kafka_cluster_is_mock(const char *cluster_id)
{
    return strncmp(cluster_id, KAFKA_MOCK_CLUSTER_ID_PREFIX,
                   strlen(KAFKA_MOCK_CLUSTER_ID_PREFIX)) == 0;
}

void kafka_set_cluster_id(struct kafka *kafka, const char *cluster_id)
{
    snprintf(kafka->cluster_id, sizeof(kafka->cluster_id), "%s", cluster_id);
    bool mock = kafka_cluster_is_mock(cluster_id);
    if (mock && !kafka->late_fetch_answers)
        log_info("kafka",
                 "cluster %s is librdkafka's mock cluster (kbridge-devkafka): consumers wait "
                 "at most %s ms for data (fetch.wait.max.ms), since it answers no sooner",
                 cluster_id, KAFKA_FETCH_WAIT_MAX_MS_MOCK);
    else
        log_info("kafka", "cluster id %s", cluster_id);
    kafka->late_fetch_answers = kafka->late_fetch_answers || mock;
}

void kafka_update_ready(struct kafka *kafka)
{
    struct kafka_probe *probe = &kafka->probe;
    char previous[sizeof(kafka->reason)];
    memcpy(previous, kafka->reason, sizeof(previous));
    bool ready = probe->ready && !kafka->fatal;
    if (!kafka->fatal)
        memcpy(kafka->reason, probe->reason, sizeof(kafka->reason));
    bool changed = ready != kafka->ready;
    kafka->ready = ready;
    if (ready && changed)
        log_info("kafka", "ready: cluster metadata fetched from %s", kafka->bootstrap);
    else if (!ready && (changed || strcmp(previous, kafka->reason) != 0))
        log_warn("kafka", "not ready: %s", kafka->reason);
}
