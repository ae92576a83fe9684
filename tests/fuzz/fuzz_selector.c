/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_selector.c -- libFuzzer target for the JMS selector parser and
 * evaluator (daemon/selector.c).
 *
 * The input is the selector text, then NUL-separated name/value pairs of a
 * message (NAME \0 VALUE \0 ...; values are strings, as STOMP headers are).
 * A refused selector must leave a one-line printable reason that names a
 * position, the length limit or memory. An accepted one is evaluated against
 * the message twice (same answer), and "NOT (text)" — accepted too unless it
 * hits the length or depth limit — must never select what the selector
 * selects (TRUE and NOT TRUE cannot both hold; both may be UNKNOWN). Also
 * built by `make check` with replay_main.c over tests/fuzz/corpus/selector. */
#include "selector.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

struct message {
    const char *pairs[64]; /* name, value, ... */
    size_t count;
};

static bool lookup(void *opaque, const char *name, struct selector_value *out)
{
    const struct message *m = opaque;
    for (size_t i = 0; i + 1 < m->count; i += 2)
        if (strcmp(m->pairs[i], name) == 0) {
            *out = (struct selector_value){.type = SELECTOR_STRING,
                                           .string = m->pairs[i + 1],
                                           .string_len = strlen(m->pairs[i + 1])};
            return true;
        }
    return false;
}

static void check_reason(const char *err)
{
    FUZZ_CHECK(err[0] != '\0', "empty reason");
    for (const char *c = err; *c; c++)
        FUZZ_CHECK(*c >= 0x20 && *c < 0x7f, "unprintable byte in the reason: %s", err);
    FUZZ_CHECK(strncmp(err, "position ", 9) == 0 || strncmp(err, "longer than", 11) == 0 ||
                   strcmp(err, "out of memory") == 0,
               "reason of an unexpected shape: %s", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a NUL-terminated copy, so every field is a C string */
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *text = copy;
    struct message message = {.count = 0};
    for (size_t at = strlen(copy) + 1; at < size && message.count < 64;) {
        message.pairs[message.count++] = copy + at;
        at += strlen(copy + at) + 1;
    }
    if (message.count % 2)
        message.count--;

    char err[256] = "";
    struct selector *selector = selector_parse(text, err, sizeof(err));
    if (!selector) {
        check_reason(err);
        free(copy);
        return 0;
    }
    bool first = selector_matches(selector, lookup, &message);
    FUZZ_CHECK(selector_matches(selector, lookup, &message) == first, "not deterministic");
    selector_free(selector);

    size_t len = strlen(text);
    char *negated = malloc(len + 8);
    if (negated) {
        snprintf(negated, len + 8, "NOT (%s)", text);
        struct selector *opposite = selector_parse(negated, err, sizeof(err));
        if (opposite) {
            FUZZ_CHECK(!(first && selector_matches(opposite, lookup, &message)),
                       "both '%s' and its negation select the message", text);
            selector_free(opposite);
        } else {
            check_reason(err);
            /* only the limits may refuse what was accepted alone (or a
             * comment-like tail that "NOT (" changes: none exists) */
            FUZZ_CHECK(strstr(err, "nested deeper") || strstr(err, "longer than") ||
                           strcmp(err, "out of memory") == 0,
                       "'%s' parses but NOT (...) of it does not: %s", text, err);
        }
        free(negated);
    }
    free(copy);
    return 0;
}
