#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""redelivery_cost.py -- delayed redelivery under load (issue 16's benchmark
row: "redelivery with delay under load: no partition stall"; `make
bench-redelivery`, part of `make bench`, writes docs/benchmarks-redelivery.md).

Each scenario runs on its own kbridged and kbridge-devkafka. One stomp.py
producer sends --messages 100-byte messages to a queue (4 partitions); one
stomp.py subscriber (client-individual, prefetch 1000) acknowledges every
message except each tenth on its first delivery, which it NACKs, and
acknowledges those when they come back. Scenarios: nothing NACKed (the
baseline), 10% NACKed with immediate redelivery (queues.redelivery_delay 0s,
RabbitMQ's requeue), and 10% NACKed with a 1 s delay (through retry topics).
Figures: how fast the 90% that were never NACKed flowed (a stall behind a
waiting message would show here), how late each delayed message came back
against its due time (p50 / p99 / max), and kbridged's CPU per message.

  /usr/bin/python3 tests/bench/redelivery_cost.py --builddir build/plain \\
      [--messages 20000] [--output docs/benchmarks-redelivery.md]
"""

import argparse
import os
import platform
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))
import stomp  # noqa: E402

from conftest import DevKafka, Kbridged, base_config  # noqa: E402
from bench_util import daemon_cpu_seconds, use_build  # noqa: E402
from stomp_util import Client  # noqa: E402

BODY = "x" * 100
QUEUE = "/queue/bench.redelivery"


class Subscriber(stomp.ConnectionListener):
    """ACKs everything but each tenth message's first delivery (NACKed when
    `nack`), recording when each message was first acked / came back."""

    def __init__(self, daemon, nack):
        self.client = Client(daemon)
        self.nack = nack
        self.lock = threading.Lock()
        self.plain_done_at = {}   # seq -> monotonic time acked (never NACKed)
        self.nacked_at = {}       # seq -> wall time of the NACK
        self.back_after = {}      # seq -> seconds from NACK to redelivery
        self.expect_plain = None
        self.all_done = threading.Event()
        self.warm = threading.Event()
        self.expect_total = None
        self.client.conn.set_listener("subscriber", self)
        self.client.subscribe(QUEUE, "s", ack="client-individual",
                              headers={"prefetch-count": "1000"}, receipt="r", timeout=60)

    def on_message(self, frame):
        seq = int(frame.headers.get("seq", "-1"))
        first = frame.headers.get("redelivered") == "false"
        with self.lock:
            if self.nack and seq % 10 == 0 and first and seq >= 0:
                self.nacked_at[seq] = time.time()
                self.client.conn.nack(frame.headers["ack"])
                return
            self.client.conn.ack(frame.headers["ack"])
            if seq < 0:
                self.warm.set()
                return
            if seq in self.nacked_at:
                self.back_after[seq] = time.time() - self.nacked_at[seq]
            else:
                self.plain_done_at[seq] = time.monotonic()
            if len(self.plain_done_at) + len(self.back_after) >= (self.expect_total or 1 << 60):
                self.all_done.set()

    def close(self):
        self.client.close()


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def run(label, messages, nack, delay):
    dk = DevKafka()
    work = tempfile.mkdtemp()
    queues = {"max_deliveries": 5}
    if delay:
        queues["redelivery_delay"] = {"initial": delay, "multiplier": "2", "max": "30s"}
    daemon = Kbridged(work, base_config(dk.bootstrap, log={"level": "info"}, queues=queues))
    producer = Client(daemon)
    subscriber = None
    try:
        subscriber = Subscriber(daemon, nack)
        producer.send(QUEUE, "warm", headers={"seq": "-1"}, receipt="w")
        producer.wait_receipt("w", timeout=60)
        # the group joined and the warm-up message (seq -1, never NACKed) was acked
        assert subscriber.warm.wait(120), f"{label}: warm-up not delivered"
        subscriber.expect_total = messages
        cpu_before = daemon_cpu_seconds(daemon)
        start = time.monotonic()
        for j in range(messages):
            producer.send(QUEUE, BODY, headers={"seq": str(j)},
                          receipt="p" if j == messages - 1 else None)
        producer.wait_receipt("p", timeout=600)
        assert subscriber.all_done.wait(600), (
            f"{label}: {len(subscriber.plain_done_at)} + {len(subscriber.back_after)} "
            f"of {messages} acknowledged")
        cpu = daemon_cpu_seconds(daemon) - cpu_before
        plain = len(subscriber.plain_done_at)
        plain_seconds = max(subscriber.plain_done_at.values()) - start
        late = [b - (1.0 if delay else 0.0) for b in subscriber.back_after.values()]
        return {"label": label, "messages": messages, "plain": plain,
                "plain_rate": plain / plain_seconds, "nacked": len(subscriber.back_after),
                "late_p50": percentile(late, 0.5), "late_p99": percentile(late, 0.99),
                "late_max": max(late) if late else float("nan"),
                "total_seconds": time.monotonic() - start, "cpu_us": cpu * 1e6 / messages}
    finally:
        if subscriber:
            subscriber.close()
        producer.close()
        daemon.close()
        dk.stop()


def report(rows, args):
    def ms(value):
        return "—" if value != value else f"{value * 1000:.0f} ms"
    lines = [
        "# Delayed redelivery under load",
        "",
        "<!-- Written by tests/bench/redelivery_cost.py (`make bench-redelivery`); do not edit"
        " by hand. -->",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()}"
        f" ({os.cpu_count()} cores), kbridged and kbridge-devkafka on the same machine, with",
        f"`/usr/bin/python3 tests/bench/redelivery_cost.py --messages {args.messages}`: one",
        f"stomp.py producer sends {args.messages:,} messages of 100 bytes to a queue; one",
        "stomp.py subscriber (prefetch 1000) acknowledges each, except every tenth on its",
        "first delivery, which it NACKs (and acknowledges when it comes back). \"Never",
        "NACKed\" is the rate of the other 90% from the first send to the last of their acks:",
        "with a delay they must not wait for the NACKed ones (no partition stall). \"Late\"",
        "is how long after its due time (NACK + delay) a message came back, as the",
        "subscriber saw it. The subscriber is Python and bounds the rates; compare the rows.",
        "",
        "| scenario | never NACKed: rate | NACKed and back | late p50 / p99 / max |"
        " all acked after | kbridged CPU per message |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        late = (f"{ms(r['late_p50'])} / {ms(r['late_p99'])} / {ms(r['late_max'])}"
                if r["nacked"] else "—")
        lines.append(f"| {r['label']} | {r['plain_rate']:,.0f} msg/s | {r['nacked']:,} | {late} |"
                     f" {r['total_seconds']:.1f} s | {r['cpu_us']:.1f} µs |")
    lines.append("")
    with open(args.output, "w") as f:
        f.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builddir", default=os.environ.get("KBRIDGE_BUILDDIR", SRCDIR))
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--output")
    args = parser.parse_args()
    use_build(args.builddir)
    rows = []
    for label, nack, delay in (("nothing NACKed (baseline)", False, None),
                               ("10% NACKed, redelivered at once", True, None),
                               ("10% NACKed, 1 s redelivery delay (retry topics)", True, "1s")):
        row = run(label, args.messages, nack, delay)
        print(f"{row['label']}: never-NACKed {row['plain_rate']:.0f} msg/s, "
              f"{row['nacked']} back, late p50 {row['late_p50']:.3f} s, "
              f"all in {row['total_seconds']:.1f} s, {row['cpu_us']:.1f} us CPU/message",
              flush=True)
        rows.append(row)
    if args.output:
        report(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
