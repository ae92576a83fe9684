/* SPDX-License-Identifier: Apache-2.0 */
/* bench_kafka.c -- kbridge-bench's reference: the same workloads done
 * directly with librdkafka against the same Kafka, with the settings
 * kbridged itself uses (idempotent producer, acks=all; a consumer group that
 * stores each offset after the message is processed and commits every
 * second). --kafka-property NAME=VALUE sets more (run_bench.py passes what
 * the kbridged it compares with uses). The queue name is the topic name. */
#include "bench.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

static void kafka_queue_address(char *buf, size_t buf_size, const char *queue)
{
    snprintf(buf, buf_size, "%s", queue);
}

static rd_kafka_conf_t *base_conf(struct bench_session *session)
{
    if (!session->options->bootstrap) {
        bench_fail(session, "protocol kafka needs --bootstrap");
        return NULL;
    }
    char why[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", session->options->bootstrap, why,
                          sizeof(why)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "kbridge-bench", why, sizeof(why)) !=
            RD_KAFKA_CONF_OK) {
        bench_fail(session, "kafka config: %s", why);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    const struct bench_options *options = session->options;
    for (int i = 0; i < options->kafka_property_count; i++) {
        char name[256];
        const char *property = options->kafka_properties[i];
        const char *equals = strchr(property, '=');
        if (!equals || (size_t)(equals - property) >= sizeof(name)) {
            bench_fail(session, "--kafka-property '%s' is not NAME=VALUE", property);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
        memcpy(name, property, (size_t)(equals - property));
        name[equals - property] = '\0';
        if (rd_kafka_conf_set(conf, name, equals + 1, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
            bench_fail(session, "--kafka-property %s: %s", property, why);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    return conf;
}

static void delivery_report(rd_kafka_t *producer, const rd_kafka_message_t *message, void *opaque)
{
    (void)producer;
    (void)message;
    struct bench_session *session = opaque;
    if (message->err)
        session->refused++;
    else
        session->confirmed++;
}

static int kafka_publish(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    rd_kafka_conf_t *conf = base_conf(session);
    if (!conf)
        return -1;
    char why[512];
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", why, sizeof(why)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "acks", "all", why, sizeof(why)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", why, sizeof(why)) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return bench_fail(session, "kafka producer config: %s", why);
    }
    rd_kafka_conf_set_dr_msg_cb(conf, delivery_report);
    rd_kafka_conf_set_opaque(conf, session);
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!producer) {
        rd_kafka_conf_destroy(conf);
        return bench_fail(session, "kafka producer: %s", why);
    }
    char *body = malloc(options->size);
    if (!body) {
        rd_kafka_destroy(producer);
        return bench_fail(session, "out of memory");
    }
    uint64_t window = options->window > 0 ? (uint64_t)options->window : UINT64_MAX;
    int rc = 0;
    session->start_ns = bench_now_ns();
    while (session->sent < session->count) {
        bench_pace(session->start_ns, session->sent, session->rate);
        while (session->sent - session->confirmed - session->refused >= window)
            rd_kafka_poll(producer, 1);
        struct bench_payload payload = {
            .tag = session->tag,
            .seq = session->first_seq + session->sent,
            .key = (int)((session->first_seq + session->sent) % (uint64_t)options->keys),
            .sent_ns = bench_now_ns()};
        bench_payload_format(body, options->size, &payload);
        char key[32];
        bench_key_name(key, sizeof(key), payload.key);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            producer, RD_KAFKA_V_TOPIC(session->destination),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(body, options->size), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(producer, 10);
            continue;
        }
        if (err) {
            rc = bench_fail(session, "produce to %s: %s", session->destination,
                            rd_kafka_err2str(err));
            break;
        }
        session->sent++;
        rd_kafka_poll(producer, 0);
    }
    int64_t deadline = bench_now_ns() + 120 * (int64_t)1000000000;
    while (session->confirmed + session->refused < session->sent && bench_now_ns() < deadline)
        rd_kafka_poll(producer, 10);
    session->end_ns = bench_now_ns();
    if (rc == 0 && session->confirmed + session->refused < session->sent)
        rc = bench_fail(session, "%" PRIu64 " delivery reports missing after 120 s",
                        session->sent - session->confirmed - session->refused);
    free(body);
    rd_kafka_destroy(producer);
    return rc;
}

static int kafka_consume(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    rd_kafka_conf_t *conf = base_conf(session);
    if (!conf)
        return -1;
    char why[512];
    char group[64];
    snprintf(group, sizeof(group), "kbridge-bench-%08" PRIx32, session->tag);
    if (rd_kafka_conf_set(conf, "group.id", group, why, sizeof(why)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", why, sizeof(why)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", why, sizeof(why)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "auto.commit.interval.ms", "1000", why, sizeof(why)) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return bench_fail(session, "kafka consumer config: %s", why);
    }
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!consumer) {
        rd_kafka_conf_destroy(conf);
        return bench_fail(session, "kafka consumer: %s", why);
    }
    rd_kafka_poll_set_consumer(consumer);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, session->destination, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    int rc = 0;
    if (err)
        rc =
            bench_fail(session, "subscribe to %s: %s", session->destination, rd_kafka_err2str(err));
    int64_t idle_ns = (int64_t)(options->idle_timeout * 1e9);
    int64_t last_ns = bench_now_ns();
    session->start_ns = last_ns;
    struct bench_tracker *tracker = session->tracker;
    while (rc == 0 && tracker->unique < tracker->expected) {
        rd_kafka_message_t *message = rd_kafka_consumer_poll(consumer, 50);
        if (!message) {
            if (bench_now_ns() - last_ns > idle_ns)
                break; /* quiet: the tracker reports what is missing */
            continue;
        }
        if (message->err) {
            if (message->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "kbridge-bench: kafka consumer: %s\n",
                        rd_kafka_message_errstr(message));
            rd_kafka_message_destroy(message);
            continue;
        }
        last_ns = bench_now_ns();
        bench_tracker_record(tracker, message->payload, message->len, 0, last_ns);
        rd_kafka_offset_store(message->rkt, message->partition, message->offset);
        rd_kafka_message_destroy(message);
    }
    session->end_ns = last_ns;
    rd_kafka_commit(consumer, NULL, 0);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    return rc;
}

const struct bench_protocol bench_kafka = {
    .name = "kafka",
    .queue_address = kafka_queue_address,
    .publish = kafka_publish,
    .consume = kafka_consume,
    .respond = NULL,
    .request = NULL,
    .open_idle = NULL,
};
