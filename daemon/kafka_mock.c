/* SPDX-License-Identifier: Apache-2.0 */
/* kafka_mock.c -- owns the in-memory Kafka cluster (librdkafka's mock
 * cluster) used by `kafka.bootstrap: embedded` and by kbridge-devkafka, and
 * the text command language that injects faults into it (broker down/up,
 * round-trip delay, request errors, topic creation, leader and coordinator
 * moves). The grammar is documented in docs/devkafka.md.
 *
 * Facts about the librdkafka 2.0.2 mock that shape this file:
 *  - the partition count of auto-created topics is fixed at 4;
 *  - rd_kafka_mock_topic_create ignores its replication factor (replicas
 *    are always min(3, brokers));
 *  - setting a leader on a topic that does not exist auto-creates it, so
 *    `leader` checks the topic through a Metadata request first;
 *  - only some request handlers consume injected errors (see api_keys[]). */
#include "kafka_mock.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "log.h"

#define MOCK_LOG_COMPONENT "kafka-mock"
#define MOCK_MAX_BROKERS 32
#define MOCK_MAX_PARTITIONS 10000
#define MOCK_MAX_RTT_MS 600000
#define MOCK_MAX_ERROR_COUNT 100000
#define MOCK_MAX_LINE 1024
#define MOCK_MAX_TOKENS 8
#define MOCK_PROBE_TIMEOUT_MS 5000
#define KAFKA_MAX_TOPIC_NAME 249

struct kafka_mock {
    rd_kafka_t *host;                 /* handle whose threads run the cluster */
    rd_kafka_mock_cluster_t *cluster; /* owned; destroyed before host */
    int broker_count;
    int default_partitions;
};

/* ---------------------------------------------------------------- tables */

/* Kafka protocol request types (ApiKey numbers as in librdkafka's
 * rdkafka_protocol.h). `injectable` says whether the 2.0.2 mock's handler
 * for that request consumes pushed errors: Metadata is served but never
 * fails, the others are not implemented by the mock at all. */
struct api_key_entry {
    const char *name;
    int key;
    bool injectable;
    const char *why_not; /* when !injectable */
};

static const struct api_key_entry api_keys[] = {
    {"Produce", 0, true, NULL},
    {"Fetch", 1, true, NULL},
    {"ListOffsets", 2, true, NULL},
    {"Metadata", 3, false, "the mock's Metadata handler never returns injected errors"},
    {"OffsetCommit", 8, true, NULL},
    {"OffsetFetch", 9, true, NULL},
    {"FindCoordinator", 10, true, NULL},
    {"JoinGroup", 11, true, NULL},
    {"Heartbeat", 12, true, NULL},
    {"LeaveGroup", 13, true, NULL},
    {"SyncGroup", 14, true, NULL},
    {"DescribeGroups", 15, false, "the mock does not implement DescribeGroups"},
    {"ListGroups", 16, false, "the mock does not implement ListGroups"},
    {"ApiVersion", 18, true, NULL},
    {"CreateTopics", 19, false, "the mock does not implement CreateTopics"},
    {"DeleteTopics", 20, false, "the mock does not implement DeleteTopics"},
    {"InitProducerId", 22, true, NULL},
    {"AddPartitionsToTxn", 24, true, NULL},
    {"AddOffsetsToTxn", 25, true, NULL},
    {"EndTxn", 26, true, NULL},
    {"TxnOffsetCommit", 28, true, NULL},
};

#define API_KEY_COUNT (sizeof(api_keys) / sizeof(api_keys[0]))

/* Names Kafka renamed after librdkafka fixed its table. */
static const struct {
    const char *name;
    rd_kafka_resp_err_t code;
} error_aliases[] = {
    {"NOT_LEADER_OR_FOLLOWER", RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION},
};

/* ---------------------------------------------------------------- helpers */

static int reply_error(char *reply, size_t reply_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Write "error: <message>" into reply; returns -1 for `return reply_error(...)`. */
static int reply_error(char *reply, size_t reply_size, const char *fmt, ...)
{
    if (reply_size == 0)
        return -1;
    int n = snprintf(reply, reply_size, "error: ");
    if (n > 0 && (size_t)n < reply_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reply + n, reply_size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    /* one line, always */
    for (char *p = reply; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return -1;
}

static int reply_ok(char *reply, size_t reply_size)
{
    if (reply_size > 0)
        snprintf(reply, reply_size, "ok");
    return 0;
}

static void set_err(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    if (!err || err_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

/* Parse a whole decimal integer in [min, max]; 0 on success, -1 otherwise. */
static int parse_long(const char *text, long min, long max, long *out)
{
    if (!text || !*text || isspace((unsigned char)*text))
        return -1;
    errno = 0;
    char *end = NULL;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

/* Map librdkafka's syslog-style levels onto ours. */
static enum log_level map_syslog_level(int level)
{
    if (level <= 3)
        return LOG_LEVEL_ERROR;
    if (level == 4)
        return LOG_LEVEL_WARN;
    if (level <= 6)
        return LOG_LEVEL_INFO;
    return LOG_LEVEL_DEBUG;
}

/* Log callback of the host handle; runs on librdkafka threads. */
static void host_log_cb(const rd_kafka_t *rk, int level, const char *facility, const char *buf)
{
    (void)rk;
    enum log_level mapped = map_syslog_level(level);
    /* The host handle has no bootstrap.servers on purpose. */
    if (strcmp(facility, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers"))
        mapped = LOG_LEVEL_DEBUG;
    log_write(mapped, MOCK_LOG_COMPONENT, "%s: %s", facility, buf);
}

/* Log callback of short-lived probe clients: connection noise while brokers
 * are down is expected, so everything goes to debug. */
static void probe_log_cb(const rd_kafka_t *rk, int level, const char *facility, const char *buf)
{
    (void)rk;
    log_write(LOG_LEVEL_DEBUG, MOCK_LOG_COMPONENT, "probe %s (level %d): %s", facility, level, buf);
}

/* Kafka's topic name rule: 1..249 of [a-zA-Z0-9._-], not "." or "..". */
static int check_topic_name(const char *topic, char *err, size_t err_size)
{
    size_t len = topic ? strlen(topic) : 0;
    if (len == 0) {
        set_err(err, err_size, "topic name is empty");
        return -1;
    }
    if (len > KAFKA_MAX_TOPIC_NAME) {
        set_err(err, err_size, "topic name is %zu characters long (at most %d)", len,
                KAFKA_MAX_TOPIC_NAME);
        return -1;
    }
    if (strcmp(topic, ".") == 0 || strcmp(topic, "..") == 0) {
        set_err(err, err_size, "topic name '%s' is not allowed", topic);
        return -1;
    }
    for (const char *p = topic; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-') {
            set_err(err, err_size, "topic name '%s' has a character other than a-z A-Z 0-9 . _ -",
                    topic);
            return -1;
        }
    }
    return 0;
}

/* ApiKey from a name (case-insensitive) or a number. */
static const struct api_key_entry *lookup_api_key(const char *text)
{
    long number;
    bool numeric = parse_long(text, 0, SHRT_MAX, &number) == 0;
    for (size_t i = 0; i < API_KEY_COUNT; i++) {
        if (numeric ? api_keys[i].key == number : strcasecmp(api_keys[i].name, text) == 0)
            return &api_keys[i];
    }
    return NULL;
}

/* Error code from a name (case-insensitive, optional RD_KAFKA_RESP_ERR_
 * prefix) or a number. Only broker error codes (> 0) are accepted, plus
 * _TRANSPORT, which makes the mock close the connection. */
static int lookup_error(const char *text, rd_kafka_resp_err_t *out, char *err, size_t err_size)
{
    const struct rd_kafka_err_desc *descs;
    size_t desc_count;
    rd_kafka_get_err_descs(&descs, &desc_count);

    long number;
    bool numeric = parse_long(text, INT_MIN, INT_MAX, &number) == 0;
    const char *name = text;
    static const char prefix[] = "RD_KAFKA_RESP_ERR_";
    if (!numeric && strncasecmp(name, prefix, sizeof(prefix) - 1) == 0)
        name += sizeof(prefix) - 1;

    bool found = false;
    rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (size_t i = 0; i < desc_count && !found; i++) {
        if (!descs[i].name)
            continue;
        if (numeric ? (long)descs[i].code == number : strcasecmp(descs[i].name, name) == 0) {
            code = descs[i].code;
            found = true;
        }
    }
    for (size_t i = 0; !numeric && !found && i < sizeof(error_aliases) / sizeof(error_aliases[0]);
         i++) {
        if (strcasecmp(error_aliases[i].name, name) == 0) {
            code = error_aliases[i].code;
            found = true;
        }
    }
    if (!found) {
        set_err(err, err_size,
                "unknown error '%s' (a Kafka error name like NOT_LEADER_FOR_PARTITION or a "
                "code number)",
                text);
        return -1;
    }
    if (code == RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_err(err, err_size, "error '%s' is NO_ERROR, which injects nothing", text);
        return -1;
    }
    if ((int)code < 0 && code != RD_KAFKA_RESP_ERR__TRANSPORT) {
        set_err(err, err_size,
                "error '%s' (%d) is a librdkafka-internal code a broker cannot send (only "
                "_TRANSPORT, which closes the connection, is allowed)",
                text, (int)code);
        return -1;
    }
    *out = code;
    return 0;
}

/* Parse a broker id: 1..N, or "all" (-1) when allow_all. */
static int parse_broker_id(const struct kafka_mock *mock, const char *text, bool allow_all,
                           int32_t *out, char *err, size_t err_size)
{
    if (allow_all && strcasecmp(text, "all") == 0) {
        *out = -1;
        return 0;
    }
    long id;
    if (parse_long(text, LONG_MIN, LONG_MAX, &id) != 0) {
        set_err(err, err_size, "broker id '%s' is not a number", text);
        return -1;
    }
    if (id < 1 || id > mock->broker_count) {
        set_err(err, err_size, "broker %ld does not exist (brokers are 1..%d)", id,
                mock->broker_count);
        return -1;
    }
    *out = (int32_t)id;
    return 0;
}

/* Create a topic on the cluster after validating everything. */
static int create_topic(struct kafka_mock *mock, const char *topic, int partitions, int replication,
                        char *err, size_t err_size)
{
    char reason[256];
    if (check_topic_name(topic, reason, sizeof(reason)) != 0) {
        set_err(err, err_size, "cannot create topic: %s", reason);
        return -1;
    }
    if (partitions <= 0)
        partitions = mock->default_partitions;
    if (partitions > MOCK_MAX_PARTITIONS) {
        set_err(err, err_size, "cannot create topic '%s': %d partitions is more than %d", topic,
                partitions, MOCK_MAX_PARTITIONS);
        return -1;
    }
    rd_kafka_resp_err_t code =
        rd_kafka_mock_topic_create(mock->cluster, topic, partitions, replication);
    if (code == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        set_err(err, err_size, "topic '%s' already exists", topic);
        return -1;
    }
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_err(err, err_size, "cannot create topic '%s': %s", topic, rd_kafka_err2str(code));
        return -1;
    }
    log_info(MOCK_LOG_COMPONENT, "created topic %s with %d partitions", topic, partitions);
    return 0;
}

/* Ask the cluster, through a short-lived client, how many partitions
 * `topic` has: *count is 0 when it does not exist. Lists all topics, which
 * the mock answers without auto-creating anything. */
static int probe_partition_count(struct kafka_mock *mock, const char *topic, int *count, char *err,
                                 size_t err_size)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers",
                          rd_kafka_mock_cluster_bootstraps(mock->cluster), errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "kbridge-mock-probe", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        set_err(err, err_size, "cannot configure a metadata client: %s", errstr);
        return -1;
    }
    rd_kafka_conf_set_log_cb(conf, probe_log_cb);
    rd_kafka_t *probe = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!probe) {
        rd_kafka_conf_destroy(conf);
        set_err(err, err_size, "cannot create a metadata client: %s", errstr);
        return -1;
    }

    const struct rd_kafka_metadata *metadata = NULL;
    rd_kafka_resp_err_t code = rd_kafka_metadata(probe, 1, NULL, &metadata, MOCK_PROBE_TIMEOUT_MS);
    int rc = 0;
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
        set_err(err, err_size, "cannot read metadata to check topic '%s': %s", topic,
                rd_kafka_err2str(code));
        rc = -1;
    } else {
        *count = 0;
        for (int i = 0; i < metadata->topic_cnt; i++) {
            if (strcmp(metadata->topics[i].topic, topic) == 0) {
                *count = metadata->topics[i].partition_cnt;
                break;
            }
        }
        rd_kafka_metadata_destroy(metadata);
    }
    rd_kafka_destroy(probe);
    return rc;
}

/* ---------------------------------------------------------------- commands */

/* broker ID|all down | up | rtt MS */
static int command_broker(struct kafka_mock *mock, char **args, int count, char *reply,
                          size_t reply_size)
{
    static const char usage[] = "usage: broker ID down | broker ID up | broker ID rtt MS";
    if (count < 3)
        return reply_error(reply, reply_size, "%s", usage);

    char reason[256];
    int32_t id;
    if (parse_broker_id(mock, args[1], true, &id, reason, sizeof(reason)) != 0)
        return reply_error(reply, reply_size, "%s", reason);

    const char *action = args[2];
    rd_kafka_resp_err_t code;
    if (strcasecmp(action, "down") == 0 || strcasecmp(action, "up") == 0) {
        if (count != 3)
            return reply_error(reply, reply_size, "too many arguments; %s", usage);
        bool down = strcasecmp(action, "down") == 0;
        code = down ? rd_kafka_mock_broker_set_down(mock->cluster, id)
                    : rd_kafka_mock_broker_set_up(mock->cluster, id);
        if (code == RD_KAFKA_RESP_ERR_NO_ERROR)
            log_info(MOCK_LOG_COMPONENT, "broker %s set %s", args[1], down ? "down" : "up");
    } else if (strcasecmp(action, "rtt") == 0) {
        if (count != 4)
            return reply_error(reply, reply_size, "%s", usage);
        long rtt_ms;
        if (parse_long(args[3], 0, MOCK_MAX_RTT_MS, &rtt_ms) != 0)
            return reply_error(reply, reply_size,
                               "rtt '%s' is not a number of milliseconds in 0..%d", args[3],
                               MOCK_MAX_RTT_MS);
        code = rd_kafka_mock_broker_set_rtt(mock->cluster, id, (int)rtt_ms);
        if (code == RD_KAFKA_RESP_ERR_NO_ERROR)
            log_info(MOCK_LOG_COMPONENT, "broker %s rtt set to %ld ms", args[1], rtt_ms);
    } else {
        return reply_error(reply, reply_size,
                           "unknown broker action '%s' (expected down, up or rtt)", action);
    }
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR)
        return reply_error(reply, reply_size, "broker %s %s failed: %s", args[1], action,
                           rd_kafka_err2str(code));
    return reply_ok(reply, reply_size);
}

/* Resolve REQUEST for errors/clear; NULL with reply filled on failure. */
static const struct api_key_entry *command_request(const char *text, char *reply, size_t reply_size)
{
    const struct api_key_entry *api = lookup_api_key(text);
    if (!api) {
        reply_error(reply, reply_size,
                    "unknown request '%s' (a Kafka request name like Produce or its ApiKey "
                    "number)",
                    text);
        return NULL;
    }
    if (!api->injectable) {
        reply_error(reply, reply_size, "cannot inject errors into %s (ApiKey %d): %s", api->name,
                    api->key, api->why_not);
        return NULL;
    }
    return api;
}

/* errors REQUEST COUNT ERROR */
static int command_errors(struct kafka_mock *mock, char **args, int count, char *reply,
                          size_t reply_size)
{
    if (count != 4)
        return reply_error(reply, reply_size, "usage: errors REQUEST COUNT ERROR");
    const struct api_key_entry *api = command_request(args[1], reply, reply_size);
    if (!api)
        return -1;
    long error_count;
    if (parse_long(args[2], 1, MOCK_MAX_ERROR_COUNT, &error_count) != 0)
        return reply_error(reply, reply_size, "count '%s' is not a number in 1..%d", args[2],
                           MOCK_MAX_ERROR_COUNT);
    char reason[256];
    rd_kafka_resp_err_t code;
    if (lookup_error(args[3], &code, reason, sizeof(reason)) != 0)
        return reply_error(reply, reply_size, "%s", reason);

    rd_kafka_resp_err_t *codes = malloc((size_t)error_count * sizeof(*codes));
    if (!codes)
        return reply_error(reply, reply_size, "out of memory for %ld errors", error_count);
    for (long i = 0; i < error_count; i++)
        codes[i] = code;
    rd_kafka_mock_push_request_errors_array(mock->cluster, (int16_t)api->key, (size_t)error_count,
                                            codes);
    free(codes);
    log_info(MOCK_LOG_COMPONENT, "next %ld %s requests fail with %s", error_count, api->name,
             rd_kafka_err2name(code));
    return reply_ok(reply, reply_size);
}

/* clear REQUEST */
static int command_clear(struct kafka_mock *mock, char **args, int count, char *reply,
                         size_t reply_size)
{
    if (count != 2)
        return reply_error(reply, reply_size, "usage: clear REQUEST");
    const struct api_key_entry *api = command_request(args[1], reply, reply_size);
    if (!api)
        return -1;
    rd_kafka_mock_clear_request_errors(mock->cluster, (int16_t)api->key);
    log_info(MOCK_LOG_COMPONENT, "cleared pending %s errors", api->name);
    return reply_ok(reply, reply_size);
}

/* topic create NAME [PARTITIONS [REPLICATION]] */
static int command_topic(struct kafka_mock *mock, char **args, int count, char *reply,
                         size_t reply_size)
{
    static const char usage[] = "usage: topic create NAME [PARTITIONS [REPLICATION]]";
    if (count < 2)
        return reply_error(reply, reply_size, "%s", usage);
    if (strcasecmp(args[1], "create") != 0)
        return reply_error(reply, reply_size, "unknown topic action '%s' (expected create)",
                           args[1]);
    if (count < 3 || count > 5)
        return reply_error(reply, reply_size, "%s", usage);

    long partitions = 0;
    if (count >= 4 && parse_long(args[3], 1, MOCK_MAX_PARTITIONS, &partitions) != 0)
        return reply_error(reply, reply_size, "partitions '%s' is not a number in 1..%d", args[3],
                           MOCK_MAX_PARTITIONS);
    int max_replication = mock->broker_count < 3 ? mock->broker_count : 3;
    long replication = max_replication;
    if (count == 5 && parse_long(args[4], 1, mock->broker_count, &replication) != 0)
        return reply_error(reply, reply_size, "replication '%s' is not a number in 1..%d", args[4],
                           mock->broker_count);

    char reason[512];
    if (create_topic(mock, args[2], (int)partitions, (int)replication, reason, sizeof(reason)) != 0)
        return reply_error(reply, reply_size, "%s", reason);
    return reply_ok(reply, reply_size);
}

/* leader TOPIC PARTITION BROKER|none */
static int command_leader(struct kafka_mock *mock, char **args, int count, char *reply,
                          size_t reply_size)
{
    if (count != 4)
        return reply_error(reply, reply_size, "usage: leader TOPIC PARTITION BROKER|none");
    const char *topic = args[1];
    char reason[512];
    if (check_topic_name(topic, reason, sizeof(reason)) != 0)
        return reply_error(reply, reply_size, "%s", reason);
    long partition;
    if (parse_long(args[2], 0, INT32_MAX, &partition) != 0)
        return reply_error(reply, reply_size, "partition '%s' is not a number >= 0", args[2]);
    int32_t broker_id = -1;
    if (strcasecmp(args[3], "none") != 0 &&
        parse_broker_id(mock, args[3], false, &broker_id, reason, sizeof(reason)) != 0)
        return reply_error(reply, reply_size, "%s", reason);

    /* The mock would auto-create a missing topic with PARTITION+1
     * partitions; refuse instead. */
    int partition_count = 0;
    if (probe_partition_count(mock, topic, &partition_count, reason, sizeof(reason)) != 0)
        return reply_error(reply, reply_size, "%s", reason);
    if (partition_count == 0)
        return reply_error(reply, reply_size, "topic '%s' does not exist", topic);
    if (partition >= partition_count)
        return reply_error(reply, reply_size,
                           "topic '%s' has no partition %ld (partitions are 0..%d)", topic,
                           partition, partition_count - 1);

    rd_kafka_resp_err_t code =
        rd_kafka_mock_partition_set_leader(mock->cluster, topic, (int32_t)partition, broker_id);
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR)
        return reply_error(reply, reply_size, "cannot set leader of %s [%ld]: %s", topic, partition,
                           rd_kafka_err2str(code));
    log_info(MOCK_LOG_COMPONENT, "leader of %s [%ld] set to %s", topic, partition, args[3]);
    return reply_ok(reply, reply_size);
}

/* coordinator group|txn KEY BROKER */
static int command_coordinator(struct kafka_mock *mock, char **args, int count, char *reply,
                               size_t reply_size)
{
    if (count != 4)
        return reply_error(reply, reply_size, "usage: coordinator group|txn KEY BROKER");
    const char *key_type;
    if (strcasecmp(args[1], "group") == 0)
        key_type = "group";
    else if (strcasecmp(args[1], "txn") == 0 || strcasecmp(args[1], "transaction") == 0)
        key_type = "transaction";
    else
        return reply_error(reply, reply_size,
                           "unknown coordinator type '%s' (expected group or txn)", args[1]);
    char reason[256];
    int32_t broker_id;
    if (parse_broker_id(mock, args[3], false, &broker_id, reason, sizeof(reason)) != 0)
        return reply_error(reply, reply_size, "%s", reason);
    rd_kafka_resp_err_t code =
        rd_kafka_mock_coordinator_set(mock->cluster, key_type, args[2], broker_id);
    if (code != RD_KAFKA_RESP_ERR_NO_ERROR)
        return reply_error(reply, reply_size, "cannot set %s coordinator for '%s': %s", key_type,
                           args[2], rd_kafka_err2str(code));
    log_info(MOCK_LOG_COMPONENT, "%s coordinator for %s set to broker %d", key_type, args[2],
             (int)broker_id);
    return reply_ok(reply, reply_size);
}

/* ---------------------------------------------------------------- public API */

struct kafka_mock *kafka_mock_start(int brokers, int default_partitions, char *err, size_t err_size)
{
    if (brokers < 1 || brokers > MOCK_MAX_BROKERS) {
        set_err(err, err_size, "mock cluster: %d brokers is not in 1..%d", brokers,
                MOCK_MAX_BROKERS);
        return NULL;
    }
    if (default_partitions < 1 || default_partitions > MOCK_MAX_PARTITIONS) {
        set_err(err, err_size, "mock cluster: %d default partitions is not in 1..%d",
                default_partitions, MOCK_MAX_PARTITIONS);
        return NULL;
    }

    struct kafka_mock *mock = calloc(1, sizeof(*mock));
    if (!mock) {
        set_err(err, err_size, "mock cluster: out of memory");
        return NULL;
    }
    mock->broker_count = brokers;
    mock->default_partitions = default_partitions;

    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The host handle never connects anywhere; it only lends its threads
     * and queues to the cluster. */
    if (rd_kafka_conf_set(conf, "client.id", "kbridge-mock-host", errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        free(mock);
        set_err(err, err_size, "mock cluster: cannot configure host handle: %s", errstr);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, host_log_cb);
    mock->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!mock->host) {
        rd_kafka_conf_destroy(conf);
        free(mock);
        set_err(err, err_size, "mock cluster: cannot create host handle: %s", errstr);
        return NULL;
    }

    mock->cluster = rd_kafka_mock_cluster_new(mock->host, brokers);
    if (!mock->cluster) {
        rd_kafka_destroy(mock->host);
        free(mock);
        set_err(err, err_size, "mock cluster: cannot start %d brokers (see earlier log)", brokers);
        return NULL;
    }
    log_debug(MOCK_LOG_COMPONENT, "mock cluster of %d brokers at %s", brokers,
              rd_kafka_mock_cluster_bootstraps(mock->cluster));
    return mock;
}

const char *kafka_mock_bootstraps(const struct kafka_mock *mock)
{
    return rd_kafka_mock_cluster_bootstraps(mock->cluster);
}

int kafka_mock_topic_create(struct kafka_mock *mock, const char *topic, int partitions, char *err,
                            size_t err_size)
{
    int replication = mock->broker_count < 3 ? mock->broker_count : 3;
    return create_topic(mock, topic, partitions, replication, err, err_size);
}

int kafka_mock_command(struct kafka_mock *mock, const char *line, char *reply, size_t reply_size)
{
    size_t len = strlen(line);
    if (len >= MOCK_MAX_LINE)
        return reply_error(reply, reply_size, "command is %zu bytes long (at most %d)", len,
                           MOCK_MAX_LINE - 1);
    char buffer[MOCK_MAX_LINE];
    memcpy(buffer, line, len + 1);

    char *args[MOCK_MAX_TOKENS];
    int count = 0;
    char *save = NULL;
    for (char *token = strtok_r(buffer, " \t\r\n", &save); token;
         token = strtok_r(NULL, " \t\r\n", &save)) {
        if (count == MOCK_MAX_TOKENS)
            return reply_error(reply, reply_size, "too many words in command (at most %d)",
                               MOCK_MAX_TOKENS);
        args[count++] = token;
    }
    if (count == 0)
        return reply_error(reply, reply_size, "empty command");

    const char *command = args[0];
    if (strcasecmp(command, "broker") == 0)
        return command_broker(mock, args, count, reply, reply_size);
    if (strcasecmp(command, "errors") == 0)
        return command_errors(mock, args, count, reply, reply_size);
    if (strcasecmp(command, "clear") == 0)
        return command_clear(mock, args, count, reply, reply_size);
    if (strcasecmp(command, "topic") == 0)
        return command_topic(mock, args, count, reply, reply_size);
    if (strcasecmp(command, "leader") == 0)
        return command_leader(mock, args, count, reply, reply_size);
    if (strcasecmp(command, "coordinator") == 0)
        return command_coordinator(mock, args, count, reply, reply_size);
    if (strcasecmp(command, "ping") == 0) {
        if (count != 1)
            return reply_error(reply, reply_size, "usage: ping");
        return reply_ok(reply, reply_size);
    }
    return reply_error(reply, reply_size,
                       "unknown command '%s' (expected broker, errors, clear, topic, leader, "
                       "coordinator or ping)",
                       command);
}

void kafka_mock_stop(struct kafka_mock *mock)
{
    if (!mock)
        return;
    rd_kafka_mock_cluster_destroy(mock->cluster);
    rd_kafka_destroy(mock->host);
    free(mock);
}
