# SPDX-License-Identifier: Apache-2.0
"""The admin API on the ops listener (issue 18 item 1, docs/operations.md
"Admin API"): HTTP basic authentication against auth.users and their
RabbitMQ tags, the RabbitMQ-shaped resources, queue depth from Kafka (checked
against confluent-kafka's own view of the group's committed offsets and the
topics' end offsets), closing a connection, and Debian's `rabbitmqadmin`
against a live kbridged."""

import json
import os
import shutil
import subprocess
import uuid

import pika
import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import ADMIN, base_config, pika_connect, user_config, wait_for, with_admin
from stomp_util import Client

MONITOR = ("watcher", "watch-secret")
MANAGER = ("manager", "manage-secret")
PLAIN = ("plain", "plain-secret")

# Every endpoint that changes something, with a body where it takes one.
CHANGES = [
    ("PUT", "/api/queues/%2F/changes-q", {"durable": True}),
    ("DELETE", "/api/queues/%2F/changes-q", None),
    ("DELETE", "/api/queues/%2F/changes-q/contents", None),
    ("PUT", "/api/queues/%2F/other-q", {}),
    ("POST", "/api/definitions", {"queues": [{"name": "imported-q", "vhost": "/"}]}),
    ("PUT", "/api/exchanges/%2F/changes-x", {"type": "fanout"}),
    ("DELETE", "/api/exchanges/%2F/amq.fanout", None),
    ("POST", "/api/bindings/%2F/e/amq.fanout/q/changes-q", {"routing_key": ""}),
    ("DELETE", "/api/bindings/%2F/e/amq.fanout/q/changes-q/~", None),
    ("DELETE", "/api/connections/test1-1", None),
]


def uniq():
    return uuid.uuid4().hex[:8]


@pytest.fixture
def daemon(kbridged_factory, bootstrap):
    config = with_admin(base_config(bootstrap, queues={"linger": "0s"}))
    config["auth"]["users"] += [
        user_config(MONITOR[0], MONITOR[1], ["monitoring"]),
        user_config(MANAGER[0], MANAGER[1], ["management"], consume=["^mine\\."],
                    publish=["^mine\\."]),
        user_config(PLAIN[0], PLAIN[1], consume=[".*"], publish=[".*"]),
    ]
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    return kbridged_factory(config)


def test_probes_stay_open_and_the_api_needs_credentials(daemon):
    for path in ("/healthz", "/readyz", "/metrics", "/api/status"):
        assert daemon.http(path)[0] == 200, path
    host, port = daemon.host_port("http")
    import urllib.error
    import urllib.request
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{host}:{port}/api/overview", timeout=5)
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"] == 'Basic realm="kbridge"'
    status, body = daemon.api("/api/overview", auth=(ADMIN[0], "wrong"))
    assert status == 401 and body["error"] == "Unauthorized"
    status, body = daemon.api("/api/overview", auth=("nobody", "x"))
    assert status == 401
    # a user without tags logs in over the protocols but not here
    status, body = daemon.api("/api/overview", auth=PLAIN)
    assert status == 403 and "tag" in body["reason"]


def test_every_change_refused_without_credentials_and_for_monitoring(daemon):
    for method, path, body in CHANGES:
        status, _ = daemon.http(path, method=method, body=body)
        assert status == 401, (method, path)
        status, answer = daemon.api(path, method=method, body=body, auth=MONITOR)
        assert status == 403, (method, path, answer)
        assert "administrator" in answer["reason"]
        status, answer = daemon.api(path, method=method, body=body, auth=MANAGER)
        assert status == 403, (method, path, answer)
    # the queue was never declared by any of them
    status, queues = daemon.api("/api/queues")
    assert status == 200 and "changes-q" not in [q["name"] for q in queues]


def test_monitoring_reads_everything_management_what_it_may_consume(daemon):
    for name in ("mine.a", "theirs.b"):
        assert daemon.api(f"/api/queues/%2F/{name}", method="PUT", body={})[0] == 201
    status, whoami = daemon.api("/api/whoami", auth=MONITOR)
    assert (status, whoami["name"], whoami["tags"]) == (200, "watcher", ["monitoring"])
    names = sorted(q["name"] for q in daemon.api("/api/queues", auth=MONITOR)[1])
    assert names == ["mine.a", "theirs.b"]
    names = sorted(q["name"] for q in daemon.api("/api/queues", auth=MANAGER)[1])
    assert names == ["mine.a"]
    assert daemon.api("/api/queues/%2F/theirs.b", auth=MANAGER)[0] == 404
    assert daemon.api("/api/definitions", auth=MONITOR)[0] == 200


def test_overview_exchanges_bindings_and_queue_declare_delete(daemon):
    q = f"adm.{uniq()}"
    status, _ = daemon.api(f"/api/queues/%2F/{q}", method="PUT",
                           body={"durable": True, "auto_delete": False, "arguments": {}})
    assert status == 201
    status, queue = daemon.api(f"/api/queues/%2F/{q}")
    assert status == 200
    assert {k: queue[k] for k in ("name", "vhost", "durable", "auto_delete", "arguments",
                                   "messages", "messages_ready", "consumers", "node")} == {
        "name": q, "vhost": "/", "durable": True, "auto_delete": False, "arguments": {},
        "messages": 0, "messages_ready": 0, "consumers": 0, "node": "test1"}
    # redeclared with other properties: RabbitMQ's precondition failure
    status, body = daemon.api(f"/api/queues/%2F/{q}", method="PUT", body={"durable": False})
    assert status == 400 and "durable" in body["reason"]
    status, exchanges = daemon.api("/api/exchanges")
    assert status == 200
    by_name = {e["name"]: e for e in exchanges}
    assert by_name["amq.topic"]["type"] == "topic" and by_name["amq.fanout"]["type"] == "fanout"
    assert daemon.api("/api/exchanges/%2F/amq.direct")[1]["type"] == "direct"
    status, overview = daemon.api("/api/overview")
    assert status == 200 and overview["node"] == "test1"
    assert overview["object_totals"]["queues"] == 1
    assert {l["protocol"] for l in overview["listeners"]} == {"stomp", "amqp", "http"}
    assert daemon.api("/api/bindings")[0] == 200
    assert daemon.api(f"/api/queues/%2F/{q}", method="DELETE")[0] == 204
    assert daemon.api(f"/api/queues/%2F/{q}")[0] == 404
    assert daemon.api(f"/api/queues/%2F/{q}", method="DELETE")[0] == 404


def kafka_depth(bootstrap, group, topic):
    """Committed vs end offsets as confluent-kafka sees them (no join)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        total = 0
        for tp in tps:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition),
                                                       timeout=10)
            total += high - (tp.offset if tp.offset >= 0 else low)
        return total
    finally:
        consumer.close()


def test_queue_depth_equals_kafkas_committed_vs_end_offsets(daemon, bootstrap):
    q = f"depth.{uniq()}"
    assert daemon.api(f"/api/queues/%2F/{q}", method="PUT", body={})[0] == 201
    client = Client(daemon)
    try:
        for i in range(30):
            client.send(f"/queue/{q}", f"m{i}", receipt=f"r{i}")
        for i in range(30):
            client.wait_receipt(f"r{i}")
        status, queue = daemon.api(f"/api/queues/%2F/{q}")
        assert status == 200 and queue["messages"] == 30 == queue["messages_ready"]
        assert queue["kbridge_topics"] == [q]
        client.subscribe(f"/queue/{q}", "s1", ack="client-individual",
                         headers={"activemq.prefetchSize": "10"})
        got = client.wait_messages(10)
        assert daemon.api(f"/api/queues/%2F/{q}")[1]["consumers"] == 1
        for frame in got[:10]:
            client.ack(frame)
        client.conn.unsubscribe("s1")
        # the consumer left (linger 0s): its committed offsets stand still now
        wait_for(lambda: kafka_depth(bootstrap, f"kbridge.q.{q}", q) < 30, 30,
                 "the acks committed")
        expected = kafka_depth(bootstrap, f"kbridge.q.{q}", q)
        wait_for(lambda: daemon.api(f"/api/queues/%2F/{q}")[1]["messages"] == expected, 30,
                 f"the API's depth to be {expected}")
        assert 20 <= expected < 30
        queue = daemon.api(f"/api/queues/%2F/{q}")[1]
        assert sum(p["lag"] for p in queue["kbridge_partitions"]) == expected
        assert queue["consumers"] == 0
    finally:
        client.close()


def test_connections_listed_and_closed(daemon):
    client = Client(daemon, login=PLAIN[0], passcode=PLAIN[1])
    try:
        status, connections = daemon.api("/api/connections")
        assert status == 200
        mine = [c for c in connections if c["user"] == "plain"]
        assert len(mine) == 1 and mine[0]["protocol"] == "stomp"
        assert mine[0]["peer_host"] == "127.0.0.1" and mine[0]["node"] == "test1"
        name = mine[0]["name"]
        assert daemon.api(f"/api/connections/{name}")[1]["user"] == "plain"
        # a management user sees only its own connections
        assert daemon.api("/api/connections", auth=MANAGER)[1] == []
        status, _ = daemon.api(f"/api/connections/{name}", method="DELETE",
                               headers={"X-Reason": "maintenance"})
        assert status == 204
        error = client.wait_error()
        assert "maintenance" in error.headers.get("message", "") + error.body
        wait_for(lambda: not [c for c in daemon.api("/api/connections")[1]
                              if c["user"] == "plain"], 15, "the connection gone")
        assert daemon.api(f"/api/connections/{name}", method="DELETE")[0] == 404
    finally:
        client.close()


def test_an_amqp091_connection_closed_gets_connection_forced_with_the_reason(daemon):
    connection = pika_connect(daemon, *PLAIN)
    try:
        channel = connection.channel()
        mine = [c for c in daemon.api("/api/connections")[1] if c["user"] == "plain"]
        assert len(mine) == 1 and mine[0]["protocol"] == "amqp091", mine
        status, _ = daemon.api(f"/api/connections/{mine[0]['name']}", method="DELETE",
                               headers={"X-Reason": "maintenance window"})
        assert status == 204
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            wait_for(lambda: connection.process_data_events(time_limit=0.2) and False, 15,
                     "the broker to close the connection")
        assert closed.value.reply_code == 320
        assert closed.value.reply_text.startswith("CONNECTION_FORCED - ")
        assert "maintenance window" in closed.value.reply_text
        assert not channel.is_open
        wait_for(lambda: not [c for c in daemon.api("/api/connections")[1]
                              if c["user"] == "plain"], 15, "the connection gone")
    finally:
        if connection.is_open:
            connection.close()


def rabbitmqadmin_path():
    for path in (shutil.which("rabbitmqadmin"), "/usr/bin/rabbitmqadmin",
                 "/usr/sbin/rabbitmqadmin"):
        if path and os.path.exists(path):
            return path
    raise AssertionError("rabbitmqadmin not found: install Debian's rabbitmq-server "
                         "(packaging/install-deps.sh)")


def test_rabbitmqadmin_lists_declares_and_deletes(daemon):
    tool = rabbitmqadmin_path()
    host, port = daemon.host_port("http")

    def run(*args):
        out = subprocess.run(["/usr/bin/python3", tool, "-H", host, "-P", str(port),
                              "-u", ADMIN[0], "-p", ADMIN[1], "-f", "raw_json", *args],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr + out.stdout
        return out.stdout

    q = f"rmq.{uniq()}"
    assert "declared" in run("declare", "queue", f"name={q}", "durable=true")
    queues = json.loads(run("list", "queues"))
    assert [x["name"] for x in queues] == [q]
    exchanges = json.loads(run("list", "exchanges"))
    assert {"amq.direct", "amq.fanout", "amq.topic", "amq.headers"} <= {e["name"] for e in exchanges}
    assert json.loads(run("list", "bindings")) == []
    assert isinstance(json.loads(run("list", "connections")), list)
    client = Client(daemon)
    try:
        for i in range(4):
            client.send(f"/queue/{q}", f"m{i}", receipt=f"r{i}")
        for i in range(4):
            client.wait_receipt(f"r{i}")
    finally:
        client.close()
    assert [x["messages"] for x in json.loads(run("list", "queues"))] == [4]
    assert "purged" in run("purge", "queue", f"name={q}")
    assert [x["messages"] for x in json.loads(run("list", "queues"))] == [0]
    queue = daemon.api(f"/api/queues/%2F/{q}")[1]
    assert (queue["durable"], queue["auto_delete"]) == (True, False)  # sent as "true"/"false"
    # an exchange and a binding, declared and deleted as rabbitmqadmin does it
    x = f"rmqx.{uniq()}"
    assert "declared" in run("declare", "exchange", f"name={x}", "type=topic")
    assert "declared" in run("declare", "binding", f"source={x}", f"destination={q}",
                             "routing_key=a.*")
    bindings = json.loads(run("list", "bindings"))
    assert [(b["source"], b["destination"], b["routing_key"], b["properties_key"])
            for b in bindings] == [(x, q, "a.*", "a.*")]
    exchange = daemon.api(f"/api/exchanges/%2F/{x}")[1]
    assert (exchange["type"], exchange["durable"]) == ("topic", True)
    assert "deleted" in run("delete", "binding", f"source={x}", "destination_type=queue",
                            f"destination={q}", "properties_key=a.*")
    assert json.loads(run("list", "bindings")) == []
    # the empty key: RabbitMQ's properties_key "~"
    run("declare", "binding", "source=amq.fanout", f"destination={q}")
    assert [b["properties_key"] for b in json.loads(run("list", "bindings"))] == ["~"]
    run("delete", "binding", "source=amq.fanout", "destination_type=queue", f"destination={q}",
        "properties_key=~")
    assert json.loads(run("list", "bindings")) == []
    assert "deleted" in run("delete", "exchange", f"name={x}")
    assert daemon.api(f"/api/exchanges/%2F/{x}")[0] == 404
    assert "deleted" in run("delete", "queue", f"name={q}")
    assert json.loads(run("list", "queues")) == []


# ---- purge, cluster-wide (issue 13 item 6, routing.md "Purge") ------------------------------

def two_nodes(kbridged_factory, bootstrap):
    """Two kbridged nodes on one Kafka, sharing a definitions topic of this test's own."""
    topic = f"kbridge.definitions.t{uniq()}"
    nodes = []
    for node_id in ("nodea", "nodeb"):
        config = with_admin(base_config(bootstrap, node_id=node_id, definitions={"topic": topic}))
        config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
        nodes.append(kbridged_factory(config, name=node_id))
    return nodes


def bodies(frames):
    return [f.body for f in frames]


def test_purge_reaches_a_consumer_on_another_node(kbridged_factory, bootstrap):
    a, b = two_nodes(kbridged_factory, bootstrap)
    q = f"purge.{uniq()}"
    assert a.api(f"/api/queues/%2F/{q}", method="PUT", body={})[0] == 201
    wait_for(lambda: b.api(f"/api/queues/%2F/{q}")[0] == 200, 10, "node B sees the queue")
    consumer = Client(b)
    producer = Client(a)
    try:
        # B holds the group: one message delivered (unacked, prefetch 1), the rest buffered
        consumer.subscribe(f"/queue/{q}", "s1", ack="client-individual",
                           headers={"activemq.prefetchSize": "1"}, receipt="sub")
        for i in range(20):
            producer.send(f"/queue/{q}", f"old{i}", receipt=f"o{i}")
        for i in range(20):
            producer.wait_receipt(f"o{i}")
        held = consumer.wait_messages(1)[0]
        wait_for(lambda: a.api(f"/api/queues/%2F/{q}")[1]["messages"] == 20, 15,
                 "the depth to show 20")
        status, answer = a.api(f"/api/queues/%2F/{q}/contents", method="DELETE")
        assert status == 200 and answer == {"message_count": 20}
        # the purge is in both views at once (read-your-writes on A, B follows)
        assert a.api(f"/api/queues/%2F/{q}")[1]["messages"] == 0
        wait_for(lambda: b.api(f"/api/queues/%2F/{q}")[1]["messages"] == 0, 10,
                 "node B's depth 0")
        # the unacknowledged message stays with its consumer (as RabbitMQ's purge)
        consumer.ack(held)
        for i in range(5):
            producer.send(f"/queue/{q}", f"new{i}", receipt=f"n{i}")
        for i in range(5):
            producer.wait_receipt(f"n{i}")
        for count in range(2, 7):  # prefetch 1: one at a time, each acknowledged
            got = consumer.wait_messages(count)
            consumer.ack(got[-1])
        # only the new ones, in publish order (one producer: one partition)
        assert bodies(got) == [held.body] + [f"new{i}" for i in range(5)]
        wait_for(lambda: a.api(f"/api/queues/%2F/{q}")[1]["messages"] == 0, 15,
                 "the depth back to 0")
        assert len(consumer.recorder.messages) == 6
    finally:
        consumer.close()
        producer.close()


def test_purge_of_an_idle_queue_holds_for_the_next_consumer(kbridged_factory, bootstrap):
    a, b = two_nodes(kbridged_factory, bootstrap)
    q = f"idle.{uniq()}"
    assert a.api(f"/api/queues/%2F/{q}", method="PUT", body={})[0] == 201
    producer = Client(a)
    try:
        for i in range(10):
            producer.send(f"/queue/{q}", f"old{i}", receipt=f"o{i}")
        for i in range(10):
            producer.wait_receipt(f"o{i}")
        status, answer = a.api(f"/api/queues/%2F/{q}/contents", method="DELETE")
        assert status == 200 and answer == {"message_count": 10}
        for i in range(3):
            producer.send(f"/queue/{q}", f"new{i}", receipt=f"n{i}")
        for i in range(3):
            producer.wait_receipt(f"n{i}")
        wait_for(lambda: b.api(f"/api/queues/%2F/{q}")[1]["messages"] == 3, 10,
                 "node B's depth 3")
        consumer = Client(b)
        try:
            consumer.subscribe(f"/queue/{q}", "s1", receipt="sub")
            got = consumer.wait_messages(3)
            assert sorted(bodies(got)) == ["new0", "new1", "new2"]
        finally:
            consumer.close()
    finally:
        producer.close()
    assert a.api(f"/api/queues/%2F/nothing-{uniq()}/contents", method="DELETE")[0] == 404


def test_pika_queue_purge_returns_the_count(kbridged_factory, bootstrap):
    config = with_admin(base_config(bootstrap))
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    daemon = kbridged_factory(config)
    connection = pika_connect(daemon, *ADMIN)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        q = f"pika.{uniq()}"
        channel.queue_declare(q, durable=True)
        for i in range(7):
            channel.basic_publish("", q, f"m{i}".encode())
        assert channel.queue_purge(q).method.message_count == 7
        assert channel.queue_purge(q).method.message_count == 0
        channel.basic_publish("", q, b"after")
        assert daemon.api(f"/api/queues/%2F/{q}")[1]["messages"] == 1
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            channel.queue_purge(f"missing-{uniq()}")
        assert closed.value.reply_code == 404
    finally:
        connection.close()


def test_delete_stops_consumers_on_every_node(kbridged_factory, bootstrap):
    a, b = two_nodes(kbridged_factory, bootstrap)
    q = f"gone.{uniq()}"
    assert a.api(f"/api/queues/%2F/{q}", method="PUT", body={})[0] == 201
    wait_for(lambda: b.api(f"/api/queues/%2F/{q}")[0] == 200, 10, "node B sees the queue")
    from proton.utils import LinkDetached
    from amqp_client import connect
    on_b, on_a = Client(b), Client(a)
    amqp_b = connect(b)
    try:
        on_b.subscribe(f"/queue/{q}", "s1", receipt="sub-b")
        on_a.subscribe(f"/queue/{q}", "s1", receipt="sub-a")
        receiver = amqp_b.create_receiver(f"/queue/{q}", credit=1)
        assert a.api(f"/api/queues/%2F/{q}", method="DELETE")[0] == 204
        for client in (on_a, on_b):
            error = client.wait_error()
            assert f"queue '{q}' in vhost '/' was deleted" in error.body
        with pytest.raises(LinkDetached) as detached:
            receiver.receive(timeout=15)
        assert "amqp:resource-deleted" in str(detached.value)
        assert f"queue '{q}' in vhost '/' was deleted" in str(detached.value)
    finally:
        on_b.close()
        on_a.close()
        amqp_b.close()


EXPORT = {
    "rabbit_version": "3.12.0",
    "users": [{"name": "guest", "password_hash": "x", "hashing_algorithm":
               "rabbit_password_hashing_sha256", "tags": ["administrator"]}],
    "vhosts": [{"name": "/"}],
    "exchanges": [{"name": "orders", "vhost": "/", "type": "topic", "durable": True,
                   "auto_delete": False, "internal": False, "arguments": {}}],
    "queues": [{"name": "orders.eu", "vhost": "/", "durable": True, "auto_delete": False,
                "arguments": {}}],
    "bindings": [{"source": "orders", "vhost": "/", "destination": "orders.eu",
                  "destination_type": "queue", "routing_key": "eu.#", "arguments": {}}],
}


def test_definitions_post_imports_a_rabbitmq_export(daemon):
    status, counts = daemon.api("/api/definitions", method="POST", body=EXPORT)
    assert status == 200, counts
    assert counts == {"written": 3, "unchanged": 0, "refused": 0, "skipped_vhost": 0,
                      "users_skipped": 1, "permissions_skipped": 0}
    # answered once applied: the view has it now
    exported = daemon.api("/api/definitions")[1]
    assert [q["name"] for q in exported["queues"]] == ["orders.eu"]
    assert [(b["source"], b["destination"], b["routing_key"]) for b in exported["bindings"]] == [
        ("orders", "orders.eu", "eu.#")]
    # again: nothing to write
    status, counts = daemon.api("/api/definitions", method="POST", body=EXPORT)
    assert status == 200 and counts["written"] == 0 and counts["unchanged"] == 3
    bad = {"exchanges": [{"name": "x", "vhost": "/", "type": "x-delayed-message"}]}
    status, body = daemon.api("/api/definitions", method="POST", body=bad)
    assert status == 400 and "exchanges[0]" in body["reason"]


def test_definitions_post_larger_than_64_kib_imports(daemon):
    """A RabbitMQ export of 500 queues (~80 KiB; the ops listener took at most
    64 KiB before http.max_body_size) imports whole."""
    export = {"vhosts": [{"name": "/"}],
              "queues": [{"name": f"bulk.queue.{i:04d}.with.a.long.enough.name", "vhost": "/",
                          "durable": True, "auto_delete": False,
                          "arguments": {"x-message-ttl": 60000, "x-queue-type": "classic"}}
                         for i in range(500)]}
    assert len(json.dumps(export)) > 64 * 1024
    status, counts = daemon.api("/api/definitions", method="POST", body=export, timeout=120)
    assert status == 200, counts
    assert counts["written"] == 500 and counts["refused"] == 0
    names = {q["name"] for q in daemon.api("/api/definitions")[1]["queues"]}
    assert {q["name"] for q in export["queues"]} <= names


def test_bodies_over_http_max_body_size_are_refused_with_413(kbridged_factory, bootstrap):
    daemon = kbridged_factory(with_admin(base_config(bootstrap, http={"max_body_size": "4KiB"})))
    big = {"queues": [{"name": f"q{i}", "vhost": "/"} for i in range(400)]}
    assert len(json.dumps(big)) > 4096
    status, _ = daemon.api("/api/definitions", method="POST", body=big)
    assert status == 413
    small = {"queues": [{"name": "q-small", "vhost": "/"}]}
    status, counts = daemon.api("/api/definitions", method="POST", body=small)
    assert status == 200 and counts["written"] == 1


def documented_api_requests():
    """(method, path) of every row of docs/operations.md's admin API table."""
    import re
    doc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                       "operations.md")
    text = open(doc, encoding="utf-8").read()
    table = text[text.index("| request | answer |"):]
    table = table[:table.index("\n\n")]
    rows = []
    for line in table.splitlines()[2:]:
        m = re.match(r"\| `(GET|PUT|POST|DELETE) (/api/[^`]*)`", line)
        assert m, f"an admin API row without `METHOD /api/...`: {line[:80]}"
        rows.append((m.group(1), m.group(2)))
    return rows


def test_admin_api_reference_matches_the_routes(daemon):
    """docs/operations.md's admin API table against the code (issue 18 item 7):
    every documented request, with and without its optional parts, reaches
    its handler (whatever that answers for names that do not exist, it is not
    the router's 404 "no such endpoint"); and every resource admin_route serves
    is documented."""
    import re
    rows = documented_api_requests()
    assert len(rows) >= 20, rows
    names = {"VHOST": "%2F", "NAME": "no-such-thing", "QUEUE": "no-such-queue",
             "SOURCE": "no-such-exchange", "EXCHANGE": "no-such-exchange", "PROPS": "~",
             "N": "1"}
    checked = 0
    for method, pattern in rows:
        pattern = pattern.split(" ")[0]
        variants, shorter = set(), pattern
        while True:  # every depth of the optional parts: [/VHOST[/NAME]] gives 3
            full = shorter
            while "[" in full:
                full = re.sub(r"\[([^\[\]]*)\]", r"\1", full)
            variants.add(full)
            if "[" not in shorter:
                break
            shorter = re.sub(r"\[[^\[\]]*\]", "", shorter, count=1)
        for variant in sorted(variants):
            path = re.sub(r"\b(VHOST|NAME|QUEUE|SOURCE|EXCHANGE|PROPS|N)\b",
                          lambda m: names[m.group(1)], variant)
            body = {} if method in ("PUT", "POST") else None
            status, answer = daemon.api(path, method=method, body=body)
            reason = answer.get("reason") if isinstance(answer, dict) else None
            assert not (status == 404 and reason and reason.startswith("no such endpoint")), \
                f"{method} {path} (documented as {pattern}) is not routed"
            checked += 1
    assert checked >= len(rows)
    status, answer = daemon.api("/api/no-such-resource")  # what the check above tells apart
    assert status == 404 and answer["reason"].startswith("no such endpoint"), answer
    source = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "daemon",
                               "admin_api.c"), encoding="utf-8").read()
    route = source[source.index("static void admin_route("):]
    route = route[:route.index("\n}\n")]
    served = set(re.findall(r'admin_is\(req, 1, "([a-z]+)"\)', route))
    assert {"overview", "queues", "definitions"} <= served, served
    documented = {re.split(r"[/\[?]", path)[2] for _, path in rows}
    assert served <= documented, f"served but not documented: {served - documented}"
