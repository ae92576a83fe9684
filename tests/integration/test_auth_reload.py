# SPDX-License-Identifier: Apache-2.0
"""A SIGHUP that takes access away takes it from live sessions at once
(issue 12): turning auth.anonymous off closes anonymous STOMP connections
with an ERROR ("Access refused") and anonymous AMQP connections with
amqp:unauthorized-access, and AMQP 0-9-1 (pika) connections with
connection.close 320 CONNECTION_FORCED; removing a user or changing its password closes
that user's sessions the same way. Sessions still allowed stay open."""

import signal
import subprocess

import pika
import pytest
from proton import ConnectionException

from amqp_client import connect
from conftest import base_config, pika_connect, wait_for
from stomp_util import Client


@pytest.fixture(scope="module")
def hashes():
    def make(password):
        out = subprocess.run(["openssl", "passwd", "-6", password], capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out.startswith("$6$")
        return out
    return {"secret": make("secret"), "other": make("other")}


def user(name, password_hash):
    return {"name": name, "password_hash": password_hash, "publish": [".*"], "consume": [".*"]}


def amqp_closed_with(conn, condition, timeout=15):
    """Wait until the server closed the BlockingConnection; its condition name."""
    def closed():
        try:
            conn.container.process()
        except ConnectionException as e:
            return str(e) or "closed"
        remote = conn.conn.remote_condition
        return remote.name if remote else None
    seen = wait_for(closed, timeout, f"the AMQP connection closed with {condition}")
    return seen


def pika_closed_with(connection, timeout=15):
    """Wait until the server closed the pika connection; (reply_code, reply_text)."""
    def closed():
        try:
            connection.process_data_events(time_limit=0.1)
        except pika.exceptions.ConnectionClosedByBroker as e:
            return (e.reply_code, e.reply_text)
        return None
    return wait_for(closed, timeout, "the AMQP 0-9-1 connection closed by kbridged")


def test_sighup_revokes_anonymous_and_changed_users(kbridged_factory, bootstrap, hashes):
    config = base_config(bootstrap, auth={"anonymous": True, "users": [
        user("keep", hashes["secret"]), user("gone", hashes["secret"]),
        user("moved", hashes["secret"])]})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    daemon = kbridged_factory(config)

    stomp_anonymous = Client(daemon)
    stomp_keep = Client(daemon, login="keep", passcode="secret")
    stomp_gone = Client(daemon, login="gone", passcode="secret")
    stomp_moved = Client(daemon, login="moved", passcode="secret")
    amqp_anonymous = connect(daemon)
    amqp_keep = connect(daemon, user="keep", password="secret")
    amqp_gone = connect(daemon, user="gone", password="secret")
    pika_keep = pika_connect(daemon, "keep", "secret")
    pika_moved = pika_connect(daemon, "moved", "secret")

    config["auth"] = {"anonymous": False, "users": [
        user("keep", hashes["secret"]), user("moved", hashes["other"])]}
    daemon.write_config(config)
    daemon.signal(signal.SIGHUP)
    daemon.wait_log(r"configuration reloaded from")

    for client, why in ((stomp_anonymous, "anonymous access was disabled"),
                        (stomp_gone, "the user was removed"),
                        (stomp_moved, "password was changed")):
        error = client.wait_error()
        assert error.headers["message"] == "Access refused"
        assert why in error.body
        wait_for(lambda c=client: not c.conn.is_connected(), 15, "the STOMP connection closed")

    assert "unauthorized-access" in amqp_closed_with(amqp_anonymous, "amqp:unauthorized-access")
    assert "unauthorized-access" in amqp_closed_with(amqp_gone, "amqp:unauthorized-access")
    code, text = pika_closed_with(pika_moved)
    assert code == 320 and text.startswith("CONNECTION_FORCED - ") and "password" in text, text

    # Still allowed: still working.
    stomp_keep.subscribe("/queue/still", "1", receipt="sub-1")
    stomp_keep.send("/queue/still", "hello")
    assert stomp_keep.wait_messages(1)[0].body == "hello"
    sender = amqp_keep.create_sender("/queue/still")
    sender.send(__import__("proton").Message(body="again"))
    assert not stomp_keep.recorder.errors
    amqp_keep.close()
    pika_channel = pika_keep.channel()
    pika_channel.queue_declare("still-091")
    pika_keep.close()
    stomp_keep.conn.disconnect()

    log = daemon.log()
    assert "revoked by the reload: anonymous access was disabled" in log
    # New anonymous logins are refused too, password changes apply.
    with pytest.raises(Exception):
        Client(daemon)
    Client(daemon, login="moved", passcode="other").conn.disconnect()


def test_sighup_changing_acls_applies_to_the_next_publish_of_live_sessions(
        kbridged_factory, bootstrap, hashes):
    """A session caches its ACL decision per destination (issue 12 item 6: no
    regex per publish); a reload that changes the user's patterns (same
    password: the session stays) applies to its next publish, both ways."""
    from proton import Message
    from proton.utils import LinkDetached

    def app(publish):
        return {"name": "app", "password_hash": hashes["secret"], "publish": publish,
                "consume": [".*"]}
    config = base_config(bootstrap, auth={"anonymous": False, "users": [app(["^acl-a$"])]})
    daemon = kbridged_factory(config)
    stomp_app = Client(daemon, login="app", passcode="secret")
    amqp_app = connect(daemon, user="app", password="secret")

    # Decided (and cached) before the reload: acl-a allowed, acl-b refused.
    stomp_app.send("/queue/acl-a", "before", receipt="r1")
    stomp_app.wait_receipt("r1")
    amqp_app.create_sender("acl-a", name="a-before").send(Message(body=b"before"))
    with pytest.raises(LinkDetached) as refused:
        amqp_app.create_sender("acl-b", name="b-before")
    assert "unauthorized-access" in str(refused.value)

    config["auth"]["users"] = [app(["^acl-b$"])]
    daemon.write_config(config)
    daemon.signal(signal.SIGHUP)
    daemon.wait_log(r"configuration reloaded from")

    amqp_app.create_sender("acl-b", name="b-after").send(Message(body=b"after"))
    with pytest.raises(LinkDetached) as refused:
        amqp_app.create_sender("acl-a", name="a-after")
    assert "unauthorized-access" in str(refused.value)
    amqp_app.close()
    stomp_app.send("/queue/acl-a", "after", receipt="r2")
    error = stomp_app.wait_error()
    assert error.headers["message"] == "access_refused", error.headers
    assert "may not publish to /queue/acl-a" in error.body
    assert "revoked by the reload" not in daemon.log()
