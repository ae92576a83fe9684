# SPDX-License-Identifier: Apache-2.0
"""Exchanges and bindings (issue 13 items 3, 4, 7; docs/routing.md), with
third-party clients: stomp.py and python3-qpid-proton.

- STOMP /exchange/NAME/KEY: SEND publishes to exchange NAME with routing key
  KEY; SUBSCRIBE reads a server-named exclusive auto-delete queue bound to
  NAME with KEY, as RabbitMQ's STOMP does.
- fanout (3 queues), direct (two keys), topic (a.*, a.#, #) and headers
  (x-match all / any) exchanges: for 1,000 messages each queue gets exactly
  the messages its bindings match, once, in per-key order.
- a queue bound after messages were published gets only what follows.
- an unroutable STOMP SEND gets its RECEIPT and is counted
  (kbridge_unroutable_total); AMQP 1.0 gets `released`.
- the alternate-exchange receives what its exchange cannot route.
- restart safety: every publish a node confirmed is in every queue its key routes
  to, read on another node, after the publishing node was killed with SIGKILL.
- AMQP 1.0 /exchanges/amq.fanout round trip (RabbitMQ's v2 address).

Exchanges and queues other than the built-in ones come from a RabbitMQ
definitions file (`definitions.file`). Waits are deadline-based (receipts,
wait_for); nothing sleeps and hopes."""

import json
import re
import uuid

import pika
import pytest
from proton import Delivery, Message
from proton.utils import SendException

from amqp_client import connect, receive_all
from conftest import ADMIN, EXTERNAL_BOOTSTRAP, base_config, wait_for, with_admin
from stomp_util import Client
from test_stomp_queues import read_topic
from test_amqp091 import USER, password_hash, pika_connect  # noqa: F401 (fixture)

COUNT = 1000
# Queues are consumer groups: the mock's first rebalance waits
# session.timeout.ms - 1s, so keep it short.
KAFKA = {"consumer": {"session.timeout.ms": 6000}}


@pytest.fixture
def uniq():
    """A unique name suffix (a shared cluster keeps earlier tests' topics)."""
    return f"-{uuid.uuid4().hex[:10]}" if EXTERNAL_BOOTSTRAP else f"-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def daemon(kbridged_factory, bootstrap):
    return kbridged_factory(with_admin(base_config(bootstrap, kafka=dict(KAFKA))))


def metric(daemon, series):
    text = daemon.http("/metrics")[1]
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def daemon_with_definitions(kbridged_factory, bootstrap, tmp_path, exchanges, queues, bindings):
    """A kbridged that loads a RabbitMQ definitions export at start."""
    export = {
        "rabbit_version": "3.13.7",
        "vhosts": [{"name": "/"}],
        "exchanges": [dict({"vhost": "/", "durable": True, "auto_delete": False,
                            "internal": False, "arguments": {}}, **e) for e in exchanges],
        "queues": [dict({"vhost": "/", "durable": True, "auto_delete": False, "arguments": {}},
                        name=q) for q in queues],
        "bindings": [dict({"vhost": "/", "destination_type": "queue", "arguments": {}}, **b)
                     for b in bindings],
    }
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(export))
    return kbridged_factory(with_admin(base_config(bootstrap, kafka=dict(KAFKA),
                                                   definitions={"file": str(path)})))


def send_all(client, destination, bodies_and_headers):
    """SEND each (body, headers) to destination; receipts on every 100th and the last."""
    last = len(bodies_and_headers) - 1
    for i, (body, headers) in enumerate(bodies_and_headers):
        receipt = f"s{i}" if i % 100 == 99 or i == last else None
        client.send(destination(i) if callable(destination) else destination, body,
                    headers=headers, receipt=receipt)
    client.wait_receipt(f"s{last}", timeout=60)


def bodies(frames):
    return [f.body for f in frames]


# ---- fanout -------------------------------------------------------------------------

def test_fanout_exchange_gives_every_queue_every_message_once_in_order(daemon):
    consumers = [Client(daemon) for _ in range(3)]
    producer = Client(daemon)
    try:
        for n, c in enumerate(consumers):
            c.subscribe("/exchange/amq.fanout", f"f{n}", receipt=f"r{n}", timeout=60)
        sent = [f"m{i}" for i in range(COUNT)]
        send_all(producer, "/exchange/amq.fanout", [(b, {}) for b in sent])
        for c in consumers:
            got = c.wait_messages(COUNT, timeout=60)
            assert bodies(got) == sent  # exactly these, once each, in order
            assert {f.headers["destination"] for f in got} == {"/exchange/amq.fanout"}
        # nothing more arrives: the next message is the next one each gets
        producer.send("/exchange/amq.fanout", "end", receipt="end")
        producer.wait_receipt("end")
        for c in consumers:
            assert bodies(c.wait_messages(COUNT + 1))[COUNT:] == ["end"]
        assert not any(c.recorder.errors for c in consumers + [producer])
    finally:
        for c in consumers + [producer]:
            c.close()


# ---- direct ---------------------------------------------------------------------------

def test_direct_exchange_with_two_keys_and_unroutables(daemon):
    a, b, producer = Client(daemon), Client(daemon), Client(daemon)
    try:
        a.subscribe("/exchange/amq.direct/k1", "a", receipt="ra", timeout=60)
        b.subscribe("/exchange/amq.direct/k2", "b", receipt="rb", timeout=60)
        keys = ["k1", "k2", "k3"]
        messages = [(f"m{i}", keys[i % 3]) for i in range(COUNT)]
        send_all(producer, lambda i: f"/exchange/amq.direct/{messages[i][1]}",
                 [(body, {}) for body, _ in messages])
        expect = {k: [body for body, key in messages if key == k] for k in keys}
        got_a = a.wait_messages(len(expect["k1"]), timeout=60)
        got_b = b.wait_messages(len(expect["k2"]), timeout=60)
        assert bodies(got_a) == expect["k1"]
        assert bodies(got_b) == expect["k2"]
        assert {f.headers["kbridge-routing-key"] for f in got_a} == {"k1"}
        # k3 reached no queue: confirmed (RECEIPT) and dropped, counted
        assert metric(daemon, "kbridge_unroutable_total") == len(expect["k3"])
        # each queue read the other's records from amq.direct and skipped them
        wait_for(lambda: metric(daemon, "kbridge_unmatched_total") ==
                 len(expect["k1"]) + len(expect["k2"]), 30, "the skipped records counted")
        assert not (a.recorder.errors or b.recorder.errors or producer.recorder.errors)
    finally:
        for c in (a, b, producer):
            c.close()


def test_unroutable_send_gets_its_receipt_and_is_counted(daemon):
    client = Client(daemon)
    try:
        client.send("/exchange/amq.direct/nobody", "lost", receipt="u1")
        client.wait_receipt("u1")
        client.send("/exchange/amq.fanout", "lost too", receipt="u2")
        client.wait_receipt("u2")
        assert metric(daemon, "kbridge_unroutable_total") == 2
        assert not client.recorder.errors
        # a queue bound now does not get them: they were never written
        client.subscribe("/exchange/amq.fanout", "late", receipt="r1", timeout=60)
        client.send("/exchange/amq.fanout", "kept", receipt="u3")
        client.wait_receipt("u3")
        assert bodies(client.wait_messages(1)) == ["kept"]
        assert metric(daemon, "kbridge_unroutable_total") == 2
    finally:
        client.close()


def test_unknown_exchange_is_an_error_naming_it(daemon):
    client = Client(daemon)
    try:
        client.send("/exchange/no.such.exchange/k", "x", receipt="x1")
        error = client.wait_error()
        assert "no exchange 'no.such.exchange'" in error.headers["message"] + error.body
    finally:
        client.close()


# ---- bound after publishing ------------------------------------------------------------

def test_a_queue_bound_after_publishing_starts_from_that_point(daemon):
    early, late, producer = Client(daemon), Client(daemon), Client(daemon)
    try:
        early.subscribe("/exchange/amq.fanout", "e", receipt="re", timeout=60)
        send_all(producer, "/exchange/amq.fanout", [(f"before{i}", {}) for i in range(50)])
        early.wait_messages(50)
        late.subscribe("/exchange/amq.fanout", "l", receipt="rl", timeout=60)
        send_all(producer, "/exchange/amq.fanout", [(f"after{i}", {}) for i in range(50)])
        assert bodies(late.wait_messages(50)) == [f"after{i}" for i in range(50)]
        assert bodies(early.wait_messages(100)) == (
            [f"before{i}" for i in range(50)] + [f"after{i}" for i in range(50)])
        producer.send("/exchange/amq.fanout", "end", receipt="end")
        producer.wait_receipt("end")
        assert bodies(late.wait_messages(51))[50:] == ["end"]
    finally:
        for c in (early, late, producer):
            c.close()


# ---- topic and headers exchanges, alternate exchange (definitions file) ------------------

def test_topic_exchange_patterns(kbridged_factory, bootstrap, tmp_path, uniq):
    x = f"ex.topic{uniq}"
    queues = {f"qstar{uniq}": "a.*", f"qhash{uniq}": "a.#", f"qall{uniq}": "#"}
    daemon = daemon_with_definitions(
        kbridged_factory, bootstrap, tmp_path, [{"name": x, "type": "topic"}], list(queues),
        [{"source": x, "destination": q, "routing_key": k} for q, k in queues.items()])
    consumers = {q: Client(daemon) for q in queues}
    producer = Client(daemon)
    try:
        for n, (q, c) in enumerate(consumers.items()):
            c.subscribe(f"/amq/queue/{q}", f"s{n}", receipt=f"r{n}", timeout=60)
        keys = ["a", "a.b", "a.b.c", "b.a", "a.x"]
        messages = [(f"m{i}", keys[i % len(keys)]) for i in range(COUNT)]
        send_all(producer, lambda i: f"/exchange/{x}/{messages[i][1]}",
                 [(body, {}) for body, _ in messages])
        matches = {"a.*": {"a.b", "a.x"}, "a.#": {"a", "a.b", "a.b.c", "a.x"},
                   "#": set(keys)}
        for q, pattern in queues.items():
            expect = [body for body, key in messages if key in matches[pattern]]
            got = consumers[q].wait_messages(len(expect), timeout=60)
            # per key, in order; across keys, order is per partition only
            for key in matches[pattern]:
                assert [f.body for f in got if f.headers["kbridge-routing-key"] == key] == \
                    [body for body, k in messages if k == key], (q, key)
            assert sorted(bodies(got)) == sorted(expect), q
        assert metric(daemon, "kbridge_unroutable_total") == 0
    finally:
        for c in list(consumers.values()) + [producer]:
            c.close()


def test_headers_exchange_match_all_and_any(kbridged_factory, bootstrap, tmp_path, uniq):
    q_all, q_any = f"hall{uniq}", f"hany{uniq}"
    daemon = daemon_with_definitions(
        kbridged_factory, bootstrap, tmp_path, [], [q_all, q_any],
        [{"source": "amq.headers", "destination": q_all, "routing_key": "",
          "arguments": {"x-match": "all", "color": "red", "size": "big"}},
         {"source": "amq.headers", "destination": q_any, "routing_key": "",
          "arguments": {"x-match": "any", "color": "red", "size": "big"}}])
    c_all, c_any, producer = Client(daemon), Client(daemon), Client(daemon)
    try:
        c_all.subscribe(f"/amq/queue/{q_all}", "all", receipt="r1", timeout=60)
        c_any.subscribe(f"/amq/queue/{q_any}", "any", receipt="r2", timeout=60)
        combos = [{"color": "red", "size": "big"}, {"color": "red", "size": "small"},
                  {"color": "blue", "size": "big"}, {"color": "blue"}, {}]
        messages = [(f"m{i}", combos[i % len(combos)]) for i in range(COUNT)]
        send_all(producer, "/exchange/amq.headers", messages)
        expect_all = [b for b, h in messages if h.get("color") == "red" and h.get("size") == "big"]
        expect_any = [b for b, h in messages if h.get("color") == "red" or h.get("size") == "big"]
        assert bodies(c_all.wait_messages(len(expect_all), timeout=60)) == expect_all
        assert bodies(c_any.wait_messages(len(expect_any), timeout=60)) == expect_any
        # the rest reached no queue
        assert metric(daemon, "kbridge_unroutable_total") == COUNT - len(expect_any)
    finally:
        for c in (c_all, c_any, producer):
            c.close()


def test_alternate_exchange_receives_unroutables(kbridged_factory, bootstrap, tmp_path, uniq):
    main, q_main = f"ex.main{uniq}", f"qmain{uniq}"
    daemon = daemon_with_definitions(
        kbridged_factory, bootstrap, tmp_path,
        [{"name": main, "type": "direct", "arguments": {"alternate-exchange": "amq.fanout"}}],
        [q_main], [{"source": main, "destination": q_main, "routing_key": "k1"}])
    c_main, c_alt, producer = Client(daemon), Client(daemon), Client(daemon)
    try:
        c_main.subscribe(f"/amq/queue/{q_main}", "m", receipt="r1", timeout=60)
        c_alt.subscribe("/exchange/amq.fanout", "a", receipt="r2", timeout=60)
        producer.send(f"/exchange/{main}/k1", "routed", receipt="s1")
        producer.send(f"/exchange/{main}/k2", "to the alternate", receipt="s2")
        producer.wait_receipt("s1")
        producer.wait_receipt("s2")
        assert bodies(c_main.wait_messages(1)) == ["routed"]
        got = c_alt.wait_messages(1)
        assert bodies(got) == ["to the alternate"]
        assert got[0].headers["kbridge-routing-key"] == "k2"
        assert metric(daemon, "kbridge_alternate_routed_total") == 1
        assert metric(daemon, "kbridge_unroutable_total") == 0
        producer.send(f"/exchange/{main}/k1", "end", receipt="s3")
        producer.wait_receipt("s3")
        assert bodies(c_main.wait_messages(2)) == ["routed", "end"]
        assert len(c_alt.recorder.messages) == 1
    finally:
        for c in (c_main, c_alt, producer):
            c.close()


# ---- AMQP 1.0 ---------------------------------------------------------------------------

def test_amqp_exchanges_fanout_round_trip_and_released_when_unroutable(daemon):
    conn = connect(daemon)
    stomp = Client(daemon)
    try:
        stomp.subscribe("/exchange/amq.fanout", "s", receipt="r1", timeout=60)
        # the attach is answered once the receiver's own queue is positioned
        receiver = conn.create_receiver("/exchanges/amq.fanout", credit=10)
        sender = conn.create_sender("/exchanges/amq.fanout")
        sender.send(Message(body=b"hello", subject="any.key", properties={"color": "red"}))
        got = receive_all(receiver, 1)
        assert got[0].body == b"hello"
        assert got[0].properties["color"] == "red"
        assert got[0].properties["kbridge-routing-key"] == "any.key"
        assert bodies(stomp.wait_messages(1)) == ["hello"]
        # /exchanges/NAME takes the routing key from the subject (RabbitMQ's
        # v2 address); nothing bound to amq.direct with it: released
        direct = conn.create_sender("/exchanges/amq.direct")
        with pytest.raises(SendException) as refused:
            direct.send(Message(body=b"nobody", subject="nobody"))
        assert refused.value.state == Delivery.RELEASED
        # /exchanges/NAME/KEY: the key from the address
        keyed = conn.create_sender("/exchanges/amq.fanout/k")
        keyed.send(Message(body=b"keyed"))
        assert receive_all(receiver, 1)[0].properties["kbridge-routing-key"] == "k"
        assert metric(daemon, "kbridge_unroutable_total") == 1
    finally:
        stomp.close()
        conn.close()


# ---- the queues behind the addresses (through the definitions topic) ----------------------

def definitions(daemon):
    status, body = daemon.http("/api/definitions", auth=ADMIN)
    assert status == 200, body
    return json.loads(body)


def test_exchange_subscription_queue_is_declared_bound_and_auto_deleted(daemon, uniq):
    client = Client(daemon)
    try:
        client.subscribe("/exchange/amq.direct/k", "s", receipt="r1", timeout=60)
        view = definitions(daemon)
        ours = [q for q in view["queues"] if q["name"].startswith("amq.gen-")]
        assert len(ours) == 1, view["queues"]
        assert ours[0]["exclusive"] and ours[0]["auto_delete"] and not ours[0]["durable"]
        assert [(b["source"], b["routing_key"]) for b in view["bindings"]
                if b["destination"] == ours[0]["name"]] == [("amq.direct", "k")]
        # the last consumer goes: the queue and its binding go (auto-delete)
        client.conn.unsubscribe("s", headers={"receipt": "u1"})
        client.wait_receipt("u1")
        wait_for(lambda: not [q for q in definitions(daemon)["queues"]
                              if q["name"] == ours[0]["name"]], 15, "the queue deleted")
        assert not [b for b in definitions(daemon)["bindings"]
                    if b["destination"] == ours[0]["name"]]
        # /queue/NAME declares a durable queue; /amq/queue/NAME must exist
        client.subscribe(f"/queue/declared{uniq}", "d", receipt="r2")
        wait_for(lambda: [q for q in definitions(daemon)["queues"]
                          if q["name"] == f"declared{uniq}" and q["durable"]], 15,
                 "the queue declared")
        client.subscribe(f"/amq/queue/declared{uniq}", "d2", receipt="r3")
        client.conn.subscribe(f"/amq/queue/missing{uniq}", id="m")
        error = client.wait_error()
        assert error.headers["message"] == "not_found", error.headers
        assert f"no queue 'missing{uniq}' in vhost '/'" in error.body
    finally:
        client.close()


# ---- restart safety -----------------------------------------------------------------

def test_every_confirmed_publish_reaches_every_queue_it_routes_to_across_kill_9(
        kbridged_factory, bootstrap, tmp_path, uniq):
    """Issue 13's restart case: a topic exchange bound to three queues; node A takes
    STOMP SENDs with a receipt each and is killed with SIGKILL part way; the queues,
    read on node B, hold every message A confirmed (and nothing that was never sent),
    each in the queues its routing key matches."""
    x = f"ex.kill{uniq}"
    queues = {f"qa{uniq}": "a.*", f"qall{uniq}": "#", f"qb{uniq}": "b.#"}
    export = {
        "vhosts": [{"name": "/"}],
        "exchanges": [{"name": x, "vhost": "/", "type": "topic", "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}}],
        "queues": [{"name": q, "vhost": "/", "durable": True, "auto_delete": False,
                    "arguments": {}} for q in queues],
        "bindings": [{"source": x, "vhost": "/", "destination": q, "destination_type": "queue",
                      "routing_key": k, "arguments": {}} for q, k in queues.items()],
    }
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(export))

    def node(name):
        return kbridged_factory(base_config(bootstrap, node_id=name, kafka=dict(KAFKA),
                                            definitions={"file": str(path)}), name=name)

    publisher_node, consumer_node = node("pub"), node("sub")
    consumers = {q: Client(consumer_node) for q in queues}
    producer = Client(publisher_node)
    try:
        for n, (q, c) in enumerate(consumers.items()):
            c.subscribe(f"/amq/queue/{q}", f"s{n}", receipt=f"r{n}", timeout=60)
        keys = ["a.b", "b.c", "c.d"]
        total = 2000
        kill_after = 400
        sent = []
        for i in range(total):
            body, key = f"m{i}", keys[i % len(keys)]
            try:
                producer.send(f"/exchange/{x}/{key}", body, receipt=body)
            except Exception:  # the node is gone: stomp.py refuses further sends
                break
            sent.append((body, key))
            if len(producer.recorder.receipts) >= kill_after and publisher_node.proc.poll() is None:
                publisher_node.kill()
        if publisher_node.proc.poll() is None:  # every send went out before the kill
            wait_for(lambda: len(producer.recorder.receipts) >= kill_after, 60, "receipts")
            publisher_node.kill()
        confirmed = set(producer.recorder.receipts)
        assert len(confirmed) >= kill_after
        key_of = dict(sent)
        assert confirmed <= set(key_of)
        matches = {"a.*": {"a.b"}, "#": set(keys), "b.#": {"b.c"}}
        for q, pattern in queues.items():
            want = {body for body in confirmed if key_of[body] in matches[pattern]}
            c = consumers[q]
            wait_for(lambda: want <= set(bodies(c.recorder.messages)), 60,
                     f"{len(want)} confirmed messages in {q}")
            got = bodies(c.recorder.messages)
            # nothing foreign, nothing routed to the wrong queue
            assert {key_of.get(body) for body in got} <= matches[pattern], q
        assert not any(c.recorder.errors for c in consumers.values())
    finally:
        for c in list(consumers.values()) + [producer]:
            try:
                c.close()
            except Exception:
                pass


# ---- a binding sees what is published after it exists --------------------------------

@pytest.fixture
def daemon091(kbridged_factory, bootstrap, password_hash):
    """A node that also speaks AMQP 0-9-1 (pika) on its AMQP port."""
    config = base_config(bootstrap, kafka=dict(KAFKA),
                         auth={"anonymous": True, "users": [
                             {"name": USER, "password_hash": password_hash,
                              "publish": [".*"], "consume": [".*"]}]})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    return kbridged_factory(config)


def test_a_queue_bound_before_it_has_a_consumer_keeps_what_is_published_after_bind_ok(
        daemon091, uniq):
    """The common RabbitMQ order: declare, bind, publish, and only later consume. The
    bind is answered once the queue's group is anchored on the exchange's topic, so the
    messages published between bind-ok and the first consumer are the queue's (before,
    the queue started reading where its first consumer found the topic)."""
    daemon = daemon091
    x, q = f"ex.later{uniq}", f"q.later{uniq}"
    connection = pika_connect(daemon)
    try:
        channel = connection.channel()
        channel.exchange_declare(x, "direct", durable=True)
        channel.queue_declare(q, durable=True)
        channel.queue_bind(q, x, routing_key="k")
        channel.confirm_delivery()
        for i in range(5):  # each confirmed: in Kafka
            channel.basic_publish(x, "k", f"early-{i}".encode(), mandatory=True)
    finally:
        connection.close()
    consumer = Client(daemon)
    try:
        consumer.subscribe(f"/amq/queue/{q}", "s", receipt="r", timeout=60)
        got = consumer.wait_messages(5, timeout=60)
        assert bodies(got) == [f"early-{i}" for i in range(5)]
        assert not consumer.recorder.errors
    finally:
        consumer.close()


# ---- a direct exchange with a Kafka topic per routing key ------------------------------

def test_per_key_exchange_writes_a_topic_per_key_that_queues_read_without_filtering(
        kbridged_factory, bootstrap, tmp_path, uniq):
    """x-kbridge-topic-per-key (routing.md): a direct exchange writes each message to
    NAME.KEY, so a bound queue reads only its keys' topics and skips nothing, and a native
    Kafka reader finds a key's messages in a topic of their own; a key no queue is bound
    to is kept there too (unroutables are kept by default on such an exchange)."""
    x = f"ex.perkey{uniq}"
    queues = {f"qeu{uniq}": "eu", f"qus{uniq}": "us"}
    daemon = daemon_with_definitions(
        kbridged_factory, bootstrap, tmp_path,
        [{"name": x, "type": "direct", "arguments": {"x-kbridge-topic-per-key": True}}],
        list(queues), [{"source": x, "destination": q, "routing_key": k}
                       for q, k in queues.items()])
    consumers = {q: Client(daemon) for q in queues}
    producer = Client(daemon)
    try:
        for n, (q, c) in enumerate(consumers.items()):
            c.subscribe(f"/amq/queue/{q}", f"s{n}", receipt=f"r{n}", timeout=60)
        keys = ["eu", "us", "apac"]
        messages = [(f"m{i}", keys[i % 3]) for i in range(300)]
        send_all(producer, lambda i: f"/exchange/{x}/{messages[i][1]}",
                 [(body, {}) for body, _ in messages])
        for q, key in queues.items():
            expect = [body for body, k in messages if k == key]
            got = consumers[q].wait_messages(len(expect), timeout=60)
            assert bodies(got) == expect, q  # one key: one topic, in order
        assert metric(daemon, "kbridge_unmatched_total") == 0  # nothing read to be skipped
        assert metric(daemon, "kbridge_unroutable_total") == 0  # apac kept in its topic
        for key in keys:
            records = read_topic(bootstrap, f"{x}.{key}")
            assert [r.value().decode() for r in records] == \
                [body for body, k in messages if k == key], key
            assert {dict(r.headers())["kbridge-routing-key"] for r in records} == {key.encode()}
        assert not any(c.recorder.errors for c in list(consumers.values()) + [producer])
    finally:
        for c in list(consumers.values()) + [producer]:
            c.close()


def test_per_key_argument_is_refused_on_other_exchange_types(daemon091, uniq):
    connection = pika_connect(daemon091)
    try:
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.exchange_declare(f"ex.fan{uniq}", "fanout",
                                     arguments={"x-kbridge-topic-per-key": True})
        assert refused.value.reply_code == 406
        assert "x-kbridge-topic-per-key" in refused.value.reply_text
        assert "only a direct exchange" in refused.value.reply_text
    finally:
        connection.close()
