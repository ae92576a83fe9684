/* SPDX-License-Identifier: Apache-2.0 */
/* notify.h -- the systemd service manager protocol (sd_notify): readiness,
 * reload, stopping, status and the watchdog. Without libsystemd, or when
 * NOTIFY_SOCKET is unset, every call is a no-op. A worker process sends the
 * same messages to its supervisor instead (notify_use_pipe). */
#ifndef KBRIDGE_NOTIFY_H
#define KBRIDGE_NOTIFY_H

#include <stdint.h>

/* In a worker process: send every message below to the supervisor on `fd`
 * (write end of a pipe, kept by the caller) instead of systemd, and report
 * `watchdog_usec` from notify_watchdog_usec. Call before any thread starts. */
void notify_use_pipe(int fd, uint64_t watchdog_usec);

/* READY=1 plus a STATUS line. */
void notify_ready(const char *status);
/* RELOADING=1 while a SIGHUP reload runs; call notify_ready after. */
void notify_reloading(void);
/* STOPPING=1 when the drain starts. */
void notify_stopping(void);
/* STATUS=... free text shown by systemctl status. */
void notify_status(const char *status);
/* The watchdog interval in microseconds, or 0 when systemd does not watch us. */
uint64_t notify_watchdog_usec(void);
/* WATCHDOG=1: the loop is alive. */
void notify_watchdog(void);

#endif
