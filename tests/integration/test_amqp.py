# SPDX-License-Identifier: Apache-2.0
"""AMQP 1.0 end to end with Qpid Proton (issue 4 "Must hold"): sends are
accepted only once Kafka has them, competing receivers share a queue exactly
once, outcomes redeliver or dead-letter as architecture §5 says, conversions
round-trip (AMQP, STOMP and native Kafka), kill -9 loses nothing accepted,
durable subscriptions resume, drain consumes credit, and bad input gets the
right AMQP error condition without touching other clients.

Claims about Kafka are checked by reading it back with confluent-kafka; waits
have deadlines."""

import re
import socket
import time
import uuid

import pytest
from confluent_kafka import Producer
from proton import Condition, Delivery, Described, Message, symbol, timestamp, ulong, int32
from proton.reactor import AtMostOnce, Copy, DurableSubscription, Filter, Move
from proton.utils import LinkDetached

from amqp_client import (amqp_url, body_of, connect, receive_all, run_in_thread, run_rhea,
                         send_windowed, settle, WindowedSender)
from conftest import EXTERNAL_BOOTSTRAP, base_config, under_sanitizer, wait_for
from stomp_util import Client
from test_stomp_queues import SESSION_TIMEOUT_MS, read_topic
from test_stomp_topics import send_all


def header_dict(kafka_headers):
    """Text headers of a record; kbridge-amqp-* ones carry AMQP encodings, not text."""
    return {name: value.decode() for name, value in (kafka_headers or [])
            if not name.startswith("kbridge-amqp-")}


def config_for(bootstrap, **sections):
    return base_config(bootstrap, kafka={"consumer": {"session.timeout.ms": SESSION_TIMEOUT_MS}},
                       **sections)


@pytest.fixture
def name():
    """A topic/queue name: fixed on the fresh dev broker, unique on a shared cluster."""
    return f"orders-{uuid.uuid4().hex[:10]}" if EXTERNAL_BOOTSTRAP else "orders"


def rss_kib(daemon):
    with open(f"/proc/{daemon.proc.pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def wait_assigned(daemon, queue):
    daemon.wait_log(rf"consumer kbridge\.q\.{re.escape(queue)}: assigned [1-9]", timeout=30)


# ---- sending -------------------------------------------------------------------------------

def test_10000_unsettled_sends_are_all_in_kafka_once_accepted(kbridged_factory, bootstrap, name):
    daemon = kbridged_factory(config_for(bootstrap))
    messages = [Message(body=f"m{i}".encode(), properties={"kafka-key": f"k{i % 8}", "n": i})
                for i in range(10000)]
    sender = send_windowed(daemon, name, messages, window=1000)
    assert sender.rejected == [] and sender.released == []
    assert sorted(sender.accepted) == list(range(10000))

    records = read_topic(bootstrap, name)
    bodies = [r.value().decode() for r in records]
    assert len(bodies) == 10000 and set(bodies) == {f"m{i}" for i in range(10000)}
    # one key, one partition, send order kept
    by_key = {}
    for r in records:
        headers = header_dict(r.headers())
        assert r.key().decode() == headers["kafka-key"]
        by_key.setdefault(headers["kafka-key"], []).append(int(headers["n"]))
    for key, numbers in by_key.items():
        assert numbers == sorted(numbers), f"order of key {key} broken"
        assert len({r.partition() for r in records if r.key().decode() == key}) == 1


def test_a_presettled_flood_is_bounded_and_all_reaches_kafka(kbridged_factory, bootstrap, name):
    daemon = kbridged_factory(config_for(bootstrap))
    before = rss_kib(daemon)
    # twice limits.max_unconfirmed; one sender link's messages without a key
    # share one partition (architecture §3) and the dev broker keeps ~5 MiB per
    # partition: 20000 records of 40 bytes plus headers (~4 MB) fit
    count = 20000
    payload = b"x" * 40
    send_windowed(daemon, name, [Message(body=payload) for _ in range(count)], presettle=True)
    peak = rss_kib(daemon)
    # credit follows Kafka's confirmations: kbridged holds at most
    # limits.max_unconfirmed (10000) messages at a time. Under AddressSanitizer
    # RSS measures its quarantine, not us (LeakSanitizer checks at exit).
    if not under_sanitizer(daemon):
        assert peak - before < 150 * 1024, f"RSS grew from {before} to {peak} KiB"
    wait_for(lambda: len(read_topic(bootstrap, name)) == count, 60, f"{count} records in Kafka",
             interval=0.5)
    # and the daemon still serves
    conn = connect(daemon)
    conn.create_sender(name).send(Message(body=b"after"))
    conn.close()


def test_the_anonymous_relay_sends_each_message_to_its_own_address(kbridged_factory, bootstrap,
                                                                     name):
    daemon = kbridged_factory(config_for(bootstrap))
    conn = connect(daemon)
    assert symbol("ANONYMOUS-RELAY") in (conn.conn.remote_offered_capabilities or [])
    relay = conn.create_sender(None)
    relay.send(Message(address=f"{name}-a", body=b"to a"))
    relay.send(Message(address=f"topic://{name}-b", body=b"to b"))
    with pytest.raises(Exception) as failure:
        relay.send(Message(address="bad name!", body=b"nowhere"))
    assert "REJECTED" in str(failure.value).upper() or "rejected" in repr(failure.value)
    relay.send(Message(address=f"{name}-a", body=b"still works"))
    conn.close()
    assert [r.value() for r in read_topic(bootstrap, f"{name}-a")] in (
        [b"to a", b"still works"], [b"still works", b"to a"])
    assert [r.value() for r in read_topic(bootstrap, f"{name}-b")] == [b"to b"]


def test_sasl_plain_checks_users_and_anonymous_only_when_enabled(kbridged_factory, bootstrap):
    import subprocess
    hash_ = subprocess.run(["openssl", "passwd", "-6", "secret"], capture_output=True, text=True,
                           check=True).stdout.strip()
    users = [{"name": "alice", "password_hash": hash_, "publish": ["orders.*"],
              "consume": [".*"]}]
    daemon = kbridged_factory(config_for(bootstrap, auth={"anonymous": False, "users": users}))
    conn = connect(daemon, "alice", "secret")
    conn.create_sender("orders.eu").send(Message(body=b"by alice"))
    with pytest.raises(LinkDetached) as refused:
        conn.create_sender("payments")
    assert "amqp:unauthorized-access" in str(refused.value)
    conn.close()
    record = read_topic(bootstrap, "orders.eu")[0]
    assert header_dict(record.headers())["user-id"] == "alice"

    for user, password in (("alice", "wrong"), ("mallory", "secret"), (None, None)):
        with pytest.raises(Exception) as failure:
            connect(daemon, user, password, timeout=10).close()
        assert "unauthorized-access" in str(failure.value) or "Authentication" in str(
            failure.value)
    # a client that skips SASL is refused too
    with socket.create_connection(daemon.host_port("amqp"), timeout=10) as raw:
        raw.sendall(b"AMQP\x00\x01\x00\x00")
        wait_for(lambda: raw.recv(4096) == b"", 10, "the server to close a SASL-less client")
    assert "Client skipped authentication" in daemon.log()


# ---- queues: competing receivers and outcomes --------------------------------------------------

def test_competing_receivers_with_credit_10_share_a_queue_exactly_once(kbridged_factory,
                                                                        bootstrap, name):
    daemon = kbridged_factory(config_for(bootstrap))
    conns = [connect(daemon) for _ in range(3)]
    receivers = [c.create_receiver(name, credit=10) for c in conns]
    wait_assigned(daemon, name)
    send_windowed(daemon, name, [Message(body=f"m{i}".encode()) for i in range(300)])
    got = {i: [] for i in range(3)}
    deadline = time.monotonic() + 60
    while sum(len(v) for v in got.values()) < 300:
        assert time.monotonic() < deadline, f"only {sum(len(v) for v in got.values())} of 300"
        for i, receiver in enumerate(receivers):
            try:
                message = receiver.receive(timeout=0.05)
            except Exception:
                continue
            got[i].append(body_of(message).decode())
            receiver.accept()
    everything = [b for v in got.values() for b in v]
    assert len(everything) == 300 and set(everything) == {f"m{i}" for i in range(300)}
    assert all(got[i] for i in range(3)), {i: len(v) for i, v in got.items()}
    for c in conns:
        c.close()


def test_released_redelivers_without_counting_and_rejected_dead_letters_at_once(
        kbridged_factory, bootstrap, name):
    daemon = kbridged_factory(config_for(bootstrap, queues={"max_deliveries": 2}))
    conn = connect(daemon)
    sender = conn.create_sender(name)
    sender.send(Message(body=b"first", properties={"kafka-key": "k"}))
    receiver = conn.create_receiver(name, credit=1)
    # released three times (more than max_deliveries): never dead-lettered
    for round_ in range(3):
        message = receiver.receive(timeout=30)
        assert body_of(message) == b"first"
        assert message.delivery_count == 0 and message.first_acquirer
        settle(receiver, Delivery.RELEASED)
    message = receiver.receive(timeout=30)
    assert body_of(message) == b"first"
    settle(receiver, Delivery.REJECTED, Condition("app:bad-order", "order 17 has no lines"))
    sender.send(Message(body=b"second", properties={"kafka-key": "k"}))
    message = receiver.receive(timeout=30)
    assert body_of(message) == b"second"
    receiver.accept()

    dlq = conn.create_receiver(f"{name}.DLQ", credit=1)
    dead = dlq.receive(timeout=30)
    dlq.accept()
    assert body_of(dead) == b"first"
    props = dead.properties
    assert props["kbridge-dlq-reason"] == ("rejected by the client: app:bad-order: "
                                           "order 17 has no lines")
    assert props["kbridge-dlq-original-topic"] == name
    assert props["kbridge-delivery-count"] == "1"
    assert {"kbridge-dlq-original-partition", "kbridge-dlq-original-offset",
            "kbridge-dlq-time"} <= set(props)
    assert props["kafka-key"] == "k"
    assert not any(k.startswith("kbridge-amqp-") for k in props)
    conn.close()
    records = read_topic(bootstrap, f"{name}.DLQ")
    assert [r.value() for r in records] == [b"first"] and records[0].key() == b"k"


def test_modified_delivery_failed_counts_towards_max_deliveries(kbridged_factory, bootstrap,
                                                                 name):
    daemon = kbridged_factory(config_for(bootstrap, queues={"max_deliveries": 3}))
    conn = connect(daemon)
    sender = conn.create_sender(name)
    sender.send(Message(body=b"poison"))
    receiver = conn.create_receiver(name, credit=1)
    for count in range(3):
        message = receiver.receive(timeout=30)
        assert body_of(message) == b"poison"
        assert message.delivery_count == count
        assert message.first_acquirer == (count == 0)
        settle(receiver, Delivery.MODIFIED, failed=True)
    dlq = conn.create_receiver(f"{name}.DLQ", credit=1)
    dead = dlq.receive(timeout=30)
    dlq.accept()
    assert dead.properties["kbridge-delivery-count"] == "3"
    assert dead.properties["kbridge-dlq-reason"] == "delivered 3 times (max_deliveries)"
    # modified{undeliverable-here} dead-letters at once
    sender.send(Message(body=b"not here"))
    message = receiver.receive(timeout=30)
    settle(receiver, Delivery.MODIFIED, undeliverable=True)
    dead = dlq.receive(timeout=30)
    dlq.accept()
    assert body_of(dead) == b"not here"
    assert "undeliverable-here" in dead.properties["kbridge-dlq-reason"]
    conn.close()


def test_presettled_receivers_are_auto_acknowledged(kbridged_factory, bootstrap, name):
    daemon = kbridged_factory(config_for(bootstrap))
    conn = connect(daemon)
    receiver = conn.create_receiver(name, credit=10, options=AtMostOnce())
    conn.create_sender(name).send(Message(body=b"once"))
    assert body_of(receiver.receive(timeout=30)) == b"once"
    conn.close()
    # nothing comes again to the next receiver: it was acknowledged as sent
    conn = connect(daemon)
    receiver = conn.create_receiver(name, credit=10)
    conn.create_sender(name).send(Message(body=b"twice"))
    assert body_of(receiver.receive(timeout=30)) == b"twice"
    receiver.accept()
    conn.close()


# ---- conversion round trips ---------------------------------------------------------------------

def test_amqp_to_kafka_to_amqp_keeps_types_bodies_and_annotations(kbridged_factory, bootstrap,
                                                                  name):
    daemon = kbridged_factory(config_for(bootstrap))
    conn = connect(daemon)
    receiver = conn.create_receiver(f"topic://{name}", credit=10)
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    properties = {"i": int32(7), "l": 123456789012, "b": True, "d": 1.5, "s": "text", "u": u,
                  "bin": b"\x00\xff", "ts": timestamp(1700000000000), "nothing": None}
    sent = Message(body={"a": 1, "b": [1, 2, "x"]}, id=ulong(42), correlation_id=u,
                   subject="subject", reply_to="replies", content_type="application/x-map",
                   priority=7, durable=True, properties=properties,
                   annotations={symbol("x-opt-trace"): "t-1"})
    conn.create_sender(f"topic://{name}").send(sent)
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert got.body == {"a": 1, "b": [1, 2, "x"]}
    assert got.id == 42  # a ulong on the wire (python gives an int; Kafka says below)
    assert got.correlation_id == u
    assert got.properties == properties
    assert {type(v) for v in got.properties.values()} == {type(v) for v in properties.values()}
    assert dict(got.annotations) == {symbol("x-opt-trace"): "t-1"}
    assert (got.subject, got.reply_to, got.content_type, got.priority, got.durable) == (
        "subject", "replies", "application/x-map", 7, True)
    conn.close()
    # native readers see text headers and never the type data as user headers
    record = read_topic(bootstrap, name)[0]
    headers = header_dict([(k, v) for k, v in record.headers() if k != "bin"])
    assert headers["i"] == "7" and headers["b"] == "true" and headers["d"] == "1.5"
    assert headers["message-id"] == "42" and headers["correlation-id"] == str(u)
    types = {k: v for k, v in record.headers() if k.startswith("kbridge-amqp-")}
    assert types["kbridge-amqp-message-id-type"] == b"ulong"
    assert types["kbridge-amqp-correlation-id-type"] == b"uuid"
    assert headers["content-type"] == "application/x-map"


def test_stomp_and_amqp_exchange_bodies_and_headers_both_ways(kbridged_factory, bootstrap, name):
    daemon = kbridged_factory(config_for(bootstrap))
    conn = connect(daemon)
    receiver = conn.create_receiver(f"topic://{name}-in", credit=10)
    stomp_client = Client(daemon)
    stomp_client.conn.send(f"/topic/{name}-in", "from stomp", content_type="text/plain",
                           headers={"correlation-id": "c-1", "reply-to": "/queue/answers",
                                    "message-id": "stomp-1", "color": "blue",
                                    "receipt": "r1"})
    stomp_client.wait_receipt("r1")
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert body_of(got) == b"from stomp"
    assert (got.content_type, got.correlation_id, got.reply_to, got.id) == (
        "text/plain", "c-1", "/queue/answers", "stomp-1")
    assert got.properties == {"color": "blue"}

    stomp_client.conn.subscribe(f"/topic/{name}-out", id="s1", ack="auto",
                                headers={"receipt": "sub"})
    stomp_client.wait_receipt("sub")
    conn.create_sender(f"topic://{name}-out").send(
        Message(body=b"from amqp", content_type="application/json", correlation_id="c-2",
                reply_to="/queue/back", id="amqp-1", properties={"color": "red", "n": 5}))
    frame = stomp_client.wait_messages(1)[0]
    assert frame.body == "from amqp"
    h = frame.headers
    assert (h["content-type"], h["correlation-id"], h["reply-to"], h["message-id"]) == (
        "application/json", "c-2", "/queue/back", "amqp-1")
    assert h["color"] == "red" and h["n"] == "5"
    assert not any(k.startswith("kbridge-amqp-") for k in h)
    conn.close()
    stomp_client.close()


def test_native_kafka_records_arrive_as_data_with_headers_and_key(kbridged_factory, bootstrap,
                                                                  name):
    daemon = kbridged_factory(config_for(bootstrap))
    conn = connect(daemon)
    receiver = conn.create_receiver(f"topic://{name}", credit=10)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(name, value=b'{"id": 1}', key=b"user-9",
                     headers=[("trace", b"t-1"), ("blob", b"\xff\xfe")])
    assert producer.flush(30) == 0
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert body_of(got) == b'{"id": 1}'
    assert got.properties == {"trace": "t-1", "blob": b"\xff\xfe"}
    assert dict(got.annotations) == {symbol("x-opt-partition-key"): "user-9"}
    conn.close()


# ---- kill -9 ------------------------------------------------------------------------------------

def test_kill_9_keeps_every_accepted_send_and_redelivers_unaccepted(kbridged_factory, devkafka,
                                                                    name):
    config = config_for(devkafka.bootstrap)
    first = kbridged_factory(config, name="before-kill")
    # a receiver holding unsettled deliveries
    conn = connect(first)
    conn.create_sender(f"{name}-held").send(Message(body=b"warm-up"))
    holder = conn.create_receiver(f"{name}-held", credit=50)
    assert body_of(holder.receive(timeout=30)) == b"warm-up"
    holder.accept()
    send_windowed(first, f"{name}-held", [Message(body=f"h{i}".encode()) for i in range(20)])
    held = receive_all(holder, 20, accept=False)  # delivered, never settled

    # a sender with a window, killed in the middle
    messages = [Message(body=f"m{i}".encode()) for i in range(200000)]
    sender = WindowedSender(amqp_url(first), name, messages, window=500)
    _, thread = run_in_thread(sender)
    wait_for(lambda: len(sender.accepted) >= 3000, 60, "3000 accepted sends")
    first.kill()
    thread.join(30)
    accepted = {f"m{i}" for i in list(sender.accepted)}
    stored = [r.value().decode() for r in read_topic(devkafka.bootstrap, name)]
    assert accepted <= set(stored), f"{len(accepted - set(stored))} accepted sends lost"
    assert len(stored) == len(set(stored))

    second = kbridged_factory(config, name="after-restart")
    conn2 = connect(second)
    receiver = conn2.create_receiver(f"{name}-held", credit=50)
    again = [body_of(m).decode() for m in receive_all(receiver, 20, timeout=90)]
    assert set(again) == {body_of(m).decode() for m in held}
    conn2.close()
    print(f"\nkill -9: {sender.sent} sent, {len(accepted)} accepted, {len(stored)} in Kafka; "
          f"{len(held)} unsettled deliveries all came again")


# ---- durable subscriptions, drain, dynamic sources ------------------------------------------------

def test_a_durable_subscription_resumes_after_detach_and_reattach(kbridged_factory, bootstrap,
                                                                   name):
    daemon = kbridged_factory(config_for(bootstrap))

    def subscribe():
        conn = connect(daemon, container_id="billing")
        receiver = conn.create_receiver(f"topic://{name}", name="daily", credit=10,
                                        options=DurableSubscription())
        return conn, receiver
    conn, receiver = subscribe()
    daemon.wait_log(r"consumer kbridge\.sub\.billing\.daily: assigned [1-9]", timeout=30)
    publisher = connect(daemon)
    sender = publisher.create_sender(f"topic://{name}")
    sender.send(Message(body=b"one"))
    assert body_of(receiver.receive(timeout=30)) == b"one"
    receiver.accept()
    receiver.link.detach()
    conn.close()
    for body in (b"two", b"three"):
        sender.send(Message(body=body))
    conn, receiver = subscribe()
    assert [body_of(m) for m in receive_all(receiver, 2, timeout=60)] == [b"two", b"three"]
    conn.close()
    publisher.close()


def test_drain_delivers_what_is_there_and_then_consumes_the_credit(kbridged_factory, bootstrap,
                                                                   name):
    daemon = kbridged_factory(config_for(bootstrap))
    conn = connect(daemon)
    sender = conn.create_sender(name)
    sender.send(Message(body=b"first"))
    receiver = conn.create_receiver(name, credit=1)
    assert body_of(receiver.receive(timeout=30)) == b"first"  # the queue is assigned now
    receiver.accept()
    for i in range(3):
        sender.send(Message(body=f"d{i}".encode()))
    link = receiver.link
    link.drain(10)
    conn.wait(lambda: not link.draining(), timeout=30, msg="drain to complete")
    assert link.credit == 0
    got = [body_of(receiver.receive(timeout=5)) for _ in range(3)]
    for _ in got:
        receiver.accept()
    assert sorted(got) == [b"d0", b"d1", b"d2"]
    conn.close()


def test_a_dynamic_source_is_a_temporary_queue_that_any_protocol_can_reply_to(kbridged_factory,
                                                                              bootstrap):
    daemon = kbridged_factory(config_for(bootstrap))
    conn = connect(daemon)
    replies = conn.create_receiver(None, dynamic=True, credit=10)
    address = replies.link.remote_source.address
    assert re.fullmatch(r"/reply-queue/test1\.[0-9a-f]{32}", address), address
    conn.create_sender(address).send(Message(body=b"amqp reply", correlation_id="c-9"))
    got = replies.receive(timeout=30)
    assert body_of(got) == b"amqp reply" and got.correlation_id == "c-9"
    assert not any(k.startswith("kbridge-") for k in (got.properties or {}))
    stomp_client = Client(daemon)
    stomp_client.send(address, "stomp reply", receipt="r")
    stomp_client.wait_receipt("r")
    assert body_of(replies.receive(timeout=30)) == b"stomp reply"
    # a guessed token reaches nobody
    stomp_client.send("/reply-queue/test1.00000000000000000000000000000000", "forged",
                      receipt="f")
    stomp_client.wait_receipt("f")
    with pytest.raises(Exception):
        replies.receive(timeout=1)
    stomp_client.close()
    conn.close()


# ---- errors -----------------------------------------------------------------------------------------

def test_illegal_forbidden_and_unsupported_attaches_get_conditions(kbridged_factory, bootstrap,
                                                                   name):
    daemon = kbridged_factory(config_for(bootstrap))
    conn = connect(daemon)
    cases = [
        (lambda: conn.create_sender("bad name!"), "amqp:not-found", "A-Z a-z 0-9"),
        (lambda: conn.create_receiver("queue://"), "amqp:not-found", "empty"),
        (lambda: conn.create_sender("topic://prices.*"), "amqp:not-found", "wildcard"),
        (lambda: conn.create_receiver(f"topic://{name}", options=Filter(
            {symbol("x-opt-other"): Described(symbol("example:other-filter"), "x")})),
         "amqp:not-implemented", "x-opt-other"),
    ]
    for attach, condition, words in cases:
        with pytest.raises(LinkDetached) as refused:
            attach()
        assert condition in str(refused.value) and words in str(refused.value), refused.value
    # the connection carries on
    conn.create_sender(name).send(Message(body=b"fine"))
    conn.close()
    assert [r.value() for r in read_topic(bootstrap, name)] == [b"fine"]


def test_a_browsing_receiver_distribution_mode_copy_sees_the_queue_and_takes_nothing(
        kbridged_factory, bootstrap, name):
    """distribution-mode copy (a queue browser, Qpid JMS's QueueBrowser) gets
    the messages ready in the queue without taking them (architecture §13);
    on a topic it is refused by name. A consuming receiver afterwards gets
    every message."""
    daemon = kbridged_factory(config_for(bootstrap))
    conn = connect(daemon)
    sender = conn.create_sender(name)
    for i in range(3):
        sender.send(Message(body=f"b{i}".encode()))
    browser = conn.create_receiver(name, name="browser", options=Copy(), credit=10)
    assert sorted(body_of(m).decode() for m in receive_all(browser, 3)) == ["b0", "b1", "b2"]
    browser.close()
    with pytest.raises(LinkDetached) as refused:
        conn.create_receiver(f"topic://{name}t", name="topic-browser", options=Copy())
    assert "amqp:not-implemented" in str(refused.value), refused.value
    assert "works on queues only" in str(refused.value), refused.value
    # the connection carries on, and a consuming receiver gets every message
    receiver = conn.create_receiver(name, name="consumer", options=Move(), credit=10)
    assert sorted(body_of(m).decode() for m in receive_all(receiver, 3)) == ["b0", "b1", "b2"]
    conn.close()


def test_garbage_and_bad_headers_close_only_that_connection(kbridged_factory, bootstrap, name):
    daemon = kbridged_factory(config_for(bootstrap))
    bystander = connect(daemon)
    sender = bystander.create_sender(name)
    for garbage in (b"GET / HTTP/1.1\r\n\r\n", b"AMQP\x09\x09\x09\x09",
                    b"AMQP\x00\x01\x00\x00" + b"\x00\x00\x00\x10\x02\x00\x00\x00" + b"\xff" * 8):
        with socket.create_connection(daemon.host_port("amqp"), timeout=10) as raw:
            raw.sendall(garbage)
            data = b""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                data += chunk
            else:
                raise AssertionError(f"no close after {garbage!r}")
            assert data[:4] in (b"AMQP", b""), data[:16]
    sender.send(Message(body=b"still served"))
    bystander.close()
    assert "still served" in [r.value().decode() for r in read_topic(bootstrap, name)]


def test_limits_message_size_and_connections(kbridged_factory, bootstrap, name):
    daemon = kbridged_factory(config_for(bootstrap, limits={"max_message_size": "10KiB",
                                                            "max_connections": 2}))
    conn = connect(daemon)
    sender = conn.create_sender(name)
    with pytest.raises(Exception) as refused:
        sender.send(Message(body=b"x" * (11 * 1024)))
    assert "REJECTED" in str(refused.value).upper() or "rejected" in repr(refused.value)
    sender.send(Message(body=b"small"))  # the link carries on
    second = connect(daemon)
    with pytest.raises(Exception) as over:
        connect(daemon, timeout=10)
    assert "amqp:resource-limit-exceeded" in str(over.value)
    second.close()
    conn.close()
    assert [r.value() for r in read_topic(bootstrap, name)] == [b"small"]
    assert "message-size-exceeded" in daemon.log()


# ---- a second client library ---------------------------------------------------------------------

def test_rhea_sends_receives_and_accepts(kbridged_factory, bootstrap, name):
    daemon = kbridged_factory(config_for(bootstrap))
    host, port = daemon.host_port("amqp")
    summary = run_rhea("rhea_roundtrip.js", host, port, name, 200)
    assert (summary["sent"], summary["accepted"], summary["rejected"], summary["received"]) == (
        200, 200, 0, 200)
    assert sorted(summary["bodies"]) == sorted(f"rhea message {i}" for i in range(200))
    assert sorted(summary["ids"]) == sorted(f"rhea-{i}" for i in range(200))
    records = read_topic(bootstrap, name)
    assert sorted(r.value().decode() for r in records) == sorted(
        f"rhea message {i}" for i in range(200))
    assert all(header_dict(r.headers())["n"] for r in records)


def test_large_messages_cross_in_many_frames_both_ways(kbridged_factory, bootstrap, name):
    daemon = kbridged_factory(config_for(bootstrap, limits={"max_frame_size": "4KiB"}))
    body = bytes(range(256)) * 800  # 200 KiB: 50 frames each way
    conn = connect(daemon)
    receiver = conn.create_receiver(f"topic://{name}", credit=2)
    conn.create_sender(f"topic://{name}").send(Message(body=body))
    assert conn.conn.transport.remote_max_frame_size == 4096
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert body_of(got) == body
    conn.close()
    assert [r.value() for r in read_topic(bootstrap, name)] == [body]


def test_a_silent_client_is_closed_after_the_idle_timeout(kbridged_factory, bootstrap):
    from proton import Connection, Transport
    daemon = kbridged_factory(config_for(bootstrap, limits={"heartbeat": "1s"}))
    transport = Transport()
    connection = Connection()
    transport.bind(connection)
    transport.sasl().allowed_mechs("ANONYMOUS")
    connection.open()
    with socket.create_connection(daemon.host_port("amqp"), timeout=30) as raw:
        # talk until both sides are open, then say nothing more
        raw.settimeout(0.2)
        deadline = time.monotonic() + 10
        while not connection.remote_condition and time.monotonic() < deadline:
            pending = transport.pending()
            if pending > 0:
                raw.sendall(transport.peek(pending))
                transport.pop(pending)
            try:
                data = raw.recv(4096)
            except socket.timeout:
                data = None
            if data == b"":
                break
            if data:
                transport.push(data)
            if connection.state & connection.REMOTE_ACTIVE:
                break
        assert connection.state & connection.REMOTE_ACTIVE, "the server never opened"
        assert transport.remote_idle_timeout == 0.5  # proton announces half of it
        opened = time.monotonic()
        raw.settimeout(10)
        received = b""
        while True:
            chunk = raw.recv(4096)
            if not chunk:
                break
            received += chunk
        silent_for = time.monotonic() - opened
    assert 0.9 < silent_for < 5, silent_for
    transport.push(received)
    assert connection.remote_condition.name == "amqp:resource-limit-exceeded"
    daemon.wait_log(r"local-idle-timeout expired|idle", timeout=10)


def test_a_slow_topic_receiver_is_detached_with_resource_limit_exceeded(
        kbridged_factory, bootstrap, name):
    """topics.slow_subscriber: disconnect ends a receiver that stopped giving
    credit: its link is detached with amqp:resource-limit-exceeded naming the
    policy (a subscription's failure carries its class, architecture "Core
    API"), and the connection carries on."""
    backlog = 100
    daemon = kbridged_factory(config_for(
        bootstrap, topics={"max_backlog": backlog, "slow_subscriber": "disconnect"}))
    address = f"/topic/ticks{name}"
    conn = connect(daemon)
    publisher, fast = Client(daemon), Client(daemon)
    try:
        # a fast STOMP subscriber keeps the topic's reader going (with only
        # slow subscribers it pauses instead), the AMQP one stops at one message
        fast.subscribe(address, "f1", receipt="r1")
        conn.create_receiver(address, credit=1)
        bodies = [f"t{i:04d}" for i in range(backlog * 3)]
        send_all(publisher, address, bodies, headers={"kafka-key": "k"})
        assert [m.body for m in fast.wait_messages(len(bodies), timeout=60)] == bodies
        with pytest.raises(LinkDetached) as detached:
            conn.wait(lambda: False, timeout=60, msg="the slow receiver's detach")
        assert "amqp:resource-limit-exceeded" in str(detached.value), detached.value
        assert "slow subscriber" in str(detached.value), detached.value
        # the connection carries on
        conn.create_sender(f"/topic/other{name}").send(Message(body=b"still here"))
        assert daemon.http("/readyz")[0] == 200
    finally:
        publisher.close()
        fast.close()
        conn.close()


def test_full_kafka_producer_queue_holds_transfers_instead_of_rejecting(
        kbridged_factory, devkafka, name):
    """librdkafka's producer queue full (5 records, a broker answering 300 ms
    late): 100 unsettled transfers on one link are all accepted, none rejected
    or released, and are in Kafka once and in order (the link holds the one
    Kafka had no room for and gives no credit meanwhile, architecture §12's
    held publish). Before, each transfer past the queue's room was rejected
    with amqp:resource-limit-exceeded."""
    daemon = kbridged_factory(base_config(
        devkafka.bootstrap,
        kafka={"consumer": {"session.timeout.ms": SESSION_TIMEOUT_MS},
               "producer": {"queue.buffering.max.messages": "5"}},
        limits={"max_unconfirmed": 1000}))
    send_windowed(daemon, name, [Message(body=b"warm-up")], window=1)
    assert devkafka.command("broker all rtt 300") == "ok"
    try:  # about 20 produce round trips of 300 ms
        messages = [Message(body=f"m{i}".encode()) for i in range(100)]
        sender = send_windowed(daemon, name, messages, window=100)
    finally:
        assert devkafka.command("broker all rtt 0") == "ok"
    assert sender.rejected == [] and sender.released == []
    assert sorted(sender.accepted) == list(range(100))
    bodies = [r.value().decode() for r in read_topic(devkafka.bootstrap, name)
              if r.value() != b"warm-up"]
    assert bodies == [f"m{i}" for i in range(100)]
