# SPDX-License-Identifier: Apache-2.0
"""The definitions store (architecture §11, docs/routing.md "Where definitions
live"): exchanges, queues and bindings in the definitions topic, shared by
every node through Kafka alone.

Two kbridged nodes on one Kafka: a RabbitMQ definitions export loaded on one
appears on the other; records written to the topic by a plain Kafka client
(confluent-kafka, in kbridge's record format) are seen and deleted on both;
kill -9 and restart of either node rebuilds the same view from Kafka alone; a
node is not ready before it has read the topic; a node deletes its previous
run's exclusive queues; --check-config reports a bad definitions file.

Each test uses a definitions topic of its own, so the suite also runs against
a shared real cluster (KBRIDGE_TEST_BOOTSTRAP)."""

import json
import os
import re
import subprocess
import uuid

import pytest
from confluent_kafka import Producer

from conftest import ADMIN, KBRIDGED, base_config, wait_for, with_admin

# A RabbitMQ export as `rabbitmqctl export_definitions` writes it: users and
# permissions (skipped by kbridge), a vhost of its own next to "/", all four
# exchange types, queue arguments, queue and exchange-to-exchange bindings,
# headers bindings with x-match.
EXPORT = {
    "rabbit_version": "3.12.4",
    "rabbitmq_version": "3.12.4",
    "product_name": "RabbitMQ",
    "product_version": "3.12.4",
    "users": [{"name": "guest", "password_hash": "x", "hashing_algorithm":
               "rabbit_password_hashing_sha256", "tags": ["administrator"], "limits": {}}],
    "vhosts": [{"name": "/"}, {"name": "shop"}],
    "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*",
                     "read": ".*"}],
    "topic_permissions": [],
    "parameters": [],
    "global_parameters": [],
    "policies": [],
    "queues": [
        {"name": "orders", "vhost": "shop", "durable": True, "auto_delete": False,
         "arguments": {"x-queue-type": "quorum", "x-delivery-limit": 5,
                       "x-dead-letter-exchange": "dlx"}},
        {"name": "audit", "vhost": "shop", "durable": True, "auto_delete": False,
         "arguments": {"x-max-length": 1000, "x-overflow": "drop-head"}},
        {"name": "dead", "vhost": "shop", "durable": True, "auto_delete": False,
         "arguments": {}},
        {"name": "logs.all", "vhost": "/", "durable": True, "auto_delete": False,
         "arguments": {"x-message-ttl": 60000}},
        {"name": "logs.errors", "vhost": "/", "durable": False, "auto_delete": False,
         "arguments": {}},
        {"name": "eu", "vhost": "/", "durable": True, "auto_delete": False, "arguments": {}},
    ],
    "exchanges": [
        {"name": "orders", "vhost": "shop", "type": "direct", "durable": True,
         "auto_delete": False, "internal": False, "arguments": {}},
        {"name": "dlx", "vhost": "shop", "type": "fanout", "durable": True,
         "auto_delete": False, "internal": False, "arguments": {}},
        {"name": "logs", "vhost": "/", "type": "topic", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {"alternate-exchange": "unrouted"}},
        {"name": "unrouted", "vhost": "/", "type": "fanout", "durable": True,
         "auto_delete": False, "internal": True, "arguments": {}},
        {"name": "regions", "vhost": "/", "type": "headers", "durable": True,
         "auto_delete": False, "internal": False, "arguments": {}},
    ],
    "bindings": [
        {"source": "orders", "vhost": "shop", "destination": "orders",
         "destination_type": "queue", "routing_key": "new", "arguments": {}},
        {"source": "orders", "vhost": "shop", "destination": "audit",
         "destination_type": "queue", "routing_key": "new", "arguments": {}},
        {"source": "orders", "vhost": "shop", "destination": "audit",
         "destination_type": "queue", "routing_key": "cancelled", "arguments": {}},
        {"source": "dlx", "vhost": "shop", "destination": "dead", "destination_type": "queue",
         "routing_key": "", "arguments": {}},
        {"source": "logs", "vhost": "/", "destination": "logs.all",
         "destination_type": "queue", "routing_key": "#", "arguments": {}},
        {"source": "logs", "vhost": "/", "destination": "logs.errors",
         "destination_type": "queue", "routing_key": "*.error", "arguments": {}},
        {"source": "logs", "vhost": "/", "destination": "regions",
         "destination_type": "exchange", "routing_key": "audit.#", "arguments": {}},
        {"source": "regions", "vhost": "/", "destination": "eu", "destination_type": "queue",
         "routing_key": "", "arguments": {"x-match": "any", "region": "eu", "country": "fr"}},
    ],
}


def node_config(bootstrap, topic, node_id, **extra):
    config = base_config(bootstrap, node_id=node_id,
                         definitions={"topic": topic, **extra.pop("definitions", {})},
                         vhosts={"/": {}, "shop": {}}, **extra)
    return with_admin(config)


@pytest.fixture
def topic():
    """A definitions topic of this test's own."""
    return f"kbridge.definitions.t{uuid.uuid4().hex[:12]}"


def view(daemon):
    """The node's /api/definitions, parsed."""
    status, body = daemon.http("/api/definitions", auth=ADMIN)
    assert status == 200, body
    return json.loads(body)


def entities(doc):
    """What two views are compared on: everything but version and readiness."""
    return {k: doc[k] for k in ("vhosts", "exchanges", "queues", "bindings")}


def exchange_names(doc):
    return sorted((e["vhost"], e["name"], e["type"]) for e in doc["exchanges"])


def queue_names(doc):
    return sorted((q["vhost"], q["name"]) for q in doc["queues"])


def binding_tuples(doc):
    return sorted((b["vhost"], b["source"], b["destination_type"], b["destination"],
                   b["routing_key"]) for b in doc["bindings"])


def same_view(a, b, timeout=10):
    """Wait until both nodes serve the same view; return it."""
    def check():
        va, vb = view(a), view(b)
        return va if entities(va) == entities(vb) else None
    return wait_for(check, timeout, f"{a.name} and {b.name} to serve the same definitions")


def record_key(*parts):
    return "/".join(p.replace("%", "%25").replace("/", "%2F") for p in parts)


def produce(bootstrap, topic, records):
    """Write (key, value-or-None) records to partition 0 of the definitions topic."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    failures = []
    for key, value in records:
        producer.produce(topic, key=key.encode(),
                         value=None if value is None else json.dumps(value).encode(),
                         partition=0,
                         on_delivery=lambda err, msg: failures.append(err) if err else None)
    assert producer.flush(15) == 0
    assert failures == []


def write_export(tmp_path, doc=EXPORT, name="definitions.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=2))
    return str(path)


EXPECTED_EXCHANGES = sorted([("shop", "orders", "direct"), ("shop", "dlx", "fanout"),
                             ("/", "logs", "topic"), ("/", "unrouted", "fanout"),
                             ("/", "regions", "headers")])
EXPECTED_QUEUES = sorted([("shop", "orders"), ("shop", "audit"), ("shop", "dead"),
                          ("/", "logs.all"), ("/", "logs.errors"), ("/", "eu")])
EXPECTED_BINDINGS = sorted([
    ("shop", "orders", "queue", "orders", "new"), ("shop", "orders", "queue", "audit", "new"),
    ("shop", "orders", "queue", "audit", "cancelled"), ("shop", "dlx", "queue", "dead", ""),
    ("/", "logs", "queue", "logs.all", "#"), ("/", "logs", "queue", "logs.errors", "*.error"),
    ("/", "logs", "exchange", "regions", "audit.#"), ("/", "regions", "queue", "eu", ""),
])


def test_definitions_file_loaded_on_one_node_appears_on_the_other(kbridged_factory, bootstrap,
                                                                   topic, tmp_path):
    path = write_export(tmp_path)
    a = kbridged_factory(node_config(bootstrap, topic, "nodea", definitions={"file": path}),
                         name="a")
    doc = view(a)  # ready: the file's records are applied before /readyz says so
    assert doc["ready"] is True
    assert exchange_names(doc) == EXPECTED_EXCHANGES
    assert queue_names(doc) == EXPECTED_QUEUES
    assert binding_tuples(doc) == EXPECTED_BINDINGS
    assert sorted(v["name"] for v in doc["vhosts"]) == ["/", "shop"]
    # properties and arguments as in the export
    queues = {(q["vhost"], q["name"]): q for q in doc["queues"]}
    assert queues[("shop", "orders")]["arguments"] == {
        "x-queue-type": "quorum", "x-delivery-limit": 5, "x-dead-letter-exchange": "dlx"}
    assert queues[("/", "logs.errors")]["durable"] is False
    exchanges = {(e["vhost"], e["name"]): e for e in doc["exchanges"]}
    assert exchanges[("/", "logs")]["arguments"] == {"alternate-exchange": "unrouted"}
    assert exchanges[("/", "unrouted")]["internal"] is True
    eu = [b for b in doc["bindings"] if b["destination"] == "eu"][0]
    assert eu["arguments"] == {"x-match": "any", "region": "eu", "country": "fr"}
    # no built-in exchange in the export, as RabbitMQ does
    assert not [e for e in doc["exchanges"] if e["name"].startswith("amq.") or e["name"] == ""]
    assert re.search(r"1 user\(s\) and 1 permission\(s\) skipped", a.log())

    b = kbridged_factory(node_config(bootstrap, topic, "nodeb"), name="b")
    same_view(a, b)


def test_records_from_a_kafka_client_are_seen_and_deleted_on_both_nodes(kbridged_factory,
                                                                       bootstrap, topic):
    a = kbridged_factory(node_config(bootstrap, topic, "nodea"), name="a")
    b = kbridged_factory(node_config(bootstrap, topic, "nodeb"), name="b")
    queue = {"name": "q/1", "vhost": "/", "durable": True, "auto_delete": False,
             "exclusive": False, "arguments": {"x-max-length": 3}}
    exchange = {"name": "ex", "vhost": "/", "type": "direct", "durable": True,
                "auto_delete": False, "internal": False, "arguments": {}}
    binding = {"source": "ex", "vhost": "/", "destination": "q/1", "destination_type": "queue",
               "routing_key": "k", "arguments": {}}
    binding_key = record_key("binding", "/", "ex", "q", "q/1", "k", "-")
    produce(bootstrap, topic, [
        (record_key("queue", "/", "q/1"), queue),
        (record_key("exchange", "/", "ex"), exchange),
        (binding_key, binding),
        ("garbage", {"name": "x"}),                       # a key of no known form
        (record_key("queue", "/", "broken"), {"vhost": "/"}),  # no name
    ])
    for daemon in (a, b):
        doc = wait_for(lambda: (lambda d: d if d["bindings"] else None)(view(daemon)), 10,
                       f"{daemon.name} to see the binding")
        assert queue_names(doc) == [("/", "q/1")]
        assert doc["queues"][0]["arguments"] == {"x-max-length": 3}
        assert exchange_names(doc) == [("/", "ex", "direct")]
        assert binding_tuples(doc) == [("/", "ex", "queue", "q/1", "k")]
        # bad records are logged and skipped; the node stays ready
        daemon.wait_log(r"kbridge\.definitions\.t\w+ offset 3: skipped \(garbage\): a record key "
                        r"of an unknown form")
        daemon.wait_log(r"offset 4: skipped \(queue/%2F/broken\): ")
        assert daemon.http("/readyz") == (200, "ready\n")
        metrics = daemon.http("/metrics")[1]
        assert re.search(r"^kbridge_definitions_bad_records_total 2$", metrics, re.M), metrics
    same_view(a, b)

    # a queue's tombstone deletes it and its bindings on both nodes
    produce(bootstrap, topic, [(binding_key, None), (record_key("queue", "/", "q/1"), None)])
    for daemon in (a, b):
        doc = wait_for(lambda: (lambda d: d if not d["queues"] else None)(view(daemon)), 10,
                       f"{daemon.name} to see the queue deleted")
        assert doc["bindings"] == []
        assert exchange_names(doc) == [("/", "ex", "direct")]
    # and an exchange's
    produce(bootstrap, topic, [(record_key("exchange", "/", "ex"), None)])
    for daemon in (a, b):
        wait_for(lambda: not view(daemon)["exchanges"], 10, f"{daemon.name}: exchange deleted")


def test_kill_and_restart_rebuild_the_same_view_from_kafka(kbridged_factory, bootstrap, topic,
                                                           tmp_path):
    path = write_export(tmp_path)
    a = kbridged_factory(node_config(bootstrap, topic, "nodea", definitions={"file": path}),
                         name="a")
    b = kbridged_factory(node_config(bootstrap, topic, "nodeb"), name="b")
    before = entities(same_view(a, b))
    produce(bootstrap, topic, [(record_key("queue", "shop", "late"),
                                {"name": "late", "vhost": "shop", "durable": True,
                                 "auto_delete": False, "exclusive": False, "arguments": {}})])
    wait_for(lambda: ("shop", "late") in queue_names(view(b)), 10, "b to see queue late")
    before = entities(same_view(a, b))

    a.kill()  # kill -9
    a2 = kbridged_factory(node_config(bootstrap, topic, "nodea", definitions={"file": path}),
                          name="a2")
    # ready only once the view is rebuilt: the first answer is already complete
    assert entities(view(a2)) == before
    # the file loaded again changes nothing: every entity already exists alike
    assert re.search(r"exchanges and queues: 0 to write, 11 already as defined, 0 refused",
                     a2.log()), a2.log()
    assert re.search(r"bindings: 0 to write, 8 already as defined, 0 refused", a2.log())

    b.kill()
    b2 = kbridged_factory(node_config(bootstrap, topic, "nodeb"), name="b2")
    assert entities(view(b2)) == before
    assert entities(same_view(a2, b2)) == before


def test_a_node_is_not_ready_before_it_has_read_the_topic(kbridged_factory, devkafka, tmp_path):
    """Fetches fail for a while (the dev broker's fault injection): Kafka
    itself is reachable and ready, the definitions are not read yet, so
    /readyz says so; once fetches work the node becomes ready with the view."""
    bootstrap = devkafka.bootstrap
    topic = "kbridge.definitions"
    a = kbridged_factory(node_config(bootstrap, topic, "nodea",
                                     definitions={"file": write_export(tmp_path)}), name="a")
    expected = entities(view(a))
    assert devkafka.command("errors Fetch 100000 NOT_LEADER_FOR_PARTITION") == "ok"
    b = kbridged_factory(node_config(bootstrap, topic, "nodeb"), name="b", wait_ready=False)

    def kafka_ready_definitions_not():
        doc = json.loads(b.http("/api/status")[1])
        return doc if doc["kafka"]["ready"] and not doc["definitions"]["ready"] else None
    doc = wait_for(kafka_ready_definitions_not, 15, "b: Kafka ready, definitions not")
    assert doc["definitions"]["topic"] == topic
    assert doc["definitions"]["reason"].startswith("definitions: ")
    status, body = b.http("/readyz")
    assert status == 503 and body.startswith("not ready: definitions: "), body
    assert view(b)["ready"] is False
    assert b.http("/healthz")[0] == 200  # alive, only not ready

    assert devkafka.command("clear Fetch") == "ok"
    b.wait_ready(30)
    assert entities(view(b)) == expected


def test_a_node_deletes_its_previous_runs_exclusive_queues(kbridged_factory, bootstrap, topic):
    def exclusive(name, owner):
        return (record_key("queue", "/", name),
                {"name": name, "vhost": "/", "durable": False, "auto_delete": True,
                 "exclusive": True, "owner": owner, "arguments": {}})
    mine, theirs = exclusive("amq.gen-mine", "nodea/7"), exclusive("amq.gen-theirs", "nodeb/3")
    bound = (record_key("binding", "/", "amq.fanout", "q", "amq.gen-mine", "", "-"),
             {"source": "amq.fanout", "vhost": "/", "destination": "amq.gen-mine",
              "destination_type": "queue", "routing_key": "", "arguments": {}})
    produce(bootstrap, topic, [mine, theirs, bound])
    a = kbridged_factory(node_config(bootstrap, topic, "nodea"), name="a")
    doc = view(a)  # ready: the deletes are applied before /readyz says so
    assert queue_names(doc) == [("/", "amq.gen-theirs")]
    assert doc["queues"][0]["owner"] == "nodeb/3"
    assert doc["bindings"] == []
    assert "deleting 1 exclusive queue(s) of this node's previous run (owner nodea/*)" in a.log()
    # the tombstones are in Kafka: another node reads the same
    b = kbridged_factory(node_config(bootstrap, topic, "nodec"), name="b")
    assert entities(view(b)) == entities(doc)


def check_config(tmp_path, definitions_doc=None, raw=None, file_name="defs.json"):
    path = tmp_path / file_name
    if raw is not None:
        path.write_text(raw)
    elif definitions_doc is not None:
        path.write_text(json.dumps(definitions_doc))
    config = tmp_path / "check.yaml"
    config.write_text(f"node_id: check\ndefinitions:\n  file: {path}\n")
    r = subprocess.run([KBRIDGED, "--check-config", str(config)], capture_output=True, text=True,
                       timeout=30)
    return r, str(config), str(path)


def test_check_config_reports_a_bad_definitions_file(tmp_path):
    r, config, path = check_config(tmp_path, EXPORT)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == f"{config}: configuration is valid\n"

    prefix = "kbridged: invalid configuration: {config}: definitions.file: {path}: "
    cases = [
        (None, "{\"queues\": [", "line 1: ']' expected near end of file"),
        ({"queues": [{"name": "q", "vhost": "/", "durable": True, "auto_delete": False,
                      "arguments": {"x-bogus": 1}}]},
         None, "queues[0]: invalid arg 'x-bogus': kbridge does not support this queue argument"),
        ({"exchanges": [{"name": "e", "vhost": "/", "type": "x-delayed-message",
                         "durable": True, "auto_delete": False, "internal": False,
                         "arguments": {}}]},
         None, "exchanges[0]: exchange 'e': type 'x-delayed-message' is not supported "
         "(direct, fanout, topic or headers)"),
        ({"bindings": [{"source": "missing", "vhost": "/", "destination": "q",
                        "destination_type": "queue", "routing_key": "", "arguments": {}}]},
         None, "bindings[0]: no exchange 'missing' in vhost '/'"),
        ({"exchanges": [{"name": "amq.mine", "vhost": "/", "type": "direct", "durable": True,
                         "auto_delete": False, "internal": False, "arguments": {}}]},
         None, "exchanges[0]: exchange name 'amq.mine' contains reserved prefix 'amq.*'"),
    ]
    for doc, raw, reason in cases:
        r, config, path = check_config(tmp_path, doc, raw)
        assert r.returncode == 2, r
        assert r.stderr == prefix.format(config=config, path=path) + reason + "\n", r.stderr
        assert r.stdout == ""

    missing = str(tmp_path / "nope.json")
    config = tmp_path / "missing.yaml"
    config.write_text(f"definitions:\n  file: {missing}\n")
    r = subprocess.run([KBRIDGED, "--check-config", str(config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2
    assert r.stderr == (f"kbridged: invalid configuration: {config}: definitions.file: "
                        f"{missing}: cannot open: No such file or directory\n")


def test_vhosts_config_errors(tmp_path):
    config = tmp_path / "v.yaml"
    config.write_text("vhosts:\n  \"/\": {topic_prefix: other.}\n")
    r = subprocess.run([KBRIDGED, "--check-config", str(config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2
    assert r.stderr == (f"kbridged: invalid configuration: {config}:2: vhosts./: the vhost / "
                        "always uses kafka.topic_prefix; remove its topic_prefix\n")
    config.write_text("vhosts:\n  \"my shop\": {}\n")
    r = subprocess.run([KBRIDGED, "--check-config", str(config)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2
    assert r.stderr == (f"kbridged: invalid configuration: {config}: vhosts.my shop: the vhost's "
                        "name cannot stand in its topic prefix (\"my shop.\"): set topic_prefix\n")


def test_check_config_accepts_reject_publish_in_a_definitions_file(tmp_path):
    queue = {"name": "capped", "vhost": "/", "durable": True, "auto_delete": False,
             "arguments": {"x-max-length": 10, "x-overflow": "reject-publish"}}
    r, config, _ = check_config(tmp_path, {"queues": [queue]})
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == f"{config}: configuration is valid\n"
    queue["arguments"]["x-overflow"] = "reject-publish-dlx"  # RabbitMQ's, not kbridge's
    r, config, path = check_config(tmp_path, {"queues": [queue]})
    assert r.returncode == 2
    assert r.stderr == (f"kbridged: invalid configuration: {config}: definitions.file: {path}: "
                        "queues[0]: invalid arg 'x-overflow': 'reject-publish-dlx', must be "
                        "drop-head|reject-publish\n")
