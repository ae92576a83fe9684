# SPDX-License-Identifier: Apache-2.0
"""Shovels (architecture §15, DESIGN §15) against a real RabbitMQ: kbridged
as the STOMP client of Debian's rabbitmq-server (started once for the file,
loopback ports, temporary data dir, stopped also on failure) moves a
RabbitMQ queue into Kafka and a kbridge queue into RabbitMQ; nothing is lost
across a kill -9 of kbridged or a restart of RabbitMQ; the admin API and the
metrics show the shovels.

What reached Kafka is read with confluent-kafka from the beginning of the
kbridge queue's topic up to its end offsets, so the counts are exact
(duplicates included)."""

import socket
import subprocess
import threading
import uuid

import pytest
import stomp
import yaml
from confluent_kafka import Consumer, TopicPartition

from conftest import KBRIDGED, base_config, metrics, user_config, wait_for, with_admin
from legacy_brokers import ActiveMQ, RabbitMQ
from stomp_util import Client

COUNT = 10_000


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    broker = RabbitMQ(str(tmp_path_factory.mktemp("shovel")), name="kbridge-shovel-test")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def activemq(tmp_path_factory):
    broker = ActiveMQ(str(tmp_path_factory.mktemp("shovel-activemq")))
    try:
        yield broker
    finally:
        broker.stop()


def uniq():
    return uuid.uuid4().hex[:8]


def put_in_rabbit(broker, destination, bodies, vhost="/"):
    """SEND bodies to the broker with stomp.py; returns once it confirmed the last."""
    conn = stomp.Connection12([("127.0.0.1", broker.ports["stomp"])], heartbeats=(0, 0),
                              vhost=vhost)
    receipts = []

    class Listener(stomp.ConnectionListener):
        def on_receipt(self, frame):
            receipts.append(frame.headers.get("receipt-id"))

    conn.set_listener("r", Listener())
    conn.connect("guest", "guest", wait=True)
    try:
        for i, body in enumerate(bodies):
            headers = {"persistent": "true", "x-seq": str(i)}
            if i == len(bodies) - 1:
                headers["receipt"] = "last"
            conn.send(destination, body, headers=headers)
        wait_for(lambda: "last" in receipts, 120, "RabbitMQ's RECEIPT of the last SEND")
    finally:
        conn.disconnect()


def read_topic(bootstrap, topic):
    """Every record of `topic` from the beginning to its end offsets:
    [(partition, offset, value, headers dict)] in offset order per partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"shovel-check-{uniq()}",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends, assign = {}, []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                assign.append(TopicPartition(topic, p, low))
        consumer.assign(assign)
        records, done = [], {p: False for p in ends}
        while not all(done.values()):
            msg = consumer.poll(5)
            assert msg is not None, f"no record of {topic} within 5 s; have {len(records)}"
            if msg.error():
                continue
            records.append((msg.partition(), msg.offset(), msg.value().decode(),
                            # kbridge-amqp-* headers are AMQP-encoded, not text
                            {k: v.decode(errors="backslashreplace")
                             for k, v in (msg.headers() or [])}))
            if msg.offset() + 1 >= ends[msg.partition()]:
                done[msg.partition()] = True
        return sorted(records, key=lambda r: (r[0], r[1]))
    finally:
        consumer.close()


def kafka_depth(bootstrap, group, topic):
    """Committed vs end offsets of `group` on `topic`, as confluent-kafka sees them."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition),
                                                       timeout=10)
            total += high - (tp.offset if tp.offset >= 0 else low)
        return total
    finally:
        consumer.close()


def shovel_to_kbridge(broker, name, queue, **extra):
    return dict({"name": name,
                 "source": {"protocol": "stomp", "address": f"127.0.0.1:{broker.ports['stomp']}",
                            "login": "guest", "passcode": "guest",
                            "destination": f"/queue/{queue}"},
                 "destination": {"protocol": "kbridge", "destination": f"/queue/{queue}"},
                 "reconnect_delay_initial": "100ms", "reconnect_delay_max": "1s"}, **extra)


def shovel_status(daemon, name):
    status, body = daemon.api(f"/api/kbridge/shovels/{name}")
    assert status == 200, body
    return body


def shovel_metric(daemon, series, name):
    return metrics(daemon).get(f'{series}{{shovel="{name}"}}', 0)


def assert_drained(records, bodies):
    """Every body is in Kafka; any duplicate is a redelivery; the source's
    order holds within each partition. Returns the number of duplicates."""
    values = [r[2] for r in records]
    assert set(values) == set(bodies), (
        f"missing {len(set(bodies) - set(values))}, unexpected {len(set(values) - set(bodies))}")
    first_seen = {}
    for r in records:
        first_seen.setdefault(r[2], r)
    position = {b: i for i, b in enumerate(bodies)}
    by_partition = {}
    for value, r in first_seen.items():
        by_partition.setdefault(r[0], []).append((r[1], position[value]))
    for partition, pairs in by_partition.items():
        order = [p for _, p in sorted(pairs)]
        assert order == sorted(order), f"partition {partition} is out of the source's order"
    return len(values) - len(set(values))


def test_shovel_drains_10000_rabbitmq_messages_into_kafka(rabbit, kbridged_factory, bootstrap):
    queue = f"legacy.{uniq()}"
    bodies = [f"m-{i:05d}" for i in range(COUNT)]
    put_in_rabbit(rabbit, f"/queue/{queue}", bodies)
    assert rabbit.queue_depth(queue) == COUNT
    daemon = kbridged_factory(with_admin(base_config(
        bootstrap, shovels=[shovel_to_kbridge(rabbit, "drain", queue, prefetch=200)])))
    wait_for(lambda: shovel_metric(daemon, "kbridge_shovel_messages_total", "drain") >= COUNT,
             180, f"{COUNT} messages moved")
    wait_for(lambda: rabbit.queue_depth(queue) == 0, 30, "RabbitMQ's queue empty")
    records = read_topic(bootstrap, queue)
    duplicates = assert_drained(records, bodies)
    assert duplicates == 0  # no reconnect, no redelivery
    # headers map as for any STOMP publish; the source's message-id kept
    first = next(r for r in records if r[2] == "m-00000")[3]
    assert first["x-seq"] == "0"
    assert first["kbridge-shovel-source-message-id"]
    assert first["persistent"] == "true"

    status = shovel_status(daemon, "drain")
    assert status["state"] == "running"
    assert status["messages_moved"] == COUNT
    assert status["duplicates"] == 0
    assert status["source"] == f"stomp://127.0.0.1:{rabbit.ports['stomp']}/queue/{queue}"
    assert status["destination"] == f"kbridge:/queue/{queue}"
    assert status["last_error"] is None
    listed = daemon.api("/api/kbridge/shovels")[1]
    assert [s["name"] for s in listed] == ["drain"]
    m = metrics(daemon)
    assert m['kbridge_shovel_state{shovel="drain",state="running"}'] == 1
    assert m['kbridge_shovel_state{shovel="drain",state="connecting"}'] == 0
    assert m['kbridge_shovel_messages_total{shovel="drain"}'] == COUNT
    # the status is for monitoring users too, never changed through the API
    assert daemon.api("/api/kbridge/shovels", method="DELETE")[0] == 405
    assert daemon.http("/api/kbridge/shovels")[0] == 401


def browse_activemq(broker, queue):
    """What ActiveMQ's queue holds, read with a STOMP browser (nothing consumed):
    the bodies before ActiveMQ's `browser:end` MESSAGE."""
    got, end = [], []

    class Listener(stomp.ConnectionListener):
        def on_message(self, frame):
            (end if frame.headers.get("browser") == "end" else got).append(frame.body)

    conn = stomp.Connection12([("127.0.0.1", broker.ports["stomp"])], heartbeats=(0, 0))
    conn.set_listener("b", Listener())
    conn.connect("guest", "guest", wait=True)
    try:
        conn.subscribe(f"/queue/{queue}", id="browse", ack="auto", headers={"browser": "true"})
        wait_for(lambda: end, 30, "ActiveMQ's browser:end")
    finally:
        conn.disconnect()
    return got


def test_shovel_drains_10000_activemq_messages_into_kafka(activemq, kbridged_factory, bootstrap):
    queue = f"amq.{uniq()}"
    bodies = [f"a-{i:05d}" for i in range(COUNT)]
    put_in_rabbit(activemq, f"/queue/{queue}", bodies, vhost=None)
    daemon = kbridged_factory(with_admin(base_config(
        bootstrap, shovels=[shovel_to_kbridge(activemq, "activemq", queue, prefetch=200)])))
    wait_for(lambda: shovel_metric(daemon, "kbridge_shovel_messages_total", "activemq") >= COUNT,
             180, f"{COUNT} messages moved from ActiveMQ")
    # the last ACKs may still be on their way when the count is reached
    wait_for(lambda: browse_activemq(activemq, queue) == [], 30, "ActiveMQ's queue empty")
    records = read_topic(bootstrap, queue)
    assert assert_drained(records, bodies) == 0
    first = next(r for r in records if r[2] == "a-00000")[3]
    assert first["x-seq"] == "0"
    assert first["kbridge-shovel-source-message-id"].startswith("ID:")
    status = shovel_status(daemon, "activemq")
    assert status["state"] == "running" and status["messages_moved"] == COUNT


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
def test_shovel_loses_nothing_when_kbridged_dies_mid_way(rabbit, kbridged_factory, bootstrap,
                                                         how):
    queue = f"legacy.{uniq()}"
    bodies = [f"k-{i:05d}" for i in range(COUNT)]
    put_in_rabbit(rabbit, f"/queue/{queue}", bodies)
    config = with_admin(base_config(bootstrap, shovels=[shovel_to_kbridge(rabbit, "kill", queue)]))
    first = kbridged_factory(config, name="first")
    moved = wait_for(lambda: shovel_metric(first, "kbridge_shovel_messages_total", "kill") >= 2000
                     and shovel_metric(first, "kbridge_shovel_messages_total", "kill"),
                     120, "2000 messages moved")
    if how == "kill -9":
        first.kill()  # unacknowledged messages stay with RabbitMQ
    else:
        assert first.stop() == 0  # drain: take no more, ACK what Kafka confirmed, close
    assert moved < COUNT, "the shovel finished before the stop; the test needs it mid-way"
    second = kbridged_factory(config, name="second")
    wait_for(lambda: rabbit.queue_depth(queue) == 0, 180, "RabbitMQ's queue drained")
    records = read_topic(bootstrap, queue)
    duplicates = assert_drained(records, bodies)
    # the duplicates are messages Kafka had whose ACK RabbitMQ never saw; each
    # came back marked redelivered, which the second shovel counted
    redelivered = shovel_metric(second, "kbridge_shovel_duplicates_total", "kill")
    assert duplicates <= redelivered
    if how == "SIGTERM":
        assert duplicates == 0  # the drain acknowledged everything Kafka confirmed
    print(f"{how} after {moved} moved: {len(records)} records for {COUNT} messages, "
          f"{duplicates} duplicates, {redelivered} redelivered by RabbitMQ")
    assert shovel_status(second, "kill")["state"] == "running"


def test_shovel_moves_a_kbridge_queue_into_rabbitmq(rabbit, kbridged_factory, bootstrap,
                                                   tmp_path):
    queue = f"out.{uniq()}"
    legacy = f"legacy.{uniq()}"
    passcode = tmp_path / "rabbit-passcode"
    passcode.write_text("guest\n")  # the first line is the passcode
    shovel = {"name": "back", "source": {"protocol": "kbridge", "destination": f"/queue/{queue}"},
              "destination": {"protocol": "stomp",
                              # a host name: resolved before each connect on a worker
                              "address": f"localhost:{rabbit.ports['stomp']}",
                              "login": "guest", "passcode_file": str(passcode),
                              "destination": f"/queue/{legacy}"},
              "prefetch": 20}
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

    got = []

    class Listener(stomp.ConnectionListener):
        def on_message(self, frame):
            got.append(frame)

    conn = stomp.Connection12([("127.0.0.1", rabbit.ports["stomp"])], heartbeats=(0, 0), vhost="/")
    conn.set_listener("l", Listener())
    conn.connect("guest", "guest", wait=True)
    try:
        conn.subscribe(f"/queue/{legacy}", id="1", ack="auto")
        wait_for(lambda: len(got) >= 500, 60, "500 messages from RabbitMQ")
    finally:
        conn.disconnect()
    assert [f.body for f in got] == [f"b-{i:04d}" for i in range(500)]
    assert [f.headers["x-seq"] for f in got] == [str(i) for i in range(500)]
    assert shovel_status(daemon, "back")["messages_moved"] == 500
    # every kbridge delivery was settled after RabbitMQ's RECEIPT: the queue's
    # group commits up to the end offsets
    wait_for(lambda: kafka_depth(bootstrap, f"kbridge.q.{queue}", queue) == 0, 30,
             "the kbridge queue's group committed everything")


def read_rabbit_queue(broker, queue, count):
    """Consume `count` messages (at least) from RabbitMQ's queue with stomp.py,
    then every message still there (until RabbitMQ's queue depth is 0)."""
    got = []

    class Listener(stomp.ConnectionListener):
        def on_message(self, frame):
            got.append(frame)

    conn = stomp.Connection12([("127.0.0.1", broker.ports["stomp"])], heartbeats=(0, 0),
                              vhost="/")
    conn.set_listener("l", Listener())
    conn.connect("guest", "guest", wait=True)
    try:
        conn.subscribe(f"/queue/{queue}", id="1", ack="auto")
        wait_for(lambda: len(got) >= count and broker.queue_depth(queue) == 0, 120,
                 f"{count} messages from RabbitMQ (have {len(got)})")
    finally:
        conn.disconnect()
    return got


def test_shovel_into_rabbitmq_loses_nothing_across_kill_9(rabbit, kbridged_factory, bootstrap):
    queue = f"out.{uniq()}"
    legacy = f"legacy.{uniq()}"
    bodies = [f"r-{i:05d}" for i in range(COUNT)]
    # the kbridge queue filled first, by a kbridged without the shovel
    filler = kbridged_factory(base_config(bootstrap), name="filler")
    client = Client(filler)
    try:
        for i, body in enumerate(bodies):
            client.send(f"/queue/{queue}", body, receipt="last" if i == COUNT - 1 else None)
        client.wait_receipt("last", timeout=120)
    finally:
        client.conn.disconnect()
    assert filler.stop() == 0
    shovel = {"name": "back", "source": {"protocol": "kbridge", "destination": f"/queue/{queue}"},
              "destination": {"protocol": "stomp",
                              "address": f"127.0.0.1:{rabbit.ports['stomp']}",
                              "login": "guest", "passcode": "guest",
                              "destination": f"/queue/{legacy}"},
              "reconnect_delay_initial": "100ms", "reconnect_delay_max": "1s"}
    config = with_admin(base_config(bootstrap, shovels=[shovel]))
    first = kbridged_factory(config, name="first")
    moved = wait_for(lambda: shovel_metric(first, "kbridge_shovel_messages_total", "back") >= 1000
                     and shovel_metric(first, "kbridge_shovel_messages_total", "back"),
                     120, "1000 messages moved into RabbitMQ")
    first.kill()  # deliveries without RECEIPT are not settled: kbridge delivers them again
    assert moved < COUNT, "the shovel finished before the kill; the test needs it mid-way"
    second = kbridged_factory(config, name="second")
    wait_for(lambda: kafka_depth(bootstrap, f"kbridge.q.{queue}", queue) == 0, 180,
             "the kbridge queue's group committed everything")
    got = [f.body for f in read_rabbit_queue(rabbit, legacy, COUNT)]
    assert set(got) == set(bodies), f"missing {len(set(bodies) - set(got))}"
    duplicates = len(got) - len(set(got))
    # a duplicate is a SEND RabbitMQ took whose settlement had not reached
    # Kafka (the queue group's committed offset) when the process died; one
    # kill gives each message at most one more delivery
    counts = {}
    for body in got:
        counts[body] = counts.get(body, 0) + 1
    assert max(counts.values()) <= 2
    print(f"kill -9 after {moved} moved into RabbitMQ: {len(got)} messages for {COUNT}, "
          f"{duplicates} duplicates")
    assert shovel_status(second, "back")["state"] == "running"


def test_shovel_reconnects_when_rabbitmq_restarts(rabbit, kbridged_factory, bootstrap):
    queue = f"legacy.{uniq()}"
    before = [f"a-{i:04d}" for i in range(1000)]
    after = [f"z-{i:04d}" for i in range(1000)]
    put_in_rabbit(rabbit, f"/queue/{queue}", before)
    daemon = kbridged_factory(with_admin(base_config(
        bootstrap, shovels=[shovel_to_kbridge(rabbit, "bounce", queue)])))
    wait_for(lambda: shovel_metric(daemon, "kbridge_shovel_messages_total", "bounce") >= 1000,
             120, "the first 1000 moved")
    rabbit.stop(keep_epmd=True)
    try:
        status = wait_for(lambda: (lambda s: s if s["state"] == "connecting" else None)(
            shovel_status(daemon, "bounce")), 30, "shovel connecting")
        assert status["last_error"]
        wait_for(lambda: shovel_metric(daemon, "kbridge_shovel_reconnects_total", "bounce") >= 1,
                 30, "a reconnect attempt")
    finally:
        rabbit.start()
    wait_for(lambda: shovel_status(daemon, "bounce")["state"] == "running", 60,
             "shovel running again")
    put_in_rabbit(rabbit, f"/queue/{queue}", after)
    wait_for(lambda: shovel_metric(daemon, "kbridge_shovel_messages_total", "bounce") >= 2000,
             120, "all 2000 moved")
    wait_for(lambda: rabbit.queue_depth(queue) == 0, 30, "RabbitMQ's queue empty")
    records = read_topic(bootstrap, queue)
    assert_drained(records, before + after)


@pytest.mark.parametrize("shovel,key,words", [
    ({"name": "a", "source": {"protocol": "mqtt", "address": "h:1", "destination": "q"},
      "destination": {"protocol": "kbridge", "destination": "/queue/x"}},
     "shovels[0].source.protocol", "not a shovel protocol (kbridge, stomp, amqp)"),
    ({"name": "b", "source": {"protocol": "kbridge", "destination": "/queue/x"},
      "destination": {"protocol": "kbridge", "destination": "/queue/y"}},
     "shovels[0]", "both ends are kbridge"),
    ({"name": "c", "source": {"protocol": "stomp", "destination": "/queue/q"},
      "destination": {"protocol": "kbridge", "destination": "/queue/x"}},
     "shovels[0].source.address", "is required"),
    ({"name": "d", "source": {"protocol": "stomp", "address": "h:1", "destination": "/queue/q"},
      "destination": {"protocol": "kbridge", "destination": "/exchange/x"}},
     "shovels[0].destination.destination", "not a kbridge destination"),
    ({"name": "e", "source": {"protocol": "stomp", "address": "h:1", "destination": "/queue/q",
                              "passcode": "p", "passcode_file": "/x"},
      "destination": {"protocol": "kbridge", "destination": "/queue/x"}},
     "shovels[0].source.passcode_file", "both set"),
])
def test_shovel_config_errors_name_the_key(tmp_path, shovel, key, words):
    config = base_config("127.0.0.1:9", shovels=[shovel])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([KBRIDGED, "--check-config", str(path)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode != 0
    assert key in result.stderr and words in result.stderr, result.stderr


def test_shovel_blocked_by_an_acl_acknowledges_nothing(rabbit, kbridged_factory, bootstrap):
    queue = f"legacy.{uniq()}"
    put_in_rabbit(rabbit, f"/queue/{queue}", ["refused-1", "refused-2"])
    limited = user_config("limited", "secret", publish=["^elsewhere$"], consume=["^elsewhere$"])
    daemon = kbridged_factory(with_admin(base_config(
        bootstrap, auth={"anonymous": False, "users": [limited]},
        shovels=[shovel_to_kbridge(rabbit, "acl", queue, user="limited")])))
    status = wait_for(lambda: (lambda s: s if s["state"] == "blocked" else None)(
        shovel_status(daemon, "acl")), 30, "shovel blocked")
    assert queue in status["last_error"] and "kbridge refused" in status["last_error"], status
    assert status["messages_moved"] == 0
    assert metrics(daemon)['kbridge_shovel_state{shovel="acl",state="blocked"}'] == 1
    # it keeps trying (the messages come back each time) and never acknowledges them
    wait_for(lambda: shovel_metric(daemon, "kbridge_shovel_reconnects_total", "acl") >= 2, 30,
             "two reconnects")
    assert rabbit.queue_depth(queue) == 2


class SilentBroker:
    """A loopback STOMP 'broker' that answers CONNECT (with `connected`, or
    not at all) and then says nothing more, keeping every socket open: a
    peer gone without closing its connection. Records each CONNECT frame."""

    def __init__(self, connected):
        self.connected = connected
        self.connects = []
        self.sockets = []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.server.settimeout(0.2)
        while self.running:
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.sockets.append(conn)
            data = b""
            conn.settimeout(5)
            try:
                while b"\0" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                continue
            self.connects.append(data.split(b"\0")[0].decode())
            if self.connected:
                conn.sendall(self.connected.encode() + b"\0")

    def close(self):
        self.running = False
        self.thread.join()
        for s in self.sockets + [self.server]:
            s.close()


@pytest.mark.parametrize("connected,error", [
    ("CONNECTED\nversion:1.2\nheart-beat:100,0\n\n", "no heart-beat or frame"),
    (None, "no CONNECTED frame"),
])
def test_shovel_drops_a_silent_broker_and_reconnects(kbridged_factory, bootstrap, connected,
                                                     error):
    broker = SilentBroker(connected)
    try:
        shovel = {"name": "silent",
                  "source": {"protocol": "stomp", "address": f"127.0.0.1:{broker.port}",
                             "destination": "/queue/x"},
                  "destination": {"protocol": "kbridge", "destination": "/queue/silent"},
                  "heartbeat": "200ms", "connect_timeout": "300ms",
                  "reconnect_delay_initial": "100ms", "reconnect_delay_max": "200ms"}
        daemon = kbridged_factory(with_admin(base_config(bootstrap, shovels=[shovel])))
        wait_for(lambda: len(broker.connects) >= 2, 30, "a second CONNECT after the silence")
        assert broker.connects[0].startswith("CONNECT\n")
        assert "\nheart-beat:0,200\n" in broker.connects[0] + "\n"
        status = shovel_status(daemon, "silent")
        assert error in status["last_error"], status
        assert shovel_metric(daemon, "kbridge_shovel_reconnects_total", "silent") >= 1
    finally:
        broker.close()
