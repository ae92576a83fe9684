/* SPDX-License-Identifier: Apache-2.0 */
/* kafka.c -- the node's Kafka layer (kafka.h): kafka_new / kafka_free, the
 * contract check, and the helpers the other kafka*.c files share (wake-up
 * pipes, librdkafka configuration, worker-job submission). The producer,
 * consumers, lookups, readiness probe and error classes live in their own
 * files (kafka_internal.h lists them).
 *
 * DESIGN
 * ------
 * Wake-ups: each handle's final queue (the producer's main queue, a
 * consumer's consumer queue) is tied to an O_NONBLOCK pipe with
 * rd_kafka_queue_io_event_enable(). librdkafka writes one byte when the queue
 * goes from empty to non-empty, so a wake-up must not leave events behind
 * without rescheduling itself: each drain serves at most kafka.drain_budget
 * events and, when some are left, arms its zero-timeout `again` timer, so
 * the rest run on the next loop iteration, after the sockets that are ready
 * (architecture "Threads"). Callbacks (delivery reports, rebalances, errors)
 * therefore run on the loop thread. librdkafka's log callback runs on its
 * own threads and only calls the thread-safe log_write.
 *
 * Blocking calls (metadata, watermarks, admin, committed offsets, a consumer
 * handle's final rd_kafka_destroy, the readiness probe) run as jobs on the
 * node's worker pool (kafka_submit); their results come back on the loop.
 * kafka_free runs after worker_pool_free, which has completed every job. */
#include "kafka_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "kafka_mock.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"

/* ---- small helpers ------------------------------------------------------ */

const char *kafka_error_name(int err) { return rd_kafka_err2str((rd_kafka_resp_err_t)err); }

int kafka_wakeup_open(struct kafka_wakeup *wakeup, struct event_base *base, event_callback_fn fn,
                      void *arg, char *err, size_t err_size)
{
    wakeup->event = NULL;
    wakeup->again = NULL;
    if (pipe2(wakeup->fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, err_size, "kafka: cannot create wake-up pipe: %s", strerror(errno));
        wakeup->fds[0] = wakeup->fds[1] = -1;
        return -1;
    }
    wakeup->event = event_new(base, wakeup->fds[0], EV_READ | EV_PERSIST, fn, arg);
    wakeup->again = evtimer_new(base, fn, arg);
    if (!wakeup->event || !wakeup->again || event_add(wakeup->event, NULL) < 0) {
        snprintf(err, err_size, "kafka: cannot watch wake-up pipe");
        return -1;
    }
    return 0;
}

void kafka_wakeup_close(struct kafka_wakeup *wakeup)
{
    if (wakeup->event)
        event_free(wakeup->event);
    if (wakeup->again)
        event_free(wakeup->again);
    wakeup->event = NULL;
    wakeup->again = NULL;
    for (int i = 0; i < 2; i++) {
        if (wakeup->fds[i] >= 0)
            close(wakeup->fds[i]);
        wakeup->fds[i] = -1;
    }
}

void kafka_wakeup_consume(struct kafka_wakeup *wakeup)
{
    char buf[256];
    while (read(wakeup->fds[0], buf, sizeof(buf)) > 0) {
    }
}

void kafka_wakeup_again(struct kafka_wakeup *wakeup)
{
    /* Not event_active: libevent would run it again in this same pass,
     * before the sockets; a due timer runs after the next poll. */
    static const struct timeval now = {0, 0};
    if (wakeup->again)
        event_add(wakeup->again, &now);
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

int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *name, const char *value,
                   char *err, size_t err_size)
{
    char why[512];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(err, err_size, "%s.%s: %s", key, name, why);
        return -1;
    }
    return 0;
}

#define KAFKA_FILE_SUFFIX "_file"
#define KAFKA_SECRET_MAX 4096

/* "NAME_file: PATH": NAME from the first line of PATH (the value is never
 * written into a message). */
static int kafka_conf_set_from_file(rd_kafka_conf_t *conf, const char *key, const char *name,
                                    const char *path, char *err, size_t err_size)
{
    size_t name_len = strlen(name) - strlen(KAFKA_FILE_SUFFIX);
    char property[256];
    if (name_len == 0 || name_len >= sizeof(property)) {
        snprintf(err, err_size, "%s.%s: no property name before %s", key, name, KAFKA_FILE_SUFFIX);
        return -1;
    }
    memcpy(property, name, name_len);
    property[name_len] = '\0';
    FILE *file = fopen(path, "r");
    if (!file) {
        snprintf(err, err_size, "%s.%s: cannot read %s: %s", key, name, path, strerror(errno));
        return -1;
    }
    char secret[KAFKA_SECRET_MAX];
    if (!fgets(secret, sizeof(secret), file))
        secret[0] = '\0';
    fclose(file);
    secret[strcspn(secret, "\r\n")] = '\0';
    char why[512];
    int rc = 0;
    if (rd_kafka_conf_set(conf, property, secret, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(err, err_size, "%s.%s: librdkafka refused the value read from %s for %s", key,
                 name, path, property);
        rc = -1;
    }
    explicit_bzero(secret, sizeof(secret));
    return rc;
}

int kafka_conf_apply(rd_kafka_conf_t *conf, const char *key, const struct config_properties *props,
                     char *err, size_t err_size)
{
    size_t suffix = strlen(KAFKA_FILE_SUFFIX);
    for (size_t i = 0; i < props->count; i++) {
        const char *name = props->items[i].name;
        size_t len = strlen(name);
        int rc =
            len > suffix && strcmp(name + len - suffix, KAFKA_FILE_SUFFIX) == 0
                ? kafka_conf_set_from_file(conf, key, name, props->items[i].value, err, err_size)
                : kafka_conf_set(conf, key, name, props->items[i].value, err, err_size);
        if (rc < 0)
            return -1;
    }
    return 0;
}

const char *kafka_config_property(const struct config_properties *props, const char *name)
{
    const char *found = NULL;
    for (size_t i = 0; i < props->count; i++)
        if (strcmp(props->items[i].name, name) == 0)
            found = props->items[i].value;
    return found;
}

/* Base configuration shared by every handle of the node. */
rd_kafka_conf_t *kafka_conf_base(struct kafka *kafka, const char *role, char *err, size_t err_size)
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

/* ---- worker jobs ---------------------------------------------------------- */

int kafka_submit(struct kafka *kafka, void (*work)(void *arg),
                 void (*done)(void *arg, bool cancelled), void *arg)
{
    if (!kafka->workers || !worker_submit(kafka->workers, work, done, arg))
        return -1;
    kafka->jobs++;
    return 0;
}

void kafka_job_finished(struct kafka *kafka) { kafka->jobs--; }

/* ---- the node's layer ----------------------------------------------------- */

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
    const char *isolation = kafka_config_property(&config->kafka.consumer, "isolation.level");
    if (isolation && strcmp(isolation, "read_committed") != 0) {
        snprintf(err, err_size,
                 "kafka.consumer: kbridge requires isolation.level=read_committed (an aborted "
                 "transaction's records must never be delivered, architecture §8); remove the "
                 "setting");
        return -1;
    }
    return 0;
}

struct kafka *kafka_new(struct event_base *base, const struct config *config,
                        struct metrics *metrics, struct worker_pool *workers, char *err,
                        size_t err_size)
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
    kafka->workers = workers;
    kafka->drain_budget = config->kafka.drain_budget ? config->kafka.drain_budget : 1;
    kafka->producer_wakeup.fds[0] = kafka->producer_wakeup.fds[1] = -1;
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
        kafka->late_fetch_answers = true;
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
    kafka_probe_start(kafka);
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
    kafka_probe_stop(kafka);
    kafka->workers = NULL; /* freed by now (or never given): submit nothing more */
    if (kafka->jobs > 0) {
        /* A job still holds a pointer into this layer: freeing it now would
         * be a use-after-free on a worker thread. Free the pool first. */
        log_error("kafka",
                  "kafka_free with %zu job(s) still on the worker pool (free the pool first); "
                  "the Kafka layer is left allocated",
                  kafka->jobs);
        return;
    }
    /* Anchors that waited for a forget that never ran: nobody to tell. */
    kafka_lookups_free_waiting(kafka);
    kafka_consumers_close_all(kafka);
    kafka_txn_pool_free(kafka);
    kafka_producer_destroy(kafka);
    kafka_wakeup_close(&kafka->producer_wakeup);
    kafka_mock_stop(kafka->mock);
    while (kafka->forgetting) /* consumers freed above left theirs */
        kafka_forgetting_remove(kafka, kafka->forgetting->group_id);
    free(kafka->bootstrap);
    free(kafka);
}
