# SPDX-License-Identifier: Apache-2.0
"""AMQP 1.0 shovels (architecture §15, DESIGN §15) against a real RabbitMQ:
kbridged as the AMQP 1.0 client (proton's connection driver) of Debian's
rabbitmq-server with its rabbitmq_amqp1_0 plugin (started once for the file
by legacy_brokers.py: loopback ports, temporary data dir, stopped also on
failure). RabbitMQ's queues are filled and read with Qpid Proton's Python
client over AMQP 1.0; what reached Kafka is read with confluent-kafka from
the beginning of the kbridge queue's topic to its end offsets, so counts are
exact (duplicates included).

ActiveMQ is not tested here: Debian's activemq (5.17) has no AMQP transport
(the activemq-amqp module and proton-j are not packaged)."""

import socket
import subprocess
import threading

import pytest
import yaml
from proton import Condition, Message
from proton.handlers import MessagingHandler
from proton.reactor import Container
from proton.utils import BlockingConnection

from conftest import KBRIDGED, base_config, free_port, metrics, with_admin, wait_for
from legacy_brokers import RabbitMQ
from stomp_util import Client
from test_shovel import (assert_drained, kafka_depth, read_topic, shovel_metric, shovel_status,
                         uniq)

COUNT = 10_000


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    broker = RabbitMQ(str(tmp_path_factory.mktemp("shovel-amqp")), name="kbridge-shovel-amqp")
    try:
        yield broker
    finally:
        broker.stop()


def rabbit_url(broker, password="guest"):
    return f"amqp://guest:{password}@127.0.0.1:{broker.ports['amqp']}"


class Filler(MessagingHandler):
    """Sends `messages` to `address` on RabbitMQ over AMQP 1.0 (SASL PLAIN),
    at most `window` without an outcome; done once every one was accepted."""

    def __init__(self, url, address, messages, window=500):
        super().__init__()
        self.url, self.address, self.messages, self.window = url, address, messages, window
        self.sent = self.accepted = 0
        self.refused = []
        self.done = threading.Event()

    def on_start(self, event):
        conn = event.container.connect(self.url, allowed_mechs="PLAIN")
        event.container.create_sender(conn, self.address)

    def on_sendable(self, event):
        while (event.sender.credit and self.sent < len(self.messages)
               and self.sent - self.accepted < self.window):
            event.sender.send(self.messages[self.sent])
            self.sent += 1

    def on_accepted(self, event):
        self.accepted += 1
        if self.accepted == len(self.messages):
            self.done.set()
            event.connection.close()
        else:
            self.on_sendable(event)

    def on_rejected(self, event):
        self.refused.append(event.delivery.remote.condition)
        self.done.set()
        event.connection.close()

    def on_transport_error(self, event):
        self.refused.append(event.transport.condition)
        self.done.set()


def put_in_rabbit(broker, queue, bodies):
    """Each body as an AMQP 1.0 message with application properties to
    RabbitMQ's /queue/QUEUE (declared by the plugin); returns once RabbitMQ
    accepted the last."""
    messages = [Message(body=body, durable=True, id=f"src-{i}",
                        properties={"x-seq": i, "origin": "rabbit"})
                for i, body in enumerate(bodies)]
    handler = Filler(rabbit_url(broker), f"/queue/{queue}", messages)
    container = Container(handler)
    thread = threading.Thread(target=container.run, daemon=True)
    thread.start()
    assert handler.done.wait(120), f"{handler.accepted} of {len(bodies)} accepted by RabbitMQ"
    thread.join(30)
    assert not handler.refused, handler.refused
    assert handler.accepted == len(bodies)


def amqp_shovel(broker, name, queue, password="guest", **extra):
    return dict({"name": name,
                 "source": {"protocol": "amqp", "address": f"127.0.0.1:{broker.ports['amqp']}",
                            "login": "guest", "passcode": password,
                            "destination": f"/amq/queue/{queue}"},
                 "destination": {"protocol": "kbridge", "destination": f"/queue/{queue}"},
                 "reconnect_delay_initial": "100ms", "reconnect_delay_max": "1s"}, **extra)


def test_amqp_shovel_drains_10000_rabbitmq_messages_into_kafka(rabbit, kbridged_factory,
                                                               bootstrap):
    queue = f"legacy.{uniq()}"
    bodies = [f"m-{i:05d}" for i in range(COUNT)]
    put_in_rabbit(rabbit, queue, bodies)
    assert rabbit.queue_depth(queue) == COUNT
    daemon = kbridged_factory(with_admin(base_config(
        bootstrap, shovels=[amqp_shovel(rabbit, "drain", queue, prefetch=500)])))
    wait_for(lambda: shovel_metric(daemon, "kbridge_shovel_messages_total", "drain") >= COUNT,
             120, f"{COUNT} messages moved")
    wait_for(lambda: rabbit.queue_depth(queue) == 0, 30, "RabbitMQ's queue empty")
    records = read_topic(bootstrap, queue)
    assert assert_drained(records, bodies) == 0  # no reconnect, no redelivery
    assert len(records) == COUNT
    # one producer: one partition, in RabbitMQ's order
    assert [r[2] for r in records] == bodies
    # application properties and the message-id kept as for any AMQP publish
    first = records[0][3]
    assert first["x-seq"] == "0" and first["origin"] == "rabbit"
    assert first["message-id"] == "src-0"
    assert records[-1][3]["x-seq"] == str(COUNT - 1)

    status = shovel_status(daemon, "drain")
    assert status["state"] == "running"
    assert status["messages_moved"] == COUNT
    assert status["duplicates"] == 0
    assert status["source"] == f"amqp://127.0.0.1:{rabbit.ports['amqp']}/amq/queue/{queue}"
    assert status["destination"] == f"kbridge:/queue/{queue}"
    assert status["last_error"] is None
    m = metrics(daemon)
    assert m['kbridge_shovel_state{shovel="drain",state="running"}'] == 1
    assert m['kbridge_shovel_messages_total{shovel="drain"}'] == COUNT


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
def test_amqp_shovel_loses_nothing_when_kbridged_dies_mid_way(rabbit, kbridged_factory,
                                                              bootstrap, how):
    queue = f"legacy.{uniq()}"
    bodies = [f"k-{i:05d}" for i in range(COUNT)]
    put_in_rabbit(rabbit, queue, bodies)
    config = with_admin(base_config(bootstrap, shovels=[amqp_shovel(rabbit, "kill", queue)]))
    first = kbridged_factory(config, name="first")
    moved = wait_for(lambda: shovel_metric(first, "kbridge_shovel_messages_total", "kill") >= 2000
                     and shovel_metric(first, "kbridge_shovel_messages_total", "kill"),
                     120, "2000 messages moved")
    if how == "kill -9":
        first.kill()  # what had no `accepted` stays with RabbitMQ
    else:
        assert first.stop() == 0  # drain: no more credit, accept what Kafka confirmed, close
    assert moved < COUNT, "the shovel finished before the kill; the test needs it mid-way"
    second = kbridged_factory(config, name="second")
    wait_for(lambda: rabbit.queue_depth(queue) == 0, 120, "RabbitMQ's queue drained")
    records = read_topic(bootstrap, queue)
    duplicates = assert_drained(records, bodies)
    # a duplicate is a message Kafka had whose `accepted` RabbitMQ never saw:
    # it came back marked as a redelivery, which the second shovel counted
    redelivered = shovel_metric(second, "kbridge_shovel_duplicates_total", "kill")
    assert duplicates <= redelivered
    if how == "SIGTERM":
        assert duplicates == 0  # the drain accepted everything Kafka confirmed
    print(f"{how} after {moved} moved: {len(records)} records for {COUNT} messages, "
          f"{duplicates} duplicates, {redelivered} redelivered by RabbitMQ")
    assert shovel_status(second, "kill")["state"] == "running"


def test_amqp_shovel_moves_a_kbridge_queue_into_rabbitmq(rabbit, kbridged_factory, bootstrap,
                                                        tmp_path):
    queue = f"out.{uniq()}"
    legacy = f"legacy.{uniq()}"
    passcode = tmp_path / "rabbit-passcode"
    passcode.write_text("guest\n")  # the first line is the passcode (read on a worker)
    shovel = {"name": "back", "source": {"protocol": "kbridge", "destination": f"/queue/{queue}"},
              "destination": {"protocol": "amqp",
                              # a host name: resolved before each connect on a worker
                              "address": f"localhost:{rabbit.ports['amqp']}",
                              "login": "guest", "passcode_file": str(passcode),
                              "destination": f"/queue/{legacy}"},
              "prefetch": 50}
    daemon = kbridged_factory(with_admin(base_config(bootstrap, shovels=[shovel])))
    wait_for(lambda: shovel_status(daemon, "back")["state"] == "running", 30, "shovel running")
    client = Client(daemon)
    try:
        for i in range(500):
            client.send(f"/queue/{queue}", f"b-{i:04d}", headers={"x-seq": str(i)},
                        receipt=f"r{i}" if i == 499 else None)
        client.wait_receipt("r499")
    finally:
        client.conn.disconnect()
    wait_for(lambda: shovel_metric(daemon, "kbridge_shovel_messages_total", "back") >= 500, 60,
             "500 messages moved into RabbitMQ")
    assert rabbit.queue_depth(legacy) == 500

    conn = BlockingConnection(rabbit_url(rabbit), allowed_mechs="PLAIN", timeout=30)
    try:
        receiver = conn.create_receiver(f"/amq/queue/{legacy}", credit=500)
        got = []
        for _ in range(500):
            got.append(receiver.receive(timeout=30))
            receiver.accept()
    finally:
        conn.close()
    # a STOMP SEND's body is bytes: an AMQP data section
    assert [bytes(m.body) for m in got] == [f"b-{i:04d}".encode() for i in range(500)]
    assert [m.properties["x-seq"] for m in got] == [str(i) for i in range(500)]
    status = shovel_status(daemon, "back")
    assert status["messages_moved"] == 500
    assert status["destination"] == f"amqp://localhost:{rabbit.ports['amqp']}/queue/{legacy}"
    # every kbridge delivery was settled after RabbitMQ's `accepted`: the
    # queue's group commits up to the end offsets
    wait_for(lambda: kafka_depth(bootstrap, f"kbridge.q.{queue}", queue) == 0, 30,
             "the kbridge queue's group committed everything")


@pytest.mark.parametrize("case", ["wrong password", "unknown queue"])
def test_amqp_shovel_shows_the_error_and_retries(rabbit, kbridged_factory, bootstrap, case):
    queue = f"missing.{uniq()}"
    shovel = amqp_shovel(rabbit, "broken", queue,
                         password="not-the-password" if case == "wrong password" else "guest")
    daemon = kbridged_factory(with_admin(base_config(bootstrap, shovels=[shovel])))
    wait_for(lambda: shovel_metric(daemon, "kbridge_shovel_reconnects_total", "broken") >= 2, 30,
             "two reconnects")
    status = shovel_status(daemon, "broken")
    assert status["state"] == "connecting", status
    if case == "wrong password":
        assert "unauthorized-access" in status["last_error"], status
    else:
        assert "amqp:not-found" in status["last_error"], status
        assert queue in status["last_error"], status
    assert status["messages_moved"] == 0


@pytest.mark.parametrize("address,words", [
    ("rabbit.example", "is not HOST:PORT"),
    ("127.0.0.1", "is not HOST:PORT"),
    ("rabbit.example:70000", "is not HOST:PORT"),
])
def test_amqp_shovel_refuses_an_address_without_a_port(tmp_path, address, words):
    shovel = {"name": "a", "source": {"protocol": "amqp", "address": address,
                                      "destination": "q"},
              "destination": {"protocol": "kbridge", "destination": "/queue/x"}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(base_config("127.0.0.1:9", shovels=[shovel])))
    result = subprocess.run([KBRIDGED, "--check-config", str(path)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode != 0
    assert "shovels[0].source.address" in result.stderr and words in result.stderr, result.stderr


class OutcomeBroker(MessagingHandler):
    """A loopback AMQP 1.0 'broker' (Qpid Proton's Python container listening,
    SASL ANONYMOUS) that takes transfers on any address and answers each
    with the outcome its body asks for: `reject-*` rejected with a
    condition, `release-*` released the first time (accepted when it comes
    again), anything else accepted. Records (address, body) in order."""

    def __init__(self, port):
        super().__init__(auto_accept=False)
        self.listen_url = f"127.0.0.1:{port}"
        self.received = []
        self.released = set()
        self.ready = threading.Event()

    def on_start(self, event):
        event.container.listen(self.listen_url)
        self.ready.set()

    def on_message(self, event):
        body = bytes(event.message.body).decode()
        self.received.append((event.link.remote_target.address, body))
        if body.startswith("reject-"):
            event.delivery.local.condition = Condition("amqp:precondition-failed",
                                                       f"{body} is not wanted here")
            self.reject(event.delivery)
        elif body.startswith("release-") and body not in self.released:
            self.released.add(body)
            self.release(event.delivery, delivered=False)
        else:
            self.accept(event.delivery)


def test_amqp_shovel_maps_the_broker_outcomes_to_kbridge(kbridged_factory, bootstrap):
    port = free_port()
    broker = OutcomeBroker(port)
    container = Container(broker)
    container.allowed_mechs = "ANONYMOUS"
    thread = threading.Thread(target=container.run, daemon=True)
    thread.start()
    assert broker.ready.wait(10)
    try:
        queue = f"out.{uniq()}"
        shovel = {"name": "outcomes",
                  "source": {"protocol": "kbridge", "destination": f"/queue/{queue}"},
                  # ActiveMQ's spelling: a bare name
                  "destination": {"protocol": "amqp", "address": f"127.0.0.1:{port}",
                                  "destination": "orders"},
                  "prefetch": 1}  # one at a time: the broker's order is the queue's
        daemon = kbridged_factory(with_admin(base_config(bootstrap, shovels=[shovel])))
        wait_for(lambda: shovel_status(daemon, "outcomes")["state"] == "running", 30,
                 "shovel running")
        bodies = ["a-1", "release-2", "reject-3", "a-4"]
        client = Client(daemon)
        try:
            for i, body in enumerate(bodies):
                client.send(f"/queue/{queue}", body,
                            receipt="last" if i == len(bodies) - 1 else None)
            client.wait_receipt("last")
        finally:
            client.conn.disconnect()
        # accepted: a-1, release-2 (the second time), a-4; rejected: reject-3
        wait_for(lambda: shovel_metric(daemon, "kbridge_shovel_messages_total", "outcomes") >= 3,
                 30, "three messages accepted by the broker")
        got = [body for _, body in broker.received]
        assert sorted(got) == sorted(bodies + ["release-2"]), got
        assert got.count("release-2") == 2  # released: kbridge delivered it again
        assert all(address == "orders" for address, _ in broker.received)
        # rejected: dead-lettered in kbridge with the broker's condition as the reason
        def dead_letters():
            try:
                return read_topic(bootstrap, f"{queue}.DLQ") or None
            except (KeyError, AssertionError):  # not created yet
                return None

        dead = wait_for(dead_letters, 30, "the dead letter in Kafka")
        assert [r[2] for r in dead] == ["reject-3"]
        reason = dead[0][3]["kbridge-dlq-reason"]
        assert "amqp:precondition-failed" in reason and "reject-3 is not wanted here" in reason
        wait_for(lambda: kafka_depth(bootstrap, f"kbridge.q.{queue}", queue) == 0, 30,
                 "the kbridge queue's group committed everything")
        status = shovel_status(daemon, "outcomes")
        assert status["messages_moved"] == 3
        assert status["destination"] == f"amqp://127.0.0.1:{port}/orders"
    finally:
        container.stop()
        thread.join(10)


def test_amqp_shovel_reconnects_when_rabbitmq_restarts(rabbit, kbridged_factory, bootstrap):
    queue = f"legacy.{uniq()}"
    before = [f"a-{i:04d}" for i in range(1000)]
    after = [f"z-{i:04d}" for i in range(1000)]
    put_in_rabbit(rabbit, queue, before)
    daemon = kbridged_factory(with_admin(base_config(
        bootstrap, shovels=[amqp_shovel(rabbit, "bounce", queue)])))
    wait_for(lambda: shovel_metric(daemon, "kbridge_shovel_messages_total", "bounce") >= 1000,
             60, "the first 1000 moved")
    rabbit.stop(keep_epmd=True)
    try:
        status = wait_for(lambda: (lambda s: s if s["state"] == "connecting" else None)(
            shovel_status(daemon, "bounce")), 30, "shovel connecting")
        assert status["last_error"]
        wait_for(lambda: shovel_metric(daemon, "kbridge_shovel_reconnects_total", "bounce") >= 1,
                 30, "a reconnect attempt")
    finally:
        rabbit.start()
    # the plugin's /queue/NAME is not durable: the restart dropped the (empty) queue,
    # and the shovel retries with amqp:not-found until the next send declares it again
    put_in_rabbit(rabbit, queue, after)
    wait_for(lambda: shovel_status(daemon, "bounce")["state"] == "running", 60,
             "shovel running again")
    wait_for(lambda: shovel_metric(daemon, "kbridge_shovel_messages_total", "bounce") >= 2000,
             60, "all 2000 moved")
    wait_for(lambda: rabbit.queue_depth(queue) == 0, 30, "RabbitMQ's queue empty")
    assert_drained(read_topic(bootstrap, queue), before + after)


class SilentPeer:
    """A loopback TCP 'broker' that accepts and reads but never answers: no
    SASL outcome, no open. Counts the connections it accepted."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.sockets = []
        self.first_bytes = []
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.sockets.append(conn)
            conn.settimeout(5)
            try:
                self.first_bytes.append(conn.recv(8))
            except OSError:
                self.first_bytes.append(b"")

    def close(self):
        self.running = False
        self.thread.join()
        for s in self.sockets + [self.server]:
            s.close()


def test_amqp_shovel_drops_a_silent_peer_and_reconnects(kbridged_factory, bootstrap):
    peer = SilentPeer()
    try:
        shovel = {"name": "silent",
                  "source": {"protocol": "amqp", "address": f"127.0.0.1:{peer.port}",
                             "destination": "q"},
                  "destination": {"protocol": "kbridge", "destination": "/queue/silent"},
                  "connect_timeout": "300ms",
                  "reconnect_delay_initial": "100ms", "reconnect_delay_max": "200ms"}
        daemon = kbridged_factory(with_admin(base_config(bootstrap, shovels=[shovel])))
        wait_for(lambda: len(peer.first_bytes) >= 2, 30, "a second connection after the silence")
        assert peer.first_bytes[0] == b"AMQP\x03\x01\x00\x00"  # the SASL layer's header
        status = shovel_status(daemon, "silent")
        assert status["state"] == "connecting"
        assert "no SASL outcome, open or attach within the time allowed" in status["last_error"]
        assert shovel_metric(daemon, "kbridge_shovel_reconnects_total", "silent") >= 1
    finally:
        peer.close()
