# SPDX-License-Identifier: Apache-2.0
"""The cluster-wide view through the status topic (issue 18 item 1,
docs/operations.md "The status topic", architecture §9 "Cluster view"):
two kbridged nodes on one Kafka, each writing its record to a status topic
of this test's own and reading the other's. Connections of either node
appear in /api/connections of both with `node` naming the right one;
consumers of one queue on both nodes are summed in /api/queues with a
per-node breakdown; a connection of another node cannot be closed here
(409 naming its node); a node stopped with SIGTERM leaves the view at once
(its tombstone); a node killed with -9 is shown stale after status.expiry,
then dropped. Exclusive consumers (issue 14, architecture §12): a pika
exclusive consumer on one node refuses pika and STOMP consumers on the
other once that node has read the record that says so, and admits them
again after the cancel; an exclusive consumer is refused while the other
node has any consumer; vhosts are separate; the records are written at
once when an exclusive consumer comes or goes; a killed node's exclusive
consumer holds its queue until the node is stale."""

import json
import time
import uuid

import pika
import pytest
from confluent_kafka import Consumer, TopicPartition

from amqp_client import connect
from conftest import ADMIN, base_config, user_config, wait_for, with_admin
from stomp_util import Client

MANAGER = ("manager", "manage-secret")
INTERVAL = "300ms"
EXPIRY_MS = 1500


def uniq():
    return uuid.uuid4().hex[:8]


def node_config(bootstrap, node_id, status_topic, definitions_topic):
    config = with_admin(base_config(
        bootstrap, node_id=node_id,
        status={"topic": status_topic, "interval": INTERVAL, "expiry": f"{EXPIRY_MS}ms"},
        definitions={"topic": definitions_topic}))
    config["auth"]["users"].append(user_config(MANAGER[0], MANAGER[1], ["management"],
                                               consume=["^mine\\."], publish=["^mine\\."]))
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    return config


class Cluster:
    def __init__(self, kbridged_factory, bootstrap):
        self.factory = kbridged_factory
        self.bootstrap = bootstrap
        self.status_topic = f"kbridge.status.t{uniq()}"
        self.definitions_topic = f"kbridge.definitions.t{uniq()}"

    def start(self, node_id, name=None):
        return self.factory(node_config(self.bootstrap, node_id, self.status_topic,
                                        self.definitions_topic), name=name or node_id)


def read_status_topic(bootstrap, topic, until, timeout=15):
    """Every record of the status topic, [(key, value dict or None)] in offset
    order per partition, read with confluent-kafka from the beginning until
    `until(records)` holds (a deadline, no group)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uniq()}",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records = []
        deadline = time.monotonic() + timeout
        while not until(records):
            assert time.monotonic() < deadline, f"status topic records: {records}"
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            value = message.value()
            records.append((message.key().decode(),
                            json.loads(value) if value is not None else None, len(value or b"")))
        return records
    finally:
        consumer.close()


def connections(daemon, query=""):
    status, body = daemon.api(f"/api/connections{query}")
    assert status == 200, body
    return body


def nodes(daemon):
    status, body = daemon.api("/api/nodes")
    assert status == 200, body
    return {n["name"]: n for n in body}


def test_connections_of_both_nodes_on_either_node(kbridged_factory, bootstrap):
    cluster = Cluster(kbridged_factory, bootstrap)
    a, b = cluster.start("nodea"), cluster.start("nodeb")
    stomp_a = Client(a, login=ADMIN[0], passcode=ADMIN[1])
    amqp_b = connect(b, ADMIN[0], ADMIN[1])
    try:
        expected = [("nodea", "stomp"), ("nodeb", "amqp")]
        for daemon in (a, b):
            wait_for(lambda: sorted((c["node"], c["protocol"]) for c in connections(daemon))
                     == expected, 15, f"both connections in {daemon.name}'s /api/connections")
        for daemon in (a, b):
            listed = connections(daemon)
            assert len(listed) == 2
            for c in listed:
                assert c["name"].startswith(c["node"] + "-")
                assert c["user"] == ADMIN[0] and c["peer_host"] == "127.0.0.1"
                assert c["vhost"] == "/" and c["state"] == "running"
            overview = daemon.api("/api/overview")[1]
            assert overview["object_totals"]["connections"] == 2
            assert overview["kbridge"]["cluster"]["nodes"] == 2
            assert overview["kbridge"]["cluster"]["running"] == 2
            assert overview["kbridge"]["node_totals"]["connections"] == 1
            assert sorted(n["name"] for n in overview["nodes"]) == ["nodea", "nodeb"]
            assert {listener["node"] for listener in overview["listeners"]} == {"nodea", "nodeb"}
            assert set(overview["message_stats"]) >= {"publish", "publish_details", "deliver_get",
                                                      "ack"}
            seen = nodes(daemon)
            assert sorted(seen) == ["nodea", "nodeb"]
            for name, node in seen.items():
                assert node["running"] is True and node["kbridge"]["stale"] is False
                assert node["kbridge"]["connections"] == 1
                assert node["kbridge"]["this_node"] == (name == daemon.name)
                assert {entry["protocol"] for entry in node["kbridge"]["listeners"]} == {
                    "stomp", "amqp", "http"}
        # a management user sees its own connections, on every node, and no /api/nodes
        status, body = a.api("/api/nodes", auth=MANAGER)
        assert status == 403 and "monitoring or administrator" in body["reason"]
        assert a.api("/api/connections", auth=MANAGER) == (200, [])
        managed = Client(b, login=MANAGER[0], passcode=MANAGER[1])
        try:
            wait_for(lambda: [(c["node"], c["user"]) for c in
                              a.api("/api/connections", auth=MANAGER)[1]] == [
                                  ("nodeb", MANAGER[0])], 15,
                     "the manager's connection on B in A's list for the manager")
            assert "queues" not in a.api("/api/overview", auth=MANAGER)[1]["nodes"][0]["kbridge"]
        finally:
            managed.close()
        wait_for(lambda: len(connections(a)) == 2, 15, "the manager's connection gone")
        # ?node=local: this node's only; ?node=NAME: that node's
        assert [c["node"] for c in connections(a, "?node=local")] == ["nodea"]
        assert [c["node"] for c in connections(a, "?node=nodeb")] == ["nodeb"]
        on_b = next(c for c in connections(a) if c["node"] == "nodeb")
        status, one = a.api(f"/api/connections/{on_b['name']}")
        assert status == 200 and one["protocol"] == "amqp" and one["node"] == "nodeb"
        # no node-to-node protocol: A names the node that holds it
        status, body = a.api(f"/api/connections/{on_b['name']}", method="DELETE")
        assert status == 409, body
        assert body["reason"] == (f"connection '{on_b['name']}' is on node nodeb: close it "
                                  "through that node's admin API (kbridge nodes do not talk "
                                  "to each other)")
        assert a.api(f"/api/connections/nodeb-999999", method="DELETE")[0] == 404
        assert a.api("/api/nodes/nodeb")[1]["name"] == "nodeb"
        assert a.api("/api/nodes/nodez")[0] == 404
        assert b.api(f"/api/connections/{on_b['name']}", method="DELETE")[0] == 204
        wait_for(lambda: [c["node"] for c in connections(a)] == ["nodea"], 15,
                 "the closed connection gone from node A's view")
    finally:
        stomp_a.close()
        try:
            amqp_b.close()
        except Exception:  # closed by the DELETE above
            pass


def test_consumers_of_one_queue_summed_over_nodes(kbridged_factory, bootstrap):
    cluster = Cluster(kbridged_factory, bootstrap)
    a, b = cluster.start("nodea"), cluster.start("nodeb")
    q = f"shared.{uniq()}"
    assert a.api(f"/api/queues/%2F/{q}", method="PUT", body={})[0] == 201
    wait_for(lambda: b.api(f"/api/queues/%2F/{q}")[0] == 200, 10, "node B sees the queue")
    on_a, on_b1, on_b2 = Client(a), Client(b), Client(b)
    try:
        on_a.subscribe(f"/queue/{q}", "s1", receipt="ra")
        on_b1.subscribe(f"/queue/{q}", "s1", receipt="rb1")
        on_b2.subscribe(f"/queue/{q}", "s1", receipt="rb2")

        def breakdown(daemon):
            queue = daemon.api(f"/api/queues/%2F/{q}")[1]
            return queue["consumers"], sorted((n["node"], n["consumers"])
                                              for n in queue["kbridge_nodes"])

        for daemon in (a, b):
            wait_for(lambda: breakdown(daemon) == (3, [("nodea", 1), ("nodeb", 2)]), 15,
                     f"3 consumers in {daemon.name}'s /api/queues")
            listed = [x for x in daemon.api("/api/queues")[1] if x["name"] == q]
            assert len(listed) == 1 and listed[0]["consumers"] == 3
            assert listed[0]["kbridge_consumers_scope"] == "cluster"
            assert daemon.api("/api/overview")[1]["object_totals"]["consumers"] == 3
        local = a.api(f"/api/queues/%2F/{q}?node=local")[1]
        assert local["consumers"] == 1 and local["kbridge_consumers_scope"] == "node"
        assert [(n["node"], n["consumers"]) for n in local["kbridge_nodes"]] == [("nodea", 1)]
        # message counters summed over the nodes: 30 publishes on A, deliveries on both
        sender = Client(a)
        try:
            for i in range(30):
                sender.send(f"/queue/{q}", f"m{i}", receipt=f"p{i}")
            for i in range(30):
                sender.wait_receipt(f"p{i}")
        finally:
            sender.close()
        consumers = (on_a, on_b1, on_b2)
        wait_for(lambda: {m.body for c in consumers for m in c.recorder.messages}
                 == {f"m{i}" for i in range(30)}, 30, "all 30 messages delivered")
        received = sum(len(c.recorder.messages) for c in consumers)

        def stats(daemon):
            overview = daemon.api("/api/overview")[1]["message_stats"]
            return overview["publish"], overview["deliver_get"]

        for daemon in (a, b):
            wait_for(lambda: stats(daemon) == (30, received), 15,
                     f"{daemon.name}'s message_stats to sum both nodes")
        per_node = {name: n["message_stats"] for name, n in nodes(a).items()}
        assert per_node["nodea"]["publish"] == 30 and per_node["nodeb"]["publish"] == 0
        assert (per_node["nodea"]["deliver_get"] + per_node["nodeb"]["deliver_get"]
                == received)
        assert per_node["nodea"]["deliver_get"] == len(on_a.recorder.messages)
        on_b2.close()
        wait_for(lambda: breakdown(a) == (2, [("nodea", 1), ("nodeb", 1)]), 15,
                 "node A to see one consumer fewer on node B")
    finally:
        for client in (on_a, on_b1, on_b2):
            client.close()


def test_stopped_node_leaves_at_once_killed_node_goes_stale_then_away(kbridged_factory,
                                                                     bootstrap):
    cluster = Cluster(kbridged_factory, bootstrap)
    a = cluster.start("nodea")
    b = cluster.start("nodeb")
    wait_for(lambda: sorted(nodes(a)) == ["nodea", "nodeb"], 15, "node A to see node B")
    # SIGTERM: the tombstone removes B from A's view without passing through stale
    seen = []

    def b_gone():
        view = nodes(a)
        seen.append(view.get("nodeb"))
        return sorted(view) == ["nodea"]

    assert b.stop() == 0
    wait_for(b_gone, 15, "node B gone from node A's view")
    assert all(entry is None or entry["running"] for entry in seen), seen
    a.wait_log("node nodeb stopped")
    # what Kafka holds: B's records keyed by its node id, the last a tombstone
    records = read_status_topic(bootstrap, cluster.status_topic,
                                lambda got: any(k == "nodeb" and v is None for k, v, _ in got))
    of_b = [(v, size) for k, v, size in records if k == "nodeb"]
    assert of_b[-1][0] is None and len(of_b) >= 2
    record, size = of_b[-2]
    assert record["v"] == 1 and record["node"] == "nodeb" and record["interval_ms"] == 300
    assert record["connections"] == [] and record["connections_total"] == 0
    assert record["connections_truncated"] is False and record["queues"] == []
    assert {entry["protocol"] for entry in record["listeners"]} == {"stomp", "amqp", "http"}
    assert set(record["rates"]) == set(record["totals"]) == {"publish", "deliver", "ack"}
    assert record["started_at"] <= record["updated_at"] and size < 1024
    assert all(v is not None for k, v, _ in records if k == "nodea")

    # again, with a connection on B, then kill -9: no tombstone
    b2 = cluster.start("nodeb", name="nodeb2")
    client = Client(b2)
    try:
        wait_for(lambda: nodes(a).get("nodeb", {}).get("kbridge", {}).get("connections") == 1,
                 15, "node A to see the new node B and its connection")
        assert [c["node"] for c in connections(a)] == ["nodeb"]
        assert a.api("/api/overview")[1]["object_totals"]["connections"] == 1
        b2.kill()
        wait_for(lambda: nodes(a).get("nodeb", {}).get("running") is False, 15,
                 "node B shown stale")
        stale = nodes(a)["nodeb"]
        assert stale["kbridge"]["stale"] is True and stale["kbridge"]["age_ms"] > EXPIRY_MS
        # a stale node's connections and consumers leave the cluster totals
        assert connections(a) == []
        overview = a.api("/api/overview")[1]
        assert overview["object_totals"]["connections"] == 0
        assert overview["kbridge"]["cluster"]["stale"] == 1
        wait_for(lambda: sorted(nodes(a)) == ["nodea"], 15,
                 "node B dropped after twice status.expiry")
        assert a.api("/api/overview")[1]["kbridge"]["cluster"]["nodes"] == 1
    finally:
        try:
            client.close()
        except Exception:  # its node was killed
            pass


def test_connection_list_bounded_by_max_connections_listed(kbridged_factory, bootstrap):
    cluster = Cluster(kbridged_factory, bootstrap)
    a = cluster.start("nodea")
    config = node_config(bootstrap, "nodeb", cluster.status_topic, cluster.definitions_topic)
    config["status"]["max_connections_listed"] = 1
    b = kbridged_factory(config, name="nodeb")
    clients = [Client(b), Client(b)]
    try:
        def b_seen():
            node = nodes(a).get("nodeb", {}).get("kbridge", {})
            return node.get("connections") == 2
        wait_for(b_seen, 15, "node A to see node B's two connections")
        node = nodes(a)["nodeb"]["kbridge"]
        assert node["connections_listed"] == 1 and node["connections_truncated"] is True
        # counted in the totals, listed up to the bound; B itself lists both
        assert a.api("/api/overview")[1]["object_totals"]["connections"] == 2
        assert [c["node"] for c in connections(a)] == ["nodeb"]
        assert len(connections(b)) == 2
        assert nodes(b)["nodeb"]["kbridge"]["connections_truncated"] is False
    finally:
        for client in clients:
            client.close()


# ---- exclusive consumers across nodes (issue 14, architecture §12) --------------------


def pika_connect(daemon, vhost="/"):
    host, port = daemon.host_port("amqp")
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=host, port=port, virtual_host=vhost,
        credentials=pika.PlainCredentials(ADMIN[0], ADMIN[1]), socket_timeout=10,
        blocked_connection_timeout=30, connection_attempts=1))


def in_exclusive_use(queue, vhost="/"):
    return 403, f"ACCESS_REFUSED - queue '{queue}' in vhost '{vhost}' in exclusive use"


def refused_consume(connection, queue, exclusive=False):
    """basic.consume on a new channel, which the node must close: (code, text)."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        connection.channel().basic_consume(queue, lambda *a: None, exclusive=exclusive)
    return closed.value.reply_code, closed.value.reply_text


def seen_on(daemon, queue, node, vhost="%2F"):
    """Node `node`'s entry of `queue` in `daemon`'s /api/queues, as
    (consumers, exclusive); (0, False) when it lists none."""
    status, body = daemon.api(f"/api/queues/{vhost}/{queue}")
    assert status == 200, body
    for entry in body["kbridge_nodes"]:
        if entry["node"] == node:
            return entry["consumers"], entry["exclusive"]
    return 0, False


def exclusive_cluster(kbridged_factory, bootstrap, interval=None, expiry=None):
    """Nodes A and B sharing a status topic, a queue of vhost / that both see,
    and a vhost `sales` with a queue of the same name."""
    cluster = Cluster(kbridged_factory, bootstrap)
    daemons = []
    for node in ("nodea", "nodeb"):
        config = node_config(bootstrap, node, cluster.status_topic, cluster.definitions_topic)
        config["vhosts"] = {"sales": {}}
        if interval:  # only the early writes can tell the other node in time
            config["status"] = {"topic": cluster.status_topic, "interval": interval}
        if expiry:
            config["status"]["expiry"] = expiry
        daemons.append(kbridged_factory(config, name=node))
    a, b = daemons
    q = f"excl.{uniq()}"
    for vhost in ("%2F", "sales"):
        assert a.api(f"/api/queues/{vhost}/{q}", method="PUT", body={})[0] == 201
        wait_for(lambda: b.api(f"/api/queues/{vhost}/{q}")[0] == 200, 15,
                 f"node B sees queue {q} of vhost {vhost}")
    wait_for(lambda: sorted(nodes(b)) == ["nodea", "nodeb"], 15, "node B sees node A")
    return a, b, q


def test_exclusive_consumer_on_one_node_refuses_consumers_on_another(kbridged_factory,
                                                                     bootstrap):
    a, b, q = exclusive_cluster(kbridged_factory, bootstrap)
    on_a, on_b = pika_connect(a), pika_connect(b)
    stomp_b = Client(b, login=ADMIN[0], passcode=ADMIN[1])
    try:
        channel_a = on_a.channel()
        tag = channel_a.basic_consume(q, lambda *a: None, exclusive=True)
        # B refuses only once it has read A's record that says so
        wait_for(lambda: seen_on(b, q, "nodea") == (1, True), 15,
                 "node B to see node A's exclusive consumer")
        assert refused_consume(on_b, q) == in_exclusive_use(q)
        assert refused_consume(on_b, q, exclusive=True) == in_exclusive_use(q)
        assert on_b.is_open  # a channel error: the connection carries on
        # STOMP on B: an ERROR naming the queue in exclusive use
        stomp_b.conn.subscribe(f"/queue/{q}", id="s1", ack="client")
        error = stomp_b.wait_error()
        assert error.headers["message"] == "access_refused", error.headers
        assert f"queue '{q}' in vhost '/' in exclusive use" in error.body, error.body
        # the same name in another vhost is another queue
        sales = pika_connect(b, vhost="sales")
        try:
            sales.channel().basic_consume(q, lambda *a: None, exclusive=True)
        finally:
            sales.close()
        # A cancels: once B has read that, B admits consumers again
        channel_a.basic_cancel(tag)
        wait_for(lambda: seen_on(b, q, "nodea") == (0, False), 15,
                 "node B to see node A's consumer gone")
        channel_b = on_b.channel()
        channel_b.basic_consume(q, lambda *a: None)
        wait_for(lambda: seen_on(a, q, "nodeb") == (1, False), 15,
                 "node A to see node B's consumer")
        assert refused_consume(on_a, q, exclusive=True) == in_exclusive_use(q)
    finally:
        stomp_b.close()
        for connection in (on_a, on_b):
            if connection.is_open:
                connection.close()


def test_exclusive_consumer_refused_while_another_node_has_a_consumer(kbridged_factory,
                                                                      bootstrap):
    a, b, q = exclusive_cluster(kbridged_factory, bootstrap)
    on_a, on_b = pika_connect(a), pika_connect(b)
    stomp_a = Client(a, login=ADMIN[0], passcode=ADMIN[1])
    try:
        stomp_a.subscribe(f"/queue/{q}", "s1", receipt="ra")  # a plain consumer, any protocol
        wait_for(lambda: seen_on(b, q, "nodea") == (1, False), 15,
                 "node B to see node A's consumer")
        assert refused_consume(on_b, q, exclusive=True) == in_exclusive_use(q)
        # a plain consumer on B is fine; an exclusive one of vhost sales too
        on_b.channel().basic_consume(q, lambda *a: None)
        sales = pika_connect(b, vhost="sales")
        try:
            sales.channel().basic_consume(q, lambda *a: None, exclusive=True)
            wait_for(lambda: seen_on(a, q, "nodeb", vhost="sales") == (1, True), 15,
                     "node A to see node B's exclusive consumer of vhost sales")
            assert seen_on(a, q, "nodeb") == (1, False)
        finally:
            sales.close()
    finally:
        stomp_a.close()
        for connection in (on_a, on_b):
            if connection.is_open:
                connection.close()


def test_exclusive_consumer_changes_are_written_at_once(kbridged_factory, bootstrap):
    """status.interval 10 minutes: after the first record (100 ms after the
    start), only the early writes an exclusive consumer causes can tell node
    B in time."""
    a, b, q = exclusive_cluster(kbridged_factory, bootstrap, interval="10m")
    on_a, on_b = pika_connect(a), pika_connect(b)
    try:
        channel_a = on_a.channel()
        tag = channel_a.basic_consume(q, lambda *a: None, exclusive=True)
        wait_for(lambda: seen_on(b, q, "nodea") == (1, True), 15,
                 "node B to hear of node A's exclusive consumer before the next interval")
        assert refused_consume(on_b, q) == in_exclusive_use(q)
        channel_a.basic_cancel(tag)
        wait_for(lambda: seen_on(b, q, "nodea") == (0, False), 15,
                 "node B to hear that it is gone before the next interval")
        on_b.channel().basic_consume(q, lambda *a: None, exclusive=True)
    finally:
        for connection in (on_a, on_b):
            if connection.is_open:
                connection.close()


def test_killed_nodes_exclusive_consumer_holds_until_stale(kbridged_factory, bootstrap):
    # an expiry long enough that the refusal right after the kill cannot miss it
    a, b, q = exclusive_cluster(kbridged_factory, bootstrap, expiry="5s")
    on_a, on_b = pika_connect(a), pika_connect(b)
    try:
        on_a.channel().basic_consume(q, lambda *a: None, exclusive=True)
        wait_for(lambda: seen_on(b, q, "nodea") == (1, True), 15,
                 "node B to see node A's exclusive consumer")
        a.kill()  # no tombstone: its record stands until status.expiry
        assert refused_consume(on_b, q) == in_exclusive_use(q)
        wait_for(lambda: nodes(b)["nodea"]["running"] is False, 20, "node A shown stale")
        on_b.channel().basic_consume(q, lambda *a: None, exclusive=True)
    finally:
        for connection in (on_a, on_b):
            try:
                connection.close()
            except Exception:  # node A was killed
                pass
