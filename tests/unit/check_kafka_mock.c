/* SPDX-License-Identifier: Apache-2.0 */
/* check_kafka_mock.c -- unit tests of daemon/kafka_mock.c against a real
 * librdkafka mock cluster: start arguments, every command form and error
 * message, and the effect of commands as seen by a real client (topic
 * partition counts, leaders, injected produce errors, broker down/up, rtt). */
#include <check.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "kafka_mock.h"
#include "log.h"
#include "unit_main.h"

static struct kafka_mock *mock; /* 3 brokers, default 5 partitions */

static void setup_mock(void)
{
    char err[256] = "";
    log_set_level(LOG_LEVEL_WARN);
    mock = kafka_mock_start(3, 5, err, sizeof(err));
    ck_assert_msg(mock != NULL, "kafka_mock_start: %s", err);
}

static void teardown_mock(void)
{
    kafka_mock_stop(mock);
    mock = NULL;
}

/* Run `line` and check the reply and return code. */
static void expect_reply(const char *line, const char *expected)
{
    char reply[512];
    memset(reply, 'x', sizeof(reply));
    int rc = kafka_mock_command(mock, line, reply, sizeof(reply));
    ck_assert_msg(strcmp(reply, expected) == 0, "command '%s': got '%s', expected '%s'", line,
                  reply, expected);
    ck_assert_int_eq(rc, strcmp(expected, "ok") == 0 ? 0 : -1);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ client helpers */

static void quiet_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

static void delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque)
{
    (void)rk;
    (void)opaque;
    rd_kafka_resp_err_t *result = message->_private;
    *result = message->err;
}

/* A producer on the mock; extra config as name/value pairs ending in NULL. */
static rd_kafka_t *new_producer(const char *first_name, ...)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ck_assert(rd_kafka_conf_set(conf, "bootstrap.servers", kafka_mock_bootstraps(mock), errstr,
                                sizeof(errstr)) == RD_KAFKA_CONF_OK);
    va_list ap;
    va_start(ap, first_name);
    for (const char *name = first_name; name; name = va_arg(ap, const char *)) {
        const char *value = va_arg(ap, const char *);
        ck_assert_msg(rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) ==
                          RD_KAFKA_CONF_OK,
                      "%s: %s", name, errstr);
    }
    va_end(ap);
    rd_kafka_conf_set_dr_msg_cb(conf, delivery_cb);
    rd_kafka_conf_set_log_cb(conf, quiet_log_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    ck_assert_msg(rk != NULL, "rd_kafka_new: %s", errstr);
    return rk;
}

/* Produce one message to topic/partition (RD_KAFKA_PARTITION_UA: any) and
 * wait for its delivery report. */
static rd_kafka_resp_err_t produce_one(rd_kafka_t *rk, const char *topic, int32_t partition,
                                       int wait_ms)
{
    rd_kafka_resp_err_t result = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_VALUE("hello", 5),
        RD_KAFKA_V_KEY("k", 1), RD_KAFKA_V_OPAQUE(&result), RD_KAFKA_V_END);
    ck_assert_msg(err == RD_KAFKA_RESP_ERR_NO_ERROR, "producev: %s", rd_kafka_err2str(err));
    rd_kafka_flush(rk, wait_ms);
    ck_assert_msg(result != RD_KAFKA_RESP_ERR__IN_PROGRESS, "no delivery report within %d ms",
                  wait_ms);
    return result;
}

/* Metadata of one topic from a separate client; caller destroys. */
static const rd_kafka_metadata_topic_t *topic_metadata(rd_kafka_t *rk, const char *topic,
                                                       const struct rd_kafka_metadata **all)
{
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, all, 5000);
    ck_assert_msg(err == RD_KAFKA_RESP_ERR_NO_ERROR, "metadata: %s", rd_kafka_err2str(err));
    for (int i = 0; i < (*all)->topic_cnt; i++)
        if (strcmp((*all)->topics[i].topic, topic) == 0)
            return &(*all)->topics[i];
    return NULL;
}

static int partition_count(const char *topic)
{
    rd_kafka_t *rk = new_producer(NULL);
    const struct rd_kafka_metadata *all = NULL;
    const rd_kafka_metadata_topic_t *t = topic_metadata(rk, topic, &all);
    int count = t ? t->partition_cnt : 0;
    rd_kafka_metadata_destroy(all);
    rd_kafka_destroy(rk);
    return count;
}

/* ------------------------------------------------------------ start/stop */

START_TEST(test_start_rejects_bad_arguments)
{
    char err[256];
    log_set_level(LOG_LEVEL_WARN);
    ck_assert_ptr_null(kafka_mock_start(0, 4, err, sizeof(err)));
    ck_assert_str_eq(err, "mock cluster: 0 brokers is not in 1..32");
    ck_assert_ptr_null(kafka_mock_start(33, 4, err, sizeof(err)));
    ck_assert_str_eq(err, "mock cluster: 33 brokers is not in 1..32");
    ck_assert_ptr_null(kafka_mock_start(1, 0, err, sizeof(err)));
    ck_assert_str_eq(err, "mock cluster: 0 default partitions is not in 1..10000");
    kafka_mock_stop(NULL);
}
END_TEST

START_TEST(test_bootstraps_list_every_broker)
{
    const char *bootstraps = kafka_mock_bootstraps(mock);
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", bootstraps);
    int brokers = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        int port = 0;
        ck_assert_msg(sscanf(item, "127.0.0.1:%d", &port) == 1 && port > 0, "bad bootstrap '%s'",
                      item);
        brokers++;
    }
    ck_assert_int_eq(brokers, 3);
}
END_TEST

/* ------------------------------------------------------------ command forms */

START_TEST(test_command_forms_ok)
{
    static const char *const commands[] = {
        "ping",
        "  ping  ",
        "PING",
        "broker 1 down",
        "broker 1 up",
        "broker 2 rtt 0",
        "broker 3 RTT 15",
        "broker all rtt 0",
        "broker all down",
        "broker all up",
        "errors Produce 3 NOT_LEADER_FOR_PARTITION",
        "errors produce 1 not_leader_for_partition",
        "errors PRODUCE 1 RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT",
        "errors 0 2 6",
        "errors Fetch 1 NOT_LEADER_OR_FOLLOWER",
        "errors JoinGroup 1 _TRANSPORT",
        "errors Heartbeat 2 rd_kafka_resp_err__transport",
        "errors InitProducerId 1 -195",
        "errors ApiVersion 1 UNSUPPORTED_VERSION",
        "errors TxnOffsetCommit 1 COORDINATOR_NOT_AVAILABLE",
        "clear Produce",
        "clear 1",
        "clear JoinGroup",
        "clear Heartbeat",
        "clear InitProducerId",
        "clear ApiVersion",
        "clear TxnOffsetCommit",
        "clear Fetch",
        "topic create forms-a",
        "topic create forms-b 2",
        "topic create forms-c 3 3",
        "topic create forms.d_e-f 1 1",
        "leader forms-b 1 3",
        "leader forms-b 0 none",
        "coordinator group my-group 2",
        "coordinator txn my-txn 3",
        "coordinator transaction my-txn 1",
        "\tbroker\t1\tup\t",
    };
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        expect_reply(commands[i], "ok");
}
END_TEST

START_TEST(test_command_errors)
{
    static const struct {
        const char *line;
        const char *reply;
    } cases[] = {
        {"", "error: empty command"},
        {"   \t", "error: empty command"},
        {"frobnicate", "error: unknown command 'frobnicate' (expected broker, errors, clear, "
                       "topic, leader, coordinator or ping)"},
        {"ping now", "error: usage: ping"},
        {"a b c d e f g h i", "error: too many words in command (at most 8)"},
        /* broker */
        {"broker", "error: usage: broker ID down | broker ID up | broker ID rtt MS"},
        {"broker 1", "error: usage: broker ID down | broker ID up | broker ID rtt MS"},
        {"broker x down", "error: broker id 'x' is not a number"},
        {"broker 1x down", "error: broker id '1x' is not a number"},
        {"broker 0 down", "error: broker 0 does not exist (brokers are 1..3)"},
        {"broker 4 up", "error: broker 4 does not exist (brokers are 1..3)"},
        {"broker -1 up", "error: broker -1 does not exist (brokers are 1..3)"},
        {"broker 99999999999999999999 up",
         "error: broker id '99999999999999999999' is not a number"},
        {"broker 1 sideways", "error: unknown broker action 'sideways' (expected down, up or rtt)"},
        {"broker 1 down now",
         "error: too many arguments; usage: broker ID down | broker ID up | broker ID rtt MS"},
        {"broker 1 rtt", "error: usage: broker ID down | broker ID up | broker ID rtt MS"},
        {"broker 1 rtt fast", "error: rtt 'fast' is not a number of milliseconds in 0..600000"},
        {"broker 1 rtt -5", "error: rtt '-5' is not a number of milliseconds in 0..600000"},
        {"broker 1 rtt 600001", "error: rtt '600001' is not a number of milliseconds in 0..600000"},
        /* errors */
        {"errors", "error: usage: errors REQUEST COUNT ERROR"},
        {"errors Produce 1", "error: usage: errors REQUEST COUNT ERROR"},
        {"errors Produce 1 6 7", "error: usage: errors REQUEST COUNT ERROR"},
        {"errors Bogus 1 6", "error: unknown request 'Bogus' (a Kafka request name like Produce "
                             "or its ApiKey number)"},
        {"errors 99 1 6", "error: unknown request '99' (a Kafka request name like Produce or its "
                          "ApiKey number)"},
        {"errors Metadata 1 6", "error: cannot inject errors into Metadata (ApiKey 3): the mock's "
                                "Metadata handler never returns injected errors"},
        {"errors CreateTopics 1 6", "error: cannot inject errors into CreateTopics (ApiKey 19): "
                                    "the mock does not implement CreateTopics"},
        {"errors 15 1 6", "error: cannot inject errors into DescribeGroups (ApiKey 15): the mock "
                          "does not implement DescribeGroups"},
        {"errors Produce 0 6", "error: count '0' is not a number in 1..100000"},
        {"errors Produce many 6", "error: count 'many' is not a number in 1..100000"},
        {"errors Produce 100001 6", "error: count '100001' is not a number in 1..100000"},
        {"errors Produce 1 NOT_AN_ERROR", "error: unknown error 'NOT_AN_ERROR' (a Kafka error "
                                          "name like NOT_LEADER_FOR_PARTITION or a code number)"},
        {"errors Produce 1 9999", "error: unknown error '9999' (a Kafka error name like "
                                  "NOT_LEADER_FOR_PARTITION or a code number)"},
        {"errors Produce 1 NO_ERROR", "error: error 'NO_ERROR' is NO_ERROR, which injects nothing"},
        {"errors Produce 1 0", "error: error '0' is NO_ERROR, which injects nothing"},
        {"errors Produce 1 _TIMED_OUT",
         "error: error '_TIMED_OUT' (-185) is a librdkafka-internal code a broker cannot send "
         "(only _TRANSPORT, which closes the connection, is allowed)"},
        /* clear */
        {"clear", "error: usage: clear REQUEST"},
        {"clear Produce Fetch", "error: usage: clear REQUEST"},
        {"clear Nothing", "error: unknown request 'Nothing' (a Kafka request name like Produce or "
                          "its ApiKey number)"},
        {"clear ListGroups", "error: cannot inject errors into ListGroups (ApiKey 16): the mock "
                             "does not implement ListGroups"},
        /* topic */
        {"topic", "error: usage: topic create NAME [PARTITIONS [REPLICATION]]"},
        {"topic delete t", "error: unknown topic action 'delete' (expected create)"},
        {"topic create", "error: usage: topic create NAME [PARTITIONS [REPLICATION]]"},
        {"topic create t 1 1 1", "error: usage: topic create NAME [PARTITIONS [REPLICATION]]"},
        {"topic create t 0", "error: partitions '0' is not a number in 1..10000"},
        {"topic create t x", "error: partitions 'x' is not a number in 1..10000"},
        {"topic create t 10001", "error: partitions '10001' is not a number in 1..10000"},
        {"topic create t 1 0", "error: replication '0' is not a number in 1..3"},
        {"topic create t 1 4", "error: replication '4' is not a number in 1..3"},
        {"topic create bad/name", "error: cannot create topic: topic name 'bad/name' has a "
                                  "character other than a-z A-Z 0-9 . _ -"},
        {"topic create ..", "error: cannot create topic: topic name '..' is not allowed"},
        /* leader */
        {"leader", "error: usage: leader TOPIC PARTITION BROKER|none"},
        {"leader t 0", "error: usage: leader TOPIC PARTITION BROKER|none"},
        {"leader t -1 1", "error: partition '-1' is not a number >= 0"},
        {"leader t p 1", "error: partition 'p' is not a number >= 0"},
        {"leader t 0 4", "error: broker 4 does not exist (brokers are 1..3)"},
        {"leader t 0 b", "error: broker id 'b' is not a number"},
        {"leader missing-topic 0 1", "error: topic 'missing-topic' does not exist"},
        {"leader a/b 0 1", "error: topic name 'a/b' has a character other than a-z A-Z 0-9 . _ -"},
        /* coordinator */
        {"coordinator", "error: usage: coordinator group|txn KEY BROKER"},
        {"coordinator group g", "error: usage: coordinator group|txn KEY BROKER"},
        {"coordinator cluster g 1", "error: unknown coordinator type 'cluster' (expected group "
                                    "or txn)"},
        {"coordinator group g 0", "error: broker 0 does not exist (brokers are 1..3)"},
        {"coordinator group g one", "error: broker id 'one' is not a number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_reply(cases[i].line, cases[i].reply);

    /* a topic that exists: duplicate create, partition out of range */
    expect_reply("topic create dup 2", "ok");
    expect_reply("topic create dup 2", "error: topic 'dup' already exists");
    expect_reply("leader dup 2 1", "error: topic 'dup' has no partition 2 (partitions are 0..1)");
    /* leader on a missing topic must not have created it */
    ck_assert_int_eq(partition_count("missing-topic"), 0);
}
END_TEST

START_TEST(test_long_line_and_small_reply)
{
    char line[2048];
    memset(line, 'a', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\0';
    expect_reply(line, "error: command is 2047 bytes long (at most 1023)");

    char tiny[8];
    ck_assert_int_eq(kafka_mock_command(mock, "frobnicate", tiny, sizeof(tiny)), -1);
    ck_assert_str_eq(tiny, "error: ");
    ck_assert_int_eq(kafka_mock_command(mock, "ping", tiny, sizeof(tiny)), 0);
    ck_assert_str_eq(tiny, "ok");
}
END_TEST

/* ------------------------------------------------------------ effects */

START_TEST(test_topic_create_partitions_visible)
{
    char err[256];
    expect_reply("topic create seven 7", "ok");
    ck_assert_int_eq(kafka_mock_topic_create(mock, "defaulted", 0, err, sizeof(err)), 0);
    ck_assert_int_eq(kafka_mock_topic_create(mock, "two", 2, err, sizeof(err)), 0);
    ck_assert_int_eq(kafka_mock_topic_create(mock, "two", 2, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "topic 'two' already exists");
    ck_assert_int_eq(kafka_mock_topic_create(mock, "", 2, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "cannot create topic: topic name is empty");

    ck_assert_int_eq(partition_count("seven"), 7);
    ck_assert_int_eq(partition_count("defaulted"), 5);
    ck_assert_int_eq(partition_count("two"), 2);
}
END_TEST

START_TEST(test_leader_moves)
{
    expect_reply("topic create led 3", "ok");
    expect_reply("leader led 2 2", "ok");
    rd_kafka_t *rk = new_producer(NULL);
    const struct rd_kafka_metadata *all = NULL;
    const rd_kafka_metadata_topic_t *t = topic_metadata(rk, "led", &all);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->partition_cnt, 3);
    ck_assert_int_eq(t->partitions[2].id, 2);
    ck_assert_int_eq(t->partitions[2].leader, 2);
    rd_kafka_metadata_destroy(all);
    rd_kafka_destroy(rk);
}
END_TEST

START_TEST(test_injected_fatal_produce_error_fails_delivery)
{
    expect_reply("topic create denied 1", "ok");
    rd_kafka_t *rk = new_producer("message.timeout.ms", "5000", "retry.backoff.ms", "50", NULL);
    /* warm up so the error hits the produce, not a first-connect race */
    ck_assert_int_eq(produce_one(rk, "denied", 0, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    expect_reply("errors Produce 1 TOPIC_AUTHORIZATION_FAILED", "ok");
    ck_assert_int_eq(produce_one(rk, "denied", 0, 10000),
                     RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    rd_kafka_destroy(rk);
    /* the stack is used up: the next produce succeeds (from a new client, as
     * librdkafka remembers the authorization error for the topic) */
    rk = new_producer("message.timeout.ms", "5000", NULL);
    ck_assert_int_eq(produce_one(rk, "denied", 0, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}
END_TEST

START_TEST(test_injected_retriable_produce_errors_are_retried)
{
    expect_reply("topic create retried 1", "ok");
    rd_kafka_t *rk = new_producer("message.timeout.ms", "10000", "retry.backoff.ms", "50", NULL);
    expect_reply("errors Produce 3 NOT_LEADER_FOR_PARTITION", "ok");
    ck_assert_int_eq(produce_one(rk, "retried", 0, 15000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}
END_TEST

START_TEST(test_clear_drops_pending_errors)
{
    expect_reply("topic create cleared 1", "ok");
    expect_reply("errors Produce 5 TOPIC_AUTHORIZATION_FAILED", "ok");
    expect_reply("clear Produce", "ok");
    rd_kafka_t *rk = new_producer("message.timeout.ms", "5000", NULL);
    ck_assert_int_eq(produce_one(rk, "cleared", 0, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}
END_TEST

START_TEST(test_broker_down_and_up)
{
    /* one broker, so "down" leaves nothing to fail over to */
    kafka_mock_stop(mock);
    char err[256];
    mock = kafka_mock_start(1, 1, err, sizeof(err));
    ck_assert_msg(mock != NULL, "%s", err);
    expect_reply("broker 2 down", "error: broker 2 does not exist (brokers are 1..1)");
    expect_reply("topic create updown", "ok");

    rd_kafka_t *rk = new_producer("message.timeout.ms", "1500", "reconnect.backoff.ms", "50",
                                  "reconnect.backoff.max.ms", "200", NULL);
    ck_assert_int_eq(produce_one(rk, "updown", 0, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);

    expect_reply("broker 1 down", "ok");
    ck_assert_int_eq(produce_one(rk, "updown", 0, 10000), RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);

    expect_reply("broker 1 up", "ok");
    /* reconnect may take a few backoff rounds: retry within a deadline */
    int64_t deadline = now_ms() + 15000;
    rd_kafka_resp_err_t result;
    do
        result = produce_one(rk, "updown", 0, 10000);
    while (result != RD_KAFKA_RESP_ERR_NO_ERROR && now_ms() < deadline);
    ck_assert_int_eq(result, RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}
END_TEST

START_TEST(test_rtt_delays_requests)
{
    expect_reply("topic create slow 1", "ok");
    rd_kafka_t *rk = new_producer("linger.ms", "0", NULL);
    ck_assert_int_eq(produce_one(rk, "slow", 0, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    expect_reply("broker all rtt 400", "ok");
    int64_t start = now_ms();
    ck_assert_int_eq(produce_one(rk, "slow", 0, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    int64_t elapsed = now_ms() - start;
    ck_assert_msg(elapsed >= 350, "produce took %lld ms with rtt 400", (long long)elapsed);
    expect_reply("broker all rtt 0", "ok");
    rd_kafka_destroy(rk);
}
END_TEST

static Suite *kafka_mock_suite(void)
{
    Suite *suite = suite_create("kafka_mock");

    TCase *start = tcase_create("start");
    tcase_add_test(start, test_start_rejects_bad_arguments);
    suite_add_tcase(suite, start);

    TCase *commands = tcase_create("commands");
    tcase_add_checked_fixture(commands, setup_mock, teardown_mock);
    tcase_set_timeout(commands, 60);
    tcase_add_test(commands, test_bootstraps_list_every_broker);
    tcase_add_test(commands, test_command_forms_ok);
    tcase_add_test(commands, test_command_errors);
    tcase_add_test(commands, test_long_line_and_small_reply);
    suite_add_tcase(suite, commands);

    TCase *effects = tcase_create("effects");
    tcase_add_checked_fixture(effects, setup_mock, teardown_mock);
    tcase_set_timeout(effects, 60);
    tcase_add_test(effects, test_topic_create_partitions_visible);
    tcase_add_test(effects, test_leader_moves);
    tcase_add_test(effects, test_injected_fatal_produce_error_fails_delivery);
    tcase_add_test(effects, test_injected_retriable_produce_errors_are_retried);
    tcase_add_test(effects, test_clear_drops_pending_errors);
    tcase_add_test(effects, test_broker_down_and_up);
    tcase_add_test(effects, test_rtt_delays_requests);
    suite_add_tcase(suite, effects);

    return suite;
}

CHECK_MAIN(kafka_mock_suite)
