# SPDX-License-Identifier: Apache-2.0
"""AMQP 0-9-1 (issue 14) with more third-party clients than pika and amqplib
(test_amqp091.py), each from Debian (packaging/install-deps.sh --test):

- Bunny (ruby-bunny): confirmed publish, manual-ack consume, then its
  automatic connection recovery across a kbridged restart on the same port
  (channel, confirm mode, queue and consumer recovered; the second batch
  goes through the same objects);
- the RabbitMQ Java client (librabbitmq-client-java, compiled with javac at
  test time): confirmed publishing with waitForConfirmsOrDie, consume with
  basicQos and basicAck, properties and headers intact;
- Go's amqp091-go (golang-github-rabbitmq-amqp091-go-dev, built with
  GO111MODULE=off against /usr/share/gocode at test time): publisher confirms
  through NotifyPublish for every message, a mandatory unroutable message returned with
  312 NO_ROUTE (NotifyReturn), Qos and Ack;
- php-amqplib (php-amqplib, php-cli): AMQPLAIN login, publisher confirms
  through its ack/nack handlers and wait_for_pending_acks_returns, a
  mandatory unroutable message through its return listener, basic_qos and
  ack per delivery;
- pika at volume (the other pika cases are in test_amqp091.py): 10,000
  messages published with 1,000 confirms in flight (SelectConnection), every
  confirmed one in Kafka once and, with one routing key, in publish order;
- rabbitmq-c's amqp-tools: amqp-declare-queue, amqp-publish reading lines
  from a pipe (-l, one message a line, with content type and a header),
  amqp-consume piping each message to a command and acking it when the
  command succeeds.

Waits are deadline-based; nothing sleeps and hopes."""

import json
import os
import shutil
import subprocess

import pika
import pytest

from conftest import base_config, free_port
from test_amqp091 import KAFKA, PASSWORD, USER, drain_until, password_hash, pika_connect, uniq  # noqa: F401
from test_stomp_queues import header_dict, read_topic

CLIENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients")


def amqp091_config(bootstrap, password_hash, port=0):
    config = base_config(bootstrap, kafka=dict(KAFKA),
                         auth={"anonymous": False, "users": [
                             {"name": USER, "password_hash": password_hash,
                              "publish": [".*"], "consume": [".*"]}]})
    config["listeners"]["amqp"] = {"bind": f"127.0.0.1:{port}", "protocols": ["amqp", "amqp091"]}
    return config


@pytest.fixture
def daemon(kbridged_factory, bootstrap, password_hash):  # noqa: F811
    return kbridged_factory(amqp091_config(bootstrap, password_hash))


def url(daemon):
    host, port = daemon.host_port("amqp")
    return f"amqp://{USER}:{PASSWORD}@{host}:{port}"


def need(program, package):
    path = shutil.which(program)
    assert path, f"{program} is not installed ({package}): run packaging/install-deps.sh --test"
    return path


def test_bunny_round_trip_and_automatic_recovery_after_a_restart(kbridged_factory, bootstrap,
                                                                 password_hash, uniq):  # noqa: F811
    ruby = need("ruby", "ruby-bunny")
    port = free_port()  # the restarted kbridged listens where Bunny reconnects
    config = amqp091_config(bootstrap, password_hash, port)
    first = kbridged_factory(config, name="before-restart")
    queue, count = f"bunny{uniq}", 50
    proc = subprocess.Popen([ruby, os.path.join(CLIENTS, "bunny_recovery.rb"), url(first), queue,
                             str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=CLIENTS)
    try:
        line = proc.stdout.readline()  # Bunny's own deadlines bound this read
        assert line.startswith("phase1 "), line + proc.stderr.read()
        phase1 = json.loads(line.split(" ", 1)[1])
        assert phase1 == {"received": count, "redelivered": 0}
        assert first.stop() == 0  # a clean restart: every ack is committed first
        second = kbridged_factory(config, name="after-restart")
        proc.stdin.write("restarted\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    done = json.loads(out.strip().splitlines()[-1].split(" ", 1)[1])
    expected = [f"before {i}" for i in range(count)] + [f"after {i}" for i in range(count)]
    assert sorted(done["received"]) == sorted(expected)  # each once, none lost
    assert done["redelivered"] == 0
    assert done["content_types"] == ["text/plain"]
    assert second.proc.poll() is None


def test_java_client_publisher_confirms_and_acked_consume(daemon, uniq, tmp_path):
    javac = need("javac", "default-jdk-headless")
    java = need("java", "default-jdk-headless")
    jars = ["/usr/share/java/amqp-client.jar", "/usr/share/java/slf4j-api.jar"]
    for jar in jars:
        assert os.path.exists(jar), f"{jar} is missing (librabbitmq-client-java)"
    classpath = ":".join(jars)
    subprocess.run([javac, "-d", str(tmp_path), "-cp", classpath,
                    os.path.join(CLIENTS, "PublishConfirm.java")], check=True, timeout=120)
    count = 500
    result = subprocess.run([java, "-cp", f"{classpath}:{tmp_path}", "PublishConfirm", url(daemon),
                             f"java{uniq}", str(count)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["confirmed"] == count
    assert summary["all"] is True and summary["received"] == count
    assert summary["redelivered"] == 0
    body, content_type, message_id, correlation_id, mode, header = summary["first"]
    n = body.rsplit(" ", 1)[1]
    assert body == f"java message {n}"
    assert (content_type, message_id, correlation_id, mode, header) == \
        ("text/plain", f"java-{n}", f"corr-{n}", "2", "java")
    # the acks were processed: nothing is left for another consumer
    conn = pika_connect(daemon)
    ch = conn.channel()
    leftover = []
    ch.basic_consume(f"java{uniq}", lambda c, m, p, b: leftover.append(b), auto_ack=True)
    conn.process_data_events(time_limit=3)  # a bounded look for strays, not a wait for one
    assert leftover == []
    conn.close()


def test_amqp_tools_pipe_lines_in_and_each_message_to_a_command(daemon, uniq, tmp_path):
    publish = need("amqp-publish", "amqp-tools")
    consume = need("amqp-consume", "amqp-tools")
    declare = need("amqp-declare-queue", "amqp-tools")
    queue, count = f"tools{uniq}", 20
    subprocess.run([declare, "-u", url(daemon), "-d", "-q", queue], check=True, timeout=30,
                   capture_output=True)
    lines = "".join(f"line {i}\n" for i in range(count))
    subprocess.run([publish, "-u", url(daemon), "-r", queue, "-l", "-p", "-C", "text/plain",
                    "-H", "origin: amqp-tools"], input=lines, text=True, check=True, timeout=30)

    # amqp-consume runs the command once per message, the body on its stdin,
    # and acks the message when the command exits 0; amqp-publish -l keeps
    # each line's newline in its body
    out = tmp_path / "out"
    result = subprocess.run([consume, "-u", url(daemon), "-q", queue, "-c", str(count), "-p", "5",
                             "--", "sh", "-c", f"cat >> {out}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(out.read_text().splitlines()) == sorted(f"line {i}" for i in range(count))

    # properties made it; and every message was acked (nothing left to deliver)
    subprocess.run([publish, "-u", url(daemon), "-r", queue, "-b", "last", "-C", "text/plain",
                    "-H", "origin: amqp-tools"], check=True, timeout=30)
    conn = pika_connect(daemon)
    ch = conn.channel()
    got = []
    ch.basic_consume(queue, lambda c, m, p, b: got.append((p, b)), auto_ack=True)
    drain_until(conn, lambda: got, 30, "the last message")
    props, body = got[0]
    assert body == b"last"
    assert props.content_type == "text/plain"
    assert props.headers["origin"] == "amqp-tools"
    conn.process_data_events(time_limit=2)  # a bounded look for strays after the last one
    assert [b for _, b in got] == [b"last"]
    conn.close()


def test_go_amqp091_confirms_returns_and_acked_consume(daemon, uniq, tmp_path):
    go = need("go", "golang-go")
    source = "/usr/share/gocode/src/github.com/rabbitmq/amqp091-go"
    assert os.path.isdir(source), "amqp091-go is missing (golang-github-rabbitmq-amqp091-go-dev)"
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="",
               GOCACHE=str(tmp_path / "gocache"), HOME=str(tmp_path))
    program = str(tmp_path / "roundtrip")
    subprocess.run([go, "build", "-o", program, os.path.join(CLIENTS, "amqp091_go_roundtrip.go")],
                   check=True, timeout=300, env=env, cwd=str(tmp_path))
    count = 300
    result = subprocess.run([program, url(daemon), f"go{uniq}", str(count)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary == {"confirmed": count, "received": count, "redelivered": 0,
                       "properties_intact": count, "returned_code": 312,
                       "returned_text": "NO_ROUTE", "returned_body": "unroutable"}


def test_php_amqplib_amqplain_confirm_handlers_return_listener_and_acks(daemon, uniq):
    php = need("php", "php-cli")
    assert os.path.exists("/usr/share/php/PhpAmqpLib/autoload.php"), "php-amqplib is missing"
    host, port = daemon.host_port("amqp")
    count = 200
    result = subprocess.run([php, os.path.join(CLIENTS, "phpamqplib_roundtrip.php"), host,
                             str(port), USER, PASSWORD, f"php{uniq}", str(count)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary == {"confirmed": count + 1, "nacked": 0,  # the returned one is acked too
                       "returned": [312, "NO_ROUTE", "unroutable"],
                       "received": count, "intact": count}


# ---- pika at volume: 10,000 publisher confirms, 1,000 in flight ------------------------------

def publish_confirmed(daemon, exchange, routing_key, bodies, window=1000, timeout=120):
    """pika's asynchronous SelectConnection: confirm.select, then basic.publish
    with at most `window` unconfirmed, each basic.ack/nack (also `multiple`)
    settling its tags. Returns (acked, nacked) as sets of body indexes."""
    host, port = daemon.host_port("amqp")
    params = pika.ConnectionParameters(host=host, port=port,
                                       credentials=pika.PlainCredentials(USER, PASSWORD),
                                       connection_attempts=1)
    state = {"next": 0, "tag": 0, "pending": {}, "acked": set(), "nacked": set(),
             "channel": None, "error": None}

    def pump():
        ch = state["channel"]
        while state["next"] < len(bodies) and len(state["pending"]) < window:
            i = state["next"]
            ch.basic_publish(exchange, routing_key, bodies[i],
                             pika.BasicProperties(delivery_mode=2, message_id=f"v{i}"))
            state["tag"] += 1
            state["pending"][state["tag"]] = i
            state["next"] += 1
        if state["next"] == len(bodies) and not state["pending"]:
            conn.close()

    def on_confirm(frame):
        m = frame.method
        done = state["acked"] if isinstance(m, pika.spec.Basic.Ack) else state["nacked"]
        tags = [t for t in state["pending"] if t <= m.delivery_tag] if m.multiple \
            else [m.delivery_tag]
        for t in tags:
            done.add(state["pending"].pop(t))
        pump()

    def on_channel(ch):
        state["channel"] = ch
        ch.add_on_close_callback(lambda c, reason: state.update(error=reason) or conn.close())
        ch.confirm_delivery(on_confirm, callback=lambda _: pump())

    def on_timeout():
        state["error"] = f"timed out: {len(state['acked'])} of {len(bodies)} confirmed"
        conn.close()

    conn = pika.SelectConnection(params, on_open_callback=lambda c: c.channel(
        on_open_callback=on_channel), on_open_error_callback=lambda c, e: state.update(error=e)
        or c.ioloop.stop(), on_close_callback=lambda c, reason: c.ioloop.stop())
    conn.ioloop.call_later(timeout, on_timeout)
    conn.ioloop.start()
    assert state["error"] is None or (state["next"] == len(bodies) and not state["pending"]), \
        state["error"]
    return state["acked"], state["nacked"]


def test_pika_publishes_10000_with_confirms_and_every_confirmed_one_is_in_kafka(daemon, bootstrap,
                                                                              uniq):
    count = 10000
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.exchange_declare(f"volume{uniq}", exchange_type="direct", durable=True)
    ch.queue_declare(f"volume-q{uniq}", durable=True)
    ch.queue_bind(f"volume-q{uniq}", f"volume{uniq}", routing_key="k")
    conn.close()
    bodies = [f"volume {i}".encode() for i in range(count)]
    acked, nacked = publish_confirmed(daemon, f"volume{uniq}", "k", bodies)
    assert len(acked) == count and not nacked
    records = read_topic(bootstrap, f"volume{uniq}")
    stored = [r.value() for r in records]
    assert len(stored) == count  # once each: the idempotent producer
    assert sorted(stored) == sorted(bodies)
    # one routing key: one partition, in publish order
    assert stored == bodies
    ids = [header_dict(r.headers())["message-id"] for r in records]
    assert ids == [f"v{i}" for i in range(count)]
