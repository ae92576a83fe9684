# SPDX-License-Identifier: Apache-2.0
"""Fault suite, AMQP 0-9-1 cases (issue 14; the other protocols' cases are in
test_fault_injection.py, whose helpers these reuse): kill -9 of kbridged
under pika publishing with publisher confirms and pika consuming with manual
acks, then a restart.

What must hold, on the clients' own evidence:
  - every message pika saw confirmed (basic.ack) is in Kafka, once (the
    idempotent producer);
  - every message in Kafka that no consumer had acked before the kill —
    including the deliveries a consumer held unacked — is delivered again
    after the restart;
  - a bystander's round trip works after the restart."""

import threading

import pika

from conftest import wait_for
from test_amqp091 import KAFKA, PASSWORD, USER, password_hash  # noqa: F401
from test_fault_injection import account, bystander_round_trip, stored_bodies
from test_stomp_queues import queue_config


def amqp091_config(bootstrap, password_hash):  # noqa: F811
    config = queue_config(bootstrap)
    config["kafka"].update(KAFKA)
    config["auth"] = {"anonymous": True, "users": [
        {"name": USER, "password_hash": password_hash, "publish": [".*"], "consume": [".*"]}]}
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    return config


def connect(daemon):
    host, port = daemon.host_port("amqp")
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=host, port=port, credentials=pika.PlainCredentials(USER, PASSWORD),
        connection_attempts=1, socket_timeout=10, blocked_connection_timeout=30))


class ConfirmedPublisher(threading.Thread):
    """pika on a thread: confirm.select, then basic.publish one message at a
    time (pika's BlockingChannel returns when the broker's basic.ack came),
    until stopped or the daemon is gone. `confirmed` are the acked bodies."""

    def __init__(self, daemon, queue, prefix="p"):
        super().__init__(daemon=True)
        self.conn = connect(daemon)
        self.channel = self.conn.channel()
        self.channel.confirm_delivery()
        self.queue, self.prefix = queue, prefix
        self.confirmed = []
        self.stop_event = threading.Event()
        self.start()

    def run(self):
        i = 0
        try:
            while not self.stop_event.is_set():
                body = f"{self.prefix}{i}"
                self.channel.basic_publish("", self.queue, body.encode(), pika.BasicProperties(
                    delivery_mode=2, headers={"kafka-key": f"k{i % 8}"}))
                self.confirmed.append(body)  # a nack raises NackError: not appended
                i += 1
        except Exception:
            return  # the daemon went away (kill -9)


class Consumer(threading.Thread):
    """pika on a thread: basic.qos(prefetch), basic.consume with manual acks.
    ack=False holds every delivery unacked. `acked` are the bodies whose
    basic.ack was sent, `received` every delivery's body."""

    def __init__(self, daemon, queue, prefetch, ack=True):
        super().__init__(daemon=True)
        self.conn = connect(daemon)
        self.channel = self.conn.channel()
        self.channel.basic_qos(prefetch_count=prefetch)
        self.lock = threading.Lock()
        self.received, self.acked = [], []
        self.ack = ack
        self.channel.basic_consume(queue, self._on_message)  # consume-ok: positioned
        self.stop_event = threading.Event()
        self.start()

    def _on_message(self, channel, method, properties, body):
        with self.lock:
            self.received.append(body.decode())
        if self.ack:
            channel.basic_ack(method.delivery_tag)
            with self.lock:
                self.acked.append(body.decode())

    def run(self):
        try:
            while not self.stop_event.is_set():
                self.conn.process_data_events(time_limit=0.1)
        except Exception:
            return  # the daemon went away

    def bodies(self):
        with self.lock:
            return list(self.received)

    def close(self):
        self.stop_event.set()
        self.join(30)
        try:
            self.conn.close()
        except Exception:
            pass


def test_kill_9_under_pika_confirmed_publishing_and_acked_consuming(kbridged_factory, devkafka,
                                                                    password_hash):  # noqa: F811
    config = amqp091_config(devkafka.bootstrap, password_hash)
    queue = "k9-amqp091"
    first = kbridged_factory(config, name="before-kill")
    setup = connect(first)
    setup.channel().queue_declare(queue, durable=True)
    setup.close()
    acker = Consumer(first, queue, prefetch=20)
    holder = Consumer(first, queue, prefetch=10, ack=False)  # never acks
    publishers = [ConfirmedPublisher(first, queue, prefix=p) for p in ("p", "q")]
    wait_for(lambda: sum(len(p.confirmed) for p in publishers) >= 600 and
             len(acker.acked) >= 200 and len(holder.received) >= 10, 90, "load before the kill")
    first.kill()
    for thread in publishers + [acker, holder]:
        thread.stop_event.set()
        thread.join(30)
    confirmed = {b for p in publishers for b in p.confirmed}
    _, stored = stored_bodies(devkafka.bootstrap, queue)
    duplicates = account("kill -9 (AMQP 0-9-1)", confirmed, stored)
    assert duplicates == 0, "the idempotent producer stored a record twice"
    with acker.lock:
        settled = set(acker.acked)
    held = set(holder.bodies())
    assert held and not held & settled
    unsettled = set(stored) - settled
    assert held <= unsettled

    # after the restart every message not acked before the kill comes again
    second = kbridged_factory(config, name="after-restart")
    again = Consumer(second, queue, prefetch=100)
    wait_for(lambda: set(again.bodies()) >= unsettled, 120,
             f"{len(unsettled)} unacked messages delivered again")
    redelivered = set(again.bodies())
    print(f"kill -9 (AMQP 0-9-1): {len(settled)} acked before, {len(held)} held unacked,"
          f" {len(unsettled)} unacked all delivered again, {len(redelivered & settled)} acked"
          f" ones again (acked after the last commit)")
    again.close()
    bystander_round_trip(second)
