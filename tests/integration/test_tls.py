# SPDX-License-Identifier: Apache-2.0
"""TLS, mTLS and password hashes (issue 17, items 1-3 and 6).

A test CA, server and client certificates are made with the `openssl` CLI
in a temporary directory (module fixture `pki`). Covered: stomp.py
(set_ssl) and python qpid-proton (SSLDomain) round trips over TLS on their
own listeners and on a shared listener; a client trusting another CA and a
client certificate of another CA refused; TLS 1.1 refused; mTLS: the client
certificate's CN is the user, with its ACLs, over STOMP (CONNECT without
login) and AMQP (SASL EXTERNAL), and a certificate of a user not in
auth.users refused; pika (AMQP 0-9-1, ssl_options) with PLAIN and with
EXTERNAL (the certificate's CN is the user, its ACLs apply), wrong CA, a
client certificate of another CA and TLS 1.1 refused; SIGHUP with a new certificate (open connections keep
working, new ones get the new certificate; the expiry gauge follows); a
handshake that never finishes closed after limits.tls_handshake_timeout;
slow-loris connections on every listener kind (TLS never finished, no
CONNECT, no AMQP header, a 0-9-1 header then nothing, no WebSocket upgrade
on ws and wss) closed, with RSS flat over rounds of them;
the ops endpoint over HTTPS; RabbitMQ sha256/sha512 hashes and
`kbridged --hash-password` hashes logging in over STOMP and AMQP;
plaintext passwords only with auth.insecure_plaintext; AMQP's in-band TLS
header refused; Kafka secrets (kafka.properties, *_file) never in the log,
/api/status or /metrics, and librdkafka's refusals naming the key."""

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pika
import pytest
import stomp
import yaml
from proton import Message, SSLDomain
from proton.utils import BlockingConnection, LinkDetached

from amqp_client import connect
from conftest import EXTERNAL_BOOTSTRAP, KBRIDGED, base_config, under_sanitizer, wait_for
from stomp_util import Client


# ---- the test PKI -------------------------------------------------------------------


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "30",
            "-subj", f"/CN=kbridge test {name}", cwd=directory)


def make_cert(directory, ca, name, subject, days, extensions=None):
    """A key and a certificate signed by `ca`; paths (cert, key)."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=directory)
    args = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", str(days)]
    if extensions:
        with open(os.path.join(directory, f"{name}.ext"), "w") as f:
            f.write(extensions + "\n")
        args += ["-extfile", f"{name}.ext"]
    openssl(*args, cwd=directory)
    return os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("pki"))
    make_ca(directory, "ca")
    make_ca(directory, "otherca")
    server_ext = "subjectAltName=DNS:localhost,IP:127.0.0.1"
    paths = {"dir": directory, "ca": os.path.join(directory, "ca.pem"),
             "otherca": os.path.join(directory, "otherca.pem")}
    paths["server"] = make_cert(directory, "ca", "server", "/CN=localhost", 30, server_ext)
    paths["server2"] = make_cert(directory, "ca", "server2", "/CN=localhost/O=renewed", 90,
                                 server_ext)
    paths["alice"] = make_cert(directory, "ca", "alice", "/CN=alice", 30,
                               "subjectAltName=email:alice@example.com")
    paths["mallory"] = make_cert(directory, "ca", "mallory", "/CN=mallory", 30)
    paths["alice_other"] = make_cert(directory, "otherca", "alice_other", "/CN=alice", 30)
    return paths


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


# ---- helpers -----------------------------------------------------------------------


def hash_password(password):
    """What `kbridged --hash-password` prints for `password` on stdin."""
    out = subprocess.run([KBRIDGED, "--hash-password"], input=password + "\n",
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.startswith("$y$"), out
    return out


def rabbit_hash(password, algorithm):
    """A RabbitMQ rabbit_password_hashing_sha256/sha512 hash, as RabbitMQ computes it."""
    salt = os.urandom(4)
    digest = getattr(hashlib, algorithm)(salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def tls_of(pki, cert="server", verify="none", **extra):
    cert_path, key_path = pki[cert]
    tls = {"cert": cert_path, "key": key_path, "verify": verify}
    if verify != "none":
        tls["ca"] = pki["ca"]
    tls.update(extra)
    return tls


def user(name, password_hash=None, publish=(".*",), consume=(".*",), password=None):
    entry = {"name": name, "publish": list(publish), "consume": list(consume)}
    if password is not None:
        entry["password"] = password
    else:
        entry["password_hash"] = password_hash
    return entry


def tls_config(bootstrap, pki, users, verify="none", http_tls=True, anonymous=False, **sections):
    config = base_config(bootstrap, auth={"anonymous": anonymous, "users": users}, **sections)
    config["listeners"] = {
        "stomp": {"bind": "127.0.0.1:0", "tls": tls_of(pki, verify=verify)},
        "amqp": {"bind": "127.0.0.1:0", "tls": tls_of(pki, verify=verify)},
        "http": {"bind": "127.0.0.1:0"},
    }
    if http_tls:
        config["listeners"]["http"]["tls"] = tls_of(pki)
    return config


def https(daemon, pki, path):
    """(status, body) of a GET over HTTPS; an HTTP error status is a result
    too (a node answers /readyz 503 until it has read the definitions topic)."""
    host, port = daemon.host_port("http")
    context = ssl.create_default_context(cafile=pki["ca"])
    try:
        with urllib.request.urlopen(f"https://{host}:{port}{path}", context=context,
                                    timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def start_tls(kbridged_factory, config, pki):
    """Start kbridged and wait for /readyz over HTTPS (the conftest helper speaks HTTP)."""
    daemon = kbridged_factory(config, wait_ready=False)
    if config["listeners"]["http"].get("tls"):
        def ready():  # 503 until Kafka and the definitions topic are read
            return https(daemon, pki, "/readyz")[0] == 200
        wait_for(ready, 30, "/readyz over HTTPS", interval=0.1)
    else:
        daemon.wait_ready()
    return daemon


def metric_values(text):
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            values[series] = float(value)
    return values


def stomp_tls(daemon, pki, listener="stomp", cert=None, login=None, passcode=None,
              ca="ca", connect=True):
    """A stomp_util.Client over TLS (stomp.py's set_ssl)."""
    client = Client(daemon, login=login, passcode=passcode, auto_connect=False)
    host, port = daemon.host_port(listener)
    if listener != "stomp":  # Client connects to listeners.stomp: point it elsewhere
        client.conn = stomp.Connection12([(host, port)], heartbeats=(0, 0))
        client.conn.set_listener("recorder", client.recorder)
    cert_file, key_file = pki[cert] if cert else (None, None)
    client.conn.set_ssl(for_hosts=[(host, port)], cert_file=cert_file, key_file=key_file,
                        ca_certs=pki[ca])
    if connect:
        client.conn.connect(login, passcode, wait=True)
    return client


def amqp_tls(daemon, pki, listener="amqp", cert=None, user_name=None, password=None,
             timeout=15):
    """A proton BlockingConnection over TLS (SSLDomain): PLAIN with a user,
    EXTERNAL with a client certificate and no user."""
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    domain.set_trusted_ca_db(pki["ca"])
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER)
    if cert:
        cert_file, key_file = pki[cert]
        domain.set_credentials(cert_file, key_file, None)
    host, port = daemon.host_port(listener)
    credentials = f"{user_name}:{password}@" if user_name else ""
    mechs = "PLAIN" if user_name else "EXTERNAL"
    return BlockingConnection(f"amqps://{credentials}{host}:{port}", ssl_domain=domain,
                              allowed_mechs=mechs, timeout=timeout)


def amqp_round_trip(conn, address, body):
    receiver = conn.create_receiver(address, credit=10)
    conn.create_sender(address).send(Message(body=body, properties={"colour": "blue"}))
    message = receiver.receive(timeout=30)
    receiver.accept()
    return message


def closed_by_server(sock):
    """Read until the server closes (FIN or RST); a recv timeout fails the test."""
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


def uniq():
    return uuid.uuid4().hex[:8] if EXTERNAL_BOOTSTRAP else "t"


# ---- round trips -----------------------------------------------------------------------


def test_stomp_and_amqp_round_trips_over_tls(kbridged_factory, bootstrap, pki):
    config = tls_config(bootstrap, pki, [user("app", hash_password("s3cret pass"))])
    config["listeners"]["shared"] = {"bind": "127.0.0.1:0", "protocols": ["stomp", "amqp"],
                                     "tls": tls_of(pki)}
    daemon = start_tls(kbridged_factory, config, pki)
    wait_for(lambda: daemon._listeners_up(["shared"]), 10, "the shared listener")

    for listener in ("stomp", "shared"):
        queue = f"/queue/tls.{listener}.{uniq()}"
        client = stomp_tls(daemon, pki, listener=listener, login="app", passcode="s3cret pass")
        try:
            client.subscribe(queue, "1", receipt="sub")
            client.send(queue, f"over tls via {listener}", headers={"colour": "red"},
                        receipt="sent")
            client.wait_receipt("sent")
            message = client.wait_messages(1)[0]
            assert message.body == f"over tls via {listener}"
            assert message.headers["colour"] == "red"
            assert message.headers["user-id"] == "app"
            assert not client.recorder.errors
        finally:
            client.close()

    for listener in ("amqp", "shared"):
        conn = amqp_tls(daemon, pki, listener=listener, user_name="app", password="s3cret pass")
        try:
            message = amqp_round_trip(conn, f"tls.amqp.{listener}.{uniq()}", f"amqp {listener}")
            assert message.body == f"amqp {listener}"
            assert message.properties["colour"] == "blue"
        finally:
            conn.close()
    log = daemon.log()
    assert re.search(r"\[stomp\] \S+: connection opened \(tls\)", log)
    assert re.search(r"\[amqp\] \S+: connection opened \(tls\)", log)
    assert "(stomp, amqp, by first bytes, TLS)" in log


def test_wrong_ca_and_tls_1_1_are_refused(kbridged_factory, bootstrap, pki):
    config = tls_config(bootstrap, pki, [user("alice", hash_password("pw"))], verify="required")
    daemon = start_tls(kbridged_factory, config, pki)
    host, port = daemon.host_port("stomp")

    # The client trusts another CA: it refuses the server's certificate.
    context = ssl.create_default_context(cafile=pki["otherca"])
    with socket.create_connection((host, port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(raw, server_hostname="localhost")

    # A client certificate of another CA: the server refuses it.
    context = ssl.create_default_context(cafile=pki["ca"])
    context.load_cert_chain(*pki["alice_other"])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with socket.create_connection((host, port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"CONNECT\naccept-version:1.2\n\n\0")
                assert tls.recv(4096) == b""  # TLS 1.3 reports the refusal on read
                raise ConnectionError("closed")
    daemon.wait_log(r"listener stomp: connection from \S+ closed: TLS handshake failed: .*"
                    r"certificate")

    # No client certificate with verify: required.
    context = ssl.create_default_context(cafile=pki["ca"])
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with socket.create_connection((host, port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"CONNECT\naccept-version:1.2\n\n\0")
                assert tls.recv(4096) == b""
                raise ConnectionError("closed")

    # TLS 1.1 only: the server answers with a protocol_version alert.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with socket.create_connection((host, port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError) as refused:
            context.wrap_socket(raw)
    assert "PROTOCOL_VERSION" in str(refused.value).upper()
    daemon.wait_log(r"TLS handshake failed: .*unsupported protocol")
    status, text = https(daemon, pki, "/metrics")
    failures = metric_values(text)
    assert failures['kbridge_tls_handshake_failures_total{listener="stomp",reason="handshake"}'] \
        >= 3


# ---- mTLS ---------------------------------------------------------------------------------


def test_mtls_certificate_is_the_user_with_its_acls(kbridged_factory, bootstrap, pki):
    tag = uniq()
    users = [user("alice", hash_password("unused"), publish=[f"^alice\\.{tag}\\."],
                  consume=[f"^alice\\.{tag}\\."])]
    config = tls_config(bootstrap, pki, users, verify="required")
    daemon = start_tls(kbridged_factory, config, pki)

    # STOMP: CONNECT without login; the certificate's CN is the user.
    client = stomp_tls(daemon, pki, cert="alice")
    try:
        client.subscribe(f"/queue/alice.{tag}.in", "1", receipt="sub")
        client.send(f"/queue/alice.{tag}.in", "by certificate", receipt="sent")
        client.wait_receipt("sent")
        message = client.wait_messages(1)[0]
        assert message.body == "by certificate"
        assert message.headers["user-id"] == "alice"
    finally:
        client.close()
    client = stomp_tls(daemon, pki, cert="alice")
    try:
        client.send(f"/queue/bob.{tag}", "x", receipt="denied")
        error = client.wait_error()
        assert error.headers["message"] == "access_refused"
        assert error.body.startswith(f"not allowed to publish to /queue/bob.{tag}\n")
    finally:
        client.close()

    # AMQP: SASL EXTERNAL with the same certificate.
    conn = amqp_tls(daemon, pki, cert="alice")
    try:
        message = amqp_round_trip(conn, f"alice.{tag}.amqp", "external")
        assert message.body == "external"
        with pytest.raises(LinkDetached) as refused:
            conn.create_sender(f"bob.{tag}")
        assert "amqp:unauthorized-access" in str(refused.value)
    finally:
        conn.close()
    assert re.search(r"\[amqp\] \S+: open as 'alice'", daemon.log())

    # A certificate of a user who is not in auth.users.
    client = stomp_tls(daemon, pki, cert="mallory", connect=False)
    client.conn.connect(wait=False)
    error = client.wait_error()
    assert error.headers["message"] == "Bad CONNECT"  # RabbitMQ's text
    assert error.body.startswith("authentication failed\n")
    assert "the client certificate names user 'mallory', who is not in auth.users" in error.body
    client.close()
    with pytest.raises(Exception) as failure:
        amqp_tls(daemon, pki, cert="mallory", timeout=10).close()
    assert "unauthorized-access" in str(failure.value) or "Authentication" in str(failure.value)
    daemon.wait_log(r"SASL EXTERNAL refused: the client certificate names user 'mallory'")


def test_identity_from_san_email(kbridged_factory, bootstrap, pki):
    users = [user("alice@example.com", hash_password("unused"))]
    config = tls_config(bootstrap, pki, users, verify="optional")
    config["listeners"]["stomp"]["tls"]["identity"] = "san_email"
    daemon = start_tls(kbridged_factory, config, pki)
    client = stomp_tls(daemon, pki, cert="alice")
    try:
        queue = f"/queue/san.{uniq()}"
        client.subscribe(queue, "1", receipt="sub")
        client.send(queue, "san")
        assert client.wait_messages(1)[0].headers["user-id"] == "alice@example.com"
    finally:
        client.close()
    # verify: optional: a client without a certificate still connects, then logs in.
    client = stomp_tls(daemon, pki, connect=False)
    client.conn.connect(wait=False)
    error = client.wait_error()
    assert "anonymous access is disabled" in error.body
    client.close()


# ---- AMQP 0-9-1 (pika) over TLS -----------------------------------------------------------------


def pika_tls(daemon, pki, listener="amqp091", cert=None, credentials=None, ca="ca",
             tls_version=None):
    """A pika BlockingConnection over TLS (ssl_options with the test CA):
    PLAIN with `credentials` (user, password), EXTERNAL with a client
    certificate and no credentials."""
    context = ssl.create_default_context(cafile=pki[ca])
    if tls_version:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_ciphers("DEFAULT@SECLEVEL=0")
        context.minimum_version = context.maximum_version = tls_version
    if cert:
        context.load_cert_chain(*pki[cert])
    host, port = daemon.host_port(listener)
    creds = pika.PlainCredentials(*credentials) if credentials else \
        pika.credentials.ExternalCredentials()
    params = pika.ConnectionParameters(host=host, port=port, credentials=creds,
                                       ssl_options=pika.SSLOptions(context, "localhost"),
                                       socket_timeout=10, blocked_connection_timeout=30,
                                       connection_attempts=1)
    return pika.BlockingConnection(params)


def pika_round_trip(conn, queue, body):
    """Declare `queue`, publish `body` with confirms, consume it; (properties, body)."""
    channel = conn.channel()
    channel.confirm_delivery()
    channel.queue_declare(queue)
    got = []
    channel.basic_consume(queue, lambda ch, method, properties, data:
                          (got.append((properties, data)), ch.basic_ack(method.delivery_tag)))
    channel.basic_publish("", queue, body, pika.BasicProperties(headers={"colour": "green"}))
    deadline = time.monotonic() + 30
    while not got:
        assert time.monotonic() < deadline, f"nothing arrived on {queue} within 30 s"
        conn.process_data_events(time_limit=0.2)
    channel.close()
    return got[0]


def amqp091_tls_config(bootstrap, pki, users, verify):
    config = tls_config(bootstrap, pki, users, verify=verify)
    config["listeners"]["amqp091"] = {"bind": "127.0.0.1:0", "tls": tls_of(pki, verify=verify)}
    return config


def test_amqp091_over_tls_and_mtls_with_pika(kbridged_factory, bootstrap, pki):
    tag = uniq()
    users = [user("app", hash_password("s3cret pass")),
             user("alice", hash_password("unused"), publish=[f"^alice\\.{tag}\\."],
                  consume=[f"^alice\\.{tag}\\."])]
    config = amqp091_tls_config(bootstrap, pki, users, verify="optional")
    daemon = start_tls(kbridged_factory, config, pki)

    # PLAIN over TLS, no client certificate (verify: optional).
    conn = pika_tls(daemon, pki, credentials=("app", "s3cret pass"))
    try:
        properties, body = pika_round_trip(conn, f"tls.pika.{tag}", b"pika over tls")
        assert body == b"pika over tls" and properties.headers["colour"] == "green"
    finally:
        conn.close()
    assert re.search(r"\[amqp091\] \S+: connection opened \(tls\)", daemon.log())
    assert re.search(r"\[amqp091\] \S+: connection open, user app,", daemon.log())

    # EXTERNAL: the client certificate's CN is the user, with its ACLs.
    conn = pika_tls(daemon, pki, cert="alice")
    try:
        properties, body = pika_round_trip(conn, f"alice.{tag}.pika", b"by certificate")
        assert body == b"by certificate"
        channel = conn.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.queue_declare(f"bob.{tag}")
        assert refused.value.reply_code == 403
        assert f"bob.{tag}" in refused.value.reply_text
    finally:
        if conn.is_open:
            conn.close()
    assert re.search(r"\[amqp091\] \S+: connection open, user alice,", daemon.log())

    # A certificate of a user who is not in auth.users: 403 at login.
    with pytest.raises(pika.exceptions.AMQPConnectionError) as refused:
        pika_tls(daemon, pki, cert="mallory")
    assert "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL: the " \
        "client certificate names user 'mallory', who is not in auth.users" in str(refused.value)
    daemon.wait_log(r"\[amqp091\] \S+: login refused: the client certificate names user "
                    r"'mallory', who is not in auth.users")

    # No certificate: EXTERNAL is not offered, so pika finds no mechanism.
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika_tls(daemon, pki)

    # The client trusts another CA: it refuses the server's certificate.
    with pytest.raises((pika.exceptions.AMQPConnectionError, ssl.SSLError)) as refused:
        pika_tls(daemon, pki, credentials=("app", "s3cret pass"), ca="otherca")
    assert "CERTIFICATE_VERIFY_FAILED" in repr(refused.value) or \
        "certificate verify failed" in repr(refused.value)

    # A client certificate of another CA: the server refuses the handshake.
    with pytest.raises((pika.exceptions.AMQPConnectionError, ssl.SSLError, ConnectionError)):
        pika_tls(daemon, pki, cert="alice_other", credentials=("app", "s3cret pass"))
    daemon.wait_log(r"listener amqp091: connection from \S+ closed: TLS handshake failed: .*"
                    r"certificate")

    # TLS 1.1 only: refused during the handshake.
    with pytest.raises((pika.exceptions.AMQPConnectionError, ssl.SSLError)) as refused:
        pika_tls(daemon, pki, credentials=("app", "s3cret pass"),
                 tls_version=ssl.TLSVersion.TLSv1_1)
    daemon.wait_log(r"listener amqp091: connection from \S+ closed: TLS handshake failed: "
                    r".*unsupported protocol")

    # The listener still serves.
    conn = pika_tls(daemon, pki, credentials=("app", "s3cret pass"))
    assert conn.channel().is_open
    conn.close()


# ---- reload, timeout, ops -------------------------------------------------------------------


def test_sighup_serves_a_new_certificate_and_keeps_open_connections(kbridged_factory, bootstrap,
                                                                     pki, tmp_path):
    # The served files are copies the test replaces, as a renewal would.
    cert_path, key_path = str(tmp_path / "served.pem"), str(tmp_path / "served.key")
    shutil.copy(pki["server"][0], cert_path)
    shutil.copy(pki["server"][1], key_path)
    config = tls_config(bootstrap, pki, [user("app", hash_password("pw"))])
    for name in ("stomp", "http"):
        config["listeners"][name]["tls"].update({"cert": cert_path, "key": key_path})
    daemon = start_tls(kbridged_factory, config, pki)
    host, port = daemon.host_port("stomp")

    def served_certificate():
        context = ssl.create_default_context(cafile=pki["ca"])
        with socket.create_connection((host, port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.getpeercert(binary_form=True)

    def expiry_days():
        return metric_values(https(daemon, pki, "/metrics")[1])[
            'kbridge_tls_certificate_expiry_seconds{listener="stomp"}'] / 86400

    assert served_certificate() == der_of(pki["server"][0])
    assert 29 < expiry_days() <= 30
    queue = f"/queue/reload.{uniq()}"
    old = stomp_tls(daemon, pki, login="app", passcode="pw")
    old.subscribe(queue, "1", receipt="sub")

    shutil.copy(pki["server2"][0], cert_path)
    shutil.copy(pki["server2"][1], key_path)
    daemon.signal(signal.SIGHUP)
    daemon.wait_log(r"listeners\.stomp: TLS certificate and key reloaded")
    daemon.wait_log(r"configuration reloaded from")

    assert served_certificate() == der_of(pki["server2"][0])
    assert 89 < expiry_days() <= 90
    old.send(queue, "still here", receipt="after")
    old.wait_receipt("after")
    assert old.wait_messages(1)[0].body == "still here"
    old.close()

    # A certificate that does not load keeps the running one.
    with open(cert_path, "w") as f:
        f.write("not a certificate\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_log(r"reload: keeping the running TLS certificate: listeners\.stomp\.tls\.cert")
    assert served_certificate() == der_of(pki["server2"][0])


def test_handshake_that_never_finishes_is_closed(kbridged_factory, bootstrap, pki):
    config = tls_config(bootstrap, pki, [user("app", hash_password("pw"))],
                        limits={"tls_handshake_timeout": "1s"})
    daemon = start_tls(kbridged_factory, config, pki)
    host, port = daemon.host_port("stomp")
    silent = socket.create_connection((host, port), timeout=30)
    partial = socket.create_connection((host, port), timeout=30)
    partial.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start
    for sock in (silent, partial):
        assert closed_by_server(sock)
        sock.close()
    wait_for(lambda: metric_values(https(daemon, pki, "/metrics")[1]).get(
        'kbridge_tls_handshake_failures_total{listener="stomp",reason="timeout"}') == 2, 10,
        "two timeouts counted")
    assert len(re.findall(r"TLS handshake not finished within limits\.tls_handshake_timeout",
                          daemon.log())) == 2
    # The listener still serves.
    client = stomp_tls(daemon, pki, login="app", passcode="pw")
    client.close()


def rss_kib(daemon):
    with open(f"/proc/{daemon.proc.pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))



def test_slow_loris_on_every_listener_is_closed_and_rss_stays_flat(kbridged_factory, bootstrap,
                                                                  pki):
    """Connections that never finish a handshake, on every listener kind: a
    TLS handshake never started or left half-way (STOMP, AMQP 1.0/0-9-1,
    wss, HTTPS), TLS done and then no STOMP CONNECT, no AMQP header, an AMQP
    1.0 SASL header or a 0-9-1 header and then nothing, no WebSocket upgrade (wss and ws).
    Each is closed by the server (limits of 1 s); rounds of them leave RSS
    flat."""
    config = tls_config(bootstrap, pki, [user("app", hash_password("pw"))],
                        limits={"tls_handshake_timeout": "1s", "handshake_timeout": "1s",
                                "protocol_detect_timeout": "1s"})
    config["listeners"]["amqp"]["protocols"] = ["amqp", "amqp091"]
    config["listeners"]["amqp091"] = {"bind": "127.0.0.1:0", "protocols": ["amqp091"]}
    config["listeners"]["wss"] = {"bind": "127.0.0.1:0", "protocols": ["stomp"],
                                  "transport": "websocket", "tls": tls_of(pki)}
    config["listeners"]["ws"] = {"bind": "127.0.0.1:0", "protocols": ["stomp"],
                                 "transport": "websocket"}
    daemon = start_tls(kbridged_factory, config, pki)
    wait_for(lambda: {"amqp091", "wss", "ws"} <= set(daemon.addresses), 15, "all listeners")
    client_context = ssl.create_default_context(cafile=pki["ca"])

    def opened(listener, mode):
        sock = socket.create_connection(daemon.host_port(listener), timeout=30)
        sock.settimeout(60)  # only guards against a hang: the server must close first
        if mode == "partial hello":
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        elif mode.startswith("tls"):
            sock = client_context.wrap_socket(sock, server_hostname="localhost")
            if mode == "tls, amqp 1.0 sasl header":  # then no SASL init
                sock.sendall(b"AMQP\x03\x01\x00\x00")
            elif mode == "tls, amqp 0-9-1 header":
                sock.sendall(b"AMQP\x00\x00\x09\x01")
        elif mode == "amqp 0-9-1 header":
            sock.sendall(b"AMQP\x00\x00\x09\x01")
        return sock

    cases = [(listener, "silent") for listener in ("stomp", "amqp", "wss", "amqp091", "ws")]
    cases += [(listener, "partial hello") for listener in ("stomp", "amqp", "wss")]
    cases += [("stomp", "tls, nothing"), ("amqp", "tls, nothing"), ("wss", "tls, nothing"),
              ("amqp", "tls, amqp 1.0 sasl header"), ("amqp", "tls, amqp 0-9-1 header"),
              ("amqp091", "amqp 0-9-1 header")]

    def one_round(cases):
        socks = [(case, opened(*case)) for case in cases]
        for case, sock in socks:
            try:
                while sock.recv(4096):
                    pass
            except (ConnectionResetError, ssl.SSLError):
                pass
            except socket.timeout:
                raise AssertionError(f"{case} was not closed by the server")
            sock.close()
        wait_for(lambda: all(v == 0 for k, v in metric_values(https(daemon, pki, "/metrics")[1])
                             .items() if k.startswith("kbridge_connections{")), 15,
                 "no connection left")

    # warm-up (allocator arenas, metrics series, TLS sessions), with the HTTPS
    # listener: its stalled handshakes end at evhttp's 30 s timeout (daemon/http.c),
    # not at limits.tls_handshake_timeout, so it is left out of the rounds below
    one_round(cases + [("http", "silent"), ("http", "partial hello")])
    daemon.wait_log(r"TLS handshake not finished within limits\.tls_handshake_timeout")
    daemon.wait_log(r"\[amqp091\] \S+: handshake not finished within 1000 ms "
                    r"\(limits\.handshake_timeout\)")
    daemon.wait_log(r"no AMQP open within limits\.handshake_timeout \(1000 ms\)")
    daemon.wait_log(r"no WebSocket upgrade within limits\.handshake_timeout")
    before = rss_kib(daemon)
    for _ in range(10):
        one_round(cases)
    after = rss_kib(daemon)
    print(f"\nVmRSS after the warm-up: {before} KiB; after {10 * len(cases)} more slow "
          f"connections: {after} KiB ({after - before:+d} KiB)")
    failures = metric_values(https(daemon, pki, "/metrics")[1])
    timeouts = sum(v for k, v in failures.items()
                   if k.startswith("kbridge_tls_handshake_failures_total") and 'reason="timeout"'
                   in k)
    assert timeouts >= 11 * 6  # the silent and partial TLS ones (not HTTPS), each round
    client = stomp_tls(daemon, pki, login="app", passcode="pw")  # the listeners still serve
    client.close()
    if under_sanitizer(daemon):
        print("sanitizer build (ASan or TSan): RSS growth not asserted")
        return
    assert after - before < 2048, f"RSS grew by {after - before} KiB"


def test_ops_endpoint_over_https(kbridged_factory, bootstrap, pki):
    config = tls_config(bootstrap, pki, [user("app", hash_password("pw"))])
    daemon = start_tls(kbridged_factory, config, pki)
    status, body = https(daemon, pki, "/healthz")
    assert status == 200 and body.strip() == "ok"
    status, text = https(daemon, pki, "/metrics")
    assert status == 200
    values = metric_values(text)
    for listener in ("stomp", "amqp", "http"):
        days = values[f'kbridge_tls_certificate_expiry_seconds{{listener="{listener}"}}'] / 86400
        assert 29 < days <= 30
    status, body = https(daemon, pki, "/api/status")
    assert status == 200 and json.loads(body)
    host, port = daemon.host_port("http")
    with pytest.raises(Exception):  # plain HTTP on the TLS port gets no HTTP answer
        urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5).read()


# ---- passwords --------------------------------------------------------------------------------


def test_rabbitmq_and_yescrypt_hashes_log_in(kbridged_factory, bootstrap):
    users = [user("r256", rabbit_hash("rabbit pw", "sha256")),
             user("r512", rabbit_hash("rabbit pw", "sha512")),
             user("yes", hash_password("yes pw"))]
    daemon = kbridged_factory(base_config(bootstrap, auth={"anonymous": False, "users": users}))
    for name, password in (("r256", "rabbit pw"), ("r512", "rabbit pw"), ("yes", "yes pw")):
        client = Client(daemon, login=name, passcode=password)
        queue = f"/queue/hash.{name}.{uniq()}"
        client.subscribe(queue, "1", receipt="sub")
        client.send(queue, f"from {name}")
        message = client.wait_messages(1)[0]
        assert message.body == f"from {name}" and message.headers["user-id"] == name
        client.close()
        conn = connect(daemon, name, password)
        assert amqp_round_trip(conn, f"hash.{name}.{uniq()}.amqp", name).body == name
        conn.close()
        with pytest.raises(Exception) as failure:
            connect(daemon, name, password + "x", timeout=10).close()
        assert "unauthorized-access" in str(failure.value) or "Authentication" in str(
            failure.value)
        bad = Client(daemon, auto_connect=False)
        bad.conn.connect(name, "wrong", wait=False)
        assert bad.wait_error().body.startswith("authentication failed\n")
        bad.close()


def test_plaintext_passwords_only_when_insecure(kbridged_factory, bootstrap, tmp_path):
    config = base_config(bootstrap, auth={"anonymous": False,
                                          "users": [user("plain", password="open sesame")]})
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(config))
    refused = subprocess.run([KBRIDGED, "--check-config", str(path)], capture_output=True,
                             text=True)
    assert refused.returncode == 2
    assert "auth.users[0].password: plaintext passwords are refused" in refused.stderr

    config["auth"]["insecure_plaintext"] = True
    daemon = kbridged_factory(config)
    daemon.wait_log(r"auth\.insecure_plaintext: 1 user\(s\) of \S+ have plaintext passwords")
    client = Client(daemon, login="plain", passcode="open sesame")
    client.close()
    bad = Client(daemon, auto_connect=False)
    bad.conn.connect("plain", "open sesam", wait=False)
    assert bad.wait_error().body.startswith("authentication failed\n")
    bad.close()
    assert "open sesame" not in daemon.log()


def test_amqp_in_band_tls_header_is_refused(kbridged):
    with socket.create_connection(kbridged.host_port("amqp"), timeout=10) as raw:
        raw.sendall(b"AMQP\x02\x01\x00\x00")
        answer = b""
        while True:
            chunk = raw.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer == b"AMQP\x03\x01\x00\x00"
    kbridged.wait_log(r"asked for AMQP's in-band TLS layer \(protocol id 2\), which kbridge does "
                      r"not offer")


# ---- Kafka-side secrets ------------------------------------------------------------------------


def test_kafka_secrets_stay_out_of_logs_and_status(kbridged_factory, bootstrap, tmp_path):
    literal = "literal-" + uuid.uuid4().hex
    from_file = "file-" + uuid.uuid4().hex
    secret_file = tmp_path / "kafka-password"
    secret_file.write_text(from_file + "\n")
    config = base_config(bootstrap, log={"level": "debug"})
    config["kafka"]["properties"] = {"sasl.mechanisms": "SCRAM-SHA-512",
                                     "sasl.username": "kbridge", "sasl.password": literal}
    config["kafka"]["producer"] = {"sasl.password_file": str(secret_file)}
    daemon = kbridged_factory(config)
    client = Client(daemon)
    client.send(f"/queue/secrets.{uniq()}", "x", receipt="r")
    client.wait_receipt("r")
    client.close()
    texts = [daemon.log(), daemon.http("/api/status")[1], daemon.http("/metrics")[1]]
    for text in texts:
        assert literal not in text and from_file not in text

    # Refusals name the key (and never echo a secret).
    for properties, expected in (
            ({"security.protocol": "bogus"}, "kafka.properties.security.protocol"),
            ({"sasl.password_file": str(tmp_path / "missing")},
             "kafka.properties.sasl.password_file: cannot read")):
        bad = base_config(bootstrap)
        bad["kafka"]["properties"] = properties
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(bad))
        result = subprocess.run([KBRIDGED, "-c", str(path)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 1
        assert expected in result.stderr + result.stdout
