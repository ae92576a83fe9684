/* SPDX-License-Identifier: Apache-2.0 */
/* check_core_exclusive.c -- exclusive consumers (daemon/core_exclusive.c,
 * architecture §12) on a core with hand-made sessions and subscriptions and
 * a fake cluster view: an exclusive consumer is refused while the queue has
 * any subscriber here or on another node, any subscriber is refused while
 * an exclusive one holds the queue here or there, vhosts are separate
 * queues, durable topic subscriptions do not count; the refusal is
 * CORE_ERR_IN_USE with RabbitMQ's text; the cluster view hears of changes;
 * and core_each_queue_load reports (vhost, name) with the exclusive flag. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "core_internal.h"
#include "metrics.h"
#include "stats.h"
#include "unit_main.h"

static struct core core;
static struct core_session root, sales; /* sessions in vhosts "/" and "sales" */

/* the fake cluster view: what the other nodes' records say */
static size_t remote_consumers;
static bool remote_exclusive;
static char asked[64];
static int changes;

static void fake_queue_consumers(void *opaque, const char *vhost, const char *name,
                                 size_t *consumers, bool *exclusive)
{
    (void)opaque;
    snprintf(asked, sizeof(asked), "%s|%s", vhost, name);
    *consumers = remote_consumers;
    *exclusive = remote_exclusive;
}

static void fake_exclusive_changed(void *opaque)
{
    (void)opaque;
    changes++;
}

static const struct core_cluster_hooks fake_hooks = {fake_queue_consumers, fake_exclusive_changed};

static void setup(void)
{
    memset(&core, 0, sizeof(core));
    root = (struct core_session){.core = &core, .vhost = "/"};
    sales = (struct core_session){.core = &core, .vhost = "sales"};
    root.next = &sales;
    core.sessions = &root;
    remote_consumers = 0;
    remote_exclusive = false;
    asked[0] = '\0';
    changes = 0;
}

static void teardown(void)
{
    for (struct core_session *s = core.sessions; s; s = s->next)
        while (s->subscriptions) {
            struct core_subscription *sub = s->subscriptions;
            s->subscriptions = sub->next;
            free(sub);
        }
}

/* A subscription of `session` to queue `name` (a durable topic
 * subscription when `durable`). */
static struct core_subscription *subscribe(struct core_session *session, const char *name,
                                           bool exclusive, bool durable)
{
    struct core_subscription *sub = calloc(1, sizeof(*sub));
    ck_assert_ptr_nonnull(sub);
    sub->session = session;
    sub->vhost = session->vhost;
    sub->destination.kind = durable ? DESTINATION_TOPIC : DESTINATION_QUEUE;
    snprintf(sub->destination.name, sizeof(sub->destination.name), "%s", name);
    sub->durable_name = durable ? "d1" : NULL;
    sub->options.exclusive_consumer = exclusive;
    sub->next = session->subscriptions;
    session->subscriptions = sub;
    return sub;
}

static int check(struct core_session *session, const char *name, bool exclusive, char *err,
                 size_t err_size)
{
    err[0] = '\0';
    return core_exclusive_check(session, name, exclusive, err, err_size);
}

START_TEST(local_exclusive_and_others)
{
    char err[256];
    ck_assert_int_eq(check(&root, "q", true, err, sizeof(err)), CORE_OK);
    subscribe(&root, "q", true, false);
    ck_assert(core_queue_exclusive_consumer(&core, "/", "q"));
    ck_assert(!core_queue_exclusive_consumer(&core, "sales", "q"));
    ck_assert_int_eq(check(&root, "q", false, err, sizeof(err)), CORE_ERR_IN_USE);
    ck_assert_str_eq(err, "queue 'q' in vhost '/' in exclusive use");
    ck_assert_int_eq(check(&root, "q", true, err, sizeof(err)), CORE_ERR_IN_USE);
    /* another queue, and the same name in another vhost, are free */
    ck_assert_int_eq(check(&root, "other", true, err, sizeof(err)), CORE_OK);
    ck_assert_int_eq(check(&sales, "q", true, err, sizeof(err)), CORE_OK);
    /* a plain subscriber refuses an exclusive one, not another plain one */
    subscribe(&sales, "p", false, false);
    ck_assert_int_eq(check(&sales, "p", false, err, sizeof(err)), CORE_OK);
    ck_assert_int_eq(check(&sales, "p", true, err, sizeof(err)), CORE_ERR_IN_USE);
    ck_assert_str_eq(err, "queue 'p' in vhost 'sales' in exclusive use");
    ck_assert_int_eq(check(&root, "p", true, err, sizeof(err)), CORE_OK); /* vhost / */
    /* a durable topic subscription of that name is no consumer of the queue */
    subscribe(&root, "t", false, true);
    ck_assert_int_eq(check(&root, "t", true, err, sizeof(err)), CORE_OK);
    teardown();
}
END_TEST

START_TEST(cluster_view_consulted)
{
    char err[256];
    /* without a view: this node only */
    remote_consumers = 3;
    ck_assert_int_eq(check(&root, "q", true, err, sizeof(err)), CORE_OK);
    ck_assert_str_eq(asked, "");
    core_set_cluster(&core, &fake_hooks, NULL);
    /* consumers on another node refuse an exclusive one, not a plain one */
    ck_assert_int_eq(check(&root, "q", true, err, sizeof(err)), CORE_ERR_IN_USE);
    ck_assert_str_eq(asked, "/|q");
    ck_assert_str_eq(err, "queue 'q' in vhost '/' in exclusive use");
    ck_assert_int_eq(check(&sales, "q", false, err, sizeof(err)), CORE_OK);
    ck_assert_str_eq(asked, "sales|q");
    /* an exclusive consumer on another node refuses everyone */
    remote_consumers = 1;
    remote_exclusive = true;
    ck_assert_int_eq(check(&root, "q", false, err, sizeof(err)), CORE_ERR_IN_USE);
    ck_assert_int_eq(check(&root, "q", true, err, sizeof(err)), CORE_ERR_IN_USE);
    /* nothing elsewhere: free */
    remote_consumers = 0;
    remote_exclusive = false;
    ck_assert_int_eq(check(&root, "q", true, err, sizeof(err)), CORE_OK);
    core_exclusive_changed(&core);
    ck_assert_int_eq(changes, 1);
    core_set_cluster(&core, NULL, NULL);
    core_exclusive_changed(&core);
    ck_assert_int_eq(changes, 1);
    teardown();
}
END_TEST

struct load {
    char seen[8][64];
    size_t count;
};

static bool collect(void *opaque, const char *vhost, const char *name, size_t consumers,
                    size_t in_flight, bool exclusive)
{
    struct load *load = opaque;
    ck_assert_uint_lt(load->count, 8);
    snprintf(load->seen[load->count++], sizeof(load->seen[0]), "%s|%s|%zu|%zu|%d",
             vhost ? vhost : "-", name, consumers, in_flight, exclusive);
    return true;
}

static int by_text(const void *a, const void *b) { return strcmp(a, b); }

START_TEST(queue_load_per_vhost_with_exclusive)
{
    core.metrics = metrics_new();
    ck_assert_ptr_nonnull(core.metrics);
    stats_table_init(&core.stats, core.metrics);
    struct destination_stats *q = stats_get(&core.stats, DESTINATION_QUEUE, NULL, "q");
    struct destination_stats *sales_q = stats_get(&core.stats, DESTINATION_QUEUE, "sales", "q");
    struct destination_stats *idle = stats_get(&core.stats, DESTINATION_QUEUE, "/", "idle");
    ck_assert_ptr_nonnull(q);
    ck_assert_ptr_nonnull(sales_q);
    ck_assert_ptr_nonnull(idle);
    ck_assert_ptr_ne(q, sales_q); /* one queue name, two vhosts: two series */
    ck_assert_ptr_eq(stats_get(&core.stats, DESTINATION_QUEUE, "/", "q"), q);
    *q->in_flight = 5;
    *sales_q->in_flight = 3;
    *idle->in_flight = 2;
    stats_get(&core.stats, DESTINATION_QUEUE, NULL, "unused"); /* nothing to report */
    subscribe(&root, "q", true, false);
    subscribe(&sales, "q", false, false);
    subscribe(&sales, "q", false, false);
    struct load load = {0};
    core_each_queue_load(&core, collect, &load);
    qsort(load.seen, load.count, sizeof(load.seen[0]), by_text);
    ck_assert_uint_eq(load.count, 3);
    ck_assert_str_eq(load.seen[0], "/|idle|0|2|0");
    ck_assert_str_eq(load.seen[1], "/|q|1|5|1");
    ck_assert_str_eq(load.seen[2], "sales|q|2|3|0");
    teardown();
    stats_table_clear(&core.stats);
    metrics_free(core.metrics);
}
END_TEST

static Suite *core_exclusive_suite(void)
{
    Suite *s = suite_create("core_exclusive");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, local_exclusive_and_others);
    tcase_add_test(tc, cluster_view_consulted);
    tcase_add_test(tc, queue_load_per_vhost_with_exclusive);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(core_exclusive_suite)
