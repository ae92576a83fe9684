# SPDX-License-Identifier: Apache-2.0
"""bench_util.py -- what the Python bench scripts (exchange_cost, selector_cost,
tx_bench, soak, startup) share: the integration suite's helpers on the path,
pointed at a build tree, and a daemon's CPU time."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))

import conftest  # noqa: E402


def use_build(builddir):
    """Run kbridged and kbridge-devkafka from `builddir` (made absolute)."""
    builddir = os.path.abspath(builddir)
    conftest.KBRIDGED = os.path.join(builddir, "daemon", "kbridged")
    conftest.DEVKAFKA = os.path.join(builddir, "daemon", "kbridge-devkafka")
    return builddir


def daemon_cpu_seconds(daemon):
    """User + system CPU seconds of a running Kbridged (from /proc)."""
    with open(f"/proc/{daemon.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
