# SPDX-License-Identifier: Apache-2.0
"""Helpers for STOMP integration tests: a stomp.py connection that records
what it receives, with deadline-based waits (no sleep-and-hope)."""

import threading

import stomp

from conftest import wait_for


class Recorder(stomp.ConnectionListener):
    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []
        self.receipts = []
        self.errors = []
        self.disconnected = threading.Event()

    def on_message(self, frame):
        with self.lock:
            self.messages.append(frame)

    def on_receipt(self, frame):
        with self.lock:
            self.receipts.append(frame.headers.get("receipt-id"))

    def on_error(self, frame):
        with self.lock:
            self.errors.append(frame)

    def on_disconnected(self):
        self.disconnected.set()


class Client:
    """One STOMP 1.2 (default) connection to kbridged."""

    def __init__(self, daemon, version="1.2", login=None, passcode=None, client_id=None,
                 heartbeats=(0, 0), auto_connect=True):
        host, port = daemon.host_port("stomp")
        cls = {"1.0": stomp.Connection10, "1.1": stomp.Connection11,
               "1.2": stomp.Connection12}[version]
        kwargs = {"heartbeats": heartbeats} if version != "1.0" else {}
        self.conn = cls([(host, port)], **kwargs)
        self.recorder = Recorder()
        self.conn.set_listener("recorder", self.recorder)
        self.version = version
        if auto_connect:
            headers = {"client-id": client_id} if client_id else {}
            self.conn.connect(login, passcode, wait=True, headers=headers)

    # ---- waits -------------------------------------------------------------
    def wait_messages(self, count, timeout=30):
        wait_for(lambda: len(self.recorder.messages) >= count, timeout,
                 f"{count} messages (have {len(self.recorder.messages)})")
        return list(self.recorder.messages)

    def wait_receipt(self, receipt, timeout=30):
        wait_for(lambda: receipt in self.recorder.receipts, timeout, f"RECEIPT {receipt}")

    def wait_error(self, timeout=15):
        wait_for(lambda: self.recorder.errors, timeout, "an ERROR frame")
        return self.recorder.errors[0]

    # ---- actions ------------------------------------------------------------
    def send(self, destination, body, headers=None, receipt=None):
        self.conn.send(destination, body, headers=headers or {}, receipt=receipt)

    def subscribe(self, destination, sub_id, ack="auto", headers=None, receipt=None,
                  timeout=30):
        """SUBSCRIBE and, with a receipt, wait until the subscription is positioned."""
        headers = dict(headers or {})
        if receipt:
            headers["receipt"] = receipt
        self.conn.subscribe(destination, id=sub_id, ack=ack, headers=headers)
        if receipt:
            self.wait_receipt(receipt, timeout)

    def ack(self, frame):
        if self.version == "1.2":
            self.conn.ack(frame.headers["ack"])
        elif self.version == "1.0":  # stomp.py 1.0: ack(message-id, transaction)
            self.conn.ack(frame.headers["message-id"])
        else:
            self.conn.ack(frame.headers["message-id"], frame.headers["subscription"])

    def nack(self, frame, requeue=None):
        headers = {} if requeue is None else {"requeue": "true" if requeue else "false"}
        if self.version == "1.2":
            self.conn.nack(frame.headers["ack"], **headers)
        else:
            self.conn.nack(frame.headers["message-id"], frame.headers["subscription"], **headers)

    def take(self):
        """Remove and return the messages received so far."""
        with self.recorder.lock:
            taken = self.recorder.messages
            self.recorder.messages = []
        return taken

    def close(self):
        try:
            if self.conn.is_connected():
                self.conn.disconnect()
        except Exception:
            pass
