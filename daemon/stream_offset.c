/* SPDX-License-Identifier: Apache-2.0 */
/* stream_offset.c -- RabbitMQ's x-stream-offset spellings (stream_offset.h,
 * architecture §13 "Replay").
 *
 * Owns nothing: parsing and one position rule. */
#include "stream_offset.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A non-negative decimal filling all of `text`; -1 when it is not one. */
static int stream_offset_number(const char *text, int64_t *out)
{
    if (!isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    char *end = NULL;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < 0)
        return -1;
    *out = (int64_t)value;
    return 0;
}

int stream_offset_parse(const char *text, int64_t now_ms, struct stream_offset *out, char *err,
                        size_t err_size)
{
    static const struct {
        const char *name;
        enum stream_offset_kind kind;
    } words[] = {
        {"first", STREAM_OFFSET_FIRST},
        {"last", STREAM_OFFSET_LAST},
        {"next", STREAM_OFFSET_NEXT},
    };
    *out = (struct stream_offset){STREAM_OFFSET_NEXT, 0};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcmp(text, words[i].name) == 0) {
            out->kind = words[i].kind;
            return 0;
        }
    int64_t value;
    if (strncmp(text, "offset=", 7) == 0 || stream_offset_number(text, &value) == 0) {
        if (strncmp(text, "offset=", 7) == 0 && stream_offset_number(text + 7, &value) < 0) {
            snprintf(err, err_size, "'%s': offset= needs a non-negative number", text);
            return -1;
        }
        *out = (struct stream_offset){STREAM_OFFSET_OFFSET, value};
        return 0;
    }
    if (strncmp(text, "timestamp=", 10) == 0) {
        if (stream_offset_number(text + 10, &value) < 0 || value > INT64_MAX / 1000) {
            snprintf(err, err_size, "'%s': timestamp= needs epoch seconds", text);
            return -1;
        }
        *out = (struct stream_offset){STREAM_OFFSET_TIMESTAMP, value * 1000};
        return 0;
    }
    /* an interval back from now: digits and one unit */
    size_t len = strlen(text);
    static const struct {
        char unit;
        int64_t ms;
    } units[] = {
        {'s', 1000},
        {'m', 60 * 1000},
        {'h', 3600 * 1000},
        {'D', 86400 * 1000},
        {'W', 7 * 86400 * (int64_t)1000},
        {'M', 30 * 86400 * (int64_t)1000},
        {'Y', 365 * 86400 * (int64_t)1000},
    };
    if (len >= 2 && len < 24) {
        char digits[24];
        memcpy(digits, text, len - 1);
        digits[len - 1] = '\0';
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            if (text[len - 1] != units[i].unit || stream_offset_number(digits, &value) < 0)
                continue;
            if (value > INT64_MAX / units[i].ms) {
                snprintf(err, err_size, "'%s': interval too long", text);
                return -1;
            }
            int64_t back = value * units[i].ms;
            *out =
                (struct stream_offset){STREAM_OFFSET_TIMESTAMP, back >= now_ms ? 0 : now_ms - back};
            return 0;
        }
    }
    snprintf(err, err_size,
             "'%.64s' is not a stream offset: use first, last, next, offset=N, "
             "timestamp=SECONDS or an interval such as 30m, 2h, 1D",
             text);
    return -1;
}

int64_t stream_offset_position(const struct stream_offset *spec, int64_t start, int64_t end)
{
    switch (spec->kind) {
    case STREAM_OFFSET_FIRST: return start;
    case STREAM_OFFSET_LAST: return end > start ? end - 1 : end;
    case STREAM_OFFSET_OFFSET:
        return spec->value < start ? start : spec->value > end ? end : spec->value;
    case STREAM_OFFSET_TIMESTAMP: return start;
    case STREAM_OFFSET_NEXT:
    default: return end;
    }
}
