# SPDX-License-Identifier: Apache-2.0
"""Dead letters in the admin API and kbridgectl (issue 18 items 1 and 2,
docs/operations.md "Dead letters"): peek without moving anything, redrive
back into the queue (delivery counts reset, provenance kept in
kbridge-redrive-* headers, confirmed before the DLQ group moves, nothing
redriven twice), redrive to another destination, discard, who may, and a
kill -9 in the middle of a redrive that loses nothing."""

import json
import os
import subprocess
import threading
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import ADMIN, BUILDDIR, base_config, metrics, user_config, wait_for, with_admin
from stomp_util import Client

KBRIDGECTL = os.path.join(BUILDDIR, "daemon", "kbridgectl")
MONITOR = ("watcher", "watch-secret")
LIMITED = ("limited", "limited-secret")  # administrator, but publishes only to dlqa.*
BLIND = ("blind", "blind-secret")  # administrator, but consumes only other.*
NACK_REASON = "rejected by the STOMP client (NACK)"


def uniq():
    return uuid.uuid4().hex[:8]


def make_config(bootstrap, **dlq):
    config = with_admin(base_config(bootstrap, queues={"linger": "0s"}))
    config["auth"]["users"] += [
        user_config(MONITOR[0], MONITOR[1], ["monitoring"]),
        user_config(LIMITED[0], LIMITED[1], ["administrator"], consume=[".*"],
                    publish=["^dlqa\\."]),
        user_config(BLIND[0], BLIND[1], ["administrator"], consume=["^other\\."],
                    publish=[".*"]),
    ]
    if dlq:
        config["dlq"] = dlq
    return config


@pytest.fixture
def daemon(kbridged_factory, bootstrap):
    return kbridged_factory(make_config(bootstrap))


def dlq_path(queue, rest=""):
    return f"/api/kbridge/dlq/%2F/{queue}{rest}"


def depth(daemon, queue):
    status, body = daemon.api(dlq_path(queue))
    assert status == 200, body
    return body["messages"]


def read_topic(bootstrap, topic, timeout=60):
    """Every record of `topic` up to its end offsets now, partition then
    offset order (confluent-kafka, no group)."""
    consumer = Consumer({"bootstrap.servers": bootstrap,
                         "group.id": f"kbridge-test-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {}
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = (low, high)
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
        got = {p: [] for p in ends}
        pending = set(ends)
        wait_for(lambda: _drain(consumer, got, ends, pending), timeout, f"all of {topic}",
                 interval=0)
        return [m for p in sorted(got) for m in got[p]]
    finally:
        consumer.close()


def _drain(consumer, got, ends, pending):
    for m in consumer.consume(1000, timeout=0.2):
        assert not m.error(), m.error()
        got[m.partition()].append(m)
        if m.offset() >= ends[m.partition()][1] - 1:
            pending.discard(m.partition())
    return not pending


def headers_of(record):
    return {name: value.decode() for name, value in (record.headers() or [])}


def produce_dead_letters(bootstrap, dlq_topic, original_topic, bodies, partition=0):
    """Dead letters as kbridged writes them (same headers), straight to the
    DLQ topic: quicker than NACKing thousands of messages."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 5})
    for i, body in enumerate(bodies):
        producer.produce(dlq_topic, value=body.encode(), key=f"k{i}".encode(),
                         partition=partition,
                         headers=[("trace-id", f"t{i}".encode()),
                                  ("kbridge-dlq-reason", NACK_REASON.encode()),
                                  ("kbridge-dlq-original-topic", original_topic.encode()),
                                  ("kbridge-dlq-original-partition", b"0"),
                                  ("kbridge-dlq-original-offset", str(i).encode()),
                                  ("kbridge-delivery-count", b"1"),
                                  ("kbridge-dlq-time", b"1700000000000")])
        if i % 1000 == 999:
            producer.poll(0)
    assert producer.flush(60) == 0


def dead_letter_by_nack(daemon, queue, bodies):
    """Send `bodies` to the queue and NACK (requeue:false) every delivery;
    returns once all of them are in the DLQ."""
    client = Client(daemon)
    try:
        for i, body in enumerate(bodies):
            client.send(f"/queue/{queue}", body, receipt=f"r{i}")
        for i in range(len(bodies)):
            client.wait_receipt(f"r{i}")
        client.subscribe(f"/queue/{queue}", "s1", ack="client-individual",
                         headers={"prefetch-count": "1000"}, receipt="sub")
        frames = client.wait_messages(len(bodies))
        for frame in frames:
            client.conn.nack(frame.headers["ack"], requeue="false")
        wait_for(lambda: depth(daemon, queue) == len(bodies), 30, f"{len(bodies)} dead letters")
    finally:
        client.close()


def ctl(daemon, *args, auth=ADMIN):
    host, port = daemon.host_port("http")
    argv = [KBRIDGECTL, "--url", f"http://{host}:{port}"]
    if auth:
        argv += ["--user", auth[0], "--password", auth[1]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBRIDGE_")}
    return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=120, env=env)


def test_peek_then_redrive_100_dead_letters_back_into_the_queue(daemon, bootstrap):
    q = f"dlqa.{uniq()}"
    assert daemon.api(f"/api/queues/%2F/{q}", method="PUT", body={})[0] == 201
    bodies = [f"m{i:03d}" for i in range(100)]
    dead_letter_by_nack(daemon, q, bodies)
    status, info = daemon.api(dlq_path(q))
    assert status == 200
    assert (info["topic"], info["group"], info["messages"], info["running"]) == (
        f"{q}.DLQ", f"kbridge.dlq.{q}", 100, None)
    status, queue = daemon.api(f"/api/queues/%2F/{q}")
    assert (queue["kbridge_dlq_topic"], queue["kbridge_dlq_messages"]) == (f"{q}.DLQ", 100)
    dlq_records = read_topic(bootstrap, f"{q}.DLQ")
    assert sorted(r.value().decode() for r in dlq_records) == bodies

    # peek: the first N in partition-then-offset order, nothing moves
    status, peeked = daemon.api(dlq_path(q, "/messages?count=7"))
    assert status == 200 and len(peeked) == 7
    for got, record in zip(peeked, dlq_records[:7]):
        assert (got["partition"], got["offset"]) == (record.partition(), record.offset())
        assert got["payload"] == record.value().decode()
        assert got["payload_encoding"] == "string"
        assert got["payload_bytes"] == len(record.value())
        h = got["properties"]["headers"]
        assert h == headers_of(record)
        assert h["kbridge-dlq-reason"] == NACK_REASON
        assert h["kbridge-dlq-original-topic"] == q
        assert h["kbridge-delivery-count"] == "1"
        assert {"kbridge-dlq-original-partition", "kbridge-dlq-original-offset",
                "kbridge-dlq-time"} <= set(h)
    assert len(daemon.api(dlq_path(q, "/messages"))[1]) == 10  # the default count
    assert depth(daemon, q) == 100
    # peeking is reading: monitoring users may
    assert daemon.api(dlq_path(q, "/messages?count=1"), auth=MONITOR)[0] == 200

    status, answer = daemon.api(dlq_path(q, "/redrive"), method="POST", body={}, timeout=60)
    assert status == 200, answer
    assert answer["redriven"] == 100 and answer["to_original_topic"] == 100
    assert answer["messages_before"] == 100 and answer["topic"] == f"{q}.DLQ"
    assert depth(daemon, q) == 0
    assert metrics(daemon)["kbridge_dlq_redriven_records_total"] == 100
    assert daemon.api(f"/api/queues/%2F/{q}")[1]["kbridge_dlq_messages"] == 0

    # a consumer of the queue gets each body once, as a first delivery
    client = Client(daemon)
    try:
        client.subscribe(f"/queue/{q}", "s2", ack="auto", headers={"prefetch-count": "1000"},
                         receipt="sub2")
        frames = client.wait_messages(100)
        assert sorted(f.body for f in frames) == bodies
        for frame in frames:
            h = frame.headers
            assert h["x-delivery-count"] == "1" and h["redelivered"] == "false"
            assert h["kbridge-redrive-reason"] == NACK_REASON
            assert h["kbridge-redrive-original-topic"] == q
            assert h["kbridge-redrive-from-topic"] == f"{q}.DLQ"
            assert h["kbridge-redrive-count"] == "1"
            assert {"kbridge-redrive-original-offset", "kbridge-redrive-from-partition",
                    "kbridge-redrive-from-offset", "kbridge-redrive-time",
                    "kbridge-redrive-dead-lettered-at"} <= set(h)
            assert not [name for name in h if name.startswith("kbridge-dlq-")]
    finally:
        client.close()
    # in Kafka: the 100 sent and the 100 redriven, nothing more
    assert len(read_topic(bootstrap, q)) == 200

    # a second redrive has nothing left to do; the DLQ did not grow
    status, answer = daemon.api(dlq_path(q, "/redrive"), method="POST", body={})
    assert (status, answer["redriven"], answer["messages_before"]) == (200, 0, 0)
    assert len(read_topic(bootstrap, f"{q}.DLQ")) == 100
    assert len(read_topic(bootstrap, q)) == 200


def test_redrive_to_another_destination_and_discard(daemon, bootstrap):
    q, other = f"dlqa.{uniq()}", f"dlqa.other.{uniq()}"
    assert daemon.api(f"/api/queues/%2F/{q}", method="PUT", body={})[0] == 201
    bodies = [f"d{i}" for i in range(10)] + ["bin"]
    produce_dead_letters(bootstrap, f"{q}.DLQ", q, bodies[:10])
    # a body that is not UTF-8 is shown in base64
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(f"{q}.DLQ", value=b"\xff\x00\xfe", partition=0)
    assert p.flush(30) == 0
    wait_for(lambda: depth(daemon, q) == 11, 30, "11 dead letters")
    status, peeked = daemon.api(dlq_path(q, "/messages?count=100"))
    assert status == 200
    assert [m["payload"] for m in peeked[:10]] == bodies[:10]
    assert (peeked[10]["payload"], peeked[10]["payload_encoding"]) == ("/wD+", "base64")
    assert peeked[0]["key"] == "k0" and peeked[0]["properties"]["headers"]["trace-id"] == "t0"

    # the first 3 to another queue, key and value kept
    status, answer = daemon.api(dlq_path(q, "/redrive"), method="POST",
                                body={"count": 3, "destination": f"/queue/{other}"})
    assert status == 200, answer
    assert (answer["redriven"], answer["destination"]) == (3, f"/queue/{other}")
    # (keyed: partitioned by key in the other topic)
    moved = sorted(read_topic(bootstrap, other), key=lambda r: r.value())
    assert [(r.key(), r.value()) for r in moved] == [(f"k{i}".encode(), f"d{i}".encode())
                                                     for i in range(3)]
    h = headers_of(moved[0])
    assert h["trace-id"] == "t0" and h["kbridge-redrive-original-topic"] == q
    assert "kbridge-delivery-count" not in h and "kbridge-dlq-reason" not in h
    assert depth(daemon, q) == 8

    # a destination outside the user's publish patterns, or no kbridge destination
    status, answer = daemon.api(dlq_path(q, "/redrive"), method="POST",
                                body={"destination": "/queue/elsewhere"}, auth=LIMITED)
    assert status == 403 and "may not publish to /queue/elsewhere" in answer["reason"]
    status, answer = daemon.api(dlq_path(q, "/redrive"), method="POST",
                                body={"destination": "/exchange/x"})
    assert status == 400 and "destination" in answer["reason"]
    status, answer = daemon.api(dlq_path(q, "/redrive"), method="POST", body={"count": -1})
    assert status == 400
    status, answer = daemon.api(dlq_path(q, "/messages?count=100000"))
    assert status == 400 and "dlq.peek_max" in answer["reason"]
    assert daemon.api(dlq_path("no-such-queue"))[0] == 404
    assert depth(daemon, q) == 8

    # discard 2 (query), then the rest (body count absent: all)
    status, answer = daemon.api(dlq_path(q, "/messages?count=2"), method="DELETE")
    assert (status, answer["discarded"]) == (200, 2)
    assert [m["payload"] for m in daemon.api(dlq_path(q, "/messages?count=1"))[1]] == ["d5"]
    status, answer = daemon.api(dlq_path(q, "/messages"), method="DELETE")
    assert (status, answer["discarded"], answer["messages_before"]) == (200, 6, 6)
    assert depth(daemon, q) == 0
    assert daemon.api(dlq_path(q, "/messages"))[1] == []
    assert metrics(daemon)["kbridge_dlq_discarded_records_total"] == 8
    assert len(read_topic(bootstrap, other)) == 3


def test_changes_need_an_administrator(daemon, bootstrap):
    q = f"dlqa.{uniq()}"
    assert daemon.api(f"/api/queues/%2F/{q}", method="PUT", body={})[0] == 201
    produce_dead_letters(bootstrap, f"{q}.DLQ", q, ["x", "y"])
    wait_for(lambda: depth(daemon, q) == 2, 30, "2 dead letters")
    for method, rest, body in (("POST", "/redrive", {}), ("DELETE", "/messages", None)):
        status, _ = daemon.http(dlq_path(q, rest), method=method, body=body)
        assert status == 401, (method, rest)
        status, answer = daemon.api(dlq_path(q, rest), method=method, body=body, auth=MONITOR)
        assert status == 403 and "administrator" in answer["reason"], (method, rest)
    assert daemon.http(dlq_path(q))[0] == 401
    # the administrator tag is not enough: the user must be allowed to consume the queue
    for method, rest, body in (("POST", "/redrive", {}), ("DELETE", "/messages", None)):
        status, answer = daemon.api(dlq_path(q, rest), method=method, body=body, auth=BLIND)
        assert status == 403, (method, rest, answer)
        assert answer["reason"].startswith(f"user blind may not consume from queue '{q}'")
    assert depth(daemon, q) == 2
    assert "kbridge_dlq_redriven_records_total" not in metrics(daemon)
    out = ctl(daemon, "dlq", "redrive", q, auth=MONITOR)
    assert out.returncode == 3 and "HTTP 403" in out.stderr
    assert depth(daemon, q) == 2


def test_kbridgectl_dlq_show_peek_redrive_discard(daemon, bootstrap):
    q = f"dlqa.{uniq()}"
    assert daemon.api(f"/api/queues/%2F/{q}", method="PUT", body={})[0] == 201
    produce_dead_letters(bootstrap, f"{q}.DLQ", q, [f"c{i}" for i in range(6)])
    wait_for(lambda: depth(daemon, q) == 6, 30, "6 dead letters")
    out = ctl(daemon, "dlq", "show", q)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"queue:     {q}", f"topic:     {q}.DLQ",
                                       f"group:     kbridge.dlq.{q}", "messages:  6"]
    out = ctl(daemon, "dlq", "peek", q, "--count", "2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["partition", "offset", "bytes", "reason", "original_topic",
                                "encoding", "payload"]
    assert len(lines) == 3
    assert lines[1].split() == ["0", "0", "2", "rejected", "by", "the", "STOMP", "client",
                                "(NACK)", q, "string", "c0"]
    out = ctl(daemon, "--json", "dlq", "peek", q, "--count", "3")
    assert out.returncode == 0, out.stderr
    assert [m["payload"] for m in json.loads(out.stdout)] == ["c0", "c1", "c2"]
    out = ctl(daemon, "dlq", "redrive", q, "--count", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"redrove 2 dead letter(s) of {q} from {q}.DLQ to original topics\n"
    out = ctl(daemon, "--json", "dlq", "redrive", q, "--count", "1", "--to", f"/queue/{q}.x")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert (answer["redriven"], answer["destination"]) == (1, f"/queue/{q}.x")
    out = ctl(daemon, "dlq", "discard", q, "--count", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"discarded 1 dead letter(s) of {q} from {q}.DLQ\n"
    out = ctl(daemon, "--json", "dlq", "discard", q)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["discarded"] == 2
    assert sorted(r.value() for r in read_topic(bootstrap, q)) == [b"c0", b"c1"]
    assert [r.value() for r in read_topic(bootstrap, f"{q}.x")] == [b"c2"]
    out = ctl(daemon, "--json", "dlq", "show", q)
    assert out.returncode == 0 and json.loads(out.stdout)["messages"] == 0
    out = ctl(daemon, "dlq", "show", "no-such-queue")
    assert out.returncode == 4
    out = ctl(daemon, "dlq", "peek", q, "--count", "x")
    assert out.returncode == 1
    out = ctl(daemon, "dlq", "discard", q, "--to", "/queue/y")
    assert out.returncode == 1


def test_kill_9_during_a_redrive_loses_nothing(kbridged_factory, bootstrap):
    # 2,000 dead letters, redriven 100 per batch with a pause between
    # batches (dlq.redrive_debug_batch_delay_ms) so the kill lands mid-way
    config = make_config(bootstrap, redrive_batch=100, redrive_debug_batch_delay_ms=300)
    daemon = kbridged_factory(config)
    q = f"dlqa.{uniq()}"
    assert daemon.api(f"/api/queues/%2F/{q}", method="PUT", body={})[0] == 201
    bodies = [f"k9-{i:04d}" for i in range(2000)]
    produce_dead_letters(bootstrap, f"{q}.DLQ", q, bodies)
    wait_for(lambda: depth(daemon, q) == 2000, 30, "2000 dead letters")

    answers = []

    def redrive():
        try:
            answers.append(daemon.http(dlq_path(q, "/redrive"), method="POST", body={},
                                       auth=ADMIN, timeout=120))
        except OSError as e:  # the connection dies with kbridged
            answers.append((None, str(e)))

    thread = threading.Thread(target=redrive, daemon=True)
    thread.start()
    wait_for(lambda: metrics(daemon).get("kbridge_dlq_redriven_records_total", 0) >= 500, 60,
             "500 dead letters redriven")
    # one redrive per queue at a time: the second names the first
    status, answer = daemon.api(dlq_path(q, "/redrive"), method="POST", body={})
    assert status == 409, answer
    assert "a redrive of queue" in answer["reason"] and ADMIN[0] in answer["reason"]
    status, answer = daemon.api(dlq_path(q, "/messages"), method="DELETE")
    assert status == 409
    running = daemon.api(dlq_path(q))[1]["running"]
    assert running["action"] == "redrive" and running["user"] == ADMIN[0]
    daemon.kill()
    thread.join(30)
    assert not answers or answers[0][0] != 200  # it never finished
    redriven_before = len(read_topic(bootstrap, q)) if topic_exists(bootstrap, q) else 0
    assert 0 < redriven_before < 2000

    daemon = kbridged_factory(config, name="restarted")
    left = depth(daemon, q)
    assert 0 < left <= 2000 - redriven_before + 100  # at most one batch not committed
    status, answer = daemon.api(dlq_path(q, "/redrive"), method="POST", body={}, timeout=120)
    assert status == 200, answer
    assert answer["redriven"] == left
    assert depth(daemon, q) == 0
    records = read_topic(bootstrap, q)
    got = [r.value().decode() for r in records]
    assert set(got) == set(bodies)  # none lost
    assert len(got) - 2000 <= 100  # duplicates: at most the batch in flight at the kill
    status, answer = daemon.api(dlq_path(q, "/redrive"), method="POST", body={})
    assert (status, answer["redriven"]) == (200, 0)


def topic_exists(bootstrap, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kbridge-test-meta"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        return meta is not None and not meta.error
    finally:
        consumer.close()
