/* SPDX-License-Identifier: Apache-2.0 */
/* core_session.c -- the core's session layer (architecture §10): client
 * sessions, authentication (password checks on the worker pool, the answer
 * decided on the loop against the config in force) and ACLs (POSIX regexes
 * per user, each session caching its decisions per destination name until a
 * reload), per-user vhost permissions (auth.users[].vhosts, checked when
 * a session enters its vhost), and the revocation of sessions a reload no
 * longer allows. */
#include <errno.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "config.h"
#include "core.h"
#include "core_internal.h"
#include "log.h"
#include "password.h"
#include "worker.h"

/* Hashed against for unknown users, so that timing does not tell which
 * users exist. */
#define CORE_DUMMY_SETTING "$6$kbridge$"

/* ---- authentication and ACLs --------------------------------------------------- */

static const struct config_user *core_user(const struct config *config, const char *name)
{
    for (size_t i = 0; i < config->auth.user_count; i++)
        if (strcmp(config->auth.users[i].name, name) == 0)
            return &config->auth.users[i];
    return NULL;
}

/* What a user's password is checked against: its hash, or (only with
 * auth.insecure_plaintext) its plaintext password. */
static const char *core_user_secret(const struct config_user *entry)
{
    return entry->password_hash ? entry->password_hash : entry->password;
}

#define CORE_ANONYMOUS_REFUSED "login required: anonymous access is disabled"

int core_authenticate_anonymous(struct core *core, char *user, size_t user_size, char *err,
                                size_t err_size)
{
    if (!core_config(core)->auth.anonymous) {
        (*core->auth_failures)++;
        snprintf(err, err_size, "%s", CORE_ANONYMOUS_REFUSED);
        return CORE_ERR_ACCESS;
    }
    snprintf(user, user_size, "anonymous");
    return CORE_OK;
}

int core_authenticate_certificate(struct core *core, const char *identity, char *user,
                                  size_t user_size, char *err, size_t err_size)
{
    if (!identity || !*identity || !core_user(core_config(core), identity)) {
        (*core->auth_failures)++;
        snprintf(err, err_size, "the client certificate names user '%s', who is not in auth.users",
                 identity ? identity : "");
        return CORE_ERR_ACCESS;
    }
    snprintf(user, user_size, "%s", identity);
    return CORE_OK;
}

/* ---- the same off the loop ---- */

/* One core_authenticate_start. The worker thread touches only passcode,
 * setting, match and failed; everything else is the loop's. */
struct core_auth {
    struct core *core;
    core_auth_fn done; /* NULL once cancelled */
    void *opaque;
    struct worker_job *job;
    bool anonymous; /* no login given */
    bool plaintext; /* setting is a plaintext password (auth.insecure_plaintext) */
    bool known;     /* the user existed when the check started */
    bool match;     /* worker: the passcode hashes to `setting` */
    bool failed;    /* worker: out of memory */
    char *login;
    char *passcode;         /* wiped after the hash */
    char *setting;          /* the user's hash, or CORE_DUMMY_SETTING */
    char *peer;             /* core_authenticate_start_from: failures counted per address */
    struct event *throttle; /* throttled: answers CORE_ERR_ACCESS when it fires */
    char reason[160];       /* throttled: the answer's reason */
};

static void core_auth_free(struct core_auth *auth)
{
    if (auth->passcode) {
        explicit_bzero(auth->passcode, strlen(auth->passcode));
        free(auth->passcode);
    }
    free(auth->login);
    free(auth->setting);
    free(auth->peer);
    if (auth->throttle)
        event_free(auth->throttle);
    free(auth);
}

/* Worker thread. */
static void core_auth_work(void *arg)
{
    struct core_auth *auth = arg;
    if (auth->plaintext) {
        size_t len = strlen(auth->setting);
        auth->match =
            strlen(auth->passcode) == len && CRYPTO_memcmp(auth->passcode, auth->setting, len) == 0;
    } else {
        auth->match = password_verify(auth->passcode, auth->setting);
    }
    explicit_bzero(auth->passcode, strlen(auth->passcode));
}

/* Loop thread: decide against the config in force now and answer. */
static void core_auth_done(void *arg, bool cancelled)
{
    struct core_auth *auth = arg;
    if (cancelled || !auth->done) {
        core_auth_free(auth); /* the owner is gone; so may the core be (shutdown) */
        return;
    }
    struct core *core = auth->core;
    const struct config *config = core_config(core);
    const char *user = NULL;
    const char *reason = NULL;
    int result = CORE_ERR_ACCESS;
    if (auth->failed) {
        result = CORE_ERR_INTERNAL;
        reason = "out of memory";
    } else if (auth->anonymous) {
        if (config->auth.anonymous) {
            result = CORE_OK;
            user = "anonymous";
        } else {
            reason = CORE_ANONYMOUS_REFUSED;
        }
    } else {
        /* A reload while hashing may have removed the user or changed the password. */
        const struct config_user *entry = core_user(config, auth->login);
        if (auth->known && auth->match && entry &&
            strcmp(core_user_secret(entry), auth->setting) == 0) {
            result = CORE_OK;
            user = auth->login;
        } else {
            reason = "bad login or passcode";
        }
    }
    if (result == CORE_ERR_ACCESS) {
        (*core->auth_failures)++;
        core_limits_auth_failed(core, auth->peer);
    }
    auth->done(auth->opaque, result, user, reason);
    core_auth_free(auth);
}

struct core_auth *core_authenticate_start(struct core *core, const char *login,
                                          const char *passcode, core_auth_fn done, void *opaque)
{
    if (!core->workers)
        return NULL;
    struct core_auth *auth = calloc(1, sizeof(*auth));
    if (!auth)
        return NULL;
    auth->core = core;
    auth->done = done;
    auth->opaque = opaque;
    auth->anonymous = !login || !*login;
    if (!auth->anonymous) {
        const struct config_user *entry = core_user(core_config(core), login);
        auth->known = entry != NULL;
        auth->login = strdup(login);
        auth->passcode = strdup(passcode ? passcode : "");
        auth->plaintext = entry && !entry->password_hash;
        auth->setting = strdup(entry ? core_user_secret(entry) : CORE_DUMMY_SETTING);
        if (!auth->login || !auth->passcode || !auth->setting) {
            core_auth_free(auth);
            return NULL;
        }
    }
    /* Anonymous: nothing to hash, but the answer still comes from the loop. */
    auth->job =
        worker_submit(core->workers, auth->anonymous ? NULL : core_auth_work, core_auth_done, auth);
    if (!auth->job) {
        core_auth_free(auth);
        return NULL;
    }
    return auth;
}

/* A throttled attempt's delay is over: refuse it, unchecked. */
static void core_auth_on_throttle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct core_auth *auth = arg;
    (*auth->core->auth_failures)++;
    auth->done(auth->opaque, CORE_ERR_ACCESS, NULL, auth->reason);
    core_auth_free(auth);
}

struct core_auth *core_authenticate_start_from(struct core *core, const char *peer,
                                               const char *login, const char *passcode,
                                               core_auth_fn done, void *opaque)
{
    uint32_t most = 0;
    const char *limit = core_auth_throttled(core, peer, &most);
    if (!limit) {
        struct core_auth *auth = core_authenticate_start(core, login, passcode, done, opaque);
        if (auth && peer && !(auth->peer = strdup(peer))) {
            core_authenticate_cancel(auth);
            return NULL;
        }
        return auth;
    }
    struct core_auth *auth = calloc(1, sizeof(*auth));
    if (!auth)
        return NULL;
    auth->core = core;
    auth->done = done;
    auth->opaque = opaque;
    snprintf(auth->reason, sizeof(auth->reason),
             "too many failed logins from this address: %u in the last minute (%s); try again "
             "later",
             most, limit);
    uint64_t ms = core_config(core)->limits.auth_failure_delay_ms;
    struct timeval delay = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    auth->throttle = evtimer_new(core->base, core_auth_on_throttle, auth);
    if (!auth->throttle || evtimer_add(auth->throttle, &delay) < 0) {
        core_auth_free(auth);
        return NULL;
    }
    return auth;
}

void core_authenticate_cancel(struct core_auth *auth)
{
    if (!auth)
        return;
    if (auth->throttle) { /* no job: nothing else will free it */
        core_auth_free(auth);
        return;
    }
    auth->done = NULL;        /* the completion frees it */
    worker_cancel(auth->job); /* not hashed when not started yet */
}

/* ---- the session's ACL cache ---- */

/* Destination names a session remembers decisions for; past it the cache
 * starts over (a session that touches that many names pays the regexes
 * again, as every session did before). */
#define CORE_ACL_CACHE_MAX 256

/* One destination name's decisions by enum core_acl_action: -1 not decided
 * yet, 0 refused, 1 allowed. */
struct core_acl_entry {
    signed char decision[CORE_ACL_ACTIONS];
    char name[];
};

static void core_acl_cache_clear(struct core_session *session)
{
    struct u64_map *map = &session->acl_cache;
    if (map->slots)
        for (size_t i = 0; i <= map->mask; i++)
            free(map->slots[i].value);
    u64_map_free(map);
}

/* The session's user entry in the config in force; drops the cached
 * decisions when a reload replaced the config since they were made. */
static const struct config_user *core_acl_user(struct core_session *session)
{
    const struct core *core = session->core;
    if (session->acl_generation != core->config_generation) {
        core_acl_cache_clear(session);
        session->acl_user = core_user(core_config(core), session->user);
        session->acl_generation = core->config_generation;
    }
    return session->acl_user;
}

/* The cache entry for `name`, created when there is room; NULL when another
 * name holds its key or memory is short (the caller decides uncached). */
static struct core_acl_entry *core_acl_entry(struct core_session *session, const char *name)
{
    size_t length = strlen(name);
    uint64_t key = u64_map_string_key(name, length);
    struct core_acl_entry *entry = u64_map_get(&session->acl_cache, key);
    if (entry)
        return strcmp(entry->name, name) == 0 ? entry : NULL;
    if (session->acl_cache.count >= CORE_ACL_CACHE_MAX)
        core_acl_cache_clear(session);
    if (u64_map_reserve(&session->acl_cache) < 0 || !(entry = malloc(sizeof(*entry) + length + 1)))
        return NULL;
    memset(entry->decision, -1, sizeof(entry->decision));
    memcpy(entry->name, name, length + 1);
    u64_map_put(&session->acl_cache, key, entry);
    return entry;
}

/* The patterns that decide `action` for `user` in `vhost`: its
 * `permissions` entry for the vhost (configure, write, read, as RabbitMQ),
 * or without `permissions` its publish and consume lists (declaring and
 * deleting an exchange needs publish, a queue consume). *count 0 when none. */
static const struct config_pattern *core_acl_patterns(const struct config_user *user,
                                                      const char *vhost,
                                                      enum core_acl_action action, size_t *count)
{
    if (user->permissions) {
        const struct config_permission *permission = config_user_permission(user, vhost);
        if (permission &&
            (action == CORE_ACL_CONFIGURE_EXCHANGE || action == CORE_ACL_CONFIGURE_QUEUE)) {
            *count = permission->configure_count;
            return permission->configure;
        }
        return config_user_patterns(
            user, vhost, action == CORE_ACL_PUBLISH || action == CORE_ACL_BIND_TO_QUEUE, count);
    }
    return config_user_patterns(
        user, vhost, action == CORE_ACL_PUBLISH || action == CORE_ACL_CONFIGURE_EXCHANGE, count);
}

const char *core_acl_action_name(const struct core_session *session, enum core_acl_action action)
{
    const struct config_user *user = session->acl_user;
    bool per_vhost = user && user->permissions;
    switch (action) {
    case CORE_ACL_PUBLISH: return per_vhost ? "write" : "publish";
    case CORE_ACL_CONSUME: return per_vhost ? "read" : "consume";
    case CORE_ACL_BIND_TO_QUEUE: return per_vhost ? "write" : "consume";
    case CORE_ACL_CONFIGURE_EXCHANGE: return per_vhost ? "configure" : "publish";
    default: return per_vhost ? "configure" : "consume";
    }
}

/* Anonymous sessions (only possible when auth.anonymous is on) may do
 * everything; revoked ones nothing. Each name's decision is computed once
 * per configuration and vhost (regexes of the user's patterns) and then
 * cached. */
bool core_acl_may(struct core_session *session, enum core_acl_action action, const char *name)
{
    if (session->revoked)
        return false;
    if (session->anonymous)
        return true;
    const struct config_user *user = core_acl_user(session);
    if (!user)
        return false; /* removed by a reload */
    struct core_acl_entry *entry = core_acl_entry(session, name);
    signed char *decision = entry ? &entry->decision[action] : NULL;
    if (decision && *decision >= 0)
        return *decision;
    size_t count = 0;
    const struct config_pattern *patterns = core_acl_patterns(user, session->vhost, action, &count);
    bool allowed = config_patterns_match(patterns, count, name);
    if (decision)
        *decision = allowed;
    return allowed;
}

bool core_acl_allows(struct core_session *session, bool publish, const char *name)
{
    return core_acl_may(session, publish ? CORE_ACL_PUBLISH : CORE_ACL_CONSUME, name);
}

bool core_may_publish(struct core_session *session, const struct destination *destination)
{
    /* the default exchange and amq.topic: the routing key names the topic,
     * so each message is checked (core_publish) */
    if (destination->kind == DESTINATION_EXCHANGE &&
        engine_exchange_is_topic_per_key(destination->name))
        return !session->revoked;
    /* a reply: the unguessable token is the permission (as core_publish) */
    if (destination->kind == DESTINATION_REPLY_QUEUE)
        return !session->revoked;
    return core_acl_allows(session, true, destination->name);
}

bool core_session_may_consume_topic(struct core_session *session, const char *topic)
{
    const char *prefix = session->topic_prefix;
    size_t prefix_len = strlen(prefix);
    const char *name = strncmp(topic, prefix, prefix_len) == 0 ? topic + prefix_len : topic;
    return core_acl_allows(session, false, name);
}

/* ---- sessions -------------------------------------------------------------------- */

struct core_session *core_session_new(struct core *core, const char *protocol, const char *user,
                                      const char *client_id, const char *peer)
{
    struct core_session *session = calloc(1, sizeof(*session));
    if (!session)
        return NULL;
    session->core = core;
    session->serial = ++core->next_session_serial;
    session->connected_ms = clock_wall_ms();
    session->protocol = strdup(protocol);
    session->user = strdup(user);
    session->client_id = client_id && *client_id ? strdup(client_id) : NULL;
    session->peer = strdup(peer ? peer : "-");
    session->vhost = strdup(CORE_DEFAULT_VHOST);
    session->topic_prefix = strdup(core_config(core)->kafka.topic_prefix);
    session->anonymous = strcmp(user, "anonymous") == 0 && core_config(core)->auth.anonymous &&
                         !core_user(core_config(core), "anonymous");
    const struct config_user *entry =
        session->anonymous ? NULL : core_user(core_config(core), user);
    if (entry)
        session->password_hash = strdup(core_user_secret(entry));
    /* getrandom, not RAND_bytes: the seed picks partitions and needs no
     * DRBG, while the process's first RAND_bytes initialises OpenSSL's
     * provider and random generators (~2 MiB of RSS measured), which a node
     * whose clients only connect would pay at the first CONNECT. Never
     * blocks; the fallback only spreads producers less evenly. */
    if (getrandom(&session->sticky_seed, sizeof(session->sticky_seed), GRND_NONBLOCK) !=
        (ssize_t)sizeof(session->sticky_seed))
        session->sticky_seed = ((uint64_t)random() << 32) ^ (uint64_t)random() ^ (uintptr_t)session;
    if (!session->protocol || !session->user || !session->peer || !session->vhost ||
        !session->topic_prefix || (client_id && *client_id && !session->client_id) ||
        (entry && !session->password_hash)) {
        free(session->password_hash);
        free(session->protocol);
        free(session->user);
        free(session->client_id);
        free(session->peer);
        free(session->vhost);
        free(session->topic_prefix);
        free(session);
        return NULL;
    }
    session->next = core->sessions;
    if (core->sessions)
        core->sessions->prev = session;
    core->sessions = session;
    core_limits_session_opened(core, session->user);
    return session;
}

uint32_t core_session_unconfirmed(const struct core_session *session)
{
    return session->unconfirmed;
}

void core_session_close(struct core_session *session)
{
    if (!session)
        return;
    struct core *core = session->core;
    core_transaction_session_closed(session); /* releases held acks before the subscriptions go */
    while (session->subscriptions)
        core_unsubscribe(session->subscriptions);
    core_publish_forget_session(session);
    core_definitions_session_closed(session);
    core_exchange_session_closed(session);
    core_purge_session_closed(session);
    core_depth_session_closed(session);
    if (session->prev)
        session->prev->next = session->next;
    else
        core->sessions = session->next;
    if (session->next)
        session->next->prev = session->prev;
    core_acl_cache_clear(session);
    core_unacked_session_closed(session);
    core_limits_session_closed(core, session->user);
    free(session->password_hash);
    free(session->protocol);
    free(session->user);
    free(session->client_id);
    free(session->peer);
    free(session->vhost);
    free(session->topic_prefix);
    free(session);
}

/* May the session's user use `vhost` under the config in force (its
 * auth.users[].vhosts)? Anonymous sessions may use every vhost; a user the
 * config no longer has, none. */
static bool core_session_may_use_vhost(const struct core_session *session, const char *vhost)
{
    if (session->anonymous)
        return true;
    const struct config_user *entry = core_user(core_config(session->core), session->user);
    return entry && config_user_may_use_vhost(entry, vhost);
}

int core_session_set_vhost(struct core_session *session, const char *vhost, char *err,
                           size_t err_size)
{
    const char *prefix = core_vhost_topic_prefix(session->core, vhost);
    if (!prefix) {
        snprintf(err, err_size, "vhost '%s' not found", vhost);
        return CORE_ERR_NOT_FOUND;
    }
    if (!core_session_may_use_vhost(session, vhost)) {
        snprintf(err, err_size, "access to vhost '%s' refused for user '%s'", vhost, session->user);
        return CORE_ERR_ACCESS;
    }
    char *name = strdup(vhost);
    char *prefix_copy = strdup(prefix);
    if (!name || !prefix_copy) {
        free(name);
        free(prefix_copy);
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    free(session->vhost);
    free(session->topic_prefix);
    session->vhost = name;
    session->topic_prefix = prefix_copy;
    session->vhost_checked = true;
    core_acl_cache_clear(session); /* per-vhost permissions: decisions made for another */
    return CORE_OK;
}

const char *core_session_vhost(const struct core_session *session) { return session->vhost; }

void core_session_set_revoke(struct core_session *session, core_revoke_fn revoked, void *opaque)
{
    session->revoke = revoked;
    session->revoke_opaque = opaque;
}

/* Why the config in force no longer allows this session, or NULL; a
 * reason naming the vhost is written into `buffer`. */
static const char *core_session_disallowed(const struct core_session *session, char *buffer,
                                           size_t buffer_size)
{
    const struct config *config = core_config(session->core);
    if (session->anonymous)
        return config->auth.anonymous ? NULL
                                      : "anonymous access was disabled (auth.anonymous is off)";
    const struct config_user *entry = core_user(config, session->user);
    if (!entry)
        return "the user was removed from the configuration";
    if (!session->password_hash || strcmp(core_user_secret(entry), session->password_hash) != 0)
        return "the user's password was changed";
    if (session->vhost_checked && !config_user_may_use_vhost(entry, session->vhost)) {
        snprintf(buffer, buffer_size, "access to vhost '%s' refused for user '%s'", session->vhost,
                 session->user);
        return buffer;
    }
    return NULL;
}

void core_revoke_sessions(struct core *core)
{
    for (struct core_session *session = core->sessions, *next; session; session = next) {
        next = session->next;
        if (session->revoked)
            continue;
        char buffer[600];
        const char *reason = core_session_disallowed(session, buffer, sizeof(buffer));
        if (!reason)
            continue;
        session->revoked = true;
        log_info("core", "%s: %s session of user %s revoked by the reload: %s", session->peer,
                 session->protocol, session->user, reason);
        if (session->revoke)
            session->revoke(session->revoke_opaque, reason);
    }
}

/* ---- the admin API's view (core.h) ---- */

void core_each_session(struct core *core, core_session_each_fn fn, void *opaque)
{
    for (struct core_session *session = core->sessions; session; session = session->next) {
        struct core_session_info info = {
            .id = session->serial,
            .protocol = session->protocol,
            .user = session->user,
            .client_id = session->client_id,
            .peer = session->peer,
            .vhost = core_session_vhost(session),
            .connected_ms = session->connected_ms,
            .unconfirmed = session->unconfirmed,
        };
        for (struct core_subscription *sub = session->subscriptions; sub; sub = sub->next)
            info.subscriptions++;
        if (!fn(&info, opaque))
            return;
    }
}

size_t core_queue_consumer_count(const struct core *core, const char *vhost, const char *name)
{
    size_t count = 0;
    for (const struct core_session *session = core->sessions; session; session = session->next)
        for (const struct core_subscription *sub = session->subscriptions; sub; sub = sub->next)
            count += sub->destination.kind == DESTINATION_QUEUE && !sub->durable_name &&
                     strcmp(sub->destination.name, name) == 0 &&
                     (!vhost || strcmp(sub->vhost, vhost) == 0);
    return count;
}

int core_session_close_by_id(struct core *core, uint64_t id, const char *reason)
{
    for (struct core_session *session = core->sessions; session; session = session->next) {
        if (session->serial != id)
            continue;
        if (!session->revoke)
            return CORE_ERR_UNSUPPORTED;
        if (session->revoked)
            return CORE_OK; /* already being closed */
        session->revoked = true;
        log_info("core", "%s: %s session of user %s closed: %s", session->peer, session->protocol,
                 session->user, reason);
        session->revoke(session->revoke_opaque, reason);
        return CORE_OK;
    }
    return CORE_ERR_NOT_FOUND;
}
