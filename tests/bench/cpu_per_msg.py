#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""cpu_per_msg.py -- kbridged's CPU per consumed and per published message
(issue 19 item 3), the figures of tests/bench/analysis.md's "Zero-copy
delivery" section.

Starts a kbridge-devkafka and a kbridged with run_bench.py's "throughput"
profile (tests/bench/kbridge-bench.yaml) and, for each protocol and each
round, runs on a fresh queue:

  publish  kbridge-bench --workload publish --no-verify with the consume
           workload's preload settings (STOMP a receipt every 100 messages,
           AMQP 1.0 unsettled, 5,000 in flight): kbridged's CPU per
           published message;
  consume  kbridge-bench --workload consume --prefetch 100 (the `make bench`
           row: the same preload, then a consumer with one ack per message):
           kbridged's CPU per consumed message is this run's CPU minus the
           publish run's (the preload), per message.

CPU is user + system of kbridged (all its threads) from /proc/PID/stat
before and after each run, as run_bench.py's server_cpu_us_per_msg; the
*_loop_* figures are its main thread's alone (/proc/PID/task/PID/stat), the
event loop that runs everything of kbridge's own (architecture "Threads"). Rates
are printed too but vary with the load on a shared machine; CPU per message
much less so. Every run must verify (nothing lost, nothing out of order).

  /usr/bin/python3 tests/bench/cpu_per_msg.py --builddir build/plain \\
      [--count 100000] [--rounds 3] [--only stomp,amqp] [--perf consume-stomp]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run_bench  # noqa: E402  (DevKafka, Kbridged, run_bench, process_cpu_seconds)


def log(message):
    print(f"cpu_per_msg: {message}", file=sys.stderr, flush=True)


def loop_cpu_seconds(pid):
    """User + system CPU seconds of kbridged's main thread, the event loop."""
    return run_bench.process_cpu_seconds(f"{pid}/task/{pid}")


def measured_run(builddir, daemon, devkafka, protocol, workload_args, perf_path=None):
    """One kbridge-bench run on a fresh queue: (result, kbridged CPU seconds, its loop
    thread's CPU seconds)."""
    queue = f"cpu-{protocol}-{int(time.time() * 1000) % 10**9}"
    devkafka.command(f"topic create {queue} {run_bench.PARTITIONS}")
    args = ["--protocol", protocol, "--target", "kbridge", "--queue", queue,
            "--keys", str(run_bench.KEYS), "--host", "127.0.0.1",
            "--port", str(daemon.ports[protocol])] + workload_args
    perf = None
    if perf_path:
        perf = subprocess.Popen(["perf", "record", "-F", "999", "--call-graph", "dwarf,16384", "-o", perf_path, "-p",
                                 str(daemon.proc.pid)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    before = run_bench.process_cpu_seconds(daemon.proc.pid)
    loop_before = loop_cpu_seconds(daemon.proc.pid)
    result = run_bench.run_bench(builddir, args)
    after = run_bench.process_cpu_seconds(daemon.proc.pid)
    loop_after = loop_cpu_seconds(daemon.proc.pid)
    if perf:
        perf.send_signal(2)  # SIGINT: perf writes its file and exits
        perf.wait(60)
    if not result.get("ok"):
        raise RuntimeError(f"run not verified: {json.dumps(result)}")
    return result, after - before, loop_after - loop_before


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builddir", required=True)
    parser.add_argument("--count", type=int, default=100000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="stomp,amqp")
    parser.add_argument("--perf", metavar="RUN-PROTOCOL",
                        help="perf record -g kbridged during this run of the first round"
                        " (e.g. consume-stomp); the file is kept in the current directory")
    args = parser.parse_args()
    builddir = os.path.abspath(args.builddir)
    count = str(args.count)
    workdir = tempfile.mkdtemp(prefix="kbridge-cpu-")
    devkafka = daemon = None
    rows = {}
    try:
        devkafka = run_bench.DevKafka(builddir)
        daemon = run_bench.Kbridged(builddir, devkafka.bootstrap, workdir, "throughput")
        for round_no in range(args.rounds):
            for protocol in args.only.split(","):
                confirm = "every:100" if protocol == "stomp" else "unsettled"
                publish = ["--workload", "publish", "--count", count, "--confirm", confirm,
                           "--window", "5000", "--no-verify"]
                consume = ["--workload", "consume", "--count", count, "--prefetch", "100"]
                perf = lambda name: (f"perf-{name}-{protocol}.data"  # noqa: E731
                                     if round_no == 0 and args.perf == f"{name}-{protocol}"
                                     else None)
                pub, pub_cpu, pub_loop = measured_run(builddir, daemon, devkafka, protocol, publish,
                                            perf("publish"))
                con, con_cpu, con_loop = measured_run(builddir, daemon, devkafka, protocol, consume,
                                            perf("consume"))
                n = args.count
                row = {"protocol": protocol, "round": round_no + 1,
                       "publish_cpu_us_per_msg": round(pub_cpu * 1e6 / n, 2),
                       "publish_loop_us_per_msg": round(pub_loop * 1e6 / n, 2),
                       "publish_msg_per_s": round(pub.get("msgs_per_sec", 0)),
                       "consume_cpu_us_per_msg": round((con_cpu - pub_cpu) * 1e6 / n, 2),
                       "consume_loop_us_per_msg": round((con_loop - pub_loop) * 1e6 / n, 2),
                       "consume_msg_per_s": round(con.get("msgs_per_sec", 0))}
                print(json.dumps(row), flush=True)
                rows.setdefault(protocol, []).append(row)
        for protocol, runs in rows.items():
            summary = {k: statistics.median(r[k] for r in runs) for k in runs[0]
                       if k not in ("protocol", "round")}
            log(f"{protocol} medians over {len(runs)} rounds: {json.dumps(summary)}")
    finally:
        for thing in (daemon, devkafka):
            if thing:
                thing.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
