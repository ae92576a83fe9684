# SPDX-License-Identifier: Apache-2.0
"""Stream queues (issue 16 item 4; architecture §13 "Stream queues",
docs/selection.md "Stream queues"): a queue declared with x-queue-type stream
is its Kafka topic read from an x-stream-offset by every consumer, nothing
consumed away, as a RabbitMQ stream. Declared with pika (AMQP 0-9-1), read
with pika (basic.consume argument x-stream-offset: string, integer offset,
timestamp), stomp.py (SUBSCRIBE header) and python qpid-proton (the
rabbitmq:stream-offset-spec filter).

As in test_replay.py, records are written natively to partition 0 with known
timestamps (50 an hour old, 50 a minute old); each consumer gets exactly the
expected suffix of partition 0, in order, and a marker published through
kbridged after it subscribed, which also proves it reads what comes next."""

import datetime
import threading
import time
import uuid

import pika
import pytest
from confluent_kafka import Producer
from proton import Described, symbol, timestamp
from proton.reactor import Filter

from amqp_client import connect
from conftest import EXTERNAL_BOOTSTRAP, base_config, pika_connect, user_config, wait_for
from stomp_util import Client

NOW_S = int(time.time())
OLD_MS = (NOW_S - 3600) * 1000
RECENT_MS = (NOW_S - 60) * 1000
BODIES = [f"s{i}" for i in range(100)]


@pytest.fixture
def stream(bootstrap):
    """A stream queue's name, its topic holding BODIES on partition 0."""
    name = f"stream-{uuid.uuid4().hex[:8]}" if EXTERNAL_BOOTSTRAP else f"events{uuid.uuid4().hex[:6]}"
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, body in enumerate(BODIES):
        producer.produce(name, body.encode(), partition=0,
                         timestamp=OLD_MS + i if i < 50 else RECENT_MS + i)
    assert producer.flush(30) == 0
    return name


def stream_config(bootstrap):
    """0-9-1 beside AMQP 1.0 on the AMQP port, and a user for pika."""
    config = base_config(bootstrap, auth={"anonymous": True, "users": [
        user_config("guest", "guest", consume=[".*"], publish=[".*"])]})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    return config


def declare_stream(daemon, name):
    connection = pika_connect(daemon, "guest", "guest")
    channel = connection.channel()
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})
    return connection, channel


def pika_read(daemon, name, offset, expected, prefetch=30, markers=1):
    """basic.consume with x-stream-offset `offset` (None: none), manual acks
    with prefetch; returns the bodies up to the marker published after the
    consume-ok (the `markers`-th one: earlier reads left theirs) once
    `expected` many others came."""
    connection, channel = declare_stream(daemon, name)
    try:
        channel.basic_qos(prefetch_count=prefetch)
        got = []
        done = threading.Event()

        def on_message(ch, method, properties, body):
            got.append(body.decode())
            ch.basic_ack(method.delivery_tag)
            # partitions arrive in no set order: the marker may come first
            if got.count("marker") == markers and len(got) - markers >= len(expected):
                done.set()

        arguments = {} if offset is None else {"x-stream-offset": offset}
        channel.basic_consume(name, on_message, arguments=arguments)
        publisher = connection.channel()
        publisher.confirm_delivery()
        publisher.basic_publish("", name, b"marker")
        deadline = time.monotonic() + 60
        while not done.is_set():
            assert time.monotonic() < deadline, f"no marker; got {len(got)} of {len(expected)}"
            connection.process_data_events(time_limit=0.2)
        assert got.count("marker") == markers
        return [b for b in got if b != "marker"] if markers == 1 else got
    finally:
        connection.close()


@pytest.mark.parametrize("offset, first", [
    ("first", 0),
    (60, 60),
    ("offset=95", 95),
    (datetime.datetime.fromtimestamp(RECENT_MS / 1000, datetime.timezone.utc), 50),
    ("last", 99),
    (None, 100),    # RabbitMQ's default: next
    ("next", 100),
], ids=["first", "int-60", "offset=95", "timestamp", "last", "none", "next"])
def test_pika_consumers_read_a_stream_queue_from_their_offset(kbridged_factory, bootstrap, stream,
                                                              offset, first):
    daemon = kbridged_factory(stream_config(bootstrap))
    assert pika_read(daemon, stream, offset, BODIES[first:]) == BODIES[first:]


def test_a_stream_keeps_its_messages_for_every_consumer(kbridged_factory, bootstrap, stream):
    """Two consumers read everything, one after the other: reading (and
    acking) consumes nothing away; other protocols read the same stream."""
    daemon = kbridged_factory(stream_config(bootstrap))
    assert pika_read(daemon, stream, "first", BODIES) == BODIES
    again = pika_read(daemon, stream, "first", BODIES, markers=2)
    # everything again, and the first read's marker is in the stream too
    assert [b for b in again if b != "marker"] == BODIES
    # STOMP: /amq/queue/NAME with the x-stream-offset header, client acks
    client = Client(daemon)
    try:
        client.subscribe(f"/amq/queue/{stream}", "s", ack="client-individual",
                         headers={"x-stream-offset": "first"}, receipt="sub", timeout=60)
        frames = client.wait_messages(102)
        for frame in frames:
            client.ack(frame)
        # an offset applies per partition: the markers were published to any
        assert [f.body for f in frames if f.body != "marker"] == BODIES
        assert [f.body for f in frames].count("marker") == 2
        assert not client.recorder.errors
    finally:
        client.close()
    # AMQP 1.0: the rabbitmq:stream-offset-spec filter on the queue's address
    conn = connect(daemon)
    try:
        receiver = conn.create_receiver(
            stream, credit=50, name="streamer",
            options=Filter({symbol("rabbitmq:stream-offset-spec"):
                            Described(symbol("rabbitmq:stream-offset-spec"),
                                      timestamp(RECENT_MS))}))
        got = []
        for _ in range(52):
            message = receiver.receive(timeout=30)
            receiver.accept()
            got.append(message.body.decode() if isinstance(message.body, bytes) else message.body)
        assert [b for b in got if b != "marker"] == BODIES[50:]
        assert got.count("marker") == 2
    finally:
        conn.close()


def test_stream_queue_declarations_refuse_what_a_stream_has_not(kbridged_factory, bootstrap):
    daemon = kbridged_factory(stream_config(bootstrap))
    connection = pika_connect(daemon, "guest", "guest")
    channel = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.queue_declare("nottl", durable=True,
                              arguments={"x-queue-type": "stream", "x-message-ttl": 1000})
    assert closed.value.reply_code == 406
    assert "invalid arg 'x-message-ttl' for a stream queue" in closed.value.reply_text
    channel = connection.channel()
    channel.queue_declare("typed", durable=True, arguments={"x-queue-type": "stream"})
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.basic_consume("typed", lambda *a: None, arguments={"x-stream-offset": True})
        wait_for(lambda: connection.process_data_events(time_limit=0.1) or False, 10,
                 "the channel to close")
    assert closed.value.reply_code == 406
    assert closed.value.reply_text == ("PRECONDITION_FAILED - x-stream-offset must be a string, "
                                       "an integer offset or a timestamp")
    # a classic queue does not replay
    channel = connection.channel()
    channel.queue_declare("classic-q")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.basic_consume("classic-q", lambda *a: None, arguments={"x-stream-offset": "first"})
        wait_for(lambda: connection.process_data_events(time_limit=0.1) or False, 10,
                 "the channel to close")
    assert "x-stream-offset (replay) works on stream queues" in closed.value.reply_text
    connection.close()
