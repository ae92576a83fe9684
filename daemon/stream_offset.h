/* SPDX-License-Identifier: Apache-2.0 */
/* stream_offset.h -- where a replaying subscription starts (architecture
 * §13 "Replay"): RabbitMQ's x-stream-offset spellings, parsed once per
 * subscription. Pure: no I/O, no allocation. */
#ifndef KBRIDGE_STREAM_OFFSET_H
#define KBRIDGE_STREAM_OFFSET_H

#include <stddef.h>
#include <stdint.h>

enum stream_offset_kind {
    STREAM_OFFSET_NEXT,      /* what is published from now on (a topic's default) */
    STREAM_OFFSET_FIRST,     /* from the first record Kafka still has */
    STREAM_OFFSET_LAST,      /* from the last record of each partition */
    STREAM_OFFSET_OFFSET,    /* from offset `value` of each partition */
    STREAM_OFFSET_TIMESTAMP, /* from the first record at or after `value` (epoch ms) */
};

struct stream_offset {
    enum stream_offset_kind kind;
    int64_t value; /* the offset, or the time in epoch milliseconds */
};

/* Parse a spelling: `first`, `last`, `next`, `offset=N` or a bare N (an
 * offset), `timestamp=SECONDS` (epoch seconds), or an interval back from
 * `now_ms` (`30s`, `15m`, `2h`, `1D`, `1W`, `1M`, `1Y`: seconds, minutes,
 * hours, days, weeks, months of 30 days, years of 365 days, as RabbitMQ
 * streams spell them). 0, or -1 with the reason in err. */
int stream_offset_parse(const char *text, int64_t now_ms, struct stream_offset *out, char *err,
                        size_t err_size);

/* Where a partition holding [start, end) is read from for `spec` (not for
 * STREAM_OFFSET_TIMESTAMP, which reads from `start` and skips what is
 * older): an offset in [start, end]. */
int64_t stream_offset_position(const struct stream_offset *spec, int64_t start, int64_t end);

#endif
