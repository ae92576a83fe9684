#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""soak.py -- `make soak DURATION=10m`: mixed load against one kbridged on a
kbridge-devkafka for the given time, checking counts continuously and the
daemon's RSS for growth.

Streams, each on its own connections and thread:
  stomp-queue   STOMP SENDs with receipts to /queue/soak-stomp; a STOMP
                client-individual consumer ACKs, and NACKs (requeue) every
                10th message the first time it sees it
  amqp-queue    AMQP unsettled sends to /queue/soak-amqp; an AMQP receiver
                accepts, and releases every 10th message the first time
  topic         STOMP SENDs with receipts to /topic/soak-topic, received by a
                STOMP and an AMQP subscriber, each exactly once and in order
                per key (the topic has 8 partitions)
  request-reply STOMP requests with reply-to /temp-queue/soak, answered by an
                AMQP responder through the anonymous relay

Every few seconds: a status line, and a check that no confirmed message has
been waiting longer than --max-lag seconds for its consumer (a lost message
fails the soak while it runs, not only at the end). At the end: the producers
stop, the consumers drain, and every confirmed message must have been
received (queues: at least once, duplicates only from NACK/release and
counted; topics: exactly once, in order; requests: every reply). RSS after
the warm-up (a fifth of the run, at least 20 s) may grow by at most
--max-rss-growth MiB. Exit status 0 when everything held.
"""

import argparse
import collections
import os
import re
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import stomp  # noqa: E402
from proton import Message  # noqa: E402

from conftest import DevKafka, Kbridged, base_config  # noqa: E402
from bench_util import use_build  # noqa: E402
import amqp_client  # noqa: E402


def parse_duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration like 90s, 10m or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


class Stream:
    """Counts of one stream: what was confirmed and when, what was received."""

    def __init__(self, name, exactly_once=False):
        self.name = name
        self.exactly_once = exactly_once
        self.lock = threading.Lock()
        self.confirmed = {}            # seq -> time confirmed
        self.received = collections.Counter()
        self.requeued = 0              # NACKs / releases we asked for
        self.out_of_order = 0
        self.last_seq = {}             # key -> highest seq received
        self.errors = []

    def confirm(self, seq):
        with self.lock:
            self.confirmed[seq] = time.monotonic()

    def receive(self, seq, in_order_check=False):
        with self.lock:
            self.received[seq] += 1
            if in_order_check:  # per key: the publishers key message seq with k(seq % 8)
                last = self.last_seq.get(seq % 8, -1)
                if seq <= last:
                    self.out_of_order += 1
                self.last_seq[seq % 8] = max(last, seq)

    def missing(self, older_than=None):
        now = time.monotonic()
        with self.lock:
            return [s for s, t in self.confirmed.items()
                    if s not in self.received and (older_than is None or now - t > older_than)]

    def duplicates(self):
        with self.lock:
            return sum(c - 1 for c in self.received.values() if c > 1)

    def status(self):
        with self.lock:
            return (f"{self.name}: confirmed {len(self.confirmed)}, received {len(self.received)}"
                    f" (+{sum(c - 1 for c in self.received.values() if c > 1)} again,"
                    f" {self.requeued} requeued by us)")


class StompListener(stomp.ConnectionListener):
    def __init__(self, on_message):
        self.on_message_fn = on_message
        self.receipts = set()
        self.errors = []
        self.cond = threading.Condition()

    def on_message(self, frame):
        self.on_message_fn(frame)

    def on_receipt(self, frame):
        with self.cond:
            self.receipts.add(frame.headers.get("receipt-id"))
            self.cond.notify_all()

    def on_error(self, frame):
        self.errors.append(frame.headers.get("message", frame.body))

    def wait_receipts(self, ids, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not ids <= self.receipts:
                left = deadline - time.monotonic()
                if left <= 0 or self.errors:
                    return False
                self.cond.wait(left)
            self.receipts -= ids
            return True


def stomp_connect(daemon, listener):
    host, port = daemon.host_port("stomp")
    conn = stomp.Connection12([(host, port)], heartbeats=(0, 0))
    conn.set_listener("soak", listener)
    conn.connect(wait=True)
    return conn


def stomp_publisher(daemon, destination, stream, stop, batch=50, pause=0.02):
    """SENDs with receipts, a batch at a time; a receipt confirms its message."""
    listener = StompListener(lambda frame: None)
    conn = stomp_connect(daemon, listener)
    seq = 0
    while not stop.is_set():
        ids = set()
        for _ in range(batch):
            receipt = f"{stream.name}-{seq}"
            conn.send(destination, f"{stream.name} {seq}", headers={"kafka-key": f"k{seq % 8}"},
                      receipt=receipt)
            ids.add(receipt)
            seq += 1
        if not listener.wait_receipts(ids, 60):
            stream.errors.append(f"receipts missing after 60 s: {listener.errors}")
            return
        for receipt in ids:
            stream.confirm(int(receipt.rsplit("-", 1)[1]))
        time.sleep(pause)
    conn.disconnect()


def seq_of(body):
    text = body.decode() if isinstance(body, (bytes, bytearray, memoryview)) else str(body)
    if isinstance(body, memoryview):
        text = bytes(body).decode()
    return int(text.split()[1])


def stomp_queue_consumer(daemon, destination, stream, done):
    holder = {}
    nacked = set()

    def on_message(frame):
        seq = seq_of(frame.body)
        conn = holder["conn"]
        if seq % 10 == 0 and seq not in nacked:
            nacked.add(seq)
            stream.requeued += 1
            conn.nack(frame.headers["ack"], requeue="true")
            return
        stream.receive(seq)
        conn.ack(frame.headers["ack"])

    listener = StompListener(on_message)
    conn = stomp_connect(daemon, listener)
    holder["conn"] = conn
    conn.subscribe(destination, id="1", ack="client-individual",
                   headers={"prefetch-count": "100"})
    done.wait()
    conn.disconnect()


def stomp_topic_subscriber(daemon, destination, stream, ready, done):
    listener = StompListener(lambda frame: stream.receive(seq_of(frame.body), True))
    conn = stomp_connect(daemon, listener)
    conn.subscribe(destination, id="1", ack="auto", headers={"receipt": "sub"})
    if not listener.wait_receipts({"sub"}, 30):
        stream.errors.append("no SUBSCRIBE receipt for the topic")
    ready.set()
    done.wait()
    conn.disconnect()


def amqp_publisher(daemon, address, stream, stop):
    conn = amqp_client.connect(daemon)
    sender = conn.create_sender(address)
    seq = 0
    try:
        while not stop.is_set():
            sender.send(Message(body=f"{stream.name} {seq}".encode(), durable=True,
                                properties={"kafka-key": f"k{seq % 8}"}), timeout=60)
            stream.confirm(seq)  # send() returned: the delivery was accepted
            seq += 1
            if seq % 20 == 0:
                time.sleep(0.01)
    except Exception as e:  # noqa: BLE001 -- reported as a soak failure
        stream.errors.append(f"AMQP send {seq}: {e!r}")
    finally:
        conn.close()


def amqp_queue_consumer(daemon, address, stream, done):
    conn = amqp_client.connect(daemon)
    receiver = conn.create_receiver(address, credit=100)
    released = set()
    try:
        while not done.is_set():
            try:
                message = receiver.receive(timeout=0.5)
            except Exception:  # timeout
                continue
            seq = seq_of(message.body)
            if seq % 10 == 0 and seq not in released:
                released.add(seq)
                stream.requeued += 1
                receiver.release()
                continue
            stream.receive(seq)
            receiver.accept()
    finally:
        conn.close()


def amqp_topic_subscriber(daemon, address, stream, ready, done):
    conn = amqp_client.connect(daemon)
    receiver = conn.create_receiver(address, credit=200)  # returns once attached = positioned
    ready.set()
    try:
        while not done.is_set():
            try:
                message = receiver.receive(timeout=0.5)
            except Exception:
                continue
            stream.receive(seq_of(message.body), True)
            receiver.accept()
    finally:
        conn.close()


def amqp_responder(daemon, address, stream, done):
    conn = amqp_client.connect(daemon)
    receiver = conn.create_receiver(address, credit=50)
    relay = conn.create_sender(None)
    try:
        while not done.is_set():
            try:
                request = receiver.receive(timeout=0.5)
            except Exception:
                continue
            relay.send(Message(address=request.reply_to, correlation_id=request.correlation_id,
                               body=request.body), timeout=60)
            receiver.accept()
    finally:
        conn.close()


def stomp_requester(daemon, destination, stream, stop):
    replies = {}
    cond = threading.Condition()

    def on_message(frame):
        with cond:
            replies[frame.headers.get("correlation-id")] = frame.body
            cond.notify_all()

    listener = StompListener(on_message)
    conn = stomp_connect(daemon, listener)
    seq = 0
    while not stop.is_set():
        correlation = f"req-{seq}"
        conn.send(destination, f"{stream.name} {seq}",
                  headers={"reply-to": "/temp-queue/soak", "correlation-id": correlation})
        stream.confirm(seq)  # a request counts as owed a reply from now on
        deadline = time.monotonic() + 60
        with cond:
            while correlation not in replies and time.monotonic() < deadline:
                cond.wait(deadline - time.monotonic())
            body = replies.pop(correlation, None)
        if body is None:
            stream.errors.append(f"no reply to {correlation} within 60 s")
            return
        if seq_of(body) != seq:
            stream.errors.append(f"reply to {correlation} carried {body!r}")
        stream.receive(seq)
        seq += 1
        time.sleep(0.005)
    conn.disconnect()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builddir", required=True)
    parser.add_argument("--duration", type=parse_duration, default=600.0)
    parser.add_argument("--max-lag", type=float, default=60.0,
                        help="seconds a confirmed message may wait for its consumer")
    parser.add_argument("--max-rss-growth", type=float, default=64.0,
                        help="MiB the daemon's RSS may grow after the warm-up")
    args = parser.parse_args()
    os.environ["KBRIDGE_BUILDDIR"] = args.builddir
    use_build(args.builddir)

    workdir = tempfile.mkdtemp(prefix="kbridge-soak-")
    devkafka = DevKafka(partitions=8)
    for topic in ("soak-stomp", "soak-amqp", "soak-topic", "soak-rpc"):
        devkafka.command(f"topic create {topic} 8")
    try:
        daemon = Kbridged(workdir, base_config(devkafka.bootstrap,
                                               kafka={"bootstrap": devkafka.bootstrap,
                                                      "consumer": {"session.timeout.ms": "6000"}}),
                          name="kbridged-soak")
    except Exception:
        devkafka.stop()
        raise
    streams = {
        "stomp-queue": Stream("stomp-queue"),
        "amqp-queue": Stream("amqp-queue"),
        "topic-stomp": Stream("topic-stomp", exactly_once=True),
        "topic-amqp": Stream("topic-amqp", exactly_once=True),
        "request-reply": Stream("request-reply", exactly_once=True),
    }
    topic_sent = Stream("topic")
    stop, done = threading.Event(), threading.Event()
    ready_stomp, ready_amqp = threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=stomp_queue_consumer,
                         args=(daemon, "/queue/soak-stomp", streams["stomp-queue"], done)),
        threading.Thread(target=amqp_queue_consumer,
                         args=(daemon, "/queue/soak-amqp", streams["amqp-queue"], done)),
        threading.Thread(target=stomp_topic_subscriber,
                         args=(daemon, "/topic/soak-topic", streams["topic-stomp"], ready_stomp,
                               done)),
        threading.Thread(target=amqp_topic_subscriber,
                         args=(daemon, "/topic/soak-topic", streams["topic-amqp"], ready_amqp,
                               done)),
        threading.Thread(target=amqp_responder,
                         args=(daemon, "/queue/soak-rpc", streams["request-reply"], done)),
    ]
    producers = [
        threading.Thread(target=stomp_publisher,
                         args=(daemon, "/queue/soak-stomp", streams["stomp-queue"], stop)),
        threading.Thread(target=amqp_publisher,
                         args=(daemon, "/queue/soak-amqp", streams["amqp-queue"], stop)),
        threading.Thread(target=stomp_publisher,
                         args=(daemon, "/topic/soak-topic", topic_sent, stop)),
        threading.Thread(target=stomp_requester,
                         args=(daemon, "/queue/soak-rpc", streams["request-reply"], stop)),
    ]
    failures = []
    rss_samples = []
    start = time.monotonic()
    warmup = max(20.0, args.duration / 5)
    try:
        for t in threads:
            t.daemon = True
            t.start()
        if not (ready_stomp.wait(60) and ready_amqp.wait(60)):
            raise RuntimeError("topic subscribers were not positioned within 60 s")
        for t in producers:
            t.daemon = True
            t.start()
        next_status = start
        while time.monotonic() - start < args.duration and not failures:
            time.sleep(1)
            now = time.monotonic()
            if daemon.proc.poll() is not None:
                failures.append(f"kbridged exited with {daemon.proc.returncode}")
                break
            rss = rss_kib(daemon.proc.pid)
            rss_samples.append((now - start, rss))
            # topic subscribers owe what the topic publisher got receipts for
            with topic_sent.lock:
                confirmed = dict(topic_sent.confirmed)
            for name in ("topic-stomp", "topic-amqp"):
                with streams[name].lock:
                    streams[name].confirmed = dict(confirmed)
            for stream in list(streams.values()) + [topic_sent]:
                if stream.errors:
                    failures.append(f"{stream.name}: {stream.errors[0]}")
                late = stream.missing(older_than=args.max_lag) if stream is not topic_sent else []
                if late:
                    failures.append(f"{stream.name}: {len(late)} confirmed messages not received"
                                    f" after {args.max_lag:.0f} s (e.g. {sorted(late)[:5]})")
            if now >= next_status:
                print(f"soak {now - start:6.0f}s rss {rss / 1024:.1f} MiB | " +
                      " | ".join(s.status() for s in streams.values()), flush=True)
                next_status = now + 10
        stop.set()
        for t in producers:
            t.join(120)
        with topic_sent.lock:
            confirmed = dict(topic_sent.confirmed)
        for name in ("topic-stomp", "topic-amqp"):
            with streams[name].lock:
                streams[name].confirmed = dict(confirmed)
        # drain: everything confirmed must arrive
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and any(s.missing() for s in streams.values()):
            time.sleep(0.2)
        done.set()
        for t in threads:
            t.join(30)
        for stream in streams.values():
            missing = stream.missing()
            if missing:
                failures.append(f"{stream.name}: {len(missing)} confirmed messages never received"
                                f" (e.g. {sorted(missing)[:5]})")
            if stream.exactly_once and stream.duplicates():
                failures.append(f"{stream.name}: {stream.duplicates()} duplicates")
            if stream.out_of_order:
                failures.append(f"{stream.name}: {stream.out_of_order} out of order")
            if stream.errors and not any(f.startswith(stream.name) for f in failures):
                failures.append(f"{stream.name}: {stream.errors[0]}")
        after = [rss for t, rss in rss_samples if t >= warmup]
        if after:
            growth = (max(after) - after[0]) / 1024
            print(f"soak: RSS {after[0] / 1024:.1f} MiB after the {warmup:.0f} s warm-up,"
                  f" at most {max(after) / 1024:.1f} MiB, at the end {after[-1] / 1024:.1f} MiB")
            if growth > args.max_rss_growth:
                failures.append(f"RSS grew by {growth:.1f} MiB after the warm-up"
                                f" (limit {args.max_rss_growth:.0f} MiB)")
        print("soak: " + " | ".join(s.status() for s in streams.values()))
        code = daemon.stop(60)
        if code != 0:
            failures.append(f"kbridged exited with {code} on SIGTERM")
    except Exception as e:  # noqa: BLE001 -- any failure of the harness fails the soak
        failures.append(f"soak harness: {e!r}")
    finally:
        stop.set()
        done.set()
        daemon.close()
        devkafka.stop()
    elapsed = time.monotonic() - start
    if failures:
        print(f"soak FAILED after {elapsed:.0f} s:")
        for f in failures:
            print(f"  - {f}")
        print(f"kbridged log: {daemon.log_path}")
        return 1
    print(f"soak passed: {elapsed:.0f} s of mixed load, nothing lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
