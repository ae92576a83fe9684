/* SPDX-License-Identifier: Apache-2.0 */
/* address.h -- client addresses normalised to destinations (architecture §2) and
 * mapped to Kafka topic names. Pure functions: no I/O, no allocation. The
 * parser is protocol-neutral: each adapter passes its own spelling table. */
#ifndef KBRIDGE_ADDRESS_H
#define KBRIDGE_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADDRESS_NAME_MAX 249 /* Kafka's limit for a topic name */

enum destination_kind {
    DESTINATION_QUEUE,
    DESTINATION_TOPIC,
    DESTINATION_TEMP_QUEUE,  /* STOMP /temp-queue/NAME: belongs to the connection */
    DESTINATION_REPLY_QUEUE, /* /reply-queue/TOKEN: a reply to a temp queue */
    DESTINATION_EXCHANGE,    /* an exchange (architecture §11): NAME, optionally /KEY */
};

#define ADDRESS_KEY_MAX 255 /* AMQP 0-9-1's shortstr: a routing key's longest */

struct destination {
    enum destination_kind kind;
    bool wildcard;                   /* topic name contains * or # words */
    char name[ADDRESS_NAME_MAX + 1]; /* NAME without prefix */
    /* An exchange address that names a routing key (`/exchange/NAME/KEY`):
     * the offset of KEY in the text that was parsed (KEY runs to its end
     * and may be empty). 0: the address has no KEY (`/exchanges/NAME`). */
    uint16_t key_at;
    bool existing; /* spelled with an `existing` prefix (/amq/queue/NAME) */
};

/* One spelling rule: text starting with `prefix` names a destination of `kind`. */
struct address_prefix {
    const char *prefix;
    enum destination_kind kind;
    /* The address names an existing queue: subscribing does not declare it
     * (RabbitMQ's /amq/queue/NAME); see destination.existing. */
    bool existing;
};

/* How one protocol's clients write addresses; each adapter declares its own
 * (adapters/NAME/NAME_address.c) and names it in its descriptor. */
struct address_spelling {
    const struct address_prefix *prefixes; /* tried in order; the first of each kind spells it */
    size_t prefix_count;
    bool bare_is_queue; /* a NAME without prefix ('/' or "://") is a queue */
    const char *forms;  /* the spellings for errors: "use /queue/NAME, /topic/NAME or ..." */
};

/* Normalise a client address written in `spelling`: the first matching
 * prefix gives the kind and NAME is the rest (for an exchange: NAME up to
 * the next '/', and KEY after it, any bytes, at most ADDRESS_KEY_MAX; see
 * key_at). NAME must be a legal Kafka
 * topic name ([A-Za-z0-9._-], 1..249 chars; "." and ".." refused); topics
 * may also use the words * and # (wildcard = true). 0 ok; -1 with a one-line
 * reason in err that names the rule, e.g. "destination '/queue/a b' is not
 * valid: NAME may only contain A-Z a-z 0-9 . _ -", or, for text no prefix
 * matches, the spelling's own forms. */
int address_parse(const struct address_spelling *spelling, const char *text,
                  struct destination *out, char *err, size_t err_size);

/* The destination as a client of `spelling` writes it (the first prefix of
 * its kind + NAME; a bare NAME for a queue without a prefix). 0 ok, -1 when
 * it does not fit or the spelling has no form for the kind. */
int address_spell(const struct address_spelling *spelling, const struct destination *destination,
                  char *out, size_t out_size);

/* The Kafka topic for a queue, topic or exchange destination: prefix + name, checked
 * against Kafka's rules (total <= 249). 0 ok; -1 with err. */
int address_kafka_topic(const struct destination *destination, const char *prefix, char *out,
                        size_t out_size, char *err, size_t err_size);

/* librdkafka regex subscription ("^" + ...) for a wildcard topic: `*` matches
 * exactly one dot-separated word, `#` zero or more words, everything else
 * literally (regex metacharacters escaped), with the prefix. 0 ok, -1 when
 * out is too small. */
int address_wildcard_regex(const char *name, const char *prefix, char *out, size_t out_size);

/* Does `topic` (a Kafka topic name without prefix) match wildcard `pattern`? */
bool address_wildcard_match(const char *pattern, const char *topic);

/* A wildcard with the topic prefix, for matching full Kafka topic names. */
struct address_filter {
    char prefix[ADDRESS_NAME_MAX + 1];
    char pattern[ADDRESS_NAME_MAX + 1];
};
/* Fill a filter; 0 ok, -1 when prefix or pattern is too long. */
int address_filter_init(struct address_filter *filter, const char *prefix, const char *pattern);
/* Does the Kafka topic `topic` (prefix included) match? `filter` is a
 * struct address_filter (void * so it can serve as a lookup filter). */
bool address_filter_match(const char *topic, const void *filter);

/* Room for address_group_id's names: two names, an escaped vhost of 255
 * bytes (3 bytes each) and the words around them. */
#define ADDRESS_GROUP_ID_MAX (ADDRESS_NAME_MAX * 2 + 3 * 255 + 32)

/* The Kafka consumer group of a queue or durable subscription in `vhost`
 * (architecture §11 "Vhosts"): `kind` is "q" (queue `a`), "sub" (durable `b`
 * of client-id `a`) or "dsub" (durable `b` of topic `a`); `b` is NULL for "q".
 * The vhost "/" keeps the names groups always had: kbridge.KIND.A[.B]; any
 * other vhost's are kbridge.v.VHOST/KIND.A[.B], VHOST with every byte but
 * A-Z a-z 0-9 . _ - written %XX, so '/' (which neither an escaped vhost nor
 * a KIND has) ends the vhost and no two vhosts share a group. 0 ok; -1 when
 * it does not fit in out_size (nothing is cut). */
int address_group_id(const char *vhost, const char *kind, const char *a, const char *b, char *out,
                     size_t out_size);

/* "queue", "topic", "temp-queue", "reply-queue", "exchange" */
const char *destination_kind_name(enum destination_kind kind);

/* The destination in protocol-neutral words for messages ("queue 'orders'"). */
int address_format(const struct destination *destination, char *out, size_t out_size);

#endif
