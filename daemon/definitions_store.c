/* SPDX-License-Identifier: Apache-2.0 */
/* definitions_store.c -- the definitions topic's reader and writer and the
 * node's view (definitions_store.h, architecture §11).
 *
 * Start: look the topic up (kafka_lookup_end_offsets_or_create, one
 * partition) to learn its end offset E, then read partition 0 from the
 * beginning with a group-less consumer and write this node's start marker
 * (key "kbridge-node/NODE_ID"). Caught up once a record at offset >= E - 1
 * or the marker is applied, whichever comes first (E == 0: at once; the
 * marker covers a compacted end); then the owner's start-up hook
 * runs, and the store is ready when it says so. It follows the topic for
 * the node's life.
 *
 * Only partition 0 is used: a broker that auto-creates topics may have given
 * it more (logged once); every node writes and reads partition 0.
 *
 * Writes: every record goes to partition 0 through kafka_produce (the
 * node's idempotent producer). A write waits for its delivery reports, then
 * in the pending list (ordered by its last offset) until the reader has
 * applied that offset; the record handler applies, tells the watchers,
 * then completes the writes it has passed. */
#include "definitions_store.h"

#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"

#define DEFINITIONS_RETRY_MS 1000
#define DEFINITIONS_REASON_MAX 512
#define DEFINITIONS_MARKER_PREFIX "kbridge-node/" /* start markers: key prefix */

/* ---- pending writes in offset order ---------------------------------------- */

void definitions_pending_insert(struct definitions_pending **head, struct definitions_pending *item)
{
    struct definitions_pending **at = head;
    while (*at && (*at)->offset <= item->offset)
        at = &(*at)->next;
    item->next = *at;
    *at = item;
}

struct definitions_pending *definitions_pending_take(struct definitions_pending **head,
                                                     int64_t applied)
{
    struct definitions_pending *taken = NULL, **tail = &taken;
    while (*head && (*head)->offset <= applied) {
        struct definitions_pending *item = *head;
        *head = item->next;
        item->next = NULL;
        *tail = item;
        tail = &item->next;
    }
    return taken;
}

/* ---- the store -------------------------------------------------------------- */

struct definitions_watcher {
    struct definitions_watcher *next;
    definitions_watch_fn *fn;
    void *opaque;
};

struct definitions_write {
    struct definitions_pending pending; /* first: the pending list holds these */
    struct definitions_store *store;
    struct definitions_write *prev, *next; /* every write of the store, for free */
    size_t outstanding;                    /* delivery reports still to come */
    int err;                               /* first Kafka error, 0 none */
    bool waiting;                          /* in store->pending */
    definitions_write_fn *done;            /* NULL: cancelled or nobody asked */
    void *opaque;
};

struct definitions_store {
    struct event_base *base;
    struct config *const *config;
    struct kafka *kafka;
    struct definitions *view;
    char *topic;
    struct kafka_lookup *lookup;
    struct kafka_consumer *consumer;
    struct event *retry_timer;
    int64_t end_at_start; /* the topic's end offset when the reader started */
    int64_t applied;      /* offset of the last record applied, -1 none */
    bool caught_up;
    bool ready;
    bool warned_partitions;
    struct definitions_write *marker; /* this run's start marker, until applied */
    definitions_startup_fn *startup;
    void *startup_opaque;
    struct definitions_watcher *watchers;
    struct definitions_pending *pending; /* of struct definitions_write, by offset */
    struct definitions_write *writes;    /* all live writes */
    char reason[DEFINITIONS_REASON_MAX];
    uint64_t *records_applied;
    uint64_t *records_bad;
    uint64_t *writes_failed;
};

static void store_set_reason(struct definitions_store *store, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void store_set_reason(struct definitions_store *store, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(store->reason, sizeof(store->reason), format, args);
    va_end(args);
}

const struct definitions *definitions_store_view(const struct definitions_store *store)
{
    return store->view;
}

bool definitions_store_ready(const struct definitions_store *store) { return store->ready; }

const char *definitions_store_not_ready_reason(const struct definitions_store *store)
{
    return store->ready ? "" : store->reason;
}

/* ---- writes -------------------------------------------------------------------- */

static void write_unlink_free(struct definitions_write *write)
{
    struct definitions_store *store = write->store;
    if (write->prev)
        write->prev->next = write->next;
    else
        store->writes = write->next;
    if (write->next)
        write->next->prev = write->prev;
    free(write);
}

/* Tell the writer (unless cancelled) and free the write. */
static void write_complete(struct definitions_write *write, int err, const char *reason)
{
    definitions_write_fn *done = write->done;
    void *opaque = write->opaque;
    if (err)
        (*write->store->writes_failed)++;
    write_unlink_free(write);
    if (done)
        done(opaque, err, reason);
}

static void write_on_delivery(void *opaque, int err, int32_t partition, int64_t offset)
{
    struct definitions_write *write = opaque;
    struct definitions_store *store = write->store;
    if (err && !write->err)
        write->err = err;
    if (!err && offset > write->pending.offset)
        write->pending.offset = offset;
    if (--write->outstanding > 0)
        return;
    if (write->err) {
        char reason[DEFINITIONS_REASON_MAX];
        snprintf(reason, sizeof(reason), "writing to %s: %s", store->topic,
                 kafka_error_name(write->err));
        log_warn("definitions", "%s", reason);
        write_complete(write, write->err, reason);
    } else if (write->pending.offset <= store->applied) {
        write_complete(write, 0, "");
    } else {
        write->waiting = true;
        definitions_pending_insert(&store->pending, &write->pending);
    }
}

struct definitions_write *definitions_store_write(struct definitions_store *store,
                                                  const struct definitions_store_record *records,
                                                  size_t count, definitions_write_fn *done,
                                                  void *opaque, int *kafka_err)
{
    *kafka_err = 0;
    struct definitions_write *write = calloc(1, sizeof(*write));
    if (!write || count == 0) {
        free(write);
        *kafka_err = -1;
        return NULL;
    }
    write->store = store;
    write->done = done;
    write->opaque = opaque;
    write->pending.offset = -1;
    write->next = store->writes;
    if (store->writes)
        store->writes->prev = write;
    store->writes = write;
    for (size_t i = 0; i < count; i++) {
        const char *value = records[i].value;
        int rc =
            kafka_produce(store->kafka, store->topic, 0, 0, records[i].key, strlen(records[i].key),
                          value, value ? strlen(value) : 0, NULL, 0, write_on_delivery, write);
        if (rc == KAFKA_OK) {
            write->outstanding++;
            continue;
        }
        log_warn("definitions", "cannot write %s to %s: %s", records[i].key, store->topic,
                 kafka_error_name(rc));
        if (i == 0) {
            write_unlink_free(write);
            *kafka_err = rc;
            return NULL;
        }
        write->err = rc; /* the earlier records report it */
        break;
    }
    return write;
}

void definitions_store_write_cancel(struct definitions_write *write)
{
    if (write)
        write->done = NULL;
}

/* ---- watchers ------------------------------------------------------------------- */

int definitions_store_watch(struct definitions_store *store, definitions_watch_fn *fn, void *opaque)
{
    struct definitions_watcher *watcher = calloc(1, sizeof(*watcher));
    if (!watcher)
        return -1;
    watcher->fn = fn;
    watcher->opaque = opaque;
    struct definitions_watcher **at = &store->watchers; /* in the order they came */
    while (*at)
        at = &(*at)->next;
    *at = watcher;
    return 0;
}

void definitions_store_unwatch(struct definitions_store *store, definitions_watch_fn *fn,
                               void *opaque)
{
    for (struct definitions_watcher **at = &store->watchers; *at; at = &(*at)->next) {
        if ((*at)->fn == fn && (*at)->opaque == opaque) {
            struct definitions_watcher *gone = *at;
            *at = gone->next;
            free(gone);
            return;
        }
    }
}

static void store_notify(struct definitions_store *store, const struct kafka_record *record)
{
    if (!store->watchers)
        return;
    struct definitions_record_key key;
    if (definitions_record_key_parse(record->key, record->key_len, &key) < 0)
        return;
    struct definitions_change change = {
        .kind = key.kind,
        .removed = record->value == NULL,
        .vhost = key.vhost,
        .name = key.name,
        .destination_kind = key.destination_kind,
        .destination = key.destination,
        .routing_key = key.routing_key,
        .offset = record->offset,
    };
    for (struct definitions_watcher *w = store->watchers; w;) {
        struct definitions_watcher *next = w->next; /* a watcher may unwatch itself */
        w->fn(w->opaque, &change);
        w = next;
    }
    definitions_record_key_free(&key);
}

/* ---- the reader ------------------------------------------------------------------ */

static void store_become_ready(struct definitions_store *store)
{
    store->ready = true;
    store->reason[0] = '\0';
    log_info("definitions", "ready: %s read up to offset %lld", store->topic,
             (long long)store->applied);
}

static void store_caught_up(struct definitions_store *store)
{
    store->caught_up = true;
    log_info("definitions", "caught up with %s (%lld record(s) at start)", store->topic,
             (long long)store->end_at_start);
    if (!store->startup) {
        store_become_ready(store);
        return;
    }
    store_set_reason(store, "definitions: start-up work after reading %s", store->topic);
    store->startup(store->startup_opaque);
}

void definitions_store_set_startup(struct definitions_store *store, definitions_startup_fn *fn,
                                   void *opaque)
{
    store->startup = fn;
    store->startup_opaque = opaque;
}

void definitions_store_startup_done(struct definitions_store *store)
{
    if (!store->ready)
        store_become_ready(store);
}

static void store_on_record(void *opaque, struct kafka_record *record)
{
    struct definitions_store *store = opaque;
    char err[DEFINITIONS_REASON_MAX];
    int rc = -1;
    if (record->key && record->key_len >= strlen(DEFINITIONS_MARKER_PREFIX) &&
        memcmp(record->key, DEFINITIONS_MARKER_PREFIX, strlen(DEFINITIONS_MARKER_PREFIX)) == 0) {
        rc = 1; /* a node's start marker: nothing to apply */
    } else if (!record->key) {
        snprintf(err, sizeof(err), "a record without a key");
    } else {
        rc = definitions_record_apply(store->view, record->key, record->key_len, record->value,
                                      record->value_len, err, sizeof(err));
        if (rc == -2)
            snprintf(err, sizeof(err), "out of memory");
    }
    if (record->offset > store->applied)
        store->applied = record->offset;
    if (rc == 0) {
        (*store->records_applied)++;
        store_notify(store, record);
    } else if (rc < 0) {
        (*store->records_bad)++;
        log_warn("definitions", "%s offset %lld: skipped (%.*s): %s", store->topic,
                 (long long)record->offset,
                 record->key ? (int)(record->key_len > 200 ? 200 : record->key_len) : 0,
                 record->key ? (const char *)record->key : "", err);
    }
    kafka_record_free(record);
    if (!store->caught_up && store->applied >= store->end_at_start - 1) {
        store_caught_up(store);
    } else if (!store->caught_up) {
        store_set_reason(store, "definitions: reading %s (offset %lld of %lld)", store->topic,
                         (long long)store->applied + 1, (long long)store->end_at_start);
    }
    /* read-your-writes: what this record passed is applied */
    struct definitions_pending *done = definitions_pending_take(&store->pending, store->applied);
    while (done) {
        struct definitions_write *write = (struct definitions_write *)done;
        done = done->next;
        write->waiting = false;
        write_complete(write, 0, "");
    }
}

/* The start marker: a record this node writes when it starts reading. Its
 * offset is at or past the end seen at start, so once the reader applied it,
 * everything before is applied too, even when compaction removed the
 * records just below the end (a tombstone at the end is removed after
 * delete.retention.ms, and the reader would otherwise wait for it forever). */
static void store_on_marker(void *opaque, int kafka_err, const char *reason)
{
    struct definitions_store *store = opaque;
    store->marker = NULL;
    if (kafka_err)
        log_warn("definitions", "start marker not written (%s): caught up at offset %lld instead",
                 reason, (long long)store->end_at_start - 1);
    else if (!store->caught_up)
        store_caught_up(store);
}

static void store_write_marker(struct definitions_store *store)
{
    const struct config *config = *store->config;
    char key[600], value[600];
    snprintf(key, sizeof(key), "%s%s", DEFINITIONS_MARKER_PREFIX, config->node_id);
    snprintf(value, sizeof(value), "{\"node\":\"%s\"}", config->node_id);
    struct definitions_store_record record = {key, value};
    int kafka_err = 0;
    store->marker = definitions_store_write(store, &record, 1, store_on_marker, store, &kafka_err);
    if (!store->marker)
        log_warn("definitions", "start marker not written (%s): caught up at offset %lld instead",
                 kafka_err == -1 ? "out of memory" : kafka_error_name(kafka_err),
                 (long long)store->end_at_start - 1);
}

static void store_on_error(void *opaque, int err, const char *reason)
{
    struct definitions_store *store = opaque;
    log_warn("definitions", "reading %s: %s", store->topic, reason);
}

static void store_start_lookup(struct definitions_store *store);
static void store_write_marker(struct definitions_store *store);

static void store_on_retry(evutil_socket_t fd, short what, void *arg) { store_start_lookup(arg); }

static void store_retry_later(struct definitions_store *store)
{
    struct timeval delay = {DEFINITIONS_RETRY_MS / 1000, (DEFINITIONS_RETRY_MS % 1000) * 1000};
    event_add(store->retry_timer, &delay);
}

static void store_on_lookup(void *opaque, int err, const struct kafka_topic_info *topics,
                            size_t count)
{
    struct definitions_store *store = opaque;
    store->lookup = NULL;
    if (err || count != 1) {
        char previous[DEFINITIONS_REASON_MAX];
        snprintf(previous, sizeof(previous), "%s", store->reason);
        store_set_reason(store, "definitions: cannot look up %s: %s", store->topic,
                         err ? kafka_error_name(err) : "no such topic");
        if (strcmp(previous, store->reason) != 0) /* once per reason, not every second */
            log_warn("definitions", "%s; retrying every second", store->reason);
        store_retry_later(store);
        return;
    }
    if (topics[0].partition_count < 1) {
        store_set_reason(store, "definitions: %s has no partitions", store->topic);
        log_warn("definitions", "%s; retrying", store->reason);
        store_retry_later(store);
        return;
    }
    if (topics[0].partition_count > 1 && !store->warned_partitions) {
        /* A broker that auto-creates topics may have made it with its default
         * partition count: every node writes and reads partition 0 only. */
        store->warned_partitions = true;
        log_warn("definitions",
                 "%s has %d partitions; kbridge uses partition 0 only (create it with one "
                 "partition and cleanup.policy=compact)",
                 store->topic, topics[0].partition_count);
    }
    store->end_at_start = topics[0].end_offsets[0];
    static const struct kafka_consumer_handlers handlers = {
        .record = store_on_record,
        .error = store_on_error,
    };
    char why[DEFINITIONS_REASON_MAX];
    store->consumer =
        kafka_consumer_new(store->kafka, NULL, "earliest", &handlers, store, why, sizeof(why));
    int64_t beginning = kafka_offset_beginning();
    int rc = store->consumer
                 ? kafka_consumer_assign_at(store->consumer, store->topic, &beginning, 1)
                 : -1;
    if (rc != 0) {
        store_set_reason(store, "definitions: cannot read %s: %s", store->topic,
                         store->consumer ? kafka_error_name(rc) : why);
        log_warn("definitions", "%s; retrying", store->reason);
        if (store->consumer)
            kafka_consumer_close(store->consumer);
        store->consumer = NULL;
        store_retry_later(store);
        return;
    }
    log_info("definitions", "reading %s from the beginning (%lld record(s))", store->topic,
             (long long)store->end_at_start);
    if (store->end_at_start == 0) {
        store_caught_up(store);
        return;
    }
    store_set_reason(store, "definitions: reading %s (offset 0 of %lld)", store->topic,
                     (long long)store->end_at_start);
    store_write_marker(store);
}

static void store_start_lookup(struct definitions_store *store)
{
    store->lookup = kafka_lookup_end_offsets_or_create_compacted(store->kafka, store->topic, 1,
                                                                 store_on_lookup, store);
    if (!store->lookup) {
        store_set_reason(store, "definitions: out of memory looking up %s", store->topic);
        store_retry_later(store);
    }
}

struct definitions_store *definitions_store_new(struct event_base *base,
                                                struct config *const *config, struct kafka *kafka,
                                                struct metrics *metrics, char *err, size_t err_size)
{
    struct definitions_store *store = calloc(1, sizeof(*store));
    if (!store) {
        snprintf(err, err_size, "definitions: out of memory");
        return NULL;
    }
    store->base = base;
    store->config = config;
    store->kafka = kafka;
    store->applied = -1;
    store->view = definitions_new();
    store->topic = strdup((*config)->definitions.topic);
    store->retry_timer = event_new(base, -1, 0, store_on_retry, store);
    store->records_applied =
        metrics_counter(metrics, "kbridge_definitions_records_total",
                        "Records of the definitions topic applied to this node's view.", NULL);
    store->records_bad = metrics_counter(
        metrics, "kbridge_definitions_bad_records_total",
        "Records of the definitions topic this node could not read (logged and skipped).", NULL);
    store->writes_failed =
        metrics_counter(metrics, "kbridge_definitions_write_failures_total",
                        "Declares, deletes, binds and unbinds Kafka did not confirm.", NULL);
    if (!store->view || !store->topic || !store->retry_timer || !store->records_applied ||
        !store->records_bad || !store->writes_failed) {
        snprintf(err, err_size, "definitions: out of memory");
        definitions_store_free(store);
        return NULL;
    }
    const struct config *c = *config;
    for (size_t i = 0; i < c->vhost_count; i++) {
        if (definitions_vhost_add(store->view, c->vhosts[i].name) < 0) {
            snprintf(err, err_size, "definitions: out of memory");
            definitions_store_free(store);
            return NULL;
        }
    }
    store_set_reason(store, "definitions: looking up %s", store->topic);
    store_start_lookup(store);
    return store;
}

void definitions_store_free(struct definitions_store *store)
{
    if (!store)
        return;
    kafka_lookup_cancel(store->lookup);
    if (store->consumer)
        kafka_consumer_close(store->consumer);
    if (store->retry_timer)
        event_free(store->retry_timer);
    while (store->writes) {
        struct definitions_write *next = store->writes->next;
        free(store->writes);
        store->writes = next;
    }
    while (store->watchers) {
        struct definitions_watcher *next = store->watchers->next;
        free(store->watchers);
        store->watchers = next;
    }
    definitions_free(store->view);
    free(store->topic);
    free(store);
}

/* ---- definitions.file ------------------------------------------------------------- */

char *definitions_file_read(const char *path, size_t *len, char *err, size_t err_size)
{
    FILE *stream = fopen(path, "rb");
    if (!stream) {
        snprintf(err, err_size, "cannot open: %s", strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t used = 0, capacity = 0;
    for (;;) {
        if (used + 4096 + 1 > capacity) {
            size_t grown = capacity ? capacity * 2 : 65536;
            char *bigger = realloc(text, grown);
            if (!bigger) {
                free(text);
                fclose(stream);
                snprintf(err, err_size, "out of memory");
                return NULL;
            }
            text = bigger;
            capacity = grown;
        }
        size_t n = fread(text + used, 1, capacity - used - 1, stream);
        used += n;
        if (n == 0)
            break;
    }
    bool failed = ferror(stream);
    fclose(stream);
    if (failed) {
        free(text);
        snprintf(err, err_size, "cannot read: %s", strerror(errno));
        return NULL;
    }
    text[used] = '\0';
    *len = used;
    return text;
}

/* The check: a scratch model the file's entries are applied to in order. */
struct file_check {
    struct definitions *scratch;
    size_t index[3]; /* entries seen: exchanges, queues, bindings */
    char reason[DEFINITIONS_REASON_MAX];
};

static int file_check_fail(struct file_check *check, const char *kind, size_t index,
                           const char *why)
{
    char copy[DEFINITIONS_REASON_MAX];
    snprintf(copy, sizeof(copy), "%s", why);
    snprintf(check->reason, sizeof(check->reason), "%s[%zu]: %.450s", kind, index, copy);
    return -1;
}

static int file_check_vhost(const char *vhost, void *opaque)
{
    struct file_check *check = opaque;
    return definitions_vhost_add(check->scratch, vhost) < 0
               ? file_check_fail(check, "vhosts", 0, "out of memory")
               : 0;
}

static int file_check_exchange(const struct exchange_spec *spec, void *opaque)
{
    struct file_check *check = opaque;
    size_t index = check->index[0]++;
    char err[DEFINITIONS_REASON_MAX];
    bool exists;
    if (definitions_vhost_add(check->scratch, spec->vhost) < 0 ||
        definitions_check_exchange(check->scratch, spec, false, &exists, err, sizeof(err)) !=
            DEFINITIONS_OK ||
        definitions_apply_exchange(check->scratch, spec) < 0)
        return file_check_fail(check, "exchanges", index, err);
    return 0;
}

static int file_check_queue(const struct queue_spec *spec, void *opaque)
{
    struct file_check *check = opaque;
    size_t index = check->index[1]++;
    char err[DEFINITIONS_REASON_MAX];
    if (spec->exclusive) {
        snprintf(err, sizeof(err),
                 "queue '%s': an exclusive queue belongs to a connection and "
                 "cannot be loaded from a file",
                 spec->name);
        return file_check_fail(check, "queues", index, err);
    }
    bool exists;
    struct queue_spec s = *spec;
    s.owner = NULL;
    if (definitions_vhost_add(check->scratch, s.vhost) < 0 ||
        definitions_check_queue(check->scratch, &s, false, &exists, err, sizeof(err)) !=
            DEFINITIONS_OK ||
        definitions_apply_queue(check->scratch, &s) < 0)
        return file_check_fail(check, "queues", index, err);
    return 0;
}

static int file_check_binding(const struct binding_spec *spec, void *opaque)
{
    struct file_check *check = opaque;
    size_t index = check->index[2]++;
    char err[DEFINITIONS_REASON_MAX];
    if (definitions_vhost_add(check->scratch, spec->vhost) < 0 ||
        definitions_check_binding(check->scratch, spec, err, sizeof(err)) != DEFINITIONS_OK ||
        definitions_apply_binding(check->scratch, spec) < 0)
        return file_check_fail(check, "bindings", index, err);
    return 0;
}

int definitions_file_check(const char *path, char *err, size_t err_size)
{
    char why[DEFINITIONS_REASON_MAX];
    size_t len = 0;
    char *text = definitions_file_read(path, &len, why, sizeof(why));
    if (!text) {
        snprintf(err, err_size, "%s: %s", path, why);
        return -1;
    }
    struct file_check check = {.scratch = definitions_new()};
    struct definitions_import import = {
        .vhost = file_check_vhost,
        .exchange = file_check_exchange,
        .queue = file_check_queue,
        .binding = file_check_binding,
        .opaque = &check,
    };
    int rc = -1;
    if (!check.scratch)
        snprintf(err, err_size, "%s: out of memory", path);
    else if (definitions_import_json(text, len, &import, why, sizeof(why)) < 0)
        snprintf(err, err_size, "%s: %s", path, check.reason[0] ? check.reason : why);
    else
        rc = 0;
    definitions_free(check.scratch);
    free(text);
    return rc;
}
