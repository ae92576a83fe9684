# SPDX-License-Identifier: Apache-2.0
"""STOMP queues end to end (architecture §3–§5, issue 3 "Must hold"): SEND with
receipts lands in Kafka with the right key, headers and order; native Kafka
records reach STOMP subscribers; competing consumers with prefetch, ACK,
NACK, redelivery and dead-lettering; unacked messages of a subscriber that
goes away are redelivered; kill -9 loses nothing that was confirmed; two
nodes share a queue; a slow consumer keeps in-flight bounded.

Every test reads Kafka back with confluent-kafka where the claim is about
Kafka, and waits for conditions with deadlines, never for a fixed time."""

import re
import socket
import threading
import time
import uuid

import pytest
import stomp
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from conftest import EXTERNAL_BOOTSTRAP, base_config, metrics, wait_for
from stomp_util import Client

# The mock's group rebalance after a join/leave waits session.timeout.ms - 1s:
# keep it short so the tests that change membership stay quick.
SESSION_TIMEOUT_MS = 6000
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
FRAME_HEADERS = {"destination", "receipt", "content-length"}


# ---- helpers -------------------------------------------------------------------------

@pytest.fixture
def qname():
    """The queue name: `orders` on a fresh dev broker, unique on a shared cluster."""
    return f"orders-{uuid.uuid4().hex[:12]}" if EXTERNAL_BOOTSTRAP else "orders"


@pytest.fixture
def create_topic(request):
    """create_topic(name, partitions) on the test's Kafka; yields it with the
    bootstrap: (bootstrap, create_topic)."""
    if EXTERNAL_BOOTSTRAP:
        from confluent_kafka.admin import AdminClient, NewTopic

        def create(name, partitions):
            admin = AdminClient({"bootstrap.servers": EXTERNAL_BOOTSTRAP})
            for future in admin.create_topics([NewTopic(name, partitions)]).values():
                future.result(30)
        yield EXTERNAL_BOOTSTRAP, create
        return
    devkafka = request.getfixturevalue("devkafka")

    def create(name, partitions):
        assert devkafka.command(f"topic create {name} {partitions}") == "ok"
    yield devkafka.bootstrap, create


def queue_config(bootstrap, node_id="test1", **queues):
    config = base_config(bootstrap, kafka={"consumer": {"session.timeout.ms": SESSION_TIMEOUT_MS}},
                         node_id=node_id)
    if queues:
        config["queues"] = queues
    return config


def queue_metric(values_or_daemon, name, queue):
    values = values_or_daemon if isinstance(values_or_daemon, dict) else metrics(values_or_daemon)
    return values.get(f'{name}{{kind="queue",destination="{queue}"}}', 0.0)


def header_dict(kafka_headers):
    return {name: value.decode() for name, value in (kafka_headers or [])}


def read_topic(bootstrap, topic, timeout=60):
    """Every record of `topic` up to its end offsets at call time, in
    partition-then-offset order (confluent-kafka, no group commit)."""
    consumer = Consumer({"bootstrap.servers": bootstrap,
                         "group.id": f"kbridge-test-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        by_partition = {p: [] for p in ends}
        pending = set(ends)
        deadline = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, f"timed out reading {topic}: {pending} unread"
            for m in consumer.consume(1000, timeout=0.5):
                assert not m.error(), m.error()
                by_partition[m.partition()].append(m)
                if m.offset() >= ends[m.partition()] - 1:
                    pending.discard(m.partition())
        return [m for p in sorted(by_partition) for m in by_partition[p]]
    finally:
        consumer.close()


def committed_offsets(bootstrap, group, topic):
    """{partition: committed offset} of a consumer group (without joining it)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def end_offsets(bootstrap, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kbridge-test-ends"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
    finally:
        consumer.close()


def send_all(client, destination, messages, receipt_prefix=None, timeout=120):
    """SEND every (body, headers) with a receipt; wait for all the receipts."""
    prefix = receipt_prefix or f"r{uuid.uuid4().hex[:8]}-"
    wanted = {f"{prefix}{i}" for i in range(len(messages))}
    for i, (body, headers) in enumerate(messages):
        client.send(destination, body, headers=headers, receipt=f"{prefix}{i}")

    def all_receipts():
        assert not client.recorder.errors, client.recorder.errors[0].body
        return wanted <= set(client.recorder.receipts)
    wait_for(all_receipts, timeout, f"{len(wanted)} receipts", interval=0.05)


class Acker(stomp.ConnectionListener):
    """Records MESSAGE frames and ACKs each one at once (unless told not to)."""

    def __init__(self, conn, ack=True):
        self.conn = conn
        self.ack = ack
        self.lock = threading.Lock()
        self.frames = []
        self.acked_at = []  # (monotonic time, frame) after the ACK was written

    def on_message(self, frame):
        with self.lock:
            self.frames.append(frame)
        if self.ack:
            try:
                self.conn.ack(frame.headers["ack"])  # STOMP 1.2
            except Exception:
                return  # connection gone (kill -9): not acked
            with self.lock:
                self.acked_at.append((time.monotonic(), frame))

    def count(self):
        with self.lock:
            return len(self.frames)

    def bodies(self):
        with self.lock:
            return [f.body for f in self.frames]


def consumer_client(daemon, destination, sub_id="s1", ack="client-individual", prefetch=None,
                    auto_ack=True, receipt=True, prefetch_header="prefetch-count"):
    client = Client(daemon)
    acker = Acker(client.conn, ack=auto_ack and ack != "auto")
    client.conn.set_listener("acker", acker)
    headers = {prefetch_header: str(prefetch)} if prefetch is not None else {}
    client.subscribe(destination, sub_id, ack=ack, headers=headers,
                     receipt=f"sub-{uuid.uuid4().hex[:8]}" if receipt else None)
    return client, acker


def wait_settled(daemon, queue, acked, timeout=60):
    """Until the queue has nothing in flight on this node and `acked` ACKs
    were counted: nothing more can be delivered without a new publish."""
    def settled():
        m = metrics(daemon)
        return (queue_metric(m, "kbridge_destination_acked_total", queue) >= acked and
                queue_metric(m, "kbridge_destination_in_flight", queue) == 0)
    wait_for(settled, timeout, f"{acked} acks and nothing in flight on {queue}", interval=0.1)


# ---- 1. SEND -> Kafka ----------------------------------------------------------------

def test_10000_sends_with_receipts_are_in_kafka_in_key_order_with_headers(
        kbridged_factory, bootstrap, qname):
    daemon = kbridged_factory(queue_config(bootstrap))
    client = Client(daemon)
    keys = [f"customer-{k}" for k in range(20)]
    sent = {}  # seq -> (body, headers)
    messages = []
    for seq in range(10000):
        headers = {"kafka-key": keys[seq % 20], "seq": str(seq)}
        if seq % 3 == 0:
            headers["content-type"] = "application/json"
        if seq % 7 == 0:
            headers["message-id"] = f"client-id-{seq}"
        body = f'{{"order": {seq}, "item": "caf\u00e9 \u2615 #{seq}"}}'
        sent[seq] = (body.encode(), headers)
        messages.append((body, headers))
    started = time.monotonic()
    send_all(client, f"/queue/{qname}", messages)
    print(f"\n10000 SENDs confirmed in {time.monotonic() - started:.1f}s")
    client.close()

    records = read_topic(bootstrap, qname)
    assert len(records) == 10000
    last_seq = {}
    seen = set()
    for r in records:
        h = header_dict(r.headers())
        seq = int(h["seq"])
        assert seq not in seen
        seen.add(seq)
        body, headers = sent[seq]
        assert r.value() == body
        assert r.key() == headers["kafka-key"].encode()
        assert h["kafka-key"] == headers["kafka-key"]
        if "content-type" in headers:
            assert h["content-type"] == "application/json"
        else:
            assert "content-type" not in h
        if "message-id" in headers:
            assert h["message-id"] == headers["message-id"]
        else:
            assert UUID.fullmatch(h["message-id"]), h["message-id"]
        assert not FRAME_HEADERS & set(h), h
        assert [n for n, _ in r.headers()].count("message-id") == 1
        # per-key order: records of one key share a partition, read in offset order
        key = headers["kafka-key"]
        assert seq > last_seq.get(key, -1), f"key {key}: seq {seq} after {last_seq[key]}"
        last_seq[key] = seq
    assert seen == set(range(10000))
    generated = {header_dict(r.headers())["message-id"] for r in records
                 if "message-id" not in sent[int(header_dict(r.headers())["seq"])][1]}
    assert len(generated) == 10000 - len(range(0, 10000, 7))  # all distinct


# ---- 2. native Kafka -> STOMP --------------------------------------------------------

def test_records_of_a_native_producer_reach_a_stomp_subscriber_with_headers(
        kbridged_factory, bootstrap, qname):
    daemon = kbridged_factory(queue_config(bootstrap))
    client, acker = consumer_client(daemon, f"/queue/{qname}", ack="client-individual")

    producer = Producer({"bootstrap.servers": bootstrap})
    delivered = {}

    def report(err, msg):
        assert err is None, err
        delivered[msg.value()] = (msg.partition(), msg.offset())
    for i in range(200):
        headers = [("trace-id", f"trace-{i}".encode()), ("content-type", b"text/plain"),
                   ("x-unicode", "gr\u00fc\u00df".encode())]
        if i % 2 == 0:
            headers.append(("message-id", f"native-{i}".encode()))
        producer.produce(qname, key=f"k{i % 5}".encode(), value=f"native body {i}".encode(),
                         headers=headers, on_delivery=report)
    assert producer.flush(30) == 0

    wait_for(lambda: acker.count() >= 200, 60, "200 MESSAGEs")
    wait_settled(daemon, qname, 200)
    frames = acker.frames
    assert len(frames) == 200
    by_body = {f.body: f for f in frames}
    assert len(by_body) == 200
    last = {}
    for f in frames:
        i = int(f.body.rsplit(" ", 1)[1])
        assert f.body == f"native body {i}"
        h = f.headers
        assert h["destination"] == f"/queue/{qname}"
        assert h["trace-id"] == f"trace-{i}"
        assert h["content-type"] == "text/plain"
        assert h["x-unicode"] == "gr\u00fc\u00df"
        partition, offset = delivered[f.body.encode()]
        if i % 2 == 0:
            assert h["message-id"] == f"native-{i}"
        else:  # no message-id in the record: TOPIC-PARTITION-OFFSET
            assert h["message-id"] == f"{qname}-{partition}-{offset}"
        assert h["x-delivery-count"] == "1" and h["redelivered"] == "false"
        # records of one key are delivered in their Kafka order
        key = i % 5
        assert i > last.get(key, -1)
        last[key] = i
    client.close()


# ---- 3. competing consumers ----------------------------------------------------------

def test_three_client_individual_subscribers_with_prefetch_10_share_the_queue(
        kbridged_factory, bootstrap, qname):
    daemon = kbridged_factory(queue_config(bootstrap))
    # RabbitMQ's and ActiveMQ's spellings of the prefetch
    subscribers = [consumer_client(daemon, f"/queue/{qname}", sub_id=f"s{i}", prefetch=10,
                                   prefetch_header=header)
                   for i, header in enumerate(["prefetch-count", "prefetch-count",
                                               "activemq.prefetchSize"])]
    wait_for(lambda: queue_metric(daemon, "kbridge_destination_consumers", qname) == 3, 10,
             "3 consumers in /metrics")

    publisher = Client(daemon)
    send_all(publisher, f"/queue/{qname}", [(f"job {i}", {"kafka-key": f"k{i % 16}"})
                                              for i in range(3000)])
    wait_for(lambda: sum(a.count() for _, a in subscribers) >= 3000, 60, "3000 deliveries")
    wait_settled(daemon, qname, 3000)

    everything = [b for _, a in subscribers for b in a.bodies()]
    assert len(everything) == 3000, "a message was delivered twice"
    assert set(everything) == {f"job {i}" for i in range(3000)}
    shares = [a.count() for _, a in subscribers]
    print(f"\nshares of 3000 among 3 subscribers: {shares}")
    for share in shares:
        assert share > 3000 * 0.10, shares
    for _, a in subscribers:
        assert all(f.headers["x-delivery-count"] == "1" for f in a.frames)
    assert queue_metric(daemon, "kbridge_destination_redelivered_total", qname) == 0
    for client, _ in subscribers:
        client.close()
    publisher.close()


def test_prefetch_bounds_unacked_deliveries(kbridged_factory, bootstrap, qname):
    daemon = kbridged_factory(queue_config(bootstrap))
    holder, holder_acker = consumer_client(daemon, f"/queue/{qname}", prefetch=10,
                                           auto_ack=False)
    publisher = Client(daemon)
    send_all(publisher, f"/queue/{qname}", [(f"m{i}", {}) for i in range(30)])
    wait_for(lambda: holder_acker.count() >= 10, 30, "10 deliveries to the holder")
    # the other 20 go to a second subscriber, while the first holds its 10
    other, other_acker = consumer_client(daemon, f"/queue/{qname}", sub_id="s2", prefetch=100)
    wait_for(lambda: other_acker.count() >= 20, 30, "20 deliveries to the other subscriber")
    wait_for(lambda: queue_metric(daemon, "kbridge_destination_acked_total", qname) == 20, 10,
             "20 acks")
    assert holder_acker.count() == 10
    assert queue_metric(daemon, "kbridge_destination_in_flight", qname) == 10
    assert set(holder_acker.bodies()) | set(other_acker.bodies()) == {f"m{i}" for i in range(30)}
    for c in (holder, other, publisher):
        c.close()


# ---- 4. NACK, redelivery, dead letters -----------------------------------------------

def test_nack_redelivers_then_dead_letters_after_max_deliveries(
        kbridged_factory, bootstrap, qname):
    daemon = kbridged_factory(queue_config(bootstrap, max_deliveries=3))
    # a binary key and a body with every byte value STOMP can carry in UTF-8 text
    key = b"\x00key\xff\x01"
    body = "payload \u00e9\u20ac\U0001F600 \x00 with NUL and \\ and : and \n newline".encode()
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(qname, key=key, value=body,
                     headers=[("trace-id", b"t-1"), ("message-id", b"poison-1")])
    assert producer.flush(30) == 0
    original = read_topic(bootstrap, qname)
    assert len(original) == 1
    original = original[0]

    client = Client(daemon)
    client.subscribe(f"/queue/{qname}", "s1", ack="client-individual", receipt="sub")
    deliveries = []
    for count in (1, 2, 3):
        frame = client.wait_messages(count)[count - 1]
        deliveries.append(frame)
        assert frame.body == body.decode()
        assert frame.headers["message-id"] == "poison-1"
        assert frame.headers["trace-id"] == "t-1"
        assert frame.headers["x-delivery-count"] == str(count)
        if count == 1:
            assert frame.headers["redelivered"] == "false"
        else:
            assert frame.headers["redelivered"] == "true"
        assert frame.headers["ack"] not in [d.headers["ack"] for d in deliveries[:-1]]
        client.nack(frame)
    # the third NACK reached max_deliveries: dead-lettered, confirmed in Kafka
    wait_for(lambda: queue_metric(daemon, "kbridge_destination_dead_lettered_total", qname) == 1,
             30, "dead_lettered_total 1")
    wait_for(lambda: queue_metric(daemon, "kbridge_destination_in_flight", qname) == 0, 10,
             "in_flight 0")
    assert len(client.recorder.messages) == 3
    m = metrics(daemon)
    assert queue_metric(m, "kbridge_destination_nacked_total", qname) == 3
    assert queue_metric(m, "kbridge_destination_redelivered_total", qname) == 2
    assert queue_metric(m, "kbridge_destination_delivered_total", qname) == 3
    dead = read_topic(bootstrap, f"{qname}.DLQ")
    assert len(dead) == 1
    dead = dead[0]
    assert dead.key() == key
    assert dead.value() == body
    h = header_dict(dead.headers())
    assert h["trace-id"] == "t-1" and h["message-id"] == "poison-1"
    assert h["kbridge-dlq-reason"] == "delivered 3 times (max_deliveries)"
    assert h["kbridge-dlq-original-topic"] == qname
    assert h["kbridge-dlq-original-partition"] == str(original.partition())
    assert h["kbridge-dlq-original-offset"] == str(original.offset())
    assert h["kbridge-delivery-count"] == "3"
    now_ms = time.time() * 1000
    assert now_ms - 60000 < int(h["kbridge-dlq-time"]) <= now_ms + 1000
    client.close()


def test_dead_letters_are_committed_before_the_queue_leaves_its_group(
        kbridged_factory, bootstrap, qname):
    """NACK requeue:false five messages and UNSUBSCRIBE at once with
    queues.linger 0s: the queue leaves its group only once the dead-letter
    produces are confirmed, so its committed offsets pass all five (none is
    dead-lettered again by the next member)."""
    daemon = kbridged_factory(queue_config(bootstrap, linger="0s"))
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(5):
        producer.produce(qname, value=f"bad{i}".encode(), partition=0)
    assert producer.flush(30) == 0
    client = Client(daemon)
    client.subscribe(f"/queue/{qname}", "s1", ack="client-individual", receipt="sub")
    for frame in client.wait_messages(5):
        client.nack(frame, requeue=False)
    client.conn.unsubscribe(id="s1", headers={"receipt": "unsub"})
    client.wait_receipt("unsub")
    wait_for(lambda: committed_offsets(bootstrap, f"kbridge.q.{qname}", qname).get(0) == 5, 30,
             "the group's committed offset past the five dead letters")
    assert sorted(r.value() for r in read_topic(bootstrap, f"{qname}.DLQ")) == \
        [f"bad{i}".encode() for i in range(5)]
    client.close()


def test_nack_requeue_false_dead_letters_at_once(kbridged_factory, bootstrap, qname):
    daemon = kbridged_factory(queue_config(bootstrap, max_deliveries=3))
    client = Client(daemon)
    client.subscribe(f"/queue/{qname}", "s1", ack="client-individual", receipt="sub")
    send_all(client, f"/queue/{qname}", [("reject me", {"kafka-key": "r1"}),
                                          ("keep me", {"kafka-key": "r2"})])
    frames = client.wait_messages(2)
    by_body = {f.body: f for f in frames}
    # stomp.py's nack takes extra headers as keywords
    client.conn.nack(by_body["reject me"].headers["ack"], requeue="false")
    client.ack(by_body["keep me"])
    wait_for(lambda: queue_metric(daemon, "kbridge_destination_dead_lettered_total", qname) == 1,
             30, "dead_lettered_total 1")
    wait_settled(daemon, qname, 1)
    assert len(client.recorder.messages) == 2  # no redelivery
    original = {r.value(): r for r in read_topic(bootstrap, qname)}[b"reject me"]
    dead = read_topic(bootstrap, f"{qname}.DLQ")
    assert [(r.key(), r.value()) for r in dead] == [(b"r1", b"reject me")]
    h = header_dict(dead[0].headers())
    assert h["kbridge-dlq-reason"] == "rejected by the STOMP client (NACK)"
    assert h["kbridge-delivery-count"] == "1"
    assert h["kbridge-dlq-original-partition"] == str(original.partition())
    assert h["kbridge-dlq-original-offset"] == str(original.offset())
    assert h["kafka-key"] == "r1"
    client.close()


@pytest.mark.parametrize("section", ["stomp", "queues"])
def test_nack_without_requeue_follows_stomp_nack_requeue(kbridged_factory, bootstrap, qname,
                                                          section):
    # stomp.nack_requeue: false (or its former spelling queues.nack_requeue):
    # a NACK without a requeue header dead-letters at once.
    config = queue_config(bootstrap, max_deliveries=3)
    config.setdefault(section, {})["nack_requeue"] = False
    daemon = kbridged_factory(config)
    deprecated = "queues.nack_requeue is deprecated; write stomp.nack_requeue instead"
    assert (deprecated in daemon.log()) == (section == "queues"), daemon.log()
    client = Client(daemon)
    client.subscribe(f"/queue/{qname}", "s1", ack="client-individual", receipt="sub")
    send_all(client, f"/queue/{qname}", [("reject me", {"kafka-key": "r1"})])
    frame = client.wait_messages(1)[0]
    client.conn.nack(frame.headers["ack"])
    wait_for(lambda: queue_metric(daemon, "kbridge_destination_dead_lettered_total", qname) == 1,
             30, "dead_lettered_total 1")
    wait_for(lambda: queue_metric(daemon, "kbridge_destination_in_flight", qname) == 0, 10,
             "in_flight 0")
    assert queue_metric(daemon, "kbridge_destination_redelivered_total", qname) == 0
    assert len(client.recorder.messages) == 1  # no redelivery
    dead = read_topic(bootstrap, f"{qname}.DLQ")
    assert [(r.key(), r.value()) for r in dead] == [(b"r1", b"reject me")]
    client.close()


# ---- 5. a subscriber that goes away --------------------------------------------------

@pytest.mark.parametrize("how", ["disconnect", "socket-close"])
def test_unacked_messages_of_a_departed_subscriber_go_to_another(
        kbridged_factory, bootstrap, qname, how):
    daemon = kbridged_factory(queue_config(bootstrap))
    leaver, leaver_acker = consumer_client(daemon, f"/queue/{qname}", prefetch=10,
                                           auto_ack=False)
    publisher = Client(daemon)
    send_all(publisher, f"/queue/{qname}", [(f"m{i}", {}) for i in range(10)])
    wait_for(lambda: leaver_acker.count() >= 10, 30, "10 deliveries to the first subscriber")
    held = set(leaver_acker.bodies())
    assert held == {f"m{i}" for i in range(10)}
    # a second subscriber gets nothing while the first holds everything
    stayer, stayer_acker = consumer_client(daemon, f"/queue/{qname}", sub_id="s2", prefetch=100)
    assert stayer_acker.count() == 0
    if how == "disconnect":
        leaver.conn.disconnect()
    else:  # the client dies: the socket just closes
        sock = leaver.conn.transport.socket
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    wait_for(lambda: stayer_acker.count() >= 10, 30, "10 redeliveries to the second subscriber")
    wait_settled(daemon, qname, 10)
    frames = stayer_acker.frames
    assert sorted(f.body for f in frames) == sorted(held)
    for f in frames:
        assert f.headers["redelivered"] == "true"
        assert f.headers["x-delivery-count"] == "2"
    assert queue_metric(daemon, "kbridge_destination_redelivered_total", qname) == 10
    stayer.close()
    publisher.close()


# ---- ack modes and errors ------------------------------------------------------------

def test_client_ack_mode_is_cumulative(kbridged_factory, bootstrap, qname):
    daemon = kbridged_factory(queue_config(bootstrap))
    client, acker = consumer_client(daemon, f"/queue/{qname}", ack="client", prefetch=50,
                                    auto_ack=False)
    publisher = Client(daemon)
    send_all(publisher, f"/queue/{qname}", [(f"m{i}", {"kafka-key": "one"}) for i in range(20)])
    wait_for(lambda: acker.count() >= 20, 30, "20 deliveries")
    frames = acker.frames
    assert [f.body for f in frames] == [f"m{i}" for i in range(20)]  # one key: one partition
    client.conn.ack(frames[14].headers["ack"])  # settles m0..m14
    wait_for(lambda: queue_metric(daemon, "kbridge_destination_acked_total", qname) == 15, 10,
             "15 acks")
    assert queue_metric(daemon, "kbridge_destination_in_flight", qname) == 5
    # the acknowledged ones are gone: acking one again is an error
    client.conn.ack(frames[19].headers["ack"])
    wait_settled(daemon, qname, 20)
    client.conn.ack(frames[3].headers["ack"])
    error = client.wait_error()
    assert error.headers["message"] == "Message not found"  # RabbitMQ's text
    assert error.body.startswith(f"unknown ack id '{frames[3].headers['ack']}'\n")
    assert "not an unacknowledged message of this connection" in error.body
    wait_for(client.recorder.disconnected.is_set, 10, "the connection to close")
    assert len(acker.frames) == 20
    publisher.close()


def test_ack_of_an_unknown_id_is_an_error_and_closes(kbridged_factory, bootstrap, qname):
    daemon = kbridged_factory(queue_config(bootstrap))
    client = Client(daemon)
    client.subscribe(f"/queue/{qname}", "s1", ack="client-individual", receipt="sub")
    client.conn.ack("S1-999")
    error = client.wait_error()
    assert error.headers["message"] == "Message not found"  # RabbitMQ's text
    assert error.body.startswith("unknown ack id 'S1-999'\n")
    wait_for(client.recorder.disconnected.is_set, 10, "the connection to close")
    # the daemon carries on
    other = Client(daemon)
    send_all(other, f"/queue/{qname}", [("still here", {})])
    other.close()


# ---- 6. kill -9 ----------------------------------------------------------------------

def test_kill_9_loses_nothing_confirmed_and_redelivers_what_was_not_acked(
        kbridged_factory, devkafka, qname):
    """Kafka (the dev broker) outlives kbridged: kill -9 it while a publisher
    and a consumer are busy, restart it, and account for every message."""
    prefetch, window = 20, 200
    config = queue_config(devkafka.bootstrap)
    first = kbridged_factory(config, name="before-kill")
    consumer, acker = consumer_client(first, f"/queue/{qname}", prefetch=prefetch)
    first.wait_log(rf"consumer kbridge\.q\.{re.escape(qname)}: assigned [1-9]", timeout=30)
    publisher = Client(first)
    sent = []

    def publish():  # at most `window` SENDs unconfirmed, like a careful client
        try:
            for i in range(1000000):
                while len(sent) - len(publisher.recorder.receipts) >= window:
                    if publisher.recorder.disconnected.wait(0.001):
                        return
                publisher.send(f"/queue/{qname}", f"m{i}", headers={"kafka-key": f"k{i % 8}"},
                               receipt=f"r{i}")
                sent.append(i)
        except Exception:
            pass  # the daemon is gone
    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    # The group commits once a second from its assignment, and acks start at
    # a fixed delay after it: kill in the middle of a commit interval.
    wait_for(lambda: acker.acked_at and acker.acked_at[-1][0] - acker.acked_at[0][0] >= 5.5, 60,
             "5.5 s of acks before the kill", interval=0.01)
    first.kill()
    killed_at = time.monotonic()
    thread.join(30)
    assert not thread.is_alive()
    wait_for(lambda: publisher.recorder.disconnected.is_set() and
             consumer.recorder.disconnected.is_set(), 10, "the clients to see the kill")
    confirmed = {f"m{r[1:]}" for r in publisher.recorder.receipts}
    with acker.lock:
        acked = [(t, f.body) for t, f in acker.acked_at]
    acked_bodies = {body for _, body in acked}
    assert len(acked_bodies) == len(acked)

    # every SEND that got a RECEIPT is in Kafka, once
    records = read_topic(devkafka.bootstrap, qname)
    stored = [r.value().decode() for r in records]
    assert len(stored) == len(set(stored))
    assert confirmed <= set(stored), f"{len(confirmed - set(stored))} confirmed SENDs lost"
    assert acked_bodies <= set(stored)

    # The group resumes at its committed offsets: what lies at or above them
    # comes again. That must hold every unacked message (nothing skipped),
    # and the acked ones among it are those acked after the last commit.
    group = f"kbridge.q.{qname}"
    committed = committed_offsets(devkafka.bootstrap, group, qname)
    comes_again = {r.value().decode() for r in records
                   if r.offset() >= max(committed.get(r.partition(), 0), 0)}
    unacked = set(stored) - acked_bodies
    assert unacked <= comes_again, f"{len(unacked - comes_again)} unacked messages skipped"
    duplicates = comes_again & acked_bodies

    second = kbridged_factory(config, name="after-restart")
    consumer2, acker2 = consumer_client(second, f"/queue/{qname}", prefetch=prefetch)
    wait_for(lambda: len(acker2.acked_at) >= len(comes_again), 90,
             f"{len(comes_again)} messages delivered after the restart", interval=0.1)
    ends = end_offsets(devkafka.bootstrap, qname)
    wait_for(lambda: committed_offsets(devkafka.bootstrap, group, qname) == ends, 30,
             f"group {group} committed up to the end {ends}", interval=0.2)
    wait_settled(second, qname, len(comes_again))
    again = acker2.bodies()
    assert len(again) == len(set(again)), "a message was delivered twice after the restart"
    assert set(again) == comes_again

    # bound: what was acked in the last commit interval (1 s, daemon/kafka.c)
    # plus 0.5 s for ACK frames still on their way, plus one prefetch window
    last_second = sum(1 for t, _ in acked if t >= killed_at - 1.0)
    window_acks = sum(1 for t, _ in acked if t >= killed_at - 1.5)
    bound = window_acks + prefetch
    print(f"\nkill -9: {len(sent)} sent, {len(confirmed)} confirmed, {len(stored)} in Kafka, "
          f"{len(acked)} acked before the kill, {len(unacked)} not acked (all delivered again); "
          f"{len(duplicates)} acked ones delivered again (acks in the last 1 s: {last_second}, "
          f"1.5 s: {window_acks}; bound {bound})")
    assert len(duplicates) <= bound
    consumer2.close()


# ---- 7. two nodes --------------------------------------------------------------------

def last_assignment(daemon, group):
    """Partitions the node's consumer of `group` holds per its log (None: never assigned)."""
    events = re.findall(rf"consumer {re.escape(group)}: (assigned|revoked) (\d+) partition",
                        daemon.log())
    if not events:
        return None
    kind, count = events[-1]
    return int(count) if kind == "assigned" else 0


def test_two_nodes_share_a_queue_and_a_node_without_subscribers_takes_no_partitions(
        kbridged_factory, create_topic, qname):
    bootstrap, create = create_topic
    create(qname, 4)
    group = f"kbridge.q.{qname}"
    destination = f"/queue/{qname}"
    a = kbridged_factory(queue_config(bootstrap, node_id="node-a"), name="node-a")
    # B leaves the group 2 s after its last subscriber (queues.linger, 30 s by default)
    b = kbridged_factory(queue_config(bootstrap, node_id="node-b", linger="2s"), name="node-b")

    # A has the only subscriber; B only publishes: B never joins the group
    client_a, acker_a = consumer_client(a, destination, prefetch=50)
    publisher_b = Client(b)
    send_all(publisher_b, destination,
             [(f"one-{i}", {"kafka-key": f"k{i % 16}"}) for i in range(1000)])
    wait_for(lambda: acker_a.count() >= 1000, 60, "1000 messages on node A")
    wait_settled(a, qname, 1000)
    assert sorted(acker_a.bodies()) == sorted(f"one-{i}" for i in range(1000))
    partitions = len(end_offsets(bootstrap, qname))
    assert last_assignment(a, group) == partitions
    assert "joining the group" not in b.log() and last_assignment(b, group) is None
    assert queue_metric(b, "kbridge_destination_consumers", qname) == 0
    assert queue_metric(b, "kbridge_destination_in_flight", qname) == 0
    # Acks are committed once a second. A rebalance hands uncommitted ones to
    # the new owner again (at-least-once; librdkafka's mock, unlike Kafka,
    # even refuses commits while the group rebalances): start the next phase
    # from a committed state so that exactly-once delivery can be asserted.
    ends = end_offsets(bootstrap, qname)
    wait_for(lambda: committed_offsets(bootstrap, group, qname) == ends, 30,
             f"{group} committed up to {ends}", interval=0.2)

    # a subscriber on B too: the group splits the partitions between the nodes
    client_b, acker_b = consumer_client(b, destination, prefetch=50)
    wait_for(lambda: (last_assignment(a, group) or 0) > 0 and (last_assignment(b, group) or 0) > 0
             and last_assignment(a, group) + last_assignment(b, group) == partitions, 60,
             "both nodes holding partitions")
    split = (last_assignment(a, group), last_assignment(b, group))
    before_a = acker_a.count()
    publisher_a = Client(a)
    send_all(publisher_a, destination,
             [(f"two-{i}", {"kafka-key": f"k{i % 16}"}) for i in range(2000)])
    wait_for(lambda: acker_a.count() - before_a + acker_b.count() >= 2000, 60,
             "2000 messages on the two nodes")
    wait_settled(a, qname, 1000 + acker_a.count() - before_a)
    wait_settled(b, qname, acker_b.count())
    got_a, got_b = acker_a.bodies()[before_a:], acker_b.bodies()
    print(f"\npartitions A/B {split}; messages A/B {len(got_a)}/{len(got_b)}")
    assert got_a and got_b
    assert len(got_a) + len(got_b) == 2000, "a message was delivered twice"
    assert set(got_a) | set(got_b) == {f"two-{i}" for i in range(2000)}

    # B's last subscriber goes: B leaves the group, A takes every partition
    ends = end_offsets(bootstrap, qname)
    wait_for(lambda: committed_offsets(bootstrap, group, qname) == ends, 30,
             f"{group} committed up to {ends}", interval=0.2)
    client_b.close()
    b.wait_log(rf"{re.escape(group)}: leaving the group", timeout=30)
    wait_for(lambda: last_assignment(a, group) == partitions, 60, "A holding every partition")
    before_a = acker_a.count()
    send_all(publisher_b, destination, [(f"three-{i}", {}) for i in range(300)])
    wait_for(lambda: acker_a.count() - before_a >= 300, 60, "300 more messages on node A")
    assert sorted(acker_a.bodies()[before_a:]) == sorted(f"three-{i}" for i in range(300))
    assert acker_b.count() == len(got_b)
    for c in (client_a, publisher_a, publisher_b):
        c.close()


# ---- 8. a slow consumer and flow control ---------------------------------------------

class MetricsWatcher(threading.Thread):
    """Polls a queue's in-flight and paused-partition gauges until stopped."""

    def __init__(self, daemon, queue):
        super().__init__(daemon=True)
        self.kbridged, self.queue = daemon, queue
        self.stop_event = threading.Event()
        self.max_in_flight = 0.0
        self.paused_seen = False
        self.resumed_after_pause = False  # paused, then 0 paused partitions again
        self.samples = 0

    def run(self):
        while not self.stop_event.is_set():
            m = metrics(self.kbridged)
            in_flight = queue_metric(m, "kbridge_destination_in_flight", self.queue)
            paused = queue_metric(m, "kbridge_destination_paused_partitions", self.queue)
            self.max_in_flight = max(self.max_in_flight, in_flight)
            if paused > 0:
                self.paused_seen = True
            elif self.paused_seen:
                self.resumed_after_pause = True
            self.samples += 1
            self.stop_event.wait(0.005)

    def stop(self):
        self.stop_event.set()
        self.join(10)


class SlowAcker(Acker):
    """ACKs the first `slow` messages one every `pause` seconds, then at once."""

    def __init__(self, conn, slow, pause):
        super().__init__(conn, ack=True)
        self.slow, self.pause = slow, pause

    def on_message(self, frame):
        if self.count() < self.slow:
            time.sleep(self.pause)
        super().on_message(frame)


def test_slow_consumer_keeps_in_flight_bounded_and_gets_all_100000(
        kbridged_factory, create_topic, qname):
    bootstrap, create = create_topic
    total, max_in_flight = 100000, 1000
    create(qname, 8)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i in range(total):
        while True:
            try:
                producer.produce(qname, value=b"m%06d" % i)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(60) == 0
    assert sum(end_offsets(bootstrap, qname).values()) == total

    daemon = kbridged_factory(queue_config(bootstrap, max_in_flight=max_in_flight))
    watcher = MetricsWatcher(daemon, qname)
    watcher.start()
    client = Client(daemon)
    acker = SlowAcker(client.conn, slow=100, pause=0.02)
    client.conn.set_listener("acker", acker)
    started = time.monotonic()
    client.subscribe(f"/queue/{qname}", "slow", ack="client-individual",
                     headers={"prefetch-count": "100"}, receipt="sub")
    wait_for(lambda: len(acker.acked_at) >= total, 150,
             f"{total} messages acked (have {len(acker.acked_at)})", interval=0.2)
    wait_settled(daemon, qname, total)
    elapsed = time.monotonic() - started
    wait_for(lambda: watcher.resumed_after_pause, 10, "paused partitions back to 0")
    watcher.stop()
    m = metrics(daemon)
    print(f"\n{total} messages in {elapsed:.1f}s; max in-flight seen {watcher.max_in_flight:.0f} "
          f"(limit {max_in_flight}) over {watcher.samples} samples")
    assert watcher.paused_seen, "no partition was ever paused"
    assert queue_metric(m, "kbridge_destination_paused_partitions", qname) == 0
    assert watcher.max_in_flight <= max_in_flight
    bodies = acker.bodies()
    assert len(bodies) == total, f"{len(bodies) - len(set(bodies))} delivered twice"
    assert set(bodies) == {"m%06d" % i for i in range(total)}
    assert "pausing fetching" in daemon.log() and "resuming fetching" in daemon.log()
    client.close()
