# SPDX-License-Identifier: Apache-2.0
"""`processes: 2` (issue 19 item 4, architecture "Processes"): one kbridged
supervisor forks two workers, nodes test1-0 and test1-1, that share the client
ports with SO_REUSEPORT and serve the ops endpoint on port + i.

STOMP connections land on both workers (each worker's /metrics and
/api/status say so); a queue consumed from connections on both workers gets
every message exactly once; a temp-queue request-reply whose requester and
responder are on different workers works (the reply goes through the
requester worker's reply topic); SIGHUP reaches both workers (a user added by
the reload logs in on both, no restart-only warning); SIGTERM stops both
workers and the supervisor with 0; kill -9 of a worker makes the supervisor
start it again and clients connect to it; kill -9 of the supervisor takes the
workers along (no orphan); a worker that fails at every start
is restarted with a doubling back-off, then the supervisor gives up and exits
1; systemd hears READY=1, WATCHDOG=1, RELOADING=1 and STOPPING=1 only from the
supervisor, once for all workers; the supervisor has one thread; a config with
processes > 1 and the embedded Kafka is refused.

A connection's worker is found by opening it and waiting until one worker's
kbridge_connections{protocol="stomp"} gauge counts it."""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import (ADMIN, EXTERNAL_BOOTSTRAP, KBRIDGED, base_config, rabbit_hash, wait_for,
                      with_admin)
from stomp_util import Client
from test_stomp_queues import SESSION_TIMEOUT_MS

STOMP_GAUGE = 'kbridge_connections{protocol="stomp"}'


@pytest.fixture
def prefix():
    return f"pr{uuid.uuid4().hex[:8]}." if EXTERNAL_BOOTSTRAP else "pr."


def free_port_pair():
    """A loopback port p with p and p + 1 free right now (ops port + i)."""
    for _ in range(50):
        first = socket.socket()
        first.bind(("127.0.0.1", 0))
        port = first.getsockname()[1]
        second = socket.socket()
        try:
            second.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
        finally:
            first.close()
            second.close()
    raise AssertionError("no two adjacent free ports")


def processes_config(bootstrap, **sections):
    config = base_config(bootstrap, processes=2,
                         kafka={"consumer": {"session.timeout.ms": SESSION_TIMEOUT_MS}},
                         **sections)
    return config


class Workers:
    """The workers of one supervised kbridged, found in its log."""

    def __init__(self, daemon, count=2):
        self.daemon = daemon
        self.count = count
        wait_for(lambda: len(self.ops()) == count, 30, "every worker's ops listener")
        for node in self.nodes():
            wait_for(lambda: self.get(node, "/readyz")[0] == 200, 30, f"{node} /readyz 200")

    def nodes(self):
        return [f"test1-{i}" for i in range(self.count)]

    def ops(self):
        """{node: (host, port)} of each worker's ops listener, the latest line
        of each (a restarted worker binds again)."""
        found = {}
        for m in re.finditer(r"(test1-\d+) \[server\] listener http listening on (\S+)",
                             self.daemon.log()):
            host, _, port = m.group(2).rpartition(":")
            found[m.group(1)] = (host, int(port))
        return found

    def pids(self):
        """{index: pid} of the workers the supervisor started last."""
        found = {}
        for m in re.finditer(r"worker (\d+) started as node test1-\d+ \(pid (\d+)\)",
                             self.daemon.log()):
            found[int(m.group(1))] = int(m.group(2))
        return found

    def get(self, node, path):
        host, port = self.ops()[node]
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def metric(self, node, series):
        status, text = self.get(node, "/metrics")
        assert status == 200, f"{node} /metrics answered {status}"
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stomp_connections(self):
        return {node: self.metric(node, STOMP_GAUGE) for node in self.nodes()}

    def connect(self, **kwargs):
        """A STOMP Client and the node it landed on."""
        before = self.stomp_connections()
        client = Client(self.daemon, **kwargs)

        def landed():
            now = self.stomp_connections()
            grown = [n for n in now if now[n] > before[n]]
            return grown[0] if sum(now.values()) == sum(before.values()) + 1 and grown else None

        return client, wait_for(landed, 15, "the new connection in one worker's gauge")

    def connect_on_each(self, per_worker=1, limit=60, **kwargs):
        """Open connections until every worker holds `per_worker` of them:
        {node: [clients]} plus the extra clients opened on the way."""
        chosen = {node: [] for node in self.nodes()}
        extra = []
        for _ in range(limit):
            if all(len(c) >= per_worker for c in chosen.values()):
                return chosen, extra
            client, node = self.connect(**kwargs)
            (chosen[node] if len(chosen[node]) < per_worker else extra).append(client)
        raise AssertionError(f"{limit} connections did not reach every worker: "
                             f"{ {n: len(c) for n, c in chosen.items()} }")


def test_connections_spread_over_both_workers_each_with_its_ops_port(kbridged_factory,
                                                                    bootstrap):
    ops_port = free_port_pair()
    config = with_admin(processes_config(bootstrap, status={"interval": "500ms"}))
    config["listeners"]["http"]["bind"] = f"127.0.0.1:{ops_port}"
    daemon = kbridged_factory(config)
    workers = Workers(daemon)
    assert workers.ops() == {"test1-0": ("127.0.0.1", ops_port),
                             "test1-1": ("127.0.0.1", ops_port + 1)}
    for node in workers.nodes():
        status, text = workers.get(node, "/api/status")
        assert status == 200
        assert json.loads(text)["node_id"] == node
    # one port for STOMP, reserved by the supervisor and bound by both
    stomp = re.findall(r"(test1-\d) \[server\] listener stomp listening on (\S+)", daemon.log())
    assert sorted(n for n, _ in stomp) == ["test1-0", "test1-1"]
    assert len({a for _, a in stomp}) == 1
    assert re.search(rf"\[supervisor\] listeners\.stomp: {re.escape(stomp[0][1])} reserved for 2 "
                     r"workers", daemon.log())

    clients = []
    for _ in range(40):
        clients.append(Client(daemon))
    counts = wait_for(lambda: (lambda c: c if sum(c.values()) == 40 else None)(
        workers.stomp_connections()), 15, "40 connections counted")
    # SO_REUSEPORT hashes each connection's addresses: both get some (all
    # 40 on one worker has a chance of 2^-39)
    assert counts["test1-0"] > 0 and counts["test1-1"] > 0, counts

    # either worker's admin API shows the whole host (the status topic)
    def listed(node):
        host, port = workers.ops()[node]
        request = urllib.request.Request(f"http://{host}:{port}/api/connections")
        token = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=5) as r:
            stomp = [c for c in json.loads(r.read()) if c["protocol"] == "stomp"]
        by_node = {n: sum(1 for c in stomp if c["node"] == n) for n in workers.nodes()}
        return by_node if by_node == counts else None

    for node in workers.nodes():
        wait_for(lambda: listed(node), 15, f"{node}'s /api/connections listing both workers")
    for client in clients:
        client.close()
    wait_for(lambda: sum(workers.stomp_connections().values()) == 0, 15, "connections closed")

    # the supervisor is a single thread: forked before any Kafka handle or pool
    supervisor = daemon.proc.pid
    assert os.listdir(f"/proc/{supervisor}/task") == [str(supervisor)]


def test_a_queue_consumed_on_both_workers_gets_each_message_once(kbridged_factory, bootstrap,
                                                                 prefix):
    daemon = kbridged_factory(processes_config(bootstrap))
    workers = Workers(daemon)
    queue = f"{prefix}shared-{uuid.uuid4().hex[:6]}"
    consumers, extra = workers.connect_on_each(per_worker=2)
    for node, clients in consumers.items():
        for n, client in enumerate(clients):
            client.subscribe(f"/queue/{queue}", f"s{n}", ack="client-individual",
                             headers={"prefetch-count": "50"}, receipt=f"sub-{node}-{n}")
    for node in workers.nodes():
        daemon.wait_log(rf"{node} \[\w+\] consumer kbridge\.q\.{re.escape(queue)}: assigned "
                        r"[1-9]", timeout=60)

    count = 600
    producer = extra[0] if extra else Client(daemon)
    for i in range(count):
        producer.send(f"/queue/{queue}", f"m{i}", headers={"kafka-key": f"k{i}"},
                      receipt="sent" if i == count - 1 else None)
    producer.wait_receipt("sent")

    everyone = [c for clients in consumers.values() for c in clients]

    acked = {id(c): 0 for c in everyone}

    def received():
        """Ack what came (prefetch 50 holds the rest back); the total."""
        for client in everyone:
            frames = list(client.recorder.messages)
            for frame in frames[acked[id(client)]:]:
                client.conn.ack(frame.headers["ack"])
            acked[id(client)] = len(frames)
        return sum(acked.values())

    wait_for(lambda: received() >= count, 60, f"{count} deliveries")
    bodies = [f.body for c in everyone for f in c.recorder.messages]
    assert sorted(bodies) == sorted(f"m{i}" for i in range(count))  # each exactly once
    per_node = {node: sum(len(c.recorder.messages) for c in clients)
                for node, clients in consumers.items()}
    assert per_node["test1-0"] > 0 and per_node["test1-1"] > 0, per_node
    delivered = {node: workers.metric(
        node, f'kbridge_destination_delivered_total{{kind="queue",destination="{queue}"}}')
        for node in workers.nodes()}
    assert delivered == {node: float(n) for node, n in per_node.items()}, delivered
    for client in everyone + extra:
        client.close()


def test_request_reply_between_workers(kbridged_factory, bootstrap, prefix):
    daemon = kbridged_factory(processes_config(bootstrap))
    workers = Workers(daemon)
    queue = f"{prefix}rpc-{uuid.uuid4().hex[:6]}"
    chosen, extra = workers.connect_on_each()
    requester, responder = chosen["test1-0"][0], chosen["test1-1"][0]
    responder.subscribe(f"/queue/{queue}", "requests", receipt="responding")
    daemon.wait_log(rf"test1-1 \[\w+\] consumer kbridge\.q\.{re.escape(queue)}: assigned [1-9]",
                    timeout=60)

    count = 100
    for i in range(count):
        requester.send(f"/queue/{queue}", f"q{i}",
                       headers={"reply-to": "/temp-queue/answers", "correlation-id": f"c{i}"})
    requests = responder.wait_messages(count, timeout=60)
    for frame in requests:
        assert frame.headers["reply-to"].startswith("/reply-queue/")
        responder.send(frame.headers["reply-to"], "re:" + frame.body,
                       headers={"correlation-id": frame.headers["correlation-id"]})
    replies = requester.wait_messages(count, timeout=60)
    assert {f.headers["correlation-id"]: f.body for f in replies} == {
        f"c{i}": f"re:q{i}" for i in range(count)}
    assert all(f.headers["destination"] == "/temp-queue/answers" for f in replies)
    # the reply went to the requester's worker, through its reply topic
    assert workers.metric("test1-0", "kbridge_replies_routed_total") == count
    assert workers.metric("test1-1", "kbridge_replies_routed_total") == 0
    for client in [requester, responder] + extra:
        client.close()


def test_sighup_reaches_every_worker(kbridged_factory, bootstrap):
    config = processes_config(bootstrap)
    daemon = kbridged_factory(config)
    workers = Workers(daemon)
    config["auth"]["users"] = [{"name": "late", "password_hash": rabbit_hash("pw")}]
    daemon.write_config(config)
    daemon.signal(signal.SIGHUP)
    for node in workers.nodes():
        daemon.wait_log(rf"{node} \[config\] configuration reloaded from")
    assert re.search(r"\[supervisor\] SIGHUP: passed on to the workers", daemon.log())
    # a worker's node id and binds are its own, not a change to warn about
    assert "changed; restart kbridged" not in daemon.log()
    chosen, extra = workers.connect_on_each(login="late", passcode="pw")
    for client in [c for clients in chosen.values() for c in clients] + extra:
        assert client.conn.is_connected()
        client.close()


def test_sigterm_stops_both_workers_and_the_supervisor(kbridged_factory, bootstrap, prefix):
    daemon = kbridged_factory(processes_config(bootstrap))
    workers = Workers(daemon)
    pids = workers.pids()
    assert sorted(pids) == [0, 1]
    chosen, extra = workers.connect_on_each()
    queue = f"{prefix}stop-{uuid.uuid4().hex[:6]}"
    for node, clients in chosen.items():
        clients[0].send(f"/queue/{queue}", node, receipt=f"r-{node}")
        clients[0].wait_receipt(f"r-{node}")
    assert daemon.stop() == 0
    log = daemon.log()
    for i, node in enumerate(workers.nodes()):
        assert re.search(rf"{node} \[server\] SIGTERM: draining", log)
        assert re.search(rf"{node} \[server\] stopped", log)
        assert re.search(rf"\[supervisor\] worker {i} \(pid {pids[i]}\) exited with 0", log)
        assert not os.path.exists(f"/proc/{pids[i]}")
    assert re.search(r"\[supervisor\] stopped \(exit 0\)", log)
    for client in [c for clients in chosen.values() for c in clients] + extra:
        client.close()


def test_a_killed_worker_is_restarted_and_takes_connections(kbridged_factory, bootstrap, prefix):
    daemon = kbridged_factory(processes_config(bootstrap))
    workers = Workers(daemon)
    old = workers.pids()[0]
    os.kill(old, signal.SIGKILL)
    daemon.wait_log(rf"worker 0 \(pid {old}\) was killed by signal 9 unexpectedly: restarting it "
                    r"in \d+ ms")
    wait_for(lambda: workers.pids()[0] != old, 15, "worker 0 started again")
    new = workers.pids()[0]
    daemon.wait_log(rf"worker 0 \(pid {new}\) is ready")
    wait_for(lambda: workers.get("test1-0", "/readyz")[0] == 200, 30, "test1-0 ready again")
    assert os.path.exists(f"/proc/{workers.pids()[1]}")  # the other worker went on

    chosen, extra = workers.connect_on_each()
    queue = f"{prefix}after-{uuid.uuid4().hex[:6]}"
    client = chosen["test1-0"][0]
    client.subscribe(f"/queue/{queue}", "s", receipt="sub")
    client.send(f"/queue/{queue}", "after the restart", receipt="sent")
    client.wait_receipt("sent")
    assert client.wait_messages(1, timeout=60)[0].body == "after the restart"
    for c in [c for clients in chosen.values() for c in clients] + extra:
        c.close()
    assert daemon.stop() == 0


def test_a_killed_supervisor_takes_its_workers_along(kbridged_factory, bootstrap, prefix):
    daemon = kbridged_factory(processes_config(bootstrap))
    workers = Workers(daemon)
    pids = list(workers.pids().values())
    chosen, extra = workers.connect_on_each()
    queue = f"{prefix}orphan-{uuid.uuid4().hex[:6]}"
    for clients in chosen.values():  # a queue group on each worker
        clients[0].subscribe(f"/queue/{queue}", "s", receipt="sub")
    daemon.kill()
    wait_for(lambda: not any(os.path.exists(f"/proc/{p}") and
                             open(f"/proc/{p}/stat").read().split()[2] != "Z" for p in pids),
             15, "no worker left")
    for client in [c for clients in chosen.values() for c in clients] + extra:
        client.close()


def test_processes_need_a_shared_kafka(tmp_path):
    path = tmp_path / "k.yaml"
    path.write_text("node_id: test1\nprocesses: 2\nkafka: {bootstrap: embedded}\n"
                    "listeners: {stomp: {bind: '127.0.0.1:0'}}\n")
    checked = subprocess.run([KBRIDGED, "--check-config", str(path)], capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 2
    assert "processes: 2 processes need a Kafka they share" in checked.stderr
    started = subprocess.run([KBRIDGED, "-c", str(path)], capture_output=True, text=True,
                             timeout=30)
    assert started.returncode == 2
    assert "processes: 2 processes need a Kafka they share" in started.stderr


def test_systemd_hears_only_the_supervisor_for_all_workers(kbridged_factory, bootstrap,
                                                            tmp_path):
    """READY=1 once both workers are ready, WATCHDOG=1 while both ping,
    RELOADING=1 ... READY=1 around SIGHUP, STOPPING=1: all from the
    supervisor's pid (SCM_CREDENTIALS), never from a worker."""
    import struct
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(path)
    sock.settimeout(0.2)
    messages = []  # (pid, text)

    def receive():
        while True:
            try:
                data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                return messages
            pid = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:12])[0]
            messages.append((pid, data.decode()))

    def count(text):
        return sum(text in m for _, m in receive())

    try:
        daemon = kbridged_factory(processes_config(bootstrap),
                                  env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        Workers(daemon)
        wait_for(lambda: count("READY=1"), 10, "READY=1")
        assert re.search(r"\[supervisor\] all 2 workers are ready", daemon.log())
        wait_for(lambda: count("WATCHDOG=1") >= 3, 10, "three WATCHDOG=1 pings")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: count("RELOADING=1"), 10, "RELOADING=1")
        wait_for(lambda: count("READY=1") >= 2, 10, "READY=1 after the reload")
        for node in ("test1-0", "test1-1"):
            daemon.wait_log(rf"{node} \[config\] configuration reloaded from")
        assert daemon.stop() == 0
        wait_for(lambda: count("STOPPING=1"), 10, "STOPPING=1")
        ready = [m for _, m in messages if "READY=1" in m]
        assert ready == ["READY=1\nSTATUS=2 workers listening",
                         "READY=1\nSTATUS=2 workers listening; configuration reloaded"]
        assert {pid for pid, _ in messages} == {daemon.proc.pid}
    finally:
        sock.close()


def test_a_worker_that_keeps_failing_stops_the_supervisor_with_1(tmp_path, bootstrap):
    """Worker 1's ops port (port + 1) is taken: it fails at every start; the
    supervisor restarts it with a growing back-off, then gives up, stops
    worker 0 and exits 1."""
    ops_port = free_port_pair()
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    taken.bind(("127.0.0.1", ops_port + 1))
    taken.listen(1)
    config = processes_config(bootstrap)
    config["listeners"]["http"]["bind"] = f"127.0.0.1:{ops_port}"
    path = tmp_path / "k.yaml"
    import yaml
    path.write_text(yaml.safe_dump(config))
    try:
        started = subprocess.run([KBRIDGED, "-c", str(path)], capture_output=True, text=True,
                                 timeout=60)
    finally:
        taken.close()
    log = started.stderr
    assert started.returncode == 1, log
    delays = [int(d) for d in re.findall(
        r"worker 1 \(pid \d+\) exited with 1 unexpectedly: restarting it in (\d+) ms", log)]
    assert delays == [250, 500, 1000, 2000, 4000], log
    assert re.search(r"worker 1 \(pid \d+\) exited with 1, failure 6 in a row: giving up, "
                     r"stopping the other workers", log), log
    assert re.search(r"test1-1 \[server\] cannot start: .*127\.0\.0\.1:" + str(ops_port + 1), log)
    assert re.search(r"worker 0 \(pid \d+\) exited with 0", log), log
    assert re.search(r"\[supervisor\] stopped \(exit 1\)", log), log
