# SPDX-License-Identifier: Apache-2.0
"""Message groups (issue 16 item 2; architecture §13 "Message groups",
docs/selection.md): messages with one JMSXGroupID go to one consumer at a
time, in order; other groups spread over the consumers; when that consumer
closes, its groups move to the others with nothing lost or reordered. With
stomp.py, as an ActiveMQ application sets JMSXGroupID."""

import uuid

from conftest import EXTERNAL_BOOTSTRAP, base_config, wait_for
from stomp_util import Client
from test_stomp_queues import Acker, send_all, wait_settled

GROUPS = 20
PER_GROUP = 50


def consumer(daemon, queue, sub_id):
    client = Client(daemon)
    acker = Acker(client.conn)
    client.conn.set_listener("acker", acker)
    client.subscribe(f"/queue/{queue}", sub_id, ack="client-individual",
                     headers={"prefetch-count": "100"}, receipt=f"r-{sub_id}", timeout=60)
    return client, acker


def owners(ackers, groups):
    """{group: [consumer indexes that got any of its messages]}, and each
    consumer's messages per group in arrival order."""
    seen = {}
    for n, acker in enumerate(ackers):
        for frame in list(acker.frames):
            seen.setdefault(frame.headers["JMSXGroupID"], {}).setdefault(n, []).append(
                int(frame.body.split("-")[1]))
    return seen


def test_each_group_goes_to_one_consumer_in_order_and_moves_when_it_closes(
        kbridged_factory, bootstrap):
    queue = f"groups-{uuid.uuid4().hex[:8]}" if EXTERNAL_BOOTSTRAP else f"groups{uuid.uuid4().hex[:6]}"
    daemon = kbridged_factory(base_config(bootstrap))
    clients = [consumer(daemon, queue, f"c{n}") for n in range(3)]
    ackers = [acker for _, acker in clients]
    producer = Client(daemon)
    try:
        half = PER_GROUP // 2
        first = [(f"g{g}-{i}", {"JMSXGroupID": f"g{g}"}) for i in range(half) for g in range(GROUPS)]
        send_all(producer, f"/queue/{queue}", first)
        wait_for(lambda: sum(a.count() for a in ackers) >= len(first), 120,
                 f"{len(first)} messages delivered")
        seen = owners(ackers, GROUPS)
        assert len(seen) == GROUPS
        holder = {}
        for group, by_consumer in seen.items():
            assert len(by_consumer) == 1, f"{group} went to {sorted(by_consumer)}"
            (n, numbers), = by_consumer.items()
            assert numbers == list(range(half)), group
            holder[group] = n
        used = set(holder.values())
        assert len(used) >= 2, f"every group went to consumer {used}"  # spread over consumers
        # every delivery acknowledged: close the consumer holding the most groups
        wait_settled(daemon, queue, len(first))  # kbridged has every ACK: nothing comes back
        leaving = max(used, key=lambda n: sum(1 for v in holder.values() if v == n))
        clients[leaving][0].close()
        moved = sorted(g for g, n in holder.items() if n == leaving)
        second = [(f"g{g}-{i}", {"JMSXGroupID": f"g{g}"})
                  for i in range(half, PER_GROUP) for g in range(GROUPS)]
        send_all(producer, f"/queue/{queue}", second)
        staying = [a for n, a in enumerate(ackers) if n != leaving]
        wait_for(lambda: sum(1 for a in staying for f in list(a.frames)
                             if int(f.body.split("-")[1]) >= half) >= len(second), 120,
                 f"{len(second)} more messages delivered to the remaining consumers")
        later = {}
        for n, acker in enumerate(ackers):
            if n == leaving:
                continue
            for frame in list(acker.frames):
                number = int(frame.body.split("-")[1])
                if number >= half:
                    later.setdefault(frame.headers["JMSXGroupID"], {}).setdefault(n, []).append(
                        number)
        assert len(later) == GROUPS
        for group, by_consumer in later.items():
            assert len(by_consumer) == 1, f"{group} went to {sorted(by_consumer)} after the close"
            (n, numbers), = by_consumer.items()
            assert numbers == list(range(half, PER_GROUP)), group  # nothing lost or reordered
            if group not in moved:
                assert n == holder[group], f"{group} moved though its consumer stayed"
        total = sum(a.count() for a in ackers)
        assert total == GROUPS * PER_GROUP, f"{total} deliveries: duplicates or losses"
    finally:
        for client, _ in clients:
            client.close()
        producer.close()
