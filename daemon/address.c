/* SPDX-License-Identifier: Apache-2.0 */
/* address.c -- normalises client addresses to destinations by a spelling
 * table each adapter declares (STOMP's in adapters/stomp/stomp_address.c,
 * AMQP's in adapters/amqp/amqp_address.c), checks names against Kafka's topic rules,
 * and turns topic wildcards (`*` one word, `#` zero or more words) into the
 * regex librdkafka subscribes with (architecture §2). Pure functions: no I/O, no
 * allocation; errors are one line that names the destination and the rule.
 *
 * Words: a name is split on '.', so a name with n dots has n + 1 words, and a
 * word may be empty ("a..b" has three words, the middle one empty). `*`
 * matches exactly one word (possibly empty), `#` matches zero or more words.
 * address_wildcard_match and address_wildcard_regex implement the same rule
 * and the unit tests check that they agree. */
#include "address.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Longest part of the client's text quoted in an error message. */
#define QUOTED_MAX 120

const char *destination_kind_name(enum destination_kind kind)
{
    switch (kind) {
    case DESTINATION_QUEUE: return "queue";
    case DESTINATION_TOPIC: return "topic";
    case DESTINATION_TEMP_QUEUE: return "temp-queue";
    case DESTINATION_REPLY_QUEUE: return "reply-queue";
    case DESTINATION_EXCHANGE: return "exchange";
    }
    return "unknown";
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static bool is_wildcard_char(char c) { return c == '*' || c == '#'; }

/* Copy at most QUOTED_MAX bytes of text into out for quoting in an error:
 * bytes outside printable ASCII become '?' so the message stays one line of
 * ASCII whatever the client sent; a cut ends in "...". */
static void quote_for_error(const char *text, char *out, size_t out_size)
{
    size_t used = 0;
    const char *p = text;
    for (; *p && used + 1 < out_size && used < QUOTED_MAX; p++) {
        unsigned char c = (unsigned char)*p;
        out[used++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (*p && used >= 3)
        memcpy(out + used - 3, "...", 3);
    out[used] = '\0';
}

/* Write "destination 'TEXT' is not valid: RULE" into err (if any); returns -1. */
static int destination_error(const char *text, const char *rule, char *err, size_t err_size)
{
    if (err && err_size > 0) {
        char quoted[QUOTED_MAX + 1];
        quote_for_error(text, quoted, sizeof(quoted));
        snprintf(err, err_size, "destination '%s' is not valid: %s", quoted, rule);
    }
    return -1;
}

/* Write "destination queue 'NAME' is not valid: RULE" into err (if any);
 * returns -1. `words` is address_format's text, so no client's spelling. */
static int kafka_topic_error(const char *words, const char *rule, char *err, size_t err_size)
{
    if (err && err_size > 0)
        snprintf(err, err_size, "destination %s is not valid: %s", words, rule);
    return -1;
}

/* Check NAME (the part after the prefix) against Kafka's topic rules, and
 * for topics the wildcard-word rule. Returns NULL when valid, else the rule
 * it breaks; *wildcard says whether it uses * or # words. */
static const char *check_name(const char *name, bool allow_wildcards, bool *wildcard,
                              char *rule_buf, size_t rule_size)
{
    size_t len = strlen(name);
    *wildcard = false;
    if (len == 0)
        return "NAME must not be empty";
    bool has_wildcard_char = false;
    for (size_t i = 0; i < len; i++) {
        if (is_wildcard_char(name[i])) {
            has_wildcard_char = true;
            continue;
        }
        if (!is_name_char(name[i]))
            return "NAME may only contain A-Z a-z 0-9 . _ -";
    }
    if (has_wildcard_char && !allow_wildcards)
        return "NAME may only contain A-Z a-z 0-9 . _ - (the wildcards * and # are only "
               "allowed in topic subscriptions)";
    if (len > ADDRESS_NAME_MAX) {
        snprintf(rule_buf, rule_size, "NAME must be at most %d characters long (it has %zu)",
                 ADDRESS_NAME_MAX, len);
        return rule_buf;
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return "NAME must not be '.' or '..'";
    if (has_wildcard_char) {
        /* Each * or # must be a whole dot-separated word. */
        const char *word = name;
        for (;;) {
            const char *dot = strchr(word, '.');
            size_t word_len = dot ? (size_t)(dot - word) : strlen(word);
            for (size_t i = 0; i < word_len; i++)
                if (is_wildcard_char(word[i]) && word_len != 1)
                    return "the wildcards * and # must be whole dot-separated words "
                           "(as in prices.* or prices.#)";
            if (!dot)
                break;
            word = dot + 1;
        }
        *wildcard = true;
    }
    return NULL;
}

int address_parse(const struct address_spelling *spelling, const char *text,
                  struct destination *out, char *err, size_t err_size)
{
    if (!text)
        text = "";
    const struct address_prefix *matched = NULL;
    size_t prefix_len = 0;
    for (size_t i = 0; i < spelling->prefix_count; i++) {
        size_t len = strlen(spelling->prefixes[i].prefix);
        if (strncmp(text, spelling->prefixes[i].prefix, len) == 0) {
            matched = &spelling->prefixes[i];
            prefix_len = len;
            break;
        }
    }
    enum destination_kind kind;
    if (matched) {
        kind = matched->kind;
    } else if (spelling->bare_is_queue && !strchr(text, '/') && !strstr(text, "://")) {
        kind = DESTINATION_QUEUE;
    } else {
        return destination_error(text, spelling->forms, err, err_size);
    }
    const char *name = text + prefix_len;
    size_t name_len = strlen(name);
    uint16_t key_at = 0;
    char exchange[ADDRESS_NAME_MAX + 2];
    if (kind == DESTINATION_EXCHANGE) {
        /* NAME[/KEY]: the exchange is a Kafka topic name, KEY any text */
        const char *slash = strchr(name, '/');
        if (slash) {
            size_t key_len = strlen(slash + 1);
            if (key_len > ADDRESS_KEY_MAX) {
                char rule[96];
                snprintf(rule, sizeof(rule), "KEY must be at most %d bytes long (it has %zu)",
                         ADDRESS_KEY_MAX, key_len);
                return destination_error(text, rule, err, err_size);
            }
            name_len = (size_t)(slash - name);
            key_at = (uint16_t)(slash + 1 - text);
        }
        if (name_len > ADDRESS_NAME_MAX)
            name_len = ADDRESS_NAME_MAX + 1; /* check_name names the limit */
        memcpy(exchange, name, name_len);
        exchange[name_len] = '\0';
        name = exchange;
    }
    bool wildcard = false;
    char rule_buf[96];
    const char *rule =
        check_name(name, kind == DESTINATION_TOPIC, &wildcard, rule_buf, sizeof(rule_buf));
    if (rule)
        return destination_error(text, rule, err, err_size);
    out->kind = kind;
    out->wildcard = wildcard;
    out->key_at = key_at;
    out->existing = matched && matched->existing;
    memcpy(out->name, name, strlen(name) + 1);
    return 0;
}

int address_spell(const struct address_spelling *spelling, const struct destination *destination,
                  char *out, size_t out_size)
{
    const char *prefix = NULL;
    for (size_t i = 0; i < spelling->prefix_count && !prefix; i++)
        if (spelling->prefixes[i].kind == destination->kind)
            prefix = spelling->prefixes[i].prefix;
    if (!prefix && destination->kind == DESTINATION_QUEUE && spelling->bare_is_queue)
        prefix = "";
    if (!prefix)
        return -1;
    int n = snprintf(out, out_size, "%s%s", prefix, destination->name);
    return (n < 0 || (size_t)n >= out_size) ? -1 : 0;
}

int address_format(const struct destination *destination, char *out, size_t out_size)
{
    int n = snprintf(out, out_size, "%s '%s'", destination_kind_name(destination->kind),
                     destination->name);
    return (n < 0 || (size_t)n >= out_size) ? -1 : 0;
}

int address_kafka_topic(const struct destination *destination, const char *prefix, char *out,
                        size_t out_size, char *err, size_t err_size)
{
    char text[ADDRESS_NAME_MAX + 32]; /* in protocol-neutral words: any client may read it */
    if (address_format(destination, text, sizeof(text)) != 0)
        snprintf(text, sizeof(text), "%s", destination->name);
    if (!prefix)
        prefix = "";
    if (destination->kind != DESTINATION_QUEUE && destination->kind != DESTINATION_TOPIC &&
        destination->kind != DESTINATION_EXCHANGE)
        return kafka_topic_error(text,
                                 "only queue, topic and exchange destinations map to a Kafka topic",
                                 err, err_size);
    if (destination->wildcard)
        return kafka_topic_error(text, "the wildcards * and # may only be used to subscribe", err,
                                 err_size);
    size_t prefix_len = strlen(prefix);
    size_t name_len = strnlen(destination->name, sizeof(destination->name));
    for (size_t i = 0; i < prefix_len; i++)
        if (!is_name_char(prefix[i]))
            return kafka_topic_error(text, "topic_prefix may only contain A-Z a-z 0-9 . _ -", err,
                                     err_size);
    for (size_t i = 0; i < name_len; i++)
        if (!is_name_char(destination->name[i]))
            return kafka_topic_error(text, "NAME may only contain A-Z a-z 0-9 . _ -", err,
                                     err_size);
    size_t total = prefix_len + name_len;
    if (total == 0)
        return kafka_topic_error(text, "NAME must not be empty", err, err_size);
    if (total > ADDRESS_NAME_MAX) {
        char rule[128];
        snprintf(rule, sizeof(rule),
                 "topic_prefix + NAME must be at most %d characters long (it has %zu)",
                 ADDRESS_NAME_MAX, total);
        return kafka_topic_error(text, rule, err, err_size);
    }
    if (total + 1 > out_size) {
        if (err && err_size > 0)
            snprintf(err, err_size, "Kafka topic name for destination %s does not fit in %zu bytes",
                     text, out_size);
        return -1;
    }
    memcpy(out, prefix, prefix_len);
    memcpy(out + prefix_len, destination->name, name_len);
    out[total] = '\0';
    if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0) {
        out[0] = '\0';
        return kafka_topic_error(text, "the Kafka topic name must not be '.' or '..'", err,
                                 err_size);
    }
    return 0;
}

/* ---- wildcards ------------------------------------------------------------- */

/* Appends to a fixed buffer; remembers overflow instead of failing each call. */
struct regex_writer {
    char *out;
    size_t size;
    size_t used;
    bool overflow;
};

static void writer_put(struct regex_writer *w, const char *text, size_t len)
{
    if (w->overflow || w->used + len + 1 > w->size) {
        w->overflow = true;
        return;
    }
    memcpy(w->out + w->used, text, len);
    w->used += len;
    w->out[w->used] = '\0';
}

static void writer_puts(struct regex_writer *w, const char *text)
{
    writer_put(w, text, strlen(text));
}

/* Literal text with every POSIX ERE metacharacter escaped. */
static void writer_literal(struct regex_writer *w, const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (strchr("\\^$.|?*+()[]{}", c)) {
            char escaped[2] = {'\\', c};
            writer_put(w, escaped, 2);
        } else {
            writer_put(w, &c, 1);
        }
    }
}

static size_t word_length(const char *word)
{
    const char *dot = strchr(word, '.');
    return dot ? (size_t)(dot - word) : strlen(word);
}

static bool word_is(const char *word, size_t len, char c) { return len == 1 && word[0] == c; }

/*
 * DESIGN: the regex. Think of a name as its words each preceded by a dot
 * (".w1.w2"): then a literal word L is `\.L`, `*` is `\.[^.]*` and `#` is
 * `(\.[^.]*)*`, which is the same language as `(\..*)?`. The real name has
 * no leading dot, so the first token drops its `\.`; a leading `#` either
 * eats one or more words including the dot after them, `(.*\.)?`, or none.
 * Runs of `#` words are one `#`, and a lone `#` is `.*`. The result only
 * uses ^ $ . [^.] * ? ( ) and \. escapes, which both POSIX ERE and
 * librdkafka's bundled regex engine understand.
 */
int address_wildcard_regex(const char *name, const char *prefix, char *out, size_t out_size)
{
    struct regex_writer w = {.out = out, .size = out_size};
    if (out_size == 0)
        return -1;
    out[0] = '\0';
    writer_puts(&w, "^");
    if (prefix)
        writer_literal(&w, prefix, strlen(prefix));

    /* A pattern of only # words matches every name. */
    bool only_hashes = true;
    for (const char *word = name;;) {
        size_t len = word_length(word);
        if (!word_is(word, len, '#'))
            only_hashes = false;
        if (!word[len])
            break;
        word = word + len + 1;
    }
    if (only_hashes) {
        writer_puts(&w, ".*$");
        return w.overflow ? -1 : 0;
    }

    bool first = true;
    bool previous_hash = false;
    for (const char *word = name;;) {
        size_t len = word_length(word);
        bool hash = word_is(word, len, '#');
        if (hash) {
            if (!previous_hash)
                writer_puts(&w, first ? "(.*\\.)?" : "(\\..*)?");
            /* A leading # stays "first": the next word has no dot before it. */
        } else {
            if (!first)
                writer_puts(&w, "\\.");
            if (word_is(word, len, '*'))
                writer_puts(&w, "[^.]*");
            else
                writer_literal(&w, word, len);
            first = false;
        }
        previous_hash = hash;
        if (!word[len])
            break;
        word = word + len + 1;
    }
    writer_puts(&w, "$");
    return w.overflow ? -1 : 0;
}

/* The word after `word` (of length len), or NULL after the last one. */
static const char *next_word(const char *word, size_t len)
{
    return word[len] == '.' ? word + len + 1 : NULL;
}

/*
 * DESIGN: matching is the classic linear-backtracking glob algorithm over
 * words instead of characters: literal words and `*` consume one word each,
 * `#` is the star. Only the most recent `#` needs a backtrack point, because
 * everything between two `#` words matches a fixed number of words. Cost
 * O(pattern words * topic words) in the worst case, no allocation.
 */
bool address_wildcard_match(const char *pattern, const char *topic)
{
    const char *p = pattern;   /* current pattern word, NULL when done */
    const char *t = topic;     /* current topic word, NULL when done */
    const char *star_p = NULL; /* pattern word after the last # seen */
    const char *star_t = NULL; /* topic word the last # resumes from */
    bool star = false;
    while (t) {
        size_t t_len = word_length(t);
        if (p) {
            size_t p_len = word_length(p);
            if (word_is(p, p_len, '#')) {
                if (!next_word(p, p_len))
                    return true; /* a trailing # eats the rest */
                star = true;
                star_p = next_word(p, p_len);
                star_t = t;
                p = star_p;
                continue;
            }
            if (word_is(p, p_len, '*') || (p_len == t_len && memcmp(p, t, t_len) == 0)) {
                p = next_word(p, p_len);
                t = next_word(t, t_len);
                continue;
            }
        }
        if (!star)
            return false;
        /* Let the last # eat one more word and retry after it. */
        star_t = next_word(star_t, word_length(star_t));
        if (!star_t)
            return false;
        t = star_t;
        p = star_p;
    }
    while (p) {
        size_t p_len = word_length(p);
        if (!word_is(p, p_len, '#'))
            return false;
        p = next_word(p, p_len);
    }
    return true;
}

int address_filter_init(struct address_filter *filter, const char *prefix, const char *pattern)
{
    size_t prefix_len = strlen(prefix), pattern_len = strlen(pattern);
    if (prefix_len >= sizeof(filter->prefix) || pattern_len >= sizeof(filter->pattern))
        return -1;
    memcpy(filter->prefix, prefix, prefix_len + 1);
    memcpy(filter->pattern, pattern, pattern_len + 1);
    return 0;
}

bool address_filter_match(const char *topic, const void *arg)
{
    const struct address_filter *filter = arg;
    size_t prefix_len = strlen(filter->prefix);
    if (strncmp(topic, filter->prefix, prefix_len) != 0)
        return false;
    return address_wildcard_match(filter->pattern, topic + prefix_len);
}

int address_group_id(const char *vhost, const char *kind, const char *a, const char *b, char *out,
                     size_t out_size)
{
    size_t used = 0;
    int n;
    if (!vhost || strcmp(vhost, "/") == 0) {
        n = snprintf(out, out_size, "kbridge.");
        used = n > 0 ? (size_t)n : 0;
    } else {
        n = snprintf(out, out_size, "kbridge.v.");
        used = n > 0 ? (size_t)n : 0;
        for (const char *p = vhost; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if (used + 4 > out_size)
                return -1;
            if (is_name_char((char)c))
                out[used++] = (char)c;
            else
                used += (size_t)snprintf(out + used, out_size - used, "%%%02X", c);
        }
        if (used + 2 > out_size)
            return -1;
        out[used++] = '/';
        out[used] = '\0';
    }
    if (used >= out_size)
        return -1;
    n = b ? snprintf(out + used, out_size - used, "%s.%s.%s", kind, a, b)
          : snprintf(out + used, out_size - used, "%s.%s", kind, a);
    if (n < 0 || (size_t)n >= out_size - used)
        return -1;
    return 0;
}
