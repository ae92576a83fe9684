/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_handle_unsubscribe.c -- UNSUBSCRIBE: end one subscription by id
 * (1.0 may name the destination instead). Its unacknowledged deliveries are
 * released for redelivery by the core. A durable subscription is detached,
 * not deleted: it keeps its place and resumes on the next SUBSCRIBE with the
 * same client-id and name, unless the UNSUBSCRIBE says durable:true (or
 * persistent:true, any case), which deletes it, as in RabbitMQ: its place is
 * forgotten and the next SUBSCRIBE of that name starts afresh. Errors carry
 * RabbitMQ's message texts. */
#include <stdio.h>

#include "core.h"
#include "log.h"
#include "stomp_handlers.h"

int stomp_handle_unsubscribe(struct stomp_connection *connection, const struct stomp_frame *frame,
                             struct stomp_error *error)
{
    char message[256];
    const char *id = stomp_frame_header_value(frame, "id");
    if (!id || !id[0]) {
        /* 1.0 subscriptions without id are named after their destination. */
        if (connection->version == STOMP_VERSION_1_0)
            id = stomp_frame_header_value(frame, "destination");
        if (!id || !id[0])
            return stomp_fail_as(error, STOMP_KIND_INVALID, "Missing destination or id",
                                 "UNSUBSCRIBE has no id",
                                 "UNSUBSCRIBE needs the id header of the SUBSCRIBE it ends.");
    }
    struct stomp_subscription *sub = stomp_connection_find_subscription(connection, id);
    if (!sub) {
        snprintf(message, sizeof(message), "no subscription with id '%s'", id);
        return stomp_fail_as(error, STOMP_KIND_INVALID, "No subscription found", message,
                             "This connection has no subscription with id '%s' (it may have been "
                             "unsubscribed already).",
                             id);
    }
    bool delete = stomp_durable_header(frame) && sub->core;
    log_debug("stomp", "%s: unsubscribed %s from %s (%zu unacknowledged released)%s",
              connection->base.peer, sub->id, sub->destination_text, sub->unacked_count,
              delete ? ", deleting a durable subscription" : "");
    if (delete) {
        core_unsubscribe_forget(sub->core);
        sub->core = NULL;
    }
    stomp_subscription_remove(sub);
    return STOMP_OK;
}
