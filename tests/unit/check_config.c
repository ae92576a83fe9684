/* SPDX-License-Identifier: Apache-2.0 */
/* check_config.c -- unit tests of the config module (daemon/config.c,
 * daemon/config_table.c): every key of the full example, defaults, sizes and
 * durations, each kind of error with its exact "FILE:LINE: KEY:" prefix, the
 * shipped samples in conf/, config_apply_live, adapter config sections (a
 * test section here, and the built-in adapters' with their former
 * spellings), and that docs/configuration.md holds the current generated key
 * reference.
 *
 * Run under valgrind with CK_FORK=no to check load and free of good and bad
 * files for leaks. */

/* By path: in the automake build the top-level autoconf config.h comes
 * before daemon/ on the include path. */
#include "../../daemon/config.h"
#include "../../daemon/password.h"
#include "adapter.h"
#include "server.h"
#include "stomp_config.h"
#include "unit_main.h"

#include <check.h>
#include <errno.h>
#include <regex.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARRAY_LEN(array) (sizeof(array) / sizeof((array)[0]))

#define KIB UINT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* The built-in adapters' config sections, as main hands them to the loader. */
static const struct config_section *const *builtin_sections(size_t *count)
{
    static const struct config_section *sections[16];
    const struct adapter_registry *registry = adapter_registry_builtin();
    ck_assert_uint_le(registry->count, ARRAY_LEN(sections));
    *count = adapter_registry_config_sections(registry, sections);
    return sections;
}

/* Load YAML text as "t.yaml" with the built-in sections, as kbridged does;
 * fails the test with the error if it does not load. */
static struct config *load_ok(const char *yaml)
{
    char err[512] = "";
    struct config *config = NULL;
    size_t count;
    const struct config_section *const *sections = builtin_sections(&count);
    int rc = config_load_string_sections("t.yaml", yaml, strlen(yaml), sections, count, &config,
                                         err, sizeof(err));
    ck_assert_msg(rc == 0, "expected to load, got: %s", err);
    ck_assert_ptr_nonnull(config);
    return config;
}

static struct config *load_file_ok(const char *path)
{
    char err[512] = "";
    struct config *config = NULL;
    size_t count;
    const struct config_section *const *sections = builtin_sections(&count);
    int rc = config_load_sections(path, sections, count, &config, err, sizeof(err));
    ck_assert_msg(rc == 0, "expected %s to load, got: %s", path, err);
    ck_assert_ptr_nonnull(config);
    return config;
}

/* Load YAML text as "t.yaml" and check it fails with exactly `expected`. */
static void expect_error(const char *yaml, const char *expected)
{
    char err[512] = "";
    struct config *config = (struct config *)1;
    size_t count;
    const struct config_section *const *sections = builtin_sections(&count);
    int rc = config_load_string_sections("t.yaml", yaml, strlen(yaml), sections, count, &config,
                                         err, sizeof(err));
    ck_assert_msg(rc == -1, "expected an error for:\n%s", yaml);
    ck_assert_ptr_null(config);
    ck_assert_str_eq(err, expected);
}

/* Same, for messages whose tail comes from libc (regerror) or libyaml. */
static void expect_error_prefix(const char *yaml, const char *prefix)
{
    char err[512] = "";
    struct config *config = (struct config *)1;
    int rc = config_load_string("t.yaml", yaml, strlen(yaml), &config, err, sizeof(err));
    ck_assert_msg(rc == -1, "expected an error for:\n%s", yaml);
    ck_assert_ptr_null(config);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
                  "error \"%s\" does not start with \"%s\"", err, prefix);
    ck_assert_msg(strchr(err, '\n') == NULL, "error is not one line: %s", err);
}

static void expect_file_error(const char *path, const char *expected_tail)
{
    char err[1024] = "", expected[1024];
    struct config *config = (struct config *)1;
    snprintf(expected, sizeof(expected), "%s%s", path, expected_tail);
    ck_assert_int_eq(config_load(path, &config, err, sizeof(err)), -1);
    ck_assert_ptr_null(config);
    ck_assert_str_eq(err, expected);
}

/* Read a whole file into a NUL-terminated string. */
static char *read_text_file(const char *path)
{
    FILE *stream = fopen(path, "rb");
    ck_assert_msg(stream != NULL, "cannot open %s: %s", path, strerror(errno));
    ck_assert_int_eq(fseek(stream, 0, SEEK_END), 0);
    long size = ftell(stream);
    ck_assert_int_ge(size, 0);
    rewind(stream);
    char *text = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(fread(text, 1, (size_t)size, stream), (size_t)size);
    text[size] = '\0';
    fclose(stream);
    return text;
}

/* Run config_apply_live with stderr sent to a temporary file; returns what
 * it logged (free it). */
static char *apply_live_capturing_log(const struct config *old, struct config *reloaded)
{
    FILE *capture = tmpfile();
    ck_assert_ptr_nonnull(capture);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fileno(capture), STDERR_FILENO), 0);
    config_apply_live(old, reloaded);
    ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
    close(saved);

    ck_assert_int_eq(fseek(capture, 0, SEEK_END), 0);
    long size = ftell(capture);
    rewind(capture);
    char *text = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(fread(text, 1, (size_t)size, capture), (size_t)size);
    text[size] = '\0';
    fclose(capture);
    return text;
}

/* ------------------------------------------------------------------------ */
/* Good files                                                               */
/* ------------------------------------------------------------------------ */

/* The bind of listener `name`, or NULL when the file has none. */
static const char *listener_bind_of(const struct config *config, const char *name)
{
    const struct config_listener *listener = config_listener_find(config, name);
    return listener ? listener->bind : NULL;
}

START_TEST(test_full_example)
{
    struct config *config = load_file_ok(TEST_DATA_DIR "/full.yaml");

    ck_assert_str_eq(config->path, TEST_DATA_DIR "/full.yaml");
    ck_assert_str_eq(config->node_id, "kb1");
    ck_assert_str_eq(config->kafka.bootstrap, "kafka1:9092,[::1]:9093");
    ck_assert_str_eq(config->kafka.topic_prefix, "kb.");
    ck_assert_uint_eq(config->kafka.properties.count, 2);
    ck_assert_str_eq(config->kafka.properties.items[0].name, "security.protocol");
    ck_assert_str_eq(config->kafka.properties.items[0].value, "SASL_SSL");
    ck_assert_str_eq(config->kafka.properties.items[1].name, "socket.timeout.ms");
    ck_assert_str_eq(config->kafka.properties.items[1].value, "30000");
    ck_assert_uint_eq(config->kafka.producer.count, 1);
    ck_assert_str_eq(config->kafka.producer.items[0].name, "linger.ms");
    ck_assert_str_eq(config->kafka.producer.items[0].value, "5");
    ck_assert_uint_eq(config->kafka.consumer.count, 0);

    ck_assert_ptr_nonnull(config_listener_find(config, "stomp"));
    ck_assert_str_eq(listener_bind_of(config, "stomp"), "127.0.0.1:61613");
    ck_assert_ptr_nonnull(config_listener_find(config, "amqp"));
    ck_assert_str_eq(listener_bind_of(config, "amqp"), "127.0.0.1:5672");
    ck_assert_ptr_nonnull(config_listener_find(config, "http"));
    ck_assert_str_eq(listener_bind_of(config, "http"), "[::1]:15672");

    ck_assert(config->auth.anonymous);
    ck_assert_uint_eq(config->auth.user_count, 2);
    struct config_user *app = &config->auth.users[0];
    ck_assert_str_eq(app->name, "app");
    ck_assert_str_eq(app->password_hash, "$6$salt$hash");
    ck_assert_uint_eq(app->publish_count, 1);
    ck_assert_str_eq(app->publish[0].source, "^orders\\..*");
    ck_assert_int_eq(regexec(&app->publish[0].regex, "orders.eu", 0, NULL, 0), 0);
    ck_assert_int_eq(regexec(&app->publish[0].regex, "ordersXeu", 0, NULL, 0), REG_NOMATCH);
    ck_assert_int_eq(regexec(&app->publish[0].regex, "billing", 0, NULL, 0), REG_NOMATCH);
    ck_assert_uint_eq(app->consume_count, 1);
    ck_assert_str_eq(app->consume[0].source, ".*");
    struct config_user *ops = &config->auth.users[1];
    ck_assert_str_eq(ops->name, "ops");
    ck_assert_str_eq(ops->password_hash, "$y$j9T$salt$hash");
    ck_assert_uint_eq(ops->publish_count, 0);
    ck_assert_uint_eq(ops->consume_count, 0);

    ck_assert_uint_eq(config->queues.max_deliveries, 7);
    ck_assert(!stomp_config_of(config)->nack_requeue); /* former spelling queues.nack_requeue */
    ck_assert_str_eq(config->queues.dead_letter_topic, "{name}-dlt");
    ck_assert_uint_eq(config->queues.ack_timeout_ms, 45 * 60 * 1000);
    ck_assert_uint_eq(config->queues.max_in_flight, 500);
    ck_assert_uint_eq(config->queues.linger_ms, 90 * 1000);

    ck_assert_uint_eq(config->limits.max_frame_size, 2 * MIB);
    ck_assert_uint_eq(config->limits.max_message_size, 512 * KIB);
    ck_assert_uint_eq(config->limits.max_headers, 32);
    ck_assert_uint_eq(config->limits.max_connections, 200);
    ck_assert_uint_eq(config->limits.max_unconfirmed, 100);
    ck_assert_uint_eq(config->limits.heartbeat_ms, 15000);

    ck_assert_int_eq(config->log.level, LOG_LEVEL_DEBUG);
    ck_assert_int_eq(config->log.format, LOG_FORMAT_JSON);
    ck_assert_uint_eq(config->shutdown_grace_ms, 250);
    config_free(config);
}
END_TEST

static void assert_defaults(const struct config *config)
{
    char host[256];
    ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
    host[sizeof(host) - 1] = '\0';
    ck_assert_str_eq(config->node_id, host);
    ck_assert_str_eq(config->kafka.bootstrap, "embedded");
    ck_assert_str_eq(config->kafka.topic_prefix, "");
    ck_assert_uint_eq(config->kafka.properties.count, 0);
    ck_assert_uint_eq(config->kafka.producer.count, 0);
    ck_assert_uint_eq(config->kafka.consumer.count, 0);
    ck_assert_ptr_null(config_listener_find(config, "stomp"));
    ck_assert_ptr_null(listener_bind_of(config, "stomp"));
    ck_assert_ptr_null(config_listener_find(config, "amqp"));
    ck_assert_ptr_null(listener_bind_of(config, "amqp"));
    ck_assert_ptr_null(config_listener_find(config, "http"));
    ck_assert_ptr_null(listener_bind_of(config, "http"));
    ck_assert(!config->auth.anonymous);
    ck_assert_uint_eq(config->auth.user_count, 0);
    ck_assert_ptr_null(config->auth.users);
    ck_assert_uint_eq(config->queues.max_deliveries, 5);
    ck_assert(stomp_config_of(config)->nack_requeue);
    ck_assert_str_eq(config->queues.dead_letter_topic, "{name}.DLQ");
    ck_assert_uint_eq(config->queues.redelivery_delay.initial_ms, 0);
    ck_assert_str_eq(config->queues.redelivery_delay.multiplier, "2");
    ck_assert_uint_eq(config->queues.redelivery_delay.max_ms, 60 * 60 * 1000);
    ck_assert_str_eq(config->queues.retry_topic, "{name}.retry.{n}");
    ck_assert_uint_eq(config->queues.ack_timeout_ms, 30 * 60 * 1000);
    ck_assert_uint_eq(config->queues.max_in_flight, 10000);
    ck_assert_uint_eq(config->queues.linger_ms, 30 * 1000);
    ck_assert_uint_eq(config->limits.max_frame_size, 17 * MIB);
    ck_assert_uint_eq(config->limits.max_message_size, 16 * MIB);
    ck_assert_uint_eq(config->limits.max_headers, 64);
    ck_assert_uint_eq(config->limits.max_connections, 10000);
    ck_assert_uint_eq(config->limits.max_unconfirmed, 10000);
    ck_assert_uint_eq(config->limits.heartbeat_ms, 10000);
    ck_assert_uint_eq(stomp_config_of(config)->heartbeat_min_ms, 100);
    ck_assert_int_eq(config->log.level, LOG_LEVEL_INFO);
    ck_assert_int_eq(config->log.format, LOG_FORMAT_TEXT);
    ck_assert_uint_eq(config->shutdown_grace_ms, 10000);
}

/* Texts that set nothing: every key takes its default. */
static const char *const empty_texts[] = {
    "",
    "{}",
    "---\n",
    "~\n",
    "# only a comment\n",
    "kafka:\nlisteners:\nauth:\nqueues: {}\n",
    "kafka:\n  properties:\nauth:\n  users: []\n",
};

START_TEST(test_defaults)
{
    struct config *config = load_ok(empty_texts[_i]);
    assert_defaults(config);
    ck_assert_str_eq(config->path, "t.yaml");
    config_free(config);
}
END_TEST

START_TEST(test_workers_threads)
{
    struct config *config = load_ok("node_id: n\n");
    ck_assert_uint_eq(config->workers.threads, 2);
    config_free(config);
    config = load_ok("workers:\n  threads: 8\n");
    ck_assert_uint_eq(config->workers.threads, 8);
    config_free(config);
    expect_error("workers:\n  threads: 0\n",
                 "t.yaml:2: workers.threads: \"0\" is out of range (1 to 64)");
    expect_error("workers:\n  threads: 65\n",
                 "t.yaml:2: workers.threads: \"65\" is out of range (1 to 64)");
}
END_TEST

START_TEST(test_defaults_empty_file)
{
    struct config *config = load_file_ok(TEST_DATA_DIR "/empty.yaml");
    assert_defaults(config);
    config_free(config);
}
END_TEST

START_TEST(test_sample_production)
{
    struct config *config = load_file_ok(TEST_DATA_DIR "/../../../conf/kbridge.yaml");
    ck_assert_str_ne(config->kafka.bootstrap, "embedded");
    ck_assert(!config->auth.anonymous);
    ck_assert_uint_ge(config->auth.user_count, 1);
    ck_assert_str_eq(config->auth.users[0].name, "app");
    ck_assert_int_eq(strncmp(config->auth.users[0].password_hash, "$6$", 3), 0);
    ck_assert_ptr_nonnull(config_listener_find(config, "stomp"));
    ck_assert_str_eq(listener_bind_of(config, "stomp"), "0.0.0.0:61613");
    ck_assert_ptr_nonnull(config_listener_find(config, "amqp"));
    ck_assert_str_eq(listener_bind_of(config, "amqp"), "0.0.0.0:5672");
    ck_assert_ptr_nonnull(config_listener_find(config, "http"));
    ck_assert_str_eq(listener_bind_of(config, "http"), "0.0.0.0:15672");
    ck_assert_int_eq(regexec(&config->auth.users[0].publish[0].regex, "orders.eu", 0, NULL, 0), 0);
    config_free(config);
}
END_TEST

START_TEST(test_sample_dev)
{
    struct config *config = load_file_ok(TEST_DATA_DIR "/../../../conf/kbridge-dev.yaml");
    ck_assert_str_eq(config->kafka.bootstrap, "embedded");
    ck_assert(config->auth.anonymous);
    ck_assert_str_eq(listener_bind_of(config, "stomp"), "127.0.0.1:61613");
    ck_assert_str_eq(listener_bind_of(config, "amqp"), "127.0.0.1:5672");
    /* both AMQP versions on 5672, as RabbitMQ */
    ck_assert_uint_eq(config_listener_find(config, "amqp")->protocol_count, 2);
    ck_assert_str_eq(config_listener_find(config, "amqp")->protocols[1], "amqp091");
    ck_assert_str_eq(listener_bind_of(config, "http"), "127.0.0.1:15672");
    ck_assert((config_listener_find(config, "stomp") != NULL) &&
              (config_listener_find(config, "amqp") != NULL) &&
              (config_listener_find(config, "http") != NULL));
    ck_assert_int_eq(config->log.level, LOG_LEVEL_INFO);
    config_free(config);
}
END_TEST

/* Values at the edges of what each kind of key accepts. */
START_TEST(test_accepted_values)
{
    struct config *config =
        load_ok("kafka:\n"
                "  bootstrap: \"SASL_SSL://kafka1:9092,[fe80::1%eth0]:9093\"\n"
                "listeners:\n"
                "  stomp: { bind: \"0.0.0.0:0\" }\n"
                "  amqp: { bind: \"[::]:65535\" }\n"
                "  http: { bind: \"ops-host.example.com:15672\" }\n"
                "auth:\n"
                "  anonymous: TRUE\n"
                "  users:\n"
                "    - { name: a, password_hash: \"$2b$12$abcdefghijklmnopqrstuv\" }\n"
                "    - { name: b, password_hash: \"$6$rounds=5000$salt$hash\", publish: [] }\n"
                "queues: { max_deliveries: 1000000, dead_letter_topic: \"dlq.{name}\",\n"
                "          linger: 0 }\n"
                "limits: { max_frame_size: 1 GiB, max_message_size: 1, heartbeat: 1h,\n"
                "          heartbeat_min: 10ms }\n"
                "log: { level: warning }\n"
                "shutdown_grace: 0\n");
    ck_assert(config->auth.anonymous);
    ck_assert_str_eq(listener_bind_of(config, "stomp"), "0.0.0.0:0");
    ck_assert_uint_eq(config->queues.max_deliveries, 1000000);
    ck_assert_uint_eq(config->queues.linger_ms, 0);
    ck_assert_uint_eq(config->limits.max_frame_size, GIB);
    ck_assert_uint_eq(config->limits.max_message_size, 1);
    ck_assert_uint_eq(config->limits.heartbeat_ms, 3600 * 1000);
    ck_assert_uint_eq(stomp_config_of(config)->heartbeat_min_ms, 10);
    ck_assert_int_eq(config->log.level, LOG_LEVEL_WARN);
    ck_assert_uint_eq(config->shutdown_grace_ms, 0);
    config_free(config);
}
END_TEST

/* ACL patterns as RabbitMQ permissions write them still load after the
 * regcomp bounds (config_regex_refusal), and match what they should. */
START_TEST(test_wild_acl_patterns)
{
    static const struct {
        const char *pattern; /* put in YAML single quotes: no escapes */
        const char *match;
        const char *no_match;
    } cases[] = {
        {"^amq\\.gen.*", "amq.gen-JzTY20BRgKO-HjmUJj0wLg", "amqXgen"},
        {".*", "anything", NULL},
        {"^(orders|billing)\\..*$", "billing.eu", "shipping.eu"},
        {"^app-[a-z0-9]+$", "app-42x", "app-"},
        {"^[^.]+\\.(eu|us)$", "orders.eu", "orders.eu.x"},
        {"^(a|b|c)*$", "abcab", "abd"},
        {"^orders\\.[[:alnum:]_-]{1,64}$", "orders.x_1", "orders."},
        {"^(amq\\.)?gen(\\.[a-z]+){0,3}$", "gen.a.b", "gen.a.b.c.d"},
        {"^orders\\..*$|^billing\\..*$|^audit$", "audit", "audit2"},
        {"(^|\\.)tmp(\\.|$)", "x.tmp.y", "xtmpy"},
        {"^(q1|q2|q3|q4|q5|q6|q7|q8|q9|q10|q11|q12)$", "q12", "q13"},
        {"\\bfoo\\b", "a foo b", "afoob"},
        {"^stomp-.*?$", "stomp-1", "amqp-1"},
        {"^$", "", "x"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char yaml[512];
        snprintf(yaml, sizeof(yaml),
                 "auth:\n  users:\n    - { name: a, password_hash: \"$6$a$b\", publish: ['%s'] }\n",
                 cases[i].pattern);
        struct config *config = load_ok(yaml);
        const regex_t *regex = &config->auth.users[0].publish[0].regex;
        ck_assert_msg(regexec(regex, cases[i].match, 0, NULL, 0) == 0, "%s should match %s",
                      cases[i].pattern, cases[i].match);
        if (cases[i].no_match != NULL)
            ck_assert_msg(regexec(regex, cases[i].no_match, 0, NULL, 0) == REG_NOMATCH,
                          "%s should not match %s", cases[i].pattern, cases[i].no_match);
        config_free(config);
    }
}
END_TEST

/* Many properties (the duplicate check sorts) and YAML anchors. */
START_TEST(test_large_property_map)
{
    size_t cap = 64 * 1024, len = 0;
    char *yaml = malloc(cap);
    ck_assert_ptr_nonnull(yaml);
    len += (size_t)snprintf(yaml + len, cap - len, "kafka:\n  properties:\n");
    for (int i = 0; i < 2000; i++)
        len += (size_t)snprintf(yaml + len, cap - len, "    p%d: %d\n", i, i);
    struct config *config = load_ok(yaml);
    ck_assert_uint_eq(config->kafka.properties.count, 2000);
    ck_assert_str_eq(config->kafka.properties.items[1999].name, "p1999");
    config_free(config);

    /* the same map with p7 repeated on line 2003 */
    snprintf(yaml + len, cap - len, "    p7: again\n");
    expect_error(yaml, "t.yaml:2003: kafka.properties.p7: duplicate key (first on line 10)");
    free(yaml);

    config = load_ok("kafka:\n  properties: &common { client.rack: r1 }\n  consumer: *common\n");
    ck_assert_str_eq(config->kafka.consumer.items[0].value, "r1");
    config_free(config);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Sizes and durations                                                      */
/* ------------------------------------------------------------------------ */

struct number_case {
    const char *text;
    int rc;
    uint64_t value;
};

static const struct number_case size_cases[] = {
    {"0", 0, 0},
    {"10", 0, 10},
    {"100B", 0, 100},
    {"1KiB", 0, KIB},
    {"512KiB", 0, 512 * KIB},
    {"1MiB", 0, MIB},
    {"1 MiB", 0, MIB},
    {"2GiB", 0, 2 * GIB},
    {"18446744073709551615", 0, UINT64_MAX},
    {"17179869183GiB", 0, UINT64_C(17179869183) * GIB},
    {"", -1, 0},
    {"MiB", -1, 0},
    {"1.5MiB", -1, 0},
    {"1KB", -1, 0},
    {"1MB", -1, 0},
    {"1GB", -1, 0},
    {"1k", -1, 0},
    {"1mib", -1, 0},
    {"-1", -1, 0},
    {"+1", -1, 0},
    {" 1", -1, 0},
    {"1 ", -1, 0},
    {"1MiB ", -1, 0},
    {"0x10", -1, 0},
    {"18446744073709551616", -1, 0},
    {"17179869184GiB", -1, 0},
    {"99999999999999999999999B", -1, 0},
};

START_TEST(test_parse_size)
{
    const struct number_case *c = &size_cases[_i];
    uint64_t value = 12345;
    ck_assert_msg(config_parse_size(c->text, &value) == c->rc, "config_parse_size(\"%s\")",
                  c->text);
    if (c->rc == 0)
        ck_assert_uint_eq(value, c->value);
}
END_TEST

static const struct number_case duration_cases[] = {
    {"0", 0, 0},
    {"250ms", 0, 250},
    {"10s", 0, 10000},
    {"10", 0, 10000},
    {"30m", 0, 30 * 60000},
    {"2h", 0, 2 * 3600000},
    {"5 s", 0, 5000},
    {"18446744073709551615ms", 0, UINT64_MAX},
    {"", -1, 0},
    {"ms", -1, 0},
    {"1.5h", -1, 0},
    {"1h30m", -1, 0},
    {"10 minutes", -1, 0},
    {"10S", -1, 0},
    {"1d", -1, 0},
    {"-1s", -1, 0},
    {"18446744073709552s", -1, 0},
    {"18446744073709552", -1, 0},
    {"5124095576030432h", -1, 0},
};

START_TEST(test_parse_duration)
{
    const struct number_case *c = &duration_cases[_i];
    uint64_t value = 12345;
    ck_assert_msg(config_parse_duration(c->text, &value) == c->rc, "config_parse_duration(\"%s\")",
                  c->text);
    if (c->rc == 0)
        ck_assert_uint_eq(value, c->value);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

struct error_case {
    const char *yaml;
    const char *error; /* exact */
};

static const struct error_case error_cases[] = {
    /* unknown keys */
    {"nodeid: x\n", "t.yaml:1: nodeid: unknown key (did you mean \"node_id\"?)"},
    {"lmits: {}\n", "t.yaml:1: lmits: unknown key (did you mean \"limits\"?)"},
    {"limits:\n  max_frame: 1MiB\n",
     "t.yaml:2: limits.max_frame: unknown key (did you mean \"max_frame_size\"?)"},
    {"limits:\n  colour: red\n", "t.yaml:2: limits.colour: unknown key"},
    {"listeners:\n  stomp:\n    bind: \"127.0.0.1:1\"\n    tls: true\n",
     "t.yaml:4: listeners.stomp.tls: expected a mapping, got \"true\""},
    {"listeners:\n  stomp:\n    bind: \"127.0.0.1:1\"\n    tls: {certificate: x}\n",
     "t.yaml:4: listeners.stomp.tls.certificate: unknown key"},
    {"listeners:\n  stomp:\n    bind: \"127.0.0.1:1\"\n    tls: {verify: maybe}\n",
     "t.yaml:4: listeners.stomp.tls.verify: \"maybe\" is not one of none, optional, required"},
    {"listeners:\n  stomp:\n    bind: \"127.0.0.1:1\"\n    tls: {min_version: \"1.1\"}\n",
     "t.yaml:4: listeners.stomp.tls.min_version: \"1.1\" is not one of 1.2, 1.3"},
    {"listeners:\n  stomp:\n    bind: \"127.0.0.1:1\"\n    tls: {identity: uid}\n",
     "t.yaml:4: listeners.stomp.tls.identity: \"uid\" is not one of cn, san_email, san_dns"},
    {"listeners:\n  stomp: { bind: \"127.0.0.1:1\", protocols: [] }\n",
     "t.yaml:2: listeners.stomp.protocols: must name at least one protocol"},
    {"listeners:\n  stomp: { bind: \"127.0.0.1:1\", protocols: stomp }\n",
     "t.yaml:2: listeners.stomp.protocols: expected a list of names, got \"stomp\""},
    {"listeners:\n  stomp: { bind: \"127.0.0.1:1\", protocols: [stomp, stomp] }\n",
     "t.yaml:2: listeners.stomp.protocols[1]: \"stomp\" is listed twice"},
    {"listeners:\n  stomp: { bind: \"127.0.0.1:1\", protocols: [\"st omp\"] }\n",
     "t.yaml:2: listeners.stomp.protocols[0]: \"st omp\" is not a name (letters, digits, '_' "
     "and '-' only)"},
    {"listeners:\n  \"a.b\": { bind: \"127.0.0.1:1\" }\n",
     "t.yaml:2: listeners: \"a.b\" is not a name (letters, digits, '_' and '-' only)"},
    {"listeners: [stomp]\n",
     "t.yaml:1: listeners: expected a mapping of listener names to listeners, got a list"},
    {"auth:\n  users:\n    - name: a\n      password_hash: \"$6$a$b\"\n      pasword: x\n",
     "t.yaml:5: auth.users[0].pasword: unknown key (did you mean \"password\"?)"},
    {"limits.max_headers: 5\n",
     "t.yaml:1: limits.max_headers: unknown key (write nested keys as nested mappings)"},
    {"? [a]\n: 1\n", "t.yaml:1: keys must be plain names, got a list"},

    /* wrong types */
    {"hello\n", "t.yaml:1: expected a mapping, got \"hello\""},
    {"- a\n", "t.yaml:1: expected a mapping, got a list"},
    {"limits: 5\n", "t.yaml:1: limits: expected a mapping, got \"5\""},
    {"limits:\n  max_headers: {a: 1}\n",
     "t.yaml:2: limits.max_headers: expected a number, got a mapping"},
    {"node_id: [a]\n", "t.yaml:1: node_id: expected a string, got a list"},
    {"log: { level: [debug] }\n", "t.yaml:1: log.level: expected a log level, got a list"},
    {"listeners:\n  stomp:\n    bind: { host: x }\n",
     "t.yaml:3: listeners.stomp.bind: expected host:port, got a mapping"},
    {"kafka:\n  properties: [a, b]\n",
     "t.yaml:2: kafka.properties: expected a mapping of librdkafka property names to values, "
     "got a list"},
    {"kafka:\n  properties:\n    a: {b: 1}\n",
     "t.yaml:3: kafka.properties.a: expected a scalar value, got a mapping"},
    {"kafka:\n  producer:\n    linger.ms:\n", "t.yaml:3: kafka.producer.linger.ms: has no value"},
    {"auth:\n  users: app\n", "t.yaml:2: auth.users: expected a list of users, got \"app\""},
    {"auth: {users: [5]}\n",
     "t.yaml:1: auth.users[0]: expected a mapping with name and password_hash, got \"5\""},
    {"auth: {users: [{name: a, password_hash: \"$6$a$b\", publish: \".*\"}]}\n",
     "t.yaml:1: auth.users[0].publish: expected a list of regular expressions, got \".*\""},
    {"auth: {users: [{name: a, password_hash: \"$6$a$b\", consume: [{a: 1}]}]}\n",
     "t.yaml:1: auth.users[0].consume[0]: expected a regular expression, got a mapping"},
    /* repetitions that would make regcomp build gigabytes (found by the config fuzz target) */
    {"auth: {users: [{name: a, password_hash: \"$6$a$b\", publish: [\"a+++++++++++++++\"]}]}\n",
     "t.yaml:1: auth.users[0].publish[0]: \"a+++++++++++++++\" is too complex a regular "
     "expression: its repetitions (stacked like '++', or nested) would compile to more than "
     "1000 nodes"},
    {"auth: {users: [{name: a, password_hash: \"$6$a$b\", consume: [\"((a{99}){99}){9}\"]}]}\n",
     "t.yaml:1: auth.users[0].consume[0]: \"((a{99}){99}){9}\" is too complex a regular "
     "expression: its repetitions (stacked like '++', or nested) would compile to more than "
     "1000 nodes"},
    /* repetitions of something that can match the empty string: regcomp's epsilon
     * closures took 44 s on the first (reduced from the config fuzz target's
     * corpus/config/empty_repeated_regcomp_stall.yaml) and 2.3 s to 3 s on the next two */
    {"auth: {users: [{name: a, password_hash: \"$6$a$b\", publish: "
     "[\"0??????????????????+++++\"]}]}\n",
     "t.yaml:1: auth.users[0].publish[0]: \"0??????????????????+++++\" is too complex a regular "
     "expression: it repeats something that can match the empty string (like '(a*)*', 'a?+' or "
     "'(|a)*'), which regcomp takes minutes to compile"},
    {"auth: {users: [{name: a, password_hash: \"$6$a$b\", consume: [\"((a*)*){0,999}\"]}]}\n",
     "t.yaml:1: auth.users[0].consume[0]: \"((a*)*){0,999}\" is too complex a regular "
     "expression: it repeats something that can match the empty string (like '(a*)*', 'a?+' or "
     "'(|a)*'), which regcomp takes minutes to compile"},
    {"auth: {users: [{name: a, password_hash: \"$6$a$b\", consume: [\"x(()*){0,999}\"]}]}\n",
     "t.yaml:1: auth.users[0].consume[0]: \"x(()*){0,999}\" is too complex a regular "
     "expression: it repeats something that can match the empty string (like '(a*)*', 'a?+' or "
     "'(|a)*'), which regcomp takes minutes to compile"},
    {"auth: {users: [{name: a, password_hash: \"$6$a$b\", consume: [\"^(|a|b)+$\"]}]}\n",
     "t.yaml:1: auth.users[0].consume[0]: \"^(|a|b)+$\" is too complex a regular "
     "expression: it repeats something that can match the empty string (like '(a*)*', 'a?+' or "
     "'(|a)*'), which regcomp takes minutes to compile"},
    /* anchors in a row: regcomp duplicates what follows each; 200 \b ran out of memory */
    {"auth: {users: [{name: a, password_hash: \"$6$a$b\", publish: "
     "[\"a\\\\b\\\\b\\\\b\\\\b\\\\b\"]}]}\n",
     "t.yaml:1: auth.users[0].publish[0]: \"a\\\\b\\\\b\\\\b\\\\b\\\\b\" is too complex a "
     "regular expression: it has more than 4 anchors (^, $, \\b, \\<, ...) with no character "
     "between them"},
    {"auth: {users: [{name: a, password_hash: \"$6$a$b\", publish: "
     "[\"(^|\\\\b)x*(\\\\<|\\\\>|$)\"]}]}\n",
     "t.yaml:1: auth.users[0].publish[0]: \"(^|\\\\b)x*(\\\\<|\\\\>|$)\" is too complex a "
     "regular expression: it has more than 4 anchors (^, $, \\b, \\<, ...) with no character "
     "between them"},
    {"node_id:\nlog: {}\n", "t.yaml:1: node_id: has no value"},
    {"node_id: \"a\\0b\"\n", "t.yaml:1: node_id: contains a NUL character"},

    /* out of range, bad numbers, sizes and durations */
    {"limits:\n  max_headers: 0\n",
     "t.yaml:2: limits.max_headers: \"0\" is out of range (1 to 10000)"},
    {"limits:\n  max_connections: 4294967296\n",
     "t.yaml:2: limits.max_connections: \"4294967296\" is out of range (1 to 1000000)"},
    {"queues:\n  max_deliveries: -1\n",
     "t.yaml:2: queues.max_deliveries: \"-1\" is not a number (expected 1 to 1000000)"},
    {"queues:\n  max_in_flight: 1e4\n",
     "t.yaml:2: queues.max_in_flight: \"1e4\" is not a number (expected 1 to 1000000)"},
    {"limits:\n  max_frame_size: 12XB\n",
     "t.yaml:2: limits.max_frame_size: \"12XB\" is not a size (use B, KiB, MiB or GiB)"},
    {"limits:\n  max_frame_size: 1MB\n",
     "t.yaml:2: limits.max_frame_size: \"1MB\" is not a size (use B, KiB, MiB or GiB)"},
    {"limits:\n  max_frame_size: 2GiB\n",
     "t.yaml:2: limits.max_frame_size: \"2GiB\" is out of range (1KiB to 1GiB)"},
    {"limits:\n  max_frame_size: 512\n",
     "t.yaml:2: limits.max_frame_size: \"512\" is out of range (1KiB to 1GiB)"},
    {"limits:\n  max_message_size: 99999999999999999999\n",
     "t.yaml:2: limits.max_message_size: \"99999999999999999999\" is out of range (1B to 1GiB)"},
    {"limits:\n  max_message_size: 17179869184GiB\n",
     "t.yaml:2: limits.max_message_size: \"17179869184GiB\" is out of range (1B to 1GiB)"},
    {"shutdown_grace: 10 minutes\n",
     "t.yaml:1: shutdown_grace: \"10 minutes\" is not a duration (use ms, s, m or h; a bare number "
     "is seconds)"},
    {"shutdown_grace: 11m\n", "t.yaml:1: shutdown_grace: \"11m\" is out of range (0 to 10m)"},
    {"queues: {ack_timeout: 250ms}\n",
     "t.yaml:1: queues.ack_timeout: \"250ms\" is out of range (1s to 24h)"},
    {"queues: {linger: 61m}\n", "t.yaml:1: queues.linger: \"61m\" is out of range (0 to 1h)"},
    {"limits: {heartbeat: 99999999999999999999h}\n",
     "t.yaml:1: limits.heartbeat: \"99999999999999999999h\" is out of range (1s to 1h)"},
    {"limits: {heartbeat_min: 5ms}\n",
     "t.yaml:1: limits.heartbeat_min: \"5ms\" is out of range (10ms to 1h)"},
    {"auth:\n  anonymous: yes\n",
     "t.yaml:2: auth.anonymous: \"yes\" is not a boolean (use true or false)"},

    /* strings */
    {"node_id: \"\"\n", "t.yaml:1: node_id: must not be empty"},
    {"node_id: \"kb 1\"\n",
     "t.yaml:1: node_id: \"kb 1\" may only contain A-Z, a-z, 0-9, '.', '_' and '-'"},
    {"kafka: { topic_prefix: \"kb/\" }\n",
     "t.yaml:1: kafka.topic_prefix: \"kb/\" may only contain A-Z, a-z, 0-9, '.', '_' and '-'"},
    {"queues:\n  dead_letter_topic: dlq\n",
     "t.yaml:2: queues.dead_letter_topic: \"dlq\" must contain {name} (the queue name), e.g. "
     "\"{name}.DLQ\""},
    {"queues:\n  dead_letter_topic: \"{name}/dlq\"\n",
     "t.yaml:2: queues.dead_letter_topic: \"{name}/dlq\" may only contain {name}, A-Z, a-z, 0-9, "
     "'.', '_' and '-'"},
    {"queues:\n  redelivery_delay: { multiplier: \"0.5\" }\n",
     "t.yaml:2: queues.redelivery_delay.multiplier: \"0.5\" is not a number from 1 to 100 (e.g. 2 "
     "or 1.5)"},
    {"queues:\n  redelivery_delay: { multiplier: \"2x\" }\n",
     "t.yaml:2: queues.redelivery_delay.multiplier: \"2x\" is not a number from 1 to 100 (e.g. 2 "
     "or 1.5)"},
    {"queues:\n  retry_topic: \"{name}.retry\"\n",
     "t.yaml:2: queues.retry_topic: \"{name}.retry\" must contain {name} (the queue name) and one "
     "of {n} (the retry, from 1), {index} (from 0) or {delay} (its delay in ms), e.g. "
     "\"{name}.retry.{n}\""},
    {"queues:\n  retry_topic: \"{name}/r{n}\"\n",
     "t.yaml:2: queues.retry_topic: \"{name}/r{n}\" may only contain {name}, {n}, {index}, "
     "{delay}, A-Z, a-z, 0-9, '.', '_' and '-'"},
    {"log:\n  level: verbose\n",
     "t.yaml:2: log.level: \"verbose\" is not a log level (use error, warn, info or debug)"},
    {"log:\n  format: xml\n",
     "t.yaml:2: log.format: \"xml\" is not a log format (use text or json)"},

    /* Kafka bootstrap */
    {"kafka:\n  bootstrap: embeded\n",
     "t.yaml:2: kafka.bootstrap: \"embeded\" is neither embedded nor a list of host:port (e.g. "
     "kafka1:9092,kafka2:9092)"},
    {"kafka:\n  bootstrap: \"a:1,,b:2\"\n",
     "t.yaml:2: kafka.bootstrap: \"a:1,,b:2\" has an empty entry (write host:port,host:port)"},
    {"kafka:\n  bootstrap: \"a:1,b\"\n",
     "t.yaml:2: kafka.bootstrap: \"b\" is not host:port (e.g. 127.0.0.1:5672 or [::1]:5672)"},
    {"kafka:\n  bootstrap: \"a:0\"\n",
     "t.yaml:2: kafka.bootstrap: \"a:0\": the port must be a number from 1 to 65535"},
    {"kafka:\n  properties:\n    bootstrap.servers: x\n",
     "t.yaml:3: kafka.properties.bootstrap.servers: set kafka.bootstrap instead"},

    /* listeners */
    {"listeners:\n  stomp: {}\n", "t.yaml:2: listeners.stomp: missing required key \"bind\""},
    {"listeners:\n  http:\n", "t.yaml:2: listeners.http: missing required key \"bind\""},
    {"listeners:\n  amqp:\n    bind: \"127.0.0.1:70000\"\n",
     "t.yaml:3: listeners.amqp.bind: \"127.0.0.1:70000\": the port must be a number from 0 to "
     "65535"},
    {"listeners:\n  amqp:\n    bind: \"127.0.0.1:\"\n",
     "t.yaml:3: listeners.amqp.bind: \"127.0.0.1:\": the port must be a number from 0 to 65535"},
    {"listeners:\n  amqp:\n    bind: \"127.0.0.1:0x10\"\n",
     "t.yaml:3: listeners.amqp.bind: \"127.0.0.1:0x10\": the port must be a number from 0 to "
     "65535"},
    {"listeners:\n  amqp:\n    bind: localhost\n",
     "t.yaml:3: listeners.amqp.bind: \"localhost\" is not host:port (e.g. 127.0.0.1:5672 or "
     "[::1]:5672)"},
    {"listeners:\n  amqp:\n    bind: \"::1:5672\"\n",
     "t.yaml:3: listeners.amqp.bind: \"::1:5672\": write IPv6 addresses in brackets, e.g. "
     "[::1]:5672"},
    {"listeners:\n  amqp:\n    bind: \"[::1]5672\"\n",
     "t.yaml:3: listeners.amqp.bind: \"[::1]5672\" is not [IPv6]:port (e.g. [::1]:5672)"},
    {"listeners:\n  amqp:\n    bind: \"[1.2.3.4]:5672\"\n",
     "t.yaml:3: listeners.amqp.bind: \"[1.2.3.4]:5672\" does not hold an IPv6 address in brackets"},
    {"listeners:\n  amqp:\n    bind: \":5672\"\n",
     "t.yaml:3: listeners.amqp.bind: \":5672\" has no host (use 0.0.0.0 or [::] for all "
     "addresses)"},
    {"listeners:\n  amqp:\n    bind: \"my host:5672\"\n",
     "t.yaml:3: listeners.amqp.bind: \"my host:5672\": the host may only contain letters, digits, "
     "'.', '-' and '_'"},

    /* users and ACLs */
    {"auth:\n  users:\n    - password_hash: \"$6$a$b$c\"\n",
     "t.yaml:3: auth.users[0]: missing required key \"name\""},
    {"auth:\n  users:\n    - name: app\n      password_hash: \"$6$a$b\"\n    - name: ops\n",
     "t.yaml:5: auth.users[1]: missing required key \"password_hash\""},
    {"auth:\n  users:\n    - name: app\n      password: hunter2\n",
     "t.yaml:4: auth.users[0].password: plaintext passwords are refused; write its hash in "
     "password_hash (kbridged --hash-password prints one), or set auth.insecure_plaintext: true "
     "for tests"},
    {"auth:\n  insecure_plaintext: true\n  users:\n    - name: app\n      password: hunter2\n"
     "      password_hash: \"$6$a$b\"\n",
     "t.yaml:5: auth.users[0]: set password_hash or password, not both"},
    {"auth:\n  users:\n    - name: app\n      password_hash: "
     "\"kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgx\"\n",
     "t.yaml:4: auth.users[0].password_hash: is neither a crypt(3) hash (\"$id$salt$hash\", as "
     "printed by `kbridged --hash-password` or `openssl passwd -6`) nor a RabbitMQ "
     "rabbit_password_hashing_sha256/sha512 hash (base64)"},
    {"auth:\n  users:\n    - name: app\n      password_hash: \"$6$a$b\"\n"
     "    - name: app\n      password_hash: \"$6$c$d\"\n",
     "t.yaml:5: auth.users[1].name: duplicate user \"app\" (first on line 3)"},
    {"auth:\n  users:\n    - name: \"a:b\"\n      password_hash: \"$6$a$b\"\n",
     "t.yaml:3: auth.users[0].name: \"a:b\" must not contain spaces, ':' or control characters"},
    {"auth:\n  users:\n    - name: app\n      password_hash: hunter2\n",
     "t.yaml:4: auth.users[0].password_hash: is neither a crypt(3) hash (\"$id$salt$hash\", as "
     "printed by `kbridged --hash-password` or `openssl passwd -6`) nor a RabbitMQ "
     "rabbit_password_hashing_sha256/sha512 hash (base64)"},
    {"auth:\n  users:\n    - name: app\n      password_hash: \"$6$onlysalt\"\n",
     "t.yaml:4: auth.users[0].password_hash: is neither a crypt(3) hash (\"$id$salt$hash\", as "
     "printed by `kbridged --hash-password` or `openssl passwd -6`) nor a RabbitMQ "
     "rabbit_password_hashing_sha256/sha512 hash (base64)"},
    {"auth:\n  users:\n    - name: app\n      password_hash: \"$6$$hash\"\n",
     "t.yaml:4: auth.users[0].password_hash: is neither a crypt(3) hash (\"$id$salt$hash\", as "
     "printed by `kbridged --hash-password` or `openssl passwd -6`) nor a RabbitMQ "
     "rabbit_password_hashing_sha256/sha512 hash (base64)"},
    {"auth:\n  users:\n    - name: app\n      password_hash: \"$6$salt$hash$\"\n",
     "t.yaml:4: auth.users[0].password_hash: is neither a crypt(3) hash (\"$id$salt$hash\", as "
     "printed by `kbridged --hash-password` or `openssl passwd -6`) nor a RabbitMQ "
     "rabbit_password_hashing_sha256/sha512 hash (base64)"},
    {"auth:\n  users:\n    - name: app\n      password_hash: \"$6$a$b\"\n      consume: [\"\"]\n",
     "t.yaml:5: auth.users[0].consume[0]: must not be empty"},

    /* duplicates */
    {"limits:\n  max_headers: 5\n  max_headers: 6\n",
     "t.yaml:3: limits.max_headers: duplicate key (first on line 2)"},
    {"log: {}\nlimits: {}\nlog: {}\n", "t.yaml:3: log: duplicate key (first on line 1)"},
    {"listeners:\n  stomp: { bind: \"a:1\", bind: \"a:2\" }\n",
     "t.yaml:2: listeners.stomp.bind: duplicate key (first on line 2)"},

    /* documents */
    {"node_id: a\n---\nnode_id: b\n",
     "t.yaml:3: more than one YAML document (one configuration per file)"},
};

START_TEST(test_error_messages) { expect_error(error_cases[_i].yaml, error_cases[_i].error); }
END_TEST

/* Errors whose tail comes from libyaml or regerror(3). */
START_TEST(test_error_library_text)
{
    expect_error_prefix("limits:\n  max_headers: 5\n bad\n",
                        "t.yaml:3: syntax error: did not find expected key");
    expect_error_prefix("limits:\n\tmax_headers: 5\n",
                        "t.yaml:2: syntax error: found character that cannot start any token");
    expect_error_prefix("a: 1\nb: *missing\n", "t.yaml:2: syntax error: found undefined alias");
    expect_error_prefix("node_id: a\nlog: \"\xff\"\n", "t.yaml:2: syntax error: invalid ");
    expect_error_prefix("auth:\n  users:\n    - name: a\n      password_hash: \"$6$salt$hash\"\n"
                        "      publish: [\"(\"]\n",
                        "t.yaml:5: auth.users[0].publish[0]: \"(\" is not a valid regular "
                        "expression: ");
}
END_TEST

START_TEST(test_error_files)
{
    expect_file_error(TEST_DATA_DIR "/bad_size.yaml",
                      ":7: limits.max_frame_size: \"12XB\" is not a size (use B, KiB, MiB or GiB)");
    expect_file_error(TEST_DATA_DIR "/bad_listener.yaml",
                      ":5: listeners.amqp: missing required key \"bind\"");

    char err[512] = "", regex_message[128];
    regex_t unbalanced;
    struct config *config = NULL;
    /* the reason regcomp gives on this system */
    int rc = regcomp(&unbalanced, "^billing\\.(invoices", REG_EXTENDED | REG_NOSUB);
    ck_assert_int_ne(rc, 0);
    regerror(rc, &unbalanced, regex_message, sizeof(regex_message));
    regfree(&unbalanced);
    char expected[1024];
    snprintf(expected, sizeof(expected),
             ":10: auth.users[1].publish[1]: \"^billing\\\\.(invoices\" is not a valid regular "
             "expression: %s",
             regex_message);
    expect_file_error(TEST_DATA_DIR "/bad_acl.yaml", expected);

    ck_assert_int_eq(config_load(TEST_DATA_DIR "/bad_syntax.yaml", &config, err, sizeof(err)), -1);
    ck_assert_str_eq(err, TEST_DATA_DIR "/bad_syntax.yaml:7: syntax error: did not find expected "
                                        "',' or ']' (while parsing a flow sequence on line 6)");

    snprintf(expected, sizeof(expected), ": cannot open: %s", strerror(ENOENT));
    expect_file_error(TEST_DATA_DIR "/no-such-file.yaml", expected);
    snprintf(expected, sizeof(expected), ": cannot read: %s", strerror(EISDIR));
    expect_file_error(TEST_DATA_DIR, expected);
}
END_TEST

/* Overlong values are refused, whole, never cut; secrets are not echoed. */
START_TEST(test_overlong_values)
{
    char yaml[2048], expected[512];
    char long_name[300];
    memset(long_name, 'a', 256);
    long_name[256] = '\0';
    snprintf(yaml, sizeof(yaml), "node_id: %s\n", long_name);
    snprintf(expected, sizeof(expected),
             "t.yaml:1: node_id: \"%.64s...\" is too long (at most 255 characters)", long_name);
    expect_error(yaml, expected);

    long_name[255] = '\0';
    snprintf(yaml, sizeof(yaml), "node_id: %s\n", long_name);
    struct config *config = load_ok(yaml);
    ck_assert_uint_eq(strlen(config->node_id), 255);
    config_free(config);

    char hash[1100] = "$6$salt$";
    memset(hash + 8, 'h', 1020);
    hash[1028] = '\0';
    snprintf(yaml, sizeof(yaml), "auth:\n  users:\n    - name: a\n      password_hash: \"%s\"\n",
             hash);
    expect_error(yaml, "t.yaml:4: auth.users[0].password_hash: is too long (at most 1024 "
                       "characters)");
}
END_TEST

/* The error buffer: filled when given, NUL-terminated when small, optional. */
START_TEST(test_error_buffer)
{
    const char *yaml = "limits: {max_headers: 0}\n";
    struct config *config = NULL;
    char small[8];
    ck_assert_int_eq(
        config_load_string("t.yaml", yaml, strlen(yaml), &config, small, sizeof(small)), -1);
    ck_assert_str_eq(small, "t.yaml:");
    ck_assert_int_eq(config_load_string("t.yaml", yaml, strlen(yaml), &config, NULL, 0), -1);
    ck_assert_ptr_null(config);

    char err[64] = "stale";
    config = load_ok("{}");
    config_free(config);
    ck_assert_int_eq(config_load_string("t.yaml", "{}", 2, &config, err, sizeof(err)), 0);
    ck_assert_str_eq(err, "");
    config_free(config);
    config_free(NULL);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Reload                                                                   */
/* ------------------------------------------------------------------------ */

START_TEST(test_apply_live)
{
    struct config *old = load_ok("node_id: n1\n"
                                 "kafka:\n"
                                 "  bootstrap: \"a:1\"\n"
                                 "  properties: { client.rack: r1 }\n"
                                 "listeners:\n"
                                 "  stomp: { bind: \"127.0.0.1:61613\" }\n"
                                 "auth:\n"
                                 "  users: [{ name: old, password_hash: \"$6$a$b\" }]\n"
                                 "limits: { max_headers: 10 }\n");
    struct config *reloaded =
        load_ok("node_id: n2\n"
                "kafka:\n"
                "  bootstrap: \"b:2\"\n"
                "  properties: { client.rack: r2, socket.timeout.ms: 5 }\n"
                "listeners:\n"
                "  amqp: { bind: \"127.0.0.1:5672\" }\n"
                "auth:\n"
                "  anonymous: true\n"
                "  users: [{ name: new, password_hash: \"$6$c$d\", publish: [\"^x$\"] }]\n"
                "limits: { max_headers: 20 }\n"
                "log: { level: debug }\n");

    char *logged = apply_live_capturing_log(old, reloaded);
    config_free(old); /* what reloaded kept must be its own copy */

    ck_assert_str_eq(reloaded->node_id, "n1");
    ck_assert_str_eq(reloaded->kafka.bootstrap, "a:1");
    ck_assert_uint_eq(reloaded->kafka.properties.count, 1);
    ck_assert_str_eq(reloaded->kafka.properties.items[0].name, "client.rack");
    ck_assert_str_eq(reloaded->kafka.properties.items[0].value, "r1");
    ck_assert_ptr_nonnull(config_listener_find(reloaded, "stomp"));
    ck_assert_str_eq(listener_bind_of(reloaded, "stomp"), "127.0.0.1:61613");
    ck_assert_ptr_null(config_listener_find(reloaded, "amqp"));
    ck_assert_ptr_null(listener_bind_of(reloaded, "amqp"));

    ck_assert_uint_eq(reloaded->limits.max_headers, 20);
    ck_assert(reloaded->auth.anonymous);
    ck_assert_uint_eq(reloaded->auth.user_count, 1);
    ck_assert_str_eq(reloaded->auth.users[0].name, "new");
    ck_assert_int_eq(reloaded->log.level, LOG_LEVEL_DEBUG);

    const char *const warnings[] = {
        "node_id changed; restart kbridged to apply it",
        "kafka.bootstrap changed; restart kbridged to apply it",
        "kafka.properties changed; restart kbridged to apply it",
        "listeners.stomp changed; restart kbridged to apply it",
        "listeners.amqp changed; restart kbridged to apply it",
    };
    for (size_t i = 0; i < ARRAY_LEN(warnings); i++)
        ck_assert_msg(strstr(logged, warnings[i]) != NULL, "missing \"%s\" in:\n%s", warnings[i],
                      logged);
    ck_assert_msg(strstr(logged, "kafka.topic_prefix") == NULL &&
                      strstr(logged, "listeners.http") == NULL && strstr(logged, "limits") == NULL,
                  "warned about an unchanged or live key:\n%s", logged);
    free(logged);
    config_free(reloaded);
}
END_TEST

START_TEST(test_apply_live_unchanged)
{
    const char *yaml = "kafka: { bootstrap: \"a:1\", producer: { acks: all } }\n"
                       "listeners: { http: { bind: \"127.0.0.1:15672\" } }\n"
                       "limits: { max_headers: 10 }\n";
    struct config *old = load_ok(yaml);
    struct config *reloaded = load_ok(yaml);
    char *logged = apply_live_capturing_log(old, reloaded);
    ck_assert_str_eq(logged, "");
    ck_assert_str_eq(reloaded->kafka.producer.items[0].value, "all");
    free(logged);
    config_free(old);
    config_free(reloaded);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Reference                                                                */
/* ------------------------------------------------------------------------ */

/* ---- listeners: a list keyed by name ------------------------------------------ */

/* shovels: a list, each end checked, defaults applied (architecture §15). */
START_TEST(test_shovels)
{
    struct config *config =
        load_ok("shovels:\n"
                "  - name: in\n"
                "    source: {protocol: stomp, address: \"127.0.0.1:61613\", login: guest,\n"
                "             passcode: guest, destination: /queue/legacy}\n"
                "    destination: {protocol: kbridge, destination: /queue/orders}\n"
                "  - name: out\n"
                "    source: {protocol: kbridge, destination: /topic/events}\n"
                "    destination: {protocol: stomp, address: \"rabbit:61613\", host: shop,\n"
                "                  destination: /queue/events}\n"
                "    user: app\n"
                "    prefetch: 7\n"
                "    reconnect_delay_initial: 250ms\n"
                "    reconnect_delay_max: 5s\n");
    ck_assert_uint_eq(config->shovel_count, 2);
    const struct config_shovel *in = &config->shovels[0], *out = &config->shovels[1];
    ck_assert_str_eq(in->name, "in");
    ck_assert_str_eq(in->source.protocol, "stomp");
    ck_assert_str_eq(in->source.address, "127.0.0.1:61613");
    ck_assert_str_eq(in->source.passcode, "guest");
    ck_assert_str_eq(in->destination.destination, "/queue/orders");
    ck_assert_ptr_null(in->source.host);
    ck_assert_ptr_null(in->user);
    ck_assert_uint_eq(in->prefetch, 100);
    ck_assert_uint_eq(in->reconnect_delay_initial, 1000);
    ck_assert_uint_eq(in->reconnect_delay_max, 30000);
    ck_assert_uint_eq(in->heartbeat, 10000);
    ck_assert_uint_eq(in->connect_timeout, 30000);
    ck_assert_str_eq(out->source.protocol, "kbridge");
    ck_assert_str_eq(out->destination.host, "shop");
    ck_assert_str_eq(out->user, "app");
    ck_assert_uint_eq(out->prefetch, 7);
    ck_assert_uint_eq(out->reconnect_delay_initial, 250);
    ck_assert_uint_eq(out->reconnect_delay_max, 5000);
    config_free(config);
}
END_TEST

static const struct {
    const char *yaml;
    const char *error;
} shovel_error_cases[] = {
    {"shovels: {a: 1}\n", "t.yaml:1: shovels: expected a list of shovels, got a mapping"},
    {"shovels:\n  - source: {protocol: kbridge, destination: /queue/a}\n"
     "    destination: {protocol: stomp, address: \"h:1\", destination: /queue/b}\n",
     "t.yaml:2: shovels[0]: missing required key \"name\""},
    {"shovels:\n  - name: a\n    source: {protocol: amqp, address: \"h:0\", destination: q}\n"
     "    destination: {protocol: kbridge, destination: /queue/b}\n",
     "t.yaml:2: shovels[0].source.address: \"h:0\" is not HOST:PORT (rabbit.example:5672, "
     "127.0.0.1:61613, [::1]:5672)"},
    {"shovels:\n  - name: a\n    source: {protocol: stomp, address: \"127.0.0.1\", "
     "destination: /queue/q}\n"
     "    destination: {protocol: kbridge, destination: /queue/b}\n",
     "t.yaml:2: shovels[0].source.address: \"127.0.0.1\" is not HOST:PORT (rabbit.example:5672, "
     "127.0.0.1:61613, [::1]:5672)"},
    {"shovels:\n  - name: a\n    source: {protocol: amqp, address: \"::1:5672\", "
     "destination: q}\n"
     "    destination: {protocol: kbridge, destination: /queue/b}\n",
     "t.yaml:2: shovels[0].source.address: \"::1:5672\" is not HOST:PORT (rabbit.example:5672, "
     "127.0.0.1:61613, [::1]:5672)"},
    {"shovels:\n  - name: a\n    source: {protocol: kafka, destination: /queue/a}\n"
     "    destination: {protocol: kbridge, destination: /queue/b}\n",
     "t.yaml:2: shovels[0].source.protocol: \"kafka\" is not a shovel protocol (kbridge, "
     "stomp, amqp)"},
    {"shovels:\n  - name: a\n    source: {protocol: stomp, address: \"h:1\", destination: "
     "/queue/a}\n"
     "    destination: {protocol: stomp, address: \"h:2\", destination: /queue/b}\n",
     "t.yaml:2: shovels[0]: neither end is kbridge: a shovel moves messages between kbridge "
     "and one legacy broker"},
    {"shovels:\n  - name: a\n    source: {protocol: stomp, destination: /queue/a}\n"
     "    destination: {protocol: kbridge, destination: /queue/b}\n",
     "t.yaml:2: shovels[0].source.address: is required: the broker's host:port"},
    {"shovels:\n  - name: a\n    source: {protocol: stomp, address: \"h:1\"}\n"
     "    destination: {protocol: kbridge, destination: /queue/b}\n",
     "t.yaml:2: shovels[0].source.destination: is required"},
    {"shovels:\n  - name: a\n    source: {protocol: stomp, address: \"h:1\", destination: "
     "/queue/a}\n"
     "    destination: {protocol: kbridge, destination: /exchange/b}\n",
     "t.yaml:2: shovels[0].destination.destination: \"/exchange/b\" is not a kbridge "
     "destination: /queue/NAME or /topic/NAME"},
    {"shovels:\n  - name: a\n    source: {protocol: stomp, address: \"h:1\", destination: "
     "/queue/a}\n"
     "    destination: {protocol: kbridge, destination: /queue/b, login: x}\n",
     "t.yaml:2: shovels[0].destination.login: is for a legacy broker; the kbridge end has only "
     "protocol and destination"},
    {"shovels:\n  - name: a\n    source: {protocol: stomp, address: \"h:1\", destination: "
     "/queue/a,\n"
     "             passcode: p, passcode_file: /f}\n"
     "    destination: {protocol: kbridge, destination: /queue/b}\n",
     "t.yaml:2: shovels[0].source.passcode_file: and passcode are both set; keep one"},
    {"shovels:\n  - name: a\n    source: {protocol: stomp, address: \"h:1\", destination: "
     "/queue/a}\n"
     "    destination: {protocol: kbridge, destination: /queue/b}\n"
     "    reconnect_delay_initial: 10s\n    reconnect_delay_max: 1s\n",
     "t.yaml:2: shovels[0]: reconnect_delay_max is below reconnect_delay_initial"},
    {"shovels:\n  - name: a\n    source: {protocol: stomp, address: \"h:1\", destination: "
     "/queue/a}\n"
     "    destination: {protocol: kbridge, destination: /queue/b}\n"
     "  - name: a\n    source: {protocol: stomp, address: \"h:1\", destination: /queue/c}\n"
     "    destination: {protocol: kbridge, destination: /queue/d}\n",
     "t.yaml:5: shovels[1]: duplicate shovel name \"a\""},
    {"shovels:\n  - name: a\n    source: {protocol: stomp, address: \"h:1\", destination: "
     "/queue/a}\n"
     "    destination: {protocol: kbridge, destination: /queue/b}\n    prefetch: 0\n",
     "t.yaml:5: shovels[0].prefetch: \"0\" is out of range (1 to 65535)"},
};

START_TEST(test_shovel_errors)
{
    expect_error(shovel_error_cases[_i].yaml, shovel_error_cases[_i].error);
}
END_TEST

/* shovels are read at start: a reload keeps the running list (its own copy)
 * and says a restart applies the change. */
START_TEST(test_apply_live_shovels)
{
    static const char shovel[] =
        "shovels:\n"
        "  - name: in\n"
        "    source: {protocol: stomp, address: \"h:1\", passcode: p, destination: /queue/a}\n"
        "    destination: {protocol: kbridge, destination: /queue/b}\n";
    char changed[512];
    snprintf(changed, sizeof(changed), "%s    prefetch: 5\n", shovel);
    struct config *old = load_ok(shovel);
    struct config *same = load_ok(shovel);
    struct config *reloaded = load_ok(changed);
    char *logged = apply_live_capturing_log(old, same);
    ck_assert_msg(strstr(logged, "shovels") == NULL, "unchanged shovels logged: %s", logged);
    free(logged);
    logged = apply_live_capturing_log(old, reloaded);
    config_free(old); /* what reloaded kept must be its own copy */
    ck_assert_msg(strstr(logged, "shovels changed; restart kbridged to apply it") != NULL,
                  "logged: %s", logged);
    ck_assert_uint_eq(reloaded->shovel_count, 1);
    ck_assert_uint_eq(reloaded->shovels[0].prefetch, 100);
    ck_assert_str_eq(reloaded->shovels[0].source.passcode, "p");
    ck_assert_str_eq(reloaded->shovels[0].destination.destination, "/queue/b");
    free(logged);
    config_free(same);
    config_free(reloaded);
}
END_TEST

START_TEST(test_listeners_list)
{
    struct config *config =
        load_ok("listeners:\n"
                "  shared: { bind: \"127.0.0.1:1\", protocols: [stomp, amqp] }\n"
                "  stomp: { bind: \"127.0.0.1:2\" }\n"
                "  amqp2: { bind: \"127.0.0.1:3\", protocols: [amqp] }\n"
                "  a4: { bind: \"127.0.0.1:4\", protocols: [stomp] }\n"
                "  a5: { bind: \"127.0.0.1:5\", protocols: [stomp] }\n"
                "  http: { bind: \"127.0.0.1:6\" }\n");
    ck_assert_uint_eq(config->listener_count, 6); /* no fixed maximum */
    const struct config_listener *shared = &config->listeners[0];
    ck_assert_str_eq(shared->name, "shared");
    ck_assert_str_eq(shared->bind, "127.0.0.1:1");
    ck_assert_uint_eq(shared->protocol_count, 2);
    ck_assert_str_eq(shared->protocols[0], "stomp");
    ck_assert_str_eq(shared->protocols[1], "amqp");
    /* protocols defaults to the listener's own name */
    const struct config_listener *stomp = config_listener_find(config, "stomp");
    ck_assert_ptr_eq(stomp, &config->listeners[1]);
    ck_assert_uint_eq(stomp->protocol_count, 1);
    ck_assert_str_eq(stomp->protocols[0], "stomp");
    ck_assert_str_eq(config_listener_find(config, "amqp2")->protocols[0], "amqp");
    ck_assert_str_eq(config_listener_find(config, "http")->protocols[0], "http");
    ck_assert_ptr_null(config_listener_find(config, "amqp"));
    ck_assert_uint_eq(config->limits.protocol_detect_timeout_ms, 10000);
    ck_assert_uint_eq(config->limits.protocol_detect_bytes, 256);
    char err[512] = "";
    ck_assert_msg(server_check_listeners(config, adapter_registry_builtin(), err, sizeof(err)) == 0,
                  "%s", err);
    config_free(config);
}
END_TEST

static const struct {
    const char *yaml;
    const char *error;
} listener_refusals[] = {
    {"listeners:\n  mqtt: { bind: \"127.0.0.1:1883\" }\n",
     "listeners.mqtt: no protocol \"mqtt\" is built into kbridged (built in: stomp, amqp, "
     "amqp091; and http, the operations endpoint)"},
    {"listeners:\n  one: { bind: \"127.0.0.1:1\", protocols: [stomp, amqp10] }\n",
     "listeners.one.protocols[1]: no protocol \"amqp10\" is built into kbridged (built in: "
     "stomp, amqp, amqp091; and http, the operations endpoint)"},
    {"listeners:\n  ops: { bind: \"127.0.0.1:1\", protocols: [http, stomp] }\n",
     "listeners.ops.protocols[0]: \"http\" (the operations endpoint) cannot share a listener"},
    {"listeners:\n  http: { bind: \"127.0.0.1:1\" }\n  ops: { bind: \"127.0.0.1:2\", protocols: "
     "[http] }\n",
     "listeners.ops.protocols[0]: listeners.http already serves \"http\" (at most one listener "
     "may)"},
};

/* Unknown adapter names are refused at start (server_check_listeners), with
 * the key and the built-in adapters; the file itself is valid YAML config. */
START_TEST(test_listeners_refused)
{
    struct config *config = load_ok(listener_refusals[_i].yaml);
    char err[512] = "";
    ck_assert_int_eq(server_check_listeners(config, adapter_registry_builtin(), err, sizeof(err)),
                     -1);
    ck_assert_str_eq(err, listener_refusals[_i].error);
    config_free(config);
}
END_TEST

/* vhosts (architecture §11): "/" always first, mapped to kafka.topic_prefix;
 * other vhosts' prefixes given or derived; refusals. */
START_TEST(test_vhosts)
{
    struct config *config = load_ok("");
    ck_assert_uint_eq(config->vhost_count, 1);
    ck_assert_str_eq(config->vhosts[0].name, "/");
    ck_assert_str_eq(config->vhosts[0].topic_prefix, "");
    ck_assert_str_eq(config->definitions.topic, "kbridge.definitions");
    ck_assert_ptr_null(config->definitions.file);
    ck_assert_ptr_null(config_vhost_find(config, "shop"));
    config_free(config);

    config = load_ok("kafka: {topic_prefix: kb.}\n"
                     "vhosts:\n  shop: {}\n  \"/\": {}\n  eu: {topic_prefix: europe-}\n"
                     "definitions: {topic: defs, file: /etc/kbridge/definitions.json}\n");
    ck_assert_uint_eq(config->vhost_count, 3);
    ck_assert_str_eq(config->vhosts[0].name, "/"); /* first, wherever the file has it */
    ck_assert_str_eq(config->vhosts[0].topic_prefix, "kb.");
    ck_assert_str_eq(config_vhost_find(config, "shop")->topic_prefix, "kb.shop.");
    ck_assert_str_eq(config_vhost_find(config, "eu")->topic_prefix, "europe-");
    ck_assert_str_eq(config->definitions.topic, "defs");
    ck_assert_str_eq(config->definitions.file, "/etc/kbridge/definitions.json");
    config_free(config);

    expect_error("vhosts:\n  \"/\": {topic_prefix: x.}\n",
                 "t.yaml:2: vhosts./: the vhost / always uses kafka.topic_prefix; remove its "
                 "topic_prefix");
    expect_error("vhosts:\n  \"my shop\": {}\n",
                 "t.yaml: vhosts.my shop: the vhost's name cannot stand in its topic prefix "
                 "(\"my shop.\"): set topic_prefix");
    expect_error("vhosts:\n  shop: {topic_prefix: \"a b\"}\n",
                 "t.yaml:2: vhosts.shop.topic_prefix: \"a b\" may only contain A-Z, a-z, 0-9, "
                 "'.', '_' and '-'");
    expect_error("vhosts: [a]\n",
                 "t.yaml:1: vhosts: expected a mapping of vhost names to vhosts, got a list");
}
END_TEST

/* auth.users[].vhosts: absent is every vhost (NULL), `[]` none (non-NULL,
 * count 0), names must be configured vhosts ("/" always is), wherever the
 * file puts `vhosts`. */
START_TEST(test_user_vhosts)
{
    struct config *config =
        load_ok("auth:\n"
                "  users:\n"
                "    - { name: a, password_hash: \"$6$a$b\", vhosts: [sales] }\n"
                "    - { name: b, password_hash: \"$6$a$b\", vhosts: [] }\n"
                "    - { name: c, password_hash: \"$6$a$b\" }\n"
                "    - { name: d, password_hash: \"$6$a$b\", vhosts: [\"/\", "
                "sales] }\n"
                "vhosts: { sales: {} }\n");
    const struct config_user *users = config->auth.users;
    ck_assert_uint_eq(users[0].vhost_count, 1);
    ck_assert_str_eq(users[0].vhosts[0], "sales");
    ck_assert(config_user_may_use_vhost(&users[0], "sales"));
    ck_assert(!config_user_may_use_vhost(&users[0], "/"));
    ck_assert_ptr_nonnull(users[1].vhosts);
    ck_assert_uint_eq(users[1].vhost_count, 0);
    ck_assert(!config_user_may_use_vhost(&users[1], "/"));
    ck_assert(!config_user_may_use_vhost(&users[1], "sales"));
    ck_assert_ptr_null(users[2].vhosts);
    ck_assert(config_user_may_use_vhost(&users[2], "/"));
    ck_assert(config_user_may_use_vhost(&users[2], "anything"));
    ck_assert_uint_eq(users[3].vhost_count, 2);
    ck_assert(config_user_may_use_vhost(&users[3], "/"));
    ck_assert(config_user_may_use_vhost(&users[3], "sales"));
    config_free(config);

    expect_error("vhosts: { sales: {} }\n"
                 "auth:\n"
                 "  users:\n"
                 "    - { name: a, password_hash: \"$6$a$b\" }\n"
                 "    - { name: b, password_hash: \"$6$a$b\" }\n"
                 "    - { name: c, password_hash: \"$6$a$b\",\n"
                 "        vhosts: [x, sales] }\n",
                 "t.yaml:7: auth.users[2].vhosts[0]: no vhost \"x\" in vhosts");
    expect_error("auth:\n  users:\n    - { name: a, password_hash: \"$6$a$b\", vhosts: [sales] }\n",
                 "t.yaml:3: auth.users[0].vhosts[0]: no vhost \"sales\" in vhosts");
    expect_error("auth:\n  users:\n    - { name: a, password_hash: \"$6$a$b\", vhosts: [\"/\", "
                 "\"/\"] }\n",
                 "t.yaml:3: auth.users[0].vhosts[1]: \"/\" is listed twice");
    expect_error("auth:\n  users:\n    - { name: a, password_hash: \"$6$a$b\", vhosts: sales }\n",
                 "t.yaml:3: auth.users[0].vhosts: expected a list of names, got \"sales\"");
}
END_TEST

/* RabbitMQ's per-vhost permissions: one pattern each (a string or a list),
 * "" for none; the user may use only the vhosts named. */
START_TEST(test_user_permissions)
{
    struct config *config =
        load_ok("vhosts: { sales: {} }\n"
                "auth:\n"
                "  users:\n"
                "    - name: a\n"
                "      password_hash: \"$6$a$b\"\n"
                "      permissions:\n"
                "        \"/\": { configure: \"\", write: \"^orders\", read: \".*\" }\n"
                "        sales: { configure: [\"^tmp\"], read: \"^x$\" }\n"
                "    - { name: b, password_hash: \"$6$a$b\", permissions: {} }\n"
                "    - { name: c, password_hash: \"$6$a$b\", publish: [\".*\"] }\n");
    const struct config_user *users = config->auth.users;
    ck_assert_uint_eq(users[0].permission_count, 2);
    const struct config_permission *root = config_user_permission(&users[0], "/");
    ck_assert_ptr_nonnull(root);
    ck_assert_uint_eq(root->configure_count, 0);
    ck_assert_uint_eq(root->write_count, 1);
    ck_assert_str_eq(root->write[0].source, "^orders");
    ck_assert_int_eq(regexec(&root->write[0].regex, "orders.eu", 0, NULL, 0), 0);
    ck_assert_uint_eq(root->read_count, 1);
    const struct config_permission *sales = config_user_permission(&users[0], "sales");
    ck_assert_ptr_nonnull(sales);
    ck_assert_uint_eq(sales->configure_count, 1);
    ck_assert_uint_eq(sales->write_count, 0); /* absent: nothing */
    ck_assert_str_eq(sales->read[0].source, "^x$");
    ck_assert(config_user_may_use_vhost(&users[0], "/"));
    ck_assert(config_user_may_use_vhost(&users[0], "sales"));
    ck_assert(!config_user_may_use_vhost(&users[0], "other"));
    ck_assert_ptr_nonnull(users[1].permissions); /* {}: no vhost at all */
    ck_assert_uint_eq(users[1].permission_count, 0);
    ck_assert(!config_user_may_use_vhost(&users[1], "/"));
    ck_assert_ptr_null(users[2].permissions); /* absent: publish and consume, every vhost */
    ck_assert(config_user_may_use_vhost(&users[2], "sales"));
    ck_assert_ptr_null(config_user_permission(&users[2], "/"));
    config_free(config);

    expect_error("auth:\n  users:\n"
                 "    - { name: a, password_hash: \"$6$a$b\", publish: [x],\n"
                 "        permissions: { \"/\": { read: x } } }\n",
                 "t.yaml:4: auth.users[0].publish: set permissions (per vhost) or publish, not "
                 "both");
    expect_error("auth:\n  users:\n"
                 "    - { name: a, password_hash: \"$6$a$b\", vhosts: [\"/\"],\n"
                 "        permissions: { \"/\": { read: x } } }\n",
                 "t.yaml:4: auth.users[0].vhosts: set permissions (per vhost) or vhosts, not both");
    expect_error("auth:\n  users:\n"
                 "    - { name: a, password_hash: \"$6$a$b\", permissions: { sales: {} } }\n",
                 "t.yaml:3: auth.users[0].permissions: no vhost \"sales\" in vhosts");
    expect_error("auth:\n  users:\n"
                 "    - { name: a, password_hash: \"$6$a$b\", permissions: { \"/\": { rd: x } } "
                 "}\n",
                 "t.yaml:3: auth.users[0].permissions./.rd: unknown key (did you mean "
                 "\"read\"?)");
    expect_error("auth:\n  users:\n"
                 "    - { name: a, password_hash: \"$6$a$b\", permissions: { \"/\": { read: "
                 "\"(\" } } }\n",
                 "t.yaml:3: auth.users[0].permissions./.read: \"(\" is not a valid regular "
                 "expression: Unmatched ( or \\(");
    /* a user's publish list still needs a pattern in every item */
    expect_error("auth:\n  users:\n    - { name: a, password_hash: \"$6$a$b\", publish: x }\n",
                 "t.yaml:3: auth.users[0].publish: expected a list of regular expressions, got "
                 "\"x\"");
}
END_TEST

/* A file named t.yaml's definitions.file with `json` in it, for one test;
 * the path is written to `path` (removed by the caller). */
static void write_definitions(char *path, const char *json)
{
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *stream = fdopen(fd, "w");
    ck_assert_ptr_nonnull(stream);
    fputs(json, stream);
    ck_assert_int_eq(fclose(stream), 0);
}

static struct config *load_with_definitions(const char *path, const char *rest)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "vhosts: { sales: {} }\n"
             "definitions: { file: \"%s\", import_users: true }\n%s",
             path, rest);
    return load_ok(yaml);
}

/* definitions.import_users: RabbitMQ's users with their hashes verbatim,
 * known tags, and their permissions per vhost; config users win. */
START_TEST(test_import_users)
{
    static const unsigned char salt[4] = {1, 2, 3, 4};
    char sha256[128], sha512[128], json[4096];
    ck_assert_int_eq(password_rabbit_hash("secret", salt, false, sha256, sizeof(sha256)), 0);
    ck_assert_int_eq(password_rabbit_hash("other", salt, true, sha512, sizeof(sha512)), 0);
    snprintf(json, sizeof(json),
             "{\"users\": ["
             " {\"name\": \"app\", \"password_hash\": \"%s\","
             "  \"hashing_algorithm\": \"rabbit_password_hashing_sha256\", \"tags\": \"\"},"
             " {\"name\": \"ops\", \"password_hash\": \"%s\","
             "  \"hashing_algorithm\": \"rabbit_password_hashing_sha512\","
             "  \"tags\": [\"administrator\", \"impersonator\"]},"
             " {\"name\": \"cert\", \"password_hash\": \"\", \"tags\": \"monitoring,management\"},"
             " {\"name\": \"local\", \"password_hash\": \"%s\"}],"
             " \"permissions\": ["
             " {\"user\": \"app\", \"vhost\": \"/\", \"configure\": \"\", \"write\": \"^orders\","
             "  \"read\": \".*\"},"
             " {\"user\": \"app\", \"vhost\": \"sales\", \"configure\": \".*\", \"write\": \"\","
             "  \"read\": \"\"},"
             " {\"user\": \"app\", \"vhost\": \"unknown\", \"configure\": \".*\", \"write\": "
             "\".*\", \"read\": \".*\"},"
             " {\"user\": \"local\", \"vhost\": \"/\", \"configure\": \".*\", \"write\": \".*\","
             "  \"read\": \".*\"}],"
             " \"queues\": []}",
             sha256, sha512, sha256);
    char path[] = "/tmp/check_config_definitions_XXXXXX";
    write_definitions(path, json);
    struct config *config =
        load_with_definitions(path, "auth:\n  users:\n    - { name: local, password_hash: "
                                    "\"$6$a$b\", publish: [\"^mine$\"] }\n");
    ck_assert_uint_eq(config->auth.user_count, 4); /* local (the config's), app, ops, cert */
    ck_assert_uint_eq(config->definitions.imported_users, 3);
    ck_assert_uint_eq(config->definitions.skipped_users, 1);
    ck_assert_uint_eq(config->definitions.imported_permissions, 2);
    ck_assert_uint_eq(config->definitions.skipped_permissions, 2); /* unknown vhost, local */
    const struct config_user *local = &config->auth.users[0];
    ck_assert_str_eq(local->password_hash, "$6$a$b");
    ck_assert_ptr_null(local->permissions);
    ck_assert(!local->imported);
    const struct config_user *app = &config->auth.users[1];
    ck_assert_str_eq(app->name, "app");
    ck_assert(app->imported);
    ck_assert_str_eq(app->password_hash, sha256);
    ck_assert(password_verify("secret", app->password_hash));
    ck_assert_uint_eq(app->tag_count, 0);
    ck_assert_uint_eq(app->permission_count, 2);
    const struct config_permission *root = config_user_permission(app, "/");
    ck_assert_uint_eq(root->configure_count, 0);
    ck_assert_str_eq(root->write[0].source, "^orders");
    ck_assert_str_eq(root->read[0].source, ".*");
    ck_assert_uint_eq(config_user_permission(app, "sales")->write_count, 0);
    ck_assert(!config_user_may_use_vhost(app, "unknown"));
    const struct config_user *ops = &config->auth.users[2];
    ck_assert(password_verify("other", ops->password_hash));
    ck_assert_uint_eq(ops->tag_count, 1);
    ck_assert_str_eq(ops->tags[0], "administrator");
    ck_assert_ptr_nonnull(ops->permissions); /* none in the file: no vhost */
    ck_assert(!config_user_may_use_vhost(ops, "/"));
    const struct config_user *cert = &config->auth.users[3];
    ck_assert_str_eq(cert->password_hash, "");
    ck_assert(!password_verify("", cert->password_hash));
    ck_assert_uint_eq(cert->tag_count, 2);
    config_free(config);
    unlink(path);

    /* md5 hashes cannot be checked: refused, naming the user */
    char md5_path[] = "/tmp/check_config_definitions_XXXXXX";
    write_definitions(md5_path, "{\"users\": [{\"name\": \"old\", \"password_hash\": \"abc\","
                                " \"hashing_algorithm\": \"rabbit_password_hashing_md5\"}]}");
    char yaml[1024], expected[1024];
    snprintf(yaml, sizeof(yaml), "definitions: { file: \"%s\", import_users: true }\n", md5_path);
    snprintf(expected, sizeof(expected),
             "t.yaml: definitions.file: %s: users[0] 'old': hashing_algorithm "
             "rabbit_password_hashing_md5 is not supported (only rabbit_password_hashing_sha256 "
             "and _sha512): change the user's password in RabbitMQ, or remove the user from the "
             "file",
             md5_path);
    expect_error(yaml, expected);
    unlink(md5_path);

    char bad_path[] = "/tmp/check_config_definitions_XXXXXX";
    write_definitions(bad_path, "{\"users\": [{\"name\": \"x\", \"password_hash\": \"$6$a$b\"}]}");
    snprintf(yaml, sizeof(yaml), "definitions: { file: \"%s\", import_users: true }\n", bad_path);
    snprintf(expected, sizeof(expected),
             "t.yaml: definitions.file: %s: users[0] 'x': password_hash is not a rabbit_sha256 "
             "hash",
             bad_path);
    expect_error(yaml, expected);
    unlink(bad_path);

    expect_error("definitions: { import_users: true }\n",
                 "t.yaml: definitions.import_users: needs definitions.file (the export to take "
                 "users from)");
}
END_TEST

/* A reload keeps the running listeners, shared ones included, and says which. */
START_TEST(test_apply_live_listeners)
{
    struct config *old = load_ok("listeners:\n"
                                 "  shared: { bind: \"127.0.0.1:1\", protocols: [stomp, amqp] }\n"
                                 "  http: { bind: \"127.0.0.1:2\" }\n");
    struct config *reloaded = load_ok("listeners:\n"
                                      "  shared: { bind: \"127.0.0.1:1\", protocols: [amqp] }\n"
                                      "  http: { bind: \"127.0.0.1:2\" }\n"
                                      "  extra: { bind: \"127.0.0.1:3\", protocols: [stomp] }\n");
    char *logged = apply_live_capturing_log(old, reloaded);
    config_free(old);
    ck_assert_uint_eq(reloaded->listener_count, 2);
    const struct config_listener *shared = config_listener_find(reloaded, "shared");
    ck_assert_uint_eq(shared->protocol_count, 2);
    ck_assert_str_eq(shared->protocols[0], "stomp");
    ck_assert_str_eq(shared->protocols[1], "amqp");
    ck_assert_ptr_null(config_listener_find(reloaded, "extra"));
    ck_assert_ptr_nonnull(strstr(logged, "listeners.shared changed; restart kbridged"));
    ck_assert_ptr_nonnull(strstr(logged, "listeners.extra changed; restart kbridged"));
    ck_assert_ptr_null(strstr(logged, "listeners.http changed"));
    free(logged);
    config_free(reloaded);
}
END_TEST

/* tls: keys load per listener, and a reload keeps the running ones. */
START_TEST(test_listener_tls)
{
    struct config *old =
        load_ok("listeners:\n"
                "  stomp:\n"
                "    bind: \"127.0.0.1:1\"\n"
                "    tls: { cert: /a.pem, key: /a.key, ca: /ca.pem, verify: required,\n"
                "           min_version: \"1.3\", ciphers: \"ECDHE+AESGCM\", identity: san_email,\n"
                "           key_password_file: /pass }\n"
                "  amqp: { bind: \"127.0.0.1:2\" }\n"
                "limits: { tls_handshake_timeout: 3s }\n");
    const struct config_listener *stomp = config_listener_find(old, "stomp");
    ck_assert_str_eq(stomp->tls.cert, "/a.pem");
    ck_assert_str_eq(stomp->tls.key, "/a.key");
    ck_assert_str_eq(stomp->tls.ca, "/ca.pem");
    ck_assert_str_eq(stomp->tls.verify, "required");
    ck_assert_str_eq(stomp->tls.min_version, "1.3");
    ck_assert_str_eq(stomp->tls.ciphers, "ECDHE+AESGCM");
    ck_assert_str_eq(stomp->tls.identity, "san_email");
    ck_assert_str_eq(stomp->tls.key_password_file, "/pass");
    ck_assert_ptr_null(config_listener_find(old, "amqp")->tls.cert);
    ck_assert_uint_eq(old->limits.tls_handshake_timeout_ms, 3000);
    struct config *reloaded = load_ok("listeners:\n"
                                      "  stomp:\n"
                                      "    bind: \"127.0.0.1:1\"\n"
                                      "    tls: { cert: /b.pem, key: /b.key }\n"
                                      "  amqp: { bind: \"127.0.0.1:2\" }\n");
    ck_assert_uint_eq(reloaded->limits.tls_handshake_timeout_ms, 10000);
    char *logged = apply_live_capturing_log(old, reloaded);
    config_free(old);
    stomp = config_listener_find(reloaded, "stomp");
    ck_assert_str_eq(stomp->tls.cert, "/a.pem"); /* listeners.* need a restart */
    ck_assert_str_eq(stomp->tls.verify, "required");
    ck_assert_ptr_nonnull(strstr(logged, "listeners.stomp changed; restart kbridged"));
    ck_assert_ptr_null(strstr(logged, "listeners.amqp changed"));
    free(logged);
    config_free(reloaded);
}
END_TEST

/* Plaintext passwords only with auth.insecure_plaintext; RabbitMQ hashes as they are. */
START_TEST(test_user_secrets)
{
    struct config *config = load_ok(
        "auth:\n"
        "  insecure_plaintext: true\n"
        "  users:\n"
        "    - { name: a, password: hunter2 }\n"
        "    - { name: b, password_hash: \"kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR\" }\n");
    ck_assert(config->auth.insecure_plaintext);
    ck_assert_str_eq(config->auth.users[0].password, "hunter2");
    ck_assert_ptr_null(config->auth.users[0].password_hash);
    ck_assert_str_eq(config->auth.users[1].password_hash,
                     "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR");
    config_free(config);
}
END_TEST

START_TEST(test_reference_is_current)
{
    static const char begin[] = "<!-- BEGIN GENERATED KEYS -->\n";
    static const char end[] = "<!-- END GENERATED KEYS -->";
    char *doc = read_text_file(TEST_DATA_DIR "/../../../docs/configuration.md");
    char *start = strstr(doc, begin);
    ck_assert_msg(start != NULL, "docs/configuration.md has no \"%s\" marker", begin);
    start += strlen(begin);
    char *stop = strstr(start, end);
    ck_assert_msg(stop != NULL, "docs/configuration.md has no \"%s\" marker", end);
    *stop = '\0';

    char *generated = NULL;
    size_t generated_len = 0;
    FILE *stream = open_memstream(&generated, &generated_len);
    ck_assert_ptr_nonnull(stream);
    size_t count;
    const struct config_section *const *sections = builtin_sections(&count);
    config_write_reference(stream, sections, count);
    fclose(stream);

    ck_assert_msg(strcmp(start, generated) == 0,
                  "docs/configuration.md is out of date: replace the text between its markers "
                  "with the output of config_write_reference (kbridged --config-reference)");
    ck_assert_ptr_nonnull(strstr(generated, "### `limits.max_frame_size`"));
    ck_assert_ptr_nonnull(strstr(generated, "### `auth.users[].password_hash`"));
    ck_assert_ptr_nonnull(strstr(generated, "### `stomp.heartbeat_min`"));
    ck_assert_ptr_nonnull(strstr(generated, "- Former spelling: `queues.nack_requeue`"));
    ck_assert_ptr_null(strstr(generated, "### `limits.heartbeat_min`"));
    free(generated);
    free(doc);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Adapter config sections                                                  */
/* ------------------------------------------------------------------------ */

/* A section as an adapter declares one: a string, a number, a restart-only
 * duration, a boolean, and a former spelling under `limits`. */
struct demo_values {
    char *greeting;
    uint32_t count;
    uint64_t window_ms;
    bool loud;
};

static const struct config_key demo_keys[] = {
    {.name = "greeting",
     .type = CONFIG_TYPE_STRING,
     .offset = offsetof(struct demo_values, greeting),
     .min = 1,
     .max = 16,
     .default_value = "hi",
     .description = "What the demo says."},
    {.name = "count",
     .type = CONFIG_TYPE_UINT32,
     .offset = offsetof(struct demo_values, count),
     .min = 1,
     .max = 10,
     .default_value = "3",
     .description = "How often."},
    {.name = "window",
     .type = CONFIG_TYPE_DURATION,
     .offset = offsetof(struct demo_values, window_ms),
     .min = 0,
     .max = 60 * 1000,
     .default_value = "5s",
     .flags = CONFIG_KEY_RESTART,
     .description = "Read at start."},
    {.name = "loud",
     .type = CONFIG_TYPE_BOOL,
     .offset = offsetof(struct demo_values, loud),
     .default_value = "false",
     .description = "Shout."},
};

static const struct config_alias demo_aliases[] = {
    {.old_name = "limits.demo_count", .key = "count"},
};

static const struct config_section demo_section = {
    .name = "demo",
    .keys = demo_keys,
    .key_count = ARRAY_LEN(demo_keys),
    .size = sizeof(struct demo_values),
    .aliases = demo_aliases,
    .alias_count = ARRAY_LEN(demo_aliases),
};

static const struct config_section *const demo_sections[] = {&demo_section};

static struct config *load_demo_ok(const char *yaml)
{
    char err[512] = "";
    struct config *config = NULL;
    int rc = config_load_string_sections("t.yaml", yaml, strlen(yaml), demo_sections, 1, &config,
                                         err, sizeof(err));
    ck_assert_msg(rc == 0, "expected to load, got: %s", err);
    return config;
}

static void expect_demo_error(const char *yaml, const char *expected)
{
    char err[512] = "";
    struct config *config = (struct config *)1;
    int rc = config_load_string_sections("t.yaml", yaml, strlen(yaml), demo_sections, 1, &config,
                                         err, sizeof(err));
    ck_assert_msg(rc == -1, "expected an error for:\n%s", yaml);
    ck_assert_ptr_null(config);
    ck_assert_str_eq(err, expected);
}

static const struct demo_values *demo_of(const struct config *config)
{
    const struct demo_values *values = config_section_values(config, "demo");
    ck_assert_ptr_nonnull(values);
    return values;
}

START_TEST(test_section_defaults_and_values)
{
    /* absent, empty, written without a value: every key its default */
    static const char *const absent[] = {"", "demo: {}\n", "demo:\n", "limits: {max_headers: 5}\n"};
    for (size_t i = 0; i < ARRAY_LEN(absent); i++) {
        struct config *config = load_demo_ok(absent[i]);
        const struct demo_values *demo = demo_of(config);
        ck_assert_str_eq(demo->greeting, "hi");
        ck_assert_uint_eq(demo->count, 3);
        ck_assert_uint_eq(demo->window_ms, 5000);
        ck_assert(!demo->loud);
        ck_assert_ptr_null(config_section_values(config, "other"));
        config_free(config);
    }
    struct config *config = load_demo_ok("demo:\n  greeting: hello\n  count: 10\n"
                                         "  window: 250ms\n  loud: true\n"
                                         "limits: {max_headers: 5}\n");
    const struct demo_values *demo = demo_of(config);
    ck_assert_str_eq(demo->greeting, "hello");
    ck_assert_uint_eq(demo->count, 10);
    ck_assert_uint_eq(demo->window_ms, 250);
    ck_assert(demo->loud);
    ck_assert_uint_eq(config->limits.max_headers, 5);
    config_free(config);
}
END_TEST

START_TEST(test_section_errors)
{
    expect_demo_error("demo: {cont: 4}\n",
                      "t.yaml:1: demo.cont: unknown key (did you mean \"count\"?)");
    expect_demo_error("demo:\n  volume: 11\n", "t.yaml:2: demo.volume: unknown key");
    expect_demo_error("demo: {count: 11}\n",
                      "t.yaml:1: demo.count: \"11\" is out of range (1 to 10)");
    expect_demo_error("demo: {greeting: \"\"}\n", "t.yaml:1: demo.greeting: must not be empty");
    expect_demo_error("demo: {window: 2m}\n",
                      "t.yaml:1: demo.window: \"2m\" is out of range (0 to 1m)");
    expect_demo_error("demo: [1, 2]\n", "t.yaml:1: demo: expected a mapping, got a list");
    expect_demo_error("demo: {count: 1}\ndemo: {count: 2}\n",
                      "t.yaml:2: demo: duplicate key (first on line 1)");
    /* a section the loader was not given is an unknown key like any other */
    expect_error("demo: {count: 4}\n", "t.yaml:1: demo: unknown key");
    /* nested keys are not a short form in a section either */
    expect_demo_error("demo.count: 4\n",
                      "t.yaml:1: demo.count: unknown key (write nested keys as nested mappings)");
}
END_TEST

START_TEST(test_section_aliases)
{
    struct config *config = load_demo_ok("limits: {demo_count: 7, max_headers: 9}\n");
    ck_assert_uint_eq(demo_of(config)->count, 7);
    ck_assert_uint_eq(config->limits.max_headers, 9);
    config_free(config);
    /* the former spelling is checked like the key: range, in its own spelling */
    expect_demo_error("limits: {demo_count: 0}\n",
                      "t.yaml:1: limits.demo_count: \"0\" is out of range (1 to 10)");
    /* both spellings: refused, naming both */
    expect_demo_error("demo: {count: 2}\nlimits:\n  demo_count: 3\n",
                      "t.yaml:3: limits.demo_count: is the former spelling of demo.count, which "
                      "is set too (line 1); keep only demo.count");
    /* without the section, the former spelling is unknown */
    expect_error("limits: {demo_count: 7}\n", "t.yaml:1: limits.demo_count: unknown key");

    /* STOMP's: limits.heartbeat_min and queues.nack_requeue still work */
    config = load_ok("limits: {heartbeat_min: 2s}\nqueues: {nack_requeue: false}\n");
    ck_assert_uint_eq(stomp_config_of(config)->heartbeat_min_ms, 2000);
    ck_assert(!stomp_config_of(config)->nack_requeue);
    config_free(config);
    config = load_ok("stomp: {heartbeat_min: 250ms, nack_requeue: false}\n");
    ck_assert_uint_eq(stomp_config_of(config)->heartbeat_min_ms, 250);
    ck_assert(!stomp_config_of(config)->nack_requeue);
    config_free(config);
    expect_error("stomp: {heartbeat_mn: 1s}\n",
                 "t.yaml:1: stomp.heartbeat_mn: unknown key (did you mean \"heartbeat_min\"?)");
    expect_error("stomp: {heartbeat_min: 5ms}\n",
                 "t.yaml:1: stomp.heartbeat_min: \"5ms\" is out of range (10ms to 1h)");
    expect_error("stomp: {nack_requeue: true}\nqueues: {nack_requeue: false}\n",
                 "t.yaml:2: queues.nack_requeue: is the former spelling of stomp.nack_requeue, "
                 "which is set too (line 1); keep only stomp.nack_requeue");
}
END_TEST

START_TEST(test_section_refused_declarations)
{
    static const struct config_section clash = {
        .name = "limits", .keys = demo_keys, .key_count = 1, .size = sizeof(struct demo_values)};
    static const struct config_section twin = {
        .name = "demo", .keys = demo_keys, .key_count = 1, .size = sizeof(struct demo_values)};
    const struct config_section *const clashing[] = {&clash};
    const struct config_section *const twins[] = {&demo_section, &twin};
    char err[512];
    struct config *config = (struct config *)1;
    ck_assert_int_eq(
        config_load_string_sections("t.yaml", "", 0, clashing, 1, &config, err, sizeof(err)), -1);
    ck_assert_ptr_null(config);
    ck_assert_str_eq(err, "t.yaml: limits: internal error: an adapter's config section is named "
                          "like a shared key");
    ck_assert_int_eq(
        config_load_string_sections("t.yaml", "", 0, twins, 2, &config, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "t.yaml: demo: internal error: two config sections of this name");
}
END_TEST

START_TEST(test_section_added_later)
{
    /* the server adds its adapters' sections to a config loaded without them */
    struct config *config = NULL;
    char err[512];
    ck_assert_int_eq(config_load_string("t.yaml", "", 0, &config, err, sizeof(err)), 0);
    ck_assert_ptr_null(config_section_values(config, "demo"));
    ck_assert_int_eq(config_add_sections(config, demo_sections, 1, err, sizeof(err)), 0);
    ck_assert_str_eq(demo_of(config)->greeting, "hi");
    /* adding again keeps what is there */
    ck_assert_int_eq(config_add_sections(config, demo_sections, 1, err, sizeof(err)), 0);
    ck_assert_uint_eq(config->section_count, 1);
    config_free(config);
}
END_TEST

START_TEST(test_section_apply_live)
{
    struct config *old = load_demo_ok("demo: {greeting: old, window: 1s}\n");
    struct config *reloaded = load_demo_ok("demo: {greeting: new, window: 2s, count: 9}\n");
    char *logged = apply_live_capturing_log(old, reloaded);
    config_free(old);
    const struct demo_values *demo = demo_of(reloaded);
    ck_assert_str_eq(demo->greeting, "new"); /* live */
    ck_assert_uint_eq(demo->count, 9);
    ck_assert_uint_eq(demo->window_ms, 1000); /* restart-only: the running value */
    ck_assert_ptr_nonnull(strstr(logged, "demo.window changed; restart kbridged to apply it"));
    ck_assert_ptr_null(strstr(logged, "demo.greeting"));
    free(logged);
    config_free(reloaded);
}
END_TEST

START_TEST(test_section_reference)
{
    char *generated = NULL;
    size_t generated_len = 0;
    FILE *stream = open_memstream(&generated, &generated_len);
    ck_assert_ptr_nonnull(stream);
    config_write_reference(stream, demo_sections, 1);
    fclose(stream);
    ck_assert_ptr_nonnull(strstr(generated, "### `demo.greeting`\n\n- Type: string\n"
                                            "- Default: `hi`\n"));
    ck_assert_ptr_nonnull(strstr(generated, "### `demo.count`\n\n- Type: integer\n"
                                            "- Default: `3`\n- Range: 1 to 10\n"
                                            "- Former spelling: `limits.demo_count`"));
    ck_assert_ptr_nonnull(strstr(generated, "### `demo.window`"));
    ck_assert_ptr_nonnull(strstr(generated, "- Reload: needs a restart"));
    free(generated);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *suite = suite_create("config");

    TCase *good = tcase_create("good");
    tcase_add_test(good, test_full_example);
    tcase_add_loop_test(good, test_defaults, 0, (int)ARRAY_LEN(empty_texts));
    tcase_add_test(good, test_defaults_empty_file);
    tcase_add_test(good, test_workers_threads);
    tcase_add_test(good, test_sample_production);
    tcase_add_test(good, test_sample_dev);
    tcase_add_test(good, test_accepted_values);
    tcase_add_test(good, test_wild_acl_patterns);
    tcase_add_test(good, test_listeners_list);
    tcase_add_test(good, test_shovels);
    tcase_add_test(good, test_apply_live_shovels);
    tcase_add_test(good, test_vhosts);
    tcase_add_test(good, test_user_vhosts);
    tcase_add_loop_test(good, test_listeners_refused, 0, (int)ARRAY_LEN(listener_refusals));
    tcase_add_test(good, test_large_property_map);
    suite_add_tcase(suite, good);

    TCase *values = tcase_create("values");
    tcase_add_loop_test(values, test_parse_size, 0, (int)ARRAY_LEN(size_cases));
    tcase_add_loop_test(values, test_parse_duration, 0, (int)ARRAY_LEN(duration_cases));
    suite_add_tcase(suite, values);

    TCase *errors = tcase_create("errors");
    tcase_add_loop_test(errors, test_error_messages, 0, (int)ARRAY_LEN(error_cases));
    tcase_add_loop_test(errors, test_shovel_errors, 0, (int)ARRAY_LEN(shovel_error_cases));
    tcase_add_test(errors, test_error_library_text);
    tcase_add_test(errors, test_error_files);
    tcase_add_test(errors, test_overlong_values);
    tcase_add_test(errors, test_error_buffer);
    tcase_add_test(errors, test_user_permissions);
    tcase_add_test(errors, test_import_users);
    suite_add_tcase(suite, errors);

    TCase *reload = tcase_create("reload");
    tcase_add_test(reload, test_apply_live);
    tcase_add_test(reload, test_apply_live_unchanged);
    tcase_add_test(reload, test_apply_live_listeners);
    tcase_add_test(reload, test_listener_tls);
    tcase_add_test(reload, test_user_secrets);
    suite_add_tcase(suite, reload);

    TCase *sections = tcase_create("sections");
    tcase_add_test(sections, test_section_defaults_and_values);
    tcase_add_test(sections, test_section_errors);
    tcase_add_test(sections, test_section_aliases);
    tcase_add_test(sections, test_section_refused_declarations);
    tcase_add_test(sections, test_section_added_later);
    tcase_add_test(sections, test_section_apply_live);
    tcase_add_test(sections, test_section_reference);
    suite_add_tcase(suite, sections);

    TCase *reference = tcase_create("reference");
    tcase_add_test(reference, test_reference_is_current);
    suite_add_tcase(suite, reference);

    return suite;
}

CHECK_MAIN(config_suite)
