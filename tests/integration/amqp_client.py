# SPDX-License-Identifier: Apache-2.0
"""Helpers for AMQP 1.0 integration tests with Qpid Proton (python3-qpid-proton):
blocking connections for simple steps, and a windowed asynchronous sender run
on its own thread with a deadline (no sleep-and-hope)."""

import threading
import time

from proton import Condition, Delivery, Message
from proton.handlers import MessagingHandler
from proton.reactor import AtMostOnce, Container
from proton.utils import BlockingConnection


def amqp_url(daemon, user=None, password=None):
    host, port = daemon.host_port("amqp")
    credentials = f"{user}:{password}@" if user else ""
    return f"amqp://{credentials}{host}:{port}"


def connect(daemon, user=None, password=None, container_id=None, timeout=30):
    """A BlockingConnection; PLAIN when a user is given, ANONYMOUS otherwise."""
    kwargs = {"allowed_mechs": "PLAIN" if user else "ANONYMOUS"}
    if container_id:
        kwargs["container"] = Container()
        kwargs["container"].container_id = container_id
    return BlockingConnection(amqp_url(daemon, user, password), timeout=timeout, **kwargs)


def settle(receiver, state, condition=None, failed=False, undeliverable=False):
    """Settle the oldest received delivery of a BlockingReceiver with an outcome."""
    delivery = receiver.fetcher.unsettled.popleft()
    if condition:
        delivery.local.condition = condition
    if state == Delivery.MODIFIED:
        delivery.local.failed = failed
        delivery.local.undeliverable = undeliverable
    delivery.update(state)
    delivery.settle()
    receiver.connection.container.process()  # put the disposition on the wire


def receive_all(receiver, count, timeout=60, accept=True):
    """`count` messages from a BlockingReceiver (accepted unless told otherwise)."""
    messages = []
    deadline = time.monotonic() + timeout
    while len(messages) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out with {len(messages)} of {count} messages"
        messages.append(receiver.receive(timeout=left))
        if accept:
            receiver.accept()
    return messages


class WindowedSender(MessagingHandler):
    """Sends `messages` to `address` keeping at most `window` unsettled, and
    records every outcome. Pre-settled (at most once) when presettle=True."""

    def __init__(self, url, address, messages, window=1000, presettle=False):
        super().__init__()
        self.url = url
        self.address = address
        self.messages = messages
        self.window = window
        self.presettle = presettle
        self.sent = 0
        self.accepted = []  # indexes, in the order the outcomes came
        self.rejected = []  # (index, condition)
        self.released = []
        self.tags = {}
        self.done = threading.Event()
        self.error = None
        self.connection = None

    def on_start(self, event):
        self.connection = event.container.connect(self.url, allowed_mechs="ANONYMOUS")
        options = AtMostOnce() if self.presettle else None
        event.container.create_sender(self.connection, self.address, options=options)

    def on_sendable(self, event):
        sender = event.sender
        while (sender.credit and self.sent < len(self.messages) and
               (self.presettle or self.sent - self.settled() < self.window)):
            delivery = sender.send(self.messages[self.sent])
            self.tags[delivery] = self.sent
            self.sent += 1
        if self.presettle and self.sent == len(self.messages):
            self.finish(event)

    def settled(self):
        return len(self.accepted) + len(self.rejected) + len(self.released)

    def on_accepted(self, event):
        self.accepted.append(self.tags.pop(event.delivery))
        self.after_outcome(event)

    def on_rejected(self, event):
        self.rejected.append((self.tags.pop(event.delivery), event.delivery.remote.condition))
        self.after_outcome(event)

    def on_released(self, event):
        self.released.append(self.tags.pop(event.delivery))
        self.after_outcome(event)

    def after_outcome(self, event):
        if self.settled() == len(self.messages):
            self.finish(event)
        elif event.link.credit:
            self.on_sendable(event)

    def finish(self, event):
        self.done.set()
        event.connection.close()

    def on_transport_error(self, event):
        self.error = event.transport.condition
        self.done.set()

    def on_connection_error(self, event):
        self.error = event.connection.remote_condition
        self.done.set()


def run_in_thread(handler):
    """Run a MessagingHandler's container on a daemon thread."""
    container = Container(handler)
    thread = threading.Thread(target=container.run, daemon=True)
    thread.start()
    return container, thread


def send_windowed(daemon, address, messages, window=1000, presettle=False, timeout=120):
    """Send on a thread and wait until every message has an outcome (or, when
    pre-settled, has been written)."""
    handler = WindowedSender(amqp_url(daemon), address, messages, window, presettle)
    _, thread = run_in_thread(handler)
    assert handler.done.wait(timeout), (
        f"sender did not finish: {handler.sent} sent, {handler.settled()} settled")
    thread.join(timeout)
    assert handler.error is None, handler.error
    return handler


def body_of(message):
    """A data-section body as bytes (proton gives memoryview or bytes)."""
    body = message.body
    return bytes(body) if isinstance(body, (bytes, bytearray, memoryview)) else body


__all__ = ["Condition", "Delivery", "Message", "amqp_url", "body_of", "connect",
           "receive_all", "run_in_thread", "send_windowed", "settle", "WindowedSender"]


def run_rhea(script, *args, timeout=120):
    """Run a Node.js client of tests/integration/clients (rhea, installed by
    packaging/install-deps.sh --test) with `args`; its one-line JSON summary."""
    import json
    import os
    import shutil
    import subprocess
    clients = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients")
    node = shutil.which("node") or shutil.which("nodejs")
    assert node and os.path.isdir(os.path.join(clients, "node_modules", "rhea")), (
        "rhea (Node.js) is not installed: run packaging/install-deps.sh --test")
    result = subprocess.run([node, os.path.join(clients, script)] + [str(a) for a in args],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
