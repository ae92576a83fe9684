/* SPDX-License-Identifier: Apache-2.0 */
/* check_status_record.c -- the status topic's records and the per-node view
 * (daemon/status_record.c): a record encoded and decoded again keeps every
 * field; the connections list stops at its bound while the count goes on;
 * records kbridge cannot read are refused with a reason and leave the view
 * as it was; tombstones forget a node; backlog records count as heard at
 * their own time; stale after expiry, dropped after twice that; rates;
 * per-queue exclusive consumers and vhosts, older records without those
 * fields (not exclusive, vhost "/"), and the live nodes' sum of a queue. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "status_record.h"
#include "unit_main.h"

static json_t *connection(const char *name, const char *user, int subscriptions)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:{s:i,s:i}}", "name", name, "node", "n1", "user", user,
                     "protocol", "stomp", "kbridge", "subscriptions", subscriptions, "unconfirmed",
                     0);
}

static json_t *sample(const char *node, int64_t updated_at)
{
    json_t *record = status_record_new(node, "1.2.3", 1000, updated_at, 5000);
    ck_assert_ptr_nonnull(record);
    return record;
}

static char *encoded(const char *node, int64_t updated_at)
{
    json_t *record = sample(node, updated_at);
    char *text = status_record_encode(record);
    json_decref(record);
    ck_assert_ptr_nonnull(text);
    return text;
}

START_TEST(test_round_trip)
{
    json_t *record = sample("n1", 2000);
    ck_assert_int_eq(status_record_add_connection(record, connection("n1-1", "alice", 2), 10), 0);
    ck_assert_int_eq(status_record_add_connection(record, connection("n1-2", "bob", 1), 10), 0);
    ck_assert_int_eq(status_record_add_queue(record, "/", "orders", 3, 17, false), 0);
    ck_assert_int_eq(status_record_add_queue(record, "sales", "orders", 1, 17, true), 0);
    ck_assert_int_eq(status_record_add_queue(record, NULL, "idle", 0, 4, false), 0);
    uint64_t totals[3] = {10, 20, 19};
    double rates[3] = {1.5, 2.0, 0.25};
    ck_assert_int_eq(status_record_set_messages(record, totals, rates), 0);
    json_array_append_new(
        json_object_get(record, "listeners"),
        json_pack("{s:s,s:s,s:i}", "protocol", "stomp", "ip_address", "127.0.0.1", "port", 61613));
    char *text = status_record_encode(record);
    ck_assert_ptr_nonnull(text);
    char err[256] = "";
    json_t *back = status_record_decode("n1", 2, text, strlen(text), err, sizeof(err));
    ck_assert_msg(back != NULL, "%s", err);
    ck_assert(json_equal(record, back));
    ck_assert_int_eq(json_integer_value(json_object_get(back, "connections_total")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(back, "consumers_total")), 3);
    ck_assert(json_is_false(json_object_get(back, "connections_truncated")));
    json_t *queue = json_array_get(json_object_get(back, "queues"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(queue, "name")), "orders");
    ck_assert_int_eq(json_integer_value(json_object_get(queue, "consumers")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(queue, "in_flight")), 17);
    ck_assert_str_eq(json_string_value(json_object_get(queue, "vhost")), "/");
    ck_assert(json_is_false(json_object_get(queue, "exclusive")));
    queue = json_array_get(json_object_get(back, "queues"), 1);
    ck_assert_str_eq(json_string_value(json_object_get(queue, "vhost")), "sales");
    ck_assert(json_is_true(json_object_get(queue, "exclusive")));
    queue = json_array_get(json_object_get(back, "queues"), 2);
    ck_assert_ptr_null(json_object_get(queue, "vhost")); /* none: read as "/" */
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(back, "totals"), "ack")),
                     19);
    ck_assert(json_real_value(json_object_get(json_object_get(back, "rates"), "publish")) == 1.5);
    free(text);
    json_decref(back);
    json_decref(record);
}
END_TEST

START_TEST(test_connections_bounded)
{
    json_t *record = sample("n1", 2000);
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof(name), "n1-%d", i);
        ck_assert_int_eq(status_record_add_connection(record, connection(name, "u", 1), 3), 0);
    }
    ck_assert_int_eq(json_array_size(json_object_get(record, "connections")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(record, "connections_listed")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(record, "connections_total")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(record, "consumers_total")), 5);
    ck_assert(json_is_true(json_object_get(record, "connections_truncated")));
    /* a bound of 0 lists none and still counts */
    json_t *none = sample("n2", 2000);
    ck_assert_int_eq(status_record_add_connection(none, connection("n2-1", "u", 0), 0), 0);
    ck_assert_int_eq(json_array_size(json_object_get(none, "connections")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(none, "connections_total")), 1);
    ck_assert_int_eq(status_record_add_connection(none, NULL, 10), -1);
    json_decref(none);
    json_decref(record);
}
END_TEST

/* decode must refuse `value` under key `key` with a reason containing `why`. */
static void refused(const char *key, const char *value, const char *why)
{
    char err[256] = "";
    json_t *record = status_record_decode(key, key ? strlen(key) : 0, value,
                                          value ? strlen(value) : 0, err, sizeof(err));
    ck_assert_msg(record == NULL, "accepted %s", value ? value : "(null)");
    ck_assert_msg(strstr(err, why) != NULL, "reason '%s' lacks '%s'", err, why);
}

START_TEST(test_unreadable_refused)
{
    char *good = encoded("n1", 2000);
    refused("n2", good, "node 'n1' is not the record's key");
    refused(NULL, good, "without a node id");
    refused("n1", NULL, "tombstone");
    refused("n1", "{not json", "not JSON");
    refused("n1", "[1,2]", "not a JSON object");
    refused("n1", "{\"v\":1,\"node\":\"n1\"}", "missing or mistyped: version");
    json_t *bad = json_loads(good, 0, NULL);
    json_object_set_new(bad, "connections", json_string("many"));
    char *text = json_dumps(bad, JSON_COMPACT);
    refused("n1", text, "missing or mistyped: connections");
    free(text);
    json_object_set_new(bad, "connections", json_array());
    json_object_set_new(bad, "v", json_integer(0));
    text = json_dumps(bad, JSON_COMPACT);
    refused("n1", text, "unknown record version 0");
    free(text);
    json_decref(bad);
    free(good);
}
END_TEST

struct seen {
    char names[8][32];
    bool stale[8];
    int64_t age[8];
    size_t count;
};

static bool collect(void *opaque, const json_t *record, bool stale, int64_t age_ms)
{
    struct seen *seen = opaque;
    snprintf(seen->names[seen->count], sizeof(seen->names[0]), "%s",
             json_string_value(json_object_get(record, "node")));
    seen->stale[seen->count] = stale;
    seen->age[seen->count] = age_ms;
    seen->count++;
    return true;
}

static void apply_ok(struct status_view *view, const char *node, const char *value, int64_t now,
                     bool backlog, int expected)
{
    char err[256] = "";
    int rc = status_view_apply(view, node, strlen(node), value, value ? strlen(value) : 0, now,
                               backlog, err, sizeof(err));
    ck_assert_msg(rc == expected, "apply %s: %d (%s)", node, rc, err);
}

START_TEST(test_view_latest_per_node_in_name_order)
{
    struct status_view *view = status_view_new();
    char *b = encoded("nodeb", 10000), *a = encoded("nodea", 10000), *b2 = encoded("nodeb", 11000);
    apply_ok(view, "nodeb", b, 10000, false, 0);
    apply_ok(view, "nodea", a, 10000, false, 0);
    apply_ok(view, "nodeb", b2, 11000, false, 0);
    ck_assert_uint_eq(status_view_count(view), 2);
    struct seen seen = {0};
    status_view_each(view, 12000, 3000, collect, &seen);
    ck_assert_uint_eq(seen.count, 2);
    ck_assert_str_eq(seen.names[0], "nodea");
    ck_assert_str_eq(seen.names[1], "nodeb");
    ck_assert_int_eq(seen.age[0], 2000);
    ck_assert_int_eq(seen.age[1], 1000); /* the later record */
    ck_assert(!seen.stale[0] && !seen.stale[1]);
    /* a bad record leaves the node's last good one */
    char err[256];
    ck_assert_int_eq(status_view_apply(view, "nodea", 5, "{", 1, 12000, false, err, sizeof(err)),
                     -1);
    ck_assert_uint_eq(status_view_count(view), 2);
    /* a tombstone forgets the node; one for an unknown node is fine */
    apply_ok(view, "nodeb", NULL, 12000, false, 1);
    apply_ok(view, "nodez", NULL, 12000, false, 1);
    memset(&seen, 0, sizeof(seen));
    status_view_each(view, 12000, 3000, collect, &seen);
    ck_assert_uint_eq(seen.count, 1);
    ck_assert_str_eq(seen.names[0], "nodea");
    free(a);
    free(b);
    free(b2);
    status_view_free(view);
}
END_TEST

START_TEST(test_view_stale_then_dropped)
{
    struct status_view *view = status_view_new();
    char *a = encoded("nodea", 10000);
    apply_ok(view, "nodea", a, 10000, false, 0);
    struct seen seen = {0};
    status_view_each(view, 13000, 3000, collect, &seen); /* exactly expiry: not yet */
    ck_assert(!seen.stale[0]);
    memset(&seen, 0, sizeof(seen));
    status_view_each(view, 13001, 3000, collect, &seen);
    ck_assert(seen.stale[0]);
    ck_assert_uint_eq(status_view_expire(view, 16000, 3000), 0); /* 2 x expiry: kept */
    ck_assert_uint_eq(status_view_count(view), 1);
    ck_assert_uint_eq(status_view_expire(view, 16001, 3000), 1);
    ck_assert_uint_eq(status_view_count(view), 0);
    /* heard again: back */
    apply_ok(view, "nodea", a, 20000, false, 0);
    memset(&seen, 0, sizeof(seen));
    status_view_each(view, 20000, 3000, collect, &seen);
    ck_assert(seen.count == 1 && !seen.stale[0]);
    free(a);
    status_view_free(view);
}
END_TEST

START_TEST(test_view_backlog_heard_at_its_own_time)
{
    struct status_view *view = status_view_new();
    char *old = encoded("old", 1000), *future = encoded("future", 99000);
    /* read at start (backlog): a record written long ago is stale at once */
    apply_ok(view, "old", old, 10000, true, 0);
    /* a sender's clock ahead of ours: never heard later than now */
    apply_ok(view, "future", future, 10000, true, 0);
    struct seen seen = {0};
    status_view_each(view, 10000, 3000, collect, &seen);
    ck_assert_uint_eq(seen.count, 2);
    ck_assert_str_eq(seen.names[0], "future");
    ck_assert(!seen.stale[0] && seen.age[0] == 0);
    ck_assert_str_eq(seen.names[1], "old");
    ck_assert(seen.stale[1] && seen.age[1] == 9000);
    /* past the backlog the reader's clock counts */
    apply_ok(view, "old", old, 10000, false, 0);
    memset(&seen, 0, sizeof(seen));
    status_view_each(view, 10000, 3000, collect, &seen);
    ck_assert(!seen.stale[1]);
    free(old);
    free(future);
    status_view_free(view);
}
END_TEST

START_TEST(test_rates)
{
    ck_assert(status_rate(100, 600, 5000) == 100.0);
    ck_assert(status_rate(100, 100, 5000) == 0.0);
    ck_assert(status_rate(100, 600, 0) == 0.0);
    ck_assert(status_rate(600, 100, 5000) == 0.0); /* counters never go back: no negative rate */
}
END_TEST

START_TEST(test_queue_exclusive_per_vhost)
{
    json_t *record = sample("n1", 2000);
    ck_assert_int_eq(status_record_add_queue(record, "/", "orders", 2, 0, false), 0);
    ck_assert_int_eq(status_record_add_queue(record, "sales", "orders", 1, 0, true), 0);
    size_t consumers = 0;
    bool exclusive = false;
    status_record_queue(record, "/", "orders", &consumers, &exclusive);
    ck_assert_uint_eq(consumers, 2);
    ck_assert(!exclusive);
    consumers = 0;
    status_record_queue(record, "sales", "orders", &consumers, &exclusive);
    ck_assert_uint_eq(consumers, 1);
    ck_assert(exclusive);
    consumers = 0;
    exclusive = false;
    status_record_queue(record, "/", "other", &consumers, &exclusive);
    ck_assert_uint_eq(consumers, 0);
    ck_assert(!exclusive);
    json_decref(record);
}
END_TEST

START_TEST(test_queue_older_record_not_exclusive)
{
    /* a record of a node from before the fields: no vhost, no exclusive */
    const char *old = "{\"v\":1,\"node\":\"n0\",\"version\":\"0.9\",\"started_at\":1,"
                      "\"updated_at\":2000,\"listeners\":[],\"connections\":[],"
                      "\"connections_total\":0,\"queues\":[{\"name\":\"orders\","
                      "\"consumers\":4,\"in_flight\":0}]}";
    char err[256] = "";
    json_t *record = status_record_decode("n0", 2, old, strlen(old), err, sizeof(err));
    ck_assert_msg(record != NULL, "%s", err);
    size_t consumers = 0;
    bool exclusive = false;
    status_record_queue(record, "/", "orders", &consumers, &exclusive);
    ck_assert_uint_eq(consumers, 4);
    ck_assert(!exclusive);
    consumers = 0;
    status_record_queue(record, "sales", "orders", &consumers, &exclusive);
    ck_assert_uint_eq(consumers, 0);
    json_decref(record);
}
END_TEST

/* A record of `node` heard at `now` with queue orders of vhost "/". */
static void view_add(struct status_view *view, const char *node, int64_t now, size_t consumers,
                     bool exclusive)
{
    json_t *record = sample(node, now);
    ck_assert_int_eq(status_record_add_queue(record, "/", "orders", consumers, 0, exclusive), 0);
    char *text = status_record_encode(record);
    json_decref(record);
    char err[256] = "";
    ck_assert_int_eq(status_view_apply(view, node, strlen(node), text, strlen(text), now, false,
                                       err, sizeof(err)),
                     0);
    free(text);
}

START_TEST(test_view_queue_live_nodes_only)
{
    struct status_view *view = status_view_new();
    ck_assert_ptr_nonnull(view);
    view_add(view, "a", 10000, 1, true); /* heard at 10 s */
    view_add(view, "b", 14000, 2, false);
    size_t consumers;
    bool exclusive;
    /* at 14.5 s with a 5 s expiry both are live */
    status_view_queue(view, 14500, 5000, "/", "orders", &consumers, &exclusive);
    ck_assert_uint_eq(consumers, 3);
    ck_assert(exclusive);
    /* a is stale from 15.001 s on: its exclusive consumer no longer holds the queue */
    status_view_queue(view, 15001, 5000, "/", "orders", &consumers, &exclusive);
    ck_assert_uint_eq(consumers, 2);
    ck_assert(!exclusive);
    status_view_queue(view, 14500, 5000, "sales", "orders", &consumers, &exclusive);
    ck_assert_uint_eq(consumers, 0);
    ck_assert(!exclusive);
    /* a's tombstone: gone at once */
    char err[64];
    ck_assert_int_eq(status_view_apply(view, "a", 1, NULL, 0, 14600, false, err, sizeof(err)), 1);
    status_view_queue(view, 14600, 5000, "/", "orders", &consumers, &exclusive);
    ck_assert_uint_eq(consumers, 2);
    ck_assert(!exclusive);
    status_view_free(view);
}
END_TEST

static Suite *status_record_suite(void)
{
    Suite *s = suite_create("status_record");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_connections_bounded);
    tcase_add_test(tc, test_unreadable_refused);
    tcase_add_test(tc, test_view_latest_per_node_in_name_order);
    tcase_add_test(tc, test_view_stale_then_dropped);
    tcase_add_test(tc, test_view_backlog_heard_at_its_own_time);
    tcase_add_test(tc, test_rates);
    tcase_add_test(tc, test_queue_exclusive_per_vhost);
    tcase_add_test(tc, test_queue_older_record_not_exclusive);
    tcase_add_test(tc, test_view_queue_live_nodes_only);
    suite_add_tcase(s, tc);
    return s;
}

CHECK_MAIN(status_record_suite)
