/* stomp_handle_transaction.c -- BEGIN, COMMIT and ABORT. Transactions
 * (architecture §8) are not built yet: refuse them explicitly rather than run the
 * frames outside a transaction. */
#include "stomp_handlers.h"

int stomp_handle_transaction(struct stomp_connection *connection, const struct stomp_frame *frame,
                             struct stomp_error *error)
{
    return stomp_fail(error, STOMP_KIND_UNSUPPORTED, "transactions are not supported yet",
                      "kbridge does not support STOMP transactions (BEGIN, COMMIT, ABORT and "
                      "the transaction header) yet. Send and acknowledge without a "
                      "transaction.");
}
