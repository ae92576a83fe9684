# SPDX-License-Identifier: Apache-2.0
"""kbridgectl against a live kbridged (issue 18 item 2, docs/operations.md
"kbridgectl"): tables and --json from the admin API, credentials from flags
or KBRIDGE_USER/KBRIDGE_PASSWORD, close, definitions export, hash-password,
and the exit codes scripts rely on."""

import json
import os
import subprocess
import uuid

import pytest

from conftest import ADMIN, BUILDDIR, base_config, user_config, with_admin
from stomp_util import Client

KBRIDGECTL = os.path.join(BUILDDIR, "daemon", "kbridgectl")
MONITOR = ("watcher", "watch-secret")


@pytest.fixture
def daemon(kbridged_factory, bootstrap):
    config = with_admin(base_config(bootstrap, queues={"linger": "0s"}))
    config["auth"]["users"] += [user_config(MONITOR[0], MONITOR[1], ["monitoring"]),
                                user_config("plain", "plain-secret", consume=[".*"],
                                            publish=[".*"])]
    return kbridged_factory(config)


def ctl(daemon, *args, auth=ADMIN, env=None, stdin=None):
    host, port = daemon.host_port("http")
    argv = [KBRIDGECTL, "--url", f"http://{host}:{port}"]
    if auth:
        argv += ["--user", auth[0], "--password", auth[1]]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KBRIDGE_")}
    full_env.update(env or {})
    return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=30,
                          env=full_env, input=stdin)


def test_status_and_lists(daemon):
    q = f"ctl.{uuid.uuid4().hex[:8]}"
    assert daemon.api(f"/api/queues/%2F/{q}", method="PUT", body={})[0] == 201
    client = Client(daemon)
    try:
        for i in range(5):
            client.send(f"/queue/{q}", f"m{i}", receipt=f"r{i}")
        for i in range(5):
            client.wait_receipt(f"r{i}")
        out = ctl(daemon, "status")
        assert out.returncode == 0, out.stderr
        assert "node:         test1" in out.stdout and "kafka ready:  true" in out.stdout
        assert "queues:       1" in out.stdout
        out = ctl(daemon, "list", "queues")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split() == ["vhost", "name", "messages", "consumers", "durable",
                                    "kbridge_group"]
        assert lines[1].split() == ["/", q, "5", "0", "true", f"kbridge.q.{q}"]
        out = ctl(daemon, "--json", "list", "queues")
        assert [(x["name"], x["messages"]) for x in json.loads(out.stdout)] == [(q, 5)]
        out = ctl(daemon, "list", "exchanges")
        assert any(line.split()[:3] == ["/", "amq.topic", "topic"]
                   for line in out.stdout.splitlines())
        out = ctl(daemon, "--json", "list", "bindings")
        assert out.returncode == 0 and json.loads(out.stdout) == []
        out = ctl(daemon, "list", "connections")
        assert out.returncode == 0
        assert [line.split()[1:3] for line in out.stdout.splitlines()[1:]] == [
            ["anonymous", "stomp"]]
        out = ctl(daemon, "purge", q, auth=MONITOR)
        assert out.returncode == 3
        out = ctl(daemon, "purge", q)
        assert out.returncode == 0 and out.stdout == f"purged {q} (5 message(s))\n"
        assert json.loads(ctl(daemon, "--json", "list", "queues").stdout)[0]["messages"] == 0
        out = ctl(daemon, "purge", "no-such-queue")
        assert out.returncode == 4 and "no queue 'no-such-queue'" in out.stderr
        # credentials from the environment
        out = ctl(daemon, "list", "queues", auth=None,
                  env={"KBRIDGE_USER": MONITOR[0], "KBRIDGE_PASSWORD": MONITOR[1]})
        assert out.returncode == 0, out.stderr
    finally:
        client.close()


def test_close_export_and_exit_codes(daemon):
    client = Client(daemon, login="plain", passcode="plain-secret")
    try:
        rows = json.loads(ctl(daemon, "--json", "list", "connections").stdout)
        name = [r["name"] for r in rows if r["user"] == "plain"][0]
        out = ctl(daemon, "close", name, auth=MONITOR)
        assert out.returncode == 3 and "HTTP 403" in out.stderr
        out = ctl(daemon, "close", name)
        assert out.returncode == 0 and out.stdout == f"closed {name}\n"
        client.wait_error()
        out = ctl(daemon, "close", name)
        assert out.returncode == 4 and "HTTP 404" in out.stderr
    finally:
        client.close()
    assert daemon.api("/api/queues/%2F/exported", method="PUT", body={})[0] == 201
    out = ctl(daemon, "export-definitions")
    assert out.returncode == 0
    # round trip: the export imports back (nothing new), and into a file kbridgectl reads
    path = os.path.join(daemon.workdir, "export.json")
    with open(path, "w") as f:
        f.write(out.stdout.replace('"exported"', '"imported"'))
    out = ctl(daemon, "import-definitions", path)
    assert out.returncode == 0 and out.stdout == f"imported {path}\n", out.stderr
    assert daemon.api("/api/queues/%2F/imported")[0] == 200
    out = ctl(daemon, "import-definitions", "/nonexistent.json")
    assert out.returncode == 1
    out = ctl(daemon, "export-definitions")
    assert out.returncode == 0
    assert [q["name"] for q in json.loads(out.stdout)["queues"]] == ["exported", "imported"]
    # no credentials, wrong ones, unreachable, usage
    out = ctl(daemon, "status", auth=None)
    assert out.returncode == 3 and "HTTP 401" in out.stderr
    out = ctl(daemon, "status", auth=(ADMIN[0], "wrong"))
    assert out.returncode == 3
    out = subprocess.run([KBRIDGECTL, "--url", "http://127.0.0.1:1", "status"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "cannot reach http://127.0.0.1:1" in out.stderr
    out = subprocess.run([KBRIDGECTL, "list", "nothing"], capture_output=True, text=True)
    assert out.returncode == 1
    out = subprocess.run([KBRIDGECTL, "frobnicate"], capture_output=True, text=True)
    assert out.returncode == 1 and "usage:" in out.stderr


def test_hash_password_makes_a_hash_kbridged_accepts(kbridged_factory, bootstrap):
    out = subprocess.run([KBRIDGECTL, "hash-password"], input="s3cret\n", capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    hashed = out.stdout.strip()
    assert hashed.startswith("$y$")
    config = base_config(bootstrap)
    config["auth"]["users"] = [{"name": "ops", "password_hash": hashed, "tags": ["monitoring"]}]
    daemon = kbridged_factory(config)
    assert ctl(daemon, "status", auth=("ops", "s3cret")).returncode == 0
    assert ctl(daemon, "status", auth=("ops", "s3cret2")).returncode == 3
