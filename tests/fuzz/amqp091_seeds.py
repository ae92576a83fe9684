#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""amqp091_seeds.py -- writes the seed corpus of fuzz_amqp091_frame
(tests/fuzz/corpus/amqp091_frame/) from frames that pika's own codec encodes:
what a pika client sends, and the malformed frames the bad-input tests name.
Each seed is one flags byte (bit 0: frame_max 131072, else 4096; bits 1-7:
where the input is split into two reads) and then the frames."""
import decimal
import os
import sys

from pika import frame, spec


def method(channel, m):
    return frame.Method(channel, m).marshal()


def header(channel, size, properties):
    return frame.Header(channel, size, properties).marshal()


def body(channel, data):
    return frame.Body(channel, data).marshal()


def seeds():
    publish = (method(1, spec.Basic.Publish(exchange="logs", routing_key="a.b", mandatory=True))
               + header(1, 5, spec.BasicProperties(
                   content_type="text/plain", delivery_mode=2,
                   headers={"tenant": "acme", "n": 7, "d": decimal.Decimal("0.5"), "t": True, "none": None,
                            "list": [1, 2], "bytes": b"\x00\x01"},
                   correlation_id="c1", reply_to="amq.rabbitmq.reply-to", expiration="60000",
                   message_id="m1", timestamp=1765000000, type="t", user_id="guest",
                   app_id="app", priority=5))
               + body(1, b"hello"))
    plain = method(1, spec.Basic.Publish(exchange="", routing_key="q"))
    return {
        "heartbeat": (1, frame.Heartbeat().marshal()),
        "start_ok_plain": (0, method(0, spec.Connection.StartOk(
            client_properties={"product": "pika",
                               "capabilities": {"publisher_confirms": True, "basic.nack": True}},
            mechanism="PLAIN", response="\0guest\0guest", locale="en_US"))),
        "tune_ok_open": (1, method(0, spec.Connection.TuneOk(channel_max=2047, frame_max=131072,
                                                             heartbeat=60))
                         + method(0, spec.Connection.Open(virtual_host="/"))),
        "channel_open_confirm": (1, method(1, spec.Channel.Open())
                                 + method(1, spec.Confirm.Select())),
        "queue_declare_arguments": (1, method(1, spec.Queue.Declare(
            queue="jobs", durable=True,
            arguments={"x-message-ttl": 60000, "x-dead-letter-exchange": "dlx",
                       "x-single-active-consumer": True, "x-max-length-bytes": 1 << 40,
                       "nested": {"a": [1, "two", decimal.Decimal("3.5"), None]}}))),
        "exchange_declare_bind": (1, method(1, spec.Exchange.Declare(
            exchange="logs", type="topic", durable=True, arguments={"alternate-exchange": "ae"}))
            + method(1, spec.Queue.Bind(queue="q", exchange="logs", routing_key="a.#"))),
        "publish_with_content": (1, publish),
        "split_publish": (0x41, publish),
        "consume_qos_ack": (1, method(1, spec.Basic.Qos(prefetch_count=50))
                            + method(1, spec.Basic.Consume(queue="q", consumer_tag="ctag",
                                                           arguments={"x-priority": 10}))
                            + method(1, spec.Basic.Ack(delivery_tag=42, multiple=True))
                            + method(1, spec.Basic.Nack(delivery_tag=43, requeue=False))
                            + method(1, spec.Basic.Reject(delivery_tag=44, requeue=True))),
        "close": (0, method(1, spec.Channel.Close(reply_code=200, reply_text="bye", class_id=0,
                                                  method_id=0))
                  + method(0, spec.Connection.Close(reply_code=200, reply_text="Normal shutdown",
                                                    class_id=0, method_id=0))),
        "bad_frame_end": (1, plain[:-1] + b"\xcd"),
        "unknown_frame_type": (1, b"\x09\x00\x00\x00\x00\x00\x00\xce"),
        "oversized_frame": (0, b"\x03\x00\x01\x00\x01\x00\x00" + b"x" * 32),
        "truncated_method": (1, b"\x01\x00\x01\x00\x00\x00\x06\x00\x3c\x00\x28\x00\x00\xce"),
        "unknown_method": (1, b"\x01\x00\x01\x00\x00\x00\x04\x00\x63\x00\x0a\xce"),
        "heartbeat_on_channel": (1, b"\x08\x00\x05\x00\x00\x00\x00\xce"),
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "amqp091_frame")
    os.makedirs(out, exist_ok=True)
    for name, (flags, data) in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([flags]) + data)


if __name__ == "__main__":
    main()
