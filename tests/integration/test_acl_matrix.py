# SPDX-License-Identifier: Apache-2.0
"""The ACL matrix (issue 17, "Must hold"): three users x {publish, consume} x
{queue, topic, exchange, temporary queue} x every protocol adapter (STOMP with
stomp.py, AMQP 1.0 with python qpid-proton, AMQP 0-9-1 with pika), one
kbridged for the whole matrix.

Users (auth.users, regexes on the destination name):
  admin     publish .*            consume .*
  producer  publish ^orders\\.      consume (nothing)
  consumer  publish (nothing)     consume ^orders\\.

Each test is one (protocol, kind) and checks its six cells: admin and
producer publish (the message arrives at an admin subscriber), admin and
consumer consume (a message admin publishes arrives), consumer's publish and
producer's consume are refused with the protocol's access error naming the
destination: STOMP ERROR `message:access_refused` with the name in the body,
AMQP 1.0 `amqp:unauthorized-access` with the name in the description, AMQP
0-9-1 403 ACCESS_REFUSED with the name in the reply text.

How each kind is spelled:
  queue     STOMP /queue/N, AMQP 1.0 N, 0-9-1 the default exchange (key N) and
            a declared queue N;
  topic     STOMP /topic/N, AMQP 1.0 topic://N, 0-9-1 amq.topic with key N
            (consumed through a queue bound to amq.topic with N: 0-9-1 has no
            other way to read a topic);
  exchange  a declared direct exchange orders.x.*: STOMP and AMQP 1.0
            /exchange/X/KEY both ways, 0-9-1 basic.publish to X and a queue
            bound to X;
  temporary queue  not under the name ACLs, for every user (docs/security.md):
            creating one is allowed to any logged-in user (only its creator
            reads it) and replying to its /reply-queue/NODE.TOKEN address to
            anyone who holds the address (128 random bits). STOMP:
            reply-to:/temp-queue/NAME on a SEND to an admin's temporary queue;
            AMQP 1.0: a dynamic receiver and a sender to the admin's. AMQP 0-9-1
            has no temporary queues yet (direct reply-to is not built,
            docs/amqp091.md): no 0-9-1 cells for this kind.
"""

import itertools
import subprocess
import time
import uuid

import pika
import pytest
from proton import Message
from proton.utils import LinkDetached, SendException

from amqp_client import connect as amqp_connect
from conftest import EXTERNAL_BOOTSTRAP, DevKafka, Kbridged, base_config, wait_for
from stomp_util import Client

PASSWORD = "matrix secret"
USERS = {
    "admin": {"publish": [".*"], "consume": [".*"]},
    "producer": {"publish": ["^orders\\."]},
    "consumer": {"consume": ["^orders\\."]},
}
PROTOCOLS = ["stomp", "amqp", "amqp091"]
TAG = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def matrix_daemon(tmp_path_factory):
    """One kbridged (and dev broker) for every cell."""
    password_hash = subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True,
                                   text=True, check=True).stdout.strip()
    users = [dict(name=name, password_hash=password_hash, **rights)
             for name, rights in USERS.items()]
    devkafka = None if EXTERNAL_BOOTSTRAP else DevKafka()
    bootstrap = EXTERNAL_BOOTSTRAP or devkafka.bootstrap
    config = base_config(bootstrap, auth={"anonymous": False, "users": users},
                         kafka={"consumer": {"session.timeout.ms": 6000}})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    workdir = str(tmp_path_factory.mktemp("acl_matrix"))
    daemon = Kbridged(workdir, config, name="kbridged-matrix")
    yield daemon
    daemon.stop()
    print(f"\n----- kbridged-matrix log: {daemon.log_path}")
    if devkafka:
        devkafka.stop()


def name(protocol, kind, part):
    return f"orders.{kind}.{protocol}.{part}.{TAG}"


# ---- the clients: each a small object with publish/subscribe for one user -----------------


class StompSide:
    def __init__(self, daemon, user):
        self.user = user
        self.client = Client(daemon, login=user, passcode=PASSWORD)
        self.ids = itertools.count()

    def address(self, kind, dest):
        if kind == "queue":
            return f"/queue/{dest}"
        if kind == "topic":
            return f"/topic/{dest}"
        return f"/exchange/{dest}/key"  # dest is the exchange

    def subscribe(self, kind, dest):
        self.client.subscribe(self.address(kind, dest), str(next(self.ids)),
                              receipt=f"sub-{next(self.ids)}")

    def publish(self, kind, dest, body, headers=None):
        receipt = f"send-{next(self.ids)}"
        self.client.send(self.address(kind, dest), body, headers=headers, receipt=receipt)
        self.client.wait_receipt(receipt)

    def received(self, body):
        wait_for(lambda: any(m.body == body for m in self.client.recorder.messages), 30,
                 f"{body!r} at {self.user}")
        return next(m for m in self.client.recorder.messages if m.body == body)

    def refused(self, action, kind, dest):
        """The access error of a refused publish/subscribe: its text."""
        address = self.address(kind, dest)
        if action == "publish":
            self.client.send(address, "denied", receipt="denied")
        else:
            self.client.conn.subscribe(address, id="denied", headers={"receipt": "denied"})
        error = self.client.wait_error()
        assert error.headers["message"] == "access_refused", (error.headers, error.body)
        assert "denied" not in self.client.recorder.receipts
        return error.body

    def close(self):
        self.client.close()


class AmqpSide:
    def __init__(self, daemon, user):
        self.user = user
        self.conn = amqp_connect(daemon, user, PASSWORD)
        self.receivers = []

    def address(self, kind, dest):
        if kind == "queue":
            return dest
        if kind == "topic":
            return f"topic://{dest}"
        return f"/exchange/{dest}/key"

    def subscribe(self, kind, dest):
        self.receivers.append(self.conn.create_receiver(self.address(kind, dest), credit=10))

    def publish(self, kind, dest, body, headers=None):
        sender = self.conn.create_sender(self.address(kind, dest))
        sender.send(Message(body=body, properties=headers or {}))
        sender.close()

    def received(self, body):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for receiver in self.receivers:
                try:
                    message = receiver.receive(timeout=0.2)
                except Exception:  # proton's Timeout
                    continue
                receiver.accept()
                if message.body == body:
                    return message
        raise AssertionError(f"{body!r} did not arrive at {self.user}")

    def refused(self, action, kind, dest):
        address = self.address(kind, dest)
        with pytest.raises((LinkDetached, SendException)) as refused:
            if action == "publish":
                sender = self.conn.create_sender(address)
                sender.send(Message(body="denied"))
            else:
                self.conn.create_receiver(address, credit=1)
        text = str(refused.value)
        assert "amqp:unauthorized-access" in text, text
        return text

    def close(self):
        self.conn.close()


class PikaSide:
    def __init__(self, daemon, user):
        self.user = user
        host, port = daemon.host_port("amqp")
        self.conn = pika.BlockingConnection(pika.ConnectionParameters(
            host=host, port=port, credentials=pika.PlainCredentials(user, PASSWORD),
            socket_timeout=10, blocked_connection_timeout=30, connection_attempts=1))
        self.channel = self.conn.channel()
        self.channel.confirm_delivery()
        self.got = []

    def exchange_and_key(self, kind, dest):
        if kind == "queue":
            return "", dest
        if kind == "topic":
            return "amq.topic", dest
        return dest, "key"

    def subscribe(self, kind, dest):
        """Consume `dest`: a queue; for topic and exchange a queue dest + '.q' bound to it
        (declared by admin beforehand, see setup_pika)."""
        queue = dest if kind == "queue" else dest + ".q"
        self.channel.basic_consume(queue, lambda ch, method, props, body:
                                   (self.got.append(body), ch.basic_ack(method.delivery_tag)))

    def publish(self, kind, dest, body, headers=None):
        exchange, key = self.exchange_and_key(kind, dest)
        self.channel.basic_publish(exchange, key, body.encode(),
                                   pika.BasicProperties(headers=headers or {}))

    def received(self, body):
        deadline = time.monotonic() + 30
        while body.encode() not in self.got:
            assert time.monotonic() < deadline, f"{body!r} did not arrive at {self.user}"
            self.conn.process_data_events(time_limit=0.2)
        return body

    def refused(self, action, kind, dest):
        channel = self.conn.channel()
        channel.confirm_delivery()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            if action == "publish":
                exchange, key = self.exchange_and_key(kind, dest)
                channel.basic_publish(exchange, key, b"denied")
            else:
                queue = dest if kind == "queue" else dest + ".q"
                channel.basic_consume(queue, lambda *args: None)
        assert closed.value.reply_code == 403, closed.value
        assert closed.value.reply_text.startswith("ACCESS_REFUSED - "), closed.value
        return closed.value.reply_text

    def close(self):
        if self.conn.is_open:
            self.conn.close()


SIDES = {"stomp": StompSide, "amqp": AmqpSide, "amqp091": PikaSide}


def setup_pika(daemon, kind, dests):
    """Declarations 0-9-1 needs before its cells: the queues consumed, bound to
    amq.topic or the exchange (admin declares them)."""
    admin = PikaSide(daemon, "admin")
    for dest in dests:
        if kind == "queue":
            admin.channel.queue_declare(dest)
        else:
            exchange, key = admin.exchange_and_key(kind, dest)
            admin.channel.queue_declare(dest + ".q")
            admin.channel.queue_bind(dest + ".q", exchange, routing_key=key)
    admin.close()


def declare_exchanges(daemon, dests):
    admin = PikaSide(daemon, "admin")
    for dest in dests:
        admin.channel.exchange_declare(dest, "direct")
    admin.close()


@pytest.mark.parametrize("kind", ["queue", "topic", "exchange"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_acl_matrix(matrix_daemon, protocol, kind):
    daemon = matrix_daemon
    # by_admin: admin subscribes, producer then admin publish; to_consumer: consumer
    # subscribes, admin publishes; the refused cells use names of their own
    by_admin, to_consumer, denied = (name(protocol, kind, part)
                                     for part in ("by_admin", "to_consumer", "denied"))
    if kind == "exchange":
        declare_exchanges(daemon, [by_admin, to_consumer, denied])
    if protocol == "amqp091":
        setup_pika(daemon, kind, [by_admin, to_consumer, denied])
    side = SIDES[protocol]
    admin, producer, consumer = (side(daemon, user) for user in ("admin", "producer", "consumer"))
    try:
        # publish by admin and producer, consumed by admin
        admin.subscribe(kind, by_admin)
        for user, client in (("producer", producer), ("admin", admin)):
            body = f"{protocol} {kind} published by {user}"
            client.publish(kind, by_admin, body)
            admin.received(body)
        # consume by consumer (admin's consume was shown above)
        consumer.subscribe(kind, to_consumer)
        body = f"{protocol} {kind} for consumer"
        admin.publish(kind, to_consumer, body)
        consumer.received(body)
        # refused: consumer publishing, producer consuming; the text names the destination
        refusals = {"consumer publish": consumer.refused("publish", kind, denied),
                    "producer consume": producer.refused("consume", kind, denied)}
        for cell, text in refusals.items():
            assert denied in text, f"{protocol} {kind} {cell}: {text}"
            print(f"{protocol:8} {kind:9} {cell:17} refused: {text.splitlines()[0]}")
    finally:
        for client in (admin, producer, consumer):
            client.close()


@pytest.mark.parametrize("protocol", ["stomp", "amqp"])
def test_acl_matrix_temporary_queues(matrix_daemon, protocol):
    """Every user may create a temporary queue and reply to one (the
    temporary-queue row of the matrix: all six cells allowed)."""
    daemon = matrix_daemon
    holder = amqp_connect(daemon, "admin", PASSWORD)  # admin's temporary queue
    inbox = holder.create_receiver(None, dynamic=True, credit=10)
    inbox_address = inbox.link.remote_source.address
    assert inbox_address.startswith("/reply-queue/")
    try:
        for user in USERS:
            body = f"{protocol} request from {user}"
            if protocol == "stomp":
                client = Client(daemon, login=user, passcode=PASSWORD)
                # publish to a temporary queue (admin's), creating one's own via reply-to
                client.send(inbox_address, body, headers={"reply-to": "/temp-queue/answers"},
                            receipt="sent")
                client.wait_receipt("sent")
            else:
                client = amqp_connect(daemon, user, PASSWORD)
                own = client.create_receiver(None, dynamic=True, credit=10)
                sender = client.create_sender(inbox_address)
                sender.send(Message(body=body, reply_to=own.link.remote_source.address))
            request = inbox.receive(timeout=30)
            inbox.accept()
            assert request.body in (body, body.encode())  # STOMP bodies arrive as binary
            reply_to = request.reply_to
            assert reply_to and reply_to.startswith("/reply-queue/"), reply_to
            # admin replies to the user's temporary queue, which receives it
            reply = holder.create_sender(reply_to)
            reply.send(Message(body=f"reply to {user}"))
            reply.close()
            if protocol == "stomp":
                message = client.wait_messages(1)[0]
                assert message.body == f"reply to {user}"
                assert message.headers["destination"] == "/temp-queue/answers"
            else:
                assert own.receive(timeout=30).body == f"reply to {user}"
                own.accept()
            client.close()
    finally:
        holder.close()
