# SPDX-License-Identifier: Apache-2.0
"""Queue arguments (issue 13, item 5; docs/routing.md "Queue arguments"),
declared over AMQP 0-9-1 with pika's queue_declare(arguments=...) and
consumed with pika and stomp.py (`/amq/queue/NAME`):

- x-dead-letter-exchange / -routing-key: a message rejected without requeue
  and one returned more often than x-delivery-limit go to the DLX's bound
  queue with the routing key, the kbridge-dlq-* headers and RabbitMQ's
  x-first-death-* and x-death; the default exchange as DLX reaches the queue
  the dead-letter routing key names;
- x-single-active-consumer: of two consumers only the first gets messages;
  when it goes the second takes over, the first's unacknowledged ones first;
- x-message-ttl: messages older than the TTL when they would be delivered
  are dead-lettered (reason expired), never delivered; a message's own
  expiration and the queue's TTL: the lower wins;
- x-expires: a queue without a consumer is deleted after that long; one with
  a consumer stays until the consumer goes;
- x-max-length with drop-head: of 8 ready messages the consumer gets the
  last 3, the 5 oldest are dead-lettered (reason maxlen);
- without a DLX, expired and over-length messages are dropped and counted
  (kbridge_expired_total, kbridge_maxlen_dropped_total);
- x-max-length with reject-publish: once kbridged's figure of the queue has
  caught up (kbridge_overflow_queue_ready), a publish is nacked (pika's
  NackError), a STOMP SEND gets an ERROR with its receipt-id naming the queue
  and an AMQP 1.0 transfer is rejected with amqp:resource-limit-exceeded; the
  queue holds exactly its 5; once they are consumed and acknowledged a
  publish is accepted again; through a direct exchange the whole publish is
  refused (also for the other bound queue), a key reaching only the other
  queue is not; a STOMP or 0-9-1 transaction with a send to a full queue is
  not committed (ERROR with the COMMIT's receipt-id; channel closed 506) and
  writes none of its sends;
- arguments kbridge does not honour are refused by name (406), the honoured
  x-queue-type classic/quorum and x-queue-mode are accepted.

Waits are deadline-based; the one wait on the clock (a TTL passing) waits
for the time itself, with a deadline."""

import json
import subprocess
import time
import uuid

import pika
import pytest

from amqp_client import send_windowed
from conftest import EXTERNAL_BOOTSTRAP, base_config, wait_for
from proton import Message
from stomp_util import Client

KAFKA = {"consumer": {"session.timeout.ms": 6000}}
USER, PASSWORD = "app", "secret"


@pytest.fixture
def uniq():
    return f"-{uuid.uuid4().hex[:10]}" if EXTERNAL_BOOTSTRAP else f"-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def password_hash():
    return subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def daemon(kbridged_factory, bootstrap, password_hash):
    config = base_config(bootstrap, kafka=dict(KAFKA),
                         auth={"anonymous": True, "users": [
                             {"name": USER, "password_hash": password_hash,
                              "publish": [".*"], "consume": [".*"]}]})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    return kbridged_factory(config)


def pika_connect(daemon):
    host, port = daemon.host_port("amqp")
    params = pika.ConnectionParameters(host=host, port=port,
                                       credentials=pika.PlainCredentials(USER, PASSWORD),
                                       blocked_connection_timeout=30,
                                       socket_timeout=10, connection_attempts=1)
    return pika.BlockingConnection(params)


def drain_until(connection, condition, timeout, what):
    """Run pika's I/O loop until condition() holds, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {what}"
        connection.process_data_events(time_limit=min(left, 0.2))


def dead_letter_exchange(ch, uniq, key):
    """A direct DLX and its queue bound with `key`; returns (exchange, queue)."""
    dlx, dead = f"dlx{uniq}", f"dead{uniq}"
    ch.exchange_declare(dlx, exchange_type="direct", durable=True)
    ch.queue_declare(dead, durable=True)
    ch.queue_bind(dead, dlx, routing_key=key)
    return dlx, dead


def test_rejected_and_over_limit_messages_go_to_the_dead_letter_exchange(daemon, uniq):
    conn = pika_connect(daemon)
    ch = conn.channel()
    dlx, dead = dead_letter_exchange(ch, uniq, "dead")
    work = f"work{uniq}"
    ch.queue_declare(work, durable=True, arguments={
        "x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "dead",
        "x-delivery-limit": 2})

    dead_letters = []
    ch.basic_consume(dead, lambda c, m, p, b: (dead_letters.append((m, p, b)),
                                               c.basic_ack(m.delivery_tag)))
    seen = []

    def on_work(channel, method, properties, body):
        seen.append(body)
        if body == b"poison":
            channel.basic_reject(method.delivery_tag, requeue=False)
        else:
            channel.basic_nack(method.delivery_tag, requeue=True)

    work_ch = conn.channel()
    work_ch.basic_qos(prefetch_count=1)
    work_ch.basic_consume(work, on_work)
    pub = conn.channel()
    pub.confirm_delivery()
    pub.basic_publish("", work, b"poison", pika.BasicProperties(correlation_id="p1"))
    pub.basic_publish("", work, b"retry", pika.BasicProperties(headers={"attempt": "x"}))
    drain_until(conn, lambda: len(dead_letters) >= 2, 60, "two dead letters")
    conn.process_data_events(time_limit=0.5)  # nothing more comes

    # x-delivery-limit 2: two returns allowed, the third delivery's return dead-letters
    assert seen.count(b"poison") == 1
    assert seen.count(b"retry") == 3
    assert sorted(b for _, _, b in dead_letters) == [b"poison", b"retry"]
    by_body = {b: (m, p) for m, p, b in dead_letters}
    for body, reason in ((b"poison", "rejected"), (b"retry", "delivery_limit")):
        method, props = by_body[body]
        h = props.headers
        assert method.routing_key == "dead"
        assert h["x-first-death-reason"] == reason
        assert h["x-first-death-queue"] == work
        assert h["x-first-death-exchange"] == ""
        death = json.loads(h["x-death"])
        assert len(death) == 1
        assert {k: death[0][k] for k in ("count", "reason", "queue", "exchange",
                                         "routing-keys")} == {
            "count": 1, "reason": reason, "queue": work, "exchange": "",
            "routing-keys": [work]}
        assert abs(death[0]["time"] - time.time()) < 120
        assert h["kbridge-dlq-original-topic"].endswith(work)
        assert "kbridge-dlq-reason" in h
    assert by_body[b"poison"][1].correlation_id == "p1"
    assert by_body[b"retry"][1].headers["attempt"] == "x"
    assert by_body[b"retry"][1].headers["kbridge-delivery-count"] == "3"
    conn.close()


def test_dead_letters_through_the_default_exchange_reach_the_named_queue(daemon, uniq):
    # RabbitMQ's retry pattern: DLX "" with the target queue as routing key
    conn = pika_connect(daemon)
    ch = conn.channel()
    source, target = f"source{uniq}", f"target{uniq}"
    ch.queue_declare(target, durable=True)
    ch.queue_declare(source, durable=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": target})
    got = []
    ch.basic_consume(target, lambda c, m, p, b: (got.append((m, p, b)),
                                                 c.basic_ack(m.delivery_tag)))
    ch.basic_consume(source, lambda c, m, p, b: c.basic_reject(m.delivery_tag, requeue=False))
    pub = conn.channel()
    pub.confirm_delivery()
    pub.basic_publish("", source, b"bounce")
    drain_until(conn, lambda: got, 60, f"the dead letter in {target}")
    conn.process_data_events(time_limit=0.5)
    assert [b for _, _, b in got] == [b"bounce"]
    method, props, _ = got[0]
    assert method.routing_key == target
    assert props.headers["x-first-death-reason"] == "rejected"
    assert props.headers["x-first-death-queue"] == source
    assert json.loads(props.headers["x-death"])[0]["routing-keys"] == [source]
    conn.close()


def test_message_ttl_dead_letters_expired_messages(daemon, uniq):
    conn = pika_connect(daemon)
    ch = conn.channel()
    dlx, dead = dead_letter_exchange(ch, uniq, "expired")
    short, long = f"short{uniq}", f"long{uniq}"
    ch.queue_declare(short, durable=True, arguments={
        "x-message-ttl": 300, "x-dead-letter-exchange": dlx,
        "x-dead-letter-routing-key": "expired"})
    ch.queue_declare(long, durable=True, arguments={
        "x-message-ttl": 600000, "x-dead-letter-exchange": dlx,
        "x-dead-letter-routing-key": "expired"})

    # the dead-letter queue over STOMP, positioned before anything dies
    stomp = Client(daemon)
    stomp.subscribe(f"/amq/queue/{dead}", "dead", receipt="r-dead", timeout=60)

    pub = conn.channel()
    pub.confirm_delivery()
    published = time.monotonic()
    # the queue's TTL (300 ms) is lower than the message's: the TTL wins
    pub.basic_publish("", short, b"ttl", pika.BasicProperties(expiration="600000"))
    # the message's expiration (100 ms) is lower than the queue's TTL: it wins
    pub.basic_publish("", long, b"own", pika.BasicProperties(expiration="100"))
    pub.basic_publish("", long, b"fresh")
    wait_for(lambda: time.monotonic() > published + 0.6, 5, "the TTL to pass")

    delivered = []
    for queue in (short, long):
        ch.basic_consume(queue, lambda c, m, p, b: (delivered.append(b),
                                                    c.basic_ack(m.delivery_tag)))
    drain_until(conn, lambda: delivered, 60, "the fresh message")
    frames = stomp.wait_messages(2, timeout=60)
    conn.process_data_events(time_limit=0.5)
    assert delivered == [b"fresh"]
    assert sorted(f.body for f in frames) == ["own", "ttl"]
    for f in frames:
        assert f.headers["x-first-death-reason"] == "expired"
        assert f.headers["x-first-death-queue"] == (short if f.body == "ttl" else long)
        assert json.loads(f.headers["x-death"])[0]["reason"] == "expired"
    assert len(stomp.take()) == 2
    stomp.close()
    conn.close()


@pytest.mark.parametrize("arguments, text", [
    ({"x-max-length-bytes": -1},
     "PRECONDITION_FAILED - invalid arg 'x-max-length-bytes': -1, must be a non-negative "
     "integer"),
    ({"x-max-length": 10, "x-overflow": "reject-publish-dlx"},
     "PRECONDITION_FAILED - invalid arg 'x-overflow': 'reject-publish-dlx', must be "
     "drop-head|reject-publish"),
    ({"x-queue-type": "stream", "x-max-length": 10},
     "PRECONDITION_FAILED - invalid arg 'x-max-length' for a stream queue: a stream keeps every "
     "message (Kafka's retention decides; set it on the topic)"),
    ({"x-max-priority": 10},
     "PRECONDITION_FAILED - invalid arg 'x-max-priority': kbridge does not support this "
     "queue argument"),
    ({"x-message-ttl": "soon"},
     "PRECONDITION_FAILED - invalid arg 'x-message-ttl': 'soon', must be a non-negative "
     "integer"),
])
def test_arguments_not_honoured_are_refused_by_name(daemon, uniq, arguments, text):
    conn = pika_connect(daemon)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        ch.queue_declare(f"refused{uniq}", durable=True, arguments=arguments)
    assert closed.value.reply_code == 406
    assert closed.value.reply_text == text
    ok = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        ok.queue_declare(f"refused{uniq}", passive=True)  # nothing was declared
    assert closed.value.reply_code == 404
    conn.close()


def test_queue_type_and_mode_are_accepted(daemon, uniq):
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.confirm_delivery()
    for n, arguments in enumerate(({"x-queue-type": "classic"}, {"x-queue-type": "quorum"},
                                   {"x-queue-mode": "lazy"})):
        queue = f"typed{n}{uniq}"
        ch.queue_declare(queue, durable=True, arguments=arguments)
        ch.queue_declare(queue, durable=True, arguments=arguments)  # redeclared alike
        got = []
        ch.basic_consume(queue, lambda c, m, p, b: (got.append(b), c.basic_ack(m.delivery_tag)))
        ch.basic_publish("", queue, f"m{n}".encode())
        drain_until(conn, lambda: got, 60, f"the message on {queue}")
        assert got == [f"m{n}".encode()]
    conn.close()


def test_single_active_consumer_takes_over_in_order(daemon, uniq):
    queue = f"sac{uniq}"
    setup = pika_connect(daemon)
    setup.channel().queue_declare(queue, durable=True,
                                  arguments={"x-single-active-consumer": True})
    first, second = pika_connect(daemon), pika_connect(daemon)
    got = {"first": [], "second": []}

    def consumer(conn, name, ack_while):
        ch = conn.channel()
        ch.basic_qos(prefetch_count=100)

        def on_message(channel, method, properties, body):
            got[name].append((body, method.redelivered))
            if ack_while(body):
                channel.basic_ack(method.delivery_tag)

        ch.basic_consume(queue, on_message)  # consume-ok: positioned
        return ch

    # the first leaves m8 and m9 unacknowledged when it goes
    consumer(first, "first", lambda body: body not in (b"m8", b"m9"))
    consumer(second, "second", lambda body: True)
    pub = setup.channel()
    pub.confirm_delivery()
    for i in range(10):
        pub.basic_publish("", queue, f"m{i}".encode())

    def pump(condition):
        def check():
            for conn in (first, second):
                if conn.is_open:
                    conn.process_data_events(time_limit=0)
            return condition()
        return check

    wait_for(pump(lambda: len(got["first"]) >= 10), 60, "the first consumer's 10 messages")
    for conn in (first, second):
        conn.process_data_events(time_limit=0.5)
    # only the active consumer got messages, in order
    assert [b for b, _ in got["first"]] == [f"m{i}".encode() for i in range(10)]
    assert got["second"] == []

    first.close()  # the second takes over: the two unacknowledged first, then new ones
    for i in range(10, 13):
        pub.basic_publish("", queue, f"m{i}".encode())
    wait_for(pump(lambda: len(got["second"]) >= 5), 60, "the second consumer's 5 messages")
    second.process_data_events(time_limit=0.5)
    assert [b for b, _ in got["second"]] == [b"m8", b"m9", b"m10", b"m11", b"m12"]
    assert [r for _, r in got["second"]] == [True, True, False, False, False]
    assert len(got["first"]) == 10
    second.close()
    setup.close()


def queue_exists(conn, queue):
    ch = conn.channel()
    try:
        ch.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as closed:
        assert closed.reply_code == 404
        return False
    ch.close()
    return True


def test_expires_deletes_a_queue_unused_for_that_long(daemon, uniq):
    used, unused = f"used{uniq}", f"unused{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    # declared first, so it would expire first if its consumer did not count
    ch.queue_declare(used, durable=True, arguments={"x-expires": 800})
    consumer = conn.channel()
    tag = consumer.basic_consume(used, lambda c, m, p, b: c.basic_ack(m.delivery_tag))
    ch.queue_declare(unused, durable=True, arguments={"x-expires": 800})
    wait_for(lambda: not queue_exists(conn, unused), 30, f"{unused} to expire")
    assert queue_exists(conn, used)  # its consumer keeps it
    consumer.basic_cancel(tag)  # unused from now on
    wait_for(lambda: not queue_exists(conn, used), 30, f"{used} to expire")
    conn.close()


def test_max_length_drop_head_keeps_the_last_n(daemon, uniq):
    conn = pika_connect(daemon)
    ch = conn.channel()
    dlx, dead = dead_letter_exchange(ch, uniq, "overflow")
    queue = f"bounded{uniq}"
    ch.queue_declare(queue, durable=True, arguments={
        "x-max-length": 3, "x-overflow": "drop-head", "x-dead-letter-exchange": dlx,
        "x-dead-letter-routing-key": "overflow"})
    dead_letters = []
    ch.basic_consume(dead, lambda c, m, p, b: (dead_letters.append((p, b)),
                                               c.basic_ack(m.delivery_tag)))
    pub = conn.channel()
    pub.confirm_delivery()
    # one record key: one partition, so "the oldest" is the publish order
    for i in range(8):
        pub.basic_publish("", queue, f"m{i}".encode(),
                          pika.BasicProperties(headers={"kafka-key": "k"}))
    # 8 ready, at most 3 kept: the consumer that comes now gets the last 3
    got = []
    consumer = conn.channel()
    consumer.basic_consume(queue, lambda c, m, p, b: (got.append(b),
                                                      c.basic_ack(m.delivery_tag)))
    drain_until(conn, lambda: len(got) >= 3 and len(dead_letters) >= 5, 60,
                "3 deliveries and 5 dead letters")
    conn.process_data_events(time_limit=0.5)
    assert got == [b"m5", b"m6", b"m7"]
    assert sorted(b for _, b in dead_letters) == [f"m{i}".encode() for i in range(5)]
    for props, _ in dead_letters:
        assert props.headers["x-first-death-reason"] == "maxlen"
        assert props.headers["x-first-death-queue"] == queue
    conn.close()


def test_max_length_bytes_drop_head_keeps_the_newest_that_fit(daemon, uniq):
    """x-max-length-bytes 1000 with 8 bodies of 200 bytes: the consumer that
    comes gets the newest 5 (1,000 bytes), the 3 oldest are dead-lettered with
    reason maxlen. Kafka tells offsets, not bytes: kbridged counts the ready
    records at the mean body size it has seen (exact for equal bodies)."""
    conn = pika_connect(daemon)
    ch = conn.channel()
    dlx, dead = dead_letter_exchange(ch, uniq, "overflow")
    queue = f"bytes{uniq}"
    ch.queue_declare(queue, durable=True, arguments={
        "x-max-length-bytes": 1000, "x-dead-letter-exchange": dlx,
        "x-dead-letter-routing-key": "overflow"})
    dead_letters = []
    ch.basic_consume(dead, lambda c, m, p, b: (dead_letters.append((p, b)),
                                               c.basic_ack(m.delivery_tag)))
    pub = conn.channel()
    pub.confirm_delivery()
    bodies = [f"m{i}".encode().ljust(200, b".") for i in range(8)]
    for body in bodies:  # one record key: one partition, publish order
        pub.basic_publish("", queue, body, pika.BasicProperties(headers={"kafka-key": "k"}))
    got = []
    consumer = conn.channel()
    consumer.basic_consume(queue, lambda c, m, p, b: (got.append(b),
                                                      c.basic_ack(m.delivery_tag)))
    drain_until(conn, lambda: len(got) >= 5 and len(dead_letters) >= 3, 60,
                "5 deliveries and 3 dead letters")
    conn.process_data_events(time_limit=0.5)
    assert got == bodies[3:]
    assert sorted(b for _, b in dead_letters) == bodies[:3]
    for props, _ in dead_letters:
        assert props.headers["x-first-death-reason"] == "maxlen"
    conn.close()


def metric(daemon, series):
    """The value of one metrics series (0 when absent)."""
    for line in daemon.http("/metrics")[1].splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_without_a_dead_letter_exchange_expired_and_overflow_are_dropped_and_counted(daemon,
                                                                                    uniq):
    conn = pika_connect(daemon)
    ch = conn.channel()
    ttl, bounded = f"ttl{uniq}", f"cap{uniq}"
    # longer than the group's first join takes (the first message must arrive in time)
    ch.queue_declare(ttl, durable=True, arguments={"x-message-ttl": 5000})
    ch.queue_declare(bounded, durable=True, arguments={"x-max-length": 2})
    expired_before = metric(daemon, 'kbridge_expired_total{kind="queue"}')
    dropped_before = metric(daemon, "kbridge_maxlen_dropped_total")
    pub = conn.channel()
    pub.confirm_delivery()

    # x-max-length 2: of 5 waiting, the consumer that comes gets the last 2
    for i in range(5):
        pub.basic_publish("", bounded, f"b{i}".encode(),
                          pika.BasicProperties(headers={"kafka-key": "k"}))
    kept = []
    ch.basic_consume(bounded, lambda c, m, p, b: (kept.append(b), c.basic_ack(m.delivery_tag)))
    drain_until(conn, lambda: len(kept) >= 2, 60, "the 2 kept messages")

    # x-message-ttl: a held delivery (prefetch 1) keeps the others waiting past the TTL
    held = []
    consumer = conn.channel()
    consumer.basic_qos(prefetch_count=1)
    consumer.basic_consume(ttl, lambda c, m, p, b: held.append((m.delivery_tag, b)))
    pub.basic_publish("", ttl, b"first")
    drain_until(conn, lambda: held, 60, "the first message")
    published = time.monotonic()
    for i in range(3):
        pub.basic_publish("", ttl, f"old{i}".encode())
    wait_for(lambda: time.monotonic() > published + 5.5, 10, "the TTL to pass")
    consumer.basic_ack(held[0][0])  # the waiting ones are now too old: not delivered
    wait_for(lambda: conn.process_data_events(time_limit=0) or
             metric(daemon, 'kbridge_expired_total{kind="queue"}') >= expired_before + 3, 30,
             "the expired messages counted")
    pub.basic_publish("", ttl, b"new")
    drain_until(conn, lambda: len(held) >= 2, 60, "the new message")
    consumer.basic_ack(held[1][0])
    conn.process_data_events(time_limit=0.5)
    assert [b for _, b in held] == [b"first", b"new"]
    assert kept == [b"b3", b"b4"]
    assert metric(daemon, 'kbridge_expired_total{kind="queue"}') == expired_before + 3
    assert metric(daemon, "kbridge_maxlen_dropped_total") == dropped_before + 3
    conn.close()


@pytest.fixture
def refresh_daemon(kbridged_factory, bootstrap, password_hash):
    """The daemon fixture with a shorter queues.overflow_refresh."""
    config = base_config(bootstrap, kafka=dict(KAFKA),
                         auth={"anonymous": True, "users": [
                             {"name": USER, "password_hash": password_hash,
                              "publish": [".*"], "consume": [".*"]}]},
                         queues={"overflow_refresh": "250ms"})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    return kbridged_factory(config)


def publish_confirmed(channel, queue, body):
    """Publish with confirms: True when acked, False when nacked."""
    try:
        channel.basic_publish("", queue, body, pika.BasicProperties(headers={"kafka-key": "k"}))
        return True
    except pika.exceptions.NackError:
        return False


def test_max_length_reject_publish_refuses_publishes_at_the_limit(refresh_daemon, uniq):
    daemon = refresh_daemon
    queue = f"capped{uniq}"
    arguments = {"x-max-length": 5, "x-overflow": "reject-publish"}
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue, durable=True, arguments=arguments)
    ch.queue_declare(queue, durable=True, arguments=arguments)  # redeclared alike
    pub = conn.channel()
    pub.confirm_delivery()
    for i in range(5):
        assert publish_confirmed(pub, queue, f"m{i}".encode()), f"m{i} was nacked"
    figure = f'kbridge_overflow_queue_ready{{kind="queue",destination="{queue}"}}'
    rejected = f'kbridge_overflow_rejected_total{{kind="queue",destination="{queue}"}}'
    # the lookups go on while publishes come: one starts after the last
    wait_for(lambda: metric(daemon, figure) == 5, 30, "kbridged's figure of 5 ready")

    # 0-9-1 with confirms: basic.nack, as RabbitMQ; the channel stays open
    assert not publish_confirmed(pub, queue, b"over")
    assert metric(daemon, rejected) == 1
    # STOMP: an ERROR carrying the receipt-id, naming the queue and its limit
    stomp = Client(daemon)
    stomp.send(f"/amq/queue/{queue}", "over-stomp", receipt="r-over")
    error = stomp.wait_error()
    assert error.headers["receipt-id"] == "r-over"
    assert f"queue '{queue}' in vhost '/' is full (x-max-length 5, x-overflow " \
           "reject-publish" in error.headers["message"] + error.body
    assert "r-over" not in stomp.recorder.receipts
    stomp.close()
    # AMQP 1.0: rejected with amqp:resource-limit-exceeded naming the queue
    sent = send_windowed(daemon, f"/queues/{queue}", [Message(body=b"over-amqp")])
    assert sent.accepted == []
    [(_, condition)] = sent.rejected
    assert condition.name == "amqp:resource-limit-exceeded"
    assert f"queue '{queue}'" in condition.description
    assert metric(daemon, rejected) == 3

    # the queue holds exactly the 5 published before it was full
    got = []
    consumer = conn.channel()
    consumer.basic_consume(queue, lambda c, m, p, b: (got.append(b),
                                                      c.basic_ack(m.delivery_tag)))
    drain_until(conn, lambda: len(got) >= 5, 60, "the 5 messages")
    conn.process_data_events(time_limit=0.5)
    assert got == [f"m{i}".encode() for i in range(5)]

    # consumed and acknowledged: once the group's commit moved and a lookup
    # saw it, the same probe is accepted (each refused attempt asks again)
    def probe_accepted():
        conn.process_data_events(time_limit=0.1)
        return publish_confirmed(pub, queue, b"probe")
    wait_for(probe_accepted, 60, "a publish accepted after the queue was drained")
    drain_until(conn, lambda: len(got) >= 6, 60, "the probe")
    conn.process_data_events(time_limit=0.5)
    assert got[5:] == [b"probe"]
    conn.close()


def test_max_length_bytes_reject_publish_refuses_at_the_limit(refresh_daemon, uniq):
    """x-max-length-bytes 500 with reject-publish and 100-byte bodies: the
    first 5 are confirmed; once kbridged's figure says 5 ready (500 bytes at
    their mean size), a publish is nacked naming the byte limit."""
    daemon = refresh_daemon
    queue = f"bytecap{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(queue, durable=True, arguments={"x-max-length-bytes": 500,
                                                     "x-overflow": "reject-publish"})
    pub = conn.channel()
    pub.confirm_delivery()
    for i in range(5):
        assert publish_confirmed(pub, queue, f"m{i}".encode().ljust(100, b".")), f"m{i} nacked"
    figure = f'kbridge_overflow_queue_ready{{kind="queue",destination="{queue}"}}'
    wait_for(lambda: metric(daemon, figure) == 5, 30, "kbridged's figure of 5 ready")
    assert not publish_confirmed(pub, queue, b"over".ljust(100, b"."))
    stomp = Client(daemon)
    stomp.send(f"/amq/queue/{queue}", "over-stomp", receipt="r-over")
    error = stomp.wait_error()
    assert f"queue '{queue}' in vhost '/' is full (x-max-length-bytes 500, x-overflow " \
           "reject-publish; about 500 bytes ready" in error.headers["message"] + error.body
    stomp.close()
    got = []
    consumer = conn.channel()
    consumer.basic_consume(queue, lambda c, m, p, b: (got.append(b),
                                                      c.basic_ack(m.delivery_tag)))
    drain_until(conn, lambda: len(got) >= 5, 60, "the 5 messages")
    conn.process_data_events(time_limit=0.5)
    assert [b.rstrip(b".") for b in got] == [f"m{i}".encode() for i in range(5)]
    conn.close()


def fill_to_the_limit(daemon, pub, exchange, key, count, queue):
    """Publish `count` confirmed messages and wait until kbridged's figure of
    `queue` says so."""
    for i in range(count):
        pub.basic_publish(exchange, key, f"m{i}".encode())
    figure = f'kbridge_overflow_queue_ready{{kind="queue",destination="{queue}"}}'
    wait_for(lambda: metric(daemon, figure) == count, 30, f"kbridged's figure of {count} ready")


def test_reject_publish_refuses_the_whole_publish_through_an_exchange(refresh_daemon, uniq):
    daemon = refresh_daemon
    conn = pika_connect(daemon)
    ch = conn.channel()
    exchange, capped, other = f"route{uniq}", f"capped{uniq}", f"other{uniq}"
    ch.exchange_declare(exchange, exchange_type="direct", durable=True)
    ch.queue_declare(capped, durable=True,
                     arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    ch.queue_declare(other, durable=True)
    ch.queue_bind(capped, exchange, routing_key="k")
    ch.queue_bind(other, exchange, routing_key="k")
    ch.queue_bind(other, exchange, routing_key="elsewhere")
    pub = conn.channel()
    pub.confirm_delivery()
    fill_to_the_limit(daemon, pub, exchange, "k", 2, capped)
    # key k reaches the full queue: refused for both queues (one record serves both)
    with pytest.raises(pika.exceptions.NackError):
        pub.basic_publish(exchange, "k", b"over")
    pub.basic_publish(exchange, "elsewhere", b"elsewhere")  # reaches only `other`
    got = {capped: [], other: []}
    for queue in (capped, other):
        ch.basic_consume(queue, lambda c, m, p, b, q=queue: (got[q].append(b),
                                                             c.basic_ack(m.delivery_tag)))
    drain_until(conn, lambda: len(got[capped]) >= 2 and len(got[other]) >= 3, 60,
                "2 + 3 messages")
    conn.process_data_events(time_limit=0.5)
    assert got[capped] == [b"m0", b"m1"]
    assert sorted(got[other]) == [b"elsewhere", b"m0", b"m1"]

    # a deleted queue's figure goes with it (at the latest when another
    # reject-publish queue gets one)
    series = f'kbridge_overflow_queue_ready{{kind="queue",destination="{capped}"}}'
    assert series in daemon.http("/metrics")[1]
    ch.queue_delete(capped)
    later = f"later{uniq}"
    ch.queue_declare(later, durable=True,
                     arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    pub.basic_publish("", later, b"first")
    wait_for(lambda: series not in daemon.http("/metrics")[1], 30,
             "the deleted queue's overflow series to go")
    conn.close()


def test_reject_publish_fails_a_transaction_that_sends_to_a_full_queue(refresh_daemon, uniq):
    daemon = refresh_daemon
    capped, other = f"capped{uniq}", f"other{uniq}"
    conn = pika_connect(daemon)
    ch = conn.channel()
    ch.queue_declare(capped, durable=True,
                     arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.queue_declare(other, durable=True)
    pub = conn.channel()
    pub.confirm_delivery()
    fill_to_the_limit(daemon, pub, "", capped, 1, capped)
    stomp = Client(daemon)
    stomp.conn.begin("t1")
    # one record key for both senders: one partition, so Kafka's order is the send order
    stomp.conn.send(f"/amq/queue/{other}", "in-tx",
                    headers={"transaction": "t1", "kafka-key": "k"})
    stomp.conn.send(f"/amq/queue/{capped}", "over", headers={"transaction": "t1"})
    stomp.conn.commit("t1", headers={"receipt": "c1"})
    error = stomp.wait_error()
    assert error.headers["receipt-id"] == "c1"
    assert "transaction t1 not committed" in error.headers["message"]
    assert f"queue '{capped}' in vhost '/' is full (x-max-length 1" in error.body
    stomp.close()
    # 0-9-1 tx.commit: the channel is closed with 506, naming the queue
    tx = conn.channel()
    tx.tx_select()
    tx.basic_publish("", other, b"in-091-tx", pika.BasicProperties(headers={"kafka-key": "k"}))
    tx.basic_publish("", capped, b"over-091")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        tx.tx_commit()
    assert closed.value.reply_code == 506
    assert closed.value.reply_text.startswith("RESOURCE_ERROR - ")
    assert f"queue '{capped}' in vhost '/' is full" in closed.value.reply_text
    # none of the transactions' sends was written: `other` starts with a later one
    pub.basic_publish("", other, b"after", pika.BasicProperties(headers={"kafka-key": "k"}))
    got = []
    ch.basic_consume(other, lambda c, m, p, b: (got.append(b), c.basic_ack(m.delivery_tag)))
    drain_until(conn, lambda: got, 60, "the message sent after the transaction")
    conn.process_data_events(time_limit=0.5)
    assert got == [b"after"]
    conn.close()
