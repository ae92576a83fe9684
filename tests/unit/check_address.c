/* SPDX-License-Identifier: Apache-2.0 */
/* check_address.c -- unit tests of address normalisation (daemon/address.c):
 * every STOMP and AMQP spelling of architecture §2, Kafka's topic-name rules and
 * the errors that name them, the topic prefix, wildcard syntax, agreement of
 * address_wildcard_regex (compiled with POSIX regcomp) with
 * address_wildcard_match over many generated patterns and names, and the
 * STOMP format round trip. */
#include <check.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "amqp_address.h"
#include "stomp_address.h"
#include "unit_main.h"

#define ARRAY_LEN(array) (sizeof(array) / sizeof((array)[0]))

/* The two built-in spellings, as the adapters parse with them. */
static int address_parse_stomp(const char *text, struct destination *out, char *err,
                               size_t err_size)
{
    return address_parse(&stomp_addresses, text, out, err, err_size);
}

static int address_parse_amqp(const char *text, struct destination *out, char *err, size_t err_size)
{
    return address_parse(&amqp_addresses, text, out, err, err_size);
}

struct spelling {
    const char *text;
    enum destination_kind kind;
    const char *name;
    bool wildcard;
};

static void check_spellings(int (*parse)(const char *, struct destination *, char *, size_t),
                            const struct spelling *spellings, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        struct destination d;
        char err[256] = "";
        memset(&d, 0x5a, sizeof(d));
        int rc = parse(spellings[i].text, &d, err, sizeof(err));
        ck_assert_msg(rc == 0, "'%s' refused: %s", spellings[i].text, err);
        ck_assert_msg(d.kind == spellings[i].kind, "'%s' gave kind %s", spellings[i].text,
                      destination_kind_name(d.kind));
        ck_assert_str_eq(d.name, spellings[i].name);
        ck_assert_msg(d.wildcard == spellings[i].wildcard, "'%s' wildcard flag", spellings[i].text);
    }
}

/* Parse must fail; err must name the destination (as quoted) and contain rule. */
static void check_refused(int (*parse)(const char *, struct destination *, char *, size_t),
                          const char *text, const char *quoted, const char *rule)
{
    struct destination d;
    char err[512] = "";
    ck_assert_msg(parse(text, &d, err, sizeof(err)) == -1, "'%s' was accepted", text);
    char expect_start[300];
    snprintf(expect_start, sizeof(expect_start), "destination '%s' is not valid: ", quoted);
    ck_assert_msg(strncmp(err, expect_start, strlen(expect_start)) == 0,
                  "'%s': error '%s' does not start with '%s'", text, err, expect_start);
    ck_assert_msg(strstr(err, rule) != NULL, "'%s': error '%s' lacks '%s'", text, err, rule);
    ck_assert_msg(strchr(err, '\n') == NULL, "error is not one line");
}

/* ---- spellings -------------------------------------------------------------- */

START_TEST(stomp_spellings_of_design_table)
{
    static const struct spelling spellings[] = {
        {"/queue/orders", DESTINATION_QUEUE, "orders", false},
        {"/amq/queue/orders", DESTINATION_QUEUE, "orders", false},
        {"/topic/prices", DESTINATION_TOPIC, "prices", false},
        {"/exchange/amq.topic/prices", DESTINATION_TOPIC, "prices", false},
        {"/temp-queue/reply1", DESTINATION_TEMP_QUEUE, "reply1", false},
        {"/reply-queue/Zm9vYmFyYmF6cXV4-_0", DESTINATION_REPLY_QUEUE, "Zm9vYmFyYmF6cXV4-_0", false},
        {"/queue/a.b_c-D9", DESTINATION_QUEUE, "a.b_c-D9", false},
        {"/queue/...", DESTINATION_QUEUE, "...", false},
        {"/topic/prices.*", DESTINATION_TOPIC, "prices.*", true},
        {"/exchange/amq.topic/#", DESTINATION_TOPIC, "#", true},
        {"/topic/a.#.b", DESTINATION_TOPIC, "a.#.b", true},
        {"/exchange/amq.direct/k", DESTINATION_EXCHANGE, "amq.direct", false},
        {"/exchange/logs", DESTINATION_EXCHANGE, "logs", false},
    };
    check_spellings(address_parse_stomp, spellings, ARRAY_LEN(spellings));
}
END_TEST

/* Exchange addresses: NAME up to the next '/', KEY (any text, may be empty,
 * may hold '/' and wildcards) from key_at to the end. */
START_TEST(exchange_addresses_name_their_key)
{
    static const struct {
        int (*parse)(const char *, struct destination *, char *, size_t);
        const char *text;
        const char *name;
        const char *key; /* NULL: no key */
    } cases[] = {
        {address_parse_stomp, "/exchange/amq.direct/k", "amq.direct", "k"},
        {address_parse_stomp, "/exchange/logs/a.*.#", "logs", "a.*.#"},
        {address_parse_stomp, "/exchange/logs/", "logs", ""},
        {address_parse_stomp, "/exchange/logs/a/b c", "logs", "a/b c"},
        {address_parse_stomp, "/exchange/amq.fanout", "amq.fanout", NULL},
        {address_parse_amqp, "/exchanges/amq.fanout", "amq.fanout", NULL},
        {address_parse_amqp, "/exchanges/orders/eu.1", "orders", "eu.1"},
        {address_parse_amqp, "/exchange/orders/eu", "orders", "eu"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct destination d;
        char err[256] = "";
        ck_assert_msg(cases[i].parse(cases[i].text, &d, err, sizeof(err)) == 0, "%s: %s",
                      cases[i].text, err);
        ck_assert_int_eq(d.kind, DESTINATION_EXCHANGE);
        ck_assert_str_eq(d.name, cases[i].name);
        ck_assert(!d.wildcard);
        if (cases[i].key)
            ck_assert_str_eq(cases[i].text + d.key_at, cases[i].key);
        else
            ck_assert_uint_eq(d.key_at, 0);
    }
    /* amq.topic keeps the topic spelling; v1 /amq/queue/ in AMQP is a queue */
    struct destination d;
    char err[256];
    ck_assert_int_eq(address_parse_amqp("/exchange/amq.topic/x.y", &d, err, sizeof(err)), 0);
    ck_assert_int_eq(d.kind, DESTINATION_TOPIC);
    ck_assert_int_eq(address_parse_amqp("/amq/queue/q1", &d, err, sizeof(err)), 0);
    ck_assert_int_eq(d.kind, DESTINATION_QUEUE);
    ck_assert_str_eq(d.name, "q1");
    ck_assert(d.existing); /* names an existing queue: not declared */
    ck_assert_int_eq(address_parse_stomp("/amq/queue/q1", &d, err, sizeof(err)), 0);
    ck_assert(d.existing);
    ck_assert_int_eq(address_parse_stomp("/queue/q1", &d, err, sizeof(err)), 0);
    ck_assert(!d.existing);
    /* the exchange name is a Kafka topic name; the key has a length limit */
    check_refused(address_parse_stomp, "/exchange/a b/k", "/exchange/a b/k",
                  "NAME may only contain");
    check_refused(address_parse_stomp, "/exchange//k", "/exchange//k", "NAME must not be empty");
    check_refused(address_parse_stomp, "/exchange/x.*/k", "/exchange/x.*/k",
                  "only allowed in topic");
    char long_key[400];
    snprintf(long_key, sizeof(long_key), "/exchange/x/%0300d", 7);
    ck_assert_int_eq(address_parse_stomp(long_key, &d, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "KEY must be at most 255 bytes long (it has 300)"), "%s", err);
    /* an exchange maps to the Kafka topic of its name */
    char topic[ADDRESS_NAME_MAX + 1];
    ck_assert_int_eq(address_parse_stomp("/exchange/logs/k", &d, err, sizeof(err)), 0);
    ck_assert_int_eq(address_kafka_topic(&d, "pre.", topic, sizeof(topic), err, sizeof(err)), 0);
    ck_assert_str_eq(topic, "pre.logs");
}
END_TEST

START_TEST(amqp_spellings_of_design_table)
{
    static const struct spelling spellings[] = {
        {"orders", DESTINATION_QUEUE, "orders", false},
        {"queue://orders", DESTINATION_QUEUE, "orders", false},
        {"/queue/orders", DESTINATION_QUEUE, "orders", false},
        {"/queues/orders", DESTINATION_QUEUE, "orders", false},
        {"topic://prices", DESTINATION_TOPIC, "prices", false},
        {"/topic/prices", DESTINATION_TOPIC, "prices", false},
        {"/exchanges/amq.topic/prices", DESTINATION_TOPIC, "prices", false},
        {"/reply-queue/tok3n", DESTINATION_REPLY_QUEUE, "tok3n", false},
        {"a.b_c-D9", DESTINATION_QUEUE, "a.b_c-D9", false},
        {"topic://prices.*.eu", DESTINATION_TOPIC, "prices.*.eu", true},
        {"/topic/#", DESTINATION_TOPIC, "#", true},
    };
    check_spellings(address_parse_amqp, spellings, ARRAY_LEN(spellings));
}
END_TEST

START_TEST(unknown_prefixes_list_the_accepted_forms)
{
    check_refused(address_parse_stomp, "orders", "orders", "use /queue/NAME");
    check_refused(address_parse_stomp, "/queues/orders", "/queues/orders", "/amq/queue/NAME");
    check_refused(address_parse_stomp, "queue://orders", "queue://orders", "/temp-queue/NAME");
    check_refused(address_parse_stomp, "", "", "/reply-queue/TOKEN");
    check_refused(address_parse_amqp, "/temp-queue/x", "/temp-queue/x", "use NAME, queue://NAME");
    check_refused(address_parse_amqp, "fifo://x", "fifo://x", "/exchanges/NAME/KEY");
    check_refused(address_parse_amqp, "/exchang/amq.topic/x", "/exchang/amq.topic/x",
                  "topic://NAME");
}
END_TEST

/* ---- names -------------------------------------------------------------------- */

START_TEST(illegal_names_are_refused_with_the_rule)
{
    struct destination d;
    char err[256];
    ck_assert_int_eq(address_parse_stomp("/queue/a b", &d, err, sizeof(err)), -1);
    ck_assert_str_eq(
        err, "destination '/queue/a b' is not valid: NAME may only contain A-Z a-z 0-9 . _ -");

    const char *chars_rule = "NAME may only contain A-Z a-z 0-9 . _ -";
    check_refused(address_parse_stomp, "/queue/a/b", "/queue/a/b", chars_rule);
    check_refused(address_parse_stomp, "/topic/caf\xc3\xa9", "/topic/caf??", chars_rule);
    check_refused(address_parse_stomp, "/queue/a\nb", "/queue/a?b", chars_rule);
    check_refused(address_parse_stomp, "/queue/a:b", "/queue/a:b", chars_rule);
    check_refused(address_parse_amqp, "queue://a b", "queue://a b", chars_rule);
    check_refused(address_parse_amqp, "a b", "a b", chars_rule);
    check_refused(address_parse_amqp, "a/b", "a/b", "use NAME");

    const char *empty_rule = "NAME must not be empty";
    check_refused(address_parse_stomp, "/queue/", "/queue/", empty_rule);
    check_refused(address_parse_stomp, "/topic/", "/topic/", empty_rule);
    check_refused(address_parse_stomp, "/temp-queue/", "/temp-queue/", empty_rule);
    check_refused(address_parse_amqp, "", "", empty_rule);
    check_refused(address_parse_amqp, "topic://", "topic://", empty_rule);

    const char *dots_rule = "NAME must not be '.' or '..'";
    check_refused(address_parse_stomp, "/queue/.", "/queue/.", dots_rule);
    check_refused(address_parse_stomp, "/topic/..", "/topic/..", dots_rule);
    check_refused(address_parse_amqp, ".", ".", dots_rule);
    check_refused(address_parse_amqp, "queue://..", "queue://..", dots_rule);
}
END_TEST

START_TEST(name_length_limit_is_249)
{
    char text[400];
    struct destination d;
    char err[512];
    strcpy(text, "/queue/");
    memset(text + 7, 'x', 249);
    text[7 + 249] = '\0';
    ck_assert_int_eq(address_parse_stomp(text, &d, err, sizeof(err)), 0);
    ck_assert_uint_eq(strlen(d.name), 249);

    strcpy(text, "/queue/");
    memset(text + 7, 'x', 250);
    text[7 + 250] = '\0';
    ck_assert_int_eq(address_parse_stomp(text, &d, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "NAME must be at most 249 characters long (it has 250)"));
    /* The quoted destination is cut, not the rule. */
    ck_assert_ptr_nonnull(strstr(err, "xxx...' is not valid"));

    memset(text, 'y', 250);
    text[250] = '\0';
    ck_assert_int_eq(address_parse_amqp(text, &d, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "at most 249"));
}
END_TEST

START_TEST(errors_fit_small_buffers_and_err_may_be_null)
{
    struct destination d;
    char err[12];
    memset(err, '#', sizeof(err));
    ck_assert_int_eq(address_parse_stomp("/queue/a b", &d, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "destination");
    ck_assert_int_eq(address_parse_stomp("/queue/a b", &d, NULL, 0), -1);
    ck_assert_int_eq(address_parse_stomp("/queue/a b", &d, err, 0), -1);
    ck_assert_int_eq(address_parse_stomp(NULL, &d, err, sizeof(err)), -1);
}
END_TEST

/* ---- Kafka topic ------------------------------------------------------------- */

START_TEST(kafka_topic_adds_the_prefix_within_249)
{
    struct destination d;
    char topic[ADDRESS_NAME_MAX + 1];
    char err[512];
    ck_assert_int_eq(address_parse_stomp("/queue/orders", &d, err, sizeof(err)), 0);
    ck_assert_int_eq(address_kafka_topic(&d, NULL, topic, sizeof(topic), err, sizeof(err)), 0);
    ck_assert_str_eq(topic, "orders");
    ck_assert_int_eq(address_kafka_topic(&d, "", topic, sizeof(topic), err, sizeof(err)), 0);
    ck_assert_str_eq(topic, "orders");
    ck_assert_int_eq(address_kafka_topic(&d, "prod.", topic, sizeof(topic), err, sizeof(err)), 0);
    ck_assert_str_eq(topic, "prod.orders");

    /* Queue and topic of one NAME map to the same Kafka topic. */
    struct destination t;
    char topic2[ADDRESS_NAME_MAX + 1];
    ck_assert_int_eq(address_parse_amqp("topic://orders", &t, err, sizeof(err)), 0);
    ck_assert_int_eq(address_kafka_topic(&t, "prod.", topic2, sizeof(topic2), err, sizeof(err)), 0);
    ck_assert_str_eq(topic, topic2);

    /* 241 + prefix of 8 = 249 fits; a prefix of 9 does not. */
    char text[300] = "/queue/";
    memset(text + 7, 'n', 241);
    text[7 + 241] = '\0';
    ck_assert_int_eq(address_parse_stomp(text, &d, err, sizeof(err)), 0);
    ck_assert_int_eq(address_kafka_topic(&d, "kbridge.", topic, sizeof(topic), err, sizeof(err)),
                     0);
    ck_assert_uint_eq(strlen(topic), 249);
    ck_assert_int_eq(address_kafka_topic(&d, "kbridge.x", topic, sizeof(topic), err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "destination queue 'nnn"));
    ck_assert_ptr_nonnull(
        strstr(err, "topic_prefix + NAME must be at most 249 characters long (it has 250)"));
}
END_TEST

START_TEST(kafka_topic_refusals)
{
    struct destination d;
    char topic[ADDRESS_NAME_MAX + 1];
    char err[512];
    ck_assert_int_eq(address_parse_stomp("/queue/orders", &d, err, sizeof(err)), 0);
    ck_assert_int_eq(address_kafka_topic(&d, "bad prefix", topic, sizeof(topic), err, sizeof(err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "topic_prefix may only contain"));
    ck_assert_int_eq(address_kafka_topic(&d, NULL, topic, 6, err, sizeof(err)), -1);
    ck_assert_int_eq(address_kafka_topic(&d, NULL, topic, 7, err, sizeof(err)), 0);

    ck_assert_int_eq(address_parse_stomp("/topic/prices.*", &d, err, sizeof(err)), 0);
    ck_assert_int_eq(address_kafka_topic(&d, NULL, topic, sizeof(topic), err, sizeof(err)), -1);
    /* in protocol-neutral words: an AMQP client must not read STOMP spellings */
    ck_assert_str_eq(err, "destination topic 'prices.*' is not valid: the wildcards * and # may "
                          "only be used to subscribe");

    ck_assert_int_eq(address_parse_stomp("/temp-queue/r1", &d, err, sizeof(err)), 0);
    ck_assert_int_eq(address_kafka_topic(&d, NULL, topic, sizeof(topic), err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "temp-queue 'r1'"));

    /* A prefix alone may not make "." or "..". */
    ck_assert_int_eq(address_parse_stomp("/queue/.x", &d, err, sizeof(err)), 0);
    strcpy(d.name, ".");
    ck_assert_int_eq(address_kafka_topic(&d, ".", topic, sizeof(topic), err, sizeof(err)), -1);
}
END_TEST

/* ---- wildcards ---------------------------------------------------------------- */

START_TEST(wildcard_words_must_be_whole)
{
    static const char *const valid[] = {"/topic/*",     "/topic/#",     "/topic/prices.*",
                                        "/topic/a.#.b", "/topic/#.b",   "/topic/*.*.x",
                                        "/topic/#.#",   "/topic/a.*.#", "/topic/a..*"};
    for (size_t i = 0; i < ARRAY_LEN(valid); i++) {
        struct destination d;
        char err[256];
        ck_assert_msg(address_parse_stomp(valid[i], &d, err, sizeof(err)) == 0, "%s: %s", valid[i],
                      err);
        ck_assert(d.wildcard);
    }
    const char *word_rule = "the wildcards * and # must be whole dot-separated words";
    check_refused(address_parse_stomp, "/topic/pri*ces", "/topic/pri*ces", word_rule);
    check_refused(address_parse_stomp, "/topic/prices*", "/topic/prices*", word_rule);
    check_refused(address_parse_stomp, "/topic/a.#b", "/topic/a.#b", word_rule);
    check_refused(address_parse_stomp, "/topic/**", "/topic/**", word_rule);
    check_refused(address_parse_amqp, "topic://*#", "topic://*#", word_rule);
    check_refused(address_parse_stomp, "/topic/a.*b.c", "/topic/a.*b.c", word_rule);

    /* Queues never take wildcards. */
    const char *queue_rule = "only allowed in topic subscriptions";
    check_refused(address_parse_stomp, "/queue/prices.*", "/queue/prices.*", queue_rule);
    check_refused(address_parse_stomp, "/amq/queue/#", "/amq/queue/#", queue_rule);
    check_refused(address_parse_stomp, "/temp-queue/*", "/temp-queue/*", queue_rule);
    check_refused(address_parse_amqp, "prices.*", "prices.*", queue_rule);
    check_refused(address_parse_amqp, "queue://#", "queue://#", queue_rule);
    check_refused(address_parse_amqp, "/reply-queue/*", "/reply-queue/*", queue_rule);
}
END_TEST

START_TEST(wildcard_match_examples)
{
    static const struct {
        const char *pattern;
        const char *topic;
        bool match;
    } cases[] = {
        {"prices.*", "prices.eu", true},
        {"prices.*", "prices", false},
        {"prices.*", "prices.eu.x", false},
        {"prices.*", "prices.", true},
        {"prices.#", "prices", true},
        {"prices.#", "prices.eu.fr", true},
        {"prices.#", "pricesx", false},
        {"#", "anything.at.all", true},
        {"#", "x", true},
        {"#.#", "x", true},
        {"a.#.b", "a.b", true},
        {"a.#.b", "a.x.y.b", true},
        {"a.#.b", "a.x.y.c", false},
        {"a.#.b", "ab", false},
        {"#.b", "b", true},
        {"#.b", "x.b", true},
        {"#.b", "x.bb", false},
        {"*", "x", true},
        {"*", "x.y", false},
        {"*.*", "x.y", true},
        {"a.*.#.c", "a.b.c", true},
        {"a.*.#.c", "a.c", false},
        {"a.*.#.c", "a.b.x.y.c", true},
        {"#.a.#", "x.a", true},
        {"#.a.#", "b", false},
        {"orders", "orders", true},
        {"orders", "orders2", false},
        {"a.#", "a.b.c.d.e", true},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        ck_assert_msg(address_wildcard_match(cases[i].pattern, cases[i].topic) == cases[i].match,
                      "'%s' vs '%s' should %smatch", cases[i].pattern, cases[i].topic,
                      cases[i].match ? "" : "not ");
}
END_TEST

START_TEST(wildcard_regex_shapes)
{
    char out[256];
    ck_assert_int_eq(address_wildcard_regex("prices.*", NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "^prices\\.[^.]*$");
    ck_assert_int_eq(address_wildcard_regex("#", "kb.", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "^kb\\..*$");
    ck_assert_int_eq(address_wildcard_regex("a.#.b", "", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "^a(\\..*)?\\.b$");
    ck_assert_int_eq(address_wildcard_regex("#.b", NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "^(.*\\.)?b$");
    ck_assert_int_eq(address_wildcard_regex("a_b-c", NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "^a_b-c$");

    /* Too small: -1 at every size below the exact fit. */
    const char *expect = "^prices\\.[^.]*$";
    for (size_t size = 0; size <= strlen(expect); size++)
        ck_assert_int_eq(address_wildcard_regex("prices.*", NULL, out, size), -1);
    ck_assert_int_eq(address_wildcard_regex("prices.*", NULL, out, strlen(expect) + 1), 0);
}
END_TEST

/* Every pattern of up to 4 words over {a, b, *, #, ""} against every name of
 * up to 4 words over {a, b, c, ""}: regcomp(REG_EXTENDED) of the generated
 * regex agrees with address_wildcard_match, with and without a prefix. */
static void build_name(const char *const *alphabet, size_t letters, size_t words, size_t index,
                       char *out)
{
    out[0] = '\0';
    for (size_t w = 0; w < words; w++) {
        if (w)
            strcat(out, ".");
        strcat(out, alphabet[index % letters]);
        index /= letters;
    }
}

static void check_regex_allowed_syntax(const char *regex)
{
    ck_assert_msg(regex[0] == '^', "regex '%s' must start with ^", regex);
    for (const char *c = regex; *c; c++) {
        bool name_char = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                         (*c >= '0' && *c <= '9') || *c == '_' || *c == '-';
        ck_assert_msg(name_char || strchr("^$.[]*+?()|\\", *c), "regex '%s' uses '%c'", regex, *c);
        if (*c == '[')
            ck_assert_msg(strncmp(c, "[^.]", 4) == 0, "regex '%s' has another class", regex);
    }
}

START_TEST(wildcard_regex_agrees_with_match)
{
    static const char *const pattern_words[] = {"a", "b", "*", "#", ""};
    static const char *const name_words[] = {"a", "b", "c", ""};
    static const char *const prefixes[] = {NULL, "p.x-"};
    size_t compared = 0;
    for (size_t pw = 1; pw <= 4; pw++) {
        size_t pattern_count = 1;
        for (size_t i = 0; i < pw; i++)
            pattern_count *= ARRAY_LEN(pattern_words);
        for (size_t pi = 0; pi < pattern_count; pi++) {
            char pattern[64];
            build_name(pattern_words, ARRAY_LEN(pattern_words), pw, pi, pattern);
            if (!pattern[0])
                continue;
            for (size_t x = 0; x < ARRAY_LEN(prefixes); x++) {
                const char *prefix = prefixes[x];
                char regex[256];
                ck_assert_int_eq(address_wildcard_regex(pattern, prefix, regex, sizeof(regex)), 0);
                check_regex_allowed_syntax(regex);
                regex_t compiled;
                ck_assert_msg(regcomp(&compiled, regex, REG_EXTENDED | REG_NOSUB) == 0,
                              "regcomp('%s') failed", regex);
                for (size_t nw = 1; nw <= 4; nw++) {
                    size_t name_count = 1;
                    for (size_t i = 0; i < nw; i++)
                        name_count *= ARRAY_LEN(name_words);
                    for (size_t ni = 0; ni < name_count; ni++) {
                        char name[64];
                        build_name(name_words, ARRAY_LEN(name_words), nw, ni, name);
                        if (!name[0])
                            continue;
                        char topic[128];
                        snprintf(topic, sizeof(topic), "%s%s", prefix ? prefix : "", name);
                        bool by_regex = regexec(&compiled, topic, 0, NULL, 0) == 0;
                        bool by_match = address_wildcard_match(pattern, name);
                        ck_assert_msg(by_regex == by_match,
                                      "pattern '%s' (regex '%s') vs '%s': regex %d, match %d",
                                      pattern, regex, topic, by_regex, by_match);
                        if (prefix) /* never matches without the prefix */
                            ck_assert(regexec(&compiled, name, 0, NULL, 0) != 0 ||
                                      strncmp(name, prefix, strlen(prefix)) == 0);
                        compared++;
                    }
                }
                regfree(&compiled);
            }
        }
    }
    ck_assert_uint_gt(compared, 100000);
}
END_TEST

/* Each adapter's spelling table: errors quote that protocol's own forms, and
 * address_spell writes its first prefix of the kind. */
START_TEST(spelling_tables)
{
    struct destination d;
    char err[512], text[300];
    ck_assert_int_eq(address_parse_amqp("fifo://x", &d, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, amqp_addresses.forms));
    ck_assert_ptr_null(strstr(err, "/temp-queue/"));
    ck_assert_int_eq(address_parse_stomp("fifo://x", &d, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, stomp_addresses.forms));

    ck_assert_int_eq(address_parse_stomp("/topic/p.#", &d, err, sizeof(err)), 0);
    ck_assert_int_eq(address_spell(&amqp_addresses, &d, text, sizeof(text)), 0);
    ck_assert_str_eq(text, "topic://p.#");
    ck_assert_int_eq(address_parse_stomp("/queue/q", &d, err, sizeof(err)), 0);
    ck_assert_int_eq(address_spell(&amqp_addresses, &d, text, sizeof(text)), 0);
    ck_assert_str_eq(text, "queue://q");
    /* AMQP has no temp-queue spelling */
    ck_assert_int_eq(address_parse_stomp("/temp-queue/t", &d, err, sizeof(err)), 0);
    ck_assert_int_eq(address_spell(&amqp_addresses, &d, text, sizeof(text)), -1);

    /* a third protocol's table needs no change in address.c */
    static const struct address_prefix prefixes[] = {{"q:", DESTINATION_QUEUE, false},
                                                     {"t:", DESTINATION_TOPIC, false}};
    static const struct address_spelling third = {prefixes, 2, false, "use q:NAME or t:NAME"};
    ck_assert_int_eq(address_parse(&third, "t:a.*", &d, err, sizeof(err)), 0);
    ck_assert_int_eq(d.kind, DESTINATION_TOPIC);
    ck_assert(d.wildcard);
    ck_assert_str_eq(d.name, "a.*");
    ck_assert_int_eq(address_parse(&third, "/queue/x", &d, err, sizeof(err)), -1);
    ck_assert_str_eq(err, "destination '/queue/x' is not valid: use q:NAME or t:NAME");
}
END_TEST

/* ---- format ------------------------------------------------------------------- */

START_TEST(format_round_trip)
{
    static const char *const stomp[] = {"/queue/orders", "/topic/prices.*", "/temp-queue/r1",
                                        "/reply-queue/T0k3n", "/topic/#"};
    for (size_t i = 0; i < ARRAY_LEN(stomp); i++) {
        struct destination d, again;
        char err[256], text[300];
        ck_assert_int_eq(address_parse_stomp(stomp[i], &d, err, sizeof(err)), 0);
        ck_assert_int_eq(address_spell(&stomp_addresses, &d, text, sizeof(text)), 0);
        ck_assert_str_eq(text, stomp[i]);
        ck_assert_int_eq(address_parse_stomp(text, &again, err, sizeof(err)), 0);
        ck_assert_int_eq(again.kind, d.kind);
        ck_assert_int_eq(again.wildcard, d.wildcard);
        ck_assert_str_eq(again.name, d.name);
    }
    /* Other spellings format to the canonical STOMP one. */
    static const struct {
        const char *amqp;
        const char *stomp;
    } amqp[] = {{"orders", "/queue/orders"},         {"queue://orders", "/queue/orders"},
                {"/queues/orders", "/queue/orders"}, {"/exchanges/amq.topic/p", "/topic/p"},
                {"topic://p.#", "/topic/p.#"},       {"/reply-queue/t", "/reply-queue/t"}};
    for (size_t i = 0; i < ARRAY_LEN(amqp); i++) {
        struct destination d;
        char err[256], text[300];
        ck_assert_int_eq(address_parse_amqp(amqp[i].amqp, &d, err, sizeof(err)), 0);
        ck_assert_int_eq(address_spell(&stomp_addresses, &d, text, sizeof(text)), 0);
        ck_assert_str_eq(text, amqp[i].stomp);
    }
    struct destination d;
    char err[256], text[300];
    ck_assert_int_eq(address_parse_stomp("/amq/queue/x", &d, err, sizeof(err)), 0);
    ck_assert_int_eq(address_spell(&stomp_addresses, &d, text, sizeof(text)), 0);
    ck_assert_str_eq(text, "/queue/x");
    ck_assert_int_eq(address_spell(&stomp_addresses, &d, text, 9), 0);
    ck_assert_int_eq(address_spell(&stomp_addresses, &d, text, 8), -1);
}
END_TEST

START_TEST(kind_names)
{
    ck_assert_str_eq(destination_kind_name(DESTINATION_QUEUE), "queue");
    ck_assert_str_eq(destination_kind_name(DESTINATION_TOPIC), "topic");
    ck_assert_str_eq(destination_kind_name(DESTINATION_TEMP_QUEUE), "temp-queue");
    ck_assert_str_eq(destination_kind_name(DESTINATION_REPLY_QUEUE), "reply-queue");
}
END_TEST

START_TEST(group_ids_per_vhost)
{
    char out[128];
    /* "/" keeps the names groups had before vhosts */
    ck_assert_int_eq(address_group_id("/", "q", "orders", NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "kbridge.q.orders");
    ck_assert_int_eq(address_group_id(NULL, "q", "orders", NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "kbridge.q.orders");
    ck_assert_int_eq(address_group_id("/", "sub", "client", "d", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "kbridge.sub.client.d");
    ck_assert_int_eq(address_group_id("/", "dsub", "news", "d", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "kbridge.dsub.news.d");
    /* another vhost: its own, escaped, ended by '/' */
    ck_assert_int_eq(address_group_id("sales", "q", "orders", NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "kbridge.v.sales/q.orders");
    ck_assert_int_eq(address_group_id("sales", "sub", "c", "d", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "kbridge.v.sales/sub.c.d");
    ck_assert_int_eq(address_group_id("a/b c", "q", "x", NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "kbridge.v.a%2Fb%20c/q.x");
    /* vhost "a.q.b" queue "c" and vhost "a" queue "b.q.c" differ */
    char other[128];
    ck_assert_int_eq(address_group_id("a.q.b", "q", "c", NULL, out, sizeof(out)), 0);
    ck_assert_int_eq(address_group_id("a", "q", "b.q.c", NULL, other, sizeof(other)), 0);
    ck_assert_str_ne(out, other);
    /* a vhost's group is never one of "/"'s, whatever the queue's name */
    ck_assert_int_eq(address_group_id("/", "q", "v.sales", NULL, other, sizeof(other)), 0);
    ck_assert_int_eq(address_group_id("sales", "q", "x", NULL, out, sizeof(out)), 0);
    ck_assert_str_ne(out, other);
    /* nothing is cut */
    ck_assert_int_eq(address_group_id("sales", "q", "orders", NULL, out, 25), 0);
    ck_assert_str_eq(out, "kbridge.v.sales/q.orders");
    ck_assert_int_eq(address_group_id("sales", "q", "orders", NULL, out, 24), -1);
    ck_assert_int_eq(address_group_id("/", "q", "orders", NULL, out, 16), -1);
    ck_assert_int_eq(address_group_id("saaaaaaaaaaaaaaaaales", "q", "o", NULL, out, 12), -1);
}
END_TEST

static Suite *address_suite(void)
{
    Suite *suite = suite_create("address");
    TCase *parse = tcase_create("parse");
    tcase_add_test(parse, stomp_spellings_of_design_table);
    tcase_add_test(parse, exchange_addresses_name_their_key);
    tcase_add_test(parse, amqp_spellings_of_design_table);
    tcase_add_test(parse, unknown_prefixes_list_the_accepted_forms);
    tcase_add_test(parse, illegal_names_are_refused_with_the_rule);
    tcase_add_test(parse, name_length_limit_is_249);
    tcase_add_test(parse, errors_fit_small_buffers_and_err_may_be_null);
    suite_add_tcase(suite, parse);

    TCase *kafka = tcase_create("kafka_topic");
    tcase_add_test(kafka, kafka_topic_adds_the_prefix_within_249);
    tcase_add_test(kafka, kafka_topic_refusals);
    suite_add_tcase(suite, kafka);

    TCase *wildcards = tcase_create("wildcards");
    tcase_set_timeout(wildcards, 60);
    tcase_add_test(wildcards, wildcard_words_must_be_whole);
    tcase_add_test(wildcards, wildcard_match_examples);
    tcase_add_test(wildcards, wildcard_regex_shapes);
    tcase_add_test(wildcards, wildcard_regex_agrees_with_match);
    suite_add_tcase(suite, wildcards);

    TCase *format = tcase_create("format");
    tcase_add_test(format, format_round_trip);
    tcase_add_test(format, spelling_tables);
    tcase_add_test(format, kind_names);
    tcase_add_test(format, group_ids_per_vhost);
    suite_add_tcase(suite, format);
    return suite;
}

CHECK_MAIN(address_suite)
