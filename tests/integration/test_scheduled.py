# SPDX-License-Identifier: Apache-2.0
"""Scheduled delivery (issue 16 item 6, docs/redelivery.md "Scheduled
delivery"): a message published with a delay is stored in Kafka at once
(the delay topic; the publisher's receipt / disposition / confirm comes
then) and reaches its destination when due, forwarded by the node's
scheduler, which survives restarts.

- STOMP `AMQ_SCHEDULED_DELAY`: 100 messages with delays spread over 0-5 s
  to /queue/NAME reach both a queue subscriber and a topic subscriber of
  the same name, all of them, none earlier than its send time + delay
  (a clock granularity of 5 ms allowed); a message due in an hour is
  confirmed (RECEIPT) and held, not delivered;
- the same across a kill -9 of kbridged in the middle: everything arrives
  after the restart, none early;
- AMQP 1.0 `x-opt-delivery-time` (absolute) and `x-opt-delivery-delay`;
- AMQP 0-9-1 `x-delay` (pika, honoured on any publish), also through a
  direct exchange: the forwarded record reaches the bound queue by its
  routing key, an unbound key reaches nothing;
- inside a STOMP transaction: a committed delayed SEND arrives when due, an
  aborted one never;
- two nodes share the delay topic's partitions (a joining node takes
  partitions and their held records over); SIGTERM commits what was
  forwarded, so the next run re-reads only what still waits;
- malformed values refused with the error naming the header; repeating
  schedules (AMQ_SCHEDULED_PERIOD) refused by name; a delay <= 0 and a
  time in the past are published directly.

Waits are deadlines on conditions; no test sleeps and hopes. Order is not
asserted (due times decide it)."""

import threading
import time
import uuid

import pika
import pytest
import stomp
from proton import Message, symbol, timestamp

from amqp_client import connect, send_windowed
from conftest import EXTERNAL_BOOTSTRAP, base_config, metrics, user_config, wait_for
from stomp_util import Client

SLACK = 0.005  # clock granularity allowed between the client's and the daemon's readings
KAFKA = {"consumer": {"session.timeout.ms": 6000}}


@pytest.fixture
def uniq():
    return f"-{uuid.uuid4().hex[:10]}" if EXTERNAL_BOOTSTRAP else f"-{uuid.uuid4().hex[:6]}"


class Timed(stomp.ConnectionListener):
    """Records each MESSAGE and RECEIPT with the wall time it arrived."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []  # (time, frame)
        self.receipts = {}  # receipt-id -> time
        self.errors = []

    def on_message(self, frame):
        with self.lock:
            self.messages.append((time.time(), frame))

    def on_receipt(self, frame):
        with self.lock:
            self.receipts[frame.headers.get("receipt-id")] = time.time()

    def on_error(self, frame):
        with self.lock:
            self.errors.append(frame)


def timed_client(daemon):
    client = Client(daemon)
    timed = Timed()
    client.conn.set_listener("timed", timed)
    return client, timed


def assert_not_early(received, due):
    """received: {body: wall time}; due: {body: earliest allowed wall time}."""
    early = {b: round(due[b] - t, 4) for b, t in received.items() if t < due[b] - SLACK}
    assert not early, f"delivered before their time (seconds early): {early}"


def test_stomp_delays_reach_queue_and_topic_subscribers_on_time(kbridged_factory, bootstrap,
                                                                 uniq):
    daemon = kbridged_factory(base_config(bootstrap, kafka=dict(KAFKA)))
    name = f"sched{uniq}"
    queue_client, queue_timed = timed_client(daemon)
    queue_client.subscribe(f"/queue/{name}", "q", receipt="q-ready", timeout=60)
    topic_client, topic_timed = timed_client(daemon)
    topic_client.subscribe(f"/topic/{name}", "t", receipt="t-ready", timeout=60)

    publisher, publisher_timed = timed_client(daemon)
    due = {}
    for i in range(100):
        delay_ms = (i * 37) % 100 * 50  # 0 .. 4950 ms, scrambled
        body = f"m{i}"
        due[body] = time.time() + delay_ms / 1000
        publisher.send(f"/queue/{name}", body, headers={"AMQ_SCHEDULED_DELAY": str(delay_ms)},
                       receipt=f"r{i}")
    # stored at once, delivered an hour from now: its RECEIPT cannot wait for its delivery
    publisher.send(f"/queue/{name}", "in-an-hour", headers={"AMQ_SCHEDULED_DELAY": "3600000"},
                   receipt="r-hour")
    wait_for(lambda: len(publisher_timed.receipts) == 101, 30, "101 receipts")
    assert not publisher_timed.errors

    for timed in (queue_timed, topic_timed):
        wait_for(lambda: len(timed.messages) >= 100, 60,
                 f"100 scheduled messages (have {len(timed.messages)})")
    for what, timed in (("queue", queue_timed), ("topic", topic_timed)):
        with timed.lock:
            bodies = [f.body for _, f in timed.messages]
            received = {f.body: t for t, f in timed.messages}
            headers = [f.headers for _, f in timed.messages]
        assert sorted(bodies) == sorted(due), f"{what}: not exactly the 100 messages"
        assert_not_early(received, due)
        # the schedule's own headers never reach a client; ActiveMQ's stays
        assert all("kbridge-deliver-at" not in h and "kbridge-deliver-to" not in h
                   for h in headers)
        assert all("AMQ_SCHEDULED_DELAY" in h for h in headers)

    values = metrics(daemon)
    # m0 has delay 0: published directly; the 99 others and in-an-hour went through the
    # delay topic
    assert values["kbridge_scheduled_total"] == 100
    wait_for(lambda: metrics(daemon)["kbridge_scheduled_forwarded_total"] == 99, 10,
             "99 forwards counted")
    assert metrics(daemon)["kbridge_scheduled_held"] == 1  # in-an-hour
    for client in (queue_client, topic_client, publisher):
        client.close()


def test_scheduled_messages_survive_kill_9(kbridged_factory, bootstrap, uniq):
    config = base_config(bootstrap, kafka=dict(KAFKA))
    first = kbridged_factory(config, name="before-kill")
    name = f"restart{uniq}"
    consumer, timed = timed_client(first)
    consumer.subscribe(f"/queue/{name}", "q", receipt="ready", timeout=60)
    publisher, publisher_timed = timed_client(first)
    due = {}
    for i in range(100):
        delay_ms = 500 + (i * 37) % 100 * 50  # 0.5 .. 5.45 s
        body = f"k{i}"
        due[body] = time.time() + delay_ms / 1000
        publisher.send(f"/queue/{name}", body, headers={"AMQ_SCHEDULED_DELAY": str(delay_ms)},
                       receipt=f"r{i}")
    wait_for(lambda: len(publisher_timed.receipts) == 100, 30, "100 receipts")
    # in the middle: some forwarded and delivered, most still waiting
    wait_for(lambda: len(timed.messages) >= 20, 60, "20 messages before the kill")
    first.kill()
    with timed.lock:
        before = {f.body: t for t, f in timed.messages}
    assert len(before) < 100, "everything arrived before the kill: nothing was tested"

    second = kbridged_factory(config, name="after-restart")
    consumer2, timed2 = timed_client(second)
    consumer2.subscribe(f"/queue/{name}", "q", receipt="ready", timeout=60)
    missing = set(due) - set(before)
    wait_for(lambda: {f.body for _, f in list(timed2.messages)} >= missing, 90,
             f"{len(missing)} messages not delivered before the kill")
    with timed2.lock:
        after = {}
        for t, f in timed2.messages:
            after.setdefault(f.body, t)
    assert_not_early(before, due)
    assert_not_early(after, due)
    # auto-ack: messages acknowledged before the kill may come again
    # (at-least-once), never a message that was not sent
    assert set(after) <= set(due)
    print(f"kill -9: {len(before)} before, {len(missing)} after the restart, "
          f"{len(set(after) & set(before))} again")
    consumer2.close()


def test_amqp_delivery_time_and_delay(kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(base_config(bootstrap, kafka=dict(KAFKA)))
    name = f"amqp-sched{uniq}"
    connection = connect(daemon)
    receiver = connection.create_receiver(name, credit=100)
    start = time.time()
    at = int((start + 2.0) * 1000)
    messages = [
        Message(body=b"at", annotations={symbol("x-opt-delivery-time"): timestamp(at)}),
        Message(body=b"delay", annotations={symbol("x-opt-delivery-delay"): 1500}),
        Message(body=b"past", annotations={symbol("x-opt-delivery-time"): timestamp(at - 60000)}),
        Message(body=b"zero", annotations={symbol("x-opt-delivery-delay"): 0}),
    ]
    sender = send_windowed(daemon, name, messages)
    assert sorted(sender.accepted) == [0, 1, 2, 3], sender.rejected
    due = {b"at": at / 1000, b"delay": start + 1.5, b"past": start, b"zero": start}
    received = {}
    deadline = time.monotonic() + 60
    while len(received) < 4:
        left = deadline - time.monotonic()
        assert left > 0, f"only {sorted(received)} arrived"
        message = receiver.receive(timeout=left)
        received[bytes(message.body)] = time.time()
        receiver.accept()
    assert_not_early(received, due)
    connection.close()
    # only "at" and "delay" went through the delay topic; "past" and "zero" directly
    assert metrics(daemon)["kbridge_scheduled_total"] == 2


def test_bad_delays_are_refused_naming_the_header(kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(base_config(bootstrap, kafka=dict(KAFKA)))
    client = Client(daemon)
    client.send(f"/queue/bad{uniq}", "x", headers={"AMQ_SCHEDULED_DELAY": "soon"}, receipt="r")
    error = client.wait_error()
    assert error.headers["message"] == "invalid AMQ_SCHEDULED_DELAY"
    assert "AMQ_SCHEDULED_DELAY header is 'soon'" in error.body
    client.close()

    client = Client(daemon)
    client.send(f"/queue/bad{uniq}", "x",
                headers={"AMQ_SCHEDULED_DELAY": "1000", "AMQ_SCHEDULED_PERIOD": "1000"},
                receipt="r")
    error = client.wait_error()
    assert error.headers["message"] == "repeating schedules are not supported"
    assert "AMQ_SCHEDULED_PERIOD" in error.body
    client.close()

    sender = send_windowed(daemon, f"bad{uniq}", [
        Message(body=b"x", annotations={symbol("x-opt-delivery-delay"): "later"})])
    assert sender.accepted == []
    [(_, condition)] = sender.rejected
    assert condition.name == "amqp:invalid-field"
    assert condition.description == ("message annotation x-opt-delivery-delay must be a "
                                     "timestamp or an integer (milliseconds)")
    assert metrics(daemon).get("kbridge_scheduled_total", 0) == 0

    # the largest delay is taken (due at the end of time) and held, not passed over
    client = Client(daemon)
    client.send(f"/queue/bad{uniq}", "x", headers={"AMQ_SCHEDULED_DELAY": "9223372036854775807"},
                receipt="largest")
    client.wait_receipt("largest")
    wait_for(lambda: metrics(daemon).get("kbridge_scheduled_held") == 1, 60, "held")
    assert metrics(daemon)["kbridge_scheduled_invalid_total"] == 0
    client.close()


def amqp091_daemon(kbridged_factory, bootstrap):
    config = base_config(bootstrap, kafka=dict(KAFKA), auth={
        "anonymous": True, "users": [user_config("app", "secret", consume=[".*"],
                                                 publish=[".*"])]})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    return kbridged_factory(config)


def pika_connect(daemon):
    host, port = daemon.host_port("amqp")
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=host, port=port, credentials=pika.PlainCredentials("app", "secret"),
        connection_attempts=1, socket_timeout=10, blocked_connection_timeout=30))


def test_amqp091_x_delay(kbridged_factory, bootstrap, uniq):
    daemon = amqp091_daemon(kbridged_factory, bootstrap)
    name = f"x-delay{uniq}"
    consumer, timed = timed_client(daemon)
    consumer.subscribe(f"/queue/{name}", "q", receipt="ready", timeout=60)
    conn = pika_connect(daemon)
    channel = conn.channel()
    channel.confirm_delivery()
    due = {}
    for i, delay_ms in enumerate([2000, 1000, 0, -5]):
        body = f"d{i}"
        due[body] = time.time() + max(delay_ms, 0) / 1000
        channel.basic_publish("", name, body.encode(),
                              pika.BasicProperties(headers={"x-delay": delay_ms}))
    wait_for(lambda: len(timed.messages) >= 4, 60, "4 messages")
    with timed.lock:
        received = {f.body: t for t, f in timed.messages}
    assert sorted(received) == sorted(due)
    assert_not_early(received, due)
    assert metrics(daemon)["kbridge_scheduled_total"] == 2

    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.basic_publish("", name, b"bad", pika.BasicProperties(headers={"x-delay": "soon"}))
    assert closed.value.reply_code == 406
    assert closed.value.reply_text == ("PRECONDITION_FAILED - invalid x-delay header 'soon': a "
                                       "whole number of milliseconds expected")
    conn.close()
    consumer.close()


def test_stomp_transaction_commits_and_aborts_scheduled_sends(kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(base_config(bootstrap, kafka=dict(KAFKA)))
    name = f"tx-sched{uniq}"
    consumer, timed = timed_client(daemon)
    consumer.subscribe(f"/queue/{name}", "q", receipt="ready", timeout=60)
    client = Client(daemon)
    due = {}
    client.conn.begin("kept")
    client.conn.begin("dropped")
    for i in range(3):
        due[f"c{i}"] = time.time() + 1.0
        client.conn.send(f"/queue/{name}", f"c{i}", headers={
            "transaction": "kept", "AMQ_SCHEDULED_DELAY": "1000"})
        client.conn.send(f"/queue/{name}", f"a{i}", headers={
            "transaction": "dropped", "AMQ_SCHEDULED_DELAY": "1000"})
    client.conn.abort("dropped", headers={"receipt": "aborted"})
    client.conn.commit("kept", headers={"receipt": "committed"})
    client.wait_receipt("aborted")
    client.wait_receipt("committed")
    assert not client.recorder.errors
    wait_for(lambda: len(timed.messages) >= 3, 60, "3 committed scheduled messages")
    # one more plain message after them: when it arrives, nothing else is on its way
    client.send(f"/queue/{name}", "last", receipt="last")
    client.wait_receipt("last")
    wait_for(lambda: any(f.body == "last" for _, f in list(timed.messages)), 30, "the last one")
    with timed.lock:
        received = {f.body: t for t, f in timed.messages if f.body != "last"}
    assert sorted(received) == ["c0", "c1", "c2"]
    assert_not_early(received, due)
    assert metrics(daemon)["kbridge_scheduled_total"] == 3
    client.close()
    consumer.close()


def test_amqp091_x_delay_through_an_exchange(kbridged_factory, bootstrap, uniq):
    daemon = amqp091_daemon(kbridged_factory, bootstrap)
    conn = pika_connect(daemon)
    channel = conn.channel()
    exchange, queue = f"sched-ex{uniq}", f"sched-q{uniq}"
    channel.exchange_declare(exchange, exchange_type="direct", durable=True)
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, exchange, routing_key="bound")
    received = {}
    channel.basic_consume(queue, lambda ch, method, props, body: (
        received.setdefault(body.decode(), time.time()),
        ch.basic_ack(method.delivery_tag)))
    publisher = conn.channel()
    publisher.confirm_delivery()
    due = {"late": time.time() + 1.5}
    publisher.basic_publish(exchange, "bound", b"late",
                            pika.BasicProperties(headers={"x-delay": 1500}))
    publisher.basic_publish(exchange, "nowhere", b"unrouted",
                            pika.BasicProperties(headers={"x-delay": 500}))
    due["now"] = time.time()
    publisher.basic_publish(exchange, "bound", b"now")
    deadline = time.monotonic() + 60
    while len(received) < 2:
        left = deadline - time.monotonic()
        assert left > 0, f"only {sorted(received)} arrived"
        conn.process_data_events(time_limit=min(left, 0.2))
    assert sorted(received) == ["late", "now"]
    assert_not_early(received, due)
    # the unroutable one was never written: only one went through the delay topic
    assert metrics(daemon)["kbridge_scheduled_total"] == 1
    conn.close()


def test_graceful_stop_commits_what_was_forwarded(kbridged_factory, bootstrap, uniq):
    """SIGTERM commits the forwarded offsets: the next run re-reads only what
    was still waiting. One key, so one partition of the delay topic: ten
    messages due soon, then one due in an hour at a higher offset."""
    config = base_config(bootstrap, kafka=dict(KAFKA))
    first = kbridged_factory(config, name="first")
    name = f"graceful{uniq}"
    client = Client(first)
    for i in range(10):
        client.send(f"/queue/{name}", f"g{i}",
                    headers={"AMQ_SCHEDULED_DELAY": "200", "kafka-key": "one"}, receipt=f"r{i}")
    client.send(f"/queue/{name}", "hour",
                headers={"AMQ_SCHEDULED_DELAY": "3600000", "kafka-key": "one"}, receipt="rh")
    for receipt in [f"r{i}" for i in range(10)] + ["rh"]:
        client.wait_receipt(receipt)
    wait_for(lambda: metrics(first).get("kbridge_scheduled_forwarded_total") == 10, 60,
             "10 forwards")
    assert metrics(first)["kbridge_scheduled_held"] == 1
    client.close()
    assert first.stop() == 0  # also: no leak reported under the sanitizers

    second = kbridged_factory(config, name="second")
    wait_for(lambda: metrics(second).get("kbridge_scheduled_held") == 1, 60,
             "the hour one held again")
    # the ten were below the committed offset: had they been read again, they would
    # have been forwarded (they are due) before the hour one was all that is held
    assert metrics(second)["kbridge_scheduled_forwarded_total"] == 0


def test_two_nodes_share_the_delay_topic(kbridged_factory, bootstrap, uniq):
    """The schedulers of two nodes share scheduler.group: a node joining
    takes partitions (and their held records) from the first, re-reading
    them from the committed offsets; every message arrives, none early."""
    config_a = base_config(bootstrap, kafka=dict(KAFKA))
    a = kbridged_factory(config_a, name="node-a")
    a.wait_log(r"scheduled: \d+ partition\(s\) assigned", 60)
    name = f"shared{uniq}"
    consumer, timed = timed_client(a)
    consumer.subscribe(f"/queue/{name}", "q", receipt="ready", timeout=60)
    publisher = Client(a)
    due = {}
    for i in range(100):
        delay_ms = 8000 + (i * 37) % 100 * 20  # 8 .. 9.98 s: after node B has joined
        body = f"s{i}"
        due[body] = time.time() + delay_ms / 1000
        publisher.send(f"/queue/{name}", body, receipt=f"r{i}",
                       headers={"AMQ_SCHEDULED_DELAY": str(delay_ms), "kafka-key": f"key{i}"})
    for i in range(100):
        publisher.wait_receipt(f"r{i}")

    b = kbridged_factory(base_config(bootstrap, kafka=dict(KAFKA), node_id="test2"), name="node-b")
    b.wait_log(r"scheduled: \d+ partition\(s\) assigned", 60)
    shared_at = time.time()
    wait_for(lambda: len({f.body for _, f in list(timed.messages)}) >= 100, 90,
             "100 scheduled messages")
    with timed.lock:
        received = {}
        for t, f in timed.messages:
            received.setdefault(f.body, t)
    assert set(received) == set(due)
    assert_not_early(received, due)
    forwarded_a = metrics(a)["kbridge_scheduled_forwarded_total"]
    forwarded_b = metrics(b)["kbridge_scheduled_forwarded_total"]
    assert forwarded_a + forwarded_b >= 100
    if shared_at < min(due.values()):
        # B owned half the partitions before anything was due: it forwarded their records
        assert forwarded_b > 0 and forwarded_a > 0, (forwarded_a, forwarded_b)
    print(f"two nodes: A forwarded {forwarded_a:.0f}, B {forwarded_b:.0f}, "
          f"shared {min(due.values()) - shared_at:.1f} s before the first was due")
    publisher.close()
    consumer.close()


def test_max_held_pauses_and_resumes_without_losing_anything(kbridged_factory, bootstrap, uniq):
    """scheduler.max_held: 10 with 100 messages scheduled: the scheduler
    pauses its partitions at 10 held, resumes at half, and every message
    still arrives, none early (later than due is allowed: a paused partition
    waits behind what is held)."""
    daemon = kbridged_factory(base_config(bootstrap, kafka=dict(KAFKA),
                                          scheduler={"max_held": 10}))
    daemon.wait_log(r"scheduled: \d+ partition\(s\) assigned", 60)
    name = f"held{uniq}"
    consumer, timed = timed_client(daemon)
    consumer.subscribe(f"/queue/{name}", "q", receipt="ready", timeout=60)
    publisher = Client(daemon)
    due = {}
    for i in range(100):
        delay_ms = 3000 + (i * 37) % 100 * 20  # 3 .. 4.98 s
        body = f"h{i}"
        due[body] = time.time() + delay_ms / 1000
        publisher.send(f"/queue/{name}", body, receipt=f"r{i}",
                       headers={"AMQ_SCHEDULED_DELAY": str(delay_ms), "kafka-key": f"k{i % 7}"})
    for i in range(100):
        publisher.wait_receipt(f"r{i}")
    wait_for(lambda: len({f.body for _, f in list(timed.messages)}) >= 100, 90,
             "100 scheduled messages")
    with timed.lock:
        received = {}
        for t, f in timed.messages:
            received.setdefault(f.body, t)
    assert set(received) == set(due)
    assert_not_early(received, due)
    # it paused (the 90 after the first 10 came only once it had resumed)
    assert "10 record(s) held, pausing fetching (scheduler.max_held)" in daemon.log()
    # a record stops being held at its forward's delivery report, which may
    # come after the consumer already has the message (seen under TSan)
    wait_for(lambda: metrics(daemon)["kbridge_scheduled_held"] == 0, 30,
             "kbridge_scheduled_held back to 0")
    publisher.close()
    consumer.close()


def test_a_failed_forward_is_retried_not_dropped(kbridged_factory, devkafka, uniq):
    """The dev broker refuses the scheduler's next produce (a non-retriable
    TOPIC_AUTHORIZATION_FAILED, which librdkafka does not retry itself): the
    forward is counted as an error and tried again after its back-off, and
    every message still arrives, none early."""
    config = base_config(devkafka.bootstrap, kafka=dict(KAFKA))
    config["kafka"]["properties"] = {"topic.metadata.refresh.interval.ms": "2000"}
    daemon = kbridged_factory(config)
    daemon.wait_log(r"scheduled: \d+ partition\(s\) assigned", 60)
    name = f"retry{uniq}"
    consumer, timed = timed_client(daemon)
    consumer.subscribe(f"/queue/{name}", "q", receipt="ready", timeout=60)
    publisher = Client(daemon)
    due = {}
    for i in range(5):
        due[f"f{i}"] = time.time() + 3.0
        publisher.send(f"/queue/{name}", f"f{i}", receipt=f"r{i}",
                       headers={"AMQ_SCHEDULED_DELAY": "3000", "kafka-key": "one"})
    for i in range(5):
        publisher.wait_receipt(f"r{i}")
    # the next produce request is the forward (nothing else produces meanwhile)
    assert devkafka.command("errors Produce 1 TOPIC_AUTHORIZATION_FAILED") == "ok"
    injected_at = time.time()
    wait_for(lambda: len({f.body for _, f in list(timed.messages)}) >= 5, 90, "5 messages")
    with timed.lock:
        received = {}
        for t, f in timed.messages:
            received.setdefault(f.body, t)
    assert set(received) == set(due)
    assert_not_early(received, due)
    values = metrics(daemon)
    if injected_at < min(due.values()):  # the refusal was queued before the forward
        assert values["kbridge_scheduled_forward_errors_total"] >= 1
        assert "forwarding to" in daemon.log() and "trying again" in daemon.log()
    assert values["kbridge_scheduled_forwarded_total"] == 5
    publisher.close()
    consumer.close()
