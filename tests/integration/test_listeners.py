# SPDX-License-Identifier: Apache-2.0
"""Listeners as a list keyed by name: one listener serving STOMP and AMQP 1.0
on the same port by the connection's first bytes (nothing consumed: each
adapter reads the client from its first byte), bytes of no served protocol
closed and counted, and an unknown protocol name refused at start."""

import re
import socket
import subprocess
import uuid

import pytest
import yaml
from proton import Message

from amqp_client import body_of, connect
from conftest import EXTERNAL_BOOTSTRAP, KBRIDGED, base_config, wait_for
from stomp_util import Client


@pytest.fixture
def name():
    return f"shared-{uuid.uuid4().hex[:10]}" if EXTERNAL_BOOTSTRAP else "shared"


def shared_config(bootstrap):
    config = base_config(bootstrap)
    config["listeners"] = {
        "public": {"bind": "127.0.0.1:0", "protocols": ["stomp", "amqp"]},
        "http": {"bind": "127.0.0.1:0"},
    }
    return config


def start_shared(kbridged_factory, bootstrap):
    daemon = kbridged_factory(shared_config(bootstrap))
    wait_for(lambda: "public" in daemon.addresses, 15, "the public listener")
    # both protocols' client helpers connect to the one shared port
    daemon.addresses["stomp"] = daemon.addresses["amqp"] = daemon.addresses["public"]
    return daemon


def metric(daemon, series):
    text = daemon.http("/metrics")[1]
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def closed_by_server(sock):
    """Read until the server closes: EOF, or a reset (it closed with our bytes
    unread, having only peeked at them)."""
    sock.settimeout(60)  # only guards against a hang; nothing asserts on time
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


def test_one_listener_serves_stomp_and_amqp_by_first_bytes(kbridged_factory, bootstrap, name):
    daemon = start_shared(kbridged_factory, bootstrap)
    assert re.search(r"listener public listening on \S+ \(stomp, amqp, by first bytes\)",
                     daemon.log())
    bodies = [b"one", b"two \x00 with a NUL", "drei \u00fc".encode(), b"x" * 70000]

    # AMQP -> Kafka -> STOMP, on the same port
    amqp = connect(daemon)
    sender = amqp.create_sender(f"queue://{name}-from-amqp")
    for body in bodies:
        sender.send(Message(body=body))  # returns once Kafka confirmed it
    stomp_client = Client(daemon)
    stomp_client.conn.subscribe(f"/queue/{name}-from-amqp", id="s1", ack="auto")
    frames = stomp_client.wait_messages(len(bodies), timeout=60)
    got = [f.body if isinstance(f.body, bytes) else f.body.encode() for f in frames]
    assert got == bodies

    # STOMP -> Kafka -> AMQP, on the same port
    for i, body in enumerate(bodies[:3]):
        stomp_client.conn.send(f"/queue/{name}-from-stomp", body, receipt=f"r{i}",
                               headers={"content-length": str(len(body))})
        stomp_client.wait_receipt(f"r{i}")
    receiver = amqp.create_receiver(f"queue://{name}-from-stomp", credit=10)
    received = []
    for _ in range(3):
        received.append(body_of(receiver.receive(timeout=60)))
        receiver.accept()
    assert received == bodies[:3]
    stomp_client.close()
    amqp.close()
    assert metric(daemon, 'kbridge_protocol_detect_failures_total{reason="unknown"}') == 0


def test_bytes_of_no_served_protocol_are_closed_and_counted(kbridged_factory, bootstrap):
    daemon = start_shared(kbridged_factory, bootstrap)
    host, port = daemon.host_port("public")
    garbage = [b"GET /metrics HTTP/1.0\r\n\r\n",
               b"AMQP\x00\x00\x09\x01",  # AMQP 0-9-1: not served (yet)
               b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]  # a TLS ClientHello
    for data in garbage:
        with socket.create_connection((host, port)) as sock:
            sock.sendall(data)
            assert closed_by_server(sock)
    assert metric(daemon, 'kbridge_protocol_detect_failures_total{reason="unknown"}') == 3
    assert len(re.findall(r"listener public: connection from \S+ closed: its first \d+ byte\(s\) "
                          r"are none of the protocols served here", daemon.log())) == 3
    # the listener still serves both protocols afterwards
    client = Client(daemon)
    client.close()
    connect(daemon).close()


def test_an_unknown_protocol_is_refused_at_start_naming_the_key(tmp_path):
    config = base_config("127.0.0.1:1")
    config["listeners"]["public"] = {"bind": "127.0.0.1:0", "protocols": ["stomp", "mqtt"]}
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump(config))
    expected = ('listeners.public.protocols[1]: no protocol "mqtt" is built into kbridged '
                '(built in: stomp, amqp, amqp091; and http, the operations endpoint)')
    r = subprocess.run([KBRIDGED, "--check-config", str(path)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2
    assert r.stderr == f"kbridged: invalid configuration: {path}: {expected}\n"
    r = subprocess.run([KBRIDGED, "-c", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert expected in r.stderr
    assert "listening on" not in r.stderr
