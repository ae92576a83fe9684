# SPDX-License-Identifier: Apache-2.0
"""Delayed redelivery (issue 16 item 5, architecture §13 "Delayed redelivery",
docs/redelivery.md): with queues.redelivery_delay a NACKed queue message leaves
its partition at once through a retry topic ({name}.retry.{n}) and comes back
after its delay, with its delivery count going on; the messages behind it are
not held up; after the last allowed delivery it is dead-lettered with the
position it was first published at; a kill -9 while it waits loses nothing.

Clients: stomp.py, Qpid Proton (AMQP 1.0 modified{delivery-failed} and
released), confluent-kafka to read the retry and dead-letter topics. Times are
lower bounds (a redelivery never comes before its delay) plus a generous
deadline for it to come at all; speed belongs in the benchmark."""

import time
import uuid

import pytest
from confluent_kafka import Producer
from proton import Delivery, Message

from amqp_client import body_of, connect, settle
from conftest import EXTERNAL_BOOTSTRAP, base_config, metrics, wait_for
from stomp_util import Client
from test_stomp_queues import committed_offsets, header_dict, queue_metric, read_topic

SESSION_TIMEOUT_MS = 6000


@pytest.fixture
def qname():
    return f"retried-{uuid.uuid4().hex[:12]}" if EXTERNAL_BOOTSTRAP else "retried"


def delay_config(bootstrap, initial="1s", multiplier="2", maximum="10s", max_deliveries=4,
                 **queues):
    config = base_config(bootstrap, kafka={"consumer": {"session.timeout.ms": SESSION_TIMEOUT_MS}})
    config["queues"] = {"max_deliveries": max_deliveries,
                        "redelivery_delay": {"initial": initial, "multiplier": multiplier,
                                             "max": maximum},
                        **queues}
    return config


def counter(daemon, name):
    return metrics(daemon).get(name, 0.0)


def publish(bootstrap, topic, bodies, partition=0, key=None):
    """Produce `bodies` to one partition of `topic` (so order in it is known)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for body in bodies:
        producer.produce(topic, value=body.encode(), key=key, partition=partition,
                         headers=[("message-id", body.encode())])
    assert producer.flush(30) == 0


def test_nacked_message_comes_back_after_each_delay_and_others_pass_it(
        kbridged_factory, bootstrap, qname):
    daemon = kbridged_factory(delay_config(bootstrap))
    client = Client(daemon)
    client.subscribe(f"/queue/{qname}", "s1", ack="client-individual", receipt="sub",
                     headers={"activemq.prefetchSize": "100"})
    # the poison first, then 20 on the same partition behind it
    publish(bootstrap, qname, ["poison"] + [f"m{i}" for i in range(20)], key=b"same-key")
    original = [r for r in read_topic(bootstrap, qname) if r.value() == b"poison"][0]

    nacked_at = []  # wall time of each NACK of the poison
    seen = []       # (wall time, body, x-delivery-count, redelivered)

    def poison_deliveries():
        for frame in client.take():
            seen.append((time.time(), frame.body, frame.headers["x-delivery-count"],
                         frame.headers["redelivered"]))
            if frame.body == "poison":
                nacked_at.append(time.time())
                client.nack(frame)
            else:
                client.ack(frame)
        return sum(1 for s in seen if s[1] == "poison")

    # deliveries 1..4 of the poison, each NACKed; the 4th reaches max_deliveries
    wait_for(lambda: poison_deliveries() >= 4, 60, "four deliveries of the poison",
             interval=0.01)
    poison = [s for s in seen if s[1] == "poison"]
    assert [p[2] for p in poison] == ["1", "2", "3", "4"]
    assert [p[3] for p in poison] == ["false", "true", "true", "true"]
    # each redelivery came no earlier than its delay after the NACK before it:
    # 1 s, then 2 s, then 4 s (initial 1 s, multiplier 2)
    for (when, *_), nacked, delay in zip(poison[1:], nacked_at, (1.0, 2.0, 4.0)):
        assert when - nacked >= delay - 0.01, f"redelivered {when - nacked:.3f} s after the NACK"
    # the 20 behind it were delivered while it waited, not after it
    others = [s for s in seen if s[1] != "poison"]
    assert sorted(s[1] for s in others) == sorted(f"m{i}" for i in range(20))
    assert max(s[0] for s in others) < poison[1][0]
    assert all(s[2] == "1" and s[3] == "false" for s in others)

    # the 4th NACK dead-letters it, with its first position
    wait_for(lambda: queue_metric(daemon, "kbridge_destination_dead_lettered_total", qname) == 1,
             30, "dead_lettered_total 1")
    dead = read_topic(bootstrap, f"{qname}.DLQ")[0]
    h = header_dict(dead.headers())
    assert dead.value() == b"poison" and dead.key() == b"same-key"
    assert h["kbridge-dlq-reason"] == "delivered 4 times (max_deliveries)"
    assert h["kbridge-delivery-count"] == "4"
    assert h["kbridge-dlq-original-topic"] == qname
    assert h["kbridge-dlq-original-partition"] == str(original.partition())
    assert h["kbridge-dlq-original-offset"] == str(original.offset())
    assert h["kbridge-retry-original-topic"] == qname
    assert "kbridge-deliver-at" not in h
    # one record in each retry topic, with the count before it and its due time
    for n, delay_ms in ((1, 1000), (2, 2000), (3, 4000)):
        records = read_topic(bootstrap, f"{qname}.retry.{n}")
        assert [r.value() for r in records] == [b"poison"]
        rh = header_dict(records[0].headers())
        assert rh["kbridge-delivery-count"] == str(n)
        assert rh["kbridge-retry-original-offset"] == str(original.offset())
        assert rh["message-id"] == "poison"
        assert int(rh["kbridge-deliver-at"]) - records[0].timestamp()[1] >= delay_ms - 5
    m = metrics(daemon)
    assert m.get("kbridge_redelivery_delayed_total", 0) == 3
    wait_for(lambda: counter(daemon, "kbridge_redelivery_held") == 0, 10, "nothing held")
    # the redelivered copies were delivered with the poison's own headers
    assert len(client.recorder.errors) == 0
    client.close()


def test_a_delayed_redelivery_survives_kill_9(kbridged_factory, bootstrap, qname):
    config = delay_config(bootstrap, initial="3s", max_deliveries=5)
    first = kbridged_factory(config, name="before-kill")
    client = Client(first)
    client.subscribe(f"/queue/{qname}", "s1", ack="client-individual", receipt="sub")
    publish(bootstrap, qname, ["wait-for-me", "after"])
    frames = client.wait_messages(2)
    by_body = {f.body: f for f in frames}
    client.ack(by_body["after"])
    nacked_at = time.time()
    client.nack(by_body["wait-for-me"])
    # confirmed in the retry topic, and the queue's own offset committed past it
    wait_for(lambda: counter(first, "kbridge_redelivery_delayed_total") == 1, 30,
             "the retry produce confirmed")
    wait_for(lambda: committed_offsets(bootstrap, f"kbridge.q.{qname}", qname).get(0) == 2,
             30, "the queue's offset committed past both")
    first.kill()
    client.close()

    second = kbridged_factory(config, name="after-restart")
    client = Client(second)
    client.subscribe(f"/queue/{qname}", "s1", ack="client-individual", receipt="sub")
    frames = client.wait_messages(1, timeout=60)
    assert time.time() - nacked_at >= 3.0 - 0.01
    assert frames[0].body == "wait-for-me"
    assert frames[0].headers["x-delivery-count"] == "2"
    assert frames[0].headers["redelivered"] == "true"
    client.ack(frames[0])
    # once: neither the original nor the retry record comes again
    wait_for(lambda: max(committed_offsets(bootstrap, f"kbridge.q.{qname}",
                                           f"{qname}.retry.1").values()) == 1,
             30, "the retry topic's offset committed")
    assert len(client.recorder.messages) == 1
    client.close()


def test_amqp_modified_delivery_failed_is_delayed_and_released_is_not(
        kbridged_factory, bootstrap, qname):
    daemon = kbridged_factory(delay_config(bootstrap, initial="2s"))
    conn = connect(daemon)
    conn.create_sender(qname).send(Message(body=b"retry me", properties={"trace": "t-7"}))
    receiver = conn.create_receiver(qname, credit=1)
    message = receiver.receive(timeout=30)
    assert body_of(message) == b"retry me" and message.delivery_count == 0
    # released: the client did not try it; back at once, not counted
    settle(receiver, Delivery.RELEASED)
    message = receiver.receive(timeout=30)
    assert body_of(message) == b"retry me" and message.delivery_count == 0
    assert counter(daemon, "kbridge_redelivery_delayed_total") == 0
    # modified{delivery-failed}: through the retry topic, after 2 s
    failed_at = time.time()
    settle(receiver, Delivery.MODIFIED, failed=True)
    message = receiver.receive(timeout=60)
    assert time.time() - failed_at >= 2.0 - 0.01
    assert body_of(message) == b"retry me"
    assert message.delivery_count == 1
    assert message.properties["trace"] == "t-7"
    assert message.properties["kbridge-retry-original-topic"] == qname
    receiver.accept()
    wait_for(lambda: counter(daemon, "kbridge_redelivery_delayed_total") == 1, 10,
             "one delayed redelivery")
    conn.close()


def test_without_a_delay_a_nack_redelivers_at_once_in_place(kbridged_factory, bootstrap, qname):
    """The default (redelivery_delay.initial 0s): RabbitMQ's immediate
    requeue, no retry topic subscribed or written."""
    config = base_config(bootstrap)
    daemon = kbridged_factory(config)
    client = Client(daemon)
    client.subscribe(f"/queue/{qname}", "s1", ack="client-individual", receipt="sub")
    publish(bootstrap, qname, ["again"])
    frame = client.wait_messages(1)[0]
    client.nack(frame)
    frame = client.wait_messages(2)[1]
    assert frame.body == "again" and frame.headers["x-delivery-count"] == "2"
    client.ack(frame)
    assert counter(daemon, "kbridge_redelivery_delayed_total") == 0
    assert "retry topic" not in daemon.log()
    assert read_topic(bootstrap, f"{qname}.retry.1") == []
    client.close()


def test_pika_nack_with_requeue_is_delayed_and_reject_dead_letters(kbridged_factory, bootstrap,
                                                                    qname):
    """AMQP 0-9-1: basic.nack(requeue=True) comes back after the delay with
    redelivered set and x-delivery-count going on; basic.reject(requeue=False)
    dead-letters at once."""
    from conftest import pika_connect, user_config
    config = delay_config(bootstrap, initial="1500ms")
    config["auth"] = {"anonymous": True, "users": [
        user_config("app", "secret", consume=[".*"], publish=[".*"])]}
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    daemon = kbridged_factory(config)
    connection = pika_connect(daemon, "app", "secret")
    channel = connection.channel()
    channel.queue_declare(qname, durable=True)
    channel.confirm_delivery()
    channel.basic_publish("", qname, b"later")
    channel.basic_publish("", qname, b"never")
    got = []
    channel.basic_qos(prefetch_count=10)
    channel.basic_consume(qname, lambda ch, m, p, b: got.append((time.time(), m, p, b)))
    deadline = time.monotonic() + 60
    while len(got) < 2:
        assert time.monotonic() < deadline, f"only {len(got)} deliveries"
        connection.process_data_events(time_limit=0.1)
    by_body = {b: (t, m, p) for t, m, p, b in got}
    channel.basic_reject(by_body[b"never"][1].delivery_tag, requeue=False)
    nacked_at = time.time()
    channel.basic_nack(by_body[b"later"][1].delivery_tag, requeue=True)
    while len(got) < 3:
        assert time.monotonic() < deadline, "the nacked message did not come back"
        connection.process_data_events(time_limit=0.1)
    when, method, properties, body = got[2]
    assert body == b"later" and when - nacked_at >= 1.5 - 0.01
    assert method.redelivered
    assert properties.headers["x-delivery-count"] == 1  # RabbitMQ counts the returns
    assert properties.headers["kbridge-retry-original-topic"] == qname
    channel.basic_ack(method.delivery_tag)
    dead = read_topic(bootstrap, f"{qname}.DLQ")
    assert [r.value() for r in dead] == [b"never"]
    connection.close()
