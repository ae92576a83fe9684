/* SPDX-License-Identifier: Apache-2.0 */
/* queue_retry.c -- delayed redelivery's levels and retry topic names
 * (queue_retry.h, architecture §13). */
#include "queue_retry.h"

#include "topic_pattern.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* prefix + pattern with the placeholders replaced; NULL out of memory. */
static char *queue_retry_topic_name(const char *prefix, const char *pattern, const char *name,
                                    size_t level, uint64_t delay_ms)
{
    char n[24], index[24], delay[24];
    snprintf(n, sizeof(n), "%zu", level + 1);
    snprintf(index, sizeof(index), "%zu", level);
    snprintf(delay, sizeof(delay), "%" PRIu64, delay_ms);
    const struct topic_pattern_fill fills[] = {
        {"{name}", name}, {"{n}", n}, {"{index}", index}, {"{delay}", delay}};
    return topic_pattern_expand(prefix, pattern, fills, sizeof(fills) / sizeof(fills[0]));
}

int queue_retry_plan_init(struct queue_retry_plan *plan, const char *prefix, const char *pattern,
                          const char *name, uint64_t initial_ms, double multiplier, uint64_t max_ms,
                          uint32_t max_deliveries)
{
    memset(plan, 0, sizeof(*plan));
    if (initial_ms == 0 || max_deliveries < 2)
        return 0;
    if (multiplier < 1.0)
        multiplier = 1.0;
    double delay = (double)initial_ms;
    size_t limit =
        max_deliveries - 1 < QUEUE_RETRY_LEVELS_MAX ? max_deliveries - 1 : QUEUE_RETRY_LEVELS_MAX;
    for (size_t level = 0; level < limit; level++) {
        uint64_t ms = delay >= (double)max_ms ? max_ms : (uint64_t)delay;
        plan->delay_ms[level] = ms;
        plan->topics[level] = queue_retry_topic_name(prefix, pattern, name, level, ms);
        if (!plan->topics[level]) {
            queue_retry_plan_clear(plan);
            return -1;
        }
        plan->level_count = level + 1;
        if (ms >= max_ms || multiplier == 1.0)
            break;
        delay *= multiplier;
    }
    return 0;
}

void queue_retry_plan_clear(struct queue_retry_plan *plan)
{
    for (size_t i = 0; i < plan->level_count; i++)
        free(plan->topics[i]);
    memset(plan, 0, sizeof(*plan));
}

size_t queue_retry_level(const struct queue_retry_plan *plan, uint32_t delivery_count)
{
    if (delivery_count == 0)
        return 0;
    return delivery_count - 1 < plan->level_count ? delivery_count - 1 : plan->level_count - 1;
}

bool queue_retry_is_topic(const struct queue_retry_plan *plan, const char *topic)
{
    for (size_t i = 0; i < plan->level_count; i++)
        if (strcmp(plan->topics[i], topic) == 0)
            return true;
    return false;
}

int queue_retry_parse_decimal(const void *value, size_t len, uint64_t *out)
{
    const char *text = value;
    uint64_t result = 0;
    if (!value || len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        uint64_t digit = (uint64_t)(text[i] - '0');
        if (result > (UINT64_MAX - digit) / 10)
            return -1;
        result = result * 10 + digit;
    }
    *out = result;
    return 0;
}
