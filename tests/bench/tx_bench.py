#!/usr/bin/python3
"""tx_bench.py -- STOMP transactions against any STOMP broker (kbridged,
RabbitMQ): BEGIN, N SENDs with `transaction`, COMMIT with a receipt, one
transaction after another on one connection. Prints commit latency (COMMIT
sent to its RECEIPT) p50/p99 and messages per second (sends of committed
transactions over the whole run), one line per transaction size.

  tests/bench/tx_bench.py --port 61613 --sizes 10,100 --transactions 200 \\
      --queue bench-tx --target kbridge

kbridged answers the COMMIT only after Kafka's commit_transaction; RabbitMQ
after its queue write. Not part of `make bench` (docs/transactions.md)."""

import argparse
import statistics
import threading
import time

import stomp


class Receipts(stomp.ConnectionListener):
    def __init__(self):
        self.cond = threading.Condition()
        self.seen = set()
        self.errors = []

    def on_receipt(self, frame):
        with self.cond:
            self.seen.add(frame.headers.get("receipt-id"))
            self.cond.notify_all()

    def on_error(self, frame):
        with self.cond:
            self.errors.append(frame.body)
            self.cond.notify_all()

    def wait(self, receipt, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while receipt not in self.seen:
                if self.errors:
                    raise RuntimeError(f"ERROR from the broker: {self.errors[0]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no RECEIPT {receipt} within {timeout}s")
                self.cond.wait(left)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run(args, size):
    conn = stomp.Connection12([(args.host, args.port)], heartbeats=(0, 0),
                              **({"vhost": args.vhost} if args.vhost else {}))
    receipts = Receipts()
    conn.set_listener("r", receipts)
    conn.connect(args.login, args.passcode, wait=True)
    body = "x" * args.body
    latencies = []
    start = time.monotonic()
    for t in range(args.transactions):
        name = f"tx{size}-{t}"
        conn.begin(name)
        for _ in range(size):
            conn.send(f"/queue/{args.queue}", body, headers={"transaction": name})
        sent = time.monotonic()
        conn.commit(name, headers={"receipt": name})
        receipts.wait(name, 60)
        latencies.append(time.monotonic() - sent)
    elapsed = time.monotonic() - start
    conn.disconnect()
    print(f"{args.target}\tsize {size}\t{args.transactions} tx\t"
          f"commit p50 {percentile(latencies, 50) * 1000:.1f} ms\t"
          f"p99 {percentile(latencies, 99) * 1000:.1f} ms\t"
          f"mean {statistics.mean(latencies) * 1000:.1f} ms\t"
          f"{size * args.transactions / elapsed:.0f} msg/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=61613)
    parser.add_argument("--login")
    parser.add_argument("--passcode")
    parser.add_argument("--vhost", help="CONNECT host header (RabbitMQ: /)")
    parser.add_argument("--queue", default="bench-tx")
    parser.add_argument("--sizes", default="10,100")
    parser.add_argument("--transactions", type=int, default=200)
    parser.add_argument("--body", type=int, default=100, help="body bytes")
    parser.add_argument("--target", default="kbridge", help="label in the output")
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        run(args, size)


if __name__ == "__main__":
    main()
