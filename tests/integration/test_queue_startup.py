# SPDX-License-Identifier: Apache-2.0
"""Queue start-up latency (issue 20 item 4, architecture §5): how long a subscriber
waits for messages that are already in a queue.

A node joins a queue's consumer group only while it has a local subscriber;
joining costs a rebalance: the broker holds an empty group's first join for
its initial rebalance delay (group.initial.rebalance.delay.ms on Kafka, 3 s
by default; librdkafka's mock, which kbridge-devkafka is, hard-codes 3000 ms).
So kbridged stays in the group for queues.linger (30 s by default) after the
last local subscriber went. What the tests assert is what makes start-up
fast, not a time (speed targets belong in `make bench`; each test prints the
figure it measured: ~10 ms, ~10 ms and ~3.1 s on kbridge-devkafka):

- a subscriber that arrives while the node is in the group gets the waiting
  messages with no rebalance (the node was assigned once);
- a client that comes back within the linger sees no rebalance and no leave;
- the first subscriber of a queue whose group is empty costs exactly one
  join (no join-leave-join);
- and the promises stay: the linger ends with a commit and a leave, a
  lingering node leaves at once when another node joins the group, SIGTERM
  does not wait for a linger. Waits have deadlines."""

import re
import time
import uuid

import pytest

from amqp_client import body_of, connect
from conftest import EXTERNAL_BOOTSTRAP, base_config, wait_for
from stomp_util import Client
from test_stomp_queues import committed_offsets as queue_committed_offsets
from test_stomp_queues import end_offsets as queue_end_offsets

INITIAL_REBALANCE_DELAY_S = 3.0  # librdkafka's mock; Kafka's group.initial.rebalance.delay.ms


@pytest.fixture
def qname():
    """The queue name: fixed on a fresh dev broker, unique on a shared cluster."""
    return f"startup-{uuid.uuid4().hex[:12]}" if EXTERNAL_BOOTSTRAP else "startup"


def startup_config(bootstrap, node_id="test1", kafka_consumer=None, **queues):
    config = base_config(bootstrap, node_id=node_id)
    if kafka_consumer:
        config["kafka"]["consumer"] = kafka_consumer
    if queues:
        config["queues"] = queues
    return config


def metric(daemon, name, queue):
    status, text = daemon.http("/metrics")
    assert status == 200
    series = f'{name}{{kind="queue",destination="{queue}"}} '
    for line in text.splitlines():
        if line.startswith(series):
            return float(line[len(series):])
    return 0.0


def assignments(daemon, queue):
    """How many times the node's consumer of the queue's group was assigned partitions."""
    return len(re.findall(rf"consumer kbridge\.q\.{re.escape(queue)}: assigned [1-9]",
                          daemon.log()))


def wait_assigned(daemon, queue, count=1, timeout=30):
    wait_for(lambda: assignments(daemon, queue) >= count, timeout,
             f"assignment {count} of kbridge.q.{queue}")


def publish(daemon, queue, bodies):
    """SEND each body with a receipt and wait for the last one: all are in Kafka."""
    publisher = Client(daemon)
    try:
        for i, body in enumerate(bodies):
            publisher.send(f"/queue/{queue}", body, receipt=f"r{i}")
        publisher.wait_receipt(f"r{len(bodies) - 1}")
    finally:
        publisher.close()


def wait_fetched(daemon, queue, count, timeout=15):
    """Until `count` records wait in the queue's buffer on this node."""
    wait_for(lambda: metric(daemon, "kbridge_destination_in_flight", queue) >= count, timeout,
             f"{count} records of {queue} fetched by the node", interval=0.05)


def stomp_take(daemon, queue, count, timeout):
    """SUBSCRIBE (auto ack) and receive `count` messages: (client, bodies, seconds)."""
    client = Client(daemon)
    started = time.monotonic()
    client.subscribe(f"/queue/{queue}", f"s-{uuid.uuid4().hex[:6]}", ack="auto")
    frames = client.wait_messages(count, timeout=timeout)
    return client, [f.body for f in frames], time.monotonic() - started


def amqp_take(daemon, queue, count, timeout):
    """Attach a receiver and receive (accept) `count` messages: (connection, bodies, seconds)."""
    conn = connect(daemon)
    started = time.monotonic()
    receiver = conn.create_receiver(queue, credit=count)
    bodies = []
    deadline = started + timeout
    while len(bodies) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out with {len(bodies)} of {count} messages"
        body = body_of(receiver.receive(timeout=left))  # a STOMP body is a data section
        bodies.append(body.decode() if isinstance(body, bytes) else body)
        receiver.accept()
    return conn, bodies, time.monotonic() - started


def close_amqp(conn):
    try:
        conn.close()
    except Exception:
        pass


TAKERS = {"stomp": stomp_take, "amqp": amqp_take}


def close_taken(protocol, handle):
    if protocol == "stomp":
        handle.close()
    else:
        close_amqp(handle)


# ---- 1. the node is in the group: waiting messages go out at once -------------------------

@pytest.mark.parametrize("protocol", sorted(TAKERS))
def test_waiting_messages_reach_a_new_subscriber_at_once_while_the_node_is_in_the_group(
        kbridged_factory, bootstrap, qname, protocol):
    daemon = kbridged_factory(startup_config(bootstrap))
    # a subscriber that holds one unacknowledged message keeps the node in the group
    holder = Client(daemon)
    holder.subscribe(f"/queue/{qname}", "holder", ack="client-individual",
                     headers={"prefetch-count": "1"})
    wait_assigned(daemon, qname)
    bodies = [f"waiting-{i}" for i in range(20)]
    publish(daemon, qname, bodies)
    holder.wait_messages(1)
    wait_fetched(daemon, qname, len(bodies))

    handle, got, seconds = TAKERS[protocol](daemon, qname, len(bodies) - 1, timeout=30)
    print(f"\n{protocol}: 19 waiting messages reached a new subscriber in {seconds * 1000:.0f} ms "
          f"(target 100 ms)")
    held = [f.body for f in holder.recorder.messages]
    assert sorted(got + held) == sorted(bodies)
    assert assignments(daemon, qname) == 1, "a subscriber on a node in the group caused a rebalance"
    close_taken(protocol, handle)
    holder.close()


# ---- 2. a client that comes back within the linger ------------------------------------------

@pytest.mark.parametrize("protocol", sorted(TAKERS))
def test_a_client_back_within_the_linger_sees_no_rebalance_and_gets_its_waiting_messages(
        kbridged_factory, bootstrap, qname, protocol):
    daemon = kbridged_factory(startup_config(bootstrap))
    publish(daemon, qname, ["first"])
    handle, got, _ = TAKERS[protocol](daemon, qname, 1, timeout=30)
    assert got == ["first"]
    close_taken(protocol, handle)
    left_at = time.monotonic()

    # away for 5 s (longer than kbridged's old 2 s linger) while messages arrive
    bodies = [f"while-away-{i}" for i in range(10)]
    publish(daemon, qname, bodies)
    wait_fetched(daemon, qname, len(bodies))
    time.sleep(max(0.0, 5.0 - (time.monotonic() - left_at)))

    handle, got, seconds = TAKERS[protocol](daemon, qname, len(bodies), timeout=30)
    print(f"\n{protocol}: back after {time.monotonic() - left_at - seconds:.1f} s away, "
          f"10 waiting messages in {seconds * 1000:.0f} ms (target 1 s)")
    assert sorted(got) == sorted(bodies)
    assert "leaving the group" not in daemon.log()
    assert assignments(daemon, qname) == 1, "the client's return caused a rebalance"
    close_taken(protocol, handle)


# ---- 3. the first subscriber of a queue whose group is empty ---------------------------------

@pytest.mark.parametrize("protocol", sorted(TAKERS))
def test_the_first_subscriber_of_an_empty_group_waits_only_the_initial_rebalance_delay(
        kbridged_factory, bootstrap, qname, protocol):
    daemon = kbridged_factory(startup_config(bootstrap))
    bodies = [f"before-{i}" for i in range(5)]
    publish(daemon, qname, bodies)
    handle, got, seconds = TAKERS[protocol](daemon, qname, len(bodies), timeout=30)
    print(f"\n{protocol}: first subscriber of an empty group got 5 messages in "
          f"{seconds * 1000:.0f} ms (target {INITIAL_REBALANCE_DELAY_S + 0.5:.1f} s: the "
          f"broker's initial rebalance delay + 0.5 s)")
    assert sorted(got) == sorted(bodies)
    assert assignments(daemon, qname) == 1, "the first subscriber caused more than one join"
    assert "leaving the group" not in daemon.log()
    close_taken(protocol, handle)


# ---- 4. the promises that stay --------------------------------------------------------------

def committed_offsets(bootstrap, group, topic):
    """{partition: committed offset} of the partitions the group committed."""
    return {p: o for p, o in queue_committed_offsets(bootstrap, group, topic).items() if o >= 0}


def end_offsets(bootstrap, topic):
    """{partition: end offset} of the partitions that hold records."""
    return {p: e for p, e in queue_end_offsets(bootstrap, topic).items() if e > 0}


def test_when_the_linger_ends_the_node_commits_and_leaves_the_group(
        kbridged_factory, bootstrap, qname):
    daemon = kbridged_factory(startup_config(bootstrap, linger="1s"))
    bodies = [f"m-{i}" for i in range(8)]
    publish(daemon, qname, bodies)
    client, got, _ = stomp_take(daemon, qname, len(bodies), timeout=30)
    assert sorted(got) == sorted(bodies)
    client.close()
    left_at = time.monotonic()
    daemon.wait_log(rf"kbridge\.q\.{re.escape(qname)}: leaving the group", timeout=15)
    lingered = time.monotonic() - left_at
    print(f"\nleft the group {lingered:.2f} s after the last subscriber (queues.linger 1s)")
    assert lingered >= 0.9
    ends = end_offsets(bootstrap, qname)
    assert committed_offsets(bootstrap, f"kbridge.q.{qname}", qname) == ends


def test_sigterm_does_not_wait_for_a_lingering_queue_and_commits(
        kbridged_factory, bootstrap, qname):
    daemon = kbridged_factory(startup_config(bootstrap, linger="600s"))
    bodies = [f"m-{i}" for i in range(8)]
    publish(daemon, qname, bodies)
    client, got, _ = stomp_take(daemon, qname, len(bodies), timeout=30)
    assert sorted(got) == sorted(bodies)
    client.close()
    # wait until the acks are settled on the node (nothing in flight), then stop
    wait_for(lambda: metric(daemon, "kbridge_destination_in_flight", qname) == 0
             and metric(daemon, "kbridge_destination_consumers", qname) == 0, 15,
             "the queue lingering with nothing in flight", interval=0.05)
    started = time.monotonic()
    assert daemon.stop(timeout=120) == 0
    took = time.monotonic() - started
    print(f"\nSIGTERM with a lingering queue: stopped in {took:.2f} s")
    assert took < 300, "SIGTERM waited for the 600 s linger"
    assert re.search(rf"kbridge\.q\.{re.escape(qname)}: leaving the group", daemon.log())
    assert committed_offsets(bootstrap, f"kbridge.q.{qname}", qname) == end_offsets(bootstrap,
                                                                                     qname)


def test_a_lingering_node_leaves_at_once_when_another_node_joins_the_group(
        kbridged_factory, bootstrap, qname):
    # the mock's rebalance with a member in the group waits session.timeout.ms - 1 s
    consumer = {"session.timeout.ms": 6000}
    a = kbridged_factory(startup_config(bootstrap, "node-a", consumer), name="node-a")
    b = kbridged_factory(startup_config(bootstrap, "node-b", consumer), name="node-b")
    publish(a, qname, ["first"])
    client, got, _ = stomp_take(a, qname, 1, timeout=30)
    client.close()  # A lingers (30 s) holding every partition

    bodies = [f"for-b-{i}" for i in range(40)]
    publish(a, qname, bodies)
    client = Client(b)
    started = time.monotonic()
    client.subscribe(f"/queue/{qname}", "s", ack="auto")
    # "first" may come again (at-least-once) if A's commit of it came late
    wait_for(lambda: set(bodies) <= {f.body for f in client.recorder.messages}, 25,
             "all 40 messages on node B")
    seconds = time.monotonic() - started
    print(f"\nB's subscriber got all 40 messages {seconds:.1f} s after subscribing "
          f"(A left at once instead of keeping its partitions for its 30 s linger)")
    assert re.search(rf"kbridge\.q\.{re.escape(qname)}: the group rebalanced while no local "
                     "subscriber is left: leaving the group now", a.log())
    client.close()
