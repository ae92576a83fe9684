/* SPDX-License-Identifier: Apache-2.0 */
/* topic_pattern.c -- configured topic-name patterns expanded
 * (topic_pattern.h). */
#include "topic_pattern.h"

#include <stdlib.h>
#include <string.h>

/* The fill whose placeholder starts at p, or NULL. */
static const struct topic_pattern_fill *
topic_pattern_fill_at(const char *p, const struct topic_pattern_fill *fills, size_t fill_count)
{
    for (size_t f = 0; f < fill_count; f++)
        if (strncmp(p, fills[f].placeholder, strlen(fills[f].placeholder)) == 0)
            return &fills[f];
    return NULL;
}

/* Write the expansion into out (NULL: only measure); its length. */
static size_t topic_pattern_write(char *out, const char *prefix, const char *pattern,
                                  const struct topic_pattern_fill *fills, size_t fill_count)
{
    size_t at = strlen(prefix);
    if (out)
        memcpy(out, prefix, at);
    for (const char *p = pattern; *p;) {
        const struct topic_pattern_fill *fill = topic_pattern_fill_at(p, fills, fill_count);
        if (fill) {
            size_t len = strlen(fill->value);
            if (out)
                memcpy(out + at, fill->value, len);
            at += len;
            p += strlen(fill->placeholder);
        } else {
            if (out)
                out[at] = *p;
            at++;
            p++;
        }
    }
    if (out)
        out[at] = '\0';
    return at;
}

char *topic_pattern_expand(const char *prefix, const char *pattern,
                           const struct topic_pattern_fill *fills, size_t fill_count)
{
    char *out = malloc(topic_pattern_write(NULL, prefix, pattern, fills, fill_count) + 1);
    if (out)
        topic_pattern_write(out, prefix, pattern, fills, fill_count);
    return out;
}

int topic_pattern_name_into(const char *prefix, const char *pattern, const char *name, char *out,
                            size_t out_size)
{
    const struct topic_pattern_fill fill = {"{name}", name};
    if (out_size > 0)
        out[0] = '\0';
    if (topic_pattern_write(NULL, prefix, pattern, &fill, 1) >= out_size)
        return -1;
    topic_pattern_write(out, prefix, pattern, &fill, 1);
    return 0;
}
