/* SPDX-License-Identifier: Apache-2.0 */
/* bench_main.c -- kbridge-bench: command line, the workloads (publish,
 * consume, latency, request-reply, idle) built from protocol sessions, and
 * the one machine-readable summary line (JSON) every run prints.
 *
 *   kbridge-bench --protocol stomp --host 127.0.0.1 --port 61613 \
 *                 --workload publish --count 100000 --confirm each --window 1000
 *
 * Exit status: 0 when the run completed and verified (nothing lost, nothing
 * out of per-key order), 1 when it did not, 2 for a bad command line. */
#include "bench.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#define PROBE_TIMEOUT_NS (120 * (int64_t)1000000000)

struct run_result {
    struct bench_session main;    /* the timed session */
    struct bench_tracker tracker; /* what the consumer side saw */
    int tracked;                  /* tracker holds a verification */
    double seconds;
    double rate; /* messages per second of the timed part */
    long rss_before_kib, rss_after_kib;
    int connections;
    char error[BENCH_ERROR_SIZE + 64]; /* a session's error with what it was */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kbridge-bench --protocol stomp|amqp|amqp091|kafka --workload W [options]\n"
            "workloads: publish, consume, latency, request-reply, idle\n"
            "  --host H --port P        STOMP/AMQP target (default 127.0.0.1, 61613/5672)\n"
            "  --bootstrap LIST         Kafka bootstrap (protocol kafka)\n"
            "  --user U --password P    log in (default: anonymous)\n"
            "  --queue NAME             queue (topic for kafka); default bench-TAG\n"
            "  --target LABEL           label in the summary (kbridge, rabbitmq, kafka)\n"
            "  --count N                messages (default 100000)\n"
            "  --size BYTES             body size, >= %d (default 100)\n"
            "  --keys N                 distinct keys, order checked per key (default 16)\n"
            "  --confirm MODE           STOMP: each, every:N, none; AMQP: unsettled, presettled;\n"
            "                           AMQP 0-9-1: unsettled (--window in flight), each, none\n"
            "  --window N               unconfirmed messages / requests in flight (default 1000)\n"
            "  --prefetch N             consumer prefetch / credit (default 100)\n"
            "  --rate R --duration S    latency: messages per second for S seconds (5000, 10)\n"
            "  --connections N          idle: connections to open (default 1000)\n"
            "  --target-pid PID         idle: process whose RSS is measured\n"
            "  --idle-timeout S         consumers give up after S quiet seconds (default 10)\n"
            "  --no-verify              publish: do not drain and check the queue afterwards\n"
            "  --reply-to MODE          AMQP 0-9-1 request-reply: queue (a server-named reply\n"
            "                           queue, default) or direct (amq.rabbitmq.reply-to)\n"
            "  --kafka-property N=V     librdkafka property for protocol kafka (repeatable)\n",
            BENCH_PAYLOAD_MIN);
}

static const struct bench_protocol *find_protocol(const char *name)
{
    if (strcmp(name, "stomp") == 0)
        return &bench_stomp;
    if (strcmp(name, "amqp") == 0)
        return &bench_amqp;
    if (strcmp(name, "amqp091") == 0)
        return &bench_amqp091;
    if (strcmp(name, "kafka") == 0)
        return &bench_kafka;
    return NULL;
}

static int parse_number(const char *option, const char *text, double min, double max, double *value)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (!end || *end || v < min || v > max) {
        fprintf(stderr, "kbridge-bench: %s '%s' is not a number in %g..%g\n", option, text, min,
                max);
        return -1;
    }
    *value = v;
    return 0;
}

static long process_rss_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

static void session_init(struct bench_session *session, const struct bench_options *options,
                         uint32_t tag, const char *destination)
{
    memset(session, 0, sizeof(*session));
    session->options = options;
    session->tag = tag;
    session->destination = destination;
    session->count = options->count;
}

struct thread_call {
    int (*run)(struct bench_session *session);
    struct bench_session *session;
    int rc;
};

static void *thread_main(void *arg)
{
    struct thread_call *call = arg;
    call->rc = call->run(call->session);
    return NULL;
}

/* Drain the queue into result->tracker (the verification of a publish). */
static int drain_and_verify(const struct bench_protocol *protocol,
                            const struct bench_options *options, uint32_t tag,
                            const char *destination, uint64_t expected, struct run_result *result)
{
    struct bench_session consumer;
    session_init(&consumer, options, tag, destination);
    if (bench_tracker_init(&result->tracker, tag, expected, options->keys) != 0)
        return snprintf(result->error, sizeof(result->error), "out of memory"), -1;
    result->tracked = 1;
    consumer.tracker = &result->tracker;
    if (protocol->consume(&consumer) != 0) {
        snprintf(result->error, sizeof(result->error), "verification consumer: %s", consumer.error);
        return -1;
    }
    return 0;
}

static int workload_publish(const struct bench_protocol *protocol,
                            const struct bench_options *options, uint32_t tag,
                            const char *destination, struct run_result *result)
{
    /* A warm-up message first, confirmed on its own: the target's first
     * publish to a topic waits for the topic's metadata, once, and that is not
     * its steady speed. */
    struct bench_options warm_options = *options;
    if (protocol == &bench_stomp)
        warm_options.confirm = "each";
    struct bench_session warm;
    session_init(&warm, &warm_options, tag, destination);
    warm.count = 1;
    if (protocol->publish(&warm) != 0 || warm.confirmed != 1) {
        snprintf(result->error, sizeof(result->error), "warm-up publish: %s",
                 warm.error[0] ? warm.error : "not confirmed");
        return -1;
    }
    struct bench_session *publisher = &result->main;
    session_init(publisher, options, tag, destination);
    publisher->first_seq = 1;
    publisher->count = options->count > 1 ? options->count - 1 : 0;
    int rc = protocol->publish(publisher);
    publisher->sent += warm.sent;
    publisher->confirmed += warm.confirmed;
    if (rc != 0) {
        snprintf(result->error, sizeof(result->error), "publisher: %s", publisher->error);
        return -1;
    }
    result->seconds = (double)(publisher->end_ns - publisher->start_ns) / 1e9;
    result->rate = result->seconds > 0 ? (double)(publisher->confirmed - 1) / result->seconds : 0;
    if (!options->verify)
        return 0;
    return drain_and_verify(protocol, options, tag, destination, publisher->confirmed, result);
}

/* Preload count messages (untimed, confirmed), then time a consumer. */
static int workload_consume(const struct bench_protocol *protocol,
                            const struct bench_options *options, uint32_t tag,
                            const char *destination, struct run_result *result)
{
    struct bench_options preload_options = *options;
    preload_options.confirm = protocol == &bench_stomp ? "every:100" : "unsettled";
    preload_options.window = 5000;
    struct bench_session preload;
    session_init(&preload, &preload_options, tag, destination);
    if (protocol->publish(&preload) != 0) {
        snprintf(result->error, sizeof(result->error), "preload: %s", preload.error);
        return -1;
    }
    /* a mark for who measures the server around the consumer alone
     * (tests/bench/cpu_per_msg.py) */
    fprintf(stderr, "kbridge-bench: preloaded %" PRIu64 "\n", preload.confirmed);
    fflush(stderr);
    int rc = drain_and_verify(protocol, options, tag, destination, options->count, result);
    result->main.sent = preload.sent;
    result->main.confirmed = preload.confirmed;
    /* first to last reception: the consumer group's join is not the consumer's speed */
    result->seconds = (double)(result->tracker.last_ns - result->tracker.first_ns) / 1e9;
    result->rate = result->seconds > 0 ? (double)result->tracker.unique / result->seconds : 0;
    return rc;
}

/* A consumer on a thread; a probe message until it receives, then a paced
 * publisher. Latency is from the sender's clock to the reception. */
static int workload_latency(const struct bench_protocol *protocol,
                            const struct bench_options *options, uint32_t tag,
                            const char *destination, struct run_result *result)
{
    uint64_t count = (uint64_t)(options->rate * options->duration);
    if (count < 2)
        count = 2;
    if (bench_tracker_init(&result->tracker, tag, count, options->keys) != 0)
        return snprintf(result->error, sizeof(result->error), "out of memory"), -1;
    result->tracked = 1;
    struct bench_session consumer;
    session_init(&consumer, options, tag, destination);
    consumer.tracker = &result->tracker;
    struct thread_call call = {.run = protocol->consume, .session = &consumer};
    pthread_t thread;
    if (pthread_create(&thread, NULL, thread_main, &call) != 0)
        return snprintf(result->error, sizeof(result->error), "cannot start a thread"), -1;
    struct bench_session probe;
    session_init(&probe, options, tag, destination);
    probe.count = 1;
    int rc = protocol->publish(&probe);
    if (rc != 0)
        snprintf(result->error, sizeof(result->error), "probe: %s", probe.error);
    int64_t deadline = bench_now_ns() + PROBE_TIMEOUT_NS;
    while (rc == 0 && __atomic_load_n(&result->tracker.unique, __ATOMIC_ACQUIRE) < 1) {
        if (bench_now_ns() > deadline) {
            snprintf(result->error, sizeof(result->error), "the consumer got no probe in 120 s");
            rc = -1;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    /* the probe's latency includes the consumer's start: not a sample */
    result->tracker.latency_count = 0;
    struct bench_session *publisher = &result->main;
    session_init(publisher, options, tag, destination);
    publisher->first_seq = 1;
    publisher->count = count - 1;
    publisher->rate = options->rate;
    if (rc == 0 && protocol->publish(publisher) != 0) {
        snprintf(result->error, sizeof(result->error), "publisher: %s", publisher->error);
        rc = -1;
    }
    pthread_join(thread, NULL);
    if (rc == 0 && call.rc != 0) {
        snprintf(result->error, sizeof(result->error), "consumer: %s", consumer.error);
        rc = -1;
    }
    publisher->sent += probe.sent;
    publisher->confirmed += probe.confirmed;
    result->seconds = (double)(publisher->end_ns - publisher->start_ns) / 1e9;
    result->rate = result->seconds > 0 ? (double)publisher->sent / result->seconds : 0;
    return rc;
}

/* A responder on a thread; one warm-up request, then the timed requests. */
static int workload_request_reply(const struct bench_protocol *protocol,
                                  const struct bench_options *options, uint32_t tag,
                                  const char *destination, struct run_result *result)
{
    if (!protocol->request || !protocol->respond)
        return snprintf(result->error, sizeof(result->error),
                        "request-reply is not available over %s", protocol->name),
               -1;
    volatile int stop = 0;
    struct bench_session responder;
    session_init(&responder, options, tag ^ 0x5a5a5a5a, destination);
    responder.stop = &stop;
    struct thread_call call = {.run = protocol->respond, .session = &responder};
    pthread_t thread;
    if (pthread_create(&thread, NULL, thread_main, &call) != 0)
        return snprintf(result->error, sizeof(result->error), "cannot start a thread"), -1;
    int rc = 0;
    struct bench_tracker warm_tracker;
    struct bench_session warm;
    session_init(&warm, options, tag ^ 0xffffffff, destination);
    warm.count = 1;
    if (bench_tracker_init(&warm_tracker, warm.tag, 1, options->keys) != 0)
        rc = -1;
    warm.tracker = &warm_tracker;
    if (rc == 0 && (protocol->request(&warm) != 0 || warm_tracker.unique != 1)) {
        snprintf(result->error, sizeof(result->error), "warm-up request: %s",
                 warm.error[0] ? warm.error : "no reply");
        rc = -1;
    }
    bench_tracker_free(&warm_tracker);
    if (rc == 0 && bench_tracker_init(&result->tracker, tag, options->count, options->keys) != 0)
        rc = -1;
    struct bench_session *requester = &result->main;
    session_init(requester, options, tag, destination);
    if (rc == 0) {
        result->tracked = 1;
        requester->tracker = &result->tracker;
        if (protocol->request(requester) != 0) {
            snprintf(result->error, sizeof(result->error), "requester: %s", requester->error);
            rc = -1;
        }
    }
    stop = 1;
    pthread_join(thread, NULL);
    if (rc == 0 && call.rc != 0) {
        snprintf(result->error, sizeof(result->error), "responder: %s", responder.error);
        rc = -1;
    }
    result->seconds = (double)(requester->end_ns - requester->start_ns) / 1e9;
    result->rate = result->seconds > 0 ? (double)result->tracker.unique / result->seconds : 0;
    return rc;
}

static int workload_idle(const struct bench_protocol *protocol, const struct bench_options *options,
                         struct run_result *result)
{
    if (!protocol->open_idle)
        return snprintf(result->error, sizeof(result->error),
                        "idle connections are measured over stomp"),
               -1;
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    result->rss_before_kib = options->target_pid ? process_rss_kib(options->target_pid) : -1;
    int *fds = NULL;
    int64_t start = bench_now_ns();
    if (protocol->open_idle(options, options->connections, &fds, result->error,
                            sizeof(result->error)) != 0)
        return -1;
    result->seconds = (double)(bench_now_ns() - start) / 1e9;
    result->connections = options->connections;
    result->rate = result->seconds > 0 ? options->connections / result->seconds : 0;
    /* let the target finish its per-connection work before measuring */
    struct timespec ts = {2, 0};
    nanosleep(&ts, NULL);
    result->rss_after_kib = options->target_pid ? process_rss_kib(options->target_pid) : -1;
    for (int i = 0; i < options->connections; i++)
        close(fds[i]);
    free(fds);
    return 0;
}

static void json_string(const char *key, const char *value)
{
    printf(",\"%s\":\"", key);
    for (const char *p = value ? value : ""; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if ((unsigned char)*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* The summary line; returns the exit status (0 verified, 1 not). */
static int print_summary(const struct bench_options *options, const char *queue,
                         struct run_result *result, int rc)
{
    struct bench_tracker *t = &result->tracker;
    uint64_t expected = result->tracked ? t->expected : 0;
    uint64_t lost = result->tracked ? expected - t->unique : 0;
    /* replies are new messages: Kafka orders them by their own key, not the request's */
    int order_matters = strcmp(options->workload, "request-reply") != 0;
    int ok = rc == 0 && lost == 0 && (!result->tracked || !order_matters || t->out_of_order == 0) &&
             result->main.refused == 0;
    printf("{\"bench\":\"kbridge-bench\"");
    json_string("target", options->target);
    json_string("protocol", options->protocol);
    json_string("workload", options->workload);
    json_string("queue", queue);
    json_string("confirm", options->confirm);
    printf(",\"size\":%zu,\"count\":%" PRIu64 ",\"window\":%d,\"prefetch\":%d", options->size,
           options->count, options->window, options->prefetch);
    if (strcmp(options->workload, "latency") == 0)
        printf(",\"target_rate\":%.0f,\"duration\":%.1f", options->rate, options->duration);
    printf(",\"sent\":%" PRIu64 ",\"confirmed\":%" PRIu64 ",\"refused\":%" PRIu64,
           result->main.sent, result->main.confirmed, result->main.refused);
    if (result->tracked) {
        printf(",\"expected\":%" PRIu64 ",\"received\":%" PRIu64 ",\"lost\":%" PRIu64
               ",\"duplicated\":%" PRIu64 ",\"redelivered\":%" PRIu64 ",\"out_of_order\":%" PRIu64
               ",\"foreign\":%" PRIu64,
               expected, t->received, lost, t->duplicated, t->redelivered, t->out_of_order,
               t->foreign);
        if (t->latency_count) {
            double max = bench_tracker_percentile_ms(t, 100.0);
            printf(",\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f",
                   bench_tracker_percentile_ms(t, 50.0), bench_tracker_percentile_ms(t, 99.0),
                   bench_tracker_percentile_ms(t, 99.9), max);
        }
    }
    if (strcmp(options->workload, "idle") == 0) {
        printf(",\"connections\":%d,\"rss_before_kib\":%ld,\"rss_after_kib\":%ld",
               result->connections, result->rss_before_kib, result->rss_after_kib);
        if (result->connections && result->rss_before_kib >= 0 && result->rss_after_kib >= 0)
            printf(",\"kib_per_connection\":%.2f",
                   (double)(result->rss_after_kib - result->rss_before_kib) / result->connections);
    }
    printf(",\"seconds\":%.3f,\"msgs_per_sec\":%.0f,\"ok\":%s", result->seconds, result->rate,
           ok ? "true" : "false");
    if (result->error[0])
        json_string("error", result->error);
    printf("}\n");
    fflush(stdout);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct bench_options options = {
        .protocol = NULL,
        .workload = NULL,
        .host = "127.0.0.1",
        .count = 100000,
        .size = 100,
        .keys = 16,
        .window = 1000,
        .prefetch = 100,
        .rate = 5000,
        .duration = 10,
        .connections = 1000,
        .verify = 1,
        .idle_timeout = 10,
        .reply_to = "queue",
    };
    enum {
        OPT_NO_VERIFY = 256,
        OPT_TARGET_PID,
        OPT_IDLE_TIMEOUT,
        OPT_KAFKA_PROPERTY,
        OPT_REPLY_TO
    };
    static const struct option long_options[] = {
        {"protocol", required_argument, NULL, 'P'},
        {"workload", required_argument, NULL, 'w'},
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"bootstrap", required_argument, NULL, 'b'},
        {"user", required_argument, NULL, 'u'},
        {"password", required_argument, NULL, 'W'},
        {"queue", required_argument, NULL, 'q'},
        {"target", required_argument, NULL, 't'},
        {"count", required_argument, NULL, 'n'},
        {"size", required_argument, NULL, 's'},
        {"keys", required_argument, NULL, 'k'},
        {"confirm", required_argument, NULL, 'c'},
        {"window", required_argument, NULL, 'x'},
        {"prefetch", required_argument, NULL, 'f'},
        {"rate", required_argument, NULL, 'r'},
        {"duration", required_argument, NULL, 'd'},
        {"connections", required_argument, NULL, 'C'},
        {"target-pid", required_argument, NULL, OPT_TARGET_PID},
        {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
        {"no-verify", no_argument, NULL, OPT_NO_VERIFY},
        {"kafka-property", required_argument, NULL, OPT_KAFKA_PROPERTY},
        {"reply-to", required_argument, NULL, OPT_REPLY_TO},
        {"help", no_argument, NULL, 'H'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    double v;
    while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (opt) {
        case 'P': options.protocol = optarg; break;
        case 'w': options.workload = optarg; break;
        case 'h': options.host = optarg; break;
        case 'b': options.bootstrap = optarg; break;
        case 'u': options.user = optarg; break;
        case 'W': options.password = optarg; break;
        case 'q': options.queue = optarg; break;
        case 't': options.target = optarg; break;
        case 'c': options.confirm = optarg; break;
        case OPT_NO_VERIFY: options.verify = 0; break;
        case OPT_REPLY_TO:
            if (strcmp(optarg, "queue") != 0 && strcmp(optarg, "direct") != 0) {
                fprintf(stderr, "kbridge-bench: --reply-to '%s' is not queue or direct\n", optarg);
                return 2;
            }
            options.reply_to = optarg;
            break;
        case OPT_KAFKA_PROPERTY:
            if (options.kafka_property_count == BENCH_MAX_KAFKA_PROPERTIES) {
                fprintf(stderr, "kbridge-bench: at most %d --kafka-property\n",
                        BENCH_MAX_KAFKA_PROPERTIES);
                return 2;
            }
            options.kafka_properties[options.kafka_property_count++] = optarg;
            break;
        case 'H': usage(stdout); return 0;
        case 'p':
        case 'n':
        case 's':
        case 'k':
        case 'x':
        case 'f':
        case 'r':
        case 'd':
        case 'C':
        case OPT_TARGET_PID:
        case OPT_IDLE_TIMEOUT: {
            const char *name = NULL;
            double min = 0, max = 1e12;
            for (const struct option *o = long_options; o->name; o++)
                if (o->val == opt)
                    name = o->name;
            if (opt == 's')
                min = BENCH_PAYLOAD_MIN, max = 64 * 1024 * 1024;
            if (opt == 'p')
                min = 1, max = 65535;
            if (opt == 'k' || opt == 'C')
                min = 1, max = 1000000;
            if (parse_number(name, optarg, min, max, &v) != 0)
                return 2;
            switch (opt) {
            case 'p': options.port = (int)v; break;
            case 'n': options.count = (uint64_t)v; break;
            case 's': options.size = (size_t)v; break;
            case 'k': options.keys = (int)v; break;
            case 'x': options.window = (int)v; break;
            case 'f': options.prefetch = (int)v; break;
            case 'r': options.rate = v; break;
            case 'd': options.duration = v; break;
            case 'C': options.connections = (int)v; break;
            case OPT_TARGET_PID: options.target_pid = (int)v; break;
            default: options.idle_timeout = v; break;
            }
            break;
        }
        default: usage(stderr); return 2;
        }
    }
    const struct bench_protocol *protocol =
        options.protocol ? find_protocol(options.protocol) : NULL;
    if (!protocol || !options.workload || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!options.port)
        options.port = protocol == &bench_amqp || protocol == &bench_amqp091 ? 5672 : 61613;
    if (!options.confirm)
        options.confirm = protocol == &bench_amqp || protocol == &bench_amqp091 ? "unsettled"
                          : protocol == &bench_stomp                            ? "each"
                                                                                : "delivery-report";
    if (!options.target)
        options.target = protocol == &bench_kafka ? "kafka" : "kbridge";
    signal(SIGPIPE, SIG_IGN);

    uint32_t tag = 0;
    if (getrandom(&tag, sizeof(tag), 0) != sizeof(tag))
        tag = (uint32_t)getpid() ^ (uint32_t)bench_now_ns();
    char queue[256], destination[300];
    if (options.queue)
        snprintf(queue, sizeof(queue), "%s", options.queue);
    else
        snprintf(queue, sizeof(queue), "bench-%08" PRIx32, tag);
    protocol->queue_address(destination, sizeof(destination), queue);

    struct run_result result;
    memset(&result, 0, sizeof(result));
    int rc;
    if (strcmp(options.workload, "publish") == 0)
        rc = workload_publish(protocol, &options, tag, destination, &result);
    else if (strcmp(options.workload, "consume") == 0)
        rc = workload_consume(protocol, &options, tag, destination, &result);
    else if (strcmp(options.workload, "latency") == 0)
        rc = workload_latency(protocol, &options, tag, destination, &result);
    else if (strcmp(options.workload, "request-reply") == 0)
        rc = workload_request_reply(protocol, &options, tag, destination, &result);
    else if (strcmp(options.workload, "idle") == 0)
        rc = workload_idle(protocol, &options, &result);
    else {
        fprintf(stderr, "kbridge-bench: unknown workload '%s'\n", options.workload);
        return 2;
    }
    int status = print_summary(&options, queue, &result, rc);
    if (result.tracked)
        bench_tracker_free(&result.tracker);
    return status;
}
