# SPDX-License-Identifier: Apache-2.0
"""AMQP 0-9-1 across protocols (issue 14, DESIGN §3's mapping): one message,
every reader, the properties and headers intact.

- pika publishes to a declared topic exchange; a STOMP `/exchange/...`
  subscriber, an AMQP 1.0 receiver on the same address and a native Kafka
  consumer (confluent-kafka, reading the exchange's topic) all see it with
  its exact body, content type, correlation id, reply-to, message id,
  persistence and custom headers;
- the reverse: a STOMP SEND, an AMQP 1.0 transfer and a native Kafka record
  reach a pika consumer with the same properties as 0-9-1 basic properties
  and `headers` entries.

Waits are deadline-based; nothing sleeps and hopes."""

import pika
from confluent_kafka import Producer
from proton import Message

from amqp_client import body_of, connect as amqp10_connect
from conftest import wait_for
from stomp_util import Client
from test_amqp091 import daemon, drain_until, password_hash, pika_connect, uniq  # noqa: F401
from test_stomp_queues import header_dict, read_topic

BODY = "order 42 \u20ac".encode()  # UTF-8, not ASCII


def test_pika_to_topic_exchange_reaches_stomp_amqp10_and_kafka(daemon, bootstrap, uniq):  # noqa: F811
    exchange = f"events{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.exchange_declare(exchange, exchange_type="topic", durable=True)

    stomp = Client(daemon)
    stomp.conn.subscribe(f"/exchange/{exchange}/order.*", id="s1", ack="auto",
                         headers={"receipt": "sub"})
    stomp.wait_receipt("sub")
    amqp10 = amqp10_connect(daemon)
    receiver = amqp10.create_receiver(f"/exchange/{exchange}/order.*")

    ch.confirm_delivery()  # basic_publish returns once the broker confirmed
    ch.basic_publish(exchange, "order.created", BODY, pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8", correlation_id="corr-42",
        reply_to=f"replies{uniq}", message_id="msg-42", delivery_mode=2, type="order",
        app_id="shop", headers={"tenant": "acme", "attempt": 3, "urgent": True}))

    # STOMP
    frame = stomp.wait_messages(1)[0]
    assert frame.body.encode() == BODY
    h = frame.headers
    assert h["content-type"] == "application/json"
    assert h["content-encoding"] == "utf-8"
    assert h["correlation-id"] == "corr-42"
    assert h["reply-to"] == f"replies{uniq}"
    assert h["message-id"] == "msg-42"
    assert h["persistent"] == "true"
    assert h["type"] == "order"
    assert h["app-id"] == "shop"
    assert (h["tenant"], h["attempt"], h["urgent"]) == ("acme", "3", "true")
    assert h["kbridge-routing-key"] == "order.created"
    assert not any(name.startswith(("kbridge-amqp-", "kbridge-reply-")) for name in h)

    # AMQP 1.0
    message = receiver.receive(timeout=30)
    receiver.accept()
    assert isinstance(message, Message)
    assert body_of(message) == BODY
    assert message.content_type == "application/json"
    assert message.correlation_id == "corr-42"
    assert message.reply_to == f"replies{uniq}"
    assert message.id == "msg-42"
    assert message.durable is True
    assert message.properties["tenant"] == "acme"
    assert str(message.properties["attempt"]) == "3"
    assert str(message.properties["urgent"]).lower() == "true"

    # native Kafka: the exchange's topic holds the one record
    records = wait_for(lambda: read_topic(bootstrap, exchange, timeout=10) or None, 30,
                       f"the record in topic {exchange}")
    assert [r.value() for r in records] == [BODY]
    assert records[0].key() == b"order.created"
    k = header_dict(records[0].headers())
    assert k["content-type"] == "application/json"
    assert k["correlation-id"] == "corr-42"
    assert k["reply-to"] == f"replies{uniq}"
    assert k["message-id"] == "msg-42"
    assert k["persistent"] == "true"
    assert (k["tenant"], k["attempt"], k["urgent"]) == ("acme", "3", "true")
    assert k["kbridge-routing-key"] == "order.created"

    amqp10.close()
    stomp.conn.disconnect()
    conn.close()


def test_stomp_amqp10_and_kafka_publishers_reach_a_pika_consumer(daemon, bootstrap, uniq):  # noqa: F811
    queue = f"inbox{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    got = {}

    def on_message(c, m, p, b):
        got[p.headers.get("origin")] = (m, p, b)
        c.basic_ack(m.delivery_tag)

    ch.basic_consume(queue, on_message)

    stomp = Client(daemon)
    stomp.conn.send(f"/queue/{queue}", "from stomp \u20ac", content_type="text/plain",
                    headers={"correlation-id": "c-stomp", "reply-to": f"/queue/back{uniq}",
                             "message-id": "m-stomp", "persistent": "true",
                             "origin": "stomp", "tenant": "acme", "receipt": "r"})
    stomp.wait_receipt("r")

    amqp10 = amqp10_connect(daemon)
    sender = amqp10.create_sender(f"/queue/{queue}")
    sender.send(Message(body=b"from amqp 1.0", id="m-amqp", correlation_id="c-amqp",
                        reply_to=f"/queue/back{uniq}", content_type="application/octet-stream",
                        durable=True, properties={"origin": "amqp10", "tenant": "acme"}))

    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(queue, b"from kafka", headers=[
        ("content-type", b"text/plain"), ("correlation-id", b"c-kafka"),
        ("reply-to", f"/queue/back{uniq}".encode()), ("message-id", b"m-kafka"),
        ("origin", b"kafka"), ("tenant", b"acme")])
    assert producer.flush(30) == 0

    drain_until(conn, lambda: len(got) == 3, 60, "the three messages")
    expected = {
        "stomp": ("from stomp \u20ac".encode(), "text/plain", "c-stomp", "m-stomp", 2),
        "amqp10": (b"from amqp 1.0", "application/octet-stream", "c-amqp", "m-amqp", 2),
        # no `persistent` header: no delivery_mode (transient, as RabbitMQ reads it)
        "kafka": (b"from kafka", "text/plain", "c-kafka", "m-kafka", None),
    }
    for origin, (body, content_type, correlation, message_id, mode) in expected.items():
        method, props, got_body = got[origin]
        assert got_body == body, origin
        assert props.content_type == content_type, origin
        assert props.correlation_id == correlation, origin
        assert props.reply_to == f"/queue/back{uniq}", origin
        assert props.message_id == message_id, origin
        assert props.delivery_mode == mode, origin
        assert props.headers["tenant"] == "acme", origin
        assert method.redelivered is False, origin
        assert not any(n.startswith(("kbridge-amqp-", "kbridge-reply-")) for n in props.headers)
    amqp10.close()
    stomp.conn.disconnect()
    conn.close()
