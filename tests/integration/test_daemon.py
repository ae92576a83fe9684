# SPDX-License-Identifier: Apache-2.0
"""kbridged as a process: command line, config errors, listeners, readiness,
ops HTTP, reload, drain, systemd notify, the embedded Kafka, valgrind."""

import json
import os
import re
import signal
import socket
import subprocess
import threading

import pytest

from conftest import KBRIDGED, SRCDIR, base_config, valgrind_wrapper, wait_for


def run(*args, timeout=30):
    return subprocess.run([KBRIDGED, *args], capture_output=True, text=True, timeout=timeout)


# ---- command line -----------------------------------------------------------

def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0
    assert re.fullmatch(r"kbridged \d+\.\d+\.\d+\n", r.stdout)
    r = run("--help")
    assert r.returncode == 0
    assert "--check-config FILE" in r.stdout and "SIGHUP" in r.stdout


def test_unknown_flag_is_one_line_and_exit_2():
    r = run("--frobnicate")
    assert r.returncode == 2
    assert r.stderr == "kbridged: unknown option '--frobnicate'; see kbridged --help\n"
    r = run("-c")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "needs a value" in r.stderr


def test_check_config_accepts_the_samples():
    for sample in ("kbridge.yaml", "kbridge-dev.yaml"):
        r = run("--check-config", os.path.join(SRCDIR, "conf", sample))
        assert r.returncode == 0, r.stderr
        assert "configuration is valid" in r.stdout


@pytest.mark.parametrize("text, where", [
    ("limits:\n  max_frame_size: 12XB\n", r":2: limits\.max_frame_size: "),
    ("listeners:\n  stomp:\n    bind: 127.0.0.1:61613\n  smtp: {}\n", r":4: listeners\.smtp: "),
    ("queues:\n  max_deliveries: banana\n", r":2: queues\.max_deliveries: "),
    ("stomp:\n  heartbeat_mn: 1s\n", r":2: stomp\.heartbeat_mn: unknown key"),
    ("auth:\n  users:\n    - {name: a, password_hash: '$6$x$y', publish: ['(']}\n",
     r":3: auth\.users.*publish"),
])
def test_check_config_rejects_bad_files_with_file_line_key(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    r = run("--check-config", str(path))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"kbridged: invalid configuration: {path}:")
    assert re.search(where, r.stderr), r.stderr


def test_config_reference_has_the_adapters_sections():
    r = run("--config-reference")
    assert r.returncode == 0
    assert "### `stomp.heartbeat_min`" in r.stdout and "### `stomp.nack_requeue`" in r.stdout
    assert "### `limits.heartbeat_min`" not in r.stdout


def test_unreadable_config_is_one_line_exit_2(tmp_path):
    missing = tmp_path / "nope.yaml"
    for args in (["--check-config", str(missing)], ["-c", str(missing)]):
        r = run(*args)
        assert r.returncode == 2
        assert r.stderr.count("\n") == 1
        assert str(missing) in r.stderr and "No such file or directory" in r.stderr


def test_port_in_use_is_one_line_exit_1(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        config = base_config("127.0.0.1:1", listeners={"stomp": {"bind": f"127.0.0.1:{port}"}})
        path = tmp_path / "k.yaml"
        import yaml
        path.write_text(yaml.safe_dump(config))
        r = run("-c", str(path))
        assert r.returncode == 1  # not a signal: no crash, no core
        lines = [l for l in r.stderr.splitlines() if " error " in l]
        assert len(lines) == 1, r.stderr
        assert f"listeners.stomp: cannot listen on 127.0.0.1:{port}: Address already in use" in lines[0]
    finally:
        taken.close()


# ---- a running daemon -----------------------------------------------------------

def test_health_ready_and_status(kbridged, bootstrap):
    assert kbridged.http("/healthz") == (200, "ok\n")
    assert kbridged.http("/readyz") == (200, "ready\n")
    status, body = kbridged.http("/api/status")
    assert status == 200
    doc = json.loads(body)
    assert doc["node_id"] == "test1"
    assert re.fullmatch(r"\d+\.\d+\.\d+", doc["version"])
    assert doc["kafka"] == {"bootstrap": bootstrap, "embedded": False, "ready": True,
                            "reason": "", "topic_prefix": ""}
    listeners = {l["protocol"]: l for l in doc["listeners"]}
    assert set(listeners) == {"stomp", "amqp", "http"}
    for protocol, listener in listeners.items():
        assert listener["bind"] == "127.0.0.1:0"
        assert listener["address"] == kbridged.addresses[protocol]
    assert kbridged.http("/nope")[0] == 404


def test_absent_listener_is_not_started(kbridged_factory, bootstrap):
    config = base_config(bootstrap)
    del config["listeners"]["amqp"]
    daemon = kbridged_factory(config)
    doc = json.loads(daemon.http("/api/status")[1])
    assert [l["protocol"] for l in doc["listeners"]] == ["stomp", "http"]
    assert "listener amqp" not in daemon.log()


def parse_metrics(text):
    """Prometheus text format -> {series: value}; checks HELP/TYPE come first."""
    values, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        series, value = line.rsplit(" ", 1)
        family = series.split("{")[0]
        for suffix in ("_bucket", "_sum", "_count"):  # a histogram's series
            if family.endswith(suffix) and family[:-len(suffix)] in typed:
                family = family[:-len(suffix)]
        assert family in typed, f"{series} has no TYPE line"
        values[series] = float(value)
    return values


def test_metrics_in_prometheus_format(kbridged):
    status, body = kbridged.http("/metrics")
    assert status == 200
    m = parse_metrics(body)
    for name in ("kbridge_uptime_seconds", "kbridge_kafka_produced_total",
                 "kbridge_kafka_delivered_total", "kbridge_kafka_delivery_errors_total",
                 "kbridge_kafka_errors_total", 'kbridge_connections{protocol="stomp"}',
                 'kbridge_connections{protocol="amqp"}', "kbridge_config_reloads_total"):
        assert name in m, name
    assert m["kbridge_uptime_seconds"] > 0
    assert m['kbridge_connections{protocol="stomp"}'] == 0


class Proxy:
    """A TCP forwarder on a reserved loopback port that refuses connections
    until open() is called: Kafka 'appearing' for any broker."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))  # bound, not listening: connects are refused
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.threads = []

    def open(self):
        self.sock.listen(16)
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:  # Kafka already gone at teardown
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                t.start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stopping = True
        self.sock.close()


def test_starts_without_kafka_and_becomes_ready_when_it_appears(kbridged_factory, bootstrap):
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    proxy = Proxy(host.strip("[]"), int(port))
    try:
        daemon = kbridged_factory(base_config(f"127.0.0.1:{proxy.port}"), wait_ready=False)
        status, body = wait_for(lambda: (lambda r: r if r[0] == 503 and "no metadata" in r[1]
                                         else None)(daemon.http("/readyz")), 15, "503 with a reason")
        assert body.startswith(f"not ready: no metadata from Kafka at 127.0.0.1:{proxy.port}: ")
        assert daemon.http("/healthz")[0] == 200  # alive, only not ready
        assert json.loads(daemon.http("/api/status")[1])["kafka"]["ready"] is False
        proxy.open()
        daemon.wait_ready(30)
        assert "ready: cluster metadata fetched" in daemon.log()
    finally:
        proxy.close()


def test_sighup_reloads_live_settings_and_survives_a_bad_file(kbridged):
    kbridged.config["log"]["level"] = "debug"
    kbridged.config["kafka"]["bootstrap"] = "127.0.0.1:1"  # restart-only: kept
    kbridged.write_config(kbridged.config)
    kbridged.signal(signal.SIGHUP)
    kbridged.wait_log(r"configuration reloaded from")
    assert re.search(r"kafka\.bootstrap changed; restart kbridged to apply it", kbridged.log())
    assert kbridged.http("/readyz")[0] == 200  # still on the old bootstrap
    m = parse_metrics(kbridged.http("/metrics")[1])
    assert m["kbridge_config_reloads_total"] == 1

    with open(kbridged.config_path, "w") as f:
        f.write("limits:\n  max_headers: -3\n")
    kbridged.signal(signal.SIGHUP)
    line = kbridged.wait_log(r"reload failed, keeping the running configuration: .*").group(0)
    assert f"{kbridged.config_path}:2: limits.max_headers" in line
    assert kbridged.http("/healthz")[0] == 200
    assert kbridged.proc.poll() is None
    m = parse_metrics(kbridged.http("/metrics")[1])
    assert m["kbridge_config_reload_failures_total"] == 1


def test_sigterm_drains_and_exits_0(kbridged):
    assert kbridged.stop() == 0
    log = kbridged.log()
    assert "SIGTERM: draining" in log
    assert "drained: every record confirmed by Kafka" in log
    assert log.rstrip().endswith("stopped")


def test_systemd_notify_ready_watchdog_reload_stopping(kbridged_factory, bootstrap, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    messages = []

    def received(text):
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except socket.timeout:
                break
        return any(text in m for m in messages)

    try:
        daemon = kbridged_factory(base_config(bootstrap),
                                  env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        wait_for(lambda: received("READY=1"), 10, "READY=1")
        wait_for(lambda: sum("WATCHDOG=1" in m for m in messages) >= 3 or received("@@"), 10,
                 "three WATCHDOG=1 pings")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: received("RELOADING=1"), 10, "RELOADING=1")
        wait_for(lambda: sum("READY=1" in m for m in messages) >= 2 or received("@@"), 10,
                 "READY=1 after reload")
        assert daemon.stop() == 0
        wait_for(lambda: received("STOPPING=1"), 10, "STOPPING=1")
        ready = [m for m in messages if "READY=1" in m]
        assert ready[0].startswith("READY=1\nSTATUS=")
    finally:
        sock.close()


def test_embedded_kafka_serves_kcat_and_confluent_kafka(kbridged_factory):
    from confluent_kafka import Consumer, Producer
    daemon = kbridged_factory(base_config("embedded"))
    doc = json.loads(daemon.http("/api/status")[1])
    assert doc["kafka"]["embedded"] is True
    assert "IN MEMORY ONLY" in daemon.log()
    embedded = doc["kafka"]["bootstrap"]
    assert embedded.startswith("127.0.0.1:")

    # kcat writes, confluent-kafka reads
    r = subprocess.run(["kcat", "-b", embedded, "-P", "-t", "embedded.kcat", "-K", ":",
                        "-H", "origin=kcat"], input="k1:hello\nk2:world\n", text=True,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    consumer = Consumer({"bootstrap.servers": embedded, "group.id": "t-embedded",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe(["embedded.kcat"])
    got = []
    wait_for(lambda: (lambda m: got.append(m) if m is not None and not m.error() else None)(
        consumer.poll(0.2)) or len(got) >= 2, 30, "two records via confluent-kafka")
    consumer.close()
    assert sorted((m.key(), m.value(), m.headers()) for m in got) == [
        (b"k1", b"hello", [("origin", b"kcat")]), (b"k2", b"world", [("origin", b"kcat")])]

    # confluent-kafka writes, kcat reads
    producer = Producer({"bootstrap.servers": embedded})
    producer.produce("embedded.ck", key=b"k3", value=b"from-ck", headers=[("origin", b"ck")])
    assert producer.flush(30) == 0
    r = subprocess.run(["kcat", "-b", embedded, "-C", "-t", "embedded.ck", "-e", "-q",
                        "-f", "%k=%s;%h\n"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "k3=from-ck;origin=ck\n"


@pytest.mark.valgrind
def test_valgrind_start_reload_shutdown_has_no_leaks(kbridged_factory, bootstrap, tmp_path):
    wrapper = valgrind_wrapper(f"{tmp_path}/valgrind.txt")
    daemon = kbridged_factory(base_config(bootstrap, kafka={"consumer": {"session.timeout.ms": 6000}}),
                              wrapper=wrapper, ready_timeout=120)
    # a STOMP round trip through the whole daemon: publish, queue, topic, ack
    from stomp_util import Client
    client = Client(daemon)
    client.subscribe("/topic/vg.prices", "t", receipt="t-ready", timeout=60)
    client.subscribe("/queue/vg.orders", "q", ack="client-individual")
    for i in range(20):
        client.send("/queue/vg.orders", f"order {i}", receipt=f"r{i}")
        client.send("/topic/vg.prices", f"price {i}")
    client.wait_receipt("r19", timeout=60)
    got = client.wait_messages(40, timeout=120)
    for frame in got:
        if frame.headers["subscription"] == "q":
            client.ack(frame)
    assert sorted(f.body for f in got if f.headers["subscription"] == "q") == sorted(
        f"order {i}" for i in range(20))
    client.close()
    # and an AMQP one: sends, a queue receiver with outcomes, a dynamic source, a refused
    # attach and a connection closed by garbage
    from proton import Message
    from proton.utils import LinkDetached
    from amqp_client import body_of, connect, receive_all
    conn = connect(daemon, timeout=120)
    sender = conn.create_sender("vg.amqp")
    for i in range(10):
        sender.send(Message(body=f"amqp {i}".encode(), properties={"n": i}))
    receiver = conn.create_receiver("vg.amqp", credit=5)
    assert sorted(body_of(m) for m in receive_all(receiver, 10, timeout=120)) == sorted(
        f"amqp {i}".encode() for i in range(10))
    replies = conn.create_receiver(None, dynamic=True, credit=5)
    conn.create_sender(replies.link.remote_source.address).send(Message(body=b"reply"))
    assert body_of(replies.receive(timeout=120)) == b"reply"
    with pytest.raises(LinkDetached):
        conn.create_sender("bad name!")
    conn.close()
    # request-reply through a STOMP temporary queue
    responder = Client(daemon)
    responder.subscribe("/queue/vg.rpc", "rpc", receipt="rpc-ready", timeout=60)
    requester = Client(daemon)
    requester.send("/queue/vg.rpc", "ping", headers={"reply-to": "/temp-queue/vg",
                                                     "correlation-id": "vg-1"})
    request = responder.wait_messages(1, timeout=120)[0]
    responder.send(request.headers["reply-to"], "pong", headers={"correlation-id": "vg-1"})
    reply = requester.wait_messages(1, timeout=120)[0]
    assert (reply.body, reply.headers["correlation-id"]) == ("pong", "vg-1")
    requester.close()
    responder.close()
    with socket.create_connection(daemon.host_port("amqp"), timeout=30) as raw:
        raw.sendall(b"AMQP\x00\x01\x00\x00\x00\x00\x00\x0c\x02\x00\x00\x00\x00\x53\x99\x45")
        wait_for(lambda: raw.recv(4096) == b"", 30, "the server to drop a garbage connection")
    daemon.signal(signal.SIGHUP)
    daemon.wait_log(r"configuration reloaded from", timeout=60)
    code = daemon.stop(timeout=120)
    report = open(f"{tmp_path}/valgrind.txt").read()
    assert code == 0, report[-4000:]
    assert "definitely lost: 0 bytes" in report or "All heap blocks were freed" in report, report[-4000:]
    assert "ERROR SUMMARY: 0 errors" in report, report[-4000:]
