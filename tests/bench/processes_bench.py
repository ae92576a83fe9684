#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""processes_bench.py -- consume and publish with 1 vs 2 kbridged processes
(`processes: N`, issue 19 items 4 and 5; `make bench` runs it and writes
docs/benchmarks-processes.md).

For N = 1 and N = 2, a fresh kbridge-devkafka (32 partitions) and a kbridged
with `processes: N` (tests/bench/kbridge-bench.yaml's settings). Each
workload runs two kbridge-bench clients at once, each on its own queue, so
that two workers have work: STOMP consume (per-message ACK, prefetch 100,
after an untimed confirmed preload) and STOMP publish with a receipt every
100 messages (5,000 in flight). With 2 processes the kernel places each
connection on a worker (SO_REUSEPORT hashes the addresses): a pair whose
two queues landed on one worker is run again (each worker's
kbridge_destination_*_total says where a queue was served), and the
attempts are reported. Figures: the two clients' msg/s summed; kbridged's
CPU (the sum over its workers; the supervisor does nothing) per message from
/proc/PID/stat; the CPU of the broker and of the load generators (wait4
rusage) over the same run, against the 2 cores x wall time there were.

  /usr/bin/python3 tests/bench/processes_bench.py --builddir build/plain \\
      [--count 100000] [--output docs/benchmarks-processes.md]
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))

import yaml  # noqa: E402

from conftest import free_port, wait_for  # noqa: E402
from run_bench import PARTITIONS, DevKafka, process_cpu_seconds  # noqa: E402

KEYS = 256
ATTEMPTS = 6  # pairs tried until the two queues are served by different workers


def log(message):
    print(f"processes_bench: {message}", file=sys.stderr, flush=True)


def machine_cpu():
    """(busy, idle) CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    tick = os.sysconf("SC_CLK_TCK")
    return busy / tick, idle / tick


def cpu_seconds(pid):
    return process_cpu_seconds(pid) or 0.0


class Daemon:
    """kbridged with `processes: N`; its workers' pids and ops ports from its log."""

    def __init__(self, builddir, bootstrap, workdir, processes):
        with open(os.path.join(HERE, "kbridge-bench.yaml")) as f:
            text = f.read()
        self.stomp_port = free_port()
        text = (text.replace("@BOOTSTRAP@", bootstrap)
                .replace("@STOMP_PORT@", str(self.stomp_port))
                .replace("@AMQP_PORT@", "0").replace("@HTTP_PORT@", "0"))
        config = yaml.safe_load(text)
        config["processes"] = processes
        config["log"]["level"] = "info"  # the listener lines name each worker's ops port
        self.processes = processes
        self.path = os.path.join(workdir, f"kbridged-{processes}.yaml")
        with open(self.path, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        self.log_path = os.path.join(workdir, f"kbridged-{processes}.log")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen([os.path.join(builddir, "daemon", "kbridged"), "-c",
                                      self.path], stdout=self.log_file, stderr=subprocess.STDOUT)
        wait_for(lambda: len(self.ops()) == processes, 60, "every worker's ops listener")
        for node in self.ops():
            wait_for(lambda: self.get(node, "/readyz")[0] == 200, 60, f"{node} ready")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def ops(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"kbridged exited: {self.log()[-2000:]}")
        found = {}
        for m in re.finditer(r"(?:(\S+) )?\[server\] listener http listening on (\S+)",
                             self.log()):
            node = m.group(1) if self.processes > 1 else "bench"
            found[node] = m.group(2)
        return found

    def pids(self):
        if self.processes == 1:
            return [self.proc.pid]
        return [int(p) for p in re.findall(r"worker \d+ started as node \S+ \(pid (\d+)\)",
                                           self.log())]

    def cpu(self):
        return sum(cpu_seconds(pid) for pid in self.pids())

    def get(self, node, path):
        try:
            with urllib.request.urlopen(f"http://{self.ops()[node]}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except OSError:
            return 0, ""

    def served_by(self, queue, series):
        """The worker whose `series` for `queue` is highest (the client's
        connection; the verification side may touch the other too)."""
        best, most = "?", 0.0
        for node in self.ops():
            _, text = self.get(node, "/metrics")
            m = re.search(rf'^{series}{{kind="queue",destination="{re.escape(queue)}"}} (\S+)$',
                          text, re.M)
            if m and float(m.group(1)) > most:
                best, most = node, float(m.group(1))
        return best

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        self.log_file.close()


def workload_args(workload, count):
    if workload == "consume":
        return ["--workload", "consume", "--count", str(count), "--prefetch", "100"]
    return ["--workload", "publish", "--count", str(count), "--confirm", "every:100",
            "--window", "5000"]


def run_pair(builddir, daemon, devkafka, workload, count, tag):
    """Two kbridge-bench clients at once; their results, CPU and placement."""
    queues = [f"procs-{workload}-{tag}-{side}" for side in ("a", "b")]
    for queue in queues:
        devkafka.command(f"topic create {queue} {PARTITIONS}")
    bench = os.path.join(builddir, "tests", "bench", "kbridge-bench")
    commands = [[bench, "--protocol", "stomp", "--target", "kbridge", "--queue", queue,
                 "--keys", str(KEYS), "--host", "127.0.0.1", "--port", str(daemon.stomp_port)]
                + workload_args(workload, count) for queue in queues]
    cpu_before, broker_before = daemon.cpu(), cpu_seconds(devkafka.proc.pid)
    children_before = os.times()
    machine_before = machine_cpu()
    started = time.monotonic()
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        lines = [l for l in out.splitlines() if l.startswith("{")]
        results.append(json.loads(lines[-1]) if lines else
                       {"ok": False, "error": err[-500:]})
    wall = time.monotonic() - started
    machine_after = machine_cpu()
    cpu_after, broker_after = daemon.cpu(), cpu_seconds(devkafka.proc.pid)
    usage = os.times()  # children's CPU: the two clients, reaped above
    client_cpu = (usage.children_user - children_before.children_user +
                  usage.children_system - children_before.children_system)
    series = ("kbridge_destination_delivered_total" if workload == "consume"
              else "kbridge_destination_published_total")
    placement = [daemon.served_by(q, series) for q in queues]
    return {"workload": workload, "processes": daemon.processes, "results": results,
            "commands": [" ".join(["kbridge-bench"] + c[1:]) for c in commands],
            "wall": wall, "kbridged_cpu": cpu_after - cpu_before,
            "broker_cpu": broker_after - broker_before, "client_cpu_total": client_cpu,
            "machine_busy": machine_after[0] - machine_before[0],
            "machine_idle": machine_after[1] - machine_before[1],
            "placement": placement}


def measure(builddir, workdir, processes, count, workloads, repeat):
    devkafka = DevKafka(builddir)
    daemon = None
    runs = []
    try:
        daemon = Daemon(builddir, devkafka.bootstrap, workdir, processes)
        for workload in workloads:
            counted = 0
            for attempt in range(1, repeat * ATTEMPTS + 1):
                if counted == repeat:
                    break
                log(f"{workload}, {processes} process(es), attempt {attempt}")
                run = run_pair(builddir, daemon, devkafka, workload, count,
                               f"{processes}-{attempt}")
                run["attempt"] = attempt
                runs.append(run)
                split = run["placement"][0] != run["placement"][1]
                if processes == 1 or split:
                    run["counted"] = True
                    counted += 1
    finally:
        if daemon:
            daemon.stop()
        devkafka.stop()
    return runs


def median(values):
    values = sorted(values)
    return values[(len(values) - 1) // 2]


def rate(run):
    return sum(r.get("msgs_per_sec", 0) for r in run["results"])


def messages(run):
    return sum(r.get("count", 0) or r.get("expected", 0) or 0 for r in run["results"])


def verified(run):
    parts = []
    for r in run["results"]:
        if not r.get("ok"):
            parts.append(f"FAILED ({r.get('error', 'verification')[:60]})")
        elif "expected" in r:
            parts.append(f"{r['received']:,}/{r['expected']:,}, lost {r['lost']}, dup "
                         f"{r['duplicated']}")
        else:
            parts.append(f"{r.get('confirmed', 0):,} confirmed")
    return "; ".join(parts)


def reading(counted, context):
    """This run's figures against the target (2 processes >= 1.6x consume), and
    where the CPU went."""
    lines = ["## This run\n"]
    cpu = lambda r: r["kbridged_cpu"] * 1e6 / messages(r)  # noqa: E731
    for workload in ("consume", "publish"):
        one, two = counted.get((workload, 1)), counted.get((workload, 2))
        if not one or not two:
            lines.append(f"- {workload}: not measured.")
            continue
        r1, r2 = median([rate(r) for r in one]), median([rate(r) for r in two])
        ratios = sorted(rate(b) / rate(a) for a in one for b in two)
        c1, c2 = median([cpu(r) for r in one]), median([cpu(r) for r in two])
        kb = sum(r["kbridged_cpu"] for r in two)
        br = sum(r["broker_cpu"] for r in two)
        cl = sum(r["client_cpu_total"] for r in two)
        busy = sum(r["machine_busy"] for r in two)
        idle = sum(r["machine_idle"] for r in two)
        other = max(0.0, busy - kb - br - cl)
        wall = sum(r["wall"] for r in two)
        target = (f" (issue 19's target ≥ 1.6×: {'met' if r2 >= 1.6 * r1 else '**not met**'})"
                  if workload == "consume" else "")
        lines.append(
            f"- {workload}: 2 processes {r2:,.0f} msg/s ÷ 1 process {r1:,.0f} msg/s ="
            f" **{r2 / r1:.2f}×**{target}; any 2-process run ÷ any 1-process run spans"
            f" {ratios[0]:.2f}–{ratios[-1]:.2f}×. kbridged's CPU per message: {c1:.2f} →"
            f" {c2:.2f} µs. Over the counted 2-process runs ({wall:.1f} s wall, {busy + idle:.1f}"
            f" CPU-s the machine had): kbridged {kb:.1f} CPU-s, the dev broker {br:.1f}, the"
            f" two load generators {cl:.1f}, other processes {other:.1f}, idle {idle:.1f}."
            f" At {c2:.2f} µs per message one free core serves"
            f" ~{1e6 / c2:,.0f} msg/s of kbridged's {workload} work"
            f"{' (a consumed message with its preload publish)' if workload == 'consume' else ''};"
            f" N workers on N free cores, with the broker and the clients elsewhere, ~N × that.")
    lines.append(f"- Load average (1, 5, 15 min) before the run: {context['load']}; after:"
                 f" {context['load_after']}. Every figure above shares the 2 cores with that"
                 " load: the runs are the same machine's, not an idle one's.")
    return "\n".join(lines)


def write_report(path, runs, context):
    out = ["# kbridge benchmarks: 1 vs 2 processes\n",
           "<!-- Generated by `make bench-processes` (tests/bench/processes_bench.py); the"
           " analysis below the tables is docs/benchmarks-processes.md's own text kept in"
           " tests/bench/processes_analysis.md. -->\n",
           f"Run on {context['date']} with `{context['command']}`; load average before the"
           f" run: {context['load']} (other engineers' builds share the 2 cores).\n",
           "kbridged with `processes: 1` and `processes: 2` (architecture \"Processes\") on a"
           " fresh kbridge-devkafka each, settings of tests/bench/kbridge-bench.yaml. Every row"
           " runs **two** kbridge-bench STOMP clients at once, each on its own queue (32"
           " partitions), so two workers can have work: consume = per-message ACK, prefetch"
           " 100, after an untimed confirmed preload; publish = a receipt every 100 messages,"
           " 5,000 in flight. msg/s is the two clients' figures summed. CPU is from"
           " /proc/PID/stat (kbridged: the sum over its workers) and wait4 (the clients),"
           " over the whole pair (the consume row includes its preload; the wall time also"
           " holds the connects and the queue's group join, ~3 s on the dev broker). \"Other"
           " processes\" is the machine's busy CPU time (/proc/stat) over the pair minus"
           " kbridged's, the broker's and the clients': other engineers' builds and tests on"
           " the same 2 cores. \"Idle\" is what nobody used.\n",
           "| Workload | Processes | msg/s (2 clients) | kbridged CPU µs/msg | kbridged CPU s |"
           " broker CPU s | clients CPU s | other processes CPU s | idle CPU s | wall s |"
           " queues served by | verification |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    counted = {}
    for run in runs:
        total = messages(run)
        cpu_us = run["kbridged_cpu"] * 1e6 / total if total else 0
        others = max(0.0, run["machine_busy"] - run["kbridged_cpu"] - run["broker_cpu"] -
                     run["client_cpu_total"])
        where = " / ".join(run["placement"])
        note = "" if run.get("counted") else " (not counted: both queues on one worker)"
        out.append(f"| {run['workload']}{note} | {run['processes']} | {rate(run):,.0f} |"
                   f" {cpu_us:.2f} | {run['kbridged_cpu']:.1f} | {run['broker_cpu']:.1f} |"
                   f" {run['client_cpu_total']:.1f} | {others:.1f} | {run['machine_idle']:.1f} |"
                   f" {run['wall']:.1f} |"
                   f" {where} | {verified(run)} |")
        if run.get("counted"):
            counted.setdefault((run["workload"], run["processes"]), []).append(run)
    out.append("")
    out.append("Summary: the median of the counted runs of each (a run of 2 processes counts"
               " only when its two queues were served by different workers).\n")
    out.append("| Workload | 1 process msg/s | 2 processes msg/s | 2 ÷ 1 |"
               " kbridged CPU µs/msg, 1 → 2 |")
    out.append("| --- | --- | --- | --- | --- |")
    cpu = lambda r: r["kbridged_cpu"] * 1e6 / messages(r)  # noqa: E731
    for workload in ("consume", "publish"):
        one, two = counted.get((workload, 1)), counted.get((workload, 2))
        if not one or not two:
            out.append(f"| {workload} | not measured | | | |")
            continue
        r1, r2 = median([rate(r) for r in one]), median([rate(r) for r in two])
        out.append(f"| {workload} | {r1:,.0f} | {r2:,.0f} | {r2 / r1:.2f}× |"
                   f" {median([cpu(r) for r in one]):.2f} → {median([cpu(r) for r in two]):.2f} |")
    out.append("")
    out.append(reading(counted, context))
    out.append("")
    analysis = os.path.join(HERE, "processes_analysis.md")
    if os.path.exists(analysis):
        with open(analysis) as f:
            out.append(f.read().rstrip() + "\n")
    out.append("## Commands and summary lines\n")
    out.append("```")
    for run in runs:
        for command, result in zip(run["commands"], run["results"]):
            out.append(f"$ {command}   # processes: {run['processes']}")
            out.append(json.dumps(result, separators=(",", ":")))
    out.append("```")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builddir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--count", type=int, default=100000, help="messages per client")
    parser.add_argument("--workloads", default="consume,publish")
    parser.add_argument("--repeat", type=int, default=3, help="counted runs per row")
    args = parser.parse_args()
    builddir = os.path.abspath(args.builddir)
    load = open("/proc/loadavg").read().split()[:3]
    workdir = tempfile.mkdtemp(prefix="kbridge-procs-bench-")
    runs = []
    workloads = args.workloads.split(",")
    for processes in (1, 2):
        runs += measure(builddir, workdir, processes, args.count, workloads, args.repeat)
    command = "make bench-processes"
    if args.count != 100000 or args.workloads != "consume,publish" or args.repeat != 3:
        command += (f" PROCESSES_BENCH_ARGS='--count {args.count} --workloads {args.workloads}"
                    f" --repeat {args.repeat}'")
    context = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "command": command, "load": " ".join(load),
               "load_after": " ".join(open("/proc/loadavg").read().split()[:3])}
    write_report(args.output, runs, context)
    log(f"wrote {args.output}")
    failed = [r for run in runs for r in run["results"] if not r.get("ok")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
