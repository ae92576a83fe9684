/* SPDX-License-Identifier: Apache-2.0 */
/* admin_dlq.c -- the dead-letter resources of the admin API (architecture
 * §9 "Dead letters", docs/operations.md "Dead letters"):
 *
 *   GET    /api/kbridge/dlq/VHOST/QUEUE              topic, group, depth
 *   GET    /api/kbridge/dlq/VHOST/QUEUE/messages     peek (?count=N)
 *   POST   /api/kbridge/dlq/VHOST/QUEUE/redrive      {"count", "destination"}
 *   DELETE /api/kbridge/dlq/VHOST/QUEUE/messages     discard (?count=N or body)
 *
 * The queue's dead-letter topic (queues.dead_letter_topic under the
 * vhost's topic prefix, as daemon/queue.c names it) is read through its own
 * consumer group kbridge.dlq.QUEUE (kbridge.v.VHOST/dlq.QUEUE outside the
 * vhost "/", address_group_id), which only these requests move: depth
 * is that group's lag (kafka_group_lag), peek/redrive/discard are
 * kafka_dlq.h operations on the worker pool. One redrive or discard per
 * queue at a time (admin_api.dlq_runs); a second one is refused with 409
 * naming the running one. Changes need the administrator tag (admin_api.c
 * checks the method) and the user's consume pattern on the queue and
 * publish pattern on where the records go.
 *
 * Owns: every struct admin_dlq_run and struct admin_dlq_depth, each until
 * its request is answered (or, at shutdown, its job has ended). */
#include <event2/event.h>
#include <openssl/evp.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "admin_internal.h"
#include "clock.h"
#include "config.h"
#include "core.h"
#include "definitions.h"
#include "kafka.h"
#include "kafka_dlq.h"
#include "log.h"
#include "metrics.h"
#include "queue_bindings.h"
#include "server.h"
#include "topic_pattern.h"

#define ADMIN_DLQ_PEEK_DEFAULT 10

/* A peek, redrive or discard in progress. */
struct admin_dlq_run {
    struct admin_dlq_run *next; /* in api->dlq_runs (redrive, discard) */
    struct admin_api *api;      /* NULL once unlinked (shutdown) */
    struct admin_request *req;
    enum kafka_dlq_action action;
    char vhost[ADMIN_NAME_MAX], name[ADMIN_NAME_MAX];
    char topic[ADMIN_NAME_MAX], destination[ADMIN_NAME_MAX];
    uint64_t started_ms;
    uint64_t records; /* so far */
    struct kafka_dlq *op;
    struct event *timer; /* dlq.redrive_debug_batch_delay_ms between batches */
    uint32_t delay_ms;
};

/* ---- names ------------------------------------------------------------------- */

/* queue.c's dead-letter topic: the vhost's topic prefix + the pattern with
 * every "{name}" replaced. -1 when it does not fit. */
int admin_dlq_topic(const struct config *config, const char *vhost, const char *name, char *out,
                    size_t out_size)
{
    const struct config_vhost *entry = config_vhost_find(config, vhost);
    if (!entry)
        return -1;
    return topic_pattern_name_into(entry->topic_prefix, config->queues.dead_letter_topic, name, out,
                                   out_size);
}

int admin_dlq_group(const char *vhost, const char *name, char *out, size_t out_size)
{
    return address_group_id(vhost, "dlq", name, NULL, out, out_size);
}

/* May the request's user consume (publish false) or publish to `name` in
 * the vhost of the request's queue (segment 3)? */
static bool admin_dlq_may(const struct admin_request *req, bool publish, const char *name)
{
    const struct config_user *entry = admin_user_entry(req);
    if (!entry)
        return false;
    size_t count = 0;
    const struct config_pattern *patterns =
        config_user_patterns(entry, req->segments[3], publish, &count);
    return config_patterns_match(patterns, count, name);
}

static const char *admin_dlq_action_name(enum kafka_dlq_action action)
{
    switch (action) {
    case KAFKA_DLQ_REDRIVE: return "redrive";
    case KAFKA_DLQ_DISCARD: return "discard";
    default: return "peek";
    }
}

static struct admin_dlq_run *admin_dlq_running(struct admin_api *api, const char *vhost,
                                               const char *name)
{
    for (struct admin_dlq_run *run = api->dlq_runs; run; run = run->next)
        if (strcmp(run->vhost, vhost) == 0 && strcmp(run->name, name) == 0)
            return run;
    return NULL;
}

static json_t *admin_dlq_run_json(const struct admin_dlq_run *run)
{
    return json_pack("{s:s,s:s,s:I,s:I,s:s}", "action", admin_dlq_action_name(run->action), "user",
                     run->req ? run->req->user : "", "started_at", (json_int_t)run->started_ms,
                     "records", (json_int_t)run->records, "destination",
                     run->destination[0] ? run->destination : "original topics");
}

/* The queue the request names (segments 3 and 4), visible to its user;
 * false with the reply sent. */
static bool admin_dlq_queue(struct admin_request *req)
{
    struct core *core = server_core(req->api->server);
    if (req->segment_count < 5 ||
        !definitions_queue(core_definitions(core), req->segments[3], req->segments[4]) ||
        !admin_visible(req, req->segments[3], req->segments[4])) {
        admin_error(req, 404, "Object Not Found", "Not Found");
        return false;
    }
    return true;
}

/* ---- depth ---------------------------------------------------------------------- */

static void admin_dlq_depth_done(void *opaque, int err, const char *reason,
                                 const struct kafka_partition_lag *parts, size_t count)
{
    struct admin_request *req = opaque;
    req->jobs--;
    json_t *body = req->result;
    req->result = NULL;
    if (!req->api) {
        json_decref(body);
        admin_request_free(req);
        return;
    }
    if (err) {
        json_decref(body);
        admin_error(req, 503, "Service Unavailable", reason);
        return;
    }
    int64_t total = 0;
    json_t *partitions = json_array();
    for (size_t i = 0; i < count; i++) {
        int64_t from = parts[i].committed > parts[i].low ? parts[i].committed : parts[i].low;
        int64_t depth = parts[i].end > from ? parts[i].end - from : 0;
        total += depth;
        json_array_append_new(
            partitions,
            json_pack("{s:i,s:I,s:I,s:I,s:I}", "partition", (int)parts[i].partition, "committed",
                      (json_int_t)parts[i].committed, "low", (json_int_t)parts[i].low, "end",
                      (json_int_t)parts[i].end, "messages", (json_int_t)depth));
    }
    json_object_set_new(body, "messages", json_integer(total));
    json_object_set_new(body, "partitions", partitions ? partitions : json_null());
    struct admin_dlq_run *run = admin_dlq_running(req->api, req->segments[3], req->segments[4]);
    json_object_set_new(body, "running", run ? admin_dlq_run_json(run) : json_null());
    admin_reply_new(req, body);
}

static void admin_dlq_describe(struct admin_request *req)
{
    const struct config *config = server_config(req->api->server);
    const char *name = req->segments[4];
    char topic[ADMIN_NAME_MAX], group[ADDRESS_GROUP_ID_MAX + 1];
    if (admin_dlq_topic(config, req->segments[3], name, topic, sizeof(topic)) < 0 ||
        admin_dlq_group(req->segments[3], name, group, sizeof(group)) < 0) {
        admin_error(req, 400, "Bad Request", "the dead-letter topic name is too long");
        return;
    }
    req->result = json_pack("{s:s,s:s,s:s,s:s}", "vhost", req->segments[3], "name", name, "topic",
                            topic, "group", group);
    if (!req->result) {
        admin_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    char *topics[1] = {topic};
    req->jobs++;
    if (kafka_group_lag(server_kafka(req->api->server), group, topics, 1, admin_dlq_depth_done,
                        req) < 0) {
        req->jobs--;
        admin_error(req, 500, "Internal Server Error", "cannot start the lookup (out of memory)");
    }
}

/* ---- peek ------------------------------------------------------------------------- */

/* `data` as a JSON string when it is valid UTF-8, else base64; *encoding
 * says which ("string", "base64"). */
static json_t *admin_dlq_text(const void *data, size_t len, const char **encoding)
{
    json_t *text = json_stringn(data ? data : "", data ? len : 0);
    if (text) {
        *encoding = "string";
        return text;
    }
    *encoding = "base64";
    size_t out_len = 4 * ((len + 2) / 3) + 1;
    unsigned char *out = malloc(out_len);
    if (!out)
        return NULL;
    EVP_EncodeBlock(out, data, (int)len);
    text = json_string((const char *)out);
    free(out);
    return text;
}

static json_t *admin_dlq_record_json(const struct kafka_dlq_record *record)
{
    const char *payload_encoding = "string", *key_encoding = "string";
    json_t *payload = admin_dlq_text(record->value, record->value_len, &payload_encoding);
    json_t *key =
        record->key ? admin_dlq_text(record->key, record->key_len, &key_encoding) : json_null();
    json_t *headers = json_object();
    json_t *encodings = json_object();
    for (size_t i = 0; headers && encodings && i < record->header_count; i++) {
        const char *encoding = "string";
        const struct kafka_header *h = &record->headers[i];
        json_t *value = h->value ? admin_dlq_text(h->value, h->value_len, &encoding) : json_null();
        json_object_set_new(headers, h->name, value ? value : json_null());
        if (strcmp(encoding, "string") != 0)
            json_object_set_new(encodings, h->name, json_string(encoding));
    }
    return json_pack("{s:i,s:I,s:I,s:o*,s:s,s:o*,s:s,s:I,s:{s:o*,s:o*},s:b}", "partition",
                     (int)record->partition, "offset", (json_int_t)record->offset, "timestamp",
                     (json_int_t)record->timestamp, "key", key, "key_encoding",
                     record->key ? key_encoding : "none", "payload", payload, "payload_encoding",
                     payload_encoding, "payload_bytes", (json_int_t)record->value_len, "properties",
                     "headers", headers, "kbridge_header_encodings", encodings, "redelivered",
                     false);
}

/* ---- runs ----------------------------------------------------------------------- */

static void admin_dlq_run_unlink(struct admin_dlq_run *run)
{
    if (!run->api)
        return;
    for (struct admin_dlq_run **link = &run->api->dlq_runs; *link; link = &(*link)->next)
        if (*link == run) {
            *link = run->next;
            break;
        }
    run->api = NULL;
}

static void admin_dlq_run_free(struct admin_dlq_run *run)
{
    admin_dlq_run_unlink(run);
    if (run->timer)
        event_free(run->timer);
    kafka_dlq_free(run->op);
    free(run);
}

static void admin_dlq_on_timer(evutil_socket_t fd, short what, void *arg);

static void admin_dlq_progress(void *opaque, int err, const char *reason,
                               const struct kafka_dlq_progress *progress, bool finished)
{
    struct admin_dlq_run *run = opaque;
    struct admin_request *req = run->req;
    run->records = progress->records;
    if (run->api && progress->batch_records && run->action != KAFKA_DLQ_PEEK) {
        struct metrics *metrics = server_metrics(run->api->server);
        uint64_t *counter =
            run->action == KAFKA_DLQ_REDRIVE
                ? metrics_counter(metrics, "kbridge_dlq_redriven_records_total",
                                  "Dead letters re-published by redrives (admin API)", NULL)
                : metrics_counter(metrics, "kbridge_dlq_discarded_records_total",
                                  "Dead letters discarded (admin API)", NULL);
        if (counter && !err)
            *counter += progress->batch_records;
    }
    if (!finished && !err && run->api && req->api) {
        if (run->delay_ms && run->timer) {
            struct timeval tv = {run->delay_ms / 1000, (int)(run->delay_ms % 1000) * 1000};
            evtimer_add(run->timer, &tv);
            return;
        }
        if (kafka_dlq_next(run->op) == 0)
            return;
        err = -1;
        reason = "cannot queue the next batch (out of memory)";
    }
    req->jobs--;
    if (!req->api) { /* detached at shutdown */
        admin_request_free(req);
        admin_dlq_run_free(run);
        return;
    }
    if (err) {
        char text[1400];
        snprintf(text, sizeof(text), "%s of %s's dead letters stopped after %llu record(s): %s",
                 admin_dlq_action_name(run->action), run->name,
                 (unsigned long long)progress->records, reason);
        log_warn("admin", "%s", text);
        admin_error(req, 503, "Service Unavailable", text);
        admin_dlq_run_free(run);
        return;
    }
    json_t *body = NULL;
    if (run->action == KAFKA_DLQ_PEEK) {
        body = json_array();
        for (size_t i = 0; body && i < progress->peeked_count; i++) {
            json_t *one = admin_dlq_record_json(&progress->peeked[i]);
            if (one)
                json_array_append_new(body, one);
        }
    } else if (run->action == KAFKA_DLQ_REDRIVE) {
        body = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s}", "vhost", run->vhost, "name",
                         run->name, "topic", run->topic, "redriven", (json_int_t)progress->records,
                         "to_original_topic", (json_int_t)progress->to_original, "to_queue_topic",
                         (json_int_t)progress->to_fallback, "messages_before",
                         (json_int_t)progress->depth_before, "destination",
                         run->destination[0] ? run->destination : "original topics");
        log_info("admin", "%s redrove %llu dead letter(s) of queue %s from %s", req->user,
                 (unsigned long long)progress->records, run->name, run->topic);
    } else {
        body = json_pack("{s:s,s:s,s:s,s:I,s:I}", "vhost", run->vhost, "name", run->name, "topic",
                         run->topic, "discarded", (json_int_t)progress->records, "messages_before",
                         (json_int_t)progress->depth_before);
        log_info("admin", "%s discarded %llu dead letter(s) of queue %s from %s", req->user,
                 (unsigned long long)progress->records, run->name, run->topic);
    }
    admin_dlq_run_free(run);
    admin_reply_new(req, body);
}

static void admin_dlq_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct admin_dlq_run *run = arg;
    if (kafka_dlq_next(run->op) == 0)
        return;
    struct admin_request *req = run->req;
    req->jobs--;
    admin_dlq_run_free(run);
    admin_error(req, 500, "Internal Server Error", "cannot queue the next batch (out of memory)");
}

/* A count from the body or the query: absent 0 (all, or the peek default);
 * -1 with the reply sent when it is not a non-negative integer. */
static int64_t admin_dlq_count(struct admin_request *req, const json_t *body)
{
    const json_t *value = body ? json_object_get(body, "count") : NULL;
    if (value && json_is_integer(value) && json_integer_value(value) >= 0)
        return json_integer_value(value);
    if (value && !json_is_null(value)) {
        admin_error(req, 400, "Bad Request", "\"count\" must be a non-negative integer");
        return -1;
    }
    char *text = admin_query_value(req, "count");
    if (!text)
        return 0;
    char *end = NULL;
    long long n = strtoll(text, &end, 10);
    bool ok = text[0] && !*end && n >= 0;
    free(text);
    if (!ok) {
        admin_error(req, 400, "Bad Request", "count must be a non-negative integer");
        return -1;
    }
    return n;
}

static void admin_dlq_start(struct admin_request *req, enum kafka_dlq_action action, int64_t count,
                            const char *destination_text)
{
    struct admin_api *api = req->api;
    const struct config *config = server_config(api->server);
    struct core *core = server_core(api->server);
    const char *vhost = req->segments[3], *name = req->segments[4];
    char topic[ADMIN_NAME_MAX], group[ADDRESS_GROUP_ID_MAX + 1], text[1200];
    if (admin_dlq_topic(config, vhost, name, topic, sizeof(topic)) < 0 ||
        admin_dlq_group(vhost, name, group, sizeof(group)) < 0) {
        admin_error(req, 400, "Bad Request", "the dead-letter topic name is too long");
        return;
    }
    if (action != KAFKA_DLQ_PEEK) {
        struct admin_dlq_run *running = admin_dlq_running(api, vhost, name);
        if (running) {
            snprintf(text, sizeof(text),
                     "a %s of queue '%s''s dead letters is running (started by %s at %llu ms "
                     "since the epoch, %llu record(s) so far): wait for it to finish",
                     admin_dlq_action_name(running->action), name,
                     running->req ? running->req->user : "?",
                     (unsigned long long)running->started_ms, (unsigned long long)running->records);
            admin_error(req, 409, "Conflict", text);
            return;
        }
        if (!admin_dlq_may(req, false, name)) {
            snprintf(text, sizeof(text),
                     "user %s may not consume from queue '%s' (its consume patterns), so may "
                     "not %s its dead letters",
                     req->user, name, admin_dlq_action_name(action));
            admin_error(req, 403, "Forbidden", text);
            return;
        }
    }
    const char *prefix = core_vhost_topic_prefix(core, vhost);
    if (!prefix)
        prefix = "";
    char destination[ADMIN_NAME_MAX] = "", fallback[ADMIN_NAME_MAX] = "", err[512] = "";
    char **topics = NULL;
    size_t topic_count = 0;
    if (action == KAFKA_DLQ_REDRIVE && destination_text) {
        static const struct address_prefix prefixes[] = {{"/queue/", DESTINATION_QUEUE, false},
                                                         {"/topic/", DESTINATION_TOPIC, false}};
        static const struct address_spelling spelling = {prefixes, 2, false,
                                                         "use /queue/NAME or /topic/NAME"};
        struct destination parsed;
        if (address_parse(&spelling, destination_text, &parsed, err, sizeof(err)) < 0 ||
            parsed.wildcard ||
            address_kafka_topic(&parsed, prefix, destination, sizeof(destination), err,
                                sizeof(err)) < 0) {
            snprintf(text, sizeof(text), "destination: %s",
                     err[0] ? err : "a wildcard names no one topic");
            admin_error(req, 400, "Bad Request", text);
            return;
        }
        if (!admin_dlq_may(req, true, parsed.name)) {
            snprintf(text, sizeof(text), "user %s may not publish to %s (its publish patterns)",
                     req->user, destination_text);
            admin_error(req, 403, "Forbidden", text);
            return;
        }
    } else if (action == KAFKA_DLQ_REDRIVE) {
        /* Each record back to its original topic when the queue still reads
         * it and the user may publish there; else to the queue's own topic. */
        if (!admin_dlq_may(req, true, name)) {
            snprintf(text, sizeof(text),
                     "user %s may not publish to queue '%s' (its publish patterns), so may not "
                     "redrive its dead letters back into it",
                     req->user, name);
            admin_error(req, 403, "Forbidden", text);
            return;
        }
        snprintf(fallback, sizeof(fallback), "%s%s", prefix, name);
        if (core_queue_topics(core, vhost, name, &topics, &topic_count) < 0) {
            admin_error(req, 500, "Internal Server Error", "out of memory");
            return;
        }
        size_t kept = 0;
        for (size_t i = 0; i < topic_count; i++) {
            size_t prefix_len = strlen(prefix);
            const char *bare =
                strncmp(topics[i], prefix, prefix_len) == 0 ? topics[i] + prefix_len : topics[i];
            if (admin_dlq_may(req, true, bare))
                topics[kept++] = topics[i];
            else
                free(topics[i]);
        }
        topic_count = kept;
    }
    struct admin_dlq_run *run = calloc(1, sizeof(*run));
    if (!run) {
        queue_bindings_free_topics(topics, topic_count);
        admin_error(req, 500, "Internal Server Error", "out of memory");
        return;
    }
    run->req = req;
    run->action = action;
    snprintf(run->vhost, sizeof(run->vhost), "%s", vhost);
    snprintf(run->name, sizeof(run->name), "%s", name);
    snprintf(run->topic, sizeof(run->topic), "%s", topic);
    snprintf(run->destination, sizeof(run->destination), "%s",
             destination_text && action == KAFKA_DLQ_REDRIVE ? destination_text : "");
    run->started_ms = clock_wall_ms();
    run->delay_ms = action == KAFKA_DLQ_REDRIVE ? config->dlq.redrive_debug_batch_delay_ms : 0;
    struct evhttp_connection *connection = evhttp_request_get_connection(req->request);
    if (run->delay_ms && connection)
        run->timer = evtimer_new(evhttp_connection_get_base(connection), admin_dlq_on_timer, run);
    struct kafka_dlq_spec spec = {
        .action = action,
        .group_id = group,
        .topic = topic,
        .count = (uint64_t)count,
        .destination = destination[0] ? destination : NULL,
        .allowed = topics,
        .allowed_count = topic_count,
        .fallback = fallback[0] ? fallback : NULL,
        .batch = config->dlq.redrive_batch,
    };
    req->jobs++;
    run->op = kafka_dlq_start(server_kafka(api->server), &spec, admin_dlq_progress, run, err,
                              sizeof(err));
    queue_bindings_free_topics(topics, topic_count);
    if (!run->op) {
        req->jobs--;
        admin_dlq_run_free(run);
        admin_error(req, 500, "Internal Server Error", err);
        return;
    }
    if (action != KAFKA_DLQ_PEEK) {
        run->api = api;
        run->next = api->dlq_runs;
        api->dlq_runs = run;
    }
}

/* ---- routing ----------------------------------------------------------------------- */

void admin_dlq_route(struct admin_request *req)
{
    bool get = req->method == EVHTTP_REQ_GET || req->method == EVHTTP_REQ_HEAD;
    size_t n = req->segment_count;
    bool messages = n == 6 && strcmp(req->segments[5], "messages") == 0;
    bool redrive = n == 6 && strcmp(req->segments[5], "redrive") == 0;
    if (!((n == 5 && get) || (messages && (get || req->method == EVHTTP_REQ_DELETE)) ||
          (redrive && req->method == EVHTTP_REQ_POST))) {
        admin_no_route(req);
        return;
    }
    if (!admin_dlq_queue(req))
        return;
    if (n == 5) {
        admin_dlq_describe(req);
        return;
    }
    if (messages && get) {
        if (!admin_dlq_may(req, false, req->segments[4]) && req->role == ADMIN_ROLE_MANAGEMENT) {
            admin_error(req, 404, "Object Not Found", "Not Found");
            return;
        }
        int64_t count = admin_dlq_count(req, NULL);
        if (count < 0)
            return;
        uint32_t most = server_config(req->api->server)->dlq.peek_max;
        if (count == 0)
            count = ADMIN_DLQ_PEEK_DEFAULT < most ? ADMIN_DLQ_PEEK_DEFAULT : most;
        if (count > most) {
            char text[200];
            snprintf(text, sizeof(text), "count %lld is more than dlq.peek_max (%u)",
                     (long long)count, most);
            admin_error(req, 400, "Bad Request", text);
            return;
        }
        admin_dlq_start(req, KAFKA_DLQ_PEEK, count, NULL);
        return;
    }
    json_t *body = admin_body(req);
    if (!body)
        return;
    int64_t count = admin_dlq_count(req, body);
    if (count < 0) {
        json_decref(body);
        return;
    }
    const json_t *destination = json_object_get(body, "destination");
    if (redrive && destination && !json_is_string(destination) && !json_is_null(destination)) {
        json_decref(body);
        admin_error(req, 400, "Bad Request", "\"destination\" must be a string (/queue/NAME)");
        return;
    }
    admin_dlq_start(req, redrive ? KAFKA_DLQ_REDRIVE : KAFKA_DLQ_DISCARD, count,
                    redrive ? json_string_value(destination) : NULL);
    json_decref(body);
}

void admin_dlq_shutdown(struct admin_api *api)
{
    while (api->dlq_runs) {
        struct admin_dlq_run *run = api->dlq_runs;
        admin_dlq_run_unlink(run);
        if (run->timer && evtimer_pending(run->timer, NULL)) {
            /* between batches: no job to wait for */
            struct admin_request *req = run->req;
            req->jobs--;
            admin_dlq_run_free(run);
            admin_error(req, 503, "Service Unavailable",
                        "kbridged is shutting down; what was redriven so far is committed");
        }
        /* else a job runs: its answer frees the run (and the detached request) */
    }
}
