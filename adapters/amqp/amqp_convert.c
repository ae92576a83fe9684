/* amqp_convert.c -- placeholder, being written. */
#include "amqp_convert.h"

#include <stdio.h>

int amqp_record_from_message(pn_message_t *message, struct amqp_record *record, char *err,
                             size_t err_size)
{
    (void)message;
    (void)record;
    snprintf(err, err_size, "not built yet");
    return -1;
}

void amqp_record_release(struct amqp_record *record)
{
    (void)record;
}

int amqp_message_from_record(const struct amqp_record_view *record, pn_message_t *message,
                             char *err, size_t err_size)
{
    (void)record;
    (void)message;
    snprintf(err, err_size, "not built yet");
    return -1;
}
