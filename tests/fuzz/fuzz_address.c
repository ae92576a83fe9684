/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_address.c -- libFuzzer target for the address parser (daemon/address.c):
 * STOMP and AMQP 1.0 spellings of a client address, the Kafka topic name
 * with a prefix, and topic wildcards as a librdkafka regex and as a matcher.
 *
 * The input is one flags byte and then up to three NUL-separated strings
 * (NUL cannot be part of a C string, so nothing is lost):
 *   ADDRESS \0 PREFIX \0 TOPIC
 *   flags bits 0-1  err buffer: NULL, 1, 24 or 256 bytes
 *         bits 2-4  regex buffer: 1, 2, 8, 32, 64, 256, 600 or 1100 bytes
 *         bits 5-7  Kafka topic buffer: 1, 2, 8, 64, 249, 250, 251 or 512 bytes
 * Every buffer is allocated at its exact size, so ASan sees any write past it.
 *
 * ADDRESS goes through address_parse_stomp and address_parse_amqp. A
 * destination must hold a legal NAME (1..249 of A-Z a-z 0-9 . _ -, not "."
 * or "..", * and # only as whole words of a topic, wildcard set exactly then),
 * survive address_spell(&stomp_addresses) + address_parse_stomp unchanged, and map to
 * PREFIX + NAME with address_kafka_topic exactly when the rules allow it. A
 * refusal must leave a one-line printable ASCII reason. A wildcard topic's
 * address_wildcard_regex, compiled with regcomp (POSIX ERE), must match
 * PREFIX + TOPIC exactly when address_wildcard_match(NAME, TOPIC) and
 * address_filter_match say so. Any mismatch aborts. Also built by `make check`
 * with replay_main.c, which runs this over tests/fuzz/corpus/address without
 * clang. */
#include "address.h"

#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amqp_address.h"
#include "fuzz_check.h"
#include "stomp_address.h"

static const size_t err_sizes[4] = {0, 1, 24, 256};
static const size_t regex_sizes[8] = {1, 2, 8, 32, 64, 256, 600, 1100};
static const size_t topic_sizes[8] = {1, 2, 8, 64, 249, 250, 251, 512};

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

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static bool all_name_chars(const char *text)
{
    for (; *text; text++)
        if (!is_name_char(*text))
            return false;
    return true;
}

/* An exact-size buffer with a recognisable filling. */
static char *buffer(size_t size)
{
    if (size == 0)
        return NULL;
    char *out = malloc(size);
    FUZZ_CHECK(out != NULL, "out of memory");
    memset(out, 'Z', size);
    return out;
}

/* A refusal wrote a one-line printable reason that fits err (when there is one). */
static void check_err(const char *err, size_t err_size, const char *what, const char *text)
{
    if (err_size == 0)
        return;
    size_t len = strnlen(err, err_size);
    FUZZ_CHECK(len < err_size, "%s: err not terminated", what);
    FUZZ_CHECK(err_size == 1 || len > 0, "%s refused '%s' without a reason", what, text);
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK(err[i] >= 0x20 && err[i] < 0x7f, "%s: byte 0x%02x in the reason '%s'", what,
                   (unsigned)(unsigned char)err[i], err);
}

/* The NAME rules a destination must satisfy. */
static void check_destination(const struct destination *d, const char *what, const char *text)
{
    size_t len = strnlen(d->name, sizeof(d->name));
    FUZZ_CHECK(len < sizeof(d->name), "%s('%s'): name not terminated", what, text);
    FUZZ_CHECK(len >= 1 && len <= ADDRESS_NAME_MAX, "%s('%s'): name of %zu bytes", what, text, len);
    FUZZ_CHECK(strcmp(d->name, ".") != 0 && strcmp(d->name, "..") != 0, "%s('%s'): name '%s'", what,
               text, d->name);
    bool wildcard = false;
    const char *word = d->name;
    for (;;) {
        const char *dot = strchr(word, '.');
        size_t word_len = dot ? (size_t)(dot - word) : strlen(word);
        for (size_t i = 0; i < word_len; i++) {
            if (word[i] == '*' || word[i] == '#') {
                FUZZ_CHECK(word_len == 1 && d->kind == DESTINATION_TOPIC,
                           "%s('%s'): wildcard inside word of '%s' (kind %s)", what, text, d->name,
                           destination_kind_name(d->kind));
                wildcard = true;
            } else {
                FUZZ_CHECK(is_name_char(word[i]), "%s('%s'): byte 0x%02x in the name", what, text,
                           (unsigned)(unsigned char)word[i]);
            }
        }
        if (!dot)
            break;
        word = dot + 1;
    }
    FUZZ_CHECK(d->wildcard == wildcard, "%s('%s'): wildcard flag %d for '%s'", what, text,
               (int)d->wildcard, d->name);
    /* the name ends the address, or (an exchange with a routing key,
     * /exchange/NAME/KEY) ends just before the '/' at key_at - 1 */
    size_t end = d->key_at ? (size_t)d->key_at - 1 : strlen(text);
    FUZZ_CHECK(end <= strlen(text) && end >= len && memcmp(text + end - len, d->name, len) == 0 &&
                   (!d->key_at || (d->kind == DESTINATION_EXCHANGE && text[end] == '/')),
               "%s('%s'): name '%s' (key at %u) is not where the address ends", what, text, d->name,
               (unsigned)d->key_at);
}

/* address_spell(&stomp_addresses) + address_parse_stomp give the destination back. */
static void check_stomp_spelling(const struct destination *d, const char *what, const char *text)
{
    char spelled[ADDRESS_NAME_MAX + 32];
    FUZZ_CHECK(address_spell(&stomp_addresses, d, spelled, sizeof(spelled)) == 0,
               "%s('%s'): no spelling", what, text);
    struct destination again;
    char err[256];
    FUZZ_CHECK(address_parse_stomp(spelled, &again, err, sizeof(err)) == 0,
               "%s('%s') spelled '%s', which STOMP refuses: %s", what, text, spelled, err);
    FUZZ_CHECK(again.kind == d->kind && again.wildcard == d->wildcard &&
                   strcmp(again.name, d->name) == 0,
               "%s('%s') spelled '%s' reads back as %s '%s'", what, text, spelled,
               destination_kind_name(again.kind), again.name);
    char words[ADDRESS_NAME_MAX + 32];
    FUZZ_CHECK(address_format(d, words, sizeof(words)) == 0 &&
                   strncmp(words, destination_kind_name(d->kind),
                           strlen(destination_kind_name(d->kind))) == 0,
               "address_format gave '%s'", words);
}

/* address_kafka_topic succeeds exactly when the rules allow, with prefix + name. */
static void check_kafka_topic(const struct destination *d, const char *prefix, size_t out_size,
                              size_t err_size)
{
    char *out = buffer(out_size);
    char *err = buffer(err_size);
    int rc = address_kafka_topic(d, prefix, out, out_size, err, err_size);
    size_t total = strlen(prefix) + strlen(d->name);
    char full[2 * ADDRESS_NAME_MAX + 2];
    snprintf(full, sizeof(full), "%s%s", prefix, d->name);
    bool allowed = (d->kind == DESTINATION_QUEUE || d->kind == DESTINATION_TOPIC ||
                    d->kind == DESTINATION_EXCHANGE) &&
                   !d->wildcard && all_name_chars(prefix) && total <= ADDRESS_NAME_MAX &&
                   total + 1 <= out_size && strcmp(full, ".") != 0 && strcmp(full, "..") != 0;
    FUZZ_CHECK((rc == 0) == allowed, "address_kafka_topic(%s '%s', prefix '%s', %zu bytes) = %d",
               destination_kind_name(d->kind), d->name, prefix, out_size, rc);
    if (rc == 0)
        FUZZ_CHECK(strcmp(out, full) == 0, "topic '%s', expected '%s'", out, full);
    else
        check_err(err, err_size, "address_kafka_topic", d->name);
    free(out);
    free(err);
}

/* The regex, the matcher and the filter agree on prefix + topic. */
static void check_wildcard(const char *pattern, const char *prefix, const char *topic,
                           size_t regex_size)
{
    char *regex = buffer(regex_size);
    int rc = address_wildcard_regex(pattern, prefix, regex, regex_size);
    FUZZ_CHECK(strnlen(regex, regex_size) < regex_size, "regex not terminated");
    /* each byte escaped at most once; a word of one byte becomes at most "\\.[^.]*" */
    size_t full_size = 16 + 2 * strlen(prefix) + 8 * strlen(pattern);
    char *full_regex = buffer(full_size);
    int full_rc = address_wildcard_regex(pattern, prefix, full_regex, full_size);
    FUZZ_CHECK(full_rc == 0, "no regex for '%s' in %zu bytes", pattern, full_size);
    if (rc == 0)
        FUZZ_CHECK(strcmp(regex, full_regex) == 0, "regex '%s' in %zu bytes, else '%s'", regex,
                   regex_size, full_regex);
    else
        FUZZ_CHECK(strlen(full_regex) + 1 > regex_size, "regex '%s' refused in %zu bytes",
                   full_regex, regex_size);
    free(regex);

    char full_topic[2 * ADDRESS_NAME_MAX + 2];
    if (!all_name_chars(prefix) || !all_name_chars(topic) || !topic[0] ||
        strlen(prefix) + strlen(topic) >= sizeof(full_topic)) {
        free(full_regex);
        return;
    }
    regex_t compiled;
    int crc = regcomp(&compiled, full_regex, REG_EXTENDED | REG_NOSUB);
    FUZZ_CHECK(crc == 0, "regex '%s' for '%s' does not compile (%d)", full_regex, pattern, crc);
    snprintf(full_topic, sizeof(full_topic), "%s%s", prefix, topic);
    bool by_regex = regexec(&compiled, full_topic, 0, NULL, 0) == 0;
    regfree(&compiled);
    bool by_match = address_wildcard_match(pattern, topic);
    FUZZ_CHECK(by_regex == by_match, "'%s' vs topic '%s': regex '%s' says %d, match says %d",
               pattern, topic, full_regex, (int)by_regex, (int)by_match);
    free(full_regex);
    struct address_filter filter;
    if (address_filter_init(&filter, prefix, pattern) == 0)
        FUZZ_CHECK(address_filter_match(full_topic, &filter) == by_match,
                   "filter ('%s', '%s') disagrees on '%s'", prefix, pattern, full_topic);
}

static void check_parse(int (*parse)(const char *, struct destination *, char *, size_t),
                        const char *what, const char *text, const char *prefix, const char *topic,
                        uint8_t flags)
{
    size_t err_size = err_sizes[flags & 3];
    char *err = buffer(err_size);
    struct destination d;
    memset(&d, 0x5a, sizeof(d));
    int rc = parse(text, &d, err, err_size);
    if (rc != 0) {
        FUZZ_CHECK(rc == -1, "%s returned %d", what, rc);
        check_err(err, err_size, what, text);
        free(err);
        return;
    }
    free(err);
    check_destination(&d, what, text);
    check_stomp_spelling(&d, what, text);
    check_kafka_topic(&d, prefix, topic_sizes[(flags >> 5) & 7], err_sizes[flags & 3]);
    check_kafka_topic(&d, "", ADDRESS_NAME_MAX + 1, 256);
    if (d.wildcard)
        check_wildcard(d.name, prefix, topic, regex_sizes[(flags >> 2) & 7]);
    else if (d.kind == DESTINATION_TOPIC)
        FUZZ_CHECK(address_wildcard_match(d.name, d.name), "'%s' does not match itself", d.name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    /* ADDRESS, PREFIX and TOPIC, each NUL-terminated in its own exact-size copy */
    char *parts[3] = {NULL, NULL, NULL};
    size_t pos = 1;
    for (int i = 0; i < 3; i++) {
        size_t len = 0;
        while (pos + len < size && data[pos + len] != '\0')
            len++;
        parts[i] = malloc(len + 1);
        FUZZ_CHECK(parts[i] != NULL, "out of memory");
        if (len)
            memcpy(parts[i], data + pos, len);
        parts[i][len] = '\0';
        pos = pos + len < size ? pos + len + 1 : size;
    }
    check_parse(address_parse_stomp, "address_parse_stomp", parts[0], parts[1], parts[2], flags);
    check_parse(address_parse_amqp, "address_parse_amqp", parts[0], parts[1], parts[2], flags);
    /* the matcher takes any two strings, and a NULL address is refused */
    (void)address_wildcard_match(parts[0], parts[2]);
    struct destination d;
    FUZZ_CHECK(address_parse_amqp(NULL, &d, NULL, 0) == -1, "NULL address accepted");
    for (int i = 0; i < 3; i++)
        free(parts[i]);
    return 0;
}
