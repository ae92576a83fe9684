# SPDX-License-Identifier: Apache-2.0
"""JMS message selectors on topic subscriptions (issue 16 item 1; architecture §13,
docs/stomp.md), with stomp.py as an ActiveMQ application would use them.

- 1,000 messages with mixed headers on one topic; ten subscribers, each with its own
  selector (comparison of numbers given as strings, LIKE with ESCAPE, IN, BETWEEN,
  arithmetic, IS NULL / IS NOT NULL, NOT, a JMS name): each receives exactly the
  messages its selector selects, in order, and the skipped copies are counted.
- a subscriber without a selector still gets everything.
- queues, as in ActiveMQ: each subscriber gets the messages its selector selects, in
  order; a message one subscriber's selector does not select stays for the others (a
  subscriber without a selector takes it); one no subscriber selects, while every
  subscriber has a selector, is settled after `queues.selector_hold` and counted.
- a durable subscription's selector is the subscription's (JMS): it gets what it selects,
  the rest is settled at once (counted), also across a reconnect.
- an `/exchange/NAME/KEY` subscription's selector filters its own queue's messages.
- a selector on a temporary queue, and a selector that does not parse, are refused with
  an ERROR that says why (the position, for a bad one).
- AMQP 1.0 (python qpid-proton's `Selector`, the `apache.org:selector-filter:string`
  source filter as Qpid JMS and ActiveMQ write it): a topic receiver gets exactly what it
  selects over typed application properties, the attach answer echoes the filter (how a
  JMS client knows it was applied), and a bad selector is refused with the position.

Waits are deadline-based (receipts, wait_for)."""

import re
import uuid

import pytest

from proton import Message, symbol
from proton.reactor import Selector
from proton.utils import LinkDetached

from amqp_client import connect, run_rhea
from conftest import EXTERNAL_BOOTSTRAP, base_config, wait_for
from stomp_util import Client

COUNT = 1000
COLORS = ["red", "blue", "green", "dark_red"]
REGIONS = ["EMEA", "APAC", "AMER"]


def headers_of(i):
    h = {"color": COLORS[i % 4], "weight": str(i % 50), "region": REGIONS[i % 3],
         "type": "order" if i % 5 == 0 else "quote"}
    if i % 7 == 0:
        h["vip"] = "true"
    if i % 11 == 0:
        h["discount"] = str((i % 4) * 2.5)
    return h


def num(h, name):
    return float(h[name]) if name in h else None


# (selector, the same rule in Python: the messages it must select)
SELECTORS = [
    ("color = 'red'", lambda h: h["color"] == "red"),
    ("weight > 40", lambda h: num(h, "weight") > 40),
    ("weight BETWEEN 10 AND 12 AND region <> 'APAC'",
     lambda h: 10 <= num(h, "weight") <= 12 and h["region"] != "APAC"),
    ("color LIKE 'dark\\_%' ESCAPE '\\'", lambda h: h["color"].startswith("dark_")),
    ("region IN ('EMEA', 'AMER') AND NOT color IN ('blue')",
     lambda h: h["region"] in ("EMEA", "AMER") and h["color"] != "blue"),
    ("vip = TRUE", lambda h: h.get("vip") == "true"),
    ("discount IS NOT NULL AND discount * 2 >= 10",
     lambda h: "discount" in h and num(h, "discount") * 2 >= 10),
    ("discount IS NULL AND weight < 3", lambda h: "discount" not in h and num(h, "weight") < 3),
    # NULL logic: a missing vip makes "vip = TRUE" UNKNOWN, and NOT UNKNOWN selects nothing
    ("NOT (vip = TRUE) OR weight = 0", lambda h: num(h, "weight") == 0),
    ("JMSType = 'order' AND (weight + 1) / 2 = 3",
     lambda h: h["type"] == "order" and (num(h, "weight") + 1) / 2 == 3),
]


@pytest.fixture
def uniq():
    return f"-{uuid.uuid4().hex[:10]}" if EXTERNAL_BOOTSTRAP else f"-{uuid.uuid4().hex[:6]}"


def metric(daemon, series):
    m = re.search(rf"^{re.escape(series)} (\S+)$", daemon.http("/metrics")[1], re.M)
    return float(m.group(1)) if m else 0.0


def test_each_topic_subscriber_gets_exactly_what_its_selector_selects(
        kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(base_config(bootstrap))
    topic = f"/topic/prices{uniq}"
    subscribers = [Client(daemon) for _ in SELECTORS]
    everything = Client(daemon)
    producer = Client(daemon)
    try:
        for n, (c, (selector, _)) in enumerate(zip(subscribers, SELECTORS)):
            c.subscribe(topic, f"s{n}", headers={"selector": selector}, receipt=f"r{n}",
                        timeout=60)
        everything.subscribe(topic, "all", receipt="rall", timeout=60)
        bodies = [f"m{i}" for i in range(COUNT)]
        for i, body in enumerate(bodies):
            producer.send(topic, body, headers=headers_of(i),
                          receipt=f"p{i}" if i == COUNT - 1 else None)
        producer.wait_receipt(f"p{COUNT - 1}", timeout=60)
        assert [f.body for f in everything.wait_messages(COUNT, timeout=60)] == bodies
        expected_skips = 0
        for c, (selector, rule) in zip(subscribers, SELECTORS):
            want = [body for i, body in enumerate(bodies) if rule(headers_of(i))]
            assert want, f"the test's data gives {selector!r} nothing to select"
            expected_skips += COUNT - len(want)
            got = c.wait_messages(len(want), timeout=60)
            assert [f.body for f in got] == want, selector
        # everything published has been read: no subscriber gets more than it should
        wait_for(lambda: metric(daemon, "kbridge_selector_skipped_total") == expected_skips, 30,
                 f"{expected_skips} skipped copies counted")
        for c, (selector, rule) in zip(subscribers, SELECTORS):
            assert len(c.recorder.messages) == sum(rule(headers_of(i)) for i in range(COUNT)), \
                selector
            assert not c.recorder.errors, selector
    finally:
        for c in subscribers + [everything, producer]:
            c.close()


@pytest.mark.parametrize("destination, selector, headers, why", [
    ("/temp-queue/sel", "color = 'red'", {},
     "message selectors do not apply to temporary queues"),
    ("/topic/sel", "color = 'red' AND", {}, "bad selector: position 18: expected a value"),
    ("/queue/sel", "weight BETWEEN 1", {},
     "bad selector: position 17: expected AND in BETWEEN"),
])
def test_selectors_that_cannot_be_served_are_refused_saying_why(kbridged_factory, bootstrap,
                                                                 destination, selector, headers,
                                                                 why):
    daemon = kbridged_factory(base_config(bootstrap))
    c = Client(daemon)
    try:
        c.conn.subscribe(destination, id="s",
                         headers={"selector": selector, "receipt": "r", **headers})
        wait_for(lambda: c.recorder.errors, 30, "an ERROR frame")
        error = c.recorder.errors[0]
        assert why in error.headers["message"], error.headers["message"]
        assert "r" not in c.recorder.receipts
    finally:
        c.close()


def test_amqp_topic_receiver_with_a_selector_filter_gets_what_it_selects(
        kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(base_config(bootstrap))
    address = f"topic://amqprices{uniq}"
    conn = connect(daemon)
    try:
        selected = conn.create_receiver(address, credit=300, name="selected",
                                        options=Selector("color = 'red' AND weight > 40"))
        source_filter = selected.link.remote_source.filter
        source_filter.rewind()
        assert source_filter.next() is not None  # the attach answer echoes the filter map
        echoed = source_filter.get_object()
        assert list(echoed.values())[0].descriptor == symbol("apache.org:selector-filter:string")
        everything = conn.create_receiver(address, credit=300, name="everything")
        sender = conn.create_sender(address)
        expect = []
        for i in range(200):
            color, weight = COLORS[i % 4], i % 50
            sender.send(Message(body=f"a{i}".encode(),
                                properties={"color": color, "weight": weight}))
            if color == "red" and weight > 40:
                expect.append(f"a{i}")
        assert expect
        for i in range(200):
            message = everything.receive(timeout=30)
            everything.accept()
            assert message.body == f"a{i}".encode()
        got = []
        for _ in expect:
            message = selected.receive(timeout=30)
            selected.accept()
            got.append(message.body.decode())
        assert got == expect
        # nothing more for the selective receiver: the copies it did not select were skipped
        wait_for(lambda: metric(daemon, "kbridge_selector_skipped_total") == 200 - len(expect),
                 30, "the skipped copies counted")
        with pytest.raises(Exception):
            selected.receive(timeout=0.5)
        with pytest.raises(LinkDetached) as refused:
            conn.create_receiver(address, name="bad", options=Selector("weight BETWEEN 1"))
        assert "amqp:invalid-field" in str(refused.value)
        assert "position 17: expected AND in BETWEEN" in str(refused.value)
    finally:
        conn.close()


def queue_subscriber(daemon, queue, sub_id, selector=None, prefetch=100):
    client = Client(daemon)
    headers = {"prefetch-count": str(prefetch)}
    if selector:
        headers["selector"] = selector
    client.subscribe(queue, sub_id, ack="client-individual", headers=headers,
                     receipt=f"r-{sub_id}", timeout=60)
    return client


def test_queue_subscribers_get_what_their_selectors_select_and_the_rest_stays(
        kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(base_config(bootstrap))
    queue = f"/queue/orders{uniq}"
    red = queue_subscriber(daemon, queue, "red", "color = 'red'")
    heavy_blue = queue_subscriber(daemon, queue, "blue", "color = 'blue' AND weight >= 25")
    producer = Client(daemon)
    everyone = None
    try:
        bodies = [f"q{i}" for i in range(400)]
        for i, body in enumerate(bodies):
            producer.send(queue, body, headers=headers_of(i), receipt=f"p{i}" if i == 399 else None)
        producer.wait_receipt("p399", timeout=60)
        want_red = [b for i, b in enumerate(bodies) if headers_of(i)["color"] == "red"]
        want_blue = [b for i, b in enumerate(bodies)
                     if headers_of(i)["color"] == "blue" and num(headers_of(i), "weight") >= 25]
        got_red = red.wait_messages(len(want_red), timeout=60)
        got_blue = heavy_blue.wait_messages(len(want_blue), timeout=60)
        assert [f.body for f in got_red] == want_red
        assert [f.body for f in got_blue] == want_blue
        for client, frames in ((red, got_red), (heavy_blue, got_blue)):
            for frame in frames:
                client.ack(frame)
        # what neither selects waits for a subscriber that takes it, in order
        rest = [b for b in bodies if b not in set(want_red) | set(want_blue)]
        everyone = queue_subscriber(daemon, queue, "all", prefetch=1000)
        got_rest = everyone.wait_messages(len(rest), timeout=60)
        assert [f.body for f in got_rest] == rest
        for frame in got_rest:
            everyone.ack(frame)
        assert len(red.recorder.messages) == len(want_red)
        assert len(heavy_blue.recorder.messages) == len(want_blue)
        assert metric(daemon, "kbridge_selector_unselected_total") == 0
        for c in (red, heavy_blue, everyone):
            assert not c.recorder.errors
    finally:
        for c in [red, heavy_blue, producer] + ([everyone] if everyone else []):
            c.close()


def test_queue_messages_no_selector_selects_are_settled_after_the_hold(
        kbridged_factory, bootstrap, uniq):
    config = base_config(bootstrap)
    config["queues"] = {"selector_hold": "1s"}
    daemon = kbridged_factory(config)
    queue = f"/queue/held{uniq}"
    red = queue_subscriber(daemon, queue, "red", "color = 'red'")
    producer = Client(daemon)
    late = None
    try:
        for i in range(40):
            producer.send(queue, f"h{i}", headers=headers_of(i),
                          receipt="last" if i == 39 else None)
        producer.wait_receipt("last", timeout=60)
        want = [f"h{i}" for i in range(40) if headers_of(i)["color"] == "red"]
        got = red.wait_messages(len(want), timeout=60)
        assert [f.body for f in got] == want
        for frame in got:
            red.ack(frame)
        wait_for(lambda: metric(daemon, "kbridge_selector_unselected_total") == 40 - len(want),
                 30, "the unselected messages settled after queues.selector_hold")
        # settled: a subscriber without a selector gets none of them, only what comes next
        late = queue_subscriber(daemon, queue, "late")
        producer.send(queue, "after", headers={"color": "green"}, receipt="after")
        producer.wait_receipt("after")
        assert [f.body for f in late.wait_messages(1, timeout=60)] == ["after"]
        assert len(late.recorder.messages) == 1
    finally:
        for c in [red, producer] + ([late] if late else []):
            c.close()


def test_a_durable_subscription_with_a_selector_keeps_only_what_it_selects(
        kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(base_config(bootstrap))
    topic = f"/topic/audit{uniq}"
    headers = {"durable": "true", "selector": "color = 'red'", "prefetch-count": "100"}
    sub = Client(daemon)
    producer = Client(daemon)
    try:
        sub.subscribe(topic, "audit", ack="client-individual", headers=headers, receipt="r1",
                      timeout=60)
        for i in range(40):
            producer.send(topic, f"d{i}", headers=headers_of(i), receipt="p" if i == 39 else None)
        producer.wait_receipt("p", timeout=60)
        want = [f"d{i}" for i in range(40) if headers_of(i)["color"] == "red"]
        got = sub.wait_messages(len(want), timeout=60)
        assert [f.body for f in got] == want
        for frame in got:
            sub.ack(frame)
        wait_for(lambda: metric(daemon, "kbridge_selector_unselected_total") == 40 - len(want),
                 30, "the copies the subscription does not select settled")
        sub.close()
        # detached: it keeps its place; what comes meanwhile is filtered when it is back
        for i in range(40, 60):
            producer.send(topic, f"d{i}", headers=headers_of(i), receipt="q" if i == 59 else None)
        producer.wait_receipt("q", timeout=60)
        sub = Client(daemon)
        sub.subscribe(topic, "audit", ack="client-individual", headers=headers, receipt="r2",
                      timeout=60)
        want = [f"d{i}" for i in range(40, 60) if headers_of(i)["color"] == "red"]
        got = sub.wait_messages(len(want), timeout=60)
        assert [f.body for f in got] == want
        for frame in got:
            sub.ack(frame)
        wait_for(lambda: metric(daemon, "kbridge_selector_unselected_total") == 60 - 15, 30,
                 "the later copies it does not select settled too")
        assert len(sub.recorder.messages) == len(want)
    finally:
        sub.close()
        producer.close()


def test_an_exchange_subscription_with_a_selector_gets_what_it_selects(
        kbridged_factory, bootstrap, uniq):
    daemon = kbridged_factory(base_config(bootstrap))
    sub = Client(daemon)
    producer = Client(daemon)
    try:
        sub.subscribe(f"/exchange/amq.direct/k{uniq}", "x", ack="client-individual",
                      headers={"selector": "weight < 10"}, receipt="r", timeout=60)
        for i in range(30):
            producer.send(f"/exchange/amq.direct/k{uniq}", f"x{i}", headers=headers_of(i),
                          receipt="p" if i == 29 else None)
        producer.wait_receipt("p", timeout=60)
        want = [f"x{i}" for i in range(30) if i % 50 < 10]
        got = sub.wait_messages(len(want), timeout=60)
        assert [f.body for f in got] == want
        for frame in got:
            sub.ack(frame)
        wait_for(lambda: metric(daemon, "kbridge_selector_unselected_total") == 30 - len(want),
                 30, "the rest settled at once (the queue is the subscription's own)")
        assert len(sub.recorder.messages) == len(want)
    finally:
        sub.close()
        producer.close()


def test_rhea_receiver_with_its_selector_filter_gets_only_the_green_ones(
        kbridged_factory, bootstrap, uniq):
    """rhea's own selector idiom (rhea.filter.selector: key jms-selector,
    descriptor code 0x468C00000004) on a queue, from a second AMQP 1.0
    library: exactly the green messages, in order, and the filter echoed."""
    daemon = kbridged_factory(base_config(bootstrap))
    host, port = daemon.host_port("amqp")
    summary = run_rhea("rhea_selector.js", host, port, f"colours{uniq}", 90)
    assert summary["sent"] == 90 and summary["accepted"] == 90
    assert summary["filter_echoed"] is True
    assert summary["received"] == [f"m{n}" for n in range(90) if n % 3 == 1]


def test_proton_tutorial_selected_receiver_gets_the_green_ones(kbridged_factory, bootstrap, uniq):
    """The shape of qpid-proton's own selector tutorial (python examples
    colour_send.py + selected_recv.py, not shipped by Debian's
    python3-qpid-proton): an event-driven sender (Container +
    MessagingHandler) sends messages with a `colour` application property to
    the queue `examples`, and an event-driven receiver whose link carries
    `Selector("colour = 'green'")` prints only the green ones; on a queue the
    red ones stay for other consumers (ActiveMQ's semantics)."""
    from proton.handlers import MessagingHandler
    from proton.reactor import Container

    from amqp_client import amqp_url, run_in_thread
    daemon = kbridged_factory(base_config(bootstrap))
    address = f"examples{uniq}"
    bodies = [(f"message-{i}", "green" if i % 2 else "red") for i in range(20)]

    class ColourSend(MessagingHandler):
        def __init__(self):
            super().__init__()
            self.sent = self.confirmed = 0

        def on_start(self, event):
            event.container.create_sender(amqp_url(daemon) + "/" + address)

        def on_sendable(self, event):
            while event.sender.credit and self.sent < len(bodies):
                body, colour = bodies[self.sent]
                event.sender.send(Message(body=body, properties={"colour": colour}))
                self.sent += 1

        def on_accepted(self, event):
            self.confirmed += 1
            if self.confirmed == len(bodies):
                event.connection.close()

    class SelectedRecv(MessagingHandler):
        def __init__(self):
            super().__init__()
            self.received = []

        def on_start(self, event):
            conn = event.container.connect(amqp_url(daemon))
            event.container.create_receiver(conn, address, options=Selector("colour = 'green'"))

        def on_message(self, event):
            self.received.append(event.message.body)
            if len(self.received) == 10:
                event.connection.close()

    receiver = SelectedRecv()
    _, receiving = run_in_thread(receiver)
    sender = ColourSend()
    _, sending = run_in_thread(sender)
    sending.join(60)
    receiving.join(60)
    assert not sending.is_alive() and not receiving.is_alive()
    assert sender.confirmed == 20
    assert receiver.received == [b for b, colour in bodies if colour == "green"]
    # the red ones stayed on the queue: a plain receiver gets them
    conn = connect(daemon)
    try:
        rest = conn.create_receiver(address, credit=20)
        got = []
        for _ in range(10):
            message = rest.receive(timeout=30)
            rest.accept()
            got.append(message.body)
        assert sorted(got) == sorted(b for b, colour in bodies if colour == "red")
    finally:
        conn.close()
