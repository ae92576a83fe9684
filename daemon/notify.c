/* SPDX-License-Identifier: Apache-2.0 */
/* notify.c -- sd_notify(3) calls through libsystemd, compiled out without it;
 * in a worker process (processes > 1) the same messages go to the
 * supervisor through a pipe instead (supervisor.c sums them up for systemd). */
#include "notify.h"

#ifdef HAVE_CONFIG_H
#include "build-config.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "log.h"

/* A worker's end of its pipe to the supervisor (-1: talk to systemd) and
 * the watchdog interval the supervisor passed on. Set once, before the
 * worker starts any thread. */
static int notify_pipe = -1;
static uint64_t notify_pipe_watchdog_usec;

void notify_use_pipe(int fd, uint64_t watchdog_usec)
{
    notify_pipe = fd;
    notify_pipe_watchdog_usec = watchdog_usec;
}

static void notify_send(const char *state)
{
    if (notify_pipe >= 0) {
        /* one message per write, NUL-terminated; < PIPE_BUF, so atomic */
        size_t len = strlen(state) + 1;
        ssize_t n;
        do
            n = write(notify_pipe, state, len);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EPIPE)
            log_warn("supervisor", "cannot tell the supervisor \"%s\": %s", state, strerror(errno));
        return;
    }
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
    if (notify_pipe >= 0)
        return notify_pipe_watchdog_usec;
#ifdef HAVE_LIBSYSTEMD
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0)
        return usec;
#endif
    return 0;
}

void notify_watchdog(void) { notify_send("WATCHDOG=1"); }
