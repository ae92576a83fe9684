# SPDX-License-Identifier: Apache-2.0
"""Fault suite: kbridged under Kafka faults injected with kbridge-devkafka
(brokers down, leaders and coordinators moving, produce/commit requests
failing), under SIGTERM and kill -9 with load on both protocols, under a
connection churn and a flood of unacknowledged deliveries.

In every case the test proves, with the clients' own evidence:
  - no confirmed message is missing from Kafka (STOMP: a RECEIPT came;
    AMQP: the delivery was settled accepted);
  - no unsettled message is lost: what a consumer did not ACK/accept comes
    again (after a restart, a rebalance or a disconnect);
  - duplicates happen only where at-least-once allows them, and are counted
    (printed with the test's figures);
  - memory stays bounded (RSS; not under AddressSanitizer, whose quarantine
    RSS measures instead);
  - the daemon serves other clients throughout (a bystander's round trip).

Fault injection needs the dev broker, so these tests use their own
`devkafka` (also when KBRIDGE_TEST_BOOTSTRAP points at a real cluster).
"""

import os
import re
import signal
import socket
import threading
import time
import uuid

import pytest
from proton import Message
from proton.utils import SendException

from amqp_client import WindowedSender, body_of, connect, run_in_thread
from conftest import DevKafka, under_sanitizer, wait_for
from stomp_util import Client
from test_stomp_errors import rss_kib
from test_stomp_queues import (committed_offsets, consumer_client, end_offsets, metrics,
                               queue_config, read_topic, send_all)


# ---- helpers ------------------------------------------------------------------------------

class Publisher:
    """A STOMP client on a thread: SENDs with a receipt each, at most
    `window` unconfirmed and at most `rate` per second (the dev broker keeps
    only ~5 MiB per partition: an unpaced flood would outrun it), until
    stopped. `confirmed` are the bodies whose RECEIPT came."""

    def __init__(self, daemon, destination, window=200, prefix="s", rate=2000):
        self.client = Client(daemon)
        self.destination = destination
        self.window = window
        self.prefix = prefix
        self.rate = rate
        self.sent = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        recorder = self.client.recorder
        i = 0
        started = time.monotonic()
        try:
            while not self.stop_event.is_set():
                ahead = i / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)  # pacing, not waiting for a condition
                if len(self.sent) - len(recorder.receipts) >= self.window:
                    if recorder.disconnected.wait(0.002) or recorder.errors:
                        return
                    continue
                body = f"{self.prefix}{i}"
                self.client.send(self.destination, body, headers={"kafka-key": f"k{i % 8}"},
                                 receipt=f"r-{body}")
                self.sent.append(body)
                i += 1
        except Exception:
            pass  # the daemon went away (kill -9)

    @property
    def confirmed(self):
        return {r[2:] for r in list(self.client.recorder.receipts)}

    def stop(self, wait_confirmed=True, timeout=60):
        self.stop_event.set()
        self.thread.join(timeout)
        if wait_confirmed:
            wait_for(lambda: len(self.confirmed) == len(self.sent) or self.client.recorder.errors,
                     timeout, f"receipts for all {len(self.sent)} SENDs")

    def close(self):
        self.stop_event.set()
        self.client.close()


class AmqpPublisher(threading.Thread):
    """An AMQP sender on a thread (Qpid Proton, blocking): one transfer at a
    time, each waiting for its outcome, until stopped or the daemon is gone.
    `accepted` are the bodies settled accepted."""

    def __init__(self, daemon, address, prefix="a"):
        super().__init__(daemon=True)
        self.conn = connect(daemon)
        self.sender = self.conn.create_sender(address)
        self.prefix = prefix
        self.accepted = []
        self.stop_event = threading.Event()
        self.start()

    def run(self):
        i = 0
        try:
            while not self.stop_event.is_set():
                body = f"{self.prefix}{i}"
                self.sender.send(Message(body=body.encode(), durable=True,
                                         properties={"kafka-key": f"k{i % 8}"}), timeout=30)
                self.accepted.append(body)
                i += 1
        except Exception:
            return  # the daemon went away (SIGTERM, kill -9)

    def close(self):
        self.stop_event.set()
        self.join(30)
        try:
            self.conn.close()
        except Exception:
            pass


def amqp_sender(daemon, address, count, window=200, prefix="a"):
    """A WindowedSender on a thread (Qpid Proton); returns (handler, container)."""
    host, port = daemon.host_port("amqp")
    messages = [Message(body=f"{prefix}{i}".encode(), durable=True,
                        properties={"kafka-key": f"k{i % 8}"}) for i in range(count)]
    handler = WindowedSender(f"amqp://{host}:{port}", address, messages, window=window)
    container, _ = run_in_thread(handler)
    return handler, container


def accepted_bodies(handler, prefix="a"):
    return {f"{prefix}{i}" for i in list(handler.accepted)}


def stored_bodies(bootstrap, topic):
    records = read_topic(bootstrap, topic)
    return records, [r.value().decode() for r in records]


def account(name, confirmed, stored, extra=""):
    """Assert every confirmed body is stored; print the figures; return duplicates."""
    missing = set(confirmed) - set(stored)
    duplicates = len(stored) - len(set(stored))
    print(f"\n{name}: {len(confirmed)} confirmed, {len(stored)} records in Kafka,"
          f" {duplicates} duplicate records, {len(missing)} missing{extra}")
    assert not missing, f"{len(missing)} confirmed messages are not in Kafka: {sorted(missing)[:5]}"
    return duplicates


def bystander_round_trip(daemon, queue="bystander"):
    """Another client sends with a receipt and receives it back: the daemon serves."""
    token = uuid.uuid4().hex[:8]
    client, acker = consumer_client(daemon, f"/queue/{queue}", prefetch=10)
    try:
        sender = Client(daemon)
        try:
            send_all(sender, f"/queue/{queue}", [(f"ping-{token}", {})], timeout=60)
        finally:
            sender.close()
        wait_for(lambda: f"ping-{token}" in acker.bodies(), 60, "the bystander's message back")
    finally:
        client.close()


def wait_assigned(daemon, queue, timeout=30):
    daemon.wait_log(rf"consumer kbridge\.q\.{re.escape(queue)}: assigned [1-9]", timeout=timeout)


def memory_bounded(daemon, before_kib, limit_mib, what):
    if under_sanitizer(daemon):
        print(f"{what}: sanitizer build (ASan or TSan), RSS growth not asserted")
        return
    after = rss_kib(daemon)
    print(f"{what}: RSS {before_kib / 1024:.1f} -> {after / 1024:.1f} MiB")
    assert after - before_kib < limit_mib * 1024, f"RSS grew by {(after - before_kib) / 1024:.1f} MiB"


# ---- 1. a broker down during confirmed publishing -----------------------------------------

def test_broker_down_for_seconds_during_confirmed_publishing(kbridged_factory, devkafka):
    daemon = kbridged_factory(queue_config(devkafka.bootstrap))
    publisher = Publisher(daemon, "/queue/outage")
    try:
        wait_for(lambda: len(publisher.confirmed) >= 300, 60, "300 receipts before the outage")
        assert devkafka.command("broker all down") == "ok"
        down_at = time.monotonic()
        # the daemon still serves while Kafka is away: new clients connect, ops answers
        bystander = Client(daemon)
        assert daemon.http("/metrics")[0] == 200
        bystander.close()
        time.sleep(max(0.0, 4.0 - (time.monotonic() - down_at)))  # the outage lasts 4 s
        confirmed_during = len(publisher.confirmed)
        assert devkafka.command("broker all up") == "ok"
        wait_for(lambda: len(publisher.confirmed) >= confirmed_during + 300, 90,
                 "300 more receipts after the broker is back")
        publisher.stop()
        assert not publisher.client.recorder.errors, publisher.client.recorder.errors[0].body
        _, stored = stored_bodies(devkafka.bootstrap, "outage")
        account("broker down 4 s", publisher.confirmed, stored,
                f"; {len(publisher.sent)} sent, every one confirmed after the outage")
        assert len(publisher.confirmed) == len(publisher.sent)
        bystander_round_trip(daemon)
    finally:
        publisher.close()


# ---- 2. partition leaders moving ----------------------------------------------------------

def test_partition_leaders_move_during_amqp_publishing_and_stomp_consuming(kbridged_factory):
    dk = DevKafka(brokers=3)
    try:
        assert dk.command("topic create leaders 4 3") == "ok"
        daemon = kbridged_factory(queue_config(dk.bootstrap))
        consumer, acker = consumer_client(daemon, "/queue/leaders", prefetch=50)
        wait_assigned(daemon, "leaders")
        count = 2000
        handler, _ = amqp_sender(daemon, "/queue/leaders", count)
        moves = 0
        for round_ in range(1, 7):
            before = len(handler.accepted)
            for partition in range(4):
                assert dk.command(f"leader leaders {partition} {(partition + round_) % 3 + 1}") == "ok"
                moves += 1
            if handler.done.is_set():
                break
            wait_for(lambda: len(handler.accepted) >= min(count, before + 150) or
                     handler.done.is_set(), 60, "sends accepted after the leaders moved")
        assert handler.done.wait(120), f"{handler.settled()} of {count} settled"
        assert handler.error is None, handler.error
        assert not handler.rejected, handler.rejected[:3]
        accepted = accepted_bodies(handler)
        assert len(accepted) == count
        try:
            wait_for(lambda: set(acker.bodies()) >= accepted, 120,
                     f"the consumer to get all {count} messages")
        except AssertionError:
            missing = accepted - set(acker.bodies())
            print(f"consumer got {len(set(acker.bodies()))} distinct of {count}; missing e.g."
                  f" {sorted(missing)[:5]}\n{metrics(daemon)}")
            raise
        _, stored = stored_bodies(dk.bootstrap, "leaders")
        received = acker.bodies()
        account(f"{moves} leader moves", accepted, stored,
                f"; consumer got {len(received)} ({len(received) - len(set(received))} again)")
        consumer.close()
        bystander_round_trip(daemon)
    finally:
        dk.stop()


# ---- 3. produce requests failing ----------------------------------------------------------

def test_retriable_produce_errors_are_absorbed_and_a_fatal_one_refuses_only_its_messages(
        kbridged_factory, devkafka):
    # librdkafka remembers a topic's permanent error until its next metadata
    # refresh: refresh often so that the refused topic's recovery is seen
    config = queue_config(devkafka.bootstrap)
    config["kafka"]["properties"] = {"topic.metadata.refresh.interval.ms": "2000"}
    daemon = kbridged_factory(config)
    bystander = Client(daemon)
    send_all(bystander, "/queue/produce", [("warm-up", {})])

    # retriable: librdkafka retries, every SEND is confirmed
    assert devkafka.command("errors Produce 5 NOT_LEADER_FOR_PARTITION") == "ok"
    client = Client(daemon)
    send_all(client, "/queue/produce", [(f"retried-{i}", {}) for i in range(50)])
    client.close()

    # non-retriable, over STOMP: that SEND gets an ERROR (with its receipt-id), no RECEIPT
    refused = Client(daemon)
    send_all(refused, "/queue/refused", [("before", {})])
    assert devkafka.command("errors Produce 1 TOPIC_AUTHORIZATION_FAILED") == "ok"
    refused.send("/queue/refused", "refused-stomp", receipt="refused")
    error = refused.wait_error(timeout=60)
    assert error.headers.get("receipt-id") == "refused"
    assert "Topic authorization failed" in error.headers.get("message", "")
    assert "refused" not in refused.recorder.receipts

    # meanwhile another destination is not affected at all
    send_all(bystander, "/queue/produce", [(f"bystander-{i}", {}) for i in range(20)])

    # over AMQP: the transfer is rejected, the link carries on, and the topic
    # takes messages again once librdkafka refreshed its metadata
    conn = connect(daemon)
    sender = conn.create_sender("/queue/refused")
    with pytest.raises(SendException):
        sender.send(Message(body=b"refused-amqp"), timeout=60)
    attempts = []

    def sent_again():
        body = f"after-{len(attempts)}"
        attempts.append(body)
        try:
            sender.send(Message(body=body.encode()), timeout=30)
            return body
        except SendException:
            return None
    after = wait_for(sent_again, 30, "the refused topic to take messages again", interval=0.2)
    conn.close()
    bystander.close()

    _, stored = stored_bodies(devkafka.bootstrap, "produce")
    confirmed = ({"warm-up"} | {f"retried-{i}" for i in range(50)} |
                 {f"bystander-{i}" for i in range(20)})
    account("produce errors", confirmed, stored)
    _, stored_refused = stored_bodies(devkafka.bootstrap, "refused")
    account("refused topic", {"before", after}, stored_refused,
            f"; {len(attempts)} AMQP sends until it recovered")
    assert not {"refused-stomp", "refused-amqp"} & set(stored_refused)
    assert set(stored_refused) <= {"before"} | set(attempts)


# ---- 4. the group coordinator failing -----------------------------------------------------

def test_group_coordinator_failing_during_consumption(kbridged_factory):
    dk = DevKafka(brokers=3)
    try:
        assert dk.command("topic create coord 4 3") == "ok"
        daemon = kbridged_factory(queue_config(dk.bootstrap))
        producer = Client(daemon)
        count = 1000
        send_all(producer, "/queue/coord",
                 [(f"c{i}", {"kafka-key": f"k{i % 8}"}) for i in range(count)])
        consumer, acker = consumer_client(daemon, "/queue/coord", prefetch=20)
        wait_for(lambda: len(acker.acked_at) >= 200, 60, "200 acks before the fault")
        group = "kbridge.q.coord"
        for command in ("errors OffsetCommit 5 COORDINATOR_NOT_AVAILABLE",
                        "errors Heartbeat 3 NOT_COORDINATOR",
                        f"coordinator group {group} 2"):
            assert dk.command(command) == "ok"
        wait_for(lambda: len(acker.acked_at) >= 500, 90, "500 acks after the first move")
        assert dk.command(f"coordinator group {group} 3") == "ok"
        bystander_round_trip(daemon)
        wanted = {f"c{i}" for i in range(count)}
        wait_for(lambda: set(acker.bodies()) >= wanted, 120, f"all {count} messages")
        received = acker.bodies()
        consumer.close()
        # every ACK is committed in the end: nothing acked comes again
        ends = end_offsets(dk.bootstrap, "coord")
        wait_for(lambda: committed_offsets(dk.bootstrap, group, "coord") == ends, 60,
                 f"group {group} committed up to the end {ends}", interval=0.2)
        print(f"\ncoordinator moves: {len(received)} deliveries of {count} messages,"
              f" {len(received) - len(set(received))} redelivered (at-least-once)")
    finally:
        dk.stop()


# ---- 5. SIGTERM under load ----------------------------------------------------------------

def test_sigterm_under_load_drains_confirms_and_commits_and_exits_0(kbridged_factory, devkafka):
    grace = 10
    config = queue_config(devkafka.bootstrap)
    config["shutdown_grace"] = f"{grace}s"
    daemon = kbridged_factory(config)
    consumer, acker = consumer_client(daemon, "/queue/term", prefetch=50)
    wait_assigned(daemon, "term")
    publisher = Publisher(daemon, "/queue/term")
    amqp = AmqpPublisher(daemon, "/queue/term")
    try:
        wait_for(lambda: len(publisher.confirmed) >= 500 and len(amqp.accepted) >= 100 and
                 len(acker.acked_at) >= 300, 90, "load on both protocols and acks")
        # The consumer stops acking and the daemon has processed every ACK it
        # wrote (an ACK still on the wire at SIGTERM is not settled: its message
        # comes again, as at-least-once allows); deliveries and publishing go on.
        acker.ack = False
        with acker.lock:
            acked = {f.body for _, f in acker.acked_at}
        wait_for(lambda: metrics(daemon).get(
            'kbridge_destination_acked_total{kind="queue",destination="term"}', 0) >= len(acked),
            30, f"the daemon to count {len(acked)} ACKs")
        daemon.signal(signal.SIGTERM)
        started = time.monotonic()
        code = daemon.proc.wait(grace + 10)
        took = time.monotonic() - started
        assert code == 0, f"exit status {code}"
        assert took <= grace + 5, f"took {took:.1f} s with a {grace} s grace"
        publisher.stop(wait_confirmed=False)
        amqp.close()
        records, stored = stored_bodies(devkafka.bootstrap, "term")
        confirmed = publisher.confirmed | set(amqp.accepted)
        account(f"SIGTERM (exit 0 in {took:.1f} s)", confirmed, stored)
        # every settled offset was committed: per partition, the commit reached
        # the first message that was not acked (everything below it was)
        committed = committed_offsets(devkafka.bootstrap, "kbridge.q.term", "term")
        for partition in {r.partition() for r in records}:
            in_partition = [r for r in records if r.partition() == partition]
            first_unacked = min((r.offset() for r in in_partition
                                 if r.value().decode() not in acked),
                                default=max(r.offset() for r in in_partition) + 1)
            assert committed.get(partition, -1) >= first_unacked, (
                f"partition {partition}: committed {committed.get(partition)}, but everything"
                f" below {first_unacked} was acked")
    finally:
        publisher.close()
        amqp.close()
        consumer.close()


# ---- 6. kill -9 under load on both protocols ----------------------------------------------

class AmqpAcceptor(threading.Thread):
    """An AMQP receiver accepting every message; records what it accepted."""

    def __init__(self, daemon, address):
        super().__init__(daemon=True)
        self.conn = connect(daemon)
        self.receiver = self.conn.create_receiver(address, credit=50)
        self.accepted = []
        self.stop_event = threading.Event()
        self.start()

    def run(self):
        try:
            while not self.stop_event.is_set():
                try:
                    message = self.receiver.receive(timeout=0.2)
                except Exception as e:  # Timeout, or the connection died
                    if "Timeout" in type(e).__name__:
                        continue
                    return
                self.receiver.accept()
                self.accepted.append(body_of(message).decode())
        except Exception:
            return


def test_kill_9_under_load_on_both_protocols(kbridged_factory, devkafka):
    config = queue_config(devkafka.bootstrap)
    first = kbridged_factory(config, name="before-kill")
    stomp_consumer, acker = consumer_client(first, "/queue/k9", prefetch=20)
    amqp_consumer = AmqpAcceptor(first, "/queue/k9")
    wait_assigned(first, "k9")
    publisher = Publisher(first, "/queue/k9")
    amqp = AmqpPublisher(first, "/queue/k9")
    wait_for(lambda: len(publisher.confirmed) >= 1000 and len(amqp.accepted) >= 100 and
             len(acker.acked_at) + len(amqp_consumer.accepted) >= 500, 90, "load before the kill")
    first.kill()
    publisher.stop(wait_confirmed=False)
    amqp.close()
    amqp_consumer.stop_event.set()
    confirmed = publisher.confirmed | set(amqp.accepted)
    records, stored = stored_bodies(devkafka.bootstrap, "k9")
    duplicates = account("kill -9", confirmed, stored)
    assert duplicates == 0, "the idempotent producer stored a record twice"
    with acker.lock:
        settled = {f.body for _, f in acker.acked_at}
    settled |= set(amqp_consumer.accepted)
    unsettled = set(stored) - settled

    # after the restart every message not settled before the kill comes again
    second = kbridged_factory(config, name="after-restart")
    consumer2, acker2 = consumer_client(second, "/queue/k9", prefetch=100)
    wait_for(lambda: set(acker2.bodies()) >= unsettled, 120,
             f"{len(unsettled)} unsettled messages delivered again")
    again = set(acker2.bodies())
    print(f"kill -9: {len(settled)} settled before, {len(unsettled)} unsettled all delivered"
          f" again, {len(again & settled)} settled ones again (acked after the last commit)")
    consumer2.close()
    stomp_consumer.close()
    publisher.close()


# ---- 7. connection churn ------------------------------------------------------------------

def connection_count(daemon):
    values = metrics(daemon)
    return sum(v for k, v in values.items() if k.startswith("kbridge_connections{"))


def open_fds(daemon):
    return len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))


def test_1000_connections_open_and_close_in_a_loop(kbridged_factory, bootstrap):
    daemon = kbridged_factory(queue_config(bootstrap))
    bystander_round_trip(daemon)  # warm: the queue machinery exists before the baseline
    # the bystander's connections close a moment after its clients leave: the
    # baseline is taken with none open (a count taken while one was still
    # closing made the comparison at the end a race)
    wait_for(lambda: connection_count(daemon) == 0, 30, "the bystander's connections closed")
    base_connections, base_fds, base_rss = 0, open_fds(daemon), rss_kib(daemon)
    host, port = daemon.host_port("stomp")
    amqp_host, amqp_port = daemon.host_port("amqp")
    kinds = {"stomp": 0, "stomp-abrupt": 0, "amqp": 0, "amqp-garbage": 0}
    for i in range(1000):
        kind = ("stomp", "stomp-abrupt", "amqp", "amqp-garbage")[i % 4]
        kinds[kind] += 1
        if kind == "stomp":
            with socket.create_connection((host, port), timeout=10) as s:
                s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0")
                assert s.recv(4096).startswith(b"CONNECTED")
                s.sendall(b"DISCONNECT\nreceipt:bye\n\n\0")
                data = b""
                while b"receipt-id:bye" not in data:
                    chunk = s.recv(4096)
                    assert chunk, "closed before the DISCONNECT receipt"
                    data += chunk
        elif kind == "stomp-abrupt":
            with socket.create_connection((host, port), timeout=10) as s:
                s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n\n\0SEND\ndestination:/queue/x\n")
        elif kind == "amqp":
            conn = connect(daemon)
            conn.close()
        else:
            with socket.create_connection((amqp_host, amqp_port), timeout=10) as s:
                s.sendall(b"AMQP\x03\x01\x00\x00\x00\x00\x00\x20garbage")
        if i % 100 == 99:
            bystander_round_trip(daemon)
    wait_for(lambda: connection_count(daemon) == base_connections, 30,
             f"connections back to {base_connections} (now {connection_count(daemon)})")
    wait_for(lambda: open_fds(daemon) <= base_fds, 30, f"file descriptors back to {base_fds}")
    print(f"\nconnection churn: {kinds}, connections back to {base_connections},"
          f" fds {open_fds(daemon)} (baseline {base_fds})")
    memory_bounded(daemon, base_rss, 20, "connection churn")


# ---- 8. a flood of unacked deliveries -----------------------------------------------------

def test_flood_of_unacked_deliveries_is_bounded_and_all_redelivered(kbridged_factory, bootstrap):
    max_in_flight = 2000
    daemon = kbridged_factory(queue_config(bootstrap, max_in_flight=max_in_flight))
    count = 20000
    producer = Client(daemon)
    send_all(producer, "/queue/flood", [(f"f{i}", {"kafka-key": f"k{i % 8}"})
                                        for i in range(count)], timeout=180)
    producer.close()
    before = rss_kib(daemon)
    # a STOMP subscriber that asks for everything and never ACKs
    hoarder, hoard = consumer_client(daemon, "/queue/flood", prefetch=100000, auto_ack=False)
    # an AMQP receiver with a lot of credit that never settles
    conn = connect(daemon)
    amqp_hoarder = conn.create_receiver("/queue/flood", credit=50000)
    wait_for(lambda: hoard.count() > 0, 60, "deliveries to the hoarders")

    def in_flight():
        values = metrics(daemon)
        return values.get('kbridge_destination_in_flight{kind="queue",destination="flood"}', 0)
    wait_for(lambda: in_flight() >= max_in_flight * 0.9, 60, "the queue to fill its in-flight")
    peak = max(in_flight() for _ in range(20))
    assert peak <= max_in_flight, f"{peak} in flight with queues.max_in_flight {max_in_flight}"
    bystander_round_trip(daemon)
    memory_bounded(daemon, before, 100, "unacked flood")
    hoarded = hoard.count()
    hoarder.close()
    conn.close()
    # everything comes to a consumer that acks, exactly the messages sent
    consumer, acker = consumer_client(daemon, "/queue/flood", prefetch=500)
    wanted = {f"f{i}" for i in range(count)}
    wait_for(lambda: set(acker.bodies()) >= wanted, 180, f"all {count} messages redelivered")
    received = acker.bodies()
    print(f"\nunacked flood: {peak:.0f} in flight at most (limit {max_in_flight}), {hoarded} hoarded"
          f" by STOMP, then {len(received)} deliveries of {count} messages to a good consumer")
    consumer.close()


# ---- 9. attach/detach churn with waiting messages ------------------------------------------

CHURN_MESSAGES = 20
CHURN_TAKE = 3  # each receiver takes this many, then leaves (prefetch window of the same size)


def _churn_receive_amqp(daemon, queue):
    """One AMQP receiver: attach with credit CHURN_TAKE, accept what comes
    (at most CHURN_TAKE, waiting up to 5 s for the first), detach."""
    conn = connect(daemon)
    try:
        receiver = conn.create_receiver(queue, credit=CHURN_TAKE)
        got = []
        while len(got) < CHURN_TAKE:
            try:
                message = receiver.receive(timeout=5 if not got else 1)
            except Exception:
                break
            got.append(body_of(message).decode())
            receiver.accept()
        return got
    finally:
        conn.close()


def _churn_receive_stomp(daemon, queue):
    """One STOMP subscriber: prefetch CHURN_TAKE, ACK the first CHURN_TAKE
    that come (waiting up to 5 s for the first), disconnect."""
    client, acker = consumer_client(daemon, f"/queue/{queue}", prefetch=CHURN_TAKE,
                                    auto_ack=False)
    try:
        try:
            wait_for(lambda: acker.count() >= 1, 5, "a first message")
            wait_for(lambda: acker.count() >= CHURN_TAKE, 1, f"{CHURN_TAKE} messages")
        except AssertionError:
            pass  # the queue had fewer left
        with acker.lock:
            taken = acker.frames[:CHURN_TAKE]
        for frame in taken:
            client.conn.ack(frame.headers["ack"])
        # the ACKs are on the wire before DISCONNECT (its receipt comes after them)
        client.conn.disconnect(receipt="bye")
        return [frame.body for frame in taken]
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["amqp", "stomp"])
def test_attach_detach_churn_with_waiting_messages_delivers_every_message(
        kbridged_factory, bootstrap, protocol):
    """Receivers attach while messages wait, take a few, detach, one after
    another: every message reaches a client before it could be dead-lettered
    (issue 20: an AMQP receiver that attached while messages were waiting
    swallowed them; they were counted delivered, released on each detach
    and dead-lettered after max_deliveries without ever being sent)."""
    queue = f"churn-{protocol}-{uuid.uuid4().hex[:6]}"
    daemon = kbridged_factory(queue_config(bootstrap, max_deliveries=5))
    producer = Client(daemon)
    wanted = [f"c{i}" for i in range(CHURN_MESSAGES)]
    send_all(producer, f"/queue/{queue}", [(b, {"kafka-key": "one"}) for b in wanted])
    producer.close()
    receive = _churn_receive_amqp if protocol == "amqp" else _churn_receive_stomp
    received = []
    rounds = 0
    # enough rounds for every message at CHURN_TAKE each, plus slack for the
    # first attach (the group join) and prefetched messages released on detach
    while len(set(received)) < CHURN_MESSAGES and rounds < 2 * CHURN_MESSAGES:
        received += receive(daemon, queue)
        rounds += 1
    values = metrics(daemon)
    dead = values.get(
        f'kbridge_destination_dead_lettered_total{{kind="queue",destination="{queue}"}}', 0)
    print(f"\n{protocol} attach/detach churn: {len(received)} deliveries of {CHURN_MESSAGES}"
          f" messages in {rounds} receivers, {dead:.0f} dead-lettered")
    assert dead == 0, f"{dead:.0f} messages dead-lettered"
    assert sorted(set(received)) == sorted(wanted), \
        f"missing: {sorted(set(wanted) - set(received))}"
    assert len(received) == CHURN_MESSAGES, "a message accepted twice"
    # one key: one partition, so the queue delivers them in publish order
    assert received == wanted
