# SPDX-License-Identifier: Apache-2.0
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
from conftest import EXTERNAL_BOOTSTRAP, base_config, metrics, wait_for
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


def daemon_config(bootstrap, password_hash):
    config = base_config(bootstrap, kafka=dict(KAFKA),
                         auth={"anonymous": True, "users": [
                             {"name": USER, "password_hash": password_hash,
                              "publish": [".*"], "consume": [".*"]}]})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    config["listeners"]["amqp091"] = {"bind": "127.0.0.1:0"}
    return config


@pytest.fixture
def daemon(kbridged_factory, bootstrap, password_hash):
    return kbridged_factory(daemon_config(bootstrap, password_hash))


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


def test_consumer_priorities_x_priority(daemon, uniq):
    """RabbitMQ's consumer priorities: the x-priority 10 consumer gets the
    messages while it has prefetch left; the priority 0 one gets them only
    once the higher one is full, and again nothing once it has room."""
    queue = f"prio{uniq}"
    setup = pika_connect(daemon)
    setup.channel().queue_declare(queue, durable=True)
    got = {"high": [], "low": []}
    consumers = {}
    for name, priority, prefetch in (("high", 10, 5), ("low", 0, 100)):
        conn = pika_connect(daemon)
        ch = conn.channel()
        ch.basic_qos(prefetch_count=prefetch)

        def on_message(channel, method, properties, body, name=name):
            got[name].append((body.decode(), method.delivery_tag))

        ch.basic_consume(queue, on_message, arguments={"x-priority": priority})
        consumers[name] = (conn, ch)
    pub = setup.channel()
    pub.confirm_delivery()

    def pump():
        for conn, _ in consumers.values():
            conn.process_data_events(time_limit=0)

    def publish(first, count):
        for i in range(first, first + count):
            pub.basic_publish("", queue, f"m{i}".encode())
        # the low consumer sees nothing of what the high one could take: sync on the total
        wait_for(lambda: pump() or len(got["high"]) + len(got["low"]) >= first + count, 60,
                 f"{first + count} deliveries")

    publish(0, 3)
    assert [b for b, _ in got["high"]] == ["m0", "m1", "m2"] and got["low"] == []
    publish(3, 10)  # the high one fills its prefetch of 5; the rest go to the low one
    assert [b for b, _ in got["high"]] == [f"m{i}" for i in range(5)]
    assert sorted(b for b, _ in got["low"]) == sorted(f"m{i}" for i in range(5, 13))
    # the high one acks everything: it gets the next ones again
    high_conn, high_ch = consumers["high"]
    high_ch.basic_ack(got["high"][-1][1], multiple=True)
    high_conn.process_data_events(time_limit=0)
    wait_for(lambda: metrics(daemon).get(
        f'kbridge_destination_acked_total{{kind="queue",destination="{queue}"}}', 0) >= 5, 30,
        "the five acks applied")
    publish(13, 2)
    assert [b for b, _ in got["high"]][5:] == ["m13", "m14"]
    assert len(got["low"]) == 8
    for conn, _ in consumers.values():
        conn.close()
    setup.close()


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


def deep_table(depth):
    inner = (0).to_bytes(4, "big")
    for _ in range(depth):
        body = shortstr(b"k") + b"F" + inner
        inner = len(body).to_bytes(4, "big") + body
    return inner


class RawClient:
    """A 0-9-1 connection driven byte by byte: the handshake with PLAIN, then
    whatever a test sends; recv_frame reads one frame with a deadline."""

    def __init__(self, daemon, client_properties=b""):
        import socket
        host, port = daemon.host_port("amqp")
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buffer = b""
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        assert self.recv_method()[:2] == (10, 10)  # start
        response = b"\x00" + USER.encode() + b"\x00" + PASSWORD.encode()
        self.sock.sendall(method(0, 10, 11, longstr(client_properties) + shortstr(b"PLAIN") +
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
    # a headers table nested 100 deep (librabbitmq's decoder would recurse without a limit)
    (method(1, 20, 10, shortstr(b"")) +
     method(1, 60, 40, b"\x00\x00" + shortstr(b"") + shortstr(b"q") + b"\x00") +
     frame(2, 1, b"\x00\x3c\x00\x00" + bytes(8) + b"\x20\x00" + deep_table(100)), 502,
     "SYNTAX_ERROR - malformed headers table (or nested deeper than 64)"),
    # queue.declare arguments nested 100 deep (method arguments are checked as headers are)
    (method(1, 20, 10, shortstr(b"")) +
     method(1, 50, 10, b"\x00\x00" + shortstr(b"q") + b"\x00" + deep_table(100)), 502,
     "SYNTAX_ERROR - malformed arguments table of AMQP_QUEUE_DECLARE_METHOD "
     "(or nested deeper than 64)"),
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


# ---- direct reply-to (amq.rabbitmq.reply-to on DESIGN §7's temporary queues) ------------

class PikaResponder:
    """A pika responder in its own thread and connection: consumes `queue`,
    answers each request to its reply_to on the default exchange (what
    RabbitMQ RPC servers do) with the request's correlation_id, acks it."""

    def __init__(self, daemon, queue):
        import threading
        self.daemon, self.queue = daemon, queue
        self.answered = 0
        self.reply_tos = set()
        self.error = None
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        assert self.ready.wait(30), "the responder did not start"
        assert self.error is None, self.error

    def run(self):
        try:
            conn = pika_connect(self.daemon)
            ch = conn.channel()
            ch.queue_declare(self.queue)
            ch.basic_qos(prefetch_count=50)

            def on_request(channel, method, props, body):
                self.reply_tos.add(props.reply_to)
                channel.basic_publish("", props.reply_to, b"re:" + body,
                                      pika.BasicProperties(correlation_id=props.correlation_id))
                channel.basic_ack(method.delivery_tag)
                self.answered += 1

            ch.basic_consume(self.queue, on_request)
            self.ready.set()
            while not self.stop.is_set():
                conn.process_data_events(time_limit=0.1)
            conn.close()
        except Exception as e:  # reported by close()
            self.error = e
            self.ready.set()

    def close(self):
        self.stop.set()
        self.thread.join(30)
        assert self.error is None, self.error


def test_direct_reply_to_pika_rpc_1000_round_trips(daemon, uniq):
    queue = f"rpc{uniq}"
    responder = PikaResponder(daemon, queue)
    conn = pika_connect(daemon)
    ch = conn.channel()
    replies = []
    ch.basic_consume("amq.rabbitmq.reply-to",
                     lambda c, m, p, b: replies.append((m, p, b)), auto_ack=True)
    try:
        for i in range(1000):
            ch.basic_publish("", queue, f"ping {i}".encode(),
                             pika.BasicProperties(reply_to="amq.rabbitmq.reply-to",
                                                  correlation_id=f"c{i}"))
            drain_until(conn, lambda: len(replies) > i, 30, f"reply {i}")
            method, props, body = replies[i]
            assert body == f"re:ping {i}".encode()
            assert props.correlation_id == f"c{i}"
            assert method.exchange == ""
            assert method.routing_key.startswith("/reply-queue/")
            # no kbridge routing data reaches the client
            assert not any(k.startswith(("kbridge-", "kafka_")) for k in (props.headers or {}))
    finally:
        responder.close()
    assert len(replies) == 1000 and responder.answered == 1000
    # the request carried the one token-bearing address of this channel's temporary queue
    assert len(responder.reply_tos) == 1
    assert next(iter(responder.reply_tos)).startswith("/reply-queue/")
    conn.close()


def test_direct_reply_to_rules_are_rabbitmqs(daemon, uniq):
    conn = pika_connect(daemon)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=False)
    assert (closed.value.reply_code, closed.value.reply_text) == (
        406, "PRECONDITION_FAILED - reply consumer cannot acknowledge")
    ch = conn.channel()
    ch.queue_declare(f"rq{uniq}")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        ch.basic_publish("", f"rq{uniq}", b"x",
                         pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
        ch.queue_declare(f"rq{uniq}", passive=True)  # the error arrives before this answer
    assert (closed.value.reply_code, closed.value.reply_text) == (
        406, "PRECONDITION_FAILED - fast reply consumer does not exist")
    ch = conn.channel()
    ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True)
    assert (closed.value.reply_code, closed.value.reply_text) == (
        406, "PRECONDITION_FAILED - reply consumer already set")
    assert conn.is_open
    conn.close()


def test_direct_reply_to_stomp_responder_answers_pika_requester(daemon, uniq):
    queue = f"rpc-s{uniq}"
    responder = Client(daemon)
    responder.subscribe(f"/queue/{queue}", "rpc", ack="auto", receipt="sub")
    conn = pika_connect(daemon)
    ch = conn.channel()
    replies = []
    ch.basic_consume("amq.rabbitmq.reply-to",
                     lambda c, m, p, b: replies.append((p, b)), auto_ack=True)
    for i in range(5):
        ch.basic_publish("", queue, f"q{i}".encode(),
                         pika.BasicProperties(reply_to="amq.rabbitmq.reply-to",
                                              correlation_id=f"s{i}"))
    frames = responder.wait_messages(5)
    for frame in frames:
        assert frame.headers["reply-to"].startswith("/reply-queue/")
        responder.send(frame.headers["reply-to"], "re:" + frame.body,
                       headers={"correlation-id": frame.headers["correlation-id"]})
    drain_until(conn, lambda: len(replies) >= 5, 30, "5 replies")
    assert sorted((p.correlation_id, b) for p, b in replies) == [
        (f"s{i}", f"re:q{i}".encode()) for i in range(5)]
    responder.close()
    conn.close()


def test_direct_reply_to_pika_responder_answers_stomp_requester(daemon, uniq):
    queue = f"rpc-p{uniq}"
    responder = PikaResponder(daemon, queue)
    requester = Client(daemon)
    try:
        for i in range(5):
            requester.send(f"/queue/{queue}", f"q{i}",
                           headers={"reply-to": "/temp-queue/answers", "correlation-id": f"p{i}"})
        frames = requester.wait_messages(5)
    finally:
        responder.close()
    assert sorted((f.headers["correlation-id"], f.body) for f in frames) == [
        (f"p{i}", f"re:q{i}") for i in range(5)]
    assert all(f.headers["destination"] == "/temp-queue/answers" for f in frames)
    requester.close()


# ---- typed headers: every field type, exact over 0-9-1, natural elsewhere ---------------

def field(kind, payload):
    return kind + payload


def table(entries):
    """A 0-9-1 field table from (name, encoded value) pairs."""
    body = b"".join(shortstr(name.encode()) + value for name, value in entries)
    return len(body).to_bytes(4, "big") + body


EVERY_TYPE = [  # (name, encoded value, what STOMP and Kafka readers see)
    ("longstr", field(b"S", longstr("grüße".encode())), "grüße"),
    ("bytes", field(b"x", longstr(b"\x01\x02ab")), "\x01\x02ab"),
    ("bool", field(b"t", b"\x01"), "true"),
    ("i8", field(b"b", (-8).to_bytes(1, "big", signed=True)), "-8"),
    ("u8", field(b"B", (200).to_bytes(1, "big")), "200"),
    ("i16", field(b"s", (-1600).to_bytes(2, "big", signed=True)), "-1600"),
    ("u16", field(b"u", (60000).to_bytes(2, "big")), "60000"),
    ("i32", field(b"I", (-320000).to_bytes(4, "big", signed=True)), "-320000"),
    ("u32", field(b"i", (4000000000).to_bytes(4, "big")), "4000000000"),
    ("i64", field(b"l", (-(1 << 40)).to_bytes(8, "big", signed=True)), str(-(1 << 40))),
    ("f32", field(b"f", __import__("struct").pack(">f", 1.5)), "1.5"),
    ("f64", field(b"d", __import__("struct").pack(">d", 0.1)), "0.10000000000000001"),
    ("decimal", field(b"D", b"\x02" + (1234).to_bytes(4, "big")), "12.34"),
    ("stamp", field(b"T", (1700000000).to_bytes(8, "big")), "1700000000"),
    ("void", field(b"V", b""), ""),
    ("table", field(b"F", table([("a", field(b"I", (1).to_bytes(4, "big"))),
                                 ("b", field(b"S", longstr(b"two")))])), '{"a":1,"b":"two"}'),
    ("array", field(b"A", len(field(b"t", b"\x00") + field(b"V", b"")).to_bytes(4, "big") +
                    field(b"t", b"\x00") + field(b"V", b"")), "[false,null]"),
]


def content_header_headers(payload):
    """The headers table (encoded, with its length) of a basic content header."""
    flags = int.from_bytes(payload[12:14], "big")
    at = 14
    for bit in (0x8000, 0x4000):  # content-type, content-encoding: shortstrs before headers
        if flags & bit:
            at += 1 + payload[at]
    assert flags & 0x2000, "no headers table"
    size = int.from_bytes(payload[at:at + 4], "big")
    return payload[at:at + 4 + size]


def test_every_header_field_type_round_trips_exactly(daemon, bootstrap, uniq):
    queue = f"typed{uniq}"
    topic = f"typed-t{uniq}"
    headers = table([(name, value) for name, value, _ in EVERY_TYPE])
    # a STOMP subscriber of the same messages, on a topic bound queue-free
    stomp = Client(daemon)
    stomp.subscribe(f"/topic/{topic}", "s", receipt="sub")

    client = RawClient(daemon)
    client.sock.sendall(method(1, 20, 10, shortstr(b"")))
    assert client.recv_method()[:2] == (20, 11)
    client.sock.sendall(method(1, 50, 10, b"\x00\x00" + shortstr(queue.encode()) + b"\x00" +
                               table([])))  # queue.declare
    assert client.recv_method()[:2] == (50, 11)
    client.sock.sendall(method(1, 60, 20, b"\x00\x00" + shortstr(queue.encode()) +
                               shortstr(b"") + b"\x02" + table([])))  # basic.consume no-ack
    assert client.recv_method()[:2] == (60, 21)
    for exchange, key in (("", queue), ("amq.topic", topic)):
        body = b"typed"
        properties = (0x2000 | 0x0040).to_bytes(2, "big") + headers + (1700000001).to_bytes(8, "big")
        client.sock.sendall(method(1, 60, 40, b"\x00\x00" + shortstr(exchange.encode()) +
                                   shortstr(key.encode()) + b"\x00") +
                            frame(2, 1, b"\x00\x3c\x00\x00" + len(body).to_bytes(8, "big") +
                                  properties) +
                            frame(3, 1, body))
    c, m, channel, args = client.recv_method()
    assert (c, m) == (60, 60)  # basic.deliver
    kind, _, payload = client.recv_frame()
    assert kind == 2
    assert content_header_headers(payload) == headers  # every type, value and order
    assert (1700000001).to_bytes(8, "big") in payload  # the timestamp, after the table
    kind, _, body = client.recv_frame()
    assert (kind, body) == (3, b"typed")
    client.close()

    # pika decodes them to the values it knows (it encodes no floats)
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"pika", pika.BasicProperties(headers={
        "s": "x", "n": 7, "big": 1 << 40, "t": True, "none": None,
        "list": [1, "a"], "nested": {"k": {"deep": False}},
        "when": __import__("datetime").datetime(2024, 1, 2, 3, 4, 5),
        "price": __import__("decimal").Decimal("9.99"), "raw": b"\x00\xff"}))
    got = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append(p.headers), auto_ack=True)
    drain_until(conn, lambda: got, 30, "the pika message")
    assert got[0] == {"s": "x", "n": 7, "big": 1 << 40, "t": True, "none": None,
                      "list": [1, "a"], "nested": {"k": {"deep": False}},
                      "when": __import__("datetime").datetime(2024, 1, 2, 3, 4, 5),
                      "price": __import__("decimal").Decimal("9.99"), "raw": b"\x00\xff"}
    conn.close()

    # STOMP sees natural text values, and none of kbridge's 0-9-1 data
    frame_in = stomp.wait_messages(1)[0]
    for name, _, text in EVERY_TYPE:
        if name != "bytes":  # stomp.py decodes frames as UTF-8 text
            assert frame_in.headers[name] == text, name
    assert not any(k.startswith("kbridge-amqp091-") for k in frame_in.headers)
    stomp.close()

    # a native Kafka reader: the same text values (and the typed table beside them)
    records = read_topic(bootstrap, topic)
    assert len(records) == 1
    h = {k: v for k, v in (records[0].headers() or [])}
    for name, _, text in EVERY_TYPE:
        assert h[name] == text.encode("utf-8") if name != "bytes" else h[name] == b"\x01\x02ab"
    assert h["kbridge-amqp091-headers"] == headers


def test_deliver_names_the_exchange_and_routing_key(daemon, uniq):
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.exchange_declare(f"dx{uniq}", exchange_type="topic")
    ch.queue_declare(f"dq{uniq}")
    ch.queue_bind(f"dq{uniq}", f"dx{uniq}", routing_key="a.*")
    ch.queue_declare(f"plain{uniq}")
    got = []
    ch.basic_consume(f"dq{uniq}", lambda c, m, p, b: got.append(m), auto_ack=True)
    ch.basic_consume(f"plain{uniq}", lambda c, m, p, b: got.append(m), auto_ack=True)
    pub = conn.channel()
    pub.confirm_delivery()
    pub.basic_publish(f"dx{uniq}", "a.b", b"1",
                      pika.BasicProperties(delivery_mode=1, expiration="60000"))
    pub.basic_publish("", f"plain{uniq}", b"2")
    drain_until(conn, lambda: len(got) >= 2, 30, "two deliveries")
    by_queue = sorted((m.exchange, m.routing_key) for m in got)
    assert by_queue == sorted([(f"dx{uniq}", "a.b"), ("", f"plain{uniq}")])
    conn.close()


def test_basic_properties_round_trip_unchanged(daemon, uniq):
    queue = f"props{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue)
    got = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append(p), auto_ack=True)
    pub = conn.channel()
    pub.confirm_delivery()
    sent = pika.BasicProperties(content_type="text/plain", content_encoding="utf-8",
                                delivery_mode=1, priority=3, correlation_id="c",
                                reply_to="r", expiration="60000", message_id="m",
                                timestamp=1700000000, type="t", user_id=USER, app_id="a",
                                headers={"h": "v"})
    pub.basic_publish("", queue, b"p", sent)
    drain_until(conn, lambda: got, 30, "the message")
    p = got[0]
    for name in ("content_type", "content_encoding", "delivery_mode", "priority",
                 "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
                 "user_id", "app_id", "headers"):
        assert getattr(p, name) == getattr(sent, name), name
    # nothing set: nothing comes back (the core's message-id is for other protocols)
    pub.basic_publish("", queue, b"bare")
    drain_until(conn, lambda: len(got) >= 2, 30, "the bare message")
    bare = got[1]
    assert (bare.message_id, bare.delivery_mode, bare.headers, bare.expiration) == (
        None, None, None, None)
    assert bare.user_id == USER  # DESIGN §3: always the authenticated user (RabbitMQ: absent)
    conn.close()


# ---- basic.recover, server-sent basic.cancel, exclusive consumers, confirms, blocked -----

def test_basic_recover_redelivers_the_unacked(daemon, uniq):
    queue = f"recover{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.basic_qos(prefetch_count=10)
    seen = []
    ch.basic_consume(queue, lambda c, m, p, b: seen.append((b, m.redelivered, m.delivery_tag)))
    pub = conn.channel()
    pub.confirm_delivery()
    for i in range(3):
        pub.basic_publish("", queue, f"r{i}".encode())
    drain_until(conn, lambda: len(seen) >= 3, 30, "3 deliveries")
    ch.basic_ack(seen[0][2])  # r0 acked; r1 and r2 not
    ch.basic_recover(requeue=True)
    drain_until(conn, lambda: len(seen) >= 5, 30, "2 redeliveries")
    assert sorted(b for b, _, _ in seen[:3]) == [b"r0", b"r1", b"r2"]
    assert sorted((b, r) for b, r, _ in seen[3:]) == [(b"r1", True), (b"r2", True)]
    for _, _, tag in seen[3:]:
        ch.basic_ack(tag)
    conn.process_data_events(time_limit=0.5)
    assert len(seen) == 5
    conn.close()


def test_declare_ok_counts_the_messages_ready_in_kafka(daemon, uniq):
    """queue.declare-ok's message_count (issue 14): the queue's depth in
    Kafka, from its group's committed offsets, as pika's
    `queue_declare(...).method.message_count` reads it for monitoring."""
    queue = f"counted{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    assert ch.queue_declare(queue, durable=True).method.message_count == 0
    ch.confirm_delivery()
    for i in range(7):
        ch.basic_publish("", queue, f"c{i}".encode())
    assert ch.queue_declare(queue, passive=True).method.message_count == 7
    assert ch.queue_declare(queue, durable=True).method.message_count == 7  # redeclare too
    # consume and ack 3: once the group commits, 4 are left
    got = []
    ch.basic_qos(prefetch_count=3)
    ch.basic_consume(queue, lambda c, m, p, b: got.append(m.delivery_tag))
    drain_until(conn, lambda: len(got) >= 3, 30, "3 deliveries")
    for delivery_tag in got[:3]:  # later deliveries stay unacked: still counted
        ch.basic_ack(delivery_tag)
    wait_for(lambda: ch.queue_declare(queue, passive=True).method.message_count == 4, 30,
             "declare-ok to count 4")
    conn.close()


def test_queue_delete_from_another_connection_cancels_consumers(daemon, uniq):
    queue = f"gone{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue)
    ok = ch.queue_declare(queue, passive=True)
    assert ok.method.consumer_count == 0 and ok.method.message_count == 0
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(queue, lambda *a: None)
    # declare-ok counts this node's consumers
    assert ch.queue_declare(queue, passive=True).method.consumer_count == 1
    other = pika_connect(daemon)
    other.channel().queue_delete(queue)
    drain_until(conn, lambda: cancelled, 30, "basic.cancel from the server")
    assert cancelled == [tag]
    assert ch.is_open and conn.is_open  # the channel carries on
    ch.queue_declare(f"after{uniq}")
    other.close()
    conn.close()


def test_exclusive_consumer_refuses_others_with_403(daemon, uniq):
    queue = f"excl{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.basic_consume(queue, lambda *a: None, exclusive=True,
                     arguments={"x-priority": 5})  # x-priority accepted
    other = pika_connect(daemon)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        other.channel().basic_consume(queue, lambda *a: None)
    assert (closed.value.reply_code, closed.value.reply_text) == (
        403, f"ACCESS_REFUSED - queue '{queue}' in vhost '/' in exclusive use")
    # and an exclusive consumer is refused while another consumer exists
    shared = f"shared{uniq}"
    ch.queue_declare(shared)
    ch.basic_consume(shared, lambda *a: None)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        other.channel().basic_consume(shared, lambda *a: None, exclusive=True)
    assert closed.value.reply_code == 403
    assert other.is_open
    conn.close()
    # the exclusive consumer's connection is gone: the queue is free again
    ch = other.channel()
    ch.basic_consume(queue, lambda *a: None, exclusive=True)
    other.close()


def test_exclusive_consumer_refuses_stomp_and_amqp10_subscribers(daemon, uniq):
    """Exclusivity is the core's, whatever the protocol (architecture §12):
    STOMP gets an ERROR and AMQP 1.0 a refused attach while a 0-9-1 exclusive
    consumer holds the queue; a 0-9-1 exclusive consumer is refused while a
    STOMP subscriber reads it."""
    from proton.utils import LinkDetached
    queue = f"excl{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue)
    tag = ch.basic_consume(queue, lambda *a: None, exclusive=True)
    stomp = Client(daemon)
    amqp10 = amqp10_connect(daemon)
    try:
        stomp.conn.subscribe(f"/queue/{queue}", id="s1", ack="client")
        error = stomp.wait_error()
        assert error.headers["message"] == "access_refused", error.headers
        assert f"queue '{queue}' in vhost '/' in exclusive use" in error.body, error.body
        with pytest.raises(LinkDetached) as refused:
            amqp10.create_receiver(f"/queue/{queue}", credit=1)
        assert "amqp:resource-locked" in str(refused.value), refused.value
        assert f"queue '{queue}' in vhost '/' in exclusive use" in str(refused.value)
        ch.basic_cancel(tag)
        # free again: a STOMP subscriber now holds it against exclusive consumers
        reader = Client(daemon)
        try:
            reader.subscribe(f"/queue/{queue}", "s1", receipt="r1")
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
                conn.channel().basic_consume(queue, lambda *a: None, exclusive=True)
            assert (closed.value.reply_code, closed.value.reply_text) == (
                403, f"ACCESS_REFUSED - queue '{queue}' in vhost '/' in exclusive use")
        finally:
            reader.close()
    finally:
        stomp.close()
        amqp10.close()
        conn.close()


def test_confirms_of_consecutive_tags_are_coalesced_with_multiple(daemon, uniq):
    """pika's BlockingChannel waits for each confirm, so a raw client
    pipelines 300 publishes and reads the basic.ack frames: every tag is
    confirmed exactly once, in fewer frames, some with multiple set."""
    queue = f"multi{uniq}"
    count = 300
    client = RawClient(daemon)
    client.sock.sendall(method(1, 20, 10, shortstr(b"")))
    assert client.recv_method()[:2] == (20, 11)
    client.sock.sendall(method(1, 50, 10, b"\x00\x00" + shortstr(queue.encode()) + b"\x00" +
                               table([])))
    assert client.recv_method()[:2] == (50, 11)
    client.sock.sendall(method(1, 85, 10, b"\x00"))  # confirm.select
    assert client.recv_method()[:2] == (85, 11)
    publish = (method(1, 60, 40, b"\x00\x00" + shortstr(b"") + shortstr(queue.encode()) + b"\x00") +
               frame(2, 1, b"\x00\x3c\x00\x00" + (1).to_bytes(8, "big") + b"\x00\x00") +
               frame(3, 1, b"m"))
    client.sock.sendall(publish * count)
    confirmed, frames, multiples = set(), 0, 0
    while len(confirmed) < count:
        c, m, channel, args = client.recv_method()
        assert (c, m) == (60, 80), (c, m)  # basic.ack; no nack
        tag, multiple = int.from_bytes(args[0:8], "big"), args[8] & 1
        frames += 1
        covered = set(range(max(confirmed, default=0) + 1, tag + 1)) if multiple else {tag}
        assert not covered & confirmed
        confirmed |= covered
        multiples += multiple
    assert confirmed == set(range(1, count + 1))
    assert multiples > 0 and frames < count
    client.close()


def test_connection_blocked_while_unconfirmed_at_the_limit(kbridged_factory, bootstrap,
                                                          password_hash, uniq):
    config = base_config(bootstrap, kafka=dict(KAFKA), limits={"max_unconfirmed": 1},
                         auth={"anonymous": True, "users": [
                             {"name": USER, "password_hash": password_hash,
                              "publish": [".*"], "consume": [".*"]}]})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    daemon = kbridged_factory(config)
    capabilities = table([("capabilities", field(b"F", table([
        ("connection.blocked", field(b"t", b"\x01"))])))])
    client = RawClient(daemon, client_properties=capabilities[4:])
    client.sock.sendall(method(1, 20, 10, shortstr(b"")))
    assert client.recv_method()[:2] == (20, 11)
    client.sock.sendall(method(1, 85, 10, b"\x00"))
    assert client.recv_method()[:2] == (85, 11)
    client.sock.sendall(method(1, 60, 40, b"\x00\x00" + shortstr(b"amq.topic") +
                               shortstr(f"blk{uniq}".encode()) + b"\x00") +
                        frame(2, 1, b"\x00\x3c\x00\x00" + (1).to_bytes(8, "big") + b"\x00\x00") +
                        frame(3, 1, b"m"))
    seen = []
    while (10, 61) not in seen or (60, 80) not in seen:
        c, m, channel, args = client.recv_method()
        seen.append((c, m))
    # blocked at the limit first; unblocked and the confirm once Kafka answered
    assert seen[0] == (10, 60)
    assert sorted(seen) == [(10, 60), (10, 61), (60, 80)]
    client.close()
    # a client without the capability is not told
    plain = RawClient(daemon)
    plain.sock.sendall(method(1, 20, 10, shortstr(b"")))
    assert plain.recv_method()[:2] == (20, 11)
    plain.sock.sendall(method(1, 85, 10, b"\x00"))
    assert plain.recv_method()[:2] == (85, 11)
    plain.sock.sendall(method(1, 60, 40, b"\x00\x00" + shortstr(b"amq.topic") +
                              shortstr(f"blk{uniq}".encode()) + b"\x00") +
                       frame(2, 1, b"\x00\x3c\x00\x00" + (1).to_bytes(8, "big") + b"\x00\x00") +
                       frame(3, 1, b"m"))
    assert plain.recv_method()[:2] == (60, 80)
    plain.close()


def test_basic_get_three_messages_then_get_empty(daemon, uniq):
    queue = f"get{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue)
    # the first get of a queue on a channel makes the channel a reader of it
    # (its consumer group): nothing is there yet
    method, props, body = ch.basic_get(queue)
    assert method is None
    pub = conn.channel()
    pub.confirm_delivery()
    for i in range(3):
        pub.basic_publish("", queue, f"g{i}".encode(),
                          pika.BasicProperties(correlation_id=f"c{i}"))
    got = []
    deadline = time.monotonic() + 30
    while not got:  # until the records are fetched (a deadline, not a sleep)
        assert time.monotonic() < deadline, "no get-ok"
        method, props, body = ch.basic_get(queue)
        if method:
            got.append((method, props, body))
    while len(got) < 3:
        method, props, body = ch.basic_get(queue)
        assert method is not None, f"get-empty after {len(got)}"
        got.append((method, props, body))
    assert [b for _, _, b in got] == [b"g0", b"g1", b"g2"]
    assert [p.correlation_id for _, p, _ in got] == ["c0", "c1", "c2"]
    # message_count: the ready count on this node's member of the group,
    # from the end offsets of its last fetch; the first records may have come
    # in a fetch made before the others were published (exact counts:
    # test_get_ok_message_count_*)
    counts = [m.message_count for m, _, _ in got]
    assert all(count <= 2 - i for i, count in enumerate(counts)), counts
    assert counts[2] == 0
    assert all(m.routing_key == queue and m.exchange == "" for m, _, _ in got)
    assert ch.basic_get(queue) == (None, None, None)  # get-empty
    # acked gets are settled; an unacked one comes back after recover
    ch.basic_ack(got[0][0].delivery_tag)
    ch.basic_ack(got[1][0].delivery_tag)
    ch.basic_recover(requeue=True)
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, "g2 not redelivered"
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method:
            break
    assert (body, method.redelivered) == (b"g2", True)
    assert ch.basic_get(queue) == (None, None, None)
    conn.close()


def publish_confirmed(conn, queue, bodies):
    """Publish to the default exchange with confirms (each in Kafka when this returns)."""
    pub = conn.channel()
    pub.confirm_delivery()
    for body in bodies:
        pub.basic_publish("", queue, body)
    pub.close()


def first_get(ch, queue, auto_ack=False, timeout=30):
    """basic.get until one message comes: the first get of a queue on a
    channel waits for its group's assignment and fetch (a deadline, not a
    sleep). Returns pika's (method, properties, body)."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"no get-ok from {queue}"
        method, props, body = ch.basic_get(queue, auto_ack=auto_ack)
        if method:
            return method, props, body


def gets_until_empty(ch, queue, first, auto_ack):
    """The first get-ok, then basic.get (acking each unless auto_ack) until
    get-empty: [(body, message_count)] in order."""
    got = []
    method, _, body = first
    while method is not None:
        got.append((body, method.message_count))
        if not auto_ack:
            ch.basic_ack(method.delivery_tag)
        method, _, body = ch.basic_get(queue, auto_ack=auto_ack)
    return got


@pytest.mark.parametrize("auto_ack", [False, True], ids=["manual-ack", "no-ack"])
def test_get_ok_message_count_is_exact(daemon, uniq, auto_ack):
    """RabbitMQ's get-ok message_count: the messages still ready after the
    one handed out, so `while message_count > 0` drains a queue. 20
    confirmed messages count down 19, 18, ... 0, then get-empty."""
    queue, n = f"getcount{uniq}", 20
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue)
    publish_confirmed(conn, queue, [f"m{i}".encode() for i in range(n)])
    got = gets_until_empty(ch, queue, first_get(ch, queue, auto_ack), auto_ack)
    assert got == [(f"m{i}".encode(), n - 1 - i) for i in range(n)]
    assert ch.basic_get(queue, auto_ack=auto_ack) == (None, None, None)
    conn.close()


def test_get_ok_message_count_leaves_out_unacked_and_counts_requeued(daemon, uniq):
    """As RabbitMQ counts: a get not acknowledged yet is not ready (it is
    unacked); nacked with requeue it is ready again and comes back first."""
    queue = f"getnack{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue)
    publish_confirmed(conn, queue, [f"m{i}".encode() for i in range(5)])
    m0, _, body0 = first_get(ch, queue)
    m1, _, body1 = ch.basic_get(queue)
    assert (body0, m0.message_count, body1, m1.message_count) == (b"m0", 4, b"m1", 3)
    ch.basic_nack(m0.delivery_tag, requeue=True)  # m0 ready again: 4 ready
    again, _, body = ch.basic_get(queue)
    assert (body, again.redelivered, again.message_count) == (b"m0", True, 3)
    ch.basic_ack(again.delivery_tag)
    ch.basic_ack(m1.delivery_tag)
    got = gets_until_empty(ch, queue, ch.basic_get(queue), auto_ack=False)
    assert got == [(b"m2", 2), (b"m3", 1), (b"m4", 0)]
    conn.close()


def test_get_ok_message_count_continues_from_the_committed_position(kbridged_factory, bootstrap,
                                                                    password_hash, uniq):
    """Half the queue was got and acked by an earlier session on a node that
    stopped (its acks committed, one unacked get released); a new node's
    member of the group starts at the committed offset and counts what is
    left from there: 9 .. 0 after the 11th message."""
    config = daemon_config(bootstrap, password_hash)
    first = kbridged_factory(config, name="first-session")
    queue, n = f"getresume{uniq}", 20
    conn = pika_connect(first)
    ch = conn.channel()
    ch.queue_declare(queue)
    publish_confirmed(conn, queue, [f"m{i}".encode() for i in range(n)])
    method, _, body = first_get(ch, queue)
    earlier = []
    for _ in range(10):
        earlier.append((body, method.message_count))
        ch.basic_ack(method.delivery_tag)
        method, _, body = ch.basic_get(queue)
    assert earlier == [(f"m{i}".encode(), n - 1 - i) for i in range(10)]
    assert (body, method.message_count) == (b"m10", 9)  # not acked: released at close
    conn.close()
    assert first.stop() == 0  # a clean stop: every ack is committed first

    second = kbridged_factory(config, name="second-session")
    conn = pika_connect(second)
    ch = conn.channel()
    got = gets_until_empty(ch, queue, first_get(ch, queue), auto_ack=False)
    assert got == [(f"m{i}".encode(), n - 1 - i) for i in range(10, n)]
    conn.close()


def test_direct_reply_to_amqp10_and_native_kafka_responders_answer_pika(daemon, bootstrap, uniq):
    """The request's reply_to is a real reply address: an AMQP 1.0 responder
    sends to it, a native Kafka responder (Spring's @SendTo) produces to
    kafka_replyTopic with kafka_correlationId only, and pika's
    amq.rabbitmq.reply-to consumer gets both answers with its correlation_id."""
    from amqp_client import amqp_url, run_in_thread
    from test_request_reply import AmqpResponder, NativeResponder
    amqp_queue, native_topic = f"rpc-a{uniq}", f"rpc-n{uniq}"
    amqp_responder = AmqpResponder(amqp_url(daemon), amqp_queue)
    run_in_thread(amqp_responder)
    assert amqp_responder.ready.wait(30)
    daemon.wait_log(rf"consumer kbridge\.q\.{amqp_queue}: assigned [1-9]", timeout=60)
    native_responder = NativeResponder(bootstrap, native_topic)
    conn = pika_connect(daemon)
    ch = conn.channel()
    replies = []
    ch.basic_consume("amq.rabbitmq.reply-to",
                     lambda c, m, p, b: replies.append((p.correlation_id, b)), auto_ack=True)
    try:
        for i in range(5):
            for key in (amqp_queue, native_topic):
                ch.basic_publish("", key, f"{key}-{i}".encode(),
                                 pika.BasicProperties(reply_to="amq.rabbitmq.reply-to",
                                                      correlation_id=f"{key}-c{i}"))
        drain_until(conn, lambda: len(replies) >= 10, 60, "10 replies")
    finally:
        native_responder.close()
    assert sorted(replies) == sorted(
        (f"{key}-c{i}", f"re:{key}-{i}".encode())
        for i in range(5) for key in (amqp_queue, native_topic))
    conn.close()


def test_full_kafka_producer_queue_holds_publishes_and_blocks_the_connection(
        kbridged_factory, devkafka, password_hash, uniq):
    """librdkafka's producer queue full (5 records, a broker answering
    every request 300 ms late): publishes are held, not refused or dropped;
    pika hears connection.blocked, then connection.unblocked once Kafka has
    room; every message is in Kafka once and in order (architecture §12
    "Backpressure"). Before, each publish past the queue's room was nacked,
    or dropped without confirms."""
    config = base_config(devkafka.bootstrap,
                         kafka={**KAFKA, "producer": {"queue.buffering.max.messages": "5"}},
                         limits={"max_unconfirmed": 1000},
                         auth={"users": [{"name": USER, "password_hash": password_hash,
                                          "publish": [".*"], "consume": [".*"]}]})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    daemon = kbridged_factory(config)
    conn = pika_connect(daemon)
    blocked, unblocked = [], []
    conn.add_on_connection_blocked_callback(lambda c, m: blocked.append(m.method.reason))
    conn.add_on_connection_unblocked_callback(lambda c, m: unblocked.append(True))
    try:
        topic = f"held{uniq}"
        confirming = conn.channel()
        confirming.confirm_delivery()
        confirming.queue_declare(topic)
        confirming.basic_publish("", topic, b"warm-up")  # returns once Kafka confirmed it
        assert devkafka.command("broker all rtt 300") == "ok"
        try:
            channel = conn.channel()
            for i in range(100):
                channel.basic_publish("", topic, f"m{i}".encode())
            drain_until(conn, lambda: blocked, 30, "connection.blocked")
            assert blocked == ["kbridge: Kafka's producer queue is full (waiting for Kafka)"]
            assert not unblocked
        finally:
            assert devkafka.command("broker all rtt 0") == "ok"
        drain_until(conn, lambda: unblocked, 60, "connection.unblocked")
        wait_for(lambda: sum(1 for r in read_topic(devkafka.bootstrap, topic)
                             if r.value().startswith(b"m")) >= 100, 60, "100 messages in Kafka")
        bodies = [r.value().decode() for r in read_topic(devkafka.bootstrap, topic)
                  if r.value() != b"warm-up"]
        assert bodies == [f"m{i}" for i in range(100)]
        assert channel.is_open and confirming.is_open
        confirming.basic_publish("", topic, b"after")  # the connection goes on normally
    finally:
        conn.close()


def test_headers_table_ending_a_buffer_at_a_type_octet_is_published(daemon, uniq):
    """A headers table whose 0-9-1 encoding reaches 4096 bytes exactly at a
    value's type octet (librabbitmq then says BAD_AMQP_DATA, not
    TABLE_TOO_BIG): it used to close the channel with 541 "out of memory";
    found by fuzz_amqp091_convert. Now confirmed and delivered exactly."""
    conn = pika_connect(daemon)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        queue = f"wide{uniq}"
        ch.queue_declare(queue)
        headers = {"a": "x" * 4083, "b": 7}  # 4 + (1+1+1+4+4083) + (1+1) = 4096, then 'I'
        ch.basic_publish("", queue, b"wide", pika.BasicProperties(headers=headers))
        got = []
        deadline = time.monotonic() + 30
        while not got:
            assert time.monotonic() < deadline, "not delivered"
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method:
                got.append((props, body))
        props, body = got[0]
        assert body == b"wide" and props.headers == headers
        assert ch.is_open
    finally:
        conn.close()
