# SPDX-License-Identifier: Apache-2.0
"""Monitoring artefacts and structured logs (issue 18 item 5;
docs/operations.md "Monitoring").

- packaging/monitoring/kbridge-alerts.yml is a valid Prometheus rule file in
  shape (groups, rules with alert/expr/labels.severity/annotations.summary;
  `promtool check rules` too when promtool is installed), and every kbridge_*
  metric its expressions use is one kbridged registers (by name, in the
  daemon's sources) and, for those a fresh node exports without traffic,
  present in its /metrics.
- packaging/monitoring/kbridge-dashboard.json is Grafana JSON whose every
  target's kbridge_* metrics exist the same way.
- kbridge_ready follows /readyz.
- log.format json: every line kbridged writes is one JSON object with time,
  level, component and msg."""

import glob
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import EXTERNAL_BOOTSTRAP, base_config, wait_for

SRCDIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MONITORING = os.path.join(SRCDIR, "packaging", "monitoring")
SUFFIXES = ("_bucket", "_count", "_sum")


def registered_metrics():
    """Every "kbridge_..." string literal of the daemon's and adapters' C sources."""
    names = set()
    for path in glob.glob(os.path.join(SRCDIR, "daemon", "*.c")) + \
            glob.glob(os.path.join(SRCDIR, "adapters", "**", "*.c"), recursive=True):
        with open(path) as f:
            names.update(re.findall(r'"(kbridge_[a-z0-9_]+)"', f.read()))
    return names


def used_metrics(expressions):
    used = set()
    for expr in expressions:
        for name in re.findall(r"\b(kbridge_[a-z0-9_]+)", expr):
            for suffix in SUFFIXES:  # a histogram's series
                if name.endswith(suffix):
                    name = name[:-len(suffix)]
            used.add(name)
    return used


def exported(daemon):
    text = daemon.http("/metrics")[1]
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def test_alert_rules_are_well_formed_and_use_metrics_kbridged_has(kbridged_factory, bootstrap):
    path = os.path.join(MONITORING, "kbridge-alerts.yml")
    with open(path) as f:
        doc = yaml.safe_load(f)
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert {g["name"] for g in doc["groups"]} == {"kbridge"}
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)) >= 8
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
    used = used_metrics(rule["expr"] for rule in rules)
    missing = used - registered_metrics()
    assert not missing, f"rules use metrics kbridged does not have: {sorted(missing)}"
    # what a fresh node exports at once is there
    daemon = kbridged_factory(base_config(bootstrap))
    at_start = {"kbridge_ready", "kbridge_kafka_errors_total", "kbridge_kafka_delivery_errors_total",
                "kbridge_auth_failures_total", "kbridge_config_reload_failures_total"}
    assert at_start <= used
    assert at_start <= exported(daemon), sorted(at_start - exported(daemon))
    promtool = shutil.which("promtool")
    if promtool:
        result = subprocess.run([promtool, "check", "rules", path], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_grafana_dashboard_uses_metrics_kbridged_has():
    with open(os.path.join(MONITORING, "kbridge-dashboard.json")) as f:
        dashboard = json.load(f)
    assert dashboard["uid"] == "kbridge" and dashboard["schemaVersion"] >= 30
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 10
    expressions = [t["expr"] for p in panels for t in p["targets"]]
    assert all(e.count("(") == e.count(")") for e in expressions)
    used = used_metrics(expressions)
    assert "kbridge_destination_dead_lettered_total" in used
    missing = used - registered_metrics()
    assert not missing, f"the dashboard uses metrics kbridged does not have: {sorted(missing)}"


def metric_value(daemon, name):
    for line in daemon.http("/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


@pytest.mark.skipif(bool(EXTERNAL_BOOTSTRAP), reason="fault injection needs kbridge-devkafka")
def test_kbridge_ready_follows_readyz(kbridged_factory, devkafka):
    daemon = kbridged_factory(base_config(devkafka.bootstrap))
    assert daemon.http("/readyz")[0] == 200
    assert metric_value(daemon, "kbridge_ready") == 1.0
    assert devkafka.command("broker all down") == "ok"
    try:
        wait_for(lambda: daemon.http("/readyz")[0] == 503, 60, "/readyz 503 with Kafka down")
        assert metric_value(daemon, "kbridge_ready") == 0.0
    finally:
        assert devkafka.command("broker all up") == "ok"
    wait_for(lambda: metric_value(daemon, "kbridge_ready") == 1.0, 60, "kbridge_ready 1 again")


def test_json_logs_are_one_object_per_line(kbridged_factory, bootstrap):
    daemon = kbridged_factory(base_config(bootstrap, log={"format": "json"}))
    assert daemon.http("/readyz")[0] == 200
    lines = [line for line in daemon.log().splitlines() if line.strip()]
    assert len(lines) >= 5
    for line in lines:
        entry = json.loads(line)
        assert set(entry) >= {"time", "level", "component", "msg"}, entry
        assert entry["level"] in ("error", "warn", "info", "debug")
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", entry["time"]), entry["time"]
    assert any("listening on" in json.loads(line)["msg"] for line in lines)
