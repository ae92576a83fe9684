/* SPDX-License-Identifier: Apache-2.0 */
/* binding.c -- the matchers of RabbitMQ's exchange types (binding.h,
 * architecture §11): topic patterns word by word with backtracking over the
 * last `#`, and headers bindings' x-match modes. Pure functions. */
#include "binding.h"

#include <string.h>

static const char *const exchange_type_names[] = {
    [EXCHANGE_DIRECT] = "direct",
    [EXCHANGE_FANOUT] = "fanout",
    [EXCHANGE_TOPIC] = "topic",
    [EXCHANGE_HEADERS] = "headers",
};

int exchange_type_parse(const char *text, enum exchange_type *out)
{
    for (size_t i = 0; i < sizeof(exchange_type_names) / sizeof(exchange_type_names[0]); i++) {
        if (strcmp(text, exchange_type_names[i]) == 0) {
            *out = (enum exchange_type)i;
            return 0;
        }
    }
    return -1;
}

const char *exchange_type_name(enum exchange_type type)
{
    return (size_t)type < sizeof(exchange_type_names) / sizeof(exchange_type_names[0])
               ? exchange_type_names[type]
               : "unknown";
}

/* A cursor over the '.'-separated words of a byte string. RabbitMQ splits
 * "" into no words and "a." into "a" and "": `left` counts the bytes not yet
 * consumed and `words` whether a word remains (a trailing '.' leaves one
 * empty word). */
struct word_cursor {
    const char *at;
    size_t left;
    bool more; /* a word remains (possibly empty) */
};

static struct word_cursor words_of(const char *text, size_t len)
{
    struct word_cursor c = {text, len, len > 0};
    return c;
}

/* The current word's length (up to the next '.' or the end). */
static size_t word_length(const struct word_cursor *c)
{
    const char *dot = memchr(c->at, '.', c->left);
    return dot ? (size_t)(dot - c->at) : c->left;
}

/* Step past the current word of length `len` and its '.', if any. */
static void word_next(struct word_cursor *c, size_t len)
{
    if (len < c->left) { /* a '.' follows: another word, maybe empty */
        c->at += len + 1;
        c->left -= len + 1;
        c->more = true;
    } else {
        c->at += len;
        c->left = 0;
        c->more = false;
    }
}

static bool word_is_char(const struct word_cursor *c, size_t len, char ch)
{
    return len == 1 && c->at[0] == ch;
}

bool binding_topic_match(const char *pattern, size_t pattern_len, const char *key, size_t key_len)
{
    struct word_cursor p = words_of(pattern, pattern_len);
    struct word_cursor k = words_of(key, key_len);
    /* Where to resume after the last '#': the pattern word after it, and the
     * key word it would eat next. One '#' at a time is enough (the classic
     * glob argument: a later '#' subsumes what an earlier one could eat). */
    struct word_cursor resume_p = {0}, resume_k = {0};
    bool have_hash = false;
    for (;;) {
        if (p.more) {
            size_t p_len = word_length(&p);
            if (word_is_char(&p, p_len, '#')) {
                word_next(&p, p_len);
                if (!p.more)
                    return true; /* a trailing # eats every word left */
                have_hash = true;
                resume_p = p;
                resume_k = k;
                continue;
            }
            if (k.more) {
                size_t k_len = word_length(&k);
                if (word_is_char(&p, p_len, '*') ||
                    (p_len == k_len && memcmp(p.at, k.at, k_len) == 0)) {
                    word_next(&p, p_len);
                    word_next(&k, k_len);
                    continue;
                }
            }
        } else if (!k.more) {
            return true; /* both ran out together */
        }
        /* Mismatch: let the last '#' eat one more key word and retry. */
        if (!have_hash || !resume_k.more)
            return false;
        word_next(&resume_k, word_length(&resume_k));
        k = resume_k;
        p = resume_p;
    }
}

int headers_match_parse(const char *text, enum headers_match *out)
{
    static const struct {
        const char *name;
        enum headers_match mode;
    } modes[] = {
        {"all", HEADERS_MATCH_ALL},
        {"any", HEADERS_MATCH_ANY},
        {"all-with-x", HEADERS_MATCH_ALL_WITH_X},
        {"any-with-x", HEADERS_MATCH_ANY_WITH_X},
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(text, modes[i].name) == 0) {
            *out = modes[i].mode;
            return 0;
        }
    }
    return -1;
}

static const struct binding_header *header_find(const struct binding_header *headers, size_t count,
                                                const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(headers[i].name, name) == 0)
            return &headers[i];
    return NULL;
}

static bool argument_satisfied(const struct binding_header *argument,
                               const struct binding_header *headers, size_t header_count)
{
    const struct binding_header *header = header_find(headers, header_count, argument->name);
    if (!header)
        return false;
    if (!argument->value)
        return true; /* a value-less argument asks for presence only */
    return header->value && header->value_len == argument->value_len &&
           memcmp(header->value, argument->value, argument->value_len) == 0;
}

bool binding_headers_match(enum headers_match mode, const struct binding_header *arguments,
                           size_t argument_count, const struct binding_header *headers,
                           size_t header_count)
{
    bool with_x = mode == HEADERS_MATCH_ALL_WITH_X || mode == HEADERS_MATCH_ANY_WITH_X;
    bool all = mode == HEADERS_MATCH_ALL || mode == HEADERS_MATCH_ALL_WITH_X;
    for (size_t i = 0; i < argument_count; i++) {
        const char *name = arguments[i].name;
        if (strcmp(name, "x-match") == 0 || (!with_x && strncmp(name, "x-", 2) == 0))
            continue;
        bool satisfied = argument_satisfied(&arguments[i], headers, header_count);
        if (all && !satisfied)
            return false;
        if (!all && satisfied)
            return true;
    }
    return all; /* all: nothing failed (also with no arguments); any: nothing matched */
}
