/* SPDX-License-Identifier: Apache-2.0 */
/* shovel.c -- the shovels' status table and metrics (shovel.h,
 * architecture §15), and what the STOMP and AMQP shovels share: settings,
 * back-off, the passcode_file reader, the last writes at stop. Owns every struct shovel_status; the
 * metric series stay in the registry (metrics_remove on free). */
#include "shovel.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/util.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "address.h"
#include "clock.h"
#include "config.h"
#include "core.h"
#include "metrics.h"
#include "worker.h"

struct shovel_table {
    struct metrics *metrics;
    struct shovel_status **entries;
    size_t count;
};

static const char *const shovel_state_names[SHOVEL_STATE_COUNT] = {
    [SHOVEL_CONNECTING] = "connecting",
    [SHOVEL_RUNNING] = "running",
    [SHOVEL_BLOCKED] = "blocked",
};

const char *shovel_state_name(enum shovel_state state)
{
    return state < SHOVEL_STATE_COUNT ? shovel_state_names[state] : "connecting";
}

void shovel_end_text(const char *protocol, const char *address, const char *destination, char *out,
                     size_t out_size)
{
    if (address) /* an AMQP address may lack the leading slash ("orders"): add one */
        snprintf(out, out_size, "%s://%s%s%s", protocol, address,
                 destination && destination[0] != '/' ? "/" : "", destination ? destination : "");
    else
        snprintf(out, out_size, "%s:%s", protocol, destination ? destination : "");
}

struct shovel_table *shovel_table_new(struct metrics *metrics)
{
    struct shovel_table *table = calloc(1, sizeof(*table));
    if (table)
        table->metrics = metrics;
    return table;
}

static void shovel_status_unregister(struct shovel_table *table, struct shovel_status *status)
{
    if (!table->metrics)
        return;
    metrics_remove(table->metrics, status->moved);
    metrics_remove(table->metrics, status->duplicates);
    metrics_remove(table->metrics, status->reconnects);
    for (int s = 0; s < SHOVEL_STATE_COUNT; s++)
        metrics_remove(table->metrics, status->state_gauges[s]);
}

void shovel_table_free(struct shovel_table *table)
{
    if (!table)
        return;
    for (size_t i = 0; i < table->count; i++) {
        shovel_status_unregister(table, table->entries[i]);
        free(table->entries[i]);
    }
    free(table->entries);
    free(table);
}

struct shovel_status *shovel_status_add(struct shovel_table *table,
                                        const struct config_shovel *config)
{
    struct shovel_status **grown =
        realloc(table->entries, (table->count + 1) * sizeof(*table->entries));
    if (!grown)
        return NULL;
    table->entries = grown;
    struct shovel_status *status = calloc(1, sizeof(*status));
    if (!status)
        return NULL;
    snprintf(status->name, sizeof(status->name), "%s", config->name);
    shovel_end_text(config->source.protocol, config->source.address, config->source.destination,
                    status->source, sizeof(status->source));
    shovel_end_text(config->destination.protocol, config->destination.address,
                    config->destination.destination, status->destination,
                    sizeof(status->destination));
    status->state = SHOVEL_CONNECTING;
    status->since_ms = clock_wall_ms();
    if (table->metrics) {
        char labels[160], state_labels[200];
        metrics_label(labels, sizeof(labels), "shovel", status->name);
        status->moved = metrics_counter(table->metrics, "kbridge_shovel_messages_total",
                                        "Messages a shovel moved: confirmed at its destination "
                                        "and acknowledged at its source.",
                                        labels);
        status->duplicates = metrics_counter(
            table->metrics, "kbridge_shovel_duplicates_total",
            "Messages a shovel received again from its source (redelivered after a "
            "reconnect or restart; at-least-once: they may reach the destination twice).",
            labels);
        status->reconnects =
            metrics_counter(table->metrics, "kbridge_shovel_reconnects_total",
                            "Times a shovel reconnected to its legacy broker.", labels);
        for (int s = 0; s < SHOVEL_STATE_COUNT; s++) {
            char state_label[40];
            metrics_label(state_label, sizeof(state_label), "state", shovel_state_names[s]);
            snprintf(state_labels, sizeof(state_labels), "%s,%s", labels, state_label);
            status->state_gauges[s] = metrics_gauge(
                table->metrics, "kbridge_shovel_state",
                "1 for a shovel's current state (connecting, running, blocked), else 0.",
                state_labels);
        }
        if (status->state_gauges[SHOVEL_CONNECTING])
            *status->state_gauges[SHOVEL_CONNECTING] = 1;
    }
    table->entries[table->count++] = status;
    return status;
}

size_t shovel_table_count(const struct shovel_table *table) { return table ? table->count : 0; }

const struct shovel_status *shovel_table_at(const struct shovel_table *table, size_t index)
{
    return index < table->count ? table->entries[index] : NULL;
}

void shovel_status_set(struct shovel_status *status, enum shovel_state state, const char *error)
{
    if (state != status->state) {
        if (status->state_gauges[status->state])
            *status->state_gauges[status->state] = 0;
        status->state = state;
        status->since_ms = clock_wall_ms();
        if (status->state_gauges[state])
            *status->state_gauges[state] = 1;
    }
    if (error) {
        snprintf(status->last_error, sizeof(status->last_error), "%s", error);
        status->last_error_ms = clock_wall_ms();
    }
}

void shovel_status_moved(struct shovel_status *status)
{
    if (status->moved)
        (*status->moved)++;
}

void shovel_status_duplicate(struct shovel_status *status)
{
    if (status->duplicates)
        (*status->duplicates)++;
}

void shovel_status_reconnect(struct shovel_status *status)
{
    if (status->reconnects)
        (*status->reconnects)++;
}

/* ---- what the protocol clients share ---------------------------------------------- */

static char *shovel_copy(const char *text, bool *ok)
{
    if (!text)
        return NULL;
    char *copy = strdup(text);
    if (!copy)
        *ok = false;
    return copy;
}

int shovel_settings_copy(struct shovel_settings *settings, const struct config_shovel *config,
                         char *err, size_t err_size)
{
    memset(settings, 0, sizeof(*settings));
    settings->to_kbridge = strcmp(config->destination.protocol, "kbridge") == 0;
    const struct config_shovel_end *legacy =
        settings->to_kbridge ? &config->source : &config->destination;
    const struct config_shovel_end *kbridge =
        settings->to_kbridge ? &config->destination : &config->source;
    bool ok = true;
    settings->name = shovel_copy(config->name, &ok);
    settings->address = shovel_copy(legacy->address, &ok);
    settings->host = shovel_copy(legacy->host, &ok);
    settings->login = shovel_copy(legacy->login, &ok);
    settings->passcode = shovel_copy(legacy->passcode, &ok);
    settings->passcode_file = shovel_copy(legacy->passcode_file, &ok);
    settings->legacy_destination = shovel_copy(legacy->destination, &ok);
    settings->kbridge_text = shovel_copy(kbridge->destination, &ok);
    settings->user = shovel_copy(config->user ? config->user : "anonymous", &ok);
    settings->prefetch = config->prefetch;
    settings->delay_initial_ms = settings->delay_ms = config->reconnect_delay_initial;
    settings->delay_max_ms = config->reconnect_delay_max;
    settings->heartbeat_ms = config->heartbeat;
    settings->timeout_ms = config->connect_timeout;
    if (!ok) {
        snprintf(err, err_size, "shovels %s: out of memory", config->name);
        shovel_settings_clear(settings);
        return -1;
    }
    return 0;
}

void shovel_settings_clear(struct shovel_settings *settings)
{
    if (settings->passcode)
        memset(settings->passcode, 0, strlen(settings->passcode));
    free(settings->name);
    free(settings->address);
    free(settings->host);
    free(settings->login);
    free(settings->passcode);
    free(settings->passcode_file);
    free(settings->legacy_destination);
    free(settings->kbridge_text);
    free(settings->user);
    memset(settings, 0, sizeof(*settings));
}

void shovel_settings_set_passcode(struct shovel_settings *settings, char *passcode)
{
    if (settings->passcode) {
        memset(settings->passcode, 0, strlen(settings->passcode));
        free(settings->passcode);
    }
    settings->passcode = passcode;
}

uint64_t shovel_backoff_next(struct shovel_settings *settings)
{
    uint64_t wait = settings->delay_ms;
    settings->delay_ms *= 2;
    if (settings->delay_ms > settings->delay_max_ms)
        settings->delay_ms = settings->delay_max_ms;
    return wait;
}

void shovel_backoff_reset(struct shovel_settings *settings)
{
    settings->delay_ms = settings->delay_initial_ms;
}

char *shovel_read_passcode(const char *path, char *err, size_t err_size)
{
    FILE *file = fopen(path, "r");
    if (!file) {
        snprintf(err, err_size, "cannot read passcode_file %s: %s", path, strerror(errno));
        return NULL;
    }
    char line[1100];
    if (!fgets(line, sizeof(line), file))
        line[0] = '\0';
    fclose(file);
    line[strcspn(line, "\r\n")] = '\0';
    char *copy = strdup(line);
    memset(line, 0, sizeof(line));
    if (!copy)
        snprintf(err, err_size, "out of memory reading passcode_file %s", path);
    return copy;
}

/* ---- the kbridge end ------------------------------------------------------------ */

int shovel_kbridge_open(const struct shovel_settings *settings, const struct config_shovel *config,
                        const struct address_spelling *spelling, struct core *core,
                        struct shovel_table *table, struct destination *destination,
                        struct core_session **session, struct shovel_status **status, char *err,
                        size_t err_size)
{
    char reason[256];
    if (address_parse(spelling, settings->kbridge_text, destination, reason, sizeof(reason)) < 0 ||
        destination->wildcard) {
        snprintf(err, err_size, "shovels %s: kbridge destination %s: %s", settings->name,
                 settings->kbridge_text,
                 destination->wildcard ? "wildcards are not allowed" : reason);
        return -1;
    }
    char peer[96];
    snprintf(peer, sizeof(peer), "shovel:%s", settings->name);
    *session = core_session_new(core, "shovel", settings->user, NULL, peer);
    *status = shovel_status_add(table, config);
    if (!*session || !*status) {
        snprintf(err, err_size, "shovels %s: cannot open its session (out of memory)",
                 settings->name);
        return -1;
    }
    return 0;
}

/* ---- before each connect ------------------------------------------------------ */

struct shovel_prepare {
    struct worker_job *job;
    shovel_prepared_fn done; /* NULL once cancelled */
    void *opaque;
    char *address; /* copies: the settings stay on the loop */
    char *passcode_file;
    uint32_t pick; /* which of the name's addresses */
    struct shovel_target target;
    char error[SHOVEL_ERROR_MAX];
};

/* "host:port" into target->address: an IP literal without a lookup, else
 * getaddrinfo (blocks: worker thread). 0, or -1 with p->error. */
static int shovel_resolve(struct shovel_prepare *p)
{
    struct shovel_target *target = &p->target;
    target->address_len = (int)sizeof(target->address);
    if (evutil_parse_sockaddr_port(p->address, (struct sockaddr *)&target->address,
                                   &target->address_len) == 0)
        return 0;
    const char *colon = strrchr(p->address, ':');
    if (!colon || colon == p->address || !colon[1]) {
        snprintf(p->error, sizeof(p->error), "address %s is not HOST:PORT", p->address);
        return -1;
    }
    char host[256];
    snprintf(host, sizeof(host), "%.*s", (int)(colon - p->address), p->address);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &found);
    if (rc != 0 || !found) {
        snprintf(p->error, sizeof(p->error), "cannot resolve %s: %s", p->address,
                 rc ? gai_strerror(rc) : "no address");
        return -1;
    }
    size_t count = 0;
    for (const struct addrinfo *a = found; a; a = a->ai_next)
        count++;
    const struct addrinfo *chosen = found;
    for (size_t i = p->pick % count; i > 0; i--)
        chosen = chosen->ai_next;
    memcpy(&target->address, chosen->ai_addr, chosen->ai_addrlen);
    target->address_len = (int)chosen->ai_addrlen;
    freeaddrinfo(found);
    return 0;
}

static void shovel_prepare_work(void *arg)
{
    struct shovel_prepare *p = arg;
    if (shovel_resolve(p) == 0 && p->passcode_file)
        p->target.passcode = shovel_read_passcode(p->passcode_file, p->error, sizeof(p->error));
}

static void shovel_prepare_free(struct shovel_prepare *p)
{
    if (p->target.passcode) {
        memset(p->target.passcode, 0, strlen(p->target.passcode));
        free(p->target.passcode);
    }
    free(p->address);
    free(p->passcode_file);
    free(p);
}

static void shovel_prepare_done(void *arg, bool cancelled)
{
    struct shovel_prepare *p = arg;
    if (!cancelled && p->done) {
        bool ok = !p->error[0];
        p->done(p->opaque, ok ? &p->target : NULL, ok ? NULL : p->error);
    }
    shovel_prepare_free(p);
}

struct shovel_prepare *shovel_prepare_start(struct worker_pool *workers,
                                            struct shovel_settings *settings,
                                            shovel_prepared_fn done, void *opaque, char *err,
                                            size_t err_size)
{
    if (!workers) {
        snprintf(err, err_size, "no worker pool to resolve %s on", settings->address);
        return NULL;
    }
    struct shovel_prepare *p = calloc(1, sizeof(*p));
    if (p) {
        p->done = done;
        p->opaque = opaque;
        p->pick = settings->connects++;
        p->address = strdup(settings->address ? settings->address : "");
        p->passcode_file = settings->passcode_file ? strdup(settings->passcode_file) : NULL;
    }
    if (!p || !p->address || (settings->passcode_file && !p->passcode_file) ||
        !(p->job = worker_submit(workers, shovel_prepare_work, shovel_prepare_done, p))) {
        if (p)
            shovel_prepare_free(p);
        snprintf(err, err_size, "out of memory preparing to connect to %s", settings->address);
        return NULL;
    }
    return p;
}

void shovel_prepare_cancel(struct shovel_prepare *prepare)
{
    if (!prepare)
        return;
    prepare->done = NULL;
    worker_cancel(prepare->job); /* its done frees it */
}

/* ---- at stop: the last frames out ------------------------------------------- */

/* Wait until `fd` is ready for `events` or `deadline` (monotonic ms) passes:
 * true when ready. */
static bool shovel_socket_wait(evutil_socket_t fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = clock_monotonic_ms();
        if (now >= deadline)
            return false;
        struct pollfd ready = {.fd = fd, .events = events};
        int got = poll(&ready, 1, (int)(deadline - now));
        if (got < 0 && errno == EINTR)
            continue;
        return got > 0;
    }
}

size_t shovel_socket_flush(struct bufferevent *bev, uint64_t timeout_ms)
{
    struct evbuffer *output = bufferevent_get_output(bev);
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0)
        return evbuffer_get_length(output);
    uint64_t deadline = clock_monotonic_ms() + timeout_ms;
    /* a socket bufferevent freezes its output's start: only its own write
     * callback may drain it, and evbuffer_write would refuse */
    evbuffer_unfreeze(output, 1);
    while (evbuffer_get_length(output) > 0) {
        int wrote = evbuffer_write(output, fd);
        if (wrote > 0)
            continue;
        if (wrote < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) &&
            shovel_socket_wait(fd, POLLOUT, deadline))
            continue;
        break; /* the connection is gone, or the time is up */
    }
    evbuffer_freeze(output, 1);
    return evbuffer_get_length(output);
}

bool shovel_socket_linger(struct bufferevent *bev, uint64_t timeout_ms, shovel_goodbye_fn goodbye,
                          void *opaque)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0 || shutdown(fd, SHUT_WR) < 0)
        return false;
    char bytes[4096];
    struct evbuffer *input = bufferevent_get_input(bev);
    int held; /* read by the loop before it stopped, not yet handled */
    while ((held = evbuffer_remove(input, bytes, sizeof(bytes))) > 0)
        if (goodbye && goodbye(opaque, bytes, (size_t)held))
            return true;
    uint64_t deadline = clock_monotonic_ms() + timeout_ms;
    while (shovel_socket_wait(fd, POLLIN, deadline)) {
        ssize_t got = recv(fd, bytes, sizeof(bytes), 0);
        if (got == 0)
            return true; /* the broker closed */
        if (got > 0 && goodbye && goodbye(opaque, bytes, (size_t)got))
            return true;
        if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return false; /* the connection is gone */
    }
    return false;
}
