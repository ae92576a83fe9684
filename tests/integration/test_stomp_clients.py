# SPDX-License-Identifier: Apache-2.0
"""Client compatibility (issue 3 "Must hold"): STOMP client libraries other
than stomp.py's 1.2 default do a send / subscribe / ack round trip on a
queue -- ruby-stomp (Debian's ruby-stomp, through clients/ruby_roundtrip.rb)
and stomp.py speaking STOMP 1.0 and 1.1.

What counts as done: every message comes back with its body and headers,
the acknowledgements are taken (acked counter; a later subscriber of the
queue gets nothing of them back)."""

import os
import re
import subprocess
import uuid

import pytest
import stomp

from conftest import EXTERNAL_BOOTSTRAP, HERE, base_config, metrics, wait_for
from stomp_util import Client

KAFKA = {"consumer": {"session.timeout.ms": 6000}}
CLIENTS = os.path.join(HERE, "clients")


@pytest.fixture
def qname():
    return f"compat-{uuid.uuid4().hex[:10]}" if EXTERNAL_BOOTSTRAP else "compat"


def queue_metric(daemon, name, queue):
    return metrics(daemon).get(f'{name}{{kind="queue",destination="{queue}"}}', 0.0)


def assert_nothing_left(daemon, queue):
    """A new subscriber of the queue gets only a marker published after it:
    every message before was acknowledged for good."""
    client = Client(daemon)
    try:
        client.subscribe(f"/queue/{queue}", "check", ack="client-individual", receipt="c")
        client.send(f"/queue/{queue}", "marker", receipt="m")
        client.wait_receipt("m")
        got = client.wait_messages(1)
        assert [f.body for f in got] == ["marker"]
        client.ack(got[0])
        # Nothing else: the marker was the last record, and it came alone.
        assert [f.body for f in client.recorder.messages] == ["marker"]
    finally:
        client.close()


# ---- ruby-stomp -----------------------------------------------------------------------

def test_ruby_stomp_round_trip(kbridged_factory, bootstrap, qname):
    daemon = kbridged_factory(base_config(bootstrap, kafka=dict(KAFKA)))
    host, port = daemon.host_port("stomp")
    count = 5
    r = subprocess.run(["ruby", os.path.join(CLIENTS, "ruby_roundtrip.rb"), host, str(port),
                        f"/queue/{qname}", str(count)],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, f"ruby failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    lines = r.stdout.splitlines()

    assert re.fullmatch(r"CONNECTED 1\.2 kbridge/\d+\.\d+\.\d+", lines[0]), lines[0]
    assert lines[1] == "SUBSCRIBED sub-1"
    assert lines[-1] == "DISCONNECTED bye"
    assert sorted(l for l in lines if l.startswith("SENT ")) == \
        sorted(f"SENT send-{i}" for i in range(count))

    messages = [l for l in lines if l.startswith("MESSAGE ")]
    first = [m for m in messages if "count=1 " in m]
    colours = ["red" if i % 2 == 0 else "blue" for i in range(count)]
    # First deliveries in publish order (one kafka-key), with their headers.
    assert first == [f"MESSAGE ruby-{i} destination=/queue/{qname} subscription=rb-1 count=1 "
                     f"redelivered=false colour={colours[i]}" for i in range(count)]
    # The NACKed one came back once, marked as redelivered.
    assert [m for m in messages if "count=1 " not in m] == [
        f"MESSAGE ruby-0 destination=/queue/{qname} subscription=rb-1 count=2 "
        f"redelivered=true colour=red"]
    assert [l for l in lines if l.startswith("NACK ")] == ["NACK ruby-0"]
    assert sorted(l for l in lines if l.startswith("ACK ")) == \
        sorted(f"ACK ruby-{i}" for i in range(count))

    assert queue_metric(daemon, "kbridge_destination_acked_total", qname) == count
    assert queue_metric(daemon, "kbridge_destination_nacked_total", qname) == 1
    assert queue_metric(daemon, "kbridge_destination_redelivered_total", qname) == 1
    assert_nothing_left(daemon, qname)


# ---- stomp.py with STOMP 1.0 and 1.1 ----------------------------------------------------

@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_stomp_py_old_protocol_versions_round_trip(kbridged_factory, bootstrap, qname, version):
    daemon = kbridged_factory(base_config(bootstrap, kafka=dict(KAFKA)))
    client = Client(daemon, version=version)
    count = 5
    dest = f"/queue/{qname}"
    try:
        # 1.0 knows ack modes auto and client; 1.1 adds client-individual.
        ack = "client" if version == "1.0" else "client-individual"
        client.subscribe(dest, "s1", ack=ack, receipt="sub")
        for i in range(count):
            client.send(dest, f"v{version}-{i}", headers={"kafka-key": "k", "colour": "red:blue"},
                        receipt=f"send-{i}")
        wait_for(lambda: {f"send-{i}" for i in range(count)} <= set(client.recorder.receipts),
                 30, "send receipts")
        got = client.wait_messages(count)
        assert [f.body for f in got] == [f"v{version}-{i}" for i in range(count)]
        for f in got:
            assert f.headers["destination"] == dest
            assert f.headers["subscription"] == "s1"
            assert f.headers["x-delivery-count"] == "1"
            assert "ack" not in f.headers  # the 1.2 ack id is not sent to older versions
            assert f.headers["colour"] == "red:blue"  # a ':' in a value, every version
        if version == "1.0":
            # 1.0 ACK names the message-id only (and client mode is cumulative:
            # acknowledging the last one settles all of them).
            client.conn.ack(got[-1].headers["message-id"])
        else:
            for f in got:
                client.conn.ack(f.headers["message-id"], f.headers["subscription"])
        wait_for(lambda: queue_metric(daemon, "kbridge_destination_acked_total", qname) == count,
                 15, "the acks to be taken")
        assert not client.recorder.errors
        client.conn.disconnect(receipt="bye")
        # stomp.py returns once it saw the RECEIPT, maybe before its listeners did.
        wait_for(lambda: "bye" in client.recorder.receipts, 10, "the DISCONNECT receipt")
    finally:
        client.close()
    assert_nothing_left(daemon, qname)


def test_stomp_1_0_connect_without_accept_version_is_1_0(kbridged_factory, bootstrap):
    daemon = kbridged_factory(base_config(bootstrap, kafka=dict(KAFKA)))
    host, port = daemon.host_port("stomp")
    conn = stomp.Connection10([(host, port)])
    frames = []

    class Listener(stomp.ConnectionListener):
        def on_connected(self, frame):
            frames.append(frame)

    conn.set_listener("l", Listener())
    conn.connect(wait=True)
    try:
        assert frames[0].headers["version"] == "1.0"
        assert frames[0].headers["session"].startswith("kbridge-")
    finally:
        conn.disconnect()
