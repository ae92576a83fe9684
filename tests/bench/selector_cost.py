#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""selector_cost.py -- what JMS message selectors cost kbridged (issue 16's
benchmark row; `make bench-selectors`, part of `make bench`, writes
docs/benchmarks-selectors.md).

Each scenario runs on its own kbridged and kbridge-devkafka. One STOMP producer
(stomp.py) sends --messages 100-byte messages with four headers (color,
weight, region, seq) to one destination; stomp.py subscribers count what they
get. Topic scenarios (auto ack, every copy evaluated once per subscriber):
10 subscribers without a selector (the baseline), 10 with a selector each
selecting a tenth (`seq % 10` spelled as a comparison on a header), and 10
with a selector of five predicates that selects everything (the evaluation
cost with nothing filtered). Queue scenarios (client-individual, every
message acknowledged): 2 subscribers without selectors, and 2 with
`color = 'red'` / `color <> 'red'`. Figures: messages delivered per second
and kbridged's CPU (user + system) per message published.

  /usr/bin/python3 tests/bench/selector_cost.py --builddir build/plain \\
      [--messages 20000] [--output docs/benchmarks-selectors.md]
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
COLORS = ["red", "blue", "green", "yellow"]
EVERYTHING = ("weight BETWEEN 0 AND 1000 AND region IN ('EMEA', 'APAC', 'AMER') AND "
              "color LIKE '%' AND seq IS NOT NULL AND NOT (weight < 0)")


def headers_of(j):
    return {"color": COLORS[j % 4], "weight": str(j % 100), "region": ["EMEA", "APAC", "AMER"][j % 3],
            "seq": str(j % 10)}


class Counter(stomp.ConnectionListener):
    def __init__(self, daemon, destination, selector, ack):
        self.client = Client(daemon)
        self.ack = ack
        self.count = 0
        self.expect = None
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.client.conn.set_listener("counter", self)
        headers = {"prefetch-count": "1000"}
        if selector:
            headers["selector"] = selector
        self.client.subscribe(destination, f"s{id(self)}",
                              ack="client-individual" if ack else "auto", headers=headers,
                              receipt="r", timeout=60)

    def on_message(self, frame):
        if self.ack:
            self.client.conn.ack(frame.headers["ack"])
        with self.lock:
            self.count += 1
            if self.expect is not None and self.count >= self.expect:
                self.done.set()

    def arm(self, expect):
        with self.lock:
            self.done.clear()
            self.count = 0
            self.expect = expect
            if expect == 0:
                self.done.set()

    def close(self):
        self.client.close()


def scenarios(messages):
    """(label, destination, [(selector, expected count)], ack)."""
    tenth = [sum(1 for j in range(messages) if j % 10 == i) for i in range(10)]
    red = sum(1 for j in range(messages) if j % 4 == 0)
    return [
        ("topic, 10 subscribers without a selector (baseline)", "/topic/bench.sel",
         [(None, messages)] * 10, False),
        ("topic, 10 subscribers, each selecting a tenth (`seq = 'I'`)", "/topic/bench.sel",
         [(f"seq = '{i}'", tenth[i]) for i in range(10)], False),
        ("topic, 10 subscribers, five predicates selecting everything", "/topic/bench.sel",
         [(EVERYTHING, messages)] * 10, False),
        ("queue, 2 subscribers without a selector (baseline)", "/queue/bench.sel",
         [(None, None), (None, None)], True),
        ("queue, 2 subscribers `color = 'red'` / `color <> 'red'`", "/queue/bench.sel",
         [("color = 'red'", red), ("color <> 'red'", messages - red)], True),
    ]



def run(label, destination, subscribers, ack, messages):
    dk = DevKafka()
    work = tempfile.mkdtemp()
    daemon = Kbridged(work, base_config(dk.bootstrap, log={"level": "info"}))
    counters = []
    producer = Client(daemon)
    try:
        counters = [Counter(daemon, destination, sel, ack) for sel, _ in subscribers]
        # warm-up: one message every subscriber selects (the queue: any one)
        warm = {"color": "red", "weight": "1", "region": "EMEA", "seq": "0"}
        for c, (sel, _) in zip(counters, subscribers):
            # the warm-up has seq 0: every topic subscriber but `seq = 'I'` for I > 0 gets it
            c.arm(0 if ack else (0 if sel and sel.startswith("seq = ") and sel != "seq = '0'"
                                 else 1))
        producer.send(destination, "warm", headers=warm, receipt="w")
        producer.wait_receipt("w", timeout=60)
        deadline = time.monotonic() + 120
        while not all(c.done.is_set() for c in counters):
            assert time.monotonic() < deadline, f"{label}: warm-up not delivered"
            time.sleep(0.05)
        if ack:  # the queue's warm-up went to one of them: wait until it is acknowledged
            deadline = time.monotonic() + 120
            while sum(c.count for c in counters) < 1:
                assert time.monotonic() < deadline, f"{label}: warm-up not delivered"
                time.sleep(0.05)
        for c, (_, want) in zip(counters, subscribers):
            c.arm(want)
        cpu_before = daemon_cpu_seconds(daemon)
        start = time.monotonic()
        for j in range(messages):
            producer.send(destination, BODY, headers=headers_of(j),
                          receipt="p" if j == messages - 1 else None)
        producer.wait_receipt("p", timeout=600)
        deadline = time.monotonic() + 600
        if any(want is None for _, want in subscribers):  # plain queue: the total counts
            while sum(c.count for c in counters) < messages:
                assert time.monotonic() < deadline, f"{label}: delivery stalled"
                time.sleep(0.02)
        else:
            for c in counters:
                assert c.done.wait(600), f"{label}: {c.count} of {c.expect} delivered"
        seconds = time.monotonic() - start
        cpu = daemon_cpu_seconds(daemon) - cpu_before
        delivered = sum(c.count for c in counters)
        return {"label": label, "messages": messages, "delivered": delivered,
                "rate": delivered / seconds, "cpu_us": cpu * 1e6 / messages}
    finally:
        for c in counters:
            c.close()
        producer.close()
        daemon.close()
        dk.stop()


def report(rows, args):
    lines = [
        "# Selectors: what they cost",
        "",
        "<!-- Written by tests/bench/selector_cost.py (`make bench-selectors`); do not edit"
        " by hand. -->",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()}"
        f" ({os.cpu_count()} cores), kbridged and kbridge-devkafka on the same machine, with",
        f"`/usr/bin/python3 tests/bench/selector_cost.py --messages {args.messages}`: one",
        f"stomp.py producer sends {args.messages:,} messages of 100 bytes with four headers;",
        "stomp.py subscribers count what they get (topics: auto ack; queues: every message",
        "acknowledged). CPU is kbridged's (user + system) per message published: on a topic",
        "every subscriber's selector is evaluated once per message, so the third row against",
        "the first is the cost of ten evaluations of a five-predicate selector. The",
        "subscribers are Python and bound the delivery rates; compare the CPU column. On a",
        "queue with selectors, each dispatch looks past the messages the ready subscribers",
        "do not select (they wait for the other subscriber): while one subscriber's prefetch",
        "is full, every delivery to the other walks the waiting ones (each selector is",
        "evaluated once per message and remembered), which is what the last row's CPU shows",
        "(docs/stomp.md `selector`).",
        "",
        "| scenario | delivered | rate | kbridged CPU per published message |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['label']} | {r['delivered']:,} | {r['rate']:,.0f} msg/s |"
                     f" {r['cpu_us']:.1f} µs |")
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
    for label, destination, subscribers, ack in scenarios(args.messages):
        row = run(label, destination, subscribers, ack, args.messages)
        print(f"{row['label']}: {row['delivered']} delivered, {row['rate']:.0f} msg/s, "
              f"{row['cpu_us']:.1f} us CPU/message", flush=True)
        rows.append(row)
    if args.output:
        report(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
