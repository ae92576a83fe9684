/* amqp_sasl.c -- placeholder, being written. */
#include "amqp_sasl.h"

#include <stdio.h>

int amqp_sasl_install(pn_transport_t *transport, bool allow_anonymous, amqp_sasl_check_fn check,
                      void *opaque, char *err, size_t err_size)
{
    (void)transport;
    (void)allow_anonymous;
    (void)check;
    (void)opaque;
    snprintf(err, err_size, "not built yet");
    return -1;
}

const char *amqp_sasl_failure(pn_transport_t *transport)
{
    (void)transport;
    return "";
}
