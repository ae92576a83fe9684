# SPDX-License-Identifier: Apache-2.0
"""Publish backpressure (architecture §4): a connection never has more than
limits.max_unconfirmed publishes waiting for Kafka; kbridged stops reading
its socket instead of buffering, and every RECEIPT still arrives."""

import threading
import time
import uuid

from conftest import base_config, wait_for
from stomp_util import Client


def unconfirmed(daemon):
    produced = delivered = None
    for line in daemon.http("/metrics")[1].splitlines():
        if line.startswith("kbridge_kafka_produced_total "):
            produced = float(line.split()[1])
        elif line.startswith("kbridge_kafka_delivered_total "):
            delivered = float(line.split()[1])
    return produced - delivered


def test_slow_kafka_bounds_unconfirmed_publishes_per_connection(kbridged_factory, devkafka):
    limit = 10
    total = 200
    daemon = kbridged_factory(base_config(devkafka.bootstrap, limits={"max_unconfirmed": limit}))
    client = Client(daemon)
    try:
        client.send("/queue/bp.orders", "warm-up", receipt="w")
        client.wait_receipt("w")
        assert devkafka.command("broker 1 rtt 200") == "ok"  # every produce now takes >= 200 ms

        peak = [0.0]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], unconfirmed(daemon))
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()
        for i in range(total):
            client.send("/queue/bp.orders", f"m{i}", headers={"kafka-key": "k"}, receipt=f"r{i}")
        wait_for(lambda: len(client.recorder.receipts) == total + 1, 120, "every RECEIPT")
        elapsed = time.monotonic() - started
        stop.set()
        watcher.join()
        assert not client.recorder.errors
        # Never more than the limit in flight for this (only) connection ...
        assert 0 < peak[0] <= limit, f"peak unconfirmed {peak[0]}"
        # ... so 200 publishes needed several round trips of the slow broker.
        assert elapsed >= 0.2 * (total // limit) / 2, f"took only {elapsed:.2f}s"
        assert devkafka.command("broker 1 rtt 0") == "ok"
        # The connection still works normally afterwards.
        client.send("/queue/bp.orders", "after", receipt="after")
        client.wait_receipt("after")
    finally:
        client.close()


def test_full_kafka_producer_queue_holds_sends_instead_of_refusing(kbridged_factory, devkafka):
    """librdkafka's producer queue full (5 records, a broker answering 300 ms
    late): 100 SENDs with receipts on one connection all get their RECEIPT,
    no ERROR, and are in Kafka once and in order. The connection keeps the
    SEND Kafka had no room for and stops reading; the adapter base retries it
    at the next confirmation or after 50 ms (connection_publish_hold,
    architecture §4)."""
    from test_stomp_queues import read_topic

    destination = f"bp.full.{uuid.uuid4().hex[:10]}"
    daemon = kbridged_factory(base_config(
        devkafka.bootstrap, kafka={"producer": {"queue.buffering.max.messages": "5"}},
        limits={"max_unconfirmed": 1000}))
    client = Client(daemon)
    try:
        client.send(f"/queue/{destination}", "warm-up", receipt="w")
        client.wait_receipt("w")
        assert devkafka.command("broker all rtt 300") == "ok"
        try:  # about 20 produce round trips of 300 ms
            for i in range(100):
                client.send(f"/queue/{destination}", f"m{i}", receipt=f"r{i}")
            wait_for(lambda: len(client.recorder.receipts) == 101, 120, "every RECEIPT")
        finally:
            assert devkafka.command("broker all rtt 0") == "ok"
        assert not client.recorder.errors
    finally:
        client.close()
    bodies = [r.value().decode() for r in read_topic(devkafka.bootstrap, destination)
              if r.value() != b"warm-up"]
    assert bodies == [f"m{i}" for i in range(100)]
