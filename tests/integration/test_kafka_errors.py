# SPDX-License-Identifier: Apache-2.0
"""Kafka errors reach clients by their class (architecture "Kafka layer",
daemon/kafka_error.c): a produce that Kafka refuses for authorization or
size gets the matching client error (STOMP ERROR of kind acl / limit, AMQP
amqp:unauthorized-access / amqp:link:message-size-exceeded), not the
generic "Kafka unavailable" / amqp:internal-error, and the connection's
other destinations are not affected.

The dev broker injects the errors ("errors Produce 1 NAME": the next
produce request fails with NAME); librdkafka treats both as permanent for
the records of that request, so the client sees them at once.
"""

import pytest
from proton import Message

from amqp_client import send_windowed
from stomp_util import Client
from test_stomp_queues import metrics, queue_config, send_all

# (injected Kafka error, STOMP error kind counted, AMQP rejection condition, Kafka's text)
CASES = [
    ("TOPIC_AUTHORIZATION_FAILED", "acl", "amqp:unauthorized-access",
     "Topic authorization failed"),
    ("MSG_SIZE_TOO_LARGE", "limit", "amqp:link:message-size-exceeded", "too large"),
]


def stomp_errors(daemon, kind):
    return metrics(daemon).get(f'kbridge_stomp_errors_total{{kind="{kind}"}}', 0.0)


@pytest.mark.parametrize("kafka_error,stomp_kind,amqp_condition,text", CASES)
def test_refused_produce_gets_the_matching_client_error(kbridged_factory, devkafka, kafka_error,
                                                        stomp_kind, amqp_condition, text):
    config = queue_config(devkafka.bootstrap)
    # librdkafka remembers a topic's permanent error until its next metadata refresh
    config["kafka"]["properties"] = {"topic.metadata.refresh.interval.ms": "2000"}
    daemon = kbridged_factory(config)
    name = kafka_error.lower().replace("_", "-")

    # STOMP: the SEND gets an ERROR (with its receipt-id) of the matching kind
    client = Client(daemon)
    send_all(client, f"/queue/{name}-stomp", [("warm-up", {})])
    counted = stomp_errors(daemon, stomp_kind)
    assert devkafka.command(f"errors Produce 1 {kafka_error}") == "ok"
    client.send(f"/queue/{name}-stomp", "refused", receipt="refused")
    error = client.wait_error(timeout=60)
    assert error.headers.get("receipt-id") == "refused"
    message = error.headers.get("message", "")
    assert text.lower() in message.lower(), message
    assert "unavailable" not in message.lower(), message
    assert "refused" not in client.recorder.receipts
    assert stomp_errors(daemon, stomp_kind) == counted + 1

    # AMQP: the transfer is rejected with the matching condition
    warm = send_windowed(daemon, f"/queue/{name}-amqp", [Message(body=b"warm-up")])
    assert warm.accepted == [0], warm.rejected
    assert devkafka.command(f"errors Produce 1 {kafka_error}") == "ok"
    handler = send_windowed(daemon, f"/queue/{name}-amqp", [Message(body=b"refused")])
    assert handler.accepted == []
    assert len(handler.rejected) == 1, handler.rejected
    condition = handler.rejected[0][1]
    assert condition is not None and condition.name == amqp_condition, condition
    assert text.lower() in (condition.description or "").lower(), condition
