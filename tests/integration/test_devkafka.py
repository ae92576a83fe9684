# SPDX-License-Identifier: Apache-2.0
"""Integration tests of kbridge-devkafka, the standalone in-memory Kafka.

Starts the built binary ($KBRIDGE_BUILDDIR/daemon/kbridge-devkafka), reads
its bootstrap line, drives it through stdin commands and checks the effects
with real clients (kcat and confluent_kafka). All traffic is loopback.
Run with Debian's interpreter: /usr/bin/python3 -m pytest.
"""

import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("KBRIDGE_BUILDDIR", REPO_ROOT)
DEVKAFKA = os.path.join(BUILD_DIR, "daemon", "kbridge-devkafka")

START_TIMEOUT = 15.0
REPLY_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Poll predicate() until it returns a true value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class DevKafka:
    """One running kbridge-devkafka process."""

    def __init__(self, *args):
        if not os.access(DEVKAFKA, os.X_OK):
            pytest.fail(f"{DEVKAFKA} is not built (set KBRIDGE_BUILDDIR)")
        self.stderr_file = tempfile.NamedTemporaryFile(prefix="devkafka-", suffix=".log",
                                                       delete=False)
        self.proc = subprocess.Popen(
            [DEVKAFKA, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            text=True,
            bufsize=1,
        )
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read_stdout, daemon=True)
        self.reader.start()
        self.bootstrap = self._next_line(START_TIMEOUT, "the bootstrap line")

    def _read_stdout(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # EOF

    def _next_line(self, timeout, what):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {what} from kbridge-devkafka within {timeout}s; "
                                 f"stderr:\n{self.stderr()}") from None
        if line is None:
            raise AssertionError(f"kbridge-devkafka closed stdout before {what} "
                                 f"(exit {self.proc.poll()}); stderr:\n{self.stderr()}")
        return line

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def command(self, line):
        """Send one command and return its one-line reply."""
        self.send(line)
        return self._next_line(REPLY_TIMEOUT, f"reply to {line!r}")

    def no_pending_output(self):
        return self.lines.empty()

    def stderr(self):
        with open(self.stderr_file.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def terminate(self):
        """SIGTERM, then SIGKILL if it does not exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.reader.join(timeout=STOP_TIMEOUT)
        return self.proc.returncode

    def cleanup(self):
        self.terminate()
        self.stderr_file.close()
        os.unlink(self.stderr_file.name)


@pytest.fixture
def start_devkafka():
    """Factory: start_devkafka(*args) -> DevKafka; every process is stopped
    at teardown, whatever the test outcome."""
    started = []

    def start(*args):
        instance = DevKafka(*args)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.cleanup()


@pytest.fixture
def devkafka(start_devkafka):
    return start_devkafka()


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def producer(bootstrap, **extra):
    config = {"bootstrap.servers": bootstrap, "linger.ms": 0}
    config.update(extra)
    return Producer(config)


def produce_and_wait(prod, topic, value, key=None, headers=None, partition=None, timeout=30):
    """Produce one message; return the delivery error (None on success)."""
    results = []
    kwargs = {"key": key, "headers": headers, "on_delivery": lambda err, msg: results.append(err)}
    if partition is not None:
        kwargs["partition"] = partition
    prod.produce(topic, value, **kwargs)
    deadline = time.monotonic() + timeout
    while not results and time.monotonic() < deadline:
        prod.poll(0.1)
    assert results, f"no delivery report for {topic} within {timeout}s"
    return results[0]


def partition_count(bootstrap, topic):
    admin = producer(bootstrap)
    metadata = admin.list_topics(timeout=10)
    found = metadata.topics.get(topic)
    return 0 if found is None else len(found.partitions)


# ---------------------------------------------------------------- CLI


def test_version_and_help():
    out = subprocess.run([DEVKAFKA, "--version"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    assert out.stdout.startswith("kbridge-devkafka ")
    out = subprocess.run([DEVKAFKA, "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    assert "--brokers" in out.stdout and "--topic" in out.stdout


@pytest.mark.parametrize("args,mentions", [
    (["--bogus"], "'--bogus'"),
    (["--brokers", "0"], "--brokers"),
    (["--brokers"], "--brokers"),
    (["--partitions", "x"], "--partitions"),
    (["stray"], "'stray'"),
])
def test_bad_flags_exit_2(args, mentions):
    out = subprocess.run([DEVKAFKA, *args], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and mentions in lines[0], out.stderr


def test_brokers_and_start_topics(start_devkafka):
    dk = start_devkafka("--brokers", "3", "--partitions", "2", "--topic", "first:5",
                        "--topic", "second")
    servers = dk.bootstrap.split(",")
    assert len(servers) == 3
    assert all(s.startswith("127.0.0.1:") for s in servers)
    assert partition_count(dk.bootstrap, "first") == 5
    assert partition_count(dk.bootstrap, "second") == 2
    assert "3 brokers at " + dk.bootstrap + ", data in memory only" in dk.stderr()


# ---------------------------------------------------------------- data path


def test_kcat_round_trip_with_keys_and_headers(devkafka):
    topic = unique("kcat")
    assert devkafka.command(f"topic create {topic} 1") == "ok"
    produced = subprocess.run(
        ["kcat", "-b", devkafka.bootstrap, "-P", "-t", topic, "-K", ":",
         "-H", "trace=abc", "-H", "kind=test"],
        input="k1:first value\nk2:second value\n", capture_output=True, text=True, timeout=60)
    assert produced.returncode == 0, produced.stderr

    consumed = subprocess.run(
        ["kcat", "-b", devkafka.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
         "-f", "%k|%s|%h\n"],
        capture_output=True, text=True, timeout=60)
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == [
        "k1|first value|trace=abc,kind=test",
        "k2|second value|trace=abc,kind=test",
    ]


def test_confluent_kafka_group_round_trip_with_headers(devkafka):
    topic = unique("ck")
    assert devkafka.command(f"topic create {topic} 3") == "ok"
    prod = producer(devkafka.bootstrap)
    sent = {}
    for i in range(6):
        key = f"key-{i}".encode()
        value = f"value-{i}".encode()
        headers = [("index", str(i).encode()), ("origin", b"pytest")]
        sent[key] = (value, headers)
        prod.produce(topic, value, key=key, headers=headers)
    assert prod.flush(30) == 0

    consumer = Consumer({
        "bootstrap.servers": devkafka.bootstrap,
        "group.id": unique("group"),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    try:
        consumer.subscribe([topic])
        received = {}
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            received[msg.key()] = (msg.value(), msg.headers())
            consumer.commit(message=msg, asynchronous=False)
        assert received == sent
    finally:
        consumer.close()


def test_topic_create_partitions_in_metadata(devkafka):
    assert devkafka.command("topic create t 7") == "ok"
    assert partition_count(devkafka.bootstrap, "t") == 7
    assert devkafka.command("topic create t 7") == "error: topic 't' already exists"


# ---------------------------------------------------------------- faults


def test_retriable_produce_errors_are_absorbed(devkafka):
    topic = unique("retry")
    assert devkafka.command(f"topic create {topic} 1") == "ok"
    prod = producer(devkafka.bootstrap, **{"message.timeout.ms": 15000, "retry.backoff.ms": 50})
    assert devkafka.command("errors Produce 3 NOT_LEADER_FOR_PARTITION") == "ok"
    assert produce_and_wait(prod, topic, b"survives", partition=0) is None


def test_fatal_produce_error_reaches_client(devkafka):
    topic = unique("denied")
    assert devkafka.command(f"topic create {topic} 1") == "ok"
    prod = producer(devkafka.bootstrap, **{"message.timeout.ms": 10000})
    assert produce_and_wait(prod, topic, b"warm-up", partition=0) is None
    assert devkafka.command("errors produce 1 TOPIC_AUTHORIZATION_FAILED") == "ok"
    err = produce_and_wait(prod, topic, b"refused", partition=0)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_broker_down_then_up(devkafka):
    topic = unique("updown")
    assert devkafka.command(f"topic create {topic} 1") == "ok"
    prod = producer(devkafka.bootstrap, **{
        "message.timeout.ms": 2000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 250,
    })
    assert produce_and_wait(prod, topic, b"before", partition=0) is None

    assert devkafka.command("broker 1 down") == "ok"
    err = produce_and_wait(prod, topic, b"while down", partition=0)
    assert err is not None and err.code() == KafkaError._MSG_TIMED_OUT

    assert devkafka.command("broker 1 up") == "ok"
    wait_for(lambda: produce_and_wait(prod, topic, b"after", partition=0) is None,
             timeout=30, what="produce to succeed after broker 1 up")


def test_bad_commands_get_errors_and_comments_no_reply(devkafka):
    devkafka.send("# a comment")
    devkafka.send("")
    devkafka.send("   ")
    assert devkafka.command("ping") == "ok"
    assert devkafka.command("frobnicate") == (
        "error: unknown command 'frobnicate' (expected broker, errors, clear, topic, leader, "
        "coordinator or ping)")
    assert devkafka.command("broker 2 down") == "error: broker 2 does not exist (brokers are 1..1)"
    assert devkafka.command("errors Produce 3 NOPE").startswith("error: unknown error 'NOPE'")
    assert devkafka.command("errors Metadata 1 6").startswith(
        "error: cannot inject errors into Metadata")
    assert devkafka.command("leader nowhere 0 1") == "error: topic 'nowhere' does not exist"
    assert devkafka.command("x" * 5000) == "error: command longer than 4095 bytes"
    assert devkafka.command("ping") == "ok"
    assert devkafka.no_pending_output()


# ---------------------------------------------------------------- lifecycle


def test_sigterm_exits_zero(devkafka):
    assert devkafka.command("ping") == "ok"
    assert devkafka.terminate() == 0
    assert "SIGTERM received, stopping" in devkafka.stderr()


def test_sigint_exits_zero(devkafka):
    devkafka.proc.send_signal(signal.SIGINT)
    assert devkafka.proc.wait(timeout=STOP_TIMEOUT) == 0


def test_closing_stdin_keeps_running(devkafka):
    assert devkafka.command("topic create kept 2") == "ok"
    devkafka.proc.stdin.close()
    wait_for(lambda: "stdin closed" in devkafka.stderr(), timeout=10,
             what="the stdin-closed log line")
    assert devkafka.proc.poll() is None
    # still serving Kafka clients
    assert partition_count(devkafka.bootstrap, "kept") == 2
    assert devkafka.proc.poll() is None
    assert devkafka.terminate() == 0


def test_kcat_lists_all_brokers(start_devkafka):
    dk = start_devkafka("--brokers", "3")
    listed = subprocess.run(["kcat", "-b", dk.bootstrap, "-L"], capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "3 brokers:" in listed.stdout
