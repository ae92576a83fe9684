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
           kbridged's CPU per consumed message from kbridge-bench's
           "preloaded" mark (on stderr) to its end: the consumer alone
           (the group's join included, which costs kbridged next to nothing).

CPU is user + system of kbridged (all its threads) from /proc/PID/stat
before and after each run, as run_bench.py's server_cpu_us_per_msg; the
*_loop_* figures are its main thread's alone (/proc/PID/task/PID/stat), the
event loop that runs everything of kbridge's own (architecture "Threads"). Rates
are printed too but vary with the load on a shared machine; CPU per message
much less so. Every run must verify (nothing lost, nothing out of order).

  /usr/bin/python3 tests/bench/cpu_per_msg.py --builddir build/plain \\
      [--count 100000] [--rounds 3] [--only stomp,amqp] [--perf consume-stomp] \\
      [--baseline OTHER-BUILDDIR]

With --baseline a second kbridged, built elsewhere (e.g. from the commit
before a change), runs every round right before this build's, on the same
broker: a before/after comparison under the same load.
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


def cpu_now(pid):
    return run_bench.process_cpu_seconds(pid), loop_cpu_seconds(pid)


def measured_run(bench, daemon, devkafka, protocol, workload_args, perf_path=None):
    """One kbridge-bench run on a fresh queue: (result, kbridged CPU seconds, its loop
    thread's CPU seconds). For the consume workload the CPU is counted from
    kbridge-bench's "preloaded" mark on: the consumer alone."""
    queue = f"cpu-{protocol}-{int(time.time() * 1000) % 10**9}"
    devkafka.command(f"topic create {queue} {run_bench.PARTITIONS}")
    args = ["--protocol", protocol, "--target", "kbridge", "--queue", queue,
            "--keys", str(run_bench.KEYS), "--host", "127.0.0.1",
            "--port", str(daemon.ports[protocol])] + workload_args
    pid = daemon.proc.pid
    perf = None
    before = cpu_now(pid)
    proc = subprocess.Popen([bench] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    for line in proc.stderr:  # the preload's end, when there is one
        if line.startswith("kbridge-bench: preloaded"):
            before = cpu_now(pid)
            break
    if perf_path:
        perf = subprocess.Popen(["perf", "record", "-F", "999", "--call-graph", "dwarf,16384",
                                 "-o", perf_path, "-p", str(pid)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    out, err = proc.communicate(timeout=600)
    after = cpu_now(pid)
    if perf:
        perf.send_signal(2)  # SIGINT: perf writes its file and exits
        perf.wait(60)
    lines = [l for l in out.splitlines() if l.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"ok": False, "error": err[-2000:]}
    if not result.get("ok"):
        raise RuntimeError(f"run not verified: {json.dumps(result)}")
    return result, after[0] - before[0], after[1] - before[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builddir", required=True)
    parser.add_argument("--count", type=int, default=100000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="stomp,amqp")
    parser.add_argument("--baseline", metavar="BUILDDIR",
                        help="also measure kbridged from this build, interleaved")
    parser.add_argument("--perf", metavar="RUN-PROTOCOL",
                        help="perf record (DWARF call graphs) kbridged during this run of the first round"
                        " (e.g. consume-stomp); the file is kept in the current directory")
    args = parser.parse_args()
    builddir = os.path.abspath(args.builddir)
    bench = os.path.join(builddir, "tests", "bench", "kbridge-bench")  # for both builds
    count = str(args.count)
    workdir = tempfile.mkdtemp(prefix="kbridge-cpu-")
    devkafka = None
    daemons = []
    rows = {}
    try:
        devkafka = run_bench.DevKafka(builddir)
        builds = ([("before", os.path.abspath(args.baseline))] if args.baseline else []) + \
            [("this", builddir)]
        for label, build in builds:
            daemons.append((label, build, run_bench.Kbridged(
                build, devkafka.bootstrap, workdir, "throughput", f"-{label}")))
        for round_no, protocol, (label, _, daemon) in (
                (r, p, d) for r in range(args.rounds) for p in args.only.split(",")
                for d in daemons):
            confirm = "every:100" if protocol == "stomp" else "unsettled"
            publish = ["--workload", "publish", "--count", count, "--confirm", confirm,
                       "--window", "5000", "--no-verify"]
            consume = ["--workload", "consume", "--count", count, "--prefetch", "100"]
            perf = lambda name: (f"perf-{name}-{protocol}.data"  # noqa: E731
                                 if round_no == 0 and args.perf == f"{name}-{protocol}"
                                 else None)
            pub, pub_cpu, pub_loop = measured_run(bench, daemon, devkafka, protocol, publish,
                                                  perf("publish"))
            con, con_cpu, con_loop = measured_run(bench, daemon, devkafka, protocol, consume,
                                                  perf("consume"))
            n = args.count
            row = {"build": label, "protocol": protocol, "round": round_no + 1,
                   "publish_cpu_us_per_msg": round(pub_cpu * 1e6 / n, 2),
                   "publish_loop_us_per_msg": round(pub_loop * 1e6 / n, 2),
                   "publish_msg_per_s": round(pub.get("msgs_per_sec", 0)),
                   "consume_cpu_us_per_msg": round(con_cpu * 1e6 / n, 2),
                   "consume_loop_us_per_msg": round(con_loop * 1e6 / n, 2),
                   "consume_msg_per_s": round(con.get("msgs_per_sec", 0))}
            print(json.dumps(row), flush=True)
            rows.setdefault((label, protocol), []).append(row)
        for (label, protocol), runs in rows.items():
            summary = {k: statistics.median(r[k] for r in runs) for k in runs[0]
                       if k not in ("build", "protocol", "round")}
            log(f"{label} build, {protocol}: medians over {len(runs)} rounds: "
                f"{json.dumps(summary)}")
    finally:
        for thing in [d for _, _, d in daemons] + [devkafka]:
            if thing:
                thing.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
