# SPDX-License-Identifier: Apache-2.0
"""RabbitMQ's STOMP conventions that client suites rely on (issue 20, items 2
and 6), checked with third-party clients (stomp.py) and a raw socket where a
client library would hide the bytes:

- boolean headers take true/false in any case (stomp.py sends a Python bool
  as "True"/"False"): NACK requeue, SUBSCRIBE/UNSUBSCRIBE durable;
- MESSAGE always carries redelivered (false on a first delivery);
- heart-beat: a CONNECT without the header gets heart-beat:0,0, a client's
  shorter heart-beat is honoured down to stomp.heartbeat_min (and its former
  spelling limits.heartbeat_min, still accepted);
- durable:true + id without CONNECT client-id is a durable subscription
  named by topic and id, and UNSUBSCRIBE with durable:true deletes it;
- a STOMP 1.1 ACK whose subscription names none is served by message-id;
- ERROR frames carry RabbitMQ's `message` texts, kbridge's explanation in
  the body;
- the default size limits take a 16 MiB body, as RabbitMQ does.

Waits are deadline-based (wait_for, receipts); nothing sleeps and hopes."""

import time
import uuid

import pytest
import stomp

from clients.rawstomp import RawStomp, ServerClosed, frame
from conftest import EXTERNAL_BOOTSTRAP, base_config, wait_for
from stomp_util import Client

# Durable subscriptions are consumer groups: the mock's rebalance waits
# session.timeout.ms - 1s, so keep it short.
KAFKA = {"consumer": {"session.timeout.ms": 6000}}


@pytest.fixture
def uniq():
    """A unique name suffix (a shared cluster keeps earlier tests' topics)."""
    return f"-{uuid.uuid4().hex[:10]}" if EXTERNAL_BOOTSTRAP else f"-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def daemon(kbridged_factory, bootstrap):
    return kbridged_factory(base_config(bootstrap, kafka=dict(KAFKA)))


# ---- item 2: boolean headers in any case --------------------------------------------

def test_nack_requeue_capitalised_as_stomp_py_sends_it(daemon, uniq):
    queue = f"rq.nack{uniq}"
    client = Client(daemon)
    try:
        client.send(f"/queue/{queue}", "poison", receipt="s1")
        client.send(f"/queue/{queue}", "again", receipt="s2")
        client.wait_receipt("s1")
        client.wait_receipt("s2")
        client.subscribe(f"/queue/{queue}", "q", ack="client-individual",
                         headers={"prefetch-count": "1"}, receipt="r1")
        first = client.wait_messages(1)[0]
        # stomp.py turns requeue=False into the header "requeue:False".
        client.conn.nack(first.headers["ack"], requeue=False)
        second = client.wait_messages(2)[1]
        assert second.headers["message-id"] != first.headers["message-id"]
        client.conn.nack(second.headers["ack"], requeue=True)
        again = client.wait_messages(3)[2]
        assert again.body == second.body and again.headers["redelivered"] == "true"
        client.ack(again)
        client.subscribe(f"/queue/{queue}.DLQ", "dlq", receipt="r2")
        dead = wait_for(lambda: [f for f in client.recorder.messages
                                 if f.headers["subscription"] == "dlq"], 30, "the dead letter")
        assert dead[0].body == first.body
        assert not client.recorder.errors, client.recorder.errors
    finally:
        client.close()


# ---- item 6a: redelivered:false ------------------------------------------------------

def test_first_delivery_says_redelivered_false(daemon, uniq):
    queue = f"rq.redelivered{uniq}"
    topic = f"rq.redeliveredt{uniq}"
    client = Client(daemon)
    try:
        client.subscribe(f"/topic/{topic}", "t", receipt="r0")
        client.send(f"/queue/{queue}", "once", receipt="s1")
        client.send(f"/topic/{topic}", "news", receipt="s2")
        client.subscribe(f"/queue/{queue}", "q", ack="client-individual", receipt="r1")
        got = client.wait_messages(2)
        assert {f.headers["redelivered"] for f in got} == {"false"}, [f.headers for f in got]
        queued = [f for f in got if f.headers["subscription"] == "q"][0]
        client.nack(queued, requeue=True)
        again = client.wait_messages(3)[2]
        assert again.headers["redelivered"] == "true"
        assert again.headers["x-delivery-count"] == "2"
    finally:
        client.close()


# ---- item 6b, 6c: heart-beat negotiation -----------------------------------------------

def test_connect_without_heartbeat_header_gets_zero_zero(daemon):
    for version, headers in (("1.0", {}), ("1.2", {}), ("1.2", {"heart-beat": "0,0"})):
        raw = RawStomp(daemon)
        try:
            h = {"host": "localhost"}
            if version != "1.0":
                h["accept-version"] = version
            h.update(headers)
            raw.send_frame("CONNECT", h)
            reply = raw.next_frame()
            assert reply.command == "CONNECTED", reply
            assert reply.headers.get("heart-beat") == "0,0", (version, headers, reply.headers)
        finally:
            raw.close()


@pytest.mark.parametrize("spelling", ["stomp", "limits"])
def test_short_heartbeat_is_honoured_down_to_the_floor(kbridged_factory, bootstrap, spelling):
    # limits.heartbeat stays 10 s; the floor is set to 200 ms here, as
    # stomp.heartbeat_min or in its former spelling limits.heartbeat_min.
    daemon = kbridged_factory(base_config(bootstrap, **{spelling: {"heartbeat_min": "200ms"}}))
    deprecated = "limits.heartbeat_min is deprecated; write stomp.heartbeat_min instead"
    assert (deprecated in daemon.log()) == (spelling == "limits"), daemon.log()
    raw = RawStomp(daemon)
    try:
        reply = raw.connect(headers={"heart-beat": "50,50"})
        assert reply.headers["heart-beat"] == "200,200", reply.headers
    finally:
        raw.close()

    # stomp.py asking for 1 s each way gets 1 s each way.
    class Connected(stomp.ConnectionListener):
        headers = None

        def on_connected(self, frame):
            Connected.headers = frame.headers

    host, port = daemon.host_port("stomp")
    conn = stomp.Connection12([(host, port)], heartbeats=(1000, 1000))
    conn.set_listener("connected", Connected())
    conn.connect(wait=True)
    try:
        assert Connected.headers["heart-beat"] == "1000,1000", Connected.headers
    finally:
        conn.disconnect()

    # A raw client that asks for 500 ms and then stays silent: the server
    # beats every ~500 ms and gives up after 2 x 500 ms, not 2 x 10 s.
    raw = RawStomp(daemon)
    try:
        reply = raw.connect(headers={"heart-beat": "500,500"})
        assert reply.headers["heart-beat"] == "500,500", reply.headers
        started = time.monotonic()
        frames = raw.frames_until_closed(timeout=8)
        elapsed = time.monotonic() - started
        assert [f.command for f in frames] == ["ERROR"], frames
        assert frames[0].headers["message"] == "heart-beat timeout"
        assert raw.heartbeats >= 1
        assert 0.9 <= elapsed < 5, elapsed
    finally:
        raw.close()


# ---- item 6d: durable:true without client-id; UNSUBSCRIBE durable:true deletes -----------

def test_durable_true_without_client_id_resumes_and_unsubscribe_deletes(daemon, uniq):
    topic = f"/topic/rq.durable{uniq}"
    key = {"kafka-key": "one-partition"}  # one partition: order tells what was skipped
    publisher = Client(daemon)
    try:
        sub = Client(daemon)  # no client-id
        # "True" as stomp.py writes a Python bool.
        sub.subscribe(topic, "d", ack="client-individual", headers={"durable": "True"},
                      receipt="r1", timeout=60)
        publisher.send(topic, "m1", headers=key, receipt="p1")
        m1 = sub.wait_messages(1)[0]
        assert m1.body == "m1"
        sub.ack(m1)
        sub.close()
        wait_for(lambda: sub.recorder.disconnected.is_set(), 10, "the subscriber gone")

        publisher.send(topic, "m2", headers=key, receipt="p2")  # while away
        publisher.wait_receipt("p2")

        back = Client(daemon)  # another connection, still no client-id
        back.subscribe(topic, "d", ack="client-individual", headers={"durable": "true"},
                       receipt="r2", timeout=60)
        m2 = back.wait_messages(1)[0]
        assert m2.body == "m2"
        # RabbitMQ: UNSUBSCRIBE with durable:true deletes the subscription,
        # m2 (unacknowledged) with it. A plain UNSUBSCRIBE would keep it for
        # the next SUBSCRIBE of "d".
        back.conn.unsubscribe("d", headers={"durable": "true", "receipt": "u1"})
        back.wait_receipt("u1")

        back.subscribe(topic, "d", ack="client-individual", headers={"durable": "true"},
                       receipt="r3", timeout=60)
        publisher.send(topic, "m4", headers=key, receipt="p4")
        got = back.wait_messages(2)[1:]
        assert [f.body for f in got] == ["m4"], [f.body for f in got]
        assert not back.recorder.errors and not publisher.recorder.errors
        back.close()
    finally:
        publisher.close()


# ---- item 6e: STOMP 1.1 ACK with a subscription that names none ---------------------------

def test_stomp11_ack_served_by_message_id_alone(daemon, uniq):
    queue = f"rq.ack11{uniq}"
    client = Client(daemon, version="1.1")
    try:
        client.send(f"/queue/{queue}", "a", receipt="s1")
        client.wait_receipt("s1")
        client.subscribe(f"/queue/{queue}", "q", ack="client-individual", receipt="r1")
        got = client.wait_messages(1)[0]
        client.conn.ack(got.headers["message-id"], "not-a-subscription", receipt="a1")
        client.wait_receipt("a1")
        assert not client.recorder.errors, client.recorder.errors
        # It was acknowledged: a new consumer gets only what comes next.
        client.conn.unsubscribe("q")
        client.send(f"/queue/{queue}", "b", receipt="s2")
        client.subscribe(f"/queue/{queue}", "q2", ack="client-individual", receipt="r2")
        later = client.wait_messages(2)[1]
        assert later.body == "b"
        client.ack(later)
    finally:
        client.close()


# ---- item 6f: RabbitMQ's ERROR message texts ----------------------------------------------

ERRORS = [
    # (frame after CONNECT, RabbitMQ's message header, kbridge's text in the body)
    (frame("SEND", {"destination": "/queue/a b"}, "x"), "Invalid destination",
     "legal Kafka topic name"),
    (frame("SEND", {"receipt": "r"}, "x"), "Missing destination", "SEND has no destination"),
    (frame("SUBSCRIBE", {"destination": "/queue/x"}), "Missing header", "SUBSCRIBE has no id"),
    (frame("SUBSCRIBE", {"destination": "/queue/x", "id": "s"}) +
     frame("SUBSCRIBE", {"destination": "/queue/y", "id": "s"}),
     "Duplicated subscription identifier", "duplicate subscription id 's'"),
    (frame("FROBNICATE", {}), "Bad command", "unknown command 'FROBNICATE'"),
    (frame("ACK", {}), "Missing header", "ACK has no id"),
    (frame("ACK", {"id": "S7-42"}), "Message not found", "unknown ack id 'S7-42'"),
    (frame("UNSUBSCRIBE", {"id": "s9"}), "No subscription found", "no subscription with id 's9'"),
]


def test_error_frames_carry_rabbitmq_message_texts(daemon):
    for payload, message, text in ERRORS:
        raw = RawStomp(daemon)
        try:
            raw.connect()
            raw.send(payload)
            frames = [f for f in raw.frames_until_closed(timeout=10) if f.command == "ERROR"]
            assert len(frames) == 1, frames
            assert frames[0].headers["message"] == message, (payload, frames[0])
            assert text in frames[0].body.decode(), (payload, frames[0])
        finally:
            raw.close()
    # Before CONNECT.
    raw = RawStomp(daemon)
    try:
        raw.send_frame("SEND", {"destination": "/queue/x"}, "early")
        frames = raw.frames_until_closed(timeout=10)
        assert frames[0].headers["message"] == "Illegal command"
        assert "must be CONNECT" in frames[0].body.decode()
    finally:
        raw.close()


# ---- item 6g: the default size limits take a 16 MiB body ----------------------------------

def test_default_limits_take_a_16_mib_body(daemon, uniq):
    queue = f"rq.large{uniq}"
    body = (b"0123456789abcdef" * (1 << 20))  # 16 MiB
    client = Client(daemon)
    try:
        client.conn.send(f"/queue/{queue}", body, headers={"receipt": "big"})
        wait_for(lambda: "big" in client.recorder.receipts or client.recorder.errors, 60,
                 "RECEIPT or ERROR for the 16 MiB SEND")
        if client.recorder.errors:
            # A Kafka whose topics keep the default 1 MB max.message.bytes
            # refuses it; kbridge's own limits must not have.
            error = client.recorder.errors[0]
            assert EXTERNAL_BOOTSTRAP, error
            assert "max_frame_size" not in error.headers["message"] + error.body
            assert "max_message_size" not in error.headers["message"] + error.body
            return
        client.subscribe(f"/queue/{queue}", "q", ack="client-individual", receipt="r1")
        got = client.wait_messages(1, timeout=60)[0]
        assert len(got.body) == len(body) and got.body.encode() == body
        client.ack(got)
    finally:
        client.close()
