# SPDX-License-Identifier: Apache-2.0
"""Limits across protocols (issue 17 item 4, daemon/core_limits.c): connections
in all, per source address and per user, over STOMP, AMQP 1.0 and AMQP 0-9-1
(pika) together; failed logins per source address (the 11th in a minute is
refused, unchecked, after limits.auth_failure_delay), 0-9-1 logins counted
too; subscriptions, links and 0-9-1 consumers per connection
(limits.max_subscriptions); unsettled deliveries per connection
(limits.max_unacked: deliveries stop, no error) over each protocol; every
refusal names its limit in the protocol's error and counts in
kbridge_limit_refusals_total; a connection
that never finishes its handshake is closed after limits.handshake_timeout on
every kind of listener (STOMP, AMQP, WebSocket, and a shared listener, whose
limit is limits.protocol_detect_timeout)."""

import socket
import subprocess
import time

import pika
import pytest
from proton import Message

from amqp_client import connect as amqp_connect
from amqp_client import receive_all
from conftest import base_config, metrics, wait_for

PASSWORD = "secret"
LIMIT_SERIES = 'kbridge_limit_refusals_total{{limit="{}"}}'


@pytest.fixture(scope="module")
def secret_hash():
    out = subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out.startswith("$6$")
    return out


def user(name, password_hash):
    return {"name": name, "password_hash": password_hash, "publish": [".*"], "consume": [".*"]}


def limits_config(bootstrap, secret_hash, **limits):
    config = base_config(bootstrap, auth={"anonymous": False,
                                          "users": [user("alice", secret_hash),
                                                    user("bob", secret_hash)]},
                         kafka={"consumer": {"session.timeout.ms": 6000}}, limits=limits)
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]  # 1.0 and 0-9-1
    return config


def pika_connect(daemon, login, password):
    host, port = daemon.host_port("amqp")
    params = pika.ConnectionParameters(host=host, port=port,
                                       credentials=pika.PlainCredentials(login, password),
                                       socket_timeout=10, blocked_connection_timeout=30,
                                       connection_attempts=1)
    return pika.BlockingConnection(params)


def pika_refusal(daemon, login, password):
    with pytest.raises(pika.exceptions.AMQPConnectionError) as refused:
        pika_connect(daemon, login, password)
    return str(refused.value)


def refusals(daemon, limit):
    return metrics(daemon).get(LIMIT_SERIES.format(limit), 0.0)


class RawStomp:
    """A STOMP 1.2 connection on a plain socket, optionally from another
    loopback source address, that reads exactly what the server sends."""

    def __init__(self, daemon, source="127.0.0.1"):
        host, port = daemon.host_port("stomp")
        self.sock = socket.socket()
        self.sock.bind((source, 0))
        self.sock.settimeout(60)  # only guards against a hang
        self.sock.connect((host, port))
        self.buffer = b""

    def connect(self, login, passcode):
        self.sock.sendall(f"CONNECT\naccept-version:1.2\nhost:/\nlogin:{login}\n"
                          f"passcode:{passcode}\nheart-beat:0,0\n\n\0".encode())
        return self.frame()

    def frame(self):
        """The next frame: (command, headers, body); EOL heart-beats skipped."""
        while b"\0" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by the server after {self.buffer!r}")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        head, _, body = raw.lstrip(b"\r\n").decode().partition("\n\n")
        lines = head.split("\n")
        headers = dict(line.split(":", 1) for line in lines[1:])
        return lines[0], headers, body

    def closed_by_server(self):
        try:
            while self.sock.recv(4096):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self):
        self.sock.close()


def amqp_refusal(daemon, user=None, password=None):
    with pytest.raises(Exception) as refused:
        amqp_connect(daemon, user, password, timeout=30)
    return str(refused.value)


def test_per_user_connection_limit_counts_stomp_amqp_and_amqp091_together(
        kbridged_factory, bootstrap, secret_hash):
    daemon = kbridged_factory(limits_config(bootstrap, secret_hash, max_connections_per_user=2))
    first = RawStomp(daemon)
    assert first.connect("alice", PASSWORD)[0] == "CONNECTED"
    second = amqp_connect(daemon, "alice", PASSWORD)
    # the third of alice's, over either protocol, is refused naming the limit
    over = RawStomp(daemon)
    command, headers, body = over.connect("alice", PASSWORD)
    assert command == "ERROR"
    assert headers["message"] == "Bad CONNECT"
    assert body.startswith("too many connections\nUser 'alice' has 2 connections open already "
                           "(limits.max_connections_per_user, every protocol together).")
    assert over.closed_by_server()
    description = amqp_refusal(daemon, "alice", PASSWORD)
    assert "amqp:resource-limit-exceeded" in description
    assert ("user 'alice' has 2 connections open already (limits.max_connections_per_user, "
            "every protocol together)") in description
    text = pika_refusal(daemon, "alice", PASSWORD)
    assert ("(530) \"NOT_ALLOWED - too many connections: user 'alice' has 2 connections open "
            "already (limits.max_connections_per_user, every protocol together)\"") in text
    assert refusals(daemon, "max_connections_per_user") == 3
    # another user is not affected, and a 0-9-1 connection counts as one of bob's
    bob = RawStomp(daemon)
    assert bob.connect("bob", PASSWORD)[0] == "CONNECTED"
    bob091 = pika_connect(daemon, "bob", PASSWORD)
    text = pika_refusal(daemon, "bob", PASSWORD)
    assert "user 'bob' has 2 connections open already" in text
    bob091.close()
    # one of alice's goes: she may connect again (once the server has seen it)
    second.close()
    again = wait_for(lambda: connected_or_none(daemon, "alice"), 30, "a free slot for alice",
                     interval=0.2)
    for conn in (first, bob, again):
        conn.close()


def connected_or_none(daemon, login):
    conn = RawStomp(daemon)
    if conn.connect(login, PASSWORD)[0] == "CONNECTED":
        return conn
    conn.close()
    return None


def test_eleventh_bad_login_in_a_minute_from_one_address_is_delayed_and_refused(
        kbridged_factory, bootstrap, secret_hash):
    daemon = kbridged_factory(limits_config(bootstrap, secret_hash))  # default: 10, 1s
    # 10 failures from 127.0.0.1, over the three protocols
    for i in range(4):
        conn = RawStomp(daemon)
        command, _, body = conn.connect("alice", "wrong")
        assert command == "ERROR"
        assert "bad login or passcode" in body
        conn.close()
        if i < 3:
            refused = amqp_refusal(daemon, "alice", "wrong")
            assert "unauthorized-access" in refused or "Authentication" in refused, refused
            refused = pika_refusal(daemon, "alice", "wrong")
            assert "(403) 'ACCESS_REFUSED - Login was refused using authentication mechanism " \
                "PLAIN. For details see the broker logfile.'" in refused, refused
    wait_for(lambda: metrics(daemon).get("kbridge_auth_failures_total") == 10, 30,
             "10 failed logins counted")
    # the 11th, with the right password, is not checked: refused after the delay
    conn = RawStomp(daemon)
    started = time.monotonic()
    command, headers, body = conn.connect("alice", PASSWORD)
    waited = time.monotonic() - started
    assert command == "ERROR"
    assert headers["message"] == "Bad CONNECT"
    assert ("too many failed logins from this address: 10 in the last minute "
            "(limits.max_auth_failures_per_minute); try again later") in body
    assert waited >= 0.9  # limits.auth_failure_delay (1s): a lower bound only
    assert conn.closed_by_server()
    assert refusals(daemon, "max_auth_failures_per_minute") == 1
    # AMQP from the same address is refused the same way (SASL outcome: auth)
    refused = amqp_refusal(daemon, "alice", PASSWORD)
    assert "unauthorized-access" in refused or "Authentication" in refused, refused
    assert refusals(daemon, "max_auth_failures_per_minute") == 2
    # and AMQP 0-9-1: 403 naming the limit
    refused = pika_refusal(daemon, "alice", PASSWORD)
    assert ("(403) 'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN: "
            "too many failed logins from this address: 10 in the last minute "
            "(limits.max_auth_failures_per_minute); try again later'") in refused, refused
    assert refusals(daemon, "max_auth_failures_per_minute") == 3
    # another source address logs in
    other = RawStomp(daemon, source="127.0.0.2")
    assert other.connect("alice", PASSWORD)[0] == "CONNECTED"
    other.close()


def test_per_address_and_total_connection_limits(kbridged_factory, bootstrap, secret_hash):
    daemon = kbridged_factory(limits_config(bootstrap, secret_hash, max_connections=4,
                                            max_connections_per_address=2))
    a1 = RawStomp(daemon)
    assert a1.connect("alice", PASSWORD)[0] == "CONNECTED"
    a2 = amqp_connect(daemon, "bob", PASSWORD)
    # a third from 127.0.0.1, either protocol: refused before any login
    over = RawStomp(daemon)
    command, headers, body = over.frame()
    assert command == "ERROR"
    assert headers["message"] == "Bad CONNECT"
    assert body.startswith("too many connections\nThe server has 2 connections open already "
                           "(limits.max_connections_per_address, from this address).")
    assert over.closed_by_server()
    description = amqp_refusal(daemon, "alice", PASSWORD)
    assert "amqp:resource-limit-exceeded" in description
    assert "(limits.max_connections_per_address, from this address)" in description
    assert refusals(daemon, "max_connections_per_address") == 2
    # two more from 127.0.0.2 reach max_connections (4, every protocol together)
    b1 = RawStomp(daemon, source="127.0.0.2")
    assert b1.connect("alice", PASSWORD)[0] == "CONNECTED"
    b2 = RawStomp(daemon, source="127.0.0.2")
    assert b2.connect("bob", PASSWORD)[0] == "CONNECTED"
    over = RawStomp(daemon, source="127.0.0.3")
    command, _, body = over.frame()
    assert command == "ERROR"
    assert body.startswith("too many connections\nThe server has 4 connections open already "
                           "(limits.max_connections, every protocol together).")
    assert refusals(daemon, "max_connections") == 1
    for conn in (a1, a2, b1, b2, over):
        conn.close()


def test_idle_connections_are_closed_after_the_handshake_timeout_on_every_listener(
        kbridged_factory, bootstrap):
    config = base_config(bootstrap, limits={"handshake_timeout": "1s",
                                            "protocol_detect_timeout": "1s"})
    config["listeners"]["web"] = {"bind": "127.0.0.1:0", "protocols": ["stomp"],
                                  "transport": "websocket"}
    config["listeners"]["shared"] = {"bind": "127.0.0.1:0", "protocols": ["stomp", "amqp"]}
    daemon = kbridged_factory(config)
    wait_for(lambda: {"web", "shared"} <= set(daemon.addresses), 15, "all listeners")
    idle = {}
    for name in ("stomp", "amqp", "web", "shared"):
        sock = socket.create_connection(daemon.host_port(name))
        sock.settimeout(60)  # only guards against a hang: the server must close first
        idle[name] = sock
    # an AMQP client that sent its protocol header and nothing more
    half_open = socket.create_connection(daemon.host_port("amqp"))
    half_open.settimeout(60)
    half_open.sendall(b"AMQP\x00\x01\x00\x00")
    idle["amqp header only"] = half_open
    received = {}
    for name, sock in idle.items():
        data = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        received[name] = data
        sock.close()
    assert b"no CONNECT frame received" in received["stomp"]
    assert b"limits.handshake_timeout" in received["stomp"]
    assert received["web"] == b""
    assert received["shared"] == b""
    daemon.wait_log(r"no WebSocket upgrade within limits.handshake_timeout")
    daemon.wait_log(r"no AMQP open within limits.handshake_timeout \(1000 ms\)")
    wait_for(lambda: all(v == 0 for k, v in metrics(daemon).items()
                         if k.startswith("kbridge_connections{")), 15, "no connection left")


def test_subscriptions_and_links_per_connection(kbridged_factory, bootstrap, secret_hash):
    daemon = kbridged_factory(limits_config(bootstrap, secret_hash, max_subscriptions=2))
    conn = RawStomp(daemon)
    assert conn.connect("alice", PASSWORD)[0] == "CONNECTED"
    for i in range(2):
        conn.sock.sendall(f"SUBSCRIBE\nid:{i}\ndestination:/topic/t{i}\nreceipt:r{i}\n\n\0"
                          .encode())
        assert conn.frame()[:2] == ("RECEIPT", {"receipt-id": f"r{i}"})
    conn.sock.sendall(b"SUBSCRIBE\nid:2\ndestination:/topic/t2\nreceipt:r2\n\n\0")
    command, headers, body = conn.frame()
    assert command == "ERROR"
    assert headers["message"] == "too many subscriptions"
    assert "(limits.max_subscriptions)" in body
    conn.close()
    amqp = amqp_connect(daemon, "alice", PASSWORD)
    amqp.create_receiver("topic://t0")
    amqp.create_sender("t1")
    with pytest.raises(Exception) as refused:
        amqp.create_receiver("topic://t2")
    assert "amqp:resource-limit-exceeded" in str(refused.value)
    assert "limits.max_subscriptions" in str(refused.value)
    amqp.close()
    # AMQP 0-9-1: consumers on every channel of the connection count
    conn = pika_connect(daemon, "alice", PASSWORD)
    first, second = conn.channel(), conn.channel()
    for channel, name in ((first, "c0"), (second, "c1")):
        channel.queue_declare(f"limits.{name}")
        channel.basic_consume(f"limits.{name}", lambda *args: None)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        second.basic_consume("limits.c0", lambda *args: None)
    assert closed.value.reply_code == 506
    assert closed.value.reply_text == ("RESOURCE_ERROR - too many consumers: this connection "
                                       "holds 2 already (limits.max_subscriptions, every channel "
                                       "together)")
    assert first.is_open
    conn.close()
    assert refusals(daemon, "max_subscriptions") == 3


def test_unacked_deliveries_per_connection_stop_delivery(kbridged_factory, bootstrap,
                                                          secret_hash):
    """limits.max_unacked 3: each protocol's connection gets 3 of 5 messages
    waiting on two queues, the stop is counted, and one ack lets one more in."""
    daemon = kbridged_factory(limits_config(bootstrap, secret_hash, max_unacked=3))
    sender = amqp_connect(daemon, "bob", PASSWORD)

    def publish(queue, count):
        out = sender.create_sender(queue)
        for i in range(count):
            out.send(Message(body=f"{queue} {i}"))
        out.close()

    def stops():
        return refusals(daemon, "max_unacked")

    # STOMP: two client-individual subscriptions on one connection.
    conn = RawStomp(daemon)
    assert conn.connect("alice", PASSWORD)[0] == "CONNECTED"
    for i, queue in enumerate(("unacked.s1", "unacked.s2")):
        conn.sock.sendall(f"SUBSCRIBE\nid:{i}\ndestination:/queue/{queue}\nack:client-individual"
                          f"\nreceipt:r{i}\n\n\0".encode())
        assert conn.frame()[0] == "RECEIPT"
    publish("unacked.s1", 5)
    publish("unacked.s2", 5)
    messages = []
    while len(messages) < 3:
        command, headers, body = conn.frame()
        assert command == "MESSAGE", (command, headers, body)
        messages.append(headers)
    wait_for(lambda: stops() == 1, 30, "the stop at limits.max_unacked counted")
    # Deliveries stopped before the count was seen: a receipt fences what was sent.
    conn.sock.sendall(b"SUBSCRIBE\nid:fence\ndestination:/topic/fence\nreceipt:fence\n\n\0")
    while True:
        command, headers, body = conn.frame()
        if command == "RECEIPT":
            break
        assert command == "MESSAGE"
        messages.append(headers)
    assert len(messages) == 3
    conn.sock.sendall(f"ACK\nid:{messages[0]['ack']}\n\n\0".encode())
    command, headers, body = conn.frame()
    assert command == "MESSAGE"
    wait_for(lambda: stops() == 2, 30, "the limit reached again")
    conn.close()

    # AMQP 1.0: a receiver with credit 10; the fourth only after an accept.
    publish("unacked.a", 5)
    amqp = amqp_connect(daemon, "alice", PASSWORD)
    receiver = amqp.create_receiver("unacked.a", credit=10)
    got = receive_all(receiver, 3, accept=False)
    assert [m.body for m in got] == [f"unacked.a {i}" for i in range(3)]
    wait_for(lambda: stops() == 3, 30, "the AMQP connection stopped")
    receiver.accept()  # the oldest
    assert receiver.receive(timeout=30).body == "unacked.a 3"
    wait_for(lambda: stops() == 4, 30, "the limit reached again")
    amqp.close()

    # AMQP 0-9-1: prefetch 10, manual acks.
    conn = pika_connect(daemon, "alice", PASSWORD)
    channel = conn.channel()
    channel.queue_declare("unacked.p")
    publish("unacked.p", 5)
    channel.basic_qos(prefetch_count=10)
    received = []
    channel.basic_consume("unacked.p", lambda ch, method, props, body:
                          received.append((method.delivery_tag, body)))
    deadline = time.monotonic() + 30
    while len(received) < 3 or stops() < 5:
        assert time.monotonic() < deadline, f"3 deliveries and a stop, got {received}"
        conn.process_data_events(time_limit=0.2)
    assert [b for _, b in received] == [f"unacked.p {i}".encode() for i in range(3)]
    channel.basic_ack(received[0][0])
    deadline = time.monotonic() + 30
    while len(received) < 4:
        assert time.monotonic() < deadline, "the fourth delivery after an ack"
        conn.process_data_events(time_limit=0.2)
    assert received[3][1] == b"unacked.p 3"
    conn.close()
    sender.close()
