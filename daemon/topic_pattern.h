/* SPDX-License-Identifier: Apache-2.0 */
/* topic_pattern.h -- the Kafka topic names kbridge derives from a queue's
 * name through a configured pattern (queues.dead_letter_topic
 * "{name}.DLQ", queues.retry_topic "{name}.retry.{n}"; architecture §5 and
 * §13): the one expander queue.c, queue_retry.c and the admin API's dead
 * letters share, so that all three name the same topic. Pure. */
#ifndef KBRIDGE_TOPIC_PATTERN_H
#define KBRIDGE_TOPIC_PATTERN_H

#include <stddef.h>

/* One placeholder ("{name}") and the text that replaces it. */
struct topic_pattern_fill {
    const char *placeholder;
    const char *value;
};

/* `prefix` followed by `pattern` with every occurrence of each fill's
 * placeholder replaced by its value (the first fill that matches at a
 * position wins; other text is copied). A new string the caller frees, or
 * NULL when out of memory. */
char *topic_pattern_expand(const char *prefix, const char *pattern,
                           const struct topic_pattern_fill *fills, size_t fill_count);

/* topic_pattern_expand with the one fill {name} = name, written into out:
 * 0, or -1 when it does not fit (out is then "") or memory runs out. */
int topic_pattern_name_into(const char *prefix, const char *pattern, const char *name, char *out,
                            size_t out_size);

#endif
