/* core.c -- the protocol-independent heart of kbridge: sessions,
 * authentication and ACLs, the publish path (architecture §3–§4) and the routing
 * of subscriptions to queues (queue.c) and topic readers (topic.c).
 *
 * Publish path: an adapter's message becomes one Kafka record (body verbatim,
 * key from the message or the kafka-key / JMSXGroupID / group-id properties,
 * one header per property, message-id generated when absent, user-id set to
 * the authenticated user). The adapter's callback runs only from Kafka's
 * delivery report: nothing is confirmed before Kafka has it. A session that
 * closes first detaches its pending publishes so late reports go nowhere. */
#include "core.h"

#include <crypt.h>
#include <errno.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "core_internal.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "reply.h"
#include "worker.h"

/* message-id, user-id, kbridge-reply-token, kafka_replyTopic, kafka_correlationId */
#define CORE_MAX_PROPERTIES_EXTRA 5
#define CORE_HEADER_REPLY_TOPIC RECORD_NATIVE_REPLY_TOPIC
#define CORE_HEADER_CORRELATION RECORD_NATIVE_CORRELATION
/* Hashed against for unknown users, so that timing does not tell which
 * users exist. */
#define CORE_DUMMY_SETTING "$6$kbridge$"

struct core_publish_pending {
    struct core_publish_pending *next;
    struct core_publish_pending *prev;
    struct core_session *session; /* NULL once the session closed */
    struct destination_stats *stats;
    core_publish_fn done;
    void *opaque;
};

/* ---- stats ------------------------------------------------------------------ */

struct destination_stats *core_stats(struct core *core, enum destination_kind kind,
                                     const char *name)
{
    uint32_t hash = 2166136261u ^ (uint32_t)kind; /* FNV-1a */
    size_t name_len = 0;
    for (const char *c = name; *c; c++, name_len++)
        hash = (hash ^ (unsigned char)*c) * 16777619u;
    struct destination_stats **bucket = &core->stats[hash % CORE_STATS_BUCKETS];
    for (struct destination_stats *s = *bucket; s; s = s->next)
        if (s->kind == kind && strcmp(s->name, name) == 0)
            return s;
    if (name_len >= sizeof(((struct destination_stats *)0)->name))
        return NULL; /* longer than any valid destination name: no stats */
    struct destination_stats *stats = calloc(1, sizeof(*stats));
    if (!stats)
        return NULL;
    stats->kind = kind;
    memcpy(stats->name, name, name_len + 1);
    char kind_label[64], name_label[ADDRESS_NAME_MAX * 2 + 32];
    char labels[sizeof(kind_label) + sizeof(name_label) + 2];
    if (metrics_label(kind_label, sizeof(kind_label), "kind", destination_kind_name(kind)) < 0 ||
        metrics_label(name_label, sizeof(name_label), "destination", name) < 0) {
        free(stats);
        return NULL;
    }
    snprintf(labels, sizeof(labels), "%s,%s", kind_label, name_label);
    struct metrics *m = core->metrics;
    stats->published = metrics_counter(m, "kbridge_destination_published_total",
                                       "Messages confirmed by Kafka, per destination.", labels);
    stats->delivered = metrics_counter(m, "kbridge_destination_delivered_total",
                                       "Deliveries to subscribers (first and repeated).", labels);
    stats->acked = metrics_counter(m, "kbridge_destination_acked_total",
                                   "Deliveries acknowledged (accepted).", labels);
    stats->nacked =
        metrics_counter(m, "kbridge_destination_nacked_total",
                        "Deliveries negatively acknowledged (released or rejected).", labels);
    stats->redelivered = metrics_counter(m, "kbridge_destination_redelivered_total",
                                         "Deliveries of a message delivered before.", labels);
    stats->dead_lettered = metrics_counter(m, "kbridge_destination_dead_lettered_total",
                                           "Messages confirmed in the dead-letter topic.", labels);
    stats->in_flight =
        metrics_gauge(m, "kbridge_destination_in_flight",
                      "Messages buffered on this node (available + unacked).", labels);
    stats->consumers =
        metrics_gauge(m, "kbridge_destination_consumers", "Subscribers on this node.", labels);
    stats->paused_partitions =
        metrics_gauge(m, "kbridge_destination_paused_partitions",
                      "Partitions paused because in-flight hit max_in_flight.", labels);
    if (!stats->published || !stats->delivered || !stats->acked || !stats->nacked ||
        !stats->redelivered || !stats->dead_lettered || !stats->in_flight || !stats->consumers ||
        !stats->paused_partitions) {
        free(stats);
        return NULL;
    }
    stats->next = *bucket;
    *bucket = stats;
    return stats;
}

/* ---- the core ------------------------------------------------------------------ */

struct core *core_new(struct event_base *base, struct config *const *config, struct kafka *kafka,
                      struct metrics *metrics, struct worker_pool *workers, char *err,
                      size_t err_size)
{
    struct core *core = calloc(1, sizeof(*core));
    if (!core) {
        snprintf(err, err_size, "core: out of memory");
        return NULL;
    }
    core->base = base;
    core->config = config;
    core->config_generation = 1;
    core->kafka = kafka;
    core->metrics = metrics;
    core->workers = workers;
    core->late_settles = metrics_counter(
        metrics, "kbridge_late_settles_total",
        "Acks/nacks for deliveries this node no longer owns (partition moved, already settled).",
        NULL);
    core->auth_failures = metrics_counter(metrics, "kbridge_auth_failures_total",
                                          "Failed client authentications.", NULL);
    core->requests_total = metrics_counter(
        metrics, "kbridge_requests_total",
        "Messages published with a temporary queue as reply-to (request-reply requests).", NULL);
    core->replies_routed = metrics_counter(metrics, "kbridge_replies_routed_total",
                                           "Replies read from this node's reply topic and "
                                           "delivered to a temporary queue.",
                                           NULL);
    char labels[64];
    metrics_label(labels, sizeof(labels), "reason", "unknown-token");
    core->replies_dropped = metrics_counter(
        metrics, "kbridge_replies_dropped_total",
        "Replies read from this node's reply topic that reached nobody: the temporary queue is "
        "gone, or the token is unknown or forged.",
        labels);
    for (int i = 0; i < 2; i++) {
        metrics_label(labels, sizeof(labels), "kind", i == 0 ? "queue" : "topic");
        core->expired[i] = metrics_counter(
            metrics, "kbridge_expired_total",
            "Messages not delivered because their expires time had passed.", labels);
    }
    metrics_label(labels, sizeof(labels), "reason", "expired");
    core->replies_dropped_expired = metrics_counter(
        metrics, "kbridge_replies_dropped_total",
        "Replies read from this node's reply topic that reached nobody: the temporary queue is "
        "gone, or the token is unknown or forged.",
        labels);
    static const double latency_bounds[] = {0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
                                            0.1,   0.25,  0.5,   1,    2.5,   10};
    core->reply_latency = metrics_histogram(
        metrics, "kbridge_reply_latency_seconds",
        "Time from a request's publish to its reply arriving on this node's reply topic.", NULL,
        latency_bounds, sizeof(latency_bounds) / sizeof(latency_bounds[0]));
    core->requests =
        reply_requests_new((*config)->replies.max_outstanding, (*config)->replies.remember_ms);
    if (!core->late_settles || !core->auth_failures || !core->requests_total ||
        !core->replies_routed || !core->replies_dropped || !core->requests || !core->expired[0] ||
        !core->expired[1] || !core->replies_dropped_expired || !core->reply_latency) {
        snprintf(err, err_size, "core: out of memory");
        reply_requests_free(core->requests);
        free(core);
        return NULL;
    }
    return core;
}

const struct config *core_config(const struct core *core) { return *core->config; }

static void core_revoke_sessions(struct core *core);

void core_reconfigure(struct core *core)
{
    core->config_generation++; /* sessions decide their ACLs afresh */
    core_revoke_sessions(core);
    queue_reconfigure_all(core);
    const struct config *config = core_config(core);
    reply_requests_configure(core->requests, config->replies.max_outstanding,
                             config->replies.remember_ms);
}

void core_drain(struct core *core) { core->draining = true; }

void core_free(struct core *core)
{
    if (!core)
        return;
    while (core->sessions)
        core_session_close(core->sessions);
    queue_free_all(core);
    topic_free_all(core);
    /* metrics series stay with the registry, which the server frees */
    for (size_t i = 0; i < CORE_STATS_BUCKETS; i++) {
        while (core->stats[i]) {
            struct destination_stats *next = core->stats[i]->next;
            free(core->stats[i]);
            core->stats[i] = next;
        }
    }
    reply_requests_free(core->requests);
    free(core);
}

static struct core *core_of(const struct core_session *session) { return session->core; }

/* ---- authentication and ACLs --------------------------------------------------- */

static const struct config_user *core_user(const struct config *config, const char *name)
{
    for (size_t i = 0; i < config->auth.user_count; i++)
        if (strcmp(config->auth.users[i].name, name) == 0)
            return &config->auth.users[i];
    return NULL;
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

/* ---- the same off the loop ---- */

/* One core_authenticate_start. The worker thread touches only passcode,
 * setting, match and failed; everything else is the loop's. */
struct core_auth {
    struct core *core;
    core_auth_fn done; /* NULL once cancelled */
    void *opaque;
    struct worker_job *job;
    bool anonymous; /* no login given */
    bool known;     /* the user existed when the check started */
    bool match;     /* worker: the passcode hashes to `setting` */
    bool failed;    /* worker: out of memory */
    char *login;
    char *passcode; /* wiped after the hash */
    char *setting;  /* the user's hash, or CORE_DUMMY_SETTING */
};

static void core_auth_free(struct core_auth *auth)
{
    if (auth->passcode) {
        explicit_bzero(auth->passcode, strlen(auth->passcode));
        free(auth->passcode);
    }
    free(auth->login);
    free(auth->setting);
    free(auth);
}

/* Worker thread. */
static void core_auth_work(void *arg)
{
    struct core_auth *auth = arg;
    struct crypt_data *data = calloc(1, sizeof(*data));
    if (!data) {
        auth->failed = true;
        return;
    }
    const char *hashed = crypt_r(auth->passcode, auth->setting, data);
    auth->match = hashed && hashed[0] != '*' && strcmp(hashed, auth->setting) == 0;
    explicit_bzero(data, sizeof(*data));
    free(data);
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
            strcmp(entry->password_hash, auth->setting) == 0) {
            result = CORE_OK;
            user = auth->login;
        } else {
            reason = "bad login or passcode";
        }
    }
    if (result == CORE_ERR_ACCESS)
        (*core->auth_failures)++;
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
        auth->setting = strdup(entry ? entry->password_hash : CORE_DUMMY_SETTING);
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

void core_authenticate_cancel(struct core_auth *auth)
{
    if (!auth)
        return;
    auth->done = NULL;        /* the completion frees it */
    worker_cancel(auth->job); /* not hashed when not started yet */
}

static bool core_patterns_match(const struct config_pattern *patterns, size_t count,
                                const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (regexec(&patterns[i].regex, name, 0, NULL, 0) == 0)
            return true;
    return false;
}

/* ---- the session's ACL cache ---- */

/* Destination names a session remembers decisions for; past it the cache
 * starts over (a session that touches that many names pays the regexes
 * again, as every session did before). */
#define CORE_ACL_CACHE_MAX 256

/* One destination name's decisions: -1 not decided yet, 0 refused, 1 allowed. */
struct core_acl_entry {
    signed char publish;
    signed char consume;
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
    entry->publish = entry->consume = -1;
    memcpy(entry->name, name, length + 1);
    u64_map_put(&session->acl_cache, key, entry);
    return entry;
}

/* Anonymous sessions (only possible when auth.anonymous is on) may do
 * everything; revoked ones nothing. Each name's decision is computed once
 * per configuration (regexes of the user's patterns) and then cached. */
static bool core_acl_allows(struct core_session *session, bool publish, const char *name)
{
    if (session->revoked)
        return false;
    if (session->anonymous)
        return true;
    const struct config_user *user = core_acl_user(session);
    if (!user)
        return false; /* removed by a reload */
    struct core_acl_entry *entry = core_acl_entry(session, name);
    signed char *decision = entry ? (publish ? &entry->publish : &entry->consume) : NULL;
    if (decision && *decision >= 0)
        return *decision;
    bool allowed = publish ? core_patterns_match(user->publish, user->publish_count, name)
                           : core_patterns_match(user->consume, user->consume_count, name);
    if (decision)
        *decision = allowed;
    return allowed;
}

bool core_may_publish(struct core_session *session, const struct destination *destination)
{
    return core_acl_allows(session, true, destination->name);
}

bool core_session_may_consume_topic(struct core_session *session, const char *topic)
{
    const char *prefix = core_config(session->core)->kafka.topic_prefix;
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
    session->protocol = strdup(protocol);
    session->user = strdup(user);
    session->client_id = client_id && *client_id ? strdup(client_id) : NULL;
    session->peer = strdup(peer ? peer : "-");
    session->anonymous = strcmp(user, "anonymous") == 0 && core_config(core)->auth.anonymous &&
                         !core_user(core_config(core), "anonymous");
    const struct config_user *entry =
        session->anonymous ? NULL : core_user(core_config(core), user);
    if (entry)
        session->password_hash = strdup(entry->password_hash);
    if (RAND_bytes((unsigned char *)&session->sticky_seed, sizeof(session->sticky_seed)) != 1)
        session->sticky_seed = ((uint64_t)random() << 32) ^ (uint64_t)random() ^ (uintptr_t)session;
    if (!session->protocol || !session->user || !session->peer ||
        (client_id && *client_id && !session->client_id) || (entry && !session->password_hash)) {
        free(session->password_hash);
        free(session->protocol);
        free(session->user);
        free(session->client_id);
        free(session->peer);
        free(session);
        return NULL;
    }
    session->next = core->sessions;
    if (core->sessions)
        core->sessions->prev = session;
    core->sessions = session;
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
    while (session->subscriptions)
        core_unsubscribe(session->subscriptions);
    for (struct core_publish_pending *p = session->pending; p; p = p->next)
        p->session = NULL;
    if (session->prev)
        session->prev->next = session->next;
    else
        core->sessions = session->next;
    if (session->next)
        session->next->prev = session->prev;
    core_acl_cache_clear(session);
    free(session->password_hash);
    free(session->protocol);
    free(session->user);
    free(session->client_id);
    free(session->peer);
    free(session);
}

void core_session_set_revoke(struct core_session *session, core_revoke_fn revoked, void *opaque)
{
    session->revoke = revoked;
    session->revoke_opaque = opaque;
}

/* Why the config in force no longer allows this session, or NULL. */
static const char *core_session_disallowed(const struct core_session *session)
{
    const struct config *config = core_config(session->core);
    if (session->anonymous)
        return config->auth.anonymous ? NULL
                                      : "anonymous access was disabled (auth.anonymous is off)";
    const struct config_user *entry = core_user(config, session->user);
    if (!entry)
        return "the user was removed from the configuration";
    if (!session->password_hash || strcmp(entry->password_hash, session->password_hash) != 0)
        return "the user's password was changed";
    return NULL;
}

static void core_revoke_sessions(struct core *core)
{
    for (struct core_session *session = core->sessions, *next; session; session = next) {
        next = session->next;
        if (session->revoked)
            continue;
        const char *reason = core_session_disallowed(session);
        if (!reason)
            continue;
        session->revoked = true;
        log_info("core", "%s: %s session of user %s revoked by the reload: %s", session->peer,
                 session->protocol, session->user, reason);
        if (session->revoke)
            session->revoke(session->revoke_opaque, reason);
    }
}

/* ---- publishing -------------------------------------------------------------------- */

/* splitmix64's finaliser: a bijection of 64-bit values that looks random. */
static uint64_t core_mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A version-4-shaped UUID for message-id. Ids must be unique, not secret:
 * 128 random bits drawn once per process, mixed with a counter (122 bits
 * survive the version and variant bits: as unlikely to collide as random
 * UUIDs, within a process and across processes). One
 * RAND_bytes per message cost ~15% of the publish path (OpenSSL checks
 * getpid() on every call). */
static void core_uuid(char out[37])
{
    static uint64_t seed[2];
    static uint64_t counter;
    static bool seeded;
    if (!seeded) {
        if (RAND_bytes((unsigned char *)seed, sizeof(seed)) != 1) {
            seed[0] = ((uint64_t)random() << 32) ^ (uint64_t)random() ^ (uint64_t)time(NULL);
            seed[1] = ((uint64_t)random() << 32) ^ (uint64_t)random() ^ (uint64_t)clock();
        }
        seeded = true;
    }
    uint64_t n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    uint64_t high = core_mix64(seed[0] ^ n);
    uint64_t low = core_mix64(seed[1] + n);
    unsigned char bytes[16];
    for (int i = 0; i < 8; i++) {
        bytes[i] = (unsigned char)(high >> (56 - 8 * i));
        bytes[8 + i] = (unsigned char)(low >> (56 - 8 * i));
    }
    bytes[6] = (unsigned char)((bytes[6] & 0x0f) | 0x40);
    bytes[8] = (unsigned char)((bytes[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[bytes[i] >> 4];
        *p++ = hex[bytes[i] & 0x0f];
    }
    *p = '\0';
}

static void core_on_publish_delivery(void *opaque, int err, int32_t partition, int64_t offset)
{
    struct core_publish_pending *pending = opaque;
    struct core_session *session = pending->session;
    if (session) {
        session->unconfirmed--;
        if (pending->prev)
            pending->prev->next = pending->next;
        else
            session->pending = pending->next;
        if (pending->next)
            pending->next->prev = pending->prev;
        if (!err && pending->stats)
            (*pending->stats->published)++;
        pending->done(pending->opaque, err ? CORE_ERR_UNAVAILABLE : CORE_OK,
                      err ? kafka_error_name(err) : "");
    }
    free(pending);
}

static const struct core_property *core_find_property(const struct core_message *message,
                                                      const char *name)
{
    for (size_t i = 0; i < message->property_count; i++)
        if (strcmp(message->properties[i].name, name) == 0)
            return &message->properties[i];
    return NULL;
}

/* The id of a request: derived from its token and correlation-id when it
 * has one (so that a bridge responder's reply, which carries both, finds
 * the request again), else random. */
static void core_request_id(const char *token, const struct core_property *correlation,
                            char out[REPLY_REQUEST_ID_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    bool derived = false;
    if (correlation && correlation->value_len > 0) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        derived = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
                  EVP_DigestUpdate(ctx, token, strlen(token)) == 1 &&
                  EVP_DigestUpdate(ctx, ":", 1) == 1 &&
                  EVP_DigestUpdate(ctx, correlation->value, correlation->value_len) == 1 &&
                  EVP_DigestFinal_ex(ctx, digest, &digest_len) == 1 &&
                  digest_len >= REPLY_REQUEST_ID_LEN / 2;
        EVP_MD_CTX_free(ctx);
    }
    if (!derived && RAND_bytes(digest, REPLY_REQUEST_ID_LEN / 2) != 1)
        for (size_t i = 0; i < REPLY_REQUEST_ID_LEN / 2; i++)
            digest[i] = (unsigned char)random();
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < REPLY_REQUEST_ID_LEN / 2; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[REPLY_REQUEST_ID_LEN] = '\0';
}

/* If the message's reply-to is a reply address (/reply-queue/TOKEN), fill
 * the full reply topic and a kafka_correlationId "TOKEN:REQUEST" and
 * remember REQUEST with the client's correlation-id. */
static bool core_request_headers(struct core_session *session, const struct core_message *message,
                                 char *reply_topic, size_t reply_topic_size, char *correlation,
                                 size_t correlation_size)
{
    struct core *core = session->core;
    const struct core_property *reply_to = core_find_property(message, RECORD_HEADER_REPLY_TO);
    static const char prefix[] = "/reply-queue/";
    if (!reply_to || reply_to->value_len <= sizeof(prefix) - 1 ||
        reply_to->value_len - (sizeof(prefix) - 1) > REPLY_TOKEN_MAX ||
        memcmp(reply_to->value, prefix, sizeof(prefix) - 1) != 0)
        return false;
    char token[REPLY_TOKEN_MAX + 1];
    size_t token_len = reply_to->value_len - (sizeof(prefix) - 1);
    memcpy(token, reply_to->value + sizeof(prefix) - 1, token_len);
    token[token_len] = '\0';
    char node[REPLY_NODE_MAX + 1], name[ADDRESS_NAME_MAX + 1];
    if (reply_token_node(token, node, sizeof(node)) < 0 ||
        reply_topic_name(node, name, sizeof(name)) < 0)
        return false;
    int n = snprintf(reply_topic, reply_topic_size, "%s%s", core_config(core)->kafka.topic_prefix,
                     name);
    if (n < 0 || (size_t)n >= reply_topic_size)
        return false;
    const struct core_property *client = core_find_property(message, RECORD_HEADER_CORRELATION_ID);
    char request_id[REPLY_REQUEST_ID_LEN + 1];
    core_request_id(token, client, request_id);
    n = snprintf(correlation, correlation_size, "%s:%s", token, request_id);
    if (n < 0 || (size_t)n >= correlation_size)
        return false;
    if (reply_requests_put(core->requests, request_id, client ? client->value : "",
                           client ? client->value_len : 0, clock_wall_ms()) < 0)
        log_warn("core", "out of memory remembering a request; a native reply will lack "
                         "its " RECORD_HEADER_CORRELATION_ID);
    (*core->requests_total)++;
    return true;
}

int core_publish(struct core_session *session, const struct destination *destination,
                 const struct core_message *message, core_publish_fn done, void *opaque, char *err,
                 size_t err_size)
{
    struct core *core = session->core;
    const struct config *config = core_config(core);
    char display[ADDRESS_NAME_MAX + 32];
    address_format(destination, display, sizeof(display));
    bool reply = destination->kind == DESTINATION_REPLY_QUEUE;
    if (session->revoked) {
        snprintf(err, err_size, "access revoked by a configuration reload");
        return CORE_ERR_ACCESS;
    }
    if (destination->kind != DESTINATION_QUEUE && destination->kind != DESTINATION_TOPIC &&
        !reply) {
        snprintf(err, err_size, "publishing to %s is not supported yet", display);
        return CORE_ERR_UNSUPPORTED;
    }
    if (destination->wildcard) {
        snprintf(err, err_size, "cannot publish to a wildcard destination (%s)", display);
        return CORE_ERR_INVALID;
    }
    /* A reply goes to the reply topic of the node that owns the token; the
     * unguessable token is the permission. */
    struct destination reply_topic = {.kind = DESTINATION_TOPIC};
    if (reply) {
        char node[REPLY_NODE_MAX + 1];
        if (reply_token_node(destination->name, node, sizeof(node)) < 0 ||
            reply_topic_name(node, reply_topic.name, sizeof(reply_topic.name)) < 0) {
            snprintf(err, err_size,
                     "%s is not a reply address kbridge made (expected /reply-queue/NODE.TOKEN)",
                     display);
            return CORE_ERR_INVALID;
        }
    } else if (core_topic_is_reserved(core, destination->name)) {
        snprintf(err, err_size,
                 "%s is kbridge's reply topic: send replies to the reply-to "
                 "address of the request",
                 display);
        return CORE_ERR_ACCESS;
    } else if (!core_acl_allows(session, true, destination->name)) {
        snprintf(err, err_size, "user '%s' may not publish to %s", session->user, display);
        return CORE_ERR_ACCESS;
    }
    if (message->body_len > config->limits.max_message_size) {
        snprintf(err, err_size,
                 "message body of %zu bytes is larger than limits.max_message_size (%llu bytes)",
                 message->body_len, (unsigned long long)config->limits.max_message_size);
        return CORE_ERR_TOO_LARGE;
    }
    char topic[ADDRESS_NAME_MAX + 1];
    if (address_kafka_topic(reply ? &reply_topic : destination, config->kafka.topic_prefix, topic,
                            sizeof(topic), err, err_size) < 0)
        return CORE_ERR_INVALID;

    size_t count = 0;
    struct kafka_header *headers =
        calloc(message->property_count + CORE_MAX_PROPERTIES_EXTRA, sizeof(*headers));
    if (!headers) {
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    /* A request whose reply-to is a temporary queue: the headers a native
     * (Spring Kafka) responder needs, and the client's correlation-id kept
     * for replies that only copy kafka_correlationId back (architecture §7). */
    char reply_topic_full[ADDRESS_NAME_MAX + 1];
    char correlation[REPLY_TOKEN_MAX + REPLY_REQUEST_ID_LEN + 2];
    bool request = core_request_headers(session, message, reply_topic_full,
                                        sizeof(reply_topic_full), correlation, sizeof(correlation));
    bool has_message_id = false;
    for (size_t i = 0; i < message->property_count; i++) {
        const struct core_property *p = &message->properties[i];
        if (!record_header_from_client(p->name, strlen(p->name)))
            continue; /* user-id, kbridge-reply-*: never trusted from the client */
        if (request && (strcmp(p->name, CORE_HEADER_REPLY_TOPIC) == 0 ||
                        strcmp(p->name, CORE_HEADER_CORRELATION) == 0))
            continue; /* ours replace the client's */
        if (strcmp(p->name, RECORD_HEADER_MESSAGE_ID) == 0)
            has_message_id = true;
        headers[count++] = (struct kafka_header){p->name, p->value, p->value_len};
    }
    char uuid[37];
    if (!has_message_id) {
        core_uuid(uuid);
        headers[count++] = (struct kafka_header){RECORD_HEADER_MESSAGE_ID, uuid, 36};
    }
    if (!session->anonymous)
        headers[count++] =
            (struct kafka_header){RECORD_HEADER_USER_ID, session->user, strlen(session->user)};
    if (reply)
        headers[count++] =
            (struct kafka_header){RECORD_REPLY_TOKEN, destination->name, strlen(destination->name)};
    if (request) {
        headers[count++] = (struct kafka_header){CORE_HEADER_REPLY_TOPIC, reply_topic_full,
                                                 strlen(reply_topic_full)};
        headers[count++] =
            (struct kafka_header){CORE_HEADER_CORRELATION, correlation, strlen(correlation)};
    } else {
        /* A reply to a native requester (Spring's ReplyingKafkaTemplate) is
         * matched by kafka_correlationId: mirror the correlation-id into it. */
        const struct core_property *client =
            core_find_property(message, RECORD_HEADER_CORRELATION_ID);
        if (client && !core_find_property(message, CORE_HEADER_CORRELATION))
            headers[count++] =
                (struct kafka_header){CORE_HEADER_CORRELATION, client->value, client->value_len};
    }

    const void *key = message->key;
    size_t key_len = message->key_len;
    if (!key) {
        static const char *const key_names[] = RECORD_KEY_PROPERTIES;
        for (size_t i = 0; i < RECORD_KEY_PROPERTY_COUNT && !key; i++) {
            const struct core_property *p = core_find_property(message, key_names[i]);
            if (p) {
                key = p->value;
                key_len = p->value_len;
            }
        }
    }

    struct core_publish_pending *pending = calloc(1, sizeof(*pending));
    if (!pending) {
        free(headers);
        snprintf(err, err_size, "out of memory");
        return CORE_ERR_INTERNAL;
    }
    pending->session = session;
    pending->stats = core_stats(
        core, destination->kind == DESTINATION_QUEUE ? DESTINATION_QUEUE : DESTINATION_TOPIC,
        reply ? reply_topic.name : destination->name);
    pending->done = done;
    pending->opaque = opaque;
    /* no key: one partition per producer, so its messages keep their order */
    uint32_t sticky = (uint32_t)(core_mix64(session->sticky_seed + message->producer) >> 32);
    int rc = kafka_produce(core->kafka, topic, -1, sticky ? sticky : 1, key, key_len, message->body,
                           message->body_len, headers, count, core_on_publish_delivery, pending);
    free(headers);
    if (rc != KAFKA_OK) {
        free(pending);
        if (rc == KAFKA_ERR_QUEUE_FULL) {
            snprintf(err, err_size, "Kafka producer queue is full; retry later");
            return CORE_ERR_BUSY;
        }
        snprintf(err, err_size, "Kafka refused the message for topic %s: %s", topic,
                 kafka_error_name(rc));
        return rc == KAFKA_ERR_MSG_SIZE_TOO_LARGE ? CORE_ERR_TOO_LARGE : CORE_ERR_UNAVAILABLE;
    }
    pending->next = session->pending;
    if (session->pending)
        session->pending->prev = pending;
    session->pending = pending;
    session->unconfirmed++;
    return CORE_OK;
}

/* ---- deliveries -------------------------------------------------------------------- */

void core_delivery_from_record(struct core_delivery *delivery, const struct core_subscription *sub,
                               const struct kafka_record *record, uint64_t id,
                               uint32_t delivery_count)
{
    const char *prefix = core_config(sub->session->core)->kafka.topic_prefix;
    size_t prefix_len = strlen(prefix);
    delivery->id = id;
    delivery->topic = record->topic;
    delivery->name = strncmp(record->topic, prefix, prefix_len) == 0 ? record->topic + prefix_len
                                                                     : record->topic;
    delivery->kind = sub->destination.kind;
    delivery->partition = record->partition;
    delivery->offset = record->offset;
    delivery->timestamp_ms = record->timestamp_ms;
    delivery->key = record->key;
    delivery->key_len = record->key_len;
    delivery->body = record->value ? record->value : "";
    delivery->body_len = record->value_len;
    delivery->delivery_count = delivery_count;
    delivery->record = record;
    delivery->extra_count = 0;
}

size_t core_delivery_header_count(const struct core_delivery *delivery)
{
    return kafka_record_header_count(delivery->record) + delivery->extra_count;
}

int core_delivery_header(const struct core_delivery *delivery, size_t index, const char **name,
                         const void **value, size_t *value_len)
{
    size_t count = kafka_record_header_count(delivery->record);
    if (index >= count && index - count < delivery->extra_count) {
        *name = delivery->extra[index - count].name;
        *value = delivery->extra[index - count].value;
        *value_len = delivery->extra[index - count].value_len;
        return 0;
    }
    return kafka_record_header(delivery->record, index, name, value, value_len);
}

/* ---- subscriptions ------------------------------------------------------------------ */

/* Apply the effective block state (client's block, or not ready yet) to the
 * queue or topic reader; unblocking may deliver at once. */
static void core_subscription_apply_block(struct core_subscription *sub)
{
    bool blocked = sub->client_blocked || !sub->ready_sent;
    if (sub->blocked == blocked)
        return;
    sub->blocked = blocked;
    if (sub->queue)
        queue_block(sub, blocked);
    else if (sub->reader)
        topic_block(sub, blocked);
}

static void core_on_ready_event(evutil_socket_t fd, short what, void *arg)
{
    struct core_subscription *sub = arg;
    if (sub->ready_sent)
        return;
    sub->ready_sent = true;
    sub->handlers.ready(sub->opaque);
    core_subscription_apply_block(sub);
}

void core_subscription_schedule_ready(struct core_subscription *sub)
{
    if (!sub->ready_sent)
        event_active(sub->ready_event, EV_TIMEOUT, 0);
}

/* Allocate a subscription and attach it to its queue or topic reader. */
static struct core_subscription *
core_subscription_start(struct core_session *session, const struct destination *destination,
                        const struct core_subscribe_options *options,
                        const struct core_subscription_handlers *handlers, void *opaque,
                        const char *reply_token, int *error_code, char *err, size_t err_size)
{
    struct core *core = session->core;
    struct core_subscription *sub = calloc(1, sizeof(*sub));
    if (!sub || !(sub->ready_event = event_new(core->base, -1, 0, core_on_ready_event, sub)) ||
        (options->durable_name && !(sub->durable_name = strdup(options->durable_name))) ||
        (reply_token && !(sub->reply_token = strdup(reply_token)))) {
        if (sub && sub->ready_event)
            event_free(sub->ready_event);
        if (sub)
            free(sub->durable_name);
        free(sub);
        snprintf(err, err_size, "out of memory");
        *error_code = CORE_ERR_INTERNAL;
        return NULL;
    }
    sub->session = session;
    sub->destination = *destination;
    sub->options = *options;
    sub->options.durable_name = sub->durable_name;
    if (sub->options.credit == 0)
        sub->options.credit = 1;
    sub->handlers = *handlers;
    sub->opaque = opaque;
    sub->blocked = true; /* until ready: see core_subscription_apply_block */
    int rc = destination->kind == DESTINATION_QUEUE || sub->durable_name
                 ? queue_attach(core, sub, err, err_size)
                 : topic_attach(core, sub, err, err_size);
    if (rc != CORE_OK) {
        event_free(sub->ready_event);
        free(sub->durable_name);
        free(sub->reply_token);
        free(sub);
        *error_code = rc;
        return NULL;
    }
    sub->next = session->subscriptions;
    if (session->subscriptions)
        session->subscriptions->prev = sub;
    session->subscriptions = sub;
    return sub;
}

struct core_subscription *core_subscribe(struct core_session *session,
                                         const struct destination *destination,
                                         const struct core_subscribe_options *options,
                                         const struct core_subscription_handlers *handlers,
                                         void *opaque, int *error_code, char *err, size_t err_size)
{
    char display[ADDRESS_NAME_MAX + 32];
    address_format(destination, display, sizeof(display));
    *error_code = CORE_OK;
    if (destination->kind != DESTINATION_QUEUE && destination->kind != DESTINATION_TOPIC) {
        snprintf(err, err_size, "subscribing to %s is not supported yet", display);
        *error_code = CORE_ERR_UNSUPPORTED;
        return NULL;
    }
    if (destination->kind == DESTINATION_QUEUE && options->durable_name) {
        snprintf(err, err_size, "durable subscriptions are for topics; %s is a queue", display);
        *error_code = CORE_ERR_INVALID;
        return NULL;
    }
    if (options->durable_name && !session->client_id && !options->durable_by_destination) {
        snprintf(err, err_size,
                 "a durable subscription needs a client-id on CONNECT (it names the subscription "
                 "together with the subscription name)");
        *error_code = CORE_ERR_INVALID;
        return NULL;
    }
    if (!core_acl_allows(session, false, destination->name)) {
        snprintf(err, err_size, "user '%s' may not consume from %s", session->user, display);
        *error_code = CORE_ERR_ACCESS;
        return NULL;
    }
    if (!destination->wildcard && core_topic_is_reserved(core_of(session), destination->name)) {
        snprintf(err, err_size,
                 "%s is kbridge's reply topic: replies reach only the temporary "
                 "queue they are for",
                 display);
        *error_code = CORE_ERR_ACCESS;
        return NULL;
    }
    return core_subscription_start(session, destination, options, handlers, opaque, NULL,
                                   error_code, err, err_size);
}

struct core_subscription *
core_subscribe_temporary(struct core_session *session, const struct core_subscribe_options *options,
                         const struct core_subscription_handlers *handlers, void *opaque,
                         char *address, size_t address_size, int *error_code, char *err,
                         size_t err_size)
{
    const struct config *config = core_config(session->core);
    char token[REPLY_TOKEN_MAX + 1];
    struct destination destination = {.kind = DESTINATION_TOPIC};
    *error_code = CORE_OK;
    if (session->revoked) {
        snprintf(err, err_size, "access revoked by a configuration reload");
        *error_code = CORE_ERR_ACCESS;
        return NULL;
    }
    if (reply_token_new(config->node_id, token, sizeof(token)) < 0 ||
        reply_topic_name(config->node_id, destination.name, sizeof(destination.name)) < 0) {
        snprintf(err, err_size, "cannot make a temporary queue name: %s", strerror(errno));
        *error_code = CORE_ERR_INTERNAL;
        return NULL;
    }
    int n = snprintf(address, address_size, "/reply-queue/%s", token);
    if (n < 0 || (size_t)n >= address_size) {
        snprintf(err, err_size, "temporary queue address does not fit");
        *error_code = CORE_ERR_INTERNAL;
        return NULL;
    }
    struct core_subscribe_options temporary = *options;
    temporary.durable_name = NULL;
    return core_subscription_start(session, &destination, &temporary, handlers, opaque, token,
                                   error_code, err, err_size);
}

bool core_header_is_internal(const char *name)
{
    /* request-reply routing: private whoever reads it (record.h) */
    return !record_header_delivered(name, strlen(name), RECORD_DELIVER_AMQP_DATA);
}

const char *core_record_reply_token(const struct kafka_record *record, size_t *length)
{
    size_t value_len;
    const char *value = record_header_find(record, RECORD_REPLY_TOKEN, &value_len);
    if (value) {
        *length = value_len;
        return value;
    }
    value = record_header_find(record, CORE_HEADER_CORRELATION, &value_len);
    const char *colon = value ? memchr(value, ':', value_len) : NULL;
    if (!colon || colon == value)
        return NULL;
    *length = (size_t)(colon - value);
    return value;
}

bool core_record_is_reply_to(const struct kafka_record *record, const char *token)
{
    size_t length;
    const char *routed = core_record_reply_token(record, &length);
    return routed && length == strlen(token) && memcmp(routed, token, length) == 0;
}

bool core_record_expired(struct core *core, const struct kafka_record *record, bool queue)
{
    if (!record_expired(record, clock_wall_ms()))
        return false;
    (*core->expired[queue ? 0 : 1])++;
    return true;
}

bool core_topic_is_reserved(const struct core *core, const char *topic)
{
    const char *prefix = core_config(core)->kafka.topic_prefix;
    size_t prefix_len = strlen(prefix);
    if (strncmp(topic, prefix, prefix_len) == 0)
        topic += prefix_len;
    return strncmp(topic, REPLY_TOPIC_BASE, strlen(REPLY_TOPIC_BASE)) == 0;
}

void core_count_expired_reply(struct core *core) { (*core->replies_dropped_expired)++; }

/* When was the request this reply answers sent? By the request id in a
 * kafka_correlationId "TOKEN:REQUEST", else by token and correlation-id. */
static bool core_reply_request_sent(struct core *core, const struct kafka_record *record,
                                    uint64_t now, uint64_t *sent_ms)
{
    size_t len, correlation_len;
    char request_id[REPLY_REQUEST_ID_LEN + 1];
    const char *value = record_header_find(record, CORE_HEADER_CORRELATION, &len);
    const char *colon = value ? memchr(value, ':', len) : NULL;
    if (colon && (size_t)(value + len - colon - 1) == REPLY_REQUEST_ID_LEN) {
        memcpy(request_id, colon + 1, REPLY_REQUEST_ID_LEN);
        request_id[REPLY_REQUEST_ID_LEN] = '\0';
        if (reply_requests_find(core->requests, request_id, now, &correlation_len, sent_ms))
            return true;
    }
    const char *token = record_header_find(record, RECORD_REPLY_TOKEN, &len);
    struct core_property correlation = {RECORD_HEADER_CORRELATION_ID, NULL, 0};
    correlation.value =
        record_header_find(record, RECORD_HEADER_CORRELATION_ID, &correlation.value_len);
    char token_text[REPLY_TOKEN_MAX + 1];
    if (!token || len > REPLY_TOKEN_MAX || !correlation.value || correlation.value_len == 0)
        return false;
    memcpy(token_text, token, len);
    token_text[len] = '\0';
    core_request_id(token_text, &correlation, request_id);
    return reply_requests_find(core->requests, request_id, now, &correlation_len, sent_ms) != NULL;
}

void core_count_reply(struct core *core, const struct kafka_record *record, bool routed)
{
    if (!routed) {
        (*core->replies_dropped)++;
        return;
    }
    (*core->replies_routed)++;
    uint64_t now = clock_wall_ms(), sent = 0;
    if (core_reply_request_sent(core, record, now, &sent) && now >= sent)
        metrics_histogram_observe(core->reply_latency, (double)(now - sent) / 1000.0);
}

void core_reply_complete(struct core *core, struct core_delivery *delivery)
{
    size_t len;
    if (record_header_find(delivery->record, RECORD_HEADER_CORRELATION_ID, &len))
        return; /* the responder kept it */
    const char *value = record_header_find(delivery->record, CORE_HEADER_CORRELATION, &len);
    const char *colon = value ? memchr(value, ':', len) : NULL;
    if (!colon || (size_t)(value + len - colon - 1) != REPLY_REQUEST_ID_LEN)
        return;
    char request_id[REPLY_REQUEST_ID_LEN + 1];
    memcpy(request_id, colon + 1, REPLY_REQUEST_ID_LEN);
    request_id[REPLY_REQUEST_ID_LEN] = '\0';
    size_t correlation_len = 0;
    const char *correlation =
        reply_requests_find(core->requests, request_id, clock_wall_ms(), &correlation_len, NULL);
    if (!correlation || correlation_len == 0 ||
        correlation_len >= sizeof(core->correlation_scratch))
        return;
    memcpy(core->correlation_scratch, correlation, correlation_len);
    delivery->extra[delivery->extra_count++] = (struct core_property){
        RECORD_HEADER_CORRELATION_ID, core->correlation_scratch, correlation_len};
}

void core_request_complete(struct core *core, struct core_delivery *delivery)
{
    size_t topic_len, correlation_len, len;
    const char *topic = record_header_find(delivery->record, CORE_HEADER_REPLY_TOPIC, &topic_len);
    if (!topic || topic_len == 0 ||
        record_header_find(delivery->record, RECORD_HEADER_REPLY_TO, &len))
        return; /* not a native request, or it names its reply-to itself */
    const char *prefix = core_config(core)->kafka.topic_prefix;
    size_t prefix_len = strlen(prefix);
    if (topic_len > prefix_len && memcmp(topic, prefix, prefix_len) == 0) {
        topic += prefix_len;
        topic_len -= prefix_len;
    }
    int n = snprintf(core->reply_to_scratch, sizeof(core->reply_to_scratch), "/queue/%.*s",
                     (int)topic_len, topic);
    if (n < 0 || (size_t)n >= sizeof(core->reply_to_scratch))
        return;
    delivery->extra[delivery->extra_count++] =
        (struct core_property){RECORD_HEADER_REPLY_TO, core->reply_to_scratch, (size_t)n};
    const char *correlation =
        record_header_find(delivery->record, CORE_HEADER_CORRELATION, &correlation_len);
    if (correlation && !record_header_find(delivery->record, RECORD_HEADER_CORRELATION_ID, &len) &&
        correlation_len < sizeof(core->correlation_scratch)) {
        memcpy(core->correlation_scratch, correlation, correlation_len);
        delivery->extra[delivery->extra_count++] = (struct core_property){
            RECORD_HEADER_CORRELATION_ID, core->correlation_scratch, correlation_len};
    }
}

void core_subscription_block(struct core_subscription *sub, bool blocked)
{
    sub->client_blocked = blocked;
    core_subscription_apply_block(sub);
}

int core_settle(struct core_subscription *sub, uint64_t id, enum queue_outcome outcome,
                const char *reason)
{
    if (!sub->queue)
        return CORE_OK; /* non-durable topic deliveries need no settlement */
    int rc = queue_settle(sub, id, outcome, reason);
    if (rc != CORE_OK)
        (*sub->session->core->late_settles)++;
    return rc;
}

void core_unsubscribe_forget(struct core_subscription *sub)
{
    struct queue *queue = sub->durable_name ? sub->queue : NULL;
    core_unsubscribe(sub);
    if (queue)
        queue_forget(queue);
}

void core_unsubscribe(struct core_subscription *sub)
{
    struct core_session *session = sub->session;
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        session->subscriptions = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    if (sub->queue)
        queue_detach(sub);
    else if (sub->reader)
        topic_detach(sub);
    event_free(sub->ready_event);
    free(sub->durable_name);
    free(sub->reply_token);
    free(sub);
}
