/* SPDX-License-Identifier: Apache-2.0 */
/* bench_kafka.c -- kbridge-bench's reference: the same workloads done
 * directly with librdkafka against the same Kafka, with the settings
 * kbridged itself uses (idempotent producer, acks=all; a consumer group that
 * stores each offset after the message is processed and commits every
 * second). --kafka-property NAME=VALUE sets more (run_bench.py passes what
 * the kbridged it compares with uses). The queue name is the topic name. */
#include "bench.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

/* kafka_request's probe: how long it may take to come back (the group's
 * join) and how often it is sent again meanwhile. */
#define PROBE_WAIT_NS (60 * (int64_t)1000000000)
#define PROBE_EVERY_NS (500 * (int64_t)1000000)

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

/* A producer as kbridged's (idempotent, acks=all) counting delivery reports
 * in session; NULL with session->error set. */
static rd_kafka_t *new_producer(struct bench_session *session)
{
    rd_kafka_conf_t *conf = base_conf(session);
    if (!conf)
        return NULL;
    char why[512];
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", why, sizeof(why)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "acks", "all", why, sizeof(why)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", why, sizeof(why)) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        bench_fail(session, "kafka producer config: %s", why);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, delivery_report);
    rd_kafka_conf_set_opaque(conf, session);
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!producer) {
        rd_kafka_conf_destroy(conf);
        bench_fail(session, "kafka producer: %s", why);
    }
    return producer;
}

/* Produce message number seq of session (payload with the send time). */
static rd_kafka_resp_err_t produce_one(rd_kafka_t *producer, struct bench_session *session,
                                       uint32_t tag, uint64_t seq, char *body)
{
    const struct bench_options *options = session->options;
    char key[32];
    bench_message_format(options, tag, seq, body, key, sizeof(key));
    return rd_kafka_producev(
        producer, RD_KAFKA_V_TOPIC(session->destination), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(body, options->size), RD_KAFKA_V_END);
}

static int kafka_publish(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    rd_kafka_t *producer = new_producer(session);
    if (!producer)
        return -1;
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
        rd_kafka_resp_err_t err =
            produce_one(producer, session, session->tag, session->first_seq + session->sent, body);
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

/* A consumer of group kbridge-bench-TAG subscribed to the session's topic,
 * storing offsets itself, starting where `reset` says (auto.offset.reset);
 * NULL with session->error set. */
static rd_kafka_t *new_consumer(struct bench_session *session, const char *reset)
{
    rd_kafka_conf_t *conf = base_conf(session);
    if (!conf)
        return NULL;
    char why[512];
    char group[64];
    snprintf(group, sizeof(group), "kbridge-bench-%08" PRIx32, session->tag);
    if (rd_kafka_conf_set(conf, "group.id", group, why, sizeof(why)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "auto.offset.reset", reset, why, sizeof(why)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", why, sizeof(why)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "auto.commit.interval.ms", "1000", why, sizeof(why)) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        bench_fail(session, "kafka consumer config: %s", why);
        return NULL;
    }
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!consumer) {
        rd_kafka_conf_destroy(conf);
        bench_fail(session, "kafka consumer: %s", why);
        return NULL;
    }
    rd_kafka_poll_set_consumer(consumer);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, session->destination, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        bench_fail(session, "subscribe to %s: %s", session->destination, rd_kafka_err2str(err));
        rd_kafka_destroy(consumer);
        return NULL;
    }
    return consumer;
}

static int kafka_consume(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    rd_kafka_t *consumer = new_consumer(session, "earliest");
    if (!consumer)
        return -1;
    int rc = 0;
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

/* The reference of the request-reply rows: one produce -> fetch hop at a
 * time (window 1) or `window` in flight, over one topic with one producer and
 * one consumer in this session. A round trip here is the hop a kbridge
 * request takes through Kafka (its reply to a temporary queue of the same
 * node is delivered in memory, architecture §7), so no responder runs
 * (kafka_respond only waits). The consumer starts at the end of the topic
 * (earlier sessions' records are not this one's); a probe, not timed, sent
 * again every PROBE_EVERY_NS until one comes back, waits out the group's
 * join. */
static int kafka_request(struct bench_session *session)
{
    const struct bench_options *options = session->options;
    uint64_t window = options->window > 0 ? (uint64_t)options->window : 1;
    rd_kafka_t *producer = new_producer(session);
    if (!producer)
        return -1;
    rd_kafka_t *consumer = new_consumer(session, "latest");
    char *body = malloc(options->size);
    int rc = consumer && body ? 0 : -1;
    if (!body)
        bench_fail(session, "out of memory");
    uint32_t probe_tag = session->tag ^ 0xffffffffu;
    bool probed = false;
    int64_t probe_ns = 0, started_ns = bench_now_ns();
    int64_t idle_ns = (int64_t)(options->idle_timeout * 1e9);
    int64_t last_ns = started_ns;
    struct bench_tracker *tracker = session->tracker;
    while (rc == 0 && tracker->unique < session->count) {
        if (!probed && bench_now_ns() - probe_ns > PROBE_EVERY_NS) {
            if (bench_now_ns() - started_ns > PROBE_WAIT_NS) {
                rc = bench_fail(session, "no probe came back from %s", session->destination);
                break;
            }
            if (produce_one(producer, session, probe_tag, 0, body) != RD_KAFKA_RESP_ERR_NO_ERROR)
                rc = bench_fail(session, "produce the probe to %s", session->destination);
            probe_ns = bench_now_ns();
        }
        while (rc == 0 && probed && session->sent < session->count &&
               session->sent - tracker->unique < window) {
            rd_kafka_resp_err_t err = produce_one(producer, session, session->tag,
                                                  session->first_seq + session->sent, body);
            if (err) {
                rc = bench_fail(session, "produce to %s: %s", session->destination,
                                rd_kafka_err2str(err));
                break;
            }
            session->sent++;
        }
        rd_kafka_poll(producer, 0);
        rd_kafka_message_t *message = rd_kafka_consumer_poll(consumer, 50);
        if (!message) {
            if (probed && bench_now_ns() - last_ns > idle_ns)
                rc = bench_fail(session, "replies stopped for %.0f seconds", options->idle_timeout);
            continue;
        }
        struct bench_payload payload;
        if (!message->err) {
            bool probe = bench_payload_parse(message->payload, message->len, &payload) == 0 &&
                         payload.tag == probe_tag;
            last_ns = bench_now_ns();
            if (probe && !probed) {
                probed = true;
                session->start_ns = last_ns;
            } else if (!probe && probed) {
                bench_tracker_record(tracker, message->payload, message->len, 0, last_ns);
            }
            rd_kafka_offset_store(message->rkt, message->partition, message->offset);
        }
        rd_kafka_message_destroy(message);
    }
    session->end_ns = last_ns;
    session->confirmed = tracker->unique;
    free(body);
    if (consumer) {
        rd_kafka_consumer_close(consumer);
        rd_kafka_destroy(consumer);
    }
    rd_kafka_flush(producer, 10000);
    rd_kafka_destroy(producer);
    return rc;
}

/* No responder for the direct reference (kafka_request): wait for the end. */
static int kafka_respond(struct bench_session *session)
{
    while (!*session->stop) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

const struct bench_protocol bench_kafka = {
    .name = "kafka",
    .queue_address = kafka_queue_address,
    .publish = kafka_publish,
    .consume = kafka_consume,
    .respond = kafka_respond,
    .request = kafka_request,
    .open_idle = NULL,
};
