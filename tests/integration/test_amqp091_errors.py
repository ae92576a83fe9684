# SPDX-License-Identifier: Apache-2.0
"""AMQP 0-9-1 bad input, the rest of issue 14's corpus (the first part —
bad frame end, frame over frame_max, unopened channel, body without header,
header without method, unknown method, truncated arguments, wrong protocol
header, wrong credentials, channel_max — is in test_amqp091.py):

- a heartbeat flood is absorbed and the connection goes on; a heartbeat on a
  channel other than 0 is 501 FRAME_ERROR (the 0-9-1 spec, §4.2.7: "a peer
  that receives an invalid heartbeat frame MUST raise a connection exception
  with reply code 501"; RabbitMQ answers 505 UNEXPECTED_FRAME);
- connection.open of a vhost that is not served is 530 NOT_ALLOWED;
- the ACLs: consuming from and publishing to what the user may not is a
  channel error 403 ACCESS_REFUSED, the connection and its other channels
  carry on;
- 1,000 bad connections (every case of both corpora that needs no login
  failure: the failed-login limit would stop them) do not grow kbridged's
  RSS beyond a bounded slack, and a steady client goes on meanwhile.

Raw sockets speak 0-9-1 by hand (RawClient from test_amqp091.py); waits are
deadline-based."""

import re
import socket

import pika
import pytest

from conftest import base_config, under_sanitizer, wait_for
from test_amqp091 import (KAFKA, PASSWORD, USER, RawClient, drain_until, frame, method,
                          password_hash, pika_connect, shortstr, uniq)  # noqa: F401
from test_stomp_errors import rss_kib
from test_stomp_queues import metrics

LIMITED = "limited"


@pytest.fixture
def daemon(kbridged_factory, bootstrap, password_hash):  # noqa: F811
    config = base_config(bootstrap, kafka=dict(KAFKA),
                         auth={"anonymous": False, "users": [
                             {"name": USER, "password_hash": password_hash,
                              "publish": [".*"], "consume": [".*"]},
                             {"name": LIMITED, "password_hash": password_hash,
                              "publish": ["^open-.*"], "consume": ["^open-.*"]}]})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    return kbridged_factory(config)


def expect_connection_close(client, code, text):
    """Skip channel.open-ok; the next method must be connection.close(code, text)."""
    while True:
        c, m, channel, args = client.recv_method()
        if (c, m) == (20, 11):
            continue
        assert (c, m) == (10, 50), (c, m, args)
        got = (int.from_bytes(args[0:2], "big"), args[3:3 + args[2]].decode())
        assert got == (code, text)
        return


def test_heartbeat_flood_is_absorbed_and_the_connection_goes_on(daemon):
    client = RawClient(daemon)
    client.sock.sendall(frame(8, 0, b"") * 10000)
    client.sock.sendall(method(1, 20, 10, shortstr(b"")))  # channel.open
    c, m, channel, args = client.recv_method()
    assert (c, m, channel) == (20, 11, 1), (c, m, channel, args)  # open-ok, no close
    client.close()


def test_heartbeat_on_a_channel_is_a_frame_error(daemon):
    client = RawClient(daemon)
    client.sock.sendall(frame(8, 1, b""))
    expect_connection_close(client, 501, "FRAME_ERROR - heartbeat frame on channel 1")
    client.close()


def raw_open(daemon, vhost):
    """Handshake up to connection.open of vhost; returns the client and the answer."""
    client = RawClient.__new__(RawClient)
    host, port = daemon.host_port("amqp")
    client.sock = socket.create_connection((host, port), timeout=10)
    client.buffer = b""
    client.sock.sendall(b"AMQP\x00\x00\x09\x01")
    assert client.recv_method()[:2] == (10, 10)
    response = b"\x00" + USER.encode() + b"\x00" + PASSWORD.encode()
    client.sock.sendall(method(0, 10, 11, (0).to_bytes(4, "big") + shortstr(b"PLAIN") +
                               len(response).to_bytes(4, "big") + response + shortstr(b"en_US")))
    assert client.recv_method()[:2] == (10, 30)
    client.sock.sendall(method(0, 10, 31, (2047).to_bytes(2, "big") +
                               (131072).to_bytes(4, "big") + (0).to_bytes(2, "big")))
    client.sock.sendall(method(0, 10, 40, shortstr(vhost) + shortstr(b"") + b"\x00"))
    return client


def test_a_vhost_not_served_is_530(daemon):
    client = raw_open(daemon, b"/elsewhere")
    code, text = client.expect_close()
    assert code == 530
    assert text.startswith("NOT_ALLOWED - ") and "/elsewhere" in text
    client.close()
    conn = pika_connect(daemon)  # others carry on
    assert conn.channel().is_open
    conn.close()


def test_acl_denied_consume_and_publish_are_403_and_the_connection_goes_on(daemon, uniq):
    owner = pika_connect(daemon)
    owner.channel().queue_declare(f"secret{uniq}", durable=True)
    owner.channel().queue_declare(f"open-q{uniq}", durable=True)

    conn = pika_connect(daemon, user=LIMITED)
    good = conn.channel()
    denied = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        denied.basic_consume(f"secret{uniq}", lambda *a: None)
    assert closed.value.reply_code == 403
    assert closed.value.reply_text.startswith("ACCESS_REFUSED - ")
    assert f"secret{uniq}" in closed.value.reply_text

    publisher = conn.channel()
    publisher.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        publisher.basic_publish("", f"secret{uniq}", b"not for you")
        publisher.basic_publish("", f"secret{uniq}", b"not for you")  # the close may come late
    assert closed.value.reply_code == 403
    assert closed.value.reply_text.startswith("ACCESS_REFUSED - ")

    # the connection and its other channel carry on: a round trip on what is allowed
    assert conn.is_open and good.is_open
    got = []
    good.basic_consume(f"open-q{uniq}", lambda c, m, p, b: got.append(b), auto_ack=True)
    sender = conn.channel()
    sender.confirm_delivery()
    sender.basic_publish("", f"open-q{uniq}", b"allowed")
    drain_until(conn, lambda: got, 30, "the allowed message")
    assert got == [b"allowed"]
    conn.close()
    owner.close()


# ---- RSS over 1,000 bad connections -------------------------------------------------------

def bad_after_login(payload):
    def run(daemon):
        client = RawClient(daemon)
        client.sock.sendall(payload)
        c, m, _, args = client.recv_method()
        while (c, m) == (20, 11):
            c, m, _, args = client.recv_method()
        client.close()
        return (c, m) == (10, 50)
    return run


def bad_before_login(payload, answer):
    def run(daemon):
        host, port = daemon.host_port("amqp")
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(payload)
            s.settimeout(10)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return re.match(answer, data, re.S) is not None
    return run


CASES = [
    bad_after_login(method(5, 60, 10, bytes(7))),                      # unopened channel
    bad_after_login(method(0, 99, 1)),                                 # unknown class/method
    bad_after_login(method(1, 20, 10)),                                # truncated arguments
    bad_after_login(method(1, 20, 10, shortstr(b"")) + frame(3, 1, b"body")),  # body, no header
    bad_after_login(bytes([1, 0, 1]) + (200000).to_bytes(4, "big")),  # over frame_max
    bad_after_login(frame(8, 1, b"")),                                 # heartbeat on a channel
    # bad frame end right after the protocol header: start, then close 501
    bad_before_login(b"AMQP\x00\x00\x09\x01" + b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x0b\x00",
                     rb"\x01\x00\x00.*\x00\x0a\x00\x32\x01\xf5"),
]


def test_a_thousand_bad_connections_do_not_grow_the_daemon(daemon, uniq):
    steady = pika_connect(daemon)
    ch = steady.channel()
    ch.queue_declare(f"steady{uniq}")
    got = []
    ch.basic_consume(f"steady{uniq}", lambda c, m, p, b: got.append(b), auto_ack=True)
    ch.confirm_delivery()

    def bad_connections(count):
        for i in range(count):
            assert CASES[i % len(CASES)](daemon), f"case {i % len(CASES)} was not closed right"
            if i % 100 == 0:  # the steady client keeps its round trips meanwhile
                ch.basic_publish("", f"steady{uniq}", f"tick {i}".encode())
                steady.process_data_events(time_limit=0)
        wait_for(lambda: metrics(daemon).get('kbridge_connections{protocol="amqp091"}') == 1, 15,
                 "every bad connection freed")

    def errors():
        return metrics(daemon).get("kbridge_amqp091_connection_errors_total", 0)

    bad_connections(200)  # warm-up: allocator arenas, metrics series, buffers
    before, errors_before = rss_kib(daemon), errors()
    bad_connections(1000)
    after, errors_after = rss_kib(daemon), errors()
    drain_until(steady, lambda: len(got) == 12, 30, "the steady client's 12 messages")
    steady.close()
    assert errors_after - errors_before == 1000
    print(f"\nVmRSS after the warm-up: {before} KiB; after 1,000 more bad 0-9-1 connections: "
          f"{after} KiB ({after - before:+d} KiB)")
    assert daemon.http("/readyz")[0] == 200
    if under_sanitizer(daemon):
        print("sanitizer build (ASan or TSan): RSS growth not asserted")
        return
    assert after - before < 2048, f"RSS grew by {after - before} KiB"
