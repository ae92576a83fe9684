#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""tx_bench.py -- STOMP transactions (issue 15's benchmark row): BEGIN, N SENDs
with `transaction`, COMMIT with a receipt, one transaction after another on
one connection; commit latency (COMMIT sent to its RECEIPT) p50/p99 and
messages per second (sends of committed transactions over the whole run), per
transaction size. Next to it, the same transactions done directly on Kafka by
a confluent-kafka transactional producer (begin, N produce, commit), and
RabbitMQ's own STOMP transactions when asked.

`make bench-transactions` (part of `make bench`) starts kbridge-devkafka and
kbridged itself and writes docs/benchmarks-transactions.md:

  /usr/bin/python3 tests/bench/tx_bench.py --builddir build/plain \
      [--rabbitmq] [--sizes 10,100] [--transactions 200] \
      [--output docs/benchmarks-transactions.md]

Against a broker that is already running (kbridged, RabbitMQ), one line per size:

  tests/bench/tx_bench.py --port 61613 --sizes 10,100 --transactions 200 \
      --queue bench-tx --target kbridge

kbridged answers the COMMIT only after Kafka's commit_transaction; RabbitMQ
after its queue write. Every client socket has TCP_NODELAY: without it the
client's small writes wait for delayed ACKs and every commit sits on a ~40 ms
floor, whatever the broker."""

import argparse
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid

import stomp

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.path.join(HERE, "..", ".."))


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


def summary(target, size, transactions, latencies, elapsed):
    row = {"target": target, "size": size, "transactions": transactions,
           "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
           "mean_ms": statistics.mean(latencies) * 1000,
           "msgs_per_sec": size * transactions / elapsed}
    print(f"{target}\tsize {size}\t{transactions} tx\t"
          f"commit p50 {row['p50_ms']:.1f} ms\tp99 {row['p99_ms']:.1f} ms\t"
          f"mean {row['mean_ms']:.1f} ms\t{row['msgs_per_sec']:.0f} msg/s", flush=True)
    return row


def run(args, size, host=None, port=None, target=None, vhost=None):
    """One size over STOMP against host:port; the summary row."""
    host, port = host or args.host, port or args.port
    vhost = vhost if vhost is not None else args.vhost
    conn = stomp.Connection12([(host, port)], heartbeats=(0, 0),
                              **({"vhost": vhost} if vhost else {}))
    receipts = Receipts()
    conn.set_listener("r", receipts)
    conn.connect(args.login, args.passcode, wait=True)
    conn.transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = "x" * args.body
    queue = f"{args.queue}-{size}"
    latencies = []
    for t in range(args.warmup + args.transactions):
        if t == args.warmup:
            start = time.monotonic()
        name = f"tx{size}-{t}"
        conn.begin(name)
        for _ in range(size):
            conn.send(f"/queue/{queue}", body, headers={"transaction": name})
        sent = time.monotonic()
        conn.commit(name, headers={"receipt": name})
        receipts.wait(name, 60)
        if t >= args.warmup:
            latencies.append(time.monotonic() - sent)
    elapsed = time.monotonic() - start
    conn.disconnect()
    return summary(target or args.target, size, args.transactions, latencies, elapsed)


def run_direct(args, size, bootstrap):
    """The same transactions straight on Kafka: a confluent-kafka producer
    with a transactional.id, begin / N produce / commit_transaction."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": bootstrap,
                         "transactional.id": f"tx-bench-{uuid.uuid4().hex[:8]}",
                         "linger.ms": 5})
    producer.init_transactions(30)
    body = b"x" * args.body
    topic = f"direct-{args.queue}-{size}"
    latencies = []
    for t in range(args.warmup + args.transactions):
        if t == args.warmup:
            start = time.monotonic()
        producer.begin_transaction()
        for _ in range(size):
            producer.produce(topic, body)
        sent = time.monotonic()
        producer.commit_transaction(60)
        if t >= args.warmup:
            latencies.append(time.monotonic() - sent)
    elapsed = time.monotonic() - start
    return summary("direct librdkafka", size, args.transactions, latencies, elapsed)


def run_all(args):
    """kbridged on kbridge-devkafka, direct librdkafka on the same broker,
    and RabbitMQ with --rabbitmq; the rows."""
    from bench_util import use_build
    from conftest import DevKafka, Kbridged, base_config
    use_build(args.builddir)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    dk = DevKafka()
    work = tempfile.mkdtemp()
    try:
        daemon = Kbridged(work, base_config(dk.bootstrap, log={"level": "info"}))
        try:
            host, port = daemon.host_port("stomp")
            for size in sizes:
                rows.append(run(args, size, host, port, "kbridge (dev broker)", ""))
        finally:
            daemon.close()
        for size in sizes:
            rows.append(run_direct(args, size, dk.bootstrap))
    finally:
        dk.stop()
    rabbit_version = None
    if args.rabbitmq:
        from run_bench import RabbitMQ
        rabbit = RabbitMQ(work)
        try:
            rabbit_version = rabbit.version
            for size in sizes:
                rows.append(run(args, size, "127.0.0.1", rabbit.ports["stomp"],
                                f"RabbitMQ {rabbit.version}", "/"))
        finally:
            rabbit.stop()
    return rows, rabbit_version


def report(rows, args, rabbit_version):
    lines = [
        "# Transactions: commit latency and throughput",
        "",
        "<!-- Written by tests/bench/tx_bench.py (`make bench-transactions`); do not edit by"
        " hand. -->",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()}"
        f" ({os.cpu_count()} cores), everything on the same machine, with",
        f"`/usr/bin/python3 tests/bench/tx_bench.py --sizes {args.sizes}"
        f" --transactions {args.transactions}{' --rabbitmq' if args.rabbitmq else ''}`.",
        f"One stomp.py connection (TCP_NODELAY) runs {args.transactions} transactions per size,",
        f"one after another, after {args.warmup} unmeasured ones: BEGIN, N SENDs of"
        f" {args.body}-byte bodies",
        "to a queue, COMMIT with a receipt. Commit latency: from the COMMIT to its RECEIPT;",
        "msg/s: the sends of the measured transactions over their whole time (sends",
        "included). kbridged (tests' base config) on kbridge-devkafka, librdkafka's in-memory",
        "mock cluster, not a Kafka cluster; kbridged answers a COMMIT after Kafka's",
        "`commit_transaction` (its sends are produced at the commit, architecture §8).",
        "\"direct librdkafka\": confluent-kafka's transactional producer on the same broker,",
        "begin / N produce / `commit_transaction` (latency from the last produce to the",
        "commit's return).",
    ]
    if rabbit_version:
        lines.append(f"RabbitMQ {rabbit_version} (Debian's rabbitmq-server, STOMP plugin, a"
                     " classic queue, data in a temporary directory) answers after its own"
                     " queue write.")
    lines += [
        "",
        "| target | sends per transaction | commit p50 | commit p99 | msg/s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['target']} | {r['size']} | {r['p50_ms']:.1f} ms |"
                     f" {r['p99_ms']:.1f} ms | {r['msgs_per_sec']:,.0f} |")
    lines.append("")
    with open(args.output, "w") as f:
        f.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builddir",
                        help="start kbridge-devkafka and kbridged from this build tree"
                             " (and compare with direct librdkafka)")
    parser.add_argument("--rabbitmq", action="store_true",
                        help="with --builddir: also RabbitMQ (installed from Debian if absent)")
    parser.add_argument("--output", help="with --builddir: write the report here")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=61613)
    parser.add_argument("--login")
    parser.add_argument("--passcode")
    parser.add_argument("--vhost", help="CONNECT host header (RabbitMQ: /)")
    parser.add_argument("--queue", default="bench-tx")
    parser.add_argument("--sizes", default="10,100")
    parser.add_argument("--transactions", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured transactions first")
    parser.add_argument("--body", type=int, default=100, help="body bytes")
    parser.add_argument("--target", default="kbridge", help="label in the output")
    args = parser.parse_args()
    if args.builddir:
        rows, rabbit_version = run_all(args)
        if args.output:
            report(rows, args, rabbit_version)
        return 0
    for size in (int(s) for s in args.sizes.split(",")):
        run(args, size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
