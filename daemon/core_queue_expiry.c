/* SPDX-License-Identifier: Apache-2.0 */
/* core_queue_expiry.c -- x-expires (architecture §11, routing.md "Queue
 * arguments"): a queue with x-expires that this node declared or consumed is
 * deleted through the definitions store (as an auto-delete queue is) once it
 * has been unused on this node for that long: no local subscriber, no
 * declare of it here. One timer per such queue, in core->queue_expiries:
 * armed by a declare (core_queue_expiry_declared) and when its last local
 * subscriber goes (core_queue_expiry_unused), removed when a subscriber
 * attaches (core_queue_expiry_in_use). Other nodes' use is not known. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "core_internal.h"
#include "definitions.h"
#include "log.h"
#include "queue_arguments.h"

struct core_queue_expiry {
    struct core_queue_expiry *next;
    struct core *core;
    struct event *timer;
    int64_t expires_ms;
    char *vhost;
    char *name;
};

static struct core_queue_expiry **expiry_find(struct core *core, const char *vhost,
                                              const char *name)
{
    struct core_queue_expiry **link = &core->queue_expiries;
    while (*link && (strcmp((*link)->vhost, vhost) != 0 || strcmp((*link)->name, name) != 0))
        link = &(*link)->next;
    return link;
}

static void expiry_free(struct core_queue_expiry *x)
{
    if (x->timer)
        event_free(x->timer);
    free(x->vhost);
    free(x->name);
    free(x);
}

static void expiry_remove(struct core *core, const char *vhost, const char *name)
{
    struct core_queue_expiry **link = expiry_find(core, vhost, name);
    struct core_queue_expiry *x = *link;
    if (x) {
        *link = x->next;
        expiry_free(x);
    }
}

/* x-expires of `arguments` (NULL: the view's queue's); -1: none. */
static int64_t expiry_of(struct core *core, const char *vhost, const char *name,
                         const json_t *arguments)
{
    if (!arguments) {
        const struct queue_definition *queue =
            definitions_queue(core_definitions(core), vhost, name);
        if (!queue)
            return -1;
        arguments = queue->spec.arguments;
    }
    struct queue_arguments parsed;
    char err[256];
    if (!arguments || queue_arguments_parse(arguments, &parsed, err, sizeof(err)) < 0)
        return -1;
    return parsed.expires_ms;
}

static void expiry_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct core_queue_expiry *x = arg;
    struct core *core = x->core;
    /* still there with x-expires (deleted or declared again without: nothing to do) */
    if (expiry_of(core, x->vhost, x->name, NULL) >= 0) {
        log_info("core",
                 "queue '%s' in vhost '%s' unused on this node for %lld ms (x-expires): "
                 "deleting it",
                 x->name, x->vhost, (long long)x->expires_ms);
        core_delete_queue_unattended(core, x->vhost, x->name, "an expired queue");
    }
    expiry_remove(core, x->vhost, x->name);
}

static bool expiry_has_subscriber(struct core *core, const char *vhost, const char *name);

/* Arm (or re-arm) the timer of `name` for `expires_ms`. */
static void expiry_arm(struct core *core, const char *vhost, const char *name, int64_t expires_ms)
{
    struct core_queue_expiry **link = expiry_find(core, vhost, name);
    struct core_queue_expiry *x = *link;
    if (!x) {
        x = calloc(1, sizeof(*x));
        if (x) {
            x->core = core;
            x->vhost = strdup(vhost);
            x->name = strdup(name);
            x->timer = event_new(core->base, -1, 0, expiry_on_timer, x);
        }
        if (!x || !x->vhost || !x->name || !x->timer) {
            log_error("core", "out of memory: queue '%s' will not expire (x-expires)", name);
            if (x)
                expiry_free(x);
            return;
        }
        x->next = core->queue_expiries;
        core->queue_expiries = x;
    }
    x->expires_ms = expires_ms;
    struct timeval after = {(time_t)(expires_ms / 1000), (suseconds_t)(expires_ms % 1000) * 1000};
    event_add(x->timer, &after);
}

void core_queue_expiry_declared(struct core *core, const char *vhost, const char *name,
                                const struct json_t *arguments)
{
    int64_t expires_ms = expiry_of(core, vhost, name, arguments);
    if (expires_ms > 0 && !expiry_has_subscriber(core, vhost, name))
        expiry_arm(core, vhost, name, expires_ms);
}

void core_queue_expiry_unused(struct core *core, const char *vhost, const char *name)
{
    int64_t expires_ms = expiry_of(core, vhost, name, NULL);
    if (expires_ms > 0)
        expiry_arm(core, vhost, name, expires_ms);
}

void core_queue_expiry_in_use(struct core *core, const char *vhost, const char *name)
{
    if (core->queue_expiries)
        expiry_remove(core, vhost, name);
}

/* Has the queue a subscriber on this node? */
static bool expiry_has_subscriber(struct core *core, const char *vhost, const char *name)
{
    for (struct core_session *session = core->sessions; session; session = session->next)
        for (struct core_subscription *sub = session->subscriptions; sub; sub = sub->next)
            if (sub->attached && sub->destination.kind == DESTINATION_QUEUE && !sub->durable_name &&
                strcmp(sub->destination.name, name) == 0 && strcmp(sub->vhost, vhost) == 0)
                return true;
    return false;
}

void core_queue_expiry_free(struct core *core)
{
    while (core->queue_expiries) {
        struct core_queue_expiry *x = core->queue_expiries;
        core->queue_expiries = x->next;
        expiry_free(x);
    }
}
