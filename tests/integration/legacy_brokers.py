# SPDX-License-Identifier: Apache-2.0
"""legacy_brokers.py -- legacy brokers the tests and benchmarks start on
loopback: RabbitMQ (Debian's rabbitmq-server, installed when absent) with
its STOMP and AMQP 1.0 plugins, and ActiveMQ (Debian's activemq, from
packaging/install-deps.sh --test) with a STOMP connector (Debian's activemq
5.17 has no AMQP transport: activemq-amqp and proton-j are not packaged, so
no AMQP connector); data in temporary directories, stopped by stop(). Used by
tests/bench/run_bench.py (make bench-compare), tests/integration/test_shovel.py
and test_shovel_amqp.py (RabbitMQ's AMQP 1.0 plugin on ports["amqp"])."""

import os
import signal
import socket
import subprocess
import sys

from conftest import free_port, wait_for


class RabbitMQ:
    """A RabbitMQ node of our own: loopback listeners, data in a temporary
    directory, STOMP and AMQP 1.0 plugins, stopped at the end."""

    def __init__(self, workdir, name="kbridge-bench"):
        ensure_rabbitmq_installed()
        self.base = os.path.join(workdir, "rabbitmq")
        os.makedirs(self.base, exist_ok=True)
        # an epmd of its own (ERL_EPMD_PORT): stop() kills it, which must not
        # touch the epmd of a node another test (xdist worker) is running
        self.ports = {"amqp": free_port(), "stomp": free_port(), "dist": free_port(),
                      "epmd": free_port()}
        self.node = f"{name}-{os.getpid()}@localhost"
        with open(os.path.join(self.base, "rabbitmq.conf"), "w") as f:
            f.write(f"listeners.tcp.1 = 127.0.0.1:{self.ports['amqp']}\n"
                    f"stomp.listeners.tcp.1 = 127.0.0.1:{self.ports['stomp']}\n"
                    "loopback_users = none\n")
        with open(os.path.join(self.base, "enabled_plugins"), "w") as f:
            f.write("[rabbitmq_stomp,rabbitmq_amqp1_0].\n")
        self.env = dict(os.environ,
                        RABBITMQ_NODENAME=self.node,
                        RABBITMQ_CONFIG_FILE=os.path.join(self.base, "rabbitmq"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.base, "enabled_plugins"),
                        RABBITMQ_MNESIA_BASE=os.path.join(self.base, "mnesia"),
                        RABBITMQ_LOG_BASE=os.path.join(self.base, "log"),
                        RABBITMQ_DIST_PORT=str(self.ports["dist"]),
                        ERL_EPMD_ADDRESS="127.0.0.1",
                        ERL_EPMD_PORT=str(self.ports["epmd"]),
                        RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
                        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface"
                                                            " {127,0,0,1}",
                        HOME=self.base)  # the Erlang cookie of server and CLI
        # the scripts themselves: /usr/sbin's wrappers switch to the rabbitmq
        # user and its home, whose cookie our CLI calls would not have
        self.bin = "/usr/lib/rabbitmq/bin"
        self.log_file = None
        self.start()

    def start(self):
        """Start the node (again, after stop(): same ports, same data)."""
        self.log_file = open(os.path.join(self.base, "server.out"), "a")
        self.proc = subprocess.Popen([f"{self.bin}/rabbitmq-server"], env=self.env,
                                     stdout=self.log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            # await_startup fails at once while the node is not registered yet
            wait_for(lambda: self.proc.poll() is None and
                     self.ctl("await_startup", "--timeout", "5").returncode == 0, 180,
                     "RabbitMQ to start")
        except BaseException:
            self.stop()  # no node left behind when the start fails
            raise
        self.version = self.ctl("version").stdout.strip()

    def ctl(self, *args):
        return subprocess.run([f"{self.bin}/rabbitmqctl", "-n", self.node] + list(args),
                              env=self.env, capture_output=True, text=True)

    def pid(self):
        return int(self.ctl("eval", "os:getpid().").stdout.strip().strip('"'))

    def stop(self, keep_epmd=False):
        """Stop the node (killed when it does not stop within 60 s); epmd too,
        unless the node is to be started again (keep_epmd)."""
        if self.proc.poll() is None:
            self.ctl("stop")
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if not keep_epmd:
            # this node's own epmd (its port), on loopback only
            subprocess.run(["epmd", "-port", str(self.ports["epmd"]), "-kill"], env=self.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.log_file.close()

    def queue_depth(self, name):
        """Messages in queue `name` (ready + unacknowledged), or None when it does not exist."""
        out = self.ctl("list_queues", "-q", "--no-table-headers", "name", "messages").stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == name:
                return int(parts[1])
        return None


def ensure_rabbitmq_installed():
    if os.path.exists("/usr/lib/rabbitmq/bin/rabbitmq-server"):
        return
    print("legacy_brokers: installing rabbitmq-server from Debian (its service is not started)", file=sys.stderr, flush=True)
    policy = "/usr/sbin/policy-rc.d"
    created = not os.path.exists(policy)
    if created:  # keep apt from starting the system service on 0.0.0.0
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "rabbitmq-server"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                       stdout=subprocess.DEVNULL)
    finally:
        if created:
            os.unlink(policy)


ACTIVEMQ_HOME = "/usr/share/activemq"

ACTIVEMQ_XML = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
    http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
    http://activemq.apache.org/schema/core
    http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false"
          brokerName="kbridge-test" dataDirectory="{data}">
    <persistenceAdapter><kahaDB directory="{data}/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}"/>
    </transportConnectors>
  </broker>
</beans>
"""


class ActiveMQ:
    """An ActiveMQ broker of our own (Debian's activemq package, run with its
    jar directly, not the system instance): one STOMP connector on loopback,
    KahaDB in a temporary directory, no JMX, stopped by stop()."""

    def __init__(self, workdir):
        if not os.path.exists(os.path.join(ACTIVEMQ_HOME, "bin", "activemq.jar")):
            raise AssertionError("ActiveMQ is not installed: packaging/install-deps.sh --test "
                                 "installs Debian's activemq")
        self.base = os.path.join(workdir, "activemq")
        self.conf = os.path.join(self.base, "conf")
        self.data = os.path.join(self.base, "data")
        os.makedirs(self.conf, exist_ok=True)
        os.makedirs(self.data, exist_ok=True)
        self.ports = {"stomp": free_port()}
        with open(os.path.join(self.conf, "activemq.xml"), "w") as f:
            f.write(ACTIVEMQ_XML.format(data=self.data, port=self.ports["stomp"]))
        self.log_file = open(os.path.join(self.base, "server.out"), "a")
        self.proc = subprocess.Popen(
            ["java", "-Xms64M", "-Xmx256M", "-Djava.awt.headless=true",
             f"-Dactivemq.classpath={self.conf}:{ACTIVEMQ_HOME}/lib/",
             f"-Dactivemq.home={ACTIVEMQ_HOME}", f"-Dactivemq.base={self.base}",
             f"-Dactivemq.conf={self.conf}", f"-Dactivemq.data={self.data}",
             "-jar", os.path.join(ACTIVEMQ_HOME, "bin", "activemq.jar"),
             "start", f"xbean:file:{self.conf}/activemq.xml"],
            cwd=self.base, stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            wait_for(lambda: self._stomp_up(), 120, "ActiveMQ's STOMP connector")
        except BaseException:
            self.stop()
            raise

    def _stomp_up(self):
        if self.proc.poll() is not None:
            with open(os.path.join(self.base, "server.out")) as f:
                raise AssertionError(f"ActiveMQ exited with {self.proc.returncode}:\n{f.read()}")
        try:
            socket.create_connection(("127.0.0.1", self.ports["stomp"]), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        """SIGTERM (ActiveMQ's shutdown hook stops the broker); killed after 60 s."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log_file.close()
