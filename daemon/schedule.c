/* SPDX-License-Identifier: Apache-2.0 */
/* schedule.c -- scheduled delivery's pure parts (schedule.h): delay and due
 * time parsing, the delay topic's name, the heap of held records by due
 * time and a partition's window of offsets not yet forwarded. Unit-tested
 * by tests/unit/check_schedule.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "schedule.h"

int schedule_parse_integer(const char *text, size_t len, int64_t *value)
{
    size_t i = 0;
    bool negative = false;
    if (len > 0 && (text[0] == '-' || text[0] == '+')) {
        negative = text[0] == '-';
        i = 1;
    }
    if (i == len || len - i > 19)
        return -1;
    uint64_t n = 0;
    for (; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        n = n * 10 + (uint64_t)(text[i] - '0');
    }
    if (n > (uint64_t)INT64_MAX)
        return -1;
    *value = negative ? -(int64_t)n : (int64_t)n;
    return 0;
}

uint64_t schedule_due_after(int64_t delay_ms, uint64_t now_ms)
{
    if (delay_ms <= 0)
        return 0;
    /* at most INT64_MAX: kbridge-deliver-at must read back as a signed 64-bit number */
    return now_ms >= (uint64_t)INT64_MAX - (uint64_t)delay_ms ? (uint64_t)INT64_MAX
                                                              : now_ms + (uint64_t)delay_ms;
}

uint64_t schedule_due_at(int64_t at_ms, uint64_t now_ms)
{
    return at_ms <= 0 || (uint64_t)at_ms <= now_ms ? 0 : (uint64_t)at_ms;
}

int schedule_topic(const struct config *config, char *out, size_t size)
{
    int n =
        snprintf(out, size, "%s%s", config->kafka.topic_prefix ? config->kafka.topic_prefix : "",
                 config->scheduler.topic);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* ---- heap ---- */

static bool schedule_before(const struct schedule_entry *a, const struct schedule_entry *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void schedule_sift_up(struct schedule_heap *heap, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!schedule_before(&heap->entries[i], &heap->entries[parent]))
            break;
        struct schedule_entry t = heap->entries[i];
        heap->entries[i] = heap->entries[parent];
        heap->entries[parent] = t;
        i = parent;
    }
}

static void schedule_sift_down(struct schedule_heap *heap, size_t i)
{
    for (;;) {
        size_t least = i, left = 2 * i + 1, right = 2 * i + 2;
        if (left < heap->count && schedule_before(&heap->entries[left], &heap->entries[least]))
            least = left;
        if (right < heap->count && schedule_before(&heap->entries[right], &heap->entries[least]))
            least = right;
        if (least == i)
            return;
        struct schedule_entry t = heap->entries[i];
        heap->entries[i] = heap->entries[least];
        heap->entries[least] = t;
        i = least;
    }
}

int schedule_heap_push(struct schedule_heap *heap, uint64_t due, void *item)
{
    if (heap->count == heap->cap) {
        size_t cap = heap->cap ? heap->cap * 2 : 64;
        struct schedule_entry *entries = realloc(heap->entries, cap * sizeof(*entries));
        if (!entries)
            return -1;
        heap->entries = entries;
        heap->cap = cap;
    }
    heap->entries[heap->count] = (struct schedule_entry){due, heap->next_seq++, item};
    schedule_sift_up(heap, heap->count++);
    return 0;
}

const struct schedule_entry *schedule_heap_peek(const struct schedule_heap *heap)
{
    return heap->count ? &heap->entries[0] : NULL;
}

void *schedule_heap_pop(struct schedule_heap *heap)
{
    if (!heap->count)
        return NULL;
    void *item = heap->entries[0].item;
    heap->entries[0] = heap->entries[--heap->count];
    schedule_sift_down(heap, 0);
    return item;
}

size_t schedule_heap_remove_if(struct schedule_heap *heap, bool (*drop)(void *item, void *arg),
                               void *arg)
{
    size_t kept = 0;
    for (size_t i = 0; i < heap->count; i++)
        if (!drop(heap->entries[i].item, arg))
            heap->entries[kept++] = heap->entries[i];
    size_t removed = heap->count - kept;
    heap->count = kept;
    for (size_t i = kept / 2 + 1; i-- > 0;) /* heapify again */
        schedule_sift_down(heap, i);
    return removed;
}

void schedule_heap_free(struct schedule_heap *heap)
{
    free(heap->entries);
    *heap = (struct schedule_heap){0};
}

/* ---- window ---- */

int schedule_window_add(struct schedule_window *window, int64_t offset)
{
    if (window->count == window->cap) {
        size_t cap = window->cap ? window->cap * 2 : 16;
        int64_t *offsets = malloc(cap * sizeof(*offsets));
        bool *done = malloc(cap * sizeof(*done));
        if (!offsets || !done) {
            free(offsets);
            free(done);
            return -1;
        }
        for (size_t i = 0; i < window->count; i++) {
            size_t from = (window->head + i) % window->cap;
            offsets[i] = window->offsets[from];
            done[i] = window->done[from];
        }
        free(window->offsets);
        free(window->done);
        window->offsets = offsets;
        window->done = done;
        window->head = 0;
        window->cap = cap;
    }
    size_t at = (window->head + window->count) % window->cap;
    window->offsets[at] = offset;
    window->done[at] = false;
    window->count++;
    window->next = offset + 1;
    return 0;
}

bool schedule_window_done(struct schedule_window *window, int64_t offset)
{
    /* binary search over the ring, ascending from head */
    size_t lo = 0, hi = window->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t at = window->offsets[(window->head + mid) % window->cap];
        if (at < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == window->count || window->offsets[(window->head + lo) % window->cap] != offset)
        return false;
    window->done[(window->head + lo) % window->cap] = true;
    while (window->count && window->done[window->head]) {
        window->head = (window->head + 1) % window->cap;
        window->count--;
    }
    return true;
}

int64_t schedule_window_low(const struct schedule_window *window)
{
    if (window->count)
        return window->offsets[window->head];
    return window->next ? window->next : -1; /* next 0: nothing added */
}

void schedule_window_reset(struct schedule_window *window)
{
    window->head = window->count = 0;
    window->next = 0;
}

void schedule_window_free(struct schedule_window *window)
{
    free(window->offsets);
    free(window->done);
    *window = (struct schedule_window){0};
}
