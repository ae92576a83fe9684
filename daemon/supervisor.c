/* SPDX-License-Identifier: Apache-2.0 */
/* supervisor.c -- the supervisor of `processes: N` worker processes and the
 * worker's side of it (its identity: node id, binds, ops port).
 *
 * DESIGN
 * ------
 * The supervisor runs before any librdkafka handle, worker-pool thread or
 * event loop exists (main calls it right after loading the config), so a
 * fork copies a single-threaded process. It:
 *  - reserves every client listener's port (listener_socket_reserve: a port
 *    in use is a start-up error at once, port 0 is resolved once, so all
 *    workers and every restarted one bind the same concrete address with
 *    SO_REUSEPORT; the reservation is bound, not listening, so it takes no
 *    connection);
 *  - forks worker i with a pipe for its sd_notify messages (notify.c's
 *    notify_use_pipe) and PR_SET_PDEATHSIG = SIGKILL, so a worker never
 *    outlives it (a drain without the supervisor could wait forever on a
 *    Kafka that is gone too, and nothing is confirmed before Kafka anyway);
 *  - waits in poll(2) on a signalfd (SIGTERM, SIGINT, SIGHUP, SIGCHLD) and
 *    the workers' pipes: forwards TERM/INT/HUP, reaps, restarts a worker that
 *    died (signal or non-zero exit) after SUPERVISOR_BACKOFF_MS doubling per
 *    consecutive failure (a run of SUPERVISOR_STABLE_MS resets the count), and
 *    gives up (SIGTERM to the rest, exit 1) after SUPERVISOR_MAX_FAILURES;
 *    a worker that exits 0 was told to stop and is not restarted;
 *  - says READY=1 to systemd when every worker said READY=1 (again after a
 *    reload), STOPPING=1 when it forwards SIGTERM/SIGINT, and WATCHDOG=1 when
 *    every ready worker pinged since the last one. */
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "notify.h"

#define SUPERVISOR_BACKOFF_MS 250      /* first restart delay; doubles per failure */
#define SUPERVISOR_BACKOFF_MAX_MS 8000 /* longest restart delay */
#define SUPERVISOR_STABLE_MS 30000     /* a run this long resets the failure count */
#define SUPERVISOR_MAX_FAILURES 5      /* consecutive failures of one worker: give up */
#define SUPERVISOR_NOTIFY_MAX 1024     /* longest message a worker sends */

/* One worker slot; a restarted worker keeps its index (and node id). */
struct supervisor_worker {
    pid_t pid;                           /* 0: not running */
    int status_fd;                       /* read end of its notify pipe; -1: none */
    char pending[SUPERVISOR_NOTIFY_MAX]; /* bytes of a message not yet ended by NUL */
    size_t pending_used;
    bool ready;            /* READY=1 since its start or the last reload */
    bool pinged;           /* WATCHDOG=1 since the last one forwarded */
    unsigned failures;     /* consecutive failed runs */
    int64_t started_ms;    /* monotonic */
    int64_t restart_at_ms; /* 0: no restart due */
};

struct supervisor {
    struct config *config;
    uint32_t count;
    struct supervisor_worker *workers;
    evutil_socket_t *reserved; /* one per client listener, in config order; -1: ops */
    char **reserved_binds;     /* their concrete addresses; NULL: ops */
    size_t listener_count;
    int signal_fd;
    sigset_t old_mask;
    bool stopping;
    bool ready_sent;
    bool reloading;
    uint64_t watchdog_usec;
    int exit_code;
};

/* This process's identity when it is a worker (set once after the fork). */
static struct {
    bool worker;
    uint32_t index;
    uint32_t count;
    char **binds; /* per config listener (by name below); NULL: keep (ops) */
    char **names;
    size_t listener_count;
    sigset_t old_mask; /* the mask before the supervisor blocked its signals */
} role;

static int64_t supervisor_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static bool supervisor_is_ops(const struct config_listener *listener)
{
    return strcmp(listener->protocols[0], OPS_HTTP_PROTOCOL) == 0;
}

uint32_t supervisor_process_count(const struct config *config)
{
    if (config->processes > 0)
        return config->processes;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1 : cpus > 64 ? 64 : (uint32_t)cpus;
}

int supervisor_check_config(const struct config *config, uint32_t count, char *err, size_t err_size)
{
    if (count <= 1)
        return 0;
    if (strcmp(config->kafka.bootstrap, "embedded") == 0) {
        snprintf(err, err_size,
                 "processes: %u processes need a Kafka they share; kafka.bootstrap \"embedded\" "
                 "is a mock cluster inside each process",
                 count);
        return -1;
    }
    char suffix[16];
    snprintf(suffix, sizeof(suffix), "-%u", count - 1);
    if (strlen(config->node_id) + strlen(suffix) > 255) {
        snprintf(err, err_size, "node_id: too long for processes: %u (worker ids add \"%s\")",
                 count, suffix);
        return -1;
    }
    for (size_t i = 0; i < config->listener_count; i++) {
        const struct config_listener *listener = &config->listeners[i];
        if (!supervisor_is_ops(listener))
            continue;
        char host[256], port[16], why[160];
        if (listener_split_bind(listener->bind, host, sizeof(host), port, sizeof(port), why,
                                sizeof(why)) < 0) {
            snprintf(err, err_size, "listeners.%s: %s", listener->name, why);
            return -1;
        }
        char *end;
        unsigned long number = strtoul(port, &end, 10);
        if (*end == '\0' && number != 0 && number + count - 1 > 65535) {
            snprintf(err, err_size,
                     "listeners.%s: port %lu + %u workers passes 65535 (worker i serves the "
                     "ops endpoint on port + i)",
                     listener->name, number, count - 1);
            return -1;
        }
    }
    return 0;
}

/* ---- the worker's identity ------------------------------------------------ */

/* "host:port" with port + index (port 0 stays 0); NULL when out of memory
 * or not HOST:PORT (supervisor_check_config ran). */
static char *supervisor_ops_bind(const char *bind, uint32_t index)
{
    char host[256], port[16], why[160];
    if (listener_split_bind(bind, host, sizeof(host), port, sizeof(port), why, sizeof(why)) < 0)
        return NULL;
    char *end;
    unsigned long number = strtoul(port, &end, 10);
    if (*end != '\0')
        return NULL;
    if (number != 0)
        number += index;
    char out[300];
    snprintf(out, sizeof(out), strchr(host, ':') ? "[%s]:%lu" : "%s:%lu", host, number);
    return strdup(out);
}

static void supervisor_replace(char **field, char *value)
{
    if (!value) {
        log_error("supervisor", "out of memory deriving the worker's configuration");
        return;
    }
    free(*field);
    *field = value;
}

void supervisor_worker_config(struct config *config)
{
    if (!role.worker) { /* one process: only `processes: 0` resolved, as main did */
        config->processes = supervisor_process_count(config);
        return;
    }
    config->processes = role.count;
    char node[300];
    snprintf(node, sizeof(node), "%s-%u", config->node_id, role.index);
    supervisor_replace(&config->node_id, strdup(node));
    for (size_t i = 0; i < config->listener_count; i++) {
        struct config_listener *listener = &config->listeners[i];
        if (supervisor_is_ops(listener)) {
            supervisor_replace(&listener->bind, supervisor_ops_bind(listener->bind, role.index));
            continue;
        }
        for (size_t r = 0; r < role.listener_count; r++)
            if (role.binds[r] && strcmp(role.names[r], listener->name) == 0)
                supervisor_replace(&listener->bind, strdup(role.binds[r]));
    }
}

void supervisor_worker_serving(void)
{
    if (role.worker)
        sigprocmask(SIG_SETMASK, &role.old_mask, NULL);
}

/* ---- the supervisor ----------------------------------------------------------- */

static void supervisor_free(struct supervisor *sup)
{
    for (uint32_t i = 0; sup->workers && i < sup->count; i++)
        if (sup->workers[i].status_fd >= 0)
            close(sup->workers[i].status_fd);
    free(sup->workers);
    for (size_t i = 0; i < sup->listener_count; i++) {
        if (sup->reserved && sup->reserved[i] >= 0)
            close(sup->reserved[i]);
        if (sup->reserved_binds)
            free(sup->reserved_binds[i]);
    }
    free(sup->reserved);
    free(sup->reserved_binds);
    if (sup->signal_fd >= 0)
        close(sup->signal_fd);
}

/* Reserve every client listener's port (see the top of the file). */
static int supervisor_reserve(struct supervisor *sup, char *err, size_t err_size)
{
    const struct config *config = sup->config;
    sup->listener_count = config->listener_count;
    sup->reserved = calloc(config->listener_count + 1, sizeof(*sup->reserved));
    sup->reserved_binds = calloc(config->listener_count + 1, sizeof(*sup->reserved_binds));
    if (!sup->reserved || !sup->reserved_binds) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < config->listener_count; i++)
        sup->reserved[i] = -1;
    for (size_t i = 0; i < config->listener_count; i++) {
        const struct config_listener *listener = &config->listeners[i];
        if (supervisor_is_ops(listener))
            continue;
        char bound[80], why[400];
        if (listener_socket_reserve(listener->bind, &sup->reserved[i], bound, sizeof(bound), why,
                                    sizeof(why)) < 0) {
            snprintf(err, err_size, "listeners.%s: %s", listener->name, why);
            return -1;
        }
        if (!(sup->reserved_binds[i] = strdup(bound))) {
            snprintf(err, err_size, "out of memory");
            return -1;
        }
        log_info("supervisor", "listeners.%s: %s reserved for %u workers (SO_REUSEPORT)",
                 listener->name, bound, sup->count);
    }
    return 0;
}

/* In the child after fork: drop the supervisor's state, become worker
 * `index` (role, log tag, notify pipe). 0, or -1 when the child must exit. */
static int supervisor_become_worker(struct supervisor *sup, uint32_t index, int notify_fd,
                                    pid_t parent)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        return -1; /* the supervisor is gone already */
    /* The signals stay blocked until the server's handlers are in
     * (supervisor_worker_serving): a SIGHUP or SIGTERM passed on meanwhile
     * waits instead of killing the worker by its default action. */
    role.old_mask = sup->old_mask;
    role.worker = true;
    role.index = index;
    role.count = sup->count;
    role.binds = sup->reserved_binds; /* kept for reloads; the rest is freed */
    role.listener_count = sup->listener_count;
    role.names = calloc(sup->listener_count + 1, sizeof(*role.names));
    if (!role.names)
        return -1;
    for (size_t i = 0; i < sup->listener_count; i++)
        if (!(role.names[i] = strdup(sup->config->listeners[i].name)))
            return -1;
    sup->reserved_binds = NULL;
    notify_use_pipe(notify_fd, sup->watchdog_usec);
    supervisor_free(sup);
    supervisor_worker_config(sup->config);
    log_set_node(sup->config->node_id);
    return 0;
}

/* Fork worker `index`. 1 in the parent (started), 0 in the child, -1 on
 * failure (logged). */
static int supervisor_start(struct supervisor *sup, uint32_t index)
{
    struct supervisor_worker *worker = &sup->workers[index];
    if (worker->status_fd >= 0) { /* a restart before the old pipe's end was read */
        close(worker->status_fd);
        worker->status_fd = -1;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        log_error("supervisor", "worker %u: cannot make its status pipe: %s", index,
                  strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        log_error("supervisor", "worker %u: cannot fork: %s", index, strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        if (supervisor_become_worker(sup, index, fds[1], parent) < 0)
            _exit(1); /* before any state exists: nothing to clean */
        return 0;
    }
    close(fds[1]);
    worker->pid = pid;
    worker->status_fd = fds[0];
    worker->pending_used = 0;
    worker->ready = false;
    worker->pinged = false;
    worker->started_ms = supervisor_now_ms();
    worker->restart_at_ms = 0;
    log_info("supervisor", "worker %u started as node %s-%u (pid %ld)", index, sup->config->node_id,
             index, (long)pid);
    return 1;
}

static bool supervisor_all_ready(const struct supervisor *sup)
{
    for (uint32_t i = 0; i < sup->count; i++)
        if (!sup->workers[i].pid || !sup->workers[i].ready)
            return false;
    return true;
}

static void supervisor_forward(struct supervisor *sup, int signal_number)
{
    for (uint32_t i = 0; i < sup->count; i++)
        if (sup->workers[i].pid)
            kill(sup->workers[i].pid, signal_number);
}

static void supervisor_stop(struct supervisor *sup, int signal_number, const char *why)
{
    if (!sup->stopping) {
        sup->stopping = true;
        notify_stopping();
        log_info("supervisor", "%s: stopping the workers", why);
    } else {
        log_warn("supervisor", "%s during the stop: passed on (workers stop at once)", why);
    }
    for (uint32_t i = 0; i < sup->count; i++)
        sup->workers[i].restart_at_ms = 0;
    supervisor_forward(sup, signal_number);
}

/* One message from worker `index` ("READY=1\nSTATUS=..."). */
static void supervisor_on_message(struct supervisor *sup, uint32_t index, const char *message)
{
    struct supervisor_worker *worker = &sup->workers[index];
    bool ready = false, ping = false;
    for (const char *line = message; line && *line; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (strncmp(line, "READY=1", 7) == 0)
            ready = true;
        else if (strncmp(line, "WATCHDOG=1", 10) == 0)
            ping = true;
    }
    if (ready && !worker->ready) {
        worker->ready = true;
        log_info("supervisor", "worker %u (pid %ld) is ready", index, (long)worker->pid);
        if (supervisor_all_ready(sup) && !sup->stopping && (!sup->ready_sent || sup->reloading)) {
            char status[128];
            snprintf(status, sizeof(status), "%u workers listening%s", sup->count,
                     sup->reloading ? "; configuration reloaded" : "");
            notify_ready(status);
            if (!sup->ready_sent)
                log_info("supervisor", "all %u workers are ready", sup->count);
            sup->ready_sent = true;
            sup->reloading = false;
        }
    }
    if (ping && sup->watchdog_usec) {
        worker->pinged = true;
        for (uint32_t i = 0; i < sup->count; i++)
            if (sup->workers[i].pid && sup->workers[i].ready && !sup->workers[i].pinged)
                return;
        notify_watchdog();
        for (uint32_t i = 0; i < sup->count; i++)
            sup->workers[i].pinged = false;
    }
}

static void supervisor_read_status(struct supervisor *sup, uint32_t index)
{
    struct supervisor_worker *worker = &sup->workers[index];
    char buffer[SUPERVISOR_NOTIFY_MAX];
    ssize_t n = read(worker->status_fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR)
        return;
    if (n <= 0) { /* the worker exited (or closed it): SIGCHLD reaps it */
        close(worker->status_fd);
        worker->status_fd = -1;
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (buffer[i] != '\0') {
            if (worker->pending_used < sizeof(worker->pending) - 1)
                worker->pending[worker->pending_used++] = buffer[i];
            continue;
        }
        worker->pending[worker->pending_used] = '\0';
        supervisor_on_message(sup, index, worker->pending);
        worker->pending_used = 0;
    }
}

/* A worker ended: decide whether and when it starts again. */
static void supervisor_on_exit(struct supervisor *sup, uint32_t index, int status)
{
    struct supervisor_worker *worker = &sup->workers[index];
    pid_t pid = worker->pid;
    worker->pid = 0;
    worker->ready = false;
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    char how[64];
    if (WIFEXITED(status))
        snprintf(how, sizeof(how), "exited with %d", WEXITSTATUS(status));
    else
        snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(status));
    if (sup->stopping) {
        if (!clean)
            sup->exit_code = 1;
        if (clean)
            log_info("supervisor", "worker %u (pid %ld) %s", index, (long)pid, how);
        else
            log_warn("supervisor", "worker %u (pid %ld) %s", index, (long)pid, how);
        return;
    }
    if (clean) {
        log_warn("supervisor", "worker %u (pid %ld) %s without being asked to: not restarted",
                 index, (long)pid, how);
        return;
    }
    int64_t now = supervisor_now_ms();
    worker->failures = now - worker->started_ms >= SUPERVISOR_STABLE_MS ? 1 : worker->failures + 1;
    if (worker->failures > SUPERVISOR_MAX_FAILURES) {
        log_error("supervisor",
                  "worker %u (pid %ld) %s, failure %u in a row: giving up, stopping the "
                  "other workers",
                  index, (long)pid, how, worker->failures);
        sup->exit_code = 1;
        supervisor_stop(sup, SIGTERM, "workers keep failing");
        return;
    }
    int64_t delay = SUPERVISOR_BACKOFF_MS << (worker->failures - 1);
    if (delay > SUPERVISOR_BACKOFF_MAX_MS)
        delay = SUPERVISOR_BACKOFF_MAX_MS;
    worker->restart_at_ms = now + delay;
    log_error("supervisor",
              "worker %u (pid %ld) %s unexpectedly: restarting it in %lld ms (failure %u of %u)",
              index, (long)pid, how, (long long)delay, worker->failures, SUPERVISOR_MAX_FAILURES);
}

static void supervisor_reap(struct supervisor *sup)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (uint32_t i = 0; i < sup->count; i++)
            if (sup->workers[i].pid == pid)
                supervisor_on_exit(sup, i, status);
}

/* Serve the signals read from the signalfd: stop and reload first, then
 * reap (so a worker that ended on a systemd-wide SIGTERM is not restarted). */
static void supervisor_read_signals(struct supervisor *sup)
{
    struct signalfd_siginfo infos[16];
    ssize_t n = read(sup->signal_fd, infos, sizeof(infos));
    if (n <= 0)
        return;
    bool child = false;
    for (size_t i = 0; i < (size_t)n / sizeof(infos[0]); i++) {
        switch (infos[i].ssi_signo) {
        case SIGTERM: supervisor_stop(sup, SIGTERM, "SIGTERM"); break;
        case SIGINT: supervisor_stop(sup, SIGINT, "SIGINT"); break;
        case SIGHUP:
            if (sup->stopping)
                break;
            log_info("supervisor", "SIGHUP: passed on to the workers");
            notify_reloading();
            sup->reloading = true;
            for (uint32_t w = 0; w < sup->count; w++)
                sup->workers[w].ready = false;
            supervisor_forward(sup, SIGHUP);
            break;
        case SIGCHLD: child = true; break;
        default: break;
        }
    }
    if (child)
        supervisor_reap(sup);
}

static bool supervisor_any_running(const struct supervisor *sup)
{
    for (uint32_t i = 0; i < sup->count; i++)
        if (sup->workers[i].pid || sup->workers[i].restart_at_ms)
            return true;
    return false;
}

/* The supervisor's loop; 1 when it returns in a worker (child). */
static int supervisor_loop(struct supervisor *sup)
{
    while (supervisor_any_running(sup)) {
        struct pollfd fds[1 + 64];
        uint32_t owners[1 + 64];
        nfds_t count = 0;
        fds[count++] = (struct pollfd){.fd = sup->signal_fd, .events = POLLIN};
        for (uint32_t i = 0; i < sup->count; i++) {
            if (sup->workers[i].status_fd < 0)
                continue;
            owners[count] = i;
            fds[count++] = (struct pollfd){.fd = sup->workers[i].status_fd, .events = POLLIN};
        }
        int64_t now = supervisor_now_ms(), wait_ms = -1;
        for (uint32_t i = 0; i < sup->count; i++) {
            int64_t at = sup->workers[i].restart_at_ms;
            if (at && (wait_ms < 0 || at - now < wait_ms))
                wait_ms = at - now < 0 ? 0 : at - now;
        }
        if (poll(fds, count, (int)wait_ms) < 0 && errno != EINTR) {
            log_error("supervisor", "poll failed: %s", strerror(errno));
            sup->exit_code = 1;
            supervisor_stop(sup, SIGTERM, "poll failed");
            return 0;
        }
        for (nfds_t f = 1; f < count; f++)
            if (fds[f].revents & (POLLIN | POLLHUP | POLLERR))
                supervisor_read_status(sup, owners[f]);
        if (fds[0].revents & POLLIN)
            supervisor_read_signals(sup);
        now = supervisor_now_ms();
        for (uint32_t i = 0; i < sup->count; i++) {
            if (!sup->workers[i].restart_at_ms || sup->workers[i].restart_at_ms > now ||
                sup->stopping)
                continue;
            int started = supervisor_start(sup, i);
            if (started == 0)
                return 1;
            if (started < 0) {
                sup->workers[i].restart_at_ms = now + SUPERVISOR_BACKOFF_MAX_MS;
                if (++sup->workers[i].failures > SUPERVISOR_MAX_FAILURES) {
                    sup->workers[i].restart_at_ms = 0;
                    sup->exit_code = 1;
                    supervisor_stop(sup, SIGTERM, "workers cannot be started");
                }
            }
        }
    }
    return 0;
}

int supervisor_run(struct config *config, uint32_t count, struct config **worker_config)
{
    *worker_config = NULL;
    struct supervisor sup = {.config = config, .count = count, .signal_fd = -1};
    char err[1024];
    log_set_level(config->log.level);
    log_set_format(config->log.format);
    log_set_node(config->node_id);
    sup.workers = calloc(count, sizeof(*sup.workers));
    if (!sup.workers || count > 64) {
        log_error("supervisor", "cannot start: %s",
                  sup.workers ? "more than 64 workers" : "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < count; i++)
        sup.workers[i].status_fd = -1;
    if (supervisor_reserve(&sup, err, sizeof(err)) < 0) {
        log_error("supervisor", "cannot start: %s", err);
        goto fail;
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &mask, &sup.old_mask) < 0 ||
        (sup.signal_fd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
        log_error("supervisor", "cannot start: signals: %s", strerror(errno));
        goto fail;
    }
    sup.watchdog_usec = notify_watchdog_usec();
    log_info("supervisor", "kbridged supervising %u worker processes (node %s-0 .. %s-%u)", count,
             config->node_id, config->node_id, count - 1);
    for (uint32_t i = 0; i < count; i++) {
        int started = supervisor_start(&sup, i);
        if (started == 0) {
            *worker_config = config;
            return 0;
        }
        if (started < 0) {
            sup.exit_code = 1;
            supervisor_stop(&sup, SIGTERM, "a worker cannot be started");
            break;
        }
    }
    if (supervisor_loop(&sup) == 1) {
        *worker_config = config;
        return 0;
    }
    if (sup.exit_code == 0 && !sup.stopping)
        log_info("supervisor", "every worker stopped on its own");
    log_info("supervisor", "stopped (exit %d)", sup.exit_code);
    int code = sup.exit_code;
    sigprocmask(SIG_SETMASK, &sup.old_mask, NULL);
    supervisor_free(&sup);
    config_free(config);
    return code;
fail:
    supervisor_free(&sup);
    config_free(config);
    return 1;
}
