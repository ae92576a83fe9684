# SPDX-License-Identifier: Apache-2.0
"""STOMP topics end to end (architecture §6, issue 3 "Must hold"): every subscriber
of /topic/NAME gets everything published after its SUBSCRIBE receipt and
nothing from before; `*` and `#` wildcards; durable subscriptions in the
ActiveMQ, Artemis and RabbitMQ spellings resume after a reconnect with
exactly what was published while they were away; a subscriber that stops
reading its socket loses its oldest messages (counted) without holding up
anyone else.

Waits are deadline-based (wait_for, receipts); nothing sleeps and hopes."""

import re
import time
import uuid

import pytest

from clients.rawstomp import RawStomp
from conftest import EXTERNAL_BOOTSTRAP, base_config, metrics, wait_for
from stomp_util import Client

# Durable subscriptions are consumer groups: the mock's rebalance waits
# session.timeout.ms - 1s, so keep it short.
KAFKA = {"consumer": {"session.timeout.ms": 6000}}


@pytest.fixture
def uniq():
    """'' on a fresh dev broker; a unique suffix on a shared cluster."""
    return f"-{uuid.uuid4().hex[:10]}" if EXTERNAL_BOOTSTRAP else ""


def topic_config(bootstrap, **sections):
    return base_config(bootstrap, kafka=dict(KAFKA), **sections)


def send_all(client, destination, bodies, headers=None, timeout=60):
    """SEND each body with a receipt and wait for every RECEIPT (stored in Kafka)."""
    prefix = f"r{uuid.uuid4().hex[:8]}-"
    for i, body in enumerate(bodies):
        client.send(destination, body, headers=headers(i) if callable(headers) else headers,
                    receipt=f"{prefix}{i}")
    wanted = {f"{prefix}{i}" for i in range(len(bodies))}
    wait_for(lambda: wanted <= set(client.recorder.receipts), timeout,
             f"{len(bodies)} receipts for {destination}")


def bodies_of(frames):
    return [f.body for f in frames]


# ---- 1. fan-out ----------------------------------------------------------------

def test_each_subscriber_gets_everything_published_after_it_subscribed(
        kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(topic_config(bootstrap))
    dest = f"/topic/prices{uniq}"
    publisher = Client(daemon)
    subscribers = []
    try:
        # Published before anyone subscribed: nobody gets these.
        send_all(publisher, dest, [f"early-{i}" for i in range(5)], headers={"kafka-key": "k"})

        batches = []
        for n in range(3):
            sub = Client(daemon)
            subscribers.append(sub)
            sub.subscribe(dest, f"s{n}", receipt=f"sub-{n}")
            batch = [f"b{n}-{i}" for i in range(20)]
            batches.append(batch)
            send_all(publisher, dest, batch,
                     headers=lambda i: {"kafka-key": "k", "colour": f"c{i % 3}"})
            # The batch reached every subscriber so far (the shared reader has
            # fetched it) before the next one subscribes.
            for m, earlier in enumerate(subscribers):
                expected = sum(batches[m:], [])
                earlier.wait_messages(len(expected))

        # One more message on another key, as an end marker.
        send_all(publisher, dest, ["end"], headers={"kafka-key": "other"})
        for n, sub in enumerate(subscribers):
            expected = sum(batches[n:], []) + ["end"]
            got = sub.wait_messages(len(expected))
            assert bodies_of(got) == expected, f"subscriber {n}"
            first = got[0].headers
            assert first["destination"] == dest
            assert first["subscription"] == f"s{n}"
            assert first["colour"] == "c0" and first["kafka-key"] == "k"
            assert re.fullmatch(r"[0-9a-f-]{36}", first["message-id"])
            assert len({f.headers["message-id"] for f in got}) == len(got)
            assert "ack" not in first and first["redelivered"] == "false"
            assert not sub.recorder.errors

        # Per-destination metrics: 3 consumers, 5 + 60 + 1 published.
        values = metrics(daemon)
        name = f"prices{uniq}"
        assert values[f'kbridge_destination_consumers{{kind="topic",destination="{name}"}}'] == 3
        assert values[f'kbridge_destination_published_total{{kind="topic",destination="{name}"}}'] == 66
        assert values[f'kbridge_destination_delivered_total{{kind="topic",destination="{name}"}}'] \
            == 60 + 40 + 20 + 3
    finally:
        for c in [publisher, *subscribers]:
            c.close()


def test_unsubscribe_stops_deliveries_and_other_subscribers_continue(
        kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(topic_config(bootstrap))
    dest = f"/topic/prices{uniq}"
    publisher, a, b = Client(daemon), Client(daemon), Client(daemon)
    try:
        send_all(publisher, dest, ["create"])
        a.subscribe(dest, "a", receipt="ra")
        b.subscribe(dest, "b", receipt="rb")
        send_all(publisher, dest, ["one"], headers={"kafka-key": "k"})
        a.wait_messages(1)
        b.wait_messages(1)
        a.conn.unsubscribe("a", headers={"receipt": "ua"})
        a.wait_receipt("ua")
        send_all(publisher, dest, ["two", "three"], headers={"kafka-key": "k"})
        assert bodies_of(b.wait_messages(3)) == ["one", "two", "three"]
        # a got nothing after its UNSUBSCRIBE: b has "three", and a topic
        # record goes to every subscriber in the same loop turn.
        assert bodies_of(a.recorder.messages) == ["one"]
    finally:
        for c in (publisher, a, b):
            c.close()


# ---- 2. wildcards ------------------------------------------------------------------

def test_wildcards_star_and_hash(kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(topic_config(bootstrap))
    base = f"prices{uniq}"
    publisher, star, hash_ = Client(daemon), Client(daemon), Client(daemon)
    try:
        # The topics exist before the subscriptions (topics created later are
        # picked up by a periodic rescan: see the next test).
        for name in (f"{base}.eu", f"{base}.eu.x", f"other{uniq}", f"{base}.us", base):
            send_all(publisher, f"/topic/{name}", ["before"])
        star.subscribe(f"/topic/{base}.*", "star", receipt="r-star")
        hash_.subscribe(f"/topic/{base}.#", "hash", receipt="r-hash")

        send_all(publisher, f"/topic/{base}.eu", ["eu-1", "eu-2"], headers={"kafka-key": "k"})
        send_all(publisher, f"/topic/{base}.eu.x", ["eu.x-1"])
        send_all(publisher, f"/topic/other{uniq}", ["other-1"])
        send_all(publisher, f"/topic/{base}.us", ["us-1"])
        send_all(publisher, f"/topic/{base}", ["base-1"])  # '#' matches zero words too

        star.wait_messages(3)
        hash_.wait_messages(5)
        # Let anything wrongly routed arrive before judging: a marker on a
        # topic both match, published last.
        send_all(publisher, f"/topic/{base}.eu", ["eu-end"], headers={"kafka-key": "k"})
        wait_for(lambda: "eu-end" in bodies_of(star.recorder.messages), 30, "star marker")
        wait_for(lambda: "eu-end" in bodies_of(hash_.recorder.messages), 30, "hash marker")

        def by_destination(frames):
            out = {}
            for f in frames:
                out.setdefault(f.headers["destination"], []).append(f.body)
            return out

        assert by_destination(star.recorder.messages) == {
            f"/topic/{base}.eu": ["eu-1", "eu-2", "eu-end"],
            f"/topic/{base}.us": ["us-1"],
        }
        assert by_destination(hash_.recorder.messages) == {
            f"/topic/{base}.eu": ["eu-1", "eu-2", "eu-end"],
            f"/topic/{base}.eu.x": ["eu.x-1"],
            f"/topic/{base}.us": ["us-1"],
            f"/topic/{base}": ["base-1"],
        }
        for f in star.recorder.messages:
            assert f.headers["subscription"] == "star"
        assert not star.recorder.errors and not hash_.recorder.errors
    finally:
        for c in (publisher, star, hash_):
            c.close()


def test_wildcard_picks_up_a_topic_created_after_subscribing(kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(topic_config(bootstrap))
    base = f"prices{uniq}"
    publisher, sub = Client(daemon), Client(daemon)
    try:
        send_all(publisher, f"/topic/{base}.eu", ["before"])
        sub.subscribe(f"/topic/{base}.#", "h", receipt="r")
        # prices.asia does not exist yet: its first messages are read from
        # the beginning once the rescan (every 5 s) finds it.
        send_all(publisher, f"/topic/{base}.asia", ["asia-1", "asia-2"], headers={"kafka-key": "k"})
        got = sub.wait_messages(2, timeout=20)
        assert [(f.headers["destination"], f.body) for f in got] == [
            (f"/topic/{base}.asia", "asia-1"), (f"/topic/{base}.asia", "asia-2")]
    finally:
        publisher.close()
        sub.close()


# ---- 3. durable subscriptions -----------------------------------------------------------

SPELLINGS = {
    "activemq": lambda name: {"activemq.subscriptionName": name},
    "artemis": lambda name: {"durable-subscription-name": name},
    "rabbitmq": lambda name: {"durable": "true", "auto-delete": "false"},
}


def durable_subscribe(daemon, dest, client_id, name, spelling, receipt):
    client = Client(daemon, client_id=client_id)
    client.subscribe(dest, name, ack="client-individual", headers=SPELLINGS[spelling](name),
                     receipt=receipt)
    return client


# The tests that reconnect after leave_group: the node leaves the durable
# group 1 s after its subscriber went (queues.linger, 30 s by default).
QUICK_LEAVE = {"linger": "1s"}


def leave_group(daemon, client, client_id, name):
    """DISCONNECT, then wait until the node has left the durable group (so the
    reconnect resumes from Kafka's committed offsets, not from node memory)."""
    client.conn.disconnect(receipt="bye")
    # stomp.py returns once it saw the RECEIPT, maybe before its listeners did.
    wait_for(lambda: "bye" in client.recorder.receipts, 10, "the DISCONNECT receipt")
    daemon.wait_log(re.escape(f"kbridge.sub.{client_id}.{name}: leaving the group"), timeout=30)


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_durable_subscription_gets_what_was_published_while_away(
        kbridged_factory, bootstrap, uniq, spelling):
    daemon = kbridged_factory(topic_config(bootstrap, queues=QUICK_LEAVE))
    dest = f"/topic/prices{uniq}"
    client_id = f"app-{spelling}{uniq}"
    name = f"sub-{spelling}"  # RabbitMQ names it by the subscription id
    publisher = Client(daemon)
    try:
        send_all(publisher, dest, ["before-1", "before-2"], headers={"kafka-key": "k"})
        # A new durable subscription starts at the end: not "before-*", but
        # everything published after its RECEIPT.
        first = durable_subscribe(daemon, dest, client_id, name, spelling, "d1")
        seen = [f"seen-{i}" for i in range(5)]
        send_all(publisher, dest, seen, headers={"kafka-key": "k"})
        got = first.wait_messages(len(seen))
        assert bodies_of(got) == seen
        for f in got:
            assert f.headers["destination"] == dest
            assert f.headers["subscription"] == name
            assert f.headers["x-delivery-count"] == "1"
            assert f.headers["kafka-key"] == "k"
            first.ack(f)
        leave_group(daemon, first, client_id, name)

        # Published while it was away: exactly these must come back.
        away = [f"away-{i}" for i in range(10)]
        send_all(publisher, dest, away, headers={"kafka-key": "k"})

        again = durable_subscribe(daemon, dest, client_id, name, spelling, "d2")
        got = again.wait_messages(len(away))
        # Nothing acknowledged before comes back; then the live feed goes on.
        send_all(publisher, dest, ["live"], headers={"kafka-key": "k"})
        got = again.wait_messages(len(away) + 1)
        assert bodies_of(got) == away + ["live"]
        assert all(f.headers["redelivered"] == "false" for f in got)
        for f in got:
            again.ack(f)
        assert not again.recorder.errors
        again.close()
    finally:
        publisher.close()


def test_durable_subscription_redelivers_what_was_not_acked(kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(topic_config(bootstrap, queues=QUICK_LEAVE))
    dest = f"/topic/prices{uniq}"
    client_id, name = f"app{uniq}", "unacked"
    publisher = Client(daemon)
    try:
        send_all(publisher, dest, ["create"], headers={"kafka-key": "k"})
        first = durable_subscribe(daemon, dest, client_id, name, "activemq", "d1")
        send_all(publisher, dest, ["a", "b", "c"], headers={"kafka-key": "k"})
        got = first.wait_messages(3)
        first.ack(got[0])  # b and c stay unacknowledged
        leave_group(daemon, first, client_id, name)

        again = durable_subscribe(daemon, dest, client_id, name, "activemq", "d2")
        got = again.wait_messages(2)
        assert bodies_of(got) == ["b", "c"]
    finally:
        publisher.close()


def test_durable_subscription_resumes_on_partitions_it_never_read(
        kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(topic_config(bootstrap, queues=QUICK_LEAVE))
    dest = f"/topic/prices{uniq}"
    client_id, name = f"app{uniq}", "spread"
    publisher = Client(daemon)
    try:
        send_all(publisher, dest, ["create"], headers={"kafka-key": "k"})
        # Subscribe and leave without ever receiving anything: no partition
        # has an acknowledged record, yet the subscription keeps its place.
        first = durable_subscribe(daemon, dest, client_id, name, "activemq", "d1")
        leave_group(daemon, first, client_id, name)
        # Keys spread over every partition, as an application's would be.
        away = [f"away-{i}" for i in range(16)]
        send_all(publisher, dest, away, headers=lambda i: {"kafka-key": f"key-{i}"})
        again = durable_subscribe(daemon, dest, client_id, name, "activemq", "d2")
        got = again.wait_messages(len(away))
        assert sorted(bodies_of(got)) == sorted(away)
        # In order per key: key-i holds one message each, so check the partition
        # order through a second round on two keys.
        send_all(publisher, dest, [f"x{i}" for i in range(6)],
                 headers=lambda i: {"kafka-key": f"pair-{i % 2}"})
        got = again.wait_messages(len(away) + 6)[len(away):]
        for key in ("pair-0", "pair-1"):
            assert [f.body for f in got if f.headers["kafka-key"] == key] == \
                [f"x{i}" for i in range(6) if f"pair-{i % 2}" == key]
        assert not again.recorder.errors
    finally:
        publisher.close()


def test_durable_subscription_without_client_id_is_refused(kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(topic_config(bootstrap))
    # (RabbitMQ's durable:true works without one: test_stomp_rabbitmq_conventions.py)
    for headers in ({"activemq.subscriptionName": "d"}, {"durable-subscription-name": "d"}):
        client = Client(daemon)
        try:
            client.conn.subscribe(f"/topic/prices{uniq}", id="d", ack="client", headers=headers)
            error = client.wait_error()
            assert error.headers["message"] == "durable subscription needs client-id"
            assert "client-id header on CONNECT" in error.body
            wait_for(lambda: client.recorder.disconnected.is_set(), 10, "the server closing")
        finally:
            client.close()


def test_a_durable_subscription_is_active_only_once(kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(topic_config(bootstrap))
    dest = f"/topic/prices{uniq}"
    a = Client(daemon, client_id=f"one{uniq}")
    b = Client(daemon, client_id=f"one{uniq}")
    try:
        a.subscribe(dest, "x", headers={"activemq.subscriptionName": "d"}, receipt="ra")
        b.conn.subscribe(dest, id="x", headers={"activemq.subscriptionName": "d"})
        error = b.wait_error()
        assert "already active" in error.headers["message"]
        assert a.conn.is_connected() and not a.recorder.errors
    finally:
        a.close()
        b.close()


# ---- 4. slow subscribers ------------------------------------------------------------------

def test_a_subscriber_that_stops_reading_loses_its_oldest_messages_only(
        kbridged_factory, bootstrap, uniq):
    backlog = 200
    total = 4000
    # A connection's output counts as backed up above max(1 MiB, 4 x
    # max_frame_size); then its subscriptions are blocked and the topic
    # backlog (topics.max_backlog records) takes over.
    daemon = kbridged_factory(topic_config(bootstrap, topics={"max_backlog": backlog},
                                           limits={"max_frame_size": "64KiB"}))
    dest = f"/topic/prices{uniq}"
    # One reading subscriber: the node reads at the pace of the fastest one, so
    # a second reader that fell a backlog behind the first would lose messages
    # too (by design, and likely with a backlog of 200 on a busy machine).
    publisher, fast = Client(daemon), Client(daemon)
    slow = RawStomp(daemon, rcvbuf=4096)
    try:
        send_all(publisher, dest, ["create"])
        fast.subscribe(dest, "f1", receipt="r1")
        slow.connect()
        slow.send_frame("SUBSCRIBE", {"destination": dest, "id": "slow", "receipt": "rs"})
        receipt = slow.next_frame()
        assert receipt.command == "RECEIPT" and receipt.headers["receipt-id"] == "rs"
        # From here on `slow` reads nothing until the end of the test.

        padding = "x" * 1000
        bodies = [f"m{i:05d} {padding}" for i in range(total)]
        send_all(publisher, dest, bodies, headers={"kafka-key": "k"}, timeout=120)
        assert bodies_of(fast.wait_messages(total, timeout=60)) == bodies

        dropped = metrics(daemon).get("kbridge_topic_dropped_total", 0)
        assert dropped > 0, "the slow subscriber should have overflowed"

        # The node is still responsive: ready, and a new client does a round trip.
        assert daemon.http("/readyz")[0] == 200
        probe = Client(daemon)
        probe.subscribe(f"/topic/ping{uniq}", "p", receipt="rp")
        send_all(probe, f"/topic/ping{uniq}", ["pong"])
        assert bodies_of(probe.wait_messages(1)) == ["pong"]
        probe.close()

        # Now the slow one reads: it is still connected and gets what was not
        # dropped, in order, ending with the newest message.
        received = []
        deadline = time.monotonic() + 60
        while not received or received[-1] != bodies[-1]:
            f = slow.next_frame(timeout=max(0.1, deadline - time.monotonic()))
            assert f.command == "MESSAGE", f
            received.append(f.body.decode())
        assert received == sorted(received) and len(set(received)) == len(received)
        assert set(received) <= set(bodies)
        assert len(received) + dropped == total
        assert len(received) >= backlog
        assert metrics(daemon)["kbridge_topic_dropped_total"] == dropped
    finally:
        slow.close()
        for c in (publisher, fast):
            c.close()


def test_slow_subscriber_disconnect_policy_ends_only_the_slow_one(
        kbridged_factory, bootstrap, uniq):
    backlog = 200
    total = 4000
    daemon = kbridged_factory(topic_config(
        bootstrap, topics={"max_backlog": backlog, "slow_subscriber": "disconnect"},
        limits={"max_frame_size": "64KiB"}))
    dest = f"/topic/prices{uniq}"
    publisher, fast = Client(daemon), Client(daemon)
    slow = RawStomp(daemon, rcvbuf=4096)
    try:
        send_all(publisher, dest, ["create"])
        fast.subscribe(dest, "f1", receipt="r1")
        slow.connect()
        slow.send_frame("SUBSCRIBE", {"destination": dest, "id": "slow", "receipt": "rs"})
        assert slow.next_frame().command == "RECEIPT"
        padding = "x" * 1000
        bodies = [f"m{i:05d} {padding}" for i in range(total)]
        send_all(publisher, dest, bodies, headers={"kafka-key": "k"}, timeout=120)
        assert bodies_of(fast.wait_messages(total, timeout=60)) == bodies
        # The slow one finds, after what it was sent, an ERROR naming the policy.
        deadline = time.monotonic() + 60
        while True:
            f = slow.next_frame(timeout=max(0.1, deadline - time.monotonic()))
            if f.command != "MESSAGE":
                break
        assert f.command == "ERROR", f
        assert "slow subscriber" in f.headers["message"] + f.body.decode()
        assert daemon.http("/readyz")[0] == 200
    finally:
        slow.close()
        for c in (publisher, fast):
            c.close()


def test_a_lone_subscriber_that_stops_reading_pauses_the_reader_and_loses_nothing(
        kbridged_factory, bootstrap, uniq):
    backlog = 200
    total = 3000
    daemon = kbridged_factory(topic_config(bootstrap, topics={"max_backlog": backlog},
                                           limits={"max_frame_size": "64KiB"}))
    dest = f"/topic/prices{uniq}"
    name = f"prices{uniq}"
    publisher = Client(daemon)
    slow = RawStomp(daemon, rcvbuf=4096)
    try:
        send_all(publisher, dest, ["create"])
        slow.connect()
        slow.send_frame("SUBSCRIBE", {"destination": dest, "id": "slow", "receipt": "rs"})
        assert slow.next_frame().headers["receipt-id"] == "rs"

        padding = "x" * 1000
        bodies = [f"m{i:05d} {padding}" for i in range(total)]
        send_all(publisher, dest, bodies, headers={"kafka-key": "k"}, timeout=120)
        # Every subscriber (the only one) is behind: the node stops fetching
        # instead of dropping; the records wait in Kafka.
        paused = f'kbridge_destination_paused_partitions{{kind="topic",destination="{name}"}}'
        wait_for(lambda: metrics(daemon).get(paused, 0) > 0, 30, "the topic reader pausing")

        received = []
        while len(received) < total:
            f = slow.next_frame(timeout=30)
            assert f.command == "MESSAGE", f
            received.append(f.body.decode())
        assert received == bodies
        values = metrics(daemon)
        assert values.get("kbridge_topic_dropped_total", 0) == 0
        assert values[paused] == 0
    finally:
        slow.close()
        publisher.close()
