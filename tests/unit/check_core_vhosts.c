/* SPDX-License-Identifier: Apache-2.0 */
/* check_core_vhosts.c -- per-user vhost permissions in the core
 * (daemon/core_session.c, auth.users[].vhosts) on a core with only what
 * sessions use (config, metrics, limits): core_session_set_vhost allows or
 * refuses with RabbitMQ's words, `/` included; anonymous sessions reach every
 * vhost; a reload that takes a vhost from a user revokes its sessions there;
 * per-vhost permissions decide each action by the session's vhost. */
#include <check.h>
#include <string.h>

#include "config.h"
#include "core.h"
#include "core_internal.h"
#include "metrics.h"
#include "unit_main.h"

static const char vhosts_yaml[] = "vhosts: { sales: {}, ops: {} }\n"
                                  "auth:\n"
                                  "  anonymous: true\n"
                                  "  insecure_plaintext: true\n"
                                  "  users:\n"
                                  "    - { name: seller, password: p, vhosts: [sales] }\n"
                                  "    - { name: nobody, password: p, vhosts: [] }\n"
                                  "    - { name: everywhere, password: p }\n"
                                  "    - { name: both, password: p, vhosts: [\"/\", sales] }\n";

static struct config *config;
static struct core core;

static struct config *load(const char *yaml)
{
    char err[512];
    struct config *loaded = NULL;
    ck_assert_msg(config_load_string("t.yaml", yaml, strlen(yaml), &loaded, err, sizeof(err)) == 0,
                  "%s", err);
    return loaded;
}

/* A core with only what sessions use, on the config `yaml`. */
static void setup_with(const char *yaml)
{
    config = load(yaml);
    memset(&core, 0, sizeof(core));
    core.config = &config;
    core.config_generation = 1; /* as core_new: sessions' ACL caches start at 0 */
    core.metrics = metrics_new();
    ck_assert_ptr_nonnull(core.metrics);
    ck_assert_int_eq(core_limits_init(&core), 0);
}

static void setup(void) { setup_with(vhosts_yaml); }

static void teardown(void)
{
    core_limits_free(&core);
    metrics_free(core.metrics);
    config_free(config);
}

/* The outcome of a new session of `user` entering `vhost`, and its text. */
static int enter(const char *user, const char *vhost, char *err, size_t err_size)
{
    struct core_session *session = core_session_new(&core, "stomp", user, NULL, "127.0.0.1:1");
    ck_assert_ptr_nonnull(session);
    err[0] = '\0';
    int rc = core_session_set_vhost(session, vhost, err, err_size);
    if (rc == CORE_OK)
        ck_assert_str_eq(core_session_vhost(session), vhost);
    core_session_close(session);
    return rc;
}

START_TEST(set_vhost_allowed_and_refused)
{
    setup();
    char err[600];
    ck_assert_int_eq(enter("seller", "sales", err, sizeof(err)), CORE_OK);
    ck_assert_int_eq(enter("seller", "/", err, sizeof(err)), CORE_ERR_ACCESS);
    ck_assert_str_eq(err, "access to vhost '/' refused for user 'seller'");
    ck_assert_int_eq(enter("seller", "ops", err, sizeof(err)), CORE_ERR_ACCESS);
    ck_assert_str_eq(err, "access to vhost 'ops' refused for user 'seller'");
    /* an unknown vhost stays "not found", whoever asks */
    ck_assert_int_eq(enter("seller", "nope", err, sizeof(err)), CORE_ERR_NOT_FOUND);
    ck_assert_str_eq(err, "vhost 'nope' not found");
    /* `[]`: none */
    ck_assert_int_eq(enter("nobody", "/", err, sizeof(err)), CORE_ERR_ACCESS);
    ck_assert_str_eq(err, "access to vhost '/' refused for user 'nobody'");
    ck_assert_int_eq(enter("nobody", "sales", err, sizeof(err)), CORE_ERR_ACCESS);
    /* absent: every vhost */
    ck_assert_int_eq(enter("everywhere", "/", err, sizeof(err)), CORE_OK);
    ck_assert_int_eq(enter("everywhere", "sales", err, sizeof(err)), CORE_OK);
    ck_assert_int_eq(enter("everywhere", "ops", err, sizeof(err)), CORE_OK);
    ck_assert_int_eq(enter("both", "/", err, sizeof(err)), CORE_OK);
    ck_assert_int_eq(enter("both", "sales", err, sizeof(err)), CORE_OK);
    ck_assert_int_eq(enter("both", "ops", err, sizeof(err)), CORE_ERR_ACCESS);
    /* auth.anonymous without an "anonymous" user: every vhost */
    ck_assert_int_eq(enter("anonymous", "ops", err, sizeof(err)), CORE_OK);
    /* a user the config does not have: none */
    ck_assert_int_eq(enter("ghost", "/", err, sizeof(err)), CORE_ERR_ACCESS);
    teardown();
}
END_TEST

/* An "anonymous" entry in auth.users gives anonymous sessions its ACLs
 * (core_session_new), its vhosts included. */
START_TEST(anonymous_user_entry_applies)
{
    setup_with("vhosts: { sales: {} }\n"
               "auth:\n"
               "  anonymous: true\n"
               "  insecure_plaintext: true\n"
               "  users: [ { name: anonymous, password: p, vhosts: [sales] } ]\n");
    char err[600];
    ck_assert_int_eq(enter("anonymous", "sales", err, sizeof(err)), CORE_OK);
    ck_assert_int_eq(enter("anonymous", "/", err, sizeof(err)), CORE_ERR_ACCESS);
    ck_assert_str_eq(err, "access to vhost '/' refused for user 'anonymous'");
    teardown();
}
END_TEST

static char revoked_reason[600];
static int revoked_count;

static void on_revoked(void *opaque, const char *reason)
{
    (void)opaque;
    revoked_count++;
    snprintf(revoked_reason, sizeof(revoked_reason), "%s", reason);
}

/* A reload that takes `sales` from seller revokes seller's session in
 * sales, not its session in "/" (allowed now) nor other users'; a session
 * that never entered a vhost (shovel, admin API) is not checked. */
START_TEST(reload_revokes_withdrawn_vhost)
{
    setup();
    char err[600];
    struct core_session *in_sales = core_session_new(&core, "amqp091", "seller", NULL, "p:1");
    struct core_session *other = core_session_new(&core, "amqp091", "everywhere", NULL, "p:2");
    struct core_session *shovel = core_session_new(&core, "shovel", "seller", NULL, "p:3");
    ck_assert_int_eq(core_session_set_vhost(in_sales, "sales", err, sizeof(err)), CORE_OK);
    ck_assert_int_eq(core_session_set_vhost(other, "sales", err, sizeof(err)), CORE_OK);
    core_session_set_revoke(in_sales, on_revoked, NULL);
    core_session_set_revoke(other, on_revoked, NULL);
    core_session_set_revoke(shovel, on_revoked, NULL);

    /* the same lists: nothing revoked */
    struct config *old = config;
    config = load(vhosts_yaml);
    config_free(old);
    core.config_generation++;
    core_revoke_sessions(&core);
    ck_assert_int_eq(revoked_count, 0);

    old = config;
    config = load("vhosts: { sales: {}, ops: {} }\n"
                  "auth:\n"
                  "  anonymous: true\n"
                  "  insecure_plaintext: true\n"
                  "  users:\n"
                  "    - { name: seller, password: p, vhosts: [\"/\"] }\n"
                  "    - { name: everywhere, password: p }\n");
    config_free(old);
    core.config_generation++;
    core_revoke_sessions(&core);
    ck_assert_int_eq(revoked_count, 1);
    ck_assert_str_eq(revoked_reason, "access to vhost 'sales' refused for user 'seller'");
    ck_assert(in_sales->revoked);
    ck_assert(!other->revoked);
    ck_assert(!shovel->revoked);
    core_session_close(in_sales);
    core_session_close(other);
    core_session_close(shovel);
    teardown();
}
END_TEST

/* Per-vhost permissions (auth.users[].permissions): each action asks the
 * session's vhost's configure, write or read pattern, a vhost without an
 * entry refuses everything, a user without `permissions` keeps the old
 * mapping (declaring an exchange needs publish, a queue consume), and the
 * cached decisions follow the session's vhost. */
START_TEST(acl_per_vhost_and_action)
{
    setup_with(
        "vhosts: { sales: {} }\n"
        "auth:\n"
        "  insecure_plaintext: true\n"
        "  users:\n"
        "    - name: app\n"
        "      password: p\n"
        "      permissions:\n"
        "        \"/\": { configure: \"^rpc\\\\.\", write: \"^orders$\", read: \"^orders$\" }\n"
        "        sales: { read: \".*\" }\n"
        "    - { name: old, password: p, publish: [\"^x$\"], consume: [\"^y$\"] }\n");
    char err[600];
    struct core_session *app = core_session_new(&core, "amqp091", "app", NULL, "p:1");
    ck_assert_ptr_nonnull(app);
    ck_assert_int_eq(core_session_set_vhost(app, "/", err, sizeof(err)), CORE_OK);
    ck_assert(core_acl_may(app, CORE_ACL_PUBLISH, "orders"));
    ck_assert(!core_acl_may(app, CORE_ACL_PUBLISH, "orders.eu"));
    ck_assert(core_acl_may(app, CORE_ACL_CONSUME, "orders"));
    ck_assert(core_acl_may(app, CORE_ACL_BIND_TO_QUEUE, "orders")); /* write */
    ck_assert(!core_acl_may(app, CORE_ACL_CONFIGURE_QUEUE, "orders"));
    ck_assert(core_acl_may(app, CORE_ACL_CONFIGURE_QUEUE, "rpc.requests"));
    ck_assert(core_acl_may(app, CORE_ACL_CONFIGURE_EXCHANGE, "rpc.x"));
    ck_assert(!core_acl_may(app, CORE_ACL_CONSUME, "rpc.requests"));
    ck_assert_str_eq(core_acl_action_name(app, CORE_ACL_CONFIGURE_QUEUE), "configure");
    ck_assert_str_eq(core_acl_action_name(app, CORE_ACL_PUBLISH), "write");
    core_session_close(app);
    /* sales: read everything, nothing else; the decisions are sales's */
    app = core_session_new(&core, "amqp091", "app", NULL, "p:2");
    ck_assert(core_acl_may(app, CORE_ACL_PUBLISH, "orders")); /* "/", before set_vhost */
    ck_assert_int_eq(core_session_set_vhost(app, "sales", err, sizeof(err)), CORE_OK);
    ck_assert(!core_acl_may(app, CORE_ACL_PUBLISH, "orders"));
    ck_assert(core_acl_may(app, CORE_ACL_CONSUME, "anything"));
    ck_assert(!core_acl_may(app, CORE_ACL_CONFIGURE_QUEUE, "anything"));
    core_session_close(app);
    /* without `permissions`: publish and consume, in every vhost */
    struct core_session *old = core_session_new(&core, "stomp", "old", NULL, "p:3");
    ck_assert_int_eq(core_session_set_vhost(old, "sales", err, sizeof(err)), CORE_OK);
    ck_assert(core_acl_may(old, CORE_ACL_PUBLISH, "x"));
    ck_assert(core_acl_may(old, CORE_ACL_CONFIGURE_EXCHANGE, "x"));
    ck_assert(!core_acl_may(old, CORE_ACL_CONFIGURE_QUEUE, "x"));
    ck_assert(core_acl_may(old, CORE_ACL_CONFIGURE_QUEUE, "y"));
    ck_assert(core_acl_may(old, CORE_ACL_BIND_TO_QUEUE, "y")); /* consume */
    ck_assert_str_eq(core_acl_action_name(old, CORE_ACL_CONFIGURE_QUEUE), "consume");
    core_session_close(old);
    teardown();
}
END_TEST

static Suite *core_vhosts_suite(void)
{
    Suite *suite = suite_create("core_vhosts");
    TCase *tc = tcase_create("vhosts");
    tcase_add_test(tc, set_vhost_allowed_and_refused);
    tcase_add_test(tc, anonymous_user_entry_applies);
    tcase_add_test(tc, reload_revokes_withdrawn_vhost);
    tcase_add_test(tc, acl_per_vhost_and_action);
    suite_add_tcase(suite, tc);
    return suite;
}

CHECK_MAIN(core_vhosts_suite)
