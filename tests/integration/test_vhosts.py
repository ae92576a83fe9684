# SPDX-License-Identifier: Apache-2.0
"""Vhosts for clients (issues 13 and 14; architecture §11 "Vhosts"): with
`vhosts: {sales: {}}` in the config,

- a pika application on vhost `sales` declares queue `orders`, publishes and
  consumes; a pika application on `/` with the same queue name sees nothing
  of it and the other way round: two queues, two Kafka topics
  (`sales.orders` under the vhost's prefix, `orders` under `/`'s) and two
  consumer groups (`kbridge.v.sales/q.orders`, `kbridge.q.orders`);
- an unknown vhost is connection.close 530 NOT_ALLOWED "vhost x not found"
  over 0-9-1 and amqp:not-found over AMQP 1.0;
- STOMP's CONNECT `host: sales` and AMQP 1.0's open hostname `vhost:sales`
  reach the same queue as pika's `sales`; STOMP with the host name stomp.py
  sends by default (`127.0.0.1`) is in `/`;
- the admin API lists each queue with its vhost and group and answers
  `/api/queues/sales/NAME` with its depth;
- per-user vhost permissions (`auth.users[].vhosts: [sales]`): pika to
  `sales` works and to `/` is 530 "NOT_ALLOWED - access to vhost '/' refused
  for user 'seller'"; STOMP without a host naming a vhost (so `/`) is an ERROR
  naming both; AMQP 1.0 without `vhost:sales` is amqp:unauthorized-access; a
  user without `vhosts` reaches both; a SIGHUP taking `sales` from the list
  closes the user's open `sales` connections on every protocol;
- users and permissions imported from a RabbitMQ export
  (`definitions.import_users`): the user logs in with its RabbitMQ password
  hash, its configure/write/read patterns apply per vhost over 0-9-1, STOMP
  and AMQP 1.0, `/api/permissions` shows them, and a reload re-reads the file.

Waits are deadline-based (wait_for, pika's own I/O loop with a deadline)."""

import json
import signal
import subprocess
import time
import uuid

import pika
import pytest
import stomp
from proton import Message
from proton.utils import BlockingConnection

from amqp_client import amqp_url
from conftest import (ADMIN, EXTERNAL_BOOTSTRAP, base_config, metrics, rabbit_hash, user_config,
                      wait_for, with_admin)
from stomp_util import Recorder
from test_amqp091_errors import raw_open
from test_auth_reload import amqp_closed_with, pika_closed_with
from test_stomp_errors import run_bad_connect
from test_stomp_queues import read_topic

USER, PASSWORD = "app", "secret"
VHOST = "sales"


@pytest.fixture(scope="module")
def password_hash():
    return subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def uniq():
    return f"-{uuid.uuid4().hex[:10]}" if EXTERNAL_BOOTSTRAP else f"-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def daemon(kbridged_factory, bootstrap, password_hash):
    config = with_admin(base_config(
        bootstrap, kafka={"consumer": {"session.timeout.ms": 6000}},
        auth={"anonymous": True, "users": [
            {"name": USER, "password_hash": password_hash,
             "publish": [".*"], "consume": [".*"]}]},
        vhosts={VHOST: {}}))
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    return kbridged_factory(config)


def pika_connect(daemon, vhost):
    host, port = daemon.host_port("amqp")
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=host, port=port, virtual_host=vhost,
        credentials=pika.PlainCredentials(USER, PASSWORD),
        connection_attempts=1, socket_timeout=10, blocked_connection_timeout=30))


def publish_confirmed(connection, queue, bodies):
    ch = connection.channel()
    ch.confirm_delivery()
    for body in bodies:
        ch.basic_publish("", queue, body.encode(), mandatory=True)
    ch.close()


def consume(connection, queue, count, timeout=30):
    """`count` bodies from `queue`, acked, in order of arrival."""
    ch = connection.channel()
    got = []

    def on_message(channel, method, properties, body):
        got.append(body.decode())
        channel.basic_ack(method.delivery_tag)

    tag = ch.basic_consume(queue, on_message)
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out: {len(got)} of {count} messages from {queue}: {got}"
        connection.process_data_events(time_limit=min(left, 0.2))
    ch.basic_cancel(tag)
    return ch, got


def stomp_connect(daemon, vhost=None):
    """stomp.py 1.2; `vhost` is its CONNECT host header (None: stomp.py's
    default, the TCP host name)."""
    host, port = daemon.host_port("stomp")
    conn = stomp.Connection12([(host, port)], heartbeats=(0, 0), vhost=vhost)
    recorder = Recorder()
    conn.set_listener("recorder", recorder)
    conn.connect(USER, PASSWORD, wait=True)
    return conn, recorder


def test_pika_vhosts_are_separate_queues_topics_and_groups(daemon, bootstrap, uniq):
    queue = f"orders{uniq}"
    sales = pika_connect(daemon, VHOST)
    root = pika_connect(daemon, "/")
    assert sales.channel().queue_declare(queue, durable=True).method.queue == queue
    publish_confirmed(sales, queue, [f"sales-{i}" for i in range(3)])
    # the same name in "/" is another queue: empty, its own topic
    root_ch = root.channel()
    ok = root_ch.queue_declare(queue, durable=True)
    assert ok.method.message_count == 0
    publish_confirmed(root, queue, ["root-0", "root-1"])

    # the admin API: both queues, each with its vhost, group and depth
    wait_for(lambda: daemon.api(f"/api/queues/{VHOST}/{queue}")[1].get("messages") == 3, 30,
             "depth 3 of the sales queue")
    status, body = daemon.api(f"/api/queues/{VHOST}/{queue}")
    assert status == 200
    assert (body["vhost"], body["name"], body["messages"], body["kbridge_group"]) == (
        VHOST, queue, 3, f"kbridge.v.{VHOST}/q.{queue}")
    assert body["kbridge_topics"] == [f"{VHOST}.{queue}"]
    wait_for(lambda: daemon.api(f"/api/queues/%2F/{queue}")[1].get("messages") == 2, 30,
             "depth 2 of the / queue")
    status, body = daemon.api(f"/api/queues/%2F/{queue}")
    assert (body["vhost"], body["kbridge_group"], body["kbridge_topics"]) == (
        "/", f"kbridge.q.{queue}", [queue])
    listed = sorted((q["vhost"], q["name"]) for q in daemon.api("/api/queues")[1]
                    if q["name"] == queue)
    assert listed == [("/", queue), (VHOST, queue)]
    assert daemon.api(f"/api/queues/{VHOST}")[1][0]["vhost"] == VHOST
    # /api/connections names each connection's vhost (as RabbitMQ's does)
    assert sorted(c["vhost"] for c in daemon.api("/api/connections?node=local")[1]
                  if c["protocol"] == "amqp091") == ["/", VHOST]

    # each consumer gets its own vhost's messages, in order, and nothing else
    _, got = consume(sales, queue, 3)
    assert got == ["sales-0", "sales-1", "sales-2"]
    root_ch2, got = consume(root, queue, 2)
    assert got == ["root-0", "root-1"]
    # /metrics: one series per vhost (the default vhost's without a vhost label)
    series = f'kind="queue",destination="{queue}"'
    wait_for(lambda: metrics(daemon).get(
        f'kbridge_destination_acked_total{{{series},vhost="{VHOST}"}}') == 3, 30,
        "3 acked in the sales queue's series")
    values = metrics(daemon)
    assert values[f'kbridge_destination_published_total{{{series},vhost="{VHOST}"}}'] == 3
    assert values[f'kbridge_destination_published_total{{{series}}}'] == 2
    assert values[f'kbridge_destination_delivered_total{{{series},vhost="{VHOST}"}}'] == 3
    assert values[f'kbridge_destination_delivered_total{{{series}}}'] == 2
    # nothing more arrives on either (both were published and confirmed first)
    assert sales.channel().basic_get(queue, auto_ack=True) == (None, None, None)
    assert root_ch2.basic_get(queue, auto_ack=True) == (None, None, None)

    # the records in Kafka: the vhost's prefix (kafka.topic_prefix + "sales.")
    assert [m.value().decode() for m in read_topic(bootstrap, f"{VHOST}.{queue}")] == [
        "sales-0", "sales-1", "sales-2"]
    assert [m.value().decode() for m in read_topic(bootstrap, queue)] == ["root-0", "root-1"]
    sales.close()
    root.close()


def test_reject_publish_queues_of_one_name_in_two_vhosts_count_apart(kbridged_factory, bootstrap,
                                                                      password_hash, uniq):
    """x-overflow reject-publish in `sales` and in `/` with one queue name:
    each vhost's queue is full at its own limit, and its refusals and ready
    figure are its own series (the default vhost's without a vhost label)."""
    config = with_admin(base_config(
        bootstrap, auth={"anonymous": True, "users": [
            {"name": USER, "password_hash": password_hash, "publish": [".*"],
             "consume": [".*"]}]},
        vhosts={VHOST: {}}, queues={"overflow_refresh": "250ms"}))
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    daemon = kbridged_factory(config)
    queue = f"capped{uniq}"
    channels = {}
    for vhost, limit in ((VHOST, 1), ("/", 2)):
        channel = pika_connect(daemon, vhost).channel()
        channel.queue_declare(queue, durable=True,
                              arguments={"x-max-length": limit, "x-overflow": "reject-publish"})
        channel.confirm_delivery()
        for i in range(limit):
            channel.basic_publish("", queue, f"{vhost}-{i}".encode())  # raises when nacked
        channels[vhost] = channel
    series = {VHOST: f'{{kind="queue",destination="{queue}",vhost="{VHOST}"}}',
              "/": f'{{kind="queue",destination="{queue}"}}'}
    wait_for(lambda: all(metrics(daemon).get(f"kbridge_overflow_queue_ready{series[v]}") == n
                         for v, n in ((VHOST, 1), ("/", 2))), 30,
             "each vhost's figure of its own queue")
    for vhost in (VHOST, "/"):
        with pytest.raises(pika.exceptions.NackError):
            channels[vhost].basic_publish("", queue, b"over")
    with pytest.raises(pika.exceptions.NackError):
        channels[VHOST].basic_publish("", queue, b"over again")
    values = metrics(daemon)
    assert values[f"kbridge_overflow_rejected_total{series[VHOST]}"] == 2
    assert values[f"kbridge_overflow_rejected_total{series['/']}"] == 1
    for channel in channels.values():
        channel.connection.close()


def test_unknown_vhost_is_refused(daemon):
    # pika reports a close while opening as ProbableAccessDeniedError, with
    # the broker's close (code and text) as its argument
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as closed:
        pika_connect(daemon, "nowhere")
    assert str(closed.value) == (
        "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost nowhere not found'")
    # a name with a NUL byte is no vhost, not the configured one before it
    client = raw_open(daemon, VHOST.encode() + b"\x00x")
    code, text = client.expect_close()
    assert (code, text) == (530, f"NOT_ALLOWED - vhost {VHOST}?x not found")
    client.close()
    # AMQP 1.0: the open's hostname vhost:nowhere
    with pytest.raises(Exception) as refused:
        BlockingConnection(amqp_url(daemon, USER, PASSWORD), timeout=15, allowed_mechs="PLAIN",
                           virtual_host="vhost:nowhere")
    assert "amqp:not-found" in str(refused.value)
    assert "vhost 'nowhere' not found" in str(refused.value)
    # the daemon carries on: "/" and sales still open
    for vhost in ("/", VHOST):
        pika_connect(daemon, vhost).close()


def test_stomp_host_and_amqp10_hostname_reach_the_vhost(daemon, uniq):
    queue = f"orders{uniq}"
    sales = pika_connect(daemon, VHOST)
    sales.channel().queue_declare(queue, durable=True)

    # STOMP with host: sales sends to the sales queue
    conn, recorder = stomp_connect(daemon, VHOST)
    conn.send(f"/queue/{queue}", "from-stomp", receipt="r1")
    wait_for(lambda: "r1" in recorder.receipts, 30, "RECEIPT r1")
    # AMQP 1.0 with hostname vhost:sales sends to the same queue
    amqp = BlockingConnection(amqp_url(daemon, USER, PASSWORD), timeout=30,
                              allowed_mechs="PLAIN", virtual_host=f"vhost:{VHOST}")
    sender = amqp.create_sender(f"/queues/{queue}")
    sender.send(Message(body="from-amqp10"))
    sender.close()
    # STOMP with stomp.py's default host (the TCP host name) is in "/"
    root_conn, root_recorder = stomp_connect(daemon)
    root_conn.send(f"/queue/{queue}", "from-stomp-root", receipt="r2")
    wait_for(lambda: "r2" in root_recorder.receipts, 30, "RECEIPT r2")

    # two producers: Kafka orders each one's records, not the two together
    _, got = consume(sales, queue, 2)
    assert sorted(got) == ["from-amqp10", "from-stomp"]

    # pika on sales publishes; the STOMP subscriber on host sales gets it,
    # the one on "/" gets the "/" message only
    conn.subscribe(f"/queue/{queue}", id="s1", ack="client-individual")
    root_conn.subscribe(f"/queue/{queue}", id="s2", ack="client-individual")
    publish_confirmed(sales, queue, ["from-pika"])
    wait_for(lambda: len(recorder.messages) >= 1, 30, "the STOMP message on sales")
    wait_for(lambda: len(root_recorder.messages) >= 1, 30, "the STOMP message on /")
    frame = recorder.messages[0]
    assert frame.body == "from-pika"
    conn.ack(frame.headers["ack"])
    root_frame = root_recorder.messages[0]
    assert root_frame.body == "from-stomp-root"
    root_conn.ack(root_frame.headers["ack"])
    assert len(recorder.messages) == 1 and len(root_recorder.messages) == 1
    # the AMQP 1.0 receiver on sales sees a message pika sends next (the
    # STOMP consumer on sales gone first: it would compete for it)
    conn.disconnect()
    receiver = amqp.create_receiver(f"/queues/{queue}", credit=10)
    publish_confirmed(sales, queue, ["for-amqp10"])
    message = receiver.receive(timeout=30)
    assert message.body == b"for-amqp10"  # a 0-9-1 body is binary: AMQP 1.0 data
    receiver.accept()
    assert len(root_recorder.messages) == 1
    amqp.close()
    root_conn.disconnect()
    sales.close()


def test_exchanges_and_dead_letters_of_a_vhost(daemon, bootstrap, uniq):
    """An exchange, its binding and a queue's dead letters live under the
    vhost's prefix; the vhost "/" does not see its exchange."""
    exchange, queue = f"ex{uniq}", f"q{uniq}"
    sales = pika_connect(daemon, VHOST)
    ch = sales.channel()
    ch.exchange_declare(exchange, exchange_type="direct", durable=True)
    ch.queue_declare(queue, durable=True)
    ch.queue_bind(queue, exchange, routing_key="k")
    ch.confirm_delivery()
    ch.basic_publish(exchange, "k", b"routed", mandatory=True)

    got = []
    deliveries = []

    def on_message(channel, method, properties, body):
        got.append(body.decode())
        deliveries.append(method.delivery_tag)

    ch.basic_consume(queue, on_message)
    deadline = time.monotonic() + 30
    while not got:
        assert time.monotonic() < deadline, "timed out waiting for the routed message"
        sales.process_data_events(time_limit=0.2)
    assert got == ["routed"]
    ch.basic_reject(deliveries[0], requeue=False)  # no DLX: to the queue's dead-letter topic

    records = read_topic(bootstrap, f"{VHOST}.{exchange}")
    assert [(m.value(), dict(m.headers())["kbridge-routing-key"]) for m in records] == [
        (b"routed", b"k")]
    wait_for(lambda: [m.value() for m in read_topic(bootstrap, f"{VHOST}.{queue}.DLQ")] ==
             [b"routed"], 30, f"the dead letter in {VHOST}.{queue}.DLQ")
    status, body = daemon.api(f"/api/kbridge/dlq/{VHOST}/{queue}")
    assert status == 200
    assert (body["topic"], body["group"]) == (f"{VHOST}.{queue}.DLQ",
                                              f"kbridge.v.{VHOST}/dlq.{queue}")

    # "/" has no such exchange
    root = pika_connect(daemon, "/")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        root.channel().exchange_declare(exchange, passive=True)
    assert closed.value.reply_code == 404
    assert closed.value.reply_text == f"NOT_FOUND - no exchange '{exchange}' in vhost '/'"
    root.close()
    sales.close()


# ---- per-user vhost permissions (auth.users[].vhosts, RabbitMQ's
# set_permissions -p VHOST) ----------------------------------------------------

SELLER = "seller"  # may use `sales` only: not `/`


def seller_config(bootstrap, password_hash, seller_vhosts):
    """`app` (no `vhosts`: every vhost) and `seller` (`seller_vhosts`)."""
    def user(name, **extra):
        return {"name": name, "password_hash": password_hash, "publish": [".*"],
                "consume": [".*"], **extra}
    config = with_admin(base_config(
        bootstrap, kafka={"consumer": {"session.timeout.ms": 6000}},
        auth={"anonymous": False,
              "users": [user(USER), user(SELLER, vhosts=seller_vhosts)]},
        vhosts={VHOST: {}}))
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    return config


@pytest.fixture
def seller_daemon(kbridged_factory, bootstrap, password_hash):
    return kbridged_factory(seller_config(bootstrap, password_hash, [VHOST]))


def pika_as(daemon, user, vhost):
    host, port = daemon.host_port("amqp")
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=host, port=port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, PASSWORD),
        connection_attempts=1, socket_timeout=10, blocked_connection_timeout=30))


def amqp10_as(daemon, user, hostname=None):
    kwargs = {"virtual_host": hostname} if hostname else {}
    return BlockingConnection(amqp_url(daemon, user, PASSWORD), timeout=15,
                              allowed_mechs="PLAIN", **kwargs)


def test_user_vhosts_allow_and_refuse_at_open(seller_daemon, uniq):
    daemon = seller_daemon
    queue = f"perm{uniq}"
    # pika: sales works, "/" is RabbitMQ's 530 with its words
    sales = pika_as(daemon, SELLER, VHOST)
    sales.channel().queue_declare(queue, durable=True)
    publish_confirmed(sales, queue, ["from-seller"])
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as closed:
        pika_as(daemon, SELLER, "/")
    assert str(closed.value) == (
        "ConnectionClosedByBroker: (530) "
        f"\"NOT_ALLOWED - access to vhost '/' refused for user '{SELLER}'\"")

    # STOMP: CONNECT with host "/", and with no host naming a vhost (then it
    # is "/"), is an ERROR naming the vhost and the user, and the close
    for name, host in (("host /", "/"), ("host 127.0.0.1", "127.0.0.1"), ("no host", None)):
        headers = {"accept-version": "1.2", "login": SELLER, "passcode": PASSWORD}
        if host:
            headers["host"] = host
        frames = run_bad_connect(daemon, headers)
        assert [f.command for f in frames] == ["ERROR"], (name, frames)
        assert frames[0].headers["message"] == (
            f"access to vhost '/' refused for user '{SELLER}'"), (name, frames[0].headers)
        assert "auth.users[].vhosts" in frames[0].body.decode(), name
    # STOMP with host: sales works and reaches the same queue
    conn = stomp.Connection12([daemon.host_port("stomp")], heartbeats=(0, 0), vhost=VHOST)
    recorder = Recorder()
    conn.set_listener("recorder", recorder)
    conn.connect(SELLER, PASSWORD, wait=True)
    conn.send(f"/queue/{queue}", "from-stomp", receipt="r1")
    wait_for(lambda: "r1" in recorder.receipts, 30, "RECEIPT r1")
    conn.disconnect()

    # AMQP 1.0: vhost:sales works; no vhost:NAME ("/") and vhost:/ are
    # refused with amqp:unauthorized-access naming the vhost and the user
    amqp = amqp10_as(daemon, SELLER, f"vhost:{VHOST}")
    sender = amqp.create_sender(f"/queues/{queue}")
    sender.send(Message(body="from-amqp10"))
    sender.close()
    amqp.close()
    for hostname in (None, "vhost:/"):
        with pytest.raises(Exception) as refused:
            amqp10_as(daemon, SELLER, hostname)
        text = str(refused.value)
        assert "amqp:unauthorized-access" in text, (hostname, text)
        assert f"access to vhost '/' refused for user '{SELLER}'" in text, (hostname, text)

    # all three reached the sales queue
    _, got = consume(sales, queue, 3)
    assert sorted(got) == ["from-amqp10", "from-seller", "from-stomp"]
    sales.close()

    # a user without `vhosts` reaches both, over every protocol
    for vhost in ("/", VHOST):
        pika_as(daemon, USER, vhost).close()
        amqp10_as(daemon, USER, f"vhost:{vhost}").close()
    stomp_root, _ = stomp_connect(daemon, "/")
    stomp_root.disconnect()
    stomp_sales, _ = stomp_connect(daemon, VHOST)
    stomp_sales.disconnect()
    log = daemon.log()
    assert f"access to vhost '/' refused for user '{SELLER}'" in log


def test_sighup_withdrawing_a_vhost_closes_its_connections(kbridged_factory, bootstrap,
                                                           password_hash):
    config = seller_config(bootstrap, password_hash, [VHOST])
    daemon = kbridged_factory(config)
    seller_pika = pika_as(daemon, SELLER, VHOST)
    seller_amqp = amqp10_as(daemon, SELLER, f"vhost:{VHOST}")
    seller_stomp = stomp.Connection12([daemon.host_port("stomp")], heartbeats=(0, 0),
                                      vhost=VHOST)
    seller_recorder = Recorder()
    seller_stomp.set_listener("recorder", seller_recorder)
    seller_stomp.connect(SELLER, PASSWORD, wait=True)
    app_pika = pika_as(daemon, USER, VHOST)  # no `vhosts`: stays

    # the same lists: nothing closes
    daemon.signal(signal.SIGHUP)
    daemon.wait_log(r"configuration reloaded from")
    assert "revoked by the reload" not in daemon.log()

    config["auth"]["users"][1]["vhosts"] = ["/"]
    daemon.write_config(config)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.log().count("configuration reloaded from") >= 2, 15,
             "the second reload")

    reason = f"access to vhost '{VHOST}' refused for user '{SELLER}'"
    code, text = pika_closed_with(seller_pika)
    assert (code, text) == (320, f"CONNECTION_FORCED - {reason}")
    assert "unauthorized-access" in amqp_closed_with(seller_amqp, "amqp:unauthorized-access")
    wait_for(lambda: seller_recorder.errors, 15, "the STOMP ERROR")
    error = seller_recorder.errors[0]
    assert error.headers["message"] == "Access refused"
    assert reason in error.body
    wait_for(lambda: not seller_stomp.is_connected(), 15, "the STOMP connection closed")
    assert daemon.log().count(f"revoked by the reload: {reason}") == 3

    # still allowed: app's connection works; seller may now use "/" only
    app_pika.channel().queue_declare(f"still{uuid.uuid4().hex[:6]}")
    app_pika.close()
    pika_as(daemon, SELLER, "/").close()
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as closed:
        pika_as(daemon, SELLER, VHOST)
    assert f"NOT_ALLOWED - {reason}" in str(closed.value)


def test_admin_api_permissions_from_the_config(kbridged_factory, bootstrap, password_hash):
    """GET /api/permissions: RabbitMQ's {user, vhost, configure, write, read}
    per user and vhost it may use, from auth.users; administrator and
    monitoring only."""
    config = seller_config(bootstrap, password_hash, [VHOST])
    config["auth"]["users"][1]["publish"] = ["^orders$", "^returns\\."]
    config["auth"]["users"] += [
        user_config("watcher", "watch-secret", ["monitoring"]),
        user_config("manager", "manage-secret", ["management"], consume=[".*"]),
        {**user_config("nowhere", "x"), "vhosts": []}]
    daemon = kbridged_factory(config)

    status, body = daemon.api("/api/permissions")
    assert status == 200, body
    assert [(p["user"], p["vhost"]) for p in body] == [
        (USER, "/"), (USER, VHOST), (SELLER, VHOST), (ADMIN[0], "/"), (ADMIN[0], VHOST),
        ("watcher", "/"), ("watcher", VHOST), ("manager", "/"), ("manager", VHOST)]
    seller = body[2]
    assert seller == {"user": SELLER, "vhost": VHOST, "configure": ".*",
                      "write": "(^orders$)|(^returns\\.)", "read": ".*",
                      "kbridge_publish": ["^orders$", "^returns\\."], "kbridge_consume": [".*"]}
    # no patterns: "", RabbitMQ's "no access"
    assert [(p["configure"], p["write"], p["read"]) for p in body if p["user"] == "watcher"] == [
        ("", "", "")] * 2

    status, one = daemon.api(f"/api/permissions/{VHOST}/{SELLER}")
    assert (status, one) == (200, seller)
    status, answer = daemon.api(f"/api/permissions/%2F/{SELLER}")
    assert status == 404
    assert answer["reason"] == f"user '{SELLER}' has no permissions in vhost '/'"
    assert daemon.api("/api/permissions/%2F/nowhere")[0] == 404

    status, answer = daemon.api("/api/permissions", auth=("watcher", "watch-secret"))
    assert status == 200 and len(answer) == 9
    status, answer = daemon.api("/api/permissions", auth=("manager", "manage-secret"))
    assert status == 403
    assert answer["reason"] == "/api/permissions needs the administrator or monitoring tag"
    status, _ = daemon.api("/api/permissions", method="PUT", body={})
    assert status == 404  # read-only: no such endpoint


def test_admin_api_declares_are_checked_in_the_vhost_the_path_names(kbridged_factory, bootstrap,
                                                                    password_hash, uniq):
    """An administrator declares through the admin API with its own
    permissions in the vhost of the path, as RabbitMQ's management API does:
    configure in `/` for `ops.*` only, and no access to `sales`."""
    config = seller_config(bootstrap, password_hash, [VHOST])
    config["auth"]["users"].append({
        **user_config("operator", "op-secret", ["administrator"]),
        "permissions": {"/": {"configure": "^ops\\.", "write": ".*", "read": ".*"}}})
    daemon = kbridged_factory(config)
    operator = ("operator", "op-secret")
    allowed, other = f"ops.{uniq}", f"other.{uniq}"

    status, body = daemon.api(f"/api/queues/%2F/{allowed}", method="PUT",
                              body={"durable": True}, auth=operator)
    assert status == 201, body
    status, body = daemon.api(f"/api/queues/%2F/{other}", method="PUT", body={"durable": True},
                              auth=operator)
    assert status == 403
    assert body["reason"] == (f"access to queue '{other}' in vhost '/' refused for user "
                              "'operator' (needs configure)")
    status, body = daemon.api(f"/api/exchanges/%2F/{other}", method="PUT",
                              body={"type": "fanout"}, auth=operator)
    assert status == 403 and "needs configure" in body["reason"]
    # `sales` is configured, but not for this user: refused before any declare
    status, body = daemon.api(f"/api/queues/{VHOST}/{allowed}", method="PUT",
                              body={"durable": True}, auth=operator)
    assert status == 403
    assert body["reason"] == f"access to vhost '{VHOST}' refused for user 'operator'"
    status, body = daemon.api(f"/api/queues/nowhere/{allowed}", method="PUT",
                              body={"durable": True}, auth=operator)
    assert status == 404 and body["reason"] == "vhost 'nowhere' not found"
    # the queue in `/` exists, the refused ones do not
    names = {(q["vhost"], q["name"]) for q in daemon.api("/api/queues")[1]}
    assert ("/", allowed) in names
    assert ("/", other) not in names and (VHOST, allowed) not in names


def write_users_export(path, users, permissions):
    """A RabbitMQ export with only users and permissions, as
    `rabbitmqctl export_definitions` writes them (3.12: tags as a list)."""
    path.write_text(json.dumps({
        "rabbit_version": "3.12.4", "users": users, "vhosts": [{"name": "/"}, {"name": VHOST}],
        "permissions": permissions, "topic_permissions": [], "queues": [], "exchanges": [],
        "bindings": []}))


def test_users_and_permissions_imported_from_a_definitions_export(kbridged_factory, bootstrap,
                                                                  tmp_path, uniq):
    """definitions.import_users: a RabbitMQ export's users log in with their
    passwords (the hash verbatim), and each permission is that user's
    configure/write/read in its vhost, over 0-9-1, STOMP and AMQP 1.0; a
    reload reads the file again."""
    orders, other = f"orders{uniq}", f"other{uniq}"
    path = tmp_path / "definitions.json"
    users = [{"name": "imported", "password_hash": rabbit_hash(PASSWORD, b"salt"),
              "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["management"],
              "limits": {}}]
    permissions = [
        {"user": "imported", "vhost": "/", "configure": "^rpc\\.", "write": "^orders",
         "read": "^orders"},
        {"user": "imported", "vhost": VHOST, "configure": "", "write": "", "read": ".*"}]
    write_users_export(path, users, permissions)
    config = with_admin(base_config(
        bootstrap, kafka={"consumer": {"session.timeout.ms": 6000}},
        auth={"anonymous": False}, vhosts={VHOST: {}, "spare": {}},
        definitions={"file": str(path), "import_users": True}))
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    daemon = kbridged_factory(config)
    daemon.wait_log(r"1 user\(s\) and 2 permission\(s\) imported into auth.users")

    # the administrator (auth.users) sets the topology up
    host, port = daemon.host_port("amqp")

    def connect(user, password, vhost):
        return pika.BlockingConnection(pika.ConnectionParameters(
            host=host, port=port, virtual_host=vhost,
            credentials=pika.PlainCredentials(user, password), connection_attempts=1,
            socket_timeout=10, blocked_connection_timeout=30))

    admin = connect(ADMIN[0], ADMIN[1], "/")
    for vhost_queue in (orders, other):
        admin.channel().queue_declare(vhost_queue, durable=True)
    admin.close()
    admin_sales = connect(ADMIN[0], ADMIN[1], VHOST)
    admin_sales.channel().queue_declare(orders, durable=True)
    publish_confirmed(admin_sales, orders, ["for-sales"])
    admin_sales.close()

    # a wrong password is refused; the right one logs in
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect("imported", "wrong", "/")
    root = connect("imported", PASSWORD, "/")
    # write ^orders: publishing to orders is confirmed; to other refused (403)
    publish_confirmed(root, orders, ["from-pika"])
    channel = root.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.basic_publish("", other, b"denied")
        channel.queue_declare(orders, passive=True)  # the close arrives by now
    assert closed.value.reply_code == 403, closed.value
    assert other in closed.value.reply_text
    # configure ^rpc\.: declaring orders (which exists) needs configure, as in RabbitMQ
    channel = root.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.queue_declare(orders, durable=True)
    assert (closed.value.reply_code, closed.value.reply_text) == (
        403, f"ACCESS_REFUSED - access to queue '{orders}' in vhost '/' refused for user "
             "'imported' (needs configure)")
    root.channel().queue_declare(f"rpc.{uniq}", durable=False, auto_delete=True)
    # read ^orders: a passive declare and a consume work
    root.channel().queue_declare(orders, passive=True)
    _, got = consume(root, orders, 1)
    assert got == ["from-pika"]
    root.close()

    # sales: read everything, write and configure nothing
    sales = connect("imported", PASSWORD, VHOST)
    _, got = consume(sales, orders, 1)
    assert got == ["for-sales"]
    channel = sales.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.queue_declare(f"mine{uniq}")
    assert closed.value.reply_text.endswith("refused for user 'imported' (needs configure)")
    channel = sales.channel()
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.basic_publish("", orders, b"denied", mandatory=True)
    assert closed.value.reply_code == 403
    sales.close()

    # a configured vhost without a permission: RabbitMQ's 530
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as refused:
        connect("imported", PASSWORD, "spare")
    assert str(refused.value) == (
        "ConnectionClosedByBroker: (530) "
        "\"NOT_ALLOWED - access to vhost 'spare' refused for user 'imported'\"")

    # STOMP and AMQP 1.0 apply the same permissions of "/"
    conn = stomp.Connection12([daemon.host_port("stomp")], heartbeats=(0, 0))
    recorder = Recorder()
    conn.set_listener("recorder", recorder)
    conn.connect("imported", PASSWORD, wait=True)
    conn.send(f"/queue/{orders}", "from-stomp", receipt="ok")
    wait_for(lambda: "ok" in recorder.receipts, 30, "RECEIPT ok")
    conn.send(f"/queue/{other}", "denied", receipt="no")
    wait_for(lambda: recorder.errors, 30, "the STOMP ERROR")
    assert recorder.errors[0].headers["message"] == "access_refused", recorder.errors[0].headers
    assert other in recorder.errors[0].body
    amqp = BlockingConnection(amqp_url(daemon, "imported", PASSWORD), timeout=15,
                              allowed_mechs="PLAIN")
    amqp.create_sender(f"/queues/{orders}").send(Message(body="from-amqp10"))
    with pytest.raises(Exception) as denied:
        amqp.create_sender(f"/queues/{other}").send(Message(body="denied"))
    assert "amqp:unauthorized-access" in str(denied.value)
    amqp.close()

    # the admin API shows them as RabbitMQ does
    status, body = daemon.api("/api/permissions/%2F/imported")
    assert (status, body) == (200, {"user": "imported", "vhost": "/", "configure": "^rpc\\.",
                                    "write": "^orders", "read": "^orders"})
    status, body = daemon.api(f"/api/permissions/{VHOST}/imported")
    assert (status, body) == (200, {"user": "imported", "vhost": VHOST, "configure": "",
                                    "write": "", "read": ".*"})

    # a reload reads the file again: a hash of the wrong shape (a 2-byte
    # salt) fails the reload, naming the user, and the running users stay
    users.append({"name": "later", "password_hash": rabbit_hash("later-secret", b"s2"),
                  "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []})
    permissions.append({"user": "later", "vhost": "/", "configure": ".*", "write": ".*",
                        "read": ".*"})
    write_users_export(path, users, permissions)
    daemon.signal(signal.SIGHUP)
    daemon.wait_log(r"reload failed, keeping the running configuration: .*definitions.json: "
                    r"users\[1\] 'later': password_hash is not a rabbit_sha256 hash")
    connect("imported", PASSWORD, "/").close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect("later", "later-secret", "/")
    # with a good hash the user added to the file can log in after the reload
    users[1]["password_hash"] = rabbit_hash("later-secret", b"slt2")
    write_users_export(path, users, permissions)
    daemon.signal(signal.SIGHUP)
    daemon.wait_log(r"configuration reloaded from")
    connect("later", "later-secret", "/").close()
