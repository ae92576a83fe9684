#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""startup.py -- `make bench-startup`: how long a queue subscriber waits for
messages that are already in the queue (issue 20 item 4; docs/operations.md
"Queue start-up"), measured precisely on one kbridged and a kbridge-devkafka.

Each scenario publishes messages with receipts first, then subscribes (STOMP,
auto ack) and times from the SUBSCRIBE to the arrival of the first and of
the last message (stomp.py's receiver thread, no polling):

  empty-group   first subscriber of a queue nobody ever consumed
  in-group      a second subscriber while another one holds the node in the
                group (the records are fetched already)
  back-in-linger  a client back 5 s after it left (within queues.linger)
  back-after-linger  a client back 5 s after the node left the group
                (queues.linger 1s here: librdkafka's mock keeps a group its
                last member left rebalancing for session.timeout.ms - 1 s)

Prints one line per run and a summary (min / median / max of --runs runs);
exit status 0. The integration suite (tests/integration/test_queue_startup.py)
checks the bounds; this shows the figures.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import stomp  # noqa: E402

import conftest  # noqa: E402
from bench_util import use_build  # noqa: E402


class Timer(stomp.ConnectionListener):
    def __init__(self, expected):
        self.expected = expected
        self.lock = threading.Lock()
        self.count = 0
        self.first = None
        self.last = None
        self.done = threading.Event()

    def on_message(self, frame):
        now = time.monotonic()
        with self.lock:
            self.count += 1
            if self.first is None:
                self.first = now
            if self.count >= self.expected and self.last is None:
                self.last = now
                self.done.set()


def connect(daemon, listener=None):
    host, port = daemon.host_port("stomp")
    conn = stomp.Connection12([(host, port)], heartbeats=(0, 0))
    if listener:
        conn.set_listener("timer", listener)
    conn.connect(wait=True)
    return conn


def publish(daemon, queue, count):
    conn = connect(daemon)
    receipts = threading.Event()

    class Receipts(stomp.ConnectionListener):
        def on_receipt(self, frame):
            if frame.headers.get("receipt-id") == f"r{count - 1}":
                receipts.set()
    conn.set_listener("receipts", Receipts())
    for i in range(count):
        conn.send(f"/queue/{queue}", f"m-{i}", receipt=f"r{i}")
    assert receipts.wait(30), "no receipt for the last SEND"
    conn.disconnect()


def take(daemon, queue, count, timeout=30):
    """Subscribe and time the first and the last of `count` messages: (conn, first s, last s)."""
    timer = Timer(count)
    conn = connect(daemon, timer)
    started = time.monotonic()
    conn.subscribe(f"/queue/{queue}", id="s", ack="auto")
    assert timer.done.wait(timeout), f"{timer.count} of {count} messages in {timeout} s"
    return conn, timer.first - started, timer.last - started


def run_once(builddir, count):
    use_build(builddir)
    results = {}
    devkafka = conftest.DevKafka()
    workdir = tempfile.mkdtemp(prefix="kbridge-startup-")
    daemons = []
    try:
        daemon = conftest.Kbridged(workdir, conftest.base_config(devkafka.bootstrap))
        daemons.append(daemon)
        quick = conftest.base_config(devkafka.bootstrap, queues={"linger": "1s"},
                                     node_id="quick")
        quick_daemon = conftest.Kbridged(workdir, quick, name="quick")
        daemons.append(quick_daemon)

        queue = f"empty-{uuid.uuid4().hex[:8]}"
        publish(daemon, queue, count)
        conn, first, last = take(daemon, queue, count)
        results["empty-group"] = (first, last)

        holder = connect(daemon)
        holder.subscribe(f"/queue/{queue}", id="h", ack="client-individual",
                         headers={"prefetch-count": "1"})
        conn.disconnect()  # the holder keeps the node in the group
        publish(daemon, queue, count + 1)  # one for the holder, `count` waiting
        time.sleep(1.0)  # fetched by now (the fetch wait is 100 ms)
        conn, first, last = take(daemon, queue, count)
        results["in-group"] = (first, last)
        holder.disconnect()
        conn.disconnect()

        publish(daemon, queue, count)
        time.sleep(5.0)
        conn, first, last = take(daemon, queue, count)
        results["back-in-linger"] = (first, last)
        conn.disconnect()

        queue = f"after-{uuid.uuid4().hex[:8]}"
        publish(quick_daemon, queue, 1)
        conn, _, _ = take(quick_daemon, queue, 1)
        conn.disconnect()
        publish(quick_daemon, queue, count)
        time.sleep(5.0)
        conn, first, last = take(quick_daemon, queue, count)
        results["back-after-linger"] = (first, last)
        conn.disconnect()
    finally:
        for d in daemons:
            d.stop()
            d.close()
        devkafka.stop()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--builddir", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=10)
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        results = run_once(args.builddir, args.messages)
        runs.append(results)
        print(f"run {i + 1}: " + ", ".join(f"{name} {first * 1000:.0f}/{last * 1000:.0f} ms"
                                            for name, (first, last) in results.items()),
              flush=True)
    print(f"\n{args.messages} waiting messages, SUBSCRIBE to first / last message, "
          f"{args.runs} run(s): min / median / max")
    for name in runs[0]:
        for which, index in (("first", 0), ("last", 1)):
            values = [r[name][index] * 1000 for r in runs]
            print(f"  {name:18} {which:5} {min(values):7.0f} {statistics.median(values):7.0f} "
                  f"{max(values):7.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
