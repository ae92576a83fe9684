/* SPDX-License-Identifier: Apache-2.0 */
/* bench_common.c -- what every kbridge-bench protocol shares: the payload
 * format, the tracker that finds lost, duplicated and out-of-order messages
 * and keeps latency samples, TCP connect, pacing and error formatting. */
#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_payload_format(char *buf, size_t size, const struct bench_payload *payload)
{
    int n = snprintf(buf, size, "KB1 %08" PRIx32 " %010" PRIu64 " %05d %020" PRId64 " ",
                     payload->tag, payload->seq, payload->key, payload->sent_ns);
    size_t used = n > 0 && (size_t)n < size ? (size_t)n : size;
    memset(buf + used, 'x', size - used);
}

int bench_payload_parse(const char *body, size_t length, struct bench_payload *payload)
{
    char head[BENCH_PAYLOAD_MIN + 1];
    if (length < BENCH_PAYLOAD_MIN || memcmp(body, "KB1 ", 4) != 0)
        return -1;
    memcpy(head, body, BENCH_PAYLOAD_MIN);
    head[BENCH_PAYLOAD_MIN] = '\0';
    uint32_t tag;
    uint64_t seq;
    int key;
    int64_t sent_ns;
    if (sscanf(head, "KB1 %8" SCNx32 " %10" SCNu64 " %5d %20" SCNd64, &tag, &seq, &key, &sent_ns) !=
        4)
        return -1;
    payload->tag = tag;
    payload->seq = seq;
    payload->key = key;
    payload->sent_ns = sent_ns;
    return 0;
}

void bench_key_name(char *buf, size_t buf_size, int key) { snprintf(buf, buf_size, "k%d", key); }

void bench_message_format(const struct bench_options *options, uint32_t tag, uint64_t seq,
                          char *body, char *key, size_t key_size)
{
    struct bench_payload payload = {.tag = tag,
                                    .seq = seq,
                                    .key = (int)(seq % (uint64_t)options->keys),
                                    .sent_ns = bench_now_ns()};
    bench_payload_format(body, options->size, &payload);
    bench_key_name(key, key_size, payload.key);
}

int bench_tracker_init(struct bench_tracker *tracker, uint32_t tag, uint64_t expected, int keys)
{
    memset(tracker, 0, sizeof(*tracker));
    tracker->tag = tag;
    tracker->expected = expected;
    tracker->keys = keys > 0 ? keys : 1;
    tracker->seen = calloc(expected ? expected : 1, 1);
    tracker->last_seq = malloc(sizeof(int64_t) * (size_t)tracker->keys);
    tracker->latency_capacity = expected ? expected : 1;
    tracker->latency_us = malloc(sizeof(uint32_t) * tracker->latency_capacity);
    if (!tracker->seen || !tracker->last_seq || !tracker->latency_us) {
        bench_tracker_free(tracker);
        return -1;
    }
    for (int i = 0; i < tracker->keys; i++)
        tracker->last_seq[i] = -1;
    return 0;
}

void bench_tracker_free(struct bench_tracker *tracker)
{
    free(tracker->seen);
    free(tracker->last_seq);
    free(tracker->latency_us);
    tracker->seen = NULL;
    tracker->last_seq = NULL;
    tracker->latency_us = NULL;
}

void bench_tracker_latency(struct bench_tracker *tracker, int64_t latency_ns)
{
    if (tracker->latency_count == tracker->latency_capacity) {
        size_t capacity = tracker->latency_capacity * 2;
        uint32_t *grown = realloc(tracker->latency_us, sizeof(uint32_t) * capacity);
        if (!grown)
            return; /* the sample is dropped; counts are unaffected */
        tracker->latency_us = grown;
        tracker->latency_capacity = capacity;
    }
    int64_t us = latency_ns / 1000;
    tracker->latency_us[tracker->latency_count++] =
        us < 0 ? 0 : (us > UINT32_MAX ? UINT32_MAX : (uint32_t)us);
}

void bench_tracker_record(struct bench_tracker *tracker, const char *body, size_t length,
                          int redelivered, int64_t now_ns)
{
    struct bench_payload payload;
    if (bench_payload_parse(body, length, &payload) != 0 || payload.tag != tracker->tag ||
        payload.seq >= tracker->expected || payload.key < 0 || payload.key >= tracker->keys) {
        tracker->foreign++;
        return;
    }
    if (tracker->received == 0)
        tracker->first_ns = now_ns;
    tracker->last_ns = now_ns;
    tracker->received++;
    if (tracker->seen[payload.seq]) {
        tracker->duplicated++;
        if (redelivered)
            tracker->redelivered++;
        if (tracker->seen[payload.seq] < 255)
            tracker->seen[payload.seq]++;
        return;
    }
    tracker->seen[payload.seq] = 1;
    if ((int64_t)payload.seq < tracker->last_seq[payload.key])
        tracker->out_of_order++;
    else
        tracker->last_seq[payload.key] = (int64_t)payload.seq;
    bench_tracker_latency(tracker, now_ns - payload.sent_ns);
    __atomic_add_fetch(&tracker->unique, 1, __ATOMIC_RELEASE);
}

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

double bench_tracker_percentile_ms(struct bench_tracker *tracker, double p)
{
    if (tracker->latency_count == 0)
        return 0.0;
    qsort(tracker->latency_us, tracker->latency_count, sizeof(uint32_t), compare_u32);
    size_t index = (size_t)(p / 100.0 * (double)tracker->latency_count);
    if (index >= tracker->latency_count)
        index = tracker->latency_count - 1;
    return tracker->latency_us[index] / 1000.0;
}

int bench_fail(struct bench_session *session, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(session->error, sizeof(session->error), format, args);
    va_end(args);
    return -1;
}

int bench_tcp_connect(const char *host, int port, char *error, size_t error_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *found = NULL;
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    int rc = getaddrinfo(host, service, &hints, &found);
    if (rc != 0) {
        snprintf(error, error_size, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    int saved = 0;
    for (struct addrinfo *ai = found; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(found);
    if (fd < 0) {
        snprintf(error, error_size, "cannot connect to %s:%d: %s", host, port, strerror(saved));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

void bench_pace(int64_t start_ns, uint64_t index, double rate)
{
    if (rate <= 0)
        return;
    int64_t due = start_ns + (int64_t)((double)index * 1e9 / rate);
    int64_t now = bench_now_ns();
    if (due <= now)
        return;
    struct timespec ts = {.tv_sec = due / 1000000000, .tv_nsec = due % 1000000000};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}
