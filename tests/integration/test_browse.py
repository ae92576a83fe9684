# SPDX-License-Identifier: Apache-2.0
"""Browsing a queue (issue 16 item 3; architecture §13 "Browsing",
docs/stomp.md `browser`): ActiveMQ's STOMP `browser:true` subscription gets
the messages ready in the queue, in order per key, without taking them,
then ActiveMQ's end-of-browse marker (an empty MESSAGE with `browser:end`);
a real consumer afterwards still gets every one of them. "Ready" is what
lies between the queue group's committed offsets and the end offsets when
the browse starts: messages acknowledged and committed are not shown, and
what is published after the browse started is not either."""

import uuid

import pytest

from conftest import EXTERNAL_BOOTSTRAP, base_config, wait_for
from stomp_util import Client
from test_stomp_queues import committed_offsets, read_topic, send_all


def uniq():
    return uuid.uuid4().hex[:10] if EXTERNAL_BOOTSTRAP else uuid.uuid4().hex[:6]


def browse(daemon, queue, headers=None):
    """A browse of `queue`: (bodies in arrival order, the end marker)."""
    client = Client(daemon)
    try:
        client.subscribe(f"/queue/{queue}", "b", headers={"browser": "true", **(headers or {})},
                         receipt="b", timeout=60)
        wait_for(lambda: any(f.headers.get("browser") == "end"
                             for f in client.recorder.messages), 60, "browser:end")
        frames = list(client.recorder.messages)
        end = frames[-1]
        assert end.headers.get("browser") == "end", [f.headers for f in frames[-3:]]
        assert [f for f in frames if f.headers.get("browser") == "end"] == [end]
        return [f.body for f in frames[:-1]], end
    finally:
        client.close()


def by_key(bodies):
    groups = {}
    for body in bodies:
        groups.setdefault(body.split("-")[0], []).append(body)
    return groups


def test_a_stomp_browser_sees_what_is_ready_without_taking_it(kbridged_factory, bootstrap):
    queue = f"browsed{uniq()}"
    daemon = kbridged_factory(base_config(bootstrap))
    sender = Client(daemon)
    messages = [(f"k{i % 3}-{i}", {"kafka-key": f"k{i % 3}"}) for i in range(30)]
    send_all(sender, f"/queue/{queue}", messages)
    # a consumer takes and acknowledges the first ten it gets, and leaves
    consumer = Client(daemon)
    consumer.subscribe(f"/queue/{queue}", "c", ack="client-individual",
                       headers={"prefetch-count": "10"}, receipt="c", timeout=60)
    taken = consumer.wait_messages(10, timeout=60)[:10]
    for frame in taken:
        consumer.ack(frame)
    consumer.close()
    # the ten are committed once every partition's committed offset is past its taken ones
    where = {r.value().decode(): (r.partition(), r.offset()) for r in read_topic(bootstrap, queue)}
    taken_at = {}
    for frame in taken:
        partition, offset = where[frame.body]
        taken_at[partition] = max(taken_at.get(partition, -1), offset)

    def committed():
        offsets = committed_offsets(bootstrap, f"kbridge.q.{queue}", queue)
        return all(offsets.get(p, -1) > o for p, o in taken_at.items())
    wait_for(committed, 60, "the ten acknowledged messages committed")
    taken_bodies = {f.body for f in taken}
    ready = [body for body, _ in messages if body not in taken_bodies]

    seen, end = browse(daemon, queue)
    assert sorted(seen) == sorted(ready)
    for key, bodies in by_key(seen).items():  # Kafka's order: per key
        assert bodies == [b for b in ready if b.startswith(key + "-")], key
    assert end.body == "" and end.headers["subscription"] == "b"
    assert end.headers["destination"] == f"/queue/{queue}"

    # a second browse sees the same: browsing takes nothing
    again, _ = browse(daemon, queue)
    assert sorted(again) == sorted(ready)
    # and a consumer still gets every one of them
    consumer = Client(daemon)
    consumer.subscribe(f"/queue/{queue}", "c2", receipt="c2", timeout=60)
    got = consumer.wait_messages(len(ready), timeout=60)
    assert sorted(f.body for f in got) == sorted(ready)
    consumer.close()
    sender.close()


def test_a_browse_of_an_empty_queue_ends_at_once_and_a_selector_applies(kbridged_factory,
                                                                       bootstrap):
    queue = f"browsesel{uniq()}"
    daemon = kbridged_factory(base_config(bootstrap))
    seen, end = browse(daemon, queue)
    assert seen == [] and end.headers["browser"] == "end"
    sender = Client(daemon)
    send_all(sender, f"/queue/{queue}",
             [(f"m{i}", {"color": "red" if i % 2 else "blue", "kafka-key": "one"})
              for i in range(10)])
    seen, _ = browse(daemon, queue, {"selector": "color = 'red'"})
    assert seen == [f"m{i}" for i in range(10) if i % 2]
    sender.close()


@pytest.mark.parametrize("destination, headers, why", [
    ("/topic/browsed", {}, "browsing works on queues only"),
])
def test_browsing_what_cannot_be_browsed_is_refused(kbridged_factory, bootstrap, destination,
                                                    headers, why):
    daemon = kbridged_factory(base_config(bootstrap))
    client = Client(daemon)
    try:
        client.conn.subscribe(destination, id="s",
                              headers={"browser": "true", "receipt": "r", **headers})
        error = client.wait_error()
        assert why in error.headers["message"] + error.body, error.headers["message"]
    finally:
        client.close()
