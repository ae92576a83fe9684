# SPDX-License-Identifier: Apache-2.0
"""Request-reply across protocols and nodes (issue 5 "Must hold", architecture §7):
requesters over STOMP (reply-to:/temp-queue/NAME), AMQP (a dynamic receiver)
and native Kafka (kafka_replyTopic + kafka_correlationId, as Spring's
ReplyingKafkaTemplate sends them); responders over STOMP, AMQP and native
Kafka (copying only kafka_correlationId back, as Spring's @SendTo does).
Every pairing gets every reply with its own correlation-id and body, none
crossed; replies reach the requester's node; forged tokens, replies to a
requester that left and expired requests are dropped and counted."""

import threading
import time
import uuid

import pytest
import stomp
from confluent_kafka import Consumer, Producer
from proton import Message
from proton.handlers import MessagingHandler
from proton.utils import BlockingConnection

from amqp_client import amqp_url, body_of, connect, run_in_thread
from conftest import EXTERNAL_BOOTSTRAP, base_config, wait_for
from stomp_util import Client
from test_stomp_queues import SESSION_TIMEOUT_MS, metrics, read_topic

COUNT = 1000
KINDS = ("stomp", "amqp", "native")


def config_for(bootstrap, node_id="test1"):
    return base_config(bootstrap, node_id=node_id,
                       kafka={"consumer": {"session.timeout.ms": SESSION_TIMEOUT_MS}})


@pytest.fixture
def prefix():
    return f"rr{uuid.uuid4().hex[:8]}." if EXTERNAL_BOOTSTRAP else "rr."


def header_text(headers, name):
    for key, value in headers or []:
        if key == name:
            return value.decode()
    return None


# ---- responders ------------------------------------------------------------------------------

class StompResponder(stomp.ConnectionListener):
    """Answers every request on a queue: body "re:" + body, same correlation-id."""

    def __init__(self, daemon, queue):
        self.conn = stomp.Connection12([daemon.host_port("stomp")])
        self.conn.set_listener("responder", self)
        self.conn.connect(wait=True)
        self.held = []
        self.hold = False
        self.answered = 0
        self.conn.subscribe(f"/queue/{queue}", id="requests", ack="auto")

    def on_message(self, frame):
        if self.hold:
            self.held.append(frame)
            return
        self.answer(frame)

    def answer(self, frame):
        headers = {}
        if "correlation-id" in frame.headers:
            headers["correlation-id"] = frame.headers["correlation-id"]
        self.conn.send(frame.headers["reply-to"], "re:" + frame.body, headers=headers)
        self.answered += 1

    def close(self):
        self.conn.disconnect()


class AmqpResponder(MessagingHandler):
    def __init__(self, url, queue):
        super().__init__(auto_accept=True)
        self.url, self.queue = url, queue
        self.sender = None
        self.ready = threading.Event()
        self.answered = 0

    def on_start(self, event):
        conn = event.container.connect(self.url, allowed_mechs="ANONYMOUS")
        event.container.create_receiver(conn, self.queue)
        self.sender = event.container.create_sender(conn, None)  # the anonymous relay

    def on_link_opened(self, event):
        if event.receiver:
            self.ready.set()

    def on_message(self, event):
        request = event.message
        self.sender.send(Message(address=request.reply_to, body=b"re:" + body_of(request),
                                 correlation_id=request.correlation_id))
        self.answered += 1


class NativeResponder:
    """A Spring-@SendTo-like service: reply to kafka_replyTopic with only
    kafka_correlationId copied back."""

    def __init__(self, bootstrap, topic):
        self.stop = threading.Event()
        self.consumer = Consumer({"bootstrap.servers": bootstrap,
                                  "group.id": f"native-responder-{uuid.uuid4().hex}",
                                  "auto.offset.reset": "earliest"})
        self.consumer.subscribe([topic])
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
        self.answered = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            for record in self.consumer.consume(500, timeout=0.2):
                if record.error():
                    continue
                headers = record.headers() or []
                reply_topic = header_text(headers, "kafka_replyTopic")
                correlation = [v for k, v in headers if k == "kafka_correlationId"]
                if not reply_topic or not correlation:
                    continue
                self.producer.produce(reply_topic, value=b"re:" + record.value(),
                                      headers=[("kafka_correlationId", correlation[0])])
                self.answered += 1
            self.producer.poll(0)
        self.producer.flush(10)
        self.consumer.close()

    def close(self):
        self.stop.set()
        self.thread.join(30)


# ---- requesters: each returns {correlation-id: reply body} ------------------------------------------

def stomp_requests(daemon, queue, tag, count):
    client = Client(daemon)
    for i in range(count):
        client.send(f"/queue/{queue}", f"{tag}-{i}",
                    headers={"reply-to": f"/temp-queue/{tag}", "correlation-id": f"{tag}-{i}"})
    frames = client.wait_messages(count, timeout=120)
    client.close()
    for frame in frames:
        assert frame.headers["destination"] == f"/temp-queue/{tag}"
        assert not any(k.startswith(("kbridge-", "kafka_")) for k in frame.headers)
    return {f.headers.get("correlation-id"): f.body for f in frames}


def amqp_requests(daemon, queue, tag, count):
    conn = connect(daemon, timeout=120)
    replies = conn.create_receiver(None, dynamic=True, credit=200)
    address = replies.link.remote_source.address
    sender = conn.create_sender(queue)
    for i in range(count):
        sender.send(Message(body=f"{tag}-{i}".encode(), reply_to=address,
                            correlation_id=f"{tag}-{i}"))
    got = {}
    deadline = time.monotonic() + 120
    while len(got) < count:
        assert time.monotonic() < deadline, f"{tag}: {len(got)} of {count} replies"
        message = replies.receive(timeout=max(0.1, deadline - time.monotonic()))
        replies.accept()
        got[message.correlation_id] = body_of(message).decode()
    conn.close()
    return got


def native_requests(bootstrap, queue, tag, count, prefix):
    reply_topic = f"{prefix}native-replies-{tag}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"requester-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([reply_topic])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    for i in range(count):
        producer.produce(queue, value=f"{tag}-{i}".encode(),
                         headers=[("kafka_replyTopic", reply_topic.encode()),
                                  ("kafka_correlationId", f"{tag}-{i}".encode())])
    assert producer.flush(30) == 0
    got = {}
    deadline = time.monotonic() + 120
    while len(got) < count:
        assert time.monotonic() < deadline, f"{tag}: {len(got)} of {count} replies"
        for record in consumer.consume(500, timeout=0.2):
            if not record.error():
                got[header_text(record.headers(), "kafka_correlationId")] = record.value().decode()
    consumer.close()
    return got


# ---- the 3 x 3 matrix ----------------------------------------------------------------------------------

def test_every_requester_gets_every_reply_from_every_responder(kbridged_factory, bootstrap,
                                                               prefix):
    daemon = kbridged_factory(config_for(bootstrap))
    queues = {kind: f"{prefix}rpc-{kind}" for kind in KINDS}
    stomp_responder = StompResponder(daemon, queues["stomp"])
    amqp_responder = AmqpResponder(amqp_url(daemon), queues["amqp"])
    run_in_thread(amqp_responder)
    assert amqp_responder.ready.wait(30)
    native_responder = NativeResponder(bootstrap, queues["native"])
    for kind in ("stomp", "amqp"):
        daemon.wait_log(rf"consumer kbridge\.q\.{queues[kind]}: assigned [1-9]", timeout=60)

    results, errors = {}, []

    def run(requester, responder):
        tag = f"{requester}-to-{responder}"
        try:
            if requester == "stomp":
                results[tag] = stomp_requests(daemon, queues[responder], tag, COUNT)
            elif requester == "amqp":
                results[tag] = amqp_requests(daemon, queues[responder], tag, COUNT)
            else:
                results[tag] = native_requests(bootstrap, queues[responder], tag, COUNT, prefix)
        except BaseException as e:  # noqa: B902 -- reported below with its pairing
            errors.append(f"{tag}: {e!r}")
    threads = [threading.Thread(target=run, args=(a, b)) for a in KINDS for b in KINDS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    stomp_responder.close()
    native_responder.close()
    assert not errors, errors
    for requester in KINDS:
        for responder in KINDS:
            tag = f"{requester}-to-{responder}"
            expected = {f"{tag}-{i}": f"re:{tag}-{i}" for i in range(COUNT)}
            assert results[tag] == expected, (
                f"{tag}: {len(set(results[tag]) - set(expected))} unexpected, "
                f"{len(set(expected) - set(results[tag]))} missing")
    values = metrics(daemon)
    # bridge requesters: 6 x COUNT requests carried a reply address, and their
    # replies came back through the node's reply topic
    assert values["kbridge_requests_total"] == 6 * COUNT
    assert values["kbridge_replies_routed_total"] == 6 * COUNT
    assert values['kbridge_replies_dropped_total{reason="unknown-token"}'] == 0
    # each of them timed from request to reply
    assert values["kbridge_reply_latency_seconds_count"] == 6 * COUNT
    assert values['kbridge_reply_latency_seconds_bucket{le="+Inf"}'] == 6 * COUNT
    assert 0 < values["kbridge_reply_latency_seconds_sum"] < 6 * COUNT * 10


def test_a_reply_reaches_the_requesters_node(kbridged_factory, devkafka, prefix):
    node_a = kbridged_factory(config_for(devkafka.bootstrap, "nodea"), name="node-a")
    node_b = kbridged_factory(config_for(devkafka.bootstrap, "nodeb"), name="node-b")
    queue = f"{prefix}rpc-two-nodes"
    responder = StompResponder(node_b, queue)
    node_b.wait_log(rf"consumer kbridge\.q\.{queue}: assigned [1-9]", timeout=60)
    got = stomp_requests(node_a, queue, "across", 200)
    responder.close()
    assert got == {f"across-{i}": f"re:across-{i}" for i in range(200)}
    assert metrics(node_a)["kbridge_replies_routed_total"] == 200
    assert metrics(node_b)["kbridge_replies_routed_total"] == 0
    assert metrics(node_b)["kbridge_requests_total"] == 0


def test_forged_late_and_expired_replies_reach_nobody_and_are_counted(kbridged_factory,
                                                                      bootstrap, prefix):
    daemon = kbridged_factory(config_for(bootstrap))
    queue = f"{prefix}rpc-drops"
    responder = StompResponder(daemon, queue)
    daemon.wait_log(rf"consumer kbridge\.q\.{queue}: assigned [1-9]", timeout=60)
    bystander = Client(daemon)
    # a bystander with a temporary queue of its own, answered once
    assert stomp_requests(daemon, queue, "ok", 1) == {"ok-0": "re:ok-0"}
    observer = conn = connect(daemon)
    observed = observer.create_receiver(None, dynamic=True, credit=10)

    # 1. a guessed token
    bystander.send(f"/reply-queue/test1.{uuid.uuid4().hex}", "forged", receipt="f")
    bystander.wait_receipt("f")
    wait_for(lambda: metrics(daemon)['kbridge_replies_dropped_total{reason="unknown-token"}'] == 1,
             30, "the forged reply to be dropped")

    # 2. the requester leaves before the reply
    responder.hold = True
    requester = Client(daemon)
    requester.send(f"/queue/{queue}", "late", headers={"reply-to": "/temp-queue/gone",
                                                        "correlation-id": "late-1"},
                   receipt="late")
    requester.wait_receipt("late")
    wait_for(lambda: responder.held, 30, "the request to reach the responder")
    stomp_connections = 'kbridge_connections{protocol="stomp"}'
    before_close = metrics(daemon)[stomp_connections]
    requester.close()
    # the node has freed the connection (and with it the temporary queue):
    # a reply delivered in memory (replies.local) would otherwise race the close
    wait_for(lambda: metrics(daemon)[stomp_connections] == before_close - 1, 30,
             "the requester's connection to be gone")
    responder.answer(responder.held.pop())
    wait_for(lambda: metrics(daemon)['kbridge_replies_dropped_total{reason="unknown-token"}'] == 2,
             30, "the late reply to be dropped")
    responder.hold = False

    # 3. an expired request is not delivered to the responder
    before = responder.answered
    bystander.send(f"/queue/{queue}", "too late",
                   headers={"expires": str(int(time.time() * 1000) - 1000),
                            "reply-to": "/temp-queue/exp", "correlation-id": "exp-1"},
                   receipt="e")
    bystander.wait_receipt("e")
    wait_for(lambda: metrics(daemon)['kbridge_expired_total{kind="queue"}'] == 1, 30,
             "the expired request to be counted")
    assert stomp_requests(daemon, queue, "after", 1) == {"after-0": "re:after-0"}
    assert responder.answered == before + 1  # only "after"

    # nobody saw any of it
    with pytest.raises(Exception):
        observed.receive(timeout=1)
    assert not bystander.recorder.messages
    conn.close()
    bystander.close()
    responder.close()


def test_expired_messages_are_dropped_on_topics_and_dead_lettered_when_configured(
        kbridged_factory, bootstrap, prefix):
    config = config_for(bootstrap)
    config["queues"] = {"dead_letter_expired": True}
    daemon = kbridged_factory(config)
    conn = connect(daemon)
    topic = conn.create_receiver(f"topic://{prefix}ttl", credit=10)
    sender = conn.create_sender(f"topic://{prefix}ttl")
    sender.send(Message(body=b"stale", expiry_time=time.time() - 1, properties={"n": 1}))
    sender.send(Message(body=b"fresh"))
    assert body_of(topic.receive(timeout=30)) == b"fresh"
    topic.accept()
    wait_for(lambda: metrics(daemon)['kbridge_expired_total{kind="topic"}'] >= 1, 30,
             "the stale topic message to be counted")
    receiver = conn.create_receiver(f"{prefix}ttlq", credit=10)
    dlq = conn.create_receiver(f"{prefix}ttlq.DLQ", credit=10)
    daemon.wait_log(rf"consumer kbridge\.q\.{prefix}ttlq: assigned [1-9]", timeout=60)
    conn.create_sender(f"{prefix}ttlq").send(Message(body=b"stale", expiry_time=time.time() - 1))
    dead = dlq.receive(timeout=60)
    dlq.accept()
    assert body_of(dead) == b"stale"
    assert dead.properties["kbridge-dlq-reason"] == "expired"
    with pytest.raises(Exception):
        receiver.receive(timeout=1)
    conn.close()


@pytest.mark.parametrize("local", [True, False])
def test_replies_to_this_nodes_temporary_queues_skip_kafka_unless_replies_local_is_off(
        kbridged_factory, bootstrap, prefix, local):
    """replies.local (default on): a reply whose temporary queue lives on the
    responder's node is delivered in memory, as RabbitMQ's direct reply-to,
    and never written to the node's reply topic; off, every reply goes
    through it. The requests themselves always go through Kafka."""
    node_id = f"local{uuid.uuid4().hex[:8]}"  # a reply topic of this test's own
    config = config_for(bootstrap, node_id=node_id)
    if not local:
        config["replies"] = {"local": False}
    daemon = kbridged_factory(config)
    queue = f"{prefix}rpc-local-{node_id}"
    responder = StompResponder(daemon, queue)
    daemon.wait_log(rf"consumer kbridge\.q\.{queue}: assigned [1-9]", timeout=60)
    count = 100
    assert stomp_requests(daemon, queue, "s", count) == {
        f"s-{i}": f"re:s-{i}" for i in range(count)}
    assert amqp_requests(daemon, queue, "a", count) == {
        f"a-{i}": f"re:a-{i}" for i in range(count)}
    responder.close()
    values = metrics(daemon)
    assert values["kbridge_requests_total"] == 2 * count
    assert values["kbridge_replies_routed_total"] == 2 * count
    prefix_config = config.get("kafka", {}).get("topic_prefix", "")
    replies_written = read_topic(bootstrap, f"{prefix_config}kbridge.reply.{node_id}")
    assert len(replies_written) == (0 if local else 2 * count)
    assert len(read_topic(bootstrap, f"{prefix_config}{queue}")) == 2 * count


def test_the_node_learns_the_cluster_id_and_waits_less_for_fetches_on_the_dev_broker(
        kbridged_factory, bootstrap):
    """librdkafka's mock cluster holds an empty fetch for the whole fetch.wait.max.ms, so on
    the dev broker kbridged shortens the wait (architecture §9); a real cluster keeps the
    default. The log says which it found."""
    daemon = kbridged_factory(config_for(bootstrap))
    if EXTERNAL_BOOTSTRAP:
        line = daemon.wait_log(r"\[kafka\] cluster id (\S+)")
        assert not line.group(1).startswith("mockCluster")
        assert "is librdkafka's mock cluster" not in daemon.log()
    else:
        line = daemon.wait_log(
            r"cluster (mockCluster\w+) is librdkafka's mock cluster \(kbridge-devkafka\): "
            r"consumers wait at most 5 ms for data")
        assert line.group(1).startswith("mockCluster")
        assert daemon.log().count("is librdkafka's mock cluster") == 1
