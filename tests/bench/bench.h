/* SPDX-License-Identifier: Apache-2.0 */
/* bench.h -- shared types of kbridge-bench: the options of one run, the
 * payload every message carries, the tracker that verifies what a consumer
 * received (lost, duplicated, out of per-key order, latency) and the
 * interface each protocol (STOMP, AMQP 1.0, AMQP 0-9-1, Kafka) implements.
 *
 * A run is one workload against one target. Each protocol provides
 * "sessions": a publisher session sends COUNT messages on its own
 * connection, a consumer session receives until it has every expected
 * message (or goes quiet), a responder answers requests, a requester sends
 * requests and waits for the replies. Workloads combine sessions, on threads
 * when two must run at once (latency, request-reply). */
#ifndef KBRIDGE_BENCH_H
#define KBRIDGE_BENCH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_PAYLOAD_MIN 64
#define BENCH_ERROR_SIZE 512
#define BENCH_MAX_KAFKA_PROPERTIES 16

/* What the user asked for on the command line. */
struct bench_options {
    const char *protocol;  /* "stomp", "amqp", "amqp091" or "kafka" */
    const char *workload;  /* publish, consume, latency, request-reply, idle */
    const char *host;      /* target host (STOMP/AMQP) */
    int port;              /* target port (STOMP/AMQP) */
    const char *bootstrap; /* Kafka bootstrap list (protocol kafka) */
    const char *user;      /* login (NULL: anonymous) */
    const char *password;  /* passcode */
    const char *queue;     /* queue name; the destination is derived per protocol */
    const char *target;    /* label for the summary: kbridge, rabbitmq, kafka */
    uint64_t count;        /* messages (publish, consume, request-reply) */
    size_t size;           /* body size in bytes (>= BENCH_PAYLOAD_MIN) */
    int keys;              /* distinct keys; order is checked per key */
    const char *confirm;   /* STOMP: each, every:N, none; AMQP: unsettled, presettled;
                            * AMQP 0-9-1: unsettled (window in flight), each, none */
    int window;            /* most unconfirmed messages (or requests) in flight */
    int prefetch;          /* consumer prefetch / credit */
    double rate;           /* messages per second (latency), 0 = unlimited */
    double duration;       /* seconds (latency) */
    int connections;       /* idle: connections to open */
    int target_pid;        /* idle: process whose RSS is measured (0: not measured) */
    int verify;            /* publish: drain the queue afterwards and check it */
    double idle_timeout;   /* consumer gives up after this many quiet seconds */
    const char *reply_to;  /* AMQP 0-9-1 request-reply: "queue" (a server-named reply
                            * queue) or "direct" (amq.rabbitmq.reply-to) */
    const char *kafka_properties[BENCH_MAX_KAFKA_PROPERTIES]; /* "name=value" (protocol kafka) */
    int kafka_property_count;
};

/* The payload: "KB1 TAG SEQ KEY SENT_NS " then padding to the size. TAG is
 * the run's random tag, so records of an earlier run are recognised. */
struct bench_payload {
    uint32_t tag;
    uint64_t seq;
    int key;
    int64_t sent_ns; /* CLOCK_MONOTONIC of the sender */
};

/* Write a payload of exactly size bytes into buf (size >= BENCH_PAYLOAD_MIN). */
void bench_payload_format(char *buf, size_t size, const struct bench_payload *payload);

/* Parse a body; returns 0 when it is a kbridge-bench payload. */
int bench_payload_parse(const char *body, size_t length, struct bench_payload *payload);

/* Key string of a key number ("k7"), written into buf of buf_size bytes. */
void bench_key_name(char *buf, size_t buf_size, int key);

/* The body of message number seq of a session (tag, seq, key seq % --keys,
 * sent now) into body (options->size bytes), and its key's name into key. */
void bench_message_format(const struct bench_options *options, uint32_t tag, uint64_t seq,
                          char *body, char *key, size_t key_size);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t bench_now_ns(void);

/* Verifies received messages against the expected sequence 0..expected-1.
 * Used by one thread at a time, except `unique`, which others may read. */
struct bench_tracker {
    uint32_t tag;
    uint64_t expected;
    uint8_t *seen;     /* per seq: times received (saturates at 255) */
    int64_t *last_seq; /* per key: highest seq received, -1 before any */
    int keys;
    uint64_t received; /* every payload of this run, duplicates included */
    volatile uint64_t unique;
    uint64_t duplicated;   /* receptions beyond the first */
    uint64_t redelivered;  /* of those, flagged as redelivered by the protocol */
    uint64_t out_of_order; /* first receptions with a seq below the key's highest */
    uint64_t foreign;      /* bodies that are not payloads of this run */
    uint32_t *latency_us;  /* one sample per first reception */
    size_t latency_count;
    size_t latency_capacity;
    int64_t first_ns, last_ns; /* first and last reception */
};

/* Allocate a tracker for expected messages; returns 0 or -1 (no memory). */
int bench_tracker_init(struct bench_tracker *tracker, uint32_t tag, uint64_t expected, int keys);

/* Free the tracker's arrays. */
void bench_tracker_free(struct bench_tracker *tracker);

/* Record one received body at now_ns; redelivered is the protocol's flag. */
void bench_tracker_record(struct bench_tracker *tracker, const char *body, size_t length,
                          int redelivered, int64_t now_ns);

/* Record a latency sample (microseconds) without a body (request-reply). */
void bench_tracker_latency(struct bench_tracker *tracker, int64_t latency_ns);

/* Latency percentile p (0..100) in milliseconds; sorts the samples. */
double bench_tracker_percentile_ms(struct bench_tracker *tracker, double p);

/* Everything a session reports. */
struct bench_session {
    const struct bench_options *options;
    uint32_t tag;
    const char *destination;       /* protocol address of the queue */
    uint64_t count;                /* publisher/requester: messages to send */
    uint64_t first_seq;            /* publisher: sequence number of its first message */
    double rate;                   /* publisher: messages per second, 0 = unlimited */
    struct bench_tracker *tracker; /* consumer/requester: what was received */
    volatile int *stop;            /* responder/consumer: set by the workload to end it */
    uint64_t sent;
    uint64_t confirmed; /* confirmed by the target (receipts, accepted, delivery reports) */
    uint64_t refused;   /* refused by the target (ERROR, rejected, failed report) */
    int64_t start_ns, end_ns;
    char error[BENCH_ERROR_SIZE];
};

/* One protocol's sessions. Each returns 0, or -1 with session->error set. */
struct bench_protocol {
    const char *name;
    /* Destination string of a queue (e.g. "/queue/NAME"); buf of buf_size bytes. */
    void (*queue_address)(char *buf, size_t buf_size, const char *queue);
    int (*publish)(struct bench_session *session);
    int (*consume)(struct bench_session *session);
    int (*respond)(struct bench_session *session); /* NULL: not supported */
    int (*request)(struct bench_session *session); /* NULL: not supported */
    int (*open_idle)(const struct bench_options *options, int count, int **fds, char *error,
                     size_t error_size); /* NULL: not supported */
};

extern const struct bench_protocol bench_stomp;
extern const struct bench_protocol bench_amqp;
extern const struct bench_protocol bench_amqp091;
extern const struct bench_protocol bench_kafka;

/* Format an error into session->error (printf-style); returns -1. */
int bench_fail(struct bench_session *session, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Connect a TCP socket to host:port (blocking, TCP_NODELAY); returns the fd or
 * -1 with error set. */
int bench_tcp_connect(const char *host, int port, char *error, size_t error_size);

/* Sleep until the publisher may send message number index at rate per second
 * after start_ns; returns at once when rate is 0. */
void bench_pace(int64_t start_ns, uint64_t index, double rate);

#endif
