# SPDX-License-Identifier: Apache-2.0
"""Order per producer for messages without a key (issue 20, architecture §3): a
message with no key goes to a partition chosen per producer (a STOMP
connection, an AMQP sender link), so one producer's messages reach a queue
consumer in the order they were sent, while several producers still spread
over the partitions; the record key stays null for native Kafka readers.

Clients: stomp.py, Qpid Proton, rhea (node), confluent-kafka to read Kafka back."""

import json
import os
import subprocess
import uuid

import pytest
from confluent_kafka import Consumer
from proton import Message

from amqp_client import body_of, connect, receive_all
from conftest import EXTERNAL_BOOTSTRAP, wait_for
from stomp_util import Client
from test_stomp_queues import consumer_client, queue_config, read_topic, send_all

HERE = os.path.dirname(os.path.abspath(__file__))
COUNT = 200


@pytest.fixture
def queue():
    return f"order-{uuid.uuid4().hex[:8]}"


def partition_count(bootstrap, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kbridge-test-meta"})
    try:
        return len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    finally:
        consumer.close()


def test_one_stomp_producer_without_keys_is_consumed_in_order(kbridged_factory, bootstrap, queue):
    daemon = kbridged_factory(queue_config(bootstrap))
    producer = Client(daemon)
    sent = [f"s{i}" for i in range(COUNT)]
    # in batches, each confirmed before the next: a burst inside one of
    # librdkafka's own sticky windows (10 ms) would land on one partition anyway
    for batch in range(0, COUNT, 10):
        send_all(producer, f"/queue/{queue}", [(body, {}) for body in sent[batch:batch + 10]])
    producer.close()
    consumer, acker = consumer_client(daemon, f"/queue/{queue}", prefetch=50)
    wait_for(lambda: acker.count() >= COUNT, 60, f"{COUNT} messages")
    assert acker.bodies() == sent
    consumer.close()
    records = read_topic(bootstrap, queue)
    assert [r.key() for r in records] == [None] * COUNT  # no key invented for native readers
    assert len({r.partition() for r in records}) == 1


def test_each_amqp_sender_link_keeps_its_order(kbridged_factory, bootstrap, queue):
    """Two sender links on one connection, interleaved: each link's messages
    arrive in the order that link sent them."""
    daemon = kbridged_factory(queue_config(bootstrap))
    conn = connect(daemon)
    senders = [conn.create_sender(queue, name=f"sender-{n}") for n in range(2)]
    for i in range(COUNT // 2):
        for n, sender in enumerate(senders):
            sender.send(Message(body=f"l{n}-{i}".encode()))
    receiver = conn.create_receiver(queue, name="receiver", credit=50)
    got = [body_of(m).decode() for m in receive_all(receiver, COUNT)]
    conn.close()
    for n in range(2):
        mine = [b for b in got if b.startswith(f"l{n}-")]
        assert mine == [f"l{n}-{i}" for i in range(COUNT // 2)], f"link {n} out of order"


def test_rhea_sender_without_keys_is_received_in_order(kbridged_factory, bootstrap, queue):
    daemon = kbridged_factory(queue_config(bootstrap))
    host, port = daemon.host_port("amqp")
    result = subprocess.run(["node", "rhea_roundtrip.js", host, str(port), queue, str(COUNT)],
                            capture_output=True, text=True, timeout=120,
                            cwd=os.path.join(HERE, "clients"))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["bodies"] == [f"rhea message {i}" for i in range(COUNT)]


def test_producers_without_keys_still_spread_over_partitions(kbridged_factory, bootstrap, queue):
    daemon = kbridged_factory(queue_config(bootstrap))
    producers = [Client(daemon) for _ in range(12)]
    for n, producer in enumerate(producers):
        send_all(producer, f"/queue/{queue}", [(f"p{n}-{i}", {}) for i in range(10)])
        producer.close()
    partitions = partition_count(bootstrap, queue)
    records = read_topic(bootstrap, queue)
    by_producer = {}
    for r in records:
        by_producer.setdefault(r.value().decode().split("-")[0], set()).add(r.partition())
    assert all(len(p) == 1 for p in by_producer.values()), by_producer
    used = set().union(*by_producer.values())
    print(f"\n12 producers used {len(used)} of {partitions} partitions")
    if partitions >= 4:
        # 12 producers on one of 4 partitions each: all on one has odds 4 * 4^-12
        assert len(used) > 1, f"every producer went to partition {used}"
