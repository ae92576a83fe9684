# SPDX-License-Identifier: Apache-2.0
"""Replay (issue 16 item 4; architecture §13 "Replay", docs/stomp.md
`x-stream-offset`): a non-durable topic subscription that starts where
RabbitMQ's x-stream-offset says, with stomp.py (SUBSCRIBE header) and python
qpid-proton (the `rabbitmq:stream-offset-spec` source filter).

Records are written natively (confluent-kafka) to partition 0 with known
timestamps: 50 an hour old, then 50 a minute old. Each subscription gets
exactly the expected suffix of partition 0, in order, and a marker sent
after it was ready (to another partition, so in no set order with them): a
start too early would show as extra records before the suffix, counted
against a message that came after, not a sleep. An offset applies per
partition (the others hold only the marker here)."""

import time
import uuid

import pytest
from confluent_kafka import Producer
from proton import Described, Message, symbol, timestamp, ulong
from proton.reactor import Filter

from amqp_client import connect
from conftest import EXTERNAL_BOOTSTRAP, base_config
from stomp_util import Client

NOW_S = int(time.time())
OLD_MS = (NOW_S - 3600) * 1000   # the first 50
RECENT_MS = (NOW_S - 60) * 1000  # the last 50
BODIES = [f"r{i}" for i in range(100)]


@pytest.fixture
def topic(bootstrap):
    name = f"replay-{uuid.uuid4().hex[:8]}" if EXTERNAL_BOOTSTRAP else f"replay{uuid.uuid4().hex[:6]}"
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, body in enumerate(BODIES):
        producer.produce(name, body.encode(), partition=0,
                         timestamp=OLD_MS + i if i < 50 else RECENT_MS + i)
    assert producer.flush(30) == 0
    return name


def stomp_replay(daemon, topic, spec, expected):
    """Subscribe from `spec`; the bodies it gets, up to and including a
    marker sent after the subscription is ready."""
    client = Client(daemon)
    sender = Client(daemon)
    try:
        client.subscribe(f"/topic/{topic}", "r", headers={"x-stream-offset": spec},
                         receipt="sub", timeout=60)
        sender.send(f"/topic/{topic}", "marker", receipt="m")
        sender.wait_receipt("m")
        got = [f.body for f in client.wait_messages(len(expected) + 1, timeout=60)]
        assert got.count("marker") == 1, got[-5:]
        return [body for body in got if body != "marker"]
    finally:
        client.close()
        sender.close()


@pytest.mark.parametrize("spec, first", [
    ("first", 0),
    ("offset=60", 60),
    ("60", 60),
    (f"timestamp={RECENT_MS // 1000}", 50),
    ("30m", 50),
    ("last", 99),
    ("next", 100),
], ids=["first", "offset=60", "60", "timestamp", "30m", "last", "next"])  # ids: stable across
# xdist workers, which import this module at different times (NOW_S)
def test_stomp_subscription_replays_from_its_x_stream_offset(kbridged_factory, bootstrap, topic,
                                                             spec, first):
    daemon = kbridged_factory(base_config(bootstrap))
    expected = BODIES[first:]
    assert stomp_replay(daemon, topic, spec, expected) == expected


def test_replay_subscribers_each_start_where_they_asked(kbridged_factory, bootstrap, topic):
    """Two replaying subscribers and a plain one on the same topic: each its own start."""
    daemon = kbridged_factory(base_config(bootstrap))
    clients = {spec: Client(daemon) for spec in ("first", "offset=90", None)}
    sender = Client(daemon)
    try:
        for spec, client in clients.items():
            client.subscribe(f"/topic/{topic}", "s",
                             headers={"x-stream-offset": spec} if spec else {},
                             receipt="sub", timeout=60)
        sender.send(f"/topic/{topic}", "marker", receipt="m")
        sender.wait_receipt("m")
        for spec, expected in (("first", BODIES), ("offset=90", BODIES[90:])):
            got = [f.body for f in clients[spec].wait_messages(len(expected) + 1)]
            assert [b for b in got if b != "marker"] == expected and "marker" in got, spec
        assert [f.body for f in clients[None].wait_messages(1)] == ["marker"]
    finally:
        for client in list(clients.values()) + [sender]:
            client.close()


@pytest.mark.parametrize("destination, spec, headers, why", [
    ("/queue/replayq", "first", {},
     "x-stream-offset (replay) works on stream queues and non-durable subscriptions to one "
     "topic only so far; queue 'replayq' is not a topic or a stream queue"),
    ("/topic/replay.*", "first", {}, "is a wildcard"),
    ("/topic/replayd", "first", {"durable": "true"}, "is a durable subscription"),
    ("/topic/replayb", "offset=x", {}, "bad x-stream-offset: 'offset=x'"),
    ("/topic/replayb", "yesterday", {}, "is not a stream offset"),
])
def test_x_stream_offsets_that_cannot_be_served_are_refused_saying_why(
        kbridged_factory, bootstrap, destination, spec, headers, why):
    daemon = kbridged_factory(base_config(bootstrap))
    client = Client(daemon)
    try:
        client.conn.subscribe(destination, id="s",
                              headers={"x-stream-offset": spec, "receipt": "r", **headers})
        error = client.wait_error()
        assert why in error.headers["message"] + error.body, error.headers["message"]
        assert "r" not in client.recorder.receipts
    finally:
        client.close()


@pytest.mark.parametrize("value, first", [
    ("first", 0),
    (ulong(60), 60),
    (timestamp(RECENT_MS), 50),
], ids=["first", "ulong-60", "timestamp"])
def test_amqp_receiver_with_a_stream_offset_filter_replays(kbridged_factory, bootstrap, topic,
                                                           value, first):
    daemon = kbridged_factory(base_config(bootstrap))
    conn = connect(daemon)
    try:
        receiver = conn.create_receiver(
            f"topic://{topic}", credit=200, name="replay",
            options=Filter({symbol("rabbitmq:stream-offset-spec"):
                            Described(symbol("rabbitmq:stream-offset-spec"), value)}))
        conn.create_sender(f"topic://{topic}").send(Message(body=b"marker"))
        got = []
        for _ in range(100 - first + 1):
            message = receiver.receive(timeout=30)
            receiver.accept()
            got.append(message.body.decode() if isinstance(message.body, bytes)
                       else message.body)
        assert [b for b in got if b != "marker"] == BODIES[first:] and "marker" in got
    finally:
        conn.close()
