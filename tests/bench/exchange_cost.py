#!/usr/bin/python3
"""exchange_cost.py -- what a direct exchange bound to N queues costs
(docs/routing.md "Exchange types and their cost"): every bound queue reads
the whole exchange topic and settles what its binding does not match.

On one kbridged and a kbridge-devkafka: N STOMP subscriptions to
/exchange/amq.direct/kI (each its own server-named queue bound with its own
key), --messages 100-byte messages from one STOMP producer spread evenly
over the N keys; after a warm-up message per queue (every group joined and
fetching), the time from the first SEND to the last MESSAGE. Rows: one
/queue/ (the baseline), amq.direct with 1 queue, amq.direct with N queues.
Prints messages/s delivered in total and per queue, and the records the
queues read (N x messages, of which (N-1) x messages are settled without
delivery: kbridge_unmatched_total).

  /usr/bin/python3 tests/bench/exchange_cost.py --builddir build/plain
"""

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))
import conftest  # noqa: E402
from conftest import DevKafka, Kbridged, base_config, wait_for  # noqa: E402
from stomp_util import Client  # noqa: E402

M = 20000


def metric(daemon, name):
    for line in daemon.http("/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def run(n, queue=False):
    dk = DevKafka()
    work = tempfile.mkdtemp()
    d = Kbridged(work, base_config(dk.bootstrap, kafka={"consumer": {"session.timeout.ms": 6000}},
                                   log={"level": "info"}))
    consumers = [Client(d) for _ in range(n)]
    producer = Client(d)
    try:
        for i, c in enumerate(consumers):
            dest = "/queue/single" if queue else f"/exchange/amq.direct/k{i}"
            c.subscribe(dest, f"s{i}", receipt=f"r{i}", timeout=60)
        # warm-up: one message per consumer, so every group is joined and fetching
        for i, c in enumerate(consumers):
            dest = "/queue/single" if queue else f"/exchange/amq.direct/k{i}"
            producer.send(dest, "warm", receipt=f"w{i}")
        for i, c in enumerate(consumers):
            c.wait_messages(1, timeout=60)
            c.take()
        base_unmatched = metric(d, "kbridge_unmatched_total")
        start = time.monotonic()
        for j in range(M):
            dest = "/queue/single" if queue else f"/exchange/amq.direct/k{j % n}"
            producer.send(dest, "x" * 100, receipt=f"p{j}" if j == M - 1 else None)
        producer.wait_receipt(f"p{M - 1}", timeout=300)
        sent = time.monotonic()
        per = M // n
        for c in consumers:
            c.wait_messages(per, timeout=300)
        done = time.monotonic()
        unmatched = metric(d, "kbridge_unmatched_total")
        wait_for(lambda: metric(d, "kbridge_unmatched_total") - base_unmatched >= M * (n - 1), 60,
                 "unmatched")
        unmatched = metric(d, "kbridge_unmatched_total") - base_unmatched
        print(f"{'queue' if queue else 'direct'} N={n}: {M} msgs, publish {M / (sent - start):.0f}/s, "
              f"delivered {M / (done - start):.0f}/s total, {M / n / (done - start):.0f}/s per queue, "
              f"records read {M * n} ({unmatched:.0f} unmatched), {M * n / (done - start):.0f} reads/s",
              flush=True)
    finally:
        for c in consumers + [producer]:
            c.close()
        d.close()
        dk.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builddir", default=os.environ.get("KBRIDGE_BUILDDIR", SRCDIR))
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--queues", type=int, default=10)
    args = parser.parse_args()
    global M
    M = args.messages
    args.builddir = os.path.abspath(args.builddir)
    os.environ["KBRIDGE_BUILDDIR"] = args.builddir
    conftest.KBRIDGED = os.path.join(args.builddir, "daemon", "kbridged")
    conftest.DEVKAFKA = os.path.join(args.builddir, "daemon", "kbridge-devkafka")
    run(1, queue=True)
    run(1)
    run(args.queues)
    return 0


if __name__ == "__main__":
    sys.exit(main())
