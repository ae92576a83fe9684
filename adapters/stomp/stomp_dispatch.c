/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_dispatch.c -- the one switch on the STOMP command, and the one place
 * where a handler's failure becomes an ERROR frame, a metric and a log line.
 *
 * After an ERROR the connection closes (STOMP 1.2: "the server MUST close
 * the connection after sending ERROR"), so every ERROR goes through
 * stomp_send_error(). RECEIPTs for frames handled at once are sent here;
 * SEND, SUBSCRIBE and DISCONNECT send theirs from the callback that makes
 * them true (Kafka confirmed, subscription positioned, publishes drained). */
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core.h"
#include "log.h"
#include "stomp_handlers.h"

static int stomp_vfail(struct stomp_error *error, enum stomp_error_kind kind, const char *label,
                       const char *message, const char *detail_fmt, va_list ap)
{
    error->kind = kind;
    error->label = label;
    error->version = NULL;
    snprintf(error->message, sizeof(error->message), "%s", message);
    vsnprintf(error->detail, sizeof(error->detail), detail_fmt, ap);
    return STOMP_FAILED;
}

int stomp_fail(struct stomp_error *error, enum stomp_error_kind kind, const char *message,
               const char *detail_fmt, ...)
{
    va_list ap;
    va_start(ap, detail_fmt);
    int rc = stomp_vfail(error, kind, NULL, message, detail_fmt, ap);
    va_end(ap);
    return rc;
}

int stomp_fail_as(struct stomp_error *error, enum stomp_error_kind kind, const char *label,
                  const char *message, const char *detail_fmt, ...)
{
    va_list ap;
    va_start(ap, detail_fmt);
    int rc = stomp_vfail(error, kind, label, message, detail_fmt, ap);
    va_end(ap);
    return rc;
}

/* The one table from core outcomes (daemon/core.h's enum core_error) to
 * STOMP errors, used by every handler that maps one: the error kind
 * (kbridge_stomp_errors_total{kind}) when the core refuses an operation
 * now, when an accepted publish fails later (Kafka did not store it), and
 * for a login; and RabbitMQ's `message` label for a refused operation on a
 * destination. The texts around them name the operation (the handlers). */
static const struct stomp_core_error stomp_core_errors[CORE_ERROR_ROWS] = {
    [-CORE_ERR_ACCESS] = {STOMP_KIND_ACL, STOMP_KIND_ACL, STOMP_KIND_AUTH, "access_refused"},
    [-CORE_ERR_INVALID] = {STOMP_KIND_INVALID, STOMP_KIND_KAFKA, STOMP_KIND_INTERNAL, NULL},
    [-CORE_ERR_TOO_LARGE] = {STOMP_KIND_LIMIT, STOMP_KIND_LIMIT, STOMP_KIND_INTERNAL, NULL},
    [-CORE_ERR_BUSY] = {STOMP_KIND_KAFKA, STOMP_KIND_KAFKA, STOMP_KIND_INTERNAL, NULL},
    [-CORE_ERR_UNAVAILABLE] = {STOMP_KIND_KAFKA, STOMP_KIND_KAFKA, STOMP_KIND_INTERNAL, NULL},
    [-CORE_ERR_UNSUPPORTED] = {STOMP_KIND_UNSUPPORTED, STOMP_KIND_KAFKA, STOMP_KIND_INTERNAL, NULL},
    [-CORE_ERR_INTERNAL] = {STOMP_KIND_INTERNAL, STOMP_KIND_KAFKA, STOMP_KIND_INTERNAL, NULL},
    [-CORE_ERR_NOT_FOUND] = {STOMP_KIND_INVALID, STOMP_KIND_INVALID, STOMP_KIND_INTERNAL,
                             "not_found"},
    [-CORE_ERR_PRECONDITION] = {STOMP_KIND_INVALID, STOMP_KIND_INVALID, STOMP_KIND_INTERNAL,
                                "precondition_failed"},
    [-CORE_ERR_LOCKED] = {STOMP_KIND_INVALID, STOMP_KIND_INVALID, STOMP_KIND_INTERNAL,
                          "resource_locked"},
    [-CORE_ERR_FULL] = {STOMP_KIND_LIMIT, STOMP_KIND_LIMIT, STOMP_KIND_INTERNAL, NULL},
    [-CORE_ERR_IN_USE] = {STOMP_KIND_ACL, STOMP_KIND_ACL, STOMP_KIND_INTERNAL, "access_refused"},
};

const struct stomp_core_error *stomp_core_error(int core_error)
{
    return &stomp_core_errors[core_error_row(core_error)];
}

/* A header value every STOMP version can carry: one line. */
static void stomp_one_line(char *text)
{
    for (char *p = text; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

void stomp_send_error(struct stomp_connection *connection, const struct stomp_error *error,
                      const char *receipt_id)
{
    if (connection->state == STOMP_STATE_CLOSING)
        return;
    char message[sizeof(error->message)];
    snprintf(message, sizeof(message), "%s", error->label ? error->label : error->message);
    stomp_one_line(message);
    /* With a label, kbridge's own short text leads the body. */
    char body[sizeof(error->message) + sizeof(error->detail) + 2];
    if (error->label)
        snprintf(body, sizeof(body), "%s\n%s", error->message, error->detail);
    else
        snprintf(body, sizeof(body), "%s", error->detail);

    struct stomp_header headers[4];
    size_t count = 0;
    headers[count++] = stomp_header_make("message", message);
    headers[count++] = stomp_header_make("content-type", "text/plain");
    if (receipt_id)
        headers[count++] = stomp_header_make("receipt-id", receipt_id);
    if (error->version)
        headers[count++] = stomp_header_make("version", error->version);
    stomp_connection_write(connection, STOMP_COMMAND_ERROR, headers, count, body, strlen(body));

    enum stomp_error_kind kind = error->kind < STOMP_KIND_COUNT ? error->kind : STOMP_KIND_INTERNAL;
    (*connection->adapter->errors[kind])++;
    log_info("stomp", "%s: ERROR sent (%s): %s, closing", connection->base.peer,
             stomp_error_kind_name(kind), error->message);
    stomp_connection_close(connection, "ERROR sent");
}

/* The command as received, made printable and short, for messages. */
static void stomp_command_text(const struct stomp_frame *frame, char *out, size_t size)
{
    const char *text = frame->command_text ? frame->command_text : "";
    size_t i = 0;
    for (; text[i] && i + 1 < size && i < 32; i++)
        out[i] = (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
    out[i] = '\0';
}

void stomp_dispatch(struct stomp_connection *connection, struct stomp_frame *frame)
{
    struct stomp_error error = {0};
    char command[40];
    char message[96];
    int rc;

    stomp_command_text(frame, command, sizeof(command));
    if (log_get_level() >= LOG_LEVEL_DEBUG)
        log_debug("stomp", "%s: received %s (%zu header(s), %zu body byte(s))",
                  connection->base.peer, command, frame->header_count, frame->body_len);

    if (connection->state == STOMP_STATE_CONNECTING && frame->command != STOMP_COMMAND_CONNECT &&
        frame->command != STOMP_COMMAND_STOMP) {
        rc = stomp_fail_as(&error, STOMP_KIND_INVALID, "Illegal command", "expected CONNECT",
                           "The first frame on a STOMP connection must be CONNECT (or STOMP), "
                           "not '%s'. Send CONNECT with accept-version, login and passcode "
                           "first and wait for CONNECTED.",
                           command);
    } else {
        switch (frame->command) {
        case STOMP_COMMAND_CONNECT:
        case STOMP_COMMAND_STOMP: rc = stomp_handle_connect(connection, frame, &error); break;
        case STOMP_COMMAND_SEND: rc = stomp_handle_send(connection, frame, &error); break;
        case STOMP_COMMAND_SUBSCRIBE: rc = stomp_handle_subscribe(connection, frame, &error); break;
        case STOMP_COMMAND_UNSUBSCRIBE:
            rc = stomp_handle_unsubscribe(connection, frame, &error);
            break;
        case STOMP_COMMAND_ACK:
        case STOMP_COMMAND_NACK: rc = stomp_handle_ack(connection, frame, &error); break;
        case STOMP_COMMAND_BEGIN:
        case STOMP_COMMAND_COMMIT:
        case STOMP_COMMAND_ABORT: rc = stomp_handle_transaction(connection, frame, &error); break;
        case STOMP_COMMAND_DISCONNECT:
            rc = stomp_handle_disconnect(connection, frame, &error);
            break;
        case STOMP_COMMAND_CONNECTED:
        case STOMP_COMMAND_MESSAGE:
        case STOMP_COMMAND_RECEIPT:
        case STOMP_COMMAND_ERROR:
            snprintf(message, sizeof(message), "unexpected server frame '%s'", command);
            rc = stomp_fail_as(&error, STOMP_KIND_INVALID, "Bad command", message,
                               "%s is a frame the server sends; a client may send CONNECT, STOMP, "
                               "SEND, SUBSCRIBE, UNSUBSCRIBE, ACK, NACK, BEGIN, COMMIT, ABORT and "
                               "DISCONNECT.",
                               command);
            break;
        case STOMP_COMMAND_UNKNOWN:
        default:
            snprintf(message, sizeof(message), "unknown command '%s'", command);
            rc = stomp_fail_as(&error, STOMP_KIND_INVALID, "Bad command", message,
                               "'%s' is not a STOMP command. A client may send CONNECT, STOMP, "
                               "SEND, SUBSCRIBE, UNSUBSCRIBE, ACK, NACK, BEGIN, COMMIT, ABORT and "
                               "DISCONNECT (commands are case-sensitive).",
                               command);
            break;
        }
    }

    const char *receipt = stomp_frame_header_value(frame, "receipt");
    switch (rc) {
    case STOMP_OK:
        if (receipt && frame->command != STOMP_COMMAND_CONNECT &&
            frame->command != STOMP_COMMAND_STOMP)
            stomp_connection_send_receipt(connection, receipt);
        stomp_frame_free(frame);
        break;
    case STOMP_PENDING: stomp_frame_free(frame); break;
    case STOMP_RETRY: {
        /* Kafka's queue is full: keep the SEND, stop reading; the base
         * retries it (connection_publish_hold, stomp_connection_publish_retry) */
        connection->busy_frame = frame;
        connection_publish_hold(&connection->base);
        stomp_connection_update_reading(connection);
        break;
    }
    case STOMP_FAILED:
    default:
        stomp_send_error(connection, &error, receipt);
        stomp_frame_free(frame);
        break;
    }
}
