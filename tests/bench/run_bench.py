#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""run_bench.py -- the standard kbridge benchmark matrix (`make bench`,
`make bench-compare`).

Starts a kbridge-devkafka and a kbridged on it (tests/bench/kbridge-bench.yaml,
loopback, ephemeral ports), runs kbridge-bench for every workload over STOMP
and AMQP 1.0 against kbridged and the same workload directly with librdkafka
on the same broker, optionally against RabbitMQ (installed from Debian when
absent), and writes docs/benchmarks.md: the figures, the ratios, the targets
of issue 6, the verification counts, the machine and the exact commands.
Every kbridge-bench run prints one JSON line; they are all kept in the doc.

With --baseline BUILDDIR (`make bench-regression BASE=REV` builds REV beside
this tree and passes it) a second pair of kbridged, built from the older
commit, runs every kbridge row right before the new one, with the same
load generator, on the same broker: the "Before and after" section shows
each row's change and flags a drop of more than REGRESSION_LIMIT.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from conftest import free_port, wait_for  # noqa: E402  (the integration suite's helpers)
from legacy_brokers import RabbitMQ  # noqa: E402  (shared with test_shovel.py)

# The dev broker keeps ~5 MiB per partition and drops older records, which the
# verification would count as lost. A run's records must fit in every
# partition they land in: 200,000 AMQP records of ~220 bytes are ~44 MB.
PARTITIONS = 32
# Distinct record keys per run. Records of one key share a partition; with 16
# keys over 32 partitions some partitions got 2 keys = 25,000 AMQP records,
# past the ~5 MiB. 256 keys spread a run over every partition.
KEYS = 256

# librdkafka settings of each profile, for kbridged (kafka.producer / kafka.consumer)
# and for the direct librdkafka runs alike. "throughput" is kbridged's own defaults on
# the dev broker (linger.ms 1, KAFKA_PRODUCER_LINGER_MS; fetch.wait.max.ms 5 on the
# mock), spelled out so that the direct librdkafka runs use them too: every row runs
# with the default config a new user gets (issue 19: the latency and request-reply
# targets are the default config's). Until 2026-12-07 a second "latency" profile
# (linger.ms 1, fetch.wait.max.ms 1) served those rows; linger.ms 1 is now the default.
PROFILES = {
    "throughput": {"producer": {"linger.ms": "1"}, "consumer": {"fetch.wait.max.ms": "5"}},
}


def log(message):
    print(f"run_bench: {message}", file=sys.stderr, flush=True)


class DevKafka:
    def __init__(self, builddir):
        self.proc = subprocess.Popen(
            [os.path.join(builddir, "daemon", "kbridge-devkafka"), "--partitions",
             str(PARTITIONS), "--log-level", "warn"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.bootstrap = self.proc.stdout.readline().strip()
        if not self.bootstrap:
            raise RuntimeError("kbridge-devkafka did not start")

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"kbridge-devkafka: {line}: {answer}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


BENCH_USER, BENCH_PASSWORD = "bench", "bench"


def password_hash():
    return subprocess.run(["openssl", "passwd", "-6", BENCH_PASSWORD], capture_output=True,
                          text=True, check=True).stdout.strip()


class Kbridged:
    def __init__(self, builddir, bootstrap, workdir, profile="throughput", label=""):
        import yaml
        with open(os.path.join(HERE, "kbridge-bench.yaml")) as f:
            config = f.read()
        self.ports = {"stomp": free_port(), "amqp": free_port(), "http": free_port()}
        config = config.replace("@BOOTSTRAP@", bootstrap)
        for name, port in self.ports.items():
            config = config.replace(f"@{name.upper()}_PORT@", str(port))
        parsed = yaml.safe_load(config)
        for side in ("producer", "consumer"):
            parsed["kafka"].setdefault(side, {}).update(PROFILES[profile][side])
        self.profile = profile
        parsed["node_id"] = f"bench{label}-{profile}"
        # 0-9-1 clients always log in: a user for kbridge-bench's amqp091 runs
        parsed["auth"]["users"] = [{"name": BENCH_USER, "password_hash": password_hash(),
                                    "publish": [".*"], "consume": [".*"]}]
        self.config_path = os.path.join(workdir, f"kbridge-bench{label}-{profile}.yaml")
        with open(self.config_path, "w") as f:
            yaml.safe_dump(parsed, f, sort_keys=False)
        self.log_path = os.path.join(workdir, f"kbridged{label}-{profile}.log")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen([os.path.join(builddir, "daemon", "kbridged"), "-c",
                                      self.config_path], stdout=self.log_file,
                                     stderr=subprocess.STDOUT)
        wait_for(self.ready, 60, "kbridged /readyz")

    def ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"kbridged exited: {open(self.log_path).read()[-2000:]}")
        try:
            import urllib.request
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['http']}/readyz",
                                        timeout=2) as r:
                return r.status == 200
        except Exception:
            return False

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        self.log_file.close()


def run_bench(builddir, args, timeout=600):
    command = [os.path.join(builddir, "tests", "bench", "kbridge-bench")] + args
    log(" ".join(command[1:]))
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"kbridge-bench printed no summary: {proc.stderr[-2000:]}")
    result = json.loads(lines[-1])
    result["command"] = "kbridge-bench " + " ".join(args)
    if not result.get("ok"):
        log(f"NOT OK: {lines[-1]}")
    return result


def process_cpu_seconds(pid):
    """User + system CPU seconds a process has used (None: no such process)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# ---- the matrix -----------------------------------------------------------------------------

def matrix(scale):
    """(id, title, profile, {target-kind: args}) rows. Target kinds: stomp, amqp (1.0),
    amqp091 (0-9-1, on the same port as amqp), kafka."""
    n = lambda count: str(max(1000, int(count * scale)))
    latency = ["--workload", "latency", "--rate", "5000", "--duration", str(max(2, 10 * scale))]
    publish_each = {
        "stomp": ["--workload", "publish", "--count", n(100000), "--confirm", "each",
                  "--window", "1000"],
        "amqp": ["--workload", "publish", "--count", n(100000), "--confirm", "unsettled",
                 "--window", "1000"],
        "kafka": ["--workload", "publish", "--count", n(100000), "--window", "1000"],
        "amqp091": ["--workload", "publish", "--count", n(100000), "--confirm", "unsettled",
                    "--window", "1000"],
    }
    return [
        # first, while the daemons are fresh: RSS growth per connection
        ("idle", "Idle STOMP connections (RSS of the server)", "throughput", {
            "stomp": ["--workload", "idle", "--connections", n(10000)],
        }),
        ("publish-batched", "Publish, batched confirmations (100-byte persistent)", "throughput", {
            "stomp": ["--workload", "publish", "--count", n(200000), "--confirm", "none"],
            "amqp": ["--workload", "publish", "--count", n(200000), "--confirm", "unsettled",
                     "--window", "10000"],
            "kafka": ["--workload", "publish", "--count", n(200000), "--window", "0"],
            "amqp091": ["--workload", "publish", "--count", n(200000), "--confirm", "unsettled",
                        "--window", "10000"],
        }),
        ("publish-each", "Publish, every message confirmed, 1,000 in flight", "throughput",
         publish_each),
        # issue 19: STOMP's batched confirmation is a receipt every N SENDs (a
        # client that asks none is not comparable); the direct row is the same
        # unbounded producer as publish-batched
        ("publish-receipt-100", "Publish, STOMP receipt every 100 messages, 5,000 in flight",
         "throughput", {
            "stomp": ["--workload", "publish", "--count", n(200000), "--confirm", "every:100",
                      "--window", "5000"],
            "kafka": ["--workload", "publish", "--count", n(200000), "--window", "0"],
        }),
        # AMQP 0-9-1's waitForConfirms after every publish: one message in flight
        ("publish-sync", "Publish, each confirmed before the next (AMQP 0-9-1)", "throughput", {
            "amqp091": ["--workload", "publish", "--count", n(5000), "--confirm", "each"],
        }),
        ("publish-presettled", "Publish, AMQP pre-settled (fire and forget)", "throughput", {
            "amqp": ["--workload", "publish", "--count", n(200000), "--confirm", "presettled"],
        }),
        ("consume", "Consume, per-message ack, prefetch 100", "throughput", {
            "stomp": ["--workload", "consume", "--count", n(100000), "--prefetch", "100"],
            "amqp": ["--workload", "consume", "--count", n(100000), "--prefetch", "100"],
            "kafka": ["--workload", "consume", "--count", n(100000)],
            "amqp091": ["--workload", "consume", "--count", n(100000), "--prefetch", "100"],
        }),
        ("latency", "End-to-end latency at 5,000 msg/s", "throughput", {
            "stomp": latency, "amqp": latency, "kafka": latency, "amqp091": latency,
        }),
        # direct librdkafka: one produce -> fetch hop per round trip (bench_kafka.c's
        # kafka_request), the hop a kbridge request takes (issue 19's reference)
        ("request-reply", "Request-reply round trip, one request at a time", "throughput", {
            "stomp": ["--workload", "request-reply", "--count", n(2000), "--window", "1"],
            "amqp": ["--workload", "request-reply", "--count", n(2000), "--window", "1"],
            "kafka": ["--workload", "request-reply", "--count", n(2000), "--window", "1"],
            "amqp091": ["--workload", "request-reply", "--count", n(2000), "--window", "1"],
        }),
        ("request-reply-100", "Request-reply, 100 requests in flight", "throughput", {
            "stomp": ["--workload", "request-reply", "--count", n(20000), "--window", "100"],
            "amqp": ["--workload", "request-reply", "--count", n(20000), "--window", "100"],
            "kafka": ["--workload", "request-reply", "--count", n(20000), "--window", "100"],
            "amqp091": ["--workload", "request-reply", "--count", n(20000), "--window", "100"],
        }),
        # RabbitMQ's RPC idiom: replies through amq.rabbitmq.reply-to, no reply queue
        ("request-reply-direct", "Request-reply, direct reply-to, one request at a time", "throughput", {
            "amqp091": ["--workload", "request-reply", "--count", n(2000), "--window", "1",
                        "--reply-to", "direct"],
        }),
        ("request-reply-direct-100", "Request-reply, direct reply-to, 100 requests in flight",
         "throughput", {
            "amqp091": ["--workload", "request-reply", "--count", n(20000), "--window", "100",
                        "--reply-to", "direct"],
        }),
    ]


# Workloads a target cannot do, and why (shown in the table instead of a figure).
RABBIT_NO_DYNAMIC = ("RabbitMQ 3.10's AMQP 1.0 plugin never answers the attach of a dynamic"
                     " receiver (a temporary reply queue): no AMQP request-reply")
UNSUPPORTED = {
    ("rabbitmq", "amqp", "request-reply"): RABBIT_NO_DYNAMIC,
    ("rabbitmq", "amqp", "request-reply-100"): RABBIT_NO_DYNAMIC,
}


def run_matrix(builddir, scale, kinds, targets, rows=None):
    """targets: name -> dict(stomp=(host, port), amqp=(host, port), kafka=bootstrap,
    user=..., password=..., create_topic=fn, pid=fn). rows: the row ids to run (all: None)."""
    results = []
    for row_id, title, profile, per_kind in matrix(scale):
        if rows and row_id not in rows:
            continue
        for target_name, target_profiles in targets.items():
            target = target_profiles.get(profile) or target_profiles["throughput"]
            for kind, args in per_kind.items():
                if kind not in kinds or kind not in target["kinds"]:
                    continue
                why_not = UNSUPPORTED.get((target_name, kind, row_id))
                if why_not:
                    results.append({"row": row_id, "profile": profile, "target": target_name,
                                     "protocol": kind, "ok": True, "unsupported": why_not,
                                     "command": "(not run)"})
                    continue
                queue = f"bench-{row_id}-{kind}-{target_name}-{int(time.time() * 1000) % 10**9}"
                if target.get("create_topic") and "idle" not in row_id:
                    target["create_topic"](queue)
                full = ["--protocol", kind, "--target", target_name, "--queue", queue,
                        "--keys", str(KEYS)] + list(args)
                if kind == "kafka":
                    full += ["--bootstrap", target["kafka"]]
                    for side in ("producer", "consumer"):
                        for name, val in PROFILES[profile][side].items():
                            full += ["--kafka-property", f"{name}={val}"]
                else:
                    host, port = target[kind]
                    full += ["--host", host, "--port", str(port)]
                    if target.get("user"):
                        full += ["--user", target["user"], "--password", target["password"]]
                    elif kind == "amqp091":  # 0-9-1 always logs in (PLAIN)
                        full += ["--user", BENCH_USER, "--password", BENCH_PASSWORD]
                if row_id == "idle" and target.get("pid"):
                    full += ["--target-pid", str(target["pid"]())]
                pid = target["pid"]() if target.get("pid") else None
                cpu_before = process_cpu_seconds(pid)
                try:
                    result = run_bench(builddir, full)
                    cpu_after = process_cpu_seconds(pid)
                    if cpu_before is not None and cpu_after is not None and result.get("count"):
                        # the server's own CPU per message: steadier than a rate when
                        # the 2 cores are shared with the load generator
                        result["server_cpu_us_per_msg"] = \
                            (cpu_after - cpu_before) * 1e6 / result["count"]
                except Exception as e:  # a failed run is reported, never hidden
                    result = {"ok": False, "error": str(e), "command": " ".join(full),
                              "protocol": kind, "target": target_name}
                result["row"] = row_id
                result["profile"] = profile
                results.append(result)
    return results


# ---- the report -----------------------------------------------------------------------------

# A row more than this much worse than the baseline's is flagged (issue 12).
REGRESSION_LIMIT = 0.05


def find(results, row, target, protocol):
    for r in results:
        if r.get("row") == row and r.get("target") == target and r.get("protocol") == protocol:
            return r
    return None


def figure(r, row):
    if r is None:
        return "—"
    if r.get("unsupported"):
        return f"n/a ({r['unsupported']})"
    if not r.get("ok"):
        return f"FAILED ({r.get('error', 'verification')[:80]})"
    if row == "latency":
        return f"p50 {r['p50_ms']:.1f} / p99 {r['p99_ms']:.1f} / p99.9 {r['p999_ms']:.1f} / max {r['max_ms']:.1f} ms"
    if row.startswith("request-reply"):
        text = f"{r['msgs_per_sec']:,.0f} req/s"
        if "p50_ms" in r:
            text += f", p50 {r['p50_ms']:.1f} / p99 {r['p99_ms']:.1f} ms"
        return text
    if row == "idle":
        per = r.get("kib_per_connection")
        return f"{per:.1f} KiB/conn" if per is not None else "RSS not measured"
    return f"{r['msgs_per_sec']:,.0f} msg/s"


def value(r, row):
    if r is None or not r.get("ok") or r.get("unsupported"):
        return None
    if row == "latency":
        return r.get("p99_ms")
    if row == "idle":
        return r.get("kib_per_connection")
    return r.get("msgs_per_sec")


def median_runs(results):
    """One result per (row, target, protocol): with several runs, the run whose figure is
    the median (a failed run wins: failures are never hidden), with every run's figure in
    "runs" for the report."""
    groups = {}
    for r in results:
        groups.setdefault((r.get("row"), r.get("target"), r.get("protocol")), []).append(r)
    merged = []
    for (row, _, _), runs in groups.items():
        failed = [r for r in runs if not r.get("ok")]
        if failed or len(runs) == 1:
            merged.append(failed[0] if failed else runs[0])
            continue
        measured = [r for r in runs if value(r, row) is not None]
        if not measured:
            merged.append(runs[0])
            continue
        measured.sort(key=lambda r: value(r, row))
        chosen = dict(measured[(len(measured) - 1) // 2])
        chosen["runs"] = [value(r, row) for r in runs if value(r, row) is not None]
        merged.append(chosen)
    return merged


def ratio(a, b, lower_is_better=False):
    if a is None or b is None or a == 0 or b == 0:
        return "—"
    return f"{(b / a if lower_is_better else a / b):.2f}×"


def verification(r):
    if r is None:
        return "—"
    if "expected" not in r:
        return "n/a" if r.get("ok") else "FAILED"
    return (f"{r['received']:,}/{r['expected']:,} received, lost {r['lost']}, dup {r['duplicated']},"
            f" out of order {r['out_of_order']}")


def targets_section(results, have_rabbit):
    """Issue 6's targets, each with the figure it is judged by."""
    lines = ["| Target | Figure | Met? |", "| --- | --- | --- |"]

    def row(text, got, goal, ok):
        lines.append(f"| {text} | {got} | {'yes' if ok else ('**no** — ' + goal) if ok is False else 'not measured'} |")

    kafka_batched = value(find(results, "publish-batched", "kafka", "kafka"), "publish-batched")
    for proto in ("stomp", "amqp"):
        v = value(find(results, "publish-batched", "kbridge", proto), "publish-batched")
        ok = None if v is None or kafka_batched is None else v >= 0.5 * kafka_batched
        got = f"{v:,.0f} msg/s = {v / kafka_batched:.2f}× direct" if ok is not None else "—"
        row(f"batched-confirm publish ({proto.upper()}) ≥ 0.5× direct librdkafka", got,
            f"{0.5 * kafka_batched:,.0f} msg/s needed" if kafka_batched else "", ok)
    for row_id, profile_text in (("publish-each", ""),):
        for proto in ("stomp", "amqp"):
            v = value(find(results, row_id, "kbridge", proto), row_id)
            rv = value(find(results, row_id, "rabbitmq", proto), row_id) if have_rabbit else None
            ok = None if v is None or rv is None else v >= 10 * rv
            got = (f"{v:,.0f} msg/s = {v / rv:.1f}× RabbitMQ" if ok is not None else
                   (f"{v:,.0f} msg/s (RabbitMQ not run: `make bench-compare`)" if v else "—"))
            row(f"per-message-confirmed publish ({proto.upper()}{profile_text}) ≥ 10× RabbitMQ",
                got, "10× RabbitMQ", ok)
    kafka_consume = value(find(results, "consume", "kafka", "kafka"), "consume")
    for proto in ("stomp", "amqp"):
        v = value(find(results, "consume", "kbridge", proto), "consume")
        rv = value(find(results, "consume", "rabbitmq", proto), "consume") if have_rabbit else None
        ok_k = None if v is None or kafka_consume is None else v >= 0.5 * kafka_consume
        row(f"per-message-ack consume ({proto.upper()}) ≥ 0.5× direct librdkafka consumer",
            f"{v:,.0f} msg/s = {v / kafka_consume:.2f}× direct" if ok_k is not None else "—",
            "0.5× direct", ok_k)
        ok_r = None if v is None or rv is None else v >= 5 * rv
        row(f"per-message-ack consume ({proto.upper()}) ≥ 5× RabbitMQ",
            f"{v:,.0f} msg/s = {v / rv:.1f}× RabbitMQ" if ok_r is not None else
            "RabbitMQ not run" if v else "—", "5× RabbitMQ", ok_r)
    for proto in ("stomp", "amqp"):
        r = find(results, "latency", "kbridge", proto)
        v = value(r, "latency")
        row(f"end-to-end p99 ({proto.upper()}) ≤ 5 ms at 5,000 msg/s",
            f"p99 {v:.1f} ms" if v is not None else "—", f"{v - 5:.1f} ms over" if v else "",
            None if v is None else v <= 5.0)
    v = value(find(results, "idle", "kbridge", "stomp"), "idle")
    row("≤ 10 KiB RSS per idle STOMP connection (10,000 connections)",
        f"{v:.1f} KiB" if v is not None else "—", "10 KiB", None if v is None else v <= 10.0)
    return "\n".join(lines)


def latency_targets_section(results, have_rabbit):
    """Issue 19's targets, each with the figures it is judged by (this run's)."""
    lines = ["| Target | Figure | Met? |", "| --- | --- | --- |"]

    def ok_text(ok, goal):
        return "not measured" if ok is None else "yes" if ok else f"**no** — {goal}"

    hop = find(results, "request-reply", "kafka", "kafka")
    hop_p50 = hop.get("p50_ms") if hop and hop.get("ok") else None
    for proto in ("stomp", "amqp"):
        r = find(results, "request-reply", "kbridge", proto)
        p50 = r.get("p50_ms") if r and r.get("ok") else None
        goal = None if hop_p50 is None else max(1.0, hop_p50 + 0.3)
        ok = None if p50 is None or goal is None else p50 <= goal
        got = (f"p50 {p50:.2f} ms; direct hop p50 {hop_p50:.2f} ms" if ok is not None else "—")
        lines.append(f"| request-reply one at a time ({proto.upper()}) p50 ≤ max(1.0 ms, one "
                     f"direct produce→fetch hop + 0.3 ms) | {got} | "
                     f"{ok_text(ok, f'{goal:.2f} ms' if goal else '')} |")
    for proto in ("stomp",):
        v = value(find(results, "request-reply-100", "kbridge", proto), "request-reply-100")
        rv = (value(find(results, "request-reply-100", "rabbitmq", proto), "request-reply-100")
              if have_rabbit else None)
        ok = None if v is None or rv is None else v >= rv
        got = f"{v:,.0f} vs RabbitMQ {rv:,.0f} req/s" if ok is not None else "—"
        lines.append(f"| request-reply, 100 in flight ({proto.upper()}) ≥ RabbitMQ | {got} | "
                     f"{ok_text(ok, 'RabbitMQ' + chr(39) + 's req/s')} |")
    for row_id, proto, text in (("publish-receipt-100", "stomp",
                                 "publish, STOMP receipt every 100 (5,000 in flight)"),
                                ("publish-batched", "amqp", "publish, AMQP batched confirmations")):
        v = value(find(results, row_id, "kbridge", proto), row_id)
        d = value(find(results, row_id, "kafka", "kafka"), row_id)
        ok = None if v is None or d is None else v >= 0.5 * d
        got = f"{v:,.0f} msg/s = {v / d:.2f}× direct" if ok is not None else "—"
        lines.append(f"| {text} ≥ 0.5× direct librdkafka | {got} | "
                     f"{ok_text(ok, f'{0.5 * d:,.0f} msg/s' if d else '')} |")
    d = value(find(results, "consume", "kafka", "kafka"), "consume")
    for proto in ("stomp", "amqp"):
        v = value(find(results, "consume", "kbridge", proto), "consume")
        ok = None if v is None or d is None else v >= 0.5 * d
        got = f"{v:,.0f} msg/s = {v / d:.2f}× direct" if ok is not None else "—"
        lines.append(f"| consume, per-message ack, prefetch 100 ({proto.upper()}) ≥ 0.5× direct "
                     f"librdkafka | {got} | {ok_text(ok, f'{0.5 * d:,.0f} msg/s' if d else '')} |")
    direct = value(find(results, "latency", "kafka", "kafka"), "latency")
    for proto in ("stomp", "amqp", "amqp091"):
        v = value(find(results, "latency", "kbridge", proto), "latency")
        ok = None if v is None or direct is None else v <= 1.25 * direct
        got = (f"p99 {v:.1f} ms = {v / direct:.2f}× direct ({direct:.1f} ms)"
               if ok is not None else "—")
        lines.append(f"| end-to-end p99 at 5,000 msg/s ({proto.upper()}) ≤ 1.25× direct "
                     f"librdkafka | {got} | "
                     f"{ok_text(ok, f'{1.25 * direct:.1f} ms' if direct else '')} |")
    return "\n".join(lines)


def amqp091_section(results, have_rabbit):
    """AMQP 0-9-1 (issue 14): kbridge beside RabbitMQ's native protocol, and the targets."""
    header = ["Workload", "kbridge AMQP 0-9-1", "direct librdkafka", "0-9-1 ÷ direct"]
    if have_rabbit:
        header += ["RabbitMQ AMQP 0-9-1", "0-9-1 ÷ RabbitMQ"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row_id, title, _, per_kind in matrix(1.0):
        if "amqp091" not in per_kind:
            continue
        k = find(results, row_id, "kbridge", "amqp091")
        kk = find(results, row_id, "kafka", "kafka")
        low = row_id in ("latency", "idle")
        cells = [title, figure(k, row_id), figure(kk, row_id),
                 ratio(value(k, row_id), value(kk, row_id), low)]
        if have_rabbit:
            r = find(results, row_id, "rabbitmq", "amqp091")
            cells += [figure(r, row_id), ratio(value(k, row_id), value(r, row_id), low)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Issue 14's targets:", "", "| Target | Figure | Met? |", "| --- | --- | --- |"]
    for row_id, text, factor in (("publish-each", "confirmed publish, 1,000 in flight", 10),
                                 ("publish-batched", "confirmed publish, 10,000 in flight", 10),
                                 ("publish-sync", "confirmed publish, one at a time", 10),
                                 ("consume", "acked consume, prefetch 100", 5)):
        v = value(find(results, row_id, "kbridge", "amqp091"), row_id)
        rv = value(find(results, row_id, "rabbitmq", "amqp091"), row_id) if have_rabbit else None
        ok = None if v is None or rv is None else v >= factor * rv
        got = (f"{v:,.0f} msg/s = {v / rv:.1f}× RabbitMQ" if ok is not None else
               (f"{v:,.0f} msg/s (RabbitMQ not run: `make bench-compare`)" if v else "—"))
        verdict = "yes" if ok else "not measured" if ok is None else f"**no** — {factor}× RabbitMQ"
        lines.append(f"| {text} (AMQP 0-9-1) ≥ {factor}× RabbitMQ | {got} | {verdict} |")
    v = value(find(results, "latency", "kbridge", "amqp091"), "latency")
    verdict = "not measured" if v is None else "yes" if v <= 5.0 else f"**no** — {v - 5:.1f} ms over"
    lines.append(f"| end-to-end p99 (AMQP 0-9-1) ≤ 5 ms at 5,000 msg/s |"
                 f" {f'p99 {v:.1f} ms' if v is not None else '—'} | {verdict} |")
    return "\n".join(lines)


def spread(r, row):
    """The runs' range after a figure that is the median of several runs."""
    runs = (r or {}).get("runs")
    if not runs or len(runs) < 2:
        return ""
    unit = "ms" if row == "latency" else "KiB" if row == "idle" else "/s"
    fmt = (lambda v: f"{v:.1f}") if unit != "/s" else (lambda v: f"{v:,.0f}")
    return f" (median of {len(runs)}: {fmt(min(runs))}–{fmt(max(runs))}{unit})"


def cpu_text(r):
    cpu = (r or {}).get("server_cpu_us_per_msg")
    return f"{cpu:.1f}" if cpu is not None else "—"


def regression_section(results, baseline_label):
    """Each kbridge row next to the same row of the baseline build, and its change."""
    lines = [f"Old build: {baseline_label}. Each pair ran back to back (old first) with the same"
             f" kbridge-bench, on the same broker; a change worse than"
             f" {REGRESSION_LIMIT:.0%} is flagged **worse**. For latency and memory, lower is"
             " better (the change is of p99 and of KiB per connection).\n",
             "The last column is kbridged's own CPU time per message (request-reply: per"
             " request, both legs), before → after: steadier than a rate on a box whose 2 cores"
             " the load generator shares.\n",
             "| Workload | Protocol | Before | After | Change | Server CPU µs/msg |",
             "| --- | --- | --- | --- | --- | --- |"]
    worse = 0
    for row_id, title, _, _ in matrix(1.0):
        lower = row_id in ("latency", "idle")
        for proto in ("stomp", "amqp", "amqp091"):
            old = find(results, row_id, "kbridge-before", proto)
            new = find(results, row_id, "kbridge", proto)
            if old is None and new is None:
                continue
            a, b = value(old, row_id), value(new, row_id)
            if a is None or b is None or a == 0:
                change = "—"
            else:
                gain = (a - b) / a if lower else (b - a) / a
                change = f"{gain:+.1%}"
                if gain < -REGRESSION_LIMIT:
                    change += " **worse**"
                    worse += 1
            lines.append(f"| {title} | {proto.upper()} | {figure(old, row_id)}{spread(old, row_id)} |"
                         f" {figure(new, row_id)}{spread(new, row_id)} | {change} |"
                         f" {cpu_text(old)} → {cpu_text(new)} |")
    lines.append("")
    lines.append(f"Rows worse by more than {REGRESSION_LIMIT:.0%}: {worse}.")
    return "\n".join(lines)


def write_report(path, results, context, have_rabbit):
    rows = matrix(1.0)
    out = []
    out.append("# kbridge benchmarks\n")
    out.append("<!-- Generated by `make bench` / `make bench-compare` (tests/bench/run_bench.py)."
               " Do not edit by hand: the analysis comes from tests/bench/analysis.md. -->\n")
    out.append(f"Run on {context['date']} with `{context['command']}`.\n")
    out.append("Every figure below is one kbridge-bench run (its JSON line is at the end; with"
               " --repeat, the median of that many runs, their range beside it). Each run"
               " verifies what it measured: the consumer side checks that every message arrived,"
               " how many came twice and whether any key's order was broken; a failed"
               " verification shows as FAILED, never as a figure. Ratios are kbridge ÷ the"
               " reference (for latency and memory: reference ÷ kbridge, so > 1 means kbridge"
               " is better).\n")
    out.append("## Machine and versions\n")
    for key, val in context["machine"].items():
        out.append(f"- {key}: {val}")
    out.append("")
    out.append("## Results\n")
    header = ["Workload", "kbridge STOMP", "kbridge AMQP 1.0", "direct librdkafka",
              "STOMP ÷ direct", "AMQP ÷ direct"]
    if have_rabbit:
        header += ["RabbitMQ STOMP", "RabbitMQ AMQP 1.0", "STOMP ÷ RabbitMQ", "AMQP ÷ RabbitMQ"]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + " --- |" * len(header))
    for row_id, title, _, per_kind in rows:
        if not set(per_kind) & {"stomp", "amqp", "kafka"}:
            continue  # an AMQP 0-9-1 row: its own section
        ks = find(results, row_id, "kbridge", "stomp")
        ka = find(results, row_id, "kbridge", "amqp")
        kk = find(results, row_id, "kafka", "kafka")
        low = row_id in ("latency", "idle")
        cells = [title, figure(ks, row_id), figure(ka, row_id), figure(kk, row_id),
                 ratio(value(ks, row_id), value(kk, row_id), low),
                 ratio(value(ka, row_id), value(kk, row_id), low)]
        if have_rabbit:
            rs = find(results, row_id, "rabbitmq", "stomp")
            ra = find(results, row_id, "rabbitmq", "amqp")
            cells += [figure(rs, row_id), figure(ra, row_id),
                      ratio(value(ks, row_id), value(rs, row_id), low),
                      ratio(value(ka, row_id), value(ra, row_id), low)]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("## AMQP 0-9-1\n")
    out.append("kbridge-bench's 0-9-1 client is librabbitmq (rabbitmq-c): the queue declared"
               " durable, persistent messages to the default exchange, publisher confirms"
               " (`--confirm unsettled`: up to `--window` in flight; `each`: one at a time),"
               " consumers with basic.qos and one basic.ack per delivery; request-reply"
               " answers to a server-named exclusive reply queue. Beside RabbitMQ that is"
               " RabbitMQ's native protocol (a classic durable queue).\n")
    out.append(amqp091_section(results, have_rabbit))
    out.append("")
    if context.get("baseline"):
        out.append("## Before and after\n")
        out.append(regression_section(results, context["baseline"]))
        out.append("")
    out.append("## Targets (issue 6)\n")
    out.append(targets_section(results, have_rabbit))
    out.append("")
    out.append("## Targets (issue 19: latency, default configuration)\n")
    out.append("The direct reference of the request-reply rows is one produce→fetch hop at a"
               " time through the same broker (kbridge-bench's kafka request-reply: a ping over"
               " one topic, no responder), the hop a kbridge request takes; the reply to a"
               " temporary queue on the same node is delivered in memory.\n")
    out.append(latency_targets_section(results, have_rabbit))
    out.append("")
    out.append("## Verification\n")
    out.append("| Workload | Target | Protocol | Sent / confirmed | Consumer side |")
    out.append("| --- | --- | --- | --- | --- |")
    for r in results:
        if r.get("unsupported"):
            continue
        out.append(f"| {r.get('row')} | {r.get('target')} | {r.get('protocol')} | "
                   f"{r.get('sent', '—')} / {r.get('confirmed', '—')} | {verification(r)} |")
    out.append("")
    analysis = os.path.join(HERE, "analysis.md")
    if os.path.exists(analysis):
        with open(analysis) as f:
            out.append(f.read().rstrip() + "\n")
    out.append("## How to reproduce\n")
    out.append("```\n" + context["command"] + "\n```\n")
    out.append("Each row's exact kbridge-bench command and its summary line:\n")
    out.append("```")
    for r in results:
        if r.get("unsupported"):
            continue
        out.append("$ " + r.get("command", ""))
        out.append(json.dumps({k: v for k, v in r.items() if k not in ("command", "row", "profile")},
                              separators=(",", ":")))
    out.append("```")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def machine_context(builddir, rabbit_version):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
        cpu = m.group(1) if m else cpu
    with open("/proc/meminfo") as f:
        mem_kib = int(re.search(r"^MemTotal:\s+(\d+)", f.read(), re.M).group(1))
    kbridged = subprocess.run([os.path.join(builddir, "daemon", "kbridged"), "--version"],
                              capture_output=True, text=True).stdout.strip()

    def pkg(name):
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True,
                             text=True)
        return out.stdout.strip() or "not installed"

    try:
        debian = open("/etc/debian_version").read().strip()
    except OSError:
        debian = "unknown"
    machine = {
        "CPU": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{mem_kib / 1048576:.1f} GiB",
        "OS": f"Debian {debian}, Linux {platform.release()}",
        "kbridged": kbridged,
        "Kafka": "kbridge-devkafka (librdkafka's mock cluster, in memory, 1 broker,"
                 f" {PARTITIONS} partitions per topic)",
        "librdkafka": pkg("librdkafka1"),
        "Qpid Proton": pkg("libqpid-proton11"),
        "kbridged config": "tests/bench/kbridge-bench.yaml: the defaults (linger.ms 1;"
                           " fetch.wait.max.ms 5 on the dev broker) but for room for the idle"
                           " connections; the direct librdkafka runs use the same settings",
    }
    if rabbit_version:
        machine["RabbitMQ"] = f"{rabbit_version} (Debian rabbitmq-server {pkg('rabbitmq-server')},"\
                              " STOMP and AMQP 1.0 plugins, data in a temporary directory)"
    return machine


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builddir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--rabbitmq", action="store_true", help="also run against RabbitMQ")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply message counts (quick runs: 0.1)")
    parser.add_argument("--only", default="stomp,amqp,amqp091,kafka", help="protocols to run")
    parser.add_argument("--rows", help="only these rows (comma-separated ids: idle, "
                        "publish-batched, publish-each, publish-receipt-100, publish-sync, "
                        "publish-presettled, "
                        "consume, latency, request-reply, request-reply-100, request-reply-direct, "
                        "request-reply-direct-100)")
    parser.add_argument("--baseline", metavar="BUILDDIR",
                        help="also run every kbridge row against kbridged from this build")
    parser.add_argument("--baseline-label", default="the baseline build",
                        help="what the baseline build is, for the report")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every row (but idle) this many times, the builds interleaved,"
                        " and report each figure's median run (short rows vary by +-10%% from"
                        " run to run on 2 cores)")
    args = parser.parse_args()
    kinds = args.only.split(",")

    workdir = tempfile.mkdtemp(prefix="kbridge-bench-")
    devkafka = rabbit = None
    kbridgeds = []
    results = []
    try:
        devkafka = DevKafka(args.builddir)
        create_topic = lambda q: devkafka.command(f"topic create {q} {PARTITIONS}")  # noqa: E731
        def kbridge_targets(builddir, label):
            per_profile = {}
            for profile in PROFILES:
                daemon = Kbridged(builddir, devkafka.bootstrap, workdir, profile, label)
                kbridgeds.append(daemon)
                per_profile[profile] = {"kinds": ("stomp", "amqp", "amqp091"),
                                        "stomp": ("127.0.0.1", daemon.ports["stomp"]),
                                        "amqp": ("127.0.0.1", daemon.ports["amqp"]),
                                        "amqp091": ("127.0.0.1", daemon.ports["amqp"]),
                                        "create_topic": create_topic,
                                        "pid": (lambda d: lambda: d.proc.pid)(daemon)}
            return per_profile

        targets = {}
        if args.baseline:  # first in each row: the old build runs right before the new
            targets["kbridge-before"] = kbridge_targets(args.baseline, "-before")
        targets.update({
            "kbridge": kbridge_targets(args.builddir, ""),
            "kafka": {"throughput": {"kinds": ("kafka",), "kafka": devkafka.bootstrap,
                                     "create_topic": create_topic}},
        })
        rabbit_version = None
        rows = args.rows.split(",") if args.rows else None
        results = run_matrix(args.builddir, args.scale, kinds, targets, rows)
        for _ in range(args.repeat - 1):  # idle measures a fresh daemon: once
            again = [r for r in (rows or [m[0] for m in matrix(1.0)]) if r != "idle"]
            results += run_matrix(args.builddir, args.scale, kinds, targets, again)
        results = median_runs(results)
        if args.rabbitmq:
            # one at a time: an Erlang VM's schedulers spin and take CPU from
            # whatever runs beside them on 2 cores
            for daemon in kbridgeds:
                daemon.stop()
            kbridgeds = []
            rabbit = RabbitMQ(workdir)
            rabbit_version = rabbit.version
            rabbit_targets = {"rabbitmq": {"throughput": {
                "kinds": ("stomp", "amqp", "amqp091"),
                "stomp": ("127.0.0.1", rabbit.ports["stomp"]),
                "amqp": ("127.0.0.1", rabbit.ports["amqp"]),
                "amqp091": ("127.0.0.1", rabbit.ports["amqp"]), "user": "guest",
                "password": "guest", "pid": rabbit.pid}}}
            results += run_matrix(args.builddir, args.scale, kinds, rabbit_targets, rows)
        command = "make bench-compare" if args.rabbitmq else "make bench"
        if args.baseline:
            command = f"make bench-regression BASE='{args.baseline_label}'"
        extra = ([f"--scale {args.scale}"] if args.scale != 1.0 else []) + \
            ([f"--repeat {args.repeat}"] if args.repeat > 1 else []) + \
            ([f"--only {args.only}"] if args.only != "stomp,amqp,amqp091,kafka" else []) + \
            ([f"--rows {args.rows}"] if args.rows else [])
        if extra:
            command += f" BENCH_ARGS='{' '.join(extra)}'"
        context = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   "command": command,
                   "machine": machine_context(args.builddir, rabbit_version),
                   "baseline": args.baseline_label if args.baseline else None}
        write_report(args.output, results, context, args.rabbitmq)
        log(f"wrote {args.output}")
    finally:
        for thing in [rabbit] + kbridgeds + [devkafka]:
            if thing:
                try:
                    thing.stop()
                except Exception as e:
                    log(f"stopping: {e}")
        shutil.rmtree(workdir, ignore_errors=True)
    failed = [r for r in results if not r.get("ok")]
    for r in failed:
        log(f"FAILED: {r.get('command')}: {r.get('error', 'verification failed')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
