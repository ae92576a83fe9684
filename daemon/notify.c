/* SPDX-License-Identifier: Apache-2.0 */
/* notify.c -- sd_notify(3) calls through libsystemd, compiled out without it. */
#include "notify.h"

#ifdef HAVE_CONFIG_H
#include "build-config.h"
#endif

#include <stdio.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "log.h"

static void notify_send(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
    int rc = sd_notify(0, state);
    if (rc < 0)
        log_warn("systemd", "sd_notify(\"%s\") failed: error %d", state, rc);
#else
    (void)state;
#endif
}

void notify_ready(const char *status)
{
    char message[512];
    snprintf(message, sizeof(message), "READY=1\nSTATUS=%s", status);
    notify_send(message);
}

void notify_reloading(void) { notify_send("RELOADING=1"); }

void notify_stopping(void) { notify_send("STOPPING=1\nSTATUS=draining"); }

void notify_status(const char *status)
{
    char message[512];
    snprintf(message, sizeof(message), "STATUS=%s", status);
    notify_send(message);
}

uint64_t notify_watchdog_usec(void)
{
#ifdef HAVE_LIBSYSTEMD
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0)
        return usec;
#endif
    return 0;
}

void notify_watchdog(void) { notify_send("WATCHDOG=1"); }
