/* SPDX-License-Identifier: Apache-2.0 */
/* core.c -- the protocol-independent core of kbridge (architecture §1,
 * "Layers and layout"): the core object that ties its layers together and
 * what applies to all of them (creation, reload, drain, shutdown).
 *
 *   core_session.c       sessions, authentication, ACLs
 *   core_publish.c       the publish path (record building, message ids)
 *   core_exchange.c      publishing to an exchange (routing, alternate, unroutable)
 *   core_subscription.c  subscriptions and deliveries, through engine.h to
 *                        queue.c (queues, durable subscriptions) and topic.c
 *                        (topics, temporary queues)
 *   request_reply.c      request-reply state and decisions (architecture §7)
 *   record.c             the record contract (architecture §3)
 *   stats.c              per-destination metrics
 *
 * Adapters see only core.h; the files share core_internal.h. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "core_internal.h"
#include "definitions_store.h"
#include "engine.h"
#include "metrics.h"
#include "request_reply.h"
#include "stats.h"

static void core_free_parts(struct core *core)
{
    core_publish_free(core);
    core_anchor_free_all(core);
    if (core->queue_engine)
        core->queue_engine->ops->free(core->queue_engine);
    if (core->topic_engine) /* frees the temporary-queue engine with it */
        core->topic_engine->ops->free(core->topic_engine);
    definitions_store_free(core->definitions);
    stats_table_clear(&core->stats); /* the series stay with the registry */
    core_limits_free(core);
    core_queue_expiry_free(core);
    core_overflow_free(core);
    request_reply_free(core->request_reply);
    free(core);
}

struct core *core_new(struct event_base *base, struct config *const *config, struct kafka *kafka,
                      struct metrics *metrics, struct worker_pool *workers, char *err,
                      size_t err_size)
{
    struct core *core = calloc(1, sizeof(*core));
    if (!core) {
        snprintf(err, err_size, "core: out of memory");
        return NULL;
    }
    core->base = base;
    core->config = config;
    core->config_generation = 1;
    core->kafka = kafka;
    core->metrics = metrics;
    core->workers = workers;
    stats_table_init(&core->stats, metrics);
    core->late_settles = metrics_counter(
        metrics, "kbridge_late_settles_total",
        "Acks/nacks for deliveries this node no longer owns (partition moved, already settled).",
        NULL);
    core->auth_failures = metrics_counter(metrics, "kbridge_auth_failures_total",
                                          "Failed client authentications.", NULL);
    core->request_reply = request_reply_new(config, metrics, err, err_size);
    if (!core->request_reply) {
        core_free_parts(core);
        return NULL;
    }
    char labels[64];
    for (int i = 0; i < 2; i++) {
        metrics_label(labels, sizeof(labels), "kind", i == 0 ? "queue" : "topic");
        core->expired[i] = metrics_counter(
            metrics, "kbridge_expired_total",
            "Messages not delivered because their expires time had passed.", labels);
    }
    core->unroutable = metrics_counter(
        metrics, "kbridge_unroutable_total",
        "Messages published to an exchange that reached no queue and had no alternate "
        "exchange: not written, reported to the client as unroutable.",
        NULL);
    core->scheduled = metrics_counter(
        metrics, "kbridge_scheduled_total",
        "Messages published with a delay (scheduled delivery) that Kafka stored in the delay "
        "topic, to be forwarded to their destination when due.",
        NULL);
    core->alternate_routed =
        metrics_counter(metrics, "kbridge_alternate_routed_total",
                        "Messages that reached no queue through their exchange and were written "
                        "to its alternate-exchange instead.",
                        NULL);
    if (!core->late_settles || !core->auth_failures || !core->expired[0] || !core->expired[1] ||
        !core->unroutable || !core->alternate_routed || !core->scheduled ||
        core_limits_init(core) < 0 || core_transaction_metrics_init(core) < 0 ||
        core_overflow_init(core) < 0) {
        snprintf(err, err_size, "core: out of memory");
        core_free_parts(core);
        return NULL;
    }
    if (core_definitions_start(core, err, err_size) < 0) {
        core_free_parts(core);
        return NULL;
    }
    /* What the engines get of the core: nothing else (engine.h). */
    struct engine_context *context = &core->engine_context;
    context->base = base;
    context->config = config;
    context->kafka = kafka;
    context->metrics = metrics;
    context->stats = &core->stats;
    context->request_reply = core->request_reply;
    context->expired[0] = core->expired[0];
    context->expired[1] = core->expired[1];
    context->definitions = definitions_store_view(core->definitions);
    context->definitions_store = core->definitions;
    core_subscription_context(context);
    core->queue_engine = queue_engine_new(context, err, err_size);
    core->topic_engine = core->queue_engine ? topic_engine_new(context, err, err_size) : NULL;
    if (!core->topic_engine) {
        core_free_parts(core);
        return NULL;
    }
    core->temporary_engine = topic_engine_temporary(core->topic_engine);
    return core;
}

const struct config *core_config(const struct core *core) { return *core->config; }

void core_reconfigure(struct core *core)
{
    core->config_generation++; /* sessions decide their ACLs afresh */
    core_revoke_sessions(core);
    struct engine *engines[] = {core->queue_engine, core->topic_engine, core->temporary_engine};
    for (size_t i = 0; i < sizeof(engines) / sizeof(engines[0]); i++)
        if (engines[i]->ops->reconfigure)
            engines[i]->ops->reconfigure(engines[i]);
    request_reply_reconfigure(core->request_reply);
}

void core_drain(struct core *core) { core->draining = true; }

void core_free(struct core *core)
{
    if (!core)
        return;
    while (core->sessions)
        core_session_close(core->sessions);
    core_transaction_free_all(core);
    core_free_parts(core);
}
