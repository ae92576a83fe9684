/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_handle_disconnect.c -- DISCONNECT: read nothing more, block
 * deliveries, and when every message this connection published is confirmed
 * by Kafka send the RECEIPT (if asked) and close. Without a receipt there is
 * nobody to tell, so the connection closes at once (what is in flight still
 * reaches Kafka). */
#include <stdlib.h>
#include <string.h>

#include "stomp_handlers.h"

int stomp_handle_disconnect(struct stomp_connection *connection, const struct stomp_frame *frame,
                            struct stomp_error *error)
{
    const char *receipt = stomp_frame_header_value(frame, "receipt");
    if (receipt && !(connection->disconnect_receipt = strdup(receipt)))
        return stomp_fail(error, STOMP_KIND_INTERNAL, "out of memory",
                          "The server could not take the DISCONNECT.");
    connection->disconnecting = true;
    stomp_connection_block_deliveries(connection, true);
    stomp_connection_update_reading(connection);
    if (!receipt || connection->base.unconfirmed == 0) {
        if (receipt)
            stomp_connection_send_receipt(connection, receipt);
        stomp_connection_close(connection, "client disconnected");
    }
    /* else stomp_connection_publish_done() finishes it. */
    return STOMP_PENDING;
}
