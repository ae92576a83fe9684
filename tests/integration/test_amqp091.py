"""AMQP 0-9-1 (issue 14, first cut; docs/amqp091.md) with a third-party
client, pika (python3-pika), against kbridged's AMQP listener serving both
AMQP versions on one port (`protocols: [amqp, amqp091]`):

- the handshake (PLAIN, Tune, Open) on the port AMQP 1.0 clients also use;
  wrong credentials get Close 403 ACCESS_REFUSED;
- exchange/queue declare (passive, server-named), bind; RabbitMQ's reply
  codes and texts (`NOT_FOUND - no queue 'x' in vhost '/'`); a channel
  error closes that channel only;
- publish with confirms: every confirmed message is in Kafka
  (confluent-kafka reads it back) with its properties as headers;
- consume with manual ack and prefetch across three consumers (each message
  once), nack requeue -> redelivered, mandatory unroutable -> basic.return,
  tx.select on a confirm channel -> 406 (transactions: test_transactions.py);
- cross-protocol: STOMP -> 0-9-1 and 0-9-1 -> STOMP / AMQP 1.0 with the
  properties intact.

Waits are deadline-based (pika's own blocking calls with timeouts,
wait_for); nothing sleeps and hopes."""

import subprocess
import time
import uuid

import pika
import pytest
from proton import Message

from amqp_client import connect as amqp10_connect
from conftest import EXTERNAL_BOOTSTRAP, base_config, wait_for
from stomp_util import Client
from test_stomp_queues import header_dict, read_topic

KAFKA = {"consumer": {"session.timeout.ms": 6000}}
USER, PASSWORD = "app", "secret"


@pytest.fixture(scope="module")
def password_hash():
    return subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def uniq():
    return f"-{uuid.uuid4().hex[:10]}" if EXTERNAL_BOOTSTRAP else f"-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def daemon(kbridged_factory, bootstrap, password_hash):
    config = base_config(bootstrap, kafka=dict(KAFKA),
                         auth={"anonymous": True, "users": [
                             {"name": USER, "password_hash": password_hash,
                              "publish": [".*"], "consume": [".*"]}]})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    config["listeners"]["amqp091"] = {"bind": "127.0.0.1:0"}
    return kbridged_factory(config)


def pika_connect(daemon, user=USER, password=PASSWORD, heartbeat=None):
    host, port = daemon.host_port("amqp")
    params = pika.ConnectionParameters(host=host, port=port,
                                       credentials=pika.PlainCredentials(user, password),
                                       blocked_connection_timeout=30, socket_timeout=10,
                                       connection_attempts=1, heartbeat=heartbeat)
    return pika.BlockingConnection(params)


def drain_until(connection, condition, timeout, what):
    """Run pika's I/O loop until condition() holds, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {what}"
        connection.process_data_events(time_limit=min(left, 0.2))


def test_handshake_declare_and_errors(daemon, uniq):
    conn = pika_connect(daemon)
    assert conn.is_open
    ch = conn.channel()
    ch.exchange_declare(f"ex{uniq}", exchange_type="direct", durable=True)
    ok = ch.queue_declare(f"q{uniq}", durable=True)
    assert ok.method.queue == f"q{uniq}"
    ch.queue_bind(f"q{uniq}", f"ex{uniq}", routing_key="k")
    # passive: exists, and the same properties redeclared are fine
    ch.queue_declare(f"q{uniq}", passive=True)
    ch.exchange_declare(f"ex{uniq}", exchange_type="direct", passive=True)
    # server-named
    named = ch.queue_declare("", exclusive=True).method.queue
    assert named.startswith("amq.gen-")

    # a channel error closes that channel only
    other = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        other.queue_declare(f"missing{uniq}", passive=True)
    assert closed.value.reply_code == 404
    assert closed.value.reply_text == f"NOT_FOUND - no queue 'missing{uniq}' in vhost '/'"
    assert ch.is_open and conn.is_open
    ch.queue_declare(f"q{uniq}", passive=True)

    # redeclared differently: 406 naming the property
    third = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        third.exchange_declare(f"ex{uniq}", exchange_type="fanout", durable=True)
    assert closed.value.reply_code == 406
    assert closed.value.reply_text.startswith("PRECONDITION_FAILED - inequivalent arg 'type'")

    # reserved names
    fourth = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        fourth.exchange_declare(f"amq.x{uniq}", exchange_type="direct")
    assert closed.value.reply_code == 403

    # tx.select on a channel in confirm mode (test_transactions.py has the rest)
    fifth = conn.channel()
    fifth.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        fifth.tx_select()
    assert closed.value.reply_code == 406
    assert "cannot switch from confirm to tx mode" in closed.value.reply_text

    assert ch.is_open
    conn.close()


def test_wrong_credentials_are_refused_with_403(daemon):
    with pytest.raises(pika.exceptions.AMQPConnectionError) as refused:
        pika_connect(daemon, USER, "wrong")
    assert "ACCESS_REFUSED" in repr(refused.value) or "403" in repr(refused.value)
    # the listener and other connections carry on
    conn = pika_connect(daemon)
    assert conn.channel().is_open
    conn.close()


def test_publish_with_confirms_reaches_kafka_with_properties(daemon, bootstrap, uniq):
    count = 300
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.exchange_declare(f"orders{uniq}", exchange_type="direct")
    ch.queue_declare(f"eu{uniq}")
    ch.queue_bind(f"eu{uniq}", f"orders{uniq}", routing_key="eu")
    ch.confirm_delivery()
    for i in range(count):
        props = pika.BasicProperties(content_type="application/json", content_encoding="utf-8",
                                     delivery_mode=2, priority=5, correlation_id=f"c{i}",
                                     reply_to="replies", message_id=f"m{i}", timestamp=1700000000,
                                     type="order", app_id="shop", user_id=USER,
                                     headers={"region": "eu", "n": i, "flag": True})
        # BlockingChannel with confirms: returns once the broker acked it
        ch.basic_publish(f"orders{uniq}", "eu", f'{{"n": {i}}}'.encode(), props)
    conn.close()

    records = read_topic(bootstrap, f"orders{uniq}")
    assert len(records) == count
    bodies = sorted(r.value() for r in records)
    assert bodies == sorted(f'{{"n": {i}}}'.encode() for i in range(count))
    first = next(r for r in records if r.value() == b'{"n": 0}')
    h = header_dict(first.headers())
    assert h["content-type"] == "application/json"
    assert h["content-encoding"] == "utf-8"
    assert h["persistent"] == "true"
    assert h["priority"] == "5"
    assert h["correlation-id"] == "c0"
    assert h["reply-to"] == "replies"
    assert h["message-id"] == "m0"
    assert h["timestamp"] == "1700000000000"
    assert h["type"] == "order"
    assert h["app-id"] == "shop"
    assert h["user-id"] == USER
    assert h["region"] == "eu" and h["n"] == "0" and h["flag"] == "true"
    assert h["kbridge-routing-key"] == "eu"


def test_consume_manual_ack_prefetch_across_three_consumers(daemon, uniq):
    count = 300
    queue = f"work{uniq}"
    setup = pika_connect(daemon)
    setup.channel().queue_declare(queue, durable=True)

    consumers = []
    received = []
    for n in range(3):
        conn = pika_connect(daemon)
        ch = conn.channel()
        ch.basic_qos(prefetch_count=50)

        def on_message(channel, method, properties, body, n=n):
            received.append((n, body))
            channel.basic_ack(method.delivery_tag)

        ch.basic_consume(queue, on_message)  # waits for consume-ok (subscription positioned)
        consumers.append(conn)

    pub = setup.channel()
    pub.confirm_delivery()
    for i in range(count):
        pub.basic_publish("", queue, f"job {i}".encode())

    def all_received():
        for conn in consumers:
            conn.process_data_events(time_limit=0)
        return len(received) >= count

    wait_for(all_received, 60, f"{count} deliveries")
    for conn in consumers:  # nothing more comes: each message once
        conn.process_data_events(time_limit=0.5)
    bodies = [body for _, body in received]
    assert sorted(bodies) == sorted(f"job {i}".encode() for i in range(count))
    assert len(bodies) == len(set(bodies))
    for conn in consumers:
        conn.close()
    setup.close()


def test_nack_requeue_is_redelivered(daemon, uniq):
    queue = f"retry{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.basic_qos(prefetch_count=1)
    seen = []

    def on_message(channel, method, properties, body):
        seen.append((body, method.redelivered, properties.headers))
        if len(seen) == 1:
            channel.basic_nack(method.delivery_tag, requeue=True)
        else:
            channel.basic_ack(method.delivery_tag)

    ch.basic_consume(queue, on_message)
    pub = conn.channel()
    pub.confirm_delivery()
    pub.basic_publish("", queue, b"try me", pika.BasicProperties(headers={"attempt": "x"}))
    drain_until(conn, lambda: len(seen) >= 2, 30, "the redelivery")
    assert seen[0][0] == seen[1][0] == b"try me"
    assert seen[0][1] is False
    assert seen[1][1] is True
    assert seen[1][2]["attempt"] == "x"
    assert "x-delivery-count" not in seen[0][2]
    assert seen[1][2]["x-delivery-count"] == 1
    conn.close()


def test_mandatory_unroutable_is_returned(daemon, uniq):
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.exchange_declare(f"nowhere{uniq}", exchange_type="direct")
    returned = []
    ch.add_on_return_callback(lambda c, method, props, body: returned.append(
        (method.reply_code, method.reply_text, method.exchange, method.routing_key,
         props.correlation_id, body)))
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(f"nowhere{uniq}", "no-key", b"lost?",
                         pika.BasicProperties(correlation_id="r1"), mandatory=True)
    drain_until(conn, lambda: returned, 10, "basic.return")
    assert returned == [(312, "NO_ROUTE", f"nowhere{uniq}", "no-key", "r1", b"lost?")]
    # not mandatory: confirmed and dropped, as RabbitMQ does
    ch.basic_publish(f"nowhere{uniq}", "no-key", b"dropped")
    # an unknown exchange is a channel error 404
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        ch.basic_publish(f"absent{uniq}", "k", b"x")
    assert closed.value.reply_code == 404
    assert closed.value.reply_text == f"NOT_FOUND - no exchange 'absent{uniq}' in vhost '/'"
    assert conn.is_open
    conn.close()


def test_stomp_to_amqp091_with_properties(daemon, uniq):
    queue = f"cross-in{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    got = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append((m, p, b)), auto_ack=True)
    stomp = Client(daemon)
    stomp.conn.send(f"/queue/{queue}", "from stomp", content_type="text/plain",
                    headers={"correlation-id": "s1", "reply-to": "/queue/back", "colour": "blue",
                             "persistent": "true", "priority": "7", "receipt": "r"})
    stomp.wait_receipt("r")
    drain_until(conn, lambda: got, 30, "the STOMP message")
    method, props, body = got[0]
    assert body == b"from stomp"
    assert method.routing_key == queue
    assert method.redelivered is False
    assert props.content_type == "text/plain"
    assert props.correlation_id == "s1"
    assert props.reply_to == "/queue/back"
    assert props.delivery_mode == 2
    assert props.priority == 7
    assert props.headers["colour"] == "blue"
    assert props.message_id  # the core adds one
    stomp.conn.disconnect()
    conn.close()


def test_amqp091_to_stomp_and_amqp10(daemon, uniq):
    topic = f"news{uniq}"
    stomp = Client(daemon)
    stomp.conn.subscribe(f"/topic/{topic}", id="s1", ack="auto", headers={"receipt": "sub"})
    stomp.wait_receipt("sub")
    amqp10 = amqp10_connect(daemon)
    receiver = amqp10.create_receiver(f"/topic/{topic}")

    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", topic, b"hello all",
                     pika.BasicProperties(content_type="text/plain", correlation_id="x1",
                                          message_id="id-1", headers={"colour": "red"}))
    messages = stomp.wait_messages(1)
    frame = messages[0]
    assert frame.body == "hello all"
    assert frame.headers["content-type"] == "text/plain"
    assert frame.headers["correlation-id"] == "x1"
    assert frame.headers["message-id"] == "id-1"
    assert frame.headers["colour"] == "red"

    message = receiver.receive(timeout=30)
    receiver.accept()
    assert isinstance(message, Message)
    assert message.correlation_id == "x1"
    assert message.id == "id-1"
    assert message.content_type == "text/plain"
    assert message.properties["colour"] == "red"
    amqp10.close()
    stomp.conn.disconnect()
    conn.close()


def test_amqp10_still_served_on_the_shared_port(daemon, uniq):
    amqp10 = amqp10_connect(daemon)
    sender = amqp10.create_sender(f"/queue/shared{uniq}")
    sender.send(Message(body=b"1.0 still works"))
    amqp10.close()


def read_frames(sock, timeout=10):
    """Every frame the server sends until it closes: [(type, channel, payload)]."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    frames = []
    while len(data) >= 8:
        size = int.from_bytes(data[3:7], "big")
        frames.append((data[0], int.from_bytes(data[1:3], "big"), data[7:7 + size]))
        assert data[7 + size] == 0xCE
        data = data[8 + size:]
    return frames


def test_wrong_protocol_header_gets_ours(daemon):
    import socket
    host, port = daemon.host_port("amqp091")
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"AMQP\x01\x01\x00\x09")
        s.settimeout(10)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data == b"AMQP\x00\x00\x09\x01"


def test_bad_frame_end_is_501_and_others_carry_on(daemon):
    import socket
    host, port = daemon.host_port("amqp")
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        # a method frame of 4 bytes whose frame-end octet is wrong
        s.sendall(b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x0b\x00")
        frames = read_frames(s)
    assert frames[0][0] == 1 and frames[0][2][:4] == b"\x00\x0a\x00\x0a"  # connection.start
    close = frames[-1]
    assert close[0] == 1 and close[2][:4] == b"\x00\x0a\x00\x32"  # connection.close
    assert int.from_bytes(close[2][4:6], "big") == 501
    assert b"FRAME_ERROR" in close[2]
    conn = pika_connect(daemon)
    assert conn.channel().is_open
    conn.close()


def test_heartbeats_are_negotiated_and_a_silent_client_is_closed(daemon):
    conn = pika_connect(daemon, heartbeat=1)  # tune-ok says 1 s
    assert conn.channel().is_open
    # pika sends heartbeats only while its I/O loop runs: stay silent
    daemon.wait_log(r"missed heartbeats from client, timeout: 1s", timeout=15)
    status, text = daemon.http("/metrics")
    assert "kbridge_amqp091_heartbeat_timeouts_total 1" in text
    with pytest.raises(pika.exceptions.AMQPError):
        conn.process_data_events(time_limit=1)
        conn.channel()


def test_channel_max_is_offered_and_enforced(kbridged_factory, bootstrap, password_hash):
    config = base_config(bootstrap, kafka=dict(KAFKA), amqp091={"channel_max": 2},
                         auth={"anonymous": False, "users": [
                             {"name": USER, "password_hash": password_hash,
                              "publish": [".*"], "consume": [".*"]}]})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    daemon = kbridged_factory(config)
    conn = pika_connect(daemon)
    assert conn._impl.params.channel_max == 2
    conn.channel(1)
    conn.channel(2)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        conn.channel(3)
    assert closed.value.reply_code == 530
    assert closed.value.reply_text == \
        "NOT_ALLOWED - channel 3 is above the negotiated channel_max 2"


def test_fanout_exchange_to_two_declared_queues_and_large_bodies(daemon, uniq):
    """Queues declared and bound over 0-9-1 read their exchange; a body over
    frame_max (128 KiB) travels in several body frames both ways."""
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.exchange_declare(f"fan{uniq}", exchange_type="fanout")
    for q in ("a", "b"):
        ch.queue_declare(f"fan-{q}{uniq}")
        ch.queue_bind(f"fan-{q}{uniq}", f"fan{uniq}")
    got = {"a": [], "b": []}
    for q in ("a", "b"):
        ch.basic_consume(f"fan-{q}{uniq}",
                         lambda c, m, p, b, q=q: (got[q].append(b), c.basic_ack(m.delivery_tag)))
    big = bytes(range(256)) * 1200  # 300 KiB: three body frames
    ch.confirm_delivery()
    ch.basic_publish(f"fan{uniq}", "", b"small")
    ch.basic_publish(f"fan{uniq}", "", big)
    drain_until(conn, lambda: len(got["a"]) == 2 and len(got["b"]) == 2, 30, "both queues")
    assert got["a"] == [b"small", big]
    assert got["b"] == [b"small", big]
    conn.close()


def test_reject_without_requeue_dead_letters(daemon, bootstrap, uniq):
    queue = f"dl{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue)
    seen = []
    ch.basic_consume(queue, lambda c, m, p, b: (seen.append(b),
                                                c.basic_reject(m.delivery_tag, requeue=False)))
    pub = conn.channel()
    pub.confirm_delivery()
    pub.basic_publish("", queue, b"poison", pika.BasicProperties(correlation_id="p1"))
    drain_until(conn, lambda: seen, 30, "the delivery")

    def dead_lettered():
        conn.process_data_events(time_limit=0)
        try:
            return read_topic(bootstrap, f"{queue}.DLQ", timeout=5)
        except Exception:
            return None

    records = wait_for(dead_lettered, 30, f"a record in {queue}.DLQ")
    assert [r.value() for r in records] == [b"poison"]
    h = header_dict(records[0].headers())
    assert h["correlation-id"] == "p1"
    assert "kbridge-dlq-reason" in h
    assert seen == [b"poison"]  # not redelivered
    conn.close()


# ---- bad input, frame by frame (a raw socket speaking 0-9-1 by hand) --------------------

def frame(kind, channel, payload):
    return bytes([kind]) + channel.to_bytes(2, "big") + len(payload).to_bytes(4, "big") + \
        payload + b"\xce"


def method(channel, class_id, method_id, args=b""):
    return frame(1, channel, class_id.to_bytes(2, "big") + method_id.to_bytes(2, "big") + args)


def shortstr(text):
    return bytes([len(text)]) + text


def longstr(data):
    return len(data).to_bytes(4, "big") + data


class RawClient:
    """A 0-9-1 connection driven byte by byte: the handshake with PLAIN, then
    whatever a test sends; recv_frame reads one frame with a deadline."""

    def __init__(self, daemon):
        import socket
        host, port = daemon.host_port("amqp")
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buffer = b""
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        assert self.recv_method()[:2] == (10, 10)  # start
        response = b"\x00" + USER.encode() + b"\x00" + PASSWORD.encode()
        self.sock.sendall(method(0, 10, 11, longstr(b"") + shortstr(b"PLAIN") +
                                 longstr(response) + shortstr(b"en_US")))
        assert self.recv_method()[:2] == (10, 30)  # tune
        self.sock.sendall(method(0, 10, 31, (2047).to_bytes(2, "big") +
                                 (131072).to_bytes(4, "big") + (0).to_bytes(2, "big")))
        self.sock.sendall(method(0, 10, 40, shortstr(b"/") + shortstr(b"") + b"\x00"))
        assert self.recv_method()[:2] == (10, 41)  # open-ok

    def recv_frame(self):
        while True:
            if len(self.buffer) >= 7:
                size = int.from_bytes(self.buffer[3:7], "big")
                if len(self.buffer) >= size + 8:
                    f = (self.buffer[0], int.from_bytes(self.buffer[1:3], "big"),
                         self.buffer[7:7 + size])
                    assert self.buffer[7 + size] == 0xCE
                    self.buffer = self.buffer[size + 8:]
                    return f
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed without a frame"
            self.buffer += chunk

    def recv_method(self):
        """(class, method, channel, args) of the next method frame."""
        kind, channel, payload = self.recv_frame()
        assert kind == 1, kind
        return (int.from_bytes(payload[0:2], "big"), int.from_bytes(payload[2:4], "big"),
                channel, payload[4:])

    def expect_close(self, class_id=10):
        """The reply code and text of the next (connection or channel) close."""
        c, m, channel, args = self.recv_method()
        assert (c, m) == (class_id, 40 if class_id == 20 else 50), (c, m)
        code = int.from_bytes(args[0:2], "big")
        text = args[3:3 + args[2]].decode()
        return code, text

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("send, code, text", [
    # a method on a channel never opened
    (method(5, 60, 10, (0).to_bytes(4, "big") + (10).to_bytes(2, "big") + b"\x00"), 504,
     "CHANNEL_ERROR - expected 'channel.open'"),
    # an unknown class/method
    (method(0, 99, 1), 540, "NOT_IMPLEMENTED - unknown method class 99 method 1"),
    # truncated arguments (channel.open without its reserved shortstr)
    (method(1, 20, 10), 502, "SYNTAX_ERROR - malformed arguments of AMQP_CHANNEL_OPEN_METHOD"),
    # a content body with nothing before it
    (method(1, 20, 10, shortstr(b"")) + frame(3, 1, b"body"), 505,
     "UNEXPECTED_FRAME - content body without a content header"),
    # a content header without basic.publish
    (method(1, 20, 10, shortstr(b"")) + frame(2, 1, b"\x00\x3c\x00\x00" + bytes(8) + b"\x00\x00"),
     505, "UNEXPECTED_FRAME - content header without basic.publish"),
    # a frame larger than the negotiated frame_max
    (bytes([1, 0, 1]) + (200000).to_bytes(4, "big"), 501,
     "FRAME_ERROR - frame size 200008 larger than negotiated maximum 131072"),
])
def test_bad_input_gets_the_right_connection_exception(daemon, send, code, text):
    client = RawClient(daemon)
    client.sock.sendall(send)
    while True:  # skip channel.open-ok when the case opened a channel
        c, m, channel, args = client.recv_method()
        if (c, m) == (20, 11):
            continue
        assert (c, m) == (10, 50), (c, m)
        assert int.from_bytes(args[0:2], "big") == code
        assert args[3:3 + args[2]].decode() == text
        break
    client.close()
    conn = pika_connect(daemon)  # others carry on
    assert conn.channel().is_open
    conn.close()


def test_amqplib_confirm_channel_publish_consume_ack(daemon, uniq):
    """A second 0-9-1 client library: Node.js amqplib (npm, pinned in
    tests/integration/clients/package.json), its ConfirmChannel publishing
    200 messages and a consumer channel with prefetch 10 acking each."""
    import json
    import os
    import shutil
    clients = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients")
    node = shutil.which("node")
    assert node and os.path.isdir(os.path.join(clients, "node_modules", "amqplib")), (
        "amqplib (Node.js) is not installed: run packaging/install-deps.sh --test")
    host, port = daemon.host_port("amqp")
    result = subprocess.run([node, os.path.join(clients, "amqplib_roundtrip.js"),
                             f"amqp://{USER}:{PASSWORD}@{host}:{port}", f"lib-ex{uniq}",
                             f"lib-q{uniq}", "200"],
                            capture_output=True, text=True, timeout=90, cwd=clients)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["confirmed"] == 200 and summary["nacked"] == 0
    assert summary["received"] == 200 and summary["redelivered"] == 0
    assert sorted(summary["bodies"]) == sorted(f"amqplib message {i}" for i in range(200))
    assert sorted(summary["ids"]) == sorted(f"amqplib-{i}" for i in range(200))
    assert set(summary["types"]) == {"demo"}


def test_another_connections_exclusive_queue_is_locked(daemon, uniq):
    owner = pika_connect(daemon)
    queue = owner.channel().queue_declare(f"mine{uniq}", exclusive=True).method.queue
    other = pika_connect(daemon)
    ch = other.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        ch.basic_consume(queue, lambda *a: None)
    assert closed.value.reply_code == 405
    assert closed.value.reply_text.startswith("RESOURCE_LOCKED - ")
    assert other.channel().is_open
    owner.close()
    other.close()


def test_wrong_password_close_text_is_rabbitmqs(daemon):
    import socket
    host, port = daemon.host_port("amqp")
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        response = b"\x00" + USER.encode() + b"\x00wrong"
        s.sendall(method(0, 10, 11, longstr(b"") + shortstr(b"PLAIN") + longstr(response) +
                         shortstr(b"en_US")))
        frames = read_frames(s, timeout=15)
    close = frames[-1][2]
    assert close[:4] == b"\x00\x0a\x00\x32"
    assert int.from_bytes(close[4:6], "big") == 403
    assert close[7:7 + close[6]] == (b"ACCESS_REFUSED - Login was refused using authentication "
                                     b"mechanism PLAIN. For details see the broker logfile.")
