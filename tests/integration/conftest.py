# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the kbridge integration suite.

Every test gets its own Kafka and its own kbridged, on free loopback ports,
and both are always stopped, also when the test fails. When a test fails the
daemon's log is printed.

Kafka: by default a fresh `kbridge-devkafka` per test. With
KBRIDGE_TEST_BOOTSTRAP=host:port the suite uses that cluster instead; tests
that need fault injection (only the dev broker has it) ask for the
`devkafka` fixture directly.

Binaries come from KBRIDGE_BUILDDIR (set by `make integration`; default: the
repository root, for an in-tree build).
"""

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import uuid
import urllib.request

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILDDIR = os.environ.get("KBRIDGE_BUILDDIR", SRCDIR)
KBRIDGED = os.path.join(BUILDDIR, "daemon", "kbridged")
DEVKAFKA = os.path.join(BUILDDIR, "daemon", "kbridge-devkafka")
EXTERNAL_BOOTSTRAP = os.environ.get("KBRIDGE_TEST_BOOTSTRAP")



def wait_for(condition, timeout, what, interval=0.02):
    """Poll condition() until it returns a truthy value or timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def metrics(daemon):
    """/metrics as {series: value}."""
    status, text = daemon.http("/metrics")
    assert status == 200
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            values[series] = float(value)
    return values


def pika_connect(daemon, user, password):
    """A pika BlockingConnection to the daemon's AMQP listener (which must
    serve amqp091), one attempt, 10 s socket timeout."""
    import pika
    host, port = daemon.host_port("amqp")
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=host, port=port, credentials=pika.PlainCredentials(user, password),
        connection_attempts=1, socket_timeout=10))


def under_sanitizer(daemon):
    """Is kbridged built with AddressSanitizer or ThreadSanitizer? ASan keeps
    freed memory in quarantine and TSan grows its shadow memory and history
    with every allocation: under either, RSS says nothing about leaks."""
    with open(f"/proc/{daemon.proc.pid}/maps") as f:
        maps = f.read()
    return "libasan" in maps or "libtsan" in maps


class DevKafka:
    """A kbridge-devkafka process: a mock Kafka cluster with fault injection."""

    def __init__(self, brokers=1, partitions=4, topics=()):
        args = [DEVKAFKA, "--brokers", str(brokers), "--partitions", str(partitions)]
        for topic in topics:
            args += ["--topic", topic]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.bootstrap = self._read_line(10)
        if not re.match(r"^[\w.\-:\[\],]+$", self.bootstrap):
            raise AssertionError(f"kbridge-devkafka printed {self.bootstrap!r}, not a bootstrap list")

    def _read_line(self, timeout):
        import select
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError("kbridge-devkafka did not answer in time")
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()
            raise AssertionError(f"kbridge-devkafka exited: {err}")
        return line.strip()

    def command(self, line, timeout=10):
        """Send one fault-injection command; return its one-line reply."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read_line(timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass


class Kbridged:
    """A kbridged process with a config written from a dict."""

    def __init__(self, workdir, config, name="kbridged", wrapper=(), env=None, wait_ready=True,
                 ready_timeout=30):
        self.workdir = workdir
        self.name = name
        self.config = config
        self.config_path = os.path.join(workdir, f"{name}.yaml")
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.write_config(config)
        self.log_file = open(self.log_path, "w")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(list(wrapper) + [KBRIDGED, "-c", self.config_path],
                                     stdout=self.log_file, stderr=subprocess.STDOUT,
                                     env=full_env, cwd=workdir)
        self.addresses = {}
        expected = [p for p in ("stomp", "amqp", "http") if p in config.get("listeners", {})]
        wait_for(lambda: self._listeners_up(expected), ready_timeout, f"{name} listeners")
        if wait_ready and "http" in self.addresses:
            self.wait_ready(ready_timeout)

    def write_config(self, config):
        with open(self.config_path, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def _listeners_up(self, expected):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
        # text logs end the line after the address, JSON logs close a string
        for m in re.finditer(r"listener (\w+) listening on ([^\s\"]+)", self.log()):
            self.addresses[m.group(1)] = m.group(2)
        return all(p in self.addresses for p in expected)

    def host_port(self, protocol):
        host, _, port = self.addresses[protocol].rpartition(":")
        return host.strip("[]"), int(port)

    def http(self, path, timeout=5, auth=None, method="GET", body=None, headers=None):
        """A request on the ops listener: (status, body text). auth: (user,
        password) sent as HTTP basic (the admin API under /api/ needs it);
        body: a dict sent as JSON."""
        host, port = self.host_port("http")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://{host}:{port}{path}", data=data, method=method)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def api(self, path, method="GET", body=None, auth=None, **kwargs):
        """The admin API as ADMIN (or `auth`): (status, parsed JSON or None)."""
        status, text = self.http(path, auth=auth or ADMIN, method=method, body=body, **kwargs)
        try:
            return status, json.loads(text) if text.strip() else None
        except ValueError:
            return status, text

    def wait_ready(self, timeout=30):
        wait_for(lambda: self.http("/readyz")[0] == 200, timeout, f"{self.name} /readyz 200")

    def wait_log(self, pattern, timeout=15):
        return wait_for(lambda: re.search(pattern, self.log()), timeout, f"log line /{pattern}/")

    def signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not stop within {timeout}s")
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        self.kill()
        self.log_file.close()


def valgrind_wrapper(log_file):
    """The valgrind command line kbridged runs under in the valgrind tests:
    memory errors and definite/indirect leaks fail (exit 99). kbridged links
    jemalloc when it was found at build time; --soname-synonyms makes valgrind
    replace jemalloc's malloc as it does glibc's, so every allocation is seen."""
    supp = os.path.join(SRCDIR, "tests", "valgrind.supp")
    return ["valgrind", "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect", "--show-leak-kinds=definite,indirect",
            "--soname-synonyms=somalloc=*jemalloc*",
            f"--suppressions={supp}", f"--log-file={log_file}"]


ADMIN = ("kbridge-admin", "admin-secret")


def rabbit_hash(password, salt=b"kbr1"):
    """RabbitMQ's rabbit_password_hashing_sha256 hash (auth.users[].password_hash)."""
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def user_config(name, password, tags=(), consume=None, publish=None):
    """An auth.users entry with a hashed password."""
    user = {"name": name, "password_hash": rabbit_hash(password)}
    if tags:
        user["tags"] = list(tags)
    if consume:
        user["consume"] = list(consume)
    if publish:
        user["publish"] = list(publish)
    return user


def with_admin(config):
    """config with the ADMIN user (tag administrator, every ACL) added: the
    admin API under /api/ answers only authenticated users."""
    auth = config.setdefault("auth", {})
    auth["users"] = list(auth.get("users", [])) + [
        user_config(ADMIN[0], ADMIN[1], ["administrator"], [".*"], [".*"])]
    return config


def base_config(bootstrap, **sections):
    """A test config: loopback listeners on free ports, anonymous allowed."""
    config = {
        "node_id": "test1",
        "kafka": {"bootstrap": bootstrap},
        "listeners": {
            "stomp": {"bind": "127.0.0.1:0"},
            "amqp": {"bind": "127.0.0.1:0"},
            "http": {"bind": "127.0.0.1:0"},
        },
        "auth": {"anonymous": True},
        "log": {"level": "info"},
        "shutdown_grace": "5s",
    }
    # The status writer (architecture §9 "Cluster view") shares the node's
    # producer: its record every status.interval would take a Produce error a
    # fault test injects for a client's publish, and count in a test's
    # produced-minus-delivered figure. Tests write it once, at start (100 ms
    # in); tests of the cluster view set their own interval.
    config["status"] = {"interval": "10m"}
    if EXTERNAL_BOOTSTRAP:
        # A real cluster keeps kbridge.status across tests: nodes killed with
        # -9 by earlier tests would stay in this node's cluster view (and its
        # totals) until status.expiry. Tests of the view set their own topic.
        config["status"]["topic"] = f"kbridge.status.test-{uuid.uuid4().hex[:12]}"
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture
def devkafka():
    """A kbridge-devkafka of its own (fault injection needs it)."""
    dk = DevKafka()
    yield dk
    dk.stop()


@pytest.fixture
def bootstrap(request):
    """Bootstrap list of the Kafka this test uses."""
    if EXTERNAL_BOOTSTRAP:
        yield EXTERNAL_BOOTSTRAP
        return
    dk = DevKafka()
    yield dk.bootstrap
    dk.stop()


@pytest.fixture
def kbridged_factory(request, tmp_path):
    """Start kbridged processes; all are stopped at the end, logs shown on failure."""
    started = []

    def start(config, **kwargs):
        daemon = Kbridged(str(tmp_path), config, name=kwargs.pop("name", f"kbridged{len(started)}"),
                          **kwargs)
        started.append(daemon)
        return daemon

    yield start
    failed = any(getattr(request.node, f"rep_{w}", None) is not None
                 and getattr(request.node, f"rep_{w}").failed for w in ("setup", "call"))
    for daemon in started:
        daemon.close()
        if failed:
            print(f"\n----- {daemon.name} log -----\n{daemon.log()}")


@pytest.fixture
def kbridged(kbridged_factory, bootstrap):
    """One ready kbridged on the test's Kafka."""
    return kbridged_factory(base_config(bootstrap))


def free_port():
    """A loopback port that nothing listens on right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
