#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""amqp091_convert_seeds.py -- writes the seed corpus of fuzz_amqp091_convert
(tests/fuzz/corpus/amqp091_convert/): record headers as kbridge writes them
for 0-9-1 publishes (the typed table encoded by pika's own codec) and as other
protocols and native Kafka producers write them. Each seed is one flags byte
(bits 0-1: the delivery count's index) and then fields separated by FF FE, each
a header: a first byte below 0x80 picks a name from fuzz_amqp091_convert.c's
header_names[] (the indexes below), or 0x80 then NAME=VALUE."""
import decimal
import os
import sys

from pika import data

SEP = b"\xff\xfe"
TABLE, EXPIRATION, DELIVERY_MODE, NO_MESSAGE_ID = 0, 1, 2, 3
CONTENT_TYPE, CONTENT_ENCODING, PERSISTENT, PRIORITY = 4, 5, 6, 7
CORRELATION_ID, REPLY_TO, EXPIRES, MESSAGE_ID, TIMESTAMP, TYPE = 8, 9, 10, 11, 12, 13
USER_ID, APP_ID, CLUSTER_ID, ROUTING_KEY = 14, 15, 16, 17


def table(values):
    pieces = []
    data.encode_table(pieces, values)
    return b"".join(pieces)


def header(index, value):
    return bytes([index]) + (value if isinstance(value, bytes) else value.encode())


def seed(flags, *headers):
    return bytes([flags]) + SEP.join(headers)


def seeds():
    typed = table({"tenant": "acme", "n": 7, "d": decimal.Decimal("0.5"), "t": True,
                   "none": None, "list": [1, "two", [3]], "bytes": b"\x00\x01",
                   "nested": {"a": {"b": "c"}}, "big": 2 ** 40, "neg": -3})
    return {
        "pika_publish": seed(0, header(TABLE, typed), header(CONTENT_TYPE, "text/plain"),
                             header(PERSISTENT, "true"), header(PRIORITY, "5"),
                             header(CORRELATION_ID, "c1"), header(REPLY_TO, "amq.rabbitmq.reply-to"),
                             header(EXPIRES, "1765000060000"), header(EXPIRATION, "60000"),
                             header(MESSAGE_ID, "m1"), header(TIMESTAMP, "1765000000000"),
                             header(TYPE, "t"), header(USER_ID, "guest"), header(APP_ID, "app"),
                             header(19, "acme"), header(20, "7")),
        "redelivered": seed(2, header(DELIVERY_MODE, "1"), header(NO_MESSAGE_ID, "true"),
                            header(CLUSTER_ID, "c"), header(ROUTING_KEY, "a.b")),
        "stomp_text_headers": seed(1, header(CONTENT_TYPE, "application/json"),
                                   b"\x80" + b"x-custom=value", b"\x80" + b"count=12",
                                   header(EXPIRES, "0"), header(PRIORITY, "9")),
        "bad_values": seed(3, header(PRIORITY, "300"), header(TIMESTAMP, "-5"),
                           header(EXPIRATION, "soon"), header(DELIVERY_MODE, "x"),
                           header(TABLE, b"\x00\x00\x00\x09\x01a\x5a"), header(CONTENT_TYPE, "c" * 300)),
        "empty": seed(0),
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus", "amqp091_convert")
    os.makedirs(out, exist_ok=True)
    for name, value in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(value)


if __name__ == "__main__":
    main()
