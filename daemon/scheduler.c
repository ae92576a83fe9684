/* SPDX-License-Identifier: Apache-2.0 */
/* scheduler.c -- scheduled delivery's Kafka side (scheduler.h, architecture
 * §13): the delay topic's consumer group, the held records (a min-heap by
 * due time, schedule.h), one libevent timer for the earliest, the forwards
 * through the node's producer and, per partition, the window of offsets not
 * yet forwarded whose lowest is stored for commit.
 *
 * Life of a record: scheduler_on_record tracks its offset in its
 * partition's window and pushes it on the heap (a record without a valid
 * kbridge-deliver-at / -to is logged, counted and passed over);
 * scheduler_on_timer pops every due one and scheduler_forward produces it;
 * scheduler_on_forwarded either marks it done in the window (storing the
 * new low offset) or, on an error, pushes it back due after a back-off.
 * A revoked partition's held records are dropped (its next owner reads them
 * again from the committed offset); a forward under way for it finishes and
 * is forgotten. */
#include "scheduler.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "schedule.h"

#define SCHEDULER_TOPIC_MAX 256
/* A failed forward is tried again after 100 ms, doubling up to 30 s. */
#define SCHEDULER_RETRY_FIRST_MS 100
#define SCHEDULER_RETRY_MAX_MS 30000
/* Forwards per timer run: the rest of what is due goes on the next loop
 * turn, so a backlog (after a restart) does not hold the loop. */
#define SCHEDULER_FORWARD_BUDGET 1024
/* The longest the timer is armed for at once (a due time years ahead). */
#define SCHEDULER_TIMER_MAX_MS (24ull * 3600 * 1000)
/* The delay topic's lookup, again after a second while Kafka cannot answer. */
#define SCHEDULER_LOOKUP_RETRY_MS 1000

struct scheduler_partition {
    bool assigned;
    bool paused;
    uint64_t generation; /* raised on every assignment and revocation */
    struct schedule_window window;
};

struct scheduler_held {
    struct scheduler *scheduler;
    struct kafka_record *record;
    int32_t partition;
    uint64_t generation; /* its partition's when fetched */
    uint64_t due;
    uint32_t attempts;
    char deliver_to[SCHEDULER_TOPIC_MAX];
    bool in_flight;
    struct scheduler_held *next, *prev; /* in scheduler->in_flight while produced */
};

struct scheduler {
    struct event_base *base;
    struct kafka *kafka;
    char topic[SCHEDULER_TOPIC_MAX];
    char *group;
    uint32_t max_held;
    uint32_t partitions_to_create;
    struct kafka_lookup *lookup;
    struct event *lookup_retry;
    uint32_t lookup_failures; /* in a row: logged at the first and every minute */
    struct kafka_consumer *consumer;
    struct scheduler_partition *partitions; /* by partition number */
    int32_t partition_cap;
    struct schedule_heap heap;
    struct event *timer;
    uint64_t timer_due; /* what the timer is armed for; 0: not armed */
    struct scheduler_held *in_flight;
    size_t held; /* on the heap or being forwarded */
    bool paused;
    uint64_t *forwarded;      /* kbridge_scheduled_forwarded_total */
    uint64_t *forward_errors; /* kbridge_scheduled_forward_errors_total */
    uint64_t *invalid;        /* kbridge_scheduled_invalid_total */
};

static void scheduler_held_free(struct scheduler_held *held)
{
    kafka_record_free(held->record);
    free(held);
}

static struct scheduler_partition *scheduler_partition(struct scheduler *scheduler,
                                                       int32_t partition, bool create)
{
    if (partition < 0)
        return NULL;
    if (partition >= scheduler->partition_cap) {
        if (!create)
            return NULL;
        int32_t cap = scheduler->partition_cap ? scheduler->partition_cap : 8;
        while (cap <= partition)
            cap *= 2;
        struct scheduler_partition *partitions =
            realloc(scheduler->partitions, (size_t)cap * sizeof(*partitions));
        if (!partitions)
            return NULL;
        memset(partitions + scheduler->partition_cap, 0,
               (size_t)(cap - scheduler->partition_cap) * sizeof(*partitions));
        scheduler->partitions = partitions;
        scheduler->partition_cap = cap;
    }
    return &scheduler->partitions[partition];
}

/* ---- flow: pause at max_held, resume at half ---- */

static void scheduler_pause_partition(struct scheduler *scheduler, int32_t number, bool pause)
{
    struct scheduler_partition *p = &scheduler->partitions[number];
    if (!p->assigned || p->paused == pause)
        return;
    int rc = pause ? kafka_consumer_pause(scheduler->consumer, scheduler->topic, number)
                   : kafka_consumer_resume(scheduler->consumer, scheduler->topic, number,
                                           p->window.next ? p->window.next : -1);
    if (rc != KAFKA_OK)
        log_warn("scheduler", "%s [%d]: %s failed: %s", scheduler->topic, number,
                 pause ? "pause" : "resume", kafka_error_name(rc));
    p->paused = pause;
}

static void scheduler_update_flow(struct scheduler *scheduler)
{
    bool pause = scheduler->paused ? scheduler->held > scheduler->max_held / 2
                                   : scheduler->held >= scheduler->max_held;
    if (pause == scheduler->paused)
        return;
    scheduler->paused = pause;
    /* a pause is worth knowing (scheduler.max_held reached); at the limit
     * they alternate quickly, so the resumes are debug lines */
    log_write(pause ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, "scheduler", "%s: %zu record(s) held, %s",
              scheduler->topic, scheduler->held,
              pause ? "pausing fetching (scheduler.max_held)" : "resuming fetching");
    for (int32_t i = 0; i < scheduler->partition_cap; i++)
        scheduler_pause_partition(scheduler, i, pause);
}

/* ---- the timer ---- */

static void scheduler_arm(struct scheduler *scheduler)
{
    const struct schedule_entry *first = schedule_heap_peek(&scheduler->heap);
    if (!first) {
        if (scheduler->timer_due)
            evtimer_del(scheduler->timer);
        scheduler->timer_due = 0;
        return;
    }
    if (scheduler->timer_due && scheduler->timer_due <= first->due)
        return; /* armed for then or earlier; it re-arms when it runs */
    uint64_t now = clock_wall_ms();
    uint64_t wait = first->due > now ? first->due - now : 0;
    if (wait > SCHEDULER_TIMER_MAX_MS)
        wait = SCHEDULER_TIMER_MAX_MS; /* far ahead: look again then */
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)((wait % 1000) * 1000)};
    evtimer_add(scheduler->timer, &tv);
    scheduler->timer_due = first->due ? first->due : 1;
}

/* Hold a record whose forward failed again, due after the back-off of its
 * attempts (a full producer queue is not an attempt: the first back-off). */
static void scheduler_retry_later(struct scheduler_held *held)
{
    struct scheduler *scheduler = held->scheduler;
    uint64_t backoff = SCHEDULER_RETRY_FIRST_MS;
    for (uint32_t i = 1; i < held->attempts && backoff < SCHEDULER_RETRY_MAX_MS; i++)
        backoff *= 2;
    if (backoff > SCHEDULER_RETRY_MAX_MS)
        backoff = SCHEDULER_RETRY_MAX_MS;
    held->due = clock_wall_ms() + backoff;
    if (schedule_heap_push(&scheduler->heap, held->due, held) < 0) {
        /* out of memory: the record stays in Kafka; forget it here and let
         * the partition be read again by its next owner */
        log_error("scheduler", "%s [%d]: out of memory holding offset %lld again", scheduler->topic,
                  held->partition, (long long)held->record->offset);
        scheduler->held--;
        scheduler_held_free(held);
    }
}

static void scheduler_on_forwarded(void *opaque, int err, int32_t partition, int64_t offset)
{
    (void)partition;
    (void)offset;
    struct scheduler_held *held = opaque;
    struct scheduler *scheduler = held->scheduler;
    held->in_flight = false;
    if (held->prev)
        held->prev->next = held->next;
    else
        scheduler->in_flight = held->next;
    if (held->next)
        held->next->prev = held->prev;
    held->next = held->prev = NULL;
    struct scheduler_partition *p = scheduler_partition(scheduler, held->partition, false);
    bool current = p && p->assigned && p->generation == held->generation;
    if (err != KAFKA_OK) {
        (*scheduler->forward_errors)++;
        log_warn("scheduler", "%s [%d] offset %lld: forwarding to %s failed (attempt %u): %s%s",
                 scheduler->topic, held->record->partition, (long long)held->record->offset,
                 held->deliver_to, held->attempts, kafka_error_name(err),
                 current ? "; trying again" : "; the partition moved, its next owner will");
        if (current) {
            scheduler_retry_later(held);
            scheduler_arm(scheduler);
            return;
        }
    } else {
        (*scheduler->forwarded)++;
        if (current && schedule_window_done(&p->window, held->record->offset)) {
            int64_t low = schedule_window_low(&p->window);
            if (low >= 0)
                kafka_consumer_store_offset(scheduler->consumer, scheduler->topic, held->partition,
                                            low);
        }
    }
    scheduler->held--;
    scheduler_held_free(held);
    scheduler_update_flow(scheduler);
}

/* Produce a due record to its destination (its headers but the schedule's). */
static void scheduler_forward(struct scheduler *scheduler, struct scheduler_held *held)
{
    const struct kafka_record *record = held->record;
    size_t count = kafka_record_header_count(record);
    struct kafka_header *headers = calloc(count ? count : 1, sizeof(*headers));
    int rc = KAFKA_OK;
    if (!headers) {
        rc = -1;
    } else {
        size_t kept = 0;
        for (size_t i = 0; i < count; i++) {
            const char *name;
            const void *value;
            size_t value_len;
            if (kafka_record_header(record, i, &name, &value, &value_len) < 0 ||
                strcmp(name, RECORD_DELIVER_AT) == 0 || strcmp(name, RECORD_DELIVER_TO) == 0)
                continue;
            headers[kept++] = (struct kafka_header){name, value, value_len};
        }
        held->attempts++;
        rc = kafka_produce(scheduler->kafka, held->deliver_to, -1, 0, record->key, record->key_len,
                           record->value, record->value_len, headers, kept, scheduler_on_forwarded,
                           held);
        free(headers);
    }
    if (rc == KAFKA_OK) {
        held->in_flight = true;
        held->next = scheduler->in_flight;
        if (held->next)
            held->next->prev = held;
        scheduler->in_flight = held;
        return;
    }
    if (rc == KAFKA_ERR_QUEUE_FULL) {
        held->attempts--; /* not Kafka's refusal: try again soon, without a longer back-off */
    } else {
        (*scheduler->forward_errors)++;
        log_warn("scheduler", "%s [%d] offset %lld: forwarding to %s refused (attempt %u): %s",
                 scheduler->topic, record->partition, (long long)record->offset, held->deliver_to,
                 held->attempts, rc < 0 ? "out of memory" : kafka_error_name(rc));
    }
    scheduler_retry_later(held);
}

static void scheduler_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct scheduler *scheduler = arg;
    scheduler->timer_due = 0;
    uint64_t now = clock_wall_ms();
    /* Forward what is due now, at most a budget; a record pushed back for a
     * retry is due later than now, so this ends. */
    size_t forwarded = 0;
    for (const struct schedule_entry *first = schedule_heap_peek(&scheduler->heap);
         first && first->due <= now && forwarded < SCHEDULER_FORWARD_BUDGET;
         first = schedule_heap_peek(&scheduler->heap), forwarded++)
        scheduler_forward(scheduler, schedule_heap_pop(&scheduler->heap));
    scheduler_arm(scheduler); /* at once when more is due */
    scheduler_update_flow(scheduler);
}

/* ---- the consumer ---- */

/* The record's decimal header `name` as a number; -1 when absent or not one. */
static int scheduler_header_number(const struct kafka_record *record, const char *name,
                                   int64_t *value)
{
    size_t len;
    const char *text = record_header_find(record, name, &len);
    return text ? schedule_parse_integer(text, len, value) : -1;
}

static void scheduler_on_record(void *opaque, struct kafka_record *record)
{
    struct scheduler *scheduler = opaque;
    struct scheduler_partition *p = scheduler_partition(scheduler, record->partition, false);
    if (!p || !p->assigned) {
        kafka_record_free(record);
        return;
    }
    if (schedule_window_add(&p->window, record->offset) < 0) {
        log_error("scheduler", "%s [%d]: out of memory tracking offset %lld", scheduler->topic,
                  record->partition, (long long)record->offset);
        kafka_record_free(record);
        return; /* not stored past it: read again by the partition's next owner */
    }
    int64_t due = 0;
    size_t to_len = 0;
    const char *to = record_header_find(record, RECORD_DELIVER_TO, &to_len);
    if (scheduler_header_number(record, RECORD_DELIVER_AT, &due) < 0 || due < 0 || !to ||
        to_len == 0 || to_len >= SCHEDULER_TOPIC_MAX || memchr(to, '\0', to_len)) {
        (*scheduler->invalid)++;
        log_warn("scheduler",
                 "%s [%d] offset %lld: no valid %s and %s headers: passed over, not forwarded",
                 scheduler->topic, record->partition, (long long)record->offset, RECORD_DELIVER_AT,
                 RECORD_DELIVER_TO);
        schedule_window_done(&p->window, record->offset);
        kafka_consumer_store_offset(scheduler->consumer, scheduler->topic, record->partition,
                                    schedule_window_low(&p->window));
        kafka_record_free(record);
        return;
    }
    struct scheduler_held *held = calloc(1, sizeof(*held));
    if (!held || schedule_heap_push(&scheduler->heap, (uint64_t)due, held) < 0) {
        log_error("scheduler", "%s [%d]: out of memory holding offset %lld", scheduler->topic,
                  record->partition, (long long)record->offset);
        free(held);
        kafka_record_free(record);
        return; /* its offset stays pending: not committed past it */
    }
    held->scheduler = scheduler;
    held->record = record;
    held->partition = record->partition;
    held->generation = p->generation;
    held->due = (uint64_t)due;
    memcpy(held->deliver_to, to, to_len);
    held->deliver_to[to_len] = '\0';
    scheduler->held++;
    scheduler_arm(scheduler);
    scheduler_update_flow(scheduler);
}

static void scheduler_on_assigned(void *opaque, const struct kafka_partition *parts, size_t count)
{
    struct scheduler *scheduler = opaque;
    for (size_t i = 0; i < count; i++) {
        struct scheduler_partition *p = scheduler_partition(scheduler, parts[i].partition, true);
        if (!p) {
            log_error("scheduler", "%s [%d]: out of memory tracking the partition",
                      scheduler->topic, parts[i].partition);
            continue;
        }
        p->assigned = true;
        p->paused = false;
        p->generation++;
        schedule_window_reset(&p->window);
        if (scheduler->paused)
            scheduler_pause_partition(scheduler, parts[i].partition, true);
    }
    if (count)
        log_info("scheduler", "%s: %zu partition(s) assigned", scheduler->topic, count);
}

static bool scheduler_held_revoked(void *item, void *arg)
{
    struct scheduler_held *held = item;
    struct scheduler *scheduler = arg;
    struct scheduler_partition *p = scheduler_partition(scheduler, held->partition, false);
    if (p && p->assigned && p->generation == held->generation)
        return false;
    scheduler->held--;
    scheduler_held_free(held);
    return true;
}

static void scheduler_on_revoked(void *opaque, const struct kafka_partition *parts, size_t count)
{
    struct scheduler *scheduler = opaque;
    for (size_t i = 0; i < count; i++) {
        struct scheduler_partition *p = scheduler_partition(scheduler, parts[i].partition, false);
        if (!p)
            continue;
        p->assigned = false;
        p->paused = false;
        p->generation++;
        schedule_window_reset(&p->window);
    }
    size_t dropped = schedule_heap_remove_if(&scheduler->heap, scheduler_held_revoked, scheduler);
    if (count)
        log_info("scheduler",
                 "%s: %zu partition(s) revoked, %zu held record(s) left to their "
                 "next owner",
                 scheduler->topic, count, dropped);
    scheduler_arm(scheduler);
    scheduler_update_flow(scheduler);
}

/* The Kafka layer logs every consumer error already; only a refusal of the
 * group or topic (nothing will be forwarded until an operator acts) is
 * worth an error line of ours. */
static void scheduler_on_error(void *opaque, int err, const char *reason)
{
    struct scheduler *scheduler = opaque;
    if (kafka_error_classify(err) == KAFKA_CLASS_AUTHORIZATION)
        log_error("scheduler",
                  "%s: Kafka refused group %s or the topic: %s; scheduled messages are not "
                  "forwarded by this node",
                  scheduler->topic, scheduler->group, reason);
}

static const struct kafka_consumer_handlers scheduler_handlers = {
    .record = scheduler_on_record,
    .assigned = scheduler_on_assigned,
    .revoked = scheduler_on_revoked,
    .error = scheduler_on_error,
};

/* ---- start: the topic, then the group ---- */

static void scheduler_start_lookup(struct scheduler *scheduler);

static void scheduler_on_lookup_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    scheduler_start_lookup(arg);
}

static void scheduler_retry_lookup(struct scheduler *scheduler)
{
    struct timeval tv = {SCHEDULER_LOOKUP_RETRY_MS / 1000,
                         (SCHEDULER_LOOKUP_RETRY_MS % 1000) * 1000};
    evtimer_add(scheduler->lookup_retry, &tv);
}

static void scheduler_on_lookup(void *opaque, int err, const struct kafka_topic_info *topics,
                                size_t count)
{
    struct scheduler *scheduler = opaque;
    scheduler->lookup = NULL;
    if (err != KAFKA_OK || count == 0) {
        if (scheduler->lookup_failures++ % 60 == 0)
            log_warn("scheduler",
                     "%s: cannot look the delay topic up or create it (%s); trying again every "
                     "second",
                     scheduler->topic, err ? kafka_error_name(err) : "not found");
        scheduler_retry_lookup(scheduler);
        return;
    }
    scheduler->lookup_failures = 0;
    char reason[256];
    scheduler->consumer =
        kafka_consumer_new(scheduler->kafka, scheduler->group, "earliest", &scheduler_handlers,
                           scheduler, reason, sizeof(reason));
    if (!scheduler->consumer) {
        log_error("scheduler", "%s: cannot create the consumer of group %s: %s; trying again",
                  scheduler->topic, scheduler->group, reason);
        scheduler_retry_lookup(scheduler);
        return;
    }
    const char *topic = scheduler->topic;
    int rc = kafka_consumer_subscribe(scheduler->consumer, &topic, 1);
    if (rc != KAFKA_OK) {
        log_error("scheduler", "%s: cannot subscribe group %s: %s; trying again", scheduler->topic,
                  scheduler->group, kafka_error_name(rc));
        kafka_consumer_close(scheduler->consumer);
        scheduler->consumer = NULL;
        scheduler_retry_lookup(scheduler);
        return;
    }
    log_info("scheduler", "%s: %d partition(s), joining group %s", scheduler->topic,
             topics[0].partition_count, scheduler->group);
}

static void scheduler_start_lookup(struct scheduler *scheduler)
{
    scheduler->lookup = kafka_lookup_end_offsets_or_create(scheduler->kafka, scheduler->topic,
                                                           (int)scheduler->partitions_to_create,
                                                           scheduler_on_lookup, scheduler);
    if (!scheduler->lookup)
        scheduler_retry_lookup(scheduler);
}

static double scheduler_held_gauge(void *arg) { return (double)scheduler_held(arg); }

struct scheduler *scheduler_new(struct event_base *base, const struct config *config,
                                struct kafka *kafka, struct metrics *metrics, char *err,
                                size_t err_size)
{
    struct scheduler *scheduler = calloc(1, sizeof(*scheduler));
    if (!scheduler) {
        snprintf(err, err_size, "scheduler: out of memory");
        return NULL;
    }
    scheduler->base = base;
    scheduler->kafka = kafka;
    scheduler->max_held = config->scheduler.max_held ? config->scheduler.max_held : 1;
    scheduler->partitions_to_create = config->scheduler.partitions;
    if (schedule_topic(config, scheduler->topic, sizeof(scheduler->topic)) < 0) {
        snprintf(err, err_size, "scheduler: the delay topic name is too long");
        free(scheduler);
        return NULL;
    }
    scheduler->group = strdup(config->scheduler.group);
    scheduler->timer = evtimer_new(base, scheduler_on_timer, scheduler);
    scheduler->lookup_retry = evtimer_new(base, scheduler_on_lookup_retry, scheduler);
    scheduler->forwarded = metrics_counter(
        metrics, "kbridge_scheduled_forwarded_total",
        "Scheduled messages this node's scheduler forwarded from the delay topic to their "
        "destination (Kafka confirmed the forward).",
        NULL);
    scheduler->forward_errors = metrics_counter(
        metrics, "kbridge_scheduled_forward_errors_total",
        "Forwards of scheduled messages that Kafka refused or failed; each is tried again after "
        "a back-off.",
        NULL);
    scheduler->invalid = metrics_counter(
        metrics, "kbridge_scheduled_invalid_total",
        "Records of the delay topic without a valid kbridge-deliver-at / kbridge-deliver-to "
        "(not written by kbridge): passed over, not forwarded.",
        NULL);
    if (!scheduler->group || !scheduler->timer || !scheduler->lookup_retry ||
        !scheduler->forwarded || !scheduler->forward_errors || !scheduler->invalid ||
        metrics_gauge_callback(metrics, "kbridge_scheduled_held",
                               "Scheduled messages this node's scheduler holds in memory, "
                               "waiting for their time or being forwarded.",
                               NULL, scheduler_held_gauge, scheduler) < 0) {
        snprintf(err, err_size, "scheduler: out of memory");
        scheduler_free(scheduler);
        return NULL;
    }
    scheduler_start_lookup(scheduler);
    return scheduler;
}

size_t scheduler_held(const struct scheduler *scheduler) { return scheduler->held; }

void scheduler_free(struct scheduler *scheduler)
{
    if (!scheduler)
        return;
    if (scheduler->lookup)
        kafka_lookup_cancel(scheduler->lookup);
    if (scheduler->consumer)
        kafka_consumer_close(scheduler->consumer); /* commits the stored offsets */
    void *item;
    while ((item = schedule_heap_pop(&scheduler->heap)))
        scheduler_held_free(item);
    schedule_heap_free(&scheduler->heap);
    /* forwards still under way: kafka_free purges them without reports */
    while (scheduler->in_flight) {
        struct scheduler_held *next = scheduler->in_flight->next;
        scheduler_held_free(scheduler->in_flight);
        scheduler->in_flight = next;
    }
    for (int32_t i = 0; i < scheduler->partition_cap; i++)
        schedule_window_free(&scheduler->partitions[i].window);
    free(scheduler->partitions);
    if (scheduler->timer)
        event_free(scheduler->timer);
    if (scheduler->lookup_retry)
        event_free(scheduler->lookup_retry);
    free(scheduler->group);
    free(scheduler);
}
